/*
 * bench/bench_checkpoint.c - `sluice bench checkpoint`: what checkpoints cost,
 * through the public API only (sl_pipeline_set_checkpoint,
 * sl_pipeline_checkpoint_stats, sluice/checkpoint.h's listing).
 *
 * Throughput, the same job without checkpoints (the baseline, in the same
 * process), with 1 s and with 100 ms checkpoints (exactly-once, each run into
 * its own fresh directory under a temporary one), at 1 thread:
 *   - ysb: the ysb job's own pipeline (examples/job_ysb.c) on its generator
 *     into a counting sink;
 *   - window: a window-agg-like job: generated (key, value) events over 1,000
 *     keys -> key_by -> 10 s tumbling window (count) -> counting sink.
 * The three variants of a job run in turn, three times, and the fastest run
 * of each counts, so drift of a shared machine falls on all three alike.
 * Printed: events/s, the ratios to the baseline (targets >= 0.95 with 1 s and
 * >= 0.85 with 100 ms), and for the checkpointed runs the checkpoints taken
 * and failed, their duration p50/p99 (barrier injected -> manifest written),
 * the size of the last one, and the longest stall of a task per checkpoint
 * (p50/p99/max).
 *
 * Large state: --keys K (default 1,000,000) keys, every key in one 1 h
 * tumbling window (count), key = seq mod K, so after the first K events the
 * window holds K keys until the end; 8 events a key; checkpoints every
 * 500 ms (a 1M-key checkpoint every 100 ms would mostly measure the disk).
 * Printed: the same checkpoint figures (goal: stall p99 < 5 ms) and the size
 * of the largest checkpoint in the directory. Then recovery: a new pipeline
 * of the same graph starts `from` that largest checkpoint (the final one is
 * taken after the window fired, so it is small) and runs to the end; printed
 * restore_ms from its stats (goal < 1000 ms), and the sum of the counts it
 * writes, which must be the number of events (restored state + the events
 * after the checkpoint's position): the benchmark fails if it is not.
 *
 * Before the checkpoint coordinator exists the stats are zeros and the
 * figures say so ("no checkpoints taken"); the runs still run.
 * --csv prints DESIGN.md's rows, the figures folded into the variant names.
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bench/bench_util.h"
#include "bench/bench.h"
#include "examples/jobs.h"
#include "examples/jobs_window.h"

static const char *cmd = "bench checkpoint";

/* --- the jobs ----------------------------------------------------------------------------- */

typedef struct kv {
    int64_t key;
    int64_t value;
} kv;

#define KEYS 1000

/* The window job: 1,000 keys, event time 0.01 ms per event (as bench windows). */
static int gen_kv(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    kv *r = out;
    uint64_t x = ysb_mix(seq);
    r->key = (int64_t)(x % KEYS);
    r->value = (int64_t)(x >> 40);
    *ts = (int64_t)(seq / 100);
    return 0;
}

typedef struct big_gen {
    uint64_t keys, events;
} big_gen;

/* Large state: key seq mod K, event time spread over the first half hour, in
 * order: everything in the one window [0, 1 h). */
static int gen_big(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    const big_gen *g = ud;
    kv *r = out;
    r->key = (int64_t)(seq % g->keys);
    r->value = 1;
    *ts = (int64_t)(seq * 1800000 / g->events);
    return 0;
}

static sl_bytes kv_key(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {rec, 8};
    return k;
}

/* The counting sink: results, and the sum of their counts. */
typedef struct tally {
    _Atomic uint64_t results;
    _Atomic uint64_t sum;
} tally;

static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    tally *t = sl_ctx_conf(ctx);
    uint64_t s = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_window_result r = sl_window_out(sl_batch_bytes(in, i));
        int64_t n;
        memcpy(&n, r.result, 8);
        s += (uint64_t)n;
    }
    atomic_fetch_add(&t->results, in->count);
    atomic_fetch_add(&t->sum, s);
    return 0;
}

static const sl_operator tally_op = {
    .version = SL_OPERATOR_VERSION, .kind = "tally", .process = tally_process};

/* --- a run ---------------------------------------------------------------------------------- */

enum job { JOB_YSB, JOB_WINDOW, JOB_BIG };

typedef struct run {
    double seconds;
    double rss; /* the process's peak RSS after the run, MB */
    uint64_t results, sum;
    sl_checkpoint_stats st;
} run;

/* Run job over n events at 1 thread; with interval_ms > 0, checkpoints into
 * dir (from: a checkpoint to start from, or NULL). 0 or 1 (after a message). */
