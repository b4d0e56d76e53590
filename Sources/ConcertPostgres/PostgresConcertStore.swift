import Batching
import ConcertDomain
import ConcertStore
import Synchronization
import Logging
import PostgresNIO

/// Tuning of the PostgreSQL store; the defaults suit one service instance.
public struct PostgresStoreOptions: Sendable {
    /// Connections this instance may open (several instances share the server's `max_connections`).
    public var maximumConnections: Int
    /// How long one attempt to open a connection may take.
    public var connectTimeout: Duration
    /// How long an operation may wait for a connection before it fails with `StoreUnavailable`,
    /// unless other operations got connections meanwhile. It bounds how long a request waits
    /// while the database is down (the contract wants a 503 within a few seconds).
    public var connectionWaitLimit: Duration
    /// How long an operation may wait for a connection while the database is up but every
    /// connection is busy (other operations keep getting them); past it the store sheds load
    /// with `StoreUnavailable`.
    public var busyWaitLimit: Duration
    /// Tries in all of a transaction that PostgreSQL aborted with a serialization failure or a
    /// deadlock.
    public var transactionAttempts: Int
    /// Longest an operation may run once it has its connection. Past it (or at once when the
    /// connection closes under it) the caller gets `StoreUnavailable` and the connection is
    /// closed, so PostgreSQL rolls back what was not committed. Statements are bounded on the
    /// server (`statement_timeout` 10 s, `lock_timeout` 5 s); this catches what they cannot: a
    /// query PostgresNIO lost on a closing connection.
    public var operationLimit: Duration
    /// Most holds sent to PostgreSQL in one call (see `WriteBatcher`).
    public var holdBatchSize: Int
    /// Most hold calls running at once; holds that arrive meanwhile wait and go together.
    public var holdBatchConcurrency: Int
    /// Most payments (and, apart, charges) sent to PostgreSQL in one call, and most such calls
    /// at once (as for holds).
    public var payBatchSize: Int
    public var payBatchConcurrency: Int

    public init(maximumConnections: Int = 20, connectTimeout: Duration = .seconds(2),
                connectionWaitLimit: Duration = .seconds(3), busyWaitLimit: Duration = .seconds(30),
                transactionAttempts: Int = 3, operationLimit: Duration = .seconds(30),
                holdBatchSize: Int = 64, holdBatchConcurrency: Int = 4, payBatchSize: Int = 64, payBatchConcurrency: Int = 4) {
        self.operationLimit = operationLimit
        self.payBatchSize = payBatchSize
        self.payBatchConcurrency = payBatchConcurrency
        self.holdBatchSize = holdBatchSize
        self.holdBatchConcurrency = holdBatchConcurrency
        self.maximumConnections = maximumConnections
        self.connectTimeout = connectTimeout
        self.connectionWaitLimit = connectionWaitLimit
        self.busyWaitLimit = busyWaitLimit
        self.transactionAttempts = transactionAttempts
    }
}

/// The shared store: PostgreSQL through PostgresNIO's connection pool, for any number of service
/// instances on one database.
///
/// Every transaction runs at READ COMMITTED; what must not race is serialised by row locks
/// (`SELECT ... FOR UPDATE` on the user or the reservation), by conditional updates, and by
/// unique indexes (one live reservation per seat, one payment per reservation, one
/// idempotency row per key). Times are BIGINT milliseconds since the epoch, as in SQLite.
///
/// The writes (hold, cancel, charge, pay, and a first claim of an idempotency key) are one round
/// trip each: a call of a function of `PostgresWriteFunctions`, or one statement. Holds that
/// arrive together share one call (`WriteBatcher`), and so do charges and payments.
///
/// The pool does nothing until `run()` runs: start it in a task (or a service group) for as
/// long as the store is used.
public final class PostgresConcertStore: ConcertStore {
    let client: PostgresClient
    let logger: Logger
    let options: PostgresStoreOptions
    let health: ConnectionHealth
    /// Ends the waits and bodies of `leaseWithinLimit` that run past their limits.
    let watchdog: OperationWatchdog
    public let url: PostgresURL
    /// Schedules with their concerts, by schedule id. Neither is ever deleted, and what is kept
    /// here never changes once written, so a hold checks the booking window from here without a
    /// round trip. A schedule can be cancelled (on any instance): an entry then goes stale, which
    /// is why `concertd_hold`, `concertd_pay` and the seat map check `cancelled_at` in SQL; a
    /// cancel on this instance drops its entry at once.
    let scheduleFacts = Mutex<[Int64: ScheduleFacts]>([:])
    private static let scheduleFactsLimit = 10_000
    let holdBatcher: WriteBatcher<HoldItem, HoldOutcome>
    let payBatcher: WriteBatcher<PayItem, PayOutcome>
    let chargeBatcher: WriteBatcher<ChargeItem, ChargeOutcome>

