#!/usr/bin/env bash
# Key rotation: a site and a hub are renewed (new key, new certificate serial)
# and keep writing; history signed before and after the rotation verifies on
# every node (trialsync verify names each certificate by (origin, serial)),
# and the two hubs converge to one digest.
. "$(dirname "$0")/lib.sh"
need_cmd openssl openssl

serial_of() { openssl x509 -in "$1/node.crt" -noout -serial | cut -d= -f2; }

new_trial T-ROT
start_node hub1 "$HUB"
HUB2="$WORK/hub2"
"$TRIALSYNC" hub add hub2 --dir "$WORK/trial" --out "$HUB2" --peer-port "$(free_port)" \
    --api-port "$(free_port)" > /dev/null || fail "hub add"
start_node hub2 "$HUB2"
add_site 101
add_site 102
S1="$WORK/site-101"
S2="$WORK/site-102"
start_node s101 "$S1"
start_node s102 "$S2"

hubs_agree() {
    local d1 d2
    d1=$(digest "$HUB") && d2=$(digest "$HUB2") && [ "$d1" = "$d2" ] || return 1
    [ "$("$TRIALSYNC" status --node "$HUB" --json | jq .entries)" = \
      "$("$TRIALSYNC" status --node "$HUB2" --json | jq .entries)" ]
}

"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
"$TRIALSYNC" put --node "$S2" subject 102-0001 site=102 sex=M status=screening > /dev/null || fail put
wait_until 20 "hub2 holds 101-0001" "$TRIALSYNC" get --node "$HUB2" subject 101-0001
ok "before the rotation: site writes reach both hubs"

# Renew site 101 while it is stopped; its node.conf and data stay.
OLD=$(serial_of "$S1")
stop_node s101
out=$("$TRIALSYNC" site renew 101 --dir "$WORK/trial" 2>&1) || fail "site renew: $out"
assert_contains "$out" "site 101 renewed" "site renew says what it did"
NEW=$(serial_of "$S1")
[ -n "$NEW" ] && [ "$NEW" != "$OLD" ] || fail "site renew kept serial $OLD"
[ -f "$S1/node.conf" ] || fail "site renew lost node.conf"
ok "site 101 renewed: serial $OLD -> $NEW, bundle kept"
start_node s101 "$S1"
"$TRIALSYNC" put --node "$S1" subject 101-0002 site=101 sex=M status=screening > /dev/null \
    || fail "write after the rotation"
"$TRIALSYNC" put --node "$S1" subject 101-0001 status=enrolled --reason "consented" > /dev/null \
    || fail "update after the rotation"
wait_until 20 "hub2 holds 101-0002 (signed by the new key)" "$TRIALSYNC" get --node "$HUB2" subject 101-0002
ok "entries signed with the new key are accepted by both hubs (relayed too)"

# Renew hub1 while it is stopped; the CRO's writes go on with the new key.
H_OLD=$(serial_of "$HUB")
stop_node hub1
out=$("$TRIALSYNC" hub renew hub1 --dir "$WORK/trial" 2>&1) || fail "hub renew: $out"
H_NEW=$(serial_of "$HUB")
[ "$H_NEW" != "$H_OLD" ] || fail "hub renew kept serial $H_OLD"
ok "hub renewed: serial $H_OLD -> $H_NEW"
start_node hub1 "$HUB"
"$TRIALSYNC" put --node "$HUB" query Q-hub-1 target=subject/101-0001/sex text="Confirm sex" \
    state=open source=dm > /dev/null || fail "hub write after the rotation"
"$TRIALSYNC" put --node "$S2" subject 102-0002 site=102 sex=F status=screening > /dev/null || fail put
wait_until 20 "site 101 holds the hub's query" "$TRIALSYNC" get --node "$S1" query Q-hub-1
wait_until 20 "hubs agree" hubs_agree
ok "after both rotations: the hubs converge (equal digests) and the site gets the CRO's query"

# Every node's history, signed before and after the rotations, verifies.
stop_node s101
stop_node s102
stop_node hub1
stop_node hub2
for n in "$HUB" "$HUB2" "$S1" "$S2"; do
    out=$("$TRIALSYNC" verify --node "$n" 2>&1) || fail "verify $n after rotation: $out"
    assert_contains "$out" "every chain and signature checked" "verify $(basename "$n")"
done
"$TRIALSYNC" history --node "$HUB2" subject 101-0001 | jq -e 'length >= 2' > /dev/null \
    || fail "hub2 lacks 101-0001's history across the rotation"
ok "history before and after the rotation verifies on every node"
done_checks
