#!/usr/bin/env bash
# `trialsync verify` proves what it says: a real hub and site, some writes,
# both stopped; then
#   (a) the hub's store verifies;
#   (b) the site's head entry rewritten at the hub, re-signed with a
#       self-signed key whose certificate (right URI SAN, wrong issuer)
#       replaces the one the hub keeps for the site, the record's state made
#       to match: verify fails naming the origin and the trial CA;
#   (c) one stored state value edited in place: verify fails naming the
#       record and the field.
. "$(dirname "$0")/../integration/lib.sh"

need_cmd openssl openssl
need_cmd faketime faketime
FORGE="$TS_BIN/tests/ts_store_forge"
[ -x "$FORGE" ] || fail "$FORGE is not built"

new_trial T-FORGE
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"

"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
"$TRIALSYNC" put --node "$S1" visit 101-0001/V1 svstdtc=2026-11-01 status=scheduled > /dev/null || fail put
"$TRIALSYNC" put --node "$S1" subject 101-0002 site=101 sex=M status=screening > /dev/null || fail put
"$TRIALSYNC" put --node "$HUB" subject 101-0001 armcd=A --reason "randomised" > /dev/null || fail "hub put"

vv_seq() {  # NODEDIR ORIGIN: the bulk head of ORIGIN at NODEDIR
    "$TRIALSYNC" status --node "$1" --json |
        jq "[.version_vector[] | select(.origin == \"$2\" and .lane == \"bulk\") | .seq][0] // 0"
}
site_head=$(vv_seq "$S1" 101)
[ "$site_head" -ge 3 ] || fail "site head $site_head after three writes"
hub_has_site() { [ "$(vv_seq "$HUB" 101)" = "$site_head" ]; }
wait_until 60 "the hub holds the site's chain" hub_has_site
stop_node s101
stop_node hub

# (a) The real store verifies, and says what it checked.
out=$("$TRIALSYNC" verify --node "$HUB" 2>&1) || fail "the hub's store does not verify: $out"
assert_contains "$out" "every chain and signature checked" "(a) hub verifies"
assert_contains "$out" "chain to the trial CA" "(a) verify says the certificates were chained"
assert_contains "$out" "state rebuilt from the oplog equals the stored state" "(a) verify says the state was rebuilt"
out=$("$TRIALSYNC" verify --node "$S1" 2>&1) || fail "the site's store does not verify: $out"
ok "(a) site verifies"
"$TRIALSYNC" verify --help | grep -q "chains to the trial CA" || fail "verify --help says nothing of the CA"
ok "verify --help names the checks"

# The stores as they were, to forge each from a clean copy.
cp -a "$WORK/trial/hub" "$WORK/hub-clean"
restore_hub() { rm -rf "$HUB" && cp -a "$WORK/hub-clean" "$HUB"; }

# (b) A forged history: self-signed certificate with the site's URI SAN,
# backdated a day (faketime) so that it was "valid" when every entry was
# written: only its issuer gives it away.
openssl genpkey -algorithm ed25519 -out "$WORK/forged.key" 2>/dev/null || fail "openssl genpkey"
chmod 600 "$WORK/forged.key"
faketime -f -1d openssl req -x509 -new -key "$WORK/forged.key" -out "$WORK/forged.crt" -days 30 \
    -subj "/CN=101" -addext "subjectAltName=URI:trialsync://T-FORGE/site/101" 2>/dev/null \
    || fail "openssl req"
forged=$("$FORGE" entry "$HUB" 101 "$WORK/forged.key" "$WORK/forged.crt" FORGED-VALUE) \
    || fail "ts_store_forge entry failed"
echo "# $forged"
rc=0
out=$("$TRIALSYNC" verify --node "$HUB" 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "(b) verify passed a forged history with a self-signed certificate: $out"
assert_contains "$out" "origin 101" "(b) verify names the forged origin"
assert_contains "$out" "does not chain to the trial CA" "(b) verify says why"
restore_hub

# (c) One state value edited in place: the oplog is untouched.
"$FORGE" state "$HUB" subject 101-0001 sex X > /dev/null || fail "ts_store_forge state failed"
rc=0
out=$("$TRIALSYNC" verify --node "$HUB" 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "(c) verify passed an edited state: $out"
assert_contains "$out" "record subject 101-0001 field sex" "(c) verify names the record and field"
assert_contains "$out" 'stored shows "X"' "(c) verify shows the edited value"
restore_hub
"$TRIALSYNC" verify --node "$HUB" > /dev/null || fail "the clean copy no longer verifies"
ok "the clean copy verifies again"
done_checks
