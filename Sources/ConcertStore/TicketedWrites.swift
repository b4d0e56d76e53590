import ConcertDomain

/// Payments that check and claim the caller's queue token inside the payment's own transaction,
/// for a deployment whose database also holds the waiting room and the token claims (PostgreSQL
/// alone). Elsewhere the payment checks the token through `WaitingRoom` and `TokenClaims` first,
/// a round trip each; here those checks and the payment are one call.
public protocol TicketedPayments: Sendable {
    /// `PaymentStore.pay` with the token's checks in the order the API answers them on every
    /// engine: `reservationNotFound` and `reservationAlreadyPaid` first (whatever the token), then
    /// `queueTokenInvalid` (claimed by another owner, unknown, another user's, run out, gone idle,
    /// or for another concert) and `queueTokenNotActive` (still WAITING), then the payment's own
    /// refusals. The claim is taken for `claimOwner` until `claimUntil`; a refusal gives it back,
    /// a payment keeps it (the token's end, which follows, makes it moot).
    func pay(userId: Int64, reservationId: Int64, token: String, claimOwner: String, claimUntil: Timestamp,
             now: Timestamp, idempotency: IdempotentCompletion<PaymentReceipt>?) async throws -> PaymentReceipt
}

/// Holds that check the caller's queue token inside the hold's own call, for the same deployment
/// as `TicketedPayments`: on PostgreSQL alone a hold was a poll, then the hold.
public protocol TicketedHolds: Sendable {
    /// `ReservationStore.hold`, after the token's check as the queue gate answers it:
    /// `queueTokenInvalid` (unknown, another user's, run out, gone idle, or for another concert
    /// than the schedule's), `queueTokenNotActive` (still WAITING). The schedule's own checks made
    /// in Swift before the call (`HoldPolicy.checkReservable`) come before the token's here; the
    /// caller asks the waiting room first when it meets one of those (see `ReservationsController`).
    func hold(_ request: HoldRequest, token: String) async throws -> Reservation
}
