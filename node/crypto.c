/*
 * crypto.c: SHA-256 chain hashes, Ed25519 signatures and private key files,
 * on top of OpenSSL 3 (one of the few files that include OpenSSL).
 *
 * Guarantees:
 * - Algorithms are fixed, never negotiated or taken from a file: SHA-256 for
 *   hashes, Ed25519 (pure, no pre-hash) for signatures.  A key or certificate
 *   holding any other key type is refused with TS_ERR_INVALID.
 * - A private key is read only after the opened file itself (fstat on the
 *   descriptor, so the check and the read see the same file) is a regular
 *   file owned by the effective user with no group or other permission bits;
 *   otherwise TS_ERR_PERM with the path, the mode and the fix.
 * - One loader (ossl_key_load) reads every private key of the project.  An
 *   encrypted PEM key is decrypted only with a passphrase from the source its
 *   caller gives (a pass file, or a terminal prompt the caller allows); with
 *   none it is refused.  OpenSSL's own prompt is never used, so nothing here
 *   blocks on a terminal unless the caller asked for that.
 * - Every OpenSSL failure is turned into a ts_error code and message here and
 *   OpenSSL's per-thread error queue is left empty, so a later, unrelated
 *   failure never reports a stale error.
 * - Secret bytes read from a key file are wiped before their buffer is freed.
 * - No static state: every function may be called from any thread.
 */
#include "crypto.h"
#include "openssl_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ui.h>
#include <openssl/x509.h>

/*
 * An Ed25519 PKCS#8 PEM key is about 120 bytes; 16 KiB leaves room for
 * comments and line-ending quirks while keeping a wrong path (a log file, a
 * device) from being read into memory whole.
 */
#define CRYPTO_KEY_FILE_BYTES_MAX (16 * 1024)
/* A certificate given in memory: the same bound pki.c puts on files. */
#define CRYPTO_CERT_PEM_BYTES_MAX (1024 * 1024)
/* Ed25519 public keys are 32 bytes, signatures 64 (RFC 8032). */
#define CRYPTO_ED25519_PUBKEY_BYTES 32
#define CRYPTO_ED25519_SIG_BYTES 64

_Static_assert(CRYPTO_ED25519_SIG_BYTES <= TS_SIG_BYTES_MAX,
               "an Ed25519 signature must fit in TS_SIG_BYTES_MAX");
_Static_assert(TS_HASH_BYTES == 32, "chain hashes are SHA-256");
_Static_assert(CRYPTO_PASS_BYTES_NEW_MIN <= CRYPTO_PASS_BYTES_MAX,
               "a new key's passphrase must fit the passphrase buffer");
_Static_assert(CRYPTO_PASS_BYTES_MAX < CRYPTO_KEY_FILE_BYTES_MAX,
               "a pass file is read with the key file bound");

struct crypto_key {
    EVP_PKEY *pkey;   /* an Ed25519 private key */
};

struct crypto_pubkey {
    EVP_PKEY *pkey;   /* an Ed25519 public key, never holding private parts */
};

int ossl_error(struct ts_error *err, int code, const char *fmt, ...)
{
    char what[256];
    char detail[384];
    size_t used = 0;
    unsigned long e;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    detail[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[160];
        ERR_error_string_n(e, one, sizeof(one));
        int n = snprintf(detail + used, sizeof(detail) - used, "%s%s",
                         used == 0 ? "" : "; ", one);
        if (n < 0 || (size_t)n >= sizeof(detail) - used)
            break;
        used += (size_t)n;
    }
    ERR_clear_error();
    if (used == 0)
        return ts_error_set(err, code, "%s (OpenSSL gave no reason)", what);
    return ts_error_set(err, code, "%s: %s", what, detail);
}

int ossl_no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static bool pkey_is_ed25519(const EVP_PKEY *pkey)
{
    return EVP_PKEY_is_a(pkey, "ED25519") == 1;
}

