#!/usr/bin/env bash
# The chaos run (make chaos; a short one is the fault_test_chaos suite).
#
# Two hubs and three sites, each trialsyncd in its own network namespace,
# joined by veth pairs to a bridge in a sixth namespace (10.232.0.0/24;
# nothing leaves the namespaces this run creates).  A writer at every node
# (tests/fault/chaos/writer.py): each site creates and corrects its own
# subjects, visits and adverse events (some serious: the safety lane); each
# hub opens queries on the sites' subjects and corrects the same subject
# fields the sites correct, so hub and site edit one record concurrently.
# Every acknowledged write is logged with the origin, lane and seq the API
# answered.  Meanwhile a chaos loop, every choice from the seed, injects
# faults on nodes not already under one, each lifted after a drawn time:
#   kill    kill -9, restarted after a pause
#   stop    SIGSTOP, SIGCONT after a pause
#   cut     the node cut off from every other node (iptables DROP in and out)
#   split   the node cut off from one other node (DROP by address, both ends)
# Then everything heals, the run waits (a deadline that only bounds a hang)
# until the nodes agree, prints the time to converge, stops every node
# (SIGTERM: each must exit 0), and checks:
#   - both hubs' digests equal, and each site's share digest (digest --site)
#     at the site equal to the same share at each hub (at convergence);
#   - every store verifies (hash chains and batch signatures);
#   - the history checker (tests/fault/chaos/check.py) over every node's
#     audit export: every acknowledged write is held as that version (same
#     record, values, origin/lane/seq) at its origin, at both hubs and at its
#     site; no (origin, lane, seq) stands for two different contents, at one
#     node or across nodes (record, values, user, time, chain hash); hubs
#     hold every chain without a gap; no site holds another site's records.
# A violation fails the run naming it and the seed.
#
#   CHAOS_SEED     the seed (default: from the clock); printed first and last
#   CHAOS_SECONDS  how long writers and faults run (default 45)
#   CHAOS_GAP_MAX  at most this many seconds between two faults (default 4)
#   CHAOS_HOLD_MAX a fault is lifted after 1..this many seconds (default 12)
#   CHAOS_CONVERGE_S  deadline for agreement after healing (default 300;
#                  not scaled: it bounds a hang, it measures nothing)
# The seed replays the same draws: which fault, on which node, how long,
# and every writer's choice of record and value; the timing of the processes
# (how many writes land inside a fault) is the machine's, so a replay runs
# the same schedule, not the same interleaving.
#
# Needs root, iproute2 (ip netns, veth, bridge), iptables, python3 and jq;
# fails naming the Debian package when one is missing.  Runs in its own mount
# and PID namespaces with a private /run/netns, like test_partition.sh: if it
# is killed, the kernel kills its nodes and drops its namespaces with it.
if [ "${TS_CHAOS_NS:-0}" != 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "FAIL: network namespaces need root (running as uid $(id -u))" >&2
        exit 1
    fi
    command -v unshare > /dev/null 2>&1 || {
        echo "FAIL: 'unshare' is not installed: it comes from Debian's 'util-linux' package, which 'make deps' installs" >&2
        exit 1
    }
    TS_CHAOS_NS=1 exec unshare --mount --propagation private --pid --fork --kill-child \
        --mount-proc bash "$0" "$@"
fi
. "$(dirname "$0")/../integration/lib.sh"
CHAOS_DIR="$TS_SRC/tests/fault/chaos"

SEED=${CHAOS_SEED:-$(( $(date +%s%N) / 1000 % 1000000000 ))}
echo "chaos seed: $SEED (replay with CHAOS_SEED=$SEED)"
RANDOM=$SEED
SECONDS_RUN=${CHAOS_SECONDS:-45}
GAP_MAX=${CHAOS_GAP_MAX:-4}
HOLD_MAX=${CHAOS_HOLD_MAX:-12}
CONVERGE_S=${CHAOS_CONVERGE_S:-300}

mkdir -p /run/netns && mount -t tmpfs -o size=1m,mode=755 tmpfs /run/netns 2> "$WORK/runnetns.err" \
    || fail "cannot mount a private /run/netns: $(cat "$WORK/runnetns.err")"

# Every name of a node, its namespace, address, API port, directory, role.
NODES=(hub1 hub2 s101 s102 s103)
SITES=(101 102 103)
declare -A NS=() ADDR=() API=() DIR=() ROLE=() ORIGIN=() SITE_OF=()
PEER_PORT=7800
i=0
for n in "${NODES[@]}"; do
    NS[$n]=ts-$n-$$
    case $n in
        hub*) ADDR[$n]=10.232.0.${n#hub}; ROLE[$n]=hub; ORIGIN[$n]=$n; SITE_OF[$n]=- ;;
        s*) ADDR[$n]=10.232.0.$((${n#s} - 90)); ROLE[$n]=site; ORIGIN[$n]=${n#s}; SITE_OF[$n]=${n#s} ;;
    esac
    API[$n]=$((7801 + i))
    i=$((i + 1))
done
NS_BR=ts-cbr-$$
NS_MADE=()
DIR[hub1]="$WORK/trial/hub"
DIR[hub2]="$WORK/hub2"
for s in "${SITES[@]}"; do DIR[s$s]="$WORK/site-$s"; done

# On any exit: the seed again, then the nodes (lib.sh's cleanup), then
# whatever is left in the namespaces, then the namespaces.
chaos_cleanup() {
    local rc=$? ns pid
    trap - EXIT
    echo "chaos seed: $SEED (exit $rc; replay with CHAOS_SEED=$SEED)"
    [ -n "${STOP_FILE:-}" ] && touch "$STOP_FILE"
    for pid in "${!STOPPED[@]}"; do kill -CONT "$pid" 2>/dev/null || true; done
    cleanup
    for ns in "${NS_MADE[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for ns in "${NS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    exit "$rc"
}
declare -A STOPPED=()
trap chaos_cleanup EXIT
trap 'exit 130' INT TERM

# ---- can this machine do it? -------------------------------------------------
need_cmd ip iproute2
need_cmd iptables iptables
need_cmd python3 python3-minimal
need_cmd unshare util-linux
for ns in "$NS_BR" "${NS[@]}"; do
    ip netns add "$ns" 2> "$WORK/netns.err" || fail "ip netns add $ns failed: $(cat "$WORK/netns.err")"
    NS_MADE+=("$ns")
    ip -n "$ns" link set lo up || fail "cannot bring lo up in $ns"
done
ip netns exec "${NS[s101]}" iptables -w -L -n > /dev/null 2> "$WORK/ipt.err" \
    || fail "iptables does not work in a network namespace: $(cat "$WORK/ipt.err")"
ip -n "$NS_BR" link add br0 type bridge 2> "$WORK/br.err" || fail "cannot create a bridge: $(cat "$WORK/br.err")"
ip -n "$NS_BR" link set br0 up || fail "cannot bring the bridge up"
for n in "${NODES[@]}"; do
    ip link add eth0 netns "${NS[$n]}" type veth peer name "$n" netns "$NS_BR" 2> "$WORK/veth.err" \
        || fail "cannot create a veth pair: $(cat "$WORK/veth.err")"
    ip -n "$NS_BR" link set "$n" master br0 && ip -n "$NS_BR" link set "$n" up \
        && ip -n "${NS[$n]}" addr add "${ADDR[$n]}/24" dev eth0 && ip -n "${NS[$n]}" link set eth0 up \
        || fail "cannot wire $n to the bridge"
done
ok "5 namespaces bridged (10.232.0.0/24): hubs at .1 and .2, sites at .11 .12 .13"

# ---- helpers -------------------------------------------------------------------
nsx() { local n=$1; shift; ip netns exec "${NS[$n]}" "$TRIALSYNC" "$@"; }

# up NAME: starts the node in its namespace; waits for its API.
up() {
    local n=$1 deadline=$((SECONDS + TS_START_SECS))
    ip netns exec "${NS[$n]}" "$TRIALSYNCD" --config "${DIR[$n]}/node.conf" >> "$WORK/$n.log" 2>&1 &
    NODE_PIDS[$n]=$!
    while [ "$SECONDS" -lt "$deadline" ]; do
        if nsx "$n" status --node "${DIR[$n]}" --json > /dev/null 2>&1; then return 0; fi
        kill -0 "${NODE_PIDS[$n]}" 2>/dev/null || fail "node $n exited at start (seed $SEED)"
        sleep 0.05
    done
    fail "node $n did not answer within $TS_START_SECS s (seed $SEED)"
}

# listen_all NAME: the hub's peer port listens on every address of its
# namespace (what init and hub add write), so sites and the other hub reach it.
listen_all() {
    grep -qx "listen = 0.0.0.0:$PEER_PORT" "${DIR[$1]}/node.conf" \
        || fail "$1's peer listen line: $(grep '^listen' "${DIR[$1]}/node.conf")"
}

# ---- the trial -----------------------------------------------------------------
"$TRIALSYNC" init --trial T-CHAOS --dir "$WORK/trial" --host "${ADDR[hub1]}" --peer-port "$PEER_PORT" \
    --api-port "${API[hub1]}" > "$WORK/init.out" || fail "trialsync init failed"
listen_all hub1
up hub1
nsx hub1 hub add hub2 --dir "$WORK/trial" --out "${DIR[hub2]}" --host "${ADDR[hub2]}" \
    --peer-port "$PEER_PORT" --api-port "${API[hub2]}" > "$WORK/hub-add.out" 2>&1 \
    || fail "hub add hub2: $(cat "$WORK/hub-add.out")"
listen_all hub2
for s in "${SITES[@]}"; do
    nsx hub1 site add "$s" --dir "$WORK/trial" --out "${DIR[s$s]}" --api-port "${API[s$s]}" \
        --name "Site $s" > "$WORK/site-add-$s.out" 2>&1 || fail "site add $s: $(cat "$WORK/site-add-$s.out")"
done
# Every node that dials a hub dials it at its namespace's address (--host).
for n in s101 s102 s103; do
    assert_eq "${ADDR[hub1]}:$PEER_PORT ${ADDR[hub2]}:$PEER_PORT" \
        "$(sed -n 's/^hub = //p' "${DIR[$n]}/node.conf" | sort | xargs)" "$n dials both hubs at their addresses"
done
assert_eq "${ADDR[hub1]}:$PEER_PORT" "$(sed -n 's/^hub = //p' "${DIR[hub2]}/node.conf" | xargs)" \
    "hub2 dials hub1 at its address"
up hub2
for s in "${SITES[@]}"; do up "s$s"; done

connected() {  # NAME PEER
    [ "$(nsx "$1" status --node "${DIR[$1]}" --json | jq -c "[.peers[] | select(.id == \"$2\") | .connected][0]")" = true ]
}
wait_until 30 "hub1 and hub2 linked" connected hub1 hub2
site_linked() { connected "s$1" hub1 || connected "s$1" hub2; }
for s in "${SITES[@]}"; do wait_until 30 "site $s linked to a hub" site_linked "$s"; done
ok "every node up; the hubs linked to each other and every site to a hub"

# ---- writers -------------------------------------------------------------------
STOP_FILE="$WORK/writers.stop"
ACKED="$WORK/acked"
declare -A WRITER_PIDS=()
i=0
for n in "${NODES[@]}"; do
    if [ "${ROLE[$n]}" = hub ]; then scope=$(IFS=,; echo "${SITES[*]}"); else scope=${SITE_OF[$n]}; fi
    ip netns exec "${NS[$n]}" python3 "$CHAOS_DIR/writer.py" "${DIR[$n]}" "$n" "${ROLE[$n]}" "$scope" \
        "$((SEED * 10 + i))" "$ACKED.$n" "$STOP_FILE" > "$WORK/writer-$n.out" 2>&1 &
    WRITER_PIDS[$n]=$!
    i=$((i + 1))
done
acked_count() { cat "$ACKED".* 2>/dev/null | wc -l; }
# Faults start once every writer has had a write acknowledged (a hub's needs
# a site's subject to have reached it), so none is wasted on a writer still
# starting up on a busy machine.
every_writer_acked() {
    local n
    for n in "${NODES[@]}"; do [ -s "$ACKED.$n" ] || return 1; done
}
wait_until 60 "a write acknowledged at every node" every_writer_acked
ok "every writer is writing ($(acked_count) writes acknowledged)"

# ---- faults --------------------------------------------------------------------
# FAULT[node] is the fault a node is under (kill, stop, cut, split:OTHER);
# LIFT_AT[node] the second (bash SECONDS) it is lifted.
declare -A FAULT=() LIFT_AT=() FAULT_COUNT=([kill]=0 [stop]=0 [cut]=0 [split]=0)
T0=$SECONDS
ipt() { ip netns exec "${NS[$1]}" iptables -w "${@:2}"; }

# cut_rules NAME -I|-D [OTHER]: DROP everything in and out of the node's
# eth0, or only what goes to and comes from OTHER's address.
cut_rules() {
    if [ -z "${3:-}" ]; then
        ipt "$1" "$2" INPUT -i eth0 -j DROP && ipt "$1" "$2" OUTPUT -o eth0 -j DROP
    else
        ipt "$1" "$2" INPUT -s "${ADDR[$3]}" -j DROP && ipt "$1" "$2" OUTPUT -d "${ADDR[$3]}" -j DROP
    fi
}

inject() {  # NAME KIND HOLD OTHER
    local n=$1 kind=$2 hold=$3 other=$4
    case $kind in
        kill) kill_node "$n" ;;
        stop) kill -STOP "${NODE_PIDS[$n]}"; STOPPED[${NODE_PIDS[$n]}]=1 ;;
        cut) cut_rules "$n" -I || fail "cannot cut $n off (seed $SEED)" ;;
        split) cut_rules "$n" -I "$other" || fail "cannot split $n from $other (seed $SEED)"
               kind=split:$other ;;
    esac
    FAULT[$n]=$kind
    LIFT_AT[$n]=$((SECONDS + hold))
    FAULT_COUNT[${kind%%:*}]=$((FAULT_COUNT[${kind%%:*}] + 1))
    echo "t=$((SECONDS - T0))s $kind $n for ${hold}s ($(acked_count) writes acknowledged so far)" >> "$WORK/faults.log"
}

lift() {  # NAME
    local n=$1 kind=${FAULT[$1]}
    case $kind in
        kill) up "$n" ;;
        stop) kill -CONT "${NODE_PIDS[$n]}"; unset "STOPPED[${NODE_PIDS[$n]}]" ;;
        cut) cut_rules "$n" -D || fail "cannot heal $n (seed $SEED)" ;;
        split:*) cut_rules "$n" -D "${kind#split:}" || fail "cannot heal $n from ${kind#split:} (seed $SEED)" ;;
    esac
    unset "FAULT[$n]" "LIFT_AT[$n]"
    echo "t=$((SECONDS - T0))s lifted $kind of $n" >> "$WORK/faults.log"
}

