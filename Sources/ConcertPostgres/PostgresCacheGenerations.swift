import ConcertDomain
import PostgresNIO
import SharedState

/// The cache generations (`GenerationCheckedCache`) of deployments without Redis: one row per
/// namespace in `cache_generations` (migration 3), read with one primary-key lookup per batch of
/// reads and bumped with one upsert.
public final class PostgresCacheGenerations: CacheGenerations {
    private let store: PostgresConcertStore

    public init(store: PostgresConcertStore) { self.store = store }

    public func generations(of namespaces: [String]) async throws -> [Int64] {
        let rows = try await store.sharedStatePrepared("cache generation", GenerationsStatement(namespaces: namespaces))
        let generations = Dictionary(rows, uniquingKeysWith: { first, _ in first })
        return namespaces.map { generations[$0] ?? 0 }
    }

    public func bump(namespace: String) async throws {
        // Every hold and cancel drops its schedule list, so this runs as often as holds do: its
        // commit is not waited for (synchronous_commit off for this statement's transaction). A
        // crash in that instant can forget the bump; entries live at most their TTL anyway.
        _ = try await store.sharedStatePrepared("cache invalidate", GenerationBumpStatement(namespace: namespace))
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
