/*
 * test_runtime_sched.c - the scheduler and the in-band control protocol
 * under stress.
 *
 * What it proves:
 *  - many short tasks: hundreds of pipelines with 8..16 instances of a few
 *    records each (some with none), on 2..4 threads, sources that say WAIT
 *    (delayed wake-ups through the coordinator), all end with exact counts.
 *    A lost wake-up would hang: sl_pipeline_wait's generous timeout turns a
 *    hang into a failure (never a performance assertion), ctest's TIMEOUT
 *    backs it up;
 *  - no deadlock when every channel is full: credits = 1, fan-in and fan-out
 *    through hash partitioning, a diamond (one source feeding two branches
 *    that meet again in a two-input operator), slow operators and a slow
 *    sink; counts are exact;
 *  - a two-input operator (sl_stream_apply_n) sees as its watermark the
 *    minimum over its input channels: never above what every upstream
 *    instance announced, never below what every channel has delivered, and
 *    never going backwards (also when an idle input comes back with a lower
 *    watermark);
 *  - barrier alignment: barriers injected from the test thread while the job
 *    runs (sl_pipeline_inject_barrier, p->on_barrier hook) are snapshotted by
 *    every instance exactly once, in order, and a two-input operator never
 *    processes, before its snapshot of barrier n, a record that a producer
 *    sent after barrier n (records carry their producer's epoch), nor after
 *    it one sent before.
 *
 * Checks made on worker threads count violations in atomics; the test
 * thread asserts on them (cmocka assertions belong to the test thread).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/internal.h"

#define WAIT_MS 300000 /* generous: only a hang exceeds it */

static void run_ok(sl_pipeline *p)
{
    int rc = sl_pipeline_start(p);
    if (rc) fail_msg("start failed: %s", sl_pipeline_errmsg(p));
    rc = sl_pipeline_wait(p, WAIT_MS);
    if (rc == SL_EAGAIN) fail_msg("pipeline did not finish: hang (lost wake-up or deadlock?)");
    if (rc) fail_msg("run failed: %s (%s)", sl_pipeline_errmsg(p), sl_err_name(rc));
}

typedef struct ev {
    int64_t key;
    int64_t val;
} ev;

static int gen_ev(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    ev *e = out;
    e->key = (int64_t)(seq % 37);
    e->val = (int64_t)seq;
    *ts = (int64_t)seq;
    return 0;
}

static sl_bytes key8(const void *rec, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    sl_bytes k = {rec, 8};
    return k;
}

/* A sink that counts records and sums their val (to catch duplicates). */
typedef struct counter {
    atomic_llong n, sum;
    int delay_us; /* per batch: a deliberately slow consumer */
} counter;

static int count_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    counter *c = sl_ctx_conf(ctx);
    long long s = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        const ev *e = sl_batch_at(in, i);
        s += e->val;
    }
    atomic_fetch_add(&c->n, in->count);
    atomic_fetch_add(&c->sum, s);
    if (c->delay_us) usleep((useconds_t)c->delay_us);
    return 0;
}

static const sl_operator count_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "count", .process = count_process};

/* An operator that burns CPU per batch and hands it on. */
static int slow_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    volatile uint64_t x = 0;
    for (int i = 0; i < 20000; i++) x += (uint64_t)i * 2654435761u;
    return sl_forward(ctx, in);
}

static const sl_operator slow_op = {
    .version = SL_OPERATOR_VERSION, .kind = "slow", .process = slow_process};

/* --- many short tasks ------------------------------------------------------------ */

/* A source that emits one record per poll and says WAIT every other poll, so
 * it keeps needing the coordinator's delayed wake-ups. */
typedef struct drip {
    uint64_t k, n;
    int parity;
} drip;

static int drip_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    const uint64_t *per = sl_ctx_conf(ctx);
    drip *d = calloc(1, sizeof(*d));
    if (!d) return SL_ENOMEM;
    d->n = *per;
    *self = d;
    return 0;
}

