/*
 * tests/unit/test_window_prefetch.c - the windows' prefetch path gives the
 * results of the plain path.
 *
 * An aggregate with a prefetch hook (sl_aggregate version 3) makes the
 * tumbling and sliding windows prefetch and defer its adds through a small
 * FIFO (operators/window/slices.c); nothing else may change. Each random
 * case runs the same records through two pipelines that differ only in the
 * aggregate table: one with the hook, one without (a version 2 copy), and
 * the sorted output lines (results, late records, records in no window)
 * must be equal. Two aggregates:
 *   - "ord": an ORDER-SENSITIVE accumulator (count, and a polynomial hash
 *     of the values in the order they were added; merge appends), so an
 *     add that is lost, doubled, moved to another accumulator or done out
 *     of record order changes the result; its hook counts its calls, so the
 *     test also checks that the deferred path ran;
 *   - sl_agg_distinct against a copy of it without the hook.
 * Cases: tumbling, sliding and session windows, allowed lateness and very
 * late records, event time 0 and negative times, up to 12 keys of which
 * some first appear late in the input (new keys in the middle of a batch),
 * source batches of 1 to 200 records, channel credits 1 or the default,
 * rings of 1 slot (everything in the far list) or the default, parallelism
 * 1. Not parallelism 2: there two runs of the SAME plain pipeline over
 * these inputs gave different late records and results (an engine matter,
 * not the prefetch path's; SLUICE_PREFETCH_SELF=1 runs plain against plain
 * to show it after setting par = 2 in make_case). Fixed cases pin a key
 * created mid-batch, a new slice and a purge while adds are queued, late
 * records and event time 0. The prefetching path is forced on for few
 * keys (sli_win_prefetch_min = 0); test_threshold checks the default.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "test_lines.h"
#include "sluice/sluice.h"
#include "operators/window/window_int.h"
#include "operators/window/window_test.h"

typedef struct ev {
    int64_t ts, key, value;
} ev;

typedef struct rec {
    int64_t key, value;
} rec;

typedef struct pcase {
    ev *evs;
    int n;
    int batch; /* records per source poll */
    int credits;
    int par;
    uint32_t ring;
    int64_t delay;
    sl_window_conf wc;
    sl_agg_value val;
} pcase;

/* --- the order-sensitive aggregate ----------------------------------------------- */

#define ORD_K 0x100000001B3ull /* FNV prime: odd, so the polynomial is order-sensitive */

typedef struct ord_acc {
    uint64_t n; /* values added */
    uint64_t h; /* sum of v_i * K^(n - 1 - i), mod 2^64 */
} ord_acc;

static uint64_t upow(uint64_t b, uint64_t e)
{
    uint64_t r = 1;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return r;
}

static void ord_init(void *acc, const void *ud)
{
    memset(acc, 0, sizeof(ord_acc));
}
static void ord_add(void *acc, const void *r, uint32_t len, int64_t ts, const void *ud)
{
    ord_acc a;
    rec x;
    if (len != sizeof(x)) abort(); /* a worker thread: no cmocka assert here */
    memcpy(&a, acc, sizeof(a));
    memcpy(&x, r, sizeof(x));
    a.h = a.h * ORD_K + (uint64_t)x.value * 0x9E3779B97F4A7C15ull + (uint64_t)ts + 1;
    a.n++;
    memcpy(acc, &a, sizeof(a));
}
static void ord_merge(void *acc, const void *other, const void *ud)
{
    ord_acc a, b;
    memcpy(&a, acc, sizeof(a));
    memcpy(&b, other, sizeof(b));
    a.h = a.h * upow(ORD_K, b.n) + b.h;
    a.n += b.n;
    memcpy(acc, &a, sizeof(a));
}
static void ord_result(const void *acc, void *out, const void *ud)
{
    memcpy(out, acc, sizeof(ord_acc));
}

static _Atomic unsigned long prefetch_calls; /* called on worker threads */
/* The hook may not read acc (it may be a guess): it only counts. */
static void ord_prefetch(const void *acc, const void *r, uint32_t len, const void *ud)
{
    atomic_fetch_add_explicit(&prefetch_calls, 1, memory_order_relaxed);
    __builtin_prefetch(acc);
}

