#!/usr/bin/env bash
# Clock skew, both directions, with libfaketime (the offset read from a file
# the test rewrites).  A site whose clock runs an hour ahead of the hub's:
# its entries are stamped past the hub's skew bound, so the hub holds them
# (never applies them early, never lets them pull its clock), the site raises
# a clock alarm from the hub's hello, and once its clock is set right the held
# entries arrive and the alarm clears.  A site behind: its entries are
# admitted (nothing from the future) and the alarm names the offset, 3 hours
# behind included (certificates start two days before issue); 3 days behind,
# beyond that margin, the site cannot connect and its trace says why.
. "$(dirname "$0")/../integration/lib.sh"
need_cmd curl curl

FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
[ -n "$FAKETIME_LIB" ] || fail "libfaketime.so.1 is not installed: it comes from Debian's 'libfaketime' package, which 'make deps' installs"

start_faked() {  # NAME NODEDIR CLOCKFILE
    start_node "$1" "$2" FAKETIME_TIMESTAMP_FILE="$3" FAKETIME_NO_CACHE=1 \
        FAKETIME_DONT_FAKE_MONOTONIC=1 \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
        LD_PRELOAD="$FAKETIME_LIB"
}
status() { "$TRIALSYNC" status --node "$1" --json; }
peer_stat() {  # NODEDIR PEER FILTER
    status "$1" | jq -r --arg p "$2" ".peers[] | select(.id == \$p) | $3"
}
hub_has() { "$TRIALSYNC" get --node "$HUB" subject "$1" > /dev/null 2>&1; }
metrics() {  # NODEDIR
    local port
    port=$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$1/node.conf" | head -1)
    curl -sf -H "Authorization: Bearer $(cat "$1/api.token")" "http://127.0.0.1:$port/metrics"
}
held_more() { [ "$(peer_stat "$HUB" 101 .batches_held)" -gt "$1" ]; }
alarm_is() { [ "$(status "$S1" | jq -r .clock.alarm)" = "$1" ]; }

new_trial T-CLOCK
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"

# 1. An hour ahead.
echo "+3600s" > "$WORK/site.clock"
start_faked s101 "$S1" "$WORK/site.clock"
wait_until 20 "site 101 connected to the hub" bash -c \
    "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq -r '.peers[] | select(.id == \"101\") | .connected')\" = true ]"
wait_until 20 "site 101's clock alarm" alarm_is true
ok "the site raises a clock alarm from the hub's hello"
offset=$(status "$S1" | jq -r .clock.offset_ms)
[ "$offset" -le -3000000 ] && [ "$offset" -ge -4200000 ] \
    || fail "the hub's clock minus the site's should be about -3600000 ms, got $offset"
ok "the offset it reports is the hub's clock minus its own: $offset ms"
grep -q "ALARM clock: this node's clock is [0-9]* s ahead of hub" "$WORK/s101.log" \
    || fail "no clock alarm in the site's trace"
ok "the alarm is in the site's trace: $(grep -m1 'ALARM clock' "$WORK/s101.log" | cut -c1-160)"
metrics "$S1" | grep -qx "trialsync_clock_alarm 1" || fail "trialsync_clock_alarm is not 1 at the site"
ok "trialsync_clock_alarm 1 in the site's metrics"

h0=$(peer_stat "$HUB" 101 .batches_held)
"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening --user crc \
    > /dev/null || fail "the site refused a local write while its clock is ahead"
ok "the site keeps recording while its clock is off"
wait_until 20 "the hub holding site 101's batch" held_more "$h0"
ok "the hub holds the entry stamped an hour ahead ($(peer_stat "$HUB" 101 .batches_held) held)"
grep -q "held, not yet: .*ahead of this node's clock" "$WORK/hub.log" \
    || fail "the hub's trace does not say why it holds the batch"
ok "the hub's trace says why: $(grep -m1 'held, not yet' "$WORK/hub.log" | cut -c1-160)"
# The hold is answered, so the site offers it again: a second hold proves the
# link goes on and nothing was applied meanwhile.
h1=$(peer_stat "$HUB" 101 .batches_held)
wait_until 20 "the site offering the held batch again" held_more "$h1"
hub_has 101-0001 && fail "the hub applied an entry stamped an hour ahead of its clock"
ok "offered again and held again: nothing applied early"
hub_hlc=$("$TRIALSYNC" put --node "$HUB" query Q-hub1-1 target=subject/101-0001/sex text="check" \
    state=open source=dm --user monitor > /dev/null && "$TRIALSYNC" history --node "$HUB" query Q-hub1-1 \
    | grep -o '"hlc": *"[0-9]*' | head -1 | grep -o '[0-9]*$')
now_ms=$(($(date +%s%3N)))
hub_ms=$((hub_hlc >> 16))
[ $((hub_ms - now_ms)) -lt 60000 ] || fail "the hub's clock was pulled ahead: its write is stamped $((hub_ms - now_ms)) ms past now"
ok "the hub's own writes stay on its clock ($((hub_ms - now_ms)) ms from now)"

