import ConcertDomain
import Foundation
import Testing

@Suite("Seat holds and reservations")
struct ReservationTests {
    @Test(arguments: TestBackend.all) func holdingASeatMakesAHeldReservation(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.rules.holdMilliseconds = 300_000 }) { api in
            let concert = try await api.openConcert(price: 4200)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let now = api.clock.now
            let hold = try await api.hold(concert.scheduleId, seat: 7, user: 5, token: token)
            #expect(hold.status == 201)
            #expect(hold.string("status") == "HELD")
            #expect(hold.int("seatNumber") == 7)
            #expect(hold.int("price") == 4200)
            #expect(hold.int("concertId") == concert.concertId)
            #expect(hold.int("scheduleId") == concert.scheduleId)
            #expect(RFC3339.parse(hold.string("heldUntil")!) == now.adding(seconds: 300))
            #expect(RFC3339.parse(hold.string("createdAt")!) == now)
            #expect(hold.json.keys.contains("paymentId") && hold["paymentId"] is NSNull, "an unpaid reservation names no payment")
            #expect(Set(hold.json.keys) == ["id", "scheduleId", "concertId", "seatNumber", "price", "status", "heldUntil", "createdAt",
                                            "paymentId"])
            #expect(try await api.seatStatus(concert.scheduleId, seat: 7, user: 5, token: token) == "HELD")
            let schedules = try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 5, queueToken: token)
            #expect((schedules.array("schedules").first?["availableSeats"] as? Int) == 49)
        }
    }

    @Test(arguments: TestBackend.all) func aHeldSeatCannotBeHeldAgain(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert()
            let a = try await api.activeToken(concert.concertId, user: 5)
            let b = try await api.activeToken(concert.concertId, user: 6)
            #expect(try await api.hold(concert.scheduleId, seat: 3, user: 5, token: a).status == 201)
            let second = try await api.hold(concert.scheduleId, seat: 3, user: 6, token: b)
            #expect(second.status == 409 && second.code == "SEAT_UNAVAILABLE")
            let again = try await api.hold(concert.scheduleId, seat: 3, user: 5, token: a)
            #expect(again.code == "SEAT_UNAVAILABLE")
        }
    }

    @Test(arguments: TestBackend.all) func aHoldRunsOutByItselfAndTheSeatIsFreeAgain(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.rules.holdMilliseconds = 60_000 }) { api in
            let concert = try await api.openConcert()
            let a = try await api.activeToken(concert.concertId, user: 5)
            let b = try await api.activeToken(concert.concertId, user: 6)
            let hold = try await api.hold(concert.scheduleId, seat: 3, user: 5, token: a)
            api.clock.advance(seconds: 61)
            #expect(try await api.seatStatus(concert.scheduleId, seat: 3, user: 5, token: a) == "AVAILABLE")
            let mine = try await api.call(.get, "/v1/reservations/\(hold.int("id")!)", user: 5)
            #expect(mine.string("status") == "EXPIRED")
            #expect(try await api.hold(concert.scheduleId, seat: 3, user: 6, token: b).status == 201)
            #expect(try await api.call(.get, "/v1/reservations/\(hold.int("id")!)", user: 5).string("status") == "EXPIRED")
        }
    }

    @Test(arguments: TestBackend.all) func seatNumberOutsideTheScheduleIs422(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(seats: 20)
            let token = try await api.activeToken(concert.concertId, user: 5)
            for seat in [0, -1, 21, 1000] {
                let reply = try await api.hold(concert.scheduleId, seat: seat, user: 5, token: token)
                #expect(reply.status == 422 && reply.code == "VALIDATION_FAILED", "seat \(seat)")
            }
            #expect(try await api.hold(concert.scheduleId, seat: 20, user: 5, token: token).status == 201)
        }
    }

    @Test(arguments: TestBackend.all) func holdingAnswers404AndQueueErrors(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            #expect(try await api.hold(999, seat: 1, user: 5, token: token).code == "SCHEDULE_NOT_FOUND")
            let missing = try await api.call(.post, "/v1/reservations", user: 5, json: #"{"scheduleId": \#(concert.scheduleId), "seatNumber": 1}"#)
            #expect(missing.status == 401 && missing.code == "QUEUE_TOKEN_MISSING")
            let other = try await api.openConcert()
            #expect(try await api.hold(other.scheduleId, seat: 1, user: 5, token: token).code == "QUEUE_TOKEN_INVALID")
            #expect(try await api.call(.get, "/v1/reservations", user: 5).array("reservations").isEmpty)
        }
    }

    @Test(arguments: TestBackend.all) func startedScheduleOrClosedWindowIs409ScheduleNotReservable(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let soon = try await api.openConcert(startsIn: 60)
            let token = try await api.activeToken(soon.concertId, user: 5)
            api.clock.advance(seconds: 61)
            let started = try await api.hold(soon.scheduleId, seat: 1, user: 5, token: token)
            #expect(started.status == 409 && started.code == "SCHEDULE_NOT_RESERVABLE")

            let closing = try await api.openConcert(closes: 100)
            let token2 = try await api.activeToken(closing.concertId, user: 6)
            api.clock.advance(seconds: 101)
            #expect(try await api.hold(closing.scheduleId, seat: 1, user: 6, token: token2).code == "SCHEDULE_NOT_RESERVABLE")
        }
    }

    @Test(arguments: TestBackend.all) func aUserHoldsAtMostTheLimit(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.rules.maxHoldsPerUser = 2 }) { api in
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            #expect(try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token).status == 201)
            let second = try await api.hold(concert.scheduleId, seat: 2, user: 5, token: token)
            #expect(second.status == 201)
            let third = try await api.hold(concert.scheduleId, seat: 3, user: 5, token: token)
            #expect(third.status == 409 && third.code == "HOLD_LIMIT_REACHED")
            #expect(try await api.call(.delete, "/v1/reservations/\(second.int("id")!)", user: 5).status == 204)
            #expect(try await api.hold(concert.scheduleId, seat: 3, user: 5, token: token).status == 201)
        }
    }

    @Test(arguments: TestBackend.all) func listingShowingAndCancelling(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 9, user: 5, token: token)
            let id = hold.int("id")!
            let list = try await api.call(.get, "/v1/reservations", user: 5)
            #expect(list.array("reservations").count == 1)
            #expect(try await api.call(.get, "/v1/reservations/\(id)", user: 5).int("seatNumber") == 9)
            #expect(try await api.call(.get, "/v1/reservations/\(id)", user: 6).code == "RESERVATION_NOT_FOUND")
            #expect(try await api.call(.get, "/v1/reservations/\(id)", user: 6).status == 404)
            #expect(try await api.call(.delete, "/v1/reservations/\(id)", user: 6).code == "RESERVATION_NOT_FOUND")
            #expect(try await api.call(.delete, "/v1/reservations/\(id)", user: 5).status == 204)
            let cancelled = try await api.call(.get, "/v1/reservations/\(id)", user: 5)
            #expect(cancelled.string("status") == "CANCELLED" && cancelled["paymentId"] is NSNull)
            #expect(try await api.call(.get, "/v1/reservations", user: 5).array("reservations").first?["paymentId"] is NSNull)
            #expect(try await api.seatStatus(concert.scheduleId, seat: 9, user: 5, token: token) == "AVAILABLE")
            let again = try await api.call(.delete, "/v1/reservations/\(id)", user: 5)
            #expect(again.status == 409 && again.code == "RESERVATION_NOT_HELD")
            #expect(try await api.call(.get, "/v1/reservations/abc", user: 5).status == 404)
        }
    }

    @Test(arguments: TestBackend.all) func malformedHoldBodiesAre400AndChangeNothing(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            for body in [#"{"scheduleId": "1", "seatNumber": 1}"#, #"{"seatNumber": 1}"#, #"{"scheduleId": 1, "seatNumber": null}"#,
                         #"not json"#, #""#, #"{"scheduleId": 1, "seatNumber": 1.5}"#] {
                let reply = try await api.call(.post, "/v1/reservations", user: 5, queueToken: token, json: body)
                #expect(reply.status == 400 && reply.code == "MALFORMED_REQUEST", "\(body)")
            }
            #expect(try await api.call(.get, "/v1/reservations", user: 5).array("reservations").isEmpty)
        }
    }
}
