/*
 * test_enroll.c: enrollment slots (node/enroll.h), the pure rules.  A seeded
 * property test (the seed is printed; replay with TS_SEED) drives an
 * allocating hub, a relay hub and three sites through random enrollments,
 * grants, release requests and partitions, every entry admitted on every
 * replica by enroll_admit alone: trial-wide enrolled never exceeds the cap,
 * no honest entry is ever refused, and once healed every replica counts the
 * same.  Examples pin the rules one by one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../node/enroll.h"
#include "../../node/schema.h"
#include "../../proto/errors.h"
#include "unit.h"

/* ---- entries ------------------------------------------------------------------ */

#define SIM_SITES 3
#define SIM_NODES (2 + SIM_SITES)   /* 0: allocating hub, 1: relay hub, 2..: sites */
#define SIM_CHAIN_MAX 600
#define SIM_SUBJECTS_MAX 400
#define SIM_WRITES_MAX 2

static const char *const node_ids[SIM_NODES] = {"H", "R", "101", "102", "103"};

struct sim_entry {
    struct entry e;
    struct field_write w[SIM_WRITES_MAX];
    char values[SIM_WRITES_MAX][24];
};

static struct sim_entry chains[SIM_NODES][SIM_CHAIN_MAX];
static size_t chain_len[SIM_NODES];

/* Appends an entry to origin o's chain: type, id and up to two writes. */
static struct entry *chain_add(int o, const char *type, const char *id, const char *f1,
                               const char *v1, const char *f2, const char *v2)
{
    CU_ASSERT_FATAL(chain_len[o] < SIM_CHAIN_MAX);
    struct sim_entry *se = &chains[o][chain_len[o]];
    memset(se, 0, sizeof(*se));
    snprintf(se->e.origin, sizeof(se->e.origin), "%s", node_ids[o]);
    se->e.lane = LANE_BULK;
    se->e.seq = ++chain_len[o];
    snprintf(se->e.record_type, sizeof(se->e.record_type), "%s", type);
    snprintf(se->e.record_id, sizeof(se->e.record_id), "%s", id);
    const char *fs[SIM_WRITES_MAX] = {f1, f2}, *vs[SIM_WRITES_MAX] = {v1, v2};
    for (size_t i = 0; i < SIM_WRITES_MAX && fs[i] != NULL; i++) {
        snprintf(se->w[i].field, sizeof(se->w[i].field), "%s", fs[i]);
        snprintf(se->values[i], sizeof(se->values[i]), "%s", vs[i]);
        se->w[i].value = se->values[i];
        se->e.writes_count++;
    }
    se->e.writes = se->w;
    return &se->e;
}

/* ---- replicas ----------------------------------------------------------------- */

struct replica {
    size_t held[SIM_NODES];            /* the prefix of each chain admitted here */
    bool cap_held;
    uint64_t cap;
    struct enroll_site site[SIM_SITES];
    bool slotted[SIM_SITES][SIM_SUBJECTS_MAX];
};

static struct replica reps[SIM_NODES];
static bool link_up[SIM_NODES][SIM_NODES];
static unsigned next_subject[SIM_SITES];

static int site_index(const char *id)
{
    for (int s = 0; s < SIM_SITES; s++) {
        size_t n = strlen(node_ids[2 + s]);
        if (strncmp(id, node_ids[2 + s], n) == 0 && id[n] == '-')
            return s;
    }
    return -1;
}

static unsigned subject_number(const char *id)
{
    const char *dash = strchr(id, '-');
    return dash != NULL ? (unsigned)strtoul(dash + 1, NULL, 10) : 0;
}

static unsigned role_of(int o)
{
    return o < 2 ? SCHEMA_ROLE_HUB : SCHEMA_ROLE_SITE;
}

static void view_of(int r, const struct entry *e, struct enroll_view *v)
{
    const struct replica *rep = &reps[r];
    memset(v, 0, sizeof(*v));
    v->allocator_held = rep->cap_held;
    snprintf(v->allocator, sizeof(v->allocator), "H");
    v->granted_complete = r == 0;
    int s = site_index(e->record_id);
    if (s < 0)
        return;
    v->site = rep->site[s];
    if (strcmp(e->record_type, "subject") == 0)
        v->subject_slotted = rep->slotted[s][subject_number(e->record_id)];
}

