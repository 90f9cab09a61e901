#!/usr/bin/env bash
# The example alert rules and the Grafana dashboard in deploy/: promtool
# parses the rules (`promtool check rules`) and their unit tests pass
# (`promtool test rules deploy/prometheus-alerts.test.yml`), every alert has
# a case that fires and one that must not, and a rule or expectation broken
# on purpose fails them.  Every metric named is one the node exports and
# every alert's runbook_url points to a heading of docs/operations.md.
# promtool comes from tests/tools/promtool.sh (the binary alone, out of
# Debian's prometheus .deb, cached in the build directory; the package is
# never installed).
. "$(dirname "$0")/lib.sh"
need_cmd jq jq

RULES="$TS_SRC/deploy/prometheus-alerts.yml"
RULE_TESTS="$TS_SRC/deploy/prometheus-alerts.test.yml"
DASH="$TS_SRC/deploy/grafana-dashboard.json"
DOC="$TS_SRC/docs/operations.md"
METRICS_C="$TS_SRC/node/metrics.c"

# The families the node can export: the name of every family metrics.c
# writes ("trialsync_..." or "process_..." string literals), and for the
# histogram its _bucket, _sum and _count series.
grep -o '"\(trialsync\|process\)_[a-z0-9_]*"' "$METRICS_C" | tr -d '"' | sort -u > "$WORK/exported"
[ "$(wc -l < "$WORK/exported")" -ge 30 ] || fail "too few metric families found in node/metrics.c: $(wc -l < "$WORK/exported")"
grep -o '"[a-z_]*", "histogram"' "$METRICS_C" | cut -d'"' -f2 | while read -r h; do
    printf '%s_bucket\n%s_sum\n%s_count\n' "$h" "$h" "$h"
done >> "$WORK/exported"
grep -qx trialsync_commit_duration_seconds_bucket "$WORK/exported" || fail "the histogram's series were not found in node/metrics.c"
ok "node/metrics.c exports $(sort -u "$WORK/exported" | wc -l) metric names"

# check_names WHAT FILE: every trialsync_* / process_* name in FILE is exported.
check_names() {
    local what=$1 file=$2 n=0 name
    grep -o '\b\(trialsync\|process\)_[a-z0-9_]*' "$file" | sort -u > "$WORK/named"
    [ -s "$WORK/named" ] || fail "$what names no metric"
    while read -r name; do
        grep -qx "$name" "$WORK/exported" || fail "$what names $name, which the node does not export"
        n=$((n + 1))
    done < "$WORK/named"
    ok "$what: all $n metric names are exported"
}

# The rules without their comments (a comment may name an old metric).
sed 's/^\s*#.*//' "$RULES" > "$WORK/rules"
check_names "deploy/prometheus-alerts.yml" "$WORK/rules"
# A deprecated family is not what alerts should be built on.
if grep -q 'trialsync_peer_last_seen_age_seconds' "$WORK/rules"; then
    fail "an alert uses the deprecated trialsync_peer_last_seen_age_seconds"
fi
ok "no alert uses a deprecated metric"

# Every alert has a runbook_url, and each one's anchor is a heading of the
# doc it names (GitHub's anchors: lower case, punctuation dropped, spaces
# become hyphens).
alerts=$(grep -c '^\s*- alert:' "$WORK/rules")
books=$(grep -c '^\s*runbook_url:' "$WORK/rules")
[ "$alerts" -gt 20 ] || fail "only $alerts alerts found in $RULES"
assert_eq "$alerts" "$books" "every alert has a runbook_url"
grep '^#\{1,6\} ' "$DOC" | sed 's/^#* //' | tr '[:upper:]' '[:lower:]' |
    sed 's/[^a-z0-9 _-]//g; s/ /-/g' > "$WORK/anchors"
