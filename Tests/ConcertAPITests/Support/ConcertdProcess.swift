import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization

/// A `concertd` process started from the built binary, on a free port.
final class ConcertdProcess: @unchecked Sendable {
    let process = Process()
    let baseURL: URL
    /// Requests to this process; a request that gets no answer throws.
    let api: API
    private let output = Pipe()

    static var binary: URL {
        // Tests/ConcertAPITests/Support/ConcertdProcess.swift → repository root → .build/debug/concertd
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let candidates = ["debug", "release"].map { root.appendingPathComponent(".build/\($0)/concertd") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    /// Starts `concertd serve` with `arguments` and waits until it prints where it listens.
    init(arguments: [String], environment: [String: String] = [:]) async throws {
        process.executableURL = Self.binary
        process.arguments = ["serve", "--port", "0"] + arguments
        var env = ProcessInfo.processInfo.environment
        env["LOG_LEVEL"] = "warning"
        // No test may ever cause a DNS lookup or a connection beyond loopback (webhooks).
        env["CONCERT_WEBHOOK_RESOLVER"] = "loopback-only"
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = output
        // CONCERT_TEST_SERVER_LOG_DIR keeps each server's log (warnings and errors) for a post-mortem.
        if let directory = ProcessInfo.processInfo.environment["CONCERT_TEST_SERVER_LOG_DIR"], !directory.isEmpty {
            let path = directory + "/concertd-\(UUID().uuidString.prefix(8)).log"
            FileManager.default.createFile(atPath: path, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: path) ?? FileHandle.nullDevice
        } else {
            process.standardError = FileHandle.nullDevice
        }
        // The pipe is drained on Foundation's own thread; the loop below only sleeps, so no thread
        // of the (small) cooperative pool is ever blocked on a read.
        let seen = OutputBuffer()
        output.fileHandleForReading.readabilityHandler = { handle in seen.append(handle.availableData) }
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        var url: URL?
        while url == nil, Date() < deadline, process.isRunning {
            let text = seen.text
            if let range = text.range(of: #"listening on (http://[0-9.]+:[0-9]+)"#, options: .regularExpression) {
                url = URL(string: String(text[range].dropFirst("listening on ".count)))
            } else {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        guard let url else {
            process.terminate()
            throw ProcessError.didNotStart(seen.text)
        }
        baseURL = url
        api = API(url, requireAnswer: true)
    }

    enum ProcessError: Error { case didNotStart(String) }

    final class OutputBuffer: Sendable {
        private let data = Mutex(Data())
        func append(_ chunk: Data) { data.withLock { $0.append(chunk) } }
        var text: String { data.withLock { String(decoding: $0, as: UTF8.self) } }
    }

    func stop() async -> Int32 {
        if process.isRunning { process.terminate() }
        while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        return process.terminationStatus
    }
}

/// Runs the `concertd` binary to completion and returns its exit status and standard error.
func runConcertd(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, stderr: String, stdout: String) {
    let process = Process()
    process.executableURL = ConcertdProcess.binary
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["CONCERT_JWT_SECRET"] = nil
    env["CONCERT_WEBHOOK_RESOLVER"] = "loopback-only"
    for (key, value) in environment { env[key] = value }
    process.environment = env
    let errors = Pipe(), output = Pipe()
    process.standardError = errors
    process.standardOutput = output
    try process.run()
    while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
    return (process.terminationStatus, String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
            String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
}
