#!/usr/bin/env bash
# Installing: `make install` (cmake --install) puts every file where the
# shipped unit, sysusers.d and tmpfiles.d entries expect it, under DESTDIR;
# systemd accepts the installed unit with the installed daemon; sysusers and
# tmpfiles create the trialsync user and a private /var/lib/trialsync in that
# root; and the Debian package CPack builds holds the same files and depends
# on the runtime libraries.  (Installing the .deb with dpkg into a fresh
# Debian root is left to ../shared/tools/fresh-debian.sh: too heavy here.)
. "$(dirname "$0")/lib.sh"
need_cmd systemd-analyze systemd
need_cmd systemd-sysusers systemd
need_cmd systemd-tmpfiles systemd
need_cmd dpkg-deb dpkg
need_cmd dpkg-shlibdeps dpkg-dev
need_cmd cpack cmake
# CPack reads the binaries' types with file(1) to compute the Depends.
need_cmd file file

version=$(sed -n 's/^project(trialsync VERSION \([0-9.]*\).*/\1/p' "$TS_SRC/CMakeLists.txt")
[ -n "$version" ] || fail "no VERSION in CMakeLists.txt's project()"
assert_eq "trialsyncd $version" "$("$TRIALSYNCD" --version)" "trialsyncd --version is CMakeLists.txt's version"
assert_eq "trialsync $version" "$("$TRIALSYNC" --version)" "trialsync --version is CMakeLists.txt's version"

# ---- make install into a DESTDIR, prefix /usr (what the package does) ----------
ROOT="$WORK/root"
DESTDIR="$ROOT" cmake --install "$TS_BIN" --prefix /usr > "$WORK/install.out" 2>&1 \
    || fail "cmake --install: $(tail -n 5 "$WORK/install.out")"
files="usr/sbin/trialsyncd usr/bin/trialsync usr/lib/systemd/system/trialsyncd.service
       usr/lib/sysusers.d/trialsync.conf usr/lib/tmpfiles.d/trialsync.conf
       usr/share/doc/trialsync/examples/node.conf.example usr/share/doc/trialsync/operations.md
       usr/share/man/man1/trialsync.1 usr/share/man/man8/trialsyncd.8
       usr/share/man/man5/trialsync.conf.5 usr/share/bash-completion/completions/trialsync"
for f in $files; do
    [ -f "$ROOT/$f" ] || fail "make install did not install /$f"
done
ok "make install installs the binaries, unit, sysusers.d, tmpfiles.d, example config, docs, man pages, bash completion"

UNIT="$ROOT/usr/lib/systemd/system/trialsyncd.service"
exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$UNIT")
assert_eq /usr/sbin/trialsyncd "$exec_path" "the installed unit's ExecStart names the installed daemon"
[ -x "$ROOT$exec_path" ] || fail "$exec_path is not executable in the install root"
assert_eq "trialsyncd $version" "$("$ROOT$exec_path" --version)" "the installed daemon runs"
grep -q '^User=trialsync$' "$UNIT" || fail "the unit does not run as trialsync"
grep -q '^u trialsync ' "$ROOT/usr/lib/sysusers.d/trialsync.conf" || fail "sysusers.d has no trialsync user"
grep -q '^d /var/lib/trialsync 0700 trialsync trialsync' "$ROOT/usr/lib/tmpfiles.d/trialsync.conf" \
    || fail "tmpfiles.d does not make /var/lib/trialsync private to trialsync"
ok "unit, sysusers.d and tmpfiles.d agree: user trialsync, /var/lib/trialsync"

