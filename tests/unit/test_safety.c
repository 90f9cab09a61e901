/*
 * test_safety.c: the SAE clock (node/safety.c): its time parsing (the
 * deadline rests on it), and the clock itself over a real store: which AE
 * records it tracks, a site's alarms until a hub acknowledges, deadlines,
 * at-risk and late flags, a hub's lateness on receipt, and the rebuild from
 * the store after a restart.  Times are passed in, so nothing sleeps.
 */
#include "../../node/safety.h"
#include "unit.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../proto/codec.h"

#define TRIAL "T1"
#define HOUR_MS (3600ULL * 1000)
/* 2026-11-22T09:30:00Z, the site's awareness time of the SAEs below. */
#define AWARE_MS 1795339800000ULL
#define AWARE_ISO "2026-11-22T09:30:00Z"

/* ---- a node as safety.c sees it: config and a real store ---------------- */

struct fixture {
    struct node node;
    uint64_t seq;                   /* this chain's head */
    uint8_t hash[TS_HASH_BYTES];    /* and its chain hash */
    char origin[TS_ID_BYTES_MAX + 1];
};

static void fixture_open(struct fixture *f, enum pki_role role, const char *id, const char *dir)
{
    struct ts_error err = {0};
    memset(f, 0, sizeof(*f));
    snprintf(f->node.cfg.id, sizeof(f->node.cfg.id), "%s", id);
    snprintf(f->node.cfg.trial, sizeof(f->node.cfg.trial), "%s", TRIAL);
    f->node.cfg.role = role;
    f->node.cfg.sae_alarm_first_s = 3600;
    f->node.cfg.sae_alarm_second_s = 12 * 3600;
    if (store_open(dir, &f->node.store, &err) != 0)
        fprintf(stderr, "store_open %s: %s\n", dir, err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f->node.store);
}

/*
 * Writes one field of an AE record as the next entry of origin's safety
 * chain (f->origin, or the node itself), applied to the store as the node's
 * own write path would, and returns the entry in *e (its strings static to
 * this call's caller until the next call).
 */
static void put(struct fixture *f, const char *origin, const char *id, const char *field,
                const char *value, uint64_t wall_ms, struct entry *e)
{
    static struct field_write w;
    struct ts_error err = {0};
    uint8_t *buf = NULL;
    size_t len = 0;

    memset(e, 0, sizeof(*e));
    memset(&w, 0, sizeof(w));
    snprintf(w.field, sizeof(w.field), "%s", field);
    w.value = (char *)value;
    snprintf(e->origin, sizeof(e->origin), "%s", origin);
    e->lane = LANE_SAFETY;
    e->seq = ++f->seq;
    e->hlc = wall_ms << 16;
    e->wall_ms = wall_ms;
    e->user = (char *)"investigator";
    e->reason = (char *)"";
    snprintf(e->record_type, sizeof(e->record_type), "ae");
    snprintf(e->record_id, sizeof(e->record_id), "%s", id);
    snprintf(e->site, sizeof(e->site), "%.3s", id);
    memcpy(e->prev_hash, f->hash, TS_HASH_BYTES);
    e->writes = &w;
    e->writes_count = 1;
    CU_ASSERT_FATAL(codec_entry_encode(e, &buf, &len, &err) == 0);
    crypto_chain_hash(f->hash, buf, len, f->hash);

    struct batch b;
    const uint8_t *ptrs[1] = {buf};
    size_t lens[1] = {len};
    memset(&b, 0, sizeof(b));
    snprintf(b.trial, sizeof(b.trial), "%s", TRIAL);
    snprintf(b.origin, sizeof(b.origin), "%s", origin);
    b.lane = LANE_SAFETY;
    b.first_seq = e->seq;
    b.entries = ptrs;
    b.entry_lens = lens;
    b.count = 1;
    memcpy(b.chain_hash, f->hash, TS_HASH_BYTES);
    int rc = store_apply(f->node.store, TRIAL, &b, 1, NULL, NULL, false, wall_ms, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "store_apply: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    free(buf);
}

static struct safety_summary summary(struct safety *s, uint64_t now_ms)
{
    struct safety_summary sum;
    safety_summarize(s, now_ms, &sum);
    return sum;
}

/* The one SAE row of safety_json at now_ms (the test fails without exactly one). */
static json_t *only_row(struct safety *s, uint64_t now_ms)
{
    json_t *doc = safety_json(s, now_ms);
    json_t *list = json_object_get(doc, "saes");
    CU_ASSERT_FATAL(json_is_array(list));
    CU_ASSERT_EQUAL_FATAL(json_array_size(list), 1);
    json_t *row = json_incref(json_array_get(list, 0));
    json_decref(doc);
    return row;
}

static void test_safety_parse_time(void)
{
    CU_ASSERT_EQUAL(safety_parse_time("1970-01-01T00:00:00Z"), 0);  /* the epoch itself */
    CU_ASSERT_EQUAL(safety_parse_time("1970-01-01T00:00:01Z"), 1000);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00Z"), 1795339800000ULL);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00.250Z"), 1795339800250ULL);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00.25Z"), 1795339800250ULL);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30Z"), 1795339800000ULL);
    /* An offset: 11:30 at +02:00 is 09:30 UTC. */
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T11:30:00+02:00"), 1795339800000ULL);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T04:30:00-05:00"), 1795339800000ULL);
    /* Not a date-time: no clock can run. */
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22"), 0);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T9:30Z"), 0);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00Zjunk"), 0);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00+0200"), 0);
    CU_ASSERT_EQUAL(safety_parse_time(""), 0);
    CU_ASSERT_EQUAL(safety_parse_time(NULL), 0);
}


