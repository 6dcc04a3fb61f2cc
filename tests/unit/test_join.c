/*
 * tests/unit/test_join.c - window and interval joins (sluice/join.h)
 * against a nested-loop oracle on random inputs.
 *
 * A replay source (parallelism 1, punctuated watermarks max - D - 1 after
 * every record) emits records of two sides; two filters split them into the
 * left and right inputs, each keyed, into a join at parallelism 1 or 4, with
 * one credit in half of the runs. Event times are out of order by up to D
 * (then no record is late at the source, so none is at the join), start at
 * 0 or below, and some records are made late on purpose: a copy of an
 * earlier record's key and time, far behind the watermark.
 *
 * Whether such a record is late at the join depends on how far the join's
 * watermark (the least of its inputs') has got when it arrives, which the
 * threads decide. So the check is: the join's results equal the oracle's
 * pairs over the records that did not go to the late ports, and every
 * record on a late port is one of the copies made late, late by the join's
 * rule against the source's watermark when it was emitted (the join's is
 * never ahead of it). Nothing else may be diverted and nothing lost.
 *
 * The oracle: every pair (l, r) of equal keys; tumbling and sliding windows:
 * once per window holding both, at end - 1; sessions: runs of the key's
 * records sorted by time, no more than gap apart, at last + gap - 1;
 * interval: l.ts + lower <= r.ts <= l.ts + upper, at max(l.ts, r.ts).
 * Session cases use even times and an odd gap, so that no record lands
 * exactly on the end of a session that may have fired already (a touch
 * the engine cannot merge with a purged window, as in Flink); touching
 * sessions are tested on their own, in order.
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
#include "sluice/join.h"
#include "test_lines.h"

typedef struct rec {
    int64_t id, key;
    int32_t side, made_late;
} rec;

typedef struct ev {
    int64_t ts;
    rec r;
} ev;

typedef struct out_rec {
    int64_t lid, rid, ts, ws, we;
} out_rec;

typedef struct jcase {
    ev *evs;
    int n;
    int64_t delay;
    sl_join_conf jc;
    int cancel_at;       /* > 0: the source stops the job (a savepoint) after this many */
    const char *chk_dir; /* checkpoints there; a start resumes from the latest */
} jcase;

/* --- the pipeline ------------------------------------------------------------------ */

typedef struct replay {
    int next, stopped;
} replay;

static int replay_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    (void)ctx, (void)split;
    replay *r = calloc(1, sizeof(*r));
    *self = r;
    return r ? 0 : SL_ENOMEM;
}

static void replay_close(void *self)
{
    free(self);
}

static int replay_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    replay *r = self;
    const jcase *jc = sl_ctx_conf(ctx);
    if (r->stopped) return SL_POLL_WAIT;
    if (r->next >= jc->n) return SL_POLL_END;
    for (int k = 0; k < 16 && k < (int)max && r->next < jc->n; k++) {
        const ev *e = &jc->evs[r->next++];
        if (sl_emit_copy(ctx, e->ts, 0, &e->r, sizeof(rec))) return sl_ctx_error(ctx);
        if (jc->cancel_at && r->next == jc->cancel_at) {
            sl_pipeline_cancel(sl_ctx_pipeline(ctx));
            r->stopped = 1;
            return SL_POLL_MORE;
        }
    }
    return SL_POLL_MORE;
}

static int replay_position(sl_ctx *ctx, void *self, sl_buf *out)
{
    (void)ctx;
    const replay *r = self;
    return sl_buf_append(out, &r->next, sizeof(r->next));
}

static int replay_seek(sl_ctx *ctx, void *self, const void *pos, size_t len)
{
    (void)ctx;
    replay *r = self;
    if (len != sizeof(r->next)) return SL_ECORRUPT;
    memcpy(&r->next, pos, len);
    return 0;
}

static const sl_source replay_src = {.version = SL_SOURCE_VERSION,
                                     .kind = "replay",
                                     .open = replay_open,
                                     .poll = replay_poll,
                                     .position = replay_position,
                                     .seek = replay_seek,
                                     .close = replay_close};

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    (void)len, (void)ud;
    return (sl_bytes){(const uint8_t *)p + offsetof(rec, key), 8};
}

