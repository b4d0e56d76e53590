import ConcertDomain
import PostgresNIO
import SharedState
import Synchronization

/// The response cache for several instances on one PostgreSQL without Redis: each instance keeps
/// the bodies in its own memory, and PostgreSQL keeps one generation number per namespace
/// (`cache_generations`, migration 3).
///
/// `invalidate` bumps the namespace's generation; every `get` reads it (one primary-key read)
/// and serves its copy only if it was stored under that same generation. So an admin write, a
/// hold or a cancel through any instance drops the namespace on every instance at once, with no
/// message to deliver or lose. Entries also expire at their `expiresAt`, as in the other caches.
///
/// Like the Redis cache, an entry is stored under the generation current when it is stored; a
/// body built before an invalidation and stored after it can be served until its `expiresAt`
/// (the callers keep those short: `CONCERT_CACHE_TTL_MS`, `CONCERT_SCHEDULE_CACHE_TTL_MS`).
public final class PostgresGenerationCache: ResponseCache {
    private struct Entry {
        var value: [UInt8]
        var expiresAt: Timestamp
        var generation: Int64
    }
    private let store: PostgresConcertStore
    private let namespaces = Mutex<[String: [String: Entry]]>([:])
    private let maxEntriesPerNamespace: Int
    /// Generation reads that arrive together share one query (`WriteBatcher`, as holds and polls
    /// do): a read queued while the calls are busy goes in the next call, which starts after it
    /// arrived, so it still sees every invalidation committed before it asked. A cached list under
    /// load is 64 reads at once of the same row.
    private let generationBatcher: WriteBatcher<String, Int64>

    public init(store: PostgresConcertStore, maxEntriesPerNamespace: Int = 1024) {
        self.store = store
        self.maxEntriesPerNamespace = maxEntriesPerNamespace
        self.generationBatcher = WriteBatcher(maxBatch: 64, concurrency: 4, isInfrastructureFailure: { $0 is SharedStateUnavailable })
    }

    public func get(namespace: String, key: String, now: Timestamp) async throws -> [UInt8]? {
        // Nothing here: no need to ask the database.
        guard namespaces.withLock({ $0[namespace]?[key] != nil }) else { return nil }
        let generation = try await generation(of: namespace)
        return namespaces.withLock { namespaces in
            guard let entry = namespaces[namespace]?[key] else { return nil }
            if entry.expiresAt <= now || entry.generation != generation {
                if entry.generation < generation || entry.expiresAt <= now { namespaces[namespace]?[key] = nil }
                return nil
            }
            return entry.value
        }
    }

    public func set(namespace: String, key: String, value: [UInt8], expiresAt: Timestamp, now: Timestamp) async throws {
        guard expiresAt > now else { return }
        let generation = try await generation(of: namespace)
        namespaces.withLock { namespaces in
            var entries = namespaces[namespace, default: [:]]
            if entries.count >= maxEntriesPerNamespace {
                entries = entries.filter { $0.value.expiresAt > now && $0.value.generation >= generation }
            }
            if entries.count >= maxEntriesPerNamespace { entries.removeAll() }
            entries[key] = Entry(value: value, expiresAt: expiresAt, generation: generation)
            namespaces[namespace] = entries
        }
    }

    public func invalidate(namespace: String) async throws {
        // Every hold and cancel drops its schedule list, so this runs as often as holds do: its
        // commit is not waited for (synchronous_commit off for this statement's transaction). A
        // crash in that instant can forget the bump; entries live at most their TTL anyway.
        _ = try await store.sharedStatePrepared("cache invalidate", GenerationBumpStatement(namespace: namespace))
        _ = namespaces.withLock { $0.removeValue(forKey: namespace) }
    }

    private func generation(of namespace: String) async throws -> Int64 {
        try await generationBatcher.submit(namespace) { [store] namespaces in
            let rows = try await store.sharedStatePrepared("cache generation", GenerationsStatement(namespaces: namespaces))
            let generations = Dictionary(rows, uniquingKeysWith: { first, _ in first })
            return namespaces.map { generations[$0] ?? 0 }
        }
    }
}

/// The generations of the namespaces of one batch (one or many) in one query, prepared once per
/// connection; a namespace never bumped has no row: 0.
struct GenerationsStatement: PostgresPreparedStatement {
    static let name = "concertd_cache_generations"
    static let sql = "SELECT namespace, generation FROM cache_generations WHERE namespace = ANY($1)"
    static let bindingDataTypes: [PostgresDataType] = [.textArray]
    typealias Row = (String, Int64)

    var namespaces: [String]

    func makeBindings() throws -> PostgresBindings { .of(namespaces) }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}
