#!/usr/bin/env bash
# A hub and two sites on loopback, real TLS and RocksDB: records flow to the
# hub, a CRO query reaches only its site, no site holds another's patients
# (checked in its database), offline writes arrive exactly once, a
# concurrent edit shows the same value and conflict on both nodes.
. "$(dirname "$0")/lib.sh"

OFFLINE_RECORDS=${OFFLINE_RECORDS:-1000}
DUMP="$TS_BIN/tests/ts_store_dump"
LOAD="$TS_BIN/tests/ts_load"
[ -x "$DUMP" ] && [ -x "$LOAD" ] || fail "$DUMP or $LOAD is missing: build the tests/tools targets"

new_trial T-REPL
start_node hub "$HUB"
add_site 101
add_site 102
S1="$WORK/site-101"
S2="$WORK/site-102"
assert_contains "$(cat "$WORK/site-add-101.out")" "recorded in the membership log" "site 101 recorded"
assert_eq 600 "$(stat -c %a "$S1/node.key")" "site key is mode 0600"
if "$TRIALSYNC" site add 101 --dir "$WORK/trial" --out "$WORK/again" 2> "$WORK/err"; then
    fail "adding site 101 twice succeeded"
fi
assert_contains "$(cat "$WORK/err")" "already exists" "adding an existing site refused"
start_node s101 "$S1"
start_node s102 "$S2"

# Records at both sites reach the hub.
"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
"$TRIALSYNC" put --node "$S1" visit 101-0001/V1 svstdtc=2026-11-01 status=scheduled > /dev/null || fail put
"$TRIALSYNC" put --node "$S2" subject 102-0001 site=102 sex=M status=screening > /dev/null || fail put
wait_until 10 "hub holds both sites' subjects" \
    bash -c "[ \$('$TRIALSYNC' records --node '$HUB' subject | jq .count) -eq 2 ]"
ok "records at both sites reached the hub"
assert_eq F "$("$TRIALSYNC" get --node "$HUB" subject 101-0001 | json .fields.sex.value)" "hub shows site 101's value"

# Membership reached the sites; site list at the admin.
wait_until 10 "membership at site 102" "$TRIALSYNC" get --node "$S2" member 101
"$TRIALSYNC" site list --dir "$WORK/trial" > "$WORK/sites.txt" || fail "site list"
assert_contains "$(cat "$WORK/sites.txt")" "Site 101" "site list names the sites"
assert_eq true "$("$TRIALSYNC" site list --dir "$WORK/trial" --json | jq '.sites[] | select(.id == "101") | .connected')" \
    "site list shows site 101 connected"

# A query the CRO writes at the hub about site 101's subject reaches 101 only.
"$TRIALSYNC" put --node "$HUB" query Q-hub1-1 target=subject/101-0001/sex text="Please confirm sex" \
    state=open source=dm --user monitor > /dev/null || fail "query at hub"
wait_until 10 "query at site 101" "$TRIALSYNC" get --node "$S1" query Q-hub1-1
ok "the query reached site 101"
"$TRIALSYNC" put --node "$S1" query Q-hub1-1 state=answered messages="Confirmed female per source" \
    --user coordinator > /dev/null || fail "site answers the query"
wait_until 10 "answer at hub" bash -c \
    "'$TRIALSYNC' get --node '$HUB' query Q-hub1-1 | jq -e '.fields.state.value == \"answered\"'"
ok "the site's answer reached the hub"

# Site 102 holds nothing of site 101: through its API and in its database.
# First a positive marker: a later hub entry (after the query in the hub's
# chain) reaches site 102, and the hub reports nothing left to send it; had
# the downlink filter let 101's records through, they would be there by now.
"$TRIALSYNC" put --node "$HUB" query Q-hub1-3 target=subject/102-0001/sex text="Marker for 102" \
    state=open source=dm --user monitor > /dev/null || fail "marker query at hub"
wait_until 20 "the hub's later query at site 102" "$TRIALSYNC" get --node "$S2" query Q-hub1-3
wait_until 20 "the hub has sent site 102 everything" bash -c \
    "'$TRIALSYNC' status --node '$HUB' --json | jq -e '.peers[] | select(.id == \"102\") | .connected and .behind_send_bulk + .behind_send_safety == 0'"
