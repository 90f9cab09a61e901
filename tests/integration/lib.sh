# lib.sh: what the integration and fault suites share.  Sourced, not run.
#
# Starts real trialsyncd processes with real certificates and RocksDB
# directories on loopback; every process started is killed on exit.
#   TS_BIN       the build directory (trialsyncd, trialsync)
#   TS_SRC       the source tree
#   TS_TEST_TMP  where scratch directories go
set -u
TS_BIN=${TS_BIN:?TS_BIN must name the build directory}
TS_SRC=${TS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TRIALSYNCD="$TS_BIN/trialsyncd"
TRIALSYNC="$TS_BIN/trialsync"
mkdir -p "${TS_TEST_TMP:-/tmp}"
WORK=$(mktemp -d "${TS_TEST_TMP:-/tmp}/$(basename "$0" .sh).XXXXXX")
declare -A NODE_PIDS=()
CHECKS=0

cleanup() {
    local name
    for name in "${!NODE_PIDS[@]}"; do
        kill -9 "${NODE_PIDS[$name]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "${KEEP_WORK:-0}" != 1 ] && [ "${FAILED:-0}" = 0 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() {
    FAILED=1
    echo "FAIL: $*" >&2
    for log in "$WORK"/*.log; do
        [ -f "$log" ] || continue
        echo "---- last lines of $log" >&2
        tail -n 25 "$log" >&2
    done
    exit 1
}

ok() { CHECKS=$((CHECKS + 1)); echo "ok $CHECKS - $*"; }

assert_eq() {  # expected actual message
    [ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
    ok "$3"
}

assert_contains() {  # haystack needle message
    case "$1" in *"$2"*) ok "$3" ;; *) fail "$3: '$2' not in: $1" ;; esac
}

# A port nothing listens on, from a range unlikely to be in use.
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((10000 + RANDOM % 22000))  # below the ephemeral range (32768+)
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    fail "no free port found"
}

# json FILTER: reads JSON on stdin and prints what the jq filter selects.
json() { jq -r "$1"; }

# new_trial TRIAL: creates $WORK/trial with a hub on free ports.
new_trial() {
    HUB_PEER_PORT=$(free_port)
    HUB_API_PORT=$(free_port)
    "$TRIALSYNC" init --trial "$1" --dir "$WORK/trial" --peer-port "$HUB_PEER_PORT" \
        --api-port "$HUB_API_PORT" > "$WORK/init.out" || fail "trialsync init failed"
    HUB="$WORK/trial/hub"
}

# add_site SITE: issues a site bundle into $WORK/site-SITE (the hub must run
# for the membership record; without it the bundle is still issued).
add_site() {
    "$TRIALSYNC" site add "$1" --dir "$WORK/trial" --out "$WORK/site-$1" \
        --api-port "$(free_port)" --name "Site $1" > "$WORK/site-add-$1.out" 2>&1 \
        || fail "site add $1: $(cat "$WORK/site-add-$1.out")"
}

# hub_and_two_sites TRIAL [HUBNAME]: a new trial with its hub (traced as
# HUBNAME, default hub) and sites 101 and 102 running; S1 and S2 name the
# sites' directories.
hub_and_two_sites() {
    new_trial "$1"
    start_node "${2:-hub}" "$HUB"
    add_site 101
    add_site 102
    S1="$WORK/site-101"
    S2="$WORK/site-102"
    start_node s101 "$S1"
    start_node s102 "$S2"
}

# add_user USER ROLE [--site SITE]: a person's account in the trial (the
# first hub must run), printed name "Person USER"; the token lands in
# $WORK/trial/users/USER.token.
add_user() {
    local u=$1 role=$2
    shift 2
    "$TRIALSYNC" user add "$u" --role "$role" --name "Person $u" --dir "$WORK/trial" "$@" \
        > "$WORK/user-$u.out" 2>&1 || fail "user add $u: $(cat "$WORK/user-$u.out")"
}

# as USER CMD...: the CLI signed in as USER (TRIALSYNC_TOKEN_FILE).
as() {
    local u=$1
    shift
    TRIALSYNC_TOKEN_FILE="$WORK/trial/users/$u.token" "$TRIALSYNC" "$@"
}

# Deadlines are generous on purpose: the suites must pass on a machine whose
# cores are busy with other work (and under ASan), so a deadline only bounds a
# hang; it never measures speed.
TS_START_SECS=${TS_START_SECS:-90}
TS_STOP_SECS=${TS_STOP_SECS:-60}

# start_node NAME NODEDIR [VAR=VALUE...]: starts trialsyncd (with those
# variables in its environment), waits until its API answers.
start_node() {
    local name=$1 dir=$2 deadline=$((SECONDS + TS_START_SECS))
    shift 2
    env "$@" "$TRIALSYNCD" --config "$dir/node.conf" >> "$WORK/$name.log" 2>&1 &
    NODE_PIDS[$name]=$!
    while [ "$SECONDS" -lt "$deadline" ]; do
        if "$TRIALSYNC" status --node "$dir" --json > /dev/null 2>&1; then return 0; fi
        kill -0 "${NODE_PIDS[$name]}" 2>/dev/null || fail "node $name exited at start"
        sleep 0.05
    done
    fail "node $name did not answer within $TS_START_SECS s"
}

# stop_node NAME: SIGTERM, and it must exit 0 (a hang is bounded by a deadline).
stop_node() {
    local name=$1 pid=${NODE_PIDS[$1]} deadline=$((SECONDS + TS_STOP_SECS))
    kill -TERM "$pid"
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            local rc=$?
            unset "NODE_PIDS[$name]"
            [ "$rc" = 0 ] || fail "node $name exited $rc on SIGTERM"
            return 0
        fi
        sleep 0.05
    done
    fail "node $name did not stop within $TS_STOP_SECS s of SIGTERM"
}

kill_node() {  # NAME: SIGKILL, no questions
    local pid=${NODE_PIDS[$1]}
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    unset "NODE_PIDS[$1]"
}

# wait_until SECONDS MESSAGE COMMAND...: polls COMMAND until it succeeds.  The
# deadline is scaled by TS_TIME_SCALE (default 3) so a loaded machine or a
# sanitizer build gets room; it bounds a hang, it does not measure speed.
TS_TIME_SCALE=${TS_TIME_SCALE:-3}
wait_until() {
    local secs=$1 msg=$2
    shift 2
    local deadline=$((SECONDS + secs * TS_TIME_SCALE))
    while :; do
        if "$@" > /dev/null 2>&1; then return 0; fi
        [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.1
    done
    fail "timed out after $((secs * TS_TIME_SCALE))s: $msg"
}

# need_cmd COMMAND PACKAGE: fails (never skips) naming the Debian package that
# 'make deps' installs, so a new machine says what it lacks.
need_cmd() {
    command -v "$1" > /dev/null 2>&1 || fail "'$1' is not installed: it comes from Debian's '$2' package, which 'make deps' installs"
}

# Every suite reads JSON with jq (json, record_count, status checks).
need_cmd jq jq
need_cmd timeout coreutils

# Trace positions and times, for checks that follow a positive marker.
# log_lines FILE: how many lines FILE has now (0 when it does not exist yet).
log_lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
# since_line FILE N: the lines of FILE after its first N.
since_line() { tail -n +$(($2 + 1)) "$1"; }
# trace_ms LINE: the epoch milliseconds of a trace line's timestamp
# (2026-11-20T10:00:00.123Z ...).
trace_ms() { date -u -d "${1%% *}" +%s%3N; }
now_ms() { date +%s%3N; }

digest() { "$TRIALSYNC" digest --node "$1"; }
record_count() { "$TRIALSYNC" records --node "$1" "${2:-}" | json .count; }

done_checks() { echo "$CHECKS passed, 0 failed"; }

# node_api NODEDIR PATH [CURL ARGS...]: GET PATH from the node's API with its
# token (curl, which the suite must need_cmd); prints the body.
node_api() {
    local dir=$1 path=$2 port
    shift 2
    port=$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$dir/node.conf" | head -1)
    curl -sS --max-time 30 -H "Authorization: Bearer $(cat "$dir/api.token")" "$@" \
        "http://127.0.0.1:$port$path"
}
