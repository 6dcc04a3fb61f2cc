/*
 * tests/unit/test_window_edges.c - window and aggregate edge cases, each an
 * exact script (one source instance replaying records and watermarks):
 *
 *  - sliding windows with slide > size: records in the gaps between windows
 *    belong to no window; they reach the unassigned port (3), not the late
 *    port, also when the watermark is far past them, and nothing is lost
 *    (results + late + unassigned account for every record);
 *  - event time 0 and negative times are ordinary times for tumbling,
 *    sliding and session windows, and a watermark of 0 fires what ends at 0;
 *  - builder confs are copied: window and aggregate confs (and the
 *    sl_agg_value of a built-in) may live on a stack frame that is gone when
 *    the pipeline runs;
 *  - aggregate tables: version 1 tables (no flags) are accepted, user tables
 *    with SL_AGG_INT64_SUM take the inline path and agree with the built-in,
 *    inconsistent flags are refused with a clear message;
 *  - result records carry their result size (sl_window_out, sl_agg_out), and
 *    a truncated record reads as empty rather than out of bounds.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sluice/sluice.h"

typedef struct step {
    int wm; /* 1: a watermark, 0: a record */
    int64_t t;
    int64_t key;
} step;

typedef struct script {
    const step *steps;
    int n;
    int next;
} script;

typedef struct rec {
    int64_t key;
    int64_t value;
} rec;

static int script_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    return 0;
}

static int script_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    script *s = sl_ctx_conf(ctx);
    if (s->next >= s->n) return SL_POLL_END;
    const step *st = &s->steps[s->next++];
    if (st->wm) return sl_ctx_watermark(ctx, st->t) ? sl_ctx_error(ctx) : SL_POLL_MORE;
    rec r = {st->key, st->t};
    return sl_emit_copy(ctx, st->t, 0, &r, sizeof(r)) ? sl_ctx_error(ctx) : SL_POLL_MORE;
}

static const sl_source script_src = {
    .version = SL_SOURCE_VERSION, .kind = "script", .open = script_open, .poll = script_poll};

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

#define N(a) ((int)(sizeof(a) / sizeof(a[0])))

typedef struct got {
    char *v[256];
    int n;
} got;

static void got_add(got *g, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    assert_true(g->n < N(g->v));
    g->v[g->n++] = strdup(buf);
}

static void got_check(got *g, const char *const *want, int n_want)
{
    qsort(g->v, (size_t)g->n, sizeof(char *), cmp_str);
    const char **w = calloc((size_t)n_want + 1, sizeof(char *));
    for (int i = 0; i < n_want; i++) w[i] = want[i];
    qsort(w, (size_t)n_want, sizeof(char *), cmp_str);
    for (int i = 0; i < g->n || i < n_want; i++)
        if (i >= g->n || i >= n_want || strcmp(g->v[i], w[i]) != 0)
            fprintf(stderr, "line %d: got '%s', want '%s'\n", i, i < g->n ? g->v[i] : "",
                    i < n_want ? w[i] : "");
    assert_int_equal(g->n, n_want);
    for (int i = 0; i < g->n; i++) assert_string_equal(g->v[i], w[i]);
    for (int i = 0; i < g->n; i++) free(g->v[i]);
    free(w);
    g->n = 0;
}

/* Results "start,end,key,sum" of port 0, "late,ts,key" and "nowin,ts,key". */
static void collect(got *g, sl_collector *res, sl_collector *late, sl_collector *unas)
{
    for (size_t i = 0; i < sl_collector_count(res); i++) {
        sl_window_result r = sl_window_out(sl_collector_get(res, i, NULL));
        int64_t key, v;
        assert_int_equal(r.result_size, 8);
        assert_int_equal(r.key.len, 8);
        memcpy(&key, r.key.ptr, 8);
        memcpy(&v, r.result, 8);
        got_add(g, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64, r.start, r.end, key, v);
    }
    sl_collector *side[2] = {late, unas};
    const char *tag[2] = {"late", "nowin"};
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; side[s] && i < sl_collector_count(side[s]); i++) {
            int64_t ts;
            sl_bytes b = sl_collector_get(side[s], i, &ts);
            rec x;
            assert_int_equal(b.len, sizeof(x));
            memcpy(&x, b.ptr, sizeof(x));
            got_add(g, "%s,%" PRId64 ",%" PRId64, tag[s], ts, x.key);
        }
    }
}

/* Build the pipeline in a frame of its own, with the window conf and the
 * sl_agg_value on that frame's stack: the builder must copy them. */
