/*
 * bench/bench_trace.c - `sluice bench trace`: tracing figures, one part per
 * entry of `parts` below (--only NAME runs one). A part prints its rows in
 * the common table (or --csv rows) and its own figure lines; adding a
 * figure is adding a part.
 *
 *  collector: the bundled trace-collector job (examples/job_trace_collector.c)
 *    on generated OTLP/JSON lines in a temporary file: N spans (--spans,
 *    default 400000) in traces of 8 spans (a root and its children, one of
 *    them an error in one trace of 16, services "a" to "d"), 4 spans per
 *    line, in end-time order. Policies --keep-errors --keep-slower-than 50ms
 *    --sample-rate 0.1, gap 1 s, delay 100 ms (span ends are up to 60 ms out of
 *    order), output to /dev/null. Rows:
 *      - baseline: sl_otlp_read alone over the same lines (mapped in
 *        memory), counting spans: the reader's floor, no engine, no
 *        assembly, no statistics; the ratio engine / baseline is what the
 *        rest of the job costs (records through channels, keyed routing,
 *        state, timers, the statistics' latencies, writing kept traces);
 *      - engine at 1 thread (parallelism 1) and 2 threads (parallelism 2 for
 *        the assembler; the reader and the span splitter stay one instance);
 *    spans per second is over the whole run (spans / seconds).
 *    Memory per in-flight trace: in a forked child, the same input with a
 *    trace gap longer than the input (every trace stays in flight until the
 *    end of input): growth of the peak RSS from before the pipeline was
 *    built, per trace, and the bytes of span buffers the assembler held at
 *    most, per trace (the span records: the span's JSON text, its resource
 *    and scope texts and a 68-byte header, as kept for re-emission).
 *
 *  overhead: bench core's pipeline (bench/bench_core.c: generator -> filter
 *    -> key_by -> keyed count, on 1 worker thread) over --events events
 *    (default 20,000,000), as bench core runs it and with a trace point
 *    after the source: without a tracer (tracing compiled in but off), and
 *    with a tracer sampling 1 % and 100 % of the records, exporting OTLP/JSON
 *    to /dev/null (what --trace-out costs). A sampled record's span ends at
 *    the filter (two in three) or at the count. The variants run in turn,
 *    --repeat rounds (default 5), in the same process. Each overhead line
 *    gives four figures against the plain pipeline, because this project's
 *    VM runs the same pipeline at one of two speeds (~0.40 s or ~0.52 s,
 *    switching between runs) and no single figure is steady there:
 *      - the fastest run of each (each variant at the machine's better
 *        speed), the first figure;
 *      - the medians of the runs;
 *      - paired: the median over rounds of the variant's run divided by
 *        the plain run of the same round (a change of load between rounds
 *        falls on both);
 *      - cpu: the same paired median in the CPU time of the whole process,
 *        which counts the tracer's export thread (encoding OTLP/JSON on the
 *        other core) that wall time on 1 worker does not see.
 *    Every run's counts are checked against the hand-written loop's. Also printed: the
 *    spans sampled and those dropped because the export queue was full, and
 *    the cost of one span (the 100 % run's extra time over its spans). Each
 *    round starts at another variant, so that none always follows another.
 *
 *  export: the export thread's encoding, N spans (--spans) shaped as a
 *    trace point's (name, five attributes, half with a parent) through
 *    sl_otlp_json_encode in batches of 512 into a reused buffer, against
 *    the floor of copying the same bytes; spans/s, bytes per span, MB/s.
 *
 * Figures are printed, never checked: tests/integration/bench_trace.sh
 * checks the output's shape only.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench/bench.h"
#include "bench/bench_util.h"
#include "examples/jobs.h"
#include "examples/jobs_trace.h"

static const char *cmd = "bench trace";
static int csv;

#define SPANS_PER_TRACE 8
#define SPANS_PER_LINE  4

/* splitmix64's finalizer: the trace ids' low half, spread over 64 bits (the
 * sampling rule reads it). */
