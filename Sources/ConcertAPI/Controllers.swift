import ConcertDomain
import ConcertStore
import Foundation
import Hummingbird
import SharedState

/// Public concert listing (cached) and a concert's details.
struct ConcertsController {
    let deps: Dependencies

    func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let limit = try request.queryInteger("limit", default: 100, range: 1...500)
        let after = try request.queryInteger("after", default: 0, range: 0...Int64.max)
        let now = deps.clock.now()
        let body = try await deps.cacheAside(context).body(namespace: CacheAside.concertList, key: "\(after):\(limit)", now: now) {
            let page = try await deps.store.reservableConcerts(now: now, after: after == 0 ? nil : after, limit: Int(limit))
            let body = try JSONBody.encode(ConcertListBody(concerts: page.concerts.map { ConcertBody($0, reservable: true) }))
            // Never served past the next instant at which some concert enters or leaves the list.
            var expiresAt = now.adding(milliseconds: deps.config.cacheTTLMilliseconds)
            if let changesAt = page.changesAt, changesAt < expiresAt { expiresAt = changesAt }
            return (body, expiresAt)
        }
        return JSONBody.response(bytes: body, status: .ok)
    }

    func show(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let concert = try await deps.store.concert(id: id) else { throw DomainError.concertNotFound }
        let now = deps.clock.now()
        let reservable = concert.isBookingOpen(at: now) ? try await deps.store.hasFutureSchedule(concertId: id, now: now) : false
        return try JSONBody.response(ConcertBody(concert, reservable: reservable))
    }

}

/// Joining, polling and leaving a concert's waiting room.
struct QueueController {
    let deps: Dependencies
    var gate: QueueGate { deps.queueGate }

    func join(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let concert = try await deps.store.concert(id: concertId) else { throw DomainError.concertNotFound }
        let now = deps.clock.now()
        guard concert.isBookingOpen(at: now) else { throw DomainError.concertNotReservable }
        let (ticket, created) = try await deps.waitingRoom.join(userId: caller.userId, concertId: concertId, now: now)
        return try JSONBody.response(QueueTicketBody(ticket: ticket), status: created ? .created : .ok)
    }

    func current(_ request: Request, context: AppRequestContext) async throws -> Response {
        let ticket = try await gate.ticket(QueueGate.token(in: request), caller: context.caller())
        return try JSONBody.response(QueueTicketBody(ticket: ticket))
    }

    func leave(_ request: Request, context: AppRequestContext) async throws -> Response {
        let ticket = try await gate.ticket(QueueGate.token(in: request), caller: context.caller())
        try await deps.waitingRoom.end(token: ticket.token, now: deps.clock.now())
        return Response(status: .noContent)
    }
}

/// Schedules and seat maps [Q].
struct SchedulesController {
    let deps: Dependencies
    var gate: QueueGate { deps.queueGate }

    func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let token = try QueueGate.token(in: request)
        let ticket = try await gate.ticket(token, caller: caller)
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let concert = try await deps.store.concert(id: concertId) else { throw DomainError.concertNotFound }
        try QueueGate.admit(ticket, concertId: concertId)
        let now = deps.clock.now()
        guard concert.isBookingOpen(at: now) else { throw DomainError.concertNotReservable }
        // Availability may be shown up to `scheduleCacheTTLMilliseconds` old when holds run out by
        // themselves; every hold, cancel and schedule creation drops the entry at once. A hold is
        // always decided by the database, never by this list.
        let body = try await deps.cacheAside(context).body(namespace: CacheAside.schedules(of: concertId), key: "future", now: now) {
            let schedules = try await deps.store.futureSchedules(concertId: concertId, now: now)
            var expiresAt = now.adding(milliseconds: deps.config.scheduleCacheTTLMilliseconds)
            if let first = schedules.map(\.schedule.startsAt).min(), first < expiresAt { expiresAt = first }
            return (try JSONBody.encode(ScheduleListBody(schedules: schedules.map { ScheduleBody($0.schedule, availableSeats: $0.availableSeats) })), expiresAt)
        }
        return JSONBody.response(bytes: body, status: .ok)
    }

    func seats(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let token = try QueueGate.token(in: request)
        let ticket = try await gate.ticket(token, caller: caller)
        let scheduleId = try request.pathId("scheduleId", context: context, orElse: .scheduleNotFound)
        guard let schedule = try await deps.store.schedule(id: scheduleId) else { throw DomainError.scheduleNotFound }
        try QueueGate.admit(ticket, concertId: schedule.concertId)
        guard let seats = try await deps.store.seatMap(scheduleId: scheduleId, now: deps.clock.now()) else {
            throw DomainError.scheduleNotFound
        }
        return try JSONBody.response(SeatMapBody(scheduleId: scheduleId, concertId: schedule.concertId,
                                                 seats: seats.map { SeatBody(number: $0.number, price: $0.price, status: $0.status) }))
    }
}

