#!/usr/bin/env bash
# Hostile peers against a hub (TARGETS.md, "hostile peers"): no certificate,
# another trial's CA, self-signed, expired, revoked, the wrong role, a site
# sending another site's entries or records, tampered, badly signed, replayed
# and forked batches, oversized and malformed frames, a forged membership
# entry, hundreds of stalled connections.  Each must be refused with a clear
# reason in the hub's trace naming the peer; nothing of it may be applied;
# a real site (101) keeps replicating throughout.  A revoked site that knows
# it refuses local writes and stops dialing (docs/workflows.md).
#
# HOSTILE_CASES="tampered fork ..." runs only those cases (after the set-up);
# HOSTILE_STALL_N sets the number of stalled connections (default 200).
. "$(dirname "$0")/../integration/lib.sh"

EVIL="$TS_BIN/tests/ts_evil_peer"
[ -x "$EVIL" ] || fail "$EVIL is missing: build the tests/tools targets"
need_cmd openssl openssl
need_cmd faketime faketime

STALL_PID=
stop_stall() {
    if [ -n "$STALL_PID" ]; then kill "$STALL_PID" 2> /dev/null || true; fi
    cleanup
}
trap stop_stall EXIT

# ---- helpers -------------------------------------------------------------------

# mark: remembers where the hub's trace ends; since_mark prints what came after.
mark() { MARK=$(wc -l < "$WORK/hub.log"); }
since_mark() { tail -n +$((MARK + 1)) "$WORK/hub.log"; }

# trace_has TEXT... : every TEXT is in one trace line written since the mark.
trace_line() {
    local line
    line=$(since_mark | grep -F -- "$1")
    shift
    for t in "$@"; do line=$(printf '%s\n' "$line" | grep -F -- "$t"); done
    printf '%s\n' "$line" | head -n 1
}
assert_trace() {  # MESSAGE TEXT...: a trace line since the mark holds every TEXT
    local msg=$1
    shift
    local line
    line=$(trace_line "$@")
    [ -n "$line" ] || fail "$msg: no hub trace line with [$*] since the mark; the trace said:
$(since_mark | tail -n 15)"
    ok "$msg: $(printf '%s' "$line" | cut -c1-220)"
}

# What the hub holds, for 'nothing applied': state digest, entry and record
# counts and the version vector.
hub_snapshot() {
    local st
    st=$("$TRIALSYNC" status --node "$HUB" --json) || fail "hub status"
    printf '%s %s\n' "$(digest "$HUB")" \
        "$(jq -c '{entries, records, version_vector}' <<< "$st")"
}
assert_unchanged() {  # BEFORE MESSAGE
    local after
    after=$(hub_snapshot)
    [ "$1" = "$after" ] || fail "$2: the hub's state changed:
before: $1
after:  $after"
    ok "$2"
}

peer_connected() {  # ID: prints true/false (false when unknown)
    "$TRIALSYNC" status --node "$HUB" --json \
        | jq -r --arg id "$1" '[.peers[] | select(.id == $id) | .connected][0] // false'
}
is_connected() { [ "$(peer_connected "$1")" = true ]; }
is_disconnected() { [ "$(peer_connected "$1")" = false ]; }
hub_has() { "$TRIALSYNC" get --node "$HUB" "$1" "$2" > /dev/null 2>&1; }

# real_site_ok CONTEXT: a new write at site 101 reaches the hub.
REAL_N=0
real_site_ok() {
    REAL_N=$((REAL_N + 1))
    local id
    id=$(printf '101-%04d' "$REAL_N")
    "$TRIALSYNC" put --node "$WORK/site-101" subject "$id" site=101 sex=F \
        --user coordinator > /dev/null || fail "$1: put $id at site 101"
    wait_until 10 "$1: site 101's $id reaching the hub" hub_has subject "$id"
    ok "$1: site 101 unaffected ($id reached the hub)"
}

# evil MODE SITEDIR [ARG...]: runs the hostile peer; output in $WORK/evil.out,
# exit status in EVIL_RC.
evil() {
    local mode=$1 dir=$2
    shift 2
    EVIL_RC=0
    timeout 60 "$EVIL" "$mode" "$dir" 127.0.0.1 "$HUB_PEER_PORT" "$@" > "$WORK/evil.out" 2>&1 \
        || EVIL_RC=$?
    sed 's/^/    | /' "$WORK/evil.out"
}
assert_refused() {  # MESSAGE: the hostile peer saw the hub refuse or close
    [ "$EVIL_RC" = 0 ] || fail "$1: ts_evil_peer exited $EVIL_RC: $(grep verdict "$WORK/evil.out")"
    ok "$1: $(grep '^verdict:' "$WORK/evil.out" | cut -c1-200)"
}

