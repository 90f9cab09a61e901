#!/usr/bin/env bash
# A disk that really fills: a hub's store on a small tmpfs.
#
# 1. Local writes: the node stops acknowledging writes while the free space is
#    still above its threshold ([storage] disk_free_min_mb plus the store's
#    headroom, node.h), says so (/healthz 503 disk_low), stays up for reads,
#    loses no acknowledged write, and accepts writes again once space returns
#    (the tmpfs grown).
# 2. Replication: a site with a backlog larger than the hub's room.  The hub
#    takes what fits, then holds the site's batches (a Refusal with
#    retry_after_ms: the link stays up, no reconnect storm), never goes below
#    disk_free_min_mb, and catches up once space returns.
# A sampler reads the tmpfs's free space every 20 ms throughout.
#
# The tmpfs lives in a private mount namespace (and a PID namespace whose
# init is this script): if the suite is killed, even by SIGKILL at a CTest
# timeout, the kernel kills its nodes and drops the mount with it, so no
# mount is left behind in the build tree.  Values are seeded pseudo-random
# text, which the store's LZ4 cannot shrink: the disk fills after a bounded
# number of writes however the store's flushes fall on a busy machine.
if [ "${TS_DISK_FULL_NS:-0}" != 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "FAIL: mounting a tmpfs in a private mount namespace needs root (running as uid $(id -u))" >&2
        exit 1
    fi
    command -v unshare > /dev/null 2>&1 || {
        echo "FAIL: 'unshare' is not installed: it comes from Debian's 'util-linux' package, which 'make deps' installs" >&2
        exit 1
    }
    TS_DISK_FULL_NS=1 exec unshare --mount --propagation private --pid --fork --kill-child \
        --mount-proc bash "$0" "$@"
fi
. "$(dirname "$0")/../integration/lib.sh"
need_cmd openssl openssl
need_cmd base64 coreutils
need_cmd curl curl

SEED=${TS_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed: $SEED (replay with TS_SEED=$SEED)"
MNT="$WORK/smalldisk"
mkdir -p "$MNT"
mount -t tmpfs -o size=32m tmpfs "$MNT" 2> "$WORK/mount.err" \
    || fail "cannot mount a tmpfs in this mount namespace: $(cat "$WORK/mount.err")"
grep -q " $MNT tmpfs " /proc/self/mounts || fail "the tmpfs is not mounted at $MNT"
# Nodes first (their files hold the tmpfs busy), then the mount, then lib.sh's cleanup.
disk_cleanup() {
    local name
    rm -f "$WORK/sampling"  # the free-space sampler's loop ends
    for name in "${!NODE_PIDS[@]}"; do kill -9 "${NODE_PIDS[$name]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    umount "$MNT" 2>/dev/null || true
    cleanup
}
trap disk_cleanup EXIT

# 128 distinct values of 4000 characters each, from a keystream seeded by SEED.
VALUES=128
VLEN=4000
head -c $((VALUES * VLEN * 3 / 4)) /dev/zero \
    | openssl enc -aes-128-ctr -nosalt -pass "pass:ts-disk-full-$SEED" -pbkdf2 2> "$WORK/openssl.err" \
    | base64 -w0 | tr '+/' 'ab' > "$WORK/values" || fail "seeded values: $(cat "$WORK/openssl.err")"
[ "$(wc -c < "$WORK/values")" -ge $((VALUES * VLEN)) ] || fail "seeded values: $(wc -c < "$WORK/values") bytes"
mapfile -t POOL < <(fold -w "$VLEN" "$WORK/values" | head -n "$VALUES")

new_trial T-DISK
# The floor the hub keeps free, and the headroom on top of it (node.h:
# STORE_WRITE_HEADROOM_BYTES).
FLOOR_MB=16
HEADROOM_MB=32
sed -i "s|^data_dir = .*|data_dir = $MNT/data|; s|^disk_free_min_mb = .*|disk_free_min_mb = $FLOOR_MB|" "$HUB/node.conf"
grep -qx "data_dir = $MNT/data" "$HUB/node.conf" || fail "the hub's data_dir is not on the tmpfs"
API_PORT=$(sed -n 's/^listen = 127.0.0.1:\([0-9]*\)$/\1/p' "$HUB/node.conf" | head -1)
healthz() { curl -s -o "$WORK/healthz.json" -w '%{http_code}' "http://127.0.0.1:$API_PORT/healthz"; }
free_kib() { echo $(( $(stat -f -c '%a * %S' "$MNT") / 1024 )); }

# The sampler: the lowest free space seen, in KiB, in $WORK/min_free.
free_sampler() {
    local min=999999999 f
    while [ -e "$WORK/sampling" ]; do
        [ -e "$WORK/min_free" ] || min=999999999  # removed: a new phase starts
        f=$(free_kib)
        if [ "$f" -lt "$min" ]; then min=$f; echo "$min" > "$WORK/min_free"; fi
        sleep 0.02
    done
}
touch "$WORK/sampling"
free_sampler &
SAMPLER=$!
min_free_kib() { cat "$WORK/min_free"; }
assert_floor_kept() {  # WHEN
    local m
    m=$(min_free_kib)
    [ "$m" -ge $((FLOOR_MB * 1024)) ] \
        || fail "$1: the tmpfs went down to $m KiB free, below disk_free_min_mb = $FLOOR_MB MiB"
    ok "$1: the lowest free space seen was $((m / 1024)) MiB (floor $FLOOR_MB MiB)"
}

# write_csv FILE PREFIX ROWS: ROWS AEs of 4000 incompressible characters.
write_csv() {
    local i
    echo "type,id,site,sex,brthdtc,status,svstdtc,aeterm,aestdtc,aesev,aeser,reason" > "$1"
    for i in $(seq 1 "$3"); do
        echo "ae,$2$(printf '%04d' "$i")-AE-001,,,,ongoing,,${POOL[(i + ${#2}) % VALUES]},2026-11-20,MILD,N,"
    done >> "$1"
}

# 1. Local writes on a disk of guard + 24 MiB.
mount -o remount,size=$((FLOOR_MB + HEADROOM_MB + 24))m "$MNT" || fail "cannot size the tmpfs"
start_node hub "$HUB"
add_site 101   # the hub writes only for sites of the trial
S1="$WORK/site-101"
[ "$(healthz)" = 200 ] || fail "/healthz on a fresh disk: $(cat "$WORK/healthz.json")"
: > "$WORK/acked"
refused=0
# Imports of 200 rows (~800 KiB, one group commit each) fill it fast; a node
# that never refuses is caught by the count.
for f in $(seq 1 60); do
    prefix=$(printf '101-%02d' "$f")
    write_csv "$WORK/fill.csv" "$prefix" 200
    if "$TRIALSYNC" import --node "$HUB" "$WORK/fill.csv" --user migration > /dev/null 2> "$WORK/err"; then
        tail -n +2 "$WORK/fill.csv" | cut -d, -f2 >> "$WORK/acked"
    else
        refused=1
        break
    fi
done
[ "$refused" = 1 ] || fail "the node never refused writes: 60 imports of 800 KiB on a $((FLOOR_MB + HEADROOM_MB + 24)) MiB disk"
assert_contains "$(cat "$WORK/err")" "disk_free_min_mb" "writes are refused before the disk is full, with the reason"
acked_n=$(wc -l < "$WORK/acked")
[ "$acked_n" -gt 0 ] || fail "no write was acknowledged before the refusal"
ok "$acked_n writes of $VLEN B acknowledged before the refusal"
if "$TRIALSYNC" put --node "$HUB" ae 101-99001-AE-001 aeterm="${POOL[1]}" aestdtc=2026-11-20 \
    aesev=MILD aeser=N status=ongoing > /dev/null 2> "$WORK/err2"; then
    fail "a write was acknowledged while the disk was below the threshold"
fi
assert_contains "$(cat "$WORK/err2")" "disk_free_min_mb" "a single write is refused the same way"
assert_eq 503 "$(healthz)" "/healthz answers 503 while the disk is low"
assert_eq disk_low "$(jq -r .status "$WORK/healthz.json")" "/healthz names the state"
grep -q " error storage: ok -> disk_low: " "$WORK/hub.log" || fail "no error-priority disk_low line in the trace"
ok "the trace: $(grep -m1 'storage: ok -> disk_low' "$WORK/hub.log" | cut -c1-150)"
kill -0 "${NODE_PIDS[hub]}" || fail "the node died on a full disk"
ok "the node stays up"
last=$(tail -1 "$WORK/acked")
"$TRIALSYNC" get --node "$HUB" ae "$last" | jq -r '.fields.aeterm.value' | grep -q . \
    || fail "reads no longer work (the last acknowledged record)"
ok "reads still work"
assert_floor_kept "local writes"

# Space returns: writes resume, every acknowledged record is there.
mount -o remount,size=256m "$MNT" || fail "cannot grow the tmpfs"
wait_until 10 "/healthz back to 200 once space returns" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$API_PORT/healthz)\" = 200 ]"
"$TRIALSYNC" put --node "$HUB" subject 101-99999 site=101 sex=F > /dev/null || fail "write after space returned"
ok "writes resume once space returns"
held=$("$TRIALSYNC" records --node "$HUB" ae | jq -r '.records[].id' | sort)
missing=$(comm -23 <(sort "$WORK/acked") <(echo "$held") | wc -l)
assert_eq 0 "$missing" "no acknowledged write lost ($acked_n acknowledged)"

# 2. Replication: site 101 (on the ordinary disk) builds a backlog of about
# 9 MiB while the hub is down; the hub then has room for about 4 MiB of it.
stop_node hub
start_node s101 "$S1"
for f in $(seq 1 12); do
    prefix=$(printf '101-%02d' "$((f + 60))")
    write_csv "$WORK/site.csv" "$prefix" 200
    "$TRIALSYNC" import --node "$S1" "$WORK/site.csv" --user migration > /dev/null 2> "$WORK/err" \
        || fail "site import $f: $(cat "$WORK/err")"
done
site_aes=$(record_count "$S1" ae)
ok "site 101 holds a backlog of $site_aes AEs ($(( site_aes * VLEN / 1048576 )) MiB of values)"
used_kib=$(( $(df -k "$MNT" | awk 'NR==2 {print $3}') ))
mount -o remount,size=$(( used_kib / 1024 + FLOOR_MB + HEADROOM_MB + 4 ))m "$MNT" \
    || fail "cannot size the tmpfs for the backlog"
rm -f "$WORK/min_free"
from=$(log_lines "$WORK/hub.log")
start_node hub "$HUB"
held_count() {
    "$TRIALSYNC" status --node "$HUB" --json | jq -r '.peers[] | select(.id == "101") | .batches_held'
}
held_more() { [ "$(held_count)" -gt "$1" ]; }
wait_until 60 "the hub holding site 101's batches for disk" held_more 0
h1=$(held_count)
wait_until 60 "the site offering the held batch again, and the hub holding it again" held_more "$h1"
since_line "$WORK/hub.log" "$from" | grep -q "peer 101: batch 101/bulk from seq [0-9]* held for 5000 ms: .*disk_free_min_mb" \
    || fail "the hub's trace does not say it holds site 101 for disk"
ok "the hub holds the site: $(since_line "$WORK/hub.log" "$from" | grep -m1 'held for 5000 ms' | cut -c1-150)"
assert_eq 503 "$(healthz)" "the hub's /healthz answers 503 (disk_low) while it holds the site"
hub_aes=$(record_count "$HUB" ae)
[ "$hub_aes" -lt $((acked_n + site_aes)) ] || fail "the hub took the whole backlog: the disk was not small enough"
ok "the hub took $((hub_aes - acked_n)) of the site's $site_aes AEs before it held"
assert_floor_kept "replication"
connects=$(since_line "$WORK/hub.log" "$from" | grep -c "peer 101 (site, .*): connected")
assert_eq 1 "$connects" "one connection from site 101 while held (no reconnect storm)"

# Space returns: the hub takes the rest, on the same link.
mount -o remount,size=512m "$MNT" || fail "cannot grow the tmpfs"
hub_has_all() { [ "$(record_count "$HUB" ae)" -ge $((acked_n + site_aes)) ]; }
wait_until 120 "the hub catching up with site 101 once space returns" hub_has_all
ok "the hub caught up: $(record_count "$HUB" ae) AEs"
connects=$(since_line "$WORK/hub.log" "$from" | grep -c "peer 101 (site, .*): connected")
assert_eq 1 "$connects" "still the one connection from site 101"

rm -f "$WORK/sampling"
wait "$SAMPLER" 2>/dev/null || true
stop_node s101
stop_node hub
"$TRIALSYNC" verify --node "$HUB" > /dev/null || fail "the store verifies after the disk filled"
ok "the store verifies"
done_checks
