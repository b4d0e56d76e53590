/// The shared store behind a `WaitingRoom`, `ResponseCache`, `RateLimiter` or `TokenClaims`
/// (Redis, or PostgreSQL alone) could not be reached, did not answer in time, or failed. The
/// HTTP layer answers 503 with Retry-After.
public struct SharedStateUnavailable: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }
}
