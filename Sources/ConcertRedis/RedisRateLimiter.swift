import ConcertDomain
import SharedState

/// Token buckets in Redis, shared by every instance: the same arithmetic as
/// `InProcessRateLimiter`, done in one Lua script per request so that concurrent requests from
/// several instances draw from one bucket.
public final class RedisRateLimiter: RateLimiter {
    private let pool: RedisConnectionPool
    private let keyPrefix: String

    public init(pool: RedisConnectionPool, keyPrefix: String = "concertd:") {
        self.pool = pool
        self.keyPrefix = keyPrefix
    }

    public func acquire(key: String, limit: Int, now: Timestamp) async throws -> Int? {
        guard limit > 0 else { return nil }
        let keys = [keyPrefix + "rate:" + key]
        let arguments = [RESPArgument(limit), RESPArgument(now.milliseconds)]
        let reply = try await pool.unavailableOnFailure("rate limit") {
            try await pool.evalSHA(Self.acquireScript, keys: keys, arguments: arguments)
        }
        guard let wait = reply.integer else { throw unexpectedReply("rate limit", reply) }
        return wait < 0 ? nil : Int(wait)
    }

    // KEYS[1] = bucket; ARGV = limit per second (also the burst), now in ms. Returns -1 when
    // allowed, else whole seconds to wait. Tokens are stored with %.17g so they read back exactly.
    // A bucket refills completely in one second; after a minute unused it is dropped, which
    // is the same as a full one.
    static let acquireScript = RedisScript("""
    local limit = tonumber(ARGV[1])
    local now = tonumber(ARGV[2])
    local stored = redis.call('HMGET', KEYS[1], 'tokens', 'updatedAt')
    local tokens, updatedAt = tonumber(stored[1]), tonumber(stored[2])
    if not tokens or not updatedAt then
      tokens, updatedAt = limit, now
    end
    local elapsed = math.max(0, now - updatedAt) / 1000
    tokens = math.min(limit, tokens + elapsed * limit)
    local wait = -1
    if tokens >= 1 then
      tokens = tokens - 1
    else
      wait = math.max(1, math.ceil((1 - tokens) / limit))
    end
    redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updatedAt', ARGV[2])
    redis.call('PEXPIRE', KEYS[1], 60000)
    return wait
    """)
}
