#!/usr/bin/env bash
# Backup and restore: a site's store is backed up while writes go on (the
# copy is a checkpoint taken by the running node, then verified), the site
# is stopped and restored from it (refused over a non-empty data directory
# without --force), verifies, restarts behind its own hub-held chain, gets
# its own later entries back from the hub, and rejoins without a fork: the
# digests converge and writes after the restore replicate.
. "$(dirname "$0")/lib.sh"

LOAD_RECORDS=${LOAD_RECORDS:-2000}
LOAD="$TS_BIN/tests/ts_load"
[ -x "$LOAD" ] || fail "$LOAD is missing: build the tests/tools targets"

new_trial T-BACKUP
start_node hub "$HUB"
add_site 101
S1="$WORK/site-101"
start_node s101 "$S1"
"$TRIALSYNC" put --node "$S1" subject 101-9000001 site=101 sex=F status=screening > /dev/null \
    || fail "first put"

# own_seq NODEDIR: the highest bulk seq of site 101's chain that NODEDIR holds.
own_seq() {
    "$TRIALSYNC" status --node "$1" --json |
        jq -r '[.version_vector[] | select(.origin == "101" and .lane == "bulk") | .seq] | max // 0'
}

# Backup under write load: ts_load writes in the background; the backup is
# taken once a positive marker (writes acknowledged) shows the load running.
"$LOAD" "$S1" "$LOAD_RECORDS" 2 101- > "$WORK/load.out" 2>&1 & load_pid=$!
wait_until 30 "the load has written something" bash -c "[ \$('$TRIALSYNC' status --node '$S1' --json | jq .entries) -gt 50 ]"
"$TRIALSYNC" backup --node "$S1" --out "$WORK/backup-1" > "$WORK/backup.out" 2>&1 \
    || fail "backup under load: $(cat "$WORK/backup.out")"
load_running_after=0
kill -0 "$load_pid" 2>/dev/null && load_running_after=1
wait "$load_pid" || fail "ts_load failed: $(cat "$WORK/load.out")"
cat "$WORK/backup.out"
assert_contains "$(cat "$WORK/backup.out")" "backup of node 101 verifies" "the backup verifies after writing"
assert_contains "$(cat "$WORK/backup.out")" "by the running node" "the backup was taken online"
backup_entries=$(sed -n 's/.*verifies: \([0-9]*\) entries.*/\1/p' "$WORK/backup.out" | head -1)
final_entries=$("$TRIALSYNC" status --node "$S1" --json | jq .entries)
[ "$backup_entries" -gt 0 ] && [ "$backup_entries" -le "$final_entries" ] \
    || fail "backup holds $backup_entries entries, the site $final_entries"
ok "the backup holds $backup_entries of the site's $final_entries entries (load still running after it: $load_running_after)"
grep -q "backup: store checkpoint written to $WORK/backup-1" "$WORK/s101.log" \
    || fail "the site's trace does not record the backup"
ok "the site's trace records the backup"

# Refusals: an existing target; a relative target resolves against the cwd.
if "$TRIALSYNC" backup --node "$S1" --out "$WORK/backup-1" 2> "$WORK/err"; then fail "backup over an existing directory"; fi
assert_contains "$(cat "$WORK/err")" "already exists" "a backup never overwrites"

# Writes after the backup, all at the hub, before the site loses its disk.
"$TRIALSYNC" put --node "$S1" subject 101-9000002 site=101 sex=M status=screening > /dev/null \
    || fail "put after the backup"
site_seq=$(own_seq "$S1")
wait_until 60 "the hub holds all of site 101's chain" \
    bash -c "[ \"\$('$TRIALSYNC' status --node '$HUB' --json | jq -r '[.version_vector[] | select(.origin == \"101\" and .lane == \"bulk\") | .seq] | max // 0')\" = '$site_seq' ]"
ok "the hub holds site 101's chain up to seq $site_seq"
hub_digest_before=$(digest "$HUB")

