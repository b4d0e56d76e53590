import Foundation
import Logging
import PostgresNIO

/// `bench-db locks`: seat holds and point charges under contention at READ COMMITTED, with
///   a  = what concertd does: one arbitrating statement (INSERT ... ON CONFLICT DO NOTHING RETURNING
///        against a partial unique index for holds; a conditional UPDATE ... RETURNING for charges),
///   a2 = (holds only) a conditional UPDATE seats SET holder = $u WHERE id = $s AND holder IS NULL RETURNING,
///   b  = SELECT ... FOR UPDATE, then UPDATE,
///   c  = optimistic version column: read, UPDATE ... WHERE version = $v, retry on 0 rows,
///   d  = naive read-then-write with no lock (the control: shows the anomaly READ COMMITTED allows).
/// Modes: "one" = every client races for the same row (holds: all walk the same seat sequence, so
/// each seat is contested by every client; charges: one wallet), "many" = random rows.
func runLockStudy(_ flags: Flags) async throws {
    let url = try PGURL(flags.string("url"))
    let clients = flags.int("clients", 20)
    let seconds = flags.double("seconds", 5)
    let seatPool = flags.int("seats", 20_000)
    let walletPool = flags.int("wallets", 10_000)
    let only = flags.values["only"]
    try await withClient(url, connections: clients) { client, logger in
        for kind in ["holds", "charges"] {
            for mode in ["one", "many"] {
                let strategies = kind == "holds" ? ["a", "a2", "b", "c", "d"] : ["a", "b", "c", "d"]
                for strategy in strategies {
                    if let only, !only.split(separator: ",").contains(Substring("\(kind)-\(mode)-\(strategy)")),
                       !only.split(separator: ",").contains(Substring(kind)) { continue }
                    let line: String
                    if kind == "holds" {
                        line = try await holds(client: client, logger: logger, strategy: strategy, mode: mode,
                                               clients: clients, seconds: seconds, seatPool: seatPool)
                    } else {
                        line = try await charges(client: client, logger: logger, strategy: strategy, mode: mode,
                                                 clients: clients, seconds: seconds, walletPool: walletPool)
                    }
                    FileHandle.standardOutput.write(Data((line + "\n").utf8))
                }
            }
        }
        return true
    }
}

