import ConcertTestSupport
import Foundation
import Testing

/// Several `concertd` processes on one fresh PostgreSQL database, with the test Redis or on
/// PostgreSQL alone, as behind a load balancer.
struct Cluster {
    var database: TestDatabase
    var instances: [ConcertdProcess]
    /// The Redis key prefix of the instances ("" without Redis).
    var prefix: String

    func stop() async {
        for instance in instances { _ = await instance.stop() }
        try? await database.drop()
    }

    /// Migrates a fresh database and starts `count` instances on it, with `environment` on top
    /// of the shared secret, the database and (when `redis`) the test Redis under a prefix of
    /// their own.
    static func start(count: Int, redis useRedis: Bool = true, environment extra: [String: String]) async throws -> Cluster {
        guard let admin = TestServices.postgresURL else {
            throw MissingTestService(description: "scripts/test provides CONCERT_TEST_POSTGRES_URL")
        }
        var environment = ["CONCERT_JWT_SECRET": testSecret]
        var prefix = ""
        if useRedis {
            guard let redis = TestServices.redisURL else {
                throw MissingTestService(description: "scripts/test provides CONCERT_TEST_POSTGRES_URL and CONCERT_TEST_REDIS_URL")
            }
            prefix = "multi-\(UUID().uuidString.prefix(8)):"
            environment["CONCERT_REDIS_URL"] = redis
            environment["CONCERT_REDIS_KEY_PREFIX"] = prefix
        }
        let database = try await TestDatabase.create(adminURL: admin)
        environment["CONCERT_DATABASE_URL"] = database.url
        for (key, value) in extra { environment[key] = value }
        var instances: [ConcertdProcess] = []
        do {
            let migrated = try await runConcertd(["migrate"], environment: environment)
            #expect(migrated.status == 0, "\(migrated.stderr)")
            for _ in 0..<count { instances.append(try await ConcertdProcess(arguments: [], environment: environment)) }
        } catch {
            await Cluster(database: database, instances: instances, prefix: prefix).stop()
            throw error
        }
        return Cluster(database: database, instances: instances, prefix: prefix)
    }
}

/// A user in a line: their JWT and queue token.
typealias InLine = (user: Int, jwt: String, queue: String)

/// One fair line across `servers`, in rounds: the ACTIVE ones leave through some instance,
/// everyone still waiting polls through another, and exactly the next `maxActive` in join order
/// must then be ACTIVE. The last ACTIVE ones are left to run out (within 10 s); then nobody is.
func expectOneFairLine(_ line: [InLine], maxActive: Int, servers: [ConcertdProcess]) async throws {
    var admitted = 0
    while admitted + maxActive < line.count {
        let leaving = line[admitted..<(admitted + maxActive)]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (offset, entry) in leaving.enumerated() {
                group.addTask {
                    let reply = try await servers[offset % servers.count].api.call(.delete, "/v1/queue/tokens/current", jwt: entry.jwt, queueToken: entry.queue)
                    #expect(reply.status == 204)
                }
            }
            try await group.waitForAll()
        }
        admitted += maxActive
        for (offset, entry) in line[admitted...].enumerated() {
            let polled = try await servers[(offset + 1) % servers.count].api.call(.get, "/v1/queue/tokens/current", jwt: entry.jwt, queueToken: entry.queue)
            #expect(polled.json["status"] as? String == (offset < maxActive ? "ACTIVE" : "WAITING"), "user \(entry.user)")
            if offset >= maxActive { #expect(polled.json["position"] as? Int == offset - maxActive) }
        }
    }
    let deadline = Date().addingTimeInterval(10)
    var remaining = Array(line[admitted...])
    while !remaining.isEmpty, Date() < deadline {
        try await Task.sleep(for: .milliseconds(200))
        var still: [InLine] = []
        for entry in remaining {
            let polled = try await servers[entry.user % servers.count].api.call(.get, "/v1/queue/tokens/current", jwt: entry.jwt, queueToken: entry.queue)
            if polled.status == 200 { still.append(entry) }
        }
        remaining = still
    }
    #expect(remaining.isEmpty, "ACTIVE tokens did not run out")
}

/// The invariants `concertd` promises, checked in SQL.
func expectInvariants(_ database: TestDatabase) async throws {
    #expect(try await database.scalar("""
        SELECT COUNT(*) FROM (SELECT schedule_id, seat_number FROM reservations
          WHERE status IN ('HELD', 'CONFIRMED') GROUP BY schedule_id, seat_number HAVING COUNT(*) > 1) AS doubled
        """) == 0, "a seat has two live reservations")
    #expect(try await database.scalar("""
        SELECT COUNT(*) FROM reservations r WHERE r.status = 'CONFIRMED'
          AND (SELECT COUNT(*) FROM payments p WHERE p.reservation_id = r.id) <> 1
        """) == 0, "a sold seat without exactly one payment")
    #expect(try await database.scalar("""
        SELECT COUNT(*) FROM users u
        WHERE u.balance <> COALESCE((SELECT SUM(e.amount) FROM point_entries e WHERE e.user_id = u.id), 0)
        """) == 0, "a balance differs from the sum of its history")
    #expect(try await database.scalar("SELECT COUNT(*) FROM users WHERE balance < 0") == 0)
}
