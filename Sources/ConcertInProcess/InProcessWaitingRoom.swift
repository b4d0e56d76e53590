import ConcertDomain
import SharedState
import Synchronization

/// Waiting rooms held in this process's memory: the embedded default, for one instance.
/// Each concert's line is a `WaitingLine` value; one lock guards them all (every operation is a
/// few dictionary and bisection steps, far shorter than a lock hand-off to another core).
/// Each operation first sets the line's policy to what `policies` says for it now.
public final class InProcessWaitingRoom: WaitingRoom {
    private let policies: any QueuePolicySource
    private let lines = Mutex<[Int64: WaitingLine]>([:])

    public convenience init(policy: QueuePolicy) { self.init(policies: FixedQueuePolicy(policy)) }

    public init(policies: any QueuePolicySource) { self.policies = policies }

    public func join(userId: Int64, concertId: Int64, now: Timestamp) async throws -> (ticket: QueueTicket, created: Bool) {
        let token = QueueToken.make(concertId: concertId)
        let policy = try await policies.policy(concertId: concertId, now: now)
        return lines.withLock { lines in
            var line = lines.removeValue(forKey: concertId) ?? WaitingLine(concertId: concertId, policy: policy)
            line.policy = policy
            defer { lines[concertId] = line }
            return line.join(userId: userId, newToken: token, now: now)
        }
    }

    public func poll(token: String, now: Timestamp) async throws -> QueueTicket? {
        guard let concertId = QueueToken.concertId(of: token) else { return nil }
        let policy = try await policies.policy(concertId: concertId, now: now)
        return lines.withLock { lines in
            lines[concertId]?.policy = policy
            return lines[concertId]?.poll(token: token, now: now)
        }
    }

    public func end(token: String, now: Timestamp) async throws -> Bool {
        guard let concertId = QueueToken.concertId(of: token) else { return false }
        let policy = try await policies.policy(concertId: concertId, now: now)
        return lines.withLock { lines in
            lines[concertId]?.policy = policy
            return lines[concertId]?.end(token: token, now: now) ?? false
        }
    }

    public func sweep(now: Timestamp) async throws {
        let concertIds = lines.withLock { Array($0.keys) }
        var byConcert: [Int64: QueuePolicy] = [:]
        for concertId in concertIds { byConcert[concertId] = try await policies.policy(concertId: concertId, now: now) }
        lines.withLock { lines in
            for concertId in concertIds where lines[concertId] != nil {
                if let policy = byConcert[concertId] { lines[concertId]!.policy = policy }
                lines[concertId]!.sweep(now: now)
                if lines[concertId]!.isEmpty { lines[concertId] = nil }
            }
        }
    }

    public func counts(concertId: Int64, now: Timestamp) async throws -> (waiting: Int, active: Int) {
        let policy = try await policies.policy(concertId: concertId, now: now)
        return lines.withLock { lines in
            guard var line = lines[concertId] else { return (0, 0) }
            line.policy = policy
            line.advance(now: now)
            lines[concertId] = line
            return (line.waitingCount, line.activeCount)
        }
    }

    public func admittedLastMinute(concertId: Int64, now: Timestamp) async throws -> Int {
        lines.withLock { lines in lines[concertId]?.admittedLastMinute(now: now) ?? 0 }
    }

    public func admissions(concertId: Int64, after: Timestamp, now: Timestamp) async throws -> Int {
        lines.withLock { lines in lines[concertId]?.admissions(after: after, now: now) ?? 0 }
    }

    public func draw(concertId: Int64, now: Timestamp, order: @Sendable ([String]) -> [String]) async throws -> Int {
        let policy = try await policies.policy(concertId: concertId, now: now)
        return lines.withLock { lines in
            var line = lines.removeValue(forKey: concertId) ?? WaitingLine(concertId: concertId, policy: policy)
            defer { lines[concertId] = line }
            return line.draw(order: order)
        }
    }

    public func ping() async throws {}
}
