/*
 * test_merge.c: field merge policies, out-of-order supersedes, idempotence,
 * the canonical encoding and its strict decoder, and the convergence
 * property: any order of any number of copies of the same writes gives
 * byte-identical field states (randomised; the seed is printed).
 */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../node/hlc.h"
#include "../../node/merge.h"

/* ---- helpers ----------------------------------------------------------- */

static struct entry_ref ref_of(const char *origin, uint8_t lane, uint64_t seq)
{
    struct entry_ref r;
    memset(&r, 0, sizeof(r));
    snprintf(r.origin, sizeof(r.origin), "%s", origin);
    r.lane = lane;
    r.seq = seq;
    return r;
}

static struct merge_write write_of(struct entry_ref ref, uint64_t hlc, const char *value,
                                   const struct entry_ref *sup, size_t sup_count)
{
    struct merge_write w = {
        .ref = ref, .hlc = hlc, .round = 0, .value = value,
        .supersedes = sup, .supersedes_count = sup_count,
    };
    return w;
}

static int apply(struct field_state *s, const char *origin, uint64_t seq, uint64_t hlc,
                 const char *value, const struct entry_ref *sup, size_t sup_count)
{
    struct merge_write w = write_of(ref_of(origin, LANE_BULK, seq), hlc, value, sup, sup_count);
    return merge_field_apply(s, &w);
}

static const char *shown(const char *type, const char *field, const struct field_state *s)
{
    int i = merge_display(type, field, s);
    return i < 0 ? NULL : s->live[i].value;
}

static bool ref_eq(const struct entry_ref *a, const struct entry_ref *b)
{
    return strcmp(a->origin, b->origin) == 0 && a->lane == b->lane && a->seq == b->seq;
}

static bool has_dead(const struct field_state *s, const struct entry_ref *r)
{
    for (size_t i = 0; i < s->dead_count; i++) {
        if (ref_eq(&s->dead[i], r))
            return true;
    }
    return false;
}

static bool has_live(const struct field_state *s, const struct entry_ref *r)
{
    for (size_t i = 0; i < s->live_count; i++) {
        if (ref_eq(&s->live[i].ref, r))
            return true;
    }
    return false;
}

