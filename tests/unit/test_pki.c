/*
 * test_pki.c: the pki module's suite: creating a trial CA, issuing hub, site
 * and admin identities, reading identities back from certificates, URI
 * parsing, bounded file reads, and revocation lists.
 *
 * Chains and CRLs are checked with OpenSSL's own verifier, configured the way
 * a peer link must be: the trial CA as the only trust anchor, strict X.509,
 * CRL checking on, so a certificate the module issues is known to be accepted
 * (and a revoked one refused) by a real verifier.
 */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../../node/crypto.h"
#include "../../node/pki.h"

/* A scratch trial: dir/ca, and dir/<name> per identity. */
struct trial {
    char dir[600];
    char ca_dir[700];
};

static void join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < cap);
}

static void trial_make(struct trial *t, const char *tag, const char *trial_id)
{
    struct ts_error err = {0};
    snprintf(t->dir, sizeof(t->dir), "%s", unit_tmpdir(tag));
    join(t->ca_dir, sizeof(t->ca_dir), t->dir, "ca");
    int rc = pki_ca_create(t->ca_dir, trial_id, 3650, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "pki_ca_create: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
}

/* Issues who into t->dir/<sub>; writes the directory to out. */
static void issue_ok(const struct trial *t, enum pki_role role, const char *id, const char *name,
                     const char *sub, char *out, size_t cap)
{
    struct pki_identity who;
    struct ts_error err = {0};

    memset(&who, 0, sizeof(who));
    snprintf(who.trial, sizeof(who.trial), "T1");
    who.role = role;
    snprintf(who.id, sizeof(who.id), "%s", id);
    join(out, cap, t->dir, sub);
    int rc = pki_issue(t->ca_dir, &who, name, 365, out, NULL, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "pki_issue: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
}

/* Reads dir/name whole (NUL-terminated); the caller frees it. */
static char *read_in(const char *dir, const char *name, size_t *len)
{
    char path[800];
    char *buf = NULL;
    size_t n = 0;
    struct ts_error err = {0};

    join(path, sizeof(path), dir, name);
    int rc = pki_read_file(path, &buf, &n, &err);
    if (rc != 0)
        fprintf(stderr, "pki_read_file: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    if (len != NULL)
        *len = n;
    return buf;
}

static X509 *load_cert(const char *dir, const char *name)
{
    size_t len = 0;
    char *pem = read_in(dir, name, &len);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    free(pem);
    CU_ASSERT_FATAL(x != NULL);
    return x;
}

static X509_CRL *load_crl(const char *ca_dir)
{
    size_t len = 0;
    char *pem = read_in(ca_dir, "crl.pem", &len);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_CRL *crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
    BIO_free(bio);
    free(pem);
    CU_ASSERT_FATAL(crl != NULL);
    return crl;
}

static mode_t mode_of(const char *dir, const char *name)
{
    char path[800];
    struct stat st;
    if (name != NULL)
        join(path, sizeof(path), dir, name);
    else
        snprintf(path, sizeof(path), "%s", dir);
    CU_ASSERT_FATAL(stat(path, &st) == 0);
    return st.st_mode & 07777;
}

/*
 * Verifies leaf_dir/node.crt against ca_dir/ca.crt alone, with purpose and,
 * when with_crl, ca_dir/crl.pem.  Returns X509_V_OK or the verifier's error.
 */
static int verify_chain(const char *ca_dir, const char *leaf_dir, int purpose, bool with_crl)
{
    X509 *ca = load_cert(ca_dir, "ca.crt");
    X509 *leaf = load_cert(leaf_dir, "node.crt");
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_CRL *crl = NULL;
    CU_ASSERT_FATAL(store != NULL && ctx != NULL);
    /* Explicit settings: only the trial CA, strict parsing, no default paths. */
    CU_ASSERT_FATAL(X509_STORE_add_cert(store, ca) == 1);
    unsigned long flags = X509_V_FLAG_X509_STRICT;
    if (with_crl) {
        crl = load_crl(ca_dir);
        CU_ASSERT_FATAL(X509_STORE_add_crl(store, crl) == 1);
        flags |= X509_V_FLAG_CRL_CHECK;
    }
    CU_ASSERT_FATAL(X509_STORE_set_flags(store, flags) == 1);
    CU_ASSERT_FATAL(X509_STORE_CTX_init(ctx, store, leaf, NULL) == 1);
    CU_ASSERT_FATAL(X509_STORE_CTX_set_purpose(ctx, purpose) == 1);
    int ok = X509_verify_cert(ctx);
    int result = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    if (ok != 1 && result == X509_V_OK)
        result = -1;
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_CRL_free(crl);
    X509_free(leaf);
    X509_free(ca);
    ERR_clear_error();
    return result;
}

static void serial_of(const char *dir, char out[PKI_SERIAL_HEX_BYTES_MAX])
{
    size_t len = 0;
    struct ts_error err = {0};
    char *pem = read_in(dir, "node.crt", &len);
    CU_ASSERT_FATAL(pki_cert_serial_hex(pem, len, out, PKI_SERIAL_HEX_BYTES_MAX, &err) == 0);
    free(pem);
}

/* Whether crl lists the serial given as hex. */
static bool crl_has_serial(X509_CRL *crl, const char *hex)
{
    BIGNUM *bn = NULL;
    X509_REVOKED *rev = NULL;
    CU_ASSERT_FATAL(BN_hex2bn(&bn, hex) > 0);
    ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(bn, NULL);
    int found = X509_CRL_get0_by_serial(crl, &rev, serial);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return found == 1;
}

static int crl_count(X509_CRL *crl)
{
    STACK_OF(X509_REVOKED) *revs = X509_CRL_get_REVOKED(crl);
    return revs == NULL ? 0 : sk_X509_REVOKED_num(revs);
}

/*
 * A self-signed Ed25519 certificate with the given URI SANs (none: no SAN
 * extension at all) as PEM; the caller frees it.
 */
static char *make_cert_with_uris(const char *const *uris, int n, size_t *len)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    X509 *x = X509_new();
    CU_ASSERT_FATAL(key != NULL && x != NULL);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    if (n > 0) {
        GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
        for (int i = 0; i < n; i++) {
            GENERAL_NAME *gen = GENERAL_NAME_new();
            ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
            ASN1_STRING_set(ia5, uris[i], -1);
            GENERAL_NAME_set0_value(gen, GEN_URI, ia5);
            sk_GENERAL_NAME_push(gens, gen);
        }
        CU_ASSERT_FATAL(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0) == 1);
        GENERAL_NAMES_free(gens);
    }
    CU_ASSERT_FATAL(X509_sign(x, key, NULL) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, x);
    char *data = NULL;
    long n_bytes = BIO_get_mem_data(bio, &data);
    char *pem = malloc((size_t)n_bytes + 1);
    CU_ASSERT_FATAL(pem != NULL);
    memcpy(pem, data, (size_t)n_bytes);
    pem[n_bytes] = '\0';
    *len = (size_t)n_bytes;
    BIO_free(bio);
    X509_free(x);
    EVP_PKEY_free(key);
    return pem;
}

static void test_pki_ca_create_writes_ca_files(void)
{
    struct trial t;
    trial_make(&t, "pki-ca", "T1");

    CU_ASSERT_EQUAL(mode_of(t.ca_dir, NULL), 0700);
    CU_ASSERT_EQUAL(mode_of(t.ca_dir, "ca.key"), 0600);

    X509 *ca = load_cert(t.ca_dir, "ca.crt");
    CU_ASSERT_EQUAL(X509_check_ca(ca), 1);
    CU_ASSERT_EQUAL(X509_get_version(ca), X509_VERSION_3);
    CU_ASSERT_EQUAL(X509_check_issued(ca, ca), X509_V_OK);
    CU_ASSERT_EQUAL(X509_verify(ca, X509_get0_pubkey(ca)), 1);
    CU_ASSERT(EVP_PKEY_is_a(X509_get0_pubkey(ca), "ED25519"));
    CU_ASSERT(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    CU_ASSERT(X509_get_key_usage(ca) & KU_CRL_SIGN);
    CU_ASSERT(X509_get0_subject_key_id(ca) != NULL);
    int crit = 0;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
    CU_ASSERT_FATAL(bc != NULL);
    CU_ASSERT(bc->ca);
    CU_ASSERT_EQUAL(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    char cn[128];
    CU_ASSERT(X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn,
                                        sizeof(cn)) > 0);
    CU_ASSERT_STRING_EQUAL(cn, "trialsync T1 CA");
    /* 128-bit random serials: two CAs never share one. */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(ca);
    CU_ASSERT(ASN1_STRING_length(serial) >= 15);

    /* The CA comes with an empty CRL it signed. */
    X509_CRL *crl = load_crl(t.ca_dir);
    CU_ASSERT_EQUAL(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
    CU_ASSERT_EQUAL(crl_count(crl), 0);
    X509_CRL_free(crl);
    X509_free(ca);
}

static void test_pki_ca_create_refuses_second_create(void)
{
    struct trial t;
    struct ts_error err = {0};
    size_t len_before = 0, len_after = 0;

    trial_make(&t, "pki-ca-twice", "T1");
    char *before = read_in(t.ca_dir, "ca.key", &len_before);
    CU_ASSERT_EQUAL(pki_ca_create(t.ca_dir, "T1", 3650, NULL, &err), TS_ERR_EXISTS);
    CU_ASSERT(strstr(err.msg, t.ca_dir) != NULL);
    char *after = read_in(t.ca_dir, "ca.key", &len_after);
    CU_ASSERT(len_before == len_after && memcmp(before, after, len_before) == 0);
    free(after);
    free(before);
}

static void test_pki_ca_create_refuses_bad_arguments(void)
{
    const char *dir = unit_tmpdir("pki-ca-bad");
    char ca_dir[700];
    struct ts_error err = {0};
    char long_id[TS_ID_BYTES_MAX + 2];

    join(ca_dir, sizeof(ca_dir), dir, "ca");
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    CU_ASSERT_EQUAL(pki_ca_create(ca_dir, "bad/trial", 365, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_ca_create(ca_dir, "", 365, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_ca_create(ca_dir, "..", 365, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_ca_create(ca_dir, long_id, 365, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_ca_create(ca_dir, "T1", 0, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_ca_create(ca_dir, "T1", -5, NULL, &err), TS_ERR_INVALID);
    /* Nothing was created by the refusals. */
    struct stat st;
    CU_ASSERT(stat(ca_dir, &st) != 0);

    /* The longest trial id still makes a CA: its CN is cut, its URI is not. */
    long_id[TS_ID_BYTES_MAX] = '\0';
    CU_ASSERT_EQUAL(pki_ca_create(ca_dir, long_id, 365, NULL, &err), 0);
}

static void test_pki_issue_hub_site_admin_identities(void)
{
    struct trial t;
    char hub[800], site[800], admin[800];
    static const struct {
        enum pki_role role;
        const char *id;
        const char *name;
        const char *cn;
    } cases[] = {
        {PKI_ROLE_HUB, "hub-1", NULL, "hub-1"},
        {PKI_ROLE_SITE, "101", "H\xc3\xb4pital Saint-Louis", "H\xc3\xb4pital Saint-Louis"},
        {PKI_ROLE_ADMIN, "alice.admin", "Alice", "Alice"},
    };
    char *dirs[] = {hub, site, admin};
    const char *subs[] = {"hub", "site", "admin"};

    trial_make(&t, "pki-issue", "T1");
    size_t ca_len = 0;
    char *ca_pem = read_in(t.ca_dir, "ca.crt", &ca_len);
    for (int i = 0; i < 3; i++) {
        issue_ok(&t, cases[i].role, cases[i].id, cases[i].name, subs[i], dirs[i], 800);
        CU_ASSERT_EQUAL(mode_of(dirs[i], NULL), 0700);
        CU_ASSERT_EQUAL(mode_of(dirs[i], "node.key"), 0600);

        size_t len = 0;
        char *pem = read_in(dirs[i], "node.crt", &len);
        struct pki_identity got;
        struct ts_error err = {0};
        CU_ASSERT_EQUAL_FATAL(pki_cert_identity(pem, len, &got, &err), 0);
        CU_ASSERT_STRING_EQUAL(got.trial, "T1");
        CU_ASSERT_EQUAL(got.role, cases[i].role);
        CU_ASSERT_STRING_EQUAL(got.id, cases[i].id);
        free(pem);

        X509 *x = load_cert(dirs[i], "node.crt");
        char cn[256];
        CU_ASSERT(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                            sizeof(cn)) > 0);
        CU_ASSERT_STRING_EQUAL(cn, cases[i].cn);
        CU_ASSERT_EQUAL(X509_check_ca(x), 0);
        CU_ASSERT(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
        CU_ASSERT(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
        CU_ASSERT(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
        CU_ASSERT(!(X509_get_key_usage(x) & KU_KEY_CERT_SIGN));
        CU_ASSERT(X509_get0_authority_key_id(x) != NULL);
        /* Backdated a few minutes for clock skew, never into the future. */
        time_t now = time(NULL);
        CU_ASSERT(X509_cmp_time(X509_get0_notBefore(x), &now) < 0);
        X509_free(x);

        /* The bundle carries the CA certificate as it is. */
        size_t copy_len = 0;
        char *copy = read_in(dirs[i], "ca.crt", &copy_len);
        CU_ASSERT(copy_len == ca_len && memcmp(copy, ca_pem, ca_len) == 0);
        free(copy);
    }
    /* The CA's ledger lists the three identities. */
    char *issued = read_in(t.ca_dir, "issued.txt", NULL);
    CU_ASSERT(strstr(issued, " trialsync://T1/hub/hub-1\n") != NULL);
    CU_ASSERT(strstr(issued, " trialsync://T1/site/101\n") != NULL);
    CU_ASSERT(strstr(issued, " trialsync://T1/admin/alice.admin\n") != NULL);
    free(issued);
    free(ca_pem);
}

static void test_pki_issue_chain_verifies_against_ca_only(void)
{
    struct trial t, other;
    char site[800];

    trial_make(&t, "pki-chain", "T1");
    issue_ok(&t, PKI_ROLE_SITE, "101", NULL, "site", site, sizeof(site));
    CU_ASSERT_EQUAL(verify_chain(t.ca_dir, site, X509_PURPOSE_SSL_CLIENT, false), X509_V_OK);
    CU_ASSERT_EQUAL(verify_chain(t.ca_dir, site, X509_PURPOSE_SSL_SERVER, false), X509_V_OK);
    CU_ASSERT_EQUAL(verify_chain(t.ca_dir, site, X509_PURPOSE_SSL_CLIENT, true), X509_V_OK);

    /* Another trial's CA (same trial id even) does not vouch for it. */
    trial_make(&other, "pki-chain-other", "T1");
    CU_ASSERT_NOT_EQUAL(verify_chain(other.ca_dir, site, X509_PURPOSE_SSL_CLIENT, false),
                        X509_V_OK);
}

static void test_pki_issue_key_signs_for_its_certificate(void)
{
    struct trial t;
    char hub[800], key_path[900];
    struct ts_error err = {0};

    trial_make(&t, "pki-sign", "T1");
    issue_ok(&t, PKI_ROLE_HUB, "hub-1", NULL, "hub", hub, sizeof(hub));
    join(key_path, sizeof(key_path), hub, "node.key");
    struct crypto_key *k = NULL;
    CU_ASSERT_FATAL(crypto_key_load(key_path, &k, &err) == 0);
    size_t len = 0;
    char *pem = read_in(hub, "node.crt", &len);
    struct crypto_pubkey *p = NULL;
    CU_ASSERT_FATAL(crypto_pubkey_from_cert(pem, len, &p, &err) == 0);
    uint8_t sig[TS_SIG_BYTES_MAX];
    size_t sig_len = 0;
    CU_ASSERT_FATAL(crypto_sign(k, (const uint8_t *)"x", 1, sig, &sig_len, &err) == 0);
    CU_ASSERT(crypto_verify(p, (const uint8_t *)"x", 1, sig, sig_len));
    crypto_pubkey_free(p);
    crypto_key_free(k);
    free(pem);
}

static void test_pki_issue_refuses_overwrite(void)
{
    struct trial t;
    char site[800];
    struct ts_error err = {0};
    struct pki_identity who = {.trial = "T1", .role = PKI_ROLE_SITE, .id = "102"};

    trial_make(&t, "pki-overwrite", "T1");
    issue_ok(&t, PKI_ROLE_SITE, "101", NULL, "site", site, sizeof(site));
    size_t len_before = 0, len_after = 0;
    char *before = read_in(site, "node.key", &len_before);
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, NULL, 365, site, NULL, NULL, &err), TS_ERR_EXISTS);
    CU_ASSERT(strstr(err.msg, "node.key") != NULL);
    char *after = read_in(site, "node.key", &len_after);
    CU_ASSERT(len_before == len_after && memcmp(before, after, len_before) == 0);
    free(after);
    free(before);

    /* A stray node.crt alone also stops a new identity. */
    char other[800], crt[900];
    join(other, sizeof(other), t.dir, "other");
    CU_ASSERT_FATAL(mkdir(other, 0700) == 0);
    join(crt, sizeof(crt), other, "node.crt");
    int fd = open(crt, O_WRONLY | O_CREAT | O_EXCL, 0644);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, NULL, 365, other, NULL, NULL, &err), TS_ERR_EXISTS);
    struct stat st;
    char key[900];
    join(key, sizeof(key), other, "node.key");
    CU_ASSERT(stat(key, &st) != 0);
}

static void test_pki_issue_refuses_bad_requests(void)
{
    struct trial t;
    char out[800];
    struct ts_error err = {0};
    struct pki_identity who = {.trial = "T2", .role = PKI_ROLE_SITE, .id = "101"};

    trial_make(&t, "pki-issue-bad", "T1");
    join(out, sizeof(out), t.dir, "out");
    /* The CA of T1 does not issue for T2. */
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, NULL, 365, out, NULL, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "T2") != NULL);
    snprintf(who.trial, sizeof(who.trial), "T1");
    /* Outliving the CA (3650 days) is refused. */
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, NULL, 4000, out, NULL, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "expires") != NULL);
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, NULL, 0, out, NULL, NULL, &err), TS_ERR_INVALID);
    /* Names: not empty, no control characters, at most 64 characters. */
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, "", 365, out, NULL, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, "a\nb", 365, out, NULL, NULL, &err), TS_ERR_INVALID);
    char long_name[80];
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, long_name, 365, out, NULL, NULL, &err), TS_ERR_INVALID);
    /* Bad ids and roles. */
    snprintf(who.id, sizeof(who.id), "a/b");
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, NULL, 365, out, NULL, NULL, &err), TS_ERR_INVALID);
    snprintf(who.id, sizeof(who.id), "101");
    who.role = (enum pki_role)7;
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, NULL, 365, out, NULL, NULL, &err), TS_ERR_INVALID);
    /* None of the refusals left an identity behind. */
    struct stat st;
    char key[900];
    join(key, sizeof(key), out, "node.key");
    CU_ASSERT(stat(key, &st) != 0);
    /* 64 characters (more bytes in UTF-8) is fine. */
    who.role = PKI_ROLE_SITE;
    char name64[200] = "";
    for (int i = 0; i < 64; i++)
        strncat(name64, "\xc3\xa9", sizeof(name64) - strlen(name64) - 1);
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, name64, 365, out, NULL, NULL, &err), 0);
}

