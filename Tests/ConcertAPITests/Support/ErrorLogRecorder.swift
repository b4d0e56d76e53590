import Logging
import Synchronization

/// Keeps every message logged at error level or above, to show that a client's mistake is
/// never logged as the server's.
final class ErrorLogRecorder: LogHandler, @unchecked Sendable {
    private let messages = Mutex<[String]>([])
    var logLevel: Logger.Level = .error
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= .error else { return }
        messages.withLock { $0.append("\(event.level): \(event.message) \(event.metadata ?? [:])") }
    }

    var recorded: [String] { messages.withLock { $0 } }
}
