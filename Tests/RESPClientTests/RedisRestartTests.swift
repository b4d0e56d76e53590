import ConcertTestSupport
import Foundation
import RESPClient
import Testing

/// A real Redis server of the test's own, stopped with SIGKILL and started again on the same port:
/// the pool must fail fast while it is gone and serve again, without being rebuilt, once it is back.
@Suite("Redis restarts")
struct RedisRestartTests {
    static let redisServer = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    final class RedisProcess: @unchecked Sendable {
        let process = Process()
        init(port: Int) throws {
            process.executableURL = URL(fileURLWithPath: RedisRestartTests.redisServer!)
            process.arguments = ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
        }
        func kill() async {
            Foundation.kill(process.processIdentifier, SIGKILL)
            while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        }
    }

    /// Retries `body` until it succeeds or `seconds` pass.
    static func eventually<T>(seconds: Double, _ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while true {
            do {
                return try await body()
            } catch {
                if ContinuousClock.now > deadline { throw error }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// After a failed connection attempt the pool answers "unreachable" at once for its back-off,
    /// instead of every command waiting out a connect timeout against a Redis that is gone; then it
    /// tries again.
    @Test(.enabled(if: redisServer != nil || TestServices.required))
    func afterAFailedConnectThePoolBacksOffThenTriesAgain() async throws {
        let port = try { let probe = try SilentServer(listening: false); return probe.port }()
        let pool = try RedisConnectionPool(url: "redis://127.0.0.1:\(port)", connections: 1, connectBackoff: .seconds(3))
        await #expect(throws: RESPClientError.self) { _ = try await pool.send("PING") }
        let failedAt = ContinuousClock.now
        let server = try RedisProcess(port: port)
        let probe = try RedisConnectionPool(url: "redis://127.0.0.1:\(port)", connections: 1, connectBackoff: .milliseconds(10))
        _ = try await Self.eventually(seconds: 10) { try await probe.send("PING") }
        let started = ContinuousClock.now
        do {
            _ = try await pool.send("PING")
            // Only possible when starting Redis took longer than the back-off itself.
            #expect(ContinuousClock.now - failedAt >= .seconds(3), "answered during the back-off")
        } catch let error as RESPClientError {
            #expect(error.kind == .connectFailed)
            #expect(ContinuousClock.now - started < .milliseconds(100), "failed at once, without a connect attempt")
        }
        let value = try await Self.eventually(seconds: 10) { try await pool.send("PING") }
        #expect(value.string == "PONG")
        await probe.close()
        await pool.close()
        await server.kill()
    }

    @Test(.enabled(if: redisServer != nil || TestServices.required))
    func thePoolFailsFastWhileRedisIsDownAndServesAgainAfterARestart() async throws {
        let port = try { let probe = try SilentServer(listening: false); return probe.port }()
        var server = try RedisProcess(port: port)
        let pool = try RedisConnectionPool(url: "redis://127.0.0.1:\(port)", connections: 2)
        do {
            _ = try await Self.eventually(seconds: 10) { try await pool.send("SET", "restart-key", "before") }
            await server.kill()
            let started = ContinuousClock.now
            await #expect(throws: RESPClientError.self) { _ = try await pool.send("GET", "restart-key") }
            #expect(ContinuousClock.now - started < .seconds(5), "fails fast while Redis is down")

            server = try RedisProcess(port: port)
            let value = try await Self.eventually(seconds: 10) { try await pool.send("GET", "restart-key") }
            #expect(value.isNull, "a restarted Redis without persistence is empty")
            #expect(try await pool.send("PING").string == "PONG")
        } catch {
            await pool.close()
            await server.kill()
            throw error
        }
        await pool.close()
        await server.kill()
    }
}
