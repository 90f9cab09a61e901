#!/usr/bin/env bash
# A revoked site knows it (docs/workflows.md): once its own revocation reaches
# it (its member record by replication, or a revocation list in force naming
# its certificate), it refuses writes with 403 and the date and reason, says
# so in `trialsync status`, /healthz and once in its trace at error priority,
# and stops dialing its hubs.  Reads still work.
#   site 101: connected when revoked: learns from its member record;
#   site 102: offline when revoked, then started with the CA's list as its
#             CRL file: learns from the list, never dials the hub.
. "$(dirname "$0")/../integration/lib.sh"

need_cmd curl curl

hub_and_two_sites T-REVSITE
"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
"$TRIALSYNC" put --node "$S2" subject 102-0001 site=102 sex=M status=screening > /dev/null || fail put
wait_until 20 "101-0001 at the hub" "$TRIALSYNC" get --node "$HUB" subject 101-0001
wait_until 20 "102-0001 at the hub" "$TRIALSYNC" get --node "$HUB" subject 102-0001
api_port() { sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$1/node.conf" | head -n 1; }
post() {  # NODEDIR PATH BODY: prints the HTTP code, the body in $WORK/post.out
    curl -s -o "$WORK/post.out" -w '%{http_code}' -H "Authorization: Bearer $(cat "$1/api.token")" \
        -d "$3" "http://127.0.0.1:$(api_port "$1")$2"
}
healthz() { curl -s "http://127.0.0.1:$(api_port "$1")/healthz"; }
revoked() { "$TRIALSYNC" status --node "$1" --json | jq -e '.revoked | type == "string"'; }
assert_eq ok "$(healthz "$S1" | jq -r .status)" "site 101's /healthz is ok before"
assert_eq null "$("$TRIALSYNC" status --node "$S1" --json | jq -c .revoked)" "site 101 is not revoked before"

# ---- site 101: revoked while connected
stop_node s102
S1_AT=$(log_lines "$WORK/s101.log")
out=$("$TRIALSYNC" site revoke 101 --dir "$WORK/trial" --reason "repeated protocol violations" 2>&1) \
    || fail "site revoke 101: $out"
wait_until 20 "site 101 learns of its revocation" revoked "$S1"
why=$("$TRIALSYNC" status --node "$S1" --json | jq -r .revoked)
assert_contains "$why" "this site was revoked on 20" "the status says when"
assert_contains "$why" "repeated protocol violations" "the status says why (the revocation's reason)"
assert_contains "$("$TRIALSYNC" status --node "$S1")" "REVOKED: this site was revoked on" \
    "trialsync status prints it first"
rc=0; check=$("$TRIALSYNC" status --node "$S1" --check) || rc=$?
assert_eq 1 "$rc" "status --check fails at a revoked site"
assert_contains "$check" "REVOKED: this site was revoked on" "status --check names the revocation"
h=$(healthz "$S1")
assert_eq revoked "$(echo "$h" | jq -r .status)" "/healthz says revoked"
assert_eq false "$(echo "$h" | jq -r .accepting_writes)" "/healthz: not accepting writes"
assert_contains "$(echo "$h" | jq -r .revoked)" "repeated protocol violations" "/healthz says why"
code=$(post "$S1" /v1/records/subject/101-0002 '{"fields":{"site":"101","sex":"M","status":"screening"},"user":"crc1"}')
assert_eq 403 "$code" "a write at the revoked site is refused with 403"
assert_contains "$(cat "$WORK/post.out")" "this site was revoked on" "the refusal says the site was revoked, and when"
assert_contains "$(cat "$WORK/post.out")" "repeated protocol violations" "the refusal says why"
if "$TRIALSYNC" put --node "$S1" subject 101-0001 sex=M --reason x > "$WORK/put.out" 2>&1; then
    fail "trialsync put succeeded at a revoked site"
fi
assert_contains "$(cat "$WORK/put.out")" "revoked" "trialsync put says the site is revoked"
assert_eq F "$("$TRIALSYNC" get --node "$S1" subject 101-0001 | jq -r .fields.sex.value)" "reads still work"
n=$(since_line "$WORK/s101.log" "$S1_AT" | grep -c " error REVOKED: this site was revoked on") || true
assert_eq 1 "$n" "the trace says it once, at error priority"

# It stops dialing: the hub refuses 101 at each handshake, so a reconnect
# loop would show in the hub's failure counters.  The marker: the hub has
# cut site 101 off, then a span longer than the longest reconnect backoff.
cut() { "$TRIALSYNC" status --node "$HUB" --json | jq -e '.peers[] | select(.id == "101") | .connected == false'; }
wait_until 20 "the hub cut site 101 off" cut
fails_before=$("$TRIALSYNC" status --node "$HUB" --json | jq '[.handshake_failures[]] | add')
hub_at=$(log_lines "$WORK/hub.log")
sleep 8  # more than twice the longest reconnect backoff (3 s): a loop would dial here
fails_after=$("$TRIALSYNC" status --node "$HUB" --json | jq '[.handshake_failures[]] | add')
assert_eq "$fails_before" "$fails_after" "site 101 no longer dials the hub (handshake failures stay at $fails_before)"
if since_line "$WORK/hub.log" "$hub_at" | grep -q "127.0.0.1.*refused"; then
    fail "the hub saw a connection after site 101 learned of its revocation"
fi
ok "the hub traced no new connection from site 101"

# ---- site 102: offline when revoked; its CRL file gets the CA's new list
out=$("$TRIALSYNC" site revoke 102 --dir "$WORK/trial" --reason "site closed" 2>&1) \
    || fail "site revoke 102: $out"
cp "$WORK/trial/ca/crl.pem" "$S2/crl.pem"
start_node s102 "$S2"
wait_until 20 "site 102 learns of its revocation from the list" revoked "$S2"
assert_contains "$("$TRIALSYNC" status --node "$S2" --json | jq -r .revoked)" "is on the trial's revocation list" \
    "site 102 names the revocation list"
grep -q " error REVOKED: .*learned from the revocation list" "$WORK/s102.log" \
    || fail "site 102 did not trace its revocation at error priority"
ok "site 102 traced it at error priority"
code=$(post "$S2" /v1/records/subject/102-0002 '{"fields":{"site":"102","sex":"M","status":"screening"},"user":"crc2"}')
assert_eq 403 "$code" "site 102 refuses writes with 403"

stop_node s101
stop_node s102
stop_node hub
done_checks
