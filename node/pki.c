/*
 * pki.c: the trial's certificate authority, node identities and the
 * revocation list, on top of OpenSSL 3 (one of the few files that include
 * OpenSSL).
 *
 * Guarantees:
 * - Keys are Ed25519, made by OpenSSL's default CSPRNG; serials are 128
 *   random bits; every certificate is X.509 v3 with its extensions set here
 *   explicitly, never from an OpenSSL configuration file.
 * - Private keys are created with open(O_CREAT | O_EXCL, 0600): they are
 *   never readable by anyone else, not even for a moment, and an existing
 *   file is never overwritten (TS_ERR_EXISTS).  Directories are made 0700.
 * - A CA or an identity is written whole or not at all: when a later file
 *   fails, the files already written by the same call are removed.
 * - Files are fsync'ed, and so is their directory, before success is
 *   reported; crl.pem is replaced with rename(), so a reader never sees half.
 * - Every file read is bounded (PKI_FILE_BYTES_MAX); ids are checked before
 *   they reach a path, a certificate or a URI.
 * - OpenSSL errors become a ts_error code and message here, and OpenSSL's
 *   error queue is left empty.
 * - No static state: every function may be called from any thread, but two
 *   processes revoking in the same CA directory at once must be serialized by
 *   the caller (the CLI is the only writer of a CA directory).
 */
#include "pki.h"
#include "crypto.h"
#include "openssl_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Paths built here: the Linux PATH_MAX. */
#define PKI_PATH_BYTES_MAX 4096
/* 100 years: more than any trial, and far from time arithmetic overflow. */
#define PKI_DAYS_MAX 36500
/*
 * Every certificate and revocation list the CLI issues starts this long
 * before it is issued, so a node whose clock is behind the issuer's still
 * accepts it.  Two days: a clock set to local time instead of UTC is off by
 * at most 14 hours, a site PC whose clock battery died over a long weekend
 * and was then set by hand can be a day or more behind, and such a site
 * must still reach a hub to deliver its SAEs (its clock alarm says what to
 * fix).  Backdating widens nothing an attacker can use: a certificate is
 * only usable with its key, issued now, and revocation does not look at
 * notBefore (docs/security.md).
 */
#define PKI_CLOCK_MARGIN_S (2 * 24 * 60 * 60)
/* 128 random bits: unpredictable and practically unique serials. */
#define PKI_SERIAL_BYTES 16
/* X.520 ub-common-name: OpenSSL refuses a longer CN. */
#define PKI_CN_CHARS_MAX 64
#define PKI_URI_SCHEME "trialsync://"
/* trialsync://<trial>/<role>/<id>: the longest role is "admin". */
#define PKI_URI_BYTES_MAX (sizeof(PKI_URI_SCHEME) - 1 + TS_ID_BYTES_MAX + 1 + 5 + 1 + \
                           TS_ID_BYTES_MAX)
/* The CA's own URI uses this role and id; it is not a node role. */
#define PKI_CA_ROLE "ca"
/* "YYYY-MM-DDTHH:MM:SSZ" and a NUL. */
#define PKI_TIME_TEXT_BYTES 21
/* Hex digits of a serial in revoked.txt: 20 octets at most (RFC 5280). */
#define PKI_SERIAL_HEX_DIGITS_MAX (PKI_SERIAL_HEX_BYTES_MAX - 1)

_Static_assert(PKI_SERIAL_BYTES * 2 <= PKI_SERIAL_HEX_DIGITS_MAX,
               "our own serials must fit the serial hex limit");

/* A loaded CA: its key, its certificate and the trial named in its URI. */
struct ca {
    EVP_PKEY *key;
    X509 *cert;
    char trial[TS_ID_BYTES_MAX + 1];
};


/* ---- Ids, roles and URIs (pure) ---- */

static bool id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

/*
 * 1..TS_ID_BYTES_MAX of [A-Za-z0-9._-], and not "." or "..": ids become
 * path components (a site's directory), where those two mean something else.
 */
static bool id_valid(const char *s, size_t len)
{
    if (len == 0 || len > TS_ID_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!id_char_ok(s[i]))
            return false;
    }
    if (len == 1 && s[0] == '.')
        return false;
    if (len == 2 && s[0] == '.' && s[1] == '.')
        return false;
    return true;
}

static bool id_string_valid(const char *s)
{
    return s != NULL && id_valid(s, strnlen(s, TS_ID_BYTES_MAX + 1));
}

const char *pki_role_name(enum pki_role r)
{
    switch (r) {
    case PKI_ROLE_HUB: return "hub";
    case PKI_ROLE_SITE: return "site";
    case PKI_ROLE_ADMIN: return "admin";
    }
    return "unknown";
}

static bool role_valid(enum pki_role r)
{
    return r == PKI_ROLE_HUB || r == PKI_ROLE_SITE || r == PKI_ROLE_ADMIN;
}

int pki_role_parse(const char *s, enum pki_role *out)
{
    assert(out != NULL);
    if (s == NULL)
        return TS_ERR_INVALID;
    if (strcmp(s, "hub") == 0)
        *out = PKI_ROLE_HUB;
    else if (strcmp(s, "site") == 0)
        *out = PKI_ROLE_SITE;
    else if (strcmp(s, "admin") == 0)
        *out = PKI_ROLE_ADMIN;
    else
        return TS_ERR_INVALID;
    return 0;
}

/*
 * Splits trialsync://<trial>/<role>/<id> into its parts, checking the trial
 * and id; the role is only bounded (the caller decides which roles it takes).
 */
static int uri_split(const char *uri, char trial[TS_ID_BYTES_MAX + 1], char role[8],
                     char id[TS_ID_BYTES_MAX + 1])
{
    const size_t scheme_len = sizeof(PKI_URI_SCHEME) - 1;
    size_t len = strnlen(uri, PKI_URI_BYTES_MAX + 1);

    if (len > PKI_URI_BYTES_MAX || len <= scheme_len)
        return TS_ERR_INVALID;
    if (memcmp(uri, PKI_URI_SCHEME, scheme_len) != 0)
        return TS_ERR_INVALID;
    const char *p = uri + scheme_len;
    const char *end = uri + len;
    const char *slash1 = memchr(p, '/', (size_t)(end - p));
    if (slash1 == NULL)
        return TS_ERR_INVALID;
    const char *slash2 = memchr(slash1 + 1, '/', (size_t)(end - slash1 - 1));
    if (slash2 == NULL)
        return TS_ERR_INVALID;
    size_t trial_len = (size_t)(slash1 - p);
    size_t role_len = (size_t)(slash2 - slash1 - 1);
    size_t id_len = (size_t)(end - slash2 - 1);
    /* id_valid refuses '/', so "a/b/c/d" fails on the id. */
    if (!id_valid(p, trial_len) || !id_valid(slash2 + 1, id_len))
        return TS_ERR_INVALID;
    if (role_len == 0 || role_len >= 8)
        return TS_ERR_INVALID;
    memcpy(trial, p, trial_len);
    trial[trial_len] = '\0';
    memcpy(role, slash1 + 1, role_len);
    role[role_len] = '\0';
    memcpy(id, slash2 + 1, id_len);
    id[id_len] = '\0';
    return 0;
}

int pki_uri_parse(const char *uri, struct pki_identity *out)
{
    char trial[TS_ID_BYTES_MAX + 1];
    char role[8];
    char id[TS_ID_BYTES_MAX + 1];
    enum pki_role r;

    assert(out != NULL);
    if (uri == NULL)
        return TS_ERR_INVALID;
    if (uri_split(uri, trial, role, id) != 0)
        return TS_ERR_INVALID;
    if (pki_role_parse(role, &r) != 0)
        return TS_ERR_INVALID;
    memset(out, 0, sizeof(*out));
    memcpy(out->trial, trial, sizeof(trial));
    out->role = r;
    memcpy(out->id, id, sizeof(id));
    return 0;
}

