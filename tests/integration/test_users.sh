#!/usr/bin/env bash
# People, not tokens: user accounts made by the admin at a hub, replicated to
# every node, signed in with their own token; every write attributed to the
# signed-in user (the audit trail names user and role); the rule book's roles
# enforced at the API (and, for crafted batches, in the hostile-site suite).
# Also: the integration credential must name whom it acts for, a disabled
# account and a reset token stop working, failed sign-ins are limited and
# traced, secrets are never shown.
. "$(dirname "$0")/lib.sh"

need_cmd curl curl
need_cmd stat coreutils

TRIAL="$WORK/trial"
new_trial T-USERS
start_node hub "$HUB"
add_site 101
add_site 102
start_node site101 "$WORK/site-101"
start_node site102 "$WORK/site-102"

# ---- accounts ----------------------------------------------------------------

add_user crc101 crc --site 101
add_user inv101 investigator --site 101
add_user crc102 crc --site 102
add_user mon monitor
add_user dm1 dm
add_user view viewer
add_user prom metrics
ok "seven accounts added"
assert_eq 600 "$(stat -c %a "$TRIAL/users/crc101.token")" "a token file is mode 0600"
assert_contains "$(cat "$WORK/user-crc101.out")" "hand it over privately" \
    "user add says what to do with the token"

# Refused at once, before anything is written.
if "$TRIALSYNC" user add crc101 --role crc --site 101 --name X --dir "$TRIAL" \
    > "$WORK/dup.out" 2>&1; then fail "a second crc101 was added"; fi
assert_contains "$(cat "$WORK/dup.out")" "exists" "an existing user id is refused"
if "$TRIALSYNC" user add nosite --role crc --name X --dir "$TRIAL" > "$WORK/ns.out" 2>&1; then
    fail "a crc without a site was added"
fi
assert_contains "$(cat "$WORK/ns.out")" "--site" "a site role needs --site"
if "$TRIALSYNC" user add boss --role admin --name X --dir "$TRIAL" > "$WORK/br.out" 2>&1; then
    fail "a user with role admin was added"
fi
assert_contains "$(cat "$WORK/br.out")" "not a role" "an unknown role is refused, roles listed"

"$TRIALSYNC" user list --dir "$TRIAL" --json > "$WORK/list.json" || fail "user list"
assert_eq 7 "$(jq length "$WORK/list.json")" "user list shows every account"
assert_eq "crc 101 active" "$(jq -r '.[] | select(.user == "crc101") | "\(.role) \(.site) \(.state)"' "$WORK/list.json")" \
    "user list shows role, site and state"
"$TRIALSYNC" get --node "$HUB" user crc101 > "$WORK/rec.json" || fail "get user crc101"
assert_eq "(salted hash, not shown)" "$(jq -r .fields.secret.value "$WORK/rec.json")" \
    "the API never shows a secret hash"
grep -q "$(cut -d: -f2 "$TRIAL/users/crc101.token")" "$WORK/rec.json" \
    && fail "the token's secret appears in the record"
ok "the record holds no secret in clear"

# The accounts replicate: a site signs its people in from its own copy.
wait_until 20 "crc101's account reaching site 101" \
    "$TRIALSYNC" get --node "$WORK/site-101" user crc101
wait_until 20 "inv101's account reaching site 101" \
    "$TRIALSYNC" get --node "$WORK/site-101" user inv101

# refused MESSAGE NEEDLE USER CMD...: the command fails and says NEEDLE.
refused() {
    local msg=$1 needle=$2
    shift 2
    if as "$@" > "$WORK/refused.out" 2>&1; then
        fail "$msg: succeeded: $(cat "$WORK/refused.out")"
    fi
    assert_contains "$(cat "$WORK/refused.out")" "$needle" "$msg"
}

# ---- writes attributed to the signed-in person -------------------------------

as crc101 put --node "$WORK/site-101" subject 101-0001 site=101 sex=F status=screening \
    > "$WORK/put.out" 2>&1 || fail "crc101 put: $(cat "$WORK/put.out")"
