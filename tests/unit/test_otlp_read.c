/*
 * tests/unit/test_otlp_read.c - the OTLP/JSON line reader (sl_otlp_read,
 * connectors/otlp/otlp_read.c).
 *
 * Covered: every field of a span in its mapping's variants (camelCase and
 * proto names, int64 as number and string, status as integer, name or null,
 * absent fields, unknown fields of every JSON type, whitespace everywhere,
 * resource after scopeSpans), string escapes decoded (surrogate pairs, a
 * lone surrogate as U+FFFD), the raw texts handed back (span, resource,
 * scope) exactly as they are in the line, a table of malformed lines each
 * with the reason it must give, a callback that stops the walk, every
 * truncation and thousands of byte mutations of valid lines (an answer of 0
 * or SL_EPARSE, never a crash or an over-read under ASan: each input is
 * copied into a buffer of exactly its size), a nesting bomb, and the
 * committed fuzz corpus (tests/fuzz/corpus/otlp_read, named by verdict).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/error.h"
#include "sluice/otlp_read.h"
#include "fuzz_corpus.h"

#define CORPUS SLUICE_SOURCE_DIR "/tests/fuzz/corpus/otlp_read"

#define MAX_SPANS 16
typedef struct got {
    int n;
    sl_otlp_span s[MAX_SPANS];
    char name[MAX_SPANS][64], svc[MAX_SPANS][64];
    char json[MAX_SPANS][512], res[MAX_SPANS][256], scope[MAX_SPANS][128];
    int stop_at; /* return 7 at this span (0: never) */
} got;

static void copy(char *dst, size_t cap, sl_bytes b)
{
    assert_true(b.len < cap);
    memcpy(dst, b.ptr, b.len);
    dst[b.len] = 0;
}

static int collect(const sl_otlp_span *s, void *ud)
{
    got *g = ud;
    if (g->stop_at && g->n + 1 == g->stop_at) return 7;
    assert_true(g->n < MAX_SPANS);
    g->s[g->n] = *s;
    copy(g->name[g->n], 64, s->name);
    copy(g->svc[g->n], 64, s->service);
    copy(g->json[g->n], 512, s->json);
    copy(g->res[g->n], 256, s->resource);
    copy(g->scope[g->n], 128, s->scope);
    g->n++;
    return 0;
}

/* Read a NUL-terminated line from a heap copy of exactly its length. */
static int rd(const char *line, got *g, const char **why)
{
    size_t n = strlen(line);
    char *p = malloc(n ? n : 1);
    memcpy(p, line, n);
    *why = NULL;
    int rc = sl_otlp_read(p, n, collect, g, why);
    free(p);
    return rc;
}

#define TID "0102030405060708090a0b0c0d0e0f10"

static void test_full_span(void **state)
{
    (void)state;
    const char *span = "{\"traceId\":\"" TID "\",\"spanId\":\"00000000000000a1\","
                       "\"parentSpanId\":\"00000000000000A0\",\"name\":\"op\",\"kind\":1,"
                       "\"startTimeUnixNano\":\"1000\",\"endTimeUnixNano\":2500,"
                       "\"status\":{\"code\":2,\"message\":\"m\"}}";
    const char *res = "{\"attributes\":[{\"key\":\"x\",\"value\":{\"intValue\":\"1\"}},"
                      "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"svc\"}}]}";
    char line[2048];
    snprintf(line, sizeof line,
             "{\"resourceSpans\":[{\"resource\":%s,\"scopeSpans\":[{\"scope\":{\"name\":\"s\"},"
             "\"spans\":[%s]}]}]}",
             res, span);
    got g = {0};
    const char *why;
    assert_int_equal(rd(line, &g, &why), 0);
    assert_int_equal(g.n, 1);
    static const uint8_t tid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    assert_memory_equal(g.s[0].trace_id, tid, 16);
    assert_int_equal(g.s[0].span_id[7], 0xa1);
    assert_int_equal(g.s[0].parent_id[7], 0xa0);
    assert_int_equal(g.s[0].has_parent, 1);
    assert_int_equal(g.s[0].start_ns, 1000);
    assert_int_equal(g.s[0].end_ns, 2500);
    assert_int_equal(g.s[0].status, SL_OTLP_ERROR);
    assert_string_equal(g.name[0], "op");
    assert_string_equal(g.svc[0], "svc");
    assert_string_equal(g.json[0], span);
    assert_string_equal(g.res[0], res);
    assert_string_equal(g.scope[0], "{\"name\":\"s\"}");
}

