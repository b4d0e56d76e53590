import ConcertDomain
import ConcertStore
import Hummingbird

/// The contract's `Idempotency-Key` for charges and payments: per user, for 24 hours, the same
/// key and request replays the first successful answer; a different request is 422; a repeat
/// while the first runs is 409. Only successes are kept, and they are written in the same
/// transaction as the write itself (see `IdempotentCompletion`), so a crash can never leave a
/// charge made but unrecorded. A failure changes nothing and frees the key for a corrected retry.
struct Idempotency: Sendable {
    let store: any IdempotencyStore
    let clock: WallClock
    /// How long a claimed key answers 409 IDEMPOTENCY_KEY_IN_USE when its first request never
    /// finished: killed with its instance, or its release lost while the database restarted.
    /// It only decides how long a retry waits, never whether the work happens twice: the work
    /// commits only while its claim is still the key's (`complete` in each store checks
    /// `created_at = claimedAt` in the same transaction), so a retry that takes over an old
    /// claim makes the first request roll back if it ever gets that far. Kept short so that a
    /// payment cut off by a fault can be retried within seconds, not minutes.
    static let leaseMilliseconds: Int64 = 10_000
    static let retentionMilliseconds: Int64 = 24 * 3600 * 1000

    /// Hands the operation a way to make its `IdempotentCompletion` (nil without a key).
    struct Scope: Sendable {
        let userId: Int64
        let key: String?
        let claimedAt: Timestamp

        func callAsFunction<Result>(_ render: @escaping @Sendable (Result) throws -> StoredResponse) -> IdempotentCompletion<Result>? {
            key.map { IdempotentCompletion(userId: userId, key: $0, claimedAt: claimedAt, render: render) }
        }
    }

    static func validKey(_ key: String) -> Bool {
        (1...255).contains(key.utf8.count) && key.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E }
    }

    func run(request: Request, userId: Int64, fingerprint: String,
             _ operation: (Scope) async throws -> Response) async throws -> Response {
        guard let key = request.headers[.idempotencyKey] else {
            return try await operation(Scope(userId: userId, key: nil, claimedAt: clock.now()))
        }
        guard Self.validKey(key) else {
            throw APIError.validationFailed("Idempotency-Key must be 1 to 255 printable ASCII characters")
        }
        let claimedAt = clock.now()
        switch try await store.claim(userId: userId, key: key, fingerprint: fingerprint, now: claimedAt,
                                     leaseMilliseconds: Self.leaseMilliseconds, retentionMilliseconds: Self.retentionMilliseconds) {
        case .replay(let stored):
            var response = JSONBody.response(bytes: stored.body, status: .init(code: stored.status))
            response.headers[.idempotentReplayed] = "true"
            return response
        case .inUse:
            throw DomainError.idempotencyKeyInUse
        case .reused:
            throw DomainError.idempotencyKeyReused
        case .proceed:
            do {
                return try await operation(Scope(userId: userId, key: key, claimedAt: claimedAt))
            } catch {
                try? await store.release(userId: userId, key: key, claimedAt: claimedAt)
                throw error
            }
        }
    }
}
