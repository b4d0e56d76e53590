import ConcertDomain
import ConcertInProcess
import ConcertPostgres
import ConcertRedis
import ConcertTestSupport
import Crypto
import SharedState
import Synchronization
import Testing

/// Makes a waiting room that reads each line's policy from `policies`; for Redis, rooms from one
/// maker share one key prefix, for PostgreSQL one database: two rooms are two instances.
typealias SourcedWaitingRoomMaker = @Sendable (any QueuePolicySource) -> any WaitingRoom

let sourcedWaitingRoomImplementations: [Implementation<SourcedWaitingRoomMaker>] = Implementation.all(
    // In process, "another instance" is the same room (the in-process room serves one instance).
    inProcess: {
        let shared = Mutex<InProcessWaitingRoom?>(nil)
        return { policies in
            shared.withLock { room in
                if let room { return room }
                let made = InProcessWaitingRoom(policies: policies)
                room = made
                return made
            }
        }
    },
    redis: { pool, prefix in { policies in RedisWaitingRoom(pool: pool, policies: policies, keyPrefix: prefix) } },
    postgres: { store in { policies in PostgresWaitingRoom(store: store, policies: policies) } }
)

/// A policy an operator (the test) changes at will; every line gets the same.
final class ChangingPolicy: QueuePolicySource {
    private let current: Mutex<QueuePolicy>
    init(_ policy: QueuePolicy) { current = Mutex(policy) }
    func policy(concertId: Int64, now: Timestamp) async throws -> QueuePolicy { current.withLock { $0 } }
    func change(_ body: (inout QueuePolicy) -> Void) { current.withLock { body(&$0) } }
}

private let t0 = Timestamp(milliseconds: 1_760_000_000_000)

private extension Timestamp {
    func plus(_ milliseconds: Int64) -> Timestamp { adding(milliseconds: milliseconds) }
}

