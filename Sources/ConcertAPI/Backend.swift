import ConcertDomain
import ConcertSQLite
import ConcertStore
import Logging
import ServiceLifecycle
import SharedState

/// The storage and shared state that the configuration names: SQLite or PostgreSQL for the
/// database; in-process or Redis for the waiting room, cache and rate limiter.
struct Backend {
    var store: any ConcertStore
    var waitingRoom: any WaitingRoom
    var cache: any ResponseCache
    var rateLimiter: any RateLimiter
    /// Long-running parts (connection pools) that the application's service group runs.
    var services: [any Service]

    static func make(config: AppConfig, logger: Logger) async throws -> Backend {
        var services: [any Service] = []
        let store: any ConcertStore
        let url = config.databaseURL
        if url.hasPrefix("sqlite:") {
            let path = String(url.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw ConfigError("CONCERT_DATABASE_URL 'sqlite:' needs a path, e.g. sqlite:concert.sqlite or sqlite::memory:") }
            do {
                store = try SQLiteConcertStore(path: path)
            } catch {
                throw ConfigError("cannot open the SQLite database at '\(path)': \(error)")
            }
        } else if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            let postgres = try Backend.makePostgresStore(url: url, logger: logger)
            store = postgres.store
            services.append(postgres.service)
        } else {
            throw ConfigError("CONCERT_DATABASE_URL must start with sqlite: or postgres://, got '\(url)'")
        }

        if let redisURL = config.redisURL {
            let redis = try Backend.makeRedisState(url: redisURL, keyPrefix: config.redisKeyPrefix, policy: config.queue, logger: logger)
            return Backend(store: store, waitingRoom: redis.waitingRoom, cache: redis.cache, rateLimiter: redis.rateLimiter,
                           services: services + redis.services)
        }
        // PostgreSQL without Redis may be shared by several instances, whose in-process caches
        // could not be invalidated by each other's admin writes: no cache then.
        let cache: any ResponseCache = store is SQLiteConcertStore ? InProcessResponseCache() : NoResponseCache()
        return Backend(store: store, waitingRoom: InProcessWaitingRoom(policy: config.queue), cache: cache,
                       rateLimiter: InProcessRateLimiter(), services: services)
    }
}
