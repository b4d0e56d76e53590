import ArgumentParser
import ConcertAPI
import ConcertServer
import Foundation
import Logging

/// `concertd`: the concert reservation service. The work is in ConcertServer (wiring) and ConcertAPI (HTTP).
@main
struct Concertd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "concertd",
        abstract: "A concert ticketing backend: waiting room, seat holds, points and payments.",
        subcommands: [Serve.self, Migrate.self, Verify.self, Token.self],
        defaultSubcommand: Serve.self
    )
}

/// Flags shared by `serve`, `migrate` and `verify`. They are optional with no default of their own,
/// so that an unset flag leaves the environment and then the default to `AppConfig.read`.
struct CommonOptions: ParsableArguments {
    @Option(help: "Database URL (env CONCERT_DATABASE_URL): sqlite:PATH, sqlite::memory: or postgres://user[:pw]@host:port/db")
    var databaseURL: String?
    @Option(help: "Redis URL (env CONCERT_REDIS_URL): redis://host:port")
    var redisURL: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (env LOG_LEVEL)")
    var logLevel: String?

    var flags: [Setting: String] {
        var flags: [Setting: String] = [:]
        flags[.databaseURL] = databaseURL
        flags[.redisURL] = redisURL
        flags[.logLevel] = logLevel
        return flags
    }
}

