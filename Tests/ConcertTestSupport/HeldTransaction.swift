// A transaction a test opens and keeps open, to hold row locks so that a request of the service
// under test is caught waiting for them at a moment the test chooses.
import Logging
import PostgresNIO

public final class HeldTransaction: Sendable {
    private let connection: PostgresConnection

    private init(connection: PostgresConnection) { self.connection = connection }

    /// BEGIN, then `statements` (e.g. `SELECT 1 FROM users WHERE id = 7 FOR UPDATE`), left open.
    public static func begin(on database: TestDatabase, _ statements: [String]) async throws -> HeldTransaction {
        let configuration = PostgresConnection.Configuration(
            host: database.admin.host, port: database.admin.port, username: database.admin.username,
            password: database.admin.password, database: database.name, tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 3, logger: TestServices.quietLogger)
        do {
            for sql in ["BEGIN"] + statements {
                _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: TestServices.quietLogger).collect()
            }
        } catch {
            try? await connection.close()
            throw error
        }
        return HeldTransaction(connection: connection)
    }

    /// ROLLBACK and close. Never throws: the server may have gone away meanwhile, which ends the
    /// transaction too.
    public func release() async {
        _ = try? await connection.query("ROLLBACK", logger: TestServices.quietLogger).collect()
        try? await connection.close()
    }
}
