/*
 * test_trace_point.c - trace points (sl_stream_trace, sluice/trace.h): a
 * span per sampled record from the point to where the record leaves the
 * chain.
 *
 * The chain: generator (event time seq / 4: the first records at 0) -> an
 * operator that gives every fifth record a remote context (sampled for
 * every tenth, unsampled for the others) -> trace point "in" -> filter
 * "drop3" (drops seq % 3 == 0) -> key_by -> trace point "keyed" -> sink
 * "out", which keeps each record's context. With a tracer at ratio 1, over
 * source parallelism 1..2, downstream parallelism 1..2 and one credit or
 * the default:
 *  - a record is sampled unless its remote context says not (parent-based);
 *    an unsampled one reaches the sink with its remote context unchanged
 *    and has no span;
 *  - a sampled record has an "in" span (root, or the child of its remote
 *    span, in its trace) and, if the filter kept it, a "keyed" span, the
 *    child of its "in" span; it reaches the sink carrying the "keyed"
 *    span's context;
 *  - "in" spans end at "drop3" (dropped) or "keyed", "keyed" spans at "out";
 *    the keyed ones carry the key hash; none is "unseen"; no span dropped;
 *  - ids are non-zero, every span ends at or after its start.
 * Then where else spans end: at an aggregate (it does not hand its batch
 * on), and, for records an operator lost without saying so, as "unseen" at
 * the end. A window's result is a span linked to its sampled contributors,
 * and the result carries its context; late records keep theirs; both with
 * event times from 0, and from near either end of int64. Without a tracer no batch at the sink
 * has a trace column; a bad conf is refused with a message. No assertion
 * on time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <cmocka.h>

#include "sluice/sluice.h"

#define N 3000 /* records: at most 2 spans each, below the tracer's queue */

typedef struct rec {
    uint64_t seq;
    uint64_t key;
} rec;

/* --- spans, as exported ------------------------------------------------------ */

typedef struct got {
    char name[SL_SPAN_NAME_MAX];
    char end[SL_SPAN_STR_MAX];
    uint8_t trace[16], id[8], parent[8];
    int64_t start, stop;
    int has_key;
    int n_links;
    uint32_t dropped_links;
    sl_trace_ctx links[SL_SPAN_LINKS_MAX];
    int64_t contributors, wstart, wend;
    int has_queue;
    int64_t queue;  /* sluice.queue_ns */
    char state[64]; /* its tracestate (OTLP traceState), state_len bytes */
    size_t state_len;
} got;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static got *spans;
static size_t n_spans;

static int collect(void *ud, const sl_trace_batch *b)
{
    (void)ud;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < b->n; i++) {
        const sl_span *x = &b->spans[i];
        got *g = &spans[n_spans++];
        memset(g, 0, sizeof(*g));
        snprintf(g->name, sizeof(g->name), "%s", x->name);
        memcpy(g->trace, x->trace_id, 16);
        memcpy(g->id, x->span_id, 8);
        memcpy(g->parent, x->parent_span_id, 8);
        g->start = x->start_ns;
        g->stop = x->end_ns;
        g->n_links = x->n_links;
        g->dropped_links = x->dropped_links;
        memcpy(g->links, x->links, sizeof(g->links));
        g->state_len = x->state_len < sizeof(g->state) ? x->state_len : sizeof(g->state);
        memcpy(g->state, x->state, g->state_len);
        for (int k = 0; k < x->n_attrs; k++) {
            if (!strcmp(x->attrs[k].key, "sluice.end"))
                snprintf(g->end, sizeof(g->end), "%s", x->attrs[k].v.s);
            if (!strcmp(x->attrs[k].key, "sluice.key_hash")) g->has_key = 1;
            if (!strcmp(x->attrs[k].key, "sluice.queue_ns")) {
                g->has_queue = 1;
                g->queue = x->attrs[k].v.i;
            }
            if (!strcmp(x->attrs[k].key, "sluice.contributors")) g->contributors = x->attrs[k].v.i;
            if (!strcmp(x->attrs[k].key, "sluice.window.start")) g->wstart = x->attrs[k].v.i;
            if (!strcmp(x->attrs[k].key, "sluice.window.end")) g->wend = x->attrs[k].v.i;
        }
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

static sl_tracer *tracer(void)
{
    n_spans = 0;
    sl_trace_exporter ex = {
        .version = SL_TRACE_EXPORTER_VERSION, .kind = "test", .export = collect};
    sl_tracer_conf tc = {.service_name = "test", .sample_ratio = 1.0, .queue_capacity = 8192};
    sl_tracer *t = NULL;
    assert_int_equal(sl_tracer_new(&tc, &ex, &t, NULL, 0), 0);
    return t;
}

static const got *find(const uint8_t id[8])
{
    for (size_t i = 0; i < n_spans; i++)
        if (!memcmp(spans[i].id, id, 8)) return &spans[i];
    return NULL;
}

/* --- the pipeline ------------------------------------------------------------ */

/* Event time 0 of the window tests: 0, or near either end of int64 (a
 * multiple of 300, so the windows fall as they do from 0). */
static int64_t ts_base;
#define TS_NEAR_MAX INT64_C(9223372036854765600)
#define TS_NEAR_MIN INT64_C(-9223372036854765600)

static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    rec *r = out;
    r->seq = seq;
    r->key = seq % 7;
    *ts = ts_base + (int64_t)(seq / 4);
    return 0;
}

