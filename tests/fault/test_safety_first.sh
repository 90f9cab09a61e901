#!/usr/bin/env bash
# A site offline with a large bulk backlog and then one serious adverse
# event: on reconnect the SAE is applied at the hub before the bulk backlog
# completes, asserted by the hub's own receive order (entry times it stored).
. "$(dirname "$0")/../integration/lib.sh"

BACKLOG=${SAFETY_BACKLOG:-100000}
new_trial T-SAFETY
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"
stop_node hub

"$TS_BIN/tests/ts_load" "$S1" "$BACKLOG" 16 101-1 visit > "$WORK/load.out" \
    || fail "backlog: $(cat "$WORK/load.out")"
ok "site wrote a backlog of $BACKLOG bulk entries with the hub down ($(cat "$WORK/load.out"))"
"$TRIALSYNC" put --node "$S1" ae 101-0000001-AE-001 aeterm="Anaphylaxis" aestdtc=2026-11-21 \
    aesev=SEVERE aeser=Y aeslife=Y sae_aware_dtc="$(date -u +%Y-%m-%dT%H:%M:%SZ)" status=ongoing \
    > /dev/null || fail "put SAE"
ok "then one SAE, behind the whole backlog"

start_node hub "$HUB"
# The deadline (scaled by TS_TIME_SCALE) only bounds a hang, inside the CTest timeout.
wait_until 150 "hub holds the whole backlog" bash -c \
    "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq '[.version_vector[] | select(.origin == \"101\" and .lane == \"bulk\") | .seq][0] // 0')\" -ge $BACKLOG ]"
sae_at=$("$TRIALSYNC" history --node "$HUB" ae 101-0000001-AE-001 | jq -r '.versions[0].entry_time')
last_id=$(printf '101-1%07d/V1' $((BACKLOG - 1)))
first_id=$(printf '101-1%07d/V1' 0)
last_at=$("$TRIALSYNC" history --node "$HUB" visit "$last_id" | jq -r '.versions[0].entry_time')
first_at=$("$TRIALSYNC" history --node "$HUB" visit "$first_id" | jq -r '.versions[0].entry_time')
echo "hub stored: first bulk entry $first_at, SAE $sae_at, last bulk entry $last_at"
# Entry times are ISO 8601 UTC with milliseconds: they sort as strings.
[[ "$sae_at" < "$last_at" ]] || fail "the SAE ($sae_at) was not applied before the backlog ended ($last_at)"
ok "the hub applied the SAE before the bulk backlog completed"
[[ "$sae_at" < "$first_at" || "$sae_at" == "$first_at" ]] || echo "note: the SAE came after the first bulk batch"
sae_ms=$(date -u -d "$sae_at" +%s%3N)
last_ms=$(date -u -d "$last_at" +%s%3N)
ok "the SAE arrived $((last_ms - sae_ms)) ms before the last bulk entry"
done_checks