static __attribute__((noinline)) sl_pipeline *build(script *s, sl_window_kind kind, int64_t a,
                                                    int64_t b, int64_t lateness, int par,
                                                    sl_collector *res, sl_collector *late,
                                                    sl_collector *unas)
{
    sl_agg_value val = {.offset = 8}; /* sum of rec.value (= its event time) */
    sl_window_conf wc = kind == SL_WINDOW_TUMBLING  ? sl_window_tumbling(a, b)
                        : kind == SL_WINDOW_SLIDING ? sl_window_sliding(a, b)
                                                    : sl_window_session(a);
    wc.lateness = lateness;
    wc.agg = &sl_agg_count;
    wc.agg_ud = &val;
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_parallelism(p, par);
    sl_stream *src = sl_stream_parallelism(
        sl_pipeline_source(p, "script", &script_src, s, sizeof(rec), NULL), 1);
    sl_stream *k = sl_stream_parallelism(sl_stream_key_by(src, "key", key_of, NULL), 1);
    sl_stream *w = sl_stream_window(k, "win", &wc);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    sl_stream_sink(sl_stream_window_late(w), "late", &sl_sink_collect, late);
    sl_stream_sink(sl_stream_window_unassigned(w), "unassigned", &sl_sink_collect, unas);
    memset(&wc, 0x5a, sizeof(wc)); /* a builder that kept a pointer would now fail */
    memset(&val, 0x5a, sizeof(val));
    return p;
}

static __attribute__((noinline)) void scribble(void)
{
    volatile uint8_t junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++) junk[i] = 0xa5;
}

/* Run steps through a window counting records per window; check lines. */
static void run(const step *steps, int n, sl_window_kind kind, int64_t a, int64_t b,
                int64_t lateness, const char *const *want, int n_want)
{
    for (int par = 1; par <= 3; par += 2) {
        script s = {steps, n, 0};
        sl_collector *res = sl_collector_new(), *late = sl_collector_new(),
                     *unas = sl_collector_new();
        sl_pipeline *p = build(&s, kind, a, b, lateness, par, res, late, unas);
        scribble();
        int rc = sl_pipeline_run(p);
        if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
        assert_int_equal(rc, 0);
        got g = {0};
        collect(&g, res, late, unas);
        got_check(&g, want, n_want);
        sl_pipeline_free(p);
        sl_collector_free(res);
        sl_collector_free(late);
        sl_collector_free(unas);
    }
}

static void test_sliding_gaps_are_not_late(void **state)
{
    /* sliding(size 10, slide 30): windows [0,10), [30,40), [60,70) ...;
     * 10..29, 40..59 are gaps. Records in gaps go to port 3 whatever the
     * watermark (45 and 12 arrive after the watermark passed them); a
     * record in an expired window (5, after watermark 50) is late. */
    static const step s[] = {{0, 3, 1},  {0, 15, 1}, {0, 29, 2}, {0, 10, 1},
                             {0, 35, 1}, {1, 50, 0}, {0, 45, 1}, {0, 12, 2},
                             {0, 5, 1},  {0, 61, 2}, {0, -5, 1}, {0, -25, 1}};
    static const char *want[] = {
        "0,10,1,1",   "30,40,1,1",  "60,70,2,1", "nowin,15,1", "nowin,29,2", "nowin,10,1",
        "nowin,45,1", "nowin,12,2", "late,5,1",  "nowin,-5,1", "late,-25,1",
    };
    run(s, N(s), SL_WINDOW_SLIDING, 10, 30, 0, want, N(want));
}

static void test_time_zero_and_negative_tumbling(void **state)
{
    /* Watermark 0 fires [-10,0) (end - 1 = -1) but not [0,10); a record at
     * -3 after it is late (lateness 0), one at 0 is not. */
    static const step s[] = {{0, -15, 1}, {0, -1, 1}, {0, 0, 1}, {0, 9, 1},  {0, 10, 1},
                             {1, 0, 0},   {0, -3, 1}, {0, 0, 2}, {0, -10, 2}};
    static const char *want[] = {"-20,-10,1,1", "-10,0,1,1", "0,10,1,2",  "10,20,1,1",
                                 "0,10,2,1",    "late,-3,1", "late,-10,2"};
    run(s, N(s), SL_WINDOW_TUMBLING, 10, 0, 0, want, N(want));
}