/* The tracestate of remote trace seq (seq % 20 == 0), in buf. */
static size_t remote_state(uint64_t seq, char *buf, size_t n)
{
    return (size_t)snprintf(buf, n, "rojo=%llu,congo=t61rcWkgMzE", (unsigned long long)seq);
}

/* The remote context of record seq (seq % 5 == 0): sampled iff seq % 10 == 0,
 * with a tracestate iff seq % 20 == 0 (good until the next call on the
 * thread: sl_batch_set_trace copies it). */
static sl_trace_ctx remote(uint64_t seq)
{
    static _Thread_local char state[64];
    sl_trace_ctx c = {.flags = seq % 10 == 0 ? SL_TRACE_FLAG_SAMPLED : 0};
    memcpy(c.trace_id, "remote-trace-id!", 16);
    memcpy(c.trace_id + 8, &seq, 8);
    c.trace_id[0] = 0x5a;
    memcpy(c.span_id, &seq, 8);
    c.span_id[7] = 0xee;
    if (seq % 20 == 0) {
        c.state_len = (uint16_t)remote_state(seq, state, sizeof state);
        c.state = state;
    }
    return c;
}

/* Span g's trace is remote trace seq (*seq set), or local (0). */
static int remote_seq(const got *g, uint64_t *seq)
{
    if (g->trace[0] != 0x5a || memcmp(g->trace + 1, "emote-t", 7)) return 0;
    memcpy(seq, g->trace + 8, 8);
    return 1;
}

static int ctx_process(sl_ctx *ctx, void *self, sl_batch *b)
{
    (void)self;
    for (uint32_t i = 0; i < b->count; i++) {
        const rec *r = sl_batch_at(b, i);
        if (r->seq % 5) continue;
        sl_trace_ctx c = remote(r->seq);
        if (sl_batch_set_trace(b, i, &c)) return sl_ctx_fail(ctx, SL_ENOMEM, "trace column");
    }
    return sl_forward(ctx, b);
}

static const sl_operator ctx_op = {
    .version = SL_OPERATOR_VERSION, .kind = "ctx", .process = ctx_process};

static int keep(const void *p, uint32_t len, int64_t ts, void *ud)
{
    (void)len, (void)ts, (void)ud;
    return ((const rec *)p)->seq % 3 != 0;
}

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    (void)len, (void)ud;
    sl_bytes b = {&((const rec *)p)->key, 8};
    return b;
}

/* What the sink saw: record seq's context (valid 0: none). */
typedef struct seen {
    int n;
    int valid;
    sl_trace_ctx c;
} seen;
static seen out[N];
static int traced_batches;

