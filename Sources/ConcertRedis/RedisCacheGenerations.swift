import SharedState

/// The cache generations (`GenerationCheckedCache`) in Redis: one integer key per namespace,
/// `cache:<len>:<namespace>:generation` under the prefix, read with one `MGET` per batch of reads
/// and bumped with `INCR`.
///
/// The bodies used to live in Redis too, read and written by a script that joined the generation
/// to the entry's key. Every cached list then crossed the network on every request (one script
/// call each, 44 % of `/healthz` in docs/benchmarks.md); in each instance's memory, with the
/// generation read shared by the reads that arrive together, a request asks Redis for a number
/// that many requests share.
public final class RedisCacheGenerations: CacheGenerations {
    private let pool: RedisConnectionPool
    private let keyPrefix: String

    public init(pool: RedisConnectionPool, keyPrefix: String = "concertd:") {
        self.pool = pool
        self.keyPrefix = keyPrefix
    }

    public func generations(of namespaces: [String]) async throws -> [Int64] {
        guard !namespaces.isEmpty else { return [] }
        let command = RESPCommand("MGET", arguments: namespaces.map { RESPArgument(generationKey($0)) })
        let reply = try await pool.unavailableOnFailure("cache generations") { try await pool.send(command) }
        guard let values = reply.array, values.count == namespaces.count else { throw unexpectedReply("cache generations", reply) }
        return try values.map { value in
            if value.isNull { return 0 }
            guard let generation = value.integer else { throw unexpectedReply("cache generations", reply) }
            return generation
        }
    }

    public func bump(namespace: String) async throws {
        let key = generationKey(namespace)
        _ = try await pool.unavailableOnFailure("cache invalidate") { try await pool.send("INCR", RESPArgument(key)) }
    }

    // The namespace's length goes into the key so that no namespace can spell another's key.
    private func generationKey(_ namespace: String) -> String {
        keyPrefix + "cache:\(namespace.utf8.count):\(namespace):generation"
    }
}
