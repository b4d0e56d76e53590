import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// What one client connection may cost the server, so that slow, stalled or oversized requests
/// cannot tie it up (an on-sale attracts scripts that open thousands of connections and dribble).
///
/// - The request line and headers must arrive within `idleTimeoutSeconds` of the connection
///   opening or of the previous response, and an idle keep-alive connection is closed after the
///   same time (Hummingbird's idle timeout, which only counts complete HTTP parts).
/// - A request's body must arrive within `requestTimeoutSeconds` of its head; else 408 and close.
///   Hummingbird has no such limit: without it, a body sent one byte a minute kept its
///   connection (and its handler task) forever.
/// - The request line and headers together may be at most `maxHeaderBytes`; else 431 and close.
///   NIO's limit is 80 KiB; no real client of this API needs more than a few KiB.
/// - Both answers are problem+json with a Request-Id, like every other error, instead of the
///   bare connection reset or empty 400 that the HTTP decoder's errors give by default.
public struct ConnectionLimits: Sendable, Equatable {
    public var idleTimeoutSeconds: Int64 = 60
    public var requestTimeoutSeconds: Int64 = 30
    public var maxHeaderBytes = 16 * 1024

    public init() {}

    /// The HTTP/1.1 server with these limits in its pipeline.
    func serverBuilder() -> HTTPServerBuilder {
        var decoder = HTTP1Channel.Configuration.DecoderConfiguration()
        decoder.maxHeaderFieldSize = maxHeaderBytes
        decoder.maxHeaderListSize = maxHeaderBytes
        decoder.maxHeaderFieldCount = 100
        let limits = self
        let configuration = HTTP1Channel.Configuration(
            additionalChannelHandlers: [ConnectionLimitHandler(limits: limits)],
            idleTimeout: .seconds(idleTimeoutSeconds),
            httpDecoderConfiguration: decoder)
        return .http1(configuration: configuration)
    }
}

/// Sits right after the HTTP codec: answers the decoder's errors with problem+json, and closes
/// a connection whose request body does not arrive in time.
final class ConnectionLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: ConnectionLimits
    /// Requests whose head has arrived and whose response has not ended. While any is in
    /// flight the server must not write a response of its own (it would answer the wrong request).
    private var unanswered = 0
    /// A response head has been written and its end has not.
    private var responding = false
    private var bodyDeadline: Scheduled<Void>?

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            bodyDeadline?.cancel()
            let seconds = limits.requestTimeoutSeconds
            bodyDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(seconds)) { [self] in
                answerAndClose(context: context, .requestTimeout(seconds: seconds))
            }
        case .body:
            break
        case .end:
            bodyDeadline?.cancel()
            bodyDeadline = nil
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.kind != .informational: responding = true
        case .end:
            responding = false
            unanswered = max(0, unanswered - 1)
        default: break
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        let answer: APIError = parserError == .headerOverflow
            ? .headersTooLarge(limit: limits.maxHeaderBytes)
            : .malformedRequest("the request is not valid HTTP/1.1 (\(parserError))")
        answerAndClose(context: context, answer)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        bodyDeadline?.cancel()
    }

    /// Writes `error` as problem+json when that cannot be mistaken for the answer to another
    /// request, then closes the connection.
    private func answerAndClose(context: ChannelHandlerContext, _ error: APIError) {
        bodyDeadline?.cancel()
        bodyDeadline = nil
        guard context.channel.isActive else { return }
        // A decoder error comes between requests (nothing may be unanswered); a stalled body
        // belongs to the one request still being read, which nobody has answered yet.
        let mayAnswer: Bool
        if case .requestTimeout = error { mayAnswer = unanswered == 1 } else { mayAnswer = unanswered == 0 }
        guard mayAnswer, !responding else {
            context.close(promise: nil)
            return
        }
        let problem = Problem(api: error)
        var (fields, body) = problem.encoded(requestId: RequestIdMiddleware.make())
        fields[.connection] = "close"
        fields[.contentLength] = String(body.count)
        let head = HTTPResponse(status: .init(code: problem.status, reasonPhrase: problem.title), headerFields: fields)
        responding = true
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(context.channel.allocator.buffer(bytes: body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
