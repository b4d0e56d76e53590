import ConcertDomain

/// An Idempotency-Key row as either engine stores it, and the one rule that reads it.
public struct StoredIdempotency: Sendable {
    public var fingerprint: String
    public var done: Bool
    public var status: Int?
    public var body: [UInt8]?
    public var createdAt: Int64

    public init(fingerprint: String, done: Bool, status: Int?, body: [UInt8]?, createdAt: Int64) {
        self.fingerprint = fingerprint
        self.done = done
        self.status = status
        self.body = body
        self.createdAt = createdAt
    }

    /// What a new claim of a key meets in this row; nil means the row is stale (an abandoned
    /// claim past its lease) and the new claim takes it over.
    public func decide(fingerprint: String, now: Int64, leaseMilliseconds: Int64) -> IdempotencyClaim? {
        if fingerprint != self.fingerprint { return .reused }
        if done, let status { return .replay(StoredResponse(status: status, body: body ?? [])) }
        if createdAt + leaseMilliseconds > now { return .inUse }
        return nil
    }
}
