/// Migration 5: on-sale control (issue 14).
///
/// - `queue_policies`: one row per concert whose line policy an operator changed (no row: the
///   settings' defaults), with the pre-queue's draw: its secret seed (never served before
///   `drawn_at`), the seed's commitment, and how many were drawn.
/// - `queue_admissions`: when each admission of the last minute happened, per line, for
///   `admitPerMinute` and the policy's `admittedLastMinute`. Written and trimmed under the
///   line's lock by `concertd_queue_advance`.
/// - `queue_lines.drawn_entrants`: the line's pre-queue was drawn (set once, by
///   `concertd_queue_draw`).
/// - `queue_lines.rate_blocked_until`: while the rate's window is full, the first instant another
///   admission may happen (0 otherwise), so that a poll does not lock a line that cannot admit:
///   `concertd_queue_advance_if_needed` skips it until then (the sweeper still advances the line
///   every 250 ms, so a raised rate holds within a second).
///
/// The waiting room's functions of migration 3 keep their signatures. The rate is one more
/// argument of the `*_rated` wrappers below, which put it in a transaction-local setting
/// (`concertd.admit_per_minute`) that the new `concertd_queue_advance` reads: still one
/// statement per operation, and the old functions alone still mean "no rate".
enum PostgresOnSaleSchema {
    static let statements: [String] = [
        """
        CREATE TABLE queue_policies (
          concert_id BIGINT PRIMARY KEY REFERENCES concerts (id),
          max_active BIGINT NOT NULL CHECK (max_active BETWEEN 1 AND 1000000),
          admit_per_minute BIGINT CHECK (admit_per_minute BETWEEN 1 AND 10000000),
          active_seconds BIGINT NOT NULL CHECK (active_seconds BETWEEN 30 AND 86400),
          paused BOOLEAN NOT NULL DEFAULT false,
          queue_opens_at BIGINT,
          draw_seed TEXT CHECK (draw_seed IS NULL OR length(draw_seed) = 64),
          draw_commitment TEXT,
          drawn_at BIGINT,
          entrants BIGINT,
          CHECK ((draw_seed IS NULL) = (draw_commitment IS NULL))
        )
        """,
        """
        CREATE TABLE queue_admissions (
          concert_id BIGINT NOT NULL,
          admitted_at BIGINT NOT NULL
        )
        """,
        "CREATE INDEX queue_admissions_window ON queue_admissions (concert_id, admitted_at)",
        "ALTER TABLE queue_lines ADD COLUMN drawn_entrants BIGINT",
        "ALTER TABLE queue_lines ADD COLUMN rate_blocked_until BIGINT NOT NULL DEFAULT 0",

        // WaitingLine.advance with the rate: expire ACTIVE tokens whose time is up, then admit
        // from the head while the cap and the last 60 seconds' admissions allow, dropping waiters
        // that went idle. Line lock held.
        """
        CREATE OR REPLACE FUNCTION concertd_queue_advance(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                                          p_idle_ms BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
          v_expired BIGINT;
          v_active BIGINT;
          v_waiting BIGINT;
          v_left BIGINT[];
          v_admitted BIGINT;
          v_rate BIGINT := coalesce(nullif(current_setting('concertd.admit_per_minute', true), '')::BIGINT, 0);
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
          IF v_rate > 0 THEN
            SELECT count(*) INTO v_recent FROM queue_admissions WHERE concert_id = p_concert;
          END IF;
          SELECT active_count, waiting_count, rate_blocked_until INTO v_active, v_waiting, v_was_blocked
            FROM queue_lines WHERE concert_id = p_concert;
          LOOP
            v_room := p_max - v_active;
            IF v_rate > 0 THEN v_room := least(v_room, v_rate - v_recent); END IF;
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
          IF v_rate > 0 AND v_recent >= v_rate AND v_waiting > 0 AND v_active < p_max THEN
            SELECT coalesce(min(admitted_at) + 60000, 0) INTO v_blocked FROM queue_admissions WHERE concert_id = p_concert;
          END IF;
          IF v_blocked IS DISTINCT FROM v_was_blocked THEN
            UPDATE queue_lines SET rate_blocked_until = v_blocked WHERE concert_id = p_concert;
          END IF;
        END
        $$
        """,

        // Migration 3's check, and a line whose rate window is full is left alone until it is not.
        """
        CREATE OR REPLACE FUNCTION concertd_queue_advance_if_needed(p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                                                    p_active_ms BIGINT, p_idle_ms BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM queue_lines l
                     WHERE l.concert_id = p_concert AND l.waiting_count > 0 AND l.active_count < p_max
                       AND l.rate_blocked_until <= p_now)
             OR EXISTS (SELECT 1 FROM queue_tokens t
                        WHERE t.concert_id = p_concert AND t.status = 'ACTIVE' AND t.active_until <= p_now) THEN
            PERFORM 1 FROM queue_lines WHERE concert_id = p_concert FOR UPDATE;
            PERFORM concertd_queue_advance(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
          END IF;
        END
        $$
        """,

        """
        CREATE FUNCTION concertd_queue_join_rated(p_user BIGINT, p_concert BIGINT, p_token TEXT, p_now BIGINT, p_max BIGINT,
                                                  p_active_ms BIGINT, p_idle_ms BIGINT, p_rate BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT, o_token TEXT,
                       o_created BOOLEAN)
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM set_config('concertd.admit_per_minute', p_rate::TEXT, true);
          RETURN QUERY SELECT * FROM concertd_queue_join(p_user, p_concert, p_token, p_now, p_max, p_active_ms, p_idle_ms);
        END
        $$
        """,
        """
        CREATE FUNCTION concertd_queue_poll_rated(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                                  p_active_ms BIGINT, p_idle_ms BIGINT, p_rate BIGINT)
        RETURNS TABLE (o_status TEXT, o_user_id BIGINT, o_position BIGINT, o_active_until BIGINT)
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM set_config('concertd.admit_per_minute', p_rate::TEXT, true);
          RETURN QUERY SELECT * FROM concertd_queue_poll(p_token, p_concert, p_now, p_max, p_active_ms, p_idle_ms);
        END
        $$
        """,
        """
        CREATE FUNCTION concertd_queue_end_rated(p_token TEXT, p_concert BIGINT, p_now BIGINT, p_max BIGINT,
                                                 p_active_ms BIGINT, p_idle_ms BIGINT, p_rate BIGINT) RETURNS boolean
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM set_config('concertd.admit_per_minute', p_rate::TEXT, true);
          RETURN concertd_queue_end(p_token, p_concert, p_now, p_max, p_active_ms, p_idle_ms);
        END
        $$
        """,
        """
        CREATE FUNCTION concertd_queue_sweep_rated(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                                   p_idle_ms BIGINT, p_rate BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM set_config('concertd.admit_per_minute', p_rate::TEXT, true);
          PERFORM concertd_queue_sweep(p_concert, p_now, p_max, p_active_ms, p_idle_ms);
        END
        $$
        """,
        """
        CREATE FUNCTION concertd_queue_counts_rated(p_concert BIGINT, p_now BIGINT, p_max BIGINT, p_active_ms BIGINT,
                                                    p_idle_ms BIGINT, p_rate BIGINT)
        RETURNS TABLE (o_waiting BIGINT, o_active BIGINT, o_admitted BIGINT)
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM set_config('concertd.admit_per_minute', p_rate::TEXT, true);
          RETURN QUERY SELECT c.o_waiting, c.o_active,
                              (SELECT count(*) FROM queue_admissions a
                               WHERE a.concert_id = p_concert AND a.admitted_at > p_now - 60000)
                       FROM concertd_queue_counts(p_concert, p_now, p_max, p_active_ms, p_idle_ms) c;
        END
        $$
        """,

        // The pre-queue's draw, once per line: the WAITING tokens named, in the drawn order, take
        // arrival numbers 1, 2, ... ahead of everyone else (who joined later and so holds higher
        // numbers), and the position buckets are counted again. Returns how many were drawn, the
        // first time and every time after.
        """
        CREATE FUNCTION concertd_queue_draw(p_concert BIGINT, p_tokens TEXT[]) RETURNS BIGINT
        LANGUAGE plpgsql AS $$
        DECLARE
          v_drawn BIGINT;
          v_count BIGINT;
        BEGIN
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
          UPDATE queue_lines SET drawn_entrants = v_count WHERE concert_id = p_concert;
          RETURN v_count;
        END
        $$
        """,
    ]
}
