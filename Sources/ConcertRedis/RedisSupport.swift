// Callers build a `RedisConnectionPool` to hand to the Redis-backed stores, so it comes with them.
@_exported import RESPClient
import SharedState

extension RedisConnectionPool {
    /// Runs Redis work, turning every way it can fail into `SharedStateUnavailable`: whether Redis
    /// is down, slow, or answered with an error, the request cannot be served from shared state.
    func unavailableOnFailure<Result>(_ what: String, _ body: () async throws -> Result) async throws(SharedStateUnavailable) -> Result {
        do {
            return try await body()
        } catch let error as SharedStateUnavailable {
            throw error
        } catch {
            throw SharedStateUnavailable("Redis \(what) failed: \(error)")
        }
    }
}

/// Joins key parts under a prefix: `prefix` + parts separated by ':'.
func redisKey(_ prefix: String, _ parts: String...) -> String {
    prefix + parts.joined(separator: ":")
}

func unexpectedReply(_ what: String, _ value: RESPValue) -> SharedStateUnavailable {
    SharedStateUnavailable("Redis \(what): unexpected reply \(value)")
}
