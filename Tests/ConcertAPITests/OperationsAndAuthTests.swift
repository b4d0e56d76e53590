import ConcertAPI
import ConcertDomain
import ConcertServer
import Foundation
import HTTPTypes
import Testing

@Suite("Operations and identity")
struct OperationsAndAuthTests {
    @Test func healthReadinessAndOpenAPI() async throws {
        try await withAPI { api in
            #expect(try await api.call(.get, "/healthz").status == 200)
            #expect(try await api.call(.get, "/readyz").status == 200)
            let openapi = try await api.call(.get, "/openapi.yaml")
            #expect(openapi.status == 200)
            let text = String(decoding: openapi.bytes, as: UTF8.self)
            #expect(text.hasPrefix("openapi: 3.1"))
            #expect(text.contains("/v1/payments"))
        }
    }

    @Test func metricsCountRequestsPerRoute() async throws {
        try await withAPI { api in
            _ = try await api.call(.get, "/v1/concerts")
            let metrics = try await api.call(.get, "/metrics")
            #expect(metrics.status == 200)
            let text = String(decoding: metrics.bytes, as: UTF8.self)
            #expect(text.contains("hb_requests"))
            #expect(text.contains("http_server_request_duration_bucket"))
            #expect(text.contains("/v1/concerts"))
        }
    }

