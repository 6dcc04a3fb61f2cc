/*
 * tests/unit/test_watermark_idle.c - per-partition watermarks and idleness
 * (sl_wm_gen) in running pipelines.
 *
 *  - Silent partition: one source instance reads two partitions; partition 1
 *    sends one record and falls silent, partition 0 goes on. Without
 *    idleness the instance's watermark would stay at partition 1's and no
 *    window would fire before the end of input. With a 20 ms idle timeout,
 *    windows fire while the input is still running: the sink sees a result
 *    before the source ends (the source waits for it, up to a bound in
 *    records, not in time).
 *  - Backpressure: two sources feed a union -> window; source B's records
 *    pass a slow operator, so B spends most of its time blocked on credit.
 *    B is never polled-and-empty, so with a 1 ms idle timeout it never turns
 *    idle; the window's watermark waits for B and none of B's records is
 *    late; every record is counted.
 *  - sl_wm_gen on its own: the minimum over partitions, idle exclusion, a
 *    long gap between polls (a blocked source) does not count as silence.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

/* --- silent partition ------------------------------------------------------------------ */

typedef struct silent {
    atomic_int result_seen;
    int result_before_end;
    uint64_t max_records;
} silent;

typedef struct two_parts {
    sl_wm_gen *g;
    uint64_t k;
} two_parts;

static int tp_open(sl_ctx *ctx, void **self)
{
    two_parts *t = calloc(1, sizeof(*t));
    sl_watermark_conf wc = {.delay = 0, .idle_ms = 20};
    t->g = sl_wm_gen_new(&wc, 2);
    *self = t;
    return 0;
}

static void tp_close(void *self)
{
    two_parts *t = self;
    sl_wm_gen_free(t->g);
    free(t);
}

static int tp_poll(sl_ctx *ctx, void *self)
{
    two_parts *t = self;
    silent *s = sl_ctx_conf(ctx);
    if (atomic_load(&s->result_seen)) {
        s->result_before_end = 1;
        return SL_POLL_END;
    }
    if (t->k >= s->max_records) return SL_POLL_END;
    /* partition 0: one record per poll, 1 ms of event time apart */
    rec r = {1, 1};
    int64_t ts = (int64_t)t->k++;
    if (sl_emit_copy(ctx, ts, 0, &r, sizeof(r))) return sl_ctx_error(ctx);
    int rc = sl_wm_gen_record(ctx, t->g, 0, &r, sizeof(r), ts);
    if (!rc) rc = sl_wm_gen_polled(ctx, t->g, 0, 1);
    if (rc) return rc;
    /* partition 1: a record at time 0, then nothing */
    if (t->k == 1) {
        rec r1 = {2, 1};
        if (sl_emit_copy(ctx, 0, 0, &r1, sizeof(r1))) return sl_ctx_error(ctx);
        rc = sl_wm_gen_record(ctx, t->g, 1, &r1, sizeof(r1), 0);
        if (!rc) rc = sl_wm_gen_polled(ctx, t->g, 1, 1);
    } else {
        rc = sl_wm_gen_polled(ctx, t->g, 1, 0);
    }
    return rc ? rc : SL_POLL_MORE;
}

static const sl_source two_parts_src = {.version = SL_SOURCE_VERSION,
                                        .kind = "two-partitions",
                                        .open = tp_open,
                                        .poll = tp_poll,
                                        .close = tp_close};

static int flag_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    silent *s = sl_ctx_conf(ctx);
    if (in->count) atomic_store(&s->result_seen, 1);
    return 0;
}

static const sl_operator flag_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "flag", .process = flag_process};

static void test_silent_partition_goes_idle(void **state)
{
    silent s;
    atomic_init(&s.result_seen, 0);
    s.result_before_end = 0;
    s.max_records = 200000000; /* a bound in records; the test ends long before */
    sl_window_conf wc = sl_window_tumbling(100, 0);
    wc.agg = &sl_agg_count;
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_stream *src = sl_pipeline_source(p, "parts", &two_parts_src, &s, sizeof(rec));
    sl_stream *w = sl_stream_window(sl_stream_key_by(src, "key", key_of, NULL), "win", &wc);
    sl_stream_sink(w, "flag", &flag_sink, &s);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p);
    assert_true(s.result_before_end);
}