# s_client_try OUT ARGS...: a TLS 1.3 client that keeps reading after its
# input ends (-ign_eof) until the hub closes, so it reads the hub's alert
# however long that takes; returns openssl's status (124 if the hub never
# closed within 60 s).
s_client_try() {
    local out=$1
    shift
    timeout 60 openssl s_client -connect "127.0.0.1:$HUB_PEER_PORT" -tls1_3 \
        -CAfile "$WORK/trial/ca/ca.crt" -brief -ign_eof "$@" < /dev/null > "$out" 2>&1
}
assert_handshake_refused() {  # MESSAGE OUT RC
    [ "$3" != 0 ] || fail "$1: openssl s_client succeeded: $(tail -n 5 "$2")"
    local alert
    alert=$(grep -o 'alert [a-z ]*' "$2" | head -n 1)
    [ -n "$alert" ] || fail "$1: no TLS alert from the hub: $(tail -n 5 "$2")"
    ok "$1: the client got '$alert'"
}

# ---- set-up: a hub, a real site 101 -------------------------------------------

new_trial T-HOSTILE
start_node hub "$HUB"
add_site 101
start_node site101 "$WORK/site-101"
wait_until 10 "site 101 connected to the hub" is_connected 101
real_site_ok "set-up"
# Identities for the hostile peers, issued while the hub runs (membership).
for s in 110 111 112 113 114 115 116 117; do add_site "$s"; done
ok "hostile identities issued (sites 110-117)"

# ---- cases ----------------------------------------------------------------------

case_no_cert() {
    local before rc=0
    before=$(hub_snapshot)
    mark
    s_client_try "$WORK/sc.out" || rc=$?
    assert_handshake_refused "no client certificate" "$WORK/sc.out" "$rc"
    assert_trace "no client certificate: traced" "connection 127.0.0.1:" "refused" \
        "did not return a certificate"
    assert_unchanged "$before" "no client certificate: nothing applied"
    real_site_ok "no client certificate"
}

case_other_trial() {
    "$TRIALSYNC" init --trial T-OTHER --dir "$WORK/other" --peer-port "$(free_port)" \
        --api-port "$(free_port)" > /dev/null || fail "init of another trial"
    local before rc=0
    before=$(hub_snapshot)
    mark
    s_client_try "$WORK/sc.out" -cert "$WORK/other/hub/node.crt" \
        -key "$WORK/other/hub/node.key" || rc=$?
    assert_handshake_refused "another trial's CA" "$WORK/sc.out" "$rc"
    assert_trace "another trial's CA: traced" "connection 127.0.0.1:" "refused" \
        "certificate verify failed"
    assert_unchanged "$before" "another trial's CA: nothing applied"
    real_site_ok "another trial's CA"
}

case_self_signed() {
    openssl req -x509 -newkey ed25519 -nodes -days 30 -keyout "$WORK/self.key" \
        -out "$WORK/self.crt" -subj "/CN=999" \
        -addext "subjectAltName=URI:trialsync://T-HOSTILE/site/999" > /dev/null 2>&1 \
        || fail "openssl req: a self-signed certificate"
    local before rc=0
    before=$(hub_snapshot)
    mark
    s_client_try "$WORK/sc.out" -cert "$WORK/self.crt" -key "$WORK/self.key" || rc=$?
    assert_handshake_refused "self-signed certificate" "$WORK/sc.out" "$rc"
    assert_trace "self-signed certificate: traced" "connection 127.0.0.1:" "refused" \
        "self-signed certificate"
    assert_unchanged "$before" "self-signed certificate: nothing applied"
    real_site_ok "self-signed certificate"
}

