/// The rules one line runs on at one instant: the settings' defaults, or what
/// `OnSaleRules.effectivePolicy` makes of a concert's `LinePolicy`, its seats and its draw.
public struct QueuePolicy: Sendable, Equatable {
    public var maxActive: Int
    /// Applies to tokens activated from now on; ACTIVE ones keep their `activeUntil`.
    public var activeMilliseconds: Int64
    public var idleMilliseconds: Int64
    /// At most this many admissions in any 60 seconds; nil for no rate.
    public var admitPerMinute: Int?
    /// False while nobody may be admitted (paused, no seat AVAILABLE, the pre-queue not drawn
    /// yet). Nothing ends because of it.
    public var admitting: Bool
    /// Every seat of the concert's future schedules is SOLD (joins are refused, waiters told).
    public var soldOut: Bool
    /// Joins now go into the pre-queue (its draw has not happened yet).
    public var preQueue: Bool

    public init(maxActive: Int = 200, activeSeconds: Int64 = 600, idleSeconds: Int64 = 60, admitPerMinute: Int? = nil,
                admitting: Bool = true, soldOut: Bool = false, preQueue: Bool = false) {
        self.maxActive = maxActive
        self.activeMilliseconds = activeSeconds * 1000
        self.idleMilliseconds = idleSeconds * 1000
        self.admitPerMinute = admitPerMinute
        self.admitting = admitting
        self.soldOut = soldOut
        self.preQueue = preQueue
    }

    /// The cap the line admits up to now: 0 while not admitting (which ends no token).
    public var admissionCap: Int { admitting ? maxActive : 0 }

    /// The window of `admitPerMinute`, in milliseconds.
    public static let rateWindowMilliseconds: Int64 = 60_000

    /// How far ahead of itself a poll moves a WAITING token's "last seen": a twelfth of the idle
    /// time, at most 5 seconds. A poll that finds its token seen at or after its own moment keeps
    /// it as it is, so a client polling every few seconds moves it once per interval, not on every
    /// poll: on PostgreSQL that poll is then a read, not a row update (most polls at an on-sale).
    /// A waiter keeps its place for at least the idle time after its last poll, and loses it at
    /// most this much later.
    public var pollRefreshMilliseconds: Int64 { min(idleMilliseconds / 12, 5000) }

    /// How many more may be admitted now, with `active` ACTIVE and `admittedInWindow` admitted
    /// in the last 60 seconds.
    public func admissionRoom(active: Int, admittedInWindow: Int) -> Int {
        var room = admissionCap - active
        if let rate = admitPerMinute { room = min(room, rate - admittedInWindow) }
        return max(0, room)
    }

    /// A rough wait for someone with `position` people ahead: every `maxActive` people ahead is
    /// one more round of ACTIVE sessions, and a session lasts at most `activeMilliseconds`.
    public func estimatedWaitSeconds(position: Int) -> Int {
        guard maxActive > 0 else { return 0 }
        return (position / maxActive + 1) * Int(activeMilliseconds / 1000)
    }
}

public enum QueueTokenStatus: String, Sendable, Codable {
    case waiting = "WAITING"
    case active = "ACTIVE"
}

/// What a client sees of its place in a line.
public struct QueueTicket: Sendable, Equatable {
    public var token: String
    public var userId: Int64
    public var concertId: Int64
    public var status: QueueTokenStatus
    public var position: Int
    public var estimatedWaitSeconds: Int
    public var activeUntil: Timestamp?
    /// WAITING in a pre-queue whose draw has not happened: `position` is the others in it.
    public var preQueue: Bool
    /// WAITING for a concert whose every seat is sold.
    public var soldOut: Bool

    public init(token: String, userId: Int64, concertId: Int64, status: QueueTokenStatus, position: Int,
                estimatedWaitSeconds: Int, activeUntil: Timestamp?, preQueue: Bool = false, soldOut: Bool = false) {
        self.token = token
        self.userId = userId
        self.concertId = concertId
        self.status = status
        self.position = position
        self.estimatedWaitSeconds = estimatedWaitSeconds
        self.activeUntil = activeUntil
        self.preQueue = preQueue
        self.soldOut = soldOut
    }
}

/// One concert's line, first come first served, as a plain value with no clock of its own.
///
/// Invariants kept by every mutating method:
/// - at most `policy.maxActive` tokens are ACTIVE;
/// - a user has at most one live token in the line;
/// - a free ACTIVE slot is given to the head of the line as soon as `advance(now:)` runs
///   (every call runs it first), skipping waiters that went idle.
///
/// Looking up a token and its position costs O(log n): waiters sit in an array sorted by
/// arrival number, searched by bisection. Idle waiters further back are dropped by `sweep`.
///
/// PostgreSQL runs these rules as PL/pgSQL functions (`PostgresLineFunctions`). On PostgreSQL
/// alone, a payment's check of its token (live: ACTIVE before `activeUntil`, or WAITING and not
/// idle; the caller's; the concert's; ACTIVE) also runs in SQL, inside the payment's own call
/// (`concertd_pay_batch`, migration 14); `PostgresTicketedPaymentTests` checks its answers.
public struct WaitingLine: Sendable {
    struct Waiter: Sendable {
        var sequence: UInt64
        var token: String
        var userId: Int64
        var lastSeen: Timestamp
    }
    struct Admitted: Sendable {
        var userId: Int64
        var activeUntil: Timestamp
    }

