import ConcertDomain

/// Response bodies, exactly as the contract names their fields.
struct ConcertBody: Encodable {
    var id: Int64
    var title: String
    var artist: String
    var venue: String
    var bookingOpensAt: WireTime
    var bookingClosesAt: WireTime
    var reservable: Bool
    /// Always present: null when the concert has no pre-queue opening.
    var queueOpensAt: WireTime?

    init(_ concert: Concert, reservable: Bool) {
        id = concert.id
        title = concert.title
        artist = concert.artist
        venue = concert.venue
        bookingOpensAt = WireTime(concert.bookingOpensAt)
        bookingClosesAt = WireTime(concert.bookingClosesAt)
        self.reservable = reservable
        queueOpensAt = concert.queueOpensAt.map(WireTime.init)
    }

    private enum CodingKeys: String, CodingKey { case id, title, artist, venue, bookingOpensAt, bookingClosesAt, reservable, queueOpensAt }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(title, forKey: .title)
        try container.encode(artist, forKey: .artist)
        try container.encode(venue, forKey: .venue)
        try container.encode(bookingOpensAt, forKey: .bookingOpensAt)
        try container.encode(bookingClosesAt, forKey: .bookingClosesAt)
        try container.encode(reservable, forKey: .reservable)
        try container.encode(queueOpensAt, forKey: .queueOpensAt)
    }
}

struct ConcertListBody: Encodable {
    var concerts: [ConcertBody]
}

struct ScheduleBody: Encodable {
    var id: Int64
    var concertId: Int64
    var startsAt: WireTime
    var totalSeats: Int
    var availableSeats: Int
    var price: Int64

    init(_ schedule: Schedule, availableSeats: Int) {
        id = schedule.id
        concertId = schedule.concertId
        startsAt = WireTime(schedule.startsAt)
        totalSeats = schedule.totalSeats
        self.availableSeats = availableSeats
        price = schedule.price
    }
}

struct ScheduleListBody: Encodable {
    var schedules: [ScheduleBody]
}

struct SeatBody: Encodable {
    var number: Int
    var price: Int64
    var status: SeatStatus
}

struct SeatMapBody: Encodable {
    var scheduleId: Int64
    var concertId: Int64
    var seats: [SeatBody]
}

/// A reservation; `paymentId` is always present: its payment once paid (CONFIRMED, or CANCELLED by
/// the refund of that payment), else null. The fan page's refund button needs it.
struct ReservationBody: Encodable {
    var id: Int64
    var scheduleId: Int64
    var concertId: Int64
    var seatNumber: Int
    var price: Int64
    var status: ReservationStatus
    var heldUntil: WireTime
    var createdAt: WireTime
    var paymentId: Int64?

    init(_ reservation: Reservation, now: Timestamp) {
        id = reservation.id
        scheduleId = reservation.scheduleId
        concertId = reservation.concertId
        seatNumber = reservation.seatNumber
        price = reservation.price
        status = reservation.status(at: now)
        heldUntil = WireTime(reservation.heldUntil)
        createdAt = WireTime(reservation.createdAt)
        paymentId = reservation.paymentId
    }

    private enum CodingKeys: String, CodingKey { case id, scheduleId, concertId, seatNumber, price, status, heldUntil, createdAt, paymentId }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(scheduleId, forKey: .scheduleId)
        try container.encode(concertId, forKey: .concertId)
        try container.encode(seatNumber, forKey: .seatNumber)
        try container.encode(price, forKey: .price)
        try container.encode(status, forKey: .status)
        try container.encode(heldUntil, forKey: .heldUntil)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(paymentId, forKey: .paymentId) // null, never absent
    }
}

struct ReservationListBody: Encodable {
    var reservations: [ReservationBody]
}

struct BalanceBody: Encodable {
    var balance: Int64
}

struct PointEntryBody: Encodable {
    var id: Int64
    var type: PointEntryType
    var amount: Int64
    var balanceAfter: Int64
    var createdAt: WireTime
}

struct PointHistoryBody: Encodable {
    var entries: [PointEntryBody]
}

/// A payment; `status` and `refundedAt` are always present (`refundedAt` null while PAID).
struct PaymentBody: Encodable {
    var id: Int64
    var reservationId: Int64
    var amount: Int64
    var status: PaymentStatus
    var paidAt: WireTime
    var refundedAt: WireTime?
    /// The wallet balance right after the payment (only in the answer to the payment itself).
    var balance: Int64?

    init(_ payment: Payment, balance: Int64?) {
        id = payment.id
        reservationId = payment.reservationId
        amount = payment.amount
        status = payment.status
        paidAt = WireTime(payment.paidAt)
        refundedAt = payment.refundedAt.map(WireTime.init)
        self.balance = balance
    }

    private enum CodingKeys: String, CodingKey { case id, reservationId, amount, status, paidAt, refundedAt, balance }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(reservationId, forKey: .reservationId)
        try container.encode(amount, forKey: .amount)
        try container.encode(status, forKey: .status)
        try container.encode(paidAt, forKey: .paidAt)
        try container.encode(refundedAt, forKey: .refundedAt)
        try container.encodeIfPresent(balance, forKey: .balance)
    }
}

