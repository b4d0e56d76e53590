import ConcertDomain
import ConcertStore
import PostgresNIO

/// The write path as PL/pgSQL functions, installed by migration 2 (`concertd_hold` and
/// `concertd_pay` replaced by migration 6, which refuses a cancelled schedule in them; see
/// `PostgresAfterSaleFunctions`), so that a hold, a charge, a
/// payment and a cancel each reach PostgreSQL once: one statement, one implicit transaction, one
/// commit. Before them a hold was nine round trips and a purchase about 26, and on a durable
/// database the waits between statements (each holding row locks) were most of a write's time.
///
/// What these functions decide, and where that rule lives in Swift for SQLite:
/// - `concertd_hold`: the per-user hold limit, "a seat is live while HELD and not run out, or
///   CONFIRMED" (`HoldPolicy.effectiveStatus`), expiring a run-out hold of the seat, and the
///   arbitrating insert. The schedule's and concert's checks (`HoldPolicy.checkReservable`) stay
///   in Swift: schedules and concerts are never changed once written, so the store checks them
///   from a per-instance cache before calling.
/// - `concertd_pay`: `HoldPolicy.checkPayable` (the reservation's state decides first) and
///   `WalletPolicy.checkPayment` (a balance at least the price).
/// - `concertd_charge`: the balance cap of `WalletPolicy.checkCharge` (the amount's own limits are
///   checked in Swift before the call).
/// - `concertd_cancel`: only a live hold can be cancelled.
/// - `concertd_pay_batch` (migration 14, `PostgresTicketedWriteFunctions`), on PostgreSQL alone:
///   a payment's queue gate (`QueueGate.ticket` and `admit` over `WaitingLine`'s ticket) and its
///   token claim (`TokenClaims`), in the order `PaymentsController` answers them.
/// The shared store suite (`StoreContractTests`) runs the same cases against both engines, so the
/// two homes of each rule cannot drift apart.
///
/// Every refusal is an `o_outcome` code, never an exception, so a refused item of a batch of holds
/// leaves the others alone; only a fenced idempotency completion raises (SQLSTATE `CD409`), because
/// it must roll back what the function already wrote.
///
/// The functions take every parameter as BIGINT (Swift's `Int` binds as int8), and every time as
/// BIGINT milliseconds chosen by the caller's clock, as the rest of the schema does.
enum PostgresWriteFunctions {
    /// SQLSTATE raised when an idempotency claim was taken over before the write could complete.
    static let idempotencyClaimLost = "CD409"