    public let concertId: Int64
    public var policy: QueuePolicy
    private var nextSequence: UInt64 = 1
    private var waiters: [Waiter] = []
    private var head = 0
    private var sequenceByToken: [String: UInt64] = [:]
    private var admitted: [String: Admitted] = [:]
    /// ACTIVE tokens in the order they were admitted. Every token lasts the same time from its
    /// admission, so this is also the order in which they run out: expiry only looks at the
    /// front. Tokens that ended early stay here until they reach the front (`admitted` no longer
    /// knows them, or knows a later admission of the same token). Should the wall clock step
    /// back, a token can outlive its time by at most that step.
    /// Kept sorted by `activeUntil` (a new `activeSeconds` can make a later admission end
    /// sooner: it is inserted in its place).
    private var admissionOrder: [(token: String, activeUntil: Timestamp)] = []
    private var admissionHead = 0
    /// When each admission of the last 60 seconds happened, oldest first (for `admitPerMinute`).
    private var admissions: [Timestamp] = []
    private var admissionsHead = 0
    private var tokenByUser: [Int64: String] = [:]

    public init(concertId: Int64, policy: QueuePolicy) {
        self.concertId = concertId
        self.policy = policy
    }

    public var waitingCount: Int { waiters.count - head }
    public var activeCount: Int { admitted.count }
    /// Nothing waits, nothing is ACTIVE, and no admission of the last minute is remembered
    /// (after `advance`), so the line can be forgotten.
    public var isEmpty: Bool { waitingCount == 0 && admitted.isEmpty && admissionsHead == admissions.count && drawnEntrants == nil }
    /// How many the pre-queue's draw ordered, once it has happened on this line.
    public private(set) var drawnEntrants: Int?

    /// The pre-queue's draw, once: orders the waiters with `order` (given every WAITING token,
    /// it returns them in the drawn order) and remembers how many there were. Later calls
    /// return that number and change nothing.
    public mutating func draw(order: ([String]) -> [String]) -> Int {
        if let drawnEntrants { return drawnEntrants }
        let tokens = waiters[head...].map(\.token)
        reorder(headFirst: order(tokens))
        drawnEntrants = tokens.count
        return tokens.count
    }

    /// Admissions in the 60 seconds up to `now`.
    public func admittedLastMinute(now: Timestamp) -> Int {
        admissions(after: now.adding(milliseconds: -QueuePolicy.rateWindowMilliseconds), now: now)
    }

    /// Admissions after `after` and up to `now` (of those of the last minute).
    public func admissions(after: Timestamp, now: Timestamp) -> Int {
        admissions[admissionsHead...].lazy.filter { $0 > after && $0 <= now }.count
    }

    /// Puts the WAITING tokens in `order` at the head of the line in that order (the pre-queue's
    /// draw); waiters not named keep their order behind them. Tokens not waiting are ignored.
    public mutating func reorder(headFirst order: [String]) {
        var byToken: [String: Waiter] = [:]
        for waiter in waiters[head...] { byToken[waiter.token] = waiter }
        var drawn: [Waiter] = []
        for token in order { if let waiter = byToken.removeValue(forKey: token) { drawn.append(waiter) } }
        let rest = waiters[head...].filter { byToken[$0.token] != nil }
        var sequence: UInt64 = 1
        var line: [Waiter] = []
        for var waiter in drawn + rest {
            waiter.sequence = sequence
            sequence += 1
            line.append(waiter)
        }
        waiters = line
        head = 0
        sequenceByToken = [:]
        for waiter in line { sequenceByToken[waiter.token] = waiter.sequence }
        nextSequence = sequence
    }

    /// Joins the line, or returns the user's live token with `created == false`.
    public mutating func join(userId: Int64, newToken: String, now: Timestamp) -> (ticket: QueueTicket, created: Bool) {
        advance(now: now)
        if let existing = tokenByUser[userId], let ticket = poll(token: existing, now: now) {
            return (ticket, false)
        }
        let waiter = Waiter(sequence: nextSequence, token: newToken, userId: userId, lastSeen: now)
        nextSequence += 1
        waiters.append(waiter)
        sequenceByToken[newToken] = waiter.sequence
        tokenByUser[userId] = newToken
        advance(now: now)
        return (ticket(for: newToken, now: now)!, true)
    }

    /// The token's place now, and a poll that keeps a WAITING token's place. Nil when the token is
    /// unknown or ended.
    public mutating func poll(token: String, now: Timestamp) -> QueueTicket? {
        advance(now: now)
        if let sequence = sequenceByToken[token], let index = indexOfWaiter(sequence) {
            if waiters[index].lastSeen.adding(milliseconds: policy.idleMilliseconds) <= now {
                remove(waiterAt: index)
                return nil
            }
            if waiters[index].lastSeen < now {
                waiters[index].lastSeen = now.adding(milliseconds: policy.pollRefreshMilliseconds)
            }
        }
        return ticket(for: token, now: now)
    }