static int uri_format(char *buf, size_t cap, const char *trial, const char *role,
                      const char *id)
{
    /* Concatenated by hand: the lengths are checked here, not guessed by the compiler. */
    const char *parts[] = {PKI_URI_SCHEME, trial, "/", role, "/", id};
    size_t at = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t n = strlen(parts[i]);
        if (at + n >= cap)
            return TS_ERR_TOOBIG;
        memcpy(buf + at, parts[i], n);
        at += n;
    }
    buf[at] = '\0';
    return 0;
}

/* Formats t as YYYY-MM-DDTHH:MM:SSZ. */
static void time_format(time_t t, char out[PKI_TIME_TEXT_BYTES])
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(out, PKI_TIME_TEXT_BYTES, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        /* Only times beyond year 9999 fail; store the epoch rather than junk. */
        snprintf(out, PKI_TIME_TEXT_BYTES, "1970-01-01T00:00:00Z");
    }
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Parses exactly YYYY-MM-DDTHH:MM:SSZ (a real date) into a Unix time. */
static bool time_parse(const char *s, size_t len, time_t *out)
{
    struct tm tm;
    struct tm check;
    int year, mon, day, hour, min, sec;

    if (len != PKI_TIME_TEXT_BYTES - 1)
        return false;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != 'Z')
        return false;
    if (!digits(s, 4, &year) || !digits(s + 5, 2, &mon) || !digits(s + 8, 2, &day) ||
        !digits(s + 11, 2, &hour) || !digits(s + 14, 2, &min) || !digits(s + 17, 2, &sec))
        return false;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    /* timegm normalizes Feb 30 to Mar 2: the round trip refuses such dates. */
    if (t == (time_t)-1 || gmtime_r(&t, &check) == NULL)
        return false;
    if (check.tm_year != year - 1900 || check.tm_mon != mon - 1 || check.tm_mday != day ||
        check.tm_hour != hour || check.tm_min != min || check.tm_sec != sec)
        return false;
    *out = t;
    return true;
}

/* ---- Files ---- */

static int path_join(char *buf, size_t cap, const char *dir, const char *name,
                     struct ts_error *err)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return ts_error_set(err, TS_ERR_TOOBIG, "path %s/%s is longer than %zu bytes", dir,
                            name, cap - 1);
    return 0;
}

/* mkdir -p with mode for the directories it creates; existing ones stay as they are. */
static int mkdir_p(const char *path, mode_t mode, struct ts_error *err)
{
    char buf[PKI_PATH_BYTES_MAX];
    struct stat st;
    size_t len = strnlen(path, sizeof(buf));

    if (len == 0)
        return ts_error_set(err, TS_ERR_INVALID, "directory path is empty");
    if (len >= sizeof(buf))
        return ts_error_set(err, TS_ERR_TOOBIG, "directory path %.64s... is too long", path);
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST) {
            int e = errno;
            /* Searching an existing parent may fail with EACCES: a directory is fine. */
            if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
                return ts_error_set(err, TS_ERR_IO, "cannot create directory %s: %s", buf,
                                    strerror(e));
        }
        buf[i] = saved;
    }
    if (stat(path, &st) != 0)
        return ts_error_set(err, TS_ERR_IO, "cannot create directory %s: %s", path,
                            strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return ts_error_set(err, TS_ERR_IO, "%s exists and is not a directory", path);
    return 0;
}

static int fsync_dir(const char *dir, struct ts_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ts_error_set(err, TS_ERR_IO, "cannot open directory %s: %s", dir,
                            strerror(errno));
    /* Some file systems cannot sync a directory (EINVAL); they need not. */
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return ts_error_set(err, TS_ERR_IO, "cannot sync directory %s: %s", dir, strerror(e));
    }
    close(fd);
    return 0;
}

/* Writes all of data to fd; returns 0 or an errno. */
static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes data to fd, syncs and closes it; returns 0 or an errno. */
static int write_sync_close(int fd, const void *data, size_t len)
{
    int e = write_all(fd, data, len);
    if (e == 0 && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && e == 0)
        e = errno;
    return e;
}

/*
 * Creates path (which must not exist) with mode and writes data to it; on
 * failure, nothing is left behind.  The mode is set by open() itself, so a
 * secret file never exists with wider permissions.
 */
static int write_new_file(const char *path, const void *data, size_t len, mode_t mode,
                          struct ts_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            return ts_error_set(err, TS_ERR_EXISTS, "%s already exists; refusing to overwrite it",
                                path);
        return ts_error_set(err, TS_ERR_IO, "cannot create %s: %s", path, strerror(e));
    }
#ifndef NDEBUG
    struct stat st;
    assert(fstat(fd, &st) == 0);
    /* The umask can only remove bits: a 0600 file is never wider. */
    assert((st.st_mode & 0777 & ~mode) == 0);
