import ConcertDomain
import ConcertPostgres
import ConcertSQLite
import ConcertStore
import ConcertTestSupport
import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing

/// The storage engines the contract suite runs against. Every contract test takes one as its
/// argument, so both engines pass the very same test functions.
enum Engine: String, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// SQLite always; PostgreSQL when a server is configured, or when services are required (and
    /// then its cases fail loudly because none is configured).
    static let available: [Engine] = TestServices.postgresURL != nil || TestServices.required ? [.sqlite, .postgres] : [.sqlite]
}

extension TestServices {
    static let logger: Logger = {
        var logger = Logger(label: "concert-store-tests")
        logger.logLevel = .warning
        return logger
    }()
}

struct MissingService: Error, CustomStringConvertible {
    var description: String
}

/// Runs `body` against a fresh, migrated database of `engine`, then throws the database away.
func withStore(_ engine: Engine, _ body: (any ConcertStore) async throws -> Void) async throws {
    try await withStores(engine, count: 1) { stores in try await body(stores[0]) }
}

/// Runs `body` against `count` separate store instances sharing one fresh database, as several
/// service processes would: for SQLite, separate connection pools on one file; for PostgreSQL,
/// separate clients with their own pools.
/// With `migrated: false` the database is left empty for `body` to migrate.
func withStores(_ engine: Engine, count: Int, migrated: Bool = true,
                postgresOptions: PostgresStoreOptions = PostgresStoreOptions(),
                _ body: ([any ConcertStore]) async throws -> Void) async throws {
    switch engine {
    case .sqlite:
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("concert-test-\(UUID().uuidString).sqlite").path
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        var stores: [SQLiteConcertStore] = []
        for _ in 0..<count {
            let store = try SQLiteConcertStore(path: path)
            if migrated { try await store.migrate() }
            stores.append(store)
        }
        try await body(stores)
    case .postgres:
        guard let adminURL = TestServices.postgresURL else {
            throw MissingService(description: "CONCERT_TEST_REQUIRE_SERVICES=1 but CONCERT_TEST_POSTGRES_URL is not set")
        }
        let database = try await TestDatabase.create(adminURL: adminURL)
        var runs: [Task<Void, Never>] = []
        var outcome: Result<Void, any Error> = .success(())
        do {
            var stores: [PostgresConcertStore] = []
            for _ in 0..<count {
                let store = try PostgresConcertStore(url: database.url, logger: TestServices.logger, options: postgresOptions)
                runs.append(Task { await store.run() })
                if migrated { try await store.migrate() }
                stores.append(store)
            }
            try await body(stores)
        } catch {
            outcome = .failure(error)
        }
        for run in runs { run.cancel() }
        for run in runs { await run.value }
        try await database.drop()
        try outcome.get()
    }
}

/// One migrated PostgreSQL store with `options` on a fresh database of the test server, its pool
/// running for `body`, then stopped (which waits for every lease) and the database dropped.
func withPostgresStore(options: PostgresStoreOptions,
                       _ body: (PostgresConcertStore, TestDatabase) async throws -> Void) async throws {
    guard let adminURL = TestServices.postgresURL else {
        throw MissingService(description: "CONCERT_TEST_REQUIRE_SERVICES=1 but CONCERT_TEST_POSTGRES_URL is not set")
    }
    let database = try await TestDatabase.create(adminURL: adminURL)
    let store = try PostgresConcertStore(url: database.url, logger: TestServices.logger, options: options)
    let run = Task { await store.run() }
    var outcome: Result<Void, any Error> = .success(())
    do {
        try await store.migrate()
        try await body(store, database)
    } catch {
        outcome = .failure(error)
    }
    run.cancel()
    await run.value
    try? await database.drop()
    try outcome.get()
}

// MARK: Domain fixtures

/// A fixed "now" for the tests; every other time is an offset from it.
let now = Timestamp(seconds: 1_900_000_000)
let minute: Int64 = 60_000
let day: Int64 = 86_400_000
let rules = BookingRules(holdSeconds: 300, maxHoldsPerUser: 4, maxCharge: 10_000_000)

func at(_ offsetMilliseconds: Int64) -> Timestamp { now.adding(milliseconds: offsetMilliseconds) }

/// A concert whose booking window is open at `now`, with one schedule ten days ahead.
@discardableResult
func makeOpenSchedule(_ store: any ConcertStore, price: Int64 = 50_000, seats: Int = 50,
                      title: String = "Winter Gala") async throws -> (concert: Concert, schedule: Schedule) {
    let concert = try await store.createConcert(NewConcert(
        title: title, artist: "The Orchestra", venue: "Hall A",
        bookingOpensAt: at(-day), bookingClosesAt: at(9 * day)))
    let schedule = try await store.createSchedule(NewSchedule(
        concertId: concert.id, startsAt: at(10 * day), price: price, seatCount: seats))
    return (concert, schedule)
}

func holdRequest(user: Int64, schedule: Schedule, seat: Int, at time: Timestamp = now,
                 rules: BookingRules = rules) -> HoldRequest {
    HoldRequest(userId: user, scheduleId: schedule.id, seatNumber: seat, now: time, rules: rules)
}

// MARK: Races

/// How one racer ended.
enum Outcome<Value: Sendable>: Sendable {
    case success(Value)
    case domain(DomainError)
    case other(String)

    var value: Value? {
        if case .success(let value) = self { value } else { nil }
    }

    var domainError: DomainError? {
        if case .domain(let error) = self { error } else { nil }
    }
}

/// Runs `operation(0..<count)` in `count` tasks released together; returns every outcome (in
/// index order) and the time from the release to the last finish.
func race<Value: Sendable>(_ count: Int, _ operation: @escaping @Sendable (Int) async throws -> Value) async -> (outcomes: [Outcome<Value>], elapsed: Duration) {
    let gate = StartGate()
    let clock = ContinuousClock()
    let box = Mutex<ContinuousClock.Instant?>(nil)
    let outcomes = await withTaskGroup(of: (Int, Outcome<Value>).self) { group in
        for index in 0..<count {
            group.addTask {
                await gate.wait()
                do {
                    return (index, .success(try await operation(index)))
                } catch let error as DomainError {
                    return (index, .domain(error))
                } catch {
                    return (index, .other(String(describing: error)))
                }
            }
        }
        await gate.open(whenArrived: count)
        box.withLock { $0 = clock.now }
        var outcomes = [Outcome<Value>?](repeating: nil, count: count)
        for await (index, outcome) in group { outcomes[index] = outcome }
        return outcomes.map { $0! }
    }
    let started = box.withLock { $0 }!
    return (outcomes, clock.now - started)
}

func report(_ name: String, _ engine: Engine, _ count: Int, _ elapsed: Duration) {
    let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    print("race \(name) [\(engine.rawValue)] n=\(count): \(String(format: "%.0f", milliseconds)) ms")
}
