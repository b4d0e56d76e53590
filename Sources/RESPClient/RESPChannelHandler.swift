import NIOCore

/// A command on its way to Redis, with the promise its reply completes.
struct RESPRequest: Sendable {
    var command: RESPCommand
    var response: EventLoopPromise<RESPValue>
}

/// Pipelining on one connection: requests are written as they come, and Redis answers in the
/// same order, so replies complete a FIFO of waiting promises.
///
/// A command that gets no reply in time makes the whole connection unusable (a late reply would
/// be matched with the wrong command), so a timeout fails every waiter and closes the channel;
/// the pool opens a new connection on next use.
final class RESPChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RESPRequest
    typealias OutboundOut = ByteBuffer

    private struct Waiter {
        var response: EventLoopPromise<RESPValue>
        var timeout: Scheduled<Void>
        var sequence: UInt64
    }

    private let commandTimeout: TimeAmount
    private var waiters = CircularBuffer<Waiter>()
    private var nextSequence: UInt64 = 0
    /// Set once the connection is unusable; later writes fail at once with it.
    private var failure: RESPClientError?

    init(commandTimeout: TimeAmount) {
        self.commandTimeout = commandTimeout
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = Self.unwrapOutboundIn(data)
        if let failure {
            let notSent = RESPClientError(.notSent, "connection unusable: \(failure.message)")
            promise?.fail(notSent)
            request.response.fail(notSent)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: request.command.encodedLengthEstimate)
        request.command.encode(into: &buffer)

        let sequence = nextSequence
        nextSequence += 1
        let command = request.command.description
        let timeout = context.eventLoop.assumeIsolated().scheduleTask(in: commandTimeout) { [self] in
            // Still waiting when the time is up: this command or one before it never got a reply.
            guard let head = waiters.first, head.sequence <= sequence else { return }
            fail(context: context, RESPClientError(.timeout, "no reply to \(command) within \(commandTimeout.nanoseconds / 1_000_000) ms"))
        }
        waiters.append(Waiter(response: request.response, timeout: timeout, sequence: sequence))
        context.write(Self.wrapOutboundOut(buffer), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = Self.unwrapInboundIn(data)
        guard let waiter = waiters.popFirst() else {
            fail(context: context, RESPClientError(.protocolViolation, "a reply that no command asked for"))
            return
        }
        waiter.timeout.cancel()
        waiter.response.succeed(value)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        let clientError = error as? RESPClientError
            ?? RESPClientError(.connectionClosed, "connection failed: \(error)")
        fail(context: context, clientError)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RESPClientError(.connectionClosed, "connection closed by peer or network"))
        context.fireChannelInactive()
    }

    private func fail(context: ChannelHandlerContext, _ error: RESPClientError) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: RESPClientError) {
        if failure == nil { failure = error }
        while let waiter = waiters.popFirst() {
            waiter.timeout.cancel()
            waiter.response.fail(error)
        }
    }
}