#endif
    int e = write_sync_close(fd, data, len);
    if (e != 0) {
        unlink(path);
        return ts_error_set(err, TS_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

/* Appends data to path (created 0644 when missing) and syncs it. */
static int append_file(const char *path, const void *data, size_t len, struct ts_error *err)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return ts_error_set(err, TS_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    int e = write_sync_close(fd, data, len);
    if (e != 0)
        return ts_error_set(err, TS_ERR_IO, "cannot append to %s: %s", path, strerror(e));
    return 0;
}

/* Replaces dir/name with data atomically: a temporary file, then rename(). */
static int replace_file(const char *dir, const char *name, const void *data, size_t len,
                        mode_t mode, struct ts_error *err)
{
    char path[PKI_PATH_BYTES_MAX];
    char tmp_name[64];
    char tmp[PKI_PATH_BYTES_MAX];
    int rc;

    snprintf(tmp_name, sizeof(tmp_name), ".%s.tmp", name);
    if ((rc = path_join(path, sizeof(path), dir, name, err)) != 0 ||
        (rc = path_join(tmp, sizeof(tmp), dir, tmp_name, err)) != 0)
        return rc;
    /* A temporary file left by a crash is ours to remove. */
    if (unlink(tmp) != 0 && errno != ENOENT)
        return ts_error_set(err, TS_ERR_IO, "cannot remove %s: %s", tmp, strerror(errno));
    rc = write_new_file(tmp, data, len, mode, err);
    if (rc != 0)
        return rc;
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ts_error_set(err, TS_ERR_IO, "cannot rename %s to %s: %s", tmp, path,
                            strerror(e));
    }
    return fsync_dir(dir, err);
}

/* Reads fd (a regular file) whole, refusing more than max bytes. */
static int read_fd_bounded(int fd, const char *path, size_t max, char **out,
                           size_t *out_len, struct ts_error *err)
{
    struct stat st;

    if (fstat(fd, &st) != 0)
        return ts_error_set(err, TS_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ts_error_set(err, TS_ERR_INVALID, "%s is not a regular file", path);
    if (st.st_size < 0 || (uint64_t)st.st_size > max)
        return ts_error_set(err, TS_ERR_TOOBIG, "%s is %lld bytes; at most %zu are allowed",
                            path, (long long)st.st_size, max);
    /* One byte more than the size to see a file that grew, and one for the NUL. */
    size_t cap = (size_t)st.st_size + 2;
    char *buf = malloc(cap);
    if (buf == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "cannot read %s: out of memory", path);
    size_t used = 0;
    for (;;) {
        if (used == cap - 1) {
            if (used > max) {
                free(buf);
                return ts_error_set(err, TS_ERR_TOOBIG, "%s grew beyond %zu bytes", path, max);
            }
            size_t new_cap = cap * 2 > max + 2 ? max + 2 : cap * 2;
            char *bigger = realloc(buf, new_cap);
            if (bigger == NULL) {
                free(buf);
                return ts_error_set(err, TS_ERR_NOMEM, "cannot read %s: out of memory", path);
            }
            buf = bigger;
            cap = new_cap;
        }
        ssize_t n = read(fd, buf + used, cap - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            return ts_error_set(err, TS_ERR_IO, "cannot read %s: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    if (used > max) {
        free(buf);
        return ts_error_set(err, TS_ERR_TOOBIG, "%s grew beyond %zu bytes", path, max);
    }
    buf[used] = '\0';
    *out = buf;
    *out_len = used;
    return 0;
}

/* Opens path for reading without blocking on a FIFO or taking a terminal. */
static int open_read(const char *path, int *fd_out, struct ts_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        return ts_error_set(err, e == ENOENT ? TS_ERR_NOTFOUND : TS_ERR_IO,
                            "cannot open %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return 0;
}

int pki_read_file(const char *path, char **out, size_t *out_len, struct ts_error *err)
{
    int fd = -1;

    assert(path != NULL);
    assert(out != NULL);
    assert(out_len != NULL);
    *out = NULL;
    *out_len = 0;
    int rc = open_read(path, &fd, err);
    if (rc != 0)
        return rc;
    rc = read_fd_bounded(fd, path, PKI_FILE_BYTES_MAX, out, out_len, err);
    close(fd);
    return rc;
}

/* ---- OpenSSL objects in and out of PEM ---- */

/* Parses the first certificate of pem; what names it in messages. */
static int cert_parse(const char *pem, size_t len, const char *what, X509 **out,
                      struct ts_error *err)
{
    assert(pem != NULL);
    *out = NULL;
    if (len > PKI_FILE_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "%s is %zu bytes; at most %d are allowed",
                            what, len, PKI_FILE_BYTES_MAX);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "%s: cannot make a memory BIO", what);
    X509 *x = PEM_read_bio_X509(bio, NULL, ossl_no_passphrase_cb, NULL);
    BIO_free(bio);
    if (x == NULL)
        return ossl_error(err, TS_ERR_INVALID, "%s is not a PEM certificate", what);
    ERR_clear_error();
    *out = x;
    return 0;
}

static int cert_load(const char *path, X509 **out, struct ts_error *err)
{
    char *pem = NULL;
    size_t len = 0;

    *out = NULL;
    int rc = pki_read_file(path, &pem, &len, err);
    if (rc != 0)
        return rc;
    rc = cert_parse(pem, len, path, out, err);
    free(pem);
    return rc;
}

/*
 * Writes key as PKCS#8 PEM into a new memory BIO (a secure-heap one, which
 * OpenSSL wipes when it is freed).  Unencrypted when pass is NULL (the file's
 * mode protects it); otherwise encrypted with AES-256-CBC under pass's
 * passphrase (PBES2, PBKDF2 with HMAC-SHA256), asked for now if need be.
 * key_path names the key in a prompt.  The caller frees *out.
 */
static int pem_of_key(EVP_PKEY *key, const char *key_path, struct crypto_pass *pass, BIO **out,
                      struct ts_error *err)
{
    if (pass != NULL) {
        int rc = crypto_pass_get(pass, key_path, true, err);
        if (rc != 0)
            return rc;
    }
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot make a memory BIO");
    int ok = pass == NULL
                 ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                 : PEM_write_bio_PrivateKey(bio, key, EVP_aes_256_cbc(),
                                            (const unsigned char *)pass->text, (int)pass->len,
                                            NULL, NULL);
    if (ok != 1) {
        BIO_free(bio);
        return ossl_error(err, TS_ERR_INVALID, "cannot encode the private key %s", key_path);
    }
    *out = bio;
    return 0;
}

static int pem_of_cert(X509 *x, BIO **out, struct ts_error *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot make a memory BIO");
    if (PEM_write_bio_X509(bio, x) != 1) {
        BIO_free(bio);
        return ossl_error(err, TS_ERR_INVALID, "cannot encode the certificate");
    }
    *out = bio;
    return 0;
}

static size_t bio_bytes(BIO *bio, const char **data)
{
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    assert(n > 0);
    *data = p;
    return (size_t)n;
}

/* Writes the serial of x as uppercase hex without leading zero bytes. */
static int serial_hex_of(const X509 *x, char *out, size_t cap, struct ts_error *err)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (bn == NULL)
        return ossl_error(err, TS_ERR_INVALID, "cannot read the certificate's serial");
    char *hex = BN_bn2hex(bn);
    BN_free(bn);
    if (hex == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot format the certificate's serial");
    size_t n = strlen(hex);
    int rc = 0;
    if (n >= cap)
        rc = ts_error_set(err, TS_ERR_TOOBIG, "serial %s does not fit %zu bytes", hex, cap);
    else
        memcpy(out, hex, n + 1);
    OPENSSL_free(hex);
    return rc;
}

/*
 * Finds the one trialsync: URI among x's subject alternative names and copies
 * it to out.  Any URI whose scheme is trialsync in any letter case counts, so
 * a certificate cannot carry a second identity in a different spelling.
 */
static int cert_trialsync_uri(X509 *x, char *out, size_t cap, struct ts_error *err)
{
    int crit = 0;
    int count = 0;
    int rc = 0;

    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (gens == NULL) {
        ERR_clear_error();
        if (crit == -1)
            return ts_error_set(err, TS_ERR_INVALID,
                                "certificate has no subject alternative name; a trialsync "
                                "identity is a trialsync://<trial>/<role>/<id> URI");
        if (crit == -2)
            return ts_error_set(err, TS_ERR_INVALID,
                                "certificate has more than one subject alternative name extension");
        return ts_error_set(err, TS_ERR_INVALID,
                            "certificate's subject alternative name does not decode");
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, i);
        if (gen->type != GEN_URI)
            continue;
        const unsigned char *data = ASN1_STRING_get0_data(gen->d.uniformResourceIdentifier);
        int n = ASN1_STRING_length(gen->d.uniformResourceIdentifier);
        if (n < 10 || strncasecmp((const char *)data, "trialsync:", 10) != 0)
            continue;
        count++;
        if (count > 1)
            continue;
        if ((size_t)n >= cap || memchr(data, '\0', (size_t)n) != NULL) {
            rc = ts_error_set(err, TS_ERR_INVALID,
                              "certificate's trialsync URI is longer than %zu bytes or holds a NUL",
                              cap - 1);
            continue;
        }
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    GENERAL_NAMES_free(gens);
    if (count == 0)
        return ts_error_set(err, TS_ERR_INVALID,
                            "certificate has no trialsync://<trial>/<role>/<id> URI");
    if (count > 1)
        return ts_error_set(err, TS_ERR_INVALID,
                            "certificate has %d trialsync URIs; exactly one is allowed", count);
    return rc;
}

/* ---- Building certificates ---- */

static int cert_set_serial(X509 *x, struct ts_error *err)
{
    unsigned char raw[PKI_SERIAL_BYTES];

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return ossl_error(err, TS_ERR_IO, "cannot draw a random serial");
    /* RFC 5280 wants a positive serial; all-zero bits are astronomically rare. */
    if (raw[0] == 0)
        raw[0] = 1;
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    if (bn == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot make a serial");
    ASN1_INTEGER *s = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    if (s == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot set the serial");
    return 0;
}

static int cert_set_validity(X509 *x, int days, time_t now, struct ts_error *err)
{
    if (X509_time_adj_ex(X509_getm_notBefore(x), 0, -PKI_CLOCK_MARGIN_S, &now) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now) == NULL)
        return ossl_error(err, TS_ERR_INVALID, "cannot set a validity of %d days", days);
    return 0;
}

/* Subject CN = cn; issuer = issuer, or the subject itself when NULL. */
static int cert_set_names(X509 *x, const char *cn, const X509_NAME *issuer,
                          struct ts_error *err)
{
    int rc = 0;
    X509_NAME *name = X509_NAME_new();
    if (name == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot make a name");
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                   -1, 0) != 1) {
        rc = ossl_error(err, TS_ERR_INVALID, "cannot use \"%s\" as a common name", cn);
        goto out_free_name;
    }
    if (X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, issuer != NULL ? issuer : name) != 1)
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot set the certificate's names");

out_free_name:
    X509_NAME_free(name);
    return rc;
}

/* Adds one extension given in OpenSSL's configuration syntax (a fixed string). */
static int cert_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value,
                        struct ts_error *err)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return ossl_error(err, TS_ERR_INVALID, "cannot make extension %s = %s",
                             OBJ_nid2sn(nid), value);
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1)
        return ossl_error(err, TS_ERR_NOMEM, "cannot add extension %s", OBJ_nid2sn(nid));
    return 0;
}

