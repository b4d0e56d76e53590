import NIOCore
import NIOHTTP1
import NIOPosix

/// A trivial HTTP/1.1 server that answers every request with `{"status":"ok"}` (the body of
/// concertd's /healthz), on one event-loop thread: the "how fast can wrk go here" reference.
final class StaticHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    static let body = #"{"status":"ok"}"#

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(Self.body.utf8.count)")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: Self.body.utf8.count)
        buffer.writeString(Self.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

func runStaticServer(_ flags: Flags) throws {
    let port = flags.int("port", 18080)
    let threads = flags.int("threads", 1)
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let channel = try ServerBootstrap(group: group)
        .serverChannelOption(ChannelOptions.backlog, value: 256)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.pipeline.configureHTTPServerPipeline().flatMap { channel.pipeline.addHandler(StaticHandler()) }
        }
        .bind(host: "127.0.0.1", port: port).wait()
    print("static server on http://127.0.0.1:\(port)")
    try channel.closeFuture.wait()
}