/* Encodes s; the caller frees. */
static uint8_t *encode(const struct field_state *s, size_t *len)
{
    uint8_t *buf = NULL;
    CU_ASSERT_EQUAL_FATAL(merge_field_encode(s, &buf, len), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    return buf;
}

static bool same_encoding(const struct field_state *a, const struct field_state *b)
{
    size_t la, lb;
    uint8_t *ba = encode(a, &la);
    uint8_t *bb = encode(b, &lb);
    bool same = la == lb && memcmp(ba, bb, la) == 0;
    free(ba);
    free(bb);
    return same;
}

/* ---- policies ---------------------------------------------------------- */

static void test_merge_policy_of_fields(void)
{
    CU_ASSERT_EQUAL(merge_policy_of("subject", "site"), MERGE_POLICY_WRITE_ONCE);
    CU_ASSERT_EQUAL(merge_policy_of("query", "target"), MERGE_POLICY_WRITE_ONCE);
    static const char *worst[] = { "aesev", "aetoxgr", "aeser", "aesdth", "aeslife",
                                   "aeshosp", "aesdisab", "aescong", "aesmie" };
    for (size_t i = 0; i < sizeof(worst) / sizeof(worst[0]); i++)
        CU_ASSERT_EQUAL(merge_policy_of("ae", worst[i]), MERGE_POLICY_WORST);
    CU_ASSERT_EQUAL(merge_policy_of("subject", "status"), MERGE_POLICY_RANK);
    CU_ASSERT_EQUAL(merge_policy_of("visit", "status"), MERGE_POLICY_RANK);
    CU_ASSERT_EQUAL(merge_policy_of("ae", "status"), MERGE_POLICY_RANK);
    CU_ASSERT_EQUAL(merge_policy_of("query", "state"), MERGE_POLICY_QUERY_STATE);
    CU_ASSERT_EQUAL(merge_policy_of("query", "messages"), MERGE_POLICY_APPEND);
    CU_ASSERT_EQUAL(merge_policy_of("subject", "sex"), MERGE_POLICY_LATEST);
    CU_ASSERT_EQUAL(merge_policy_of("ae", "aeterm"), MERGE_POLICY_LATEST);
    CU_ASSERT_EQUAL(merge_policy_of("query", "round"), MERGE_POLICY_ROUND);
    /* The same field name under another type follows that type. */
    CU_ASSERT_EQUAL(merge_policy_of("visit", "site"), MERGE_POLICY_LATEST);
    CU_ASSERT_EQUAL(merge_policy_of("subject", "aesev"), MERGE_POLICY_LATEST);
}

/*
 * Each status field's values from lowest to highest rank (DOMAIN.md): the
 * path first, then the terminal states, among concurrent terminal states
 * died > withdrawn > lost > completed.  Only the order is the contract; the
 * numbers are merge.c's business.
 */
struct rank_order {
    const char *type;
    const char *field;
    const char *values[9];  /* NULL-terminated, lowest rank first */
};

static const struct rank_order rank_orders[] = {
    { "subject", "status", { "screening", "enrolled", "randomized", "screen_failed",
                             "completed", "lost_to_followup", "withdrawn", "died", NULL } },
    { "visit", "status", { "scheduled", "started", "completed", "skipped", "signed", NULL } },
    { "ae", "status", { "ongoing", "resolved", NULL } },
    { "query", "state", { "open", "answered", "closed", "cancelled", NULL } },
};

static void test_merge_rank_values(void)
{
    for (size_t t = 0; t < sizeof(rank_orders) / sizeof(rank_orders[0]); t++) {
        const struct rank_order *o = &rank_orders[t];
        int prev = -1;
        for (size_t i = 0; o->values[i] != NULL; i++) {
            int rank = merge_rank(o->type, o->field, o->values[i]);
            if (rank <= prev)
                fprintf(stderr, "\n%s.%s: '%s' ranks %d, not above '%s' (%d)\n", o->type,
                        o->field, o->values[i], rank, i > 0 ? o->values[i - 1] : "", prev);
            /* Known (not -1) and above every value before it. */
            CU_ASSERT(rank >= 0);
            CU_ASSERT(rank > prev);
            prev = rank;
        }
    }
    /* Not a status of that type, not a status field, or nothing at all. */
    CU_ASSERT_EQUAL(merge_rank("visit", "status", "died"), -1);
    CU_ASSERT_EQUAL(merge_rank("subject", "sex", "M"), -1);
    CU_ASSERT_EQUAL(merge_rank("subject", "status", "Died"), -1);
    CU_ASSERT_EQUAL(merge_rank("subject", "status", NULL), -1);
}

static void test_merge_latest_display_and_conflict(void)
{
    struct field_state s = { 0 };

    CU_ASSERT_EQUAL(merge_display("subject", "sex", &s), -1);
    CU_ASSERT_FALSE(merge_conflict("subject", "sex", &s));
    CU_ASSERT_EQUAL(apply(&s, "site-101", 1, 200, "F", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "sex", &s), "F");
    CU_ASSERT_FALSE(merge_conflict("subject", "sex", &s));

    /* A concurrent write with an older hlc: kept, flagged, not shown. */
    CU_ASSERT_EQUAL(apply(&s, "hub", 1, 100, "M", NULL, 0), 1);
    CU_ASSERT_EQUAL(s.live_count, 2);
    CU_ASSERT_STRING_EQUAL(shown("subject", "sex", &s), "F");
    CU_ASSERT_TRUE(merge_conflict("subject", "sex", &s));

    /* Equal hlc: the origin breaks the tie ("site-101" > "hub"). */
    CU_ASSERT_EQUAL(apply(&s, "hub", 2, 200, "U", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "sex", &s), "F");

    /* A write that saw all three resolves the conflict. */
    struct entry_ref sup[3] = { ref_of("site-101", LANE_BULK, 1), ref_of("hub", LANE_BULK, 1),
                                ref_of("hub", LANE_BULK, 2) };
    CU_ASSERT_EQUAL(apply(&s, "hub", 3, 50, "M", sup, 3), 1);
    CU_ASSERT_EQUAL(s.live_count, 1);
    CU_ASSERT_EQUAL(s.dead_count, 3);
    CU_ASSERT_STRING_EQUAL(shown("subject", "sex", &s), "M");
    CU_ASSERT_FALSE(merge_conflict("subject", "sex", &s));
    field_state_release(&s);
}

static void test_merge_latest_tie_on_lane_and_seq(void)
{
    struct field_state s = { 0 };
    struct merge_write a = write_of(ref_of("n1", LANE_SAFETY, 9), 100, "a", NULL, 0);
    struct merge_write b = write_of(ref_of("n1", LANE_BULK, 1), 100, "b", NULL, 0);
    struct merge_write c = write_of(ref_of("n1", LANE_BULK, 2), 100, "c", NULL, 0);

    CU_ASSERT_EQUAL(merge_field_apply(&s, &c), 1);
    CU_ASSERT_EQUAL(merge_field_apply(&s, &a), 1);
    CU_ASSERT_EQUAL(merge_field_apply(&s, &b), 1);
    /* Same hlc and origin: lane, then seq, decide; live is in that order. */
    CU_ASSERT_STRING_EQUAL(s.live[0].value, "a");
    CU_ASSERT_STRING_EQUAL(s.live[1].value, "b");
    CU_ASSERT_STRING_EQUAL(s.live[2].value, "c");
    CU_ASSERT_STRING_EQUAL(shown("subject", "armcd", &s), "c");
    field_state_release(&s);
}

static void test_merge_worst_display_and_conflict(void)
{
    struct field_state sev = { 0 }, grade = { 0 }, ser = { 0 }, death = { 0 };

    /* SEVERE is written first (older hlc) and still shown over MILD. */
    CU_ASSERT_EQUAL(apply(&sev, "site-101", 1, 100, "SEVERE", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&sev, "hub", 1, 900, "MILD", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&sev, "hub", 2, 950, "MODERATE", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("ae", "aesev", &sev), "SEVERE");
    CU_ASSERT_TRUE(merge_conflict("ae", "aesev", &sev));

    CU_ASSERT_EQUAL(apply(&grade, "a", 1, 500, "2", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&grade, "b", 1, 100, "4", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&grade, "c", 1, 900, "3", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("ae", "aetoxgr", &grade), "4");
    CU_ASSERT_TRUE(merge_conflict("ae", "aetoxgr", &grade));

    CU_ASSERT_EQUAL(apply(&ser, "a", 1, 100, "Y", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&ser, "b", 1, 900, "N", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("ae", "aeser", &ser), "Y");
    CU_ASSERT_TRUE(merge_conflict("ae", "aeser", &ser));

    /* Two equally bad values: the latest of them is shown. */
    struct merge_write d1 = write_of(ref_of("a", LANE_SAFETY, 1), 100, "Y", NULL, 0);
    struct merge_write d2 = write_of(ref_of("b", LANE_SAFETY, 1), 300, "Y", NULL, 0);
    struct merge_write d3 = write_of(ref_of("c", LANE_SAFETY, 1), 900, "N", NULL, 0);
    CU_ASSERT_EQUAL(merge_field_apply(&death, &d1), 1);
    CU_ASSERT_EQUAL(merge_field_apply(&death, &d2), 1);
    CU_ASSERT_EQUAL(merge_field_apply(&death, &d3), 1);
    CU_ASSERT_EQUAL(merge_display("ae", "aesdth", &death), 1);
    CU_ASSERT_STRING_EQUAL(death.live[1].ref.origin, "b");

    /* A correction that saw the worst value replaces it: no conflict. */
    struct entry_ref all[3] = { ref_of("site-101", LANE_BULK, 1), ref_of("hub", LANE_BULK, 1),
                                ref_of("hub", LANE_BULK, 2) };
    CU_ASSERT_EQUAL(apply(&sev, "site-101", 2, 1000, "MILD", all, 3), 1);
    CU_ASSERT_STRING_EQUAL(shown("ae", "aesev", &sev), "MILD");
    CU_ASSERT_FALSE(merge_conflict("ae", "aesev", &sev));

    field_state_release(&sev);
    field_state_release(&grade);
    field_state_release(&ser);
    field_state_release(&death);
}

static void test_merge_worst_unknown_value_ranks_lowest(void)
{
    struct field_state s = { 0 };
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 900, "garbage", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "b", 1, 100, "MILD", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("ae", "aesev", &s), "MILD");
    field_state_release(&s);
}

static void test_merge_rank_display_and_conflict(void)
{
    struct field_state s = { 0 }, v = { 0 }, ae = { 0 };

    /* Concurrent terminal states: died > withdrawn > lost > completed. */
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 900, "completed", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "b", 1, 100, "withdrawn", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "status", &s), "withdrawn");
    CU_ASSERT_TRUE(merge_conflict("subject", "status", &s));
    CU_ASSERT_EQUAL(apply(&s, "c", 1, 50, "died", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "d", 1, 999, "lost_to_followup", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "status", &s), "died");

    /* An old replayed write cannot reopen a subject. */
    CU_ASSERT_EQUAL(apply(&s, "e", 1, 5000, "enrolled", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "status", &s), "died");

    CU_ASSERT_EQUAL(apply(&v, "a", 1, 900, "completed", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&v, "b", 1, 100, "skipped", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("visit", "status", &v), "skipped");
    CU_ASSERT_EQUAL(apply(&v, "c", 1, 50, "signed", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("visit", "status", &v), "signed");
    CU_ASSERT_TRUE(merge_conflict("visit", "status", &v));

    CU_ASSERT_EQUAL(apply(&ae, "a", 1, 900, "ongoing", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&ae, "b", 1, 100, "resolved", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("ae", "status", &ae), "resolved");

    /* A write that saw the higher rank may lower it: supersedes decide first. */
    struct entry_ref both[2] = { ref_of("a", LANE_BULK, 1), ref_of("b", LANE_BULK, 1) };
    CU_ASSERT_EQUAL(apply(&ae, "hub", 1, 1000, "ongoing", both, 2), 1);
    CU_ASSERT_STRING_EQUAL(shown("ae", "status", &ae), "ongoing");
    CU_ASSERT_FALSE(merge_conflict("ae", "status", &ae));

    field_state_release(&s);
    field_state_release(&v);
    field_state_release(&ae);
}

static int apply_round(struct field_state *s, const char *origin, uint64_t hlc,
                       uint32_t round, const char *value)
{
    struct merge_write w = write_of(ref_of(origin, LANE_BULK, hlc), hlc, value, NULL, 0);
    w.round = round;
    return merge_field_apply(s, &w);
}

static void test_merge_query_state_display(void)
{
    struct field_state s = { 0 };

    /* A site answer and a CRO cancel cross: cancelled ranks higher. */
    CU_ASSERT_EQUAL(apply_round(&s, "hub", 100, 1, "cancelled"), 1);
    CU_ASSERT_EQUAL(apply_round(&s, "site-101", 200, 1, "answered"), 1);
    CU_ASSERT_STRING_EQUAL(shown("query", "state", &s), "cancelled");
    /* The rule decides; nobody has to. */
    CU_ASSERT_FALSE(merge_conflict("query", "state", &s));

    /* A re-query opens round 2: the round outranks any state of round 1. */
    CU_ASSERT_EQUAL(apply_round(&s, "hub", 50, 2, "open"), 1);
    CU_ASSERT_STRING_EQUAL(shown("query", "state", &s), "open");
    CU_ASSERT_EQUAL(s.live[merge_display("query", "state", &s)].round, 2);
    CU_ASSERT_EQUAL(apply_round(&s, "site-101", 40, 2, "answered"), 1);
    CU_ASSERT_STRING_EQUAL(shown("query", "state", &s), "answered");
    field_state_release(&s);
}

/* An answer crossing a cancel writes round "1" twice: the same value, and
 * the round is a rule anyway (highest shown), never a conflict. */
static void test_merge_query_round_is_a_rule(void)
{
    struct field_state r = { 0 };

    CU_ASSERT_EQUAL(apply_round(&r, "hub", 100, 1, "1"), 1);
    CU_ASSERT_EQUAL(apply_round(&r, "site-101", 200, 1, "1"), 1);
    CU_ASSERT_EQUAL(r.live_count, 2);
    CU_ASSERT_FALSE(merge_conflict("query", "round", &r));
    /* A re-query (round 2) crossing a late round-1 answer stamped later:
     * the higher round is shown, not the later stamp. */
    CU_ASSERT_EQUAL(apply_round(&r, "hub", 300, 2, "2"), 1);
    CU_ASSERT_EQUAL(apply_round(&r, "site-101", 400, 1, "1"), 1);
    CU_ASSERT_STRING_EQUAL(shown("query", "round", &r), "2");
    CU_ASSERT_FALSE(merge_conflict("query", "round", &r));
    field_state_release(&r);
}

/* Two nodes writing the same value while apart agree: no conflict, one
 * value shown, both writes kept (history has both). */
static void test_merge_same_value_is_no_conflict(void)
{
    static const struct { const char *type, *field, *a, *b; } cases[] = {
        { "subject", "sex", "F", "M" },
        { "ae", "aesev", "SEVERE", "MILD" },
        { "subject", "site", "101", "102" },
        { "subject", "status", "died", "withdrawn" },
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct field_state s = { 0 };
        CU_ASSERT_EQUAL(apply(&s, "site-101", 1, 100, cases[c].a, NULL, 0), 1);
        CU_ASSERT_EQUAL(apply(&s, "hub", 1, 200, cases[c].a, NULL, 0), 1);
        CU_ASSERT_EQUAL(s.live_count, 2);
        CU_ASSERT_FALSE(merge_conflict(cases[c].type, cases[c].field, &s));
        CU_ASSERT_STRING_EQUAL(shown(cases[c].type, cases[c].field, &s), cases[c].a);
        /* A third node disagreeing makes it a conflict again. */
        CU_ASSERT_EQUAL(apply(&s, "site-102", 1, 150, cases[c].b, NULL, 0), 1);
        CU_ASSERT_TRUE(merge_conflict(cases[c].type, cases[c].field, &s));
        field_state_release(&s);
    }
}

/* Statuses: concurrent steps along the way are the rank rule; a final state
 * against anything else is for a person, and the loser's entry is stale. */
static void test_merge_rank_conflict_only_at_final_states(void)
{
    struct field_state s = { 0 };
    struct entry_ref late = ref_of("site-101", LANE_BULK, 7);
    struct entry_ref hub = ref_of("hub", LANE_BULK, 1);

    CU_ASSERT_EQUAL(apply(&s, "hub", 1, 100, "enrolled", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "site-101", 7, 200, "randomized", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "status", &s), "randomized");
    CU_ASSERT_FALSE(merge_conflict("subject", "status", &s));
    CU_ASSERT_FALSE(merge_write_lost("subject", "status", &s, &hub));
    field_state_release(&s);

    /* A late "randomized" (stamped later) against "died". */
    CU_ASSERT_EQUAL(apply(&s, "hub", 1, 100, "died", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "site-101", 7, 200, "randomized", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "status", &s), "died");
    CU_ASSERT_TRUE(merge_conflict("subject", "status", &s));
    CU_ASSERT_TRUE(merge_write_lost("subject", "status", &s, &late));
    CU_ASSERT_FALSE(merge_write_lost("subject", "status", &s, &hub));
    /* Not a rank field: never lost. */
    CU_ASSERT_FALSE(merge_write_lost("subject", "sex", &s, &late));
    /* A write that saw both resolves it. */
    struct entry_ref both[2] = { hub, late };
    CU_ASSERT_EQUAL(apply(&s, "hub", 2, 300, "died", both, 2), 1);
    CU_ASSERT_FALSE(merge_conflict("subject", "status", &s));
    CU_ASSERT_FALSE(merge_write_lost("subject", "status", &s, &late));
    field_state_release(&s);

    /* Two final states: ranked, and flagged. */
    CU_ASSERT_EQUAL(apply(&s, "hub", 1, 100, "completed", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "site-101", 7, 50, "lost_to_followup", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "status", &s), "lost_to_followup");
    CU_ASSERT_TRUE(merge_conflict("subject", "status", &s));
    field_state_release(&s);
}

static void test_merge_write_once_display_and_conflict(void)
{
    struct field_state s = { 0 };

    CU_ASSERT_EQUAL(apply(&s, "b", 1, 500, "102", NULL, 0), 1);
    CU_ASSERT_FALSE(merge_conflict("subject", "site", &s));
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "101", NULL, 0), 1);
    /* The earliest value stays shown; the second one is a visible conflict. */
    CU_ASSERT_STRING_EQUAL(shown("subject", "site", &s), "101");
    CU_ASSERT_TRUE(merge_conflict("subject", "site", &s));
    CU_ASSERT_EQUAL(apply(&s, "c", 1, 100, "103", NULL, 0), 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "site", &s), "101");
    CU_ASSERT_STRING_EQUAL(shown("query", "target", &s), "101");
    field_state_release(&s);
}

static void test_merge_append_never_conflicts(void)
{
    struct field_state s = { 0 };

    CU_ASSERT_EQUAL(apply(&s, "site-101", 1, 300, "third", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "hub", 1, 100, "first", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "hub", 2, 200, "second", NULL, 0), 1);
    CU_ASSERT_EQUAL(s.live_count, 3);
    CU_ASSERT_FALSE(merge_conflict("query", "messages", &s));
    /* Every message stays, in (hlc, origin) order; the newest is returned. */
    CU_ASSERT_STRING_EQUAL(s.live[0].value, "first");
    CU_ASSERT_STRING_EQUAL(s.live[1].value, "second");
    CU_ASSERT_STRING_EQUAL(s.live[2].value, "third");
    CU_ASSERT_STRING_EQUAL(shown("query", "messages", &s), "third");
    field_state_release(&s);
}

/* ---- supersedes and delivery order ------------------------------------- */

static void test_merge_out_of_order_supersede(void)
{
    struct field_state s = { 0 };
    struct entry_ref w1 = ref_of("site-101", LANE_BULK, 1);

    /* W2, which superseded W1 where it was written, arrives first. */
    CU_ASSERT_EQUAL(apply(&s, "site-101", 2, 200, "new", &w1, 1), 1);
    CU_ASSERT_TRUE(has_dead(&s, &w1));
    /* W1 arrives late: it is already dead and stays dead. */
    CU_ASSERT_EQUAL(apply(&s, "site-101", 1, 100, "old", NULL, 0), 0);
    CU_ASSERT_FALSE(has_live(&s, &w1));
    CU_ASSERT_EQUAL(s.live_count, 1);
    CU_ASSERT_STRING_EQUAL(shown("subject", "armcd", &s), "new");
    CU_ASSERT_FALSE(merge_conflict("subject", "armcd", &s));
    field_state_release(&s);
}

static void test_merge_dead_write_still_supersedes(void)
{
    struct field_state s = { 0 };
    struct entry_ref w1 = ref_of("n", LANE_BULK, 1);
    struct entry_ref w2 = ref_of("n", LANE_BULK, 2);

    /* W3 kills W2 before W2 arrives; W2, dead on arrival, must still kill W1. */
    CU_ASSERT_EQUAL(apply(&s, "n", 3, 300, "three", &w2, 1), 1);
    CU_ASSERT_EQUAL(apply(&s, "n", 2, 200, "two", &w1, 1), 1);
    CU_ASSERT_FALSE(has_live(&s, &w2));
    CU_ASSERT_TRUE(has_dead(&s, &w1));
    CU_ASSERT_EQUAL(apply(&s, "n", 1, 100, "one", NULL, 0), 0);
    CU_ASSERT_EQUAL(s.live_count, 1);
    CU_ASSERT_STRING_EQUAL(s.live[0].value, "three");
    field_state_release(&s);
}

static void test_merge_chain_all_orders(void)
{
    static const int orders[6][3] = {
        { 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 },
    };
    struct entry_ref r[3] = { ref_of("site-101", LANE_BULK, 1), ref_of("hub", LANE_BULK, 1),
                              ref_of("site-101", LANE_BULK, 2) };
    struct merge_write w[3] = {
        write_of(r[0], 100, "W1", NULL, 0),
        write_of(r[1], 200, "W2", &r[0], 1),
        write_of(r[2], 300, "W3", &r[1], 1),
    };
    struct field_state first = { 0 };

    for (int o = 0; o < 6; o++) {
        struct field_state s = { 0 };
        for (int i = 0; i < 3; i++)
            CU_ASSERT(merge_field_apply(&s, &w[orders[o][i]]) >= 0);
        CU_ASSERT_EQUAL(s.live_count, 1);
        CU_ASSERT_STRING_EQUAL(s.live[0].value, "W3");
        CU_ASSERT_EQUAL(s.dead_count, 2);
        CU_ASSERT_TRUE(has_dead(&s, &r[0]));
        CU_ASSERT_TRUE(has_dead(&s, &r[1]));
        CU_ASSERT_FALSE(merge_conflict("subject", "armcd", &s));
        if (o == 0) {
            first = s;
            continue;
        }
        CU_ASSERT_TRUE(same_encoding(&first, &s));
        field_state_release(&s);
    }
    field_state_release(&first);
}

static void test_merge_duplicates_idempotent(void)
{
    struct field_state s = { 0 };
    struct entry_ref w1 = ref_of("a", LANE_BULK, 1);

    CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "x", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "b", 1, 150, "y", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "a", 2, 200, "z", &w1, 1), 1);
    size_t len1;
    uint8_t *before = encode(&s, &len1);
    /* Every write again, any number of times: nothing changes. */
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "x", NULL, 0), 0);
        CU_ASSERT_EQUAL(apply(&s, "b", 1, 150, "y", NULL, 0), 0);
        CU_ASSERT_EQUAL(apply(&s, "a", 2, 200, "z", &w1, 1), 0);
    }
    size_t len2;
    uint8_t *after = encode(&s, &len2);
    CU_ASSERT_EQUAL(len1, len2);
    CU_ASSERT_EQUAL(memcmp(before, after, len1), 0);
    free(before);
    free(after);
    field_state_release(&s);
}

