/*
 * test_metrics.c: the Prometheus exposition of a node's status: exact sample
 * lines, label escaping, cumulative histogram buckets, absent fields left
 * out (an older node), deterministic order, and a well-formed exposition
 * (every family's # HELP and # TYPE once, before its samples, its samples
 * together).
 */
#include "unit.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../../node/metrics.h"
#include "../../proto/errors.h"

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (j == NULL)
        fprintf(stderr, "bad test JSON at line %d: %s\n", err.line, err.text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    return j;
}

/* Renders; the test fails when rendering does. Caller frees. */
static char *render(const json_t *status, const json_t *saes)
{
    char *out = NULL;
    size_t len = 0;
    int rc = metrics_render(status, saes, &out, &len);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_EQUAL(strlen(out), len);
    return out;
}

/* True when text holds line as a whole line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        bool starts = p == text || p[-1] == '\n';
        bool ends = p[n] == '\n' || p[n] == '\0';
        if (starts && ends)
            return true;
    }
    return false;
}

static void assert_line(const char *text, const char *line)
{
    if (!has_line(text, line))
        fprintf(stderr, "\nmissing line: %s\n--- in:\n%s---\n", line, text);
    CU_ASSERT(has_line(text, line));
}

static void assert_no_line(const char *text, const char *line)
{
    if (has_line(text, line))
        fprintf(stderr, "\nunexpected line: %s\n", line);
    CU_ASSERT(!has_line(text, line));
}

static size_t count_substr(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/*
 * Checks the exposition's structure the way a scraper reads it: each family
 * has one # HELP then one # TYPE line before its samples; every sample's
 * name is the family's (histograms: _bucket, _sum, _count); a family's
 * samples are contiguous; every value is a number; label sets are
 * {name="value",...} with escaped values.  Returns the number of samples.
 */
static size_t check_well_formed(const char *text)
{
    char family[128] = "";
    char type[32] = "";
    char seen[64][128];
    size_t seen_count = 0;
    size_t samples = 0;
    const char *p = text;

    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        CU_ASSERT_PTR_NOT_NULL_FATAL(eol);  /* every line ends with a line feed */
        char line[4096];
        size_t n = (size_t)(eol - p);
        CU_ASSERT_FATAL(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p = eol + 1;

        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[128];
            CU_ASSERT_FATAL(sscanf(line + 7, "%127s", name) == 1);
            for (size_t i = 0; i < seen_count; i++)
                CU_ASSERT(strcmp(seen[i], name) != 0);  /* a family appears once */
            CU_ASSERT_FATAL(seen_count < 64);
            snprintf(seen[seen_count++], sizeof(seen[0]), "%s", name);
            snprintf(family, sizeof(family), "%s", name);
            type[0] = '\0';
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128];
            CU_ASSERT_FATAL(sscanf(line + 7, "%127s %31s", name, type) == 2);
            CU_ASSERT_STRING_EQUAL(name, family);
            CU_ASSERT(strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0 ||
                      strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0)
                CU_ASSERT(strlen(name) > 6 && strcmp(name + strlen(name) - 6, "_total") == 0);
            continue;
        }
        CU_ASSERT_FATAL(line[0] != '#');
        CU_ASSERT_FATAL(type[0] != '\0');  /* a sample before its family's TYPE */
        size_t name_len = strcspn(line, "{ ");
        char name[128];
        CU_ASSERT_FATAL(name_len < sizeof(name));
        memcpy(name, line, name_len);
        name[name_len] = '\0';
        if (strcmp(type, "histogram") == 0) {
            size_t fl = strlen(family);
            CU_ASSERT(strncmp(name, family, fl) == 0);
            CU_ASSERT(strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
                      strcmp(name + fl, "_count") == 0);
        } else {
            CU_ASSERT_STRING_EQUAL(name, family);
        }
        const char *q = line + name_len;
        if (*q == '{') {
            q++;
            while (*q != '}') {
                size_t ln = strspn(q, "abcdefghijklmnopqrstuvwxyz_");
                CU_ASSERT_FATAL(ln > 0);
                q += ln;
                CU_ASSERT_FATAL(q[0] == '=' && q[1] == '"');
                q += 2;
                while (*q != '"') {
                    CU_ASSERT_FATAL(*q != '\0');
                    if (*q == '\\') {
                        CU_ASSERT_FATAL(q[1] == '\\' || q[1] == '"' || q[1] == 'n');
                        q++;
                    }
                    q++;
                }
                q++;
                if (*q == ',')
                    q++;
                else
                    CU_ASSERT_FATAL(*q == '}');
            }
            q++;
        }
        CU_ASSERT_FATAL(*q == ' ');
        char *end;
        double v = strtod(q + 1, &end);
        CU_ASSERT(*end == '\0');
        CU_ASSERT(!isnan(v));
        samples++;
    }
    return samples;
}

