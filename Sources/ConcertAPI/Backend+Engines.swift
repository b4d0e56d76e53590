import ConcertDomain
import ConcertPostgres
import ConcertRedis
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
    static func makePostgresStore(url: String, logger: Logger) throws -> (store: PostgresConcertStore, service: any Service) {
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

extension Backend {
    /// The waiting room, rate limiter and cache in PostgreSQL, on the store's own pool, plus a
    /// janitor that deletes rate-limit buckets nobody used for a minute.
    static func makePostgresState(store: PostgresConcertStore, policy: QueuePolicy, clock: WallClock, logger: Logger)
        -> (waitingRoom: any WaitingRoom, cache: any ResponseCache, rateLimiter: any RateLimiter, services: [any Service]) {
        let rateLimiter = PostgresRateLimiter(store: store)
        let janitor = RateLimitJanitor(limiter: rateLimiter, clock: clock, logger: logger)
        return (PostgresWaitingRoom(store: store, policy: policy), PostgresGenerationCache(store: store), rateLimiter, [janitor])
    }
}

/// Every ten seconds, deletes the PostgreSQL rate-limit buckets unused for a minute (each
/// instance does it; the deletes are idempotent), so the table holds only recent clients.
struct RateLimitJanitor: Service {
    let limiter: PostgresRateLimiter
    let clock: WallClock
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await limiter.purge(unusedSince: clock.now().adding(seconds: -60))
                } catch {
                    logger.debug("rate limit purge failed", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(10))
            }
        }
    }
}
