/*
 * cli.h: what the trialsync command's verbs share.
 */
#ifndef TS_CLI_H
#define TS_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Prints "trialsync: <message>" on stderr; returns 1 (the exit status). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes a file with the given mode, refusing to replace one (O_EXCL). */
int cli_write_file(const char *path, const char *content, int mode, bool exclusive);

/* Creates a random API token file (hex, mode 0600). */
int cli_write_token(const char *path);

int cmd_init(int argc, char **argv);
int cmd_site(int argc, char **argv);
int cmd_hub(int argc, char **argv);
int cmd_crl(int argc, char **argv);
int cmd_record(const char *verb, int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);

#endif
