import ConcertDomain
import Logging
import Webhooks

/// Every setting of the service, read once at start-up by `AppConfig.read` (Settings.swift) and
/// passed down as a value. Nothing else reads the command line's settings or the environment.
public struct AppConfig: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var databaseURL = "sqlite:concert.sqlite"
    /// Most PostgreSQL connections this instance opens (`CONCERT_DATABASE_POOL_SIZE`): N instances
    /// need N times this within the server's `max_connections`. SQLite ignores it.
    public var databasePoolSize = 20
    public var redisURL: String?
    /// Prefix of every Redis key, so several deployments (or test runs) can share one Redis.
    public var redisKeyPrefix = "concertd:"
    public var jwtSecret: String?
    public var dev = false
    /// Fill demo concerts when the database is empty (dev mode) or when asked (`--demo`).
    public var demo = false
    public var rules = BookingRules()
    public var queue = QueuePolicy()
    public var rateLimitPerUser = 0
    public var rateLimitPerIP = 0
    /// Load balancers whose `X-Forwarded-For` names the client for the per-address limit.
    public var trustedProxies = TrustedProxies()
    /// Timeouts and size limits of each client connection.
    public var connectionLimits = ConnectionLimits()
    /// Longest a cached reservable-concerts page is served without looking at the database.
    public var cacheTTLMilliseconds: Int64 = 5_000
    /// Longest a cached schedule list (with its available-seat counts) is served.
    public var scheduleCacheTTLMilliseconds: Int64 = 1_000
    /// How often each instance sweeps the waiting rooms (expiry, idle loss, admission).
    public var queueSweepMilliseconds: Int64 = 250
    /// Longest lifetime accepted for a JWT (`exp - now`); 0 means no limit.
    public var maxTokenLifetimeSeconds: Int64 = 0
    /// A JSON Web Key Set file of public keys whose RS256/ES256/EdDSA tokens are accepted too.
    public var jwksFile: String?
    /// `CONCERT_WEBHOOK_ALLOW_PRIVATE=1`: webhook URLs may point at loopback and private addresses.
    public var webhookAllowPrivate = false
    /// How webhook host names are resolved (`CONCERT_WEBHOOK_RESOLVER`). The library default is
    /// `.loopbackOnly`, so a test that builds an `AppConfig()` can never look up or reach anything
    /// beyond this machine; `read` (what `concertd` uses) defaults to `.system`.
    public var webhookResolver = WebhookResolverSetting.loopbackOnly
    /// Replaces the resolver `webhookResolver` names (in-process tests inject a fixed table).
    public var webhookResolverOverride: (any WebhookResolver)?
    /// Sleep of the webhook relay between rounds that found nothing (milliseconds).
    public var webhookPollMilliseconds: Int64 = 200
    /// `LOG_LEVEL` / `--log-level` of the process's logger.
    public var logLevel = Logger.Level.info
    /// `CONCERT_WEBHOOK_RETENTION_HOURS` (in milliseconds here, so tests can shorten it): finished
    /// outbox events (every delivery DELIVERED or FAILED) are deleted this long after; 0 keeps them.
    public var webhookRetentionMilliseconds: Int64 = 168 * 3_600_000
    /// How often each instance runs the retention sweep (tests shorten it).
    public var webhookRetentionSweepMilliseconds: Int64 = 60_000

    /// The secret `--dev` uses when none is set, so `concertd token` works out of the box.
    public static let devJWTSecret = "concertd-dev-secret-not-for-production"

    public init() {}

    public var effectiveJWTSecret: String? { jwtSecret ?? (dev ? Self.devJWTSecret : nil) }
}

/// `CONCERT_WEBHOOK_RESOLVER`: `system` (getaddrinfo) or `loopback-only` (no lookups at all:
/// `localhost` is 127.0.0.1, every other name resolves to nothing, and deliveries connect to
/// loopback addresses only; every test run uses it).
public enum WebhookResolverSetting: String, Sendable {
    case system
    case loopbackOnly = "loopback-only"
}

/// A setting that could not be used, with a message meant for the operator.
public struct ConfigError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