static int run_job(enum job job, uint64_t n, uint64_t keys, int64_t interval_ms, const char *dir,
                   const char *from, run *out)
{
    static ysb_job yj; /* large (ad table) */
    big_gen bg = {.keys = keys, .events = n};
    sl_generator_conf gc = {.fn = job == JOB_BIG ? gen_big : gen_kv, .ud = &bg, .count = n};
    sl_watermark_conf wm = {.delay = 0};
    sl_window_conf wc =
        job == JOB_BIG ? sl_window_tumbling(3600000, 0) : sl_window_tumbling(10000, 0);
    wc.agg = &sl_agg_count;
    tally t;
    atomic_init(&t.results, 0);
    atomic_init(&t.sum, 0);
    memset(out, 0, sizeof(*out));
    if (job == JOB_YSB) {
        memset(&yj, 0, sizeof(yj));
        yj.cmd = cmd;
        yj.events = n;
        yj.events_per_s = 10000;
        yj.parallelism = 1;
        if (ysb_campaigns(&yj, NULL)) return 1;
    }
    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        if (job == JOB_YSB) ysb_free(&yj);
        return 1;
    }
    sl_pipeline_set_threads(p, 1);
    int rc = 0;
    if (interval_ms > 0) {
        sl_checkpoint_conf cc = {.dir = dir,
                                 .interval_ms = interval_ms,
                                 .from = from,
                                 .guarantee = SL_GUARANTEE_EXACTLY_ONCE};
        rc = sl_pipeline_set_checkpoint(p, &cc);
    }
    if (!rc) {
        sl_stream *s;
        if (job == JOB_YSB) {
            s = ysb_build(p, &yj);
        } else {
            s = sl_pipeline_generator(p, "events", &gc, sizeof(kv), &wm);
            s = sl_stream_key_by(s, "key", kv_key, NULL);
            s = sl_stream_window(s, "window", &wc);
        }
        sl_stream_sink(s, "tally", &tally_op, &t);
        double t0 = bench_now();
        rc = sl_pipeline_run(p);
        out->seconds = bench_now() - t0;
    }
    if (rc) fprintf(stderr, "sluice %s: %s\n", cmd, sl_pipeline_errmsg(p));
    sl_pipeline_checkpoint_stats(p, &out->st);
    sl_pipeline_free(p);
    if (job == JOB_YSB) ysb_free(&yj);
    out->rss = bench_peak_rss_mb();
    out->results = atomic_load(&t.results);
    out->sum = atomic_load(&t.sum);
    return rc ? 1 : 0;
}

/* --- the temporary directory ------------------------------------------------------------ */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    if (remove(path) != 0)
        fprintf(stderr, "sluice %s: cannot remove '%s': %s\n", cmd, path, strerror(errno));
    return 0;
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The complete checkpoint of dir with the most bytes (the latest of equals),
 * not counting the last one (the final checkpoint, taken at the end of the
 * input: its positions are at the end, so a restore from it has nothing left
 * to do): its path into path, its size into *bytes. 0, or 1 when there is
 * none. */
static int largest_checkpoint(const char *dir, char *path, size_t len, uint64_t *bytes)
{
    char err[256];
    sl_checkpoint_list *l = NULL;
    if (access(dir, F_OK) != 0) return 1; /* no checkpoint was taken */
    if (sl_checkpoint_list_open(&l, dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "sluice %s: %s\n", cmd, err);
        return 1;
    }
    uint64_t best = 0, best_id = 0, last_id = 0;
    int found = 0;
    for (size_t i = 0; i < sl_checkpoint_list_count(l); i++) {
        sl_checkpoint_info in;
        if (sl_checkpoint_list_get(l, i, &in) == 0 && in.status == 0 && in.id > last_id)
            last_id = in.id;
    }
    for (size_t i = 0; i < sl_checkpoint_list_count(l); i++) {
        sl_checkpoint_info in;
        if (sl_checkpoint_list_get(l, i, &in) != 0 || in.status != 0 || in.id == last_id) continue;
        if (!found || in.bytes >= best) {
            best = in.bytes;
            best_id = in.id;
            found = 1;
        }
    }
    sl_checkpoint_list_free(l);
    if (!found) return 1;
    snprintf(path, len, "%s/chk-%" PRIu64, dir, best_id);
    *bytes = best;
    return 0;
}

/* --- printing ------------------------------------------------------------------------------ */

