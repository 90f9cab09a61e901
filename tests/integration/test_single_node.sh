#!/usr/bin/env bash
# One hub node: records written, read and audited through the CLI; bad input
# refused with errors that name the field; bad config, unsafe key and token
# permissions, and a port in use refused at start; SIGTERM stops cleanly.
. "$(dirname "$0")/lib.sh"
need_cmd curl curl
need_cmd openssl openssl

new_trial T-SINGLE
assert_contains "$(cat "$WORK/init.out")" "trial T-SINGLE created" "init reports the trial"
assert_eq 600 "$(stat -c %a "$HUB/node.key")" "hub key is mode 0600"
assert_eq 600 "$(stat -c %a "$WORK/trial/ca/ca.key")" "CA key is mode 0600"
if "$TRIALSYNC" init --trial T-SINGLE --dir "$WORK/trial" 2> "$WORK/err"; then
    fail "init over an existing trial succeeded"
fi
assert_contains "$(cat "$WORK/err")" "refusing to overwrite" "init refuses an existing trial"

start_node hub "$HUB"
# The hub writes only for sites of the trial.
add_site 101

# The revocation list is renewed on demand and the running hub reloads it.
# (The CRL number only grows, so a renewal within the same second differs too.)
crl_number() { openssl crl -in "$HUB/crl.pem" -noout -crlnumber | sed 's/^crlNumber=//'; }
before=$(crl_number)
"$TRIALSYNC" crl renew --dir "$WORK/trial" > "$WORK/crl.out" || fail "crl renew"
after=$(crl_number)
[ -n "$before" ] && [ "$((16#$after > 16#$before))" = 1 ] \
    || fail "crl renew did not re-sign the hub's CRL: number $before, then $after"
ok "crl renew re-signs the CRL into the hub's directory (number $before -> $after)"
wait_until 5 "the hub reloads the renewed CRL" grep -q "revocation list reloaded" "$WORK/hub.log"
ok "the running hub reloads it"

# Records through the CLI.
"$TRIALSYNC" put --node "$HUB" subject 101-0001 site=101 sex=F brthdtc=1961-04 status=screening \
    --user coordinator > "$WORK/put.json" || fail "put subject"
assert_eq "true" "$(json .ok < "$WORK/put.json")" "put subject acknowledged"
"$TRIALSYNC" put --node "$HUB" visit 101-0001/V1 svstdtc=2026-11-02 status=scheduled > /dev/null \
    || fail "put visit"
"$TRIALSYNC" put --node "$HUB" ae 101-0001-AE-001 aeterm=Headache aestdtc=2026-11-03 aesev=MILD \
    aeser=N status=ongoing > /dev/null || fail "put ae"

"$TRIALSYNC" get --node "$HUB" subject 101-0001 > "$WORK/get.json" || fail "get subject"
assert_eq F "$(json .fields.sex.value < "$WORK/get.json")" "get shows sex"
assert_eq 1961-04 "$(json .fields.brthdtc.value < "$WORK/get.json")" "partial date kept"
assert_eq false "$(json .fields.sex.conflict < "$WORK/get.json")" "no conflict"

# A change to a field with a value needs a reason.
if "$TRIALSYNC" put --node "$HUB" subject 101-0001 sex=M 2> "$WORK/err"; then
    fail "a change without a reason was accepted"
fi
assert_contains "$(cat "$WORK/err")" "reason" "change without a reason refused"
assert_contains "$(cat "$WORK/err")" "sex" "the refusal names the field"
"$TRIALSYNC" put --node "$HUB" subject 101-0001 sex=M --reason "transcription error" \
    --user monitor > /dev/null || fail "put with reason"
assert_eq M "$(""$TRIALSYNC"" get --node "$HUB" subject 101-0001 | json .fields.sex.value)" \
    "corrected value shown"

# An invalid controlled term is refused, naming the allowed values; nothing written.
if "$TRIALSYNC" put --node "$HUB" ae 101-0001-AE-001 aesev=TERRIBLE --reason x 2> "$WORK/err"; then
    fail "an invalid severity was accepted"
fi
assert_contains "$(cat "$WORK/err")" "MILD" "refusal lists the allowed values"
assert_contains "$(cat "$WORK/err")" "TERRIBLE" "refusal names the value"
assert_eq MILD "$("$TRIALSYNC" get --node "$HUB" ae 101-0001-AE-001 | json .fields.aesev.value)" \
    "refused write changed nothing"
if "$TRIALSYNC" put --node "$HUB" subject 101-0002 site=101 brthdtc=1961-02-30 2> "$WORK/err"; then
    fail "an impossible date was accepted"
fi
assert_contains "$(cat "$WORK/err")" "brthdtc" "impossible date refused naming the field"
if "$TRIALSYNC" get --node "$HUB" subject 101-0002 > /dev/null 2>&1; then
    fail "a refused record exists"
fi
ok "a refused new record does not exist"

