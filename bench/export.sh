#!/usr/bin/env bash
# Export: a hub holding EXPORT_ENTRIES entries (default 1,000,000: half
# subjects, half visits, one entry each, written through the API by
# tests/tools/ts_load) is exported in every format while it runs (the export
# opens the store read-only beside it, docs/export.md).  Prints, per format,
# records (rows for audit, item versions' transactions for odm-audit) per
# second and the export process's peak RSS; last, odm --as-of a time between
# the subjects' and the visits' load (the point-in-time path).
#   EXPORT_ENTRIES  entries written before exporting, default 1000000
#   EXPORT_RUNS     runs of each export (the median rate is printed), default 1
#   EXPORT_FORMATS  the exports to measure (default all: odm odm-audit sdtm-csv
#                   dataset-json audit records-ndjson odm-as-of)
#   EXPORT_COMPARE  another trialsync binary (an older build) to run once per
#                   format on the same store: its output must be the same bytes
#   EXPORT_COMPARE_SKIP  file names left out of that comparison (files whose
#                   content changed on purpose between the builds: sv.csv sv.json)
# The exports' files are large (about 1 KiB per entry in odm-audit): each is
# removed after its runs.
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
# The time between the two loads: --as-of it rolls the trial back to the
# subjects alone (the point-in-time path: states rebuilt from the history).
sleep 1.1
MID=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1.1
"$LOAD" "$HUB" "$visits" 16 101- visit > "$OUT/load-visits.txt"

# run BIN LABEL ARGS...: runs `BIN export ARGS`; prints "records secs rate rss_mib".
run() {
    local bin=$1
    shift
    /usr/bin/python3 - "$bin" export "$@" <<'PY'
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
}

# measure LABEL OUTPUT ARGS...: EXPORT_RUNS runs of the export into OUTPUT
# (a file or directory); prints each run and the median rate.  With
# EXPORT_COMPARE naming another trialsync binary (an older build), that one
# runs too, and the two outputs must be the same bytes.
measure() {
    local label=$1 out=$2
    shift 2
    local i rates="" line records secs rate rss
    for i in $(seq 1 "$RUNS"); do
        rm -rf "$out"
        line=$(run "$TS" "$@" --out "$out")
        read -r records secs rate rss <<< "$line"
        rates="$rates $rate"
        printf 'export %-18s run %d: %9s records in %6s s: %8s records/s, peak RSS %6s MiB\n' \
            "$label" "$i" "$records" "$secs" "$rate" "$rss"
    done
    printf 'export %-18s median %s records/s\n' "$label" \
        "$(printf '%s\n' $rates | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')"
    if [ -n "$COMPARE" ]; then
        rm -rf "$out.cmp"
        line=$(run "$COMPARE" "$@" --out "$out.cmp")
        read -r records secs rate rss <<< "$line"
        printf 'export %-18s %s: %9s records in %6s s: %8s records/s, peak RSS %6s MiB\n' \
            "$label" "$(basename "$COMPARE")" "$records" "$secs" "$rate" "$rss"
        local skip=() f
        for f in $SKIP; do skip+=(-x "$f"); done
        diff -rq "${skip[@]}" "$out" "$out.cmp" > /dev/null \
            || { echo "export $label: output differs from $COMPARE's" >&2; exit 1; }
        echo "export $label: byte-identical to $(basename "$COMPARE")'s output"
        rm -rf "$out.cmp"
    fi
    rm -rf "$out"
}
RUNS=${EXPORT_RUNS:-1}
COMPARE=${EXPORT_COMPARE:-}
SKIP=${EXPORT_COMPARE_SKIP:-}
FORMATS=${EXPORT_FORMATS:-odm odm-audit sdtm-csv dataset-json audit records-ndjson odm-as-of}
wanted() { case " $FORMATS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
wanted odm && measure odm "$OUT/trial.xml" --node "$HUB" --format odm
wanted odm-audit && measure odm-audit "$OUT/trial-audit.xml" --node "$HUB" --format odm-audit
wanted sdtm-csv && measure sdtm-csv "$OUT/csv" --node "$HUB" --format sdtm-csv
wanted dataset-json && measure dataset-json "$OUT/dsj" --node "$HUB" --format dataset-json
wanted audit && measure audit "$OUT/audit.csv" --node "$HUB" --format audit
wanted records-ndjson && measure records-ndjson "$OUT/records.ndjson" --node "$HUB" \
    --format records-ndjson
# The point-in-time path; an older build has no roll-back to compare with.
COMPARE=
wanted odm-as-of && measure "odm --as-of" "$OUT/trial-as-of.xml" --node "$HUB" --format odm \
    --as-of "$MID"
node_stop hub
