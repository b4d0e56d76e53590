/// Migration 15: poll batches lock their tokens in one order, so that two batches never deadlock.
///
/// Migration 11's `concertd_queue_poll_many` touched its WAITING tokens in the order of its
/// items. Two batches that shared tokens in different orders (one user's parallel requests
/// through two instances, or through an instance's two poll calls in flight) could each hold a
/// row the other needed; PostgreSQL found the deadlock after `deadlock_timeout` (1 s) and
/// aborted one batch, whose every caller then got an error. pgbench, 10,000 waiters, random
/// tokens: batches of 64 on 2 connections 55–231 calls/s with 0.2–1.3 % of them aborted, on 4
/// connections 39/s with 2 %; batches of 16 now and then. The touch now joins the items sorted by
/// token (on the outer side of the join, so rows are locked in that order), and the lines are
/// advanced in concert order before any token is locked: 510–575 calls/s of 64 (35,000 polls/s)
/// on 2 connections, none aborted, and batches of 16 as fast as before (1,600–1,850 calls/s
/// against 1,550–1,890). A separate `SELECT … ORDER BY token FOR NO KEY UPDATE` first would
/// have guaranteed the order whatever the plan, but locking each row before updating it cost
/// 20–40 % (980–1,770 calls/s of 16); the plan is fixed (`force_generic_plan`, migration 12), and
/// `PostgresPollLockOrderTests` races opposite orders to catch a plan that stops keeping it.
///
/// A token gone idle used to be dropped through the single poll, which waits for its line's lock
/// while the batch holds its touched tokens: a join, end or advance holding that lock and
/// admitting one of those tokens would wait for the batch in turn. Such a token is now dropped
/// only when the line's lock is free (`SKIP LOCKED`); its answer is "gone" either way, and the
/// line's next advance or sweep drops it otherwise.
///
/// Same name and signature, and `force_generic_plan` kept in the definition (a `CREATE OR
/// REPLACE` resets a function's settings).
enum PostgresPollLockOrder {
    static let statements: [String] = [
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
        BEGIN
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true);
          -- Lines first, in concert order, before any token of the batch is locked.
          FOR v_line IN
            SELECT DISTINCT ON (c) c, max(t) OVER (PARTITION BY c) AS t, m, a, i, r
            FROM unnest(p_concerts, p_nows, p_max, p_active_ms, p_idle_ms, p_rate) AS u(c, t, m, a, i, r)
            ORDER BY c
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
          -- WAITING tokens touched in one UPDATE, in token order (the items sorted on the outer side of
          -- the join), ACTIVE ones read; positions as in concertd_queue_position.
          FOR v_item IN
            WITH items AS (
              SELECT * FROM unnest(p_tokens, p_concerts, p_nows, p_idle_ms) WITH ORDINALITY AS u(token, concert, moment, idle, n)
            ), touched AS (
              UPDATE queue_tokens t SET last_seen = greatest(t.last_seen, items.moment)
                FROM (SELECT * FROM items ORDER BY token) items
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
          -- The rest (gone idle, unknown, or polled twice in this batch) one by one.
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
        END
        $$
        """,
    ]
}
