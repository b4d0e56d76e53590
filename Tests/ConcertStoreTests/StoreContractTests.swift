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
}
