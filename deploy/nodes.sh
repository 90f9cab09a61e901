# nodes.sh: running local trialsync nodes from a script (the demo, the
# benchmarks).  Sourced, not run.  Needs TS (trialsync), TSD (trialsyncd) and
# LOGS (a directory for the nodes' traces); every node started is stopped
# when the script exits.
declare -A PIDS=()

nodes_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap nodes_cleanup EXIT

# A port nothing listens on, below the kernel's ephemeral range (32768+) so
# an outgoing connection cannot take it before the node binds it.
free_port() {
    local p
    while :; do
        p=$((10000 + RANDOM % 22000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# node_start NAME NODEDIR: starts trialsyncd, waits up to 10 s for its API.
node_start() {
    "$TSD" --config "$2/node.conf" >> "$LOGS/$1.log" 2>&1 &
    PIDS[$1]=$!
    for _ in $(seq 1 100); do
        "$TS" status --node "$2" --json > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "node $1 did not start; see $LOGS/$1.log" >&2
    exit 1
}

# node_stop NAME: SIGTERM, and waits for it to exit.
node_stop() {
    kill -TERM "${PIDS[$1]}"
    wait "${PIDS[$1]}" 2>/dev/null || true
    unset "PIDS[$1]"
}
