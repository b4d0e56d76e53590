import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Webhooks

/// One POST a `WebhookReceiver` got.
struct ReceivedWebhook: Sendable {
    var id: String
    var timestamp: String
    var signature: String
    var body: [UInt8]
    /// What the receiver answered.
    var answered: Int

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
    var type: String { json["type"] as? String ?? "" }
    var data: [String: Any] { json["data"] as? [String: Any] ?? [:] }

    /// Whether the Standard Webhooks signature checks out with `secret`.
    func isSigned(with secret: String) -> Bool {
        guard let seconds = Int64(timestamp) else { return false }
        return signature == WebhookSigning.signature(secret: secret, id: id, timestamp: seconds, body: body)
            && Self.independentSignature(secret: secret, id: id, timestamp: timestamp, body: body) == signature
    }

    /// The signature computed here from the specification, not with the server's code.
    static func independentSignature(secret: String, id: String, timestamp: String, body: [UInt8]) -> String {
        let key = SymmetricKey(data: Data(base64Encoded: String(secret.dropFirst("whsec_".count)))!)
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(id).\(timestamp).".utf8) + body, using: key)
        return "v1," + Data(mac).base64EncodedString()
    }
}

/// A real HTTP receiver on 127.0.0.1 that records every POST and answers with `status`
/// (changeable while it runs, to play a receiver that fails for a while); status 0 never answers
/// (a receiver that hangs).
final class WebhookReceiver: Sendable {
    let port: Int
    private let channel: any Channel
    private let state: State

    final class State: Sendable {
        let lock: Mutex<(status: Int, received: [ReceivedWebhook])>
        init(status: Int) { lock = Mutex((status: status, received: [])) }
        func withLock<T: Sendable>(_ body: (inout (status: Int, received: [ReceivedWebhook])) -> T) -> T { lock.withLock { body(&$0) } }
    }

    var url: String { "http://127.0.0.1:\(port)/hooks" }

    init(status: Int = 200) async throws {
        let state = State(status: status)
        self.state = state
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress!.port!
    }

    func setStatus(_ status: Int) { state.withLock { $0.status = status } }
    var received: [ReceivedWebhook] { state.withLock { $0.received } }
    /// The 2xx-answered ones, first delivery of each id only.
    var acknowledged: [ReceivedWebhook] {
        var seen = Set<String>()
        return received.filter { $0.answered / 100 == 2 && seen.insert($0.id).inserted }
    }

    /// Waits until `count` distinct events were acknowledged (or `timeout`), and returns them.
    @discardableResult
    func waitForAcknowledged(_ count: Int, timeout: Duration = .seconds(20), clock tick: (@Sendable () async -> Void)? = nil)
        async throws -> [ReceivedWebhook] {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            let got = acknowledged
            if got.count >= count { return got }
            await tick?()
            try await Task.sleep(for: .milliseconds(50))
        }
        return acknowledged
    }

    func close() async { try? await channel.close() }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let state: State
        var head: HTTPRequestHead?
        var body: [UInt8] = []

        init(state: State) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                body = []
            case .body(var buffer):
                body += buffer.readBytes(length: buffer.readableBytes) ?? []
            case .end:
                guard let head else { return }
                let status = state.withLock { s -> Int in
                    s.received.append(ReceivedWebhook(id: head.headers.first(name: "webhook-id") ?? "",
                                                      timestamp: head.headers.first(name: "webhook-timestamp") ?? "",
                                                      signature: head.headers.first(name: "webhook-signature") ?? "",
                                                      body: body, answered: s.status))
                    return s.status
                }
                guard status != 0 else { return }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Length", value: "0")
                headers.add(name: "Connection", value: "close")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .init(statusCode: status), headers: headers))),
                              promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
            }
        }
    }
}
