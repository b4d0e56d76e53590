/// The numbers an operator can tune, with the contract's defaults.
public struct BookingRules: Sendable, Equatable {
    /// How long a seat hold lasts, in milliseconds.
    public var holdMilliseconds: Int64
    public var maxHoldsPerUser: Int
    public var maxCharge: Int64
    /// Refunds are refused from this long before a schedule starts, in milliseconds.
    public var refundCutoffMilliseconds: Int64
    /// The most a charge may bring a balance to. Refunds are not bound by it (a refund gives back
    /// what was paid, even when later charges filled the wallet up to it), so the schema's CHECK
    /// only keeps balances non-negative.
    public static let maxBalance: Int64 = 1_000_000_000

    public init(holdSeconds: Int64 = 300, maxHoldsPerUser: Int = 4, maxCharge: Int64 = 10_000_000,
                refundCutoffSeconds: Int64 = 86_400) {
        self.holdMilliseconds = holdSeconds * 1000
        self.maxHoldsPerUser = maxHoldsPerUser
        self.maxCharge = maxCharge
        self.refundCutoffMilliseconds = refundCutoffSeconds * 1000
    }
}

/// Seat-hold rules: when a reservation is live, and what may be held.
///
/// Two homes, one meaning: the SQLite store calls these functions inside its transactions; the
/// PostgreSQL store, which makes every write one round trip, applies `effectiveStatus`,
/// `checkPayable` and the hold limit inside its SQL functions (`PostgresWriteFunctions`, which
/// list what each one decides) and calls `checkReservable` before the call. The shared store
/// suite (`StoreContractTests`) runs every rule against both engines.
public enum HoldPolicy {
    public static func effectiveStatus(stored: ReservationStatus, heldUntil: Timestamp, now: Timestamp) -> ReservationStatus {
        if stored == .held && heldUntil <= now { return .expired }
        return stored
    }

    /// Whether a new hold may be placed on a schedule of `concert` at `now`.
    public static func checkReservable(concert: Concert, schedule: Schedule, seatNumber: Int, now: Timestamp) throws(DomainError) {
        guard schedule.contains(seat: seatNumber) else {
            throw .seatOutOfRange(seat: seatNumber, totalSeats: schedule.totalSeats)
        }
        guard concert.isBookingOpen(at: now), schedule.startsAt > now else { throw .scheduleNotReservable }
    }

    /// The state a payment finds a reservation in decides its outcome, before money is looked at.
    public static func checkPayable(_ reservation: Reservation, now: Timestamp) throws(DomainError) {
        switch reservation.status(at: now) {
        case .held: return
        case .confirmed: throw .reservationAlreadyPaid
        case .expired: throw .reservationExpired
        case .cancelled: throw .reservationNotHeld
        }
    }
}

/// Wallet rules: what a charge may be, and whether a balance covers a price.
///
/// The PostgreSQL store checks the balance side of both inside its SQL functions (a conditional
/// update) and calls these to name the refusal; see `HoldPolicy` for the two homes.
public enum WalletPolicy {
    public static func checkCharge(amount: Int64, balance: Int64, rules: BookingRules) throws(DomainError) {
        guard amount > 0 else { throw .invalidAmount("amount must be greater than 0") }
        guard amount <= rules.maxCharge else { throw .invalidAmount("amount must be at most \(rules.maxCharge)") }
        guard balance <= BookingRules.maxBalance - amount else {
            throw .invalidAmount("the balance would pass \(BookingRules.maxBalance)")
        }
    }

    public static func checkPayment(price: Int64, balance: Int64) throws(DomainError) {
        guard balance >= price else { throw .insufficientPoints(balance: balance, price: price) }
    }
}

/// Refund rules: which payments can be given back, and until when.
///
/// Two homes, as for `HoldPolicy`: the SQLite store calls `checkRefundable` inside its
/// transaction; the PostgreSQL store's `concertd_refund` (migration 6, `PostgresAfterSaleFunctions`)
/// applies the same two checks under the payment's row lock and answers an outcome code, which
/// the store turns into the same errors. Cancelling a schedule refunds every paid seat whatever
/// the cutoff (`concertd_cancel_schedule`), and a cancelled schedule refuses holds and payments
/// inside the SQL functions, since instances cache schedules.
public enum RefundPolicy {
    /// The last instant (exclusive) at which a payment for a schedule starting at `startsAt` may
    /// be refunded.
    public static func deadline(startsAt: Timestamp, rules: BookingRules) -> Timestamp {
        startsAt.adding(milliseconds: -rules.refundCutoffMilliseconds)
    }

    /// A payment already refunded says so first; otherwise the cutoff decides.
    public static func checkRefundable(_ payment: Payment, startsAt: Timestamp, now: Timestamp,
                                       rules: BookingRules) throws(DomainError) {
        guard payment.status == .paid else { throw .paymentAlreadyRefunded }
        guard now < deadline(startsAt: startsAt, rules: rules) else { throw .refundNotAllowed }
    }
}