static void test_pki_issue_refuses_unsafe_ca_key(void)
{
    struct trial t;
    char out[800], ca_key[800];
    struct ts_error err = {0};
    struct pki_identity who = {.trial = "T1", .role = PKI_ROLE_SITE, .id = "101"};

    trial_make(&t, "pki-ca-mode", "T1");
    join(out, sizeof(out), t.dir, "out");
    join(ca_key, sizeof(ca_key), t.ca_dir, "ca.key");
    CU_ASSERT_FATAL(chmod(ca_key, 0644) == 0);
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &who, NULL, 365, out, NULL, NULL, &err), TS_ERR_PERM);
    CU_ASSERT(strstr(err.msg, "0644") != NULL);
    CU_ASSERT_EQUAL(pki_crl_write(t.ca_dir, NULL, &err), TS_ERR_PERM);
}

/* Writes text to path with mode 0600 (a pass file). */
static void write_pass_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    CU_ASSERT_FATAL(close(fd) == 0);
}

/*
 * An encrypted CA (as init --encrypt-ca makes it): ca.key is AES-256 PKCS#8;
 * issuing needs its passphrase, and without one nothing is written; an admin
 * key may be encrypted too, a node key may not.
 */
static void test_pki_encrypted_ca_needs_its_passphrase(void)
{
    struct trial t;
    char pass_path[800], wrong_path[800], out[800], path[900];
    struct ts_error err = {0};
    struct pki_identity site = {.trial = "T1", .role = PKI_ROLE_SITE, .id = "101"};
    struct pki_identity admin = {.trial = "T1", .role = PKI_ROLE_ADMIN, .id = "admin"};
    struct crypto_pass pass, none, wrong;
    struct stat st;

    snprintf(t.dir, sizeof(t.dir), "%s", unit_tmpdir("pki-enc"));
    join(t.ca_dir, sizeof(t.ca_dir), t.dir, "ca");
    join(pass_path, sizeof(pass_path), t.dir, "pass");
    join(wrong_path, sizeof(wrong_path), t.dir, "wrong");
    write_pass_file(pass_path, "correct horse\n");
    write_pass_file(wrong_path, "wrong horse!\n");
    crypto_pass_init(&pass, pass_path, false);
    crypto_pass_init(&none, NULL, false);
    crypto_pass_init(&wrong, wrong_path, false);

    int rc = pki_ca_create(t.ca_dir, "T1", 3650, &pass, &err);
    if (rc != 0)
        fprintf(stderr, "\npki_ca_create: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    size_t len = 0;
    char *pem = read_in(t.ca_dir, "ca.key", &len);
    CU_ASSERT(strncmp(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----", 37) == 0);
    free(pem);
    join(path, sizeof(path), t.ca_dir, "ca.key");
    struct crypto_key *k = NULL;
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), 0);
    crypto_key_free(k);

    /* No passphrase: refused, and the site directory is not even made. */
    join(out, sizeof(out), t.dir, "site101");
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &site, NULL, 365, out, &none, NULL, &err), TS_ERR_AUTH);
    CU_ASSERT(strstr(err.msg, "is encrypted: give its passphrase with --pass-file FILE or on "
                              "the terminal") != NULL);
    CU_ASSERT(lstat(out, &st) != 0 && errno == ENOENT);
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &site, NULL, 365, out, NULL, NULL, &err),
                    TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "is encrypted") != NULL);
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &site, NULL, 365, out, &wrong, NULL, &err), TS_ERR_AUTH);
    CU_ASSERT(strstr(err.msg, "does not decrypt it") != NULL);
    CU_ASSERT(lstat(out, &st) != 0 && errno == ENOENT);
    CU_ASSERT_EQUAL(pki_crl_write(t.ca_dir, &none, &err), TS_ERR_AUTH);
    CU_ASSERT(ERR_peek_error() == 0);

    /* With it: issued, and the site's key is not encrypted. */
    rc = pki_issue(t.ca_dir, &site, NULL, 365, out, &pass, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "\npki_issue: %s\n", err.msg);
    CU_ASSERT_EQUAL(rc, 0);
    join(path, sizeof(path), out, "node.key");
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), 0);
    crypto_key_free(k);
    CU_ASSERT_EQUAL(pki_crl_write(t.ca_dir, &pass, &err), 0);
    join(path, sizeof(path), out, "node.crt");
    CU_ASSERT_EQUAL(pki_revoke(t.ca_dir, path, &pass, &err), 0);

    /* A node key may not be encrypted; an admin key may. */
    join(out, sizeof(out), t.dir, "site102");
    site.id[2] = '2';
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &site, NULL, 365, out, &pass, &pass, &err),
                    TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "only an admin key may be encrypted") != NULL);
    join(out, sizeof(out), t.dir, "admin");
    CU_ASSERT_EQUAL(pki_issue(t.ca_dir, &admin, NULL, 365, out, &pass, &pass, &err), 0);
    pem = read_in(out, "node.key", &len);
    CU_ASSERT(strncmp(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----", 37) == 0);
    free(pem);
    join(path, sizeof(path), out, "node.key");
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), 0);
    crypto_key_free(k);
    crypto_pass_release(&wrong);
    crypto_pass_release(&none);
    crypto_pass_release(&pass);
}

