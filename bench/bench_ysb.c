/*
 * bench/bench_ysb.c - `sluice bench ysb`: the Yahoo Streaming Benchmark on
 * the in-memory generator, run by the engine at 1 and 2 threads, next to a
 * hand-written loop over the same events in the same process.
 *
 * The loop makes each event with the same cursor as the job's generator
 * (ysb_next), keeps the views, maps ad -> campaign through the same array
 * and counts into a campaign x window array. The engine runs the job's own
 * pipeline (examples/job_ysb.c) into a counting sink. Both produce the total
 * number of views counted and a checksum over (campaign, window, count); the
 * benchmark fails (exit 1) if they differ. Printed: events/s of each, the
 * ratios engine-1t / loop and 2t / 1t, and the process's peak RSS after each
 * run (getrusage; it only grows). --csv prints DESIGN.md's rows.
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

static uint64_t cell_sum(int64_t campaign, int64_t wstart, int64_t count)
{
    return ysb_mix((uint64_t)campaign * 1000003u + (uint64_t)wstart) * (uint64_t)count;
}

typedef struct tally {
    _Atomic uint64_t views;
    _Atomic uint64_t check;
} tally;

static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    tally *t = sl_ctx_conf(ctx);
    uint64_t v = 0, c = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_window_result r = sl_window_out(sl_batch_bytes(in, i));
        int64_t camp, n;
        memcpy(&camp, r.key.ptr, 8);
        memcpy(&n, r.result, 8);
        v += (uint64_t)n;
        c += cell_sum(camp, r.start, n);
    }
    atomic_fetch_add(&t->views, v);
    atomic_fetch_add(&t->check, c);
    return 0;
}

static const sl_operator tally_op = {
    .version = SL_OPERATOR_VERSION, .kind = "tally", .process = tally_process};

typedef struct row {
    const char *variant;
    int threads;
    uint64_t events;
    double seconds;
    double rss;
    uint64_t views, check;
} row;

static int run_engine(uint64_t n, int threads, row *out)
{
    static ysb_job j;
    memset(&j, 0, sizeof(j));
    j.cmd = "bench ysb";
    j.events = n;
    j.events_per_s = 10000;
    j.parallelism = threads;
    if (ysb_campaigns(&j, NULL)) return 1;
    tally t;
    atomic_init(&t.views, 0);
    atomic_init(&t.check, 0);
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, threads);
    sl_stream *w = ysb_build(p, &j);
    sl_stream_sink(w, "tally", &tally_op, &t);
    double t0 = bench_now();
    int rc = sl_pipeline_run(p);
    double dt = bench_now() - t0;
    if (rc) fprintf(stderr, "sluice bench ysb: %s\n", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    ysb_free(&j);
    out->variant = "engine";
    out->threads = threads;
    out->events = n;
    out->seconds = dt;
    out->rss = bench_peak_rss_mb();
    out->views = atomic_load(&t.views);
    out->check = atomic_load(&t.check);
    return rc ? 1 : 0;
}

static int run_loop(uint64_t n, row *out)
{
    static ysb_job j;
    memset(&j, 0, sizeof(j));
    j.cmd = "bench ysb";
    if (ysb_campaigns(&j, NULL)) return 1;
    const uint64_t eps = 10000;
    ysb_cursor cur;
    ysb_cursor_init(&cur, 0, 1, eps);
    size_t nwin = (size_t)((n * 1000 / eps) / YSB_WINDOW_MS + 2);
    uint32_t *counts = calloc(nwin * YSB_CAMPAIGNS, sizeof(uint32_t));
    if (!counts) return 1;
    double t0 = bench_now();
    for (uint64_t seq = 0; seq < n; seq++) {
        ysb_event e;
        ysb_next(&cur, &e);
        if (e.event_type != YSB_VIEW) continue;
        int32_t c = j.camp_of[e.ad_id];
        if (c < 0) continue;
        counts[(size_t)(e.event_time / YSB_WINDOW_MS) * YSB_CAMPAIGNS + (size_t)c]++;
    }
    double dt = bench_now() - t0;
    uint64_t v = 0, check = 0;
    for (size_t w = 0; w < nwin; w++)
        for (int c = 0; c < YSB_CAMPAIGNS; c++) {
            uint32_t k = counts[w * YSB_CAMPAIGNS + (size_t)c];
            if (!k) continue;
            v += k;
            check += cell_sum(c, (int64_t)w * YSB_WINDOW_MS, k);
        }
    free(counts);
    ysb_free(&j);
    out->variant = "hand-loop";
    out->threads = 1;
    out->events = n;
    out->seconds = dt;
    out->rss = bench_peak_rss_mb();
    out->views = v;
    out->check = check;
    return 0;
}

int bench_ysb(int argc, char **argv)
{
    const char *cmd = "bench ysb";
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_EVENTS };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    uint64_t n = 20000000;
    int csv = 0, opt, ret = 0;
    long long v;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = 1; break;
        case O_EVENTS:
            if (!(ret = jobs_int(cmd, "--events", optarg, 1000, (long long)1 << 40, &v)))
                n = (uint64_t)v;
            break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench ysb [--events N] [--csv]\n"
                   "YSB on the in-memory generator (default 20000000 events) by the engine at\n"
                   "1 and 2 threads, and by a hand-written loop over the same events; prints\n"
                   "events/s, the ratios engine-1t/loop and 2t/1t, and peak RSS.\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    row r[3];
    if (run_loop(n, &r[0]) || run_engine(n, 1, &r[1]) || run_engine(n, 2, &r[2])) return 1;
    int ok = 1;
    for (int k = 1; k < 3; k++) {
        if (r[k].views != r[0].views || r[k].check != r[0].check) {
            fprintf(stderr,
                    "sluice %s: engine at %d threads counted %" PRIu64
                    " views (checksum %016" PRIx64 "), the loop %" PRIu64 " (%016" PRIx64 ")\n",
                    cmd, r[k].threads, r[k].views, r[k].check, r[0].views, r[0].check);
            ok = 0;
        }
    }
    if (csv) {
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb\n");
        for (int k = 0; k < 3; k++)
            printf("ysb,%s,%d,%" PRIu64 ",%.4f,%.0f,%.1f\n", r[k].variant, r[k].threads,
                   r[k].events, r[k].seconds, (double)r[k].events / r[k].seconds, r[k].rss);
    } else {
        printf("ysb: %" PRIu64 " events, %" PRIu64 " views counted (%s)\n", n, r[0].views,
               ok ? "engine = loop" : "MISMATCH");
        printf("  %-10s %7s %10s %14s %12s\n", "variant", "threads", "seconds", "events/s",
               "peak RSS MB");
        for (int k = 0; k < 3; k++)
            printf("  %-10s %7d %10.3f %14.0f %12.1f\n", r[k].variant, r[k].threads, r[k].seconds,
                   (double)r[k].events / r[k].seconds, r[k].rss);
        printf("  ratio engine-1t / loop: %.3f (target >= 0.5)\n", r[0].seconds / r[1].seconds);
        printf("  ratio engine-2t / 1t:   %.3f (target >= 1.8)\n", r[1].seconds / r[2].seconds);
    }
    return ok ? 0 : 1;
}
