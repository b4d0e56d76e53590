import ConcertAPI
import ConcertDomain
import ConcertTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Synchronization
import Testing

/// A clock that only moves when a test moves it.
final class ManualClock: Sendable {
    private let current: Mutex<Timestamp>
    init(_ start: Timestamp = WallClock.system.now()) { current = Mutex(start) }
    var clock: WallClock { WallClock { self.now } }
    var now: Timestamp { current.withLock { $0 } }
    func advance(seconds: Int64) { current.withLock { $0 = $0.adding(seconds: seconds) } }
    func advance(milliseconds: Int64) { current.withLock { $0 = $0.adding(milliseconds: milliseconds) } }
}

let testSecret = "test-secret-0123456789-abcdefghij"

/// A decoded response: status, headers and JSON body.
struct Reply: Sendable {
    var status: Int
    var headers: HTTPFields
    var bytes: [UInt8]

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }
    var code: String? { json["code"] as? String }
    subscript(key: String) -> Any? { json[key] }
    func int(_ key: String) -> Int64? { (json[key] as? NSNumber)?.int64Value }
    func string(_ key: String) -> String? { json[key] as? String }
    func array(_ key: String) -> [[String: Any]] { json[key] as? [[String: Any]] ?? [] }
}

/// Talks to an app under test as a given user.
struct API: Sendable {
    let client: any TestClientProtocol
    let clock: ManualClock

    func token(user: Int64, admin: Bool = false, ttl: Int64 = 3600) async throws -> String {
        try await ConcertService.token(secret: testSecret, userId: user, admin: admin, ttlSeconds: ttl)
    }

    @discardableResult
    func call(_ method: HTTPRequest.Method, _ path: String, user: Int64? = nil, admin: Bool = false,
              queueToken: String? = nil, idempotencyKey: String? = nil, headers extra: HTTPFields = [:],
              json: String? = nil, rawBody: [UInt8]? = nil) async throws -> Reply {
        var headers = extra
        if let user { headers[.authorization] = "Bearer " + (try await token(user: user, admin: admin)) }
        if let queueToken { headers[HTTPField.Name("Queue-Token")!] = queueToken }
        if let idempotencyKey { headers[HTTPField.Name("Idempotency-Key")!] = idempotencyKey }
        var body: ByteBuffer?
        if let json {
            body = ByteBuffer(string: json)
            headers[.contentType] = "application/json"
        } else if let rawBody {
            body = ByteBuffer(bytes: rawBody)
        }
        return try await client.execute(uri: path, method: method, headers: headers, body: body) { response in
            Reply(status: Int(response.status.code), headers: response.headers, bytes: Array(buffer: response.body))
        }
    }

    func time(_ offsetSeconds: Int64) -> String {
        RFC3339.format(Timestamp(seconds: clock.now.milliseconds / 1000 + offsetSeconds))
    }

    /// Creates a concert whose booking window is open and one schedule in the future.
    func openConcert(seats: Int = 50, price: Int64 = 1000, opens: Int64 = -3600, closes: Int64 = 86_400,
                     startsIn: Int64 = 7 * 86_400) async throws -> (concertId: Int64, scheduleId: Int64) {
        let concert = try await call(.post, "/v1/admin/concerts", user: 1, admin: true, json: """
            {"title": "Test", "artist": "Band", "venue": "Hall", "bookingOpensAt": "\(time(opens))", "bookingClosesAt": "\(time(closes))"}
            """)
        #expect(concert.status == 201)
        let concertId = concert.int("id")!
        let schedule = try await call(.post, "/v1/admin/concerts/\(concertId)/schedules", user: 1, admin: true,
                                      json: #"{"startsAt": "\#(time(startsIn))", "price": \#(price), "seatCount": \#(seats)}"#)
        #expect(schedule.status == 201)
        return (concertId, schedule.int("id")!)
    }

    /// Joins the concert's line as `user` and returns the token.
    func join(_ concertId: Int64, user: Int64) async throws -> Reply {
        try await call(.post, "/v1/concerts/\(concertId)/queue/tokens", user: user)
    }

    func activeToken(_ concertId: Int64, user: Int64) async throws -> String {
        let reply = try await join(concertId, user: user)
        #expect(reply.string("status") == "ACTIVE", "user \(user) is not admitted: \(reply.json)")
        return reply.string("token")!
    }

    func hold(_ scheduleId: Int64, seat: Int, user: Int64, token: String) async throws -> Reply {
        try await call(.post, "/v1/reservations", user: user, queueToken: token,
                       json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(seat)}"#)
    }

    func charge(_ amount: Int64, user: Int64, key: String? = nil) async throws -> Reply {
        try await call(.post, "/v1/points/charges", user: user, idempotencyKey: key, json: #"{"amount": \#(amount)}"#)
    }

    func pay(_ reservationId: Int64, user: Int64, token: String?, key: String? = nil) async throws -> Reply {
        try await call(.post, "/v1/payments", user: user, queueToken: token, idempotencyKey: key,
                       json: #"{"reservationId": \#(reservationId)}"#)
    }

    func seatStatus(_ scheduleId: Int64, seat: Int, user: Int64, token: String) async throws -> String? {
        let reply = try await call(.get, "/v1/schedules/\(scheduleId)/seats", user: user, queueToken: token)
        return reply.array("seats").first { ($0["number"] as? Int) == seat }?["status"] as? String
    }
}

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
/// puts a real HTTP server on a loopback port in front of it (`api.client.port`).
func withAPI(
    _ backend: TestBackend = .sqliteMemory,
    live: Bool = false,
    errorLog: ErrorLogRecorder? = nil,
    configure: (inout AppConfig) -> Void = { _ in },
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
        let app = try await buildApplication(config: config, clock: clock.clock, logger: logger)
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

/// Keeps every message logged at error level or above, to show that a client's mistake is
/// never logged as the server's.
/// One instance is shared by every copy of the logger, and loggers are copied and given metadata
/// on many threads at once (PostgresNIO sets some on each new connection, and the sweeper opens
/// connections while requests do), so the metadata is behind a lock too.
final class ErrorLogRecorder: LogHandler, @unchecked Sendable {
    private let messages = Mutex<[String]>([])
    private let storedMetadata = Mutex<Logger.Metadata>([:])
    var logLevel: Logger.Level = .error
    var metadata: Logger.Metadata {
        get { storedMetadata.withLock { $0 } }
        set { storedMetadata.withLock { $0 = newValue } }
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { storedMetadata.withLock { $0[key] } }
        set { storedMetadata.withLock { $0[key] = newValue } }
    }

    func log(event: LogEvent) {
        guard event.level >= .error else { return }
        messages.withLock { $0.append("\(event.level): \(event.message) \(event.metadata ?? [:])") }
    }

    var recorded: [String] { messages.withLock { $0 } }
}