# History: every version, who, when, old and new value, why.
"$TRIALSYNC" history --node "$HUB" subject 101-0001 > "$WORK/hist.json" || fail "history"
assert_eq 2 "$(jq '[.versions[] | select(.field == "sex")] | length' < "$WORK/hist.json")" \
    "history holds both versions of sex"
assert_eq F "$(jq -r '[.versions[] | select(.field == "sex")][1].old_value' < "$WORK/hist.json")" \
    "history shows the old value"
assert_eq "transcription error" \
    "$(jq -r '[.versions[] | select(.field == "sex")][1].reason' < "$WORK/hist.json")" \
    "history shows the reason"
assert_eq integration:monitor "$(jq -r '[.versions[] | select(.field == "sex")][1].user' < "$WORK/hist.json")" \
    "history shows the user"
assert_eq "integration monitor" "$(jq -r '[.versions[] | select(.field == "sex")][1] | "\(.via) \(.on_behalf_of)"' < "$WORK/hist.json")" \
    "history says the integration credential acted, and for whom"
assert_contains "$(jq -r '.versions[0].entry_time' < "$WORK/hist.json")" "Z" "times are UTC"

# A client that pipelines requests: three writes in one TCP send, two of them
# to the same record, all answered in order.
tok=$(cat "$HUB/api.token")
req() {  # ID SEX REASON [CONNECTION]
    local body="{\"fields\":{\"site\":\"101\",\"sex\":\"$2\"},\"reason\":\"$3\",\"user\":\"coordinator\"}"
    printf 'POST /v1/records/subject/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: %s\r\nContent-Length: %d\r\n\r\n%s' \
        "$1" "$tok" "${4:-keep-alive}" "${#body}" "$body"
}
exec 5<>"/dev/tcp/127.0.0.1/$HUB_API_PORT"
{ req 101-0100 F ""; req 101-0100 M "pipelined correction"; req 101-0101 U "" close; } >&5
answers=$(timeout 10 cat <&5 | grep -c '^HTTP/1.1 200' || true)
exec 5>&-
assert_eq 3 "$answers" "three pipelined writes, three answers"
assert_eq M "$("$TRIALSYNC" get --node "$HUB" subject 101-0100 | json .fields.sex.value)" \
    "pipelined writes applied in order"

# A large answer (a history of several MiB) arrives whole over a connection
# the client closes after it (the CLI's way).
# The 600 versions go in through the API over one keep-alive connection (one
# curl run, not 600 processes: quick on a loaded machine too).
big=$(head -c 4000 /dev/zero | tr '\0' 'q')
mkdir -p "$WORK/q"
for i in $(seq 1 600); do
    printf '{"fields":{"target":"subject/101-0001/sex","text":"%s %s","state":"open","source":"dm"},"reason":"round %s","user":"dm"}' \
        "$i" "$big" "$i" > "$WORK/q/$i.json"
    [ "$i" = 1 ] || echo next
    printf 'url = "http://127.0.0.1:%s/v1/records/query/Q-hub1-9"\n' "$HUB_API_PORT"
    printf 'header = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\n' "$tok"
    printf 'data-binary = "@%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' "$WORK/q/$i.json"
done > "$WORK/q.curl"
curl -sS -K "$WORK/q.curl" > "$WORK/q.codes" || fail "curl writing 600 query versions"
assert_eq 600 "$(grep -c '^200$' "$WORK/q.codes")" "600 versions of a 4 KB query written and acknowledged"
assert_eq 600 "$("$TRIALSYNC" history --node "$HUB" query Q-hub1-9 | jq '[.versions[] | select(.field == "text")] | length')" \
    "a multi-MiB history arrives whole"

# A header whose value arrives in two TCP reads.
exec 5<>"/dev/tcp/127.0.0.1/$HUB_API_PORT"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: abc' >&5
sleep 0.3
printf 'def\r\nConnection: close\r\n\r\n' >&5
assert_contains "$(timeout 5 cat <&5)" "HTTP/1.1 200" "a header split across reads is parsed"
exec 5>&-

# Conflicts, status, digest.
assert_eq 0 "$("$TRIALSYNC" conflicts --node "$HUB" | json .count)" "no conflicts"
"$TRIALSYNC" status --node "$HUB" --json > "$WORK/status.json" || fail "status"
assert_eq hub1 "$(json .node < "$WORK/status.json")" "status names the node"
# 607 accepted writes, and the revocation list 'crl renew' recorded in the
# oplog (it reaches every node by replication).
assert_eq 609 "$(json .entries < "$WORK/status.json")" "status counts the 607 accepted writes, the CRL entry and site 101's membership"
"$TRIALSYNC" status --node "$HUB" | grep -q "node hub1 (hub) of trial T-SINGLE" \
    || fail "status table"
ok "status prints a table"
D1=$(digest "$HUB")
assert_eq 64 "${#D1}" "digest is a SHA-256"

