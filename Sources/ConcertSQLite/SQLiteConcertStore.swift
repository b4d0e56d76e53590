import ConcertDomain
import ConcertStore
import Foundation
import GRDB

/// The embedded store: one SQLite file in WAL mode through GRDB.
///
/// GRDB serialises every write of a process through one writer connection, and SQLite's own
/// file lock serialises writers across processes (with a busy timeout), so each write closure
/// below runs as if alone: checks and writes inside one closure are atomic.
/// Times are integer milliseconds since the epoch; see `ConcertDomain.Timestamp`.
public final class SQLiteConcertStore: ConcertStore {
    private let writer: any DatabaseWriter

    /// `path` is a file path, or `:memory:` for a private in-memory database.
    public init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.foreignKeysEnabled = true
        if path == ":memory:" {
            writer = try DatabaseQueue(configuration: config)
        } else {
            writer = try DatabasePool(path: path, configuration: config)
        }
    }

    /// Brings the schema up to date. GRDB reads which migrations are applied before it runs each
    /// one in its own transaction, so processes migrating one new file at once can both start the
    /// same migration; the second then fails (its tables exist) and rolls back. Such a failure
    /// while another process made progress is retried from the migrations now recorded; a failure
    /// with no progress by anyone is a real one and is thrown.
    public func migrate() async throws {
        let migrator = SQLiteMigrations.migrator
        while true {
            let before = try await writer.read { db in try migrator.appliedIdentifiers(db) }
            do {
                try migrator.migrate(writer)
                return
            } catch {
                let after = try await writer.read { db in try migrator.appliedIdentifiers(db) }
                guard after.count > before.count else { throw error }
            }
        }
    }

    public func ping() async throws {
        _ = try await read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    public func isEmpty() async throws -> Bool {
        try await read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM concerts") ?? 0 } == 0
    }

    public func countInvariantBreaches() async throws -> [(invariant: Invariant, breaches: Int64)] {
        try await read { db in
            try Invariant.all.map { ($0, try Int64.fetchOne(db, sql: $0.countingSQL) ?? 0) }
        }
    }

    // MARK: Catalog

    public func createConcert(_ new: NewConcert) async throws -> Concert {
        try await write { db in
            try db.execute(sql: """
                INSERT INTO concerts (title, artist, venue, booking_opens_at, booking_closes_at)
                VALUES (?, ?, ?, ?, ?)
                """, arguments: [new.title, new.artist, new.venue, new.bookingOpensAt.milliseconds, new.bookingClosesAt.milliseconds])
            return Concert(id: db.lastInsertedRowID, title: new.title, artist: new.artist, venue: new.venue,
                           bookingOpensAt: new.bookingOpensAt, bookingClosesAt: new.bookingClosesAt)
        }
    }

    public func createSchedule(_ new: NewSchedule) async throws -> Schedule {
        try await write { db in
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM concerts WHERE id = ?", arguments: [new.concertId]) != nil else {
                throw DomainError.concertNotFound
            }
            try db.execute(sql: """
                INSERT INTO schedules (concert_id, starts_at, total_seats, price) VALUES (?, ?, ?, ?)
                """, arguments: [new.concertId, new.startsAt.milliseconds, new.seatCount, new.price])
            return Schedule(id: db.lastInsertedRowID, concertId: new.concertId, startsAt: new.startsAt,
                            totalSeats: new.seatCount, price: new.price)
        }
    }

    public func concert(id: Int64) async throws -> Concert? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Columns.concert) FROM concerts c WHERE c.id = ?", arguments: [id]).map(Self.concert)
        }
    }

    public func reservableConcerts(now: Timestamp, after: Int64?, limit: Int) async throws -> ReservableConcertPage {
        let t = now.milliseconds
        return try await read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT \(Columns.concert) FROM concerts c
                WHERE c.booking_opens_at <= ? AND c.booking_closes_at > ? AND c.id > ?
                  AND EXISTS (SELECT 1 FROM schedules s WHERE s.concert_id = c.id AND s.starts_at > ? AND s.cancelled_at IS NULL)
                ORDER BY c.id LIMIT ?
                """, arguments: [t, t, after ?? 0, t, limit])
            let changesAt = try Int64.fetchOne(db, sql: """
                SELECT MIN(x) FROM (
                  SELECT MIN(booking_opens_at) AS x FROM concerts WHERE booking_opens_at > ?
                  UNION ALL SELECT MIN(booking_closes_at) FROM concerts WHERE booking_closes_at > ?
                  UNION ALL SELECT MIN(starts_at) FROM schedules WHERE starts_at > ? AND cancelled_at IS NULL)
                """, arguments: [t, t, t])
            return ReservableConcertPage(concerts: rows.map(Self.concert), changesAt: changesAt.map(Timestamp.init(milliseconds:)))
        }
    }

    public func hasFutureSchedule(concertId: Int64, now: Timestamp) async throws -> Bool {
        try await read { db in
            try Int.fetchOne(db, sql: "SELECT 1 FROM schedules WHERE concert_id = ? AND starts_at > ? AND cancelled_at IS NULL LIMIT 1",
                             arguments: [concertId, now.milliseconds]) != nil
        }
    }

    public func futureSchedules(concertId: Int64, now: Timestamp) async throws -> [ScheduleAvailability] {
        let t = now.milliseconds
        return try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT s.id, s.concert_id, s.starts_at, s.total_seats, s.price,
                  s.total_seats - (SELECT COUNT(*) FROM reservations r
                                   WHERE r.schedule_id = s.id AND r.status IN ('HELD', 'CONFIRMED')
                                     AND (r.status = 'CONFIRMED' OR r.held_until > ?))
                FROM schedules s WHERE s.concert_id = ? AND s.starts_at > ? AND s.cancelled_at IS NULL
                ORDER BY s.starts_at, s.id
                """, arguments: [t, concertId, t]).map { row in
                ScheduleAvailability(schedule: Self.schedule(row), availableSeats: row[5])
            }
        }
    }

    public func schedule(id: Int64) async throws -> Schedule? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT id, concert_id, starts_at, total_seats, price FROM schedules WHERE id = ? AND cancelled_at IS NULL",
                             arguments: [id]).map(Self.schedule)
        }
    }

    public func seatMap(scheduleId: Int64, now: Timestamp) async throws -> [Seat]? {
        try await read { db in
            guard let schedule = try Row.fetchOne(db, sql: "SELECT id, concert_id, starts_at, total_seats, price FROM schedules WHERE id = ? AND cancelled_at IS NULL",
                                                  arguments: [scheduleId]).map(Self.schedule) else { return nil }
            let taken = try Row.fetchAll(db, sql: """
                SELECT seat_number, status, held_until FROM reservations
                WHERE schedule_id = ? AND status IN ('HELD', 'CONFIRMED')
                """, arguments: [scheduleId])
            var statuses = [SeatStatus](repeating: .available, count: schedule.totalSeats + 1)
            for row in taken {
                let number: Int = row[0], status: String = row[1], heldUntil: Int64 = row[2]
                guard number >= 1, number <= schedule.totalSeats else { continue }
                if status == "CONFIRMED" { statuses[number] = .sold } else if heldUntil > now.milliseconds { statuses[number] = .held }
            }
            return (1...schedule.totalSeats).map { Seat(number: $0, price: schedule.price, status: statuses[$0]) }
        }
    }

    public func seatCounts(concertId: Int64, now: Timestamp) async throws -> SeatCounts {
        try await read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COALESCE(SUM(s.total_seats), 0),
                  COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'HELD' AND r.held_until > ?)), 0),
                  COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED')), 0)
                FROM schedules s WHERE s.concert_id = ? AND s.starts_at > ? AND s.cancelled_at IS NULL
                """, arguments: [now.milliseconds, concertId, now.milliseconds])
            return SeatCounts(total: row?[0] ?? 0, held: row?[1] ?? 0, sold: row?[2] ?? 0)
        }
    }

    // MARK: Reservations

    public func hold(_ request: HoldRequest) async throws -> Reservation {
        let now = request.now.milliseconds
        return try await write { db in
            guard let row = try Row.fetchOne(db, sql: """
                SELECT s.id, s.concert_id, s.starts_at, s.total_seats, s.price, \(Columns.concert)
                FROM schedules s JOIN concerts c ON c.id = s.concert_id WHERE s.id = ? AND s.cancelled_at IS NULL
                """, arguments: [request.scheduleId]) else { throw DomainError.scheduleNotFound }
            let schedule = Self.schedule(row)
            let concert = Self.concert(row, offset: 5)
            try HoldPolicy.checkReservable(concert: concert, schedule: schedule, seatNumber: request.seatNumber, now: request.now)
            try db.execute(sql: "INSERT INTO users (id) VALUES (?) ON CONFLICT (id) DO NOTHING", arguments: [request.userId])
            let live = try Int.fetchOne(db, sql: """
                SELECT COUNT(*) FROM reservations WHERE user_id = ? AND status = 'HELD' AND held_until > ?
                """, arguments: [request.userId, now]) ?? 0
            if live >= request.rules.maxHoldsPerUser { throw DomainError.holdLimitReached(limit: request.rules.maxHoldsPerUser) }
            // A hold that ran out is written down as EXPIRED, which takes it out of the unique
            // index of live reservations and lets the insert below claim the seat.
            try db.execute(sql: """
                UPDATE reservations SET status = 'EXPIRED'
                WHERE schedule_id = ? AND seat_number = ? AND status = 'HELD' AND held_until <= ?
                """, arguments: [request.scheduleId, request.seatNumber, now])
            let heldUntil = now + request.rules.holdMilliseconds
            guard let id = try Int64.fetchOne(db, sql: """
                INSERT INTO reservations (user_id, schedule_id, concert_id, seat_number, price, status, held_until, created_at)
                VALUES (?, ?, ?, ?, ?, 'HELD', ?, ?)
                ON CONFLICT (schedule_id, seat_number) WHERE status IN ('HELD', 'CONFIRMED') DO NOTHING
                RETURNING id
                """, arguments: [request.userId, schedule.id, schedule.concertId, request.seatNumber, schedule.price, heldUntil, now])
            else { throw DomainError.seatUnavailable }
            return Reservation(id: id, userId: request.userId, scheduleId: schedule.id, concertId: schedule.concertId,
                               seatNumber: request.seatNumber, price: schedule.price, storedStatus: .held,
                               heldUntil: Timestamp(milliseconds: heldUntil), createdAt: request.now)
        }
    }

    public func reservations(userId: Int64) async throws -> [Reservation] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT \(Columns.reservation) FROM reservations WHERE user_id = ? ORDER BY id DESC",
                             arguments: [userId]).map(Self.reservation)
        }
    }

    public func reservation(id: Int64, userId: Int64) async throws -> Reservation? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Columns.reservation) FROM reservations WHERE id = ? AND user_id = ?",
                             arguments: [id, userId]).map(Self.reservation)
        }
    }

    @discardableResult
    public func cancel(reservationId: Int64, userId: Int64, now: Timestamp) async throws -> Reservation {
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT \(Columns.reservation) FROM reservations WHERE id = ? AND user_id = ?",
                                             arguments: [reservationId, userId]) else { throw DomainError.reservationNotFound }
            var reservation = Self.reservation(row)
            guard reservation.status(at: now) == .held else { throw DomainError.reservationNotHeld }
            try db.execute(sql: "UPDATE reservations SET status = 'CANCELLED' WHERE id = ?", arguments: [reservationId])
            reservation.storedStatus = .cancelled
            return reservation
        }
    }

    // MARK: Access

    /// A write transaction. A database still locked by another process after the busy timeout
    /// is unavailability (503), not a fault of ours.
    func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writer.write(updates)
        } catch let error as DatabaseError where Self.isBusy(error) {
            throw StoreUnavailable("the SQLite database is locked: \(error.resultCode)")
        }
    }

    func read<T: Sendable>(_ value: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await writer.read(value)
        } catch let error as DatabaseError where Self.isBusy(error) {
            throw StoreUnavailable("the SQLite database is locked: \(error.resultCode)")
        }
    }

    static func isBusy(_ error: DatabaseError) -> Bool {
        error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED
    }

    // MARK: Rows

    enum Columns {
        static let concert = """
            c.id, c.title, c.artist, c.venue, c.booking_opens_at, c.booking_closes_at,
            (SELECT q.queue_opens_at FROM queue_policies q WHERE q.concert_id = c.id)
            """
        /// Selected `FROM reservations` (unaliased); the payment id comes from the unique
        /// `payments.reservation_id` (named, else PostgreSQL calls it `id` too and `ORDER BY id`
        /// is ambiguous).
        static let reservation = """
            id, user_id, schedule_id, concert_id, seat_number, price, status, held_until, created_at,
            (SELECT p.id FROM payments p WHERE p.reservation_id = reservations.id) AS payment_id
            """
    }

    static func concert(_ row: Row) -> Concert { concert(row, offset: 0) }

    static func concert(_ row: Row, offset o: Int) -> Concert {
        Concert(id: row[o], title: row[o + 1], artist: row[o + 2], venue: row[o + 3],
                bookingOpensAt: Timestamp(milliseconds: row[o + 4]), bookingClosesAt: Timestamp(milliseconds: row[o + 5]),
                queueOpensAt: (row[o + 6] as Int64?).map(Timestamp.init(milliseconds:)))
    }

    static func schedule(_ row: Row) -> Schedule {
        Schedule(id: row[0], concertId: row[1], startsAt: Timestamp(milliseconds: row[2]), totalSeats: row[3], price: row[4])
    }

    /// The seven payment columns at the start of the row.
    static func payment(_ row: Row) -> Payment {
        let refundedAt: Int64? = row[6]
        return Payment(id: row[0], userId: row[1], reservationId: row[2], amount: row[3], paidAt: Timestamp(milliseconds: row[4]),
                       status: PaymentStatus(rawValue: row[5]) ?? .refunded, refundedAt: refundedAt.map(Timestamp.init(milliseconds:)))
    }

    static func reservation(_ row: Row) -> Reservation {
        Reservation(id: row[0], userId: row[1], scheduleId: row[2], concertId: row[3], seatNumber: row[4], price: row[5],
                    storedStatus: ReservationStatus(rawValue: row[6]) ?? .cancelled,
                    heldUntil: Timestamp(milliseconds: row[7]), createdAt: Timestamp(milliseconds: row[8]), paymentId: row[9])
    }
}

extension StoredIdempotency {
    init(fingerprint: String, state: String, status: Int?, body: Data?, createdAt: Int64) {
        self.init(fingerprint: fingerprint, done: state == "DONE", status: status, body: body.map { [UInt8]($0) }, createdAt: createdAt)
    }
}
