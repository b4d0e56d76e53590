import Synchronization

/// Calls that arrive together in one instance go to PostgreSQL (or Redis) as one call, each caller
/// getting its own answer: holds (one call of `concertd_hold` for many), payments
/// (`concertd_pay_many`), queue polls, which touch their token (`concertd_queue_poll_many`), and
/// the response cache's generation reads (`GenerationCheckedCache`).
///
/// Written here rather than taken from a library: what it needs (one outcome per caller, a batch
/// that no caller's cancellation cancels, the retry of each item alone after a failed batch) is a
/// hundred lines, and no package on the mirror offers it.
///
/// On a durable database a write's cost is mostly its commit (a WAL flush); a batch shares one
/// commit among all its holds. Batching adds no wait of its own: at most `concurrency` calls run at
/// once, a hold that finds a free slot goes at once (alone, when the service is quiet), and holds
/// that arrive while every slot is busy queue up and leave together, up to `maxBatch` at a time,
/// as soon as a slot frees. So a batch is never longer than one call's time in the making.
///
/// One caller's refusal never fails the others: refusals are per-item outcomes of the function.
/// Should the call as a whole fail for a reason other than the database being unreachable (a
/// statement error that one item's data could cause), each item of the batch is tried alone, so
/// the error reaches only the caller it belongs to.
public final class WriteBatcher<Item: Sendable, Outcome: Sendable>: Sendable {
    public typealias Run = @Sendable ([Item]) async throws -> [Outcome]

    private struct Waiter {
        var item: Item
        var continuation: CheckedContinuation<Outcome, any Error>
    }

    private struct State {
        var queue: [Waiter] = []
        var running = 0

        mutating func take(_ count: Int) -> [Waiter] {
            let taken = Array(queue.prefix(count))
            queue.removeFirst(taken.count)
            return taken
        }
    }

    private let state = Mutex(State())
    private let maxBatch: Int
    private let concurrency: Int
    private let isInfrastructureFailure: @Sendable (any Error) -> Bool

    /// `isInfrastructureFailure` tells errors that every item would meet alike (the database is
    /// unreachable) from those worth retrying item by item.
    public init(maxBatch: Int, concurrency: Int, isInfrastructureFailure: @escaping @Sendable (any Error) -> Bool) {
        self.maxBatch = max(1, maxBatch)
        self.concurrency = max(1, concurrency)
        self.isInfrastructureFailure = isInfrastructureFailure
    }

    /// `run` gets the items of one batch and answers one outcome per item, in order. Every caller
    /// passes the same function (it is a parameter only because the owner cannot hand itself to
    /// the batcher it creates); a batch runs with the `run` of whoever started its slot.
    public func submit(_ item: Item, run: @escaping Run) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            let batch: [Waiter]? = state.withLock { state in
                state.queue.append(Waiter(item: item, continuation: continuation))
                guard state.running < concurrency else { return nil }
                state.running += 1
                return state.take(maxBatch)
            }
            // Unstructured on purpose: the batch belongs to all its callers, so no one caller's
            // cancellation may cancel it.
            if let batch { Task { await self.drain(startingWith: batch, run: run) } }
        }
    }

    /// Runs batches until the queue is empty, then gives the slot back.
    private func drain(startingWith first: [Waiter], run: Run) async {
        var batch = first
        while true {
            await execute(batch, run: run)
            let next: [Waiter]? = state.withLock { state in
                if state.queue.isEmpty {
                    state.running -= 1
                    return nil
                }
                return state.take(maxBatch)
            }
            guard let next else { return }
            batch = next
        }
    }

    private func execute(_ batch: [Waiter], run: Run) async {
        do {
            // A closure, not the key path `\.item`: a key path of a generic type is built at run time.
            let outcomes = try await run(batch.map { $0.item })
            guard outcomes.count == batch.count else {
                throw BatchMismatch(expected: batch.count, got: outcomes.count)
            }
            for (waiter, outcome) in zip(batch, outcomes) { waiter.continuation.resume(returning: outcome) }
        } catch {
            guard batch.count > 1, !isInfrastructureFailure(error) else {
                for waiter in batch { waiter.continuation.resume(throwing: error) }
                return
            }
            for waiter in batch {
                do {
                    let outcomes = try await run([waiter.item])
                    guard let outcome = outcomes.first, outcomes.count == 1 else { throw BatchMismatch(expected: 1, got: outcomes.count) }
                    waiter.continuation.resume(returning: outcome)
                } catch {
                    waiter.continuation.resume(throwing: error)
                }
            }
        }
    }
}

/// The batch call answered a different number of rows than it was given items (a bug).
public struct BatchMismatch: Error, CustomStringConvertible {
    public var expected: Int
    public var got: Int
    public init(expected: Int, got: Int) {
        self.expected = expected
        self.got = got
    }
    public var description: String { "a batch of \(expected) items was answered with \(got) outcomes" }
}
