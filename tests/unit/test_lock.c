/*
 * test_lock.c: the lock rules (node/lock.h): targets, seen vectors, the
 * edit of a target set, and the quarantine predicate, including a seeded
 * simulation of a hub and a site that lock, write and sync in random
 * schedules, whose entries then reach replicas in random orders.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../node/lock.h"
#include "../../node/schema.h"
#include "../../proto/errors.h"
#include "unit.h"

static void test_lock_targets_ok(void)
{
    CU_ASSERT_TRUE(lock_targets_ok("101-0003-LOCK", ""));
    CU_ASSERT_TRUE(lock_targets_ok("101-0003-LOCK", "*"));
    CU_ASSERT_TRUE(lock_targets_ok("101-0003-LOCK", "visit/101-0003/V3,ae/101-0003-AE-001"));
    CU_ASSERT_TRUE(lock_targets_ok("101-0003-LOCK", "subject/101-0003"));
    /* Another subject's records, unknown types, bad forms. */
    CU_ASSERT_FALSE(lock_targets_ok("101-0003-LOCK", "visit/101-0004/V3"));
    CU_ASSERT_FALSE(lock_targets_ok("101-0003-LOCK", "subject/101-00031"));
    CU_ASSERT_FALSE(lock_targets_ok("101-0003-LOCK", "query/Q-hub-1"));
    CU_ASSERT_FALSE(lock_targets_ok("101-0003-LOCK", "visit/101-0003/V3,"));
    CU_ASSERT_FALSE(lock_targets_ok("101-0003-LOCK", ",visit/101-0003/V3"));
    CU_ASSERT_FALSE(lock_targets_ok("101-0003-LOCK", "**"));
    CU_ASSERT_FALSE(lock_targets_ok("101-0003", "*"));
    CU_ASSERT_TRUE(schema_key_ok(SCHEMA_LOCK_TYPE, "101-0003-LOCK"));
    CU_ASSERT_FALSE(schema_key_ok(SCHEMA_LOCK_TYPE, "-LOCK"));
    CU_ASSERT_FALSE(schema_key_ok(SCHEMA_LOCK_TYPE, "101-0003/V1-LOCK"));
}

static void test_lock_covers(void)
{
    CU_ASSERT_TRUE(lock_covers("*", "visit", "101-0003/V3"));
    CU_ASSERT_TRUE(lock_covers("*", "ae", "101-0003-AE-001"));
    CU_ASSERT_TRUE(lock_covers("*", "subject", "101-0003"));
    CU_ASSERT_FALSE(lock_covers("*", "query", "Q-hub-1"));
    CU_ASSERT_FALSE(lock_covers("", "visit", "101-0003/V3"));
    CU_ASSERT_TRUE(lock_covers("ae/101-0003-AE-001,visit/101-0003/V3", "visit", "101-0003/V3"));
    /* A visit's lock is not its repeat's, nor the subject's. */
    CU_ASSERT_FALSE(lock_covers("visit/101-0003/V3", "visit", "101-0003/V3/2"));
    CU_ASSERT_FALSE(lock_covers("visit/101-0003/V3", "subject", "101-0003"));
    CU_ASSERT_FALSE(lock_covers("subject/101-0003", "visit", "101-0003/V3"));
    char subject[TS_ID_BYTES_MAX + 1];
    CU_ASSERT_TRUE(lock_subject_of("ae", "101-0003-AE-001", subject));
    CU_ASSERT_STRING_EQUAL(subject, "101-0003");
    CU_ASSERT_TRUE(lock_subject_of("visit", "101-0003/V3/2", subject));
    CU_ASSERT_STRING_EQUAL(subject, "101-0003");
    CU_ASSERT_FALSE(lock_subject_of("query", "Q-hub-1", subject));
}

