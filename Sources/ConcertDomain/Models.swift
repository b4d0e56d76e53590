/// A concert and its booking window. Booking is open when `bookingOpensAt <= now < bookingClosesAt`.
public struct Concert: Sendable, Equatable, Codable {
    public var id: Int64
    public var title: String
    public var artist: String
    public var venue: String
    public var bookingOpensAt: Timestamp
    public var bookingClosesAt: Timestamp
    /// When its line opens for the pre-queue (`LinePolicy.queueOpensAt`); nil without one.
    public var queueOpensAt: Timestamp?

    public init(id: Int64, title: String, artist: String, venue: String, bookingOpensAt: Timestamp, bookingClosesAt: Timestamp,
                queueOpensAt: Timestamp? = nil) {
        self.id = id
        self.title = title
        self.artist = artist
        self.venue = venue
        self.bookingOpensAt = bookingOpensAt
        self.bookingClosesAt = bookingClosesAt
        self.queueOpensAt = queueOpensAt
    }

    public func isBookingOpen(at now: Timestamp) -> Bool {
        bookingOpensAt <= now && now < bookingClosesAt
    }
}

/// What an operator sends to create a concert; `validated()` applies the domain's rules.
public struct NewConcert: Sendable, Equatable {
    public var title: String
    public var artist: String
    public var venue: String
    public var bookingOpensAt: Timestamp
    public var bookingClosesAt: Timestamp

    public init(title: String, artist: String, venue: String, bookingOpensAt: Timestamp, bookingClosesAt: Timestamp) {
        self.title = title
        self.artist = artist
        self.venue = venue
        self.bookingOpensAt = bookingOpensAt
        self.bookingClosesAt = bookingClosesAt
    }

    public static let maxTextLength = 200

    public func validated() throws(DomainError) -> NewConcert {
        for (name, value) in [("title", title), ("artist", artist), ("venue", venue)] {
            let trimmed = value.trimmingWhitespace()
            if trimmed.isEmpty { throw .validation("\(name) must not be empty") }
            if trimmed.count > Self.maxTextLength { throw .validation("\(name) must be at most \(Self.maxTextLength) characters") }
            if trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                throw .validation("\(name) must not contain control characters")
            }
        }
        if bookingClosesAt <= bookingOpensAt { throw .validation("bookingClosesAt must be after bookingOpensAt") }
        return NewConcert(title: title.trimmingWhitespace(), artist: artist.trimmingWhitespace(), venue: venue.trimmingWhitespace(),
                          bookingOpensAt: bookingOpensAt, bookingClosesAt: bookingClosesAt)
    }
}

/// One performance of a concert. Seats are numbered 1...totalSeats and all cost `price`.
public struct Schedule: Sendable, Equatable, Codable {
    public var id: Int64
    public var concertId: Int64
    public var startsAt: Timestamp
    public var totalSeats: Int
    public var price: Int64

    public init(id: Int64, concertId: Int64, startsAt: Timestamp, totalSeats: Int, price: Int64) {
        self.id = id
        self.concertId = concertId
        self.startsAt = startsAt
        self.totalSeats = totalSeats
        self.price = price
    }

    public func contains(seat number: Int) -> Bool { number >= 1 && number <= totalSeats }
}

public struct NewSchedule: Sendable, Equatable {
    public var concertId: Int64
    public var startsAt: Timestamp
    public var price: Int64
    public var seatCount: Int

    public static let defaultSeatCount = 50
    public static let seatCountRange = 1...1000
    public static let priceRange: ClosedRange<Int64> = 0...1_000_000_000

    public init(concertId: Int64, startsAt: Timestamp, price: Int64, seatCount: Int = NewSchedule.defaultSeatCount) {
        self.concertId = concertId
        self.startsAt = startsAt
        self.price = price
        self.seatCount = seatCount
    }

    public func validated() throws(DomainError) -> NewSchedule {
        guard Self.seatCountRange.contains(seatCount) else { throw .validation("seatCount must be between 1 and 1000") }
        guard Self.priceRange.contains(price) else { throw .validation("price must be between 0 and 1000000000") }
        return self
    }
}

/// A schedule with how many of its seats can be held right now.
public struct ScheduleAvailability: Sendable, Equatable {
    public var schedule: Schedule
    public var availableSeats: Int
    public init(schedule: Schedule, availableSeats: Int) {
        self.schedule = schedule
        self.availableSeats = availableSeats
    }
}

public enum SeatStatus: String, Sendable, Codable {
    case available = "AVAILABLE"
    case held = "HELD"
    case sold = "SOLD"
}

public struct Seat: Sendable, Equatable {
    public var number: Int
    public var price: Int64
    public var status: SeatStatus
    public init(number: Int, price: Int64, status: SeatStatus) {
        self.number = number
        self.price = price
        self.status = status
    }
}

