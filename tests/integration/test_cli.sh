#!/usr/bin/env bash
# The trialsync command as an operator meets it: one option parser for every
# verb (what a usage error says), record types and site ids checked before
# anything is sent, get/history as a table on a terminal and JSON in a pipe,
# and `status --check` for Nagios-style checks.
. "$(dirname "$0")/lib.sh"

# expect_usage EXPECTED_TEXT COMMAND...: exits 2, says EXPECTED_TEXT on stderr.
expect_usage() {
    local want=$1 rc=0
    shift
    "$TRIALSYNC" "$@" > "$WORK/out" 2> "$WORK/err" || rc=$?
    assert_eq 2 "$rc" "trialsync $* exits 2"
    assert_contains "$(cat "$WORK/err")" "$want" "trialsync $* says '$want'"
}

# ---- the option parser ----------------------------------------------------
"$TRIALSYNC" crl renew --help > "$WORK/out" || fail "crl renew --help exited non-zero"
assert_contains "$(cat "$WORK/out")" "usage: trialsync crl renew" "crl renew --help prints its usage"
for v in put get history records status digest export import backup restore verify init; do
    "$TRIALSYNC" $v --help > "$WORK/out" 2>&1 || fail "$v --help exited non-zero"
    grep -q "usage: trialsync $v" "$WORK/out" || fail "$v --help prints no usage"
done
ok "every verb's --help prints its usage and exits 0"
expect_usage "option --reason needs a value" put --node "$WORK/x" subject 101-0001 sex=F --reason
expect_usage "option --node needs a value" get --node
expect_usage "unknown option --bogus" export --node "$WORK/x" --bogus
expect_usage "--out SITEDIR is required" site add 101 --dir "$WORK/trial"
expect_usage "usage: trialsync site add" site add 101 --dir "$WORK/trial"
expect_usage "--out PATH is required" backup --node "$WORK/x"
expect_usage "--node NODEDIR is required" get subject 101-0001
expect_usage "no fields given" put --node "$WORK/x" subject 101-0001
expect_usage "unexpected argument 'extra'" get --node "$WORK/x" subject 101-0001 extra
expect_usage "unknown action 'renue'" crl renue --dir "$WORK/trial"

new_trial CLI-1
for bad in abc.d 10_1 "a-1" ..; do
    if "$TRIALSYNC" site add "$bad" --dir "$WORK/trial" --out "$WORK/bad" > "$WORK/out" 2>&1; then
        fail "site add '$bad' was accepted"
    fi
    assert_contains "$(cat "$WORK/out")" "is not a valid site id" "site add '$bad' is refused"
done
[ ! -e "$WORK/bad" ] || fail "a refused site add wrote $WORK/bad"

start_node hub "$HUB"
add_site 101
add_site BOS1
assert_contains "$("$TRIALSYNC" site list --dir "$WORK/trial")" "BOS1" "a site id of letters and digits is accepted"

rc=0
"$TRIALSYNC" records --node "$HUB" patient > "$WORK/out" 2> "$WORK/err" || rc=$?
assert_eq 1 "$rc" "records of an unknown type fails"
assert_eq "trialsync: unknown type 'patient'; allowed: subject, visit, ae, query" \
    "$(cat "$WORK/err")" "records of an unknown type names the types allowed"
assert_eq 0 "$(record_count "$HUB" subject)" "records of a known type still answers"
done_checks
