/*
 * main.c: the trialsync command: one verb per job, --help on each.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "version.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync VERB [options]\n"
            "\n"
            "Trial set-up (admin):\n"
            "  init --trial ID --dir DIR            create a trial: CA, first hub, admin\n"
            "       [--encrypt-ca [--pass-file FILE]]  ... with the CA and admin keys encrypted\n"
            "  site add SITE --dir DIR --out SITEDIR [--name TEXT] [--hub HOST:PORT ...]\n"
            "  site list --dir DIR                  every site: status, connection, lag\n"
            "  site revoke SITE --dir DIR --reason TEXT\n"
            "  site renew SITE --dir DIR [--out SITEDIR]  a new key and certificate\n"
            "  user add USER --role ROLE --name TEXT --dir DIR [--site SITE]  a person's account\n"
            "  user list --dir DIR | user disable USER --dir DIR --reason TEXT | user reset USER\n"
            "  hub add HUB --dir DIR --out HUBDIR [--peer-port N] [--api-port N]\n"
            "  hub renew HUB --dir DIR | hub revoke HUB --dir DIR --reason TEXT\n"
            "  admin revoke --dir DIR --reason TEXT the admin certificate, on the CRL\n"
            "  crl renew --dir DIR                  re-sign the revocation list (monthly)\n"
            "  (verbs that use the CA key take --pass-file FILE when it is encrypted)\n"
            "\n"
            "Records (through a running node's local API):\n"
            "  put --node NODEDIR TYPE ID field=value... [--reason TEXT] [--user NAME]\n"
            "      (or --fields-file PATH|-: the fields as JSON, kept out of ps)\n"
            "  get --node NODEDIR TYPE ID [--json]  displayed values and conflicts\n"
            "  history --node NODEDIR TYPE ID [--json]  every version of every field\n"
            "  sign --node NODEDIR TYPE ID [--meaning M]  an investigator's e-signature\n"
            "  sdv --node HUBDIR TYPE ID [--fields F,G]  a monitor's source-data verification\n"
            "  lock --node HUBDIR (--subject ID | TYPE ID) --reason TEXT  a data manager's freeze\n"
            "      of a subject (everything under it) or of one record\n"
            "  unlock --node HUBDIR (--subject ID | TYPE ID) --reason TEXT\n"
            "  reapply --node NODEDIR TYPE ID ENTRY [--user NAME]  write a quarantined edit again\n"
            "  enrollment cap --node HUBDIR --cap N | grant --node HUBDIR --site S --slots N\n"
            "  enrollment show --node NODEDIR [--json]  enrollment slots under the trial's cap\n"
            "      (a table on a terminal, JSON in a pipe or with --json)\n"
            "  records --node NODEDIR [TYPE]        the records a node holds (JSON)\n"
            "  conflicts --node NODEDIR             fields with concurrent values (JSON)\n"
            "  saes --node NODEDIR                  serious adverse events, 24-hour clock (JSON)\n"
            "  status --node NODEDIR [--json]       node and per-peer replication\n"
            "  status --node NODEDIR --check [--offline-max-s N] [--late-saes]  for monitors\n"
            "  digest --node NODEDIR [--site SITE]  the state digest (of one site's share)\n"
            "  verify --node NODEDIR [--peer DIR]   check a stopped node's store; compare with a peer\n"
            "  backup --node NODEDIR --out PATH     verified copy of a node's store (node running or not)\n"
            "  restore --node NODEDIR --from PATH [--force]  put a backup back (node stopped)\n"
            "  import --node NODEDIR FILE [--user NAME] [--reason TEXT]  load a CSV/NDJSON file\n"
            "  export --node NODEDIR --format FORMAT [--out PATH]  FORMAT: odm, odm-audit,\n"
            "         sdtm-csv, dataset-json, audit, records-ndjson (what import reads)\n"
            "         [--site S] [--subject ID] [--as-of TIME]   CDISC files (see export --help)\n"
            "\n"
            "TYPE is subject, visit, ae or query.  'trialsync VERB --help' for details.\n");
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("trialsync: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(verb, "--version") == 0) {
        printf("trialsync %s\n", TS_VERSION);
        return 0;
    }
    if (strcmp(verb, "init") == 0)
        return cmd_init(argc - 1, argv + 1);
    if (strcmp(verb, "site") == 0)
        return cmd_site(argc - 1, argv + 1);
    if (strcmp(verb, "user") == 0)
        return cmd_user(argc - 1, argv + 1);
    if (strcmp(verb, "sign") == 0)
        return cmd_sign(argc - 1, argv + 1);
    if (strcmp(verb, "sdv") == 0)
        return cmd_sdv(argc - 1, argv + 1);
    if (strcmp(verb, "lock") == 0 || strcmp(verb, "unlock") == 0)
        return cmd_lock(verb, argc - 1, argv + 1);
    if (strcmp(verb, "reapply") == 0)
        return cmd_reapply(argc - 1, argv + 1);
    if (strcmp(verb, "enrollment") == 0)
        return cmd_enrollment(argc - 1, argv + 1);
    if (strcmp(verb, "crl") == 0)
        return cmd_crl(argc - 1, argv + 1);
    if (strcmp(verb, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(verb, "export") == 0)
        return cmd_export(argc - 1, argv + 1);
    if (strcmp(verb, "admin") == 0)
        return cmd_admin(argc - 1, argv + 1);
    if (strcmp(verb, "hub") == 0)
        return cmd_hub(argc - 1, argv + 1);
    if (strcmp(verb, "backup") == 0)
        return cmd_backup(argc - 1, argv + 1);
    if (strcmp(verb, "restore") == 0)
        return cmd_restore(argc - 1, argv + 1);
    if (strcmp(verb, "import") == 0)
        return cmd_import(argc - 1, argv + 1);
    if (strcmp(verb, "put") == 0 || strcmp(verb, "get") == 0 || strcmp(verb, "history") == 0 ||
        strcmp(verb, "records") == 0 || strcmp(verb, "conflicts") == 0 ||
        strcmp(verb, "status") == 0 || strcmp(verb, "digest") == 0 ||
        strcmp(verb, "saes") == 0)
        return cmd_record(verb, argc - 1, argv + 1);
    fprintf(stderr, "trialsync: unknown verb '%s'\n\n", verb);
    usage(stderr);
    return 2;
}
