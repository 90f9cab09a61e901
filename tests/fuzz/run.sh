#!/usr/bin/env bash
# run.sh: runs one libFuzzer harness over its committed seed corpus.
#
#   run.sh HARNESS TARGET SECONDS SCRATCH
#
# New inputs libFuzzer finds go to SCRATCH/corpus, crashes to SCRATCH/
# (crash-*, leak-*, timeout-*); the committed corpus (tests/fuzz/corpus/TARGET)
# is read, never written.  SCRATCH/corpus starts empty unless TS_FUZZ_KEEP=1
# (make fuzz keeps it, so a longer campaign resumes where the last stopped).
# Exits non-zero when the harness found a crash, a leak, a timeout or a
# broken property, or when the corpus is missing; prints libFuzzer's final
# figures (executions, coverage) on success.
set -u
bin=$1 target=$2 seconds=$3 scratch=$4
src=${TS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
seeds="$src/tests/fuzz/corpus/$target"

[ -x "$bin" ] || { echo "FAIL: no harness at $bin"; exit 1; }
n=$(find "$seeds" -type f 2>/dev/null | wc -l)
[ "$n" -gt 0 ] || { echo "FAIL: no seed corpus in $seeds"; exit 1; }
[ "${TS_FUZZ_KEEP:-0}" = 1 ] || rm -rf "$scratch/corpus"
mkdir -p "$scratch/corpus"

dict=()
[ -f "$src/tests/fuzz/$target.dict" ] && dict=(-dict="$src/tests/fuzz/$target.dict")

echo "fuzz $target: ${seconds}s over $n seeds (new inputs: $scratch/corpus)"
# -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or an
# unbounded allocation shows before the machine feels it.
LSAN_OPTIONS="suppressions=$src/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}" -artifact_prefix="$scratch/" "$scratch/corpus" "$seeds" > "$scratch/log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
    tail -n 60 "$scratch/log"
    echo "FAIL: fuzz $target exited $rc; the input is in $scratch/ (rerun: $bin FILE)"
    exit 1
fi
# The last status line (coverage, features, corpus) and the final figures.
grep -E '^#[0-9]+' "$scratch/log" | tail -n 1
grep -E '^stat::' "$scratch/log"
echo "ok fuzz $target"