static void test_lock_seen_parse(void)
{
    struct vv_item items[4];
    CU_ASSERT_EQUAL(lock_seen_parse("", items, 4), 0);
    CU_ASSERT_EQUAL(lock_seen_parse("101:1:7,hub1:0:3", items, 4), 2);
    CU_ASSERT_STRING_EQUAL(items[0].origin, "101");
    CU_ASSERT_EQUAL(items[0].lane, 1);
    CU_ASSERT_EQUAL(items[0].seq, 7);
    struct entry_ref r = {.origin = "101", .lane = 1, .seq = 7};
    CU_ASSERT_TRUE(lock_seen_holds(items, 2, &r));
    r.seq = 8;
    CU_ASSERT_FALSE(lock_seen_holds(items, 2, &r));
    r.lane = 0;
    r.seq = 1;
    CU_ASSERT_FALSE(lock_seen_holds(items, 2, &r));  /* a chain not named: nothing held */
    CU_ASSERT_EQUAL(lock_seen_parse("101:2:7", items, 4), -1);  /* no such lane */
    CU_ASSERT_EQUAL(lock_seen_parse("101:1", items, 4), -1);
    CU_ASSERT_EQUAL(lock_seen_parse("101:1:x", items, 4), -1);
    CU_ASSERT_EQUAL(lock_seen_parse("101:1:99999999999999999999", items, 4), -1);
    CU_ASSERT_EQUAL(lock_seen_parse("101:1:1,", items, 4), -1);
    CU_ASSERT_EQUAL(lock_seen_parse("a:1:1,b:1:1,c:1:1", items, 2), -1);  /* over the cap */
}

static void test_lock_targets_edit(void)
{
    char out[256];
    CU_ASSERT_EQUAL(lock_targets_edit("", "visit/101-0003/V3", true, out, sizeof(out)), 0);
    CU_ASSERT_STRING_EQUAL(out, "visit/101-0003/V3");
    CU_ASSERT_EQUAL(lock_targets_edit(out, "ae/101-0003-AE-001", true, out + 100, 100), 0);
    CU_ASSERT_STRING_EQUAL(out + 100, "visit/101-0003/V3,ae/101-0003-AE-001");
    CU_ASSERT_EQUAL(lock_targets_edit(out + 100, "visit/101-0003/V3", true, out, 100),
                    TS_ERR_EXISTS);
    CU_ASSERT_EQUAL(lock_targets_edit(out + 100, "visit/101-0003/V3", false, out, 100), 0);
    CU_ASSERT_STRING_EQUAL(out, "ae/101-0003-AE-001");
    CU_ASSERT_EQUAL(lock_targets_edit(out, "visit/101-0003/V3", false, out + 100, 100),
                    TS_ERR_NOTFOUND);
    CU_ASSERT_EQUAL(lock_targets_edit("ae/101-0003-AE-001", "*", true, out, 100), 0);
    CU_ASSERT_STRING_EQUAL(out, "*");
    CU_ASSERT_EQUAL(lock_targets_edit("*", "visit/101-0003/V3", true, out, 100), TS_ERR_EXISTS);
    CU_ASSERT_EQUAL(lock_targets_edit("*", "*", false, out, 100), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(lock_targets_edit("", "*", false, out, 100), TS_ERR_NOTFOUND);
}

/* ---- the simulation ------------------------------------------------------------ */

#define SIM_STEPS 60
#define SIM_ENTRIES_MAX (SIM_STEPS + 1)
#define SIM_REPLICAS 6

/* A lock entry as the hub writes it, turned into a lock_version. */
static void make_lock(struct lock_version *v, uint64_t epoch, bool locked, uint64_t seen_seq,
                      uint64_t hub_seq)
{
    char epoch_s[24], seen_s[64];
    struct field_write w[3];
    struct entry e;
    memset(&e, 0, sizeof(e));
    memset(w, 0, sizeof(w));
    snprintf(epoch_s, sizeof(epoch_s), "%llu", (unsigned long long)epoch);
    snprintf(seen_s, sizeof(seen_s), "101:1:%llu,hub:1:%llu", (unsigned long long)seen_seq,
             (unsigned long long)hub_seq);
    snprintf(w[0].field, sizeof(w[0].field), "epoch");
    w[0].value = epoch_s;
    snprintf(w[1].field, sizeof(w[1].field), "targets");
    w[1].value = locked ? "*" : "";
    snprintf(w[2].field, sizeof(w[2].field), "seen");
    w[2].value = seen_s;
    snprintf(e.origin, sizeof(e.origin), "hub");
    e.lane = LANE_BULK;
    e.seq = hub_seq + 1;
    e.user = "dm";
    e.reason = "r";
    snprintf(e.record_type, sizeof(e.record_type), SCHEMA_LOCK_TYPE);
    snprintf(e.record_id, sizeof(e.record_id), "101-0001-LOCK");
    e.writes = w;
    e.writes_count = 3;
    CU_ASSERT_FATAL(lock_version_of(&e, v));
}

struct sim_write {
    uint64_t seq;
    uint64_t lock_epoch;
};

/* The site's write as an entry (fields are not needed by the predicate). */
static void write_entry(const struct sim_write *w, struct entry *e)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->origin, sizeof(e->origin), "101");
    e->lane = LANE_BULK;
    e->seq = w->seq;
    e->lock_epoch = w->lock_epoch;
    snprintf(e->record_type, sizeof(e->record_type), "visit");
    snprintf(e->record_id, sizeof(e->record_id), "101-0001/V1");
}

