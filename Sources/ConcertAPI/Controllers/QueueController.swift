import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Joining, polling and leaving a concert's waiting room.
struct QueueController {
    let store: any CatalogStore
    let waitingRoom: any WaitingRoom
    let gate: QueueGate
    let clock: WallClock

    func addRoutes(to routes: inout Routes) {
        routes.add(.post, "/v1/concerts/{concertId}/queue/tokens", .authenticated, join)
        routes.add(.get, "/v1/queue/tokens/current", .authenticated, current)
        routes.add(.delete, "/v1/queue/tokens/current", .authenticated, leave)
    }

    func join(_ request: Request, context: AppRequestContext) async throws -> Response {
        let caller = try context.caller()
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let concert = try await store.concert(id: concertId) else { throw DomainError.concertNotFound }
        let now = clock.now()
        guard concert.isBookingOpen(at: now) else { throw DomainError.concertNotReservable }
        let (ticket, created) = try await waitingRoom.join(userId: caller.userId, concertId: concertId, now: now)
        return try JSONBody.response(QueueTicketBody(ticket: ticket), status: created ? .created : .ok)
    }

    func current(_ request: Request, context: AppRequestContext) async throws -> Response {
        let ticket = try await gate.ticket(QueueGate.token(in: request), caller: context.caller())
        return try JSONBody.response(QueueTicketBody(ticket: ticket))
    }

    func leave(_ request: Request, context: AppRequestContext) async throws -> Response {
        let ticket = try await gate.ticket(QueueGate.token(in: request), caller: context.caller())
        try await waitingRoom.end(token: ticket.token, now: clock.now())
        return Response(status: .noContent)
    }
}
