#!/usr/bin/env bash
# kill -9 of a node right after acknowledged writes, many rounds: every write
# the API acknowledged is there after the restart, and the store verifies.
# Driven by counts, not time: each round writes until a seeded number of
# writes has been acknowledged, then kills the node while the writers are
# still writing, so a busy machine only makes a round slower.
#   CRASH_ROUNDS    kill -9 rounds (default 20)
#   CRASH_ACKS_MIN  acknowledged writes before a kill, at least (default 5)
#   CRASH_ACKS_MAX  and at most (default 25); the seed picks each round's number
. "$(dirname "$0")/../integration/lib.sh"

ROUNDS=${CRASH_ROUNDS:-20}
ACKS_MIN=${CRASH_ACKS_MIN:-5}
ACKS_MAX=${CRASH_ACKS_MAX:-25}
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

acked_this_round() { cat "$WORK"/acked.* 2>/dev/null | wc -l; }
at_least_acked() { [ "$(acked_this_round)" -ge "$1" ]; }

target_sum=0
for round in $(seq 1 "$ROUNDS"); do
    start_node hub "$HUB"
    [ "$round" != 1 ] || add_site 101   # the hub writes only for sites of the trial
    target=$((ACKS_MIN + RANDOM % (ACKS_MAX - ACKS_MIN + 1)))
    target_sum=$((target_sum + target))
    pids=()
    for w in $(seq 1 $WRITERS); do
        writer "$w" "$round" &
        pids+=($!)
    done
    # Kill once the round's number of writes is acknowledged (writers still going).
    wait_until 60 "round $round: $target writes acknowledged" at_least_acked "$target"
    kill_node hub
    for p in "${pids[@]}"; do wait "$p"; done
    cat "$WORK"/acked.* >> "$WORK/acked" 2>/dev/null || true
    echo "round $round: killed after $target acknowledged ($(acked_this_round) by the time the writers stopped)"
    rm -f "$WORK"/acked.*
done

start_node hub "$HUB"
"$TRIALSYNC" records --node "$HUB" subject | jq -r '.records[].id' | sort > "$WORK/held"
sort -u "$WORK/acked" > "$WORK/acked.sorted"
acked=$(wc -l < "$WORK/acked.sorted")
[ "$acked" -ge "$target_sum" ] || fail "only $acked writes acknowledged, the rounds waited for $target_sum"
ok "$acked writes acknowledged over $ROUNDS kill -9 rounds (each round killed after $ACKS_MIN-$ACKS_MAX)"
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
