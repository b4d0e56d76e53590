import ConcertDomain
import Foundation
import Testing

@Suite("Waiting room over HTTP")
struct QueueTests {
    @Test(arguments: TestBackend.all) func joinCreatesOnceThenReturnsTheSameToken(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert()
            let first = try await api.join(concert.concertId, user: 5)
            #expect(first.status == 201)
            #expect(first.string("status") == "ACTIVE")
            #expect(first.int("position") == 0)
            #expect(first.int("concertId") == concert.concertId)
            #expect(first.string("activeUntil") != nil)
            let again = try await api.join(concert.concertId, user: 5)
            #expect(again.status == 200)
            #expect(again.string("token") == first.string("token"))
        }
    }

    @Test(arguments: TestBackend.all) func joinAnswers404And409(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            #expect(try await api.join(999, user: 5).code == "CONCERT_NOT_FOUND")
            let closed = try await api.openConcert(opens: -7200, closes: -3600)
            let reply = try await api.join(closed.concertId, user: 5)
            #expect(reply.status == 409 && reply.code == "CONCERT_NOT_RESERVABLE")
            let early = try await api.openConcert(opens: 600, closes: 7200)
            #expect(try await api.join(early.concertId, user: 5).code == "CONCERT_NOT_RESERVABLE")
        }
    }

    @Test(arguments: TestBackend.all) func lineIsFirstComeFirstServedAndLeavingAdmitsTheHead(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 60) }) { api in
            let concert = try await api.openConcert()
            let a = try await api.join(concert.concertId, user: 1)
            let b = try await api.join(concert.concertId, user: 2)
            let c = try await api.join(concert.concertId, user: 3)
            #expect(a.string("status") == "ACTIVE")
            #expect(b.string("status") == "WAITING" && b.int("position") == 0)
            #expect(c.string("status") == "WAITING" && c.int("position") == 1)
            #expect(b["activeUntil"] is NSNull)
            #expect((b.int("estimatedWaitSeconds") ?? 0) > 0)

            // A WAITING token does not open protected endpoints.
            let waiting = try await api.call(.get, "/v1/concerts/\(concert.concertId)/schedules", user: 2, queueToken: b.string("token"))
            #expect(waiting.status == 403 && waiting.code == "QUEUE_TOKEN_NOT_ACTIVE")

            let left = try await api.call(.delete, "/v1/queue/tokens/current", user: 1, queueToken: a.string("token"))
            #expect(left.status == 204)
            let bNow = try await api.call(.get, "/v1/queue/tokens/current", user: 2, queueToken: b.string("token"))
            #expect(bNow.string("status") == "ACTIVE")
            let cNow = try await api.call(.get, "/v1/queue/tokens/current", user: 3, queueToken: c.string("token"))
            #expect(cNow.string("status") == "WAITING" && cNow.int("position") == 0)
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 1, queueToken: a.string("token")).code == "QUEUE_TOKEN_INVALID")
        }
    }

    @Test(arguments: TestBackend.all) func activeTokensRunOutAndTheNextIsAdmitted(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 1, activeSeconds: 30, idleSeconds: 600) }) { api in
            let concert = try await api.openConcert()
            let a = try await api.join(concert.concertId, user: 1)
            let b = try await api.join(concert.concertId, user: 2)
            api.clock.advance(seconds: 31)
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 1, queueToken: a.string("token")).code == "QUEUE_TOKEN_INVALID")
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 2, queueToken: b.string("token")).string("status") == "ACTIVE")
        }
    }

    @Test(arguments: TestBackend.all) func aWaiterWhoStopsPollingLosesTheirPlace(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 20) }) { api in
            let concert = try await api.openConcert()
            _ = try await api.join(concert.concertId, user: 1)
            let b = try await api.join(concert.concertId, user: 2)
            let c = try await api.join(concert.concertId, user: 3)
            api.clock.advance(seconds: 15)
            _ = try await api.call(.get, "/v1/queue/tokens/current", user: 3, queueToken: c.string("token"))
            api.clock.advance(seconds: 10)
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 2, queueToken: b.string("token")).code == "QUEUE_TOKEN_INVALID")
            let cNow = try await api.call(.get, "/v1/queue/tokens/current", user: 3, queueToken: c.string("token"))
            #expect(cNow.int("position") == 0)
        }
    }

    /// The contract's "a freed slot goes to the head of the line within 1 second": nobody polls,
    /// only the sweeper can admit. The admission time shows in `activeUntil` (admission + 30 s),
    /// read after the clock has moved on by 10 s: a lazy admission at read time would show +10 s.
    @Test(arguments: TestBackend.all) func aFreedSlotReachesTheHeadWithinOneSecondWithoutAnyPoll(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 1, activeSeconds: 30, idleSeconds: 3600) }) { api in
            let concert = try await api.openConcert()
            _ = try await api.join(concert.concertId, user: 1)
            let b = try await api.join(concert.concertId, user: 2)
            #expect(b.string("status") == "WAITING")
            api.clock.advance(seconds: 31)
            let freedAt = api.clock.now
            try await Task.sleep(for: .seconds(1))
            api.clock.advance(seconds: 10)
            let reply = try await api.call(.get, "/v1/queue/tokens/current", user: 2, queueToken: b.string("token"))
            #expect(reply.string("status") == "ACTIVE")
            let activeUntil = RFC3339.parse(reply.string("activeUntil") ?? "")
            #expect(activeUntil == freedAt.adding(seconds: 30), "admitted late: \(reply.json)")
        }
    }

    @Test(arguments: TestBackend.all) func queueTokenHeaderRules(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert()
            let token = try await api.activeToken(concert.concertId, user: 5)
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 5).code == "QUEUE_TOKEN_MISSING")
            for forged in ["garbage", "\(concert.concertId).00000000000000000000000000000000", String(repeating: "x", count: 300)] {
                let reply = try await api.call(.get, "/v1/queue/tokens/current", user: 5, queueToken: forged)
                #expect(reply.status == 401 && reply.code == "QUEUE_TOKEN_INVALID")
            }
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 6, queueToken: token).code == "QUEUE_TOKEN_INVALID")
            #expect(try await api.call(.delete, "/v1/queue/tokens/current", user: 6, queueToken: token).code == "QUEUE_TOKEN_INVALID")
            #expect(try await api.call(.get, "/v1/queue/tokens/current", user: 5, queueToken: token).status == 200)
        }
    }
}
