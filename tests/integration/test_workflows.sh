#!/usr/bin/env bash
# The merge rules that are rules, not conflicts, and the status machines, on
# a hub and two sites that go offline at chosen moments (docs/workflows.md):
#   - a site and the hub writing the same value while apart: no conflict, one
#     value shown, both writes in the history;
#   - a site's answer crossing the CRO's cancel: the query is cancelled, the
#     answer kept, no conflict; messages carry author, node and time;
#   - a status never moves back (reason or not), screen_failed only from
#     screening; entered-in-error undoes a mistaken record;
#   - concurrent final statuses resolve by rank and are a conflict; a stale
#     "randomized" with armcd that lost to "died" is flagged, not silently
#     shown; a write that saw both resolves it.
# Every node shows the same thing after healing.
. "$(dirname "$0")/lib.sh"

hub_and_two_sites T-WORKFLOWS

put() { "$TRIALSYNC" put --node "$@" > /dev/null || fail "put $*"; }
field() {  # NODEDIR TYPE ID JQ: a jq filter over .fields of the record
    "$TRIALSYNC" get --node "$1" "$2" "$3" | jq -cS ".fields$4"
}
at() {  # NODEDIR TYPE ID JQ: succeeds when the filter is true on that node
    "$TRIALSYNC" get --node "$1" "$2" "$3" 2>/dev/null | jq -e ".fields$4" > /dev/null
}
# The moment of the partition: the hub stops; the site writes; the site stops,
# the hub starts and writes; the site starts and both sides heal.
hub_down() { stop_node hub; }
site_down_hub_up() { stop_node s101; start_node hub "$HUB"; }
heal() { start_node s101 "$S1"; }

put "$S1" subject 101-0001 site=101 sex=U status=screening --user crc1
put "$S1" subject 101-0003 site=101 sex=M status=randomized --user crc1
put "$S1" subject 101-0004 site=101 sex=F status=enrolled --user crc1
put "$HUB" query Q-hub1-1 target=subject/101-0001/sex text="Please confirm sex" state=open \
    source=dm --user dm1
wait_until 20 "101-0004 at the hub" at "$HUB" subject 101-0004 '.status.value == "enrolled"'
wait_until 20 "the query at site 101" at "$S1" query Q-hub1-1 '.state.value == "open"'
ok "site 101's subjects at the hub, the CRO's query at site 101"

# ---- partition 1: the same value on both sides, an answer crossing a cancel,
# ---- two final statuses, a stale randomization
hub_down
put "$S1" subject 101-0001 sex=F --reason "per source document" --user crc1
put "$S1" query Q-hub1-1 state=answered messages="Confirmed female per source" --user crc1
put "$S1" subject 101-0003 status=completed --user crc1
put "$S1" subject 101-0003 sex=F --reason "per source document" --user crc1
put "$S1" subject 101-0004 status=randomized armcd=A --user crc1
site_down_hub_up
put "$HUB" subject 101-0001 sex=F --reason "monitor: per source" --user monitor1
put "$HUB" query Q-hub1-1 state=cancelled --user dm1
put "$HUB" subject 101-0003 status=withdrawn --user dm1
put "$HUB" subject 101-0003 sex=U --reason "monitor: source unclear" --user monitor1
put "$HUB" subject 101-0004 status=died dsdecod=DEATH --user safety1
heal
wait_until 30 "the site's sex=F at the hub" bash -c \
    "[ \$('$TRIALSYNC' history --node '$HUB' subject 101-0001 | jq '[.versions[] | select(.field == \"sex\")] | length') -eq 3 ]"
wait_until 30 "the answer at the hub" at "$HUB" query Q-hub1-1 '.messages.value | length == 1'
wait_until 30 "the late randomization at the hub" at "$HUB" subject 101-0004 '.armcd.value == "A"'
wait_until 30 "the hub's death at site 101" at "$S1" subject 101-0004 '.status.value == "died"'
wait_until 30 "the cancel at site 101" at "$S1" query Q-hub1-1 '.state.value == "cancelled"'
wait_until 30 "the withdrawal at site 101" at "$S1" subject 101-0003 '.status.value == "withdrawn"'
wait_until 30 "the hub's sex=U at site 101" at "$S1" subject 101-0003 '.sex.conflict == true'
ok "partition 1 healed"

# 1. The same value written on both sides is no conflict; history keeps both.
for n in "$HUB" "$S1"; do
    assert_eq '{"conflict":false,"value":"F"}' "$(field "$n" subject 101-0001 .sex)" \
        "$(basename "$n"): sex=F written at the site and the hub while apart: one value, no conflict"
done
assert_eq '["integration:crc1","integration:monitor1"]' \
    "$("$TRIALSYNC" history --node "$HUB" subject 101-0001 | jq -c '[.versions[] | select(.field == "sex" and .new_value == "F") | .user] | sort')" \
    "the history keeps both writes of F"