/* A status as the node answers it, with every field of the data contract. */
static const char full_status[] =
    "{\"node\":\"hub1\",\"role\":\"hub\",\"trial\":\"T1\",\"entries\":1200,\"records\":310,"
    "\"conflicts\":2,\"store_bytes\":5242880,\"disk_free_bytes\":10737418240,"
    "\"accepting_writes\":true,\"uptime_s\":3600,\"writes_refused_disk\":0,"
    "\"version_vector\":[{\"origin\":\"101\",\"lane\":\"safety\",\"seq\":3}],"
    "\"peers\":["
    " {\"id\":\"101\",\"role\":\"site\",\"connected\":true,\"last_seen\":\"2026-11-20T10:00:00.000Z\","
    "  \"last_seen_age_s\":1,\"behind_send_safety\":0,\"behind_send_bulk\":4,"
    "  \"behind_recv_safety\":1,\"behind_recv_bulk\":250,\"entries_sent\":12,"
    "  \"entries_received\":900,\"bytes_sent\":4096,\"bytes_received\":1048576,"
    "  \"batches_refused\":0,\"revoked\":false,\"saes_in_flight\":1},"
    " {\"id\":\"102\",\"role\":\"site\",\"connected\":false,\"last_seen\":null,"
    "  \"last_seen_age_s\":null,\"behind_send_safety\":0,\"behind_send_bulk\":0,"
    "  \"behind_recv_safety\":0,\"behind_recv_bulk\":0,\"entries_sent\":0,"
    "  \"entries_received\":0,\"bytes_sent\":0,\"bytes_received\":0,"
    "  \"batches_refused\":3,\"revoked\":true,\"saes_in_flight\":0}],"
    "\"handshake_failures\":{\"trial\":0,\"certificate\":5,\"role\":1,\"revoked\":2,"
    " \"protocol\":0,\"other\":0},"
    "\"sae\":{\"in_flight\":1,\"late\":0,\"at_risk\":1,\"alarms\":2},"
    "\"commit_latency\":{\"bounds_s\":[0.0001,0.00025,0.0005,0.001,0.0025,0.005,0.01,0.025,"
    " 0.1,1.0],\"counts\":[5,10,20,40,15,5,3,1,1,0,0],\"sum_s\":0.125,\"count\":100}}";

