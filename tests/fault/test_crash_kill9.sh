#!/usr/bin/env bash
# kill -9 of a node right after acknowledged writes, many rounds: every write
# the API acknowledged is there after the restart, and the store verifies.
. "$(dirname "$0")/../integration/lib.sh"

ROUNDS=${CRASH_ROUNDS:-20}
WRITERS=4
SEED=${TS_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed: $SEED (replay with TS_SEED=$SEED)"
RANDOM=$SEED

new_trial T-CRASH
: > "$WORK/acked"

# writer W ROUND: writes subjects until the node goes away; records each id
# only after the API acknowledged it (the CLI exited 0).
writer() {
    local w=$1 round=$2 n=0 id
    while :; do
        id=$(printf '101-%02d%d%04d' "$round" "$w" "$n")
        if "$TRIALSYNC" put --node "$HUB" subject "$id" site=101 sex=U status=screening \
            > /dev/null 2>&1; then
            echo "$id" >> "$WORK/acked.$w"
        else
            return 0
        fi
        n=$((n + 1))
    done
}

for round in $(seq 1 "$ROUNDS"); do
    start_node hub "$HUB"
    pids=()
    for w in $(seq 1 $WRITERS); do
        writer "$w" "$round" &
        pids+=($!)
    done
    # Kill at a random moment 100-900 ms into the writes.
    sleep "0.$((1 + RANDOM % 9))"
    kill_node hub
    for p in "${pids[@]}"; do wait "$p"; done
    cat "$WORK"/acked.* >> "$WORK/acked" 2>/dev/null || true
    rm -f "$WORK"/acked.*
done

start_node hub "$HUB"
"$TRIALSYNC" records --node "$HUB" subject | jq -r '.records[].id' | sort > "$WORK/held"
sort -u "$WORK/acked" > "$WORK/acked.sorted"
acked=$(wc -l < "$WORK/acked.sorted")
[ "$acked" -gt $((ROUNDS * 5)) ] || fail "too few writes acknowledged ($acked) to test anything"
ok "$acked writes acknowledged over $ROUNDS kill -9 rounds"
missing=$(comm -23 "$WORK/acked.sorted" "$WORK/held" | wc -l)
assert_eq 0 "$missing" "no acknowledged write lost"
held=$(wc -l < "$WORK/held")
[ "$held" -ge "$acked" ] || fail "held $held < acked $acked"
ok "the node holds every acknowledged record ($held held, some written but not yet acknowledged)"
stop_node hub
"$TRIALSYNC" verify --node "$HUB" > "$WORK/verify.out" 2>&1 \
    || fail "store verification failed: $(cat "$WORK/verify.out")"
ok "hash chains and signatures verify after the crashes"
done_checks