static int drip_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    drip *d = self;
    if (d->k >= d->n) return SL_POLL_END;
    if ((d->parity ^= 1)) return SL_POLL_WAIT;
    ev *e = sl_emit(ctx, (int64_t)d->k, 0, sizeof(ev));
    if (!e) return sl_ctx_error(ctx);
    e->key = sl_ctx_instance(ctx);
    e->val = 1;
    d->k++;
    return SL_POLL_MORE;
}

static void drip_close(void *self)
{
    free(self);
}

static const sl_source drip_src = {.version = SL_SOURCE_VERSION,
                                   .kind = "drip",
                                   .open = drip_open,
                                   .poll = drip_poll,
                                   .close = drip_close};

static void test_many_short_tasks(void **state)
{
    (void)state;
    for (int iter = 0; iter < 160; iter++) {
        int threads = 2 + iter % 3;
        int src_par = 8 + iter % 9;       /* 8..16 */
        int op_par = 16 - (iter * 5) % 9; /* 8..16, not equal to src_par */
        uint64_t count = (uint64_t)(iter % 7) * (uint64_t)src_par + (uint64_t)(iter % 5) +
                         1; /* 0 would be unbounded */
        sl_pipeline *p = sl_pipeline_new();
        assert_int_equal(sl_pipeline_set_threads(p, threads), 0);
        assert_int_equal(sl_pipeline_set_parallelism(p, op_par), 0);
        assert_int_equal(sl_pipeline_set_credits(p, 1 + iter % 3), 0);
        counter cnt = {0};
        sl_generator_conf gc = {.fn = gen_ev, .count = count};
        sl_agg_conf ac = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_UPDATES};
        uint64_t per_drip = (uint64_t)(iter % 4);
        sl_collector *col = sl_collector_new();
        if (iter % 2 == 0) {
            /* generator -> key_by -> count (hash fan-in/fan-out) -> collect */
            sl_stream *s = sl_stream_parallelism(
                sl_pipeline_generator(p, "g", &gc, sizeof(ev), NULL), src_par);
            s = sl_stream_parallelism(sl_stream_key_by(s, "k", key8, NULL), src_par);
            s = sl_stream_aggregate(s, "agg", &ac);
            assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, col), 0);
        } else {
            /* drip sources (WAIT between records) -> rebalance -> counting sink */
            sl_stream *s = sl_stream_parallelism(
                sl_pipeline_source(p, "drip", &drip_src, &per_drip, sizeof(ev), NULL), src_par);
            s = sl_stream_rebalance(s);
            assert_int_equal(sl_stream_sink(s, "out", &count_sink, &cnt), 0);
        }
        run_ok(p);
        if (iter % 2 == 0) {
            /* One update per record; the last update of each key is its count. */
            if (sl_collector_count(col) != count)
                fail_msg("iteration %d: %zu updates for %llu records", iter,
                         sl_collector_count(col), (unsigned long long)count);
            int64_t last[37] = {0}, want[37] = {0};
            for (uint64_t q = 0; q < count; q++) want[q % 37]++;
            for (size_t i = 0; i < sl_collector_count(col); i++) {
                sl_bytes r = sl_collector_get(col, i, NULL);
                int64_t k, v;
                memcpy(&v, sl_agg_out_result(r), 8);
                memcpy(&k, sl_agg_out_key(r).ptr, 8);
                assert_true(k >= 0 && k < 37);
                assert_int_equal(v, last[k] + 1);
                last[k] = v;
            }
            for (int k = 0; k < 37; k++) assert_int_equal(last[k], want[k]);
        } else {
            long long want = (long long)per_drip * src_par;
            if (atomic_load(&cnt.n) != want)
                fail_msg("iteration %d: %lld records, expected %lld", iter, atomic_load(&cnt.n),
                         want);
        }
        sl_collector_free(col);
        sl_pipeline_free(p);
    }
}

