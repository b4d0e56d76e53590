/// The waiting-room numbers an operator can tune, with the contract's defaults.
public struct QueuePolicy: Sendable, Equatable {
    public var maxActive: Int
    public var activeMilliseconds: Int64
    public var idleMilliseconds: Int64

    public init(maxActive: Int = 200, activeSeconds: Int64 = 600, idleSeconds: Int64 = 60) {
        self.maxActive = maxActive
        self.activeMilliseconds = activeSeconds * 1000
        self.idleMilliseconds = idleSeconds * 1000
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

    public init(token: String, userId: Int64, concertId: Int64, status: QueueTokenStatus, position: Int,
                estimatedWaitSeconds: Int, activeUntil: Timestamp?) {
        self.token = token
        self.userId = userId
        self.concertId = concertId
        self.status = status
        self.position = position
        self.estimatedWaitSeconds = estimatedWaitSeconds
        self.activeUntil = activeUntil
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
    private var admissionOrder: [(token: String, activeUntil: Timestamp)] = []
    private var admissionHead = 0
    private var tokenByUser: [Int64: String] = [:]

    public init(concertId: Int64, policy: QueuePolicy) {
        self.concertId = concertId
        self.policy = policy
    }

    public var waitingCount: Int { waiters.count - head }
    public var activeCount: Int { admitted.count }
    public var isEmpty: Bool { waitingCount == 0 && admitted.isEmpty }

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
            waiters[index].lastSeen = now
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
        while admitted.count < policy.maxActive, head < waiters.count {
            let waiter = waiters[head]
            head += 1
            sequenceByToken[waiter.token] = nil
            if waiter.lastSeen.adding(milliseconds: policy.idleMilliseconds) <= now {
                if tokenByUser[waiter.userId] == waiter.token { tokenByUser[waiter.userId] = nil }
                continue
            }
            let activeUntil = now.adding(milliseconds: policy.activeMilliseconds)
            admitted[waiter.token] = Admitted(userId: waiter.userId, activeUntil: activeUntil)
            admissionOrder.append((waiter.token, activeUntil))
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
    }
}