/* --- backpressure ------------------------------------------------------------------------ */

typedef struct bp {
    uint64_t batches; /* per source */
    atomic_int b_went_idle;
} bp;

typedef struct bpsrc {
    sl_wm_gen *g;
    uint64_t k;
    int is_b;
} bpsrc;

static int bp_open(sl_ctx *ctx, void **self)
{
    bpsrc *s = calloc(1, sizeof(*s));
    sl_watermark_conf wc = {.delay = 0, .idle_ms = 1};
    s->g = sl_wm_gen_new(&wc, 1);
    s->is_b = strcmp(sl_ctx_name(ctx), "B") == 0;
    *self = s;
    return 0;
}

static void bp_close(void *self)
{
    bpsrc *s = self;
    sl_wm_gen_free(s->g);
    free(s);
}

static int bp_poll(sl_ctx *ctx, void *self)
{
    bpsrc *s = self;
    bp *c = sl_ctx_conf(ctx);
    if (s->k >= c->batches * 256) return SL_POLL_END;
    sl_batch *b = sl_out_batch(ctx, 0);
    if (!b) return sl_ctx_error(ctx);
    uint32_t from = b->count;
    for (int j = 0; j < 256 && b->count < SL_BATCH_CAPACITY; j++) {
        rec r = {s->is_b ? 2 : 1, 1};
        int64_t ts = (int64_t)(s->k++);
        if (sl_batch_push(b, ts, 0, &r, sizeof(r))) return SL_ENOMEM;
    }
    int rc = sl_wm_gen_batch(ctx, s->g, 0, b, from, b->count);
    if (!rc) rc = sl_wm_gen_polled(ctx, s->g, 0, b->count > from);
    if (s->is_b && sl_wm_gen_is_idle(s->g, 0)) atomic_store(&c->b_went_idle, 1);
    return rc ? rc : SL_POLL_MORE;
}

static const sl_source bp_src = {.version = SL_SOURCE_VERSION,
                                 .kind = "bp",
                                 .open = bp_open,
                                 .poll = bp_poll,
                                 .close = bp_close};

static int slow_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    struct timespec d = {0, 2 * 1000 * 1000};
    nanosleep(&d, NULL);
    return sl_forward(ctx, in);
}

static const sl_operator slow_op = {
    .version = SL_OPERATOR_VERSION, .kind = "slow", .process = slow_process};

static int union_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    return sl_forward(ctx, in);
}

static const sl_operator union_op = {
    .version = SL_OPERATOR_VERSION, .kind = "union", .process = union_process};

static void test_backpressure_is_not_idleness(void **state)
{
    bp c;
    c.batches = 120;
    atomic_init(&c.b_went_idle, 0);
    sl_window_conf wc = sl_window_tumbling(1000, 0);
    wc.agg = &sl_agg_count;
    sl_collector *res = sl_collector_new(), *late = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_credits(p, 1);
    sl_stream *a = sl_pipeline_source(p, "A", &bp_src, &c, sizeof(rec));
    sl_stream *b = sl_pipeline_source(p, "B", &bp_src, &c, sizeof(rec));
    b = sl_stream_rebalance(b);
    b = sl_stream_rebalance(sl_stream_apply(b, "slow", &slow_op, NULL, sizeof(rec)));
    a = sl_stream_rebalance(a);
    sl_stream *in[2] = {a, b};
    sl_stream *u = sl_stream_apply_n(in, 2, "union", &union_op, NULL, sizeof(rec));
    sl_stream *w = sl_stream_window(sl_stream_key_by(u, "key", key_of, NULL), "win", &wc);
    sl_stream_sink(sl_stream_window_late(w), "late", &sl_sink_collect, late);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&c.b_went_idle), 0);
    assert_int_equal(sl_collector_count(late), 0);
    int64_t total = 0;
    for (size_t i = 0; i < sl_collector_count(res); i++) {
        sl_window_result r = sl_window_out(sl_collector_get(res, i, NULL));
        int64_t n;
        memcpy(&n, r.result, 8);
        total += n;
    }
    assert_int_equal(total, (int64_t)(2 * c.batches * 256));
    sl_pipeline_free(p);
    sl_collector_free(res);
    sl_collector_free(late);
}

/* --- sl_wm_gen alone ---------------------------------------------------------------------- */

