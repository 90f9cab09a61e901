/*
 * fuzz_merge.c: libFuzzer harness of the merge (node/merge.c): state is a
 * function of the set of entries held, not of the order they arrive in nor
 * of how often (DESIGN.md §3).
 *
 * Input (fuzz.h): entries, each a 2-byte big-endian length and the entry's
 * bytes, as long as the length fits what is left; the rest of the input
 * chooses an order.  Entries that do not decode are dropped, and so is an
 * entry whose (origin, lane, seq) an earlier one holds with other bytes (a
 * fork: the store refuses the second before merging) and one that writes a
 * field twice (admission refuses it, validate_entry).  What is left is the
 * set; it is applied three times to empty states, the way the store applies
 * an entry (merge_entry_round, merge_write_of, merge_field_apply for each
 * write, all or nothing):
 *   A  in input order;
 *   B  in an order the tail of the input chooses (Fisher-Yates);
 *   C  in reverse order, each entry twice.
 * Properties: the three give the same refused entries and byte-identical
 * states (merge_field_encode of every field, the bytes store_digest hashes);
 * every state decodes to itself; the displayed write is a live one.
 */
#include <string.h>

#include "../../node/merge.h"
#include "../../proto/codec.h"
#include "fuzz.h"

#define FIELD_KEY_BYTES (TS_TYPE_BYTES_MAX + 1 + TS_ID_BYTES_MAX + 1 + TS_FIELD_BYTES_MAX + 1)
/* Distinct fields of one run: every write of every entry, at most. */
#define FIELDS_MAX (FUZZ_MERGE_ENTRIES_MAX * TS_WRITES_PER_ENTRY_MAX)

struct field {
    char key[FIELD_KEY_BYTES];   /* "type id field": no id holds a space (codec.h) */
    char type[TS_TYPE_BYTES_MAX + 1];
    char name[TS_FIELD_BYTES_MAX + 1];
    struct field_state st;
};

struct state {
    struct field *fields;
    size_t count;
};

