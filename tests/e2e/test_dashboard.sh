#!/usr/bin/env bash
# The operators' dashboard in a real browser: headless Chromium (Debian's
# chromium package, which 'make deps' installs) against a real hub with two
# real sites.  The page must show what the API reports: site 101 connected,
# site 102 (stopped) disconnected, the SAE written at site 101 with the
# deadline GET /v1/saes gives, the query open at the hub.  Also checks the
# sign-in (a person's token POSTed by the form, in Chromium; the cookie holds
# a random session id, never a token; wrong tokens, the integration
# credential and metrics accounts refused), browser-session writes (CSRF
# token, JSON and the node's own Origin required; a viewer writes nothing; a
# disabled or reset account's session ends), a CSRF attack from a page on
# another port of 127.0.0.1 in the signed-in browser (nothing applied; the
# refusals traced and counted), sign-out, that the page names no outside
# address and carries a Content-Security-Policy, and GET /metrics.  Keeps screenshots at 1366x768 and 1920x1080:
# $TS_BIN/test-artifacts/dashboard-WxH.png.
. "$(dirname "$0")/../integration/lib.sh"

ARTIFACTS="$TS_BIN/test-artifacts"

# ---- tools ---------------------------------------------------------------------
need_cmd chromium chromium
need_cmd curl curl
need_cmd perl perl-base
# Debian's python3 by absolute path (a pyenv or venv python3 may be first on PATH):
# the browser driver and the attacker's web server.
need_cmd /usr/bin/python3 python3-minimal
PY3=/usr/bin/python3
CHROMIUM=$(command -v chromium)
ok "chromium present: $("$CHROMIUM" --version 2> /dev/null | head -1)"

# chromium_run OUTFILE URL ARGS...: headless, offline-minded, the profile
# $CHROMIUM_PROFILE (the signed-in browser) or else a fresh one (so no cookie
# survives from another run), 8 s of page time (four refreshes).
chromium_run() {
    local out=$1 url=$2 profile=${CHROMIUM_PROFILE:-}
    shift 2
    [ -n "$profile" ] || profile=$(mktemp -d "$WORK/chromium-profile.XXXXXX")
    timeout 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-default-apps --disable-extensions --user-data-dir="$profile" \
        --virtual-time-budget=8000 "$@" "$url" > "$out" 2>> "$WORK/chromium.log" \
        || fail "chromium exited $? on $url: $(tail -n 5 "$WORK/chromium.log")"
}

# dom_cell FILE ROW_ATTR ROW_VALUE CELL_CLASS [ATTR]: in the DOM Chromium
# dumped, the text (tags removed, entities decoded) of the cell of class
# CELL_CLASS in the row <tr ROW_ATTR="ROW_VALUE">, or that cell's attribute
# ATTR.  Prints nothing and fails when there is no such row or cell.
dom_cell() {
    ROW_ATTR=$2 ROW_VALUE=$3 CELL_CLASS=$4 CELL_ATTR=${5:-} perl -0777 -ne '
        my ($ra, $rv, $cc, $ca) = @ENV{qw(ROW_ATTR ROW_VALUE CELL_CLASS CELL_ATTR)};
        sub decode { my $t = shift; $t =~ s/&lt;/</g; $t =~ s/&gt;/>/g; $t =~ s/&quot;/"/g;
                     $t =~ s/&#39;/\x27/g; $t =~ s/&nbsp;/ /g; $t =~ s/&amp;/&/g; return $t; }
        while (/<tr\b([^>]*)>(.*?)<\/tr>/gs) {
            my ($attrs, $row) = ($1, $2);
            next unless $attrs =~ /\b\Q$ra\E="\Q$rv\E"/;
            while ($row =~ /<td\b([^>]*)>(.*?)<\/td>/gs) {
                my ($tattrs, $text) = ($1, $2);
                next unless $tattrs =~ /\bclass="(?:[^"]*\s)?\Q$cc\E(?:\s[^"]*)?"/;
                if ($ca ne "") {
                    exit 1 unless $tattrs =~ /\b\Q$ca\E="([^"]*)"/;
                    print decode($1);
                } else {
                    $text =~ s/<[^>]*>//g;
                    print decode($text);
                }
                exit 0;
            }
        }
        exit 1;' "$1"
}

# dom_section FILE ID: the markup of the <section id="ID"> in the DOM Chromium dumped.
dom_section() {
    ELEMENT_ID=$2 perl -0777 -ne '
        my $id = $ENV{ELEMENT_ID};
        exit 1 unless /(<section\b[^>]*\bid="\Q$id\E".*?<\/section>)/s;
        print $1;' "$1"
}

# drive OUT URL STEP...: browser_drive.py in the signed-in profile $PROFILE:
# opens URL, runs the steps, leaves the final DOM in OUT.
drive() {
    local out=$1
    shift
    timeout 120 "$PY3" "$TS_SRC/tests/e2e/browser_drive.py" "$CHROMIUM" "$PROFILE" "$out" "$@" \
        2>> "$WORK/chromium.log"
}

# tile_class FILE ID: the class attribute of the element with that id.
tile_class() {
    ELEMENT_ID=$2 perl -0777 -ne '
        my $id = $ENV{ELEMENT_ID};
        exit 1 unless /<\w+\b(?=[^>]*\bid="\Q$id\E")[^>]*\bclass="([^"]*)"/s;
        print $1;' "$1"
}

# dom_id FILE ID: the text of the element with that id.
dom_id() {
    ELEMENT_ID=$2 perl -0777 -ne '
        my $id = $ENV{ELEMENT_ID};
        exit 1 unless /<(\w+)\b[^>]*\bid="\Q$id\E"[^>]*>(.*?)<\/\1>/s;
        my $t = $2; $t =~ s/<[^>]*>//g; $t =~ s/&amp;/&/g; print $t;' "$1"
}

# ---- a hub and two sites ------------------------------------------------------
hub_and_two_sites T-DASH
TOKEN=$(cat "$HUB/api.token")
BASE="http://127.0.0.1:$HUB_API_PORT"
api() { curl -sS --max-time 10 -H "Authorization: Bearer $TOKEN" "$BASE$1"; }