ok "marker: a later hub write reached site 102 and the hub has nothing more to send it"
if "$TRIALSYNC" get --node "$S2" query Q-hub1-1 > /dev/null 2>&1; then fail "site 102 got 101's query"; fi
if "$TRIALSYNC" get --node "$S2" subject 101-0001 > /dev/null 2>&1; then fail "site 102 got 101's subject"; fi
ok "site 102's API shows none of site 101's records"
stop_node s102
"$DUMP" "$S2" > "$WORK/dump-102.txt" || fail "dump site 102"
start_node s102 "$S2"
if grep -E '^(record|entry) .*\b101-' "$WORK/dump-102.txt"; then fail "site 102's database holds site 101 data"; fi
ok "site 102's database holds no record or entry of site 101"
grep -q '^hole hub1 ' "$WORK/dump-102.txt" || fail "site 102 should hold the hub's 101 query as a hole"
ok "site 102 holds the hub's entry about site 101 only as a hole (its hash)"
grep -q '^entry hub1 0 [0-9]* member 102 ' "$WORK/dump-102.txt" || fail "site 102 lacks its membership"
ok "trial-wide entries (membership) reached site 102 whole"

# Offline: the hub stops, each site records; CRO writes while sites are away.
stop_node hub
# Through each site's HTTP API over keep-alive connections (ts_load: a write
# counts only when answered 200, i.e. synced); ids 101-0000000, 101-0000001...
"$LOAD" "$S1" "$OFFLINE_RECORDS" 4 101- > "$WORK/load-101.out" 2>&1 & w1=$!
"$LOAD" "$S2" "$OFFLINE_RECORDS" 4 102- > "$WORK/load-102.out" 2>&1 & w2=$!
"$TRIALSYNC" put --node "$S1" subject 101-0001 sex=M --reason "site correction" --user coordinator \
    > /dev/null || fail "site edit while offline"
wait $w1 || fail "site 101 writes while the hub is down: $(cat "$WORK/load-101.out")"
wait $w2 || fail "site 102 writes while the hub is down: $(cat "$WORK/load-102.out")"
for s in 101 102; do
    grep -q "^writes=$OFFLINE_RECORDS .* failed=0$" "$WORK/load-$s.out" \
        || fail "site $s: not every offline write acknowledged: $(cat "$WORK/load-$s.out")"
done
assert_eq $((1 + OFFLINE_RECORDS)) "$(record_count "$S1" subject)" "site 101 holds its $OFFLINE_RECORDS offline subjects"
assert_eq $((1 + OFFLINE_RECORDS)) "$(record_count "$S2" subject)" "site 102 holds its $OFFLINE_RECORDS offline subjects"
ok "both sites accepted $OFFLINE_RECORDS writes each with the hub down"
stop_node s101
stop_node s102
start_node hub "$HUB"
"$TRIALSYNC" put --node "$HUB" subject 101-0001 sex=U --reason "monitor: source says unknown" \
    --user monitor > /dev/null || fail "hub edit"
"$TRIALSYNC" put --node "$HUB" query Q-hub1-2 target=subject/102-0001/sex text="Check sex" state=open \
    source=monitor > /dev/null || fail "hub query 2"
start_node s101 "$S1"
start_node s102 "$S2"
want=$((2 + 2 * OFFLINE_RECORDS))
wait_until 60 "hub holds all $want subjects" \
    bash -c "[ \$('$TRIALSYNC' records --node '$HUB' subject | jq .count) -eq $want ]"
ok "every offline record reached the hub"
for s in 101 102; do
    dir="$WORK/site-$s"
    site_head=$("$TRIALSYNC" status --node "$dir" --json | jq "[.version_vector[] | select(.origin == \"$s\" and .lane == \"bulk\") | .seq][0]")
    wait_until 20 "hub holds site $s's chain" bash -c \
        "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq '[.version_vector[] | select(.origin == \"$s\" and .lane == \"bulk\") | .seq][0]')\" = '$site_head' ]"
    ok "the hub holds site $s's whole chain ($site_head entries)"
done
hub_entries=$("$TRIALSYNC" status --node "$HUB" --json | jq .entries)
sum_heads=$("$TRIALSYNC" status --node "$HUB" --json | jq '[.version_vector[].seq] | add')
assert_eq "$sum_heads" "$hub_entries" "no duplicates: entries held equal the chain heads' sum"
mid=$(printf '101-%07d' $((OFFLINE_RECORDS / 2)))
assert_eq 1 "$("$TRIALSYNC" history --node "$HUB" subject "$mid" | jq '[.versions[] | select(.field == "sex")] | length')" \
    "an offline record has exactly one version at the hub"
