import ConcertAPI
import ConcertDomain
import Foundation
import SharedState
import Synchronization
import Testing

/// A payment commits, then ends its queue token. When that end fails (the waiting room briefly
/// unreachable), the payment still stands and the end is owed: until it happens a rejoin would
/// return the same live token, which its payment's claim keeps from paying again.
@Suite("Ending the queue token after a payment")
struct PaymentTokenEndTests {
    @Test(arguments: TestBackend.all)
    func anEndThatFailsAfterThePaymentIsRetriedUntilTheTokenIsGone(backend: TestBackend) async throws {
        let room = Mutex<InstrumentedWaitingRoom?>(nil)
        try await withAPI(backend, engines: { engines in
            var engines = engines
            let failing = InstrumentedWaitingRoom(engines.waitingRoom, endFailures: 3)
            room.withLock { $0 = failing }
            engines.waitingRoom = failing
            return engines
        }) { api in
            let failing = try #require(room.withLock { $0 })
            let concert = try await api.openConcert(price: 3000)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 4, user: 5, token: token)
            _ = try await api.charge(5000, user: 5)

            let paid = try await api.pay(hold.int("id")!, user: 5, token: token)
            #expect(paid.status == 201 && paid.string("status") == "PAID", "the payment stands: \(paid)")

            // The end is tried again in the background (every 250 ms) until the room answers.
            let deadline = ContinuousClock.now + .seconds(10)
            var current = try await api.call(.get, "/v1/queue/tokens/current", user: 5, queueToken: token)
            while current.code != "QUEUE_TOKEN_INVALID", ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                current = try await api.call(.get, "/v1/queue/tokens/current", user: 5, queueToken: token)
            }
            #expect(current.code == "QUEUE_TOKEN_INVALID", "the paid token still answers: \(current)")
            #expect(failing.endCalls >= 4, "three failed ends and the one that worked")

            // So a rejoin gets a fresh token, not the paid one.
            let rejoined = try await api.join(concert.concertId, user: 5)
            #expect(rejoined.status == 201 && rejoined.string("token") != token, "\(rejoined)")
        }
    }
}