/*
 * One schedule: the site writes (with the epoch it holds; refused when that
 * epoch locks the visit), the hub locks and unlocks (seen = the site's
 * writes it holds), and each side sends the other all it has, at random.
 * Then every replica gets all entries in its own random order, an entry held
 * back until the lock epoch it names has arrived.  Every replica must reach
 * the same verdicts; no honest entry is refused by admission; and when the
 * last epoch locks, no write the lock did not see is displayed.
 */
static void sim_one(void)
{
    struct lock_version *locks = calloc(SIM_ENTRIES_MAX, sizeof(*locks));
    struct sim_write writes[SIM_ENTRIES_MAX];
    size_t nlocks = 0, nwrites = 0;
    uint64_t hub_sees_seq = 0;   /* site writes the hub holds: 1..hub_sees_seq */
    size_t site_sees_locks = 0;  /* lock versions the site holds: the first ones */
    size_t refused = 0;
    CU_ASSERT_FATAL(locks != NULL);

    for (int step = 0; step < SIM_STEPS; step++) {
        switch (unit_rand() % 4) {
        case 0: {   /* the site writes */
            struct lock_set held = {.v = locks, .count = site_sees_locks};
            uint64_t epoch = lock_set_epoch(&held);
            if (lock_set_covering(&held, epoch, "visit", "101-0001/V1") != NULL) {
                refused++;
                break;
            }
            writes[nwrites] = (struct sim_write){.seq = nwrites + 1, .lock_epoch = epoch};
            nwrites++;
            break;
        }
        case 1: {   /* the hub locks or unlocks */
            struct lock_set held = {.v = locks, .count = nlocks};
            uint64_t epoch = lock_set_epoch(&held);
            bool locked = nlocks > 0 && strcmp(locks[nlocks - 1].targets, "*") == 0;
            make_lock(&locks[nlocks], epoch + 1, !locked, hub_sees_seq, nlocks);
            nlocks++;
            break;
        }
        case 2:     /* site -> hub */
            hub_sees_seq = nwrites;
            break;
        case 3:     /* hub -> site */
            site_sees_locks = nlocks;
            break;
        }
    }

    /* Replicas: the same entries, each in its own order. */
    int verdict[SIM_REPLICAS][SIM_ENTRIES_MAX];
    for (int r = 0; r < SIM_REPLICAS; r++) {
        size_t order[2 * SIM_ENTRIES_MAX], n = 0;
        for (size_t i = 0; i < nlocks; i++)
            order[n++] = i;                      /* a lock */
        for (size_t i = 0; i < nwrites; i++)
            order[n++] = SIM_ENTRIES_MAX + i;    /* a write */
        unit_shuffle(order, n);
        struct lock_version *got = calloc(SIM_ENTRIES_MAX, sizeof(*got));
        CU_ASSERT_FATAL(got != NULL);
        struct lock_set set = {.v = got, .count = 0};
        bool applied[SIM_ENTRIES_MAX] = {false};
        size_t next_seq = 1, pending = nwrites;
        /* Deliver in order; a write waits for its chain and its lock epoch. */
        for (int pass = 0; pending > 0 || pass == 0; pass++) {
            CU_ASSERT_FATAL(pass <= (int)(2 * SIM_ENTRIES_MAX));
            for (size_t k = 0; k < n; k++) {
                if (order[k] < SIM_ENTRIES_MAX) {
                    if (pass == 0)
                        got[set.count++] = locks[order[k]];
                    continue;
                }
                size_t i = order[k] - SIM_ENTRIES_MAX;
                if (applied[i] || writes[i].seq != next_seq)
                    continue;
                bool epoch_held = writes[i].lock_epoch == 0;
                for (size_t j = 0; j < set.count; j++)
                    epoch_held |= set.v[j].epoch == writes[i].lock_epoch;
                if (!epoch_held)
                    continue;   /* held back (rule pending) */
                /* Admission: an honest write never names an epoch that locks it. */
                CU_ASSERT_PTR_NULL(lock_set_covering(&set, writes[i].lock_epoch, "visit",
                                                     "101-0001/V1"));
                applied[i] = true;
                next_seq++;
                pending--;
            }
        }
        for (size_t i = 0; i < nwrites; i++) {
            struct entry e;
            write_entry(&writes[i], &e);
            const struct lock_version *q = lock_quarantines(&set, &e);
            verdict[r][i] = q == NULL ? 0 : (int)q->epoch;
        }
        free(got);
    }
    for (int r = 1; r < SIM_REPLICAS; r++)
        CU_ASSERT_EQUAL(memcmp(verdict[0], verdict[r], nwrites * sizeof(int)), 0);

    /* A lock always beats an unseen edit: under a final lock, the newest
     * displayed write is one the lock saw. */
    if (nlocks > 0 && strcmp(locks[nlocks - 1].targets, "*") == 0) {
        uint64_t shown = 0;
        for (size_t i = 0; i < nwrites; i++)
            if (verdict[0][i] == 0)
                shown = writes[i].seq;
        CU_ASSERT(shown <= locks[nlocks - 1].seen[0].seq);
    }
    /* And a write the lock saw is never quarantined by it. */
    for (size_t i = 0; i < nwrites; i++) {
        if (verdict[0][i] != 0) {
            const struct lock_version *v = NULL;
            for (size_t j = 0; j < nlocks; j++)
                if (locks[j].epoch == (uint64_t)verdict[0][i])
                    v = &locks[j];
            CU_ASSERT_PTR_NOT_NULL_FATAL(v);
            CU_ASSERT(writes[i].seq > v->seen[0].seq);
            CU_ASSERT(writes[i].lock_epoch < v->epoch);
        }
    }
    (void)refused;
    free(locks);
}