    @Test func metricsCountHoldsAndPaymentsByOutcome() async throws {
        try await withAPI { api in
            let concert = try await api.openConcert(price: 50)
            let token = try await api.activeToken(concert.concertId, user: 5)
            let other = try await api.activeToken(concert.concertId, user: 6)
            let hold = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: token)
            _ = try await api.hold(concert.scheduleId, seat: 1, user: 6, token: other)
            _ = try await api.pay(hold.int("id")!, user: 5, token: token)
            let text = String(decoding: try await api.call(.get, "/metrics").bytes, as: UTF8.self)
            #expect(text.contains(#"concertd_holds_total{outcome="ok"}"#))
            #expect(text.contains(#"concertd_holds_total{outcome="seat_unavailable"}"#))
            #expect(text.contains(#"concertd_payments_total{outcome="insufficient_points"}"#))
            // Answers are counted with their real status, not as 500.
            #expect(text.contains(#"http_response_status_code="409""#))
            #expect(text.contains(#"http_response_status_code="402""#))
        }
    }

    @Test func everyResponseCarriesARequestIdAndEchoesTheClients() async throws {
        try await withAPI { api in
            let echoed = try await api.call(.get, "/v1/concerts", headers: [HTTPField.Name("Request-Id")!: "abc-123 trace"])
            #expect(echoed.headers[HTTPField.Name("Request-Id")!] == "abc-123 trace")
            let missing = try await api.call(.get, "/nowhere")
            #expect(missing.status == 404)
            #expect(missing.code == "NOT_FOUND")
            #expect(missing.headers[.contentType] == "application/problem+json")
            #expect(!(missing.headers[HTTPField.Name("Request-Id")!] ?? "").isEmpty)
            for key in ["type", "title", "status", "detail", "code"] { #expect(missing[key] != nil, "\(key) missing") }
        }
    }

    @Test func wrongMethodOnAKnownRouteIs405WithAllow() async throws {
        try await withAPI { api in
            let reply = try await api.call(.put, "/v1/concerts/5")
            #expect(reply.status == 405)
            #expect(reply.code == "METHOD_NOT_ALLOWED")
            #expect(reply.headers[.allow] == "GET")
        }
    }

    @Test func missingMalformedBadlySignedOrExpiredTokensAre401() async throws {
        try await withAPI { api in
            #expect(try await api.call(.get, "/v1/points").code == "UNAUTHENTICATED")
            for header in ["Bearer", "Basic abc", "Bearer not.a.jwt", "Bearer " + String(repeating: "a", count: 5000)] {
                let reply = try await api.call(.get, "/v1/points", headers: [.authorization: header])
                #expect(reply.status == 401 && reply.code == "UNAUTHENTICATED", "\(header.prefix(20))")
            }
            let other = try await JWTTestSigner.token(user: 5, secret: "another-secret-0123456789-abcdefghij")
            #expect(try await api.call(.get, "/v1/points", headers: [.authorization: "Bearer \(other)"]).status == 401)
            let expired = try await JWTTestSigner.token(user: 5, ttl: -10)
            #expect(try await api.call(.get, "/v1/points", headers: [.authorization: "Bearer \(expired)"]).status == 401)
            // alg "none" with the payload of a valid token.
            let valid = try await api.token(user: 5)
            let parts = valid.split(separator: ".")
            let none = JWTTestSigner.base64URL(Data(#"{"alg":"none","typ":"JWT"}"#.utf8))
            #expect(try await api.call(.get, "/v1/points", headers: [.authorization: "Bearer \(none).\(parts[1])."]).status == 401)
            #expect(try await api.call(.get, "/v1/points", user: 5).status == 200)
        }
    }

    @Test func subjectMustBeAPositiveDecimalUserId() async throws {
        try await withAPI { api in
            for sub in ["abc", "0", "-3", "007", "1.5"] {
                let token = try await JWTTestSigner.sign(payload: #"{"sub":"\#(sub)","exp":\#(Int(Date().timeIntervalSince1970) + 600)}"#, secret: testSecret)
                let reply = try await api.call(.get, "/v1/points", headers: [.authorization: "Bearer \(token)"])
                #expect(reply.status == 401, "sub \(sub)")
            }
            let noExp = try await JWTTestSigner.sign(payload: #"{"sub":"5"}"#, secret: testSecret)
            #expect(try await api.call(.get, "/v1/points", headers: [.authorization: "Bearer \(noExp)"]).status == 401)
        }
    }

    @Test(arguments: TestBackend.all) func perUserAndPerAddressRateLimitsAnswer429WithRetryAfter(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.rateLimitPerUser = 2 }) { api in
            #expect(try await api.call(.get, "/v1/points", user: 5).status == 200)
            #expect(try await api.call(.get, "/v1/points", user: 5).status == 200)
            let limited = try await api.call(.get, "/v1/points", user: 5)
            #expect(limited.status == 429 && limited.code == "RATE_LIMITED")
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(try await api.call(.get, "/v1/points", user: 6).status == 200, "limits are per user")
            api.clock.advance(seconds: 1)
            #expect(try await api.call(.get, "/v1/points", user: 5).status == 200, "the bucket refills")
            // A limited charge changes nothing.
            _ = try await api.charge(10, user: 7)
            _ = try await api.charge(10, user: 7)
            #expect(try await api.charge(10, user: 7).code == "RATE_LIMITED")
            api.clock.advance(seconds: 5)
            #expect(try await api.call(.get, "/v1/points", user: 7).int("balance") == 20)
        }
        try await withAPI(backend, configure: { $0.rateLimitPerIP = 1 }) { api in
            let first = try await api.call(.get, "/v1/concerts")
            let second = try await api.call(.get, "/v1/concerts")
            #expect(first.status == 200)
            #expect(second.code == "RATE_LIMITED", "unauthenticated requests count too")
            let probes = [try await api.call(.get, "/healthz"), try await api.call(.get, "/readyz"), try await api.call(.get, "/metrics"),
                          try await api.call(.get, "/healthz/")]
            #expect(probes.allSatisfy { $0.status == 200 }, "probes and scrapes are never limited")
        }
    }

    @Test(arguments: TestBackend.all) func operatorsSeeLiveCountsOfTheLineAndTheSeats(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 2, activeSeconds: 600, idleSeconds: 600) }) { api in
            let concert = try await api.openConcert(seats: 20, price: 10)
            let first = try await api.activeToken(concert.concertId, user: 5)
            _ = try await api.activeToken(concert.concertId, user: 6)
            _ = try await api.join(concert.concertId, user: 7)
            _ = try await api.hold(concert.scheduleId, seat: 1, user: 5, token: first)
            let paid = try await api.hold(concert.scheduleId, seat: 2, user: 5, token: first)
            _ = try await api.charge(100, user: 5)
            _ = try await api.pay(paid.int("id")!, user: 5, token: first)
            let stats = try await api.call(.get, "/v1/admin/concerts/\(concert.concertId)/stats", user: 1, admin: true)
            #expect(stats.status == 200)
            #expect(stats.int("waiting") == 0, "user 7 was admitted when user 5's payment ended their token")
            #expect(stats.int("active") == 2)
            #expect(stats.int("totalSeats") == 20 && stats.int("seatsHeld") == 1 && stats.int("seatsSold") == 1)
            #expect(try await api.call(.get, "/v1/admin/concerts/\(concert.concertId)/stats", user: 5).code == "FORBIDDEN")
            #expect(try await api.call(.get, "/v1/admin/concerts/999/stats", user: 1, admin: true).code == "CONCERT_NOT_FOUND")
        }
    }

    @Test func theWebPageIsServedAndTheDevSignInExistsOnlyInDevMode() async throws {
        try await withAPI { api in
            let page = try await api.call(.get, "/")
            #expect(page.status == 200)
            #expect(page.headers[.contentType]?.hasPrefix("text/html") == true)
            #expect(try await api.call(.get, "/assets/nope.js").status == 404)
            #expect(try await api.call(.post, "/dev/token", json: #"{"userId": 5}"#).status == 404)
        }
        try await withAPI(configure: { $0.dev = true }) { api in
            let reply = try await api.call(.post, "/dev/token", json: #"{"userId": 5, "admin": true}"#)
            #expect(reply.status == 200)
            let token = try #require(reply.string("token"))
            let body = Fixture.concert(opensAt: "2026-01-01T00:00:00Z", closesAt: "2027-01-01T00:00:00Z")
            let created = try await api.call(.post, "/v1/admin/concerts", headers: [.authorization: "Bearer \(token)"], json: body)
            #expect(created.status == 201)
            #expect(try await api.call(.post, "/dev/token", json: #"{"userId": 0}"#).code == "VALIDATION_FAILED")
        }
    }

    @Test func adminRoutesNeedTheAdminRole() async throws {
        try await withAPI { api in
            let body = Fixture.concert(opensAt: "2026-01-01T00:00:00Z", closesAt: "2027-01-01T00:00:00Z")
            let reply = try await api.call(.post, "/v1/admin/concerts", user: 5, json: body)
            #expect(reply.status == 403 && reply.code == "FORBIDDEN")
            #expect(try await api.call(.post, "/v1/admin/concerts", json: body).status == 401)
            let list = try await api.call(.get, "/v1/concerts")
            #expect(list.array("concerts").isEmpty, "a refused request created something")
        }
    }
}

