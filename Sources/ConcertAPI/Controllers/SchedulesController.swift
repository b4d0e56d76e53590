import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Schedules and seat maps [Q].
struct SchedulesController {
    let store: any CatalogStore
    let cache: any ResponseCache
    let clock: WallClock
    /// Longest a cached schedule list is served.
    let cacheTTLMilliseconds: Int64

    func addRoutes(to routes: inout Routes) {
        routes.add(.get, "/v1/concerts/{concertId}/schedules", list)
        routes.add(.get, "/v1/schedules/{scheduleId}/seats", seats)
    }

    func list(_ request: Request, context: TicketedRequestContext) async throws -> Response {
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let concert = try await store.concert(id: concertId) else { throw DomainError.concertNotFound }
        try context.admit(concertId: concertId)
        let now = clock.now()
        guard concert.isBookingOpen(at: now) else { throw DomainError.concertNotReservable }
        // Availability may be shown up to `cacheTTLMilliseconds` old when holds run out by
        // themselves; every hold, cancel and schedule creation drops the entry at once. A hold is
        // always decided by the database, never by this list.
        let cache = CacheAside(cache: cache, logger: context.logger)
        let body = try await cache.body(namespace: CacheAside.schedules(of: concertId), key: "future", now: now) {
            let schedules = try await store.futureSchedules(concertId: concertId, now: now)
            var expiresAt = now.adding(milliseconds: cacheTTLMilliseconds)
            if let first = schedules.map(\.schedule.startsAt).min(), first < expiresAt { expiresAt = first }
            return (try JSONBody.encode(ScheduleListBody(schedules: schedules.map { ScheduleBody($0.schedule, availableSeats: $0.availableSeats) })), expiresAt)
        }
        return JSONBody.response(bytes: body, status: .ok)
    }

    func seats(_ request: Request, context: TicketedRequestContext) async throws -> Response {
        let scheduleId = try request.pathId("scheduleId", context: context, orElse: .scheduleNotFound)
        guard let schedule = try await store.schedule(id: scheduleId) else { throw DomainError.scheduleNotFound }
        try context.admit(concertId: schedule.concertId)
        guard let seats = try await store.seatMap(scheduleId: scheduleId, now: clock.now()) else {
            throw DomainError.scheduleNotFound
        }
        return try JSONBody.response(SeatMapBody(scheduleId: scheduleId, concertId: schedule.concertId,
                                                 seats: seats.map { SeatBody(number: $0.number, price: $0.price, status: $0.status) }))
    }
}
