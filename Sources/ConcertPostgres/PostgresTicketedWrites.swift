import ConcertDomain
import ConcertStore
import SharedState

/// Holds and payments on PostgreSQL alone: the store's batches check the queue token in the same
/// call (`concertd_hold_ticketed` and `concertd_pay_batch`, migration 14), and a payment claims it
/// there too, since the waiting room (`PostgresWaitingRoom`) and the claims (`PostgresTokenClaims`)
/// are tables of the same database. A hold is then one round trip instead of two (poll, hold), a
/// payment two (this call, then the token's end) instead of five.
public final class PostgresTicketedWrites: TicketedPayments, TicketedHolds {
    private let store: PostgresConcertStore
    private let policies: any QueuePolicySource

    /// `policies` gives a line's idle time, which decides whether a WAITING token still counts.
    public init(store: PostgresConcertStore, policies: any QueuePolicySource) {
        self.store = store
        self.policies = policies
    }

    public func pay(userId: Int64, reservationId: Int64, token: String, claimOwner: String, claimUntil: Timestamp,
                    now: Timestamp, idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt {
        let check = PaymentTicketCheck(token: token, claimOwner: claimOwner, claimUntil: claimUntil,
                                       idleMilliseconds: try await idleMilliseconds(token, now: now))
        return try await store.pay(userId: userId, reservationId: reservationId, now: now, ticket: check, idempotency: idempotency)
    }

    public func hold(_ request: HoldRequest, token: String) async throws -> Reservation {
        let check = QueueTokenCheck(token: token, idleMilliseconds: try await idleMilliseconds(token, now: request.now))
        return try await store.hold(request, ticket: check)
    }

    /// The idle time of the token's line. A token that names no concert is unknown to every line;
    /// the database says so in its turn (after the answers that come before it), whatever is passed.
    private func idleMilliseconds(_ token: String, now: Timestamp) async throws -> Int64 {
        guard let concertId = QueueToken.concertId(of: token) else { return 0 }
        return try await policies.policy(concertId: concertId, now: now).idleMilliseconds
    }
}

/// What `concertd_pay_batch` checks of a payment's queue token, and the claim it takes.
struct PaymentTicketCheck: Sendable {
    var token: String
    var claimOwner: String
    var claimUntil: Timestamp
    var idleMilliseconds: Int64
}

/// What `concertd_hold_ticketed` checks of a hold's queue token.
struct QueueTokenCheck: Sendable {
    var token: String
    var idleMilliseconds: Int64
}
