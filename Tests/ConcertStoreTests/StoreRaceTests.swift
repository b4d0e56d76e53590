import ConcertDomain
import ConcertPostgres
import ConcertStore
import ConcertTestSupport
import Testing

/// Real races against the real databases: the racers are released together by a start gate and
/// spread over two store instances sharing one database, as two service processes would be.
/// Serialized so that one race's load does not blur another's timing.
@Suite("Storage races", .serialized)
struct StoreRaceTests {
    struct SeatRace: Sendable, CustomTestStringConvertible {
        var engine: Engine
        var racers: Int
        var testDescription: String { "\(engine.rawValue) × \(racers)" }
    }

    static let seatRaces: [SeatRace] = Engine.available.flatMap { engine in
        engine == .postgres ? [SeatRace(engine: engine, racers: 200), SeatRace(engine: engine, racers: 1000)]
                            : [SeatRace(engine: engine, racers: 200)]
    }

    @Test("many users hold one seat at once: exactly one wins", arguments: seatRaces)
    func holdsOnOneSeat(race seatRace: SeatRace) async throws {
        let n = seatRace.racers
        try await withStores(seatRace.engine, count: 2) { stores in
            let (_, schedule) = try await makeOpenSchedule(stores[0], seats: 10)
            let (outcomes, elapsed) = await race(n) { index in
                try await stores[index % 2].hold(holdRequest(user: Int64(1000 + index), schedule: schedule, seat: 1))
            }
            report("holds on one seat", seatRace.engine, n, elapsed)
            let winners = outcomes.compactMap(\.value)
            #expect(winners.count == 1)
            #expect(outcomes.filter { $0.domainError == .seatUnavailable }.count == n - 1)
            expectOnlyDomainErrors(outcomes)

            let winner = try #require(winners.first)
            #expect(try await stores[1].reservation(id: winner.id, userId: winner.userId) == winner)
            let map = try #require(try await stores[1].seatMap(scheduleId: schedule.id, now: now))
            #expect(map.map(\.status) == [.held] + Array(repeating: .available, count: 9))
            #expect(try await stores[0].futureSchedules(concertId: schedule.concertId, now: now).first?.availableSeats == 9)
        }
    }

