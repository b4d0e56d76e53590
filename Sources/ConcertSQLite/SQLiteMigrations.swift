import GRDB

/// Numbered, append-only schema changes. Never edit a released one; add the next.
enum SQLiteMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("001_create_core_tables") { db in
            try db.execute(sql: """
                CREATE TABLE concerts (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  title TEXT NOT NULL,
                  artist TEXT NOT NULL,
                  venue TEXT NOT NULL,
                  booking_opens_at INTEGER NOT NULL,
                  booking_closes_at INTEGER NOT NULL,
                  CHECK (booking_closes_at > booking_opens_at)
                );
                CREATE INDEX concerts_booking_opens_at ON concerts (booking_opens_at);
                CREATE INDEX concerts_booking_closes_at ON concerts (booking_closes_at);

                CREATE TABLE schedules (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  concert_id INTEGER NOT NULL REFERENCES concerts (id),
                  starts_at INTEGER NOT NULL,
                  total_seats INTEGER NOT NULL CHECK (total_seats BETWEEN 1 AND 1000),
                  price INTEGER NOT NULL CHECK (price >= 0)
                );
                CREATE INDEX schedules_concert_starts_at ON schedules (concert_id, starts_at);
                CREATE INDEX schedules_starts_at ON schedules (starts_at);

                CREATE TABLE users (
                  id INTEGER PRIMARY KEY,
                  balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0 AND balance <= 1000000000)
                );

                CREATE TABLE reservations (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  user_id INTEGER NOT NULL REFERENCES users (id),
                  schedule_id INTEGER NOT NULL REFERENCES schedules (id),
                  concert_id INTEGER NOT NULL REFERENCES concerts (id),
                  seat_number INTEGER NOT NULL CHECK (seat_number >= 1),
                  price INTEGER NOT NULL CHECK (price >= 0),
                  status TEXT NOT NULL CHECK (status IN ('HELD', 'CONFIRMED', 'EXPIRED', 'CANCELLED')),
                  held_until INTEGER NOT NULL,
                  created_at INTEGER NOT NULL
                );
                -- At most one live (HELD or CONFIRMED) reservation per seat, whatever the code does.
                CREATE UNIQUE INDEX reservations_one_live_per_seat ON reservations (schedule_id, seat_number)
                  WHERE status IN ('HELD', 'CONFIRMED');
                CREATE INDEX reservations_user ON reservations (user_id, id);

                CREATE TABLE point_entries (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  user_id INTEGER NOT NULL REFERENCES users (id),
                  type TEXT NOT NULL CHECK (type IN ('CHARGE', 'PAYMENT')),
                  amount INTEGER NOT NULL,
                  balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
                  created_at INTEGER NOT NULL
                );
                CREATE INDEX point_entries_user ON point_entries (user_id, id);

                CREATE TABLE payments (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  user_id INTEGER NOT NULL REFERENCES users (id),
                  reservation_id INTEGER NOT NULL UNIQUE REFERENCES reservations (id),
                  amount INTEGER NOT NULL CHECK (amount >= 0),
                  paid_at INTEGER NOT NULL
                );
                CREATE INDEX payments_user ON payments (user_id, id);

                CREATE TABLE idempotency_keys (
                  user_id INTEGER NOT NULL,
                  key TEXT NOT NULL,
                  fingerprint TEXT NOT NULL,
                  state TEXT NOT NULL CHECK (state IN ('RUNNING', 'DONE')),
                  response_status INTEGER,
                  response_body BLOB,
                  created_at INTEGER NOT NULL,
                  PRIMARY KEY (user_id, key)
                );
                """)
        }
        // After the sale (refunds, cancelled dates): a payment can be REFUNDED, a schedule
        // cancelled, and the history gains REFUND entries. SQLite cannot change a CHECK
        // constraint in place, so point_entries is rebuilt with the wider one.
        migrator.registerMigration("002_after_sale_columns") { db in
            try db.execute(sql: """
                ALTER TABLE payments ADD COLUMN status TEXT NOT NULL DEFAULT 'PAID'
                  CHECK (status IN ('PAID', 'REFUNDED'));
                ALTER TABLE payments ADD COLUMN refunded_at INTEGER;
                ALTER TABLE schedules ADD COLUMN cancelled_at INTEGER;

                CREATE TABLE point_entries_new (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  user_id INTEGER NOT NULL REFERENCES users (id),
                  type TEXT NOT NULL CHECK (type IN ('CHARGE', 'PAYMENT', 'REFUND')),
                  amount INTEGER NOT NULL,
                  balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
                  created_at INTEGER NOT NULL
                );
                INSERT INTO point_entries_new (id, user_id, type, amount, balance_after, created_at)
                  SELECT id, user_id, type, amount, balance_after, created_at FROM point_entries;
                DROP TABLE point_entries;
                ALTER TABLE point_entries_new RENAME TO point_entries;
                CREATE INDEX point_entries_user ON point_entries (user_id, id);
                """)
        }
        // On-sale control (issue 14): a concert's line policy, when an operator changed it, and
        // its pre-queue's draw (the seed is secret until drawn_at).
        migrator.registerMigration("003_queue_policies") { db in
            try db.execute(sql: """
                CREATE TABLE queue_policies (
                  concert_id INTEGER PRIMARY KEY REFERENCES concerts (id),
                  max_active INTEGER NOT NULL CHECK (max_active BETWEEN 1 AND 1000000),
                  admit_per_minute INTEGER CHECK (admit_per_minute BETWEEN 1 AND 10000000),
                  active_seconds INTEGER NOT NULL CHECK (active_seconds BETWEEN 30 AND 86400),
                  paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
                  queue_opens_at INTEGER,
                  draw_seed TEXT CHECK (draw_seed IS NULL OR length(draw_seed) = 64),
                  draw_commitment TEXT,
                  drawn_at INTEGER,
                  entrants INTEGER,
                  CHECK ((draw_seed IS NULL) = (draw_commitment IS NULL))
                );
                """)
        }
        // Refunds and cancelled dates (PostgreSQL migration 6): a refund may bring a balance past
        // the charge cap, so users is rebuilt with a CHECK that keeps it non-negative only (the
        // migrator runs with foreign keys off and checks them before it commits); a REFUND entry
        // names its payment, at most one per payment.
        migrator.registerMigration("004_refunds") { db in
            try db.execute(sql: """
                CREATE TABLE users_new (
                  id INTEGER PRIMARY KEY,
                  balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0)
                );
                INSERT INTO users_new (id, balance) SELECT id, balance FROM users;
                DROP TABLE users;
                ALTER TABLE users_new RENAME TO users;

                ALTER TABLE point_entries ADD COLUMN payment_id INTEGER REFERENCES payments (id);
                CREATE UNIQUE INDEX point_entries_one_refund_per_payment ON point_entries (payment_id) WHERE type = 'REFUND';
                """)
        }
        // Webhooks from a transactional outbox (issue 15). The outbox is written by triggers, in
        // the same transaction as the change it reports, and only while a webhook is registered
        // (one INSERT ... WHERE EXISTS per trigger). `data` is a snapshot of the changed row's
        // columns (times in milliseconds); the relay renders the wire shape from it in Swift.
        migrator.registerMigration("005_webhooks") { db in
            try db.execute(sql: """
                CREATE TABLE webhooks (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  url TEXT NOT NULL,
                  events TEXT NOT NULL,
                  secret TEXT NOT NULL,
                  created_at INTEGER NOT NULL
                );
                CREATE TABLE webhook_events (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  type TEXT NOT NULL,
                  reservation_id INTEGER,
                  data TEXT NOT NULL,
                  occurred_at INTEGER NOT NULL,
                  dispatched INTEGER NOT NULL DEFAULT 0 CHECK (dispatched IN (0, 1))
                );
                CREATE INDEX webhook_events_undispatched ON webhook_events (id) WHERE dispatched = 0;
                CREATE TABLE webhook_deliveries (
                  id INTEGER PRIMARY KEY AUTOINCREMENT,
                  webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
                  event_id INTEGER NOT NULL REFERENCES webhook_events (id),
                  reservation_id INTEGER,
                  state TEXT NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'DELIVERED', 'FAILED')),
                  attempts INTEGER NOT NULL DEFAULT 0,
                  next_attempt_at INTEGER NOT NULL,
                  lease_until INTEGER,
                  last_status INTEGER,
                  last_error TEXT,
                  created_at INTEGER NOT NULL,
                  delivered_at INTEGER,
                  UNIQUE (webhook_id, event_id)
                );
                CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'PENDING';
                CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, reservation_id, event_id) WHERE state = 'PENDING';
                CREATE INDEX reservations_held_until ON reservations (held_until) WHERE status = 'HELD';

                CREATE TRIGGER webhook_reservation_held AFTER INSERT ON reservations
                WHEN NEW.status = 'HELD' AND EXISTS (SELECT 1 FROM webhooks)
                BEGIN
                  INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
                  VALUES ('reservation.held', NEW.id, \(SQLiteMigrations.reservationJSON), \(SQLiteMigrations.nowMilliseconds));
                END;
                CREATE TRIGGER webhook_reservation_ended AFTER UPDATE OF status ON reservations
                WHEN OLD.status <> NEW.status AND (NEW.status = 'CANCELLED' OR (OLD.status = 'HELD' AND NEW.status = 'EXPIRED'))
                  AND EXISTS (SELECT 1 FROM webhooks)
                BEGIN
                  INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
                  VALUES (CASE NEW.status WHEN 'CANCELLED' THEN 'reservation.cancelled' ELSE 'reservation.expired' END,
                          NEW.id, \(SQLiteMigrations.reservationJSON), \(SQLiteMigrations.nowMilliseconds));
                END;
                CREATE TRIGGER webhook_payment_paid AFTER INSERT ON payments
                WHEN EXISTS (SELECT 1 FROM webhooks)
                BEGIN
                  INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
                  VALUES ('payment.paid', NEW.reservation_id, \(SQLiteMigrations.paymentJSON), \(SQLiteMigrations.nowMilliseconds));
                END;
                CREATE TRIGGER webhook_payment_refunded AFTER UPDATE OF status ON payments
                WHEN OLD.status = 'PAID' AND NEW.status = 'REFUNDED' AND EXISTS (SELECT 1 FROM webhooks)
                BEGIN
                  INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
                  VALUES ('payment.refunded', NEW.reservation_id, \(SQLiteMigrations.paymentJSON), \(SQLiteMigrations.nowMilliseconds));
                END;
                CREATE TRIGGER webhook_schedule_cancelled AFTER UPDATE OF cancelled_at ON schedules
                WHEN OLD.cancelled_at IS NULL AND NEW.cancelled_at IS NOT NULL AND EXISTS (SELECT 1 FROM webhooks)
                BEGIN
                  INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
                  VALUES ('schedule.cancelled', NULL, json_object('scheduleId', NEW.id, 'concertId', NEW.concert_id),
                          \(SQLiteMigrations.nowMilliseconds));
                END;
                """)
        }
        // The reservation events' snapshot gains `paymentId` (as the API's Reservation did), and
        // the retention sweep (`pruneWebhookEvents`) finds old events by time and their deliveries
        // by event. (PostgreSQL migration 10.)
        migrator.registerMigration("007_webhook_retention") { db in
            try db.execute(sql: """
                DROP TRIGGER webhook_reservation_held;
                DROP TRIGGER webhook_reservation_ended;
                CREATE TRIGGER webhook_reservation_held AFTER INSERT ON reservations
                WHEN NEW.status = 'HELD' AND EXISTS (SELECT 1 FROM webhooks)
                BEGIN
                  INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
                  VALUES ('reservation.held', NEW.id, \(SQLiteMigrations.reservationWithPaymentJSON), \(SQLiteMigrations.nowMilliseconds));
                END;
                CREATE TRIGGER webhook_reservation_ended AFTER UPDATE OF status ON reservations
                WHEN OLD.status <> NEW.status AND (NEW.status = 'CANCELLED' OR (OLD.status = 'HELD' AND NEW.status = 'EXPIRED'))
                  AND EXISTS (SELECT 1 FROM webhooks)
                BEGIN
                  INSERT INTO webhook_events (type, reservation_id, data, occurred_at)
                  VALUES (CASE NEW.status WHEN 'CANCELLED' THEN 'reservation.cancelled' ELSE 'reservation.expired' END,
                          NEW.id, \(SQLiteMigrations.reservationWithPaymentJSON), \(SQLiteMigrations.nowMilliseconds));
                END;
                CREATE INDEX webhook_events_occurred_at ON webhook_events (occurred_at);
                CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
                """)
        }
        return migrator
    }

    /// The snapshot columns of a reservation and of a payment (see `WebhookSnapshot`).
    private static let reservationJSON = """
        json_object('id', NEW.id, 'scheduleId', NEW.schedule_id, 'concertId', NEW.concert_id, \
        'seatNumber', NEW.seat_number, 'price', NEW.price, 'status', NEW.status, 'heldUntil', NEW.held_until, \
        'createdAt', NEW.created_at)
        """
    /// `reservationJSON` plus `paymentId` (migration 007): the reservation's payment, if it was paid.
    private static let reservationWithPaymentJSON = """
        json_object('id', NEW.id, 'scheduleId', NEW.schedule_id, 'concertId', NEW.concert_id, \
        'seatNumber', NEW.seat_number, 'price', NEW.price, 'status', NEW.status, 'heldUntil', NEW.held_until, \
        'createdAt', NEW.created_at, 'paymentId', (SELECT p.id FROM payments p WHERE p.reservation_id = NEW.id))
        """
    private static let paymentJSON = """
        json_object('id', NEW.id, 'reservationId', NEW.reservation_id, 'amount', NEW.amount, 'status', NEW.status, \
        'paidAt', NEW.paid_at, 'refundedAt', NEW.refunded_at)
        """
    /// The database's wall clock in milliseconds (the event's `timestamp`; no injected clock reaches a trigger).
    private static let nowMilliseconds = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
}
