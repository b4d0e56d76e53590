import ConcertAPI
import ConcertTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing

/// Faults under load: three `concertd` instances behind nginx (run from
/// docs/nginx.conf) on a PostgreSQL cluster and a Redis of the test's own, a steady load of
/// joins, charges, holds and payments with Idempotency-Keys, and one fault in the middle of it:
/// `kill -9` of an instance, a PostgreSQL restart, Redis restarts. After each: the survivors kept
/// serving, every request was answered quickly (2xx, 4xx or 503; 502 only for what was in flight
/// on a killed instance), a payment whose first attempt failed in the fault completes exactly once
/// when retried with its key, and `concertd verify` is clean.
let faultToolsAreInstalled = ThrowawayPostgres.isAvailable && ThrowawayRedis.executable != nil && Nginx.executable != nil

@Suite("Faults under load", .serialized)
struct FaultTests {
    static let price = 10
    /// No request may take longer than this, whatever the fault.
    static let requestBound: Double = 10

    // MARK: - The tests

    /// An instance is killed with SIGKILL mid-load. A payment caught in flight on it (held at the
    /// user's row lock by the test, so it is in flight for sure) is retried through nginx with
    /// the same key: 409 IDEMPOTENCY_KEY_IN_USE while its abandoned claim's lease runs, then 201,
    /// once.
    /// Run with Redis and on PostgreSQL alone (the waiting room in the database).
    @Test(.enabled(if: faultToolsAreInstalled || TestServices.required), .timeLimit(.minutes(2)), arguments: SharedStateSetup.allCases)
    func killingAnInstanceMidLoadLeavesTheOthersServing(_ setup: SharedStateSetup) async throws {
        try await FaultCluster.with(setup, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1000"]) { cluster in
            let setup = try await cluster.api.openConcert(seats: 1000, price: Int64(Self.price))
            let victim = cluster.instances[2]
            let survivors = Array(cluster.instances[0..<2])
            let payer = try await cluster.preparePayer(user: 900, concertId: setup.concertId, scheduleId: setup.scheduleId,
                                                      seat: 1000, via: victim.baseURL)
            let load = Load(cluster: cluster, concertId: setup.concertId, scheduleId: setup.scheduleId, users: Array(1000..<1004),
                            firstSeat: 1)
            let running = Task { await load.run() }
            #expect(await load.waitForSuccesses(20, seconds: 30), "the load got going")

            // The payment reaches the victim and waits at the user's row lock, its key claimed.
            let lock = try await HeldTransaction.begin(on: cluster.database, ["SELECT 1 FROM users WHERE id = \(payer.user) FOR UPDATE"])
            let firstAttempt = Task { await payer.pay(via: victim.baseURL, client: load.client) }
            let waiting = await cluster.eventuallyPaymentWaitsForALock(seconds: 10)
            #expect(waiting, "the payment reached the user's row lock")

            let killedAt = ContinuousClock.now
            kill(victim.process.processIdentifier, SIGKILL)
            let first = await firstAttempt.value
            await withDeadline(seconds: 10, fallback: ()) { await lock.release() }
            #expect(!first.answered, "the client of the killed instance lost its connection: \(first)")
            load.mark("kill", at: killedAt)

            // Retried through the balancer with the same key, until it completes.
            let retried = await payer.settle(via: cluster.nginx.baseURL, client: load.client, seconds: 40)
            #expect(retried.final.status == 201, "\(retried.attempts)")
            #expect(retried.attempts.contains { $0.code == "IDEMPOTENCY_KEY_IN_USE" } || retried.attempts.count == 1)

            await load.finish(afterSuccesses: 20, after: .now)
            let ledger = await running.value
            let calls = load.calls
            // Only the requests in flight on the victim when it died may end in 502 (nginx) or
            // a lost connection.
            let inFlight = calls.filter { $0.started <= killedAt + .milliseconds(500) && $0.ended >= killedAt }
            for call in calls where call.status == nil || call.status == 502 || call.status == 504 {
                #expect(inFlight.contains { $0.id == call.id }, "\(call) was not in flight at the kill")
            }
            #expect(calls.filter { $0.status == 502 || $0.status == nil }.count <= 8)
            try await expectHealthyAnswers(calls, ledger: ledger, after: killedAt, allow: [502], survivors: survivors)
            try await expectExactlyOnce(cluster, ledger: ledger, payers: [payer])
            // The survivors kept serving, directly too.
            for survivor in survivors {
                let health = await load.client.send(survivor.baseURL, .get, "/readyz")
                #expect(health.status == 200)
            }
        }
    }

