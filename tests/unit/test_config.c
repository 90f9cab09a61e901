/*
 * test_config.c: node.conf parsing: defaults, relative paths, and every kind
 * of refusal naming the file's line.
 */
#include <stdio.h>
#include <string.h>

#include "../../node/config.h"
#include "unit.h"

static const char *write_conf(const char *body)
{
    static char path[700];
    snprintf(path, sizeof(path), "%s/node.conf", unit_tmpdir("config"));
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(body, f);
    fclose(f);
    return path;
}

static void test_config_minimal_and_defaults(void)
{
    struct config c;
    struct ts_error err = {0};
    const char *path = write_conf("[node]\nid = 101\nrole = site\ntrial = T1\n"
                                  "[peer]\nhub = 127.0.0.1:7800\nhub = [::1]:7801\n");
    CU_ASSERT_EQUAL_FATAL(config_load(path, &c, &err), 0);
    CU_ASSERT_STRING_EQUAL(c.id, "101");
    CU_ASSERT_EQUAL(c.role, PKI_ROLE_SITE);
    CU_ASSERT_EQUAL(c.api.port, 7801);
    CU_ASSERT_STRING_EQUAL(c.api.host, "127.0.0.1");
    CU_ASSERT_EQUAL(c.hubs_count, 2);
    CU_ASSERT_STRING_EQUAL(c.hubs[1].host, "::1");
    CU_ASSERT_EQUAL(c.hubs[1].port, 7801);
    CU_ASSERT_EQUAL(c.disk_free_min_bytes, 64ULL << 20);
    CU_ASSERT_EQUAL(c.failed_exit_s, CONFIG_FAILED_EXIT_S_DEFAULT);
    CU_ASSERT_EQUAL(c.sae_alarm_first_s, 3600);
    CU_ASSERT_EQUAL(c.sae_alarm_second_s, 43200);
    /* Relative paths are relative to the file's directory. */
    CU_ASSERT_PTR_NOT_NULL(strstr(c.data_dir, "/data"));
    CU_ASSERT_EQUAL(strncmp(c.data_dir, c.dir, strlen(c.dir)), 0);
    CU_ASSERT_EQUAL(strncmp(c.key, c.dir, strlen(c.dir)), 0);
}

static void refused(const char *body, const char *want)
{
    struct config c;
    struct ts_error err = {0};
    const char *path = write_conf(body);
    CU_ASSERT_EQUAL(config_load(path, &c, &err), TS_ERR_CONFIG);
    if (strstr(err.msg, want) == NULL) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, want);
        CU_FAIL("the refusal does not say what is wrong");
    }
}

static void test_config_refusals(void)
{
    refused("[node]\nid = 101\nrole = emperor\ntrial = T1\n", "line 3");
    refused("[node]\nid = 101\nrole = site\ntrial = T1\nspeed = 11\n", "unknown key");
    refused("[nodes]\nid = 101\n", "unknown section");
    refused("[node]\nid = 101\nrole = site\n", "needs id, role and trial");
    refused("[node]\nid = bad id!\nrole = site\ntrial = T1\n", "id");
    refused("[node]\nid = 1\nrole = site\ntrial = T1\n[api]\nlisten = 127.0.0.1\n", "HOST:PORT");
    refused("[node]\nid = 1\nrole = site\ntrial = T1\n[api]\nlisten = 127.0.0.1:70000\n",
            "HOST:PORT");
    refused("[node]\nid = 1\nrole = site\ntrial = T1\n[storage]\ndisk_free_min_mb = -5\n",
            "whole number");
    refused("[node]\nid = 1\nrole = site\ntrial = T1\n[storage]\nfailed_exit_s = 3601\n",
            "0 to 3600");
    refused("[node]\nid = 1\nrole = site\ntrial = T1\n[safety]\nsae_alarm_first_s = 100\n"
            "sae_alarm_second_s = 50\n",
            "later than");
    refused("[node]\nid = 1\nrole = site\ntrial = T1\nthis is not ini\n", "line 5");
    struct config c;
    struct ts_error err = {0};
    CU_ASSERT_EQUAL(config_load("/nonexistent/node.conf", &c, &err), TS_ERR_CONFIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cannot read"));
}

static void test_config_addr_parse(void)
{
    struct config_addr a;
    CU_ASSERT_EQUAL(config_addr_parse("10.0.0.1:1", &a), 0);
    CU_ASSERT_EQUAL(a.port, 1);
    CU_ASSERT_EQUAL(config_addr_parse("hub.example:65535", &a), 0);
    CU_ASSERT_STRING_EQUAL(a.host, "hub.example");
    CU_ASSERT_EQUAL(config_addr_parse(":80", &a), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(config_addr_parse("host:0", &a), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(config_addr_parse("host:8x", &a), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(config_addr_parse("[::1:80", &a), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(config_addr_parse("nohostport", &a), TS_ERR_INVALID);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_config_minimal_and_defaults", test_config_minimal_and_defaults},
        {"test_config_refusals", test_config_refusals},
        {"test_config_addr_parse", test_config_addr_parse},
        {NULL, NULL},
    };
    return unit_run("config", tests);
}
