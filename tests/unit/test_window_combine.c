/*
 * tests/unit/test_window_combine.c - sl_stream_window_combined (the
 * combiner: pre-aggregation before the shuffle) against
 * sl_stream_window(sl_stream_key_by(...)) on the same input.
 *
 * The input is a table of events (event time, key, value, split) replayed by
 * a source of one split per instance, with punctuated watermarks (max -
 * delay - 1 after every record that raises it), `chunk` records per poll
 * (1: tiny batches) and a position, so that a run can stop with a savepoint
 * and resume. Event times start below 0 and cross 0 (event time 0 is an
 * event of its own); some records are later than the delay (late or within
 * allowed lateness), some fall in the gaps of a sliding window with
 * slide > size.
 *
 *  - exact: the source has one instance, so every window instance sees one
 *    channel and lateness is decided by the data alone: the sorted lines of
 *    results (every firing, also the firings again under allowed lateness),
 *    late records and unassigned records must be equal, for count, sum, min,
 *    max, avg and distinct, tumbling (with an offset) and sliding windows,
 *    window parallelism 2 and 3, one credit per channel, tiny batches and a
 *    tiny ring;
 *  - several upstream instances (2 and 3): with more than one channel into
 *    a window instance, whether a record later than the watermark is late
 *    depends on how far the other channels got (with or without a
 *    combiner); so these runs keep every record (allowed lateness beyond the
 *    data's disorder) and compare each window's last result, and the
 *    records in no window;
 *  - restart: a combined pipeline stopped mid-way with a savepoint (the
 *    combiner holds partials then: they are in its checkpointed state) and
 *    restarted gives, over both runs, the output of an uninterrupted run;
 *  - refused with one clear error: session windows, early firing, an
 *    aggregate without merge(), no key function;
 *  - the plan shows "<name>.combine" and "<name>"; the statistics count
 *    partials and raw records, and fewer records cross the shuffle.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "test_lines.h"
#include "sluice/sluice.h"
#include "operators/window/window_test.h"

typedef struct ev {
    int64_t ts, key, value;
    int split;
} ev;

typedef struct rec {
    int64_t key, value;
} rec;

/* --- the replay source ------------------------------------------------------------ */

typedef struct src_conf {
    const ev *evs;
    int n;
    int chunk;        /* records per poll */
    int cancel_split; /* with cancel_at > 0: cancel once this split emitted cancel_at */
    int cancel_at;
    _Atomic int *split1_ended; /* when set: split 1 sets it at its end, split 0 waits for it */
} src_conf;

typedef struct reader {
    int split;
    int next;    /* index into evs: the next event to look at */
    int emitted; /* records of this split emitted */
    int stopped;
} reader;

static int rd_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    (void)ctx;
    reader *r = calloc(1, sizeof(*r));
    if (!r) return SL_ENOMEM;
    r->split = split->index;
    *self = r;
    return 0;
}

static void rd_close(void *self)
{
    free(self);
}

static int rd_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    reader *r = self;
    const src_conf *c = sl_ctx_conf(ctx);
    if (r->stopped) return SL_POLL_WAIT;
    if (c->split1_ended && r->split == 0 && !atomic_load(c->split1_ended)) return SL_POLL_WAIT;
    int k = 0;
    while (r->next < c->n && k < c->chunk && k < (int)max) {
        const ev *e = &c->evs[r->next++];
        if (e->split != r->split) continue;
        rec x = {e->key, e->value};
        if (sl_emit_copy(ctx, e->ts, 0, &x, sizeof(x))) return sl_ctx_error(ctx);
        k++;
        r->emitted++;
        if (c->cancel_at && r->split == c->cancel_split && r->emitted == c->cancel_at) {
            sl_pipeline_cancel(sl_ctx_pipeline(ctx));
            r->stopped = 1;
            return SL_POLL_MORE;
        }
    }
    if (r->next < c->n) return SL_POLL_MORE;
    if (c->split1_ended && r->split == 1) atomic_store(c->split1_ended, 1);
    return SL_POLL_END;
}

static int rd_position(sl_ctx *ctx, void *self, sl_buf *out)
{
    (void)ctx;
    reader *r = self;
    int32_t v[2] = {r->next, r->emitted};
    return sl_buf_append(out, v, sizeof(v));
}

