import ConcertAPI
import ConcertTestSupport
import Foundation
import Testing

/// Three `concertd` processes on one PostgreSQL and no Redis, as behind a load balancer: the
/// waiting room, the rate limiter and the cache generations live in the database.
let postgresIsConfigured = TestServices.postgresURL != nil || TestServices.required

@Suite("Several instances on PostgreSQL alone", .serialized)
struct PostgresAloneTests {
    private let helpers = MultiInstanceTests()

    private func startCluster(count: Int, environment extra: [String: String]) async throws -> MultiInstanceTests.Cluster {
        guard let admin = TestServices.postgresURL else {
            throw MissingTestService(description: "scripts/test provides CONCERT_TEST_POSTGRES_URL")
        }
        let database = try await TestDatabase.create(adminURL: admin)
        var environment = ["CONCERT_JWT_SECRET": testSecret, "CONCERT_DATABASE_URL": database.url]
        for (key, value) in extra { environment[key] = value }
        var instances: [ConcertdProcess] = []
        do {
            let migrated = try await runConcertd(["migrate"], environment: environment)
            #expect(migrated.status == 0, "\(migrated.stderr)")
            for _ in 0..<count { instances.append(try await ConcertdProcess(arguments: [], environment: environment)) }
        } catch {
            await MultiInstanceTests.Cluster(database: database, instances: instances, prefix: "").stop()
            throw error
        }
        return MultiInstanceTests.Cluster(database: database, instances: instances, prefix: "")
    }

    /// A token issued by one instance is honoured by every other: 60 users join through one
    /// instance, hold through another and pay through all three. No 401 for a live token, ten
    /// seats sold once each, each paid once.
    @Test(.enabled(if: postgresIsConfigured)) func holdsAndPaymentsThroughRandomInstancesNeverSeeA401OrDoubleCharge() async throws {
        let cluster = try await startCluster(count: 3, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1000"])
        do {
            let servers = cluster.instances
            let (concertId, scheduleId) = try await helpers.openConcert(on: servers[0], seats: 10, price: 100)
            let users = Array(100..<160)
            var joined: [Int: (jwt: String, queue: String)] = [:]
            for user in users {
                let jwt = try await helpers.token(user)
                let reply = try await servers[Int.random(in: 0..<3)].request("POST", "v1/concerts/\(concertId)/queue/tokens", token: jwt)
                #expect(reply.json["status"] as? String == "ACTIVE")
                joined[user] = (jwt, reply.json["token"] as! String)
                #expect(try await servers[Int.random(in: 0..<3)].request("POST", "v1/points/charges", token: jwt,
                                                                          body: #"{"amount": 150}"#).status == 200)
                // The token is known everywhere at once.
                for server in servers {
                    let polled = try await server.request("GET", "v1/queue/tokens/current", token: jwt, queueToken: joined[user]!.queue)
                    #expect(polled.status == 200 && polled.json["status"] as? String == "ACTIVE", "user \(user)")
                }
            }
            let tokens = joined
            let gate = StartGate()
            let holds = try await withThrowingTaskGroup(of: (Int, Int, Int?).self) { group in
                for user in users {
                    group.addTask {
                        await gate.wait()
                        let reply = try await servers[Int.random(in: 0..<3)].request("POST", "v1/reservations", token: tokens[user]!.jwt,
                            queueToken: tokens[user]!.queue, body: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(user % 10 + 1)}"#)
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
                            return try await servers[Int.random(in: 0..<3)].requestWithHeaders(
                                "POST", "v1/payments", token: tokens[user]!.jwt, queueToken: tokens[user]!.queue,
                                headers: attempt < 2 ? ["Idempotency-Key": "pay-\(user)"] : [:],
                                body: #"{"reservationId": \#(reservation!)}"#).status
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
                let balance = try await servers[Int.random(in: 0..<3)].request("GET", "v1/points", token: tokens[user]!.jwt)
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
        let cluster = try await startCluster(count: 3, environment: [
            "CONCERT_QUEUE_MAX_ACTIVE": "\(maxActive)", "CONCERT_QUEUE_ACTIVE_SECONDS": "3", "CONCERT_QUEUE_SWEEP_MS": "100"])
        do {
            let servers = cluster.instances
            let (concertId, _) = try await helpers.openConcert(on: servers[0], seats: 10, price: 100)
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
            var line: [(user: Int, jwt: String, queue: String)] = []
            for user in 200..<230 {
                let jwt = try await helpers.token(user)
                let joined = try await servers[user % 3].request("POST", "v1/concerts/\(concertId)/queue/tokens", token: jwt)
                let index = line.count
                #expect(joined.json["status"] as? String == (index < maxActive ? "ACTIVE" : "WAITING"))
                #expect(joined.json["position"] as? Int == max(0, index - maxActive), "user \(user)")
                line.append((user, jwt, joined.json["token"] as! String))
            }
            // Rounds: the ACTIVE ones leave through some instance, everyone still waiting polls
            // through another; exactly the next `maxActive` in join order must then be ACTIVE.
            var admitted = 0
            while admitted + maxActive < line.count {
                let leaving = line[admitted..<(admitted + maxActive)]
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (offset, entry) in leaving.enumerated() {
                        group.addTask {
                            let reply = try await servers[offset % 3].request("DELETE", "v1/queue/tokens/current", token: entry.jwt, queueToken: entry.queue)
                            #expect(reply.status == 204)
                        }
                    }
                    try await group.waitForAll()
                }
                admitted += maxActive
                for (offset, entry) in line[admitted...].enumerated() {
                    let polled = try await servers[(offset + 1) % 3].request("GET", "v1/queue/tokens/current", token: entry.jwt, queueToken: entry.queue)
                    #expect(polled.json["status"] as? String == (offset < maxActive ? "ACTIVE" : "WAITING"), "user \(entry.user)")
                    if offset >= maxActive { #expect(polled.json["position"] as? Int == offset - maxActive) }
                }
            }
            // The last ACTIVE ones are left to run out (3 s); then nobody is ACTIVE.
            let deadline = Date().addingTimeInterval(10)
            var remaining = Array(line[admitted...])
            while !remaining.isEmpty, Date() < deadline {
                try await Task.sleep(for: .milliseconds(200))
                var still: [(user: Int, jwt: String, queue: String)] = []
                for entry in remaining {
                    let polled = try await servers[entry.user % 3].request("GET", "v1/queue/tokens/current", token: entry.jwt, queueToken: entry.queue)
                    if polled.status == 200 { still.append(entry) }
                }
                remaining = still
            }
            #expect(remaining.isEmpty, "ACTIVE tokens did not run out")
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
        let cluster = try await startCluster(count: 3, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1"])
        do {
            let servers = cluster.instances
            let (concertId, _) = try await helpers.openConcert(on: servers[0], seats: 10, price: 100)
            let first = try await helpers.token(300), second = try await helpers.token(301)
            let a = try await servers[0].request("POST", "v1/concerts/\(concertId)/queue/tokens", token: first)
            let b = try await servers[1].request("POST", "v1/concerts/\(concertId)/queue/tokens", token: second)
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
            let polled = try await servers[2].request("GET", "v1/queue/tokens/current", token: second, queueToken: b.json["token"] as? String)
            #expect(polled.json["status"] as? String == "ACTIVE")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
