import ConcertDomain
import ConcertStore
import ConcertTestSupport
import Testing

/// The storage contract, continued: wallet, payments and idempotency.
extension StoreContractTests {
    // MARK: Wallet

    @Test("charge: limits on the amount and on the balance; a rejected charge changes nothing", arguments: Engine.available)
    func chargeLimits(engine: Engine) async throws {
        try await withStore(engine) { store in
            #expect(try await store.balance(userId: 5) == 0)
            #expect(try await store.charge(userId: 5, amount: 1000, now: now, rules: rules, idempotency: nil) == 1000)
            for amount: Int64 in [0, -1, rules.maxCharge + 1] {
                let error = await #expect(throws: DomainError.self) {
                    try await store.charge(userId: 5, amount: amount, now: now, rules: rules, idempotency: nil)
                }
                guard case .invalidAmount = error else {
                    Issue.record("charge of \(amount): expected invalidAmount, got \(String(describing: error))")
                    continue
                }
            }
            #expect(try await store.balance(userId: 5) == 1000)
            #expect(try await store.history(userId: 5).count == 1)
            // Up to exactly the maximum balance, and not one point past it.
            var balance: Int64 = 1000
            while balance < BookingRules.maxBalance {
                let amount = min(rules.maxCharge, BookingRules.maxBalance - balance)
                balance = try await store.charge(userId: 5, amount: amount, now: now, rules: rules, idempotency: nil)
            }
            #expect(balance == BookingRules.maxBalance)
            let entries = try await store.history(userId: 5).count
            await #expect(throws: DomainError.invalidAmount("the balance would pass \(BookingRules.maxBalance)")) {
                try await store.charge(userId: 5, amount: 1, now: now, rules: rules, idempotency: nil)
            }
            #expect(try await store.balance(userId: 5) == BookingRules.maxBalance)
            #expect(try await store.history(userId: 5).count == entries)
            // A charge to a user never seen before that is rejected creates no history.
            await #expect(throws: DomainError.self) {
                try await store.charge(userId: 6, amount: 0, now: now, rules: rules, idempotency: nil)
            }
            #expect(try await store.history(userId: 6).isEmpty)
        }
    }

    @Test("history: newest first, and the balance is the sum of the amounts", arguments: Engine.available)
    func history(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 3000)
            _ = try await store.charge(userId: 1, amount: 5000, now: at(1), rules: rules, idempotency: nil)
            _ = try await store.charge(userId: 1, amount: 700, now: at(2), rules: rules, idempotency: nil)
            let hold = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1))
            _ = try await store.pay(userId: 1, reservationId: hold.id, now: at(3), idempotency: nil)
            _ = try await store.charge(userId: 2, amount: 99, now: at(4), rules: rules, idempotency: nil)

            let entries = try await store.history(userId: 1)
            #expect(entries.map(\.type) == [.payment, .charge, .charge])
            #expect(entries.map(\.amount) == [-3000, 700, 5000])
            #expect(entries.map(\.balanceAfter) == [2700, 5700, 5000])
            #expect(entries.map(\.createdAt) == [at(3), at(2), at(1)])
            #expect(entries[0].id > entries[1].id && entries[1].id > entries[2].id)
            let balance = try await store.balance(userId: 1)
            #expect(balance == 2700)
            #expect(entries.reduce(0) { $0 + $1.amount } == balance)
            #expect(try await store.history(userId: 2).map(\.amount) == [99])
            #expect(try await store.history(userId: 3).isEmpty)
        }
    }

    // MARK: Payments

    @Test("pay: deducts, confirms, sells the seat, writes the entry and the payment", arguments: Engine.available)
    func payHappyPath(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (concert, schedule) = try await makeOpenSchedule(store, price: 45_000)
            let hold = try await store.hold(holdRequest(user: 3, schedule: schedule, seat: 8))
            _ = try await store.charge(userId: 3, amount: 50_000, now: now, rules: rules, idempotency: nil)
            let receipt = try await store.pay(userId: 3, reservationId: hold.id, now: at(minute), idempotency: nil)

            #expect(receipt.balance == 5000 && receipt.concertId == concert.id)
            #expect(receipt.payment.userId == 3 && receipt.payment.reservationId == hold.id)
            #expect(receipt.payment.amount == 45_000 && receipt.payment.paidAt == at(minute))
            #expect(try await store.balance(userId: 3) == 5000)
            #expect(try await store.reservation(id: hold.id, userId: 3)?.storedStatus == .confirmed)
            // Confirmed is for good: it does not run out.
            #expect(try await store.reservation(id: hold.id, userId: 3)?.status(at: at(day)) == .confirmed)
            #expect(try await store.seatMap(scheduleId: schedule.id, now: at(day))?[7].status == .sold)
            let latest = try #require(try await store.history(userId: 3).first)
            #expect(latest.type == .payment && latest.amount == -45_000 && latest.balanceAfter == 5000)
            #expect(try await store.payment(id: receipt.payment.id, userId: 3) == receipt.payment)
            #expect(try await store.payment(id: receipt.payment.id, userId: 4) == nil)
            #expect(try await store.payment(id: receipt.payment.id + 1000, userId: 3) == nil)
        }
    }

    @Test("pay without enough points: insufficientPoints, nothing changes, the hold stays", arguments: Engine.available)
    func payInsufficientPoints(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 45_000)
            let hold = try await store.hold(holdRequest(user: 3, schedule: schedule, seat: 8))
            _ = try await store.charge(userId: 3, amount: 44_999, now: now, rules: rules, idempotency: nil)
            await #expect(throws: DomainError.insufficientPoints(balance: 44_999, price: 45_000)) {
                try await store.pay(userId: 3, reservationId: hold.id, now: now, idempotency: nil)
            }
            #expect(try await store.balance(userId: 3) == 44_999)
            #expect(try await store.history(userId: 3).count == 1)
            #expect(try await store.reservation(id: hold.id, userId: 3) == hold)
            #expect(try await store.seatMap(scheduleId: schedule.id, now: now)?[7].status == .held)
            // With one more point the same hold can be paid.
            _ = try await store.charge(userId: 3, amount: 1, now: now, rules: rules, idempotency: nil)
            #expect(try await store.pay(userId: 3, reservationId: hold.id, now: now, idempotency: nil).balance == 0)
        }
    }

    @Test("pay after the hold ran out: reservationExpired, and the seat is free", arguments: Engine.available)
    func payExpired(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 100)
            let hold = try await store.hold(holdRequest(user: 3, schedule: schedule, seat: 1))
            _ = try await store.charge(userId: 3, amount: 100, now: now, rules: rules, idempotency: nil)
            await #expect(throws: DomainError.reservationExpired) {
                try await store.pay(userId: 3, reservationId: hold.id, now: hold.heldUntil, idempotency: nil)
            }
            #expect(try await store.balance(userId: 3) == 100)
            #expect(try await store.history(userId: 3).count == 1)
            #expect(try await store.seatMap(scheduleId: schedule.id, now: hold.heldUntil)?.first?.status == .available)
            _ = try await store.hold(holdRequest(user: 4, schedule: schedule, seat: 1, at: hold.heldUntil))
        }
    }

    @Test("pay: already paid, cancelled, another user's, unknown", arguments: Engine.available)
    func payRejections(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 100)
            _ = try await store.charge(userId: 3, amount: 1000, now: now, rules: rules, idempotency: nil)
            let hold = try await store.hold(holdRequest(user: 3, schedule: schedule, seat: 1))
            await #expect(throws: DomainError.reservationNotFound) {
                try await store.pay(userId: 4, reservationId: hold.id, now: now, idempotency: nil)
            }
            await #expect(throws: DomainError.reservationNotFound) {
                try await store.pay(userId: 3, reservationId: hold.id + 1000, now: now, idempotency: nil)
            }
            _ = try await store.pay(userId: 3, reservationId: hold.id, now: now, idempotency: nil)
            await #expect(throws: DomainError.reservationAlreadyPaid) {
                try await store.pay(userId: 3, reservationId: hold.id, now: at(minute), idempotency: nil)
            }
            let cancelled = try await store.hold(holdRequest(user: 3, schedule: schedule, seat: 2))
            try await store.cancel(reservationId: cancelled.id, userId: 3, now: now)
            await #expect(throws: DomainError.reservationNotHeld) {
                try await store.pay(userId: 3, reservationId: cancelled.id, now: now, idempotency: nil)
            }
            // Only the one payment went through.
            #expect(try await store.balance(userId: 3) == 900)
            #expect(try await store.history(userId: 3).count == 2)
        }
    }

    // MARK: Idempotency

    @Test("idempotency: proceed, inUse, reused, replay after a completed charge", arguments: Engine.available)
    func idempotencyClaims(engine: Engine) async throws {
        try await withStore(engine) { store in
            let lease: Int64 = 30_000, retention = day
            func claim(_ key: String, _ fingerprint: String, at time: Timestamp = now, user: Int64 = 1) async throws -> IdempotencyClaim {
                try await store.claim(userId: user, key: key, fingerprint: fingerprint, now: time,
                                      leaseMilliseconds: lease, retentionMilliseconds: retention)
            }
            #expect(try await claim("k1", "charge:100") == .proceed)
            #expect(try await claim("k1", "charge:100", at: at(1)) == .inUse)
            #expect(try await claim("k1", "charge:200", at: at(1)) == .reused)
            // Keys are per user.
            #expect(try await claim("k1", "charge:200", user: 2) == .proceed)

            let completion = IdempotentCompletion<Int64>(userId: 1, key: "k1", claimedAt: now) { balance in
                StoredResponse(status: 200, body: Array("{\"balance\":\(balance)}".utf8))
            }
            let balance = try await store.charge(userId: 1, amount: 100, now: now, rules: rules, idempotency: completion)
            #expect(balance == 100)
            let replay = StoredResponse(status: 200, body: Array("{\"balance\":100}".utf8))
            #expect(try await claim("k1", "charge:100", at: at(minute)) == .replay(replay))
            #expect(try await claim("k1", "charge:999", at: at(minute)) == .reused)
            // A finished answer is not released.
            try await store.release(userId: 1, key: "k1", claimedAt: now)
            #expect(try await claim("k1", "charge:100", at: at(minute)) == .replay(replay))
            #expect(try await store.balance(userId: 1) == 100)
        }
    }

    @Test("idempotency: release, lease takeover, retention", arguments: Engine.available)
    func idempotencyLifecycle(engine: Engine) async throws {
        try await withStore(engine) { store in
            let lease: Int64 = 30_000, retention = day
            func claim(_ key: String, _ fingerprint: String, at time: Timestamp) async throws -> IdempotencyClaim {
                try await store.claim(userId: 1, key: key, fingerprint: fingerprint, now: time,
                                      leaseMilliseconds: lease, retentionMilliseconds: retention)
            }
            // A failed request releases its claim: a corrected retry may act, with another body too.
            #expect(try await claim("a", "f1", at: now) == .proceed)
            try await store.release(userId: 1, key: "a", claimedAt: now)
            #expect(try await claim("a", "f2", at: at(1)) == .proceed)

            // An abandoned claim counts until its lease runs out, then a retry takes it over.
            #expect(try await claim("b", "f", at: now) == .proceed)
            #expect(try await claim("b", "f", at: at(lease - 1)) == .inUse)
            #expect(try await claim("b", "f", at: at(lease)) == .proceed)
            #expect(try await claim("b", "f", at: at(lease + 1)) == .inUse)

            // A finished answer is kept for the retention time, then the key is new again.
            #expect(try await claim("c", "f", at: now) == .proceed)
            let completion = IdempotentCompletion<Int64>(userId: 1, key: "c", claimedAt: now) { _ in StoredResponse(status: 200, body: [1, 2, 0, 255]) }
            _ = try await store.charge(userId: 1, amount: 5, now: now, rules: rules, idempotency: completion)
            #expect(try await claim("c", "f", at: at(retention - 1)) == .replay(StoredResponse(status: 200, body: [1, 2, 0, 255])))
            #expect(try await claim("c", "other", at: at(retention)) == .proceed)
            #expect(try await claim("c", "other", at: at(retention + 1)) == .inUse)

            // A slow request whose claim was taken over after its lease cannot complete: its write
            // rolls back, and only the request that holds the claim acts.
            #expect(try await claim("d", "f", at: now) == .proceed)
            #expect(try await claim("d", "f", at: at(lease)) == .proceed)
            let before = try await store.balance(userId: 1)
            let stale = IdempotentCompletion<Int64>(userId: 1, key: "d", claimedAt: now) { _ in StoredResponse(status: 200, body: [1]) }
            await #expect(throws: DomainError.idempotencyKeyInUse) {
                try await store.charge(userId: 1, amount: 7, now: at(lease), rules: rules, idempotency: stale)
            }
            #expect(try await store.balance(userId: 1) == before)
            try await store.release(userId: 1, key: "d", claimedAt: now)
            #expect(try await claim("d", "f", at: at(lease + 1)) == .inUse, "releasing a stale claim frees nothing")
            let current = IdempotentCompletion<Int64>(userId: 1, key: "d", claimedAt: at(lease)) { _ in StoredResponse(status: 200, body: [2]) }
            #expect(try await store.charge(userId: 1, amount: 7, now: at(lease), rules: rules, idempotency: current) == before + 7)

            // Keys claimed before the cutoff are purged; younger ones stay.
            #expect(try await claim("old", "f", at: at(1)) == .proceed)
            #expect(try await claim("young", "f", at: at(5)) == .proceed)
            let purged = try await store.purgeIdempotencyKeys(claimedBefore: at(2))
            #expect(purged >= 1)
            #expect(try await claim("young", "f", at: at(6)) == .inUse, "a younger key survives the purge")
            #expect(try await claim("old", "other", at: at(6)) == .proceed, "the old key is gone (else: reused)")
        }
    }

    @Test("idempotency: a payment records its answer; a failing write records nothing", arguments: Engine.available)
    func idempotencyAtomicity(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 100)
            let hold = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1))
            _ = try await store.charge(userId: 1, amount: 150, now: now, rules: rules, idempotency: nil)
            func claim(_ key: String, _ fingerprint: String) async throws -> IdempotencyClaim {
                try await store.claim(userId: 1, key: key, fingerprint: fingerprint, now: now,
                                      leaseMilliseconds: 30_000, retentionMilliseconds: day)
            }

            // The answer is rendered inside the write's transaction: when rendering fails, the
            // write does not happen either.
            struct RenderFailed: Error {}
            #expect(try await claim("charge", "c") == .proceed)
            let failing = IdempotentCompletion<Int64>(userId: 1, key: "charge", claimedAt: now) { _ in throw RenderFailed() }
            await #expect(throws: RenderFailed.self) {
                try await store.charge(userId: 1, amount: 10, now: now, rules: rules, idempotency: failing)
            }
            #expect(try await store.balance(userId: 1) == 150)
            #expect(try await store.history(userId: 1).count == 1)
            #expect(try await claim("charge", "c") == .inUse)

            // A payment that fails on a domain rule leaves the claim RUNNING for the caller to release.
            #expect(try await claim("pay-other", "p") == .proceed)
            let completionForOther = IdempotentCompletion<PaymentReceipt>(userId: 1, key: "pay-other", claimedAt: now) { _ in
                StoredResponse(status: 201, body: [9])
            }
            await #expect(throws: DomainError.reservationNotFound) {
                try await store.pay(userId: 1, reservationId: hold.id + 1000, now: now, idempotency: completionForOther)
            }
            #expect(try await claim("pay-other", "p") == .inUse)

            #expect(try await claim("pay", "p") == .proceed)
            let completion = IdempotentCompletion<PaymentReceipt>(userId: 1, key: "pay", claimedAt: now) { receipt in
                StoredResponse(status: 201, body: Array("paid \(receipt.payment.id) balance \(receipt.balance)".utf8))
            }
            let receipt = try await store.pay(userId: 1, reservationId: hold.id, now: now, idempotency: completion)
            #expect(try await claim("pay", "p") == .replay(StoredResponse(
                status: 201, body: Array("paid \(receipt.payment.id) balance 50".utf8))))
        }
    }
}
