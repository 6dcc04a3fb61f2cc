/*
 * bench/bench_core.c - `sluice bench core`: the engine's per-record overhead.
 *
 * Work: a generator of 64-byte events -> filter (one third pass) -> key_by
 * over 10,000 keys -> keyed count, emitted once per key at the end. The
 * baseline is the same work as a hand-written single-threaded C loop: the
 * same event function, the same predicate, the same xxHash3 of the key and
 * an open-addressing count table. Every engine variant's counts are checked
 * against the loop's. Each variant runs --repeat times; the median is shown.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "bench/bench_util.h"
#include "bench/bench.h"
#include "examples/jobs.h"

#define N_KEYS BENCH_CORE_KEYS

typedef struct ev {
    int64_t ts;
    uint64_t user;
    uint64_t key;
    uint32_t type;
    uint32_t pad;
    uint8_t rest[32];
} ev;
_Static_assert(sizeof(ev) == 64, "events are 64 bytes");

static inline uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static inline void make_event(ev *e, uint64_t seq)
{
    uint64_t h = mix(seq);
    e->ts = (int64_t)seq;
    e->user = h;
    e->key = h % N_KEYS;
    e->type = (uint32_t)((h >> 32) % 3);
    e->pad = 0;
}

static inline int keep(const ev *e)
{
    return e->type == 0;
}

/* --- the hand-written loop ----------------------------------------------------- */

typedef struct slot {
    uint64_t key;
    int64_t count;
    int used;
} slot;

void bench_core_loop(uint64_t n, int64_t *counts)
{
    size_t cap = 32768, mask = cap - 1;
    slot *t = calloc(cap, sizeof(slot));
    if (!t) abort();
    ev e;
    memset(&e, 0, sizeof(e));
    for (uint64_t seq = 0; seq < n; seq++) {
        make_event(&e, seq);
        if (!keep(&e)) continue;
        uint64_t h = XXH3_64bits(&e.key, sizeof(e.key));
        size_t i = h & mask;
        while (t[i].used && t[i].key != e.key) i = (i + 1) & mask;
        if (!t[i].used) {
            t[i].used = 1;
            t[i].key = e.key;
        }
        t[i].count++;
    }
    for (size_t i = 0; i < cap; i++)
        if (t[i].used) counts[t[i].key] = t[i].count;
    free(t);
}

/* --- the pipeline ------------------------------------------------------------------- */

static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    ev *e = out;
    make_event(e, seq);
    *ts = e->ts;
    return 0;
}

static int pred(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return keep(rec);
}

static sl_bytes key_of(const void *rec, uint32_t len, void *ud)
{
    sl_bytes b = {&((const ev *)rec)->key, sizeof(uint64_t)};
    return b;
}

/* Sink: counts[key] = count. Instances get disjoint keys. */
static int counts_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    int64_t *counts = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i), k = sl_agg_out_key(r);
        uint64_t key;
        int64_t c;
        memcpy(&key, k.ptr, 8);
        memcpy(&c, sl_agg_out_result(r), 8);
        if (key >= N_KEYS)
            return sl_ctx_fail(ctx, SL_ECORRUPT, "key %" PRIu64 " out of range", key);
        counts[key] = c;
    }
    return 0;
}

static const sl_operator counts_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "counts", .process = counts_process};