static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Write n spans as OTLP/JSON lines to f; returns the number of traces. */
static uint64_t gen_file(FILE *f, uint64_t n)
{
    static const char *const svc[] = {"a", "b", "c", "d"};
    uint64_t traces = (n + SPANS_PER_TRACE - 1) / SPANS_PER_TRACE, k = 0;
    for (uint64_t t = 0; t < traces; t++) {
        uint64_t t0 = 1700000000000000000ull + t * 1000000ull; /* 1 ms apart */
        uint64_t hi = t * 0x9E3779B97F4A7C15ull + 1, lo = mix(t), x = lo;
        for (int s = 0; s < SPANS_PER_TRACE && k < n; s++, k++) {
            if (k % SPANS_PER_LINE == 0)
                fputs("{\"resourceSpans\":[", f);
            else
                fputc(',', f);
            uint64_t st = t0 + (uint64_t)s * 100000, en = st + 200000 + (x >> 32) % 60000000;
            int err = s == 3 && t % 16 == 0;
            fprintf(f,
                    "{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":"
                    "{\"stringValue\":\"%s\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"bench\"},"
                    "\"spans\":[{\"traceId\":\"%016" PRIx64 "%016" PRIx64
                    "\",\"spanId\":\"%016" PRIx64 "\",",
                    svc[s % 4], hi, lo, (uint64_t)s + 1);
            if (s) fprintf(f, "\"parentSpanId\":\"%016" PRIx64 "\",", (uint64_t)1);
            fprintf(f,
                    "\"name\":\"op%d\",\"kind\":2,\"startTimeUnixNano\":\"%" PRIu64
                    "\",\"endTimeUnixNano\":\"%" PRIu64
                    "\",\"attributes\":[{\"key\":\"k\",\"value\":{\"intValue\":\"%d\"}}]%s}]}]}",
                    s, st, en, s, err ? ",\"status\":{\"code\":2}" : "");
            if (k % SPANS_PER_LINE == SPANS_PER_LINE - 1 || k + 1 == n) fputs("]}\n", f);
            x = x * 6364136223846793005ull + 1442695040888963407ull;
        }
    }
    return traces;
}

static void row(const char *variant, int threads, uint64_t events, double secs)
{
    bench_row(csv, "trace", variant, threads, events, secs);
}

static int count_span(const sl_otlp_span *s, void *ud)
{
    (void)s;
    (*(uint64_t *)ud)++;
    return 0;
}

/* The reader alone: spans per second over the mapped file. */
static int baseline(const char *path, uint64_t n, double *secs)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        fprintf(stderr, "sluice %s: %s: %s\n", cmd, path, strerror(errno));
        if (fd >= 0) close(fd);
        return 1;
    }
    const char *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        fprintf(stderr, "sluice %s: mmap: %s\n", cmd, strerror(errno));
        return 1;
    }
    uint64_t spans = 0;
    double t0 = bench_now();
    const char *p = m, *end = m + st.st_size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *why;
        if (sl_otlp_read(p, len, count_span, &spans, &why)) {
            fprintf(stderr, "sluice %s: the generated input is malformed: %s\n", cmd, why);
            munmap((void *)m, (size_t)st.st_size);
            return 1;
        }
        p += len + 1;
    }
    *secs = bench_now() - t0;
    munmap((void *)m, (size_t)st.st_size);
    if (spans != n) {
        fprintf(stderr, "sluice %s: the reader saw %" PRIu64 " spans, not %" PRIu64 "\n", cmd,
                spans, n);
        return 1;
    }
    return 0;
}

typedef struct run_fig {
    int ok;
    double secs, rss_kb;
    uint64_t traces, kept, spans, peak_in_flight, peak_held;
} run_fig;