/// The answer to a refund; `id` is the refund's (its REFUND history entry's) id.
struct RefundBody: Encodable {
    var id: Int64
    var paymentId: Int64
    var reservationId: Int64
    var amount: Int64
    var refundedAt: WireTime
    var balance: Int64

    init(_ receipt: RefundReceipt) {
        id = receipt.entryId
        paymentId = receipt.paymentId
        reservationId = receipt.reservationId
        amount = receipt.amount
        refundedAt = WireTime(receipt.refundedAt)
        balance = receipt.balance
    }
}

/// What cancelling a schedule did.
struct ScheduleCancellationBody: Encodable {
    var scheduleId: Int64
    var refunded: Int
    var released: Int
}

/// A queue token's state; `activeUntil` is always present, `null` while WAITING.
struct QueueTicketBody: Encodable {
    var ticket: QueueTicket

    private enum CodingKeys: String, CodingKey {
        case token, concertId, status, position, estimatedWaitSeconds, activeUntil, preQueue, soldOut
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ticket.token, forKey: .token)
        try container.encode(ticket.concertId, forKey: .concertId)
        try container.encode(ticket.status, forKey: .status)
        try container.encode(ticket.position, forKey: .position)
        try container.encode(ticket.estimatedWaitSeconds, forKey: .estimatedWaitSeconds)
        if let activeUntil = ticket.activeUntil {
            try container.encode(WireTime(activeUntil), forKey: .activeUntil)
        } else {
            try container.encodeNil(forKey: .activeUntil)
        }
        try container.encode(ticket.preQueue, forKey: .preQueue)
        try container.encode(ticket.soldOut, forKey: .soldOut)
    }

    /// The bytes `JSONBody.encode(self)` gives (keys sorted), written directly: every poll
    /// answers with a ticket, and JSONEncoder's generic walk was about 5 % of a poll's CPU in
    /// the service. `QueueTicketBodyTests` holds the two equal, escapes included.
    var jsonBytes: [UInt8] {
        var out = JSONText(capacity: 224)
        out.key("activeUntil", first: true)
        if let activeUntil = ticket.activeUntil { out.string(RFC3339.format(activeUntil)) } else { out.raw("null") }
        out.key("concertId"); out.raw(String(ticket.concertId))
        out.key("estimatedWaitSeconds"); out.raw(String(ticket.estimatedWaitSeconds))
        out.key("position"); out.raw(String(ticket.position))
        out.key("preQueue"); out.raw(ticket.preQueue ? "true" : "false")
        out.key("soldOut"); out.raw(ticket.soldOut ? "true" : "false")
        out.key("status"); out.string(ticket.status.rawValue)
        out.key("token"); out.string(ticket.token)
        out.bytes.append(UInt8(ascii: "}"))
        return out.bytes
    }
}

/// A JSON object written byte by byte, strings escaped as JSONEncoder escapes them (`/` too).
struct JSONText {
    var bytes: [UInt8]
    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func key(_ name: StaticString, first: Bool = false) {
        bytes.append(UInt8(ascii: first ? "{" : ","))
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }

    mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
            case UInt8(ascii: "/"): bytes.append(contentsOf: [0x5C, 0x2F])
            case 0x08: bytes.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x00..<0x20:
                bytes.append(contentsOf: [0x5C, UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          Self.hex[Int(byte >> 4)], Self.hex[Int(byte & 0xF)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

/// A concert's line policy with its live counts (`GET`/`PATCH /v1/admin/concerts/{id}/queue`);
/// the nullable fields are always present.
struct QueuePolicyBody: Encodable {
    var concertId: Int64
    var policy: LinePolicy
    var waiting: Int
    var active: Int
    var admittedLastMinute: Int
    var soldOut: Bool

    private enum CodingKeys: String, CodingKey {
        case concertId, maxActive, admitPerMinute, activeSeconds, paused, queueOpensAt, waiting, active, admittedLastMinute, soldOut
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(concertId, forKey: .concertId)
        try container.encode(policy.maxActive, forKey: .maxActive)
        try container.encode(policy.admitPerMinute, forKey: .admitPerMinute)
        try container.encode(policy.activeSeconds, forKey: .activeSeconds)
        try container.encode(policy.paused, forKey: .paused)
        try container.encode(policy.queueOpensAt.map(WireTime.init), forKey: .queueOpensAt)
        try container.encode(waiting, forKey: .waiting)
        try container.encode(active, forKey: .active)
        try container.encode(admittedLastMinute, forKey: .admittedLastMinute)
        try container.encode(soldOut, forKey: .soldOut)
    }
}

/// The pre-queue's draw as anyone may check it: the seed and the entrants only after the draw.
struct QueueDrawBody: Encodable {
    var concertId: Int64
    var commitment: String
    var seed: String?
    var entrants: Int?

    private enum CodingKeys: String, CodingKey { case concertId, commitment, seed, entrants }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(concertId, forKey: .concertId)
        try container.encode(commitment, forKey: .commitment)
        try container.encode(seed, forKey: .seed)
        try container.encode(entrants, forKey: .entrants)
    }
}

/// An operator's live counts for one concert (future schedules only).
struct ConcertStatsBody: Encodable {
    var concertId: Int64
    var waiting: Int
    var active: Int
    var totalSeats: Int
    var seatsHeld: Int
    var seatsSold: Int
}
