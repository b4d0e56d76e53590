import ConcertDomain
import SharedState
import Synchronization

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
