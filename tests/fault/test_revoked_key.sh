#!/usr/bin/env bash
# The revoked-key rule (peer.c entry_check_cb, rule 'revoked'): a batch
# signed with a certificate the CRL in force revokes has its entries stamped
# after the revocation date refused, while those stamped before it stay valid
# (DESIGN.md §6).
#
# A revoked site cannot even finish a TLS handshake with a node that holds the
# new CRL, so the rule is met on a relay: hub2 is stopped while site 101 is
# revoked at hub1, then comes back with its link to hub1 cut, still on the old
# CRL.  Site 101 (stopped; ts_evil_peer craft continues its real chain with
# its real key) sends hub2 one entry back-dated before the revocation and one
# stamped now; hub2, not knowing yet, acks both.  Once hub2's link to hub1 is
# back, hub2 relays them and hub1 must apply the earlier one and refuse the
# later one with rule 'revoked'.  The two entries go on different lanes
# (chains): craft continues the site's store head, which the tool never
# advances, and a refusal refuses the whole batch of its chain.
. "$(dirname "$0")/../integration/lib.sh"

need_cmd jq jq
need_cmd openssl openssl
EVIL="$TS_BIN/tests/ts_evil_peer"
[ -x "$EVIL" ] || fail "$EVIL is missing: build the tests/tools targets"

crl_number() { openssl crl -in "$1" -noout -crlnumber 2>/dev/null | cut -d= -f2; }
has() { "$TRIALSYNC" get --node "$1" "$2" "$3" > /dev/null 2>&1; }
peer_stat() {  # NODEDIR PEER JQ
    "$TRIALSYNC" status --node "$1" --json | jq -r --arg id "$2" "[.peers[] | select(.id == \$id) | $3][0] // 0"
}

new_trial T-REVKEY
start_node hub1 "$HUB"
HUB2="$WORK/hub2"
HUB2_PEER_PORT=$(free_port)
"$TRIALSYNC" hub add hub2 --dir "$WORK/trial" --out "$HUB2" --peer-port "$HUB2_PEER_PORT" \
    --api-port "$(free_port)" > "$WORK/hub-add.out" || fail "hub add"
start_node hub2 "$HUB2"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"
"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
wait_until 20 "101-0001 at hub1" has "$HUB" subject 101-0001
wait_until 20 "101-0001 at hub2" has "$HUB2" subject 101-0001
ok "site 101's first entry reached both hubs"
stop_node s101
stop_node hub2
OLD_CRL=$(crl_number "$HUB2/crl.pem")

# The revocation's date is in whole seconds: a second's gap keeps the
# back-dated entry after the site's earlier ones and its certificate's start.
sleep 1
out=$("$TRIALSYNC" site revoke 101 --dir "$WORK/trial" --reason "key compromised" 2>&1) \
    || fail "site revoke: $out"
assert_contains "$out" "recorded at hub" "site 101 revoked, the CRL recorded at hub1"
NEW_CRL=$(crl_number "$WORK/trial/ca/crl.pem")
hub1_has_crl() { [ "$(crl_number "$HUB/crl.pem")" = "$NEW_CRL" ]; }
wait_until 20 "hub1 has CRL $NEW_CRL" hub1_has_crl
REV_DATE=$(openssl crl -in "$WORK/trial/ca/crl.pem" -noout -text | sed -n 's/^ *Revocation Date: //p' | head -n 1)
REV_S=$(date -u -d "$REV_DATE" +%s) || fail "cannot read the revocation date '$REV_DATE'"
REV_MS=$((REV_S * 1000))
ok "CRL $NEW_CRL in force at hub1: site 101 revoked at $REV_DATE ($REV_S s)"

# hub2 returns on the old CRL, its link to hub1 pointed at a dead port.
cp "$HUB2/node.conf" "$WORK/hub2.conf.linked"
sed -i "s/^hub = 127.0.0.1:$HUB_PEER_PORT\$/hub = 127.0.0.1:$(free_port)/" "$HUB2/node.conf"
grep -q "^hub = 127.0.0.1:$HUB_PEER_PORT" "$HUB2/node.conf" && fail "hub2 still lists hub1"
start_node hub2 "$HUB2"
assert_eq "$OLD_CRL" "$(crl_number "$HUB2/crl.pem")" "hub2 is still on the old CRL"