static int is_left(const void *p, uint32_t len, int64_t ts, void *ud)
{
    (void)len, (void)ts, (void)ud;
    return ((const rec *)p)->side == 0;
}
static int is_right(const void *p, uint32_t len, int64_t ts, void *ud)
{
    (void)len, (void)ts, (void)ud;
    return ((const rec *)p)->side == 1;
}

static int join_fn(sl_ctx *ctx, const sl_join_match *m, void *ud)
{
    (void)ud;
    rec l, r;
    if (m->left.len != sizeof(rec) || m->right.len != sizeof(rec) || m->key.len != 8)
        return sl_ctx_fail(ctx, SL_EINVAL, "bad match");
    memcpy(&l, m->left.ptr, sizeof l);
    memcpy(&r, m->right.ptr, sizeof r);
    if (l.side != 0 || r.side != 1 || l.key != r.key || memcmp(m->key.ptr, &l.key, 8) != 0)
        return sl_ctx_fail(ctx, SL_EINVAL, "a pair of the wrong sides or keys: %d %d %lld %lld",
                           l.side, r.side, (long long)l.key, (long long)r.key);
    out_rec o = {l.id, r.id, m->ts, m->window_start, m->window_end};
    return sl_emit_copy(ctx, m->ts, m->hash, &o, sizeof o);
}

/* Runs the case; results into `got`, the ids of late records into late[]. */
static void run_engine(jcase *jc, int par, int credits, lines *got, uint8_t *late)
{
    sl_collector *res = sl_collector_new(), *ll = sl_collector_new(), *lr = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_parallelism(p, par);
    if (credits) sl_pipeline_set_credits(p, credits);
    sl_watermark_conf wm = {.delay = jc->delay, .punctuated = 1};
    sl_stream *s =
        sl_stream_parallelism(sl_pipeline_source(p, "src", &replay_src, jc, sizeof(rec), &wm), 1);
    sl_stream *l = sl_stream_key_by(sl_stream_filter(s, "left", is_left, NULL), "lk", key_of, NULL);
    sl_stream *r =
        sl_stream_key_by(sl_stream_filter(s, "right", is_right, NULL), "rk", key_of, NULL);
    if (jc->chk_dir) {
        sl_checkpoint_conf cc = {.dir = jc->chk_dir, .interval_ms = 3600000};
        assert_int_equal(sl_pipeline_set_checkpoint(p, &cc), 0);
    }
    jc->jc.fn = join_fn;
    jc->jc.out_width = sizeof(out_rec);
    sl_stream *j = sl_stream_join(l, r, "join", &jc->jc);
    assert_non_null(j);
    assert_int_equal(sl_stream_sink(j, "out", &sl_sink_collect, res), 0);
    assert_int_equal(sl_stream_sink(sl_stream_join_late(j, 0), "late_l", &sl_sink_collect, ll), 0);
    assert_int_equal(sl_stream_sink(sl_stream_join_late(j, 1), "late_r", &sl_sink_collect, lr), 0);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "pipeline: %s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < sl_collector_count(res); i++) {
        int64_t ts;
        sl_bytes b = sl_collector_get(res, i, &ts);
        out_rec o;
        assert_int_equal(b.len, sizeof o);
        memcpy(&o, b.ptr, sizeof o);
        assert_true(ts == o.ts);
        lines_add(got, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64, o.lid, o.rid,
                  o.ts, o.ws, o.we);
    }
    sl_collector *lates[2] = {ll, lr};
    for (int side = 0; side < 2; side++) {
        for (size_t i = 0; i < sl_collector_count(lates[side]); i++) {
            int64_t ts;
            sl_bytes b = sl_collector_get(lates[side], i, &ts);
            rec x;
            assert_int_equal(b.len, sizeof x);
            memcpy(&x, b.ptr, sizeof x);
            assert_int_equal(x.side, side);
            assert_true(x.id >= 0 && x.id < jc->n);
            assert_int_equal(late[x.id], 0); /* once */
            assert_true(jc->evs[x.id].ts == ts);
            late[x.id] = 1;
        }
    }
    sl_pipeline_stats st;
    sl_pipeline_stats_get(p, &st);
    assert_int_equal(st.late, sl_collector_count(ll) + sl_collector_count(lr));
    sl_pipeline_free(p);
    sl_collector_free(res);
    sl_collector_free(ll);
    sl_collector_free(lr);
}

/* --- the oracle --------------------------------------------------------------------- */

