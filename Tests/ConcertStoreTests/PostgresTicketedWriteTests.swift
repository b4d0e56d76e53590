import ConcertDomain
import ConcertPostgres
import ConcertStore
import ConcertTestSupport
import SharedState
import Testing

/// On PostgreSQL alone a payment checks and claims its queue token inside its own call
/// (`PostgresTicketedWrites`, migration 14's `concertd_pay_batch`): one round trip instead of
/// the reservation read, the claim, the poll and the payment; and a hold checks its token in its
/// own call (`concertd_hold_ticketed`) instead of a poll first. The refusals come in the order the
/// API answers them on every engine (`PaymentsController.payChecked`, `QueueTicketMiddleware`).
@Suite("PostgreSQL alone: holds and payments check their queue token in their own call",
       .enabled(if: TestServices.postgresURL != nil || TestServices.required))
struct PostgresTicketedWriteTests {
    static let now = Timestamp(milliseconds: 1_800_000_000_000)
    static let rules = BookingRules(maxHoldsPerUser: 8)
    static let policy = QueuePolicy(maxActive: 2, activeSeconds: 600, idleSeconds: 60)

    struct Sale {
        let store: PostgresConcertStore
        let room: PostgresWaitingRoom
        let writes: PostgresTicketedWrites
        let trips: PostgresRoundTrips
        let concertId: Int64
        let otherConcertId: Int64
        let scheduleId: Int64

        func hold(user: Int64, seat: Int) async throws -> Int64 {
            try await store.hold(HoldRequest(userId: user, scheduleId: scheduleId, seatNumber: seat, now: now, rules: rules)).id
        }

        func pay(user: Int64, reservation: Int64, token: String, owner: String, at time: Timestamp = now) async -> Result<PaymentReceipt, DomainError> {
            await refusal {
                try await writes.pay(userId: user, reservationId: reservation, token: token, claimOwner: owner,
                                     claimUntil: time.adding(seconds: 60), now: time, idempotency: nil)
            }
        }

        func hold(user: Int64, seat: Int, token: String, at time: Timestamp = now) async -> Result<Reservation, DomainError> {
            await refusal {
                try await writes.hold(HoldRequest(userId: user, scheduleId: scheduleId, seatNumber: seat, now: time, rules: rules),
                                      token: token)
            }
        }

        /// The answer, or the refusal; anything but a refusal fails the test.
        private func refusal<Value>(_ body: () async throws -> Value) async -> Result<Value, DomainError> {
            do {
                return .success(try await body())
            } catch let error as DomainError {
                return .failure(error)
            } catch {
                Issue.record("not a refusal: \(error)")
                return .failure(.reservationNotFound)
            }
        }
    }

    func withSale(_ body: (Sale) async throws -> Void) async throws {
        try await withRoundTripCountedStore { store, trips in
            let now = Self.now
            func concert() async throws -> Int64 {
                try await store.createConcert(NewConcert(title: "T", artist: "A", venue: "V", bookingOpensAt: now.adding(milliseconds: -1000),
                                                         bookingClosesAt: now.adding(milliseconds: 86_400_000))).id
            }
            let concertId = try await concert()
            let otherConcertId = try await concert()
            let schedule = try await store.createSchedule(NewSchedule(concertId: concertId, startsAt: now.adding(milliseconds: 86_400_000),
                                                                      price: 100, seatCount: 50))
            _ = try await store.schedule(id: schedule.id)
            let policies = FixedQueuePolicy(Self.policy)
            try await body(Sale(store: store, room: PostgresWaitingRoom(store: store, policies: policies),
                                writes: PostgresTicketedWrites(store: store, policies: policies), trips: trips,
                                concertId: concertId, otherConcertId: otherConcertId, scheduleId: schedule.id))
        }
    }

