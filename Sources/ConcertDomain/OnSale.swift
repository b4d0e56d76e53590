/// One concert's line policy, as an operator sets it (`GET`/`PATCH /v1/admin/concerts/{id}/queue`).
/// A concert nobody changed has the settings' defaults (`LinePolicy.defaults`).
public struct LinePolicy: Sendable, Equatable {
    public var maxActive: Int
    public var admitPerMinute: Int?
    public var activeSeconds: Int
    public var paused: Bool
    public var queueOpensAt: Timestamp?

    public init(maxActive: Int, admitPerMinute: Int?, activeSeconds: Int, paused: Bool, queueOpensAt: Timestamp?) {
        self.maxActive = maxActive
        self.admitPerMinute = admitPerMinute
        self.activeSeconds = activeSeconds
        self.paused = paused
        self.queueOpensAt = queueOpensAt
    }

    /// A new concert's policy: the settings' cap and active time, no rate, not paused, no pre-queue.
    public static func defaults(_ settings: QueuePolicy) -> LinePolicy {
        LinePolicy(maxActive: settings.maxActive, admitPerMinute: nil, activeSeconds: Int(settings.activeMilliseconds / 1000),
                   paused: false, queueOpensAt: nil)
    }

    public static let maxActiveRange = 1...1_000_000
    public static let admitPerMinuteRange = 1...10_000_000
    public static let activeSecondsRange = 30...86_400

    /// Whether the concert has a pre-queue: fans may join before booking opens.
    public func hasPreQueue(_ concert: Concert) -> Bool {
        if let queueOpensAt { return queueOpensAt < concert.bookingOpensAt }
        return false
    }
}

/// What a `PATCH` asks to change: nil leaves a field as it is; for the nullable fields,
/// `.some(nil)` sets null.
public struct LinePolicyChange: Sendable, Equatable {
    public var maxActive: Int?
    public var admitPerMinute: Int??
    public var activeSeconds: Int?
    public var paused: Bool?
    public var queueOpensAt: Timestamp??

    public init(maxActive: Int? = nil, admitPerMinute: Int?? = nil, activeSeconds: Int? = nil, paused: Bool? = nil,
                queueOpensAt: Timestamp?? = nil) {
        self.maxActive = maxActive
        self.admitPerMinute = admitPerMinute
        self.activeSeconds = activeSeconds
        self.paused = paused
        self.queueOpensAt = queueOpensAt
    }

    /// The contract's ranges; a `queueOpensAt` may not be later than the concert's `bookingOpensAt`.
    public func validate(for concert: Concert) throws(DomainError) {
        if let maxActive, !LinePolicy.maxActiveRange.contains(maxActive) {
            throw .validation("maxActive must be between 1 and 1000000")
        }
        if case .some(.some(let rate)) = admitPerMinute, !LinePolicy.admitPerMinuteRange.contains(rate) {
            throw .validation("admitPerMinute must be between 1 and 10000000, or null")
        }
        if let activeSeconds, !LinePolicy.activeSecondsRange.contains(activeSeconds) {
            throw .validation("activeSeconds must be between 30 and 86400")
        }
        if case .some(.some(let opensAt)) = queueOpensAt, opensAt > concert.bookingOpensAt {
            throw .validation("queueOpensAt must not be later than bookingOpensAt")
        }
    }

    public func applied(to policy: LinePolicy) -> LinePolicy {
        var result = policy
        if let maxActive { result.maxActive = maxActive }
        if let admitPerMinute { result.admitPerMinute = admitPerMinute }
        if let activeSeconds { result.activeSeconds = activeSeconds }
        if let paused { result.paused = paused }
        if let queueOpensAt { result.queueOpensAt = queueOpensAt }
        return result
    }
}

/// The seats of a concert's future, not-cancelled schedules, as far as admission cares.
public struct Availability: Sendable, Equatable {
    public var total: Int
    public var available: Int
    public var sold: Int

