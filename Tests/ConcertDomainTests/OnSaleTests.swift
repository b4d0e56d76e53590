import ConcertDomain
import Crypto
import Testing

@Suite("On-sale rules (line policy, admission, draw)")
struct OnSaleTests {
    let t0 = Timestamp(seconds: 1_000_000)
    var concert: Concert {
        Concert(id: 7, title: "T", artist: "A", venue: "V", bookingOpensAt: t0, bookingClosesAt: t0.adding(seconds: 86_400))
    }
    let defaults = LinePolicy(maxActive: 200, admitPerMinute: nil, activeSeconds: 600, paused: false, queueOpensAt: nil)
    let seats = Availability(total: 10, available: 4, sold: 3)
    let sha256: Draw.Hash = { Array(SHA256.hash(data: $0)) }

    // MARK: Policy validation

    @Test func validationFollowsTheContractsRanges() throws {
        let valid: [LinePolicyChange] = [
            LinePolicyChange(), LinePolicyChange(maxActive: 1), LinePolicyChange(maxActive: 1_000_000),
            LinePolicyChange(admitPerMinute: .some(nil)), LinePolicyChange(admitPerMinute: 1), LinePolicyChange(admitPerMinute: 10_000_000),
            LinePolicyChange(activeSeconds: 30), LinePolicyChange(activeSeconds: 86_400), LinePolicyChange(paused: true),
            LinePolicyChange(queueOpensAt: .some(nil)), LinePolicyChange(queueOpensAt: t0), LinePolicyChange(queueOpensAt: t0.adding(seconds: -60)),
        ]
        for change in valid { try change.validate(for: concert) }
        let invalid: [LinePolicyChange] = [
            LinePolicyChange(maxActive: 0), LinePolicyChange(maxActive: 1_000_001), LinePolicyChange(admitPerMinute: 0),
            LinePolicyChange(admitPerMinute: 10_000_001), LinePolicyChange(activeSeconds: 29), LinePolicyChange(activeSeconds: 86_401),
            LinePolicyChange(queueOpensAt: t0.adding(milliseconds: 1)),
        ]
        for change in invalid {
            #expect(throws: DomainError.self) { try change.validate(for: concert) }
        }
    }

