import ConcertDomain
import Foundation
import Testing

@Suite("Points and payments")
struct PointsAndPaymentTests {
    @Test(arguments: TestBackend.all) func chargesAddUpAndHistoryIsNewestFirst(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 0)
            #expect(try await api.charge(1000, user: 5).int("balance") == 1000)
            #expect(try await api.charge(250, user: 5).int("balance") == 1250)
            let history = try await api.call(.get, "/v1/points/history", user: 5).array("entries")
            #expect(history.map { $0["amount"] as? Int } == [250, 1000])
            #expect(history.map { $0["balanceAfter"] as? Int } == [1250, 1000])
            #expect(history.allSatisfy { $0["type"] as? String == "CHARGE" && $0["createdAt"] is String && $0["id"] != nil })
            #expect(try await api.call(.get, "/v1/points", user: 6).int("balance") == 0, "wallets are per user")
        }
    }

    @Test(arguments: TestBackend.all) func invalidAmountsAre422AndChangeNothing(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.rules.maxCharge = 10_000_000 }) { api in
            for amount in [0, -1, 10_000_001] as [Int64] {
                let reply = try await api.charge(amount, user: 5)
                #expect(reply.status == 422 && reply.code == "INVALID_AMOUNT", "amount \(amount)")
            }
            for _ in 0..<100 { _ = try await api.charge(10_000_000, user: 5) }
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 1_000_000_000)
            let over = try await api.charge(1, user: 5)
            #expect(over.code == "INVALID_AMOUNT", "the balance may not pass 1,000,000,000")
            for body in [#"{"amount": "5"}"#, #"{}"#, #"{"amount": 1.5}"#, #"{"amount": 99999999999999999999999}"#, "{"] {
                #expect(try await api.call(.post, "/v1/points/charges", user: 5, json: body).code == "MALFORMED_REQUEST", "\(body)")
            }
            #expect(try await api.call(.get, "/v1/points/history", user: 5).array("entries").count == 100)
        }
    }

    @Test(arguments: TestBackend.all) func aBodyOver64KiBIs413(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let padding = String(repeating: " ", count: 70 * 1024)
            let reply = try await api.call(.post, "/v1/points/charges", user: 5, json: #"{"amount": 5\#(padding)}"#)
            #expect(reply.status == 413 && reply.code == "PAYLOAD_TOO_LARGE")
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 0)
        }
    }

    @Test(arguments: TestBackend.all) func payingConfirmsSellsDeductsAndEndsTheQueueToken(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 3000)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 4, user: 5, token: token)
            _ = try await api.charge(5000, user: 5)
            let paid = try await api.pay(hold.int("id")!, user: 5, token: token)
            #expect(paid.status == 201)
            #expect(paid.string("status") == "PAID")
            #expect(paid.int("amount") == 3000)
            #expect(paid.int("balance") == 2000)
            #expect(paid.int("reservationId") == hold.int("id"))
            #expect(paid.string("paidAt") != nil)
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 2000)
            #expect(try await api.call(.get, "/v1/reservations/\(hold.int("id")!)", user: 5).string("status") == "CONFIRMED")
            let history = try await api.call(.get, "/v1/points/history", user: 5).array("entries")
            #expect(history.first?["type"] as? String == "PAYMENT")
            #expect(history.first?["amount"] as? Int == -3000)
            #expect(history.compactMap { $0["amount"] as? Int }.reduce(0, +) == 2000)
            // The queue token ended with the payment.
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 5, queueToken: token).code == "QUEUE_TOKEN_INVALID")
            let fresh = try await api.activeToken(concert.concertId, user: 6)
            #expect(try await api.seatStatus(concert.scheduleId, seat: 4, user: 6, token: fresh) == "SOLD")
            let shown = try await api.call(.get, "/v1/payments/\(paid.int("id")!)", user: 5)
            #expect(shown.status == 200 && shown.int("amount") == 3000 && shown.string("status") == "PAID")
            #expect(try await api.call(.get, "/v1/payments/\(paid.int("id")!)", user: 6).code == "PAYMENT_NOT_FOUND")
            #expect(try await api.call(.get, "/v1/payments/999", user: 5).code == "PAYMENT_NOT_FOUND")
            // Paying again is refused as such, even though the token has ended.
            let again = try await api.pay(hold.int("id")!, user: 5, token: token)
            #expect(again.status == 409 && again.code == "RESERVATION_ALREADY_PAID")
        }
    }

    @Test(arguments: TestBackend.all) func insufficientPointsIs402AndChangesNothing(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 3000)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 4, user: 5, token: token)
            _ = try await api.charge(2999, user: 5)
            let reply = try await api.pay(hold.int("id")!, user: 5, token: token)
            #expect(reply.status == 402 && reply.code == "INSUFFICIENT_POINTS")
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 2999)
            #expect(try await api.call(.get, "/v1/reservations/\(hold.int("id")!)", user: 5).string("status") == "HELD")
            #expect(try await api.seatStatus(concert.scheduleId, seat: 4, user: 5, token: token) == "HELD")
            #expect(try await api.call(.get, "/v1/points/history", user: 5).array("entries").count == 1)
            _ = try await api.charge(1, user: 5)
            #expect(try await api.pay(hold.int("id")!, user: 5, token: token).status == 201)
        }
    }

    @Test(arguments: TestBackend.all) func aHoldNotPaidInTimeIs410AndTheSeatIsFree(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.rules.holdMilliseconds = 60_000 }) { api in
            let concert = try await api.openConcert(price: 3000)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 4, user: 5, token: token)
            _ = try await api.charge(5000, user: 5)
            api.clock.advance(seconds: 60)
            let reply = try await api.pay(hold.int("id")!, user: 5, token: token)
            #expect(reply.status == 410 && reply.code == "RESERVATION_EXPIRED")
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 5000)
            #expect(try await api.seatStatus(concert.scheduleId, seat: 4, user: 5, token: token) == "AVAILABLE")
            #expect(try await api.call(.get, "/v1/reservations/\(hold.int("id")!)", user: 5).string("status") == "EXPIRED")
        }
    }

    @Test(arguments: TestBackend.all) func paymentNeedsTheCallersReservationAndAQueueToken(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 100)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let theirs = try await api.activeToken(concert.concertId, user: 6)
            let hold = try await api.hold(concert.scheduleId, seat: 4, user: 5, token: token)
            _ = try await api.charge(1000, user: 6)
            #expect(try await api.pay(hold.int("id")!, user: 6, token: theirs).code == "RESERVATION_NOT_FOUND")
            #expect(try await api.pay(999, user: 5, token: token).code == "RESERVATION_NOT_FOUND")
            let missing = try await api.pay(hold.int("id")!, user: 5, token: nil)
            #expect(missing.status == 401 && missing.code == "QUEUE_TOKEN_MISSING")
            #expect(try await api.pay(hold.int("id")!, user: 5, token: theirs).code == "QUEUE_TOKEN_INVALID")
            #expect(try await api.call(.post, "/v1/payments", user: 5, queueToken: token, json: #"{"reservationId": "x"}"#).code == "MALFORMED_REQUEST")
            _ = try await api.call(.delete, "/v1/reservations/\(hold.int("id")!)", user: 5)
            _ = try await api.charge(1000, user: 5)
            #expect(try await api.pay(hold.int("id")!, user: 5, token: token).code == "RESERVATION_NOT_HELD")
        }
    }
}

