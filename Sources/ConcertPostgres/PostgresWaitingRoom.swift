import Batching
import ConcertDomain
import ConcertStore
import PostgresNIO
import SharedState

/// The waiting rooms in PostgreSQL, shared by every instance on the database: what Redis does
/// for a deployment that has no Redis.
///
/// The rules are those of `WaitingLine`, applied by the PL/pgSQL functions of migrations 3 and 9
/// (`PostgresSharedStateSchema`, `PostgresLineFunctions`), so that every operation is one statement, atomic across
/// instances: changes to a line are serialised by a lock on its `queue_lines` row, a poll only
/// updates its own token's row. Time is always the caller's `now`.
///
/// It runs on the store's connection pool; a database that cannot be reached is reported as
/// `SharedStateUnavailable`, as the Redis room reports Redis.
public final class PostgresWaitingRoom: WaitingRoom {
    private let store: PostgresConcertStore
    private let policies: any QueuePolicySource
    /// Polls that arrive together go as one call of `concertd_queue_poll_many` (migration 11):
    /// every queue-protected request polls first, so at an on-sale the poll is the statement the
    /// database sees most.
    private let pollBatcher: WriteBatcher<LineCallItem, QueuePollStatement.Row?>
    /// Ends that arrive together go as one call of `concertd_queue_end_many` (migration 11): every
    /// payment ends its token, and each end takes its line's lock, so that at an on-sale ends of
    /// one line queued for each other's lock (2.7 ms of an end's 3.4 ms, measured under
    /// payments alone); a batch takes each line's lock once.
    private let endBatcher: WriteBatcher<LineCallItem, Bool>

    public convenience init(store: PostgresConcertStore, policy: QueuePolicy) {
        self.init(store: store, policies: FixedQueuePolicy(policy))
    }

    /// Each line's policy comes from `policies` with every call (the functions' arguments). At
    /// most `pollConcurrency` poll calls run at once, each with up to `pollBatchSize` polls; ends
    /// likewise with `endConcurrency`.
    ///
    /// One poll call at a time: fewer, fuller calls cost the database less per poll. Four calls
    /// at once cost about 105 µs of PostgreSQL CPU per poll at 10,000 waiters, two about 85; with
    /// migration 16's cheaper batch, two cost 63–65 µs and one 48–50 µs, and one gave 52–55 % of
    /// `/healthz` over HTTP against 48–50 % with two, p99 14–16 ms against 15–17 (A/B runs
    /// alternated on one durable database). A slow call holds the polls behind it up, but a poll
    /// batch waits for no line's lock (`PostgresPollLockOrder`) and every call is bounded by the
    /// store's operation limit.
    public init(store: PostgresConcertStore, policies: any QueuePolicySource, pollBatchSize: Int = 64,
                pollConcurrency: Int = 1, endConcurrency: Int = 4) {
        self.store = store
        self.policies = policies
        self.pollBatcher = WriteBatcher(maxBatch: pollBatchSize, concurrency: pollConcurrency,
                                        isInfrastructureFailure: { $0 is SharedStateUnavailable })
        self.endBatcher = WriteBatcher(maxBatch: pollBatchSize, concurrency: endConcurrency,
                                       isInfrastructureFailure: { $0 is SharedStateUnavailable })
    }

    public func join(userId: Int64, concertId: Int64, now: Timestamp) async throws -> (ticket: QueueTicket, created: Bool) {
        let token = QueueToken.make(concertId: concertId)
        let policy = try await policies.policy(concertId: concertId, now: now)
        let rows = try await query("join", """
            SELECT * FROM concertd_queue_join(\(userId), \(concertId), \(token), \(now.milliseconds), \(policy.admissionCap),
                                              \(policy.activeMilliseconds), \(policy.idleMilliseconds), \(policy.admitPerMinute ?? 0))
            """)
        guard let row = rows.first else { throw SharedStateUnavailable("PostgreSQL queue join returned no row") }
        let (status, owner, position, activeUntil, issued, created) =
            try row.decode((String, Int64, Int64, Int64?, String, Bool).self)
        return (try ticket(token: issued, concertId: concertId, status: status, userId: owner, position: position,
                           activeUntil: activeUntil, policy: policy), created)
    }