static const sl_aggregate ord_hooked = {.version = SL_AGGREGATE_VERSION,
                                        .name = "ord",
                                        .acc_size = sizeof(ord_acc),
                                        .result_size = sizeof(ord_acc),
                                        .init = ord_init,
                                        .add = ord_add,
                                        .merge = ord_merge,
                                        .result = ord_result,
                                        .flags = 0,
                                        .prefetch = ord_prefetch};
static const sl_aggregate ord_plain = {.version = 2,
                                       .name = "ord",
                                       .acc_size = sizeof(ord_acc),
                                       .result_size = sizeof(ord_acc),
                                       .init = ord_init,
                                       .add = ord_add,
                                       .merge = ord_merge,
                                       .result = ord_result,
                                       .flags = 0,
                                       /* a version 2 table: never read */
                                       .prefetch = ord_prefetch};

/* sl_agg_distinct without its hook. */
static sl_aggregate distinct_plain;

/* --- lines ------------------------------------------------------------------------ */

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

static int replay_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    replay *r = self;
    const pcase *pc = sl_ctx_conf(ctx);
    if (r->next >= pc->n) return SL_POLL_END;
    for (int k = 0; k < pc->batch && k < (int)max && r->next < pc->n; k++) {
        const ev *e = &pc->evs[r->next++];
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

static void side_lines(sl_collector *c, const char *tag, lines *out)
{
    for (size_t i = 0; i < sl_collector_count(c); i++) {
        int64_t ts;
        sl_bytes b = sl_collector_get(c, i, &ts);
        rec x;
        assert_int_equal(b.len, sizeof(x));
        memcpy(&x, b.ptr, sizeof(x));
        lines_add(out, "%s,%" PRId64 ",%" PRId64 ",%" PRId64, tag, ts, x.key, x.value);
    }
}

/* Runs the case with aggregate `agg`; the output as lines, sorted. */
static void run(pcase *pc, const sl_aggregate *agg, lines *out)
{
    sl_collector *res = sl_collector_new(), *late = sl_collector_new(), *unas = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    if (pc->credits) assert_int_equal(sl_pipeline_set_credits(p, pc->credits), 0);
    sl_watermark_conf wm = {.delay = pc->delay, .punctuated = 1};
    sl_stream *s = sl_pipeline_source(p, "src", &replay_src, pc, sizeof(rec), &wm);
    s = sl_stream_parallelism(s, 1);
    s = sl_stream_key_by(s, "key", key_of, NULL);
    s = sl_stream_parallelism(s, pc->par);
    sl_window_conf wc = pc->wc;
    wc.agg = agg;
    wc.agg_ud = &pc->val;
    sl_stream *w = sl_stream_window(s, "win", &wc);
    assert_non_null(w);
    if (pc->ring && wc.kind != SL_WINDOW_SESSION)
        assert_int_equal(sli_window_test_ring(w, pc->ring), 0);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    sl_stream_sink(sl_stream_window_late(w), "late", &sl_sink_collect, late);
    sl_stream_sink(sl_stream_window_unassigned(w), "unassigned", &sl_sink_collect, unas);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "pipeline: %s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < sl_collector_count(res); i++) {
        sl_window_result r = sl_window_out(sl_collector_get(res, i, NULL));
        int64_t key;
        assert_int_equal(r.result_size, agg->result_size);
        assert_int_equal(r.key.len, 8);
        memcpy(&key, r.key.ptr, 8);
        if (agg->result_size == sizeof(ord_acc)) {
            ord_acc a;
            memcpy(&a, r.result, sizeof(a));
            assert_true(a.n > 0);
            lines_add(out, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRIu64 ",%016" PRIx64, r.start,
                      r.end, key, a.n, a.h);
        } else {
            int64_t v;
            memcpy(&v, r.result, 8);
            lines_add(out, "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64, r.start, r.end, key, v);
        }
    }
    side_lines(late, "late", out);
    side_lines(unas, "nowin", out);
    sl_pipeline_free(p);
    sl_collector_free(res);
    sl_collector_free(late);
    sl_collector_free(unas);
    qsort(out->v, out->n, sizeof(char *), cmp_str);
}

static void describe(const pcase *pc)
{
    fprintf(stderr,
            "case: kind=%d size=%" PRId64 " slide=%" PRId64 " offset=%" PRId64 " gap=%" PRId64
            " L=%" PRId64 " delay=%" PRId64 " n=%d batch=%d credits=%d par=%d ring=%u\n",
            (int)pc->wc.kind, pc->wc.size, pc->wc.slide, pc->wc.offset, pc->wc.gap, pc->wc.lateness,
            pc->delay, pc->n, pc->batch, pc->credits, pc->par, pc->ring);
    for (int i = 0; i < pc->n && i < 400; i++)
        fprintf(stderr, "  ev %" PRId64 " k%" PRId64 " v%" PRId64 "\n", pc->evs[i].ts,
                pc->evs[i].key, pc->evs[i].value);
}

/* Hooked against plain: equal output lines, and at least one result. */
static int same_output(pcase *pc, const sl_aggregate *hooked, const sl_aggregate *plain)
{
    lines a = {0}, b = {0};
    run(pc, plain, &a);
    run(pc, getenv("SLUICE_PREFETCH_SELF") ? plain : hooked, &b);
    int ok = a.n == b.n;
    for (size_t i = 0; ok && i < a.n; i++) ok = strcmp(a.v[i], b.v[i]) == 0;
    if (!ok) {
        describe(pc);
        fprintf(stderr, "%s: plain %zu lines, with prefetch %zu\n", hooked->name, a.n, b.n);
        for (size_t i = 0; i < a.n || i < b.n; i++)
            fprintf(stderr, "  %-48s | %s\n", i < a.n ? a.v[i] : "", i < b.n ? b.v[i] : "");
    }
    lines_free(&a);
    lines_free(&b);
    return ok;
}

/* --- random cases -------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
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

static void make_case(pcase *pc)
{
    memset(pc, 0, sizeof(*pc));
    int kind = (int)rnd_in(0, 4); /* tumbling and sliding more often: they prefetch */
    if (kind <= 1) {
        pc->wc = sl_window_tumbling(rnd_in(1, 40), rnd_in(-5, 5));
    } else if (kind <= 3) {
        pc->wc = sl_window_sliding(rnd_in(1, 50), rnd_in(1, 15));
        pc->wc.offset = rnd_in(0, 3);
    } else {
        pc->wc = sl_window_session(rnd_in(1, 25));
    }
    pc->wc.lateness = rnd() % 3 == 0 ? 0 : rnd_in(0, 40);
    pc->delay = rnd() % 4 == 0 ? 0 : rnd_in(0, 30);
    pc->val.offset = 8;
    static const int batches[] = {1, 3, 8, 9, 17, 64, 200};
    pc->batch = batches[rnd() % 7];
    pc->credits = rnd() % 3 == 0 ? 1 : 0;
    pc->par = 1; /* see the file comment: parallelism 2 is not deterministic here */
    pc->ring = rnd() % 5 == 0 ? 1 : 0;
    pc->n = (int)rnd_in(1, 600);
    pc->evs = calloc((size_t)pc->n, sizeof(ev));
    /* event time 0 and around it in a quarter of the cases */
    int64_t base = rnd() % 4 == 0 ? 0 : rnd_in(-100, 100);
    int64_t nkeys = rnd_in(1, 12), jitter = rnd_in(0, 60);
    for (int i = 0; i < pc->n; i++) {
        base += rnd() % 3 == 0 ? rnd_in(0, 4) : 0; /* runs of one slice: the fast path */
        int64_t ts = base - (rnd() % 3 == 0 ? rnd_in(0, jitter) : 0);
        if (rnd() % 25 == 0) ts -= rnd_in(0, 200); /* some very late ones */
        pc->evs[i].ts = ts;
        /* key k appears from record (k - 1) n / (2 nkeys) on: new keys mid-input */
        int64_t avail = 1 + (int64_t)i * 2 * nkeys / pc->n;
        if (avail > nkeys) avail = nkeys;
        pc->evs[i].key = rnd_in(1, avail);
        pc->evs[i].value = rnd() % 5 == 0 ? 0 : rnd_in(-50, 50);
    }
}

