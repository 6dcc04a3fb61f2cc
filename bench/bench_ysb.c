/*
 * bench/bench_ysb.c - `sluice bench ysb`: the Yahoo Streaming Benchmark on
 * the in-memory generator, run by the engine at 1 and 2 threads, next to a
 * hand-written loop over the same events in the same process.
 *
 * The loop makes each event with the same cursor as the job's generator
 * (ysb_next), keeps the views, maps ad -> campaign through the same array
 * and counts into a campaign x window array. The engine runs the job's own
 * pipeline (examples/job_ysb.c) at parallelism = threads into a counting
 * sink. Both produce the total number of views counted and a checksum over
 * (campaign, window, count); every engine run is checked against the loop
 * over the same number of events, and the benchmark fails (exit 1) if they
 * differ.
 *
 * Timing. A run of 20 M events lasts 0.1-0.3 s, too short to trust on a
 * shared machine, so each variant (loop, engine 1 thread, engine 2 threads)
 * first runs on 20 M events, and on more until a run lasts 0.25 s
 * (calibration: not checked, not reported); its event count is then sized
 * so that one run lasts about --seconds (default 2 s, plus 10 %): the
 * variants run different event counts, and are compared by events/s. Then
 * --repeat rounds (default 5), each running every variant once, in turn,
 * so that a change in the machine's load falls on all of them. Per
 * variant: the median events/s (the upper middle one for an even count)
 * and the spread (min - max) over the rounds; the ratios engine-1t / loop
 * and 2t / 1t are those of the medians. With --events N every variant
 * runs N events and there is no calibration. About 40 s in all by default.
 *
 * Window-result latency (engine runs), as WindFlow's YSB reports it: for
 * each window result reaching the sink, the wall time (CLOCK_MONOTONIC) at
 * the sink minus the wall time at which the generator made the window's
 * newest event. The generator makes events in runs (one poll, at most a
 * batch: sluice/connectors.h's fill); after each run the job calls the bench's
 * `made` hook, which stamps "now" on every window the run has events of
 * (the later stamp wins, over both generator instances), so a window's
 * stamp is the time its newest event, over all campaigns, was made. The
 * sink takes one clock reading per batch of results. The latencies go to a
 * log-linear histogram of atomic counters (32 buckets per power of two:
 * p50 / p99 within 3 %), pooled over the variant's rounds: no malloc and
 * no lock per record; the stamps (one int64 per 10 s window) are allocated
 * before the run. The hook costs the engine one clock reading per run of
 * events. The generator runs as fast as it can, so this is the latency
 * under full load, queueing included; the last windows fire at the end of
 * the input, so theirs includes the end of the run.
 *
 * Printed: events per run, the median run's seconds, events/s median and
 * min - max, peak RSS (the highest of the variant's runs: the process's
 * peak is reset before each run through /proc/self/clear_refs, and read
 * back as VmHWM; where that is not allowed, the process's peak so far),
 * CPUs (the CPU time the process used in the variant's runs over their
 * time: a 2-thread run that shows well under 2 did not have both cores,
 * whether its workers waited for work or the machine gave the cores to
 * others), the two ratios and the latency lines. --csv prints DESIGN.md's
 * rows (seconds and events_per_s: the median run's) with columns added at
 * the end: rounds, events_per_s_min, events_per_s_max, latency_p50_ms,
 * latency_p99_ms (empty for the loop), cpus.
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

#define EVENTS_PER_S 10000    /* event-time pace: a 10 s window holds 100,000 events */
#define CALIBRATE    20000000 /* events of the first calibration run, and the fewest */
#define MAX_REPEAT   100
#define LAT_SUB      32 /* histogram buckets per power of two */
#define LAT_BUCKETS  (60 * LAT_SUB)

