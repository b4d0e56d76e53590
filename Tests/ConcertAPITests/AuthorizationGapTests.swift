import ConcertAPI
import ConcertTestSupport
import Foundation
import Synchronization
import Testing

/// OWASP API items that had no test of their own (docs/security.md): another user's payment,
/// properties a client may not set, the admin-only schedule route, and what a 500 reveals.
@Suite("Object, property and function level authorization")
struct AuthorizationGapTests {
    @Test(arguments: TestBackend.all) func anotherUsersPaymentIsNotFound(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let (concertId, scheduleId) = try await api.openConcert(price: 100)
            let token = try await api.activeToken(concertId, user: 5)
            _ = try await api.charge(100, user: 5)
            let held = try await api.hold(scheduleId, seat: 3, user: 5, token: token)
            let paid = try await api.pay(held.int("id")!, user: 5, token: token)
            let paymentId = try #require(paid.int("id"))
            #expect(try await api.call(.get, "/v1/payments/\(paymentId)", user: 5).status == 200)
            let foreign = try await api.call(.get, "/v1/payments/\(paymentId)", user: 6)
            #expect(foreign.status == 404 && foreign.code == "PAYMENT_NOT_FOUND", "no hint that it exists")
            let foreignReservation = try await api.call(.get, "/v1/reservations/\(held.int("id")!)", user: 6)
            #expect(foreignReservation.status == 404 && foreignReservation.code == "RESERVATION_NOT_FOUND")
        }
    }

    @Test(arguments: TestBackend.all) func propertiesAClientMayNotSetAreIgnored(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let (concertId, scheduleId) = try await api.openConcert(price: 700)
            let token = try await api.activeToken(concertId, user: 5)
            let hold = try await api.call(.post, "/v1/reservations", user: 5, queueToken: token, json: """
                {"scheduleId": \(scheduleId), "seatNumber": 4, "status": "CONFIRMED", "price": 0, "userId": 6, "id": 999,
                 "heldUntil": "2099-01-01T00:00:00Z"}
                """)
            #expect(hold.status == 201)
            #expect(hold.string("status") == "HELD" && hold.int("price") == 700 && hold.int("id") != 999)
            #expect(hold.string("heldUntil") != "2099-01-01T00:00:00Z")
            #expect(try await api.call(.get, "/v1/reservations", user: 6).array("reservations").isEmpty, "not user 6's")
            let charge = try await api.call(.post, "/v1/points/charges", user: 5, json: #"{"amount": 10, "balance": 1000000, "userId": 6}"#)
            #expect(charge.status == 200 && charge.int("balance") == 10)
            #expect(try await api.call(.get, "/v1/points", user: 6).int("balance") == 0)
            // Nothing private comes back: a reservation says nothing about who holds it.
            #expect(hold["userId"] == nil)
        }
    }

    @Test func creatingAScheduleNeedsTheAdminRole() async throws {
        try await withAPI { api in
            let (concertId, _) = try await api.openConcert()
            let body = #"{"startsAt": "\#(api.time(86_400))", "price": 10, "seatCount": 5}"#
            let user = try await api.call(.post, "/v1/admin/concerts/\(concertId)/schedules", user: 5, json: body)
            #expect(user.status == 403 && user.code == "FORBIDDEN")
            let anonymous = try await api.call(.post, "/v1/admin/concerts/\(concertId)/schedules", json: body)
            #expect(anonymous.status == 401)
            let schedules = try await api.call(.get, "/v1/admin/concerts/\(concertId)/stats", user: 1, admin: true)
            #expect(schedules.int("totalSeats") == 50, "only the schedule openConcert made")
        }
    }

    /// A real internal fault (a table gone under the running service): the answer is a generic
    /// 500 INTERNAL problem with no SQL, table name or error text, and the fault is logged.
    @Test(.enabled(if: TestServices.postgresURL != nil || TestServices.required))
    func anInternalFaultAnswersAGeneric500AndIsLogged() async throws {
        let databaseURL = Mutex<String?>(nil)
        let errorLog = ErrorLogRecorder()
        try await withAPI(.postgres, errorLog: errorLog, configure: { config in databaseURL.withLock { $0 = config.databaseURL } }) { api in
            _ = try await api.charge(10, user: 5)
            let database = try TestDatabase(url: try #require(databaseURL.withLock { $0 }))
            _ = try await database.scalar("DROP TABLE point_entries CASCADE")
            let reply = try await api.call(.get, "/v1/points/history", user: 5)
            #expect(reply.status == 500 && reply.code == "INTERNAL")
            #expect(reply.headers[.contentType] == "application/problem+json")
            let text = String(decoding: reply.bytes, as: UTF8.self).lowercased()
            for leak in ["point_entries", "relation", "psql", "sql", "select", "postgres", "swift"] {
                #expect(!text.contains(leak), "the body mentions \(leak): \(text)")
            }
        }
        #expect(errorLog.recorded.contains { $0.contains("unexpected error") }, "logged for the operator: \(errorLog.recorded)")
    }
}
