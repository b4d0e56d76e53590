import Foundation
import HTTPTypes

/// One response, however it came: in process through Hummingbird's test client (`withAPI`), or
/// over the network from a `concertd` process (`HTTPClient`). Its status, headers and body, with
/// accessors for the JSON body.
///
/// Over the network a request may get no answer at all (a lost connection, a timeout): then
/// `answered` is false, `status` is 0 and `failure` says why. In process every request is answered.
struct Reply: Sendable, CustomStringConvertible {
    var status: Int
    var headers: HTTPFields
    var bytes: [UInt8]
    /// Why no answer came; nil when one did.
    var failure: String?

    init(status: Int, headers: HTTPFields = [:], bytes: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.bytes = bytes
    }

    /// A request that got no answer, for `failure`.
    static func noAnswer(_ failure: String) -> Reply {
        var reply = Reply(status: 0)
        reply.failure = failure
        return reply
    }

    var answered: Bool { failure == nil }

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] ?? [:]
    }
    var code: String? { json["code"] as? String }
    subscript(key: String) -> Any? { json[key] }
    func int(_ key: String) -> Int64? { (json[key] as? NSNumber)?.int64Value }
    func string(_ key: String) -> String? { json[key] as? String }
    func array(_ key: String) -> [[String: Any]] { json[key] as? [[String: Any]] ?? [] }
    /// The body as text.
    var text: String { String(decoding: bytes, as: UTF8.self) }
    var retryAfter: String? { headers[.retryAfter] }

    /// Worth retrying with the same key: no answer, a 5xx, or the key's first use still counts
    /// as running.
    var isRetryable: Bool { !answered || status >= 500 || code == "IDEMPOTENCY_KEY_IN_USE" }

    var description: String {
        "\(answered ? String(status) : "no answer") \(code ?? "")\(failure.map { " " + $0 } ?? "") \(String(decoding: bytes.prefix(200), as: UTF8.self))"
    }
}
