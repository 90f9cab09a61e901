#!/usr/bin/env bash
# The 24-hour clock of serious adverse events, with a faked clock
# (libfaketime, the offset read from a file the test rewrites): a site raises
# its alarms after 1 h and 12 h without a hub acknowledgement; a hub flags an
# SAE that reaches it after its deadline as late, and one in time as not.
. "$(dirname "$0")/lib.sh"

need_cmd curl curl
FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
[ -n "$FAKETIME_LIB" ] || fail "libfaketime.so.1 is not installed: it comes from Debian's 'libfaketime' package, which 'make deps' installs"

# start_faked NAME NODEDIR CLOCKFILE: trialsyncd whose wall clock is real time
# plus the offset in CLOCKFILE (monotonic time, for the loop's timers, is real).
# Under AddressSanitizer the preloaded clock comes before ASan's runtime:
# intended here, so ASan is told not to refuse it.
start_faked() {
    start_node "$1" "$2" FAKETIME_TIMESTAMP_FILE="$3" FAKETIME_NO_CACHE=1 \
        FAKETIME_DONT_FAKE_MONOTONIC=1 \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
        LD_PRELOAD="$FAKETIME_LIB"
}
api() {  # NODEDIR PATH
    local port
    port=$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$1/node.conf" | head -1)
    curl -sf -H "Authorization: Bearer $(cat "$1/api.token")" "http://127.0.0.1:$port$2"
}

new_trial T-SAE
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
echo "+0" > "$WORK/site.clock"
start_faked s101 "$S1" "$WORK/site.clock"
stop_node hub

# An SAE recorded while no hub is reachable.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F > /dev/null || fail put
"$TRIALSYNC" put --node "$S1" ae 101-0001-AE-001 aeterm=Anaphylaxis aestdtc=2026-11-20 \
    aesev=SEVERE aeser=Y aeslife=Y sae_aware_dtc="$now" status=ongoing > /dev/null || fail "put SAE"
assert_eq 1 "$(api "$S1" /v1/status | jq .sae.in_flight)" "the site counts the SAE in flight"
assert_eq 0 "$(api "$S1" /v1/status | jq .sae.alarms)" "no alarm yet"

# 61 minutes later (site clock): the first alarm.
echo "+3660s" > "$WORK/site.clock"
wait_until 10 "first alarm" grep -q "ALARM: SAE 101-0001-AE-001 not acknowledged by any hub after 3600 s" "$WORK/s101.log"
ok "after 1 h the site raises the alarm in its trace"
assert_contains "$(grep 'ALARM' "$WORK/s101.log" | head -1)" "phone or fax" "the alarm names the backup channel"
assert_eq 1 "$(api "$S1" /v1/status | jq .sae.alarms)" "status counts the alarm"
assert_eq 1 "$(api "$S1" /v1/saes | jq '.saes[0].alarms')" "the SAE shows one alarm"
# 12 h and a minute: the second alarm; and at 19 h it is at risk (< 6 h left).
echo "+43260s" > "$WORK/site.clock"
wait_until 10 "second alarm" grep -q "still not acknowledged by any hub after 43200 s" "$WORK/s101.log"
ok "after 12 h the site raises the second alarm"
assert_eq 2 "$(api "$S1" /v1/status | jq .sae.alarms)" "status counts both alarms"
echo "+68400s" > "$WORK/site.clock"
wait_until 5 "at risk" bash -c "[ \"\$(curl -sf -H 'Authorization: Bearer $(cat "$S1/api.token")' http://127.0.0.1:$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$S1/node.conf" | head -1)/v1/saes | jq '.saes[0].at_risk')\" = true ]"
ok "with under 6 h to its deadline the SAE is at risk"
[ "$(grep -c 'ALARM' "$WORK/s101.log")" = 2 ] || fail "alarms repeated"
ok "each alarm is raised once"

# The hub comes back with its clock 25 h ahead: the SAE arrives late.
echo "+90000s" > "$WORK/hub.clock"
start_faked hub "$HUB" "$WORK/hub.clock"
wait_until 20 "SAE at the hub" bash -c "grep -q 'SAE 101-0001-AE-001 from site 101 received LATE' '$WORK/hub.log'"
ok "the hub stamps the SAE late, in its trace"
assert_eq true "$(api "$HUB" /v1/saes | jq '.saes[] | select(.id == "101-0001-AE-001") | .late')" "the hub's SAE list flags it late"
assert_eq 1 "$(api "$HUB" /v1/status | jq .sae.late)" "the hub's status counts it late"
deadline=$(api "$HUB" /v1/saes | jq -r '.saes[0].deadline')
assert_eq "$(date -u -d "$now + 24 hours" +%Y-%m-%dT%H:%M:%S).000Z" "$deadline" "deadline = awareness + 24 h"
wait_until 10 "site acknowledged" bash -c "[ \"\$(curl -sf -H 'Authorization: Bearer $(cat "$S1/api.token")' http://127.0.0.1:$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$S1/node.conf" | head -1)/v1/status | jq .sae.in_flight)\" = 0 ]"
ok "the hub's ack ends the SAE's flight at the site"
assert_eq true "$("$TRIALSYNC" saes --node "$HUB" | jq '.saes[] | select(.id == "101-0001-AE-001") | .late')" \
    "trialsync saes shows the late flag"
