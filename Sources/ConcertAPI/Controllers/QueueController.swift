import ConcertDomain
import ConcertStore
import Hummingbird
import SharedState

/// Joining, polling and leaving a concert's waiting room.
struct QueueController {
    let waitingRoom: any WaitingRoom
    let policies: LinePolicies
    let clock: WallClock

    func addRoutes(to routes: inout Routes) {
        routes.add(.post, "/v1/concerts/{concertId}/queue/tokens", join)
        routes.add(.get, "/v1/queue/tokens/current", current)
        routes.add(.delete, "/v1/queue/tokens/current", leave)
    }

    /// Joins from the booking window's opening, or from `queueOpensAt` when the concert has a
    /// pre-queue; never once every seat is sold. A join after opening first makes sure the
    /// pre-queue has been drawn, so that it stands behind the whole pre-queue.
    func join(_ request: Request, context: AuthenticatedRequestContext) async throws -> Response {
        let caller = context.identity
        let concertId = try request.pathId("concertId", context: context, orElse: .concertNotFound)
        guard let snapshot = try await policies.snapshot(concertId: concertId) else { throw DomainError.concertNotFound }
        let now = clock.now()
        guard OnSaleRules.canJoin(line: snapshot.line, concert: snapshot.concert, now: now) else {
            throw DomainError.concertNotReservable
        }
        if snapshot.availability.soldOut { throw DomainError.concertSoldOut }
        try await policies.drawIfDue(snapshot, waitingRoom: waitingRoom, now: now)
        let (ticket, created) = try await waitingRoom.join(userId: caller.userId, concertId: concertId, now: now)
        let shown = try await QueueTickets.decorate(ticket, policies: policies, waitingRoom: waitingRoom, now: now)
        return JSONBody.response(bytes: QueueTicketBody(ticket: shown).jsonBytes, status: created ? .created : .ok)
    }

    func current(_ request: Request, context: TicketedRequestContext) async throws -> Response {
        let shown = try await QueueTickets.decorate(context.ticket, policies: policies, waitingRoom: waitingRoom, now: clock.now())
        return JSONBody.response(bytes: QueueTicketBody(ticket: shown).jsonBytes, status: .ok)
    }

    func leave(_ request: Request, context: TicketedRequestContext) async throws -> Response {
        try await waitingRoom.end(token: context.ticket.token, now: clock.now())
        return Response(status: .noContent)
    }
}

/// What a fan's ticket says besides the line's own answer: sold out, and the pre-queue (where
/// the position is how many others are in it, no place being decided before the draw).
enum QueueTickets {
    static func decorate(_ ticket: QueueTicket, policies: LinePolicies, waitingRoom: any WaitingRoom,
                         now: Timestamp) async throws -> QueueTicket {
        guard ticket.status == .waiting else { return ticket }
        let policy = try await policies.policy(concertId: ticket.concertId, now: now)
        var shown = ticket
        shown.soldOut = policy.soldOut
        if policy.preQueue {
            shown.preQueue = true
            let waiting = try await waitingRoom.counts(concertId: ticket.concertId, now: now).waiting
            shown.position = max(0, waiting - 1)
        }
        return shown
    }
}