# 2. The answer crossing the cancel: cancelled, the answer kept, no conflict.
for n in "$HUB" "$S1"; do
    name=$(basename "$n")
    assert_eq '"cancelled"' "$(field "$n" query Q-hub1-1 .state.value)" "$name: the query stays cancelled"
    assert_eq false "$(field "$n" query Q-hub1-1 .state.conflict)" "$name: the crossing is no conflict (state)"
    assert_eq '"1"' "$(field "$n" query Q-hub1-1 .round.value)" "$name: round 1"
    assert_eq false "$(field "$n" query Q-hub1-1 .round.conflict)" "$name: round \"1\" against \"1\" is no conflict"
    assert_eq '["Confirmed female per source"]' "$(field "$n" query Q-hub1-1 .messages.value)" \
        "$name: the answer is kept"
    msg=$(field "$n" query Q-hub1-1 '.messages.thread[0]')
    assert_eq '"integration:crc1"' "$(echo "$msg" | jq -c .author)" "$name: the message names its author"
    assert_eq '"101"' "$(echo "$msg" | jq -c .node)" "$name: the message names its node"
    echo "$msg" | jq -e '.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?Z$")' \
        > /dev/null || fail "$name: the message time is not ISO 8601 UTC: $msg"
    ok "$name: the message carries its time in ISO 8601 UTC"
done
assert_eq '{"node":"101","user":"integration:crc1"}' \
    "$("$TRIALSYNC" history --node "$HUB" query Q-hub1-1 | jq -cS '.versions[] | select(.field == "messages") | {user, node}')" \
    "the history names the message's author and node too"
if "$TRIALSYNC" conflicts --node "$HUB" | jq -e '.conflicts[] | select(.id == "Q-hub1-1" or .id == "101-0001")' > /dev/null; then
    fail "the hub lists the query or the agreed sex as a conflict"
fi
ok "conflicts lists neither the query nor the agreed value"

# 3a. Concurrent final statuses: ranked (withdrawn > completed), a conflict.
for n in "$HUB" "$S1"; do
    name=$(basename "$n")
    assert_eq '"withdrawn"' "$(field "$n" subject 101-0003 .status.value)" "$name: withdrawn outranks completed"
    assert_eq true "$(field "$n" subject 101-0003 .status.conflict)" "$name: two final statuses are a conflict"
done
"$TRIALSYNC" conflicts --node "$HUB" | jq -e '.conflicts[] | select(.id == "101-0003" and .field == "status")' \
    > /dev/null || fail "the final-status conflict is not listed at the hub"
ok "conflicts lists the final-status conflict"

# 3d. System queries: the node raises one per field a person must resolve,
# derived from the state, so every node shows the same id; none for a rule.
sysq() {  # NODEDIR TYPE ID FIELD: the record's system queries on FIELD, as compact JSON
    "$TRIALSYNC" get --node "$1" "$2" "$3" | jq -cS "[.system_queries[] | select(.field == \"$4\")]"
}
sex_q=$(sysq "$HUB" subject 101-0003 sex)
assert_eq 1 "$(echo "$sex_q" | jq length)" "hub: one system query on the concurrent sex values"
assert_eq '"open"' "$(echo "$sex_q" | jq '.[0].state')" "hub: it is open"
assert_eq '"system"' "$(echo "$sex_q" | jq '.[0].source')" "hub: its source is system"
assert_eq '"subject/101-0003/sex"' "$(echo "$sex_q" | jq '.[0].target')" "hub: it targets the field"
sex_qid=$(echo "$sex_q" | jq -r '.[0].id')
case "$sex_qid" in SYS-????????????????) ;; *) fail "system query id '$sex_qid' is not SYS-<16 hex>";; esac
assert_eq "$sex_q" "$(sysq "$S1" subject 101-0003 sex)" "site 101 shows the same system query, same id"
assert_eq '"open"' "$(sysq "$S1" subject 101-0003 status | jq '.[0].state')" \
    "the concurrent final statuses raise a system query too"
assert_eq "$(sysq "$HUB" subject 101-0003 status)" "$(sysq "$S1" subject 101-0003 status)" \
    "hub and site show the same status system query"
assert_eq "$sex_qid" "$("$TRIALSYNC" conflicts --node "$HUB" | jq -r '.conflicts[] | select(.id == "101-0003" and .field == "sex") | .system_query')" \
    "conflicts names the system query of the conflict"
assert_eq '[]' "$(sysq "$HUB" subject 101-0001 sex)" "the same value on both sides raises no system query"
assert_eq '[]' "$("$TRIALSYNC" get --node "$HUB" query Q-hub1-1 | jq -c '.system_queries')" \
    "a query's answer crossing its cancel raises none (a rule)"
# The site's correction, made having seen both values, closes it everywhere.
put "$S1" subject 101-0003 sex=F --reason "source document re-checked: female" --user crc1
wait_until 30 "the correction at the hub" at "$HUB" subject 101-0003 '.sex.conflict == false'
for n in "$HUB" "$S1"; do
    name=$(basename "$n")
    q=$(sysq "$n" subject 101-0003 sex)
    assert_eq "$sex_qid" "$(echo "$q" | jq -r '.[0].id')" "$name: the same query, now"
    assert_eq '"closed"' "$(echo "$q" | jq '.[0].state')" "$name: closed by the correction"
    assert_eq '"integration:crc1"' "$(echo "$q" | jq '.[0].closed_by.user')" "$name: closed by the person who corrected it"