private func holds(client: PostgresClient, logger: Logger, strategy: String, mode: String,
                   clients: Int, seconds: Double, seatPool: Int) async throws -> String {
    let seatRows = mode == "one" ? 400_000 : seatPool
    try await client.withConnection { c in
        for statement in [
            "DROP TABLE IF EXISTS ls_seats, ls_holds, ls_reservations",
            "CREATE TABLE ls_seats (id INTEGER PRIMARY KEY, holder BIGINT, version INTEGER NOT NULL DEFAULT 0)",
            // No unique constraint: the table records every claimed win, so double wins show.
            "CREATE TABLE ls_holds (id BIGSERIAL PRIMARY KEY, seat_id INTEGER NOT NULL, user_id BIGINT NOT NULL)",
            "CREATE TABLE ls_reservations (id BIGSERIAL PRIMARY KEY, seat_id INTEGER NOT NULL, user_id BIGINT NOT NULL, status TEXT NOT NULL)",
            "CREATE UNIQUE INDEX ls_one_live_per_seat ON ls_reservations (seat_id) WHERE status IN ('HELD', 'CONFIRMED')",
            "INSERT INTO ls_seats (id) SELECT generate_series(1, \(seatRows))",
            "ANALYZE ls_seats",
        ] { try await c.sql(statement, logger) }
    }
    let (tally, elapsed) = await drive(client: client, tasks: clients, seconds: seconds) { c, task, iteration in
        let seat = mode == "one" ? iteration : Int.random(in: 1...seatRows)
        let user = Int64(task) * 10_000_000 + Int64(iteration)
        switch strategy {
        case "a":
            let rows = try await c.exec("""
                INSERT INTO ls_reservations (seat_id, user_id, status) VALUES (\(seat), \(user), 'HELD')
                ON CONFLICT (seat_id) WHERE status IN ('HELD', 'CONFIRMED') DO NOTHING RETURNING id
                """, logger)
            return Outcome(won: !rows.isEmpty)
        case "a2":
            try await c.sql("BEGIN", logger)
            let rows = try await c.exec("UPDATE ls_seats SET holder = \(user) WHERE id = \(seat) AND holder IS NULL RETURNING id", logger)
            if !rows.isEmpty { try await c.exec("INSERT INTO ls_holds (seat_id, user_id) VALUES (\(seat), \(user))", logger) }
            try await c.sql("COMMIT", logger)
            return Outcome(won: !rows.isEmpty)
        case "b":
            try await c.sql("BEGIN", logger)
            let holder = try await c.exec("SELECT holder FROM ls_seats WHERE id = \(seat) FOR UPDATE", logger)
                .first.flatMap { try? $0.decode(Int64?.self) }
            guard holder == nil else { try await c.sql("ROLLBACK", logger); return Outcome(won: false) }
            try await c.exec("UPDATE ls_seats SET holder = \(user) WHERE id = \(seat)", logger)
            try await c.exec("INSERT INTO ls_holds (seat_id, user_id) VALUES (\(seat), \(user))", logger)
            try await c.sql("COMMIT", logger)
            return Outcome(won: true)
        case "c":
            var retries = 0
            while true {
                guard let row = try await c.exec("SELECT holder, version FROM ls_seats WHERE id = \(seat)", logger).first else {
                    return Outcome(won: false, retries: retries)
                }
                let (holder, version) = try row.decode((Int64?, Int).self)
                if holder != nil { return Outcome(won: false, retries: retries) }
                try await c.sql("BEGIN", logger)
                let updated = try await c.exec("""
                    UPDATE ls_seats SET holder = \(user), version = version + 1 WHERE id = \(seat) AND version = \(version) RETURNING id
                    """, logger)
                if updated.isEmpty {
                    try await c.sql("ROLLBACK", logger)
                    retries += 1
                    continue
                }
                try await c.exec("INSERT INTO ls_holds (seat_id, user_id) VALUES (\(seat), \(user))", logger)
                try await c.sql("COMMIT", logger)
                return Outcome(won: true, retries: retries)
            }
        default: // "d": naive check-then-act
            let holder = try await c.exec("SELECT holder FROM ls_seats WHERE id = \(seat)", logger)
                .first.flatMap { try? $0.decode(Int64?.self) }
            guard holder == nil else { return Outcome(won: false) }
            try await c.sql("BEGIN", logger)
            try await c.exec("UPDATE ls_seats SET holder = \(user) WHERE id = \(seat)", logger)
            try await c.exec("INSERT INTO ls_holds (seat_id, user_id) VALUES (\(seat), \(user))", logger)
            try await c.sql("COMMIT", logger)
            return Outcome(won: true)
        }
    }
    // Correctness: every recorded win, seats with more than one winner, and (walk mode) seats
    // that every client tried but nobody won.
    let table = strategy == "a" ? "ls_reservations" : "ls_holds"
    var recorded = 0, doubled = 0, unwon = 0
    let contested = tally.walked.min().map { $0 - 1 } ?? 0
    try await client.withConnection { c in
        for row in try await c.exec(PostgresQuery(unsafeSQL: "SELECT COUNT(*)::BIGINT FROM \(table)"), logger) { recorded = Int(try row.decode(Int64.self)) }
        for row in try await c.exec(PostgresQuery(unsafeSQL: """
            SELECT COUNT(*)::BIGINT FROM (SELECT seat_id FROM \(table) GROUP BY seat_id HAVING COUNT(*) > 1) x
            """), logger) { doubled = Int(try row.decode(Int64.self)) }
        if mode == "one" {
            for row in try await c.exec(PostgresQuery(unsafeSQL: """
                SELECT COUNT(*)::BIGINT FROM generate_series(1, \(contested)) g(seat)
                WHERE NOT EXISTS (SELECT 1 FROM \(table) t WHERE t.seat_id = g.seat)
                """), logger) { unwon = Int(try row.decode(Int64.self)) }
        }
    }
    let correct = doubled == 0 && unwon == 0 && recorded == tally.wins && tally.errors == 0
    return jsonLine([
        ("kind", "holds"), ("mode", mode), ("strategy", strategy), ("clients", clients), ("seconds", elapsed),
        ("attempts", tally.attempts), ("attemptsPerSec", Double(tally.attempts) / elapsed),
        ("wins", tally.wins), ("winsPerSec", Double(tally.wins) / elapsed), ("retries", tally.retries),
        ("errors", tally.errors), ("p50Ms", tally.samples.percentileMs(50)), ("p99Ms", tally.samples.percentileMs(99)),
        ("recordedWins", recorded), ("seatsWithTwoOrMoreWinners", doubled),
        ("contestedSeats", mode == "one" ? contested : 0), ("contestedSeatsWithoutWinner", unwon),
        ("correct", correct ? "yes" : "NO"), ("lastError", tally.lastError.replacingOccurrences(of: "\"", with: "'")),
    ])
}