/* A serious AE written at a site: alarms at 1 h and 12 h, until a hub acks it. */
static void test_safety_site_alarms_until_acknowledged(void)
{
    struct fixture f;
    struct safety *s = NULL;
    struct entry e;
    uint64_t t0 = AWARE_MS + HOUR_MS;  /* written an hour after awareness */

    fixture_open(&f, PKI_ROLE_SITE, "101", unit_tmpdir("safety-site"));
    CU_ASSERT_FATAL(safety_open(&s, &f.node) == 0);
    CU_ASSERT_EQUAL(summary(s, t0).tracked, 0);

    put(&f, "101", "101-0001-AE-001", "aeterm", "Anaphylaxis", t0, &e);
    safety_local_commit(s, &e, t0);
    CU_ASSERT_EQUAL(summary(s, t0).tracked, 0);  /* not serious (yet) */
    put(&f, "101", "101-0001-AE-001", "sae_aware_dtc", AWARE_ISO, t0, &e);
    safety_local_commit(s, &e, t0);
    put(&f, "101", "101-0001-AE-001", "aeser", "Y", t0, &e);
    safety_local_commit(s, &e, t0);
    uint64_t last_seq = e.seq;

    struct safety_summary sum = summary(s, t0);
    CU_ASSERT_EQUAL(sum.tracked, 1);
    CU_ASSERT_EQUAL(sum.in_flight, 1);
    CU_ASSERT_EQUAL(sum.late, 0);
    CU_ASSERT_EQUAL(sum.at_risk, 0);
    CU_ASSERT_EQUAL(sum.alarms, 0);

    json_t *row = only_row(s, t0);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "id")), "101-0001-AE-001");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "site")), "101");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "aeterm")), "Anaphylaxis");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "aware_time")),
                           "2026-11-22T09:30:00.000Z");
    /* The deadline is awareness plus 24 hours. */
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "deadline")),
                           "2026-11-23T09:30:00.000Z");
    CU_ASSERT(json_is_false(json_object_get(row, "acked")));
    json_decref(row);

    /* One ms short of an hour: no alarm; at the hour, the first. */
    safety_tick(s, t0 + HOUR_MS - 1);
    CU_ASSERT_EQUAL(summary(s, t0 + HOUR_MS - 1).alarms, 0);
    safety_tick(s, t0 + HOUR_MS);
    CU_ASSERT_EQUAL(summary(s, t0 + HOUR_MS).alarms, 1);
    safety_tick(s, t0 + 2 * HOUR_MS);
    CU_ASSERT_EQUAL(summary(s, t0 + 2 * HOUR_MS).alarms, 1);  /* once, not every tick */
    safety_tick(s, t0 + 12 * HOUR_MS);
    CU_ASSERT_EQUAL(summary(s, t0 + 12 * HOUR_MS).alarms, 2);

    /* Within 6 hours of the deadline and still unacknowledged: at risk. */
    uint64_t deadline = AWARE_MS + SAFETY_DEADLINE_MS;
    CU_ASSERT_EQUAL(summary(s, deadline - SAFETY_AT_RISK_MS - 1).at_risk, 0);
    CU_ASSERT_EQUAL(summary(s, deadline - SAFETY_AT_RISK_MS).at_risk, 1);
    CU_ASSERT_EQUAL(summary(s, deadline).late, 0);
    CU_ASSERT_EQUAL(summary(s, deadline + 1).late, 1);

    /* An ack below the SAE's last entry does not cover it; one at it does. */
    safety_acked(s, last_seq - 1, deadline - 2 * HOUR_MS);
    CU_ASSERT_EQUAL(summary(s, deadline - 2 * HOUR_MS).in_flight, 1);
    safety_acked(s, last_seq, deadline - HOUR_MS);
    sum = summary(s, deadline + HOUR_MS);
    CU_ASSERT_EQUAL(sum.in_flight, 0);
    CU_ASSERT_EQUAL(sum.at_risk, 0);
    CU_ASSERT_EQUAL(sum.late, 0);  /* acknowledged before its deadline */
    safety_tick(s, deadline + 2 * HOUR_MS);
    CU_ASSERT_EQUAL(summary(s, deadline + 2 * HOUR_MS).alarms, 2);  /* no more */
    row = only_row(s, deadline);
    CU_ASSERT(json_is_true(json_object_get(row, "acked")));
    json_decref(row);

    /* A new write reopens it: in flight again, its clock from that write. */
    uint64_t t1 = deadline + 3 * HOUR_MS;
    put(&f, "101", "101-0001-AE-001", "aeterm", "Anaphylactic shock", t1, &e);
    safety_local_commit(s, &e, t1);
    CU_ASSERT_EQUAL(summary(s, t1).in_flight, 1);
    CU_ASSERT_EQUAL(summary(s, t1).late, 1);  /* past its deadline, unacknowledged */
    safety_tick(s, t1 + HOUR_MS - 1);
    CU_ASSERT_EQUAL(summary(s, t1).alarms, 2);
    safety_tick(s, t1 + HOUR_MS);
    CU_ASSERT_EQUAL(summary(s, t1).alarms, 3);
    safety_free(s);

    /* After a restart the clock is rebuilt from the store: tracked, and the
     * ack before the new write does not cover it. */
    CU_ASSERT_FATAL(safety_open(&s, &f.node) == 0);
    sum = summary(s, t1);
    CU_ASSERT_EQUAL(sum.tracked, 1);
    CU_ASSERT_EQUAL(sum.in_flight, 1);
    safety_acked(s, e.seq, t1 + 1);
    safety_free(s);
    CU_ASSERT_FATAL(safety_open(&s, &f.node) == 0);
    CU_ASSERT_EQUAL(summary(s, t1 + 2).in_flight, 0);  /* the ack was kept */
    safety_free(s);
    store_close(f.node.store);
}