static void test_time_zero_and_negative_sliding(void **state)
{
    /* sliding(10, 5): a record at t is in the windows starting at
     * floor(t / 5) * 5 and 5 before. Watermark 0 fires [-15,-5) and
     * [-10,0); then -1 is in [-10,0) (expired) and [-5,5) (live): not late,
     * it counts in [-5,5) only; -11 has only expired windows: late. */
    static const step s[] = {{0, -7, 1}, {0, 0, 1}, {0, 4, 1}, {1, 0, 0}, {0, -1, 1}, {0, -11, 1}};
    static const char *want[] = {"-15,-5,1,1", "-10,0,1,1", "-5,5,1,3", "0,10,1,2", "late,-11,1"};
    run(s, N(s), SL_WINDOW_SLIDING, 10, 5, 0, want, N(want));
}

static void test_time_zero_and_negative_session(void **state)
{
    /* gap 5: -3, 0, 1 form [-3,6); -20 alone [-20,-15); watermark 0 fires
     * [-20,-15) only; a record at -30 after it is late. */
    static const step s[] = {{0, -3, 1}, {0, 0, 1}, {0, 1, 1}, {0, -20, 1}, {1, 0, 0}, {0, -30, 1}};
    static const char *want[] = {"-3,6,1,3", "-20,-15,1,1", "late,-30,1"};
    run(s, N(s), SL_WINDOW_SESSION, 5, 0, 0, want, N(want));
}

/* --- aggregate tables and the keyed aggregate ----------------------------------------- */

/* A version 1 table: the layout before `flags` existed. */
typedef struct agg_v1 {
    int version;
    const char *name;
    uint32_t acc_size;
    uint32_t result_size;
    void (*init)(void *acc, const void *ud);
    void (*add)(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud);
    void (*merge)(void *acc, const void *other, const void *ud);
    void (*result)(const void *acc, void *out, const void *ud);
} agg_v1;

/* A v1-sized table seen as an sl_aggregate, as the library sees a table
 * compiled against the old header (hidden from the compiler, which would
 * otherwise warn that the object is smaller than the type). */
static const sl_aggregate *as_table(const void *p)
{
    __asm__("" : "+r"(p));
    return p;
}

static void my_init(void *acc, const void *ud)
{
    memset(acc, 0, 8);
}
static void my_add(void *acc, const void *r, uint32_t len, int64_t ts, const void *ud)
{
    ++*(int64_t *)acc;
}
static void my_merge(void *acc, const void *o, const void *ud)
{
    *(int64_t *)acc += *(const int64_t *)o;
}
static void my_result(const void *acc, void *out, const void *ud)
{
    memcpy(out, acc, 8);
}

/* Window counts per key over a fixed script with aggregate `agg`. */
static void count_with(const sl_aggregate *agg, const char *const *want, int n_want)
{
    static const step s[] = {{0, 1, 1}, {0, 2, 1}, {0, 12, 1}, {0, 3, 2}, {0, 25, 1}};
    script sc = {s, N(s), 0};
    sl_collector *res = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_stream *src = sl_pipeline_source(p, "script", &script_src, &sc, sizeof(rec), NULL);
    sl_stream *k = sl_stream_key_by(src, "key", key_of, NULL);
    sl_window_conf wc = sl_window_sliding(20, 10);
    wc.agg = agg;
    sl_stream_sink(sl_stream_window(k, "win", &wc), "out", &sl_sink_collect, res);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    got g = {0};
    collect(&g, res, NULL, NULL);
    got_check(&g, want, n_want);
    sl_pipeline_free(p);
    sl_collector_free(res);
}

/* Event times at the ends of int64: window bounds saturate instead of
 * overflowing (UBSan checks), and no record is lost: the window whose end
 * lies past INT64_MAX still fires at the end of input (its firing time
 * saturates at INT64_MAX, which once meant "no timer" and dropped it). */
static void test_int64_extremes_tumbling(void **state)
{
    /* the watermark just below the end of time, then the end of input */
    static const step s[] = {
        {0, INT64_MIN + 1, 1}, {0, 0, 1}, {0, INT64_MAX - 1, 1}, {1, INT64_MAX - 12, 0}};
    static const char *want[] = {"-9223372036854775808,-9223372036854775000,1,1", "0,1000,1,1",
                                 "9223372036854775000,9223372036854775807,1,1"};
    run(s, N(s), SL_WINDOW_TUMBLING, 1000, 0, 0, want, N(want));
}

