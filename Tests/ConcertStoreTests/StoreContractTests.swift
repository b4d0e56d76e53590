import ConcertDomain
import ConcertStore
import ConcertTestSupport
import Testing

/// The storage contract (the doc comments of `ConcertStore`) as tests that every engine must pass.
/// Time is injected through `now:`; expiry is tested by passing a later time, never by sleeping.
@Suite("Storage contract")
struct StoreContractTests {
    // MARK: Schema

    @Test("migrate twice is a no-op", arguments: Engine.available)
    func migrateTwice(engine: Engine) async throws {
        try await withStore(engine) { store in
            #expect(try await store.isEmpty())
            let (concert, _) = try await makeOpenSchedule(store)
            try await store.migrate()
            try await store.migrate()
            #expect(try await store.concert(id: concert.id) == concert)
            #expect(try await store.isEmpty() == false)
            try await store.ping()
        }
    }

    // MARK: Catalog

    @Test("concerts and schedules round-trip; unknown ids read as nil", arguments: Engine.available)
    func catalogRoundTrip(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (concert, schedule) = try await makeOpenSchedule(store, price: 70_000, seats: 30)
            #expect(concert.id > 0 && schedule.id > 0)
            #expect(try await store.concert(id: concert.id) == concert)
            #expect(try await store.schedule(id: schedule.id) == schedule)
            #expect(schedule.totalSeats == 30 && schedule.price == 70_000 && schedule.concertId == concert.id)
            #expect(try await store.concert(id: concert.id + 1000) == nil)
            #expect(try await store.schedule(id: schedule.id + 1000) == nil)
            await #expect(throws: DomainError.concertNotFound) {
                try await store.createSchedule(NewSchedule(concertId: concert.id + 1000, startsAt: at(day), price: 1))
            }
        }
    }

    @Test("reservable concerts: open window and a future schedule, by id, paged, with changesAt", arguments: Engine.available)
    func reservableConcerts(engine: Engine) async throws {
        try await withStore(engine) { store in
            func concert(_ title: String, opens: Int64, closes: Int64, startsAt: [Int64]) async throws -> Concert {
                let concert = try await store.createConcert(NewConcert(
                    title: title, artist: "A", venue: "V", bookingOpensAt: at(opens), bookingClosesAt: at(closes)))
                for start in startsAt {
                    _ = try await store.createSchedule(NewSchedule(concertId: concert.id, startsAt: at(start), price: 1000))
                }
                return concert
            }
            let open1 = try await concert("open 1", opens: -day, closes: 5 * day, startsAt: [-day, 6 * day])
            _ = try await concert("open, no schedule", opens: -day, closes: 5 * day, startsAt: [])
            _ = try await concert("open, past schedule only", opens: -day, closes: 5 * day, startsAt: [-minute])
            let notOpenYet = try await concert("not open yet", opens: 2 * day, closes: 5 * day, startsAt: [6 * day])
            _ = try await concert("closed", opens: -2 * day, closes: -day, startsAt: [6 * day])
            let open2 = try await concert("open 2", opens: -day, closes: 4 * day, startsAt: [3 * day])
            let open3 = try await concert("open 3, closes exactly now+1ms", opens: 0, closes: 1, startsAt: [7 * day])

            let all = try await store.reservableConcerts(now: now, after: nil, limit: 100)
            #expect(all.concerts == [open1, open2, open3])
            // The earliest future change: open 3's window closes 1 ms from now.
            #expect(all.changesAt == at(1))

            let firstPage = try await store.reservableConcerts(now: now, after: nil, limit: 2)
            #expect(firstPage.concerts == [open1, open2])
            let secondPage = try await store.reservableConcerts(now: now, after: open2.id, limit: 2)
            #expect(secondPage.concerts == [open3])
            #expect(try await store.reservableConcerts(now: now, after: open3.id, limit: 2).concerts.isEmpty)

            // One millisecond later open 3 has closed, and the next change is "not open yet" opening.
            let later = try await store.reservableConcerts(now: at(1), after: nil, limit: 100)
            #expect(later.concerts == [open1, open2])
            #expect(later.changesAt == at(2 * day))

            // When "not open yet" opens, the next change is open 2's only schedule starting.
            let opening = try await store.reservableConcerts(now: at(2 * day), after: nil, limit: 100)
            #expect(opening.concerts == [open1, notOpenYet, open2])
            #expect(opening.changesAt == at(3 * day))

            // Past every time in the catalogue nothing is reservable and nothing will change.
            let end = try await store.reservableConcerts(now: at(100 * day), after: nil, limit: 100)
            #expect(end.concerts.isEmpty)
            #expect(end.changesAt == nil)
        }
    }

    @Test("future schedules by start time with available seats; hasFutureSchedule", arguments: Engine.available)
    func futureSchedules(engine: Engine) async throws {
        try await withStore(engine) { store in
            let concert = try await store.createConcert(NewConcert(
                title: "T", artist: "A", venue: "V", bookingOpensAt: at(-day), bookingClosesAt: at(9 * day)))
            let late = try await store.createSchedule(NewSchedule(concertId: concert.id, startsAt: at(8 * day), price: 100, seatCount: 10))
            _ = try await store.createSchedule(NewSchedule(concertId: concert.id, startsAt: at(-minute), price: 100, seatCount: 10))
            let early = try await store.createSchedule(NewSchedule(concertId: concert.id, startsAt: at(2 * day), price: 100, seatCount: 5))

            // Seat 1 held (live), seat 2 sold, seat 3 held but run out, seat 4 cancelled.
            _ = try await store.hold(holdRequest(user: 1, schedule: early, seat: 1))
            let toSell = try await store.hold(holdRequest(user: 2, schedule: early, seat: 2))
            _ = try await store.charge(userId: 2, amount: 100, now: now, rules: rules, idempotency: nil)
            _ = try await store.pay(userId: 2, reservationId: toSell.id, now: now, idempotency: nil)
            _ = try await store.hold(holdRequest(user: 3, schedule: early, seat: 3, at: at(-10 * minute)))
            let toCancel = try await store.hold(holdRequest(user: 4, schedule: early, seat: 4))
            try await store.cancel(reservationId: toCancel.id, userId: 4, now: now)

            let schedules = try await store.futureSchedules(concertId: concert.id, now: now)
            #expect(schedules.map(\.schedule) == [early, late])
            #expect(schedules.map(\.availableSeats) == [3, 10])

            #expect(try await store.hasFutureSchedule(concertId: concert.id, now: now))
            #expect(try await store.hasFutureSchedule(concertId: concert.id, now: at(8 * day)) == false)
            #expect(try await store.futureSchedules(concertId: concert.id, now: at(8 * day)).isEmpty)
            #expect(try await store.hasFutureSchedule(concertId: concert.id + 1000, now: now) == false)
        }
    }

    @Test("seat map: AVAILABLE, HELD, SOLD; a run-out hold reads AVAILABLE", arguments: Engine.available)
    func seatMap(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 1234, seats: 5)
            #expect(try await store.seatMap(scheduleId: schedule.id + 1000, now: now) == nil)
            let fresh = try #require(try await store.seatMap(scheduleId: schedule.id, now: now))
            #expect(fresh == (1...5).map { Seat(number: $0, price: 1234, status: .available) })

            let held = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 2))
            let sold = try await store.hold(holdRequest(user: 2, schedule: schedule, seat: 4))
            _ = try await store.charge(userId: 2, amount: 1234, now: now, rules: rules, idempotency: nil)
            _ = try await store.pay(userId: 2, reservationId: sold.id, now: now, idempotency: nil)

            let map = try #require(try await store.seatMap(scheduleId: schedule.id, now: now))
            #expect(map.map(\.status) == [.available, .held, .available, .sold, .available])
            #expect(map.allSatisfy { $0.price == 1234 })

            // At the instant the hold runs out the seat is free again; the sale stays.
            let later = try #require(try await store.seatMap(scheduleId: schedule.id, now: held.heldUntil))
            #expect(later.map(\.status) == [.available, .available, .available, .sold, .available])
        }
    }

    // MARK: Holds

    @Test("hold: a HELD reservation until now + hold time, readable by its owner only", arguments: Engine.available)
    func holdHappyPath(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (concert, schedule) = try await makeOpenSchedule(store, price: 88_000)
            let first = try await store.hold(holdRequest(user: 7, schedule: schedule, seat: 10))
            #expect(first.userId == 7 && first.scheduleId == schedule.id && first.concertId == concert.id)
            #expect(first.seatNumber == 10 && first.price == 88_000 && first.storedStatus == .held)
            #expect(first.heldUntil == at(rules.holdMilliseconds) && first.createdAt == now)
            let second = try await store.hold(holdRequest(user: 7, schedule: schedule, seat: 11, at: at(1)))

            #expect(try await store.reservation(id: first.id, userId: 7) == first)
            #expect(try await store.reservation(id: first.id, userId: 8) == nil)
            #expect(try await store.reservations(userId: 7) == [second, first])
            #expect(try await store.reservations(userId: 8).isEmpty)
            // A user exists from first use with a balance of 0.
            #expect(try await store.balance(userId: 7) == 0)
        }
    }

    @Test("hold: unknown schedule, seat out of range, schedule not reservable", arguments: Engine.available)
    func holdRejections(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (concert, schedule) = try await makeOpenSchedule(store, seats: 50)
            await #expect(throws: DomainError.scheduleNotFound) {
                try await store.hold(HoldRequest(userId: 1, scheduleId: schedule.id + 1000, seatNumber: 1, now: now, rules: rules))
            }
            await #expect(throws: DomainError.seatOutOfRange(seat: 0, totalSeats: 50)) {
                try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 0))
            }
            await #expect(throws: DomainError.seatOutOfRange(seat: 51, totalSeats: 50)) {
                try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 51))
            }
            // The booking window: not yet open, closed.
            await #expect(throws: DomainError.scheduleNotReservable) {
                try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1, at: at(-2 * day)))
            }
            await #expect(throws: DomainError.scheduleNotReservable) {
                try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1, at: concert.bookingClosesAt))
            }
            // A schedule that has started, while the window is still open.
            let started = try await store.createSchedule(NewSchedule(concertId: concert.id, startsAt: at(-minute), price: 1))
            await #expect(throws: DomainError.scheduleNotReservable) {
                try await store.hold(holdRequest(user: 1, schedule: started, seat: 1))
            }
            // A rejected hold changes nothing.
            #expect(try await store.reservations(userId: 1).isEmpty)
            #expect(try await store.seatMap(scheduleId: schedule.id, now: now)?.allSatisfy { $0.status == .available } == true)
        }
    }

    @Test("hold on a seat that is held or sold: seatUnavailable", arguments: Engine.available)
    func holdTakenSeat(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 100)
            _ = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1))
            await #expect(throws: DomainError.seatUnavailable) {
                try await store.hold(holdRequest(user: 2, schedule: schedule, seat: 1, at: at(minute)))
            }
            // Not even its holder may hold it twice.
            await #expect(throws: DomainError.seatUnavailable) {
                try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1, at: at(minute)))
            }
            let sold = try await store.hold(holdRequest(user: 3, schedule: schedule, seat: 2))
            _ = try await store.charge(userId: 3, amount: 100, now: now, rules: rules, idempotency: nil)
            _ = try await store.pay(userId: 3, reservationId: sold.id, now: now, idempotency: nil)
            // A sale never runs out.
            await #expect(throws: DomainError.seatUnavailable) {
                try await store.hold(holdRequest(user: 2, schedule: schedule, seat: 2, at: at(day)))
            }
            #expect(try await store.reservations(userId: 2).isEmpty)
        }
    }

    @Test("re-hold after expiry: the run-out hold is written down EXPIRED", arguments: Engine.available)
    func reholdAfterExpiry(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store)
            let first = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 5))
            // One millisecond before the hold runs out the seat is still taken ...
            await #expect(throws: DomainError.seatUnavailable) {
                try await store.hold(holdRequest(user: 2, schedule: schedule, seat: 5, at: first.heldUntil.adding(milliseconds: -1)))
            }
            // ... and at that instant it is free.
            let second = try await store.hold(holdRequest(user: 2, schedule: schedule, seat: 5, at: first.heldUntil))
            #expect(second.storedStatus == .held && second.id != first.id)
            let old = try #require(try await store.reservation(id: first.id, userId: 1))
            #expect(old.storedStatus == .expired)
            #expect(old.status(at: first.heldUntil) == .expired)
            // The original holder may take it back once the new hold has run out too.
            let third = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 5, at: second.heldUntil))
            #expect(third.userId == 1)
        }
    }

    @Test("hold limit: live holds only count", arguments: Engine.available)
    func holdLimit(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 100)
            var holds: [Reservation] = []
            for seat in 1...4 { holds.append(try await store.hold(holdRequest(user: 9, schedule: schedule, seat: seat))) }
            await #expect(throws: DomainError.holdLimitReached(limit: 4)) {
                try await store.hold(holdRequest(user: 9, schedule: schedule, seat: 5))
            }
            // Other users are not affected.
            _ = try await store.hold(holdRequest(user: 10, schedule: schedule, seat: 5))

            // A cancelled hold frees a place ...
            try await store.cancel(reservationId: holds[0].id, userId: 9, now: now)
            let fifth = try await store.hold(holdRequest(user: 9, schedule: schedule, seat: 6))
            await #expect(throws: DomainError.holdLimitReached(limit: 4)) {
                try await store.hold(holdRequest(user: 9, schedule: schedule, seat: 7))
            }
            // ... and so does a paid one (it is no longer a hold).
            _ = try await store.charge(userId: 9, amount: 100, now: now, rules: rules, idempotency: nil)
            _ = try await store.pay(userId: 9, reservationId: holds[1].id, now: now, idempotency: nil)
            _ = try await store.hold(holdRequest(user: 9, schedule: schedule, seat: 7))
            // Once the holds have run out, all four places are free again.
            let later = fifth.heldUntil
            for seat in 11...14 { _ = try await store.hold(holdRequest(user: 9, schedule: schedule, seat: seat, at: later)) }
            await #expect(throws: DomainError.holdLimitReached(limit: 4)) {
                try await store.hold(holdRequest(user: 9, schedule: schedule, seat: 15, at: later))
            }
            // The limit is the caller's rule, not a constant.
            let generous = BookingRules(holdSeconds: 300, maxHoldsPerUser: 5, maxCharge: 10_000_000)
            _ = try await store.hold(holdRequest(user: 9, schedule: schedule, seat: 15, at: later, rules: generous))
        }
    }

    @Test("cancel: a live hold of the caller only", arguments: Engine.available)
    func cancel(engine: Engine) async throws {
        try await withStore(engine) { store in
            let (_, schedule) = try await makeOpenSchedule(store, price: 100)
            let hold = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 1))
            await #expect(throws: DomainError.reservationNotFound) {
                try await store.cancel(reservationId: hold.id, userId: 2, now: now)
            }
            await #expect(throws: DomainError.reservationNotFound) {
                try await store.cancel(reservationId: hold.id + 1000, userId: 1, now: now)
            }
            try await store.cancel(reservationId: hold.id, userId: 1, now: now)
            #expect(try await store.reservation(id: hold.id, userId: 1)?.storedStatus == .cancelled)
            #expect(try await store.seatMap(scheduleId: schedule.id, now: now)?.first?.status == .available)
            await #expect(throws: DomainError.reservationNotHeld) {
                try await store.cancel(reservationId: hold.id, userId: 1, now: now)
            }
            // The seat can be held again at once.
            _ = try await store.hold(holdRequest(user: 2, schedule: schedule, seat: 1))

            let runOut = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 2))
            await #expect(throws: DomainError.reservationNotHeld) {
                try await store.cancel(reservationId: runOut.id, userId: 1, now: runOut.heldUntil)
            }
            let paid = try await store.hold(holdRequest(user: 1, schedule: schedule, seat: 3))
            _ = try await store.charge(userId: 1, amount: 100, now: now, rules: rules, idempotency: nil)
            _ = try await store.pay(userId: 1, reservationId: paid.id, now: now, idempotency: nil)
            await #expect(throws: DomainError.reservationNotHeld) {
                try await store.cancel(reservationId: paid.id, userId: 1, now: now)
            }
            #expect(try await store.reservation(id: paid.id, userId: 1)?.storedStatus == .confirmed)
        }
    }

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