done
# Query messages name the author's role, or whom an integration acted for.
assert_eq '{"author":"integration:crc1","on_behalf_of":"crc1","via":"integration"}' \
    "$("$TRIALSYNC" get --node "$HUB" query Q-hub1-1 | jq -cS '.fields.messages.thread[0] | {author, via, on_behalf_of}')" \
    "a query message says who wrote it and how"

# 3b. The stale randomization: died shown, armcd flagged as written with a
# status that lost to a final one, on every node.
for n in "$HUB" "$S1"; do
    name=$(basename "$n")
    assert_eq '"died"' "$(field "$n" subject 101-0004 .status.value)" "$name: died outranks the late randomized"
    assert_eq true "$(field "$n" subject 101-0004 .status.conflict)" "$name: the lost randomization is flagged on status"
    assert_eq '{"field":"status","lost_to":"died","written_with":"randomized"}' \
        "$(field "$n" subject 101-0004 .armcd.stale)" "$name: armcd is flagged stale"
    assert_eq true "$(field "$n" subject 101-0004 .armcd.conflict)" "$name: armcd is not silently shown"
    assert_eq false "$(field "$n" subject 101-0004 .dsdecod.conflict)" "$name: the hub's own dsdecod is not stale"
done
assert_eq '[{"field":"armcd","value":"A"}]' \
    "$("$TRIALSYNC" conflicts --node "$HUB" | jq -c '[.conflicts[] | select(.id == "101-0004") | .stale_fields[] | {field, value}]')" \
    "conflicts names the stale armcd with the status conflict"
# A write that saw both resolves it: no conflict, no stale flag anywhere.
put "$HUB" subject 101-0004 status=died --reason "death confirmed; randomization void" --user dm1
wait_until 30 "the resolution at site 101" at "$S1" subject 101-0004 '.status.conflict == false'
for n in "$HUB" "$S1"; do
    name=$(basename "$n")
    assert_eq null "$(field "$n" subject 101-0004 .armcd.stale)" "$name: resolved, armcd no longer stale"
    assert_eq '["closed"]' "$("$TRIALSYNC" get --node "$n" subject 101-0004 | jq -c '[.system_queries[] | select(.field == "status") | .state]')" \
        "$name: the status system query is closed by the resolution"
done

# 3c. The machines, enforced at the API on any node.
put "$S2" subject 102-0001 site=102 sex=M status=screening --user crc2
put "$S2" subject 102-0001 status=enrolled --user crc2
if "$TRIALSYNC" put --node "$S2" subject 102-0001 status=screen_failed --reason "missed criterion" \
    > "$WORK/sf.out" 2>&1; then fail "screen_failed from enrolled accepted"; fi
assert_contains "$(cat "$WORK/sf.out")" "allowed next states: randomized, withdrawn, lost_to_followup, died" \
    "screen_failed after enrolled is refused, naming the allowed next states"
put "$S2" subject 102-0001 status=randomized --user crc2
put "$S2" subject 102-0001 status=completed --user crc2
if "$TRIALSYNC" put --node "$S2" subject 102-0001 status=enrolled --reason "entered wrongly" \
    > "$WORK/back.out" 2>&1; then fail "completed -> enrolled accepted with a reason"; fi
assert_contains "$(cat "$WORK/back.out")" "'completed' is final" "completed -> enrolled refused, reason or not"
assert_contains "$(cat "$WORK/back.out")" "entered in error" "the refusal points to entered-in-error"
wait_until 30 "102-0001 completed at the hub" at "$HUB" subject 102-0001 '.status.value == "completed"'
if "$TRIALSYNC" put --node "$HUB" subject 102-0001 status=randomized --reason "CRO correction" \
    > "$WORK/hubback.out" 2>&1; then fail "the hub moved a status back"; fi
assert_contains "$(cat "$WORK/hubback.out")" "cannot move to 'randomized'" "the hub cannot move it back either"
put "$S2" subject 102-0001 eie=Y --reason "wrong patient" --user crc2
assert_eq '"Y"' "$(field "$S2" subject 102-0001 .eie.value)" "entered-in-error undoes the mistaken record"
if "$TRIALSYNC" put --node "$S2" subject 102-0002 site=102 sex=F status=screening > /dev/null &&
    "$TRIALSYNC" put --node "$S2" subject 102-0002 status=screen_failed > /dev/null; then
    ok "screen_failed from screening is a move"
else
    fail "screen_failed from screening refused"
fi

# Every node agrees on the record site 101 shares with the hub.
for r in 101-0001 101-0003 101-0004; do
    assert_eq "$("$TRIALSYNC" get --node "$HUB" subject "$r" | jq -cS .fields)" \
        "$("$TRIALSYNC" get --node "$S1" subject "$r" | jq -cS .fields)" "hub and site 101 show $r alike"
done

stop_node s101
stop_node s102
stop_node hub
done_checks
