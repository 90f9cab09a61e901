#!/usr/bin/env bash
# Enrollment slots under a trial-wide cap, without coordination: the data
# manager sets a cap of 10 and gives sites 101 and 102 five slots each; site
# 101, offline, enrolls five and its sixth is refused ("site 101 has used 5 of
# 5 slots"), the subject staying in screening; the hub moves two slots from
# 102 to 101 (asked back first, granted only once 102's node has released
# them); 101 enrolls two more; a grant beyond the cap is refused; after
# healing every node shows the same counts in status and /metrics.
. "$(dirname "$0")/lib.sh"
need_cmd jq jq
need_cmd curl curl

hub_and_two_sites T-ENROLL
add_user dm1 dm
add_user crc101 crc --site 101
add_user crc102 crc --site 102
wait_until 20 "crc101's account at site 101" "$TRIALSYNC" get --node "$S1" user crc101
wait_until 20 "crc102's account at site 102" "$TRIALSYNC" get --node "$S2" user crc102

# en NODEDIR JQ: a value of the node's enrollment status.
en() { "$TRIALSYNC" status --node "$1" --json | jq -r ".enrollment | $2"; }
site_en() { en "$1" ".sites[] | select(.site == \"$2\") | .$3"; }

# A subject in screening is taken before any cap.
as crc101 put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null \
    || fail "put a screening subject"

# Only a data manager sets slots, and never as data.
if as crc101 enrollment cap --node "$S1" --cap 10 > "$WORK/crc-cap.out" 2>&1; then
    fail "a crc set the cap"
fi
if "$TRIALSYNC" put --node "$HUB" quota 101-QUOTA granted=50 --user dm1 > "$WORK/put.out" 2>&1; then
    fail "slots were written as data"
fi
assert_contains "$(cat "$WORK/put.out")" "trialsync enrollment" "nobody writes slots as data"
if as dm1 enrollment grant --node "$HUB" --site 101 --slots 5 > "$WORK/early.out" 2>&1; then
    fail "slots granted before a cap"
fi
assert_contains "$(cat "$WORK/early.out")" "cap first" "slots need a cap"

as dm1 enrollment cap --node "$HUB" --cap 10 > "$WORK/cap.out" || fail "cap: $(cat "$WORK/cap.out")"
as dm1 enrollment grant --node "$HUB" --site 101 --slots 5 > "$WORK/g1.out" \
    || fail "grant 101: $(cat "$WORK/g1.out")"
"$TRIALSYNC" enrollment grant --node "$HUB" --site 102 --slots 5 --user dm1 > "$WORK/g2.out" \
    || fail "grant 102 (integration credential): $(cat "$WORK/g2.out")"
if as dm1 enrollment grant --node "$HUB" --site 101 --slots 6 > "$WORK/over.out" 2>&1; then
    fail "a grant beyond the cap was accepted"
fi
assert_contains "$(cat "$WORK/over.out")" "cap of 10" "a grant beyond the cap is refused"
assert_eq 10 "$(en "$HUB" .cap)" "the hub shows the cap"
wait_until 20 "site 101 acknowledging 5 slots" sh -c "[ \"\$('$TRIALSYNC' status --node '$S1' --json | jq '.enrollment.sites[0].slots')\" = 5 ]"
wait_until 20 "site 102 acknowledging 5 slots" sh -c "[ \"\$('$TRIALSYNC' status --node '$S2' --json | jq '.enrollment.sites[0].slots')\" = 5 ]"

# Site 101 offline: five enrollments within its slots, the sixth refused.
stop_node hub
for i in 1 2 3 4 5; do
    as crc101 put --node "$S1" subject "101-000$i" site=101 sex=F status=enrolled \
        > "$WORK/e$i.out" 2>&1 || fail "offline enrollment $i: $(cat "$WORK/e$i.out")"
done
as crc101 put --node "$S1" subject 101-0006 site=101 sex=M status=screening > /dev/null \
    || fail "put the sixth subject in screening"
if as crc101 put --node "$S1" subject 101-0006 status=enrolled > "$WORK/e6.out" 2>&1; then
    fail "the sixth enrollment was accepted"
fi
assert_contains "$(cat "$WORK/e6.out")" "site 101 has used 5 of 5 slots" "the sixth is refused, in words"
assert_eq '"screening"' "$("$TRIALSYNC" get --node "$S1" subject 101-0006 | jq '.fields.status.value')" \
    "the refused subject stays in screening"
assert_eq 5 "$(site_en "$S1" 101 enrolled)" "site 101 counts 5 enrolled"
# Site 102 enrolls one while the hub is away too.
as crc102 put --node "$S2" subject 102-0001 site=102 sex=M status=randomized armcd=A > /dev/null \
    || fail "site 102 enrolls"

start_node hub "$HUB"
wait_until 30 "101's enrollments at the hub" sh -c "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq '.enrollment.enrolled')\" = 6 ]"

