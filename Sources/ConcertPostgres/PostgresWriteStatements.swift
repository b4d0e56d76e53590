import PostgresNIO

/// The write path's calls, prepared once per connection (PostgresNIO's prepared statements) like
/// the poll: a batch of holds, of charges and of payments, a single queue end, a token claim and its release, a
/// cache generation bump and the payment's reservation read.
///
/// Sent as plain queries, each of these was parsed, analysed and planned by PostgreSQL on every
/// call: under the purchase write path (hold → charge → pay, 16 connections, durable) parsing,
/// analysis and planning (the functions' own statements' included) were about a quarter of
/// PostgreSQL's CPU samples (`perf`, 2026-12-02). Prepared, a call is one Bind/Execute on the
/// connection it runs on: 15 % less PostgreSQL CPU per purchase (docs/benchmarks.md).
///
/// Each statement hands back its rows as they are, so that the store decodes them where it did
/// before (the outcomes of the write functions, the reservation columns).
protocol PreparedWrite: PostgresPreparedStatement where Row == PostgresRow {}

extension PreparedWrite {
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

extension PostgresBindings {
    /// The bindings of `values`, in order (one line per statement instead of one per value).
    static func of<each Value: PostgresDynamicTypeEncodable>(_ values: repeat each Value) -> PostgresBindings {
        var bindings = PostgresBindings()
        for value in repeat each values { bindings.append(value) }
        return bindings
    }

    /// An idempotent write's answer template, or five NULLs without one (the functions' last
    /// five arguments: key, claimed at, status, body, marks).
    mutating func append(_ answer: AnswerTemplate?) {
        append(answer?.key)
        append(answer?.claimedAt)
        append(answer?.status)
        append(answer?.body)
        append(answer?.marks)
    }

    static let answerTypes: [PostgresDataType] = [.text, .int8, .int8, .bytea, .textArray]
}

/// `concertd_hold_ticketed` (migration 14) for a batch: the items as parallel arrays, each with
/// its queue token to check first, or the empty token for none (then it is `concertd_hold`'s).
struct HoldBatchStatement: PreparedWrite {
    static let name = "concertd_hold_ticketed_14"
    static let sql = "SELECT o_item, o_outcome, o_reservation FROM concertd_hold_ticketed($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    static let bindingDataTypes = [PostgresDataType](repeating: .int8Array, count: 8) + [.textArray, .int8Array]

    var users: [Int64]
    var schedules: [Int64]
    var concerts: [Int64]
    var seats: [Int64]
    var prices: [Int64]
    var nows: [Int64]
    var heldUntils: [Int64]
    var maxHolds: [Int64]
    var tokens: [String]
    var idleMilliseconds: [Int64]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings.of(users, schedules, concerts, seats, prices, nows, heldUntils, maxHolds)
        bindings.append(tokens)
        bindings.append(idleMilliseconds)
        return bindings
    }
}

/// `concertd_charge_many` for a batch of charges: the items as parallel arrays (the empty key and
/// the markers as for payments: `PostgresMoneyBatches`).
struct ChargeBatchStatement: PreparedWrite {
    static let name = "concertd_charge_many_13"
    static let sql = "SELECT o_item, o_outcome, o_balance FROM concertd_charge_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    static let bindingDataTypes: [PostgresDataType] = [.int8Array, .int8Array, .int8, .int8Array, .textArray, .int8Array,
                                                       .int8Array, .byteaArray, .boolArray, .textArray]
    /// A charge's answer shows the balance after.
    static let markers = 1

    var items: [ChargeItem]
    var maxBalance: Int64

    func makeBindings() throws -> PostgresBindings {
        .of(items.map(\.userId), items.map(\.amount), maxBalance, items.map(\.now), items.map { $0.answer?.key ?? "" },
            items.map { $0.answer?.claimedAt ?? 0 }, items.map { $0.answer?.status ?? 0 },
            items.map { $0.answer?.body ?? ByteBuffer() }, items.map { !($0.answer?.marks.isEmpty ?? true) },
            (0..<Self.markers).map { String(AnswerTemplate.marker($0)) })
    }
}

/// One charge of a batch.
struct ChargeItem: Sendable {
    var userId: Int64
    var amount: Int64
    var now: Int64
    var answer: AnswerTemplate?
}

