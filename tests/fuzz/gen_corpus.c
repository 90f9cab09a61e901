/*
 * gen_corpus.c: writes the seed corpora of the binary harnesses with the
 * real encoders (codec_entry_encode, codec_frame_encode), so every seed is a
 * valid input the decoders must accept.
 *
 *   gen_corpus DIR    writes DIR/entry/, frame/, merge/, http/ and write_body/
 *
 * The committed seeds (tests/fuzz/corpus/) come from this program; run it
 * again after a change to the wire format or the API and commit what
 * changed.  The requests are the ones the CLI and a browser send.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../../proto/codec.h"
#include "fuzz.h"
#include "fuzz_api.h"

static const char *out_dir;

static void write_file(const char *target, const char *name, const uint8_t *bytes, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", out_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* An entry of origin/lane/seq writing record (type, id) with nw fields. */
struct seed_entry {
    struct entry e;
    struct field_write w[4];
    struct entry_ref sup[4][2];
};

static void seed_entry_init(struct seed_entry *s, const char *origin, uint8_t lane, uint64_t seq,
                            uint64_t hlc, const char *type, const char *id, const char *site)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->e.origin, sizeof(s->e.origin), "%s", origin);
    s->e.lane = lane;
    s->e.seq = seq;
    s->e.hlc = hlc;
    s->e.wall_ms = 1767225600000ULL + seq * 1000;
    s->e.user = (char *)"coordinator";
    s->e.reason = (char *)"";
    snprintf(s->e.record_type, sizeof(s->e.record_type), "%s", type);
    snprintf(s->e.record_id, sizeof(s->e.record_id), "%s", id);
    snprintf(s->e.site, sizeof(s->e.site), "%s", site);
    for (size_t i = 0; i < TS_HASH_BYTES; i++)
        s->e.prev_hash[i] = (uint8_t)(seq * 31 + i);
    s->e.writes = s->w;
}

/* Adds a write of field = value superseding the refs given (at most 2). */
static void seed_write(struct seed_entry *s, const char *field, const char *value,
                       const struct entry_ref *sup, size_t nsup)
{
    size_t i = s->e.writes_count++;
    snprintf(s->w[i].field, sizeof(s->w[i].field), "%s", field);
    s->w[i].value = (char *)value;
    for (size_t j = 0; j < nsup; j++)
        s->sup[i][j] = sup[j];
    s->w[i].supersedes = nsup > 0 ? s->sup[i] : NULL;
    s->w[i].supersedes_count = nsup;
}

static size_t encode(const struct seed_entry *s, uint8_t **out)
{
    size_t len = 0;
    struct ts_error err = {0, ""};
    if (codec_entry_encode(&s->e, out, &len, &err) != 0) {
        fprintf(stderr, "gen_corpus: %s\n", err.msg);
        exit(1);
    }
    return len;
}

/* The entries every corpus is built from: a subject, its visit, a serious
 * AE on the safety lane, a hub's query, and concurrent corrections. */
#define SEEDS 8
static struct seed_entry seeds[SEEDS];

