/*
 * bench/bench_crdt.c - `sluice bench crdt`: the CRDT types and the distinct
 * aggregate (issue 12's targets).
 *
 *  1. Updates/s and merges/s per type, 1 thread, no engine: G-Counter
 *     increment, PN-Counter add (+1/-1 alternating), LWW set (rising time),
 *     MV-Register set, OR-Set add (a new 8-byte element each), HyperLogLog
 *     add (an 8-byte item). Merges: a := a join b, repeated, of two states of
 *     S (1000) replicas for the counters, two concurrent writers for the
 *     MV-Register, S elements from two replicas for the OR-Set, two p = 14
 *     sketches of 10^4 items each for the HyperLogLog (after the first merge
 *     a join is idempotent; the work per merge is the same walk).
 *  2. Encoded size (sl_crdt_*_encode) per type at 10^3 and 10^6 "elements":
 *     replicas for the counters (10^6 is above SL_CRDT_MAX_REPLICAS: 65536
 *     is measured), updates for LWW (a register does not grow), concurrent
 *     writers for the MV-Register (cap SL_CRDT_MAX_CONCURRENT: 10^3 only),
 *     elements for the OR-Set, distinct items for the HyperLogLog. Multi-
 *     replica states are built as a balanced tree of merges.
 *  3. Window throughput, the same generated events ([int64 value | int64
 *     key], 1,000 keys, event time 0.01 ms per event: 10 s tumbling windows
 *     of 10^6 events, 1,000 per key, values from 10^6) through key_by ->
 *     window -> counting sink, 1 thread, in this process: --agg count, --agg
 *     distinct (sl_agg_distinct), and distinct-exact (window-agg's two-window
 *     path, jobs_distinct_exact). That is window-agg's pipeline without its
 *     CSV parsing. Best of --rounds each; distinct / count (goal >= 0.7).
 *  4. Memory: one key, D (10^6) distinct values in one 10 s tumbling window,
 *     distinct against distinct-exact. Each runs in a forked child that
 *     reports its peak RSS (VmHWM) minus its RSS before the run, so one
 *     variant's peak does not hide the other's.
 *
 *  5. The combiner (sl_stream_window_combined, sluice/window.h): the same
 *     events from 2 generator shards, 2 threads, count and distinct per 10 s
 *     tumbling window, with and without pre-aggregation before the shuffle,
 *     and both again with checkpoints every 1 s. Printed: the records and
 *     bytes crossing the shuffle (the input records, or the combiners'
 *     partials and raw records, from sl_window_combined_stats) and the
 *     seconds; the number of results and their sum must agree in all four.
 *
 * --quick: small sizes (a smoke test, tests/integration/bench_crdt.sh).
 * --csv: rows bench,variant,threads,events,seconds,events_per_s,peak_rss_mb
 * (a size or a memory figure is in the variant's name, as bench windows
 * does).
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench/bench_util.h"
#include "bench/bench.h"
#include "examples/jobs.h"
#include "examples/jobs_window.h"

static const char *cmd = "bench crdt";
static int csv;

static void row(const char *variant, uint64_t events, double secs)
{
    double eps = secs > 0 ? (double)events / secs : 0;
    if (csv)
        printf("crdt,%s,1,%" PRIu64 ",%.6f,%.0f,%.1f\n", variant, events, secs, eps,
               bench_peak_rss_mb());
    else
        printf("  %-34s %12" PRIu64 " %9.3f %14.0f\n", variant, events, secs, eps);
}

static int oom(void)
{
    fprintf(stderr, "sluice %s: out of memory or a CRDT call failed\n", cmd);
    return 1;
}

/* --- 1. updates and merges ------------------------------------------------------------- */

/* Counters of `n` replicas (ids lo .. lo + n - 1), each with count 1 (and,
 * PN, a decrement on odd ids), by a balanced tree of merges. */
