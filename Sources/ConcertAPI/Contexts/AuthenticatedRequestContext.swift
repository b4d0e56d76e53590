import ConcertDomain
import Hummingbird

/// The context of every route behind `AuthMiddleware`: the caller is known, never optional.
struct AuthenticatedRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let requestId: String
    let identity: Identity
    /// Set by `QueueTicketMiddleware` on queue-protected routes, and made non-optional by
    /// `TicketedRequestContext`.
    var queueTicket: QueueTicket?

    init(context: AppRequestContext) throws {
        // `AuthMiddleware` runs first and answers 401 itself; this only makes the type say so.
        guard let identity = context.identity else { throw APIError.unauthenticated("missing bearer token") }
        self.coreContext = context.coreContext
        self.requestId = context.requestId
        self.identity = identity
    }

    var maxUploadSize: Int { JSONBody.maxBytes }
}
