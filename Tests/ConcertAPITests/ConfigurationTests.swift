@testable import ConcertAPI
import Logging
import Testing

/// `AppConfig.read`: command-line flags, then the environment, then the defaults, each value
/// checked with a one-line `ConfigError`. The process-level checks are in `ProcessTests`
/// (`flagsOverrideTheEnvironment`, `badSettingsFromFlagsOrEnvironmentGiveOneClearLine`).
@Suite("Configuration")
struct ConfigurationTests {
    /// The error `body` throws, which must be a `ConfigError` of one line.
    private func message(_ body: () throws -> AppConfig) -> String? {
        let error = #expect(throws: ConfigError.self) { _ = try body() }
        if let error { #expect(!error.description.contains("\n"), "\(error)") }
        return error?.description
    }

    @Test func everySettingHasItsContractNameAndIsReadUnderIt() {
        #expect(Set(Setting.allCases.map(\.environmentName)) == [
            "CONCERT_HOST", "CONCERT_PORT", "CONCERT_DATABASE_URL", "CONCERT_DATABASE_POOL_SIZE", "CONCERT_REDIS_URL", "CONCERT_REDIS_KEY_PREFIX",
            "CONCERT_JWT_SECRET", "CONCERT_JWT_JWKS_FILE", "CONCERT_JWT_MAX_LIFETIME_SECONDS", "CONCERT_HOLD_SECONDS",
            "CONCERT_QUEUE_MAX_ACTIVE", "CONCERT_QUEUE_ACTIVE_SECONDS", "CONCERT_QUEUE_IDLE_SECONDS", "CONCERT_QUEUE_SWEEP_MS",
            "CONCERT_MAX_HOLDS_PER_USER", "CONCERT_MAX_CHARGE", "CONCERT_REFUND_CUTOFF_SECONDS",
            "CONCERT_RATE_LIMIT_PER_USER", "CONCERT_RATE_LIMIT_PER_IP", "CONCERT_CACHE_TTL_MS", "CONCERT_SCHEDULE_CACHE_TTL_MS",
            "CONCERT_TRUSTED_PROXIES", "CONCERT_HTTP_IDLE_TIMEOUT_SECONDS", "CONCERT_HTTP_REQUEST_TIMEOUT_SECONDS",
            "CONCERT_HTTP_MAX_HEADER_BYTES", "CONCERT_WEBHOOK_RESOLVER", "CONCERT_WEBHOOK_ALLOW_PRIVATE", "CONCERT_WEBHOOK_POLL_MS",
            "CONCERT_WEBHOOK_RETENTION_HOURS",
            "LOG_LEVEL",
        ])
        // The name the errors use is the one swift-configuration's environment provider looks up.
        for setting in Setting.allCases {
            let sources = SettingSources(flags: [:], environment: [setting.environmentName: "v-\(setting)"])
            #expect(sources.text(setting) == "v-\(setting)", "\(setting.environmentName)")
        }
    }

    @Test func environmentValuesAreRead() throws {
        let config = try AppConfig.fromEnvironment([
            "CONCERT_HOST": "0.0.0.0", "CONCERT_PORT": "9000", "CONCERT_DATABASE_URL": "sqlite::memory:",
            "CONCERT_REDIS_URL": "redis://127.0.0.1:6379", "CONCERT_HOLD_SECONDS": "42", "CONCERT_QUEUE_MAX_ACTIVE": "7",
            "CONCERT_RATE_LIMIT_PER_IP": "5", "CONCERT_CACHE_TTL_MS": "0", "CONCERT_WEBHOOK_RESOLVER": "loopback-only",
            "CONCERT_WEBHOOK_ALLOW_PRIVATE": "1", "LOG_LEVEL": "debug", "CONCERT_DATABASE_POOL_SIZE": "8",
        ])
        #expect(config.host == "0.0.0.0" && config.port == 9000 && config.databaseURL == "sqlite::memory:")
        #expect(config.databasePoolSize == 8)
        #expect(config.redisURL == "redis://127.0.0.1:6379")
        #expect(config.rules.holdMilliseconds == 42_000 && config.queue.maxActive == 7 && config.rateLimitPerIP == 5)
        #expect(config.cacheTTLMilliseconds == 0)
        #expect(config.webhookResolver == .loopbackOnly && config.webhookAllowPrivate)
        #expect(config.logLevel == .debug)
    }

    @Test func aFlagOverridesTheEnvironmentAndTheRestStillComesFromIt() throws {
        let config = try AppConfig.read(flags: [.holdSeconds: "42", .host: "0.0.0.0", .logLevel: "error"], dev: true, demo: true,
                                        environment: ["CONCERT_HOLD_SECONDS": "300", "CONCERT_HOST": "127.0.0.2",
                                                      "CONCERT_MAX_CHARGE": "500", "LOG_LEVEL": "debug"])
        #expect(config.rules.holdMilliseconds == 42_000 && config.host == "0.0.0.0" && config.logLevel == .error)
        #expect(config.rules.maxCharge == 500)
        #expect(config.dev && config.demo)
    }

    /// A flag wins without the environment's value being looked at, as when flags were merged over it.
    @Test func aFlagHidesABadEnvironmentValue() throws {
        let config = try AppConfig.read(flags: [.queueMaxActive: "9"], environment: ["CONCERT_QUEUE_MAX_ACTIVE": "lots"])
        #expect(config.queue.maxActive == 9)
    }

    @Test func unsetSettingsTakeTheContractDefaults() throws {
        let config = try AppConfig.read(environment: [:])
        #expect(config.host == "127.0.0.1" && config.port == 8080 && config.databaseURL == "sqlite:concert.sqlite")
        #expect(config.databasePoolSize == 20)
        #expect(config.redisURL == nil && config.redisKeyPrefix == "concertd:" && config.jwtSecret == nil && config.jwksFile == nil)
        #expect(config.rules.holdMilliseconds == 300_000 && config.rules.maxHoldsPerUser == 4)
        #expect(config.rules.maxCharge == 10_000_000 && config.rules.refundCutoffMilliseconds == 86_400_000)
        #expect(config.queue.maxActive == 200 && config.queue.activeMilliseconds == 600_000 && config.queue.idleMilliseconds == 60_000)
        #expect(config.rateLimitPerUser == 0 && config.rateLimitPerIP == 0 && config.maxTokenLifetimeSeconds == 0)
        #expect(config.cacheTTLMilliseconds == 5_000 && config.scheduleCacheTTLMilliseconds == 1_000 && config.queueSweepMilliseconds == 250)
        #expect(config.connectionLimits == ConnectionLimits())
        #expect(config.webhookResolver == .system && !config.webhookAllowPrivate && config.webhookPollMilliseconds == 200)
        #expect(config.logLevel == .info && !config.dev && !config.demo)
        // Only a process resolves webhook hosts by default; a config built in code stays on loopback.
        #expect(AppConfig().webhookResolver == .loopbackOnly)
    }

    @Test func anEmptyValueCountsAsUnset() throws {
        let empty = Dictionary(uniqueKeysWithValues: Setting.allCases.map { ($0.environmentName, "") })
        let config = try AppConfig.read(environment: empty)
        #expect(config.port == 8080 && config.redisKeyPrefix == "concertd:" && config.jwtSecret == nil && config.redisURL == nil)
        #expect(config.trustedProxies.blocks.isEmpty && config.webhookResolver == .system)
        // An empty flag leaves the setting to the environment.
        let flagged = try AppConfig.read(flags: [.host: "", .databaseURL: ""],
                                         environment: ["CONCERT_HOST": "0.0.0.0", "CONCERT_DATABASE_URL": "sqlite::memory:"])
        #expect(flagged.host == "0.0.0.0" && flagged.databaseURL == "sqlite::memory:")
    }

    @Test(arguments: [
        ("CONCERT_PORT", "65536", "CONCERT_PORT must be an integer in 0...65535, got '65536'"),
        ("CONCERT_PORT", " 80", "CONCERT_PORT must be an integer in 0...65535, got ' 80'"),
        ("CONCERT_QUEUE_MAX_ACTIVE", "lots", "CONCERT_QUEUE_MAX_ACTIVE must be an integer in 1...1000000, got 'lots'"),
        ("CONCERT_HOLD_SECONDS", "1.5", "CONCERT_HOLD_SECONDS must be an integer in 1...86400, got '1.5'"),
        ("CONCERT_DATABASE_POOL_SIZE", "0", "CONCERT_DATABASE_POOL_SIZE must be an integer in 1...1000, got '0'"),
        ("CONCERT_RATE_LIMIT_PER_IP", "-1", "CONCERT_RATE_LIMIT_PER_IP must be an integer in 0...1000000, got '-1'"),
        ("CONCERT_HTTP_MAX_HEADER_BYTES", "10", "CONCERT_HTTP_MAX_HEADER_BYTES must be an integer in 1024...1048576, got '10'"),
        ("CONCERT_WEBHOOK_RESOLVER", "dns", "CONCERT_WEBHOOK_RESOLVER must be system or loopback-only, got 'dns'"),
        // swift-configuration's own booleans would take `true` or `yes`; the contract says 1 or 0.
        ("CONCERT_WEBHOOK_ALLOW_PRIVATE", "true", "CONCERT_WEBHOOK_ALLOW_PRIVATE must be 1 or 0, got 'true'"),
        ("CONCERT_JWT_SECRET", String(repeating: "k", count: 31), "CONCERT_JWT_SECRET must be at least 32 bytes, got 31"),
        ("CONCERT_TRUSTED_PROXIES", "10.0.0.0/99", "CONCERT_TRUSTED_PROXIES: \"10.0.0.0/99\" has a bad prefix length"),
    ])
    func aBadValueGivesItsOneLineError(name: String, value: String, expected: String) {
        #expect(message { try AppConfig.fromEnvironment([name: value]) } == expected)
    }

    /// A flag is checked like its variable, and the error names the variable the docs list.
    @Test func aBadFlagIsReportedUnderItsVariable() {
        #expect(message { try AppConfig.read(flags: [.holdSeconds: "0"], environment: [:]) }
            == "CONCERT_HOLD_SECONDS must be an integer in 1...86400, got '0'")
    }

    /// The secret's limit counts UTF-8 bytes, not characters.
    @Test func theSecretLimitCountsBytes() throws {
        let sixteenTwoByteCharacters = String(repeating: "é", count: 16)
        #expect(try AppConfig.fromEnvironment(["CONCERT_JWT_SECRET": sixteenTwoByteCharacters]).jwtSecret == sixteenTwoByteCharacters)
        #expect(message { try AppConfig.fromEnvironment(["CONCERT_JWT_SECRET": String(repeating: "é", count: 15) + "k"]) }
            == "CONCERT_JWT_SECRET must be at least 32 bytes, got 31")
    }

    @Test func namesAreCaseSensitiveAndUnknownOnesAreIgnored() throws {
        let config = try AppConfig.fromEnvironment(["concert_port": "9", "CONCERT_PORTS": "9", "CONCERT_TEST_POSTGRES_URL": "x"])
        #expect(config.port == 8080)
    }

    /// An unknown level falls back to info, as it always has, rather than stopping the process.
    @Test func anUnknownLogLevelIsInfo() throws {
        #expect(try AppConfig.fromEnvironment(["LOG_LEVEL": "loud"]).logLevel == .info)
        #expect(try AppConfig.read(flags: [.logLevel: "trace"], environment: ["LOG_LEVEL": "loud"]).logLevel == .trace)
    }
}
