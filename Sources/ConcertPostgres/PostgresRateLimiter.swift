import ConcertDomain
import PostgresNIO
import SharedState

/// Token buckets in PostgreSQL, shared by every instance on the database: the arithmetic of
/// `InProcessRateLimiter`, done by one function call per request (`concertd_rate_limit_acquire`,
/// migration 3) that locks the bucket's row, so concurrent requests through several instances
/// draw from one bucket. The table is UNLOGGED (no WAL per request).
public final class PostgresRateLimiter: RateLimiter {
    private let store: PostgresConcertStore

    public init(store: PostgresConcertStore) { self.store = store }

    public func acquire(key: String, limit: Int, now: Timestamp) async throws -> Int? {
        guard limit > 0 else { return nil }
        let rows = try await store.sharedStateQuery("rate limit", """
            SELECT concertd_rate_limit_acquire(\(key), \(limit), \(now.milliseconds))
            """)
        return try rows.first?.decode(Int64?.self).map { Int($0) }
    }

    /// Deletes buckets not used since `cutoff`. A bucket refills completely within a second, so
    /// one unused for longer is the same as none. Returns how many went.
    @discardableResult
    public func purge(unusedSince cutoff: Timestamp) async throws -> Int {
        let rows = try await store.sharedStateQuery("rate limit purge", """
            WITH gone AS (DELETE FROM rate_limit_buckets WHERE updated_at < \(cutoff.milliseconds) RETURNING 1)
            SELECT count(*) FROM gone
            """)
        return Int(try rows.first?.decode(Int64.self) ?? 0)
    }
}
