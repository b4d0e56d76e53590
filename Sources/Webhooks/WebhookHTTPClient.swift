// The webhook HTTP client: a small HTTP/1.1 client on SwiftNIO (TLS through NIOSSL for https).
//
// Why not async-http-client: the SSRF rule needs the connection to go to exactly the address
// that was resolved and checked (no second lookup between check and connect, so no
// DNS-rebinding window). async-http-client resolves host names itself; its only hook,
// `dnsOverride`, is fixed per client, so every delivery would need a client of its own. Here a
// connection is opened to a given `SocketAddress`, while the Host header and TLS server name
// (SNI and certificate check) keep the URL's host name.
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

public struct WebhookResponse: Sendable, Equatable {
    public var status: Int
}

public enum WebhookHTTPError: Error, CustomStringConvertible {
    case timedOut
    case closedEarly
    case tlsUnavailable
    public var description: String {
        switch self {
        case .tlsUnavailable: "TLS could not be set up"
        case .timedOut: "no answer within the time limit"
        case .closedEarly: "the connection closed before an answer"
        }
    }
}

/// Sends one POST per call on a new connection (`Connection: close`).
public struct WebhookHTTPClient: Sendable {
    let group: any EventLoopGroup
    let sslContext: NIOSSLContext?

    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.group = group
        self.sslContext = try? NIOSSLContext(configuration: .makeClientConfiguration())
    }

    /// POSTs `body` to `target` at `address`; the answer's status, or an error when none came
    /// within `timeout`.
    public func post(to target: WebhookTarget, at address: IPAddress, headers extra: [(String, String)], body: [UInt8],
                     timeout: TimeAmount) async throws -> WebhookResponse {
        let socket = try address.socketAddress(port: target.port)
        let sslContext = self.sslContext
        let tlsName = target.literal == nil ? target.host : nil
        let isHTTPS = target.isHTTPS
        let loop = group.next()
        let promise = loop.makePromise(of: WebhookResponse.self)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if isHTTPS {
                        guard let sslContext else { throw WebhookHTTPError.tlsUnavailable }
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: sslContext, serverHostname: tlsName))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseStatusHandler(promise: promise))
                }
            }
        let deadline = loop.scheduleTask(in: timeout) { promise.fail(WebhookHTTPError.timedOut) }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(to: socket).get()
        } catch {
            deadline.cancel()
            promise.fail(error)
            throw error
        }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: target.requestTarget)
        let defaultPort = isHTTPS ? 443 : 80
        let hostHeader = (target.host.contains(":") ? "[\(target.host)]" : target.host) + (target.port == defaultPort ? "" : ":\(target.port)")
        head.headers.add(name: "Host", value: hostHeader)
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: "\(body.count)")
        head.headers.add(name: "User-Agent", value: "concertd-webhooks")
        head.headers.add(name: "Connection", value: "close")
        for (name, value) in extra { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }
}

/// Completes with the status once the whole answer arrived (or fails when the connection ends first).
private final class ResponseStatusHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<WebhookResponse>
    var status: Int?

    init(promise: EventLoopPromise<WebhookResponse>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body: break
        case .end:
            if let status { promise.succeed(WebhookResponse(status: status)) }
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(WebhookHTTPError.closedEarly)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
