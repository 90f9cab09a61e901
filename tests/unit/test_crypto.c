/*
 * test_crypto.c: the crypto module's suite: SHA-256 and chain hashes against
 * known values, Ed25519 sign/verify (and every way verification must fail),
 * and the key-file checks that keep a node from starting with an unsafe key.
 *
 * Keys of other types and encrypted keys are made here with OpenSSL directly,
 * because crypto.h deliberately cannot make them.
 */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "../../node/crypto.h"
#include "../../node/pki.h"

static char path_buf[1024];

/* dir/name in a static buffer. */
static const char *path_in(const char *dir, const char *name)
{
    snprintf(path_buf, sizeof(path_buf), "%s/%s", dir, name);
    return path_buf;
}

static void hex_of(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Writes pkey as PEM to path with mode (exactly, whatever the umask). */
static void write_pkey(const char *path, EVP_PKEY *pkey, mode_t mode, const EVP_CIPHER *cipher)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(PEM_write_PrivateKey(f, pkey, cipher, cipher ? (unsigned char *)"pw" : NULL,
                                         cipher ? 2 : 0, NULL, NULL) == 1);
    CU_ASSERT_FATAL(fclose(f) == 0);
    CU_ASSERT_FATAL(chmod(path, mode) == 0);
}

/* A new Ed25519 key file at dir/name with mode; returns its path (static). */
static const char *make_key(const char *dir, const char *name, mode_t mode)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CU_ASSERT_FATAL(pkey != NULL);
    const char *path = path_in(dir, name);
    write_pkey(path, pkey, mode, NULL);
    EVP_PKEY_free(pkey);
    return path;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    CU_ASSERT_FATAL(close(fd) == 0);
    CU_ASSERT_FATAL(chmod(path, mode) == 0);
}

