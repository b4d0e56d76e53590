-- EXPLAIN (ANALYZE, BUFFERS) of the hot queries of PostgresConcertStore (Sources/ConcertPostgres/PostgresConcertStore*.swift),
-- with the literal values the store binds, on the database bench/run seeded. Writes run inside
-- BEGIN ... ROLLBACK so nothing changes. psql variables: sid (a schedule), uid (a user).
-- The hold and payment statements one by one are what the write functions run inside (the store
-- itself makes one call per write); the last section shows those calls as they run.
\pset pager off
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now \gset
SELECT id AS rid, user_id AS ruid FROM reservations WHERE status = 'HELD' ORDER BY id DESC LIMIT 1 \gset
SELECT concert_id AS cid FROM schedules WHERE id = :sid \gset
SELECT count(*) AS concerts FROM concerts;
SELECT count(*) AS schedules FROM schedules;
SELECT status, count(*) FROM reservations GROUP BY status ORDER BY status;
SELECT count(*) AS users FROM users;
SELECT count(*) AS point_entries FROM point_entries;

\echo '=== hold 1/5: schedule + concert'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT s.id, s.concert_id, s.starts_at, s.total_seats, s.price, c.id, c.title, c.artist, c.venue, c.booking_opens_at, c.booking_closes_at
FROM schedules s JOIN concerts c ON c.id = s.concert_id WHERE s.id = :sid;
BEGIN;
\echo '=== hold 2/5: the user row lock'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) INSERT INTO users (id) VALUES (:uid) ON CONFLICT (id) DO NOTHING;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id FROM users WHERE id = :uid FOR UPDATE;
\echo '=== hold 3/5: live holds of the user'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT COUNT(*) FROM reservations WHERE user_id = :uid AND status = 'HELD' AND held_until > :now;
\echo '=== hold 4/5: expire a run-out hold of the seat'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) UPDATE reservations SET status = 'EXPIRED'
WHERE schedule_id = :sid AND seat_number = 7 AND status = 'HELD' AND held_until <= :now;
\echo '=== hold 5/5: the arbitrating insert (seat 7 is taken: conflict path)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) INSERT INTO reservations (user_id, schedule_id, concert_id, seat_number, price, status, held_until, created_at)
VALUES (:uid, :sid, :cid, 7, 50000, 'HELD', :now + 300000, :now)
ON CONFLICT (schedule_id, seat_number) WHERE status IN ('HELD', 'CONFIRMED') DO NOTHING RETURNING id;
ROLLBACK;

\echo '=== seat map'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT s.id, s.concert_id, s.starts_at, s.total_seats, s.price, r.seat_number, r.status, r.held_until
FROM schedules s LEFT JOIN reservations r ON r.schedule_id = s.id AND r.status IN ('HELD', 'CONFIRMED') WHERE s.id = :sid;

\echo '=== reservable list (first page of 100)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT c.id, c.title, c.artist, c.venue, c.booking_opens_at, c.booking_closes_at FROM concerts c
WHERE c.booking_opens_at <= :now AND c.booking_closes_at > :now AND c.id > 0
  AND EXISTS (SELECT 1 FROM schedules s WHERE s.concert_id = c.id AND s.starts_at > :now)
ORDER BY c.id LIMIT 100;
\echo '=== reservable list: when the page changes next'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT LEAST(
  (SELECT MIN(booking_opens_at) FROM concerts WHERE booking_opens_at > :now),
  (SELECT MIN(booking_closes_at) FROM concerts WHERE booking_closes_at > :now),
  (SELECT MIN(starts_at) FROM schedules WHERE starts_at > :now));

BEGIN;
\echo '=== charge: the conditional UPDATE and the history entry'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) UPDATE users SET balance = balance + 50000 WHERE id = :ruid AND balance <= 1000000000 - 50000 RETURNING balance;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) INSERT INTO point_entries (user_id, type, amount, balance_after, created_at) VALUES (:ruid, 'CHARGE', 50000, 50000, :now);
\echo '=== pay 1/5: the reservation row lock'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, user_id, schedule_id, concert_id, seat_number, price, status, held_until, created_at
FROM reservations WHERE id = :rid AND user_id = :ruid FOR UPDATE;
\echo '=== pay 2/5: the user row lock'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT balance FROM users WHERE id = :ruid FOR UPDATE;
\echo '=== pay 3/5: balance'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) UPDATE users SET balance = 0 WHERE id = :ruid;
\echo '=== pay 4/5: confirm the reservation'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) UPDATE reservations SET status = 'CONFIRMED' WHERE id = :rid;
\echo '=== pay 5/5: the payment'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) INSERT INTO payments (user_id, reservation_id, amount, paid_at) VALUES (:ruid, :rid, 50000, :now) RETURNING id;
ROLLBACK;

-- The write path as it runs now: one call of a function of the migrations per write, whose
-- statements are the ones above (more or less). auto_explain prints the plan of each statement
-- inside, as PL/pgSQL runs it (generic plans for the batch functions, migration 12), as NOTICEs.
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
BEGIN;
\echo '=== concertd_hold: a batch of one (seat 7)'
SELECT * FROM concertd_hold(ARRAY[:uid]::BIGINT[], ARRAY[:sid]::BIGINT[], ARRAY[:cid]::BIGINT[], ARRAY[7]::BIGINT[],
  ARRAY[50000]::BIGINT[], ARRAY[:now]::BIGINT[], ARRAY[:now + 300000]::BIGINT[], ARRAY[4]::BIGINT[]);
ROLLBACK;
BEGIN;
\echo '=== concertd_pay'
SELECT * FROM concertd_pay(:ruid, :rid, :now, NULL, NULL, NULL, NULL, NULL);
ROLLBACK;
SELECT token AS tok, concert_id AS qcid FROM queue_tokens WHERE status = 'WAITING' ORDER BY sequence DESC LIMIT 1 \gset
BEGIN;
\echo '=== concertd_queue_poll_many: a batch of one waiter'
SELECT * FROM concertd_queue_poll_many(ARRAY[:'tok'], ARRAY[:qcid]::BIGINT[], ARRAY[:now]::BIGINT[], ARRAY[200]::BIGINT[],
  ARRAY[300000]::BIGINT[], ARRAY[3600000]::BIGINT[], ARRAY[0]::BIGINT[]);
ROLLBACK;