# Restore: refused while the node runs, refused over data without --force.
if "$TRIALSYNC" restore --node "$S1" --from "$WORK/backup-1" --force 2> "$WORK/err"; then fail "restore into a running node"; fi
assert_contains "$(cat "$WORK/err")" "is running" "restore refuses a running node"
stop_node s101
if "$TRIALSYNC" restore --node "$S1" --from "$WORK/backup-1" 2> "$WORK/err"; then fail "restore over data without --force"; fi
assert_contains "$(cat "$WORK/err")" "not empty" "restore refuses a non-empty data directory without --force"
# A damaged backup is refused and nothing changes.
cp -r "$WORK/backup-1" "$WORK/backup-bad"
for f in "$WORK"/backup-bad/*.sst; do : > "$f"; done
if "$TRIALSYNC" restore --node "$S1" --from "$WORK/backup-bad" --force > "$WORK/out" 2> "$WORK/err"; then fail "a damaged backup was restored"; fi
assert_contains "$(cat "$WORK/err")" "nothing was changed" "a damaged backup is refused before anything is replaced"
assert_eq "$site_seq" "$(cd "$WORK" && "$TRIALSYNC" verify --node "$S1" > /dev/null && echo "$site_seq")" \
    "a refused restore leaves the data directory as it was (it still verifies)"
"$TRIALSYNC" restore --node "$S1" --from "$WORK/backup-1" --force > "$WORK/restore.out" 2>&1 \
    || fail "restore: $(cat "$WORK/restore.out")"
assert_contains "$(cat "$WORK/restore.out")" "restored from" "restore with --force"
ls -d "$S1"/data.replaced-* > /dev/null 2>&1 || fail "the replaced data was not kept"
ok "the replaced data directory is kept beside it"
"$TRIALSYNC" verify --node "$S1" > "$WORK/verify.out" 2>&1 || fail "verify after restore: $(cat "$WORK/verify.out")"
ok "trialsync verify passes on the restored store"

# Restart: behind its own chain, it gets its entries back from the hub.
hub_log_start=$(log_lines "$WORK/hub.log")
restored_seq=$(sed -n 's/.*: \([0-9]*\) entries in .*/\1/p' "$WORK/restore.out")
[ -n "$restored_seq" ] && [ "$restored_seq" -lt "$site_seq" ] \
    || fail "the restored store (${restored_seq:-?} entries) should be behind the hub's seq $site_seq"
ok "the restored site is behind its own chain at the hub ($restored_seq entries, hub at seq $site_seq)"
start_node s101 "$S1"
wait_until 60 "site 101 gets its own chain back from the hub" \
    bash -c "[ \"\$('$TRIALSYNC' status --node '$S1' --json | jq -r '[.version_vector[] | select(.origin == \"101\" and .lane == \"bulk\") | .seq] | max // 0')\" = '$site_seq' ]"
ok "the restored site (at seq $restored_seq) got its own entries back up to seq $site_seq"
"$TRIALSYNC" get --node "$S1" subject 101-9000002 > /dev/null || fail "the write after the backup is not back"
ok "a write made after the backup is back at the restored site"

# Writes after the restore replicate and the digests converge.
"$TRIALSYNC" put --node "$S1" subject 101-9000003 site=101 sex=F status=screening > /dev/null \
    || fail "put after restore"
wait_until 60 "the post-restore write at the hub" "$TRIALSYNC" get --node "$HUB" subject 101-9000003
ok "a write after the restore reached the hub"
wait_until 60 "digests converge" bash -c "[ \"\$('$TRIALSYNC' digest --node '$S1')\" = \"\$('$TRIALSYNC' digest --node '$HUB')\" ]"
[ "$(digest "$HUB")" != "$hub_digest_before" ] || fail "the hub's digest did not move"
ok "site and hub digests converge after the restore"
if since_line "$WORK/hub.log" "$hub_log_start" | grep -q "FORK\|fork"; then
    since_line "$WORK/hub.log" "$hub_log_start" | grep "FORK\|fork" >&2
    fail "the hub saw a fork after the restore"
fi
if grep -q "FORK\|fork" "$WORK/s101.log"; then fail "the site saw a fork"; fi
ok "no fork at the hub or the site (after the positive marker above)"

# Offline backup of a stopped node.
stop_node s101
"$TRIALSYNC" backup --node "$S1" --out "$WORK/backup-2" > "$WORK/backup2.out" 2>&1 \
    || fail "offline backup: $(cat "$WORK/backup2.out")"
assert_contains "$(cat "$WORK/backup2.out")" "node stopped" "a stopped node is backed up by the CLI"
done_checks