static uint64_t written_count(const struct entry *e, const char *field, bool *any)
{
    uint64_t v = 0;
    *any = false;
    for (size_t i = 0; i < e->writes_count; i++) {
        if (strcmp(e->writes[i].field, field) == 0) {
            *any = enroll_count_parse(e->writes[i].value, &v);
        }
    }
    return v;
}

/* Admission of e (of origin o) at replica r; on success r follows it. */
static int admit(int r, int o, const struct entry *e)
{
    struct enroll_view v;
    struct enroll_refusal why;
    view_of(r, e, &v);
    int rc = enroll_admit(e, role_of(o), &v, &why);
    if (rc != 0)
        return rc;
    struct replica *rep = &reps[r];
    int s = site_index(e->record_id);
    bool any;
    if (strcmp(e->record_type, SCHEMA_ENROLLMENT_TYPE) == 0) {
        rep->cap = written_count(e, "cap", &any);
        rep->cap_held = true;
    } else if (o == 0 && s >= 0) {
        uint64_t g = written_count(e, "granted", &any);
        if (any && g > rep->site[s].granted)
            rep->site[s].granted = g;
        uint64_t q = written_count(e, "release_requested", &any);
        if (any && q > rep->site[s].release_requested)
            rep->site[s].release_requested = q;
    } else if (s >= 0) {
        unsigned k = strcmp(e->record_type, "subject") == 0 ? subject_number(e->record_id) : 0;
        bool was = k > 0 && rep->slotted[s][k];
        enroll_site_note(&rep->site[s], e, was);
        if (k > 0)
            rep->slotted[s][k] = true;
    }
    return 0;
}

/* A site replica sees only trial-wide records and its own site's. */
static bool replica_sees(int r, const struct entry *e)
{
    if (r < 2)
        return true;
    int s = site_index(e->record_id);
    return s < 0 || s == r - 2;
}

/* Entries of src's chains dst lacks, in chain order; AGAIN holds a chain. */
static void sync(int src, int dst)
{
    for (int o = 0; o < SIM_NODES; o++) {
        while (reps[dst].held[o] < reps[src].held[o]) {
            const struct entry *e = &chains[o][reps[dst].held[o]].e;
            if (replica_sees(dst, e)) {
                int rc = admit(dst, o, e);
                if (rc == TS_ERR_AGAIN)
                    break;
                CU_ASSERT_EQUAL_FATAL(rc, 0);   /* an honest entry is never refused */
            }
            reps[dst].held[o]++;
        }
    }
}

/* Writes at node o, admitted there first (as the node's own write). */
static void local(int o, const struct entry *e)
{
    CU_ASSERT_EQUAL_FATAL(admit(o, o, e), 0);
    reps[o].held[o]++;
}

/* ---- actors -------------------------------------------------------------------- */

static void site_enroll(int s)
{
    int o = 2 + s;
    if (next_subject[s] + 1 >= SIM_SUBJECTS_MAX)
        return;
    char id[32];
    snprintf(id, sizeof(id), "%s-%04u", node_ids[o], next_subject[s] + 1);
    /* What the site's API asks: would the entry be admitted here? */
    struct entry probe;
    struct field_write w[2] = {{.field = "status", .value = "enrolled"},
                               {.field = "slot", .value = "Y"}};
    memset(&probe, 0, sizeof(probe));
    snprintf(probe.origin, sizeof(probe.origin), "%s", node_ids[o]);
    probe.lane = LANE_BULK;
    snprintf(probe.record_type, sizeof(probe.record_type), "subject");
    snprintf(probe.record_id, sizeof(probe.record_id), "%s", id);
    probe.writes = w;
    probe.writes_count = 2;
    struct enroll_view v;
    struct enroll_refusal why;
    view_of(o, &probe, &v);
    if (enroll_admit(&probe, SCHEMA_ROLE_SITE, &v, &why) != 0) {
        CU_ASSERT(strstr(why.msg, "has used") != NULL);
        return;   /* refused: the subject stays in screening */
    }
    next_subject[s]++;
    local(o, chain_add(o, "subject", id, "status", "enrolled", "slot", "Y"));
}

static void site_reconcile(int s)
{
    int o = 2 + s;
    uint64_t ack, rel;
    if (!enroll_site_reconcile(&reps[o].site[s], reps[o].cap_held, &ack, &rel))
        return;
    char id[32], a[24], r[24];
    snprintf(id, sizeof(id), "%s-QUOTA", node_ids[o]);
    snprintf(a, sizeof(a), "%" PRIu64, ack);
    snprintf(r, sizeof(r), "%" PRIu64, rel);
    local(o, chain_add(o, SCHEMA_QUOTA_TYPE, id, "acknowledged", a, "released", r));
}

