import Synchronization

/// A result that is set once and awaited by one waiter, who can be answered before the work that
/// produces it has finished (or ever finishes). Task groups cannot do that: they wait for every
/// child, so a child stuck in a library's lost continuation would hold its caller forever.
public final class OneShot<R: Sendable>: Sendable {
    private struct State {
        var result: Result<R, any Error>?
        var waiter: CheckedContinuation<R, any Error>?
    }
    private let state = Mutex(State())

    public init() {}

    /// Sets the result; later calls are ignored.
    public func finish(_ result: Result<R, any Error>) {
        let waiter: CheckedContinuation<R, any Error>? = state.withLock { state in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    /// The result, as soon as it is set (at once if it already is). One waiter only.
    public func value() async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<R, any Error>? = state.withLock { state in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Runs `operation` and answers within `seconds`: its result, or `DeadlineExceeded` (and the
/// operation is cancelled and left to finish on its own).
public func withDeadline<T: Sendable>(seconds: Double, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let answer = OneShot<T>()
    let work = Task {
        do { answer.finish(.success(try await operation())) } catch { answer.finish(.failure(error)) }
    }
    let timer = Task {
        try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
        answer.finish(.failure(DeadlineExceeded()))
        work.cancel()
    }
    defer { timer.cancel() }
    return try await withTaskCancellationHandler {
        try await answer.value()
    } onCancel: {
        work.cancel()
    }
}

/// `withDeadline` ran out.
public struct DeadlineExceeded: Error {}
