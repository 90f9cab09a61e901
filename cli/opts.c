/*
 * opts.c: the one option parser every verb uses (getopt_long), so that each
 * verb says the same thing about the same mistake: which option lacks its
 * value, which option is unknown, which required option is missing.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* The long name of the option whose val is val, or NULL. */
static const char *opt_name(const struct option *opts, int val)
{
    for (size_t i = 0; opts[i].name != NULL; i++) {
        if (opts[i].flag == NULL && opts[i].val == val)
            return opts[i].name;
    }
    return NULL;
}

int cli_getopt(int argc, char **argv, const struct option *opts, const char *verb)
{
    /* ':' first: a missing value returns ':' rather than '?', so the two are told
     * apart; opterr 0 because the messages below replace getopt's own. */
    opterr = 0;
    int c = getopt_long(argc, argv, ":h", opts, NULL);
    if (c == ':') {
        const char *name = opt_name(opts, optopt);
        if (name != NULL)
            fprintf(stderr, "trialsync %s: option --%s needs a value\n", verb, name);
        else
            fprintf(stderr, "trialsync %s: option -%c needs a value\n", verb, optopt);
        return CLI_OPT_ERROR;
    }
    if (c == '?') {
        if (optopt != 0 && optopt != '?')
            fprintf(stderr, "trialsync %s: unknown option -%c\n", verb, optopt);
        else
            fprintf(stderr, "trialsync %s: unknown option %s\n", verb, argv[optind - 1]);
        return CLI_OPT_ERROR;
    }
    return c;
}

int cli_usage_error(const char *verb, void (*usage)(FILE *out), const char *fmt, ...)
{
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "trialsync %s: ", verb);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    if (usage != NULL) {
        if (fmt != NULL)
            fputc('\n', stderr);
        usage(stderr);
    }
    return 2;
}
