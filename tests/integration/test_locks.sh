#!/usr/bin/env bash
# Record locks while sites go offline: a data manager locks subject 101-0003
# (everything under it) and visit 102-0001/V1 at the hub while both sites are
# cut off; each site, offline and unaware, edits a locked visit (and site 102
# an unlocked one too).  After healing, the locked values shown are the ones
# the lock froze on the hub and on both sites, each offline edit is listed as
# quarantined with an open system query on every node, the unlocked edit is
# shown; a write made once the site knows the lock is refused with a clear
# error; after the unlock the site re-applies the quarantined edit and its
# value is shown everywhere, the quarantine resolved and its query closed.
. "$(dirname "$0")/lib.sh"

hub_and_two_sites T-LOCK
add_user crc101 crc --site 101
add_user crc102 crc --site 102
add_user dm1 dm
add_user mon monitor
wait_until 20 "crc101's account at site 101" "$TRIALSYNC" get --node "$S1" user crc101
wait_until 20 "crc102's account at site 102" "$TRIALSYNC" get --node "$S2" user crc102

as crc101 put --node "$S1" subject 101-0003 site=101 sex=F status=screening > /dev/null \
    || fail "put subject 101-0003"
as crc101 put --node "$S1" visit 101-0003/V3 svstdtc=2026-11-02 svoccur=Y > /dev/null \
    || fail "put visit 101-0003/V3"
as crc102 put --node "$S2" subject 102-0001 site=102 sex=M status=screening > /dev/null \
    || fail "put subject 102-0001"
as crc102 put --node "$S2" visit 102-0001/V1 svstdtc=2026-11-03 svoccur=Y > /dev/null \
    || fail "put visit 102-0001/V1"
as crc102 put --node "$S2" visit 102-0001/V2 svstdtc=2026-11-04 svoccur=Y > /dev/null \
    || fail "put visit 102-0001/V2"
wait_until 20 "site 101's visit at the hub" "$TRIALSYNC" get --node "$HUB" visit 101-0003/V3
wait_until 20 "site 102's visits at the hub" "$TRIALSYNC" get --node "$HUB" visit 102-0001/V2

# shown NODEDIR TYPE ID FIELD: the displayed value.
shown() { "$TRIALSYNC" get --node "$1" --json "$2" "$3" | jq -r ".fields.$4.value"; }
# quarantine NODEDIR TYPE ID: "entry user lock_epoch resolved query-state" lines.
quarantine() {
    "$TRIALSYNC" get --node "$1" --json "$2" "$3" \
        | jq -r '(.quarantined // [])[] | "\(.entry) \(.user) \(.lock_epoch) \(.resolved) \(.query.state)"'
}

# Only a data manager, signed in, at a hub, locks; nobody writes a lock as data.
if as mon lock --node "$HUB" --subject 101-0003 --reason "review" > "$WORK/mon.out" 2>&1; then
    fail "a monitor locked a subject"
fi
assert_contains "$(cat "$WORK/mon.out")" "data manager" "only a data manager locks"
if as crc101 lock --node "$S1" --subject 101-0003 --reason "x" > "$WORK/crc.out" 2>&1; then
    fail "a crc locked a subject"
fi
assert_contains "$(cat "$WORK/crc.out")" "HTTP 403" "a site user may not lock"
if "$TRIALSYNC" put --node "$HUB" lock 101-0003-LOCK epoch=1 targets='*' seen= --user dm1 \
    --reason x > "$WORK/data.out" 2>&1; then
    fail "a lock was written as data"
fi
assert_contains "$(cat "$WORK/data.out")" "trialsync lock" "nobody writes a lock as data"

# The partition: both sites cut off while the data manager locks at the hub.
stop_node s101
stop_node s102
as dm1 lock --node "$HUB" --subject 101-0003 --reason "database lock for interim analysis" \
    > "$WORK/lock1.out" || fail "lock subject 101-0003: $(cat "$WORK/lock1.out")"
as dm1 lock --node "$HUB" visit 102-0001/V1 --reason "visit cleaned" > "$WORK/lock2.out" \
    || fail "lock visit 102-0001/V1: $(cat "$WORK/lock2.out")"
if as dm1 lock --node "$HUB" visit 101-0003/V3 --reason "again" > "$WORK/lock3.out" 2>&1; then
    fail "a locked visit was locked twice"
fi
assert_contains "$(cat "$WORK/lock3.out")" "locked already" "a lock of a locked record says so"
assert_eq "1 dm1" "$("$TRIALSYNC" get --node "$HUB" --json visit 101-0003/V3 | jq -r '"\(.locked.epoch) \(.locked.by)"')" \
    "the hub shows the visit locked by dm1 at epoch 1"
# Frozen at the hub too: a CRO write to a locked record is refused.
if "$TRIALSYNC" put --node "$HUB" visit 101-0003/V3 svstdtc=2026-11-05 --user dm1 \
    --reason "hub fix" > "$WORK/hubw.out" 2>&1; then
    fail "the hub wrote a locked visit"
fi
assert_contains "$(cat "$WORK/hubw.out")" "is locked by dm1 since" "the hub refuses a locked write"
stop_node hub

# The sites, offline and unaware of the locks, edit.
start_node s101 "$S1"
start_node s102 "$S2"
as crc101 put --node "$S1" visit 101-0003/V3 svstdtc=2026-11-09 --reason "typo in source" \
    > /dev/null || fail "site 101's offline edit was refused"
as crc102 put --node "$S2" visit 102-0001/V1 svstdtc=2026-11-08 --reason "typo" > /dev/null \
    || fail "site 102's offline edit of the locked visit was refused"
as crc102 put --node "$S2" visit 102-0001/V2 svstdtc=2026-11-07 --reason "typo" > /dev/null \
    || fail "site 102's offline edit of an unlocked visit was refused"
