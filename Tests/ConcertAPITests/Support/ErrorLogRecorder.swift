import Logging
import Synchronization

/// Keeps every message logged at error level or above, to show that a client's mistake is
/// never logged as the server's.
/// One instance is shared by every copy of the logger, and loggers are copied and given metadata
/// on many threads at once (PostgresNIO sets some on each new connection, and the sweeper opens
/// connections while requests do), so the metadata is behind a lock too.
final class ErrorLogRecorder: LogHandler, @unchecked Sendable {
    private let messages = Mutex<[String]>([])
    private let storedMetadata = Mutex<Logger.Metadata>([:])
    var logLevel: Logger.Level = .error
    var metadata: Logger.Metadata {
        get { storedMetadata.withLock { $0 } }
        set { storedMetadata.withLock { $0 = newValue } }
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { storedMetadata.withLock { $0[key] } }
        set { storedMetadata.withLock { $0[key] = newValue } }
    }

    func log(event: LogEvent) {
        guard event.level >= .error else { return }
        messages.withLock { $0.append("\(event.level): \(event.message) \(event.metadata ?? [:])") }
    }

    var recorded: [String] { messages.withLock { $0 } }
}
