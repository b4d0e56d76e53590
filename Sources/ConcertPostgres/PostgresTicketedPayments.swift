import ConcertDomain
import ConcertStore
import SharedState

/// Payments on PostgreSQL alone: the store's payment batch checks and claims the queue token in
/// the same call (`concertd_pay_batch`, migration 14), since the waiting room
/// (`PostgresWaitingRoom`) and the claims (`PostgresTokenClaims`) are tables of the same database.
/// A payment is then two round trips (this call, then the token's end) instead of five.
public final class PostgresTicketedPayments: TicketedPayments {
    private let store: PostgresConcertStore
    private let policies: any QueuePolicySource

    /// `policies` gives a line's idle time, which decides whether a WAITING token still counts.
    public init(store: PostgresConcertStore, policies: any QueuePolicySource) {
        self.store = store
        self.policies = policies
    }

    public func pay(userId: Int64, reservationId: Int64, token: String, claimOwner: String, claimUntil: Timestamp,
                    now: Timestamp, idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt {
        // A token that names no concert is unknown to the line; the database says so in its turn
        // (after the reservation's own answers), whatever idle time is passed.
        var idle: Int64 = 0
        if let concertId = QueueToken.concertId(of: token) {
            idle = try await policies.policy(concertId: concertId, now: now).idleMilliseconds
        }
        let check = PaymentTicketCheck(token: token, claimOwner: claimOwner, claimUntil: claimUntil, idleMilliseconds: idle)
        return try await store.pay(userId: userId, reservationId: reservationId, now: now, ticket: check, idempotency: idempotency)
    }
}

/// What `concertd_pay_batch` checks of a payment's queue token.
struct PaymentTicketCheck: Sendable {
    var token: String
    var claimOwner: String
    var claimUntil: Timestamp
    var idleMilliseconds: Int64
}
