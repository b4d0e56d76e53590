// A PostgreSQL cluster of one test's own, made with initdb in a temporary directory, so that the
// test may stop and restart it without disturbing anyone else (scripts/services.sh starts the
// shared one the same way). As root, the cluster belongs to the `postgres` user and every
// PostgreSQL program runs through `runuser -u postgres --`.
import Foundation
import Synchronization

public final class ThrowawayPostgres: Sendable {
    public let port: Int
    public let directory: URL
    private let bin: String
    private let server = Mutex<Process?>(nil)

    public var adminURL: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }
    public var dataDirectory: String { directory.appendingPathComponent("data").path }
    public var log: URL { directory.appendingPathComponent("log") }

    public static var binaries: String? {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return versions.compactMap { Int($0) }.sorted().reversed().lazy
            .map { "\(root)/\($0)/bin" }
            .first { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") }
    }

    public static var isAvailable: Bool { binaries != nil }

    private static var asPostgres: [String] {
        getuid() == 0 ? ["/usr/sbin/runuser", "-u", "postgres", "--"] : []
    }

    private init(port: Int, directory: URL, bin: String) {
        self.port = port
        self.directory = directory
        self.bin = bin
    }

    /// initdb, then start on a free loopback port. fsync is off: the data is thrown away.
    public static func start() async throws -> ThrowawayPostgres {
        guard let bin = binaries else { throw SubprocessFailure("no PostgreSQL binaries in /usr/lib/postgresql/*/bin") }
        let directory = try Subprocess.temporaryDirectory("concertd-faults-pg")
        if getuid() == 0 { try await Subprocess.run(["/bin/chown", "postgres", directory.path]) }
        let server = ThrowawayPostgres(port: try Subprocess.freePort(), directory: directory, bin: bin)
        do {
            try await Subprocess.run(asPostgres + ["\(bin)/initdb", "-D", server.dataDirectory, "-U", "postgres",
                                                   "--auth=trust", "-E", "UTF8"], log: directory.appendingPathComponent("initdb.log"),
                                     seconds: 120)
            try await server.startServer()
        } catch {
            await server.stop()
            throw error
        }
        return server
    }

    /// Starts `postgres` in the foreground as a child of the test (not daemonised by `pg_ctl
    /// start`: Foundation's `Process` would never see pg_ctl exit while the daemon holds a
    /// descriptor it inherited) and waits until it accepts connections.
    public func startServer() async throws {
        let process = try Subprocess.start(Self.asPostgres + [
            "\(bin)/postgres", "-D", dataDirectory, "-c", "listen_addresses=127.0.0.1", "-p", String(port),
            "-k", directory.path, "-c", "max_connections=200", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
        ], log: log)
        server.withLock { $0 = process }
        let ready = await Subprocess.eventually(seconds: 60) {
            guard process.isRunning else { return true }
            return (try? await Subprocess.run(["\(self.bin)/pg_isready", "-q", "-h", "127.0.0.1", "-p", String(self.port)], seconds: 10)) != nil
        }
        guard ready, process.isRunning else {
            throw SubprocessFailure("PostgreSQL did not start on port \(port)\(Subprocess.tail(of: log))")
        }
    }

    /// `pg_ctl stop -m fast`: every connection is cut and the server is down until `startServer`.
    public func stopServer() async throws {
        try await Subprocess.run(Self.asPostgres + ["\(bin)/pg_ctl", "-D", dataDirectory, "-w", "-t", "60", "stop", "-m", "fast"],
                                 log: directory.appendingPathComponent("pg_ctl.log"), seconds: 90)
        if let process = server.withLock({ $0 }) { await Subprocess.stop(process, signal: 0, seconds: 30) }
    }

    /// Stops the server (immediately) and removes its directory. Never throws.
    public func stop() async {
        if let process = server.withLock({ $0 }), process.isRunning {
            _ = try? await Subprocess.run(Self.asPostgres + ["\(bin)/pg_ctl", "-D", dataDirectory, "-w", "-t", "30", "stop", "-m", "immediate"],
                                          log: directory.appendingPathComponent("pg_ctl.log"), seconds: 40)
            await Subprocess.stop(process, signal: 0, seconds: 10)
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
