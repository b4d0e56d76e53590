import ConcertDomain

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
