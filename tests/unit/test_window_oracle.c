/*
 * tests/unit/test_window_oracle.c - randomized oracle for event-time windows.
 *
 * Thousands of random out-of-order event sequences (random keys, delays,
 * lateness, window kinds and sizes, aggregates) run through real pipelines:
 * a replay source (parallelism 1, punctuated watermarks max - delay - 1 after
 * every record, the engine's strategy) -> key_by -> window (parallelism 1 or 4)
 * -> collecting sinks for results and late records. The sorted output must
 * equal that of a brute-force reference written here from the semantics
 * alone: every window (not slice) kept separately with the list of its
 * values, aggregated from scratch when it fires; sessions as a plain list.
 *
 * The reference, for each record in arrival order, with W the watermark
 * before it: assign; a record in no window at all (sliding, slide > size)
 * goes to the unassigned port, whatever W; skip expired windows
 * (W >= end - 1 + L); a record with no live window is late; a live window with end - 1 <= W fires at once;
 * then the watermark advances and windows whose end - 1 it passes fire,
 * and windows whose end - 1 + L it reaches are purged. At the end the
 * watermark is +inf. Output is compared as sorted text lines.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "test_lines.h"
#include "sluice/sluice.h"
#include "operators/window/window_test.h"

typedef struct ev {
    int64_t ts;
    int64_t key;
    int64_t value;
} ev;

typedef struct rec {
    int64_t key;
    int64_t value;
} rec;

typedef struct ocase {
    ev *evs;
    int n;
    int64_t delay;
    sl_window_conf wc;
    sl_agg_value val;
    uint32_t ring; /* forced ring slots (window_test.h), 0: default */
} ocase;

/* --- text lines ------------------------------------------------------------------ */

static void fmt_result(char *out, size_t cap, const sl_aggregate *agg, const void *res)
{
    if (agg == &sl_agg_avg) {
        double d;
        memcpy(&d, res, 8);
        snprintf(out, cap, "%.6f", d);
    } else {
        int64_t x;
        memcpy(&x, res, 8);
        snprintf(out, cap, "%" PRId64, x);
    }
}

/* --- the pipeline --------------------------------------------------------------- */

typedef struct replay {
    int next;
} replay;

static int replay_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    replay *r = calloc(1, sizeof(*r));
    *self = r;
    return r ? 0 : SL_ENOMEM;
}

static void replay_close(void *self)
{
    free(self);
}

/* The engine's punctuated strategy (run_engine) announces the watermark
 * right after each record that raises it. */
static int replay_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    replay *r = self;
    const ocase *oc = sl_ctx_conf(ctx);
    if (r->next >= oc->n) return SL_POLL_END;
    for (int k = 0; k < 64 && k < (int)max && r->next < oc->n; k++) {
        const ev *e = &oc->evs[r->next++];
        rec x = {e->key, e->value};
        if (sl_emit_copy(ctx, e->ts, 0, &x, sizeof(x))) return sl_ctx_error(ctx);
    }
    return SL_POLL_MORE;
}

static const sl_source replay_src = {.version = SL_SOURCE_VERSION,
                                     .kind = "replay",
                                     .open = replay_open,
                                     .poll = replay_poll,
                                     .close = replay_close};

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

