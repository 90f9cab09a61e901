#!/usr/bin/env bash
# A hostile SITE against a hub: site 101's own certificate and key, its REAL
# chain continued (ts_evil_peer craft reads the stopped site's store for the
# next seq and prev_hash and signs with the site's key), so the batch is
# genuine and well chained; only what the entry says is hostile.  Each entry
# the rule book (validate_entry) forbids must be refused naming the rule, the
# per-peer per-rule counter must move, nothing may be applied at the hub, and
# the other site (102) keeps replicating.  Entries stamped in the future are
# held, not applied, and do not drag the hub's clock.  A legit answer by the
# right site is acked (the positive control).  Afterwards the real site 101
# restarts and its real chain goes on: the refused entries never existed.
#
# HOSTILE_SITE_CASES="role_target scope ..." runs only those cases (after the set-up).
. "$(dirname "$0")/../integration/lib.sh"

need_cmd jq jq
EVIL="$TS_BIN/tests/ts_evil_peer"
[ -x "$EVIL" ] || fail "$EVIL is missing: build the tests/tools targets"

# ---- helpers -------------------------------------------------------------------

mark() { MARK=$(wc -l < "$WORK/hub.log"); }
since_mark() { tail -n +$((MARK + 1)) "$WORK/hub.log"; }
assert_trace() {  # MESSAGE TEXT...: one hub trace line since the mark holds every TEXT
    local msg=$1 line
    shift
    line=$(since_mark | grep -F -- "$1")
    shift
    for t in "$@"; do line=$(printf '%s\n' "$line" | grep -F -- "$t"); done
    line=$(printf '%s\n' "$line" | head -n 1)
    [ -n "$line" ] || fail "$msg: no hub trace line with [$*] since the mark; the trace said:
$(since_mark | tail -n 15)"
    ok "$msg: $(printf '%s' "$line" | cut -c1-260)"
}

hub_status() { "$TRIALSYNC" status --node "$HUB" --json; }
hub_snapshot() {
    printf '%s %s\n' "$(digest "$HUB")" "$(hub_status | jq -c '{entries, records, version_vector}')"
}
assert_unchanged() {  # BEFORE MESSAGE
    local after
    after=$(hub_snapshot)
    [ "$1" = "$after" ] || fail "$2: the hub's state changed:
before: $1
after:  $after"
    ok "$2"
}
# peer_stat ID JQ: a number from the hub's status row of peer ID.
peer_stat() {
    hub_status | jq -r --arg id "$1" "[.peers[] | select(.id == \$id) | $2][0] // 0"
}
refused_n() { peer_stat 101 ".entries_refused[\"$1\"] // 0"; }
peer_connected() {
    hub_status | jq -r --arg id "$1" '[.peers[] | select(.id == $id) | .connected][0] // false'
}
is_connected() { [ "$(peer_connected "$1")" = true ]; }
hub_has() { "$TRIALSYNC" get --node "$HUB" "$1" "$2" > /dev/null 2>&1; }
site_has() { "$TRIALSYNC" get --node "$WORK/site-$1" "$2" "$3" > /dev/null 2>&1; }
hub_field() { "$TRIALSYNC" get --node "$HUB" "$1" "$2" | jq -c ".fields.$3.value"; }
held_more() { [ "$(peer_stat 101 .batches_held)" -gt "$1" ]; }

# site_ok SITE CONTEXT: a new write at SITE reaches the hub.
declare -A SITE_N=([101]=10 [102]=10)
site_ok() {
    local site=$1 id
    SITE_N[$site]=$((SITE_N[$site] + 1))
    id=$(printf '%s-%04d' "$site" "${SITE_N[$site]}")
    "$TRIALSYNC" put --node "$WORK/site-$site" subject "$id" site="$site" sex=F \
        --user coordinator > /dev/null || fail "$2: put $id at site $site"
    wait_until 10 "$2: site $site's $id reaching the hub" hub_has subject "$id"
    ok "$2: site $site unaffected ($id reached the hub)"
}