/* The job's pipeline on path: threads, parallelism, trace gap (ms). */
static void run_job(const char *path, int threads, int64_t gap, run_fig *f)
{
    tc_job *j = jobs_trace_new();
    sl_pipeline *p = NULL;
    memset(f, 0, sizeof(*f));
    if (!j) return;
    double rss0 = bench_status_kb("VmRSS");
    j->input = path;
    j->out = "/dev/null";
    j->late_out = "/dev/null";
    j->dl.cmd = cmd;
    j->gap = gap;
    j->delay = 100; /* span ends are up to 60 ms out of order */
    j->keep_errors = 1;
    j->slower_set = 1;
    j->slower_ns = 50000000;
    j->sample_rate = 0.1;
    j->parallelism = threads;
    if (!(p = sl_pipeline_new())) goto out;
    sl_pipeline_set_threads(p, threads);
    jobs_trace_build(p, j);
    double t0 = bench_now();
    if (sl_pipeline_run(p)) {
        fprintf(stderr, "sluice %s: %s\n", cmd, sl_pipeline_errmsg(p));
        goto out;
    }
    f->secs = bench_now() - t0;
    double hwm = bench_status_kb("VmHWM");
    f->rss_kb = rss0 >= 0 && hwm >= 0 ? hwm - rss0 : -1;
    f->traces = atomic_load(&j->traces);
    f->kept =
        atomic_load(&j->kept_errors) + atomic_load(&j->kept_slow) + atomic_load(&j->kept_sample);
    f->spans = j->spans;
    f->peak_in_flight = atomic_load(&j->peak_in_flight);
    f->peak_held = atomic_load(&j->peak_held);
    f->ok = atomic_load(&j->dl.count) == 0 && atomic_load(&j->late) == 0;
    if (!f->ok) fprintf(stderr, "sluice %s: malformed or late spans in the generated input\n", cmd);
out:
    sl_pipeline_free(p);
    jobs_trace_free(j);
}

/* run_job in a child process (so that its peak RSS is its own). */
typedef struct child_args {
    const char *path;
    int threads;
    int64_t gap;
} child_args;

static void child_run(void *ud, void *out)
{
    const child_args *a = ud;
    run_job(a->path, a->threads, a->gap, out);
}

static int run_child(const char *path, int threads, int64_t gap, run_fig *f)
{
    child_args a = {.path = path, .threads = threads, .gap = gap};
    if (bench_in_child(child_run, &a, f, sizeof(*f))) {
        fprintf(stderr, "sluice %s: the child process reported nothing\n", cmd);
        return 1;
    }
    return f->ok ? 0 : 1;
}

static int part_collector(uint64_t n)
{
    char path[] = "/tmp/sluice-bench-trace-XXXXXX";
    const char *tmpdir = getenv("TMPDIR");
    char buf[4096];
    if (tmpdir && *tmpdir) snprintf(buf, sizeof(buf), "%s/sluice-bench-trace-XXXXXX", tmpdir);
    char *pp = tmpdir && *tmpdir ? buf : path;
    int fd = mkstemp(pp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "sluice %s: cannot make a temporary file: %s\n", cmd, strerror(errno));
        if (fd >= 0) close(fd);
        return 1;
    }
    uint64_t traces = gen_file(f, n);
    if (fclose(f)) {
        fprintf(stderr, "sluice %s: %s: %s\n", cmd, pp, strerror(errno));
        unlink(pp);
        return 1;
    }
    int rc = 1;
    double base_s;
    run_fig r1, r2, rm;
    if (baseline(pp, n, &base_s)) goto out;
    if (run_child(pp, 1, 1000, &r1) || run_child(pp, 2, 1000, &r2)) goto out;
    if (run_child(pp, 1, INT64_MAX / 4, &rm)) goto out;
    if (r1.traces != traces || r2.traces != traces || r1.kept != r2.kept ||
        rm.peak_in_flight != traces) {
        fprintf(stderr,
                "sluice %s: %" PRIu64 " traces generated; the runs decided %" PRIu64 " and %" PRIu64
                " (kept %" PRIu64 " and %" PRIu64 "), %" PRIu64 " at most in flight\n",
                cmd, traces, r1.traces, r2.traces, r1.kept, r2.kept, rm.peak_in_flight);
        goto out;
    }
    double per_rss = rm.rss_kb * 1024.0 / (double)traces;
    double per_held = (double)rm.peak_held / (double)traces;
    if (csv) {
        row("collector-baseline-reader", 1, n, base_s);
        row("collector", 1, n, r1.secs);
        row("collector", 2, n, r2.secs);
        char name[96];
        snprintf(name, sizeof(name), "collector-rss-bytes-per-trace=%.1f", per_rss);
        row(name, 1, n, rm.secs);
        snprintf(name, sizeof(name), "collector-held-bytes-per-trace=%.1f", per_held);
        row(name, 1, n, rm.secs);
    } else {
        printf("trace-collector: %" PRIu64 " spans in %" PRIu64 " traces of %d, %d per line; "
               "kept %" PRIu64 " traces\n",
               n, traces, SPANS_PER_TRACE, SPANS_PER_LINE, r1.kept);
        bench_header(0);
        row("baseline (reader alone)", 1, n, base_s);
        row("collector", 1, n, r1.secs);
        row("collector", 2, n, r2.secs);
        printf("  ratio collector-1t / baseline: %.3f (the reader alone parses, nothing more)\n",
               base_s > 0 && r1.secs > 0 ? base_s / r1.secs : 0);
        printf("  ratio collector-2t / 1t: %.3f\n", r2.secs > 0 ? r1.secs / r2.secs : 0);
        printf("  memory per in-flight trace: RSS growth %.1f bytes, span buffers %.1f bytes "
               "(all %" PRIu64 " traces in flight at once)\n",
               per_rss, per_held, rm.peak_in_flight);
    }
    rc = 0;
