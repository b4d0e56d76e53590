import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A fixed number of Redis connections, opened on first use and shared by every caller.
///
/// - Commands go round-robin over the connections; many commands may be in flight on one
///   connection at once (pipelining), answered in order.
/// - A connection that closed (Redis restarted, `CLIENT KILL`, a timeout) is replaced on next use;
///   a command that could not even be written is retried once on the new connection, since it
///   certainly did not run. A command that was written and then lost its connection fails with
///   `.connectionClosed` and is not retried: it may have run.
/// - Nothing waits without bound: opening a connection gives up after `connectTimeout`, a command
///   after `commandTimeout`, and both fail with `RESPClientError`.
public final class RedisConnectionPool: Sendable {
    public let url: RedisURL
    public let connectionCount: Int
    private let group: any EventLoopGroup
    private let connectTimeout: TimeAmount
    private let commandTimeout: TimeAmount
    private let parser: RESPParser
    private let logger: Logger

    private enum Slot {
        case empty
        case connecting(EventLoopFuture<any Channel>)
        case ready(any Channel)
    }
    private struct State {
        var slots: [Slot]
        var closed = false
        /// When a connection attempt last failed. For `connectBackoff` after it, commands fail at
        /// once instead of each waiting out its own connect timeout against a Redis that is gone.
        var lastConnectFailure: NIODeadline?
    }
    /// How long the pool answers "unreachable" at once after a failed connection attempt.
    private let connectBackoff: TimeAmount
    private let state: Mutex<State>
    private let nextSlot = Atomic<Int>(0)