    /// PostgreSQL is stopped mid-load (fast shutdown: every connection cut) and started again.
    /// While it is down every instance answers 503 quickly; a payment cut off at the row lock (its
    /// key claimed, the release impossible while the database is down) and a payment first tried
    /// while the database is down both complete exactly once when retried with their keys.
    /// Run with Redis and on PostgreSQL alone (then the waiting room is down with the database,
    /// and comes back with its lines).
    @Test(.enabled(if: faultToolsAreInstalled || TestServices.required), .timeLimit(.minutes(2)), arguments: SharedStateSetup.allCases)
    func restartingPostgresMidLoadGives503sThenServesAgain(_ setup: SharedStateSetup) async throws {
        try await FaultCluster.with(setup, environment: ["CONCERT_QUEUE_MAX_ACTIVE": "1000"]) { cluster in
            let setup = try await cluster.api.openConcert(seats: 1000, price: Int64(Self.price))
            let cutOff = try await cluster.preparePayer(user: 900, concertId: setup.concertId, scheduleId: setup.scheduleId,
                                                       seat: 1000, via: cluster.instances[0].baseURL)
            let whileDown = try await cluster.preparePayer(user: 901, concertId: setup.concertId, scheduleId: setup.scheduleId,
                                                          seat: 999, via: cluster.instances[1].baseURL)
            let load = Load(cluster: cluster, concertId: setup.concertId, scheduleId: setup.scheduleId, users: Array(1000..<1004),
                            firstSeat: 1)
            let running = Task { await load.run() }
            #expect(await load.waitForSuccesses(20, seconds: 30), "the load got going")

            let lock = try await HeldTransaction.begin(on: cluster.database, ["SELECT 1 FROM users WHERE id = \(cutOff.user) FOR UPDATE"])
            let cutOffAttempt = Task { await cutOff.pay(via: cluster.nginx.baseURL, client: load.client) }
            #expect(await cluster.eventuallyPaymentWaitsForALock(seconds: 10), "the payment reached the user's row lock")

            let downAt = ContinuousClock.now
            load.mark("postgres stop", at: downAt)
            try await cluster.postgres.stopServer()
            await withDeadline(seconds: 10, fallback: ()) { await lock.release() }
            let cut = await cutOffAttempt.value
            // The fast shutdown ends the lock holder's session first. The payment is one statement
            // inside the database, so in that instant it may get the lock and commit before its own
            // session is ended: then it answers 201; otherwise it is cut off with a 503. Either way
            // the retries below must complete it exactly once.
            #expect((cut.status == 503 && cut.code == "SERVICE_UNAVAILABLE") || cut.status == 201, "\(cut)")

            // Down: 503 quickly, everywhere, with Retry-After.
            let first = await whileDown.pay(via: cluster.nginx.baseURL, client: load.client)
            #expect(first.status == 503 && first.retryAfter != nil, "\(first)")
            for instance in cluster.instances {
                let ready = await load.client.send(instance.baseURL, .get, "/readyz")
                #expect(ready.status == 503)
            }
            #expect(await load.waitForStatus(503, after: downAt, seconds: 20), "the load saw 503s while PostgreSQL was down")

            try await cluster.postgres.startServer()
            let upAt = ContinuousClock.now
            load.mark("postgres start", at: upAt)
            for instance in cluster.instances {
                let ready = await Subprocess.eventually(seconds: 30) {
                    await load.client.send(instance.baseURL, .get, "/readyz").status == 200
                }
                #expect(ready, "\(instance.baseURL) is ready again without a restart")
            }

            let retriedCut = await cutOff.settle(via: cluster.nginx.baseURL, client: load.client, seconds: 40)
            #expect(retriedCut.final.status == 201, "\(retriedCut.attempts)")
            let retriedDown = await whileDown.settle(via: cluster.nginx.baseURL, client: load.client, seconds: 40)
            #expect(retriedDown.final.status == 201, "\(retriedDown.attempts)")

            await load.finish(afterSuccesses: 20, after: .now)
            let ledger = await running.value
            try await expectHealthyAnswers(load.calls, ledger: ledger, after: upAt, allow: [], survivors: cluster.instances)
            try await expectExactlyOnce(cluster, ledger: ledger, payers: [cutOff, whileDown])
        }
    }