static void test_metrics_full_status_lines(void)
{
    json_t *s = parse(full_status);
    char *out = render(s, NULL);

    assert_line(out, "# HELP trialsync_peer_connected 1 while a session with the peer is up, "
                     "0 otherwise.");
    assert_line(out, "# TYPE trialsync_peer_connected gauge");
    assert_line(out, "trialsync_info{node=\"hub1\",role=\"hub\",trial=\"T1\"} 1");
    assert_line(out, "trialsync_peer_connected{peer=\"101\",role=\"site\"} 1");
    assert_line(out, "trialsync_peer_connected{peer=\"102\",role=\"site\"} 0");
    assert_line(out, "trialsync_peer_revoked{peer=\"102\"} 1");
    assert_line(out, "trialsync_peer_last_seen_age_seconds{peer=\"101\"} 1");
    assert_line(out, "trialsync_peer_behind_entries{peer=\"101\",lane=\"bulk\",direction=\"send\"} 4");
    assert_line(out, "trialsync_peer_behind_entries{peer=\"101\",lane=\"safety\",direction=\"receive\"} 1");
    assert_line(out, "trialsync_peer_behind_entries{peer=\"101\",lane=\"bulk\",direction=\"receive\"} 250");
    assert_line(out, "# TYPE trialsync_peer_sent_bytes_total counter");
    assert_line(out, "trialsync_peer_sent_bytes_total{peer=\"101\"} 4096");
    assert_line(out, "trialsync_peer_received_bytes_total{peer=\"101\"} 1048576");
    assert_line(out, "trialsync_peer_sent_entries_total{peer=\"101\"} 12");
    assert_line(out, "trialsync_peer_received_entries_total{peer=\"101\"} 900");
    assert_line(out, "trialsync_peer_batches_refused_total{peer=\"102\"} 3");
    assert_line(out, "trialsync_peer_saes_in_flight{peer=\"101\"} 1");
    assert_line(out, "# TYPE trialsync_handshake_failures_total counter");
    assert_line(out, "trialsync_handshake_failures_total{reason=\"certificate\"} 5");
    assert_line(out, "trialsync_handshake_failures_total{reason=\"trial\"} 0");
    assert_line(out, "trialsync_sae_in_flight 1");
    assert_line(out, "trialsync_sae_late 0");
    assert_line(out, "trialsync_sae_at_risk 1");
    assert_line(out, "# TYPE trialsync_sae_alarms_total counter");
    assert_line(out, "trialsync_sae_alarms_total 2");
    assert_line(out, "trialsync_conflicts_open 2");
    assert_line(out, "trialsync_store_size_bytes 5242880");
    assert_line(out, "trialsync_disk_free_bytes 10737418240");
    assert_line(out, "trialsync_entries 1200");
    assert_line(out, "trialsync_records 310");
    assert_line(out, "trialsync_accepting_writes 1");
    assert_line(out, "trialsync_writes_refused_disk_total 0");
    assert_line(out, "trialsync_uptime_seconds 3600");
    assert_line(out, "# TYPE trialsync_commit_duration_seconds histogram");
    /* Never seen: no age sample rather than a made-up one. */
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_peer_last_seen_age_seconds{peer=\"102\"}"));
    assert_no_line(out, "trialsync_peer_last_seen_age_seconds{peer=\"102\"} 0");
    /* The version vector is the status's business, not a metric. */
    CU_ASSERT_PTR_NULL(strstr(out, "version_vector"));
    /* 1 info + 2*2 connected/revoked + 1 age + 8 behind + 2*6 per-peer + 6 failures
     * + 4 sae + 8 node + 11 buckets + sum + count. */
    CU_ASSERT_EQUAL(check_well_formed(out), 1 + 4 + 1 + 8 + 12 + 6 + 4 + 8 + 11 + 2);
    free(out);
    json_decref(s);
}

static void test_metrics_histogram_is_cumulative(void)
{
    json_t *s = parse(full_status);
    char *out = render(s, NULL);
    /* Per-bucket counts 5,10,20,40,15,5,3,1,1,0 and overflow 0. */
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.0001\"} 5");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.00025\"} 15");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.0005\"} 35");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.001\"} 75");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.0025\"} 90");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.005\"} 95");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.01\"} 98");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.025\"} 99");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.1\"} 100");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"1\"} 100");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"+Inf\"} 100");
    assert_line(out, "trialsync_commit_duration_seconds_sum 0.125");
    assert_line(out, "trialsync_commit_duration_seconds_count 100");
    /* +Inf is the last bucket, then _sum, then _count. */
    const char *inf = strstr(out, "le=\"+Inf\"");
    const char *sum = strstr(out, "trialsync_commit_duration_seconds_sum");
    const char *count = strstr(out, "trialsync_commit_duration_seconds_count");
    CU_ASSERT_PTR_NOT_NULL_FATAL(inf);
    CU_ASSERT(inf < sum);
    CU_ASSERT(sum < count);
    free(out);
    json_decref(s);
}