static void test_variants(void **state)
{
    (void)state;
    /* proto names, resource after scopeSpans, whitespace, nulls, enum names,
     * unknown fields of every type, absent resource and scope */
    const char *line =
        " \t{ \"resource_spans\" : [ { \"scope_spans\" : [ { \"spans\" : [ "
        "{ \"trace_id\" : \"" TID "\" , \"span_id\" : \"00000000000000b1\" , "
        "\"parent_span_id\" : \"\" , \"start_time_unix_nano\" : 7 , "
        "\"end_time_unix_nano\" : \"18446744073709551615\" , \"status\" : { \"code\" : "
        "\"STATUS_CODE_OK\" } , \"u\" : [ 1.5e-3 , -0 , true , false , null , \"\\u00e9\" , "
        "{ } , [ ] ] } , "
        "{\"traceId\":\"" TID "\",\"spanId\":\"00000000000000b2\",\"parentSpanId\":null,"
        "\"name\":null,\"status\":null,\"startTimeUnixNano\":null} ] , \"scope\" : null } ] , "
        "\"resource\" : { \"attributes\" : [ { \"value\" : { \"string_value\" : "
        "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\\ud800x\" } , \"key\" : "
        "\"service.name\" } ] } } , {\"resource\":null} , {} ] , \"other\" : 1 } \r\n ";
    got g = {0};
    const char *why;
    assert_int_equal(rd(line, &g, &why), 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.s[0].has_parent, 0);
    assert_int_equal(g.s[0].start_ns, 7);
    assert_true(g.s[0].end_ns == UINT64_MAX);
    assert_int_equal(g.s[0].status, SL_OTLP_OK);
    assert_string_equal(g.svc[0], "a\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\xef\xbf\xbdx");
    assert_string_equal(g.svc[1], g.svc[0]);
    assert_string_equal(g.name[1], "");
    assert_int_equal(g.s[1].has_parent, 0);
    assert_int_equal(g.s[1].status, 0);
    assert_string_equal(g.scope[0], "{}");
    /* the status code as each name and as an integer */
    const char *codes[][2] = {
        {"\"STATUS_CODE_UNSET\"", "0"}, {"\"STATUS_CODE_ERROR\"", "2"}, {"1", "1"}, {"-3", "-3"}};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char l[512];
        snprintf(l, sizeof l,
                 "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"" TID
                 "\",\"spanId\":\"0000000000000001\",\"status\":{\"code\":%s}}]}]}]}",
                 codes[i][0]);
        got h = {0};
        assert_int_equal(rd(l, &h, &why), 0);
        assert_int_equal(h.s[0].status, atoi(codes[i][1]));
        assert_string_equal(h.svc[0], "unknown_service");
    }
    /* no spans at all */
    const char *empty[] = {"{}", "{\"resourceSpans\":[]}", "{\"resourceSpans\":null}",
                           "{\"resourceSpans\":[{\"scopeSpans\":[{}]}]}"};
    for (size_t i = 0; i < 4; i++) {
        got h = {0};
        assert_int_equal(rd(empty[i], &h, &why), 0);
        assert_int_equal(h.n, 0);
    }
}

#define SPAN_LINE(fields) "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{" fields "}]}]}]}"
#define IDS               "\"traceId\":\"" TID "\",\"spanId\":\"0000000000000001\""

