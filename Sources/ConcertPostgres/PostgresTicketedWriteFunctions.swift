/// Migration 14: a payment checks and claims its queue token in its own transaction, when the
/// waiting room lives in the same PostgreSQL (no Redis).
///
/// Before, a payment on PostgreSQL alone was five round trips: the reservation read, the token's
/// claim, the token's poll, the payment, the token's end, each its own statement and commit
/// (docs/benchmarks.md "Payments alone wait outside PostgreSQL"). `concertd_pay_batch` folds the
/// first four into the payment batch's one call; the end stays its own call because it takes the
/// line's lock and admits the next waiter, which must not wait for a payment's durable commit.
///
/// Per item the checks run in the order `PaymentsController` keeps on every engine: the
/// reservation (RESERVATION_NOT_FOUND, then RESERVATION_ALREADY_PAID, both answered whatever the
/// token), the token's claim (QUEUE_TOKEN_INVALID when another owner holds it), the token itself
/// as a poll would see it (QUEUE_TOKEN_INVALID when unknown, another user's, run out, gone idle, or
/// for another concert; QUEUE_TOKEN_NOT_ACTIVE while WAITING), then `concertd_pay`'s own rules.
/// A refused item gives its claim back in the same transaction, as the controller's release does;
/// a paid one keeps it until the end removes the token (the claim then runs out by itself).
///
/// Locks: those of `concertd_pay_many` first (schedules, reservations, users, each in id order),
/// then a transaction advisory lock per distinct token in token order, so that two batches which
/// both claim the same two tokens (a client paying twice through two instances) never wait on
/// each other's uncommitted claim rows. The claim rows are in the UNLOGGED table of migration 8;
/// the payment itself commits durably as before.
///
/// An item without a token (`''`) is a plain `concertd_pay`, as in `concertd_pay_many`.
///
/// `concertd_hold_ticketed` does the same for a batch of holds: every item's token is read first
/// (no lock: the same read a poll makes, answered QUEUE_TOKEN_INVALID or QUEUE_TOKEN_NOT_ACTIVE as
/// the queue gate answers), and the items that pass go to `concertd_hold` unchanged, which decides
/// every seat as before. A hold was a poll and then the hold on PostgreSQL alone; it is now one
/// call. As before, the token is read, not locked: a hold that passed its check before a
/// payment ended the token is ordered before that payment (docs/concurrency.md).
enum PostgresTicketedWriteFunctions {
    /// The advisory locks' first key: the class of the two-key form that means "a token's claim".
    static let claimLockClass: Int32 = 0x434C_4D31 // "CLM1"