/// On-sale control on every waiting room: the line follows the policy it is given with each call.
@Suite("Waiting room under on-sale control")
struct OnSaleWaitingRoomTests {
    @Test(arguments: sourcedWaitingRoomImplementations)
    func pauseStopsAdmissionAndResumeAdmitsInLineOrder(_ implementation: Implementation<SourcedWaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let policy = ChangingPolicy(QueuePolicy(maxActive: 1, activeSeconds: 60, idleSeconds: 600))
            let room = make(policy)
            var tokens: [String] = []
            for user in Int64(1)...4 { tokens.append(try await room.join(userId: user, concertId: 3, now: t0).ticket.token) }
            policy.change { $0.admitting = false }
            #expect(try await room.end(token: tokens[0], now: t0.plus(1000)))
            try await room.sweep(now: t0.plus(1500))
            // Joining and polling still work and keep places.
            let late = try await room.join(userId: 5, concertId: 3, now: t0.plus(1500)).ticket
            #expect(late.status == .waiting && late.position == 3)
            #expect(try await room.poll(token: tokens[1], now: t0.plus(2000))?.status == .waiting)
            #expect(try await room.poll(token: tokens[1], now: t0.plus(2000))?.position == 0)
            #expect(try await room.counts(concertId: 3, now: t0.plus(2000)) == (4, 0))

            policy.change { $0.admitting = true }
            try await room.sweep(now: t0.plus(2500))
            #expect(try await room.poll(token: tokens[1], now: t0.plus(2500))?.status == .active)
            #expect(try await room.poll(token: tokens[2], now: t0.plus(2500))?.position == 0)
            #expect(try await room.poll(token: late.token, now: t0.plus(2500))?.position == 2)
        }
    }

    @Test(arguments: sourcedWaitingRoomImplementations)
    func aLoweredCapEndsNoTokenAndIsThenNeverExceeded(_ implementation: Implementation<SourcedWaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let policy = ChangingPolicy(QueuePolicy(maxActive: 3, activeSeconds: 60, idleSeconds: 600))
            let room = make(policy)
            var tickets: [QueueTicket] = []
            for user in Int64(1)...6 { tickets.append(try await room.join(userId: user, concertId: 4, now: t0).ticket) }
            policy.change { $0.maxActive = 1 }
            try await room.sweep(now: t0.plus(500))
            for ticket in tickets.prefix(3) {
                let now = try await room.poll(token: ticket.token, now: t0.plus(500))
                #expect(now?.status == .active && now?.activeUntil == ticket.activeUntil)
            }
            #expect(try await room.end(token: tickets[0].token, now: t0.plus(1000)))
            #expect(try await room.end(token: tickets[1].token, now: t0.plus(1000)))
            #expect(try await room.counts(concertId: 4, now: t0.plus(1000)) == (3, 1))
            #expect(try await room.end(token: tickets[2].token, now: t0.plus(1000)))
            #expect(try await room.counts(concertId: 4, now: t0.plus(1000)) == (2, 1))
            #expect(try await room.poll(token: tickets[3].token, now: t0.plus(1000))?.status == .active)
            policy.change { $0.maxActive = 3 }
            try await room.sweep(now: t0.plus(1500))
            #expect(try await room.counts(concertId: 4, now: t0.plus(1500)) == (0, 3))
        }
    }

    @Test(arguments: sourcedWaitingRoomImplementations)
    func admitPerMinuteIsRespectedInAnySixtySeconds(_ implementation: Implementation<SourcedWaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let policy = ChangingPolicy(QueuePolicy(maxActive: 100, activeSeconds: 30, idleSeconds: 600, admitPerMinute: 3))
            let instances = [make(policy), make(policy)]
            var tokens: [String] = []
            for user in Int64(1)...8 {
                tokens.append(try await instances[Int(user) % 2].join(userId: user, concertId: 5, now: t0).ticket.token)
            }
            #expect(try await instances[0].counts(concertId: 5, now: t0) == (5, 3))
            #expect(try await instances[1].admittedLastMinute(concertId: 5, now: t0) == 3)
            #expect(try await instances[1].admissions(concertId: 5, after: t0.plus(-1), now: t0) == 3)
            #expect(try await instances[0].admissions(concertId: 5, after: t0, now: t0.plus(1000)) == 0)
            for token in tokens.prefix(3) { #expect(try await instances[1].end(token: token, now: t0.plus(1000))) }
            try await instances[0].sweep(now: t0.plus(59_999))
            try await instances[1].sweep(now: t0.plus(59_999))
            #expect(try await instances[0].counts(concertId: 5, now: t0.plus(59_999)) == (5, 0))
            // Polls in the full window admit nobody either.
            #expect(try await instances[1].poll(token: tokens[3], now: t0.plus(59_999))?.status == .waiting)
            // The window moves on: a poll alone admits three more, and no more than three.
            #expect(try await instances[1].poll(token: tokens[3], now: t0.plus(60_000))?.status == .active)
            try await instances[0].sweep(now: t0.plus(60_000))
            #expect(try await instances[0].counts(concertId: 5, now: t0.plus(60_000)) == (2, 3))
            #expect(try await instances[0].admittedLastMinute(concertId: 5, now: t0.plus(60_000)) == 3)
            #expect(try await instances[1].admissions(concertId: 5, after: t0, now: t0.plus(60_000)) == 3)
            // Without a rate, the cap alone decides.
            policy.change { $0.admitPerMinute = nil }
            try await instances[0].sweep(now: t0.plus(60_500))
            #expect(try await instances[1].counts(concertId: 5, now: t0.plus(60_500)) == (0, 5))
        }
    }

    @Test(arguments: sourcedWaitingRoomImplementations)
    func aNewActiveTimeAppliesToLaterActivationsOnly(_ implementation: Implementation<SourcedWaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let policy = ChangingPolicy(QueuePolicy(maxActive: 1, activeSeconds: 100, idleSeconds: 600))
            let room = make(policy)
            let first = try await room.join(userId: 1, concertId: 6, now: t0).ticket
            policy.change { $0.maxActive = 2; $0.activeMilliseconds = 30_000 }
            let second = try await room.join(userId: 2, concertId: 6, now: t0.plus(1000)).ticket
            #expect(first.activeUntil == t0.plus(100_000))
            #expect(second.activeUntil == t0.plus(31_000))
            try await room.sweep(now: t0.plus(31_000))
            #expect(try await room.poll(token: second.token, now: t0.plus(31_000)) == nil)
            #expect(try await room.poll(token: first.token, now: t0.plus(31_000))?.activeUntil == t0.plus(100_000))
        }
    }

    @Test(arguments: sourcedWaitingRoomImplementations)
    func noAdmissionWithoutAvailableSeatsUntilOneIsFree(_ implementation: Implementation<SourcedWaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            // What `OnSaleRules.effectivePolicy` gives while no seat is AVAILABLE.
            let policy = ChangingPolicy(QueuePolicy(maxActive: 5, activeSeconds: 60, idleSeconds: 600, admitting: false))
            let room = make(policy)
            let joined = try await room.join(userId: 1, concertId: 7, now: t0).ticket
            #expect(joined.status == .waiting && joined.position == 0)
            try await room.sweep(now: t0.plus(500))
            #expect(try await room.poll(token: joined.token, now: t0.plus(500))?.status == .waiting)
            policy.change { $0.admitting = true } // a hold ran out
            try await room.sweep(now: t0.plus(1000))
            #expect(try await room.poll(token: joined.token, now: t0.plus(1000))?.status == .active)
        }
    }

    @Test(arguments: sourcedWaitingRoomImplementations)
    func theDrawOrdersThePreQueueByTheFormulaOnceAndLaterJoinsStandBehind(
        _ implementation: Implementation<SourcedWaitingRoomMaker>
    ) async throws {
        try await implementation.with { make async throws in
            let policy = ChangingPolicy(QueuePolicy(maxActive: 2, activeSeconds: 60, idleSeconds: 600, admitting: false, preQueue: true))
            let instances = [make(policy), make(policy)]
            var tokens: [String] = []
            for user in Int64(1)...12 {
                tokens.append(try await instances[Int(user) % 2].join(userId: user, concertId: 9, now: t0).ticket.token)
            }
            let seed = (0..<32).map { UInt8($0 * 7 % 256) }
            let rule = Draw(sha256: { Array(SHA256.hash(data: $0)) })
            let expected = tokens.sorted {
                Draw.hex(Array(SHA256.hash(data: seed + Array($0.utf8)))) < Draw.hex(Array(SHA256.hash(data: seed + Array($1.utf8))))
            }
            #expect(rule.commitment(seed: seed) == Draw.hex(Array(SHA256.hash(data: seed))))
            // Two instances draw at the same moment: one order is applied, once.
            let gate = StartGate(opensWhenArrived: 2)
            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for instance in instances {
                    group.addTask {
                        await gate.wait()
                        return try await instance.draw(concertId: 9, now: t0.plus(1000)) { rule.order(seed: seed, tokens: $0) }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(counts == [12, 12])
            let later = try await instances[0].join(userId: 13, concertId: 9, now: t0.plus(1000)).ticket
            for (place, token) in expected.enumerated() {
                #expect(try await instances[place % 2].poll(token: token, now: t0.plus(1000))?.position == place)
            }
            #expect(later.position == 12)
            // Drawing again changes nothing.
            #expect(try await instances[1].draw(concertId: 9, now: t0.plus(1500)) { $0.reversed() } == 12)
            #expect(try await instances[1].poll(token: expected[0], now: t0.plus(1500))?.position == 0)

            policy.change { $0.admitting = true; $0.preQueue = false }
            try await instances[0].sweep(now: t0.plus(2000))
            #expect(try await instances[1].poll(token: expected[0], now: t0.plus(2000))?.status == .active)
            #expect(try await instances[1].poll(token: expected[1], now: t0.plus(2000))?.status == .active)
            #expect(try await instances[0].poll(token: expected[2], now: t0.plus(2000))?.position == 0)
            #expect(try await instances[0].poll(token: later.token, now: t0.plus(2000))?.position == 10)
        }
    }

    @Test(arguments: sourcedWaitingRoomImplementations)
    func theCapIsNeverExceededAcrossInstancesWhileItIsLoweredAndRaised(
        _ implementation: Implementation<SourcedWaitingRoomMaker>
    ) async throws {
        try await implementation.with { make async throws in
            let policy = ChangingPolicy(QueuePolicy(maxActive: 4, activeSeconds: 600, idleSeconds: 600))
            let instances = [make(policy), make(policy), make(policy)]
            let users = 40
            var tokens: [String] = []
            for user in 1...users {
                tokens.append(try await instances[user % 3].join(userId: Int64(user), concertId: 10, now: t0).ticket.token)
            }
            let all = tokens
            let counters = CapCounters()
            let gate = StartGate(opensWhenArrived: 4)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, room) in instances.enumerated() {
                    group.addTask {
                        await gate.wait()
                        for round in 0..<400 where counters.ended.load(ordering: .relaxed) < users {
                            let token = all[(round * 7 + index * 13) % users]
                            if let ticket = try await room.poll(token: token, now: t0), ticket.status == .active,
                               try await room.end(token: token, now: t0) {
                                counters.ended.add(1, ordering: .relaxed)
                            }
                            let active = try await room.counts(concertId: 10, now: t0).active
                            counters.highest.max(active, ordering: .relaxed)
                            try await room.sweep(now: t0)
                        }
                    }
                }
                group.addTask {
                    await gate.wait()
                    for step in 0..<60 {
                        policy.change { $0.maxActive = step % 2 == 0 ? 1 : 4 }
                        try? await Task.sleep(for: .milliseconds(2))
                    }
                    policy.change { $0.maxActive = 4 }
                }
                try await group.waitForAll()
            }
            #expect(counters.highest.load(ordering: .relaxed) <= 4)
            #expect(counters.highest.load(ordering: .relaxed) > 0)
        }
    }
}

/// What the racing tasks of the cap test share.
private final class CapCounters: Sendable {
    let highest = Atomic<Int>(0)
    let ended = Atomic<Int>(0)
}