static void test_metrics_histogram_overflow_counts_in_inf(void)
{
    json_t *s = parse("{\"commit_latency\":{\"bounds_s\":[0.001,0.01],\"counts\":[1,2,7],"
                      "\"sum_s\":3.5,\"count\":10}}");
    char *out = render(s, NULL);
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.001\"} 1");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.01\"} 3");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"+Inf\"} 10");
    assert_line(out, "trialsync_commit_duration_seconds_count 10");
    assert_line(out, "trialsync_commit_duration_seconds_sum 3.5");
    CU_ASSERT_EQUAL(check_well_formed(out), 5);
    free(out);
    json_decref(s);
}

static void test_metrics_histogram_malformed_left_out(void)
{
    static const char *const bad[] = {
        /* counts not bounds + 1 long */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[0.1,1],\"counts\":[1,2],\"sum_s\":1}}",
        /* bounds not increasing */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[1,0.1],\"counts\":[1,2,3],\"sum_s\":1}}",
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[1,1],\"counts\":[1,2,3],\"sum_s\":1}}",
        /* a negative or fractional count */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[0.1],\"counts\":[1,-2],\"sum_s\":1}}",
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[0.1],\"counts\":[1,2.5],\"sum_s\":1}}",
        /* a bound that is not a number */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[\"0.1\"],\"counts\":[1,2],\"sum_s\":1}}",
        /* not arrays */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":0.1,\"counts\":[1,2]}}",
        "{\"uptime_s\":1,\"commit_latency\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = parse(bad[i]);
        char *out = render(s, NULL);
        CU_ASSERT_PTR_NULL(strstr(out, "commit_duration"));
        /* The rest of the exposition is still there. */
        assert_line(out, "trialsync_uptime_seconds 1");
        free(out);
        json_decref(s);
    }
    /* Without sum_s the buckets and count still go out. */
    json_t *s = parse("{\"commit_latency\":{\"bounds_s\":[0.5],\"counts\":[1,1]}}");
    char *out = render(s, NULL);
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"+Inf\"} 2");
    assert_line(out, "trialsync_commit_duration_seconds_count 2");
    CU_ASSERT_PTR_NULL(strstr(out, "_sum"));
    free(out);
    json_decref(s);
}

