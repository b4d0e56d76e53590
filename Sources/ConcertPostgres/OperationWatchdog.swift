import ConcertStore
import PostgresNIO
import Synchronization

/// The watchdog of `leaseWithinLimit`, one for all of a store's operations: every 250 ms it gives
/// up on waits for a connection that ran past their limit, and abandons bodies whose connection
/// closed under them or that ran past `operationLimit` (see `leaseWithinLimit` for why).
///
/// One ticking task for the store instead of one sleeping task per operation: each of those
/// sleeps was a timer registered with, and cancelled from, Dispatch's timer thread (about 8 %
/// of concertd's perf samples when polls came in small batches, 8 connections; taking it away
/// saved about 10 % of concertd's CPU per poll). The ticker runs only while some operation is
/// in flight.
final class OperationWatchdog: Sendable {
    /// One operation in flight: its race, and how to end it from outside.
    struct Watched: Sendable {
        var started: ContinuousClock.Instant
        var race: LeaseRace
        /// Answers the caller with this error.
        var fail: @Sendable (any Error) -> Void
        /// Gives the lease back (after the connection has been closed).
        var handBack: @Sendable () -> Void
        /// Cancels the wait for a connection.
        var cancelWait: @Sendable () -> Void
    }

    private struct State {
        var watched: [UInt64: Watched] = [:]
        var nextId: UInt64 = 0
        var ticking = false
    }

    private let state = Mutex(State())
    private let health: ConnectionHealth
    private let waitLimit: Duration, busyLimit: Duration, operationLimit: Duration
    static let tick = Duration.milliseconds(250)

    init(health: ConnectionHealth, waitLimit: Duration, busyLimit: Duration, operationLimit: Duration) {
        self.health = health
        self.waitLimit = waitLimit
        self.busyLimit = busyLimit
        self.operationLimit = operationLimit
    }

    /// Watches an operation from now until `forget`.
    func watch(_ operation: Watched) -> UInt64 {
        let (id, startTicker) = state.withLock { state in
            let id = state.nextId
            state.nextId += 1
            state.watched[id] = operation
            defer { state.ticking = true }
            return (id, !state.ticking)
        }
        if startTicker { Task { await self.run() } }
        return id
    }

    func forget(_ id: UInt64) {
        _ = state.withLock { $0.watched.removeValue(forKey: id) }
    }

    private func run() async {
        // Bodies seen on a closed connection at the last tick: a closed connection gets one tick
        // for its error to arrive before the body counts as lost.
        var closedSeen: Set<UInt64> = []
        while true {
            try? await Task.sleep(for: Self.tick)
            let watched: [(UInt64, Watched)]? = state.withLock { state in
                guard !state.watched.isEmpty else {
                    state.ticking = false
                    return nil
                }
                return Array(state.watched)
            }
            guard let watched else { return }
            closedSeen.formIntersection(watched.map(\.0))
            let now = ContinuousClock.now
            for (id, operation) in watched { check(id, operation, now: now, closedSeen: &closedSeen) }
        }
    }

    private func check(_ id: UInt64, _ operation: Watched, now: ContinuousClock.Instant, closedSeen: inout Set<UInt64>) {
        let elapsed = now - operation.started
        if let connection = operation.race.startedConnection {
            // The body runs.
            let closed = connection.isClosed
            let lost = closed && closedSeen.contains(id)
            if closed { closedSeen.insert(id) } else { closedSeen.remove(id) }
            guard lost || elapsed > operationLimit else { return }
            forget(id)
            guard operation.race.abandon() else { return } // The body has just finished.
            operation.fail(StoreUnavailable(lost
                ? "the PostgreSQL connection closed under a running operation"
                : "no answer from PostgreSQL within \(operationLimit); connection closed"))
            // Handed back once closed, so that the pool does not lease it out again. (A statement
            // still running on a live connection delays the close until it ends, at most
            // `statement_timeout`; the caller has its answer already.)
            let handBack = operation.handBack
            connection.close().whenComplete { _ in handBack() }
            return
        }
        guard elapsed >= waitLimit else { return }
        // Others still get connections: the database is busy, not gone; keep waiting.
        if health.leasedSince(now - waitLimit) && elapsed < busyLimit { return }
        guard operation.race.giveUp() else { return } // It has just started: watch it instead.
        forget(id)
        // The answer first: cancelling fails the lease at once, and its error must not win.
        operation.fail(StoreUnavailable("no PostgreSQL connection within \(elapsed)"))
        operation.cancelWait()
    }
}
