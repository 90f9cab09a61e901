#!/usr/bin/env bash
# test_keys.sh: an encrypted CA (init --encrypt-ca): the CA and admin keys are
# AES-256 encrypted, the hub's key is not (trialsyncd starts unattended);
# site add works with --pass-file and, without a passphrase and without a
# terminal, fails with the clear message and creates nothing.
source "$(dirname "$0")/lib.sh"

PASS="$WORK/pass"
printf 'correct horse battery\n' > "$PASS"
chmod 600 "$PASS"
printf 'wrong horse battery\n' > "$WORK/wrong"
chmod 600 "$WORK/wrong"

# --encrypt-ca with no pass file and no terminal: refused, no trial written.
if "$TRIALSYNC" init --trial K0 --dir "$WORK/none" --encrypt-ca < /dev/null \
    > "$WORK/init-none.out" 2>&1; then
    fail "init --encrypt-ca without a passphrase succeeded"
fi
assert_contains "$(cat "$WORK/init-none.out")" "give it with --pass-file FILE or on the terminal" \
    "init --encrypt-ca without a passphrase says how to give one"
[ ! -e "$WORK/none" ] || fail "a refused init created $WORK/none"

HUB_PEER_PORT=$(free_port)
HUB_API_PORT=$(free_port)
"$TRIALSYNC" init --trial K1 --dir "$WORK/trial" --peer-port "$HUB_PEER_PORT" \
    --api-port "$HUB_API_PORT" --encrypt-ca --pass-file "$PASS" < /dev/null \
    > "$WORK/init.out" 2>&1 || fail "init --encrypt-ca: $(cat "$WORK/init.out")"
ok "init --encrypt-ca --pass-file"
assert_eq "-----BEGIN ENCRYPTED PRIVATE KEY-----" "$(head -n 1 "$WORK/trial/ca/ca.key")" \
    "ca.key is encrypted"
assert_eq "-----BEGIN ENCRYPTED PRIVATE KEY-----" "$(head -n 1 "$WORK/trial/admin/node.key")" \
    "the admin key is encrypted"
assert_eq "-----BEGIN PRIVATE KEY-----" "$(head -n 1 "$WORK/trial/hub/node.key")" \
    "the hub key is not encrypted"

start_node hub "$WORK/trial/hub"
ok "the hub starts unattended"

# No pass file and no terminal: refused before anything is written.
conf_before=$(cat "$WORK/trial/trial.conf")
if "$TRIALSYNC" site add 101 --dir "$WORK/trial" --out "$WORK/site-101" \
    --api-port "$(free_port)" < /dev/null > "$WORK/nopass.out" 2>&1; then
    fail "site add without a passphrase succeeded"
fi
assert_contains "$(cat "$WORK/nopass.out")" \
    "key file $WORK/trial/ca/ca.key is encrypted: give its passphrase with --pass-file FILE or on the terminal" \
    "site add without a passphrase says how to give one"
[ ! -e "$WORK/site-101" ] || fail "site add without a passphrase created $WORK/site-101"
ok "site add without a passphrase created no site directory"
assert_eq "$conf_before" "$(cat "$WORK/trial/trial.conf")" "trial.conf is unchanged"

# A wrong passphrase, and a pass file others can read, are refused too.
if "$TRIALSYNC" site add 101 --dir "$WORK/trial" --out "$WORK/site-101" \
    --pass-file "$WORK/wrong" < /dev/null > "$WORK/wrong.out" 2>&1; then
    fail "site add with a wrong passphrase succeeded"
fi
assert_contains "$(cat "$WORK/wrong.out")" "does not decrypt it" "a wrong passphrase is refused"
chmod 644 "$WORK/wrong"
if "$TRIALSYNC" crl renew --dir "$WORK/trial" --pass-file "$WORK/wrong" < /dev/null \
    > "$WORK/mode.out" 2>&1; then
    fail "crl renew with a 0644 pass file succeeded"
fi
assert_contains "$(cat "$WORK/mode.out")" "pass file $WORK/wrong has mode 0644" \
    "a pass file readable by others is refused"
[ ! -e "$WORK/site-101" ] || fail "a refused site add created $WORK/site-101"

# With the pass file: the site is issued and recorded.
"$TRIALSYNC" site add 101 --dir "$WORK/trial" --out "$WORK/site-101" \
    --api-port "$(free_port)" --pass-file "$PASS" < /dev/null > "$WORK/add.out" 2>&1 \
    || fail "site add --pass-file: $(cat "$WORK/add.out")"
assert_contains "$(cat "$WORK/add.out")" "recorded in the membership log" \
    "site add --pass-file issues and records the site"
assert_eq "-----BEGIN PRIVATE KEY-----" "$(head -n 1 "$WORK/site-101/node.key")" \
    "the site key is not encrypted"
"$TRIALSYNC" crl renew --dir "$WORK/trial" --pass-file "$PASS" < /dev/null \
    > "$WORK/crl.out" 2>&1 || fail "crl renew --pass-file: $(cat "$WORK/crl.out")"
ok "crl renew --pass-file"

# Without --encrypt-ca nothing changes: the CA key is unencrypted, no passphrase asked.
"$TRIALSYNC" init --trial K2 --dir "$WORK/plain" --peer-port "$(free_port)" \
    --api-port "$(free_port)" < /dev/null > "$WORK/plain.out" 2>&1 \
    || fail "init: $(cat "$WORK/plain.out")"
assert_eq "-----BEGIN PRIVATE KEY-----" "$(head -n 1 "$WORK/plain/ca/ca.key")" \
    "init without --encrypt-ca writes the CA key unencrypted"

stop_node hub

# The config, the CA certificate and the CRL are not secret, but whoever can
# write them chooses where the node listens and whom it trusts: trialsyncd
# refuses each when group or others may write it, naming the file and the fix.
for f in node.conf ca.crt crl.pem; do
    [ -f "$WORK/trial/hub/$f" ] || fail "the hub has no $f"
    chmod g+w "$WORK/trial/hub/$f"
    if timeout 60 "$TRIALSYNCD" --config "$WORK/trial/hub/node.conf" \
        > "$WORK/mode-$f.out" 2>&1; then
        fail "trialsyncd started with a group-writable $f"
    fi
    assert_contains "$(cat "$WORK/mode-$f.out")" "$WORK/trial/hub/$f has mode 06" \
        "the refusal names $f and its mode"
    assert_contains "$(cat "$WORK/mode-$f.out")" \
        "others could change what this node trusts; it must not be writable by group or others (chmod go-w $WORK/trial/hub/$f)" \
        "trialsyncd refuses a group-writable $f"
    chmod go-w "$WORK/trial/hub/$f"
done
chmod 755 "$WORK/trial/hub/data"
start_node hub "$WORK/trial/hub"
ok "with chmod go-w the hub starts again"
# Its store: a 0700 directory of 0600 files, the 0755 directory tightened
# at open and every file the node created since made 0600 (umask 077).
"$TRIALSYNC" put --node "$WORK/trial/hub" subject 101-0001 site=101 sex=F > /dev/null \
    || fail "put at the hub"
assert_eq 700 "$(stat -c %a "$WORK/trial/hub/data")" "the store directory is 0700"
wide=$(find "$WORK/trial/hub/data" -type f ! -perm 600 -printf '%m %p\n')
assert_eq "" "$wide" "every store file is 0600"
stop_node hub
done_checks
