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
expect_usage "--fields-file goes with put" get --node "$WORK/x" subject 101-0001 --fields-file -
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
"$TRIALSYNC" site add 102 --dir "$WORK/trial" --out "$WORK/site-102" --api-port "$(free_port)" \
    --name "Charité, Berlin" > /dev/null 2>&1 || fail "site add 102"
# site list's STATUS column starts at the same character on every row, a name
# with non-ASCII letters or not.
"$TRIALSYNC" site list --dir "$WORK/trial" > "$WORK/sites.txt" || fail "site list"
cols=$(grep -E '^(101|102|BOS1) ' "$WORK/sites.txt" \
    | LC_ALL=C.UTF-8 bash -c 'while IFS= read -r line; do
        prefix=${line%%active*}
        echo "${#prefix}"
    done' | sort -u)
assert_eq 1 "$(echo "$cols" | wc -l)" "site list's columns align by characters ('Charité' too): $(cat "$WORK/sites.txt")"
"$TRIALSYNC" site revoke 102 --dir "$WORK/trial" --reason "only here for its name" > /dev/null \
    || fail "site revoke 102"

rc=0
"$TRIALSYNC" records --node "$HUB" patient > "$WORK/out" 2> "$WORK/err" || rc=$?
assert_eq 1 "$rc" "records of an unknown type fails"
assert_eq "trialsync: unknown type 'patient'; allowed: subject, visit, ae, query, signature, sdv, access, lock, quota" \
    "$(cat "$WORK/err")" "records of an unknown type names the types allowed"
assert_eq 0 "$(record_count "$HUB" subject)" "records of a known type still answers"
# A hub writes only for sites of the trial: 103 was never added.
rc=0
"$TRIALSYNC" put --node "$HUB" subject 103-0001 site=103 sex=F status=screening \
    > "$WORK/out" 2> "$WORK/err" || rc=$?
assert_eq 1 "$rc" "a hub refuses a write for site 103, which is not in the trial"
assert_contains "$(cat "$WORK/err")" "site 103 is not a site of this trial" "the refusal names the site"
assert_contains "$(cat "$WORK/err")" "trialsync site add 103" "and says how to add it"
assert_eq 0 "$(record_count "$HUB" subject)" "nothing was written for site 103"

# ---- get / history: a table on a terminal, JSON in a pipe ---------------------
need_cmd script bsdutils
"$TRIALSYNC" put --node "$HUB" subject 101-0001 sex=F brthdtc=1961 --user "Charité" > /dev/null \
    || fail "put 101-0001"
"$TRIALSYNC" put --node "$HUB" subject 101-0001 sex=M --user ops --reason "typo" > /dev/null \
    || fail "put 101-0001 again"
assert_eq M "$("$TRIALSYNC" get --node "$HUB" subject 101-0001 | json .fields.sex.value)" \
    "get in a pipe prints JSON"
assert_eq 3 "$("$TRIALSYNC" history --node "$HUB" subject 101-0001 | json '.versions | length')" \
    "history in a pipe prints JSON"
# script(1) gives the command a terminal.
on_tty() { script -qec "$(printf '%q ' "$@")" /dev/null | tr -d '\r'; }
on_tty "$TRIALSYNC" get --node "$HUB" subject 101-0001 > "$WORK/get.tty"
grep -q '^FIELD  *VALUE' "$WORK/get.tty" || fail "get on a terminal prints no table: $(cat "$WORK/get.tty")"
grep -q '^sex  *M' "$WORK/get.tty" || fail "get's table lacks sex=M: $(cat "$WORK/get.tty")"
ok "get on a terminal prints a table"
on_tty "$TRIALSYNC" get --node "$HUB" subject 101-0001 --json | json .fields.sex.value > "$WORK/get.json"
assert_eq M "$(cat "$WORK/get.json")" "get --json on a terminal prints JSON"
on_tty "$TRIALSYNC" history --node "$HUB" subject 101-0001 > "$WORK/hist.tty"
# The FIELD column starts at the same character on every row, "Charité" or not
# (${#pre} counts characters in a UTF-8 locale).
export LC_ALL=C.UTF-8
cols=$(grep -E '^(TIME|20)' "$WORK/hist.tty" | while IFS= read -r line; do
    for f in sex brthdtc FIELD; do
        case "$line" in *" $f "*) pre=${line%%" $f "*}; echo "${#pre}"; break ;; esac
    done
done | sort -u)
assert_eq 1 "$(echo "$cols" | wc -l)" "history's columns align by characters ('Charité' too): $(cat "$WORK/hist.tty")"

# ---- status --check ----------------------------------------------------------
check_rc() { local rc=0; "$TRIALSYNC" status --node "$HUB" --check "$@" > "$WORK/check" 2>&1 || rc=$?; echo "$rc"; }
assert_eq 1 "$(check_rc)" "status --check fails while sites never connected"
assert_contains "$(cat "$WORK/check")" "WARNING: node hub1: site 101 never connected" "and says which"
assert_eq 1 "$(wc -l < "$WORK/check" | tr -d ' ')" "status --check prints one line"
assert_eq 0 "$(check_rc --late-saes)" "status --check --late-saes ignores connections"
"$TRIALSYNC" site revoke BOS1 --dir "$WORK/trial" --reason "test: never opened" > /dev/null 2>&1 \
    || fail "site revoke BOS1"
