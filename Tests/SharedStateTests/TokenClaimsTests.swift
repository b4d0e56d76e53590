import ConcertDomain
import ConcertInProcess
import ConcertPostgres
import ConcertRedis
import ConcertTestSupport
import SharedState
import Testing

let tokenClaimsImplementations: [Implementation<any TokenClaims>] = Implementation.all(
    inProcess: { InProcessTokenClaims() },
    redis: { pool, prefix in RedisTokenClaims(pool: pool, keyPrefix: prefix) },
    postgres: { store in PostgresTokenClaims(store: store) }
)

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

/// The claim a payment takes on its queue token's end ("one token, one purchase"), the same on
/// every implementation.
@Suite("Token claims")
struct TokenClaimsTests {
    private func freshToken() -> String { QueueToken.make(concertId: 7) }

    @Test(arguments: tokenClaimsImplementations)
    func aClaimIsExclusiveUntilReleasedOrRunOut(_ implementation: Implementation<any TokenClaims>) async throws {
        try await implementation.with { claims async throws in
            let token = freshToken()
            #expect(try await claims.claim(token: token, owner: "a", until: t0.adding(seconds: 60), now: t0))
            #expect(try await claims.claim(token: token, owner: "b", until: t0.adding(seconds: 60), now: t0.adding(seconds: 1)) == false)
            // The same owner takes its own claim again (a keyed payment retried after a fault).
            #expect(try await claims.claim(token: token, owner: "a", until: t0.adding(seconds: 60), now: t0.adding(seconds: 1)))
            // Another owner's release leaves the claim alone.
            try await claims.release(token: token, owner: "b")
            #expect(try await claims.claim(token: token, owner: "c", until: t0.adding(seconds: 60), now: t0.adding(seconds: 2)) == false)
            // The owner's release frees it.
            try await claims.release(token: token, owner: "a")
            #expect(try await claims.claim(token: token, owner: "b", until: t0.adding(seconds: 60), now: t0.adding(seconds: 3)))
            // A run-out claim can be taken over, and the old owner's release then does nothing.
            #expect(try await claims.claim(token: token, owner: "c", until: t0.adding(seconds: 120), now: t0.adding(seconds: 61)))
            try await claims.release(token: token, owner: "b")
            #expect(try await claims.claim(token: token, owner: "d", until: t0.adding(seconds: 120), now: t0.adding(seconds: 62)) == false)
            // Tokens are independent.
            #expect(try await claims.claim(token: freshToken(), owner: "d", until: t0.adding(seconds: 60), now: t0))
        }
    }

    @Test(arguments: tokenClaimsImplementations)
    func racingClaimantsGetOneClaim(_ implementation: Implementation<any TokenClaims>) async throws {
        try await implementation.with { claims async throws in
            let token = freshToken()
            let gate = StartGate(opensWhenArrived: 40)
            let taken = try await withThrowingTaskGroup(of: Bool.self) { group in
                for owner in 0..<40 {
                    group.addTask {
                        await gate.wait()
                        return try await claims.claim(token: token, owner: "owner-\(owner)", until: t0.adding(seconds: 60), now: t0)
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(taken == 1)
        }
    }
}