    static let statements: [String] = [
        """
        CREATE FUNCTION concertd_pay_batch(p_users BIGINT[], p_reservations BIGINT[], p_nows BIGINT[], p_keys TEXT[],
                                           p_claimed_ats BIGINT[], p_statuses BIGINT[], p_bodies BYTEA[],
                                           p_marked BOOLEAN[], p_marks TEXT[],
                                           p_tokens TEXT[], p_owners TEXT[], p_claim_untils BIGINT[], p_idle_ms BIGINT[])
        RETURNS TABLE (o_item BIGINT, o_outcome TEXT, o_payment BIGINT, o_amount BIGINT, o_balance BIGINT, o_concert BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          r RECORD;
          v RECORD;
          v_token TEXT;
          v_claimed BOOLEAN;
          v_reservation_status TEXT;
          v_reservation_concert BIGINT;
          v_token_status TEXT;
          v_token_user BIGINT;
          v_token_concert BIGINT;
          v_token_until BIGINT;
          v_token_seen BIGINT;
        BEGIN
          PERFORM 1 FROM schedules WHERE id IN (
              SELECT x.schedule_id FROM reservations x
              JOIN unnest(p_users, p_reservations) AS i (u, res) ON x.id = i.res AND x.user_id = i.u)
            ORDER BY id FOR SHARE;
          PERFORM 1 FROM reservations WHERE id IN (
              SELECT x.id FROM reservations x
              JOIN unnest(p_users, p_reservations) AS i (u, res) ON x.id = i.res AND x.user_id = i.u)
            ORDER BY id FOR UPDATE;
          PERFORM 1 FROM users WHERE id IN (SELECT unnest(p_users)) ORDER BY id FOR UPDATE;
          FOR v_token IN SELECT DISTINCT t FROM unnest(p_tokens) AS t WHERE t <> '' ORDER BY t LOOP
            PERFORM pg_advisory_xact_lock(\(claimLockClass), hashtext(v_token));
          END LOOP;
          FOR r IN
            SELECT * FROM unnest(p_users, p_reservations, p_nows, p_keys, p_claimed_ats, p_statuses, p_bodies, p_marked,
                                 p_tokens, p_owners, p_claim_untils, p_idle_ms)
              WITH ORDINALITY AS i (u, res, now, key, claimed_at, status, body, marked, token, owner, claim_until, idle_ms, n)
            ORDER BY n
          LOOP
            o_item := r.n;
            o_outcome := NULL;
            o_payment := NULL;
            o_amount := NULL;
            o_balance := NULL;
            o_concert := NULL;
            v_claimed := false;
            IF r.token <> '' THEN
              SELECT x.status, x.concert_id INTO v_reservation_status, v_reservation_concert
                FROM reservations x WHERE x.id = r.res AND x.user_id = r.u;
              IF NOT FOUND THEN
                o_outcome := 'RESERVATION_NOT_FOUND';
              ELSIF v_reservation_status = 'CONFIRMED' THEN
                o_outcome := 'RESERVATION_ALREADY_PAID';
              ELSE
                INSERT INTO queue_token_claims (token, owner, claimed_until) VALUES (r.token, r.owner, r.claim_until)
                ON CONFLICT (token) DO UPDATE SET owner = EXCLUDED.owner, claimed_until = EXCLUDED.claimed_until
                  WHERE queue_token_claims.claimed_until <= r.now OR queue_token_claims.owner = EXCLUDED.owner;
                v_claimed := FOUND;
                IF NOT v_claimed THEN
                  o_outcome := 'QUEUE_TOKEN_INVALID';
                ELSE
                  SELECT t.status, t.user_id, t.concert_id, t.active_until, t.last_seen
                    INTO v_token_status, v_token_user, v_token_concert, v_token_until, v_token_seen
                    FROM queue_tokens t WHERE t.token = r.token;
                  IF NOT FOUND OR v_token_user <> r.u
                     OR (v_token_status = 'ACTIVE' AND v_token_until <= r.now)
                     OR (v_token_status = 'WAITING' AND v_token_seen + r.idle_ms <= r.now)
                     OR v_token_concert <> v_reservation_concert THEN
                    o_outcome := 'QUEUE_TOKEN_INVALID';
                  ELSIF v_token_status <> 'ACTIVE' THEN
                    o_outcome := 'QUEUE_TOKEN_NOT_ACTIVE';
                  END IF;
                END IF;
              END IF;
            END IF;
            IF o_outcome IS NULL THEN
              SELECT * INTO v FROM concertd_pay(r.u, r.res, r.now, NULLIF(r.key, ''), r.claimed_at, r.status, r.body,
                                                CASE WHEN r.marked THEN p_marks ELSE '{}'::TEXT[] END);
              o_outcome := v.o_outcome;
              o_payment := v.o_payment;
              o_amount := v.o_amount;
              o_balance := v.o_balance;
              o_concert := v.o_concert;
            END IF;
            IF v_claimed AND o_outcome <> 'PAID' THEN
              DELETE FROM queue_token_claims WHERE token = r.token AND owner = r.owner;
            END IF;
            RETURN NEXT;
          END LOOP;
        END $$
        """,
        """
        CREATE FUNCTION concertd_hold_ticketed(p_users BIGINT[], p_schedules BIGINT[], p_concerts BIGINT[], p_seats BIGINT[],
                                               p_prices BIGINT[], p_nows BIGINT[], p_held_untils BIGINT[], p_max_holds BIGINT[],
                                               p_tokens TEXT[], p_idle_ms BIGINT[])
        RETURNS TABLE (o_item BIGINT, o_outcome TEXT, o_reservation BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_pass BIGINT[];
          v_refused BIGINT[];
          v_refusals TEXT[];
        BEGIN
          -- Reads only (arrays, no temporary table): a batch refused whole still writes nothing.
          SELECT coalesce(array_agg(c.n ORDER BY c.n) FILTER (WHERE c.refusal IS NULL), '{}'),
                 coalesce(array_agg(c.n ORDER BY c.n) FILTER (WHERE c.refusal IS NOT NULL), '{}'),
                 coalesce(array_agg(c.refusal ORDER BY c.n) FILTER (WHERE c.refusal IS NOT NULL), '{}')
            INTO v_pass, v_refused, v_refusals
            FROM (SELECT i.n, CASE
                      WHEN i.token = '' THEN NULL
                      WHEN t.token IS NULL OR t.user_id <> i.u OR t.concert_id <> i.c
                           OR (t.status = 'ACTIVE' AND t.active_until <= i.now)
                           OR (t.status = 'WAITING' AND t.last_seen + i.idle <= i.now) THEN 'QUEUE_TOKEN_INVALID'
                      WHEN t.status <> 'ACTIVE' THEN 'QUEUE_TOKEN_NOT_ACTIVE' END AS refusal
                  FROM unnest(p_users, p_concerts, p_nows, p_tokens, p_idle_ms) WITH ORDINALITY AS i (u, c, now, token, idle, n)
                  LEFT JOIN queue_tokens t ON t.token = i.token) AS c;
          RETURN QUERY SELECT r.n, r.refusal, NULL::BIGINT FROM unnest(v_refused, v_refusals) AS r (n, refusal);
          IF cardinality(v_pass) > 0 THEN
            RETURN QUERY
              SELECT v_pass[h.o_item::INT], h.o_outcome, h.o_reservation
              FROM concertd_hold(
                ARRAY(SELECT p_users[x.k::INT] FROM unnest(v_pass) WITH ORDINALITY AS x (k, m) ORDER BY x.m),
                ARRAY(SELECT p_schedules[x.k::INT] FROM unnest(v_pass) WITH ORDINALITY AS x (k, m) ORDER BY x.m),
                ARRAY(SELECT p_concerts[x.k::INT] FROM unnest(v_pass) WITH ORDINALITY AS x (k, m) ORDER BY x.m),
                ARRAY(SELECT p_seats[x.k::INT] FROM unnest(v_pass) WITH ORDINALITY AS x (k, m) ORDER BY x.m),
                ARRAY(SELECT p_prices[x.k::INT] FROM unnest(v_pass) WITH ORDINALITY AS x (k, m) ORDER BY x.m),
                ARRAY(SELECT p_nows[x.k::INT] FROM unnest(v_pass) WITH ORDINALITY AS x (k, m) ORDER BY x.m),
                ARRAY(SELECT p_held_untils[x.k::INT] FROM unnest(v_pass) WITH ORDINALITY AS x (k, m) ORDER BY x.m),
                ARRAY(SELECT p_max_holds[x.k::INT] FROM unnest(v_pass) WITH ORDINALITY AS x (k, m) ORDER BY x.m)) h;
          END IF;
        END $$
        """,
        // On generic plans from the first call, as the other batch functions (`PostgresGenericPlans`).
        """
        ALTER FUNCTION concertd_hold_ticketed(BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[],
                                              TEXT[], BIGINT[])
          SET plan_cache_mode = force_generic_plan
        """,
        """
        ALTER FUNCTION concertd_pay_batch(BIGINT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], BYTEA[], BOOLEAN[], TEXT[],
                                          TEXT[], TEXT[], BIGINT[], BIGINT[])
          SET plan_cache_mode = force_generic_plan
        """,
    ]
}