static sl_crdt_gcounter *gc_tree(uint32_t lo, uint32_t n)
{
    if (n == 1) {
        sl_crdt_gcounter *c = sl_crdt_gcounter_new(lo);
        if (c && sl_crdt_gcounter_increment(c, 1)) {
            sl_crdt_gcounter_free(c);
            return NULL;
        }
        return c;
    }
    sl_crdt_gcounter *a = gc_tree(lo, n / 2), *b = gc_tree(lo + n / 2, n - n / 2);
    if (!a || !b || sl_crdt_gcounter_merge(a, b)) {
        sl_crdt_gcounter_free(a);
        a = NULL;
    }
    sl_crdt_gcounter_free(b);
    return a;
}

static sl_crdt_pncounter *pn_tree(uint32_t lo, uint32_t n)
{
    if (n == 1) {
        sl_crdt_pncounter *c = sl_crdt_pncounter_new(lo);
        if (c &&
            (sl_crdt_pncounter_increment(c, 2) || ((lo & 1) && sl_crdt_pncounter_add(c, -1)))) {
            sl_crdt_pncounter_free(c);
            return NULL;
        }
        return c;
    }
    sl_crdt_pncounter *a = pn_tree(lo, n / 2), *b = pn_tree(lo + n / 2, n - n / 2);
    if (!a || !b || sl_crdt_pncounter_merge(a, b)) {
        sl_crdt_pncounter_free(a);
        a = NULL;
    }
    sl_crdt_pncounter_free(b);
    return a;
}

static sl_crdt_mvreg *mv_tree(uint32_t lo, uint32_t n)
{
    if (n == 1) {
        sl_crdt_mvreg *r = sl_crdt_mvreg_new(lo);
        uint64_t v = lo;
        if (r && sl_crdt_mvreg_set(r, (sl_bytes){(const uint8_t *)&v, 8})) {
            sl_crdt_mvreg_free(r);
            return NULL;
        }
        return r;
    }
    sl_crdt_mvreg *a = mv_tree(lo, n / 2), *b = mv_tree(lo + n / 2, n - n / 2);
    if (!a || !b || sl_crdt_mvreg_merge(a, b)) {
        sl_crdt_mvreg_free(a);
        a = NULL;
    }
    sl_crdt_mvreg_free(b);
    return a;
}

static sl_crdt_orset *orset_of(uint32_t replica, uint64_t first, uint64_t n)
{
    sl_crdt_orset *s = sl_crdt_orset_new(replica, 0);
    for (uint64_t i = 0; s && i < n; i++) {
        uint64_t e = first + i;
        if (sl_crdt_orset_add(s, (sl_bytes){(const uint8_t *)&e, 8})) {
            sl_crdt_orset_free(s);
            s = NULL;
        }
    }
    return s;
}

static sl_crdt_hll *hll_of(uint64_t first, uint64_t n)
{
    sl_crdt_hll *h = sl_crdt_hll_new(14);
    for (uint64_t i = 0; h && i < n; i++) {
        uint64_t e = first + i;
        sl_crdt_hll_add(h, &e, 8);
    }
    return h;
}

