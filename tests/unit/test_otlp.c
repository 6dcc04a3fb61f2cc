/*
 * tests/unit/test_otlp.c - connectors/otlp/: the OTLP/JSON encoder's exact
 * output for fixed spans, string escaping (quotes, backslash, control
 * characters, valid and invalid UTF-8, non-finite doubles; random names
 * against a byte-by-byte reference), integers at every digit count, the file
 * exporter (one line per batch, appended; an unwritable path refused with
 * its reason), and the OTLP/HTTP exporter against a fake collector in the
 * test (a TCP server thread on 127.0.0.1, port 0) that answers 200, 500,
 * 503 then 200, slowly, never, or is not there at all: spans arrive when it
 * is up, drops are counted when not, the queue bounds memory, and
 * sl_tracer_free returns when the collector hangs. No assertion is about
 * time (a hang would show as the test not finishing).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sluice/sluice.h"

/* --- the encoder ------------------------------------------------------------------ */

static void fill_id(uint8_t *id, size_t n, uint8_t first)
{
    for (size_t i = 0; i < n; i++) id[i] = (uint8_t)(first + i);
}

static void set_attr(sl_span *s, const char *key, int type)
{
    sl_span_attr *a = &s->attrs[s->n_attrs++];
    memset(a, 0, sizeof(*a));
    snprintf(a->key, sizeof(a->key), "%s", key);
    a->type = type;
}

static void fixed_spans(sl_span sp[2])
{
    memset(sp, 0, 2 * sizeof(sl_span));
    sl_span *a = &sp[0], *b = &sp[1];
    fill_id(a->trace_id, 16, 0x01);
    fill_id(a->span_id, 8, 0xa1);
    snprintf(a->name, sizeof(a->name), "root");
    a->kind = SL_SPAN_KIND_SERVER;
    a->start_ns = 1700000000000000000LL;
    a->end_ns = 1700000000000000500LL;
    set_attr(a, "k", SL_ATTR_STRING);
    snprintf(a->attrs[0].v.s, sizeof(a->attrs[0].v.s), "v");
    set_attr(a, "n", SL_ATTR_INT);
    a->attrs[1].v.i = INT64_MIN;
    set_attr(a, "d", SL_ATTR_DOUBLE);
    a->attrs[2].v.d = 0.5;
    set_attr(a, "b", SL_ATTR_BOOL);
    a->attrs[3].v.b = 0;

    memcpy(b->trace_id, a->trace_id, 16);
    fill_id(b->span_id, 8, 0xb1);
    memcpy(b->parent_span_id, a->span_id, 8);
    snprintf(b->name, sizeof(b->name), "child");
    b->kind = SL_SPAN_KIND_INTERNAL;
    b->start_ns = 1700000000000000100LL;
    b->end_ns = 1700000000000000200LL;
    b->dropped_attrs = 2;
    b->n_links = 1;
    fill_id(b->links[0].trace_id, 16, 0x11);
    fill_id(b->links[0].span_id, 8, 0xc1);
    b->dropped_links = 1;
    b->status = SL_SPAN_STATUS_ERROR;
    snprintf(b->status_msg, sizeof(b->status_msg), "bad \"x\"");
}