out:
    unlink(pp);
    return rc;
}

/* --- overhead on bench core -------------------------------------------------------------- */

static long long ov_events = 20000000, ov_repeat = 5;

/* A tracer sampling `ratio`, exporting OTLP/JSON to /dev/null. */
static sl_tracer *devnull_tracer(double ratio)
{
    sl_trace_exporter ex;
    char err[256];
    if (sl_otlp_file_exporter("/dev/null", &ex, err, sizeof err)) {
        fprintf(stderr, "sluice %s: %s\n", cmd, err);
        return NULL;
    }
    sl_tracer_conf tc = {.service_name = "bench", .sample_ratio = ratio};
    sl_tracer *t = NULL;
    if (sl_tracer_new(&tc, &ex, &t, err, sizeof err)) {
        fprintf(stderr, "sluice %s: %s\n", cmd, err);
        return NULL;
    }
    return t;
}

static int part_overhead(uint64_t unused)
{
    (void)unused;
    static const struct {
        const char *name;
        int point;
        double ratio; /* < 0: no tracer */
    } v[] = {{"core", 0, -1},
             {"point without tracer", 1, -1},
             {"point 1% sampled", 1, 0.01},
             {"point 100% sampled", 1, 1.0}};
    enum { NV = sizeof(v) / sizeof(v[0]) };
    uint64_t n = (uint64_t)ov_events;
    size_t R = (size_t)ov_repeat;
    int64_t *expect = calloc(BENCH_CORE_KEYS, sizeof(int64_t));
    int64_t *got = calloc(BENCH_CORE_KEYS, sizeof(int64_t));
    /* wall[k * R + r], cpu[k * R + r]: variant k's run in round r */
    double *wall = calloc(NV * R, sizeof(double)), *cpu = calloc(NV * R, sizeof(double));
    double *tmp = calloc(R, sizeof(double)), best[NV], med[NV], pair[NV], pair_cpu[NV];
    uint64_t sampled[NV] = {0}, full[NV] = {0};
    int rc = 1;
    if (!expect || !got || !wall || !cpu || !tmp) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        goto out;
    }
    bench_core_loop(n, expect);
    if (!csv)
        printf("overhead: bench core's pipeline, %" PRIu64 " events, 1 worker thread, fastest of "
               "%lld rounds\n",
               n, ov_repeat);
    if (!csv) bench_header(0);
    /* Each round starts at another variant: no variant always runs right
     * after the heavy 100 % one. */
    for (size_t r = 0; r < R; r++)
        for (int kk = 0; kk < NV; kk++) {
            int k = (int)((r + (size_t)kk) % NV);
            sl_tracer *t = v[k].ratio >= 0 ? devnull_tracer(v[k].ratio) : NULL;
            if (v[k].ratio >= 0 && !t) goto out;
            char err[512] = "";
            memset(got, 0, BENCH_CORE_KEYS * sizeof(int64_t));
            double t0 = bench_now(), c0 = bench_cpu_seconds();
            int e = bench_core_engine(n, 1, v[k].point, t, NULL, NULL, got, err, sizeof err);
            wall[k * R + r] = bench_now() - t0;
            cpu[k * R + r] = bench_cpu_seconds() - c0;
            if (e) {
                fprintf(stderr, "sluice %s: %s: %s\n", cmd, v[k].name, err);
                goto out;
            }
            if (memcmp(expect, got, BENCH_CORE_KEYS * sizeof(int64_t)) != 0) {
                fprintf(stderr, "sluice %s: %s counted differently from the loop\n", cmd,
                        v[k].name);
                goto out;
            }
        }
    for (int k = 0; k < NV; k++) {
        /* paired: the median over rounds of this variant's run against the
         * plain one of the same round, in wall and in CPU time */
        for (size_t r = 0; r < R; r++) tmp[r] = wall[k * R + r] / wall[r];
        qsort(tmp, R, sizeof(double), bench_cmp_double);
        pair[k] = tmp[R / 2];
        for (size_t r = 0; r < R; r++) tmp[r] = cpu[k * R + r] / cpu[r];
        qsort(tmp, R, sizeof(double), bench_cmp_double);
        pair_cpu[k] = tmp[R / 2];
    }
    for (int k = 0; k < NV; k++) {
        qsort(wall + k * R, R, sizeof(double), bench_cmp_double);
        best[k] = wall[k * R];
        med[k] = wall[k * R + R / 2];
        row(v[k].name, 1, n, best[k]);
        if (k == 0) bench_plot_mark_baseline(); /* "core": no trace point */
    }
    /* One more run of each traced variant, for its tracer's counts. */
    for (int k = 0; k < NV; k++) {
        if (v[k].ratio < 0) continue;
        sl_tracer *t = devnull_tracer(v[k].ratio);
        if (!t) goto out;
        sl_tracer_stats st;
        char err[512] = "";
        if (bench_core_engine(n, 1, v[k].point, t, &st, NULL, got, err, sizeof err)) {
            fprintf(stderr, "sluice %s: %s: %s\n", cmd, v[k].name, err);
            goto out;
        }
        sampled[k] = st.sampled;
        full[k] = st.dropped_full;
    }
    if (!csv) {
        static const char *const label[NV] = {NULL, "trace point without tracer  ",
                                              "1 % sampled                ",
                                              "100 % sampled              "};
        static const char *const goal[NV] = {NULL, "goal <= 2; ", "goal <= 5; ", ""};
        printf("\n  overhead against the plain pipeline: fastest run; median of the rounds' "
               "runs; median of\n  the rounds' ratios, in wall time and in the process's CPU "
               "time (paired, cpu)\n");
        for (int k = 1; k < NV; k++)
            printf("  overhead, %s%+.1f %%  (%smedians %+.1f %%, paired %+.1f %%, cpu %+.1f %%)\n",
                   label[k], 100 * (best[k] / best[0] - 1), goal[k], 100 * (med[k] / med[0] - 1),
                   100 * (pair[k] - 1), 100 * (pair_cpu[k] - 1));
        for (int k = 2; k < NV; k++)
            printf("  %s: %" PRIu64 " spans sampled, %" PRIu64 " dropped (export queue full)\n",
                   v[k].name, sampled[k], full[k]);
        printf("  one span (100 %% sampled: extra time / spans): %.0f ns\n",
               sampled[3] ? (best[3] - best[0]) * 1e9 / (double)sampled[3] : 0.0);
    }
    rc = 0;
