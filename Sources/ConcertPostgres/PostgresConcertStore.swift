import ConcertDomain
import ConcertStore
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

    public init(maximumConnections: Int = 20, connectTimeout: Duration = .seconds(2),
                connectionWaitLimit: Duration = .seconds(3), busyWaitLimit: Duration = .seconds(30),
                transactionAttempts: Int = 3, operationLimit: Duration = .seconds(30)) {
        self.operationLimit = operationLimit
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
/// The pool does nothing until `run()` runs: start it in a task (or a service group) for as
/// long as the store is used.
public final class PostgresConcertStore: ConcertStore {
    let client: PostgresClient
    let logger: Logger
    let options: PostgresStoreOptions
    let health = ConnectionHealth()
    public let url: PostgresURL

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
                  AND EXISTS (SELECT 1 FROM schedules s WHERE s.concert_id = c.id AND s.starts_at > \(t))
                ORDER BY c.id LIMIT \(limit)
                """, logger: logger).collect().map(Self.concert)
            var changesAt: Int64?
            for try await value in try await connection.query("""
                SELECT LEAST(
                  (SELECT MIN(booking_opens_at) FROM concerts WHERE booking_opens_at > \(t)),
                  (SELECT MIN(booking_closes_at) FROM concerts WHERE booking_closes_at > \(t)),
                  (SELECT MIN(starts_at) FROM schedules WHERE starts_at > \(t)))
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
                FROM schedules s WHERE s.concert_id = \(concertId) AND s.starts_at > \(now.milliseconds)
            """)
        guard let row = rows.first else { return SeatCounts(total: 0, held: 0, sold: 0) }
        let (total, held, sold) = try row.decode((Int64, Int64, Int64).self)
        return SeatCounts(total: Int(total), held: Int(held), sold: Int(sold))
    }

    public func hasFutureSchedule(concertId: Int64, now: Timestamp) async throws -> Bool {
        try await first("""
            SELECT EXISTS (SELECT 1 FROM schedules WHERE concert_id = \(concertId) AND starts_at > \(now.milliseconds))
            """, as: Bool.self) ?? false
    }

    public func futureSchedules(concertId: Int64, now: Timestamp) async throws -> [ScheduleAvailability] {
        let t = now.milliseconds
        return try await rows("""
            SELECT s.id, s.concert_id, s.starts_at, s.total_seats, s.price,
              s.total_seats - (SELECT COUNT(*) FROM reservations r
                               WHERE r.schedule_id = s.id AND r.status IN ('HELD', 'CONFIRMED')
                                 AND (r.status = 'CONFIRMED' OR r.held_until > \(t)))
            FROM schedules s WHERE s.concert_id = \(concertId) AND s.starts_at > \(t)
            ORDER BY s.starts_at, s.id
            """).map { row in
            let (id, concertId, startsAt, totalSeats, price, available) = try row.decode((Int64, Int64, Int64, Int, Int64, Int64).self)
            return ScheduleAvailability(
                schedule: Schedule(id: id, concertId: concertId, startsAt: Timestamp(milliseconds: startsAt), totalSeats: totalSeats, price: price),
                availableSeats: Int(available))
        }
    }

    public func schedule(id: Int64) async throws -> Schedule? {
        try await rows("SELECT \(unescaped: Columns.schedule) FROM schedules s WHERE s.id = \(id)").first.map(Self.schedule)
    }

    public func seatMap(scheduleId: Int64, now: Timestamp) async throws -> [Seat]? {
        let logger = self.logger
        // One statement, so the schedule and its reservations are read from one snapshot.
        let rows = try await withConnection { connection in
            try await connection.query("""
                SELECT \(unescaped: Columns.schedule), r.seat_number, r.status, r.held_until
                FROM schedules s
                LEFT JOIN reservations r ON r.schedule_id = s.id AND r.status IN ('HELD', 'CONFIRMED')
                WHERE s.id = \(scheduleId)
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

    // MARK: Reservations

    public func hold(_ request: HoldRequest) async throws -> Reservation {
        let logger = self.logger
        let now = request.now.milliseconds
        return try await transaction { connection in
            guard let row = try await connection.query("""
                SELECT \(unescaped: Columns.schedule), \(unescaped: Columns.concert)
                FROM schedules s JOIN concerts c ON c.id = s.concert_id WHERE s.id = \(request.scheduleId)
                """, logger: logger).collect().first else { throw DomainError.scheduleNotFound }
            let schedule = try Self.schedule(row)
            let concert = try Self.concert(row, offset: 5)
            try HoldPolicy.checkReservable(concert: concert, schedule: schedule, seatNumber: request.seatNumber, now: request.now)

            // The user's row is the lock that serialises one user's holds, so two concurrent holds
            // cannot both count the same number of live holds and pass the limit together.
            try await connection.query("INSERT INTO users (id) VALUES (\(request.userId)) ON CONFLICT (id) DO NOTHING", logger: logger)
            _ = try await connection.query("SELECT id FROM users WHERE id = \(request.userId) FOR UPDATE", logger: logger).collect()
            var live: Int64 = 0
            for try await count in try await connection.query("""
                SELECT COUNT(*) FROM reservations WHERE user_id = \(request.userId) AND status = 'HELD' AND held_until > \(now)
                """, logger: logger).decode(Int64.self) {
                live = count
            }
            if live >= request.rules.maxHoldsPerUser { throw DomainError.holdLimitReached(limit: request.rules.maxHoldsPerUser) }

            // A hold that ran out is written down as EXPIRED, which takes it out of the unique
            // index of live reservations and lets the insert below claim the seat. A payment of
            // that reservation holds its row lock, so this waits for it and then sees CONFIRMED.
            try await connection.query("""
                UPDATE reservations SET status = 'EXPIRED'
                WHERE schedule_id = \(schedule.id) AND seat_number = \(request.seatNumber) AND status = 'HELD' AND held_until <= \(now)
                """, logger: logger)
            let heldUntil = now + request.rules.holdMilliseconds
            // The unique index arbitrates between concurrent holds of the seat: a racer that
            // loses waits for the winner's commit and then inserts nothing.
            var inserted: Int64?
            for try await id in try await connection.query("""
                INSERT INTO reservations (user_id, schedule_id, concert_id, seat_number, price, status, held_until, created_at)
                VALUES (\(request.userId), \(schedule.id), \(schedule.concertId), \(request.seatNumber), \(schedule.price), 'HELD', \(heldUntil), \(now))
                ON CONFLICT (schedule_id, seat_number) WHERE status IN ('HELD', 'CONFIRMED') DO NOTHING
                RETURNING id
                """, logger: logger).decode(Int64.self) {
                inserted = id
            }
            guard let id = inserted else { throw DomainError.seatUnavailable }
            return Reservation(id: id, userId: request.userId, scheduleId: schedule.id, concertId: schedule.concertId,
                               seatNumber: request.seatNumber, price: schedule.price, storedStatus: .held,
                               heldUntil: Timestamp(milliseconds: heldUntil), createdAt: request.now)
        }
    }

    public func reservations(userId: Int64) async throws -> [Reservation] {
        try await rows("SELECT \(unescaped: Columns.reservation) FROM reservations WHERE user_id = \(userId) ORDER BY id DESC")
            .map(Self.reservation)
    }

    public func reservation(id: Int64, userId: Int64) async throws -> Reservation? {
        try await rows("SELECT \(unescaped: Columns.reservation) FROM reservations WHERE id = \(id) AND user_id = \(userId)")
            .first.map(Self.reservation)
    }

    @discardableResult
    public func cancel(reservationId: Int64, userId: Int64, now: Timestamp) async throws -> Reservation {
        let logger = self.logger
        return try await transaction { connection in
            guard let row = try await connection.query("""
                SELECT \(unescaped: Columns.reservation) FROM reservations WHERE id = \(reservationId) AND user_id = \(userId) FOR UPDATE
                """, logger: logger).collect().first else { throw DomainError.reservationNotFound }
            var reservation = try Self.reservation(row)
            guard reservation.status(at: now) == .held else { throw DomainError.reservationNotHeld }
            try await connection.query("UPDATE reservations SET status = 'CANCELLED' WHERE id = \(reservationId)", logger: logger)
            reservation.storedStatus = .cancelled
            return reservation
        }
    }

    // MARK: Wallet

    public func balance(userId: Int64) async throws -> Int64 {
        try await first("SELECT balance FROM users WHERE id = \(userId)", as: Int64.self) ?? 0
    }

    public func charge(userId: Int64, amount: Int64, now: Timestamp, rules: BookingRules,
                       idempotency: IdempotentCompletion<Int64>?) async throws -> Int64 {
        // The amount's own limits do not depend on the balance: check them before any I/O.
        try WalletPolicy.checkCharge(amount: amount, balance: 0, rules: rules)
        let logger = self.logger
        return try await transaction { connection in
            try await connection.query("INSERT INTO users (id) VALUES (\(userId)) ON CONFLICT (id) DO NOTHING", logger: logger)
            // One conditional update: concurrent charges queue on the row lock and each adds to
            // the balance the previous one committed, so none is lost.
            var after = try await Self.first(on: connection, logger: logger, """
                UPDATE users SET balance = balance + \(amount)
                WHERE id = \(userId) AND balance <= \(BookingRules.maxBalance - amount)
                RETURNING balance
                """, as: Int64.self)
            if after == nil {
                // Over the maximum balance: lock the row and let the wallet rule say why. Should a
                // payment have lowered the balance since, the rule passes and the charge applies.
                let balance = try await Self.first(on: connection, logger: logger,
                                                   "SELECT balance FROM users WHERE id = \(userId) FOR UPDATE", as: Int64.self) ?? 0
                try WalletPolicy.checkCharge(amount: amount, balance: balance, rules: rules)
                after = try await Self.first(on: connection, logger: logger,
                                             "UPDATE users SET balance = balance + \(amount) WHERE id = \(userId) RETURNING balance",
                                             as: Int64.self)
            }
            guard let after else { throw PostgresStoreError("the user row vanished during a charge") }
            try await connection.query("""
                INSERT INTO point_entries (user_id, type, amount, balance_after, created_at)
                VALUES (\(userId), 'CHARGE', \(amount), \(after), \(now.milliseconds))
                """, logger: logger)
            if let idempotency { try await Self.complete(on: connection, logger: logger, idempotency, with: after) }
            return after
        }
    }

    public func history(userId: Int64) async throws -> [PointEntry] {
        try await rows("""
            SELECT id, type, amount, balance_after, created_at FROM point_entries WHERE user_id = \(userId) ORDER BY id DESC
            """).map { row in
            let (id, type, amount, balanceAfter, createdAt) = try row.decode((Int64, String, Int64, Int64, Int64).self)
            return PointEntry(id: id, type: PointEntryType(rawValue: type) ?? .charge, amount: amount,
                              balanceAfter: balanceAfter, createdAt: Timestamp(milliseconds: createdAt))
        }
    }

    // MARK: Payments

    public func pay(userId: Int64, reservationId: Int64, now: Timestamp,
                    idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt {
        let logger = self.logger
        return try await transaction { connection in
            // The reservation's row lock serialises payments of it with each other and with a new
            // hold that would expire it; whoever comes second sees what the first wrote.
            guard let row = try await connection.query("""
                SELECT \(unescaped: Columns.reservation) FROM reservations WHERE id = \(reservationId) AND user_id = \(userId) FOR UPDATE
                """, logger: logger).collect().first else { throw DomainError.reservationNotFound }
            let reservation = try Self.reservation(row)
            try HoldPolicy.checkPayable(reservation, now: now)
            // The user's row lock serialises this with the wallet's charges and other payments.
            let balance = try await Self.first(on: connection, logger: logger,
                                               "SELECT balance FROM users WHERE id = \(userId) FOR UPDATE", as: Int64.self) ?? 0
            try WalletPolicy.checkPayment(price: reservation.price, balance: balance)
            let after = balance - reservation.price
            try await connection.query("UPDATE users SET balance = \(after) WHERE id = \(userId)", logger: logger)
            try await connection.query("""
                INSERT INTO point_entries (user_id, type, amount, balance_after, created_at)
                VALUES (\(userId), 'PAYMENT', \(-reservation.price), \(after), \(now.milliseconds))
                """, logger: logger)
            try await connection.query("UPDATE reservations SET status = 'CONFIRMED' WHERE id = \(reservationId)", logger: logger)
            guard let paymentId = try await Self.first(on: connection, logger: logger, """
                INSERT INTO payments (user_id, reservation_id, amount, paid_at)
                VALUES (\(userId), \(reservationId), \(reservation.price), \(now.milliseconds))
                RETURNING id
                """, as: Int64.self) else { throw PostgresStoreError("INSERT INTO payments returned no id") }
            let payment = Payment(id: paymentId, userId: userId, reservationId: reservationId, amount: reservation.price, paidAt: now)
            let receipt = PaymentReceipt(payment: payment, balance: after, concertId: reservation.concertId)
            if let idempotency { try await Self.complete(on: connection, logger: logger, idempotency, with: receipt) }
            return receipt
        }
    }

    public func payment(id: Int64, userId: Int64) async throws -> Payment? {
        try await rows("SELECT id, user_id, reservation_id, amount, paid_at FROM payments WHERE id = \(id) AND user_id = \(userId)")
            .first.map { row in
                let (id, userId, reservationId, amount, paidAt) = try row.decode((Int64, Int64, Int64, Int64, Int64).self)
                return Payment(id: id, userId: userId, reservationId: reservationId, amount: amount, paidAt: Timestamp(milliseconds: paidAt))
            }
    }

    // MARK: Idempotency

    public func claim(userId: Int64, key: String, fingerprint: String, now: Timestamp,
                      leaseMilliseconds: Int64, retentionMilliseconds: Int64) async throws -> IdempotencyClaim {
        let logger = self.logger
        let t = now.milliseconds
        return try await transaction { connection in
            // A release can delete the row between the insert and the select; then try again.
            for _ in 0..<3 {
                // The primary key arbitrates between concurrent first claims of a key.
                let inserted = try await Self.first(on: connection, logger: logger, """
                    INSERT INTO idempotency_keys (user_id, key, fingerprint, state, created_at)
                    VALUES (\(userId), \(key), \(fingerprint), 'RUNNING', \(t))
                    ON CONFLICT (user_id, key) DO NOTHING
                    RETURNING 1
                    """, as: Int.self)
                if inserted != nil { return .proceed }
                guard let row = try await connection.query("""
                    SELECT fingerprint, state, response_status, response_body, created_at
                    FROM idempotency_keys WHERE user_id = \(userId) AND key = \(key) FOR UPDATE
                    """, logger: logger).collect().first else { continue }
                let (storedFingerprint, state, status, body, createdAt) = try row.decode((String, String, Int?, ByteBuffer?, Int64).self)
                if createdAt + retentionMilliseconds > t {
                    let stored = StoredIdempotency(fingerprint: storedFingerprint, done: state == "DONE", status: status,
                                                   body: body.map { Array($0.readableBytesView) }, createdAt: createdAt)
                    if let decided = stored.decide(fingerprint: fingerprint, now: t, leaseMilliseconds: leaseMilliseconds) {
                        return decided
                    }
                }
                // Past its retention, or an abandoned claim past its lease: take it over.
                try await connection.query("""
                    UPDATE idempotency_keys SET fingerprint = \(fingerprint), state = 'RUNNING', response_status = NULL,
                      response_body = NULL, created_at = \(t)
                    WHERE user_id = \(userId) AND key = \(key)
                    """, logger: logger)
                return .proceed
            }
            throw PostgresStoreError("idempotency key \(key) kept vanishing while being claimed")
        }
    }

    public func purgeIdempotencyKeys(claimedBefore cutoff: Timestamp) async throws -> Int {
        let deleted = try await rows("DELETE FROM idempotency_keys WHERE created_at < \(cutoff.milliseconds) RETURNING 1")
        return deleted.count
    }

    public func release(userId: Int64, key: String, claimedAt: Timestamp) async throws {
        let logger = self.logger
        try await withConnection { connection in
            _ = try await connection.query("""
                DELETE FROM idempotency_keys WHERE user_id = \(userId) AND key = \(key) AND state = 'RUNNING'
                  AND created_at = \(claimedAt.milliseconds)
                """, logger: logger).collect()
        }
    }

    private static func complete<R>(on connection: PostgresConnection, logger: Logger,
                                    _ completion: IdempotentCompletion<R>, with result: R) async throws {
        let response = try completion.render(result)
        let updated = try await connection.query("""
            UPDATE idempotency_keys SET state = 'DONE', response_status = \(response.status),
              response_body = \(ByteBuffer(bytes: response.body))
            WHERE user_id = \(completion.userId) AND key = \(completion.key) AND state = 'RUNNING'
              AND created_at = \(completion.claimedAt.milliseconds)
            RETURNING 1
            """, logger: logger).collect()
        guard updated.count == 1 else { throw DomainError.idempotencyKeyInUse }
    }

    // MARK: Queries and rows

    private enum Columns {
        static let concert = "c.id, c.title, c.artist, c.venue, c.booking_opens_at, c.booking_closes_at"
        static let schedule = "s.id, s.concert_id, s.starts_at, s.total_seats, s.price"
        static let reservation = "id, user_id, schedule_id, concert_id, seat_number, price, status, held_until, created_at"
    }

    /// Every row of a one-statement read.
    private func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        let logger = self.logger
        return try await withConnection { connection in
            try await connection.query(query, logger: logger).collect()
        }
    }

    /// The first column of the first row of a one-statement query, nil when there is no row.
    private func first<T: PostgresDecodable & Sendable>(_ query: PostgresQuery, as type: T.Type) async throws -> T? {
        let logger = self.logger
        return try await withConnection { connection in
            try await Self.first(on: connection, logger: logger, query, as: type)
        }
    }

    private static func first<T: PostgresDecodable & Sendable>(on connection: PostgresConnection, logger: Logger,
                                                               _ query: PostgresQuery, as type: T.Type) async throws -> T? {
        try await connection.query(query, logger: logger).collect().first.map { try $0.decode(T.self) }
    }

    private static func concert(_ row: PostgresRow) throws -> Concert { try concert(row, offset: 0) }

    /// The six concert columns starting at column `offset`.
    private static func concert(_ row: PostgresRow, offset: Int) throws -> Concert {
        let cells = Array(row)
        let id = try cells[offset].decode(Int64.self)
        let title = try cells[offset + 1].decode(String.self)
        let artist = try cells[offset + 2].decode(String.self)
        let venue = try cells[offset + 3].decode(String.self)
        let opens = try cells[offset + 4].decode(Int64.self)
        let closes = try cells[offset + 5].decode(Int64.self)
        return Concert(id: id, title: title, artist: artist, venue: venue,
                       bookingOpensAt: Timestamp(milliseconds: opens), bookingClosesAt: Timestamp(milliseconds: closes))
    }

    /// The five schedule columns at the start of the row.
    private static func schedule(_ row: PostgresRow) throws -> Schedule {
        let cells = Array(row)
        return Schedule(id: try cells[0].decode(Int64.self), concertId: try cells[1].decode(Int64.self),
                        startsAt: Timestamp(milliseconds: try cells[2].decode(Int64.self)),
                        totalSeats: try cells[3].decode(Int.self), price: try cells[4].decode(Int64.self))
    }

    private static func reservation(_ row: PostgresRow) throws -> Reservation {
        let (id, userId, scheduleId, concertId, seatNumber, price, status, heldUntil, createdAt) =
            try row.decode((Int64, Int64, Int64, Int64, Int, Int64, String, Int64, Int64).self)
        return Reservation(id: id, userId: userId, scheduleId: scheduleId, concertId: concertId, seatNumber: seatNumber, price: price,
                           storedStatus: ReservationStatus(rawValue: status) ?? .cancelled,
                           heldUntil: Timestamp(milliseconds: heldUntil), createdAt: Timestamp(milliseconds: createdAt))
    }
}

/// A fault of the store itself (a statement that should always return a row returned none).
public struct PostgresStoreError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
