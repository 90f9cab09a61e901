/*
 * enroll_node.c: a node's ledger of enrollment slots over its store (see
 * enroll_node.h and enroll.h).
 *
 * What this file guarantees:
 *   - enroll_node_view answers for a site's own entry from the site's chain
 *     exactly up to the entry before it (rebuilt from committed state when
 *     the ledger is not there), so admission is the same on every node;
 *   - a local enrollment beyond the site's slots is refused before anything
 *     is queued, with the words "site S has used U of N slots";
 *   - the allocator grants only within the cap as it knows it, with the
 *     pending group committed first, so two grants never both pass on one
 *     stale view.
 */
#include "enroll_node.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/errors.h"
#include "merge.h"
#include "node.h"
#include "schema.h"
#include "trace.h"

/* One site's chain as the ledger holds it. */
struct site_ledger {
    struct enroll_site s;       /* granted, release_requested unused here */
    uint64_t watermark;         /* the site's bulk seq the ledger reflects */
    char (*slotted)[TS_ID_BYTES_MAX + 1];  /* sorted subject ids holding a slot */
    size_t slotted_count, slotted_cap;
};

struct enroll_ledger {
    struct site_ledger *sites;
    size_t count, cap;
    bool reconcile_pending;     /* a site's acknowledgement is being committed */
};

static struct enroll_ledger *ledger_of(struct node *n)
{
    if (n->enroll == NULL)
        n->enroll = calloc(1, sizeof(*n->enroll));
    return n->enroll;
}

static void site_clear(struct site_ledger *l)
{
    free(l->slotted);
    l->slotted = NULL;
    l->slotted_count = l->slotted_cap = 0;
}

void enroll_node_free(struct node *n)
{
    struct enroll_ledger *L = n->enroll;
    if (L == NULL)
        return;
    for (size_t i = 0; i < L->count; i++)
        site_clear(&L->sites[i]);
    free(L->sites);
    free(L);
    n->enroll = NULL;
}

/* Makes room for one more of count elements of elem bytes in *v (capacity
 * *cap, doubled as needed, at most max): 0, TS_ERR_TOOBIG or TS_ERR_NOMEM. */
static int grow(void **v, size_t *cap, size_t count, size_t elem, size_t max)
{
    if (count < *cap)
        return 0;
    size_t want = *cap == 0 ? 16 : 2 * *cap;
    if (count >= max)
        return TS_ERR_TOOBIG;
    if (want > max)
        want = max;
    void *p = realloc(*v, want * elem);
    if (p == NULL)
        return TS_ERR_NOMEM;
    *v = p;
    *cap = want;
    return 0;
}

