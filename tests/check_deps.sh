#!/usr/bin/env bash
# check_deps.sh: the Debian packages the suites need are the ones 'make deps'
# installs, checked rather than remembered.
#
# Every suite declares the commands it calls with `need_cmd COMMAND PACKAGE`
# (tests/integration/lib.sh).  For each declaration this suite checks that
# PACKAGE is in the Makefile's DEPS, that COMMAND is installed, and that dpkg
# says COMMAND really comes from PACKAGE (a wrong name in a declaration would
# send a new machine's owner to the wrong package).  Any other lookup with `command -v`
# in the suites must name a command whose package is in DEPS too.
set -u
TS_SRC=${TS_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$TS_SRC" || exit 1
failures=0
checks=0
bad() { failures=$((failures + 1)); echo "FAIL: $*"; }
good() { checks=$((checks + 1)); echo "ok $checks - $*"; }

deps=" $(make -s --no-print-directory print-deps) "
[ "$deps" != "  " ] || { echo "FAIL: 'make print-deps' printed nothing"; exit 1; }

package_of() {  # COMMAND: the Debian package that ships it, or nothing
    local path real
    path=$(command -v "$1" 2>/dev/null) || return 0
    case "$path" in /*) ;; *) return 0 ;; esac
    real=$(readlink -f "$path")
    # The path as called first: /usr/bin/python3 belongs to python3-minimal,
    # the python3.11 it links to to python3.11-minimal.
    { dpkg -S "$path" 2>/dev/null || dpkg -S "$real" 2>/dev/null \
        || dpkg -S "/usr$real" 2>/dev/null; } | head -n1 | cut -d: -f1
}

# A declaration must name its package, or a new machine is told nothing.
while read -r line; do
    [ -n "$line" ] && bad "need_cmd without a package: $line"
done <<< "$(grep -rnE --exclude=check_deps.sh '^[[:space:]]*need_cmd [^ ]+[[:space:]]*$' tests bench deploy || true)"

declared=$(grep -rhoE --exclude=check_deps.sh 'need_cmd [A-Za-z0-9_.+-]+ [a-z0-9.+-]+' tests bench deploy | sort -u)
[ -n "$declared" ] || bad "no suite declares a command with need_cmd"
while read -r _ cmd pkg; do
    [ -n "$cmd" ] || continue
    case "$deps" in *" $pkg "*) ;; *) bad "need_cmd $cmd $pkg: '$pkg' is not in the Makefile's DEPS"; continue ;; esac
    command -v "$cmd" > /dev/null 2>&1 || { bad "'$cmd' is not installed (run 'make deps')"; continue; }
    have=$(package_of "$cmd")
    if [ -n "$have" ] && [ "$have" != "$pkg" ]; then
        bad "need_cmd $cmd $pkg: dpkg says '$cmd' comes from '$have'"
        continue
    fi
    good "$cmd comes from $pkg, which make deps installs"
done <<< "$declared"

for cmd in $(grep -rhoE --exclude=check_deps.sh 'command -v [A-Za-z0-9_.+-]+' tests bench deploy Makefile | awk '{print $3}' | sort -u); do
    case "$cmd" in mmdebstrap) continue ;; esac  # only the fresh-machine check uses it
    if ! command -v "$cmd" > /dev/null 2>&1; then
        bad "the suites look for '$cmd', which is not installed and no DEPS package provides"
        continue
    fi
    pkg=$(package_of "$cmd")
    [ -n "$pkg" ] || continue  # a shell builtin or a function
    case "$deps" in
        *" $pkg "*) good "'$cmd' ($pkg) is in DEPS" ;;
        *) bad "the suites call '$cmd' from '$pkg', which the Makefile's DEPS does not list" ;;
    esac
done

echo "$checks passed, $failures failed"
[ "$failures" = 0 ]