# craft SITE TYPE ID [OPTION...] FIELD=VALUE...: ts_evil_peer craft as the
# (stopped) site; output in $WORK/evil.out, exit status in EVIL_RC.
craft() {
    local site=$1
    shift
    EVIL_RC=0
    TS_EVIL_ANSWER_MS=${ANSWER_MS:-15000} timeout 120 "$EVIL" craft "$WORK/site-$site" \
        127.0.0.1 "$HUB_PEER_PORT" "$@" > "$WORK/evil.out" 2>&1 || EVIL_RC=$?
    sed 's/^/    | /' "$WORK/evil.out"
}

# attack MESSAGE RULE TYPE ID [OPTION...] FIELD=VALUE...: site 101 crafts the
# entry; the hub must refuse it naming RULE, count it, apply nothing.
attack() {
    local msg=$1 rule=$2 before n0 b0
    shift 2
    before=$(hub_snapshot)
    n0=$(refused_n "$rule")
    b0=$(peer_stat 101 .batches_refused)
    mark
    craft 101 "$@"
    grep -q '^crafted: 101/' "$WORK/evil.out" || fail "$msg: the tool did not craft the entry"
    [ "$EVIL_RC" = 0 ] || fail "$msg: not refused (ts_evil_peer exited $EVIL_RC): $(grep verdict "$WORK/evil.out")"
    assert_contains "$(grep '^refused:' "$WORK/evil.out")" "refused by rule '$rule'" \
        "$msg: the hub's refusal names rule '$rule'"
    assert_trace "$msg: traced" "peer 101" "refused: batch 101/" "refused by rule '$rule'"
    wait_until 10 "$msg: entries_refused.$rule of peer 101 moving past $n0" \
        test "$(refused_n "$rule")" -gt "$n0"
    ok "$msg: entries_refused.$rule $n0 -> $(refused_n "$rule"), batches_refused $b0 -> $(peer_stat 101 .batches_refused)"
    assert_unchanged "$before" "$msg: nothing applied at the hub"
}

# ---- set-up: a hub, real sites 101 and 102, CRO queries --------------------------

new_trial T-HSITE
start_node hub "$HUB"
HID=$(sed -n 's/^id *= *//p' "$HUB/node.conf" | head -n 1)
[ -n "$HID" ] || fail "no id in the hub's node.conf"
add_site 101
add_site 102
# People: a coordinator at each site, a CRO data manager and a CRO viewer.
add_user crc101 crc --site 101
add_user crc102 crc --site 102
add_user dm1 dm
add_user view viewer
start_node site101 "$WORK/site-101"
start_node site102 "$WORK/site-102"
wait_until 10 "site 101 connected" is_connected 101
wait_until 10 "site 102 connected" is_connected 102
"$TRIALSYNC" put --node "$WORK/site-101" subject 101-0001 site=101 sex=F --user coordinator \
    > /dev/null || fail "put 101-0001"
"$TRIALSYNC" put --node "$WORK/site-101" ae 101-0001-AE-001 aeterm=Headache aesev=MILD aeser=N \
    --user coordinator > "$WORK/put-ae.out" 2>&1 || fail "put the AE: $(cat "$WORK/put-ae.out")"
"$TRIALSYNC" put --node "$WORK/site-102" subject 102-0001 site=102 sex=M --user coordinator \
    > /dev/null || fail "put 102-0001"
wait_until 10 "101-0001 at the hub" hub_has subject 101-0001
wait_until 10 "the AE at the hub" hub_has ae 101-0001-AE-001
wait_until 10 "102-0001 at the hub" hub_has subject 102-0001
Q102="Q-$HID-1"   # about site 102's subject
Q101="Q-$HID-2"   # about site 101's subject
"$TRIALSYNC" put --node "$HUB" query "$Q102" target=subject/102-0001/sex \
    text="Please confirm sex" state=open source=dm --user dm1 > /dev/null || fail "put $Q102"
"$TRIALSYNC" put --node "$HUB" query "$Q101" target=subject/101-0001/sex \
    text="Please confirm sex" state=open source=dm --user dm1 > /dev/null || fail "put $Q101"