    /// Redis (with the append-only file, as docs/operations.md prescribes) is killed mid-load and
    /// started again: the line is as it was, every token keeps its status and place. Then it is
    /// killed and comes back empty (lost disk, or persistence off): old tokens answer 401
    /// QUEUE_TOKEN_INVALID, never a 5xx, and rejoining works. In both, a payment first tried
    /// while Redis is down completes exactly once when retried with its key.
    @Test(.enabled(if: faultToolsAreInstalled || TestServices.required), .timeLimit(.minutes(2)))
    func restartingRedisMidLoadKeepsTheLineOrAsksClientsToRejoin() async throws {
        let maxActive = 10
        try await FaultCluster.with(environment: ["CONCERT_QUEUE_MAX_ACTIVE": "\(maxActive)"]) { cluster in
            let setup = try await cluster.api.openConcert(seats: 1000, price: Int64(Self.price))
            let other = try await cluster.api.openConcert(seats: 10, price: Int64(Self.price))
            let payerA = try await cluster.preparePayer(user: 900, concertId: setup.concertId, scheduleId: setup.scheduleId,
                                                       seat: 1000, via: cluster.nginx.baseURL)
            let payerB = try await cluster.preparePayer(user: 901, concertId: setup.concertId, scheduleId: setup.scheduleId,
                                                       seat: 999, via: cluster.nginx.baseURL)
            // A line on another concert: `maxActive` ACTIVE, the rest WAITING in order.
            let client = HTTPClient()
            var line: [(user: Int, jwt: String, token: String, status: String, position: Int64)] = []
            for user in 300..<(300 + maxActive + 5) {
                let jwt = try await JWTTestSigner.token(user: Int64(user))
                let joined = await client.send(cluster.nginx.baseURL, .post, "/v1/concerts/\(other.concertId)/queue/tokens", jwt: jwt)
                let token = try #require(joined.string("token"), "\(joined)")
                line.append((user, jwt, token, joined.string("status") ?? "", joined.int("position") ?? -1))
            }
            let statuses = line.map { $0.status }, positions = line.map { $0.position }
            #expect(statuses == Array(repeating: "ACTIVE", count: maxActive) + Array(repeating: "WAITING", count: 5))
            #expect(positions == Array(repeating: 0, count: maxActive) + Array(0..<5))

            let load = Load(cluster: cluster, concertId: setup.concertId, scheduleId: setup.scheduleId, users: Array(1000..<1004),
                            firstSeat: 1, client: client)
            let running = Task { await load.run() }
            #expect(await load.waitForSuccesses(20, seconds: 30), "the load got going")

            // (a) Killed and restarted with its append-only file: nothing is lost.
            let firstDown = ContinuousClock.now
            load.mark("redis kill (append-only)", at: firstDown)
            await cluster.redis.kill()
            let a = await payerA.pay(via: cluster.nginx.baseURL, client: client)
            #expect(a.status == 503 && a.code == "SERVICE_UNAVAILABLE", "\(a)")
            #expect(await load.waitForStatus(503, after: firstDown, seconds: 20), "the load saw 503s while Redis was down")
            try await cluster.redis.startAgain(empty: false)
            load.mark("redis back with its data", at: .now)
            #expect(await cluster.eventuallyServesTheLine(concertId: other.concertId, client: client, seconds: 30))
            for entry in line {
                let polled = await client.send(cluster.nginx.baseURL, .get, "/v1/queue/tokens/current", jwt: entry.jwt, queueToken: entry.token)
                #expect(polled.status == 200 && polled.string("status") == entry.status && polled.int("position") == entry.position,
                        "user \(entry.user) kept their place: \(polled)")
            }
            let retriedA = await payerA.settle(via: cluster.nginx.baseURL, client: client, seconds: 30)
            #expect(retriedA.final.status == 201, "\(retriedA.attempts)")
            #expect(retriedA.rejoins == 0, "the token from before the restart still worked")

            // (b) Killed and back empty: old tokens are 401 QUEUE_TOKEN_INVALID; clients rejoin.
            let secondDown = ContinuousClock.now
            load.mark("redis kill (comes back empty)", at: secondDown)
            await cluster.redis.kill()
            let b = await payerB.pay(via: cluster.nginx.baseURL, client: client)
            #expect(b.status == 503 && b.code == "SERVICE_UNAVAILABLE", "\(b)")
            try await cluster.redis.startAgain(empty: true)
            let emptyAt = ContinuousClock.now
            load.mark("redis back empty", at: emptyAt)
            #expect(await cluster.eventuallyServesTheLine(concertId: other.concertId, client: client, seconds: 30))
            for entry in line {
                let polled = await client.send(cluster.nginx.baseURL, .get, "/v1/queue/tokens/current", jwt: entry.jwt, queueToken: entry.token)
                #expect(polled.status == 401 && polled.code == "QUEUE_TOKEN_INVALID", "user \(entry.user): \(polled)")
            }
            var rejoined: [String] = []
            for entry in line {
                let joined = await client.send(cluster.nginx.baseURL, .post, "/v1/concerts/\(other.concertId)/queue/tokens", jwt: entry.jwt)
                #expect(joined.status == 201, "\(joined)")
                rejoined.append(joined.string("status") ?? "")
            }
            // The line starts again, in the order people came back (the probe left again).
            #expect(rejoined == Array(repeating: "ACTIVE", count: maxActive) + Array(repeating: "WAITING", count: 5), "\(rejoined)")
            let retriedB = await payerB.settle(via: cluster.nginx.baseURL, client: client, seconds: 30)
            #expect(retriedB.final.status == 201, "\(retriedB.attempts)")
            #expect(retriedB.rejoins >= 1, "the old token was refused and the client rejoined")

            await load.finish(afterSuccesses: 20, after: .now)
            let ledger = await running.value
            try await expectHealthyAnswers(load.calls, ledger: ledger, after: emptyAt, allow: [], survivors: cluster.instances)
            #expect(load.calls.contains { $0.started > emptyAt && $0.code == "QUEUE_TOKEN_INVALID" } || ledger.rejoins > 0,
                    "the load met the empty line")
            try await expectExactlyOnce(cluster, ledger: ledger, payers: [payerA, payerB])
        }
    }

    // MARK: - What every fault test asserts

    /// Every answer was quick and of an allowed kind; the load kept succeeding after the fault;
    /// every charge and payment of the load reached a final answer.
    func expectHealthyAnswers(_ calls: [Call], ledger: Ledger, after instant: ContinuousClock.Instant, allow: Set<Int>,
                              survivors: [ConcertdProcess]) async throws {
        #expect(calls.count > 50, "a steady load: \(calls.count) requests")
        let slow = calls.filter { $0.seconds > Self.requestBound }
        #expect(slow.isEmpty, "no request took over \(Self.requestBound) s: \(slow.prefix(5))")
        let bad = calls.filter { call in
            guard let status = call.status else { return !allow.contains(502) }
            return !((200..<500).contains(status) || status == 503 || allow.contains(status))
        }
        #expect(bad.isEmpty, "only 2xx, 4xx and 503 (and \(allow)): \(bad.prefix(5))")
        #expect(!calls.contains { $0.status == 500 }, "never a 500")
        let unavailable = calls.filter { $0.status == 503 }
        #expect(unavailable.allSatisfy { $0.code == "SERVICE_UNAVAILABLE" }, "503s are problem+json SERVICE_UNAVAILABLE")
        let servedAfter = calls.filter { $0.started > instant && (200..<300).contains($0.status ?? 0) }
        #expect(servedAfter.count >= 10, "the load was served after the fault: \(servedAfter.count)")
        #expect(ledger.paid.count >= 2, "the load paid: \(ledger.paid.count)")
        #expect(ledger.unsettled.isEmpty, "every charge and payment reached an answer: \(ledger.unsettled)")
    }

    /// The database holds exactly what the clients were told: one payment per paid reservation,
    /// each balance = charges − payments; and `concertd verify` is clean.
    func expectExactlyOnce(_ cluster: FaultCluster, ledger: Ledger, payers: [Payer]) async throws {
        let database = cluster.database
        let paidByLoad = ledger.paid.count
        let payments = try await database.scalar("SELECT COUNT(*) FROM payments")
        #expect(payments == Int64(paidByLoad + payers.count), "one row per payment the clients were told of")
        for reservation in ledger.paid + payers.map(\.reservationId) {
            let rows = try await database.scalar("SELECT COUNT(*) FROM payments WHERE reservation_id = \(reservation)")
            #expect(rows == 1, "reservation \(reservation) paid once")
        }
        for payer in payers {
            let balance = try await database.scalar("SELECT balance FROM users WHERE id = \(payer.user)")
            #expect(balance == Int64(Payer.charge - Self.price), "payer \(payer.user) was debited once")
        }
        for (user, charged) in ledger.charged {
            let balance = try await database.scalar("SELECT balance FROM users WHERE id = \(user)")
            let paid = ledger.paidBy[user, default: 0]
            #expect(balance == Int64(charged - paid * Self.price), "user \(user): charged \(charged), paid \(paid) times")
        }
        try await expectInvariants(database)
        let verified = await withDeadline(seconds: 60, fallback: nil) {
            try? await runConcertd(["verify", "--database-url", database.url])
        }
        #expect(verified?.status == 0, "\(verified?.stdout ?? "verify did not finish")\(verified?.stderr ?? "")")
    }
}
