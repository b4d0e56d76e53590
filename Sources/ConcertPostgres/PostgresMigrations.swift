import Logging
import PostgresNIO

/// Numbered, append-only schema changes. Never edit a released one; add the next.
///
/// Each migration is a list of statements because the extended query protocol runs one
/// statement per query. The schema mirrors `SQLiteMigrations`: times are BIGINT milliseconds,
/// money is BIGINT points, and the same CHECKs and keys guard the data whatever the code does.
enum PostgresMigrations {
    struct Migration: Sendable {
        var version: Int
        var name: String
        var statements: [String]
    }

    /// Any fixed 64-bit number; every instance of the service must use the same one.
    static let advisoryLockKey: Int64 = 0x636F_6E63_6572_7464 // "concertd"

    static let all: [Migration] = [
        Migration(version: 1, name: "create_core_tables", statements: [
            """
            CREATE TABLE concerts (
              id BIGSERIAL PRIMARY KEY,
              title TEXT NOT NULL,
              artist TEXT NOT NULL,
              venue TEXT NOT NULL,
              booking_opens_at BIGINT NOT NULL,
              booking_closes_at BIGINT NOT NULL,
              CHECK (booking_closes_at > booking_opens_at)
            )
            """,
            "CREATE INDEX concerts_booking_opens_at ON concerts (booking_opens_at)",
            "CREATE INDEX concerts_booking_closes_at ON concerts (booking_closes_at)",
            """
            CREATE TABLE schedules (
              id BIGSERIAL PRIMARY KEY,
              concert_id BIGINT NOT NULL REFERENCES concerts (id),
              starts_at BIGINT NOT NULL,
              total_seats INTEGER NOT NULL CHECK (total_seats BETWEEN 1 AND 1000),
              price BIGINT NOT NULL CHECK (price >= 0)
            )
            """,
            "CREATE INDEX schedules_concert_starts_at ON schedules (concert_id, starts_at)",
            "CREATE INDEX schedules_starts_at ON schedules (starts_at)",
            """
            CREATE TABLE users (
              id BIGINT PRIMARY KEY,
              balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0 AND balance <= 1000000000)
            )
            """,
            """
            CREATE TABLE reservations (
              id BIGSERIAL PRIMARY KEY,
              user_id BIGINT NOT NULL REFERENCES users (id),
              schedule_id BIGINT NOT NULL REFERENCES schedules (id),
              concert_id BIGINT NOT NULL REFERENCES concerts (id),
              seat_number INTEGER NOT NULL CHECK (seat_number >= 1),
              price BIGINT NOT NULL CHECK (price >= 0),
              status TEXT NOT NULL CHECK (status IN ('HELD', 'CONFIRMED', 'EXPIRED', 'CANCELLED')),
              held_until BIGINT NOT NULL,
              created_at BIGINT NOT NULL
            )
            """,
            // At most one live (HELD or CONFIRMED) reservation per seat, whatever the code does;
            // concurrent holds of one seat are arbitrated by this index (INSERT ... ON CONFLICT).
            // It also serves the seat map and the availability count (schedule_id prefix).
            """
            CREATE UNIQUE INDEX reservations_one_live_per_seat ON reservations (schedule_id, seat_number)
              WHERE status IN ('HELD', 'CONFIRMED')
            """,
            "CREATE INDEX reservations_user ON reservations (user_id, id)",
            // The hold-limit count reads only a user's HELD rows that have not run out.
            "CREATE INDEX reservations_user_live_holds ON reservations (user_id, held_until) WHERE status = 'HELD'",
            """
            CREATE TABLE point_entries (
              id BIGSERIAL PRIMARY KEY,
              user_id BIGINT NOT NULL REFERENCES users (id),
              type TEXT NOT NULL CHECK (type IN ('CHARGE', 'PAYMENT')),
              amount BIGINT NOT NULL,
              balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
              created_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX point_entries_user ON point_entries (user_id, id)",
            """
            CREATE TABLE payments (
              id BIGSERIAL PRIMARY KEY,
              user_id BIGINT NOT NULL REFERENCES users (id),
              reservation_id BIGINT NOT NULL UNIQUE REFERENCES reservations (id),
              amount BIGINT NOT NULL CHECK (amount >= 0),
              paid_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX payments_user ON payments (user_id, id)",
            """
            CREATE TABLE idempotency_keys (
              user_id BIGINT NOT NULL,
              key TEXT NOT NULL,
              fingerprint TEXT NOT NULL,
              state TEXT NOT NULL CHECK (state IN ('RUNNING', 'DONE')),
              response_status INTEGER,
              response_body BYTEA,
              created_at BIGINT NOT NULL,
              PRIMARY KEY (user_id, key)
            )
            """,
        ]),
        Migration(version: 2, name: "write_functions", statements: PostgresWriteFunctions.statements),
        Migration(version: 3, name: "create_shared_state", statements: PostgresSharedStateSchema.statements),
        // After the sale (refunds, cancelled dates): a payment can be REFUNDED, a schedule
        // cancelled, and the history gains REFUND entries.
        Migration(version: 4, name: "after_sale_columns", statements: [
            """
            ALTER TABLE payments
              ADD COLUMN status TEXT NOT NULL DEFAULT 'PAID' CHECK (status IN ('PAID', 'REFUNDED')),
              ADD COLUMN refunded_at BIGINT
            """,
            "ALTER TABLE schedules ADD COLUMN cancelled_at BIGINT",
            "ALTER TABLE point_entries DROP CONSTRAINT point_entries_type_check",
            "ALTER TABLE point_entries ADD CONSTRAINT point_entries_type_check CHECK (type IN ('CHARGE', 'PAYMENT', 'REFUND'))",
        ]),
        Migration(version: 5, name: "on_sale_control", statements: PostgresOnSaleSchema.statements),
        // Refunds and cancelled dates: the uncapped balance CHECK, REFUND entries naming their
        // payment, `concertd_refund`, `concertd_cancel_schedule`, and holds and payments that a
        // cancelled schedule refuses (see `PostgresAfterSaleFunctions`).
        Migration(version: 6, name: "refunds_and_cancelled_dates", statements: PostgresAfterSaleFunctions.statements),
        // Webhooks from a transactional outbox (issue 15). See `PostgresWebhookSchema`.
        Migration(version: 7, name: "webhooks", statements: PostgresWebhookSchema.statements),
        // 8: a payment's claim on its
        // queue token's end (`PostgresTokenClaims`); unlogged like the rate-limit buckets, since a
        // claim only has to outlive one payment.
        Migration(version: 8, name: "create_queue_token_claims", statements: [
            """
            CREATE UNLOGGED TABLE queue_token_claims (
              token TEXT PRIMARY KEY,
              owner TEXT NOT NULL,
              claimed_until BIGINT NOT NULL
            )
            """,
        ]),
        // The waiting room's functions with the rate as an argument, token lookups by key only,
        // and positions in two levels (`PostgresLineFunctions`).
        Migration(version: 9, name: "line_functions", statements: PostgresLineFunctions.statements),
        // 10: the reservation events' snapshot gains `paymentId` (as the API's Reservation did),
        // and the retention sweep (`pruneWebhookEvents`) finds old events by time and their
        // deliveries by event. Mirrors SQLite's "007_webhook_retention".
        Migration(version: 10, name: "webhook_retention", statements: PostgresWebhookSchema.retentionStatements),
        // 11: a waiter's place in its block from a bitmask instead of the tokens, and polls in
        // batches (`PostgresLinePositions`).
        Migration(version: 11, name: "line_positions", statements: PostgresLinePositions.statements),
        // 12: the batch functions on generic plans, whatever their first batches looked like
        // (`PostgresGenericPlans`).
        Migration(version: 12, name: "generic_plans", statements: PostgresGenericPlans.statements),
        // 13: payments and charges in batches (`PostgresMoneyBatches`).
        Migration(version: 13, name: "money_batches", statements: PostgresMoneyBatches.statements),
        // 14: a payment checks and claims its queue token in its own call on PostgreSQL alone
        // (`PostgresTicketedWriteFunctions`).
        Migration(version: 14, name: "ticketed_payments", statements: PostgresTicketedWriteFunctions.statements),
        // 15: poll batches lock their tokens in token order and never wait for a line's lock
        // while holding them (`PostgresPollLockOrder`).
        Migration(version: 15, name: "poll_lock_order", statements: PostgresPollLockOrder.statements),
        // 16: a poll moves its token's last-seen time ahead by the refresh and only reads while it
        // lasts (`PostgresPollRefresh`).
        Migration(version: 16, name: "poll_refresh", statements: PostgresPollRefresh.statements),
    ]

    /// Applies every migration not yet recorded, in order, in one transaction. The advisory lock
    /// makes instances that start together take turns: the first applies, the others then find
    /// the versions recorded and do nothing. A failed migration rolls back whole.
    static func migrate(on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("SELECT pg_advisory_xact_lock(\(advisoryLockKey))", logger: logger)
        try await connection.query("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
              version INTEGER PRIMARY KEY,
              name TEXT NOT NULL,
              applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """, logger: logger)
        var applied = Set<Int>()
        for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(Int.self) {
            applied.insert(version)
        }
        for migration in all where !applied.contains(migration.version) {
            logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            for statement in migration.statements {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await connection.query(
                "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))", logger: logger)
        }
    }
}