    /// - Parameters:
    ///   - url: `redis://[[user]:password@]host[:port][/db]`; a bad one throws `RESPClientError`
    ///     of kind `.invalidURL`.
    ///   - connections: how many connections to keep (at least 1).
    ///   - connectBackoff: after a failed connection attempt, commands fail at once for this long.
    public convenience init(
        url: String,
        connections: Int = 4,
        connectTimeout: Duration = .seconds(3),
        commandTimeout: Duration = .seconds(2),
        connectBackoff: Duration = .milliseconds(500),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "redis")
    ) throws(RESPClientError) {
        self.init(url: try RedisURL(parsing: url), connections: connections, connectTimeout: connectTimeout,
                  commandTimeout: commandTimeout, connectBackoff: connectBackoff, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    public init(
        url: RedisURL,
        connections: Int = 4,
        connectTimeout: Duration = .seconds(3),
        commandTimeout: Duration = .seconds(2),
        connectBackoff: Duration = .milliseconds(500),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "redis")
    ) {
        self.connectBackoff = TimeAmount(connectBackoff)
        self.url = url
        self.connectionCount = max(1, connections)
        self.group = eventLoopGroup
        self.connectTimeout = TimeAmount(connectTimeout)
        self.commandTimeout = TimeAmount(commandTimeout)
        self.parser = RESPParser()
        self.logger = logger
        self.state = Mutex(State(slots: Array(repeating: .empty, count: max(1, connections))))
    }

    /// Sends one command and returns its reply.
    ///
    /// Throws `RESPClientError` when Redis could not be reached or did not answer in time, and
    /// `RedisServerError` when Redis answered with an error reply.
    public func send(_ command: RESPCommand) async throws -> RESPValue {
        let value = try await sendAllowingErrorReply(command)
        if case .error(let message) = value { throw RedisServerError(message) }
        return value
    }

    public func send(_ name: String, _ arguments: RESPArgument...) async throws -> RESPValue {
        try await send(RESPCommand(name, arguments: arguments))
    }

    /// Runs a script by its SHA1, sending the source with EVAL only when Redis does not know it.
    public func evalSHA(_ script: RedisScript, keys: [String], arguments: [RESPArgument]) async throws -> RESPValue {
        let tail = [RESPArgument(keys.count)] + keys.map { RESPArgument($0) } + arguments
        do {
            return try await send(RESPCommand("EVALSHA", arguments: [RESPArgument(script.sha1)] + tail))
        } catch let error as RedisServerError where error.code == "NOSCRIPT" {
            return try await send(RESPCommand("EVAL", arguments: [RESPArgument(script.source)] + tail))
        }
    }

    /// How many connections are open now (for readiness checks and tests).
    public var openConnectionCount: Int {
        state.withLock { state in
            state.slots.reduce(0) { count, slot in
                if case .ready(let channel) = slot, channel.isActive { return count + 1 }
                return count
            }
        }
    }

    /// Closes every connection; later commands fail with `.poolClosed`.
    public func close() async {
        let slots = state.withLock { state in
            state.closed = true
            defer { state.slots = Array(repeating: .empty, count: state.slots.count) }
            return state.slots
        }
        for slot in slots {
            switch slot {
            case .empty:
                break
            case .ready(let channel):
                try? await channel.close()
            case .connecting(let future):
                if let channel = try? await future.get() { try? await channel.close() }
            }
        }
    }

    private func sendAllowingErrorReply(_ command: RESPCommand) async throws -> RESPValue {
        let slot = nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue % connectionCount
        var attempt = 0
        while true {
            let channel = try await channel(forSlot: slot)
            do {
                return try await Self.send(command, on: channel).get()
            } catch let error as RESPClientError where error.kind == .notSent && attempt == 0 {
                attempt += 1
                discard(channel, fromSlot: slot)
                logger.debug("Redis connection unusable, retrying on a new one", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Writes `command` and completes with its reply. A failed write fails the reply with
    /// `.notSent`; a write that succeeded leaves the reply to the channel handler.
    private static func send(_ command: RESPCommand, on channel: any Channel) -> EventLoopFuture<RESPValue> {
        let response = channel.eventLoop.makePromise(of: RESPValue.self)
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in
            // Failing an already-failed promise is a no-op in NIO, so the handler may have won.
            let clientError = error as? RESPClientError
            response.fail(clientError?.kind == .notSent ? clientError! : RESPClientError(.notSent, "write failed: \(error)"))
        }
        channel.writeAndFlush(RESPRequest(command: command, response: response), promise: written)
        return response.futureResult
    }

    /// The slot's open connection, opening one when there is none or the last one closed.
    private func channel(forSlot index: Int) async throws -> any Channel {
        enum Decision {
            case use(any Channel)
            case wait(EventLoopFuture<any Channel>)
            case open(EventLoopPromise<any Channel>)
            case closed
            case backingOff
        }
        let decision: Decision = state.withLock { state in
            if state.closed { return .closed }
            switch state.slots[index] {
            case .ready(let channel) where channel.isActive:
                return .use(channel)
            case .connecting(let future):
                return .wait(future)
            case .ready, .empty:
                if let failed = state.lastConnectFailure, NIODeadline.now() < failed + connectBackoff {
                    return .backingOff
                }
                let promise = group.next().makePromise(of: (any Channel).self)
                state.slots[index] = .connecting(promise.futureResult)
                return .open(promise)
            }
        }
        switch decision {
        case .closed:
            throw RESPClientError(.poolClosed, "the Redis connection pool is closed")
        case .backingOff:
            throw RESPClientError(.connectFailed, "Redis was unreachable moments ago; not retrying yet")
        case .use(let channel):
            return channel
        case .wait(let future):
            return try await future.get()
        case .open(let promise):
            let future = promise.futureResult
            future.whenComplete { [self] result in
                let orphan: (any Channel)? = state.withLock { state in
                    guard case .connecting(let current) = state.slots[index], current === future else {
                        return try? result.get()
                    }
                    switch result {
                    case .success(let channel):
                        if state.closed {
                            state.slots[index] = .empty
                            return channel
                        }
                        state.slots[index] = .ready(channel)
                        state.lastConnectFailure = nil
                    case .failure:
                        state.slots[index] = .empty
                        state.lastConnectFailure = .now()
                    }
                    return nil
                }
                orphan?.close(promise: nil)
            }
            promise.completeWith(openConnection())
            return try await future.get()
        }
    }

    private func discard(_ channel: any Channel, fromSlot index: Int) {
        state.withLock { state in
            if case .ready(let current) = state.slots[index], current === channel { state.slots[index] = .empty }
        }
        channel.close(promise: nil)
    }

    private static func setupCommands(for url: RedisURL) -> [RESPCommand] {
        var setup: [RESPCommand] = []
        if let password = url.password {
            setup.append(url.username.map { RESPCommand("AUTH", RESPArgument($0), RESPArgument(password)) }
                ?? RESPCommand("AUTH", RESPArgument(password)))
        }
        if url.database != 0 { setup.append(RESPCommand("SELECT", RESPArgument(url.database))) }
        return setup
    }

    /// Connects, then authenticates and selects the database before anyone else may use it.
    private func openConnection() -> EventLoopFuture<any Channel> {
        let commandTimeout = self.commandTimeout
        let parser = self.parser
        let url = self.url
        let connectTimeout = self.connectTimeout
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(RESPDecoder(parser: parser)),
                        RESPChannelHandler(commandTimeout: commandTimeout),
                    ])
                }
            }
        let connected = bootstrap.connect(host: url.host, port: url.port).flatMapErrorThrowing { error in
            throw RESPClientError(.connectFailed, "cannot connect to \(url.host):\(url.port) within \(connectTimeout.nanoseconds / 1_000_000) ms: \(error)")
        }
        let setup = Self.setupCommands(for: url)
        guard !setup.isEmpty else { return connected }
        return connected.flatMap { channel in
            let replies = setup.map { Self.send($0, on: channel) }
            return EventLoopFuture.whenAllComplete(replies, on: channel.eventLoop).flatMapThrowing { results in
                for (command, result) in zip(setup, results) {
                    let value: RESPValue
                    do { value = try result.get() } catch {
                        channel.close(promise: nil)
                        throw error
                    }
                    if case .error(let message) = value {
                        channel.close(promise: nil)
                        throw RESPClientError(.connectFailed, "\(command) failed: \(message)")
                    }
                }
                return channel
            }
        }
    }
}