"$TRIALSYNC" put --node "$HUB" query "$Q101" messages="CRO: source shows M?" --user dm1 \
    > "$WORK/put-msg.out" || fail "put a message on $Q101"
HUB_MSG_REF="$HID/$(jq -r '.lane == "safety" | if . then 0 else 1 end' "$WORK/put-msg.out")/$(jq -r .seq "$WORK/put-msg.out")"
wait_until 10 "$Q101 reaching site 101" site_has 101 query "$Q101"
wait_until 10 "$Q102 reaching site 102" site_has 102 query "$Q102"
ok "set-up: hub $HID, sites 101 and 102, queries $Q102 (site 102's) and $Q101 (site 101's, CRO message $HUB_MSG_REF)"
# Enrollment slots: a cap of 4, one slot for site 101, which its node
# acknowledges and its subject 101-0002 takes.
"$TRIALSYNC" enrollment cap --node "$HUB" --cap 4 --user dm1 > "$WORK/cap.out" 2>&1 \
    || fail "enrollment cap: $(cat "$WORK/cap.out")"
"$TRIALSYNC" enrollment grant --node "$HUB" --site 101 --slots 1 --user dm1 > "$WORK/grant.out" 2>&1 \
    || fail "enrollment grant: $(cat "$WORK/grant.out")"
site101_slots() { "$TRIALSYNC" status --node "$WORK/site-101" --json | jq '.enrollment.sites[] | select(.site == "101") | .slots'; }
site101_has_slot() { [ "$(site101_slots)" = 1 ]; }
wait_until 10 "site 101 acknowledging its slot" site101_has_slot
"$TRIALSYNC" put --node "$WORK/site-101" subject 101-0002 site=101 sex=M status=enrolled \
    --user coordinator > "$WORK/enrol.out" 2>&1 || fail "enroll 101-0002: $(cat "$WORK/enrol.out")"
hub_enrolled_101() {
    hub_status | jq '.enrollment.sites[] | select(.site == "101") | .enrolled'
}
hub_has_enrolled_101() { [ "$(hub_enrolled_101)" = 1 ]; }
wait_until 10 "101-0002's enrollment at the hub" hub_has_enrolled_101
ok "set-up: cap 4, site 101 holds 1 slot, taken by 101-0002"
# The hostile site is the real site 101's identity and chain: the node stops
# (the tool reads its store), the tool speaks for it.
stop_node site101
ok "site 101 stopped: the tool continues its chain from its store"

# ---- cases ----------------------------------------------------------------------

case_role_target() {  # the query of another site retargeted at one's own record
    attack "site 101 retargeting $Q102 (site 102's) at its own subject" role \
        query "$Q102" target=subject/101-0001/sex
    assert_eq '"subject/102-0001/sex"' "$(hub_field query "$Q102" target)" \
        "retarget: $Q102 still targets 102-0001"
    site_ok 102 "retarget"
}

case_close() {
    attack "site 101 closing the CRO's query $Q101" role query "$Q101" state=closed
    assert_eq '"open"' "$(hub_field query "$Q101" state)" "close: $Q101 still open"
}

case_text() {
    attack "site 101 rewording the CRO's query text" role query "$Q101" \
        text="Never mind, closed by the CRO"
    assert_eq '"Please confirm sex"' "$(hub_field query "$Q101" text)" "text: wording unchanged"
    attack "site 101 writing the round of $Q101 without answering" role query "$Q101" \
        round=2 messages="Site: bumping the round"
    assert_eq '"1"' "$(hub_field query "$Q101" round)" "round: still 1"
}

case_coding() {
    attack "site 101 coding its own AE (MedDRA is the CRO's)" role ae 101-0001-AE-001 \
        aedecod=HACKED-CODING
    assert_eq null "$("$TRIALSYNC" get --node "$HUB" ae 101-0001-AE-001 | jq -c .fields.aedecod.value)" \
        "coding: the AE has no aedecod at the hub"
}

