/*
 * test_runtime_cancel.c - a canceled job emits nothing partial as complete.
 *
 * A source replays records at ts 0, 1, 2, ... (two keys, alternating), each
 * followed by a watermark at its time, and calls sl_pipeline_cancel() itself
 * after record K: no timing, the cut is exact (the engine checks the cancel
 * flag before every poll). Downstream: key_by -> tumbling window (100 ms,
 * count) -> collector; key_by -> keyed aggregate (count, SL_AGG_EMIT_FINAL)
 * -> collector; and a sink that records what sl_ctx_end_canceled() says in
 * its end(). Table-driven over threads and window/aggregate parallelism
 * (1 and 3: the END's cancel flag crosses channels, not only chained calls).
 * A second test joins two sources: the canceled input holds its watermark.
 *
 * Canceled after K = 250: the windows [0,100) and [100,200) that the
 * watermark completed are emitted, complete; [200,300) is NOT (the old
 * engine moved the watermark to +inf and fired it with 50 of its 100
 * records); the final aggregate emits nothing; end() is told the end is a
 * cancel; sl_pipeline_canceled() is 1. The same input ending by itself at
 * 250 records emits [200,300) and the final counts, and says not canceled.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sluice/sluice.h"

#define WAIT_MS 300000 /* generous: only a hang exceeds it */

typedef struct rec {
    int64_t key;
    int64_t t;
} rec;

typedef struct script {
    sl_pipeline *p;
    int64_t n;            /* records, then the end of the input */
    int64_t cancel_after; /* cancel after this many records (0: never) */
    int64_t next;
} script;

static int script_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    return 0;
}

static int script_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    script *s = sl_ctx_conf(ctx);
    if (s->next >= s->n) return SL_POLL_END;
    int64_t t = s->next++;
    rec r = {1 + (t & 1), t};
    if (sl_emit_copy(ctx, t, 0, &r, sizeof(r))) return sl_ctx_error(ctx);
    if (sl_ctx_watermark(ctx, t)) return sl_ctx_error(ctx);
    if (s->next == s->cancel_after) sl_pipeline_cancel(s->p);
    return SL_POLL_MORE;
}

static const sl_source script_src = {
    .version = SL_SOURCE_VERSION, .kind = "script", .open = script_open, .poll = script_poll};

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

/* A sink that notes what its end() is told. */
typedef struct end_seen {
    int ends, canceled; /* updated atomically: instances run on any worker */
} end_seen;

static int note_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    return 0;
}
static int note_end(sl_ctx *ctx, void *self)
{
    end_seen *e = sl_ctx_conf(ctx);
    __atomic_fetch_add(&e->ends, 1, __ATOMIC_SEQ_CST);
    if (sl_ctx_end_canceled(ctx)) __atomic_fetch_add(&e->canceled, 1, __ATOMIC_SEQ_CST);
    return 0;
}
static const sl_operator note_op = {
    .version = SL_OPERATOR_VERSION, .kind = "note-end", .process = note_process, .end = note_end};

typedef struct row {
    int threads, par;
    int64_t n, cancel_after;
} row;

