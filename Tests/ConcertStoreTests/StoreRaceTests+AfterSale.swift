import ConcertDomain
import ConcertStore
import ConcertTestSupport
import Testing

/// Races of refunds and cancelled dates, on two store instances sharing one database.
extension StoreRaceTests {
    @Test("20 concurrent refunds of one payment: exactly one, the points back once", arguments: Engine.available)
    func concurrentRefundsOfOnePayment(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            let (_, schedule) = try await makeOpenSchedule(stores[0], price: 30_000)
            let hold = try await stores[0].hold(holdRequest(user: 5, schedule: schedule, seat: 3))
            _ = try await stores[0].charge(userId: 5, amount: 100_000, now: now, rules: rules, idempotency: nil)
            let paid = try await stores[0].pay(userId: 5, reservationId: hold.id, now: now, idempotency: nil)
            let (outcomes, elapsed) = await race(20) { index in
                try await stores[index % 2].refund(userId: 5, paymentId: paid.payment.id, now: at(minute), rules: rules, idempotency: nil)
            }
            report("refunds of one payment", engine, 20, elapsed)
            #expect(outcomes.compactMap(\.value).count == 1)
            #expect(outcomes.filter { $0.domainError == .paymentAlreadyRefunded }.count == 19)
            expectOnlyDomainErrors(outcomes)
            #expect(try await stores[1].balance(userId: 5) == 100_000)
            let history = try await stores[1].history(userId: 5)
            #expect(history.map(\.amount) == [30_000, -30_000, 100_000])
            #expect(history.reduce(0) { $0 + $1.amount } == 100_000)
            expectConsistentChain(history)
            try await expectNoBreaches(stores[0])
        }
    }

    @Test("retention sweeps on several instances at once: every finished event deleted once, no errors", arguments: Engine.available)
    func concurrentRetentionSweeps(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            let (_, schedule) = try await makeOpenSchedule(stores[0], seats: 200)
            _ = try await stores[0].createWebhook(url: "https://a.example/", events: ["reservation.held"], secret: "whsec_a", now: now)
            for seat in 1...200 {
                _ = try await stores[0].hold(holdRequest(user: Int64(seat), schedule: schedule, seat: seat))
            }
            #expect(try await stores[0].dispatchWebhookEvents(now: now, limit: 1000) == 200)
            for delivery in try await stores[0].claimWebhookDeliveries(now: now, leaseMilliseconds: 60_000, limit: 1000) {
                try await stores[0].recordWebhookAttempt(delivery, outcome: .delivered(status: 200), now: now)
            }
            let (outcomes, elapsed) = await race(8) { index in
                var total = 0
                while true {
                    let pruned = try await stores[index % 2].pruneWebhookEvents(before: at(day), limit: 7)
                    total += pruned
                    if pruned == 0 { return total }
                }
            }
            report("retention sweeps", engine, 8, elapsed)
            expectOnlyDomainErrors(outcomes)
            #expect(outcomes.compactMap(\.value).reduce(0, +) == 200, "each event deleted by exactly one sweep")
            #expect(try await stores[1].recentWebhookDeliveries(limit: 10).isEmpty)
            #expect(try await stores[1].pruneWebhookEvents(before: at(day), limit: 7) == 0)
        }
    }

    @Test("two cancels of one date race refunds, holds and payments on it: every seat refunded once",
          arguments: Engine.available)
    func racingCancelsOfOneSchedule(engine: Engine) async throws {
        try await withStores(engine, count: 2) { stores in
            // Rounds with the cancels starting a little later each time, so that in some the
            // refunds, payments and holds get there first and in others the cancel does.
            for round in 0..<5 {
                try await cancelRaceRound(round, engine: engine, stores: stores)
            }
        }
    }

    private func cancelRaceRound(_ round: Int, engine: Engine, stores: [any ConcertStore]) async throws {
        let (concert, schedule) = try await makeOpenSchedule(stores[0], price: 1000, seats: 40)
        let base = Int64(round * 100)
        // Users base+1...base+10 paid for seats 1...10; base+11...base+20 hold seats 11...20 with the points to pay.
        var payments: [PaymentReceipt] = []
        var holds: [Reservation] = []
        for seat in 1...20 {
            let user = base + Int64(seat)
            _ = try await stores[0].charge(userId: user, amount: 1000, now: now, rules: rules, idempotency: nil)
            let hold = try await stores[0].hold(holdRequest(user: user, schedule: schedule, seat: seat))
            if seat <= 10 {
                payments.append(try await stores[0].pay(userId: user, reservationId: hold.id, now: now, idempotency: nil))
            } else {
                holds.append(hold)
            }
        }
        let paidSeats = payments, heldSeats = holds
        let cancelDelay = Duration.milliseconds(round * 3)
        // Racers 0-9 refund the paid seats themselves; 10-19 pay their holds; 20-29 (users
        // base+21...base+30) hold new seats 21...30; 30-31 cancel the date.
        enum Act: Sendable, Equatable { case cancel(ScheduleCancellation), other }
        let (outcomes, elapsed) = await race(32) { index -> Act in
            let store = stores[index % 2]
            switch index {
            case 0...9:
                let payment = paidSeats[index].payment
                _ = try await store.refund(userId: payment.userId, paymentId: payment.id, now: at(minute), rules: rules, idempotency: nil)
            case 10...19:
                let hold = heldSeats[index - 10]
                _ = try await store.pay(userId: hold.userId, reservationId: hold.id, now: at(minute), idempotency: nil)
            case 20...29:
                _ = try await store.hold(holdRequest(user: base + Int64(index + 1), schedule: schedule, seat: index + 1, at: at(minute)))
            default:
                try await Task.sleep(for: cancelDelay)
                return .cancel(try await store.cancelSchedule(id: schedule.id, now: at(minute)))
            }
            return .other
        }
        report("cancels of one date against refunds, payments and holds", engine, 32, elapsed)
        expectOnlyDomainErrors(outcomes)
        let cancels = outcomes[30...].compactMap { outcome -> ScheduleCancellation? in
            if case .cancel(let cancellation)? = outcome.value { cancellation } else { nil }
        }
        #expect(cancels.count == 2)
        #expect(cancels.filter { $0.refunded == 0 && $0.released == 0 }.count >= 1, "\(cancels)")
        let refundedBySelf = outcomes[0...9].filter { $0.value != nil }.count
        #expect(outcomes[0...9].allSatisfy { $0.value != nil || $0.domainError == .paymentAlreadyRefunded })
        let paidInRace = outcomes[10...19].filter { $0.value != nil }.count
        #expect(outcomes[10...19].allSatisfy { $0.value != nil || $0.domainError == .reservationNotHeld })
        let heldInRace = outcomes[20...29].filter { $0.value != nil }.count
        #expect(outcomes[20...29].allSatisfy { $0.value != nil || $0.domainError == .scheduleNotFound })
        print("race cancels [\(engine.rawValue)] round \(round): cancels \(cancels.map { ($0.refunded, $0.released) }), "
              + "self-refunds \(refundedBySelf), paid in race \(paidInRace), held in race \(heldInRace)")
        // Every seat paid before or during the race is refunded exactly once, by a cancel or by its holder.
        #expect(cancels.reduce(0) { $0 + $1.refunded } + refundedBySelf == 10 + paidInRace)
        // Every hold live when the cancel ran was released by it.
        #expect(cancels.reduce(0) { $0 + $1.released } == (10 - paidInRace) + heldInRace)
        for user in (base + 1)...(base + 30) {
            let history = try await stores[1].history(userId: user)
            let balance = try await stores[1].balance(userId: user)
            #expect(balance == (user <= base + 20 ? 1000 : 0), "user \(user): \(history.map(\.amount))")
            #expect(history.reduce(0) { $0 + $1.amount } == balance)
            #expect(history.filter { $0.type == .refund }.count == history.filter { $0.type == .payment }.count)
            for reservation in try await stores[0].reservations(userId: user) {
                #expect(reservation.status(at: at(minute)) == .cancelled, "user \(user) reservation \(reservation.id)")
            }
        }
        #expect(try await stores[0].seatMap(scheduleId: schedule.id, now: at(minute)) == nil)
        #expect(try await stores[1].seatCounts(concertId: concert.id, now: at(minute)) == SeatCounts(total: 0, held: 0, sold: 0))
        try await expectNoBreaches(stores[1])
    }
}