static int out_process(sl_ctx *ctx, void *self, sl_batch *b)
{
    (void)ctx, (void)self;
    pthread_mutex_lock(&lock);
    if (b->trace) traced_batches++;
    for (uint32_t i = 0; i < b->count; i++) {
        const rec *r = sl_batch_at(b, i);
        seen *s = &out[r->seq];
        s->n++;
        const sl_trace_ctx *c = sl_batch_trace(b, i);
        s->valid = c != NULL;
        if (c) s->c = *c;
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

static const sl_operator out_op = {
    .version = SL_OPERATOR_VERSION, .kind = "out", .process = out_process};

static void run_chain(int par_src, int par, int credits, sl_tracer *t)
{
    memset(out, 0, sizeof(out));
    traced_batches = 0;
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    if (credits) sl_pipeline_set_credits(p, credits);
    sl_generator_conf gc = {.fn = gen, .count = N};
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), NULL);
    s = sl_stream_parallelism(s, par_src);
    s = sl_stream_apply(s, "ctx", &ctx_op, NULL, sizeof(rec));
    s = sl_stream_trace(s, "in", NULL);
    s = sl_stream_filter(s, "drop3", keep, NULL);
    s = sl_stream_key_by(s, "key", key_of, NULL);
    s = sl_stream_parallelism(sl_stream_trace(s, "keyed", NULL), par);
    sl_stream_sink(s, "out", &out_op, NULL);
    if (t) assert_int_equal(sl_pipeline_set_tracer(p, t), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p); /* frees the tracer: every span exported */
}

static void test_chain(void **state)
{
    (void)state;
    static const uint8_t zero[8];
    for (int par_src = 1; par_src <= 2; par_src++)
        for (int par = 1; par <= 2; par++)
            for (int credits = 0; credits <= 1; credits++) {
                run_chain(par_src, par, credits, tracer());
                size_t want_in = 0, want_keyed = 0, in_drop = 0, in_keyed = 0, keyed_out = 0;
                for (uint64_t seq = 0; seq < N; seq++) {
                    int sampled = seq % 5 != 0 || seq % 10 == 0, kept = seq % 3 != 0;
                    want_in += sampled;
                    want_keyed += sampled && kept;
                    const seen *s = &out[seq];
                    assert_int_equal(s->n, kept);
                    if (!kept) continue;
                    if (!sampled) { /* the remote context, unchanged, and no span */
                        sl_trace_ctx r = remote(seq);
                        assert_true(s->valid);
                        assert_memory_equal(&s->c, &r, sizeof r); /* no state: % 20 is sampled */
                        continue;
                    }
                    assert_true(s->valid);
                    assert_true(s->c.flags & SL_TRACE_FLAG_SAMPLED);
                    const got *k = find(s->c.span_id), *in = k ? find(k->parent) : NULL;
                    assert_non_null(k);
                    assert_string_equal(k->name, "keyed");
                    assert_non_null(in);
                    assert_string_equal(in->name, "in");
                    assert_memory_equal(k->trace, s->c.trace_id, 16);
                    assert_memory_equal(in->trace, s->c.trace_id, 16);
                    if (seq % 10 == 0) { /* the remote span's child, in its trace */
                        sl_trace_ctx r = remote(seq);
                        assert_memory_equal(in->parent, r.span_id, 8);
                        assert_memory_equal(in->trace, r.trace_id, 16);
                    } else {
                        assert_memory_equal(in->parent, zero, 8);
                    }
                }
                size_t with_state = 0;
                for (size_t i = 0; i < n_spans; i++) {
                    const got *g = &spans[i];
                    assert_memory_not_equal(g->id, zero, 8);
                    /* a remote trace's tracestate, on both its points' spans,
                     * however they ended (kept or dropped, in or across a
                     * chain); none on local traces */
                    uint64_t rs;
                    if (remote_seq(g, &rs) && rs % 20 == 0) {
                        char want[64];
                        size_t wl = remote_state(rs, want, sizeof want);
                        assert_int_equal(g->state_len, wl);
                        assert_memory_equal(g->state, want, wl);
                        with_state++;
                    } else {
                        assert_int_equal(g->state_len, 0);
                    }
                    assert_true(g->stop >= g->start);
                    assert_string_not_equal(g->end, "unseen");
                    assert_true(g->has_queue);
                    assert_true(g->queue >= 0 && g->queue <= g->stop - g->start);
                    if (!strcmp(g->end, "drop3")) assert_int_equal(g->queue, 0); /* its chain */
                    if (!strcmp(g->name, "in")) {
                        in_drop += !strcmp(g->end, "drop3");
                        in_keyed += !strcmp(g->end, "keyed");
                    } else {
                        assert_string_equal(g->name, "keyed");
                        assert_string_equal(g->end, "out");
                        assert_true(g->has_key);
                        keyed_out++;
                    }
                }
                assert_int_equal(with_state, N / 20 + (N / 20) * 2 / 3); /* "in", "keyed" */
                assert_int_equal(in_drop + in_keyed, want_in);
                assert_int_equal(in_keyed, want_keyed);
                assert_int_equal(keyed_out, want_keyed);
                assert_int_equal(n_spans, want_in + want_keyed);
            }
}