static void run_engine(ocase *oc, int par, lines *out)
{
    sl_collector *res = sl_collector_new(), *late = sl_collector_new(), *unas = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_parallelism(p, par);
    sl_watermark_conf wm = {.delay = oc->delay, .punctuated = 1};
    sl_stream *s = sl_pipeline_source(p, "src", &replay_src, oc, sizeof(rec), &wm);
    s = sl_stream_parallelism(s, 1);
    s = sl_stream_key_by(s, "key", key_of, NULL);
    s = sl_stream_parallelism(s, 1);
    sl_stream *w = sl_stream_window(s, "win", &oc->wc);
    if (oc->ring) assert_int_equal(sli_window_test_ring(w, oc->ring), 0);
    sl_stream *l = sl_stream_window_late(w);
    sl_stream *u = sl_stream_window_unassigned(w);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    sl_stream_sink(l, "late", &sl_sink_collect, late);
    sl_stream_sink(u, "unassigned", &sl_sink_collect, unas);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "pipeline: %s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < sl_collector_count(res); i++) {
        sl_bytes b = sl_collector_get(res, i, NULL);
        sl_window_result r = sl_window_out(b);
        int64_t key;
        assert_int_equal(r.result_size, oc->wc.agg->result_size);
        assert_int_equal(r.key.len, 8);
        memcpy(&key, r.key.ptr, 8);
        char v[64];
        fmt_result(v, sizeof(v), oc->wc.agg, r.result);
        lines_add(out, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%s", r.start, r.end, key, v);
    }
    for (size_t i = 0; i < sl_collector_count(late); i++) {
        int64_t ts;
        sl_bytes b = sl_collector_get(late, i, &ts);
        rec x;
        assert_int_equal(b.len, sizeof(x));
        memcpy(&x, b.ptr, sizeof(x));
        lines_add(out, "late,%" PRId64 ",%" PRId64 ",%" PRId64, ts, x.key, x.value);
    }
    for (size_t i = 0; i < sl_collector_count(unas); i++) {
        int64_t ts;
        sl_bytes b = sl_collector_get(unas, i, &ts);
        rec x;
        assert_int_equal(b.len, sizeof(x));
        memcpy(&x, b.ptr, sizeof(x));
        lines_add(out, "nowin,%" PRId64 ",%" PRId64 ",%" PRId64, ts, x.key, x.value);
    }
    sl_pipeline_free(p);
    sl_collector_free(res);
    sl_collector_free(late);
    sl_collector_free(unas);
}

/* --- the reference ------------------------------------------------------------------ */

typedef struct rwin {
    int64_t key, start, end;
    int64_t *vals;
    int nv, cap;
    int fired; /* sessions: emitted since the last change */
    int alive;
} rwin;

typedef struct ref {
    rwin *w;
    int n, cap;
} ref;

static void rw_add(rwin *w, int64_t v)
{
    if (w->nv == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 8;
        w->vals = realloc(w->vals, (size_t)w->cap * sizeof(int64_t));
    }
    w->vals[w->nv++] = v;
}

static void rw_emit(const ocase *oc, const rwin *w, lines *out)
{
    const sl_aggregate *a = oc->wc.agg;
    uint8_t acc[64], res[64];
    a->init(acc, &oc->val);
    for (int i = 0; i < w->nv; i++) {
        rec x = {w->key, w->vals[i]};
        a->add(acc, &x, sizeof(x), 0, &oc->val);
    }
    a->result(acc, res, &oc->val);
    char v[64];
    fmt_result(v, sizeof(v), a, res);
    lines_add(out, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%s", w->start, w->end, w->key, v);
}

static rwin *ref_new(ref *r, int64_t key, int64_t start, int64_t end)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->w = realloc(r->w, (size_t)r->cap * sizeof(rwin));
    }
    rwin *w = &r->w[r->n++];
    memset(w, 0, sizeof(*w));
    w->key = key;
    w->start = start;
    w->end = end;
    w->alive = 1;
    return w;
}

static int64_t fdiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b) != 0 && ((a < 0) != (b < 0))) q--;
    return q;
}

/* Watermark advance from W to nw: fire and purge. */
static void ref_advance(const ocase *oc, ref *r, int64_t W, int64_t nw, lines *out)
{
    int64_t L = oc->wc.lateness;
    for (int i = 0; i < r->n; i++) {
        rwin *w = &r->w[i];
        if (!w->alive) continue;
        if (oc->wc.kind == SL_WINDOW_SESSION) {
            if (!w->fired && w->end - 1 <= nw) {
                rw_emit(oc, w, out);
                w->fired = 1;
            }
        } else if (w->end - 1 > W && w->end - 1 <= nw) {
            rw_emit(oc, w, out);
        }
        if (w->end - 1 + L <= nw) w->alive = 0;
    }
}

