/// Migration 3: the waiting room, the rate limiter and the cache generations in PostgreSQL, for
/// deployments without Redis (`PostgresWaitingRoom`, `PostgresRateLimiter`,
/// `PostgresCacheGenerations`).
///
/// The waiting room's rules are `WaitingLine`'s, applied by PL/pgSQL functions so that every
/// operation is one statement (one round trip) and atomic across instances. Time is always the
/// caller's `now`, never the server's clock.
///
/// - `queue_lines`: one row per concert. Every change to a line (join, end, admission, expiry,
///   dropping a waiter) first locks this row, so they happen one at a time per concert, on every
///   instance together: two instances can never both see a free slot and both admit. The row
///   keeps the arrival counter and the WAITING and ACTIVE counts, so "is there anything to do?"
///   is one primary-key read, and the sweeper locks it with SKIP LOCKED (a line being worked on by
///   a request or another instance is advanced by that one).
/// - `queue_tokens`: one row per live token. A poll only moves `last_seen`, which no index
///   covers, so it is a HOT update (no index writes; fillfactor leaves room on the page).
/// - `queue_buckets`: WAITING tokens counted per block of 512 arrival numbers. A waiter's
///   position is the sum of the blocks before its own plus the waiters ahead in its own block:
///   at most n/512 + 511 index entries, never the whole line (see docs/architecture.md).
enum PostgresSharedStateSchema {
    /// Arrival numbers per position bucket. Changing it needs a new migration (it is spelled into
    /// the functions).
    static let bucketSize = 512

