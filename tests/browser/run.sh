#!/usr/bin/env bash
# The browser test: installs headless Chromium, its driver and Selenium when missing, then runs
# pytest on tests/browser against a real concertd (CONCERTD_BIN, default .build/debug/concertd,
# built by `swift build` before). Prints "N passed, N failed" last; exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q chromium chromium-driver >/dev/null; then
        apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null || {
            echo "could not install chromium chromium-driver" >&2
            echo "0 passed, 1 failed"
            exit 1
        }
    fi
fi
missing=""
python3 -c 'import selenium' >/dev/null 2>&1 || missing="$missing selenium"
python3 -c 'import pytest' >/dev/null 2>&1 || missing="$missing pytest"
if [ -n "$missing" ]; then
    echo "installing$missing"
    python3 -m pip install -q $missing || python3 -m pip install -q --break-system-packages $missing || {
        echo "could not install$missing" >&2
        echo "0 passed, 1 failed"
        exit 1
    }
fi

export PYTHONDONTWRITEBYTECODE=1
report=$(mktemp)
trap 'rm -f "$report"' EXIT
# Bounded: the test takes well under two minutes; a hung browser or server is cut off at four.
timeout -k 10 240 python3 -m pytest tests/browser -v --tb=short -p no:cacheprovider --junitxml="$report" "$@"
status=$?
python3 - "$report" "$status" <<'PY'
import sys
import xml.etree.ElementTree as ET
passed = failed = 0
try:
    for suite in ET.parse(sys.argv[1]).getroot().iter("testsuite"):
        tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        passed += tests - skipped - bad
        failed += bad
except Exception:
    pass
if int(sys.argv[2]) != 0 and failed == 0:
    failed = 1
print(f"{passed} passed, {failed} failed")
PY
exit $status
