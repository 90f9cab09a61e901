#!/usr/bin/env bash
# Lists come from the API in pages (GET /v1/records, /v1/conflicts, history,
# /v1/saes: ?limit=, ?after=, "next"), and the CLI reads every page: a site
# holding 2500 subjects lists all 2500 with `trialsync records`, though no
# answer of the node holds more than 1000.
. "$(dirname "$0")/lib.sh"
need_cmd curl curl

new_trial T-PAGES
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"
api() { node_api "$@"; }

N=2500
{
    echo "type,id,site,sex,status"
    for i in $(seq 1 $N); do printf 'subject,101-%04d,101,F,screening\n' "$i"; done
} > "$WORK/subjects.csv"
"$TRIALSYNC" import --node "$S1" "$WORK/subjects.csv" --user migration > "$WORK/import.out" 2>&1 \
    || fail "import of $N subjects: $(tail -3 "$WORK/import.out")"

"$TRIALSYNC" records --node "$S1" subject > "$WORK/all.json" || fail "trialsync records"
assert_eq "$N" "$(jq .count "$WORK/all.json")" "trialsync records lists all $N subjects"
assert_eq "$N" "$(jq '[.records[].id] | unique | length' "$WORK/all.json")" "each once"
assert_eq "$(printf '101-%04d\n' $(seq 1 $N) | sort | md5sum)" \
    "$(jq -r '.records[].id' "$WORK/all.json" | md5sum)" "in key order, none missing"
assert_eq "null null" "$(jq -c '[.next, .limit] | map(tostring) | join(" ")' -r "$WORK/all.json")" \
    "the joined answer carries no cursor"

page=$(api "$S1" "/v1/records?type=subject")
assert_eq "100 100" "$(echo "$page" | jq -r '"\(.count) \(.limit)"')" "an answer without ?limit= holds 100"
[ "$(echo "$page" | jq -r .next)" != null ] || fail "a first page of $N records carries no next"
page=$(api "$S1" "/v1/records?type=subject&limit=100000")
assert_eq "1000" "$(echo "$page" | jq .count)" "a limit above 1000 is cut to 1000"
next=$(echo "$page" | jq -r .next)
page=$(api "$S1" "/v1/records?type=subject&limit=1000&after=$next")
assert_eq "101-1001" "$(echo "$page" | jq -r '.records[0].id')" "the next page starts after the last key of the one before"
assert_eq 400 "$(api "$S1" "/v1/records?limit=0" -o /dev/null -w '%{http_code}')" "limit=0 is refused"

# The hub holds them too once replicated, and lists them by site.
wait_until 60 "the hub holds site 101's subjects" \
    bash -c "[ \$('$TRIALSYNC' records --node '$HUB' subject | jq .count) -eq $N ]"
# walk NODEDIR PATH: the items' count over every page of PATH (which holds a query).
walk() {
    local total=0 after="" page pages=0
    while :; do
        page=$(api "$1" "$2&limit=1000${after:+&after=$after}") || return 1
        total=$((total + $(echo "$page" | jq .count)))
        pages=$((pages + 1))
        after=$(echo "$page" | jq -r '.next // empty')
        [ -n "$after" ] || break
        [ "$pages" -lt 100 ] || return 1
    done
    echo "$total"
}
assert_eq "$N" "$(walk "$HUB" "/v1/records?type=subject&site=101")" \
    "following next over site 101's records at the hub gives all $N"
assert_eq 0 "$(api "$HUB" "/v1/records?type=subject&site=102&limit=1000" | jq .count)" \
    "a page of site 102's subjects at the hub is empty"
stop_node s101
stop_node hub
done_checks