/* Index of id in l's sorted slotted list, or where it would go (*found). */
static size_t slotted_find(const struct site_ledger *l, const char *id, bool *found)
{
    size_t lo = 0, hi = l->slotted_count;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->slotted[mid], id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int slotted_add(struct site_ledger *l, const char *id)
{
    bool found;
    size_t at = slotted_find(l, id, &found);
    if (found)
        return 0;
    void *v = l->slotted;
    int rc = grow(&v, &l->slotted_cap, l->slotted_count, sizeof(*l->slotted), SCHEMA_COUNT_MAX);
    l->slotted = v;
    if (rc != 0)
        return rc;
    memmove(&l->slotted[at + 1], &l->slotted[at], (l->slotted_count - at) * sizeof(*l->slotted));
    snprintf(l->slotted[at], sizeof(l->slotted[at]), "%s", id);
    l->slotted_count++;
    return 0;
}

/* The highest count among a field's live writes (MERGE_POLICY_MAX); *any
 * says whether the field has a value at all. */
static uint64_t field_count(struct node *n, const char *type, const char *id, const char *field,
                            bool *any)
{
    struct field_state st;
    uint64_t best = 0;
    if (any != NULL)
        *any = false;
    if (store_field_get(n->store, type, id, field, &st) != 0)
        return 0;
    for (size_t i = 0; i < st.live_count; i++) {
        uint64_t v;
        if (enroll_count_parse(st.live[i].value, &v) && v > best)
            best = v;
        if (any != NULL)
            *any = true;
    }
    field_state_release(&st);
    return best;
}

static void quota_id(const char *site, char id[TS_ID_BYTES_MAX + 1])
{
    snprintf(id, TS_ID_BYTES_MAX + 1, "%s%s", site, SCHEMA_QUOTA_SUFFIX);
}

struct rebuild_ctx {
    struct node *n;
    struct site_ledger *l;
    int rc;
};

static int rebuild_subject_cb(void *ctx, const char *type, const char *id)
{
    struct rebuild_ctx *r = ctx;
    bool any;
    (void)type;
    struct field_state st;
    if (store_field_get(r->n->store, "subject", id, "slot", &st) != 0)
        return 0;
    any = st.live_count > 0;
    field_state_release(&st);
    if (any)
        r->rc = slotted_add(r->l, id);
    return r->rc;
}

/* The site's ledger from committed state: its chain up to the committed head. */
static int site_rebuild(struct node *n, struct site_ledger *l)
{
    char qid[TS_ID_BYTES_MAX + 1], prefix[TS_ID_BYTES_MAX + 2];
    uint8_t hash[TS_HASH_BYTES];
    l->slotted_count = 0;
    int rc = store_head(n->store, l->s.site, LANE_BULK, &l->watermark, hash);
    if (rc != 0)
        return rc;
    quota_id(l->s.site, qid);
    l->s.acknowledged = field_count(n, SCHEMA_QUOTA_TYPE, qid, "acknowledged",
                                    &l->s.under_quota);
    l->s.released = field_count(n, SCHEMA_QUOTA_TYPE, qid, "released", NULL);
    snprintf(prefix, sizeof(prefix), "%s-", l->s.site);
    struct rebuild_ctx r = {.n = n, .l = l, .rc = 0};
    rc = store_records_prefix(n->store, "subject", prefix, rebuild_subject_cb, &r);
    if (r.rc != 0)
        return r.rc;
    if (rc != 0 && rc != TS_ERR_NOTFOUND)
        return rc;
    l->s.taken = l->slotted_count;
    return 0;
}

static struct site_ledger *site_find(struct node *n, const char *site, bool create)
{
    struct enroll_ledger *L = ledger_of(n);
    if (L == NULL)
        return NULL;
    for (size_t i = 0; i < L->count; i++) {
        if (strcmp(L->sites[i].s.site, site) == 0)
            return &L->sites[i];
    }
    if (!create)
        return NULL;
    void *v = L->sites;
    int rc = grow(&v, &L->cap, L->count, sizeof(*L->sites), ENROLL_NODE_SITES_MAX);
    L->sites = v;
    if (rc != 0)
        return NULL;
    struct site_ledger *l = &L->sites[L->count];
    memset(l, 0, sizeof(*l));
    snprintf(l->s.site, sizeof(l->s.site), "%s", site);
    if (site_rebuild(n, l) != 0) {
        site_clear(l);
        return NULL;
    }
    L->count++;
    return l;
}

/* The site's ledger, rebuilt unless it stands at `want` (UINT64_MAX: any). */
static struct site_ledger *site_at(struct node *n, const char *site, uint64_t want)
{
    struct site_ledger *l = site_find(n, site, true);
    if (l == NULL)
        return NULL;
    if (want != UINT64_MAX && l->watermark != want && site_rebuild(n, l) != 0)
        return NULL;
    return l;
}

/* The committed head of the site's bulk lane: what a ledger read outside
 * admission must stand at. */
static uint64_t committed_head(struct node *n, const char *site)
{
    uint64_t seq = 0;
    uint8_t hash[TS_HASH_BYTES];
    if (store_head(n->store, site, LANE_BULK, &seq, hash) != 0)
        return UINT64_MAX;
    return seq;
}

bool enroll_node_cap(struct node *n, uint64_t *cap, char allocator[TS_ID_BYTES_MAX + 1])
{
    struct field_state st;
    bool any = false;
    allocator[0] = '\0';
    if (store_field_get(n->store, SCHEMA_ENROLLMENT_TYPE, SCHEMA_ENROLLMENT_ID, "allocator",
                        &st) == 0) {
        int i = merge_display(SCHEMA_ENROLLMENT_TYPE, "allocator", &st);
        if (i >= 0) {
            snprintf(allocator, TS_ID_BYTES_MAX + 1, "%s", st.live[i].value);
            any = true;
        }
        field_state_release(&st);
    }
    *cap = 0;
    if (store_field_get(n->store, SCHEMA_ENROLLMENT_TYPE, SCHEMA_ENROLLMENT_ID, "cap", &st) == 0) {
        int i = merge_display(SCHEMA_ENROLLMENT_TYPE, "cap", &st);
        if (i >= 0 && !enroll_count_parse(st.live[i].value, cap))
            *cap = 0;
        field_state_release(&st);
    }
    return any;
}

/* The allocator's totals for site, as held (committed). */
static void allocator_totals(struct node *n, const char *site, struct enroll_site *s)
{
    char qid[TS_ID_BYTES_MAX + 1];
    quota_id(site, qid);
    s->granted = field_count(n, SCHEMA_QUOTA_TYPE, qid, "granted", NULL);
    s->release_requested = field_count(n, SCHEMA_QUOTA_TYPE, qid, "release_requested", NULL);
}

int enroll_node_view(struct node *n, const struct entry *e, struct enroll_view *out)
{
    char site[TS_ID_BYTES_MAX + 1];
    memset(out, 0, sizeof(*out));
    uint64_t cap;
    out->allocator_held = enroll_node_cap(n, &cap, out->allocator);
    out->granted_complete = out->allocator_held && strcmp(out->allocator, n->cfg.id) == 0;
    if (strcmp(e->record_type, SCHEMA_ENROLLMENT_TYPE) == 0)
        return 0;
    if (!schema_site_of_key(e->record_id, site))
        return TS_ERR_INVALID;
    bool own_chain = strcmp(e->origin, site) == 0 && e->lane == LANE_BULK;
    struct site_ledger *l = site_at(n, site, own_chain ? e->seq - 1 : UINT64_MAX);
    if (l == NULL)
        return TS_ERR_NOMEM;
    out->site = l->s;
    allocator_totals(n, site, &out->site);
    if (strcmp(e->record_type, "subject") == 0)
        slotted_find(l, e->record_id, &out->subject_slotted);
    return 0;
}

void enroll_node_note(struct node *n, const struct entry *e)
{
    if (e->lane != LANE_BULK)
        return;
    struct site_ledger *l = site_find(n, e->origin, false);
    if (l == NULL)
        return;
    if (l->watermark + 1 != e->seq) {
        /* Not in step (a hole, a failed call): the next view rebuilds it. */
        l->watermark = UINT64_MAX - 1;
        return;
    }
    bool was = false;
    if (strcmp(e->record_type, "subject") == 0) {
        slotted_find(l, e->record_id, &was);
        for (size_t i = 0; i < e->writes_count; i++) {
            if (strcmp(e->writes[i].field, "slot") == 0 && slotted_add(l, e->record_id) != 0)
                l->watermark = UINT64_MAX - 1;
        }
    }
    enroll_site_note(&l->s, e, was);
    if (l->watermark != UINT64_MAX - 1)
        l->watermark = e->seq;
}

/* The displayed value of a field of the write, else as held. */
static const char *write_field(const struct node_write *w, const char *field)
{
    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(w->fields[i].field, field) == 0)
            return w->fields[i].value;
    }
    return NULL;
}

