#!/usr/bin/env bash
# Source-data verification while sites go offline: a monitor marks fields of
# a site's visit verified at the hub; an offline edit of a field the mark does
# not name leaves it verified; an offline edit of a verified field, arriving
# after the mark, turns it into "needs re-verification" on the hub and on the
# site alike (derived from the same entries); a new mark verifies again.
# Only a monitor, signed in, marks; nobody writes a mark as data.
. "$(dirname "$0")/lib.sh"

TRIAL="$WORK/trial"
new_trial T-SDV
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
start_node site101 "$S1"
add_user crc101 crc --site 101
add_user mon monitor
wait_until 20 "crc101's account at the site" "$TRIALSYNC" get --node "$S1" user crc101

as crc101 put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null \
    || fail "put the subject"
as crc101 put --node "$S1" visit 101-0001/V1 svstdtc=2026-11-02 svoccur=Y status=completed \
    > /dev/null || fail "put the visit"
wait_until 20 "the visit at the hub" "$TRIALSYNC" get --node "$HUB" visit 101-0001/V1

# marks NODEDIR: the visit's SDV marks as "state fields user" lines.
marks() {
    "$TRIALSYNC" get --node "$1" visit 101-0001/V1 | jq -r '.sdv[] | "\(.state) \(.fields) \(.user)"'
}

if as crc101 sdv --node "$S1" visit 101-0001/V1 > "$WORK/crc.out" 2>&1; then
    fail "a crc marked source-data verification"
fi
assert_contains "$(cat "$WORK/crc.out")" "monitor's" "only a monitor verifies"
if "$TRIALSYNC" put --node "$HUB" sdv 101-0001-SDV-1 target=visit/101-0001/V1 \
    verified_at=2026-11-02T10:00Z --user mon > "$WORK/int.out" 2>&1; then
    fail "an SDV mark was written as data"
fi
assert_contains "$(cat "$WORK/int.out")" "trialsync sdv" "nobody writes a mark as data"

as mon sdv --node "$HUB" visit 101-0001/V1 --fields svstdtc,svoccur > "$WORK/sdv.out" \
    || fail "mon sdv: $(cat "$WORK/sdv.out")"
assert_eq "verified svstdtc,svoccur mon" "$(marks "$HUB")" "the hub shows the mark verified"
wait_until 20 "the mark reaching site 101" sh -c "'$TRIALSYNC' get --node '$S1' visit 101-0001/V1 | jq -e '.sdv | length == 1'"
assert_eq "verified svstdtc,svoccur mon" "$(marks "$S1")" "the site shows the same mark verified"

# Offline: an edit of a field the mark does not name leaves it verified.
stop_node hub
as crc101 put --node "$S1" visit 101-0001/V1 svendtc=2026-11-02 > /dev/null || fail "offline edit"
start_node hub "$HUB"
wait_until 30 "the offline svendtc at the hub" sh -c "'$TRIALSYNC' get --node '$HUB' visit 101-0001/V1 | jq -e '.fields.svendtc.value == \"2026-11-02\"'"
assert_eq "verified svstdtc,svoccur mon" "$(marks "$HUB")" "an edit of an unverified field leaves the mark verified"

# Offline again: an edit of a verified field, made after the mark, arriving later.
stop_node hub
as crc101 put --node "$S1" visit 101-0001/V1 svstdtc=2026-11-03 --reason "source shows the 3rd" \
    > /dev/null || fail "offline edit of a verified field"
assert_eq "needs re-verification svstdtc,svoccur mon" "$(marks "$S1")" \
    "the site shows the mark needing re-verification at once"
start_node hub "$HUB"
wait_until 30 "the offline svstdtc at the hub" sh -c "'$TRIALSYNC' get --node '$HUB' visit 101-0001/V1 | jq -e '.fields.svstdtc.value == \"2026-11-03\"'"
assert_eq "needs re-verification svstdtc,svoccur mon" "$(marks "$HUB")" \
    "the hub shows it needing re-verification, from the same entries"

# A new mark verifies the new versions; the old one keeps its history.
as mon sdv --node "$HUB" visit 101-0001/V1 --fields svstdtc,svoccur > /dev/null || fail "re-verify"
assert_eq "2" "$(marks "$HUB" | wc -l | tr -d ' ')" "both marks are kept"
assert_contains "$(marks "$HUB")" "verified svstdtc,svoccur mon" "the new mark is verified"
assert_contains "$(marks "$HUB")" "needs re-verification svstdtc,svoccur mon" \
    "the old one still says what happened"

# A whole-record mark: every field, so any later write reopens it.
as mon sdv --node "$HUB" subject 101-0001 > /dev/null || fail "whole-subject mark"
assert_eq "verified" "$("$TRIALSYNC" get --node "$HUB" subject 101-0001 | jq -r '.sdv[0].state')" \
    "a whole-record mark is verified"
as crc101 put --node "$S1" subject 101-0001 brthdtc=1961 > /dev/null || fail "new subject field"
wait_until 30 "the whole-record mark needing re-verification at the hub" sh -c \
    "'$TRIALSYNC' get --node '$HUB' subject 101-0001 | jq -e '.sdv[0].state == \"needs re-verification\"'"
ok "a new value on a whole-record mark reopens it"

done_checks