static void test_int64_extremes_sliding(void **state)
{
    static const step s[] = {{0, 0, 1}, {0, INT64_MAX - 1, 1}, {1, INT64_MAX - 12, 0}};
    static const char *want[] = {"-900,100,1,1",
                                 "-600,400,1,1",
                                 "-300,700,1,1",
                                 "0,1000,1,1",
                                 "9223372036854774900,9223372036854775807,1,1",
                                 "9223372036854775200,9223372036854775807,1,1",
                                 "9223372036854775500,9223372036854775807,1,1",
                                 "9223372036854775800,9223372036854775807,1,1"};
    run(s, N(s), SL_WINDOW_SLIDING, 1000, 300, 0, want, N(want));
}

static void test_int64_extremes_session(void **state)
{
    static const step s[] = {
        {0, INT64_MIN + 1, 1}, {0, 0, 1}, {0, INT64_MAX - 1, 1}, {1, INT64_MAX - 12, 0}};
    static const char *want[] = {"-9223372036854775807,-9223372036854775307,1,1", "0,500,1,1",
                                 "9223372036854775806,9223372036854775807,1,1"};
    run(s, N(s), SL_WINDOW_SESSION, 500, 0, 0, want, N(want));
}

static void test_aggregate_tables(void **state)
{
    static const char *want[] = {"-10,10,1,2", "0,20,1,3",   "10,30,1,2",
                                 "20,40,1,1",  "-10,10,2,1", "0,20,2,1"};
    count_with(&sl_agg_count, want, N(want));
    /* The same count as a version 1 table (read as flags 0: by calls). */
    agg_v1 *v1 = malloc(sizeof(*v1)); /* exactly v1-sized: reading flags would overflow */
    *v1 = (agg_v1){1, "mycount", 8, 8, my_init, my_add, my_merge, my_result};
    count_with(as_table(v1), want, N(want));
    assert_int_equal(sl_agg_flags(as_table(v1)), 0);
    free(v1);
    /* A user table that makes the built-in count's promises: inline path. */
    sl_aggregate mine = {SL_AGGREGATE_VERSION,
                         "mycount2",
                         8,
                         8,
                         my_init,
                         my_add,
                         my_merge,
                         my_result,
                         SL_AGG_INT64_SUM | SL_AGG_ADD_ONE,
                         NULL};
    count_with(&mine, want, N(want));
    mine.flags = SL_AGG_INT64_SUM; /* sum-like: add() by call, merge inline */
    count_with(&mine, want, N(want));
}

static void expect_refused(const sl_aggregate *agg, const char *needle)
{
    script sc = {NULL, 0, 0};
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *k = sl_stream_key_by(sl_pipeline_source(p, "s", &script_src, &sc, sizeof(rec), NULL),
                                    "key", key_of, NULL);
    sl_window_conf wc = sl_window_tumbling(10, 0);
    wc.agg = agg;
    assert_null(sl_stream_window(k, "win", &wc));
    const char *m = sl_pipeline_errmsg(p);
    if (!strstr(m, needle)) fprintf(stderr, "message '%s' lacks '%s'\n", m, needle);
    assert_non_null(strstr(m, "'win'"));
    assert_non_null(strstr(m, needle));
    sl_pipeline_free(p);
    p = sl_pipeline_new();
    k = sl_stream_key_by(sl_pipeline_source(p, "s", &script_src, &sc, sizeof(rec), NULL), "key",
                         key_of, NULL);
    sl_agg_conf ac = {.agg = agg, .emit = SL_AGG_EMIT_FINAL};
    assert_null(sl_stream_aggregate(k, "agg", &ac));
    assert_non_null(strstr(sl_pipeline_errmsg(p), "'agg'"));
    assert_non_null(strstr(sl_pipeline_errmsg(p), needle));
    assert_int_equal(sl_pipeline_run(p), SL_EINVAL);
    sl_pipeline_free(p);
}

static void test_aggregate_refused(void **state)
{
    sl_aggregate a = {SL_AGGREGATE_VERSION, "bad", 8, 8, my_init, my_add, my_merge, my_result,
                      SL_AGG_ADD_ONE,       NULL};
    expect_refused(&a, "SL_AGG_ADD_ONE without SL_AGG_INT64_SUM");
    a.flags = SL_AGG_INT64_SUM;
    a.acc_size = 16;
    expect_refused(&a, "acc_size or result_size is not 8");
    a.acc_size = 8;
    a.flags = 0x80;
    expect_refused(&a, "unknown flags");
    a.flags = 0;
    a.version = SL_AGGREGATE_VERSION + 1;
    expect_refused(&a, "unknown version");
    a.version = 0;
    expect_refused(&a, "unknown version");
    a.version = SL_AGGREGATE_VERSION;
    a.add = NULL;
    expect_refused(&a, "needs init(), add() and result()");
    expect_refused(NULL, "needs an aggregate");
}

