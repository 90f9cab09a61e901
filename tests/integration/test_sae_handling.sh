#!/usr/bin/env bash
# SAE handling: a site that reports an SAE by phone or fax records the backup
# report, which stops its alarms (an SAE without one still alarms: the
# marker); at the hub an SAE whose backup report came within the deadline is
# "reported in time" although replication brought it late, and one without is
# late.  The CRO's safety reviewer (and no other role) marks a late SAE
# handled: the late tile, status and metric clear, the SAE's row keeps its
# lateness.  The site's clock is faked (libfaketime) to reach the 1-hour alarm,
# then stepped back an hour: the site must still reconnect at once when the
# hub returns (reconnects are scheduled on the monotonic clock, not the wall).
. "$(dirname "$0")/lib.sh"

need_cmd curl curl
need_cmd date coreutils
FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
[ -n "$FAKETIME_LIB" ] || fail "libfaketime.so.1 is not installed: it comes from Debian's 'libfaketime' package, which 'make deps' installs"

TRIAL="$WORK/trial"
new_trial T-SAEH
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
echo "+0" > "$WORK/site.clock"
start_node s101 "$S1" FAKETIME_TIMESTAMP_FILE="$WORK/site.clock" FAKETIME_NO_CACHE=1 \
    FAKETIME_DONT_FAKE_MONOTONIC=1 \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    LD_PRELOAD="$FAKETIME_LIB"
add_user crc101 crc --site 101
add_user safe safety
add_user dm1 dm
wait_until 20 "crc101's account at the site" "$TRIALSYNC" get --node "$S1" user crc101
api() {  # NODEDIR PATH
    local port
    port=$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$1/node.conf" | head -1)
    curl -sf -H "Authorization: Bearer $(cat "$1/api.token")" "http://127.0.0.1:$port$2"
}
sae() {  # NODEDIR ID FIELD: a field of the SAE's row in /v1/saes
    api "$1" /v1/saes | jq -r --arg id "$2" ".saes[] | select(.id == \$id) | .$3"
}

stop_node hub
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ago30=$(date -u -d '30 hours ago' +%Y-%m-%dT%H:%M:%SZ)
ago20=$(date -u -d '20 hours ago' +%Y-%m-%dT%H:%M:%SZ)
sae_put() {  # ID AWARE [FIELD=VALUE...]
    local id=$1 aware=$2
    shift 2
    as crc101 put --node "$S1" ae "$id" aeterm="Event $id" aestdtc=2026-11-20 aesev=SEVERE \
        aeser=Y aeshosp=Y sae_aware_dtc="$aware" status=ongoing "$@" > "$WORK/put.out" 2>&1 \
        || fail "put $id: $(cat "$WORK/put.out")"
}
as crc101 put --node "$S1" subject 101-0001 site=101 sex=F > /dev/null || fail "put subject"
sae_put 101-0001-AE-001 "$now"                        # no backup report: alarms
sae_put 101-0001-AE-002 "$now" sae_backup_dtc="$now" sae_backup_by="phone, CRO safety desk, J. Doe"
sae_put 101-0001-AE-003 "$ago30"                      # reaches the hub late
sae_put 101-0001-AE-004 "$ago30" sae_backup_dtc="$ago20" sae_backup_by="fax to +1 555 0100"
assert_eq "phone, CRO safety desk, J. Doe" "$(sae "$S1" 101-0001-AE-002 backup_by)" \
    "the site's SAE list shows the backup report"

# 61 minutes later on the site's clock: the first alarm, for AE-001 only.
echo "+3660s" > "$WORK/site.clock"
wait_until 20 "the alarm of 101-0001-AE-001 (the marker)" \
    grep -q "ALARM: SAE 101-0001-AE-001 not acknowledged" "$WORK/s101.log"
ok "an SAE with no backup report raises its alarm"
if grep -q "ALARM: SAE 101-0001-AE-002" "$WORK/s101.log"; then
    fail "the SAE reported by phone still raised an alarm"
fi
ok "the SAE reported by the backup channel raises none"
assert_eq 0 "$(sae "$S1" 101-0001-AE-002 alarms)" "its row counts no alarm"
echo "+0" > "$WORK/site.clock"

start_node hub "$HUB"
wait_until 30 "the four SAEs at the hub" sh -c \
    "[ \"\$(curl -sf -H 'Authorization: Bearer $(cat "$HUB/api.token")' http://127.0.0.1:$HUB_API_PORT/v1/saes | jq '.saes | length')\" = 4 ]"
assert_eq "true false" "$(sae "$HUB" 101-0001-AE-003 late) $(sae "$HUB" 101-0001-AE-003 backup_in_time)" \
    "an SAE replicated after its deadline with no backup report is late"
assert_eq "false true" "$(sae "$HUB" 101-0001-AE-004 late) $(sae "$HUB" 101-0001-AE-004 backup_in_time)" \
    "one whose backup report came in time is reported in time, not late"
assert_eq 1 "$(api "$HUB" /v1/status | jq .sae.late)" "the hub counts one late SAE"
assert_contains "$(api "$HUB" /metrics | grep '^trialsync_sae_late')" " 1" "the late metric is 1"

# Handling: the safety reviewer's alone.
if as dm1 put --node "$HUB" ae 101-0001-AE-003 sae_handled_dtc="$now" > "$WORK/dm.out" 2>&1; then
    fail "a data manager marked an SAE handled"
fi
assert_contains "$(cat "$WORK/dm.out")" "sae_handled_dtc" "only the safety role marks an SAE handled"
as safe put --node "$HUB" ae 101-0001-AE-003 sae_handled_dtc="$now" \
    sae_handled_note="reviewed; reported to the sponsor" > "$WORK/h.out" 2>&1 \
    || fail "safety marks handled: $(cat "$WORK/h.out")"
assert_eq 0 "$(api "$HUB" /v1/status | jq .sae.late)" "handled: the hub's late count clears"
assert_contains "$(api "$HUB" /metrics | grep '^trialsync_sae_late')" " 0" "handled: the late metric clears"
assert_eq "true true" "$(sae "$HUB" 101-0001-AE-003 late) $(sae "$HUB" 101-0001-AE-003 handled)" \
    "the SAE's own row keeps its lateness, and says it is handled"
assert_eq safe "$("$TRIALSYNC" history --node "$HUB" ae 101-0001-AE-003 --json | jq -r '[.versions[] | select(.field == "sae_handled_dtc")][0].user')" \
    "the audit trail names the safety reviewer"

done_checks