void crypto_sha256(const void *data, size_t len, uint8_t out[TS_HASH_BYTES])
{
    unsigned int out_len = 0;

    assert(data != NULL || len == 0);
    assert(out != NULL);
    /* SHA-256 only fails when OpenSSL itself is broken: nothing to recover. */
    if (EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) != 1)
        abort();
    assert(out_len == TS_HASH_BYTES);
}

void crypto_chain_hash(const uint8_t prev[TS_HASH_BYTES], const uint8_t *entry,
                       size_t len, uint8_t out[TS_HASH_BYTES])
{
    unsigned int out_len = 0;

    assert(prev != NULL);
    assert(entry != NULL || len == 0);
    assert(out != NULL);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        abort();
    /* out may alias prev: prev is fully consumed before out is written. */
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, prev, TS_HASH_BYTES) != 1 ||
        EVP_DigestUpdate(ctx, entry, len) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &out_len) != 1)
        abort();
    EVP_MD_CTX_free(ctx);
    assert(out_len == TS_HASH_BYTES);
}

/*
 * Checks the file open on fd: regular, owned by the effective user (or, when
 * trusted is set, by root), and none of the mode bits in forbidden.  what
 * names the file in messages ("key file").  A secret forbids 077 (nobody
 * else may read it); a trusted file (the config, the CA certificate, the
 * CRL: public, but what the node believes) forbids 022 (nobody else may
 * write it).
 */
static int check_file_fd(int fd, const char *path, const char *what, mode_t forbidden,
                         bool trusted, struct ts_error *err)
{
    struct stat st;

    if (fstat(fd, &st) != 0)
        return ts_error_set(err, TS_ERR_IO, "%s %s: cannot stat: %s", what, path,
                            strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ts_error_set(err, TS_ERR_PERM, "%s %s is not a regular file", what, path);
    if (st.st_uid != geteuid() && !(trusted && st.st_uid == 0))
        return ts_error_set(err, TS_ERR_PERM,
                            "%s %s is owned by uid %lu but trialsync runs as uid %lu; "
                            "it must belong to the user that runs trialsync%s (chown)",
                            what, path, (unsigned long)st.st_uid,
                            (unsigned long)geteuid(), trusted ? " or to root" : "");
    if ((st.st_mode & forbidden) != 0 && !trusted)
        return ts_error_set(err, TS_ERR_PERM,
                            "%s %s has mode 0%03o; it must be 0600 (chmod 600 %s)",
                            what, path, (unsigned)(st.st_mode & 07777), path);
    if ((st.st_mode & forbidden) != 0)
        return ts_error_set(err, TS_ERR_PERM,
                            "%s %s has mode 0%03o: others could change what this node "
                            "trusts; it must not be writable by group or others "
                            "(chmod go-w %s)",
                            what, path, (unsigned)(st.st_mode & 07777), path);
    return 0;
}

static int check_secret_fd(int fd, const char *path, const char *what,
                           struct ts_error *err)
{
    return check_file_fd(fd, path, what, 077, false, err);
}

/*
 * Opens path for reading without blocking on a FIFO; the caller checks the
 * file type with check_secret_fd before reading.
 */
static int open_secret(const char *path, const char *what, int *fd_out,
                       struct ts_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        return ts_error_set(err, e == ENOENT ? TS_ERR_NOTFOUND : TS_ERR_IO,
                            "%s %s: cannot open: %s", what, path, strerror(e));
    }
    *fd_out = fd;
    return 0;
}

int crypto_check_trusted_file(const char *path, const char *what, struct ts_error *err)
{
    int fd = -1;

    assert(path != NULL);
    assert(what != NULL);
    int rc = open_secret(path, what, &fd, err);
    if (rc != 0)
        return rc;
    rc = check_file_fd(fd, path, what, 022, true, err);
    close(fd);
    return rc;
}