static struct field *field_get(struct state *s, const struct entry *e, const char *name)
{
    char key[FIELD_KEY_BYTES];
    snprintf(key, sizeof(key), "%s %s %s", e->record_type, e->record_id, name);
    for (size_t i = 0; i < s->count; i++)
        if (strcmp(s->fields[i].key, key) == 0)
            return &s->fields[i];
    FUZZ_CHECK(s->count < FIELDS_MAX);
    struct field *f = &s->fields[s->count++];
    memset(f, 0, sizeof(*f));
    memcpy(f->key, key, sizeof(key));
    snprintf(f->type, sizeof(f->type), "%s", e->record_type);
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

/* Applies e's writes all or nothing; returns whether e was taken. */
static bool state_apply(struct state *s, const struct entry *e)
{
    if (e->record_type[0] == '\0' || e->record_id[0] == '\0')
        return e->writes_count == 0;  /* the store keeps such an entry in the oplog only */
    struct field *touched[TS_WRITES_PER_ENTRY_MAX];
    uint8_t *before[TS_WRITES_PER_ENTRY_MAX];
    size_t before_len[TS_WRITES_PER_ENTRY_MAX];
    size_t n = 0;
    uint32_t round = merge_entry_round(e);
    bool taken = true;
    for (size_t i = 0; i < e->writes_count && taken; i++) {
        struct field *f = field_get(s, e, e->writes[i].field);
        FUZZ_CHECK(merge_field_encode(&f->st, &before[n], &before_len[n]) == 0);
        touched[n++] = f;
        struct merge_write mw;
        merge_write_of(e, &e->writes[i], round, &mw);
        int rc = merge_field_apply(&f->st, &mw);
        /* On a fork-free set a fork is impossible: one ref, one entry. */
        FUZZ_CHECK(rc != TS_ERR_FORK);
        taken = rc >= 0;
    }
    /* Refused: every field goes back to what it was, in reverse order. */
    while (n > 0) {
        n--;
        if (!taken) {
            field_state_release(&touched[n]->st);
            FUZZ_CHECK(merge_field_decode(before[n], before_len[n], &touched[n]->st) == 0);
        }
        free(before[n]);
    }
    return taken;
}

static int field_cmp(const void *a, const void *b)
{
    return strcmp(((const struct field *)a)->key, ((const struct field *)b)->key);
}

/*
 * The canonical bytes of a state: every field that holds a write, sorted by
 * key, as key NUL and merge_field_encode's bytes.  A field left empty (a
 * refused or dead-on-arrival write) is not stored by the store either.
 */
static uint8_t *state_dump(struct state *s, size_t *len)
{
    qsort(s->fields, s->count, sizeof(s->fields[0]), field_cmp);
    size_t cap = 1024, n = 0;
    uint8_t *out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    for (size_t i = 0; i < s->count; i++) {
        struct field *f = &s->fields[i];
        if (f->st.live_count == 0 && f->st.dead_count == 0)
            continue;
        uint8_t *enc = NULL, *again = NULL;
        size_t enc_len = 0, again_len = 0;
        FUZZ_CHECK(merge_field_encode(&f->st, &enc, &enc_len) == 0);
        /* Stored state reads back as itself. */
        struct field_state d;
        FUZZ_CHECK(merge_field_decode(enc, enc_len, &d) == 0);
        FUZZ_CHECK(merge_field_encode(&d, &again, &again_len) == 0);
        FUZZ_CHECK(again_len == enc_len && memcmp(again, enc, enc_len) == 0);
        free(again);
        field_state_release(&d);
        /* The displayed write is a live one, and there is one when any is live. */
        int shown = merge_display(f->type, f->name, &f->st);
        FUZZ_CHECK(f->st.live_count > 0 ? shown >= 0 && (size_t)shown < f->st.live_count
                                        : shown == -1);
        size_t klen = strlen(f->key) + 1;
        while (n + klen + enc_len > cap) {
            cap *= 2;
            out = realloc(out, cap);
            FUZZ_CHECK(out != NULL);
        }
        memcpy(out + n, f->key, klen);
        memcpy(out + n + klen, enc, enc_len);
        n += klen + enc_len;
        free(enc);
    }
    *len = n;
    return out;
}

static void state_release(struct state *s)
{
    for (size_t i = 0; i < s->count; i++)
        field_state_release(&s->fields[i].st);
    s->count = 0;
}

static bool writes_a_field_twice(const struct entry *e)
{
    for (size_t i = 0; i < e->writes_count; i++)
        for (size_t j = i + 1; j < e->writes_count; j++)
            if (strcmp(e->writes[i].field, e->writes[j].field) == 0)
                return true;
    return false;
}

struct held {
    struct entry e;
    const uint8_t *bytes;
    size_t len;
};

/* Splits the input into held entries (the set); returns where the order bytes start. */
static size_t input_split(const uint8_t *data, size_t size, struct held *h, size_t *count)
{
    size_t at = 0;
    *count = 0;
    while (*count < FUZZ_MERGE_ENTRIES_MAX && size - at >= FUZZ_MERGE_LEN_BYTES) {
        size_t len = (size_t)data[at] << 8 | data[at + 1];
        if (len > size - at - FUZZ_MERGE_LEN_BYTES)
            break;
        const uint8_t *bytes = data + at + FUZZ_MERGE_LEN_BYTES;
        at += FUZZ_MERGE_LEN_BYTES + len;
        struct held *x = &h[*count];
        if (codec_entry_decode(bytes, len, &x->e, NULL) != 0)
            continue;
        bool drop = writes_a_field_twice(&x->e);
        for (size_t i = 0; i < *count && !drop; i++) {
            if (x->e.lane == h[i].e.lane && x->e.seq == h[i].e.seq &&
                strcmp(x->e.origin, h[i].e.origin) == 0)
                drop = len != h[i].len || memcmp(bytes, h[i].bytes, len) != 0;
        }
        if (drop) {
            entry_release(&x->e);
            continue;
        }
        x->bytes = bytes;
        x->len = len;
        (*count)++;
    }
    return at;
}

static uint8_t *run(struct held *h, const size_t *order, size_t n, size_t times, bool *taken,
                    size_t *len)
{
    static struct field fields[FIELDS_MAX];
    struct state s = {fields, 0};
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < times; t++) {
            bool ok = state_apply(&s, &h[order[i]].e);
            /* An entry taken once is taken again (a no-op), refused again if refused. */
            FUZZ_CHECK(t == 0 || ok == taken[order[i]]);
            taken[order[i]] = ok;
        }
    uint8_t *dump = state_dump(&s, len);
    state_release(&s);
    return dump;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct held held[FUZZ_MERGE_ENTRIES_MAX];
    size_t n = 0;
    size_t tail = input_split(data, size, held, &n);
    const uint8_t *pick = data + tail;
    size_t pick_len = size - tail;

    size_t order_a[FUZZ_MERGE_ENTRIES_MAX], order_b[FUZZ_MERGE_ENTRIES_MAX],
        order_c[FUZZ_MERGE_ENTRIES_MAX];
    for (size_t i = 0; i < n; i++) {
        order_a[i] = i;
        order_b[i] = i;
        order_c[i] = n - 1 - i;
    }
    for (size_t i = n; i > 1 && pick_len > 0; i--) {
        size_t j = pick[(n - i) % pick_len] % i;
        size_t t = order_b[i - 1];
        order_b[i - 1] = order_b[j];
        order_b[j] = t;
    }

    bool taken_a[FUZZ_MERGE_ENTRIES_MAX], taken_b[FUZZ_MERGE_ENTRIES_MAX],
        taken_c[FUZZ_MERGE_ENTRIES_MAX];
    size_t len_a, len_b, len_c;
    uint8_t *a = run(held, order_a, n, 1, taken_a, &len_a);
    uint8_t *b = run(held, order_b, n, 1, taken_b, &len_b);
    uint8_t *c = run(held, order_c, n, 2, taken_c, &len_c);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(taken_a[i] == taken_b[i]);
        FUZZ_CHECK(taken_a[i] == taken_c[i]);
    }
    FUZZ_CHECK(len_a == len_b && memcmp(a, b, len_a) == 0);
    FUZZ_CHECK(len_a == len_c && memcmp(a, c, len_a) == 0);
    free(a);
    free(b);
    free(c);
    for (size_t i = 0; i < n; i++)
        entry_release(&held[i].e);
    return 0;
}