assert_eq "2026-11-09" "$(shown "$S1" visit 101-0003/V3 svstdtc)" \
    "before it hears of the lock, site 101 shows its own edit"

# Healing.
start_node hub "$HUB"
wait_until 60 "site 101's edit quarantined at the hub" sh -c \
    "'$TRIALSYNC' get --node '$HUB' --json visit 101-0003/V3 | jq -e '.quarantined | length == 1'"
wait_until 60 "the lock and its verdict at site 101" sh -c \
    "'$TRIALSYNC' get --node '$S1' --json visit 101-0003/V3 | jq -e '.quarantined | length == 1'"
wait_until 60 "site 102's edit quarantined at the hub" sh -c \
    "'$TRIALSYNC' get --node '$HUB' --json visit 102-0001/V1 | jq -e '.quarantined | length == 1'"
wait_until 60 "the lock and its verdict at site 102" sh -c \
    "'$TRIALSYNC' get --node '$S2' --json visit 102-0001/V1 | jq -e '.quarantined | length == 1'"
wait_until 60 "site 102's unlocked edit at the hub" sh -c \
    "'$TRIALSYNC' get --node '$HUB' --json visit 102-0001/V2 | jq -e '.fields.svstdtc.value == \"2026-11-07\"'"

for node in "$HUB" "$S1"; do
    assert_eq "2026-11-02" "$(shown "$node" visit 101-0003/V3 svstdtc)" \
        "$(basename "$node") shows the value the lock froze, not the unseen edit"
    q=$(quarantine "$node" visit 101-0003/V3)
    assert_contains "$q" "101/bulk/" "$(basename "$node") lists the edit quarantined"
    assert_contains "$q" "crc101 1 false open" \
        "$(basename "$node"): by crc101, lock epoch 1, unresolved, its system query open"
done
for node in "$HUB" "$S2"; do
    assert_eq "2026-11-03" "$(shown "$node" visit 102-0001/V1 svstdtc)" \
        "$(basename "$node") shows the locked visit's frozen value"
    assert_eq "2026-11-07" "$(shown "$node" visit 102-0001/V2 svstdtc)" \
        "$(basename "$node") shows the edit of the visit nobody locked"
    assert_contains "$(quarantine "$node" visit 102-0001/V1)" "crc102 1 false open" \
        "$(basename "$node") lists site 102's edit quarantined by its subject's lock epoch 1"
done
assert_eq "$("$TRIALSYNC" get --node "$HUB" --json visit 101-0003/V3 | jq -r '.quarantined[0].query.id')" \
    "$("$TRIALSYNC" get --node "$S1" --json visit 101-0003/V3 | jq -r '.quarantined[0].query.id')" \
    "the hub and the site derive the same system query id"
assert_eq "1" "$("$TRIALSYNC" history --node "$HUB" --json visit 101-0003/V3 \
    | jq '[.versions[] | select(.quarantined_by_lock_epoch == 1)] | length')" \
    "the history marks the quarantined version"

# Now that site 101 knows the lock, a write to any record of the subject is refused.
if as crc101 put --node "$S1" visit 101-0003/V3 svstdtc=2026-11-10 --reason "again" \
    > "$WORK/refused.out" 2>&1; then
    fail "a write after the lock was seen was accepted"
fi
assert_contains "$(cat "$WORK/refused.out")" "visit 101-0003/V3 is locked by dm1 since" \
    "the refusal names the record, who locked it and since when"
assert_contains "$(cat "$WORK/refused.out")" "(lock epoch 1)" "the refusal names the lock epoch"
if as crc101 put --node "$S1" subject 101-0003 sex=M --reason "x" > /dev/null 2>&1; then
    fail "a write to the locked subject record was accepted"
fi
ok "every record under the subject is locked"

# Unlock; the site re-applies its quarantined edit.
ref=$("$TRIALSYNC" get --node "$S1" --json visit 101-0003/V3 | jq -r '.quarantined[0].entry')
as dm1 unlock --node "$HUB" --subject 101-0003 --reason "interim analysis done" \
    > "$WORK/unlock.out" || fail "unlock: $(cat "$WORK/unlock.out")"
wait_until 60 "the unlock at site 101" sh -c \
    "'$TRIALSYNC' get --node '$S1' --json visit 101-0003/V3 | jq -e '.locked == null'"
as crc101 reapply --node "$S1" visit 101-0003/V3 "$ref" > "$WORK/reapply.out" \
    || fail "reapply: $(cat "$WORK/reapply.out")"
wait_until 60 "the re-applied edit at the hub" sh -c \
    "'$TRIALSYNC' get --node '$HUB' --json visit 101-0003/V3 | jq -e '.fields.svstdtc.value == \"2026-11-09\"'"
for node in "$HUB" "$S1"; do
    assert_eq "2026-11-09" "$(shown "$node" visit 101-0003/V3 svstdtc)" \
        "$(basename "$node") shows the re-applied value"
    assert_contains "$(quarantine "$node" visit 101-0003/V3)" "crc101 1 true closed" \
        "$(basename "$node"): the quarantine is resolved, its system query closed"
done
assert_contains "$("$TRIALSYNC" history --node "$HUB" --json visit 101-0003/V3 | jq -r '.versions[].reason')" \
    "re-applies edit $ref" "the re-applied write names the quarantined edit"
# Site 102's visit stays locked: the unlock was of subject 101-0003 only.
if as crc102 put --node "$S2" visit 102-0001/V1 svstdtc=2026-11-11 --reason "x" > /dev/null 2>&1; then
    fail "site 102 wrote its still-locked visit"
fi
ok "another subject's lock is untouched by the unlock"
done_checks