static void test_merge_supersedes_deduplicated(void)
{
    struct field_state s = { 0 };
    struct entry_ref sup[4] = { ref_of("b", LANE_BULK, 1), ref_of("a", LANE_BULK, 1),
                                ref_of("b", LANE_BULK, 1), ref_of("a", LANE_SAFETY, 1) };

    CU_ASSERT_EQUAL(apply(&s, "c", 1, 100, "v", sup, 4), 1);
    CU_ASSERT_EQUAL(s.dead_count, 3);
    /* Dead in (origin, lane, seq) order. */
    CU_ASSERT_STRING_EQUAL(s.dead[0].origin, "a");
    CU_ASSERT_EQUAL(s.dead[0].lane, LANE_SAFETY);
    CU_ASSERT_STRING_EQUAL(s.dead[1].origin, "a");
    CU_ASSERT_EQUAL(s.dead[1].lane, LANE_BULK);
    CU_ASSERT_STRING_EQUAL(s.dead[2].origin, "b");
    /* A write superseding only what is already dead, and already held: no change. */
    CU_ASSERT_EQUAL(apply(&s, "c", 1, 100, "v", sup, 2), 0);
    field_state_release(&s);
}

static void test_merge_self_supersede_is_dead(void)
{
    struct field_state s = { 0 };
    struct entry_ref me = ref_of("a", LANE_BULK, 1);
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "v", &me, 1), 1);
    CU_ASSERT_EQUAL(s.live_count, 0);
    CU_ASSERT_EQUAL(s.dead_count, 1);
    CU_ASSERT_EQUAL(merge_display("subject", "sex", &s), -1);
    field_state_release(&s);
}

