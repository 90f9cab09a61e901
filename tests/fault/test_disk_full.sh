#!/usr/bin/env bash
# A disk that really fills: the node's store on a small tmpfs.  The node
# stops acknowledging writes before the filesystem is full, stays up for
# reads, loses no acknowledged write, and accepts writes again once space
# returns (the tmpfs grown).
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
sed -i "s|^data_dir = .*|data_dir = $MNT/data|; s|^disk_free_min_mb = .*|disk_free_min_mb = 16|" "$HUB/node.conf"
grep -qx "data_dir = $MNT/data" "$HUB/node.conf" || fail "the hub's data_dir is not on the tmpfs"
start_node hub "$HUB"

# Fill: big values until the node refuses.  32 MiB hold fewer than 32 MiB /
# 4000 B of them, so a node that never refuses is caught by the count.
MAX_PUTS=$((32 * 1024 * 1024 / VLEN))
: > "$WORK/acked"
refused=0
for i in $(seq 1 "$MAX_PUTS"); do
    id=$(printf '101-%05d' "$i")
    if "$TRIALSYNC" put --node "$HUB" ae "$id-AE-001" aeterm="${POOL[i % VALUES]}" aestdtc=2026-11-20 \
        aesev=MILD aeser=N status=ongoing > /dev/null 2> "$WORK/err"; then
        echo "$id-AE-001" >> "$WORK/acked"
    else
        refused=1
        break
    fi
done
[ "$refused" = 1 ] || fail "the node never refused writes on a 32 MiB disk ($MAX_PUTS writes of $VLEN B)"
assert_contains "$(cat "$WORK/err")" "disk_free_min_mb" "writes are refused before the disk is full, with the reason"
acked_n=$(wc -l < "$WORK/acked")
[ "$acked_n" -gt 0 ] || fail "no write was acknowledged before the refusal"
ok "$acked_n writes of $VLEN B acknowledged before the refusal"
free_kb=$(df -k "$MNT" | awk 'NR==2 {print $4}')
[ "$free_kb" -gt 8192 ] || fail "only ${free_kb} KiB left: the node let the disk fill"
ok "the filesystem still has ${free_kb} KiB free when writes stop"
kill -0 "${NODE_PIDS[hub]}" || fail "the node died on a full disk"
ok "the node stays up"
last=$(tail -1 "$WORK/acked")
assert_eq "${POOL[acked_n % VALUES]}" "$("$TRIALSYNC" get --node "$HUB" ae "$last" | jq -r '.fields.aeterm.value')" \
    "reads still work (the last acknowledged record, value and all)"
# The refusal is the node's state, not one unlucky write: a second write is refused too.
if "$TRIALSYNC" put --node "$HUB" subject 101-99998 site=101 sex=F > /dev/null 2> "$WORK/err2"; then
    fail "a write was acknowledged while the disk was below the threshold"
fi
assert_contains "$(cat "$WORK/err2")" "disk_free_min_mb" "a second write is refused the same way"

# Space returns: writes resume, every acknowledged record is there.
mount -o remount,size=256m "$MNT" || fail "cannot grow the tmpfs"
"$TRIALSYNC" put --node "$HUB" subject 101-99999 site=101 sex=F > /dev/null || fail "write after space returned"
ok "writes resume once space returns"
stop_node hub
start_node hub "$HUB"
held=$("$TRIALSYNC" records --node "$HUB" ae | jq -r '.records[].id' | sort)
missing=$(comm -23 <(sort "$WORK/acked") <(echo "$held") | wc -l)
assert_eq 0 "$missing" "no acknowledged write lost ($acked_n acknowledged)"
stop_node hub
"$TRIALSYNC" verify --node "$HUB" > /dev/null || fail "the store verifies after the disk filled"
ok "the store verifies"
done_checks
