#!/usr/bin/env bash
# What a waiting-room poll costs PostgreSQL alone (PostgresWaitingRoom) with a long line: fills
# one concert's line with N waiters (default 100,000) through concertd_queue_join, then times
# polls of the head, the middle and the back of the line (a timed loop, and the position query's
# plan), and runs pgbench with random waiters polling for a few seconds.
#
#   bench/queue-position-pg.sh                 # builds nothing: uses .build/debug/concertd
#   N=10000 SECONDS_PER_RUN=5 CONCERTD=.build-bench/release/concertd bench/queue-position-pg.sh
#
# It starts a throwaway PostgreSQL with scripts/services.sh unless CONCERT_TEST_POSTGRES_URL is
# set, and works in a database of its own, dropped at the end. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONCERTD=${CONCERTD:-.build/debug/concertd}
MAX_ACTIVE=200

started_services=0
if [ -z "${CONCERT_TEST_POSTGRES_URL:-}" ]; then
  # shellcheck source=../scripts/services.sh
  source scripts/services.sh
  services_start_postgres
  started_services=1
fi
admin=$CONCERT_TEST_POSTGRES_URL
db="bench_queue_$$"
url="${admin%/*}/$db"
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
cleanup() {
  psql -X -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$started_services" = 1 ]; then services_stop; fi
}
trap cleanup EXIT

psql -X -q "$admin" -c "CREATE DATABASE $db"
CONCERT_DATABASE_URL=$url "$CONCERTD" migrate >/dev/null
q() { psql -X -q -A -t "$url" "$@"; }

now=1000000
policy="$now, $MAX_ACTIVE, 600000, 3600000, 0"   # now, max ACTIVE, ACTIVE ms, idle ms (nobody goes idle), no rate
echo "filling the line: $MAX_ACTIVE ACTIVE + $N waiting (one transaction per join)"
t0=$(date +%s.%N)
q -c "DO \$\$ BEGIN FOR u IN 1..$((N + MAX_ACTIVE)) LOOP
        PERFORM concertd_queue_join(u, 42, '42.' || md5(u::text), $policy); COMMIT;
      END LOOP; END \$\$"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v n=$((N + MAX_ACTIVE)) 'BEGIN { printf "  %.0f µs per join on average\n", (b - a) * 1000000 / n }'
q -c "VACUUM ANALYZE"
q -c "SELECT 'line: ' || waiting_count || ' waiting, ' || active_count || ' ACTIVE, ' ||
             (SELECT count(*) FROM queue_buckets WHERE concert_id = 42) || ' buckets, ' ||
             (SELECT count(*) FROM queue_blocks WHERE concert_id = 42) || ' blocks' FROM queue_lines WHERE concert_id = 42"

# Polls of the head, the middle and the back of the line, 500 each in one session (a fresh
# session's first call also compiles and plans the function: that is not a poll's cost).
q -c "DO \$\$
DECLARE started timestamptz; pos bigint; u bigint;
BEGIN
  FOREACH u IN ARRAY ARRAY[$((MAX_ACTIVE + 1)), $((MAX_ACTIVE + N / 2)), $((MAX_ACTIVE + N))] LOOP
    SELECT o_position INTO pos FROM concertd_queue_poll('42.' || md5(u::text), 42, $policy);
    started := clock_timestamp();
    FOR i IN 1..500 LOOP
      PERFORM * FROM concertd_queue_poll('42.' || md5(u::text), 42, $now + i, $MAX_ACTIVE, 600000, 3600000, 0);
    END LOOP;
    RAISE NOTICE 'poll at position %: % µs each (500 in one session)', pos,
      round(extract(epoch FROM clock_timestamp() - started) * 1000000 / 500);
  END LOOP;
END \$\$" 2>&1 | sed 's/^NOTICE: */  /'
echo "plan of the position read for the back of the line (concertd_queue_position, migration 9):"
token="42.$(printf '%s' "$((MAX_ACTIVE + N))" | md5sum | cut -d' ' -f1)"
seq=$(q -c "SELECT sequence FROM queue_tokens WHERE token = '$token'")
q -c "EXPLAIN (ANALYZE, BUFFERS)
      SELECT coalesce((SELECT sum(b.waiting) FROM queue_buckets b WHERE b.concert_id = 42 AND b.bucket < $seq / 512), 0)
           + coalesce((SELECT sum(k.waiting) FROM queue_blocks k WHERE k.concert_id = 42
                         AND k.block >= ($seq / 512) * 16 AND k.block < $seq / 32), 0)
           + (SELECT count(*) FROM queue_tokens w WHERE w.concert_id = 42 AND w.status = 'WAITING'
                AND w.sequence >= ($seq / 32) * 32 AND w.sequence < $seq)" | sed 's/^/  /'

script=$(mktemp)
cat >"$script" <<SQL
\set u random($((MAX_ACTIVE + 1)), $((MAX_ACTIVE + N)))
SELECT * FROM concertd_queue_poll('42.' || md5(:u::text), 42, $policy);
SQL
echo "pgbench: random waiters polling, 8 connections, ${SECONDS_PER_RUN} s:"
"$bin/pgbench" -n -M prepared -c 8 -j 2 -T "$SECONDS_PER_RUN" -f "$script" "$url" 2>&1 \
  | grep -E 'latency average|tps' | sed 's/^/  /'
echo "pgbench: SELECT 1 for comparison (the ceiling of one round trip here), 8 connections, ${SECONDS_PER_RUN} s:"
echo 'SELECT 1;' >"$script"
"$bin/pgbench" -n -M prepared -c 8 -j 2 -T "$SECONDS_PER_RUN" -f "$script" "$url" 2>&1 \
  | grep -E 'latency average|tps' | sed 's/^/  /'
rm -f "$script"
