import ConcertDomain
import ConcertPostgres
import ConcertTestSupport
import PostgresNIO
import SharedState
import Testing

/// Poll batches never deadlock (migration 15, `PostgresPollLockOrder`): they lock their tokens
/// in token order, and never wait for a line's lock while holding them. Called on connections of
/// their own, not through the store, so that a deadlock shows as the error PostgreSQL raises
/// instead of being retried away.
@Suite("PostgreSQL poll batches' lock order", .enabled(if: TestServices.postgresURL != nil || TestServices.required))
struct PostgresPollLockOrderTests {
    private let now: Int64 = 1_750_000_000_000

    @Test("two poll batches of the same tokens in opposite orders, released together, never deadlock")
    func oppositeOrdersNeverDeadlock() async throws {
        let (store, close) = try await PostgresTestStore.start(adminURL: try #require(TestServices.postgresURL))
        do {
            let first = try await PostgresTestStore.connect(to: store.url, id: 21)
            let second = try await PostgresTestStore.connect(to: store.url, id: 22)
            defer { Task { try? await first.close(); try? await second.close() } }
            // User 1 is ACTIVE (one slot); users 2...65 wait.
            try await first.run("""
                SELECT count(*) FROM (SELECT concertd_queue_join(u, 1, '1.' || md5(u::text), \(now), 1, 600000, 3600000, 0)
                                      FROM generate_series(1, 65) u) joined
                """)
            let tokens = (2...65).map { "'1.' || md5('\($0)')" }
            var deadlocks: [String] = []
            // Without the order, 64 rows updated from both ends meet in the middle: PostgreSQL
            // aborted one of the two in nearly every round (after deadlock_timeout, 1 s).
            for round in 1...12 {
                let moment = now + Int64(round) * 1000
                let gate = StartGate()
                let answers = await withTaskGroup(of: Result<Int64, any Error>.self) { group in
                    for (connection, order) in [(first, tokens), (second, Array(tokens.reversed()))] {
                        group.addTask {
                            await gate.wait()
                            do { return .success(try await self.waitingAnswers(connection, order, moment: moment)) } catch { return .failure(error) }
                        }
                    }
                    await gate.open(whenArrived: 2)
                    var all: [Result<Int64, any Error>] = []
                    for await answer in group { all.append(answer) }
                    return all
                }
                for answer in answers {
                    switch answer {
                    case .success(let waiting): #expect(waiting == 64, "round \(round): \(waiting) WAITING answers of 64")
                    case .failure(let error): deadlocks.append("round \(round): \(String(reflecting: error))")
                    }
                }
            }
            #expect(deadlocks.isEmpty, "\(deadlocks.count) batches failed: \(deadlocks.prefix(2))")
        } catch {
            await close()
            throw error
        }
        await close()
    }

    @Test("a poll batch with a token gone idle answers at once while its line's lock is held, and the sweep drops the token")
    func anIdleTokenDoesNotWaitForTheLineLock() async throws {
        let (store, close) = try await PostgresTestStore.start(adminURL: try #require(TestServices.postgresURL))
        do {
            let connection = try await PostgresTestStore.connect(to: store.url, id: 23)
            defer { Task { try? await connection.close() } }
            // User 1 ACTIVE (one slot, so the poll has nothing to advance), user 2 waiting and
            // polling, user 3 waiting but silent for two minutes (idle after one).
            for (user, joined) in [(1, now), (2, now), (3, now - 120_000)] {
                try await connection.run("SELECT count(*) FROM concertd_queue_join(\(user), 1, '1.' || md5('\(user)'), \(joined), 1, 600000, 60000, 0)")
            }
            // A line change in another transaction holds the line's lock, as a join or an end
            // that admits the next waiter does: it would then update user 2's row, which the
            // batch has just touched.
            let database = TestDatabase(admin: store.url, name: store.url.database)
            let line = try await HeldTransaction.begin(on: database, ["SELECT 1 FROM queue_lines WHERE concert_id = 1 FOR UPDATE"])
            let answers: [PostgresRow]
            do {
                // Before migration 15 the batch waited here for the line's lock (to drop user 3):
                // the lock timeout turned that wait into an error.
                try await connection.run("SET lock_timeout = '10s'")
                answers = try await connection.query(PostgresQuery(unsafeSQL: """
                    SELECT o_index, o_status, o_position FROM concertd_queue_poll_many(
                      ARRAY['1.' || md5('2'), '1.' || md5('3')], ARRAY[1, 1]::BIGINT[], ARRAY[\(now + 1000), \(now + 1000)]::BIGINT[],
                      ARRAY[1, 1]::BIGINT[], ARRAY[600000, 600000]::BIGINT[], ARRAY[60000, 60000]::BIGINT[], ARRAY[0, 0]::BIGINT[])
                    """), logger: TestServices.quietLogger).collect()
            } catch {
                await line.release()
                throw error
            }
            await line.release()
            #expect(try answers.map { try $0.decode((Int64, String, Int64).self) }.map { "\($0.0) \($0.1) \($0.2)" } == ["1 WAITING 0"],
                    "user 2 waits first in line; user 3 has no place")

            // User 3 stays gone, and the sweep takes it off the line's counts.
            let policy = QueuePolicy(maxActive: 1, activeSeconds: 600, idleSeconds: 60)
            let room = PostgresWaitingRoom(store: store, policy: policy)
            let silent = try #require(try await connection.query("SELECT '1.' || md5('3')", logger: TestServices.quietLogger)
                .collect().first).decode(String.self)
            #expect(try await room.poll(token: silent, now: Timestamp(milliseconds: now + 1500)) == nil)
            try await room.sweep(now: Timestamp(milliseconds: now + 2000))
            #expect(try await room.counts(concertId: 1, now: Timestamp(milliseconds: now + 2000)) == (1, 1))
        } catch {
            await close()
            throw error
        }
        await close()
    }

    /// One call of the batch function for `tokens` (SQL expressions) of line 1, all at `moment`,
    /// in a transaction of its own; how many of its answers are WAITING.
    private func waitingAnswers(_ connection: PostgresConnection, _ tokens: [String], moment: Int64) async throws -> Int64 {
        let count = tokens.count
        let rows = try await connection.query(PostgresQuery(unsafeSQL: """
            SELECT count(*) FILTER (WHERE o_status = 'WAITING') FROM concertd_queue_poll_many(
              ARRAY[\(tokens.joined(separator: ", "))], array_fill(1::BIGINT, ARRAY[\(count)]), array_fill(\(moment)::BIGINT, ARRAY[\(count)]),
              array_fill(1::BIGINT, ARRAY[\(count)]), array_fill(600000::BIGINT, ARRAY[\(count)]),
              array_fill(3600000::BIGINT, ARRAY[\(count)]), array_fill(0::BIGINT, ARRAY[\(count)]))
            """), logger: TestServices.quietLogger).collect()
        return try #require(rows.first).decode(Int64.self)
    }
}