# 2. The site's clock is set right: the held entries arrive, the alarm clears.
stop_node s101
echo "+0" > "$WORK/site.clock"
# The site's HLC keeps its last stamp (an hour ahead) so its clock never goes
# back: entries it already wrote stay stamped ahead until that hour passes.
# What the hub must do at once is take them as soon as they are within the
# bound; here the bound is raised at the hub to show that path end to end.
stop_node hub
sed -i 's/^\[peer\]$/[peer]\nclock_skew_max_s = 7200/' "$HUB/node.conf"
grep -q '^clock_skew_max_s = 7200' "$HUB/node.conf" || fail "could not set the hub's skew bound"
start_node hub "$HUB"
start_faked s101 "$S1" "$WORK/site.clock"
wait_until 30 "the held entry reaching the hub" hub_has 101-0001
ok "within the hub's bound, the held entry arrives"
wait_until 20 "site 101's clock alarm clearing" alarm_is false
ok "the alarm clears once the site's clock is within the bound"

# 3. Behind: nothing from the future, so the hub admits its entries at once;
# the site still raises the alarm (its audit times would be wrong): 200 s
# behind, against a site bound of 60 s.
stop_node s101
sed -i 's/^\[peer\]$/[peer]\nclock_skew_max_s = 60/' "$S1/node.conf"
grep -q '^clock_skew_max_s = 60' "$S1/node.conf" || fail "could not set the site's skew bound"
echo "-200s" > "$WORK/site.clock"
start_faked s101 "$S1" "$WORK/site.clock"
wait_until 20 "site 101's clock alarm (behind)" alarm_is true
grep -q "ALARM clock: this node's clock is [0-9]* s behind hub" "$WORK/s101.log" \
    || fail "no 'behind' clock alarm in the site's trace"
ok "200 s behind is an alarm too: $(grep 'ALARM clock' "$WORK/s101.log" | tail -1 | cut -c1-120)"
offset=$(status "$S1" | jq -r .clock.offset_ms)
[ "$offset" -ge 150000 ] || fail "the site 200 s behind should see the hub about +200000 ms ahead, got $offset"
ok "the site sees the hub's clock $offset ms ahead of its own"
"$TRIALSYNC" put --node "$S1" subject 101-0002 site=101 sex=M status=screening --user crc \
    > /dev/null || fail "put 101-0002"
wait_until 30 "the write of a site behind reaching the hub" hub_has 101-0002
ok "a site behind the hub is admitted at once"

# 4. Three hours behind: certificates start two days before issue (pki.c), so
# the site still shakes hands and its SAE reaches the hub at once.
stop_node s101
echo "-10800s" > "$WORK/site.clock"
start_faked s101 "$S1" "$WORK/site.clock"
"$TRIALSYNC" put --node "$S1" ae 101-0002-AE-001 aeterm="Anaphylaxis" aestdtc=2026-11-21 \
    aesev=SEVERE aeser=Y aeslife=Y sae_aware_dtc="$(date -u -d '4 hours ago' +%Y-%m-%dT%H:%M:%SZ)" status=ongoing \
    --user crc > /dev/null || fail "put the SAE at the site 3 h behind"
wait_until 30 "the SAE of a site 3 h behind reaching the hub" \
    "$TRIALSYNC" get --node "$HUB" ae 101-0002-AE-001
ok "a site 3 h behind connects and its SAE reaches the hub"
offset=$(status "$S1" | jq -r .clock.offset_ms)
[ "$offset" -ge 10000000 ] || fail "the site 3 h behind should see the hub about +10800000 ms ahead, got $offset"
ok "and its clock alarm names the offset ($offset ms)"
grep -q "not yet valid" "$WORK/s101.log" "$WORK/hub.log" \
    && fail "a certificate was 'not yet valid' for a site 3 h behind: $(grep -h -m1 'not yet valid' "$WORK/s101.log" "$WORK/hub.log")"
ok "no certificate was refused as not yet valid"

# 5. Three days behind, beyond the two-day margin: the hub's certificate has
# not started yet by the site's clock, the site says so in its trace, and
# nothing it writes reaches the hub.
stop_node s101
echo "-259200s" > "$WORK/site.clock"
from=$(log_lines "$WORK/s101.log")
start_faked s101 "$S1" "$WORK/site.clock"
"$TRIALSYNC" put --node "$S1" ae 101-0003-AE-001 aeterm="Anaphylaxis" aestdtc=2026-11-21 \
    aesev=SEVERE aeser=Y aeslife=Y sae_aware_dtc="$(date -u -d '4 days ago' +%Y-%m-%dT%H:%M:%SZ)" status=ongoing \
    --user crc > /dev/null || fail "put the SAE at the site 3 days behind"
not_yet() { since_line "$WORK/s101.log" "$from" | grep -q "certificate is not yet valid: this node's clock reads .*set the clock right"; }
wait_until 30 "the site 3 days behind tracing why it cannot connect" not_yet
ok "beyond the margin the site's trace says why: $(since_line "$WORK/s101.log" "$from" | grep -m1 'not yet valid' | cut -c1-200)"
"$TRIALSYNC" get --node "$HUB" ae 101-0003-AE-001 > /dev/null 2>&1 \
    && fail "the SAE of a site 3 days behind reached the hub: its certificate check let it through"
[ "$(peer_stat "$HUB" 101 .connected)" != true ] || fail "the hub shows the site 3 days behind as connected"
ok "nothing of the site 3 days behind reaches the hub"

stop_node s101
stop_node hub
done_checks
