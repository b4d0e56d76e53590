import ConcertAPI
import ConcertDomain
import Foundation
import SharedState
import Synchronization
import Testing

/// A payment commits, then ends its queue token. When that end fails (the waiting room briefly
/// unreachable), the payment still stands and the end is owed: until it happens a rejoin would
/// return the same live token, which its payment's claim keeps from paying again.
@Suite("Ending the queue token after a payment")
struct PaymentTokenEndTests {
    @Test(arguments: TestBackend.all)
    func anEndThatFailsAfterThePaymentIsRetriedUntilTheTokenIsGone(backend: TestBackend) async throws {
        let room = Mutex<EndFailingWaitingRoom?>(nil)
        try await withAPI(backend, engines: { engines in
            var engines = engines
            let failing = EndFailingWaitingRoom(engines.waitingRoom, failures: 3)
            room.withLock { $0 = failing }
            engines.waitingRoom = failing
            return engines
        }) { api in
            let failing = try #require(room.withLock { $0 })
            let concert = try await api.openConcert(price: 3000)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 4, user: 5, token: token)
            _ = try await api.charge(5000, user: 5)

            let paid = try await api.pay(hold.int("id")!, user: 5, token: token)
            #expect(paid.status == 201 && paid.string("status") == "PAID", "the payment stands: \(paid)")

            // The end is tried again in the background (every 250 ms) until the room answers.
            let deadline = ContinuousClock.now + .seconds(10)
            var current = try await api.call(.get, "/v1/queue/tokens/current", user: 5, queueToken: token)
            while current.code != "QUEUE_TOKEN_INVALID", ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                current = try await api.call(.get, "/v1/queue/tokens/current", user: 5, queueToken: token)
            }
            #expect(current.code == "QUEUE_TOKEN_INVALID", "the paid token still answers: \(current)")
            #expect(failing.endCalls >= 4, "three failed ends and the one that worked")

            // So a rejoin gets a fresh token, not the paid one.
            let rejoined = try await api.join(concert.concertId, user: 5)
            #expect(rejoined.status == 201 && rejoined.string("token") != token, "\(rejoined)")
        }
    }
}

/// The real waiting room, except that its first `failures` ends throw as an unreachable Redis
/// or PostgreSQL would (before touching the line).
final class EndFailingWaitingRoom: WaitingRoom {
    private let room: any WaitingRoom
    private let state: Mutex<(failuresLeft: Int, endCalls: Int)>

    init(_ room: any WaitingRoom, failures: Int) {
        self.room = room
        self.state = Mutex((failures, 0))
    }

    var endCalls: Int { state.withLock { $0.endCalls } }

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

    func join(userId: Int64, concertId: Int64, now: Timestamp) async throws -> (ticket: QueueTicket, created: Bool) {
        try await room.join(userId: userId, concertId: concertId, now: now)
    }
    func poll(token: String, now: Timestamp) async throws -> QueueTicket? { try await room.poll(token: token, now: now) }
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
