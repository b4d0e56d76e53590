import ConcertAPI
import ConcertDomain
import ConcertPostgres
import ConcertRedis
import ConcertSQLite
import ConcertStore
import Logging
import ServiceLifecycle
import SharedState

/// Runs a connection pool for the life of the application and closes it on shutdown.
struct ConnectionPoolService: Service {
    let run: @Sendable () async -> Void
    let close: @Sendable () async -> Void

    func run() async throws {
        await cancelWhenGracefulShutdown { await run() }
        await close()
    }
}

extension Backend {
    /// The storage and shared state that the configuration names: SQLite or PostgreSQL for the
    /// database (`CONCERT_DATABASE_URL`, whose scheme is read here only); in-process or Redis for
    /// the waiting room, cache and rate limiter (`CONCERT_REDIS_URL`).
    public static func make(config: AppConfig, logger: Logger) async throws -> Backend {
        var services: [any Service] = []
        let store: any ConcertStore
        let embedded: Bool
        let url = config.databaseURL
        if url.hasPrefix("sqlite:") {
            let path = String(url.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw ConfigError("CONCERT_DATABASE_URL 'sqlite:' needs a path, e.g. sqlite:concert.sqlite or sqlite::memory:") }
            do {
                store = try SQLiteConcertStore(path: path)
            } catch {
                throw ConfigError("cannot open the SQLite database at '\(path)': \(error)")
            }
            embedded = true
        } else if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            let postgres = try Backend.makePostgresStore(url: url, logger: logger)
            store = postgres.store
            services.append(postgres.service)
            embedded = false
        } else {
            throw ConfigError("CONCERT_DATABASE_URL must start with sqlite: or postgres://, got '\(url)'")
        }

        if let redisURL = config.redisURL {
            let redis = try Backend.makeRedisState(url: redisURL, keyPrefix: config.redisKeyPrefix, policy: config.queue, logger: logger)
            return Backend(store: store, waitingRoom: redis.waitingRoom, cache: redis.cache, rateLimiter: redis.rateLimiter,
                           services: services + redis.services)
        }
        if embedded {
            return Backend(store: store, waitingRoom: InProcessWaitingRoom(policy: config.queue), cache: InProcessResponseCache(),
                           rateLimiter: InProcessRateLimiter(), services: services)
        }
        // PostgreSQL without Redis may be shared by several instances, whose in-process caches
        // could not be invalidated by each other's admin writes: no cache then. And each instance
        // would run its own lines, so the operator is told once the database is ready.
        return Backend(store: store, waitingRoom: InProcessWaitingRoom(policy: config.queue), cache: NoResponseCache(),
                       rateLimiter: InProcessRateLimiter(), services: services,
                       startupWarnings: ["""
                           PostgreSQL without CONCERT_REDIS_URL: the waiting room is this process's own. Run one instance, \
                           or set CONCERT_REDIS_URL so that every instance shares one line per concert.
                           """])
    }

    static func makePostgresStore(url: String, logger: Logger) throws -> (store: any ConcertStore, service: any Service) {
        // PostgresNIO reports every failed connection attempt at info level; during an outage that
        // is one line per attempt. Readiness, 503 answers and our own warnings tell the story.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        let store: PostgresConcertStore
        do {
            store = try PostgresConcertStore(url: url, logger: poolLogger)
        } catch {
            throw ConfigError("CONCERT_DATABASE_URL: \(error)")
        }
        let service = ConnectionPoolService(run: { await store.run() }, close: {})
        return (store, service)
    }

    static func makeRedisState(url: String, keyPrefix: String, policy: QueuePolicy, logger: Logger) throws
        -> (waitingRoom: any WaitingRoom, cache: any ResponseCache, rateLimiter: any RateLimiter, services: [any Service]) {
        let pool: RedisConnectionPool
        do {
            pool = try RedisConnectionPool(url: url, connections: 4, logger: logger)
        } catch {
            throw ConfigError("CONCERT_REDIS_URL: \(error)")
        }
        let service = ConnectionPoolService(run: {
            // The pool connects on demand; this service only exists to close it at shutdown.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        }, close: { await pool.close() })
        return (RedisWaitingRoom(pool: pool, policy: policy, keyPrefix: keyPrefix), RedisResponseCache(pool: pool, keyPrefix: keyPrefix),
                RedisRateLimiter(pool: pool, keyPrefix: keyPrefix), [service])
    }
}