/// Seat holds and the caller's reservations.
struct ReservationsController {
    let deps: Dependencies
    var gate: QueueGate { deps.queueGate }

    struct HoldRequestBody: Decodable {
        var scheduleId: Int64
        var seatNumber: Int
    }

    func hold(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let token = try QueueGate.token(in: request)
        let ticket = try await gate.ticket(token, caller: caller)
        let body = try await JSONBody.decode(HoldRequestBody.self, from: request)
        guard body.scheduleId > 0 else { throw DomainError.scheduleNotFound }
        guard let schedule = try await deps.store.schedule(id: body.scheduleId) else { throw DomainError.scheduleNotFound }
        try QueueGate.admit(ticket, concertId: schedule.concertId)
        guard schedule.contains(seat: body.seatNumber) else {
            throw DomainError.seatOutOfRange(seat: body.seatNumber, totalSeats: schedule.totalSeats)
        }
        let now = deps.clock.now()
        let reservation = try await BusinessMetrics.recording(BusinessMetrics.hold) {
            try await deps.store.hold(HoldRequest(userId: caller.userId, scheduleId: body.scheduleId,
                                                  seatNumber: body.seatNumber, now: now, rules: deps.rules))
        }
        await deps.cacheAside(context).invalidate(CacheAside.schedules(of: schedule.concertId))
        return try JSONBody.response(ReservationBody(reservation, now: now), status: .created)
    }

    func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let now = deps.clock.now()
        let reservations = try await deps.store.reservations(userId: caller.userId)
        return try JSONBody.response(ReservationListBody(reservations: reservations.map { ReservationBody($0, now: now) }))
    }

    func show(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let id = try request.pathId("reservationId", context: context, orElse: .reservationNotFound)
        guard let reservation = try await deps.store.reservation(id: id, userId: caller.userId) else {
            throw DomainError.reservationNotFound
        }
        return try JSONBody.response(ReservationBody(reservation, now: deps.clock.now()))
    }

    func cancel(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let id = try request.pathId("reservationId", context: context, orElse: .reservationNotFound)
        let cancelled = try await deps.store.cancel(reservationId: id, userId: caller.userId, now: deps.clock.now())
        await deps.cacheAside(context).invalidate(CacheAside.schedules(of: cancelled.concertId))
        return Response(status: .noContent)
    }
}

/// Points: balance, charges (idempotent) and history.
struct PointsController {
    let deps: Dependencies

    struct ChargeRequestBody: Decodable {
        var amount: Int64
    }

    func balance(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        return try JSONBody.response(BalanceBody(balance: try await deps.store.balance(userId: caller.userId)))
    }

    func charge(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let body = try await JSONBody.decode(ChargeRequestBody.self, from: request)
        // Checked before the key is claimed, so a rejected amount never occupies a key.
        try WalletPolicy.checkCharge(amount: body.amount, balance: 0, rules: deps.rules)
        let idempotency = Idempotency(store: deps.store, clock: deps.clock)
        return try await idempotency.run(request: request, userId: caller.userId,
                                         fingerprint: "POST /v1/points/charges amount=\(body.amount)") { completion in
            let balance = try await BusinessMetrics.recording(BusinessMetrics.charge) {
                try await deps.store.charge(userId: caller.userId, amount: body.amount, now: deps.clock.now(),
                                            rules: deps.rules, idempotency: completion { balance in
                    StoredResponse(status: 200, body: try JSONBody.encode(BalanceBody(balance: balance)))
                })
            }
            return try JSONBody.response(BalanceBody(balance: balance))
        }
    }

    func history(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let entries = try await deps.store.history(userId: caller.userId)
        return try JSONBody.response(PointHistoryBody(entries: entries.map {
            PointEntryBody(id: $0.id, type: $0.type, amount: $0.amount, balanceAfter: $0.balanceAfter, createdAt: WireTime($0.createdAt))
        }))
    }
}

/// Payments [Q] (idempotent) and reading them back.
struct PaymentsController {
    let deps: Dependencies
    var gate: QueueGate { deps.queueGate }

    struct PayRequestBody: Decodable {
        var reservationId: Int64
    }