/* A passphrase too short for a new key writes no CA at all. */
static void test_pki_ca_create_refuses_short_passphrase(void)
{
    char dir[600], ca_dir[700], pass_path[700];
    struct ts_error err = {0};
    struct crypto_pass pass;
    struct stat st;

    snprintf(dir, sizeof(dir), "%s", unit_tmpdir("pki-enc-short"));
    join(ca_dir, sizeof(ca_dir), dir, "ca");
    join(pass_path, sizeof(pass_path), dir, "pass");
    write_pass_file(pass_path, "short\n");
    crypto_pass_init(&pass, pass_path, false);
    CU_ASSERT_EQUAL(pki_ca_create(ca_dir, "T1", 3650, &pass, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "at least 8") != NULL);
    join(pass_path, sizeof(pass_path), ca_dir, "ca.key");
    CU_ASSERT(lstat(pass_path, &st) != 0);
    crypto_pass_release(&pass);
}

static void test_pki_uri_parse_good_and_bad(void)
{
    struct pki_identity id;
    char uri[300];
    char long_id[TS_ID_BYTES_MAX + 2];

    CU_ASSERT_EQUAL(pki_uri_parse("trialsync://T1/site/101", &id), 0);
    CU_ASSERT_STRING_EQUAL(id.trial, "T1");
    CU_ASSERT_EQUAL(id.role, PKI_ROLE_SITE);
    CU_ASSERT_STRING_EQUAL(id.id, "101");
    CU_ASSERT_EQUAL(pki_uri_parse("trialsync://onc-2024.a_b/hub/hub-1", &id), 0);
    CU_ASSERT_EQUAL(id.role, PKI_ROLE_HUB);
    CU_ASSERT_EQUAL(pki_uri_parse("trialsync://T1/admin/alice", &id), 0);
    CU_ASSERT_EQUAL(id.role, PKI_ROLE_ADMIN);

    /* The longest ids fit. */
    memset(long_id, 'x', TS_ID_BYTES_MAX);
    long_id[TS_ID_BYTES_MAX] = '\0';
    snprintf(uri, sizeof(uri), "trialsync://%s/site/%s", long_id, long_id);
    CU_ASSERT_EQUAL(pki_uri_parse(uri, &id), 0);
    CU_ASSERT_STRING_EQUAL(id.id, long_id);

    static const char *const bad[] = {
        "",
        "http://T1/site/101",
        "TRIALSYNC://T1/site/101",
        "trialsync:/T1/site/101",
        "trialsync://T1/site",
        "trialsync://T1/site/",
        "trialsync://T1//101",
        "trialsync:///site/101",
        "trialsync://T1/boss/101",
        "trialsync://T1/ca/ca",
        "trialsync://T1/Site/101",
        "trialsync://T1/site/101/extra",
        "trialsync://T1/site/10 1",
        "trialsync://T1/site/101?x=1",
        "trialsync://T1/site/..",
        "trialsync://T1/site/.",
        "trialsync://T1:443/site/101",
        "trialsync://user@T1/site/101",
        NULL,
    };
    for (int i = 0; bad[i] != NULL; i++) {
        CU_ASSERT_EQUAL(pki_uri_parse(bad[i], &id), TS_ERR_INVALID);
        if (pki_uri_parse(bad[i], &id) != TS_ERR_INVALID)
            fprintf(stderr, "accepted bad URI \"%s\"\n", bad[i]);
    }
    CU_ASSERT_EQUAL(pki_uri_parse(NULL, &id), TS_ERR_INVALID);
    /* One byte too long, in the id or the trial. */
    long_id[TS_ID_BYTES_MAX] = 'x';
    long_id[TS_ID_BYTES_MAX + 1] = '\0';
    snprintf(uri, sizeof(uri), "trialsync://T1/site/%s", long_id);
    CU_ASSERT_EQUAL(pki_uri_parse(uri, &id), TS_ERR_INVALID);
    snprintf(uri, sizeof(uri), "trialsync://%s/site/101", long_id);
    CU_ASSERT_EQUAL(pki_uri_parse(uri, &id), TS_ERR_INVALID);
}