/*
 * Adds a subjectAltName holding the one URI, built as a structure rather than
 * parsed from text so nothing in it is ever read as configuration syntax.
 */
static int cert_add_uri_san(X509 *x, const char *uri, struct ts_error *err)
{
    int rc = 0;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

    if (gens == NULL || gen == NULL || ia5 == NULL || ASN1_STRING_set(ia5, uri, -1) != 1) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot make the URI %s", uri);
        goto out_free;
    }
    GENERAL_NAME_set0_value(gen, GEN_URI, ia5);
    ia5 = NULL;
    if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot make the URI %s", uri);
        goto out_free;
    }
    gen = NULL;
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        rc = ossl_error(err, TS_ERR_INVALID, "cannot add the URI %s", uri);

out_free:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    return rc;
}

/* ---- The CA ---- */

static void ca_release(struct ca *ca)
{
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    memset(ca, 0, sizeof(*ca));
}

/*
 * Loads ca_dir's key (decrypted with pass when it is encrypted) and
 * certificate and checks that they belong together, that the certificate is
 * a CA and names its trial in trialsync://<trial>/ca/ca.
 */
static int ca_load(const char *ca_dir, struct crypto_pass *pass, struct ca *ca,
                   struct ts_error *err)
{
    char key_path[PKI_PATH_BYTES_MAX];
    char crt_path[PKI_PATH_BYTES_MAX];
    char uri[PKI_URI_BYTES_MAX + 1];
    char role[8];
    char id[TS_ID_BYTES_MAX + 1];
    int rc;

    memset(ca, 0, sizeof(*ca));
    if ((rc = path_join(key_path, sizeof(key_path), ca_dir, "ca.key", err)) != 0 ||
        (rc = path_join(crt_path, sizeof(crt_path), ca_dir, "ca.crt", err)) != 0)
        return rc;
    if ((rc = ossl_key_load(key_path, pass, &ca->key, err)) != 0)
        goto out_release;
    if ((rc = cert_load(crt_path, &ca->cert, err)) != 0)
        goto out_release;
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        rc = ts_error_set(err, TS_ERR_CORRUPT, "%s does not match %s", key_path, crt_path);
        goto out_release;
    }
    if (X509_check_ca(ca->cert) != 1) {
        rc = ts_error_set(err, TS_ERR_CORRUPT, "%s is not a CA certificate", crt_path);
        goto out_release;
    }
    if (cert_trialsync_uri(ca->cert, uri, sizeof(uri), err) != 0 ||
        uri_split(uri, ca->trial, role, id) != 0 || strcmp(role, PKI_CA_ROLE) != 0 ||
        strcmp(id, PKI_CA_ROLE) != 0) {
        rc = ts_error_set(err, TS_ERR_CORRUPT,
                          "%s does not name its trial in a trialsync://<trial>/ca/ca URI",
                          crt_path);
        goto out_release;
    }
    return 0;

out_release:
    ca_release(ca);
    return rc;
}

int pki_ca_create(const char *ca_dir, const char *trial, int days, struct crypto_pass *key_pass,
                  struct ts_error *err)
{
    char key_path[PKI_PATH_BYTES_MAX];
    char crt_path[PKI_PATH_BYTES_MAX];
    char uri[PKI_URI_BYTES_MAX + 1];
    char cn[PKI_CN_CHARS_MAX + 1];
    struct stat st;
    BIO *key_pem = NULL;
    BIO *crt_pem = NULL;
    const char *data;
    size_t len;
    X509V3_CTX ctx;
    int rc;

    assert(ca_dir != NULL);
    if (!id_string_valid(trial))
        return ts_error_set(err, TS_ERR_INVALID,
                            "trial id \"%.80s\" is invalid; use 1 to %d of A-Z a-z 0-9 . _ -",
                            trial != NULL ? trial : "", TS_ID_BYTES_MAX);
    if (days < 1 || days > PKI_DAYS_MAX)
        return ts_error_set(err, TS_ERR_INVALID, "CA validity of %d days; allowed 1 to %d",
                            days, PKI_DAYS_MAX);
    if ((rc = path_join(key_path, sizeof(key_path), ca_dir, "ca.key", err)) != 0 ||
        (rc = path_join(crt_path, sizeof(crt_path), ca_dir, "ca.crt", err)) != 0)
        return rc;
    /* A clear message up front; O_EXCL below still makes the refusal race-free. */
    if (lstat(key_path, &st) == 0 || lstat(crt_path, &st) == 0)
        return ts_error_set(err, TS_ERR_EXISTS,
                            "%s already holds a CA; refusing to overwrite it", ca_dir);
    if ((rc = mkdir_p(ca_dir, 0700, err)) != 0)
        return rc;

    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (key == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot generate the CA's Ed25519 key");
    X509 *x = X509_new();
    if (x == NULL) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot make the CA certificate");
        goto out_free_key;
    }
    /* The CN is for display; the full trial id is in the URI, so cutting it is safe. */
    snprintf(cn, sizeof(cn), "trialsync %.*s CA", PKI_CN_CHARS_MAX - 13, trial);
    uri_format(uri, sizeof(uri), trial, PKI_CA_ROLE, PKI_CA_ROLE);
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_pubkey(x, key) != 1) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot make the CA certificate");
        goto out_free_x509;
    }
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    /* pathlen:0: the trial CA signs node certificates only, never another CA. */
    if ((rc = cert_set_serial(x, err)) != 0 ||
        (rc = cert_set_validity(x, days, time(NULL), err)) != 0 ||
        (rc = cert_set_names(x, cn, NULL, err)) != 0 ||
        (rc = cert_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err)) != 0 ||
        (rc = cert_add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign", err)) != 0 ||
        (rc = cert_add_ext(x, &ctx, NID_subject_key_identifier, "hash", err)) != 0 ||
        (rc = cert_add_uri_san(x, uri, err)) != 0)
        goto out_free_x509;
    /* Ed25519 signs the message itself: no separate digest. */
    if (X509_sign(x, key, NULL) <= 0) {
        rc = ossl_error(err, TS_ERR_INVALID, "cannot sign the CA certificate");
        goto out_free_x509;
    }
    if ((rc = pem_of_key(key, key_path, key_pass, &key_pem, err)) != 0 ||
        (rc = pem_of_cert(x, &crt_pem, err)) != 0)
        goto out_free_bios;

    len = bio_bytes(key_pem, &data);
    if ((rc = write_new_file(key_path, data, len, 0600, err)) != 0)
        goto out_free_bios;
    len = bio_bytes(crt_pem, &data);
    if ((rc = write_new_file(crt_path, data, len, 0644, err)) != 0)
        goto out_unlink_key;
    if ((rc = fsync_dir(ca_dir, err)) != 0)
        goto out_unlink_crt;
    /* Nodes check revocation from the start, so the CA comes with an empty CRL. */
    if ((rc = pki_crl_write(ca_dir, key_pass, err)) != 0)
        goto out_unlink_crt;
    rc = 0;
    goto out_free_bios;

out_unlink_crt:
    unlink(crt_path);
