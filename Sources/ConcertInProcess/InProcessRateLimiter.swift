import ConcertDomain
import SharedState
import Synchronization

/// Token buckets kept in this process.
public final class InProcessRateLimiter: RateLimiter {
    private struct Bucket {
        var tokens: Double
        var updatedAt: Timestamp
    }
    private let buckets = Mutex<[String: Bucket]>([:])

    public init() {}

    public func acquire(key: String, limit: Int, now: Timestamp) async throws -> Int? {
        guard limit > 0 else { return nil }
        return buckets.withLock { buckets in
            if buckets.count > 100_000 { buckets.removeAll(keepingCapacity: true) }
            var bucket = buckets[key] ?? Bucket(tokens: Double(limit), updatedAt: now)
            let elapsed = Double(max(0, now.milliseconds - bucket.updatedAt.milliseconds)) / 1000
            bucket.tokens = min(Double(limit), bucket.tokens + elapsed * Double(limit))
            bucket.updatedAt = now
            defer { buckets[key] = bucket }
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                return nil
            }
            let wait = (1 - bucket.tokens) / Double(limit)
            return max(1, Int(wait.rounded(.up)))
        }
    }
}
