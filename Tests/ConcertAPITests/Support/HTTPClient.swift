import ConcertTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization

// The client for tests that talk to real `concertd` processes over the network.

/// One answer: its status (nil when none came), body and `Retry-After`.
struct Answer: Sendable, CustomStringConvertible {
    var status: Int?
    var body: Data
    var retryAfter: String?
    var error: String?

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    var code: String? { json["code"] as? String }
    func string(_ key: String) -> String? { json[key] as? String }
    func int(_ key: String) -> Int? { (json[key] as? NSNumber)?.intValue }
    /// Worth retrying with the same key: no answer, a 5xx, or the key's first use still counts
    /// as running.
    var isRetryable: Bool { status == nil || (status ?? 0) >= 500 || code == "IDEMPOTENCY_KEY_IN_USE" }
    var description: String {
        "\(status.map(String.init) ?? "no answer") \(code ?? "")\(error.map { " " + $0 } ?? "") \(String(decoding: body.prefix(200), as: UTF8.self))"
    }
}

struct Call: Sendable, CustomStringConvertible {
    var id: Int
    var what: String
    var started: ContinuousClock.Instant
    var ended: ContinuousClock.Instant
    var status: Int?
    var code: String?
    var seconds: Double { let d = ended - started; return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
    var description: String { "\(what) → \(status.map(String.init) ?? "no answer") \(code ?? "") in \(String(format: "%.2f", seconds)) s" }
}

/// The one client for tests that talk to `concertd` over the network (`ConcertdProcess`, the
/// fault cluster): URLSession with its own timeout, every request also under `withDeadline`,
/// every request recorded.
final class HTTPClient: Sendable {
    private let session: URLSession
    private let recorded = Mutex<[Call]>([])

    init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 12
        configuration.timeoutIntervalForResource = 15
        configuration.httpMaximumConnectionsPerHost = 32
        session = URLSession(configuration: configuration)
    }

    deinit { session.invalidateAndCancel() }

    var calls: [Call] { recorded.withLock { $0 } }

    func send(_ base: URL, _ method: String, _ path: String, jwt: String? = nil, queue: String? = nil, key: String? = nil,
              headers: [String: String] = [:], body: String? = nil) async -> Answer {
        var request = URLRequest(url: base.appendingPathComponent(path))
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpMethod = method
        request.timeoutInterval = 12
        if let jwt { request.setValue("Bearer \(jwt)", forHTTPHeaderField: "Authorization") }
        if let queue { request.setValue(queue, forHTTPHeaderField: "Queue-Token") }
        if let key { request.setValue(key, forHTTPHeaderField: "Idempotency-Key") }
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let started = ContinuousClock.now
        let session = self.session
        let sent = request
        let answer = await withDeadline(seconds: 15, fallback: Answer(status: nil, body: Data(), error: "no answer within 15 s")) {
            do {
                let (data, response) = try await session.data(for: sent)
                let http = response as? HTTPURLResponse
                return Answer(status: http?.statusCode, body: data, retryAfter: http?.value(forHTTPHeaderField: "Retry-After"))
            } catch {
                return Answer(status: nil, body: Data(), error: "\(error)")
            }
        }
        let ended = ContinuousClock.now
        let port = base.port.map { ":\($0)" } ?? ""
        recorded.withLock { calls in
            calls.append(Call(id: calls.count, what: "\(method) \(port)/\(path)", started: started, ended: ended,
                              status: answer.status, code: answer.code))
        }
        return answer
    }
}