/* --- every channel full ----------------------------------------------------------- */

static int keep_odd(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)len;
    (void)ts;
    (void)ud;
    return ((const ev *)rec)->val % 2 == 1;
}

/* Two inputs, forwards everything. */
static int join_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    return sl_forward(ctx, in);
}

static const sl_operator join_op = {
    .version = SL_OPERATOR_VERSION, .kind = "join", .process = join_process};

static void test_full_channels_no_deadlock(void **state)
{
    (void)state;
    const uint64_t N = 200000;
    long long sum_all = (long long)(N * (N - 1) / 2), sum_odd = 0;
    for (uint64_t q = 1; q < N; q += 2) sum_odd += (long long)q;
    for (int threads = 1; threads <= 3; threads++) {
        /* Hash fan-out 4 -> 3, slow operators, rebalance 3 -> 2, slow sink. */
        sl_pipeline *p = sl_pipeline_new();
        assert_int_equal(sl_pipeline_set_threads(p, threads), 0);
        assert_int_equal(sl_pipeline_set_credits(p, 1), 0);
        counter cnt = {.delay_us = 20};
        sl_generator_conf gc = {.fn = gen_ev, .count = N};
        sl_stream *s =
            sl_stream_parallelism(sl_pipeline_generator(p, "g", &gc, sizeof(ev), NULL), 4);
        s = sl_stream_parallelism(sl_stream_key_by(s, "k", key8, NULL), 4);
        s = sl_stream_parallelism(sl_stream_apply(s, "slow", &slow_op, NULL, sizeof(ev)), 3);
        s = sl_stream_rebalance(s);
        s = sl_stream_parallelism(sl_stream_key_by(s, "k2", key8, NULL), 2);
        s = sl_stream_parallelism(sl_stream_apply(s, "slow2", &slow_op, NULL, sizeof(ev)), 3);
        assert_int_equal(sl_pipeline_set_parallelism(p, 2), 0);
        assert_int_equal(sl_stream_sink(s, "out", &count_sink, &cnt), 0);
        run_ok(p);
        assert_int_equal(atomic_load(&cnt.n), N);
        assert_int_equal(atomic_load(&cnt.sum), sum_all);
        sl_pipeline_free(p);

        /* Diamond: g -> (rebalance) slow[2] \
         *          g -> (hash) filter[3]     -> join[2] -> slow sink  */
        p = sl_pipeline_new();
        assert_int_equal(sl_pipeline_set_threads(p, threads), 0);
        assert_int_equal(sl_pipeline_set_credits(p, 1), 0);
        counter cnt2 = {.delay_us = 20};
        sl_stream *g =
            sl_stream_parallelism(sl_pipeline_generator(p, "g", &gc, sizeof(ev), NULL), 2);
        sl_stream *a = sl_stream_parallelism(
            sl_stream_apply(sl_stream_rebalance(g), "a", &slow_op, NULL, sizeof(ev)), 2);
        sl_stream *k = sl_stream_parallelism(sl_stream_key_by(g, "bk", key8, NULL), 2);
        (void)k;
        sl_stream *b = sl_stream_parallelism(sl_stream_filter(g, "b", keep_odd, NULL), 3);
        sl_stream *ins[2] = {a, b};
        sl_stream *j =
            sl_stream_parallelism(sl_stream_apply_n(ins, 2, "join", &join_op, NULL, sizeof(ev)), 2);
        assert_int_equal(sl_pipeline_set_parallelism(p, 2), 0);
        assert_int_equal(sl_stream_sink(j, "out", &count_sink, &cnt2), 0);
        assert_int_equal(sl_stream_sink(k, "kout", &count_sink, &cnt2), 0);
        run_ok(p);
        /* join: N from a plus N/2 odd from b; kout: N more. */
        assert_int_equal(atomic_load(&cnt2.n), (long long)(2 * N + N / 2));
        assert_int_equal(atomic_load(&cnt2.sum), 2 * sum_all + sum_odd);
        sl_pipeline_free(p);
    }
}