for i in 1 2 3; do
    "$TRIALSYNC" put --node "$S1" subject "101-000$i" site=101 sex=F status=screening > /dev/null || fail "put at 101"
    "$TRIALSYNC" put --node "$S2" subject "102-000$i" site=102 sex=M status=screening > /dev/null || fail "put at 102"
done
aware=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$TRIALSYNC" put --node "$S1" ae 101-0001-AE-001 aeterm=Anaphylaxis aestdtc=2026-11-20 aesev=SEVERE \
    aeser=Y aeslife=Y sae_aware_dtc="$aware" status=ongoing > /dev/null || fail "put SAE at 101"
"$TRIALSYNC" put --node "$HUB" query Q-hub1-1 target=subject/101-0001/sex text="Please confirm sex" \
    state=open source=dm --user monitor > /dev/null || fail "query at the hub"
wait_until 20 "the hub holds both sites' subjects" \
    bash -c "[ \$('$TRIALSYNC' records --node '$HUB' subject | jq .count) -eq 6 ]"
wait_until 20 "the SAE at the hub" bash -c \
    "curl -sf -H 'Authorization: Bearer $TOKEN' '$BASE/v1/saes' | jq -e '.saes[] | select(.id == \"101-0001-AE-001\")'"
ok "records, the SAE and a query are in place"

stop_node s102
wait_until 10 "the hub sees site 102 gone" bash -c \
    "'$TRIALSYNC' status --node '$HUB' --json | jq -e '.peers[] | select(.id == \"102\") | .connected == false'"
wait_until 20 "the hub has sent site 101 everything" bash -c \
    "'$TRIALSYNC' status --node '$HUB' --json | jq -e '.peers[] | select(.id == \"101\") | .connected and .behind_send_bulk + .behind_send_safety + .behind_recv_bulk + .behind_recv_safety == 0'"
ok "site 102 stopped, site 101 connected and caught up"

# Site 102, stopped, speaks the protocol itself with its real key and chain and
# writes what the rule book refuses: the hub refuses it, and the page must
# flag that origin.
"$TS_BIN/tests/ts_evil_peer" craft "$S2" 127.0.0.1 "$HUB_PEER_PORT" subject 102-0001 \
    status=pwned > "$WORK/evil.out" 2>&1 || true
grep -q "refused by rule 'value'" "$WORK/evil.out" || fail "the hub did not refuse site 102's crafted entry: $(tail -3 "$WORK/evil.out")"
wait_until 10 "the refusal counted at the hub" bash -c \
    "'$TRIALSYNC' status --node '$HUB' --json | jq -e '.peers[] | select(.id == \"102\") | .entries_refused.value == 1'"
ok "site 102's crafted entry refused by rule 'value' and counted"

# ---- accounts -------------------------------------------------------------------
# The operator signs in as a person; the integration credential opens no session.
TRIAL="$WORK/trial"
for spec in mon:monitor view:viewer dm1:dm prom:metrics; do
    "$TRIALSYNC" user add "${spec%%:*}" --role "${spec#*:}" --name "Person ${spec%%:*}" \
        --dir "$TRIAL" > "$WORK/user-${spec%%:*}.out" 2>&1 \
        || fail "user add ${spec%%:*}: $(cat "$WORK/user-${spec%%:*}.out")"
done
user_token() { cat "$TRIAL/users/$1.token"; }
MON_TOKEN=$(user_token mon)
"$TRIALSYNC" put --node "$HUB" query Q-hub1-2 target=subject/101-0002/sex text="Please confirm" \
    state=open source=monitor --user monitor > /dev/null || fail "a second query at the hub"
"$TRIALSYNC" put --node "$HUB" query Q-hub1-3 target=subject/102-0001/sex text="Please confirm too" \
    state=open source=monitor --user monitor > /dev/null || fail "a query on site 102's subject"
ok "accounts mon (monitor), view (viewer), dm1 (dm), prom (metrics) added"

# sign_in USER_TOKEN NAME [CURL ARGS...]: POST /v1/session as the login page
# does (the token in the body, read from stdin: never in an argument); the
# answer in $WORK/NAME.json, headers in $WORK/NAME.headers; prints the status.
sign_in() {
    local tok=$1 name=$2
    shift 2
    jq -cn --arg t "$tok" '{token: $t}' | curl -sS --max-time 10 -o "$WORK/$name.json" \
        -D "$WORK/$name.headers" -w '%{http_code}' -H 'Content-Type: application/json' "$@" \
        --data-binary @- "$BASE/v1/session"
}
# session_of NAME: the ts_session value the sign-in NAME set.
session_of() {
    tr -d '\r' < "$WORK/$1.headers" | sed -n 's/^Set-Cookie: ts_session=\([^;]*\);.*/\1/Ip' | head -1
}
# as_session SESSION CSRF ORIGIN TYPE METHOD PATH [BODY]: a browser-like
# request with the session cookie; prints the status, answer in $WORK/last.json.
as_session() {
    local sid=$1 csrf=$2 origin=$3 type=$4 method=$5 path=$6 body=${7:-}
    local args=(-sS --max-time 10 -o "$WORK/last.json" -w '%{http_code}' -X "$method"
                -H "Cookie: ts_session=$sid")
    [ -n "$csrf" ] && args+=(-H "X-CSRF-Token: $csrf")
    [ -n "$origin" ] && args+=(-H "Origin: $origin")
    [ -n "$type" ] && args+=(-H "Content-Type: $type")
    [ -n "$body" ] && args+=(--data-binary "$body")
    curl "${args[@]}" "$BASE$path"
}
OWN="http://127.0.0.1:$HUB_API_PORT"

