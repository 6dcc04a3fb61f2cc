/*
 * bench/bench_broker.c - `sluice bench broker`: the built-in broker against
 * the disk's plain write speed, measured in the same run.
 *
 *   append   N records of 100 bytes through sl_producer (fsync=never), one
 *            partition; MB/s of payload and of log bytes, records/s
 *   dd       the same number of bytes as the log ended with, written with
 *            write(2) in 1 MiB blocks into a file of the same directory (the
 *            dd baseline; run before and after the append, the faster one is
 *            kept); the ratio append/dd is printed (target >= 0.7)
 *   read     the N records read back with sl_log_reader_next from the page
 *            cache (target >= 1 GB/s)
 *   latency  produce-to-consume across two processes: a forked consumer
 *            follows the log (inotify wake-ups) while this process appends
 *            one record at a time; p50 and p99 of (receive - send) on
 *            CLOCK_MONOTONIC
 *
 * Output: a table; with --csv the rows
 *   bench,variant,threads,events,seconds,events_per_s,peak_rss_mb
 * where for latency_p50 / latency_p99 "seconds" is that latency and
 * events_per_s its inverse. Options: --records N, --dir DIR (default: a fresh
 * temporary directory, removed at the end), --csv.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "bench/bench.h"
#include "examples/jobs.h"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s;
    (void)f;
    (void)w;
    return remove(p);
}

/* Write bytes with write(2) in 1 MiB blocks into path; seconds or < 0. */
static double dd_baseline(const char *path, int64_t bytes)
{
    size_t bs = 1 << 20;
    char *buf = malloc(bs);
    if (!buf) return -1;
    memset(buf, 'd', bs);
    double t0 = bench_now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(buf);
        return -1;
    }
    int64_t left = bytes;
    while (left > 0) {
        size_t n = left < (int64_t)bs ? (size_t)left : bs;
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            close(fd);
            free(buf);
            return -1;
        }
        left -= w;
    }
    close(fd);
    double t = bench_now() - t0;
    unlink(path);
    free(buf);
    return t;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The consumer process: read m records, write p50 and p99 (ns) to fd. */
static void latency_child(const char *dir, int m, int fd)
{
    sl_broker *b;
    int64_t *lat = malloc(sizeof *lat * (size_t)m);
    if (!lat || sl_broker_open(&b, dir, 0) < 0) _exit(3);
    sl_log_reader *r;
    if (sl_log_reader_open(&r, b, "latency", 0, 0) < 0) _exit(4);
    (void)sl_log_reader_fd(r);
    if (write(fd, "R", 1) != 1) _exit(5); /* ready */
    for (int i = 0; i < m; i++) {
        sl_message msg;
        if (sl_log_reader_next(r, &msg, 30000) < 0 || msg.value_len < 8) _exit(6);
        int64_t sent;
        memcpy(&sent, msg.value, 8);
        lat[i] = now_ns() - sent;
    }
    qsort(lat, (size_t)m, sizeof *lat, cmp_i64);
    int64_t out[2] = {lat[m / 2], lat[(int)((double)m * 0.99)]};
    if (write(fd, out, sizeof out) != (ssize_t)sizeof out) _exit(7);
    sl_log_reader_close(r);
    sl_broker_close(b);
    _exit(0);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice bench broker [--records N] [--dir DIR] [--csv]\n"
               "Append (fsync=never) against a dd-style write of the same bytes, sequential\n"
               "read from the page cache, and produce-to-consume latency across two\n"
               "processes. --dir defaults to a temporary directory removed at the end.\n");
}

