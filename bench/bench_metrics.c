/*
 * bench/bench_metrics.c - `sluice bench metrics`: what watching a job costs.
 *
 * bench core's pipeline (bench/bench_core.c: generator -> filter -> key_by
 * -> keyed count) over --events events (default 20,000,000) on 1 and 2
 * worker threads, in two variants that run in turn for --repeat rounds
 * (default 5), each round starting at another variant:
 *
 *   - core:    the pipeline as bench core runs it; its engine counts per
 *              instance and per batch (sluice/metrics.h) as every pipeline
 *              does, so this is the baseline with collection on;
 *   - scraped: the same pipeline shown by an HTTP endpoint (sluice/http.h)
 *              that a thread of this process scrapes over loopback TCP ten
 *              times a second, alternately GET /metrics and GET /api/job
 *              (Prometheus scrapes every 15 s by default, the status page
 *              once a second): the reading, its formatting and the
 *              server's thread share the machine with the job.
 *
 * The fastest run of each is compared (the medians are printed beside); on a
 * shared 2-core machine that difference is mostly noise, so the scrapes'
 * mean round trip is printed too: it holds all the work a scrape does
 * (reading the counters, formatting, the server thread, loopback TCP), an
 * upper bound on what watching takes from the job's cores. And
 * every run's counts are checked against bench core's hand-written loop.
 * What the per-batch counting itself costs cannot be told apart in one run
 * (it is always on): compare bench core's engine/loop ratio across builds.
 * Figures are printed, never checked: tests/integration/bench_metrics.sh
 * checks the output's shape only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "bench/bench.h"
#include "bench/bench_util.h"
#include "bench/plot.h"
#include "examples/jobs.h"

static const char *cmd = "bench metrics";

/* --- the scraper: one keep-alive connection, a request every 100 ms --------------------- */

typedef struct scraper {
    int port;
    atomic_int stop;
    atomic_int active; /* scrape only while the scraped variant runs */
    uint64_t scrapes, bytes, errors;
    double rtt_s; /* summed round trips of the answered scrapes */
    pthread_t th;
} scraper;

/* Read one response (its head and Content-Length bytes of body); 0 or -1. */
static int read_response(int fd, char *buf, size_t cap, uint64_t *body_bytes)
{
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have + 1 >= cap) return -1;
        ssize_t r = read(fd, buf + have, cap - 1 - have);
        if (r <= 0) return -1;
        have += (size_t)r;
        buf[have] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0) return -1;
    const char *cl = strstr(buf, "Content-Length:");
    if (!cl || cl > end) return -1;
    size_t want = strtoul(cl + 15, NULL, 10);
    size_t got = have - (size_t)(end + 4 - buf);
    while (got < want) {
        ssize_t r = read(fd, buf, cap - 1);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    *body_bytes += want;
    return 0;
}

static void *scrape_main(void *ud)
{
    scraper *s = ud;
    char *buf = malloc(1 << 16);
    int fd = -1;
    for (uint64_t k = 0; buf && !atomic_load(&s->stop); k++) {
        if (!atomic_load(&s->active)) {
            usleep(10000);
            continue;
        }
        if (fd < 0) {
            fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
                if (fd >= 0) close(fd);
                fd = -1;
                s->errors++;
                usleep(100000);
                continue;
            }
        }
        const char *req = k % 2 ? "GET /api/job HTTP/1.1\r\nHost: bench\r\n\r\n"
                                : "GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n";
        double t0 = bench_now();
        if (write(fd, req, strlen(req)) != (ssize_t)strlen(req) ||
            read_response(fd, buf, 1 << 16, &s->bytes) != 0) {
            close(fd);
            fd = -1;
            s->errors++;
        } else {
            s->scrapes++;
            s->rtt_s += bench_now() - t0;
        }
        usleep(100000);
    }
    if (fd >= 0) close(fd);
    free(buf);
    return NULL;
}