/* Without a tracer the points only hand batches on: no record gets a
 * context, so (no remote contexts either) no batch has a trace column. */
static void test_no_tracer(void **state)
{
    (void)state;
    memset(out, 0, sizeof(out));
    traced_batches = 0;
    sl_pipeline *p = sl_pipeline_new();
    sl_generator_conf gc = {.fn = gen, .count = N};
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), NULL);
    s = sl_stream_trace(s, "in", NULL);
    sl_stream_sink(s, "out", &out_op, NULL);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p);
    assert_int_equal(traced_batches, 0);
    for (uint64_t seq = 0; seq < N; seq++) assert_int_equal(out[seq].n, 1);
}

static int null_process(sl_ctx *ctx, void *self, sl_batch *b)
{
    (void)ctx, (void)self, (void)b;
    return 0;
}

static const sl_operator null_op = {
    .version = SL_OPERATOR_VERSION, .kind = "null", .process = null_process};

/* An operator that loses its records without saying so. */
static int lose_process(sl_ctx *ctx, void *self, sl_batch *b)
{
    (void)self;
    sl_batch_truncate(b, 0);
    return sl_forward(ctx, b);
}

static const sl_operator lose_op = {
    .version = SL_OPERATOR_VERSION, .kind = "lose", .process = lose_process};

/* Spans end at an aggregate (it keeps its input) with the key hash; those
 * of records lost silently end as "unseen", at their start, when the
 * pipeline is freed. A point's own ratio below 0 starts no trace. */
static void test_other_ends(void **state)
{
    (void)state;
    sl_tracer *t = tracer();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_credits(p, 1);
    sl_generator_conf gc = {.fn = gen, .count = N};
    sl_agg_conf count = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_FINAL};
    sl_stream *g = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), NULL);
    sl_stream *s = sl_stream_trace(g, "to-agg", NULL);
    s = sl_stream_aggregate(sl_stream_key_by(s, "key", key_of, NULL), "count", &count);
    sl_stream_sink(s, "counts", &null_op, NULL);
    s = sl_stream_apply(sl_stream_trace(g, "to-lose", NULL), "lose", &lose_op, NULL, sizeof(rec));
    sl_stream_sink(s, "nothing", &null_op, NULL);
    sl_trace_point_conf none = {.sample_ratio = -1};
    sl_stream_sink(sl_stream_trace(g, "never", &none), "never-out", &null_op, NULL);
    assert_int_equal(sl_pipeline_set_tracer(p, t), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p);
    size_t agg = 0, lost = 0;
    for (size_t i = 0; i < n_spans; i++) {
        const got *x = &spans[i];
        assert_string_not_equal(x->name, "never");
        if (!strcmp(x->name, "to-agg")) {
            assert_string_equal(x->end, "count");
            assert_true(x->has_key);
            agg++;
        } else {
            assert_string_equal(x->name, "to-lose");
            assert_string_equal(x->end, "unseen");
            assert_true(x->stop == x->start);
            lost++;
        }
    }
    assert_int_equal(agg, N);
    assert_int_equal(lost, N);
}

/* A point instance keeps REGION_CAP (16,384) spans open: the older ones of
 * records that never come back are ended as "unseen" by the instance when it
 * needs their slot, the rest when the pipeline is freed. Two instances, each
 * wrapping its region more than twice: every span comes out exactly once,
 * with an id of its own, at its start, and none is dropped (the tracer's
 * queue holds them all). */
#define M_EVICT 80000
static uint64_t evict_ids[M_EVICT + 64];
static size_t n_evict, n_evict_bad;

