#!/usr/bin/env bash
# The shipped systemd unit passes systemd-analyze verify, and the example
# node.conf is one trialsyncd accepts (up to the files it names).
. "$(dirname "$0")/lib.sh"

need_cmd systemd-analyze systemd
mkdir -p "$WORK/unit"
# The unit names the installed path; point it at the binary just built.
sed "s|/usr/sbin/trialsyncd|$TRIALSYNCD|" "$TS_SRC/deploy/trialsyncd.service" \
    > "$WORK/unit/trialsyncd.service"
if ! SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$WORK/unit/trialsyncd.service" \
    > "$WORK/verify.out" 2>&1; then
    fail "systemd-analyze verify: $(cat "$WORK/verify.out")"
fi
# verify exits 0 on a key it does not know (it ignores it with a warning),
# so a warning about a line of the unit fails too.
if grep -F "$WORK/unit/trialsyncd.service:" "$WORK/verify.out"; then
    fail "systemd-analyze verify warns about the unit: $(grep -F "$WORK/unit/trialsyncd.service:" "$WORK/verify.out" | head -n 3)"
fi
ok "systemd-analyze verify accepts deploy/trialsyncd.service without a warning about it"
grep -q '^ExecStart=.*trialsyncd --config ' "$TS_SRC/deploy/trialsyncd.service" || fail "ExecStart"
ok "the unit runs trialsyncd --config"

# The example config parses: trialsyncd gets past the config and stops at the
# first file it names that is not there (the key).
mkdir -p "$WORK/example"
cp "$TS_SRC/deploy/node.conf.example" "$WORK/example/node.conf"
if "$TRIALSYNCD" --config "$WORK/example/node.conf" 2> "$WORK/err"; then fail "started without keys"; fi
assert_contains "$(cat "$WORK/err")" "node.key" "example config parses; the missing key is named"
done_checks
