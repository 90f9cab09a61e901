#!/usr/bin/env bash
# A disk that really fills: the node's store on a small tmpfs.  The node
# stops acknowledging writes before the filesystem is full, stays up for
# reads, loses no acknowledged write, and accepts writes again once space
# returns (the tmpfs grown).
. "$(dirname "$0")/../integration/lib.sh"

[ "$(id -u)" = 0 ] || { echo "skipped: mounting a tmpfs needs root"; exit 77; }
MNT="$WORK/smalldisk"
mkdir -p "$MNT"
mount -t tmpfs -o size=32m tmpfs "$MNT" 2>/dev/null || { echo "skipped: cannot mount a tmpfs here"; exit 77; }
trap 'umount "$MNT" 2>/dev/null; cleanup' EXIT

new_trial T-DISK
sed -i "s|^data_dir = .*|data_dir = $MNT/data|; s|^disk_free_min_mb = .*|disk_free_min_mb = 16|" "$HUB/node.conf"
start_node hub "$HUB"

# Fill: big values until the node refuses.
big=$(head -c 4000 /dev/zero | tr '\0' 'x')
: > "$WORK/acked"
refused=0
for i in $(seq 1 20000); do
    id=$(printf '101-%05d' "$i")
    if "$TRIALSYNC" put --node "$HUB" ae "$id-AE-001" aeterm="$big" aestdtc=2026-11-20 aesev=MILD \
        aeser=N status=ongoing > /dev/null 2> "$WORK/err"; then
        echo "$id-AE-001" >> "$WORK/acked"
    else
        refused=1
        break
    fi
done
[ "$refused" = 1 ] || fail "the node never refused writes on a 32 MiB disk"
assert_contains "$(cat "$WORK/err")" "disk_free_min_mb" "writes are refused before the disk is full, with the reason"
free_kb=$(df -k "$MNT" | awk 'NR==2 {print $4}')
[ "$free_kb" -gt 8192 ] || fail "only ${free_kb} KiB left: the node let the disk fill"
ok "the filesystem still has ${free_kb} KiB free when writes stop"
kill -0 "${NODE_PIDS[hub]}" || fail "the node died on a full disk"
ok "the node stays up"
last=$(tail -1 "$WORK/acked")
assert_eq Y "$("$TRIALSYNC" get --node "$HUB" ae "$last" | jq -r '.fields.aeterm.value | length > 3000 | if . then "Y" else "N" end')" \
    "reads still work (the last acknowledged record)"

# Space returns: writes resume, every acknowledged record is there.
mount -o remount,size=256m "$MNT" || fail "cannot grow the tmpfs"
"$TRIALSYNC" put --node "$HUB" subject 101-99999 site=101 sex=F > /dev/null || fail "write after space returned"
ok "writes resume once space returns"
stop_node hub
start_node hub "$HUB"
held=$("$TRIALSYNC" records --node "$HUB" ae | jq -r '.records[].id' | sort)
missing=$(comm -23 <(sort "$WORK/acked") <(echo "$held") | wc -l)
assert_eq 0 "$missing" "no acknowledged write lost ($(wc -l < "$WORK/acked") acknowledged)"
stop_node hub
"$TRIALSYNC" verify --node "$HUB" > /dev/null || fail "the store verifies after the disk filled"
ok "the store verifies"
done_checks