static void print_stats(const char *what, const sl_checkpoint_stats *s)
{
    if (!s->completed) {
        printf("  %-22s no checkpoints taken (%" PRIu64 " failed)\n", what, s->failed);
        return;
    }
    printf("  %-22s %" PRIu64 " taken, %" PRIu64 " failed; duration p50 %.2f p99 %.2f ms; "
           "last %.1f KB\n",
           what, s->completed, s->failed, s->duration_p50_ms, s->duration_p99_ms,
           (double)s->last_bytes / 1024.0);
    printf("  %-22s stall per checkpoint p50 %.3f p99 %.3f max %.3f ms\n", "", s->stall_p50_ms,
           s->stall_p99_ms, s->stall_max_ms);
}

static void csv_row(const char *variant, uint64_t events, const run *r,
                    const sl_checkpoint_stats *s, const char *extra)
{
    char v[512];
    if (s)
        snprintf(v, sizeof(v),
                 "%s-checkpoints=%" PRIu64 "-failed=%" PRIu64
                 "-dur-p50-ms=%.2f-dur-p99-ms=%.2f-bytes=%" PRIu64
                 "-stall-p50-ms=%.3f-stall-p99-ms=%.3f-stall-max-ms=%.3f%s",
                 variant, s->completed, s->failed, s->duration_p50_ms, s->duration_p99_ms,
                 s->last_bytes, s->stall_p50_ms, s->stall_p99_ms, s->stall_max_ms, extra);
    else
        snprintf(v, sizeof(v), "%s%s", variant, extra);
    printf("checkpoint,%s,1,%" PRIu64 ",%.4f,%.0f,%.1f\n", v, events, r->seconds,
           r->seconds > 0 ? (double)events / r->seconds : 0, r->rss);
}

/* --- the benchmark --------------------------------------------------------------------------- */

#define ROUNDS 3
static const int64_t intervals[3] = {0, 1000, 100};
static const char *const iv_names[3] = {"none", "1s", "100ms"};

/* The three variants of a job, ROUNDS times in turn; best[k] the fastest run of each. */
static int throughput(enum job job, uint64_t n, const char *tmp, run best[3])
{
    const char *jn = job == JOB_YSB ? "ysb" : "window";
    for (int k = 0; k < 3; k++) best[k].seconds = -1;
    for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < 3; k++) {
            char dir[4200];
            snprintf(dir, sizeof(dir), "%s/%s-%s-%d", tmp, jn, iv_names[k], round);
            run r;
            if (run_job(job, n, KEYS, intervals[k], dir, NULL, &r)) return 1;
            if (best[k].seconds < 0 || r.seconds < best[k].seconds) best[k] = r;
            if (k && best[0].seconds >= 0 && r.results != best[0].results) {
                fprintf(stderr,
                        "sluice %s: %s with %s checkpoints wrote %" PRIu64
                        " results, without %" PRIu64 "\n",
                        cmd, jn, iv_names[k], r.results, best[0].results);
                return 1;
            }
            rm_tree(dir);
        }
    return 0;
}

static void print_throughput(int csv, const char *jn, uint64_t n, const run r[3])
{
    for (int k = 0; k < 3; k++) { /* --plot (bench/plot.h): against no checkpoints */
        char pv[64];
        snprintf(pv, sizeof(pv), "%s, checkpoints %s", jn, iv_names[k]);
        bench_plot_row(pv, 1, n, r[k].seconds);
        if (k == 0) bench_plot_mark_baseline();
    }
    if (csv) {
        for (int k = 0; k < 3; k++) {
            char variant[64], extra[64] = "";
            snprintf(variant, sizeof(variant), "%s-%s", jn, iv_names[k]);
            if (k) snprintf(extra, sizeof(extra), "-ratio=%.3f", r[0].seconds / r[k].seconds);
            csv_row(variant, n, &r[k], k ? &r[k].st : NULL, extra);
        }
        return;
    }
    printf("  %-22s %10s %14s %8s\n", "checkpoints", "seconds", "events/s", "ratio");
    for (int k = 0; k < 3; k++) {
        printf("  %-22s %10.3f %14.0f", iv_names[k], r[k].seconds, (double)n / r[k].seconds);
        if (k)
            printf(" %8.3f (target >= %s)\n", r[0].seconds / r[k].seconds,
                   k == 1 ? "0.95" : "0.85");
        else
            printf(" %8s\n", "1");
    }
    for (int k = 1; k < 3; k++) {
        char what[64];
        snprintf(what, sizeof(what), "every %s:", iv_names[k]);
        print_stats(what, &r[k].st);
    }
}

