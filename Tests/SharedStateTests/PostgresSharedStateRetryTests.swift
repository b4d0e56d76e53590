import ConcertDomain
import ConcertPostgres
import ConcertTestSupport
import PostgresNIO
import SharedState
import Testing

/// A waiting-room call that PostgreSQL aborts as a deadlock's victim is tried again, as store
/// transactions are: each call is one statement, so an aborted one wrote nothing.
@Suite("PostgreSQL shared state retries an aborted call", .enabled(if: TestServices.postgresURL != nil || TestServices.required))
struct PostgresSharedStateRetryTests {
    private let now = Timestamp(milliseconds: 1_750_000_000_000)

    @Test("a join that loses a deadlock is tried again and answers with the user's place")
    func aJoinThatLosesADeadlockIsRetried() async throws {
        let (store, close) = try await PostgresTestStore.start(adminURL: try #require(TestServices.postgresURL))
        do {
            let room = PostgresWaitingRoom(store: store, policy: QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 60))
            _ = try await room.join(userId: 1, concertId: 1, now: now)
            let waiting = try await room.join(userId: 2, concertId: 1, now: now).ticket

            // Another session holds user 2's token row, and never detects a deadlock itself, so
            // that the join is the one PostgreSQL aborts.
            let other = try await PostgresTestStore.connect(to: store.url, id: 31)
            defer { Task { try? await other.close() } }
            for sql in ["SET deadlock_timeout = '20s'", "BEGIN", "SELECT 1 FROM queue_tokens WHERE user_id = 2 FOR UPDATE"] {
                try await other.run(sql)
            }
            // The join again: it takes the line's lock, then waits for the token's row.
            let join = Task { try await room.join(userId: 2, concertId: 1, now: now.adding(seconds: 1)) }
            var waits: Int64 = 0
            for _ in 0..<1000 where waits == 0 {
                let rows = try await other.query("SELECT count(*) FROM pg_locks WHERE NOT granted", logger: TestServices.quietLogger).collect()
                waits = try rows.first?.decode(Int64.self) ?? 0
                if waits == 0 { try await Task.sleep(for: .milliseconds(5)) }
            }
            #expect(waits == 1, "the join waits for the token's row")
            // The other session now wants the line's lock: a deadlock, and after deadlock_timeout
            // (1 s) PostgreSQL aborts the join, which lets this statement through.
            try await other.run("SELECT 1 FROM queue_lines WHERE concert_id = 1 FOR UPDATE")
            try await other.run("ROLLBACK")

            let (ticket, created) = try await join.value
            #expect(ticket.token == waiting.token)
            #expect(!created)
            #expect(ticket.status == .waiting)
            #expect(try await room.counts(concertId: 1, now: now.adding(seconds: 1)) == (1, 1))
        } catch {
            await close()
            throw error
        }
        await close()
    }
}
