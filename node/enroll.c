/*
 * enroll.c: enrollment slots under a trial-wide cap (see enroll.h).  Pure:
 * no I/O, no globals that change, no allocation.
 *
 * Why the verdicts agree on every node: each rule on a site's entry reads
 * only the site's own writes before it (slot, acknowledged, released: fields
 * only the site writes, on its bulk lane, which every node applies in chain
 * order) and the entry itself.  The two rules that read another origin's
 * writes read totals that only grow (the allocator's granted, a subject's
 * slot), so they hold an entry back until what it rests on is held, never
 * refuse it on one node and admit it on another.
 */
#include "enroll.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../proto/errors.h"
#include "schema.h"

bool enroll_count_parse(const char *s, uint64_t *out)
{
    if (s == NULL || s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > SCHEMA_COUNT_MAX)
            return false;
    }
    *out = v;
    return true;
}

bool enroll_status_takes_slot(const char *status)
{
    const struct schema_field *f = schema_field("subject", "status");
    int rank = schema_term_rank(f, status);
    int enrolled = schema_term_rank(f, "enrolled");
    assert(enrolled > 0);
    return rank >= enrolled && strcmp(status, "screen_failed") != 0;
}

/* The value e writes to field, or NULL. */
static const char *written(const struct entry *e, const char *field)
{
    for (size_t i = 0; i < e->writes_count; i++) {
        if (strcmp(e->writes[i].field, field) == 0)
            return e->writes[i].value;
    }
    return NULL;
}

bool enroll_entry_concerns(const struct entry *e)
{
    if (strcmp(e->record_type, SCHEMA_ENROLLMENT_TYPE) == 0 ||
        strcmp(e->record_type, SCHEMA_QUOTA_TYPE) == 0)
        return true;
    return strcmp(e->record_type, "subject") == 0 &&
           (written(e, "status") != NULL || written(e, "slot") != NULL);
}

uint64_t enroll_slots(const struct enroll_site *s)
{
    return s->acknowledged > s->released ? s->acknowledged - s->released : 0;
}

static int refuse(struct enroll_refusal *why, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct enroll_refusal *why, int code, const char *fmt, ...)
{
    snprintf(why->rule, sizeof(why->rule), "%s", code == TS_ERR_AGAIN ? "pending" : "enrollment");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
    va_end(ap);
    return code;
}

/* A count the entry writes (its form passed check_value), or dflt. */
static uint64_t count_or(const struct entry *e, const char *field, uint64_t dflt)
{
    uint64_t v;
    const char *s = written(e, field);
    if (s == NULL || !enroll_count_parse(s, &v))
        return dflt;
    return v;
}

static int admit_enrollment(const struct entry *e, const struct enroll_view *v,
                            struct enroll_refusal *why)
{
    const char *allocator = written(e, "allocator");
    if (v->allocator_held) {
        if (strcmp(e->origin, v->allocator) != 0)
            return refuse(why, TS_ERR_AUTH, "%s changed the enrollment cap: only the allocating "
                          "hub %s does", e->origin, v->allocator);
        return 0;
    }
    if (allocator == NULL || strcmp(allocator, e->origin) != 0)
        return refuse(why, TS_ERR_AUTH, "the first enrollment cap names its writer %s as the "
                      "allocator", e->origin);
    return 0;
}

static int admit_quota(const struct entry *e, const struct enroll_view *v,
                       struct enroll_refusal *why)
{
    const struct enroll_site *s = &v->site;
    bool hub_fields = written(e, "granted") != NULL || written(e, "release_requested") != NULL;
    bool site_fields = written(e, "acknowledged") != NULL || written(e, "released") != NULL;
    if (hub_fields) {
        if (!v->allocator_held)
            return refuse(why, TS_ERR_AGAIN, "slots of site %s granted before the enrollment "
                          "cap is held here", s->site);
        if (strcmp(e->origin, v->allocator) != 0)
            return refuse(why, TS_ERR_AUTH, "%s granted slots of site %s: only the allocating "
                          "hub %s does", e->origin, s->site, v->allocator);
    }
    if (!site_fields)
        return 0;
    if (e->lane != LANE_BULK)
        return refuse(why, TS_ERR_AUTH, "site %s wrote its slots off the bulk lane", s->site);
    uint64_t ack = count_or(e, "acknowledged", 0);
    if (ack < s->acknowledged)
        ack = s->acknowledged;
    uint64_t rel = count_or(e, "released", 0);
    if (rel < s->released)
        rel = s->released;
    if (written(e, "acknowledged") != NULL && ack > s->granted)
        return refuse(why, v->granted_complete ? TS_ERR_AUTH : TS_ERR_AGAIN,
                      "site %s acknowledged %" PRIu64 " slots; %" PRIu64 " granted %s", s->site,
                      ack, s->granted, v->granted_complete ? "in all" : "held here");
    if (written(e, "released") != NULL && (rel > ack || ack - rel < s->taken))
        return refuse(why, TS_ERR_AUTH, "site %s released %" PRIu64 " of %" PRIu64 " slots, but "
                      "its subjects hold %" PRIu64 ": only unused slots are released", s->site,
                      rel, ack, s->taken);
    return 0;
}