static uint64_t cell_sum(int64_t campaign, int64_t wstart, int64_t count)
{
    return ysb_mix((uint64_t)campaign * 1000003u + (uint64_t)wstart) * (uint64_t)count;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* --- latency -------------------------------------------------------------------------- */

/* Windows' stamps (for one run) and the histogram (over a variant's runs). */
typedef struct lat {
    _Atomic int64_t *stamp; /* window index -> ns its newest event was made */
    size_t nwin;
    _Atomic uint64_t hist[LAT_BUCKETS];
} lat;

/* Bucket of v ns: exact below LAT_SUB, then LAT_SUB buckets per power of two. */
static int lat_bucket(int64_t v)
{
    if (v < LAT_SUB) return v < 0 ? 0 : (int)v;
    int e = 63 - __builtin_clzll((unsigned long long)v); /* >= 5 */
    return (e - 4) * LAT_SUB + (int)((uint64_t)v >> (e - 5)) - LAT_SUB;
}

/* The middle of bucket b, in ns. */
static double lat_value(int b)
{
    if (b < LAT_SUB) return b;
    int e = b / LAT_SUB + 4;
    double lo = (double)((uint64_t)(LAT_SUB + b % LAT_SUB) << (e - 5));
    return lo + (double)((uint64_t)1 << (e - 5)) / 2;
}

/* The q-quantile in ms, over *total results; -1 if there are none. */
static double lat_quantile(lat *l, double q, uint64_t *total)
{
    uint64_t n = 0, seen = 0;
    for (int b = 0; b < LAT_BUCKETS; b++) n += atomic_load(&l->hist[b]);
    *total = n;
    if (!n) return -1;
    uint64_t want = (uint64_t)(q * (double)n);
    if (want < 1) want = 1;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        seen += atomic_load(&l->hist[b]);
        if (seen >= want) return lat_value(b) / 1e6;
    }
    return lat_value(LAT_BUCKETS - 1) / 1e6;
}

/* ysb_job.made, on a generator instance's thread: stamp now on the windows
 * of the run ev[0 .. n) (its event times grow). */
static void lat_made(const ysb_event *ev, uint32_t n, void *ud)
{
    lat *l = ud;
    int64_t now = now_ns();
    size_t w0 = (size_t)(ev[0].event_time / YSB_WINDOW_MS);
    size_t w1 = (size_t)(ev[n - 1].event_time / YSB_WINDOW_MS);
    for (size_t w = w0; w <= w1 && w < l->nwin; w++) {
        int64_t old = atomic_load_explicit(&l->stamp[w], memory_order_relaxed);
        while (old < now &&
               !atomic_compare_exchange_weak_explicit(&l->stamp[w], &old, now, memory_order_relaxed,
                                                      memory_order_relaxed)) {}
    }
}

/* --- the engine's sink ---------------------------------------------------------------- */

typedef struct tally {
    _Atomic uint64_t views;
    _Atomic uint64_t check;
    lat *lat;
} tally;

static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    tally *t = sl_ctx_conf(ctx);
    lat *l = t->lat;
    int64_t now = now_ns();
    uint64_t v = 0, c = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_window_result r = sl_window_out(sl_batch_bytes(in, i));
        int64_t camp, n;
        memcpy(&camp, r.key.ptr, 8);
        memcpy(&n, r.result, 8);
        v += (uint64_t)n;
        c += cell_sum(camp, r.start, n);
        size_t w = (size_t)(r.start / YSB_WINDOW_MS);
        if (w < l->nwin) {
            int64_t made = atomic_load_explicit(&l->stamp[w], memory_order_relaxed);
            atomic_fetch_add_explicit(&l->hist[lat_bucket(now - made)], 1, memory_order_relaxed);
        }
    }
    atomic_fetch_add(&t->views, v);
    atomic_fetch_add(&t->check, c);
    return 0;
}

static const sl_operator tally_op = {
    .version = SL_OPERATOR_VERSION, .kind = "tally", .process = tally_process};

/* --- the variants -------------------------------------------------------------------- */

/* Windows that n events span, and one to spare. */
static size_t windows_of(uint64_t n)
{
    return (size_t)((n * 1000 / EVENTS_PER_S) / YSB_WINDOW_MS + 2);
}

/* The job's pipeline on `threads` workers over n events: seconds, views and
 * checksum; latencies into *l (stamps allocated here). 0, or 1 after a line. */
