import ConcertDomain
import PostgresNIO
import SharedState

/// Token claims in PostgreSQL (deployments without Redis), in the UNLOGGED table
/// `queue_token_claims` (migration 8): a claim is one upsert that takes the row only when it is
/// free or run out, a release one delete of the owner's row. Their commits are not waited for
/// (synchronous_commit off for the statement's own transaction), like the waiting room's: a
/// claim only has to outlive the payment it guards, which itself commits durably.
public final class PostgresTokenClaims: TokenClaims {
    private let store: PostgresConcertStore

    public init(store: PostgresConcertStore) { self.store = store }

    public func claim(token: String, owner: String, until: Timestamp, now: Timestamp) async throws -> Bool {
        let rows = try await store.sharedStatePrepared("token claim", TokenClaimStatement(
            token: token, owner: owner, until: until.milliseconds, now: now.milliseconds))
        return !rows.isEmpty
    }

    public func release(token: String, owner: String) async throws {
        _ = try await store.sharedStatePrepared("token claim release", TokenClaimReleaseStatement(token: token, owner: owner))
    }

    /// Deletes claims that ran out before `cutoff` (the janitor, every few seconds).
    @discardableResult
    public func purge(expiredBefore cutoff: Timestamp) async throws -> Int {
        let rows = try await store.sharedStateQuery("token claim purge", """
            WITH gone AS (DELETE FROM queue_token_claims WHERE claimed_until < \(cutoff.milliseconds) RETURNING 1)
            SELECT count(*) FROM gone
            """)
        return Int(try rows.first?.decode(Int64.self) ?? 0)
    }
}
