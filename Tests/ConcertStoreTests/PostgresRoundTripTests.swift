import ConcertDomain
import ConcertPostgres
import ConcertStore
import ConcertTestSupport
import Foundation
import Testing

/// The write path's round trips, counted on the wire (docs/concurrency.md lists them): a hold, a
/// cancel, a charge, a payment, a refund and a cancelled date each reach PostgreSQL once, with or without an
/// `Idempotency-Key`, and so does a first claim of a key. A statement added to any of them makes
/// this fail. (The write calls are prepared statements: the first call of one on a connection
/// also prepares it there, an exchange counted apart, at most one per call.)
@Suite("PostgreSQL round trips per write", .enabled(if: TestServices.postgresURL != nil || TestServices.required))
struct PostgresRoundTripTests {
    static let now = Timestamp(milliseconds: 1_800_000_000_000)
    static let rules = BookingRules()

    /// A fresh database reached through a round-trip counter, with one concert and one schedule of
    /// 50 seats at 100 points that the store has already read once.
    func withCountedStore(options: PostgresStoreOptions = PostgresStoreOptions(),
                          _ body: (PostgresConcertStore, PostgresRoundTrips, Schedule) async throws -> Void) async throws {
        try await withRoundTripCountedStore(options: options, logger: TestServices.logger) { store, trips in
            let now = Self.now
            let concert = try await store.createConcert(NewConcert(
                title: "T", artist: "A", venue: "V", bookingOpensAt: now.adding(milliseconds: -1000), bookingClosesAt: now.adding(milliseconds: 86_400_000)))
            let schedule = try await store.createSchedule(NewSchedule(concertId: concert.id, startsAt: now.adding(milliseconds: 86_400_000), price: 100, seatCount: 50))
            _ = try await store.schedule(id: schedule.id) // schedules are read once per instance, then known
            try await body(store, trips, schedule)
        }
    }

