import ConcertAPI
import ConcertTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing

/// Faults under load (issue 8): three `concertd` instances behind nginx (run from
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
            let setup = try await cluster.openConcert(seats: 1000)
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
            #expect(first.status == nil, "the client of the killed instance lost its connection: \(first)")
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
                let health = await load.client.send(survivor.baseURL, "GET", "readyz")
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
            let setup = try await cluster.openConcert(seats: 1000)
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
            #expect(cut.status == 503 && cut.code == "SERVICE_UNAVAILABLE", "\(cut)")

            // Down: 503 quickly, everywhere, with Retry-After.
            let first = await whileDown.pay(via: cluster.nginx.baseURL, client: load.client)
            #expect(first.status == 503 && first.retryAfter != nil, "\(first)")
            for instance in cluster.instances {
                let ready = await load.client.send(instance.baseURL, "GET", "readyz")
                #expect(ready.status == 503)
            }
            #expect(await load.waitForStatus(503, after: downAt, seconds: 20), "the load saw 503s while PostgreSQL was down")

            try await cluster.postgres.startServer()
            let upAt = ContinuousClock.now
            load.mark("postgres start", at: upAt)
            for instance in cluster.instances {
                let ready = await Subprocess.eventually(seconds: 30) {
                    await load.client.send(instance.baseURL, "GET", "readyz").status == 200
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
            let setup = try await cluster.openConcert(seats: 1000)
            let other = try await cluster.openConcert(seats: 10)
            let payerA = try await cluster.preparePayer(user: 900, concertId: setup.concertId, scheduleId: setup.scheduleId,
                                                       seat: 1000, via: cluster.nginx.baseURL)
            let payerB = try await cluster.preparePayer(user: 901, concertId: setup.concertId, scheduleId: setup.scheduleId,
                                                       seat: 999, via: cluster.nginx.baseURL)
            // A line on another concert: `maxActive` ACTIVE, the rest WAITING in order.
            let client = HTTPClient()
            var line: [(user: Int, jwt: String, token: String, status: String, position: Int)] = []
            for user in 300..<(300 + maxActive + 5) {
                let jwt = try await cluster.token(user)
                let joined = await client.send(cluster.nginx.baseURL, "POST", "v1/concerts/\(other.concertId)/queue/tokens", jwt: jwt)
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
                let polled = await client.send(cluster.nginx.baseURL, "GET", "v1/queue/tokens/current", jwt: entry.jwt, queue: entry.token)
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
                let polled = await client.send(cluster.nginx.baseURL, "GET", "v1/queue/tokens/current", jwt: entry.jwt, queue: entry.token)
                #expect(polled.status == 401 && polled.code == "QUEUE_TOKEN_INVALID", "user \(entry.user): \(polled)")
            }
            var rejoined: [String] = []
            for entry in line {
                let joined = await client.send(cluster.nginx.baseURL, "POST", "v1/concerts/\(other.concertId)/queue/tokens", jwt: entry.jwt)
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

// MARK: - The cluster

/// Where the instances of a fault test keep the waiting room, rate limits and cache.
enum SharedStateSetup: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case redis
    case postgresAlone = "postgres-alone"
    var testDescription: String { rawValue }
}

/// PostgreSQL and Redis of the test's own, three instances, nginx in front.
final class FaultCluster: @unchecked Sendable {
    let postgres: ThrowawayPostgres
    let redis: ThrowawayRedis
    let database: TestDatabase
    let instances: [ConcertdProcess]
    let nginx: Nginx
    private let loads = Mutex<[Load]>([])

    /// A load started on this cluster; `stop()` ends it first, even when a test failed midway.
    func register(_ load: Load) { loads.withLock { $0.append(load) } }

    private init(postgres: ThrowawayPostgres, redis: ThrowawayRedis, database: TestDatabase, instances: [ConcertdProcess], nginx: Nginx) {
        self.postgres = postgres
        self.redis = redis
        self.database = database
        self.instances = instances
        self.nginx = nginx
    }

    static var documentedNginxConf: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/nginx.conf")
    }

    /// Starts a cluster (Redis with its append-only file), runs `body` on it, and stops it
    /// whether `body` succeeded or not.
    static func with(_ setup: SharedStateSetup = .redis, environment: [String: String],
                     _ body: (FaultCluster) async throws -> Void) async throws {
        let cluster = try await start(redisAppendOnly: true, setup: setup, environment: environment)
        do {
            try await body(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    static func start(redisAppendOnly: Bool, setup: SharedStateSetup = .redis, environment extra: [String: String]) async throws -> FaultCluster {
        let postgres = try await ThrowawayPostgres.start()
        var redis: ThrowawayRedis?
        var instances: [ConcertdProcess] = []
        var nginxDirectory: URL?
        do {
            redis = try await ThrowawayRedis.start(appendOnly: redisAppendOnly)
            let database = try await TestDatabase.create(adminURL: postgres.adminURL)
            var environment = ["CONCERT_JWT_SECRET": testSecret, "CONCERT_DATABASE_URL": database.url,
                               "CONCERT_REDIS_URL": redis!.url, "CONCERT_QUEUE_SWEEP_MS": "100"]
            // PostgreSQL alone: the Redis runs but no instance is told of it.
            if setup == .postgresAlone { environment["CONCERT_REDIS_URL"] = nil }
            for (key, value) in extra { environment[key] = value }
            let env = environment
            let migrated = await withDeadline(seconds: 60, fallback: nil) { try? await runConcertd(["migrate"], environment: env) }
            guard migrated?.status == 0 else { throw SubprocessFailure("concertd migrate failed: \(migrated?.stderr ?? "timed out")") }
            for _ in 0..<3 { instances.append(try await ConcertdProcess(arguments: [], environment: environment)) }
            let directory = try Subprocess.temporaryDirectory("concertd-faults-nginx")
            nginxDirectory = directory
            let port = try Subprocess.freePort()
            let configuration = try Nginx.configuration(
                documented: try String(contentsOf: documentedNginxConf, encoding: .utf8), listenPort: port,
                upstreamPorts: instances.map { $0.baseURL.port! }, directory: directory)
            let nginx = try await Nginx.start(configuration: configuration, port: port, directory: directory)
            return FaultCluster(postgres: postgres, redis: redis!, database: database, instances: instances, nginx: nginx)
        } catch {
            for instance in instances { await Subprocess.stop(instance.process) }
            if let nginxDirectory { try? FileManager.default.removeItem(at: nginxDirectory) }
            await redis?.stop()
            await postgres.stop()
            throw error
        }
    }

    func stop() async {
        for load in loads.withLock({ $0 }) { load.stop() }
        await nginx.stop()
        try? FileManager.default.removeItem(at: nginx.directory)
        for instance in instances { await Subprocess.stop(instance.process, signal: SIGTERM, seconds: 10) }
        await redis.stop()
        await postgres.stop()
    }

    func token(_ user: Int, admin: Bool = false) async throws -> String {
        try await ConcertService.token(secret: testSecret, userId: Int64(user), admin: admin, ttlSeconds: 600)
    }

    func openConcert(seats: Int) async throws -> (concertId: Int, scheduleId: Int) {
        let client = HTTPClient()
        let admin = try await token(1, admin: true)
        let concert = await client.send(nginx.baseURL, "POST", "v1/admin/concerts", jwt: admin, body: """
            {"title": "T", "artist": "A", "venue": "V", "bookingOpensAt": "2020-01-01T00:00:00Z", "bookingClosesAt": "2099-01-01T00:00:00Z"}
            """)
        let concertId = try #require(concert.int("id"), "\(concert)")
        let schedule = await client.send(nginx.baseURL, "POST", "v1/admin/concerts/\(concertId)/schedules", jwt: admin,
                                         body: #"{"startsAt": "2098-01-01T00:00:00Z", "price": \#(FaultTests.price), "seatCount": \#(seats)}"#)
        return (concertId, try #require(schedule.int("id"), "\(schedule)"))
    }

    /// A user in line (ACTIVE), with `Payer.charge` points and a hold on `seat`, ready to pay.
    func preparePayer(user: Int, concertId: Int, scheduleId: Int, seat: Int, via base: URL) async throws -> Payer {
        let client = HTTPClient()
        let jwt = try await token(user)
        let joined = await client.send(base, "POST", "v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
        #expect(joined.string("status") == "ACTIVE", "\(joined)")
        let queue = try #require(joined.string("token"), "\(joined)")
        let charged = await client.send(base, "POST", "v1/points/charges", jwt: jwt, body: #"{"amount": \#(Payer.charge)}"#)
        #expect(charged.status == 200, "\(charged)")
        let hold = await client.send(base, "POST", "v1/reservations", jwt: jwt, queue: queue,
                                     body: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(seat)}"#)
        let reservationId = try #require(hold.int("id"), "\(hold)")
        return Payer(user: user, jwt: jwt, concertId: concertId, reservationId: reservationId, queue: queue)
    }

    /// True once some backend of the service waits for a lock on a user's row (the payment the
    /// test holds up).
    func eventuallyPaymentWaitsForALock(seconds: Double) async -> Bool {
        await Subprocess.eventually(seconds: seconds) {
            let waiting = await withDeadline(seconds: 5, fallback: nil) {
                try? await self.database.scalar("""
                    SELECT COUNT(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%concertd_pay(%'
                    """)
            }
            return (waiting ?? 0) > 0
        }
    }

    /// True once every instance serves the line again (Redis is back and each instance's pool has
    /// reconnected; a pool that failed to connect waits out a short back-off first).
    func eventuallyServesTheLine(concertId: Int, client: HTTPClient, seconds: Double) async -> Bool {
        guard let jwt = try? await token(777) else { return false }
        for instance in instances {
            let served = await Subprocess.eventually(seconds: seconds) {
                guard await client.send(instance.baseURL, "GET", "readyz").status == 200 else { return false }
                let joined = await client.send(instance.baseURL, "POST", "v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                guard joined.status == 200 || joined.status == 201, let token = joined.string("token") else { return false }
                // Leave at once so the probe holds no place in the line.
                return await client.send(instance.baseURL, "DELETE", "v1/queue/tokens/current", jwt: jwt, queue: token).status == 204
            }
            if !served { return false }
        }
        return true
    }
}

// MARK: - A payment the test steers

final class Payer: Sendable {
    static let charge = 100
    let user: Int
    let jwt: String
    let concertId: Int
    let reservationId: Int
    let queue: Mutex<String>
    var key: String { "pay-\(user)-\(reservationId)" }

    init(user: Int, jwt: String, concertId: Int, reservationId: Int, queue: String) {
        self.user = user
        self.jwt = jwt
        self.concertId = concertId
        self.reservationId = reservationId
        self.queue = Mutex(queue)
    }

    func pay(via base: URL, client: HTTPClient) async -> Answer {
        await client.send(base, "POST", "v1/payments", jwt: jwt, queue: queue.withLock { $0 }, key: key,
                          body: #"{"reservationId": \#(reservationId)}"#)
    }

    /// Retries the payment with its key as a client would: after a 5xx, a lost connection or 409
    /// IDEMPOTENCY_KEY_IN_USE it tries again; after 401 QUEUE_TOKEN_INVALID it rejoins first.
    func settle(via base: URL, client: HTTPClient, seconds: Double) async -> (final: Answer, attempts: [Answer], rejoins: Int) {
        var attempts: [Answer] = []
        var rejoins = 0
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while true {
            let answer = await pay(via: base, client: client)
            attempts.append(answer)
            if answer.code == "QUEUE_TOKEN_INVALID" {
                let joined = await client.send(base, "POST", "v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                if let token = joined.string("token") { queue.withLock { $0 = token } }
                rejoins += 1
            } else if !answer.isRetryable {
                return (answer, attempts, rejoins)
            }
            if ContinuousClock.now > deadline { return (answer, attempts, rejoins) }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }
}

// MARK: - The load

struct Ledger: Sendable {
    /// Points each user was told were charged.
    var charged: [Int: Int] = [:]
    /// Reservations the clients were told were paid.
    var paid: [Int] = []
    var paidBy: [Int: Int] = [:]
    /// Charges or payments that never reached a final answer.
    var unsettled: [String] = []
    var rejoins = 0

    mutating func merge(_ other: Ledger) {
        charged.merge(other.charged, uniquingKeysWith: +)
        paid += other.paid
        paidBy.merge(other.paidBy, uniquingKeysWith: +)
        unsettled += other.unsettled
        rejoins += other.rejoins
    }
}

/// A few users, each in a loop through nginx: join the line, charge, hold a seat, pay; charges
/// and payments carry an Idempotency-Key and are retried with it until they get a final answer,
/// as the contract asks clients to.
final class Load: Sendable {
    let client: HTTPClient
    let base: URL
    let concertId: Int
    let scheduleId: Int
    let users: [Int]
    private let nextSeat: Mutex<Int>
    private let marks = Mutex<[(String, ContinuousClock.Instant)]>([])

    init(cluster: FaultCluster, concertId: Int, scheduleId: Int, users: [Int], firstSeat: Int, client: HTTPClient = HTTPClient()) {
        self.client = client
        self.base = cluster.nginx.baseURL
        self.concertId = concertId
        self.scheduleId = scheduleId
        self.users = users
        self.nextSeat = Mutex(firstSeat)
        cluster.register(self)
    }

    var calls: [Call] { client.calls }

    func mark(_ what: String, at instant: ContinuousClock.Instant) { marks.withLock { $0.append((what, instant)) } }

    private let stopped = Mutex(false)

    /// Ends the load: each user finishes the step it is in (settling it) and stops.
    func stop() { stopped.withLock { $0 = true } }

    /// Runs until `stop()`, or `seconds` at most.
    func run(seconds: Double = 60) async -> Ledger {
        let stopAt = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let jwts = await withTaskGroup(of: (Int, String).self) { group in
            for user in users {
                group.addTask { (user, (try? await ConcertService.token(secret: testSecret, userId: Int64(user), admin: false, ttlSeconds: 600)) ?? "") }
            }
            return await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
        }
        return await withTaskGroup(of: Ledger.self) { group in
            for user in users {
                group.addTask { await self.user(user, jwt: jwts[user]!, until: stopAt) }
            }
            return await group.reduce(into: Ledger()) { $0.merge($1) }
        }
    }

    private func user(_ user: Int, jwt: String, until stopAt: ContinuousClock.Instant) async -> Ledger {
        var ledger = Ledger()
        var queue: String?
        var round = 0
        while ContinuousClock.now < stopAt, !stopped.withLock({ $0 }) {
            // A steady, modest pace: each user starts a round every 250 ms at most.
            if round > 0 { try? await Task.sleep(for: .milliseconds(250)) }
            round += 1
            if queue == nil {
                let joined = await client.send(base, "POST", "v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                guard joined.string("status") == "ACTIVE", let token = joined.string("token") else {
                    try? await Task.sleep(for: .milliseconds(100))
                    continue
                }
                queue = token
            }
            let thisRound = round
            let charge = await settle(&queue, jwt: jwt) { [client, base] _ in
                await client.send(base, "POST", "v1/points/charges", jwt: jwt, key: "charge-\(user)-\(thisRound)",
                                  body: #"{"amount": \#(FaultTests.price)}"#)
            }
            ledger.rejoins += charge.rejoins
            if charge.final.status == 200 {
                ledger.charged[user, default: 0] += FaultTests.price
            } else {
                if charge.final.isRetryable { ledger.unsettled.append("charge-\(user)-\(round): \(charge.final)") }
                continue
            }
            let seat = nextSeat.withLock { seat in
                defer { seat += 1 }
                return seat
            }
            let hold = await client.send(base, "POST", "v1/reservations", jwt: jwt, queue: queue,
                                         body: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(seat)}"#)
            if hold.code == "QUEUE_TOKEN_INVALID" || hold.code == "QUEUE_TOKEN_NOT_ACTIVE" { queue = nil; ledger.rejoins += 1 }
            guard hold.status == 201, let reservation = hold.int("id") else { continue }
            let pay = await settle(&queue, jwt: jwt) { [client, base] queue in
                await client.send(base, "POST", "v1/payments", jwt: jwt, queue: queue, key: "pay-\(user)-\(thisRound)",
                                  body: #"{"reservationId": \#(reservation)}"#)
            }
            ledger.rejoins += pay.rejoins
            if pay.final.status == 201 {
                ledger.paid.append(reservation)
                ledger.paidBy[user, default: 0] += 1
                queue = nil  // paying ends the token
            } else {
                ledger.unsettled.append("pay-\(user)-\(round): \(pay.final)")
            }
        }
        return ledger
    }

    /// Retries with the same request (and key) until a final answer or 30 s; rejoins the line on
    /// 401 QUEUE_TOKEN_INVALID.
    private func settle(_ queue: inout String?, jwt: String, _ attempt: @Sendable (String?) async -> Answer) async -> (final: Answer, rejoins: Int) {
        let deadline = ContinuousClock.now + .seconds(30)
        var rejoins = 0
        while true {
            let answer = await attempt(queue)
            if answer.code == "QUEUE_TOKEN_INVALID" {
                let joined = await client.send(base, "POST", "v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                if let token = joined.string("token") { queue = token }
                rejoins += 1
            } else if !answer.isRetryable {
                return (answer, rejoins)
            }
            if ContinuousClock.now > deadline { return (answer, rejoins) }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func waitForSuccesses(_ count: Int, after instant: ContinuousClock.Instant = .now - .seconds(3600), seconds: Double) async -> Bool {
        await Subprocess.eventually(seconds: seconds) {
            self.calls.filter { $0.started > instant && (200..<300).contains($0.status ?? 0) }.count >= count
        }
    }

    /// Lets the load run on until it has had `count` more successes (or 30 s), then stops it.
    func finish(afterSuccesses count: Int, after instant: ContinuousClock.Instant) async {
        _ = await waitForSuccesses(count, after: instant, seconds: 30)
        stop()
    }

    func waitForStatus(_ status: Int, after instant: ContinuousClock.Instant, seconds: Double) async -> Bool {
        await Subprocess.eventually(seconds: seconds) { self.calls.contains { $0.started >= instant && $0.status == status } }
    }
}

// MARK: - HTTP with a bound on every request

struct Answer: Sendable, CustomStringConvertible {
    var status: Int?
    var body: Data
    var retryAfter: String?
    var error: String?

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    var code: String? { json["code"] as? String }
    func string(_ key: String) -> String? { json[key] as? String }
    func int(_ key: String) -> Int? { (json[key] as? NSNumber)?.intValue }
    /// Worth retrying with the same key: no answer, a 5xx, or the key's first use still counts
    /// as running.
    var isRetryable: Bool { status == nil || (status ?? 0) >= 500 || code == "IDEMPOTENCY_KEY_IN_USE" }
    var description: String {
        "\(status.map(String.init) ?? "no answer") \(code ?? "")\(error.map { " " + $0 } ?? "") \(String(decoding: body.prefix(200), as: UTF8.self))"
    }
}

struct Call: Sendable, CustomStringConvertible {
    var id: Int
    var what: String
    var started: ContinuousClock.Instant
    var ended: ContinuousClock.Instant
    var status: Int?
    var code: String?
    var seconds: Double { let d = ended - started; return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
    var description: String { "\(what) → \(status.map(String.init) ?? "no answer") \(code ?? "") in \(String(format: "%.2f", seconds)) s" }
}

/// URLSession with its own timeout, every request also under `withDeadline`, every request
/// recorded.
final class HTTPClient: Sendable {
    private let session: URLSession
    private let recorded = Mutex<[Call]>([])

    init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 12
        configuration.timeoutIntervalForResource = 15
        configuration.httpMaximumConnectionsPerHost = 32
        session = URLSession(configuration: configuration)
    }

    deinit { session.invalidateAndCancel() }

    var calls: [Call] { recorded.withLock { $0 } }

    func send(_ base: URL, _ method: String, _ path: String, jwt: String? = nil, queue: String? = nil, key: String? = nil,
              body: String? = nil) async -> Answer {
        var request = URLRequest(url: base.appendingPathComponent(path))
        request.httpMethod = method
        request.timeoutInterval = 12
        if let jwt { request.setValue("Bearer \(jwt)", forHTTPHeaderField: "Authorization") }
        if let queue { request.setValue(queue, forHTTPHeaderField: "Queue-Token") }
        if let key { request.setValue(key, forHTTPHeaderField: "Idempotency-Key") }
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let started = ContinuousClock.now
        let session = self.session
        let sent = request
        let answer = await withDeadline(seconds: 15, fallback: Answer(status: nil, body: Data(), error: "no answer within 15 s")) {
            do {
                let (data, response) = try await session.data(for: sent)
                let http = response as? HTTPURLResponse
                return Answer(status: http?.statusCode, body: data, retryAfter: http?.value(forHTTPHeaderField: "Retry-After"))
            } catch {
                return Answer(status: nil, body: Data(), error: "\(error)")
            }
        }
        let ended = ContinuousClock.now
        let port = base.port.map { ":\($0)" } ?? ""
        recorded.withLock { calls in
            calls.append(Call(id: calls.count, what: "\(method) \(port)/\(path)", started: started, ended: ended,
                              status: answer.status, code: answer.code))
        }
        return answer
    }
}
