import ConcertDomain
import Synchronization

/// A clock that only moves when a test moves it.
final class ManualClock: Sendable {
    private let current: Mutex<Timestamp>
    init(_ start: Timestamp = WallClock.system.now()) { current = Mutex(start) }
    var clock: WallClock { WallClock { self.now } }
    var now: Timestamp { current.withLock { $0 } }
    func advance(seconds: Int64) { current.withLock { $0 = $0.adding(seconds: seconds) } }
    func advance(milliseconds: Int64) { current.withLock { $0 = $0.adding(milliseconds: milliseconds) } }
}
