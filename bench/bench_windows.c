/*
 * bench/bench_windows.c - `sluice bench windows`: sliding against tumbling
 * windows on the same input, and the latency from the watermark passing a
 * window's end to its result at the sink.
 *
 * Throughput: the same generated events (1,000 keys, event time advancing
 * 0.01 ms per event) through key_by -> window (count) -> counting sink, at 1
 * thread, once with a 10 s tumbling window and once with a 10 s / 100 ms
 * sliding window (slices of 100 ms: each event is added once; each firing
 * merges 100 slices). Printed: events/s of each and sliding / tumbling.
 *
 * Latency: a rate-limited source at 80 % of the tumbling throughput, event
 * time following processing time, 100 ms tumbling windows, 2 threads. The
 * source notes the processing time at which its announced watermark first
 * reaches end - 1 of each window; the sink computes, for each result, the
 * time since then. p50 and p99 over all results are printed.
 *
 * Memory (--keys N, run instead of the above): N keys, one event each, all
 * in one 10 s tumbling window (or, with --sliding, a 10 s / 100 ms sliding
 * one), count per window, 1 thread. Printed: the peak RSS of the run minus
 * the RSS before it, divided by N: the bytes a window key costs. The
 * baseline is the size of the key plus the accumulator (16 bytes): what a
 * hand-written loop would keep. Peak RSS only grows in a process, so one
 * run measures one variant.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "bench/bench_util.h"
#include "bench/bench.h"
#include "examples/jobs.h"
#include "examples/jobs_window.h"

#define KEYS 1000

typedef struct kv {
    int64_t key;
    int64_t value;
} kv;

static int gen_kv(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    kv *r = out;
    uint64_t x = ysb_mix(seq);
    r->key = (int64_t)(x % KEYS);
    r->value = (int64_t)(x >> 40);
    *ts = (int64_t)(seq / 100);
    return 0;
}

static sl_bytes kv_key(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {rec, 8};
    return k;
}

typedef struct tally {
    _Atomic uint64_t results;
} tally;

static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    tally *t = sl_ctx_conf(ctx);
    atomic_fetch_add(&t->results, in->count);
    return 0;
}

static const sl_operator tally_op = {
    .version = SL_OPERATOR_VERSION, .kind = "tally", .process = tally_process};

static int run_throughput(uint64_t n, int sliding, double *secs, uint64_t *results)
{
    sl_generator_conf gc = {.fn = gen_kv, .count = n};
    sl_watermark_conf wm = {.delay = 0};
    sl_window_conf wc = sliding ? sl_window_sliding(10000, 100) : sl_window_tumbling(10000, 0);
    wc.agg = &sl_agg_count;
    tally t;
    atomic_init(&t.results, 0);
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_stream *s = sl_pipeline_generator(p, "events", &gc, sizeof(kv), &wm);
    s = sl_stream_key_by(s, "key", kv_key, NULL);
    s = sl_stream_window(s, "window", &wc);
    sl_stream_sink(s, "tally", &tally_op, &t);
    double t0 = bench_now();
    int rc = sl_pipeline_run(p);
    *secs = bench_now() - t0;
    if (rc) fprintf(stderr, "sluice bench windows: %s\n", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    *results = atomic_load(&t.results);
    return rc ? 1 : 0;
}

/* --- memory per key --------------------------------------------------------------------- */

typedef struct mem_gen {
    uint64_t keys;
} mem_gen;

/* Key seq, value seq, event time spread over [0, 10 s) in order: every key
 * once, all in the first window. */
static int gen_mem(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    const mem_gen *g = ud;
    kv *r = out;
    r->key = (int64_t)seq;
    r->value = (int64_t)seq;
    *ts = (int64_t)(seq * 10000 / g->keys);
    return 0;
}

static double rss_now_mb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return (double)rss * 4096.0 / (1024.0 * 1024.0);
}