static int64_t mod_floor(int64_t a, int64_t b)
{
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

static int cmp_ev_ts(const void *a, const void *b)
{
    const ev *x = *(const ev *const *)a, *y = *(const ev *const *)b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->r.id < y->r.id ? -1 : x->r.id > y->r.id;
}

static void oracle(const jcase *jc, const uint8_t *late, lines *want)
{
    const sl_join_conf *c = &jc->jc;
    const sl_window_conf *w = &c->window;
    if (c->kind == SL_JOIN_WINDOW && w->kind == SL_WINDOW_SESSION) {
        /* per key: the records sorted by time, cut into runs */
        const ev **v = malloc((size_t)jc->n * sizeof(*v));
        int64_t keys[64];
        int nk = 0;
        for (int i = 0; i < jc->n; i++) {
            int seen = 0;
            for (int k = 0; k < nk; k++) seen |= keys[k] == jc->evs[i].r.key;
            if (!seen) keys[nk++] = jc->evs[i].r.key;
        }
        for (int k = 0; k < nk; k++) {
            int m = 0;
            for (int i = 0; i < jc->n; i++)
                if (!late[i] && jc->evs[i].r.key == keys[k]) v[m++] = &jc->evs[i];
            qsort(v, (size_t)m, sizeof(*v), cmp_ev_ts);
            for (int a = 0; a < m;) {
                int b = a + 1;
                while (b < m && v[b]->ts <= v[b - 1]->ts + w->gap) b++;
                int64_t end = v[b - 1]->ts + w->gap;
                for (int x = a; x < b; x++)
                    for (int y = a; y < b; y++)
                        if (v[x]->r.side == 0 && v[y]->r.side == 1)
                            lines_add(want,
                                      "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64,
                                      v[x]->r.id, v[y]->r.id, end - 1, v[a]->ts, end);
                a = b;
            }
        }
        free(v);
        return;
    }
    for (int i = 0; i < jc->n; i++) {
        const ev *l = &jc->evs[i];
        if (late[i] || l->r.side != 0) continue;
        for (int j = 0; j < jc->n; j++) {
            const ev *r = &jc->evs[j];
            if (late[j] || r->r.side != 1 || r->r.key != l->r.key) continue;
            if (c->kind == SL_JOIN_INTERVAL) {
                if (l->ts + c->lower <= r->ts && r->ts <= l->ts + c->upper)
                    lines_add(want, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64,
                              l->r.id, r->r.id, l->ts > r->ts ? l->ts : r->ts, l->ts + c->lower,
                              l->ts + c->upper + 1);
                continue;
            }
            int64_t last = l->ts - mod_floor(l->ts - w->offset, w->slide);
            for (int64_t st = last; st > l->ts - w->size; st -= w->slide)
                if (r->ts >= st && r->ts < st + w->size)
                    lines_add(want, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64,
                              l->r.id, r->r.id, st + w->size - 1, st, st + w->size);
        }
    }
}

/* Record i, diverted, was late by the join's rule against the source's
 * watermark before it (max time before it - D - 1): a necessary condition
 * (the join's watermark is never ahead of the source's) that a record the
 * join had no reason to divert fails. For sessions the record's window is
 * the run it makes with the records that came before it and were not
 * diverted: a run whose end the source's watermark had not reached cannot
 * have fired at the join, so its records were there to merge with. */
static void check_late_is_late(const jcase *jc, const uint8_t *late, int i)
{
    int64_t max = INT64_MIN;
    for (int k = 0; k < i; k++)
        if (jc->evs[k].ts > max) max = jc->evs[k].ts;
    assert_true(jc->evs[i].r.made_late);
    assert_true(max != INT64_MIN);
    int64_t wm = max - jc->delay - 1, t = jc->evs[i].ts;
    const sl_join_conf *c = &jc->jc;
    const sl_window_conf *w = &c->window;
    if (c->kind == SL_JOIN_INTERVAL) {
        assert_true(t <= wm);
    } else if (w->kind == SL_WINDOW_SESSION) {
        int64_t last = t;
        for (int more = 1; more;) {
            more = 0;
            for (int k = 0; k < i; k++) {
                const ev *e = &jc->evs[k];
                if (late[k] || e->r.key != jc->evs[i].r.key) continue;
                if (e->ts > last && e->ts <= last + w->gap) last = e->ts, more = 1;
            }
        }
        assert_true(last + w->gap - 1 <= wm);
    } else {
        assert_true(t - mod_floor(t - w->offset, w->slide) + w->size - 1 <= wm);
    }
}

/* --- random cases ----------------------------------------------------------------- */

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static int64_t rnd_in(int64_t lo, int64_t hi) /* [lo, hi] */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

/* n records with times base + step * i + [0, D] (even for sessions), keys
 * 1..nkeys, random sides; about pct_late % are copies of an earlier
 * record's key and time made far behind the watermark, and as many, when
 * near >= 0, are records at about the source's watermark - near, where the
 * join's rule puts them at the edge of lateness. */
static void make_events(jcase *jc, int n, int nkeys, int64_t step, int even, int pct_late,
                        int64_t far, int64_t near)
{
    jc->evs = calloc((size_t)n, sizeof(ev));
    jc->n = n;
    int64_t base = rnd_in(0, 2) == 0 ? 0 : -rnd_in(1, 5000), max = INT64_MIN;
    for (int i = 0; i < n; i++) {
        ev *e = &jc->evs[i];
        e->r.id = i;
        e->r.side = (int32_t)(rnd() & 1);
        int made = 0;
        if (i > 10 && (int)rnd_in(0, 99) < pct_late) {
            int j = (int)rnd_in(0, i - 1);
            if (jc->evs[j].ts < max - jc->delay - 1 - far) {
                e->ts = jc->evs[j].ts;
                e->r.key = jc->evs[j].r.key;
                e->r.made_late = 1;
                made = 1;
            }
        }
        if (!made && near >= 0 && i > 10 && (int)rnd_in(0, 99) < pct_late) {
            e->ts = max - jc->delay - 1 - near + rnd_in(-2, 2);
            e->r.key = rnd_in(1, nkeys);
            e->r.made_late = 1;
            made = 1;
        }
        if (!made) {
            e->ts = base + step * i + rnd_in(0, jc->delay);
            if (even) e->ts &= ~(int64_t)1;
            e->r.key = rnd_in(1, nkeys);
            /* now and then a burst far ahead so that windows close mid-stream */
            if (rnd_in(0, 199) == 0) base += rnd_in(1, 50) * step * 20;
        }
        if (e->ts > max) max = e->ts;
    }
}

static long n_diverted, n_results; /* over a test's rounds: the paths were taken */

static void run_case(jcase *jc, int par, int credits)
{
    lines got = {0}, want = {0};
    uint8_t *late = calloc((size_t)jc->n, 1);
    run_engine(jc, par, credits, &got, late);
    for (int i = 0; i < jc->n; i++)
        if (late[i]) check_late_is_late(jc, late, i), n_diverted++;
    n_results += (long)got.n;
    oracle(jc, late, &want);
    char what[96];
    snprintf(what, sizeof what, "join kind %d/%d par %d credits %d n %d", jc->jc.kind,
             jc->jc.window.kind, par, credits, jc->n);
    lines_expect_equal(&got, &want, what);
    lines_free(&got);
    lines_free(&want);
    free(late);
}

/* near: where records at the edge of lateness go (make_events), -1: none. */
static void random_cases(sl_join_conf (*make)(void), int even, int pct_late, int rounds, int near)
{
    n_diverted = n_results = 0;
    for (int round = 0; round < rounds; round++) {
        jcase jc = {.jc = make(), .delay = rnd_in(0, 40)};
        int64_t far = 4 * (jc.jc.window.size + jc.jc.window.gap + llabs(jc.jc.upper) +
                           llabs(jc.jc.lower) + jc.delay + 1);
        int64_t edge = near < 0 ? -1 : jc.jc.kind == SL_JOIN_INTERVAL ? 0 : jc.jc.window.size - 1;
        make_events(&jc, (int)rnd_in(50, 800), (int)rnd_in(1, 12), rnd_in(1, 7), even, pct_late,
                    far, edge);
        run_case(&jc, round % 2 ? 4 : 1, round % 3 == 0 ? 1 : 0);
        free(jc.evs);
    }
    fprintf(stderr, "%d rounds: %ld results, %ld records late\n", rounds, n_results, n_diverted);
    assert_true(n_results > 1000);
    if (pct_late) assert_true(n_diverted > 10);
}

static sl_join_conf make_tumbling(void)
{
    return sl_join_window(sl_window_tumbling(rnd_in(5, 120), rnd_in(-30, 30)));
}
static sl_join_conf make_sliding(void)
{
    int64_t slide = rnd_in(3, 40);
    return sl_join_window(sl_window_sliding(slide * rnd_in(1, 5), slide));
}
static sl_join_conf make_session(void)
{
    return sl_join_window(sl_window_session(2 * rnd_in(2, 30) + 1)); /* odd gap */
}
static sl_join_conf make_interval(void)
{
    int64_t a = rnd_in(-60, 60), b = rnd_in(-60, 60);
    return sl_join_interval(a < b ? a : b, a < b ? b : a);
}

static void test_tumbling(void **state)
{
    (void)state;
    random_cases(make_tumbling, 0, 4, 60, 1);
}

/* Sliding windows get no records made late: one made late could be late
 * for some of its windows and not others, depending on the threads. Nor do
 * sessions get records at the edge: one behind the watermark but not late
 * could merge with a session that fired (as in Flink), which the oracle
 * cannot know. */
static void test_sliding(void **state)
{
    (void)state;
    random_cases(make_sliding, 0, 0, 60, -1);
}

static void test_session(void **state)
{
    (void)state;
    random_cases(make_session, 1, 4, 60, -1);
}

static void test_interval(void **state)
{
    (void)state;
    random_cases(make_interval, 0, 4, 60, 1);
}

/* Sessions that touch (a record at the previous one's time + gap) merge,
 * over both sides; event time 0 and negative times are ordinary. */
static void test_session_touch(void **state)
{
    (void)state;
    ev evs[] = {{-10, {0, 7, 0, 0}}, {0, {1, 7, 1, 0}},  {10, {2, 7, 0, 0}},
                {21, {3, 7, 1, 0}},  {40, {4, 7, 1, 0}}, {41, {5, 7, 0, 0}}};
    jcase jc = {.evs = evs, .n = 6, .delay = 0, .jc = sl_join_window(sl_window_session(10))};
    lines got = {0}, want = {0};
    uint8_t late[6] = {0};
    run_engine(&jc, 1, 1, &got, late);
    for (int i = 0; i < 6; i++) assert_int_equal(late[i], 0);
    /* [-10, 20) holds 0 (l), 1 (r), 2 (l); 21 starts [21, 31); 40, 41 make [40, 51) */
    lines_add(&want, "0,1,19,-10,20");
    lines_add(&want, "2,1,19,-10,20");
    lines_add(&want, "5,4,50,40,51");
    lines_expect_equal(&got, &want, "touching sessions");
    lines_free(&got);
    lines_free(&want);
}

/* Stopped with a savepoint part-way (the join holding records of windows
 * not fired yet), then restarted from it at another parallelism: the two
 * runs' results together are the oracle's, each pair once. */
static void restart_case(sl_join_conf (*make)(void), int even, int par1, int par2)
{
    jcase jc = {.jc = make(), .delay = rnd_in(0, 40)};
    make_events(&jc, 3000, 9, 2, even, 0, 0, -1);
    char dir[] = "/tmp/test_join.XXXXXX";
    assert_non_null(mkdtemp(dir));
    lines got = {0}, want = {0};
    uint8_t *late = calloc((size_t)jc.n, 1);
    jc.chk_dir = dir;
    jc.cancel_at = 1500;
    run_engine(&jc, par1, 0, &got, late);
    size_t first = got.n;
    jc.cancel_at = 0;
    run_engine(&jc, par2, 0, &got, late);
    assert_true(first > 0 && got.n > first); /* results on both sides of the stop */
    for (int i = 0; i < jc.n; i++) assert_int_equal(late[i], 0);
    oracle(&jc, late, &want);
    char what[96];
    snprintf(what, sizeof what, "restart %d -> %d, kind %d/%d", par1, par2, jc.jc.kind,
             jc.jc.window.kind);
    lines_expect_equal(&got, &want, what);
    lines_free(&got);
    lines_free(&want);
    free(late);
    free(jc.evs);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_restart(void **state)
{
    (void)state;
    restart_case(make_tumbling, 0, 1, 4);
    restart_case(make_sliding, 0, 4, 2);
    restart_case(make_session, 1, 2, 3);
    restart_case(make_interval, 0, 3, 1);
}

/* Event times at both ends of int64: window starts and ends, interval
 * bounds and expiries saturate instead of wrapping (UBSan checks the
 * arithmetic in CI); each end's pair meets once, nothing is late. */
static void test_int64_ends(void **state)
{
    (void)state;
    ev evs[] = {{INT64_MIN + 5, {0, 3, 0, 0}},
                {INT64_MIN + 6, {1, 3, 1, 0}},
                {INT64_MAX - 3, {2, 3, 0, 0}},
                {INT64_MAX - 2, {3, 3, 1, 0}}};
    sl_join_conf confs[] = {sl_join_window(sl_window_tumbling(10, 0)),
                            sl_join_window(sl_window_sliding(10, 5)),
                            sl_join_window(sl_window_session(10)), sl_join_interval(-5, 5)};
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        jcase jc = {.evs = evs, .n = 4, .delay = 0, .jc = confs[c]};
        lines got = {0};
        uint8_t late[4] = {0};
        run_engine(&jc, 1, 1, &got, late);
        for (int i = 0; i < 4; i++) assert_int_equal(late[i], 0);
        size_t low = 0, high = 0;
        for (size_t i = 0; i < got.n; i++) {
            if (strncmp(got.v[i], "0,1,", 4) == 0) low++;
            if (strncmp(got.v[i], "2,3,", 4) == 0) high++;
        }
        if (low < 1 || high < 1 || low + high != got.n) {
            fprintf(stderr, "conf %zu: %zu results, %zu low, %zu high\n", c, got.n, low, high);
            fail();
        }
        lines_free(&got);
    }
}

static int ok_fn(sl_ctx *ctx, const sl_join_match *m, void *ud)
{
    (void)ctx, (void)m, (void)ud;
    return 0;
}

/* Bad confs and inputs get one-line errors naming the problem. */
static void test_bad_conf(void **state)
{
    (void)state;
    struct {
        sl_join_conf c;
        int keyed;
        const char *msg;
    } cases[] = {
        {sl_join_interval(5, 1), 1, "lower <= upper"},
        {sl_join_window(sl_window_sliding(10, 20)), 1, "slide <= size"},
        {sl_join_window(sl_window_tumbling(0, 0)), 1, "size > 0"},
        {sl_join_window(sl_window_session(0)), 1, "gap > 0"},
        {sl_join_interval(0, 1), 0, "must be keyed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_pipeline *p = sl_pipeline_new();
        jcase jc = {0};
        sl_stream *s = sl_pipeline_source(p, "src", &replay_src, &jc, sizeof(rec), NULL);
        sl_stream *l = sl_stream_key_by(s, "lk", key_of, NULL);
        sl_stream *r = cases[i].keyed ? sl_stream_key_by(s, "rk", key_of, NULL) : s;
        sl_join_conf c = cases[i].c;
        c.fn = ok_fn;
        assert_null(sl_stream_join(l, r, "j", &c));
        const char *msg = sl_pipeline_errmsg(p);
        if (!strstr(msg, cases[i].msg) || strchr(msg, '\n')) {
            fprintf(stderr, "case %zu: '%s'\n", i, msg);
            fail();
        }
        sl_pipeline_free(p);
    }
    /* lateness and a missing fn */
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_source(p, "src", &replay_src, NULL, sizeof(rec), NULL);
    sl_stream *k = sl_stream_key_by(s, "k", key_of, NULL);
    sl_join_conf c = sl_join_window(sl_window_tumbling(10, 0));
    assert_null(sl_stream_join(k, k, "j", &c));
    assert_non_null(strstr(sl_pipeline_errmsg(p), "fn is required"));
    sl_pipeline_free(p);
    p = sl_pipeline_new();
    s = sl_pipeline_source(p, "src", &replay_src, NULL, sizeof(rec), NULL);
    k = sl_stream_key_by(s, "k", key_of, NULL);
    c.fn = ok_fn;
    c.window.lateness = 5;
    assert_null(sl_stream_join(k, k, "j", &c));
    assert_non_null(strstr(sl_pipeline_errmsg(p), "lateness"));
    sl_pipeline_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tumbling),      cmocka_unit_test(test_sliding),
        cmocka_unit_test(test_session),       cmocka_unit_test(test_interval),
        cmocka_unit_test(test_session_touch), cmocka_unit_test(test_bad_conf),
        cmocka_unit_test(test_restart),       cmocka_unit_test(test_int64_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
