import ConcertDomain

/// Failures of the HTTP layer itself (as opposed to `DomainError`, the domain's).
public enum APIError: Error, Equatable, Sendable {
    case malformedRequest(String)
    case validationFailed(String)
    case payloadTooLarge
    /// The request head (request line and headers) is over the server's limit, in bytes.
    case headersTooLarge(limit: Int)
    /// The request was not received completely in time (a slow or stalled client).
    case requestTimeout(seconds: Int64)
    case unauthenticated(String)
    case forbidden
    case routeNotFound
    case methodNotAllowed(allowed: [String])
    case rateLimited(retryAfterSeconds: Int)
    case serviceUnavailable(String)
    case internalError
}
