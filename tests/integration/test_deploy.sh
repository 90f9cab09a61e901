#!/usr/bin/env bash
# The shipped systemd unit passes systemd-analyze verify and scores an
# exposure of at most 2.0 in systemd-analyze security; it is Type=notify and
# reloads with SIGHUP, which leaves a running node up, reloads its
# revocation list and applies the settings that can change live; the
# example node.conf is one trialsyncd accepts (up to the files it names).
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

# Hardening: systemd's own score of the unit (0 best, 10 worst).
systemd-analyze security --offline=true "$TS_SRC/deploy/trialsyncd.service" > "$WORK/security.out" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for trialsyncd.service: \([0-9.]*\).*/\1/p' "$WORK/security.out")
[ -n "$exposure" ] || fail "no exposure level from systemd-analyze security: $(tail -n 3 "$WORK/security.out")"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' \
    || fail "exposure $exposure > 2.0: $(grep '✗' "$WORK/security.out" | sort -k1 | head -n 20)"
ok "systemd-analyze security: exposure $exposure (at most 2.0)"
grep -q '^Type=notify$' "$TS_SRC/deploy/trialsyncd.service" || fail "the unit is not Type=notify"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$TS_SRC/deploy/trialsyncd.service" \
    || fail "the unit has no ExecReload sending SIGHUP"
ok "the unit is Type=notify and reloads with SIGHUP"

# SIGHUP leaves a running node up: it reloads the revocation list and the
# live settings, and keeps answering.
new_trial T-DEPLOY
start_node hub "$HUB"
pid=${NODE_PIDS[hub]}
mark=$(log_lines "$WORK/hub.log")
sed -i 's/^disk_free_min_mb = .*//' "$HUB/node.conf"
printf '\n[storage]\ndisk_free_min_mb = 7\n' >> "$HUB/node.conf"
grep -q '^\[storage\]' "$HUB/node.conf" || fail "could not edit node.conf"
kill -HUP "$pid"
wait_until 10 "the hub traces the reload" grep -q "reload: config" "$WORK/hub.log"
wait_until 10 "the hub reloads its revocation list" \
    sh -c "tail -n +$((mark + 1)) '$WORK/hub.log' | grep -q 'revocation list reloaded'"
since_line "$WORK/hub.log" "$mark" > "$WORK/reload.log"
assert_contains "$(cat "$WORK/reload.log")" "disk_free_min_mb=7" "SIGHUP applies [storage] disk_free_min_mb"
if grep -q "need a restart" "$WORK/reload.log"; then
    fail "an unchanged setting was reported as needing a restart: $(grep 'need a restart' "$WORK/reload.log")"
fi
kill -0 "$pid" 2>/dev/null || fail "SIGHUP killed the node"
"$TRIALSYNC" status --node "$HUB" --json > /dev/null || fail "the node does not answer after SIGHUP"
ok "SIGHUP leaves the node running and answering"
# A config that no longer parses is refused; the node keeps its settings.
echo "bogus_key = 1" >> "$HUB/node.conf"
mark=$(log_lines "$WORK/hub.log")
kill -HUP "$pid"
wait_until 10 "the hub reports the bad config" \
    sh -c "tail -n +$((mark + 1)) '$WORK/hub.log' | grep -q 'config not reloaded'"
# (The CLI reads node.conf too: put it right before asking.)
sed -i '/^bogus_key = 1$/d' "$HUB/node.conf"
kill -0 "$pid" 2>/dev/null || fail "a bad reload killed the node"
"$TRIALSYNC" status --node "$HUB" --json > /dev/null || fail "the node does not answer after a bad reload"
ok "a reload of a bad config is refused and the node keeps running"
stop_node hub

# Type=notify: READY=1 once it answers, STOPPING=1 on SIGTERM, through the
# socket systemd names in NOTIFY_SOCKET (here a test listener).
need_cmd python3 python3-minimal
python3 - "$WORK/notify.sock" "$WORK/notify.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(120)
with open(sys.argv[2], "a") as out:
    while True:
        msg = s.recv(4096).decode()
        out.write(msg + "\n")
        out.flush()
        if "STOPPING=1" in msg:
            break
PY
listener=$!
wait_until 10 "the notify listener binds" test -S "$WORK/notify.sock"
start_node hub "$HUB" NOTIFY_SOCKET="$WORK/notify.sock"
wait_until 10 "READY=1 arrives" grep -q '^READY=1' "$WORK/notify.out"
ok "trialsyncd sends READY=1 once it is up"
stop_node hub
wait "$listener" || fail "no STOPPING=1 before the listener's deadline"
grep -q '^STOPPING=1' "$WORK/notify.out" || fail "no STOPPING=1: $(cat "$WORK/notify.out")"
ok "trialsyncd sends STOPPING=1 on SIGTERM"

# The example config parses: trialsyncd gets past the config and stops at the
# first file it names that is not there (the key).
mkdir -p "$WORK/example"
cp "$TS_SRC/deploy/node.conf.example" "$WORK/example/node.conf"
if "$TRIALSYNCD" --config "$WORK/example/node.conf" 2> "$WORK/err"; then fail "started without keys"; fi
assert_contains "$(cat "$WORK/err")" "node.key" "example config parses; the missing key is named"
done_checks
