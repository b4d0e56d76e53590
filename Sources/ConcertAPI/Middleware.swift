import ConcertDomain
import HTTPTypes
import Hummingbird
import Logging
import SharedState

/// Gives every request an id (the client's `Request-Id` when it sent a sane one) and puts it on
/// every response, errors included.
struct RequestIdMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let sent = request.headers[.requestId]
        if let sent, !sent.isEmpty, sent.utf8.count <= 1024, sent.utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E }) {
            context.requestId = sent
        } else {
            context.requestId = RequestIdMiddleware.make()
        }
        context.logger[metadataKey: "request_id"] = .string(context.requestId)
        var response = try await next(request, context)
        response.headers[.requestId] = context.requestId
        return response
    }

    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() as UInt64
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// Turns every error into a problem+json response. Client mistakes are logged at debug level,
/// unavailability at warning, anything unexpected at error (with the error, never in the body).
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            var problem = Problem(error)
            if let http = error as? HTTPError, http.status == .notFound {
                let allowed = routes.allowedMethods(path: request.uri.path)
                if !allowed.isEmpty { problem = Problem(api: .methodNotAllowed(allowed: allowed)) }
            }
            switch problem.status {
            case 500...:
                if problem.status == 503 {
                    context.logger.warning("unavailable", metadata: ["error": "\(error)"])
                } else {
                    context.logger.error("unexpected error", metadata: ["error": "\(String(reflecting: error))"])
                }
            default:
                context.logger.debug("client error", metadata: ["code": "\(problem.code)"])
            }
            return problem.response(requestId: context.requestId)
        }
    }
}

/// Verifies the bearer JWT and records who is calling. Routes added behind it need one.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    let authenticator: Authenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.identity = try await authenticator.identity(authorization: request.headers[.authorization])
        return try await next(request, context)
    }
}

/// The queue check in front of the queue-protected routes: the `Queue-Token` header, then the
/// caller's live ticket for it, which `TicketedRequestContext` hands to the handler.
struct QueueTicketMiddleware: RouterMiddleware {
    typealias Context = AuthenticatedRequestContext
    let gate: QueueGate

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.queueTicket = try await gate.ticket(QueueGate.token(in: request), caller: context.identity)
        return try await next(request, context)
    }
}

/// The contract's optional per-address and per-user request rates (429 with Retry-After).
/// Per-user limits are checked after authentication, on the verified user id.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext
    enum Scope { case address, user }
    let scope: Scope
    let limit: Int
    let limiter: any RateLimiter
    let clock: WallClock
    /// Whose `X-Forwarded-For` names the client (per-address scope only).
    var trustedProxies = TrustedProxies()

    /// Probes and scrapes are never limited: a busy load balancer must not make the service look dead.
    static let exempt: Set<String> = ["/healthz", "/readyz", "/metrics"]

    /// The router answers `/healthz/` like `/healthz`, so the exemption does too.
    static func isExempt(_ path: String) -> Bool {
        var path = Substring(path)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        return exempt.contains(String(path))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard limit > 0, !Self.isExempt(request.uri.path) else { return try await next(request, context) }
        let key: String
        switch scope {
        case .address:
            // The header is only looked at when some proxy is trusted (most set-ups trust none).
            let client = trustedProxies.isEmpty ? context.remoteAddress
                : trustedProxies.clientAddress(peer: context.remoteAddress, forwardedFor: request.headers[values: .xForwardedFor])
            key = "ip:" + (client ?? "unknown")
        case .user:
            guard let identity = context.identity else { return try await next(request, context) }
            key = "user:\(identity.userId)"
        }
        let retryAfter: Int?
        do {
            retryAfter = try await limiter.acquire(key: key, limit: limit, now: clock.now())
        } catch is SharedStateUnavailable {
            // A limiter that cannot be reached must not take the whole service down (health checks
            // and the database-only endpoints included): let the request through.
            context.logger.warning("rate limiter unavailable; request let through")
            retryAfter = nil
        }
        if let retryAfter { throw APIError.rateLimited(retryAfterSeconds: retryAfter) }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let requestId = Self("Request-Id")!
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let queueToken = Self("Queue-Token")!
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
}