# The API needs the token.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HUB_API_PORT/v1/status")
assert_eq 401 "$code" "API without a token refused"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrongwrongwrongwrong" \
    "http://127.0.0.1:$HUB_API_PORT/v1/status")
assert_eq 401 "$code" "API with a wrong token refused"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HUB_API_PORT/healthz")
assert_eq 200 "$code" "healthz answers without a token"

# A second node on the same config: the port is in use.
if "$TRIALSYNCD" --config "$HUB/node.conf" 2> "$WORK/err"; then fail "second node started"; fi
assert_contains "$(cat "$WORK/err")" "in use" "port in use refused with a clear message"

# SIGTERM: clean stop; state and digest survive a restart.
stop_node hub
start_node hub "$HUB"
assert_eq "$D1" "$(digest "$HUB")" "digest unchanged after restart"
assert_eq M "$("$TRIALSYNC" get --node "$HUB" subject 101-0001 | json .fields.sex.value)" \
    "record survives restart"
stop_node hub

# Below the free-disk threshold: writes refused with a clear error, reads
# still served, nothing lost; writes resume once space is back.
cp "$HUB/node.conf" "$WORK/good.conf"
sed -i 's/^disk_free_min_mb = .*/disk_free_min_mb = 1048576/' "$HUB/node.conf"
start_node hub "$HUB"
if "$TRIALSYNC" put --node "$HUB" subject 101-0009 site=101 sex=F 2> "$WORK/err"; then
    fail "a write was accepted below the free-disk threshold"
fi
assert_contains "$(cat "$WORK/err")" "disk_free_min_mb" "a low disk refuses writes, naming the setting"
assert_contains "$(cat "$WORK/err")" "reads still work" "the refusal says reads still work"
assert_eq M "$("$TRIALSYNC" get --node "$HUB" subject 101-0001 | json .fields.sex.value)" \
    "reads are served while writes are refused"
assert_eq false "$("$TRIALSYNC" status --node "$HUB" --json | json .accepting_writes)" \
    "status says writes are refused"
assert_eq false "$(curl -s "http://127.0.0.1:$HUB_API_PORT/healthz" | jq .accepting_writes)" \
    "healthz says writes are refused"
stop_node hub
cp "$WORK/good.conf" "$HUB/node.conf"
start_node hub "$HUB"
"$TRIALSYNC" put --node "$HUB" subject 101-0009 site=101 sex=F > /dev/null || fail "write after space returned"
ok "writes resume once there is space again"
stop_node hub

# Bad configurations are refused at start, naming the problem.
cp "$HUB/node.conf" "$WORK/good.conf"
printf '[node]\nid = hub1\nrole = emperor\ntrial = T-SINGLE\n' > "$HUB/node.conf"
if "$TRIALSYNCD" --config "$HUB/node.conf" 2> "$WORK/err"; then fail "bad role accepted"; fi
assert_contains "$(cat "$WORK/err")" "role" "bad role refused"
printf '[node]\nid = hub1\nrole = hub\ntrial = T-SINGLE\nfrobnicate = 1\n' > "$HUB/node.conf"
if "$TRIALSYNCD" --config "$HUB/node.conf" 2> "$WORK/err"; then fail "unknown key accepted"; fi
assert_contains "$(cat "$WORK/err")" "line 5" "unknown key refused with its line"
sed 's/^id = hub1/id = other/' "$WORK/good.conf" > "$HUB/node.conf"
if "$TRIALSYNCD" --config "$HUB/node.conf" 2> "$WORK/err"; then fail "cert mismatch accepted"; fi
assert_contains "$(cat "$WORK/err")" "certificate" "a config that does not match the certificate refused"
cp "$WORK/good.conf" "$HUB/node.conf"
if "$TRIALSYNCD" --config "$WORK/missing.conf" 2> "$WORK/err"; then fail "missing config accepted"; fi
assert_contains "$(cat "$WORK/err")" "cannot read" "missing config refused"

# Unsafe permissions on the key and on the token.
chmod 644 "$HUB/node.key"
if "$TRIALSYNCD" --config "$HUB/node.conf" 2> "$WORK/err"; then fail "0644 key accepted"; fi
assert_contains "$(cat "$WORK/err")" "0600" "a key readable by others refused"
chmod 600 "$HUB/node.key"
chmod 640 "$HUB/api.token"
if "$TRIALSYNCD" --config "$HUB/node.conf" 2> "$WORK/err"; then fail "0640 token accepted"; fi
assert_contains "$(cat "$WORK/err")" "api.token" "a token readable by others refused"
chmod 600 "$HUB/api.token"

# The CLI explains an unreachable node and a usage error.
if "$TRIALSYNC" get --node "$HUB" subject 101-0001 2> "$WORK/err"; then fail "get without node"; fi
assert_contains "$(cat "$WORK/err")" "is trialsyncd running" "unreachable node explained"
"$TRIALSYNC" put --help | grep -q "usage: trialsync put" || fail "put --help"
ok "verbs have --help"
done_checks
