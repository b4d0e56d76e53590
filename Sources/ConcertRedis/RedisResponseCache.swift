import ConcertDomain
import SharedState

/// The response cache in Redis, shared by every instance.
///
/// A namespace is dropped as a whole by bumping its generation: entries are stored under
/// `cache:<namespace>:<generation>:<key>`, so after `invalidate` no reader finds the old ones,
/// and Redis removes them when their PX runs out. Each read and write is one script that reads
/// the generation and the entry together.
///
/// Entries carry their `expiresAt` in front of the value, so expiry follows the caller's `now`
/// exactly as `InProcessResponseCache` does; the PX only lets Redis reclaim the memory.
public final class RedisResponseCache: ResponseCache {
    private let pool: RedisConnectionPool
    private let keyPrefix: String

    public init(pool: RedisConnectionPool, keyPrefix: String = "concertd:") {
        self.pool = pool
        self.keyPrefix = keyPrefix
    }

    public func get(namespace: String, key: String, now: Timestamp) async throws -> [UInt8]? {
        let keys = [generationKey(namespace)]
        let arguments = [RESPArgument(entryKeyStem(namespace)), RESPArgument(key)]
        let reply = try await pool.unavailableOnFailure("cache get") {
            try await pool.evalSHA(Self.getScript, keys: keys, arguments: arguments)
        }
        if reply.isNull { return nil }
        guard let stored = reply.bytes, stored.count >= 8 else { throw unexpectedReply("cache get", reply) }
        let expiresAt = stored.prefix(8).reduce(Int64(0)) { $0 << 8 | Int64($1) }
        guard expiresAt > now.milliseconds else { return nil }
        return Array(stored.dropFirst(8))
    }

    public func set(namespace: String, key: String, value: [UInt8], expiresAt: Timestamp, now: Timestamp) async throws {
        guard expiresAt > now else { return }
        var stored: [UInt8] = []
        stored.reserveCapacity(8 + value.count)
        for shift in stride(from: 56, through: 0, by: -8) {
            stored.append(UInt8(truncatingIfNeeded: expiresAt.milliseconds >> Int64(shift)))
        }
        stored.append(contentsOf: value)
        let keys = [generationKey(namespace)]
        let arguments = [
            RESPArgument(entryKeyStem(namespace)), RESPArgument(key), RESPArgument(bytes: stored),
            RESPArgument(expiresAt.milliseconds - now.milliseconds),
        ]
        _ = try await pool.unavailableOnFailure("cache set") {
            try await pool.evalSHA(Self.setScript, keys: keys, arguments: arguments)
        }
    }

    public func invalidate(namespace: String) async throws {
        let key = generationKey(namespace)
        _ = try await pool.unavailableOnFailure("cache invalidate") {
            try await pool.send("INCR", RESPArgument(key))
        }
    }

    // The namespace's length goes into the key so that no namespace/key pair can spell another's.
    private func entryKeyStem(_ namespace: String) -> String {
        keyPrefix + "cache:\(namespace.utf8.count):\(namespace):"
    }

    private func generationKey(_ namespace: String) -> String {
        entryKeyStem(namespace) + "generation"
    }

    // KEYS[1] = generation; ARGV = stem, key. Entry keys are built here from the generation, so
    // this suits a single Redis (not a cluster), which is what the service uses.
    static let getScript = RedisScript("""
    local generation = redis.call('GET', KEYS[1]) or '0'
    return redis.call('GET', ARGV[1] .. 'g' .. generation .. ':' .. ARGV[2])
    """)

    // KEYS[1] = generation; ARGV = stem, key, value, milliseconds to live.
    static let setScript = RedisScript("""
    local generation = redis.call('GET', KEYS[1]) or '0'
    redis.call('SET', ARGV[1] .. 'g' .. generation .. ':' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
    return 1
    """)
}