    public func poll(token: String, now: Timestamp) async throws -> QueueTicket? {
        guard let concertId = QueueToken.concertId(of: token) else { return nil }
        let policy = try await policies.policy(concertId: concertId, now: now)
        let item = LineCallItem(token: token, concertId: concertId, now: now, policy: policy)
        let row = try await pollBatcher.submit(item) { [store] items in try await Self.poll(items, on: store) }
        guard let (status, owner, position, activeUntil) = row else { return nil }
        return try ticket(token: token, concertId: concertId, status: status, userId: owner, position: position,
                          activeUntil: activeUntil, policy: policy)
    }

    /// One call for the batch: the single poll for one item, `concertd_queue_poll_many` for more.
    private static func poll(_ items: [LineCallItem], on store: PostgresConcertStore) async throws -> [QueuePollStatement.Row?] {
        if items.count == 1, let item = items.first {
            let rows = try await store.sharedStatePrepared("poll", QueuePollStatement(item: item))
            return [rows.first]
        }
        let rows = try await store.sharedStatePrepared("poll", QueuePollBatchStatement(items: items))
        return try Self.byItem(rows.map { ($0.0, ($0.1, $0.2, $0.3, $0.4)) }, count: items.count, absent: nil, what: "poll")
    }

    @discardableResult
    public func end(token: String, now: Timestamp) async throws -> Bool {
        guard let concertId = QueueToken.concertId(of: token) else { return false }
        let policy = try await policies.policy(concertId: concertId, now: now)
        let item = LineCallItem(token: token, concertId: concertId, now: now, policy: policy)
        return try await endBatcher.submit(item) { [store] items in try await Self.end(items, on: store) }
    }

    /// One call for the batch: `concertd_queue_end` for one item, `concertd_queue_end_many` for more.
    private static func end(_ items: [LineCallItem], on store: PostgresConcertStore) async throws -> [Bool] {
        if items.count == 1, let item = items.first {
            let rows = try await store.sharedStatePrepared("end", QueueEndStatement(item: item))
            return [try rows.first?.decode(Bool.self) ?? false]
        }
        let rows = try await store.sharedStatePrepared("end", QueueEndBatchStatement(items: items))
        return try Self.byItem(rows, count: items.count, absent: false, what: "end")
    }

    /// A batch function's rows, which name their item by its index counted from 1, put in item
    /// order; an item without a row gets `absent`.
    private static func byItem<Outcome>(_ rows: [(Int64, Outcome)], count: Int, absent: Outcome, what: String) throws -> [Outcome] {
        var outcomes = [Outcome](repeating: absent, count: count)
        for (index, outcome) in rows {
            guard index >= 1, index <= count else { throw SharedStateUnavailable("PostgreSQL queue \(what): row for item \(index)") }
            outcomes[Int(index) - 1] = outcome
        }
        return outcomes
    }

    public func sweep(now: Timestamp) async throws {
        // Only lines with something to do: someone waiting (each line's own cap decides below
        // whether there is room), or an ACTIVE token whose time is up.
        let rows = try await query("sweep", """
            SELECT * FROM (
              SELECT l.concert_id, l.waiting_count > 0 AS waiting, l.active_count,
                     l.waiting_count > 0 AND l.idle_swept_at + 1000 <= \(now.milliseconds) AS idle_due,
                     l.active_count > 0 AND EXISTS (SELECT 1 FROM queue_tokens t WHERE t.concert_id = l.concert_id
                                                    AND t.status = 'ACTIVE' AND t.active_until <= \(now.milliseconds)) AS expired
              FROM queue_lines l) lines
            WHERE waiting OR expired
            """)
        let lines = try rows.map { try $0.decode((Int64, Bool, Int64, Bool, Bool).self) }
        // One statement per line keeps each line's lock short.
        for (concertId, waiting, active, idleDue, expired) in lines {
            let policy = try await policies.policy(concertId: concertId, now: now)
            let hasRoom = waiting && active < policy.admissionCap
            guard hasRoom || idleDue || expired else { continue }
            _ = try await query("sweep", """
                SELECT concertd_queue_sweep(\(concertId), \(now.milliseconds), \(policy.admissionCap),
                                            \(policy.activeMilliseconds), \(policy.idleMilliseconds), \(policy.admitPerMinute ?? 0))
                """)
        }
    }