    @Test("the refusals come in the API's order; a refusal gives the claim back, a payment keeps it")
    func refusalsInOrder() async throws {
        try await withSale { sale in
            let now = Self.now
            let token1 = try await sale.room.join(userId: 1, concertId: sale.concertId, now: now).ticket.token
            let token2 = try await sale.room.join(userId: 2, concertId: sale.concertId, now: now).ticket.token
            let waiting = try await sale.room.join(userId: 3, concertId: sale.concertId, now: now).ticket
            #expect(waiting.status == .waiting)
            let elsewhere = try await sale.room.join(userId: 1, concertId: sale.otherConcertId, now: now).ticket.token
            let reservation1 = try await sale.hold(user: 1, seat: 1)
            let reservation2 = try await sale.hold(user: 2, seat: 2)
            let reservation3 = try await sale.hold(user: 3, seat: 3)

            // The reservation's answers come before any token's.
            #expect(await sale.pay(user: 1, reservation: 999_999, token: "garbage", owner: "a") == .failure(.reservationNotFound))
            #expect(await sale.pay(user: 2, reservation: reservation1, token: token2, owner: "a") == .failure(.reservationNotFound))
            // Then the token, as a poll sees it.
            #expect(await sale.pay(user: 1, reservation: reservation1, token: "garbage", owner: "a") == .failure(.queueTokenInvalid))
            #expect(await sale.pay(user: 1, reservation: reservation1, token: token2, owner: "a") == .failure(.queueTokenInvalid),
                    "another user's token")
            #expect(await sale.pay(user: 1, reservation: reservation1, token: elsewhere, owner: "a") == .failure(.queueTokenInvalid),
                    "a token for another concert")
            #expect(await sale.pay(user: 3, reservation: reservation3, token: waiting.token, owner: "a") == .failure(.queueTokenNotActive))
            #expect(await sale.pay(user: 3, reservation: reservation3, token: waiting.token, owner: "a", at: now.adding(seconds: 61))
                    == .failure(.queueTokenInvalid), "a waiter gone idle has no place")
            #expect(await sale.pay(user: 2, reservation: reservation2, token: token2, owner: "a", at: now.adding(seconds: 601))
                    == .failure(.queueTokenInvalid), "an ACTIVE token past its time, before the hold's own expiry is looked at")
            // Then the payment's own rules; the refusal gives the claim back, so another owner
            // (a second attempt without a key) takes it and pays.
            #expect(await sale.pay(user: 1, reservation: reservation1, token: token1, owner: "first") == .failure(.insufficientPoints(balance: 0, price: 100)))
            _ = try await sale.store.charge(userId: 1, amount: 250, now: now, rules: Self.rules, idempotency: nil)
            let paid = try await sale.pay(user: 1, reservation: reservation1, token: token1, owner: "second").get()
            #expect(paid.balance == 150 && paid.payment.amount == 100 && paid.concertId == sale.concertId)
            // Paying twice is answered as such, whatever the token; and the paid payment keeps its
            // claim: one token, one purchase.
            #expect(await sale.pay(user: 1, reservation: reservation1, token: "garbage", owner: "third") == .failure(.reservationAlreadyPaid))
            let reservation4 = try await sale.hold(user: 1, seat: 4)
            #expect(await sale.pay(user: 1, reservation: reservation4, token: token1, owner: "third") == .failure(.queueTokenInvalid))
            #expect(try await sale.store.balance(userId: 1) == 150)
        }
    }

    @Test("payments released together with one token: exactly one pays")
    func oneTokenOnePurchase() async throws {
        try await withSale { sale in
            let now = Self.now
            let token = try await sale.room.join(userId: 1, concertId: sale.concertId, now: now).ticket.token
            var reservations: [Int64] = []
            for seat in 1...8 { reservations.append(try await sale.hold(user: 1, seat: seat)) }
            _ = try await sale.store.charge(userId: 1, amount: 1000, now: now, rules: Self.rules, idempotency: nil)
            let gate = StartGate()
            let outcomes = await withTaskGroup(of: Result<PaymentReceipt, DomainError>.self) { group in
                for (index, reservation) in reservations.enumerated() {
                    group.addTask {
                        await gate.wait()
                        return await sale.pay(user: 1, reservation: reservation, token: token, owner: "attempt \(index)")
                    }
                }
                await gate.open(whenArrived: reservations.count)
                var all: [Result<PaymentReceipt, DomainError>] = []
                for await outcome in group { all.append(outcome) }
                return all
            }
            let paid = outcomes.filter { if case .success = $0 { true } else { false } }
            #expect(paid.count == 1, "\(outcomes)")
            #expect(outcomes.filter { $0 == .failure(.queueTokenInvalid) }.count == reservations.count - 1, "\(outcomes)")
            #expect(try await sale.store.balance(userId: 1) == 900)
        }
    }

    @Test("a payment with its token's checks is one round trip")
    func oneRoundTrip() async throws {
        try await withSale { sale in
            let now = Self.now
            let token = try await sale.room.join(userId: 1, concertId: sale.concertId, now: now).ticket.token
            let reservation = try await sale.hold(user: 1, seat: 1)
            _ = try await sale.store.charge(userId: 1, amount: 100, now: now, rules: Self.rules, idempotency: nil)
            sale.trips.reset()
            _ = try await sale.pay(user: 1, reservation: reservation, token: token, owner: "only").get()
            #expect(sale.trips.value == 1, "\(sale.trips.value) round trips for a payment")
        }
    }

    @Test("a hold's token is checked as the queue gate checks it, each item of a batch on its own")
    func holdsCheckTheirTokens() async throws {
        try await withSale { sale in
            let now = Self.now
            let token1 = try await sale.room.join(userId: 1, concertId: sale.concertId, now: now).ticket.token
            let token2 = try await sale.room.join(userId: 2, concertId: sale.concertId, now: now).ticket.token
            let waiting = try await sale.room.join(userId: 3, concertId: sale.concertId, now: now).ticket.token
            let elsewhere = try await sale.room.join(userId: 4, concertId: sale.otherConcertId, now: now).ticket.token
            // Alone.
            #expect(await sale.hold(user: 1, seat: 1, token: "garbage") == .failure(.queueTokenInvalid))
            #expect(await sale.hold(user: 1, seat: 1, token: token2) == .failure(.queueTokenInvalid), "another user's token")
            #expect(await sale.hold(user: 4, seat: 1, token: elsewhere) == .failure(.queueTokenInvalid), "a token for another concert")
            #expect(await sale.hold(user: 3, seat: 1, token: waiting) == .failure(.queueTokenNotActive))
            #expect(await sale.hold(user: 3, seat: 1, token: waiting, at: now.adding(seconds: 61)) == .failure(.queueTokenInvalid),
                    "a waiter gone idle")
            #expect(await sale.hold(user: 2, seat: 1, token: token2, at: now.adding(seconds: 601)) == .failure(.queueTokenInvalid),
                    "an ACTIVE token past its time")
            // Released together (one call at a time would batch them; any split gives the same
            // answers): refusals by token leave the others' holds alone, and the seat is still
            // decided by the database.
            let asks: [(user: Int64, seat: Int, token: String, expected: DomainError?)] = [
                (1, 10, token1, nil), (3, 11, waiting, .queueTokenNotActive), (2, 12, token2, nil),
                (2, 13, token1, .queueTokenInvalid), (1, 12, token1, .seatUnavailable), (4, 14, elsewhere, .queueTokenInvalid),
            ]
            let gate = StartGate()
            let answers = await withTaskGroup(of: (Int, Result<Reservation, DomainError>).self) { group in
                for (index, ask) in asks.enumerated() {
                    group.addTask {
                        await gate.wait()
                        return (index, await sale.hold(user: ask.user, seat: ask.seat, token: ask.token))
                    }
                }
                await gate.open(whenArrived: asks.count)
                var all: [Int: Result<Reservation, DomainError>] = [:]
                for await (index, answer) in group { all[index] = answer }
                return all
            }
            // Seat 12 goes to whichever of users 2 and 1 came first; every other answer is fixed.
            let seat12 = [answers[2], answers[4]].compactMap { $0 }
            #expect(seat12.filter { if case .success = $0 { true } else { false } }.count == 1, "\(seat12)")
            #expect(seat12.filter { $0 == .failure(.seatUnavailable) }.count == 1, "\(seat12)")
            for (index, ask) in asks.enumerated() where ask.seat != 12 {
                switch (answers[index], ask.expected) {
                case (.success(let reservation)?, nil):
                    #expect(reservation.userId == ask.user && reservation.seatNumber == ask.seat)
                case (.failure(let refusal)?, let expected?):
                    #expect(refusal == expected, "ask \(index)")
                default:
                    Issue.record("ask \(index): \(String(describing: answers[index])) against \(String(describing: ask.expected))")
                }
            }
            #expect(try await sale.store.reservations(userId: 2).map(\.seatNumber).sorted().allSatisfy { $0 == 12 })
            #expect(try await sale.store.reservations(userId: 3).isEmpty)
            #expect(try await sale.store.reservations(userId: 4).isEmpty)
        }
    }

    @Test("a hold with its token's check is one round trip")
    func aHoldIsOneRoundTrip() async throws {
        try await withSale { sale in
            let token = try await sale.room.join(userId: 1, concertId: sale.concertId, now: Self.now).ticket.token
            sale.trips.reset()
            _ = try await sale.hold(user: 1, seat: 1, token: token).get()
            #expect(sale.trips.value == 1, "\(sale.trips.value) round trips for a hold")
        }
    }
}
