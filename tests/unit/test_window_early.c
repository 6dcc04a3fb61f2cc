/*
 * tests/unit/test_window_early.c - early firing (sl_window_conf.early_ms):
 * partial results of a window that the watermark has not fired yet go to
 * port 2 (sl_stream_window_early) when the key got new data, and the final
 * firing still comes on port 0.
 *
 * No timing assertions: the source emits two records, then says WAIT until
 * the early sink has seen the first early firing, emits a third record,
 * waits for the second early firing, and ends. So both early firings must happen before
 * the watermark (+inf at the end) fires the window, whatever the speed of
 * the machine; the test checks the sequence and the ports of the results,
 * and that no early firing happens without new data. (A wall-clock guard
 * ends the source after 30 s so that a broken build fails instead of
 * hanging.)
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "sluice/sluice.h"

typedef struct rec {
    int64_t key;
    int64_t value;
} rec;

typedef struct script {
    sl_collector *early;
    size_t want1, want2; /* early results to wait for before phases 2 and 3 */
    int phase;
    double t0;
} script;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int emit(sl_ctx *ctx, int64_t t, int64_t key)
{
    rec r = {key, 1};
    return sl_emit_copy(ctx, t, 0, &r, sizeof(r));
}

static int script_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    *self = NULL; /* the script is the conf */
    return 0;
}

static int script_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    script *s = sl_ctx_conf(ctx);
    if (s->t0 == 0) s->t0 = now_s();
    if (now_s() - s->t0 > 30) return SL_POLL_END; /* guard: the asserts fail */
    switch (s->phase) {
    case 0:
        if (emit(ctx, 10, 1) || emit(ctx, 20, 1) || sl_ctx_watermark(ctx, 0))
            return sl_ctx_error(ctx);
        s->phase = 1;
        return SL_POLL_MORE;
    case 1:
        if (sl_collector_count(s->early) < s->want1) return SL_POLL_WAIT;
        if (emit(ctx, 30, 1)) return sl_ctx_error(ctx);
        s->phase = 2;
        return SL_POLL_MORE;
    case 2:
        if (sl_collector_count(s->early) < s->want2) return SL_POLL_WAIT;
        s->phase = 3;
        return SL_POLL_END;
    default: return SL_POLL_END;
    }
}

static const sl_source script_src = {
    .version = SL_SOURCE_VERSION, .kind = "script", .open = script_open, .poll = script_poll};

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

static void line(const sl_collector *c, size_t i, char *buf, size_t n)
{
    sl_window_result r = sl_window_out(sl_collector_get(c, i, NULL));
    int64_t key, count;
    memcpy(&key, r.key.ptr, 8);
    memcpy(&count, r.result, 8);
    snprintf(buf, n, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64, r.start, r.end, key, count);
}

static void run(sl_window_conf wc, const char *const *early_expect, size_t n_early,
                const char *final_expect)
{
    sl_collector *res = sl_collector_new(), *early = sl_collector_new();
    script s = {.early = early, .want1 = 1, .want2 = 2};
    wc.agg = &sl_agg_count;
    wc.early_ms = 5;
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_stream *src = sl_pipeline_source(p, "script", &script_src, &s, sizeof(rec), NULL);
    sl_stream *w = sl_stream_window(sl_stream_key_by(src, "key", key_of, NULL), "w", &wc);
    sl_stream_sink(sl_stream_window_early(w), "early", &sl_sink_collect, early);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    assert_int_equal(sl_pipeline_run(p), 0);
    assert_int_equal(s.phase, 3); /* both early firings came before the end */
    char buf[128];
    assert_int_equal(sl_collector_count(early), n_early);
    for (size_t i = 0; i < n_early; i++) {
        line(early, i, buf, sizeof(buf));
        assert_string_equal(buf, early_expect[i]);
    }
    assert_int_equal(sl_collector_count(res), 1);
    line(res, 0, buf, sizeof(buf));
    assert_string_equal(buf, final_expect);
    sl_pipeline_free(p);
    sl_collector_free(res);
    sl_collector_free(early);
}

static void test_early_tumbling(void **state)
{
    static const char *const early[] = {"0,1000,1,2", "0,1000,1,3"};
    run(sl_window_tumbling(1000, 0), early, 2, "0,1000,1,3");
}

/* Sliding 1000 / 500: records at 10..30 lie in windows [-500, 500) and
 * [0, 1000); each early firing fires both, in order of their ends. */
static void test_early_sliding(void **state)
{
    static const char *const early[] = {"-500,500,1,2", "0,1000,1,2", "-500,500,1,3", "0,1000,1,3"};
    sl_collector *res = sl_collector_new(), *e = sl_collector_new();
    script s = {.early = e, .want1 = 2, .want2 = 4};
    sl_window_conf wc = sl_window_sliding(1000, 500);
    wc.agg = &sl_agg_count;
    wc.early_ms = 5;
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_stream *src = sl_pipeline_source(p, "script", &script_src, &s, sizeof(rec), NULL);
    sl_stream *w = sl_stream_window(sl_stream_key_by(src, "key", key_of, NULL), "w", &wc);
    sl_stream_sink(sl_stream_window_early(w), "early", &sl_sink_collect, e);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    assert_int_equal(sl_pipeline_run(p), 0);
    assert_int_equal(s.phase, 3);
    char buf[128];
    assert_int_equal(sl_collector_count(e), 4);
    for (size_t i = 0; i < 4; i++) {
        line(e, i, buf, sizeof(buf));
        assert_string_equal(buf, early[i]);
    }
    assert_int_equal(sl_collector_count(res), 2);
    sl_pipeline_free(p);
    sl_collector_free(res);
    sl_collector_free(e);
}

static void test_early_rejected_for_sessions(void **state)
{
    sl_window_conf wc = sl_window_session(100);
    wc.agg = &sl_agg_count;
    wc.early_ms = 5;
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *src = sl_pipeline_source(p, "script", &script_src, NULL, sizeof(rec), NULL);
    assert_null(sl_stream_window(sl_stream_key_by(src, "key", key_of, NULL), "w", &wc));
    assert_int_equal(sl_pipeline_run(p), SL_EINVAL);
    sl_pipeline_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_early_tumbling),
        cmocka_unit_test(test_early_sliding),
        cmocka_unit_test(test_early_rejected_for_sessions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