    /// `url` is `postgres://user[:password]@host[:port]/database`; see `PostgresURL`.
    public init(url: String, logger: Logger, options: PostgresStoreOptions = PostgresStoreOptions()) throws {
        let parsed = try PostgresURL(parsing: url)
        var configuration = PostgresClient.Configuration(
            host: parsed.host, port: parsed.port, username: parsed.username, password: parsed.password,
            database: parsed.database,
            tls: parsed.sslMode == .verifyFull ? .require(.makeClientConfiguration()) : .disable)
        configuration.options.connectTimeout = options.connectTimeout
        configuration.options.maximumConnections = options.maximumConnections
        // Nothing may hang on a held connection: a statement, a lock wait (a row locked by an
        // instance that died mid-transaction) and an abandoned transaction all have a limit, and
        // running into one answers 503 (see `translated`).
        configuration.options.additionalStartupParameters = [
            ("statement_timeout", "10s"), ("lock_timeout", "5s"), ("idle_in_transaction_session_timeout", "15s"),
        ]
        self.client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.logger = logger
        self.options = options
        self.url = parsed
        let health = ConnectionHealth()
        self.health = health
        self.watchdog = OperationWatchdog(health: health, waitLimit: options.connectionWaitLimit, busyLimit: options.busyWaitLimit,
                                          operationLimit: options.operationLimit)
        self.holdBatcher = WriteBatcher(maxBatch: options.holdBatchSize, concurrency: options.holdBatchConcurrency,
                                        isInfrastructureFailure: { $0 is StoreUnavailable })
        self.payBatcher = WriteBatcher(maxBatch: options.payBatchSize, concurrency: options.payBatchConcurrency,
                                       isInfrastructureFailure: { $0 is StoreUnavailable })
        self.chargeBatcher = WriteBatcher(maxBatch: options.payBatchSize, concurrency: options.payBatchConcurrency,
                                          isInfrastructureFailure: { $0 is StoreUnavailable })
    }

    /// Runs the connection pool until the calling task is cancelled (or a graceful shutdown of
    /// the service group it runs in).
    public func run() async {
        await client.run()
    }

    public func migrate() async throws {
        let logger = self.logger
        try await transaction { connection in
            try await PostgresMigrations.migrate(on: connection, logger: logger)
        }
    }

    public func ping() async throws {
        let logger = self.logger
        try await withConnection { connection in
            _ = try await connection.query("SELECT 1", logger: logger).collect()
        }
    }

    public func isEmpty() async throws -> Bool {
        try await first("SELECT EXISTS (SELECT 1 FROM concerts)", as: Bool.self) == false
    }

    // MARK: Catalog

    public func createConcert(_ new: NewConcert) async throws -> Concert {
        let id = try await first("""
            INSERT INTO concerts (title, artist, venue, booking_opens_at, booking_closes_at)
            VALUES (\(new.title), \(new.artist), \(new.venue), \(new.bookingOpensAt.milliseconds), \(new.bookingClosesAt.milliseconds))
            RETURNING id
            """, as: Int64.self)
        guard let id else { throw PostgresStoreError("INSERT INTO concerts returned no id") }
        return Concert(id: id, title: new.title, artist: new.artist, venue: new.venue,
                       bookingOpensAt: new.bookingOpensAt, bookingClosesAt: new.bookingClosesAt)
    }

    public func createSchedule(_ new: NewSchedule) async throws -> Schedule {
        // Concerts are never deleted, so the existence check and the insert need no lock.
        let id = try await first("""
            INSERT INTO schedules (concert_id, starts_at, total_seats, price)
            SELECT \(new.concertId), \(new.startsAt.milliseconds), \(new.seatCount), \(new.price)
            WHERE EXISTS (SELECT 1 FROM concerts WHERE id = \(new.concertId))
            RETURNING id
            """, as: Int64.self)
        guard let id else { throw DomainError.concertNotFound }
        return Schedule(id: id, concertId: new.concertId, startsAt: new.startsAt, totalSeats: new.seatCount, price: new.price)
    }

    public func concert(id: Int64) async throws -> Concert? {
        try await rows("SELECT \(unescaped: Columns.concert) FROM concerts c WHERE c.id = \(id)").first.map(Self.concert)
    }