static void test_merge_fork_refused(void)
{
    struct field_state s = { 0 };
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "x", NULL, 0), 1);
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "y", NULL, 0), TS_ERR_FORK);
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 101, "x", NULL, 0), TS_ERR_FORK);
    struct merge_write w = write_of(ref_of("a", LANE_BULK, 1), 100, "x", NULL, 0);
    w.round = 3;
    CU_ASSERT_EQUAL(merge_field_apply(&s, &w), TS_ERR_FORK);
    CU_ASSERT_EQUAL(s.live_count, 1);
    CU_ASSERT_STRING_EQUAL(s.live[0].value, "x");
    field_state_release(&s);
}

static void test_merge_bad_writes_refused(void)
{
    struct field_state s = { 0 };
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "keep", NULL, 0), 1);
    size_t len0;
    uint8_t *before = encode(&s, &len0);

    /* Empty origin, unterminated origin, lane out of range, NULL value. */
    CU_ASSERT_EQUAL(apply(&s, "", 1, 100, "x", NULL, 0), TS_ERR_INVALID);
    struct merge_write w = write_of(ref_of("a", LANE_BULK, 2), 100, "x", NULL, 0);
    memset(w.ref.origin, 'o', sizeof(w.ref.origin));
    CU_ASSERT_EQUAL(merge_field_apply(&s, &w), TS_ERR_INVALID);
    w = write_of(ref_of("a", LANE_COUNT, 2), 100, "x", NULL, 0);
    CU_ASSERT_EQUAL(merge_field_apply(&s, &w), TS_ERR_INVALID);
    w = write_of(ref_of("a", LANE_BULK, 2), 100, NULL, NULL, 0);
    CU_ASSERT_EQUAL(merge_field_apply(&s, &w), TS_ERR_INVALID);
    struct entry_ref bad_sup = ref_of("", LANE_BULK, 1);
    CU_ASSERT_EQUAL(apply(&s, "a", 2, 100, "x", &bad_sup, 1), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(apply(&s, "a", 2, 100, "x", NULL, 1), TS_ERR_INVALID);

    /* Above the limits. */
    char *big = malloc(TS_VALUE_BYTES_MAX + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'v', TS_VALUE_BYTES_MAX + 1);
    big[TS_VALUE_BYTES_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(apply(&s, "a", 2, 100, big, NULL, 0), TS_ERR_TOOBIG);
    big[TS_VALUE_BYTES_MAX] = '\0';
    struct entry_ref many[TS_SUPERSEDES_MAX + 1];
    for (size_t i = 0; i < TS_SUPERSEDES_MAX + 1; i++)
        many[i] = ref_of("z", LANE_BULK, i + 1);
    CU_ASSERT_EQUAL(apply(&s, "a", 2, 100, "x", many, TS_SUPERSEDES_MAX + 1), TS_ERR_TOOBIG);

    size_t len1;
    uint8_t *after = encode(&s, &len1);
    CU_ASSERT_EQUAL(len0, len1);
    CU_ASSERT_EQUAL(memcmp(before, after, len0), 0);
    free(after);

    /* Exactly at the limits is fine. */
    CU_ASSERT_EQUAL(apply(&s, "a", 2, 100, big, many, TS_SUPERSEDES_MAX), 1);
    free(big);
    free(before);
    field_state_release(&s);
}

static void test_merge_live_and_dead_bounded(void)
{
    struct field_state s = { 0 };
    char value[32];

    for (uint64_t i = 1; i <= MERGE_LIVE_MAX; i++) {
        snprintf(value, sizeof(value), "m%llu", (unsigned long long)i);
        CU_ASSERT_EQUAL_FATAL(apply(&s, "a", i, i, value, NULL, 0), 1);
    }
    CU_ASSERT_EQUAL(apply(&s, "a", MERGE_LIVE_MAX + 1, 1, "one too many", NULL, 0), TS_ERR_TOOBIG);
    CU_ASSERT_EQUAL(s.live_count, MERGE_LIVE_MAX);
    field_state_release(&s);

    /* Dead grows by at most TS_SUPERSEDES_MAX per write; fill it to the cap. */
    struct entry_ref sup[TS_SUPERSEDES_MAX];
    uint64_t next = 1;
    while (s.dead_count + TS_SUPERSEDES_MAX <= MERGE_DEAD_MAX) {
        for (size_t i = 0; i < TS_SUPERSEDES_MAX; i++)
            sup[i] = ref_of("old", LANE_BULK, next++);
        CU_ASSERT_EQUAL_FATAL(apply(&s, "w", next, next, "v", sup, TS_SUPERSEDES_MAX), 1);
    }
    CU_ASSERT_EQUAL(s.dead_count, MERGE_DEAD_MAX);
    size_t live_before = s.live_count;
    sup[0] = ref_of("old", LANE_BULK, next++);
    CU_ASSERT_EQUAL(apply(&s, "w", next, next, "v", sup, 1), TS_ERR_TOOBIG);
    CU_ASSERT_EQUAL(s.dead_count, MERGE_DEAD_MAX);
    CU_ASSERT_EQUAL(s.live_count, live_before);
    field_state_release(&s);
}

/* ---- encoding ---------------------------------------------------------- */

static void test_merge_encode_decode_round_trip(void)
{
    struct field_state s = { 0 }, back = { 0 };
    struct entry_ref sup[2] = { ref_of("site-101", LANE_SAFETY, 1), ref_of("hub", LANE_BULK, 7) };
    struct merge_write w = write_of(ref_of("site-101", LANE_SAFETY, 2), 0xfedcba9876543210ULL,
                                    "line one\nline two, caf\xc3\xa9", sup, 2);
    w.round = 3;
    CU_ASSERT_EQUAL(merge_field_apply(&s, &w), 1);
    CU_ASSERT_EQUAL(apply(&s, "hub", 8, 5, "", NULL, 0), 1);

    size_t len;
    uint8_t *buf = encode(&s, &len);
    CU_ASSERT_EQUAL(buf[0], MERGE_ENCODING_VERSION);
    CU_ASSERT_EQUAL_FATAL(merge_field_decode(buf, len, &back), 0);
    CU_ASSERT_EQUAL_FATAL(back.live_count, 2);
    CU_ASSERT_EQUAL_FATAL(back.dead_count, 2);
    CU_ASSERT_STRING_EQUAL(back.live[0].value, "");
    CU_ASSERT_STRING_EQUAL(back.live[1].value, "line one\nline two, caf\xc3\xa9");
    CU_ASSERT_EQUAL(back.live[1].hlc, 0xfedcba9876543210ULL);
    CU_ASSERT_EQUAL(back.live[1].round, 3);
    CU_ASSERT_EQUAL(back.live[1].ref.lane, LANE_SAFETY);
    CU_ASSERT_EQUAL(back.live[1].ref.seq, 2);
    CU_ASSERT_STRING_EQUAL(back.dead[0].origin, "hub");
    CU_ASSERT_TRUE(same_encoding(&s, &back));
    /* A decoded state keeps merging like the original. */
    CU_ASSERT_EQUAL(apply(&back, "hub", 8, 5, "", NULL, 0), 0);
    free(buf);
    field_state_release(&back);

    /* The empty state. */
    field_state_release(&s);
    buf = encode(&s, &len);
    CU_ASSERT_EQUAL(len, 9);
    CU_ASSERT_EQUAL(merge_field_decode(buf, len, &back), 0);
    CU_ASSERT_EQUAL(back.live_count, 0);
    CU_ASSERT_EQUAL(back.dead_count, 0);
    free(buf);
    field_state_release(&back);
}

/* A hand-written encoder for inputs encode would never produce. */
struct raw {
    uint8_t b[20000];
    size_t n;
};

static void raw_u8(struct raw *r, uint8_t v)
{
    r->b[r->n++] = v;
}

static void raw_u32(struct raw *r, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        raw_u8(r, (uint8_t)(v >> (8 * i)));
}

static void raw_u64(struct raw *r, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        raw_u8(r, (uint8_t)(v >> (8 * i)));
}

static void raw_bytes(struct raw *r, const void *p, size_t n)
{
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void raw_ref(struct raw *r, const char *origin, uint8_t lane, uint64_t seq)
{
    raw_u8(r, (uint8_t)strlen(origin));
    raw_bytes(r, origin, strlen(origin));
    raw_u8(r, lane);
    raw_u64(r, seq);
}

static void raw_live(struct raw *r, const char *origin, uint8_t lane, uint64_t seq,
                     uint64_t hlc, const char *value)
{
    raw_ref(r, origin, lane, seq);
    raw_u64(r, hlc);
    raw_u32(r, 0);
    raw_u32(r, (uint32_t)strlen(value));
    raw_bytes(r, value, strlen(value));
}

static int decode_raw(const struct raw *r)
{
    struct field_state s;
    memset(&s, 0xa5, sizeof(s));
    int rc = merge_field_decode(r->b, r->n, &s);
    if (rc < 0) {
        /* Left empty on error. */
        CU_ASSERT_EQUAL(s.live_count, 0);
        CU_ASSERT_EQUAL(s.dead_count, 0);
        CU_ASSERT_PTR_NULL(s.live);
        CU_ASSERT_PTR_NULL(s.dead);
    }
    field_state_release(&s);
    return rc;
}

static void test_merge_decode_refuses_truncation_and_trailing(void)
{
    struct field_state s = { 0 }, back;
    struct entry_ref sup = ref_of("b", LANE_BULK, 1);
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "value", &sup, 1), 1);
    CU_ASSERT_EQUAL(apply(&s, "c", 1, 200, "other", NULL, 0), 1);
    size_t len;
    uint8_t *buf = encode(&s, &len);

    /* Every strict prefix is refused. */
    for (size_t cut = 0; cut < len; cut++)
        CU_ASSERT_EQUAL(merge_field_decode(buf, cut, &back), TS_ERR_CORRUPT);
    CU_ASSERT_EQUAL(merge_field_decode(NULL, 0, &back), TS_ERR_CORRUPT);

    /* One trailing byte is refused. */
    uint8_t *longer = malloc(len + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    CU_ASSERT_EQUAL(merge_field_decode(longer, len + 1, &back), TS_ERR_CORRUPT);

    /* Another version byte is refused. */
    memcpy(longer, buf, len);
    longer[0] = MERGE_ENCODING_VERSION + 1;
    CU_ASSERT_EQUAL(merge_field_decode(longer, len, &back), TS_ERR_CORRUPT);

    CU_ASSERT_EQUAL(merge_field_decode(buf, len, &back), 0);
    field_state_release(&back);
    free(longer);
    free(buf);
    field_state_release(&s);
}

static void test_merge_decode_refuses_non_canonical(void)
{
    struct raw r;

    /* Baseline: a valid hand-built state decodes. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 2);
    raw_live(&r, "a", LANE_BULK, 1, 100, "x");
    raw_live(&r, "b", LANE_BULK, 1, 200, "y");
    raw_u32(&r, 2);
    raw_ref(&r, "a", LANE_BULK, 0);
    raw_ref(&r, "c", LANE_SAFETY, 5);
    CU_ASSERT_EQUAL(decode_raw(&r), 0);

    /* Live out of (hlc, origin, lane, seq) order. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 2);
    raw_live(&r, "b", LANE_BULK, 1, 200, "y");
    raw_live(&r, "a", LANE_BULK, 1, 100, "x");
    raw_u32(&r, 0);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    /* The same live write twice. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 2);
    raw_live(&r, "a", LANE_BULK, 1, 100, "x");
    raw_live(&r, "a", LANE_BULK, 1, 100, "x");
    raw_u32(&r, 0);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    /* One ref live twice under different hlcs (sorted, yet a duplicate). */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 3);
    raw_live(&r, "a", LANE_BULK, 1, 100, "x");
    raw_live(&r, "b", LANE_BULK, 1, 150, "y");
    raw_live(&r, "a", LANE_BULK, 1, 200, "x");
    raw_u32(&r, 0);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    /* Dead out of order, and dead duplicated. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, 2);
    raw_ref(&r, "a", LANE_BULK, 2);
    raw_ref(&r, "a", LANE_BULK, 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, 2);
    raw_ref(&r, "a", LANE_BULK, 1);
    raw_ref(&r, "a", LANE_BULK, 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    /* A write both live and dead. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 1);
    raw_live(&r, "a", LANE_BULK, 1, 100, "x");
    raw_u32(&r, 1);
    raw_ref(&r, "a", LANE_BULK, 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);
}

static void test_merge_decode_refuses_above_limits(void)
{
    struct raw r;
    char origin[TS_ID_BYTES_MAX + 2];

    /* Empty origin; origin one byte too long; origin holding a NUL. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, 1);
    raw_ref(&r, "", LANE_BULK, 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    memset(origin, 'o', sizeof(origin));
    origin[TS_ID_BYTES_MAX + 1] = '\0';
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, 1);
    raw_ref(&r, origin, LANE_BULK, 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);
    origin[TS_ID_BYTES_MAX] = '\0';
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, 1);
    raw_ref(&r, origin, LANE_BULK, 1);
    CU_ASSERT_EQUAL(decode_raw(&r), 0);

    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, 1);
    raw_u8(&r, 3);
    raw_bytes(&r, "a\0b", 3);
    raw_u8(&r, LANE_BULK);
    raw_u64(&r, 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    /* Lane out of range. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, 1);
    raw_ref(&r, "a", LANE_COUNT, 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    /* A value above TS_VALUE_BYTES_MAX, and a value holding a NUL. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 1);
    raw_ref(&r, "a", LANE_BULK, 1);
    raw_u64(&r, 1);
    raw_u32(&r, 0);
    raw_u32(&r, TS_VALUE_BYTES_MAX + 1);
    memset(r.b + r.n, 'v', TS_VALUE_BYTES_MAX + 1);
    r.n += TS_VALUE_BYTES_MAX + 1;
    raw_u32(&r, 0);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 1);
    raw_ref(&r, "a", LANE_BULK, 1);
    raw_u64(&r, 1);
    raw_u32(&r, 0);
    raw_u32(&r, 3);
    raw_bytes(&r, "x\0y", 3);
    raw_u32(&r, 0);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);

    /* Counts above the limits, and counts larger than the bytes behind them. */
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, MERGE_LIVE_MAX + 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, MERGE_DEAD_MAX + 1);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 0);
    raw_u32(&r, 0xffffffffu);
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);
    r.n = 0;
    raw_u8(&r, MERGE_ENCODING_VERSION);
    raw_u32(&r, 5);
    raw_live(&r, "a", LANE_BULK, 1, 100, "x");
    CU_ASSERT_EQUAL(decode_raw(&r), TS_ERR_CORRUPT);
}

