/*
 * safety.c: the SAE clock (see safety.h).
 */
#include <assert.h>
#include "safety.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "merge.h"
#include "schema.h"
#include "trace.h"

struct sae {
    char id[TS_ID_BYTES_MAX + 1];
    char site[TS_ID_BYTES_MAX + 1];
    char aeterm[128];
    uint64_t aware_ms;       /* 0: not given */
    uint64_t first_seq;      /* site: the first own safety entry of this SAE */
    uint64_t last_seq;       /* site: its latest own safety entry */
    uint64_t written_ms;     /* site: when its oldest unacknowledged write was committed */
    uint64_t received_ms;    /* hub: when it first arrived here */
    uint64_t acked_ms;       /* site: when a hub acknowledged it */
    uint64_t backup_ms;      /* reported by a backup channel then (sae_backup_dtc); 0: not */
    char backup_by[128];
    uint64_t handled_ms;     /* the CRO's safety reviewer marked it handled (sae_handled_dtc) */
    int alarms;              /* site: 0, 1 or 2 alarms raised */
};

struct safety {
    struct node *node;
    bool is_site;
    struct sae *saes;
    size_t count, cap;
    uint64_t acked_seq;      /* site: a hub holds the safety chain up to here */
    uint64_t alarms_raised;
};

static bool parse_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

uint64_t safety_parse_time(const char *iso)
{
    struct tm tm;
    int y, mo, d, h, mi, sec = 0, ms = 0;
    memset(&tm, 0, sizeof(tm));
    if (iso == NULL || strlen(iso) < 16 || iso[4] != '-' || iso[7] != '-' || iso[10] != 'T' ||
        iso[13] != ':')
        return 0;
    if (!parse_digits(iso, 4, &y) || !parse_digits(iso + 5, 2, &mo) ||
        !parse_digits(iso + 8, 2, &d) || !parse_digits(iso + 11, 2, &h) ||
        !parse_digits(iso + 14, 2, &mi))
        return 0;
    const char *p = iso + 16;
    if (*p == ':') {
        if (!parse_digits(p + 1, 2, &sec))
            return 0;
        p += 3;
        if (*p == '.') {
            p++;
            int digits = 0;
            while (*p >= '0' && *p <= '9') {
                if (digits < 3)
                    ms = ms * 10 + (*p - '0');
                digits++;
                p++;
            }
            for (; digits < 3; digits++)
                ms *= 10;
        }
    }
    long offset_s = 0;
    if (*p == '+' || *p == '-') {
        int oh, om;
        if (!parse_digits(p + 1, 2, &oh) || p[3] != ':' || !parse_digits(p + 4, 2, &om))
            return 0;
        offset_s = (long)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else if (*p == 'Z') {
        p++;
    }
    if (*p != '\0')
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || (long)t < offset_s)
        return 0;
    return ((uint64_t)(t - offset_s)) * 1000 + (uint64_t)ms;
}

/* Cuts a NUL-terminated UTF-8 string so it does not end inside a character. */
static void utf8_trim(char *buf)
{
    size_t n = strlen(buf);
    size_t i = n;
    while (i > 0 && ((unsigned char)buf[i - 1] & 0xC0) == 0x80)
        i--;  /* continuation bytes of the last character */
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)buf[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (i - 1) < need)
        buf[i - 1] = '\0';
}

static struct sae *sae_find(struct safety *s, const char *id)
{
    for (size_t i = 0; i < s->count; i++)
        if (strcmp(s->saes[i].id, id) == 0)
            return &s->saes[i];
    return NULL;
}

