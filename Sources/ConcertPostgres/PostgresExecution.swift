import ConcertStore
import Logging
import PostgresNIO
import Synchronization

/// How the store talks to the pool: every operation waits a bounded time for a connection, runs
/// in a transaction when it writes, is retried when PostgreSQL asks for it, and reports a database
/// it cannot reach as `StoreUnavailable`.
extension PostgresConcertStore {
    /// Runs `body` on a pooled connection, failing with `StoreUnavailable` when no connection can
    /// be had in time.
    ///
    /// PostgresClient queues a lease while it cannot connect (it keeps retrying in the background),
    /// so without a limit a request would wait for as long as the database is down. After
    /// `options.connectionWaitLimit` the wait ends, unless some other operation got a connection
    /// within that time: then the database is up and merely busy, and the wait goes on up to
    /// `options.busyWaitLimit`. The limits cover only the wait for a connection: once `body` has
    /// started it runs to the end, so a write is never reported as failed after it may have
    /// committed.
    func withConnection<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        do {
            return try await leaseWithinLimit(body)
        } catch {
            throw Self.translated(error)
        }
    }

    /// Runs `body` inside BEGIN … COMMIT on one connection (READ COMMITTED, PostgreSQL's default).
    ///
    /// An error thrown by `body` (a `DomainError` above all) rolls the transaction back and comes
    /// out unchanged. A serialization failure or a deadlock, which PostgreSQL resolves by aborting
    /// one party, is retried from the start up to `options.transactionAttempts` times in all.
    func transaction<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        let logger = self.logger
        var attempt = 1
        while true {
            do {
                return try await withConnection { connection in
                    try await connection.query("BEGIN", logger: logger)
                    do {
                        let result = try await body(connection)
                        try await connection.query("COMMIT", logger: logger)
                        return result
                    } catch {
                        // If this fails too the connection is broken and the pool drops it.
                        _ = try? await connection.query("ROLLBACK", logger: logger)
                        throw error
                    }
                }
            } catch let error as PSQLError where Self.isRetryable(error) {
                guard attempt < options.transactionAttempts else {
                    throw StoreUnavailable("PostgreSQL aborted the transaction \(attempt) times (SQLSTATE \(error.serverInfo?[.sqlState] ?? ""))")
                }
                logger.debug("retrying a transaction PostgreSQL aborted", metadata: [
                    "sqlState": "\(error.serverInfo?[.sqlState] ?? "")", "attempt": "\(attempt)",
                ])
                attempt += 1
            }
        }
    }

    private func leaseWithinLimit<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        let client = self.client
        let health = self.health
        let limit = options.connectionWaitLimit, busyLimit = options.busyWaitLimit
        let race = LeaseRace()
        return try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask {
                do {
                    return try await client.withConnection { connection in
                        // Lost to the timer: the caller has been told the store is unavailable,
                        // so this operation must not run at all.
                        guard race.start() else { throw CancellationError() }
                        health.connectionLeased()
                        return try await body(connection)
                    }
                } catch {
                    // Whatever failed before `body` started failed to get a connection (the
                    // pool shut down, its connect circuit breaker tripped, ...).
                    if race.giveUp() { throw StoreUnavailable("no PostgreSQL connection: \(error)") }
                    throw error
                }
            }
            group.addTask {
                let clock = ContinuousClock()
                let started = clock.now
                try await Task.sleep(for: limit)
                // Others still get connections: the database is busy, not gone; keep waiting.
                while !race.hasStarted && health.leasedSince(clock.now - limit) && clock.now - started < busyLimit {
                    try await Task.sleep(for: .milliseconds(50))
                }
                guard race.giveUp() else { return nil } // `body` is running: wait for it.
                throw StoreUnavailable("no PostgreSQL connection within \(clock.now - started)")
            }
            while let next = try await group.next() {
                if let result = next {
                    group.cancelAll()
                    return result
                }
            }
            // Unreachable: the operation's task either returns a value or throws.
            throw StoreUnavailable("PostgreSQL operation ended without a result")
        }
    }

    static func isRetryable(_ error: PSQLError) -> Bool {
        guard error.code == .server, let state = error.serverInfo?[.sqlState] else { return false }
        return state == PostgresError.Code.serializationFailure.raw || state == PostgresError.Code.deadlockDetected.raw
    }

    /// Connection-level failures become `StoreUnavailable` (the HTTP layer answers 503); every
    /// other error, SQL errors and `DomainError` included, is passed on as it is.
    static func translated(_ error: any Error) -> any Error {
        switch error {
        case let error as PSQLError:
            switch error.code {
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
                 .sslUnsupported, .failedToAddSSLHandler:
                return StoreUnavailable("PostgreSQL connection failed: \(error.code)")
            case .server:
                let state = error.serverInfo?[.sqlState] ?? ""
                // 08: connection exception; 57P01-03: the server is shutting down or starting;
                // 53300: too many connections; 53100/53200: out of disk or memory; 57014: statement
                // timeout; 55P03: lock timeout. (40001 and 40P01 stay as they are here: the
                // transaction retries them, and answers 503 once its attempts are used up.)
                if state.hasPrefix("08") || ["57P01", "57P02", "57P03", "53300", "53100", "53200", "57014", "55P03"].contains(state) {
                    return StoreUnavailable("PostgreSQL is not accepting work (SQLSTATE \(state))")
                }
                return error
            default:
                return error
            }
        default:
            return error
        }
    }
}

/// Decides, exactly once, whether an operation got its connection before the wait limit ran out.
private final class LeaseRace: Sendable {
    private enum State { case waiting, started, gaveUp }
    private let state = Mutex(State.waiting)

    var hasStarted: Bool { state.withLock { $0 == .started } }

    /// The operation has its connection: true when it may run.
    func start() -> Bool {
        state.withLock { state in
            guard state == .waiting else { return false }
            state = .started
            return true
        }
    }

    /// The wait limit ran out, or the lease failed: true when the operation had not started and
    /// never will.
    func giveUp() -> Bool {
        state.withLock { state in
            guard state == .waiting else { return false }
            state = .gaveUp
            return true
        }
    }
}

/// When an operation of this store last got a connection: the sign that the database is up.
final class ConnectionHealth: Sendable {
    private let lastLease = Mutex<ContinuousClock.Instant?>(nil)

    func connectionLeased() {
        lastLease.withLock { $0 = ContinuousClock.now }
    }

    func leasedSince(_ instant: ContinuousClock.Instant) -> Bool {
        lastLease.withLock { last in last.map { $0 >= instant } ?? false }
    }
}