/// `concertd_pay_batch` (migration 14) for a batch of payments: the items as parallel arrays (see
/// `PostgresMoneyBatches` for the empty key and the markers); an item without a queue-token check
/// has the empty token (`PostgresTicketedWriteFunctions`).
struct PayBatchStatement: PreparedWrite {
    static let name = "concertd_pay_batch_14"
    static let sql = """
        SELECT o_item, o_outcome, o_payment, o_amount, o_balance, o_concert
        FROM concertd_pay_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        """
    static let bindingDataTypes: [PostgresDataType] = [.int8Array, .int8Array, .int8Array, .textArray, .int8Array, .int8Array,
                                                       .byteaArray, .boolArray, .textArray,
                                                       .textArray, .textArray, .int8Array, .int8Array]
    /// A payment's answer shows the payment's id, its amount and the balance after.
    static let markers = 3

    var items: [PayItem]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings.of(
            items.map(\.userId), items.map(\.reservationId), items.map(\.now), items.map { $0.answer?.key ?? "" },
            items.map { $0.answer?.claimedAt ?? 0 }, items.map { $0.answer?.status ?? 0 },
            items.map { $0.answer?.body ?? ByteBuffer() }, items.map { !($0.answer?.marks.isEmpty ?? true) },
            (0..<Self.markers).map { String(AnswerTemplate.marker($0)) })
        bindings.append(items.map { $0.ticket?.token ?? "" })
        bindings.append(items.map { $0.ticket?.claimOwner ?? "" })
        bindings.append(items.map { $0.ticket?.claimUntil.milliseconds ?? 0 })
        bindings.append(items.map { $0.ticket?.idleMilliseconds ?? 0 })
        return bindings
    }
}

/// One payment of a batch.
struct PayItem: Sendable {
    var userId: Int64
    var reservationId: Int64
    var now: Int64
    var answer: AnswerTemplate?
    /// The queue token to check and claim in the payment's own transaction (PostgreSQL alone).
    var ticket: PaymentTicketCheck?
}

/// `concertd_queue_end` for one token (a batch of one: most payments end their token alone).
struct QueueEndStatement: PreparedWrite {
    static let name = "concertd_queue_end_13"
    static let sql = "SELECT concertd_queue_end($1, $2, $3, $4, $5, $6, $7)"
    static let bindingDataTypes = LineCallItem.types

    var item: LineCallItem

    func makeBindings() throws -> PostgresBindings { item.bindings }
}

/// A token claim (`PostgresTokenClaims.claim`): a row back when the claim was taken.
struct TokenClaimStatement: PreparedWrite {
    static let name = "concertd_token_claim_13"
    static let sql = """
        INSERT INTO queue_token_claims (token, owner, claimed_until)
        SELECT $1, $2, $3 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit
        ON CONFLICT (token) DO UPDATE SET owner = EXCLUDED.owner, claimed_until = EXCLUDED.claimed_until
          WHERE queue_token_claims.claimed_until <= $4 OR queue_token_claims.owner = EXCLUDED.owner
        RETURNING 1
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .text, .int8, .int8]

    var token: String
    var owner: String
    var until: Int64
    var now: Int64

    func makeBindings() throws -> PostgresBindings { .of(token, owner, until, now) }
}

/// A token claim's release by its owner.
struct TokenClaimReleaseStatement: PreparedWrite {
    static let name = "concertd_token_claim_release_13"
    static let sql = """
        DELETE FROM queue_token_claims USING (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit
        WHERE token = $1 AND owner = $2
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .text]

    var token: String
    var owner: String

    func makeBindings() throws -> PostgresBindings { .of(token, owner) }
}

/// A cache namespace's generation bump (`PostgresCacheGenerations.bump`, on every hold).
struct GenerationBumpStatement: PreparedWrite {
    static let name = "concertd_generation_bump_13"
    static let sql = """
        INSERT INTO cache_generations (namespace, generation)
        SELECT $1, 1 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS asynchronous_commit
        ON CONFLICT (namespace) DO UPDATE SET generation = cache_generations.generation + 1
        """
    static let bindingDataTypes: [PostgresDataType] = [.text]

    var namespace: String

    func makeBindings() throws -> PostgresBindings { .of(namespace) }
}

/// One of the caller's reservations by id (every payment reads it first).
struct ReservationStatement: PreparedWrite {
    static let name = "concertd_reservation_13"
    static let sql = "SELECT \(PostgresConcertStore.Columns.reservation) FROM reservations WHERE id = $1 AND user_id = $2"
    static let bindingDataTypes: [PostgresDataType] = [.int8, .int8]

    var id: Int64
    var userId: Int64

    func makeBindings() throws -> PostgresBindings { .of(id, userId) }
}
