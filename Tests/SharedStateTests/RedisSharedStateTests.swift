import ConcertTestSupport
import ConcertDomain
import ConcertInProcess
import ConcertRedis
import SharedState
import Testing

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

/// What only the Redis implementations have: several instances, and a Redis that can go away.
@Suite("Redis shared state", .enabled(if: TestServices.redisURL != nil, "CONCERT_TEST_REDIS_URL is not set"))
struct RedisSharedStateTests {
    private func pool(connections: Int = 4) throws -> RedisConnectionPool {
        try RedisConnectionPool(url: try #require(TestServices.redisURL), connections: connections)
    }

    // Two instances serving one line: TwoInstancesTests, with PostgreSQL's.

    @Test func scriptsAreResentAfterRedisForgetsThem() async throws {
        let pool = try pool(connections: 1)
        let room = RedisWaitingRoom(pool: pool, policy: QueuePolicy(maxActive: 1), keyPrefix: TestServices.uniqueKeyPrefix())
        let ticket = try await room.join(userId: 1, concertId: 1, now: t0).ticket
        _ = try await pool.send("SCRIPT", "FLUSH")
        #expect(try await room.poll(token: ticket.token, now: t0) == ticket)
        await pool.close()
    }

    /// How many scripts Redis has run (EVALSHA and EVAL) since it started.
    private func scriptCalls(_ pool: RedisConnectionPool) async throws -> Int {
        let info = try #require(try await pool.send("INFO", "commandstats").string)
        return info.split(whereSeparator: \.isNewline).reduce(0) { total, line in
            guard line.hasPrefix("cmdstat_evalsha:") || line.hasPrefix("cmdstat_eval:"),
                  let calls = line.split(separator: ",").first?.split(separator: "=").last.flatMap({ Int($0) }) else { return total }
            return total + calls
        }
    }

    @Test func pollsReleasedTogetherShareScriptCalls() async throws {
        let pool = try pool(connections: 4)
        let room = RedisWaitingRoom(pool: pool, policy: QueuePolicy(maxActive: 5), keyPrefix: TestServices.uniqueKeyPrefix())
        var tickets: [QueueTicket] = []
        for user in Int64(1)...40 { tickets.append(try await room.join(userId: user, concertId: 3, now: t0).ticket) }
        let joined = tickets
        let before = try await scriptCalls(pool)
        let gate = StartGate()
        let polled = try await withThrowingTaskGroup(of: (Int, QueueTicket?).self) { group in
            for index in joined.indices {
                group.addTask {
                    await gate.wait()
                    return (index, try await room.poll(token: joined[index].token, now: t0.adding(milliseconds: Int64(index % 3))))
                }
            }
            await gate.open(whenArrived: joined.count)
            var all = [QueueTicket?](repeating: nil, count: joined.count)
            for try await (index, ticket) in group { all[index] = ticket }
            return all
        }
        let calls = try await scriptCalls(pool) - before
        #expect(calls < joined.count / 2, "\(calls) script calls for \(joined.count) polls")
        // Every answer is the poller's own ticket, as it stood: the first five admitted, the rest
        // in their order.
        for (index, ticket) in polled.enumerated() {
            let ticket = try #require(ticket, "poll \(index) found no ticket")
            #expect(ticket.token == joined[index].token && ticket.userId == Int64(index + 1))
            #expect(ticket.status == (index < 5 ? .active : .waiting), "\(index): \(ticket)")
            if index >= 5 { #expect(ticket.position == index - 5, "\(index): \(ticket)") }
        }
        // An unknown token in a batch is answered nil and leaves the others alone.
        async let unknown = room.poll(token: QueueToken.make(concertId: 3), now: t0)
        async let known = room.poll(token: joined[7].token, now: t0)
        #expect(try await unknown == nil)
        #expect(try await known?.position == 2)
        await pool.close()
    }

    @Test func aCacheInvalidationReachesEveryInstance() async throws {
        let pool = try pool(connections: 2)
        let prefix = TestServices.uniqueKeyPrefix()
        // Two instances: each its own bodies in memory, one generation per namespace in Redis.
        let a = GenerationCheckedCache(generations: RedisCacheGenerations(pool: pool, keyPrefix: prefix))
        let b = GenerationCheckedCache(generations: RedisCacheGenerations(pool: pool, keyPrefix: prefix))
        try await expectInvalidationReachesEveryInstance(a, b)
        // The generation is the only thing the cache keeps in Redis.
        #expect(try await pool.send("GET", RESPArgument(prefix + "cache:8:concerts:generation")).integer == 1)
        await pool.close()
    }

    @Test func theRoomWorksAgainAfterItsConnectionsAreKilled() async throws {
        let pool = try pool(connections: 2)
        let room = RedisWaitingRoom(pool: pool, policy: QueuePolicy(maxActive: 1), keyPrefix: TestServices.uniqueKeyPrefix())
        let ticket = try await room.join(userId: 1, concertId: 1, now: t0).ticket
        var ids: [Int64] = []
        for _ in 0..<2 { ids.append(try #require(try await pool.send("CLIENT", "ID").integer)) }
        let killer = try self.pool(connections: 1)
        for id in ids { _ = try await killer.send("CLIENT", "KILL", "ID", RESPArgument(id)) }
        await killer.close()
        // A call caught by the close fails as unavailable, never hangs; within a few calls the
        // pool has reconnected.
        var answered: QueueTicket?
        for _ in 0..<3 where answered == nil {
            do { answered = try await room.poll(token: ticket.token, now: t0) } catch is SharedStateUnavailable {}
        }
        #expect(answered == ticket)
        await pool.close()
    }
}

/// These need no Redis: an unreachable or silent one must give `SharedStateUnavailable` fast.
@Suite("Redis shared state when Redis is gone")
struct UnavailableRedisTests {
    private func expectUnavailableQuickly(url: String, _ label: String) async throws {
        let pool = try RedisConnectionPool(url: url, connections: 2, connectTimeout: .milliseconds(500),
                                           commandTimeout: .milliseconds(300))
        let room = RedisWaitingRoom(pool: pool, policy: QueuePolicy(), keyPrefix: "unused:")
        let generations = RedisCacheGenerations(pool: pool, keyPrefix: "unused:")
        let cache = GenerationCheckedCache(generations: generations)
        let limiter = RedisRateLimiter(pool: pool, keyPrefix: "unused:")
        let token = QueueToken.make(concertId: 1)
        let operations: [(String, @Sendable () async throws -> Void)] = [
            ("join", { _ = try await room.join(userId: 1, concertId: 1, now: t0) }),
            ("poll", { _ = try await room.poll(token: token, now: t0) }),
            ("end", { _ = try await room.end(token: token, now: t0) }),
            ("sweep", { try await room.sweep(now: t0) }),
            ("counts", { _ = try await room.counts(concertId: 1, now: t0) }),
            ("ping", { try await room.ping() }),
            ("cache generations", { _ = try await generations.generations(of: ["n"]) }),
            ("cache set", { try await cache.set(namespace: "n", key: "k", value: [1], expiresAt: t0.adding(seconds: 1), now: t0) }),
            ("cache invalidate", { try await cache.invalidate(namespace: "n") }),
            ("rate limit", { _ = try await limiter.acquire(key: "k", limit: 1, now: t0) }),
        ]
        for (name, operation) in operations {
            let started = ContinuousClock.now
            await #expect(throws: SharedStateUnavailable.self, "\(label): \(name)") { try await operation() }
            // Generous: the point is "fails, does not hang", and tests run in parallel on 2 cores.
            #expect(ContinuousClock.now - started < .seconds(4), "\(label): \(name) took too long")
        }
        await pool.close()
    }

    @Test func refusedConnections() async throws {
        let closedPort = try SilentServer(listening: false)
        try await expectUnavailableQuickly(url: closedPort.url, "refused")
    }

    @Test func aRedisThatNeverAnswers() async throws {
        let silent = try SilentServer(listening: true)
        try await expectUnavailableQuickly(url: silent.url, "silent")
    }
}
