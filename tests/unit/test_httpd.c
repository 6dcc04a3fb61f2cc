/*
 * tests/unit/test_httpd.c - ops/httpd.c, the embedded HTTP server, driven
 * over raw loopback sockets by blocking clients in this process:
 *
 *   - the token: missing, wrong, a prefix, longer, another scheme -> 401
 *     (before the method and the path are looked at); Bearer or ?token=
 *     (percent-decoded) -> 200;
 *   - routes and methods: the handler's 200 and 404, HEAD (headers only),
 *     POST/PUT/DELETE -> 405, a malformed request line -> 400, HTTP/2.0 -> 505;
 *   - keep-alive with pipelined requests answered in order, Connection: close;
 *   - a head of more than 8 KiB -> 431 (one of exactly 8 KiB is served);
 *   - a slowloris client (a head that never ends) and a client that never
 *     reads a 16 MiB response do not keep others from being served, and are
 *     closed once the stall timeout passes (every server here starts with
 *     a timeout of 10 minutes, which the tests lower to 50 ms to see it);
 *   - 200 clients connected at once all get their own answer;
 *   - 512 connections are held, the 513th is closed at once, and a slot
 *     freed is usable again;
 *   - a non-loopback address without a token file, bad listen strings and
 *     bad token files are refused with one-line messages.
 *
 * Nothing asserts on time: a stalled client is shown not to block others by
 * serving others while it stalls; client sockets have a 60 s receive timeout
 * only as a safety net against a hang.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ops/httpd.h"
#include "sluice/error.h"

#define TOKEN   "s3cr3t-T0ken"
#define BIG_LEN (16u << 20)

static char *big; /* the body of /big: BIG_LEN bytes, a pattern */
static char token_path[64];

/* ---- the handler (server thread) ---- */

static int handler(void *ud, const sli_http_req *req, sl_buf *body, const char **ctype)
{
    atomic_int *calls = ud;
    atomic_fetch_add(calls, 1);
    if (!strcmp(req->path, "/hello")) {
        sl_buf_printf(body, "hello %s %s\n", req->method, req->query);
        return 200;
    }
    if (!strcmp(req->path, "/big")) {
        sl_buf_append(body, big, BIG_LEN);
        *ctype = "application/octet-stream";
        return 200;
    }
    sl_buf_printf(body, "no route %s\n", req->path);
    return 404;
}

static atomic_int calls;

static sli_httpd *start(const char *token_file)
{
    sli_httpd *s = NULL;
    char err[256] = "";
    int rc = sli_httpd_start(&s, "127.0.0.1:0", token_file, handler, &calls, err, sizeof err);
    if (rc) fail_msg("start: %s", err);
    assert_true(sli_httpd_port(s) > 0);
    /* nothing times out unless a test says so: a loaded machine may pause us */
    sli_httpd_set_timeout_ms(s, 600000);
    return s;
}

/* ---- clients ---- */

static int dial_buf(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        fail_msg("connect: %s", strerror(errno));
    return fd;
}

static int dial(int port)
{
    return dial_buf(port, 0);
}

static void send_str(int fd, const char *text)
{
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t k = send(fd, text + off, n - off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) fail_msg("send: %s", strerror(errno));
        off += (size_t)k;
    }
}

typedef struct resp {
    int status;
    char head[SLI_HTTPD_HEAD_MAX];
    char *body;
    size_t len;
} resp;

/* Read one response (head byte by byte, so that a pipelined next one stays
 * in the socket). Returns the status, or 0 if the connection ended first. */
static int read_resp(int fd, resp *r, bool head_only)
{
    size_t n = 0;
    memset(r, 0, sizeof *r);
    while (n < sizeof r->head - 1 && (n < 4 || memcmp(r->head + n - 4, "\r\n\r\n", 4))) {
        ssize_t k = recv(fd, r->head + n, 1, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) fail_msg("no answer within the safety net");
        if (k <= 0) return 0;
        n++;
    }
    r->head[n] = 0;
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    const char *cl = strstr(r->head, "Content-Length: ");
    assert_non_null(cl);
    r->len = head_only ? 0 : strtoul(cl + 16, NULL, 10);
    r->body = malloc(r->len + 1);
    for (size_t off = 0; off < r->len;) {
        ssize_t k = recv(fd, r->body + off, r->len - off, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) fail_msg("body cut short at %zu of %zu bytes", off, r->len);
        off += (size_t)k;
    }
    r->body[r->len] = 0;
    return r->status;
}

