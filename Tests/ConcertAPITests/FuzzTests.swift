@testable import ConcertAPI
import Foundation
import HTTPTypes
import Testing

/// A seeded generator (SplitMix64), so a failing case can be replayed from its seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random, mostly-wrong requests against every endpoint that takes input: bodies (wrong types,
/// missing and extra fields, huge and negative numbers, bad times, broken or deeply nested JSON,
/// random bytes) and headers (Authorization, Queue-Token, Idempotency-Key, Content-Type). Each
/// answer must be below 500, every error a well-formed problem+json with a contract code, and an
/// error must change nothing the caller can see. `CONCERT_FUZZ_SEED` and `CONCERT_FUZZ_CASES`
/// replay or lengthen a run.
@Suite("Fuzzed bodies and headers")
struct FuzzTests {
    static let contractCodes: Set<String> = [
        "MALFORMED_REQUEST", "VALIDATION_FAILED", "PAYLOAD_TOO_LARGE", "NOT_FOUND", "METHOD_NOT_ALLOWED", "UNAUTHENTICATED",
        "FORBIDDEN", "RATE_LIMITED", "SERVICE_UNAVAILABLE", "INTERNAL", "QUEUE_TOKEN_MISSING", "QUEUE_TOKEN_INVALID",
        "QUEUE_TOKEN_NOT_ACTIVE", "CONCERT_NOT_FOUND", "CONCERT_NOT_RESERVABLE", "SCHEDULE_NOT_FOUND", "SCHEDULE_NOT_RESERVABLE",
        "SEAT_UNAVAILABLE", "HOLD_LIMIT_REACHED", "RESERVATION_NOT_FOUND", "RESERVATION_NOT_HELD", "RESERVATION_EXPIRED",
        "RESERVATION_ALREADY_PAID", "INSUFFICIENT_POINTS", "INVALID_AMOUNT", "PAYMENT_NOT_FOUND", "IDEMPOTENCY_KEY_REUSED",
        "IDEMPOTENCY_KEY_IN_USE",
    ]

    /// What user 5 can see of the world; a rejected request must leave it as it was.
    static func snapshot(_ api: API, scheduleId: Int64, queueToken: String) async throws -> [String] {
        let paths = ["/v1/points", "/v1/points/history", "/v1/reservations", "/v1/schedules/\(scheduleId)/seats", "/v1/concerts"]
        var views: [String] = []
        for path in paths {
            let reply = try await api.call(.get, path, user: 5, queueToken: queueToken)
            // Errors carry a fresh requestId each time: compare what they say, not their bytes.
            views.append("\(path) \(reply.status) " + (reply.status < 300 ? String(decoding: reply.bytes, as: UTF8.self) : reply.code ?? ""))
        }
        return views
    }

    enum JSONValue {
        static let samples: [String] = [
            "null", "true", "false", "0", "-1", "1", "3", "50", "51", "1.5", "-0", "1e309", "-1e309", "9223372036854775807",
            "9223372036854775808", "-9223372036854775808", "99999999999999999999999999", "\"\"", "\"1\"", "\"abc\"",
            "\"\\u0000\"", "\"\\ud800\"", "[]", "{}", "[1,2]", "{\"a\":1}", "\"2026-12-24T19:00:00Z\"", "\"2026-02-30T25:61:00Z\"",
            "\"2026-12-24T19:00:00+09:00\"", "\"1999-01-01T00:00:00Z\"", "\"9999-12-31T23:59:59Z\"", "\"\(String(repeating: "é", count: 300))\"",
        ]
    }

    struct Endpoint {
        var method: HTTPRequest.Method
        var path: String
        var fields: [(String, String)]
        var needsAdmin = false
        var needsQueueToken = false
        var takesIdempotencyKey = false
    }

