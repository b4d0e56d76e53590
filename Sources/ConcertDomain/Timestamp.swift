/// A point in time with millisecond precision, counted from the Unix epoch.
///
/// Stored as a plain integer so that both database engines keep it exactly and compare it
/// with ordinary integer comparisons (no time-zone or text-format surprises in SQL).
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }
    public init(seconds: Int64) { self.milliseconds = seconds * 1000 }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public func adding(milliseconds delta: Int64) -> Timestamp { Timestamp(milliseconds: milliseconds + delta) }
    public func adding(seconds delta: Int64) -> Timestamp { adding(milliseconds: delta * 1000) }

    public var description: String { RFC3339.format(self) }
}

/// The source of "now". Every rule that depends on time takes a `Timestamp` argument; the
/// running service reads it from one `WallClock` that tests replace with a manual one.
public struct WallClock: Sendable {
    private let read: @Sendable () -> Timestamp
    public init(_ read: @escaping @Sendable () -> Timestamp) { self.read = read }
    public func now() -> Timestamp { read() }

    /// The system's real-time clock.
    public static let system = WallClock {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(milliseconds: Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
