/*
 * ts_store_dump: prints what a stopped node's store holds, straight from its
 * RocksDB directory, for tests that check a database and not only the API:
 *   record TYPE ID
 *   entry ORIGIN LANE SEQ TYPE ID SITE      (one per entry held)
 *   hole ORIGIN LANE SEQ                    (an entry held only as its hash)
 * Usage: ts_store_dump NODEDIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../node/config.h"
#include "../../storage/store.h"

static int record_cb(void *ctx, const char *type, const char *id)
{
    (void)ctx;
    printf("record %s %s\n", type, id);
    return 0;
}

int main(int argc, char **argv)
{
    static struct config cfg;
    struct ts_error err = {0};
    struct store *s = NULL;
    if (argc != 2) {
        fprintf(stderr, "usage: ts_store_dump NODEDIR\n");
        return 2;
    }
    if (config_load_dir(argv[1], &cfg, &err) != 0 || store_open(cfg.data_dir, &s, &err) != 0) {
        fprintf(stderr, "ts_store_dump: %s\n", err.msg);
        return 1;
    }
    store_records(s, "", record_cb, NULL);
    struct vv_item *vv = NULL;
    size_t n = 0;
    if (store_vv(s, &vv, &n) != 0) {
        fprintf(stderr, "ts_store_dump: cannot read the version vector\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        for (uint64_t seq = 1; seq <= vv[i].seq; seq++) {
            struct entry_ref ref;
            struct entry e;
            memset(&ref, 0, sizeof(ref));
            memset(&e, 0, sizeof(e));
            snprintf(ref.origin, sizeof(ref.origin), "%s", vv[i].origin);
            ref.lane = vv[i].lane;
            ref.seq = seq;
            int rc = store_entry_get(s, &ref, &e, &err);
            if (rc == TS_ERR_NOTFOUND) {
                printf("hole %s %u %llu\n", ref.origin, ref.lane, (unsigned long long)seq);
                continue;
            }
            if (rc != 0) {
                fprintf(stderr, "ts_store_dump: %s\n", err.msg);
                return 1;
            }
            printf("entry %s %u %llu %s %s %s\n", e.origin, e.lane, (unsigned long long)e.seq,
                   e.record_type, e.record_id, e.site[0] ? e.site : "-");
            entry_release(&e);
        }
    }
    free(vv);
    store_close(s);
    return 0;
}
