/*
 * bench/bench_util.h - what the benchmarks share: the clock, peak RSS, a
 * field of /proc/self/status, a measurement in a child process (so that
 * its peak RSS is its own), and
 * the output convention of DESIGN.md (a human table, or with --csv rows of
 * bench,variant,threads,events,seconds,events_per_s,peak_rss_mb). Every row
 * printed by bench_row is also recorded for `--plot` (bench/plot.h), a no-op
 * when no plot is asked for.
 */
#ifndef SLUICE_BENCH_UTIL_H
#define SLUICE_BENCH_UTIL_H

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sluice/sluice.h>
#include "bench/plot.h"

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds (user + system) of every thread of this process so far. */
static inline double bench_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* qsort's comparison for doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double bench_peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* A kB field of /proc/self/status ("VmRSS", "VmHWM"); -1 if unreadable. */
static inline double bench_status_kb(const char *field)
{
    char line[256];
    double v = -1;
    size_t fl = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtod(line + fl + 1, NULL);
            break;
        }
    fclose(f);
    return v;
}

static inline void bench_row(int csv, const char *bench, const char *variant, int threads,
                             uint64_t events, double seconds)
{
    double eps = seconds > 0 ? (double)events / seconds : 0;
    bench_plot_row(variant, threads, events, seconds);
    if (csv)
        printf("%s,%s,%d,%llu,%.6f,%.0f,%.1f\n", bench, variant, threads,
               (unsigned long long)events, seconds, eps, bench_peak_rss_mb());
    else
        printf("  %-22s %7d %14llu %9.3f %14.2fM %10.1f\n", variant, threads,
               (unsigned long long)events, seconds, eps / 1e6, bench_peak_rss_mb());
}

static inline void bench_header(int csv)
{
    if (csv)
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb\n");
    else
        printf("  %-22s %7s %14s %9s %15s %10s\n", "variant", "threads", "events", "seconds",
               "events/s", "peak MB");
}

/* Run fn(ud, out) in a forked child, which writes the `size` bytes at out
 * back to this process. 0 when they came, -1 (out untouched past what the
 * child wrote) when the fork, the pipe or the child failed. */
static inline int bench_in_child(void (*fn)(void *ud, void *out), void *ud, void *out, size_t size)
{
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        close(fd[0]);
        fn(ud, out);
        ssize_t w = write(fd[1], out, size);
        (void)w;
        _exit(0);
    }
    close(fd[1]);
    ssize_t r = read(fd[0], out, size);
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    return r == (ssize_t)size ? 0 : -1;
}

/* A jobs_runner's run (examples/jobs.h) for benchmarks that run a bundled
 * job in process: ud is a bench_timed, which gets the time around the
 * pipeline's run only (not option parsing or building). */
typedef struct bench_timed {
    double t0, t1;
} bench_timed;

static inline int bench_run_timed(void *ud, sl_pipeline *p, const char *cmd)
{
    bench_timed *t = (bench_timed *)ud;
    t->t0 = bench_now();
    int rc = sl_pipeline_run(p);
    t->t1 = bench_now();
    if (rc) fprintf(stderr, "sluice %s: %s\n", cmd, sl_pipeline_errmsg(p));
    return rc ? 1 : 0;
}

#endif