static struct sae *sae_get(struct safety *s, const char *id)
{
    struct sae *a = sae_find(s, id);
    if (a != NULL)
        return a;
    if (s->count == SAFETY_SAES_MAX || strlen(id) > TS_ID_BYTES_MAX)
        return NULL;
    if (s->count == s->cap) {
        size_t cap = s->cap == 0 ? 16 : s->cap * 2;
        struct sae *n = realloc(s->saes, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        s->saes = n;
        s->cap = cap;
    }
    a = &s->saes[s->count++];
    memset(a, 0, sizeof(*a));
    memcpy(a->id, id, strlen(id) + 1);
    return a;
}

/* The displayed value of a field of an AE record, copied into buf ("" when none). */
static const char *ae_field(struct safety *s, const char *id, const char *field, char *buf,
                            size_t cap)
{
    struct field_state st;
    buf[0] = '\0';
    memset(&st, 0, sizeof(st));
    if (store_field_get(s->node->store, "ae", id, field, &st) == 0) {
        int i = merge_display("ae", field, &st);
        if (i >= 0)
            snprintf(buf, cap, "%s", st.live[i].value);
    }
    field_state_release(&st);
    return buf;
}

/* Brings a's descriptive fields up to date from the store; false if not serious. */
static bool sae_refresh(struct safety *s, struct sae *a)
{
    char buf[TS_VALUE_BYTES_MAX + 1];
    if (!schema_ae_serious(ae_field(s, a->id, "aeser", buf, sizeof(buf))))
        return false;
    ae_field(s, a->id, "aeterm", a->aeterm, sizeof(a->aeterm));
    utf8_trim(a->aeterm);  /* cut to fit, never inside a character */
    a->aware_ms = safety_parse_time(ae_field(s, a->id, "sae_aware_dtc", buf, sizeof(buf)));
    a->backup_ms = safety_parse_time(ae_field(s, a->id, "sae_backup_dtc", buf, sizeof(buf)));
    ae_field(s, a->id, "sae_backup_by", a->backup_by, sizeof(a->backup_by));
    utf8_trim(a->backup_by);
    a->handled_ms = safety_parse_time(ae_field(s, a->id, "sae_handled_dtc", buf, sizeof(buf)));
    char site[TS_ID_BYTES_MAX + 1];
    if (!schema_site_of_key(a->id, site))
        site[0] = '\0';
    snprintf(a->site, sizeof(a->site), "%s", site);
    return true;
}

static bool is_serious_ae(struct safety *s, const struct entry *e)
{
    if (strcmp(e->record_type, "ae") != 0)
        return false;
    char buf[8];
    return schema_ae_serious(ae_field(s, e->record_id, "aeser", buf, sizeof(buf)));
}

void safety_local_commit(struct safety *s, const struct entry *e, uint64_t now_ms)
{
    if (!s->is_site) {
        /* A hub's own write to an SAE it tracks (marked handled): refreshed. */
        struct sae *h = strcmp(e->record_type, "ae") == 0 ? sae_find(s, e->record_id) : NULL;
        if (h != NULL)
            sae_refresh(s, h);
        return;
    }
    if (e->lane != LANE_SAFETY || !is_serious_ae(s, e))
        return;
    struct sae *a = sae_get(s, e->record_id);
    if (a == NULL)
        return;
    uint64_t written = e->wall_ms != 0 ? e->wall_ms : now_ms;
    if (a->first_seq == 0 || e->seq < a->first_seq)
        a->first_seq = e->seq;
    if (e->seq > a->last_seq) {
        a->last_seq = e->seq;
        /* A write after the SAE was acknowledged is in flight again; its
         * clock (and its alarms) start from this write. */
        if (a->acked_ms != 0 || a->written_ms == 0) {
            a->acked_ms = 0;
            a->written_ms = written;
            a->alarms = 0;
        }
    }
    sae_refresh(s, a);
}

void safety_applied(struct safety *s, const struct entry *e, uint64_t now_ms)
{
    if (strcmp(e->record_type, "ae") != 0)
        return;
    if (s->is_site) {
        /* The CRO marking one of this site's SAEs handled. */
        struct sae *h = sae_find(s, e->record_id);
        if (h != NULL)
            sae_refresh(s, h);
        return;
    }
    if (!is_serious_ae(s, e))
        return;
    struct sae *a = sae_get(s, e->record_id);
    if (a == NULL)
        return;
    bool first = a->received_ms == 0;
    if (first)
        a->received_ms = now_ms;
    sae_refresh(s, a);
    if (first) {
        bool late = a->aware_ms != 0 && a->received_ms > a->aware_ms + SAFETY_DEADLINE_MS;
        char deadline[40] = "unknown (no sae_aware_dtc)";
        if (a->aware_ms != 0)
            api_format_time(a->aware_ms + SAFETY_DEADLINE_MS, deadline, sizeof(deadline));
        trace(late ? TRACE_WARN : TRACE_INFO, "SAE %s from site %s received%s; deadline %s",
              a->id, a->site, late ? " LATE" : "", deadline);
    }
}

void safety_acked(struct safety *s, uint64_t seq, uint64_t now_ms)
{
    if (!s->is_site || seq <= s->acked_seq)
        return;
    s->acked_seq = seq;
    char v[24];
    int n = snprintf(v, sizeof(v), "%llu", (unsigned long long)seq);
    store_meta_put(s->node->store, "sae_acked_seq", v, (size_t)n, false, NULL);
    for (size_t i = 0; i < s->count; i++) {
        struct sae *a = &s->saes[i];
        if (a->acked_ms == 0 && a->last_seq != 0 && a->last_seq <= seq) {
            a->acked_ms = now_ms;
            trace(TRACE_INFO, "SAE %s acknowledged by a hub", a->id);
        }
    }
}

void safety_tick(struct safety *s, uint64_t now_ms)
{
    const struct config *cfg = &s->node->cfg;
    if (!s->is_site)
        return;
    for (size_t i = 0; i < s->count; i++) {
        struct sae *a = &s->saes[i];
        /* Reported by phone or fax: the staff have done what the alarm asks. */
        if (a->acked_ms != 0 || a->backup_ms != 0 || a->written_ms == 0 ||
            now_ms < a->written_ms)
            continue;
        uint64_t age_ms = now_ms - a->written_ms;
        if (a->alarms == 0 && age_ms >= (uint64_t)cfg->sae_alarm_first_s * 1000) {
            a->alarms = 1;
            s->alarms_raised++;
            trace(TRACE_WARN,
                  "ALARM: SAE %s not acknowledged by any hub after %u s: report it to the "
                  "CRO by the backup channel (phone or fax)",
                  a->id, cfg->sae_alarm_first_s);
        }
        if (a->alarms == 1 && age_ms >= (uint64_t)cfg->sae_alarm_second_s * 1000) {
            a->alarms = 2;
            s->alarms_raised++;
            trace(TRACE_ERROR,
                  "ALARM: SAE %s still not acknowledged by any hub after %u s: report it to "
                  "the CRO by the backup channel (phone or fax) now",
                  a->id, cfg->sae_alarm_second_s);
        }
    }
}

/* True when a backup-channel report reached the CRO within the deadline. */
static bool sae_backup_in_time(const struct sae *a)
{
    return a->backup_ms != 0 && a->aware_ms != 0 &&
           a->backup_ms <= a->aware_ms + SAFETY_DEADLINE_MS;
}

/* Late: the CRO learned of it after the deadline, by replication and by no
 * backup channel in time.  Stays true in the SAE's history once handled. */
static bool sae_late(const struct safety *s, const struct sae *a, uint64_t now_ms)
{
    if (a->aware_ms == 0 || sae_backup_in_time(a))
        return false;
    uint64_t deadline = a->aware_ms + SAFETY_DEADLINE_MS;
    if (s->is_site)
        return a->acked_ms == 0 ? now_ms > deadline : a->acked_ms > deadline;
    return a->received_ms > deadline;
}

static bool sae_at_risk(const struct safety *s, const struct sae *a, uint64_t now_ms)
{
    if (!s->is_site || a->acked_ms != 0 || a->aware_ms == 0 || a->backup_ms != 0)
        return false;
    uint64_t deadline = a->aware_ms + SAFETY_DEADLINE_MS;
    return now_ms + SAFETY_AT_RISK_MS >= deadline && now_ms <= deadline;
}

void safety_summarize(struct safety *s, uint64_t now_ms, struct safety_summary *out)
{
    memset(out, 0, sizeof(*out));
    out->tracked = s->count;
    for (size_t i = 0; i < s->count; i++) {
        const struct sae *a = &s->saes[i];
        if (s->is_site && a->acked_ms == 0)
            out->in_flight++;
        /* Handled by the CRO's safety reviewer: the tiles, metrics and alerts
         * clear; the SAE's own row keeps its lateness. */
        if (a->handled_ms != 0)
            continue;
        if (sae_late(s, a, now_ms))
            out->late++;
        if (sae_at_risk(s, a, now_ms))
            out->at_risk++;
    }
    out->alarms = s->alarms_raised;
}

static json_t *time_or_null(uint64_t ms)
{
    char buf[40];
    if (ms == 0)
        return json_null();
    api_format_time(ms, buf, sizeof(buf));
    return json_string(buf);
}

/* One SAE's row of safety_json. */
static json_t *sae_row(struct safety *s, const struct sae *a, uint64_t now_ms)
{
    json_t *row = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:b,s:b,s:b,s:i}", "id", a->id, "site",
                  a->site, "aeterm", a->aeterm, "aware_time", time_or_null(a->aware_ms),
                  "received_time", time_or_null(a->received_ms), "written_time",
                  time_or_null(a->written_ms), "deadline",
                  time_or_null(a->aware_ms != 0 ? a->aware_ms + SAFETY_DEADLINE_MS : 0),
                  "late", sae_late(s, a, now_ms), "at_risk", sae_at_risk(s, a, now_ms),
                  "acked", s->is_site ? a->acked_ms != 0 : a->received_ms != 0, "alarms",
                  a->alarms);
    if (row != NULL) {
        json_object_set_new(row, "backup_time", time_or_null(a->backup_ms));
        json_object_set_new(row, "backup_by", json_string(a->backup_by));
        json_object_set_new(row, "backup_in_time", json_boolean(sae_backup_in_time(a)));
        json_object_set_new(row, "handled_time", time_or_null(a->handled_ms));
        json_object_set_new(row, "handled", json_boolean(a->handled_ms != 0));
        /* At a site, when a hub acknowledged it: the hub's receipt as this
         * node knows it (a site never sees the hub's own stamp). */
        if (s->is_site)
            json_object_set_new(row, "acked_time", time_or_null(a->acked_ms));
    }
    /* A row that cannot be built still names the SAE: it must not vanish. */
    if (row == NULL)
        row = json_pack("{s:s,s:s}", "id", a->id, "site", a->site);
    return row;
}

