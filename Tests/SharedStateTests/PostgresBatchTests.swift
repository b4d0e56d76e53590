import ConcertDomain
import ConcertInProcess
import ConcertPostgres
import ConcertTestSupport
import SharedState
import Testing

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

/// Polls, ends and cache generation reads that arrive together in one instance share a call
/// (`concertd_queue_poll_many` / `concertd_queue_end_many` of migration 11, one
/// `cache_generations` query), and each caller still gets the answer a call of its own would give.
@Suite("PostgreSQL shared state in batches", .enabled(if: TestServices.postgresURL != nil || TestServices.required))
struct PostgresBatchTests {
    @Test("the batch functions run on generic plans and keep their own synchronous_commit off")
    func batchFunctionsRunOnGenericPlans() async throws {
        try await withMigratedStore { database, _ in
            let forced = try await database.scalar("""
                SELECT count(*) FROM pg_proc
                WHERE proname IN ('concertd_queue_poll_many', 'concertd_queue_end_many', 'concertd_hold')
                  AND 'plan_cache_mode=force_generic_plan' = ANY (proconfig)
                """)
            #expect(forced == 3, "migration 12 sets plan_cache_mode on the three batch functions")
            // A function's SET clause restores only its own setting on exit: the poll batch's
            // transaction still commits without waiting for the WAL, as it did before.
            let settingsAfter = try await database.scalar("""
                WITH polled AS MATERIALIZED (
                  SELECT count(*) AS n FROM concertd_queue_poll_many(ARRAY['9.unknown'], ARRAY[9::BIGINT], ARRAY[0::BIGINT],
                    ARRAY[1::BIGINT], ARRAY[1000::BIGINT], ARRAY[1000::BIGINT], ARRAY[0::BIGINT]))
                SELECT CASE WHEN n = 0 AND current_setting('synchronous_commit') = 'off'
                            AND current_setting('plan_cache_mode') = 'auto' THEN 1 ELSE 0 END FROM polled
                """)
            #expect(settingsAfter == 1)
        }
    }

    /// Runs `body` on a store of a fresh, migrated database, dropped afterwards.
    private func withMigratedStore(_ body: (TestDatabase, PostgresConcertStore) async throws -> Void) async throws {
        let adminURL = try #require(TestServices.postgresURL, "CONCERT_TEST_POSTGRES_URL is not set")
        let database = try await TestDatabase.create(adminURL: adminURL)
        let store = try PostgresConcertStore(url: database.url, logger: TestServices.quietLogger)
        let run = Task { await store.run() }
        defer { run.cancel() }
        do {
            try await store.migrate()
            try await body(database, store)
        } catch {
            try? await database.drop()
            throw error
        }
        try? await database.drop()
    }