static int run_engine(const char *cmd, uint64_t n, int threads, lat *l, double *secs,
                      uint64_t *views, uint64_t *check)
{
    static ysb_job j;
    memset(&j, 0, sizeof(j));
    j.cmd = cmd;
    j.events = n;
    j.events_per_s = EVENTS_PER_S;
    j.parallelism = threads;
    j.made = lat_made;
    j.made_ud = l;
    l->nwin = windows_of(n);
    l->stamp = calloc(l->nwin, sizeof(*l->stamp));
    if (!l->stamp) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    if (ysb_campaigns(&j, NULL)) {
        free(l->stamp);
        return 1;
    }
    tally t = {.lat = l};
    atomic_init(&t.views, 0);
    atomic_init(&t.check, 0);
    sl_pipeline *p = sl_pipeline_new();
    int rc = SL_ENOMEM;
    if (p) {
        sl_pipeline_set_threads(p, threads);
        sl_stream *w = ysb_build(p, &j);
        sl_stream_sink(w, "tally", &tally_op, &t);
        double t0 = bench_now();
        rc = sl_pipeline_run(p);
        *secs = bench_now() - t0;
    }
    if (rc) fprintf(stderr, "sluice %s: %s\n", cmd, p ? sl_pipeline_errmsg(p) : "out of memory");
    sl_pipeline_free(p);
    ysb_free(&j);
    free(l->stamp);
    l->stamp = NULL;
    *views = atomic_load(&t.views);
    *check = atomic_load(&t.check);
    return rc ? 1 : 0;
}

