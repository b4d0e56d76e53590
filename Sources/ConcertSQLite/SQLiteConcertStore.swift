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

    // MARK: Wallet

    public func balance(userId: Int64) async throws -> Int64 {
        try await read { db in
            try Int64.fetchOne(db, sql: "SELECT balance FROM users WHERE id = ?", arguments: [userId]) ?? 0
        }
    }

    public func charge(userId: Int64, amount: Int64, now: Timestamp, rules: BookingRules,
                       idempotency: IdempotentCompletion<Int64>?) async throws -> Int64 {
        try await write { db in
            try db.execute(sql: "INSERT INTO users (id) VALUES (?) ON CONFLICT (id) DO NOTHING", arguments: [userId])
            let balance = try Int64.fetchOne(db, sql: "SELECT balance FROM users WHERE id = ?", arguments: [userId]) ?? 0
            try WalletPolicy.checkCharge(amount: amount, balance: balance, rules: rules)
            let after = balance + amount
            try db.execute(sql: "UPDATE users SET balance = ? WHERE id = ?", arguments: [after, userId])
            try db.execute(sql: """
                INSERT INTO point_entries (user_id, type, amount, balance_after, created_at) VALUES (?, 'CHARGE', ?, ?, ?)
                """, arguments: [userId, amount, after, now.milliseconds])
            if let idempotency { try Self.complete(db, idempotency, with: after) }
            return after
        }
    }

    public func history(userId: Int64) async throws -> [PointEntry] {
        try await read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, type, amount, balance_after, created_at FROM point_entries WHERE user_id = ? ORDER BY id DESC
                """, arguments: [userId]).map { row in
                PointEntry(id: row[0], type: PointEntryType(rawValue: row[1]) ?? .charge, amount: row[2],
                           balanceAfter: row[3], createdAt: Timestamp(milliseconds: row[4]))
            }
        }
    }

    // MARK: Payments

    public func pay(userId: Int64, reservationId: Int64, now: Timestamp,
                    idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt {
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT \(Columns.reservation) FROM reservations WHERE id = ? AND user_id = ?",
                                             arguments: [reservationId, userId]) else { throw DomainError.reservationNotFound }
            let reservation = Self.reservation(row)
            try HoldPolicy.checkPayable(reservation, now: now)
            // A live hold on a cancelled schedule cannot exist (the cancel released it in the same
            // transaction); kept as a guard like PostgreSQL's `concertd_pay`.
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM schedules WHERE id = ? AND cancelled_at IS NULL",
                                   arguments: [reservation.scheduleId]) != nil else { throw DomainError.reservationNotHeld }
            let balance = try Int64.fetchOne(db, sql: "SELECT balance FROM users WHERE id = ?", arguments: [userId]) ?? 0
            try WalletPolicy.checkPayment(price: reservation.price, balance: balance)
            let after = balance - reservation.price
            try db.execute(sql: "UPDATE users SET balance = ? WHERE id = ?", arguments: [after, userId])
            try db.execute(sql: """
                INSERT INTO point_entries (user_id, type, amount, balance_after, created_at) VALUES (?, 'PAYMENT', ?, ?, ?)
                """, arguments: [userId, -reservation.price, after, now.milliseconds])
            try db.execute(sql: "UPDATE reservations SET status = 'CONFIRMED' WHERE id = ?", arguments: [reservationId])
            try db.execute(sql: "INSERT INTO payments (user_id, reservation_id, amount, paid_at) VALUES (?, ?, ?, ?)",
                           arguments: [userId, reservationId, reservation.price, now.milliseconds])
            let payment = Payment(id: db.lastInsertedRowID, userId: userId, reservationId: reservationId,
                                  amount: reservation.price, paidAt: now)
            let receipt = PaymentReceipt(payment: payment, balance: after, concertId: reservation.concertId)
            if let idempotency { try Self.complete(db, idempotency, with: receipt) }
            return receipt
        }
    }

    public func payment(id: Int64, userId: Int64) async throws -> Payment? {
        try await read { db in
            try Row.fetchOne(db, sql: """
                SELECT id, user_id, reservation_id, amount, paid_at, status, refunded_at FROM payments WHERE id = ? AND user_id = ?
                """, arguments: [id, userId]).map(Self.payment)
        }
    }

    // MARK: Refunds and cancelled dates

    public func refund(userId: Int64, paymentId: Int64, now: Timestamp, rules: BookingRules,
                       idempotency: IdempotentCompletion<RefundReceipt>?) async throws -> RefundReceipt {
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: """
                SELECT p.id, p.user_id, p.reservation_id, p.amount, p.paid_at, p.status, p.refunded_at,
                  r.schedule_id, r.concert_id, s.starts_at
                FROM payments p JOIN reservations r ON r.id = p.reservation_id JOIN schedules s ON s.id = r.schedule_id
                WHERE p.id = ? AND p.user_id = ?
                """, arguments: [paymentId, userId]) else { throw DomainError.paymentNotFound }
            let payment = Self.payment(row)
            let scheduleId: Int64 = row[7], concertId: Int64 = row[8]
            try RefundPolicy.checkRefundable(payment, startsAt: Timestamp(milliseconds: row[9]), now: now, rules: rules)
            let (entryId, balance) = try Self.giveBack(db, payment, now: now)
            let receipt = RefundReceipt(entryId: entryId, paymentId: payment.id, reservationId: payment.reservationId,
                                        amount: payment.amount, refundedAt: now, balance: balance,
                                        scheduleId: scheduleId, concertId: concertId)
            if let idempotency { try Self.complete(db, idempotency, with: receipt) }
            return receipt
        }
    }

    public func cancelSchedule(id: Int64, now: Timestamp) async throws -> ScheduleCancellation {
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT concert_id, cancelled_at FROM schedules WHERE id = ?", arguments: [id]) else {
                throw DomainError.scheduleNotFound
            }
            let concertId: Int64 = row[0], cancelledAt: Int64? = row[1]
            guard cancelledAt == nil else { return ScheduleCancellation(scheduleId: id, concertId: concertId, refunded: 0, released: 0) }
            try db.execute(sql: "UPDATE schedules SET cancelled_at = ? WHERE id = ?", arguments: [now.milliseconds, id])
            let paid = try Row.fetchAll(db, sql: """
                SELECT p.id, p.user_id, p.reservation_id, p.amount, p.paid_at, p.status, p.refunded_at
                FROM payments p JOIN reservations r ON r.id = p.reservation_id
                WHERE r.schedule_id = ? AND p.status = 'PAID' ORDER BY p.user_id, p.id
                """, arguments: [id]).map(Self.payment)
            for payment in paid { _ = try Self.giveBack(db, payment, now: now) }
            try db.execute(sql: """
                UPDATE reservations SET status = 'CANCELLED' WHERE schedule_id = ? AND status = 'HELD' AND held_until > ?
                """, arguments: [id, now.milliseconds])
            return ScheduleCancellation(scheduleId: id, concertId: concertId, refunded: paid.count, released: db.changesCount)
        }
    }

    /// The writes of one refund: the payment REFUNDED, its reservation CANCELLED, the points back
    /// (no cap) and the REFUND entry. Returns the entry's id and the balance after.
    private static func giveBack(_ db: Database, _ payment: Payment, now: Timestamp) throws -> (entryId: Int64, balance: Int64) {
        try db.execute(sql: "UPDATE payments SET status = 'REFUNDED', refunded_at = ? WHERE id = ?",
                       arguments: [now.milliseconds, payment.id])
        try db.execute(sql: "UPDATE reservations SET status = 'CANCELLED' WHERE id = ?", arguments: [payment.reservationId])
        guard let after = try Int64.fetchOne(db, sql: "UPDATE users SET balance = balance + ? WHERE id = ? RETURNING balance",
                                             arguments: [payment.amount, payment.userId]) else {
            throw DomainError.paymentNotFound
        }
        try db.execute(sql: """
            INSERT INTO point_entries (user_id, type, amount, balance_after, created_at, payment_id) VALUES (?, 'REFUND', ?, ?, ?, ?)
            """, arguments: [payment.userId, payment.amount, after, now.milliseconds, payment.id])
        return (db.lastInsertedRowID, after)
    }

    // MARK: Idempotency

    public func claim(userId: Int64, key: String, fingerprint: String, now: Timestamp,
                      leaseMilliseconds: Int64, retentionMilliseconds: Int64) async throws -> IdempotencyClaim {
        try await write { db in
            let t = now.milliseconds
            if let row = try Row.fetchOne(db, sql: """
                SELECT fingerprint, state, response_status, response_body, created_at
                FROM idempotency_keys WHERE user_id = ? AND key = ?
                """, arguments: [userId, key]) {
                let createdAt: Int64 = row[4]
                if createdAt + retentionMilliseconds > t {
                    let stored = StoredIdempotency(fingerprint: row[0], state: row[1], status: row[2], body: row[3], createdAt: createdAt)
                    if let decided = stored.decide(fingerprint: fingerprint, now: t, leaseMilliseconds: leaseMilliseconds) {
                        return decided
                    }
                }
                try db.execute(sql: """
                    UPDATE idempotency_keys SET fingerprint = ?, state = 'RUNNING', response_status = NULL,
                      response_body = NULL, created_at = ? WHERE user_id = ? AND key = ?
                    """, arguments: [fingerprint, t, userId, key])
                return .proceed
            }
            try db.execute(sql: """
                INSERT INTO idempotency_keys (user_id, key, fingerprint, state, created_at) VALUES (?, ?, ?, 'RUNNING', ?)
                """, arguments: [userId, key, fingerprint, t])
            return .proceed
        }
    }

    public func purgeIdempotencyKeys(claimedBefore cutoff: Timestamp) async throws -> Int {
        try await write { db in
            try db.execute(sql: "DELETE FROM idempotency_keys WHERE created_at < ?", arguments: [cutoff.milliseconds])
            return db.changesCount
        }
    }

    public func release(userId: Int64, key: String, claimedAt: Timestamp) async throws {
        try await write { db in
            try db.execute(sql: """
                DELETE FROM idempotency_keys WHERE user_id = ? AND key = ? AND state = 'RUNNING' AND created_at = ?
                """, arguments: [userId, key, claimedAt.milliseconds])
        }
    }

    private static func complete<R>(_ db: Database, _ completion: IdempotentCompletion<R>, with result: R) throws {
        let response = try completion.render(result)
        try db.execute(sql: """
            UPDATE idempotency_keys SET state = 'DONE', response_status = ?, response_body = ?
            WHERE user_id = ? AND key = ? AND state = 'RUNNING' AND created_at = ?
            """, arguments: [response.status, Data(response.body), completion.userId, completion.key, completion.claimedAt.milliseconds])
        guard db.changesCount == 1 else { throw DomainError.idempotencyKeyInUse }
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

    private static func isBusy(_ error: DatabaseError) -> Bool {
        error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED
    }

    // MARK: Rows

    private enum Columns {
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

    private static func concert(_ row: Row) -> Concert { concert(row, offset: 0) }

    private static func concert(_ row: Row, offset o: Int) -> Concert {
        Concert(id: row[o], title: row[o + 1], artist: row[o + 2], venue: row[o + 3],
                bookingOpensAt: Timestamp(milliseconds: row[o + 4]), bookingClosesAt: Timestamp(milliseconds: row[o + 5]),
                queueOpensAt: (row[o + 6] as Int64?).map(Timestamp.init(milliseconds:)))
    }

    private static func schedule(_ row: Row) -> Schedule {
        Schedule(id: row[0], concertId: row[1], startsAt: Timestamp(milliseconds: row[2]), totalSeats: row[3], price: row[4])
    }

    /// The seven payment columns at the start of the row.
    private static func payment(_ row: Row) -> Payment {
        let refundedAt: Int64? = row[6]
        return Payment(id: row[0], userId: row[1], reservationId: row[2], amount: row[3], paidAt: Timestamp(milliseconds: row[4]),
                       status: PaymentStatus(rawValue: row[5]) ?? .refunded, refundedAt: refundedAt.map(Timestamp.init(milliseconds:)))
    }

    private static func reservation(_ row: Row) -> Reservation {
        Reservation(id: row[0], userId: row[1], scheduleId: row[2], concertId: row[3], seatNumber: row[4], price: row[5],
                    storedStatus: ReservationStatus(rawValue: row[6]) ?? .cancelled,
                    heldUntil: Timestamp(milliseconds: row[7]), createdAt: Timestamp(milliseconds: row[8]), paymentId: row[9])
    }
}

private extension StoredIdempotency {
    init(fingerprint: String, state: String, status: Int?, body: Data?, createdAt: Int64) {
        self.init(fingerprint: fingerprint, done: state == "DONE", status: status, body: body.map { [UInt8]($0) }, createdAt: createdAt)
    }
}

// MARK: - On-sale control

extension SQLiteConcertStore {
    private static let policyColumns = """
        max_active, admit_per_minute, active_seconds, paused, queue_opens_at, draw_seed, draw_commitment, drawn_at, entrants
        """

    private static func storedPolicy(_ row: Row) -> StoredQueuePolicy {
        let opensAt: Int64? = row[4]
        let policy = LinePolicy(maxActive: row[0], admitPerMinute: row[1], activeSeconds: row[2], paused: (row[3] as Int) != 0,
                                queueOpensAt: opensAt.map(Timestamp.init(milliseconds:)))
        let seed: String? = row[5], commitment: String? = row[6], drawnAt: Int64? = row[7], entrants: Int? = row[8]
        let draw = seed.flatMap { seed in commitment.map { commitment in
            DrawRecord(seedHex: seed, commitment: commitment, drawnAt: drawnAt.map(Timestamp.init(milliseconds:)), entrants: entrants)
        } }
        return StoredQueuePolicy(policy: policy, draw: draw)
    }

    public func queuePolicy(concertId: Int64) async throws -> StoredQueuePolicy? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.policyColumns) FROM queue_policies WHERE concert_id = ?",
                             arguments: [concertId]).map(Self.storedPolicy)
        }
    }

    public func changeQueuePolicy(concertId: Int64, change: LinePolicyChange, defaults: LinePolicy, bookingOpensAt: Timestamp,
                                  newSeedHex: String, commitment: String) async throws -> StoredQueuePolicy {
        let fresh = change.applied(to: defaults)
        let freshSeed = fresh.queueOpensAt.map { $0 < bookingOpensAt } ?? false
        let opens = "(CASE WHEN ? THEN excluded.queue_opens_at ELSE queue_policies.queue_opens_at END)"
        return try await write { db in
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM concerts WHERE id = ?", arguments: [concertId]) != nil else {
                throw DomainError.concertNotFound
            }
            try db.execute(sql: """
                INSERT INTO queue_policies (concert_id, max_active, admit_per_minute, active_seconds, paused, queue_opens_at,
                                            draw_seed, draw_commitment)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (concert_id) DO UPDATE SET
                  max_active = CASE WHEN ? THEN excluded.max_active ELSE queue_policies.max_active END,
                  admit_per_minute = CASE WHEN ? THEN excluded.admit_per_minute ELSE queue_policies.admit_per_minute END,
                  active_seconds = CASE WHEN ? THEN excluded.active_seconds ELSE queue_policies.active_seconds END,
                  paused = CASE WHEN ? THEN excluded.paused ELSE queue_policies.paused END,
                  queue_opens_at = \(opens),
                  draw_seed = COALESCE(queue_policies.draw_seed, CASE WHEN \(opens) < ? THEN ? END),
                  draw_commitment = COALESCE(queue_policies.draw_commitment, CASE WHEN \(opens) < ? THEN ? END)
                """, arguments: [
                    concertId, fresh.maxActive, fresh.admitPerMinute, fresh.activeSeconds, fresh.paused ? 1 : 0,
                    fresh.queueOpensAt?.milliseconds, freshSeed ? newSeedHex : nil, freshSeed ? commitment : nil,
                    change.maxActive != nil, change.admitPerMinute != nil, change.activeSeconds != nil, change.paused != nil,
                    change.queueOpensAt != nil,
                    change.queueOpensAt != nil, bookingOpensAt.milliseconds, newSeedHex,
                    change.queueOpensAt != nil, bookingOpensAt.milliseconds, commitment,
                ])
            let row = try Row.fetchOne(db, sql: "SELECT \(Self.policyColumns) FROM queue_policies WHERE concert_id = ?",
                                       arguments: [concertId])!
            return Self.storedPolicy(row)
        }
    }

    public func recordDraw(concertId: Int64, entrants: Int, at: Timestamp) async throws {
        try await write { db in
            try db.execute(sql: """
                UPDATE queue_policies SET drawn_at = ?, entrants = ? WHERE concert_id = ? AND drawn_at IS NULL
                """, arguments: [at.milliseconds, entrants, concertId])
        }
    }

    public func availability(concertId: Int64, now: Timestamp) async throws -> Availability {
        try await read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COALESCE(SUM(s.total_seats), 0),
                  COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id
                                AND (r.status = 'CONFIRMED' OR (r.status = 'HELD' AND r.held_until > ?)))), 0),
                  COALESCE(SUM((SELECT COUNT(*) FROM reservations r WHERE r.schedule_id = s.id AND r.status = 'CONFIRMED')), 0)
                FROM schedules s WHERE s.concert_id = ? AND s.starts_at > ? AND s.cancelled_at IS NULL
                """, arguments: [now.milliseconds, concertId, now.milliseconds])
            let total: Int = row?[0] ?? 0, taken: Int = row?[1] ?? 0, sold: Int = row?[2] ?? 0
            return Availability(total: total, available: total - taken, sold: sold)
        }
    }

    public func upcomingConcerts(now: Timestamp, after: Int64?, limit: Int) async throws -> ReservableConcertPage {
        let t = now.milliseconds
        return try await read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT \(Columns.concert) FROM concerts c
                WHERE c.booking_closes_at > ? AND c.id > ?
                  AND (c.booking_opens_at > ?
                       OR EXISTS (SELECT 1 FROM schedules s WHERE s.concert_id = c.id AND s.starts_at > ?))
                ORDER BY c.id LIMIT ?
                """, arguments: [t, after ?? 0, t, t, limit])
            let changesAt = try Int64.fetchOne(db, sql: """
                SELECT MIN(x) FROM (
                  SELECT MIN(booking_opens_at) AS x FROM concerts WHERE booking_opens_at > ?
                  UNION ALL SELECT MIN(booking_closes_at) FROM concerts WHERE booking_closes_at > ?
                  UNION ALL SELECT MIN(starts_at) FROM schedules WHERE starts_at > ?)
                """, arguments: [t, t, t])
            return ReservableConcertPage(concerts: rows.map(Self.concert), changesAt: changesAt.map(Timestamp.init(milliseconds:)))
        }
    }
}