sed -n "s/^\s*runbook_url:\s*'\([^']*\)'.*/\1/p" "$WORK/rules" | sort -u > "$WORK/books"
while read -r url; do
    case "$url" in docs/operations.md\#?*) ;; *) fail "runbook_url $url is not docs/operations.md#SECTION" ;; esac
    anchor=${url#*#}
    grep -qx "$anchor" "$WORK/anchors" || fail "runbook_url $url: docs/operations.md has no heading with anchor #$anchor"
done < "$WORK/books"
ok "every runbook_url ($(wc -l < "$WORK/books") distinct) points to a heading of docs/operations.md"
# Descriptions that cite a section by name cite one that exists.
grep -o 'operations.md, "[^"]*"' "$WORK/rules" | sed 's/.*"\(.*\)"/\1/' | sort -u |
    while read -r section; do
        grep -qx "#\{1,6\} $section" "$DOC" || fail "an alert cites docs/operations.md, \"$section\", which has no such heading"
    done || exit 1  # fail ran in the pipeline's subshell
ok "sections cited by name in alert descriptions exist"
# Every alert appears in the doc's tables.
grep -o '^\s*- alert: [A-Za-z]*' "$WORK/rules" | awk '{print $3}' | while read -r a; do
    grep -q "\`$a\`" "$DOC" || fail "alert $a is not described in docs/operations.md"
done || exit 1  # fail ran in the pipeline's subshell
ok "every alert is described in docs/operations.md"

# The Grafana dashboard: valid JSON, panels with queries, every query's
# metrics exported.
jq -e . "$DASH" > /dev/null || fail "deploy/grafana-dashboard.json is not valid JSON"
ok "deploy/grafana-dashboard.json is valid JSON"
jq -r '[.. | objects | .expr? // empty, .query? // empty | strings] | .[]' "$DASH" > "$WORK/exprs"
[ "$(jq '[.panels[] | .targets[]?] | length' "$DASH")" -ge 10 ] || fail "the dashboard has fewer than 10 queries"
check_names "deploy/grafana-dashboard.json" "$WORK/exprs"
ids=$(jq '[.panels[].id] | length' "$DASH")
uniq_ids=$(jq '[.panels[].id] | unique | length' "$DASH")
assert_eq "$ids" "$uniq_ids" "panel ids are unique"

# ---- promtool ----------------------------------------------------------------
promtool=$(bash "$TS_SRC/tests/tools/promtool.sh" --path) || fail "no promtool: tests/tools/promtool.sh could not fetch it"
"$promtool" --version > "$WORK/promtool.version" 2>&1 || fail "$promtool does not run: $(cat "$WORK/promtool.version")"
ok "promtool: $(head -n1 "$WORK/promtool.version")"

"$promtool" check rules "$RULES" > "$WORK/check.out" 2>&1 || fail "promtool check rules $RULES: $(cat "$WORK/check.out")"
assert_contains "$(cat "$WORK/check.out")" "SUCCESS: $alerts rules found" "promtool check rules: all $alerts alerts parse"

# Every alert has a case where it fires (exp_alerts lists it) and one where
# it must stay quiet (exp_alerts: []).
awk '
    /^ *alertname: / { name = $2; want = 0; next }
    name != "" && /^ *exp_alerts: *\[\] *$/ { print name, "quiet"; name = ""; next }
    name != "" && /^ *exp_alerts: *$/ { want = 1; next }
    want && /^ *- exp_labels:/ { print name, "fires"; name = ""; want = 0 }
' "$RULE_TESTS" | sort -u > "$WORK/cases"
grep -o '^\s*- alert: [A-Za-z]*' "$WORK/rules" | awk '{print $3}' | while read -r a; do
    grep -qx "$a fires" "$WORK/cases" || fail "$RULE_TESTS has no case where $a fires"
    grep -qx "$a quiet" "$WORK/cases" || fail "$RULE_TESTS has no case where $a must not fire"
done || exit 1  # fail ran in the pipeline's subshell
ok "every alert has a firing and a quiet case in deploy/prometheus-alerts.test.yml ($(wc -l < "$WORK/cases") cases)"

"$promtool" test rules "$RULE_TESTS" > "$WORK/test.out" 2>&1 || fail "promtool test rules: $(cat "$WORK/test.out")"
assert_contains "$(cat "$WORK/test.out")" "SUCCESS" "promtool test rules: every case passes"

# The tests bite: with the revoked site's exclusion dropped from
# TrialsyncSiteDisconnected they fail, naming that alert; a rule that does
# not parse fails check rules.
mkdir "$WORK/broken"
cp "$RULE_TESTS" "$WORK/broken/"
sed '/alert: TrialsyncSiteDisconnected/,/alert: TrialsyncDuplicateIdentity/{/unless on (instance, peer) trialsync_peer_revoked == 1/d}' \
    "$RULES" > "$WORK/broken/prometheus-alerts.yml"
! cmp -s "$RULES" "$WORK/broken/prometheus-alerts.yml" || fail "the broken copy of the rules is unchanged"
if "$promtool" test rules "$WORK/broken/prometheus-alerts.test.yml" > "$WORK/broken.out" 2>&1; then
    fail "promtool test rules passed with TrialsyncSiteDisconnected raised for revoked sites"
fi
assert_contains "$(cat "$WORK/broken.out")" "alertname: TrialsyncSiteDisconnected" "a rule changed for the worse fails its unit test"
sed 's/expr: trialsync_sae_late > 0$/expr: trialsync_sae_late >/' "$RULES" > "$WORK/broken/prometheus-alerts.yml"
! cmp -s "$RULES" "$WORK/broken/prometheus-alerts.yml" || fail "the unparsable copy of the rules is unchanged"
if "$promtool" check rules "$WORK/broken/prometheus-alerts.yml" > "$WORK/broken.out" 2>&1; then
    fail "promtool check rules passed a rule that does not parse"
fi
ok "a rule that does not parse fails promtool check rules"