static int prepare_refuse(struct node_write_result *now, int code, const char *msg)
{
    now->code = code;
    snprintf(now->verr.field, sizeof(now->verr.field), "status");
    snprintf(now->verr.msg, sizeof(now->verr.msg), "%s", msg);
    ts_error_set(&now->err, code, "%s", msg);
    return code;
}

int enroll_node_prepare(struct node *n, const struct node_write *w, bool check,
                        struct node_write *out, struct validate_field *buf,
                        struct node_write_result *now)
{
    char site[TS_ID_BYTES_MAX + 1], msg[256];
    *out = *w;
    if (strcmp(w->type, "subject") != 0)
        return 0;
    bool hub = n->cfg.role == PKI_ROLE_HUB;
    if (hub && write_field(w, "slot") != NULL) {
        /* An import of exported records at a hub: the slot is the site
         * node's to set, so it is left out. */
        size_t k = 0;
        for (size_t i = 0; i < w->n; i++) {
            if (strcmp(w->fields[i].field, "slot") != 0)
                buf[k++] = w->fields[i];
        }
        out->fields = buf;
        out->n = k;
        w = out;
    }
    const char *status = write_field(w, "status");
    if (status == NULL || !enroll_status_takes_slot(status) || write_field(w, "slot") != NULL ||
        !schema_site_of_key(w->id, site))
        return 0;
    if (check && n->pending != NULL) {
        int rc = node_flush(n);
        if (rc != 0)
            return prepare_refuse(now, rc, "committing the pending group failed");
    }
    struct site_ledger *l = site_at(n, site, committed_head(n, site));
    if (l == NULL)
        return prepare_refuse(now, TS_ERR_NOMEM, "cannot read the site's enrollment slots");
    bool slotted;
    slotted_find(l, w->id, &slotted);
    if (slotted)
        return 0;
    if (hub && !l->s.under_quota)
        return 0;   /* the site is not under the cap: a hub's write takes nothing */
    if (hub || strcmp(site, n->cfg.id) != 0) {
        snprintf(msg, sizeof(msg), "subject %s: only site %s's node enrolls it (enrolling takes "
                 "one of the site's slots); it is not enrolled there yet", w->id, site);
        return prepare_refuse(now, TS_ERR_AUTH, msg);
    }
    if (check && l->s.under_quota && l->s.taken >= enroll_slots(&l->s)) {
        snprintf(msg, sizeof(msg), "site %s has used %" PRIu64 " of %" PRIu64 " slots: subject "
                 "%s stays in screening until the CRO grants the site more",
                 site, l->s.taken, enroll_slots(&l->s), w->id);
        return prepare_refuse(now, TS_ERR_INVALID, msg);
    }
    if (w->n >= TS_WRITES_PER_ENTRY_MAX)
        return prepare_refuse(now, TS_ERR_INVALID, "too many fields in one write");
    if (w->fields != buf)
        memcpy(buf, w->fields, w->n * sizeof(*buf));
    buf[w->n].field = "slot";
    buf[w->n].value = "Y";
    out->fields = buf;
    out->n = w->n + 1;
    return 0;
}

