import NIOCore
import Synchronization

/// Counts the round trips clients make to PostgreSQL, read off the wire by a `TCPProxy` in front
/// of the server: every extended-protocol exchange ends with one Sync message (`S`) and every
/// simple query is one Query message (`Q`), so their number is the number of times a client waited
/// for the server. It sees what any code sends, whichever helper sent it, so a statement added to
/// a write shows here.
public final class PostgresRoundTrips: Sendable {
    private final class Count: Sendable {
        let value = Mutex(0)
    }
    private let count = Count()
    public let proxy: TCPProxy

    public init(targetHost: String = "127.0.0.1", targetPort: Int) throws {
        let count = self.count
        proxy = try TCPProxy(targetHost: targetHost, targetPort: targetPort) {
            let parser = FrontendMessageParser()
            return { bytes in
                let trips = parser.feed(bytes)
                if trips > 0 { count.value.withLock { $0 += trips } }
            }
        }
    }

    /// Round trips since the last `reset`.
    public var value: Int { count.value.withLock { $0 } }

    public func reset() { count.value.withLock { $0 = 0 } }

    public func close() { proxy.close() }
}

/// Splits one connection's client-to-server bytes into frontend messages: first the startup
/// message (no type byte: length, then the body), then type byte, length, body.
private final class FrontendMessageParser: Sendable {
    private struct State {
        var buffer: [UInt8] = []
        var startedUp = false
    }
    private let state = Mutex(State())
    private static let sslRequestCode: UInt32 = 80_877_103

    /// Feeds bytes; answers how many Sync and Query messages they completed.
    func feed(_ bytes: ByteBuffer) -> Int {
        state.withLock { state in
            state.buffer.append(contentsOf: bytes.readableBytesView)
            var trips = 0
            while true {
                let header = state.startedUp ? 5 : 4
                guard state.buffer.count >= header else { break }
                let offset = state.startedUp ? 1 : 0
                let length = state.buffer[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
                let total = offset + length
                guard length >= 4, state.buffer.count >= total else { break }
                if state.startedUp {
                    if state.buffer[0] == UInt8(ascii: "S") || state.buffer[0] == UInt8(ascii: "Q") { trips += 1 }
                } else {
                    // An SSLRequest comes before the real startup message.
                    let code = state.buffer.count >= 8 ? state.buffer[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } : 0
                    if code != Self.sslRequestCode { state.startedUp = true }
                }
                state.buffer.removeFirst(total)
            }
            return trips
        }
    }
}
