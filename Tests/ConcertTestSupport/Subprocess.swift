// Running helper programs (initdb, pg_ctl, redis-server, nginx) from tests, always with a bound:
// nothing here waits without a deadline, and output goes to files, never to pipes that a
// daemonised grandchild could hold open.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
import Darwin
#endif
import ConcertStore
import Foundation

public struct SubprocessFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum Subprocess {
    /// Runs `arguments[0]` with the rest as its arguments to completion, within `seconds`.
    /// Its output is appended to `log` (or dropped). Throws when it does not exit 0 in time.
    @discardableResult
    public static func run(_ arguments: [String], log: URL? = nil, seconds: Double = 60) async throws -> Int32 {
        let process = try start(arguments, log: log)
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while process.isRunning {
            if ContinuousClock.now > deadline {
                kill(process.processIdentifier, SIGKILL)
                throw SubprocessFailure("\(arguments.joined(separator: " ")) did not finish within \(seconds) s\(tail(of: log))")
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard process.terminationStatus == 0 else {
            throw SubprocessFailure("\(arguments.joined(separator: " ")) exited with \(process.terminationStatus)\(tail(of: log))")
        }
        return process.terminationStatus
    }

    /// Starts a long-running program; the caller stops it.
    public static func start(_ arguments: [String], log: URL? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.standardInput = FileHandle.nullDevice
        var handle: FileHandle?
        if let log {
            if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
            handle = try FileHandle(forWritingTo: log)
            handle?.seekToEndOfFile()
        }
        process.standardOutput = handle ?? FileHandle.nullDevice
        process.standardError = handle ?? FileHandle.nullDevice
        try process.run()
        // The child has its own copy of the descriptor now.
        try? handle?.close()
        return process
    }

    /// Sends `signal` and waits (bounded) for the process to exit; SIGKILL if it will not.
    public static func stop(_ process: Process, signal: Int32 = SIGTERM, seconds: Double = 10) async {
        guard process.isRunning else { return }
        kill(process.processIdentifier, signal)
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            let hard = ContinuousClock.now + .seconds(5)
            while process.isRunning, ContinuousClock.now < hard { try? await Task.sleep(for: .milliseconds(10)) }
        }
    }

    /// The first executable among `candidates`.
    public static func find(_ candidates: [String]) -> String? {
        candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A loopback port that was free a moment ago.
    public static func freePort() throws -> Int {
        try SilentServer(listening: false).port
    }

    /// A fresh directory under the temporary directory.
    public static func temporaryDirectory(_ prefix: String) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// True once something accepts TCP connections on 127.0.0.1:`port`.
    public static func accepts(port: Int) -> Bool {
        guard let descriptor = connectedSocket(port: port) else { return false }
        close(descriptor)
        return true
    }

    /// A blocking TCP socket connected to 127.0.0.1:`port` (sends and receives give up after
    /// `timeoutSeconds`), or nil. The caller closes it.
    public static func connectedSocket(port: Int, timeoutSeconds: Int = 1) -> Int32? {
        #if canImport(Glibc) || canImport(Musl)
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let descriptor = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { return nil }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    /// Polls `condition` every 50 ms until it holds or `seconds` pass; returns whether it held.
    public static func eventually(seconds: Double, _ condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while true {
            if await condition() { return true }
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    static func tail(of log: URL?) -> String {
        guard let log, let text = try? String(contentsOf: log, encoding: .utf8), !text.isEmpty else { return "" }
        return ":\n" + text.split(separator: "\n").suffix(15).joined(separator: "\n")
    }
}

/// Runs `body`, but gives up waiting for it after `seconds` and answers `fallback` instead, even
/// if `body` never returns (it is cancelled and left behind). Every await a test makes on a
/// network client goes through this, so a client that never calls back cannot hang the suite.
/// (The service's own `withDeadline`, which throws `DeadlineExceeded`, with a fallback value.)
public func withDeadline<T: Sendable>(seconds: Double, fallback: T, _ body: @escaping @Sendable () async -> T) async -> T {
    (try? await withDeadline(seconds: seconds) { await body() }) ?? fallback
}