static void reconcile_done(void *ctx, const struct node_write_result *r)
{
    struct node *n = ctx;
    if (n->enroll != NULL)
        n->enroll->reconcile_pending = false;
    if (r->code != 0)
        trace(TRACE_WARN, "enroll: acknowledging the site's slots failed: %s", r->err.msg);
}

void enroll_node_tick(struct node *n)
{
    if (n->cfg.role == PKI_ROLE_HUB || n->closing)
        return;
    struct enroll_ledger *L = ledger_of(n);
    if (L == NULL || L->reconcile_pending)
        return;
    struct site_ledger *l = site_at(n, n->cfg.id, committed_head(n, n->cfg.id));
    if (l == NULL)
        return;
    struct enroll_site s = l->s;
    allocator_totals(n, n->cfg.id, &s);
    uint64_t ack, rel, cap;
    char allocator[TS_ID_BYTES_MAX + 1];
    if (!enroll_site_reconcile(&s, enroll_node_cap(n, &cap, allocator), &ack, &rel))
        return;
    char qid[TS_ID_BYTES_MAX + 1], ack_s[24], rel_s[24], user[TS_USER_BYTES_MAX + 1];
    quota_id(n->cfg.id, qid);
    snprintf(ack_s, sizeof(ack_s), "%" PRIu64, ack);
    snprintf(rel_s, sizeof(rel_s), "%" PRIu64, rel);
    snprintf(user, sizeof(user), SCHEMA_INTEGRATION_PREFIX "%s", n->cfg.id);
    struct validate_field f[2] = {
        {.field = "acknowledged", .value = ack_s},
        {.field = "released", .value = rel_s},
    };
    struct node_write w = {.type = SCHEMA_QUOTA_TYPE, .id = qid, .fields = f, .n = 2,
                           .user = user};
    struct node_write_result now;
    L->reconcile_pending = true;
    if (node_write(n, &w, reconcile_done, n, &now) != 0) {
        L->reconcile_pending = false;
        trace(TRACE_WARN, "enroll: acknowledging the site's slots refused: %s", now.err.msg);
        return;
    }
    trace(TRACE_INFO, "enroll: site %s acknowledges %" PRIu64 " slots granted, %" PRIu64
          " released", n->cfg.id, ack, rel);
}

struct sites_ctx {
    struct node *n;
    struct enroll_site *v;
    size_t count, cap;
    int rc;
};

static int sites_add(struct sites_ctx *c, const char *site)
{
    for (size_t i = 0; i < c->count; i++) {
        if (strcmp(c->v[i].site, site) == 0)
            return 0;
    }
    void *v = c->v;
    int rc = grow(&v, &c->cap, c->count, sizeof(*c->v), ENROLL_NODE_SITES_MAX);
    c->v = v;
    if (rc != 0)
        return rc;
    memset(&c->v[c->count], 0, sizeof(c->v[c->count]));
    snprintf(c->v[c->count].site, sizeof(c->v[c->count].site), "%s", site);
    c->count++;
    return 0;
}