static struct crypto_key *load_ok(const char *path)
{
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    int rc = crypto_key_load(path, &k, &err);
    if (rc != 0)
        fprintf(stderr, "crypto_key_load: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    CU_ASSERT_FATAL(k != NULL);
    return k;
}

static void test_crypto_sha256_known_vectors(void)
{
    uint8_t h[TS_HASH_BYTES];
    char hex[2 * TS_HASH_BYTES + 1];

    crypto_sha256("abc", 3, h);
    hex_of(h, sizeof(h), hex);
    CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    crypto_sha256(NULL, 0, h);
    hex_of(h, sizeof(h), hex);
    CU_ASSERT_STRING_EQUAL(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_crypto_chain_hash_is_sha256_of_prev_and_entry(void)
{
    uint8_t prev[TS_HASH_BYTES];
    uint8_t got[TS_HASH_BYTES];
    uint8_t want[TS_HASH_BYTES];
    uint8_t joined[TS_HASH_BYTES + 300];
    uint8_t entry[300];

    for (size_t i = 0; i < sizeof(entry); i++)
        entry[i] = (uint8_t)unit_rand();
    crypto_sha256("genesis", 7, prev);
    memcpy(joined, prev, TS_HASH_BYTES);
    memcpy(joined + TS_HASH_BYTES, entry, sizeof(entry));
    crypto_sha256(joined, sizeof(joined), want);
    crypto_chain_hash(prev, entry, sizeof(entry), got);
    CU_ASSERT(memcmp(got, want, TS_HASH_BYTES) == 0);

    /* An empty entry hashes prev alone. */
    crypto_sha256(prev, TS_HASH_BYTES, want);
    crypto_chain_hash(prev, NULL, 0, got);
    CU_ASSERT(memcmp(got, want, TS_HASH_BYTES) == 0);

    /* out may be prev: chains are advanced in place. */
    crypto_sha256(joined, sizeof(joined), want);
    crypto_chain_hash(prev, entry, sizeof(entry), prev);
    CU_ASSERT(memcmp(prev, want, TS_HASH_BYTES) == 0);

    /* One flipped entry bit changes the hash. */
    crypto_sha256("genesis", 7, prev);
    entry[17] ^= 0x01;
    crypto_chain_hash(prev, entry, sizeof(entry), got);
    CU_ASSERT(memcmp(got, want, TS_HASH_BYTES) != 0);
}

static void test_crypto_sign_verify_round_trip(void)
{
    const char *dir = unit_tmpdir("crypto-sign");
    struct crypto_key *k = load_ok(make_key(dir, "node.key", 0600));
    struct crypto_pubkey *p = NULL;
    struct ts_error err = {0};
    uint8_t msg[200];
    uint8_t sig[TS_SIG_BYTES_MAX];
    size_t sig_len = 0;

    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)unit_rand();
    CU_ASSERT_FATAL(crypto_sign(k, msg, sizeof(msg), sig, &sig_len, &err) == 0);
    CU_ASSERT_EQUAL(sig_len, 64);
    CU_ASSERT_FATAL(crypto_pubkey_from_key(k, &p, &err) == 0);
    CU_ASSERT(crypto_verify(p, msg, sizeof(msg), sig, sig_len));

    /* Ed25519 is deterministic: the same message gives the same signature. */
    uint8_t sig2[TS_SIG_BYTES_MAX];
    size_t sig2_len = 0;
    CU_ASSERT_FATAL(crypto_sign(k, msg, sizeof(msg), sig2, &sig2_len, &err) == 0);
    CU_ASSERT(sig2_len == sig_len && memcmp(sig, sig2, sig_len) == 0);

    /* An empty message signs and verifies too. */
    CU_ASSERT_FATAL(crypto_sign(k, NULL, 0, sig2, &sig2_len, &err) == 0);
    CU_ASSERT(crypto_verify(p, NULL, 0, sig2, sig2_len));
    CU_ASSERT(ERR_peek_error() == 0);
    crypto_pubkey_free(p);
    crypto_key_free(k);
}

static void test_crypto_verify_fails_on_tampering_and_other_key(void)
{
    const char *dir = unit_tmpdir("crypto-tamper");
    struct crypto_key *k = load_ok(make_key(dir, "a.key", 0600));
    struct crypto_key *other = load_ok(make_key(dir, "b.key", 0600));
    struct crypto_pubkey *p = NULL;
    struct crypto_pubkey *other_p = NULL;
    struct ts_error err = {0};
    uint8_t msg[64];
    uint8_t sig[TS_SIG_BYTES_MAX];
    size_t sig_len = 0;

    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)unit_rand();
    CU_ASSERT_FATAL(crypto_sign(k, msg, sizeof(msg), sig, &sig_len, &err) == 0);
    CU_ASSERT_FATAL(crypto_pubkey_from_key(k, &p, &err) == 0);
    CU_ASSERT_FATAL(crypto_pubkey_from_key(other, &other_p, &err) == 0);
    CU_ASSERT_FATAL(crypto_verify(p, msg, sizeof(msg), sig, sig_len));

    for (size_t i = 0; i < sizeof(msg); i += 7) {
        msg[i] ^= 0x80;
        CU_ASSERT(!crypto_verify(p, msg, sizeof(msg), sig, sig_len));
        msg[i] ^= 0x80;
    }
    for (size_t i = 0; i < sig_len; i += 5) {
        sig[i] ^= 0x01;
        CU_ASSERT(!crypto_verify(p, msg, sizeof(msg), sig, sig_len));
        sig[i] ^= 0x01;
    }
    CU_ASSERT(!crypto_verify(other_p, msg, sizeof(msg), sig, sig_len));
    CU_ASSERT(!crypto_verify(p, msg, sizeof(msg) - 1, sig, sig_len));
    CU_ASSERT(!crypto_verify(p, msg, sizeof(msg), sig, sig_len - 1));
    CU_ASSERT(!crypto_verify(p, msg, sizeof(msg), sig, 0));
    /* Failures leave no stale OpenSSL errors behind. */
    CU_ASSERT(ERR_peek_error() == 0);
    CU_ASSERT(crypto_verify(p, msg, sizeof(msg), sig, sig_len));
    crypto_pubkey_free(other_p);
    crypto_pubkey_free(p);
    crypto_key_free(other);
    crypto_key_free(k);
}

static void test_crypto_pubkey_from_cert_verifies_node_signature(void)
{
    const char *dir = unit_tmpdir("crypto-cert");
    char ca_dir[600], node_dir[600], key_path[700], crt_path[700];
    struct ts_error err = {0};
    struct pki_identity who = {.trial = "T1", .role = PKI_ROLE_SITE, .id = "101"};

    snprintf(ca_dir, sizeof(ca_dir), "%s/ca", dir);
    snprintf(node_dir, sizeof(node_dir), "%s/site", dir);
    snprintf(key_path, sizeof(key_path), "%s/node.key", node_dir);
    snprintf(crt_path, sizeof(crt_path), "%s/node.crt", node_dir);
    CU_ASSERT_FATAL(pki_ca_create(ca_dir, "T1", 365, NULL, &err) == 0);
    CU_ASSERT_FATAL(pki_issue(ca_dir, &who, NULL, 30, node_dir, NULL, NULL, &err) == 0);

    struct crypto_key *k = load_ok(key_path);
    char *pem = NULL;
    size_t pem_len = 0;
    CU_ASSERT_FATAL(pki_read_file(crt_path, &pem, &pem_len, &err) == 0);
    struct crypto_pubkey *p = NULL;
    CU_ASSERT_FATAL(crypto_pubkey_from_cert(pem, pem_len, &p, &err) == 0);
    uint8_t sig[TS_SIG_BYTES_MAX];
    size_t sig_len = 0;
    CU_ASSERT_FATAL(crypto_sign(k, (const uint8_t *)"batch", 5, sig, &sig_len, &err) == 0);
    CU_ASSERT(crypto_verify(p, (const uint8_t *)"batch", 5, sig, sig_len));
    crypto_pubkey_free(p);

    /* Garbage is not a certificate. */
    p = NULL;
    CU_ASSERT(crypto_pubkey_from_cert("not a cert", 10, &p, &err) == TS_ERR_INVALID);
    CU_ASSERT(p == NULL);
    CU_ASSERT(ERR_peek_error() == 0);
    free(pem);
    crypto_key_free(k);
}

static void test_crypto_key_load_refuses_mode_0644(void)
{
    const char *dir = unit_tmpdir("crypto-mode");
    char path[700];
    struct crypto_key *k = NULL;
    struct ts_error err = {0};

    snprintf(path, sizeof(path), "%s", make_key(dir, "node.key", 0644));
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_PERM);
    CU_ASSERT_EQUAL(err.code, TS_ERR_PERM);
    CU_ASSERT(k == NULL);
    CU_ASSERT(strstr(err.msg, "0644") != NULL);
    CU_ASSERT(strstr(err.msg, path) != NULL);
    CU_ASSERT(strstr(err.msg, "chmod 600") != NULL);

