/*
 * client.c: blocking HTTP/1.1 requests to a node's API (see client.h).
 */
#include "client.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../node/crypto.h"
#include "../node/pki.h"

/* A response larger than this is not one our API sends. */
#define CLIENT_RESPONSE_BYTES_MAX (256u * 1024 * 1024)
#define CLIENT_TIMEOUT_S 60

int client_escape(const char *s, char *out, size_t cap)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
                     *p == '~' || *p == '/';
        if (o + 4 > cap)
            return TS_ERR_TOOBIG;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = digits[*p >> 4];
            out[o++] = digits[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

/*
 * The credential a request carries: a person's user token from the file
 * TRIALSYNC_TOKEN_FILE names (users.h; mode 0600, like every secret), else
 * the node's integration token from its config.
 */
bool client_signed_in(void)
{
    const char *path = getenv("TRIALSYNC_TOKEN_FILE");
    return path != NULL && path[0] != '\0';
}

static int load_token(const struct config *cfg, char *out, size_t cap, struct ts_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    const char *path = getenv("TRIALSYNC_TOKEN_FILE");
    if (client_signed_in()) {
        int prc = crypto_check_secret_file(path, err);
        if (prc != 0)
            return prc;
    } else {
        path = cfg->token_file;
    }
    int rc = pki_read_file(path, &buf, &len, err);
    if (rc != 0)
        return rc;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    if (len == 0 || len >= cap) {
        free(buf);
        return ts_error_set(err, TS_ERR_CONFIG, "API token file %s is empty or too long",
                            path);
    }
    memcpy(out, buf, len);
    out[len] = '\0';
    free(buf);
    return 0;
}

static int connect_api(const struct config *cfg, struct ts_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", cfg->api.port);
    int rc = getaddrinfo(cfg->api.host, port, &hints, &res);
    if (rc != 0)
        return ts_error_set(err, TS_ERR_IO, "cannot resolve %s: %s", cfg->api.host,
                            gai_strerror(rc));
    int fd = -1, last_errno = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return ts_error_set(err, TS_ERR_IO,
                            "cannot reach the node's API at %s:%u: %s (is trialsyncd running "
                            "with %s?)",
                            cfg->api.host, cfg->api.port, strerror(last_errno), cfg->path);
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int request_once(const struct config *cfg, const char *method, const char *path,
                        const char *body, struct client_response *out, struct ts_error *err);

/* A busy node (503: a commit in progress) is asked again, a few times. */
#define CLIENT_BUSY_RETRIES 10
#define CLIENT_BUSY_WAIT_US 100000

int client_request(const struct config *cfg, const char *method, const char *path,
                   const char *body, struct client_response *out, struct ts_error *err)
{
    int rc = request_once(cfg, method, path, body, out, err);
    for (int i = 0; rc == 0 && out->status == 503 && i < CLIENT_BUSY_RETRIES; i++) {
        client_response_release(out);
        usleep(CLIENT_BUSY_WAIT_US);
        rc = request_once(cfg, method, path, body, out, err);
    }
    return rc;
}

/* True when buf (len bytes, NUL-terminated) holds a whole response: its
 * headers and as many body bytes as its Content-Length says. */
static bool response_complete(const char *buf, size_t len)
{
    const char *sep = strstr(buf, "\r\n\r\n");
    if (sep == NULL)
        return false;
    size_t body_off = (size_t)(sep + 4 - buf);
    const char *cl = strstr(buf, "\r\nContent-Length: ");
    if (cl == NULL || cl > sep)
        return false;
    char *end = NULL;
    unsigned long long want = strtoull(cl + 18, &end, 10);
    return end != cl + 18 && want == (unsigned long long)(len - body_off);
}

static int request_once(const struct config *cfg, const char *method, const char *path,
                        const char *body, struct client_response *out, struct ts_error *err)
{
    char token[300];
    char head[4096];
    int rc;

    memset(out, 0, sizeof(*out));
    rc = load_token(cfg, token, sizeof(token), err);
    if (rc != 0)
        return rc;
    size_t body_len = body != NULL ? strlen(body) : 0;
    int hl = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      method, path, cfg->api.host, token, body_len);
    if (hl < 0 || (size_t)hl >= sizeof(head))
        return ts_error_set(err, TS_ERR_TOOBIG, "request path too long");

    int fd = connect_api(cfg, err);
    if (fd < 0)
        return fd;
    if (send_all(fd, head, (size_t)hl) != 0 || (body_len > 0 && send_all(fd, body, body_len) != 0)) {
        rc = ts_error_set(err, TS_ERR_IO, "sending to the node's API failed: %s", strerror(errno));
        close(fd);
        return rc;
    }

    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap >= CLIENT_RESPONSE_BYTES_MAX) {
                rc = ts_error_set(err, TS_ERR_TOOBIG, "response from the node is too large");
                goto out_fail;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory");
                goto out_fail;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* A node that closes with our request unread (a 503 when its
             * connection slots are full) resets the link after its answer. */
            buf[len] = '\0';
            if (errno == ECONNRESET && response_complete(buf, len))
                break;
            rc = ts_error_set(err, TS_ERR_IO, "reading the node's answer failed: %s%s",
                              strerror(errno),
                              errno == EAGAIN ? " (no answer within 60 s)" : "");
            goto out_fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';

    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status < 100 || status > 599) {
        free(buf);
        return ts_error_set(err, TS_ERR_IO, "the node's answer is not HTTP");
    }
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep == NULL) {
        free(buf);
        return ts_error_set(err, TS_ERR_IO, "the node's answer was cut short");
    }
    size_t body_off = (size_t)(sep + 4 - buf);
    const char *cl = strstr(buf, "\r\nContent-Length: ");
    if (cl != NULL && cl < sep) {
        unsigned long long want = strtoull(cl + 18, NULL, 10);
        if (want != (unsigned long long)(len - body_off)) {
            free(buf);
            return ts_error_set(err, TS_ERR_IO,
                                "the node's answer was cut short (%zu of %llu bytes)",
                                len - body_off, want);
        }
    }
    out->status = status;
    out->len = len - body_off;
    memmove(buf, buf + body_off, out->len + 1);
    out->body = buf;
    return 0;

out_fail:
    close(fd);
    free(buf);
    return rc;
}

void client_response_release(struct client_response *res)
{
    free(res->body);
    res->body = NULL;
}