static int rd_seek(sl_ctx *ctx, void *self, const void *pos, size_t len)
{
    (void)ctx;
    reader *r = self;
    int32_t v[2];
    if (len != sizeof(v)) return SL_ECORRUPT;
    memcpy(v, pos, sizeof(v));
    r->next = v[0];
    r->emitted = v[1];
    return 0;
}

static const sl_source replay_src = {.version = SL_SOURCE_VERSION,
                                     .kind = "replay",
                                     .open = rd_open,
                                     .poll = rd_poll,
                                     .position = rd_position,
                                     .seek = rd_seek,
                                     .close = rd_close};

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    return (sl_bytes){p, 8};
}

/* --- events --------------------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* n events, ~1 per ms from t0, `keys` keys, values in [-1000, 1000),
 * disorder up to `dis` ms; one in `late_one` is up to `late_ms` behind;
 * events spread over `splits` splits. The event at time 0 is forced. */
static ev *make_events(int n, int64_t t0, int keys, int64_t dis, int late_one, int64_t late_ms,
                       int splits, uint64_t seed)
{
    ev *e = calloc((size_t)n, sizeof(*e));
    assert_non_null(e);
    uint64_t s = seed;
    for (int j = 0; j < n; j++) {
        int64_t base = t0 + j;
        e[j].ts = base - (int64_t)(rnd(&s) % (uint64_t)(dis + 1));
        if (late_one && rnd(&s) % (uint64_t)late_one == 0)
            e[j].ts = base - (int64_t)(rnd(&s) % (uint64_t)late_ms);
        if (base == 0) e[j].ts = 0;
        e[j].key = (int64_t)(rnd(&s) % (uint64_t)keys);
        e[j].value = (int64_t)(rnd(&s) % 2000) - 1000;
        e[j].split = (int)(rnd(&s) % (uint64_t)splits);
    }
    return e;
}

/* --- output as lines ---------------------------------------------------------------- */

static void fmt_result(char *out, size_t cap, const sl_aggregate *agg, const void *res)
{
    if (agg == &sl_agg_avg) {
        double d;
        memcpy(&d, res, 8);
        snprintf(out, cap, "%.17g", d);
    } else {
        int64_t x;
        memcpy(&x, res, 8);
        snprintf(out, cap, "%" PRId64, x);
    }
}

/* --- running ------------------------------------------------------------------------ */

typedef struct rcfg {
    int combine;
    int par_src, par_win, credits;
    uint32_t ring;       /* forced window ring slots, 0: default */
    int last_only;       /* results: only each window's last firing */
    const char *chk_dir; /* checkpoints there (a start resumes from the latest) */
} rcfg;

typedef struct collected {
    sl_collector *res, *late, *unas;
} collected;

static void collected_init(collected *c)
{
    c->res = sl_collector_new();
    c->late = sl_collector_new();
    c->unas = sl_collector_new();
    assert_true(c->res && c->late && c->unas);
}

static void collected_free(collected *c)
{
    sl_collector_free(c->res);
    sl_collector_free(c->late);
    sl_collector_free(c->unas);
}

/* Build and run one pipeline into col; returns the run's code. st: the
 * combiner's statistics (combined runs). */
static int run(const src_conf *sc, int64_t delay, const sl_window_conf *wc, const rcfg *rc,
               collected *col, sl_window_combine_stats *st, char *err, size_t errcap)
{
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    sl_pipeline_set_threads(p, 2);
    if (rc->credits) assert_int_equal(sl_pipeline_set_credits(p, rc->credits), 0);
    sl_watermark_conf wm = {.delay = delay, .punctuated = 1};
    sl_stream *s = sl_pipeline_source(p, "src", &replay_src, (void *)sc, sizeof(rec), &wm);
    s = sl_stream_parallelism(s, rc->par_src);
    sl_stream *w;
    if (rc->combine) {
        w = sl_stream_window_combined(s, "win", key_of, NULL, wc);
    } else {
        s = sl_stream_key_by(s, "key", key_of, NULL);
        w = sl_stream_window(s, "win", wc);
    }
    if (w) {
        w = sl_stream_parallelism(w, rc->par_win);
        if (rc->ring) assert_int_equal(sli_window_test_ring(w, rc->ring), 0);
        sl_stream_sink(w, "out", &sl_sink_collect, col->res);
        sl_stream_sink(sl_stream_window_late(w), "late", &sl_sink_collect, col->late);
        if (wc->kind == SL_WINDOW_SLIDING && wc->slide > wc->size)
            sl_stream_sink(sl_stream_window_unassigned(w), "unassigned", &sl_sink_collect,
                           col->unas);
    }
    if (rc->chk_dir) {
        sl_checkpoint_conf cc = {.dir = rc->chk_dir, .interval_ms = 3600000};
        sl_pipeline_set_checkpoint(p, &cc);
    }
    int code = sl_pipeline_run(p);
    if (err) snprintf(err, errcap, "%s", sl_pipeline_errmsg(p));
    if (code == 0 && st && w) assert_int_equal(sl_window_combined_stats(w, st), 0);
    sl_pipeline_free(p);
    return code;
}