int bench_metrics(int argc, char **argv)
{
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_EVENTS, O_REPEAT };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"repeat", required_argument, NULL, O_REPEAT},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    long long events = 20000000, repeat = 5;
    int csv = 0, opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = 1; break;
        case O_EVENTS: ret = jobs_int(cmd, "--events", optarg, 1000, 1LL << 40, &events); break;
        case O_REPEAT: ret = jobs_int(cmd, "--repeat", optarg, 1, 100, &repeat); break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench metrics [--events N] [--repeat R] [--csv]\n"
                   "bench core's pipeline on 1 and 2 worker threads, as is (\"core\") and\n"
                   "scraped over HTTP ten times a second, /metrics and /api/job in turn\n"
                   "(\"scraped\"); prints the scraping's overhead (goal <= 1 %%).\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    uint64_t n = (uint64_t)events;
    int R = (int)repeat;
    int64_t *expect = calloc(BENCH_CORE_KEYS, sizeof(int64_t));
    int64_t *got = calloc(BENCH_CORE_KEYS, sizeof(int64_t));
    double *times = calloc((size_t)(4 * R), sizeof(double));
    int rc = 1;
    sl_http *http = NULL;
    scraper sc = {0};
    int started = 0;
    if (!expect || !got || !times) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        goto out;
    }
    char err[512];
    sl_http_conf hc = {.listen = "127.0.0.1:0", .job = "bench-core"};
    if (sl_http_start(&http, &hc, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, err);
        goto out;
    }
    sc.port = sl_http_port(http);
    if (pthread_create(&sc.th, NULL, scrape_main, &sc) != 0) {
        fprintf(stderr, "sluice %s: cannot start the scraper thread\n", cmd);
        goto out;
    }
    started = 1;
    bench_core_loop(n, expect);
    if (!csv)
        printf("bench core's pipeline, %" PRIu64 " events, fastest of %d rounds; scraped: an "
               "endpoint in the process, GET every 100 ms\n",
               n, R);
    bench_header(csv);
    /* variant v: threads 1 + v / 2, scraped v % 2 */
    for (int r = 0; r < R; r++)
        for (int vv = 0; vv < 4; vv++) {
            int v = (r + vv) % 4;
            memset(got, 0, BENCH_CORE_KEYS * sizeof(int64_t));
            err[0] = 0;
            atomic_store(&sc.active, v % 2);
            double t0 = bench_now();
            int e = bench_core_engine(n, 1 + v / 2, 0, NULL, NULL, v % 2 ? http : NULL, got, err,
                                      sizeof(err));
            times[v * R + r] = bench_now() - t0;
            atomic_store(&sc.active, 0);
            if (e) {
                fprintf(stderr, "sluice %s: %s\n", cmd, err);
                goto out;
            }
            if (memcmp(expect, got, BENCH_CORE_KEYS * sizeof(int64_t)) != 0) {
                fprintf(stderr, "sluice %s: the pipeline counted differently from the loop\n", cmd);
                goto out;
            }
        }
    atomic_store(&sc.stop, 1);
    pthread_join(sc.th, NULL);
    started = 0;
    double best[4], med[4];
    for (int v = 0; v < 4; v++) {
        qsort(times + v * R, (size_t)R, sizeof(double), bench_cmp_double);
        best[v] = times[v * R];
        med[v] = times[v * R + R / 2];
        bench_row(csv, "metrics", v % 2 ? "scraped" : "core", 1 + v / 2, n, best[v]);
        if (v % 2 == 0) bench_plot_mark_baseline();
    }
    if (!csv) {
        for (int t = 0; t < 2; t++)
            printf("  overhead of scraping, %d thread%s  %+.1f %%  (goal <= 1; medians %+.1f %%)\n",
                   t + 1, t ? "s" : " ", 100 * (best[2 * t + 1] / best[2 * t] - 1),
                   100 * (med[2 * t + 1] / med[2 * t] - 1));
        double rtt_us = sc.scrapes ? sc.rtt_s / (double)sc.scrapes * 1e6 : 0.0;
        printf("  scrapes: %" PRIu64 " answered, %" PRIu64 " failed, %.1f KiB per answer\n",
               sc.scrapes, sc.errors,
               sc.scrapes ? (double)sc.bytes / (double)sc.scrapes / 1024.0 : 0.0);
        /* The server's work for one scrape is inside its round trip (reading
         * the counters, formatting, both ends of loopback TCP): an upper
         * bound on what a scrape takes from the job's cores. */
        printf("  one scrape's round trip: %.0f us; at 10 a second that is at most %.3f %% of "
               "one core\n",
               rtt_us, rtt_us * 10 / 1e6 * 100);
    }
    rc = sc.errors && !sc.scrapes ? 1 : 0;
    if (rc) fprintf(stderr, "sluice %s: no scrape was answered\n", cmd);
out:
    if (started) {
        atomic_store(&sc.stop, 1);
        pthread_join(sc.th, NULL);
    }
    sl_http_stop(http);
    free(expect);
    free(got);
    free(times);
    return rc;
}