case_unknown_field() {
    attack "site 101 writing an unknown field ssn" field subject 101-0001 ssn=123-45-6789
    assert_eq null "$("$TRIALSYNC" get --node "$HUB" subject 101-0001 | jq -c .fields.ssn)" \
        "unknown field: no ssn at the hub"
}

case_bad_term() {
    attack "site 101 writing status=pwned" value subject 101-0001 status=pwned \
        --reason "correction"
    attack "site 101 writing sex=<img src=x>" value subject 101-0001 "sex=<img src=x>" \
        --reason "correction"
    assert_eq '"F"' "$(hub_field subject 101-0001 sex)" "bad terms: 101-0001's sex still F"
}

case_scope() {
    attack "site 101 writing site 102's subject, scoped to 102" scope subject 102-0001 \
        --site 102 sex=F --reason "correction"
    attack "site 101 writing site 102's subject, scoped to itself" scope subject 102-0001 \
        sex=F --reason "correction"
    assert_eq '"M"' "$(hub_field subject 102-0001 sex)" "scope: 102-0001's sex still M"
    site_ok 102 "scope"
}

case_member() {
    attack "site 101 writing a member record (revoking 102)" role member 102 --site - \
        status=revoked --lane safety --reason "forged"
    assert_eq '"active"' "$(hub_field member 102 status)" "member: site 102 still active"
    site_ok 102 "member"
}

case_supersede() {
    attack "site 101 superseding the CRO's message on $Q101" supersedes query "$Q101" \
        messages="CRO: never mind" --supersedes "$HUB_MSG_REF"
    assert_eq '["CRO: source shows M?"]' "$(hub_field query "$Q101" messages)" \
        "supersede: $Q101's messages unchanged"
    # A write superseding another site's write (site 102's 102-0001, seq 1).
    attack "site 101 superseding a write of site 102" supersedes subject 101-0001 sex=M \
        --reason correction --supersedes 102/1/1
}

case_users() {  # the entry's user: who the site claims acted
    attack "site 101 writing as site 102's coordinator" user subject 101-0001 sex=M \
        --reason correction --user crc102
    attack "site 101 writing as the CRO's data manager" user subject 101-0001 sex=M \
        --reason correction --user dm1
    attack "site 101 writing as a viewer" user subject 101-0001 sex=M --reason correction \
        --user view
    attack "site 101 writing as free text, not a user" user subject 101-0001 sex=M \
        --reason correction --user "Dr. Jane Smith (PI, site 102)"
    attack "site 101 forging an investigator's signature with its integration credential" \
        user signature 101-0001-SIG-001 target=subject/101-0001 meaning=approval \
        name="Dr. Forged" signed_at=2026-11-01T10:00Z \
        versions=0000000000000000000000000000000000000000000000000000000000000000
    assert_eq '"F"' "$(hub_field subject 101-0001 sex)" "users: 101-0001's sex still F"
    # A user the hub does not hold: held back (it may be on its way), not applied.
    local before
    before=$(hub_snapshot)
    ANSWER_MS=6000 craft 101 subject 101-0001 sex=M --reason correction --user ghost
    assert_eq 3 "$EVIL_RC" "users: an unknown user's entry is held back, not acked"
    assert_unchanged "$before" "users: nothing applied for the unknown user"
    site_ok 102 "users"
}

# Enrollment beyond the site's slots, spoken directly over the protocol: the
# hub refuses by rule whatever the site's node would have said.
case_enrollment() {
    attack "site 101 enrolling past its 1 slot" enrollment subject 101-0003 site=101 sex=M \
        status=enrolled slot=Y
    attack "site 101 enrolling without taking a slot" enrollment subject 101-0004 site=101 \
        sex=M status=randomized
    attack "site 101 taking a slot off the bulk lane" enrollment subject 101-0005 site=101 \
        sex=M status=enrolled slot=Y --lane safety
    attack "site 101 acknowledging 50 slots never granted" enrollment quota 101-QUOTA \
        acknowledged=50
    attack "site 101 releasing the slot its subject holds" enrollment quota 101-QUOTA released=1
    attack "site 101 granting itself slots" role quota 101-QUOTA granted=50
    attack "site 101 setting the trial's cap" role enrollment trial cap=100 allocator=101 --site -
    assert_eq 1 "$(hub_enrolled_101)" "enrollment: the hub still counts 1 enrolled at site 101"
    if hub_has subject 101-0003; then fail "enrollment: 101-0003 reached the hub"; fi
    ok "enrollment: no subject past the slots at the hub"
    site_ok 102 "enrollment"
}