out:
    free(expect);
    free(got);
    free(wall);
    free(cpu);
    free(tmp);
    return rc;
}

/* --- the command line ------------------------------------------------------------------- */

/* The exporter's encoding: N spans shaped as a trace point's (five
 * attributes) through sl_otlp_json_encode in batches of 512, against the
 * floor of copying the encoded bytes. */
static int part_export(uint64_t n)
{
    enum { BATCH = 512 };
    sl_tracer *t = devnull_tracer(1.0);
    sl_span *spans = calloc(BATCH, sizeof(sl_span));
    sl_buf buf = {0}, copy = {0};
    int rc = 1;
    if (!t || !spans) goto out;
    for (int i = 0; i < BATCH; i++) {
        sl_span *sp = &spans[i];
        sl_trace_ctx parent = {.flags = SL_TRACE_FLAG_SAMPLED};
        for (int k = 0; k < 16; k++) parent.trace_id[k] = (uint8_t)mix((uint64_t)i * 16 + k);
        for (int k = 0; k < 8; k++) parent.span_id[k] = (uint8_t)(mix((uint64_t)i * 8 + k) | 1);
        sl_span_start_at(t, sp, "traced", SL_SPAN_KIND_INTERNAL, i % 2 ? &parent : NULL,
                         1700000000000000000 + (int64_t)i * 1000);
        sl_span_set_str(sp, "sluice.operator", "traced");
        sl_span_set_int(sp, "sluice.instance", i % 4);
        sl_span_set_str(sp, "sluice.end", i % 3 ? "filter" : "count");
        sl_span_set_int(sp, "sluice.end_instance", i % 2);
        sl_span_set_int(sp, "sluice.key_hash", (int64_t)mix((uint64_t)i));
        sp->end_ns = sp->start_ns + 5000 + i;
    }
    sl_trace_batch b = {
        .spans = spans, .service_name = "bench", .scope_name = "sluice", .scope_version = "bench"};
    uint64_t done = 0, bytes = 0;
    double t0 = bench_now();
    while (done < n) {
        b.n = n - done < BATCH ? (size_t)(n - done) : BATCH;
        buf.len = 0;
        if (sl_otlp_json_encode(&b, &buf)) {
            fprintf(stderr, "sluice %s: out of memory\n", cmd);
            goto out;
        }
        done += b.n;
        bytes += buf.len;
    }
    double enc = bench_now() - t0;
    /* The floor: the same bytes copied, batch by batch. */
    t0 = bench_now();
    for (uint64_t k = 0, left = bytes; left; k++) {
        size_t len = left < buf.len ? (size_t)left : buf.len;
        copy.len = 0;
        if (sl_buf_append(&copy, buf.ptr, len)) goto out;
        left -= len;
    }
    double floor_s = bench_now() - t0;
    row("export-copy-floor", 1, n, floor_s);
    row("export-otlp-json", 1, n, enc);
    if (!csv)
        printf("\n  OTLP/JSON encoding    %.2f M spans/s, %.0f bytes/span, %.0f MB/s "
               "(copying the bytes: %.0f MB/s)\n",
               (double)n / enc / 1e6, (double)bytes / (double)n, (double)bytes / enc / 1e6,
               (double)bytes / floor_s / 1e6);
    rc = 0;
out:
    free(spans);
    sl_buf_free(&buf);
    sl_buf_free(&copy);
    sl_tracer_free(t);
    return rc;
}

