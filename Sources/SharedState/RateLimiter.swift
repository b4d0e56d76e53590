import ConcertDomain

/// Decides whether a client (a user or an address) may make one more request now.
public protocol RateLimiter: Sendable {
    /// `limit` requests per second with a burst of `limit`. Returns nil when allowed, else the
    /// number of whole seconds after which a retry would be allowed.
    func acquire(key: String, limit: Int, now: Timestamp) async throws -> Int?
}