    static let statements: [String] = [
        // Records the answer of an idempotent write in the write's own transaction. `p_body` is the
        // answer rendered by Swift with marker numbers in place of what only the write knows (ids,
        // the balance after); `p_marks` and `p_values` say which marker becomes which value (no
        // marks: the body is stored as it is, whatever its bytes). The claim time fences a request
        // whose claim another request took over after its lease.
        """
        CREATE FUNCTION concertd_complete_idempotency(p_user BIGINT, p_key TEXT, p_claimed_at BIGINT, p_status BIGINT,
                                                      p_body BYTEA, p_marks TEXT[], p_values TEXT[]) RETURNS VOID
        LANGUAGE plpgsql AS $$
        DECLARE
          v_body BYTEA := p_body;
          v_text TEXT;
        BEGIN
          IF coalesce(cardinality(p_marks), 0) > 0 THEN
            v_text := convert_from(p_body, 'UTF8');
            FOR i IN 1 .. cardinality(p_marks) LOOP
              v_text := replace(v_text, p_marks[i], p_values[i]);
            END LOOP;
            v_body := convert_to(v_text, 'UTF8');
          END IF;
          UPDATE idempotency_keys SET state = 'DONE', response_status = p_status, response_body = v_body
          WHERE user_id = p_user AND key = p_key AND state = 'RUNNING' AND created_at = p_claimed_at;
          IF NOT FOUND THEN
            RAISE EXCEPTION 'idempotency claim of % was taken over', p_key USING ERRCODE = 'CD409';
          END IF;
        END $$
        """,

        // Holds, one or many in one transaction (a batch shares one commit). Item n of the arrays is
        // one hold, with its own clock reading, hold end and limit; each item gets one row:
        // (n, outcome, reservation id), outcome one of HELD, SEAT_UNAVAILABLE, HOLD_LIMIT_REACHED.
        //
        // 1. Refusals that need no lock come first, from one snapshot: a seat that is live, a user
        //    already at the limit. They write nothing, so a crowd losing a popular seat costs the
        //    database reads only (no transaction id, no commit to flush).
        // 2. The remaining users are locked in id order: a user's row serialises their holds so two
        //    cannot both pass the limit, and one order for every batch means no deadlock between
        //    batches.
        // 3. Each hold, in (schedule, seat) order for the same reason: the limit again (under the
        //    lock), a run-out hold of the seat written down EXPIRED (a payment of it holds its row
        //    lock, so this waits and then sees CONFIRMED), and the insert, which the partial unique
        //    index arbitrates: a racer that loses waits for the winner's commit and inserts nothing.
        """
        CREATE FUNCTION concertd_hold(p_users BIGINT[], p_schedules BIGINT[], p_concerts BIGINT[], p_seats BIGINT[],
                                      p_prices BIGINT[], p_nows BIGINT[], p_held_untils BIGINT[], p_max_holds BIGINT[])
        RETURNS TABLE (o_item BIGINT, o_outcome TEXT, o_reservation BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          r RECORD;
          v_todo BIGINT[] := '{}';
          v_live BIGINT;
          v_id BIGINT;
        BEGIN
          FOR r IN
            SELECT i.n,
              EXISTS (SELECT 1 FROM reservations x
                      WHERE x.schedule_id = i.s AND x.seat_number = i.seat AND x.status IN ('HELD', 'CONFIRMED')
                        AND (x.status = 'CONFIRMED' OR x.held_until > i.now)) AS taken,
              (SELECT COUNT(*) FROM reservations x
               WHERE x.user_id = i.u AND x.status = 'HELD' AND x.held_until > i.now) AS live, i.max_holds
            FROM unnest(p_users, p_schedules, p_seats, p_nows, p_max_holds) WITH ORDINALITY AS i (u, s, seat, now, max_holds, n)
          LOOP
            IF r.live >= r.max_holds THEN
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

          INSERT INTO users (id) SELECT DISTINCT p_users[n] FROM unnest(v_todo) AS n ON CONFLICT (id) DO NOTHING;
          PERFORM 1 FROM users WHERE id IN (SELECT p_users[n] FROM unnest(v_todo) AS n) ORDER BY id FOR UPDATE;

          FOR r IN
            SELECT n, p_users[n] AS u, p_schedules[n] AS s, p_concerts[n] AS c, p_seats[n] AS seat, p_prices[n] AS price,
              p_nows[n] AS now, p_held_untils[n] AS held_until, p_max_holds[n] AS max_holds
            FROM unnest(v_todo) AS n ORDER BY 3, 5, 1
          LOOP
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

        // A charge: the balance change, its CHARGE entry and the idempotent answer. Outcome CHARGED
        // with the new balance, or OVER_MAX_BALANCE with the balance that refused it.
        """
        CREATE FUNCTION concertd_charge(p_user BIGINT, p_amount BIGINT, p_max_balance BIGINT, p_now BIGINT,
                                        p_key TEXT, p_claimed_at BIGINT, p_status BIGINT, p_body BYTEA, p_marks TEXT[])
        RETURNS TABLE (o_outcome TEXT, o_balance BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_after BIGINT;
        BEGIN
          -- One conditional upsert: concurrent charges queue on the row lock and each adds to the
          -- balance the one before committed, so none is lost.
          INSERT INTO users AS u (id, balance) VALUES (p_user, p_amount)
          ON CONFLICT (id) DO UPDATE SET balance = u.balance + p_amount WHERE u.balance <= p_max_balance - p_amount
          RETURNING u.balance INTO v_after;
          IF v_after IS NULL THEN
            RETURN QUERY SELECT 'OVER_MAX_BALANCE', balance FROM users WHERE id = p_user;
            RETURN;
          END IF;
          INSERT INTO point_entries (user_id, type, amount, balance_after, created_at)
          VALUES (p_user, 'CHARGE', p_amount, v_after, p_now);
          IF p_key IS NOT NULL THEN
            PERFORM concertd_complete_idempotency(p_user, p_key, p_claimed_at, p_status, p_body, p_marks, ARRAY[v_after::TEXT]);
          END IF;
          RETURN QUERY SELECT 'CHARGED', v_after;
        END $$
        """,

        // A payment: the reservation's state decides first (under its row lock, which serialises
        // payments of it with each other and with a hold that would expire it), then the balance
        // (a conditional update under the user's row lock); then the PAYMENT entry, the confirmed
        // reservation, the payment and the idempotent answer. Outcomes: PAID (payment id, amount,
        // balance after, concert), RESERVATION_NOT_FOUND, RESERVATION_ALREADY_PAID,
        // RESERVATION_EXPIRED, RESERVATION_NOT_HELD, INSUFFICIENT_POINTS (amount = price,
        // balance = the balance that was short).
        """
        CREATE FUNCTION concertd_pay(p_user BIGINT, p_reservation BIGINT, p_now BIGINT,
                                     p_key TEXT, p_claimed_at BIGINT, p_status BIGINT, p_body BYTEA, p_marks TEXT[])
        RETURNS TABLE (o_outcome TEXT, o_payment BIGINT, o_amount BIGINT, o_balance BIGINT, o_concert BIGINT)
        LANGUAGE plpgsql AS $$
        DECLARE
          v_status TEXT;
          v_held_until BIGINT;
          v_price BIGINT;
          v_concert BIGINT;
          v_after BIGINT;
          v_payment BIGINT;
        BEGIN
          SELECT status, held_until, price, concert_id INTO v_status, v_held_until, v_price, v_concert
          FROM reservations WHERE id = p_reservation AND user_id = p_user FOR UPDATE;
          IF NOT FOUND THEN
            RETURN QUERY SELECT 'RESERVATION_NOT_FOUND', NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
            RETURN;
          END IF;
          IF v_status <> 'HELD' OR v_held_until <= p_now THEN
            RETURN QUERY SELECT CASE
                WHEN v_status = 'CONFIRMED' THEN 'RESERVATION_ALREADY_PAID'
                WHEN v_status = 'HELD' THEN 'RESERVATION_EXPIRED'
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

        // A cancel of the caller's live hold, in one conditional update; when it matches nothing, a
        // read says why. Outcomes: CANCELLED (with the reservation's columns), RESERVATION_NOT_HELD,
        // RESERVATION_NOT_FOUND.
        """
        CREATE FUNCTION concertd_cancel(p_user BIGINT, p_reservation BIGINT, p_now BIGINT)
        RETURNS TABLE (o_outcome TEXT, o_id BIGINT, o_user BIGINT, o_schedule BIGINT, o_concert BIGINT, o_seat BIGINT,
                       o_price BIGINT, o_status TEXT, o_held_until BIGINT, o_created_at BIGINT)
        LANGUAGE plpgsql AS $$
        BEGIN
          RETURN QUERY
            UPDATE reservations SET status = 'CANCELLED'
            WHERE id = p_reservation AND user_id = p_user AND status = 'HELD' AND held_until > p_now
            RETURNING 'CANCELLED', id, user_id, schedule_id, concert_id, seat_number::BIGINT, price, status, held_until, created_at;
          IF NOT FOUND THEN
            RETURN QUERY SELECT CASE WHEN EXISTS (SELECT 1 FROM reservations WHERE id = p_reservation AND user_id = p_user)
                                THEN 'RESERVATION_NOT_HELD' ELSE 'RESERVATION_NOT_FOUND' END,
              NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::TEXT, NULL::BIGINT, NULL::BIGINT;
          END IF;
        END $$
        """,
    ]
}

/// One hold of a batch, as `concertd_hold` takes it.
struct HoldItem: Sendable {
    var userId: Int64
    var scheduleId: Int64
    var concertId: Int64
    var seatNumber: Int
    var price: Int64
    var now: Int64
    var heldUntil: Int64
    var maxHolds: Int
    /// The queue token to check in the same call (PostgreSQL alone), or nil.
    var ticket: QueueTokenCheck?
}

/// `concertd_charge`'s answer for one charge of a batch: CHARGED or OVER_MAX_BALANCE, and the balance.
struct ChargeOutcome: Sendable {
    var outcome: String
    var balance: Int64
}

/// `concertd_pay`'s answer for one payment of a batch, as the function gives it.
struct PayOutcome: Sendable {
    var outcome: String
    var paymentId: Int64?
    var amount: Int64?
    var balance: Int64?
    var concertId: Int64?
}

enum HoldOutcome: Sendable, Equatable {
    case held(Int64)
    case seatUnavailable
    case holdLimitReached
    /// The schedule was cancelled (perhaps on another instance, after this one cached it).
    case scheduleCancelled
    case queueTokenInvalid
    case queueTokenNotActive
}

/// A schedule with its concert (neither changes once written, but a schedule can be cancelled:
/// see `PostgresConcertStore.scheduleFacts`).
struct ScheduleFacts: Sendable {
    var schedule: Schedule
    var concert: Concert
}

/// The answer an idempotent write stores, rendered by Swift before the write, so that the
/// rendering has one home (the HTTP layer's `render`) and the write stays one round trip. What
/// only the write knows (a payment's id, the balance after) is rendered as a marker number, which
/// no real value can be (they are far below zero), and the function puts the value in its place.
struct AnswerTemplate: Sendable {
    var key: String
    var claimedAt: Int64
    var status: Int64
    var body: ByteBuffer
    /// The markers to replace; empty when the answer shows none (then it is stored byte for byte).
    var marks: [String]

    /// The n-th marker number.
    static func marker(_ n: Int) -> Int64 { Int64.min + 1_000 + Int64(n) }

    /// Nil without a completion (the request carried no `Idempotency-Key`). `placeholder` is the
    /// result with `marker(0)` ... `marker(markers - 1)` where the write's values go.
    init?<Result>(_ completion: IdempotentCompletion<Result>?, placeholder: Result, markers: Int = 1) throws {
        guard let completion else { return nil }
        let rendered = try completion.render(placeholder)
        let marks = (0..<markers).map { String(Self.marker($0)) }
        let text = String(validating: rendered.body, as: UTF8.self)
        let showsMarkers = text.map { text in marks.contains { text.contains($0) } } ?? false
        self.key = completion.key
        self.claimedAt = completion.claimedAt.milliseconds
        self.status = Int64(rendered.status)
        self.body = ByteBuffer(bytes: rendered.body)
        self.marks = showsMarkers ? marks : []
    }
}