static void seeds_make(void)
{
    struct entry_ref s1 = {.origin = "101", .lane = LANE_BULK, .seq = 1};
    struct entry_ref s2 = {.origin = "101", .lane = LANE_BULK, .seq = 2};
    struct entry_ref h1 = {.origin = "hub1", .lane = LANE_BULK, .seq = 1};

    seed_entry_init(&seeds[0], "101", LANE_BULK, 1, 1000, "subject", "101-0003", "101");
    seed_write(&seeds[0], "site", "101", NULL, 0);
    seed_write(&seeds[0], "sex", "F", NULL, 0);
    seed_write(&seeds[0], "brthdtc", "1961-04", NULL, 0);
    seed_write(&seeds[0], "status", "screening", NULL, 0);

    /* The site corrects sex and moves the subject on. */
    seed_entry_init(&seeds[1], "101", LANE_BULK, 2, 2000, "subject", "101-0003", "101");
    seeds[1].e.reason = (char *)"transcription error";
    seed_write(&seeds[1], "sex", "M", &s1, 1);
    seed_write(&seeds[1], "status", "enrolled", &s1, 1);

    /* The hub, concurrently, corrects sex too (a conflict with seeds[1]). */
    seed_entry_init(&seeds[2], "hub1", LANE_BULK, 1, 2000, "subject", "101-0003", "101");
    seeds[2].e.reason = (char *)"source data verification";
    seeds[2].e.user = (char *)"monitor";
    seed_write(&seeds[2], "sex", "U", &s1, 1);

    /* A later write that saw both and settles the conflict. */
    struct entry_ref both[2] = {s2, h1};
    seed_entry_init(&seeds[3], "101", LANE_BULK, 3, 3000, "subject", "101-0003", "101");
    seeds[3].e.reason = (char *)"resolved with monitor";
    seed_write(&seeds[3], "sex", "M", both, 2);

    seed_entry_init(&seeds[4], "101", LANE_BULK, 4, 3100, "visit", "101-0003/V1", "101");
    seed_write(&seeds[4], "svstdtc", "2026-01-05T09:30", NULL, 0);
    seed_write(&seeds[4], "svoccur", "Y", NULL, 0);
    seed_write(&seeds[4], "status", "started", NULL, 0);

    seed_entry_init(&seeds[5], "101", LANE_SAFETY, 1, 3200, "ae", "101-0003-AE-001", "101");
    seed_write(&seeds[5], "aeterm", "Pneumonia", NULL, 0);
    seed_write(&seeds[5], "aeser", "Y", NULL, 0);
    seed_write(&seeds[5], "aesev", "SEVERE", NULL, 0);
    seed_write(&seeds[5], "sae_aware_dtc", "2026-01-05T10:00:00Z", NULL, 0);

    seed_entry_init(&seeds[6], "hub1", LANE_BULK, 2, 3300, "query", "Q-hub1-1", "101");
    seed_write(&seeds[6], "target", "subject/101-0003/brthdtc", NULL, 0);
    seed_write(&seeds[6], "text", "Please confirm the year of birth.", NULL, 0);
    seed_write(&seeds[6], "state", "open", NULL, 0);
    seed_write(&seeds[6], "round", "1", NULL, 0);

    struct entry_ref q1 = {.origin = "hub1", .lane = LANE_BULK, .seq = 2};
    seed_entry_init(&seeds[7], "101", LANE_BULK, 5, 3400, "query", "Q-hub1-1", "101");
    seed_write(&seeds[7], "state", "answered", &q1, 1);
    seed_write(&seeds[7], "messages", "Confirmed against the source: 1961.", NULL, 0);
}

static void gen_entries(void)
{
    static const char *names[SEEDS] = {"subject_new", "subject_correction", "subject_hub_edit",
                                       "subject_settle", "visit", "ae_serious", "query_open",
                                       "query_answer"};
    for (size_t i = 0; i < SEEDS; i++) {
        uint8_t *enc = NULL;
        size_t len = encode(&seeds[i], &enc);
        write_file("entry", names[i], enc, len);
        free(enc);
    }
}

/* A batch frame of the given seeds (consecutive seqs of one chain). */
static void gen_batch(const char *name, const size_t *idx, size_t n, bool hole, bool cert)
{
    static const uint8_t hole_hash[TS_HASH_BYTES] = {7};
    struct frame f;
    uint8_t *ents[4];
    const uint8_t *ptrs[4];
    size_t lens[4];
    memset(&f, 0, sizeof(f));
    f.type = FRAME_BATCH;
    snprintf(f.batch.trial, sizeof(f.batch.trial), "T1");
    snprintf(f.batch.origin, sizeof(f.batch.origin), "%s", seeds[idx[0]].e.origin);
    snprintf(f.batch.cert_serial, sizeof(f.batch.cert_serial), "5A0F31C2");
    f.batch.lane = seeds[idx[0]].e.lane;
    f.batch.first_seq = seeds[idx[0]].e.seq;
    for (size_t i = 0; i < n; i++) {
        lens[i] = encode(&seeds[idx[i]], &ents[i]);
        ptrs[i] = ents[i];
    }
    if (hole) {
        ptrs[0] = hole_hash;
        lens[0] = BATCH_HOLE_LEN;
    }
    f.batch.entries = ptrs;
    f.batch.entry_lens = lens;
    f.batch.count = n;
    for (size_t i = 0; i < TS_HASH_BYTES; i++)
        f.batch.chain_hash[i] = (uint8_t)(i * 7);
    f.batch.signature_len = 64;
    for (size_t i = 0; i < 64; i++)
        f.batch.signature[i] = (uint8_t)(255 - i);
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
    if (cert) {
        f.batch.origin_cert = pem;
        f.batch.origin_cert_len = sizeof(pem) - 1;
    }
    uint8_t *enc = NULL;
    size_t len = 0;
    struct ts_error err = {0, ""};
    if (codec_frame_encode(&f, &enc, &len, &err) != 0) {
        fprintf(stderr, "gen_corpus: batch %s: %s\n", name, err.msg);
        exit(1);
    }
    write_file("frame", name, enc, len);
    free(enc);
    for (size_t i = 0; i < n; i++)
        free(ents[i]);
}

