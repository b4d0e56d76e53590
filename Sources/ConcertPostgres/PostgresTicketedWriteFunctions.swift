/// Migration 14: holds and payments check their queue token in their own call, when the waiting
/// room lives in the same PostgreSQL (no Redis).
///
/// Before, a payment on PostgreSQL alone was five round trips: the reservation read, the token's
/// claim, the token's poll, the payment, the token's end, each its own statement and commit
/// (docs/benchmarks.md "Payments alone wait outside PostgreSQL"); a hold was a poll, then the hold.
/// Each function here runs the token's checks and then the existing batch function (`concertd_hold`,
/// `concertd_pay_many`) on the items that pass, so the write rules keep their one home. The end
/// stays its own call: it takes the line's lock and admits the next waiter, which must not wait
/// for a payment's durable commit.
///
/// The token is judged as the queue gate judges a poll's ticket (`tokenRefusal`). A hold reads it
/// without a lock, as before: a hold that passed its check before a payment ended the token is
/// ordered before that payment (docs/concurrency.md).
///
/// A payment's checks run in the order `PaymentsController.payChecked` keeps on every other
/// engine: the reservation (RESERVATION_NOT_FOUND, then RESERVATION_ALREADY_PAID, whatever the
/// token; read without a lock, as that path reads it, and checked again under the lock by
/// `concertd_pay`), the token's claim (QUEUE_TOKEN_INVALID when another owner holds it), the token,
/// then `concertd_pay`'s own rules. An item refused anywhere gives its claim back in the same
/// transaction, as the controller's release does; a paid one keeps it until the end removes the
/// token (the claim then runs out by itself).
///
/// Locks: a transaction advisory lock per distinct token first, in token order, so that two
/// batches which claim the same two tokens (a client paying twice through two instances) never
/// wait on each other's uncommitted claim rows; then `concertd_pay_many`'s (schedules,
/// reservations, users, each in id order). Every batch takes them in that order, and nothing else
/// takes the advisory locks. The claim rows are in the UNLOGGED table of migration 8; the payment
/// itself commits durably as before.
///
/// An item without a token (`''`) is checked for nothing, as in `concertd_hold` and
/// `concertd_pay_many`.
enum PostgresTicketedWriteFunctions {
    /// The advisory locks' first key: the class of the two-key form that means "a token's claim".
    static let claimLockClass: Int32 = 0x434C_4D31 // "CLM1"

    /// A queue token's refusal as the queue gate answers a poll's ticket (`QueueGate.ticket` and
    /// `admit`), or NULL when it admits: over `t`, the token's row LEFT JOINed (NULL when unknown),
    /// and `i`, the request (`u` its user, `c` the concert it touches, `now`, `idle` the line's idle
    /// milliseconds). Written once for both functions below.
    static let tokenRefusal = """
        CASE WHEN t.token IS NULL OR t.user_id <> i.u OR t.concert_id <> i.c
                  OR (t.status = 'ACTIVE' AND t.active_until <= i.now)
                  OR (t.status = 'WAITING' AND t.last_seen + i.idle <= i.now) THEN 'QUEUE_TOKEN_INVALID'
             WHEN t.status <> 'ACTIVE' THEN 'QUEUE_TOKEN_NOT_ACTIVE' END
        """

