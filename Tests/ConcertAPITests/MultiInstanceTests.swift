import ConcertAPI
import ConcertTestSupport
import Foundation
import RESPClient
import Testing

/// Several `concertd` processes on one PostgreSQL and one Redis, as behind a load balancer.
let serversAreConfigured = (TestServices.postgresURL != nil && TestServices.redisURL != nil) || TestServices.required

@Suite("Several instances on PostgreSQL and Redis", .serialized)
struct MultiInstanceTests {
    @Test(.enabled(if: serversAreConfigured)) func holdsAndPaymentsThroughThreeInstancesNeverDoubleBookOrDoubleCharge() async throws {
        let cluster = try await Cluster.start(count: 3, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1000"])
        do {
            let servers = cluster.instances
            let (concertId, scheduleId) = try await servers[0].api.openConcert(seats: 10, price: 100)
            let users = Array(100..<160)
            var joined: [Int: (jwt: String, queue: String)] = [:]
            for user in users {
                let jwt = try await JWTTestSigner.token(user: Int64(user))
                let reply = try await servers[user % 3].api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                #expect(reply.json["status"] as? String == "ACTIVE")
                joined[user] = (jwt, reply.json["token"] as! String)
                #expect(try await servers[(user + 1) % 3].api.call(.post, "/v1/points/charges", jwt: jwt, json: #"{"amount": 150}"#).status == 200)
            }
            let tokens = joined
            // Every user tries one of the ten seats at once, through all three instances.
            let gate = StartGate()
            let holds = try await withThrowingTaskGroup(of: (Int, Int, Int?).self) { group in
                for user in users {
                    group.addTask {
                        await gate.wait()
                        let reply = try await servers[user % 3].api.call(.post, "/v1/reservations", jwt: tokens[user]!.jwt,
                            queueToken: tokens[user]!.queue, json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(user % 10 + 1)}"#)
                        return (user, reply.status, reply.json["id"] as? Int)
                    }
                }
                await gate.open(whenArrived: users.count)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let winners = holds.filter { $0.1 == 201 }
            #expect(winners.count == 10)
            #expect(holds.filter { $0.1 == 409 }.count == 50)
            #expect(holds.allSatisfy { $0.1 < 500 })

            // Each winner pays three times at once: twice with one key on two instances, once
            // without a key on the third. Exactly one payment may happen.
            let payGate = StartGate()
            let payments = try await withThrowingTaskGroup(of: Int.self) { group in
                for (user, _, reservation) in winners {
                    for attempt in 0..<3 {
                        group.addTask {
                            await payGate.wait()
                            return try await servers[(user + attempt) % 3].api.call(
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
            #expect(try await cluster.database.scalar("SELECT COUNT(*) FROM payments") == 10)
            for (user, _, _) in winners {
                let balance = try await servers[0].api.call(.get, "/v1/points", jwt: tokens[user]!.jwt)
                #expect(balance.json["balance"] as? Int == 50, "user \(user) paid once")
            }
            try await expectInvariants(cluster.database)
            let verified = try await runConcertd(["verify", "--database-url", cluster.database.url])
            #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
            #expect(verified.stdout.split(separator: "\n").count == 8 && !verified.stdout.contains("BREACH"))
            // And verify does see a breach: one balance no longer equals its history.
            _ = try await cluster.database.scalar("UPDATE users SET balance = balance + 1 WHERE id = (SELECT MIN(user_id) FROM point_entries)")
            let broken = try await runConcertd(["verify", "--database-url", cluster.database.url])
            #expect(broken.status == 1)
            #expect(broken.stdout.contains("BREACH every balance equals the sum of its history: 1 rows"), "\(broken.stdout)")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// Without Redis each instance caches the list, and an admin write through one drops it on
    /// all (the generation in PostgreSQL), so what one instance writes the others list at once.
    @Test(.enabled(if: serversAreConfigured)) func instancesOnPostgresAloneNeverServeAStaleList() async throws {
        let cluster = try await Cluster.start(count: 2, redis: false, environment: [:])
        do {
            let (a, b) = (cluster.instances[0], cluster.instances[1])
            _ = try await a.api.openConcert(seats: 5, price: 10)
            #expect((try await b.api.call(.get, "/v1/concerts").json["concerts"] as? [Any])?.count == 1)
            _ = try await a.api.openConcert(seats: 5, price: 10)
            #expect((try await b.api.call(.get, "/v1/concerts").json["concerts"] as? [Any])?.count == 2)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// One token, one purchase: the payment ends its caller's queue token in the same step, so two
    /// payments sent at once with one token through two instances cannot both go through, and a
    /// hold racing a payment never makes the payment fail. With Redis and with PostgreSQL alone.
    @Test(.enabled(if: serversAreConfigured), arguments: [true, false])
    func oneQueueTokenPaysOnceAcrossInstances(redis: Bool) async throws {
        let cluster = try await Cluster.start(count: 2, redis: redis, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1000",
                                                                                   "CONCERT_MAX_HOLDS_PER_USER": "10"])
        do {
            let (a, b) = (cluster.instances[0], cluster.instances[1])
            let (concertId, scheduleId) = try await a.api.openConcert(seats: 60, price: 100)
            for attempt in 0..<8 {
                let jwt = try await JWTTestSigner.token(user: Int64(500 + attempt))
                let queue = try await a.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt).json["token"] as! String
                #expect(try await a.api.call(.post, "/v1/points/charges", jwt: jwt, json: #"{"amount": 1000}"#).status == 200)
                var held: [Int] = []
                for seat in 0..<3 {
                    let hold = try await (seat == 0 ? a : b).api.call(.post, "/v1/reservations", jwt: jwt, queueToken: queue,
                        json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(attempt * 6 + seat + 1)}"#)
                    #expect(hold.status == 201)
                    held.append(hold.json["id"] as! Int)
                }
                let reservations = held
                // Two payments of two held seats with the one token, at the same instant, one
                // through each instance.
                let gate = StartGate()
                let payments = try await withThrowingTaskGroup(of: (status: Int, code: String?).self) { group in
                    for (index, server) in [a, b].enumerated() {
                        group.addTask {
                            await gate.wait()
                            let reply = try await server.api.call(.post, "/v1/payments", jwt: jwt, queueToken: queue,
                                                                 json: #"{"reservationId": \#(reservations[index])}"#)
                            return (reply.status, reply.json["code"] as? String)
                        }
                    }
                    await gate.open(whenArrived: 2)
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(payments.filter { $0.status == 201 }.count == 1, "attempt \(attempt): \(payments)")
                #expect(payments.filter { $0.status == 401 && $0.code == "QUEUE_TOKEN_INVALID" }.count == 1, "attempt \(attempt): \(payments)")
                #expect(try await a.api.call(.get, "/v1/points", jwt: jwt).json["balance"] as? Int == 900, "charged once")
                // The refused payment changed nothing: its reservation is still HELD.
                var statuses: [String?] = []
                for index in 0..<2 {
                    statuses.append(try await b.api.call(.get, "/v1/reservations/\(reservations[index])", jwt: jwt).json["status"] as? String)
                }
                #expect(statuses.sorted { ($0 ?? "") < ($1 ?? "") } == ["CONFIRMED", "HELD"], "attempt \(attempt): \(statuses)")
                // The token has ended: the third held seat cannot be paid with it, nor a seat held.
                let late = try await b.api.call(.post, "/v1/payments", jwt: jwt, queueToken: queue,
                                               json: #"{"reservationId": \#(reservations[2])}"#)
                #expect(late.status == 401 && late.json["code"] as? String == "QUEUE_TOKEN_INVALID")
                #expect(try await a.api.call(.post, "/v1/reservations", jwt: jwt, queueToken: queue,
                    json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(attempt * 6 + 5)}"#).status == 401)

                // A payment and a hold at the same instant with one new token: the payment goes
                // through whatever the hold does (a hold does not claim the token; one that passed its
                // check before the payment's claim is ordered before the payment).
                let second = try await b.api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt).json["token"] as! String
                let raceGate = StartGate()
                let (paid, heldStatus) = try await withThrowingTaskGroup(of: (Bool, Int).self) { group in
                    group.addTask {
                        await raceGate.wait()
                        let reply = try await a.api.call(.post, "/v1/payments", jwt: jwt, queueToken: second,
                                                        json: #"{"reservationId": \#(reservations[2])}"#)
                        return (true, reply.status)
                    }
                    group.addTask {
                        await raceGate.wait()
                        let reply = try await b.api.call(.post, "/v1/reservations", jwt: jwt, queueToken: second,
                            json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(attempt * 6 + 6)}"#)
                        return (false, reply.status)
                    }
                    await raceGate.open(whenArrived: 2)
                    var paid = 0, held = 0
                    for try await (isPayment, status) in group { if isPayment { paid = status } else { held = status } }
                    return (paid, held)
                }
                #expect(paid == 201, "attempt \(attempt): the payment racing a hold answered \(paid)")
                #expect([201, 401].contains(heldStatus), "attempt \(attempt): the hold racing a payment answered \(heldStatus)")
                #expect(try await b.api.call(.get, "/v1/queue/tokens/current", jwt: jwt, queueToken: second).status == 401)
            }
            try await expectInvariants(cluster.database)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// One line per concert across instances: first come, first served, and never more than
    /// CONCERT_QUEUE_MAX_ACTIVE ACTIVE tokens at any sampled instant, while users join, leave
    /// and run out.
    @Test(.enabled(if: serversAreConfigured)) func threeInstancesServeOneFairLineAndKeepTheCap() async throws {
        let maxActive = 5
        let cluster = try await Cluster.start(count: 3, environment: [
            "CONCERT_QUEUE_MAX_ACTIVE": "\(maxActive)", "CONCERT_QUEUE_ACTIVE_SECONDS": "3", "CONCERT_QUEUE_SWEEP_MS": "100"])
        let redis = try RedisConnectionPool(url: TestServices.redisURL!, connections: 1)
        do {
            let servers = cluster.instances
            let (concertId, _) = try await servers[0].api.openConcert(seats: 10, price: 100)
            var line: [InLine] = []
            for user in 200..<230 {
                let jwt = try await JWTTestSigner.token(user: Int64(user))
                let joined = try await servers[user % 3].api.call(.post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                let index = line.count
                #expect(joined.json["status"] as? String == (index < maxActive ? "ACTIVE" : "WAITING"))
                #expect(joined.json["position"] as? Int == max(0, index - maxActive), "user \(user)")
                line.append((user, jwt, joined.json["token"] as! String))
            }
            let activeKey = "\(cluster.prefix)queue:{\(concertId)}:active"
            let sampling = Task { () -> (samples: Int, most: Int) in
                var samples = 0, most = 0
                while !Task.isCancelled {
                    if let count = try? await redis.send("ZCARD", RESPArgument(activeKey)).integer {
                        samples += 1
                        most = max(most, Int(count))
                    }
                    try? await Task.sleep(for: .milliseconds(2))
                }
                return (samples, most)
            }
            try await expectOneFairLine(line, maxActive: maxActive, servers: servers)
            sampling.cancel()
            let (samples, most) = await sampling.value
            #expect(samples > 50)
            #expect(most <= maxActive)
            #expect(most == maxActive)
        } catch {
            await redis.close()
            await cluster.stop()
            throw error
        }
        await redis.close()
        await cluster.stop()
    }

    /// The per-user limit is one bucket in Redis, whichever instance a request reaches: 40
    /// requests released at once over two instances get about the limit, not twice it (with a
    /// bucket per instance, 10 of 40 passed in 0.2 s).
    @Test(.enabled(if: serversAreConfigured)) func thePerUserRateLimitIsSharedAcrossInstances() async throws {
        let limit = 5
        let cluster = try await Cluster.start(count: 2, environment: ["CONCERT_RATE_LIMIT_PER_USER": "\(limit)"])
        do {
            let servers = cluster.instances
            let jwt = try await JWTTestSigner.token(user: 42)
            let gate = StartGate()
            let clock = ContinuousClock()
            let started = clock.now
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for attempt in 0..<40 {
                    group.addTask {
                        await gate.wait()
                        return try await servers[attempt % 2].api.call(.get, "/v1/points", jwt: jwt).status
                    }
                }
                await gate.open(whenArrived: 40)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let seconds = Double((clock.now - started).components.seconds) + Double((clock.now - started).components.attoseconds) / 1e18
            let allowed = statuses.filter { $0 == 200 }.count
            // The bucket refills `limit` tokens a second, so in `seconds` at most this many pass in all.
            let bound = limit + Int((Double(limit) * seconds).rounded(.up))
            #expect(statuses.allSatisfy { $0 == 200 || $0 == 429 }, "\(statuses)")
            #expect(allowed >= limit, "the burst passes")
            #expect(allowed <= bound, "\(allowed) passed in \(seconds) s; one shared bucket allows \(bound)")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
