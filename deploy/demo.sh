#!/usr/bin/env bash
# make demo: a trial on one machine: a hub and two sites on loopback.
# Records are written at both sites, some while the hub is down; when it is
# back, everything converges and the replication status is printed.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/$BUILD"
TS="$BIN/trialsync"
TSD="$BIN/trialsyncd"
DIR="$ROOT/demo-cluster"
LOGS="$ROOT/demo-cluster"
. "$ROOT/deploy/nodes.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# quote WORD: the word as a shell would need it typed, so every echoed command
# can be pasted from the project's root as it stands.
quote() {
    case "$1" in
        "" | *[!A-Za-z0-9_./=:,+@%^-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}
run() {
    local arg line=""
    for arg in "$@"; do line="$line $(quote "${arg#"$ROOT"/}")"; done
    printf '$%s\n' "$line"
    "$@"
}

start() {  # NAME NODEDIR
    node_start "$1" "$2"
    echo "   $1 is up (trace: demo-cluster/$1.log)"
}

stop() {  # NAME
    node_stop "$1"
    echo "   $1 stopped"
}

count() { "$TS" records --node "$1" "$2" | jq -r .count; }

wait_count() {  # NODEDIR TYPE N
    for _ in $(seq 1 300); do
        [ "$(count "$1" "$2")" -ge "$3" ] && return 0
        sleep 0.1
    done
    echo "timed out waiting for $3 $2 records at $1" >&2
    exit 1
}

rm -rf "$DIR"
mkdir -p "$DIR"
HUB="$DIR/trial/hub"
S1="$DIR/site-101"
S2="$DIR/site-102"

say "1. An admin creates trial DEMO-301: its CA, the CRO hub, an admin identity"
run "$TS" init --trial DEMO-301 --dir "$DIR/trial" --peer-port "$(free_port)" --api-port "$(free_port)"
start hub "$HUB"

say "2. Two hospitals join: each gets a bundle (key 0600, certificate, CA, node.conf)"
run "$TS" site add 101 --dir "$DIR/trial" --out "$S1" --name "St. Mary's, Boston" --api-port "$(free_port)"
run "$TS" site add 102 --dir "$DIR/trial" --out "$S2" --name "Charité, Berlin" --api-port "$(free_port)"
start site-101 "$S1"
start site-102 "$S2"

say "3. People get accounts: a coordinator, an investigator, a CRO monitor and data manager (tokens 0600)"
USERS="$DIR/trial/users"
run "$TS" user add anna --role crc --site 101 --name "Anna Kowalski" --dir "$DIR/trial"
run "$TS" user add weber --role investigator --site 102 --name "Dr. Lena Weber" --dir "$DIR/trial"
run "$TS" user add lee --role monitor --name "Lee Chen" --dir "$DIR/trial"
run "$TS" user add dana --role dm --name "Dana Brooks" --dir "$DIR/trial"
for _ in $(seq 1 300); do
    "$TS" get --node "$S1" user anna > /dev/null 2>&1 && "$TS" get --node "$S2" user weber > /dev/null 2>&1 && break
    sleep 0.1
done
echo "   the accounts replicated to the sites, which sign their people in even offline"

say "4. Sites record subjects, visits and an adverse event, each person signed in"
run env TRIALSYNC_TOKEN_FILE="$USERS/anna.token" "$TS" put --node "$S1" subject 101-0001 site=101 sex=F brthdtc=1961-04 status=screening
run env TRIALSYNC_TOKEN_FILE="$USERS/anna.token" "$TS" put --node "$S1" visit 101-0001/V1 svstdtc=2026-11-20 status=completed
run env TRIALSYNC_TOKEN_FILE="$USERS/weber.token" "$TS" put --node "$S2" subject 102-0001 site=102 sex=M brthdtc=1958 status=screening
run env TRIALSYNC_TOKEN_FILE="$USERS/weber.token" "$TS" put --node "$S2" ae 102-0001-AE-001 aeterm=Nausea aestdtc=2026-11-21 aesev=MILD aeser=N status=ongoing
wait_count "$HUB" subject 2
echo "   the hub now holds $(count "$HUB" subject) subjects from both sites; its audit trail names the person and role:"
"$TS" history --node "$HUB" subject 101-0001 --json | jq -c '.versions[0] | {field, new_value, user, role, via, node}' | sed 's/^/   /'
echo "   a coordinator may not act at another site's node:"
if TRIALSYNC_TOKEN_FILE="$USERS/anna.token" "$TS" get --node "$S2" subject 102-0001 2>&1 | sed 's/^/   /'; then :; fi

say "5. The CRO hub goes down; the sites keep recording"
stop hub
for i in $(seq 2 26); do
    "$TS" put --node "$S1" subject "$(printf '101-%04d' "$i")" site=101 sex=U status=screening --user coordinator.anna > /dev/null
    "$TS" put --node "$S2" subject "$(printf '102-%04d' "$i")" site=102 sex=U status=screening --user dr.weber > /dev/null
done
echo "   wrote 25 subjects at each site while the hub was down"
run "$TS" put --node "$S1" ae 101-0001-AE-001 aeterm="Anaphylaxis" aestdtc=2026-11-22 aesev=SEVERE aeser=Y aeslife=Y sae_aware_dtc="$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)" status=ongoing --user dr.jones
run "$TS" put --node "$S1" subject 101-0001 status=enrolled --user coordinator.anna
echo "   site 101 while the hub is down:"
"$TS" status --node "$S1" | sed 's/^/   /'

say "6. The hub is back: sites catch up (the serious AE on the safety lane first)"
start hub "$HUB"
wait_count "$HUB" subject 52
wait_count "$HUB" ae 2
echo "   hub: $(count "$HUB" subject) subjects, $(count "$HUB" ae) adverse events"
echo "   site 101: $(count "$S1" subject) subjects; site 102: $(count "$S2" subject) subjects"
echo "   the SAE at the hub, with its 24-hour deadline:"
"$TS" saes --node "$HUB" | jq -c '.saes[] | {id, aeterm, aware_time, received_time, deadline, late}' | sed 's/^/   /'
echo "   site 101 sees it acknowledged: $("$TS" saes --node "$S1" | jq -c '[.saes[] | {id, acked}]')"

say "7. The CRO raises a data query about subject 101-0001; only site 101 receives it"
run env TRIALSYNC_TOKEN_FILE="$USERS/lee.token" "$TS" put --node "$HUB" query Q-hub1-1 target=subject/101-0001/brthdtc text="Please confirm the birth month" state=open source=monitor
for _ in $(seq 1 100); do "$TS" get --node "$S1" query Q-hub1-1 > /dev/null 2>&1 && break; sleep 0.1; done
echo "   site 101 sees: $("$TS" get --node "$S1" query Q-hub1-1 | jq -c '.fields.text.value')"
if "$TS" get --node "$S2" query Q-hub1-1 > /dev/null 2>&1; then echo "   site 102 holds it (unexpected)"; else echo "   site 102 does not hold it"; fi
echo "   site 102 holds $(count "$S2" subject) subjects, none of site 101's"
echo "   the monitor verifies site 102's subject against the source; its investigator signs it:"
run env TRIALSYNC_TOKEN_FILE="$USERS/lee.token" "$TS" sdv --node "$HUB" subject 102-0001
run env TRIALSYNC_TOKEN_FILE="$USERS/weber.token" "$TS" sign --node "$S2" subject 102-0001 --meaning approval --secret-file "$USERS/weber.token"
for _ in $(seq 1 100); do
    "$TS" get --node "$HUB" subject 102-0001 | jq -e '(.signatures | length) > 0' > /dev/null && break
    sleep 0.1
done
echo "   at the hub: $("$TS" get --node "$HUB" subject 102-0001 | jq -c '{sdv: [.sdv[] | {user, state}], signatures: [.signatures[] | {name, meaning, state}]}')"

say "8. A concurrent edit: site 101 and the CRO change one field without seeing each other"
stop hub
run "$TS" put --node "$S1" subject 101-0002 sex=F --reason "source document says female" --user coordinator.anna
stop site-101
start hub "$HUB"
run "$TS" put --node "$HUB" subject 101-0002 sex=M --reason "per monitor visit" --user monitor.lee
start site-101 "$S1"
for _ in $(seq 1 100); do
    [ "$("$TS" conflicts --node "$S1" | jq .count)" -ge 1 ] && [ "$("$TS" conflicts --node "$HUB" | jq .count)" -ge 1 ] && break
    sleep 0.1
done
echo "   the hub shows:  $("$TS" get --node "$HUB" subject 101-0002 | jq -c '.fields.sex | {value, conflict, values: [.values[]?.value]}')"
echo "   site 101 shows: $("$TS" get --node "$S1" subject 101-0002 | jq -c '.fields.sex | {value, conflict, values: [.values[]?.value]}')"
echo "   both keep both values and flag the conflict for a person to resolve, with the same system query:"
echo "   hub:  $("$TS" get --node "$HUB" subject 101-0002 | jq -c '[.system_queries[] | {id, state, cause}]')"
echo "   site: $("$TS" get --node "$S1" subject 101-0002 | jq -c '[.system_queries[] | {id, state}]')"

say "9. The data manager locks site 102's subject; an edit the site made without seeing the lock is quarantined"
stop site-102
run env TRIALSYNC_TOKEN_FILE="$USERS/dana.token" "$TS" lock --node "$HUB" --subject 102-0001 --reason "interim analysis"
stop hub
start site-102 "$S2"
run env TRIALSYNC_TOKEN_FILE="$USERS/weber.token" "$TS" put --node "$S2" subject 102-0001 brthdtc=1959 --reason "typo found offline"
start hub "$HUB"
for _ in $(seq 1 100); do
    "$TS" get --node "$HUB" subject 102-0001 | jq -e '(.quarantined | length) > 0' > /dev/null 2>&1 &&
        "$TS" get --node "$S2" subject 102-0001 | jq -e '.locked != null' > /dev/null 2>&1 && break
    sleep 0.1
done
echo "   the hub still shows the locked brthdtc $("$TS" get --node "$HUB" subject 102-0001 | jq -c '.fields.brthdtc.value'); quarantined:"
echo "   $("$TS" get --node "$HUB" subject 102-0001 | jq -c '[.quarantined[] | {entry, user, fields, lock_epoch, query: .query.id}]')"
echo "   a new write at site 102, now that it knows the lock:"
if env TRIALSYNC_TOKEN_FILE="$USERS/weber.token" "$TS" put --node "$S2" subject 102-0001 brthdtc=1957 --reason "again" 2>&1 | sed 's/^/   /'; then
    echo "   (accepted: unexpected)"
fi

# Let the last pushes land so the table shows the settled state.
for _ in $(seq 1 100); do
    "$TS" status --node "$HUB" --json | jq -e '([.peers[] | select(.connected | not)] | length) == 0 and ([.peers[] | .behind_send_bulk + .behind_send_safety + .behind_recv_bulk + .behind_recv_safety] | add // 0) == 0' > /dev/null && break
    sleep 0.1
done
say "10. Replication status at the hub"
run "$TS" status --node "$HUB"
run "$TS" site list --dir "$DIR/trial"

say "11. Everything stops cleanly"
stop site-101
stop site-102
stop hub
echo
echo "The cluster's files are in demo-cluster/ (node directories, traces)."
