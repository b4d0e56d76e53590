/// Every way a request can fail for a reason of the domain. The HTTP layer maps each case to a
/// status and a contract `code` in exactly one place (`ConcertAPI/Problem+DomainError.swift`).
public enum DomainError: Error, Equatable, Sendable {
    case validation(String)
    case concertNotFound
    case concertNotReservable
    /// Every seat of the concert's future schedules is sold: nobody may join its line.
    case concertSoldOut
    /// The concert has no pre-queue, so no draw.
    case drawNotFound
    case scheduleNotFound
    case scheduleNotReservable
    case seatOutOfRange(seat: Int, totalSeats: Int)
    case seatUnavailable
    case holdLimitReached(limit: Int)
    case reservationNotFound
    case reservationNotHeld
    case reservationExpired
    case reservationAlreadyPaid
    case insufficientPoints(balance: Int64, price: Int64)
    case invalidAmount(String)
    case paymentNotFound
    /// The refund cutoff before the schedule's start has passed.
    case refundNotAllowed
    case paymentAlreadyRefunded
    case queueTokenMissing
    case queueTokenInvalid
    case queueTokenNotActive
    case idempotencyKeyReused
    case idempotencyKeyInUse
    case webhookNotFound
}