    /* Any group or other bit is refused, even read-only ones. */
    CU_ASSERT_FATAL(chmod(path, 0640) == 0);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_PERM);
    CU_ASSERT(strstr(err.msg, "0640") != NULL);
    CU_ASSERT_FATAL(chmod(path, 0604) == 0);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_PERM);
    CU_ASSERT_FATAL(chmod(path, 0610) == 0);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_PERM);
}

static void test_crypto_key_load_accepts_0600_and_0400(void)
{
    const char *dir = unit_tmpdir("crypto-ok");
    char path[700];

    snprintf(path, sizeof(path), "%s", make_key(dir, "node.key", 0600));
    crypto_key_free(load_ok(path));
    CU_ASSERT_FATAL(chmod(path, 0400) == 0);
    crypto_key_free(load_ok(path));
}

static void test_crypto_key_load_missing_file(void)
{
    const char *dir = unit_tmpdir("crypto-missing");
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    const char *path = path_in(dir, "absent.key");

    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_NOTFOUND);
    CU_ASSERT(k == NULL);
    CU_ASSERT(strstr(err.msg, path) != NULL);
}

static void test_crypto_key_load_refuses_non_regular_files(void)
{
    const char *dir = unit_tmpdir("crypto-nonreg");
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    char path[700];

    snprintf(path, sizeof(path), "%s/dir.key", dir);
    CU_ASSERT_FATAL(mkdir(path, 0700) == 0);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_PERM);
    CU_ASSERT(strstr(err.msg, "not a regular file") != NULL);

    /* A FIFO must be refused, not block the node waiting for a writer. */
    snprintf(path, sizeof(path), "%s/fifo.key", dir);
    CU_ASSERT_FATAL(mkfifo(path, 0600) == 0);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_PERM);
    CU_ASSERT_EQUAL(crypto_check_secret_file(path, &err), TS_ERR_PERM);
}

