/// Migration 13: payments and charges in batches, as holds already are (`WriteBatcher`). Payments
/// that arrive together in one instance are one call of `concertd_pay_many`, charges one call of
/// `concertd_charge_many`: one transaction and one commit for the batch. On a durable database a
/// payment's cost was mostly its own WAL flush, and payments alone reached 11–14 % of a single-row
/// UPDATE's rate one commit each (docs/benchmarks.md).
///
/// Each item is still `concertd_pay` of migration 6 (or `concertd_charge` of migration 2), so the
/// rules keep their one home in SQL (`PostgresWriteFunctions`' list of which rule lives where);
/// these functions only add the locks first. A batch takes, before any item runs, every lock its
/// items will take, in the order every write function keeps (schedules, then reservations, then
/// users, each in id order; see `PostgresAfterSaleFunctions`). Without that, two batches that both
/// pay for one user (or one reservation) could each hold what the other wants next. A charge may
/// be a user's first: the batch creates the missing users' rows first, in id order, as
/// `concertd_hold` does, so that two batches never wait on each other's new rows.
///
/// Refusals are per-item outcomes, as in `concertd_pay`. A fenced idempotency completion (SQLSTATE
/// `CD409`) raises and so rolls back the whole batch; `WriteBatcher` then runs each item alone, so
/// only the payment whose claim was taken over is refused.
///
/// An item without an `Idempotency-Key` has the empty string as its key (no key is empty: 1–255
/// characters); `p_marked` says whether an item's stored answer shows the markers `p_marks`
/// (PostgresNIO binds no NULL inside an array, and the markers are the same for every payment).
enum PostgresMoneyBatches {
    static let statements: [String] = [
        """
        CREATE FUNCTION concertd_pay_many(p_users BIGINT[], p_reservations BIGINT[], p_nows BIGINT[], p_keys TEXT[],
                                          p_claimed_ats BIGINT[], p_statuses BIGINT[], p_bodies BYTEA[],
                                          p_marked BOOLEAN[], p_marks TEXT[])
        RETURNS TABLE (o_item BIGINT, o_outcome TEXT, o_payment BIGINT, o_amount BIGINT, o_balance BIGINT, o_concert BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          r RECORD;
          v RECORD;
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
          FOR r IN
            SELECT * FROM unnest(p_users, p_reservations, p_nows, p_keys, p_claimed_ats, p_statuses, p_bodies, p_marked)
              WITH ORDINALITY AS i (u, res, now, key, claimed_at, status, body, marked, n)
            ORDER BY n
          LOOP
            SELECT * INTO v FROM concertd_pay(r.u, r.res, r.now, NULLIF(r.key, ''), r.claimed_at, r.status, r.body,
                                              CASE WHEN r.marked THEN p_marks ELSE '{}'::TEXT[] END);
            o_item := r.n;
            o_outcome := v.o_outcome;
            o_payment := v.o_payment;
            o_amount := v.o_amount;
            o_balance := v.o_balance;
            o_concert := v.o_concert;
            RETURN NEXT;
          END LOOP;
        END $$
        """,
        """
        CREATE FUNCTION concertd_charge_many(p_users BIGINT[], p_amounts BIGINT[], p_max_balance BIGINT, p_nows BIGINT[],
                                             p_keys TEXT[], p_claimed_ats BIGINT[], p_statuses BIGINT[], p_bodies BYTEA[],
                                             p_marked BOOLEAN[], p_marks TEXT[])
        RETURNS TABLE (o_item BIGINT, o_outcome TEXT, o_balance BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          r RECORD;
          v RECORD;
        BEGIN
          INSERT INTO users (id) SELECT DISTINCT u FROM unnest(p_users) AS u ORDER BY 1 ON CONFLICT (id) DO NOTHING;
          PERFORM 1 FROM users WHERE id IN (SELECT unnest(p_users)) ORDER BY id FOR UPDATE;
          FOR r IN
            SELECT * FROM unnest(p_users, p_amounts, p_nows, p_keys, p_claimed_ats, p_statuses, p_bodies, p_marked)
              WITH ORDINALITY AS i (u, amount, now, key, claimed_at, status, body, marked, n)
            ORDER BY n
          LOOP
            SELECT * INTO v FROM concertd_charge(r.u, r.amount, p_max_balance, r.now, NULLIF(r.key, ''), r.claimed_at, r.status,
                                                 r.body, CASE WHEN r.marked THEN p_marks ELSE '{}'::TEXT[] END);
            o_item := r.n;
            o_outcome := v.o_outcome;
            o_balance := v.o_balance;
            RETURN NEXT;
          END LOOP;
        END $$
        """,
        // On generic plans from the first call, as the other batch functions (`PostgresGenericPlans`).
        """
        ALTER FUNCTION concertd_pay_many(BIGINT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], BYTEA[], BOOLEAN[], TEXT[])
          SET plan_cache_mode = force_generic_plan
        """,
        """
        ALTER FUNCTION concertd_charge_many(BIGINT[], BIGINT[], BIGINT, BIGINT[], TEXT[], BIGINT[], BIGINT[], BYTEA[], BOOLEAN[], TEXT[])
          SET plan_cache_mode = force_generic_plan
        """,
    ]
}