static const char want_fixed[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{"
    "\"stringValue\":\"svc\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"sluice\",\"version\":"
    "\"1.2.3\"},\"spans\":["
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"a1a2a3a4a5a6a7a8\","
    "\"name\":\"root\",\"kind\":2,\"startTimeUnixNano\":\"1700000000000000000\","
    "\"endTimeUnixNano\":\"1700000000000000500\",\"attributes\":["
    "{\"key\":\"k\",\"value\":{\"stringValue\":\"v\"}},"
    "{\"key\":\"n\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
    "{\"key\":\"d\",\"value\":{\"doubleValue\":0.5}},"
    "{\"key\":\"b\",\"value\":{\"boolValue\":false}}],\"status\":{}},"
    "{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"b1b2b3b4b5b6b7b8\","
    "\"parentSpanId\":\"a1a2a3a4a5a6a7a8\",\"name\":\"child\",\"kind\":1,"
    "\"startTimeUnixNano\":\"1700000000000000100\",\"endTimeUnixNano\":\"1700000000000000200\","
    "\"droppedAttributesCount\":2,\"links\":[{\"traceId\":\"1112131415161718191a1b1c1d1e1f20\","
    "\"spanId\":\"c1c2c3c4c5c6c7c8\"}],\"droppedLinksCount\":1,"
    "\"status\":{\"code\":2,\"message\":\"bad \\\"x\\\"\"}}"
    "]}]}]}\n";

static void test_encode_fixed(void **state)
{
    (void)state;
    sl_span sp[2];
    fixed_spans(sp);
    sl_trace_batch b = {.spans = sp,
                        .n = 2,
                        .service_name = "svc",
                        .scope_name = "sluice",
                        .scope_version = "1.2.3"};
    sl_buf out = {0};
    assert_int_equal(sl_otlp_json_encode(&b, &out), 0);
    assert_int_equal(out.len, strlen(want_fixed));
    assert_memory_equal(out.ptr, want_fixed, out.len);
    /* appends */
    assert_int_equal(sl_otlp_json_encode(&b, &out), 0);
    assert_int_equal(out.len, 2 * strlen(want_fixed));
    sl_buf_free(&out);

    /* no spans: still one valid request */
    sl_trace_batch e = {.n = 0, .service_name = "svc", .scope_name = "sluice"};
    assert_int_equal(sl_otlp_json_encode(&e, &out), 0);
    static const char want_empty[] =
        "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{"
        "\"stringValue\":\"svc\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"sluice\"},"
        "\"spans\":[]}]}]}\n";
    assert_int_equal(out.len, strlen(want_empty));
    assert_memory_equal(out.ptr, want_empty, out.len);
    sl_buf_free(&out);
}

/* The JSON string the encoder makes of a span name. */
static char *encoded_name(const char *name)
{
    static char got[512];
    sl_span s;
    memset(&s, 0, sizeof(s));
    fill_id(s.trace_id, 16, 1);
    fill_id(s.span_id, 8, 1);
    snprintf(s.name, sizeof(s.name), "%s", name);
    sl_trace_batch b = {.spans = &s, .n = 1, .service_name = "x", .scope_name = "sluice"};
    sl_buf out = {0};
    assert_int_equal(sl_otlp_json_encode(&b, &out), 0);
    static const char at[] = "\"spanId\":\"0102030405060708\",\"name\":";
    const char *p = strstr((const char *)out.ptr, at);
    assert_non_null(p);
    p += strlen(at);
    const char *q = strstr(p, ",\"startTimeUnixNano\"");
    assert_non_null(q);
    snprintf(got, sizeof(got), "%.*s", (int)(q - p), p);
    sl_buf_free(&out);
    return got;
}

static void test_escaping(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want, *why;
    } cases[] = {
        {"plain", "\"plain\"", "plain"},
        {"q\"b\\s/", "\"q\\\"b\\\\s/\"", "quote, backslash; slash as is"},
        {"a\nb\rc\td\be\ff", "\"a\\nb\\rc\\td\\be\\ff\"", "short escapes"},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"", "other controls; DEL as is"},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
         "valid 2, 3, 4-byte UTF-8"},
        {"a\xff"
         "b",
         "\"a\xef\xbf\xbd"
         "b\"",
         "invalid byte"},
        {"a\xc3", "\"a\xef\xbf\xbd\"", "cut at the end"},
        {"\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\"", "overlong"},
        {"\xe0\x80\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", "overlong 3-byte"},
        {"\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", "surrogate"},
        {"\xf4\x90\x80\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
         "above U+10FFFF"},
        {"\xe2\x82"
         "x",
         "\"\xef\xbf\xbd\xef\xbf\xbd"
         "x\"",
         "bad continuation"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = encoded_name(cases[i].in);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu (%s): got %s want %s", i, cases[i].why, got, cases[i].want);
    }

    /* non-finite doubles as the mapping's strings */
    sl_span s;
    memset(&s, 0, sizeof(s));
    fill_id(s.trace_id, 16, 1);
    fill_id(s.span_id, 8, 1);
    const double ds[] = {0.0 / 0.0, 1.0 / 0.0, -1.0 / 0.0, 0.1};
    for (int i = 0; i < 4; i++) {
        set_attr(&s, "d", SL_ATTR_DOUBLE);
        s.attrs[i].v.d = ds[i];
    }
    sl_trace_batch b = {.spans = &s, .n = 1, .service_name = "x", .scope_name = "sluice"};
    sl_buf out = {0};
    assert_int_equal(sl_otlp_json_encode(&b, &out), 0);
    assert_int_equal(sl_buf_append(&out, "", 1), 0);
    const char *j = (const char *)out.ptr;
    assert_non_null(strstr(j, "{\"doubleValue\":\"NaN\"}"));
    assert_non_null(strstr(j, "{\"doubleValue\":\"Infinity\"}"));
    assert_non_null(strstr(j, "{\"doubleValue\":\"-Infinity\"}"));
    assert_non_null(strstr(j, "{\"doubleValue\":0.10000000000000001}"));
    sl_buf_free(&out);
}