static void test_merge_decode_random_bytes_never_crash(void)
{
    struct field_state s = { 0 }, back;
    struct entry_ref sup[2] = { ref_of("b", LANE_BULK, 1), ref_of("d", LANE_SAFETY, 2) };
    CU_ASSERT_EQUAL(apply(&s, "a", 1, 100, "value", sup, 2), 1);
    CU_ASSERT_EQUAL(apply(&s, "c", 1, 200, "other", NULL, 0), 1);
    size_t len;
    uint8_t *buf = encode(&s, &len);
    uint8_t *mut = malloc(len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mut);

    /* Flipped bytes either decode to a state that re-encodes to the same
     * bytes (so it is canonical), or are refused. */
    for (int i = 0; i < 5000; i++) {
        memcpy(mut, buf, len);
        int flips = 1 + (int)(unit_rand() % 3);
        for (int f = 0; f < flips; f++)
            mut[unit_rand() % len] ^= (uint8_t)(1u << (unit_rand() % 8));
        int rc = merge_field_decode(mut, len, &back);
        CU_ASSERT(rc == 0 || rc == TS_ERR_CORRUPT);
        if (rc == 0) {
            size_t len2;
            uint8_t *again = encode(&back, &len2);
            CU_ASSERT_EQUAL(len2, len);
            CU_ASSERT_EQUAL(memcmp(again, mut, len), 0);
            free(again);
            field_state_release(&back);
        }
    }
    free(mut);
    free(buf);
    field_state_release(&s);
}