    public init(total: Int, available: Int, sold: Int) {
        self.total = total
        self.available = available
        self.sold = sold
    }

    /// Every seat is SOLD (a concert with no seats yet is not sold out).
    public var soldOut: Bool { total > 0 && sold >= total }
    /// Somebody admitted now could hold a seat. A concert without any seat yet admits (there is
    /// nothing to protect).
    public var anyAvailable: Bool { total == 0 || available > 0 }
}

/// The on-sale rules: what a line does at an instant, from the concert's policy, its seats and
/// its draw. Plain logic; the callers bring the clock.
public enum OnSaleRules {
    /// The `QueuePolicy` a waiting room applies to the concert's line at `now`. Nobody is admitted
    /// while paused, while no seat is AVAILABLE, before booking opens, or while a pre-queue waits
    /// for its draw.
    public static func effectivePolicy(line: LinePolicy, concert: Concert, availability: Availability, drawn: Bool,
                                       now: Timestamp, idleSeconds: Int64) -> QueuePolicy {
        let preQueue = line.hasPreQueue(concert)
        let beforeOpening = now < concert.bookingOpensAt
        let admitting = !line.paused && availability.anyAvailable && !availability.soldOut && !beforeOpening
            && !(preQueue && !drawn)
        return QueuePolicy(maxActive: line.maxActive, activeSeconds: Int64(line.activeSeconds), idleSeconds: idleSeconds,
                           admitPerMinute: line.admitPerMinute, admitting: admitting, soldOut: availability.soldOut,
                           preQueue: preQueue && beforeOpening)
    }

    /// Whether a fan may join the line at `now`: the booking window is open, or the concert has a
    /// pre-queue whose opening has come (and booking has not closed).
    public static func canJoin(line: LinePolicy, concert: Concert, now: Timestamp) -> Bool {
        if concert.isBookingOpen(at: now) { return true }
        guard line.hasPreQueue(concert), let opensAt = line.queueOpensAt else { return false }
        return opensAt <= now && now < concert.bookingClosesAt
    }

    /// Whether the pre-queue's draw is due: there is one and booking has opened.
    public static func drawIsDue(line: LinePolicy, concert: Concert, now: Timestamp) -> Bool {
        line.hasPreQueue(concert) && concert.bookingOpensAt <= now
    }
}

/// The pre-queue's draw: a secret seed, its published commitment, and the order it gives.
/// The hash is injected (SHA-256 in production) so that the rule stays plain Swift.
public struct Draw: Sendable {
    public typealias Hash = @Sendable ([UInt8]) -> [UInt8]
    public let sha256: Hash

    public init(sha256: @escaping Hash) { self.sha256 = sha256 }

    public static let seedLength = 32

    /// A fresh secret seed from `generator` (SystemRandomNumberGenerator in production).
    public static func makeSeed<G: RandomNumberGenerator>(using generator: inout G) -> [UInt8] {
        (0..<seedLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// The lowercase hex SHA-256 of the seed: what is published before the draw.
    public func commitment(seed: [UInt8]) -> String { Self.hex(sha256(seed)) }

    /// A token's place key: lowercase hex SHA-256 of the seed bytes followed by the token's UTF-8.
    public func key(seed: [UInt8], token: String) -> String { Self.hex(sha256(seed + Array(token.utf8))) }

    /// The drawn order: ascending keys (ties, which SHA-256 makes impossible in practice, by token).
    public func order(seed: [UInt8], tokens: [String]) -> [String] {
        tokens.map { (key: key(seed: seed, token: $0), token: $0) }
            .sorted { $0.key != $1.key ? $0.key < $1.key : $0.token < $1.token }
            .map(\.token)
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func bytes(hex: String) -> [UInt8]? {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            guard let high = nibble(chars[i]), let low = nibble(chars[i + 1]) else { return nil }
            out.append(high << 4 | low)
            i += 2
        }
        return out
    }
}
