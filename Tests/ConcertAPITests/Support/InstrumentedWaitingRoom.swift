import ConcertDomain
import SharedState
import Synchronization

/// The real waiting room, counting its polls and ends; its first `endFailures` ends throw as an
/// unreachable Redis or PostgreSQL would (before touching the line).
final class InstrumentedWaitingRoom: WaitingRoom {
    private let room: any WaitingRoom
    private let state: Mutex<(failuresLeft: Int, endCalls: Int, pollCalls: Int)>

    init(_ room: any WaitingRoom, endFailures: Int = 0) {
        self.room = room
        self.state = Mutex((endFailures, 0, 0))
    }

    var endCalls: Int { state.withLock { $0.endCalls } }
    var pollCalls: Int { state.withLock { $0.pollCalls } }

    func end(token: String, now: Timestamp) async throws -> Bool {
        let fail = state.withLock { state in
            state.endCalls += 1
            guard state.failuresLeft > 0 else { return false }
            state.failuresLeft -= 1
            return true
        }
        if fail { throw SharedStateUnavailable("the waiting room fails this end on purpose") }
        return try await room.end(token: token, now: now)
    }

    func poll(token: String, now: Timestamp) async throws -> QueueTicket? {
        state.withLock { $0.pollCalls += 1 }
        return try await room.poll(token: token, now: now)
    }

    func join(userId: Int64, concertId: Int64, now: Timestamp) async throws -> (ticket: QueueTicket, created: Bool) {
        try await room.join(userId: userId, concertId: concertId, now: now)
    }
    func sweep(now: Timestamp) async throws { try await room.sweep(now: now) }
    func counts(concertId: Int64, now: Timestamp) async throws -> (waiting: Int, active: Int) {
        try await room.counts(concertId: concertId, now: now)
    }
    func admittedLastMinute(concertId: Int64, now: Timestamp) async throws -> Int {
        try await room.admittedLastMinute(concertId: concertId, now: now)
    }
    func lineCounts(concertId: Int64, now: Timestamp) async throws -> LineCounts {
        try await room.lineCounts(concertId: concertId, now: now)
    }
    func admissions(concertId: Int64, after: Timestamp, now: Timestamp) async throws -> Int {
        try await room.admissions(concertId: concertId, after: after, now: now)
    }
    func draw(concertId: Int64, now: Timestamp, order: @Sendable ([String]) -> [String]) async throws -> Int {
        try await room.draw(concertId: concertId, now: now, order: order)
    }
    func ping() async throws { try await room.ping() }
}
