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
        return migrator
    }
}