# A refused chain is refused on its link alone: over the very link that
# carried the refused batch, a legit entry of the site's other lane is acked.
case_link_goes_on() {
    local n0 d0
    n0=$(refused_n value)
    d0=$(grep -c "disconnected" "$WORK/hub.log" || true)
    mark
    craft 101 subject 101-0001 status=pwned --then-legit
    grep -q '^crafted: 101/1 ' "$WORK/evil.out" || fail "link: the tool did not craft the entry"
    [ "$EVIL_RC" = 0 ] || fail "link: expected a refusal then an ack, ts_evil_peer exited $EVIL_RC: $(grep verdict "$WORK/evil.out")"
    assert_contains "$(grep '^verdict:' "$WORK/evil.out")" "the link carried on" \
        "link: the legit batch on the other lane was acked over the link that carried the refused one"
    assert_trace "link: the hub says the link goes on" "peer 101" "refused by rule 'value'" \
        "the link goes on"
    wait_until 10 "link: entries_refused.value moving past $n0" \
        bash -c "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq -r '.peers[] | select(.id == \"101\") | .entries_refused.value // 0')\" -gt $n0 ]"
    ok "link: the refusal is counted"
    wait_until 10 "link: the legit entry at the hub" hub_has subject 101-9001
    ok "link: the legit entry sent after the refusal was applied"
    # The refusal closed nothing: the one disconnection since the mark is the
    # tool's own close after its verdict, after the legit ack.
    local closes
    closes=$(since_mark | grep -c "disconnected" || true)
    [ "$closes" -le 1 ] || fail "link: the hub closed the link on the refusal ($closes disconnections)"
    since_mark | grep "refused by rule 'value'" | grep -q "disconnected" \
        && fail "link: the hub dropped the link when it refused the chain"
    ok "link: the refusal did not drop the link"
}

# clock_held MESSAGE OPTION...: a legit write stamped ahead is held, not applied.
clock_held() {
    local msg=$1 before h0 r0
    shift
    before=$(hub_snapshot)
    h0=$(peer_stat 101 .batches_held)
    r0=$(peer_stat 101 .batches_refused)
    mark
    ANSWER_MS=6000 craft 101 subject 101-0001 sex=M --reason "correction" "$@"
    grep -q '^crafted: 101/' "$WORK/evil.out" || fail "$msg: the tool did not craft the entry"
    [ "$EVIL_RC" = 3 ] || fail "$msg: expected the batch held back, ts_evil_peer exited $EVIL_RC: $(grep -E '^(ack|refused|held|verdict)' "$WORK/evil.out")"
    ok "$msg: held back, neither acked nor refused: $(grep "^verdict:" "$WORK/evil.out")"
    wait_until 10 "$msg: batches_held of peer 101 moving past $h0" held_more "$h0"
    ok "$msg: batches_held $h0 -> $(peer_stat 101 .batches_held)"
    assert_trace "$msg: traced as held" "peer 101" "held, not yet" "ahead of this node's clock"
    assert_unchanged "$before" "$msg: nothing applied at the hub"
    assert_eq "$r0" "$(peer_stat 101 .batches_refused)" "$msg: held, not counted as refused"
    assert_eq 0 "$(refused_n clock)" "$msg: no entries_refused.clock"
}

