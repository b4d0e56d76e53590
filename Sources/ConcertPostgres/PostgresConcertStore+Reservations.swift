import Batching
import ConcertDomain
import ConcertStore
import Synchronization
import Logging
import PostgresNIO

/// The holds, cancels and reservation reads of `PostgresConcertStore`. A hold checks the booking
/// window on the schedule's facts (`facts(ofSchedule:)`, kept in memory once read) and then shares
/// one call of `concertd_hold` with the holds that arrive with it (`WriteBatcher`); a cancel is one
/// call of `concertd_cancel`.
extension PostgresConcertStore {
    public func hold(_ request: HoldRequest) async throws -> Reservation {
        try await hold(request, ticket: nil)
    }

    /// A hold, with its queue token checked in the same call when `ticket` is set
    /// (`PostgresTicketedWrites`).
    func hold(_ request: HoldRequest, ticket: QueueTokenCheck?) async throws -> Reservation {
        guard let facts = try await facts(ofSchedule: request.scheduleId) else { throw DomainError.scheduleNotFound }
        let schedule = facts.schedule
        try HoldPolicy.checkReservable(concert: facts.concert, schedule: schedule, seatNumber: request.seatNumber, now: request.now)
        let heldUntil = request.now.adding(milliseconds: request.rules.holdMilliseconds)
        let item = HoldItem(userId: request.userId, scheduleId: schedule.id, concertId: schedule.concertId, seatNumber: request.seatNumber,
                            price: schedule.price, now: request.now.milliseconds, heldUntil: heldUntil.milliseconds,
                            maxHolds: request.rules.maxHoldsPerUser, ticket: ticket)
        let logger = self.logger
        let outcome = try await holdBatcher.submit(item) { [self] items in
            try await autocommit { connection in try await Self.hold(items, on: connection, logger: logger) }
        }
        switch outcome {
        case .held(let id):
            return Reservation(id: id, userId: request.userId, scheduleId: schedule.id, concertId: schedule.concertId,
                               seatNumber: request.seatNumber, price: schedule.price, storedStatus: .held,
                               heldUntil: heldUntil, createdAt: request.now)
        case .seatUnavailable:
            throw DomainError.seatUnavailable
        case .holdLimitReached:
            throw DomainError.holdLimitReached(limit: request.rules.maxHoldsPerUser)
        case .scheduleCancelled:
            scheduleFacts.withLock { _ = $0.removeValue(forKey: request.scheduleId) }
            throw DomainError.scheduleNotFound
        case .queueTokenInvalid:
            throw DomainError.queueTokenInvalid
        case .queueTokenNotActive:
            throw DomainError.queueTokenNotActive
        }
    }

    /// One call of `concertd_hold` for a batch; one outcome per item, in order.
    private static func hold(_ items: [HoldItem], on connection: PostgresConnection, logger: Logger) async throws -> [HoldOutcome] {
        var outcomes = [HoldOutcome?](repeating: nil, count: items.count)
        let rows = try await connection.rows(HoldBatchStatement(
            users: items.map(\.userId), schedules: items.map(\.scheduleId), concerts: items.map(\.concertId),
            seats: items.map { Int64($0.seatNumber) }, prices: items.map(\.price), nows: items.map(\.now),
            heldUntils: items.map(\.heldUntil), maxHolds: items.map { Int64($0.maxHolds) },
            tokens: items.map { $0.ticket?.token ?? "" }, idleMilliseconds: items.map { $0.ticket?.idleMilliseconds ?? 0 }), logger: logger)
        for row in rows {
            let (item, outcome, reservationId) = try row.decode((Int64, String, Int64?).self)
            guard item >= 1, item <= items.count else { throw PostgresStoreError("concertd_hold_ticketed answered for item \(item) of \(items.count)") }
            switch (outcome, reservationId) {
            case ("HELD", let id?): outcomes[Int(item) - 1] = .held(id)
            case ("SEAT_UNAVAILABLE", _): outcomes[Int(item) - 1] = .seatUnavailable
            case ("HOLD_LIMIT_REACHED", _): outcomes[Int(item) - 1] = .holdLimitReached
            case ("SCHEDULE_NOT_FOUND", _): outcomes[Int(item) - 1] = .scheduleCancelled
            case ("QUEUE_TOKEN_INVALID", _): outcomes[Int(item) - 1] = .queueTokenInvalid
            case ("QUEUE_TOKEN_NOT_ACTIVE", _): outcomes[Int(item) - 1] = .queueTokenNotActive
            default: throw PostgresStoreError("concertd_hold answered \(outcome)")
            }
        }
        return try outcomes.map { outcome in
            guard let outcome else { throw BatchMismatch(expected: items.count, got: rows.count) }
            return outcome
        }
    }

    public func reservations(userId: Int64) async throws -> [Reservation] {
        try await rows("SELECT \(unescaped: Columns.reservation) FROM reservations WHERE user_id = \(userId) ORDER BY id DESC")
            .map(Self.reservation)
    }

    public func reservation(id: Int64, userId: Int64) async throws -> Reservation? {
        let logger = self.logger
        return try await withConnection { connection in
            try await connection.rows(ReservationStatement(id: id, userId: userId), logger: logger)
        }.first.map(Self.reservation)
    }

    @discardableResult
    public func cancel(reservationId: Int64, userId: Int64, now: Timestamp) async throws -> Reservation {
        let logger = self.logger
        let row = try await autocommit { connection in
            try await connection.query("""
                SELECT o_outcome, o_id, o_user, o_schedule, o_concert, o_seat, o_price, o_status, o_held_until, o_created_at
                FROM concertd_cancel(\(userId), \(reservationId), \(now.milliseconds))
                """, logger: logger).collect().first
        }
        guard let row else { throw PostgresStoreError("concertd_cancel answered no row") }
        let cells = Array(row)
        switch try cells[0].decode(String.self) {
        case "CANCELLED":
            let (_, id, user, schedule, concert, seat, price, status, heldUntil, createdAt) =
                try row.decode((String, Int64, Int64, Int64, Int64, Int64, Int64, String, Int64, Int64).self)
            return Reservation(id: id, userId: user, scheduleId: schedule, concertId: concert, seatNumber: Int(seat), price: price,
                               storedStatus: ReservationStatus(rawValue: status) ?? .cancelled,
                               heldUntil: Timestamp(milliseconds: heldUntil), createdAt: Timestamp(milliseconds: createdAt))
        case "RESERVATION_NOT_HELD": throw DomainError.reservationNotHeld
        case "RESERVATION_NOT_FOUND": throw DomainError.reservationNotFound
        case let other: throw PostgresStoreError("concertd_cancel answered \(other)")
        }
    }
}
