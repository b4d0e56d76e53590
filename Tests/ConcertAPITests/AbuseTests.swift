@testable import ConcertAPI
import ConcertDomain
import Foundation
import HTTPTypes
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A raw TCP connection to a live server, for what an HTTP client library will not do: dribble
/// bytes, send oversized heads, stall mid-body, and watch when the server hangs up.
final class RawConnection: Sendable {
    let channel: any Channel
    private let received: Collector

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        private let bytes = Mutex<[UInt8]>([])
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLock { $0.append(contentsOf: buffer.readableBytesView) }
        }
        var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
    }

    init(port: Int) async throws {
        let collector = Collector()
        received = collector
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    /// Sends `text`; false when the server has already closed the connection.
    @discardableResult
    func send(_ text: String) async -> Bool {
        guard channel.isActive else { return false }
        do {
            try await channel.writeAndFlush(channel.allocator.buffer(string: text))
            return true
        } catch {
            return false
        }
    }

    /// Everything the server sent so far.
    var text: String { received.text }

    /// Whether the server closed the connection within `limit` (never waits longer).
    func closedByServer(within limit: TimeAmount) async -> Bool {
        let outcome = channel.eventLoop.makePromise(of: Bool.self)
        channel.closeFuture.whenComplete { _ in outcome.succeed(true) }
        let timer = channel.eventLoop.scheduleTask(in: limit) { outcome.succeed(false) }
        let closed = (try? await outcome.futureResult.get()) ?? false
        timer.cancel()
        return closed
    }

    func close() async {
        try? await channel.close()
    }

    /// One whole request on a connection of its own (`Connection: close`); the raw response.
    static func exchange(port: Int, _ request: String) async throws -> String {
        let connection = try await RawConnection(port: port)
        await connection.send(request)
        _ = await connection.closedByServer(within: .seconds(10))
        await connection.close()
        return connection.text
    }
}

@Suite("Slow clients, oversized requests and forged headers")
struct AbuseTests {
    /// A server whose per-connection limits are short enough to watch them work.
    static func shortLimits(_ config: inout AppConfig) {
        config.connectionLimits.idleTimeoutSeconds = 1
        config.connectionLimits.requestTimeoutSeconds = 1
    }

    @Test func aRequestHeadDribbledByteByByteIsCutOffAtTheTimeoutWhileOthersAreServed() async throws {
        try await withAPI(live: true, configure: Self.shortLimits) { api in
            let port = try #require(api.port)
            let slow = try await RawConnection(port: port)
            #expect(await slow.send("GET /healthz HTTP/1.1\r\nHost: x\r\n"))
            // One byte every 100 ms: a read-idle timer alone would never fire.
            var sent = 0
            let started = ContinuousClock.now
            while await slow.send("X"), ContinuousClock.now - started < .seconds(10) {
                sent += 1
                #expect(try await api.call(.get, "/healthz").status == 200, "the server keeps serving others")
                try await Task.sleep(for: .milliseconds(100))
            }
            let elapsed = ContinuousClock.now - started
            #expect(await slow.closedByServer(within: .seconds(5)))
            #expect(sent >= 5, "bytes kept arriving until the server hung up")
            #expect(elapsed < .seconds(8), "cut off after about 1 s, not \(elapsed)")
            #expect(!slow.text.contains("200 OK"))
        }
    }

