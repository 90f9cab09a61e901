#!/usr/bin/env bash
# Two hubs: they replicate to each other; a site fails over between them;
# writes through either hub and the site end with identical hub digests.
. "$(dirname "$0")/lib.sh"

new_trial T-HUBS
start_node hub1 "$HUB"
HUB2="$WORK/hub2"
"$TRIALSYNC" hub add hub2 --dir "$WORK/trial" --out "$HUB2" --peer-port "$(free_port)" \
    --api-port "$(free_port)" > "$WORK/hub-add.out" || fail "hub add"
assert_contains "$(cat "$WORK/hub-add.out")" "hub hub2 added" "hub add issues a second hub"
grep -q "^hub = 127.0.0.1:$HUB_PEER_PORT" "$HUB2/node.conf" || fail "hub2 does not list hub1"
ok "the new hub connects to the existing one"
start_node hub2 "$HUB2"
add_site 101
S1="$WORK/site-101"
[ "$(grep -c '^hub = ' "$S1/node.conf")" = 2 ] || fail "site 101 should list both hubs"
ok "a site added later lists both hubs"
start_node s101 "$S1"

hubs_agree() {
    local d1 d2
    d1=$(digest "$HUB") && d2=$(digest "$HUB2") && [ "$d1" = "$d2" ] || return 1
    # Equal digests over equal, non-trivial content.
    [ "$("$TRIALSYNC" status --node "$HUB" --json | jq .entries)" = \
      "$("$TRIALSYNC" status --node "$HUB2" --json | jq .entries)" ]
}

"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
"$TRIALSYNC" put --node "$HUB" query Q-hub1-1 target=subject/101-0001/sex text="Confirm sex" \
    state=open source=dm > /dev/null || fail "write through hub1"
"$TRIALSYNC" put --node "$HUB2" query Q-hub2-1 target=subject/101-0001/brthdtc text="Birth date?" \
    state=open source=monitor > /dev/null || fail "write through hub2"
wait_until 20 "both hubs agree" hubs_agree
ok "writes through hub1, hub2 and the site: identical hub digests"
wait_until 10 "hub2's query at the site" "$TRIALSYNC" get --node "$S1" query Q-hub2-1
ok "a write through hub2 reached the site (connected to hub1) via hub1"

# Failover: hub1 goes away, the site moves to hub2 and keeps replicating.
stop_node hub1
for i in $(seq 2 40); do
    "$TRIALSYNC" put --node "$S1" subject "$(printf '101-%04d' "$i")" site=101 sex=U \
        status=screening > /dev/null || fail "site write $i with hub1 down"
done
wait_until 30 "hub2 holds the site's writes" bash -c \
    "[ \$('$TRIALSYNC' records --node '$HUB2' subject | jq .count) -eq 40 ]"
ok "the site failed over to hub2"
wait_until 10 "site connected to hub2" bash -c \
    "'$TRIALSYNC' status --node '$S1' --json | jq -e '.peers[] | select(.id == \"hub2\" and .connected)'"
ok "site status shows hub2 connected"
"$TRIALSYNC" put --node "$HUB2" subject 101-0002 sex=M --reason "monitor correction" > /dev/null \
    || fail "write through hub2 during failover"

# hub1 returns and catches up from hub2.
start_node hub1 "$HUB"
wait_until 30 "both hubs agree after hub1 returns" hubs_agree
ok "hub1 caught up from hub2: identical digests"
assert_eq 40 "$("$TRIALSYNC" records --node "$HUB" subject | jq .count)" "hub1 holds every subject"
assert_eq M "$("$TRIALSYNC" get --node "$HUB" subject 101-0002 | jq -r .fields.sex.value)" \
    "hub1 holds the correction made through hub2"
# Hubs that list each other settle on one link (the one the lower id
# started) instead of replacing each other's for ever.
HUB1_PEER=$HUB_PEER_PORT
HUB2_PEER=$(sed -n 's/^listen = 0.0.0.0:\([0-9]*\)$/\1/p' "$HUB2/node.conf" | head -1)
stop_node hub1
sed -i "s/^\[peer\]$/[peer]\nhub = 127.0.0.1:$HUB2_PEER/" "$HUB/node.conf"
grep -q "^hub = 127.0.0.1:$HUB2_PEER" "$HUB/node.conf" || fail "hub1 does not list hub2"
L1=$(log_lines "$WORK/hub1.log")
L2=$(log_lines "$WORK/hub2.log")
new1() { since_line "$WORK/hub1.log" "$L1"; }
new2() { since_line "$WORK/hub2.log" "$L2"; }
start_node hub1 "$HUB"
# The positive marker: hub2's own dial to the returned hub1 has been decided,
# either refused by hub1 (hub1's link is kept) or, when hub2's came first,
# replaced by hub1's.  Without the tie-break this very dial replaces a link.
hub2_dial_decided() {
    new1 | grep -q "peer hub2 (127.0.0.1:[0-9]*): refused: a link with hub hub2 exists" ||
        new2 | grep -q "peer hub1: new connection replaces the old one"
}
wait_until 30 "hub2's own link to the returned hub1 decided" hub2_dial_decided
ok "marker: hub2's own dial to hub1 reached hub1 and was decided"
"$TRIALSYNC" put --node "$HUB2" query Q-hub2-9 target=subject/101-0001/sex text="After the mutual link" \
    state=open source=dm > /dev/null || fail "write through hub2"
