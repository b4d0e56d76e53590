import ConcertAPI
import ConcertTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing

/// PostgreSQL and Redis of the test's own, three instances, nginx in front.
/// Where the instances of a fault test keep the waiting room, rate limits and cache.
enum SharedStateSetup: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case redis
    case postgresAlone = "postgres-alone"
    var testDescription: String { rawValue }
}

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
        // Tests/ConcertAPITests/Faults/FaultCluster.swift → repository root → docs/nginx.conf
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/nginx.conf")
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

    /// Requests through nginx, as the load sends them.
    var api: API { API(nginx.baseURL) }

    /// A user in line (ACTIVE), with `Payer.charge` points and a hold on `seat`, ready to pay.
    func preparePayer(user: Int, concertId: Int64, scheduleId: Int64, seat: Int, via base: URL) async throws -> Payer {
        let client = HTTPClient()
        let jwt = try await JWTTestSigner.token(user: Int64(user))
        let joined = await client.send(base, .post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
        #expect(joined.string("status") == "ACTIVE", "\(joined)")
        let queue = try #require(joined.string("token"), "\(joined)")
        let charged = await client.send(base, .post, "/v1/points/charges", jwt: jwt, json: #"{"amount": \#(Payer.charge)}"#)
        #expect(charged.status == 200, "\(charged)")
        let hold = await client.send(base, .post, "/v1/reservations", jwt: jwt, queueToken: queue,
                                     json: #"{"scheduleId": \#(scheduleId), "seatNumber": \#(seat)}"#)
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
                    WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%concertd_pay%'
                    """)
            }
            return (waiting ?? 0) > 0
        }
    }

    /// True once every instance serves the line again (Redis is back and each instance's pool has
    /// reconnected; a pool that failed to connect waits out a short back-off first).
    func eventuallyServesTheLine(concertId: Int64, client: HTTPClient, seconds: Double) async -> Bool {
        guard let jwt = try? await JWTTestSigner.token(user: 777) else { return false }
        for instance in instances {
            let served = await Subprocess.eventually(seconds: seconds) {
                guard await client.send(instance.baseURL, .get, "/readyz").status == 200 else { return false }
                let joined = await client.send(instance.baseURL, .post, "/v1/concerts/\(concertId)/queue/tokens", jwt: jwt)
                guard joined.status == 200 || joined.status == 201, let token = joined.string("token") else { return false }
                // Leave at once so the probe holds no place in the line.
                return await client.send(instance.baseURL, .delete, "/v1/queue/tokens/current", jwt: jwt, queueToken: token).status == 204
            }
            if !served { return false }
        }
        return true
    }
}