typedef struct wm_probe {
    int64_t wms[16];
    int n;
    int idle;
} wm_probe;

static int unit_poll(sl_ctx *ctx, void *self)
{
    wm_probe *pr = sl_ctx_conf(ctx);
    sl_watermark_conf wc = {.delay = 5, .punctuated = 1};
    sl_wm_gen *g = sl_wm_gen_new(&wc, 3);
    rec r = {1, 1};
    /* partition 2 never sends: the minimum stays at SL_TIME_MIN */
    assert_int_equal(sl_wm_gen_record(ctx, g, 0, &r, sizeof(r), 100), 0);
    assert_int_equal(sl_wm_gen_record(ctx, g, 1, &r, sizeof(r), 50), 0);
    pr->wms[pr->n++] = sl_wm_gen_watermark(g);
    sl_wm_gen_free(g);
    /* two partitions, both sending: min(100, 50) - 5 - 1 */
    g = sl_wm_gen_new(&wc, 2);
    sl_wm_gen_record(ctx, g, 0, &r, sizeof(r), 100);
    sl_wm_gen_record(ctx, g, 1, &r, sizeof(r), 50);
    pr->wms[pr->n++] = sl_wm_gen_watermark(g);
    sl_wm_gen_record(ctx, g, 1, &r, sizeof(r), 40); /* older: no change */
    pr->wms[pr->n++] = sl_wm_gen_watermark(g);
    sl_wm_gen_free(g);
    /* idleness: a partition polled empty for idle_ms turns idle */
    sl_watermark_conf wi = {.delay = 0, .idle_ms = 30};
    g = sl_wm_gen_new(&wi, 2);
    sl_wm_gen_record(ctx, g, 0, &r, sizeof(r), 1000);
    sl_wm_gen_polled(ctx, g, 0, 1);
    sl_wm_gen_record(ctx, g, 1, &r, sizeof(r), 10);
    sl_wm_gen_polled(ctx, g, 1, 1);
    pr->wms[pr->n++] = sl_wm_gen_watermark(g); /* 9 */
    struct timespec d = {0, 5 * 1000 * 1000};
    /* polled every 5 ms without data: idle after ~30 ms */
    for (int i = 0; i < 200 && !sl_wm_gen_is_idle(g, 1); i++) {
        nanosleep(&d, NULL);
        sl_wm_gen_polled(ctx, g, 1, 0);
    }
    pr->idle = sl_wm_gen_is_idle(g, 1);
    pr->wms[pr->n++] = sl_wm_gen_watermark(g); /* 999 */
    sl_wm_gen_free(g);
    /* a gap longer than idle_ms between polls (blocked) restarts the count */
    g = sl_wm_gen_new(&wi, 1);
    sl_wm_gen_record(ctx, g, 0, &r, sizeof(r), 10);
    sl_wm_gen_polled(ctx, g, 0, 1);
    struct timespec gap = {0, 80 * 1000 * 1000};
    nanosleep(&gap, NULL);
    sl_wm_gen_polled(ctx, g, 0, 0);
    pr->idle |= sl_wm_gen_is_idle(g, 0) << 1; /* must stay 0 */
    sl_wm_gen_free(g);
    return SL_POLL_END;
}

static const sl_source unit_src = {.version = SL_SOURCE_VERSION, .kind = "unit", .poll = unit_poll};

static int nop_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    return 0;
}
static const sl_operator nop_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "nop", .process = nop_process};

static void test_wm_gen_rules(void **state)
{
    wm_probe pr;
    memset(&pr, 0, sizeof(pr));
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_stream_sink(sl_pipeline_source(p, "unit", &unit_src, &pr, sizeof(rec)), "nop", &nop_sink,
                   NULL);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p);
    assert_int_equal(pr.n, 5);
    assert_true(pr.wms[0] == SL_TIME_MIN);
    assert_int_equal(pr.wms[1], 44);
    assert_int_equal(pr.wms[2], 44);
    assert_int_equal(pr.wms[3], 9);
    assert_int_equal(pr.idle, 1);
    assert_int_equal(pr.wms[4], 999);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wm_gen_rules),
        cmocka_unit_test(test_silent_partition_goes_idle),
        cmocka_unit_test(test_backpressure_is_not_idleness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