static void test_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *line, *why;
    } t[] = {
        {"", "empty line"},
        {"   ", "empty line"},
        {"[1]", "not a JSON object"},
        {"nope", "not a JSON object"},
        {"{\"a\":1", "expected ',' or '}' in an object"},
        {"{\"a\" 1}", "expected ':' after a key"},
        {"{a:1}", "expected a string"},
        {"{\"a\":[1 2]}", "expected ',' or ']' in an array"},
        {"{\"a\":01}", "expected ',' or '}' in an object"},
        {"{\"a\":-}", "bad number"},
        {"{\"a\":1.}", "bad number"},
        {"{\"a\":1e}", "bad number"},
        {"{\"a\":tru}", "bad literal"},
        {"{\"a\":\"x}", "unterminated string"},
        {"{\"a\":\"\\x\"}", "bad escape in a string"},
        {"{\"a\":\"\\u12g4\"}", "bad \\u escape in a string"},
        {"{\"a\":\"\x01\"}", "control character in a string"},
        {"{} {}", "bytes after the JSON object"},
        {"{\"resourceSpans\":{}}", "expected an array"},
        {"{\"resourceSpans\":[1]}", "an element of resourceSpans is not an object"},
        {"{\"resourceSpans\":[{\"resource\":1}]}", "resource is not an object"},
        {"{\"resourceSpans\":[{\"scopeSpans\":{}}]}", "scopeSpans is not an array"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[[]]}]}",
         "an element of scopeSpans is not an object"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"scope\":[]}]}]}", "scope is not an object"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":{}}]}]}", "spans is not an array"},
        {"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[\"x\"]}]}]}", "a span is not an object"},
        {SPAN_LINE("\"spanId\":\"0000000000000001\""), "span without traceId"},
        {SPAN_LINE("\"traceId\":\"" TID "\""), "span without spanId"},
        {SPAN_LINE("\"traceId\":\"\",\"spanId\":\"0000000000000001\""), "span without traceId"},
        {SPAN_LINE("\"traceId\":\"0102\",\"spanId\":\"0000000000000001\""),
         "bad traceId (32 hex digits, not zero)"},
        {SPAN_LINE("\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"01\""),
         "bad traceId (32 hex digits, not zero)"},
        {SPAN_LINE("\"traceId\":\"0102030405060708090a0b0c0d0e0f1g\""),
         "bad traceId (32 hex digits, not zero)"},
        {SPAN_LINE("\"traceId\":7"), "bad traceId (32 hex digits, not zero)"},
        {SPAN_LINE(IDS ",\"spanId\":\"0000000000000000\""), "bad spanId (16 hex digits, not zero)"},
        {SPAN_LINE(IDS ",\"parentSpanId\":\"00\""), "bad parentSpanId (16 hex digits, or empty)"},
        {SPAN_LINE(IDS ",\"startTimeUnixNano\":-1"), "bad startTimeUnixNano"},
        {SPAN_LINE(IDS ",\"startTimeUnixNano\":1.0"), "bad startTimeUnixNano"},
        {SPAN_LINE(IDS ",\"startTimeUnixNano\":\"\""), "bad startTimeUnixNano"},
        {SPAN_LINE(IDS ",\"startTimeUnixNano\":\" 1\""), "bad startTimeUnixNano"},
        {SPAN_LINE(IDS ",\"startTimeUnixNano\":true"), "bad startTimeUnixNano"},
        {SPAN_LINE(IDS ",\"endTimeUnixNano\":18446744073709551616"), "bad endTimeUnixNano"},
        {SPAN_LINE(IDS ",\"endTimeUnixNano\":\"99999999999999999999\""), "bad endTimeUnixNano"},
        {SPAN_LINE(IDS ",\"status\":{\"code\":\"ERROR\"}"), "bad status code"},
        {SPAN_LINE(IDS ",\"status\":{\"code\":1.5}"), "bad status code"},
        {SPAN_LINE(IDS ",\"status\":{\"code\":99999999999}"), "bad status code"},
        {SPAN_LINE(IDS ",\"status\":[]"), "expected an object"},
        {SPAN_LINE(IDS ",\"name\":1"), "expected a string"},
        /* the same errors where the resource and the scope come first (read as they come) */
        {"{\"resourceSpans\":[{\"resource\":{},\"scopeSpans\":[1]}]}",
         "an element of scopeSpans is not an object"},
        {"{\"resourceSpans\":[{\"resource\":{},\"scopeSpans\":[{\"scope\":{},\"spans\":[1]}]}]}",
         "a span is not an object"},
        {"{\"resourceSpans\":[{\"resource\":{},\"scopeSpans\":[{\"scope\":{},\"spans\":[{"
         "\"traceId\":\"x\"}]}]}]}",
         "bad traceId (32 hex digits, not zero)"},
        {"{\"resourceSpans\":[{\"resource\":{},\"scopeSpans\":[{\"scope\":{},\"spans\":[{" IDS
         "}],\"x\":tru}]}]}",
         "bad literal"},
        {"{\"resourceSpans\":[{\"resource\":{},\"scopeSpans\":[{\"scope\":{},\"spans\":[{" IDS
         "}]}]}]",
         "expected ',' or '}' in an object"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        got g = {0};
        const char *why;
        int rc = rd(t[i].line, &g, &why);
        if (rc != SL_EPARSE || !why || strcmp(why, t[i].why) != 0)
            fail_msg("%s: rc %d, reason '%s', expected '%s'", t[i].line, rc, why ? why : "(none)",
                     t[i].why);
    }
    /* a name longer than SL_OTLP_MAX_NAME */
    size_t n = SL_OTLP_MAX_NAME + 200;
    char *l = malloc(n);
    int k = snprintf(l, n, "%s",
                     "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{" IDS ",\"name\":\"");
    memset(l + k, 'a', SL_OTLP_MAX_NAME + 1);
    strcpy(l + k + SL_OTLP_MAX_NAME + 1, "\"}]}]}]}");
    got g = {0};
    const char *why;
    assert_int_equal(rd(l, &g, &why), SL_EPARSE);
    assert_string_equal(why, "span name too long");
    free(l);
}