    public func counts(concertId: Int64, now: Timestamp) async throws -> (waiting: Int, active: Int) {
        let counts = try await lineCounts(concertId: concertId, now: now)
        return (counts.waiting, counts.active)
    }

    public func admittedLastMinute(concertId: Int64, now: Timestamp) async throws -> Int {
        try await lineCounts(concertId: concertId, now: now).admittedLastMinute
    }

    public func admissions(concertId: Int64, after: Timestamp, now: Timestamp) async throws -> Int {
        let rows = try await query("admissions", """
            SELECT count(*) FROM queue_admissions WHERE concert_id = \(concertId)
              AND admitted_at > \(after.milliseconds) AND admitted_at <= \(now.milliseconds)
            """)
        return Int(try rows.first?.decode(Int64.self) ?? 0)
    }

    /// One call: the counts after advancing, and the last minute's admissions (which outlive an
    /// emptied line).
    public func lineCounts(concertId: Int64, now: Timestamp) async throws -> LineCounts {
        let policy = try await policies.policy(concertId: concertId, now: now)
        let rows = try await query("counts", """
            SELECT * FROM concertd_queue_counts(\(concertId), \(now.milliseconds), \(policy.admissionCap),
                                                \(policy.activeMilliseconds), \(policy.idleMilliseconds), \(policy.admitPerMinute ?? 0))
            """)
        guard let row = rows.first else { throw SharedStateUnavailable("PostgreSQL queue counts returned no row") }
        let (waiting, active, admitted) = try row.decode((Int64, Int64, Int64).self)
        return LineCounts(waiting: Int(waiting), active: Int(active), admittedLastMinute: Int(admitted))
    }

    public func draw(concertId: Int64, now: Timestamp, order: @Sendable ([String]) -> [String]) async throws -> Int {
        let drawn = try await query("draw", "SELECT drawn_entrants FROM queue_lines WHERE concert_id = \(concertId)")
        if let row = drawn.first, let done = try row.decode(Int64?.self) { return Int(done) }
        let tokens = try await query("draw", """
            SELECT token FROM queue_tokens WHERE concert_id = \(concertId) AND status = 'WAITING' ORDER BY sequence
            """).map { try $0.decode(String.self) }
        let ordered = order(tokens)
        let rows = try await query("draw", "SELECT concertd_queue_draw(\(concertId), \(ordered))")
        return Int(try rows.first?.decode(Int64.self) ?? 0)
    }

    public func ping() async throws {
        _ = try await query("ping", "SELECT 1")
    }