/* Not serious, not an AE, or another lane's entry at a site: no clock. */
static void test_safety_tracks_only_serious_aes(void)
{
    struct fixture f;
    struct safety *s = NULL;
    struct entry e;

    fixture_open(&f, PKI_ROLE_SITE, "101", unit_tmpdir("safety-only"));
    CU_ASSERT_FATAL(safety_open(&s, &f.node) == 0);
    put(&f, "101", "101-0002-AE-001", "aeser", "N", AWARE_MS, &e);
    safety_local_commit(s, &e, AWARE_MS);
    CU_ASSERT_EQUAL(summary(s, AWARE_MS).tracked, 0);
    put(&f, "101", "101-0003-AE-001", "aeser", "Y", AWARE_MS, &e);
    e.lane = LANE_BULK;  /* as if it had come on the bulk lane */
    safety_local_commit(s, &e, AWARE_MS);
    CU_ASSERT_EQUAL(summary(s, AWARE_MS).tracked, 0);
    e.lane = LANE_SAFETY;
    safety_local_commit(s, &e, AWARE_MS);
    CU_ASSERT_EQUAL(summary(s, AWARE_MS).tracked, 1);
    /* Without sae_aware_dtc there is no deadline, so never late. */
    {
        json_t *row = only_row(s, AWARE_MS);
        CU_ASSERT(json_is_null(json_object_get(row, "deadline")));
        json_decref(row);
    }
    CU_ASSERT_EQUAL(summary(s, AWARE_MS + 10 * SAFETY_DEADLINE_MS).late, 0);
    /* A hub's entries applied at a site are not the site's clock. */
    safety_applied(s, &e, AWARE_MS);
    CU_ASSERT_EQUAL(summary(s, AWARE_MS).tracked, 1);
    safety_free(s);
    store_close(f.node.store);
}

/*
 * The SAE list in pages (GET /v1/saes): positions in order, every SAE once,
 * a site's alone with a site filter, and at a site the time a hub
 * acknowledged each (null until then, never "received: not yet" beside
 * "acknowledged").
 */
