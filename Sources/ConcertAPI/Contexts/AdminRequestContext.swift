import Hummingbird

/// The context of the `/v1/admin` routes: the caller is an administrator (403 FORBIDDEN
/// otherwise, after authentication and the per-user rate limit).
struct AdminRequestContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    let requestId: String
    let identity: Identity

    init(context: AuthenticatedRequestContext) throws {
        guard context.identity.isAdmin else { throw APIError.forbidden }
        self.coreContext = context.coreContext
        self.requestId = context.requestId
        self.identity = context.identity
    }

    var maxUploadSize: Int { JSONBody.maxBytes }
}