int crypto_check_secret_file(const char *path, struct ts_error *err)
{
    int fd = -1;

    assert(path != NULL);
    int rc = open_secret(path, "secret file", &fd, err);
    if (rc != 0)
        return rc;
    rc = check_secret_fd(fd, path, "secret file", err);
    close(fd);
    return rc;
}

/*
 * Reads at most CRYPTO_KEY_FILE_BYTES_MAX bytes of fd into buf (which holds
 * one more byte to detect a longer file).  what names the file ("key file").
 */
static int read_secret_bytes(int fd, const char *path, const char *what, char *buf,
                             size_t *len_out, struct ts_error *err)
{
    size_t used = 0;

    for (;;) {
        ssize_t n = read(fd, buf + used, CRYPTO_KEY_FILE_BYTES_MAX + 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ts_error_set(err, TS_ERR_IO, "%s %s: cannot read: %s", what, path,
                                strerror(errno));
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > CRYPTO_KEY_FILE_BYTES_MAX)
            return ts_error_set(err, TS_ERR_TOOBIG,
                                "%s %s is larger than %d bytes; it is not a %s",
                                what, path, CRYPTO_KEY_FILE_BYTES_MAX,
                                strcmp(what, "key file") == 0 ? "key" : "pass file");
    }
    *len_out = used;
    return 0;
}

/*
 * Opens, checks (as a key file) and reads a whole secret file into a new
 * buffer of CRYPTO_KEY_FILE_BYTES_MAX + 1 bytes; the caller wipes and frees it.
 */
static int secret_read(const char *path, const char *what, char **buf_out, size_t *len_out,
                       struct ts_error *err)
{
    int fd = -1;
    int rc = open_secret(path, what, &fd, err);
    if (rc != 0)
        return rc;
    rc = check_secret_fd(fd, path, what, err);
    if (rc != 0)
        goto out_close;
    char *buf = malloc(CRYPTO_KEY_FILE_BYTES_MAX + 1);
    if (buf == NULL) {
        rc = ts_error_set(err, TS_ERR_NOMEM, "%s %s: out of memory", what, path);
        goto out_close;
    }
    rc = read_secret_bytes(fd, path, what, buf, len_out, err);
    if (rc != 0) {
        OPENSSL_cleanse(buf, CRYPTO_KEY_FILE_BYTES_MAX + 1);
        free(buf);
        goto out_close;
    }
    *buf_out = buf;
out_close:
    close(fd);
    return rc;
}

/* ---- passphrases ---- */

void crypto_pass_init(struct crypto_pass *p, const char *file, bool prompt)
{
    assert(p != NULL);
    memset(p, 0, sizeof(*p));
    p->file = file;
    p->prompt = prompt;
}

void crypto_pass_release(struct crypto_pass *p)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p->text, sizeof(p->text));
    p->len = 0;
    p->have = false;
}

/* The passphrase is the pass file's first line, without its line ending. */
static int pass_from_file(struct crypto_pass *p, struct ts_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = secret_read(p->file, "pass file", &buf, &len, err);
    if (rc != 0)
        return rc;
    const char *nl = memchr(buf, '\n', len);
    size_t line = nl != NULL ? (size_t)(nl - buf) : len;
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    if (line == 0) {
        rc = ts_error_set(err, TS_ERR_INVALID, "pass file %s: its first line is empty; "
                          "write the passphrase there", p->file);
    } else if (line > CRYPTO_PASS_BYTES_MAX) {
        rc = ts_error_set(err, TS_ERR_TOOBIG, "pass file %s: the passphrase is longer than "
                          "%d bytes", p->file, CRYPTO_PASS_BYTES_MAX);
    } else if (memchr(buf, '\0', line) != NULL) {
        rc = ts_error_set(err, TS_ERR_INVALID, "pass file %s: its first line holds a NUL "
                          "byte; it is not a passphrase", p->file);
    } else {
        memcpy(p->text, buf, line);
        p->text[line] = '\0';
        p->len = line;
        p->have = true;
    }
    OPENSSL_cleanse(buf, CRYPTO_KEY_FILE_BYTES_MAX + 1);
    free(buf);
    return rc;
}

