import ConcertDomain
import ConcertPostgres
import ConcertRedis
import ConcertTestSupport
import SharedState
import Testing

private let t0 = Timestamp(milliseconds: 1_750_000_000_000)

/// Two instances of one shared waiting room, each on a pool of its own as separate processes
/// would have: on one PostgreSQL database, or on one Redis under one key prefix.
struct TwoRooms: Sendable, CustomTestStringConvertible {
    enum Kind: String, Sendable { case postgres, redis }
    let kind: Kind
    /// The policy the line runs on (Redis keeps idle waiters a minute, PostgreSQL an hour).
    let policy: QueuePolicy
    let make: @Sendable (QueuePolicy) async throws -> (rooms: [any WaitingRoom], close: @Sendable () async -> Void)

    var testDescription: String { kind.rawValue }

    func with(_ body: ([any WaitingRoom]) async throws -> Void) async throws {
        let (rooms, close) = try await make(policy)
        do {
            try await body(rooms)
        } catch {
            await close()
            throw error
        }
        await close()
    }

    /// The PostgreSQL pair when a test PostgreSQL is configured, the Redis pair when a test Redis is.
    static var available: [TwoRooms] {
        var pairs: [TwoRooms] = []
        if let adminURL = TestServices.postgresURL {
            pairs.append(TwoRooms(kind: .postgres, policy: QueuePolicy(maxActive: 3, activeSeconds: 600, idleSeconds: 3600)) { policy in
                let (storeA, storeB, close) = try await PostgresTestStore.startTwoInstances(adminURL: adminURL)
                return ([PostgresWaitingRoom(store: storeA, policy: policy), PostgresWaitingRoom(store: storeB, policy: policy)], close)
            })
        }
        if let url = TestServices.redisURL {
            pairs.append(TwoRooms(kind: .redis, policy: QueuePolicy(maxActive: 3, activeSeconds: 600, idleSeconds: 60)) { policy in
                let prefix = TestServices.uniqueKeyPrefix()
                let poolA = try RedisConnectionPool(url: url, connections: 4), poolB = try RedisConnectionPool(url: url, connections: 4)
                let rooms: [any WaitingRoom] = [RedisWaitingRoom(pool: poolA, policy: policy, keyPrefix: prefix),
                                                RedisWaitingRoom(pool: poolB, policy: policy, keyPrefix: prefix)]
                return (rooms, {
                    await RedisTestKeys.delete(prefix: prefix, pool: poolA)
                    await poolA.close()
                    await poolB.close()
                })
            })
        }
        return pairs
    }
}

@Suite("Two instances of a shared waiting room")
struct TwoInstancesTests {
    /// 100 users join at once through two instances: one line, the cap kept; every token is
    /// known to both; ending on one admits the head for both; both sweeping at once never admit
    /// past the cap.
    @Test(arguments: TwoRooms.available) func twoInstancesServeOneLine(_ setup: TwoRooms) async throws {
        try await setup.with { instances in
            let gate = StartGate(opensWhenArrived: 100)
            let tickets = try await withThrowingTaskGroup(of: QueueTicket.self) { group in
                for user in Int64(1)...100 {
                    group.addTask {
                        await gate.wait()
                        return try await instances[Int(user % 2)].join(userId: user, concertId: 4, now: t0).ticket
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(tickets.filter { $0.status == .active }.count == 3)
            #expect(tickets.filter { $0.status == .waiting }.map(\.position).sorted() == Array(0..<97))

            // A token from one instance is known to the other, and a user's live token is found
            // whichever instance they come back through.
            for ticket in tickets {
                #expect(try await instances[Int((ticket.userId + 1) % 2)].poll(token: ticket.token, now: t0) == ticket)
            }
            let (again, created) = try await instances[0].join(userId: 1, concertId: 4, now: t0)
            #expect(!created)
            #expect(again.token == tickets.first { $0.userId == 1 }!.token)

            // Ending on one instance admits the head for everyone at once.
            let active = tickets.first { $0.status == .active }!
            let head = tickets.first { $0.status == .waiting && $0.position == 0 }!
            #expect(try await instances[1].end(token: active.token, now: t0))
            #expect(try await instances[0].poll(token: head.token, now: t0)?.status == .active)
            #expect(try await instances[0].counts(concertId: 4, now: t0) == (96, 3))
            #expect(try await instances[1].counts(concertId: 4, now: t0) == (96, 3))

            let later = t0.adding(seconds: 600)
            switch setup.kind {
            case .redis:
                // Both instances sweeping at once still never admit past the cap.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<20 {
                        group.addTask { try await instances[index % 2].sweep(now: later) }
                    }
                    try await group.waitForAll()
                }
                #expect(try await instances[0].counts(concertId: 4, now: later).active <= 3)
            case .postgres:
                // Both instances sweeping at once, when every ACTIVE token has run out: exactly
                // three are admitted, the next three in line (no slot given twice, none lost).
                let sweepGate = StartGate(opensWhenArrived: 20)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<20 {
                        group.addTask {
                            await sweepGate.wait()
                            try await instances[index % 2].sweep(now: later)
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(try await instances[1].counts(concertId: 4, now: later) == (93, 3))
                let waitingInOrder = tickets.filter { $0.status == .waiting }.sorted { $0.position < $1.position }
                for (index, ticket) in waitingInOrder.enumerated().dropFirst() {
                    let polled = try await instances[index % 2].poll(token: ticket.token, now: later)
                    if index <= 3 {
                        #expect(polled?.status == .active, "the next in line is admitted")
                    } else {
                        #expect(polled?.position == index - 4, "and the rest moved up")
                    }
                }
            }
        }
    }
}