/* The reference for test_escaping_random: the rule of otlp_json.c's top
 * comment, byte by byte, written for clarity (the encoder copies plain runs
 * eight bytes at a time). */
static size_t ref_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c >= 0xC2 && c <= 0xDF && n >= 2) return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF && n >= 3) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4 && n >= 4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

static void ref_json_str(const char *in, char *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t n = strlen(in), o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c == '"' || c == '\\') {
            o += (size_t)sprintf(out + o, "\\%c", c);
            i++;
        } else if (c < 0x20) {
            const char *e = c == '\n'   ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                            : c == '\b' ? "\\b"
                            : c == '\f' ? "\\f"
                                        : NULL;
            o += e ? (size_t)sprintf(out + o, "%s", e) : (size_t)sprintf(out + o, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            out[o++] = (char)c;
            i++;
        } else {
            size_t len = ref_utf8_len(s + i, n - i);
            if (len) {
                memcpy(out + o, s + i, len);
                o += len;
                i += len;
            } else {
                o += (size_t)sprintf(out + o, "\xEF\xBF\xBD");
                i++;
            }
        }
    }
    out[o++] = '"';
    out[o] = 0;
}

/* Names of every length a span holds, from bytes that are mostly plain with
 * every kind of special byte among them at every offset (the encoder's
 * eight-byte steps see each at each place in a step), against the
 * reference. */
static void test_escaping_random(void **state)
{
    (void)state;
    static const unsigned char special[] = {'"',  '\\', '\n', '\r', '\t', '\b', '\f', 0x01,
                                            0x1f, 0x7f, 0x80, 0xbf, 0xc2, 0xc3, 0xe0, 0xed,
                                            0xf0, 0xf4, 0xff, 0xa9, 0x82, 0x9f, 0x90};
    static const char *const seqs[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                       "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf"};
    uint64_t x = 88172645463325252ull;
    char name[SL_SPAN_NAME_MAX], want[6 * SL_SPAN_NAME_MAX + 3];
    for (int t = 0; t < 20000; t++) {
        size_t len = (size_t)(t % SL_SPAN_NAME_MAX), k = 0;
        while (k < len) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            unsigned r = (unsigned)(x % 16);
            if (r < 11) {
                name[k++] = (char)(' ' + (x >> 8) % 95); /* plain, '"' and '\\' among them */
            } else if (r < 14) {
                name[k++] = (char)special[(x >> 8) % sizeof(special)];
            } else {
                const char *q = seqs[(x >> 8) % 5];
                for (size_t j = 0; q[j] && k < len; j++) name[k++] = q[j]; /* may be cut */
            }
        }
        name[len] = 0;
        ref_json_str(name, want);
        const char *got = encoded_name(name);
        if (strcmp(got, want) != 0)
            fail_msg("name %d (%zu bytes): got %s want %s", t, len, got, want);
    }
}

/* Integers as the mapping writes them: times as decimal strings, int
 * attributes as quoted decimals with their sign, at every digit count and
 * both ends of their types, against snprintf. */
static void test_numbers(void **state)
{
    (void)state;
    int64_t vals[64];
    size_t n = 0;
    vals[n++] = 0;
    vals[n++] = INT64_MAX;
    vals[n++] = INT64_MIN;
    for (int64_t p = 1; n + 3 < 64; p *= 10) {
        vals[n++] = p - 1;
        vals[n++] = p;
        vals[n++] = -p;
        if (p > INT64_MAX / 10) break;
    }
    for (size_t i = 0; i < n; i++) {
        sl_span s;
        memset(&s, 0, sizeof(s));
        fill_id(s.trace_id, 16, 1);
        fill_id(s.span_id, 8, 1);
        s.start_ns = vals[i] > 0 ? vals[i] : 0; /* times are written from 0 up */
        s.end_ns = vals[i];
        s.n_attrs = 1;
        snprintf(s.attrs[0].key, sizeof(s.attrs[0].key), "i");
        s.attrs[0].type = SL_ATTR_INT;
        s.attrs[0].v.i = vals[i];
        sl_trace_batch b = {.spans = &s, .n = 1, .service_name = "x", .scope_name = "sluice"};
        sl_buf out = {0};
        assert_int_equal(sl_otlp_json_encode(&b, &out), 0);
        assert_int_equal(sl_buf_append(&out, "", 1), 0);
        char want[200];
        snprintf(want, sizeof(want),
                 "\"startTimeUnixNano\":\"%lld\",\"endTimeUnixNano\":\"%lld\",\"attributes\":[{"
                 "\"key\":\"i\",\"value\":{\"intValue\":\"%lld\"}}]",
                 (long long)s.start_ns, (long long)(s.end_ns > 0 ? s.end_ns : 0),
                 (long long)vals[i]);
        if (!strstr((const char *)out.ptr, want))
            fail_msg("value %lld: %s lacks %s", (long long)vals[i], (const char *)out.ptr, want);
        sl_buf_free(&out);
    }
}

