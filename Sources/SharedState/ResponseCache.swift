import ConcertDomain

/// A cache of ready-made response bodies, grouped in namespaces that are dropped as a whole when
/// what they were made from changes (an operator creates a concert or a schedule).
public protocol ResponseCache: Sendable {
    func get(namespace: String, key: String, now: Timestamp) async throws -> [UInt8]?
    func set(namespace: String, key: String, value: [UInt8], expiresAt: Timestamp, now: Timestamp) async throws
    func invalidate(namespace: String) async throws
}