    /// The token's place without counting as a poll.
    public func peek(token: String, now: Timestamp) -> QueueTicket? {
        if let sequence = sequenceByToken[token], let index = indexOfWaiter(sequence),
           waiters[index].lastSeen.adding(milliseconds: policy.idleMilliseconds) <= now {
            return nil
        }
        return ticket(for: token, now: now)
    }

    /// Ends a token (the user left or paid). Returns false when it was not live.
    @discardableResult
    public mutating func end(token: String, now: Timestamp) -> Bool {
        var ended = false
        if let entry = admitted.removeValue(forKey: token) {
            if tokenByUser[entry.userId] == token { tokenByUser[entry.userId] = nil }
            ended = true
        } else if let sequence = sequenceByToken[token], let index = indexOfWaiter(sequence) {
            remove(waiterAt: index)
            ended = true
        }
        advance(now: now)
        return ended
    }

    /// Expires ACTIVE tokens whose time is up, drops waiters that stopped polling, and admits
    /// from the head while there is room.
    public mutating func advance(now: Timestamp) {
        while admissionHead < admissionOrder.count, admissionOrder[admissionHead].activeUntil <= now {
            let (token, activeUntil) = admissionOrder[admissionHead]
            admissionHead += 1
            if let entry = admitted[token], entry.activeUntil == activeUntil {
                admitted[token] = nil
                if tokenByUser[entry.userId] == token { tokenByUser[entry.userId] = nil }
            }
        }
        let cutoff = now.adding(milliseconds: -QueuePolicy.rateWindowMilliseconds)
        while admissionsHead < admissions.count, admissions[admissionsHead] <= cutoff { admissionsHead += 1 }
        while policy.admissionRoom(active: admitted.count, admittedInWindow: admissions.count - admissionsHead) > 0,
              head < waiters.count {
            let waiter = waiters[head]
            head += 1
            sequenceByToken[waiter.token] = nil
            if waiter.lastSeen.adding(milliseconds: policy.idleMilliseconds) <= now {
                if tokenByUser[waiter.userId] == waiter.token { tokenByUser[waiter.userId] = nil }
                continue
            }
            let activeUntil = now.adding(milliseconds: policy.activeMilliseconds)
            admitted[waiter.token] = Admitted(userId: waiter.userId, activeUntil: activeUntil)
            var index = admissionOrder.count
            while index > admissionHead, admissionOrder[index - 1].activeUntil > activeUntil { index -= 1 }
            admissionOrder.insert((waiter.token, activeUntil), at: index)
            admissions.append(now)
        }
        compactIfNeeded()
    }

    /// `advance`, plus dropping idle waiters anywhere in the line. O(n); run by a timer.
    public mutating func sweep(now: Timestamp) {
        advance(now: now)
        let before = waiters.count
        var kept: [Waiter] = []
        kept.reserveCapacity(waiters.count - head)
        for waiter in waiters[head...] {
            if waiter.lastSeen.adding(milliseconds: policy.idleMilliseconds) <= now {
                sequenceByToken[waiter.token] = nil
                if tokenByUser[waiter.userId] == waiter.token { tokenByUser[waiter.userId] = nil }
            } else {
                kept.append(waiter)
            }
        }
        if kept.count != before - head {
            waiters = kept
            head = 0
            advance(now: now)
        }
    }

    private func ticket(for token: String, now: Timestamp) -> QueueTicket? {
        if let entry = admitted[token] {
            return QueueTicket(token: token, userId: entry.userId, concertId: concertId, status: .active,
                               position: 0, estimatedWaitSeconds: 0, activeUntil: entry.activeUntil)
        }
        guard let sequence = sequenceByToken[token], let index = indexOfWaiter(sequence) else { return nil }
        let position = index - head
        return QueueTicket(token: token, userId: waiters[index].userId, concertId: concertId, status: .waiting,
                           position: position, estimatedWaitSeconds: policy.estimatedWaitSeconds(position: position),
                           activeUntil: nil)
    }

    private func indexOfWaiter(_ sequence: UInt64) -> Int? {
        var low = head, high = waiters.count
        while low < high {
            let mid = (low + high) / 2
            if waiters[mid].sequence < sequence { low = mid + 1 } else { high = mid }
        }
        return low < waiters.count && waiters[low].sequence == sequence ? low : nil
    }

    private mutating func remove(waiterAt index: Int) {
        let waiter = waiters.remove(at: index)
        sequenceByToken[waiter.token] = nil
        if tokenByUser[waiter.userId] == waiter.token { tokenByUser[waiter.userId] = nil }
    }

    private mutating func compactIfNeeded() {
        if head > 1024 && head * 2 > waiters.count {
            waiters.removeFirst(head)
            head = 0
        }
        if admissionHead > 1024 && admissionHead * 2 > admissionOrder.count {
            admissionOrder.removeFirst(admissionHead)
            admissionHead = 0
        }
        if admissionsHead > 1024 && admissionsHead * 2 > admissions.count {
            admissions.removeFirst(admissionsHead)
            admissionsHead = 0
        }
    }
}
