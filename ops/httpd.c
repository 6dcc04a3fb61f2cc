/*
 * ops/httpd.c - a small embedded HTTP/1.1 server on its own thread (see
 * ops/httpd.h), for the operations endpoints: a Prometheus scrape, the status
 * page and its JSON. It is made to be safe next to a running job: a client,
 * however slow or hostile, costs a bounded amount of memory and never
 * blocks the server or another client.
 *
 * One thread, one poll() loop over: an eventfd (sli_httpd_stop and the test
 * setter write it, so the loop wakes at once), the non-blocking listening
 * socket, and up to SLI_HTTPD_MAX_CONNS non-blocking client sockets; all
 * level-triggered. A connection beyond the limit is accepted and closed at
 * once (it is not left in the kernel's queue, where it would wait unserved).
 *
 * Each connection is a small state machine:
 *
 *   C_READ   --head complete-->  C_WRITE  --all sent-->  C_READ (keep-alive)
 *                                         --all sent, close-->  C_LINGER
 *   C_LINGER: our side is shut down; the client's bytes are read and dropped
 *             until it closes (so that closing does not reset a connection
 *             whose answer, a 431 say, the client has not read yet).
 *
 * In C_READ the connection owns a fixed read buffer of SLI_HTTPD_HEAD_MAX
 * bytes: a head that does not fit is answered 431 and the connection closed.
 * Only one request is handled at a time per connection: its response is
 * queued whole in the connection's pending-write buffer (an sl_buf; sent at
 * once as far as the socket takes it, the rest when poll says POLLOUT), and
 * the socket is not read again until that buffer is empty, so pipelined
 * requests are answered in order and a client that does not read its
 * answers cannot make us buffer more than one response. A pending-write
 * buffer larger than OUT_KEEP is freed once sent, so idle connections hold
 * only their read buffer. Sends use MSG_NOSIGNAL: a vanished client is an
 * error on its connection, never a SIGPIPE for the process.
 *
 * Timeouts: c->since is when the connection began to wait for the client
 * (accepted, or its last response sent: for a request head; a response
 * queued: for the client to read it; C_LINGER: for the client to close).
 * A connection still waiting timeout_ms after `since` is closed, whatever
 * trickle of bytes it sent or read meanwhile (a slowloris client gains
 * nothing by sending a byte a second).
 *
 * Requests: GET and HEAD (HEAD answers with the GET's headers, Content-Length
 * included, and no body); anything else 405. With a token, the request must
 * carry `Authorization: Bearer <token>` or a `token=<token>` query parameter
 * (percent-decoded), compared in time independent of where the candidate
 * differs, else 401 — checked before the method and the path, so an
 * unauthenticated client learns nothing. A request that announces a body
 * (Content-Length other than 0, or Transfer-Encoding) is answered and its
 * connection closed, since we never read bodies. HTTP/1.0 is closed after
 * its answer unless it asks for keep-alive.
 *
 * Ownership and threads: sli_httpd_start() binds synchronously (errors come
 * back to the caller with a message) and then starts the thread; everything
 * in struct sli_httpd below `server thread only` belongs to that thread.
 * The handler runs on the server thread, one request at a time, with a body
 * buffer the server reuses from request to request. The fields other threads
 * touch (stopping, timeout_ms, nconns) are atomics.
 */
#include "engine/base/net.h"
#include "ops/httpd.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/base/clock.h"
#include "engine/base/errmap.h"
#include "sluice/error.h"

#define TOKEN_MAX      1024       /* bytes of a token */
#define OUT_KEEP       (64 << 10) /* a sent pending-write buffer above this is freed */
#define BODY_KEEP      (4 << 20)  /* the handler's body buffer above this is freed */
#define ACCEPT_BACKOFF 100        /* ms without accepting after EMFILE/ENFILE */

enum conn_state { C_READ, C_WRITE, C_LINGER };

typedef struct conn {
    int fd;
    enum conn_state st;
    bool close_after; /* shut down once the queued response is sent */
    bool dead;        /* to be closed at the end of this loop turn */
    int64_t since;    /* monotonic ms: when the current wait began */
    size_t in_len;
    size_t out_off; /* bytes of out already sent */
    sl_buf out;     /* the pending response */
    char in[SLI_HTTPD_HEAD_MAX];
} conn;

