#!/usr/bin/env bash
# The chaos run's finding (docs/testing.md "The chaos run"), as a regression
# test: a hub that restarted before it ever received a batch of the other hub
# holds no certificate of it, so it cannot tell what that origin is.  A site's
# chain whose entry supersedes a write of the other hub must then be held
# (rule 'pending', offered again), never refused for good on the link: once
# the other hub's chain arrives, the site's correction and its later writes
# are taken.  (Before the fix the chain was refused as superseding an
# "unknown" origin and never offered again, and the site's later writes
# reached no hub.)
. "$(dirname "$0")/../integration/lib.sh"

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
held() { grep -q "hub1 holds chain 101/bulk.*rule 'pending'" "$WORK/s101.log"; }
taken() { is "$HUB" U; }
wait_until 60 "hub1 holding the site's chain (rule 'pending')" held
refused && fail "hub1 refused the site's chain: $(grep "refused chain 101/bulk" "$WORK/s101.log" | tail -n 1)"
taken && fail "hub1 took a correction of a write it cannot place yet"
ok "hub1 holds the site's chain (pending the other hub's), refusing nothing"
# hub2 returns and links to hub1, which then holds hub2's chain (and key);
# the held chain is offered again and taken.
start_node hub2 "$HUB2"
wait_until 30 "hub1 holding hub2's write" bash -c "'$TRIALSYNC' status --node '$HUB' --json |
    jq -e '.version_vector[] | select(.origin == \"hub2\")'"
"$TRIALSYNC" put --node "$S1" subject 101-0002 site=101 sex=F status=screening > /dev/null || fail put
wait_until 60 "the site's correction at hub1 once hub2 is back" taken
wait_until 60 "the site's later subject at hub1" "$TRIALSYNC" get --node "$HUB" subject 101-0002
refused && fail "the site's chain was refused at some point"
ok "once hub2's chain is there, hub1 takes the site's correction and its later writes"
done_checks
