import ConcertDomain
import RESPClient
import SharedState

/// Token claims in Redis: one script takes a claim that is free or run out by the caller's clock
/// (as the waiting room's scripts use the caller's `now`), another releases it only for its
/// owner. One round trip each. The key also expires by Redis's own clock, to be collected.
public final class RedisTokenClaims: TokenClaims {
    private let pool: RedisConnectionPool
    private let keyPrefix: String

    public init(pool: RedisConnectionPool, keyPrefix: String = "concertd:") {
        self.pool = pool
        self.keyPrefix = keyPrefix
    }

    public func claim(token: String, owner: String, until: Timestamp, now: Timestamp) async throws -> Bool {
        let ttl = max(1, until.milliseconds - now.milliseconds)
        let reply = try await pool.unavailableOnFailure("token claim") {
            try await pool.evalSHA(Self.claimScript, keys: [keyPrefix + "claim:" + token],
                                   arguments: [RESPArgument(owner), RESPArgument(until.milliseconds), RESPArgument(now.milliseconds),
                                               RESPArgument(ttl)])
        }
        guard let taken = reply.integer else { throw unexpectedReply("token claim", reply) }
        return taken == 1
    }

    public func release(token: String, owner: String) async throws {
        _ = try await pool.unavailableOnFailure("token claim release") {
            try await pool.evalSHA(Self.releaseScript, keys: [keyPrefix + "claim:" + token], arguments: [RESPArgument(owner)])
        }
    }

    // KEYS[1] = the claim; ARGV = owner, until (ms), now (ms), ttl (ms). The value is
    // "<until> <owner>". Returns 1 when taken.
    static let claimScript = RedisScript("""
    local held = redis.call('GET', KEYS[1])
    if held then
      local space = string.find(held, ' ', 1, true)
      local heldUntil = tonumber(string.sub(held, 1, space - 1))
      if heldUntil > tonumber(ARGV[3]) and string.sub(held, space + 1) ~= ARGV[1] then return 0 end
    end
    redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. ARGV[1], 'PX', ARGV[4])
    return 1
    """)

    // KEYS[1] = the claim; ARGV[1] = owner. Deletes it only when that owner holds it.
    static let releaseScript = RedisScript("""
    local held = redis.call('GET', KEYS[1])
    if held and string.sub(held, string.find(held, ' ', 1, true) + 1) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0
    """)
}
