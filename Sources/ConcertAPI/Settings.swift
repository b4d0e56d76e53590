import ConcertDomain
import Configuration
import Foundation
import Logging

/// Every setting `concertd` reads, by its swift-configuration key under the `concert` scope. The
/// key names the environment variable (`queue.maxActive` is `CONCERT_QUEUE_MAX_ACTIVE`), and a
/// command-line flag of the same meaning is filed under the same key, so the two cannot drift apart.
public enum Setting: String, CaseIterable, Sendable {
    case host, port
    case databaseURL = "database.url"
    case databasePoolSize = "database.poolSize"
    case redisURL = "redis.url"
    case redisKeyPrefix = "redis.keyPrefix"
    case jwtSecret = "jwt.secret"
    case jwksFile = "jwt.jwksFile"
    case jwtMaxLifetimeSeconds = "jwt.maxLifetimeSeconds"
    case holdSeconds
    case queueMaxActive = "queue.maxActive"
    case queueActiveSeconds = "queue.activeSeconds"
    case queueIdleSeconds = "queue.idleSeconds"
    case queueSweepMs = "queue.sweepMs"
    case maxHoldsPerUser, maxCharge, refundCutoffSeconds
    case rateLimitPerUser = "rateLimit.perUser"
    case rateLimitPerIP = "rateLimit.perIP"
    case cacheTTLMs = "cache.ttlMs"
    case scheduleCacheTTLMs = "scheduleCache.ttlMs"
    case trustedProxies
    case httpIdleTimeoutSeconds = "http.idleTimeoutSeconds"
    case httpRequestTimeoutSeconds = "http.requestTimeoutSeconds"
    case httpMaxHeaderBytes = "http.maxHeaderBytes"
    case webhookResolver = "webhook.resolver"
    case webhookAllowPrivate = "webhook.allowPrivate"
    case webhookPollMs = "webhook.pollMs"
    case webhookRetentionHours = "webhook.retentionHours"
    /// Outside the `concert` scope: `LOG_LEVEL`, the name swift-log users already set.
    case logLevel = "log.level"

    static let scope: ConfigKey = "concert"

    /// The key from the root of the configuration.
    var key: ConfigKey {
        let relative = ConfigKey(rawValue)
        return self == .logLevel ? relative : ConfigKey(Self.scope.components + relative.components)
    }

    /// Access logs (`CONFIG_ACCESS_LOG_FILE`) print `<REDACTED>` for it.
    var isSecret: Bool { self == .jwtSecret }

    /// The environment variable `EnvironmentVariablesProvider` looks up for this key: components
    /// joined by `_`, a camelCase boundary split by `_`, all upper case. Errors name it, because
    /// that is the name the contract and the operators use, whichever source gave the value.
    public var environmentName: String {
        key.components.map { component in
            var word = ""
            var previous: Character?
            for character in component {
                if let previous, previous.isLowercase, character.isUppercase { word.append("_") }
                word.append(character)
                previous = character
            }
            return word.uppercased()
        }.joined(separator: "_")
    }
}

/// The sources in order of precedence; the defaults are `AppConfig()`'s own values.
struct SettingSources {
    let root: ConfigReader
    let concert: ConfigReader

    init(flags: [Setting: String], environment: [String: String]) {
        // An empty value counts as unset, so the next source (in the end the default) is used.
        var flagValues: [AbsoluteConfigKey: ConfigValue] = [:]
        for (setting, text) in flags where !text.isEmpty {
            flagValues[AbsoluteConfigKey(setting.key)] = ConfigValue(.string(text), isSecret: setting.isSecret)
        }
        root = ConfigReader(providers: [
            InMemoryProvider(name: "command line", values: flagValues),
            EnvironmentVariablesProvider(environmentVariables: environment.filter { !$0.value.isEmpty }),
        ])
        concert = root.scoped(to: Setting.scope)
    }

    /// The raw text: every value is read as a string so that a bad one is reported (the library's
    /// typed getters return nil for a value they cannot convert) with our range in the message.
    func text(_ setting: Setting) -> String? {
        let reader = setting == .logLevel ? root : concert
        return reader.string(forKey: ConfigKey(setting.rawValue), isSecret: setting.isSecret)
    }