# ---- sign-in ------------------------------------------------------------------
code=$(curl -sS -o "$WORK/login.html" -D "$WORK/login.headers" -w '%{http_code}' "$BASE/dashboard")
assert_eq 401 "$code" "GET /dashboard without a session answers 401"
assert_contains "$(cat "$WORK/login.html")" "<form id='signin'" "the 401 page is the sign-in form"
assert_contains "$(cat "$WORK/login.html")" "<script src='/dashboard/login.js'>" "whose script is a file of the node's"
code=$(curl -sS -o "$WORK/login.js" -D "$WORK/loginjs.headers" -w '%{http_code}' "$BASE/dashboard/login.js")
assert_eq 200 "$code" "GET /dashboard/login.js needs no session"
assert_contains "$(cat "$WORK/login.js")" "'/v1/session'" "login.js posts to /v1/session"
code=$(curl -sS -o /dev/null -D "$WORK/oldway.headers" -w '%{http_code}' "$BASE/dashboard?token=$TOKEN")
assert_eq 401 "$code" "the node's token in the URL signs nobody in any more"
if grep -qi '^Set-Cookie' "$WORK/oldway.headers"; then fail "?token= still sets a cookie"; fi
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: ts_token=$TOKEN" "$BASE/v1/status")
assert_eq 401 "$code" "a ts_token cookie holding the node's token authenticates nothing"

code=$(sign_in "mon:not-the-secret" wrong)
assert_eq 401 "$code" "a wrong user token is refused"
assert_contains "$(cat "$WORK/wrong.json")" "sign-in refused" "and says so"
if grep -qi '^Set-Cookie' "$WORK/wrong.headers"; then fail "a refused sign-in set a cookie"; fi
code=$(sign_in "$TOKEN" integration)
assert_eq 403 "$code" "the integration credential opens no dashboard session"
assert_contains "$(cat "$WORK/integration.json")" "sign in with your own user token" "and says what to do"
code=$(sign_in "$(user_token prom)" prom)
assert_eq 403 "$code" "a metrics account opens no dashboard session"
code=$(jq -cn --arg t "$MON_TOKEN" '{token: $t}' | curl -sS -o /dev/null -w '%{http_code}' \
    -H 'Content-Type: text/plain' --data-binary @- "$BASE/v1/session")
assert_eq 400 "$code" "a sign-in that is not JSON is refused (a plain form elsewhere cannot sign a browser in)"
code=$(sign_in "$MON_TOKEN" elsewhere -H "Origin: http://127.0.0.1:1")
assert_eq 403 "$code" "a sign-in from a page of another origin is refused"

code=$(sign_in "$MON_TOKEN" mon)
assert_eq 200 "$code" "mon signs in with their user token"
cookie=$(tr -d '\r' < "$WORK/mon.headers" | grep -i '^Set-Cookie:' | head -1)
MON_SID=$(session_of mon)
MON_CSRF=$(jq -r .csrf_token "$WORK/mon.json")
[[ $MON_SID =~ ^[0-9a-f]{64}$ ]] || fail "the session id is not 256 random bits in hex: '$MON_SID'"
[[ $MON_CSRF =~ ^[0-9a-f]{64}$ ]] || fail "the CSRF token is not 256 random bits in hex: '$MON_CSRF'"
ok "the cookie holds a 256-bit session id; the answer a 256-bit CSRF token"
for secret in "$TOKEN" "$MON_TOKEN" "${MON_TOKEN#*:}"; do
    case "$cookie" in *"$secret"*) fail "the cookie carries a token: $cookie" ;; esac
done
[ "$MON_SID" != "$MON_CSRF" ] || fail "the session id is the CSRF token"
ok "the cookie carries neither the node's token nor the user's"
assert_contains "$cookie" "HttpOnly" "the cookie is HttpOnly"
assert_contains "$cookie" "SameSite=Strict" "the cookie is SameSite=Strict"
assert_contains "$cookie" "Max-Age=" "the browser forgets the cookie when the session would end"
assert_eq "mon monitor" "$(jq -r '"\(.user) \(.role)"' "$WORK/mon.json")" "the answer names the person and role"
code=$(as_session "$MON_SID" "$MON_CSRF" "" "" GET /v1/session)
assert_eq 200 "$code" "GET /v1/session with the cookie and the CSRF token"
assert_eq "mon monitor null" "$(jq -r '"\(.user) \(.role) \(.csrf_token)"' "$WORK/last.json")" \
    "names the person, and gives out no CSRF token (the sign-in answer alone does)"
code=$(curl -sS -o "$WORK/page.html" -D "$WORK/page.headers" -w '%{http_code}' \
    -H "Cookie: ts_session=$MON_SID" "$BASE/dashboard")
assert_eq 200 "$code" "the session opens the dashboard"
code=$(curl -sS -o "$WORK/signin-again.html" -w '%{http_code}' -H "Cookie: ts_session=$MON_SID" \
    "$BASE/dashboard?signin")
assert_eq 401 "$code" "/dashboard?signin shows the sign-in page even to a signed-in browser"
assert_contains "$(cat "$WORK/signin-again.html")" "<form id='signin'" "(for a page that lost its CSRF token)"
assert_contains "$(tr -d '\r' < "$WORK/page.headers")" "Content-Type: text/html" "the dashboard is HTML"
csp=$(tr -d '\r' < "$WORK/page.headers" | grep -i '^Content-Security-Policy:' || true)
assert_contains "$csp" "default-src 'none'" "the dashboard carries a Content-Security-Policy"
if grep -Eiq '(https?|ftp|wss?):|//[a-z0-9.-]+\.[a-z]{2,}' "$WORK/page.html"; then
    fail "the page names an outside address: $(grep -Eio '(https?|ftp|wss?):[^ ]*' "$WORK/page.html" | head -3)"