wait_until 10 "the write reaches hub1 over the kept link" "$TRIALSYNC" get --node "$HUB" query Q-hub2-9
"$TRIALSYNC" put --node "$HUB" query Q-hub1-9 target=subject/101-0001/brthdtc text="Both ways" \
    state=open source=dm > /dev/null || fail "write through hub1"
wait_until 10 "the write reaches hub2 over the kept link" "$TRIALSYNC" get --node "$HUB2" query Q-hub1-9
ok "replication goes on both ways over the kept link"
# A second marker that spans more than the longest reconnect backoff (3 s):
# a keepalive (sent after 5 s without other frames) from hub2 reaches hub1
# once both are idle.  A link being replaced would have been redialled by then.
wait_until 20 "hubs idle" bash -c "'$TRIALSYNC' status --node '$HUB' --json | jq -e '[.peers[] | select(.id == \"hub2\") | .behind_send_bulk + .behind_send_safety + .behind_recv_bulk + .behind_recv_safety][0] == 0'"
bytes_from_hub2() { "$TRIALSYNC" status --node "$HUB" --json | jq '[.peers[] | select(.id == "hub2") | .bytes_received][0]'; }
b0=$(bytes_from_hub2)
wait_until 20 "a keepalive from hub2 at hub1" bash -c "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq '[.peers[] | select(.id == \"hub2\") | .bytes_received][0]')\" -gt $b0 ]"
ok "marker: a keepalive crossed the kept link after both hubs went idle"
# Nothing flapped: since hub1 returned each hub replaced the other's link at
# most once (when hub2's own dial came first), each traced one connection to
# the other, and the link kept is the one hub1 (the lower id) started.
r1=$(new1 | grep -c "peer hub2: new connection replaces the old one" || true)
r2=$(new2 | grep -c "peer hub1: new connection replaces the old one" || true)
[ "$r1" -le 1 ] && [ "$r2" -le 1 ] || fail "hub links replaced after hub1 returned: $r1 at hub1, $r2 at hub2:
$(new1 | grep 'hub2' | tail -n 5)"
ok "hubs listing each other keep one link ($r1 and $r2 replacements since hub1 returned)"
c1=$(new1 | grep "peer hub2 (hub, " | grep -c ": connected" || true)
c2=$(new2 | grep "peer hub1 (hub, " | grep -c ": connected" || true)
[ "$c1" -le 2 ] && [ "$c2" -le 2 ] || fail "hub links reconnected again and again: $c1 at hub1, $c2 at hub2"
ok "no reconnect loop ($c1 and $c2 connections traced since hub1 returned)"
kept=$(new2 | grep "peer hub1 (hub, " | grep ": connected" | tail -n 1)
case "$kept" in
    *"127.0.0.1:$HUB1_PEER)"*) fail "hub2 kept its own link to hub1, not the one hub1 started: $kept" ;;
    "") fail "hub2 traced no connection from hub1" ;;
esac
ok "the link kept is the one hub1 started: $(echo "$kept" | cut -c1-120)"
if new1 | grep -q "peer hub2: disconnected"; then
    fail "hub1's link to hub2 dropped: $(new1 | grep 'peer hub2: disconnected' | head -n 1)"
fi
assert_eq true "$("$TRIALSYNC" status --node "$HUB" --json | jq '[.peers[] | select(.id == "hub2") | .connected][0]')" \
    "hub1's link to hub2 is up and never dropped since hub1 returned"
wait_until 20 "both hubs agree" hubs_agree
ok "identical digests with the mutual configuration"
stop_node s101
stop_node hub2
stop_node hub1
"$TRIALSYNC" verify --node "$HUB" > /dev/null || fail "hub1 verifies"
"$TRIALSYNC" verify --node "$HUB2" > /dev/null || fail "hub2 verifies"
ok "both hub stores verify (relayed signatures included)"
done_checks