static void gen_frame(const char *name, struct frame *f)
{
    uint8_t *enc = NULL;
    size_t len = 0;
    struct ts_error err = {0, ""};
    if (codec_frame_encode(f, &enc, &len, &err) != 0) {
        fprintf(stderr, "gen_corpus: frame %s: %s\n", name, err.msg);
        exit(1);
    }
    write_file("frame", name, enc, len);
    free(enc);
}

static void gen_frames(void)
{
    struct vv_item vv[3] = {
        {.origin = "101", .lane = LANE_SAFETY, .seq = 1},
        {.origin = "101", .lane = LANE_BULK, .seq = 5},
        {.origin = "hub1", .lane = LANE_BULK, .seq = 0},
    };

    struct frame f;
    memset(&f, 0, sizeof(f));
    f.type = FRAME_HELLO;
    snprintf(f.trial, sizeof(f.trial), "T1");
    snprintf(f.node_id, sizeof(f.node_id), "101");
    f.protocol_version = 2;
    f.protocol_version_min = 1;
    f.wall_ms = 1767225600000ULL;
    f.vector = vv;
    f.vector_count = 3;
    gen_frame("hello", &f);

    memset(&f, 0, sizeof(f));
    f.type = FRAME_ACK;
    f.vector = vv;
    f.vector_count = 2;
    gen_frame("ack", &f);

    memset(&f, 0, sizeof(f));
    f.type = FRAME_REFUSAL;
    f.reason = (char *)"chain 101/bulk: signature does not verify";
    f.vector = &vv[1];
    f.vector_count = 1;
    f.retry_after_ms = 5000;
    gen_frame("refusal_chain", &f);

    memset(&f, 0, sizeof(f));
    f.type = FRAME_REFUSAL;
    f.reason = (char *)"revoked";
    gen_frame("refusal_link", &f);

    const size_t site_bulk[] = {0, 1, 3}, safety[] = {5}, hub[] = {2, 6};
    gen_batch("batch_site_bulk", site_bulk, 3, false, false);
    gen_batch("batch_hole", site_bulk, 3, true, false);
    gen_batch("batch_safety_cert", safety, 1, false, true);
    gen_batch("batch_hub", hub, 2, false, false);
}

/* Appends one length-prefixed entry to buf (fuzz.h's merge input). */
static size_t merge_put(uint8_t *buf, size_t at, size_t cap, const struct seed_entry *s)
{
    uint8_t *enc = NULL;
    size_t len = encode(s, &enc);
    if (at + FUZZ_MERGE_LEN_BYTES + len > cap || len > 0xffff) {
        fprintf(stderr, "gen_corpus: merge seed too big\n");
        exit(1);
    }
    buf[at] = (uint8_t)(len >> 8);
    buf[at + 1] = (uint8_t)len;
    memcpy(buf + at + 2, enc, len);
    free(enc);
    return at + FUZZ_MERGE_LEN_BYTES + len;
}

static void gen_merges(void)
{
    static uint8_t buf[16384];
    /* Every seed, in order, then order bytes. */
    size_t at = 0;
    for (size_t i = 0; i < SEEDS; i++)
        at = merge_put(buf, at, sizeof(buf), &seeds[i]);
    static const uint8_t order[] = {0xff, 0xff, 5, 3, 7, 1, 0, 2, 6, 4};
    memcpy(buf + at, order, sizeof(order));
    write_file("merge", "all", buf, at + sizeof(order));

    /* The conflict and its resolution, newest first, one entry twice. */
    at = 0;
    const size_t conflict[] = {3, 2, 1, 0, 2};
    for (size_t i = 0; i < 5; i++)
        at = merge_put(buf, at, sizeof(buf), &seeds[conflict[i]]);
    static const uint8_t order2[] = {0xff, 0xff, 1, 2};
    memcpy(buf + at, order2, sizeof(order2));
    write_file("merge", "conflict", buf, at + sizeof(order2));

    /* The query thread. */
    at = 0;
    at = merge_put(buf, at, sizeof(buf), &seeds[7]);
    at = merge_put(buf, at, sizeof(buf), &seeds[6]);
    write_file("merge", "query", buf, at);
}

