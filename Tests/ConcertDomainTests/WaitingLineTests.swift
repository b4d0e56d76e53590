import ConcertDomain
import Testing

@Suite("WaitingLine (queue policy)")
struct WaitingLineTests {
    let t0 = Timestamp(seconds: 1_000_000)
    func line(maxActive: Int = 2, active: Int64 = 60, idle: Int64 = 30) -> WaitingLine {
        WaitingLine(concertId: 7, policy: QueuePolicy(maxActive: maxActive, activeSeconds: active, idleSeconds: idle))
    }

    @Test func admitsUpToTheCapThenQueuesInArrivalOrder() {
        var line = line(maxActive: 2)
        let tickets = (1...5).map { line.join(userId: Int64($0), newToken: "t\($0)", now: t0).ticket }
        #expect(tickets.map(\.status) == [.active, .active, .waiting, .waiting, .waiting])
        #expect(tickets.map(\.position) == [0, 0, 0, 1, 2])
        #expect(tickets[0].activeUntil == t0.adding(seconds: 60))
        #expect(tickets[2].activeUntil == nil)
        #expect(line.activeCount == 2 && line.waitingCount == 3)
    }

    @Test func joiningTwiceReturnsTheLiveToken() {
        var line = line()
        let first = line.join(userId: 1, newToken: "a", now: t0)
        let second = line.join(userId: 1, newToken: "b", now: t0)
        #expect(first.created && !second.created)
        #expect(second.ticket.token == "a")
        #expect(line.activeCount == 1)
    }

    @Test func endingAnActiveTokenAdmitsTheHeadAtOnce() {
        var line = line(maxActive: 1)
        _ = line.join(userId: 1, newToken: "a", now: t0)
        _ = line.join(userId: 2, newToken: "b", now: t0)
        _ = line.join(userId: 3, newToken: "c", now: t0)
        let r1 = line.end(token: "a", now: t0.adding(seconds: 5))
        #expect(r1)
        #expect(line.peek(token: "b", now: t0.adding(seconds: 5))?.status == .active)
        #expect(line.peek(token: "b", now: t0.adding(seconds: 5))?.activeUntil == t0.adding(seconds: 65))
        #expect(line.peek(token: "c", now: t0.adding(seconds: 5))?.position == 0)
        let r2 = line.end(token: "a", now: t0.adding(seconds: 5))
        #expect(!r2, "an ended token cannot end twice")
        let r3 = line.poll(token: "a", now: t0.adding(seconds: 5))
        #expect(r3 == nil)
    }

    @Test func leavingWhileWaitingMovesEveryoneBehindUp() {
        var line = line(maxActive: 1)
        for user in 1...4 { _ = line.join(userId: Int64(user), newToken: "t\(user)", now: t0) }
        let r4 = line.end(token: "t2", now: t0)
        #expect(r4)
        #expect(line.peek(token: "t3", now: t0)?.position == 0)
        #expect(line.peek(token: "t4", now: t0)?.position == 1)
    }

    @Test func activeTokensRunOut() {
        var line = line(maxActive: 1, active: 60, idle: 1000)
        _ = line.join(userId: 1, newToken: "a", now: t0)
        _ = line.join(userId: 2, newToken: "b", now: t0)
        let r5 = line.poll(token: "a", now: t0.adding(seconds: 59))
        #expect(r5?.status == .active)
        let r6 = line.poll(token: "a", now: t0.adding(seconds: 60))
        #expect(r6 == nil)
        let r7 = line.poll(token: "b", now: t0.adding(seconds: 60))
        #expect(r7?.status == .active)
        // The user whose token ran out may join again.
        let r8 = line.join(userId: 1, newToken: "a2", now: t0.adding(seconds: 60))
        #expect(r8.created)
    }