static void test_random_ord(void **state)
{
    const char *env = getenv("SLUICE_PREFETCH_CASES");
    int cases = env ? atoi(env) : 300;
    int failures = 0;
    atomic_store(&prefetch_calls, 0);
    for (int c = 0; c < cases && failures < 3; c++) {
        pcase pc;
        make_case(&pc);
        if (!same_output(&pc, &ord_hooked, &ord_plain)) failures++;
        free(pc.evs);
    }
    assert_int_equal(failures, 0);
    assert_true(atomic_load(&prefetch_calls) > 1000); /* the deferred path ran */
}

static void test_random_distinct(void **state)
{
    int failures = 0;
    for (int c = 0; c < 60 && failures < 3; c++) {
        pcase pc;
        make_case(&pc);
        for (int i = 0; i < pc.n; i++) pc.evs[i].value = rnd_in(0, 2000); /* many distinct */
        if (!same_output(&pc, &sl_agg_distinct, &distinct_plain)) failures++;
        free(pc.evs);
    }
    assert_int_equal(failures, 0);
}

/* Fixed: one batch holding a run of key 1, a new key 2 in the middle of it,
 * a record that makes a new slice of key 1 (slice_new may move its block
 * while adds to the old block are queued), a late record, a record that
 * moves the watermark so that the next record of key 1 purges, and event
 * time 0. Tumbling and sliding, rings of 1 and the default, batches of all
 * records and of one. */
