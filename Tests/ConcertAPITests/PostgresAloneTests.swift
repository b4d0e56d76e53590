import ConcertAPI
import ConcertTestSupport
import Foundation
import Testing

/// Three `concertd` processes on one PostgreSQL and no Redis, as behind a load balancer: the
/// waiting room, the rate limiter and the cache generations live in the database.
let postgresIsConfigured = TestServices.postgresURL != nil || TestServices.required

@Suite("Several instances on PostgreSQL alone", .serialized)
struct PostgresAloneTests {
    /// A token issued by one instance is honoured by every other: 60 users join through one
    /// instance, hold through another and pay through all three. No 401 for a live token, ten
    /// seats sold once each, each paid once.
    @Test(.enabled(if: postgresIsConfigured)) func holdsAndPaymentsThroughRandomInstancesNeverSeeA401OrDoubleCharge() async throws {
        let cluster = try await Cluster.start(count: 3, redis: false, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1000"])
        do {
            let servers = cluster.instances
            let (concertId, scheduleId) = try await servers[0].api.openConcert(seats: 10, price: 100)
            let users = Array(100..<160)
            var joined: [Int: (jwt: String, queue: String)] = [:]
            for user in users {
                let jwt = try await JWTTestSigner.token(user: Int64(user))
                let reply = try await servers[Int.random(in: 0..<3)].api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                #expect(reply.json["status"] as? String == "ACTIVE")
                joined[user] = (jwt, reply.json["token"] as! String)
                #expect(try await servers[Int.random(in: 0..<3)].api.call(.post, "/v1/points/charges", jwt: jwt,
                                                                          json: #"{"amount": 150}"#).status == 200)
                // The token is known everywhere at once.
                for server in servers {
                    let polled = try await server.api.call(.get, "/v1/queue/tokens/current", jwt: jwt, queueToken: joined[user]!.queue)
                    #expect(polled.status == 200 && polled.json["status"] as? String == "ACTIVE", "user \(user)")
                }
            }
            let tokens = joined
            let gate = StartGate()
            let holds = try await withThrowingTaskGroup(of: (Int, Int, Int?).self) { group in
                for user in users {
                    group.addTask {
                        await gate.wait()
                        let reply = try await servers[Int.random(in: 0..<3)].api.call(.post, "/v1/reservations", jwt: tokens[user]!.jwt,
                            queueToken: tokens[user]!.queue, json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(user % 10 + 1)}"#)
                        return (user, reply.status, reply.json["id"] as? Int)
                    }
                }
                await gate.open(whenArrived: users.count)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(holds.filter { $0.1 == 401 }.isEmpty, "a live queue token was refused: \(holds.filter { $0.1 == 401 })")
            let winners = holds.filter { $0.1 == 201 }
            #expect(winners.count == 10)
            #expect(holds.filter { $0.1 == 409 }.count == 50)

            // Each winner pays three times at once through random instances, twice with one key.
            // The first payment ends the queue token, so a later attempt may be 401; exactly one
            // payment happens.
            let payGate = StartGate()
            let payments = try await withThrowingTaskGroup(of: Int.self) { group in
                for (user, _, reservation) in winners {
                    for attempt in 0..<3 {
                        group.addTask {
                            await payGate.wait()
                            return try await servers[Int.random(in: 0..<3)].api.call(
                                .post, "/v1/payments", jwt: tokens[user]!.jwt, queueToken: tokens[user]!.queue,
                                idempotencyKey: attempt < 2 ? "pay-\(user)" : nil,
                                json: #"{"reservationId": \#(reservation!)}"#).status
                        }
                    }
                }
                await payGate.open(whenArrived: winners.count * 3)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(payments.allSatisfy { [201, 409, 401].contains($0) }, "\(payments)")
            #expect(payments.filter { $0 == 201 }.count >= 10)
            #expect(try await cluster.database.scalar("SELECT COUNT(*) FROM payments") == 10)
            for (user, _, _) in winners {
                let balance = try await servers[Int.random(in: 0..<3)].api.call(.get, "/v1/points", jwt: tokens[user]!.jwt)
                #expect(balance.json["balance"] as? Int == 50, "user \(user) paid once")
            }
            try await expectInvariants(cluster.database)
            let verified = try await runConcertd(["verify", "--database-url", cluster.database.url])
            #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
            #expect(!verified.stdout.contains("BREACH"))
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// One line per concert across the three instances: first come, first served, and never
    /// more than CONCERT_QUEUE_MAX_ACTIVE live ACTIVE tokens at any sampled instant (read from
    /// the database while users join, leave and run out).
    @Test(.enabled(if: postgresIsConfigured)) func threeInstancesServeOneFairLineAndKeepTheCap() async throws {
        let maxActive = 5
        let cluster = try await Cluster.start(count: 3, redis: false, environment: [
            "CONCERT_QUEUE_MAX_ACTIVE": "\(maxActive)", "CONCERT_QUEUE_ACTIVE_SECONDS": "3", "CONCERT_QUEUE_SWEEP_MS": "100"])
        do {
            let servers = cluster.instances
            let (concertId, _) = try await servers[0].api.openConcert(seats: 10, price: 100)
            let database = cluster.database
            let sampling = Task { () -> (samples: Int, most: Int) in
                var samples = 0, most = 0
                while !Task.isCancelled {
                    let live = "status = 'ACTIVE' AND active_until > (extract(epoch from clock_timestamp()) * 1000)::bigint"
                    if let count = try? await database.scalar("SELECT COUNT(*) FROM queue_tokens WHERE concert_id = \(concertId) AND \(live)") {
                        samples += 1
                        most = max(most, Int(count))
                    }
                    try? await Task.sleep(for: .milliseconds(2))
                }
                return (samples, most)
            }
            var line: [InLine] = []
            for user in 200..<230 {
                let jwt = try await JWTTestSigner.token(user: Int64(user))
                let joined = try await servers[user % 3].api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                let index = line.count
                #expect(joined.json["status"] as? String == (index < maxActive ? "ACTIVE" : "WAITING"))
                #expect(joined.json["position"] as? Int == max(0, index - maxActive), "user \(user)")
                line.append((user, jwt, joined.json["token"] as! String))
            }
            try await expectOneFairLine(line, maxActive: maxActive, servers: servers)
            sampling.cancel()
            let (samples, most) = await sampling.value
            #expect(samples > 50)
            #expect(most <= maxActive)
            #expect(most == maxActive)
            #expect(try await database.scalar("SELECT active_count FROM queue_lines WHERE concert_id = \(concertId)") == 0)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// A slot freed by expiry reaches the head with nobody polling in between: the sweepers,
    /// running on all three instances at once, admit it (once).
    @Test(.enabled(if: postgresIsConfigured)) func aFreedSlotIsFilledBySweepersWithoutAnyPoll() async throws {
        let cluster = try await Cluster.start(count: 3, redis: false, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1"])
        do {
            let servers = cluster.instances
            let (concertId, _) = try await servers[0].api.openConcert(seats: 10, price: 100)
            let first = try await JWTTestSigner.token(user: 300), second = try await JWTTestSigner.token(user: 301)
            let a = try await servers[0].api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: first)
            let b = try await servers[1].api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: second)
            #expect(b.json["status"] as? String == "WAITING")
            // The ACTIVE token runs out (its time moved into the past); no request follows, so
            // only a sweep can admit the next one.
            let aToken = try #require(a.json["token"] as? String)
            _ = try await cluster.database.scalar("""
                UPDATE queue_tokens SET active_until = 1 WHERE token = '\(aToken)'
                """)
            let started = Date()
            var admittedAfter: TimeInterval?
            while Date().timeIntervalSince(started) < 5 {
                if try await cluster.database.scalar("""
                    SELECT COUNT(*) FROM queue_tokens WHERE concert_id = \(concertId) AND status = 'ACTIVE' AND user_id = 301
                    """) == 1 {
                    admittedAfter = Date().timeIntervalSince(started)
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            // Only that it happens: how fast is the sweep interval's business (250 ms), and a
            // loaded test machine must not make this test fail.
            #expect(admittedAfter != nil, "the head was never admitted")
            let polled = try await servers[2].api.call(.get, "/v1/queue/tokens/current", jwt: second, queueToken: b.json["token"] as? String)
            #expect(polled.json["status"] as? String == "ACTIVE")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
