#!/usr/bin/env bash
# The chaos run's finding, reduced (docs/testing.md "The chaos run"): a hub
# that restarted refuses a site's chain whose entry supersedes a write of the
# other hub, calling that hub's role "unknown", and never offers the chain
# again on that link, so the site's later writes reach no hub.
#
#   TS_BIN=build TS_SRC=. bash tests/fault/chaos/repro_unknown_hub.sh
#
# Exits 1 while the bug is there (naming what it saw), 0 once hub1 takes the
# site's correction.  Not a CTest suite: the chaos run (fault_test_chaos)
# is the test; this is the shortest path to the failure for whoever fixes it.
. "$(dirname "$0")/../../integration/lib.sh"

new_trial T-REPRO
start_node hub1 "$HUB"
HUB2="$WORK/hub2"
"$TRIALSYNC" hub add hub2 --dir "$WORK/trial" --out "$HUB2" --peer-port "$(free_port)" \
    --api-port "$(free_port)" > "$WORK/hub-add.out" || fail "hub add"
start_node hub2 "$HUB2"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"

sex_at() { "$TRIALSYNC" get --node "$1" subject 101-0001 --json | jq -r .fields.sex.value; }
is() { [ "$(sex_at "$1")" = "$2" ]; }

"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
wait_until 20 "the subject at hub1" is "$HUB" F
wait_until 20 "the subject at hub2" is "$HUB2" F
# hub1 goes away before hub2 has written anything: it has never verified a
# batch hub2 signed.  hub2 corrects the site's record; the site takes the
# correction from hub2 and corrects the field again, superseding hub2's write.
stop_node hub1
"$TRIALSYNC" put --node "$HUB2" subject 101-0001 sex=M --reason "monitor correction" > /dev/null \
    || fail "correction through hub2"
wait_until 20 "hub2's correction at the site" is "$S1" M
"$TRIALSYNC" put --node "$S1" subject 101-0001 sex=U --reason "site correction" > /dev/null \
    || fail "correction at the site"
wait_until 20 "the site's correction at hub2" is "$HUB2" U
ok "hub2 and the site hold the site's correction of hub2's write"
# hub2 goes away, hub1 returns: the site reaches hub1 only.
stop_node hub2
start_node hub1 "$HUB"
refused() { grep -q "refused chain 101/bulk" "$WORK/s101.log"; }
taken() { is "$HUB" U; }
wait_until 30 "hub1 taking or refusing the site's chain" bash -c \
    "grep -q 'refused chain 101/bulk' '$WORK/s101.log' || [ \"\$('$TRIALSYNC' get --node '$HUB' subject 101-0001 --json | jq -r .fields.sex.value)\" = U ]"
if refused; then
    echo "FINDING 1: $(grep "refused chain 101/bulk" "$WORK/s101.log" | tail -n 1 | cut -d' ' -f4-)"
fi
# hub2 returns and links to hub1, which then holds hub2's chain (and key);
# the site's chain is not offered again on the live link.
start_node hub2 "$HUB2"
wait_until 30 "hub1 holding hub2's write" bash -c "'$TRIALSYNC' status --node '$HUB' --json |
    jq -e '.version_vector[] | select(.origin == \"hub2\")'"
"$TRIALSYNC" put --node "$S1" subject 101-0002 site=101 sex=F status=screening > /dev/null || fail put
wait_until 20 "the site's correction at hub1 once hub2 is back" taken
ok "hub1 holds the site's correction"
done_checks
