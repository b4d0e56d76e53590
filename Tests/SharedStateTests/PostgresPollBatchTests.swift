import ConcertDomain
import ConcertPostgres
import ConcertTestSupport
import SharedState
import Testing

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

/// Polls that arrive together in one instance share a call of `concertd_queue_poll_many`
/// (migration 11), and each caller still gets the answer a poll of its own would give.
@Suite("PostgreSQL polls in batches", .enabled(if: TestServices.postgresURL != nil || TestServices.required))
struct PostgresPollBatchTests {
    @Test("polls released together share calls; each gets its own token's answer")
    func pollsReleasedTogetherShareCalls() async throws {
        let adminURL = try #require(TestServices.postgresURL, "CONCERT_TEST_POSTGRES_URL is not set")
        let database = try await TestDatabase.create(adminURL: adminURL)
        let trips = try PostgresRoundTrips(targetHost: database.admin.host, targetPort: database.admin.port)
        var proxied = database
        proxied.admin.port = trips.proxy.port
        let store = try PostgresConcertStore(url: proxied.url, logger: TestServices.quietLogger)
        let run = Task { await store.run() }
        defer {
            run.cancel()
            trips.close()
        }
        try await store.migrate()
        let policy = QueuePolicy(maxActive: 3, activeSeconds: 600, idleSeconds: 60)
        // One call at a time, so that polls arriving together must queue and leave together.
        let room = PostgresWaitingRoom(store: store, policies: FixedQueuePolicy(policy), pollBatchSize: 64, pollConcurrency: 1)

        // Two lines (3 ACTIVE each, the rest WAITING), with waiters gone from inside blocks and at
        // their edges, and one waiter at the back of line 9 who has not polled for two minutes.
        var tokens: [String] = []
        for user in Int64(1)...120 { tokens.append(try await room.join(userId: user, concertId: 9, now: t0).ticket.token) }
        for user in Int64(201)...230 { tokens.append(try await room.join(userId: user, concertId: 10, now: t0).ticket.token) }
        for index in [10, 31, 32, 33, 64, 100] { #expect(try await room.end(token: tokens[index], now: t0)) }
        let left = Set([10, 31, 32, 33, 64, 100].map { tokens[$0] })
        tokens.removeAll { left.contains($0) }
        let idle = try await room.join(userId: 300, concertId: 9, now: t0.adding(seconds: -120)).ticket.token

        // What each token's poll gives alone.
        var alone: [String: QueueTicket] = [:]
        for token in tokens { alone[token] = try #require(try await room.poll(token: token, now: t0)) }
        #expect(alone.values.filter { $0.status == .active }.count == 6)
        #expect(alone[tokens[119 - 6]]?.position == 120 - 3 - 6 - 1, "the last waiter of line 9 before the idle one")

        // Together: every token, some twice, an unknown one and the idle one.
        let asks: [String] = tokens + tokens.prefix(20) + ["9.unknown", idle]
        trips.reset()
        let gate = StartGate()
        let answers = try await withThrowingTaskGroup(of: (String, QueueTicket?).self) { group in
            for token in asks {
                group.addTask {
                    await gate.wait()
                    return (token, try await room.poll(token: token, now: t0))
                }
            }
            await gate.open(whenArrived: asks.count)
            var all: [(String, QueueTicket?)] = []
            for try await answer in group { all.append(answer) }
            return all
        }
        #expect(trips.value < asks.count / 4, "\(trips.value) round trips for \(asks.count) polls")
        #expect(answers.count == asks.count)
        for (token, answer) in answers {
            if token == idle || token == "9.unknown" {
                #expect(answer == nil, "\(token) has no place")
            } else {
                #expect(answer == alone[token], "\(token): \(String(describing: answer)) against \(String(describing: alone[token]))")
            }
        }
        // The idle waiter lost its place for good, and the lines' counts agree.
        #expect(try await room.poll(token: idle, now: t0) == nil)
        #expect(try await room.counts(concertId: 9, now: t0) == (120 - 3 - 6, 3))
        #expect(try await room.counts(concertId: 10, now: t0) == (30 - 3, 3))
        try? await database.drop()
    }
}