/* --- watermarks of a two-input operator ---------------------------------------------- */

#define WM_SLOTS 5 /* 2 instances of source A + 3 of source B */
#define WM_MARK  1
#define WM_DATA  0

typedef struct wrec {
    int32_t kind, slot;
    int64_t v; /* MARK: the watermark just announced; DATA: its event time */
} wrec;

typedef struct wm_shared {
    _Atomic int64_t published[WM_SLOTS]; /* last watermark each source announced */
    atomic_long violations;
    atomic_long checks;
    atomic_long advances;
    atomic_long ended_at_max;
    int idle_phase; /* slot 2 starts idle and comes back with a low watermark */
    char what[256];
} wm_shared;

static void violation(wm_shared *sh, const char *fmt, ...)
{
    if (atomic_fetch_add(&sh->violations, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->what, sizeof(sh->what), fmt, ap);
        va_end(ap);
    }
}

typedef struct wm_src_conf {
    wm_shared *sh;
    int slot_base; /* slot = slot_base + instance */
    int step;      /* event-time step per record */
    int per_poll;  /* records per poll */
    int n;         /* records per instance */
} wm_src_conf;

typedef struct wm_src {
    int slot, k, polls;
} wm_src;

static int wm_src_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    wm_src_conf *c = sl_ctx_conf(ctx);
    wm_src *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->slot = c->slot_base + sl_ctx_instance(ctx);
    *self = s;
    return 0;
}

static int wm_announce(sl_ctx *ctx, wm_shared *sh, int slot, int64_t wm)
{
    /* Published before it is sent: the operator can never see more. */
    if (wm > atomic_load(&sh->published[slot])) atomic_store(&sh->published[slot], wm);
    int rc = sl_ctx_watermark(ctx, wm);
    if (rc) return rc;
    wrec *m = sl_emit(ctx, wm, 0, sizeof(wrec));
    if (!m) return sl_ctx_error(ctx);
    m->kind = WM_MARK;
    m->slot = slot;
    m->v = wm;
    return 0;
}

static int wm_src_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    wm_src_conf *c = sl_ctx_conf(ctx);
    wm_src *s = self;
    wm_shared *sh = c->sh;
    s->polls++;
    if (sh->idle_phase && s->slot == 2 && s->polls < 40) {
        int rc = sl_ctx_idle(ctx, 1);
        return rc ? rc : SL_POLL_WAIT;
    }
    if (s->k >= c->n) {
        atomic_store(&sh->published[s->slot], SL_TIME_MAX); /* END brings +inf */
        return SL_POLL_END;
    }
    int64_t ts = 0;
    /* Room for the marker too (the rising watermark flushes before it). */
    int room = max > 1 ? (int)max - 1 : 1;
    for (int i = 0; i < c->per_poll && i < room && s->k < c->n; i++, s->k++) {
        /* Slot 2 comes back from idleness far behind the others. */
        ts = (int64_t)s->k * c->step + (s->slot == 2 && sh->idle_phase ? 0 : 1000);
        wrec *r = sl_emit(ctx, ts, 0, sizeof(wrec));
        if (!r) return sl_ctx_error(ctx);
        r->kind = WM_DATA;
        r->slot = s->slot;
        r->v = ts;
    }
    int rc = wm_announce(ctx, sh, s->slot, ts - 5);
    return rc ? rc : SL_POLL_MORE;
}

static const sl_source wm_source = {.version = SL_SOURCE_VERSION,
                                    .kind = "wm-source",
                                    .open = wm_src_open,
                                    .poll = wm_src_poll,
                                    .close = drip_close};

typedef struct wm_op {
    int64_t known[WM_SLOTS]; /* watermark each channel has delivered (by markers) */
    int64_t last_wm;         /* last watermark() value */
    int64_t last_cur;        /* last sl_ctx_current_watermark() seen in process() */
} wm_op;