    public func reservableConcerts(now: Timestamp, after: Int64?, limit: Int) async throws -> ReservableConcertPage {
        let t = now.milliseconds
        let logger = self.logger
        return try await withConnection { connection in
            let concerts = try await connection.query("""
                SELECT \(unescaped: Columns.concert) FROM concerts c
                WHERE c.booking_opens_at <= \(t) AND c.booking_closes_at > \(t) AND c.id > \(after ?? 0)
                  AND EXISTS (SELECT 1 FROM schedules s WHERE s.concert_id = c.id AND s.starts_at > \(t) AND s.cancelled_at IS NULL)
                ORDER BY c.id LIMIT \(limit)
                """, logger: logger).collect().map(Self.concert)
            var changesAt: Int64?
            for try await value in try await connection.query("""
                SELECT LEAST(
                  (SELECT MIN(booking_opens_at) FROM concerts WHERE booking_opens_at > \(t)),
                  (SELECT MIN(booking_closes_at) FROM concerts WHERE booking_closes_at > \(t)),
                  (SELECT MIN(starts_at) FROM schedules WHERE starts_at > \(t) AND cancelled_at IS NULL))
                """, logger: logger).decode(Int64?.self) {
                changesAt = value
            }
            return ReservableConcertPage(concerts: concerts, changesAt: changesAt.map(Timestamp.init(milliseconds:)))
        }
    }

    public func countInvariantBreaches() async throws -> [(invariant: Invariant, breaches: Int64)] {
        var report: [(invariant: Invariant, breaches: Int64)] = []
        for invariant in Invariant.all {
            report.append((invariant, try await first(PostgresQuery(unsafeSQL: invariant.countingSQL), as: Int64.self) ?? 0))
        }
        return report
    }

    public func seatCounts(concertId: Int64, now: Timestamp) async throws -> SeatCounts {
        let rows = try await rows("""
            SELECT COALESCE(SUM(s.total_seats), 0)::bigint,
                  COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'HELD' AND r.held_until > \(now.milliseconds))), 0)::bigint,
                  COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED')), 0)::bigint
                FROM schedules s WHERE s.concert_id = \(concertId) AND s.starts_at > \(now.milliseconds) AND s.cancelled_at IS NULL
            """)
        guard let row = rows.first else { return SeatCounts(total: 0, held: 0, sold: 0) }
        let (total, held, sold) = try row.decode((Int64, Int64, Int64).self)
        return SeatCounts(total: Int(total), held: Int(held), sold: Int(sold))
    }

    public func hasFutureSchedule(concertId: Int64, now: Timestamp) async throws -> Bool {
        try await first("""
            SELECT EXISTS (SELECT 1 FROM schedules WHERE concert_id = \(concertId) AND starts_at > \(now.milliseconds) AND cancelled_at IS NULL)
            """, as: Bool.self) ?? false
    }

    public func futureSchedules(concertId: Int64, now: Timestamp) async throws -> [ScheduleAvailability] {
        let t = now.milliseconds
        return try await rows("""
            SELECT s.id, s.concert_id, s.starts_at, s.total_seats, s.price,
              s.total_seats - (SELECT COUNT(*) FROM reservations r
                               WHERE r.schedule_id = s.id AND r.status IN ('HELD', 'CONFIRMED')
                                 AND (r.status = 'CONFIRMED' OR r.held_until > \(t)))
            FROM schedules s WHERE s.concert_id = \(concertId) AND s.starts_at > \(t) AND s.cancelled_at IS NULL
            ORDER BY s.starts_at, s.id
            """).map { row in
            let (id, concertId, startsAt, totalSeats, price, available) = try row.decode((Int64, Int64, Int64, Int, Int64, Int64).self)
            return ScheduleAvailability(
                schedule: Schedule(id: id, concertId: concertId, startsAt: Timestamp(milliseconds: startsAt), totalSeats: totalSeats, price: price),
                availableSeats: Int(available))
        }
    }

    public func schedule(id: Int64) async throws -> Schedule? {
        try await facts(ofSchedule: id)?.schedule
    }

    /// A schedule with its concert, from `scheduleFacts` or else the database (then kept).
    func facts(ofSchedule id: Int64) async throws -> ScheduleFacts? {
        if let known = scheduleFacts.withLock({ $0[id] }) { return known }
        guard let row = try await rows("""
            SELECT \(unescaped: Columns.schedule), \(unescaped: Columns.concert)
            FROM schedules s JOIN concerts c ON c.id = s.concert_id WHERE s.id = \(id) AND s.cancelled_at IS NULL
            """).first else { return nil }
        let facts = ScheduleFacts(schedule: try Self.schedule(row), concert: try Self.concert(row, offset: 5))
        scheduleFacts.withLock { known in
            if known.count >= Self.scheduleFactsLimit { known.removeAll(keepingCapacity: true) }
            known[id] = facts
        }
        return facts
    }