as crc101 history --node "$WORK/site-101" subject 101-0001 --json > "$WORK/h.json" \
    || fail "history as crc101"
assert_eq "crc101 crc sign-in" "$(jq -r '[.versions[] | select(.field == "sex")][0] | "\(.user) \(.role) \(.via)"' "$WORK/h.json")" \
    "the audit trail names the signed-in user and role"
refused "a person acts only as themselves" "signed-in user" crc101 put --node "$WORK/site-101" \
    subject 101-0002 site=101 sex=M --user inv101
wait_until 20 "101-0001 reaching the hub" "$TRIALSYNC" get --node "$HUB" subject 101-0001
# The token's first use at the site was a sign-in: an access event, replicated.
assert_contains "$("$TRIALSYNC" get --node "$WORK/site-101" access 101-ACC-crc101 | jq -r '.fields.events.value[]')" \
    "sign-in: token from 127.0.0.1" "the site records crc101's sign-in as an access event"
wait_until 20 "crc101's access events reaching the hub" \
    "$TRIALSYNC" get --node "$HUB" access 101-ACC-crc101
assert_eq "crc101 sign-in" "$("$TRIALSYNC" history --node "$HUB" access 101-ACC-crc101 --json | jq -r '.versions[0] | "\(.user) \(.via)"')" \
    "the access event is the person's own, in the hub's audit trail"
assert_eq crc101 "$("$TRIALSYNC" history --node "$HUB" subject 101-0001 --json | jq -r '.versions[0].user')" \
    "the hub's audit trail names the same person"

# ---- the role matrix at the API ----------------------------------------------

refused "a site user signs in only at its own site" "own node" crc101 get \
    --node "$WORK/site-102" subject 101-0001
refused "a site user does not sign in at a hub" "own node" crc101 get --node "$HUB" \
    subject 101-0001
refused "a CRO user does not sign in at a site" "at a hub" dm1 get --node "$WORK/site-101" \
    subject 101-0001
refused "a viewer writes nothing" "viewer writes nothing" view put --node "$HUB" subject \
    101-0001 sex=M --reason x
as view get --node "$HUB" subject 101-0001 > /dev/null || fail "a viewer could not read"
ok "a viewer reads"
refused "a crc does not sign a visit" "investigator" crc101 put --node "$WORK/site-101" \
    visit 101-0001/V1 status=signed
as inv101 put --node "$WORK/site-101" visit 101-0001/V1 status=signed > /dev/null \
    || fail "an investigator could not sign a visit"
ok "an investigator signs a visit"
# ---- e-signatures (21 CFR 11.50, 11.200) -------------------------------------

S1="$WORK/site-101"
sigs() {  # NODEDIR TYPE ID: the record's signatures as "state meaning user name" lines
    "$TRIALSYNC" get --node "$1" "$2" "$3" | jq -r '.signatures[] | "\(.state) \(.meaning) \(.user) \(.name)"'
}
as crc101 put --node "$S1" visit 101-0001/V2 svstdtc=2026-11-01 status=completed > /dev/null \
    || fail "crc101 visit V2"
refused "a crc does not e-sign" "only an investigator" crc101 sign --node "$S1" visit \
    101-0001/V2 --secret-file "$TRIAL/users/crc101.token"
printf 'inv101:%s\n' 0123456789abcdef0123456789abcdef0123456789abcdef > "$WORK/wrong.token"
chmod 600 "$WORK/wrong.token"
refused "a signature needs the signer's secret re-entered" "wrong or unknown" inv101 sign \
    --node "$S1" visit 101-0001/V2 --secret-file "$WORK/wrong.token"
assert_eq "" "$(sigs "$S1" visit 101-0001/V2)" "a refused signature writes nothing"
as inv101 sign --node "$S1" visit 101-0001/V2 --meaning approval \
    --secret-file "$TRIAL/users/inv101.token" > "$WORK/sign.out" || fail "inv101 sign: $(cat "$WORK/sign.out")"
