import ConcertAPI
import ConcertDomain
import ConcertInProcess
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

extension Engines {
    /// The storage and shared state that the configuration names: SQLite or PostgreSQL for the
    /// database (`CONCERT_DATABASE_URL`, whose scheme is read here only); for the waiting room,
    /// cache and rate limiter: Redis when `CONCERT_REDIS_URL` is set, else PostgreSQL when that is
    /// the database, else this process (SQLite: one instance).
    public static func make(config: AppConfig, clock: WallClock = .system, logger: Logger) async throws -> Engines {
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
            let made = try Engines.makePostgresStore(url: url, poolSize: config.databasePoolSize, logger: logger)
            store = made.store
            postgres = made.store
            services.append(made.service)
        } else {
            throw ConfigError("CONCERT_DATABASE_URL must start with sqlite: or postgres://, got '\(url)'")
        }

        // Every line's policy (the settings' defaults until an operator changes it) lives in the
        // database; the waiting room asks for it with every operation.
        let policies = LinePolicies(store: store, settings: config.queue, clock: clock)
        if let redisURL = config.redisURL {
            let redis = try Engines.makeRedisState(url: redisURL, keyPrefix: config.redisKeyPrefix, policies: policies, logger: logger)
            return Engines(store: store, waitingRoom: redis.waitingRoom, cache: redis.cache, rateLimiter: redis.rateLimiter,
                           linePolicies: policies, tokenClaims: redis.tokenClaims, services: services + redis.services)
        }
        if let postgres {
            // PostgreSQL alone, for any number of instances: the waiting room, the rate limiter and
            // the cache generations live in the database too.
            let shared = Engines.makePostgresState(store: postgres, policies: policies, clock: clock, logger: logger)
            return Engines(store: store, waitingRoom: shared.waitingRoom, cache: shared.cache, rateLimiter: shared.rateLimiter,
                           linePolicies: policies, tokenClaims: shared.tokenClaims,
                           ticketedWrites: PostgresTicketedWrites(store: postgres, policies: policies),
                           services: services + shared.services)
        }
        return Engines(store: store, waitingRoom: InProcessWaitingRoom(policies: policies), cache: InProcessResponseCache(),
                       rateLimiter: InProcessRateLimiter(), linePolicies: policies, tokenClaims: InProcessTokenClaims(),
                       services: services)
    }

    static func makePostgresStore(url: String, poolSize: Int, logger: Logger) throws -> (store: PostgresConcertStore, service: any Service) {
        // PostgresNIO reports every failed connection attempt at info level; during an outage that
        // is one line per attempt. Readiness, 503 answers and our own warnings tell the story.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        let store: PostgresConcertStore
        do {
            store = try PostgresConcertStore(url: url, logger: poolLogger, options: PostgresStoreOptions(maximumConnections: poolSize))
        } catch {
            throw ConfigError("CONCERT_DATABASE_URL: \(error)")
        }
        let service = ConnectionPoolService(run: { await store.run() }, close: {})
        return (store, service)
    }

    static func makeRedisState(url: String, keyPrefix: String, policies: any QueuePolicySource, logger: Logger) throws
        -> (waitingRoom: any WaitingRoom, cache: any ResponseCache, rateLimiter: any RateLimiter, tokenClaims: any TokenClaims,
            services: [any Service]) {
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
        return (RedisWaitingRoom(pool: pool, policies: policies, keyPrefix: keyPrefix), GenerationCheckedCache(generations: RedisCacheGenerations(pool: pool, keyPrefix: keyPrefix)),
                RedisRateLimiter(pool: pool, keyPrefix: keyPrefix), RedisTokenClaims(pool: pool, keyPrefix: keyPrefix), [service])
    }
}

extension Engines {
    /// The waiting room, rate limiter and cache in PostgreSQL, on the store's own pool, plus a
    /// janitor that deletes rate-limit buckets nobody used for a minute.
    static func makePostgresState(store: PostgresConcertStore, policies: any QueuePolicySource, clock: WallClock, logger: Logger)
        -> (waitingRoom: any WaitingRoom, cache: any ResponseCache, rateLimiter: any RateLimiter, tokenClaims: any TokenClaims,
            services: [any Service]) {
        let rateLimiter = PostgresRateLimiter(store: store)
        let tokenClaims = PostgresTokenClaims(store: store)
        let janitor = RateLimitJanitor(limiter: rateLimiter, tokenClaims: tokenClaims, clock: clock, logger: logger)
        return (PostgresWaitingRoom(store: store, policies: policies), GenerationCheckedCache(generations: PostgresCacheGenerations(store: store)), rateLimiter, tokenClaims,
                [janitor])
    }
}

/// Every ten seconds, deletes the PostgreSQL rate-limit buckets unused for a minute and the
/// token claims that ran out (each instance does it; the deletes are idempotent), so the tables
/// hold only recent rows.
struct RateLimitJanitor: Service {
    let limiter: PostgresRateLimiter
    let tokenClaims: PostgresTokenClaims
    let clock: WallClock
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await limiter.purge(unusedSince: clock.now().adding(seconds: -60))
                    try await tokenClaims.purge(expiredBefore: clock.now())
                } catch {
                    logger.debug("rate limit purge failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(10))
            }
        }
    }
}