static void run_row(const row *r)
{
    script s = {NULL, r->n, r->cancel_after, 0};
    end_seen seen = {0, 0};
    sl_collector *win = sl_collector_new(), *fin = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    s.p = p;
    sl_pipeline_set_threads(p, r->threads);
    sl_pipeline_set_parallelism(p, r->par);
    sl_stream *src = sl_stream_parallelism(
        sl_pipeline_source(p, "script", &script_src, &s, sizeof(rec), NULL), 1);
    sl_stream *k = sl_stream_key_by(src, "key", key_of, NULL);
    sl_window_conf wc = sl_window_tumbling(100, 0);
    wc.agg = &sl_agg_count;
    sl_stream_sink(sl_stream_window(k, "win", &wc), "win-out", &sl_sink_collect, win);
    sl_agg_conf ac = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_FINAL};
    sl_stream_sink(sl_stream_aggregate(k, "final", &ac), "final-out", &sl_sink_collect, fin);
    sl_stream_sink(src, "note", &note_op, &seen);
    int rc = sl_pipeline_start(p);
    if (!rc) rc = sl_pipeline_wait(p, WAIT_MS);
    if (rc == SL_EAGAIN) fail_msg("pipeline did not finish: hang");
    if (rc) fail_msg("run failed: %s", sl_pipeline_errmsg(p));

    const int canceled = r->cancel_after > 0;
    const int64_t last = canceled ? r->cancel_after : r->n; /* records read */
    /* windows: every one emitted is complete: start, count of each key */
    int64_t per_window[16][3] = {{0}};
    for (size_t i = 0; i < sl_collector_count(win); i++) {
        sl_window_result w = sl_window_out(sl_collector_get(win, i, NULL));
        int64_t key, v;
        memcpy(&key, w.key.ptr, 8);
        memcpy(&v, w.result, 8);
        assert_true(w.start % 100 == 0 && w.start / 100 < 16 && key >= 1 && key <= 2);
        assert_int_equal(per_window[w.start / 100][key], 0); /* fired once */
        per_window[w.start / 100][key] = v;
    }
    int64_t complete = last / 100; /* windows the watermark completed */
    for (int64_t wi = 0; wi < 16; wi++) {
        int64_t lo = wi * 100, hi = lo + 100 < last ? lo + 100 : last;
        int64_t want_total = lo >= last ? 0 : hi - lo;
        if (canceled && wi >= complete) want_total = 0; /* not complete: not emitted */
        int64_t got = per_window[wi][1] + per_window[wi][2];
        if (got != want_total)
            fail_msg("threads %d par %d cancel %" PRId64 ": window [%" PRId64 ", %" PRId64
                     ") has %" PRId64 " records, want %" PRId64,
                     r->threads, r->par, r->cancel_after, lo, lo + 100, got, want_total);
    }
    /* final aggregate: none when canceled, else both keys' full counts */
    if (canceled) {
        assert_int_equal(sl_collector_count(fin), 0);
    } else {
        assert_int_equal(sl_collector_count(fin), 2);
        int64_t total = 0;
        for (size_t i = 0; i < 2; i++) {
            int64_t v;
            memcpy(&v, sl_agg_out_result(sl_collector_get(fin, i, NULL)), 8);
            total += v;
        }
        assert_int_equal(total, r->n);
    }
    assert_true(__atomic_load_n(&seen.ends, __ATOMIC_SEQ_CST) >= 1);
    assert_int_equal(__atomic_load_n(&seen.canceled, __ATOMIC_SEQ_CST),
                     canceled ? __atomic_load_n(&seen.ends, __ATOMIC_SEQ_CST) : 0);
    assert_int_equal(sl_pipeline_canceled(p), canceled);
    sl_pipeline_free(p);
    sl_collector_free(win);
    sl_collector_free(fin);
}

static void test_cancel_fires_nothing_incomplete(void **state)
{
    static const row rows[] = {
        {1, 1, 1000, 250}, {2, 1, 1000, 250}, {2, 3, 1000, 250},
        {1, 3, 1000, 250}, {2, 3, 1000, 300}, /* cut exactly at a window's end: [200,300) is complete */
        {1, 1, 250, 0},    {2, 3, 250, 0}, /* the same input, ending by itself */
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) run_row(&rows[i]);
}

/* Two inputs. Source "far" announces watermark 10000 and then has nothing
 * (WAIT) until the cancel stops it; source "near" waits until "far" has
 * announced, replays ts 0..249 and cancels. A two-input pass-through joins
 * them before the window. The canceled "near" input must keep its last
 * watermark (249) in the join's minimum: were it dropped as an input that
 * has ended, "far"'s 10000 would fire [200, 300) with half its records.
 * (Whether "far"'s watermark reaches the join before or after "near"'s
 * end, the old engine fires it: no timing involved.) */
