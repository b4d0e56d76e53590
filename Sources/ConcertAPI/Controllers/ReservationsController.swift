import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Seat holds [Q] and the caller's reservations.
struct ReservationsController {
    let store: any CatalogStore & ReservationStore
    /// Set on PostgreSQL alone: the hold checks its queue token in its own database call, so its
    /// route is not behind `QueueTicketMiddleware` (see `holdCheckingToken`).
    let ticketedHolds: (any TicketedHolds)?
    let gate: QueueGate
    let cache: any ResponseCache
    let clock: WallClock
    let rules: BookingRules

    struct HoldRequestBody: Decodable {
        var scheduleId: Int64
        var seatNumber: Int
    }

    func addRoutes(to routes: inout Routes) {
        if let ticketedHolds {
            routes.add(.post, "/v1/reservations") { request, context in
                try await holdCheckingToken(request, context: context, holds: ticketedHolds)
            }
        } else {
            routes.add(.post, "/v1/reservations", hold)
        }
        routes.add(.get, "/v1/reservations", list)
        routes.add(.get, "/v1/reservations/{reservationId}", show)
        routes.add(.delete, "/v1/reservations/{reservationId}", cancel)
    }

    func hold(_ request: Request, context: TicketedRequestContext) async throws -> Response {
        let caller = context.identity
        let body = try await JSONBody.decode(HoldRequestBody.self, from: request)
        guard body.scheduleId > 0 else { throw DomainError.scheduleNotFound }
        guard let schedule = try await store.schedule(id: body.scheduleId) else { throw DomainError.scheduleNotFound }
        try context.admit(concertId: schedule.concertId)
        guard schedule.contains(seat: body.seatNumber) else {
            throw DomainError.seatOutOfRange(seat: body.seatNumber, totalSeats: schedule.totalSeats)
        }
        let now = clock.now()
        let reservation = try await BusinessMetrics.recording(BusinessMetrics.hold) {
            try await store.hold(HoldRequest(userId: caller.userId, scheduleId: body.scheduleId,
                                             seatNumber: body.seatNumber, now: now, rules: rules))
        }
        await CacheAside(cache: cache, logger: context.logger).invalidate(CacheAside.schedules(of: schedule.concertId))
        return try JSONBody.response(ReservationBody(reservation, now: now), status: .created)
    }

    /// The hold of PostgreSQL alone: the same answers in the same order as `hold` behind
    /// `QueueTicketMiddleware`, with the token checked inside the hold's call. Whenever this
    /// handler refuses by itself (a bad body, an unknown schedule, a seat out of range, a concert
    /// not reservable), it first asks the waiting room, as the middleware would have before
    /// anything else: those answers are rare, and a hold that reaches the database pays no poll.
    func holdCheckingToken(_ request: Request, context: AuthenticatedRequestContext, holds: any TicketedHolds) async throws -> Response {
        let caller = context.identity
        let token = try QueueGate.token(in: request)
        let body: HoldRequestBody
        let schedule: Schedule
        do {
            body = try await JSONBody.decode(HoldRequestBody.self, from: request)
            guard body.scheduleId > 0, let found = try await store.schedule(id: body.scheduleId) else { throw DomainError.scheduleNotFound }
            schedule = found
        } catch {
            _ = try await gate.ticket(token, caller: caller)
            throw error
        }
        guard schedule.contains(seat: body.seatNumber) else {
            try QueueGate.admit(try await gate.ticket(token, caller: caller), concertId: schedule.concertId)
            throw DomainError.seatOutOfRange(seat: body.seatNumber, totalSeats: schedule.totalSeats)
        }
        let now = clock.now()
        let reservation: Reservation
        do {
            reservation = try await holds.hold(HoldRequest(userId: caller.userId, scheduleId: body.scheduleId,
                                                         seatNumber: body.seatNumber, now: now, rules: rules), token: token)
            BusinessMetrics.hold("ok")
        } catch let error as DomainError {
            switch error {
            case .queueTokenInvalid, .queueTokenNotActive:
                // The queue gate's refusals, not holds (as behind the middleware).
                throw error
            case .seatUnavailable, .holdLimitReached:
                // Decided in the database after the token passed.
                BusinessMetrics.hold(BusinessMetrics.outcome(of: error))
                throw error
            default:
                // Refused before the call (`HoldPolicy.checkReservable`) or a cancelled date:
                // the token's answer comes first.
                try QueueGate.admit(try await gate.ticket(token, caller: caller), concertId: schedule.concertId)
                BusinessMetrics.hold(BusinessMetrics.outcome(of: error))
                throw error
            }
        } catch {
            BusinessMetrics.hold(BusinessMetrics.outcome(of: error))
            throw error
        }
        await CacheAside(cache: cache, logger: context.logger).invalidate(CacheAside.schedules(of: schedule.concertId))
        return try JSONBody.response(ReservationBody(reservation, now: now), status: .created)
    }

    func list(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let now = clock.now()
        let reservations = try await store.reservations(userId: caller.userId)
        return try JSONBody.response(ReservationListBody(reservations: reservations.map { ReservationBody($0, now: now) }))
    }

    func show(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let id = try request.pathId("reservationId", context: context, orElse: .reservationNotFound)
        guard let reservation = try await store.reservation(id: id, userId: caller.userId) else {
            throw DomainError.reservationNotFound
        }
        return try JSONBody.response(ReservationBody(reservation, now: clock.now()))
    }

    func cancel(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let id = try request.pathId("reservationId", context: context, orElse: .reservationNotFound)
        let cancelled = try await store.cancel(reservationId: id, userId: caller.userId, now: clock.now())
        await CacheAside(cache: cache, logger: context.logger).invalidate(CacheAside.schedules(of: cancelled.concertId))
        return Response(status: .noContent)
    }
}
