#!/usr/bin/env bash
# promtool.sh: runs Prometheus's promtool with the arguments given, first
# fetching the binary alone when no promtool is on PATH.
#
#   tests/tools/promtool.sh ARGS...     promtool ARGS; its exit status is ours
#   tests/tools/promtool.sh --path      prints the promtool it would run
#
# On Debian 12 promtool comes only in the `prometheus` package, and
# `apt-get install prometheus` is not what a build or test machine wants: it
# installs a whole Prometheus server (96 MB with its web assets), creates a
# system user and enables and starts prometheus.service listening on :9090
# (and, with recommends, a node exporter).  So when promtool is not on PATH
# this downloads the package's .deb with `apt-get download` (no install, no
# maintainer scripts, nothing started) and extracts usr/bin/promtool only,
# into a cache in the build tree:
#   PROMTOOL_CACHE  the cache directory (default $TS_BIN/tools, the build
#                   directory the suites run in; else build/tools)
# The binary is kept (the .deb is not) and checked to run before it is used.
# A cold apt cache (no package lists yet, as on a fresh machine whose
# `make deps` found everything installed) gets `apt-get update` when we are
# root; otherwise the message says to run it.
set -euo pipefail
TS_SRC=${TS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CACHE=${PROMTOOL_CACHE:-${TS_BIN:-$TS_SRC/build}/tools}
CACHED="$CACHE/promtool"

die() { echo "promtool.sh: $*" >&2; exit 1; }
# As in tests/integration/lib.sh: a missing command fails, naming its package.
need_cmd() {
    command -v "$1" > /dev/null 2>&1 || die "'$1' is not installed: it comes from Debian's '$2' package, which 'make deps' installs"
}

# fetch: puts a working promtool at $CACHED.  Built in a scratch directory
# and renamed into place, so a suite running beside us never sees half a
# binary.
fetch() {
    need_cmd apt-get apt
    need_cmd dpkg-deb dpkg
    need_cmd tar tar
    mkdir -p "$CACHE"
    local tmp
    tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
    # shellcheck disable=SC2064  # $tmp is fixed now
    trap "rm -rf '$tmp'" EXIT
    # apt's sandbox user (_apt) must be able to write where the .deb goes.
    chmod 0755 "$tmp"
    [ "$(id -u)" != 0 ] || chown _apt "$tmp" 2>/dev/null || true
    if ! (cd "$tmp" && apt-get download -q prometheus) > "$tmp/apt.log" 2>&1; then
        [ "$(id -u)" = 0 ] || die "apt-get download prometheus failed (as root, run 'apt-get update' first): $(cat "$tmp/apt.log")"
        echo "promtool.sh: apt-get download prometheus failed; running apt-get update" >&2
        apt-get update -qq > "$tmp/update.log" 2>&1 || die "apt-get update failed: $(cat "$tmp/update.log")"
        (cd "$tmp" && apt-get download -q prometheus) > "$tmp/apt.log" 2>&1 \
            || die "apt-get download prometheus failed: $(cat "$tmp/apt.log")"
    fi
    local debs=("$tmp"/prometheus_*.deb) deb
    deb=${debs[0]}
    [ -f "$deb" ] || die "apt-get download left no prometheus_*.deb: $(cat "$tmp/apt.log")"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool \
        || die "$deb holds no usr/bin/promtool"
    "$tmp/usr/bin/promtool" --version > "$tmp/version" 2>&1 \
        || die "the extracted promtool does not run: $(cat "$tmp/version")"
    echo "promtool.sh: fetched $(basename "$deb")'s promtool into $CACHE" >&2
    mv -f "$tmp/usr/bin/promtool" "$CACHED"
    rm -rf "$tmp"
    trap - EXIT
}

# Looked up with type -P, not command -v: promtool is deliberately not a
# 'make deps' package (see above), and tests/check_deps.sh holds every
# `command -v` lookup in the suites to one.
tool=$(type -P promtool || true)
if [ -z "$tool" ]; then
    [ -x "$CACHED" ] || fetch
    tool=$CACHED
fi
if [ "${1:-}" = --path ]; then
    echo "$tool"
    exit 0
fi
exec "$tool" "$@"