case_expired() {
    # The default validity is 825 days: issued 3 years ago, expired since.
    # (libfaketime is an LD_PRELOAD: under ASan the runtime's link-order check
    # must be relaxed for this one CLI call.)
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
        faketime '-3 years' "$TRIALSYNC" site add 199 --dir "$WORK/trial" --out "$WORK/site-199" \
        --api-port "$(free_port)" > "$WORK/site-add-199.out" 2>&1 \
        || fail "faketime site add 199: $(cat "$WORK/site-add-199.out")"
    if openssl x509 -in "$WORK/site-199/node.crt" -noout -checkend 0 > /dev/null; then
        fail "site 199's certificate is not expired: $(openssl x509 -in "$WORK/site-199/node.crt" -noout -enddate)"
    fi
    ok "expired certificate issued ($(openssl x509 -in "$WORK/site-199/node.crt" -noout -enddate))"
    local before rc=0
    before=$(hub_snapshot)
    mark
    s_client_try "$WORK/sc.out" -cert "$WORK/site-199/node.crt" -key "$WORK/site-199/node.key" \
        || rc=$?
    assert_handshake_refused "expired certificate" "$WORK/sc.out" "$rc"
    assert_trace "expired certificate: traced" "connection 127.0.0.1:" "refused" \
        "certificate has expired"
    assert_unchanged "$before" "expired certificate: nothing applied"
    real_site_ok "expired certificate"
}

case_wrong_role() {
    local before
    before=$(hub_snapshot)
    mark
    evil valid "$WORK/trial/admin"
    assert_refused "admin identity as a peer"
    if grep -q '^hello:' "$WORK/evil.out"; then fail "the hub said hello to the admin identity"; fi
    ok "admin identity as a peer: the hub never said hello"
    assert_trace "admin identity as a peer: traced" "peer admin" "refused" "role admin"
    assert_unchanged "$before" "admin identity as a peer: nothing applied"
    real_site_ok "admin identity as a peer"
}

case_other_origin() {
    local before
    before=$(hub_snapshot)
    mark
    evil other-origin "$WORK/site-110" 101
    assert_refused "site 110 sending origin 101's entries"
    assert_trace "origin 101's entries from site 110: traced" "peer 110" "refused" \
        "entries of origin 101"
    assert_unchanged "$before" "origin 101's entries from site 110: nothing applied"
    real_site_ok "origin 101's entries from site 110"
}

case_tampered() {
    local before
    before=$(hub_snapshot)
    mark
    evil tampered "$WORK/site-111"
    assert_refused "tampered batch"
    assert_trace "tampered batch: traced" "peer 111" "refused" "chain"
    assert_unchanged "$before" "tampered batch: nothing applied"
    if hub_has subject 111-0001; then fail "a record of the tampered batch is at the hub"; fi
    ok "tampered batch: none of its records at the hub"
    real_site_ok "tampered batch"
}

case_bad_signature() {
    local before
    before=$(hub_snapshot)
    mark
    evil bad-signature "$WORK/site-112"
    assert_refused "badly signed batch"
    assert_trace "badly signed batch: traced" "peer 112" "refused" "signature"
    assert_unchanged "$before" "badly signed batch: nothing applied"
    real_site_ok "badly signed batch"
}

case_replay() {
    local before entries0 wall n
    entries0=$("$TRIALSYNC" status --node "$HUB" --json | json .entries)
    wall=$(date +%s%3N)
    mark
    TS_EVIL_WALL_MS=$wall evil replay "$WORK/site-113"
    assert_refused "replayed batch acked as duplicates"
    assert_eq $((entries0 + 3)) "$("$TRIALSYNC" status --node "$HUB" --json | json .entries)" \
        "replayed batch: its 3 entries held once"
    for n in 1 2 3; do
        assert_eq 1 "$("$TRIALSYNC" history --node "$HUB" subject "113-000$n" \
            | jq '[.versions[] | select(.field == "sex")] | length')" \
            "replayed batch: subject 113-000$n has one version of sex"
    done
    # The same bytes again on a new connection: still nothing new.
    before=$(hub_snapshot)
    TS_EVIL_WALL_MS=$wall evil replay "$WORK/site-113"
    assert_refused "batch replayed on a new connection acked as duplicates"
    assert_unchanged "$before" "batch replayed on a new connection: nothing applied twice"
    real_site_ok "replayed batch"
}

case_fork() {
    local entries0
    entries0=$("$TRIALSYNC" status --node "$HUB" --json | json .entries)
    mark
    evil fork "$WORK/site-114"
    assert_refused "forking batch"
    assert_contains "$(grep '^refused:' "$WORK/evil.out")" "fork" "forking batch: the refusal says fork"
    assert_trace "forking batch: traced as a fork" "FORK" "origin 114" "quarantined"
    assert_trace "forking batch: peer refused in the trace" "peer 114" "refused" "fork"
    assert_eq $((entries0 + 3)) "$("$TRIALSYNC" status --node "$HUB" --json | json .entries)" \
        "forking batch: only the 3 entries before the fork held"
    assert_eq F "$("$TRIALSYNC" get --node "$HUB" subject 114-0002 | json .fields.sex.value)" \
        "forking batch: the held entry 2 stands"
    assert_eq false "$("$TRIALSYNC" get --node "$HUB" subject 114-0002 | json .fields.sex.conflict)" \
        "forking batch: no conflict from the fork"
    # Quarantined: nothing more of origin 114 is taken, even a duplicate.
    local before
    before=$(hub_snapshot)
    mark
    evil valid "$WORK/site-114"
    assert_refused "quarantined origin"
    assert_trace "quarantined origin: traced" "peer 114" "refused" "quarantined"
    assert_unchanged "$before" "quarantined origin: nothing applied"
    real_site_ok "forking batch"
}