    func pay(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let body = try await JSONBody.decode(PayRequestBody.self, from: request)
        guard body.reservationId > 0 else { throw DomainError.reservationNotFound }
        let idempotency = Idempotency(store: deps.store, clock: deps.clock)
        // A replay is answered before the queue check: the first payment ended the queue token.
        return try await idempotency.run(request: request, userId: caller.userId,
                                         fingerprint: "POST /v1/payments reservationId=\(body.reservationId)") { completion in
            let token = try QueueGate.token(in: request)
            guard let reservation = try await deps.store.reservation(id: body.reservationId, userId: caller.userId) else {
                throw DomainError.reservationNotFound
            }
            // Paying twice is answered as such even though the first payment ended the token.
            if reservation.storedStatus == .confirmed { throw DomainError.reservationAlreadyPaid }
            let ticket = try await gate.ticket(token, caller: caller)
            try QueueGate.admit(ticket, concertId: reservation.concertId)
            let receipt = try await BusinessMetrics.recording(BusinessMetrics.payment) {
                try await deps.store.pay(userId: caller.userId, reservationId: body.reservationId, now: deps.clock.now(),
                                         idempotency: completion { receipt in
                    StoredResponse(status: 201, body: try JSONBody.encode(PaymentBody(receipt.payment, balance: receipt.balance)))
                })
            }
            do {
                try await deps.waitingRoom.end(token: token, now: deps.clock.now())
            } catch {
                // The payment stands; the token still runs out by itself.
                context.logger.warning("could not end the queue token after payment", metadata: ["error": "\(error)"])
            }
            return try JSONBody.response(PaymentBody(receipt.payment, balance: receipt.balance), status: .created)
        }
    }

    func show(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let id = try request.pathId("paymentId", context: context, orElse: .paymentNotFound)
        guard let payment = try await deps.store.payment(id: id, userId: caller.userId) else { throw DomainError.paymentNotFound }
        return try JSONBody.response(PaymentBody(payment, balance: nil))
    }
}

/// Operators create concerts and schedules.
struct AdminController {
    let deps: Dependencies

    struct NewConcertBody: Decodable {
        var title: String
        var artist: String
        var venue: String
        var bookingOpensAt: WireTime
        var bookingClosesAt: WireTime
    }

    struct NewScheduleBody: Decodable {
        var startsAt: WireTime
        var price: Int64
        var seatCount: Int?
    }

    func createConcert(_ request: Request, context: AppRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(NewConcertBody.self, from: request)
        let new = try NewConcert(title: body.title, artist: body.artist, venue: body.venue,
                                 bookingOpensAt: body.bookingOpensAt.timestamp, bookingClosesAt: body.bookingClosesAt.timestamp).validated()
        let concert = try await deps.store.createConcert(new)
        await deps.cacheAside(context).invalidate(CacheAside.concertList)
        return try JSONBody.response(ConcertBody(concert, reservable: false), status: .created)
    }

    /// Operators' live view of one concert: its line and its seats.
    func stats(_ request: Request, context: AppRequestContext) async throws -> Response {
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard try await deps.store.concert(id: concertId) != nil else { throw DomainError.concertNotFound }
        let now = deps.clock.now()
        let line = try await deps.waitingRoom.counts(concertId: concertId, now: now)
        let seats = try await deps.store.seatCounts(concertId: concertId, now: now)
        return try JSONBody.response(ConcertStatsBody(concertId: concertId, waiting: line.waiting, active: line.active,
                                                      totalSeats: seats.total, seatsHeld: seats.held, seatsSold: seats.sold))
    }

    func createSchedule(_ request: Request, context: AppRequestContext) async throws -> Response {
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        let body = try await JSONBody.decode(NewScheduleBody.self, from: request)
        let new = try NewSchedule(concertId: concertId, startsAt: body.startsAt.timestamp, price: body.price,
                                  seatCount: body.seatCount ?? NewSchedule.defaultSeatCount).validated()
        let schedule = try await deps.store.createSchedule(new)
        await deps.cacheAside(context).invalidate(CacheAside.concertList, CacheAside.schedules(of: concertId))
        return try JSONBody.response(ScheduleBody(schedule, availableSeats: schedule.totalSeats), status: .created)
    }
}

extension Request {
    /// An optional integer query parameter: 400 when it is not an integer, 422 out of range.
    func queryInteger(_ name: String, default value: Int64, range: ClosedRange<Int64>) throws(APIError) -> Int64 {
        guard let text = uri.queryParameters[name[...]] else { return value }
        guard let number = Int64(String(text)) else { throw .malformedRequest("'\(name)' must be an integer") }
        guard range.contains(number) else {
            throw .validationFailed("'\(name)' must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return number
    }
}