static int sites_quota_cb(void *ctx, const char *type, const char *id)
{
    struct sites_ctx *c = ctx;
    char site[TS_ID_BYTES_MAX + 1];
    (void)type;
    if (schema_site_of_key(id, site))
        c->rc = sites_add(c, site);
    return c->rc;
}

static int sites_member_cb(void *ctx, const char *type, const char *id)
{
    struct sites_ctx *c = ctx;
    (void)type;
    c->rc = sites_add(c, id);
    return c->rc;
}

static int site_cmp(const void *a, const void *b)
{
    return strcmp(((const struct enroll_site *)a)->site, ((const struct enroll_site *)b)->site);
}

int enroll_node_sites(struct node *n, struct enroll_site **sites, size_t *count)
{
    struct sites_ctx c = {.n = n};
    *sites = NULL;
    *count = 0;
    store_records(n->store, SCHEMA_QUOTA_TYPE, sites_quota_cb, &c);
    if (c.rc == 0 && n->cfg.role != PKI_ROLE_HUB)
        c.rc = sites_add(&c, n->cfg.id);
    if (c.rc == 0 && n->cfg.role == PKI_ROLE_HUB)
        store_records(n->store, MEMBER_TYPE, sites_member_cb, &c);
    if (c.rc != 0) {
        free(c.v);
        return c.rc;
    }
    for (size_t i = 0; i < c.count; i++) {
        struct site_ledger *l = site_at(n, c.v[i].site, committed_head(n, c.v[i].site));
        if (l != NULL)
            c.v[i] = l->s;
        allocator_totals(n, c.v[i].site, &c.v[i]);
    }
    if (c.count > 1)
        qsort(c.v, c.count, sizeof(*c.v), site_cmp);
    *sites = c.v;
    *count = c.count;
    return 0;
}

/* Only a hub that holds no cap, or is its allocator, allocates. */
static int allocator_check(struct node *n, uint64_t *cap, char *msg, size_t msg_cap)
{
    char allocator[TS_ID_BYTES_MAX + 1];
    if (n->cfg.role != PKI_ROLE_HUB) {
        snprintf(msg, msg_cap, "enrollment slots are set at a hub, not at a site");
        return TS_ERR_AUTH;
    }
    if (enroll_node_cap(n, cap, allocator) && strcmp(allocator, n->cfg.id) != 0) {
        snprintf(msg, msg_cap, "hub %s allocates this trial's enrollment slots: set them there",
                 allocator);
        return TS_ERR_AUTH;
    }
    return 0;
}

int enroll_node_set_cap(struct node *n, uint64_t cap, const char *user, char *msg,
                        size_t msg_cap, void (*done)(void *ctx, const struct node_write_result *r),
                        void *ctx)
{
    uint64_t held = 0;
    int rc = node_flush(n);
    if (rc == 0)
        rc = allocator_check(n, &held, msg, msg_cap);
    (void)held;
    if (rc != 0)
        return rc;
    struct enroll_site *sites;
    size_t count;
    rc = enroll_node_sites(n, &sites, &count);
    if (rc != 0) {
        snprintf(msg, msg_cap, "cannot read the sites' slots: %s", ts_strerror(rc));
        return rc;
    }
    uint64_t out = enroll_committed(sites, count);
    free(sites);
    if (cap < out) {
        snprintf(msg, msg_cap, "a cap of %" PRIu64 " is below the %" PRIu64 " slots sites hold "
                 "or have used: release slots first", cap, out);
        return TS_ERR_INVALID;
    }
    char cap_s[24], reason[64];
    snprintf(cap_s, sizeof(cap_s), "%" PRIu64, cap);
    snprintf(reason, sizeof(reason), "enrollment cap set to %" PRIu64, cap);
    struct validate_field f[2] = {
        {.field = "cap", .value = cap_s},
        {.field = "allocator", .value = n->cfg.id},
    };
    /* The allocator is written once, with the first cap. */
    bool first = !store_record_exists(n->store, SCHEMA_ENROLLMENT_TYPE, SCHEMA_ENROLLMENT_ID);
    struct node_write w = {.type = SCHEMA_ENROLLMENT_TYPE, .id = SCHEMA_ENROLLMENT_ID,
                           .fields = f, .n = first ? 2 : 1, .reason = reason, .user = user};
    struct node_write_result now;
    rc = node_write(n, &w, done, ctx, &now);
    if (rc != 0)
        snprintf(msg, msg_cap, "%s", now.err.msg);
    return rc;
}

