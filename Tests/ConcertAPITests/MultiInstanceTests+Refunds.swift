import ConcertAPI
import ConcertTestSupport
import Foundation
import Testing

extension MultiInstanceTests {
    /// Two `concertd` processes on PostgreSQL alone: refunds of each payment through both, and two
    /// cancels of the date (one through each), all released together. Every seat is refunded
    /// exactly once; a cancel on one instance makes the other refuse holds at once, although it
    /// had the schedule in its cache.
    @Test(.enabled(if: serversAreConfigured)) func refundsAndCancelsRacingAcrossTwoInstancesRefundEachSeatOnce() async throws {
        let cluster = try await Cluster.start(count: 2, redis: false, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1000"])
        do {
            let (a, b) = (cluster.instances[0], cluster.instances[1])
            let servers = [a, b]
            let (concertId, scheduleId) = try await a.api.openConcert(seats: 30, price: 100)
            let admin = try await JWTTestSigner.token(user: 1, admin: true)
            let other = try await a.api.call(.post, "/v1/admin/concerts/\(concertId)/schedules", jwt: admin,
                                            json: Fixture.schedule(startsAt: "2098-02-01T00:00:00Z", price: 100, seats: 10))
            let otherScheduleId = try #require(other.json["id"] as? Int)

            let users = Array(300..<320)
            var payments: [Int: (jwt: String, payment: Int)] = [:]
            for (index, user) in users.enumerated() {
                let jwt = try await JWTTestSigner.token(user: Int64(user))
                let server = servers[index % 2]
                let queue = try await server.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt).json["token"] as! String
                #expect(try await server.api.call(.post, "/v1/points/charges", jwt: jwt, json: #"{"amount": 100}"#).status == 200)
                let hold = try await server.api.call(.post, "/v1/reservations", jwt: jwt, queueToken: queue,
                                                    json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(index + 1)}"#)
                let reservation = try #require(hold.json["id"] as? Int, "\(hold)")
                let paid = try await servers[(index + 1) % 2].api.call(.post, "/v1/payments", jwt: jwt, queueToken: queue,
                                                                     json: #"{"reservationId": \#(reservation)}"#)
                payments[user] = (jwt, try #require(paid.json["id"] as? Int, "\(paid)"))
            }
            let paid = payments

            // Half the users refund themselves through both instances at once (one with a key);
            // both instances cancel the date at the same moment.
            let gate = StartGate()
            let replies = try await withThrowingTaskGroup(of: (kind: String, status: Int, refunded: Int?).self) { group in
                for user in users.prefix(10) {
                    for attempt in 0..<2 {
                        group.addTask {
                            await gate.wait()
                            let reply = try await servers[attempt].api.call(.post, "/v1/payments/\(paid[user]!.payment)/refund", jwt: paid[user]!.jwt,
                                idempotencyKey: attempt == 0 ? "refund-\(user)" : nil)
                            return ("refund", reply.status, nil)
                        }
                    }
                }
                for server in servers {
                    group.addTask {
                        await gate.wait()
                        let reply = try await server.api.call(.post, "/v1/admin/schedules/\(scheduleId)/cancel", jwt: admin)
                        return ("cancel", reply.status, reply.json["refunded"] as? Int)
                    }
                }
                await gate.open(whenArrived: 22)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let cancels = replies.filter { $0.kind == "cancel" }
            #expect(cancels.allSatisfy { $0.status == 200 }, "\(cancels)")
            let refunds = replies.filter { $0.kind == "refund" }
            #expect(refunds.allSatisfy { [201, 409].contains($0.status) }, "\(refunds)")
            #expect(try await cluster.database.scalar("SELECT COUNT(*) FROM point_entries WHERE type = 'REFUND'") == 20)
            #expect(try await cluster.database.scalar("SELECT COUNT(*) FROM payments WHERE status = 'REFUNDED'") == 20)
            let byCancels = cancels.compactMap(\.refunded).reduce(0, +)
            #expect(byCancels >= 10 && byCancels <= 20)
            #expect(cancels.contains { $0.refunded == 0 }, "the second cancel refunds nothing: \(cancels)")
            for user in users {
                let balance = try await b.api.call(.get, "/v1/points", jwt: paid[user]!.jwt)
                #expect(balance.json["balance"] as? Int == 100, "user \(user)")
            }

            // Instance a has the other date in its cache (it served a seat map of it); b cancels it.
            let jwt = try await JWTTestSigner.token(user: 400)
            let queue = try await a.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt).json["token"] as! String
            #expect(try await a.api.call(.get, "/v1/schedules/\(otherScheduleId)/seats", jwt: jwt, queueToken: queue).status == 200)
            let cancelled = try await b.api.call(.post, "/v1/admin/schedules/\(otherScheduleId)/cancel", jwt: admin)
            #expect(cancelled.status == 200 && cancelled.json["refunded"] as? Int == 0)
            let hold = try await a.api.call(.post, "/v1/reservations", jwt: jwt, queueToken: queue,
                                           json: #"{"scheduleId": \#(otherScheduleId), "seatNumber": 1}"#)
            #expect(hold.status == 404 && hold.json["code"] as? String == "SCHEDULE_NOT_FOUND", "\(hold)")
            let seats = try await a.api.call(.get, "/v1/schedules/\(otherScheduleId)/seats", jwt: jwt, queueToken: queue)
            #expect(seats.status == 404 && seats.json["code"] as? String == "SCHEDULE_NOT_FOUND")
            let schedules = try await a.api.call(.get, "/v1/concerts/\(concertId)/schedules", jwt: jwt, queueToken: queue)
            #expect((schedules.json["schedules"] as? [Any])?.isEmpty == true, "\(schedules)")

            try await expectInvariants(cluster.database)
            let verified = try await runConcertd(["verify", "--database-url", cluster.database.url])
            #expect(verified.status == 0 && !verified.stdout.contains("BREACH"), "\(verified.stdout)\(verified.stderr)")
            // verify sees a refunded payment whose REFUND entry is missing.
            _ = try await cluster.database.scalar("""
                WITH gone AS (DELETE FROM point_entries WHERE id = (SELECT MIN(id) FROM point_entries WHERE type = 'REFUND') RETURNING user_id, amount)
                UPDATE users SET balance = balance - gone.amount FROM gone WHERE users.id = gone.user_id RETURNING 1
                """)
            let broken = try await runConcertd(["verify", "--database-url", cluster.database.url])
            #expect(broken.status == 1)
            #expect(broken.stdout.contains("BREACH every REFUNDED payment has a CANCELLED reservation"), "\(broken.stdout)")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