# systemd-analyze verify --root resolves ExecStart inside the root; the unit's
# dependencies (targets) and ExecReload's /bin/kill (procps) come from this
# machine.
cp /usr/lib/systemd/system/*.target "$ROOT/usr/lib/systemd/system/"
mkdir -p "$ROOT/bin"
cp /bin/kill "$ROOT/bin/kill"
if ! SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no --root="$ROOT" "$UNIT" \
    > "$WORK/verify.out" 2>&1; then
    fail "systemd-analyze verify of the installed unit: $(cat "$WORK/verify.out")"
fi
if grep -F "trialsyncd.service" "$WORK/verify.out"; then
    fail "systemd-analyze verify warns about the installed unit"
fi
ok "systemd-analyze verify accepts the installed unit with the installed daemon"
# And it does fail when the daemon is not there (the check is real).
mv "$ROOT/usr/sbin/trialsyncd" "$WORK/trialsyncd.moved"
if SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no --root="$ROOT" "$UNIT" > "$WORK/verify2.out" 2>&1; then
    fail "systemd-analyze verify passed without the daemon"
fi
assert_contains "$(cat "$WORK/verify2.out")" "not executable" "verify refuses the unit when the daemon is missing"
mv "$WORK/trialsyncd.moved" "$ROOT/usr/sbin/trialsyncd"

# What the package's postinst runs, against the root.
mkdir -p "$ROOT/etc"
touch "$ROOT/etc/passwd" "$ROOT/etc/group" "$ROOT/etc/shadow" "$ROOT/etc/gshadow"
systemd-sysusers --root="$ROOT" > "$WORK/sysusers.out" 2>&1 || fail "systemd-sysusers: $(cat "$WORK/sysusers.out")"
grep -q '^trialsync:x:[0-9]*:[0-9]*:.*:/var/lib/trialsync:' "$ROOT/etc/passwd" \
    || fail "systemd-sysusers made no trialsync user: $(cat "$ROOT/etc/passwd")"
ok "systemd-sysusers creates the trialsync user"
if [ "$(id -u)" = 0 ]; then
    systemd-tmpfiles --root="$ROOT" --create "$ROOT/usr/lib/tmpfiles.d/trialsync.conf" \
        > "$WORK/tmpfiles.out" 2>&1 || fail "systemd-tmpfiles: $(cat "$WORK/tmpfiles.out")"
    uid=$(sed -n 's/^trialsync:x:\([0-9]*\):.*/\1/p' "$ROOT/etc/passwd")
    assert_eq "$uid 700" "$(stat -c '%u %a' "$ROOT/var/lib/trialsync")" \
        "systemd-tmpfiles creates /var/lib/trialsync, mode 0700, owned by trialsync"
fi

# ---- the Debian package ----------------------------------------------------------
cpack -G DEB -B "$WORK/pkg" --config "$TS_BIN/CPackConfig.cmake" > "$WORK/cpack.out" 2>&1 \
    || fail "cpack: $(tail -n 10 "$WORK/cpack.out")"
deb=$(ls "$WORK"/pkg/trialsync_"$version"_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || fail "cpack made no trialsync_${version}_*.deb: $(tail -n 5 "$WORK/cpack.out")"
ok "make package (cpack) builds $(basename "$deb")"
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./||' > "$WORK/contents"
for f in $files; do
    grep -qx "$f" "$WORK/contents" || fail "the package lacks /$f"
done
ok "the package holds the same files"
dpkg-deb -f "$deb" Depends > "$WORK/depends"
for lib in libuv1 librocksdb libssl3 libprotobuf-c1 libjansson4 libinih1 libsystemd0; do
    grep -q "$lib" "$WORK/depends" || fail "Depends lacks $lib: $(cat "$WORK/depends")"
done
if grep -q 'libcunit' "$WORK/depends"; then fail "the package depends on CUnit"; fi
ok "Depends names the runtime libraries, not CUnit: $(cat "$WORK/depends")"
dpkg-deb -e "$deb" "$WORK/control"
for s in postinst prerm postrm; do
    [ -x "$WORK/control/$s" ] || fail "the package has no $s"
done
grep -q 'systemd-sysusers' "$WORK/control/postinst" || fail "postinst does not run systemd-sysusers"
grep -q 'systemd-tmpfiles' "$WORK/control/postinst" || fail "postinst does not run systemd-tmpfiles"
ok "postinst creates the user and the node directory"
done_checks