    @Test("holds released together share calls; each caller gets its own answer")
    func holdsAreBatched() async throws {
        // One call at a time, so that holds arriving together must queue and leave together.
        try await withCountedStore(options: PostgresStoreOptions(holdBatchSize: 64, holdBatchConcurrency: 1)) { store, trips, schedule in
            let rules = BookingRules(maxHoldsPerUser: 2)
            // 60 holds: users 1...20 each ask for seats 1...3 of their own (user u: seats 3u-2...3u,
            // within 50 seats for u <= 16) and users 17...20 for seat 1, which user 1 also wants.
            let asks = (Int64(1)...16).flatMap { user in (0..<3).map { Ask(user: user, seat: Int(user) * 3 - 2 + $0) } }
                + (Int64(17)...20).map { Ask(user: $0, seat: 1) }
            trips.reset()
            let gate = StartGate()
            let scheduleId = schedule.id
            let outcomes = await withTaskGroup(of: (Ask, HoldAnswer).self) { group in
                for ask in asks {
                    group.addTask {
                        await gate.wait()
                        let request = HoldRequest(userId: ask.user, scheduleId: scheduleId, seatNumber: ask.seat, now: Self.now, rules: rules)
                        do {
                            return (ask, .held(try await store.hold(request)))
                        } catch {
                            return (ask, .refused(error as? DomainError, "\(error)"))
                        }
                    }
                }
                await gate.open(whenArrived: asks.count)
                var all: [(Ask, HoldAnswer)] = []
                for await outcome in group { all.append(outcome) }
                return all
            }
            // Far fewer calls than holds.
            #expect(trips.value < asks.count / 2, "\(trips.value) round trips for \(asks.count) holds")
            // Every answer is the caller's own: a reservation of the seat it asked for, for its user.
            var winners: [Int: Int64] = [:]
            var heldPerUser: [Int64: Int] = [:]
            for (ask, outcome) in outcomes {
                switch outcome {
                case .held(let reservation):
                    #expect(reservation.userId == ask.user && reservation.seatNumber == ask.seat)
                    #expect(winners[ask.seat] == nil, "seat \(ask.seat) won twice")
                    winners[ask.seat] = ask.user
                    heldPerUser[ask.user, default: 0] += 1
                case .refused(let refusal, let description):
                    #expect(refusal == .holdLimitReached(limit: 2) || refusal == .seatUnavailable, "\(description)")
                }
            }
            // The limit held inside batches, and no refusal failed anyone else.
            for user in Int64(1)...16 { #expect(heldPerUser[user] == 2, "user \(user) holds \(heldPerUser[user] ?? 0)") }
            #expect(winners[1] != nil)
            #expect(outcomes.filter { if case .held = $0.1 { return true } else { return false } }.count == 16 * 2 + (winners[1].map { $0 > 16 ? 1 : 0 } ?? 0))
            let seats = try #require(try await store.seatMap(scheduleId: schedule.id, now: Self.now))
            #expect(seats.filter { $0.status == .held }.count == winners.count)
        }
    }

    @Test("payments released together share calls; each caller gets its own answer, refusals included")
    func paymentsAreBatched() async throws {
        // One call at a time, so that payments arriving together must queue and leave together.
        try await withCountedStore(options: PostgresStoreOptions(payBatchSize: 64, payBatchConcurrency: 1)) { store, trips, schedule in
            let now = Self.now
            let rules = BookingRules(maxHoldsPerUser: 4)
            func held(_ user: Int64, _ seat: Int) async throws -> Reservation {
                try await store.hold(HoldRequest(userId: user, scheduleId: schedule.id, seatNumber: seat, now: now, rules: rules))
            }
            // Users 1...20 hold seat u; 1...17 can pay for it (100 points), 18...20 have 50.
            var own: [Int64: Reservation] = [:]
            for user in Int64(1)...20 {
                own[user] = try await held(user, Int(user))
                _ = try await store.charge(userId: user, amount: user <= 17 ? 100 : 50, now: now, rules: rules, idempotency: nil)
            }
            // User 21 holds three seats with points for two; user 22 pays with an Idempotency-Key.
            let triple = [try await held(21, 21), try await held(21, 22), try await held(21, 23)]
            _ = try await store.charge(userId: 21, amount: 250, now: now, rules: rules, idempotency: nil)
            let keyed = try await held(22, 24)
            _ = try await store.charge(userId: 22, amount: 100, now: now, rules: rules, idempotency: nil)
            let claim = try await store.claim(userId: 22, key: "pk", fingerprint: "f", now: now, leaseMilliseconds: 10_000,
                                              retentionMilliseconds: 86_400_000)
            #expect(claim == .proceed)
            // Racers 0...19: user i+1's own; 20: user 1's again; 21...23: user 21's three;
            // 24: user 22's with the key; 25: user 23 pays for user 2's reservation.
            let payments: [(user: Int64, reservation: Int64, key: String?)] =
                (Int64(1)...20).map { ($0, own[$0]!.id, nil) } + [(1, own[1]!.id, nil)]
                + triple.map { (21, $0.id, nil) } + [(22, keyed.id, "pk"), (23, own[2]!.id, nil)]
            let render: @Sendable (PaymentReceipt) throws -> StoredResponse = { receipt in
                StoredResponse(status: 201, body: Array("{\"id\":\(receipt.payment.id),\"balance\":\(receipt.balance)}".utf8))
            }
            trips.reset()
            let (outcomes, _) = await race(payments.count) { index in
                let payment = payments[index]
                return try await store.pay(userId: payment.user, reservationId: payment.reservation, now: now, idempotency: payment.key.map {
                    IdempotentCompletion(userId: payment.user, key: $0, claimedAt: now, render: render)
                })
            }
            #expect(trips.value < payments.count / 2, "\(trips.value) round trips for \(payments.count) payments")
            expectOnlyDomainErrors(outcomes)
            for index in 1..<17 {
                #expect(outcomes[index].value?.balance == 0, "user \(index + 1): \(outcomes[index])")
                #expect(outcomes[index].value?.payment.reservationId == payments[index].reservation)
            }
            for index in 17..<20 {
                #expect(outcomes[index].domainError == .insufficientPoints(balance: 50, price: 100), "user \(index + 1): \(outcomes[index])")
            }
            // User 1 paid once: one of its two racers, the other told it was paid already.
            let userOne = [outcomes[0], outcomes[20]]
            #expect(userOne.filter { $0.value?.balance == 0 }.count == 1, "\(userOne)")
            #expect(userOne.filter { $0.domainError == .reservationAlreadyPaid }.count == 1, "\(userOne)")
            let tripleOutcomes = outcomes[21...23]
            #expect(tripleOutcomes.filter { $0.value != nil }.count == 2)
            #expect(tripleOutcomes.filter { $0.domainError == .insufficientPoints(balance: 50, price: 100) }.count == 1)
            #expect(try await store.balance(userId: 21) == 50)
            let receipt = try #require(outcomes[24].value)
            #expect(receipt.balance == 0)
            let replay = try await store.claim(userId: 22, key: "pk", fingerprint: "f", now: now, leaseMilliseconds: 10_000,
                                               retentionMilliseconds: 86_400_000)
            #expect(replay == .replay(StoredResponse(status: 201, body: Array("{\"id\":\(receipt.payment.id),\"balance\":0}".utf8))))
            #expect(outcomes[25].domainError == .reservationNotFound)
            // What was written is what was answered: one PAYMENT entry per paid payment, seats sold.
            for user in Int64(1)...22 {
                let history = try await store.history(userId: user)
                let paid = user == 21 ? 2 : (user <= 17 || user == 22 ? 1 : 0)
                #expect(history.filter { $0.type == .payment }.count == paid, "user \(user): \(history)")
            }
            let seats = try #require(try await store.seatMap(scheduleId: schedule.id, now: now))
            #expect(seats.filter { $0.status == .sold }.count == 17 + 2 + 1)
        }
    }

    @Test("charges released together share calls; first charges, one wallet charged many times, and a refusal")
    func chargesAreBatched() async throws {
        try await withCountedStore(options: PostgresStoreOptions(payBatchSize: 64, payBatchConcurrency: 1)) { store, trips, _ in
            let now = Self.now
            let rules = BookingRules(maxCharge: BookingRules.maxBalance)
            // User 100 is 50 points short of the cap: of its two charges of 40 only one fits.
            _ = try await store.charge(userId: 100, amount: BookingRules.maxBalance - 50, now: now, rules: rules, idempotency: nil)
            // Racers 0...29: users 1...30's first charge (30 points each); 30...39: user 31 ten
            // times 7 points; 40, 41: user 100's two; 42: user 32 with an Idempotency-Key.
            let charges: [(user: Int64, amount: Int64, key: String?)] = (Int64(1)...30).map { ($0, 30, nil) }
                + (0..<10).map { _ in (31, 7, nil) } + [(100, 40, nil), (100, 40, nil), (32, 5, "ck")]
            let claim = try await store.claim(userId: 32, key: "ck", fingerprint: "f", now: now, leaseMilliseconds: 10_000,
                                              retentionMilliseconds: 86_400_000)
            #expect(claim == .proceed)
            trips.reset()
            let (outcomes, _) = await race(charges.count) { index in
                let charge = charges[index]
                return try await store.charge(userId: charge.user, amount: charge.amount, now: now, rules: rules, idempotency: charge.key.map {
                    IdempotentCompletion(userId: charge.user, key: $0, claimedAt: now, render: { StoredResponse(status: 200, body: Array("{\"balance\":\($0)}".utf8)) })
                })
            }
            #expect(trips.value < charges.count / 2, "\(trips.value) round trips for \(charges.count) charges")
            expectOnlyDomainErrors(outcomes)
            for index in 0..<30 { #expect(outcomes[index].value == 30, "user \(index + 1): \(outcomes[index])") }
            // User 31's balances after are 7, 14, ... 70, one each, in some order.
            let balancesAfter: Set<Int64> = Set(outcomes[30..<40].compactMap(\.value))
            let expectedBalances: Set<Int64> = Set((Int64(1)...10).map { $0 * 7 })
            #expect(balancesAfter == expectedBalances)
            let capped = outcomes[40...41]
            #expect(capped.filter { $0.value == BookingRules.maxBalance - 10 }.count == 1, "\(capped)")
            #expect(capped.filter { if case .invalidAmount = $0.domainError { true } else { false } }.count == 1, "\(capped)")
            #expect(outcomes[42].value == 5)
            let replay = try await store.claim(userId: 32, key: "ck", fingerprint: "f", now: now, leaseMilliseconds: 10_000,
                                               retentionMilliseconds: 86_400_000)
            #expect(replay == .replay(StoredResponse(status: 200, body: Array("{\"balance\":5}".utf8))))
            #expect(try await store.balance(userId: 31) == 70)
            #expect(try await store.history(userId: 31).count == 10)
            #expect(try await store.history(userId: 100).count == 2)
        }
    }

    @Test("the purchase's calls are prepared: nothing parsed on the round trip of a hold, charge, payment, token claim, end or cache bump")
    func purchaseCallsArePrepared() async throws {
        try await withCountedStore { store, trips, schedule in
            let now = Self.now
            func prepared<R>(_ what: String, _ body: () async throws -> R) async throws -> R {
                trips.reset()
                let result = try await body()
                #expect(trips.value == 1, "\(what): \(trips.value) round trips")
                #expect(trips.unprepared == 0, "\(what): \(trips.unprepared) round trips parsed their statement")
                return result
            }
            let hold = { (user: Int64, seat: Int) in
                HoldRequest(userId: user, scheduleId: schedule.id, seatNumber: seat, now: now, rules: Self.rules)
            }
            let held = try await prepared("hold") { try await store.hold(hold(1, 1)) }
            trips.reset()
            await #expect(throws: DomainError.seatUnavailable) { _ = try await store.hold(hold(2, 1)) }
            #expect(trips.unprepared == 0, "refused hold: \(trips.unprepared) round trips parsed their statement")
            _ = try await prepared("charge") { try await store.charge(userId: 1, amount: 500, now: now, rules: Self.rules, idempotency: nil) }
            let read = try await prepared("reservation read") { try await store.reservation(id: held.id, userId: 1) }
            #expect(read?.id == held.id)
            let receipt = try await prepared("payment") { try await store.pay(userId: 1, reservationId: held.id, now: now, idempotency: nil) }
            #expect(receipt.balance == 400)

            let claims = PostgresTokenClaims(store: store)
            let claimed = try await prepared("token claim") {
                try await claims.claim(token: "7.t", owner: "o", until: now.adding(milliseconds: 60_000), now: now)
            }
            #expect(claimed)
            try await prepared("token claim release") { try await claims.release(token: "7.t", owner: "o") }

            let room = PostgresWaitingRoom(store: store, policy: QueuePolicy(maxActive: 5, activeSeconds: 600, idleSeconds: 60))
            let (ticket, _) = try await room.join(userId: 1, concertId: schedule.concertId, now: now)
            let ended = try await prepared("queue end") { try await room.end(token: ticket.token, now: now) }
            #expect(ended)

            let generations = PostgresCacheGenerations(store: store)
            try await prepared("cache generation bump") { try await generations.bump(namespace: "schedules:\(schedule.concertId)") }
        }
    }

    @Test("hold, refused hold, cancel, charge, claim, payment, refund and a cancelled date: one round trip each")
    func oneRoundTripEach() async throws {
        try await withCountedStore { store, trips, schedule in
        let now = Self.now
        let rules = Self.rules

        func counted<R>(_ what: String, _ body: () async throws -> R) async throws -> R {
            trips.reset()
            let result = try await body()
            #expect(trips.value == 1, "\(what): \(trips.value) round trips")
            // The first call of a prepared statement on a connection also prepares it, once.
            #expect(trips.preparations <= 1, "\(what): \(trips.preparations) preparations")
            return result
        }
        func countedRefusal(_ what: String, _ error: DomainError, _ body: () async throws -> Void) async {
            trips.reset()
            await #expect(throws: error) { try await body() }
            #expect(trips.value == 1, "\(what): \(trips.value) round trips")
            #expect(trips.preparations <= 1, "\(what): \(trips.preparations) preparations")
        }
        let hold = { (user: Int64, seat: Int) in HoldRequest(userId: user, scheduleId: schedule.id, seatNumber: seat, now: now, rules: rules) }

        let held = try await counted("hold") { try await store.hold(hold(1, 1)) }
        await countedRefusal("hold of a taken seat", .seatUnavailable) { _ = try await store.hold(hold(2, 1)) }
        let toCancel = try await counted("hold") { try await store.hold(hold(1, 2)) }
        _ = try await counted("cancel") { try await store.cancel(reservationId: toCancel.id, userId: 1, now: now) }
        await countedRefusal("cancel of a cancelled hold", .reservationNotHeld) {
            _ = try await store.cancel(reservationId: toCancel.id, userId: 1, now: now)
        }
        await countedRefusal("payment without points", .insufficientPoints(balance: 0, price: 100)) {
            _ = try await store.pay(userId: 1, reservationId: held.id, now: now, idempotency: nil)
        }
        _ = try await counted("charge") { try await store.charge(userId: 1, amount: 500, now: now, rules: rules, idempotency: nil) }
        let claim = try await counted("first claim of a key") {
            try await store.claim(userId: 1, key: "k1", fingerprint: "f", now: now, leaseMilliseconds: 10_000, retentionMilliseconds: 86_400_000)
        }
        #expect(claim == .proceed)
        let receipt = try await counted("payment with a key") {
            try await store.pay(userId: 1, reservationId: held.id, now: now, idempotency: IdempotentCompletion(
                userId: 1, key: "k1", claimedAt: now, render: { receipt in
                    StoredResponse(status: 201, body: Array("{\"id\":\(receipt.payment.id),\"amount\":\(receipt.payment.amount),\"balance\":\(receipt.balance)}".utf8))
                }))
        }
        #expect(receipt.balance == 400 && receipt.payment.amount == 100)
        // The stored answer has the write's values in place of the markers.
        let replay = try await store.claim(userId: 1, key: "k1", fingerprint: "f", now: now, leaseMilliseconds: 10_000, retentionMilliseconds: 86_400_000)
        #expect(replay == .replay(StoredResponse(status: 201, body: Array("{\"id\":\(receipt.payment.id),\"amount\":100,\"balance\":400}".utf8))))

        _ = try await counted("first claim of a key") {
            try await store.claim(userId: 1, key: "k2", fingerprint: "g", now: now, leaseMilliseconds: 10_000, retentionMilliseconds: 86_400_000)
        }
        let balance = try await counted("charge with a key") {
            try await store.charge(userId: 1, amount: 50, now: now, rules: rules, idempotency: IdempotentCompletion(
                userId: 1, key: "k2", claimedAt: now, render: { StoredResponse(status: 200, body: Array("{\"balance\":\($0)}".utf8)) }))
        }
        #expect(balance == 450)

        // Refunds and cancelled dates (migration 6).
        _ = try await counted("claim of a refund's key") {
            try await store.claim(userId: 1, key: "k3", fingerprint: "r", now: now, leaseMilliseconds: 10_000, retentionMilliseconds: 86_400_000)
        }
        let refunded = try await counted("refund with a key") {
            // The schedule starts in a day: no cutoff, so that the refund is allowed.
            try await store.refund(userId: 1, paymentId: receipt.payment.id, now: now, rules: BookingRules(refundCutoffSeconds: 0), idempotency: IdempotentCompletion(
                userId: 1, key: "k3", claimedAt: now, render: { StoredResponse(status: 201, body: Array("{\"id\":\($0.entryId),\"balance\":\($0.balance)}".utf8)) }))
        }
        #expect(refunded.balance == 550)
        await countedRefusal("second refund", .paymentAlreadyRefunded) {
            _ = try await store.refund(userId: 1, paymentId: receipt.payment.id, now: now, rules: BookingRules(refundCutoffSeconds: 0), idempotency: nil)
        }
        let again = try await counted("hold") { try await store.hold(hold(1, 1)) }
        _ = try await counted("payment") { try await store.pay(userId: 1, reservationId: again.id, now: now, idempotency: nil) }
        _ = try await counted("hold") { try await store.hold(hold(2, 3)) }
        let cancellation = try await counted("cancel of a date") { try await store.cancelSchedule(id: schedule.id, now: now) }
        #expect(cancellation.refunded == 1 && cancellation.released == 1)
        _ = try await counted("repeated cancel of a date") { try await store.cancelSchedule(id: schedule.id, now: now) }
        }
    }
}

/// One hold a racing task asks for.
private struct Ask: Sendable {
    var user: Int64
    var seat: Int
}

private enum HoldAnswer: Sendable {
    case held(Reservation)
    case refused(DomainError?, String)
}