# Moving two slots from 102 to 101: granting 101 first does not fit the cap.
if as dm1 enrollment grant --node "$HUB" --site 101 --slots 7 > "$WORK/move0.out" 2>&1; then
    fail "slots granted before the other site released them"
fi
as dm1 enrollment grant --node "$HUB" --site 102 --slots 3 > "$WORK/rel.out" \
    || fail "ask 102 to release: $(cat "$WORK/rel.out")"
wait_until 30 "site 102's node releasing 2 slots, seen at the hub" sh -c "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq '.enrollment.sites[] | select(.site == \"102\") | .released')\" = 2 ]"
as dm1 enrollment grant --node "$HUB" --site 101 --slots 7 > "$WORK/move.out" \
    || fail "grant 101 the released slots: $(cat "$WORK/move.out")"
wait_until 30 "site 101 acknowledging 7 slots" sh -c "[ \"\$('$TRIALSYNC' status --node '$S1' --json | jq '.enrollment.sites[0].slots')\" = 7 ]"
as crc101 put --node "$S1" subject 101-0006 status=enrolled > "$WORK/e6b.out" 2>&1 \
    || fail "the sixth enrollment with the moved slots: $(cat "$WORK/e6b.out")"
as crc101 put --node "$S1" subject 101-0007 site=101 sex=F status=enrolled > /dev/null \
    || fail "the seventh enrollment"
if as crc101 put --node "$S1" subject 101-0008 site=101 sex=F status=enrolled > "$WORK/e8.out" 2>&1; then
    fail "the eighth enrollment was accepted"
fi
assert_contains "$(cat "$WORK/e8.out")" "site 101 has used 7 of 7 slots" "101 is full again"
if as dm1 enrollment cap --node "$HUB" --cap 8 > "$WORK/cap8.out" 2>&1; then
    fail "the cap went below the slots given"
fi
# Site 102 holds 3 slots now: its fourth enrollment is refused.
for id in 102-0002 102-0003; do
    as crc102 put --node "$S2" subject "$id" site=102 sex=F status=enrolled > /dev/null \
        || fail "site 102 enrolls $id"
done
if as crc102 put --node "$S2" subject 102-0004 site=102 sex=F status=enrolled > "$WORK/f4.out" 2>&1; then
    fail "site 102 enrolled past its 3 slots"
fi
assert_contains "$(cat "$WORK/f4.out")" "site 102 has used 3 of 3 slots" "102 keeps to 3 slots"

# After healing: the same counts on every node, in status and /metrics.
wait_until 30 "every enrollment at the hub" sh -c "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq '.enrollment.enrolled')\" = 10 ]"
assert_eq 7 "$(site_en "$HUB" 101 enrolled)" "the hub counts 7 at site 101"
assert_eq 3 "$(site_en "$HUB" 102 enrolled)" "the hub counts 3 at site 102"
assert_eq 7 "$(site_en "$S1" 101 enrolled)" "site 101 counts 7"
assert_eq 3 "$(site_en "$S2" 102 enrolled)" "site 102 counts 3"
assert_eq 7 "$(site_en "$HUB" 101 slots)" "the hub sees 101's 7 slots"
assert_eq 3 "$(site_en "$HUB" 102 slots)" "the hub sees 102's 3 slots"
assert_contains "$("$TRIALSYNC" status --node "$HUB")" "10 enrolled, cap 10" "status says the trial's count"
SHOW=$("$TRIALSYNC" enrollment show --node "$HUB")
assert_contains "$SHOW" "10 enrolled, cap 10 (allocated by" "enrollment show: the trial's count and cap"
assert_eq "101 7 7" "$(printf '%s\n' "$SHOW" | awk '$1 == "101" {print $1, $2, $3}')" \
    "enrollment show: site 101 has 7 enrolled of 7 slots"
assert_eq 3 "$("$TRIALSYNC" enrollment show --node "$S2" --json | jq '.sites[0].enrolled')" \
    "enrollment show --json at site 102"

metrics() {
    local addr token
    addr=$(awk -F' *= *' '/^\[/ {api = ($0 == "[api]")} api && $1 == "listen" {print $2}' "$1/node.conf")
    token=$(cat "$1/api.token")
    curl -sf -H "Authorization: Bearer $token" "http://$addr/metrics"
}
M=$(metrics "$HUB")
assert_contains "$M" 'trialsync_enrolled_subjects{site="101"} 7' "metrics: 101's enrolled at the hub"
assert_contains "$M" 'trialsync_enrolled_subjects{site="102"} 3' "metrics: 102's enrolled at the hub"
assert_contains "$M" 'trialsync_enrollment_slots{site="101"} 7' "metrics: 101's slots at the hub"
assert_contains "$M" 'trialsync_enrollment_cap 10' "metrics: the cap"
assert_contains "$(metrics "$S1")" 'trialsync_enrolled_subjects{site="101"} 7' "metrics: 101's enrolled at the site"
assert_contains "$(metrics "$S2")" 'trialsync_enrolled_subjects{site="102"} 3' "metrics: 102's enrolled at the site"
done_checks
