import ConcertDomain
import ConcertStore
import PostgresNIO
import SharedState

/// The waiting rooms in PostgreSQL, shared by every instance on the database: what Redis does
/// for a deployment that has no Redis.
///
/// The rules are those of `WaitingLine`, applied by the PL/pgSQL functions of migration 3
/// (`PostgresSharedStateSchema`), so that every operation is one statement, atomic across
/// instances: changes to a line are serialised by a lock on its `queue_lines` row, a poll only
/// updates its own token's row. Time is always the caller's `now`.
///
/// It runs on the store's connection pool; a database that cannot be reached is reported as
/// `SharedStateUnavailable`, as the Redis room reports Redis.
public final class PostgresWaitingRoom: WaitingRoom {
    private let store: PostgresConcertStore
    private let policy: QueuePolicy

    public init(store: PostgresConcertStore, policy: QueuePolicy) {
        self.store = store
        self.policy = policy
    }

    public func join(userId: Int64, concertId: Int64, now: Timestamp) async throws -> (ticket: QueueTicket, created: Bool) {
        let token = QueueToken.make(concertId: concertId)
        let rows = try await query("join", """
            SELECT * FROM concertd_queue_join(\(userId), \(concertId), \(token), \(now.milliseconds), \(policy.maxActive),
                                              \(policy.activeMilliseconds), \(policy.idleMilliseconds))
            """)
        guard let row = rows.first else { throw SharedStateUnavailable("PostgreSQL queue join returned no row") }
        let (status, owner, position, activeUntil, issued, created) =
            try row.decode((String, Int64, Int64, Int64?, String, Bool).self)
        return (try ticket(token: issued, concertId: concertId, status: status, userId: owner, position: position,
                           activeUntil: activeUntil), created)
    }

    public func poll(token: String, now: Timestamp) async throws -> QueueTicket? {
        guard let concertId = QueueToken.concertId(of: token) else { return nil }
        let rows = try await query("poll", """
            SELECT * FROM concertd_queue_poll(\(token), \(concertId), \(now.milliseconds), \(policy.maxActive),
                                              \(policy.activeMilliseconds), \(policy.idleMilliseconds))
            """)
        guard let row = rows.first else { return nil }
        let (status, owner, position, activeUntil) = try row.decode((String, Int64, Int64, Int64?).self)
        return try ticket(token: token, concertId: concertId, status: status, userId: owner, position: position,
                          activeUntil: activeUntil)
    }

    @discardableResult
    public func end(token: String, now: Timestamp) async throws -> Bool {
        guard let concertId = QueueToken.concertId(of: token) else { return false }
        let rows = try await query("end", """
            SELECT concertd_queue_end(\(token), \(concertId), \(now.milliseconds), \(policy.maxActive),
                                      \(policy.activeMilliseconds), \(policy.idleMilliseconds))
            """)
        return try rows.first?.decode(Bool.self) ?? false
    }

    public func sweep(now: Timestamp) async throws {
        // Only lines with something to do: a free slot and someone waiting, an ACTIVE token whose
        // time is up, or idle waiters not looked for in the last second.
        let rows = try await query("sweep", """
            SELECT l.concert_id FROM queue_lines l
            WHERE (l.waiting_count > 0 AND (l.active_count < \(policy.maxActive) OR l.idle_swept_at + 1000 <= \(now.milliseconds)))
               OR (l.active_count > 0 AND EXISTS (SELECT 1 FROM queue_tokens t WHERE t.concert_id = l.concert_id
                                                  AND t.status = 'ACTIVE' AND t.active_until <= \(now.milliseconds)))
            """)
        let concertIds = try rows.map { try $0.decode(Int64.self) }
        // One statement per line keeps each line's lock short.
        for concertId in concertIds {
            _ = try await query("sweep", """
                SELECT concertd_queue_sweep(\(concertId), \(now.milliseconds), \(policy.maxActive),
                                            \(policy.activeMilliseconds), \(policy.idleMilliseconds))
                """)
        }
    }

    public func counts(concertId: Int64, now: Timestamp) async throws -> (waiting: Int, active: Int) {
        let rows = try await query("counts", """
            SELECT * FROM concertd_queue_counts(\(concertId), \(now.milliseconds), \(policy.maxActive),
                                                \(policy.activeMilliseconds), \(policy.idleMilliseconds))
            """)
        guard let row = rows.first else { return (0, 0) }
        let (waiting, active) = try row.decode((Int64, Int64).self)
        return (Int(waiting), Int(active))
    }

    public func ping() async throws {
        _ = try await query("ping", "SELECT 1")
    }

    private func ticket(token: String, concertId: Int64, status: String, userId: Int64, position: Int64,
                        activeUntil: Int64?) throws -> QueueTicket {
        switch (status, activeUntil) {
        case ("ACTIVE", let until?):
            return QueueTicket(token: token, userId: userId, concertId: concertId, status: .active, position: 0,
                               estimatedWaitSeconds: 0, activeUntil: Timestamp(milliseconds: until))
        case ("WAITING", _):
            let position = Int(position)
            return QueueTicket(token: token, userId: userId, concertId: concertId, status: .waiting, position: position,
                               estimatedWaitSeconds: policy.estimatedWaitSeconds(position: position), activeUntil: nil)
        default:
            throw SharedStateUnavailable("PostgreSQL queue: unexpected status \(status)")
        }
    }

    private func query(_ what: String, _ query: PostgresQuery) async throws -> [PostgresRow] {
        try await store.sharedStateQuery(what, query)
    }
}

extension PostgresConcertStore {
    /// One statement on the store's pool for the shared state (waiting room, rate limiter,
    /// cache generations). A database that cannot be reached is `SharedStateUnavailable`, which
    /// callers of those protocols expect (the rate limiter lets requests through then).
    func sharedStateQuery(_ what: String, _ query: PostgresQuery) async throws -> [PostgresRow] {
        let logger = self.logger
        do {
            return try await withConnection { connection in
                try await connection.query(query, logger: logger).collect()
            }
        } catch let error as StoreUnavailable {
            throw SharedStateUnavailable("PostgreSQL \(what): \(error.description)")
        }
    }
}