typedef struct wres {
    int64_t start, end, key;
    size_t seq;
    char v[64];
} wres;

static int cmp_wres(const void *a, const void *b)
{
    const wres *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void to_lines(const collected *col, const sl_aggregate *agg, int last_only, lines *out)
{
    size_t n = sl_collector_count(col->res);
    wres *r = calloc(n ? n : 1, sizeof(*r));
    assert_non_null(r);
    for (size_t i = 0; i < n; i++) {
        sl_window_result x = sl_window_out(sl_collector_get(col->res, i, NULL));
        assert_int_equal(x.result_size, agg->result_size);
        assert_int_equal(x.key.len, 8);
        r[i].start = x.start;
        r[i].end = x.end;
        memcpy(&r[i].key, x.key.ptr, 8);
        r[i].seq = i;
        fmt_result(r[i].v, sizeof(r[i].v), agg, x.result);
    }
    qsort(r, n, sizeof(*r), cmp_wres);
    for (size_t i = 0; i < n; i++) {
        if (last_only && i + 1 < n && r[i + 1].start == r[i].start && r[i + 1].end == r[i].end &&
            r[i + 1].key == r[i].key)
            continue;
        lines_add(out, "R,%" PRId64 ",%" PRId64 ",%" PRId64 ",%s", r[i].start, r[i].end, r[i].key,
                  r[i].v);
    }
    free(r);
    const char *tag[2] = {"L", "U"};
    sl_collector *side[2] = {col->late, col->unas};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sl_collector_count(side[k]); i++) {
            int64_t ts;
            sl_bytes b = sl_collector_get(side[k], i, &ts);
            rec x;
            assert_int_equal(b.len, sizeof(x)); /* unchanged: the input's width */
            memcpy(&x, b.ptr, sizeof(x));
            lines_add(out, "%s,%" PRId64 ",%" PRId64 ",%" PRId64, tag[k], ts, x.key, x.value);
        }
}

/* Run with and without the combiner; the outputs must be equal. Returns
 * the combined run's statistics and the number of late lines in *late. */
static sl_window_combine_stats compare(const src_conf *sc, int64_t delay, const sl_window_conf *wc,
                                       rcfg rc, const char *what, size_t *late, size_t *results)
{
    lines a = {0}, b = {0};
    sl_window_combine_stats st;
    memset(&st, 0, sizeof(st));
    char err[512];
    for (int comb = 0; comb < 2; comb++) {
        collected col;
        collected_init(&col);
        rc.combine = comb;
        int code = run(sc, delay, wc, &rc, &col, comb ? &st : NULL, err, sizeof(err));
        if (code) fail_msg("%s (combine %d): %s", what, comb, err);
        to_lines(&col, wc->agg, rc.last_only, comb ? &b : &a);
        if (!comb && late) *late = sl_collector_count(col.late);
        if (!comb && results) *results = sl_collector_count(col.res);
        collected_free(&col);
    }
    char msg[256];
    snprintf(msg, sizeof(msg), "%s (without / with the combiner)", what);
    lines_expect_equal(&a, &b, msg);
    lines_free(&a);
    lines_free(&b);
    /* every input record went somewhere, and the combiner did combine */
    assert_int_equal(st.records_in, (uint64_t)sc->n);
    assert_true(st.partials + st.raw < st.records_in);
    return st;
}

static const sl_aggregate *const aggs[] = {&sl_agg_count, &sl_agg_sum, &sl_agg_min,
                                           &sl_agg_max,   &sl_agg_avg, &sl_agg_distinct};
#define N_AGGS (sizeof(aggs) / sizeof(aggs[0]))

static sl_agg_value value_at8 = {.offset = 8};