/* --- the file exporter ------------------------------------------------------------ */

static char tmpdir[256];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_otlp.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static sl_tracer *tracer_with(sl_trace_exporter *e, uint32_t cap, uint32_t batch,
                              int64_t shutdown_ms, int64_t flush_ms)
{
    sl_tracer_conf conf = {.service_name = "otlp-test",
                           .sample_ratio = 1,
                           .queue_capacity = cap,
                           .batch_size = batch,
                           .flush_interval_ms = flush_ms,
                           .export_timeout_ms = 30000,
                           .shutdown_timeout_ms = shutdown_ms};
    sl_tracer *t = NULL;
    char err[256];
    int rc = sl_tracer_new(&conf, e, &t, err, sizeof(err));
    if (rc) fail_msg("sl_tracer_new: %s", err);
    return t;
}

static void spans(sl_tracer *t, int n)
{
    for (int i = 0; i < n; i++) {
        sl_span s;
        sl_span_start(t, &s, "op", SL_SPAN_KIND_INTERNAL, NULL);
        sl_span_set_int(&s, "i", i);
        sl_span_end(&s, 0);
    }
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return b;
}

static void test_file_exporter(void **state)
{
    (void)state;
    char path[400];
    snprintf(path, sizeof(path), "%s/spans.jsonl", tmpdir);
    for (int round = 0; round < 2; round++) { /* the second run appends */
        sl_trace_exporter e;
        char err[256];
        assert_int_equal(sl_otlp_file_exporter(path, &e, err, sizeof(err)), 0);
        sl_tracer *t = tracer_with(&e, 1024, 10, 5000, 20);
        spans(t, 25);
        assert_int_equal(sl_tracer_flush(t, 30000), 0);
        sl_tracer_stats st;
        sl_tracer_stats_get(t, &st);
        assert_int_equal(st.exported, 25);
        sl_tracer_free(t);
    }
    char *txt = slurp(path);
    size_t lines = count(txt, "\n");
    assert_int_equal(count(txt, "\"startTimeUnixNano\""), 50);
    assert_int_equal(count(txt, "{\"resourceSpans\":"), lines); /* one request a line */
    assert_true(lines >= 6);                                    /* batches of at most 10 */
    assert_int_equal(txt[strlen(txt) - 1], '\n');
    assert_non_null(strstr(txt, "{\"stringValue\":\"otlp-test\"}"));
    free(txt);

    /* unwritable: refused at once, with the reason */
    sl_trace_exporter e;
    char err[512];
    snprintf(path, sizeof(path), "%s/no/such/dir/spans", tmpdir);
    assert_int_equal(sl_otlp_file_exporter(path, &e, err, sizeof(err)), SL_ENOENT);
    assert_non_null(strstr(err, "cannot open"));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(sl_otlp_file_exporter("", &e, err, sizeof(err)), SL_EINVAL);
}

/* --- a fake collector ------------------------------------------------------------- */

enum mode { OK200, ERR500, ERR503_TWICE, SLOW, HANG };

typedef struct collector {
    int fd, port;
    enum mode mode;
    int slow_ms;
    atomic_int stop;
    atomic_int requests, spans;
    pthread_t th;
} collector;

/* Read one HTTP request; returns the spans in its body, or -1 when the
 * connection closed or the collector stops. */