int bench_core_engine(uint64_t n, int threads, int point, struct sl_tracer *tracer,
                      struct sl_tracer_stats *stats, struct sl_http *http, int64_t *counts,
                      char *err, size_t errlen)
{
    sl_generator_conf gc = {.fn = gen, .count = n};
    sl_agg_conf count = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_FINAL};
    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        sl_tracer_free(tracer);
        return SL_ENOMEM;
    }
    if (tracer) sl_pipeline_set_tracer(p, tracer);
    sl_pipeline_set_threads(p, threads);
    sl_pipeline_set_parallelism(p, threads);
    sl_stream *s = sl_pipeline_generator(p, "events", &gc, sizeof(ev), NULL);
    if (point) s = sl_stream_trace(s, "traced", NULL);
    s = sl_stream_filter(s, "filter", pred, NULL);
    s = sl_stream_key_by(s, "key", key_of, NULL);
    s = sl_stream_aggregate(s, "count", &count);
    sl_stream_sink(s, "counts", &counts_sink, counts);
    sl_http_set_pipeline(http, p);
    int rc = sl_pipeline_run(p);
    sl_http_set_pipeline(http, NULL);
    if (rc) snprintf(err, errlen, "%s", sl_pipeline_errmsg(p));
    if (tracer && stats) sl_tracer_stats_get(tracer, stats);
    sl_pipeline_free(p);
    return rc;
}

int bench_core(int argc, char **argv)
{
    const char *cmd = "bench core";
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_EVENTS, O_REPEAT };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"repeat", required_argument, NULL, O_REPEAT},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    long long events = 50000000, repeat = 3;
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
            printf("usage: sluice bench core [--events N] [--repeat R] [--csv]\n"
                   "generator (64-byte events) -> filter (1/3 pass) -> key_by (10,000 keys)\n"
                   "-> keyed count, on 1 and 2 worker threads, against a hand-written loop.\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    uint64_t n = (uint64_t)events;
    int64_t *expect = calloc(N_KEYS, sizeof(int64_t)), *got = calloc(N_KEYS, sizeof(int64_t));
    double *times = calloc((size_t)repeat, sizeof(double));
    if (!expect || !got || !times) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    struct {
        const char *name;
        int threads; /* 0: the loop */
        double median;
    } v[] = {{"hand-written loop", 0, 0}, {"engine", 1, 0}, {"engine", 2, 0}};
    int status = 0;
    if (!csv) printf("bench core: %llu events of 64 bytes, median of %lld runs\n", events, repeat);
    bench_header(csv);
    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]) && !status; k++) {
        for (long long r = 0; r < repeat; r++) {
            memset(got, 0, N_KEYS * sizeof(int64_t));
            char err[512] = "";
            double t0 = bench_now();
            int rc = 0;
            if (v[k].threads == 0)
                bench_core_loop(n, k == 0 && r == 0 ? expect : got);
            else
                rc = bench_core_engine(n, v[k].threads, 0, NULL, NULL, NULL, got, err, sizeof(err));
            times[r] = bench_now() - t0;
            if (rc) {
                fprintf(stderr, "sluice %s: %s\n", cmd, err);
                status = 1;
                break;
            }
            if (!(k == 0 && r == 0) && memcmp(expect, got, N_KEYS * sizeof(int64_t)) != 0) {
                fprintf(stderr, "sluice %s: %s on %d threads counted differently from the loop\n",
                        cmd, v[k].name, v[k].threads);
                status = 1;
                break;
            }
        }
        if (status) break;
        qsort(times, (size_t)repeat, sizeof(double), bench_cmp_double);
        v[k].median = times[repeat / 2];
        char name[64];
        snprintf(name, sizeof(name), "%s", v[k].threads ? "engine" : "loop");
        bench_row(csv, "core", name, v[k].threads ? v[k].threads : 1, n, v[k].median);
    }
    if (!status && !csv) {
        double loop = (double)n / v[0].median, e1 = (double)n / v[1].median,
               e2 = (double)n / v[2].median;
        printf("\n  engine 1 thread / loop      %.2f   (target >= 0.5)\n", e1 / loop);
        printf("  engine 1 thread             %.1f M events/s (target >= 50)\n", e1 / 1e6);
        printf("  engine 2 threads / 1 thread %.2f   (target >= 1.8)\n", e2 / e1);
        printf("  peak RSS                    %.1f MB (target < 256, independent of events)\n",
               bench_peak_rss_mb());
        printf("  counts of every engine run equal the loop's\n");
    }
    free(expect);
    free(got);
    free(times);
    return status;
}
