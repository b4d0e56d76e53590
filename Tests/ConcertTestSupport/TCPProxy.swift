import NIOCore
import NIOPosix
import Synchronization

/// A TCP proxy on a free loopback port that a test can cut (every connection closed, new ones
/// refused) and restore, to take a server "away" from one process without stopping it for the
/// other tests that share it.
public final class TCPProxy: Sendable {
    public let port: Int
    private let server: any Channel
    private struct State {
        var isCut = false
        var connections: [ObjectIdentifier: any Channel] = [:]
    }
    private final class Shared: Sendable {
        let state = Mutex(State())
    }
    private let shared = Shared()

    /// `observeClientBytes` sees every byte a client sends, as it passes (for counting a protocol's
    /// messages); each connection gets an observer of its own from the factory.
    public init(targetHost: String = "127.0.0.1", targetPort: Int,
                observeClientBytes: (@Sendable () -> (@Sendable (ByteBuffer) -> Void))? = nil) throws {
        let shared = self.shared
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                if shared.state.withLock({ $0.isCut }) { return inbound.close() }
                return ClientBootstrap(group: inbound.eventLoop)
                    .connectTimeout(.seconds(2))
                    .connect(host: targetHost, port: targetPort)
                    .flatMap { outbound in
                        shared.state.withLock {
                            $0.connections[ObjectIdentifier(inbound)] = inbound
                            $0.connections[ObjectIdentifier(outbound)] = outbound
                        }
                        return inbound.eventLoop.makeCompletedFuture {
                            try outbound.pipeline.syncOperations.addHandler(Forwarder(peer: inbound))
                            try inbound.pipeline.syncOperations.addHandler(Forwarder(peer: outbound, observe: observeClientBytes?()))
                        }
                    }
            }
        server = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
        port = server.localAddress?.port ?? 0
    }

    /// Closes every proxied connection and refuses new ones.
    public func cut() {
        let open = shared.state.withLock { state in
            state.isCut = true
            defer { state.connections = [:] }
            return Array(state.connections.values)
        }
        for channel in open { channel.close(promise: nil) }
    }

    public func restore() {
        shared.state.withLock { $0.isCut = false }
    }

    public func close() {
        cut()
        server.close(promise: nil)
    }

    private final class Forwarder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        let observe: (@Sendable (ByteBuffer) -> Void)?
        init(peer: any Channel, observe: (@Sendable (ByteBuffer) -> Void)? = nil) {
            self.peer = peer
            self.observe = observe
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            observe?(bytes)
            peer.writeAndFlush(bytes, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            peer.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}