out_unlink_key:
    unlink(key_path);
out_free_bios:
    BIO_free(crt_pem);
    BIO_free(key_pem);
out_free_x509:
    X509_free(x);
out_free_key:
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

/*
 * Checks a display name: 1..64 UTF-8 characters (OpenSSL checks the UTF-8
 * itself), no control characters that could garble a terminal or a log.
 */
static int name_check(const char *name, struct ts_error *err)
{
    size_t chars = 0;
    size_t i = 0;

    for (; name[i] != '\0' && i <= PKI_CN_CHARS_MAX * 4; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f)
            return ts_error_set(err, TS_ERR_INVALID,
                                "name holds a control character (byte %zu); use printable text",
                                i + 1);
        if ((c & 0xC0) != 0x80)
            chars++;
    }
    if (chars == 0)
        return ts_error_set(err, TS_ERR_INVALID, "name is empty; give a display name or none");
    if (chars > PKI_CN_CHARS_MAX || name[i] != '\0')
        return ts_error_set(err, TS_ERR_INVALID, "name \"%.40s...\" is longer than %d characters",
                            name, PKI_CN_CHARS_MAX);
    return 0;
}

static int issue_check_args(const struct pki_identity *who, const char *name, int days,
                            struct ts_error *err)
{
    if (!id_string_valid(who->trial))
        return ts_error_set(err, TS_ERR_INVALID,
                            "trial id \"%.80s\" is invalid; use 1 to %d of A-Z a-z 0-9 . _ -",
                            who->trial, TS_ID_BYTES_MAX);
    if (!id_string_valid(who->id))
        return ts_error_set(err, TS_ERR_INVALID,
                            "id \"%.80s\" is invalid; use 1 to %d of A-Z a-z 0-9 . _ -", who->id,
                            TS_ID_BYTES_MAX);
    if (!role_valid(who->role))
        return ts_error_set(err, TS_ERR_INVALID, "role %d is not hub, site or admin",
                            (int)who->role);
    if (days < 1 || days > PKI_DAYS_MAX)
        return ts_error_set(err, TS_ERR_INVALID, "validity of %d days; allowed 1 to %d", days,
                            PKI_DAYS_MAX);
    if (name != NULL)
        return name_check(name, err);
    return 0;
}

/* Builds and signs the certificate of who with key, issued by ca. */
static int issue_build(const struct ca *ca, const struct pki_identity *who, const char *cn,
                       int days, EVP_PKEY *key, X509 **out, struct ts_error *err)
{
    char uri[PKI_URI_BYTES_MAX + 1];
    X509V3_CTX ctx;
    time_t now = time(NULL);
    int rc;

    *out = NULL;
    if (X509_cmp_time(X509_get0_notAfter(ca->cert), &now) <= 0)
        return ts_error_set(err, TS_ERR_INVALID, "the CA of trial %s has expired", ca->trial);
    X509 *x = X509_new();
    if (x == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "cannot make a certificate");
    uri_format(uri, sizeof(uri), who->trial, pki_role_name(who->role), who->id);
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_pubkey(x, key) != 1) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot make a certificate");
        goto out_free_x509;
    }
    X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
    /* Both TLS purposes: every peer link is mutual, either side may dial. */
    if ((rc = cert_set_serial(x, err)) != 0 ||
        (rc = cert_set_validity(x, days, now, err)) != 0 ||
        (rc = cert_set_names(x, cn, X509_get_subject_name(ca->cert), err)) != 0 ||
        (rc = cert_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE", err)) != 0 ||
        (rc = cert_add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature", err)) != 0 ||
        (rc = cert_add_ext(x, &ctx, NID_ext_key_usage, "serverAuth,clientAuth", err)) != 0 ||
        (rc = cert_add_ext(x, &ctx, NID_subject_key_identifier, "hash", err)) != 0 ||
        (rc = cert_add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always", err)) != 0 ||
        (rc = cert_add_uri_san(x, uri, err)) != 0)
        goto out_free_x509;
    /* A certificate outliving its CA would fail verification once the CA expires. */
    if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca->cert)) > 0) {
        int left_days = 0;
        int left_secs = 0;
        if (ASN1_TIME_diff(&left_days, &left_secs, NULL, X509_get0_notAfter(ca->cert)) != 1)
            left_days = 0;
        rc = ts_error_set(err, TS_ERR_INVALID,
                          "a validity of %d days outlives the CA of trial %s, which expires "
                          "in %d days; ask for at most that",
                          days, ca->trial, left_days);
        goto out_free_x509;
    }
    if (X509_sign(x, ca->key, NULL) <= 0) {
        rc = ossl_error(err, TS_ERR_INVALID, "cannot sign the certificate");
        goto out_free_x509;
    }
    assert(X509_verify(x, X509_get0_pubkey(ca->cert)) == 1);
    *out = x;
    return 0;

out_free_x509:
    X509_free(x);
    return rc;
}

/* Appends "SERIAL TIME URI" for x to ca_dir/issued.txt. */
static int ledger_append(const char *ca_dir, const char *ledger, const char *serial_hex,
                         time_t when, const char *uri, struct ts_error *err)
{
    char path[PKI_PATH_BYTES_MAX];
    char when_text[PKI_TIME_TEXT_BYTES];
    char line[PKI_SERIAL_HEX_BYTES_MAX + PKI_TIME_TEXT_BYTES + PKI_URI_BYTES_MAX + 8];
    int rc;

    if ((rc = path_join(path, sizeof(path), ca_dir, ledger, err)) != 0)
        return rc;
    time_format(when, when_text);
    int n = snprintf(line, sizeof(line), "%s %s%s%s\n", serial_hex, when_text,
                     uri != NULL ? " " : "", uri != NULL ? uri : "");
    assert(n > 0 && (size_t)n < sizeof(line));
    return append_file(path, line, (size_t)n, err);
}

int pki_issue(const char *ca_dir, const struct pki_identity *who, const char *name,
              int days, const char *out_dir, struct crypto_pass *ca_pass,
              struct crypto_pass *key_pass, struct ts_error *err)
{
    char key_path[PKI_PATH_BYTES_MAX];
    char crt_path[PKI_PATH_BYTES_MAX];
    char ca_path[PKI_PATH_BYTES_MAX];
    char uri[PKI_URI_BYTES_MAX + 1];
    char serial[PKI_SERIAL_HEX_BYTES_MAX];
    struct ca ca;
    struct stat st;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    BIO *key_pem = NULL;
    BIO *crt_pem = NULL;
    BIO *ca_pem = NULL;
    const char *data;
    size_t len;
    int rc;