case_clock() {
    local now far
    now=$(date +%s%3N)
    clock_held "hlc 2^64-1" --hlc 18446744073709551615
    far=$((now + 10 * 365 * 86400 * 1000))
    clock_held "wall ten years ahead" --wall "$far" --hlc $((now << 16))
    # The hub's own writes after them: sane HLCs, in order.
    "$TRIALSYNC" put --node "$HUB" query "$Q101" messages="CRO: reminder 1" --user dm1 \
        > /dev/null || fail "hub write after the clock attacks"
    "$TRIALSYNC" put --node "$HUB" query "$Q101" messages="CRO: reminder 2" --user dm1 \
        > /dev/null || fail "second hub write after the clock attacks"
    # The HLCs as printed (decimal strings: above 2^53 jq would round numbers); the history's
    # keys are sorted, so "field" is followed by "hlc".
    local hist prev=0 h ms n=0
    hist=$("$TRIALSYNC" history --node "$HUB" query "$Q101" \
        | grep -o '"field":"messages","hlc":"[0-9]*' | sed 's/.*:"//')
    now=$(date +%s%3N)
    for h in $hist; do
        n=$((n + 1))
        [ "${#h}" -le 18 ] || fail "clock: a hub HLC beyond 2^63: $h"
        ms=$((h >> 16))
        [ "$h" -gt "$prev" ] || fail "clock: the hub's message HLCs are not ordered: ${hist//$'\n'/ }"
        if [ "$ms" -gt $((now + 60000)) ] || [ "$ms" -lt $((now - 3600000)) ]; then
            fail "clock: hub HLC $h is at $ms ms, not near now ($now ms)"
        fi
        prev=$h
    done
    assert_eq 3 "$n" "clock: three CRO messages on $Q101"
    ok "clock: the hub's later writes have sane, ordered HLCs: ${hist//$'\n'/ }"
    local times
    times=$("$TRIALSYNC" history --node "$HUB" query "$Q101" \
        | jq -c '[.versions[] | select(.field == "messages") | .event_time]')
    jq -e 'all(.[]; startswith("1970") | not) and . == sort' <<< "$times" > /dev/null \
        || fail "clock: event times not sane: $times"
    ok "clock: and sane event times: $times"
}

# Locks (node/lock.h): the CRO's data manager locks subject 101-0001 while the
# hostile site 101 is stopped.  The lock epoch an entry claims is judged on
# every hop: a locked epoch is refused (rule lock), an epoch the hub does not
# hold is held back, a lock epoch on a record no lock freezes is refused, and
# a lower epoch than the lock (a lie, or an edit that did not see it) is
# taken but quarantined: the displayed value stays the frozen one.
case_lock() {
    TRIALSYNC_TOKEN_FILE="$WORK/trial/users/dm1.token" "$TRIALSYNC" lock --node "$HUB" \
        --subject 101-0001 --reason "interim lock" > "$WORK/lock.out" \
        || fail "lock: dm1 could not lock 101-0001: $(cat "$WORK/lock.out")"
    attack "site 101 writing its locked subject, claiming the lock's epoch" lock \
        subject 101-0001 sex=M --reason correction --lock-epoch 1
    attack "site 101 putting a lock epoch on a query" lock query "$Q101" \
        messages="Site: epoch" --lock-epoch 1
    attack "site 101 forging a lock record" role lock 101-0001-LOCK epoch=2 targets= \
        seen=101:1:1 --reason unlock
    local before
    before=$(hub_snapshot)
    ANSWER_MS=6000 craft 101 subject 101-0001 sex=M --reason correction --lock-epoch 9
    assert_eq 3 "$EVIL_RC" "lock: an entry naming a lock epoch the hub does not hold is held back"
    assert_unchanged "$before" "lock: nothing applied for the unknown epoch"
    craft 101 subject 101-0001 sex=M --reason correction --lock-epoch 0
    [ "$EVIL_RC" = 1 ] || fail "lock: the lower-epoch entry was not acked (exit $EVIL_RC)"
    wait_until 10 "lock: the lower-epoch entry quarantined at the hub" sh -c \
        "'$TRIALSYNC' get --node '$HUB' subject 101-0001 | jq -e '.quarantined | length == 1'"
    assert_eq '"F"' "$(hub_field subject 101-0001 sex)" \
        "lock: a lower epoch (a lie or an unseen edit) is quarantined; sex still F"
    TRIALSYNC_TOKEN_FILE="$WORK/trial/users/dm1.token" "$TRIALSYNC" unlock --node "$HUB" \
        --subject 101-0001 --reason "done" > /dev/null || fail "lock: unlock"
    site_ok 102 "lock"
}