    static let statements: [String] = [
        """
        CREATE TABLE queue_lines (
          concert_id BIGINT PRIMARY KEY,
          next_sequence BIGINT NOT NULL DEFAULT 1,
          waiting_count BIGINT NOT NULL DEFAULT 0 CHECK (waiting_count >= 0),
          active_count BIGINT NOT NULL DEFAULT 0 CHECK (active_count >= 0),
          idle_swept_at BIGINT NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE queue_tokens (
          token TEXT PRIMARY KEY,
          concert_id BIGINT NOT NULL,
          user_id BIGINT NOT NULL,
          sequence BIGINT NOT NULL,
          status TEXT NOT NULL CHECK (status IN ('WAITING', 'ACTIVE')),
          last_seen BIGINT NOT NULL,
          active_until BIGINT,
          CHECK ((status = 'ACTIVE') = (active_until IS NOT NULL))
        ) WITH (fillfactor = 70)
        """,
        // One live token per user and line, whatever the code does.
        "CREATE UNIQUE INDEX queue_tokens_one_per_user ON queue_tokens (concert_id, user_id)",
        // The line in order: its head, and the waiters ahead within one bucket.
        "CREATE INDEX queue_tokens_line ON queue_tokens (concert_id, sequence) WHERE status = 'WAITING'",
        // ACTIVE tokens by expiry: the expired ones are a range.
        "CREATE INDEX queue_tokens_expiry ON queue_tokens (concert_id, active_until) WHERE status = 'ACTIVE'",
        """
        CREATE TABLE queue_buckets (
          concert_id BIGINT NOT NULL,
          bucket BIGINT NOT NULL,
          waiting BIGINT NOT NULL CHECK (waiting >= 0),
          PRIMARY KEY (concert_id, bucket)
        )
        """,

        // Waiters with these arrival numbers have left the line (admitted, ended or dropped):
        // their buckets and the line's count go down, and empty buckets go. Line lock held.
        """
        CREATE FUNCTION concertd_queue_forget_waiters(p_concert BIGINT, p_sequences BIGINT[]) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          IF coalesce(array_length(p_sequences, 1), 0) = 0 THEN RETURN; END IF;
          UPDATE queue_buckets b SET waiting = b.waiting - d.n
            FROM (SELECT s / 512 AS bucket, count(*) AS n FROM unnest(p_sequences) AS s GROUP BY 1) d
            WHERE b.concert_id = p_concert AND b.bucket = d.bucket;
          DELETE FROM queue_buckets b
            WHERE b.concert_id = p_concert AND b.waiting = 0
              AND b.bucket IN (SELECT DISTINCT s / 512 FROM unnest(p_sequences) AS s);
          UPDATE queue_lines SET waiting_count = waiting_count - array_length(p_sequences, 1)
            WHERE concert_id = p_concert;
        END
        $$
        """,

        // WaitingLine.advance: expire ACTIVE tokens whose time is up, then admit from the head
        // while there is room, dropping waiters that went idle. Line lock held.
        """
        CREATE FUNCTION concertd_queue_advance(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                               p_idle_ms BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
          v_expired BIGINT;
          v_active BIGINT;
          v_waiting BIGINT;
          v_left BIGINT[];
          v_admitted BIGINT;
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
          SELECT active_count, waiting_count INTO v_active, v_waiting FROM queue_lines WHERE concert_id = p_concert;
          WHILE v_active < p_max AND v_waiting > 0 LOOP
            WITH head AS (
              SELECT token, last_seen + p_idle_ms <= p_now AS idle FROM queue_tokens
              WHERE concert_id = p_concert AND status = 'WAITING'
              ORDER BY sequence LIMIT (p_max - v_active)
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
            v_waiting := v_waiting - array_length(v_left, 1);
            IF v_admitted > 0 THEN
              UPDATE queue_lines SET active_count = v_active WHERE concert_id = p_concert;
            END IF;
          END LOOP;
        END
        $$
        """,

        // A token's place: its status, owner, position (waiters ahead) and ACTIVE end. The
        // position reads the buckets before the token's own and the waiters ahead inside it.
        """
        CREATE FUNCTION concertd_queue_ticket(p_token TEXT, p_concert BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT)
        LANGUAGE sql STABLE AS $$
          SELECT t.status, t.user_id,
                 CASE WHEN t.status = 'WAITING' THEN
                   coalesce((SELECT sum(b.waiting) FROM queue_buckets b
                             WHERE b.concert_id = p_concert AND b.bucket < t.sequence / 512), 0)::BIGINT
                   + (SELECT count(*) FROM queue_tokens w
                      WHERE w.concert_id = p_concert AND w.status = 'WAITING'
                        AND w.sequence >= (t.sequence / 512) * 512 AND w.sequence < t.sequence)
                 ELSE 0 END,
                 t.active_until
          FROM queue_tokens t WHERE t.token = p_token AND t.concert_id = p_concert
        $$
        """,

        // Locks the line and advances it when there is something to do: a free slot and someone
        // waiting, or an ACTIVE token past its time. The check reads without a lock (every change
        // advances again under the lock); both parts are index lookups.
        """
        CREATE FUNCTION concertd_queue_advance_if_needed(p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                                         p_active_ms BIGINT, p_idle_ms BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM queue_lines l
                     WHERE l.concert_id = p_concert AND l.waiting_count > 0 AND l.active_count < p_max)
             OR EXISTS (SELECT 1 FROM queue_tokens t
                        WHERE t.concert_id = p_concert AND t.status = 'ACTIVE' AND t.active_until <= p_now) THEN
            PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
            PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
          END IF;
        END
        $$
        """,

        // WaitingLine.poll. Nothing locked in the common case: the touch is a conditional update
        // of the token's own row (a waiter still in time is seen now), then its position is read
        // (the same arithmetic as concertd_queue_ticket, written out here so that its plan is
        // cached with the function's: polls are the hot path).
        """
        CREATE FUNCTION concertd_queue_poll(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                            p_active_ms BIGINT, p_idle_ms BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_status TEXT;
          v_sequence BIGINT;
          v_user BIGINT;
          v_until BIGINT;
        BEGIN
          -- The waiting room and rate limits are as durable as Redis with appendfsync everysec:
          -- their commits are not waited for, so a poll costs no WAL flush (a crash may forget
          -- the last moment's polls, joins or admissions; never a sale, a payment or a hold).
          PERFORM set_config('synchronous_commit', 'off', true);
          PERFORM concertd_queue_advance_if_needed(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
          UPDATE queue_tokens SET last_seen = greatest(last_seen, p_now)
            WHERE token = p_token AND concert_id = p_concert AND status = 'WAITING' AND last_seen + p_idle_ms > p_now
            RETURNING sequence, user_id INTO v_sequence, v_user;
          IF FOUND THEN
            RETURN QUERY SELECT 'WAITING'::TEXT, v_user,
              coalesce((SELECT sum(b.waiting) FROM queue_buckets b
                        WHERE b.concert_id = p_concert AND b.bucket < v_sequence / 512), 0)::BIGINT
              + (SELECT count(*) FROM queue_tokens w
                 WHERE w.concert_id = p_concert AND w.status = 'WAITING'
                   AND w.sequence >= (v_sequence / 512) * 512 AND w.sequence < v_sequence),
              NULL::BIGINT;
            RETURN;
          ELSE
            SELECT t.status, t.user_id, t.active_until INTO v_status, v_user, v_until
              FROM queue_tokens t WHERE t.token = p_token AND t.concert_id = p_concert;
            IF NOT FOUND THEN RETURN; END IF;
            IF v_status = 'ACTIVE' THEN
              IF v_until > p_now THEN RETURN QUERY SELECT 'ACTIVE'::TEXT, v_user, 0::BIGINT, v_until; END IF;
              RETURN;
            END IF;
            IF v_status = 'WAITING' THEN
              -- It went idle: it loses its place (checked again under the line lock).
              PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
              DELETE FROM queue_tokens
                WHERE token = p_token AND concert_id = p_concert AND status = 'WAITING' AND last_seen + p_idle_ms <= p_now
                RETURNING sequence INTO v_sequence;
              IF FOUND THEN
                PERFORM concertd_queue_forget_waiters(p_concert, ARRAY[v_sequence]);
                RETURN;
              END IF;
            END IF;
          END IF;
          RETURN QUERY SELECT * FROM concertd_queue_ticket(p_token, p_concert) t
            WHERE t.o_status = 'WAITING' OR t.o_active_until > p_now;
        END
        $$
        """,

        // WaitingLine.join: the user's live token (created false), or a new one at the back.
        """
        CREATE FUNCTION concertd_queue_join(p_user BIGINT, p_concert BIGINT, p_token TEXT, p_now BIGINT, p_max BIGINT,
                                            p_active_ms BIGINT, p_idle_ms BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT, o_token TEXT,
                       o_created BOOLEAN)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_existing TEXT;
          v_status TEXT;
          v_last_seen BIGINT;
          v_sequence BIGINT;
        BEGIN
          -- The waiting room and rate limits are as durable as Redis with appendfsync everysec:
          -- their commits are not waited for, so a poll costs no WAL flush (a crash may forget
          -- the last moment's polls, joins or admissions; never a sale, a payment or a hold).
          PERFORM set_config('synchronous_commit', 'off', true);
          INSERT INTO queue_lines (concert_id) VALUES (p_concert) ON CONFLICT (concert_id) DO NOTHING;
          PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
          SELECT t.token, t.status, t.last_seen INTO v_existing, v_status, v_last_seen
            FROM queue_tokens t WHERE t.concert_id = p_concert AND t.user_id = p_user;
          IF FOUND THEN
            IF v_status = 'ACTIVE' OR v_last_seen + p_idle_ms > p_now THEN
              UPDATE queue_tokens SET last_seen = greatest(last_seen, p_now) WHERE token = v_existing AND status = 'WAITING';
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
          INSERT INTO queue_buckets (concert_id, bucket, waiting) VALUES (p_concert, v_sequence / 512, 1)
            ON CONFLICT (concert_id, bucket) DO UPDATE SET waiting = queue_buckets.waiting + 1;
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
          RETURN QUERY SELECT t.*, p_token, true FROM concertd_queue_ticket(p_token, p_concert) t;
        END
        $$
        """,

        // WaitingLine.end: remove the token, then advance so the head moves up.
        """
        CREATE FUNCTION concertd_queue_end(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                           p_active_ms BIGINT, p_idle_ms BIGINT) RETURNS boolean
        LANGUAGE plpgsql AS $$
        DECLARE
          v_status TEXT;
          v_sequence BIGINT;
        BEGIN
          -- The waiting room and rate limits are as durable as Redis with appendfsync everysec:
          -- their commits are not waited for, so a poll costs no WAL flush (a crash may forget
          -- the last moment's polls, joins or admissions; never a sale, a payment or a hold).
          PERFORM set_config('synchronous_commit', 'off', true);
          IF NOT EXISTS (SELECT 1 FROM queue_tokens WHERE token = p_token AND concert_id = p_concert) THEN
            RETURN false;
          END IF;
          PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
          DELETE FROM queue_tokens WHERE token = p_token AND concert_id = p_concert
            RETURNING status, sequence INTO v_status, v_sequence;
          IF v_status = 'ACTIVE' THEN
            UPDATE queue_lines SET active_count = active_count - 1 WHERE concert_id = p_concert;
          ELSIF v_status = 'WAITING' THEN
            PERFORM concertd_queue_forget_waiters(p_concert, ARRAY[v_sequence]);
          END IF;
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
          RETURN v_status IS NOT NULL;
        END
        $$
        """,

        // WaitingLine.sweep for one line, by whichever instance gets its lock: advance, and at
        // most once a second drop idle waiters anywhere in the line (a scan of the line), then
        // advance again. A line locked by someone else is skipped: that one advances it.
        """
        CREATE FUNCTION concertd_queue_sweep(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                             p_idle_ms BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
          v_swept_at BIGINT;
          v_left BIGINT[];
        BEGIN
          -- The waiting room and rate limits are as durable as Redis with appendfsync everysec:
          -- their commits are not waited for, so a poll costs no WAL flush (a crash may forget
          -- the last moment's polls, joins or admissions; never a sale, a payment or a hold).
          PERFORM set_config('synchronous_commit', 'off', true);
          SELECT idle_swept_at INTO v_swept_at FROM queue_lines WHERE concert_id = p_concert FOR UPDATE SKIP LOCKED;
          IF NOT FOUND THEN RETURN; END IF;
          PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
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
              PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
            END IF;
          END IF;
        END
        $$
        """,

        // WaitingLine's counts after advance.
        """
        CREATE FUNCTION concertd_queue_counts(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                              p_idle_ms BIGINT) RETURNS TABLE (o_waiting BIGINT, o_active BIGINT)
        LANGUAGE plpgsql AS $$
        BEGIN
          -- The waiting room and rate limits are as durable as Redis with appendfsync everysec:
          -- their commits are not waited for, so a poll costs no WAL flush (a crash may forget
          -- the last moment's polls, joins or admissions; never a sale, a payment or a hold).
          PERFORM set_config('synchronous_commit', 'off', true);
          PERFORM concertd_queue_advance_if_needed(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
          RETURN QUERY SELECT l.waiting_count, l.active_count FROM queue_lines l WHERE l.concert_id = p_concert;
        END
        $$
        """,

        // Token buckets of the rate limiter. UNLOGGED: no WAL for a write per request; a crash of
        // PostgreSQL empties the table, which is the same as every bucket full.
        """
        CREATE UNLOGGED TABLE rate_limit_buckets (
          key TEXT PRIMARY KEY,
          tokens DOUBLE PRECISION NOT NULL,
          updated_at BIGINT NOT NULL
        )
        """,
        "CREATE INDEX rate_limit_buckets_updated_at ON rate_limit_buckets (updated_at)",
        // InProcessRateLimiter.acquire: null when allowed, else whole seconds to wait.
        """
        CREATE FUNCTION concertd_rate_limit_acquire(p_key TEXT, p_limit BIGINT, p_now BIGINT) RETURNS BIGINT
        LANGUAGE plpgsql AS $$
        DECLARE
          v_tokens DOUBLE PRECISION;
          v_updated_at BIGINT;
          v_wait BIGINT;
        BEGIN
          -- The waiting room and rate limits are as durable as Redis with appendfsync everysec:
          -- their commits are not waited for, so a poll costs no WAL flush (a crash may forget
          -- the last moment's polls, joins or admissions; never a sale, a payment or a hold).
          PERFORM set_config('synchronous_commit', 'off', true);
          INSERT INTO rate_limit_buckets (key, tokens, updated_at) VALUES (p_key, p_limit, p_now)
            ON CONFLICT (key) DO NOTHING;
          SELECT tokens, updated_at INTO v_tokens, v_updated_at FROM rate_limit_buckets WHERE key = p_key FOR UPDATE;
          v_tokens := least(p_limit::DOUBLE PRECISION,
                            v_tokens + greatest(0, p_now - v_updated_at)::DOUBLE PRECISION / 1000 * p_limit);
          IF v_tokens >= 1 THEN
            v_tokens := v_tokens - 1;
          ELSE
            v_wait := greatest(1, ceil((1 - v_tokens) / p_limit))::BIGINT;
          END IF;
          UPDATE rate_limit_buckets SET tokens = v_tokens, updated_at = greatest(updated_at, p_now) WHERE key = p_key;
          RETURN v_wait;
        END
        $$
        """,

        // The response cache's namespaces: an instance serves its in-process copy of an entry only
        // while the namespace's generation is the one the entry was stored under.
        """
        CREATE TABLE cache_generations (
          namespace TEXT PRIMARY KEY,
          generation BIGINT NOT NULL
        )
        """,
    ]
}
