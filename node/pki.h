/*
 * pki.h: the trial's certificate authority and node identities.
 *
 * One trial is one private CA (Ed25519).  Every node and admin has an Ed25519
 * key and an X.509 certificate signed by the CA whose URI SAN is
 * trialsync://<trial>/<role>/<id>, role one of hub, site, admin.  The CN is
 * for display only.  Private keys are written with mode 0600.
 *
 * A CA directory (mode 0700) holds ca.key (0600), ca.crt, crl.pem, and two
 * append-only text ledgers, one line per certificate: issued.txt
 * ("SERIAL TIME URI") and revoked.txt ("SERIAL TIME [URI]"), TIME in UTC as
 * YYYY-MM-DDTHH:MM:SSZ.  Files are never overwritten in place except crl.pem,
 * which is replaced atomically.  No function keeps state between calls.
 *
 * The CA key, and an admin's key, may be encrypted (AES-256, PKCS#8): every
 * function that uses the CA key takes ca_pass, the source of its passphrase
 * (crypto.h), or NULL when none may be asked (an encrypted CA key is then
 * refused).  Node keys (hub, site) are never encrypted: trialsyncd reads
 * them, and a daemon restarts unattended with nobody to type a passphrase.
 */
#ifndef TS_PKI_H
#define TS_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/errors.h"
#include "../proto/limits.h"

struct crypto_pass;   /* crypto.h */

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
 * `days`.  Refuses (TS_ERR_EXISTS) when ca_dir already holds a CA.  With
 * key_pass, ca.key is encrypted with its passphrase (asked now, twice on a
 * terminal; TS_ERR_AUTH when there is none); NULL writes it unencrypted.
 */
int pki_ca_create(const char *ca_dir, const char *trial, int days, struct crypto_pass *key_pass,
                  struct ts_error *err);

/*
 * Issues an identity signed by the CA in ca_dir (its key unlocked with
 * ca_pass): writes out_dir/node.key (0600), out_dir/node.crt and
 * out_dir/ca.crt.  name is the CN (display only; the id when NULL).  Refuses
 * to overwrite an existing node.key.  With key_pass (admins only, else
 * TS_ERR_INVALID) node.key is encrypted with that passphrase.
 */
int pki_issue(const char *ca_dir, const struct pki_identity *who, const char *name,
              int days, const char *out_dir, struct crypto_pass *ca_pass,
              struct crypto_pass *key_pass, struct ts_error *err);

/* Parses trialsync://<trial>/<role>/<id>; TS_ERR_INVALID otherwise. */
int pki_uri_parse(const char *uri, struct pki_identity *out);

/* The identity in a PEM certificate's URI SAN (exactly one trialsync URI). */
int pki_cert_identity(const char *pem, size_t len, struct pki_identity *out,
                      struct ts_error *err);

/* Reads a whole (small) file into a NUL-terminated malloc'ed buffer. */
int pki_read_file(const char *path, char **out, size_t *out_len, struct ts_error *err);

/*
 * Files pki reads (certificates, revoked.txt) are refused above 1 MiB
 * (TS_ERR_TOOBIG): a CA directory holds a few kilobytes, and a wrong path (a
 * log, a device) must not be read into memory whole.
 */
#define PKI_FILE_BYTES_MAX (1024 * 1024)
/*
 * A serial as pki_cert_serial_hex writes it: RFC 5280 caps serials at 20
 * octets, so 40 hex digits and a NUL.
 */
#define PKI_SERIAL_HEX_BYTES_MAX 41
_Static_assert(PKI_SERIAL_HEX_BYTES_MAX == TS_SERIAL_BYTES_MAX + 1, "a serial fits a batch");
/* A CRL is valid for this long after it is written (its nextUpdate). */
#define PKI_CRL_DAYS 30