static void test_depth(void **state)
{
    (void)state;
    size_t n = 200000;
    char *l = malloc(n + 8);
    l[0] = '{';
    memcpy(l + 1, "\"a\":", 4);
    memset(l + 5, '[', n);
    l[n + 5] = 0;
    got g = {0};
    const char *why;
    assert_int_equal(rd(l, &g, &why), SL_EPARSE);
    assert_string_equal(why, "nested too deep");
    /* 63 levels inside the top object are fine */
    char ok[256] = "{\"a\":";
    size_t k = strlen(ok);
    for (int i = 0; i < 63; i++) ok[k++] = '[';
    for (int i = 0; i < 63; i++) ok[k++] = ']';
    ok[k++] = '}';
    ok[k] = 0;
    assert_int_equal(rd(ok, &g, &why), 0);
    free(l);
}

static void test_stop(void **state)
{
    (void)state;
    const char *line =
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{" IDS "},{" IDS "},{" IDS "}]}]}]}";
    got g = {.stop_at = 2};
    const char *why;
    assert_int_equal(rd(line, &g, &why), 7);
    assert_int_equal(g.n, 1);
}

static int quiet(const sl_otlp_span *s, void *ud)
{
    (void)s;
    (*(int *)ud)++;
    return 0;
}

/* 0 or SL_EPARSE with a reason; never anything else. */
static int check_any(const uint8_t *p, size_t n)
{
    int spans = 0;
    const char *why = NULL;
    int rc = sl_otlp_read((const char *)p, n, quiet, &spans, &why);
    if (rc == 0) return 1;
    if (rc != SL_EPARSE || !why) fail_msg("rc %d", rc);
    return 0;
}

static const char *const seeds[] = {
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{"
    "\"stringValue\":\"s\\u00e9\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"x\"},\"spans\":[{"
    "\"traceId\":\"" TID "\",\"spanId\":\"0000000000000001\",\"parentSpanId\":"
    "\"0000000000000002\",\"name\":\"n\",\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":2,"
    "\"status\":{\"code\":\"STATUS_CODE_ERROR\"},\"attributes\":[{\"key\":\"k\",\"value\":{"
    "\"doubleValue\":-1.5E+3}}]}]}]}]}",
    " { \"resource_spans\" : [ { \"scope_spans\" : [ { \"spans\" : [ { \"trace_id\" : \"" TID
    "\" , \"span_id\" : \"00000000000000ff\" , \"status\" : null } ] } ] , \"resource\" : { } } "
    "] } ",
};

static void test_mutations(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        size_t n = strlen(seeds[s]);
        uint8_t *p = malloc(n);
        memcpy(p, seeds[s], n);
        assert_int_equal(check_any(p, n), 1);
        size_t last = (size_t)(strrchr(seeds[s], '}') - seeds[s]);
        for (size_t k = 0; k < n; k++) { /* every truncation: refused before the last '}' */
            uint8_t *q = malloc(k ? k : 1);
            memcpy(q, p, k);
            assert_int_equal(check_any(q, k), k > last);
            free(q);
        }
        static const uint8_t pick[] = {'{', '}', '[', ']', '"',  '\\', ':', ',', '0', '-',
                                       'e', 'u', ' ', 0,   0x80, 0xff, 'n', 't', '.'};
        for (int it = 0; it < 20000; it++) {
            uint8_t *q = malloc(n);
            memcpy(q, p, n);
            int edits = 1 + (int)(x % 3);
            for (int e = 0; e < edits; e++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                q[x % n] = pick[(x >> 32) % sizeof pick];
            }
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t len = (x >> 40) % 4 == 0 ? (size_t)((x >> 20) % n) : n;
            check_any(q, len);
            free(q);
        }
        free(p);
    }
}

static int judge(const char *name, const uint8_t *p, size_t n, void *ud)
{
    (void)name;
    (void)ud;
    return check_any(p, n);
}

static void test_corpus(void **state)
{
    (void)state;
    int n[3];
    fc_replay(CORPUS, judge, NULL, n);
    assert_true(n[0] >= 2 && n[1] >= 2);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--generate") == 0) {
        fc_put(CORPUS, "valid-full", (const uint8_t *)seeds[0], strlen(seeds[0]));
        fc_put(CORPUS, "valid-variants", (const uint8_t *)seeds[1], strlen(seeds[1]));
        fc_put(CORPUS, "bad-truncated", (const uint8_t *)seeds[0], strlen(seeds[0]) - 3);
        fc_put(CORPUS, "bad-no-spanid", (const uint8_t *)SPAN_LINE("\"traceId\":\"" TID "\""),
               strlen(SPAN_LINE("\"traceId\":\"" TID "\"")));
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_span), cmocka_unit_test(test_variants),
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_depth),
        cmocka_unit_test(test_stop),      cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
