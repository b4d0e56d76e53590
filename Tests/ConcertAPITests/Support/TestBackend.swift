import ConcertAPI
import ConcertDomain
import ConcertServer
import ConcertTestSupport
import Foundation
import Logging
import Testing

/// The storage and shared-state set-ups the HTTP tests run against: SQLite always; PostgreSQL,
/// and PostgreSQL with Redis, when `scripts/test` provides the servers.
enum TestBackend: String, Sendable, CustomTestStringConvertible {
    case sqliteMemory = "sqlite"
    case sqliteFile = "sqlite-file"
    case postgres
    case postgresRedis = "postgres+redis"

    var testDescription: String { rawValue }

    private static var servers: [TestBackend] {
        var servers: [TestBackend] = []
        if TestServices.postgresURL != nil || TestServices.required { servers.append(.postgres) }
        if (TestServices.postgresURL != nil && TestServices.redisURL != nil) || TestServices.required { servers.append(.postgresRedis) }
        return servers
    }
    /// For behaviour: the fastest SQLite, and every server set-up.
    static let all: [TestBackend] = [.sqliteMemory] + servers
    /// For races: SQLite on a file (several connections), and every server set-up.
    static let races: [TestBackend] = [.sqliteFile] + servers
}

struct MissingTestService: Error, CustomStringConvertible {
    var description: String
}

/// Runs `body` against a fresh service with its own database (and Redis key space); `live`
/// puts a real HTTP server on a loopback port in front of it (`api.port`); `engines` may wrap
/// the engines the configuration makes (a waiting room that fails on purpose, say).
func withAPI(
    _ backend: TestBackend = .sqliteMemory,
    live: Bool = false,
    errorLog: ErrorLogRecorder? = nil,
    configure: (inout AppConfig) -> Void = { _ in },
    engines wrap: @escaping @Sendable (Engines) -> Engines = { $0 },
    _ body: @Sendable (API) async throws -> Void
) async throws {
    var config = AppConfig()
    config.jwtSecret = testSecret
    config.queue = QueuePolicy(maxActive: 1000, activeSeconds: 600, idleSeconds: 60)
    var database: TestDatabase?
    switch backend {
    case .sqliteMemory: config.databaseURL = "sqlite::memory:"
    case .sqliteFile: config.databaseURL = "sqlite:" + temporarySQLitePath()
    case .postgres, .postgresRedis:
        guard let admin = TestServices.postgresURL else {
            throw MissingTestService(description: "CONCERT_TEST_POSTGRES_URL is not set (scripts/test sets it)")
        }
        database = try await TestDatabase.create(adminURL: admin)
        config.databaseURL = database!.url
        if backend == .postgresRedis {
            guard let redis = TestServices.redisURL else {
                throw MissingTestService(description: "CONCERT_TEST_REDIS_URL is not set (scripts/test sets it)")
            }
            config.redisURL = redis
            config.redisKeyPrefix = "test-\(UUID().uuidString.prefix(8)):"
        }
    }
    configure(&config)
    let clock = ManualClock()
    var logger = errorLog.map { recorder in Logger(label: "test") { _ in recorder } } ?? Logger(label: "test")
    logger.logLevel = errorLog == nil ? .critical : .error
    do {
        let wallClock = clock.clock
        let app = try await ConcertAPI.buildApplication(config: config, clock: wallClock, logger: logger) { config, logger in
            wrap(try await Engines.make(config: config, clock: wallClock, logger: logger))
        }
        try await app.test(live ? .live : .router) { client in
            try await body(API(client: client, clock: clock))
        }
    } catch {
        try? await database?.drop()
        throw error
    }
    try? await database?.drop()
}

/// A temporary SQLite file path, for tests that need a real file (WAL, several connections).
func temporarySQLitePath() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("concertd-test-\(UUID().uuidString).sqlite").path
}