case_oversized() {
    local before
    before=$(hub_snapshot)
    mark
    evil oversized "$WORK/site-115"
    assert_refused "64 MiB length prefix"
    assert_contains "$(grep '^sent:' "$WORK/evil.out")" "67108864" "64 MiB length prefix was sent"
    assert_trace "64 MiB length prefix: traced" "peer 115" "67108864 bytes is above the limit"
    assert_unchanged "$before" "64 MiB length prefix: nothing applied"
    kill -0 "${NODE_PIDS[hub]}" || fail "the hub died"
    real_site_ok "64 MiB length prefix"
}

case_malformed() {
    local before
    before=$(hub_snapshot)
    mark
    evil malformed "$WORK/site-116"
    assert_refused "garbage frame"
    assert_contains "$(grep '^refused:' "$WORK/evil.out")" "malformed" \
        "garbage frame: the refusal gives a reason"
    assert_trace "garbage frame: traced" "peer 116" "refused" "malformed frame"
    assert_unchanged "$before" "garbage frame: nothing applied"
    real_site_ok "garbage frame"
}

case_revoked() {
    add_site 102
    start_node site102 "$WORK/site-102"
    wait_until 10 "site 102 connected to the hub" is_connected 102
    "$TRIALSYNC" put --node "$WORK/site-102" subject 102-0001 site=102 sex=M \
        --user coordinator > /dev/null || fail "put at site 102"
    wait_until 10 "site 102's 102-0001 reaching the hub" hub_has subject 102-0001
    ok "site 102 connected and replicating"
    mark
    "$TRIALSYNC" site revoke 102 --dir "$WORK/trial" --reason "test" > "$WORK/revoke.out" 2>&1 \
        || fail "site revoke 102: $(cat "$WORK/revoke.out")"
    local t0=$SECONDS
    wait_until 5 "the hub cutting off revoked site 102" is_disconnected 102
    ok "revoked site 102 disconnected by the hub within $((SECONDS - t0 + 1)) s"
    assert_trace "revoked site 102: traced" "102" "revoked"
    # It knows it was revoked (its member record reached it before the cut,
    # docs/workflows.md): it refuses local writes, and restarted it does not
    # dial the hub again.
    wait_until 10 "site 102 knowing it was revoked" bash -c \
        "'$TRIALSYNC' status --node '$WORK/site-102' --json | jq -e '.revoked | type == \"string\"'"
    ok "site 102 knows it was revoked"
    local before
    before=$(hub_snapshot)
    kill_node site102
    mark
    start_node site102 "$WORK/site-102"
    if "$TRIALSYNC" put --node "$WORK/site-102" subject 102-0002 site=102 sex=F \
        --user coordinator > "$WORK/put-102.out" 2>&1; then
        fail "a write at revoked site 102 was accepted"
    fi
    assert_contains "$(cat "$WORK/put-102.out")" "this site was revoked on" \
        "restarted revoked site 102 refuses local writes, saying why"
    assert_unchanged "$before" "revoked site 102: nothing applied after the revocation"
    # Positive marker: a real site's write reaches the hub, then a span of
    # more than twice the longest reconnect backoff (3 s) in which a dialing
    # loop would have been refused at least twice.
    real_site_ok "revoked site 102 restarted"
    sleep 7
    if since_mark | grep -q "connection 127.0.0.1:[0-9]* refused"; then
        fail "restarted revoked site 102 dialed the hub: $(since_mark | grep 'refused' | head -n 1)"
    fi
    ok "restarted revoked site 102 does not dial the hub"
    if since_mark | grep -q "peer 102 (site, .*): connected"; then
        fail "revoked site 102 reconnected after a restart: $(since_mark | grep 'peer 102 (site' | head -n 1)"
    fi
    assert_eq false "$(peer_connected 102)" "restarted revoked site 102 stays disconnected"
    if hub_has subject 102-0002; then fail "a write of revoked site 102 reached the hub"; fi
    ok "revoked site 102's refused write is not at the hub"
    kill_node site102
    assert_eq M "$("$TRIALSYNC" get --node "$HUB" subject 102-0001 | json .fields.sex.value)" \
        "entries site 102 wrote before its revocation are still at the hub"
    real_site_ok "revoked site"
}

