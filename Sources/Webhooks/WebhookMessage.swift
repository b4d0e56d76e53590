import ConcertDomain
import Crypto
import Foundation

/// Secrets and signatures of the Standard Webhooks specification.
public enum WebhookSigning {
    /// `whsec_` + base64 of 32 random bytes.
    public static func newSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return "whsec_" + Data(bytes).base64EncodedString()
    }

    /// `v1,` + base64 of HMAC-SHA256 over "{id}.{timestamp}.{body}", keyed with the secret's
    /// base64-decoded bytes after `whsec_`.
    public static func signature(secret: String, id: String, timestamp: Int64, body: [UInt8]) -> String {
        let encoded = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
        let key = SymmetricKey(data: Data(base64Encoded: encoded) ?? Data(encoded.utf8))
        var message = Array("\(id).\(timestamp).".utf8)
        message += body
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: key)
        return "v1," + Data(mac).base64EncodedString()
    }

    /// The `webhook-id` of an outbox event.
    public static func messageId(eventId: Int64) -> String { "msg_\(eventId)" }
}

/// The body of a delivery, `{"type", "timestamp", "data"}`, rendered from the outbox row's
/// snapshot in exactly the API's wire shapes (times as `RFC3339.format`).
public enum WebhookPayload {
    /// `paymentId` is absent from events written before PostgreSQL migration 10 / SQLite
    /// `007_webhook_retention` (and null for a reservation never paid).
    struct ReservationSnapshot: Codable {
        var id: Int64, scheduleId: Int64, concertId: Int64, seatNumber: Int, price: Int64, status: String
        var heldUntil: Int64, createdAt: Int64
        var paymentId: Int64?
    }
    struct ReservationWire: Encodable {
        var id: Int64, scheduleId: Int64, concertId: Int64, seatNumber: Int, price: Int64, status: String
        var heldUntil: String, createdAt: String
        var paymentId: Int64?
        enum CodingKeys: String, CodingKey { case id, scheduleId, concertId, seatNumber, price, status, heldUntil, createdAt, paymentId }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(scheduleId, forKey: .scheduleId)
            try c.encode(concertId, forKey: .concertId)
            try c.encode(seatNumber, forKey: .seatNumber)
            try c.encode(price, forKey: .price)
            try c.encode(status, forKey: .status)
            try c.encode(heldUntil, forKey: .heldUntil)
            try c.encode(createdAt, forKey: .createdAt)
            try c.encode(paymentId, forKey: .paymentId) // null, never absent, as in the API
        }
    }
    struct PaymentSnapshot: Codable {
        var id: Int64, reservationId: Int64, amount: Int64, status: String, paidAt: Int64, refundedAt: Int64?
    }
    struct PaymentWire: Encodable {
        var id: Int64, reservationId: Int64, amount: Int64, status: String, paidAt: String, refundedAt: String?
        enum CodingKeys: String, CodingKey { case id, reservationId, amount, status, paidAt, refundedAt }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(reservationId, forKey: .reservationId)
            try c.encode(amount, forKey: .amount)
            try c.encode(status, forKey: .status)
            try c.encode(paidAt, forKey: .paidAt)
            try c.encode(refundedAt, forKey: .refundedAt) // null, never absent
        }
    }
    struct ScheduleSnapshot: Codable { var scheduleId: Int64, concertId: Int64 }

    struct Envelope<D: Encodable>: Encodable { var type: String, timestamp: String, data: D }

    static func time(_ ms: Int64) -> String { RFC3339.format(Timestamp(milliseconds: ms)) }

    public static func render(type: String, data: String, occurredAt: Timestamp) throws -> [UInt8] {
        let decoder = JSONDecoder(), encoder = JSONEncoder()
        let raw = Data(data.utf8)
        let timestamp = RFC3339.format(occurredAt)
        switch type {
        case let t where t.hasPrefix("reservation."):
            let s = try decoder.decode(ReservationSnapshot.self, from: raw)
            let wire = ReservationWire(id: s.id, scheduleId: s.scheduleId, concertId: s.concertId, seatNumber: s.seatNumber, price: s.price,
                                       status: s.status, heldUntil: time(s.heldUntil), createdAt: time(s.createdAt),
                                       paymentId: s.paymentId)
            return Array(try encoder.encode(Envelope(type: type, timestamp: timestamp, data: wire)))
        case let t where t.hasPrefix("payment."):
            let s = try decoder.decode(PaymentSnapshot.self, from: raw)
            let wire = PaymentWire(id: s.id, reservationId: s.reservationId, amount: s.amount, status: s.status, paidAt: time(s.paidAt),
                                   refundedAt: s.refundedAt.map(time))
            return Array(try encoder.encode(Envelope(type: type, timestamp: timestamp, data: wire)))
        default:
            let s = try decoder.decode(ScheduleSnapshot.self, from: raw)
            return Array(try encoder.encode(Envelope(type: type, timestamp: timestamp, data: s)))
        }
    }
}
