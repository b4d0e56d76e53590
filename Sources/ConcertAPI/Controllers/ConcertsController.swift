import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Public concert listing (cached) and a concert's details.
struct ConcertsController {
    let store: any ConcertStore
    let cache: any ResponseCache
    let clock: WallClock
    /// Longest a cached page of the list is served.
    let cacheTTLMilliseconds: Int64

    func addRoutes(to routes: inout Routes) {
        routes.add(.get, "/v1/concerts", list)
        routes.add(.get, "/v1/concerts/{concertId}", show)
    }

    func list(_ request: Request, context: AppRequestContext) async throws -> Response {
        let limit = try request.queryInteger("limit", default: 100, range: 1...500)
        let after = try request.queryInteger("after", default: 0, range: 0...Int64.max)
        let upcoming: Bool
        switch request.uri.queryParameters["upcoming"].map(String.init) {
        case nil, "false": upcoming = false
        case "true": upcoming = true
        default: throw APIError.malformedRequest("'upcoming' must be true or false")
        }
        let now = clock.now()
        let cache = CacheAside(cache: cache, logger: context.logger)
        let key = upcoming ? "upcoming:\(after):\(limit)" : "\(after):\(limit)"
        let body = try await cache.body(namespace: CacheAside.concertList, key: key, now: now) {
            let first = after == 0 ? nil : after
            let page = upcoming
                ? try await store.upcomingConcerts(now: now, after: first, limit: Int(limit))
                : try await store.reservableConcerts(now: now, after: first, limit: Int(limit))
            // Upcoming ones (booking opens later) are listed with reservable false.
            let body = try JSONBody.encode(ConcertListBody(concerts: page.concerts.map {
                ConcertBody($0, reservable: $0.isBookingOpen(at: now))
            }))
            // Never served past the next instant at which some concert enters or leaves the list.
            var expiresAt = now.adding(milliseconds: cacheTTLMilliseconds)
            if let changesAt = page.changesAt, changesAt < expiresAt { expiresAt = changesAt }
            return (body, expiresAt)
        }
        return JSONBody.response(bytes: body, status: .ok)
    }

    func show(_ request: Request, context: AppRequestContext) async throws -> Response {
        let id = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let concert = try await store.concert(id: id) else { throw DomainError.concertNotFound }
        let now = clock.now()
        let reservable = concert.isBookingOpen(at: now) ? try await store.hasFutureSchedule(concertId: id, now: now) : false
        return try JSONBody.response(ConcertBody(concert, reservable: reservable))
    }
}
