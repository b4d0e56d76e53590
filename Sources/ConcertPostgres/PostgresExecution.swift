import ConcertDomain
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
        return try await retryingAborts {
            try await self.withConnection { connection in
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
        }
    }

    /// Runs one statement that is a transaction of its own (a call of one of the
    /// `PostgresWriteFunctions`): one round trip, retried like `transaction` when PostgreSQL aborts it.
    func autocommit<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        try await retryingAborts { try await self.withConnection(body) }
    }

    /// Runs `attempt` again while PostgreSQL aborts it with a serialization failure or a deadlock,
    /// up to `options.transactionAttempts` times in all; then the store is unavailable (503).
    private func retryingAborts<R: Sendable>(_ attempt: () async throws -> R) async throws -> R {
        var tries = 1
        while true {
            do {
                return try await attempt()
            } catch let error as PSQLError where Self.isRetryable(error) {
                guard tries < options.transactionAttempts else {
                    throw StoreUnavailable("PostgreSQL aborted the transaction \(tries) times (SQLSTATE \(error.serverInfo?[.sqlState] ?? ""))")
                }
                logger.debug("retrying a transaction PostgreSQL aborted", metadata: [
                    "sqlState": "\(error.serverInfo?[.sqlState] ?? "")", "attempt": "\(tries)",
                ])
                tries += 1
            }
        }
    }

    /// A workaround for two PostgresNIO 1.33.2 problems: two tasks per operation and the store's
    /// `OperationWatchdog`, because two waits here must be abandonable, and a task group would
    /// wait for its children instead.
    /// - The lease: PostgresNIO can miss a cancellation that arrives just as a lease is queued (it
    ///   checks `Task.isCancelled`, then queues; a cancel in between finds nothing).
    /// - The body: PostgresNIO can lose a query written while its connection closes; the query's
    ///   continuation is then never resumed. A body that hangs holds its lease, and the pool's
    ///   `run()` waits for every lease at shutdown, so without this the process could not stop.
    /// The watchdog gives the caller its answer within the limits and, when the body is lost or
    /// runs past `operationLimit`, closes the connection (PostgreSQL rolls back whatever was not
    /// committed) and hands the lease back; the lost task is left suspended.
    ///
    /// When it can go: once a PostgresNIO release resumes (with an error) every query whose
    /// connection closes under it, and honours a cancellation that races the queueing of a lease,
    /// and a loop of `OutageTests` (which cuts connections under running queries) shows no lost
    /// query. Then the body can run inside `client.withConnection` itself, and the check for a
    /// body lost on a closed connection, the stale-connection retry and the separate tasks go. The
    /// bounded wait for a connection stays (it is how a database that is down answers 503 within
    /// seconds), as a plain timeout.
    private func leaseWithinLimit<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        let client = self.client
        let health = self.health
        let race = LeaseRace()
        let answer = OneShot<R>()
        // Finished when the connection may go back to the pool: the body ended, or was abandoned.
        let held = OneShot<Bool>()
        let operation = Task {
            // A connection can come back from the pool already closed (its close not yet seen by
            // the pool, e.g. one the watchdog just closed); a query on it may be lost, so it goes
            // back unused and another is leased.
            for staleLeases in 0... {
                do {
                    _ = try await client.withConnection { connection in
                        if connection.isClosed && staleLeases < 3 { throw StaleConnection() }
                        // Lost to the timer: the caller has been told the store is unavailable,
                        // so this operation must not run at all.
                        guard race.start(on: connection) else { throw CancellationError() }
                        health.connectionLeased()
                        Task {
                            do { answer.finish(.success(try await body(connection))) } catch { answer.finish(.failure(error)) }
                            // Unless the watchdog took it over: then it hands the lease back itself,
                            // once the connection is closed.
                            if race.finish() { held.finish(.success(true)) }
                        }
                        return try await held.value()
                    }
                    return
                } catch is StaleConnection {
                    continue
                } catch {
                    // Whatever failed before `body` started failed to get a connection (the pool
                    // shut down, its connect circuit breaker tripped, the lease was cancelled, ...).
                    if race.giveUp() {
                        answer.finish(.failure(StoreUnavailable("no PostgreSQL connection: \(error)")))
                    } else {
                        answer.finish(.failure(error))
                    }
                    return
                }
            }
        }
        let watched = watchdog.watch(OperationWatchdog.Watched(
            started: .now, race: race, fail: { answer.finish(.failure($0)) }, handBack: { held.finish(.success(false)) },
            cancelWait: { operation.cancel() }))
        defer { watchdog.forget(watched) }
        return try await withTaskCancellationHandler {
            try await answer.value()
        } onCancel: {
            operation.cancel()
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
                // An idempotent write whose claim was taken over rolled itself back.
                if state == PostgresWriteFunctions.idempotencyClaimLost { return DomainError.idempotencyKeyInUse }
                return error
            default:
                return error
            }
        default:
            return error
        }
    }
}

extension PostgresConnection {
    /// Every row of one prepared statement, decoded by the statement.
    func rows<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger) async throws -> [Statement.Row] {
        var rows: [Statement.Row] = []
        for try await row in try await execute(statement, logger: logger) { rows.append(row) }
        return rows
    }
}

/// A leased connection that had already closed.
private struct StaleConnection: Error {}

/// Decides, exactly once, whether an operation got its connection before the wait limit ran out,
/// and then whether its body or the watchdog ended it.
final class LeaseRace: Sendable {
    private enum State { case waiting, started(PostgresConnection), gaveUp, finished, abandoned }
    private let state = Mutex(State.waiting)

    /// The connection the operation runs on, once it has started.
    var startedConnection: PostgresConnection? {
        state.withLock { state in
            if case .started(let connection) = state { return connection }
            return nil
        }
    }

    /// The operation has its connection: true when it may run.
    func start(on connection: PostgresConnection) -> Bool { move(from: .waiting, to: .started(connection)) }

    /// The body ended by itself: true unless the watchdog has abandoned it (then the watchdog
    /// hands the connection back).
    func finish() -> Bool { move(from: .running, to: .finished) }

    /// The watchdog gives up on a running body: true unless it has just finished by itself.
    func abandon() -> Bool { move(from: .running, to: .abandoned) }

    /// The wait limit ran out, or the lease failed: true when the operation had not started and
    /// never will.
    func giveUp() -> Bool { move(from: .waiting, to: .gaveUp) }

    private enum Phase { case waiting, running }

    /// Moves to `next` only from `phase`; true when it moved. Each decision is taken once.
    private func move(from phase: Phase, to next: State) -> Bool {
        state.withLock { state in
            switch (phase, state) {
            case (.waiting, .waiting), (.running, .started):
                state = next
                return true
            default:
                return false
            }
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