static void test_metrics_label_values_escaped(void)
{
    json_t *s = json_pack("{s:[{s:s,s:s,s:b,s:I}],s:{s:I}}", "peers", "id",
                          "we\"ird\\site\nname", "role", "si\"te", "connected", 1,
                          "bytes_sent", (json_int_t)7, "handshake_failures", "a\\\"b\n", 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    char *out = render(s, NULL);
    assert_line(out, "trialsync_peer_connected{peer=\"we\\\"ird\\\\site\\nname\",role=\"si\\\"te\"} 1");
    assert_line(out, "trialsync_peer_sent_bytes_total{peer=\"we\\\"ird\\\\site\\nname\"} 7");
    assert_line(out, "trialsync_handshake_failures_total{reason=\"a\\\\\\\"b\\n\"} 3");
    /* The raw line feed never reaches the output inside a label. */
    CU_ASSERT_PTR_NULL(strstr(out, "site\nname"));
    CU_ASSERT_EQUAL(check_well_formed(out), 3);
    free(out);
    json_decref(s);
}

static void test_metrics_missing_fields_left_out(void)
{
    /* An empty status: nothing to say, but still a valid (empty) exposition. */
    json_t *s = parse("{}");
    char *out = render(s, NULL);
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    json_decref(s);

    /* An older node: no sae, no handshake_failures, no commit_latency, peers
     * without the new counters, a peer without an id. */
    s = parse("{\"node\":\"hub1\",\"entries\":5,\"peers\":["
              "{\"id\":\"101\",\"connected\":true,\"last_seen\":\"2026-01-01T00:00:00.000Z\"},"
              "{\"connected\":true},"
              "{\"id\":\"102\",\"connected\":\"yes\",\"behind_send_bulk\":null}]}");
    out = render(s, NULL);
    assert_line(out, "trialsync_info{node=\"hub1\",role=\"\",trial=\"\"} 1");
    assert_line(out, "trialsync_entries 5");
    assert_line(out, "trialsync_peer_connected{peer=\"101\",role=\"\"} 1");
    CU_ASSERT_PTR_NULL(strstr(out, "peer=\"102\""));  /* a string is not a state */
    CU_ASSERT_PTR_NULL(strstr(out, "last_seen_age"));
    CU_ASSERT_PTR_NULL(strstr(out, "behind_entries"));
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_sae"));
    CU_ASSERT_PTR_NULL(strstr(out, "handshake"));
    CU_ASSERT_PTR_NULL(strstr(out, "commit_duration"));
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_records"));
    CU_ASSERT_EQUAL(check_well_formed(out), 3);
    free(out);
    json_decref(s);

    /* peers that is not an array, sae that is not an object. */
    s = parse("{\"peers\":{\"id\":\"101\"},\"sae\":[1],\"handshake_failures\":[]}");
    out = render(s, NULL);
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    json_decref(s);
}

static void test_metrics_status_not_object_refused(void)
{
    char *out = (char *)1;
    size_t len = 99;
    json_t *a = json_array();
    CU_ASSERT_EQUAL(metrics_render(a, NULL, &out, &len), TS_ERR_INVALID);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(metrics_render(NULL, NULL, &out, &len), TS_ERR_INVALID);
    json_decref(a);
}

static void test_metrics_sae_deadlines(void)
{
    json_t *s = parse("{\"sae\":{\"in_flight\":2,\"late\":1,\"at_risk\":0,\"alarms\":0}}");
    json_t *saes = parse(
        "{\"saes\":["
        "{\"id\":\"101-0001-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T09:00:00.000Z\","
        " \"acked\":false,\"late\":false,\"at_risk\":false},"
        "{\"id\":\"101-0002-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T10:00:00+01:00\","
        " \"late\":true},"
        "{\"id\":\"102-0001-AE-001\",\"site\":\"102\",\"deadline\":\"2026-11-20T10:15:30.250Z\","
        " \"acked\":false},"
        "{\"id\":\"101-0003-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T09:00:00Z\","
        " \"acked\":true},"
        "{\"id\":\"101-0004-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T09:00\"},"
        "{\"id\":\"101-0005-AE-001\",\"site\":\"101\",\"deadline\":null},"
        "{\"id\":\"101-0006-AE-001\",\"site\":\"101\",\"deadline\":\"2026-02-29T09:00:00Z\"},"
        "{\"id\":\"101-0007-AE-001\",\"deadline\":\"2028-02-29T00:00:00Z\"},"
        "{\"site\":\"101\",\"deadline\":\"2026-11-21T09:00:00Z\"}]}");
    char *out = render(s, saes);
    assert_line(out, "# TYPE trialsync_sae_deadline_timestamp_seconds gauge");
    /* date -u -d 2026-11-21T09:00:00Z +%s */
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"101-0001-AE-001\",site=\"101\"} 1795251600");
    /* +01:00 is the same instant as 09:00Z; acked missing counts as not acknowledged. */
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"101-0002-AE-001\",site=\"101\"} 1795251600");
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"102-0001-AE-001\",site=\"102\"} 1795169730.25");
    /* 2028 is a leap year: date -u -d 2028-02-29T00:00:00Z +%s */
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"101-0007-AE-001\",site=\"\"} 1835395200");
    /* Acknowledged, without a zone, without a deadline, an impossible date: no series. */
    CU_ASSERT_PTR_NULL(strstr(out, "101-0003-AE-001"));
    CU_ASSERT_PTR_NULL(strstr(out, "101-0004-AE-001"));
    CU_ASSERT_PTR_NULL(strstr(out, "101-0005-AE-001"));
    CU_ASSERT_PTR_NULL(strstr(out, "101-0006-AE-001"));
    assert_line(out, "trialsync_sae_in_flight 2");
    assert_line(out, "trialsync_sae_late 1");
    CU_ASSERT_EQUAL(check_well_formed(out), 4 + 4);
    free(out);
    json_decref(saes);

    /* A saes object without a list, and one that is not an object. */
    saes = parse("{\"error\":\"no such endpoint\"}");
    out = render(s, saes);
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_sae_deadline"));
    free(out);
    json_decref(saes);
    saes = parse("[1,2]");
    out = render(s, saes);
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_sae_deadline"));
    free(out);
    json_decref(saes);
    json_decref(s);
}