static int run_ops(uint64_t n, uint64_t merges, uint32_t s)
{
    double t0;
    int rc = 0;
    if (!csv) {
        printf("crdt updates and merges, 1 thread (merges: states of %u replicas / elements)\n", s);
        printf("  %-34s %12s %9s %14s\n", "variant", "ops", "seconds", "ops/s");
    }
    { /* G-Counter */
        sl_crdt_gcounter *c = sl_crdt_gcounter_new(1);
        if (!c) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < n; i++) rc |= sl_crdt_gcounter_increment(c, 1);
        row("update gcounter increment", n, bench_now() - t0);
        sl_crdt_gcounter_free(c);
        sl_crdt_gcounter *a = gc_tree(0, s), *b = gc_tree(s / 2, s);
        if (!a || !b) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < merges; i++) rc |= sl_crdt_gcounter_merge(a, b);
        row("merge gcounter", merges, bench_now() - t0);
        sl_crdt_gcounter_free(a);
        sl_crdt_gcounter_free(b);
    }
    { /* PN-Counter */
        sl_crdt_pncounter *c = sl_crdt_pncounter_new(1);
        if (!c) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < n; i++) rc |= sl_crdt_pncounter_add(c, (i & 1) ? -1 : 1);
        row("update pncounter add +-1", n, bench_now() - t0);
        sl_crdt_pncounter_free(c);
        sl_crdt_pncounter *a = pn_tree(0, s), *b = pn_tree(s / 2, s);
        if (!a || !b) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < merges; i++) rc |= sl_crdt_pncounter_merge(a, b);
        row("merge pncounter", merges, bench_now() - t0);
        sl_crdt_pncounter_free(a);
        sl_crdt_pncounter_free(b);
    }
    { /* LWW */
        sl_crdt_lww *r = sl_crdt_lww_new(1), *b = sl_crdt_lww_new(2);
        if (!r || !b) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < n; i++)
            rc |= sl_crdt_lww_set(r, (int64_t)i, (sl_bytes){(const uint8_t *)&i, 8}) < 0;
        row("update lww set", n, bench_now() - t0);
        uint64_t v = 7;
        rc |= sl_crdt_lww_set(b, (int64_t)n + 1, (sl_bytes){(const uint8_t *)&v, 8}) < 0;
        t0 = bench_now();
        for (uint64_t i = 0; i < merges; i++) rc |= sl_crdt_lww_merge(r, b);
        row("merge lww", merges, bench_now() - t0);
        sl_crdt_lww_free(r);
        sl_crdt_lww_free(b);
    }
    { /* MV-Register */
        sl_crdt_mvreg *r = sl_crdt_mvreg_new(1);
        if (!r) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < n; i++)
            rc |= sl_crdt_mvreg_set(r, (sl_bytes){(const uint8_t *)&i, 8});
        row("update mvreg set", n, bench_now() - t0);
        sl_crdt_mvreg *b = mv_tree(2, 1);
        if (!b) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < merges; i++) rc |= sl_crdt_mvreg_merge(r, b);
        row("merge mvreg (2 concurrent)", merges, bench_now() - t0);
        sl_crdt_mvreg_free(r);
        sl_crdt_mvreg_free(b);
    }
    { /* OR-Set */
        sl_crdt_orset *o = sl_crdt_orset_new(1, 0);
        if (!o) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < n; i++)
            rc |= sl_crdt_orset_add(o, (sl_bytes){(const uint8_t *)&i, 8});
        row("update orset add (new element)", n, bench_now() - t0);
        sl_crdt_orset_free(o);
        sl_crdt_orset *a = orset_of(1, 0, s), *b = orset_of(2, s / 2, s);
        if (!a || !b) return oom();
        uint64_t m = merges / 10 ? merges / 10 : 1;
        t0 = bench_now();
        for (uint64_t i = 0; i < m; i++) rc |= sl_crdt_orset_merge(a, b);
        row("merge orset", m, bench_now() - t0);
        sl_crdt_orset_free(a);
        sl_crdt_orset_free(b);
    }
    { /* HyperLogLog */
        sl_crdt_hll *h = sl_crdt_hll_new(14);
        if (!h) return oom();
        t0 = bench_now();
        for (uint64_t i = 0; i < n; i++) sl_crdt_hll_add(h, &i, 8);
        row("update hll add (p 14)", n, bench_now() - t0);
        sl_crdt_hll_free(h);
        sl_crdt_hll *a = hll_of(0, 10000), *b = hll_of(5000, 10000);
        if (!a || !b) return oom();
        uint64_t m = merges / 10 ? merges / 10 : 1;
        t0 = bench_now();
        for (uint64_t i = 0; i < m; i++) rc |= sl_crdt_hll_merge(a, b);
        row("merge hll (p 14)", m, bench_now() - t0);
        sl_crdt_hll_free(a);
        sl_crdt_hll_free(b);
    }
    return rc ? oom() : 0;
}