# After the attacks: the real site 101 restarts and its real chain goes on.
case_restart() {
    start_node site101 "$WORK/site-101"
    wait_until 10 "site 101 reconnected" is_connected 101
    site_ok 101 "restarted real site 101"
    # The CRO's follow-up on site 102's query: never to site 101, proven after a
    # CRO query on a 101 subject that does reach it.
    "$TRIALSYNC" put --node "$HUB" query "$Q102" messages="CRO: follow-up for site 102" \
        --user dm1 > /dev/null || fail "follow-up on $Q102"
    local q3="Q-$HID-3"
    "$TRIALSYNC" put --node "$HUB" query "$q3" target=subject/101-0001/sex \
        text="Marker" state=open source=dm --user dm1 > /dev/null || fail "put $q3"
    wait_until 10 "$q3 (the marker) reaching site 101" site_has 101 query "$q3"
    wait_until 10 "the follow-up reaching site 102" sh -c \
        "'$TRIALSYNC' get --node '$WORK/site-102' query '$Q102' | jq -e '.fields.messages.value | index(\"CRO: follow-up for site 102\")'"
    if site_has 101 query "$Q102"; then
        fail "site 102's query $Q102 (with its follow-up) reached site 101"
    fi
    ok "follow-up on $Q102: at site 102, never at site 101 (marker $q3 arrived there)"
    assert_eq '"open"' "$(hub_field query "$Q101" state)" "after restart: $Q101 still open"
}

# The positive control: site 102 answers the query about its own subject.
case_answer() {
    stop_node site102
    local before_e
    before_e=$(hub_status | jq .entries)
    mark
    craft 102 query "$Q102" messages="Site: confirmed M per source" state=answered round=1
    [ "$EVIL_RC" = 1 ] || fail "legit answer: not acked (ts_evil_peer exited $EVIL_RC): $(grep -E '^(refused|verdict)' "$WORK/evil.out")"
    ok "legit answer by site 102 acked: $(grep '^ack: 102/' "$WORK/evil.out" | head -n 1)"
    assert_eq '"answered"' "$(hub_field query "$Q102" state)" "legit answer: $Q102 answered at the hub"
    assert_contains "$(hub_field query "$Q102" messages)" "Site: confirmed M per source" \
        "legit answer: the message is at the hub"
    assert_eq $((before_e + 1)) "$(hub_status | jq .entries)" "legit answer: one entry more at the hub"
    site_ok 101 "legit answer"
    # Site 102's store lacks the entry the tool wrote in its name: restarted,
    # it gets it back from the hub and its chain goes on after it.
    start_node site102 "$WORK/site-102"
    wait_until 10 "site 102 reconnected" is_connected 102
    wait_until 10 "the crafted answer reaching site 102's own store" sh -c \
        "'$TRIALSYNC' get --node '$WORK/site-102' query '$Q102' | jq -e '.fields.state.value == \"answered\"'"
    ok "site 102 holds the answer made in its name"
    site_ok 102 "after the legit answer"
}

ALL_CASES="role_target close text coding unknown_field bad_term scope member supersede users enrollment clock
link_goes_on lock restart answer"
for c in ${HOSTILE_SITE_CASES:-$ALL_CASES}; do
    declare -F "case_$c" > /dev/null || fail "no such case: $c (cases: $(echo $ALL_CASES))"
    echo "# case $c"
    "case_$c"
done

stop_node hub
ok "the hub stops cleanly after the hostile site"
for n in site101 site102; do
    if [ -n "${NODE_PIDS[$n]:-}" ]; then stop_node "$n"; fi
done
if grep -E "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$WORK"/*.log \
    > "$WORK/san.out"; then
    fail "sanitizer reports in the nodes' traces: $(head -n 5 "$WORK/san.out")"
fi
ok "no sanitizer report in the nodes' traces"
done_checks