private func charges(client: PostgresClient, logger: Logger, strategy: String, mode: String,
                     clients: Int, seconds: Double, walletPool: Int) async throws -> String {
    let wallets = mode == "one" ? 1 : walletPool
    try await client.withConnection { c in
        for statement in [
            "DROP TABLE IF EXISTS ls_wallets, ls_entries",
            """
            CREATE TABLE ls_wallets (id BIGINT PRIMARY KEY, version INTEGER NOT NULL DEFAULT 0,
              balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0 AND balance <= 1000000000))
            """,
            "CREATE TABLE ls_entries (id BIGSERIAL PRIMARY KEY, user_id BIGINT NOT NULL, amount BIGINT NOT NULL, balance_after BIGINT NOT NULL)",
            "CREATE INDEX ls_entries_user ON ls_entries (user_id, id)",
            "INSERT INTO ls_wallets (id) SELECT generate_series(1, \(wallets))",
            "ANALYZE ls_wallets",
        ] { try await c.sql(statement, logger) }
    }
    let maxBalance: Int64 = 1_000_000_000
    let (tally, elapsed) = await drive(client: client, tasks: clients, seconds: seconds) { c, _, _ in
        let user = Int64(Int.random(in: 1...wallets))
        let amount = Int64.random(in: 1...100)
        switch strategy {
        case "a":
            try await c.sql("BEGIN", logger)
            guard let after = try await c.exec("""
                UPDATE ls_wallets SET balance = balance + \(amount) WHERE id = \(user) AND balance <= \(maxBalance - amount) RETURNING balance
                """, logger).first.map({ try $0.decode(Int64.self) }) else {
                try await c.sql("ROLLBACK", logger); return Outcome(won: false)
            }
            try await c.exec("INSERT INTO ls_entries (user_id, amount, balance_after) VALUES (\(user), \(amount), \(after))", logger)
            try await c.sql("COMMIT", logger)
            return Outcome(won: true, user: user, amount: amount)
        case "b":
            try await c.sql("BEGIN", logger)
            let balance = try await c.exec("SELECT balance FROM ls_wallets WHERE id = \(user) FOR UPDATE", logger)
                .first.map { try $0.decode(Int64.self) } ?? 0
            guard balance + amount <= maxBalance else { try await c.sql("ROLLBACK", logger); return Outcome(won: false) }
            try await c.exec("UPDATE ls_wallets SET balance = \(balance + amount) WHERE id = \(user)", logger)
            try await c.exec("INSERT INTO ls_entries (user_id, amount, balance_after) VALUES (\(user), \(amount), \(balance + amount))", logger)
            try await c.sql("COMMIT", logger)
            return Outcome(won: true, user: user, amount: amount)
        case "c":
            var retries = 0
            while true {
                guard let row = try await c.exec("SELECT balance, version FROM ls_wallets WHERE id = \(user)", logger).first else {
                    return Outcome(won: false, retries: retries)
                }
                let (balance, version) = try row.decode((Int64, Int).self)
                guard balance + amount <= maxBalance else { return Outcome(won: false, retries: retries) }
                try await c.sql("BEGIN", logger)
                let updated = try await c.exec("""
                    UPDATE ls_wallets SET balance = \(balance + amount), version = version + 1
                    WHERE id = \(user) AND version = \(version) RETURNING id
                    """, logger)
                if updated.isEmpty {
                    try await c.sql("ROLLBACK", logger)
                    retries += 1
                    continue
                }
                try await c.exec("INSERT INTO ls_entries (user_id, amount, balance_after) VALUES (\(user), \(amount), \(balance + amount))", logger)
                try await c.sql("COMMIT", logger)
                return Outcome(won: true, retries: retries, user: user, amount: amount)
            }
        default: // "d": naive read, then write the computed balance
            try await c.sql("BEGIN", logger)
            let balance = try await c.exec("SELECT balance FROM ls_wallets WHERE id = \(user)", logger)
                .first.map { try $0.decode(Int64.self) } ?? 0
            try await c.exec("UPDATE ls_wallets SET balance = \(balance + amount) WHERE id = \(user)", logger)
            try await c.exec("INSERT INTO ls_entries (user_id, amount, balance_after) VALUES (\(user), \(amount), \(balance + amount))", logger)
            try await c.sql("COMMIT", logger)
            return Outcome(won: true, user: user, amount: amount)
        }
    }
    // Correctness: balance = sum of acknowledged charges (nothing lost), balance = sum of entries.
    var balances: [Int64: Int64] = [:], entrySums: [Int64: Int64] = [:]
    try await client.withConnection { c in
        for row in try await c.exec("SELECT id, balance FROM ls_wallets WHERE balance <> 0", logger) {
            let (id, balance) = try row.decode((Int64, Int64).self); balances[id] = balance
        }
        for row in try await c.exec("SELECT user_id, SUM(amount)::BIGINT FROM ls_entries GROUP BY user_id", logger) {
            let (id, sum) = try row.decode((Int64, Int64).self); entrySums[id] = sum
        }
    }
    var lostPoints: Int64 = 0, walletsWrong = 0, historyMismatch = 0
    for (user, expected) in tally.charged {
        let actual = balances[user] ?? 0
        if actual != expected { walletsWrong += 1; lostPoints += expected - actual }
    }
    for (user, balance) in balances where entrySums[user] != balance { historyMismatch += 1 }
    let acknowledged = tally.charged.values.reduce(0, +)
    let correct = walletsWrong == 0 && historyMismatch == 0 && tally.errors == 0
    return jsonLine([
        ("kind", "charges"), ("mode", mode), ("strategy", strategy), ("clients", clients), ("seconds", elapsed),
        ("attempts", tally.attempts), ("attemptsPerSec", Double(tally.attempts) / elapsed),
        ("wins", tally.wins), ("winsPerSec", Double(tally.wins) / elapsed), ("retries", tally.retries),
        ("errors", tally.errors), ("p50Ms", tally.samples.percentileMs(50)), ("p99Ms", tally.samples.percentileMs(99)),
        ("acknowledgedPoints", acknowledged), ("lostPoints", lostPoints), ("walletsWrong", walletsWrong),
        ("walletsWhoseHistoryMismatches", historyMismatch),
        ("correct", correct ? "yes" : "NO"), ("lastError", tally.lastError.replacingOccurrences(of: "\"", with: "'")),
    ])
}