/* --- 2. encoded sizes ------------------------------------------------------------------ */

static void size_row(const char *type, const char *what, uint64_t n, size_t bytes)
{
    if (csv)
        printf("crdt,size-%s-%" PRIu64 "-%s=%zu-bytes,1,%" PRIu64 ",0,0,%.1f\n", type, n, what,
               bytes, n, bench_peak_rss_mb());
    else
        printf("  %-12s %-20s %10" PRIu64 " %14zu %10.1f\n", type, what, n, bytes,
               (double)bytes / (double)n);
}

static int run_sizes(uint64_t big)
{
    sl_buf b = {0};
    int rc = 0;
    if (!csv) {
        printf("crdt encoded sizes\n  %-12s %-20s %10s %14s %10s\n", "type", "elements are", "n",
               "bytes", "bytes/n");
    }
    const uint64_t ns[2] = {1000, big};
    for (int k = 0; k < 2 && !rc; k++) {
        uint64_t n = ns[k];
        uint32_t r = n > SL_CRDT_MAX_REPLICAS ? SL_CRDT_MAX_REPLICAS : (uint32_t)n;
        sl_crdt_gcounter *g = gc_tree(0, r);
        b.len = 0;
        rc |= !g || sl_crdt_gcounter_encode(g, &b);
        if (!rc) size_row("gcounter", "replicas", r, b.len);
        sl_crdt_gcounter_free(g);
        sl_crdt_pncounter *pn = pn_tree(0, r);
        b.len = 0;
        rc |= !pn || sl_crdt_pncounter_encode(pn, &b);
        if (!rc) size_row("pncounter", "replicas", r, b.len);
        sl_crdt_pncounter_free(pn);
        sl_crdt_lww *l = sl_crdt_lww_new(1);
        for (uint64_t i = 0; l && i < n; i++)
            rc |= sl_crdt_lww_set(l, (int64_t)i, (sl_bytes){(const uint8_t *)&i, 8}) < 0;
        b.len = 0;
        rc |= !l || sl_crdt_lww_encode(l, &b);
        if (!rc) size_row("lww", "updates", n, b.len);
        sl_crdt_lww_free(l);
        if (n <= SL_CRDT_MAX_CONCURRENT) {
            sl_crdt_mvreg *mv = mv_tree(0, (uint32_t)n);
            b.len = 0;
            rc |= !mv || sl_crdt_mvreg_encode(mv, &b);
            if (!rc) size_row("mvreg", "concurrent writers", n, b.len);
            sl_crdt_mvreg_free(mv);
        } else if (!csv) {
            printf("  %-12s %-20s %10" PRIu64 " %14s\n", "mvreg", "concurrent writers", n,
                   "(above cap)");
        }
        sl_crdt_orset *o = orset_of(1, 0, n);
        b.len = 0;
        rc |= !o || sl_crdt_orset_encode(o, &b);
        if (!rc) size_row("orset", "elements (8 B)", n, b.len);
        sl_crdt_orset_free(o);
        sl_crdt_hll *h = hll_of(0, n);
        b.len = 0;
        rc |= !h || sl_crdt_hll_encode(h, &b);
        if (!rc) size_row("hll p14", "distinct items", n, b.len);
        sl_crdt_hll_free(h);
    }
    sl_buf_free(&b);
    return rc ? oom() : 0;
}

/* --- 3. windows: distinct against count ------------------------------------------------ */

typedef struct ev {
    int64_t value;
    int64_t key;
} ev;

typedef struct gen_ud {
    uint64_t keys, values, per_ms_div; /* event time = seq / per_ms_div */
} gen_ud;

static int gen_ev(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    const gen_ud *g = ud;
    ev *r = out;
    uint64_t x = ysb_mix(seq);
    r->key = (int64_t)(x % g->keys);
    r->value = g->values ? (int64_t)((x >> 20) % g->values) : (int64_t)seq;
    *ts = (int64_t)(seq / g->per_ms_div);
    return 0;
}

