import ConcertDomain
import Hummingbird
import Logging
import ServiceLifecycle

/// Entry points the `concertd` executable calls; kept here so that it stays a thin shell.
public enum ConcertService {
    /// Runs the server until SIGTERM or SIGINT, finishing requests in flight.
    public static func serve(config: AppConfig, logger: Logger, onListening: @escaping @Sendable (Int) async -> Void) async throws {
        let app = try await buildApplication(config: config, logger: logger, onServerRunning: onListening)
        try await app.runService()
    }

    /// Brings the database schema up to date and returns.
    public static func migrate(config: AppConfig, logger: Logger) async throws {
        let backend = try await Backend.make(config: config, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for service in backend.services {
                group.addTask { try await service.run() }
            }
            try await backend.store.migrate()
            group.cancelAll()
        }
    }

    /// A signed JWT for local use.
    public static func token(secret: String, userId: Int64, admin: Bool, ttlSeconds: Int64) async throws -> String {
        Authenticator(secret: secret).issue(userId: userId, admin: admin, ttlSeconds: ttlSeconds)
    }
}
