// A redis-server of one test's own, on a free loopback port with its data in a temporary
// directory, that the test may SIGKILL and start again: with the append-only file (the setting
// docs/operations.md recommends for production), or coming back empty.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif
import Foundation
import Synchronization

public final class ThrowawayRedis: Sendable {
    public let port: Int
    public let directory: URL
    public let appendOnly: Bool
    private let process: Mutex<Process?>

    public static let executable = Subprocess.find(["/usr/bin/redis-server", "/usr/local/bin/redis-server"])
    public var url: String { "redis://127.0.0.1:\(port)" }

    private init(port: Int, directory: URL, appendOnly: Bool) {
        self.port = port
        self.directory = directory
        self.appendOnly = appendOnly
        self.process = Mutex(nil)
    }

    /// `appendOnly`: `appendonly yes` with `appendfsync everysec`, as in production. Without it,
    /// no persistence at all (no RDB snapshots either), as scripts/services.sh runs Redis.
    public static func start(appendOnly: Bool) async throws -> ThrowawayRedis {
        let server = ThrowawayRedis(port: try Subprocess.freePort(), directory: try Subprocess.temporaryDirectory("concertd-faults-redis"),
                                    appendOnly: appendOnly)
        do {
            try await server.launch()
        } catch {
            await server.stop()
            throw error
        }
        return server
    }

    private func launch() async throws {
        guard let executable = Self.executable else { throw SubprocessFailure("redis-server is not installed") }
        let started = try Subprocess.start([
            executable, "--bind", "127.0.0.1", "--port", String(port), "--dir", directory.path,
            "--save", "", "--appendonly", appendOnly ? "yes" : "no", "--appendfsync", "everysec",
            "--logfile", directory.appendingPathComponent("log").path,
        ])
        process.withLock { $0 = started }
        let ready = await Subprocess.eventually(seconds: 30) { Self.ping(port: self.port) }
        guard ready else { throw SubprocessFailure("redis-server on port \(port) did not answer PING within 30 s") }
    }

    /// SIGKILL: a crash. Whatever was written to the append-only file survives it.
    public func kill() async {
        guard let running = process.withLock({ $0 }) else { return }
        await Subprocess.stop(running, signal: SIGKILL)
    }

    /// Starts the server again on the same port after `kill`. With `empty`, its files are removed
    /// first: a Redis that comes back with nothing (no persistence, or lost disks).
    public func startAgain(empty: Bool) async throws {
        if empty {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] where name != "log" {
                try FileManager.default.removeItem(at: directory.appendingPathComponent(name))
            }
        }
        try await launch()
    }

    /// Kills the server and removes its directory. Never throws.
    public func stop() async {
        await kill()
        try? FileManager.default.removeItem(at: directory)
    }

    /// True when a server on `port` answers PING with PONG within a second (not while it is still
    /// loading its data, when it answers -LOADING).
    public static func ping(port: Int) -> Bool {
        guard let descriptor = Subprocess.connectedSocket(port: port) else { return false }
        defer { close(descriptor) }
        let command = Array("PING\r\n".utf8)
        guard command.withUnsafeBytes({ send(descriptor, $0.baseAddress, $0.count, 0) }) == command.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        return count > 0 && String(decoding: buffer[..<count], as: UTF8.self).hasPrefix("+PONG")
    }
}