    assert(ca_dir != NULL);
    assert(who != NULL);
    assert(out_dir != NULL);
    if ((rc = issue_check_args(who, name, days, err)) != 0)
        return rc;
    if (key_pass != NULL && who->role != PKI_ROLE_ADMIN)
        return ts_error_set(err, TS_ERR_INVALID,
                            "only an admin key may be encrypted: a %s's key is read by "
                            "trialsyncd, which restarts unattended and asks no passphrase",
                            pki_role_name(who->role));
    if ((rc = path_join(key_path, sizeof(key_path), out_dir, "node.key", err)) != 0 ||
        (rc = path_join(crt_path, sizeof(crt_path), out_dir, "node.crt", err)) != 0 ||
        (rc = path_join(ca_path, sizeof(ca_path), out_dir, "ca.crt", err)) != 0)
        return rc;
    /* A clear message up front; O_EXCL below still makes the refusal race-free. */
    const char *existing = lstat(key_path, &st) == 0   ? key_path
                           : lstat(crt_path, &st) == 0 ? crt_path
                           : lstat(ca_path, &st) == 0  ? ca_path
                                                       : NULL;
    if (existing != NULL)
        return ts_error_set(err, TS_ERR_EXISTS,
                            "%s already exists; refusing to overwrite an identity", existing);
    if ((rc = ca_load(ca_dir, ca_pass, &ca, err)) != 0)
        return rc;
    if (strcmp(ca.trial, who->trial) != 0) {
        rc = ts_error_set(err, TS_ERR_INVALID, "the CA in %s is for trial %s, not %s", ca_dir,
                          ca.trial, who->trial);
        goto out_release_ca;
    }
    key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (key == NULL) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot generate an Ed25519 key");
        goto out_release_ca;
    }
    if ((rc = issue_build(&ca, who, name != NULL ? name : who->id, days, key, &x, err)) != 0)
        goto out_free_key;
    if ((rc = serial_hex_of(x, serial, sizeof(serial), err)) != 0 ||
        (rc = pem_of_key(key, key_path, key_pass, &key_pem, err)) != 0 ||
        (rc = pem_of_cert(x, &crt_pem, err)) != 0 ||
        (rc = pem_of_cert(ca.cert, &ca_pem, err)) != 0)
        goto out_free_bios;
    if ((rc = mkdir_p(out_dir, 0700, err)) != 0)
        goto out_free_bios;

    len = bio_bytes(key_pem, &data);
    if ((rc = write_new_file(key_path, data, len, 0600, err)) != 0)
        goto out_free_bios;
    len = bio_bytes(crt_pem, &data);
    if ((rc = write_new_file(crt_path, data, len, 0644, err)) != 0)
        goto out_unlink_key;
    len = bio_bytes(ca_pem, &data);
    if ((rc = write_new_file(ca_path, data, len, 0644, err)) != 0)
        goto out_unlink_crt;
    if ((rc = fsync_dir(out_dir, err)) != 0)
        goto out_unlink_ca;
    /* The CA's record of what it issued comes last: it lists only whole identities. */
    uri_format(uri, sizeof(uri), who->trial, pki_role_name(who->role), who->id);
    if ((rc = ledger_append(ca_dir, "issued.txt", serial, time(NULL), uri, err)) != 0)
        goto out_unlink_ca;
    rc = 0;
    goto out_free_bios;

out_unlink_ca:
    unlink(ca_path);
out_unlink_crt:
    unlink(crt_path);
out_unlink_key:
    unlink(key_path);
out_free_bios:
    BIO_free(ca_pem);
    BIO_free(crt_pem);
    BIO_free(key_pem);
    X509_free(x);
out_free_key:
    EVP_PKEY_free(key);
out_release_ca:
    ca_release(&ca);
    ERR_clear_error();
    return rc;
}

int pki_cert_identity(const char *pem, size_t len, struct pki_identity *out,
                      struct ts_error *err)
{
    char uri[PKI_URI_BYTES_MAX + 1];
    X509 *x = NULL;

    assert(pem != NULL);
    assert(out != NULL);
    int rc = cert_parse(pem, len, "certificate", &x, err);
    if (rc != 0)
        return rc;
    rc = cert_trialsync_uri(x, uri, sizeof(uri), err);
    if (rc == 0 && pki_uri_parse(uri, out) != 0)
        rc = ts_error_set(err, TS_ERR_INVALID,
                          "certificate URI %s is not trialsync://<trial>/<role>/<id> with role "
                          "hub, site or admin",
                          uri);
    X509_free(x);
    return rc;
}

int pki_cert_serial_hex(const char *pem, size_t len, char *out, size_t cap,
                        struct ts_error *err)
{
    X509 *x = NULL;

    assert(pem != NULL);
    assert(out != NULL);
    int rc = cert_parse(pem, len, "certificate", &x, err);
    if (rc != 0)
        return rc;
    rc = serial_hex_of(x, out, cap, err);
    X509_free(x);
    return rc;
}

/* ---- Revocation ---- */

/*
 * Parses a serial given as hex: 1..40 digits, any case, leading zeros
 * allowed.  *out is a new BIGNUM.
 */
static int serial_parse(const char *s, size_t len, BIGNUM **out)
{
    char buf[PKI_SERIAL_HEX_DIGITS_MAX + 1];

    *out = NULL;
    if (len == 0 || len > PKI_SERIAL_HEX_DIGITS_MAX)
        return TS_ERR_INVALID;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return TS_ERR_INVALID;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (BN_hex2bn(out, buf) != (int)len) {
        BN_free(*out);
        *out = NULL;
        ERR_clear_error();
        return TS_ERR_NOMEM;
    }
    return 0;
}

/* One parsed line of revoked.txt. */
struct revoked_line {
    BIGNUM *serial;
    time_t when;
};

/* Cuts the next whitespace-separated token of [*p, end). */
static bool next_token(const char **p, const char *end, const char **tok, size_t *tok_len)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
        s++;
    const char *t = s;
    while (t < end && *t != ' ' && *t != '\t' && *t != '\r')
        t++;
    *p = t;
    *tok = s;
    *tok_len = (size_t)(t - s);
    return t > s;
}

/*
 * Reads the next record of revoked.txt from *cursor: 1 with *line filled (the
 * caller frees line->serial), 0 at the end, TS_ERR_CORRUPT naming the line
 * that does not parse.  Blank lines and lines starting with # are skipped.
 */
static int revoked_next(const char *path, const char **cursor, const char *end,
                        int *line_no, struct revoked_line *line, struct ts_error *err)
{
    while (*cursor < end) {
        const char *start = *cursor;
        const char *nl = memchr(start, '\n', (size_t)(end - start));
        const char *stop = nl != NULL ? nl : end;
        *cursor = nl != NULL ? nl + 1 : end;
        (*line_no)++;

        const char *p = start;
        const char *serial_tok, *time_tok, *uri_tok, *extra_tok;
        size_t serial_len, time_len, uri_len, extra_len;
        if (!next_token(&p, stop, &serial_tok, &serial_len) || serial_tok[0] == '#')
            continue;
        bool has_time = next_token(&p, stop, &time_tok, &time_len);
        bool has_uri = next_token(&p, stop, &uri_tok, &uri_len);
        bool has_extra = next_token(&p, stop, &extra_tok, &extra_len);
        (void)has_uri;
        if (memchr(start, '\0', (size_t)(stop - start)) != NULL || !has_time || has_extra ||
            !time_parse(time_tok, time_len, &line->when))
            return ts_error_set(err, TS_ERR_CORRUPT,
                                "%s line %d is not \"SERIAL YYYY-MM-DDTHH:MM:SSZ [URI]\"", path,
                                *line_no);
        int rc = serial_parse(serial_tok, serial_len, &line->serial);
        if (rc == TS_ERR_NOMEM)
            return ts_error_set(err, rc, "%s line %d: out of memory", path, *line_no);
        if (rc != 0)
            return ts_error_set(err, TS_ERR_CORRUPT,
                                "%s line %d: serial is not 1 to %d hex digits", path, *line_no,
                                PKI_SERIAL_HEX_DIGITS_MAX);
        return 1;
    }
    return 0;
}

/* Reads revoked.txt whole; an absent file is an empty list. */
static int revoked_read(const char *path, char **buf, size_t *len, struct ts_error *err)
{
    int rc = pki_read_file(path, buf, len, err);
    if (rc == TS_ERR_NOTFOUND) {
        *buf = NULL;
        *len = 0;
        return 0;
    }
    return rc;
}

/*
 * The CRL number of the current crl.pem, or -1 when there is none or it does
 * not parse (the new CRL then starts from the clock alone).
 */
static int64_t crl_number_previous(const char *crl_path)
{
    char *pem = NULL;
    size_t len = 0;
    int64_t number = -1;

    if (pki_read_file(crl_path, &pem, &len, NULL) != 0)
        return -1;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_CRL *crl = bio != NULL ? PEM_read_bio_X509_CRL(bio, NULL, ossl_no_passphrase_cb, NULL) : NULL;
    if (crl != NULL) {
        ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
        if (n != NULL && ASN1_INTEGER_get_int64(&number, n) != 1)
            number = -1;
        ASN1_INTEGER_free(n);
    }
    X509_CRL_free(crl);
    BIO_free(bio);
    free(pem);
    ERR_clear_error();
    return number;
}