    @Test("a poll within its token's refresh reads the row and writes nothing, in a batch or alone")
    func pollsWithinTheRefreshOnlyRead() async throws {
        try await withMigratedStore { database, store in
            // Idle 60 s, so a refresh of 5 s; one slot, taken by the first to join.
            let policy = QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 60)
            let room = PostgresWaitingRoom(store: store, policies: FixedQueuePolicy(policy), pollBatchSize: 64, pollConcurrency: 1)
            var waiting: [String] = []
            _ = try await room.join(userId: 1, concertId: 9, now: t0)
            for user in Int64(2)...21 { waiting.append(try await room.join(userId: user, concertId: 9, now: t0).ticket.token) }
            let place = Dictionary(uniqueKeysWithValues: waiting.enumerated().map { ($1, $0) })
            // Every update of a row gives it a new xmin.
            let versions = "SELECT sum(xmin::text::bigint)::bigint FROM queue_tokens WHERE status = 'WAITING'"
            let seenUntil6s = "SELECT count(*) FROM queue_tokens WHERE status = 'WAITING' AND last_seen = \(t0.adding(milliseconds: 6000).milliseconds)"

            // First polls, together (one alone, then the rest in a batch): each row is seen until 6 s.
            for (token, ticket) in try await together(waiting, { try await room.poll(token: $0, now: t0.adding(milliseconds: 1000)) }) {
                #expect(ticket?.position == place[token], "\(token)")
            }
            #expect(try await database.scalar(seenUntil6s) == 20)
            let written = try await database.scalar(versions)

            // Within the refresh: the same answers, batched and alone, and no row written.
            for (token, ticket) in try await together(waiting, { try await room.poll(token: $0, now: t0.adding(milliseconds: 2000)) }) {
                #expect(ticket?.position == place[token], "\(token)")
            }
            #expect(try await room.poll(token: waiting[5], now: t0.adding(milliseconds: 3000))?.position == 5)
            #expect(try await database.scalar(versions) == written)
            #expect(try await database.scalar(seenUntil6s) == 20)

            // Past it, a poll moves its row again.
            #expect(try await room.poll(token: waiting[0], now: t0.adding(milliseconds: 6001))?.position == 0)
            #expect(try await database.scalar(versions) != written)
            #expect(try await database.scalar(seenUntil6s) == 19)
        }
    }

    /// Runs `call` for every item at once (released together) and returns the answers by item.
    private func together<T: Sendable>(_ items: [String], _ call: @escaping @Sendable (String) async throws -> T) async throws -> [(String, T)] {
        let gate = StartGate()
        return try await withThrowingTaskGroup(of: (String, T).self) { group in
            for item in items {
                group.addTask {
                    await gate.wait()
                    return (item, try await call(item))
                }
            }
            await gate.open(whenArrived: items.count)
            var all: [(String, T)] = []
            for try await answer in group { all.append(answer) }
            return all
        }
    }

    @Test("polls released together share calls; each gets its own token's answer")
    func pollsReleasedTogetherShareCalls() async throws {
        try await withRoundTripCountedStore { store, trips in
            let policy = QueuePolicy(maxActive: 3, activeSeconds: 600, idleSeconds: 60)
            // One call at a time, so that polls arriving together must queue and leave together.
            let room = PostgresWaitingRoom(store: store, policies: FixedQueuePolicy(policy), pollBatchSize: 64, pollConcurrency: 1)

            // Two lines (3 ACTIVE each, the rest WAITING), with waiters gone from inside blocks and at
            // their edges, and one waiter at the back of line 9 who has not polled for two minutes.
            var tokens: [String] = []
            for user in Int64(1)...120 { tokens.append(try await room.join(userId: user, concertId: 9, now: t0).ticket.token) }
            for user in Int64(201)...230 { tokens.append(try await room.join(userId: user, concertId: 10, now: t0).ticket.token) }
            for index in [10, 31, 32, 33, 64, 100] { #expect(try await room.end(token: tokens[index], now: t0)) }
            let left = Set([10, 31, 32, 33, 64, 100].map { tokens[$0] })
            tokens.removeAll { left.contains($0) }
            let idle = try await room.join(userId: 300, concertId: 9, now: t0.adding(seconds: -120)).ticket.token

            // What each token's poll gives alone.
            var alone: [String: QueueTicket] = [:]
            for token in tokens { alone[token] = try #require(try await room.poll(token: token, now: t0)) }
            #expect(alone.values.filter { $0.status == .active }.count == 6)
            #expect(alone[tokens[119 - 6]]?.position == 120 - 3 - 6 - 1, "the last waiter of line 9 before the idle one")

            // Together: every token, some twice, an unknown one and the idle one.
            let asks: [String] = tokens + tokens.prefix(20) + ["9.unknown", idle]
            trips.reset()
            let answers = try await together(asks) { try await room.poll(token: $0, now: t0) }
            #expect(trips.value < asks.count / 4, "\(trips.value) round trips for \(asks.count) polls")
            #expect(answers.count == asks.count)
            for (token, answer) in answers {
                if token == idle || token == "9.unknown" {
                    #expect(answer == nil, "\(token) has no place")
                } else {
                    #expect(answer == alone[token], "\(token): \(String(describing: answer)) against \(String(describing: alone[token]))")
                }
            }
            // The idle waiter lost its place for good, and the lines' counts agree.
            #expect(try await room.poll(token: idle, now: t0) == nil)
            #expect(try await room.counts(concertId: 9, now: t0) == (120 - 3 - 6, 3))
            #expect(try await room.counts(concertId: 10, now: t0) == (30 - 3, 3))
        }
    }

    @Test("ends released together share calls; each token ends once and the lines move up")
    func endsReleasedTogetherShareCalls() async throws {
        try await withRoundTripCountedStore { store, trips in
            let policy = QueuePolicy(maxActive: 3, activeSeconds: 600, idleSeconds: 3600)
            let room = PostgresWaitingRoom(store: store, policies: FixedQueuePolicy(policy), pollBatchSize: 64, endConcurrency: 1)
            var line9: [String] = [], line10: [String] = []
            for user in Int64(1)...100 { line9.append(try await room.join(userId: user, concertId: 9, now: t0).ticket.token) }
            for user in Int64(201)...240 { line10.append(try await room.join(userId: user, concertId: 10, now: t0).ticket.token) }
            // Two ACTIVE and 30 WAITING tokens of line 9 (from inside blocks and at their edges),
            // one ACTIVE and 10 WAITING of line 10; some asked twice, and one unknown.
            let ending9 = [0, 2] + [3, 4, 30, 31, 32, 33, 63, 64, 65] + Array(70...90)
            let ending10 = [1] + Array(5...14)
            let ending = ending9.map { line9[$0] } + ending10.map { line10[$0] }
            let asks: [String] = ending + ending.prefix(8) + ["9.unknown"]
            trips.reset()
            let answers = try await together(asks) { try await room.end(token: $0, now: t0) }
            #expect(trips.value < asks.count / 4, "\(trips.value) round trips for \(asks.count) ends")
            // Each token ended exactly once, whichever of its asks got there first.
            var ended: [String: Int] = [:]
            for (token, answer) in answers where answer { ended[token, default: 0] += 1 }
            #expect(ended.count == ending.count && ended.values.allSatisfy { $0 == 1 })
            #expect(answers.filter { $0.0 == "9.unknown" }.allSatisfy { !$0.1 })
            for token in ending { #expect(try await room.poll(token: token, now: t0) == nil) }
            // The freed slots went to the heads of the lines, and the rest stand in order.
            let left9 = line9.indices.filter { !ending9.contains($0) }.map { line9[$0] }
            let left10 = line10.indices.filter { !ending10.contains($0) }.map { line10[$0] }
            for left in [left9, left10] {
                for (place, token) in left.enumerated() {
                    let ticket = try #require(try await room.poll(token: token, now: t0))
                    if place < 3 {
                        #expect(ticket.status == .active, "place \(place)")
                    } else {
                        #expect(ticket.status == .waiting && ticket.position == place - 3, "place \(place): \(ticket)")
                    }
                }
            }
            #expect(try await room.counts(concertId: 9, now: t0) == (left9.count - 3, 3))
            #expect(try await room.counts(concertId: 10, now: t0) == (left10.count - 3, 3))
        }
    }

    @Test("cache reads released together share queries, and none is served from before an invalidation")
    func cacheReadsReleasedTogetherShareQueries() async throws {
        try await withRoundTripCountedStore { store, trips in
            let cache = GenerationCheckedCache(generations: PostgresCacheGenerations(store: store))
            let later = t0.adding(seconds: 60)
            try await cache.set(namespace: "concerts", key: "list", value: [1], expiresAt: later, now: t0)
            try await cache.set(namespace: "schedules:7", key: "future", value: [2], expiresAt: later, now: t0)
            let keys = (0..<60).map { $0 % 3 == 0 ? "schedules:7" : "concerts" }
            trips.reset()
            let hits = try await together(keys) { namespace in
                try await cache.get(namespace: namespace, key: namespace == "concerts" ? "list" : "future", now: t0)
            }
            #expect(trips.value < keys.count / 4, "\(trips.value) round trips for \(keys.count) reads")
            #expect(hits.allSatisfy { $0.1 == ($0.0 == "concerts" ? [1] : [2]) })

            // Another instance (a second cache on the same database) invalidates; every read that
            // starts after it answered misses, however the reads are batched.
            let other = GenerationCheckedCache(generations: PostgresCacheGenerations(store: store))
            try await other.invalidate(namespace: "concerts")
            let after = try await together(keys) { namespace in
                try await cache.get(namespace: namespace, key: namespace == "concerts" ? "list" : "future", now: t0)
            }
            #expect(after.allSatisfy { $0.1 == ($0.0 == "concerts" ? nil : [2]) }, "\(after.filter { $0.0 == "concerts" && $0.1 != nil }.count) stale")
        }
    }
}