static int read_request(collector *c, int fd)
{
    char buf[1 << 16];
    size_t have = 0;
    char *body = NULL;
    size_t clen = 0;
    for (;;) {
        if (!body) {
            char *e = memmem(buf, have, "\r\n\r\n", 4);
            if (e) {
                body = e + 4;
                char *cl = memmem(buf, (size_t)(e - buf), "Content-Length:", 15);
                if (!cl) cl = memmem(buf, (size_t)(e - buf), "content-length:", 15);
                if (!cl) return -1;
                clen = strtoul(cl + 15, NULL, 10);
            }
        }
        if (body) {
            size_t got = have - (size_t)(body - buf);
            if (got >= clen) break;
        }
        if (have == sizeof(buf)) {
            /* only counts matter: keep the tail that may hold a cut word */
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (atomic_load(&c->stop)) return -1;
        if (r <= 0) continue;
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (n <= 0) return -1;
        have += (size_t)n;
    }
    char save = body[clen];
    body[clen] = 0;
    int n = (int)count(body, "\"startTimeUnixNano\"");
    body[clen] = save;
    return n;
}

static void answer(int fd, int status)
{
    char r[200];
    int n = snprintf(
        r, sizeof(r),
        "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", status);
    (void)!send(fd, r, (size_t)n, MSG_NOSIGNAL);
}

static void *collector_main(void *arg)
{
    collector *c = arg;
    while (!atomic_load(&c->stop)) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(c->fd, NULL, NULL);
        if (fd < 0) continue;
        for (;;) {
            int n = read_request(c, fd);
            if (n < 0) break;
            int req = atomic_fetch_add(&c->requests, 1) + 1;
            if (c->mode == HANG) {
                while (!atomic_load(&c->stop)) usleep(10000);
                break;
            }
            if (c->mode == SLOW) usleep((useconds_t)c->slow_ms * 1000);
            int status = c->mode == ERR500 ? 500 : c->mode == ERR503_TWICE && req <= 2 ? 503 : 200;
            if (status == 200) atomic_fetch_add(&c->spans, n);
            answer(fd, status);
        }
        close(fd);
    }
    return NULL;
}

static void collector_start(collector *c, enum mode m)
{
    memset(c, 0, sizeof(*c));
    c->mode = m;
    c->slow_ms = 100;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(c->fd, 16), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(c->fd, (struct sockaddr *)&a, &len), 0);
    c->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&c->th, NULL, collector_main, c), 0);
}

static void collector_stop(collector *c)
{
    atomic_store(&c->stop, 1);
    pthread_join(c->th, NULL);
    close(c->fd);
}

/* A port with nothing listening: bound, then closed. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* flush_ms: an hour makes a batch only when batch spans wait, or on
 * sl_tracer_flush / sl_tracer_free (so the number of requests is known). */
static sl_tracer *http_tracer(int port, uint32_t cap, uint32_t batch, int attempts,
                              int64_t request_ms, int64_t shutdown_ms, int64_t flush_ms)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", port);
    sl_otlp_http_conf hc = {.url = url,
                            .request_timeout_ms = request_ms,
                            .backoff_ms = 5,
                            .max_backoff_ms = 20,
                            .max_attempts = attempts};
    sl_trace_exporter e;
    char err[256];
    int rc = sl_otlp_http_exporter(&hc, &e, err, sizeof(err));
    if (rc) fail_msg("sl_otlp_http_exporter: %s", err);
    return tracer_with(&e, cap, batch, shutdown_ms, flush_ms);
}

static void test_http_up(void **state)
{
    (void)state;
    collector c;
    collector_start(&c, OK200);
    sl_tracer *t = http_tracer(c.port, 1024, 16, 3, 30000, 30000, 20);
    spans(t, 100);
    assert_int_equal(sl_tracer_flush(t, 60000), 0);
    sl_tracer_stats st;
    sl_tracer_stats_get(t, &st);
    assert_int_equal(st.exported, 100);
    assert_int_equal(st.dropped_export + st.dropped_full + st.export_errors, 0);
    assert_int_equal(atomic_load(&c.spans), 100);
    assert_int_equal(atomic_load(&c.requests), (int)st.batches);
    sl_tracer_free(t);
    collector_stop(&c);
}

static void test_http_500_dropped_at_once(void **state)
{
    (void)state;
    collector c;
    collector_start(&c, ERR500);
    sl_tracer *t = http_tracer(c.port, 1024, 1024, 5, 30000, 30000, 3600000);
    spans(t, 10);
    assert_int_equal(sl_tracer_flush(t, 60000), 0);
    sl_tracer_stats st;
    sl_tracer_stats_get(t, &st);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.dropped_export, 10);
    assert_int_equal(st.export_errors, st.batches);
    /* no retry: one request per batch */
    assert_int_equal(atomic_load(&c.requests), (int)st.batches);
    sl_tracer_free(t);
    collector_stop(&c);
}