static void test_fixed(void **state)
{
    static ev evs[64];
    int n = 0;
    for (int i = 0; i < 20; i++) evs[n++] = (ev){0, 1, i};       /* time 0, key 1: queued */
    evs[n++] = (ev){1, 2, 100};                                  /* a new key mid-batch */
    for (int i = 0; i < 10; i++) evs[n++] = (ev){2, 1, 20 + i};  /* queued again */
    evs[n++] = (ev){15, 1, 200};                                 /* a new slice of key 1 */
    for (int i = 0; i < 10; i++) evs[n++] = (ev){3, 1, 30 + i};  /* the old slice */
    evs[n++] = (ev){40, 2, 300};                                 /* watermark 39 */
    evs[n++] = (ev){1, 1, 400};                                  /* late */
    for (int i = 0; i < 10; i++) evs[n++] = (ev){41, 1, 50 + i}; /* purge, then queued */
    static const sl_aggregate *const hooked[] = {&ord_hooked, &sl_agg_distinct};
    const sl_aggregate *plain[] = {&ord_plain, &distinct_plain};
    for (int kind = 0; kind < 2; kind++)
        for (int r = 0; r < 2; r++)
            for (int b = 0; b < 2; b++)
                for (int a = 0; a < 2; a++) {
                    pcase pc = {0};
                    pc.evs = evs;
                    pc.n = n;
                    pc.batch = b ? 1 : n;
                    pc.credits = b ? 1 : 0;
                    pc.par = 1;
                    pc.ring = r ? 1 : 0;
                    pc.wc = kind ? sl_window_sliding(10, 5) : sl_window_tumbling(10, 0);
                    pc.wc.lateness = 5;
                    pc.val.offset = 8;
                    assert_true(same_output(&pc, hooked[a], plain[a]));
                }
}

/* A short table seen as an sl_aggregate, as the library sees a table
 * compiled against an older header (hidden from the compiler, which would
 * otherwise warn that the object is smaller than the type). */
static const sl_aggregate *as_table(const void *p)
{
    __asm__("" : "+r"(p));
    return p;
}

typedef struct agg_v1 {
    int version;
    const char *name;
    uint32_t acc_size, result_size;
    void (*init)(void *, const void *);
    void (*add)(void *, const void *, uint32_t, int64_t, const void *);
    void (*merge)(void *, const void *, const void *);
    void (*result)(const void *, void *, const void *);
} agg_v1;
typedef struct agg_v2 {
    agg_v1 v1;
    uint32_t flags;
} agg_v2;

/* Version 1, 2 and 3 tables: sl_agg_prefetch() reads the hook only from a
 * version 3 table; exactly-sized older tables (ASan would see a read past
 * them) run as before. */
