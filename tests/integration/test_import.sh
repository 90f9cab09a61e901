#!/usr/bin/env bash
# trialsync import: CSV and NDJSON files of subjects, visits and AEs loaded at
# a site, checked row by row first (errors name the file's line, the field and
# what is allowed) and written only when every row is valid; what is written
# replicates to the hub; another site's subjects and malformed CSV refused.
. "$(dirname "$0")/lib.sh"
need_cmd perl perl-base

new_trial T-IMPORT
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"

# ---- CSV: a header row, one record per row, quoted cells, empty cells ----
cat > "$WORK/good.csv" <<'EOF'
type,id,site,sex,brthdtc,status,svstdtc,aeterm,aestdtc,aesev,aeser,reason
subject,101-0001,101,F,1961-04,screening,,,,,,
subject,101-0002,101,M,1970,screening,,,,,,
visit,101-0001/V1,,,,scheduled,2026-11-02,,,,,
ae,101-0001-AE-001,,,,ongoing,,"Headache, mild ""tension"" type",2026-11-03,MILD,N,
ae,101-0002-AE-001,,,,ongoing,,"Nausea
after dosing",2026-11-04,MODERATE,N,
EOF
"$TRIALSYNC" import --node "$S1" "$WORK/good.csv" --user migration > "$WORK/out" 2> "$WORK/err" \
    || fail "CSV import: $(cat "$WORK/err")"
assert_contains "$(cat "$WORK/out")" "imported 5 rows" "CSV import reports its rows"
assert_eq 2 "$(record_count "$S1" subject)" "CSV: two subjects at the site"
assert_eq 1 "$(record_count "$S1" visit)" "CSV: one visit"
assert_eq 2 "$(record_count "$S1" ae)" "CSV: two AEs"
assert_eq F "$("$TRIALSYNC" get --node "$S1" subject 101-0001 | json .fields.sex.value)" \
    "CSV: a value as written"
assert_eq 'Headache, mild "tension" type' \
    "$("$TRIALSYNC" get --node "$S1" ae 101-0001-AE-001 | json .fields.aeterm.value)" \
    "CSV: a quoted cell with a comma and doubled quotes"
assert_eq "$(printf 'Nausea\nafter dosing')" \
    "$("$TRIALSYNC" get --node "$S1" ae 101-0002-AE-001 | json .fields.aeterm.value)" \
    "CSV: a quoted cell across two lines"
assert_eq null "$("$TRIALSYNC" get --node "$S1" visit 101-0001/V1 | json .fields.sex)" \
    "CSV: an empty cell writes no field"
assert_eq integration:migration "$("$TRIALSYNC" history --node "$S1" subject 101-0001 | json '.versions[0].user')" \
    "the audit trail names the importing user"

# ---- NDJSON, including an update that needs a reason ----
cat > "$WORK/good.ndjson" <<'EOF'
{"type":"subject","id":"101-0003","fields":{"site":"101","sex":"U","status":"screening"}}

{"type":"visit","id":"101-0003/V1","fields":{"svstdtc":"2026-11-05","status":"scheduled"}}
{"type":"ae","id":"101-0003-AE-001","fields":{"aeterm":"Rash","aestdtc":"2026-11-06","aesev":"SEVERE","aeser":"N","status":"ongoing"}}
{"type":"subject","id":"101-0001","fields":{"sex":"M"},"reason":"source document says male"}
EOF
"$TRIALSYNC" import --node "$S1" "$WORK/good.ndjson" --user migration > "$WORK/out" 2> "$WORK/err" \
    || fail "NDJSON import: $(cat "$WORK/err")"
assert_contains "$(cat "$WORK/out")" "imported 4 rows" "NDJSON import reports its rows"
assert_eq 3 "$(record_count "$S1" subject)" "NDJSON: a third subject"
assert_eq M "$("$TRIALSYNC" get --node "$S1" subject 101-0001 | json .fields.sex.value)" \
    "NDJSON: an existing record updated"