typedef struct two {
    script near;
    int far_announced; /* atomic */
} two;

static int far_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    two *t = sl_ctx_conf(ctx);
    if (__atomic_load_n(&t->far_announced, __ATOMIC_SEQ_CST)) return SL_POLL_WAIT;
    if (sl_ctx_watermark(ctx, 10000)) return sl_ctx_error(ctx);
    __atomic_store_n(&t->far_announced, 1, __ATOMIC_SEQ_CST);
    return SL_POLL_MORE;
}
static int near_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    two *t = sl_ctx_conf(ctx);
    if (!__atomic_load_n(&t->far_announced, __ATOMIC_SEQ_CST)) return SL_POLL_WAIT;
    if (t->near.next >= t->near.n) return SL_POLL_END;
    int64_t ts = t->near.next++;
    rec r = {1, ts};
    if (sl_emit_copy(ctx, ts, 0, &r, sizeof(r))) return sl_ctx_error(ctx);
    if (sl_ctx_watermark(ctx, ts)) return sl_ctx_error(ctx);
    if (t->near.next == t->near.cancel_after) sl_pipeline_cancel(t->near.p);
    return SL_POLL_MORE;
}
static const sl_source far_src = {
    .version = SL_SOURCE_VERSION, .kind = "far", .open = script_open, .poll = far_poll};
static const sl_source near_src = {
    .version = SL_SOURCE_VERSION, .kind = "near", .open = script_open, .poll = near_poll};

static int pass_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    return sl_forward(ctx, in);
}
static const sl_operator pass_op = {
    .version = SL_OPERATOR_VERSION, .kind = "pass", .process = pass_process};

static void test_cancel_holds_watermark_of_other_inputs(void **state)
{
    for (int threads = 1; threads <= 2; threads++) {
        two t = {{NULL, 1000, 250, 0}, 0};
        sl_collector *win = sl_collector_new();
        sl_pipeline *p = sl_pipeline_new();
        t.near.p = p;
        sl_pipeline_set_threads(p, threads);
        sl_pipeline_set_parallelism(p, 1);
        sl_stream *in[2] = {sl_pipeline_source(p, "near", &near_src, &t, sizeof(rec), NULL),
                            sl_pipeline_source(p, "far", &far_src, &t, sizeof(rec), NULL)};
        sl_stream *j = sl_stream_apply_n(in, 2, "join", &pass_op, NULL, sizeof(rec));
        sl_stream *k = sl_stream_key_by(j, "key", key_of, NULL);
        sl_window_conf wc = sl_window_tumbling(100, 0);
        wc.agg = &sl_agg_count;
        sl_stream_sink(sl_stream_window(k, "win", &wc), "out", &sl_sink_collect, win);
        int rc = sl_pipeline_start(p);
        if (!rc) rc = sl_pipeline_wait(p, WAIT_MS);
        if (rc == SL_EAGAIN) fail_msg("pipeline did not finish: hang");
        if (rc) fail_msg("run failed: %s", sl_pipeline_errmsg(p));
        for (size_t i = 0; i < sl_collector_count(win); i++) {
            sl_window_result w = sl_window_out(sl_collector_get(win, i, NULL));
            int64_t v;
            memcpy(&v, w.result, 8);
            if (w.start >= 200 || v != 100)
                fail_msg("threads %d: window [%" PRId64 ", %" PRId64 ") emitted with %" PRId64
                         " records after the cancel",
                         threads, w.start, w.end, v);
        }
        assert_int_equal(sl_collector_count(win), 2);
        assert_int_equal(sl_pipeline_canceled(p), 1);
        sl_pipeline_free(p);
        sl_collector_free(win);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_fires_nothing_incomplete),
        cmocka_unit_test(test_cancel_holds_watermark_of_other_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
