import ConcertAPI
import ConcertDomain
import SharedState
import Synchronization
import Testing

/// On PostgreSQL alone a hold checks its queue token, and a payment checks and claims it, inside
/// its own database call (`TicketedHolds`, `TicketedPayments`); every other set-up polls through
/// `WaitingRoom` and claims through `TokenClaims` first, a round trip each. Counted through
/// wrappers around the engines' waiting room and claims, which the folded path never calls.
@Suite("Where holds and payments check their queue token")
struct PaymentPathTests {
    @Test(arguments: TestBackend.all)
    func onPostgresAloneThePaymentClaimsInItsOwnCall(backend: TestBackend) async throws {
        let claims = Mutex<CountingTokenClaims?>(nil)
        let rooms = Mutex<InstrumentedWaitingRoom?>(nil)
        try await withAPI(backend, engines: { engines in
            var engines = engines
            let counting = CountingTokenClaims(engines.tokenClaims)
            claims.withLock { $0 = counting }
            engines.tokenClaims = counting
            let room = InstrumentedWaitingRoom(engines.waitingRoom)
            rooms.withLock { $0 = room }
            engines.waitingRoom = room
            return engines
        }) { api in
            let counting = try #require(claims.withLock { $0 })
            let room = try #require(rooms.withLock { $0 })
            let concert = try await api.openConcert(price: 3000)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let pollsBefore = room.pollCalls
            let first = try await api.hold(concert.scheduleId, seat: 4, user: 5, token: token)
            let second = try await api.hold(concert.scheduleId, seat: 5, user: 5, token: token)
            #expect(first.status == 201 && second.status == 201)
            #expect(room.pollCalls - pollsBefore == (backend == .postgres ? 0 : 2), "polls for two holds on \(backend)")
            // A hold the handler refuses by itself still answers for the token first.
            let outOfRange = try await api.hold(concert.scheduleId, seat: 51, user: 5, token: "garbage")
            #expect(outOfRange.status == 401 && outOfRange.code == "QUEUE_TOKEN_INVALID", "\(outOfRange)")
            // Refused by a rule (no points): the claim is given back either way.
            let refused = try await api.pay(first.int("id")!, user: 5, token: token)
            #expect(refused.status == 402, "\(refused)")
            _ = try await api.charge(5000, user: 5)
            let paid = try await api.pay(first.int("id")!, user: 5, token: token)
            #expect(paid.status == 201, "\(paid)")
            // One token, one purchase, on every engine.
            let again = try await api.pay(second.int("id")!, user: 5, token: token)
            #expect(again.status == 401 && again.code == "QUEUE_TOKEN_INVALID", "\(again)")
            #expect(counting.claims == (backend == .postgres ? 0 : 3), "claims through TokenClaims on \(backend)")
        }
    }
}

/// The engines' token claims, counting the claims asked of them.
final class CountingTokenClaims: TokenClaims {
    private let claimsMade: any TokenClaims
    private let count = Mutex(0)

    init(_ claims: any TokenClaims) { claimsMade = claims }

    var claims: Int { count.withLock { $0 } }

    func claim(token: String, owner: String, until: Timestamp, now: Timestamp) async throws -> Bool {
        count.withLock { $0 += 1 }
        return try await claimsMade.claim(token: token, owner: owner, until: until, now: now)
    }

    func release(token: String, owner: String) async throws { try await claimsMade.release(token: token, owner: owner) }
}
