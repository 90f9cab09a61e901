#!/usr/bin/env bash
# The operators' dashboard in a real browser: headless Chromium (Debian's
# chromium package, which 'make deps' installs) against a real hub with two
# real sites.  The page must show what the API reports: site 101 connected,
# site 102 (stopped) disconnected, the SAE written at site 101 with the
# deadline GET /v1/saes gives, the query open at the hub.  Also checks the
# sign-in flow (401 form, ?token= sets an HttpOnly cookie and redirects), that
# the page names no outside address and carries a Content-Security-Policy,
# and GET /metrics.  Keeps screenshots at 1366x768 and 1920x1080:
# $TS_BIN/test-artifacts/dashboard-WxH.png.
. "$(dirname "$0")/../integration/lib.sh"

ARTIFACTS="$TS_BIN/test-artifacts"

# ---- tools ---------------------------------------------------------------------
need_cmd chromium chromium
need_cmd curl curl
need_cmd perl perl-base
CHROMIUM=$(command -v chromium)
ok "chromium present: $("$CHROMIUM" --version 2> /dev/null | head -1)"

# chromium_run OUTFILE URL ARGS...: headless, offline-minded, a fresh profile
# (so no cookie survives from another run), 8 s of page time (four refreshes).
chromium_run() {
    local out=$1 url=$2 profile
    shift 2
    profile=$(mktemp -d "$WORK/chromium-profile.XXXXXX")
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

# ---- sign-in ------------------------------------------------------------------
code=$(curl -sS -o "$WORK/login.html" -w '%{http_code}' "$BASE/dashboard")
assert_eq 401 "$code" "GET /dashboard without credentials answers 401"
assert_contains "$(cat "$WORK/login.html")" "name='token'" "the 401 page is a form asking for the token"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$BASE/dashboard?token=not-the-token-at-all")
assert_eq 401 "$code" "a wrong token in the query is refused"
curl -sS -o /dev/null -D "$WORK/redirect.headers" "$BASE/dashboard?token=$TOKEN"
assert_eq 302 "$(head -1 "$WORK/redirect.headers" | cut -d' ' -f2)" "?token= answers 302"
assert_contains "$(tr -d '\r' < "$WORK/redirect.headers")" "Location: /dashboard" "the redirect drops the token from the URL"
cookie=$(tr -d '\r' < "$WORK/redirect.headers" | grep -i '^Set-Cookie:' | head -1)
assert_contains "$cookie" "ts_token=$TOKEN" "the cookie carries the token"
assert_contains "$cookie" "HttpOnly" "the cookie is HttpOnly"
assert_contains "$cookie" "SameSite=Strict" "the cookie is SameSite=Strict"
code=$(curl -sS -o "$WORK/page.html" -D "$WORK/page.headers" -w '%{http_code}' \
    -H "Cookie: ts_token=$TOKEN" "$BASE/dashboard")
assert_eq 200 "$code" "the cookie opens the dashboard"
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
        -H "Cookie: ts_token=$TOKEN" "$url")
    assert_eq 200 "$code" "GET /dashboard/${f%%:*} with the cookie answers 200"
    assert_contains "$(tr -d '\r' < "$WORK/${f%%:*}.headers")" "Content-Type: ${f#*:}" \
        "/dashboard/${f%%:*} is ${f#*:}"
    [ -s "$WORK/${f%%:*}" ] || fail "/dashboard/${f%%:*} is empty"
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$url")
    assert_eq 401 "$code" "GET /dashboard/${f%%:*} without the cookie answers 401"
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: ts_token=wrong$TOKEN" "$url")
    assert_eq 401 "$code" "GET /dashboard/${f%%:*} with a wrong cookie answers 401"
done
# (A scheme must start a word here: the styles say 'grid-template-rows:'.)
if grep -Eiq '\b(https?|ftp|wss?)://|//[a-z0-9.-]+\.[a-z]{2,}' "$WORK/app.js" "$WORK/style.css"; then
    fail "the script or styles name an outside address"
fi
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: ts_token=$TOKEN" "$BASE/v1/status")
assert_eq 200 "$code" "the cookie authenticates the page's API calls"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: ts_token=wrong$TOKEN" "$BASE/v1/status")
assert_eq 401 "$code" "a wrong cookie does not"

# ---- the page in Chromium -----------------------------------------------------
api /v1/status > "$WORK/status.json"
api /v1/saes > "$WORK/saes.json"
chromium_run "$WORK/dom.html" "$BASE/dashboard?token=$TOKEN" --dump-dom
[ -s "$WORK/dom.html" ] || fail "chromium dumped no DOM"
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
    chromium_run "$WORK/screenshot-$size.out" "$BASE/dashboard?token=$TOKEN" --screenshot="$shot" \
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
chromium_run "$WORK/dom-none.html" "$BASE/dashboard?token=$TOKEN" --dump-dom
assert_eq "0 / 2" "$(dom_id "$WORK/dom-none.html" n-sites)" "the page shows 0 / 2 sites connected"
assert_eq "tile bad" "$(tile_class "$WORK/dom-none.html" tile-sites)" "0 / 2 sites connected: the tile is red"
stop_node hub
done_checks