case_stall() {
    # hold only bounds the tool: the hub must close every silent connection
    # (at its ClientHello deadline, 3 s, or sooner when too many wait for a
    # slot) well before it.  A sustained flood, renewed as the hub closes it,
    # is tests/fault/test_peer_slots.sh.
    local n=${HOSTILE_STALL_N:-200} hold=60
    mark
    "$EVIL" stall "$WORK/site-101" 127.0.0.1 "$HUB_PEER_PORT" "$n" "$hold" 127.0.0.2 \
        > "$WORK/stall.out" 2>&1 &
    STALL_PID=$!
    wait_until 10 "the stalled connections opened" grep -q "^stall: holding" "$WORK/stall.out"
    ok "$(grep '^stall: holding' "$WORK/stall.out")"
    real_site_ok "during the stall (established link)"
    # A real site connecting now, after the silent connections came.
    stop_node site101
    start_node site101 "$WORK/site-101"
    local t1=$SECONDS
    wait_until 5 "site 101 reconnecting after $n silent connections" is_connected 101
    ok "site 101 reconnected within $((SECONDS - t1 + 1)) s"
    real_site_ok "during the stall (new link)"
    wait "$STALL_PID" || fail "the hub did not close every stalled connection: $(cat "$WORK/stall.out")"
    STALL_PID=
    ok "$(grep '^stall: [0-9]' "$WORK/stall.out")"
    assert_trace "stalled connections: traced" "connection 127.0.0.2:" "no ClientHello within"
    kill -0 "${NODE_PIDS[hub]}" || fail "the hub died"
    real_site_ok "after the stall"
}

case_other_scope() {
    local before
    before=$(hub_snapshot)
    mark
    evil other-scope "$WORK/site-117" 101
    assert_refused "site 117 writing site 101's subject 101-0001 in its own chain"
    assert_trace "another site's record: traced" "peer 117" "refused" "101"
    assert_unchanged "$before" "another site's record: nothing applied"
    assert_eq false "$("$TRIALSYNC" get --node "$HUB" subject 101-0001 | json .fields.sex.conflict)" \
        "another site's record: 101-0001 untouched at the hub"
    real_site_ok "another site's record"
}

case_forge_member() {
    add_site 118
    local before
    before=$(hub_snapshot)
    mark
    evil forge-member "$WORK/site-118" 101
    assert_refused "site 118 sending a membership entry revoking site 101"
    assert_trace "forged membership entry: traced" "peer 118" "refused" "member"
    assert_unchanged "$before" "forged membership entry: nothing applied"
    assert_eq active "$("$TRIALSYNC" get --node "$HUB" member 101 | json .fields.status.value)" \
        "forged membership entry: site 101 still active"
    # The marker first: a write at site 101 after the forged entry arrives;
    # then its link is the one it had (never dropped since the mark).
    real_site_ok "forged membership entry"
    if since_mark | grep -q "peer 101: disconnected"; then
        fail "forged membership entry: site 101 was cut off: $(since_mark | grep 'peer 101: disconnected')"
    fi
    assert_eq true "$(peer_connected 101)" "forged membership entry: site 101 still connected, never dropped"
}

ALL_CASES="no_cert other_trial self_signed expired wrong_role other_origin tampered bad_signature
replay fork oversized malformed revoked other_scope forge_member stall"
for c in ${HOSTILE_CASES:-$ALL_CASES}; do
    c=${c//-/_}
    declare -F "case_$c" > /dev/null || fail "no such case: $c (cases: $(echo $ALL_CASES))"
    echo "# case $c"
    "case_$c"
done

stop_node hub
ok "the hub stops cleanly after every hostile peer"
if [ -n "${NODE_PIDS[site101]:-}" ]; then stop_node site101; fi
# Under ASan+UBSan (TS_SANITIZE=ON) reports go to the nodes' stderr, i.e. their traces.
if grep -E "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$WORK"/*.log \
    > "$WORK/san.out"; then
    fail "sanitizer reports in the nodes' traces: $(head -n 5 "$WORK/san.out")"
fi
ok "no sanitizer report in the nodes' traces"
done_checks