/* Asks on the terminal (OpenSSL's UI: /dev/tty, no echo). */
static int pass_from_terminal(struct crypto_pass *p, const char *key_path, bool for_new_key,
                              struct ts_error *err)
{
    char prompt[PATH_MAX + 64];
    snprintf(prompt, sizeof(prompt), "%s passphrase for %s: ",
             for_new_key ? "new" : "enter", key_path);
    int min = for_new_key ? CRYPTO_PASS_BYTES_NEW_MIN : 1;
    if (EVP_read_pw_string_min(p->text, min, CRYPTO_PASS_BYTES_MAX, prompt,
                               for_new_key ? 1 : 0) != 0) {
        OPENSSL_cleanse(p->text, sizeof(p->text));
        ERR_clear_error();
        return ts_error_set(err, TS_ERR_AUTH, "no passphrase for %s was read from the "
                            "terminal (input ended%s)", key_path,
                            for_new_key ? ", the two entries differ or it is shorter than 8 "
                                          "characters" : "");
    }
    p->len = strlen(p->text);
    p->have = true;
    return 0;
}

int crypto_pass_get(struct crypto_pass *p, const char *key_path, bool for_new_key,
                    struct ts_error *err)
{
    assert(p != NULL);
    assert(key_path != NULL);
    if (!p->have) {
        int rc;
        if (p->file != NULL)
            rc = pass_from_file(p, err);
        else if (p->prompt && isatty(STDIN_FILENO))
            rc = pass_from_terminal(p, key_path, for_new_key, err);
        else if (for_new_key)
            return ts_error_set(err, TS_ERR_AUTH, "a passphrase to encrypt %s is needed: give "
                                "it with --pass-file FILE or on the terminal", key_path);
        else
            return ts_error_set(err, TS_ERR_AUTH, "key file %s is encrypted: give its "
                                "passphrase with --pass-file FILE or on the terminal",
                                key_path);
        if (rc != 0)
            return rc;
    }
    assert(p->have);
    assert(p->len > 0 && p->len <= CRYPTO_PASS_BYTES_MAX);
    if (for_new_key && p->len < CRYPTO_PASS_BYTES_NEW_MIN)
        return ts_error_set(err, TS_ERR_INVALID, "the passphrase for %s has %zu characters; "
                            "a new key needs at least %d", key_path, p->len,
                            CRYPTO_PASS_BYTES_NEW_MIN);
    return 0;
}

/* What the PEM passphrase callback saw, for the message after a failed read. */
struct pass_cb_state {
    struct crypto_pass *pass;   /* NULL: no passphrase may be given */
    const char *path;
    bool asked;                 /* OpenSSL asked: the key is encrypted */
    int rc;                     /* why no passphrase could be had, or 0 */
    struct ts_error why;
};

static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    struct pass_cb_state *s = u;

    (void)rwflag;
    s->asked = true;
    if (s->pass == NULL)
        return -1;
    s->rc = crypto_pass_get(s->pass, s->path, false, &s->why);
    if (s->rc != 0)
        return -1;
    if (size < 0 || s->pass->len > (size_t)size) {
        s->rc = ts_error_set(&s->why, TS_ERR_TOOBIG, "key file %s: the passphrase is longer "
                             "than OpenSSL takes (%d bytes)", s->path, size);
        return -1;
    }
    memcpy(buf, s->pass->text, s->pass->len);
    return (int)s->pass->len;
}