static void test_pki_role_parse_and_name(void)
{
    static const enum pki_role roles[] = {PKI_ROLE_HUB, PKI_ROLE_SITE, PKI_ROLE_ADMIN};
    enum pki_role r;

    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(pki_role_parse(pki_role_name(roles[i]), &r), 0);
        CU_ASSERT_EQUAL(r, roles[i]);
    }
    CU_ASSERT_EQUAL(pki_role_parse("HUB", &r), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_role_parse("ca", &r), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_role_parse("", &r), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_role_parse(NULL, &r), TS_ERR_INVALID);
}

static void test_pki_cert_identity_needs_exactly_one_trialsync_uri(void)
{
    struct pki_identity id;
    struct ts_error err = {0};
    size_t len = 0;
    char *pem;

    pem = make_cert_with_uris(NULL, 0, &len);
    CU_ASSERT_EQUAL(pki_cert_identity(pem, len, &id, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "no subject alternative name") != NULL);
    free(pem);

    static const char *const two[] = {"trialsync://T1/site/101", "trialsync://T1/hub/hub-1"};
    pem = make_cert_with_uris(two, 2, &len);
    CU_ASSERT_EQUAL(pki_cert_identity(pem, len, &id, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "2 trialsync URIs") != NULL);
    free(pem);

    /* A second spelling of the scheme still counts as a second identity. */
    static const char *const cased[] = {"trialsync://T1/site/101", "TrialSync://T1/hub/h"};
    pem = make_cert_with_uris(cased, 2, &len);
    CU_ASSERT_EQUAL(pki_cert_identity(pem, len, &id, &err), TS_ERR_INVALID);
    free(pem);

    static const char *const other[] = {"https://example.org/", "spiffe://x/y"};
    pem = make_cert_with_uris(other, 2, &len);
    CU_ASSERT_EQUAL(pki_cert_identity(pem, len, &id, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "no trialsync") != NULL);
    free(pem);

    static const char *const bad_role[] = {"trialsync://T1/boss/101"};
    pem = make_cert_with_uris(bad_role, 1, &len);
    CU_ASSERT_EQUAL(pki_cert_identity(pem, len, &id, &err), TS_ERR_INVALID);
    free(pem);

    /* Other URIs beside the one trialsync URI are ignored. */
    static const char *const mixed[] = {"https://example.org/", "trialsync://T9/admin/bob"};
    pem = make_cert_with_uris(mixed, 2, &len);
    CU_ASSERT_EQUAL(pki_cert_identity(pem, len, &id, &err), 0);
    CU_ASSERT_STRING_EQUAL(id.trial, "T9");
    CU_ASSERT_EQUAL(id.role, PKI_ROLE_ADMIN);
    CU_ASSERT_STRING_EQUAL(id.id, "bob");
    free(pem);

    CU_ASSERT_EQUAL(pki_cert_identity("garbage", 7, &id, &err), TS_ERR_INVALID);
    CU_ASSERT(ERR_peek_error() == 0);

    /* The CA's own certificate is not a node identity. */
    struct trial t;
    trial_make(&t, "pki-ident-ca", "T1");
    pem = read_in(t.ca_dir, "ca.crt", &len);
    CU_ASSERT_EQUAL(pki_cert_identity(pem, len, &id, &err), TS_ERR_INVALID);
    free(pem);
}