static void test_http_503_retried(void **state)
{
    (void)state;
    collector c;
    collector_start(&c, ERR503_TWICE);
    sl_tracer *t = http_tracer(c.port, 1024, 1024, 5, 30000, 30000, 3600000);
    spans(t, 10);
    sl_tracer_free(t); /* one batch: everything was queued before free */
    assert_int_equal(atomic_load(&c.requests), 3); /* 503, 503, 200 */
    assert_int_equal(atomic_load(&c.spans), 10);
    collector_stop(&c);

    /* retries used up: dropped, counted */
    collector_start(&c, ERR503_TWICE);
    t = http_tracer(c.port, 1024, 1024, 2, 30000, 30000, 3600000);
    spans(t, 10);
    assert_int_equal(sl_tracer_flush(t, 60000), 0);
    sl_tracer_stats st;
    sl_tracer_stats_get(t, &st);
    assert_int_equal(st.dropped_export, 10);
    assert_int_equal(atomic_load(&c.requests), 2);
    sl_tracer_free(t);
    collector_stop(&c);
}

static void test_http_down(void **state)
{
    (void)state;
    sl_tracer *t = http_tracer(closed_port(), 64, 8, 3, 30000, 30000, 20);
    spans(t, 40);
    assert_int_equal(sl_tracer_flush(t, 60000), 0);
    sl_tracer_stats st;
    sl_tracer_stats_get(t, &st);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.dropped_export + st.dropped_full, 40);
    assert_true(st.export_errors >= 1);
    assert_int_equal(st.export_errors, st.batches);
    sl_tracer_free(t);
}

static void test_http_slow_bounded(void **state)
{
    (void)state;
    collector c;
    collector_start(&c, SLOW);
    /* 16 spans of queue, a collector taking 100 ms a request: 2000 spans
     * ended at once mostly drop, the rest arrive, and the ring never grows */
    sl_tracer *t = http_tracer(c.port, 16, 8, 3, 30000, 30000, 20);
    spans(t, 2000);
    assert_int_equal(sl_tracer_flush(t, 120000), 0);
    sl_tracer_stats st;
    sl_tracer_stats_get(t, &st);
    assert_int_equal(st.queue_capacity, 16);
    assert_true(st.dropped_full > 0);
    assert_true(st.exported > 0);
    assert_int_equal(st.exported + st.dropped_full + st.dropped_export, 2000);
    assert_int_equal(atomic_load(&c.spans), (int)st.exported);
    sl_tracer_free(t);
    collector_stop(&c);
}

static void test_http_hang_free_returns(void **state)
{
    (void)state;
    collector c;
    collector_start(&c, HANG);
    /* a request timeout of 10 minutes: only free's shutdown time (200 ms)
     * can end the export that hangs; the test would hang otherwise */
    sl_tracer *t = http_tracer(c.port, 64, 4, 5, 600000, 200, 20);
    spans(t, 20);
    /* wait until the collector holds a request */
    while (atomic_load(&c.requests) == 0) usleep(1000);
    sl_tracer_free(t);
    assert_int_equal(atomic_load(&c.spans), 0);
    collector_stop(&c);
}

static void test_http_bad_urls(void **state)
{
    (void)state;
    static const char *bad[] = {"",        "localhost:4318", "ftp://h/x",
                                "http://", "not a url",      "http://[::1/x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sl_otlp_http_conf hc = {.url = bad[i]};
        sl_trace_exporter e;
        char err[256];
        if (sl_otlp_http_exporter(&hc, &e, err, sizeof(err)) != SL_EINVAL)
            fail_msg("'%s' taken", bad[i]);
        assert_true(strlen(err) > 0);
        assert_int_equal(sl_otlp_check_url(bad[i], err, sizeof(err)), SL_EINVAL);
    }
    char err[256];
    assert_int_equal(sl_otlp_check_url("http://127.0.0.1:4318/v1/traces", err, sizeof(err)), 0);
    assert_int_equal(sl_otlp_check_url("https://collector.example/v1/traces", err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_fixed),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_escaping_random),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test_setup_teardown(test_file_exporter, setup_tmp, teardown_tmp),
        cmocka_unit_test(test_http_up),
        cmocka_unit_test(test_http_500_dropped_at_once),
        cmocka_unit_test(test_http_503_retried),
        cmocka_unit_test(test_http_down),
        cmocka_unit_test(test_http_slow_bounded),
        cmocka_unit_test(test_http_hang_free_returns),
        cmocka_unit_test(test_http_bad_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