static void hub_set_slots(int s, uint64_t slots)
{
    uint64_t granted, asked;
    char msg[256];
    struct enroll_site *sites = reps[0].site;
    if (enroll_set_slots(sites, SIM_SITES, (size_t)s, reps[0].cap, slots, &granted, &asked, msg,
                         sizeof(msg)) != 0) {
        CU_ASSERT(strstr(msg, "cap of") != NULL);
        return;
    }
    char id[32], g[24], q[24];
    snprintf(id, sizeof(id), "%s-QUOTA", node_ids[2 + s]);
    snprintf(g, sizeof(g), "%" PRIu64, granted);
    snprintf(q, sizeof(q), "%" PRIu64, asked);
    if (granted != sites[s].granted)
        local(0, chain_add(0, SCHEMA_QUOTA_TYPE, id, "granted", g, NULL, NULL));
    else if (asked != sites[s].release_requested)
        local(0, chain_add(0, SCHEMA_QUOTA_TYPE, id, "release_requested", q, NULL, NULL));
}

static bool linked(int a, int b)
{
    return a != b && (a < 2 || b < 2);   /* sites talk to hubs only */
}

/* ---- the property -------------------------------------------------------------- */

static void check_cap(void)
{
    uint64_t cap = reps[0].cap;
    uint64_t truth = 0;
    for (int s = 0; s < SIM_SITES; s++)
        truth += reps[2 + s].site[s].taken;
    CU_ASSERT_FATAL(truth <= cap);
    for (int r = 0; r < 2; r++) {
        uint64_t seen = 0;
        for (int s = 0; s < SIM_SITES; s++)
            seen += reps[r].site[s].taken;
        CU_ASSERT_FATAL(seen <= cap);
    }
}

static void sim_reset(void)
{
    memset(chain_len, 0, sizeof(chain_len));
    memset(reps, 0, sizeof(reps));
    memset(next_subject, 0, sizeof(next_subject));
    for (int s = 0; s < SIM_SITES; s++) {
        for (int r = 0; r < SIM_NODES; r++)
            snprintf(reps[r].site[s].site, sizeof(reps[r].site[s].site), "%s", node_ids[2 + s]);
    }
    for (int a = 0; a < SIM_NODES; a++)
        for (int b = 0; b < SIM_NODES; b++)
            link_up[a][b] = linked(a, b);
}

static void heal(void)
{
    for (int round = 0; round < 20; round++) {
        for (int a = 0; a < SIM_NODES; a++)
            for (int b = 0; b < SIM_NODES; b++)
                if (linked(a, b))
                    sync(a, b);
        for (int s = 0; s < SIM_SITES; s++)
            site_reconcile(s);
    }
}

static void test_enroll_property_cap_never_exceeded(void)
{
    unit_seed();
    for (int run = 0; run < 150; run++) {
        sim_reset();
        uint64_t cap = 5 + unit_rand() % 20;
        char c[24];
        snprintf(c, sizeof(c), "%" PRIu64, cap);
        /* Set-up, as the workflow has it: the cap reaches every site. */
        local(0, chain_add(0, SCHEMA_ENROLLMENT_TYPE, SCHEMA_ENROLLMENT_ID, "cap", c,
                           "allocator", "H"));
        heal();
        for (int s = 0; s < SIM_SITES; s++)
            CU_ASSERT_FATAL(reps[2 + s].site[s].under_quota);
        for (int step = 0; step < 300; step++) {
            uint64_t x = unit_rand();
            int s = (int)(x % SIM_SITES);
            switch ((x >> 8) % 6) {
            case 0:
            case 1:
                site_enroll(s);
                break;
            case 2:
                site_reconcile(s);
                break;
            case 3:
                hub_set_slots(s, (x >> 16) % (cap + 1));
                break;
            case 4: {   /* a link goes down or comes back */
                int a = (int)((x >> 16) % SIM_NODES), b = (int)((x >> 24) % SIM_NODES);
                if (linked(a, b))
                    link_up[a][b] = link_up[b][a] = !link_up[a][b];
                break;
            }
            default: {
                int a = (int)((x >> 16) % SIM_NODES), b = (int)((x >> 24) % SIM_NODES);
                if (linked(a, b) && link_up[a][b])
                    sync(a, b);
                break;
            }
            }
            check_cap();
        }
        heal();
        check_cap();
        /* Every replica counts alike: the hubs as each site counts itself. */
        for (int s = 0; s < SIM_SITES; s++) {
            const struct enroll_site *own = &reps[2 + s].site[s];
            for (int r = 0; r < 2; r++) {
                CU_ASSERT_EQUAL(reps[r].site[s].taken, own->taken);
                CU_ASSERT_EQUAL(reps[r].site[s].acknowledged, own->acknowledged);
                CU_ASSERT_EQUAL(reps[r].site[s].released, own->released);
                CU_ASSERT_EQUAL(reps[r].site[s].granted, reps[0].site[s].granted);
                CU_ASSERT_EQUAL(reps[r].site[s].release_requested,
                                reps[0].site[s].release_requested);
            }
            CU_ASSERT_EQUAL(own->granted, reps[0].site[s].granted);
            CU_ASSERT_EQUAL(own->acknowledged, own->granted);
            CU_ASSERT(own->taken <= enroll_slots(own));
        }
    }
}