craft() {  # NAME ARGS...: exit status of ts_evil_peer craft against hub2, output in NAME.out
    local name=$1 rc=0
    shift
    TS_EVIL_ANSWER_MS=20000 "$EVIL" craft "$S1" 127.0.0.1 "$HUB2_PEER_PORT" "$@" \
        > "$WORK/$name.out" 2>&1 || rc=$?
    return "$rc"
}
PRE_MS=$((REV_MS - 1))
rc=0; craft pre subject 101-0002 --lane safety --wall "$PRE_MS" site=101 sex=M || rc=$?
[ "$rc" = 1 ] || fail "hub2 did not ack the back-dated entry (exit $rc): $(tail -n 3 "$WORK/pre.out")"
rc=0; craft post subject 101-0003 site=101 sex=F || rc=$?
[ "$rc" = 1 ] || fail "hub2 did not ack the post-revocation entry (exit $rc): $(tail -n 3 "$WORK/post.out")"
POST_MS=$(sed -n 's/^crafted: .* wall \([0-9]*\) .*/\1/p' "$WORK/post.out" | head -n 1)
[ -n "$POST_MS" ] && [ "$POST_MS" -gt "$REV_MS" ] || fail "the post entry is not stamped after $REV_MS: '$POST_MS'"
has "$HUB2" subject 101-0002 || fail "hub2 does not show 101-0002"
has "$HUB2" subject 101-0003 || fail "hub2 does not show 101-0003"
ok "hub2 (old CRL) acked 101's entries stamped $PRE_MS (before) and $POST_MS (after the revocation)"

# The link comes back: hub2 relays 101's two chains to hub1.
stop_node hub2
cp "$WORK/hub2.conf.linked" "$HUB2/node.conf"
L1=$(log_lines "$WORK/hub1.log")
start_node hub2 "$HUB2"
wait_until 30 "hub1 applies the back-dated entry relayed by hub2" has "$HUB" subject 101-0002
ok "hub1 applied 101/safety 101-0002 stamped before the revocation, relayed by hub2"
refused_revoked() { [ "$(peer_stat "$HUB" hub2 '.entries_refused.revoked // 0')" -ge 1 ]; }
wait_until 30 "hub1 counts a 'revoked' refusal for peer hub2" refused_revoked
line=$(since_line "$WORK/hub1.log" "$L1" | grep -F "refused by rule 'revoked'" | head -n 1)
[ -n "$line" ] || fail "hub1 traced no refusal by rule 'revoked'"
assert_contains "$line" "101/bulk/" "hub1 traced the refusal of 101's bulk chain"
ok "hub1 trace: $(printf '%s' "$line" | cut -c1-300)"
has "$HUB" subject 101-0003 && fail "hub1 applied 101-0003, stamped after 101's revocation"
ok "hub1 holds nothing of 101-0003 (after the refusal was counted)"
assert_eq 0 "$(peer_stat "$HUB" hub2 '[.entries_refused | to_entries[] | select(.key != "revoked") | .value] | add // 0')" \
    "no other rule refused anything from hub2"
hub2_has_crl() { [ "$(crl_number "$HUB2/crl.pem")" = "$NEW_CRL" ]; }
wait_until 20 "hub2 receives CRL $NEW_CRL" hub2_has_crl
ok "hub2 put CRL $NEW_CRL in force by replication"

stop_node hub2
stop_node hub1
"$TRIALSYNC" verify --node "$HUB" > "$WORK/verify-hub1.out" 2>&1 \
    || fail "hub1 does not verify: $(tail -n 3 "$WORK/verify-hub1.out")"
ok "hub1 verifies (101's back-dated entry included)"
if "$TRIALSYNC" verify --node "$HUB2" > "$WORK/verify-hub2.out" 2>&1; then
    fail "hub2 verifies although it holds 101-0003, signed after the revocation"
fi
assert_contains "$(cat "$WORK/verify-hub2.out")" "revoked at" \
    "trialsync verify at hub2 names the post-revocation entry"
done_checks
