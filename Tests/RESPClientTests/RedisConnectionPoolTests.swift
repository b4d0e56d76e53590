import ConcertTestSupport
import RESPClient
import Testing

@Test(.enabled(if: TestServices.required, "only when CONCERT_TEST_REQUIRE_SERVICES=1"))
func redisIsConfiguredWhenRequired() {
    #expect(TestServices.redisURL != nil, "CONCERT_TEST_REQUIRE_SERVICES=1 but CONCERT_TEST_REDIS_URL is not set")
}

/// Runs `body` with a pool on the test Redis and closes the pool afterwards, even on failure.
private func withPool(connections: Int = 2, commandTimeout: Duration = .seconds(2),
                      _ body: (RedisConnectionPool) async throws -> Void) async throws {
    let pool = try RedisConnectionPool(url: try #require(TestServices.redisURL), connections: connections,
                                       commandTimeout: commandTimeout)
    do {
        try await body(pool)
        await pool.close()
    } catch {
        await pool.close()
        throw error
    }
}

@Suite("Redis connection pool against a real Redis", .enabled(if: TestServices.redisURL != nil, "CONCERT_TEST_REDIS_URL is not set"))
struct RedisConnectionPoolTests {
    @Test func repliesOfEveryKind() async throws {
        try await withPool { pool async throws in
            let key = TestServices.uniqueKeyPrefix("kinds") + "k"
            #expect(try await pool.send("PING") == .simpleString("PONG"))
            let binary = (0...255).map { UInt8($0) }
            #expect(try await pool.send("SET", RESPArgument(key), RESPArgument(bytes: binary)) == .simpleString("OK"))
            #expect(try await pool.send("GET", RESPArgument(key)) == .bulkString(binary))
            #expect(try await pool.send("GET", RESPArgument(key + ":missing")) == .null)
            #expect(try await pool.send("INCR", RESPArgument(key + ":n")) == .integer(1))
            #expect(try await pool.send("RPUSH", RESPArgument(key + ":l"), "a", "b") == .integer(2))
            #expect(try await pool.send("LRANGE", RESPArgument(key + ":l"), 0, -1)
                == .array([.bulkString(Array("a".utf8)), .bulkString(Array("b".utf8))]))
        }
    }

    @Test func errorRepliesAreThrownAndTheConnectionStaysUsable() async throws {
        try await withPool(connections: 1) { pool in
            let key = TestServices.uniqueKeyPrefix("errors") + "k"
            _ = try await pool.send("SET", RESPArgument(key), "text")
            await #expect(throws: RedisServerError.self) { _ = try await pool.send("INCR", RESPArgument(key)) }
            do {
                _ = try await pool.send("NOSUCHCOMMAND")
                Issue.record("an unknown command succeeded")
            } catch let error as RedisServerError {
                #expect(error.code == "ERR")
            }
            #expect(try await pool.send("GET", RESPArgument(key)) == .bulkString(Array("text".utf8)))
        }
    }

    @Test func manyConcurrentCommandsPipelineOnOneConnection() async throws {
        try await withPool(connections: 1) { pool in
            let key = TestServices.uniqueKeyPrefix("pipeline") + "counters"
            // Every command names its own reply, so a reply matched with the wrong command shows.
            let replies = try await withThrowingTaskGroup(of: (Int, RESPValue).self) { group in
                for index in 0..<2000 {
                    group.addTask {
                        if index % 2 == 0 {
                            return (index, try await pool.send("ECHO", RESPArgument("reply-\(index)")))
                        }
                        return (index, try await pool.send("HINCRBY", RESPArgument(key), RESPArgument(index), RESPArgument(index)))
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            #expect(replies.count == 2000)
            for (index, reply) in replies {
                if index % 2 == 0 {
                    #expect(reply == .bulkString(Array("reply-\(index)".utf8)))
                } else {
                    #expect(reply == .integer(Int64(index)))
                }
            }
            #expect(pool.openConnectionCount == 1)
            _ = try await pool.send("DEL", RESPArgument(key))
        }
    }

    /// Redis's ids for the pool's connections: round-robin sends one CLIENT ID to each.
    private func connectionIDs(_ pool: RedisConnectionPool) async throws -> Set<Int64> {
        var ids: Set<Int64> = []
        for _ in 0..<pool.connectionCount { ids.insert(try #require(try await pool.send("CLIENT", "ID").integer)) }
        return ids
    }

    /// Kills exactly these connections (not other tests' ones) from a separate connection.
    private func kill(_ ids: Set<Int64>) async throws {
        let killer = try RedisConnectionPool(url: try #require(TestServices.redisURL), connections: 1)
        for id in ids { #expect(try await killer.send("CLIENT", "KILL", "ID", RESPArgument(id)) == .integer(1)) }
        await killer.close()
    }

    @Test func reconnectsAfterTheServerClosesItsConnections() async throws {
        try await withPool(connections: 2) { pool in
            let ids = try await connectionIDs(pool)
            #expect(ids.count == 2)
            #expect(pool.openConnectionCount == 2)
            try await kill(ids)

            // Wait (bounded) until the client has seen both closes; then commands must succeed on
            // fresh connections.
            let deadline = ContinuousClock.now + .seconds(3)
            while pool.openConnectionCount > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(pool.openConnectionCount == 0)
            let newIDs = try await connectionIDs(pool)
            #expect(newIDs.count == 2)
            #expect(newIDs.isDisjoint(with: ids))
            #expect(pool.openConnectionCount == 2)
        }
    }

    @Test func aKillRightBeforeACommandFailsRecognisablyAndTheNextSucceeds() async throws {
        try await withPool(connections: 1) { pool in
            try await kill(try await connectionIDs(pool))
            do {
                #expect(try await pool.send("PING") == .simpleString("PONG"))
            } catch let error as RESPClientError {
                // The close may arrive after the command went out: then it cannot be retried.
                #expect(error.kind == .connectionClosed)
            }
            #expect(try await pool.send("PING") == .simpleString("PONG"))
        }
    }

    @Test func evalSHAFallsBackToEvalAfterScriptFlush() async throws {
        try await withPool(connections: 1) { pool in
            let script = RedisScript("return {KEYS[1], ARGV[1], 'v\(UInt32.random(in: 0 ... .max))'}")
            // The hash we compute is the one Redis names the script by.
            #expect(try await pool.send("SCRIPT", "LOAD", RESPArgument(script.source)).string == script.sha1)
            let first = try await pool.evalSHA(script, keys: ["k"], arguments: ["a"])
            #expect(first.array?.prefix(2) == [.bulkString(Array("k".utf8)), .bulkString(Array("a".utf8))])
            _ = try await pool.send("SCRIPT", "FLUSH")
            #expect(try await pool.send("SCRIPT", "EXISTS", RESPArgument(script.sha1)) == .array([.integer(0)]))
            // Redis no longer knows the hash, so this answer can only have come through EVAL. (Other
            // tests may flush scripts at any moment too, so nothing here relies on them staying.)
            #expect(try await pool.evalSHA(script, keys: ["k"], arguments: ["a"]) == first)
        }
    }

    @Test func aScriptErrorIsAServerError() async throws {
        try await withPool(connections: 1) { pool in
            await #expect(throws: RedisServerError.self) {
                _ = try await pool.evalSHA(RedisScript("return redis.call('NOSUCHCOMMAND')"), keys: [], arguments: [])
            }
        }
    }

    @Test func aClosedPoolRefusesCommands() async throws {
        let pool = try RedisConnectionPool(url: try #require(TestServices.redisURL), connections: 1)
        _ = try await pool.send("PING")
        await pool.close()
        do {
            _ = try await pool.send("PING")
            Issue.record("a closed pool sent a command")
        } catch let error as RESPClientError {
            #expect(error.kind == .poolClosed)
        }
    }

    @Test func selectsTheDatabaseInTheURL() async throws {
        let base = try RedisURL(parsing: try #require(TestServices.redisURL))
        var url = base
        url.database = 3
        let pool = RedisConnectionPool(url: url, connections: 1)
        let key = TestServices.uniqueKeyPrefix("select") + "k"
        _ = try await pool.send("SET", RESPArgument(key), "in-3")
        let other = RedisConnectionPool(url: base, connections: 1)
        #expect(try await other.send("GET", RESPArgument(key)) == .null)
        #expect(try await other.send("SELECT", 3) == .simpleString("OK"))
        #expect(try await other.send("GET", RESPArgument(key)) == .bulkString(Array("in-3".utf8)))
        await pool.close()
        await other.close()
    }
}

/// These need no Redis: they check that an unreachable or silent Redis fails fast.
@Suite("Redis that cannot be reached")
struct UnreachableRedisTests {
    @Test func aRefusedConnectionFailsAtOnce() async throws {
        let closedPort = try SilentServer(listening: false)
        let pool = try RedisConnectionPool(url: closedPort.url, connections: 1, connectTimeout: .seconds(1))
        let started = ContinuousClock.now
        do {
            _ = try await pool.send("PING")
            Issue.record("PING to a closed port succeeded")
        } catch let error as RESPClientError {
            #expect(error.kind == .connectFailed)
        }
        #expect(ContinuousClock.now - started < .seconds(4))
        // And again: a failed connect does not leave the slot stuck.
        await #expect(throws: RESPClientError.self) { _ = try await pool.send("PING") }
        await pool.close()
    }

    @Test func aServerThatNeverAnswersTimesOut() async throws {
        let silent = try SilentServer(listening: true)
        let pool = try RedisConnectionPool(url: silent.url, connections: 1, connectTimeout: .seconds(3), commandTimeout: .milliseconds(300))
        let started = ContinuousClock.now
        // Several commands pipelined on the silent connection all fail, none hang.
        try await withThrowingTaskGroup(of: RESPClientError.Kind?.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    do {
                        _ = try await pool.send("PING")
                        return nil
                    } catch let error as RESPClientError {
                        return error.kind
                    }
                }
            }
            for try await kind in group { #expect(kind == .timeout) }
        }
        // Generous bounds: the point is "fails, does not hang", and tests run in parallel on 2 cores.
        #expect(ContinuousClock.now - started < .seconds(5))
        // The timed-out connection was dropped; the next command opens a new one and times out too.
        do {
            _ = try await pool.send("PING")
            Issue.record("the silent server answered")
        } catch let error as RESPClientError {
            #expect(error.kind == .timeout)
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        await pool.close()
    }
}