/* Keyed aggregate: stack conf and stack sl_agg_value; result read through
 * sl_agg_out without its size. */
static __attribute__((noinline)) sl_pipeline *build_agg(script *s, sl_collector *res)
{
    sl_agg_value val = {.offset = 8};
    sl_agg_conf ac = {.agg = &sl_agg_sum, .ud = &val, .emit = SL_AGG_EMIT_FINAL};
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_stream *k = sl_stream_key_by(sl_pipeline_source(p, "s", &script_src, s, sizeof(rec), NULL),
                                    "key", key_of, NULL);
    sl_stream_sink(sl_stream_aggregate(k, "sum", &ac), "out", &sl_sink_collect, res);
    memset(&ac, 0x5a, sizeof(ac));
    memset(&val, 0x5a, sizeof(val));
    return p;
}

static void test_aggregate_conf_copied(void **state)
{
    static const step st[] = {{0, 0, 1}, {0, -4, 1}, {0, 7, 2}, {0, 100, 1}};
    script s = {st, N(st), 0};
    sl_collector *res = sl_collector_new();
    sl_pipeline *p = build_agg(&s, res);
    scribble();
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    got g = {0};
    for (size_t i = 0; i < sl_collector_count(res); i++) {
        int64_t ts;
        sl_agg_result r = sl_agg_out(sl_collector_get(res, i, &ts));
        int64_t key, v;
        assert_int_equal(r.result_size, 8);
        assert_int_equal(r.key.len, 8);
        memcpy(&key, r.key.ptr, 8);
        memcpy(&v, r.result, 8);
        assert_memory_equal(sl_agg_out_key(sl_collector_get(res, i, NULL)).ptr, &key, 8);
        got_add(&g, "%" PRId64 ",%" PRId64 ",%" PRId64, key, v, ts);
    }
    static const char *want[] = {"1,96,100", "2,7,7"};
    got_check(&g, want, N(want));
    sl_pipeline_free(p);
    sl_collector_free(res);
}

static void test_truncated_records(void **state)
{
    uint8_t buf[40] = {0};
    uint32_t rs = 8;
    memcpy(buf + 16, &rs, 4);
    sl_window_result r = sl_window_out((sl_bytes){buf, 23});
    assert_null(r.result);
    assert_int_equal(r.key.len, 0);
    r = sl_window_out((sl_bytes){buf, 31}); /* header, but result cut short */
    assert_null(r.result);
    r = sl_window_out((sl_bytes){buf, 32}); /* result, empty key */
    assert_ptr_equal(r.result, buf + SL_WINDOW_OUT_HDR);
    assert_int_equal(r.key.len, 0);
    memcpy(buf, &rs, 4);
    sl_agg_result a = sl_agg_out((sl_bytes){buf, 15});
    assert_null(a.result);
    assert_int_equal(a.key.len, 0);
    a = sl_agg_out((sl_bytes){buf, 20});
    assert_ptr_equal(a.result, buf + SL_AGG_OUT_HDR);
    assert_int_equal(a.key.len, 4);
}

static void test_unassigned_of_other_stream(void **state)
{
    script sc = {NULL, 0, 0};
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_source(p, "s", &script_src, &sc, sizeof(rec), NULL);
    assert_null(sl_stream_window_unassigned(s));
    assert_non_null(strstr(sl_pipeline_errmsg(p), "not the output of a window node"));
    sl_pipeline_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sliding_gaps_are_not_late),
        cmocka_unit_test(test_time_zero_and_negative_tumbling),
        cmocka_unit_test(test_time_zero_and_negative_sliding),
        cmocka_unit_test(test_time_zero_and_negative_session),
        cmocka_unit_test(test_int64_extremes_tumbling),
        cmocka_unit_test(test_int64_extremes_sliding),
        cmocka_unit_test(test_int64_extremes_session),
        cmocka_unit_test(test_aggregate_tables),
        cmocka_unit_test(test_aggregate_refused),
        cmocka_unit_test(test_aggregate_conf_copied),
        cmocka_unit_test(test_truncated_records),
        cmocka_unit_test(test_unassigned_of_other_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