    @Test func aChangeSetsOnlyWhatItNames() {
        let changed = LinePolicyChange(admitPerMinute: 50, paused: true).applied(to: defaults)
        #expect(changed == LinePolicy(maxActive: 200, admitPerMinute: 50, activeSeconds: 600, paused: true, queueOpensAt: nil))
        let cleared = LinePolicyChange(admitPerMinute: .some(nil)).applied(to: changed)
        #expect(cleared.admitPerMinute == nil && cleared.paused)
        #expect(LinePolicy.defaults(QueuePolicy(maxActive: 5, activeSeconds: 90, idleSeconds: 10)) ==
                LinePolicy(maxActive: 5, admitPerMinute: nil, activeSeconds: 90, paused: false, queueOpensAt: nil))
    }

    // MARK: Admission decision

    @Test func admissionStopsWhilePausedWithoutSeatsOrBeforeTheDraw() {
        let open = t0.adding(seconds: 10)
        func policy(_ line: LinePolicy, _ seats: Availability, drawn: Bool = false, at now: Timestamp) -> QueuePolicy {
            OnSaleRules.effectivePolicy(line: line, concert: concert, availability: seats, drawn: drawn, now: now, idleSeconds: 60)
        }
        let running = policy(defaults, seats, at: open)
        #expect(running.admitting && running.admissionCap == 200 && !running.soldOut && !running.preQueue)
        #expect(running.activeMilliseconds == 600_000 && running.idleMilliseconds == 60_000)

        var paused = defaults
        paused.paused = true
        #expect(policy(paused, seats, at: open).admissionCap == 0)
        #expect(policy(paused, seats, at: open).maxActive == 200)

        let noneAvailable = Availability(total: 10, available: 0, sold: 6)
        #expect(!policy(defaults, noneAvailable, at: open).admitting)
        #expect(!policy(defaults, noneAvailable, at: open).soldOut)
        let soldOut = Availability(total: 10, available: 0, sold: 10)
        #expect(policy(defaults, soldOut, at: open).soldOut && !policy(defaults, soldOut, at: open).admitting)
        #expect(policy(defaults, Availability(total: 0, available: 0, sold: 0), at: open).admitting)

        var preQueue = defaults
        preQueue.queueOpensAt = t0.adding(seconds: -3600)
        let before = policy(preQueue, seats, at: t0.adding(seconds: -10))
        #expect(!before.admitting && before.preQueue)
        let openedNotDrawn = policy(preQueue, seats, at: open)
        #expect(!openedNotDrawn.admitting && !openedNotDrawn.preQueue)
        #expect(policy(preQueue, seats, drawn: true, at: open).admitting)
    }

    @Test func joiningOpensWithTheBookingWindowOrThePreQueue() {
        #expect(!OnSaleRules.canJoin(line: defaults, concert: concert, now: t0.adding(seconds: -1)))
        #expect(OnSaleRules.canJoin(line: defaults, concert: concert, now: t0))
        var line = defaults
        line.queueOpensAt = t0.adding(seconds: -600)
        #expect(!OnSaleRules.canJoin(line: line, concert: concert, now: t0.adding(seconds: -601)))
        #expect(OnSaleRules.canJoin(line: line, concert: concert, now: t0.adding(seconds: -600)))
        #expect(!OnSaleRules.drawIsDue(line: line, concert: concert, now: t0.adding(milliseconds: -1)))
        #expect(OnSaleRules.drawIsDue(line: line, concert: concert, now: t0))
        #expect(!OnSaleRules.canJoin(line: line, concert: concert, now: concert.bookingClosesAt))
        line.queueOpensAt = t0 // not earlier than the opening: no pre-queue
        #expect(!line.hasPreQueue(concert))
        #expect(!OnSaleRules.drawIsDue(line: line, concert: concert, now: t0))
    }

    @Test func roomIsTheSmallerOfTheCapAndTheRate() {
        let policy = QueuePolicy(maxActive: 10, admitPerMinute: 3)
        #expect(policy.admissionRoom(active: 0, admittedInWindow: 0) == 3)
        #expect(policy.admissionRoom(active: 9, admittedInWindow: 0) == 1)
        #expect(policy.admissionRoom(active: 0, admittedInWindow: 3) == 0)
        #expect(policy.admissionRoom(active: 12, admittedInWindow: 0) == 0)
        #expect(QueuePolicy(maxActive: 10, admitting: false).admissionRoom(active: 0, admittedInWindow: 0) == 0)
    }

    // MARK: The line under a changing policy

    @Test func pauseStopsAdmissionAndResumeAdmitsInLineOrder() {
        var line = WaitingLine(concertId: 7, policy: QueuePolicy(maxActive: 1, activeSeconds: 60, idleSeconds: 600))
        for user in 1...4 { _ = line.join(userId: Int64(user), newToken: "t\(user)", now: t0) }
        line.policy.admitting = false
        line.end(token: "t1", now: t0.adding(seconds: 1))
        #expect(line.activeCount == 0)
        #expect(line.peek(token: "t2", now: t0.adding(seconds: 1))?.status == .waiting)
        line.policy.admitting = true
        line.advance(now: t0.adding(seconds: 2))
        #expect(line.peek(token: "t2", now: t0.adding(seconds: 2))?.status == .active)
        #expect(line.peek(token: "t3", now: t0.adding(seconds: 2))?.position == 0)
    }

    @Test func aLoweredCapEndsNoTokenAndAdmitsOnlyBelowIt() {
        var line = WaitingLine(concertId: 7, policy: QueuePolicy(maxActive: 3, activeSeconds: 60, idleSeconds: 600))
        for user in 1...5 { _ = line.join(userId: Int64(user), newToken: "t\(user)", now: t0) }
        line.policy.maxActive = 1
        line.advance(now: t0)
        #expect(line.activeCount == 3)
        line.end(token: "t1", now: t0)
        line.end(token: "t2", now: t0)
        #expect(line.activeCount == 1 && line.waitingCount == 2)
        line.end(token: "t3", now: t0)
        #expect(line.activeCount == 1)
        #expect(line.peek(token: "t4", now: t0)?.status == .active)
    }

    @Test func admitPerMinuteCountsAnySixtySeconds() {
        var line = WaitingLine(concertId: 7, policy: QueuePolicy(maxActive: 100, activeSeconds: 30, idleSeconds: 600, admitPerMinute: 2))
        for user in 1...6 { _ = line.join(userId: Int64(user), newToken: "t\(user)", now: t0) }
        #expect(line.activeCount == 2 && line.admittedLastMinute(now: t0) == 2)
        line.end(token: "t1", now: t0.adding(seconds: 1))
        line.end(token: "t2", now: t0.adding(seconds: 1))
        line.advance(now: t0.adding(milliseconds: 59_999))
        #expect(line.activeCount == 0)
        line.advance(now: t0.adding(seconds: 60))
        #expect(line.activeCount == 2 && line.admittedLastMinute(now: t0.adding(seconds: 60)) == 2)
        #expect(line.peek(token: "t3", now: t0.adding(seconds: 60))?.status == .active)
    }

    @Test func aNewActiveTimeAppliesToLaterActivationsOnly() {
        var line = WaitingLine(concertId: 7, policy: QueuePolicy(maxActive: 1, activeSeconds: 100, idleSeconds: 600))
        _ = line.join(userId: 1, newToken: "a", now: t0)
        line.policy.maxActive = 2
        line.policy.activeMilliseconds = 30_000
        _ = line.join(userId: 2, newToken: "b", now: t0.adding(seconds: 1))
        #expect(line.peek(token: "a", now: t0)?.activeUntil == t0.adding(seconds: 100))
        #expect(line.peek(token: "b", now: t0)?.activeUntil == t0.adding(seconds: 31))
        line.advance(now: t0.adding(seconds: 31))
        #expect(line.peek(token: "b", now: t0.adding(seconds: 31)) == nil)
        #expect(line.peek(token: "a", now: t0.adding(seconds: 31))?.status == .active)
    }

    // MARK: The draw

    @Test func commitmentAndOrderFollowTheContractsFormula() {
        let draw = Draw(sha256: sha256)
        let seed = [UInt8](repeating: 0xAB, count: 32)
        #expect(draw.commitment(seed: seed) == Draw.hex(Array(SHA256.hash(data: seed))))
        #expect(Draw.hex([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Draw.bytes(hex: "000fa0ff") == [0x00, 0x0f, 0xa0, 0xff])
        #expect(Draw.bytes(hex: "0g") == nil)
        // The known SHA-256 of "abc", as the hash the rule is given.
        #expect(Draw(sha256: sha256).key(seed: Array("ab".utf8), token: "c") ==
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let tokens = (1...20).map { "7.\(String(repeating: "0", count: 30))\($0 < 10 ? "0" : "")\($0)" }
        let order = draw.order(seed: seed, tokens: tokens)
        let expected = tokens.sorted { draw.key(seed: seed, token: $0) < draw.key(seed: seed, token: $1) }
        #expect(order == expected)
        #expect(Set(order) == Set(tokens))
        #expect(order != tokens)
    }

    @Test func seedsComeFromTheInjectedGenerator() {
        struct Counting: RandomNumberGenerator {
            var state: UInt64 = 0
            mutating func next() -> UInt64 { state &+= 0x9E37_79B9_7F4A_7C15; return state }
        }
        var a = Counting(), b = Counting()
        let first = Draw.makeSeed(using: &a)
        #expect(first.count == 32)
        #expect(first == Draw.makeSeed(using: &b))
        #expect(first != Draw.makeSeed(using: &a))
    }

    @Test func theDrawReordersTheLineOnceAndLaterJoinsStandBehind() {
        var line = WaitingLine(concertId: 7, policy: QueuePolicy(maxActive: 2, activeSeconds: 60, idleSeconds: 600, admitting: false))
        for user in 1...5 { _ = line.join(userId: Int64(user), newToken: "t\(user)", now: t0) }
        let drawn = ["t4", "t2", "t5", "t1", "t3"]
        var given: [String] = []
        let entrants = line.draw { tokens in
            given = tokens
            return drawn
        }
        #expect(entrants == 5 && Set(given) == Set(drawn))
        #expect(line.draw { _ in ["t1", "t2", "t3", "t4", "t5"] } == 5)
        _ = line.join(userId: 6, newToken: "t6", now: t0)
        for (index, token) in (drawn + ["t6"]).enumerated() {
            #expect(line.peek(token: token, now: t0)?.position == index)
        }
        line.policy.admitting = true
        line.advance(now: t0)
        #expect(line.peek(token: "t4", now: t0)?.status == .active && line.peek(token: "t2", now: t0)?.status == .active)
        #expect(line.peek(token: "t5", now: t0)?.position == 0)
    }
}
