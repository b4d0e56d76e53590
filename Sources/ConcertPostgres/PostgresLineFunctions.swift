/// Migration 9: the waiting room's functions, one per operation with the line's admission rate
/// as an argument, and positions read in two levels.
///
/// Why a new set:
/// - **Plans that survive a line growing faster than its statistics.** An on-sale fills a line
///   from empty in seconds, long before autovacuum analyses `queue_tokens` again. With statistics
///   taken while the table held another, small line, PostgreSQL costs the line's partial index
///   (`WHERE status = 'WAITING'`) as nearly empty, and migration 3's poll
///   (`WHERE token = $1 AND concert_id = $2 AND status = 'WAITING'`) read all of it instead of
///   the primary key: 9,800 rows and 32 ms per poll at 10,000 waiters, measured. Here every lookup
///   of a token is by the token alone (the primary key; a token names its concert,
///   `<concertId>.<random>`, and the concert is compared as a filter), and WAITING is spelled
///   `active_until IS NULL` there, which the partial index cannot serve, so the primary key is the
///   only index to choose. `PostgresLineCostTests` counts the rows a poll reads in that state.
///   The same holds for plans PL/pgSQL keeps per connection: planned while the line was a few
///   rows, a statement keeps its sequential scan until the table is analysed again, and then
///   scans the grown line on every call (3,051 rows for one `end` at 3,000 waiters, measured).
///   Every entry point therefore turns sequential scans off for its own transaction
///   (`set_config(..., true)`, like `synchronous_commit`; a function-level `SET` clause would
///   also undo `synchronous_commit` before the commit): every statement here has an index.
///   The table also gets autovacuum thresholds that follow a fast-growing line.
/// - **Positions in two levels.** Migration 3 counted a waiter's position as the buckets (512
///   arrival numbers each) before its own plus the waiters ahead in its bucket: up to 511 index
///   entries, each a heap visit while polls keep the pages changing (0.46 ms of a poll's 0.6 ms,
///   measured). `queue_blocks` counts waiters per 32 arrival numbers as well, so a position is the
///   buckets before the waiter's, the blocks before its own within its bucket (at most 15) and
///   the waiters ahead in its block (at most 31): n/512 + 15 + 31 rows at most.
/// - **The rate as an argument** (`p_rate`, 0 = none), instead of migration 5's
///   transaction-local setting read by wrappers: one function call per operation, not two.
///
/// Migrations 3 and 5's functions keep their signatures and now hand over to these (an instance
/// still running the previous release during a rolling upgrade keeps working and keeps the
/// blocks right); they can be dropped in a later migration. The statements are in three lists,
/// run in this order: the blocks and the helpers that count and place waiters (here), the
/// operations (`PostgresLineFunctions+Operations.swift`) and the old signatures' hand-overs
/// (`PostgresLineFunctions+Compatibility.swift`).
enum PostgresLineFunctions {
    /// Arrival numbers per block (a bucket, `PostgresSharedStateSchema.bucketSize`, is 16 blocks).
    static let blockSize = 32

    /// Migration 9, in the order it has always run (a released migration never changes).
    static let statements: [String] = blocksAndPositions + operations + compatibility