@Suite("Idempotency-Key")
struct IdempotencyTests {
    @Test(arguments: TestBackend.all) func aRepeatedChargeReplaysWithoutActingAgain(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let first = try await api.charge(700, user: 5, key: "charge-1")
            let second = try await api.charge(700, user: 5, key: "charge-1")
            #expect(first.status == 200 && second.status == 200)
            #expect(first.bytes == second.bytes)
            #expect(second.headers[.init("Idempotent-Replayed")!] == "true")
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 700)
            let reused = try await api.charge(800, user: 5, key: "charge-1")
            #expect(reused.status == 422 && reused.code == "IDEMPOTENCY_KEY_REUSED")
            // Keys are per user.
            #expect(try await api.charge(800, user: 6, key: "charge-1").int("balance") == 800)
        }
    }

    @Test(arguments: TestBackend.all) func aRepeatedPaymentReplaysAfterTheTokenEnded(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 300)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token)
            _ = try await api.charge(1000, user: 5)
            let first = try await api.pay(hold.int("id")!, user: 5, token: token, key: "pay-1")
            let second = try await api.pay(hold.int("id")!, user: 5, token: token, key: "pay-1")
            #expect(first.status == 201 && second.status == 201)
            #expect(first.bytes == second.bytes)
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 700)
            #expect(try await api.call(.get, "/v1/points/history", user: 5).array("entries").count == 2)
        }
    }

    @Test(arguments: TestBackend.all) func aFailedRequestFreesItsKey(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(price: 300)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let hold = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token)
            #expect(try await api.pay(hold.int("id")!, user: 5, token: token, key: "k").code == "INSUFFICIENT_POINTS")
            _ = try await api.charge(300, user: 5)
            #expect(try await api.pay(hold.int("id")!, user: 5, token: token, key: "k").status == 201)
        }
    }

    @Test(arguments: TestBackend.all) func keysMustBePrintableAsciiUpTo255(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let tooLong = try await api.charge(5, user: 5, key: String(repeating: "k", count: 256))
            #expect(tooLong.code == "VALIDATION_FAILED")
            let longest = try await api.charge(5, user: 5, key: String(repeating: "k", count: 255))
            #expect(longest.status == 200)
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 5)
        }
    }

    @Test(arguments: TestBackend.all) func concurrentRepeatsActOnce(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let replies = try await withThrowingTaskGroup(of: Reply.self) { group in
                for _ in 0..<20 { group.addTask { try await api.charge(100, user: 5, key: "same") } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(replies.allSatisfy { $0.status == 200 || $0.code == "IDEMPOTENCY_KEY_IN_USE" })
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 100)
            #expect(try await api.call(.get, "/v1/points/history", user: 5).array("entries").count == 1)
        }
    }
}