/* ---- examples ------------------------------------------------------------------- */

static struct enroll_view full_site(void)
{
    struct enroll_view v;
    memset(&v, 0, sizeof(v));
    snprintf(v.site.site, sizeof(v.site.site), "101");
    v.site.under_quota = true;
    v.site.granted = v.site.acknowledged = 5;
    v.site.taken = 5;
    v.allocator_held = true;
    snprintf(v.allocator, sizeof(v.allocator), "H");
    return v;
}

static void test_enroll_sixth_refused_in_words(void)
{
    memset(chain_len, 0, sizeof(chain_len));
    struct entry *e = chain_add(2, "subject", "101-0006", "status", "enrolled", "slot", "Y");
    struct enroll_view v = full_site();
    struct enroll_refusal why;
    CU_ASSERT_EQUAL(enroll_admit(e, SCHEMA_ROLE_SITE, &v, &why), TS_ERR_AUTH);
    CU_ASSERT(strstr(why.msg, "site 101 has used 5 of 5 slots") != NULL);
    CU_ASSERT_STRING_EQUAL(why.rule, "enrollment");
    v.site.acknowledged = 6;
    CU_ASSERT_EQUAL(enroll_admit(e, SCHEMA_ROLE_SITE, &v, &why), 0);
}

static void test_enroll_status_needs_a_slot(void)
{
    memset(chain_len, 0, sizeof(chain_len));
    struct entry *e = chain_add(2, "subject", "101-0001", "status", "randomized", NULL, NULL);
    struct enroll_view v = full_site();
    struct enroll_refusal why;
    CU_ASSERT_EQUAL(enroll_admit(e, SCHEMA_ROLE_SITE, &v, &why), TS_ERR_AUTH);
    /* The hub's write waits for the site's enrolling entry. */
    CU_ASSERT_EQUAL(enroll_admit(e, SCHEMA_ROLE_HUB, &v, &why), TS_ERR_AGAIN);
    v.subject_slotted = true;
    CU_ASSERT_EQUAL(enroll_admit(e, SCHEMA_ROLE_SITE, &v, &why), 0);
    CU_ASSERT_EQUAL(enroll_admit(e, SCHEMA_ROLE_HUB, &v, &why), 0);
    /* Screening and screen_failed take no slot. */
    struct entry *f = chain_add(2, "subject", "101-0002", "status", "screen_failed", NULL, NULL);
    v.subject_slotted = false;
    CU_ASSERT_EQUAL(enroll_admit(f, SCHEMA_ROLE_SITE, &v, &why), 0);
    CU_ASSERT(!enroll_status_takes_slot("screening"));
    CU_ASSERT(!enroll_status_takes_slot("screen_failed"));
    CU_ASSERT(enroll_status_takes_slot("withdrawn"));
}