static void test_metrics_numbers_formatted(void)
{
    json_t *s = parse("{\"uptime_s\":12.5,\"entries\":0,\"records\":9007199254740993,"
                      "\"store_bytes\":1e3,\"accepting_writes\":false,\"conflicts\":-1,"
                      "\"disk_free_bytes\":\"lots\"}");
    char *out = render(s, NULL);
    assert_line(out, "trialsync_uptime_seconds 12.5");
    assert_line(out, "trialsync_entries 0");
    assert_line(out, "trialsync_records 9007199254740993");  /* integers stay exact */
    assert_line(out, "trialsync_store_size_bytes 1000");
    assert_line(out, "trialsync_accepting_writes 0");
    assert_line(out, "trialsync_conflicts_open -1");
    CU_ASSERT_PTR_NULL(strstr(out, "disk_free"));
    free(out);
    json_decref(s);
}

static void test_metrics_deterministic_order(void)
{
    /* The same failures inserted in two orders render byte for byte the same. */
    json_t *a = parse("{\"handshake_failures\":{\"trial\":1,\"certificate\":2,\"other\":3}}");
    json_t *b = parse("{\"handshake_failures\":{\"other\":3,\"trial\":1,\"certificate\":2}}");
    char *oa = render(a, NULL);
    char *ob = render(b, NULL);
    CU_ASSERT_STRING_EQUAL(oa, ob);
    const char *cert = strstr(oa, "reason=\"certificate\"");
    const char *other = strstr(oa, "reason=\"other\"");
    const char *trial = strstr(oa, "reason=\"trial\"");
    CU_ASSERT(cert != NULL && cert < other);
    CU_ASSERT(other != NULL && other < trial);
    /* One HELP and TYPE for the whole family. */
    CU_ASSERT_EQUAL(count_substr(oa, "# TYPE trialsync_handshake_failures_total"), 1);
    free(oa);
    free(ob);
    json_decref(a);
    json_decref(b);
}

static void test_metrics_too_big_refused(void)
{
    /* 5,000 peers with 1,000-byte ids: about 15 MB of samples, past the cap. */
    char id[1001];
    json_t *peers = json_array();
    for (int i = 0; i < 5000; i++) {
        memset(id, 'a' + i % 26, sizeof(id) - 1);
        snprintf(id, 8, "%06d", i);
        id[6] = 'x';
        id[sizeof(id) - 1] = '\0';
        json_array_append_new(peers, json_pack("{s:s,s:b,s:I,s:I}", "id", id, "connected", 1,
                                               "bytes_sent", (json_int_t)1, "entries_sent",
                                               (json_int_t)1));
    }
    json_t *s = json_pack("{s:o}", "peers", peers);
    char *out = (char *)1;
    size_t len = 1;
    CU_ASSERT_EQUAL(metrics_render(s, NULL, &out, &len), TS_ERR_TOOBIG);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(len, 0);
    json_decref(s);
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_metrics_full_status_lines", test_metrics_full_status_lines },
        { "test_metrics_histogram_is_cumulative", test_metrics_histogram_is_cumulative },
        { "test_metrics_histogram_overflow_counts_in_inf", test_metrics_histogram_overflow_counts_in_inf },
        { "test_metrics_histogram_malformed_left_out", test_metrics_histogram_malformed_left_out },
        { "test_metrics_label_values_escaped", test_metrics_label_values_escaped },
        { "test_metrics_missing_fields_left_out", test_metrics_missing_fields_left_out },
        { "test_metrics_status_not_object_refused", test_metrics_status_not_object_refused },
        { "test_metrics_sae_deadlines", test_metrics_sae_deadlines },
        { "test_metrics_numbers_formatted", test_metrics_numbers_formatted },
        { "test_metrics_deterministic_order", test_metrics_deterministic_order },
        { "test_metrics_too_big_refused", test_metrics_too_big_refused },
        { NULL, NULL },
    };
    return unit_run("metrics", tests);
}