extension AppConfig {
    var logger: Logger {
        var logger = Logger(label: "concertd")
        logger.logLevel = logLevel
        return logger
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the HTTP server.")
    @OptionGroup var common: CommonOptions
    @Option(help: "Address to listen on (env CONCERT_HOST)") var host: String?
    @Option(help: "Port to listen on (env CONCERT_PORT)") var port: Int?
    @Flag(help: "Development mode: a built-in JWT secret when none is set, demo data in an empty database")
    var dev = false
    @Flag(help: "Fill demo concerts when the database is empty") var demo = false
    @Option(help: "Seconds a seat hold lasts (env CONCERT_HOLD_SECONDS)") var holdSeconds: Int?
    @Option(help: "ACTIVE queue tokens per concert (env CONCERT_QUEUE_MAX_ACTIVE)") var queueMaxActive: Int?
    @Option(help: "Seconds an ACTIVE token lasts (env CONCERT_QUEUE_ACTIVE_SECONDS)") var queueActiveSeconds: Int?
    @Option(help: "Seconds a WAITING token keeps its place without a poll (env CONCERT_QUEUE_IDLE_SECONDS)") var queueIdleSeconds: Int?
    @Option(help: "Live holds one user may have (env CONCERT_MAX_HOLDS_PER_USER)") var maxHoldsPerUser: Int?
    @Option(help: "Largest single charge (env CONCERT_MAX_CHARGE)") var maxCharge: Int?
    @Option(help: "Requests per second per user, 0 = off (env CONCERT_RATE_LIMIT_PER_USER)") var rateLimitPerUser: Int?
    @Option(help: "Requests per second per client address, 0 = off (env CONCERT_RATE_LIMIT_PER_IP)") var rateLimitPerIp: Int?
    @Option(help: "JSON Web Key Set file of public keys for RS256/ES256/EdDSA tokens; SIGHUP reloads it (env CONCERT_JWT_JWKS_FILE)")
    var jwksFile: String?

    /// Each flag under the setting it stands for; `AppConfig.read` puts them before the environment.
    var flags: [Setting: String] {
        var flags = common.flags
        flags[.host] = host
        flags[.port] = port.map(String.init)
        flags[.holdSeconds] = holdSeconds.map(String.init)
        flags[.queueMaxActive] = queueMaxActive.map(String.init)
        flags[.queueActiveSeconds] = queueActiveSeconds.map(String.init)
        flags[.queueIdleSeconds] = queueIdleSeconds.map(String.init)
        flags[.maxHoldsPerUser] = maxHoldsPerUser.map(String.init)
        flags[.maxCharge] = maxCharge.map(String.init)
        flags[.rateLimitPerUser] = rateLimitPerUser.map(String.init)
        flags[.rateLimitPerIP] = rateLimitPerIp.map(String.init)
        flags[.jwksFile] = jwksFile
        return flags
    }

    func run() async throws {
        let config = try exitOnConfigError { try AppConfig.read(flags: flags, dev: dev, demo: demo) }
        if config.jwtSecret == nil && !dev {
            FileHandle.standardError.write(Data("concertd: CONCERT_JWT_SECRET is not set; set it, or run `concertd serve --dev`\n".utf8))
            throw ExitCode(2)
        }
        let secret = config.effectiveJWTSecret!
        let devSecret = config.jwtSecret == nil
        try await exitOnConfigError {
            try await ConcertService.serve(config: config, logger: config.logger) { port in
                var lines = ["concertd listening on http://\(config.host):\(port) (database \(config.databaseURL)\(config.redisURL.map { ", redis \($0)" } ?? ""))"]
                if let sample = try? await ConcertService.token(secret: secret, userId: 1, admin: false, ttlSeconds: 3600) {
                    lines.append("try:  curl -H 'Authorization: Bearer \(sample)' http://\(config.host):\(port)/v1/points")
                    lines.append(devSecret ? "more tokens: swift run concertd token --user 2 [--admin]" :
                        "more tokens: CONCERT_JWT_SECRET=... concertd token --user 2 [--admin]")
                }
                FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            }
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Bring the database schema up to date.")
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let config = try exitOnConfigError { try AppConfig.read(flags: common.flags) }
        try await exitOnConfigError { try await ConcertService.migrate(config: config, logger: config.logger) }
        print("concertd: schema of \(config.databaseURL) is up to date")
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the data's invariants (no seat sold twice, balances equal their history, ...); exit 1 on any breach.")
    @OptionGroup var common: CommonOptions

    func run() async throws {
        let config = try exitOnConfigError { try AppConfig.read(flags: common.flags) }
        let report = try await exitOnConfigError { try await ConcertService.verify(config: config, logger: config.logger) }
        for line in report {
            print("\(line.breaches == 0 ? "ok    " : "BREACH") \(line.name)\(line.breaches == 0 ? "" : ": \(line.breaches) rows")")
        }
        if report.contains(where: { $0.breaches > 0 }) { throw ExitCode(1) }
    }
}

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a signed JWT for local use (secret from CONCERT_JWT_SECRET, else the --dev secret).")
    @Option(help: "User id (a positive integer)") var user: Int64
    @Flag(help: "Give the token the admin role") var admin = false
    @Option(help: "Lifetime in seconds") var ttl: Int64 = 3600

    func validate() throws {
        guard user > 0 else { throw ValidationError("--user must be a positive integer") }
        guard ttl > 0 else { throw ValidationError("--ttl must be a positive number of seconds") }
    }

    func run() async throws {
        let secret = try exitOnConfigError { try AppConfig.read() }.jwtSecret
        if secret == nil {
            FileHandle.standardError.write(Data("concertd: CONCERT_JWT_SECRET is not set; signing with the --dev secret\n".utf8))
        }
        print(try await exitOnConfigError {
            try await ConcertService.token(secret: secret ?? AppConfig.devJWTSecret, userId: user, admin: admin, ttlSeconds: ttl)
        })
    }
}

/// Configuration and start-up problems end the process with one clear line, not a stack trace.
func exitOnConfigError<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as ConfigError {
        FileHandle.standardError.write(Data("concertd: \(error.description)\n".utf8))
        throw ExitCode(2)
    } catch let error as ExitCode {
        throw error
    } catch {
        let line = String(describing: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        FileHandle.standardError.write(Data("concertd: \(line)\n".utf8))
        throw ExitCode(1)
    }
}

func exitOnConfigError<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ConfigError {
        FileHandle.standardError.write(Data("concertd: \(error.description)\n".utf8))
        throw ExitCode(2)
    }
}