/*
 * A key file owned by another user is refused.  Root gives a fresh 0600 key
 * away with chown; any other user cannot, so it points the loader at a file
 * that already belongs to someone else and that it can open (/etc/passwd,
 * root's).  The owner is checked before the mode, so either way the refusal
 * must name the owner.
 */
static void test_crypto_key_load_refuses_other_owner(void)
{
    const char *dir = unit_tmpdir("crypto-owner");
    char path[700];
    char want[64];
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    struct stat st;

    if (geteuid() == 0) {
        snprintf(path, sizeof(path), "%s", make_key(dir, "node.key", 0600));
        CU_ASSERT_FATAL(chown(path, 65534, 65534) == 0);
    } else {
        snprintf(path, sizeof(path), "/etc/passwd");
    }
    if (stat(path, &st) != 0 || st.st_uid == geteuid() || access(path, R_OK) != 0) {
        /* Cannot run here: say so and fail rather than pass untested. */
        fprintf(stderr, "\nno readable file owned by another user than uid %lu (%s)\n",
                (unsigned long)geteuid(), path);
        CU_FAIL_FATAL("no file owned by another user to load");
    }
    snprintf(want, sizeof(want), "owned by uid %lu", (unsigned long)st.st_uid);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_PERM);
    CU_ASSERT(k == NULL);
    if (strstr(err.msg, want) == NULL)
        fprintf(stderr, "\nexpected '%s' in: %s\n", want, err.msg);
    CU_ASSERT(strstr(err.msg, want) != NULL);
    CU_ASSERT_EQUAL(crypto_check_secret_file(path, &err), TS_ERR_PERM);
    CU_ASSERT(strstr(err.msg, want) != NULL);
    crypto_key_free(k);
}

static void test_crypto_key_load_refuses_wrong_contents(void)
{
    const char *dir = unit_tmpdir("crypto-contents");
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    char path[700];

    /* Not PEM at all. */
    snprintf(path, sizeof(path), "%s/garbage.key", dir);
    write_text(path, "hello, I am not a key\n", 0600);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, path) != NULL);
    CU_ASSERT(ERR_peek_error() == 0);

    /* A P-256 key: valid PEM, wrong algorithm. */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    CU_ASSERT_FATAL(ec != NULL);
    snprintf(path, sizeof(path), "%s/ec.key", dir);
    write_pkey(path, ec, 0600, NULL);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "Ed25519") != NULL);
    EVP_PKEY_free(ec);

    /* An encrypted key is refused without prompting for a passphrase. */
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CU_ASSERT_FATAL(ed != NULL);
    snprintf(path, sizeof(path), "%s/enc.key", dir);
    write_pkey(path, ed, 0600, EVP_aes_256_cbc());
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "unencrypted") != NULL);
    EVP_PKEY_free(ed);
    CU_ASSERT(k == NULL);
    CU_ASSERT(ERR_peek_error() == 0);
}