int enroll_node_set_slots(struct node *n, const char *site, uint64_t slots, const char *user,
                          char *msg, size_t msg_cap,
                          void (*done)(void *ctx, const struct node_write_result *r), void *ctx)
{
    uint64_t cap = 0;
    char allocator[TS_ID_BYTES_MAX + 1];
    int rc = node_flush(n);
    if (rc == 0)
        rc = allocator_check(n, &cap, msg, msg_cap);
    if (rc != 0)
        return rc;
    if (!enroll_node_cap(n, &cap, allocator)) {
        snprintf(msg, msg_cap, "set the trial's enrollment cap first (trialsync enrollment cap)");
        return TS_ERR_INVALID;
    }
    if (!schema_id_ok(site) || !store_record_exists(n->store, MEMBER_TYPE, site)) {
        snprintf(msg, msg_cap, "'%.64s' is not a site of this trial", site);
        return TS_ERR_INVALID;
    }
    struct enroll_site *sites;
    size_t count, at = SIZE_MAX;
    rc = enroll_node_sites(n, &sites, &count);
    if (rc != 0) {
        snprintf(msg, msg_cap, "cannot read the sites' slots: %s", ts_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp(sites[i].site, site) == 0)
            at = i;
    }
    uint64_t granted = 0, asked = 0;
    rc = at == SIZE_MAX ? TS_ERR_INVALID
                        : enroll_set_slots(sites, count, at, cap, slots, &granted, &asked, msg,
                                           msg_cap);
    uint64_t old_granted = at != SIZE_MAX ? sites[at].granted : 0;
    uint64_t old_asked = at != SIZE_MAX ? sites[at].release_requested : 0;
    free(sites);
    if (rc != 0)
        return rc;
    char qid[TS_ID_BYTES_MAX + 1], g_s[24], r_s[24];
    quota_id(site, qid);
    snprintf(g_s, sizeof(g_s), "%" PRIu64, granted);
    snprintf(r_s, sizeof(r_s), "%" PRIu64, asked);
    struct validate_field f[2];
    size_t nf = 0;
    if (granted != old_granted)
        f[nf++] = (struct validate_field){.field = "granted", .value = g_s};
    if (asked != old_asked)
        f[nf++] = (struct validate_field){.field = "release_requested", .value = r_s};
    if (nf == 0) {
        snprintf(msg, msg_cap, "site %s already has %" PRIu64 " slots", site, slots);
        return TS_ERR_INVALID;
    }
    struct node_write w = {.type = SCHEMA_QUOTA_TYPE, .id = qid, .fields = f, .n = nf,
                           .user = user};
    struct node_write_result now;
    rc = node_write(n, &w, done, ctx, &now);
    if (rc != 0)
        snprintf(msg, msg_cap, "%s", now.err.msg);
    return rc;
}

json_t *enroll_node_json(struct node *n)
{
    uint64_t cap = 0;
    char allocator[TS_ID_BYTES_MAX + 1];
    bool capped = enroll_node_cap(n, &cap, allocator);
    struct enroll_site *sites = NULL;
    size_t count = 0;
    json_t *list = json_array();
    uint64_t enrolled = 0;
    if (enroll_node_sites(n, &sites, &count) == 0) {
        for (size_t i = 0; i < count; i++) {
            const struct enroll_site *s = &sites[i];
            enrolled += s->taken;
            json_array_append_new(
                list, json_pack("{s:s,s:I,s:I,s:b,s:I,s:I,s:I,s:I}", "site", s->site,
                                "enrolled", (json_int_t)s->taken, "slots",
                                (json_int_t)enroll_slots(s), "under_quota", s->under_quota,
                                "granted", (json_int_t)s->granted, "release_requested",
                                (json_int_t)s->release_requested, "acknowledged",
                                (json_int_t)s->acknowledged, "released",
                                (json_int_t)s->released));
        }
    }
    free(sites);
    return json_pack("{s:o,s:o,s:I,s:o}", "cap", capped ? json_integer((json_int_t)cap)
                                                        : json_null(),
                     "allocator", capped ? json_string(allocator) : json_null(), "enrolled",
                     (json_int_t)enrolled, "sites", list);
}
