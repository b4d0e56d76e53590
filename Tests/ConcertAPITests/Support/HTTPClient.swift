import ConcertTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Synchronization

// The network transport for tests that talk to real `concertd` processes.

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
/// every request recorded. It never throws: a request that got no answer is a `Reply` whose
/// `answered` is false. `API(base, client:)` puts the in-process tests' calls and fixtures on it.
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

    /// `path` starts with `/`, as in process. The same labels as `API.call`, for the callers that
    /// must not throw (a load, a probe inside `eventually`).
    func send(_ base: URL, _ method: HTTPRequest.Method, _ path: String, jwt: String? = nil, queueToken: String? = nil,
              idempotencyKey: String? = nil, headers: HTTPFields = [:], json: String? = nil) async -> Reply {
        var fields = headers
        fields.addRequestHeaders(jwt: jwt, queueToken: queueToken, idempotencyKey: idempotencyKey, json: json != nil)
        return await send(base, method, path, headers: fields, body: json.map { Array($0.utf8) })
    }

    func send(_ base: URL, _ method: HTTPRequest.Method, _ path: String, headers: HTTPFields, body: [UInt8]?) async -> Reply {
        var root = base.absoluteString
        while root.hasSuffix("/") { root.removeLast() }
        guard let url = URL(string: root + path) else { return .noAnswer("not a URL: \(root + path)") }
        var request = URLRequest(url: url)
        for field in headers { request.addValue(field.value, forHTTPHeaderField: field.name.rawName) }
        request.httpMethod = method.rawValue
        request.timeoutInterval = 12
        if let body { request.httpBody = Data(body) }
        let started = ContinuousClock.now
        let session = self.session
        let sent = request
        let reply = await withDeadline(seconds: 15, fallback: Reply.noAnswer("no answer within 15 s")) {
            do {
                let (data, response) = try await session.data(for: sent)
                guard let http = response as? HTTPURLResponse else { return Reply.noAnswer("not an HTTP response") }
                var fields = HTTPFields()
                for (name, value) in http.allHeaderFields {
                    if let name = (name as? String).flatMap({ HTTPField.Name($0) }), let value = value as? String { fields[name] = value }
                }
                return Reply(status: http.statusCode, headers: fields, bytes: Array(data))
            } catch {
                return Reply.noAnswer("\(error)")
            }
        }
        let ended = ContinuousClock.now
        let port = base.port.map { ":\($0)" } ?? ""
        recorded.withLock { calls in
            calls.append(Call(id: calls.count, what: "\(method.rawValue) \(port)\(path)", started: started, ended: ended,
                              status: reply.answered ? reply.status : nil, code: reply.code))
        }
        return reply
    }
}

extension HTTPFields {
    /// The headers every test request may carry: the JWT, the queue token, the Idempotency-Key,
    /// and the JSON content type when there is a JSON body.
    mutating func addRequestHeaders(jwt: String?, queueToken: String?, idempotencyKey: String?, json: Bool) {
        if let jwt { self[.authorization] = "Bearer " + jwt }
        if let queueToken { self[HTTPField.Name("Queue-Token")!] = queueToken }
        if let idempotencyKey { self[HTTPField.Name("Idempotency-Key")!] = idempotencyKey }
        if json { self[.contentType] = "application/json" }
    }
}
