import ConcertDomain
import SharedState

/// No cache at all. (It served several instances on PostgreSQL without Redis until
/// `GenerationCheckedCache` made their invalidations reach each other; nothing wires it now.)
public struct NoResponseCache: ResponseCache {
    public init() {}
    public func get(namespace: String, key: String, now: Timestamp) async throws -> [UInt8]? { nil }
    public func set(namespace: String, key: String, value: [UInt8], expiresAt: Timestamp, now: Timestamp) async throws {}
    public func invalidate(namespace: String) async throws {}
}