assert_eq "source document says male" "$("$TRIALSYNC" history --node "$S1" subject 101-0001 |
    jq -r '[.versions[] | select(.field == "sex")][1].reason')" "the row's reason is recorded"

# A change without a reason is refused, naming the line and the field; with
# --reason it applies.
printf '%s\n' '{"type":"subject","id":"101-0002","fields":{"sex":"F"}}' > "$WORK/change.ndjson"
if "$TRIALSYNC" import --node "$S1" "$WORK/change.ndjson" 2> "$WORK/err"; then
    fail "a change without a reason was imported"
fi
assert_contains "$(cat "$WORK/err")" "line 1" "a change without a reason: the line is named"
assert_contains "$(cat "$WORK/err")" "reason" "... and the reason asked for"
"$TRIALSYNC" import --node "$S1" "$WORK/change.ndjson" --reason "migration correction" \
    > /dev/null 2> "$WORK/err" || fail "import with --reason: $(cat "$WORK/err")"
assert_eq F "$("$TRIALSYNC" get --node "$S1" subject 101-0002 | json .fields.sex.value)" \
    "--reason applies to the rows that change values"

# ---- one bad row in the middle: nothing written ----
before=$(digest "$S1")
records_before=$(record_count "$S1")
{
    echo "type,id,site,sex,status,aeterm,aestdtc,aesev,aeser"
    for i in $(seq 10 29); do echo "subject,101-00$i,101,F,screening,,,,"; done
    echo "ae,101-0010-AE-001,,,ongoing,Cough,2026-11-07,TERRIBLE,N"   # line 22
    for i in $(seq 30 39); do echo "subject,101-00$i,101,M,screening,,,,"; done
    echo "subject,101-0010,101,M,,,,,"                                # line 33: again
} > "$WORK/bad.csv"
if "$TRIALSYNC" import --node "$S1" "$WORK/bad.csv" > "$WORK/out" 2> "$WORK/err"; then
    fail "a file with a bad row was imported"
fi
assert_contains "$(cat "$WORK/err")" "line 22" "the bad row's line is named"
assert_contains "$(cat "$WORK/err")" "aesev" "... its field"
assert_contains "$(cat "$WORK/err")" "TERRIBLE" "... its value"
assert_contains "$(cat "$WORK/err")" "MILD" "... and what is allowed"
assert_contains "$(cat "$WORK/err")" "line 33" "a record given twice names its line"
assert_contains "$(cat "$WORK/err")" "nothing written" "the user is told nothing was written"
assert_eq "$records_before" "$(record_count "$S1")" "no record written"
assert_eq "$before" "$(digest "$S1")" "the node's state is unchanged"

# --dry-run checks and writes nothing.
printf '%s\n' '{"type":"subject","id":"101-0001","fields":{"sex":"F"}}' > "$WORK/change2.ndjson"
"$TRIALSYNC" import --node "$S1" "$WORK/change2.ndjson" --dry-run > "$WORK/out" 2> "$WORK/err" && \
    fail "--dry-run of an update without a reason passed"
assert_contains "$(cat "$WORK/err")" "line 1" "--dry-run reports what a write would refuse"
head -n 3 "$WORK/good.ndjson" | sed 's/101-0003/101-0004/g' > "$WORK/new.ndjson"
"$TRIALSYNC" import --node "$S1" "$WORK/new.ndjson" --dry-run > "$WORK/out" 2> "$WORK/err" \
    || fail "--dry-run: $(cat "$WORK/err")"
assert_contains "$(cat "$WORK/out")" "nothing written" "--dry-run says so"
assert_eq "$before" "$(digest "$S1")" "--dry-run writes nothing"

# ---- another site's subject: refused naming the line ----
cat > "$WORK/other.ndjson" <<'EOF'
{"type":"subject","id":"101-0050","fields":{"site":"101","sex":"F","status":"screening"}}
{"type":"subject","id":"102-0001","fields":{"site":"102","sex":"F","status":"screening"}}
EOF
if "$TRIALSYNC" import --node "$S1" "$WORK/other.ndjson" 2> "$WORK/err"; then
    fail "site 101 imported site 102's subject"
