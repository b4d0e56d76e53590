import ConcertDomain
import Testing

@Suite("Domain rules")
struct RulesTests {
    let now = Timestamp(seconds: 2_000_000)

    func concert(opens: Int64 = -10, closes: Int64 = 10) -> Concert {
        Concert(id: 1, title: "T", artist: "A", venue: "V", bookingOpensAt: now.adding(seconds: opens), bookingClosesAt: now.adding(seconds: closes))
    }

    func reservation(_ status: ReservationStatus, heldUntil: Int64) -> Reservation {
        Reservation(id: 1, userId: 1, scheduleId: 1, concertId: 1, seatNumber: 1, price: 100, storedStatus: status,
                    heldUntil: now.adding(seconds: heldUntil), createdAt: now)
    }

    @Test func bookingWindowIsHalfOpen() {
        #expect(concert(opens: 0, closes: 10).isBookingOpen(at: now))
        #expect(!concert(opens: -10, closes: 0).isBookingOpen(at: now))
        #expect(!concert(opens: 1, closes: 10).isBookingOpen(at: now))
    }

    @Test func aHoldReadsExpiredFromItsLastInstant() {
        #expect(reservation(.held, heldUntil: 1).status(at: now) == .held)
        #expect(reservation(.held, heldUntil: 0).status(at: now) == .expired)
        #expect(reservation(.confirmed, heldUntil: -100).status(at: now) == .confirmed)
        #expect(reservation(.cancelled, heldUntil: 100).status(at: now) == .cancelled)
    }

    @Test func payabilityFollowsTheStatus() {
        #expect(throws: Never.self) { try HoldPolicy.checkPayable(reservation(.held, heldUntil: 5), now: now) }
        #expect(throws: DomainError.reservationExpired) { try HoldPolicy.checkPayable(reservation(.held, heldUntil: 0), now: now) }
        #expect(throws: DomainError.reservationAlreadyPaid) { try HoldPolicy.checkPayable(reservation(.confirmed, heldUntil: 5), now: now) }
        #expect(throws: DomainError.reservationNotHeld) { try HoldPolicy.checkPayable(reservation(.cancelled, heldUntil: 5), now: now) }
    }

    @Test func holdsNeedASeatInRangeAnOpenWindowAndAFutureStart() {
        let schedule = Schedule(id: 1, concertId: 1, startsAt: now.adding(seconds: 100), totalSeats: 50, price: 10)
        #expect(throws: Never.self) { try HoldPolicy.checkReservable(concert: concert(), schedule: schedule, seatNumber: 50, now: now) }
        #expect(throws: DomainError.seatOutOfRange(seat: 51, totalSeats: 50)) {
            try HoldPolicy.checkReservable(concert: concert(), schedule: schedule, seatNumber: 51, now: now)
        }
        #expect(throws: DomainError.seatOutOfRange(seat: 0, totalSeats: 50)) {
            try HoldPolicy.checkReservable(concert: concert(), schedule: schedule, seatNumber: 0, now: now)
        }
        #expect(throws: DomainError.scheduleNotReservable) {
            try HoldPolicy.checkReservable(concert: concert(closes: 0), schedule: schedule, seatNumber: 1, now: now)
        }
        let started = Schedule(id: 1, concertId: 1, startsAt: now, totalSeats: 50, price: 10)
        #expect(throws: DomainError.scheduleNotReservable) {
            try HoldPolicy.checkReservable(concert: concert(), schedule: started, seatNumber: 1, now: now)
        }
    }

    @Test func chargeLimits() {
        let rules = BookingRules(maxCharge: 1000)
        #expect(throws: Never.self) { try WalletPolicy.checkCharge(amount: 1000, balance: 0, rules: rules) }
        for amount: Int64 in [0, -5, 1001, .max, .min] {
            #expect(throws: DomainError.self) { try WalletPolicy.checkCharge(amount: amount, balance: 0, rules: rules) }
        }
        #expect(throws: Never.self) { try WalletPolicy.checkCharge(amount: 1000, balance: 999_999_000, rules: rules) }
        #expect(throws: DomainError.self) { try WalletPolicy.checkCharge(amount: 1000, balance: 999_999_001, rules: rules) }
    }

    @Test func paymentNeedsTheWholePrice() {
        #expect(throws: Never.self) { try WalletPolicy.checkPayment(price: 100, balance: 100) }
        #expect(throws: DomainError.insufficientPoints(balance: 99, price: 100)) { try WalletPolicy.checkPayment(price: 100, balance: 99) }
    }

    @Test func newConcertAndScheduleValidation() throws {
        let good = NewConcert(title: " T ", artist: "A", venue: "V", bookingOpensAt: now, bookingClosesAt: now.adding(seconds: 1))
        #expect(try good.validated().title == "T")
        var blank = good
        blank.artist = "   "
        #expect(throws: DomainError.self) { try blank.validated() }
        var backwards = good
        backwards.bookingClosesAt = now
        #expect(throws: DomainError.self) { try backwards.validated() }
        var long = good
        long.venue = String(repeating: "v", count: 201)
        #expect(throws: DomainError.self) { try long.validated() }
        #expect(throws: DomainError.self) { try NewSchedule(concertId: 1, startsAt: now, price: 1, seatCount: 0).validated() }
        #expect(throws: DomainError.self) { try NewSchedule(concertId: 1, startsAt: now, price: -1).validated() }
        #expect(try NewSchedule(concertId: 1, startsAt: now, price: 0, seatCount: 1000).validated().seatCount == 1000)
    }
}