"$TRIALSYNC" status --node "$S1" | grep -q "SAEs: 0 in flight" || fail "site status line"
ok "the site's status table shows no SAE in flight"

# A later write to the acknowledged SAE: its clock starts from that write,
# so it raises no alarm at once even though its first write was 21 h ago.
# The hub is away meanwhile, so the update stays in flight (an ack would end
# its clock).  Positive marker: SAE 004, written 4000 s (site clock) before
# the moment checked, raises its first alarm, on a tick that came after the
# update (the clock only reached that moment after the update).
stop_node hub
echo "+71000s" > "$WORK/site.clock"
"$TRIALSYNC" put --node "$S1" ae 101-0001-AE-004 aeterm=Syncope aestdtc=2026-11-21 aesev=SEVERE \
    aeser=Y aeshosp=Y sae_aware_dtc="$(date -u +%Y-%m-%dT%H:%M:%SZ)" status=ongoing > /dev/null \
    || fail "put SAE 4 (the marker)"
echo "+73000s" > "$WORK/site.clock"
"$TRIALSYNC" put --node "$S1" ae 101-0001-AE-001 aeout=FATAL --user dr.jones > /dev/null \
    || fail "update of the SAE"
assert_eq 2 "$(api "$S1" /v1/status | jq .sae.in_flight)" "the update and SAE 004 are in flight"
echo "+75000s" > "$WORK/site.clock"
wait_until 10 "SAE 004's first alarm (the marker)" \
    grep -q "ALARM: SAE 101-0001-AE-004 not acknowledged by any hub after 3600 s" "$WORK/s101.log"
ok "marker: SAE 004 raised its alarm 4000 s after its write"
assert_eq 2 "$(grep -c 'ALARM: SAE 101-0001-AE-001 ' "$WORK/s101.log")" \
    "an update of an acknowledged SAE raises no false alarm (2000 s after it)"
assert_eq 0 "$(api "$S1" /v1/saes | jq '.saes[] | select(.id == "101-0001-AE-001") | .alarms')" \
    "the updated SAE shows no alarm"
start_faked hub "$HUB" "$WORK/hub.clock"
wait_until 10 "the update and SAE 004 acknowledged" bash -c "[ \"\$(curl -sf -H 'Authorization: Bearer $(cat "$S1/api.token")' http://127.0.0.1:$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$S1/node.conf" | head -1)/v1/status | jq .sae.in_flight)\" = 0 ]"
ok "the update is acknowledged by the hub once it is back"

# An SAE whose term is long and not ASCII is listed, its term cut at a
# character boundary.
term=$(printf 'ä%.0s' $(seq 1 70))
"$TRIALSYNC" put --node "$S1" ae 101-0001-AE-003 aeterm="$term" aestdtc=2026-11-21 aesev=SEVERE \
    aeser=Y aeshosp=Y sae_aware_dtc="$(date -u +%Y-%m-%dT%H:%M:%SZ)" status=ongoing > /dev/null \
    || fail "put SAE 3"
assert_eq 1 "$(api "$S1" /v1/saes | jq '[.saes[] | select(.id == "101-0001-AE-003")] | length')" \
    "an SAE with a long non-ASCII term is listed"
assert_contains "$(api "$S1" /v1/saes | jq -r '.saes[] | select(.id == "101-0001-AE-003") | .aeterm')" "ää" \
    "its term is kept (cut at a character boundary)"

# An SAE that arrives in time is not late.
echo "+0" > "$WORK/hub.clock"
echo "+0" > "$WORK/site.clock"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$TRIALSYNC" put --node "$S1" ae 101-0001-AE-002 aeterm=Seizure aestdtc=2026-11-21 aesev=SEVERE \
    aeser=Y aeshosp=Y sae_aware_dtc="$now" status=ongoing > /dev/null || fail "put SAE 2"
wait_until 10 "SAE 2 at the hub" bash -c "grep -q 'SAE 101-0001-AE-002 from site 101 received;' '$WORK/hub.log'"
assert_eq false "$(api "$HUB" /v1/saes | jq '.saes[] | select(.id == "101-0001-AE-002") | .late')" "an SAE in time is not late"
assert_eq 0 "$(api "$S1" /v1/saes | jq '[.saes[] | select(.id == "101-0001-AE-002") | .alarms] | add')" "and raises no alarm"
done_checks
