import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Operators create concerts and schedules and watch a concert's line and seats.
struct AdminController {
    let store: any CatalogStore
    let waitingRoom: any WaitingRoom
    let cache: any ResponseCache
    let clock: WallClock

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

    func addRoutes(to routes: inout Routes) {
        routes.add(.post, "/v1/admin/concerts", createConcert)
        routes.add(.get, "/v1/admin/concerts/{concertId}/stats", stats)
        routes.add(.post, "/v1/admin/concerts/{concertId}/schedules", createSchedule)
        routes.add(.post, "/v1/admin/schedules/{scheduleId}/cancel", cancelSchedule)
    }

    /// A date cancelled for good: every paid seat refunded, every live hold released, once
    /// (`CatalogStore.cancelSchedule`); a repeat answers 0/0. It leaves the concert list and the
    /// concert's schedule list at once, on every instance sharing the cache.
    func cancelSchedule(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let scheduleId = try request.pathId("scheduleId", context: context, orElse: .scheduleNotFound)
        let cancellation = try await store.cancelSchedule(id: scheduleId, now: clock.now())
        await CacheAside(cache: cache, logger: context.logger)
            .invalidate(CacheAside.concertList, CacheAside.schedules(of: cancellation.concertId))
        return try JSONBody.response(ScheduleCancellationBody(scheduleId: scheduleId, refunded: cancellation.refunded,
                                                              released: cancellation.released))
    }

    func createConcert(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(NewConcertBody.self, from: request)
        let new = try NewConcert(title: body.title, artist: body.artist, venue: body.venue,
                                 bookingOpensAt: body.bookingOpensAt.timestamp, bookingClosesAt: body.bookingClosesAt.timestamp).validated()
        let concert = try await store.createConcert(new)
        await CacheAside(cache: cache, logger: context.logger).invalidate(CacheAside.concertList)
        return try JSONBody.response(ConcertBody(concert, reservable: false), status: .created)
    }

    /// Operators' live view of one concert: its line and its seats.
    func stats(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard try await store.concert(id: concertId) != nil else { throw DomainError.concertNotFound }
        let now = clock.now()
        let line = try await waitingRoom.counts(concertId: concertId, now: now)
        let seats = try await store.seatCounts(concertId: concertId, now: now)
        return try JSONBody.response(ConcertStatsBody(concertId: concertId, waiting: line.waiting, active: line.active,
                                                      totalSeats: seats.total, seatsHeld: seats.held, seatsSold: seats.sold))
    }

    func createSchedule(_ request: Request, context: AdminRequestContext) async throws -> Response {
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        let body = try await JSONBody.decode(NewScheduleBody.self, from: request)
        let new = try NewSchedule(concertId: concertId, startsAt: body.startsAt.timestamp, price: body.price,
                                  seatCount: body.seatCount ?? NewSchedule.defaultSeatCount).validated()
        let schedule = try await store.createSchedule(new)
        await CacheAside(cache: cache, logger: context.logger).invalidate(CacheAside.concertList, CacheAside.schedules(of: concertId))
        return try JSONBody.response(ScheduleBody(schedule, availableSeats: schedule.totalSeats), status: .created)
    }
}
