/*
 * bench/bench_window_agg.c - `sluice bench window-agg`: the main bundled job
 * on real input, against a hand-written C loop doing the same work, at low
 * and at high key cardinality.
 *
 * Input: a CSV file of "event_time_ms,key,value" lines written first into a
 * temporary directory (not timed): keys "k<n>" drawn pseudo-randomly from
 * `keys` keys, event time advancing 1 ms every 20 lines (in order), values
 * 0..999. Two cases: 1,000 keys (--events lines, default 20 M) and 1 M keys
 * (--events / 4 lines).
 *
 * The loop: mmap the file, parse each line (event time, key bytes, value),
 * hash the key (XXH3, as the engine), and count per (key, 10 s tumbling
 * window) in an open-addressing table (linear probing, the key bytes kept
 * in an arena); at the end it walks the table once, as the job writes its
 * results. The job: `window-agg --input FILE --window tumbling:10s --out
 * FILE` on 1 thread and on 2 (with parallelism 2), timed around the
 * pipeline's run; its output file is then read (not timed) and its number
 * of results and sum of counts must equal the loop's.
 *
 * Each variant runs in a child process, so that the peak RSS printed is
 * its own. Printed: lines/s of each, the job on 1 thread against the loop
 * (goal >= 0.5) and 2 threads against 1 (goal >= 1.8).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "bench/bench_util.h"
#include "bench/bench.h"
#include "examples/jobs.h"

#define WINDOW_MS    10000
#define LINES_PER_MS 20

/* What a variant reports back from its child. */
typedef struct wa_result {
    int ok;
    double seconds, rss_mb;
    uint64_t results, sum; /* (key, window) results and the sum of their counts */
} wa_result;

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Write n lines over `keys` keys to path. 0 or -1 (message printed). */
static int write_input(const char *path, uint64_t n, uint64_t keys)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "sluice bench window-agg: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    static char buf[1 << 16];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t x = mix(i);
        fprintf(f, "%" PRIu64 ",k%" PRIu64 ",%" PRIu64 "\n", i / LINES_PER_MS, x % keys,
                (x >> 40) % 1000);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "sluice bench window-agg: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* --- the hand-written loop -------------------------------------------------------- */

typedef struct slot {
    uint64_t hash;
    int64_t window;
    uint64_t count;
    uint32_t key_off, key_len; /* key bytes in the arena; key_len 0: empty slot */
} slot;

typedef struct table {
    slot *s;
    size_t cap, n;
    char *arena;
    size_t used, acap;
} table;

static void table_grow(table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1 << 12;
    slot *s = calloc(cap, sizeof(*s));
    if (!s) abort();
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->s[i].key_len) continue;
        size_t j = (t->s[i].hash ^ (uint64_t)t->s[i].window * 0x9E3779B97F4A7C15ull) & (cap - 1);
        while (s[j].key_len) j = (j + 1) & (cap - 1);
        s[j] = t->s[i];
    }
    free(t->s);
    t->s = s;
    t->cap = cap;
}

static void table_add(table *t, const char *key, uint32_t len, int64_t window)
{
    if ((t->n + 1) * 2 > t->cap) table_grow(t);
    uint64_t h = XXH3_64bits(key, len);
    size_t j = (h ^ (uint64_t)window * 0x9E3779B97F4A7C15ull) & (t->cap - 1);
    for (;; j = (j + 1) & (t->cap - 1)) {
        slot *s = &t->s[j];
        if (!s->key_len) break;
        if (s->hash == h && s->window == window && s->key_len == len &&
            memcmp(t->arena + s->key_off, key, len) == 0) {
            s->count++;
            return;
        }
    }
    if (t->used + len > t->acap) {
        t->acap = t->acap ? t->acap * 2 : 1 << 16;
        if (!(t->arena = realloc(t->arena, t->acap))) abort();
    }
    memcpy(t->arena + t->used, key, len);
    t->s[j] = (slot){
        .hash = h, .window = window, .count = 1, .key_off = (uint32_t)t->used, .key_len = len};
    t->used += len;
    t->n++;
}