/*
 * Writes the serial of the first certificate in pem as uppercase hex without
 * leading zero bytes ("0A3F..."), the form revoked.txt uses.  TS_ERR_INVALID
 * when pem holds no certificate, TS_ERR_TOOBIG when out (cap bytes, use
 * PKI_SERIAL_HEX_BYTES_MAX) cannot hold it.
 */
int pki_cert_serial_hex(const char *pem, size_t len, char *out, size_t cap,
                        struct ts_error *err);

/*
 * Revokes the certificate in the file cert_pem_path, which must have been
 * issued by the CA in ca_dir (TS_ERR_INVALID otherwise, and for the CA's own
 * certificate): appends its serial, the time and its URI to
 * ca_dir/revoked.txt, then rewrites ca_dir/crl.pem as pki_crl_write does.
 * Revoking an already revoked certificate only rewrites the CRL.
 */
int pki_revoke(const char *ca_dir, const char *cert_pem_path, struct crypto_pass *ca_pass,
               struct ts_error *err);

/*
 * Revokes by serial (hex, as pki_cert_serial_hex writes it; case and leading
 * zeros do not matter), for when only the serial is known.  Otherwise as
 * pki_revoke.
 */
int pki_revoke_serial(const char *ca_dir, const char *serial_hex, struct crypto_pass *ca_pass,
                      struct ts_error *err);

/*
 * Rewrites ca_dir/crl.pem from ca_dir/revoked.txt: an X.509 v2 CRL signed by
 * the CA, lastUpdate now, nextUpdate now + PKI_CRL_DAYS, with an authority key
 * identifier and a CRL number that always grows (the Unix time, or one more
 * than the previous crl.pem's when that is larger).  An empty CRL when there
 * is no revoked.txt.  The file is replaced atomically (readers see the old or
 * the new CRL, never part of one).  TS_ERR_CORRUPT names the line of
 * revoked.txt that does not parse.  pki_ca_create writes the first, empty,
 * CRL.  Nodes must be given a fresh crl.pem before nextUpdate passes.
 */
int pki_crl_write(const char *ca_dir, struct crypto_pass *ca_pass, struct ts_error *err);

/*
 * Checks that a certificate (PEM) was issued by the trial CA (PEM), ignoring
 * its validity dates and revocation: entries an origin signed while its
 * certificate was good stay verifiable.  Fills *who from its URI SAN.
 * TS_ERR_AUTH when the chain does not verify.
 */
int pki_verify_cert(const char *ca_pem, size_t ca_len, const char *pem, size_t len,
                    struct pki_identity *who, struct ts_error *err);

/*
 * The validity period of a PEM certificate, notBefore and notAfter in seconds
 * since the epoch (UTC), for checking when an origin signed.  TS_ERR_INVALID
 * when pem holds no certificate or its dates do not parse.
 */
int pki_cert_validity(const char *pem, size_t len, int64_t *not_before_s, int64_t *not_after_s,
                      struct ts_error *err);

/*
 * Checks a revocation list received by replication (a `crl` entry): crl_pem
 * must be one PEM X.509 CRL issued by and signed with the key of the trial CA
 * (ca_pem), carrying a CRL number, which is written to *number.  Its dates are
 * not checked (a stale CRL still revokes).  TS_ERR_INVALID when it does not
 * parse or has no number, TS_ERR_AUTH when the CA did not sign it.
 */
int pki_crl_check(const char *ca_pem, size_t ca_len, const char *crl_pem, size_t crl_len,
                  int64_t *number, struct ts_error *err);

/*
 * Whether the certificate with serial serial_hex (as pki_cert_serial_hex
 * writes it) is on the CRL crl_pem (already checked with pki_crl_check):
 * 1 with *revoked_at_s its revocation date (seconds since the epoch), 0 when
 * it is not, or a negative error (the CRL or the serial does not parse).
 */
int pki_crl_revoked(const char *crl_pem, size_t crl_len, const char *serial_hex,
                    int64_t *revoked_at_s, struct ts_error *err);

#endif
