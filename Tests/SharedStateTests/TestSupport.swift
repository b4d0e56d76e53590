import ConcertTestSupport
import ConcertDomain
import ConcertPostgres
import ConcertRedis
import PostgresNIO
import SharedState
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The keys a test left in Redis (`TestServices.redisURL`; without it the Redis cases are left
/// out of every shared suite, unless `CONCERT_TEST_REQUIRE_SERVICES=1`, when
/// `redisIsConfiguredWhenRequired` fails).
enum RedisTestKeys {
    /// Removes what a test left under its prefix (best effort: Redis for tests is throwaway).
    static func delete(prefix: String, pool: RedisConnectionPool) async {
        var cursor = "0"
        repeat {
            guard let reply = try? await pool.send("SCAN", RESPArgument(cursor), "MATCH", RESPArgument(prefix + "*"), "COUNT", 1000),
                  let parts = reply.array, parts.count == 2, let next = parts[0].string, let keys = parts[1].array
            else { return }
            if !keys.isEmpty {
                _ = try? await pool.send(RESPCommand("DEL", arguments: keys.compactMap { $0.bytes.map { RESPArgument(bytes: $0) } }))
            }
            cursor = next
        } while cursor != "0"
    }
}

@Test(.enabled(if: TestServices.required, "only when CONCERT_TEST_REQUIRE_SERVICES=1"))
func redisIsConfiguredWhenRequired() {
    #expect(TestServices.redisURL != nil, "CONCERT_TEST_REQUIRE_SERVICES=1 but CONCERT_TEST_REDIS_URL is not set")
}

/// One implementation of a shared-state protocol, made fresh (and isolated) for each test.
struct Implementation<Store: Sendable>: Sendable, CustomTestStringConvertible {
    let name: String
    /// Makes the store, and what to run when the test is done with it.
    let make: @Sendable () async throws -> (store: Store, close: @Sendable () async -> Void)

    var testDescription: String { name }

    func with(_ body: (Store) async throws -> Void) async throws {
        let (store, close) = try await make()
        do {
            try await body(store)
            await close()
        } catch {
            await close()
            throw error
        }
    }

    /// The in-process implementation, plus the Redis one when a test Redis is configured and
    /// the PostgreSQL one (on a database of its own, migrated) when a test PostgreSQL is.
    static func all(inProcess: @escaping @Sendable () -> Store,
                    redis: @escaping @Sendable (RedisConnectionPool, String) -> Store,
                    postgres: @escaping @Sendable (PostgresConcertStore) -> Store) -> [Implementation] {
        var implementations = [Implementation(name: "in-process") { (inProcess(), {}) }]
        if let adminURL = TestServices.postgresURL {
            implementations.append(Implementation(name: "postgres") {
                let (store, close) = try await PostgresTestStore.start(adminURL: adminURL)
                return (postgres(store), close)
            })
        }
        if let url = TestServices.redisURL {
            implementations.append(Implementation(name: "redis") {
                let pool = try RedisConnectionPool(url: url, connections: 4)
                let prefix = TestServices.uniqueKeyPrefix()
                return (redis(pool, prefix), {
                    await RedisTestKeys.delete(prefix: prefix, pool: pool)
                    await pool.close()
                })
            })
        }
        return implementations
    }
}

/// A migrated PostgreSQL store on a database of its own, its pool running until `close`, which
/// also drops the database.
extension PostgresConnection {
    /// Runs `sql` (a test's own text), its rows discarded.
    func run(_ sql: String) async throws {
        _ = try await query(PostgresQuery(unsafeSQL: sql), logger: TestServices.quietLogger).collect()
    }
}

enum PostgresTestStore {
    /// A plain connection of its own to the store's database, for a session the test drives.
    static func connect(to url: PostgresURL, id: Int) async throws -> PostgresConnection {
        let configuration = PostgresConnection.Configuration(
            host: url.host, port: url.port, username: url.username, password: url.password,
            database: url.database, tls: .disable)
        return try await PostgresConnection.connect(configuration: configuration, id: id, logger: TestServices.quietLogger)
    }

    static func start(adminURL: String, maximumConnections: Int = 20)
        async throws -> (store: PostgresConcertStore, close: @Sendable () async -> Void) {
        let database = try await TestDatabase.create(adminURL: adminURL)
        let store: PostgresConcertStore
        do {
            store = try PostgresConcertStore(url: database.url, logger: TestServices.quietLogger,
                                             options: PostgresStoreOptions(maximumConnections: maximumConnections))
        } catch {
            try? await database.drop()
            throw error
        }
        let run = Task { await store.run() }
        let close: @Sendable () async -> Void = {
            run.cancel()
            await run.value
            try? await database.drop()
        }
        do {
            try await store.migrate()
        } catch {
            await close()
            throw error
        }
        return (store, close)
    }

    /// Two stores, each its own pool as separate processes would have, on one fresh migrated
    /// database; `close` stops the second and then drops the database with the first.
    static func startTwoInstances(adminURL: String)
        async throws -> (first: PostgresConcertStore, second: PostgresConcertStore, close: @Sendable () async -> Void) {
        let (first, closeFirst) = try await start(adminURL: adminURL)
        let second: PostgresConcertStore
        do {
            let url = TestDatabase(admin: first.url, name: first.url.database).url
            second = try PostgresConcertStore(url: url, logger: TestServices.quietLogger)
        } catch {
            await closeFirst()
            throw error
        }
        let run = Task { await second.run() }
        return (first, second, {
            run.cancel()
            await run.value
            await closeFirst()
        })
    }
}

/// Two instances' caches over one shared generation store: an invalidation through one drops the
/// namespace on both, and only that namespace.
func expectInvalidationReachesEveryInstance(_ a: any ResponseCache, _ b: any ResponseCache,
                                            sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let now = Timestamp(milliseconds: 1_750_000_000_000)
    let later = now.adding(seconds: 60)
    try await a.set(namespace: "concerts", key: "list", value: [1], expiresAt: later, now: now)
    try await b.set(namespace: "concerts", key: "list", value: [2], expiresAt: later, now: now)
    try await a.set(namespace: "schedules:1", key: "future", value: [3], expiresAt: later, now: now)
    #expect(try await a.get(namespace: "concerts", key: "list", now: now) == [1], sourceLocation: sourceLocation)
    #expect(try await b.get(namespace: "concerts", key: "list", now: now) == [2], sourceLocation: sourceLocation)

    try await b.invalidate(namespace: "concerts")
    #expect(try await a.get(namespace: "concerts", key: "list", now: now) == nil, "dropped on the other instance too",
            sourceLocation: sourceLocation)
    #expect(try await b.get(namespace: "concerts", key: "list", now: now) == nil, sourceLocation: sourceLocation)
    #expect(try await a.get(namespace: "schedules:1", key: "future", now: now) == [3], "other namespaces stay",
            sourceLocation: sourceLocation)
    try await a.set(namespace: "concerts", key: "list", value: [4], expiresAt: later, now: now)
    #expect(try await a.get(namespace: "concerts", key: "list", now: now) == [4], sourceLocation: sourceLocation)
}
