import Foundation
import Testing

@Suite("Concerts and schedules")
struct CatalogTests {
    @Test(arguments: TestBackend.all) func listShowsOnlyReservableConcertsInIdOrder(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let open = try await api.openConcert()
            _ = try await api.openConcert(opens: -7200, closes: -3600)  // window closed
            _ = try await api.openConcert(opens: 3600, closes: 7200)    // window not yet open
            _ = try await api.openConcert(startsIn: -60)                // only schedule already started
            let second = try await api.openConcert()
            let list = try await api.call(.get, "/v1/concerts")
            #expect(list.status == 200)
            let ids = list.array("concerts").compactMap { ($0["id"] as? NSNumber)?.int64Value }
            #expect(ids == [open.concertId, second.concertId])
            #expect(list.array("concerts").allSatisfy { $0["reservable"] as? Bool == true })
        }
    }

    @Test(arguments: TestBackend.all) func listPagesWithLimitAndAfter(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            var ids: [Int64] = []
            for _ in 0..<5 { ids.append(try await api.openConcert().concertId) }
            let first = try await api.call(.get, "/v1/concerts?limit=2")
            #expect(first.array("concerts").compactMap { ($0["id"] as? NSNumber)?.int64Value } == Array(ids[0..<2]))
            let next = try await api.call(.get, "/v1/concerts?limit=2&after=\(ids[1])")
            #expect(next.array("concerts").compactMap { ($0["id"] as? NSNumber)?.int64Value } == Array(ids[2..<4]))
            #expect(try await api.call(.get, "/v1/concerts?limit=0").code == "VALIDATION_FAILED")
            #expect(try await api.call(.get, "/v1/concerts?limit=501").code == "VALIDATION_FAILED")
            #expect(try await api.call(.get, "/v1/concerts?limit=abc").code == "MALFORMED_REQUEST")
            #expect(try await api.call(.get, "/v1/concerts?after=x").code == "MALFORMED_REQUEST")
        }
    }

    @Test(arguments: TestBackend.all) func cachedListIsInvalidatedByAdminWritesAndExpiresWhenAWindowCloses(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.cacheTTLMilliseconds = 3_600_000 }) { api in
            let first = try await api.openConcert(closes: 100)
            #expect(try await api.call(.get, "/v1/concerts").array("concerts").count == 1)
            let second = try await api.openConcert()
            #expect(try await api.call(.get, "/v1/concerts").array("concerts").count == 2, "admin write must invalidate")
            api.clock.advance(seconds: 101)
            let ids = try await api.call(.get, "/v1/concerts").array("concerts").compactMap { ($0["id"] as? NSNumber)?.int64Value }
            #expect(ids == [second.concertId], "concert \(first.concertId) closed but is still listed")
        }
    }

    @Test(arguments: TestBackend.all) func concertDetailsAndReservableFlag(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let open = try await api.openConcert()
            let shown = try await api.call(.get, "/v1/concerts/\(open.concertId)")
            #expect(shown.status == 200)
            #expect(shown["reservable"] as? Bool == true)
            for key in ["id", "title", "artist", "venue", "bookingOpensAt", "bookingClosesAt"] { #expect(shown[key] != nil) }
            let closed = try await api.openConcert(opens: -7200, closes: -3600)
            #expect(try await api.call(.get, "/v1/concerts/\(closed.concertId)")["reservable"] as? Bool == false)
            #expect(try await api.call(.get, "/v1/concerts/999").code == "CONCERT_NOT_FOUND")
            #expect(try await api.call(.get, "/v1/concerts/abc").status == 404)
        }
    }

    @Test(arguments: TestBackend.all) func adminCreateEchoesTimesAndValidates(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let created = try await api.call(.post, "/v1/admin/concerts", user: 1, admin: true, json: """
                {"title": " Gala ", "artist": "A", "venue": "V", "bookingOpensAt": "2026-12-01T10:00:00Z", "bookingClosesAt": "2026-12-24T19:00:00Z"}
                """)
            #expect(created.status == 201)
            #expect(created.string("title") == "Gala")
            #expect(created.string("bookingOpensAt") == "2026-12-01T10:00:00Z")
            #expect(created.string("bookingClosesAt") == "2026-12-24T19:00:00Z")
            let bad: [(String, String)] = [
                (#"{"title": "", "artist": "A", "venue": "V", "bookingOpensAt": "2026-12-01T10:00:00Z", "bookingClosesAt": "2026-12-24T19:00:00Z"}"#, "VALIDATION_FAILED"),
                (#"{"title": "T", "artist": "A", "venue": "V", "bookingOpensAt": "2026-12-25T10:00:00Z", "bookingClosesAt": "2026-12-24T19:00:00Z"}"#, "VALIDATION_FAILED"),
                (#"{"title": "T", "artist": "A", "venue": "V", "bookingOpensAt": "yesterday", "bookingClosesAt": "2026-12-24T19:00:00Z"}"#, "VALIDATION_FAILED"),
                (#"{"title": "T", "artist": "A", "venue": "V", "bookingOpensAt": "2026-12-01T10:00:00Z"}"#, "MALFORMED_REQUEST"),
                (#"{"title": 5, "artist": "A", "venue": "V", "bookingOpensAt": "2026-12-01T10:00:00Z", "bookingClosesAt": "2026-12-24T19:00:00Z"}"#, "MALFORMED_REQUEST"),
                (#"[1, 2]"#, "MALFORMED_REQUEST"),
                (#"{"title": "T\u0000", "artist": "A", "venue": "V", "bookingOpensAt": "2026-12-01T10:00:00Z", "bookingClosesAt": "2026-12-24T19:00:00Z"}"#, "VALIDATION_FAILED"),
                (#"{"title": "#, "MALFORMED_REQUEST"),
            ]
            for (body, code) in bad {
                let reply = try await api.call(.post, "/v1/admin/concerts", user: 1, admin: true, json: body)
                #expect(reply.code == code, "\(body)")
            }
            let concertId = created.int("id")!
            let schedules: [(String, Int, String?)] = [
                (#"{"startsAt": "2026-12-24T19:00:00Z", "price": 1000}"#, 201, nil),
                (#"{"startsAt": "2026-12-24T19:00:00Z", "price": 1000, "seatCount": 0}"#, 422, "VALIDATION_FAILED"),
                (#"{"startsAt": "2026-12-24T19:00:00Z", "price": 1000, "seatCount": 1001}"#, 422, "VALIDATION_FAILED"),
                (#"{"startsAt": "2026-12-24T19:00:00Z", "price": -1}"#, 422, "VALIDATION_FAILED"),
                (#"{"startsAt": "2026-12-24T19:00:00Z", "price": 1.5}"#, 400, "MALFORMED_REQUEST"),
            ]
            for (body, status, code) in schedules {
                let reply = try await api.call(.post, "/v1/admin/concerts/\(concertId)/schedules", user: 1, admin: true, json: body)
                #expect(reply.status == status, "\(body)")
                if let code { #expect(reply.code == code) }
            }
            let schedule = try await api.call(.post, "/v1/admin/concerts/\(concertId)/schedules", user: 1, admin: true,
                                              json: #"{"startsAt": "2026-12-24T19:00:00Z", "price": 1000}"#)
            #expect(schedule.int("totalSeats") == 50)
            #expect(schedule.string("startsAt") == "2026-12-24T19:00:00Z")
            let missing = try await api.call(.post, "/v1/admin/concerts/999/schedules", user: 1, admin: true,
                                             json: #"{"startsAt": "2026-12-24T19:00:00Z", "price": 1000}"#)
            #expect(missing.code == "CONCERT_NOT_FOUND")
        }
    }

    /// Found while adding the fuzz test: an offset carried year 0000 to -1 (and 9999 to 10000), and the
    /// answer echoed "00-1-12-31T23:30:00Z", a time that is not RFC 3339. Now 422, nothing stored.
    @Test(arguments: TestBackend.all) func timesOutsideFourDigitYearsAre422(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            for (opens, closes) in [("0000-01-01T00:30:00+01:00", "2026-12-24T19:00:00Z"),
                                    ("2026-12-01T10:00:00Z", "9999-12-31T23:30:00-01:00")] {
                let reply = try await api.call(.post, "/v1/admin/concerts", user: 1, admin: true, json: """
                    {"title": "T", "artist": "A", "venue": "V", "bookingOpensAt": "\(opens)", "bookingClosesAt": "\(closes)"}
                    """)
                #expect(reply.code == "VALIDATION_FAILED", "\(opens) \(closes): \(reply.status)")
            }
            let concert = try await api.call(.post, "/v1/admin/concerts", user: 1, admin: true, json: """
                {"title": "T", "artist": "A", "venue": "V", "bookingOpensAt": "0000-01-01T00:00:00Z", "bookingClosesAt": "9999-12-31T23:59:59Z"}
                """)
            #expect(concert.string("bookingOpensAt") == "0000-01-01T00:00:00Z")
            #expect(concert.string("bookingClosesAt") == "9999-12-31T23:59:59Z")
            let concertId = concert.int("id")!
            let schedule = try await api.call(.post, "/v1/admin/concerts/\(concertId)/schedules", user: 1, admin: true,
                                              json: #"{"startsAt": "9999-12-31T23:30:00-01:00", "price": 1000}"#)
            #expect(schedule.code == "VALIDATION_FAILED")
            let stats = try await api.call(.get, "/v1/admin/concerts/\(concertId)/stats", user: 1, admin: true)
            #expect(stats.int("totalSeats") == 0)
        }
    }

    @Test(arguments: TestBackend.all) func schedulesAndSeatsNeedAnActiveTokenForThatConcert(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(seats: 10, price: 3000)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let schedules = try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 5, queueToken: token)
            #expect(schedules.status == 200)
            let first = schedules.array("schedules").first
            #expect((first?["totalSeats"] as? Int) == 10)
            #expect((first?["availableSeats"] as? Int) == 10)
            let seats = try await api.call(.get, "/v1/schedules/\(concert.scheduleId)/seats", user: 5, queueToken: token)
            #expect(seats.int("scheduleId") == concert.scheduleId)
            #expect(seats.array("seats").map { $0["number"] as? Int } == Array(1...10))
            #expect(seats.array("seats").allSatisfy { $0["status"] as? String == "AVAILABLE" && ($0["price"] as? Int) == 3000 })

            #expect(try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 5).code == "QUEUE_TOKEN_MISSING")
            #expect(try await api.call(.get, "/v1/schedules/\(concert.scheduleId)/seats", user: 5, queueToken: "1.nope").code == "QUEUE_TOKEN_INVALID")
            #expect(try await api.call(.get, "/v1/schedules/\(concert.scheduleId)/seats", user: 6, queueToken: token).code == "QUEUE_TOKEN_INVALID")
            #expect(try await api.call(.get, "/v1/schedules/999/seats", user: 5, queueToken: token).code == "SCHEDULE_NOT_FOUND")
            #expect(try await api.call(.get, "/v1/concerts/999/schedules", user: 5, queueToken: token).code == "CONCERT_NOT_FOUND")
            let other = try await api.openConcert()
            #expect(try await api.call(.get, "/v1/concerts/\(other.concertId)/schedules", user: 5, queueToken: token).code == "QUEUE_TOKEN_INVALID")
        }
    }

    /// The schedule list is cached for a short while: a hold that runs out by itself (no write)
    /// shows only when the entry expires; holds and cancellations drop the entry at once.
    @Test(arguments: TestBackend.all) func scheduleListIsCachedBrieflyAndDroppedOnEveryHoldAndCancel(backend: TestBackend) async throws {
        try await withAPI(backend, configure: {
            $0.rules.holdMilliseconds = 1_000
            $0.scheduleCacheTTLMilliseconds = 10_000
        }) { api in
            let concert = try await api.openConcert(seats: 10)
            let token = try await api.activeToken(concert.concertId, user: 5)
            func available() async throws -> Int? {
                let reply = try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 5, queueToken: token)
                return reply.array("schedules").first?["availableSeats"] as? Int
            }
            #expect(try await available() == 10)
            let hold = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token)
            #expect(try await available() == 9, "a hold drops the cached list")
            #expect(try await api.call(.delete, "/v1/reservations/\(hold.int("id")!)", user: 5).status == 204)
            #expect(try await available() == 10, "a cancellation drops the cached list")
            _ = try await api.hold(concert.scheduleId, seat: 2, user: 5, token: token)
            #expect(try await available() == 9)
            api.clock.advance(seconds: 2)
            let cached = try await available()
            // Every backend caches, PostgreSQL alone too (its invalidations reach every instance).
            #expect(cached == 9, "served from the cache while the entry lives")
            #expect(try await api.seatStatus(concert.scheduleId, seat: 2, user: 5, token: token) == "AVAILABLE", "the seat map is never cached")
            api.clock.advance(seconds: 10)
            #expect(try await available() == 10)
        }
    }

    @Test(arguments: TestBackend.all) func schedulesOfAConcertWhoseWindowClosedAre409(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(closes: 60)
            let token = try await api.activeToken(concert.concertId, user: 5)
            api.clock.advance(seconds: 61)
            let reply = try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 5, queueToken: token)
            #expect(reply.status == 409 && reply.code == "CONCERT_NOT_RESERVABLE")
        }
    }
}