fi
ok "the page names no outside address (no CDN: it works offline)"
assert_contains "$csp" "script-src 'self'" "scripts come from the node itself"
# The page's script and styles are files of their own, behind the same cookie.
for f in app.js:text/javascript style.css:text/css; do
    url="$BASE/dashboard/${f%%:*}"
    code=$(curl -sS -o "$WORK/${f%%:*}" -D "$WORK/${f%%:*}.headers" -w '%{http_code}' \
        -H "Cookie: ts_session=$MON_SID" "$url")
    assert_eq 200 "$code" "GET /dashboard/${f%%:*} with the cookie answers 200"
    assert_contains "$(tr -d '\r' < "$WORK/${f%%:*}.headers")" "Content-Type: ${f#*:}" \
        "/dashboard/${f%%:*} is ${f#*:}"
    [ -s "$WORK/${f%%:*}" ] || fail "/dashboard/${f%%:*} is empty"
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$url")
    assert_eq 401 "$code" "GET /dashboard/${f%%:*} without the cookie answers 401"
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: ts_session=0$MON_SID" "$url")
    assert_eq 401 "$code" "GET /dashboard/${f%%:*} with a wrong cookie answers 401"
done
# (A scheme must start a word here: the styles say 'grid-template-rows:'.)
if grep -Eiq '\b(https?|ftp|wss?)://|//[a-z0-9.-]+\.[a-z]{2,}' "$WORK/app.js" "$WORK/style.css"; then
    fail "the script or styles name an outside address"
fi
code=$(as_session "$MON_SID" "$MON_CSRF" "" "" GET /v1/status)
assert_eq 200 "$code" "the cookie with the CSRF token authenticates the page's API calls"
code=$(as_session "$MON_SID" "" "" "" GET /v1/status)
assert_eq 403 "$code" "the cookie alone reads nothing (browsers send it to every port of the host)"
assert_contains "$(cat "$WORK/last.json")" "X-CSRF-Token" "and the refusal names the header"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: ts_session=0$MON_SID" "$BASE/v1/status")
assert_eq 401 "$code" "a wrong cookie does not"

# ---- writes from a browser session ----------------------------------------------
# A write with the cookie needs the session's CSRF token, JSON and the node's
# own Origin; each missing piece alone is refused, and nothing is applied.
W='{"fields": {"text": "Worded from the dashboard"}, "reason": "clearer wording"}'
Q=/v1/records/query/Q-hub1-2
refused_before=$(api /v1/status | jq .dashboard_requests_refused)
code=$(as_session "$MON_SID" "" "$OWN" application/json POST "$Q" "$W")
assert_eq 403 "$code" "a session write without X-CSRF-Token is refused"
assert_contains "$(cat "$WORK/last.json")" "X-CSRF-Token" "and the refusal names the header"
code=$(as_session "$MON_SID" "0$MON_CSRF" "$OWN" application/json POST "$Q" "$W")
assert_eq 403 "$code" "a session write with a wrong CSRF token is refused"
code=$(as_session "$MON_SID" "$MON_CSRF" "http://127.0.0.1:$((HUB_API_PORT + 1))" application/json POST "$Q" "$W")
assert_eq 403 "$code" "a session write from another port's origin is refused"
assert_contains "$(cat "$WORK/last.json")" "another origin" "and the refusal says why"
code=$(as_session "$MON_SID" "$MON_CSRF" "" application/json POST "$Q" "$W")
assert_eq 403 "$code" "a session write without an Origin is refused"
code=$(as_session "$MON_SID" "$MON_CSRF" "$OWN" text/plain POST "$Q" "$W")
assert_eq 403 "$code" "a session write that is not JSON is refused"
assert_contains "$(cat "$WORK/last.json")" "application/json" "and the refusal names the type"
assert_eq "Please confirm" "$(api "$Q" | jq -r .fields.text.value)" "none of them was applied"
assert_eq $((refused_before + 5)) "$(api /v1/status | jq .dashboard_requests_refused)" \
    "each refusal is counted (dashboard_requests_refused)"
code=$(as_session "$MON_SID" "$MON_CSRF" "$OWN" application/json POST "$Q" "$W")
assert_eq 200 "$code" "with all three the monitor's session writes"
assert_eq "Worded from the dashboard" "$(api "$Q" | jq -r .fields.text.value)" "the write is applied"
assert_eq "mon sign-in monitor" \
    "$(api "$Q/history" | jq -r '.versions[] | select(.new_value == "Worded from the dashboard") | "\(.user) \(.via) \(.role)"')" \
    "the audit trail names the signed-in person, how and in what role"
# The CLI's Bearer requests are not browser sessions: no CSRF token needed.
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $MON_TOKEN" \
    -H 'Content-Type: application/json' --data-binary '{"fields": {"text": "Worded by the CLI"}, "reason": "clearer wording"}' "$BASE$Q")
assert_eq 200 "$code" "a Bearer request writes without a CSRF token"

# A viewer's session reads and writes nothing, however well formed.
code=$(sign_in "$(user_token view)" view)
assert_eq 200 "$code" "a viewer signs in"
VIEW_SID=$(session_of view)
VIEW_CSRF=$(jq -r .csrf_token "$WORK/view.json")
code=$(as_session "$VIEW_SID" "$VIEW_CSRF" "" "" GET /v1/status)
assert_eq 200 "$code" "a viewer's session reads"
code=$(as_session "$VIEW_SID" "$VIEW_CSRF" "$OWN" application/json POST "$Q" "$W")
assert_eq 403 "$code" "a viewer's session cannot write"
assert_contains "$(cat "$WORK/last.json")" "a viewer writes nothing" "for the viewer's role"

# A disabled account's session ends at its next request; so does a reset one's.
code=$(sign_in "$(user_token dm1)" dm1)
assert_eq 200 "$code" "dm1 signs in"
DM_SID=$(session_of dm1)
DM_CSRF=$(jq -r .csrf_token "$WORK/dm1.json")
assert_eq 200 "$(as_session "$DM_SID" "$DM_CSRF" "" "" GET /v1/status)" "dm1's session reads"
"$TRIALSYNC" user disable dm1 --dir "$TRIAL" --reason "left the CRO" > /dev/null || fail "user disable dm1"
code=$(as_session "$DM_SID" "$DM_CSRF" "" "" GET /v1/status)
assert_eq 401 "$code" "dm1's session stops working once the account is disabled"
assert_contains "$(cat "$WORK/last.json")" "disabled or its token reset" "and says why"
"$TRIALSYNC" user reset view --dir "$TRIAL" --out "$WORK/view.new-token" > /dev/null || fail "user reset view"
code=$(as_session "$VIEW_SID" "$VIEW_CSRF" "" "" GET /v1/status)
assert_eq 401 "$code" "the viewer's session stops working once the token is reset"