static sl_bytes ev_key(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {(const uint8_t *)rec + 8, 8};
    return k;
}

typedef struct tally {
    _Atomic uint64_t results;
    _Atomic int64_t sum;
} tally;

static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    tally *t = sl_ctx_conf(ctx);
    int64_t s = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_window_result r = sl_window_out(sl_batch_bytes(in, i));
        int64_t v = 0;
        if (r.result_size == 8) memcpy(&v, r.result, 8);
        s += v;
    }
    atomic_fetch_add(&t->results, in->count);
    atomic_fetch_add(&t->sum, s);
    return 0;
}

static const sl_operator tally_op = {
    .version = SL_OPERATOR_VERSION, .kind = "tally", .process = tally_process};

enum { V_COUNT, V_DISTINCT, V_EXACT };
static const char *const vname[] = {"count", "distinct", "distinct-exact"};

static int run_window(const gen_ud *g, uint64_t n, int variant, double *secs, uint64_t *results,
                      int64_t *sum)
{
    sl_generator_conf gc = {.fn = gen_ev, .ud = (void *)g, .count = n};
    sl_watermark_conf wm = {.delay = 0};
    sl_window_conf wc = sl_window_tumbling(10000, 0);
    sl_agg_value val = {.offset = 0};
    wc.agg = variant == V_DISTINCT ? &sl_agg_distinct : &sl_agg_count;
    wc.agg_ud = &val;
    tally t;
    atomic_init(&t.results, 0);
    atomic_init(&t.sum, 0);
    sl_pipeline *p = sl_pipeline_new();
    if (!p) return oom();
    sl_pipeline_set_threads(p, 1);
    sl_stream *s = sl_pipeline_generator(p, "events", &gc, sizeof(ev), &wm);
    const char *why = NULL;
    if (variant == V_EXACT) {
        s = jobs_distinct_exact(s, &wc, 0, NULL, &why);
    } else {
        s = sl_stream_key_by(s, "key", ev_key, NULL);
        s = sl_stream_window(s, "window", &wc);
    }
    if (s) sl_stream_sink(s, "tally", &tally_op, &t);
    double t0 = bench_now();
    int rc = s ? sl_pipeline_run(p) : 1;
    *secs = bench_now() - t0;
    if (rc)
        fprintf(stderr, "sluice %s: %s: %s\n", cmd, vname[variant],
                why ? why : sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    *results = atomic_load(&t.results);
    *sum = atomic_load(&t.sum);
    return rc ? 1 : 0;
}

static int run_windows(uint64_t n, uint64_t keys, int rounds)
{
    gen_ud g = {.keys = keys, .values = 1000000, .per_ms_div = 100};
    double best[3] = {0, 0, 0};
    uint64_t res[3] = {0, 0, 0};
    int64_t sum[3] = {0, 0, 0};
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < 3; v++) {
            double s;
            if (run_window(&g, n, v, &s, &res[v], &sum[v])) return 1;
            if (r == 0 || s < best[v]) best[v] = s;
        }
    if (!csv) {
        printf("windows: %" PRIu64 " events, %" PRIu64 " keys, 10 s tumbling (10^6 events per "
               "window), values from 10^6, 1 thread, best of %d\n",
               n, keys, rounds);
        printf("  %-34s %12s %9s %14s %10s %14s\n", "variant", "events", "seconds", "events/s",
               "results", "sum of results");
        for (int v = 0; v < 3; v++)
            printf("  %-34s %12" PRIu64 " %9.3f %14.0f %10" PRIu64 " %14" PRId64 "\n", vname[v], n,
                   best[v], (double)n / best[v], res[v], sum[v]);
        double err =
            sum[V_EXACT] ? (double)(sum[V_DISTINCT] - sum[V_EXACT]) / (double)sum[V_EXACT] : 0;
        printf("  distinct / count: %.3f (goal >= 0.7); distinct-exact / count: %.3f; "
               "distinct's summed estimates vs exact: %+.3f %%\n",
               best[V_COUNT] / best[V_DISTINCT], best[V_COUNT] / best[V_EXACT], err * 100);
    } else {
        for (int v = 0; v < 3; v++) {
            char name[64];
            snprintf(name, sizeof(name), "window-%s", vname[v]);
            row(name, n, best[v]);
        }
    }
    if (res[V_DISTINCT] != res[V_COUNT] || res[V_EXACT] != res[V_COUNT]) {
        fprintf(stderr,
                "sluice %s: the variants gave %" PRIu64 ", %" PRIu64 " and %" PRIu64 " results\n",
                cmd, res[0], res[1], res[2]);
        return 1;
    }
    return 0;
}