json_t *safety_json(struct safety *s, uint64_t now_ms)
{
    size_t next = 0;
    return safety_json_page(s, now_ms, "", 0, SAFETY_SAES_MAX, &next);
}

json_t *safety_json_page(struct safety *s, uint64_t now_ms, const char *site, size_t from,
                         size_t limit, size_t *next)
{
    assert(limit > 0);
    json_t *list = json_array();
    size_t i = from;
    *next = 0;
    /* SAEs are only ever appended: a position stays the same SAE's. */
    for (size_t visited = 0; i < s->count && visited < limit; i++, visited++) {
        const struct sae *a = &s->saes[i];
        if (site[0] != '\0' && strcmp(a->site, site) != 0)
            continue;
        json_array_append_new(list, sae_row(s, a, now_ms));
    }
    if (i < s->count)
        *next = i;
    return json_pack("{s:o}", "saes", list);
}

/* Rebuild: every AE record whose aeser is Y, with its times from the oplog. */
struct rebuild {
    struct safety *s;
};

static int history_cb(void *ctx, const struct entry *e, uint64_t stored_ms)
{
    struct sae *a = ctx;
    if (e->lane != LANE_SAFETY)
        return 0;
    if (a->received_ms == 0 || stored_ms < a->received_ms)
        a->received_ms = stored_ms;
    return 0;
}