    static let statements: [String] = [
        // The items `p_items` (indexes counted from 1) of a batch's argument, in that order: how a
        // function hands the items that passed its checks on to the batch function it wraps.
        """
        CREATE FUNCTION concertd_pick(p_values anyarray, p_items BIGINT[]) RETURNS anyarray
        LANGUAGE sql IMMUTABLE AS $$
          SELECT ARRAY(SELECT p_values[x.k::INT] FROM unnest(p_items) WITH ORDINALITY AS x (k, m) ORDER BY x.m)
        $$
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
            FROM (SELECT i.n, CASE WHEN i.token = '' THEN NULL ELSE \(tokenRefusal) END AS refusal
                  FROM unnest(p_users, p_concerts, p_nows, p_tokens, p_idle_ms) WITH ORDINALITY AS i (u, c, now, token, idle, n)
                  LEFT JOIN queue_tokens t ON t.token = i.token) AS c;
          RETURN QUERY SELECT r.n, r.refusal, NULL::BIGINT FROM unnest(v_refused, v_refusals) AS r (n, refusal);
          IF cardinality(v_pass) > 0 THEN
            RETURN QUERY
              SELECT v_pass[h.o_item::INT], h.o_outcome, h.o_reservation
              FROM concertd_hold(concertd_pick(p_users, v_pass), concertd_pick(p_schedules, v_pass),
                                 concertd_pick(p_concerts, v_pass), concertd_pick(p_seats, v_pass),
                                 concertd_pick(p_prices, v_pass), concertd_pick(p_nows, v_pass),
                                 concertd_pick(p_held_untils, v_pass), concertd_pick(p_max_holds, v_pass)) h;
          END IF;
        END $$
        """,
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
          v_refusal TEXT;
          v_refused BIGINT[] := '{}';
          v_pass BIGINT[];
        BEGIN
          FOR v_token IN SELECT DISTINCT t FROM unnest(p_tokens) AS t WHERE t <> '' ORDER BY t LOOP
            PERFORM pg_advisory_xact_lock(\(claimLockClass), hashtext(v_token));
          END LOOP;
          FOR r IN
            SELECT i.*, x.status AS reservation_status, x.concert_id AS reservation_concert
            FROM unnest(p_users, p_reservations, p_nows, p_tokens, p_owners, p_claim_untils, p_idle_ms)
              WITH ORDINALITY AS i (u, res, now, token, owner, claim_until, idle, n)
            LEFT JOIN reservations x ON x.id = i.res AND x.user_id = i.u
            WHERE i.token <> ''
            ORDER BY i.n
          LOOP
            v_refusal := CASE WHEN r.reservation_status IS NULL THEN 'RESERVATION_NOT_FOUND'
                              WHEN r.reservation_status = 'CONFIRMED' THEN 'RESERVATION_ALREADY_PAID' END;
            IF v_refusal IS NULL THEN
              INSERT INTO queue_token_claims (token, owner, claimed_until) VALUES (r.token, r.owner, r.claim_until)
              ON CONFLICT (token) DO UPDATE SET owner = EXCLUDED.owner, claimed_until = EXCLUDED.claimed_until
                WHERE queue_token_claims.claimed_until <= r.now OR queue_token_claims.owner = EXCLUDED.owner;
              IF NOT FOUND THEN
                v_refusal := 'QUEUE_TOKEN_INVALID';
              ELSE
                SELECT \(tokenRefusal) INTO v_refusal
                  FROM (SELECT r.token, r.u, r.reservation_concert, r.now, r.idle) AS i (token, u, c, now, idle)
                  LEFT JOIN queue_tokens t ON t.token = i.token;
                IF v_refusal IS NOT NULL THEN
                  DELETE FROM queue_token_claims WHERE token = r.token AND owner = r.owner;
                END IF;
              END IF;
            END IF;
            IF v_refusal IS NOT NULL THEN
              v_refused := v_refused || r.n;
              o_item := r.n;
              o_outcome := v_refusal;
              o_payment := NULL;
              o_amount := NULL;
              o_balance := NULL;
              o_concert := NULL;
              RETURN NEXT;
            END IF;
          END LOOP;
          SELECT coalesce(array_agg(n ORDER BY n), '{}') INTO v_pass
            FROM generate_series(1, cardinality(p_users)) AS n WHERE n <> ALL (v_refused);
          IF cardinality(v_pass) = 0 THEN RETURN; END IF;
          FOR v IN
            SELECT * FROM concertd_pay_many(concertd_pick(p_users, v_pass), concertd_pick(p_reservations, v_pass),
                                            concertd_pick(p_nows, v_pass), concertd_pick(p_keys, v_pass),
                                            concertd_pick(p_claimed_ats, v_pass), concertd_pick(p_statuses, v_pass),
                                            concertd_pick(p_bodies, v_pass), concertd_pick(p_marked, v_pass), p_marks)
          LOOP
            o_item := v_pass[v.o_item::INT];
            o_outcome := v.o_outcome;
            o_payment := v.o_payment;
            o_amount := v.o_amount;
            o_balance := v.o_balance;
            o_concert := v.o_concert;
            IF o_outcome <> 'PAID' AND p_tokens[o_item::INT] <> '' THEN
              DELETE FROM queue_token_claims WHERE token = p_tokens[o_item::INT] AND owner = p_owners[o_item::INT];
            END IF;
            RETURN NEXT;
          END LOOP;
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
