import ConcertDomain
import ConcertPostgres
import ConcertTestSupport
import PostgresNIO
import SharedState
import Testing

/// A poll must not read the line, whatever the planner believes about `queue_tokens`.
///
/// The case that broke it: statistics taken while the table held another concert's line (or
/// none), then an on-sale filling a new line faster than autovacuum analyses. Migration 3's poll
/// then walked the whole new line through the `concert_id` index (3,440 index entries for one
/// poll at 3,000 waiters, measured before migration 9). The count comes from PostgreSQL's own
/// per-transaction statistics, so it is what the executor read, not a plan's guess.
@Suite("PostgreSQL waiting room cost", .enabled(if: TestServices.postgresURL != nil, "CONCERT_TEST_POSTGRES_URL is not set"))
struct PostgresLineCostTests {
    private let now: Int64 = 1_750_000_000_000
    private let waiters = 3_000

    @Test func aPollReadsAFewRowsOfALineTheStatisticsHaveNotSeen() async throws {
        let (store, close) = try await PostgresTestStore.start(adminURL: try #require(TestServices.postgresURL))
        do {
            try await withConnection(to: store.url) { connection in
                // Statistics of an earlier, small line of concert 7; autovacuum kept away.
                try await connection.run("""
                    SELECT count(*) FROM (SELECT concertd_queue_join(u, 7, '7.' || md5(u::text), \(now), 1000, 600000, 3600000, 0)
                                          FROM generate_series(1, 50) u) joined
                    """)
                try await connection.run("ANALYZE queue_tokens")
                try await connection.run("ALTER TABLE queue_tokens SET (autovacuum_enabled = false)")
                // The on-sale: one ACTIVE slot, everyone else waits.
                try await connection.run("""
                    SELECT count(*) FROM (SELECT concertd_queue_join(u, 1, '1.' || md5(u::text), \(now), 1, 600000, 3600000, 0)
                                          FROM generate_series(1, \(waiters)) u) joined
                    """)
                let last = try await token(connection, user: waiters)
                let middle = try await token(connection, user: waiters / 2)

                let (position, pollReads) = try await readsOfOneTransaction(connection, """
                    SELECT o_position FROM concertd_queue_poll('\(last)', 1, \(now + 1000), 1, 600000, 3600000, 0)
                    """)
                #expect(position == Int64(waiters - 2))
                // n/512 buckets + ≤ 15 blocks + ≤ 31 waiters + the token's own row, and no line scan.
                #expect(pollReads < 60, "one poll read \(pollReads) rows of queue_tokens")

                let (ended, endReads) = try await readsOfOneTransaction(connection, """
                    SELECT concertd_queue_end('\(middle)', 1, \(now + 1000), 1, 600000, 3600000, 0)::int
                    """)
                #expect(ended == 1)
                #expect(endReads < 60, "one end read \(endReads) rows of queue_tokens")
            }
        } catch {
            await close()
            throw error
        }
        await close()
    }

    /// Runs `sql` (one row, one integer column) in a transaction of its own and also returns how
    /// many rows of `queue_tokens` (sequential and through any index) it read. (The statistics
    /// functions count what this session has not reported yet, across transactions: hence the
    /// difference of two readings inside one transaction.)
    private func readsOfOneTransaction(_ connection: PostgresConnection, _ sql: String) async throws -> (Int64, Int64) {
        let reads = """
            SELECT pg_stat_get_xact_tuples_returned('queue_tokens'::regclass)
                   + (SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)::bigint
                      FROM pg_index WHERE indrelid = 'queue_tokens'::regclass)
            """
        try await connection.run("BEGIN")
        let before = try await scalar(connection, reads)
        let value = try await scalar(connection, sql)
        let after = try await scalar(connection, reads)
        try await connection.run("ROLLBACK")
        return (value, after - before)
    }

    private func token(_ connection: PostgresConnection, user: Int) async throws -> String {
        let rows = try await connection.query("SELECT token FROM queue_tokens WHERE concert_id = 1 AND user_id = \(Int64(user))",
                                              logger: TestServices.quietLogger).collect()
        return try #require(rows.first).decode(String.self)
    }

    private func scalar(_ connection: PostgresConnection, _ sql: String) async throws -> Int64 {
        let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: TestServices.quietLogger).collect()
        return try #require(rows.first).decode(Int64.self)
    }

    private func withConnection(to url: PostgresURL, _ body: (PostgresConnection) async throws -> Void) async throws {
        let connection = try await PostgresTestStore.connect(to: url, id: 9)
        do {
            try await body(connection)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}