/* The window confs: tumbling with an offset and allowed lateness, sliding
 * (overlapping, lateness), sliding with gaps (slide > size). */
static sl_window_conf conf_of(int kind, const sl_aggregate *agg, int64_t lateness_big)
{
    sl_window_conf c;
    switch (kind) {
    case 0:
        c = sl_window_tumbling(100, 30);
        c.lateness = lateness_big ? lateness_big : 60;
        break;
    case 1:
        c = sl_window_sliding(300, 100);
        c.lateness = lateness_big ? lateness_big : 120;
        break;
    default:
        c = sl_window_sliding(100, 250);
        c.lateness = lateness_big ? lateness_big : 0;
        break;
    }
    c.agg = agg;
    c.agg_ud = &value_at8;
    return c;
}

static const char *const kind_name[] = {"tumbling(100, offset 30)", "sliding(300, 100)",
                                        "sliding(100, 250)"};

/* --- tests ---------------------------------------------------------------------------- */

/* One source instance: every output line equal, late records and firings
 * again included; window parallelism 2 and 3; one credit and tiny batches. */
static void test_exact_one_source(void **state)
{
    (void)state;
    const int n = 3000;
    ev *e = make_events(n, -1200, 7, 15, 25, 400, 1, 42);
    size_t late_total = 0, refired = 0;
    for (int kind = 0; kind < 3; kind++)
        for (size_t a = 0; a < N_AGGS; a++) {
            sl_window_conf wc = conf_of(kind, aggs[a], 0);
            src_conf sc = {.evs = e, .n = n, .chunk = 64};
            rcfg rc = {.par_src = 1, .par_win = 2 + (int)(a % 2)};
            char what[128];
            snprintf(what, sizeof(what), "%s %s, window parallelism %d", kind_name[kind],
                     aggs[a]->name, rc.par_win);
            size_t late = 0, results = 0;
            sl_window_combine_stats st = compare(&sc, 15, &wc, rc, what, &late, &results);
            assert_true(st.raw > 0); /* records behind the watermark crossed raw */
            late_total += late;
            refired += results;
        }
    assert_true(late_total > 0); /* the late path was exercised */
    assert_true(refired > 0);
    /* one credit, one record per poll, a 2-slot ring */
    for (int kind = 0; kind < 3; kind++) {
        const sl_aggregate *agg = kind == 1 ? &sl_agg_distinct : &sl_agg_avg;
        sl_window_conf wc = conf_of(kind, agg, 0);
        src_conf sc = {.evs = e, .n = 1500, .chunk = 1};
        rcfg rc = {.par_src = 1, .par_win = 3, .credits = 1, .ring = 2};
        char what[128];
        snprintf(what, sizeof(what), "%s %s, one credit, tiny batches", kind_name[kind], agg->name);
        compare(&sc, 15, &wc, rc, what, NULL, NULL);
    }
    free(e);
}

/* Event times at the int64 limits: the slice grid saturates there, and the
 * combiner must pre-aggregate and pass records on exactly as the window
 * judges them (late records included), one source, one credit. */
static void test_int64_extremes(void **state)
{
    (void)state;
    const int n = 600;
    const int64_t t0s[2] = {INT64_MIN + 1000, INT64_MAX - 700};
    for (int e0 = 0; e0 < 2; e0++) {
        ev *e = make_events(n, t0s[e0], 5, 15, 25, 400, 1, 7 + (uint64_t)e0);
        for (int kind = 0; kind < 3; kind++) {
            sl_window_conf wc = conf_of(kind, kind == 1 ? &sl_agg_distinct : &sl_agg_sum, 0);
            src_conf sc = {.evs = e, .n = n, .chunk = 16};
            rcfg rc = {.par_src = 1, .par_win = 2, .credits = 1};
            char what[128];
            snprintf(what, sizeof(what), "%s near %s", kind_name[kind],
                     e0 ? "INT64_MAX" : "INT64_MIN");
            compare(&sc, 15, &wc, rc, what, NULL, NULL);
        }
        free(e);
    }
}

/* Several upstream instances (2 and 3 combiners): each window's last result
 * and the records in no window. */