int bench_broker(int argc, char **argv)
{
    const char *cmd = "bench broker";
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_RECORDS, O_DIR };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"records", required_argument, NULL, O_RECORDS},
                                         {"dir", required_argument, NULL, O_DIR},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    long long records = 5000000;
    const char *dir_opt = NULL;
    bool csv = false;
    int opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = true; break;
        case O_RECORDS:
            ret = jobs_int(cmd, "--records", optarg, 1000, 2000000000LL, &records);
            break;
        case O_DIR: dir_opt = optarg; break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            usage(stdout);
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    char tmpl[] = "/tmp/sluice-bench-broker-XXXXXX";
    char dir[4096];
    bool made = false;
    if (dir_opt) {
        snprintf(dir, sizeof dir, "%s", dir_opt);
    } else {
        if (!mkdtemp(tmpl)) {
            fprintf(stderr, "sluice bench broker: cannot create a temporary directory: %s\n",
                    strerror(errno));
            return 1;
        }
        snprintf(dir, sizeof dir, "%s", tmpl);
        made = true;
    }
    int status = 1;
    sl_broker *b = NULL;
    sl_producer *p = NULL;
    sl_log_reader *r = NULL;
    if (sl_broker_open(&b, dir, SL_BROKER_CREATE) < 0) {
        fprintf(stderr, "sluice bench broker: %s\n", sl_broker_errmsg(b));
        goto out;
    }
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.fsync = SL_FSYNC_NEVER;
    if (sl_topic_create(b, "append", &c) < 0 || sl_topic_create(b, "latency", &c) < 0) {
        fprintf(stderr, "sluice bench broker: %s\n", sl_broker_errmsg(b));
        goto out;
    }
    char dd_path[4200];
    snprintf(dd_path, sizeof dd_path, "%s/dd-baseline.bin", dir);
    /* Warm-up dd (also the first baseline sample). */
    double t_dd1 = dd_baseline(dd_path, records * 110);

    /* 1. Append. */
    char value[100];
    memset(value, 'v', sizeof value);
    sl_record rec = {.value = value, .value_len = sizeof value, .timestamp = SL_TIMESTAMP_NONE};
    if (sl_producer_open(&p, b, "append") < 0) {
        fprintf(stderr, "sluice bench broker: %s\n", sl_broker_errmsg(b));
        goto out;
    }
    double t0 = bench_now();
    for (long long i = 0; i < records; i++) {
        memcpy(value, &i, sizeof i);
        if (sl_producer_send(p, 0, &rec, NULL) < 0) {
            fprintf(stderr, "sluice bench broker: %s\n", sl_producer_errmsg(p));
            goto out;
        }
    }
    if (sl_producer_flush(p) < 0) {
        fprintf(stderr, "sluice bench broker: %s\n", sl_producer_errmsg(p));
        goto out;
    }
    double t_app = bench_now() - t0;
    sl_producer_close(p);
    p = NULL;
    sl_topic_info *ti;
    if (sl_topic_describe(b, "append", &ti) < 0) goto out;
    int64_t log_bytes = ti->partitions[0].size_bytes;
    sl_topic_info_free(ti);

    /* 2. dd with the same byte count (best of before and after). */
    double t_dd2 = dd_baseline(dd_path, log_bytes);
    double t_dd = t_dd2;
    if (t_dd1 > 0 && records * 110 >= log_bytes) {
        double scaled = t_dd1 * (double)log_bytes / (double)(records * 110);
        if (scaled < t_dd || t_dd < 0) t_dd = scaled;
    }
    if (t_dd <= 0) {
        fprintf(stderr, "sluice bench broker: the dd baseline failed in %s\n", dir);
        goto out;
    }

    /* 3. Sequential read from the page cache. */
    if (sl_log_reader_open(&r, b, "append", 0, SL_OFFSET_BEGINNING) < 0) {
        fprintf(stderr, "sluice bench broker: %s\n", sl_broker_errmsg(b));
        goto out;
    }
    t0 = bench_now();
    long long got = 0;
    uint64_t check = 0;
    sl_message m;
    while (sl_log_reader_next(r, &m, 0) == 0) {
        check += m.value_len + ((const unsigned char *)m.value)[0];
        got++;
    }
    double t_read = bench_now() - t0;
    sl_log_reader_close(r);
    r = NULL;
    if (got != records) {
        fprintf(stderr, "sluice bench broker: read %lld records back, wrote %lld\n", got, records);
        goto out;
    }

    /* 4. Latency across two processes. */
    int lat_n = 2000;
    int pfd[2];
    if (pipe(pfd) < 0) goto out;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) goto out;
    if (pid == 0) {
        close(pfd[0]);
        latency_child(dir, lat_n, pfd[1]);
    }
    close(pfd[1]);
    char ready;
    int64_t lat[2] = {0, 0};
    double t_lat0 = bench_now();
    if (read(pfd[0], &ready, 1) == 1) {
        for (int i = 0; i < lat_n; i++) {
            int64_t sent = now_ns();
            sl_record lr = {
                .value = &sent, .value_len = sizeof sent, .timestamp = SL_TIMESTAMP_NONE};
            if (sl_log_append(b, "latency", 0, &lr, 1, NULL) < 0) break;
            struct timespec gap = {0, 200000}; /* one record at a time, not a burst */
            nanosleep(&gap, NULL);
        }
        if (read(pfd[0], lat, sizeof lat) != (ssize_t)sizeof lat) lat[0] = lat[1] = -1;
    }
    double t_lat = bench_now() - t_lat0;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (lat[0] <= 0) {
        fprintf(stderr, "sluice bench broker: the latency consumer failed\n");
        goto out;
    }

    double rss = bench_peak_rss_mb();
    double payload = (double)records * 100.0;
    double ratio = t_dd / t_app;
    bench_plot_row("dd (baseline)", 1, (uint64_t)records, t_dd); /* --plot (bench/plot.h) */
    bench_plot_row("append, fsync never", 1, (uint64_t)records, t_app);
    bench_plot_row("read, page cache", 1, (uint64_t)records, t_read);
    bench_plot_latency("produce to consume, 2 processes", 1, (double)lat[0] / 1e6,
                       (double)lat[1] / 1e6);
    if (csv) {
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb\n");
        printf("broker,append_fsync_never,1,%lld,%.6f,%.0f,%.1f\n", records, t_app,
               (double)records / t_app, rss);
        printf("broker,dd_baseline,1,%lld,%.6f,%.0f,%.1f\n", records, t_dd, (double)records / t_dd,
               rss);
        printf("broker,read_page_cache,1,%lld,%.6f,%.0f,%.1f\n", records, t_read,
               (double)records / t_read, rss);
        printf("broker,latency_p50,2,%d,%.9f,%.0f,%.1f\n", lat_n, (double)lat[0] / 1e9,
               1e9 / (double)lat[0], rss);
        printf("broker,latency_p99,2,%d,%.9f,%.0f,%.1f\n", lat_n, (double)lat[1] / 1e9,
               1e9 / (double)lat[1], rss);
    } else {
        printf("sluice bench broker: %lld records of 100 bytes, fsync=never, in %s\n", records,
               dir);
        printf("%-26s %10s %12s %12s %14s\n", "variant", "seconds", "MB/s payload", "MB/s disk",
               "records/s");
        printf("%-26s %10.3f %12.1f %12.1f %14.0f\n", "append (sl_producer)", t_app,
               payload / t_app / 1e6, (double)log_bytes / t_app / 1e6, (double)records / t_app);
        printf("%-26s %10.3f %12s %12.1f %14s\n", "dd (write 1 MiB blocks)", t_dd, "-",
               (double)log_bytes / t_dd / 1e6, "-");
        printf("%-26s %10.3f %12.1f %12.1f %14.0f\n", "read (page cache)", t_read,
               payload / t_read / 1e6, (double)log_bytes / t_read / 1e6, (double)records / t_read);
        printf("append / dd: %.2fx (target >= 0.70)   read: %.2f GB/s of log (target >= 1)\n",
               ratio, (double)log_bytes / t_read / 1e9);
        printf("produce-to-consume latency, 2 processes, %d records in %.2f s: p50 %.1f us, "
               "p99 %.1f us\n",
               lat_n, t_lat, (double)lat[0] / 1e3, (double)lat[1] / 1e3);
        printf("peak RSS %.1f MB (checksum %llu)\n", rss, (unsigned long long)(check & 0xff));
    }
    status = 0;
out:
    sl_log_reader_close(r);
    sl_producer_close(p);
    sl_broker_close(b);
    if (made) nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}
