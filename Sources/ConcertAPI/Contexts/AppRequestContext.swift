import Hummingbird
import NIOCore

/// Who is calling, as proven by a verified JWT.
public struct Identity: Sendable, Equatable {
    public var userId: Int64
    public var isAdmin: Bool
}

/// Per-request state: the request id every response echoes, and the caller once `AuthMiddleware`
/// has verified one. Handlers behind authentication take an `AuthenticatedRequestContext`
/// instead, where the caller is never missing.
public struct AppRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestId = ""
    public var identity: Identity?
    public let remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Bodies are read by `JSONBody`, which enforces the contract's 64 KiB itself.
    public var maxUploadSize: Int { JSONBody.maxBytes }
}