static void test_several_upstream(void **state)
{
    (void)state;
    const int n = 4000;
    for (int par = 2; par <= 3; par++) {
        ev *e = make_events(n, -1500, 11, 30, 30, 500, par, 7 + (uint64_t)par);
        for (int kind = 0; kind < 3; kind++)
            for (size_t a = 0; a < N_AGGS; a++) {
                sl_window_conf wc = conf_of(kind, aggs[a], 1000000);
                src_conf sc = {.evs = e, .n = n, .chunk = 16};
                rcfg rc = {.par_src = par, .par_win = 2, .last_only = 1};
                if (a == 2) rc.credits = 1;
                char what[128];
                snprintf(what, sizeof(what), "%s %s, %d upstream instances", kind_name[kind],
                         aggs[a]->name, par);
                compare(&sc, 30, &wc, rc, what, NULL, NULL);
            }
        free(e);
    }
}

/* The saving: in-order input, one key per ~100 records of a window: the
 * combiner sends about one partial per key, window and upstream instance. */
static void test_saving(void **state)
{
    (void)state;
    const int n = 20000;
    ev *e = make_events(n, 0, 4, 0, 0, 1, 2, 3);
    sl_window_conf wc = sl_window_tumbling(1000, 0);
    wc.agg = &sl_agg_count;
    src_conf sc = {.evs = e, .n = n, .chunk = 256};
    rcfg rc = {.par_src = 2, .par_win = 2};
    sl_window_combine_stats st = compare(&sc, 0, &wc, rc, "saving", NULL, NULL);
    /* 20 windows x 4 keys x 2 instances = 160 partials at most */
    assert_int_equal(st.raw, 0);
    assert_true(st.partials <= 160);
    assert_true(st.partials >= 80);
    free(e);
}

/* Stopped mid-way with a savepoint, restarted: over both runs the output of
 * an uninterrupted run. */
static void restart_case(int par_src, int64_t lateness, const sl_aggregate *agg, int last_only)
{
    const int n = 4000;
    ev *e = make_events(n, -700, 5, 20, 40, 300, par_src, 99);
    sl_window_conf wc = conf_of(0, agg, lateness);
    wc.agg = agg;
    rcfg rc = {.combine = 1, .par_src = par_src, .par_win = 2, .last_only = last_only};
    char err[512];
    /* reference: uninterrupted, combined */
    collected ref;
    collected_init(&ref);
    src_conf sc = {.evs = e, .n = n, .chunk = 8};
    assert_int_equal(run(&sc, 20, &wc, &rc, &ref, NULL, err, sizeof(err)), 0);
    lines a = {0}, b = {0};
    to_lines(&ref, agg, last_only, &a);
    /* stopped: cancel once split 0 emitted 700 records (a savepoint) */
    char dir[] = "/tmp/test_window_combine.XXXXXX";
    assert_non_null(mkdtemp(dir));
    collected both;
    collected_init(&both);
    rc.chk_dir = dir;
    src_conf sc1 = sc;
    sc1.cancel_split = 0;
    sc1.cancel_at = 700;
    sl_window_combine_stats st1;
    int code = run(&sc1, 20, &wc, &rc, &both, &st1, err, sizeof(err));
    if (code) fail_msg("stopped run: %s", err);
    size_t first = sl_collector_count(both.res);
    assert_true(st1.records_in < (uint64_t)n); /* it did stop early */
    assert_true(first < sl_collector_count(ref.res));
    /* restarted from the savepoint, into the same collectors */
    code = run(&sc, 20, &wc, &rc, &both, NULL, err, sizeof(err));
    if (code) fail_msg("restarted run: %s", err);
    to_lines(&both, agg, last_only, &b);
    char what[128];
    snprintf(what, sizeof(what), "restart, %d upstream, %s (uninterrupted / stopped+restarted)",
             par_src, agg->name);
    lines_expect_equal(&a, &b, what);
    lines_free(&a);
    lines_free(&b);
    collected_free(&ref);
    collected_free(&both);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(e);
}

static void test_restart(void **state)
{
    (void)state;
    restart_case(1, 0, &sl_agg_sum, 0); /* exact, late records and all */
    restart_case(1, 0, &sl_agg_distinct, 0);
    restart_case(2, 1000000, &sl_agg_count, 1);
    restart_case(3, 1000000, &sl_agg_avg, 1);
}

/* --- a restart keeps the watermark ----------------------------------------------------- */

/* The probe: a keyed operator behind 2 source instances that notes the
 * least watermark it saw at process() and the watermark it had at its end
 * (the one a savepoint captures). */
typedef struct probe {
    _Atomic int64_t min_at_process, at_end;
} probe;