static const struct {
    const char *name;
    int (*run)(uint64_t n);
} parts[] = {
    {"collector", part_collector},
    {"overhead", part_overhead},
    {"export", part_export},
};
#define N_PARTS (sizeof(parts) / sizeof(parts[0]))

int bench_trace(int argc, char **argv)
{
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_SPANS, O_ONLY, O_EVENTS, O_REPEAT };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"spans", required_argument, NULL, O_SPANS},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"repeat", required_argument, NULL, O_REPEAT},
                                         {"only", required_argument, NULL, O_ONLY},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    long long n = 400000;
    const char *only = NULL;
    int opt, ret = 0;
    csv = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = 1; break;
        case O_SPANS: ret = jobs_int(cmd, "--spans", optarg, 1000, 1000000000, &n); break;
        case O_ONLY: only = optarg; break;
        case O_EVENTS: ret = jobs_int(cmd, "--events", optarg, 1000, 1LL << 40, &ov_events); break;
        case O_REPEAT: ret = jobs_int(cmd, "--repeat", optarg, 1, 100, &ov_repeat); break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench trace [--spans N] [--events E] [--repeat R]\n"
                   "                         [--only collector|overhead|export] [--csv]\n"
                   "Tracing figures. collector: the trace-collector job on N generated spans\n"
                   "(default 400000; OTLP/JSON lines in a temporary file, traces of %d spans):\n"
                   "spans per second assembled and sampled with 1 and 2 threads, against the\n"
                   "OTLP/JSON reader alone, and the memory per in-flight trace. overhead:\n"
                   "bench core's pipeline over E events (default 20000000), plain and with a\n"
                   "trace point after its source (no tracer; 1%% and 100%% sampled), fastest\n"
                   "of R rounds (default 5). export: N spans shaped as a trace point's encoded\n"
                   "as OTLP/JSON (what the export thread does per span), against copying the\n"
                   "encoded bytes.\n",
                   SPANS_PER_TRACE);
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    size_t k = 0;
    if (only) {
        while (k < N_PARTS && strcmp(parts[k].name, only) != 0) k++;
        if (k == N_PARTS) {
            fprintf(stderr, "sluice %s: --only must be collector, overhead or export, not '%s'\n",
                    cmd, only);
            return 2;
        }
    }
    if (csv) bench_header(1);
    for (size_t i = 0; i < N_PARTS; i++)
        if ((!only || i == k) && parts[i].run((uint64_t)n)) return 1;
    return 0;
}
