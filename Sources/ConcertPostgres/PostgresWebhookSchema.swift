/// The webhook tables and the outbox triggers (PostgreSQL migration 7), mirroring SQLite's
/// "005_webhooks".
///
/// The outbox (`webhook_events`) is written by row triggers on reservations, payments and
/// schedules, so an event commits or rolls back with the change it reports, whatever code made
/// the change (the refund and schedule-cancel functions included). Each trigger is one
/// `INSERT ... SELECT ... WHERE EXISTS (SELECT 1 FROM webhooks)`: with no webhook registered a
/// hold pays one index probe of an empty table. `data` is a snapshot of the row's columns
/// (times in milliseconds, as stored); the relay renders the API's wire shape from it in Swift,
/// so the time format lives in one place (`RFC3339`).
enum PostgresWebhookSchema {
    static let statements: [String] = [
        """
        CREATE TABLE webhooks (
          id BIGSERIAL PRIMARY KEY,
          url TEXT NOT NULL,
          events TEXT NOT NULL,
          secret TEXT NOT NULL,
          created_at BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE webhook_events (
          id BIGSERIAL PRIMARY KEY,
          type TEXT NOT NULL,
          reservation_id BIGINT,
          data TEXT NOT NULL,
          occurred_at BIGINT NOT NULL,
          dispatched BOOLEAN NOT NULL DEFAULT false
        )
        """,
        "CREATE INDEX webhook_events_undispatched ON webhook_events (id) WHERE NOT dispatched",
        "CREATE INDEX webhook_events_undispatched_reservation ON webhook_events (reservation_id, id) WHERE NOT dispatched",
        """
        CREATE TABLE webhook_deliveries (
          id BIGSERIAL PRIMARY KEY,
          webhook_id BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
          event_id BIGINT NOT NULL REFERENCES webhook_events (id),
          reservation_id BIGINT,
          state TEXT NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'FAILED')),
          attempts INTEGER NOT NULL DEFAULT 0,
          next_attempt_at BIGINT NOT NULL,
          lease_until BIGINT,
          last_status INTEGER,
          last_error TEXT,
          created_at BIGINT NOT NULL,
          delivered_at BIGINT,
          UNIQUE (webhook_id, event_id)
        )
        """,
        "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'PENDING'",
        "CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, reservation_id, event_id) WHERE state = 'PENDING'",
        "CREATE INDEX reservations_held_until ON reservations (held_until) WHERE status = 'HELD'",
        """
        CREATE FUNCTION webhook_reservation_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
          SELECT CASE WHEN TG_OP = 'INSERT' THEN 'reservation.held'
                      WHEN NEW.status = 'CANCELLED' THEN 'reservation.cancelled'
                      ELSE 'reservation.expired' END,
                 NEW.id,
                 json_build_object('id', NEW.id, 'scheduleId', NEW.schedule_id, 'concertId', NEW.concert_id,
                   'seatNumber', NEW.seat_number, 'price', NEW.price, 'status', NEW.status,
                   'heldUntil', NEW.held_until, 'createdAt', NEW.created_at)::text,
                 (extract(epoch FROM clock_timestamp()) * 1000)::bigint
          WHERE EXISTS (SELECT 1 FROM webhooks);
          RETURN NULL;
        END $$
        """,
        """
        CREATE TRIGGER webhook_reservation_held AFTER INSERT ON reservations FOR EACH ROW
          WHEN (NEW.status = 'HELD') EXECUTE FUNCTION webhook_reservation_event()
        """,
        """
        CREATE TRIGGER webhook_reservation_ended AFTER UPDATE OF status ON reservations FOR EACH ROW
          WHEN (OLD.status <> NEW.status AND (NEW.status = 'CANCELLED' OR (OLD.status = 'HELD' AND NEW.status = 'EXPIRED')))
          EXECUTE FUNCTION webhook_reservation_event()
        """,
        """
        CREATE FUNCTION webhook_payment_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
          SELECT CASE WHEN TG_OP = 'INSERT' THEN 'payment.paid' ELSE 'payment.refunded' END,
                 NEW.reservation_id,
                 json_build_object('id', NEW.id, 'reservationId', NEW.reservation_id, 'amount', NEW.amount,
                   'status', NEW.status, 'paidAt', NEW.paid_at, 'refundedAt', NEW.refunded_at)::text,
                 (extract(epoch FROM clock_timestamp()) * 1000)::bigint
          WHERE EXISTS (SELECT 1 FROM webhooks);
          RETURN NULL;
        END $$
        """,
        "CREATE TRIGGER webhook_payment_paid AFTER INSERT ON payments FOR EACH ROW EXECUTE FUNCTION webhook_payment_event()",
        """
        CREATE TRIGGER webhook_payment_refunded AFTER UPDATE OF status ON payments FOR EACH ROW
          WHEN (OLD.status = 'PAID' AND NEW.status = 'REFUNDED') EXECUTE FUNCTION webhook_payment_event()
        """,
        """
        CREATE FUNCTION webhook_schedule_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
          SELECT 'schedule.cancelled', NULL,
                 json_build_object('scheduleId', NEW.id, 'concertId', NEW.concert_id)::text,
                 (extract(epoch FROM clock_timestamp()) * 1000)::bigint
          WHERE EXISTS (SELECT 1 FROM webhooks);
          RETURN NULL;
        END $$
        """,
        """
        CREATE TRIGGER webhook_schedule_cancelled AFTER UPDATE OF cancelled_at ON schedules FOR EACH ROW
          WHEN (OLD.cancelled_at IS NULL AND NEW.cancelled_at IS NOT NULL) EXECUTE FUNCTION webhook_schedule_event()
        """,
    ]

    /// Migration 10: `paymentId` in the reservation snapshot (the payment of a paid reservation,
    /// through the unique `payments.reservation_id`; null otherwise), and the indexes of the
    /// retention sweep.
    static let retentionStatements: [String] = [
        """
        CREATE OR REPLACE FUNCTION webhook_reservation_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
          SELECT CASE WHEN TG_OP = 'INSERT' THEN 'reservation.held'
                      WHEN NEW.status = 'CANCELLED' THEN 'reservation.cancelled'
                      ELSE 'reservation.expired' END,
                 NEW.id,
                 json_build_object('id', NEW.id, 'scheduleId', NEW.schedule_id, 'concertId', NEW.concert_id,
                   'seatNumber', NEW.seat_number, 'price', NEW.price, 'status', NEW.status,
                   'heldUntil', NEW.held_until, 'createdAt', NEW.created_at,
                   'paymentId', (SELECT p.id FROM payments p WHERE p.reservation_id = NEW.id))::text,
                 (extract(epoch FROM clock_timestamp()) * 1000)::bigint
          WHERE EXISTS (SELECT 1 FROM webhooks);
          RETURN NULL;
        END $$
        """,
        "CREATE INDEX webhook_events_occurred_at ON webhook_events (occurred_at)",
        "CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id)",
    ]
}