int bench_checkpoint(int argc, char **argv)
{
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_EVENTS, O_KEYS };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"events", required_argument, NULL, O_EVENTS},
                                         {"keys", required_argument, NULL, O_KEYS},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    uint64_t n = 50000000, keys = 1000000;
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
        case O_KEYS:
            if (!(ret = jobs_int(cmd, "--keys", optarg, 1000, (long long)1 << 30, &v)))
                keys = (uint64_t)v;
            break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench checkpoint [--events N] [--keys K] [--csv]\n"
                   "ysb (2 x N events) and a keyed 10 s tumbling window job (N events, default\n"
                   "50000000, 1,000 keys) at 1 thread without checkpoints, with 1 s and with\n"
                   "100 ms checkpoints (exactly-once, into a temporary directory): events/s,\n"
                   "ratios to no checkpoints, checkpoint duration p50/p99, size, and the longest\n"
                   "stall of a task per checkpoint p50/p99/max. Then K keys (default 1000000) of\n"
                   "window state with 500 ms checkpoints: the same figures, and the time to\n"
                   "restore a new pipeline from the largest checkpoint (restore_ms).\n");
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;

    const char *base = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s/sluice-bench-checkpoint.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "sluice %s: cannot make a temporary directory in '%s': %s\n", cmd,
                base && *base ? base : "/tmp", strerror(errno));
        return 1;
    }
    int rc = 1;
    run ysb[3], win[3], big, rec;
    uint64_t ysb_n = n * 2;
    if (throughput(JOB_YSB, ysb_n, tmp, ysb) || throughput(JOB_WINDOW, n, tmp, win)) goto out;

    /* Large state, then recovery from its largest checkpoint. */
    uint64_t big_n = keys * 8;
    char big_dir[4200], from[4400];
    snprintf(big_dir, sizeof(big_dir), "%s/large-state", tmp);
    if (run_job(JOB_BIG, big_n, keys, 500, big_dir, NULL, &big)) goto out;
    uint64_t big_bytes = 0;
    int have_chk = largest_checkpoint(big_dir, from, sizeof(from), &big_bytes) == 0;
    memset(&rec, 0, sizeof(rec));
    if (have_chk) {
        if (run_job(JOB_BIG, big_n, keys, 500, big_dir, from, &rec)) goto out;
        if (rec.sum != big_n || rec.results != keys) {
            fprintf(stderr,
                    "sluice %s: the pipeline restored from %s counted %" PRIu64
                    " events in %" PRIu64 " results, not %" PRIu64 " in %" PRIu64 "\n",
                    cmd, from, rec.sum, rec.results, big_n, keys);
            goto out;
        }
    }

    if (csv) {
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb\n");
        print_throughput(1, "ysb", ysb_n, ysb);
        print_throughput(1, "window", n, win);
        char extra[128], variant[64];
        snprintf(extra, sizeof(extra), "-largest-bytes=%" PRIu64, big_bytes);
        snprintf(variant, sizeof(variant), "large-state-%" PRIu64 "-keys-500ms", keys);
        csv_row(variant, big_n, &big, &big.st, extra);
        if (have_chk) {
            snprintf(variant, sizeof(variant), "recovery-%" PRIu64 "-keys-restore-ms=%.1f", keys,
                     rec.st.restore_ms);
            csv_row(variant, big_n, &rec, NULL, rec.st.restored_from ? "" : "-not-restored");
        }
    } else {
        printf("checkpoint: ysb, %" PRIu64 " events, 1 thread\n", ysb_n);
        print_throughput(0, "ysb", ysb_n, ysb);
        printf("checkpoint: window, %" PRIu64 " events, %d keys, 10 s tumbling, count, 1 thread\n",
               n, KEYS);
        print_throughput(0, "window", n, win);
        printf("checkpoint: %" PRIu64 " keys of window state (1 h tumbling, count), %" PRIu64
               " events, every 500ms, 1 thread: %.3f s\n",
               keys, big_n, big.seconds);
        print_stats("every 500ms:", &big.st);
        if (big.st.completed)
            printf("  %-22s stall p99 %.3f ms (goal < 5 ms)\n", "", big.st.stall_p99_ms);
        if (have_chk) {
            printf("  largest checkpoint before the final one: %s, %.1f MB\n",
                   strrchr(from, '/') + 1, (double)big_bytes / (1024.0 * 1024.0));
            if (rec.st.restored_from)
                printf("recovery: restored from checkpoint %" PRIu64
                       " in %.1f ms (goal < 1000 ms); "
                       "run to the end %.3f s, %" PRIu64 " events counted (right)\n",
                       rec.st.restored_from, rec.st.restore_ms, rec.seconds, rec.sum);
            else
                printf("recovery: a pipeline given %s did not restore from it\n", from);
        } else {
            printf("recovery: no complete checkpoint before the final one to restore from\n");
        }
    }
    rc = 0;
out:
    rm_tree(tmp);
    return rc;
}
