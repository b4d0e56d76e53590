import ConcertDomain
import Crypto
import Foundation
import Testing

@Suite("On-sale control over HTTP")
struct OnSaleHTTPTests {
    private func policy(_ api: API, _ concertId: Int64) async throws -> Reply {
        try await api.call(.get, "/v1/admin/concerts/\(concertId)/queue", user: 1, admin: true)
    }

    private func patch(_ api: API, _ concertId: Int64, _ json: String, admin: Bool = true) async throws -> Reply {
        try await api.call(.patch, "/v1/admin/concerts/\(concertId)/queue", user: 1, admin: admin, json: json)
    }

    @Test(arguments: TestBackend.all) func policyHasTheSettingsDefaultsAndLiveCounts(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 2, activeSeconds: 300, idleSeconds: 60) }) { api in
            let concert = try await api.openConcert()
            for user in Int64(10)...12 { _ = try await api.join(concert.concertId, user: user) }
            let reply = try await policy(api, concert.concertId)
            #expect(reply.status == 200)
            #expect(reply.int("concertId") == concert.concertId)
            #expect(reply.int("maxActive") == 2 && reply.int("activeSeconds") == 300)
            #expect(reply["admitPerMinute"] is NSNull && reply["queueOpensAt"] is NSNull)
            #expect(reply["paused"] as? Bool == false && reply["soldOut"] as? Bool == false)
            #expect(reply.int("waiting") == 1 && reply.int("active") == 2 && reply.int("admittedLastMinute") == 2)
            #expect(try await self.policy(api, 999).code == "CONCERT_NOT_FOUND")
            let notAdmin = try await api.call(.get, "/v1/admin/concerts/\(concert.concertId)/queue", user: 5)
            #expect(notAdmin.status == 403 && notAdmin.code == "FORBIDDEN")
            #expect(try await patch(api, concert.concertId, #"{"paused": true}"#, admin: false).status == 403)
            let ticket = try await api.join(concert.concertId, user: 13)
            #expect(ticket["preQueue"] as? Bool == false && ticket["soldOut"] as? Bool == false)
        }
    }

    @Test(arguments: TestBackend.all) func badChangesAreRefusedAndChangeNothing(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let concert = try await api.openConcert(opens: 600, closes: 86_400)
            let id = concert.concertId
            let before = try await policy(api, id).json as NSDictionary
            let unprocessable = [
                #"{"maxActive": 0}"#, #"{"maxActive": 1000001}"#, #"{"admitPerMinute": 0}"#, #"{"admitPerMinute": 10000001}"#,
                #"{"activeSeconds": 29}"#, #"{"activeSeconds": 86401}"#, #"{"maxActive": 5, "colour": "red"}"#,
                #"{"waiting": 3}"#, #"{"concertId": 2}"#, #"{"soldOut": true}"#, #"{"queueOpensAt": "\#(api.time(601))"}"#,
                #"{"queueOpensAt": "yesterday"}"#,
            ]
            for body in unprocessable {
                let reply = try await patch(api, id, body)
                #expect(reply.status == 422 && reply.code == "VALIDATION_FAILED", "\(body): \(reply.json)")
            }
            let malformed = [
                #"{"maxActive": "5"}"#, #"{"maxActive": 1.5}"#, #"{"paused": 1}"#, #"{"paused": null}"#, #"{"maxActive": null}"#,
                #"{"activeSeconds": true}"#, #"{"admitPerMinute": "fast"}"#, #"{"queueOpensAt": 5}"#, #"[1]"#, #"{"#,
            ]
            for body in malformed {
                let reply = try await patch(api, id, body)
                #expect(reply.status == 400 && reply.code == "MALFORMED_REQUEST", "\(body): \(reply.json)")
            }
            #expect(try await policy(api, id).json as NSDictionary == before)
            let empty = try await patch(api, id, "{}")
            #expect(empty.status == 200 && empty.json as NSDictionary == before)
            #expect(try await patch(api, 999, #"{"paused": true}"#).code == "CONCERT_NOT_FOUND")

            let changed = try await patch(api, id, #"{"maxActive": 7, "admitPerMinute": 100, "activeSeconds": 45, "paused": true}"#)
            #expect(changed.status == 200)
            #expect(changed.int("maxActive") == 7 && changed.int("admitPerMinute") == 100 && changed.int("activeSeconds") == 45)
            #expect(changed["paused"] as? Bool == true)
            let cleared = try await patch(api, id, #"{"admitPerMinute": null}"#)
            #expect(cleared["admitPerMinute"] is NSNull && cleared.int("maxActive") == 7)
            #expect(try await policy(api, id).json as NSDictionary == cleared.json as NSDictionary)
        }
    }

    @Test(arguments: TestBackend.races) func racingChangesLeaveOneOfThemNeverAMix(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let id = try await api.openConcert().concertId
            for _ in 0..<5 {
                async let a = patch(api, id, #"{"maxActive": 10, "activeSeconds": 100, "admitPerMinute": 1000}"#)
                async let b = patch(api, id, #"{"maxActive": 20, "activeSeconds": 200, "admitPerMinute": 2000}"#)
                let (first, second) = try await (a, b)
                #expect(first.status == 200 && second.status == 200)
                let now = try await policy(api, id)
                let triple = [now.int("maxActive"), now.int("activeSeconds"), now.int("admitPerMinute")]
                #expect(triple == [10, 100, 1000] || triple == [20, 200, 2000], "\(triple)")
            }
        }
    }

    @Test(arguments: TestBackend.all) func pauseHoldsTheLineAndResumeAdmitsInOrder(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 600) }) { api in
            let id = try await api.openConcert().concertId
            let a = try await api.join(id, user: 1)
            #expect(try await patch(api, id, #"{"paused": true}"#)["paused"] as? Bool == true)
            let b = try await api.join(id, user: 2)
            let c = try await api.join(id, user: 3)
            #expect(try await api.call(.delete, "/v1/queue/tokens/current", user: 1, queueToken: a.string("token")).status == 204)
            let bPaused = try await api.call(.get, "/v1/queue/tokens/current", user: 2, queueToken: b.string("token"))
            #expect(bPaused.string("status") == "WAITING" && bPaused.int("position") == 0)
            #expect(try await policy(api, id).int("active") == 0)
            _ = try await patch(api, id, #"{"paused": false}"#)
            let bNow = try await api.call(.get, "/v1/queue/tokens/current", user: 2, queueToken: b.string("token"))
            #expect(bNow.string("status") == "ACTIVE")
            let cNow = try await api.call(.get, "/v1/queue/tokens/current", user: 3, queueToken: c.string("token"))
            #expect(cNow.string("status") == "WAITING" && cNow.int("position") == 0)
        }
    }

    @Test(arguments: TestBackend.all) func noAdmissionAtZeroAvailableAndSoldOutOnceAllIsSold(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 5, activeSeconds: 600, idleSeconds: 600) }) { api in
            let concert = try await api.openConcert(seats: 1, price: 100)
            let id = concert.concertId
            let buyer = try await api.activeToken(id, user: 1)
            let hold = try await api.hold(concert.scheduleId, seat: 1, user: 1, token: buyer)
            #expect(hold.status == 201)
            api.clock.advance(seconds: 1) // past the instance's half-second view of the seats
            let waiter = try await api.join(id, user: 2)
            #expect(waiter.string("status") == "WAITING" && waiter["soldOut"] as? Bool == false)
            // The hold is cancelled: the seat is AVAILABLE again and admission resumes.
            #expect(try await api.call(.delete, "/v1/reservations/\(hold.int("id")!)", user: 1).status == 204)
            api.clock.advance(seconds: 1)
            let admitted = try await api.call(.get, "/v1/queue/tokens/current", user: 2, queueToken: waiter.string("token"))
            #expect(admitted.string("status") == "ACTIVE")
            #expect(try await api.call(.delete, "/v1/queue/tokens/current", user: 2, queueToken: waiter.string("token")).status == 204)

            let again = try await api.hold(concert.scheduleId, seat: 1, user: 1, token: buyer)
            #expect(again.status == 201)
            api.clock.advance(seconds: 1)
            let hopeful = try await api.join(id, user: 3)
            #expect(hopeful.status == 201 && hopeful.string("status") == "WAITING" && hopeful["soldOut"] as? Bool == false)
            #expect(try await api.charge(100, user: 1).status == 200)
            #expect(try await api.pay(again.int("id")!, user: 1, token: buyer).status == 201)
            api.clock.advance(seconds: 1)
            let refused = try await api.join(id, user: 4)
            #expect(refused.status == 409 && refused.code == "CONCERT_SOLD_OUT")
            let told = try await api.call(.get, "/v1/queue/tokens/current", user: 3, queueToken: hopeful.string("token"))
            #expect(told["soldOut"] as? Bool == true && told.string("status") == "WAITING")
            #expect(try await api.join(id, user: 3).code == "CONCERT_SOLD_OUT")
            #expect(try await policy(api, id)["soldOut"] as? Bool == true)
        }
    }

    @Test(arguments: TestBackend.all) func thePreQueueIsDrawnAtOpeningAsAnyoneCanCheck(backend: TestBackend) async throws {
        try await withAPI(backend, configure: { $0.queue = QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 3600) }) { api in
            let id = try await api.openConcert(opens: 600, closes: 86_400).concertId
            #expect(try await api.call(.get, "/v1/concerts/\(id)/queue/draw").code == "DRAW_NOT_FOUND")
            #expect(try await api.call(.get, "/v1/concerts/999/queue/draw").code == "CONCERT_NOT_FOUND")
            #expect(try await api.join(id, user: 2).code == "CONCERT_NOT_RESERVABLE")
            let opensAt = api.time(-60)
            let changed = try await patch(api, id, #"{"queueOpensAt": "\#(opensAt)"}"#)
            #expect(changed.string("queueOpensAt") == opensAt)
            #expect(try await api.call(.get, "/v1/concerts/\(id)").string("queueOpensAt") == opensAt)

            let before = try await api.call(.get, "/v1/concerts/\(id)/queue/draw")
            #expect(before.status == 200 && before.int("concertId") == id)
            let commitment = try #require(before.string("commitment"))
            #expect(commitment.count == 64)
            #expect(before["seed"] is NSNull && before["entrants"] is NSNull)
            // The commitment never changes, whatever is changed later.
            _ = try await patch(api, id, #"{"queueOpensAt": "\#(api.time(-30))"}"#)

            var tokens: [String] = []
            for user in Int64(2)...6 {
                let joined = try await api.join(id, user: user)
                #expect(joined.status == 201 && joined.string("status") == "WAITING")
                #expect(joined["preQueue"] as? Bool == true)
                #expect(joined.int("position") == user - 2)
                tokens.append(joined.string("token")!)
            }
            let polled = try await api.call(.get, "/v1/queue/tokens/current", user: 2, queueToken: tokens[0])
            #expect(polled["preQueue"] as? Bool == true && polled.int("position") == 4)
            #expect(try await policy(api, id).int("waiting") == 5)
            #expect(try await api.call(.get, "/v1/concerts/\(id)/queue/draw")["seed"] is NSNull)

            api.clock.advance(seconds: 601)
            let late = try await api.join(id, user: 7)
            #expect(late["preQueue"] as? Bool == false)
            let after = try await api.call(.get, "/v1/concerts/\(id)/queue/draw")
            #expect(after.string("commitment") == commitment && after.int("entrants") == 5)
            let seed = try #require(after.string("seed").flatMap { Draw.bytes(hex: $0) })
            #expect(Draw.hex(Array(SHA256.hash(data: seed))) == commitment)
            let expected = tokens.sorted {
                Draw.hex(Array(SHA256.hash(data: seed + Array($0.utf8)))) < Draw.hex(Array(SHA256.hash(data: seed + Array($1.utf8))))
            }
            // maxActive 1: the first drawn is admitted, the others wait in drawn order, the late one behind.
            for (place, token) in expected.enumerated() {
                let user = Int64(tokens.firstIndex(of: token)! + 2)
                let ticket = try await api.call(.get, "/v1/queue/tokens/current", user: user, queueToken: token)
                #expect(ticket["preQueue"] as? Bool == false)
                if place == 0 {
                    #expect(ticket.string("status") == "ACTIVE")
                } else {
                    #expect(ticket.string("status") == "WAITING" && ticket.int("position") == Int64(place - 1))
                }
            }
            let lateNow = try await api.call(.get, "/v1/queue/tokens/current", user: 7, queueToken: late.string("token"))
            #expect(lateNow.int("position") == 4)
        }
    }

    @Test(arguments: TestBackend.all) func upcomingConcertsAreListedWithTheirQueueOpening(backend: TestBackend) async throws {
        try await withAPI(backend) { api in
            let open = try await api.openConcert().concertId
            let later = try await api.openConcert(opens: 3600, closes: 86_400).concertId
            let list = try await api.call(.get, "/v1/concerts")
            #expect(list.array("concerts").compactMap { ($0["id"] as? NSNumber)?.int64Value } == [open])
            #expect(list.array("concerts").first?["queueOpensAt"] is NSNull)
            _ = try await patch(api, later, #"{"queueOpensAt": "\#(api.time(600))"}"#)
            let upcoming = try await api.call(.get, "/v1/concerts?upcoming=true")
            let concerts = upcoming.array("concerts")
            #expect(concerts.compactMap { ($0["id"] as? NSNumber)?.int64Value } == [open, later])
            #expect(concerts.map { $0["reservable"] as? Bool } == [true, false])
            #expect(concerts.last?["queueOpensAt"] as? String == api.time(600))
            let paged = try await api.call(.get, "/v1/concerts?upcoming=true&limit=1&after=\(open)")
            #expect(paged.array("concerts").compactMap { ($0["id"] as? NSNumber)?.int64Value } == [later])
            #expect(try await api.call(.get, "/v1/concerts?upcoming=maybe").code == "MALFORMED_REQUEST")
        }
    }
}