fi
assert_contains "$(cat "$WORK/err")" "line 2" "another site's subject: the line is named"
assert_contains "$(cat "$WORK/err")" "102-0001" "... and the record"
"$TRIALSYNC" get --node "$S1" subject 101-0050 > /dev/null 2>&1 && \
    fail "the valid row of a refused file was written"
ok "the valid row beside it was not written"

# ---- malformed CSV: the line of the unbalanced quote ----
printf 'type,id,site,sex\nsubject,101-0060,101,F\nsubject,101-0061,"101,M\nsubject,101-0062,101,M\n' \
    > "$WORK/quote.csv"
if "$TRIALSYNC" import --node "$S1" "$WORK/quote.csv" 2> "$WORK/err"; then
    fail "a CSV file with an unbalanced quote was imported"
fi
assert_contains "$(cat "$WORK/err")" "line 3" "unbalanced quote: its line is named"
assert_contains "$(cat "$WORK/err")" "quote" "... as a quote problem"
printf 'type,id,site,sex\nsubject,101-0063,10"1,F\n' > "$WORK/quote2.csv"
"$TRIALSYNC" import --node "$S1" "$WORK/quote2.csv" 2> "$WORK/err" && fail "a stray quote imported"
assert_contains "$(cat "$WORK/err")" "line 2" "a quote inside an unquoted cell: its line"
printf 'type,id,site,sex\n,101-0065,101,F\nsubject,101-0066,101\n' > "$WORK/cells.csv"
"$TRIALSYNC" import --node "$S1" "$WORK/cells.csv" 2> "$WORK/err" && fail "rows without a type imported"
assert_contains "$(cat "$WORK/err")" "line 2: type ''" "an empty type cell: its line"
assert_contains "$(cat "$WORK/err")" "line 3: 3 cells" "a short row: its line and cell count"
printf '{"type":"subject","id":"101-0064","fields":{"sex":"F"}\n' > "$WORK/broken.ndjson"
"$TRIALSYNC" import --node "$S1" "$WORK/broken.ndjson" 2> "$WORK/err" && fail "broken JSON imported"
assert_contains "$(cat "$WORK/err")" "line 1" "malformed NDJSON: its line"
assert_eq "$before" "$(digest "$S1")" "nothing of the refused files was written"

# ---- more rows than one request: several group commits ----
perl "$TS_SRC/bench/import_rows.pl" ndjson 2500 101 > "$WORK/many.ndjson" || fail "generate rows"
commits_before=$("$TRIALSYNC" status --node "$S1" --json | jq .commit_latency.count)
"$TRIALSYNC" import --node "$S1" "$WORK/many.ndjson" > "$WORK/out" 2> "$WORK/err" \
    || fail "import of 2500 rows: $(cat "$WORK/err")"
assert_contains "$(cat "$WORK/out")" "imported 2500 rows" "2500 rows imported"
commits=$(( $("$TRIALSYNC" status --node "$S1" --json | jq .commit_latency.count) - commits_before ))
[ "$commits" -ge 3 ] && [ "$commits" -le 6 ] || fail "2500 rows took $commits group commits"
ok "2500 rows in $commits group commits (at most 1000 rows each)"

# ---- what was imported replicates to the hub ----
for type in subject visit ae; do
    n=$(record_count "$S1" $type)
    wait_until 30 "the hub holds the site's $n ${type}s" \
        bash -c "[ \$('$TRIALSYNC' records --node '$HUB' $type | jq .count) -eq $n ]"
    ok "the hub holds all $n imported ${type}s"
done
assert_eq 'Headache, mild "tension" type' \
    "$("$TRIALSYNC" get --node "$HUB" ae 101-0001-AE-001 | json .fields.aeterm.value)" \
    "an imported value at the hub"
assert_eq integration:migration "$("$TRIALSYNC" history --node "$HUB" subject 101-0001 | json '.versions[0].user')" \
    "the importing user at the hub"

"$TRIALSYNC" import --help | grep -q "header row" || fail "import --help documents CSV"
ok "import --help documents the formats"
done_checks
