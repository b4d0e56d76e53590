extension PostgresLineFunctions {
    /// The waiting room's operations, one function each, that `PostgresWaitingRoom` calls (poll,
    /// join, end, sweep, counts, the draw), and the advance that they run under the line's lock.
    static let operations: [String] = [
        // WaitingLine.advance: expire ACTIVE tokens whose time is up, then admit from the head
        // while the cap and the last 60 seconds' admissions (`p_rate` a minute, 0 = no rate)
        // allow, dropping waiters that went idle. Line lock held.
        """
        CREATE FUNCTION concertd_queue_advance(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                               p_idle_ms BIGINT, p_rate BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
          v_expired BIGINT;
          v_active BIGINT;
          v_waiting BIGINT;
          v_left BIGINT[];
          v_admitted BIGINT;
          v_recent BIGINT := 0;
          v_room BIGINT;
          v_blocked BIGINT;
          v_was_blocked BIGINT;
        BEGIN
          WITH gone AS (
            DELETE FROM queue_tokens
            WHERE concert_id = p_concert AND status = 'ACTIVE' AND active_until <= p_now
            RETURNING 1
          )
          SELECT count(*) INTO v_expired FROM gone;
          IF v_expired > 0 THEN
            UPDATE queue_lines SET active_count = active_count - v_expired WHERE concert_id = p_concert;
          END IF;
          DELETE FROM queue_admissions WHERE concert_id = p_concert AND admitted_at <= p_now - 60000;
          IF p_rate > 0 THEN
            SELECT count(*) INTO v_recent FROM queue_admissions WHERE concert_id = p_concert;
          END IF;
          SELECT active_count, waiting_count, rate_blocked_until INTO v_active, v_waiting, v_was_blocked
            FROM queue_lines WHERE concert_id = p_concert;
          LOOP
            v_room := p_max - v_active;
            IF p_rate > 0 THEN v_room := least(v_room, p_rate - v_recent); END IF;
            EXIT WHEN v_room <= 0 OR v_waiting <= 0;
            WITH head AS (
              SELECT token, last_seen + p_idle_ms <= p_now AS idle FROM queue_tokens
              WHERE concert_id = p_concert AND status = 'WAITING'
              ORDER BY sequence LIMIT v_room
            ), dropped AS (
              DELETE FROM queue_tokens t USING head
              WHERE t.token = head.token AND head.idle
              RETURNING t.sequence
            ), admitted AS (
              UPDATE queue_tokens t SET status = 'ACTIVE', active_until = p_now + p_active_ms FROM head
              WHERE t.token = head.token AND NOT head.idle
              RETURNING t.sequence
            )
            SELECT array(SELECT sequence FROM dropped) || array(SELECT sequence FROM admitted),
                   (SELECT count(*) FROM admitted)
              INTO v_left, v_admitted;
            EXIT WHEN coalesce(array_length(v_left, 1), 0) = 0;
            PERFORM concertd_queue_forget_waiters(p_concert, v_left);
            v_active := v_active + v_admitted;
            v_recent := v_recent + v_admitted;
            v_waiting := v_waiting - array_length(v_left, 1);
            IF v_admitted > 0 THEN
              UPDATE queue_lines SET active_count = v_active WHERE concert_id = p_concert;
              INSERT INTO queue_admissions (concert_id, admitted_at) SELECT p_concert, p_now FROM generate_series(1, v_admitted);
            END IF;
          END LOOP;
          v_blocked := 0;
          IF p_rate > 0 AND v_recent >= p_rate AND v_waiting > 0 AND v_active < p_max THEN
            SELECT coalesce(min(admitted_at) + 60000, 0) INTO v_blocked FROM queue_admissions WHERE concert_id = p_concert;
          END IF;
          IF v_blocked IS DISTINCT FROM v_was_blocked THEN
            UPDATE queue_lines SET rate_blocked_until = v_blocked WHERE concert_id = p_concert;
          END IF;
        END
        $$
        """,

        // Locks the line and advances it when there is something to do: a free slot (and room in
        // the rate's window) with someone waiting, or an ACTIVE token past its time. The check
        // reads without a lock (every change advances again under the lock).
        """
        CREATE FUNCTION concertd_queue_advance_if_needed(p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                                         p_active_ms BIGINT, p_idle_ms BIGINT, p_rate BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM queue_lines l
                     WHERE l.concert_id = p_concert AND l.waiting_count > 0 AND l.active_count < p_max
                       AND l.rate_blocked_until <= p_now)
             OR EXISTS (SELECT 1 FROM queue_tokens t
                        WHERE t.concert_id = p_concert AND t.status = 'ACTIVE' AND t.active_until <= p_now) THEN
            PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
            PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms, p_rate);
          END IF;
        END
        $$
        """,

        // WaitingLine.poll. Nothing locked in the common case: the touch is a conditional update
        // of the token's own row (found by its key), then its position is read.
        """
        CREATE FUNCTION concertd_queue_poll(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
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
              + coalesce((SELECT sum(k.waiting) FROM queue_blocks k
                          WHERE k.concert_id = p_concert AND k.block >= (t.sequence / 512) * 16
                            AND k.block < t.sequence / 32), 0)::BIGINT
              + (SELECT count(*) FROM queue_tokens w
                 WHERE w.concert_id = p_concert AND w.status = 'WAITING'
                   AND w.sequence >= (t.sequence / 32) * 32 AND w.sequence < t.sequence)
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

        // WaitingLine.join: the user's live token (created false), or a new one at the back.
        """
        CREATE FUNCTION concertd_queue_join(p_user BIGINT, p_concert BIGINT, p_token TEXT, p_now BIGINT, p_max BIGINT,
                                            p_active_ms BIGINT, p_idle_ms BIGINT, p_rate BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT, o_token TEXT,
                       o_created BOOLEAN)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_existing TEXT;
          v_status TEXT;
          v_last_seen BIGINT;
          v_sequence BIGINT;
        BEGIN
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true);
          INSERT INTO queue_lines (concert_id) VALUES (p_concert) ON CONFLICT (concert_id) DO NOTHING;
          PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms, p_rate);
          SELECT t.token, t.status, t.last_seen INTO v_existing, v_status, v_last_seen
            FROM queue_tokens t WHERE t.concert_id = p_concert AND t.user_id = p_user;
          IF FOUND THEN
            IF v_status = 'ACTIVE' OR v_last_seen + p_idle_ms > p_now THEN
              UPDATE queue_tokens SET last_seen = greatest(last_seen, p_now) WHERE token = v_existing AND active_until IS NULL;
              RETURN QUERY SELECT t.*, v_existing, false FROM concertd_queue_ticket(v_existing, p_concert) t;
              RETURN;
            END IF;
            DELETE FROM queue_tokens WHERE token = v_existing RETURNING sequence INTO v_sequence;
            PERFORM concertd_queue_forget_waiters(p_concert, ARRAY[v_sequence]);
          END IF;
          UPDATE queue_lines SET next_sequence = next_sequence + 1, waiting_count = waiting_count + 1
            WHERE concert_id = p_concert RETURNING next_sequence - 1 INTO v_sequence;
          INSERT INTO queue_tokens (token, concert_id, user_id, sequence, status, last_seen)
            VALUES (p_token, p_concert, p_user, v_sequence, 'WAITING', p_now);
          PERFORM concertd_queue_count_waiter(p_concert, v_sequence);
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms, p_rate);
          RETURN QUERY SELECT t.*, p_token, true FROM concertd_queue_ticket(p_token, p_concert) t;
        END
        $$
        """,

        // WaitingLine.end: remove the token, then advance so the head moves up.
        """
        CREATE FUNCTION concertd_queue_end(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                           p_active_ms BIGINT, p_idle_ms BIGINT, p_rate BIGINT) RETURNS boolean
        LANGUAGE plpgsql AS $$
        DECLARE
          v_status TEXT;
          v_sequence BIGINT;
        BEGIN
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true);
          IF NOT EXISTS (SELECT 1 FROM queue_tokens WHERE token = p_token AND concert_id + 0 = p_concert) THEN
            RETURN false;
          END IF;
          PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
          DELETE FROM queue_tokens WHERE token = p_token AND concert_id + 0 = p_concert
            RETURNING status, sequence INTO v_status, v_sequence;
          IF v_status = 'ACTIVE' THEN
            UPDATE queue_lines SET active_count = active_count - 1 WHERE concert_id = p_concert;
          ELSIF v_status = 'WAITING' THEN
            PERFORM concertd_queue_forget_waiters(p_concert, ARRAY[v_sequence]);
          END IF;
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms, p_rate);
          RETURN v_status IS NOT NULL;
        END
        $$
        """,

        // WaitingLine.sweep for one line, by whichever instance gets its lock: advance, and at
        // most once a second drop idle waiters anywhere in the line (a scan of the line), then
        // advance again. A line locked by someone else is skipped: that one advances it.
        """
        CREATE FUNCTION concertd_queue_sweep(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                             p_idle_ms BIGINT, p_rate BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
          v_swept_at BIGINT;
          v_left BIGINT[];
        BEGIN
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true);
          SELECT idle_swept_at INTO v_swept_at FROM queue_lines WHERE concert_id = p_concert FOR UPDATE SKIP LOCKED;
          IF NOT FOUND THEN RETURN; END IF;
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms, p_rate);
          IF v_swept_at + 1000 <= p_now THEN
            WITH gone AS (
              DELETE FROM queue_tokens
              WHERE concert_id = p_concert AND status = 'WAITING' AND last_seen + p_idle_ms <= p_now
              RETURNING sequence
            )
            SELECT array(SELECT sequence FROM gone) INTO v_left;
            UPDATE queue_lines SET idle_swept_at = p_now WHERE concert_id = p_concert;
            IF array_length(v_left, 1) > 0 THEN
              PERFORM concertd_queue_forget_waiters(p_concert, v_left);
              PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms, p_rate);
            END IF;
          END IF;
        END
        $$
        """,

        // The line's counts after advance, and its admissions in the last 60 seconds (which
        // outlive an emptied line): one call for the operator's view and the gauges.
        """
        CREATE FUNCTION concertd_queue_counts(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                              p_idle_ms BIGINT, p_rate BIGINT)
        RETURNS TABLE (o_waiting BIGINT, o_active BIGINT, o_admitted BIGINT)
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true);
          PERFORM concertd_queue_advance_if_needed(p_concert, p_now, p_max, p_active_ms, p_idle_ms, p_rate);
          RETURN QUERY SELECT coalesce((SELECT l.waiting_count FROM queue_lines l WHERE l.concert_id = p_concert), 0),
                              coalesce((SELECT l.active_count FROM queue_lines l WHERE l.concert_id = p_concert), 0),
                              (SELECT count(*) FROM queue_admissions a
                               WHERE a.concert_id = p_concert AND a.admitted_at > p_now - 60000);
        END
        $$
        """,

        // The pre-queue's draw (migration 5's), now also counting the blocks again.
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
          INSERT INTO queue_blocks (concert_id, block, waiting)
            SELECT p_concert, sequence / 32, count(*) FROM queue_tokens
            WHERE concert_id = p_concert AND status = 'WAITING' GROUP BY 1, 2;
          UPDATE queue_lines SET drawn_entrants = v_count WHERE concert_id = p_concert;
          RETURN v_count;
        END
        $$
        """,
    ]
}