/* An encrypted Ed25519 key (passphrase "pw", AES-256-CBC) at dir/name. */
static const char *make_encrypted_key(const char *dir, const char *name)
{
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    CU_ASSERT_FATAL(ed != NULL);
    const char *path = path_in(dir, name);
    write_pkey(path, ed, 0600, EVP_aes_256_cbc());
    EVP_PKEY_free(ed);
    return path;
}

/* With a source that gives no passphrase, an encrypted key says how to give one. */
static void test_crypto_key_load_pass_refuses_encrypted_without_passphrase(void)
{
    const char *dir = unit_tmpdir("crypto-pass-none");
    char path[700];
    char want[800];
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    struct crypto_pass pass;

    snprintf(path, sizeof(path), "%s", make_encrypted_key(dir, "enc.key"));
    /* prompt false: the same as a prompt without a terminal (stdin </dev/null). */
    crypto_pass_init(&pass, NULL, false);
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), TS_ERR_AUTH);
    snprintf(want, sizeof(want), "key file %s is encrypted: give its passphrase with "
             "--pass-file FILE or on the terminal", path);
    if (strcmp(err.msg, want) != 0)
        fprintf(stderr, "\nexpected: %s\ngot:      %s\n", want, err.msg);
    CU_ASSERT_STRING_EQUAL(err.msg, want);
    CU_ASSERT(k == NULL);
    CU_ASSERT(!pass.have);
    CU_ASSERT(ERR_peek_error() == 0);
    crypto_pass_release(&pass);
}

/* The right pass file decrypts, and only its first line counts. */
static void test_crypto_key_load_pass_file_decrypts(void)
{
    const char *dir = unit_tmpdir("crypto-pass-ok");
    char path[700];
    char pass_path[700];
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    struct crypto_pass pass;

    snprintf(path, sizeof(path), "%s", make_encrypted_key(dir, "enc.key"));
    snprintf(pass_path, sizeof(pass_path), "%s", path_in(dir, "pass"));
    write_text(pass_path, "pw\r\nsecond line is not the passphrase\n", 0600);
    crypto_pass_init(&pass, pass_path, false);
    int rc = crypto_key_load_pass(path, &pass, &k, &err);
    if (rc != 0)
        fprintf(stderr, "\ncrypto_key_load_pass: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_FATAL(k != NULL);
    uint8_t sig[TS_SIG_BYTES_MAX];
    size_t sig_len = 0;
    CU_ASSERT_EQUAL(crypto_sign(k, (const uint8_t *)"m", 1, sig, &sig_len, &err), 0);
    crypto_key_free(k);
    CU_ASSERT(ERR_peek_error() == 0);
    crypto_pass_release(&pass);
    CU_ASSERT(!pass.have);
    CU_ASSERT_EQUAL(pass.text[0], '\0');

    /* An unencrypted key never reads the source: a missing pass file is no matter. */
    crypto_pass_init(&pass, path_in(dir, "absent-pass"), false);
    snprintf(path, sizeof(path), "%s", make_key(dir, "plain.key", 0600));
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), 0);
    CU_ASSERT(!pass.have);
    crypto_key_free(k);
    crypto_pass_release(&pass);
}

/*
 * A wrong passphrase is refused with a clear message, and OpenSSL's "bad
 * decrypt" stays out of every later call's error.
 */
