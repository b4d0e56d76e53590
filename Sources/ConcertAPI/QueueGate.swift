import ConcertDomain
import Hummingbird
import SharedState

/// The check in front of every queue-protected ([Q]) endpoint: the caller must present an
/// ACTIVE waiting-room token of their own, for the concert the request touches.
/// `QueueTicketMiddleware` runs the first two steps for the routes whose handlers take a
/// `TicketedRequestContext`, which runs the third; the payment runs all three itself, later in
/// its order of checks.
struct QueueGate: Sendable {
    let waitingRoom: any WaitingRoom
    let clock: WallClock

    /// The token from the `Queue-Token` header (401 QUEUE_TOKEN_MISSING without one).
    static func token(in request: Request) throws(DomainError) -> String {
        guard let token = request.headers[.queueToken], !token.isEmpty else { throw .queueTokenMissing }
        return token
    }

    /// The caller's live ticket for this token (401 QUEUE_TOKEN_INVALID otherwise).
    func ticket(_ token: String, caller: Identity) async throws -> QueueTicket {
        guard let ticket = try await waitingRoom.poll(token: token, now: clock.now()), ticket.userId == caller.userId else {
            throw DomainError.queueTokenInvalid
        }
        return ticket
    }

    /// The ticket is for `concertId` and ACTIVE.
    static func admit(_ ticket: QueueTicket, concertId: Int64) throws(DomainError) {
        guard ticket.concertId == concertId else { throw .queueTokenInvalid }
        guard ticket.status == .active else { throw .queueTokenNotActive }
    }
}