# Sign-out forgets the session and clears the cookie; it is a write like any other.
code=$(sign_in "$MON_TOKEN" mon2)
MON2_SID=$(session_of mon2)
MON2_CSRF=$(jq -r .csrf_token "$WORK/mon2.json")
code=$(as_session "$MON2_SID" "" "http://127.0.0.1:1" application/json POST /v1/session/end '{}')
assert_eq 403 "$code" "a sign-out from another origin is refused"
assert_eq 200 "$(as_session "$MON2_SID" "$MON2_CSRF" "" "" GET /v1/status)" "and the session still works"
code=$(curl -sS -o "$WORK/end.json" -D "$WORK/end.headers" -w '%{http_code}' -X DELETE \
    -H "Cookie: ts_session=$MON2_SID" -H "X-CSRF-Token: $MON2_CSRF" -H "Origin: $OWN" \
    -H 'Content-Type: application/json' "$BASE/v1/session")
assert_eq 200 "$code" "DELETE /v1/session signs out"
assert_contains "$(tr -d '\r' < "$WORK/end.headers")" "Set-Cookie: ts_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0" \
    "and clears the cookie"
assert_eq 401 "$(as_session "$MON2_SID" "$MON2_CSRF" "" "" GET /v1/status)" "the session is gone"

# ---- the page in Chromium -----------------------------------------------------
api /v1/status > "$WORK/status.json"
api /v1/saes > "$WORK/saes.json"
# The operator signs in through the sign-in form in Chromium, as a person
# would: the driver types mon's token into input#token and submits; the page
# then loads the dashboard itself.  The profile keeps the session cookie for
# the runs below (screenshots, the attacker's page, sign-out).
PROFILE="$WORK/profile-mon"
mkdir -p "$PROFILE"
BROWSER_SECRET="$MON_TOKEN" timeout 120 "$PY3" "$TS_SRC/tests/e2e/browser_drive.py" "$CHROMIUM" \
    "$PROFILE" "$WORK/dom.html" "$BASE/dashboard" \
    "wait:document.readyState === 'complete' && document.getElementById('signin') !== null" \
    "eval:document.getElementById('token').value = @SECRET@; document.getElementById('signin').requestSubmit(); true" \
    "wait:/UTC\$/.test((document.getElementById('refreshed') || {}).textContent || '')" \
    "wait:(document.getElementById('who') || {}).textContent !== ''" \
    2>> "$WORK/chromium.log" || fail "signing in through the form in Chromium: $(tail -n 3 "$WORK/chromium.log")"
[ -s "$WORK/dom.html" ] || fail "chromium dumped no DOM"
assert_eq "Person mon (mon, monitor)" "$(dom_id "$WORK/dom.html" who)" "the page names the person signed in"
grep -q "$MON_TOKEN" "$WORK/dom.html" && fail "the token is still in the page after sign-in"
ok "signed in through the form in headless Chromium"
refreshed=$(dom_id "$WORK/dom.html" refreshed) || fail "no #refreshed in the page"
case "$refreshed" in
    *UTC) ok "the page refreshed from the API (at $refreshed)" ;;
    *) fail "the page never read the API: #refreshed is '$refreshed'; banner: $(dom_id "$WORK/dom.html" banner)" ;;
esac
assert_eq "$(jq -r .node "$WORK/status.json")" "$(dom_id "$WORK/dom.html" node)" "the page names the hub"
assert_eq "$(jq -r .trial "$WORK/status.json")" "$(dom_id "$WORK/dom.html" trial)" "the page names the trial"

# Sites show the names the membership log gives them (add_site: "Site ID").
assert_eq "Site 101" "$(jq -r '.peers[] | select(.id == "101") | .name' "$WORK/status.json")" \
    "/v1/status carries site 101's name"
assert_eq "Site 101" "$(dom_cell "$WORK/dom.html" data-peer 101 name)" "site 101 shows its name"
assert_eq "Site 102" "$(dom_cell "$WORK/dom.html" data-peer 102 name)" "site 102 shows its name"
assert_eq 101 "$(dom_cell "$WORK/dom.html" data-peer 101 id)" "and its id"
assert_eq connected "$(dom_cell "$WORK/dom.html" data-peer 101 state)" "site 101 shows connected"
assert_eq disconnected "$(dom_cell "$WORK/dom.html" data-peer 102 state)" "site 102 shows disconnected"
# Problem rows first: site 102, disconnected, heads the table though 101 sorts before it.
first=$(perl -0777 -ne 'print $1 if /<table id="sites">.*?<tbody>\s*<tr\b[^>]*\bdata-peer="([^"]*)"/s' "$WORK/dom.html")
assert_eq 102 "$first" "the first row of the sites table is the disconnected site"
assert_eq "tile warn" "$(tile_class "$WORK/dom.html" tile-sites)" "1 / 2 sites connected: the tile is amber"
assert_contains "$(dom_cell "$WORK/dom.html" data-peer 102 role)" "1 refused" "site 102 is flagged: 1 entry refused"
case "$(dom_cell "$WORK/dom.html" data-peer 101 role)" in
    *refused*) fail "site 101 is flagged though nothing of it was refused" ;;
    *) ok "site 101 carries no refused mark" ;;
esac
for f in behind_send_safety behind_send_bulk behind_recv_safety behind_recv_bulk; do
    want=$(jq -r ".peers[] | select(.id == \"101\") | .$f" "$WORK/status.json")
    got=$(dom_cell "$WORK/dom.html" data-peer 101 "${f//_/-}" | tr -d ,) || fail "no $f cell for 101"
    assert_eq "$want" "$got" "site 101's $f as the API reports it"