static void test_crypto_key_load_pass_refuses_wrong_passphrase(void)
{
    const char *dir = unit_tmpdir("crypto-pass-wrong");
    char path[700];
    char pass_path[700];
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    struct crypto_pass pass;

    snprintf(path, sizeof(path), "%s", make_encrypted_key(dir, "enc.key"));
    snprintf(pass_path, sizeof(pass_path), "%s", path_in(dir, "pass"));
    write_text(pass_path, "not-pw\n", 0600);
    crypto_pass_init(&pass, pass_path, false);
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), TS_ERR_AUTH);
    CU_ASSERT(k == NULL);
    CU_ASSERT(strstr(err.msg, path) != NULL);
    CU_ASSERT(strstr(err.msg, "does not decrypt it") != NULL);
    CU_ASSERT(strstr(err.msg, pass_path) != NULL);
    CU_ASSERT(ERR_peek_error() == 0);
    crypto_pass_release(&pass);

    /* A later, unrelated failure reports only its own reason. */
    struct crypto_pubkey *p = NULL;
    CU_ASSERT_EQUAL(crypto_pubkey_from_cert("not a cert", 10, &p, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "decrypt") == NULL);
    snprintf(path, sizeof(path), "%s/garbage.key", dir);
    write_text(path, "hello, I am not a key\n", 0600);
    CU_ASSERT_EQUAL(crypto_key_load(path, &k, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "decrypt") == NULL);
    CU_ASSERT(ERR_peek_error() == 0);
}

/* A pass file is a secret file: mode 0600 or stricter, ours, regular, not empty. */
static void test_crypto_key_load_pass_file_checks(void)
{
    const char *dir = unit_tmpdir("crypto-pass-mode");
    char path[700];
    char pass_path[700];
    struct crypto_key *k = NULL;
    struct ts_error err = {0};
    struct crypto_pass pass;

    snprintf(path, sizeof(path), "%s", make_encrypted_key(dir, "enc.key"));
    snprintf(pass_path, sizeof(pass_path), "%s", path_in(dir, "pass"));
    write_text(pass_path, "pw\n", 0644);
    crypto_pass_init(&pass, pass_path, false);
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), TS_ERR_PERM);
    CU_ASSERT(k == NULL);
    CU_ASSERT(strstr(err.msg, "pass file") != NULL);
    CU_ASSERT(strstr(err.msg, pass_path) != NULL);
    CU_ASSERT(strstr(err.msg, "0644") != NULL);
    CU_ASSERT(strstr(err.msg, "chmod 600") != NULL);
    CU_ASSERT(!pass.have);
    CU_ASSERT(ERR_peek_error() == 0);

    CU_ASSERT_FATAL(chmod(pass_path, 0640) == 0);
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), TS_ERR_PERM);
    CU_ASSERT_FATAL(chmod(pass_path, 0400) == 0);
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), 0);
    crypto_key_free(k);
    k = NULL;
    crypto_pass_release(&pass);

    write_text(path_in(dir, "empty"), "\n", 0600);
    crypto_pass_init(&pass, path_in(dir, "empty"), false);
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "empty") != NULL);
    crypto_pass_release(&pass);

    crypto_pass_init(&pass, path_in(dir, "absent"), false);
    CU_ASSERT_EQUAL(crypto_key_load_pass(path, &pass, &k, &err), TS_ERR_NOTFOUND);
    crypto_pass_release(&pass);
    CU_ASSERT(k == NULL);
    CU_ASSERT(ERR_peek_error() == 0);
}

/* A new key's passphrase must be long enough; a source without one says so. */
static void test_crypto_pass_get_for_new_key(void)
{
    const char *dir = unit_tmpdir("crypto-pass-new");
    struct ts_error err = {0};
    struct crypto_pass pass;

    write_text(path_in(dir, "short"), "seven77\n", 0600);
    crypto_pass_init(&pass, path_in(dir, "short"), false);
    CU_ASSERT_EQUAL(crypto_pass_get(&pass, "ca.key", true, &err), TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "at least 8") != NULL);
    crypto_pass_release(&pass);

    write_text(path_in(dir, "long"), "eight888\n", 0600);
    crypto_pass_init(&pass, path_in(dir, "long"), false);
    CU_ASSERT_EQUAL(crypto_pass_get(&pass, "ca.key", true, &err), 0);
    CU_ASSERT_EQUAL(pass.len, 8);
    CU_ASSERT_STRING_EQUAL(pass.text, "eight888");
    crypto_pass_release(&pass);

    crypto_pass_init(&pass, NULL, false);
    CU_ASSERT_EQUAL(crypto_pass_get(&pass, "ca.key", true, &err), TS_ERR_AUTH);
    CU_ASSERT(strstr(err.msg, "--pass-file FILE") != NULL);
    crypto_pass_release(&pass);
}

