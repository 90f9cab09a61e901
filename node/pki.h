/*
 * pki.h: the trial's certificate authority and node identities.
 *
 * One trial is one private CA (Ed25519).  Every node and admin has an Ed25519
 * key and an X.509 certificate signed by the CA whose URI SAN is
 * trialsync://<trial>/<role>/<id>, role one of hub, site, admin.  The CN is
 * for display only.  Private keys are written with mode 0600.
 */
#ifndef TS_PKI_H
#define TS_PKI_H

#include <stdbool.h>
#include <stddef.h>

#include "../proto/errors.h"
#include "../proto/limits.h"

enum pki_role {
    PKI_ROLE_HUB,
    PKI_ROLE_SITE,
    PKI_ROLE_ADMIN,
};

struct pki_identity {
    char trial[TS_ID_BYTES_MAX + 1];
    enum pki_role role;
    char id[TS_ID_BYTES_MAX + 1];
};

const char *pki_role_name(enum pki_role r);
/* Parses "hub", "site", "admin"; TS_ERR_INVALID otherwise. */
int pki_role_parse(const char *s, enum pki_role *out);

/*
 * Creates a CA for trial in ca_dir: ca.key (0600) and ca.crt, valid for
 * `days`.  Refuses (TS_ERR_EXISTS) when ca_dir already holds a CA.
 */
int pki_ca_create(const char *ca_dir, const char *trial, int days, struct ts_error *err);

/*
 * Issues an identity signed by the CA in ca_dir: writes out_dir/node.key
 * (0600), out_dir/node.crt and out_dir/ca.crt.  name is the CN (display only;
 * the id when NULL).  Refuses to overwrite an existing node.key.
 */
int pki_issue(const char *ca_dir, const struct pki_identity *who, const char *name,
              int days, const char *out_dir, struct ts_error *err);

/* Parses trialsync://<trial>/<role>/<id>; TS_ERR_INVALID otherwise. */
int pki_uri_parse(const char *uri, struct pki_identity *out);

/* The identity in a PEM certificate's URI SAN (exactly one trialsync URI). */
int pki_cert_identity(const char *pem, size_t len, struct pki_identity *out,
                      struct ts_error *err);

/* Reads a whole (small) file into a NUL-terminated malloc'ed buffer. */
int pki_read_file(const char *path, char **out, size_t *out_len, struct ts_error *err);

#endif