@Suite("RFC 3339")
struct RFC3339Tests {
    @Test func formatsWholeSecondsWithoutAFraction() {
        #expect(RFC3339.format(Timestamp(seconds: 0)) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.format(Timestamp(seconds: 1_798_138_800)) == "2026-12-24T19:00:00Z")
        #expect(RFC3339.format(Timestamp(milliseconds: 1_798_138_800_250)) == "2026-12-24T19:00:00.250Z")
        #expect(RFC3339.format(Timestamp(seconds: 951_782_400)) == "2000-02-29T00:00:00Z")
        #expect(RFC3339.format(Timestamp(milliseconds: -1)) == "1969-12-31T23:59:59.999Z")
    }

    @Test func parsesOffsetsFractionsAndRejectsNonsense() {
        #expect(RFC3339.parse("2026-12-24T19:00:00Z") == Timestamp(seconds: 1_798_138_800))
        #expect(RFC3339.parse("2026-12-25T04:00:00+09:00") == Timestamp(seconds: 1_798_138_800))
        #expect(RFC3339.parse("2026-12-24t19:00:00.5z") == Timestamp(milliseconds: 1_798_138_800_500))
        #expect(RFC3339.parse("2026-12-24T19:00:00.123456Z") == Timestamp(milliseconds: 1_798_138_800_123))
        for bad in ["", "2026-12-24", "2026-12-24T19:00:00", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                    "2026-12-24T24:00:00Z", "2026-12-24T19:00:00+0900", "2026-12-24T19:00:00.Z", "2026-12-24T19:00:00Zjunk", "tomorrow"] {
            #expect(RFC3339.parse(bad) == nil, "\(bad)")
        }
    }

    /// Found while adding the fuzz test: an offset pushed year 0000 to -1 and 9999 to 10000, which `format`
    /// then wrote as "00-1-12-31T23:30:00Z" and "10000-01-01T00:30:00Z".
    @Test func rejectsInstantsOutsideFourDigitYears() {
        #expect(RFC3339.parse("0000-01-01T00:30:00+01:00") == nil)
        #expect(RFC3339.parse("9999-12-31T23:30:00-01:00") == nil)
        let first = RFC3339.parse("0000-01-01T00:00:00Z"), last = RFC3339.parse("9999-12-31T23:59:59.999Z")
        #expect(first.map(RFC3339.format) == "0000-01-01T00:00:00Z")
        #expect(last.map(RFC3339.format) == "9999-12-31T23:59:59.999Z")
    }

    @Test func roundTrips() {
        var generator = SplitMix(seed: 7)
        for _ in 0..<2000 {
            let time = Timestamp(milliseconds: Int64(generator.next() % 8_000_000_000_000))
            #expect(RFC3339.parse(RFC3339.format(time)) == time)
        }
    }
}
