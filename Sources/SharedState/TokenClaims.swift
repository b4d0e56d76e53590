import ConcertDomain
import Synchronization

/// Short exclusive claims on queue tokens, shared by every instance that shares the waiting room.
///
/// A payment ends its caller's queue token in the same step as the sale: it claims the token's
/// end before it writes, so that a second payment with the same token, on any instance, is
/// refused (the token has ended) instead of both going through; a payment that is refused by a
/// rule (402, 410, ...) releases the claim and the token works on. The claim lives beside the
/// waiting room (this process, Redis, or PostgreSQL) rather than in it, so the waiting room's
/// own scripts stay as they are; it expires by itself (`until`) so that a process killed
/// mid-payment cannot strand a token.
public protocol TokenClaims: Sendable {
    /// Takes the claim on `token` for `owner` until `until`, unless another owner holds an
    /// unexpired claim. True when taken.
    func claim(token: String, owner: String, until: Timestamp, now: Timestamp) async throws -> Bool
    /// Gives up `owner`'s claim on `token` (nothing when another owner holds it now).
    func release(token: String, owner: String) async throws
}

/// Claims kept in this process (one instance: SQLite, tests).
public final class InProcessTokenClaims: TokenClaims {
    private struct Claim {
        var owner: String
        var until: Timestamp
    }
    private let claims = Mutex<[String: Claim]>([:])

    public init() {}

    public func claim(token: String, owner: String, until: Timestamp, now: Timestamp) async throws -> Bool {
        claims.withLock { claims in
            if claims.count > 10_000 { claims = claims.filter { $0.value.until > now } }
            if let held = claims[token], held.until > now, held.owner != owner { return false }
            claims[token] = Claim(owner: owner, until: until)
            return true
        }
    }

    public func release(token: String, owner: String) async throws {
        claims.withLock { claims in
            if claims[token]?.owner == owner { claims[token] = nil }
        }
    }
}
