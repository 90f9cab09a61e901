#!/usr/bin/env bash
# The man pages render without a warning, and say everything the programs
# do: every verb of `trialsync --help` and every option of each verb's
# --help in trialsync(1), trialsyncd's options in trialsyncd(8), and every
# section and key node/config.c accepts in trialsync.conf(5).
. "$(dirname "$0")/lib.sh"
need_cmd man man-db
need_cmd lexgrog man-db
need_cmd groff groff-base

MAN="$TS_SRC/man"
for page in trialsync.1 trialsyncd.8 trialsync.conf.5; do
    [ -f "$MAN/$page" ] || fail "man/$page is missing"
    # man --warnings passes -ww to groff; anything on stderr is a warning.
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$MAN/$page" > "$WORK/$page.txt" 2> "$WORK/$page.warn"
    [ ! -s "$WORK/$page.warn" ] || fail "man --warnings $page: $(head -n 5 "$WORK/$page.warn")"
    groff -ww -z -man "$MAN/$page" 2> "$WORK/$page.groff" || fail "groff $page failed"
    [ ! -s "$WORK/$page.groff" ] || fail "groff -ww $page: $(head -n 5 "$WORK/$page.groff")"
    lexgrog "$MAN/$page" > /dev/null 2>&1 || fail "lexgrog cannot read the NAME section of $page"
    # The source with roff's escapes undone, for the checks below (rendered
    # text may hyphenate an option at a line end).
    sed -e 's/\\-/-/g' -e 's/\\f[BIR]//g' -e 's/\\(en/-/g' "$MAN/$page" > "$WORK/$page.src"
done
ok "the man pages render without warnings (man --warnings, groff -ww, lexgrog)"

# trialsync(1): every verb, and every option each verb's --help names.
"$TRIALSYNC" --help > "$WORK/help"
verbs=$(sed -n 's/^  \([a-z][a-z]*\)\( \(add\|list\|revoke\|renew\)\)\{0,1\}[ ].*/\1/p' "$WORK/help" | sort -u)
[ -n "$verbs" ] || fail "no verbs in trialsync --help"
for v in $verbs; do
    grep -q "^\.B $v\b" "$WORK/trialsync.1.src" || fail "trialsync(1) does not describe the verb '$v'"
    "$TRIALSYNC" "$v" --help > "$WORK/help-$v" 2>&1 || true
    for o in $(grep -o -- '--[a-z][a-z-]*' "$WORK/help-$v" | sort -u); do
        grep -q -- "$o\b" "$WORK/trialsync.1.src" \
            || fail "trialsync(1) does not mention '$o' of '$v --help'"
        grep -q -- "$o\b" "$TS_SRC/deploy/bash-completion/trialsync" \
            || fail "the bash completion does not offer '$o' of '$v --help'"
    done
done
ok "trialsync(1) describes every verb and option: $(echo $verbs)"
for v in $verbs; do
    grep -q "\b$v\b" "$TS_SRC/deploy/bash-completion/trialsync" \
        || fail "the bash completion does not offer the verb '$v'"
done
ok "the bash completion offers every verb and option"
# It completes in a real bash: the verbs, then an action, then the options.
comp() {  # WORDS...: what the completion offers after them (the last is the word typed)
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _trialsync; printf "%s\n" "${COMPREPLY[@]}"' \
        _ "$TS_SRC/deploy/bash-completion/trialsync" "$@"
}
assert_contains "$(comp trialsync us)" "user" "completion: 'trialsync us' offers user"
assert_contains "$(comp trialsync user d)" "disable" "completion: 'user d' offers disable"
assert_contains "$(comp trialsync user add ana --ro)" "--role" "completion: 'user add --ro' offers --role"
assert_contains "$(comp trialsync user add ana --role m)" "monitor" "completion: --role offers the roles"
grep -q -- '--version' "$WORK/trialsync.1.src" || fail "trialsync(1) lacks --version"

# trialsyncd(8): its options and signals.
for o in $("$TRIALSYNCD" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    grep -q -- "$o\b" "$WORK/trialsyncd.8.src" || fail "trialsyncd(8) does not mention '$o'"
done
for s in SIGTERM SIGHUP; do
    grep -q "$s" "$WORK/trialsyncd.8.src" || fail "trialsyncd(8) does not describe $s"
done
ok "trialsyncd(8) describes every option and SIGTERM/SIGHUP"

# trialsync.conf(5): every section and key config.c accepts.
sections=$(grep -o 'strcmp(section, "[a-z_]*")' "$TS_SRC/node/config.c" | sed 's/.*"\(.*\)".*/\1/' | sort -u)
keys=$(grep -o 'strcmp(key, "[a-z_]*")' "$TS_SRC/node/config.c" | sed 's/.*"\(.*\)".*/\1/' | sort -u)
[ -n "$sections" ] && [ -n "$keys" ] || fail "no sections or keys found in node/config.c"
for s in $sections; do
    grep -q "^\.SH \"\[$s\]\"" "$WORK/trialsync.conf.5.src" || fail "trialsync.conf(5) has no [$s] section"
done
for k in $keys; do
    grep -q "^\.B $k$" "$WORK/trialsync.conf.5.src" || fail "trialsync.conf(5) does not describe the key '$k'"
done
ok "trialsync.conf(5) describes every section and key of node/config.c: $(echo $keys)"
done_checks