start_node s101 "$WORK/site-101"
ok_check() { [ "$(check_rc)" = 0 ]; }
wait_until 30 "status --check OK once site 101 connects (revoked BOS1 not counted)" ok_check
assert_contains "$(cat "$WORK/check")" "OK: node hub1: 1/1 peers connected" "status --check says OK"
stop_node s101
offline_check() { [ "$(check_rc --offline-max-s 0)" = 1 ] && grep -q "site 101 offline for" "$WORK/check"; }
wait_until 30 "status --check --offline-max-s 0 fails once site 101 is offline" offline_check
ok "status --check names the offline site: $(cat "$WORK/check")"
assert_eq 0 "$(check_rc --offline-max-s 3600)" "an offline site within --offline-max-s is OK"
expect_usage "is not a number of seconds" status --node "$HUB" --check --offline-max-s soon
expect_usage "go with --check" status --node "$HUB" --offline-max-s 5

# ---- put --fields-file: values as JSON on standard input or in a file ----------
printf '{"sex": "F", "brthdtc": "1970-01-02"}' \
    | "$TRIALSYNC" put --node "$HUB" subject 101-0002 --fields-file - > /dev/null \
    || fail "put --fields-file -"
assert_eq "F 1970-01-02" \
    "$("$TRIALSYNC" get --node "$HUB" subject 101-0002 | jq -r '"\(.fields.sex.value) \(.fields.brthdtc.value)"')" \
    "put --fields-file - writes the fields read from standard input"
printf '{"sex": "M"}\n' > "$WORK/fields.json"
"$TRIALSYNC" put --node "$HUB" subject 101-0003 --fields-file "$WORK/fields.json" brthdtc=1980 \
    > /dev/null || fail "put --fields-file PATH field=value"
assert_eq "M 1980" \
    "$("$TRIALSYNC" get --node "$HUB" subject 101-0003 | jq -r '"\(.fields.sex.value) \(.fields.brthdtc.value)"')" \
    "put --fields-file PATH adds the file's fields to the arguments'"
# put_fails STDIN_TEXT EXPECTED: put --fields-file - exits 1 saying EXPECTED.
put_fails() {
    local rc=0
    printf '%s' "$1" | "$TRIALSYNC" put --node "$HUB" subject 101-0004 --fields-file - sex=F \
        > "$WORK/out" 2> "$WORK/err" || rc=$?
    assert_eq 1 "$rc" "put --fields-file with '$1' fails"
    assert_contains "$(cat "$WORK/err")" "$2" "put --fields-file with '$1' says '$2'"
}
put_fails '{"brthdtc": 1970}' "field 'brthdtc': the value must be a JSON string"
put_fails '["sex", "F"]' "must hold one JSON object"
put_fails '{"sex": "F"' "standard input is not JSON"
put_fails '{"sex": "M"}' "field 'sex' is given twice"
"$TRIALSYNC" get --node "$HUB" subject 101-0004 > /dev/null 2>&1 && fail "a refused put wrote 101-0004"
ok "a refused --fields-file writes nothing"
# While put waits for its standard input, its arguments hold no value.
mkfifo "$WORK/fields.fifo"
"$TRIALSYNC" put --node "$HUB" subject 101-0005 --fields-file - < "$WORK/fields.fifo" \
    > "$WORK/fifo.out" 2>&1 &
put_pid=$!
exec 3> "$WORK/fields.fifo"
put_started() { tr '\0' ' ' < "/proc/$put_pid/cmdline" | grep -q -- '--fields-file'; }
wait_until 10 "put running, waiting for its fields" put_started
cmdline=$(tr '\0' ' ' < "/proc/$put_pid/cmdline")
assert_contains "$cmdline" "--fields-file -" "put is running, reading its fields"
case "$cmdline" in *1955-07-30*) fail "the value is in put's arguments: $cmdline" ;; esac
ok "the value is not in put's arguments ($cmdline)"
printf '{"brthdtc": "1955-07-30", "sex": "F"}' >&3
exec 3>&-
wait "$put_pid" || fail "put reading a pipe: $(cat "$WORK/fifo.out")"
assert_eq 1955-07-30 "$("$TRIALSYNC" get --node "$HUB" subject 101-0005 | json .fields.brthdtc.value)" \
    "the value read from the pipe was written"

# The daemon and the CLI take a node alike: its directory or its node.conf.
assert_eq 1955-07-30 "$("$TRIALSYNC" get --node "$HUB/node.conf" subject 101-0005 | json .fields.brthdtc.value)" \
    "the CLI's --node takes the node.conf file too"
rc=0
"$TRIALSYNC" status --node "$WORK/no-such-node" > /dev/null 2> "$WORK/err" || rc=$?
assert_eq 1 "$rc" "a missing node fails"
assert_contains "$(cat "$WORK/err")" "give a node directory or its node.conf" "and says what --node takes"
stop_node hub
"$TRIALSYNCD" --config "$HUB" >> "$WORK/hub-dir.log" 2>&1 &
dir_pid=$!
wait_until 30 "the daemon started with the node directory answers" \
    "$TRIALSYNC" status --node "$HUB" --json
kill -TERM "$dir_pid"
wait "$dir_pid" || fail "trialsyncd --config DIR did not exit 0 on SIGTERM"
ok "trialsyncd --config takes the node directory too"

done_checks
