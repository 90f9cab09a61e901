#!/usr/bin/env bash
# package_check.sh BUILD --install-here: installs the Debian package built from
# BUILD on THIS machine with apt-get, runs the installed daemon as the
# trialsync user against a trial made with the installed CLI, writes and reads
# a record through it, stops it, then removes the package and checks what it
# leaves.  It changes the machine it runs on (a package, a system user,
# /var/lib/trialsync), so it is meant for a brand-new root:
#
#   ../shared/tools/fresh-debian.sh -- make package-check
#
# and refuses to run without --install-here.  The daemon runs without
# systemd here (a fresh root has no systemd as PID 1): as the unit's user,
# with no new privileges and the unit's umask, from the installed paths.  The
# unit's own directives are checked by integration_test_deploy
# (systemd-analyze verify and security).
set -euo pipefail
BUILD=${1:-build}
[ "${2:-}" = --install-here ] || {
    echo "package_check: installs a package on this machine; run it in a fresh root" \
         "(see its header) with --install-here" >&2
    exit 2
}
[ "$(id -u)" = 0 ] || { echo "package_check: needs root (apt-get install)" >&2; exit 2; }
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

cd "$BUILD"
rm -f trialsync_*.deb
cpack -G DEB > cpack.out 2>&1 || fail "cpack: $(tail -n 5 cpack.out)"
deb=$(ls trialsync_*.deb)
[ -f "$deb" ] || fail "cpack made no trialsync_*.deb"
ok "built $deb"

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" > apt-install.out 2>&1 \
    || fail "apt-get install ./$deb: $(tail -n 5 apt-install.out)"
dpkg-query -W -f='${Status}' trialsync | grep -q 'install ok installed' || fail "not installed"
ok "apt-get installed $deb with its Depends"

for f in /usr/sbin/trialsyncd /usr/bin/trialsync /usr/lib/systemd/system/trialsyncd.service \
         /usr/lib/sysusers.d/trialsync.conf /usr/lib/tmpfiles.d/trialsync.conf \
         /usr/share/bash-completion/completions/trialsync; do
    [ -e "$f" ] || fail "$f is not installed"
done
man -w trialsync > /dev/null 2>&1 || [ -e /usr/share/man/man1/trialsync.1.gz ] || fail "no trialsync(1)"
ok "daemon, CLI, unit, sysusers, tmpfiles, completion and man pages are in place"
getent passwd trialsync > /dev/null || fail "postinst did not create the trialsync user"
[ "$(stat -c '%U %a' /var/lib/trialsync)" = "trialsync 700" ] \
    || fail "/var/lib/trialsync is $(stat -c '%U %a' /var/lib/trialsync), not trialsync 700"
ok "postinst made the trialsync user and a private /var/lib/trialsync"
/usr/sbin/trialsyncd --version | grep -q '^trialsyncd ' || fail "installed trialsyncd --version"

# A trial in the node directory, owned by the unit's user.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TRIAL=/var/lib/trialsync/pkg-trial
rm -rf "$TRIAL"
/usr/bin/trialsync init --trial T-PKG --dir "$TRIAL" --peer-port "$(free_port)" \
    --api-port "$(free_port)" > init.out 2>&1 || fail "installed trialsync init: $(cat init.out)"
chown -R trialsync:trialsync "$TRIAL"
ok "the installed CLI made a trial"

LOG=$PWD/pkg-daemon.log
( umask 0077 && exec setpriv --reuid trialsync --regid trialsync --init-groups --no-new-privs \
    /usr/sbin/trialsyncd --config "$TRIAL/hub/node.conf" ) > "$LOG" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    /usr/bin/trialsync status --node "$TRIAL/hub" > /dev/null 2>&1 && break
    kill -0 "$pid" 2> /dev/null || fail "the installed daemon exited: $(tail -n 5 "$LOG")"
    sleep 0.1
done
/usr/bin/trialsync status --node "$TRIAL/hub" > /dev/null 2>&1 || fail "the daemon never answered"
[ "$(ps -o user= -p "$pid")" = trialsync ] || fail "the daemon does not run as trialsync"
ok "the installed daemon runs as trialsync and answers"
# The trial's keys belong to trialsync now: its admin verbs run as that user.
site_port=$(free_port)
setpriv --reuid trialsync --regid trialsync --init-groups /usr/bin/trialsync site add 101 \
    --dir "$TRIAL" --out "$TRIAL/site-101" --api-port "$site_port" > site-add.out 2>&1 \
    || fail "installed trialsync site add: $(cat site-add.out)"
/usr/bin/trialsync put --node "$TRIAL/hub" subject 101-0001 site=101 sex=F status=screening \
    --user pkgcheck > put.out 2>&1 || fail "put: $(cat put.out)"
[ "$(/usr/bin/trialsync get --node "$TRIAL/hub" subject 101-0001 --json | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["fields"]["sex"]["value"])')" = F ] \
    || fail "the record does not read back"
ok "a site added and a write for it through the installed CLI reads back"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 0 ] || fail "the daemon exited $rc on SIGTERM: $(tail -n 5 "$LOG")"
ok "SIGTERM stops it with exit 0"
su -s /bin/sh trialsync -c "/usr/bin/trialsync verify --node $TRIAL/hub" > verify.out 2>&1 \
    || fail "verify of the store as trialsync: $(tail -n 5 verify.out)"
ok "its store verifies"

DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq trialsync > apt-remove.out 2>&1 \
    || fail "apt-get remove: $(tail -n 5 apt-remove.out)"
[ ! -e /usr/sbin/trialsyncd ] && [ ! -e /usr/bin/trialsync ] || fail "binaries left after remove"
[ -d "$TRIAL/hub" ] || fail "remove deleted the node directory (trial data)"
ok "apt-get remove takes the binaries and keeps the trial data"
echo "package check passed"