static int run_memory(uint64_t keys, int sliding, int csv)
{
    mem_gen g = {.keys = keys};
    sl_generator_conf gc = {.fn = gen_mem, .ud = &g, .count = keys};
    sl_watermark_conf wm = {.delay = 0};
    sl_window_conf wc = sliding ? sl_window_sliding(10000, 100) : sl_window_tumbling(10000, 0);
    wc.agg = &sl_agg_count;
    tally t;
    atomic_init(&t.results, 0);
    double before = rss_now_mb();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_stream *s = sl_pipeline_generator(p, "events", &gc, sizeof(kv), &wm);
    s = sl_stream_key_by(s, "key", kv_key, NULL);
    s = sl_stream_window(s, "window", &wc);
    sl_stream_sink(s, "tally", &tally_op, &t);
    double t0 = bench_now();
    int rc = sl_pipeline_run(p);
    double secs = bench_now() - t0;
    if (rc) fprintf(stderr, "sluice bench windows: %s\n", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    if (rc) return 1;
    double peak = bench_peak_rss_mb();
    double per_key = (peak - before) * 1024.0 * 1024.0 / (double)keys;
    const char *variant = sliding ? "memory-sliding-10s-100ms" : "memory-tumbling-10s";
    uint64_t results = atomic_load(&t.results);
    if (csv) {
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb\n");
        printf("windows,%s-bytes-per-key=%.0f,1,%" PRIu64 ",%.4f,%.0f,%.1f\n", variant, per_key,
               keys, secs, (double)keys / secs, peak);
    } else {
        printf("windows memory: %" PRIu64 " keys, one event each, one %s window, count, "
               "1 thread\n",
               keys, sliding ? "10 s / 100 ms sliding" : "10 s tumbling");
        printf("  RSS before %.1f MB, peak %.1f MB, %" PRIu64 " results\n", before, peak, results);
        printf("  bytes per key: %.0f (baseline: key + accumulator = 16; overhead %.0f)\n", per_key,
               per_key - 16.0);
    }
    return 0;
}

/* --- latency --------------------------------------------------------------------------- */

#define LAT_WIN 100 /* ms */

typedef struct lat {
    double rate;
    uint64_t count;
    double t0;
    int64_t n_windows;
    _Atomic int64_t *passed_ns; /* per window index: when the watermark reached end - 1 */
    double *samples;            /* µs, written by the one sink instance */
    size_t n_samples, cap_samples;
} lat;

typedef struct lsrc {
    uint64_t k;
    int64_t wm; /* the watermark this reader announced */
    double t0;
} lsrc;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int lsrc_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    lsrc *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->wm = SL_TIME_MIN;
    s->t0 = -1;
    *self = s;
    return 0;
}

static void lsrc_close(void *self)
{
    free(self);
}

/* The reader announces its own watermark (max event time - 1) right after
 * the records, so it knows when each window's end - 1 was passed. */
static int lsrc_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    lsrc *s = self;
    lat *l = sl_ctx_conf(ctx);
    if (s->k >= l->count) return SL_POLL_END;
    double now = bench_now();
    if (s->t0 < 0) s->t0 = now;
    double allowed = (now - s->t0) * l->rate + 1;
    if ((double)s->k >= allowed) return SL_POLL_WAIT;
    uint64_t n = (uint64_t)(allowed - (double)s->k) + 1;
    if (n > max) n = max;
    if (n > l->count - s->k) n = l->count - s->k;
    sl_batch *b = sl_out_batch(ctx, 0);
    if (!b) return sl_ctx_error(ctx);
    uint32_t room = SL_BATCH_CAPACITY - b->count;
    if (n > room) n = room;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t i = b->count;
        kv *r = (kv *)(void *)(b->data + (size_t)i * sizeof(kv));
        uint64_t seq = s->k + j;
        r->key = (int64_t)(ysb_mix(seq) % KEYS);
        r->value = 1;
        b->ts[i] = (int64_t)((double)seq * 1000.0 / l->rate); /* event time = schedule */
        b->hash[i] = 0;
        b->count = i + 1;
    }
    s->k += n;
    int64_t before = s->wm, after = b->ts[b->count - 1] - 1;
    if (n == 0 || after <= before) return SL_POLL_MORE;
    int rc = sl_ctx_watermark(ctx, after);
    if (rc) return rc;
    s->wm = after;
    {
        /* windows [e - 100, e) whose end - 1 is now reached */
        int64_t t = mono_ns();
        int64_t lo = before < 0 ? 0 : (before + 1) / LAT_WIN + 1;
        for (int64_t w = lo; w < l->n_windows && (w * LAT_WIN) - 1 <= after; w++)
            if (w >= 1) atomic_store(&l->passed_ns[w], t);
    }
    return SL_POLL_MORE;
}