static void run_reference(const ocase *oc, lines *out)
{
    ref r = {0};
    int64_t W = SL_TIME_MIN, maxts = SL_TIME_MIN, L = oc->wc.lateness;
    for (int k = 0; k < oc->n; k++) {
        const ev *e = &oc->evs[k];
        if (oc->wc.kind == SL_WINDOW_SESSION) {
            int64_t ms = e->ts, me = e->ts + oc->wc.gap;
            rwin *keep = NULL;
            /* merge every live session of the key that overlaps or touches */
            int changed = 1;
            while (changed) {
                changed = 0;
                for (int i = 0; i < r.n; i++) {
                    rwin *w = &r.w[i];
                    if (!w->alive || w->key != e->key || w == keep) continue;
                    if (w->start <= me && w->end >= ms) {
                        if (w->start < ms) ms = w->start;
                        if (w->end > me) me = w->end;
                        if (!keep) {
                            keep = w;
                        } else {
                            for (int j = 0; j < w->nv; j++) rw_add(keep, w->vals[j]);
                            w->alive = 0;
                        }
                        changed = 1;
                    }
                }
            }
            if (!keep && W >= me - 1 + L) {
                lines_add(out, "late,%" PRId64 ",%" PRId64 ",%" PRId64, e->ts, e->key, e->value);
            } else {
                if (!keep) {
                    keep = ref_new(&r, e->key, ms, me);
                } else {
                    if (keep->start != ms || keep->end != me) keep->fired = 0;
                    keep->start = ms;
                    keep->end = me;
                }
                rw_add(keep, e->value);
                if (me - 1 <= W) {
                    rw_emit(oc, keep, out);
                    keep->fired = 1;
                }
            }
        } else {
            int64_t size = oc->wc.size;
            int64_t slide = oc->wc.kind == SL_WINDOW_TUMBLING ? size : oc->wc.slide;
            int64_t off = oc->wc.offset % slide;
            int64_t last = off + fdiv(e->ts - off, slide) * slide;
            int alive = 0;
            if (last <= e->ts - size) { /* in the gap after window [last, last + size) */
                lines_add(out, "nowin,%" PRId64 ",%" PRId64 ",%" PRId64, e->ts, e->key, e->value);
                goto advance;
            }
            for (int64_t st = last; st > e->ts - size; st -= slide) {
                int64_t end = st + size;
                if (W >= end - 1 + L) continue;
                alive = 1;
                rwin *w = NULL;
                for (int i = 0; i < r.n; i++)
                    if (r.w[i].alive && r.w[i].key == e->key && r.w[i].start == st) w = &r.w[i];
                if (!w) w = ref_new(&r, e->key, st, end);
                rw_add(w, e->value);
                if (end - 1 <= W) rw_emit(oc, w, out);
            }
            if (!alive)
                lines_add(out, "late,%" PRId64 ",%" PRId64 ",%" PRId64, e->ts, e->key, e->value);
        }
    advance:
        if (e->ts > maxts) maxts = e->ts;
        int64_t nw = maxts - oc->delay - 1;
        if (nw > W) {
            ref_advance(oc, &r, W, nw, out);
            W = nw;
        }
    }
    ref_advance(oc, &r, W, SL_TIME_MAX, out);
    for (int i = 0; i < r.n; i++) free(r.w[i].vals);
    free(r.w);
}

