/// Migration 6: refunds and cancelled dates as PL/pgSQL, each one round trip like the rest of the
/// write path (`PostgresWriteFunctions`).
///
/// What these decide, and where the rule lives in Swift for SQLite:
/// - `concertd_refund`: `RefundPolicy.checkRefundable` (a payment not PAID says so first, then
///   the cutoff before the schedule's start), under the payment's row lock, so concurrent refunds
///   of one payment (and a refund racing a cancelled date) give the points back once.
/// - `concertd_cancel_schedule`: "a schedule is cancelled once" (the conditional update of
///   `schedules.cancelled_at` under its row lock; a second call finds it set and answers 0/0),
///   every PAID payment refunded whatever the cutoff, every live hold cancelled.
/// - `concertd_hold` and `concertd_pay` (replaced here): a cancelled schedule refuses holds
///   (`SCHEDULE_NOT_FOUND`) and payments. The store caches schedules per instance and a cancel
///   may run on another instance, so this check cannot be left to Swift. Both take the schedule
///   row `FOR SHARE` before anything else, which the cancel's `UPDATE` of it conflicts with: a
///   hold or payment either commits before the cancel starts (and the cancel then releases or
///   refunds it) or waits for it and is refused.
///
/// Lock order, the same in every function so that none can deadlock another: schedule, then
/// payments (a cancel locks all its paid ones in one statement before any wallet), then
/// reservations, then users in id order.
///
/// Plain `UPDATE`s of `payments.status/refunded_at`, `reservations.status` and
/// `schedules.cancelled_at` and `INSERT`s into `point_entries` only, so row triggers on those
/// tables see every change.
enum PostgresAfterSaleFunctions {
    static let statements: [String] = [
        // A refund may bring a balance past the charge cap (it gives back what was paid, even when
        // later charges filled the wallet up), so the CHECK keeps balances non-negative only; the
        // cap stays a rule of charges (`concertd_charge`, `WalletPolicy.checkCharge`).
        "ALTER TABLE users DROP CONSTRAINT users_balance_check",
        "ALTER TABLE users ADD CONSTRAINT users_balance_check CHECK (balance >= 0)",
        // A REFUND entry names the payment it gives back; at most one per payment, whatever the code does.
        "ALTER TABLE point_entries ADD COLUMN payment_id BIGINT REFERENCES payments (id)",
        "CREATE UNIQUE INDEX point_entries_one_refund_per_payment ON point_entries (payment_id) WHERE type = 'REFUND'",

        // A refund of the caller's payment. Outcomes: REFUNDED (REFUND entry id, reservation,
        // amount, balance after, schedule, concert), PAYMENT_NOT_FOUND, PAYMENT_ALREADY_REFUNDED,
        // REFUND_NOT_ALLOWED. The cutoff is the caller's setting (`BookingRules`), in milliseconds.
        """
        CREATE FUNCTION concertd_refund(p_user BIGINT, p_payment BIGINT, p_now BIGINT, p_cutoff BIGINT,
                                        p_key TEXT, p_claimed_at BIGINT, p_status BIGINT, p_body BYTEA, p_marks TEXT[])
        RETURNS TABLE (o_outcome TEXT, o_entry BIGINT, o_reservation BIGINT, o_amount BIGINT, o_balance BIGINT,
                       o_schedule BIGINT, o_concert BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_status TEXT;
          v_reservation BIGINT;
          v_amount BIGINT;
          v_schedule BIGINT;
          v_concert BIGINT;
          v_starts_at BIGINT;
          v_after BIGINT;
          v_entry BIGINT;
        BEGIN
          SELECT status, reservation_id, amount INTO v_status, v_reservation, v_amount
          FROM payments WHERE id = p_payment AND user_id = p_user FOR UPDATE;
          IF NOT FOUND THEN
            RETURN QUERY SELECT 'PAYMENT_NOT_FOUND', NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
            RETURN;
          END IF;
          SELECT r.schedule_id, r.concert_id, s.starts_at INTO v_schedule, v_concert, v_starts_at
          FROM reservations r JOIN schedules s ON s.id = r.schedule_id WHERE r.id = v_reservation;
          IF v_status <> 'PAID' THEN
            RETURN QUERY SELECT 'PAYMENT_ALREADY_REFUNDED', NULL::BIGINT, v_reservation, v_amount, NULL::BIGINT, v_schedule, v_concert;
            RETURN;
          END IF;
          IF p_now >= v_starts_at - p_cutoff THEN
            RETURN QUERY SELECT 'REFUND_NOT_ALLOWED', NULL::BIGINT, v_reservation, v_amount, NULL::BIGINT, v_schedule, v_concert;
            RETURN;
          END IF;
          UPDATE payments SET status = 'REFUNDED', refunded_at = p_now WHERE id = p_payment;
          UPDATE reservations SET status = 'CANCELLED' WHERE id = v_reservation;
          UPDATE users SET balance = balance + v_amount WHERE id = p_user RETURNING balance INTO v_after;
          INSERT INTO point_entries (user_id, type, amount, balance_after, created_at, payment_id)
          VALUES (p_user, 'REFUND', v_amount, v_after, p_now, p_payment) RETURNING id INTO v_entry;
          IF p_key IS NOT NULL THEN
            PERFORM concertd_complete_idempotency(p_user, p_key, p_claimed_at, p_status, p_body, p_marks,
                                                  ARRAY[v_entry::TEXT, v_reservation::TEXT, v_amount::TEXT, v_after::TEXT]);
          END IF;
          RETURN QUERY SELECT 'REFUNDED', v_entry, v_reservation, v_amount, v_after, v_schedule, v_concert;
        END $$
        """,

        // A cancelled date. Outcomes: CANCELLED (concert, refunded, released), ALREADY_CANCELLED
        // (concert, 0, 0), SCHEDULE_NOT_FOUND.
        """
        CREATE FUNCTION concertd_cancel_schedule(p_schedule BIGINT, p_now BIGINT)
        RETURNS TABLE (o_outcome TEXT, o_concert BIGINT, o_refunded BIGINT, o_released BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          r RECORD;
          v_concert BIGINT;
          v_refunded BIGINT := 0;
          v_released BIGINT;
          v_after BIGINT;
        BEGIN
          -- Once: a racing second call waits for this row lock, then finds cancelled_at set.
          UPDATE schedules SET cancelled_at = p_now WHERE id = p_schedule AND cancelled_at IS NULL
          RETURNING concert_id INTO v_concert;
          IF NOT FOUND THEN
            SELECT concert_id INTO v_concert FROM schedules WHERE id = p_schedule;
            IF NOT FOUND THEN
              RETURN QUERY SELECT 'SCHEDULE_NOT_FOUND', NULL::BIGINT, 0::BIGINT, 0::BIGINT;
            ELSE
              RETURN QUERY SELECT 'ALREADY_CANCELLED', v_concert, 0::BIGINT, 0::BIGINT;
            END IF;
            RETURN;
          END IF;
          -- Every paid payment of the date, locked before any wallet: a refund of one of them
          -- that got there first commits (and drops out of this set), later ones find REFUNDED.
          PERFORM 1 FROM payments p JOIN reservations x ON x.id = p.reservation_id
          WHERE x.schedule_id = p_schedule AND p.status = 'PAID' ORDER BY p.id FOR UPDATE OF p;
          -- Wallets in user id order, like every other writer of several.
          FOR r IN
            SELECT p.id, p.user_id, p.amount, p.reservation_id FROM payments p JOIN reservations x ON x.id = p.reservation_id
            WHERE x.schedule_id = p_schedule AND p.status = 'PAID' ORDER BY p.user_id, p.id
          LOOP
            UPDATE payments SET status = 'REFUNDED', refunded_at = p_now WHERE id = r.id;
            UPDATE reservations SET status = 'CANCELLED' WHERE id = r.reservation_id;
            UPDATE users SET balance = balance + r.amount WHERE id = r.user_id RETURNING balance INTO v_after;
            INSERT INTO point_entries (user_id, type, amount, balance_after, created_at, payment_id)
            VALUES (r.user_id, 'REFUND', r.amount, v_after, p_now, r.id);
            v_refunded := v_refunded + 1;
          END LOOP;
          UPDATE reservations SET status = 'CANCELLED'
          WHERE schedule_id = p_schedule AND status = 'HELD' AND held_until > p_now;
          GET DIAGNOSTICS v_released = ROW_COUNT;
          RETURN QUERY SELECT 'CANCELLED', v_concert, v_refunded, v_released;
        END $$
        """,

        // `concertd_hold` of migration 2, plus: a cancelled schedule answers SCHEDULE_NOT_FOUND,
        // first from the lock-free snapshot and then under the schedule's share lock (taken before
        // the users', see the lock order above).
        """
        CREATE OR REPLACE FUNCTION concertd_hold(p_users BIGINT[], p_schedules BIGINT[], p_concerts BIGINT[], p_seats BIGINT[],
                                                 p_prices BIGINT[], p_nows BIGINT[], p_held_untils BIGINT[], p_max_holds BIGINT[])
        RETURNS TABLE (o_item BIGINT, o_outcome TEXT, o_reservation BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          r RECORD;
          v_todo BIGINT[] := '{}';
          v_open BIGINT[];
          v_live BIGINT;
          v_id BIGINT;
        BEGIN
          FOR r IN
            SELECT i.n,
              EXISTS (SELECT 1 FROM schedules s WHERE s.id = i.s AND s.cancelled_at IS NOT NULL) AS cancelled,
              EXISTS (SELECT 1 FROM reservations x
                      WHERE x.schedule_id = i.s AND x.seat_number = i.seat AND x.status IN ('HELD', 'CONFIRMED')
                        AND (x.status = 'CONFIRMED' OR x.held_until > i.now)) AS taken,
              (SELECT COUNT(*) FROM reservations x
               WHERE x.user_id = i.u AND x.status = 'HELD' AND x.held_until > i.now) AS live, i.max_holds
            FROM unnest(p_users, p_schedules, p_seats, p_nows, p_max_holds) WITH ORDINALITY AS i (u, s, seat, now, max_holds, n)
          LOOP
            IF r.cancelled THEN
              o_item := r.n; o_outcome := 'SCHEDULE_NOT_FOUND'; o_reservation := NULL; RETURN NEXT;
            ELSIF r.live >= r.max_holds THEN
              o_item := r.n; o_outcome := 'HOLD_LIMIT_REACHED'; o_reservation := NULL; RETURN NEXT;
            ELSIF r.taken THEN
              o_item := r.n; o_outcome := 'SEAT_UNAVAILABLE'; o_reservation := NULL; RETURN NEXT;
            ELSE
              v_todo := v_todo || r.n;
            END IF;
          END LOOP;
          IF cardinality(v_todo) = 0 THEN
            RETURN;
          END IF;

          SELECT coalesce(array_agg(id), '{}') INTO v_open FROM (
            SELECT id FROM schedules WHERE id IN (SELECT p_schedules[n] FROM unnest(v_todo) AS n) AND cancelled_at IS NULL
            ORDER BY id FOR SHARE) open_schedules;

          INSERT INTO users (id) SELECT DISTINCT p_users[n] FROM unnest(v_todo) AS n ON CONFLICT (id) DO NOTHING;
          PERFORM 1 FROM users WHERE id IN (SELECT p_users[n] FROM unnest(v_todo) AS n) ORDER BY id FOR UPDATE;

          FOR r IN
            SELECT n, p_users[n] AS u, p_schedules[n] AS s, p_concerts[n] AS c, p_seats[n] AS seat, p_prices[n] AS price,
              p_nows[n] AS now, p_held_untils[n] AS held_until, p_max_holds[n] AS max_holds
            FROM unnest(v_todo) AS n ORDER BY 3, 5, 1
          LOOP
            IF NOT (r.s = ANY (v_open)) THEN
              o_item := r.n; o_outcome := 'SCHEDULE_NOT_FOUND'; o_reservation := NULL; RETURN NEXT;
              CONTINUE;
            END IF;
            SELECT COUNT(*) INTO v_live FROM reservations
            WHERE user_id = r.u AND status = 'HELD' AND held_until > r.now;
            IF v_live >= r.max_holds THEN
              o_item := r.n; o_outcome := 'HOLD_LIMIT_REACHED'; o_reservation := NULL; RETURN NEXT;
              CONTINUE;
            END IF;
            UPDATE reservations SET status = 'EXPIRED'
            WHERE schedule_id = r.s AND seat_number = r.seat AND status = 'HELD' AND held_until <= r.now;
            v_id := NULL;
            INSERT INTO reservations (user_id, schedule_id, concert_id, seat_number, price, status, held_until, created_at)
            VALUES (r.u, r.s, r.c, r.seat, r.price, 'HELD', r.held_until, r.now)
            ON CONFLICT (schedule_id, seat_number) WHERE status IN ('HELD', 'CONFIRMED') DO NOTHING
            RETURNING id INTO v_id;
            o_item := r.n;
            o_outcome := CASE WHEN v_id IS NULL THEN 'SEAT_UNAVAILABLE' ELSE 'HELD' END;
            o_reservation := v_id;
            RETURN NEXT;
          END LOOP;
        END $$
        """,

        // `concertd_pay` of migration 2, plus: the schedule's share lock first (see the lock
        // order), and a live hold on a cancelled schedule is not payable (RESERVATION_NOT_HELD;
        // after a committed cancel no hold on it is live, so this is the race's answer).
        """
        CREATE OR REPLACE FUNCTION concertd_pay(p_user BIGINT, p_reservation BIGINT, p_now BIGINT,
                                                p_key TEXT, p_claimed_at BIGINT, p_status BIGINT, p_body BYTEA, p_marks TEXT[])
        RETURNS TABLE (o_outcome TEXT, o_payment BIGINT, o_amount BIGINT, o_balance BIGINT, o_concert BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_schedule BIGINT;
          v_open BOOLEAN := false;
          v_status TEXT;
          v_held_until BIGINT;
          v_price BIGINT;
          v_concert BIGINT;
          v_after BIGINT;
          v_payment BIGINT;
        BEGIN
          SELECT schedule_id INTO v_schedule FROM reservations WHERE id = p_reservation AND user_id = p_user;
          IF NOT FOUND THEN
            RETURN QUERY SELECT 'RESERVATION_NOT_FOUND', NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
            RETURN;
          END IF;
          SELECT true INTO v_open FROM schedules WHERE id = v_schedule AND cancelled_at IS NULL FOR SHARE;
          SELECT status, held_until, price, concert_id INTO v_status, v_held_until, v_price, v_concert
          FROM reservations WHERE id = p_reservation AND user_id = p_user FOR UPDATE;
          IF v_status <> 'HELD' OR v_held_until <= p_now OR v_open IS NOT TRUE THEN
            RETURN QUERY SELECT CASE
                WHEN v_status = 'CONFIRMED' THEN 'RESERVATION_ALREADY_PAID'
                WHEN v_status = 'HELD' AND v_held_until <= p_now THEN 'RESERVATION_EXPIRED'
                WHEN v_status = 'EXPIRED' THEN 'RESERVATION_EXPIRED'
                ELSE 'RESERVATION_NOT_HELD' END,
              NULL::BIGINT, v_price, NULL::BIGINT, v_concert;
            RETURN;
          END IF;
          UPDATE users SET balance = balance - v_price WHERE id = p_user AND balance >= v_price
          RETURNING balance INTO v_after;
          IF v_after IS NULL THEN
            RETURN QUERY SELECT 'INSUFFICIENT_POINTS', NULL::BIGINT, v_price,
              coalesce((SELECT balance FROM users WHERE id = p_user), 0), v_concert;
            RETURN;
          END IF;
          INSERT INTO point_entries (user_id, type, amount, balance_after, created_at)
          VALUES (p_user, 'PAYMENT', -v_price, v_after, p_now);
          UPDATE reservations SET status = 'CONFIRMED' WHERE id = p_reservation;
          INSERT INTO payments (user_id, reservation_id, amount, paid_at)
          VALUES (p_user, p_reservation, v_price, p_now) RETURNING id INTO v_payment;
          IF p_key IS NOT NULL THEN
            PERFORM concertd_complete_idempotency(p_user, p_key, p_claimed_at, p_status, p_body, p_marks,
                                                  ARRAY[v_payment::TEXT, v_price::TEXT, v_after::TEXT]);
          END IF;
          RETURN QUERY SELECT 'PAID', v_payment, v_price, v_after, v_concert;
        END $$
        """,
    ]
}