static void test_table_versions(void **state)
{
    assert_ptr_equal(sl_agg_prefetch(&ord_hooked), ord_prefetch);
    assert_null(sl_agg_prefetch(&ord_plain));
    assert_null(sl_agg_prefetch(&distinct_plain));
    assert_non_null(sl_agg_prefetch(&sl_agg_distinct));
    assert_null(sl_agg_prefetch(&sl_agg_count));
    assert_null(sl_agg_prefetch(NULL));
    agg_v1 *v1 = malloc(sizeof(*v1));
    *v1 = (agg_v1){1,        "ord1",  sizeof(ord_acc), sizeof(ord_acc),
                   ord_init, ord_add, ord_merge,       ord_result};
    agg_v2 *v2 = malloc(sizeof(*v2));
    v2->v1 = *v1;
    v2->v1.version = 2;
    v2->flags = 0;
    const sl_aggregate *t1 = as_table(v1), *t2 = as_table(v2);
    assert_null(sl_agg_prefetch(t1));
    assert_int_equal(sl_agg_flags(t1), 0);
    assert_null(sl_agg_prefetch(t2));
    static ev evs[] = {{0, 1, 1}, {1, 1, 2}, {2, 2, 3}, {12, 1, 4}, {3, 1, 5}, {4, 1, 6}};
    pcase pc = {0};
    pc.evs = evs;
    pc.n = 6;
    pc.batch = 6;
    pc.par = 1;
    pc.wc = sl_window_tumbling(10, 0);
    pc.wc.lateness = 10;
    pc.val.offset = 8;
    assert_true(same_output(&pc, &ord_hooked, t1));
    assert_true(same_output(&pc, &ord_hooked, t2));
    free(v1);
    free(v2);
}

/* The distinct aggregate's prefetch does not change the accumulator. */
static void test_distinct_prefetch_pure(void **state)
{
    static uint8_t acc[SL_AGG_DISTINCT_ACC_SIZE], copy[SL_AGG_DISTINCT_ACC_SIZE];
    sl_agg_value val = {.offset = 8};
    sl_agg_distinct.init(acc, &val);
    for (int64_t v = 0; v < 5000; v++) {
        rec x = {7, v * 7919};
        memcpy(copy, acc, sizeof(acc));
        sl_agg_distinct.prefetch(acc, &x, sizeof(x), &val);
        assert_memory_equal(acc, copy, sizeof(acc));
        sl_agg_distinct.add(acc, &x, sizeof(x), 0, &val);
    }
    int64_t r;
    sl_agg_distinct.result(acc, &r, &val);
    assert_true(r > 4800 && r < 5200);
}

/* Below the threshold (keys x slot bytes) the windows do not prefetch:
 * a few keys of 16-byte accumulators stay on the plain path. */
static void test_threshold(void **state)
{
    static ev evs[] = {{0, 1, 1}, {1, 1, 2}, {2, 2, 3}, {3, 1, 4}, {4, 1, 5}, {5, 2, 6}};
    pcase pc = {0};
    pc.evs = evs;
    pc.n = 6;
    pc.batch = 6;
    pc.par = 1;
    pc.wc = sl_window_tumbling(10, 0);
    pc.val.offset = 8;
    sli_win_prefetch_min = (size_t)1 << 20;
    atomic_store(&prefetch_calls, 0);
    assert_true(same_output(&pc, &ord_hooked, &ord_plain));
    assert_int_equal(atomic_load(&prefetch_calls), 0);
    sli_win_prefetch_min = 0;
    assert_true(same_output(&pc, &ord_hooked, &ord_plain));
    assert_true(atomic_load(&prefetch_calls) > 0);
}

static int setup(void **state)
{
    sli_win_prefetch_min = 0; /* the prefetching path with a few keys */
    distinct_plain = sl_agg_distinct;
    distinct_plain.version = 2;
    distinct_plain.name = "distinct-plain";
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_versions),  cmocka_unit_test(test_distinct_prefetch_pure),
        cmocka_unit_test(test_fixed),           cmocka_unit_test(test_random_ord),
        cmocka_unit_test(test_random_distinct), cmocka_unit_test(test_threshold),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
