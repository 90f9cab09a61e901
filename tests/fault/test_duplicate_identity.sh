#!/usr/bin/env bash
# One identity, one node (docs/workflows.md): two nodes started from copies of
# one site bundle.  The hub keeps the first live link, refuses the second
# with a reason naming the site, counts it (trialsync_duplicate_identity_total
# {site="101"}), raises an alarm (status, dashboard data, CLI); the refused
# node traces the reason at error priority, retries once after seconds (a
# half-open link of its own would be replaced by then), then every minutes; the
# first node keeps replicating and is never knocked off.
. "$(dirname "$0")/../integration/lib.sh"

need_cmd curl curl

new_trial T-DUPID
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
# The copy is taken before either runs: the same key, certificate and id,
# its own API port and data directory.
S1B="$WORK/site-101-copy"
cp -a "$S1" "$S1B"
sed -i "s/^listen = 127.0.0.1:[0-9]*\$/listen = 127.0.0.1:$(free_port)/" "$S1B/node.conf"
[ "$(grep '^listen' "$S1/node.conf")" != "$(grep '^listen' "$S1B/node.conf")" ] || fail "the copy kept the API port"

start_node s101 "$S1"
"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
wait_until 20 "101-0001 at the hub" "$TRIALSYNC" get --node "$HUB" subject 101-0001
connected() { "$TRIALSYNC" status --node "$HUB" --json | jq -e '.peers[] | select(.id == "101") | .connected'; }
wait_until 20 "site 101 connected" connected
S1_AT=$(log_lines "$WORK/s101.log")

metric() {  # the hub's sample of a metric line prefix, or 0
    curl -sf -H "Authorization: Bearer $(cat "$HUB/api.token")" "http://127.0.0.1:$HUB_API_PORT/metrics" |
        awk -v p="$1" 'index($0, p) == 1 { print $2; found = 1 } END { if (!found) print 0 }'
}
refused_once() { [ "$(metric 'trialsync_duplicate_identity_total{site="101"}')" -ge 1 ]; }

start_node s101b "$S1B"
wait_until 30 "the hub refuses the second node" refused_once
ok "the hub counts the second node: trialsync_duplicate_identity_total{site=\"101\"} = $(metric 'trialsync_duplicate_identity_total{site="101"}')"
assert_eq 1 "$(metric 'trialsync_duplicate_identity_alarm{site="101"}')" "the hub raises the alarm for site 101"
dup=$("$TRIALSYNC" status --node "$HUB" --json | jq -c '.duplicate_identity[] | select(.site == "101")')
assert_eq true "$(echo "$dup" | jq .alarm)" "the hub's status (the dashboard's data) carries the alarm"
assert_contains "$("$TRIALSYNC" status --node "$HUB")" "ALARM: two nodes run site 101's bundle" \
    "trialsync status at the hub names the site"
rc=0; check=$("$TRIALSYNC" status --node "$HUB" --check) || rc=$?
assert_eq 1 "$rc" "status --check at the hub fails on the alarm"
assert_contains "$check" "two nodes run site 101's bundle" "status --check names the site"
grep -q " error ALARM duplicate identity: a second node connects as site 101" "$WORK/hub.log" \
    || fail "the hub did not trace the alarm at error priority"
ok "the hub traces the alarm at error priority"
grep -q "hub1 refused this node: identity in use: site 101 is already connected from .*next attempt within 21 s" \
    <(grep " error " "$WORK/s101b.log") || fail "the second node did not trace the refusal at error priority"
ok "the second node traces the reason at error priority and retries once within 21 s"
# Refused again (the first link is live, not half-open): minutes between tries.
wait_until 40 "the second refusal" grep -q "identity in use: .*next attempt within 300 s" "$WORK/s101b.log"
ok "refused twice, the second node waits up to 300 s"

# The first node was never knocked off and still replicates.
"$TRIALSYNC" put --node "$S1" subject 101-0002 site=101 sex=M status=screening > /dev/null || fail put
wait_until 20 "the first node's new subject at the hub" "$TRIALSYNC" get --node "$HUB" subject 101-0002
ok "the first node still replicates"
if since_line "$WORK/s101.log" "$S1_AT" | grep -q "disconnected"; then
    fail "the first node was disconnected: $(since_line "$WORK/s101.log" "$S1_AT" | grep disconnected)"
fi
ok "the first node's link was never replaced"
refused=$(metric 'trialsync_duplicate_identity_total{site="101"}')
[ "$refused" -eq 2 ] || fail "the second node was refused $refused times: it does not back off"
ok "the second node does not knock on the door again and again ($refused refusals)"

# Once the first node stops, the second may take over (after its backoff):
# the hub no longer holds a live link, so it is not refused then.  The
# first node's restart is no duplicate either: its old link closed.
stop_node s101b
stop_node s101
start_node s101 "$S1"
wait_until 20 "site 101 back" connected
"$TRIALSYNC" put --node "$S1" subject 101-0003 site=101 sex=F status=screening > /dev/null || fail put
wait_until 20 "101-0003 at the hub" "$TRIALSYNC" get --node "$HUB" subject 101-0003
assert_eq "$refused" "$(metric 'trialsync_duplicate_identity_total{site="101"}')" \
    "a restarted node is not taken for a duplicate"

stop_node s101
stop_node hub
done_checks