    @Test("one user races 20 holds on different seats with a limit of 4: exactly 4", arguments: Engine.available)
    func holdLimitUnderRace(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            let (_, schedule) = try await makeOpenSchedule(stores[0])
            let (outcomes, elapsed) = await race(20) { index in
                try await stores[index % 2].hold(holdRequest(user: 42, schedule: schedule, seat: index + 1))
            }
            report("one user's holds, limit 4", engine, 20, elapsed)
            #expect(outcomes.compactMap(\.value).count == 4)
            #expect(outcomes.filter { $0.domainError == .holdLimitReached(limit: 4) }.count == 16)
            expectOnlyDomainErrors(outcomes)
            #expect(try await stores[0].reservations(userId: 42).count == 4)
            let held = try await stores[1].seatMap(scheduleId: schedule.id, now: now)?.filter { $0.status == .held }.count
            #expect(held == 4)
        }
    }

    @Test("100 concurrent charges: all apply, each entry continues the one before", arguments: Engine.available)
    func concurrentCharges(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            let (outcomes, elapsed) = await race(100) { index in
                try await stores[index % 2].charge(userId: 7, amount: Int64(index + 1), now: now, rules: rules, idempotency: nil)
            }
            report("charges on one wallet", engine, 100, elapsed)
            #expect(outcomes.compactMap(\.value).count == 100)
            expectOnlyDomainErrors(outcomes)
            #expect(try await stores[0].balance(userId: 7) == 5050)
            let history = try await stores[1].history(userId: 7)
            #expect(history.count == 100)
            #expect(history.reduce(0) { $0 + $1.amount } == 5050)
            #expect(Set(history.map(\.amount)) == Set((1...100).map(Int64.init)))
            expectConsistentChain(history)
        }
    }

    @Test("20 concurrent payments of one reservation: exactly one, charged once", arguments: Engine.available)
    func concurrentPaymentsOfOneReservation(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            let (_, schedule) = try await makeOpenSchedule(stores[0], price: 30_000)
            let hold = try await stores[0].hold(holdRequest(user: 5, schedule: schedule, seat: 3))
            _ = try await stores[0].charge(userId: 5, amount: 1_000_000, now: now, rules: rules, idempotency: nil)
            let (outcomes, elapsed) = await race(20) { index in
                try await stores[index % 2].pay(userId: 5, reservationId: hold.id, now: at(minute), idempotency: nil)
            }
            report("payments of one reservation", engine, 20, elapsed)
            #expect(outcomes.compactMap(\.value).count == 1)
            #expect(outcomes.filter { $0.domainError == .reservationAlreadyPaid }.count == 19)
            expectOnlyDomainErrors(outcomes)
            #expect(try await stores[1].balance(userId: 5) == 970_000)
            let history = try await stores[1].history(userId: 5)
            #expect(history.map(\.amount) == [-30_000, 1_000_000])
        }
    }

    /// On PostgreSQL, payments that arrive together share a call (`concertd_pay_many`); two
    /// instances' batches that both pay for one user must not lock that user's rows in opposite
    /// orders. With one attempt per transaction a deadlock would reach the caller as 503.
    @Test("every reservation of six users paid from two instances at once: each paid once, no deadlock", arguments: Engine.available)
    func paymentsOfManyReservationsFromTwoInstances(engine: Engine) async throws {
        try await withStores(engine, count: 2, postgresOptions: PostgresStoreOptions(transactionAttempts: 1, payBatchConcurrency: 2)) { stores in
            let (_, schedule) = try await makeOpenSchedule(stores[0], price: 100)
            var reservations: [Reservation] = []
            for user in Int64(1)...6 {
                for seat in 1...4 { reservations.append(try await stores[0].hold(holdRequest(user: user, schedule: schedule, seat: Int(user - 1) * 4 + seat))) }
                _ = try await stores[0].charge(userId: user, amount: 400, now: now, rules: rules, idempotency: nil)
            }
            let all = reservations
            // Each reservation is paid through both instances: racers 0...23 pay them in order
            // through the first, racers 24...47 in the opposite order through the second (so the
            // two instances' batches meet each user's rows in opposite orders).
            let count = all.count
            let (outcomes, elapsed) = await race(count * 2) { index in
                let reservation = index < count ? all[index] : all[2 * count - 1 - index]
                return try await stores[index < count ? 0 : 1].pay(userId: reservation.userId, reservationId: reservation.id,
                                                                   now: now, idempotency: nil)
            }
            report("payments of 24 reservations from two instances", engine, count * 2, elapsed)
            expectOnlyDomainErrors(outcomes)
            for (index, reservation) in all.enumerated() {
                let pair = [outcomes[index], outcomes[2 * count - 1 - index]]
                #expect(pair.filter { $0.value?.payment.reservationId == reservation.id }.count == 1, "\(pair)")
                #expect(pair.filter { $0.domainError == .reservationAlreadyPaid }.count == 1, "\(pair)")
            }
            for user in Int64(1)...6 {
                #expect(try await stores[1].balance(userId: user) == 0)
                let history = try await stores[1].history(userId: user)
                #expect(history.filter { $0.type == .payment }.count == 4)
                expectConsistentChain(history)
            }
        }
    }

    /// As for payments: two instances' batches of charges (first charges among them, which create
    /// the user's row) must not wait on each other's rows in opposite orders.
    @Test("six new users charged five times each from two instances at once: every charge applies, no deadlock", arguments: Engine.available)
    func chargesOfNewUsersFromTwoInstances(engine: Engine) async throws {
        try await withStores(engine, count: 2, postgresOptions: PostgresStoreOptions(transactionAttempts: 1, payBatchConcurrency: 2)) { stores in
            let users = (Int64(1)...6).flatMap { Array(repeating: $0, count: 5) }
            let count = users.count
            // The first instance charges the users in order, the second in the opposite order.
            let (outcomes, elapsed) = await race(count * 2) { index in
                let user = index < count ? users[index] : users[2 * count - 1 - index]
                return try await stores[index < count ? 0 : 1].charge(userId: user, amount: 100, now: now, rules: rules, idempotency: nil)
            }
            report("charges of six new users from two instances", engine, count * 2, elapsed)
            expectOnlyDomainErrors(outcomes)
            #expect(outcomes.allSatisfy { $0.value != nil }, "\(outcomes.filter { $0.value == nil })")
            for user in Int64(1)...6 {
                #expect(try await stores[1].balance(userId: user) == 1000)
                let history = try await stores[0].history(userId: user)
                #expect(history.count == 10)
                expectConsistentChain(history)
            }
        }
    }

    @Test("a payment racing a new hold at the old hold's expiry: never both", arguments: Engine.available)
    func paymentRacingHoldAtExpiry(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            let (_, schedule) = try await makeOpenSchedule(stores[0], price: 100, seats: 50)
            var paymentsWon = 0, holdsWon = 0
            for round in 0..<20 {
                let payer = Int64(100 + round), newcomer = Int64(200 + round), seat = round + 1
                let hold = try await stores[0].hold(holdRequest(user: payer, schedule: schedule, seat: seat))
                _ = try await stores[0].charge(userId: payer, amount: 100, now: now, rules: rules, idempotency: nil)
                // The payment comes 1 ms before the hold runs out, the new hold at that instant.
                // The hold does more work before it touches the old reservation, so the payment
                // starts a little later in some rounds, to let either one get there first.
                let paymentDelay = Duration.milliseconds(round % 4 * 2)
                let (outcomes, _) = await race(2) { index -> Bool in
                    if index == 0 {
                        try await Task.sleep(for: paymentDelay)
                        _ = try await stores[0].pay(userId: payer, reservationId: hold.id,
                                                    now: hold.heldUntil.adding(milliseconds: -1), idempotency: nil)
                    } else {
                        _ = try await stores[1].hold(holdRequest(user: newcomer, schedule: schedule, seat: seat, at: hold.heldUntil))
                    }
                    return true
                }
                let paid = outcomes[0].value != nil, reheld = outcomes[1].value != nil
                #expect(paid != reheld, "round \(round): payment \(outcomes[0]), new hold \(outcomes[1])")
                let status = try await stores[1].seatMap(scheduleId: schedule.id, now: hold.heldUntil)?[seat - 1].status
                if paid {
                    paymentsWon += 1
                    #expect(outcomes[1].domainError == .seatUnavailable)
                    #expect(status == .sold)
                    #expect(try await stores[1].balance(userId: payer) == 0)
                } else if reheld {
                    holdsWon += 1
                    #expect(outcomes[0].domainError == .reservationExpired)
                    #expect(status == .held)
                    #expect(try await stores[1].balance(userId: payer) == 100)
                    #expect(try await stores[1].reservation(id: hold.id, userId: payer)?.storedStatus == .expired)
                }
            }
            print("race payment vs new hold [\(engine.rawValue)]: payment won \(paymentsWon), new hold won \(holdsWon) of 20")
        }
    }

    @Test("payments and charges on one wallet at once: the balance is the sum of the history", arguments: Engine.available)
    func paymentsAndChargesOnOneWallet(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            let (_, schedule) = try await makeOpenSchedule(stores[0], price: 1000)
            var holds: [Reservation] = []
            for seat in 1...4 { holds.append(try await stores[0].hold(holdRequest(user: 9, schedule: schedule, seat: seat))) }
            _ = try await stores[0].charge(userId: 9, amount: 2000, now: now, rules: rules, idempotency: nil)
            let reservations = holds
            // Racers 0-3 pay; 4-43 charge 100 each. Whether a payment finds enough points depends on
            // the order, so it may fail with insufficientPoints, and then must change nothing.
            let (outcomes, elapsed) = await race(44) { index -> Int64 in
                if index < 4 {
                    return try await stores[index % 2].pay(userId: 9, reservationId: reservations[index].id, now: now, idempotency: nil).balance
                }
                return try await stores[index % 2].charge(userId: 9, amount: 100, now: now, rules: rules, idempotency: nil)
            }
            report("payments and charges on one wallet", engine, 44, elapsed)
            let paid = outcomes[0..<4].filter { $0.value != nil }.count
            #expect(outcomes[4...].allSatisfy { $0.value != nil })
            #expect(outcomes[0..<4].allSatisfy {
                if $0.value != nil { return true }
                if case .insufficientPoints = $0.domainError { return true }
                return false
            }, "the payments' outcomes: \(outcomes[0..<4])")
            let balance = try await stores[1].balance(userId: 9)
            let history = try await stores[1].history(userId: 9)
            #expect(balance == 2000 + 40 * 100 - Int64(paid) * 1000)
            #expect(history.reduce(0) { $0 + $1.amount } == balance)
            #expect(history.count == 1 + 40 + paid)
            #expect(history.filter { $0.type == .payment }.count == paid)
            expectConsistentChain(history)
            let confirmed = try await stores[0].reservations(userId: 9).filter { $0.storedStatus == .confirmed }.count
            #expect(confirmed == paid)
        }
    }

    @Test("several instances migrating one new database at once all succeed", arguments: Engine.available)
    func concurrentMigrations(engine: Engine) async throws {
        try await withStores(engine, count: 4, migrated: false) { stores in
            let (outcomes, elapsed) = await race(4) { index in try await stores[index].migrate() }
            report("migrations of one new database", engine, 4, elapsed)
            expectOnlyDomainErrors(outcomes)
            #expect(outcomes.allSatisfy { $0.value != nil })
            #expect(try await stores[0].isEmpty())
            try await makeOpenSchedule(stores[3])
            #expect(try await stores[1].isEmpty() == false)
        }
    }

    @Test("concurrent first claims of one idempotency key: exactly one proceeds", arguments: Engine.available)
    func concurrentClaims(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            let (outcomes, elapsed) = await race(20) { index in
                try await stores[index % 2].claim(userId: 1, key: "same", fingerprint: "f", now: now,
                                                  leaseMilliseconds: 30_000, retentionMilliseconds: day)
            }
            report("claims of one key", engine, 20, elapsed)
            #expect(outcomes.filter { $0.value == .proceed }.count == 1)
            #expect(outcomes.filter { $0.value == .inUse }.count == 19)
        }
    }
}

/// Every racer either succeeded or met a domain rule: no SQL error, no unavailable store.
func expectOnlyDomainErrors<Value>(_ outcomes: [Outcome<Value>], sourceLocation: SourceLocation = #_sourceLocation) {
    for case .other(let description) in outcomes {
        Issue.record("unexpected error: \(description)", sourceLocation: sourceLocation)
    }
}

/// In the order they were written, each entry's balance is the previous one's plus its amount:
/// no write saw a stale balance.
func expectConsistentChain(_ newestFirst: [PointEntry], sourceLocation: SourceLocation = #_sourceLocation) {
    var balance: Int64 = 0
    for entry in newestFirst.reversed() {
        balance += entry.amount
        #expect(entry.balanceAfter == balance, "entry \(entry.id)", sourceLocation: sourceLocation)
        #expect(entry.balanceAfter >= 0, sourceLocation: sourceLocation)
    }
}