    func int(_ setting: Setting, _ range: ClosedRange<Int64>) throws -> Int64? {
        guard let text = text(setting) else { return nil }
        guard let value = Int64(text), range.contains(value) else {
            throw ConfigError("\(setting.environmentName) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return value
    }
}

extension AppConfig {
    /// The one place that reads settings: `flags` (what `concertd` parsed from its command line),
    /// then `environment`, then the defaults. Any bad value throws a one-line `ConfigError`.
    /// `dev` and `demo` are flags only, with no environment variable.
    public static func read(flags: [Setting: String] = [:], dev: Bool = false, demo: Bool = false,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AppConfig {
        let source = SettingSources(flags: flags, environment: environment)
        var config = AppConfig()
        config.dev = dev
        config.demo = demo
        if let host = source.text(.host) { config.host = host }
        if let port = try source.int(.port, 0...65535) { config.port = Int(port) }
        if let url = source.text(.databaseURL) { config.databaseURL = url }
        if let value = try source.int(.databasePoolSize, 1...1_000) { config.databasePoolSize = Int(value) }
        if let url = source.text(.redisURL) { config.redisURL = url }
        if let prefix = source.text(.redisKeyPrefix) { config.redisKeyPrefix = prefix }
        if let secret = source.text(.jwtSecret) {
            guard secret.utf8.count >= Authenticator.minimumSecretBytes else {
                throw ConfigError("CONCERT_JWT_SECRET must be at least \(Authenticator.minimumSecretBytes) bytes, got \(secret.utf8.count)")
            }
            config.jwtSecret = secret
        }
        if let path = source.text(.jwksFile) { config.jwksFile = path }
        if let value = try source.int(.jwtMaxLifetimeSeconds, 0...Int64(Int32.max)) { config.maxTokenLifetimeSeconds = value }
        if let value = try source.int(.holdSeconds, 1...86_400) { config.rules.holdMilliseconds = value * 1000 }
        if let value = try source.int(.queueMaxActive, 1...1_000_000) { config.queue.maxActive = Int(value) }
        if let value = try source.int(.queueActiveSeconds, 1...86_400) { config.queue.activeMilliseconds = value * 1000 }
        if let value = try source.int(.queueIdleSeconds, 1...86_400) { config.queue.idleMilliseconds = value * 1000 }
        if let value = try source.int(.queueSweepMs, 10...10_000) { config.queueSweepMilliseconds = value }
        if let value = try source.int(.maxHoldsPerUser, 1...1000) { config.rules.maxHoldsPerUser = Int(value) }
        if let value = try source.int(.maxCharge, 1...BookingRules.maxBalance) { config.rules.maxCharge = value }
        if let value = try source.int(.refundCutoffSeconds, 0...(10 * 365 * 86_400)) { config.rules.refundCutoffMilliseconds = value * 1000 }
        if let value = try source.int(.rateLimitPerUser, 0...1_000_000) { config.rateLimitPerUser = Int(value) }
        if let value = try source.int(.rateLimitPerIP, 0...1_000_000) { config.rateLimitPerIP = Int(value) }
        if let value = try source.int(.cacheTTLMs, 0...3_600_000) { config.cacheTTLMilliseconds = value }
        if let value = try source.int(.scheduleCacheTTLMs, 0...60_000) { config.scheduleCacheTTLMilliseconds = value }
        if let spec = source.text(.trustedProxies) { config.trustedProxies = try TrustedProxies(parsing: spec) }
        if let value = try source.int(.httpIdleTimeoutSeconds, 1...3600) { config.connectionLimits.idleTimeoutSeconds = value }
        if let value = try source.int(.httpRequestTimeoutSeconds, 1...3600) { config.connectionLimits.requestTimeoutSeconds = value }
        if let value = try source.int(.httpMaxHeaderBytes, 1024...1_048_576) { config.connectionLimits.maxHeaderBytes = Int(value) }
        // A process resolves webhook hosts with the system unless told otherwise; only an
        // `AppConfig()` built in code defaults to loopback-only.
        config.webhookResolver = .system
        if let text = source.text(.webhookResolver) {
            guard let setting = WebhookResolverSetting(rawValue: text) else {
                throw ConfigError("CONCERT_WEBHOOK_RESOLVER must be system or loopback-only, got '\(text)'")
            }
            config.webhookResolver = setting
        }
        if let text = source.text(.webhookAllowPrivate) {
            guard text == "1" || text == "0" else { throw ConfigError("CONCERT_WEBHOOK_ALLOW_PRIVATE must be 1 or 0, got '\(text)'") }
            config.webhookAllowPrivate = text == "1"
        }
        if let value = try source.int(.webhookPollMs, 10...10_000) { config.webhookPollMilliseconds = value }
        if let value = try source.int(.webhookRetentionHours, 0...87_600) { config.webhookRetentionMilliseconds = value * 3_600_000 }
        // An unknown level falls back to info rather than stopping the process.
        if let text = source.text(.logLevel), let level = Logger.Level(rawValue: text) { config.logLevel = level }
        return config
    }

    /// `read` with no flags: the environment over the defaults.
    public static func fromEnvironment(_ environment: [String: String]) throws -> AppConfig {
        try read(environment: environment)
    }
}