static int wm_op_open(sl_ctx *ctx, void **self)
{
    (void)ctx;
    wm_op *o = calloc(1, sizeof(*o));
    if (!o) return SL_ENOMEM;
    for (int i = 0; i < WM_SLOTS; i++) o->known[i] = SL_TIME_MIN;
    o->last_wm = SL_TIME_MIN;
    o->last_cur = SL_TIME_MIN;
    *self = o;
    return 0;
}

static int64_t min_published(wm_shared *sh)
{
    int64_t m = SL_TIME_MAX;
    for (int i = 0; i < WM_SLOTS; i++) {
        int64_t v = atomic_load(&sh->published[i]);
        if (v < m) m = v;
    }
    return m;
}

static int wm_op_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    wm_op *o = self;
    wm_shared *sh = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        const wrec *r = sl_batch_at(in, i);
        if (r->slot < 0 || r->slot >= WM_SLOTS) {
            violation(sh, "bad slot %d", r->slot);
            continue;
        }
        if (r->kind == WM_MARK && r->v > o->known[r->slot]) o->known[r->slot] = r->v;
        int64_t cur = sl_ctx_current_watermark(ctx), lo = SL_TIME_MAX;
        for (int k = 0; k < WM_SLOTS; k++)
            if (o->known[k] < lo) lo = o->known[k];
        atomic_fetch_add(&sh->checks, 1);
        if (cur < o->last_cur)
            violation(sh, "instance %d: watermark went back from %lld to %lld",
                      sl_ctx_instance(ctx), (long long)o->last_cur, (long long)cur);
        if (cur < lo)
            violation(sh, "instance %d: watermark %lld below what every channel delivered %lld",
                      sl_ctx_instance(ctx), (long long)cur, (long long)lo);
        if (!sh->idle_phase && cur > min_published(sh))
            violation(sh, "instance %d: watermark %lld above the min announced %lld",
                      sl_ctx_instance(ctx), (long long)cur, (long long)min_published(sh));
        o->last_cur = cur;
    }
    return sl_forward(ctx, in);
}

static int wm_op_watermark(sl_ctx *ctx, void *self, int64_t wm)
{
    wm_op *o = self;
    wm_shared *sh = sl_ctx_conf(ctx);
    atomic_fetch_add(&sh->advances, 1);
    if (wm <= o->last_wm)
        violation(sh, "instance %d: watermark() not increasing: %lld after %lld",
                  sl_ctx_instance(ctx), (long long)wm, (long long)o->last_wm);
    if (!sh->idle_phase && wm != SL_TIME_MAX && wm > min_published(sh))
        violation(sh, "instance %d: watermark() %lld above the min announced %lld",
                  sl_ctx_instance(ctx), (long long)wm, (long long)min_published(sh));
    if (wm == SL_TIME_MAX) atomic_fetch_add(&sh->ended_at_max, 1);
    o->last_wm = wm;
    return 0;
}

static const sl_operator wm_operator = {.version = SL_OPERATOR_VERSION,
                                        .kind = "wm-check",
                                        .open = wm_op_open,
                                        .process = wm_op_process,
                                        .watermark = wm_op_watermark,
                                        .close = drip_close};

static int null_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)ctx;
    (void)self;
    (void)in;
    return 0;
}

static const sl_operator null_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "null", .process = null_process};