struct sli_httpd {
    int lfd, wfd; /* listening socket, eventfd */
    int port;
    pthread_t thread;
    sli_http_handler handler;
    void *ud;
    size_t token_len; /* 0: no token required */
    char token[TOKEN_MAX + 1];
    atomic_bool stopping;
    atomic_int timeout_ms;
    atomic_int nconns;
    /* server thread only */
    int n;                /* conns[0..n) */
    int64_t accept_after; /* monotonic ms; accepting paused until then (EMFILE) */
    sl_buf body;
    conn *conns[SLI_HTTPD_MAX_CONNS];
    struct pollfd pfd[SLI_HTTPD_MAX_CONNS + 2];
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void wake(sli_httpd *s)
{
    uint64_t one = 1;
    if (write(s->wfd, &one, sizeof one) < 0) {
        /* the counter is already non-zero: the loop wakes anyway */
    }
}

/* ---- responses ---- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

/* Queue one response in c->out (empty: one request at a time). */
static void respond(conn *c, int status, const char *ctype, const void *body, size_t len,
                    bool head_only, const char *extra)
{
    bool bodyless = status == 204 || status == 304;
    int rc = sl_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, reason(status));
    if (!rc && !bodyless)
        rc = sl_buf_printf(&c->out, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                           ctype ? ctype : "text/plain; charset=utf-8", len);
    if (!rc)
        rc = sl_buf_printf(&c->out, "Cache-Control: no-store\r\n%sConnection: %s\r\n\r\n",
                           extra ? extra : "", c->close_after ? "close" : "keep-alive");
    if (!rc && !head_only && !bodyless) rc = sl_buf_append(&c->out, body, len);
    if (rc) c->dead = true; /* out of memory: drop this client only */
}

/* A response of our own (an error): its reason phrase is its body. */
static void respond_error(conn *c, int status, bool head_only, const char *extra)
{
    char text[64];
    int n = snprintf(text, sizeof text, "%s\n", reason(status));
    respond(c, status, NULL, text, (size_t)n, head_only, extra);
}

/* ---- requests ---- */

/* The index just past the blank line that ends a head in p[from..n), 0 if
 * none yet. Lines may end in CRLF or a bare LF. */
static size_t head_end(const char *p, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        if (p[i] != '\n') continue;
        if (i + 1 < n && p[i + 1] == '\n') return i + 2;
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') return i + 3;
    }
    return 0;
}

/* Cut the line at *p (NUL over its CR/LF), advance *p past it; the line. */
static char *next_line(char **p)
{
    char *line = *p, *nl = strchr(line, '\n');
    if (!nl) {
        *p = line + strlen(line);
        return line;
    }
    *p = nl + 1;
    *nl = 0;
    if (nl > line && nl[-1] == '\r') nl[-1] = 0;
    return line;
}

