import ConcertPostgres
import Logging
import NIOCore
import Synchronization

/// Counts the round trips clients make to PostgreSQL, read off the wire by a `TCPProxy` in front
/// of the server: every extended-protocol exchange ends with one Sync message (`S`) and every
/// simple query is one Query message (`Q`), so their number is the number of times a client waited
/// for the server. It sees what any code sends, whichever helper sent it, so a statement added to
/// a write shows here.
///
/// An exchange that only prepares a statement (Parse and Describe, no Bind: PostgresNIO does that
/// once per connection, the first time a prepared statement runs there) is counted apart, in
/// `preparations`: it is paid once per connection, not per call. A round trip that parses its
/// statement as it runs it (Parse and Bind in one exchange: a plain query, which PostgreSQL parses
/// and plans on every call) is also counted in `unprepared`.
public final class PostgresRoundTrips: Sendable {
    private final class Count: Sendable {
        let value = Mutex(Exchanges())
    }
    private let count = Count()
    public let proxy: TCPProxy

    public init(targetHost: String = "127.0.0.1", targetPort: Int) throws {
        let count = self.count
        proxy = try TCPProxy(targetHost: targetHost, targetPort: targetPort) {
            let parser = FrontendMessageParser()
            return { bytes in
                let seen = parser.feed(bytes)
                if seen.trips + seen.preparations > 0 { count.value.withLock { $0.add(seen) } }
            }
        }
    }

    /// Round trips since the last `reset`, preparations apart.
    public var value: Int { count.value.withLock { $0.trips } }

    /// Round trips since the last `reset` whose statement was parsed in them (not prepared).
    public var unprepared: Int { count.value.withLock { $0.unprepared } }

    /// Exchanges that only prepared a statement since the last `reset`.
    public var preparations: Int { count.value.withLock { $0.preparations } }

    public func reset() { count.value.withLock { $0 = Exchanges() } }

    public func close() { proxy.close() }
}

/// Splits one connection's client-to-server bytes into frontend messages: first the startup
/// message (no type byte: length, then the body), then type byte, length, body.
private final class FrontendMessageParser: Sendable {
    private struct State {
        var buffer: [UInt8] = []
        var startedUp = false
        /// The exchange under way has bound a statement (it executes something).
        var bound = false
        /// The exchange under way has parsed a statement.
        var parsed = false
    }
    private let state = Mutex(State())
    private static let sslRequestCode: UInt32 = 80_877_103

    /// Feeds bytes; answers the exchanges they completed: round trips (a Sync after a Bind, a
    /// Query), those of them that parsed too, and preparations (a Sync with no Bind since the last).
    func feed(_ bytes: ByteBuffer) -> Exchanges {
        state.withLock { state in
            state.buffer.append(contentsOf: bytes.readableBytesView)
            var seen = Exchanges()
            while true {
                let header = state.startedUp ? 5 : 4
                guard state.buffer.count >= header else { break }
                let offset = state.startedUp ? 1 : 0
                let length = state.buffer[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
                let total = offset + length
                guard length >= 4, state.buffer.count >= total else { break }
                if state.startedUp {
                    switch state.buffer[0] {
                    case UInt8(ascii: "P"):
                        state.parsed = true
                    case UInt8(ascii: "B"):
                        state.bound = true
                    case UInt8(ascii: "S"):
                        if state.bound {
                            seen.trips += 1
                            if state.parsed { seen.unprepared += 1 }
                        } else {
                            seen.preparations += 1
                        }
                        state.bound = false
                        state.parsed = false
                    case UInt8(ascii: "Q"):
                        seen.trips += 1
                        seen.unprepared += 1
                    default:
                        break
                    }
                } else {
                    // An SSLRequest comes before the real startup message.
                    let code = state.buffer.count >= 8 ? state.buffer[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } : 0
                    if code != Self.sslRequestCode { state.startedUp = true }
                }
                state.buffer.removeFirst(total)
            }
            return seen
        }
    }
}

/// Exchanges counted on the wire (see `PostgresRoundTrips`).
struct Exchanges: Sendable {
    var trips = 0
    var unprepared = 0
    var preparations = 0

    mutating func add(_ other: Exchanges) {
        trips += other.trips
        unprepared += other.unprepared
        preparations += other.preparations
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