static void test_watermark_min_over_inputs(void **state)
{
    (void)state;
    for (int round = 0; round < 12; round++) {
        wm_shared *sh = calloc(1, sizeof(*sh));
        assert_non_null(sh);
        for (int i = 0; i < WM_SLOTS; i++) atomic_init(&sh->published[i], SL_TIME_MIN);
        sh->idle_phase = round % 2;
        wm_src_conf ca = {.sh = sh, .slot_base = 0, .step = 3, .per_poll = 50, .n = 3000};
        wm_src_conf cb = {.sh = sh, .slot_base = 2, .step = 11, .per_poll = 7, .n = 900};
        sl_pipeline *p = sl_pipeline_new();
        assert_int_equal(sl_pipeline_set_threads(p, 1 + round % 4), 0);
        assert_int_equal(sl_pipeline_set_credits(p, 1 + round % 3), 0);
        sl_stream *a = sl_pipeline_source(p, "a", &wm_source, &ca, sizeof(wrec), NULL);
        sl_stream *b = sl_pipeline_source(p, "b", &wm_source, &cb, sizeof(wrec), NULL);
        a = sl_stream_broadcast(sl_stream_parallelism(a, 2));
        b = sl_stream_broadcast(sl_stream_parallelism(b, 3));
        sl_stream *ins[2] = {a, b};
        sl_stream *j = sl_stream_apply_n(ins, 2, "min", &wm_operator, sh, sizeof(wrec));
        j = sl_stream_parallelism(j, 2);
        assert_int_equal(sl_pipeline_set_parallelism(p, 2), 0);
        assert_int_equal(sl_stream_sink(j, "out", &null_sink, NULL), 0);
        run_ok(p);
        if (atomic_load(&sh->violations))
            fail_msg("round %d: %ld watermark violations, first: %s", round,
                     atomic_load(&sh->violations), sh->what);
        /* Both instances reach the end of time exactly once. */
        assert_int_equal(atomic_load(&sh->ended_at_max), 2);
        assert_true(atomic_load(&sh->checks) > 0);
        sl_pipeline_free(p);
        free(sh);
    }
}

/* --- barrier alignment ------------------------------------------------------------------ */

#define N_BARRIERS 12
#define MAX_CTX    32

typedef struct brec {
    int64_t slot;  /* producer: source instance slot */
    int64_t seq;   /* per producer, from 0 */
    int64_t epoch; /* barriers the producer had passed when it emitted this */
} brec;

typedef struct bar_shared {
    atomic_int stop;
    atomic_int snaps[MAX_CTX][N_BARRIERS + 1];
    atomic_int snapped[N_BARRIERS + 1]; /* instances done with barrier id */
    atomic_long violations;
    atomic_long processed;
    atomic_long emitted;
    char what[256];
    sl_pipeline *p;
    void *reader[MAX_CTX]; /* per ctx index: a source instance's reader (bsrc) */
} bar_shared;

static void bviolation(bar_shared *sh, const char *fmt, ...)
{
    if (atomic_fetch_add(&sh->violations, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->what, sizeof(sh->what), fmt, ap);
        va_end(ap);
    }
}

typedef struct bsrc_conf {
    bar_shared *sh;
    int slot_base;
} bsrc_conf;

typedef struct bsrc {
    int64_t slot, seq, epoch;
    int polls;
} bsrc;

static int bsrc_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    bsrc_conf *c = sl_ctx_conf(ctx);
    bsrc *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->slot = c->slot_base + sl_ctx_instance(ctx);
    for (int i = 0; i < c->sh->p->n_ctx && i < MAX_CTX; i++)
        if (c->sh->p->ctxs[i] == ctx) c->sh->reader[i] = s; /* for on_barrier */
    *self = s;
    return 0;
}

static int bsrc_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    bsrc_conf *c = sl_ctx_conf(ctx);
    bsrc *s = self;
    if (atomic_load(&c->sh->stop)) return SL_POLL_END;
    int n = 1 + (int)((s->slot * 7 + s->polls++) % 97);
    if (n > (int)max) n = (int)max;
    for (int i = 0; i < n; i++) {
        brec *r = sl_emit(ctx, s->seq, 0, sizeof(brec));
        if (!r) return sl_ctx_error(ctx);
        r->slot = s->slot;
        r->seq = s->seq++;
        r->epoch = s->epoch;
    }
    atomic_fetch_add(&c->sh->emitted, n);
    return s->polls % 5 == 0 ? SL_POLL_WAIT : SL_POLL_MORE;
}

