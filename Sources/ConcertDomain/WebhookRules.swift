/// The event types a webhook may subscribe to, and how deliveries are retried.
public enum WebhookEventType: String, Sendable, CaseIterable {
    case reservationHeld = "reservation.held"
    case reservationCancelled = "reservation.cancelled"
    case reservationExpired = "reservation.expired"
    case paymentPaid = "payment.paid"
    case paymentRefunded = "payment.refunded"
    case scheduleCancelled = "schedule.cancelled"
}

/// When a failed delivery is tried again: 1, 2, 4, ... seconds, at most 60 s apart during the
/// first ten minutes after the event was fanned out, then at most 10 minutes apart; given up
/// at the first failure 24 hours or more after that.
public enum WebhookRetryPolicy {
    public static let giveUpAfterMilliseconds: Int64 = 24 * 3600 * 1000
    public static let earlyWindowMilliseconds: Int64 = 10 * 60 * 1000
    /// A 2xx answer within this long acknowledges.
    public static let attemptTimeoutMilliseconds: Int64 = 10_000

    /// The delay before the next attempt after `attempts` failed ones (1 for the first), or nil
    /// to give up. `age` is how long ago the delivery was created.
    public static func delayMilliseconds(afterFailedAttempts attempts: Int, age: Int64) -> Int64? {
        guard age < giveUpAfterMilliseconds else { return nil }
        let exponent = min(max(attempts - 1, 0), 20)
        let growing = Int64(1000) << Int64(exponent)
        let cap: Int64 = age < earlyWindowMilliseconds ? 60_000 : 600_000
        return min(growing, cap)
    }
}
