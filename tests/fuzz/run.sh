#!/usr/bin/env bash
# The fuzz test: schemathesis generates requests for every operation of the served /openapi.yaml
# (valid and invalid ones) against a real concertd (CONCERTD_BIN, default .build/debug/concertd,
# built by `swift build` before) and fails on any 5xx, any status, content type, header or body
# the document does not describe, or a crash. Runs on a throwaway SQLite file, and also on
# PostgreSQL + Redis when CONCERT_TEST_POSTGRES_URL and CONCERT_TEST_REDIS_URL are set (a fresh
# database, dropped afterwards). After each run `concertd verify` checks the data's invariants.
#
# Bounded: FUZZ_MAX_EXAMPLES (default 50) cases per operation and phase, each schemathesis run cut
# off (and failed) after FUZZ_TIMEOUT seconds (default 240): about 40 s a run on an idle 2-core
# machine. The cut-off catches a hang, not slowness: a run on a machine busy with a release build
# once took past 80 s, the old default, in its fuzzing phase with every case passing. The seed is
# fixed by default, so that the test command gives the same answer every time; FUZZ_SEED=random
# explores new cases, and FUZZ_SEED=N replays a run (the seed is printed). FUZZ_HAR_DIR keeps
# every request and response. Prints "fuzz: ..." last; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