static const sl_source bar_source = {.version = SL_SOURCE_VERSION,
                                     .kind = "bar-source",
                                     .open = bsrc_open,
                                     .poll = bsrc_poll,
                                     .close = drip_close};

#define B_SLOTS 5

typedef struct align_self {
    int64_t epoch;             /* barriers this instance has snapshotted */
    int64_t next_seq[B_SLOTS]; /* per producer: records must come in order */
} align_self;

static int align_open(sl_ctx *ctx, void **self)
{
    (void)ctx;
    align_self *a = calloc(1, sizeof(*a));
    if (!a) return SL_ENOMEM;
    *self = a;
    return 0;
}

static int align_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    align_self *a = self;
    bar_shared *sh = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        const brec *r = sl_batch_at(in, i);
        if (r->slot < 0 || r->slot >= B_SLOTS) {
            bviolation(sh, "bad slot %lld", (long long)r->slot);
            continue;
        }
        if (r->epoch != a->epoch)
            bviolation(sh,
                       "instance %d (input %d) processed record %lld of producer %lld sent in "
                       "epoch %lld while in epoch %lld",
                       sl_ctx_instance(ctx), sl_ctx_input(ctx), (long long)r->seq,
                       (long long)r->slot, (long long)r->epoch, (long long)a->epoch);
        /* Each producer's records reach this instance (hash: a subset) in order. */
        if (r->seq < a->next_seq[r->slot])
            bviolation(sh, "producer %lld: record %lld after %lld", (long long)r->slot,
                       (long long)r->seq, (long long)a->next_seq[r->slot] - 1);
        a->next_seq[r->slot] = r->seq + 1;
    }
    atomic_fetch_add(&sh->processed, in->count);
    return sl_forward(ctx, in);
}

static const sl_operator align_op = {.version = SL_OPERATOR_VERSION,
                                     .kind = "align",
                                     .open = align_open,
                                     .process = align_process,
                                     .close = drip_close};

static sl_bytes key_seq(const void *rec, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    sl_bytes k = {&((const brec *)rec)->seq, 8};
    return k;
}

/* Runs inside the activation of c's task: may touch c->self. */
static int on_barrier(sl_pipeline *p, struct sl_ctx *c, uint64_t id, void *ud)
{
    bar_shared *sh = ud;
    int idx = -1;
    for (int i = 0; i < p->n_ctx; i++)
        if (p->ctxs[i] == c) idx = i;
    if (idx < 0 || idx >= MAX_CTX || id < 1 || id > N_BARRIERS) {
        bviolation(sh, "barrier %llu on unknown instance", (unsigned long long)id);
        return 0;
    }
    /* In order: every earlier barrier was snapshotted by this instance. */
    for (uint64_t k = 1; k < id; k++)
        if (atomic_load(&sh->snaps[idx][k]) != 1)
            bviolation(sh, "%s[%d]: barrier %llu before barrier %llu", c->node->name, c->instance,
                       (unsigned long long)id, (unsigned long long)k);
    atomic_fetch_add(&sh->snaps[idx][id], 1);
    if (c->node->kind == SL_NODE_SOURCE) {
        if (!sh->reader[idx])
            bviolation(sh, "%s[%d]: no reader", c->node->name, c->instance);
        else
            ((bsrc *)sh->reader[idx])->epoch = (int64_t)id;
    }
    if (c->node->op == &align_op) ((align_self *)c->self)->epoch = (int64_t)id;
    atomic_fetch_add(&sh->snapped[id], 1);
    return 0;
}

