import ConcertDomain

/// A cache of ready-made response bodies, grouped in namespaces that are dropped as a whole when
/// what they were made from changes (an operator creates a concert or a schedule).
public protocol ResponseCache: Sendable {
    func get(namespace: String, key: String, now: Timestamp) async throws -> [UInt8]?
    func set(namespace: String, key: String, value: [UInt8], expiresAt: Timestamp, now: Timestamp) async throws
    func invalidate(namespace: String) async throws
}

/// One number per cache namespace, shared by every instance (in PostgreSQL or Redis), for
/// `GenerationCheckedCache`: bodies live in each instance's memory, tagged with the generation
/// they were stored under, and a bump drops them on every instance at once.
public protocol CacheGenerations: Sendable {
    /// The current generation of each of `namespaces`, in order; 0 for one never bumped.
    func generations(of namespaces: [String]) async throws -> [Int64]
    /// Bumps `namespace`'s generation: once this returns, `generations(of:)` answers the new one
    /// on every instance.
    func bump(namespace: String) async throws
}
