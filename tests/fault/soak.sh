#!/usr/bin/env bash
# make soak: the fault suites with many more rounds than `make test` runs.
#   SOAK_ROUNDS  kill -9 rounds (default 200)
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export TS_BIN="$ROOT/$BUILD" TS_SRC="$ROOT" TS_TEST_TMP="$ROOT/$BUILD/soak-tmp"
mkdir -p "$TS_TEST_TMP"
echo "== kill -9 during writes, ${SOAK_ROUNDS:-200} rounds"
CRASH_ROUNDS=${SOAK_ROUNDS:-200} bash "$ROOT/tests/fault/test_crash_kill9.sh"
echo "== kill -9 of hub and site during a 200000-entry catch-up"
BACKLOG=200000 bash "$ROOT/tests/fault/test_kill_catchup.sh"
echo "== replication with 10000 offline writes per site"
OFFLINE_RECORDS=10000 bash "$ROOT/tests/integration/test_replication.sh"
