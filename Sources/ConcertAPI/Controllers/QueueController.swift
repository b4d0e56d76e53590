import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Joining, polling and leaving a concert's waiting room.
struct QueueController {
    let store: any CatalogStore
    let waitingRoom: any WaitingRoom
    let clock: WallClock

    func addRoutes(to routes: inout Routes) {
        routes.add(.post, "/v1/concerts/{concertId}/queue/tokens", join)
        routes.add(.get, "/v1/queue/tokens/current", current)
        routes.add(.delete, "/v1/queue/tokens/current", leave)
    }

    func join(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let concert = try await store.concert(id: concertId) else { throw DomainError.concertNotFound }
        let now = clock.now()
        guard concert.isBookingOpen(at: now) else { throw DomainError.concertNotReservable }
        let (ticket, created) = try await waitingRoom.join(userId: caller.userId, concertId: concertId, now: now)
        return try JSONBody.response(QueueTicketBody(ticket: ticket), status: created ? .created : .ok)
    }

    func current(_ request: Request, context: TicketedRequestContext) async throws -> Response {
        try JSONBody.response(QueueTicketBody(ticket: context.ticket))
    }

    func leave(_ request: Request, context: TicketedRequestContext) async throws -> Response {
        try await waitingRoom.end(token: context.ticket.token, now: clock.now())
        return Response(status: .noContent)
    }
}