/* Adds every record of the revoked.txt text to crl. */
static int crl_add_revoked(X509_CRL *crl, const char *path, const char *text, size_t len,
                           struct ts_error *err)
{
    const char *cursor = text;
    int line_no = 0;
    struct revoked_line line;
    int rc;

    while ((rc = revoked_next(path, &cursor, text + len, &line_no, &line, err)) == 1) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *serial = BN_to_ASN1_INTEGER(line.serial, NULL);
        ASN1_TIME *when = ASN1_TIME_set(NULL, line.when);
        BN_free(line.serial);
        bool ok = r != NULL && serial != NULL && when != NULL &&
                  X509_REVOKED_set_serialNumber(r, serial) == 1 &&
                  X509_REVOKED_set_revocationDate(r, when) == 1;
        ASN1_INTEGER_free(serial);
        ASN1_TIME_free(when);
        if (ok && X509_CRL_add0_revoked(crl, r) == 1)
            continue;
        X509_REVOKED_free(r);
        return ossl_error(err, TS_ERR_NOMEM, "%s line %d: cannot add it to the CRL", path,
                             line_no);
    }
    return rc;
}

/* Builds, signs and writes ca_dir/crl.pem from ca_dir/revoked.txt. */
static int crl_write_with(const char *ca_dir, const struct ca *ca, struct ts_error *err)
{
    char revoked_path[PKI_PATH_BYTES_MAX];
    char crl_path[PKI_PATH_BYTES_MAX];
    char *text = NULL;
    size_t text_len = 0;
    ASN1_TIME *last = NULL;
    ASN1_TIME *next = NULL;
    ASN1_INTEGER *number = NULL;
    X509_EXTENSION *akid = NULL;
    BIO *bio = NULL;
    X509V3_CTX ctx;
    time_t now = time(NULL);
    int rc;

    if ((rc = path_join(revoked_path, sizeof(revoked_path), ca_dir, "revoked.txt", err)) != 0 ||
        (rc = path_join(crl_path, sizeof(crl_path), ca_dir, "crl.pem", err)) != 0)
        return rc;
    if ((rc = revoked_read(revoked_path, &text, &text_len, err)) != 0)
        return rc;
    X509_CRL *crl = X509_CRL_new();
    if (crl == NULL) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot make a CRL");
        goto out_free_text;
    }
    int64_t previous = crl_number_previous(crl_path);
    int64_t crl_number = previous >= (int64_t)now ? previous + 1 : (int64_t)now;
    last = X509_time_adj_ex(NULL, 0, -PKI_CLOCK_MARGIN_S, &now);
    next = X509_time_adj_ex(NULL, PKI_CRL_DAYS, 0, &now);
    number = ASN1_INTEGER_new();
    if (last == NULL || next == NULL || number == NULL ||
        ASN1_INTEGER_set_int64(number, crl_number) != 1 ||
        X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, last) != 1 || X509_CRL_set1_nextUpdate(crl, next) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, X509V3_ADD_DEFAULT) != 1) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot make a CRL");
        goto out_free_crl;
    }
    X509V3_set_ctx(&ctx, ca->cert, NULL, NULL, crl, 0);
    akid = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    if (akid == NULL || X509_CRL_add_ext(crl, akid, -1) != 1) {
        rc = ossl_error(err, TS_ERR_INVALID, "cannot add the CRL's authority key identifier");
        goto out_free_crl;
    }
    if (text != NULL && (rc = crl_add_revoked(crl, revoked_path, text, text_len, err)) != 0)
        goto out_free_crl;
    if (X509_CRL_sort(crl) != 1 || X509_CRL_sign(crl, ca->key, NULL) <= 0) {
        rc = ossl_error(err, TS_ERR_INVALID, "cannot sign the CRL");
        goto out_free_crl;
    }
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509_CRL(bio, crl) != 1) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot encode the CRL");
        goto out_free_crl;
    }
    const char *data;
    size_t len = bio_bytes(bio, &data);
    rc = replace_file(ca_dir, "crl.pem", data, len, 0644, err);

out_free_crl:
    BIO_free(bio);
    X509_EXTENSION_free(akid);
    ASN1_INTEGER_free(number);
    ASN1_TIME_free(next);
    ASN1_TIME_free(last);
    X509_CRL_free(crl);
out_free_text:
    free(text);
    ERR_clear_error();
    return rc;
}

int pki_crl_write(const char *ca_dir, struct crypto_pass *ca_pass, struct ts_error *err)
{
    struct ca ca;

    assert(ca_dir != NULL);
    int rc = ca_load(ca_dir, ca_pass, &ca, err);
    if (rc != 0)
        return rc;
    rc = crl_write_with(ca_dir, &ca, err);
    ca_release(&ca);
    return rc;
}

/*
 * Appends serial to revoked.txt unless it is there already, then rewrites
 * the CRL.  uri may be NULL.
 */
static int revoke_with(const char *ca_dir, const struct ca *ca, const BIGNUM *serial,
                       const char *uri, struct ts_error *err)
{
    char path[PKI_PATH_BYTES_MAX];
    char *text = NULL;
    size_t len = 0;
    int rc;

    if ((rc = path_join(path, sizeof(path), ca_dir, "revoked.txt", err)) != 0)
        return rc;
    if ((rc = revoked_read(path, &text, &len, err)) != 0)
        return rc;
    bool found = false;
    const char *cursor = text;
    int line_no = 0;
    struct revoked_line line;
    while (!found && text != NULL &&
           (rc = revoked_next(path, &cursor, text + len, &line_no, &line, err)) == 1) {
        found = BN_cmp(line.serial, serial) == 0;
        BN_free(line.serial);
    }
    bool ends_in_newline = len == 0 || text[len - 1] == '\n';
    free(text);
    if (rc < 0)
        return rc;
    if (!found) {
        char *hex = BN_bn2hex(serial);
        if (hex == NULL)
            return ossl_error(err, TS_ERR_NOMEM, "cannot format a serial");
        /* A hand-edited file may lack its last newline: never glue two lines. */
        if (!ends_in_newline)
            rc = append_file(path, "\n", 1, err);
        if (rc == 0)
            rc = ledger_append(ca_dir, "revoked.txt", hex, time(NULL), uri, err);
        OPENSSL_free(hex);
        if (rc != 0)
            return rc;
    }
    return crl_write_with(ca_dir, ca, err);
}

int pki_revoke(const char *ca_dir, const char *cert_pem_path, struct crypto_pass *ca_pass,
               struct ts_error *err)
{
    char uri[PKI_URI_BYTES_MAX + 1];
    struct ca ca;
    X509 *x = NULL;

    assert(ca_dir != NULL);
    assert(cert_pem_path != NULL);
    int rc = ca_load(ca_dir, ca_pass, &ca, err);
    if (rc != 0)
        return rc;
    if ((rc = cert_load(cert_pem_path, &x, err)) != 0)
        goto out_release_ca;
    /* Only a certificate this CA signed can be revoked by this CA's list. */
    if (X509_check_issued(ca.cert, x) != X509_V_OK ||
        X509_verify(x, X509_get0_pubkey(ca.cert)) != 1) {
        ERR_clear_error();
        rc = ts_error_set(err, TS_ERR_INVALID, "%s was not issued by the CA in %s",
                          cert_pem_path, ca_dir);
        goto out_free_x509;
    }
    if (X509_check_ca(x) != 0) {
        rc = ts_error_set(err, TS_ERR_INVALID,
                          "%s is a CA certificate; only node certificates can be revoked",
                          cert_pem_path);
        goto out_free_x509;
    }
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (serial == NULL) {
        rc = ossl_error(err, TS_ERR_INVALID, "%s: cannot read the serial", cert_pem_path);
        goto out_free_x509;
    }
    bool has_uri = cert_trialsync_uri(x, uri, sizeof(uri), NULL) == 0;
    rc = revoke_with(ca_dir, &ca, serial, has_uri ? uri : NULL, err);
    BN_free(serial);

out_free_x509:
    X509_free(x);
out_release_ca:
    ca_release(&ca);
    ERR_clear_error();
    return rc;
}

