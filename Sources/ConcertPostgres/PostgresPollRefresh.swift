/// Migration 16: a poll moves its token's "last seen" ahead by the refresh, and a poll that finds it
/// already seen at or after its own moment only reads (`QueuePolicy.pollRefreshMilliseconds`, the
/// rule's home).
///
/// Before, every poll updated its token's row: at an on-sale polls are most of what the database
/// does, and each was a new row version, its WAL record, and later its vacuum. A client polls every
/// few seconds; with the refresh (a twelfth of the idle time, at most 5 s) it writes its row about
/// once per refresh and reads it otherwise, so a poll batch is mostly an index lookup per token
/// and the position arithmetic.
///
/// The batch also looks each token up once instead of three times (to touch, to read a fresh one,
/// to read an ACTIVE one): the UPDATE finds the rows to touch by their address (`ctid`, a TID scan)
/// from that one lookup. pgbench on `concertd_queue_poll_many`, 10,000 waiters, batches of 21, 2
/// connections, durable: 1,508 calls/s before, 1,776 with the refresh, 2,220–2,320 with the single
/// lookup and index scans for the positions; over HTTP the write-ahead log per poll fell from
/// 100 to 34 bytes. Two statements fewer per call in the common case (the lines' check in the
/// query that lists them, the loop for the rest skipped when every item was answered): another
/// 7–11 % (2,184–2,292 calls/s against 2,043–2,065). Measured in docs/benchmarks.md ("Polls that
/// only read").
///
/// Same names and signatures as migrations 11 and 15 (an instance of the previous release keeps
/// working, with its polls writing as before), and `force_generic_plan` kept in the batch
/// function's definition (a `CREATE OR REPLACE` resets a function's settings). The batch keeps
/// migration 15's lock order: only the touched tokens are locked, in token order.
enum PostgresPollRefresh {
    static let statements: [String] = [
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
          -- A token seen at or after this moment is only read (WaitingLine.poll); otherwise it is
          -- seen until now + the refresh. The position is one call of concertd_queue_position: a
          -- single poll runs for a poll that came alone (a quiet service) or for a batch's leftover
          -- items, so under load it is rare, and its arithmetic keeps one home.
          SELECT t.user_id, t.concert_id, t.sequence INTO v_user, v_concert, v_sequence
            FROM queue_tokens t WHERE t.token = p_token AND t.active_until IS NULL AND t.last_seen >= p_now;
          IF NOT FOUND THEN
            UPDATE queue_tokens t SET last_seen = greatest(t.last_seen, p_now + least(p_idle_ms / 12, 5000))
              WHERE t.token = p_token AND t.active_until IS NULL AND t.last_seen + p_idle_ms > p_now
              RETURNING t.user_id, t.concert_id, t.sequence INTO v_user, v_concert, v_sequence;
          END IF;
          IF FOUND THEN
            IF v_concert <> p_concert THEN RETURN; END IF;
            o_status := 'WAITING';
            o_user_id := v_user;
            o_position := concertd_queue_position(p_concert, v_sequence);
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
        """
        CREATE OR REPLACE FUNCTION concertd_queue_poll_many(p_tokens TEXT[], p_concerts BIGINT[], p_nows BIGINT[], p_max BIGINT[],
                                                 p_active_ms BIGINT[], p_idle_ms BIGINT[], p_rate BIGINT[])
        RETURNS TABLE (o_index BIGINT, o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT)
        LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
        DECLARE
          v_line RECORD;
          v_item RECORD;
          v_done BIGINT[] := '{}';
          v_sequence BIGINT;
          v_answered INT := 0;
        BEGIN
          -- Bitmap scans off too: a position's few block rows cost 21 µs each through a bitmap heap scan
          -- and about half that through the index.
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true),
                  set_config('enable_bitmapscan', 'off', true);
          -- Lines first, in concert order, before any token of the batch is locked: only those with
          -- something to do (the check of concertd_queue_advance_if_needed, in the same query).
          FOR v_line IN
            SELECT * FROM (
              SELECT DISTINCT ON (c) c, max(t) OVER (PARTITION BY c) AS t, m, a, i, r
              FROM unnest(p_concerts, p_nows, p_max, p_active_ms, p_idle_ms, p_rate) AS u(c, t, m, a, i, r)
              ORDER BY c) u
            WHERE EXISTS (SELECT 1 FROM queue_lines l
                          WHERE l.concert_id = u.c AND l.waiting_count > 0 AND l.active_count < u.m
                            AND l.rate_blocked_until <= u.t)
               OR EXISTS (SELECT 1 FROM queue_tokens t
                          WHERE t.concert_id = u.c AND t.status = 'ACTIVE' AND t.active_until <= u.t)
            ORDER BY c
          LOOP
            PERFORM 1 FROM queue_lines WHERE concert_id = v_line.c FOR UPDATE;
            PERFORM concertd_queue_advance(v_line.c, v_line.t, v_line.m, v_line.a, v_line.i, v_line.r);
          END LOOP;
          -- Each item's token looked up once (`looked`). WAITING tokens not seen since before their moment
          -- are touched in one UPDATE that finds them by their row's address, in token order (the items
          -- sorted on the outer side of the join); those seen since are only read (WaitingLine.poll);
          -- ACTIVE ones are read. A token asked twice is touched once: its other item, like a token gone
          -- idle or unknown, goes through the loop below. Positions as in concertd_queue_position.
          FOR v_item IN
            WITH items AS (
              SELECT * FROM unnest(p_tokens, p_concerts, p_nows, p_idle_ms) WITH ORDINALITY AS u(token, concert, moment, idle, n)
            ), looked AS MATERIALIZED (
              SELECT items.n, items.token, items.moment, items.idle, t.ctid AS tid, t.user_id, t.concert_id, t.sequence,
                     t.active_until, t.last_seen
              FROM items JOIN queue_tokens t ON t.token = items.token AND t.concert_id + 0 = items.concert
            ), touched AS (
              UPDATE queue_tokens t SET last_seen = l.moment + least(l.idle / 12, 5000)
                FROM (SELECT * FROM looked WHERE active_until IS NULL AND last_seen < moment AND last_seen + idle > moment
                      ORDER BY token) l
                WHERE t.ctid = l.tid AND t.active_until IS NULL AND t.last_seen < l.moment AND t.last_seen + l.idle > l.moment
                RETURNING l.n, t.user_id, t.concert_id, t.sequence
            ), waiting AS (
              SELECT * FROM touched
              UNION ALL
              SELECT n, user_id, concert_id, sequence FROM looked WHERE active_until IS NULL AND last_seen >= moment
            )
            SELECT w.n, 'WAITING' AS status, w.user_id,
                   coalesce((SELECT sum(b.waiting) FROM queue_buckets b
                             WHERE b.concert_id = w.concert_id AND b.bucket < w.sequence / 512), 0)::BIGINT
                   + coalesce((SELECT sum(CASE WHEN k.block < w.sequence / 32 THEN k.waiting
                                               ELSE bit_count((k.mask & ((1::BIGINT << (w.sequence % 32)::INT) - 1))::BIT(64)) END)
                               FROM queue_blocks k
                               WHERE k.concert_id = w.concert_id AND k.block >= (w.sequence / 512) * 16
                                 AND k.block <= w.sequence / 32), 0)::BIGINT AS position,
                   NULL::BIGINT AS until
              FROM waiting w
            UNION ALL
            SELECT n, 'ACTIVE', user_id, 0, active_until FROM looked WHERE active_until > moment
          LOOP
            IF NOT v_item.n = ANY (v_done) THEN
              v_done := v_done || v_item.n;
              v_answered := v_answered + 1;
              o_index := v_item.n; o_status := v_item.status; o_user_id := v_item.user_id;
              o_position := v_item.position; o_active_until := v_item.until;
              RETURN NEXT;
            END IF;
          END LOOP;
          -- The rest (gone idle, unknown, or polled twice in this batch) one by one, if any.
          IF v_answered < coalesce(array_length(p_tokens, 1), 0) THEN
            FOR v_item IN
              SELECT u.token, u.concert, u.moment, u.m, u.a, u.i, u.r, u.n
              FROM unnest(p_tokens, p_concerts, p_nows, p_max, p_active_ms, p_idle_ms, p_rate)
                     WITH ORDINALITY AS u(token, concert, moment, m, a, i, r, n)
              WHERE NOT u.n = ANY (v_done)
            LOOP
              IF EXISTS (SELECT 1 FROM queue_tokens t
                         WHERE t.token = v_item.token AND t.active_until IS NULL AND t.last_seen + v_item.i <= v_item.moment
                           AND t.concert_id + 0 = v_item.concert) THEN
                -- Gone idle: no answer, and it loses its place. Dropped now only if its line's lock is
                -- free: this batch holds row locks on the tokens it touched, and a line change that
                -- holds the line's lock may be waiting for one of them (admitting it); otherwise the
                -- line's next advance or sweep drops it.
                PERFORM 1 FROM queue_lines WHERE concert_id = v_item.concert FOR UPDATE SKIP LOCKED;
                IF FOUND THEN
                  DELETE FROM queue_tokens
                    WHERE token = v_item.token AND active_until IS NULL AND last_seen + v_item.i <= v_item.moment
                    RETURNING sequence INTO v_sequence;
                  IF FOUND THEN PERFORM concertd_queue_forget_waiters(v_item.concert, ARRAY[v_sequence]); END IF;
                END IF;
                CONTINUE;
              END IF;
              RETURN QUERY SELECT v_item.n, p.o_status, p.o_user_id, p.o_position, p.o_active_until
                FROM concertd_queue_poll(v_item.token, v_item.concert, v_item.moment, v_item.m, v_item.a, v_item.i, v_item.r) p;
            END LOOP;
          END IF;
        END
        $$
        """,
    ]
}