wait_until 10 "hub's query 2 at site 102" "$TRIALSYNC" get --node "$S2" query Q-hub1-2
ok "a CRO write made while the site was away reached it"

# The concurrent edit: same displayed value and the same conflict on both nodes.
wait_until 20 "conflict visible at site 101" bash -c \
    "'$TRIALSYNC' get --node '$S1' subject 101-0001 | jq -e '.fields.sex.conflict'"
hub_sex=$("$TRIALSYNC" get --node "$HUB" subject 101-0001 | jq -c .fields.sex)
site_sex=$("$TRIALSYNC" get --node "$S1" subject 101-0001 | jq -c .fields.sex)
assert_eq "$hub_sex" "$site_sex" "hub and site show the same value and the same conflict"
assert_eq true "$(echo "$hub_sex" | jq .conflict)" "the concurrent edit is a visible conflict"
assert_eq 2 "$(echo "$hub_sex" | jq '.values | length')" "both values are kept"
assert_contains "$("$TRIALSYNC" conflicts --node "$HUB")" "101-0001" "conflicts lists it at the hub"

# Status: one row per site, connected, nothing behind.
wait_until 10 "hub has sent everything" bash -c \
    "'$TRIALSYNC' status --node '$HUB' --json | jq -e '[.peers[] | select(.connected) | .behind_send_bulk + .behind_send_safety] | add == 0'"
"$TRIALSYNC" status --node "$HUB" > "$WORK/status.txt"
assert_contains "$(cat "$WORK/status.txt")" "connected" "status table shows connected peers"

# A site's share of the trial has one digest at the site and at the hub (its
# subjects, visits, AEs and the queries about them), though the whole-store
# digests differ: the hub also holds the other site's share.
wait_until 30 "site 101's share agrees at the site and the hub" bash -c \
    "[ \"\$('$TRIALSYNC' digest --node '$S1' --site 101)\" = \"\$('$TRIALSYNC' digest --node '$HUB' --site 101)\" ]"
wait_until 30 "site 102's share agrees at the site and the hub" bash -c \
    "[ \"\$('$TRIALSYNC' digest --node '$S2' --site 102)\" = \"\$('$TRIALSYNC' digest --node '$HUB' --site 102)\" ]"
ok "digest --site: each site's share has the same digest at the site and at the hub"
[ "$(digest "$S1")" != "$(digest "$HUB")" ] || fail "whole-store digests of site 101 and the hub should differ"
d101=$("$TRIALSYNC" digest --node "$HUB" --site 101)
d102=$("$TRIALSYNC" digest --node "$HUB" --site 102)
[ "$d101" != "$d102" ] || fail "two sites' shares have the same digest"
ok "the whole-store digests differ, and so do the two sites' shares"
# The share moves with a query about the site's record (a hub write scoped to it).
"$TRIALSYNC" put --node "$HUB" query Q-hub1-9 target=subject/101-0001/sex text="Share marker" \
    state=open source=dm --user monitor > /dev/null || fail "put share marker query"
[ "$("$TRIALSYNC" digest --node "$HUB" --site 101)" != "$d101" ] || fail "a query about 101 did not move 101's share"
assert_eq "$d102" "$("$TRIALSYNC" digest --node "$HUB" --site 102)" "a query about 101 leaves 102's share alone"
wait_until 30 "site 101's share agrees again" bash -c \
    "[ \"\$('$TRIALSYNC' digest --node '$S1' --site 101)\" = \"\$('$TRIALSYNC' digest --node '$HUB' --site 101)\" ]"
ok "a query about site 101's record is in 101's share, at the hub and the site"
out=$("$TRIALSYNC" digest --node "$S1" --site 102 2>&1) && fail "site 101 gave a digest of 102's share"
assert_contains "$out" "only its own share" "a site refuses another site's share, saying why"
stop_node s101
stop_node s102
stop_node hub
"$TRIALSYNC" verify --node "$HUB" > /dev/null || fail "hub store verifies"
"$TRIALSYNC" verify --node "$S2" > /dev/null || fail "site 102 store (with holes) verifies"
ok "hub and site stores verify (chains with holes included)"
done_checks