/* ---- the convergence property ------------------------------------------ */

#define PROP_RECORDS 3
#define PROP_FIELDS 6
#define PROP_SLOTS (PROP_RECORDS * PROP_FIELDS)
#define PROP_WRITERS 4
#define PROP_WRITES 120
#define PROP_PERMUTATIONS 240
#define PROP_COPIES_MAX 3

struct prop_field {
    const char *type;
    const char *field;
    const char *values[4];
};

/* One field of each policy. */
static const struct prop_field prop_fields[PROP_FIELDS] = {
    { "subject", "sex", { "M", "F", "U", "F" } },
    { "ae", "aesev", { "MILD", "MODERATE", "SEVERE", "MILD" } },
    { "subject", "status", { "screening", "enrolled", "withdrawn", "died" } },
    { "query", "state", { "open", "answered", "closed", "cancelled" } },
    { "query", "messages", { NULL, NULL, NULL, NULL } },
    { "subject", "site", { "101", "102", "101", "103" } },
};

struct prop_write {
    int slot;
    struct entry_ref ref;
    uint64_t hlc;
    uint32_t round;
    char value[24];
    struct entry_ref sup[TS_SUPERSEDES_MAX];
    size_t sup_count;
};

struct prop_writer {
    char origin[16];
    struct hlc clock;
    int64_t skew_ms;
    uint64_t seq[LANE_COUNT];
    bool known[PROP_WRITES];
};

