#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis servers on free loopback ports, for tests and benchmarks.
#
#   source scripts/services.sh
#   services_start            # installs what is missing, starts both, exports
#                             # CONCERT_TEST_POSTGRES_URL and CONCERT_TEST_REDIS_URL
#   services_stop             # stops both and removes their data
#
# PostgreSQL runs as the `postgres` user from a cluster made with initdb in a fresh directory
# (without fsync unless SERVICES_PG_DURABLE=1); Redis runs with no persistence. Nothing listens on anything but 127.0.0.1.

services_install() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  [ -e /usr/include/sqlite3.h ] || missing+=(libsqlite3-dev)
  # FaultTests runs nginx (from docs/nginx.conf) as a throwaway process in front of the instances.
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "services: installing ${missing[*]}" >&2
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
  fi
}

services_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Tests run PostgreSQL without flushing to disk (fast, and nothing there must outlive a crash);
# SERVICES_PG_DURABLE=1 (bench/run) keeps fsync, synchronous_commit and full-page writes on, as a
# real deployment runs, so that an acknowledged sale would survive a crash.
services_pg_durability() {
  if [ "${SERVICES_PG_DURABLE:-0}" = 1 ]; then
    echo "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
  else
    echo "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
}

services_start_postgres() {
  local bin; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  SERVICES_PG_DIR=$(mktemp -d /tmp/concertd-pg.XXXXXX)
  SERVICES_PG_PORT=$(services_free_port)
  local as=""; [ "$(id -u)" -eq 0 ] && { chown postgres "$SERVICES_PG_DIR"; as="runuser -u postgres --"; }
  $as "$bin/initdb" -D "$SERVICES_PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  $as "$bin/pg_ctl" -D "$SERVICES_PG_DIR/data" -l "$SERVICES_PG_DIR/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $SERVICES_PG_PORT -k $SERVICES_PG_DIR -c max_connections=300 $(services_pg_durability)" start >/dev/null
  SERVICES_PG_BIN=$bin
  export CONCERT_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$SERVICES_PG_PORT/postgres"
  echo "services: PostgreSQL on 127.0.0.1:$SERVICES_PG_PORT" >&2
}

services_start_redis() {
  SERVICES_REDIS_DIR=$(mktemp -d /tmp/concertd-redis.XXXXXX)
  SERVICES_REDIS_PORT=$(services_free_port)
  redis-server --bind 127.0.0.1 --port "$SERVICES_REDIS_PORT" --save '' --appendonly no \
    --dir "$SERVICES_REDIS_DIR" --daemonize yes --pidfile "$SERVICES_REDIS_DIR/redis.pid" \
    --logfile "$SERVICES_REDIS_DIR/log" >/dev/null
  for _ in $(seq 1 50); do
    redis-cli -p "$SERVICES_REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export CONCERT_TEST_REDIS_URL="redis://127.0.0.1:$SERVICES_REDIS_PORT"
  echo "services: Redis on 127.0.0.1:$SERVICES_REDIS_PORT" >&2
}

services_start() {
  services_install
  services_start_postgres
  services_start_redis
}

services_stop() {
  if [ -n "${SERVICES_PG_DIR:-}" ]; then
    local as=""; [ "$(id -u)" -eq 0 ] && as="runuser -u postgres --"
    $as "$SERVICES_PG_BIN/pg_ctl" -D "$SERVICES_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$SERVICES_PG_DIR"; SERVICES_PG_DIR=""
  fi
  if [ -n "${SERVICES_REDIS_DIR:-}" ]; then
    redis-cli -p "$SERVICES_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$SERVICES_REDIS_DIR/redis.pid" 2>/dev/null)" 2>/dev/null || true
    rm -rf "$SERVICES_REDIS_DIR"; SERVICES_REDIS_DIR=""
  fi
}