    @Test func aBodyThatStallsGets408AndChangesNothing() async throws {
        // Only the body timeout is short: the test client's own keep-alive connection must live.
        try await withAPI(live: true, configure: { $0.connectionLimits.requestTimeoutSeconds = 1 }) { api in
            let port = try #require(api.port)
            let jwt = try await api.token(user: 5)
            let slow = try await RawConnection(port: port)
            #expect(await slow.send("POST /v1/points/charges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(jwt)\r\n"
                + "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"amount\": "))
            #expect(await slow.closedByServer(within: .seconds(10)))
            #expect(slow.text.hasPrefix("HTTP/1.1 408"), "\(slow.text.prefix(80))")
            #expect(slow.text.contains("application/problem+json") && slow.text.contains(#""code":"MALFORMED_REQUEST""#))
            #expect(slow.text.lowercased().contains("request-id: "))
            #expect(try await api.call(.get, "/v1/points", user: 5).int("balance") == 0)
        }
    }

    @Test func oversizedHeadersAre431AndGarbageIs400AndTheServerKeepsServing() async throws {
        try await withAPI(live: true) { api in
            let port = try #require(api.port)
            let huge = try await RawConnection(port: port)
            await huge.send("GET /v1/concerts HTTP/1.1\r\nHost: x\r\nX-Padding: \(String(repeating: "a", count: 20_000))\r\n\r\n")
            #expect(await huge.closedByServer(within: .seconds(10)))
            #expect(huge.text.hasPrefix("HTTP/1.1 431"), "\(huge.text.prefix(80))")
            #expect(huge.text.contains(#""code":"MALFORMED_REQUEST""#) && huge.text.contains("application/problem+json"))

            // Many small headers add up the same way.
            let many = try await RawConnection(port: port)
            let headers = (0..<400).map { "X-H\($0): \(String(repeating: "b", count: 60))\r\n" }.joined()
            await many.send("GET /v1/concerts HTTP/1.1\r\nHost: x\r\n\(headers)\r\n")
            #expect(await many.closedByServer(within: .seconds(10)))
            #expect(many.text.hasPrefix("HTTP/1.1 431"), "\(many.text.prefix(80))")

            let garbage = try await RawConnection(port: port)
            await garbage.send("HELLO THERE\r\n\r\n")
            #expect(await garbage.closedByServer(within: .seconds(10)))
            #expect(garbage.text.hasPrefix("HTTP/1.1 400"), "\(garbage.text.prefix(80))")
            #expect(garbage.text.contains(#""code":"MALFORMED_REQUEST""#))

            #expect(try await api.call(.get, "/v1/concerts").status == 200)
        }
    }

    @Test func hundredsOfStalledConnectionsDoNotStopTheServerAndAreAllClosed() async throws {
        try await withAPI(live: true, configure: Self.shortLimits) { api in
            let port = try #require(api.port)
            var stalled: [RawConnection] = []
            for _ in 0..<300 {
                let connection = try await RawConnection(port: port)
                await connection.send("GET /v1/concerts HTTP/1.1\r\nHost: ")
                stalled.append(connection)
            }
            let served = try await RawConnection.exchange(port: port, "GET /v1/concerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(served.hasPrefix("HTTP/1.1 200"), "served while 300 connections stall")
            var open = 0
            for connection in stalled where !(await connection.closedByServer(within: .seconds(10))) { open += 1 }
            #expect(open == 0, "every stalled connection was closed by the server")
        }
    }

    static func limited(_ api: API, forwardedFor: String) async throws -> Bool {
        let reply = try await api.call(.get, "/v1/concerts", headers: [.xForwardedFor: forwardedFor])
        return reply.status == 429
    }

    @Test func behindATrustedProxyThePerAddressLimitCountsTheForwardedClient() async throws {
        try await withAPI(live: true, configure: {
            $0.rateLimitPerIP = 1
            $0.trustedProxies = try! TrustedProxies(parsing: "127.0.0.1, 10.0.0.0/8")
        }) { api in
            let limited1 = try await Self.limited(api, forwardedFor: "203.0.113.1")
            #expect(!limited1)
            let limited2 = try await Self.limited(api, forwardedFor: "203.0.113.1")
            #expect(limited2, "one bucket per forwarded client")
            let limited3 = try await Self.limited(api, forwardedFor: "203.0.113.2")
            #expect(!limited3, "another client has its own")
            // What the client wrote to the left of what our proxies added is not believed...
            let limited4 = try await Self.limited(api, forwardedFor: "198.51.100.7, 203.0.113.2")
            #expect(limited4)
            // ...and our own proxies on the right are skipped.
            let limited5 = try await Self.limited(api, forwardedFor: "203.0.113.2, 10.1.2.3")
            #expect(limited5)
        }
        try await withAPI(live: true, configure: { $0.rateLimitPerIP = 1 }) { api in
            let limited6 = try await Self.limited(api, forwardedFor: "203.0.113.1")
            #expect(!limited6)
            let limited7 = try await Self.limited(api, forwardedFor: "203.0.113.2")
            #expect(limited7, "without trusted proxies the header is ignored")
        }
    }

    @Test func trustedProxiesParseAddressesAndBlocksAndFindTheClient() throws {
        let proxies = try TrustedProxies(parsing: "127.0.0.1, 10.0.0.0/8 ,fd00::/8")
        #expect(proxies.trusts("10.200.3.4") && proxies.trusts("127.0.0.1") && proxies.trusts("fd12::1"))
        #expect(!proxies.trusts("11.0.0.1") && !proxies.trusts("127.0.0.2") && !proxies.trusts("fe80::1") && !proxies.trusts("nonsense"))
        #expect(proxies.clientAddress(peer: "10.0.0.1", forwardedFor: ["1.2.3.4:5555, 10.9.9.9"]) == "1.2.3.4")
        #expect(proxies.clientAddress(peer: "10.0.0.1", forwardedFor: ["[2001:db8::1]:80"]) == "2001:db8::1")
        #expect(proxies.clientAddress(peer: "10.0.0.1", forwardedFor: []) == "10.0.0.1")
        #expect(proxies.clientAddress(peer: "10.0.0.1", forwardedFor: ["garbage, 10.0.0.2"]) == "10.0.0.2",
                "an entry that is no address ends the walk at the last proxy")
        #expect(proxies.clientAddress(peer: "8.8.8.8", forwardedFor: ["1.2.3.4"]) == "8.8.8.8", "untrusted peers are themselves")
        #expect(TrustedProxies().clientAddress(peer: "10.0.0.1", forwardedFor: ["1.2.3.4"]) == "10.0.0.1")
        for bad in ["10.0.0.0/33", "localhost", "1.2.3.4/x", "::1/129"] {
            #expect(throws: ConfigError.self) { try TrustedProxies(parsing: bad) }
        }
        #expect(throws: ConfigError.self) { try AppConfig.fromEnvironment(["CONCERT_TRUSTED_PROXIES": "10.0.0.0/99"]) }
        #expect(throws: ConfigError.self) { try AppConfig.fromEnvironment(["CONCERT_HTTP_MAX_HEADER_BYTES": "10"]) }
        let config = try AppConfig.fromEnvironment(["CONCERT_HTTP_IDLE_TIMEOUT_SECONDS": "5", "CONCERT_HTTP_REQUEST_TIMEOUT_SECONDS": "7",
                                                    "CONCERT_HTTP_MAX_HEADER_BYTES": "4096"])
        #expect(config.connectionLimits.idleTimeoutSeconds == 5 && config.connectionLimits.requestTimeoutSeconds == 7
                && config.connectionLimits.maxHeaderBytes == 4096)
    }

    @Test func tokensWithAnotherAlgorithmAHugePayloadOrTooLongALifeAreRefused() async throws {
        try await withAPI(configure: { $0.maxTokenLifetimeSeconds = 3600 }) { api in
            let now = Int(Date().timeIntervalSince1970)
            func status(_ token: String) async throws -> Int {
                try await api.call(.get, "/v1/points", headers: [.authorization: "Bearer \(token)"]).status
            }
            let good = try await JWTTestSigner.sign(payload: #"{"sub":"5","exp":\#(now + 600)}"#, secret: testSecret)
            #expect(try await status(good) == 200)
            // Signed with the right key, but the header names another algorithm.
            for alg in ["HS512", "RS256", "none", "hs256"] {
                let token = try await JWTTestSigner.sign(payload: #"{"sub":"5","exp":\#(now + 600)}"#, secret: testSecret,
                                                 header: #"{"alg":"\#(alg)","typ":"JWT"}"#)
                #expect(try await status(token) == 401, "alg \(alg)")
            }
            // A correctly signed token that is simply huge.
            let padding = String(repeating: "x", count: 8_000)
            let huge = try await JWTTestSigner.sign(payload: #"{"sub":"5","exp":\#(now + 600),"pad":"\#(padding)"}"#, secret: testSecret)
            #expect(try await status(huge) == 401)
            // exp further away than CONCERT_JWT_MAX_LIFETIME_SECONDS.
            let farFuture = try await JWTTestSigner.sign(payload: #"{"sub":"5","exp":\#(now + 7200)}"#, secret: testSecret)
            #expect(try await status(farFuture) == 401)
            let wayFuture = try await JWTTestSigner.sign(payload: #"{"sub":"5","exp":99999999999999}"#, secret: testSecret)
            #expect(try await status(wayFuture) == 401)
        }
    }
}