    static func body(for endpoint: Endpoint, using random: inout SeededGenerator) -> [UInt8]? {
        var fields = endpoint.fields
        switch Int.random(in: 0..<12, using: &random) {
        case 0: return nil
        case 1: return (0..<Int.random(in: 0..<200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        case 2: return Array(String(repeating: "[", count: 5000).utf8)
        case 3:
            let valid = "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
            return Array(valid.utf8.prefix(Int.random(in: 0...max(0, valid.utf8.count - 1), using: &random)))
        case 4 where !fields.isEmpty: fields.remove(at: Int.random(in: 0..<fields.count, using: &random))
        case 5: fields.append(("unexpected", JSONValue.samples.randomElement(using: &random)!))
        case 6 where !fields.isEmpty: fields.append(fields[0].0 == "amount" ? ("amount", "-5") : (fields[0].0, "null"))
        case 7: return Array("[\(fields.map(\.1).joined(separator: ","))]".utf8)
        default:
            for _ in 0..<Int.random(in: 1...2, using: &random) where !fields.isEmpty {
                let index = Int.random(in: 0..<fields.count, using: &random)
                fields[index].1 = JSONValue.samples.randomElement(using: &random)!
            }
        }
        return Array(("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}").utf8)
    }

    static func garbage(_ random: inout SeededGenerator) -> String {
        let alphabet = Array("abcXYZ0189-_.=+/ \t\"'{}é\u{7F}")
        return String((0..<Int.random(in: 0..<80, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
    }

    @Test(arguments: TestBackend.all) func fuzzedRequestsNeverFailTheServerAndRejectedOnesChangeNothing(backend: TestBackend) async throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["CONCERT_FUZZ_SEED"].flatMap(UInt64.init) ?? 20_261_124
        let cases = environment["CONCERT_FUZZ_CASES"].flatMap(Int.init) ?? (backend == .sqliteMemory ? 400 : 150)
        let errorLog = ErrorLogRecorder()
        try await withAPI(backend, errorLog: errorLog) { api in
            let (concertId, scheduleId) = try await api.openConcert(seats: 10, price: 1000)
            var queueToken = try await api.activeToken(concertId, user: 5)
            let otherToken = try await api.activeToken(concertId, user: 6)
            #expect(try await api.charge(5000, user: 5).status == 200)
            let held = try await api.hold(scheduleId, seat: 1, user: 5, token: queueToken)
            let reservationId = try #require(held.int("id"))
            let validJWT = try await api.token(user: 5)
            let adminJWT = try await api.token(user: 1, admin: true)
            let endpoints = [
                Endpoint(method: .post, path: "/v1/concerts/\(concertId)/queue/tokens", fields: []),
                Endpoint(method: .get, path: "/v1/queue/tokens/current", fields: [], needsQueueToken: true),
                Endpoint(method: .post, path: "/v1/reservations", fields: [("scheduleId", "\(scheduleId)"), ("seatNumber", "2")],
                         needsQueueToken: true),
                Endpoint(method: .delete, path: "/v1/reservations/\(reservationId + 1)", fields: []),
                Endpoint(method: .post, path: "/v1/points/charges", fields: [("amount", "10")], takesIdempotencyKey: true),
                Endpoint(method: .post, path: "/v1/payments", fields: [("reservationId", "\(reservationId)")],
                         needsQueueToken: true, takesIdempotencyKey: true),
                Endpoint(method: .post, path: "/v1/admin/concerts", fields: [
                    ("title", "\"T\""), ("artist", "\"A\""), ("venue", "\"V\""),
                    ("bookingOpensAt", "\"2020-01-01T00:00:00Z\""), ("bookingClosesAt", "\"2099-01-01T00:00:00Z\"")], needsAdmin: true),
                Endpoint(method: .post, path: "/v1/admin/concerts/\(concertId)/schedules", fields: [
                    ("startsAt", "\"2098-01-01T00:00:00Z\""), ("price", "100"), ("seatCount", "5")], needsAdmin: true),
                Endpoint(method: .get, path: "/v1/schedules/\(scheduleId)/seats", fields: [], needsQueueToken: true),
                Endpoint(method: .get, path: "/v1/concerts?limit=7", fields: []),
            ]
            var random = SeededGenerator(state: seed)
            var before = try await Self.snapshot(api, scheduleId: scheduleId, queueToken: queueToken)
            var statuses: [Int: Int] = [:]
            for number in 0..<cases {
                let endpoint = endpoints.randomElement(using: &random)!
                var headers = HTTPFields()
                switch Int.random(in: 0..<8, using: &random) {
                case 0: break
                case 1: headers[.authorization] = "Bearer " + Self.garbage(&random)
                case 2: headers[.authorization] = "Bearer " + String(validJWT.dropLast(Int.random(in: 1...10, using: &random)))
                case 3: headers[.authorization] = Self.garbage(&random)
                default: headers[.authorization] = "Bearer " + (endpoint.needsAdmin && Bool.random(using: &random) ? adminJWT : validJWT)
                }
                if endpoint.needsQueueToken || Int.random(in: 0..<4, using: &random) == 0 {
                    switch Int.random(in: 0..<6, using: &random) {
                    case 0: break
                    case 1: headers[HTTPField.Name("Queue-Token")!] = Self.garbage(&random)
                    case 2: headers[HTTPField.Name("Queue-Token")!] = otherToken
                    case 3: headers[HTTPField.Name("Queue-Token")!] = String(repeating: "q", count: Int.random(in: 200...5000, using: &random))
                    default: headers[HTTPField.Name("Queue-Token")!] = queueToken
                    }
                }
                if endpoint.takesIdempotencyKey || Int.random(in: 0..<4, using: &random) == 0 {
                    switch Int.random(in: 0..<4, using: &random) {
                    case 0: headers[HTTPField.Name("Idempotency-Key")!] = ""
                    case 1: headers[HTTPField.Name("Idempotency-Key")!] = String(repeating: "k", count: Int.random(in: 250...400, using: &random))
                    case 2: headers[HTTPField.Name("Idempotency-Key")!] = Self.garbage(&random)
                    default: break
                    }
                }
                let body = Self.body(for: endpoint, using: &random)
                switch Int.random(in: 0..<6, using: &random) {
                case 0: headers[.contentType] = "text/plain"
                case 1: headers[.contentType] = Self.garbage(&random)
                default: if body != nil { headers[.contentType] = "application/json" }
                }
                let reply = try await api.call(endpoint.method, endpoint.path, headers: headers, rawBody: body)
                statuses[reply.status, default: 0] += 1
                let label = "case \(number) (seed \(seed)): \(endpoint.method) \(endpoint.path) \(headers) body \(String(decoding: body ?? [], as: UTF8.self).prefix(120))"
                #expect(reply.status < 500, "\(label) → \(reply.status) \(reply.json)")
                let after = try await Self.snapshot(api, scheduleId: scheduleId, queueToken: queueToken)
                if reply.status >= 400 {
                    #expect(reply.headers[.contentType] == "application/problem+json", "\(label)")
                    #expect(reply.code.map { Self.contractCodes.contains($0) } == true, "\(label) → \(reply.json)")
                    #expect(reply.int("status") == Int64(reply.status) && reply.string("title") != nil
                            && reply.string("detail") != nil && reply.string("type") != nil, "\(label) → \(reply.json)")
                    #expect(after == before, "\(label) → \(reply.status) \(reply.code ?? "") changed what the user sees")
                }
                // One failure is enough to read; the cases after it would only repeat it.
                if reply.status >= 500 || (reply.status >= 400 && after != before) { break }
                before = after
                // A payment (or a fuzzed leave) ends user 5's token: join again to keep going.
                if after[3].contains(" 401 ") {
                    queueToken = try await api.activeToken(concertId, user: 5)
                    before = try await Self.snapshot(api, scheduleId: scheduleId, queueToken: queueToken)
                }
            }
            // The run exercised both sides: rejections and some requests that were valid enough.
            #expect(statuses.keys.contains { $0 >= 400 } && statuses.keys.contains { $0 < 300 }, "\(statuses)")
        }
        #expect(errorLog.recorded.isEmpty, "a client's mistakes are not logged as errors: \(errorLog.recorded.prefix(3))")
    }
}