static bool prop_superseded(const struct prop_write *all, const bool *known, size_t n, size_t w)
{
    for (size_t i = 0; i < n; i++) {
        if (!known[i] || all[i].slot != all[w].slot)
            continue;
        for (size_t j = 0; j < all[i].sup_count; j++) {
            if (ref_eq(&all[i].sup[j], &all[w].ref))
                return true;
        }
    }
    return false;
}

static size_t prop_generate(struct prop_write *all, struct prop_writer *writers)
{
    size_t n = 0;
    uint64_t wall = 1700000000000ULL;

    for (int i = 0; i < PROP_WRITERS; i++) {
        memset(&writers[i], 0, sizeof(writers[i]));
        snprintf(writers[i].origin, sizeof(writers[i].origin), "node-%d", i);
        hlc_init(&writers[i].clock, 0);
        /* Clocks up to a minute apart, some behind, some ahead. */
        writers[i].skew_ms = (int64_t)(unit_rand() % 120000) - 60000;
    }
    while (n < PROP_WRITES) {
        struct prop_writer *me = &writers[unit_rand() % PROP_WRITERS];
        /* Coarse wall steps so equal hlcs across origins happen often. */
        wall += unit_rand() % 3;
        if (unit_rand() % 4 == 0) {
            /* Sync: learn everything another writer knows. */
            struct prop_writer *other = &writers[unit_rand() % PROP_WRITERS];
            for (size_t i = 0; i < n; i++) {
                if (other->known[i] && !me->known[i]) {
                    me->known[i] = true;
                    hlc_observe(&me->clock, all[i].hlc);
                }
            }
            continue;
        }

        struct prop_write *w = &all[n];
        memset(w, 0, sizeof(*w));
        w->slot = (int)(unit_rand() % PROP_SLOTS);
        const struct prop_field *pf = &prop_fields[w->slot % PROP_FIELDS];
        uint8_t lane = (uint8_t)(unit_rand() % LANE_COUNT);
        w->ref = ref_of(me->origin, lane, ++me->seq[lane]);
        w->hlc = hlc_now(&me->clock, (uint64_t)((int64_t)wall + me->skew_ms));
        if (strcmp(pf->field, "state") == 0)
            w->round = 1 + (uint32_t)(unit_rand() % 3);
        if (pf->values[0] == NULL)
            snprintf(w->value, sizeof(w->value), "msg %zu", n);
        else
            snprintf(w->value, sizeof(w->value), "%s", pf->values[unit_rand() % 4]);

        /* The writer supersedes the live writes of its own view, except for
         * an append-only field; now and then it saw only part of them. */
        if (merge_policy_of(pf->type, pf->field) != MERGE_POLICY_APPEND) {
            bool partial = unit_rand() % 6 == 0;
            for (size_t i = 0; i < n && w->sup_count < TS_SUPERSEDES_MAX; i++) {
                if (!me->known[i] || all[i].slot != w->slot)
                    continue;
                if (prop_superseded(all, me->known, n, i))
                    continue;
                if (partial && unit_rand() % 2 == 0)
                    continue;
                w->sup[w->sup_count++] = all[i].ref;
            }
        }
        me->known[n] = true;
        n++;
    }
    return n;
}

static struct merge_write prop_merge_write(const struct prop_write *p)
{
    struct merge_write w = write_of(p->ref, p->hlc, p->value, p->sup, p->sup_count);
    w.round = p->round;
    return w;
}

/* Re-encodes and decodes every state, as a node restarting from disk would. */
static void prop_reload(struct field_state *states)
{
    for (int i = 0; i < PROP_SLOTS; i++) {
        size_t len;
        uint8_t *buf = encode(&states[i], &len);
        field_state_release(&states[i]);
        CU_ASSERT_EQUAL_FATAL(merge_field_decode(buf, len, &states[i]), 0);
        free(buf);
    }
}

