#!/usr/bin/env bash
# The revocation list travels by replication, signed by the CA: revoking
# site 102 at the hub puts the new CRL (its number) in force on the hub and
# on site 101 (a site: nothing copies files to it), and 102 is cut off.
. "$(dirname "$0")/lib.sh"
need_cmd openssl openssl

crl_number() { openssl crl -in "$1" -noout -crlnumber 2>/dev/null | cut -d= -f2; }

hub_and_two_sites T-CRL hub1
"$TRIALSYNC" put --node "$S2" subject 102-0001 site=102 sex=F status=screening > /dev/null || fail put
wait_until 20 "102 replicated" "$TRIALSYNC" get --node "$HUB" subject 102-0001
connected() { "$TRIALSYNC" status --node "$HUB" --json | jq -e ".peers[] | select(.id == \"$1\") | .connected == $2" > /dev/null; }
wait_until 20 "102 connected" connected 102 true

BEFORE=$(crl_number "$S1/crl.pem")
S1_LOG_AT=$(log_lines "$WORK/s101.log")
out=$("$TRIALSYNC" site revoke 102 --dir "$WORK/trial" --reason "site closed" 2>&1) \
    || fail "site revoke: $out"
assert_contains "$out" "recorded at hub" "site revoke records the CRL through the hub"
WANT=$(crl_number "$WORK/trial/ca/crl.pem")
[ -n "$WANT" ] && [ "$WANT" != "$BEFORE" ] || fail "the CA's CRL number did not move ($BEFORE)"

site_has_crl() { [ "$(crl_number "$S1/crl.pem")" = "$WANT" ]; }
wait_until 20 "site 101 has CRL $WANT" site_has_crl
ok "site 101 holds the new CRL (number $WANT, was $BEFORE), received by replication"
since_line "$WORK/s101.log" "$S1_LOG_AT" | grep -q "revocation list number .* in force" \
    || fail "site 101 did not trace the CRL taking force"
ok "site 101 traced the CRL taking force"
hub_has_crl() { [ "$(crl_number "$HUB/crl.pem")" = "$WANT" ]; }
wait_until 20 "hub has CRL $WANT" hub_has_crl
ok "the hub applied its own crl entry to its CRL file"
wait_until 20 "102 cut off at the hub" connected 102 false
ok "site 102's connection is cut at the hub"

# A forged list (not signed by the CA) is refused at the API's admission.
FAKE=$(sed 's/^MI/MJ/' "$WORK/trial/ca/crl.pem" | jq -Rs .)
TOKEN=$(cat "$HUB/api.token")
code=$(curl -s -o "$WORK/forged.out" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -d "{\"fields\":{\"pem\":$FAKE,\"number\":\"99999999999\"},\"reason\":\"x\",\"user\":\"admin\"}" \
    "http://127.0.0.1:$HUB_API_PORT/v1/crl")
[ "$code" != 200 ] || fail "the hub accepted a revocation list the CA did not sign"
ok "a revocation list not signed by the CA is refused ($code: $(head -c 160 "$WORK/forged.out"))"
[ "$(crl_number "$S1/crl.pem")" = "$WANT" ] || fail "site 101's CRL changed"

# The admin's certificate, revoked: it is on the new list, which reaches the
# site by replication like any other.
admin_serial=$(openssl x509 -in "$WORK/trial/admin/node.crt" -noout -serial | cut -d= -f2)
"$TRIALSYNC" admin revoke --dir "$WORK/trial" --reason "admin key lost" > "$WORK/admin-revoke.out" 2>&1 \
    || fail "admin revoke: $(cat "$WORK/admin-revoke.out")"
openssl crl -in "$WORK/trial/ca/crl.pem" -noout -text | tr -d ' ' | grep -qi "SerialNumber:$admin_serial" \
    || fail "the admin's serial $admin_serial is not on the CA's list"
WANT=$(crl_number "$WORK/trial/ca/crl.pem")
site_has_admin_crl() { [ "$(crl_number "$S1/crl.pem")" = "$WANT" ]; }
wait_until 20 "site 101 has the list revoking the admin ($WANT)" site_has_admin_crl
openssl crl -in "$S1/crl.pem" -noout -text | tr -d ' ' | grep -qi "SerialNumber:$admin_serial" \
    || fail "site 101's list does not revoke the admin"
ok "admin revoke: the admin's certificate is on the list site 101 holds ($WANT)"

stop_node s101
stop_node s102
stop_node hub1
"$TRIALSYNC" verify --node "$S1" > /dev/null || fail "site 101 does not verify"
ok "site 101 verifies with the CRL in force"
done_checks