assert_eq "valid approval inv101 Person inv101" "$(sigs "$S1" visit 101-0001/V2)" \
    "the signed visit shows a valid signature: meaning, signer, printed name"
"$TRIALSYNC" get --node "$S1" visit 101-0001/V2 | jq -e '.signatures[0].signed_at | endswith("Z")' \
    > /dev/null || fail "the signature has no UTC time"
ok "the signature holds its time in UTC"
wait_until 20 "the signature valid at the hub" sh -c \
    "'$TRIALSYNC' get --node '$HUB' visit 101-0001/V2 | jq -e '.signatures[0].state == \"valid\"'"
refused "no one writes a signature record directly" "trialsync sign" crc101 \
    put --node "$S1" signature 101-0001-SIG-009 target=visit/101-0001/V2 meaning=approval
# A later change to a signed value breaks the signature, on every node.
as crc101 put --node "$S1" visit 101-0001/V2 svendtc=2026-11-02 > /dev/null || fail "edit V2"
assert_eq "broken approval inv101 Person inv101" "$(sigs "$S1" visit 101-0001/V2)" \
    "a later change shows the signature broken at the site"
wait_until 20 "the signature broken at the hub" sh -c \
    "'$TRIALSYNC' get --node '$HUB' visit 101-0001/V2 | jq -e '.signatures[0].state == \"broken\"'"
ok "... and at the hub, from the same entries"
# The casebook: the subject and everything under it.
as inv101 sign --node "$S1" subject 101-0001 --meaning review \
    --secret-file "$TRIAL/users/inv101.token" > /dev/null || fail "sign the casebook"
assert_eq "valid review inv101 Person inv101" "$(sigs "$S1" subject 101-0001)" \
    "a signed casebook shows a valid signature"
as crc101 put --node "$S1" ae 101-0001-AE-001 aeterm=Headache aesev=MILD aeser=N status=ongoing \
    > /dev/null || fail "AE after the casebook signature"
assert_eq "broken review inv101 Person inv101" "$(sigs "$S1" subject 101-0001)" \
    "a new AE in a signed casebook breaks its signature"

refused "a monitor does not code an AE" "may not write" mon put --node "$HUB" ae \
    101-0001-AE-001 aedecod=Headache
as mon put --node "$HUB" query "Q-hub1-1" target=subject/101-0001/sex text="Confirm sex" \
    state=open source=monitor > /dev/null || fail "a monitor could not open a query"
ok "a monitor opens a query"
refused "the admin's endpoints are the integration credential's" "admin operation" dm1 \
    backup --node "$HUB" --out "$WORK/bk"

# A metrics reader reads /metrics and nothing else.
API=$(awk -F' *= *' '/^\[api\]/{a=1; next} /^\[/{a=0} a && $1 == "listen" {print $2; exit}' \
    "$HUB/node.conf")
[ -n "$API" ] || fail "no [api] listen in the hub's node.conf"
PROM_TOKEN=$(cat "$TRIAL/users/prom.token")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PROM_TOKEN" "http://$API/metrics")
assert_eq 200 "$code" "a metrics reader scrapes /metrics"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $PROM_TOKEN" "http://$API/v1/status")
assert_eq 403 "$code" "a metrics reader reads nothing else"

# ---- the integration credential ------------------------------------------------

code=$(curl -s -o "$WORK/int.out" -w '%{http_code}' -H "Authorization: Bearer $(cat "$HUB/api.token")" \
    -H 'Content-Type: application/json' -d '{"fields":{"site":"101","sex":"M"}}' \
    "http://$API/v1/records/subject/101-0009")
assert_eq 400 "$code" "the integration credential must name whom it acts for"
assert_contains "$(cat "$WORK/int.out")" "on someone's behalf" "... and says so"

# ---- disable, reset, and failed sign-ins ---------------------------------------

"$TRIALSYNC" user disable crc102 --dir "$TRIAL" --reason "left the site" > /dev/null \
    || fail "user disable"
wait_until 20 "the disable reaching site 102" sh -c \
    "'$TRIALSYNC' get --node '$WORK/site-102' user crc102 | jq -e '.fields.state.value == \"disabled\"'"
