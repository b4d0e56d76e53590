import ConcertDomain
import Webhooks

/// Every setting of the service, read once at start-up (see `AppConfig.fromEnvironment`) and
/// passed down as a value. Nothing else reads the environment.
public struct AppConfig: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var databaseURL = "sqlite:concert.sqlite"
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
    /// beyond this machine; `fromEnvironment` (what `concertd` reads) defaults to `.system`.
    public var webhookResolver = WebhookResolverSetting.loopbackOnly
    /// Replaces the resolver `webhookResolver` names (in-process tests inject a fixed table).
    public var webhookResolverOverride: (any WebhookResolver)?
    /// Sleep of the webhook relay between rounds that found nothing (milliseconds).
    public var webhookPollMilliseconds: Int64 = 200
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

extension AppConfig {
    /// The contract's environment variables over the defaults.
    public static func fromEnvironment(_ environment: [String: String]) throws -> AppConfig {
        var config = AppConfig()
        func int(_ name: String, _ range: ClosedRange<Int64>) throws -> Int64? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Int64(text), range.contains(value) else {
                throw ConfigError("\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
            }
            return value
        }
        if let host = environment["CONCERT_HOST"], !host.isEmpty { config.host = host }
        if let port = try int("CONCERT_PORT", 0...65535) { config.port = Int(port) }
        if let url = environment["CONCERT_DATABASE_URL"], !url.isEmpty { config.databaseURL = url }
        if let url = environment["CONCERT_REDIS_URL"], !url.isEmpty { config.redisURL = url }
        if let prefix = environment["CONCERT_REDIS_KEY_PREFIX"], !prefix.isEmpty { config.redisKeyPrefix = prefix }
        if let secret = environment["CONCERT_JWT_SECRET"], !secret.isEmpty {
            guard secret.utf8.count >= Authenticator.minimumSecretBytes else {
                throw ConfigError("CONCERT_JWT_SECRET must be at least \(Authenticator.minimumSecretBytes) bytes, got \(secret.utf8.count)")
            }
            config.jwtSecret = secret
        }
        if let path = environment["CONCERT_JWT_JWKS_FILE"], !path.isEmpty { config.jwksFile = path }
        if let value = try int("CONCERT_HOLD_SECONDS", 1...86_400) { config.rules.holdMilliseconds = value * 1000 }
        if let value = try int("CONCERT_QUEUE_MAX_ACTIVE", 1...1_000_000) { config.queue.maxActive = Int(value) }
        if let value = try int("CONCERT_QUEUE_ACTIVE_SECONDS", 1...86_400) { config.queue.activeMilliseconds = value * 1000 }
        if let value = try int("CONCERT_QUEUE_IDLE_SECONDS", 1...86_400) { config.queue.idleMilliseconds = value * 1000 }
        if let value = try int("CONCERT_MAX_HOLDS_PER_USER", 1...1000) { config.rules.maxHoldsPerUser = Int(value) }
        if let value = try int("CONCERT_MAX_CHARGE", 1...BookingRules.maxBalance) { config.rules.maxCharge = value }
        if let value = try int("CONCERT_REFUND_CUTOFF_SECONDS", 0...(10 * 365 * 86_400)) { config.rules.refundCutoffMilliseconds = value * 1000 }
        if let value = try int("CONCERT_RATE_LIMIT_PER_USER", 0...1_000_000) { config.rateLimitPerUser = Int(value) }
        if let value = try int("CONCERT_RATE_LIMIT_PER_IP", 0...1_000_000) { config.rateLimitPerIP = Int(value) }
        if let value = try int("CONCERT_CACHE_TTL_MS", 0...3_600_000) { config.cacheTTLMilliseconds = value }
        if let value = try int("CONCERT_SCHEDULE_CACHE_TTL_MS", 0...60_000) { config.scheduleCacheTTLMilliseconds = value }
        if let value = try int("CONCERT_QUEUE_SWEEP_MS", 10...10_000) { config.queueSweepMilliseconds = value }
        if let spec = environment["CONCERT_TRUSTED_PROXIES"], !spec.isEmpty { config.trustedProxies = try TrustedProxies(parsing: spec) }
        if let value = try int("CONCERT_HTTP_IDLE_TIMEOUT_SECONDS", 1...3600) { config.connectionLimits.idleTimeoutSeconds = value }
        if let value = try int("CONCERT_HTTP_REQUEST_TIMEOUT_SECONDS", 1...3600) { config.connectionLimits.requestTimeoutSeconds = value }
        if let value = try int("CONCERT_HTTP_MAX_HEADER_BYTES", 1024...1_048_576) { config.connectionLimits.maxHeaderBytes = Int(value) }
        if let value = try int("CONCERT_JWT_MAX_LIFETIME_SECONDS", 0...Int64(Int32.max)) { config.maxTokenLifetimeSeconds = value }
        config.webhookResolver = .system
        if let text = environment["CONCERT_WEBHOOK_RESOLVER"], !text.isEmpty {
            guard let setting = WebhookResolverSetting(rawValue: text) else {
                throw ConfigError("CONCERT_WEBHOOK_RESOLVER must be system or loopback-only, got '\(text)'")
            }
            config.webhookResolver = setting
        }
        if let text = environment["CONCERT_WEBHOOK_ALLOW_PRIVATE"], !text.isEmpty {
            guard text == "1" || text == "0" else { throw ConfigError("CONCERT_WEBHOOK_ALLOW_PRIVATE must be 1 or 0, got '\(text)'") }
            config.webhookAllowPrivate = text == "1"
        }
        if let value = try int("CONCERT_WEBHOOK_POLL_MS", 10...10_000) { config.webhookPollMilliseconds = value }
        if let value = try int("CONCERT_WEBHOOK_RETENTION_HOURS", 0...87_600) { config.webhookRetentionMilliseconds = value * 3_600_000 }
        return config
    }
}
