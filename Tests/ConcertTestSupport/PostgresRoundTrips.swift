import ConcertPostgres
import Logging
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

/// The throwaway PostgreSQL server is not configured (`scripts/test` sets it).
public struct PostgresNotConfigured: Error, CustomStringConvertible {
    public var description: String { "CONCERT_TEST_POSTGRES_URL is not set" }
}

/// Runs `body` on a store of a fresh, migrated database that it reaches through a round-trip
/// counter; the database is dropped afterwards, whatever `body` did.
public func withRoundTripCountedStore(options: PostgresStoreOptions = PostgresStoreOptions(),
                                      logger: Logger = TestServices.quietLogger,
                                      _ body: (PostgresConcertStore, PostgresRoundTrips) async throws -> Void) async throws {
    guard let adminURL = TestServices.postgresURL else { throw PostgresNotConfigured() }
    let database = try await TestDatabase.create(adminURL: adminURL)
    let trips: PostgresRoundTrips
    do {
        trips = try PostgresRoundTrips(targetHost: database.admin.host, targetPort: database.admin.port)
    } catch {
        try? await database.drop()
        throw error
    }
    var proxied = database
    proxied.admin.port = trips.proxy.port
    let run: Task<Void, Never>
    do {
        let store = try PostgresConcertStore(url: proxied.url, logger: logger, options: options)
        run = Task { await store.run() }
        do {
            try await store.migrate()
            try await body(store, trips)
        } catch {
            run.cancel()
            throw error
        }
    } catch {
        trips.close()
        try? await database.drop()
        throw error
    }
    run.cancel()
    trips.close()
    try? await database.drop()
}
