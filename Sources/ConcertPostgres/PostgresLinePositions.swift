/// Migration 11: a waiter's place within its block read from a bitmask, and polls and ends in
/// batches.
///
/// - **Positions without reading the line.** Migration 9 counted the waiters ahead within a
///   waiter's own block of 32 arrival numbers from `queue_tokens` itself: up to 31 index entries,
///   each a heap visit, because polls keep rewriting those pages so they are never all-visible.
///   That count was most of a position's cost (a position alone: 4,660 calls/s against 10,590/s
///   with the mask, pgbench, 8 connections, 10,000 waiters). Each `queue_blocks` row now also
///   keeps a bitmask of which of its 32 arrival numbers are waiting, set on join and cleared when
///   a waiter leaves, under the line lock like the counts. A position is the buckets before the
///   waiter's, the blocks before its own in its bucket, and the bits below its own in its block:
///   n/512 + 16 rows of two small tables, none of `queue_tokens`.
/// - **Polls in batches** (`concertd_queue_poll_many`): every queue-protected request polls its
///   token first, so at an on-sale polls are the most frequent statement. Polls that arrive
///   together in one instance go as one call (`PostgresWaitingRoom`, through `WriteBatcher`):
///   each line in the batch is advanced once, the WAITING tokens are touched in one UPDATE and the
///   ACTIVE ones read in one SELECT; anything else (a token gone idle, unknown, or polled twice in
///   the batch) goes through the single poll, which also drops an idle token. Measured with
///   pgbench (10,000 waiters): 16 polls a call, 4 connections, 18,900 polls/s, against 5,630/s one
///   per call at 8 connections.
/// - **Ends in batches** (`concertd_queue_end_many`): every payment ends its token, and an end
///   takes its line's lock, so under payments alone the ends of one line waited for each other
///   (2.7 ms of an end's 3.4 ms, pg_stat_statements). A batch locks each line once, in concert
///   order, and advances it once.
///
/// The functions keep their names and signatures, so an instance of the previous release keeps
/// working (and keeps the masks right) during a rolling upgrade. The migration first locks
/// `queue_lines` against every line change (polls go on: they do not lock it), so that no join
/// or leave falls between the masks' fill and the new functions.
enum PostgresLinePositions {
    static let statements: [String] = [
        "LOCK TABLE queue_lines IN EXCLUSIVE MODE",
        "ALTER TABLE queue_blocks ADD COLUMN mask BIGINT NOT NULL DEFAULT 0",
        """
        UPDATE queue_blocks k SET mask = m.mask
          FROM (SELECT concert_id, sequence / 32 AS block, bit_or(1::BIGINT << (sequence % 32)::INT) AS mask
                FROM queue_tokens WHERE status = 'WAITING' GROUP BY 1, 2) m
          WHERE k.concert_id = m.concert_id AND k.block = m.block
        """,

        // A waiter with this arrival number joined: its bucket, block and bit count it. Line lock held.
        """
        CREATE OR REPLACE FUNCTION concertd_queue_count_waiter(p_concert BIGINT, p_sequence BIGINT) RETURNS void
        LANGUAGE sql AS $$
          INSERT INTO queue_buckets (concert_id, bucket, waiting) VALUES (p_concert, p_sequence / 512, 1)
            ON CONFLICT (concert_id, bucket) DO UPDATE SET waiting = queue_buckets.waiting + 1;
          INSERT INTO queue_blocks (concert_id, block, waiting, mask)
            VALUES (p_concert, p_sequence / 32, 1, 1::BIGINT << (p_sequence % 32)::INT)
            ON CONFLICT (concert_id, block) DO UPDATE
              SET waiting = queue_blocks.waiting + 1, mask = queue_blocks.mask | excluded.mask;
        $$
        """,

        // Waiters with these arrival numbers left the line: their buckets, blocks, bits and the
        // line's count go down, and empty ones go. Line lock held.
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
          UPDATE queue_blocks k SET waiting = k.waiting - d.n, mask = k.mask & ~d.bits
            FROM (SELECT s / 32 AS block, count(*) AS n, bit_or(1::BIGINT << (s % 32)::INT) AS bits
                  FROM unnest(p_sequences) AS s GROUP BY 1) d
            WHERE k.concert_id = p_concert AND k.block = d.block;
          DELETE FROM queue_blocks k
            WHERE k.concert_id = p_concert AND k.waiting = 0
              AND k.block IN (SELECT DISTINCT s / 32 FROM unnest(p_sequences) AS s);
          UPDATE queue_lines SET waiting_count = waiting_count - array_length(p_sequences, 1)
            WHERE concert_id = p_concert;
        END
        $$
        """,

        // How many WAITING tokens of the line arrived before `p_sequence`.
        """
        CREATE OR REPLACE FUNCTION concertd_queue_position(p_concert BIGINT, p_sequence BIGINT) RETURNS BIGINT
        LANGUAGE plpgsql STABLE AS $$
        BEGIN
          RETURN coalesce((SELECT sum(b.waiting) FROM queue_buckets b
                           WHERE b.concert_id = p_concert AND b.bucket < p_sequence / 512), 0)::BIGINT
               + coalesce((SELECT sum(CASE WHEN k.block < p_sequence / 32 THEN k.waiting
                                           ELSE bit_count((k.mask & ((1::BIGINT << (p_sequence % 32)::INT) - 1))::BIT(64)) END)
                           FROM queue_blocks k
                           WHERE k.concert_id = p_concert AND k.block >= (p_sequence / 512) * 16
                             AND k.block <= p_sequence / 32), 0)::BIGINT;
        END
        $$
        """,

        // WaitingLine.poll, as in migration 9 with the position from the mask.
        """
        CREATE OR REPLACE FUNCTION concertd_queue_poll(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                            p_active_ms BIGINT, p_idle_ms BIGINT, p_rate BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_status TEXT;
          v_sequence BIGINT;
          v_user BIGINT;
          v_until BIGINT;
          v_concert BIGINT;
          v_position BIGINT;
        BEGIN
          -- As durable as Redis with appendfsync everysec (see migration 3): no WAL flush waited
          -- for; and index plans only, whatever the table looked like when a plan was made.
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true);
          -- concertd_queue_advance_if_needed, written out: a poll is the hot path, and each nested
          -- call or statement is one more executor start in PL/pgSQL.
          IF EXISTS (SELECT 1 FROM queue_lines l
                     WHERE l.concert_id = p_concert AND l.waiting_count > 0 AND l.active_count < p_max
                       AND l.rate_blocked_until <= p_now)
             OR EXISTS (SELECT 1 FROM queue_tokens t
                        WHERE t.concert_id = p_concert AND t.status = 'ACTIVE' AND t.active_until <= p_now) THEN
            PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
            PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms, p_rate);
          END IF;
          -- The touch and the position in one statement (concertd_queue_position's arithmetic).
          -- WAITING is spelled `active_until IS NULL` in lookups by token (the table's CHECK makes
          -- them the same), so that the line's partial index (WHERE status = 'WAITING') is never a
          -- candidate: with stale statistics PostgreSQL would read all of it.
          UPDATE queue_tokens t SET last_seen = greatest(t.last_seen, p_now)
            WHERE t.token = p_token AND t.active_until IS NULL AND t.last_seen + p_idle_ms > p_now
            RETURNING t.user_id, t.concert_id,
              coalesce((SELECT sum(b.waiting) FROM queue_buckets b
                        WHERE b.concert_id = p_concert AND b.bucket < t.sequence / 512), 0)::BIGINT
              + coalesce((SELECT sum(CASE WHEN k.block < t.sequence / 32 THEN k.waiting
                                          ELSE bit_count((k.mask & ((1::BIGINT << (t.sequence % 32)::INT) - 1))::BIT(64)) END)
                          FROM queue_blocks k
                          WHERE k.concert_id = p_concert AND k.block >= (t.sequence / 512) * 16
                            AND k.block <= t.sequence / 32), 0)::BIGINT
            INTO v_user, v_concert, v_position;
          IF FOUND THEN
            IF v_concert <> p_concert THEN RETURN; END IF;
            o_status := 'WAITING';
            o_user_id := v_user;
            o_position := v_position;
            o_active_until := NULL;
            RETURN NEXT;
            RETURN;
          END IF;
          SELECT t.status, t.user_id, t.active_until, t.concert_id INTO v_status, v_user, v_until, v_concert
            FROM queue_tokens t WHERE t.token = p_token;
          IF NOT FOUND OR v_concert <> p_concert THEN RETURN; END IF;
          IF v_status = 'ACTIVE' THEN
            IF v_until > p_now THEN
              o_status := 'ACTIVE';
              o_user_id := v_user;
              o_position := 0;
              o_active_until := v_until;
              RETURN NEXT;
            END IF;
            RETURN;
          END IF;
          -- WAITING and gone idle: it loses its place (checked again under the line lock).
          PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
          DELETE FROM queue_tokens
            WHERE token = p_token AND active_until IS NULL AND last_seen + p_idle_ms <= p_now
            RETURNING sequence INTO v_sequence;
          IF FOUND THEN
            PERFORM concertd_queue_forget_waiters(p_concert, ARRAY[v_sequence]);
            RETURN;
          END IF;
          RETURN QUERY SELECT * FROM concertd_queue_ticket(p_token, p_concert) t
            WHERE t.o_status = 'WAITING' OR t.o_active_until > p_now;
        END
        $$
        """,

        // The pre-queue's draw, now also setting the masks.
        """
        CREATE OR REPLACE FUNCTION concertd_queue_draw(p_concert BIGINT, p_tokens TEXT[]) RETURNS BIGINT
        LANGUAGE plpgsql AS $$
        DECLARE
          v_drawn BIGINT;
          v_count BIGINT;
        BEGIN
          PERFORM set_config('enable_seqscan', 'off', true);
          INSERT INTO queue_lines (concert_id) VALUES (p_concert) ON CONFLICT (concert_id) DO NOTHING;
          SELECT drawn_entrants INTO v_drawn FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
          IF v_drawn IS NOT NULL THEN RETURN v_drawn; END IF;
          WITH drawn AS (
            UPDATE queue_tokens t SET sequence = o.place
            FROM unnest(p_tokens) WITH ORDINALITY AS o(token, place)
            WHERE t.token = o.token AND t.concert_id = p_concert AND t.status = 'WAITING'
            RETURNING 1
          )
          SELECT count(*) INTO v_count FROM drawn;
          -- (A token that left meanwhile leaves a gap in 1..n: positions count waiters, not numbers.)
          DELETE FROM queue_buckets WHERE concert_id = p_concert;
          INSERT INTO queue_buckets (concert_id, bucket, waiting)
            SELECT p_concert, sequence / 512, count(*) FROM queue_tokens
            WHERE concert_id = p_concert AND status = 'WAITING' GROUP BY 1, 2;
          DELETE FROM queue_blocks WHERE concert_id = p_concert;
          INSERT INTO queue_blocks (concert_id, block, waiting, mask)
            SELECT p_concert, sequence / 32, count(*), bit_or(1::BIGINT << (sequence % 32)::INT) FROM queue_tokens
            WHERE concert_id = p_concert AND status = 'WAITING' GROUP BY 1, 2;
          UPDATE queue_lines SET drawn_entrants = v_count WHERE concert_id = p_concert;
          RETURN v_count;
        END
        $$
        """,

        // Many polls in one call: item i is p_tokens[i] of line p_concerts[i] at time p_nows[i],
        // with that line's policy in the other arrays; a row per live token, by its index (none
        // for a token that is gone). Each line is advanced once, at the latest time of its items
        // (the items of one batch are a few milliseconds apart).
        """
        CREATE FUNCTION concertd_queue_poll_many(p_tokens TEXT[], p_concerts BIGINT[], p_nows BIGINT[], p_max BIGINT[],
                                                 p_active_ms BIGINT[], p_idle_ms BIGINT[], p_rate BIGINT[])
        RETURNS TABLE (o_index BIGINT, o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_line RECORD;
          v_item RECORD;
          v_done BIGINT[] := '{}';
        BEGIN
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true);
          FOR v_line IN
            SELECT DISTINCT ON (c) c, max(t) OVER (PARTITION BY c) AS t, m, a, i, r
            FROM unnest(p_concerts, p_nows, p_max, p_active_ms, p_idle_ms, p_rate) AS u(c, t, m, a, i, r)
          LOOP
            IF EXISTS (SELECT 1 FROM queue_lines l
                       WHERE l.concert_id = v_line.c AND l.waiting_count > 0 AND l.active_count < v_line.m
                         AND l.rate_blocked_until <= v_line.t)
               OR EXISTS (SELECT 1 FROM queue_tokens t
                          WHERE t.concert_id = v_line.c AND t.status = 'ACTIVE' AND t.active_until <= v_line.t) THEN
              PERFORM 1 FROM queue_lines WHERE concert_id = v_line.c FOR UPDATE;
              PERFORM concertd_queue_advance(v_line.c, v_line.t, v_line.m, v_line.a, v_line.i, v_line.r);
            END IF;
          END LOOP;
          -- WAITING tokens touched in one UPDATE (a token twice in the batch is updated and
          -- returned once), ACTIVE ones read; positions as in concertd_queue_position.
          FOR v_item IN
            WITH items AS (
              SELECT * FROM unnest(p_tokens, p_concerts, p_nows, p_idle_ms) WITH ORDINALITY AS u(token, concert, moment, idle, n)
            ), touched AS (
              UPDATE queue_tokens t SET last_seen = greatest(t.last_seen, items.moment)
                FROM items
                WHERE t.token = items.token AND t.active_until IS NULL AND t.last_seen + items.idle > items.moment
                  AND t.concert_id + 0 = items.concert
                RETURNING items.n, t.user_id, t.concert_id, t.sequence
            ), active AS (
              SELECT items.n, t.user_id, t.active_until FROM items JOIN queue_tokens t ON t.token = items.token
              WHERE t.active_until > items.moment AND t.concert_id + 0 = items.concert
            )
            SELECT touched.n, 'WAITING' AS status, touched.user_id,
                   coalesce((SELECT sum(b.waiting) FROM queue_buckets b
                             WHERE b.concert_id = touched.concert_id AND b.bucket < touched.sequence / 512), 0)::BIGINT
                   + coalesce((SELECT sum(CASE WHEN k.block < touched.sequence / 32 THEN k.waiting
                                               ELSE bit_count((k.mask & ((1::BIGINT << (touched.sequence % 32)::INT) - 1))::BIT(64)) END)
                               FROM queue_blocks k
                               WHERE k.concert_id = touched.concert_id AND k.block >= (touched.sequence / 512) * 16
                                 AND k.block <= touched.sequence / 32), 0)::BIGINT AS position,
                   NULL::BIGINT AS until
              FROM touched
            UNION ALL
            SELECT active.n, 'ACTIVE', active.user_id, 0, active.active_until FROM active
          LOOP
            IF NOT v_item.n = ANY (v_done) THEN
              v_done := v_done || v_item.n;
              o_index := v_item.n; o_status := v_item.status; o_user_id := v_item.user_id;
              o_position := v_item.position; o_active_until := v_item.until;
              RETURN NEXT;
            END IF;
          END LOOP;
          -- The rest (gone idle, unknown, or polled twice in this batch) one by one: the single
          -- poll drops a token gone idle.
          FOR v_item IN
            SELECT u.token, u.concert, u.moment, u.m, u.a, u.i, u.r, u.n
            FROM unnest(p_tokens, p_concerts, p_nows, p_max, p_active_ms, p_idle_ms, p_rate)
                   WITH ORDINALITY AS u(token, concert, moment, m, a, i, r, n)
            WHERE NOT u.n = ANY (v_done)
          LOOP
            RETURN QUERY SELECT v_item.n, p.o_status, p.o_user_id, p.o_position, p.o_active_until
              FROM concertd_queue_poll(v_item.token, v_item.concert, v_item.moment, v_item.m, v_item.a, v_item.i, v_item.r) p;
          END LOOP;
        END
        $$
        """,

        // Many ends in one call, item i as in concertd_queue_poll_many: each line with a token
        // among them is locked once (in concert order, so two batches never deadlock), its tokens
        // deleted together, its counts and blocks brought down once and the line advanced once.
        // A row per item: whether it ended a token (a token twice in the batch: its first item).
        """
        CREATE FUNCTION concertd_queue_end_many(p_tokens TEXT[], p_concerts BIGINT[], p_nows BIGINT[], p_max BIGINT[],
                                                p_active_ms BIGINT[], p_idle_ms BIGINT[], p_rate BIGINT[])
        RETURNS TABLE (o_index BIGINT, o_ended BOOLEAN)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_line RECORD;
          v_active BIGINT;
          v_left BIGINT[];
          v_gone TEXT[];
          v_ended TEXT[] := '{}';
        BEGIN
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true);
          FOR v_line IN
            SELECT DISTINCT ON (c) c, max(t) OVER (PARTITION BY c) AS t, m, a, i, r
            FROM unnest(p_concerts, p_nows, p_max, p_active_ms, p_idle_ms, p_rate) AS u(c, t, m, a, i, r)
            ORDER BY c
          LOOP
            CONTINUE WHEN NOT EXISTS (
              SELECT 1 FROM unnest(p_tokens, p_concerts) AS u(token, c)
              JOIN queue_tokens q ON q.token = u.token
              WHERE u.c = v_line.c AND q.concert_id + 0 = v_line.c);
            PERFORM 1 FROM queue_lines WHERE concert_id = v_line.c FOR UPDATE;
            WITH gone AS (
              DELETE FROM queue_tokens q
                USING (SELECT DISTINCT u.token FROM unnest(p_tokens, p_concerts) AS u(token, c) WHERE u.c = v_line.c) mine
                WHERE q.token = mine.token AND q.concert_id + 0 = v_line.c
                RETURNING q.token, q.status, q.sequence
            )
            SELECT count(*) FILTER (WHERE status = 'ACTIVE'), array_agg(sequence) FILTER (WHERE status = 'WAITING'),
                   array_agg(token)
              INTO v_active, v_left, v_gone FROM gone;
            IF v_active > 0 THEN
              UPDATE queue_lines SET active_count = active_count - v_active WHERE concert_id = v_line.c;
            END IF;
            PERFORM concertd_queue_forget_waiters(v_line.c, v_left);
            PERFORM concertd_queue_advance(v_line.c, v_line.t, v_line.m, v_line.a, v_line.i, v_line.r);
            v_ended := v_ended || coalesce(v_gone, '{}');
          END LOOP;
          RETURN QUERY
            SELECT u.n, u.token = ANY (v_ended) AND u.n = min(u.n) OVER (PARTITION BY u.token)
            FROM unnest(p_tokens) WITH ORDINALITY AS u(token, n);
        END
        $$
        """,
    ]
}
