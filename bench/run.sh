#!/usr/bin/env bash
# make bench: trialsync's figures against TARGETS.md, measured with real
# nodes (durability on: every write counted only once its RocksDB batch is
# synced).  Prints one line per figure; docs/performance.md records them.
#   BENCH_RUNS     repetitions of each measurement (median and spread), default 3
#   BENCH_RECORDS  entries for the throughput runs, default 100000
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/$BUILD"
TS="$BIN/trialsync"
TSD="$BIN/trialsyncd"
LOAD="$BIN/tests/ts_load"
RUNS=${BENCH_RUNS:-3}
N=${BENCH_RECORDS:-100000}
OUT="$ROOT/bench-out"
rm -rf "$OUT"
mkdir -p "$OUT"
LOGS="$OUT"
. "$ROOT/deploy/nodes.sh"
start() { node_start "$@"; }
stop() { node_stop "$@"; }
rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -n | awk 'NR==1 {min=$1} {max=$1} END {printf "%s..%s", min, max}'; }
ms_of() { date -u -d "$1" +%s%3N; }
report() {  # NAME UNIT VALUES...
    local name=$1 unit=$2
    shift 2
    local med spr
    med=$(printf '%s\n' "$@" | median)
    spr=$(printf '%s\n' "$@" | spread)
    printf '%-58s median %10s %-10s (runs: %s; spread %s)\n' "$name" "$med" "$unit" "$#" "$spr" | tee -a "$OUT/summary.txt"
}

echo "trialsync benchmarks on $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $RUNS runs each"
new_trial() {  # DIR
    "$TS" init --trial BENCH --dir "$1" --peer-port "$(free_port)" --api-port "$(free_port)" > /dev/null
}

# 1. Local durable writes through the API.
seq_rates=() par_rates=() par_p99=() seq_p50=()
for r in $(seq 1 "$RUNS"); do
    d="$OUT/local-$r"
    new_trial "$d"
    start hub "$d/hub"
    line=$("$LOAD" "$d/hub" 5000 1 "101-1")
    seq_rates+=("$(echo "$line" | sed 's/.*rate=\([0-9]*\).*/\1/')")
    seq_p50+=("$(echo "$line" | sed 's/.*p50_ms=\([0-9.]*\).*/\1/')")
    line=$("$LOAD" "$d/hub" 50000 64 "101-2")
    par_rates+=("$(echo "$line" | sed 's/.*rate=\([0-9]*\).*/\1/')")
    par_p99+=("$(echo "$line" | sed 's/.*p99_ms=\([0-9.]*\).*/\1/')")
    stop hub
done
report "local writes, 1 client one at a time (target >= 5000)" "writes/s" "${seq_rates[@]}"
report "local writes, 1 client: latency p50" "ms" "${seq_p50[@]}"
report "local writes, 64 concurrent clients (target >= 30000)" "writes/s" "${par_rates[@]}"
report "local writes, 64 clients: latency p99" "ms" "${par_p99[@]}"

# 2. Catch-up: a site offline with N entries sends them to the hub over mutual
#    TLS; the hub applies them durably.  Timed from the link coming up (hub
#    trace) to the hub's stored time of the last entry.  Also: the site's peak
#    RSS holding N entries, and the time from reconnect to an SAE written
#    behind the backlog being applied at the hub.
catch=() site_rss=() sae_ms=() wire=()
for r in $(seq 1 "$RUNS"); do
    d="$OUT/catchup-$r"
    new_trial "$d"
    start hub "$d/hub"
    "$TS" site add 101 --dir "$d" --out "$d/s101" --api-port "$(free_port)" > /dev/null
    start s101 "$d/s101"
    stop hub
    "$LOAD" "$d/s101" "$N" 16 "101-1" visit > /dev/null
    "$TS" put --node "$d/s101" ae 101-0000001-AE-001 aeterm=Anaphylaxis aestdtc=2026-11-21 \
        aesev=SEVERE aeser=Y aeslife=Y sae_aware_dtc="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        status=ongoing > /dev/null
    site_rss+=("$(( $(rss_kib "${PIDS[s101]}") / 1024 ))")
    start hub "$d/hub"
    for _ in $(seq 1 1200); do
        held=$("$TS" status --node "$d/hub" --json | jq '[.version_vector[] | select(.origin == "101" and .lane == "bulk") | .seq][0] // 0')
        [ "$held" -ge "$N" ] && break
        sleep 0.1
    done
    up=$(grep 'peer 101 (site' "$OUT/hub.log" | tail -1 | cut -d' ' -f1)
    last=$("$TS" history --node "$d/hub" visit "$(printf '101-1%07d/V1' $((N - 1)))" | jq -r '.versions[0].entry_time')
    sae=$("$TS" history --node "$d/hub" ae 101-0000001-AE-001 | jq -r '.versions[0].entry_time')
    span=$(( $(ms_of "$last") - $(ms_of "$up") ))
    [ "$span" -gt 0 ] || span=1
    catch+=("$(( N * 1000 / span ))")
    sae_ms+=("$(( $(ms_of "$sae") - $(ms_of "$up") ))")
    st=$("$TS" status --node "$d/hub" --json)
    bytes=$(echo "$st" | jq '[.peers[] | select(.id == "101") | .bytes_received][0]')
    wire+=("$(( bytes / N ))")
    stop s101
    stop hub
done
report "catch-up $N entries site->hub over mTLS (target >= 100000)" "entries/s" "${catch[@]}"
report "reconnect to SAE applied at hub, behind $N backlog" "ms" "${sae_ms[@]}"
report "site node peak RSS holding $N entries (target <= 48)" "MiB" "${site_rss[@]}"
report "frame bytes received per entry (entries ~300 B encoded)" "bytes" "${wire[@]}"

# 3. Live latency: an acknowledged site write until it is applied durably at
#    the hub (the hub's stored time minus the site's write time).
d="$OUT/live"
new_trial "$d"
start hub "$d/hub"
"$TS" site add 101 --dir "$d" --out "$d/s101" --api-port "$(free_port)" > /dev/null
start s101 "$d/s101"
sleep 1
lat=()
for i in $(seq 1 300); do
    id=$(printf '101-9%06d' "$i")
    "$TS" put --node "$d/s101" subject "$id" site=101 sex=F > /dev/null
done
sleep 1
for i in $(seq 1 300); do
    id=$(printf '101-9%06d' "$i")
    h=$("$TS" history --node "$d/hub" subject "$id" | jq -r '.versions[0] | "\(.event_time) \(.entry_time)"')
    lat+=("$(( $(ms_of "${h#* }") - $(ms_of "${h% *}") ))")
done
p50=$(printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.5)]}')
p99=$(printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.99)]}')
printf '%-58s p50 %s ms, p99 %s ms (300 writes; ms resolution, includes the API round trip)\n' \
    "live: site write -> durable at hub (target p50<=1, p99<=5)" "$p50" "$p99" | tee -a "$OUT/summary.txt"
stop s101
stop hub
echo "summary in bench-out/summary.txt"
