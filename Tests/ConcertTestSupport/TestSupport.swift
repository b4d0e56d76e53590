// Test helpers shared by the test targets: the throwaway servers, a database per test, and a
// gate that releases racing tasks together.
import ConcertPostgres
import ConcertStore
import Foundation
import Logging
import PostgresNIO
import Synchronization

public enum TestServices {
    /// A superuser URL on a throwaway server, e.g. from `scripts/services.sh`.
    public static let postgresURL: String? = environment("CONCERT_TEST_POSTGRES_URL")
    /// A throwaway Redis server.
    public static let redisURL: String? = environment("CONCERT_TEST_REDIS_URL")
    /// Set by `scripts/test`: a suite whose server is missing fails instead of skipping.
    public static let required = ProcessInfo.processInfo.environment["CONCERT_TEST_REQUIRE_SERVICES"] == "1"

    public static let quietLogger: Logger = {
        var logger = Logger(label: "concert-tests")
        logger.logLevel = .warning
        return logger
    }()

    /// A Redis key prefix no other test uses (`label` in it when given), so tests can share one
    /// Redis and run in parallel.
    public static func uniqueKeyPrefix(_ label: String? = nil) -> String {
        "test:\(label.map { $0 + ":" } ?? "")\(String(UInt64.random(in: .min ... .max), radix: 16)):"
    }

    private static func environment(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }
}

/// A database of its own for one test on the throwaway server, created and dropped over a plain
/// PostgresNIO connection (no psql needed).
public struct TestDatabase: Sendable {
    public var admin: PostgresURL
    public var name: String

    public init(admin: PostgresURL, name: String) {
        self.admin = admin
        self.name = name
    }

    /// The database a `postgres://` URL names, reached with that URL's credentials.
    public init(url: String) throws {
        let parsed = try PostgresURL(parsing: url)
        self.init(admin: parsed, name: parsed.database)
    }

    public var url: String {
        var target = admin
        target.database = name
        let user = target.username.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? target.username
        let password = target.password.map { ":" + ($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0) } ?? ""
        let host = target.host.contains(":") ? "[\(target.host)]" : target.host
        return "postgres://\(user)\(password)@\(host):\(target.port)/\(name)"
    }

    public static func create(adminURL: String) async throws -> TestDatabase {
        let admin = try PostgresURL(parsing: adminURL)
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let database = TestDatabase(admin: admin, name: name)
        // The name is made here of [a-z0-9_] only, so spelling it into the statement is safe.
        try await database.adminExecute("CREATE DATABASE \(name)")
        return database
    }

    public func drop() async throws {
        try await adminExecute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Runs `sql` on the server's admin database (`outsideCancellation`).
    public func adminExecute(_ sql: String) async throws {
        try await outsideCancellation { try await adminExecuteNow(sql) }
    }

    private func adminExecuteNow(_ sql: String) async throws {
        let configuration = PostgresConnection.Configuration(
            host: admin.host, port: admin.port, username: admin.username, password: admin.password,
            database: admin.database, tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: TestServices.quietLogger)
        do {
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: TestServices.quietLogger).collect()
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}

/// Releases many tasks at once, so the operations really overlap: each waits at the gate, and
/// all go together once `count` of them are waiting, either by themselves
/// (`StartGate(opensWhenArrived:)`) or when `open(whenArrived:)` says so.
public final class StartGate: Sendable {
    private struct State {
        var isOpen = false
        var arrived = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())
    private let opensWhenArrived: Int?

    public init() { opensWhenArrived = nil }

    /// A gate that the `count`-th arrival opens.
    public init(opensWhenArrived count: Int) { opensWhenArrived = count }

    public func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let release: [CheckedContinuation<Void, Never>] = state.withLock { state in
                state.arrived += 1
                if state.isOpen { return [continuation] }
                state.waiting.append(continuation)
                guard let count = opensWhenArrived, state.arrived >= count else { return [] }
                state.isOpen = true
                defer { state.waiting = [] }
                return state.waiting
            }
            for waiter in release { waiter.resume() }
        }
    }

    public func open(whenArrived count: Int) async {
        while state.withLock({ $0.arrived }) < count { try? await Task.sleep(for: .milliseconds(1)) }
        let waiting = state.withLock { state in
            state.isOpen = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }
}

extension TestDatabase {
    /// The first column of the first row of `sql`, run on this database, as an integer
    /// (`outsideCancellation`).
    public func scalar(_ sql: String) async throws -> Int64 {
        try await outsideCancellation { try await scalarNow(sql) }
    }

    private func scalarNow(_ sql: String) async throws -> Int64 {
        let configuration = PostgresConnection.Configuration(
            host: admin.host, port: admin.port, username: admin.username, password: admin.password,
            database: name, tls: .disable)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 2, logger: TestServices.quietLogger)
        defer { Task { try? await connection.close() } }
        let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: TestServices.quietLogger).collect()
        guard let row = rows.first else { return 0 }
        return try row.decode(Int64?.self) ?? 0
    }
}

/// Runs `body` in a task that the caller's cancellation does not reach, and answers within
/// `seconds` (`DeadlineExceeded` after that, the task left behind). Every `TestDatabase` query
/// goes through it: tests sample in loops they cancel when done, and a query cancelled mid-flight
/// can leave PostgresNIO (1.x) with a continuation that never resumes, which once hung a whole
/// run (docs/milestones.md, "A rare hang"). Uncancelled, the query ends normally; lost anyway,
/// the deadline fails the call instead of hanging the suite.
func outsideCancellation<T: Sendable>(seconds: Double = 30, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let work = Task { try await body() }
    return try await withDeadline(seconds: seconds) { try await work.value }
}
