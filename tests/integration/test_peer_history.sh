#!/usr/bin/env bash
# A hub keeps what it knew of each site across its own restart: the site's
# last seen time, its last disconnect and reason, and its recent connects and
# disconnects (the dashboard's per-site page).  A site that is not back yet
# shows when it was last seen, not "never".
. "$(dirname "$0")/lib.sh"
need_cmd curl curl

api() { node_api "$@"; }

new_trial T-SEEN
start_node hub "$HUB"
add_site 101
add_site 102
S1="$WORK/site-101"

row() {  # SITE: the hub's status row of SITE
    "$TRIALSYNC" status --node "$HUB" --json | jq -c --arg s "$1" '.peers[] | select(.id == $s)'
}
connected() { [ "$(row "$1" | json .connected)" = "$2" ]; }

start_node s101 "$S1"
wait_until 20 "site 101 connects" connected 101 true
stop_node s101
wait_until 20 "the hub sees site 101 gone" connected 101 false
before=$(row 101)
seen=$(echo "$before" | json .last_seen)
reason=$(echo "$before" | json .last_disconnect_reason)
[ "$seen" != null ] || fail "no last seen time for site 101 while the hub runs: $before"
[ "$reason" != null ] && [ -n "$reason" ] || fail "no disconnect reason for site 101: $before"
ok "the hub shows site 101 last seen $seen, gone: $reason"

stop_node hub
start_node hub "$HUB"
after=$(row 101)
assert_eq "false" "$(echo "$after" | json .connected)" "site 101 is not back after the hub's restart"
assert_eq "$seen" "$(echo "$after" | json .last_seen)" "the restarted hub shows site 101's kept last seen time"
assert_eq "$reason" "$(echo "$after" | json .last_disconnect_reason)" "and its last disconnect reason"
age=$(echo "$after" | json .last_seen_age_s)
[ "$age" != null ] && [ "$age" -ge 0 ] || fail "no age for the kept last seen time: $after"
ok "site 101 shows as seen $age s ago, not never"
assert_eq "null" "$(row 102 | json .last_seen)" "site 102, never connected, still shows never"

# The per-site page's part (GET /v1/sites/ID): the kept connects and
# disconnects with their reasons, oldest first; a member that never
# connected has none; an unknown id is not found.
api "$HUB" /v1/sites/101 > "$WORK/site101.json"
assert_eq "connected disconnected" "$(jq -r '[.events[].event] | join(" ")' "$WORK/site101.json")" \
    "site 101's page lists its connect and its disconnect, kept across the restart"
assert_eq "$reason" "$(jq -r '.events[-1].reason' "$WORK/site101.json")" "with the disconnect's reason"
assert_eq "Site 101" "$(jq -r '.peer.name' "$WORK/site101.json")" "and the site's name"
assert_eq "0" "$(api "$HUB" /v1/sites/102 | jq '.events | length')" "site 102's page has no events"
assert_contains "$(api "$HUB" /v1/sites/999)" "no site or peer" "an unknown site's page is not found"

# A hub killed (no orderly stop) keeps what it wrote at the connect and
# since (every PEER_SEEN_SAVE_MS): the site's last seen time is not lost,
# it is at least the time of the connect.
reconnected=$(now_ms)
start_node s101 "$S1"
wait_until 20 "site 101 connects again" connected 101 true
kill_node hub
stop_node s101
start_node hub "$HUB"
kept=$(row 101 | json .last_seen_ms)
[ "$kept" != null ] && [ "$kept" -ge "$reconnected" ] ||
    fail "after a SIGKILL the hub lost site 101's last seen time ($kept, connected at $reconnected)"
ok "after a SIGKILL the hub keeps site 101's last seen time"
stop_node hub
done_checks
