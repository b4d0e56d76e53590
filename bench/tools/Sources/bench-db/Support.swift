import Foundation
import Logging
import PostgresNIO

/// `postgres://user[:pw]@host[:port]/db`, enough for the throwaway servers of scripts/services.sh.
struct PGURL {
    var user = "postgres", password: String?, host = "127.0.0.1", port = 5432, database = "postgres"

    init(_ text: String) throws {
        guard let range = text.range(of: "://") else { throw BenchError("bad URL \(text)") }
        var rest = Substring(text[range.upperBound...])
        if let q = rest.firstIndex(of: "?") { rest = rest[..<q] }
        guard let slash = rest.firstIndex(of: "/") else { throw BenchError("URL names no database: \(text)") }
        database = String(rest[rest.index(after: slash)...])
        let authority = rest[..<slash]
        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = String(userInfo[..<colon]); password = String(userInfo[userInfo.index(after: colon)...])
            } else { user = String(userInfo) }
        }
        if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon]); port = Int(hostPort[hostPort.index(after: colon)...]) ?? 5432
        } else { host = String(hostPort) }
    }

    func client(connections: Int, logger: Logger) -> PostgresClient {
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password,
                                                         database: database, tls: .disable)
        configuration.options.maximumConnections = connections
        configuration.options.minimumConnections = connections
        return PostgresClient(configuration: configuration, backgroundLogger: logger)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Flags as `--name value`.
struct Flags {
    var values: [String: String] = [:]
    init(_ arguments: ArraySlice<String>) {
        var iterator = arguments.makeIterator()
        while let name = iterator.next() {
            guard name.hasPrefix("--") else { continue }
            values[String(name.dropFirst(2))] = iterator.next() ?? ""
        }
    }
    func string(_ name: String, _ fallback: String? = nil) throws -> String {
        if let value = values[name] ?? fallback { return value }
        throw BenchError("--\(name) is required")
    }
    func int(_ name: String, _ fallback: Int) -> Int { values[name].flatMap(Int.init) ?? fallback }
    func double(_ name: String, _ fallback: Double) -> Double { values[name].flatMap(Double.init) ?? fallback }
}

/// Latencies of one kind of operation, in nanoseconds.
struct Samples {
    var nanos: [Int64] = []
    mutating func add(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        nanos.append(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
    mutating func merge(_ other: Samples) { nanos += other.nanos }
    func percentileMs(_ p: Double) -> Double {
        guard !nanos.isEmpty else { return 0 }
        let sorted = nanos.sorted()
        let index = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))
        return Double(sorted[index]) / 1e6
    }
}

/// Runs `body` with a started client and shuts the pool down afterwards.
func withClient<R: Sendable>(_ url: PGURL, connections: Int, _ body: @escaping @Sendable (PostgresClient, Logger) async throws -> R) async throws -> R {
    var quiet = Logger(label: "bench-db")
    quiet.logLevel = .error
    let logger = quiet
    let client = url.client(connections: connections, logger: logger)
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask { await client.run(); return nil }
        group.addTask { try await body(client, logger) }
        var result: R?
        while let next = try await group.next() {
            if let value = next { result = value; group.cancelAll() }
        }
        guard let result else { throw BenchError("client ended without a result") }
        return result
    }
}

extension PostgresConnection {
    @discardableResult
    func exec(_ query: PostgresQuery, _ logger: Logger) async throws -> [PostgresRow] {
        try await self.query(query, logger: logger).collect()
    }
    func sql(_ text: String, _ logger: Logger) async throws {
        _ = try await self.query(PostgresQuery(unsafeSQL: text), logger: logger).collect()
    }
}

func jsonLine(_ fields: [(String, Any)]) -> String {
    let parts = fields.map { key, value -> String in
        switch value {
        case let s as String: return "\"\(key)\":\"\(s)\""
        case let d as Double: return "\"\(key)\":\(String(format: "%.3f", d))"
        default: return "\"\(key)\":\(value)"
        }
    }
    return "{" + parts.joined(separator: ",") + "}"
}