done
last_seen_102=$(jq -r '.peers[] | select(.id == "102") | .last_seen' "$WORK/status.json")
assert_eq "$last_seen_102" "$(dom_cell "$WORK/dom.html" data-peer 102 last-seen data-iso)" \
    "site 102's last seen is the API's"

sae='.saes[] | select(.id == "101-0001-AE-001")'
deadline=$(jq -r "$sae | .deadline" "$WORK/saes.json")
[ -n "$deadline" ] && [ "$deadline" != null ] || fail "the API gives the SAE no deadline"
assert_eq "$deadline" "$(dom_cell "$WORK/dom.html" data-sae 101-0001-AE-001 deadline data-iso)" \
    "the SAE row holds the API's deadline"
# The page shows times as 'YYYY-MM-DD HH:MM UTC', seconds cut off (dashboard.h).
shown=$(date -u -d "$deadline" '+%Y-%m-%d %H:%M UTC')
assert_eq "$shown" "$(dom_cell "$WORK/dom.html" data-sae 101-0001-AE-001 deadline)" \
    "the SAE's deadline shows as $shown"
assert_eq "$(date -u -d "$aware + 24 hours" '+%Y-%m-%d %H:%M UTC')" "$shown" "the deadline shown is awareness + 24 h"
assert_eq "$(date -u -d "$(jq -r "$sae | .aware_time" "$WORK/saes.json")" '+%Y-%m-%d %H:%M UTC')" \
    "$(dom_cell "$WORK/dom.html" data-sae 101-0001-AE-001 aware)" "the awareness time shows"
assert_eq 101 "$(dom_cell "$WORK/dom.html" data-sae 101-0001-AE-001 site data-site)" "the SAE row is site 101's"
assert_eq "Site 101 (101)" "$(dom_cell "$WORK/dom.html" data-sae 101-0001-AE-001 site)" "the SAE row names site 101"
assert_eq Anaphylaxis "$(dom_cell "$WORK/dom.html" data-sae 101-0001-AE-001 term)" "the SAE row names the term"
flag=$(jq -r "$sae | if .late then \"LATE\" elif .at_risk then \"AT RISK\" else \"on time\" end" "$WORK/saes.json")
assert_eq "$flag" "$(dom_cell "$WORK/dom.html" data-sae 101-0001-AE-001 flag)" "the SAE's flag is the API's ($flag)"

assert_eq open "$(dom_cell "$WORK/dom.html" data-query Q-hub1-1 state)" "the open query shows"
assert_eq "Please confirm sex" "$(dom_cell "$WORK/dom.html" data-query Q-hub1-1 text)" "with its text"

# ---- the screenshots ------------------------------------------------------------
# A laptop and a wide screen: the page must use both (side by side above
# ~1600 px).  Taken into the work dir, copied to $ARTIFACTS to look at.
mkdir -p "$ARTIFACTS"
# Site 101 keeps writing meanwhile, so the throughput bars have something to show.
( for i in $(seq 10 60); do
      "$TRIALSYNC" put --node "$S1" subject "101-00$i" site=101 sex=U status=screening > /dev/null || exit 1
  done ) & writer=$!