static void test_merge_property_any_order_converges(void)
{
    static struct prop_write all[PROP_WRITES];
    static struct prop_writer writers[PROP_WRITERS];
    static size_t order[PROP_WRITES * PROP_COPIES_MAX];
    uint8_t *reference[PROP_SLOTS] = { 0 };
    size_t reference_len[PROP_SLOTS] = { 0 };
    int reference_shown[PROP_SLOTS];
    bool reference_conflict[PROP_SLOTS];

    size_t n = prop_generate(all, writers);
    CU_ASSERT_EQUAL_FATAL(n, PROP_WRITES);

    for (int perm = 0; perm < PROP_PERMUTATIONS; perm++) {
        struct field_state states[PROP_SLOTS];
        memset(states, 0, sizeof(states));

        /* Every write at least once, some up to PROP_COPIES_MAX times, shuffled. */
        size_t count = 0;
        for (size_t i = 0; i < n; i++) {
            size_t copies = unit_rand() % 4 == 0 ? 1 + unit_rand() % PROP_COPIES_MAX : 1;
            for (size_t c = 0; c < copies; c++)
                order[count++] = i;
        }
        for (size_t i = count - 1; i > 0; i--) {
            size_t j = unit_rand() % (i + 1);
            size_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        bool reload = perm % 3 == 1;
        for (size_t i = 0; i < count; i++) {
            if (reload && i == count / 2)
                prop_reload(states);
            const struct prop_write *p = &all[order[i]];
            struct merge_write w = prop_merge_write(p);
            int rc = merge_field_apply(&states[p->slot], &w);
            CU_ASSERT(rc == 0 || rc == 1);
        }

        for (int slot = 0; slot < PROP_SLOTS; slot++) {
            const struct prop_field *pf = &prop_fields[slot % PROP_FIELDS];
            size_t len;
            uint8_t *buf = encode(&states[slot], &len);
            int show = merge_display(pf->type, pf->field, &states[slot]);
            bool conflict = merge_conflict(pf->type, pf->field, &states[slot]);
            if (perm == 0) {
                reference[slot] = buf;
                reference_len[slot] = len;
                reference_shown[slot] = show;
                reference_conflict[slot] = conflict;
            } else {
                CU_ASSERT_EQUAL(len, reference_len[slot]);
                CU_ASSERT(len == reference_len[slot] && memcmp(buf, reference[slot], len) == 0);
                CU_ASSERT_EQUAL(show, reference_shown[slot]);
                CU_ASSERT_EQUAL(conflict, reference_conflict[slot]);
                free(buf);
            }
            if (perm == 0) {
                /* The state is the definition: live = written and not superseded. */
                bool everything[PROP_WRITES];
                for (size_t i = 0; i < n; i++)
                    everything[i] = true;
                size_t live = 0;
                for (size_t i = 0; i < n; i++) {
                    if (all[i].slot != slot)
                        continue;
                    bool dead = prop_superseded(all, everything, n, i);
                    CU_ASSERT_EQUAL(has_live(&states[slot], &all[i].ref), !dead);
                    CU_ASSERT_EQUAL(has_dead(&states[slot], &all[i].ref), dead);
                    live += dead ? 0 : 1;
                }
                CU_ASSERT_EQUAL(states[slot].live_count, live);
                /* What is a conflict, by definition: values that differ, on
                 * a field whose merge is not a rule; for a status, only
                 * against a final state shown. */
                const struct field_state *st = &states[slot];
                bool differ = false;
                for (size_t k = 1; k < st->live_count; k++)
                    differ = differ || strcmp(st->live[k].value, st->live[0].value) != 0;
                enum merge_policy pol = merge_policy_of(pf->type, pf->field);
                bool want = differ && pol != MERGE_POLICY_APPEND && pol != MERGE_POLICY_QUERY_STATE;
                if (pol == MERGE_POLICY_RANK && show >= 0)
                    want = want && schema_state_final(schema_field(pf->type, pf->field),
                                                      st->live[show].value);
                CU_ASSERT_EQUAL(conflict, want);
            }
            field_state_release(&states[slot]);
        }
    }
    /* The history must have exercised what the property is about. */
    size_t conflicts = 0, dead_total = 0;
    for (int slot = 0; slot < PROP_SLOTS; slot++) {
        conflicts += reference_conflict[slot] ? 1 : 0;
        free(reference[slot]);
    }
    for (size_t i = 0; i < n; i++)
        dead_total += all[i].sup_count;
    printf("\n    %zu writes, %zu supersedes, %d of %d fields in conflict ", n, dead_total,
           (int)conflicts, PROP_SLOTS);
    CU_ASSERT(conflicts > 0);
    CU_ASSERT(dead_total > 0);
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_merge_policy_of_fields", test_merge_policy_of_fields },
        { "test_merge_rank_values", test_merge_rank_values },
        { "test_merge_latest_display_and_conflict", test_merge_latest_display_and_conflict },
        { "test_merge_latest_tie_on_lane_and_seq", test_merge_latest_tie_on_lane_and_seq },
        { "test_merge_worst_display_and_conflict", test_merge_worst_display_and_conflict },
        { "test_merge_worst_unknown_value_ranks_lowest", test_merge_worst_unknown_value_ranks_lowest },
        { "test_merge_rank_display_and_conflict", test_merge_rank_display_and_conflict },
        { "test_merge_query_state_display", test_merge_query_state_display },
    { "test_merge_query_round_is_a_rule", test_merge_query_round_is_a_rule },
    { "test_merge_same_value_is_no_conflict", test_merge_same_value_is_no_conflict },
    { "test_merge_rank_conflict_only_at_final_states",
      test_merge_rank_conflict_only_at_final_states },
        { "test_merge_write_once_display_and_conflict", test_merge_write_once_display_and_conflict },
        { "test_merge_append_never_conflicts", test_merge_append_never_conflicts },
        { "test_merge_out_of_order_supersede", test_merge_out_of_order_supersede },
        { "test_merge_dead_write_still_supersedes", test_merge_dead_write_still_supersedes },
        { "test_merge_chain_all_orders", test_merge_chain_all_orders },
        { "test_merge_duplicates_idempotent", test_merge_duplicates_idempotent },
        { "test_merge_supersedes_deduplicated", test_merge_supersedes_deduplicated },
        { "test_merge_self_supersede_is_dead", test_merge_self_supersede_is_dead },
        { "test_merge_fork_refused", test_merge_fork_refused },
        { "test_merge_bad_writes_refused", test_merge_bad_writes_refused },
        { "test_merge_live_and_dead_bounded", test_merge_live_and_dead_bounded },
        { "test_merge_encode_decode_round_trip", test_merge_encode_decode_round_trip },
        { "test_merge_decode_refuses_truncation_and_trailing", test_merge_decode_refuses_truncation_and_trailing },
        { "test_merge_decode_refuses_non_canonical", test_merge_decode_refuses_non_canonical },
        { "test_merge_decode_refuses_above_limits", test_merge_decode_refuses_above_limits },
        { "test_merge_decode_random_bytes_never_crash", test_merge_decode_random_bytes_never_crash },
        { "test_merge_property_any_order_converges", test_merge_property_any_order_converges },
        { NULL, NULL },
    };
    unit_seed();
    return unit_run("merge", tests);
}