static void test_lock_quarantine_any_order(void)
{
    /* unit_seed() prints the seed once, for TS_SEED=<seed> replays. */
    (void)unit_seed();
    for (int run = 0; run < 300; run++)
        sim_one();
}

/* A lower epoch than the writer held (a lie) is quarantined like an unseen
 * edit; the honest epoch of an unlock is not. */
static void test_lock_quarantine_cases(void)
{
    struct lock_version v[2];
    make_lock(&v[0], 1, true, 3, 0);
    make_lock(&v[1], 2, false, 5, 1);
    struct lock_set set = {.v = v, .count = 1};
    struct sim_write seen = {.seq = 3, .lock_epoch = 0}, unseen = {.seq = 4, .lock_epoch = 0};
    struct entry e;
    write_entry(&seen, &e);
    CU_ASSERT_PTR_NULL(lock_quarantines(&set, &e));
    write_entry(&unseen, &e);
    CU_ASSERT_PTR_EQUAL(lock_quarantines(&set, &e), &v[0]);
    set.count = 2;
    struct sim_write after = {.seq = 6, .lock_epoch = 2}, lie = {.seq = 6, .lock_epoch = 0};
    write_entry(&after, &e);
    CU_ASSERT_PTR_NULL(lock_quarantines(&set, &e));
    write_entry(&lie, &e);
    CU_ASSERT_PTR_EQUAL(lock_quarantines(&set, &e), &v[0]);
    /* Only lockable types are covered by "*". */
    snprintf(e.record_type, sizeof(e.record_type), "query");
    CU_ASSERT_PTR_NULL(lock_quarantines(&set, &e));
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_lock_targets_ok", test_lock_targets_ok },
        { "test_lock_covers", test_lock_covers },
        { "test_lock_seen_parse", test_lock_seen_parse },
        { "test_lock_targets_edit", test_lock_targets_edit },
        { "test_lock_quarantine_cases", test_lock_quarantine_cases },
        { "test_lock_quarantine_any_order", test_lock_quarantine_any_order },
        { NULL, NULL },
    };
    return unit_run("lock", tests);
}