static int probe_open(sl_ctx *ctx, void **self)
{
    *self = sl_ctx_conf(ctx);
    return 0;
}
static int probe_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    probe *pr = self;
    (void)in;
    int64_t w = sl_ctx_current_watermark(ctx), m = atomic_load(&pr->min_at_process);
    while (w < m && !atomic_compare_exchange_weak(&pr->min_at_process, &m, w)) {}
    return 0;
}
static int probe_end(sl_ctx *ctx, void *self)
{
    probe *pr = self;
    atomic_store(&pr->at_end, sl_ctx_current_watermark(ctx));
    return 0;
}
static const sl_operator probe_op = {.version = SL_OPERATOR_VERSION,
                                     .kind = "probe",
                                     .open = probe_open,
                                     .process = probe_process,
                                     .end = probe_end};

static int run_probe(const src_conf *sc, int threads, const char *dir, probe *pr)
{
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    sl_pipeline_set_threads(p, threads);
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1};
    sl_stream *s = sl_pipeline_source(p, "src", &replay_src, (void *)sc, sizeof(rec), &wm);
    s = sl_stream_parallelism(s, 2);
    s = sl_stream_key_by(s, "key", key_of, NULL);
    s = sl_stream_apply(s, "probe", &probe_op, pr, 0);
    sl_collector *none = sl_collector_new();
    assert_non_null(none);
    sl_stream_sink(s, "none", &sl_sink_collect, none);
    sl_checkpoint_conf cc = {.dir = dir, .interval_ms = 3600000};
    sl_pipeline_set_checkpoint(p, &cc);
    atomic_store(&pr->min_at_process, INT64_MAX);
    atomic_store(&pr->at_end, SL_TIME_MIN);
    int code = sl_pipeline_run(p);
    if (code) fail_msg("probe run: %s", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    sl_collector_free(none);
    return code;
}

/* A task's watermark never goes back across a restart. Split 1 has 10
 * records and ends (split 0 waits for that); split 0 is canceled at its 2000th (a savepoint): the
 * probe's watermark was split 0's, the ended input out of the minimum. The
 * restarted split 1 announces its old watermark (9 - 1) before it finds its
 * end again; the probe must judge split 0's records against the watermark
 * it had at the savepoint all the same, not against 8 (a restarted window
 * added records to windows it had fired without firing them again). Five
 * rounds each on one thread and two. */
static void test_restart_keeps_watermark(void **state)
{
    (void)state;
    const int n0 = 5000, n1 = 10, n = n0 + n1;
    ev *e = calloc(n, sizeof(*e));
    assert_non_null(e);
    for (int j = 0; j < n1; j++) e[j] = (ev){.ts = j, .key = j % 13, .value = 1, .split = 1};
    for (int j = 0; j < n0; j++) e[n1 + j] = (ev){.ts = j, .key = j % 13, .value = 1, .split = 0};
    for (int round = 0; round < 10; round++) {
        int threads = 1 + round % 2;
        char dir[] = "/tmp/test_window_combine.XXXXXX";
        assert_non_null(mkdtemp(dir));
        probe a, b;
        _Atomic int ended = 0;
        src_conf sc = {.evs = e,
                       .n = n,
                       .chunk = 64,
                       .cancel_split = 0,
                       .cancel_at = 2000,
                       .split1_ended = &ended};
        assert_int_equal(run_probe(&sc, threads, dir, &a), 0);
        int64_t saved = atomic_load(&a.at_end);
        assert_int_equal(saved, 1998); /* split 0's: max 1999, delay 0 */
        sc.cancel_at = 0;
        assert_int_equal(run_probe(&sc, threads, dir, &b), 0);
        int64_t seen = atomic_load(&b.min_at_process);
        if (seen < saved)
            fail_msg("%d thread(s): the restarted operator saw watermark %" PRId64
                     " at a record, below the %" PRId64 " it had at the savepoint",
                     threads, seen, saved);
        assert_int_equal(atomic_load(&b.at_end), SL_TIME_MAX);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
    }
    free(e);
}

