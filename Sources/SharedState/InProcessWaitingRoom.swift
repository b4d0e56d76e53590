import ConcertDomain
import Synchronization

/// Waiting rooms held in this process's memory: the embedded default, for one instance.
/// Each concert's line is a `WaitingLine` value; one lock guards them all (every operation is a
/// few dictionary and bisection steps, far shorter than a lock hand-off to another core).
public final class InProcessWaitingRoom: WaitingRoom {
    private let policy: QueuePolicy
    private let lines = Mutex<[Int64: WaitingLine]>([:])

    public init(policy: QueuePolicy) { self.policy = policy }

    public func join(userId: Int64, concertId: Int64, now: Timestamp) async throws -> (ticket: QueueTicket, created: Bool) {
        let token = QueueToken.make(concertId: concertId)
        return lines.withLock { lines in
            var line = lines.removeValue(forKey: concertId) ?? WaitingLine(concertId: concertId, policy: policy)
            defer { lines[concertId] = line }
            return line.join(userId: userId, newToken: token, now: now)
        }
    }

    public func poll(token: String, now: Timestamp) async throws -> QueueTicket? {
        guard let concertId = QueueToken.concertId(of: token) else { return nil }
        return lines.withLock { lines in lines[concertId]?.poll(token: token, now: now) }
    }

    public func end(token: String, now: Timestamp) async throws -> Bool {
        guard let concertId = QueueToken.concertId(of: token) else { return false }
        return lines.withLock { lines in lines[concertId]?.end(token: token, now: now) ?? false }
    }

    public func sweep(now: Timestamp) async throws {
        lines.withLock { lines in
            for concertId in Array(lines.keys) {
                lines[concertId]!.sweep(now: now)
                if lines[concertId]!.isEmpty { lines[concertId] = nil }
            }
        }
    }

    public func counts(concertId: Int64, now: Timestamp) async throws -> (waiting: Int, active: Int) {
        lines.withLock { lines in
            guard var line = lines[concertId] else { return (0, 0) }
            line.advance(now: now)
            lines[concertId] = line
            return (line.waitingCount, line.activeCount)
        }
    }

    public func ping() async throws {}
}