for size in 1366x768 1920x1080; do
    shot="$WORK/dashboard-$size.png"
    rm -f "$ARTIFACTS/dashboard-$size.png"
    CHROMIUM_PROFILE="$PROFILE" chromium_run "$WORK/screenshot-$size.out" "$BASE/dashboard" --screenshot="$shot" \
        --window-size="${size/x/,}" --hide-scrollbars
    [ -s "$shot" ] || fail "no screenshot at $shot"
    [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$shot is not a PNG"
    # The PNG's IHDR: width and height, 4 bytes each, big-endian, from byte 16.
    dims=$(od -An -tu1 -j16 -N8 "$shot" | awk '{ print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8 }')
    assert_eq "$size" "$dims" "the screenshot is $size"
    cp "$shot" "$ARTIFACTS/"
    ok "screenshot saved: $ARTIFACTS/dashboard-$size.png"
done
wait "$writer" || fail "writes at site 101 during the screenshots"

# ---- /metrics ---------------------------------------------------------------------
wait_until 20 "the hub holds site 101's new subjects" \
    bash -c "[ \$('$TRIALSYNC' records --node '$HUB' subject | jq .count) -eq 57 ]"
api /v1/status > "$WORK/status.json"
curl -sS --max-time 10 -D "$WORK/metrics.headers" -o "$WORK/metrics.txt" \
    -H "Authorization: Bearer $TOKEN" "$BASE/metrics" || fail "GET /metrics"
assert_contains "$(tr -d '\r' < "$WORK/metrics.headers")" "Content-Type: text/plain; version=0.0.4" \
    "/metrics is the Prometheus text format"
metrics=$(cat "$WORK/metrics.txt")
assert_contains "$metrics" 'trialsync_peer_connected{peer="101",role="site"} 1' "/metrics: site 101 connected"
assert_contains "$metrics" 'trialsync_peer_connected{peer="102",role="site"} 0' "/metrics: site 102 disconnected"
assert_contains "$metrics" 'trialsync_commit_duration_seconds_bucket{le="+Inf"}' "/metrics: commit latency histogram"
assert_contains "$metrics" "trialsync_records $(jq .records "$WORK/status.json")" "/metrics: records as the status reports"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$BASE/metrics")
assert_eq 401 "$code" "/metrics needs the token"

# No site connected is an outage: the tile turns red, not amber.
stop_node s101
wait_until 10 "the hub sees site 101 gone" bash -c \
    "'$TRIALSYNC' status --node '$HUB' --json | jq -e '.peers[] | select(.id == \"101\") | .connected == false'"
CHROMIUM_PROFILE="$PROFILE" chromium_run "$WORK/dom-none.html" "$BASE/dashboard" --dump-dom
assert_eq "0 / 2" "$(dom_id "$WORK/dom-none.html" n-sites)" "the page shows 0 / 2 sites connected"
assert_eq "tile bad" "$(tile_class "$WORK/dom-none.html" tile-sites)" "0 / 2 sites connected: the tile is red"

# ---- a 32-site hub ----------------------------------------------------------------
# Thirty more sites in the membership log (sites 103 to 132): 103 runs, the
# others never connected; 132 is revoked.  Site 101 is back.  The table must
# hold every site, problem rows first (revoked, then never seen, then the
# longest disconnected), the connected ones last.
for n in $(seq 103 132); do add_site "$n"; done
"$TRIALSYNC" site revoke 132 --dir "$TRIAL" --reason "test: closed site" > /dev/null || fail "site revoke 132"
start_node s101 "$S1"
start_node s103 "$WORK/site-103"
wait_until 20 "sites 101 and 103 connected, 32 sites known" bash -c \
    "'$TRIALSYNC' status --node '$HUB' --json | jq -e '([.peers[] | select(.role == \"site\")] | length) == 32 and ([.peers[] | select(.connected)] | length) == 2'"
ok "32 sites in the membership log, 2 of them connected"
CHROMIUM_PROFILE="$PROFILE" chromium_run "$WORK/dom-32.html" "$BASE/dashboard" --dump-dom
perl -0777 -ne 'print "$1\n" while /<tr\b[^>]*\bdata-peer="([^"]*)"/g' "$WORK/dom-32.html" > "$WORK/rows-32"
assert_eq 32 "$(wc -l < "$WORK/rows-32")" "the sites table holds all 32 sites"
assert_eq "2 / 32" "$(dom_id "$WORK/dom-32.html" n-sites)" "the page shows 2 / 32 sites connected"
assert_eq 132 "$(sed -n 1p "$WORK/rows-32")" "the revoked site heads the table"
assert_eq "101 103" "$(tail -n 2 "$WORK/rows-32" | sort | tr '\n' ' ' | sed 's/ $//')" "the connected sites come last"
assert_eq 102 "$(sed -n 30p "$WORK/rows-32")" "site 102, seen before, is the last of the disconnected (never seen ranks worse)"
for n in 104 131; do
    assert_eq bad "$(perl -0777 -ne 'print $1 if /<tr\b[^>]*\bdata-peer="'"$n"'"[^>]*\bdata-severity="([^"]*)"/' "$WORK/dom-32.html")" \
        "site $n, never seen, is a red row"
done
for size in 1366x768 1920x1080; do
    shot="$WORK/dashboard-32-$size.png"
    CHROMIUM_PROFILE="$PROFILE" chromium_run "$WORK/screenshot-32-$size.out" "$BASE/dashboard" --screenshot="$shot" \
        --window-size="${size/x/,}" --hide-scrollbars
    [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$shot is not a PNG"
    cp "$shot" "$ARTIFACTS/"
    ok "screenshot of the 32-site hub saved: $ARTIFACTS/dashboard-32-$size.png"
done

# The per-site page (#site=ID, reached by a click on the row): site 102's
# kept connects and disconnects, its last seen time; site 101's SAE with
# the hub's receipt time and its open query.
CHROMIUM_PROFILE="$PROFILE" chromium_run "$WORK/dom-site102.html" "$BASE/dashboard#site=102" --dump-dom
assert_contains "$(dom_id "$WORK/dom-site102.html" site-title)" "Site 102 (102)" "site 102's page names the site"
events=$(perl -0777 -ne 'print "$1 " while /<tr\b[^>]*\bdata-event="([^"]*)"/g' "$WORK/dom-site102.html")
assert_contains "$events" "disconnected" "site 102's page lists its disconnect"
assert_contains "$events" "connected" "and its connect"
seen=$(dom_id "$WORK/dom-site102.html" site-seen)
case "$seen" in *ago) ok "site 102's page shows it last seen $seen" ;; *) fail "site 102's last seen shows '$seen'" ;; esac
api /v1/sites/102 | jq -e '.events | length >= 2' > /dev/null || fail "GET /v1/sites/102 lists no events"
drive "$WORK/dom-site101.html" "$BASE/dashboard" \
    "wait:document.querySelector('#sites tr[data-peer=\"101\"]') !== null" \
    "eval:document.querySelector('#sites tr[data-peer=\"101\"] td.state').click(); true" \
    "wait:!document.getElementById('site-page').hidden && document.querySelector('#site-saes tr[data-sae]') !== null" \
    || fail "opening site 101's page by a click in Chromium: $(tail -n 3 "$WORK/chromium.log")"
ok "a click on site 101's row opens its page"
dom_section "$WORK/dom-site101.html" site-page > "$WORK/site101-page.html" || fail "no site page in the DOM"
assert_contains "$(dom_id "$WORK/dom-site101.html" site-title)" "Site 101 (101)" "site 101's page names the site"
received=$(jq -r '.saes[] | select(.id == "101-0001-AE-001") | .received_time' "$WORK/saes.json")
assert_eq "$(date -u -d "$received" '+%Y-%m-%d %H:%M UTC')" \
    "$(dom_cell "$WORK/site101-page.html" data-sae 101-0001-AE-001 received)" "its SAE shows the hub's receipt"
assert_eq open "$(dom_cell "$WORK/site101-page.html" data-query Q-hub1-1 state)" "its open query shows"
if dom_cell "$WORK/site101-page.html" data-query Q-hub1-3 state > /dev/null; then
    fail "site 101's page lists a query of site 102"
fi
ok "site 101's page lists no query of another site"
for size in 1366x768 1920x1080; do
    shot="$WORK/dashboard-site-$size.png"
    CHROMIUM_PROFILE="$PROFILE" chromium_run "$WORK/screenshot-site-$size.out" "$BASE/dashboard#site=101" \
        --screenshot="$shot" --window-size="${size/x/,}" --hide-scrollbars
    [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$shot is not a PNG"
    cp "$shot" "$ARTIFACTS/"
    ok "screenshot of site 101's page saved: $ARTIFACTS/dashboard-site-$size.png"
done
# ---- CSRF from another port of the same host, in the signed-in browser ----------
# SameSite does not separate ports: a page on 127.0.0.1:OTHER is same-site to
# the hub, so the browser sends it the session cookie.  The attacker's page
# closes query Q-hub1-2 three ways (a no-cors fetch, a CORS fetch, a form
# post); its server logs every request with its Cookie header, as the logging
# server in the report did.  The hub must apply nothing and say so.
ATTACK_PORT=$(free_port)
mkdir -p "$WORK/attacker"
cat > "$WORK/attacker/attack.html" <<HTML
<!DOCTYPE html><html><body><p id='state'>started</p>
<form id='f' method='post' enctype='text/plain' action='$BASE/v1/records/query/Q-hub1-2'>
<input type='hidden' name='{"fields": {"state": "closed"}, "x": "' value='"}'></form>
<script>
const url = '$BASE/v1/records/query/Q-hub1-2';
const body = JSON.stringify({fields: {state: 'cancelled'}, reason: 'x'});
(async () => {
  try { await fetch(url, {method: 'POST', mode: 'no-cors', credentials: 'include',
                          headers: {'Content-Type': 'text/plain'}, body: body}); } catch (e) {}
  try { await fetch(url, {method: 'POST', mode: 'cors', credentials: 'include',
                          headers: {'Content-Type': 'application/json', 'X-CSRF-Token': 'guess'},
                          body: body}); } catch (e) {}
  await fetch('/marker?fetches-done', {cache: 'no-store'});
  document.getElementById('state').textContent = 'posting';
  document.getElementById('f').submit();
})();
</script></body></html>
HTML
"$PY3" - "$ATTACK_PORT" "$WORK/attacker" "$WORK/attacker.requests" <<'PY' > "$WORK/attacker.log" 2>&1 &
import http.server, sys
port, root, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def do_GET(self):
        with open(log, 'a') as f:
            f.write('%s cookie=%s\n' % (self.path, self.headers.get('Cookie', '')))
        super().do_GET()
http.server.ThreadingHTTPServer(('127.0.0.1', port), H).serve_forever()
PY
attacker=$!
NODE_PIDS[attacker]=$attacker  # stopped by the suite's cleanup should a check fail
wait_until 10 "the attacker's server up" curl -sf -o /dev/null "http://127.0.0.1:$ATTACK_PORT/attack.html"
trace_from=$(log_lines "$WORK/hub.log")
refused_before=$(api /v1/status | jq .dashboard_requests_refused)
# The signed-in profile opens the attacker's page, which runs its fetches and
# posts its form; the run ends once the form's answer (the hub's) is loaded.
timeout 120 "$PY3" "$TS_SRC/tests/e2e/browser_drive.py" "$CHROMIUM" "$PROFILE" "$WORK/attack-dom.html" \
    "http://127.0.0.1:$ATTACK_PORT/attack.html" \
    "wait:location.port === '$HUB_API_PORT' && document.readyState === 'complete'" \
    2>> "$WORK/chromium.log" || fail "the attacker's page in Chromium: $(tail -n 3 "$WORK/chromium.log")"
kill "$attacker"
wait "$attacker" 2> /dev/null || true
unset 'NODE_PIDS[attacker]'
assert_contains "$(cat "$WORK/attack-dom.html")" "cross-site request forgery" \
    "the form post landed on the hub's refusal"
grep -q '^/marker?fetches-done ' "$WORK/attacker.requests" \
    || fail "the attacker's script did not run to its end: $(cat "$WORK/attacker.requests")"
ok "the attacker's page ran both fetches and posted its form"
leaked=$(sed -n 's/^\/marker?fetches-done cookie=//p' "$WORK/attacker.requests" | head -1)
assert_contains "$leaked" "ts_session=" "cookies ignore ports: the attacker's server received the session cookie"
for secret in "$TOKEN" "$MON_TOKEN" "${MON_TOKEN#*:}"; do
    case "$leaked" in *"$secret"*) fail "a token reached the attacker's server: $leaked" ;; esac
done
ok "what reached the attacker's server holds no token"
assert_eq open "$(api /v1/records/query/Q-hub1-2 | jq -r .fields.state.value)" "the hub applied nothing: Q-hub1-2 is still open"
# (Identical trace lines are summarised, so the count is the counter's to give.)
since_line "$WORK/hub.log" "$trace_from" > "$WORK/attack.trace"
assert_contains "$(cat "$WORK/attack.trace")" \
    "refused a browser-session request POST /v1/records/query/Q-hub1-2 by user 'mon' from 127.0.0.1 (Origin 'http://127.0.0.1:$ATTACK_PORT')" \
    "the hub traced the refusal: mon's session cookie came with the attacker's Origin"
assert_eq $((refused_before + 2)) "$(api /v1/status | jq .dashboard_requests_refused)" \
    "and counted both (trialsync_dashboard_requests_refused_total)"
assert_contains "$(api /metrics)" "trialsync_dashboard_requests_refused_total $((refused_before + 2))" \
    "/metrics shows the refusals"
sid=${leaked#*ts_session=}
sid=${sid%%;*}
assert_eq 403 "$(as_session "$sid" "" "" "" GET /v1/status)" \
    "the session id that leaked reads nothing without the page's CSRF token"

# Sign-out from the page: the browser's session ends, and with it what leaked.
drive "$WORK/signout-dom.html" "$BASE/dashboard" \
    "wait:/UTC\$/.test((document.getElementById('refreshed') || {}).textContent || '')" \
    "eval:document.getElementById('signout').click(); true" \
    "wait:document.readyState === 'complete' && document.getElementById('signin') !== null" \
    || fail "signing out in Chromium: $(tail -n 3 "$WORK/chromium.log")"
assert_contains "$(cat "$WORK/signout-dom.html")" "id=\"signin\"" "after sign-out the page is the sign-in form"
assert_eq 401 "$(as_session "$sid" "" "" "" GET /v1/status)" "the signed-out session is gone at the hub"
assert_contains "$(cat "$WORK/last.json")" "session has ended" "and the node says so"

stop_node hub
done_checks
