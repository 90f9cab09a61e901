#!/usr/bin/env bash
# `trialsync verify --node DIR --peer PEERDIR`: after the offline checks, a
# stopped node is compared with a running peer through the peer's API.
#   (a) converged site and hubs: every chain "equal", equal state digests;
#   (b) hub2 stopped while hub1 takes more writes: hub1 is reported ahead by
#       exactly that many entries, and that is not a failure (exit 0);
#   (c) a peer that is not running, or PEERDIR naming the node itself: exit 1.
# Not built here: two nodes with equal vectors and different digests (a node
# whose stored state was edited fails the offline state check first).
. "$(dirname "$0")/lib.sh"

new_trial T-VPEER
start_node hub1 "$HUB"
HUB2="$WORK/hub2"
"$TRIALSYNC" hub add hub2 --dir "$WORK/trial" --out "$HUB2" --peer-port "$(free_port)" \
    --api-port "$(free_port)" > "$WORK/hub-add.out" || fail "hub add"
start_node hub2 "$HUB2"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"

"$TRIALSYNC" put --node "$S1" subject 101-0001 site=101 sex=F status=screening > /dev/null || fail put
"$TRIALSYNC" put --node "$S1" subject 101-0002 site=101 sex=M status=screening > /dev/null || fail put
"$TRIALSYNC" put --node "$HUB" query Q-hub1-1 target=subject/101-0001/sex text="Confirm sex" \
    state=open source=dm > /dev/null || fail "write through hub1"
"$TRIALSYNC" put --node "$HUB2" query Q-hub2-1 target=subject/101-0002/sex text="Confirm" \
    state=open source=monitor > /dev/null || fail "write through hub2"

vv() { "$TRIALSYNC" status --node "$1" --json | jq -c '.version_vector'; }
converged() {
    local v1
    v1=$(vv "$HUB") || return 1
    [ "$v1" = "$(vv "$HUB2")" ] && [ "$v1" = "$(vv "$S1")" ] &&
        [ "$(digest "$HUB")" = "$(digest "$HUB2")" ]
}
wait_until 30 "site and hubs converged" converged
ok "site 101 and both hubs hold the same version vector"

# (a) The site, stopped, against hub1 running; then hub2 against hub1.
stop_node s101
out=$("$TRIALSYNC" verify --node "$S1" --peer "$HUB" 2>&1) || fail "verify --peer (site): $out"
printf '%s\n' "$out" | sed 's/^/# /'
assert_contains "$out" "compared with running peer hub1 (hub)" "(a) the site is compared with hub1"
assert_contains "$out" "101/bulk: equal at seq" "(a) the site's own chain is equal"
assert_contains "$out" "hub2/" "(a) chains relayed through hub1 are compared too"
case "$out" in *"ahead by"*) fail "(a) a side reported ahead after convergence: $out" ;; esac
assert_contains "$out" "state digests equal: $(digest "$HUB")" "(a) site and hub1: equal state digests"
stop_node hub2
out=$("$TRIALSYNC" verify --node "$HUB2" --peer "$HUB" 2>&1) || fail "verify --peer (hub2): $out"
assert_contains "$out" "state digests equal" "(a) hub2 stopped, hub1 running: equal state digests"

# (b) hub1 moves on while hub2 is stopped.
before=$("$TRIALSYNC" status --node "$HUB" --json |
    jq '[.version_vector[] | select(.origin == "hub1" and .lane == "bulk") | .seq][0] // 0')
for i in 3 4 5; do
    "$TRIALSYNC" put --node "$HUB" query "Q-hub1-$i" target=subject/101-0001/sex text="More $i" \
        state=open source=dm > /dev/null || fail "write $i through hub1"
done
out=$("$TRIALSYNC" verify --node "$HUB2" --peer "$HUB" 2>&1) \
    || fail "verify --peer failed although hub1 is merely ahead: $out"
printf '%s\n' "$out" | sed 's/^/# /'
assert_contains "$out" "hub1/bulk: peer hub1 ahead by 3 (seq $((before + 3)); this node at $before)" \
    "(b) hub1 reported ahead of hub2 by its three new writes"
assert_contains "$out" "101/bulk: equal at seq" "(b) the chains that did not move are equal"
assert_contains "$out" "state digests not compared" "(b) digests are not compared when vectors differ"
ok "(b) a peer merely ahead is reported and verify exits 0"
"$TRIALSYNC" verify --help | grep -q -- "--peer PEERDIR" || fail "verify --help says nothing of --peer"
"$TRIALSYNC" verify --help | grep -q "not a failure" || fail "verify --help does not say ahead is no failure"
ok "verify --help explains --peer"

# (c) The peer must run, and be another node.
stop_node hub1
rc=0; out=$("$TRIALSYNC" verify --node "$HUB2" --peer "$HUB" 2>&1) || rc=$?
assert_eq 1 "$rc" "(c) a stopped peer fails"
assert_contains "$out" "cannot be reached" "(c) and says its API cannot be reached"
rc=0; out=$("$TRIALSYNC" verify --node "$HUB2" --peer "$HUB2" 2>&1) || rc=$?
assert_eq 1 "$rc" "(c) the node itself as --peer fails"
done_checks