/* --- 5. the combiner: pre-aggregation before the shuffle -------------------------------- */

/* The library's combined window (sl_stream_window_combined, sluice/window.h)
 * against key_by -> window on the same events. Without a combiner every
 * input record crosses the shuffle (16 bytes each); with one, the
 * combiners' partials and raw records do (sl_window_combined_stats: their
 * payload bytes, tag included). Checkpoints (every 1 s, to a temporary
 * directory) change nothing that crosses: the partials are the combiners'
 * checkpointed state, not flushed at a barrier. */
static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int run_combined(const gen_ud *g, uint64_t n, const sl_aggregate *agg, int combine, int chk,
                        double *secs, uint64_t *crossing, uint64_t *bytes, int64_t *sum,
                        uint64_t *results)
{
    sl_generator_conf gc = {.fn = gen_ev, .ud = (void *)g, .count = n, .shards = 2};
    sl_watermark_conf wm = {.delay = 0};
    sl_agg_value val = {.offset = 0};
    sl_window_conf wc = sl_window_tumbling(10000, 0);
    wc.agg = agg;
    wc.agg_ud = &val;
    tally t;
    atomic_init(&t.results, 0);
    atomic_init(&t.sum, 0);
    char dir[] = "/tmp/sluice-bench-crdt.XXXXXX";
    if (chk && !mkdtemp(dir)) {
        fprintf(stderr, "sluice %s: combiner: cannot make a temporary directory\n", cmd);
        return 1;
    }
    sl_pipeline *p = sl_pipeline_new();
    if (!p) return oom();
    sl_pipeline_set_threads(p, 2);
    sl_stream *s =
        sl_stream_parallelism(sl_pipeline_generator(p, "events", &gc, sizeof(ev), &wm), 2);
    sl_stream *w;
    if (combine) {
        w = sl_stream_window_combined(s, "window", ev_key, NULL, &wc);
    } else {
        s = sl_stream_key_by(s, "key", ev_key, NULL);
        w = sl_stream_window(s, "window", &wc);
    }
    w = sl_stream_parallelism(w, 2);
    sl_stream_sink(w, "tally", &tally_op, &t);
    if (chk) {
        sl_checkpoint_conf cc = {.dir = dir, .interval_ms = 1000};
        sl_pipeline_set_checkpoint(p, &cc);
    }
    double t0 = bench_now();
    int rc = sl_pipeline_run(p);
    *secs = bench_now() - t0;
    if (rc) fprintf(stderr, "sluice %s: combiner: %s\n", cmd, sl_pipeline_errmsg(p));
    sl_window_combine_stats st;
    memset(&st, 0, sizeof(st));
    if (!rc && combine) sl_window_combined_stats(w, &st);
    sl_pipeline_free(p);
    if (chk) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    *crossing = combine ? st.partials + st.raw : n;
    *bytes = combine ? st.bytes : n * sizeof(ev);
    *sum = atomic_load(&t.sum);
    *results = atomic_load(&t.results);
    return rc ? 1 : 0;
}

