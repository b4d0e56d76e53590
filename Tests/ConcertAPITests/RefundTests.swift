import ConcertAPI
import ConcertDomain
import Foundation
import Testing

/// `POST /v1/payments/{id}/refund` and `POST /v1/admin/schedules/{id}/cancel`.
@Suite("Refunds and cancelled dates")
struct RefundTests {
    /// `user` holds `seat` and pays for it; returns the payment's answer and the reservation id.
    private func buy(_ api: API, concertId: Int64, scheduleId: Int64, seat: Int, user: Int64, points: Int64 = 5000,
                     key: String? = nil) async throws -> (payment: Reply, reservationId: Int64) {
        let token = try await api.activeToken(concertId, user: user)
        let hold = try await api.hold(scheduleId, seat: seat, user: user, token: token)
        #expect(hold.status == 201, "\(hold.json)")
        _ = try await api.charge(points, user: user)
        let paid = try await api.pay(hold.int("id")!, user: user, token: token, key: key)
        #expect(paid.status == 201, "\(paid.json)")
        return (paid, hold.int("id")!)
    }

    private func refund(_ api: API, _ paymentId: Int64, user: Int64, key: String? = nil, json: String? = nil) async throws -> Reply {
        try await api.call(.post, "/v1/payments/\(paymentId)/refund", user: user, idempotencyKey: key, json: json)
    }