/* One request on a new connection; the status (body in r). */
static int ask(int port, const char *request, resp *r)
{
    int fd = dial(port);
    send_str(fd, request);
    int st = read_resp(fd, r, !strncmp(request, "HEAD ", 5));
    close(fd);
    return st;
}

/* The connection was closed by the server: EOF (or a reset) after whatever
 * was still on its way. Returns the bytes read before. */
static size_t drain_to_eof(int fd)
{
    static char buf[1 << 16];
    size_t total = 0;
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) fail_msg("still open after the safety net");
        if (k <= 0) return total;
        total += (size_t)k;
    }
}

static void wait_connections(sli_httpd *s, int n)
{
    for (int i = 0; sli_httpd_connections(s) != n; i++) {
        if (i == 6000)
            fail_msg("%d connections, not %d, after the safety net", sli_httpd_connections(s), n);
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
}

/* ---- tests ---- */

static void test_token(void **state)
{
    (void)state;
    sli_httpd *s = start(token_path);
    int port = sli_httpd_port(s);
    static const struct {
        const char *request;
        int status;
    } cases[] = {
        {"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 401},
        {"GET /hello HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n", 401},
        {"GET /hello HTTP/1.1\r\nAuthorization: Bearer s3cr3t-T0ke\r\n\r\n", 401},
        {"GET /hello HTTP/1.1\r\nAuthorization: Bearer s3cr3t-T0ken2\r\n\r\n", 401},
        {"GET /hello HTTP/1.1\r\nAuthorization: Bearer \r\n\r\n", 401},
        {"GET /hello HTTP/1.1\r\nAuthorization: Basic czNjcjN0LVQwa2Vu\r\n\r\n", 401},
        {"GET /hello?token=bad HTTP/1.1\r\n\r\n", 401},
        {"GET /hello?token= HTTP/1.1\r\n\r\n", 401},
        {"GET /hello?xtoken=" TOKEN " HTTP/1.1\r\n\r\n", 401},
        {"GET /nope HTTP/1.1\r\n\r\n", 401},
        {"POST /hello HTTP/1.1\r\n\r\n", 401},
        {"GET /hello HTTP/1.1\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", 200},
        {"GET /hello HTTP/1.1\r\nauthorization:   bearer " TOKEN "  \r\n\r\n", 200},
        {"GET /hello?token=" TOKEN " HTTP/1.1\r\n\r\n", 200},
        {"GET /hello?a=1&token=s3cr3t%2DT0ken&b=2 HTTP/1.1\r\n\r\n", 200},
        {"GET /nope HTTP/1.1\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", 404},
        {"POST /hello HTTP/1.1\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", 405},
    };
    int before = atomic_load(&calls);
    int handled = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        resp r;
        int st = ask(port, cases[i].request, &r);
        if (st != cases[i].status)
            fail_msg("case %zu: %d, not %d: %s", i, st, cases[i].status, cases[i].request);
        if (st == 401) assert_non_null(strstr(r.head, "WWW-Authenticate: Bearer\r\n"));
        if (st == 200 || st == 404) handled++;
        free(r.body);
    }
    /* a 401 never reaches the handler */
    assert_int_equal(atomic_load(&calls) - before, handled);
    sli_httpd_stop(s);
}

static void test_routes(void **state)
{
    (void)state;
    sli_httpd *s = start(NULL);
    int port = sli_httpd_port(s);
    resp r;
    assert_int_equal(ask(port, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "hello GET \n");
    assert_non_null(strstr(r.head, "Content-Type: text/plain; charset=utf-8\r\n"));
    free(r.body);
    assert_int_equal(ask(port, "GET /hello?a=1&b=%20 HTTP/1.1\r\n\r\n", &r), 200);
    assert_string_equal(r.body, "hello GET a=1&b=%20\n");
    free(r.body);
    assert_int_equal(ask(port, "GET /nope?x HTTP/1.1\r\n\r\n", &r), 404);
    assert_string_equal(r.body, "no route /nope\n");
    free(r.body);
    /* bare LF line ends, HTTP/1.0 */
    assert_int_equal(ask(port, "GET /hello HTTP/1.0\n\n", &r), 200);
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    free(r.body);

    static const struct {
        const char *request;
        int status;
    } cases[] = {
        {"POST /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405},
        {"PUT /hello HTTP/1.1\r\n\r\n", 405},
        {"DELETE /hello HTTP/1.1\r\n\r\n", 405},
        {"GARBAGE\r\n\r\n", 400},
        {"GET  /hello HTTP/1.1\r\n\r\n", 400},
        {"GET hello HTTP/1.1\r\n\r\n", 400},
        {"GET /hello HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET /hello HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
        {"GET /hello HTTP/2.0\r\n\r\n", 505},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = ask(port, cases[i].request, &r);
        if (st != cases[i].status)
            fail_msg("case %zu: %d, not %d: %s", i, st, cases[i].status, cases[i].request);
        if (st == 405) assert_non_null(strstr(r.head, "Allow: GET, HEAD\r\n"));
        free(r.body);
    }

    /* HEAD: the GET's headers, no body; the connection goes on (a body sent
     * would be read as the next response's head). */
    int fd = dial(port);
    send_str(fd, "HEAD /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, true), 200);
    assert_non_null(strstr(r.head, "Content-Length: 12\r\n"));
    free(r.body);
    send_str(fd, "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 200);
    assert_string_equal(r.body, "hello GET \n");
    free(r.body);
    close(fd);
    sli_httpd_stop(s);
}

static void test_keepalive(void **state)
{
    (void)state;
    sli_httpd *s = start(NULL);
    int fd = dial(sli_httpd_port(s));
    resp r;
    /* three pipelined requests in one write, then one more */
    send_str(fd, "GET /hello?1 HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                 "\r\nGET /hello?3 HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 200);
    assert_string_equal(r.body, "hello GET 1\n");
    assert_non_null(strstr(r.head, "Connection: keep-alive\r\n"));
    free(r.body);
    assert_int_equal(read_resp(fd, &r, false), 404);
    free(r.body);
    assert_int_equal(read_resp(fd, &r, false), 200);
    assert_string_equal(r.body, "hello GET 3\n");
    free(r.body);
    /* Connection: close -> the answer, then EOF */
    send_str(fd, "GET /hello?4 HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_resp(fd, &r, false), 200);
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    free(r.body);
    assert_int_equal(drain_to_eof(fd), 0);
    close(fd);
    sli_httpd_stop(s);
}

static void test_oversize_head(void **state)
{
    (void)state;
    sli_httpd *s = start(NULL);
    int port = sli_httpd_port(s);
    char *req = malloc(SLI_HTTPD_HEAD_MAX + 1024);
    resp r;
    /* a head of exactly SLI_HTTPD_HEAD_MAX bytes is served */
    const char *line = "GET /hello HTTP/1.1\r\nX-Pad: ";
    size_t pad = SLI_HTTPD_HEAD_MAX - strlen(line) - 4;
    snprintf(req, SLI_HTTPD_HEAD_MAX + 1024, "%s%0*d\r\n\r\n", line, (int)pad, 0);
    assert_int_equal(strlen(req), SLI_HTTPD_HEAD_MAX);
    assert_int_equal(ask(port, req, &r), 200);
    free(r.body);
    /* one byte more is 431, and the connection is closed after the answer */
    snprintf(req, SLI_HTTPD_HEAD_MAX + 1024, "%s%0*d\r\n\r\n", line, (int)pad + 1, 0);
    int fd = dial(port);
    send_str(fd, req);
    assert_int_equal(read_resp(fd, &r, false), 431);
    free(r.body);
    drain_to_eof(fd);
    close(fd);
    free(req);
    sli_httpd_stop(s);
}

static void serve_others(int port, int n)
{
    for (int i = 0; i < n; i++) {
        resp r;
        assert_int_equal(ask(port, "GET /hello HTTP/1.1\r\n\r\n", &r), 200);
        free(r.body);
    }
}

static void test_slowloris(void **state)
{
    (void)state;
    sli_httpd *s = start(NULL);
    int port = sli_httpd_port(s);
    int slow = dial(port);
    send_str(slow, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    serve_others(port, 5);
    send_str(slow, "a");
    serve_others(port, 5);
    /* a keep-alive connection that went idle is one more stalled client */
    int idle = dial(port);
    send_str(idle, "GET /hello HTTP/1.1\r\n\r\n");
    resp r;
    assert_int_equal(read_resp(idle, &r, false), 200);
    free(r.body);
    serve_others(port, 5);
    /* now the timeout passes: both are closed, without a byte of answer */
    sli_httpd_set_timeout_ms(s, 50);
    assert_int_equal(drain_to_eof(slow), 0);
    assert_int_equal(drain_to_eof(idle), 0);
    close(slow);
    close(idle);
    sli_httpd_stop(s);
}

static void test_slow_reader(void **state)
{
    (void)state;
    sli_httpd *s = start(NULL);
    int port = sli_httpd_port(s);
    /* a small receive window, and a 16 MiB answer it never reads: the
     * server has far more queued than the sockets can hold */
    int slow = dial_buf(port, 4096);
    send_str(slow, "GET /big HTTP/1.1\r\n\r\n");
    char first[5];
    assert_int_equal(recv(slow, first, 5, MSG_WAITALL), 5); /* the server has answered */
    assert_memory_equal(first, "HTTP/", 5);
    serve_others(port, 5);
    /* another client takes the whole big answer meanwhile */
    int fast = dial(port);
    send_str(fast, "GET /big HTTP/1.1\r\n\r\n");
    resp r;
    assert_int_equal(read_resp(fast, &r, false), 200);
    assert_int_equal(r.len, BIG_LEN);
    assert_memory_equal(r.body, big, BIG_LEN);
    free(r.body);
    close(fast);
    serve_others(port, 5);
    /* the timeout passes: the server drops the reader with its answer unsent */
    sli_httpd_set_timeout_ms(s, 50);
    wait_connections(s, 0);
    size_t got = drain_to_eof(slow);
    print_message("the slow reader got %zu of %u bytes before the close\n", got, BIG_LEN);
    assert_true(got < BIG_LEN);
    close(slow);
    sli_httpd_stop(s);
}

#define MANY 200

static void test_many_clients(void **state)
{
    (void)state;
    sli_httpd *s = start(NULL);
    int port = sli_httpd_port(s);
    int fds[MANY];
    char req[64], want[64];
    for (int i = 0; i < MANY; i++) fds[i] = dial(port);
    for (int i = 0; i < MANY; i++) {
        snprintf(req, sizeof req, "GET /hello?c=%d HTTP/1.1\r\n\r\n", i);
        send_str(fds[i], req);
    }
    for (int i = 0; i < MANY; i++) {
        resp r;
        assert_int_equal(read_resp(fds[i], &r, false), 200);
        snprintf(want, sizeof want, "hello GET c=%d\n", i);
        assert_string_equal(r.body, want);
        free(r.body);
    }
    assert_int_equal(sli_httpd_connections(s), MANY);
    for (int i = 0; i < MANY; i++) close(fds[i]);
    sli_httpd_stop(s);
}

static void test_connection_limit(void **state)
{
    (void)state;
    /* SLI_HTTPD_MAX_CONNS + 1 clients and as many server sockets */
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t need = 2 * SLI_HTTPD_MAX_CONNS + 64;
    if (rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) skip();
        rl.rlim_cur = need;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    sli_httpd *s = start(NULL);
    int port = sli_httpd_port(s);
    static int fds[SLI_HTTPD_MAX_CONNS];
    resp r;
    for (int i = 0; i < SLI_HTTPD_MAX_CONNS; i++) {
        fds[i] = dial(port);
        send_str(fds[i], "GET /hello HTTP/1.1\r\n\r\n");
        assert_int_equal(read_resp(fds[i], &r, false), 200); /* held */
        free(r.body);
    }
    int over = dial(port);
    assert_int_equal(read_resp(over, &r, false), 0); /* accepted and closed */
    close(over);
    close(fds[0]);
    wait_connections(s, SLI_HTTPD_MAX_CONNS - 1);
    fds[0] = dial(port);
    send_str(fds[0], "GET /hello HTTP/1.1\r\n\r\n");
    assert_int_equal(read_resp(fds[0], &r, false), 200);
    free(r.body);
    for (int i = 0; i < SLI_HTTPD_MAX_CONNS; i++) close(fds[i]);
    sli_httpd_stop(s);
}

static void test_refused(void **state)
{
    (void)state;
    static const char *nonlocal[] = {"0.0.0.0:0", "[::]:0"};
    for (size_t i = 0; i < sizeof nonlocal / sizeof nonlocal[0]; i++) {
        sli_httpd *s = (sli_httpd *)1;
        char err[256], want[256];
        assert_int_equal(sli_httpd_start(&s, nonlocal[i], NULL, handler, &calls, err, sizeof err),
                         SL_EPERM);
        assert_null(s);
        snprintf(want, sizeof want, "--http %s: a non-loopback address needs --http-token FILE",
                 nonlocal[i]);
        assert_string_equal(err, want);
    }
    /* with a token file it is allowed */
    sli_httpd *s = NULL;
    char err[256] = "";
    assert_int_equal(sli_httpd_start(&s, "0.0.0.0:0", token_path, handler, &calls, err, sizeof err),
                     0);
    assert_true(sli_httpd_port(s) > 0);
    sli_httpd_stop(s);
    sli_httpd_stop(NULL);
}

static void test_bad_listen(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "9249",
        "localhost",
        "localhost:",
        ":9249",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:12ab",
        "127.0.0.1:123456",
        "::1:9249",
        "[::1:9249",
        "[::1]x:9249",
        "[]:9249",
        "[127.0.0.1]:80",
        "1.2.3:x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sli_httpd *s = NULL;
        char err[256] = "", prefix[64];
        int rc = sli_httpd_start(&s, bad[i], NULL, handler, &calls, err, sizeof err);
        if (rc != SL_EINVAL) fail_msg("'%s': %d (%s), not SL_EINVAL", bad[i], rc, err);
        assert_null(s);
        snprintf(prefix, sizeof prefix, "--http %s: ", bad[i]);
        assert_true(!strncmp(err, prefix, strlen(prefix)));
        assert_null(strchr(err, '\n'));
    }
    char err[256] = "";
    sli_httpd *s = NULL;
    assert_int_equal(sli_httpd_start(&s, "127.0.0.1:0", NULL, NULL, NULL, err, sizeof err),
                     SL_EINVAL);
    /* token files: missing, empty, a space in the token */
    assert_int_equal(
        sli_httpd_start(&s, "127.0.0.1:0", "/nonexistent/token", handler, &calls, err, sizeof err),
        SL_ENOENT);
    assert_string_equal(err, "--http-token /nonexistent/token: No such file or directory");
    static const char *bad_tokens[] = {"", "\n", "two words\n"};
    for (size_t i = 0; i < sizeof bad_tokens / sizeof bad_tokens[0]; i++) {
        char path[] = "/tmp/test_httpd_tokXXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, bad_tokens[i], strlen(bad_tokens[i])),
                         (ssize_t)strlen(bad_tokens[i]));
        close(fd);
        assert_int_equal(sli_httpd_start(&s, "127.0.0.1:0", path, handler, &calls, err, sizeof err),
                         SL_EINVAL);
        assert_non_null(strstr(err, "the first line must be a token"));
        unlink(path);
    }
    /* good forms: a name, IPv4, bracketed IPv6 (if the host has IPv6) */
    static const char *good[] = {"localhost:0", "127.0.0.1:0", "[::1]:0"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int rc = sli_httpd_start(&s, good[i], NULL, handler, &calls, err, sizeof err);
        if (rc && i == 2) {
            print_message("no IPv6 loopback here: %s\n", err);
            continue;
        }
        if (rc) fail_msg("'%s': %s", good[i], err);
        sli_httpd_stop(s);
    }
}

static int setup(void **state)
{
    (void)state;
    big = malloc(BIG_LEN);
    if (!big) return -1;
    for (size_t i = 0; i < BIG_LEN; i++) big[i] = (char)('a' + (i * 7 + i / 4096) % 26);
    snprintf(token_path, sizeof token_path, "/tmp/test_httpd_tokenXXXXXX");
    int fd = mkstemp(token_path);
    if (fd < 0) return -1;
    const char *line = TOKEN "\r\nsecond line ignored\n";
    if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(token_path);
    free(big);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_keepalive),    cmocka_unit_test(test_oversize_head),
        cmocka_unit_test(test_slowloris),    cmocka_unit_test(test_slow_reader),
        cmocka_unit_test(test_many_clients), cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_refused),      cmocka_unit_test(test_bad_listen),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