@Suite("The OpenAPI document")
struct OpenAPIDocumentTests {
    /// Every operation the document describes is a route the service answers (neither 404
    /// NOT_FOUND nor 405), with path ids filled in.
    @Test func everyDocumentedOperationIsARoute() async throws {
        try await withAPI(configure: { $0.dev = true }) { api in
            let text = String(decoding: try await api.call(.get, "/openapi.yaml").bytes, as: UTF8.self)
            var operations: [(String, String)] = []
            var path: String?
            var inPaths = false
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                if line == "paths:" { inPaths = true; continue }
                if inPaths, !line.hasPrefix(" "), !line.isEmpty { inPaths = false }
                guard inPaths else { continue }
                if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                    path = String(line.dropFirst(2).dropLast())
                } else if let current = path, line.hasPrefix("    "), !line.hasPrefix("     "),
                          let method = ["get:", "post:", "put:", "delete:", "patch:"].first(where: { line == "    " + $0 }) {
                    operations.append((String(method.dropLast()).uppercased(), current))
                }
            }
            #expect(operations.count >= 24, "found \(operations.count) operations")
            for (method, documented) in operations {
                let concrete = documented.replacingOccurrences(of: #"\{[A-Za-z]+\}"#, with: "1", options: .regularExpression)
                let reply = try await api.call(HTTPRequest.Method(rawValue: method)!, concrete, user: 1, admin: true, json: "{}")
                #expect(reply.code != "NOT_FOUND" && reply.code != "METHOD_NOT_ALLOWED", "\(method) \(documented): \(reply.status)")
            }
        }
    }
}