static void test_pki_read_file_bounds(void)
{
    const char *dir = unit_tmpdir("pki-read");
    char path[700];
    char *buf = NULL;
    size_t len = 0;
    struct ts_error err = {0};

    join(path, sizeof(path), dir, "big");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(ftruncate(fd, PKI_FILE_BYTES_MAX) == 0);
    close(fd);
    CU_ASSERT_EQUAL(pki_read_file(path, &buf, &len, &err), 0);
    CU_ASSERT_EQUAL(len, PKI_FILE_BYTES_MAX);
    CU_ASSERT(buf != NULL && buf[len] == '\0');
    free(buf);
    buf = NULL;
    CU_ASSERT_FATAL(truncate(path, PKI_FILE_BYTES_MAX + 1) == 0);
    CU_ASSERT_EQUAL(pki_read_file(path, &buf, &len, &err), TS_ERR_TOOBIG);
    CU_ASSERT(buf == NULL);
    CU_ASSERT(strstr(err.msg, path) != NULL);

    join(path, sizeof(path), dir, "empty");
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    CU_ASSERT_EQUAL(pki_read_file(path, &buf, &len, &err), 0);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT(buf != NULL && buf[0] == '\0');
    free(buf);

    join(path, sizeof(path), dir, "absent");
    CU_ASSERT_EQUAL(pki_read_file(path, &buf, &len, &err), TS_ERR_NOTFOUND);
    CU_ASSERT_EQUAL(pki_read_file(dir, &buf, &len, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_read_file("/dev/zero", &buf, &len, &err), TS_ERR_INVALID);
}

static void test_pki_revoke_lists_serial_in_signed_crl(void)
{
    struct trial t;
    char site[800], hub[800], crt[900];
    char serial[PKI_SERIAL_HEX_BYTES_MAX];
    struct ts_error err = {0};

    trial_make(&t, "pki-revoke", "T1");
    issue_ok(&t, PKI_ROLE_SITE, "101", NULL, "site", site, sizeof(site));
    issue_ok(&t, PKI_ROLE_HUB, "hub-1", NULL, "hub", hub, sizeof(hub));
    serial_of(site, serial);
    X509_CRL *crl = load_crl(t.ca_dir);
    ASN1_INTEGER *number0 = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    CU_ASSERT_FATAL(number0 != NULL);
    X509_CRL_free(crl);

    join(crt, sizeof(crt), site, "node.crt");
    int rc = pki_revoke(t.ca_dir, crt, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "pki_revoke: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);

    X509 *ca = load_cert(t.ca_dir, "ca.crt");
    crl = load_crl(t.ca_dir);
    CU_ASSERT_EQUAL(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
    CU_ASSERT_EQUAL(X509_CRL_get_version(crl), X509_CRL_VERSION_2);
    CU_ASSERT_EQUAL(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)), 0);
    CU_ASSERT_EQUAL(crl_count(crl), 1);
    CU_ASSERT(crl_has_serial(crl, serial));
    /* nextUpdate is PKI_CRL_DAYS ahead. */
    int days = 0, secs = 0;
    CU_ASSERT_FATAL(ASN1_TIME_diff(&days, &secs, NULL, X509_CRL_get0_nextUpdate(crl)) == 1);
    CU_ASSERT(days == PKI_CRL_DAYS || (days == PKI_CRL_DAYS - 1 && secs > 86000));
    AUTHORITY_KEYID *akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    CU_ASSERT(akid != NULL);
    AUTHORITY_KEYID_free(akid);
    /* The CRL number grows with every CRL. */
    ASN1_INTEGER *number1 = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    CU_ASSERT_FATAL(number1 != NULL);
    CU_ASSERT(ASN1_INTEGER_cmp(number1, number0) > 0);
    ASN1_INTEGER_free(number1);
    ASN1_INTEGER_free(number0);
    X509_CRL_free(crl);
    X509_free(ca);

    /* A verifier with the CRL refuses the site and still accepts the hub. */
    CU_ASSERT_EQUAL(verify_chain(t.ca_dir, site, X509_PURPOSE_SSL_CLIENT, true),
                    X509_V_ERR_CERT_REVOKED);
    CU_ASSERT_EQUAL(verify_chain(t.ca_dir, hub, X509_PURPOSE_SSL_CLIENT, true), X509_V_OK);

    /* revoked.txt names the serial and the identity, once even when revoked twice. */
    CU_ASSERT_EQUAL(pki_revoke(t.ca_dir, crt, NULL, &err), 0);
    char *text = read_in(t.ca_dir, "revoked.txt", NULL);
    char *hit = strstr(text, serial);
    CU_ASSERT_FATAL(hit != NULL);
    CU_ASSERT(strstr(hit + 1, serial) == NULL);
    CU_ASSERT(strstr(text, " trialsync://T1/site/101\n") != NULL);
    free(text);
    crl = load_crl(t.ca_dir);
    CU_ASSERT_EQUAL(crl_count(crl), 1);
    X509_CRL_free(crl);
}

/* pki_crl_check and pki_crl_revoked: what a node trusts of a replicated CRL. */
static void test_pki_crl_check_and_revoked(void)
{
    struct trial t, other;
    char site[800], hub[800], crt[900], path[900];
    char serial[PKI_SERIAL_HEX_BYTES_MAX], hub_serial[PKI_SERIAL_HEX_BYTES_MAX];
    struct ts_error err = {0};
    char *ca = NULL, *crl = NULL, *foreign = NULL;
    size_t ca_len = 0, crl_len = 0, foreign_len = 0;
    int64_t number = -1, before = -1, at = 0;

    trial_make(&t, "pki-crlcheck", "T1");
    trial_make(&other, "pki-crlcheck-other", "T1");
    issue_ok(&t, PKI_ROLE_SITE, "101", NULL, "site", site, sizeof(site));
    issue_ok(&t, PKI_ROLE_HUB, "hub-1", NULL, "hub", hub, sizeof(hub));
    serial_of(site, serial);
    serial_of(hub, hub_serial);
    join(path, sizeof(path), t.ca_dir, "ca.crt");
    CU_ASSERT_FATAL(pki_read_file(path, &ca, &ca_len, &err) == 0);
    join(path, sizeof(path), t.ca_dir, "crl.pem");
    CU_ASSERT_FATAL(pki_read_file(path, &crl, &crl_len, &err) == 0);
    CU_ASSERT_EQUAL(pki_crl_check(ca, ca_len, crl, crl_len, &before, &err), 0);
    CU_ASSERT(before > 0);
    CU_ASSERT_EQUAL(pki_crl_revoked(crl, crl_len, serial, &at, &err), 0);
    free(crl);

    join(crt, sizeof(crt), site, "node.crt");
    CU_ASSERT_FATAL(pki_revoke(t.ca_dir, crt, NULL, &err) == 0);
    CU_ASSERT_FATAL(pki_read_file(path, &crl, &crl_len, &err) == 0);
    CU_ASSERT_EQUAL(pki_crl_check(ca, ca_len, crl, crl_len, &number, &err), 0);
    CU_ASSERT(number > before);
    int64_t now = (int64_t)time(NULL);
    CU_ASSERT_EQUAL(pki_crl_revoked(crl, crl_len, serial, &at, &err), 1);
    CU_ASSERT(at > now - 600 && at <= now + 5);
    CU_ASSERT_EQUAL(pki_crl_revoked(crl, crl_len, hub_serial, &at, &err), 0);
    CU_ASSERT(pki_crl_revoked(crl, crl_len, "not-hex", &at, &err) < 0);

    /* Another CA's CRL, and a CRL altered by one byte, are not the trial's. */
    join(path, sizeof(path), other.ca_dir, "crl.pem");
    CU_ASSERT_FATAL(pki_read_file(path, &foreign, &foreign_len, &err) == 0);
    CU_ASSERT_EQUAL(pki_crl_check(ca, ca_len, foreign, foreign_len, &number, &err), TS_ERR_AUTH);
    char *nl = strchr(crl, '\n');
    CU_ASSERT_FATAL(nl != NULL && nl[1] != '\0' && nl[5] != '\0');
    nl[5] = nl[5] == 'A' ? 'B' : 'A';
    CU_ASSERT(pki_crl_check(ca, ca_len, crl, crl_len, &number, &err) != 0);
    CU_ASSERT(pki_crl_check(ca, ca_len, "-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n",
                            48, &number, &err) == TS_ERR_INVALID);
    free(foreign);
    free(crl);
    free(ca);
}

static void test_pki_revoke_serial_and_crl_write(void)
{
    struct trial t;
    char a[800], b[800];
    char serial_a[PKI_SERIAL_HEX_BYTES_MAX], serial_b[PKI_SERIAL_HEX_BYTES_MAX];
    char lower[PKI_SERIAL_HEX_BYTES_MAX + 4];
    struct ts_error err = {0};

    trial_make(&t, "pki-revoke-serial", "T1");
    issue_ok(&t, PKI_ROLE_SITE, "101", NULL, "a", a, sizeof(a));
    issue_ok(&t, PKI_ROLE_SITE, "102", NULL, "b", b, sizeof(b));
    serial_of(a, serial_a);
    serial_of(b, serial_b);

    /* Case and leading zeros do not matter. */
    snprintf(lower, sizeof(lower), "00%s", serial_a);
    for (char *p = lower; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    CU_ASSERT_EQUAL(pki_revoke_serial(t.ca_dir, lower, NULL, &err), 0);
    CU_ASSERT_EQUAL(pki_revoke_serial(t.ca_dir, serial_a, NULL, &err), 0);
    CU_ASSERT_EQUAL(pki_revoke_serial(t.ca_dir, serial_b, NULL, &err), 0);
    X509_CRL *crl = load_crl(t.ca_dir);
    CU_ASSERT_EQUAL(crl_count(crl), 2);
    CU_ASSERT(crl_has_serial(crl, serial_a));
    CU_ASSERT(crl_has_serial(crl, serial_b));
    X509_CRL_free(crl);

    /* Rewriting the CRL keeps the list. */
    CU_ASSERT_EQUAL(pki_crl_write(t.ca_dir, NULL, &err), 0);
    crl = load_crl(t.ca_dir);
    CU_ASSERT_EQUAL(crl_count(crl), 2);
    X509_CRL_free(crl);

    CU_ASSERT_EQUAL(pki_revoke_serial(t.ca_dir, "xyz", NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_revoke_serial(t.ca_dir, "", NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_revoke_serial(t.ca_dir, "-01", NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(pki_revoke_serial(t.ca_dir, "0123456789012345678901234567890123456789A", NULL,
                                      &err),
                    TS_ERR_INVALID);
}

static void test_pki_revoke_refuses_foreign_and_ca_certs(void)
{
    struct trial t, other;
    char foreign[800], crt[900], ca_crt[800];
    struct ts_error err = {0};

    trial_make(&t, "pki-revoke-foreign", "T1");
    trial_make(&other, "pki-revoke-foreign2", "T1");
    issue_ok(&other, PKI_ROLE_SITE, "101", NULL, "site", foreign, sizeof(foreign));
    join(crt, sizeof(crt), foreign, "node.crt");
    CU_ASSERT_EQUAL(pki_revoke(t.ca_dir, crt, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "not issued") != NULL);
    join(ca_crt, sizeof(ca_crt), t.ca_dir, "ca.crt");
    CU_ASSERT_EQUAL(pki_revoke(t.ca_dir, ca_crt, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "CA certificate") != NULL);
    join(crt, sizeof(crt), t.dir, "absent.crt");
    CU_ASSERT_EQUAL(pki_revoke(t.ca_dir, crt, NULL, &err), TS_ERR_NOTFOUND);
    /* Nothing was listed. */
    X509_CRL *crl = load_crl(t.ca_dir);
    CU_ASSERT_EQUAL(crl_count(crl), 0);
    X509_CRL_free(crl);
}

static void test_pki_crl_write_reports_corrupt_line(void)
{
    struct trial t;
    char path[800];
    struct ts_error err = {0};

    trial_make(&t, "pki-crl-corrupt", "T1");
    join(path, sizeof(path), t.ca_dir, "revoked.txt");
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("# revoked by hand\n\n0A1B 2024-05-01T12:00:00Z\n", f);
    fputs("0A1C 2024-02-30T12:00:00Z trialsync://T1/site/9\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(pki_crl_write(t.ca_dir, NULL, &err), TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "line 4") != NULL);

    /* A good file, last newline missing, then an append keeps lines apart. */
    f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("0A1B 2024-05-01T12:00:00Z", f);
    fclose(f);
    CU_ASSERT_EQUAL(pki_crl_write(t.ca_dir, NULL, &err), 0);
    CU_ASSERT_EQUAL(pki_revoke_serial(t.ca_dir, "0A1C", NULL, &err), 0);
    X509_CRL *crl = load_crl(t.ca_dir);
    CU_ASSERT_EQUAL(crl_count(crl), 2);
    CU_ASSERT(crl_has_serial(crl, "0A1B"));
    CU_ASSERT(crl_has_serial(crl, "0A1C"));
    /* The recorded time is the revocation date. */
    X509_REVOKED *rev = NULL;
    ASN1_INTEGER *s = ASN1_INTEGER_new();
    ASN1_INTEGER_set(s, 0x0A1B);
    CU_ASSERT_FATAL(X509_CRL_get0_by_serial(crl, &rev, s) == 1);
    ASN1_TIME *want = ASN1_TIME_new();
    CU_ASSERT_FATAL(ASN1_TIME_set_string(want, "20240501120000Z") == 1);
    CU_ASSERT_EQUAL(ASN1_TIME_compare(X509_REVOKED_get0_revocationDate(rev), want), 0);
    ASN1_TIME_free(want);
    ASN1_INTEGER_free(s);
    X509_CRL_free(crl);
}

static void test_pki_cert_serial_hex_bounds(void)
{
    struct trial t;
    char site[800];
    char small[8];
    char serial[PKI_SERIAL_HEX_BYTES_MAX];
    struct ts_error err = {0};

    trial_make(&t, "pki-serial", "T1");
    issue_ok(&t, PKI_ROLE_SITE, "101", NULL, "site", site, sizeof(site));
    size_t len = 0;
    char *pem = read_in(site, "node.crt", &len);
    CU_ASSERT_EQUAL(pki_cert_serial_hex(pem, len, small, sizeof(small), &err), TS_ERR_TOOBIG);
    CU_ASSERT_EQUAL(pki_cert_serial_hex(pem, len, serial, sizeof(serial), &err), 0);
    CU_ASSERT(strlen(serial) >= 30 && strlen(serial) <= 32);
    CU_ASSERT(strspn(serial, "0123456789ABCDEF") == strlen(serial));
    CU_ASSERT_EQUAL(pki_cert_serial_hex("nope", 4, serial, sizeof(serial), &err),
                    TS_ERR_INVALID);
    free(pem);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_pki_encrypted_ca_needs_its_passphrase", test_pki_encrypted_ca_needs_its_passphrase},
        {"test_pki_ca_create_refuses_short_passphrase", test_pki_ca_create_refuses_short_passphrase},
        {"test_pki_ca_create_writes_ca_files", test_pki_ca_create_writes_ca_files},
        {"test_pki_ca_create_refuses_second_create", test_pki_ca_create_refuses_second_create},
        {"test_pki_ca_create_refuses_bad_arguments", test_pki_ca_create_refuses_bad_arguments},
        {"test_pki_issue_hub_site_admin_identities", test_pki_issue_hub_site_admin_identities},
        {"test_pki_issue_chain_verifies_against_ca_only",
         test_pki_issue_chain_verifies_against_ca_only},
        {"test_pki_issue_key_signs_for_its_certificate",
         test_pki_issue_key_signs_for_its_certificate},
        {"test_pki_issue_refuses_overwrite", test_pki_issue_refuses_overwrite},
        {"test_pki_issue_refuses_bad_requests", test_pki_issue_refuses_bad_requests},
        {"test_pki_issue_refuses_unsafe_ca_key", test_pki_issue_refuses_unsafe_ca_key},
        {"test_pki_uri_parse_good_and_bad", test_pki_uri_parse_good_and_bad},
        {"test_pki_role_parse_and_name", test_pki_role_parse_and_name},
        {"test_pki_cert_identity_needs_exactly_one_trialsync_uri",
         test_pki_cert_identity_needs_exactly_one_trialsync_uri},
        {"test_pki_read_file_bounds", test_pki_read_file_bounds},
        {"test_pki_revoke_lists_serial_in_signed_crl", test_pki_revoke_lists_serial_in_signed_crl},
        {"test_pki_revoke_serial_and_crl_write", test_pki_revoke_serial_and_crl_write},
        {"test_pki_crl_check_and_revoked", test_pki_crl_check_and_revoked},
        {"test_pki_revoke_refuses_foreign_and_ca_certs",
         test_pki_revoke_refuses_foreign_and_ca_certs},
        {"test_pki_crl_write_reports_corrupt_line", test_pki_crl_write_reports_corrupt_line},
        {"test_pki_cert_serial_hex_bounds", test_pki_cert_serial_hex_bounds},
        {NULL, NULL},
    };
    unit_seed();
    return unit_run("pki", tests);
}