/* The message for a key PEM_read_bio_PrivateKey could not read. */
static int key_read_error(const struct pass_cb_state *s, struct ts_error *err)
{
    if (!s->asked)
        return ossl_error(err, TS_ERR_INVALID, "key file %.300s does not hold a PEM private key",
                          s->path);
    ERR_clear_error();
    if (s->pass == NULL)
        return ts_error_set(err, TS_ERR_INVALID,
                            "key file %s is encrypted, and no passphrase is asked here: "
                            "trialsyncd restarts unattended, so node keys stay unencrypted "
                            "(mode 0600)", s->path);
    if (s->rc != 0) {
        if (err != NULL)
            *err = s->why;
        return s->rc;
    }
    if (s->pass->file != NULL)
        return ts_error_set(err, TS_ERR_AUTH, "key file %s: the passphrase in pass file %s "
                            "does not decrypt it", s->path, s->pass->file);
    return ts_error_set(err, TS_ERR_AUTH, "key file %s: the passphrase typed does not "
                        "decrypt it", s->path);
}

int ossl_key_load(const char *path, struct crypto_pass *pass, EVP_PKEY **out,
                  struct ts_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    EVP_PKEY *pkey = NULL;

    assert(path != NULL);
    assert(out != NULL);
    *out = NULL;
    int rc = secret_read(path, "key file", &buf, &len, err);
    if (rc != 0)
        goto out_clear;
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL) {
        rc = ossl_error(err, TS_ERR_NOMEM, "key file: cannot make a memory BIO");
        goto out_wipe_buf;
    }
    struct pass_cb_state st = {.pass = pass, .path = path};
    pkey = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, &st);
    BIO_free(bio);
    if (pkey == NULL) {
        rc = key_read_error(&st, err);
        goto out_wipe_buf;
    }
    if (!pkey_is_ed25519(pkey)) {
        rc = ts_error_set(err, TS_ERR_INVALID,
                          "key file %s holds a %s key; trialsync keys are Ed25519", path,
                          EVP_PKEY_get0_type_name(pkey));
        EVP_PKEY_free(pkey);
        goto out_wipe_buf;
    }
    *out = pkey;
    rc = 0;

out_wipe_buf:
    OPENSSL_cleanse(buf, CRYPTO_KEY_FILE_BYTES_MAX + 1);
    free(buf);
out_clear:
    ERR_clear_error();
    return rc;
}

int crypto_key_load_pass(const char *path, struct crypto_pass *pass, struct crypto_key **out,
                         struct ts_error *err)
{
    EVP_PKEY *pkey = NULL;

    assert(path != NULL);
    assert(out != NULL);
    *out = NULL;
    int rc = ossl_key_load(path, pass, &pkey, err);
    if (rc != 0)
        return rc;
    assert(pkey != NULL);
    struct crypto_key *k = malloc(sizeof(*k));
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return ts_error_set(err, TS_ERR_NOMEM, "key file %s: out of memory", path);
    }
    k->pkey = pkey;
    *out = k;
    return 0;
}

int crypto_key_load(const char *path, struct crypto_key **out, struct ts_error *err)
{
    return crypto_key_load_pass(path, NULL, out, err);
}

void crypto_key_free(struct crypto_key *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

int crypto_sign(struct crypto_key *k, const uint8_t *msg, size_t len,
                uint8_t sig[TS_SIG_BYTES_MAX], size_t *sig_len, struct ts_error *err)
{
    assert(k != NULL);
    assert(k->pkey != NULL);
    assert(msg != NULL || len == 0);
    assert(sig != NULL);
    assert(sig_len != NULL);

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "sign: cannot allocate a context");
    size_t n = TS_SIG_BYTES_MAX;
    /* Ed25519 hashes internally: the digest must be NULL (pure EdDSA). */
    int rc = 0;
    if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) != 1 ||
        EVP_DigestSign(ctx, sig, &n, msg, len) != 1) {
        rc = ossl_error(err, TS_ERR_INVALID, "sign: Ed25519 signing failed");
        goto out_free_ctx;
    }
    assert(n == CRYPTO_ED25519_SIG_BYTES);
    *sig_len = n;