/* The hand-written loop over n events: seconds, views and checksum. */
static int run_loop(const char *cmd, uint64_t n, double *secs, uint64_t *views, uint64_t *check)
{
    static ysb_job j;
    memset(&j, 0, sizeof(j));
    j.cmd = cmd;
    if (ysb_campaigns(&j, NULL)) return 1;
    ysb_cursor cur;
    ysb_cursor_init(&cur, 0, 1, EVENTS_PER_S);
    size_t nwin = windows_of(n);
    uint32_t *counts = calloc(nwin * YSB_CAMPAIGNS, sizeof(uint32_t));
    if (!counts) {
        ysb_free(&j);
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    double t0 = bench_now();
    for (uint64_t seq = 0; seq < n; seq++) {
        ysb_event e;
        ysb_next(&cur, &e);
        if (e.event_type != YSB_VIEW) continue;
        int32_t c = j.camp_of[e.ad_id];
        if (c < 0) continue;
        counts[(size_t)(e.event_time / YSB_WINDOW_MS) * YSB_CAMPAIGNS + (size_t)c]++;
    }
    *secs = bench_now() - t0;
    uint64_t v = 0, ck = 0;
    for (size_t w = 0; w < nwin; w++)
        for (int c = 0; c < YSB_CAMPAIGNS; c++) {
            uint32_t k = counts[w * YSB_CAMPAIGNS + (size_t)c];
            if (!k) continue;
            v += k;
            ck += cell_sum(c, (int64_t)w * YSB_WINDOW_MS, k);
        }
    free(counts);
    ysb_free(&j);
    *views = v;
    *check = ck;
    return 0;
}

typedef struct variant {
    const char *name;
    int threads;           /* 0: the hand-written loop */
    uint64_t n;            /* events per run */
    uint64_t views, check; /* what the loop counts over n events */
    double eps[MAX_REPEAT];
    double rss;
    double cpu, wall; /* over the rounds: CPU seconds of the process, run seconds */
    lat *lat;         /* engine variants */
} variant;

/* One run of v: its events/s into *eps; with check, an engine run must
 * count what the loop does. 0, or 1 after a line. */
static int run_variant(const char *cmd, variant *v, int check_it, double *eps)
{
    double s = 0;
    uint64_t views, check;
    if (v->threads == 0) {
        if (run_loop(cmd, v->n, &s, &views, &check)) return 1;
    } else {
        if (run_engine(cmd, v->n, v->threads, v->lat, &s, &views, &check)) return 1;
        if (check_it && (views != v->views || check != v->check)) {
            fprintf(stderr,
                    "sluice %s: engine at %d threads counted %" PRIu64
                    " views (checksum %016" PRIx64 "), the loop %" PRIu64 " (%016" PRIx64 ")\n",
                    cmd, v->threads, views, check, v->views, v->check);
            return 1;
        }
    }
    *eps = (double)v->n / s;
    return 0;
}

/* Reset the process's peak RSS to its current RSS (Linux >= 4.0: "5" to
 * /proc/self/clear_refs), so that VmHWM after a run is that run's peak.
 * 0, or -1 where it cannot be reset. */
static int peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int bench_ysb(int argc, char **argv)
{
    const char *cmd = "bench ysb";
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_EVENTS, O_REPEAT, O_SECONDS };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"repeat", required_argument, NULL, O_REPEAT},
                                         {"seconds", required_argument, NULL, O_SECONDS},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    uint64_t events = 0; /* 0: sized by calibration */
    long long repeat = 5, seconds = 2, v;
    int csv = 0, seconds_given = 0, opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = 1; break;
        case O_EVENTS:
            if (!(ret = jobs_int(cmd, "--events", optarg, 1000, (long long)1 << 40, &v)))
                events = (uint64_t)v;
            break;
        case O_REPEAT: ret = jobs_int(cmd, "--repeat", optarg, 1, MAX_REPEAT, &repeat); break;
        case O_SECONDS:
            ret = jobs_int(cmd, "--seconds", optarg, 1, 600, &seconds);
            seconds_given = 1;
            break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench ysb [--events N | --seconds S] [--repeat R] [--csv]\n"
                   "YSB on the in-memory generator by the engine at 1 and 2 threads, and by a\n"
                   "hand-written loop over the same events. Each variant's run is sized from\n"
                   "calibration runs (20000000 events or more) to last about S seconds (default\n"
                   "2), or runs N events (--events); R rounds (default 5) run every variant once.\n"
                   "Prints events/s (median and min - max over the rounds), the ratios\n"
                   "engine-1t/loop and 2t/1t of the medians, peak RSS, and the window-result\n"
                   "latency p50/p99: the time a result reaches the sink minus the time the\n"
                   "generator made the newest event of its window.\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    if (events && seconds_given) {
        fprintf(stderr, "sluice %s: give --events or --seconds, not both\n", cmd);
        return 2;
    }

    static lat lats[2]; /* large (histograms); one bench per process */
    memset(lats, 0, sizeof(lats));
    variant vs[3] = {{.name = "hand-loop", .threads = 0},
                     {.name = "engine", .threads = 1, .lat = &lats[0]},
                     {.name = "engine", .threads = 2, .lat = &lats[1]}};
    /* Sizing, unless --events: calibration runs (unchecked) from 20 M events,
     * grown until one lasts 0.25 s, so that its events/s is not mostly the
     * start and the end of a run; then 10 % more than S s of that. */
    for (int k = 0; k < 3; k++) {
        variant *x = &vs[k];
        x->n = events ? events : CALIBRATE;
        if (events) continue;
        double eps;
        for (;;) {
            if (run_variant(cmd, x, 0, &eps)) return 1;
            if ((double)x->n / eps >= 0.25) break;
            x->n = (uint64_t)(eps * 0.3 / 1e6 + 1) * 1000000;
        }
        uint64_t n = (uint64_t)(eps * (double)seconds * 1.1 / 1e6 + 1) * 1000000;
        x->n = n > CALIBRATE ? n : CALIBRATE;
    }
    /* The loop's counts over each variant's events: what its runs must count. */
    for (int k = 1; k < 3; k++) {
        variant *x = &vs[k];
        if (k == 2 && x->n == vs[1].n) {
            x->views = vs[1].views;
            x->check = vs[1].check;
        } else if (run_loop(cmd, x->n, &(double){0}, &x->views, &x->check)) {
            return 1;
        }
    }
    memset(lats, 0, sizeof(lats)); /* calibration latencies are not reported */
    /* Peak RSS per variant: the highest of its runs' (the peak reset before
     * each), else, where it cannot be reset, the process's so far. */
    for (long long r = 0; r < repeat; r++)
        for (int k = 0; k < 3; k++) {
            int reset = peak_reset() == 0;
            double c0 = bench_cpu_seconds();
            if (run_variant(cmd, &vs[k], 1, &vs[k].eps[r])) return 1;
            vs[k].cpu += bench_cpu_seconds() - c0;
            vs[k].wall += (double)vs[k].n / vs[k].eps[r];
            double kb = reset ? bench_status_kb("VmHWM") : -1;
            double mb = kb >= 0 ? kb / 1024.0 : bench_peak_rss_mb();
            if (mb > vs[k].rss) vs[k].rss = mb;
        }

    double med[3], lo[3], hi[3], p50[3] = {-1, -1, -1}, p99[3] = {-1, -1, -1};
    uint64_t nres[3] = {0};
    for (int k = 0; k < 3; k++) {
        qsort(vs[k].eps, (size_t)repeat, sizeof(double), bench_cmp_double);
        med[k] = vs[k].eps[repeat / 2];
        lo[k] = vs[k].eps[0];
        hi[k] = vs[k].eps[repeat - 1];
        if (vs[k].lat) {
            p50[k] = lat_quantile(vs[k].lat, 0.50, &nres[k]);
            p99[k] = lat_quantile(vs[k].lat, 0.99, &nres[k]);
        }
    }
    for (int k = 0; k < 3; k++) { /* --plot (bench/plot.h): medians and latencies */
        bench_plot_row(vs[k].name, vs[k].threads ? vs[k].threads : 1, vs[k].n,
                       (double)vs[k].n / med[k]);
        if (vs[k].lat) bench_plot_latency("window result", vs[k].threads, p50[k], p99[k]);
    }
    if (csv) {
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb,rounds,"
               "events_per_s_min,events_per_s_max,latency_p50_ms,latency_p99_ms,cpus\n");
        for (int k = 0; k < 3; k++) {
            printf("ysb,%s,%d,%" PRIu64 ",%.4f,%.0f,%.1f,%lld,%.0f,%.0f,", vs[k].name,
                   vs[k].threads ? vs[k].threads : 1, vs[k].n, (double)vs[k].n / med[k], med[k],
                   vs[k].rss, repeat, lo[k], hi[k]);
            if (vs[k].lat)
                printf("%.3f,%.3f,", p50[k], p99[k]);
            else
                printf(",,");
            printf("%.2f\n", vs[k].cpu / vs[k].wall);
        }
        return 0;
    }
    printf("ysb: %lld rounds, each running every variant once; ", repeat);
    if (events)
        printf("%" PRIu64 " events per run (--events)\n", events);
    else
        printf("runs sized from calibration runs to last about %lld s\n", seconds);
    printf("every engine run counted the views the loop counts over the same events\n");
    printf("  %-10s %7s %12s %8s %10s  %-17s %11s %5s\n", "variant", "threads", "events", "seconds",
           "M events/s", "(min - max)", "peak RSS MB", "CPUs");
    for (int k = 0; k < 3; k++)
        printf("  %-10s %7d %12" PRIu64 " %8.3f %10.2f  (%6.2f - %6.2f) %11.1f %5.2f\n", vs[k].name,
               vs[k].threads ? vs[k].threads : 1, vs[k].n, (double)vs[k].n / med[k], med[k] / 1e6,
               lo[k] / 1e6, hi[k] / 1e6, vs[k].rss, vs[k].cpu / vs[k].wall);
    printf("  ratio engine-1t / loop: %.3f (target >= 0.5; medians)\n", med[1] / med[0]);
    printf("  ratio engine-2t / 1t:   %.3f (target >= 1.8; medians)\n", med[2] / med[1]);
    printf("  window-result latency: result at the sink - the generator made its window's "
           "newest event\n  (full speed, all rounds' results):\n");
    for (int k = 1; k < 3; k++)
        printf("    engine %d thread%s  p50 %.3f ms  p99 %.3f ms  (%" PRIu64 " results)\n",
               vs[k].threads, vs[k].threads > 1 ? "s" : " ", p50[k], p99[k], nres[k]);
    return 0;
}