static void test_crypto_check_secret_file_modes(void)
{
    const char *dir = unit_tmpdir("crypto-secret");
    struct ts_error err = {0};
    char path[700];

    snprintf(path, sizeof(path), "%s/api.token", dir);
    write_text(path, "token\n", 0600);
    CU_ASSERT_EQUAL(crypto_check_secret_file(path, &err), 0);
    CU_ASSERT_FATAL(chmod(path, 0660) == 0);
    CU_ASSERT_EQUAL(crypto_check_secret_file(path, &err), TS_ERR_PERM);
    CU_ASSERT(strstr(err.msg, "0660") != NULL);
    CU_ASSERT(strstr(err.msg, path) != NULL);
    CU_ASSERT_EQUAL(crypto_check_secret_file(path_in(dir, "absent"), &err), TS_ERR_NOTFOUND);
}

static void test_crypto_random_fills_and_differs(void)
{
    uint8_t a[32];
    uint8_t b[32];

    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    CU_ASSERT_EQUAL(crypto_random(a, sizeof(a)), 0);
    CU_ASSERT_EQUAL(crypto_random(b, sizeof(b)), 0);
    CU_ASSERT(memcmp(a, b, sizeof(a)) != 0);
    CU_ASSERT_EQUAL(crypto_random(NULL, 0), 0);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_crypto_sha256_known_vectors", test_crypto_sha256_known_vectors},
        {"test_crypto_chain_hash_is_sha256_of_prev_and_entry",
         test_crypto_chain_hash_is_sha256_of_prev_and_entry},
        {"test_crypto_sign_verify_round_trip", test_crypto_sign_verify_round_trip},
        {"test_crypto_verify_fails_on_tampering_and_other_key",
         test_crypto_verify_fails_on_tampering_and_other_key},
        {"test_crypto_pubkey_from_cert_verifies_node_signature",
         test_crypto_pubkey_from_cert_verifies_node_signature},
        {"test_crypto_key_load_refuses_mode_0644", test_crypto_key_load_refuses_mode_0644},
        {"test_crypto_key_load_accepts_0600_and_0400", test_crypto_key_load_accepts_0600_and_0400},
        {"test_crypto_key_load_missing_file", test_crypto_key_load_missing_file},
        {"test_crypto_key_load_refuses_non_regular_files",
         test_crypto_key_load_refuses_non_regular_files},
        {"test_crypto_key_load_refuses_other_owner", test_crypto_key_load_refuses_other_owner},
        {"test_crypto_key_load_refuses_wrong_contents", test_crypto_key_load_refuses_wrong_contents},
        {"test_crypto_key_load_pass_refuses_encrypted_without_passphrase",
         test_crypto_key_load_pass_refuses_encrypted_without_passphrase},
        {"test_crypto_key_load_pass_file_decrypts", test_crypto_key_load_pass_file_decrypts},
        {"test_crypto_key_load_pass_refuses_wrong_passphrase",
         test_crypto_key_load_pass_refuses_wrong_passphrase},
        {"test_crypto_key_load_pass_file_checks", test_crypto_key_load_pass_file_checks},
        {"test_crypto_pass_get_for_new_key", test_crypto_pass_get_for_new_key},
        {"test_crypto_check_secret_file_modes", test_crypto_check_secret_file_modes},
        {"test_crypto_random_fills_and_differs", test_crypto_random_fills_and_differs},
        {NULL, NULL},
    };
    unit_seed();
    return unit_run("crypto", tests);
}
