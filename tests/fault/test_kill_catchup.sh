#!/usr/bin/env bash
# SIGKILL of the hub, then of the site, in the middle of a catch-up: after
# restarts nothing is lost, nothing is applied twice, and the hub's copy of
# the site's chain equals the site's own.
. "$(dirname "$0")/../integration/lib.sh"

BACKLOG=${BACKLOG:-30000}
LOAD="$TS_BIN/tests/ts_load"

new_trial T-CATCHUP
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"

hub_entries() { "$TRIALSYNC" status --node "$HUB" --json | jq '[.version_vector[] | select(.origin == "101") | .seq] | add // 0'; }
hub_has() { [ "$(hub_entries)" -ge "$1" ]; }
site_head() { "$TRIALSYNC" status --node "$S1" --json | jq '[.version_vector[] | select(.origin == "101") | .seq] | add // 0'; }

# kill_during_catchup VICTIM PREFIX: builds a backlog with the hub down, then
# kills VICTIM (hub or s101) as soon as the hub reports holding part of it.
# Driven by what the hub reports, not by time: if the catch-up was already
# over when the kill landed (a kill that tests nothing), the round is tried
# again with twice the backlog, and the suite fails after 3 such rounds.
kill_during_catchup() {
    local victim=$1 prefix=$2 backlog=$BACKLOG attempt before total held deadline mid=0
    for attempt in 1 2 3; do
        stop_node hub
        before=$(site_head)
        "$LOAD" "$S1" "$backlog" 8 "$prefix$attempt" > "$WORK/load.out" || fail "backlog writes: $(cat "$WORK/load.out")"
        total=$(site_head)
        [ "$total" -ge $((before + backlog)) ] || fail "site head $total after $backlog writes"
        start_node hub "$HUB"
        deadline=$((SECONDS + 120 * TS_TIME_SCALE))
        while :; do
            held=$(hub_entries)
            [ "$held" -gt "$before" ] && break
            [ "$SECONDS" -lt "$deadline" ] || fail "the hub received none of the backlog ($held, before $before)"
            sleep 0.01
        done
        if [ "$victim" = hub ]; then
            kill_node hub
        else
            kill_node s101
            held=$(hub_entries)  # the hub is up: what it held when the site died
        fi
        if [ "$held" -lt "$total" ]; then mid=1; break; fi
        echo "note: catch-up of $backlog entries was over before the kill (hub held $held of $total): again, twice as long"
        if [ "$victim" = hub ]; then start_node hub "$HUB"; else start_node s101 "$S1"; fi
        wait_until 120 "hub holds the site's whole chain ($total)" hub_has "$total"
        backlog=$((backlog * 2))
    done
    [ "$mid" = 1 ] || fail "$victim: every catch-up was over before the kill"
    ok "$victim killed mid catch-up (hub held $held of $total, backlog $backlog)"
    if [ "$victim" = hub ]; then start_node hub "$HUB"; else start_node s101 "$S1"; fi
    wait_until 120 "hub holds the site's whole chain ($total)" hub_has "$total"
    ok "after the restart the hub holds all $total entries of the site"
}

kill_during_catchup hub 101-1
kill_during_catchup s101 101-2

# Exactly once: the hub's entry count equals its chain heads' sum, and its
# records of the site equal the site's.
hub_json=$("$TRIALSYNC" status --node "$HUB" --json)
assert_eq "$(echo "$hub_json" | jq '[.version_vector[].seq] | add')" "$(echo "$hub_json" | jq .entries)" \
    "no entry applied twice at the hub"
assert_eq "$("$TRIALSYNC" records --node "$S1" subject | jq .count)" \
    "$("$TRIALSYNC" records --node "$HUB" subject | jq .count)" "hub and site hold the same subjects"
assert_eq "$(site_head)" "$(hub_entries)" "the hub's copy of the chain ends where the site's does"
stop_node s101
stop_node hub
"$TRIALSYNC" verify --node "$HUB" > /dev/null || fail "hub verifies after the kills"
"$TRIALSYNC" verify --node "$S1" > /dev/null || fail "site verifies after the kills"
ok "both stores verify"
done_checks