out_free_ctx:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* Wraps the public half of pkey in a new crypto_pubkey. */
static int pubkey_wrap(EVP_PKEY *pkey, struct crypto_pubkey **out, struct ts_error *err)
{
    uint8_t raw[CRYPTO_ED25519_PUBKEY_BYTES];
    size_t raw_len = sizeof(raw);

    assert(pkey_is_ed25519(pkey));
    /* Copying only the raw public key guarantees no private part is kept. */
    if (EVP_PKEY_get_raw_public_key(pkey, raw, &raw_len) != 1)
        return ossl_error(err, TS_ERR_INVALID, "cannot read the Ed25519 public key");
    assert(raw_len == CRYPTO_ED25519_PUBKEY_BYTES);
    EVP_PKEY *pub = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, raw, raw_len);
    if (pub == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot make an Ed25519 public key");
    struct crypto_pubkey *p = malloc(sizeof(*p));
    if (p == NULL) {
        EVP_PKEY_free(pub);
        return ts_error_set(err, TS_ERR_NOMEM, "public key: out of memory");
    }
    p->pkey = pub;
    *out = p;
    return 0;
}

int crypto_pubkey_from_cert(const char *pem, size_t len, struct crypto_pubkey **out,
                            struct ts_error *err)
{
    int rc;

    assert(pem != NULL);
    assert(out != NULL);
    *out = NULL;
    if (len > CRYPTO_CERT_PEM_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG,
                            "certificate of %zu bytes is larger than the %d allowed", len,
                            CRYPTO_CERT_PEM_BYTES_MAX);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "certificate: cannot make a memory BIO");
    X509 *x = PEM_read_bio_X509(bio, NULL, ossl_no_passphrase_cb, NULL);
    BIO_free(bio);
    if (x == NULL)
        return ossl_error(err, TS_ERR_INVALID, "not a PEM certificate");
    EVP_PKEY *pkey = X509_get0_pubkey(x);
    if (pkey == NULL) {
        rc = ossl_error(err, TS_ERR_INVALID, "certificate: unreadable public key");
        goto out_free_x509;
    }
    if (!pkey_is_ed25519(pkey)) {
        rc = ts_error_set(err, TS_ERR_INVALID,
                          "certificate holds a %s key; trialsync keys are Ed25519",
                          EVP_PKEY_get0_type_name(pkey));
        goto out_free_x509;
    }
    rc = pubkey_wrap(pkey, out, err);

out_free_x509:
    X509_free(x);
    ERR_clear_error();
    return rc;
}

int crypto_pubkey_from_key(struct crypto_key *k, struct crypto_pubkey **out,
                           struct ts_error *err)
{
    assert(k != NULL);
    assert(out != NULL);
    *out = NULL;
    return pubkey_wrap(k->pkey, out, err);
}

void crypto_pubkey_free(struct crypto_pubkey *p)
{
    if (p == NULL)
        return;
    EVP_PKEY_free(p->pkey);
    free(p);
}

bool crypto_verify(struct crypto_pubkey *p, const uint8_t *msg, size_t len,
                   const uint8_t *sig, size_t sig_len)
{
    assert(p != NULL);
    assert(msg != NULL || len == 0);
    assert(sig != NULL || sig_len == 0);
    if (sig_len != CRYPTO_ED25519_SIG_BYTES)
        return false;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        ERR_clear_error();
        return false;
    }
    bool ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, p->pkey) == 1 &&
              EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    /* A bad signature leaves reasons on the queue; the caller only needs false. */
    ERR_clear_error();
    return ok;
}

