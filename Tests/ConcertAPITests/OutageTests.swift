import ConcertAPI
import ConcertTestSupport
import Foundation
import Testing

/// What the service does when Redis or PostgreSQL cannot be reached.
@Suite("Outages")
struct OutageTests {
    /// A loopback port that refuses connections (bound, not listening).
    static func closedPort() throws -> (port: Int, keepAlive: SilentServer) {
        let closed = try SilentServer(listening: false)
        return (closed.port, closed)
    }

    @Test func redisDownMeansQueue503AndTheCacheIsBypassed() async throws {
        let (port, closed) = try Self.closedPort()
        defer { withExtendedLifetime(closed) {} }
        try await withAPI(.sqliteMemory, configure: { $0.redisURL = "redis://127.0.0.1:\(port)" }) { api in
            let started = ContinuousClock.now
            let concert = try await api.openConcert()
            let join = try await api.join(concert.concertId, user: 5)
            #expect(join.status == 503 && join.code == "SERVICE_UNAVAILABLE")
            #expect(join.headers[.retryAfter] != nil)
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 5, queueToken: "\(concert.concertId).0123456789abcdef0123456789abcdef").status == 503)
            let list = try await api.call(.get, "/v1/concerts")
            #expect(list.status == 200 && list.array("concerts").count == 1, "the cache is bypassed")
            #expect(try await api.call(.get, "/readyz").status == 503)
            #expect(try await api.call(.get, "/healthz").status == 200)
            #expect(ContinuousClock.now - started < .seconds(30), "nothing hangs")
        }
    }

    @Test func anUnreachableRateLimiterLetsRequestsThrough() async throws {
        let (port, closed) = try Self.closedPort()
        defer { withExtendedLifetime(closed) {} }
        try await withAPI(.sqliteMemory, configure: {
            $0.redisURL = "redis://127.0.0.1:\(port)"
            $0.rateLimitPerIP = 5
            $0.rateLimitPerUser = 5
        }) { api in
            let health = try await api.call(.get, "/healthz")
            let concerts = try await api.call(.get, "/v1/concerts")
            let points = try await api.call(.get, "/v1/points", user: 5)
            #expect(health.status == 200 && concerts.status == 200 && points.status == 200)
        }
    }

    /// PostgreSQL behind a proxy that the test cuts and restores: requests answer 503 quickly
    /// while it is gone, and the same process serves again once it is back.
    @Test(.enabled(if: TestServices.postgresURL != nil || TestServices.required))
    func postgresOutageAnswers503QuicklyAndRecoversWithoutARestart() async throws {
        guard let admin = TestServices.postgresURL else { throw MissingTestService(description: "CONCERT_TEST_POSTGRES_URL is not set") }
        let database = try await TestDatabase.create(adminURL: admin)
        let proxy = try TCPProxy(targetPort: database.admin.port)
        do {
            var viaProxy = database
            viaProxy.admin.port = proxy.port
            let url = viaProxy.url
            try await withAPI(.sqliteMemory, configure: { $0.databaseURL = url }) { api in
                _ = try await api.openConcert()
                #expect(try await api.call(.get, "/readyz").status == 200)
                proxy.cut()
                let started = ContinuousClock.now
                let ready = try await api.call(.get, "/readyz")
                #expect(ready.status == 503)
                let list = try await api.call(.get, "/v1/points", user: 5)
                #expect(list.status == 503 && list.code == "SERVICE_UNAVAILABLE")
                #expect(ContinuousClock.now - started < .seconds(10), "answers come within a few seconds")
                proxy.restore()
                var recovered = false
                for _ in 0..<50 where !recovered {
                    recovered = try await api.call(.get, "/readyz").status == 200
                    if !recovered { try await Task.sleep(for: .milliseconds(200)) }
                }
                #expect(recovered)
                #expect(try await api.charge(10, user: 5).status == 200)
            }
        } catch {
            proxy.close()
            try? await database.drop()
            throw error
        }
        proxy.close()
        try? await database.drop()
    }
}