    public func seatMap(scheduleId: Int64, now: Timestamp) async throws -> [Seat]? {
        let logger = self.logger
        // One statement, so the schedule and its reservations are read from one snapshot.
        let rows = try await withConnection { connection in
            try await connection.query("""
                SELECT \(unescaped: Columns.schedule), r.seat_number, r.status, r.held_until
                FROM schedules s
                LEFT JOIN reservations r ON r.schedule_id = s.id AND r.status IN ('HELD', 'CONFIRMED')
                WHERE s.id = \(scheduleId) AND s.cancelled_at IS NULL
                """, logger: logger).collect()
        }
        guard let firstRow = rows.first else { return nil }
        let schedule = try Self.schedule(firstRow)
        var statuses = [SeatStatus](repeating: .available, count: schedule.totalSeats + 1)
        for row in rows {
            // The LEFT JOIN gives one row of NULLs when no seat is taken.
            let (_, _, _, _, _, number, status, heldUntil) =
                try row.decode((Int64, Int64, Int64, Int, Int64, Int?, String?, Int64?).self)
            guard let number, let status, let heldUntil, number >= 1, number <= schedule.totalSeats else { continue }
            if status == ReservationStatus.confirmed.rawValue {
                statuses[number] = .sold
            } else if heldUntil > now.milliseconds {
                statuses[number] = .held
            }
        }
        return (1...schedule.totalSeats).map { Seat(number: $0, price: schedule.price, status: statuses[$0]) }
    }

    // MARK: Queries and rows

    enum Columns {
        static let concert = """
            c.id, c.title, c.artist, c.venue, c.booking_opens_at, c.booking_closes_at,
            (SELECT q.queue_opens_at FROM queue_policies q WHERE q.concert_id = c.id)
            """
        static let schedule = "s.id, s.concert_id, s.starts_at, s.total_seats, s.price"
        /// Selected `FROM reservations` (unaliased); the payment id comes from the unique
        /// `payments.reservation_id` (named, else PostgreSQL calls it `id` too and `ORDER BY id`
        /// is ambiguous).
        static let reservation = """
            id, user_id, schedule_id, concert_id, seat_number, price, status, held_until, created_at,
            (SELECT p.id FROM payments p WHERE p.reservation_id = reservations.id) AS payment_id
            """
    }

    /// Every row of a one-statement read.
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        let logger = self.logger
        return try await withConnection { connection in
            try await connection.query(query, logger: logger).collect()
        }
    }

    /// The first column of the first row of a one-statement query, nil when there is no row.
    func first<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type) async throws -> T? {
        let logger = self.logger
        return try await withConnection { connection in
            try await Self.first(on: connection, logger: logger, query, as: type)
        }
    }

    static func first<T: PostgresDecodable & Sendable>(on connection: PostgresConnection, logger: Logger,
                                                               _ query: PostgresQuery, as type: T.Type) async throws -> T? {
        try await connection.query(query, logger: logger).collect().first.map { try $0.decode(T.self) }
    }

    static func concert(_ row: PostgresRow) throws -> Concert { try concert(row, offset: 0) }

    /// The seven concert columns (the last its line's `queueOpensAt`) starting at column `offset`.
    static func concert(_ row: PostgresRow, offset: Int) throws -> Concert {
        let cells = Array(row)
        let id = try cells[offset].decode(Int64.self)
        let title = try cells[offset + 1].decode(String.self)
        let artist = try cells[offset + 2].decode(String.self)
        let venue = try cells[offset + 3].decode(String.self)
        let opens = try cells[offset + 4].decode(Int64.self)
        let closes = try cells[offset + 5].decode(Int64.self)
        let queueOpens = try cells[offset + 6].decode(Int64?.self)
        return Concert(id: id, title: title, artist: artist, venue: venue,
                       bookingOpensAt: Timestamp(milliseconds: opens), bookingClosesAt: Timestamp(milliseconds: closes),
                       queueOpensAt: queueOpens.map(Timestamp.init(milliseconds:)))
    }

    /// The five schedule columns at the start of the row.
    static func schedule(_ row: PostgresRow) throws -> Schedule {
        let cells = Array(row)
        return Schedule(id: try cells[0].decode(Int64.self), concertId: try cells[1].decode(Int64.self),
                        startsAt: Timestamp(milliseconds: try cells[2].decode(Int64.self)),
                        totalSeats: try cells[3].decode(Int.self), price: try cells[4].decode(Int64.self))
    }

    static func reservation(_ row: PostgresRow) throws -> Reservation {
        let (id, userId, scheduleId, concertId, seatNumber, price, status, heldUntil, createdAt, paymentId) =
            try row.decode((Int64, Int64, Int64, Int64, Int, Int64, String, Int64, Int64, Int64?).self)
        return Reservation(id: id, userId: userId, scheduleId: scheduleId, concertId: concertId, seatNumber: seatNumber, price: price,
                           storedStatus: ReservationStatus(rawValue: status) ?? .cancelled,
                           heldUntil: Timestamp(milliseconds: heldUntil), createdAt: Timestamp(milliseconds: createdAt),
                           paymentId: paymentId)
    }
}

/// A fault of the store itself (a statement that should always return a row returned none).
public struct PostgresStoreError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