refused "a disabled account signs in nowhere" "account is disabled" crc102 get --node "$WORK/site-102" \
    subject 102-0001
grep -q "sign-in refused for user 'crc102'.*disabled" "$WORK/site102.log" \
    || fail "the site's trace does not say the account is disabled"
ok "the trace says why the sign-in was refused"
"$TRIALSYNC" history --node "$HUB" user crc102 --json > "$WORK/uh.json" || fail "user history"
assert_eq "left the site" "$(jq -r '[.versions[] | select(.field == "state")][1].reason' "$WORK/uh.json")" \
    "the account's history holds the disable and its reason"

cp "$TRIAL/users/dm1.token" "$WORK/dm1.old"
rm "$TRIAL/users/dm1.token"
"$TRIALSYNC" user reset dm1 --dir "$TRIAL" > /dev/null || fail "user reset"
as dm1 get --node "$HUB" subject 101-0001 > /dev/null || fail "the new token does not work"
ok "a reset token works"
if TRIALSYNC_TOKEN_FILE="$WORK/dm1.old" "$TRIALSYNC" get --node "$HUB" subject 101-0001 \
    > /dev/null 2>&1; then fail "the old token still works after a reset"; fi
ok "the old token stops working after a reset"

# Guessing: after a few failures the user is limited, before any hash runs.
printf 'mon:%s\n' 0000000000000000000000000000000000000000000000ff > "$WORK/guess.token"
chmod 600 "$WORK/guess.token"
for _ in 1 2 3 4 5 6 7; do
    TRIALSYNC_TOKEN_FILE="$WORK/guess.token" "$TRIALSYNC" get --node "$HUB" subject 101-0001 \
        > /dev/null 2>&1 && fail "a guessed token was accepted"
done
grep -q "sign-in refused for user 'mon'.*too many failed sign-ins" "$WORK/hub.log" \
    || fail "the limiter did not engage (no 'too many failed sign-ins' in the hub's trace)"
ok "failed sign-ins are limited per user and traced"
"$TRIALSYNC" get --node "$HUB" access hub1-ACC-mon > "$WORK/acc.json" || fail "no access record for mon"
refusals=$(jq '[.fields.events.value[] | select(startswith("sign-in refused (token)"))] | length' "$WORK/acc.json")
[ "$refusals" -ge 1 ] && [ "$refusals" -le 5 ] \
    || fail "mon's refused sign-ins recorded $refusals times (expected 1 to 5: the limiter stops the rest)"
ok "refused sign-ins of a real account are access events ($refusals; the limited ones are not)"
assert_eq "integration:hub1" "$("$TRIALSYNC" history --node "$HUB" access hub1-ACC-mon --json | jq -r '[.versions[] | select(.new_value | startswith("sign-in refused"))][0].user')" \
    "a refused attempt is recorded by the node, not in the person's name"
metrics=$(curl -s -H "Authorization: Bearer $PROM_TOKEN" "http://$API/metrics")
limited=$(printf '%s\n' "$metrics" | sed -n 's/^trialsync_api_signin_limited_total \([0-9]*\)$/\1/p')
failures=$(printf '%s\n' "$metrics" | sed -n 's/^trialsync_api_signin_failures_total \([0-9]*\)$/\1/p')
[ "${limited:-0}" -ge 1 ] && [ "${failures:-0}" -ge 5 ] \
    || fail "the sign-in metrics do not show the guessing (failures=$failures limited=$limited)"
ok "metrics count refused sign-ins ($failures) and limited ones ($limited)"
chmod 644 "$WORK/guess.token"
if TRIALSYNC_TOKEN_FILE="$WORK/guess.token" "$TRIALSYNC" get --node "$HUB" subject 101-0001 \
    > "$WORK/mode.out" 2>&1; then fail "a world-readable token file was used"; fi
assert_contains "$(cat "$WORK/mode.out")" "must be 0600" "a token file readable by others is refused"

done_checks
