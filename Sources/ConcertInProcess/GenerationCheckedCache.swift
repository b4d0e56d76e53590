import Batching
import ConcertDomain
import SharedState
import Synchronization

/// The response cache for several instances: each instance keeps the bodies in its own memory,
/// and a shared store (`CacheGenerations`: PostgreSQL's `cache_generations` or a Redis key) keeps
/// one generation number per namespace.
///
/// `invalidate` bumps the namespace's generation; every `get` reads it and serves its copy only if
/// it was stored under that same generation. So an admin write, a hold or a cancel through any
/// instance drops the namespace on every instance at once, with no message to deliver or lose.
/// Entries also expire at their `expiresAt`, as in `InProcessResponseCache`.
///
/// Generation reads that arrive together share one call (`WriteBatcher`, as holds and polls do):
/// a read queued while the calls are busy goes in the next call, which starts after it arrived, so
/// it still sees every invalidation that returned before it asked. A cached list under load is 64
/// reads at once of the same number, and the body itself never crosses the network.
///
/// An entry is stored under the generation current when it is stored; a body built before an
/// invalidation and stored after it can be served until its `expiresAt` (the callers keep those
/// short: `CONCERT_CACHE_TTL_MS`, `CONCERT_SCHEDULE_CACHE_TTL_MS`).
public final class GenerationCheckedCache: ResponseCache {
    private struct Entry {
        var value: [UInt8]
        var expiresAt: Timestamp
        var generation: Int64
    }
    private let generations: any CacheGenerations
    private let namespaces = Mutex<[String: [String: Entry]]>([:])
    private let maxEntriesPerNamespace: Int
    private let generationBatcher: WriteBatcher<String, Int64>

    public init(generations: any CacheGenerations, maxEntriesPerNamespace: Int = 1024) {
        self.generations = generations
        self.maxEntriesPerNamespace = maxEntriesPerNamespace
        self.generationBatcher = WriteBatcher(maxBatch: 64, concurrency: 4, isInfrastructureFailure: { $0 is SharedStateUnavailable })
    }

    public func get(namespace: String, key: String, now: Timestamp) async throws -> [UInt8]? {
        // Nothing here: no need to ask for the generation.
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
        try await generations.bump(namespace: namespace)
        _ = namespaces.withLock { $0.removeValue(forKey: namespace) }
    }

    private func generation(of namespace: String) async throws -> Int64 {
        try await generationBatcher.submit(namespace) { [generations] namespaces in
            // A batch is mostly one namespace many times over: ask for each once.
            let distinct = Array(Set(namespaces))
            let values = try await generations.generations(of: distinct)
            guard values.count == distinct.count else { throw BatchMismatch(expected: distinct.count, got: values.count) }
            let byNamespace = Dictionary(uniqueKeysWithValues: zip(distinct, values))
            return namespaces.map { byNamespace[$0] ?? 0 }
        }
    }
}