static int run_combiner(uint64_t n, uint64_t keys)
{
    gen_ud g = {.keys = keys, .values = 1000000, .per_ms_div = 100};
    const sl_aggregate *aggs[2] = {&sl_agg_count, &sl_agg_distinct};
    if (!csv)
        printf("combiner: %" PRIu64 " events, %" PRIu64 " keys, 10 s tumbling, 2 shards -> "
               "[%s.combine] -> key_by -> window, 2 threads\n"
               "  %-34s %12s %14s %9s %14s\n",
               n, keys, "window", "variant (records crossing)", "records", "bytes", "seconds",
               "sum of results");
    for (int a = 0; a < 2; a++) {
        double s[4];
        uint64_t c[4], b[4], r[4];
        int64_t sum[4];
        static const char *const label[4] = {"", "  with combiner", "  checkpoints 1 s",
                                             "  combiner, checkpoints 1 s"};
        for (int v = 0; v < 4; v++)
            if (run_combined(&g, n, aggs[a], v & 1, v >> 1, &s[v], &c[v], &b[v], &sum[v], &r[v]))
                return 1;
        for (int v = 1; v < 4; v++)
            if (sum[v] != sum[0] || r[v] != r[0]) {
                fprintf(stderr,
                        "sluice %s: combiner: %s results differ (%" PRIu64 " results, sum %" PRId64
                        " against %" PRIu64 ", %" PRId64 ")\n",
                        cmd, aggs[a]->name, r[v], sum[v], r[0], sum[0]);
                return 1;
            }
        if (csv) {
            static const char *const tag[4] = {"", "-combined", "-chk", "-combined-chk"};
            for (int v = 0; v < 4; v++) {
                char name[96];
                snprintf(name, sizeof(name), "shuffle-%s%s-records=%" PRIu64, aggs[a]->name, tag[v],
                         c[v]);
                row(name, n, s[v]);
            }
        } else {
            for (int v = 0; v < 4; v++)
                printf("  %-34s %12" PRIu64 " %14" PRIu64 " %9.3f %14" PRId64 "\n",
                       v ? label[v] : aggs[a]->name, c[v], b[v], s[v], sum[v]);
            printf("  %s: records crossing the shuffle / %.1f, bytes x %.3f; seconds x %.2f "
                   "(checkpoints: x %.2f)\n",
                   aggs[a]->name, (double)c[0] / (double)(c[1] ? c[1] : 1),
                   (double)b[1] / (double)b[0], s[1] / s[0], s[3] / s[2]);
        }
    }
    return 0;
}

/* --- 4. memory: distinct against distinct-exact ---------------------------------------- */

/* The peak RSS growth (MB) of a run of `variant`, in a child process; < 0 on failure. */
typedef struct peak_args {
    uint64_t d;
    int variant;
} peak_args;

/* In the child: out[0] the peak RSS growth (MB; -1 on a failure or a wrong
 * result), out[1] the run's seconds. */
static void peak_child(void *ud, void *outp)
{
    const peak_args *a = ud;
    double *out = outp;
    gen_ud g = {.keys = 1, .values = 0, .per_ms_div = a->d / 10000 + 1}; /* value = seq */
    out[0] = -1;
    out[1] = 0;
    double before = bench_status_kb("VmRSS");
    uint64_t res = 0;
    int64_t sum = 0;
    if (run_window(&g, a->d, a->variant, &out[1], &res, &sum) == 0 && before >= 0)
        out[0] = (bench_status_kb("VmHWM") - before) / 1024.0;
    if (res != 1 || (a->variant == V_EXACT && sum != (int64_t)a->d)) out[0] = -1;
}

static double child_peak_mb(uint64_t d, int variant, double *secs)
{
    peak_args a = {.d = d, .variant = variant};
    double out[2] = {-1, 0};
    if (bench_in_child(peak_child, &a, out, sizeof(out))) return -1;
    *secs = out[1];
    return out[0];
}