static int collect_evicted(void *ud, const sl_trace_batch *b)
{
    (void)ud;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < b->n; i++) {
        const sl_span *x = &b->spans[i];
        int unseen = 0;
        for (int k = 0; k < x->n_attrs; k++)
            if (!strcmp(x->attrs[k].key, "sluice.end") && !strcmp(x->attrs[k].v.s, "unseen"))
                unseen = 1;
        if (!unseen || x->end_ns != x->start_ns || strcmp(x->name, "to-lose") ||
            n_evict >= M_EVICT + 64)
            n_evict_bad++;
        else
            memcpy(&evict_ids[n_evict++], x->span_id, 8);
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_evicted(void **state)
{
    (void)state;
    n_evict = n_evict_bad = 0;
    sl_trace_exporter ex = {
        .version = SL_TRACE_EXPORTER_VERSION, .kind = "test", .export = collect_evicted};
    sl_tracer_conf tc = {.service_name = "test", .sample_ratio = 1.0, .queue_capacity = 1u << 17};
    sl_tracer *t = NULL;
    assert_int_equal(sl_tracer_new(&tc, &ex, &t, NULL, 0), 0);
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_credits(p, 1);
    sl_pipeline_set_parallelism(p, 2);
    sl_generator_conf gc = {.fn = gen, .count = M_EVICT};
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), NULL);
    s = sl_stream_apply(sl_stream_trace(s, "to-lose", NULL), "lose", &lose_op, NULL, sizeof(rec));
    sl_stream_sink(s, "nothing", &null_op, NULL);
    assert_int_equal(sl_pipeline_set_tracer(p, t), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p); /* and the tracer: every span queued is exported */
    assert_int_equal(n_evict_bad, 0);
    assert_int_equal(n_evict, M_EVICT);
    qsort(evict_ids, n_evict, sizeof(uint64_t), cmp_u64);
    for (size_t i = 0; i < n_evict; i++) {
        assert_true(evict_ids[i] != 0);
        if (i) assert_true(evict_ids[i] != evict_ids[i - 1]);
    }
}

/* The tracer's queue of trace points' spans holds 8192 of them by default
 * (queue_capacity 0), queue_capacity when it is set. The exporter blocks
 * until the pipeline has run, so the export thread holds at most one batch
 * (512) and the queue the rest: of M_QUEUE spans, between M_QUEUE - cap -
 * 512 and M_QUEUE - cap are dropped, and counted. */
#define M_QUEUE 12000
static pthread_mutex_t gate_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;

static int blocked_export(void *ud, const sl_trace_batch *b)
{
    (void)ud, (void)b;
    pthread_mutex_lock(&gate_m);
    while (!gate_open) pthread_cond_wait(&gate_cv, &gate_m);
    pthread_mutex_unlock(&gate_m);
    return 0;
}

static void queue_holds(uint32_t conf_cap, uint64_t cap)
{
    gate_open = 0;
    sl_trace_exporter ex = {
        .version = SL_TRACE_EXPORTER_VERSION, .kind = "test", .export = blocked_export};
    sl_tracer_conf tc = {.service_name = "test", .sample_ratio = 1.0, .queue_capacity = conf_cap};
    sl_tracer *t = NULL;
    assert_int_equal(sl_tracer_new(&tc, &ex, &t, NULL, 0), 0);
    sl_pipeline *p = sl_pipeline_new();
    sl_generator_conf gc = {.fn = gen, .count = M_QUEUE};
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), NULL);
    sl_stream_sink(sl_stream_trace(s, "in", NULL), "out", &null_op, NULL);
    assert_int_equal(sl_pipeline_set_tracer(p, t), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_tracer_stats st;
    sl_tracer_stats_get(t, &st);
    pthread_mutex_lock(&gate_m);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_m);
    sl_pipeline_free(p);
    assert_int_equal(st.sampled, M_QUEUE);
    assert_true(st.dropped_full <= M_QUEUE - cap);
    assert_true(st.dropped_full >= M_QUEUE - cap - 512);
}

static void test_queue_default(void **state)
{
    (void)state;
    queue_holds(0, 8192);
    queue_holds(2048, 2048);
    queue_holds(3000, 4096); /* rounded up to a power of 2 */
}

/* A window's result is a span: the child of its first sampled contributor,
 * linked to SL_SPAN_LINKS_MAX of them (or all, if fewer), counting them
 * all, and the result record carries its context. Tumbling windows of
 * 100 ms over 7 keys (event time seq / 4: about 57 records per key and
 * window, the first at 0), one credit; every record sampled at "in", whose
 * spans end at the window. */
typedef struct wres {
    int64_t start, end, count;
    uint64_t key;
    int valid;
    sl_trace_ctx c;
} wres;
static wres wout[N];
static size_t n_wout;

