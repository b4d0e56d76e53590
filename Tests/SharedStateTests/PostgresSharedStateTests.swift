import ConcertDomain
import ConcertInProcess
import ConcertPostgres
import ConcertTestSupport
import SharedState
import Testing

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

/// What only the PostgreSQL implementations have: several instances (each its own pool, as
/// separate processes would have) on one database.
@Suite("PostgreSQL shared state", .enabled(if: TestServices.postgresURL != nil, "CONCERT_TEST_POSTGRES_URL is not set"))
struct PostgresSharedStateTests {
    /// Two stores (two pools) on one fresh database, for as long as `body` runs.
    private func withTwoInstances(_ body: (PostgresConcertStore, PostgresConcertStore) async throws -> Void) async throws {
        let (first, second, close) = try await PostgresTestStore.startTwoInstances(adminURL: try #require(TestServices.postgresURL))
        do {
            try await body(first, second)
        } catch {
            await close()
            throw error
        }
        await close()
    }

    // Two instances serving one line: TwoInstancesTests, with Redis's.

    /// Positions stay exact across the 512-arrival buckets as waiters leave from anywhere.
    @Test func positionsAreExactAcrossBuckets() async throws {
        try await withTwoInstances { storeA, storeB in
            let policy = QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 3600)
            let rooms = [PostgresWaitingRoom(store: storeA, policy: policy), PostgresWaitingRoom(store: storeB, policy: policy)]
            let users = 1300
            var tokens: [String] = []
            for user in 1...users {
                tokens.append(try await rooms[user % 2].join(userId: Int64(user), concertId: 9, now: t0).ticket.token)
            }
            // Leave from the middle of several buckets and at their edges.
            let leaving: Set<Int> = [5, 511, 512, 513, 700, 1023, 1024, 1025, 1200, users - 1]
            for index in leaving.sorted() { #expect(try await rooms[index % 2].end(token: tokens[index], now: t0)) }
            var expected = 0
            for index in 1..<users where !leaving.contains(index) {
                #expect(try await rooms[index % 2].poll(token: tokens[index], now: t0)?.position == expected, "waiter \(index)")
                expected += 1
            }
            #expect(try await rooms[0].counts(concertId: 9, now: t0) == (users - 1 - leaving.count, 1))
        }
    }

    @Test func aCacheInvalidationReachesEveryInstance() async throws {
        try await withTwoInstances { storeA, storeB in
            try await expectInvalidationReachesEveryInstance(
                GenerationCheckedCache(generations: PostgresCacheGenerations(store: storeA)),
                GenerationCheckedCache(generations: PostgresCacheGenerations(store: storeB)))
        }
    }

    @Test func instancesDrawFromOneRateLimitBucket() async throws {
        try await withTwoInstances { storeA, storeB in
            let limiters = [PostgresRateLimiter(store: storeA), PostgresRateLimiter(store: storeB)]
            let gate = StartGate(opensWhenArrived: 60)
            let allowed = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<60 {
                    group.addTask {
                        await gate.wait()
                        return try await limiters[index % 2].acquire(key: "user:1", limit: 10, now: t0) == nil
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(allowed == 10)
            #expect(try await limiters[0].purge(unusedSince: t0.adding(seconds: 1)) == 1)
            #expect(try await limiters[1].acquire(key: "user:1", limit: 10, now: t0) == nil, "a purged bucket is a full one")
        }
    }

    @Test func aDatabaseThatCannotBeReachedIsSharedStateUnavailable() async throws {
        let closed = try SilentServer(listening: false)
        let store = try PostgresConcertStore(
            url: "postgres://nobody@127.0.0.1:\(closed.port)/none", logger: TestServices.quietLogger,
            options: PostgresStoreOptions(connectTimeout: .milliseconds(300), connectionWaitLimit: .milliseconds(500)))
        let run = Task { await store.run() }
        let room = PostgresWaitingRoom(store: store, policy: QueuePolicy())
        await #expect(throws: SharedStateUnavailable.self) { _ = try await room.poll(token: QueueToken.make(concertId: 1), now: t0) }
        await #expect(throws: SharedStateUnavailable.self) {
            _ = try await PostgresRateLimiter(store: store).acquire(key: "k", limit: 1, now: t0)
        }
        run.cancel()
        await run.value
    }
}
