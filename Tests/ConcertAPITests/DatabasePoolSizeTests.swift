import ConcertAPI
import ConcertPostgres
import ConcertServer
import ConcertTestSupport
import Logging
import Testing

/// `CONCERT_DATABASE_POOL_SIZE` bounds the PostgreSQL connections one instance opens, so that
/// operators can fit N instances into the server's `max_connections`.
@Suite("Database pool size", .enabled(if: TestServices.postgresURL != nil || TestServices.required))
struct DatabasePoolSizeTests {
    @Test("eight reads stuck behind a lock hold no more than the pool size of 2 connections")
    func poolSizeBoundsConnections() async throws {
        let adminURL = try #require(TestServices.postgresURL, "CONCERT_TEST_POSTGRES_URL is not set")
        let database = try await TestDatabase.create(adminURL: adminURL)
        var config = AppConfig()
        config.databaseURL = database.url
        config.databasePoolSize = 2
        let engines = try await Engines.make(config: config, logger: TestServices.quietLogger)
        let store = try #require(engines.store as? PostgresConcertStore)
        let run = Task { await store.run() }
        var reads: [Task<Void, Never>] = []
        var blocker: HeldTransaction?
        do {
            try await store.migrate()
            // A transaction of the test's own holds the concerts table, so that every read of the
            // store waits on it while holding its connection.
            blocker = try await HeldTransaction.begin(on: database, ["LOCK TABLE concerts IN ACCESS EXCLUSIVE MODE"])
            reads = (0..<8).map { _ in Task { _ = try? await store.concert(id: 1) } }
            let waitingOnTheLock = """
                SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM concerts%'
                """
            // Two reads get connections and wait on the lock; the others wait for a connection.
            var most: Int64 = 0
            for _ in 0..<500 where most < 2 {
                most = max(most, try await database.scalar(waitingOnTheLock))
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(most == 2, "reads waiting on the lock: \(most)")
            // With a larger pool the other six would reach the lock within milliseconds.
            for _ in 0..<30 {
                most = max(most, try await database.scalar(waitingOnTheLock))
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(most == 2, "reads waiting on the lock: \(most)")
        } catch {
            Issue.record(error)
        }
        await blocker?.release()
        for read in reads { await read.value }
        run.cancel()
        try? await database.drop()
    }
}