static int wout_process(sl_ctx *ctx, void *self, sl_batch *b)
{
    (void)ctx, (void)self;
    pthread_mutex_lock(&lock);
    for (uint32_t i = 0; i < b->count && n_wout < N; i++) {
        sl_window_result r = sl_window_out(sl_batch_bytes(b, i));
        wres *x = &wout[n_wout++];
        x->start = r.start;
        x->end = r.end;
        memcpy(&x->key, r.key.ptr, 8);
        memcpy(&x->count, r.result, 8);
        const sl_trace_ctx *c = sl_batch_trace(b, i);
        x->valid = c != NULL;
        if (c) x->c = *c;
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

static const sl_operator wout_op = {
    .version = SL_OPERATOR_VERSION, .kind = "wout", .process = wout_process};

static void window_links(sl_window_conf wc, size_t results)
{
    n_wout = 0;
    sl_tracer *t = tracer();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_credits(p, 1);
    sl_generator_conf gc = {.fn = gen, .count = N};
    sl_watermark_conf wm = {.delay = 0};
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), &wm);
    s = sl_stream_key_by(sl_stream_trace(s, "in", NULL), "key", key_of, NULL);
    wc.agg = &sl_agg_count;
    sl_stream_sink(sl_stream_window(s, "win", &wc), "wout", &wout_op, NULL);
    assert_int_equal(sl_pipeline_set_tracer(p, t), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p);
    assert_int_equal(n_wout, results);
    size_t in_spans = 0;
    for (size_t i = 0; i < n_spans; i++)
        if (!strcmp(spans[i].name, "in")) {
            assert_string_equal(spans[i].end, "win");
            in_spans++;
        }
    assert_int_equal(in_spans, N);
    for (size_t r = 0; r < n_wout; r++) {
        const wres *x = &wout[r];
        assert_true(x->valid);
        const got *w = find(x->c.span_id), *parent = w ? find(w->parent) : NULL;
        assert_non_null(w);
        assert_string_equal(w->name, "win");
        assert_int_equal(w->wstart, x->start);
        assert_int_equal(w->wend, x->end);
        assert_true(x->start >= ts_base - 100 && x->end <= ts_base + N / 4 + 100);
        assert_non_null(parent);
        assert_string_equal(parent->name, "in");
        assert_memory_equal(w->trace, parent->trace, 16);
        /* every record was sampled: the window's count of them */
        assert_int_equal(w->contributors, x->count);
        assert_int_equal(w->n_links, x->count < SL_SPAN_LINKS_MAX ? x->count : SL_SPAN_LINKS_MAX);
        for (int k = 0; k < w->n_links; k++) {
            const got *l = find(w->links[k].span_id);
            assert_non_null(l);
            assert_string_equal(l->name, "in");
            assert_memory_equal(l->trace, w->links[k].trace_id, 16);
        }
        assert_true(w->stop >= w->start);
    }
}

/* Queueing delay, and a filter after a shuffle: point "in" -> key_by ->
 * filter "drop3" (keyed: its dropped records' spans end there with the key
 * hash) -> a sink that sleeps 1 ms per batch, behind one credit. Spans
 * that end at the filter, in the chain of the shuffle's consumer, waited in
 * that channel; those that end at the sink too, and batches queue behind
 * the slow sink, so some span's sluice.queue_ns is above 0; none is above
 * its span's duration. */
static int slow_process(sl_ctx *ctx, void *self, sl_batch *b)
{
    (void)ctx, (void)self, (void)b;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    return 0;
}

static const sl_operator slow_op = {
    .version = SL_OPERATOR_VERSION, .kind = "slow", .process = slow_process};

static void test_queue_delay(void **state)
{
    (void)state;
    sl_tracer *t = tracer();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_credits(p, 1);
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1}; /* small batches */
    sl_generator_conf gc = {.fn = gen, .count = N};
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), &wm);
    s = sl_stream_key_by(sl_stream_trace(s, "in", NULL), "key", key_of, NULL);
    s = sl_stream_filter(s, "drop3", keep, NULL);
    sl_stream_sink(s, "slow", &slow_op, NULL);
    assert_int_equal(sl_pipeline_set_tracer(p, t), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p);
    assert_int_equal(n_spans, N);
    size_t dropped = 0, waited = 0;
    for (size_t i = 0; i < n_spans; i++) {
        const got *g = &spans[i];
        assert_string_equal(g->name, "in");
        assert_true(g->has_key);
        assert_true(g->has_queue);
        assert_true(g->queue >= 0 && g->queue <= g->stop - g->start);
        waited += g->queue > 0;
        if (!strcmp(g->end, "drop3"))
            dropped++;
        else
            assert_string_equal(g->end, "slow");
    }
    assert_int_equal(dropped, N / 3);
    assert_true(waited > 0);
}