CONCERTD=${CONCERTD_BIN:-$root/.build/debug/concertd}
case $CONCERTD in /*) ;; *) CONCERTD=$root/$CONCERTD ;; esac
SCHEMATHESIS_VERSION=4.32.5
SPEC_VALIDATOR_VERSION=0.9.0
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/concertd/schemathesis-venv
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-50}
RUN_TIMEOUT=${FUZZ_TIMEOUT:-240}
SEED=${FUZZ_SEED:-20261124}
[ "$SEED" = random ] && SEED=$RANDOM$RANDOM
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
export CONCERT_JWT_SECRET="fuzz-secret-$RANDOM$RANDOM$RANDOM-0123456789abcdefghij"   # ≥ 32 bytes

summary() { echo "fuzz: $*"; }
[ -x "$CONCERTD" ] || { echo "concertd binary not found at $CONCERTD (build it, or set CONCERTD_BIN)" >&2; summary "0 passed, 1 failed"; exit 1; }

# The venv, made once and reused; rebuilt when the pinned version changes.
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" \
            "openapi-spec-validator==$SPEC_VALIDATOR_VERSION"; }; then
        echo "could not install schemathesis" >&2
        summary "0 passed, 1 failed"
        exit 1
    fi
fi
export PYTHONDONTWRITEBYTECODE=1

work=$(mktemp -d /tmp/concertd-fuzz.XXXXXX)
pids=()
dropdb_url=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -n "$dropdb_url" ]; then
        psql -q "$dropdb_url" -c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
command -v psql >/dev/null 2>&1 || PATH=$PATH:$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

# The document must be a valid OpenAPI 3.1 document before anything is generated from it.
if ! "$VENV/bin/python" -m openapi_spec_validator Sources/ConcertAPI/Resources/openapi.yaml >"$work/validator.log" 2>&1; then
    cat "$work/validator.log" >&2
    summary "0 passed, 1 failed (openapi.yaml is not a valid OpenAPI document)"
    exit 1
fi

passed=0; failed=0; cases=0; ran=()

# fuzz NAME DATABASE_URL [REDIS_URL]: one server, seeded, fuzzed, verified.
fuzz() {
    local name=$1 database=$2 redis=${3:-} dir="$work/$1" status=0
    mkdir -p "$dir"
    ran+=("$name")
    # Only the settings given here: a CONCERT_* variable of the caller's shell must not leak in.
    local clean=(env); local var
    for var in $(compgen -e); do case $var in CONCERT_JWT_SECRET) ;; CONCERT_*) clean+=(-u "$var") ;; esac; done
    local extra=()
    [ -n "$redis" ] && extra=(--redis-url "$redis")
    # --dev so that POST /dev/token exists too; the secret is still ours (demo concerts fill the
    # empty database, which only adds objects to find).
    # CONCERT_WEBHOOK_RESOLVER=loopback-only: the webhook URLs schemathesis makes up (public-looking
    # names and addresses among them) never cause a DNS lookup or a connection beyond loopback.
    "${clean[@]}" CONCERT_REDIS_KEY_PREFIX="concertd-fuzz-$$-$name:" CONCERT_WEBHOOK_RESOLVER=loopback-only "$CONCERTD" serve --dev --host 127.0.0.1 --port 0 \
        --database-url "$database" "${extra[@]}" >"$dir/server.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    local base="" _
    for _ in $(seq 1 300); do
        base=$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$dir/server.log" | head -n 1 | sed 's/listening on //')
        [ -n "$base" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$base" ]; then
        echo "$name: concertd did not start:" >&2; tail -n 20 "$dir/server.log" >&2
        failed=$((failed + 1)); return
    fi
    echo "$name: concertd at $base"
    if ! CONCERTD_BIN="$CONCERTD" "$VENV/bin/python" "$root/tests/fuzz/seed.py" "$base" "$dir/schemathesis.toml"; then
        failed=$((failed + 1)); return
    fi
    local started=$SECONDS reports=()
    # FUZZ_HAR_DIR keeps every request and response of the run, for a look at what was sent.
    [ -n "${FUZZ_HAR_DIR:-}" ] && reports=(--report har --report-har-path "$FUZZ_HAR_DIR/$name.har")
    # From the scratch folder, so that schemathesis and Hypothesis write nothing into the repository.
    (cd "$dir" && timeout -k 10 "$RUN_TIMEOUT" "$VENV/bin/schemathesis" --no-color --config-file "$dir/schemathesis.toml" \
        run "$base/openapi.yaml" --checks "$CHECKS" --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
        --phases examples,coverage,fuzzing --workers 2 --request-timeout 10 --generation-database none \
        --suppress-health-check all "${reports[@]}") 2>&1 | tee "$dir/schemathesis.log"
    status=${PIPESTATUS[0]}
    cases=$((cases + $(sed -n 's/^ *\([0-9]*\) generated.*/\1/p' "$dir/schemathesis.log" | tail -n 1 | grep . || echo 0)))
    if [ "$status" = 124 ] || [ "$status" = 137 ]; then
        echo "$name: schemathesis ran past ${RUN_TIMEOUT}s and was stopped" >&2
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "$name: concertd is no longer running:" >&2; tail -n 30 "$dir/server.log" >&2
        status=1
    fi
    # Nothing the fuzzer sent may have broken an invariant of the data.
    if ! "${clean[@]}" "$CONCERTD" verify --database-url "$database" >"$dir/verify.log" 2>&1; then
        echo "$name: concertd verify found a breach:" >&2; cat "$dir/verify.log" >&2
        status=1
    fi
    echo "$name: schemathesis took $((SECONDS - started)) s (seed $SEED)"
    if [ "$status" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}

fuzz sqlite "sqlite:$work/fuzz.sqlite"

if [ -n "${CONCERT_TEST_POSTGRES_URL:-}" ] && [ -n "${CONCERT_TEST_REDIS_URL:-}" ]; then
    dbname="concertd_fuzz_$$"
    if psql -q "$CONCERT_TEST_POSTGRES_URL" -c "CREATE DATABASE $dbname" >"$work/createdb.log" 2>&1; then
        dropdb_url=$CONCERT_TEST_POSTGRES_URL
        fuzz postgres+redis "${CONCERT_TEST_POSTGRES_URL%/*}/$dbname" "$CONCERT_TEST_REDIS_URL"
    else
        cat "$work/createdb.log" >&2
        echo "postgres+redis: could not create a database" >&2
        failed=$((failed + 1))
    fi
fi

summary "$passed passed, $failed failed (${ran[*]}; $cases test cases, at most $MAX_EXAMPLES per operation and phase; seed $SEED)"
[ "$failed" = 0 ]
