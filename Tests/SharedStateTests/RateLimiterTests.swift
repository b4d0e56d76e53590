import ConcertDomain
import ConcertInProcess
import ConcertPostgres
import ConcertRedis
import ConcertTestSupport
import SharedState
import Testing

let rateLimiterImplementations: [Implementation<any RateLimiter>] = Implementation.all(
    inProcess: { InProcessRateLimiter() },
    redis: { pool, prefix in RedisRateLimiter(pool: pool, keyPrefix: prefix) },
    postgres: { store in PostgresRateLimiter(store: store) }
)

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

@Suite("Rate limiter semantics")
struct RateLimiterTests {
    @Test(arguments: rateLimiterImplementations)
    func aBurstOfTheLimitThenOnePerInterval(_ implementation: Implementation<any RateLimiter>) async throws {
        try await implementation.with { limiter async throws in
            for _ in 0..<4 { #expect(try await limiter.acquire(key: "user:1", limit: 4, now: t0) == nil) }
            #expect(try await limiter.acquire(key: "user:1", limit: 4, now: t0) == 1)
            // 4 per second: one token every 250 ms.
            #expect(try await limiter.acquire(key: "user:1", limit: 4, now: t0.adding(milliseconds: 249)) == 1)
            #expect(try await limiter.acquire(key: "user:1", limit: 4, now: t0.adding(milliseconds: 250)) == nil)
            #expect(try await limiter.acquire(key: "user:1", limit: 4, now: t0.adding(milliseconds: 250)) == 1)
            // A long pause refills to the burst, no further.
            for _ in 0..<4 { #expect(try await limiter.acquire(key: "user:1", limit: 4, now: t0.adding(seconds: 60)) == nil) }
            #expect(try await limiter.acquire(key: "user:1", limit: 4, now: t0.adding(seconds: 60)) == 1)
        }
    }

    @Test(arguments: rateLimiterImplementations)
    func keysAreIndependentAndZeroMeansOff(_ implementation: Implementation<any RateLimiter>) async throws {
        try await implementation.with { limiter async throws in
            #expect(try await limiter.acquire(key: "ip:a", limit: 1, now: t0) == nil)
            #expect(try await limiter.acquire(key: "ip:a", limit: 1, now: t0) == 1)
            #expect(try await limiter.acquire(key: "ip:b", limit: 1, now: t0) == nil)
            for _ in 0..<100 { #expect(try await limiter.acquire(key: "ip:c", limit: 0, now: t0) == nil) }
        }
    }

    @Test(arguments: rateLimiterImplementations)
    func aClockGoingBackDoesNotAddTokens(_ implementation: Implementation<any RateLimiter>) async throws {
        try await implementation.with { limiter async throws in
            #expect(try await limiter.acquire(key: "k", limit: 1, now: t0) == nil)
            #expect(try await limiter.acquire(key: "k", limit: 1, now: t0.adding(seconds: -5)) == 1)
        }
    }

    @Test(arguments: rateLimiterImplementations)
    func concurrentRequestsShareOneBucket(_ implementation: Implementation<any RateLimiter>) async throws {
        try await implementation.with { limiter async throws in
            let gate = StartGate(opensWhenArrived: 50)
            let allowed = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        await gate.wait()
                        return try await limiter.acquire(key: "busy", limit: 10, now: t0) == nil
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(allowed == 10)
        }
    }
}