/* --- random cases -------------------------------------------------------------------- */

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int64_t rnd_in(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static const sl_aggregate *const aggs[] = {&sl_agg_count, &sl_agg_sum, &sl_agg_min, &sl_agg_max,
                                           &sl_agg_avg};

static void make_case(ocase *oc)
{
    memset(oc, 0, sizeof(*oc));
    int kind = (int)rnd_in(0, 2);
    if (kind == 0) {
        oc->wc = sl_window_tumbling(rnd_in(1, 40), rnd_in(-5, 5));
    } else if (kind == 1) {
        int64_t slide = rnd_in(1, 15);
        oc->wc = sl_window_sliding(rnd_in(1, 50), slide);
        oc->wc.offset = rnd_in(0, 3);
    } else {
        oc->wc = sl_window_session(rnd_in(1, 25));
    }
    oc->wc.lateness = rnd() % 3 == 0 ? 0 : rnd_in(0, 40);
    oc->delay = rnd() % 4 == 0 ? 0 : rnd_in(0, 30);
    oc->val.offset = 8;
    oc->wc.agg = aggs[rnd() % 5];
    oc->wc.agg_ud = &oc->val;
    oc->n = (int)rnd_in(1, 150);
    oc->evs = calloc((size_t)oc->n, sizeof(ev));
    int64_t base = rnd_in(-100, 100), nkeys = rnd_in(1, 5), jitter = rnd_in(0, 60);
    for (int i = 0; i < oc->n; i++) {
        base += rnd_in(0, 4);
        int64_t ts = base - (rnd() % 3 == 0 ? rnd_in(0, jitter) : 0);
        if (rnd() % 25 == 0) ts -= rnd_in(0, 200); /* some very late ones */
        oc->evs[i].ts = ts;
        oc->evs[i].key = rnd_in(1, nkeys);
        oc->evs[i].value = rnd_in(-50, 50);
    }
}

static void describe(const ocase *oc)
{
    fprintf(stderr,
            "case: kind=%d size=%" PRId64 " slide=%" PRId64 " offset=%" PRId64 " gap=%" PRId64
            " L=%" PRId64 " delay=%" PRId64 " agg=%s n=%d\n",
            (int)oc->wc.kind, oc->wc.size, oc->wc.slide, oc->wc.offset, oc->wc.gap, oc->wc.lateness,
            oc->delay, oc->wc.agg->name, oc->n);
    for (int i = 0; i < oc->n; i++)
        fprintf(stderr, "  ev %" PRId64 " k%" PRId64 " v%" PRId64 "\n", oc->evs[i].ts,
                oc->evs[i].key, oc->evs[i].value);
}

static int check_case(ocase *oc, int par)
{
    lines a = {0}, b = {0};
    run_reference(oc, &a);
    run_engine(oc, par, &b);
    qsort(a.v, a.n, sizeof(char *), cmp_str);
    qsort(b.v, b.n, sizeof(char *), cmp_str);
    int ok = a.n == b.n;
    for (size_t i = 0; ok && i < a.n; i++) ok = strcmp(a.v[i], b.v[i]) == 0;
    if (!ok) {
        describe(oc);
        fprintf(stderr, "parallelism %d: expected %zu lines, got %zu\n", par, a.n, b.n);
        for (size_t i = 0; i < a.n || i < b.n; i++)
            fprintf(stderr, "  %-40s | %s\n", i < a.n ? a.v[i] : "", i < b.n ? b.v[i] : "");
    }
    lines_free(&a);
    lines_free(&b);
    return ok;
}

static void test_oracle_random(void **state)
{
    const char *env = getenv("SLUICE_ORACLE_CASES");
    int cases = env ? atoi(env) : 1500;
    const char *seed = getenv("SLUICE_ORACLE_SEED");
    if (seed) rng_state = strtoull(seed, NULL, 0) | 1;
    int failures = 0;
    for (int c = 0; c < cases && failures < 3; c++) {
        ocase oc;
        make_case(&oc);
        if (!check_case(&oc, 1))
            failures++;
        else if (!check_case(&oc, 4))
            failures++;
        free(oc.evs);
    }
    assert_int_equal(failures, 0);
}

/* The same with a tiny per-key ring (forced through the test hook of
 * operators/window/window_test.h), so that most slices live in the far list
 * and firing takes the slice-by-slice path. */
static void test_oracle_small_ring(void **state)
{
    static const uint32_t rings[] = {1, 4};
    int failures = 0;
    for (int r = 0; r < 2; r++) {
        for (int c = 0; c < 200 && failures < 3; c++) {
            ocase oc;
            make_case(&oc);
            oc.ring = rings[r];
            if (!check_case(&oc, 1) || !check_case(&oc, 4)) failures++;
            free(oc.evs);
        }
    }
    assert_int_equal(failures, 0);
}

/* A few fixed cases that pin the boundaries (fires at end - 1, expiry at
 * end - 1 + L) and the end of input. */
static void test_oracle_fixed(void **state)
{
    static const ev evs[] = {{0, 1, 1}, {9, 1, 2}, {10, 1, 3}, {19, 1, 4},  {5, 1, 5},  {25, 1, 6},
                             {8, 1, 7}, {3, 2, 8}, {40, 1, 9}, {12, 1, 10}, {29, 1, 11}};
    for (int kind = 0; kind < 3; kind++) {
        for (int64_t L = 0; L <= 12; L += 6) {
            ocase oc = {0};
            oc.evs = (ev *)evs;
            oc.n = (int)(sizeof(evs) / sizeof(evs[0]));
            oc.delay = 0;
            oc.wc = kind == 0   ? sl_window_tumbling(10, 0)
                    : kind == 1 ? sl_window_sliding(10, 5)
                                : sl_window_session(4);
            oc.wc.lateness = L;
            oc.val.offset = 8;
            oc.wc.agg = &sl_agg_sum;
            oc.wc.agg_ud = &oc.val;
            assert_true(check_case(&oc, 1));
            assert_true(check_case(&oc, 4));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_fixed),
        cmocka_unit_test(test_oracle_random),
        cmocka_unit_test(test_oracle_small_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
