import ConcertAPI
import ConcertDomain
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// A decoded response: status, headers and JSON body.
struct Reply: Sendable {
    var status: Int
    var headers: HTTPFields
    var bytes: [UInt8]

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }
    var code: String? { json["code"] as? String }
    subscript(key: String) -> Any? { json[key] }
    func int(_ key: String) -> Int64? { (json[key] as? NSNumber)?.int64Value }
    func string(_ key: String) -> String? { json[key] as? String }
    func array(_ key: String) -> [[String: Any]] { json[key] as? [[String: Any]] ?? [] }
}

/// Talks to an app under test as a given user.
struct API: Sendable {
    let client: any TestClientProtocol
    let clock: ManualClock

    func token(user: Int64, admin: Bool = false, ttl: Int64 = 3600) async throws -> String {
        try await testToken(user: user, admin: admin, ttl: ttl)
    }

    @discardableResult
    func call(_ method: HTTPRequest.Method, _ path: String, user: Int64? = nil, admin: Bool = false,
              queueToken: String? = nil, idempotencyKey: String? = nil, headers extra: HTTPFields = [:],
              json: String? = nil, rawBody: [UInt8]? = nil) async throws -> Reply {
        var headers = extra
        if let user { headers[.authorization] = "Bearer " + (try await token(user: user, admin: admin)) }
        if let queueToken { headers[HTTPField.Name("Queue-Token")!] = queueToken }
        if let idempotencyKey { headers[HTTPField.Name("Idempotency-Key")!] = idempotencyKey }
        var body: ByteBuffer?
        if let json {
            body = ByteBuffer(string: json)
            headers[.contentType] = "application/json"
        } else if let rawBody {
            body = ByteBuffer(bytes: rawBody)
        }
        return try await client.execute(uri: path, method: method, headers: headers, body: body) { response in
            Reply(status: Int(response.status.code), headers: response.headers, bytes: Array(buffer: response.body))
        }
    }

    func time(_ offsetSeconds: Int64) -> String {
        RFC3339.format(Timestamp(seconds: clock.now.milliseconds / 1000 + offsetSeconds))
    }

    /// Creates a concert whose booking window is open and one schedule in the future.
    func openConcert(seats: Int = 50, price: Int64 = 1000, opens: Int64 = -3600, closes: Int64 = 86_400,
                     startsIn: Int64 = 7 * 86_400) async throws -> (concertId: Int64, scheduleId: Int64) {
        let concert = try await call(.post, "/v1/admin/concerts", user: 1, admin: true,
                                     json: Fixture.concert(opensAt: time(opens), closesAt: time(closes)))
        #expect(concert.status == 201)
        let concertId = concert.int("id")!
        let schedule = try await call(.post, "/v1/admin/concerts/\(concertId)/schedules", user: 1, admin: true,
                                      json: Fixture.schedule(startsAt: time(startsIn), price: price, seats: seats))
        #expect(schedule.status == 201)
        return (concertId, schedule.int("id")!)
    }

    /// Joins the concert's line as `user` and returns the token.
    func join(_ concertId: Int64, user: Int64) async throws -> Reply {
        try await call(.post, "/v1/concerts/\(concertId)/queue/tokens", user: user)
    }

    func activeToken(_ concertId: Int64, user: Int64) async throws -> String {
        let reply = try await join(concertId, user: user)
        #expect(reply.string("status") == "ACTIVE", "user \(user) is not admitted: \(reply.json)")
        return reply.string("token")!
    }

    func hold(_ scheduleId: Int64, seat: Int, user: Int64, token: String) async throws -> Reply {
        try await call(.post, "/v1/reservations", user: user, queueToken: token,
                       json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(seat)}"#)
    }

    func charge(_ amount: Int64, user: Int64, key: String? = nil) async throws -> Reply {
        try await call(.post, "/v1/points/charges", user: user, idempotencyKey: key, json: #"{"amount": \#(amount)}"#)
    }

    func pay(_ reservationId: Int64, user: Int64, token: String?, key: String? = nil) async throws -> Reply {
        try await call(.post, "/v1/payments", user: user, queueToken: token, idempotencyKey: key,
                       json: #"{"reservationId": \#(reservationId)}"#)
    }

    func seatStatus(_ scheduleId: Int64, seat: Int, user: Int64, token: String) async throws -> String? {
        let reply = try await call(.get, "/v1/schedules/\(scheduleId)/seats", user: user, queueToken: token)
        return reply.array("seats").first { ($0["number"] as? Int) == seat }?["status"] as? String
    }
}