static int admit_subject(const struct entry *e, unsigned origin_role, const struct enroll_view *v,
                         struct enroll_refusal *why)
{
    const struct enroll_site *s = &v->site;
    const char *status = written(e, "status");
    const char *slot = written(e, "slot");
    bool takes = status != NULL && enroll_status_takes_slot(status);
    if (slot != NULL) {
        if (e->lane != LANE_BULK)
            return refuse(why, TS_ERR_AUTH, "site %s slotted %s off the bulk lane", s->site,
                          e->record_id);
        if (v->subject_slotted)
            return refuse(why, TS_ERR_AUTH, "subject %s holds a slot already: a subject takes "
                          "one slot, once", e->record_id);
        if (!takes)
            return refuse(why, TS_ERR_AUTH, "subject %s takes a slot without being enrolled",
                          e->record_id);
        if (s->under_quota && s->taken >= enroll_slots(s))
            return refuse(why, TS_ERR_AUTH, "site %s has used %" PRIu64 " of %" PRIu64
                          " slots: subject %s stays in screening", s->site, s->taken,
                          enroll_slots(s), e->record_id);
        return 0;
    }
    if (!takes || v->subject_slotted)
        return 0;
    if (origin_role == SCHEMA_ROLE_SITE)
        return refuse(why, TS_ERR_AUTH, "site %s enrolls subject %s without taking a slot",
                      s->site, e->record_id);
    /* A hub's status write (a data load, a correction) on a site not under
     * the cap takes nothing: there is no slot to take yet. */
    if (!s->under_quota)
        return 0;
    return refuse(why, TS_ERR_AGAIN, "subject %s is %s, but its site's enrollment (which takes "
                  "the slot) is not held here yet", e->record_id, status);
}

int enroll_admit(const struct entry *e, unsigned origin_role, const struct enroll_view *v,
                 struct enroll_refusal *why)
{
    assert(e != NULL);
    assert(v != NULL);
    assert(why != NULL);
    memset(why, 0, sizeof(*why));
    if (strcmp(e->record_type, SCHEMA_ENROLLMENT_TYPE) == 0)
        return admit_enrollment(e, v, why);
    if (strcmp(e->record_type, SCHEMA_QUOTA_TYPE) == 0)
        return admit_quota(e, v, why);
    if (strcmp(e->record_type, "subject") == 0)
        return admit_subject(e, origin_role, v, why);
    return 0;
}

void enroll_site_note(struct enroll_site *s, const struct entry *e, bool subject_was_slotted)
{
    if (strcmp(e->origin, s->site) != 0 || e->lane != LANE_BULK)
        return;
    if (strcmp(e->record_type, SCHEMA_QUOTA_TYPE) == 0) {
        uint64_t ack = count_or(e, "acknowledged", 0);
        uint64_t rel = count_or(e, "released", 0);
        if (written(e, "acknowledged") != NULL)
            s->under_quota = true;
        if (ack > s->acknowledged)
            s->acknowledged = ack;
        if (rel > s->released)
            s->released = rel;
        return;
    }
    if (strcmp(e->record_type, "subject") == 0 && written(e, "slot") != NULL &&
        !subject_was_slotted)
        s->taken++;
}

static uint64_t out_of_hand(const struct enroll_site *s)
{
    uint64_t held = s->granted > s->released ? s->granted - s->released : 0;
    return held > s->taken ? held : s->taken;
}

uint64_t enroll_committed(const struct enroll_site *sites, size_t count)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += out_of_hand(&sites[i]);
    return sum;
}

int enroll_set_slots(const struct enroll_site *sites, size_t count, size_t at, uint64_t cap,
                     uint64_t slots, uint64_t *granted, uint64_t *release_requested,
                     char *msg, size_t msg_cap)
{
    assert(at < count);
    const struct enroll_site *s = &sites[at];
    uint64_t asked = s->release_requested > s->released ? s->release_requested : s->released;
    uint64_t target = s->granted > asked ? s->granted - asked : 0;
    *granted = s->granted;
    *release_requested = s->release_requested;
    if (slots == target)
        return 0;
    if (slots < target) {
        *release_requested = s->granted - slots;
        return 0;
    }
    struct enroll_site after = *s;
    after.granted = asked + slots;
    uint64_t others = enroll_committed(sites, count) - out_of_hand(s);
    uint64_t total = others + out_of_hand(&after);
    if (total > cap) {
        snprintf(msg, msg_cap, "site %s: %" PRIu64 " slots would put %" PRIu64 " slots out "
                 "against a cap of %" PRIu64 " (slots a site was asked to release count until "
                 "its node has released them)", s->site, slots, total, cap);
        return TS_ERR_INVALID;
    }
    *granted = after.granted;
    return 0;
}

bool enroll_site_reconcile(const struct enroll_site *s, bool cap_held, uint64_t *acknowledged,
                           uint64_t *released)
{
    uint64_t ack = s->granted > s->acknowledged ? s->granted : s->acknowledged;
    uint64_t rel = s->released;
    if (s->release_requested > rel) {
        /* Only unused slots go back: never below what subjects hold. */
        uint64_t free_slots = ack > rel + s->taken ? ack - rel - s->taken : 0;
        uint64_t asked = s->release_requested - rel;
        rel += asked < free_slots ? asked : free_slots;
    }
    *acknowledged = ack;
    *released = rel;
    /* A site that holds the cap comes under it at once, with no slots
     * until some are granted: from then on its chain says it is capped. */
    return ack != s->acknowledged || rel != s->released || (!s->under_quota && cap_held);
}