    /// The blocks table, filled from the line as it is; autovacuum thresholds for a fast-growing
    /// line; the rate setting that the old signatures read; and the helpers every operation
    /// uses to count waiters in and out and to place a token.
    static let blocksAndPositions: [String] = [
        """
        CREATE TABLE queue_blocks (
          concert_id BIGINT NOT NULL,
          block BIGINT NOT NULL,
          waiting BIGINT NOT NULL CHECK (waiting >= 0),
          PRIMARY KEY (concert_id, block)
        )
        """,
        """
        INSERT INTO queue_blocks (concert_id, block, waiting)
          SELECT concert_id, sequence / 32, count(*) FROM queue_tokens WHERE status = 'WAITING' GROUP BY 1, 2
        """,
        // Analysed after 2 % of the rows changed (the default is 10 % + 50 rows), vacuumed after
        // 5 %: polls rewrite rows all the time, and a line grows by thousands a second.
        "ALTER TABLE queue_tokens SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_scale_factor = 0.05)",

        // The rate of migration 5's wrappers, for the old signatures (`compatibility`).
        """
        CREATE FUNCTION concertd_queue_rate_setting() RETURNS BIGINT
        LANGUAGE sql STABLE AS $$
          SELECT coalesce(nullif(current_setting('concertd.admit_per_minute', true), '')::BIGINT, 0)
        $$
        """,

        // A waiter with this arrival number joined: its bucket and block count it. Line lock held.
        """
        CREATE FUNCTION concertd_queue_count_waiter(p_concert BIGINT, p_sequence BIGINT) RETURNS void
        LANGUAGE sql AS $$
          INSERT INTO queue_buckets (concert_id, bucket, waiting) VALUES (p_concert, p_sequence / 512, 1)
            ON CONFLICT (concert_id, bucket) DO UPDATE SET waiting = queue_buckets.waiting + 1;
          INSERT INTO queue_blocks (concert_id, block, waiting) VALUES (p_concert, p_sequence / 32, 1)
            ON CONFLICT (concert_id, block) DO UPDATE SET waiting = queue_blocks.waiting + 1;
        $$
        """,

        // Waiters with these arrival numbers left the line (admitted, ended or dropped): their
        // buckets, blocks and the line's count go down, and empty ones go. Line lock held.
        """
        CREATE OR REPLACE FUNCTION concertd_queue_forget_waiters(p_concert BIGINT, p_sequences BIGINT[]) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          IF coalesce(array_length(p_sequences, 1), 0) = 0 THEN RETURN; END IF;
          UPDATE queue_buckets b SET waiting = b.waiting - d.n
            FROM (SELECT s / 512 AS bucket, count(*) AS n FROM unnest(p_sequences) AS s GROUP BY 1) d
            WHERE b.concert_id = p_concert AND b.bucket = d.bucket;
          DELETE FROM queue_buckets b
            WHERE b.concert_id = p_concert AND b.waiting = 0
              AND b.bucket IN (SELECT DISTINCT s / 512 FROM unnest(p_sequences) AS s);
          UPDATE queue_blocks k SET waiting = k.waiting - d.n
            FROM (SELECT s / 32 AS block, count(*) AS n FROM unnest(p_sequences) AS s GROUP BY 1) d
            WHERE k.concert_id = p_concert AND k.block = d.block;
          DELETE FROM queue_blocks k
            WHERE k.concert_id = p_concert AND k.waiting = 0
              AND k.block IN (SELECT DISTINCT s / 32 FROM unnest(p_sequences) AS s);
          UPDATE queue_lines SET waiting_count = waiting_count - array_length(p_sequences, 1)
            WHERE concert_id = p_concert;
        END
        $$
        """,

        // How many WAITING tokens of the line arrived before `p_sequence`. PL/pgSQL, not SQL: a
        // SQL function called from PL/pgSQL is planned again at every call, a PL/pgSQL one keeps
        // its plan for the session.
        """
        CREATE FUNCTION concertd_queue_position(p_concert BIGINT, p_sequence BIGINT) RETURNS BIGINT
        LANGUAGE plpgsql STABLE AS $$
        BEGIN
          RETURN coalesce((SELECT sum(b.waiting) FROM queue_buckets b
                           WHERE b.concert_id = p_concert AND b.bucket < p_sequence / 512), 0)::BIGINT
               + coalesce((SELECT sum(k.waiting) FROM queue_blocks k
                           WHERE k.concert_id = p_concert AND k.block >= (p_sequence / 512) * 16
                             AND k.block < p_sequence / 32), 0)::BIGINT
               + (SELECT count(*) FROM queue_tokens w
                  WHERE w.concert_id = p_concert AND w.status = 'WAITING'
                    AND w.sequence >= (p_sequence / 32) * 32 AND w.sequence < p_sequence);
        END
        $$
        """,

        // A token's place: status, owner, position and ACTIVE end. (`concert_id + 0` keeps the
        // concert a filter on the row the token finds, never an index condition.)
        """
        CREATE OR REPLACE FUNCTION concertd_queue_ticket(p_token TEXT, p_concert BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT)
        LANGUAGE sql STABLE AS $$
          SELECT t.status, t.user_id,
                 CASE WHEN t.status = 'WAITING' THEN concertd_queue_position(p_concert, t.sequence) ELSE 0 END,
                 t.active_until
          FROM queue_tokens t WHERE t.token = p_token AND t.concert_id + 0 = p_concert
        $$
        """,
    ]
}
