#!/usr/bin/env bash
# Export: a hub holding EXPORT_ENTRIES entries (default 1,000,000: half
# subjects, half visits, one entry each, written through the API by
# tests/tools/ts_load) is exported in every format while it runs (the export
# opens the store read-only beside it, docs/export.md).  Prints, per format,
# records (rows for audit, item versions' transactions for odm-audit) per
# second and the export process's peak RSS.
#   EXPORT_ENTRIES  entries written before exporting, default 1000000
# Peak RSS is the child's ru_maxrss from getrusage, read by python3 (a DEPS
# package), so the bench needs no /usr/bin/time.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/$BUILD"
TS="$BIN/trialsync"
TSD="$BIN/trialsyncd"
LOAD="$BIN/tests/ts_load"
N=${EXPORT_ENTRIES:-1000000}
OUT="$ROOT/bench-out/export"
rm -rf "$OUT"
mkdir -p "$OUT"
LOGS="$OUT"
. "$ROOT/deploy/nodes.sh"

"$TS" init --trial T-BENCH --dir "$OUT/trial" --peer-port "$(free_port)" \
    --api-port "$(free_port)" > /dev/null
HUB="$OUT/trial/hub"
node_start hub "$HUB"
# The hub writes only for sites of the trial.
"$TS" site add 101 --dir "$OUT/trial" --out "$OUT/s101" --api-port "$(free_port)" > /dev/null
subjects=$((N / 2))
visits=$((N - subjects))
echo "export: writing $subjects subjects and $visits visits ($N entries) through the hub's API"
"$LOAD" "$HUB" "$subjects" 16 101- subject > "$OUT/load-subjects.txt"
"$LOAD" "$HUB" "$visits" 16 101- visit > "$OUT/load-visits.txt"

# measure LABEL ARGS...: runs `trialsync export ARGS`, prints the line.
measure() {
    local label=$1
    shift
    /usr/bin/python3 - "$TS" export "$@" <<'PY' > "$OUT/measure.txt"
import resource, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE, text=True)
secs = time.monotonic() - t0
if p.returncode != 0:
    sys.exit("export failed: " + p.stderr)
records = int(p.stderr.split("exported ")[1].split()[0])
rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(records, "%.1f" % secs, int(records / secs), "%.1f" % (rss_kib / 1024))
PY
    read -r records secs rate rss < "$OUT/measure.txt"
    printf 'export %-14s %9s records in %6s s: %8s records/s, peak RSS %6s MiB\n' \
        "$label" "$records" "$secs" "$rate" "$rss"
}
AS_OF=2026-06-01T00:00:00Z
measure odm --node "$HUB" --format odm --out "$OUT/trial.xml" --as-of "$AS_OF"
measure odm-audit --node "$HUB" --format odm-audit --out "$OUT/trial-audit.xml" --as-of "$AS_OF"
measure sdtm-csv --node "$HUB" --format sdtm-csv --out "$OUT/csv" --as-of "$AS_OF"
measure dataset-json --node "$HUB" --format dataset-json --out "$OUT/dsj" --as-of "$AS_OF"
measure audit --node "$HUB" --format audit --out "$OUT/audit.csv"
measure records-ndjson --node "$HUB" --format records-ndjson --out "$OUT/records.ndjson"
node_stop hub
# The files are large (about 1 KiB per entry in odm-audit): not kept.
rm -rf "$OUT/trial.xml" "$OUT/trial-audit.xml" "$OUT/csv" "$OUT/dsj" "$OUT/audit.csv" \
    "$OUT/records.ndjson"
