/*
 * bench/bench_nexmark.c - `sluice bench nexmark`: the NEXMark queries of the
 * bundled job `nexmark` on its generator, events per second on 1 and 2
 * threads, against the per-core figures published for Apache Flink.
 *
 * Each (query, threads) runs `sluice run nexmark --query Q --events N
 * --threads T --parallelism T --out /dev/null` in a child process (so the
 * peak RSS printed is its own), timed around the pipeline's run: the
 * generator's events (1 person : 3 auctions : 46 bids), the query, and its
 * results written as CSV lines (to /dev/null; Flink's figures use a
 * blackhole sink, which formats nothing). Events per core is events/s
 * divided by the threads.
 *
 * The reference is the NEXMark repository's (github.com/nexmark/nexmark,
 * README, "Benchmark Results": Flink 1.13, 8 workers of 8 cores, RocksDB,
 * checkpoints every 3 minutes, 100 M events), Throughput/Cores per query.
 * Its setup differs from this one (a cluster, durable state, checkpoints,
 * SQL) so the ratio says how far apart the two are, not which engine is
 * better at equal work. The goals printed: >= 100 x Flink's per core on
 * every query, and 2 threads >= 1.8 x 1 thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench_util.h"
#include "bench/bench.h"
#include "examples/jobs.h"

typedef struct nx_query {
    const char *name;
    double flink_per_core; /* events/s per core, the NEXMark repository's Flink figure */
} nx_query;

static const nx_query queries[] = {
    {"q0", 155020}, {"q1", 157940}, {"q2", 175210}, {"q3", 152120}, {"q4", 34330},
    {"q5", 22140},  {"q7", 12330},  {"q8", 146140}, {"q11", 39700},
};
#define N_QUERIES (sizeof(queries) / sizeof(queries[0]))

typedef struct nx_result {
    int ok;
    double seconds, rss_mb;
} nx_result;

typedef struct nx_case {
    const char *query;
    uint64_t events;
    int threads;
} nx_case;

static void job_child(void *ud, void *out)
{
    const nx_case *c = ud;
    nx_result *r = out;
    memset(r, 0, sizeof(*r));
    char th[16], ev[32];
    snprintf(th, sizeof th, "%d", c->threads);
    snprintf(ev, sizeof ev, "%" PRIu64, c->events);
    char *argv[] = {"nexmark",   "--query", (char *)c->query, "--events", ev,  "--out", "/dev/null",
                    "--threads", th,        "--parallelism",  th,         NULL};
    bench_timed tm = {0};
    jobs_runner runner = {.run = bench_run_timed, .ud = &tm};
    jobs_getopt_reset();
    if (job_nexmark(11, argv, &runner) != 0) return;
    r->seconds = tm.t1 - tm.t0;
    r->rss_mb = bench_peak_rss_mb();
    r->ok = 1;
}

int bench_nexmark(int argc, char **argv)
{
    const char *cmd = "bench nexmark";
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_EVENTS, O_QUERY };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"query", required_argument, NULL, O_QUERY},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    uint64_t n = 10000000;
    const char *only = NULL;
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
        case O_QUERY: only = optarg; break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench nexmark [--query Q] [--events N] [--csv]\n"
                   "NEXMark queries q0 q1 q2 q3 q4 q5 q7 q8 q11 (or only Q) on the generator,\n"
                   "N events each (default 10000000), on 1 and 2 threads: events/s, per core\n"
                   "against Flink's published per-core figures, 2 threads / 1, peak RSS.\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    size_t first = 0, last = N_QUERIES;
    if (only) {
        for (first = 0; first < N_QUERIES && strcmp(queries[first].name, only) != 0; first++) {}
        if (first == N_QUERIES) {
            fprintf(stderr,
                    "sluice %s: unknown query '%s' (q0, q1, q2, q3, q4, q5, q7, q8 or q11)\n", cmd,
                    only);
            return 2;
        }
        last = first + 1;
    }
    if (csv)
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb\n");
    else
        printf("bench nexmark: %" PRIu64 " generated events per query, results as CSV to "
               "/dev/null\n"
               "  %-5s %7s %12s %9s %12s %12s %10s %9s %8s\n",
               n, "query", "threads", "events", "seconds", "events/s", "per core", "x Flink",
               "2t / 1t", "peak MB");
    int ok = 1;
    double worst_flink = 1e300, worst_scale = 1e300;
    for (size_t q = first; q < last; q++) {
        nx_result r[2];
        for (int k = 0; k < 2; k++) {
            nx_case c = {.query = queries[q].name, .events = n, .threads = k + 1};
            if (bench_in_child(job_child, &c, &r[k], sizeof r[k]) || !r[k].ok) {
                fprintf(stderr, "sluice %s: %s on %d thread(s) failed\n", cmd, queries[q].name,
                        k + 1);
                return 1;
            }
        }
        for (int k = 0; k < 2; k++) {
            double eps = (double)n / r[k].seconds, per_core = eps / (k + 1);
            double xf = per_core / queries[q].flink_per_core, scale = r[0].seconds / r[1].seconds;
            if (xf < worst_flink) worst_flink = xf;
            if (k == 1 && scale < worst_scale) worst_scale = scale;
            bench_plot_row(queries[q].name, k + 1, n, r[k].seconds);
            if (csv) {
                printf("nexmark,%s,%d,%" PRIu64 ",%.6f,%.0f,%.1f\n", queries[q].name, k + 1, n,
                       r[k].seconds, eps, r[k].rss_mb);
                continue;
            }
            char sc[16] = "";
            if (k == 1) snprintf(sc, sizeof sc, "%.2f", scale);
            printf("  %-5s %7d %12" PRIu64 " %9.3f %11.2fM %11.2fM %10.0f %9s %8.1f\n",
                   queries[q].name, k + 1, n, r[k].seconds, eps / 1e6, per_core / 1e6, xf, sc,
                   r[k].rss_mb);
        }
    }
    if (!csv) {
        printf("\n  Flink per core: the NEXMark repository's figures (Flink 1.13, 64 cores, "
               "RocksDB, checkpoints)\n");
        printf("  lowest x Flink per core      %.0f  (target >= 100 on every query)\n",
               worst_flink);
        printf("  lowest 2 threads / 1 thread  %.2f  (target >= 1.8 on every query)\n",
               worst_scale);
    }
    return ok ? 0 : 1;
}