/* Equal to the token, in a time that depends on the token's length only. */
static bool token_eq(const sli_httpd *s, const char *cand, size_t n)
{
    unsigned diff = n != s->token_len;
    for (size_t i = 0; i < s->token_len; i++)
        diff |= (unsigned char)s->token[i] ^ (unsigned char)(i < n ? cand[i] : 0);
    return diff == 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Whether the query has a parameter token=<the token> (percent-decoded). */
static bool query_token_ok(const sli_httpd *s, const char *q)
{
    while (*q) {
        size_t plen = strcspn(q, "&");
        if (plen > 6 && !strncmp(q, "token=", 6)) {
            char tok[TOKEN_MAX + 1];
            size_t n = 0;
            for (size_t i = 6; i < plen && n <= TOKEN_MAX; i++) {
                int hi, lo;
                if (q[i] == '%' && i + 2 < plen && (hi = hexval(q[i + 1])) >= 0 &&
                    (lo = hexval(q[i + 2])) >= 0) {
                    tok[n++] = (char)(hi << 4 | lo);
                    i += 2;
                } else {
                    tok[n++] = q[i];
                }
            }
            if (n <= TOKEN_MAX && token_eq(s, tok, n)) return true;
        }
        q += plen + (q[plen] == '&');
    }
    return false;
}

/* Handle the first request in c->in if its head is complete: queue its
 * response, set c->close_after, drop its bytes from c->in. Returns whether
 * a response was queued (false: the head is incomplete; read more). */
static bool handle_request(sli_httpd *s, conn *c)
{
    size_t start = 0; /* blank lines before a request are ignored (RFC 9112 2.2) */
    while (start < c->in_len && (c->in[start] == '\r' || c->in[start] == '\n')) start++;
    size_t end = head_end(c->in, start, c->in_len);
    if (!end) {
        if (c->in_len < sizeof c->in) return false;
        c->close_after = true;
        c->in_len = 0;
        respond_error(c, 431, false, NULL);
        return true;
    }
    bool nul = memchr(c->in + start, 0, end - start) != NULL; /* 400 */
    c->in[end - 1] = 0; /* the head's last '\n': the head is one C string */
    char *p = c->in + start, *line = next_line(&p);

    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    char *method = line, *target = strchr(line, ' ');
    char *version = target ? strchr(target + 1, ' ') : NULL;
    int status = 0;
    if (nul || !version || strchr(version + 1, ' ') || target == method || target[1] != '/') {
        status = 400;
    } else {
        *target++ = 0;
        *version++ = 0;
        if (strcmp(version, "HTTP/1.1") && strcmp(version, "HTTP/1.0"))
            status = strncmp(version, "HTTP/", 5) ? 400 : 505;
    }
    bool http10 = !status && !strcmp(version, "HTTP/1.0");
    bool keep_alive = !http10, has_body = false;
    const char *bearer = NULL;
    while (!status && *p && *p != '\r') {
        char *name = next_line(&p), *colon = strchr(name, ':');
        if (!colon || colon == name || strcspn(name, " \t") < (size_t)(colon - name)) {
            status = 400;
            break;
        }
        *colon = 0;
        char *v = colon + 1, *ve = v + strlen(v);
        while (*v == ' ' || *v == '\t') v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) *--ve = 0;
        if (!strcasecmp(name, "authorization") && !strncasecmp(v, "bearer ", 7)) {
            for (bearer = v + 7; *bearer == ' ';) bearer++;
        } else if (!strcasecmp(name, "connection")) {
            if (strcasestr(v, "close"))
                keep_alive = false;
            else if (http10 && strcasestr(v, "keep-alive"))
                keep_alive = true;
        } else if (!strcasecmp(name, "content-length")) {
            if (strcmp(v, "0")) has_body = true;
        } else if (!strcasecmp(name, "transfer-encoding")) {
            has_body = true;
        }
    }
    c->close_after = status == 400 || status == 505 || !keep_alive || has_body;

    bool head_only = !status && !strcmp(method, "HEAD");
    char *query = NULL;
    if (!status) {
        if ((query = strchr(target, '?')))
            *query++ = 0;
        else
            query = target + strlen(target);
        if (s->token_len && !(bearer && token_eq(s, bearer, strlen(bearer))) &&
            !query_token_ok(s, query))
            status = 401;
        else if (strcmp(method, "GET") && !head_only)
            status = 405;
    }
    if (status) {
        respond_error(c, status, head_only,
                      status == 401   ? "WWW-Authenticate: Bearer\r\n"
                      : status == 405 ? "Allow: GET, HEAD\r\n"
                                      : NULL);
    } else {
        sli_http_req req = {.method = method, .path = target, .query = query};
        const char *ctype = NULL;
        s->body.len = 0;
        int st = s->handler(s->ud, &req, &s->body, &ctype);
        if (st < 200 || st > 599) {
            respond_error(c, 500, head_only, NULL);
        } else {
            respond(c, st, ctype, s->body.ptr, s->body.len, head_only, NULL);
        }
        if (s->body.cap > BODY_KEEP) sl_buf_free(&s->body);
    }
    memmove(c->in, c->in + end, c->in_len - end);
    c->in_len -= end;
    return true;
}

/* ---- connections (server thread) ---- */

/* Send what the socket takes; once all is sent, wait for the next request
 * (or, after a closing response, for the client to close). */
static void conn_flush(conn *c, int64_t now)
{
    while (c->out_off < c->out.len) {
        ssize_t k = send(c->fd, c->out.ptr + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) c->dead = true;
            return;
        }
        c->out_off += (size_t)k;
    }
    c->out.len = c->out_off = 0;
    if (c->out.cap > OUT_KEEP) sl_buf_free(&c->out);
    c->since = now;
    if (c->close_after) {
        shutdown(c->fd, SHUT_WR);
        c->st = C_LINGER;
    } else {
        c->st = C_READ;
    }
}

/* Answer the complete requests in c->in, one after the other, for as long
 * as their responses leave at once. */
static void conn_advance(sli_httpd *s, conn *c, int64_t now)
{
    while (!c->dead && c->st == C_READ && handle_request(s, c)) {
        c->st = C_WRITE;
        c->since = now;
        if (!c->dead) conn_flush(c, now);
    }
}

