import ConcertDomain
import Hummingbird
import SharedState

/// The context of the queue-protected ([Q]) routes and of the caller's own ticket: the
/// `Queue-Token` header was present (else 401 QUEUE_TOKEN_MISSING) and names a live ticket of the
/// caller's (else 401 QUEUE_TOKEN_INVALID), checked once by `QueueTicketMiddleware`.
///
/// Whether the ticket admits to what the request touches is for the handler to ask
/// (`admit(concertId:)`), once it has looked up the concert: an unknown schedule is 404 before
/// any ticket question.
struct TicketedRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let requestId: String
    let identity: Identity
    let ticket: QueueTicket

    init(context: AuthenticatedRequestContext) throws {
        guard let ticket = context.queueTicket else { throw DomainError.queueTokenMissing }
        self.coreContext = context.coreContext
        self.requestId = context.requestId
        self.identity = context.identity
        self.ticket = ticket
    }

    var maxUploadSize: Int { JSONBody.maxBytes }

    /// The ticket is for `concertId` (401 QUEUE_TOKEN_INVALID) and ACTIVE (403 QUEUE_TOKEN_NOT_ACTIVE).
    func admit(concertId: Int64) throws(DomainError) {
        try QueueGate.admit(ticket, concertId: concertId)
    }
}