    private func ticket(token: String, concertId: Int64, status: String, userId: Int64, position: Int64,
                        activeUntil: Int64?, policy: QueuePolicy) throws -> QueueTicket {
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

/// A poll, prepared once per connection: every queue-protected request (seat maps, holds,
/// payments) polls its token first, and skipping the parse is worth 15–30 % of a poll's time
/// in the database (pgbench on the poll: 3,650 prepared against 2,780–3,170 transactions/s
/// unprepared, 8 connections, 10,000 waiters).
struct QueuePollStatement: PostgresPreparedStatement {
    static let name = "concertd_queue_poll_9"
    static let sql = "SELECT * FROM concertd_queue_poll($1, $2, $3, $4, $5, $6, $7)"
    static let bindingDataTypes = LineCallItem.types
    typealias Row = (String, Int64, Int64, Int64?)

    var item: LineCallItem

    func makeBindings() throws -> PostgresBindings { item.bindings }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}

/// One poll or end of a batch: the token, its line, the time and the line's policy.
struct LineCallItem: Sendable {
    var token: String
    var concertId: Int64
    var now: Int64
    var maxActive: Int64
    var activeMilliseconds: Int64
    var idleMilliseconds: Int64
    var admitPerMinute: Int64

    init(token: String, concertId: Int64, now: Timestamp, policy: QueuePolicy) {
        self.token = token
        self.concertId = concertId
        self.now = now.milliseconds
        maxActive = Int64(policy.admissionCap)
        activeMilliseconds = policy.activeMilliseconds
        idleMilliseconds = policy.idleMilliseconds
        admitPerMinute = Int64(policy.admitPerMinute ?? 0)
    }
}

/// Many polls in one call (migration 11's `concertd_queue_poll_many`): the items as parallel
/// arrays; a row per live token, naming its item by its index counted from 1.
struct QueuePollBatchStatement: PostgresPreparedStatement {
    static let name = "concertd_queue_poll_many_11"
    static let sql = "SELECT * FROM concertd_queue_poll_many($1, $2, $3, $4, $5, $6, $7)"
    static let bindingDataTypes = LineCallItem.arrayTypes
    typealias Row = (Int64, String, Int64, Int64, Int64?)

    var items: [LineCallItem]

    func makeBindings() throws -> PostgresBindings { LineCallItem.arrays(items) }
    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

/// Many ends in one call (migration 11's `concertd_queue_end_many`): a row per item, by its
/// index counted from 1, telling whether it ended a token.
struct QueueEndBatchStatement: PostgresPreparedStatement {
    static let name = "concertd_queue_end_many_11"
    static let sql = "SELECT * FROM concertd_queue_end_many($1, $2, $3, $4, $5, $6, $7)"
    static let bindingDataTypes = LineCallItem.arrayTypes
    typealias Row = (Int64, Bool)

    var items: [LineCallItem]

    func makeBindings() throws -> PostgresBindings { LineCallItem.arrays(items) }
    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

extension LineCallItem {
    /// The single functions' arguments (`concertd_queue_poll`, `concertd_queue_end`): token,
    /// concert, now, cap, active and idle milliseconds, rate.
    static let types: [PostgresDataType] = [.text, .int8, .int8, .int8, .int8, .int8, .int8]

    var bindings: PostgresBindings {
        .of(token, concertId, now, maxActive, activeMilliseconds, idleMilliseconds, admitPerMinute)
    }

    static let arrayTypes: [PostgresDataType] = [.textArray, .int8Array, .int8Array, .int8Array, .int8Array, .int8Array, .int8Array]

    /// The batch functions' arguments: token, concert, now, cap, active and idle milliseconds,
    /// rate, each an array over the items.
    static func arrays(_ items: [LineCallItem]) -> PostgresBindings {
        // Column by column with closures: a loop over key paths read each through the run time.
        var bindings = PostgresBindings(capacity: 7)
        bindings.append(items.map { $0.token })
        bindings.append(items.map { $0.concertId })
        bindings.append(items.map { $0.now })
        bindings.append(items.map { $0.maxActive })
        bindings.append(items.map { $0.activeMilliseconds })
        bindings.append(items.map { $0.idleMilliseconds })
        bindings.append(items.map { $0.admitPerMinute })
        return bindings
    }
}

extension PostgresConcertStore {
    /// One statement on the store's pool for the shared state (waiting room, rate limiter,
    /// cache generations). A database that cannot be reached is `SharedStateUnavailable`, which
    /// callers of those protocols expect (the rate limiter lets requests through then).
    func sharedStateQuery(_ what: String, _ query: PostgresQuery) async throws -> [PostgresRow] {
        let logger = self.logger
        return try await sharedState(what) { try await $0.query(query, logger: logger).collect() }
    }

    /// `sharedStateQuery` for a prepared statement.
    func sharedStatePrepared<Statement: PostgresPreparedStatement>(_ what: String, _ statement: Statement) async throws
        -> [Statement.Row] where Statement.Row: Sendable {
        let logger = self.logger
        return try await sharedState(what) { try await $0.rows(statement, logger: logger) }
    }

    /// Each call is one statement, a transaction of its own, so one that PostgreSQL aborted (a
    /// deadlock's victim, a serialization failure) wrote nothing and is tried again, as the
    /// store's writes are (`autocommit`).
    private func sharedState<R: Sendable>(_ what: String,
                                          _ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        do {
            return try await autocommit(body)
        } catch let error as StoreUnavailable {
            throw SharedStateUnavailable("PostgreSQL \(what): \(error.description)")
        }
    }
}