static void conn_readable(sli_httpd *s, conn *c, int64_t now)
{
    char junk[4096];
    bool linger = c->st == C_LINGER;
    /* in C_READ, c->in is never full here: conn_advance answers 431 first */
    ssize_t k = linger ? recv(c->fd, junk, sizeof junk, 0)
                       : recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        c->dead = true;
    } else if (k > 0 && !linger) {
        c->in_len += (size_t)k;
        conn_advance(s, c, now);
    }
}

static void conn_close(sli_httpd *s, conn *c)
{
    close(c->fd);
    sl_buf_free(&c->out);
    free(c);
    atomic_fetch_sub(&s->nconns, 1);
}

static void accept_all(sli_httpd *s, int64_t now)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                s->accept_after = now + ACCEPT_BACKOFF; /* else poll would spin on it */
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        conn *c = s->n < SLI_HTTPD_MAX_CONNS ? malloc(sizeof *c) : NULL;
        if (!c) { /* over the limit (or out of memory): closed at once */
            close(fd);
            continue;
        }
        c->fd = fd;
        c->st = C_READ;
        c->close_after = c->dead = false;
        c->since = now;
        c->in_len = c->out_off = 0;
        c->out = (sl_buf){0};
        s->conns[s->n++] = c;
        atomic_fetch_add(&s->nconns, 1);
    }
}

static void *serve(void *arg)
{
    sli_httpd *s = arg;
    while (!atomic_load(&s->stopping)) {
        int64_t now = sli_clock_mono_ms();
        int64_t timeout = atomic_load(&s->timeout_ms), wait = -1;
        bool accepting = now >= s->accept_after;
        if (!accepting) wait = s->accept_after - now;
        s->pfd[0] = (struct pollfd){.fd = s->wfd, .events = POLLIN};
        s->pfd[1] = (struct pollfd){.fd = accepting ? s->lfd : -1, .events = POLLIN};
        int polled = s->n;
        for (int i = 0; i < polled; i++) {
            conn *c = s->conns[i];
            s->pfd[2 + i] =
                (struct pollfd){.fd = c->fd, .events = c->st == C_WRITE ? POLLOUT : POLLIN};
            int64_t left = c->since + timeout - now;
            if (left < 0) left = 0;
            if (wait < 0 || left < wait) wait = left;
        }
        if (poll(s->pfd, (nfds_t)(2 + polled), (int)wait) < 0) continue; /* EINTR */
        if (s->pfd[0].revents) {
            uint64_t v;
            if (read(s->wfd, &v, sizeof v) < 0) { /* EAGAIN: someone else drained it */
            }
        }
        now = sli_clock_mono_ms();
        for (int i = 0; i < polled; i++) {
            conn *c = s->conns[i];
            short re = s->pfd[2 + i].revents;
            if (!re) continue;
            if (re & POLLNVAL) {
                c->dead = true;
            } else if (c->st == C_WRITE) { /* POLLERR/POLLHUP: send() fails and says so */
                conn_flush(c, now);
                conn_advance(s, c, now); /* pipelined requests already read */
            } else {
                conn_readable(s, c, now);
            }
        }
        if (s->pfd[1].revents & POLLIN) accept_all(s, now);
        timeout = atomic_load(&s->timeout_ms);
        int kept = 0;
        for (int i = 0; i < s->n; i++) {
            conn *c = s->conns[i];
            if (c->dead || now - c->since >= timeout)
                conn_close(s, c);
            else
                s->conns[kept++] = c;
        }
        s->n = kept;
    }
    return NULL;
}

/* ---- start and stop ---- */

/* "HOST:PORT" -> host (brackets of an IPv6 address removed) and port. */
static bool split_listen(const char *addr, char *host, size_t hostcap, char *port, bool *bracketed)
{
    const char *colon = strrchr(addr, ':');
    if (!colon) return false;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    *bracketed = hl >= 2 && h[0] == '[' && h[hl - 1] == ']';
    if (*bracketed) h++, hl -= 2;
    /* an IPv6 address in brackets, anything else without */
    if (hl == 0 || hl >= hostcap || !memchr(h, ':', hl) != !*bracketed || memchr(h, '[', hl) ||
        memchr(h, ']', hl))
        return false;
    size_t pl = strlen(colon + 1);
    if (pl == 0 || pl > 5 || strspn(colon + 1, "0123456789") != pl || atol(colon + 1) > 65535)
        return false;
    memcpy(host, h, hl);
    host[hl] = 0;
    memcpy(port, colon + 1, pl + 1);
    return true;
}