# CHAOS_FAULTS names the kinds drawn from (default all four): a narrower set
# isolates one kind of fault when a run fails.
read -r -a KINDS <<< "${CHAOS_FAULTS:-kill stop cut split}"
for kind in "${KINDS[@]}"; do
    case $kind in kill|stop|cut|split) ;; *) fail "CHAOS_FAULTS: unknown fault '$kind'" ;; esac
done
while [ $((SECONDS - T0)) -lt "$SECONDS_RUN" ]; do
    # Every draw is made every round, used or not, so the seed fixes the
    # sequence of draws whatever the timing.
    gap_ds=$((5 + RANDOM % (GAP_MAX * 10)))
    n=${NODES[RANDOM % ${#NODES[@]}]}
    kind=${KINDS[RANDOM % ${#KINDS[@]}]}
    hold=$((1 + RANDOM % HOLD_MAX))
    other=${NODES[RANDOM % ${#NODES[@]}]}
    sleep "$((gap_ds / 10)).$((gap_ds % 10))"
    for m in "${!LIFT_AT[@]}"; do
        [ "$SECONDS" -ge "${LIFT_AT[$m]}" ] && lift "$m"
    done
    [ -n "${FAULT[$n]:-}" ] && continue
    [ "$kind" = split ] && [ "$other" = "$n" ] && continue
    inject "$n" "$kind" "$hold" "$other"
done

# ---- heal ------------------------------------------------------------------------
touch "$STOP_FILE"
for m in "${!FAULT[@]}"; do lift "$m"; done
for n in "${NODES[@]}"; do
    wait "${WRITER_PIDS[$n]}" || fail "writer at $n failed: $(cat "$WORK/writer-$n.out")"
    cat "$WORK/writer-$n.out"
done
for n in "${NODES[@]}"; do
    [ "$(ipt "$n" -S | grep -c DROP)" = 0 ] || fail "$n still has DROP rules after healing: $(ipt "$n" -S)"
done
T_HEAL=$(now_ms)
FAULTS=$((FAULT_COUNT[kill] + FAULT_COUNT[stop] + FAULT_COUNT[cut] + FAULT_COUNT[split]))
cat "$ACKED".* > "$ACKED"
ACKS=$(wc -l < "$ACKED")
echo "$FAULTS faults in ${SECONDS_RUN}s (kill ${FAULT_COUNT[kill]}, stop ${FAULT_COUNT[stop]}," \
    "cut ${FAULT_COUNT[cut]}, split ${FAULT_COUNT[split]}); $ACKS writes acknowledged; all healed"
[ "$FAULTS" -gt 0 ] || fail "no fault injected in ${SECONDS_RUN}s (seed $SEED)"
[ "$ACKS" -gt 0 ] || fail "no write acknowledged (seed $SEED)"
for n in "${NODES[@]}"; do
    [ -s "$ACKED.$n" ] || fail "no write acknowledged at $n (seed $SEED): $(cat "$WORK/writer-$n.out")"
done
ok "$ACKS writes acknowledged at 5 nodes under $FAULTS faults"

# ---- convergence ------------------------------------------------------------------
st() { nsx "$1" status --node "${DIR[$1]}" --json; }
share() { nsx "$1" digest --node "${DIR[$1]}" --site "$2"; }
own_chains() {  # NAME ORIGIN: ORIGIN's chains the node holds
    st "$1" | jq -c "[.version_vector[] | select(.origin == \"$2\") | {lane, seq}] | sort_by(.lane)"
}
# agreed: both hubs hold the same chains and digests; each site's share is
# the same at the site and at both hubs, and both hubs hold its chains to
# the site's own heads.
agreed() {
    local v1 v2 s a b c
    v1=$(st hub1 | jq -c '.version_vector | sort_by(.origin, .lane)') || return 1
    v2=$(st hub2 | jq -c '.version_vector | sort_by(.origin, .lane)') || return 1
    [ "$v1" = "$v2" ] || return 1
    [ "$(nsx hub1 digest --node "${DIR[hub1]}")" = "$(nsx hub2 digest --node "${DIR[hub2]}")" ] || return 1
    for s in "${SITES[@]}"; do
        a=$(share "s$s" "$s") && b=$(share hub1 "$s") && c=$(share hub2 "$s") || return 1
        [ "$a" = "$b" ] && [ "$a" = "$c" ] || return 1
        a=$(own_chains "s$s" "$s") && b=$(own_chains hub1 "$s") || return 1
        [ "$a" = "$b" ] && [ "$a" != "[]" ] || return 1
    done
}
# Without agreement by the deadline the run still stops the nodes and runs
# the checker, so the failure names what is missing where; it fails after.
deadline=$((SECONDS + CONVERGE_S))
CONVERGED=1
until agreed > /dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        CONVERGED=0
        for n in "${NODES[@]}"; do
            st "$n" > "$WORK/status-$n.json" 2>&1
            echo "$n holds $(jq -c '[.version_vector[] | "\(.origin)/\(.lane)=\(.seq)"] | sort | join(" ")' \
                < "$WORK/status-$n.json"); behind: $(jq -c '[.peers[] | select(.behind_recv_bulk +
                .behind_recv_safety + .behind_send_bulk + .behind_send_safety + .batches_refused > 0) |
                "\(.id) recv \(.behind_recv_bulk + .behind_recv_safety) send \(.behind_send_bulk +
                .behind_send_safety) refused \(.batches_refused)"]' < "$WORK/status-$n.json")"
        done
        grep -h "refused chain" "$WORK"/*.log | head -n 10
        echo "NO CONVERGENCE within ${CONVERGE_S}s of healing (seed $SEED): the checker runs anyway"
        break
    fi
    sleep 0.2
done
if [ "$CONVERGED" = 1 ]; then
    T_CONV=$(now_ms)
    CONVERGE_MS=$((T_CONV - T_HEAL))
    echo "converged $((CONVERGE_MS / 1000)).$(printf '%03d' $((CONVERGE_MS % 1000))) s after healing"
    ok "both hubs' digests and chains equal; each site's share equal at the site and both hubs"
    for s in "${SITES[@]}"; do echo "site $s share: $(share "s$s" "$s")"; done
    echo "hub digest: $(nsx hub1 digest --node "${DIR[hub1]}")"
fi
ENTRIES=$(st hub1 | jq .entries)

# ---- the history checker -----------------------------------------------------------
for n in "${NODES[@]}"; do stop_node "$n"; done
ok "every node exited 0 on SIGTERM"
specs=()
for n in "${NODES[@]}"; do
    "$TRIALSYNC" verify --node "${DIR[$n]}" > "$WORK/verify-$n.out" 2>&1 \
        || fail "$n's store does not verify (seed $SEED): $(tail -n 5 "$WORK/verify-$n.out")"
    "$TRIALSYNC" export --node "${DIR[$n]}" --format audit --audit-format ndjson \
        --out "$WORK/audit-$n.ndjson" > "$WORK/export-$n.out" 2>&1 \
        || fail "audit export of $n: $(cat "$WORK/export-$n.out")"
    specs+=("$n:${ROLE[$n]}:${ORIGIN[$n]}:${SITE_OF[$n]}:$WORK/audit-$n.ndjson")
done
ok "every store verifies (hash chains, signatures)"
python3 "$CHAOS_DIR/check.py" "$SEED" "$ACKED" "${specs[@]}" > "$WORK/check.out" 2>&1
rc=$?
cat "$WORK/check.out"
[ "$CONVERGED" = 1 ] || fail "no convergence within ${CONVERGE_S}s of healing (seed $SEED): see above"
[ "$rc" = 0 ] || fail "the history checker found violations (seed $SEED)"
ok "history checker: no acknowledged write lost, no seq reused, hub chains whole, sites isolated"

# The checker can fail: each of these doctored copies of hub1's export (the
# first acknowledged write's rows dropped, or one of its values changed)
# must be caught.
doctor() {  # HOW WHAT
    python3 - "$1" "$ACKED" "$WORK/audit-hub1.ndjson" > "$WORK/audit-doctored.ndjson" <<'EOF'
import json, sys
how, acked, path = sys.argv[1:4]
with open(acked) as f:
    w = json.loads(f.readline())
key = (w["origin"], w["lane"], str(w["seq"]))
done = False
with open(path) as f:
    for line in f:
        row = json.loads(line)
        if (row["node"], row["lane"], str(row["seq"])) == key and not (how == "value" and done):
            done = True
            if how == "lost":
                continue
            row["new"] = "X" + row["new"]
        print(json.dumps(row))
EOF
    local d=("${specs[@]}")
    d[0]="hub1:hub:hub1:-:$WORK/audit-doctored.ndjson"
    if python3 "$CHAOS_DIR/check.py" "$SEED" "$ACKED" "${d[@]}" > "$WORK/doctored-$1.out" 2>&1; then
        fail "the checker passed a hub export with $2"
    fi
    ok "the checker catches $2: ...$(sed -n 3p "$WORK/doctored-$1.out" | rev | cut -c1-90 | rev)"
}
doctor lost "an acknowledged write missing"
doctor value "a value changed"
echo "chaos summary: seed $SEED, ${SECONDS_RUN}s, $ACKS writes acknowledged, $ENTRIES entries at each hub," \
    "$FAULTS faults (kill ${FAULT_COUNT[kill]}, stop ${FAULT_COUNT[stop]}, cut ${FAULT_COUNT[cut]}," \
    "split ${FAULT_COUNT[split]}), converged in ${CONVERGE_MS} ms after healing"
done_checks