    @Test(arguments: TestBackend.all) func aRefundGivesThePointsBackAndFreesTheSeat(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 3000)
            let (paid, reservationId) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: 4, user: 5)
            // The payment's answer carries the new fields, refundedAt null while PAID.
            #expect(paid.string("status") == "PAID")
            #expect(paid.json.keys.contains("refundedAt") && paid["refundedAt"] is NSNull)
            let paymentId = paid.int("id")!
            let shown = try await api.call(.get, "/v1/payments/\(paymentId)", user: 5)
            #expect(shown.string("status") == "PAID" && shown["refundedAt"] is NSNull)
            // The reservation names its payment (what the fan page's refund button needs), listed too.
            let confirmed = try await api.call(.get, "/v1/reservations/\(reservationId)", user: 5)
            #expect(confirmed.string("status") == "CONFIRMED" && confirmed.int("paymentId") == paymentId)
            let listed = try await api.call(.get, "/v1/reservations", user: 5).array("reservations")
            #expect((listed.first?["paymentId"] as? NSNumber)?.int64Value == paymentId)

            let refunded = try await refund(api, paymentId, user: 5)
            #expect(refunded.status == 201, "\(refunded.json)")
            #expect(Set(refunded.json.keys) == ["id", "paymentId", "reservationId", "amount", "refundedAt", "balance"])
            #expect(refunded.int("paymentId") == paymentId && refunded.int("reservationId") == reservationId)
            #expect(refunded.int("amount") == 3000 && refunded.int("balance") == 5000)
            #expect(refunded.string("refundedAt") == RFC3339.format(api.clock.now))
            #expect((refunded.int("id") ?? 0) > 0)

            let after = try await api.call(.get, "/v1/payments/\(paymentId)", user: 5)
            #expect(after.string("status") == "REFUNDED" && after.string("refundedAt") == refunded.string("refundedAt"))
            let cancelled = try await api.call(.get, "/v1/reservations/\(reservationId)", user: 5)
            #expect(cancelled.string("status") == "CANCELLED" && cancelled.int("paymentId") == paymentId, "still names the refunded payment")
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 5000)
            let history = try await api.call(.get, "/v1/points/history", user: 5).array("entries")
            #expect(history.first?["type"] as? String == "REFUND" && history.first?["amount"] as? Int == 3000)
            #expect((history.first?["id"] as? NSNumber)?.int64Value == refunded.int("id"))
            #expect(history.compactMap { $0["amount"] as? Int }.reduce(0, +) == 5000)
            let other = try await api.activeToken(concert.concertId, user: 6)
            #expect(try await api.seatStatus(concert.scheduleId, seat: 4, user: 6, token: other) == "AVAILABLE")
            let schedules = try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 6, queueToken: other)
            #expect(schedules.array("schedules").first?["availableSeats"] as? Int == 50)
        }
    }

    @Test(arguments: TestBackend.all) func refusedRefundsChangeNothing(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            // Starts a day and a minute from now.
            let concert = try await api.openConcert(price: 3000, startsIn: 86_400 + 60)
            let (paid, _) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: 1, user: 5)
            let paymentId = paid.int("id")!
            func unchanged() async throws {
                #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 2000)
                #expect(try await api.call(.get, "/v1/payments/\(paymentId)", user: 5).string("status") == "PAID")
            }
            let notMine = try await refund(api, paymentId, user: 6)
            #expect(notMine.status == 404 && notMine.code == "PAYMENT_NOT_FOUND")
            for path in ["/v1/payments/99999/refund", "/v1/payments/abc/refund", "/v1/payments/0/refund", "/v1/payments/-1/refund"] {
                let reply = try await api.call(.post, path, user: 5)
                #expect(reply.status == 404 && reply.code == "PAYMENT_NOT_FOUND", "\(path)")
            }
            for body in ["{", "[]", "5", #""x""#] {
                let reply = try await refund(api, paymentId, user: 5, json: body)
                #expect(reply.status == 400 && reply.code == "MALFORMED_REQUEST", "\(body)")
            }
            let badKey = try await refund(api, paymentId, user: 5, key: String(repeating: "k", count: 256))
            #expect(badKey.status == 422 && badKey.code == "VALIDATION_FAILED")
            let anonymous = try await api.call(.post, "/v1/payments/\(paymentId)/refund")
            #expect(anonymous.status == 401 && anonymous.code == "UNAUTHENTICATED")
            let wrongMethod = try await api.call(.get, "/v1/payments/\(paymentId)/refund", user: 5)
            #expect(wrongMethod.status == 405 && wrongMethod.code == "METHOD_NOT_ALLOWED")
            try await unchanged()

            // From CONCERT_REFUND_CUTOFF_SECONDS (default 86,400) before the start on: 409.
            api.clock.advance(seconds: 60)
            let late = try await refund(api, paymentId, user: 5, key: "late")
            #expect(late.status == 409 && late.code == "REFUND_NOT_ALLOWED")
            try await unchanged()
            api.clock.advance(seconds: -1)
            let inTime = try await refund(api, paymentId, user: 5, json: "{}")
            #expect(inTime.status == 201)
            let again = try await refund(api, paymentId, user: 5)
            #expect(again.status == 409 && again.code == "PAYMENT_ALREADY_REFUNDED")
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 5000)
            #expect(try await api.call(.get, "/v1/points/history", user: 5).array("entries").count == 3)
        }
    }

    @Test(arguments: TestBackend.all) func theCutoffIsASetting(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.rules.refundCutoffMilliseconds = 8 * 86_400_000 }) { api in
            let concert = try await api.openConcert(price: 3000, startsIn: 7 * 86_400)
            let (paid, _) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: 1, user: 5)
            #expect(try await refund(api, paid.int("id")!, user: 5).code == "REFUND_NOT_ALLOWED")
        }
        let config = try AppConfig.fromEnvironment(["CONCERT_REFUND_CUTOFF_SECONDS": "3600"])
        #expect(config.rules.refundCutoffMilliseconds == 3_600_000)
        #expect(try AppConfig.fromEnvironment([:]).rules.refundCutoffMilliseconds == 86_400_000)
        #expect(throws: ConfigError.self) { try AppConfig.fromEnvironment(["CONCERT_REFUND_CUTOFF_SECONDS": "-1"]) }
    }

    @Test(arguments: TestBackend.all) func refundsHonourIdempotencyKeys(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 1000)
            let (first, _) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: 1, user: 5)
            let (second, _) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: 2, user: 5, points: 0)
            // A refused refund stores nothing: its key is free for another request afterwards.
            let refused = try await refund(api, 999_999, user: 5, key: "k0")
            #expect(refused.status == 404 && refused.code == "PAYMENT_NOT_FOUND")

            let original = try await refund(api, first.int("id")!, user: 5, key: "k1")
            #expect(original.status == 201)
            api.clock.advance(seconds: 5)
            let replay = try await refund(api, first.int("id")!, user: 5, key: "k1")
            #expect(replay.status == 201 && replay.bytes == original.bytes)
            #expect(replay.headers[.init("Idempotent-Replayed")!] == "true")
            let replayWithEmptyObject = try await refund(api, first.int("id")!, user: 5, key: "k1", json: "{}")
            #expect(replayWithEmptyObject.status == 201 && replayWithEmptyObject.bytes == original.bytes)
            // The same key on another payment's refund path is another request: 422, nothing refunded.
            let reused = try await refund(api, second.int("id")!, user: 5, key: "k1")
            #expect(reused.status == 422 && reused.code == "IDEMPOTENCY_KEY_REUSED")
            let onPayments = try await api.pay(1, user: 5, token: nil, key: "k1")
            #expect(onPayments.code == "IDEMPOTENCY_KEY_REUSED")
            #expect(try await api.call(.get, "/v1/payments/\(second.int("id")!)", user: 5).string("status") == "PAID")
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 4000)

            let later = try await refund(api, second.int("id")!, user: 5, key: "k0")
            #expect(later.status == 201 && later.int("paymentId") == second.int("id"))
            let history = try await api.call(.get, "/v1/points/history", user: 5).array("entries")
            #expect(history.filter { $0["type"] as? String == "REFUND" }.count == 2)
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 5000)
        }
    }

    @Test(arguments: TestBackend.all) func paymentReplaysCarryStatusAndRefundedAt(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 1000)
            let (paid, reservationId) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId,
                                                      seat: 1, user: 5, key: "pay-1")
            let replay = try await api.pay(reservationId, user: 5, token: nil, key: "pay-1")
            #expect(replay.status == 201 && replay.bytes == paid.bytes)
            #expect(replay.string("status") == "PAID" && replay.json.keys.contains("refundedAt") && replay["refundedAt"] is NSNull)
        }
    }

    @Test(arguments: TestBackend.races) func concurrentRefundsOfOnePaymentRefundOnce(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 1000)
            let (paid, _) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: 1, user: 5)
            let paymentId = paid.int("id")!
            let statuses = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for index in 0..<16 {
                    group.addTask {
                        let reply = try await api.call(.post, "/v1/payments/\(paymentId)/refund", user: 5,
                                                       idempotencyKey: index % 2 == 0 ? "same" : nil)
                        return (reply.status, reply.code)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let created = statuses.filter { $0.0 == 201 }.count
            // The keyed ones that came after the refund replay it (201); the others are refused.
            #expect(created >= 1)
            #expect(statuses.allSatisfy { $0.0 == 201 || $0.1 == "PAYMENT_ALREADY_REFUNDED" || $0.1 == "IDEMPOTENCY_KEY_IN_USE" },
                    "\(statuses)")
            let history = try await api.call(.get, "/v1/points/history", user: 5).array("entries")
            #expect(history.filter { $0["type"] as? String == "REFUND" }.count == 1)
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 5000)
        }
    }

    @Test(arguments: TestBackend.all) func cancellingADateRefundsReleasesAndHidesIt(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(seats: 10, price: 1000)
            let later = try await api.call(.post, "/v1/admin/concerts/\(concert.concertId)/schedules", user: 1, admin: true,
                                           json: Fixture.schedule(startsAt: api.time(8 * 86_400), price: 500, seats: 5))
            let laterId = later.int("id")!
            let (paid5, _) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: 1, user: 5)
            let (paid6, _) = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: 2, user: 6)
            let holder = try await api.activeToken(concert.concertId, user: 7)
            let hold = try await api.hold(concert.scheduleId, seat: 3, user: 7, token: holder)
            _ = try await api.charge(1000, user: 7)
            let watcher = try await api.activeToken(concert.concertId, user: 8)
            // Fill the cache with the schedule list before the cancel.
            let before = try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 8, queueToken: watcher)
            #expect(before.array("schedules").count == 2)

            let forbidden = try await api.call(.post, "/v1/admin/schedules/\(concert.scheduleId)/cancel", user: 5)
            #expect(forbidden.status == 403 && forbidden.code == "FORBIDDEN")
            let unknown = try await api.call(.post, "/v1/admin/schedules/99999/cancel", user: 1, admin: true)
            #expect(unknown.status == 404 && unknown.code == "SCHEDULE_NOT_FOUND")
            let garbage = try await api.call(.post, "/v1/admin/schedules/abc/cancel", user: 1, admin: true)
            #expect(garbage.status == 404 && garbage.code == "SCHEDULE_NOT_FOUND")
            #expect(try await api.call(.get, "/v1/payments/\(paid5.int("id")!)", user: 5).string("status") == "PAID")

            let cancelled = try await api.call(.post, "/v1/admin/schedules/\(concert.scheduleId)/cancel", user: 1, admin: true)
            #expect(cancelled.status == 200, "\(cancelled.json)")
            #expect(Set(cancelled.json.keys) == ["scheduleId", "refunded", "released"])
            #expect(cancelled.int("scheduleId") == concert.scheduleId && cancelled.int("refunded") == 2 && cancelled.int("released") == 1)
            let again = try await api.call(.post, "/v1/admin/schedules/\(concert.scheduleId)/cancel", user: 1, admin: true)
            #expect(again.status == 200 && again.int("refunded") == 0 && again.int("released") == 0)

            for (user, paid) in [(Int64(5), paid5), (6, paid6)] {
                let payment = try await api.call(.get, "/v1/payments/\(paid.int("id")!)", user: user)
                #expect(payment.string("status") == "REFUNDED" && payment.string("refundedAt") != nil)
                #expect(try await api.call(.get, "/v1/points", user: user).int("balance") == 5000)
            }
            #expect(try await api.call(.get, "/v1/reservations/\(hold.int("id")!)", user: 7).string("status") == "CANCELLED")
            let schedules = try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 8, queueToken: watcher)
            #expect(schedules.array("schedules").compactMap { ($0["id"] as? NSNumber)?.int64Value } == [laterId])
            let map = try await api.call(.get, "/v1/schedules/\(concert.scheduleId)/seats", user: 8, queueToken: watcher)
            #expect(map.status == 404 && map.code == "SCHEDULE_NOT_FOUND")
            let newHold = try await api.hold(concert.scheduleId, seat: 9, user: 8, token: watcher)
            #expect(newHold.status == 404 && newHold.code == "SCHEDULE_NOT_FOUND")
            let payReleased = try await api.pay(hold.int("id")!, user: 7, token: holder)
            #expect(payReleased.status == 409 && payReleased.code == "RESERVATION_NOT_HELD")
            #expect(try await api.call(.get, "/v1/points", user: 7).int("balance") == 1000)
            let refundAgain = try await refund(api, paid5.int("id")!, user: 5)
            #expect(refundAgain.code == "PAYMENT_ALREADY_REFUNDED")
            let stats = try await api.call(.get, "/v1/admin/concerts/\(concert.concertId)/stats", user: 1, admin: true)
            #expect(stats.int("totalSeats") == 5 && stats.int("seatsSold") == 0)
        }
    }

    @Test(arguments: TestBackend.all) func aConcertWhoseOnlyDateIsCancelledLeavesTheList(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert()
            let listed = try await api.call(.get, "/v1/concerts")
            #expect(listed.array("concerts").contains { ($0["id"] as? NSNumber)?.int64Value == concert.concertId })
            #expect(try await api.call(.post, "/v1/admin/schedules/\(concert.scheduleId)/cancel", user: 1, admin: true).status == 200)
            let after = try await api.call(.get, "/v1/concerts")
            #expect(!after.array("concerts").contains { ($0["id"] as? NSNumber)?.int64Value == concert.concertId })
        }
    }

    @Test(arguments: TestBackend.races) func twoRacingCancelsRefundEachSeatOnce(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(seats: 10, price: 1000)
            for user in Int64(5)...8 {
                _ = try await buy(api, concertId: concert.concertId, scheduleId: concert.scheduleId, seat: Int(user), user: user)
            }
            let replies = try await withThrowingTaskGroup(of: Reply.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await api.call(.post, "/v1/admin/schedules/\(concert.scheduleId)/cancel", user: 1, admin: true)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(replies.allSatisfy { $0.status == 200 })
            #expect(replies.compactMap { $0.int("refunded") }.reduce(0, +) == 4)
            #expect(replies.filter { $0.int("refunded") == 0 }.count == 3)
            for user in Int64(5)...8 {
                #expect(try await api.call(.get, "/v1/points", user: user).int("balance") == 5000)
                let history = try await api.call(.get, "/v1/points/history", user: user).array("entries")
                #expect(history.filter { $0["type"] as? String == "REFUND" }.count == 1)
            }
        }
    }
}
