import ConcertDomain

/// Failures of the HTTP layer itself (as opposed to `DomainError`, the domain's).
public enum APIError: Error, Equatable, Sendable {
    case malformedRequest(String)
    case validationFailed(String)
    case payloadTooLarge
    case unauthenticated(String)
    case forbidden
    case routeNotFound
    case methodNotAllowed(allowed: [String])
    case rateLimited(retryAfterSeconds: Int)
    case serviceUnavailable(String)
    case internalError
}
