import ConcertDomain
import SharedState
import Synchronization

/// The in-process cache: entries live until their time is up or their namespace is dropped.
public final class InProcessResponseCache: ResponseCache {
    private struct Entry {
        var value: [UInt8]
        var expiresAt: Timestamp
    }
    private let namespaces = Mutex<[String: [String: Entry]]>([:])
    private let maxEntriesPerNamespace: Int

    public init(maxEntriesPerNamespace: Int = 1024) { self.maxEntriesPerNamespace = maxEntriesPerNamespace }

    public func get(namespace: String, key: String, now: Timestamp) async throws -> [UInt8]? {
        namespaces.withLock { namespaces in
            guard let entry = namespaces[namespace]?[key] else { return nil }
            if entry.expiresAt <= now {
                namespaces[namespace]?[key] = nil
                return nil
            }
            return entry.value
        }
    }

    public func set(namespace: String, key: String, value: [UInt8], expiresAt: Timestamp, now: Timestamp) async throws {
        guard expiresAt > now else { return }
        namespaces.withLock { namespaces in
            var entries = namespaces[namespace, default: [:]]
            if entries.count >= maxEntriesPerNamespace { entries = entries.filter { $0.value.expiresAt > now } }
            if entries.count >= maxEntriesPerNamespace { entries.removeAll() }
            entries[key] = Entry(value: value, expiresAt: expiresAt)
            namespaces[namespace] = entries
        }
    }

    public func invalidate(namespace: String) async throws {
        _ = namespaces.withLock { $0.removeValue(forKey: namespace) }
    }
}