static void test_enroll_release_only_unused(void)
{
    memset(chain_len, 0, sizeof(chain_len));
    struct enroll_view v = full_site();
    struct enroll_refusal why;
    v.site.taken = 3;
    struct entry *ok = chain_add(2, SCHEMA_QUOTA_TYPE, "101-QUOTA", "released", "2", NULL, NULL);
    CU_ASSERT_EQUAL(enroll_admit(ok, SCHEMA_ROLE_SITE, &v, &why), 0);
    struct entry *bad = chain_add(2, SCHEMA_QUOTA_TYPE, "101-QUOTA", "released", "3", NULL, NULL);
    CU_ASSERT_EQUAL(enroll_admit(bad, SCHEMA_ROLE_SITE, &v, &why), TS_ERR_AUTH);
    /* Acknowledging past the grant: held elsewhere, refused at the allocator. */
    struct entry *ack = chain_add(2, SCHEMA_QUOTA_TYPE, "101-QUOTA", "acknowledged", "9", NULL,
                                  NULL);
    CU_ASSERT_EQUAL(enroll_admit(ack, SCHEMA_ROLE_SITE, &v, &why), TS_ERR_AGAIN);
    v.granted_complete = true;
    CU_ASSERT_EQUAL(enroll_admit(ack, SCHEMA_ROLE_SITE, &v, &why), TS_ERR_AUTH);
    /* Only the allocator grants. */
    struct entry *g = chain_add(1, SCHEMA_QUOTA_TYPE, "101-QUOTA", "granted", "9", NULL, NULL);
    CU_ASSERT_EQUAL(enroll_admit(g, SCHEMA_ROLE_HUB, &v, &why), TS_ERR_AUTH);
    struct entry *g0 = chain_add(0, SCHEMA_QUOTA_TYPE, "101-QUOTA", "granted", "9", NULL, NULL);
    CU_ASSERT_EQUAL(enroll_admit(g0, SCHEMA_ROLE_HUB, &v, &why), 0);
}

static void test_enroll_set_slots_within_cap(void)
{
    struct enroll_site sites[2];
    memset(sites, 0, sizeof(sites));
    snprintf(sites[0].site, sizeof(sites[0].site), "101");
    snprintf(sites[1].site, sizeof(sites[1].site), "102");
    sites[0].granted = 5;
    sites[1].granted = 5;
    uint64_t g, q;
    char msg[256];
    CU_ASSERT_EQUAL(enroll_set_slots(sites, 2, 0, 10, 6, &g, &q, msg, sizeof(msg)),
                    TS_ERR_INVALID);
    CU_ASSERT(strstr(msg, "cap of 10") != NULL);
    /* Asking 102 for two back does not free them until released. */
    CU_ASSERT_EQUAL(enroll_set_slots(sites, 2, 1, 10, 3, &g, &q, msg, sizeof(msg)), 0);
    CU_ASSERT_EQUAL(g, 5);
    CU_ASSERT_EQUAL(q, 2);
    sites[1].release_requested = 2;
    CU_ASSERT_EQUAL(enroll_set_slots(sites, 2, 0, 10, 7, &g, &q, msg, sizeof(msg)),
                    TS_ERR_INVALID);
    sites[1].released = 2;
    CU_ASSERT_EQUAL(enroll_set_slots(sites, 2, 0, 10, 7, &g, &q, msg, sizeof(msg)), 0);
    CU_ASSERT_EQUAL(g, 7);
    /* Subjects a site holds count even past its slots. */
    sites[0].taken = 9;
    CU_ASSERT_EQUAL(enroll_committed(sites, 2), 9 + 3);
}

static void test_enroll_count_parse(void)
{
    uint64_t v;
    CU_ASSERT(enroll_count_parse("0", &v) && v == 0);
    CU_ASSERT(enroll_count_parse("1000000000", &v) && v == 1000000000);
    CU_ASSERT(!enroll_count_parse("1000000001", &v));
    CU_ASSERT(!enroll_count_parse("01", &v));
    CU_ASSERT(!enroll_count_parse("-1", &v));
    CU_ASSERT(!enroll_count_parse("", &v));
    CU_ASSERT(!enroll_count_parse("99999999999999999999999", &v));
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_enroll_property_cap_never_exceeded", test_enroll_property_cap_never_exceeded },
        { "test_enroll_sixth_refused_in_words", test_enroll_sixth_refused_in_words },
        { "test_enroll_status_needs_a_slot", test_enroll_status_needs_a_slot },
        { "test_enroll_release_only_unused", test_enroll_release_only_unused },
        { "test_enroll_set_slots_within_cap", test_enroll_set_slots_within_cap },
        { "test_enroll_count_parse", test_enroll_count_parse },
        { NULL, NULL },
    };
    return unit_run("enroll", tests);
}