static const sl_source lat_src = {.version = SL_SOURCE_VERSION,
                                  .kind = "rate-limited",
                                  .open = lsrc_open,
                                  .poll = lsrc_poll,
                                  .close = lsrc_close};

static int lat_sink(sl_ctx *ctx, void *self, sl_batch *in)
{
    lat *l = sl_ctx_conf(ctx);
    int64_t t = mono_ns();
    for (uint32_t i = 0; i < in->count; i++) {
        sl_window_result r = sl_window_out(sl_batch_bytes(in, i));
        int64_t w = r.end / LAT_WIN;
        if (w <= 0 || w >= l->n_windows) continue;
        int64_t p = atomic_load(&l->passed_ns[w]);
        if (!p) continue; /* fired by the end of input, not by a watermark */
        if (l->n_samples == l->cap_samples) {
            l->cap_samples = l->cap_samples ? l->cap_samples * 2 : 4096;
            l->samples = realloc(l->samples, l->cap_samples * sizeof(double));
        }
        l->samples[l->n_samples++] = (double)(t - p) / 1e3;
    }
    return 0;
}

static const sl_operator lat_op = {
    .version = SL_OPERATOR_VERSION, .kind = "latency", .process = lat_sink};

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_latency(double rate, double seconds, int credits, double *p50, double *p99,
                       size_t *n)
{
    lat l;
    memset(&l, 0, sizeof(l));
    l.rate = rate;
    l.count = (uint64_t)(rate * seconds);
    l.n_windows = (int64_t)(seconds * 1000 / LAT_WIN) + 2;
    l.passed_ns = calloc((size_t)l.n_windows, sizeof(*l.passed_ns));
    sl_window_conf wc = sl_window_tumbling(LAT_WIN, 0);
    wc.agg = &sl_agg_count;
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    if (credits) sl_pipeline_set_credits(p, credits);
    sl_stream *s = sl_pipeline_source(p, "events", &lat_src, &l, sizeof(kv), NULL);
    s = sl_stream_key_by(s, "key", kv_key, NULL);
    s = sl_stream_window(s, "window", &wc);
    sl_stream_sink(s, "latency", &lat_op, &l);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "sluice bench windows: %s\n", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    *n = l.n_samples;
    *p50 = *p99 = 0;
    if (l.n_samples) {
        qsort(l.samples, l.n_samples, sizeof(double), cmp_d);
        *p50 = l.samples[l.n_samples / 2];
        *p99 = l.samples[(size_t)((double)l.n_samples * 0.99)];
    }
    free(l.samples);
    free((void *)l.passed_ns);
    return rc ? 1 : 0;
}

