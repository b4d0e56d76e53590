import ConcertDomain
import ConcertInProcess
import ConcertPostgres
import ConcertRedis
import ConcertTestSupport
import SharedState
import Synchronization
import Testing

/// Makes a waiting room with a policy; for Redis, rooms from one maker share one key prefix.
typealias WaitingRoomMaker = @Sendable (QueuePolicy) -> any WaitingRoom

let waitingRoomImplementations: [Implementation<WaitingRoomMaker>] = Implementation.all(
    inProcess: { { policy in InProcessWaitingRoom(policy: policy) } },
    redis: { pool, prefix in { policy in RedisWaitingRoom(pool: pool, policy: policy, keyPrefix: prefix) } },
    postgres: { store in { policy in PostgresWaitingRoom(store: store, policy: policy) } }
)

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

private extension Timestamp {
    func plus(_ milliseconds: Int64) -> Timestamp { adding(milliseconds: milliseconds) }
}

/// One suite, run against every implementation: they must behave the same, `WaitingLine` being
/// the reference. Time is an argument, so nothing here sleeps.
@Suite("Waiting room semantics")
struct WaitingRoomTests {
    @Test(arguments: waitingRoomImplementations)
    func firstComeFirstServedUpToTheCap(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let policy = QueuePolicy(maxActive: 2, activeSeconds: 10, idleSeconds: 5)
            let room = make(policy)
            var tickets: [QueueTicket] = []
            for user in Int64(1)...5 {
                let (ticket, created) = try await room.join(userId: user, concertId: 7, now: t0)
                #expect(created)
                tickets.append(ticket)
            }
            #expect(tickets.map(\.status) == [.active, .active, .waiting, .waiting, .waiting])
            #expect(tickets.map(\.position) == [0, 0, 0, 1, 2])
            #expect(tickets.map(\.estimatedWaitSeconds) == [0, 0, 10, 10, 20])
            #expect(tickets.map(\.activeUntil) == [t0.plus(10_000), t0.plus(10_000), nil, nil, nil])
            #expect(tickets.map(\.userId) == [1, 2, 3, 4, 5])
            #expect(tickets.allSatisfy { $0.concertId == 7 && QueueToken.concertId(of: $0.token) == 7 })
            #expect(Set(tickets.map(\.token)).count == 5)
            #expect(try await room.counts(concertId: 7, now: t0) == (3, 2))
            for ticket in tickets {
                #expect(try await room.poll(token: ticket.token, now: t0) == ticket)
            }
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func joiningAgainReturnsTheLiveToken(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 1, activeSeconds: 10, idleSeconds: 5))
            let (active, _) = try await room.join(userId: 1, concertId: 3, now: t0)
            let (waiting, _) = try await room.join(userId: 2, concertId: 3, now: t0)
            let (activeAgain, activeCreated) = try await room.join(userId: 1, concertId: 3, now: t0.plus(1000))
            #expect(!activeCreated)
            #expect(activeAgain == active)
            let (waitingAgain, waitingCreated) = try await room.join(userId: 2, concertId: 3, now: t0.plus(1000))
            #expect(!waitingCreated)
            #expect(waitingAgain == waiting)
            #expect(try await room.counts(concertId: 3, now: t0.plus(1000)) == (1, 1))
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func endingAnActiveTokenAdmitsTheHeadAtOnce(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 2, activeSeconds: 10, idleSeconds: 5))
            var tokens: [String] = []
            for user in Int64(1)...4 { tokens.append(try await room.join(userId: user, concertId: 1, now: t0).ticket.token) }

            #expect(try await room.end(token: tokens[0], now: t0.plus(1000)))
            let third = try #require(try await room.poll(token: tokens[2], now: t0.plus(1000)))
            #expect(third.status == .active)
            #expect(third.activeUntil == t0.plus(11_000))
            #expect(try await room.poll(token: tokens[3], now: t0.plus(1000))?.position == 0)
            #expect(try await room.end(token: tokens[0], now: t0.plus(1000)) == false)
            #expect(try await room.poll(token: tokens[0], now: t0.plus(1000)) == nil)

            // The user who left may join again, at the back.
            let (rejoined, created) = try await room.join(userId: 1, concertId: 1, now: t0.plus(2000))
            #expect(created)
            #expect(rejoined.token != tokens[0])
            #expect(rejoined.status == .waiting)
            #expect(rejoined.position == 1)
            #expect(try await room.counts(concertId: 1, now: t0.plus(2000)) == (2, 2))
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func leavingWhileWaitingMovesThoseBehindUp(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 1, activeSeconds: 10, idleSeconds: 5))
            var tokens: [String] = []
            for user in Int64(1)...5 { tokens.append(try await room.join(userId: user, concertId: 1, now: t0).ticket.token) }
            #expect(try await room.end(token: tokens[2], now: t0))
            #expect(try await room.poll(token: tokens[2], now: t0) == nil)
            #expect(try await room.poll(token: tokens[1], now: t0)?.position == 0)
            #expect(try await room.poll(token: tokens[3], now: t0)?.position == 1)
            #expect(try await room.poll(token: tokens[4], now: t0)?.position == 2)
            #expect(try await room.poll(token: tokens[0], now: t0)?.status == .active)
            #expect(try await room.counts(concertId: 1, now: t0) == (3, 1))
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func activeTokensExpireAfterTheirTime(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 1, activeSeconds: 10, idleSeconds: 5))
            let first = try await room.join(userId: 1, concertId: 1, now: t0).ticket
            let second = try await room.join(userId: 2, concertId: 1, now: t0).ticket
            #expect(try await room.poll(token: second.token, now: t0.plus(4000))?.status == .waiting)
            #expect(try await room.poll(token: second.token, now: t0.plus(8000))?.status == .waiting)
            #expect(try await room.poll(token: first.token, now: t0.plus(9999))?.status == .active)
            #expect(try await room.poll(token: second.token, now: t0.plus(9999))?.status == .waiting)

            #expect(try await room.poll(token: first.token, now: t0.plus(10_000)) == nil)
            let promoted = try #require(try await room.poll(token: second.token, now: t0.plus(10_000)))
            #expect(promoted.status == .active)
            #expect(promoted.activeUntil == t0.plus(20_000))
            #expect(try await room.end(token: first.token, now: t0.plus(10_000)) == false)

            let (again, created) = try await room.join(userId: 1, concertId: 1, now: t0.plus(10_000))
            #expect(created)
            #expect(again.token != first.token)
            #expect(again.status == .waiting)
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func waitersWhoStopPollingLoseTheirPlace(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 5))
            _ = try await room.join(userId: 1, concertId: 1, now: t0)
            let silent = try await room.join(userId: 2, concertId: 1, now: t0).ticket
            let polling = try await room.join(userId: 3, concertId: 1, now: t0).ticket
            let late = try await room.join(userId: 4, concertId: 1, now: t0).ticket
            // One millisecond before the idle time is still in time, and counts as a poll.
            #expect(try await room.poll(token: polling.token, now: t0.plus(4999))?.position == 1)
            #expect(try await room.poll(token: late.token, now: t0.plus(3000))?.position == 2)

            #expect(try await room.poll(token: silent.token, now: t0.plus(5000)) == nil)
            #expect(try await room.poll(token: polling.token, now: t0.plus(5000))?.position == 0)
            #expect(try await room.poll(token: late.token, now: t0.plus(5000))?.position == 1)

            let (rejoined, created) = try await room.join(userId: 2, concertId: 1, now: t0.plus(5000))
            #expect(created)
            #expect(rejoined.token != silent.token)
            #expect(rejoined.position == 2)
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func aPollKeepsThePlaceForTheIdleTimeAndAtMostTheRefreshLonger(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            // Idle 60 s: a poll moves "last seen" to its moment plus 5 s, unless it is already later.
            let policy = QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 60)
            #expect(policy.pollRefreshMilliseconds == 5000)
            let room = make(policy)
            _ = try await room.join(userId: 1, concertId: 1, now: t0)
            let twice = try await room.join(userId: 2, concertId: 1, now: t0).ticket
            let once = try await room.join(userId: 3, concertId: 1, now: t0).ticket
            #expect(try await room.poll(token: twice.token, now: t0.plus(1000))?.position == 0)
            #expect(try await room.poll(token: once.token, now: t0.plus(1000))?.position == 1)
            // Seen until t0 + 6 s already: this poll changes nothing...
            #expect(try await room.poll(token: twice.token, now: t0.plus(2000))?.position == 0)
            // ...so both keep their places until 60 s after t0 + 6 s, no longer.
            #expect(try await room.poll(token: twice.token, now: t0.plus(65_999))?.position == 0)
            #expect(try await room.poll(token: once.token, now: t0.plus(66_000)) == nil)
            // A short idle time has a short refresh: a twelfth of it.
            #expect(QueuePolicy(idleSeconds: 2).pollRefreshMilliseconds == 166)
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func anIdleWaiterAtTheHeadIsSkippedWhenASlotFrees(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 5))
            let active = try await room.join(userId: 1, concertId: 1, now: t0).ticket
            let silent = try await room.join(userId: 2, concertId: 1, now: t0).ticket
            let polling = try await room.join(userId: 3, concertId: 1, now: t0).ticket
            _ = try await room.poll(token: polling.token, now: t0.plus(4000))

            #expect(try await room.end(token: active.token, now: t0.plus(6000)))
            #expect(try await room.counts(concertId: 1, now: t0.plus(6000)) == (0, 1))
            #expect(try await room.poll(token: polling.token, now: t0.plus(6000))?.status == .active)
            #expect(try await room.poll(token: silent.token, now: t0.plus(6000)) == nil)
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func sweepDropsIdleWaitersAnywhereInEveryLine(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 60))
            var polling: [Int64: String] = [:], silent: [Int64: String] = [:]
            for concert in Int64(1)...2 {
                _ = try await room.join(userId: 1, concertId: concert, now: t0)
                polling[concert] = try await room.join(userId: 2, concertId: concert, now: t0).ticket.token
                silent[concert] = try await room.join(userId: 3, concertId: concert, now: t0).ticket.token
                _ = try await room.poll(token: polling[concert]!, now: t0.plus(50_000))
            }
            // Without a sweep, an idle waiter behind the head is still counted (no slot is free,
            // so nothing looks at the line)...
            for concert in Int64(1)...2 {
                #expect(try await room.counts(concertId: concert, now: t0.plus(61_000)) == (2, 1))
            }
            // ...and a sweep finds both lines and drops it.
            try await room.sweep(now: t0.plus(61_000))
            for concert in Int64(1)...2 {
                #expect(try await room.counts(concertId: concert, now: t0.plus(61_000)) == (1, 1))
                #expect(try await room.poll(token: silent[concert]!, now: t0.plus(61_000)) == nil)
                #expect(try await room.poll(token: polling[concert]!, now: t0.plus(61_000))?.position == 0)
            }

            // When the ACTIVE tokens expire and everyone waiting went idle, the lines empty out;
            // a later join starts a fresh line.
            try await room.sweep(now: t0.plus(600_000))
            for concert in Int64(1)...2 {
                #expect(try await room.counts(concertId: concert, now: t0.plus(600_000)) == (0, 0))
            }
            let (fresh, created) = try await room.join(userId: 9, concertId: 1, now: t0.plus(600_000))
            #expect(created)
            #expect(fresh.status == .active)
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func sweepExpiresAndAdmitsWithoutAnyPoll(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 2, activeSeconds: 10, idleSeconds: 60))
            for user in Int64(1)...4 { _ = try await room.join(userId: user, concertId: 1, now: t0) }
            try await room.sweep(now: t0.plus(10_000))
            // Read back at an earlier time, when nothing would expire by itself: only the sweep
            // can have moved users 3 and 4 up.
            #expect(try await room.counts(concertId: 1, now: t0.plus(9000)) == (0, 2))
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func unknownAndMalformedTokensFindNothing(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 1, activeSeconds: 10, idleSeconds: 5))
            let live = try await room.join(userId: 1, concertId: 1, now: t0).ticket
            let hex = String(repeating: "ab", count: 16)
            let tokens = [
                "", "garbage", "1", "1.", "0.\(hex)", "-1.\(hex)", "1.\(hex.dropLast())", "1.\(hex.uppercased())",
                "1.\(hex)x", "x.\(hex)", "1.\(hex)",                 // well-formed, but never issued
                QueueToken.make(concertId: 99),                       // a concert with no line
                live.token.replacingFirstCharacter(with: "2"),        // right random part, other concert
            ]
            for token in tokens {
                #expect(try await room.poll(token: token, now: t0) == nil, "poll \(token)")
                #expect(try await room.end(token: token, now: t0) == false, "end \(token)")
            }
            #expect(try await room.counts(concertId: 99, now: t0) == (0, 0))
            #expect(try await room.poll(token: live.token, now: t0) == live)
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func eachConcertHasItsOwnLine(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 1, activeSeconds: 10, idleSeconds: 5))
            let one = try await room.join(userId: 1, concertId: 1, now: t0).ticket
            let two = try await room.join(userId: 1, concertId: 2, now: t0).ticket
            #expect(one.status == .active && two.status == .active)
            #expect(one.token != two.token)
            #expect(QueueToken.concertId(of: two.token) == 2)
            #expect(try await room.join(userId: 2, concertId: 1, now: t0).ticket.status == .waiting)
            #expect(try await room.join(userId: 2, concertId: 3, now: t0).ticket.status == .active)
            #expect(try await room.end(token: one.token, now: t0))
            #expect(try await room.counts(concertId: 2, now: t0) == (0, 1))
            #expect(try await room.counts(concertId: 1, now: t0) == (0, 1))
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func concurrentJoinsAdmitExactlyUpToTheCap(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let room = make(QueuePolicy(maxActive: 10, activeSeconds: 600, idleSeconds: 60))
            let gate = StartGate(opensWhenArrived: 200)
            let joins = try await withThrowingTaskGroup(of: (ticket: QueueTicket, created: Bool).self) { group in
                for user in Int64(1)...200 {
                    group.addTask {
                        await gate.wait()
                        return try await room.join(userId: user, concertId: 5, now: t0)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let tickets = joins.map(\.ticket)
            #expect(joins.allSatisfy { $0.created })
            #expect(Set(tickets.map(\.token)).count == 200)
            #expect(Set(tickets.map(\.userId)).count == 200)
            #expect(tickets.filter { $0.status == .active }.count == 10)
            let positions = tickets.filter { $0.status == .waiting }.map(\.position).sorted()
            #expect(positions == Array(0..<190))
            #expect(try await room.counts(concertId: 5, now: t0) == (190, 10))
            // Nobody moved since: each poll sees the place its join reported.
            for ticket in tickets {
                #expect(try await room.poll(token: ticket.token, now: t0) == ticket)
            }
        }
    }

    @Test(arguments: waitingRoomImplementations)
    func concurrentEndsSweepsAndPollsNeverExceedTheCap(_ implementation: Implementation<WaitingRoomMaker>) async throws {
        try await implementation.with { make async throws in
            let cap = 5, users = 60
            let room = make(QueuePolicy(maxActive: cap, activeSeconds: 600, idleSeconds: 600))
            var tokens: [String] = []
            for user in 1...users { tokens.append(try await room.join(userId: Int64(user), concertId: 8, now: t0).ticket.token) }
            let finalTokens = tokens

            let progress = RaceProgress()
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Enders: each walks the line from its own starting point and ends what is ACTIVE.
                for ender in 0..<6 {
                    progress.enders.add(1, ordering: .relaxed)
                    group.addTask {
                        defer { progress.enders.subtract(1, ordering: .relaxed) }
                        var rounds = 0
                        while progress.ended.load(ordering: .relaxed) < users && rounds < 500 {
                            rounds += 1
                            await Task.yield()
                            for offset in 0..<users {
                                let index = (offset + ender * 10) % users
                                guard let ticket = try await room.poll(token: finalTokens[index], now: t0),
                                      ticket.status == .active else { continue }
                                // First come, first served: whoever joined just before is not still waiting.
                                if index > 0, try await room.poll(token: finalTokens[index - 1], now: t0)?.status == .waiting {
                                    progress.fifoViolations.withLock { $0.append("user \(index + 1) active while user \(index) waits") }
                                }
                                if try await room.end(token: finalTokens[index], now: t0) { progress.ended.add(1, ordering: .relaxed) }
                                let active = try await room.counts(concertId: 8, now: t0).active
                                progress.highestActive.max(active, ordering: .relaxed)
                            }
                        }
                    }
                }
                // Sweepers and samplers run until the enders are done (enders sample too, so there are
                // samples however the tasks get scheduled).
                for _ in 0..<2 {
                    group.addTask {
                        while progress.enders.load(ordering: .relaxed) > 0 {
                            try await room.sweep(now: t0)
                            // The in-process room never suspends; let other tests' tasks run.
                            await Task.yield()
                        }
                    }
                    group.addTask {
                        while progress.enders.load(ordering: .relaxed) > 0 {
                            let active = try await room.counts(concertId: 8, now: t0).active
                            progress.highestActive.max(active, ordering: .relaxed)
                            await Task.yield()
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(progress.ended.load(ordering: .relaxed) == users, "every token ends exactly once")
            #expect(progress.highestActive.load(ordering: .relaxed) <= cap)
            #expect(progress.highestActive.load(ordering: .relaxed) > 0)
            #expect(progress.fifoViolations.withLock { $0 } == [])
            #expect(try await room.counts(concertId: 8, now: t0) == (0, 0))
        }
    }
}

/// What the racing tasks of one test share.
private final class RaceProgress: Sendable {
    let ended = Atomic<Int>(0)
    let enders = Atomic<Int>(0)
    let highestActive = Atomic<Int>(0)
    let fifoViolations = Mutex<[String]>([])
}

private extension String {
    func replacingFirstCharacter(with replacement: Character) -> String {
        String(replacement) + dropFirst()
    }
}
