import ConcertAPI
import ConcertDomain
import ConcertStore
import Hummingbird
import Logging
import ServiceLifecycle

/// Entry points the `concertd` executable calls; kept here so that it stays a thin shell.
public enum ConcertService {
    /// Runs the server until SIGTERM or SIGINT, finishing requests in flight.
    public static func serve(config: AppConfig, logger: Logger, onListening: @escaping @Sendable (Int) async -> Void) async throws {
        try await explainingStartupFailures(config) {
            let app = try await buildApplication(config: config, logger: logger, onServerRunning: onListening)
            try await app.runService()
        }
    }

    /// A database that cannot be reached at start is an operator's problem: say which one.
    static func explainingStartupFailures(_ config: AppConfig, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as StoreUnavailable {
            throw ConfigError("cannot reach the database \(redactingPassword(config.databaseURL)): \(error.description)")
        }
    }

    /// `scheme://user:secret@host` → `scheme://user:***@host`.
    static func redactingPassword(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url.range(of: "@", range: scheme.upperBound..<url.endIndex),
              let colon = url.range(of: ":", range: scheme.upperBound..<at.lowerBound) else { return url }
        return url.replacingCharacters(in: colon.upperBound..<at.lowerBound, with: "***")
    }

    /// Brings the database schema up to date and returns.
    public static func migrate(config: AppConfig, logger: Logger) async throws {
        try await withStore(config: config, logger: logger) { try await $0.migrate() }
    }

    /// Counts the rows that break each invariant; the caller reports and exits non-zero on any.
    public static func verify(config: AppConfig, logger: Logger) async throws -> [(name: String, breaches: Int64)] {
        try await withStore(config: config, logger: logger) { store in
            try await store.countInvariantBreaches().map { ($0.invariant.name, $0.breaches) }
        }
    }

    /// Runs `body` on the configured store with its connection pool running, outside the server.
    private static func withStore<T: Sendable>(config: AppConfig, logger: Logger,
                                               _ body: @escaping @Sendable (any ConcertStore) async throws -> T) async throws -> T {
        let engines = try await Engines.make(config: config, logger: logger)
        var result: T?
        try await explainingStartupFailures(config) {
            result = try await withThrowingTaskGroup(of: Void.self) { group in
                for service in engines.services {
                    group.addTask { try await service.run() }
                }
                // PostgresClient warns when asked for a connection before its run() started.
                if !engines.services.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                defer { group.cancelAll() }
                return try await body(engines.store)
            }
        }
        return result!
    }

    /// A signed JWT for local use.
    public static func token(secret: String, userId: Int64, admin: Bool, ttlSeconds: Int64) async throws -> String {
        try await Authenticator(secret: secret).issue(userId: userId, admin: admin, ttlSeconds: ttlSeconds)
    }
}
