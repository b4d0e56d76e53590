import ConcertDomain
import ConcertPostgres
import ConcertSQLite
import ConcertStore
import Logging
import ServiceLifecycle
import SharedState

/// The storage and shared state that the configuration names: SQLite or PostgreSQL for the
/// database; for the waiting room, cache and rate limiter: Redis when `CONCERT_REDIS_URL` is set,
/// else PostgreSQL when that is the database, else this process (SQLite: one instance).
struct Backend {
    var store: any ConcertStore
    var waitingRoom: any WaitingRoom
    var cache: any ResponseCache
    var rateLimiter: any RateLimiter
    /// Long-running parts (connection pools) that the application's service group runs.
    var services: [any Service]

    static func make(config: AppConfig, clock: WallClock = .system, logger: Logger) async throws -> Backend {
        var services: [any Service] = []
        let store: any ConcertStore
        var postgres: PostgresConcertStore?
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
            let made = try Backend.makePostgresStore(url: url, logger: logger)
            store = made.store
            postgres = made.store
            services.append(made.service)
        } else {
            throw ConfigError("CONCERT_DATABASE_URL must start with sqlite: or postgres://, got '\(url)'")
        }

        if let redisURL = config.redisURL {
            let redis = try Backend.makeRedisState(url: redisURL, keyPrefix: config.redisKeyPrefix, policy: config.queue, logger: logger)
            return Backend(store: store, waitingRoom: redis.waitingRoom, cache: redis.cache, rateLimiter: redis.rateLimiter,
                           services: services + redis.services)
        }
        if let postgres {
            // PostgreSQL alone, for any number of instances: the waiting room, the rate limiter and
            // the cache generations live in the database too.
            let shared = Backend.makePostgresState(store: postgres, policy: config.queue, clock: clock, logger: logger)
            return Backend(store: store, waitingRoom: shared.waitingRoom, cache: shared.cache, rateLimiter: shared.rateLimiter,
                           services: services + shared.services)
        }
        return Backend(store: store, waitingRoom: InProcessWaitingRoom(policy: config.queue), cache: InProcessResponseCache(),
                       rateLimiter: InProcessRateLimiter(), services: services)
    }
}