typedef struct wa_case {
    const char *input, *out;
    int threads;
} wa_case;

static void loop_child(void *ud, void *out)
{
    const wa_case *c = ud;
    wa_result *r = out;
    memset(r, 0, sizeof(*r));
    double t0 = bench_now();
    int fd = open(c->input, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return;
    const char *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return;
    const char *end = p + st.st_size;
    table t = {0};
    while (p < end) {
        int64_t ts = 0;
        while (*p != ',') ts = ts * 10 + (*p++ - '0');
        const char *key = ++p;
        while (*p != ',') p++;
        uint32_t klen = (uint32_t)(p - key);
        int64_t v = 0;
        for (p++; *p != '\n'; p++) v = v * 10 + (*p - '0');
        p++;
        (void)v; /* count: parsed as the job parses it, not used */
        int64_t w = ts - ts % WINDOW_MS;
        table_add(&t, key, klen, w);
    }
    for (size_t i = 0; i < t.cap; i++)
        if (t.s[i].key_len) r->results++, r->sum += t.s[i].count;
    r->seconds = bench_now() - t0;
    r->rss_mb = bench_peak_rss_mb();
    r->ok = 1;
}

/* --- the job ------------------------------------------------------------------------- */

static void job_child(void *ud, void *out)
{
    const wa_case *c = ud;
    wa_result *r = out;
    memset(r, 0, sizeof(*r));
    char th[16];
    snprintf(th, sizeof th, "%d", c->threads);
    char *argv[] = {"window-agg",
                    "--input",
                    (char *)c->input,
                    "--window",
                    "tumbling:10s",
                    "--out",
                    (char *)c->out,
                    "--late-out",
                    "/dev/null",
                    "--threads",
                    th,
                    "--parallelism",
                    th,
                    NULL};
    bench_timed tm = {0};
    jobs_runner runner = {.run = bench_run_timed, .ud = &tm};
    jobs_getopt_reset();
    if (job_window_agg(13, argv, &runner) != 0) return;
    r->seconds = tm.t1 - tm.t0;
    r->rss_mb = bench_peak_rss_mb();
    FILE *f = fopen(c->out, "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        const char *last = strrchr(line, ',');
        if (!last) return;
        r->results++;
        r->sum += strtoull(last + 1, NULL, 10);
    }
    fclose(f);
    r->ok = 1;
}

/* --- the benchmark ------------------------------------------------------------------- */

static int measure(wa_case *c, uint64_t n, uint64_t keys, int csv, double *ratio_loop,
                   double *ratio_threads);

static int run_case(int csv, const char *dir, uint64_t n, uint64_t keys, double *ratio_loop,
                    double *ratio_threads)
{
    char input[512], out[512];
    snprintf(input, sizeof input, "%s/input-%" PRIu64 ".csv", dir, keys);
    snprintf(out, sizeof out, "%s/out.csv", dir);
    wa_case c = {.input = input, .out = out, .threads = 1};
    int rc =
        write_input(input, n, keys) ? -1 : measure(&c, n, keys, csv, ratio_loop, ratio_threads);
    unlink(input);
    unlink(out);
    return rc;
}

/* The loop and the job on 1 and 2 threads over c's input; prints the rows. */
static int measure(wa_case *pc, uint64_t n, uint64_t keys, int csv, double *ratio_loop,
                   double *ratio_threads)
{
    wa_case c = *pc;
    char variant[64];
    wa_result loop, job[2];
    if (bench_in_child(loop_child, &c, &loop, sizeof loop) || !loop.ok) {
        fprintf(stderr, "sluice bench window-agg: the loop failed\n");
        return -1;
    }
    for (int k = 0; k < 2; k++) {
        c.threads = k + 1;
        if (bench_in_child(job_child, &c, &job[k], sizeof job[k]) || !job[k].ok) {
            fprintf(stderr, "sluice bench window-agg: the job on %d thread(s) failed\n", k + 1);
            return -1;
        }
        if (job[k].results != loop.results || job[k].sum != loop.sum) {
            fprintf(stderr,
                    "sluice bench window-agg: the job on %d thread(s) made %" PRIu64
                    " results summing to %" PRIu64 ", the loop %" PRIu64 " summing to %" PRIu64
                    "\n",
                    k + 1, job[k].results, job[k].sum, loop.results, loop.sum);
            return -1;
        }
    }
    double eps_loop = (double)n / loop.seconds, eps[2];
    for (int k = 0; k < 2; k++) eps[k] = (double)n / job[k].seconds;
    *ratio_loop = eps[0] / eps_loop;
    *ratio_threads = eps[1] / eps[0];
    snprintf(variant, sizeof variant, "loop %" PRIu64 "k keys", keys / 1000);
    bench_plot_row(variant, 1, n, loop.seconds);
    for (int k = 0; k < 2; k++) {
        char jv[64];
        snprintf(jv, sizeof jv, "job %" PRIu64 "k keys", keys / 1000);
        bench_plot_row(jv, k + 1, n, job[k].seconds);
    }
    if (csv) {
        printf("window-agg,loop-%" PRIu64 "-keys,1,%" PRIu64 ",%.6f,%.0f,%.1f\n", keys, n,
               loop.seconds, eps_loop, loop.rss_mb);
        for (int k = 0; k < 2; k++)
            printf("window-agg,job-%" PRIu64 "-keys,%d,%" PRIu64 ",%.6f,%.0f,%.1f\n", keys, k + 1,
                   n, job[k].seconds, eps[k], job[k].rss_mb);
        return 0;
    }
    printf("  %-22s %7d %14" PRIu64 " %9.3f %14.2fM %10.1f\n", variant, 1, n, loop.seconds,
           eps_loop / 1e6, loop.rss_mb);
    snprintf(variant, sizeof variant, "job %" PRIu64 "k keys", keys / 1000);
    for (int k = 0; k < 2; k++)
        printf("  %-22s %7d %14" PRIu64 " %9.3f %14.2fM %10.1f\n", variant, k + 1, n,
               job[k].seconds, eps[k] / 1e6, job[k].rss_mb);
    printf("  results: %" PRIu64 " (key, window) counts summing to %" PRIu64 " in every variant\n",
           loop.results, loop.sum);
    return 0;
}

int bench_window_agg(int argc, char **argv)
{
    const char *cmd = "bench window-agg";
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
            if (!(ret = jobs_int(cmd, "--events", optarg, 4000, (long long)1 << 34, &v)))
                n = (uint64_t)v;
            break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench window-agg [--events N] [--csv]\n"
                   "The window-agg job (tumbling 10 s count) on N CSV lines of 1,000 keys and\n"
                   "N/4 lines of 1,000,000 keys, on 1 and 2 threads, against a hand-written\n"
                   "loop (mmap, parse, count per key and window). Default N: 20000000.\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sluice-bench-wa.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "sluice %s: cannot make a directory in %s: %s\n", cmd,
                tmp && *tmp ? tmp : "/tmp", strerror(errno));
        return 1;
    }
    if (csv)
        bench_header(1);
    else {
        printf("bench window-agg: tumbling 10 s count over CSV lines, 1 k keys (%" PRIu64
               " lines) and 1 M keys (%" PRIu64 " lines)\n",
               n, n / 4);
        bench_header(0);
    }
    double rl[2], rt[2];
    int rc = run_case(csv, dir, n, 1000, &rl[0], &rt[0]);
    if (!rc) rc = run_case(csv, dir, n / 4, 1000000, &rl[1], &rt[1]);
    rmdir(dir);
    if (rc) return 1;
    if (!csv) {
        printf("\n");
        printf("  job 1 thread / loop, 1 k keys   %.2f  (target >= 0.5)\n", rl[0]);
        printf("  job 1 thread / loop, 1 M keys   %.2f  (target >= 0.5)\n", rl[1]);
        printf("  job 2 threads / 1, 1 k keys     %.2f  (target >= 1.8)\n", rt[0]);
        printf("  job 2 threads / 1, 1 M keys     %.2f  (target >= 1.8)\n", rt[1]);
    }
    return 0;
}