int bench_windows(int argc, char **argv)
{
    const char *cmd = "bench windows";
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_NO_LATENCY, O_CREDITS, O_EVENTS, O_KEYS, O_SLIDING };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"no-latency", no_argument, NULL, O_NO_LATENCY},
                                         {"credits", required_argument, NULL, O_CREDITS},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"keys", required_argument, NULL, O_KEYS},
                                         {"sliding", no_argument, NULL, O_SLIDING},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    uint64_t n = 2000000, keys = 0;
    int csv = 0, latency = 1, sliding = 0, opt, ret = 0;
    long long credits = 0, v;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = 1; break;
        case O_NO_LATENCY: latency = 0; break;
        case O_CREDITS: ret = jobs_int(cmd, "--credits", optarg, 1, 4096, &credits); break;
        case O_EVENTS:
            if (!(ret = jobs_int(cmd, "--events", optarg, 1000, (long long)1 << 40, &v)))
                n = (uint64_t)v;
            break;
        case O_KEYS:
            if (!(ret = jobs_int(cmd, "--keys", optarg, 1000, (long long)1 << 32, &v)))
                keys = (uint64_t)v;
            break;
        case O_SLIDING: sliding = 1; break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench windows [--events N] [--no-latency] [--credits C] [--csv]\n"
                   "       sluice bench windows --keys N [--sliding] [--csv]\n"
                   "10 s / 100 ms sliding against 10 s tumbling windows on the same events\n"
                   "(default 2000000, 1,000 keys, 1 thread), then the latency from the\n"
                   "watermark passing a window's end to its result at the sink, at 80 %% of the\n"
                   "tumbling throughput (100 ms windows, 2 threads, 3 s): p50 and p99.\n"
                   "--credits C sets the channel credits of the latency run (default 8).\n"
                   "--keys N measures memory instead: N keys, one event each, in one 10 s\n"
                   "tumbling window (--sliding: 10 s / 100 ms); prints the peak RSS delta\n"
                   "per key.\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    if (keys) return run_memory(keys, sliding, csv);
    double ts, ss;
    uint64_t tr, sr;
    if (run_throughput(n, 0, &ts, &tr)) return 1;
    double rss_t = bench_peak_rss_mb();
    if (run_throughput(n, 1, &ss, &sr)) return 1;
    double rss_s = bench_peak_rss_mb();
    double peak = (double)n / ts, rate = 0.8 * peak, p50 = 0, p99 = 0;
    size_t ns = 0;
    if (latency && run_latency(rate, 3.0, (int)credits, &p50, &p99, &ns)) return 1;
    double rss_l = bench_peak_rss_mb();
    bench_plot_row("tumbling 10s", 1, n, ts); /* --plot (bench/plot.h): sliding against it */
    bench_plot_mark_baseline();
    bench_plot_row("sliding 10s/100ms", 1, n, ss);
    if (latency) bench_plot_latency("window result, 100 ms tumbling", 2, p50 / 1e3, p99 / 1e3);
    if (csv) {
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb\n");
        printf("windows,tumbling-10s,1,%" PRIu64 ",%.4f,%.0f,%.1f\n", n, ts, (double)n / ts, rss_t);
        printf("windows,sliding-10s-100ms,1,%" PRIu64 ",%.4f,%.0f,%.1f\n", n, ss, (double)n / ss,
               rss_s);
        if (latency)
            printf("windows,latency-p50-us=%.1f-p99-us=%.1f,2,%" PRIu64 ",3.0000,%.0f,%.1f\n", p50,
                   p99, (uint64_t)(rate * 3.0), rate, rss_l);
    } else {
        printf("windows: %" PRIu64 " events, %d keys, count per window, 1 thread\n", n, KEYS);
        printf("  %-22s %10s %14s %10s %12s\n", "variant", "seconds", "events/s", "results",
               "peak RSS MB");
        printf("  %-22s %10.3f %14.0f %10" PRIu64 " %12.1f\n", "tumbling 10s", ts, (double)n / ts,
               tr, rss_t);
        printf("  %-22s %10.3f %14.0f %10" PRIu64 " %12.1f\n", "sliding 10s/100ms", ss,
               (double)n / ss, sr, rss_s);
        printf("  ratio sliding / tumbling: %.3f (target >= 0.8)\n", ts / ss);
        if (latency)
            printf("latency, watermark passing a window's end -> result at the sink\n"
                   "  (100 ms tumbling windows, %.0f events/s = 80%% of peak, 2 threads, %zu "
                   "results)\n"
                   "  p50 %.1f us, p99 %.1f us (target p99 < 1000 us)\n",
                   rate, ns, p50, p99);
    }
    return 0;
}
