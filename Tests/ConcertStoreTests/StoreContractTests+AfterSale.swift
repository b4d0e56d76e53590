import ConcertDomain
import ConcertStore
import ConcertTestSupport
import Testing

/// The storage contract, continued: refunds and cancelled dates.
extension StoreContractTests {
    /// A user with `points` charged who paid for `seat` of `schedule`.
    fileprivate func paidSeat(_ store: any ConcertStore, user: Int64, schedule: Schedule, seat: Int,
                              points: Int64 = 100_000, at time: Timestamp = now) async throws -> PaymentReceipt {
        if points > 0 { _ = try await store.charge(userId: user, amount: points, now: time, rules: rules, idempotency: nil) }
        let hold = try await store.hold(holdRequest(user: user, schedule: schedule, seat: seat, at: time))
        return try await store.pay(userId: user, reservationId: hold.id, now: time, idempotency: nil)
    }

    @Test("refund: points back, payment REFUNDED, reservation CANCELLED, seat free, one REFUND entry", arguments: Engine.available)
    func refundHappyPath(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (concert, schedule) = try await makeOpenSchedule(store, price: 30_000)
            let paid = try await paidSeat(store, user: 3, schedule: schedule, seat: 5, points: 50_000)
            #expect(paid.payment.status == .paid && paid.payment.refundedAt == nil)
            #expect(try await store.payment(id: paid.payment.id, userId: 3) == paid.payment)

            let receipt = try await store.refund(userId: 3, paymentId: paid.payment.id, now: at(minute), rules: rules, idempotency: nil)
            #expect(receipt.paymentId == paid.payment.id && receipt.reservationId == paid.payment.reservationId)
            #expect(receipt.amount == 30_000 && receipt.balance == 50_000 && receipt.refundedAt == at(minute))
            #expect(receipt.scheduleId == schedule.id && receipt.concertId == concert.id)

            let payment = try #require(try await store.payment(id: paid.payment.id, userId: 3))
            #expect(payment.status == .refunded && payment.refundedAt == at(minute) && payment.paidAt == now)
            #expect(try await store.reservation(id: paid.payment.reservationId, userId: 3)?.storedStatus == .cancelled)
            #expect(try await store.seatMap(scheduleId: schedule.id, now: at(minute))?[4].status == .available)
            #expect(try await store.futureSchedules(concertId: concert.id, now: at(minute)).first?.availableSeats == 50)
            let history = try await store.history(userId: 3)
            #expect(history.map(\.type) == [.refund, .payment, .charge])
            #expect(history[0].amount == 30_000 && history[0].balanceAfter == 50_000 && history[0].id == receipt.entryId)
            #expect(try await store.balance(userId: 3) == 50_000)
            expectConsistentChain(history)
            // The seat can be held (and paid) again by someone else.
            _ = try await paidSeat(store, user: 4, schedule: schedule, seat: 5, at: at(2 * minute))
            try await expectNoBreaches(store)
        }
    }

    @Test("reservations name their payment once paid, also after its refund; never-paid ones name none", arguments: Engine.available)
    func reservationsNameTheirPayment(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 1000)
            let held = try await store.hold(holdRequest(user: 3, schedule: schedule, seat: 1))
            #expect(held.paymentId == nil)
            #expect(try await store.reservation(id: held.id, userId: 3)?.paymentId == nil)
            let cancelled = try await store.hold(holdRequest(user: 3, schedule: schedule, seat: 2))
            #expect(try await store.cancel(reservationId: cancelled.id, userId: 3, now: now).paymentId == nil)
            let paid = try await paidSeat(store, user: 3, schedule: schedule, seat: 3, points: 5000)
            let refunded = try await paidSeat(store, user: 3, schedule: schedule, seat: 4, points: 0)
            _ = try await store.refund(userId: 3, paymentId: refunded.payment.id, now: now, rules: rules, idempotency: nil)

            let confirmed = try #require(try await store.reservation(id: paid.payment.reservationId, userId: 3))
            #expect(confirmed.storedStatus == .confirmed && confirmed.paymentId == paid.payment.id)
            let afterRefund = try #require(try await store.reservation(id: refunded.payment.reservationId, userId: 3))
            #expect(afterRefund.storedStatus == .cancelled && afterRefund.paymentId == refunded.payment.id)
            let listed = try await store.reservations(userId: 3)
            #expect(listed.map(\.id) == [refunded.payment.reservationId, paid.payment.reservationId, cancelled.id, held.id])
            #expect(listed.map(\.paymentId) == [refunded.payment.id, paid.payment.id, nil, nil])
            #expect(try await store.reservations(userId: 4).isEmpty, "another user's payments name nothing of theirs")
        }
    }

    @Test("refund: a second one, another user's, unknown; nothing changes", arguments: Engine.available)
    func refundRejections(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 1000)
            let paid = try await paidSeat(store, user: 3, schedule: schedule, seat: 1, points: 1000)
            await #expect(throws: DomainError.paymentNotFound) {
                try await store.refund(userId: 4, paymentId: paid.payment.id, now: now, rules: rules, idempotency: nil)
            }
            await #expect(throws: DomainError.paymentNotFound) {
                try await store.refund(userId: 3, paymentId: paid.payment.id + 1000, now: now, rules: rules, idempotency: nil)
            }
            #expect(try await store.payment(id: paid.payment.id, userId: 3)?.status == .paid)
            _ = try await store.refund(userId: 3, paymentId: paid.payment.id, now: now, rules: rules, idempotency: nil)
            await #expect(throws: DomainError.paymentAlreadyRefunded) {
                try await store.refund(userId: 3, paymentId: paid.payment.id, now: at(1), rules: rules, idempotency: nil)
            }
            #expect(try await store.balance(userId: 3) == 1000)
            #expect(try await store.history(userId: 3).count == 3)
            #expect(try await store.payment(id: paid.payment.id, userId: 3)?.refundedAt == now)
            try await expectNoBreaches(store)
        }
    }

    @Test("refund cutoff: allowed until the cutoff before the start, refused from it on", arguments: Engine.available)
    func refundCutoff(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 1000) // starts at now + 10 days
            let paid = try await paidSeat(store, user: 3, schedule: schedule, seat: 1, points: 1000)
            let cutoffRules = BookingRules(refundCutoffSeconds: 2 * 86_400)
            let deadline = RefundPolicy.deadline(startsAt: schedule.startsAt, rules: cutoffRules)
            #expect(deadline == at(8 * day))
            await #expect(throws: DomainError.refundNotAllowed) {
                try await store.refund(userId: 3, paymentId: paid.payment.id, now: deadline, rules: cutoffRules, idempotency: nil)
            }
            await #expect(throws: DomainError.refundNotAllowed) {
                try await store.refund(userId: 3, paymentId: paid.payment.id, now: at(11 * day), rules: cutoffRules, idempotency: nil)
            }
            #expect(try await store.payment(id: paid.payment.id, userId: 3)?.status == .paid)
            #expect(try await store.balance(userId: 3) == 0)
            let receipt = try await store.refund(userId: 3, paymentId: paid.payment.id, now: deadline.adding(milliseconds: -1),
                                                 rules: cutoffRules, idempotency: nil)
            #expect(receipt.balance == 1000)
        }
    }

    @Test("refund is not bound by the balance cap of charges", arguments: Engine.available)
    func refundPastTheChargeCap(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 5_000_000)
            let paid = try await paidSeat(store, user: 3, schedule: schedule, seat: 1, points: 5_000_000)
            var balance: Int64 = 0
            while balance < BookingRules.maxBalance {
                balance = try await store.charge(userId: 3, amount: min(rules.maxCharge, BookingRules.maxBalance - balance),
                                                 now: now, rules: rules, idempotency: nil)
            }
            let receipt = try await store.refund(userId: 3, paymentId: paid.payment.id, now: now, rules: rules, idempotency: nil)
            #expect(receipt.balance == BookingRules.maxBalance + 5_000_000)
            #expect(try await store.balance(userId: 3) == BookingRules.maxBalance + 5_000_000)
            // Charges still stop at the cap.
            await #expect(throws: DomainError.invalidAmount("the balance would pass \(BookingRules.maxBalance)")) {
                try await store.charge(userId: 3, amount: 1, now: now, rules: rules, idempotency: nil)
            }
            try await expectNoBreaches(store)
        }
    }

    @Test("refund with a key stores its answer in the same write, with the write's values", arguments: Engine.available)
    func refundStoresItsAnswer(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 700)
            let paid = try await paidSeat(store, user: 3, schedule: schedule, seat: 2, points: 1000)
            let claim = try await store.claim(userId: 3, key: "r1", fingerprint: "f", now: now,
                                              leaseMilliseconds: 10_000, retentionMilliseconds: 86_400_000)
            #expect(claim == .proceed)
            let render: @Sendable (RefundReceipt) throws -> StoredResponse = { receipt in
                StoredResponse(status: 201, body: Array("""
                    {"id":\(receipt.entryId),"paymentId":\(receipt.paymentId),"reservationId":\(receipt.reservationId),\
                    "amount":\(receipt.amount),"balance":\(receipt.balance)}
                    """.utf8))
            }
            let receipt = try await store.refund(userId: 3, paymentId: paid.payment.id, now: now, rules: rules,
                                                 idempotency: IdempotentCompletion(userId: 3, key: "r1", claimedAt: now, render: render))
            let replay = try await store.claim(userId: 3, key: "r1", fingerprint: "f", now: at(1),
                                               leaseMilliseconds: 10_000, retentionMilliseconds: 86_400_000)
            #expect(replay == .replay(try render(receipt)))
            // A completion whose claim is not the key's rolls the refund back.
            _ = try await store.claim(userId: 3, key: "r2", fingerprint: "g", now: now,
                                      leaseMilliseconds: 10_000, retentionMilliseconds: 86_400_000)
            let other = try await paidSeat(store, user: 3, schedule: schedule, seat: 3, points: 700)
            await #expect(throws: DomainError.idempotencyKeyInUse) {
                try await store.refund(userId: 3, paymentId: other.payment.id, now: now, rules: rules,
                                       idempotency: IdempotentCompletion(userId: 3, key: "r2", claimedAt: at(-5), render: render))
            }
            #expect(try await store.payment(id: other.payment.id, userId: 3)?.status == .paid)
            #expect(try await store.balance(userId: 3) == 1000)
        }
    }

    @Test("cancel a schedule: refunds every paid seat, releases live holds, hides the date; again 0/0", arguments: Engine.available)
    func cancelSchedule(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (concert, schedule) = try await makeOpenSchedule(store, price: 2000, seats: 10)
            let other = try await store.createSchedule(NewSchedule(concertId: concert.id, startsAt: at(11 * day), price: 10, seatCount: 5))
            let a1 = try await paidSeat(store, user: 3, schedule: schedule, seat: 1, points: 5000)
            let a2 = try await paidSeat(store, user: 3, schedule: schedule, seat: 2, points: 0)
            let b = try await paidSeat(store, user: 4, schedule: schedule, seat: 3, points: 2000)
            _ = try await store.refund(userId: 4, paymentId: b.payment.id, now: now, rules: rules, idempotency: nil)
            let live = try await store.hold(holdRequest(user: 5, schedule: schedule, seat: 4))
            let runOut = try await store.hold(holdRequest(user: 6, schedule: schedule, seat: 5, at: at(-10 * minute)))
            let elsewhere = try await paidSeat(store, user: 7, schedule: other, seat: 1, points: 10)
            // A hold on the cancelled date that is being paid for: charged already.
            _ = try await store.charge(userId: 5, amount: 2000, now: now, rules: rules, idempotency: nil)

            // A cancelled date refunds whatever the cutoff (the store is not even given one).
            let when = at(minute)
            let cancellation = try await store.cancelSchedule(id: schedule.id, now: when)
            #expect(cancellation == ScheduleCancellation(scheduleId: schedule.id, concertId: concert.id, refunded: 2, released: 1))

            for paid in [a1, a2] {
                let payment = try await store.payment(id: paid.payment.id, userId: 3)
                #expect(payment?.status == .refunded && payment?.refundedAt == when)
                #expect(try await store.reservation(id: paid.payment.reservationId, userId: 3)?.storedStatus == .cancelled)
            }
            #expect(try await store.balance(userId: 3) == 5000)
            #expect(try await store.history(userId: 3).filter { $0.type == .refund }.map(\.amount) == [2000, 2000])
            #expect(try await store.balance(userId: 4) == 2000)
            #expect(try await store.history(userId: 4).filter { $0.type == .refund }.count == 1)
            #expect(try await store.reservation(id: live.id, userId: 5)?.storedStatus == .cancelled)
            #expect(try await store.reservation(id: runOut.id, userId: 6)?.status(at: when) == .expired)
            #expect(try await store.payment(id: elsewhere.payment.id, userId: 7)?.status == .paid)

            // The date is gone from every read, and refuses holds and payments.
            #expect(try await store.schedule(id: schedule.id) == nil)
            #expect(try await store.seatMap(scheduleId: schedule.id, now: now) == nil)
            #expect(try await store.futureSchedules(concertId: concert.id, now: now).map(\.schedule.id) == [other.id])
            #expect(try await store.seatCounts(concertId: concert.id, now: now) == SeatCounts(total: 5, held: 0, sold: 1))
            await #expect(throws: DomainError.scheduleNotFound) {
                try await store.hold(holdRequest(user: 8, schedule: schedule, seat: 9))
            }
            await #expect(throws: DomainError.reservationNotHeld) {
                try await store.pay(userId: 5, reservationId: live.id, now: now, idempotency: nil)
            }
            #expect(try await store.balance(userId: 5) == 2000)

            // Again: nothing more, however often.
            #expect(try await store.cancelSchedule(id: schedule.id, now: when.adding(milliseconds: 1))
                    == ScheduleCancellation(scheduleId: schedule.id, concertId: concert.id, refunded: 0, released: 0))
            #expect(try await store.balance(userId: 3) == 5000)
            await #expect(throws: DomainError.scheduleNotFound) {
                try await store.cancelSchedule(id: schedule.id + 1000, now: now)
            }
            try await expectNoBreaches(store)
        }
    }

    @Test("a concert whose only future schedule is cancelled leaves the reservable list", arguments: Engine.available)
    func cancelledScheduleLeavesConcertList(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (concert, schedule) = try await makeOpenSchedule(store)
            #expect(try await store.reservableConcerts(now: now, after: nil, limit: 10).concerts.map(\.id) == [concert.id])
            #expect(try await store.hasFutureSchedule(concertId: concert.id, now: now))
            _ = try await store.cancelSchedule(id: schedule.id, now: now)
            let page = try await store.reservableConcerts(now: now, after: nil, limit: 10)
            #expect(page.concerts.isEmpty)
            #expect(page.changesAt != schedule.startsAt)
            #expect(try await store.hasFutureSchedule(concertId: concert.id, now: now) == false)
        }
    }
}

/// Every invariant of `Invariant.all` holds (what `concertd verify` checks).
func expectNoBreaches(_ store: any ConcertStore, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    for (invariant, breaches) in try await store.countInvariantBreaches() {
        #expect(breaches == 0, "\(invariant.name)", sourceLocation: sourceLocation)
    }
}