static int own_history_cb(void *ctx, const struct entry *e, uint64_t stored_ms)
{
    struct sae *a = ((struct sae **)ctx)[0];
    const char *self = (const char *)((void **)ctx)[1];
    (void)stored_ms;
    if (e->lane != LANE_SAFETY || strcmp(e->origin, self) != 0)
        return 0;
    if (a->first_seq == 0 || e->seq < a->first_seq) {
        a->first_seq = e->seq;
        a->written_ms = e->wall_ms;
    }
    if (e->seq > a->last_seq)
        a->last_seq = e->seq;
    return 0;
}

static int record_cb(void *ctx, const char *type, const char *id)
{
    struct safety *s = ctx;
    (void)type;
    char buf[8];
    if (!schema_ae_serious(ae_field(s, id, "aeser", buf, sizeof(buf))))
        return 0;
    struct sae *a = sae_get(s, id);
    if (a == NULL)
        return 0;
    sae_refresh(s, a);
    if (s->is_site) {
        void *pair[2] = {a, s->node->cfg.id};
        store_record_history(s->node->store, "ae", id, own_history_cb, pair);
        if (a->last_seq != 0 && a->last_seq <= s->acked_seq)
            a->acked_ms = a->written_ms;  /* acknowledged before the restart */
        /* Alarms already raised before a restart are raised again if due. */
    } else {
        store_record_history(s->node->store, "ae", id, history_cb, a);
    }
    return 0;
}

int safety_open(struct safety **out, struct node *n)
{
    struct safety *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TS_ERR_NOMEM;
    s->node = n;
    s->is_site = n->cfg.role == PKI_ROLE_SITE;
    char *v = NULL;
    size_t len = 0;
    if (store_meta_get(n->store, "sae_acked_seq", &v, &len) == 0) {
        char num[24];
        size_t k = len < sizeof(num) - 1 ? len : sizeof(num) - 1;
        memcpy(num, v, k);
        num[k] = '\0';
        s->acked_seq = strtoull(num, NULL, 10);
        free(v);
    }
    store_records(n->store, "ae", record_cb, s);
    *out = s;
    return 0;
}

void safety_free(struct safety *s)
{
    if (s == NULL)
        return;
    free(s->saes);
    free(s);
}