static void expect_refused(const sl_window_conf *wc, sl_key_fn key, int code, const char *phrase)
{
    sl_pipeline *p = sl_pipeline_new();
    ev one = {.ts = 1, .key = 1, .value = 1};
    src_conf sc = {.evs = &one, .n = 1, .chunk = 1};
    sl_stream *s = sl_pipeline_source(p, "src", &replay_src, &sc, sizeof(rec), NULL);
    sl_stream *w = sl_stream_window_combined(s, "win", key, NULL, wc);
    assert_null(w);
    assert_int_equal(sl_pipeline_run(p), code);
    const char *msg = sl_pipeline_errmsg(p);
    if (!strstr(msg, phrase)) fail_msg("error '%s' does not say '%s'", msg, phrase);
    assert_null(strchr(msg, '\n'));
    sl_pipeline_free(p);
}

static void no_merge_add(void *acc, const void *r, uint32_t len, int64_t ts, const void *ud)
{
    (void)acc, (void)r, (void)len, (void)ts, (void)ud;
}
static void no_merge_init(void *acc, const void *ud)
{
    (void)ud;
    memset(acc, 0, 8);
}
static void no_merge_result(const void *acc, void *out, const void *ud)
{
    (void)ud;
    memcpy(out, acc, 8);
}

static void test_refused(void **state)
{
    (void)state;
    sl_window_conf s = sl_window_session(100);
    s.agg = &sl_agg_count;
    expect_refused(&s, key_of, SL_ENOTSUP, "session windows");
    sl_window_conf e = sl_window_tumbling(100, 0);
    e.agg = &sl_agg_count;
    e.early_ms = 10;
    expect_refused(&e, key_of, SL_ENOTSUP, "early firing");
    static const sl_aggregate nm = {.version = SL_AGGREGATE_VERSION,
                                    .name = "nomerge",
                                    .acc_size = 8,
                                    .result_size = 8,
                                    .init = no_merge_init,
                                    .add = no_merge_add,
                                    .result = no_merge_result};
    sl_window_conf t = sl_window_tumbling(100, 0);
    t.agg = &nm;
    expect_refused(&t, key_of, SL_EINVAL, "merge()");
    t.agg = &sl_agg_count;
    expect_refused(&t, NULL, SL_EINVAL, "no key function");
    t.size = 0;
    expect_refused(&t, key_of, SL_EINVAL, "size must be > 0");
}

static void test_explain(void **state)
{
    (void)state;
    sl_pipeline *p = sl_pipeline_new();
    ev one = {.ts = 1, .key = 1, .value = 1};
    src_conf sc = {.evs = &one, .n = 1, .chunk = 1};
    sl_stream *s = sl_pipeline_source(p, "src", &replay_src, &sc, sizeof(rec), NULL);
    s = sl_stream_parallelism(s, 3);
    sl_window_conf wc = sl_window_tumbling(100, 0);
    wc.agg = &sl_agg_count;
    sl_stream *w = sl_stream_window_combined(s, "win", key_of, NULL, &wc);
    assert_non_null(w);
    assert_non_null(sl_stream_window_late(w));
    assert_null(sl_stream_window_early(w)); /* no early firing: an error */
    sl_pipeline_free(p);

    p = sl_pipeline_new();
    s = sl_pipeline_source(p, "src", &replay_src, &sc, sizeof(rec), NULL);
    s = sl_stream_parallelism(s, 3);
    w = sl_stream_parallelism(sl_stream_window_combined(s, "win", key_of, NULL, &wc), 2);
    sl_stream_sink(w, "out", &sl_sink_collect, NULL);
    sl_buf b = {0};
    assert_int_equal(sl_pipeline_explain(p, &b), 0);
    assert_int_equal(sl_buf_append(&b, "", 1), 0);
    const char *x = (const char *)b.ptr;
    /* both nodes are in the plan, and the combiners run with the source's
     * parallelism, chained to it */
    if (!strstr(x, "src(3) -> win.combine(3): chained") ||
        !strstr(x, "win.combine(3) -> win.key(3): chained") ||
        !strstr(x, "win.key(3) -> win(2): hash"))
        fail_msg("explain does not show the combiner as planned:\n%s", x);
    sl_buf_free(&b);
    sl_pipeline_free(p);
    sl_window_combine_stats st;
    assert_int_equal(sl_window_combined_stats(NULL, &st), SL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_one_source), cmocka_unit_test(test_int64_extremes),
        cmocka_unit_test(test_several_upstream), cmocka_unit_test(test_saving),
        cmocka_unit_test(test_restart),          cmocka_unit_test(test_restart_keeps_watermark),
        cmocka_unit_test(test_refused),          cmocka_unit_test(test_explain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