/// The stored life of a reservation. `EXPIRED` is also what a `HELD` one reads as once its hold
/// has run out, whether or not anything has written that down yet.
public enum ReservationStatus: String, Sendable, Codable {
    case held = "HELD"
    case confirmed = "CONFIRMED"
    case expired = "EXPIRED"
    case cancelled = "CANCELLED"
}

public struct Reservation: Sendable, Equatable {
    public var id: Int64
    public var userId: Int64
    public var scheduleId: Int64
    public var concertId: Int64
    public var seatNumber: Int
    public var price: Int64
    /// The status as last written; read `status(at:)` for what it means now.
    public var storedStatus: ReservationStatus
    public var heldUntil: Timestamp
    public var createdAt: Timestamp
    /// The reservation's payment, once it was paid (CONFIRMED, or CANCELLED by its refund); nil
    /// for a reservation that was never paid.
    public var paymentId: Int64?

    public init(id: Int64, userId: Int64, scheduleId: Int64, concertId: Int64, seatNumber: Int, price: Int64,
                storedStatus: ReservationStatus, heldUntil: Timestamp, createdAt: Timestamp, paymentId: Int64? = nil) {
        self.id = id
        self.userId = userId
        self.scheduleId = scheduleId
        self.concertId = concertId
        self.seatNumber = seatNumber
        self.price = price
        self.storedStatus = storedStatus
        self.heldUntil = heldUntil
        self.createdAt = createdAt
        self.paymentId = paymentId
    }

    public func status(at now: Timestamp) -> ReservationStatus {
        HoldPolicy.effectiveStatus(stored: storedStatus, heldUntil: heldUntil, now: now)
    }
}

public enum PaymentStatus: String, Sendable, Codable {
    case paid = "PAID"
    case refunded = "REFUNDED"
}

public struct Payment: Sendable, Equatable {
    public var id: Int64
    public var userId: Int64
    public var reservationId: Int64
    public var amount: Int64
    public var paidAt: Timestamp
    public var status: PaymentStatus
    /// When the points went back; nil while PAID.
    public var refundedAt: Timestamp?
    public init(id: Int64, userId: Int64, reservationId: Int64, amount: Int64, paidAt: Timestamp,
                status: PaymentStatus = .paid, refundedAt: Timestamp? = nil) {
        self.id = id
        self.userId = userId
        self.reservationId = reservationId
        self.amount = amount
        self.paidAt = paidAt
        self.status = status
        self.refundedAt = refundedAt
    }
}

/// A payment together with the wallet balance right after it.
public struct PaymentReceipt: Sendable, Equatable {
    public var payment: Payment
    public var balance: Int64
    public var concertId: Int64
    public init(payment: Payment, balance: Int64, concertId: Int64) {
        self.payment = payment
        self.balance = balance
        self.concertId = concertId
    }
}

/// A refund together with the wallet balance right after it.
public struct RefundReceipt: Sendable, Equatable {
    /// The refund's id: that of its REFUND history entry.
    public var entryId: Int64
    public var paymentId: Int64
    public var reservationId: Int64
    public var amount: Int64
    public var refundedAt: Timestamp
    public var balance: Int64
    public var scheduleId: Int64
    public var concertId: Int64
    public init(entryId: Int64, paymentId: Int64, reservationId: Int64, amount: Int64, refundedAt: Timestamp, balance: Int64,
                scheduleId: Int64, concertId: Int64) {
        self.entryId = entryId
        self.paymentId = paymentId
        self.reservationId = reservationId
        self.amount = amount
        self.refundedAt = refundedAt
        self.balance = balance
        self.scheduleId = scheduleId
        self.concertId = concertId
    }
}

/// What cancelling a schedule did: how many paid seats it refunded and live holds it released
/// (both 0 when the schedule was already cancelled).
public struct ScheduleCancellation: Sendable, Equatable {
    public var scheduleId: Int64
    public var concertId: Int64
    public var refunded: Int
    public var released: Int
    public init(scheduleId: Int64, concertId: Int64, refunded: Int, released: Int) {
        self.scheduleId = scheduleId
        self.concertId = concertId
        self.refunded = refunded
        self.released = released
    }
}

public enum PointEntryType: String, Sendable, Codable {
    case charge = "CHARGE"
    case payment = "PAYMENT"
    case refund = "REFUND"
}

/// One line of a wallet's append-only history. Charges and refunds are positive, payments negative, so the
/// balance is always the sum of the amounts.
public struct PointEntry: Sendable, Equatable {
    public var id: Int64
    public var type: PointEntryType
    public var amount: Int64
    public var balanceAfter: Int64
    public var createdAt: Timestamp
    public init(id: Int64, type: PointEntryType, amount: Int64, balanceAfter: Int64, createdAt: Timestamp) {
        self.id = id
        self.type = type
        self.amount = amount
        self.balanceAfter = balanceAfter
        self.createdAt = createdAt
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
