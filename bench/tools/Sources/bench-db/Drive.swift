import Foundation
import Logging
import PostgresNIO

/// What one run of concurrent tasks did.
struct Tally: Sendable {
    var attempts = 0
    var wins = 0
    var losses = 0
    var retries = 0
    var errors = 0
    var lastError = ""
    var samples = Samples()
    /// Per task: the highest "walk" position it reached (seat walk mode).
    var walked: [Int] = []
    /// Client-side sums of successful charges per user (charges mode).
    var charged: [Int64: Int64] = [:]

    mutating func merge(_ other: Tally) {
        attempts += other.attempts; wins += other.wins; losses += other.losses
        retries += other.retries; errors += other.errors
        if !other.lastError.isEmpty { lastError = other.lastError }
        samples.merge(other.samples); walked += other.walked
        for (user, amount) in other.charged { charged[user, default: 0] += amount }
    }
}

/// One attempt's result: won (the hold or charge took effect), and how many retries it needed.
struct Outcome: Sendable {
    var won: Bool
    var retries = 0
    var user: Int64 = 0
    var amount: Int64 = 0
}

/// Runs `tasks` concurrent loops for `seconds`; each iteration leases a pooled connection and runs
/// `op(connection, task, iteration)`. Returns the merged tally and the elapsed seconds.
func drive(client: PostgresClient, tasks: Int, seconds: Double,
           _ op: @escaping @Sendable (PostgresConnection, Int, Int) async throws -> Outcome) async -> (Tally, Double) {
    let clock = ContinuousClock()
    let start = clock.now
    let end = start + .milliseconds(Int64(seconds * 1000))
    let total = await withTaskGroup(of: Tally.self) { group in
        for task in 0..<tasks {
            group.addTask {
                var tally = Tally()
                var iteration = 0
                while clock.now < end {
                    iteration += 1
                    let began = clock.now
                    do {
                        let outcome = try await client.withConnection { connection in
                            try await op(connection, task, iteration)
                        }
                        tally.samples.add(clock.now - began)
                        tally.attempts += 1
                        tally.retries += outcome.retries
                        if outcome.won {
                            tally.wins += 1
                            if outcome.amount != 0 { tally.charged[outcome.user, default: 0] += outcome.amount }
                        } else {
                            tally.losses += 1
                        }
                    } catch {
                        tally.errors += 1
                        tally.lastError = String(describing: error).prefix(200).description
                    }
                }
                tally.walked = [iteration]
                return tally
            }
        }
        var total = Tally()
        for await tally in group { total.merge(tally) }
        return total
    }
    let elapsed = clock.now - start
    let (s, atto) = elapsed.components
    return (total, Double(s) + Double(atto) / 1e18)
}

/// `bench-db update`: the single-row UPDATE ceiling through a PostgresNIO pool.
func runUpdateCeiling(_ flags: Flags) async throws {
    let url = try PGURL(flags.string("url"))
    let connections = flags.int("connections", 20)
    let tasks = flags.int("tasks", connections)
    let rows = flags.int("rows", 1)
    let seconds = flags.double("seconds", 10)
    let line = try await withClient(url, connections: connections) { client, logger in
        try await client.withConnection { c in
            try await c.sql("DROP TABLE IF EXISTS bench_counter", logger)
            try await c.sql("CREATE TABLE bench_counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0)", logger)
            try await c.sql("INSERT INTO bench_counter (id) SELECT generate_series(1, \(rows))", logger)
        }
        let (tally, elapsed) = await drive(client: client, tasks: tasks, seconds: seconds) { connection, _, _ in
            let id = Int.random(in: 1...rows)
            try await connection.exec("UPDATE bench_counter SET n = n + 1 WHERE id = \(id)", logger)
            return Outcome(won: true)
        }
        var sum: Int64 = 0
        try await client.withConnection { c in
            for row in try await c.exec("SELECT COALESCE(SUM(n), 0)::BIGINT FROM bench_counter", logger) { sum = try row.decode(Int64.self) }
            try await c.sql("DROP TABLE bench_counter", logger)
        }
        return jsonLine([("kind", "pg-update"), ("rows", rows), ("tasks", tasks), ("connections", connections),
                         ("seconds", elapsed), ("ops", tally.wins), ("opsPerSec", Double(tally.wins) / elapsed),
                         ("p50Ms", tally.samples.percentileMs(50)), ("p99Ms", tally.samples.percentileMs(99)),
                         ("p999Ms", tally.samples.percentileMs(99.9)), ("errors", tally.errors),
                         ("sumMatches", sum == Int64(tally.wins) ? "yes" : "NO (\(sum) vs \(tally.wins))")])
    }
    print(line)
}