/* Tumbling windows of 100 ms, sliding ones of 100 ms every 30 ms (slices
 * of 10 ms: a window covers 10 buckets), sessions with a gap of 5 ms (a
 * key's records are 1.75 ms apart: one session per key, over 150 buckets).
 * N / 4 = 750 ms of event time. */
static void test_window_links(void **state)
{
    (void)state;
    const int64_t bases[] = {0, TS_NEAR_MIN, TS_NEAR_MAX};
    for (size_t k = 0; k < sizeof(bases) / sizeof(bases[0]); k++) {
        ts_base = bases[k];
        window_links(sl_window_tumbling(100, 0), 7 * 8);
        window_links(sl_window_sliding(100, 30), 7 * 28);
        window_links(sl_window_session(5), 7);
    }
    ts_base = 0;
}

/* Late records keep their context: records whose event time is 0 after the
 * watermark passed the first window (every 50th from 2000 on) go to the
 * late port carrying their "in" span's context. */
static int gen_late(void *dst, uint64_t seq, int64_t *ts, void *ud)
{
    gen(dst, seq, ts, ud);
    if (seq >= 2000 && seq % 50 == 0) *ts = ts_base;
    return 0;
}

static void window_late(void)
{
    memset(out, 0, sizeof(out));
    sl_tracer *t = tracer();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_credits(p, 1);
    sl_generator_conf gc = {.fn = gen_late, .count = N};
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1};
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), &wm);
    s = sl_stream_key_by(sl_stream_trace(s, "in", NULL), "key", key_of, NULL);
    sl_window_conf wc = sl_window_tumbling(100, 0);
    wc.agg = &sl_agg_count;
    sl_stream *win = sl_stream_window(s, "win", &wc);
    sl_stream_sink(win, "results", &null_op, NULL);
    sl_stream_sink(sl_stream_window_late(win), "late", &out_op, NULL);
    assert_int_equal(sl_pipeline_set_tracer(p, t), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p);
    int late = 0;
    for (uint64_t seq = 0; seq < N; seq++) {
        if (!out[seq].n) continue;
        assert_true(seq >= 2000 && seq % 50 == 0);
        assert_true(out[seq].valid);
        const got *g = find(out[seq].c.span_id);
        assert_non_null(g);
        assert_string_equal(g->name, "in");
        assert_string_equal(g->end, "win");
        late++;
    }
    assert_int_equal(late, (N - 2000) / 50);
}

/* Late records at event time 0, and at times near either end of int64. */
static void test_window_late(void **state)
{
    (void)state;
    const int64_t bases[] = {0, TS_NEAR_MIN, TS_NEAR_MAX};
    for (size_t k = 0; k < sizeof(bases) / sizeof(bases[0]); k++) {
        ts_base = bases[k];
        window_late();
    }
    ts_base = 0;
}

static void test_bad_conf(void **state)
{
    (void)state;
    const sl_trace_point_conf bad[] = {{.sample_ratio = 1.5}, {.kind = 9}, {.kind = -1}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sl_pipeline *p = sl_pipeline_new();
        sl_generator_conf gc = {.fn = gen, .count = 10};
        sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), NULL);
        assert_null(sl_stream_trace(s, "bad", &bad[i]));
        assert_int_equal(sl_pipeline_run(p), SL_EINVAL);
        assert_non_null(strstr(sl_pipeline_errmsg(p), "trace point 'bad'"));
        sl_pipeline_free(p);
    }
}

int main(void)
{
    spans = calloc(2 * N + 64, sizeof(got));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),         cmocka_unit_test(test_no_tracer),
        cmocka_unit_test(test_other_ends),    cmocka_unit_test(test_window_links),
        cmocka_unit_test(test_window_late),   cmocka_unit_test(test_bad_conf),
        cmocka_unit_test(test_queue_delay),   cmocka_unit_test(test_evicted),
        cmocka_unit_test(test_queue_default),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(spans);
    return rc;
}