static void test_safety_json_paged(void)
{
    struct fixture f;
    struct safety *s = NULL;
    struct entry e;
    char id[32];

    fixture_open(&f, PKI_ROLE_HUB, "hub1", unit_tmpdir("safety-pages"));
    CU_ASSERT_FATAL(safety_open(&s, &f.node) == 0);
    for (int i = 1; i <= 5; i++) {
        snprintf(id, sizeof(id), "%s-0001-AE-%03d", i % 2 ? "102" : "103", i);
        put(&f, "102", id, "aeser", "Y", AWARE_MS, &e);  /* one chain, two sites */
        safety_applied(s, &e, AWARE_MS);
    }
    json_t *whole = safety_json(s, AWARE_MS);
    CU_ASSERT_EQUAL_FATAL(json_array_size(json_object_get(whole, "saes")), 5);
    json_t *joined = json_array();
    size_t from = 0, next = 0, pages = 0;
    do {
        json_t *page = safety_json_page(s, AWARE_MS, "", from, 2, &next);
        CU_ASSERT(json_array_size(json_object_get(page, "saes")) <= 2);
        json_array_extend(joined, json_object_get(page, "saes"));
        json_decref(page);
        CU_ASSERT_FATAL(next == 0 || next > from);
        from = next;
        pages++;
    } while (next != 0);
    CU_ASSERT_EQUAL(pages, 3);
    CU_ASSERT(json_equal(joined, json_object_get(whole, "saes")));
    json_decref(joined);
    json_t *site = safety_json_page(s, AWARE_MS, "103", 0, 100, &next);
    CU_ASSERT_EQUAL(json_array_size(json_object_get(site, "saes")), 2);
    CU_ASSERT_EQUAL(next, 0);
    json_decref(site);
    json_decref(whole);
    safety_free(s);
    store_close(f.node.store);

    /* At a site: acked_time, null until a hub holds the SAE's entries. */
    fixture_open(&f, PKI_ROLE_SITE, "101", unit_tmpdir("safety-pages-site"));
    CU_ASSERT_FATAL(safety_open(&s, &f.node) == 0);
    put(&f, "101", "101-0001-AE-001", "aeser", "Y", AWARE_MS, &e);
    safety_local_commit(s, &e, AWARE_MS);
    json_t *row = only_row(s, AWARE_MS);
    CU_ASSERT(json_is_null(json_object_get(row, "acked_time")));
    CU_ASSERT(json_is_false(json_object_get(row, "acked")));
    json_decref(row);
    safety_acked(s, e.seq, AWARE_MS + 1000);
    row = only_row(s, AWARE_MS + 2000);
    CU_ASSERT(json_is_true(json_object_get(row, "acked")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "acked_time")),
                           "2026-11-22T09:30:01.000Z");
    json_decref(row);
    safety_free(s);
    store_close(f.node.store);
}

/* A hub stamps an SAE when it first arrives and flags it late past its deadline. */
static void test_safety_hub_flags_late_receipt(void)
{
    struct fixture f;
    struct safety *s = NULL;
    struct entry e;
    uint64_t deadline = AWARE_MS + SAFETY_DEADLINE_MS;

    fixture_open(&f, PKI_ROLE_HUB, "hub1", unit_tmpdir("safety-hub"));
    CU_ASSERT_FATAL(safety_open(&s, &f.node) == 0);
    put(&f, "102", "102-0001-AE-001", "sae_aware_dtc", AWARE_ISO, deadline + 1, &e);
    safety_applied(s, &e, deadline + 1);
    CU_ASSERT_EQUAL(summary(s, deadline + 1).tracked, 0);
    put(&f, "102", "102-0001-AE-001", "aeser", "Y", deadline + 1, &e);
    safety_applied(s, &e, deadline + 1);
    struct safety_summary sum = summary(s, deadline + 1);
    CU_ASSERT_EQUAL(sum.tracked, 1);
    CU_ASSERT_EQUAL(sum.in_flight, 0);
    CU_ASSERT_EQUAL(sum.late, 1);
    /* A hub raises no alarms and has nothing at risk. */
    safety_tick(s, deadline + 13 * HOUR_MS);
    CU_ASSERT_EQUAL(summary(s, deadline).alarms, 0);
    CU_ASSERT_EQUAL(summary(s, deadline - HOUR_MS).at_risk, 0);
    json_t *row = only_row(s, deadline + 1);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "site")), "102");
    CU_ASSERT(json_is_true(json_object_get(row, "late")));
    CU_ASSERT(json_is_true(json_object_get(row, "acked")));  /* received */
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(row, "received_time")),
                           "2026-11-23T09:30:00.001Z");
    json_decref(row);

    /* In time: received one ms before the deadline. */
    put(&f, "102", "102-0002-AE-001", "sae_aware_dtc", AWARE_ISO, deadline - 1, &e);
    put(&f, "102", "102-0002-AE-001", "aeser", "Y", deadline - 1, &e);
    safety_applied(s, &e, deadline - 1);
    sum = summary(s, deadline + HOUR_MS);
    CU_ASSERT_EQUAL(sum.tracked, 2);
    CU_ASSERT_EQUAL(sum.late, 1);
    safety_free(s);
    store_close(f.node.store);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_safety_parse_time", test_safety_parse_time},
        {"test_safety_site_alarms_until_acknowledged", test_safety_site_alarms_until_acknowledged},
        {"test_safety_tracks_only_serious_aes", test_safety_tracks_only_serious_aes},
        {"test_safety_hub_flags_late_receipt", test_safety_hub_flags_late_receipt},
        {"test_safety_json_paged", test_safety_json_paged},
        {NULL, NULL},
    };
    return unit_run("safety", tests);
}