static int run_memory(uint64_t d)
{
    double sd = 0, se = 0;
    double md = child_peak_mb(d, V_DISTINCT, &sd), me = child_peak_mb(d, V_EXACT, &se);
    if (md < 0 || me < 0) {
        fprintf(stderr, "sluice %s: the memory runs failed\n", cmd);
        return 1;
    }
    if (csv) {
        char name[96];
        snprintf(name, sizeof(name), "memory-distinct-peak-mb=%.1f", md);
        row(name, d, sd);
        snprintf(name, sizeof(name), "memory-distinct-exact-peak-mb=%.1f", me);
        row(name, d, se);
    } else {
        printf("memory: one key, %" PRIu64 " distinct values in one 10 s tumbling window, "
               "1 thread (peak RSS growth of a child process)\n",
               d);
        printf("  %-34s %12.1f MB  (accumulator %u bytes per key and window)\n", "distinct", md,
               (unsigned)SL_AGG_DISTINCT_ACC_SIZE);
        printf("  %-34s %12.1f MB  (%.0f bytes per distinct value)\n", "distinct-exact", me,
               me * 1048576.0 / (double)d);
        printf("  distinct-exact / distinct: %.0f x\n", md > 0.05 ? me / md : me / 0.05);
    }
    return 0;
}

int bench_crdt(int argc, char **argv)
{
    static const char *const parts[] = {"ops", "sizes", "windows", "memory", "combiner"};
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_QUICK, O_EVENTS, O_ROUNDS, O_ONLY, O_KEYS };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"quick", no_argument, NULL, O_QUICK},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"rounds", required_argument, NULL, O_ROUNDS},
                                         {"only", required_argument, NULL, O_ONLY},
                                         {"keys", required_argument, NULL, O_KEYS},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    int quick = 0, opt, ret = 0, only = 0;
    long long events = 0, rounds = 2, keys = 1000;
    csv = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = 1; break;
        case O_QUICK: quick = 1; break;
        case O_EVENTS:
            ret = jobs_int(cmd, "--events", optarg, 10000, (long long)1 << 36, &events);
            break;
        case O_KEYS: ret = jobs_int(cmd, "--keys", optarg, 1, 1000000, &keys); break;
        case O_ROUNDS: ret = jobs_int(cmd, "--rounds", optarg, 1, 100, &rounds); break;
        case O_ONLY:
            for (only = 5; only > 0 && strcmp(optarg, parts[only - 1]) != 0; only--) {}
            if (!only) {
                fprintf(
                    stderr,
                    "sluice %s: --only must be ops, sizes, windows, memory or combiner, not '%s'\n",
                    cmd, optarg);
                ret = 2;
            }
            break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench crdt [--quick] [--events N] [--keys K] [--rounds R]\n"
                   "           [--only ops|sizes|windows|memory|combiner] [--csv]\n"
                   "CRDT updates/s and merges/s per type; encoded size per type at 10^3 and\n"
                   "10^6 elements; window throughput of --agg distinct against --agg count and\n"
                   "distinct-exact on the same generated events (default 4000000, K = 1000 keys,\n"
                   "10 s tumbling windows, best of R = 2 rounds); memory of distinct against\n"
                   "distinct-exact at 10^6 distinct values in one window; the combiner:\n"
                   "records and bytes crossing the shuffle with and without pre-aggregation.\n"
                   "--quick: small sizes, a smoke test.\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    uint64_t n_upd = quick ? 20000 : 2000000, n_merge = quick ? 200 : 20000;
    uint64_t n_win = events ? (uint64_t)events : quick ? 200000 : 4000000;
    uint64_t big = quick ? 10000 : 1000000, d = quick ? 50000 : 1000000;
    if (quick) rounds = 1;
    if (csv) bench_header(1);
    if ((!only || only == 1) && run_ops(n_upd, n_merge, 1000)) return 1;
    if ((!only || only == 2) && run_sizes(big)) return 1;
    if ((!only || only == 3) && run_windows(n_win, (uint64_t)keys, (int)rounds)) return 1;
    if ((!only || only == 4) && run_memory(d)) return 1;
    if ((!only || only == 5) && run_combiner(n_win, (uint64_t)keys)) return 1;
    return 0;
}
