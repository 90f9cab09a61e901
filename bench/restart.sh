#!/usr/bin/env bash
# Restart: a node holding RESTART_ENTRIES entries (default 1,000,000, written
# through the API by 64 clients) is stopped and started 3 times; prints how
# long until its API serves again, and its peak RSS (target: <= 2 s).
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/$BUILD"
N=${RESTART_ENTRIES:-1000000}
D="$ROOT/bench-out/restart"
rm -rf "$D"
mkdir -p "$D"
port() { echo $((10000 + RANDOM % 22000)); }
"$BIN/trialsync" init --trial RESTART --dir "$D/t" --peer-port "$(port)" --api-port "$(port)" > /dev/null
"$BIN/trialsyncd" --config "$D/t/hub/node.conf" 2>> "$D/hub.log" & P=$!
trap 'kill $P 2>/dev/null || true' EXIT
until "$BIN/trialsync" status --node "$D/t/hub" --json > /dev/null 2>&1; do sleep 0.05; done
echo "writing $N entries: $("$BIN/tests/ts_load" "$D/t/hub" "$N" 64 101-1)"
kill "$P"; wait "$P" || true
for r in 1 2 3; do
    t0=$(date +%s%3N)
    "$BIN/trialsyncd" --config "$D/t/hub/node.conf" 2>> "$D/hub.log" & P=$!
    until "$BIN/trialsync" status --node "$D/t/hub" --json > /dev/null 2>&1; do sleep 0.01; done
    t1=$(date +%s%3N)
    echo "restart $r with $N entries ($(du -sh "$D/t/hub/data" | cut -f1) store): serving after $((t1 - t0)) ms, RSS $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$P/status") MiB"
    kill "$P"; wait "$P" || true
done