static void test_barrier_alignment(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        bar_shared *sh = calloc(1, sizeof(*sh));
        assert_non_null(sh);
        bsrc_conf ca = {.sh = sh, .slot_base = 0}, cb = {.sh = sh, .slot_base = 2};
        sl_pipeline *p = sl_pipeline_new();
        assert_int_equal(sl_pipeline_set_threads(p, 1 + round % 4), 0);
        assert_int_equal(sl_pipeline_set_credits(p, 1 + round % 2), 0);
        assert_int_equal(sl_pipeline_set_parallelism(p, 2), 0);
        counter cnt = {0};
        /* a[2] -> key_by (chained) -hash-> align input 0
         * b[3] -rebalance-> align input 1; align[2] -> sink (chained). */
        sl_stream *a = sl_stream_parallelism(
            sl_pipeline_source(p, "a", &bar_source, &ca, sizeof(brec), NULL), 2);
        a = sl_stream_parallelism(sl_stream_key_by(a, "ka", key_seq, NULL), 2);
        sl_stream *b = sl_stream_parallelism(
            sl_pipeline_source(p, "b", &bar_source, &cb, sizeof(brec), NULL), 3);
        b = sl_stream_rebalance(b);
        sl_stream *ins[2] = {a, b};
        sl_stream *j = sl_stream_apply_n(ins, 2, "align", &align_op, sh, sizeof(brec));
        assert_int_equal(sl_stream_sink(j, "out", &null_sink, &cnt), 0);
        p->on_barrier = on_barrier;
        p->on_barrier_ud = sh;
        sh->p = p;
        assert_int_equal(sl_pipeline_start(p), 0);
        int n_ctx = p->n_ctx;
        assert_true(n_ctx <= MAX_CTX);
        for (uint64_t id = 1; id <= N_BARRIERS; id++) {
            /* Let some records flow between barriers (a condition, not a time). */
            long base = atomic_load(&sh->emitted);
            for (long spin = 0; atomic_load(&sh->emitted) < base + 500; spin++) {
                if (spin > 2000000)
                    fail_msg("no progress before barrier %llu", (unsigned long long)id);
                usleep(100);
            }
            /* Every third round injects two barriers back to back, so a
             * source may see the second request before sending the first. */
            uint64_t hi = (id % 3 == 1 && id + 1 <= N_BARRIERS) ? id + 1 : id;
            for (uint64_t k = id; k <= hi; k++) sl_pipeline_inject_barrier(p, k);
            for (uint64_t k = id; k <= hi; k++) {
                for (long spin = 0; atomic_load(&sh->snapped[k]) < n_ctx; spin++) {
                    if (spin > 2000000)
                        fail_msg("barrier %llu: %d of %d instances snapshotted (hang)",
                                 (unsigned long long)k, atomic_load(&sh->snapped[k]), n_ctx);
                    usleep(100);
                }
            }
            id = hi;
        }
        atomic_store(&sh->stop, 1);
        int rc = sl_pipeline_wait(p, WAIT_MS);
        if (rc == SL_EAGAIN) fail_msg("pipeline did not finish after stop");
        assert_int_equal(rc, 0);
        if (atomic_load(&sh->violations))
            fail_msg("round %d: %ld violations, first: %s", round, atomic_load(&sh->violations),
                     sh->what);
        for (int i = 0; i < n_ctx; i++)
            for (int id = 1; id <= N_BARRIERS; id++)
                if (atomic_load(&sh->snaps[i][id]) != 1)
                    fail_msg("%s[%d] snapshotted barrier %d %d times", p->ctxs[i]->node->name,
                             p->ctxs[i]->instance, id, atomic_load(&sh->snaps[i][id]));
        assert_int_equal(atomic_load(&sh->processed), atomic_load(&sh->emitted));
        sl_pipeline_free(p);
        free(sh);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_short_tasks),
        cmocka_unit_test(test_full_channels_no_deadlock),
        cmocka_unit_test(test_watermark_min_over_inputs),
        cmocka_unit_test(test_barrier_alignment),
    };
    return cmocka_run_group_tests_name("runtime_sched", tests, NULL, NULL);
}