int pki_revoke_serial(const char *ca_dir, const char *serial_hex, struct crypto_pass *ca_pass,
                      struct ts_error *err)
{
    struct ca ca;
    BIGNUM *serial = NULL;

    assert(ca_dir != NULL);
    assert(serial_hex != NULL);
    size_t len = strnlen(serial_hex, PKI_SERIAL_HEX_DIGITS_MAX + 1);
    int rc = serial_parse(serial_hex, len, &serial);
    if (rc == TS_ERR_NOMEM)
        return ts_error_set(err, rc, "serial: out of memory");
    if (rc != 0)
        return ts_error_set(err, TS_ERR_INVALID,
                            "serial \"%.48s\" is not 1 to %d hex digits", serial_hex,
                            PKI_SERIAL_HEX_DIGITS_MAX);
    rc = ca_load(ca_dir, ca_pass, &ca, err);
    if (rc == 0) {
        rc = revoke_with(ca_dir, &ca, serial, NULL, err);
        ca_release(&ca);
    }
    BN_free(serial);
    return rc;
}

int pki_verify_cert(const char *ca_pem, size_t ca_len, const char *pem, size_t len,
                    struct pki_identity *who, struct ts_error *err)
{
    X509 *ca = NULL, *x = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    int rc = cert_parse(ca_pem, ca_len, "CA certificate", &ca, err);
    if (rc != 0)
        return rc;
    rc = cert_parse(pem, len, "certificate", &x, err);
    if (rc != 0)
        goto out_free_ca;
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    if (store == NULL || ctx == NULL || X509_STORE_add_cert(store, ca) != 1 ||
        X509_STORE_CTX_init(ctx, store, x, NULL) != 1) {
        rc = ossl_error(err, TS_ERR_NOMEM, "cannot set up certificate verification");
        goto out_free;
    }
    /* Entries signed while the certificate was valid stay valid after it
     * expires or is revoked: only the chain to the trial CA is checked. */
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME);
    if (X509_verify_cert(ctx) != 1) {
        rc = ts_error_set(err, TS_ERR_AUTH, "certificate not issued by the trial CA: %s",
                          X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        ERR_clear_error();
        goto out_free;
    }
    rc = pki_cert_identity(pem, len, who, err);
out_free:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(x);
out_free_ca:
    X509_free(ca);
    return rc;
}

/* Seconds since the epoch of an ASN1 time; false when it does not parse. */
static bool asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0, secs = 0;
    bool ok = epoch != NULL && t != NULL && ASN1_TIME_diff(&days, &secs, epoch, t) == 1;
    ASN1_TIME_free(epoch);
    if (ok)
        *out = (int64_t)days * 86400 + secs;
    return ok;
}

int pki_cert_validity(const char *pem, size_t len, int64_t *not_before_s, int64_t *not_after_s,
                      struct ts_error *err)
{
    X509 *x = NULL;
    assert(pem != NULL);
    assert(not_before_s != NULL);
    assert(not_after_s != NULL);
    int rc = cert_parse(pem, len, "certificate", &x, err);
    if (rc != 0)
        return rc;
    if (!asn1_time_unix(X509_get0_notBefore(x), not_before_s) ||
        !asn1_time_unix(X509_get0_notAfter(x), not_after_s))
        rc = ossl_error(err, TS_ERR_INVALID, "certificate: cannot read its validity dates");
    X509_free(x);
    ERR_clear_error();
    return rc;
}

/* ---- A revocation list received by replication ---- */

/* Parses a PEM CRL of at most PKI_FILE_BYTES_MAX bytes. */
static int crl_parse(const char *pem, size_t len, X509_CRL **out, struct ts_error *err)
{
    *out = NULL;
    if (len > PKI_FILE_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "revocation list of %zu bytes", len);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return ossl_error(err, TS_ERR_NOMEM, "revocation list: cannot make a memory BIO");
    X509_CRL *crl = PEM_read_bio_X509_CRL(bio, NULL, ossl_no_passphrase_cb, NULL);
    BIO_free(bio);
    if (crl == NULL)
        return ossl_error(err, TS_ERR_INVALID, "not a PEM revocation list (X509 CRL)");
    ERR_clear_error();
    *out = crl;
    return 0;
}

int pki_crl_check(const char *ca_pem, size_t ca_len, const char *crl_pem, size_t crl_len,
                  int64_t *number, struct ts_error *err)
{
    X509 *ca = NULL;
    X509_CRL *crl = NULL;
    assert(ca_pem != NULL);
    assert(crl_pem != NULL);
    assert(number != NULL);
    *number = -1;
    int rc = cert_parse(ca_pem, ca_len, "the trial CA certificate", &ca, err);
    if (rc != 0)
        return rc;
    rc = crl_parse(crl_pem, crl_len, &crl, err);
    if (rc != 0)
        goto out_free_ca;
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) != 0) {
        rc = ts_error_set(err, TS_ERR_AUTH, "the revocation list is not issued by the trial CA");
        goto out_free_crl;
    }
    EVP_PKEY *ca_key = X509_get0_pubkey(ca);
    if (ca_key == NULL || X509_CRL_verify(crl, ca_key) != 1) {
        rc = ossl_error(err, TS_ERR_AUTH, "the revocation list is not signed by the trial CA");
        goto out_free_crl;
    }
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    int64_t v = -1;
    if (n == NULL || ASN1_INTEGER_get_int64(&v, n) != 1 || v < 0)
        rc = ts_error_set(err, TS_ERR_INVALID, "the revocation list has no CRL number");
    else
        *number = v;
    ASN1_INTEGER_free(n);
out_free_crl:
    X509_CRL_free(crl);
out_free_ca:
    X509_free(ca);
    ERR_clear_error();
    return rc;
}

int pki_crl_revoked(const char *crl_pem, size_t crl_len, const char *serial_hex,
                    int64_t *revoked_at_s, struct ts_error *err)
{
    X509_CRL *crl = NULL;
    BIGNUM *want = NULL;
    assert(crl_pem != NULL);
    assert(serial_hex != NULL);
    assert(revoked_at_s != NULL);
    *revoked_at_s = 0;
    int rc = serial_parse(serial_hex, strlen(serial_hex), &want);
    if (rc != 0)
        return ts_error_set(err, rc, "'%.48s' is not a certificate serial", serial_hex);
    rc = crl_parse(crl_pem, crl_len, &crl, err);
    if (rc != 0)
        goto out_free_bn;
    STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
    int found = 0;
    for (int i = 0; i < sk_X509_REVOKED_num(revoked) && found == 0; i++) {
        const X509_REVOKED *r = sk_X509_REVOKED_value(revoked, i);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(r), NULL);
        if (bn == NULL) {
            rc = ossl_error(err, TS_ERR_NOMEM, "cannot read a revoked serial");
            goto out_free_crl;
        }
        if (BN_cmp(bn, want) == 0) {
            if (!asn1_time_unix(X509_REVOKED_get0_revocationDate(r), revoked_at_s)) {
                BN_free(bn);
                rc = ts_error_set(err, TS_ERR_INVALID, "a revocation date does not parse");
                goto out_free_crl;
            }
            found = 1;
        }
        BN_free(bn);
    }
    rc = found;
out_free_crl:
    X509_CRL_free(crl);
out_free_bn:
    BN_free(want);
    ERR_clear_error();
    return rc;
}
