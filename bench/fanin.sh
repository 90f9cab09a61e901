#!/usr/bin/env bash
# Fan-in: one hub with many connected sites (TARGETS.md): the hub's peak RSS
# with them all connected, the entries/s it applies while every site streams,
# and how long after a hub restart every site is connected again.
#   FANIN_SITES    sites (default 100)
#   FANIN_ENTRIES  entries each site writes while connected (default 500)
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/$BUILD"
TS="$BIN/trialsync"
TSD="$BIN/trialsyncd"
LOAD="$BIN/tests/ts_load"
SITES=${FANIN_SITES:-100}
ENTRIES=${FANIN_ENTRIES:-500}
OUT="$ROOT/bench-out/fanin"
rm -rf "$OUT"
mkdir -p "$OUT"
LOGS="$OUT"
. "$ROOT/deploy/nodes.sh"
ulimit -n 65536 2>/dev/null || true

connected() { "$TS" status --node "$OUT/trial/hub" --json | jq '[.peers[] | select(.connected)] | length'; }
wait_connected() {  # N SECONDS
    local deadline=$(( $(date +%s) + $2 ))
    while [ "$(connected)" -lt "$1" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

"$TS" init --trial FANIN --dir "$OUT/trial" --peer-port "$(free_port)" --api-port "$(free_port)" > /dev/null
"$TSD" --config "$OUT/trial/hub/node.conf" >> "$OUT/hub.log" 2>&1 & PIDS[hub]=$!
sleep 0.5
echo "issuing $SITES site bundles"
for i in $(seq 1 "$SITES"); do
    s=$((200 + i))
    "$TS" site add "$s" --dir "$OUT/trial" --out "$OUT/s$s" --api-port "$(free_port)" > /dev/null
    sed -i 's/^disk_free_min_mb = .*/disk_free_min_mb = 16/' "$OUT/s$s/node.conf"
done
echo "starting $SITES sites"
for i in $(seq 1 "$SITES"); do
    s=$((200 + i))
    "$TSD" --config "$OUT/s$s/node.conf" >> "$OUT/s$s.log" 2>&1 & PIDS[s$s]=$!
done
wait_connected "$SITES" 120 || { echo "only $(connected) of $SITES sites connected"; exit 1; }
echo "all $SITES sites connected"

rss=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/${PIDS[hub]}/status")
printf 'hub peak RSS with %d sites connected: %d MiB (target <= 96 MiB with 100)\n' "$SITES" "$rss" | tee -a "$OUT/summary.txt"

# The hub goes down; every site records ENTRIES; the hub comes back: time
# until every site is connected again, and the rate at which the hub applies
# all the sites' backlogs streaming at once.
kill "${PIDS[hub]}"; wait "${PIDS[hub]}" 2>/dev/null || true
loads=()
for i in $(seq 1 "$SITES"); do
    s=$((200 + i))
    "$LOAD" "$OUT/s$s" "$ENTRIES" 2 "$s-1" > /dev/null &
    loads+=($!)
done
for p in "${loads[@]}"; do wait "$p" || echo "a site's writes failed" >&2; done
want=$(( $(for i in $(seq 1 "$SITES"); do "$TS" status --node "$OUT/s$((200 + i))" --json | jq '[.version_vector[] | select(.origin == "'$((200 + i))'") | .seq] | add // 0'; done | paste -sd+ | bc) ))
"$TSD" --config "$OUT/trial/hub/node.conf" >> "$OUT/hub.log" 2>&1 & PIDS[hub]=$!
t0=$(date +%s%3N)
until "$TS" status --node "$OUT/trial/hub" --json > /dev/null 2>&1; do sleep 0.02; done
wait_connected "$SITES" 60 || true
t1=$(date +%s%3N)
printf 'hub restart: %d of %d sites connected again after %d ms (target: all within 5 s)\n' \
    "$(connected)" "$SITES" $(( t1 - t0 )) | tee -a "$OUT/summary.txt"
held() { "$TS" status --node "$OUT/trial/hub" --json | jq '[.version_vector[] | select(.origin != "hub1") | .seq] | add // 0'; }
while [ "$(held)" -lt "$want" ]; do sleep 0.1; done
t2=$(date +%s%3N)
printf 'fan-in: %d sites catching up %d entries in all: %d entries/s applied at the hub, restart to done %d ms (target >= 50000/s with 200 sites)\n' \
    "$SITES" "$want" $(( want * 1000 / (t2 - t0) )) $(( t2 - t0 )) | tee -a "$OUT/summary.txt"
rss=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/${PIDS[hub]}/status")
printf 'hub peak RSS during the fan-in catch-up: %d MiB\n' "$rss" | tee -a "$OUT/summary.txt"
