import ConcertDomain

/// The per-concert waiting rooms: kept in this process (`ConcertInProcess`, one instance), or in
/// PostgreSQL or Redis so that every instance serves the same lines.
///
/// Tokens have the form `<concertId>.<32 hex digits>`: the concert tells an implementation
/// which line to look in, and the 128 random bits make a token impossible to guess.
public protocol WaitingRoom: Sendable {
    /// Joins the concert's line, or returns the user's live token there with `created == false`.
    func join(userId: Int64, concertId: Int64, now: Timestamp) async throws -> (ticket: QueueTicket, created: Bool)
    /// The token's place, counting as a poll (a WAITING token keeps its place). Nil when unknown or ended.
    func poll(token: String, now: Timestamp) async throws -> QueueTicket?
    /// Ends a live token (its holder left or paid); the freed slot goes to the head of the line.
    @discardableResult
    func end(token: String, now: Timestamp) async throws -> Bool
    /// Expires, drops idle waiters and admits, for every line. Run about every 250 ms.
    func sweep(now: Timestamp) async throws
    /// How many wait and how many are ACTIVE in one concert's line.
    func counts(concertId: Int64, now: Timestamp) async throws -> (waiting: Int, active: Int)
    /// Admissions to the concert's line in the 60 seconds up to `now`, across instances.
    func admittedLastMinute(concertId: Int64, now: Timestamp) async throws -> Int
    /// `counts` and `admittedLastMinute` together (one round trip where the store allows).
    func lineCounts(concertId: Int64, now: Timestamp) async throws -> LineCounts
    /// Admissions to the concert's line after `after` and up to `now` (within the last minute,
    /// which is what the lines remember), across instances: for the admissions counter.
    func admissions(concertId: Int64, after: Timestamp, now: Timestamp) async throws -> Int
    /// The pre-queue's draw, at most once per line across instances: puts the WAITING tokens
    /// in the order `order` gives them (it receives them all), ahead of anyone not among them.
    /// Returns how many were drawn, the first time and every time after.
    func draw(concertId: Int64, now: Timestamp, order: @Sendable ([String]) -> [String]) async throws -> Int
    /// Answers when the backing store does (readiness).
    func ping() async throws
}

/// What the operator's view and the gauges show of one line.
public struct LineCounts: Sendable, Equatable {
    public var waiting: Int
    public var active: Int
    public var admittedLastMinute: Int
    public init(waiting: Int, active: Int, admittedLastMinute: Int) {
        self.waiting = waiting
        self.active = active
        self.admittedLastMinute = admittedLastMinute
    }
}

extension WaitingRoom {
    public func lineCounts(concertId: Int64, now: Timestamp) async throws -> LineCounts {
        let counts = try await counts(concertId: concertId, now: now)
        let admitted = try await admittedLastMinute(concertId: concertId, now: now)
        return LineCounts(waiting: counts.waiting, active: counts.active, admittedLastMinute: admitted)
    }
}

/// Where a waiting room finds the rules each line runs on at `now` (the caller's policy, pause,
/// seats and draw folded into one `QueuePolicy`). The room passes them to its store with every
/// operation (Lua or PL/pgSQL arguments) and never keeps them.
public protocol QueuePolicySource: Sendable {
    func policy(concertId: Int64, now: Timestamp) async throws -> QueuePolicy
}

/// The same policy for every line: the settings, as before lines had policies of their own.
public struct FixedQueuePolicy: QueuePolicySource {
    public let policy: QueuePolicy
    public init(_ policy: QueuePolicy) { self.policy = policy }
    public func policy(concertId: Int64, now: Timestamp) async throws -> QueuePolicy { policy }
}

public enum QueueToken {
    public static func make(concertId: Int64) -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64, low = generator.next() as UInt64
        return "\(concertId)." + hex(high) + hex(low)
    }

    /// The concert a well-formed token belongs to; nil for anything else.
    public static func concertId(of token: String) -> Int64? {
        let utf8 = token.utf8
        guard utf8.count <= 52, let dot = utf8.firstIndex(of: UInt8(ascii: ".")) else { return nil }
        let random = utf8[utf8.index(after: dot)...]
        guard random.count == 32, random.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else { return nil }
        guard let id = Int64(Substring(token[..<dot])), id > 0 else { return nil }
        return id
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