/* An HTTP seed: the harness's first byte (node, read size), then the request. */
static void gen_request(const char *target, const char *name, uint8_t first, const char *text)
{
    static uint8_t buf[8192];
    size_t len = strlen(text);
    if (len + 1 > sizeof(buf)) {
        fprintf(stderr, "gen_corpus: request %s too big\n", name);
        exit(1);
    }
    buf[0] = first;
    memcpy(buf + 1, text, len);
    write_file(target, name, buf, len + 1);
}

/* A POST of body to path with the token, as the CLI sends it. */
static void gen_post(const char *name, uint8_t first, const char *path, const char *body)
{
    char req[4096];
    snprintf(req, sizeof(req),
             "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " FUZZ_API_TOKEN
             "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             path, strlen(body), body);
    gen_request("http", name, first, req);
}

#define AUTH "Authorization: Bearer " FUZZ_API_TOKEN "\r\n"
#define HUB 0x00
#define SITE 0x01

static const char subject_body[] =
    "{\"fields\":{\"site\":\"101\",\"sex\":\"F\",\"brthdtc\":\"1961-04\","
    "\"status\":\"screening\"},\"reason\":\"\",\"user\":\"coordinator\"}";
static const char ae_body[] =
    "{\"fields\":{\"aeterm\":\"Pneumonia\",\"aestdtc\":\"2026-01-04\",\"aeser\":\"Y\","
    "\"aeshosp\":\"Y\",\"aesev\":\"SEVERE\",\"aetoxgr\":\"3\",\"status\":\"ongoing\","
    "\"sae_aware_dtc\":\"2026-01-05T10:00:00Z\"},\"user\":\"investigator\"}";
static const char visit_body[] =
    "{\"fields\":{\"svstdtc\":\"2026-01-05T09:30\",\"svoccur\":\"Y\",\"status\":\"started\"}}";
static const char correction_body[] =
    "{\"fields\":{\"sex\":\"M\",\"status\":\"enrolled\"},\"reason\":\"transcription error\","
    "\"user\":\"coordinator\"}";
static const char query_body[] =
    "{\"fields\":{\"target\":\"subject/101-0003/brthdtc\",\"text\":\"Please confirm the year."
    "\",\"state\":\"open\",\"round\":\"1\",\"source\":\"monitor\"},\"user\":\"dm\"}";
static const char answer_body[] =
    "{\"fields\":{\"state\":\"answered\",\"messages\":\"Confirmed: 1961.\"},"
    "\"user\":\"coordinator\"}";
static const char coding_body[] =
    "{\"fields\":{\"aedecod\":\"Pneumonia\",\"aeptcd\":\"10035664\",\"aebodsys\":"
    "\"Infections and infestations\",\"aesoccd\":\"10021881\",\"meddra_ver\":\"27.0\"},"
    "\"user\":\"coder\"}";
static const char member_body[] =
    "{\"fields\":{\"status\":\"active\",\"name\":\"Charit\u00e9 Berlin\"},"
    "\"reason\":\"site added\",\"user\":\"admin\"}";
static const char import_body[] =
    "{\"rows\":[{\"type\":\"subject\",\"id\":\"101-0004\",\"fields\":{\"site\":\"101\","
    "\"sex\":\"M\"}},{\"type\":\"subject\",\"id\":\"101-0005\",\"fields\":{\"site\":"
    "\"101\",\"sex\":\"U\"},\"reason\":\"migrated\"}],\"user\":\"coordinator\","
    "\"dry_run\":false}";

static void gen_requests(void)
{
    gen_post("site_write_subject", SITE, "/v1/records/subject/101-0003", subject_body);
    gen_post("site_write_ae", SITE, "/v1/records/ae/101-0003-AE-001", ae_body);
    gen_post("site_write_visit", SITE, "/v1/records/visit/101-0003/V1", visit_body);
    gen_post("site_import", SITE, "/v1/import", import_body);
    gen_post("hub_write_query", HUB, "/v1/records/query/Q-hub1-1", query_body);
    gen_post("hub_coding", HUB, "/v1/records/ae/101-0003-AE-001", coding_body);
    gen_post("hub_member", HUB, "/v1/members/102", member_body);
    gen_post("hub_backup", HUB, "/v1/backup", "{\"path\":\"/b1\"}");
    /* A write, its read and history, pipelined in 7-byte reads. */
    char req[4096];
    snprintf(req, sizeof(req),
             "POST /v1/records/subject/101-0003 HTTP/1.1\r\n" AUTH "Content-Length: %zu\r\n\r\n%s"
             "GET /v1/records/subject/101-0003 HTTP/1.1\r\n" AUTH "\r\n"
             "GET /v1/records/subject/101-0003/history HTTP/1.1\r\n" AUTH "Connection: close\r\n\r\n",
             strlen(correction_body), correction_body);
    gen_request("http", "site_correct_read_pipelined", SITE | 7 << 1, req);
    gen_request("http", "hub_reads_pipelined", HUB,
                "GET /v1/status HTTP/1.1\r\n" AUTH "\r\n"
                "GET /v1/digest HTTP/1.1\r\n" AUTH "\r\n"
                "GET /v1/conflicts HTTP/1.1\r\n" AUTH "\r\n"
                "GET /v1/records?type=subject HTTP/1.1\r\n" AUTH "\r\n"
                "GET /v1/saes HTTP/1.1\r\n" AUTH "\r\n"
                "GET /metrics HTTP/1.1\r\n" AUTH "\r\n");
    gen_request("http", "hub_healthz", HUB, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    gen_request("http", "hub_dashboard", HUB,
                "GET /dashboard?token=" FUZZ_API_TOKEN " HTTP/1.1\r\n\r\n"
                "GET /dashboard HTTP/1.1\r\nCookie: theme=dark; ts_token=" FUZZ_API_TOKEN "\r\n\r\n"
                "GET /dashboard/app.js HTTP/1.1\r\nCookie: ts_token=" FUZZ_API_TOKEN "\r\n\r\n"
                "GET /dashboard HTTP/1.1\r\n\r\n");
    gen_request("http", "site_chunked_body", SITE,
                "POST /v1/records/subject/101-0003 HTTP/1.1\r\n" AUTH
                "Transfer-Encoding: chunked\r\n\r\n"
                "16\r\n{\"fields\":{\"sex\":\"U\"},\r\n"
                "15\r\n\"reason\":\"corrected\"}\r\n0\r\n\r\n");
    gen_request("http", "wrong_token", HUB,
                "GET /v1/status HTTP/1.1\r\nAuthorization: Bearer wrong-token-0123456789\r\n\r\n"
                "GET /v1/records/subject/101-0003 HTTP/1.1\r\nCookie: ts_token=nope\r\n\r\n");

    /* The write-body harness's seeds: node byte, "path" line, body. */
    static const struct {
        const char *name;
        uint8_t first;
        const char *path, *body;
    } bodies[] = {
        {"subject", SITE, "records/subject/101-0003", subject_body},
        {"subject_correction", SITE, "records/subject/101-0003", correction_body},
        {"visit", SITE, "records/visit/101-0003/V1", visit_body},
        {"ae_serious", SITE, "records/ae/101-0003-AE-001", ae_body},
        {"query_answer", SITE, "records/query/Q-hub1-1", answer_body},
        {"import", SITE, "import", import_body},
        {"query_open", HUB, "records/query/Q-hub1-1", query_body},
        {"ae_coding", HUB, "records/ae/101-0003-AE-001", coding_body},
        {"member", HUB, "members/102", member_body},
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char text[4096];
        snprintf(text, sizeof(text), "%s\n%s", bodies[i].path, bodies[i].body);
        gen_request("write_body", bodies[i].name, bodies[i].first, text);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    out_dir = argv[1];
    seeds_make();
    gen_entries();
    gen_frames();
    gen_merges();
    gen_requests();
    return 0;
}
