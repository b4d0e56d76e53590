import ConcertDomain
import ConcertPostgres
import ConcertStore
import ConcertTestSupport
import PostgresNIO
import Testing

/// What only the PostgreSQL store has: its URL, its behaviour while the database cannot be
/// reached, and migrations run by several instances at once.
@Suite("PostgreSQL store")
struct PostgresStoreTests {
    @Test("URLs that parse")
    func urlsThatParse() throws {
        #expect(try PostgresURL(parsing: "postgres://app@127.0.0.1:5433/concerts")
            == PostgresURL(username: "app", password: nil, host: "127.0.0.1", port: 5433, database: "concerts"))
        #expect(try PostgresURL(parsing: "postgresql://app:s%40cr%3At@db.internal/concerts")
            == PostgresURL(username: "app", password: "s@cr:t", host: "db.internal", port: 5432, database: "concerts"))
        #expect(try PostgresURL(parsing: "postgres://app:@[::1]:6000/c?sslmode=verify-full")
            == PostgresURL(username: "app", password: "", host: "::1", port: 6000, database: "c", sslMode: .verifyFull))
        #expect(try PostgresURL(parsing: "postgres://app:pw@h:1/d?sslmode=disable").sslMode == .disable)
        #expect(try PostgresURL(parsing: "postgres://app:secret@h:1/d").description == "postgres://app:***@h:1/d")
    }

    @Test("URLs that do not parse", arguments: [
        "", "concerts", "mysql://u@h:1/d", "postgres://h:1/d", "postgres://@h:1/d", "postgres://u@h:1",
        "postgres://u@h:1/", "postgres://u@:1/d", "postgres://u@h:x/d", "postgres://u@h:0/d", "postgres://u@h:70000/d",
        "postgres://u@h:1/d/e", "postgres://u@[::1/d", "postgres://u@h:1/d?sslmode=require", "postgres://u@h:1/d?x=1",
        "postgres://u%zz@h:1/d",
    ])
    func urlsThatDoNotParse(url: String) {
        let error = #expect(throws: PostgresURLError.self) { try PostgresURL(parsing: url) }
        #expect(error?.description.contains("expected postgres://user[:password]@host:port/database") == true)
        #expect(throws: PostgresURLError.self) { try PostgresConcertStore(url: url, logger: TestServices.logger) }
    }

    @Test("a password never appears in a URL error")
    func passwordRedacted() {
        let error = #expect(throws: PostgresURLError.self) { try PostgresURL(parsing: "postgres://app:hunter2@h:port/d") }
        #expect(error?.description.contains("hunter2") == false)
        #expect(error?.description.contains("app:***@h:port/d") == true)
    }

    /// A port where nothing listens (connection refused), and a listener that accepts and then
    /// never says a word (a hung server).
    enum DeadServer: String, CaseIterable, CustomTestStringConvertible {
        case refusing, silent
        var testDescription: String { rawValue }
    }

    @Test("an unreachable database: every operation throws StoreUnavailable within a few seconds",
          arguments: DeadServer.allCases)
    func unreachable(server: DeadServer) async throws {
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(listener.localAddress?.port)
        if server == .refusing { try await listener.close() }

        let store = try PostgresConcertStore(url: "postgres://app@127.0.0.1:\(port)/concerts", logger: TestServices.logger)
        let run = Task { await store.run() }
        let operations: [(String, @Sendable () async throws -> Void)] = [
            ("migrate", { try await store.migrate() }),
            ("ping", { try await store.ping() }),
            ("concert", { _ = try await store.concert(id: 1) }),
            ("reservableConcerts", { _ = try await store.reservableConcerts(now: now, after: nil, limit: 10) }),
            ("seatMap", { _ = try await store.seatMap(scheduleId: 1, now: now) }),
            ("hold", { _ = try await store.hold(HoldRequest(userId: 1, scheduleId: 1, seatNumber: 1, now: now, rules: rules)) }),
            ("charge", { _ = try await store.charge(userId: 1, amount: 100, now: now, rules: rules, idempotency: nil) }),
            ("pay", { _ = try await store.pay(userId: 1, reservationId: 1, now: now, idempotency: nil) }),
            ("claim", { _ = try await store.claim(userId: 1, key: "k", fingerprint: "f", now: now,
                                                  leaseMilliseconds: 1000, retentionMilliseconds: 1000) }),
        ]
        let clock = ContinuousClock()
        await withTaskGroup(of: Void.self) { group in
            for (name, operation) in operations {
                group.addTask {
                    let started = clock.now
                    await #expect(throws: StoreUnavailable.self, "\(name)") { try await operation() }
                    let elapsed = clock.now - started
                    #expect(elapsed < .seconds(6), "\(name) took \(elapsed)")
                }
            }
        }
        run.cancel()
        await run.value
        if server == .silent { try await listener.close() }
    }
}