int crypto_random(uint8_t *buf, size_t len)
{
    assert(buf != NULL || len == 0);
    /* RAND_bytes takes an int: fill large buffers in slices. */
    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(buf, n) != 1) {
            ERR_clear_error();
            return TS_ERR_IO;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- users' secrets ------------------------------------------------------------ */

#define SCRYPT_R 8
#define SCRYPT_P 1
#define SCRYPT_SALT_BYTES 16
#define SCRYPT_HASH_BYTES 32
/* 128 * r * N bytes for N = 2^20, r = 16, plus slack: the most verify lets a
 * stored record ask for. */
#define SCRYPT_MAXMEM_BYTES ((uint64_t)2200 * 1024 * 1024)

static int scrypt_derive(const char *secret, const uint8_t *salt, size_t salt_len, int log2_n,
                         int r, int p, uint8_t out[SCRYPT_HASH_BYTES])
{
    return EVP_PBE_scrypt(secret, strlen(secret), salt, salt_len, (uint64_t)1 << log2_n,
                          (uint64_t)r, (uint64_t)p, SCRYPT_MAXMEM_BYTES, out,
                          SCRYPT_HASH_BYTES) == 1
               ? 0
               : TS_ERR_INVALID;
}

int crypto_secret_hash(const char *secret, char *out, size_t cap, struct ts_error *err)
{
    uint8_t salt[SCRYPT_SALT_BYTES], hash[SCRYPT_HASH_BYTES];
    char salt_b64[4 * ((SCRYPT_SALT_BYTES + 2) / 3) + 1];
    char hash_b64[4 * ((SCRYPT_HASH_BYTES + 2) / 3) + 1];

    assert(cap >= CRYPTO_SECRET_TEXT_MAX);
    if (crypto_random(salt, sizeof(salt)) != 0)
        return ts_error_set(err, TS_ERR_IO, "no random bytes for a salt");
    if (scrypt_derive(secret, salt, sizeof(salt), CRYPTO_SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P,
                      hash) != 0)
        return ossl_error(err, TS_ERR_INVALID, "scrypt failed");
    EVP_EncodeBlock((unsigned char *)salt_b64, salt, sizeof(salt));
    EVP_EncodeBlock((unsigned char *)hash_b64, hash, sizeof(hash));
    int n = snprintf(out, cap, "scrypt$%d$%d$%d$%s$%s", CRYPTO_SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P,
                     salt_b64, hash_b64);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (n < 0 || (size_t)n >= cap)
        return ts_error_set(err, TS_ERR_INVALID, "secret text longer than %zu bytes", cap);
    return 0;
}

/* Decodes base64 text into out (cap bytes); the length, or -1. */
static int b64_decode(const char *text, size_t len, uint8_t *out, size_t cap)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap)
        return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
    if (n < 0)
        return -1;
    if (text[len - 1] == '=')
        n--;
    if (text[len - 2] == '=')
        n--;
    return n;
}

bool crypto_secret_verify(const char *secret, const char *stored)
{
    int log2_n, r, p, salt_at = 0;
    if (secret == NULL || stored == NULL ||
        sscanf(stored, "scrypt$%2d$%2d$%1d$%n", &log2_n, &r, &p, &salt_at) != 3 || salt_at == 0)
        return false;
    if (log2_n < 10 || log2_n > 20 || r < 1 || r > 16 || p < 1 || p > 4)
        return false;
    const char *salt_text = stored + salt_at;
    const char *dollar = strchr(salt_text, '$');
    if (dollar == NULL)
        return false;
    uint8_t salt[64], want[64], got[SCRYPT_HASH_BYTES];
    int salt_len = b64_decode(salt_text, (size_t)(dollar - salt_text), salt, sizeof(salt));
    int want_len = b64_decode(dollar + 1, strlen(dollar + 1), want, sizeof(want));
    if (salt_len <= 0 || want_len != SCRYPT_HASH_BYTES)
        return false;
    if (scrypt_derive(secret, salt, (size_t)salt_len, log2_n, r, p, got) != 0)
        return false;
    bool same = CRYPTO_memcmp(got, want, SCRYPT_HASH_BYTES) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return same;
}