    @Test func aWaiterWhoStopsPollingLosesTheirPlace() {
        var line = line(maxActive: 1, active: 1000, idle: 30)
        _ = line.join(userId: 1, newToken: "a", now: t0)
        _ = line.join(userId: 2, newToken: "b", now: t0)
        _ = line.join(userId: 3, newToken: "c", now: t0)
        let r9 = line.poll(token: "c", now: t0.adding(seconds: 20))
        #expect(r9?.position == 1)
        let r10 = line.poll(token: "b", now: t0.adding(seconds: 30))
        #expect(r10 == nil, "b was last seen at t0")
        let r11 = line.poll(token: "c", now: t0.adding(seconds: 31))
        #expect(r11?.position == 0)
    }

    @Test func aPollWithinTheRefreshLeavesLastSeenAhead() {
        var line = line(maxActive: 1, active: 1000, idle: 30)  // refresh 2.5 s
        _ = line.join(userId: 1, newToken: "a", now: t0)
        _ = line.join(userId: 2, newToken: "b", now: t0)
        _ = line.poll(token: "b", now: t0.adding(seconds: 10))
        _ = line.poll(token: "b", now: t0.adding(seconds: 11))
        // Seen until 12.5 s by the first poll, which the second left as it was.
        #expect(line.peek(token: "b", now: t0.adding(milliseconds: 42_499))?.position == 0)
        #expect(line.peek(token: "b", now: t0.adding(milliseconds: 42_500)) == nil)
    }

    @Test func sweepDropsIdleWaitersAnywhereAndAdmits() {
        var line = line(maxActive: 1, active: 40, idle: 30)
        _ = line.join(userId: 1, newToken: "a", now: t0)
        _ = line.join(userId: 2, newToken: "b", now: t0)
        _ = line.join(userId: 3, newToken: "c", now: t0.adding(seconds: 25))
        _ = line.join(userId: 4, newToken: "d", now: t0.adding(seconds: 25))
        line.sweep(now: t0.adding(seconds: 31))
        #expect(line.waitingCount == 2, "b went idle and is dropped by the sweep")
        #expect(line.peek(token: "b", now: t0.adding(seconds: 31)) == nil)
        #expect(line.peek(token: "c", now: t0.adding(seconds: 31))?.position == 0)
        #expect(line.peek(token: "d", now: t0.adding(seconds: 31))?.position == 1)
        line.sweep(now: t0.adding(seconds: 40))
        #expect(line.peek(token: "c", now: t0.adding(seconds: 40))?.status == .active, "a ran out, c is next")
        #expect(line.activeCount == 1)
    }

    @Test func neverMoreActiveThanTheCapUnderAnyInterleaving() {
        var line = line(maxActive: 3, active: 7, idle: 5)
        var generator = SplitMix(seed: 42)
        var now = t0
        var live: [String] = []
        for step in 0..<5_000 {
            now = now.adding(milliseconds: Int64(generator.next() % 900))
            switch generator.next() % 4 {
            case 0, 1:
                let user = Int64(generator.next() % 50)
                live.append(line.join(userId: user, newToken: "t\(step)", now: now).ticket.token)
            case 2:
                if !live.isEmpty { line.end(token: live[Int(generator.next() % UInt64(live.count))], now: now) }
            default:
                if !live.isEmpty { _ = line.poll(token: live[Int(generator.next() % UInt64(live.count))], now: now) }
            }
            #expect(line.activeCount <= 3)
            if line.activeCount < 3 { #expect(line.waitingCount == 0, "a slot is free while someone waits") }
        }
    }

    @Test func estimatedWaitGrowsWithPosition() {
        let policy = QueuePolicy(maxActive: 10, activeSeconds: 600, idleSeconds: 60)
        #expect(policy.estimatedWaitSeconds(position: 0) == 600)
        #expect(policy.estimatedWaitSeconds(position: 9) == 600)
        #expect(policy.estimatedWaitSeconds(position: 10) == 1200)
    }
}

/// A small deterministic generator for the interleaving test.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