/* The first line of path, which must be a token of printable characters. */
static int read_token(sli_httpd *s, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        seterr(err, errlen, "--http-token %s: %s", path, strerror(e));
        return sli_errno_code(e);
    }
    char line[TOKEN_MAX + 3];
    bool got = fgets(line, sizeof line, f) != NULL;
    bool rerr = ferror(f);
    fclose(f);
    if (rerr) {
        seterr(err, errlen, "--http-token %s: cannot read it", path);
        return SL_EIO;
    }
    size_t n = got ? strcspn(line, "\r\n") : 0;
    bool printable = n > 0 && n <= TOKEN_MAX;
    for (size_t i = 0; printable && i < n; i++) printable = line[i] > ' ' && line[i] < 0x7f;
    if (!printable) {
        seterr(err, errlen,
               "--http-token %s: the first line must be a token of 1 to %d printable "
               "characters without spaces",
               path, TOKEN_MAX);
        return SL_EINVAL;
    }
    memcpy(s->token, line, n);
    s->token[n] = 0;
    s->token_len = n;
    return 0;
}

int sli_httpd_start(sli_httpd **out, const char *addr, const char *token_file, sli_http_handler h,
                    void *ud, char *err, size_t errlen)
{
    if (out) *out = NULL;
    if (!out || !addr || !h) {
        seterr(err, errlen, "sli_httpd_start: a listen address and a handler are needed");
        return SL_EINVAL;
    }
    char host[256], port[6];
    bool bracketed;
    if (!split_listen(addr, host, sizeof host, port, &bracketed)) {
        seterr(err, errlen,
               "--http %s: not HOST:PORT (PORT 0 to 65535; an IPv6 HOST in brackets, "
               "[::1]:9249)",
               addr);
        return SL_EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags =
                                 AI_PASSIVE | AI_NUMERICSERV | (bracketed ? AI_NUMERICHOST : 0)};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g) {
        seterr(err, errlen, "--http %s: %s", addr,
               g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
        return SL_EINVAL;
    }
    if (!sli_is_loopback(ai->ai_addr) && !token_file) {
        freeaddrinfo(ai);
        seterr(err, errlen, "--http %s: a non-loopback address needs --http-token FILE", addr);
        return SL_EPERM;
    }
    int rc = SL_ENOMEM;
    sli_httpd *s = calloc(1, sizeof *s);
    if (!s) {
        seterr(err, errlen, "--http %s: out of memory", addr);
        goto fail;
    }
    s->lfd = s->wfd = -1;
    s->handler = h;
    s->ud = ud;
    atomic_init(&s->stopping, false);
    atomic_init(&s->timeout_ms, SLI_HTTPD_TIMEOUT_MS);
    atomic_init(&s->nconns, 0);
    if (token_file && (rc = read_token(s, token_file, err, errlen)) < 0) goto fail;

    s->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(s->lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s->lfd, 512) < 0 ||
        getsockname(s->lfd, (struct sockaddr *)&sa, &sl) < 0) {
        int e = errno;
        rc = sli_errno_code(e);
        seterr(err, errlen, "--http %s: cannot listen: %s", addr, strerror(e));
        goto fail;
    }
    s->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                            : ((struct sockaddr_in6 *)&sa)->sin6_port);
    if ((s->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        (errno = pthread_create(&s->thread, NULL, serve, s)) != 0) {
        int e = errno;
        rc = sli_errno_code(e);
        seterr(err, errlen, "--http %s: cannot start the server thread: %s", addr, strerror(e));
        goto fail;
    }
    freeaddrinfo(ai);
    *out = s;
    return 0;
fail:
    freeaddrinfo(ai);
    if (s) {
        if (s->lfd >= 0) close(s->lfd);
        if (s->wfd >= 0) close(s->wfd);
        free(s);
    }
    return rc;
}

int sli_httpd_port(const sli_httpd *s)
{
    return s ? s->port : -1;
}

void sli_httpd_stop(sli_httpd *s)
{
    if (!s) return;
    atomic_store(&s->stopping, true);
    wake(s);
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->n; i++) conn_close(s, s->conns[i]);
    close(s->lfd);
    close(s->wfd);
    sl_buf_free(&s->body);
    free(s);
}

void sli_httpd_set_timeout_ms(sli_httpd *s, int ms)
{
    atomic_store(&s->timeout_ms, ms > 0 ? ms : 1);
    wake(s);
}

int sli_httpd_connections(const sli_httpd *s)
{
    return atomic_load(&s->nconns);
}
