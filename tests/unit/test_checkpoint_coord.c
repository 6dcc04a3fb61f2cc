/*
 * test_checkpoint_coord.c - checkpoints end to end through the public API:
 * the coordinator (engine/coord.c), restore by key group at another
 * parallelism, the savepoint taken on a cancel, the exactly-once file sink
 * (connectors/sinks.c), and the faults a checkpoint must survive.
 *
 * The job: a generator (key = a hash of the sequence number mod NKEYS, value
 * 1, event time seq * 3 ms, punctuated watermarks, so where watermarks fall
 * is fixed by the input) -> key_by -> tumbling 50 ms count window -> the
 * write sink, one line "start,end,key,count" per result. The oracle is the
 * same job run once without checkpoints at parallelism 1. A "stop" cancels
 * the job from inside the generator at a chosen sequence number (the cancel
 * reaches the source a few records later: where it stops is not fixed, which
 * is the point): the run ends with a savepoint, and the next run resumes from
 * it. What is asserted: the file holds exactly the oracle's lines (as a
 * sorted multiset) after the last run, and after a stopped run it holds only
 * lines of the oracle, each at most as often (only committed output).
 *
 * What each test proves:
 *  - resume at P -> Q for (1,1) (1,4) (4,2) (2,3) (3,1), and two stops in a
 *    row: state, timers and positions are restored and redistributed by key
 *    group, the watermark is restored before the first record;
 *  - sliding and session windows at 3 -> 2, and a user operator whose state
 *    is in its own memory, through its snapshot / restore hooks;
 *  - the same with the state captured by a forked child (SL_CAPTURE_FORK);
 *  - two inputs (two generators into one operator): barriers are aligned;
 *  - one credit and a slow sink: periodic checkpoints complete under full
 *    backpressure (completed > 1 before the final one);
 *  - a checkpoint not acknowledged within the timeout is aborted and counted;
 *  - disk full and a failing fsync while writing checkpoints: those abort,
 *    the job goes on and its output is still exact; the failure is counted;
 *  - the file sink's commit failing after the manifest (the crash between
 *    pre-commit and commit): the next start rolls it forward, exactly;
 *  - a corrupt latest checkpoint: the start warns and falls back to the
 *    previous complete one;
 *  - a checkpoint of another graph is refused naming the difference; a
 *    checkpoint directory that is a file is refused.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/base/fsio.h"
#include "sluice/sluice.h"

#define NKEYS 61
#define NREC  60000

typedef struct rec {
    uint64_t key;
    int64_t value;
} rec;

static int capture_mode; /* enum sl_capture: the default for jobs that set none */

typedef struct gen_ud {
    sl_pipeline *p;
    uint64_t stop_at; /* cancel at the first seq >= this after a checkpoint completed (0: never) */
    uint64_t offset;  /* second input: its own keys */
    atomic_int cancelled;
} gen_ud;

static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    gen_ud *g = ud;
    rec r = {.key = ((seq * 2654435761u) >> 7) % NKEYS + g->offset, .value = 1};
    memcpy(out, &r, sizeof(r));
    *ts = (int64_t)seq * 3;
    /* Stop once a periodic checkpoint (forked, in fork mode) has completed,
     * so that what a resumed run restores never depends on how fast this
     * run went (a loaded machine may reach stop_at before the first one);
     * until then each record past stop_at waits a little, so that a short
     * resumed run cannot reach the end of its input before its first
     * checkpoint (it did, under load, and the tally emitted its final line). */
    if (g->stop_at && seq >= g->stop_at && !atomic_load(&g->cancelled)) {
        sl_checkpoint_stats st;
        sl_pipeline_checkpoint_stats(g->p, &st);
        bool fork_ok = capture_mode != SL_CAPTURE_FORK || st.forked_captures > 0;
#if defined(__SANITIZE_THREAD__)
        fork_ok = true; /* TSan builds never fork */
#endif
        if (st.completed >= 1 && fork_ok && !atomic_exchange(&g->cancelled, 1))
            sl_pipeline_cancel(g->p);
        else if (!atomic_load(&g->cancelled))
            usleep(200); /* no checkpoint yet: slow down rather than reach the end first */
    }
    return 0;
}

static sl_bytes rec_key(const void *payload, uint32_t len, void *ud)
{
    sl_bytes k = {payload, 8};
    return k;
}

static int fmt(sl_buf *out, const void *r, uint32_t len, int64_t ts, void *ud)
{
    sl_bytes b = {r, len};
    sl_window_result w = sl_window_out(b);
    uint64_t key;
    int64_t cnt;
    memcpy(&key, w.key.ptr, 8);
    memcpy(&cnt, w.result, 8);
    return sl_buf_printf(out, "%" PRId64 ",%" PRId64 ",%" PRIu64 ",%" PRId64 "\n", w.start, w.end,
                         key, cnt);
}

/* Two inputs in, records out unchanged. */
static int union_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    return sl_forward(ctx, in);
}
static const sl_operator union_op = {
    .version = SL_OPERATOR_VERSION, .kind = "union", .process = union_process};

/* A user operator whose state lives in its own memory, carried by its
 * snapshot / restore hooks: it counts the records of its instance and, at
 * the end of the input, emits "tally,<instance>,<count>". */
typedef struct tally_st {
    uint64_t n;
} tally_st;
static int tally_open(sl_ctx *ctx, void **self)
{
    *self = calloc(1, sizeof(tally_st));
    return *self ? 0 : SL_ENOMEM;
}
static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    ((tally_st *)self)->n += in->count;
    return 0;
}
static int tally_end(sl_ctx *ctx, void *self)
{
    if (sl_ctx_end_canceled(ctx)) return 0;
    char line[64];
    int n = snprintf(line, sizeof(line), "tally,%d,%" PRIu64, sl_ctx_instance(ctx),
                     ((tally_st *)self)->n);
    return sl_emit_copy(ctx, 0, 0, line, (uint32_t)n);
}
static int tally_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    return sl_buf_append(out, &((tally_st *)self)->n, 8);
}
static int tally_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    if (len != 8) return SL_ECORRUPT;
    uint64_t v;
    memcpy(&v, data, 8);
    ((tally_st *)self)->n += v;
    return 0;
}
static void tally_close(void *self)
{
    free(self);
}
static const sl_operator tally_op = {.version = SL_OPERATOR_VERSION,
                                     .kind = "tally",
                                     .open = tally_open,
                                     .process = tally_process,
                                     .end = tally_end,
                                     .snapshot = tally_snapshot,
                                     .restore = tally_restore,
                                     .close = tally_close};
static int fmt_line(sl_buf *out, const void *r, uint32_t len, int64_t ts, void *ud)
{
    int rc = sl_buf_append(out, r, len);
    return rc ? rc : sl_buf_append(out, "\n", 1);
}

/* A sink that sleeps per batch (backpressure), records discarded. */
static int slow_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    int *us = sl_ctx_conf(ctx);
    struct timespec ts = {0, (us && *us ? *us : 300) * 1000L};
    nanosleep(&ts, NULL);
    return 0;
}
static const sl_operator slow_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "slow", .process = slow_process};

typedef struct job {
    int par_src, par;
    int two_inputs;
    int credits;
    const char *chk_dir; /* NULL: no checkpoints */
    int64_t interval_ms;
    int guarantee;
    uint64_t stop_at;
    const char *out;      /* the results file */
    const char *win_name; /* default "win" */
    int slow;             /* the slow sink instead of the file */
    int shards0;          /* the generator's shards follow its parallelism */
    int kind;             /* 0 tumbling, 1 sliding, 2 session */
    int64_t timeout_ms;
    int capture; /* enum sl_capture */
    int slow_us; /* the slow sink's sleep per batch (default 300) */
    int tally;   /* a user operator with snapshot hooks instead of the window */
    sl_checkpoint_stats st;
    int rc;
    char err[512];
} job;

static int run_job(job *j)
{
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    sl_pipeline_set_threads(p, 2);
    if (j->credits) sl_pipeline_set_credits(p, j->credits);
    gen_ud g1 = {.p = p, .stop_at = j->stop_at}, g2 = {.p = p, .offset = 1000};
    sl_generator_conf gc = {.fn = gen, .ud = &g1, .count = NREC, .shards = 4};
    if (j->shards0) gc.shards = 0;
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1};
    sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(rec), &wm);
    s = sl_stream_parallelism(s, j->par_src ? j->par_src : 1);
    if (j->two_inputs) {
        sl_generator_conf gc2 = {.fn = gen, .ud = &g2, .count = NREC / 2};
        sl_stream *s2 = sl_pipeline_generator(p, "src2", &gc2, sizeof(rec), &wm);
        sl_stream *ins[2] = {s, s2};
        s = sl_stream_apply_n(ins, 2, "union", &union_op, NULL, sizeof(rec));
        s = sl_stream_parallelism(s, 2);
    }
    sl_stream *k = j->tally ? NULL : sl_stream_key_by(s, "key", rec_key, NULL);
    sl_window_conf wc = j->kind == 1   ? sl_window_sliding(60, 20)
                        : j->kind == 2 ? sl_window_session(40)
                                       : sl_window_tumbling(50, 0);
    wc.agg = &sl_agg_count;
    sl_agg_value av = {.offset = 8};
    wc.agg_ud = &av;
    sl_stream *w;
    if (j->tally) {
        w = sl_stream_apply(s, "tally", &tally_op, NULL, 0);
        w = sl_stream_parallelism(w, j->par_src ? j->par_src : 1);
    } else {
        w = sl_stream_window(k, j->win_name ? j->win_name : "win", &wc);
        w = sl_stream_parallelism(w, j->par ? j->par : 1);
    }
    sl_write_conf oc = {.path = j->out, .format = j->tally ? fmt_line : fmt};
    if (j->slow)
        sl_stream_sink(w, "out", &slow_sink, &j->slow_us);
    else
        sl_stream_sink(w, "out", &sl_sink_write, &oc);
    if (j->chk_dir) {
        sl_checkpoint_conf cc = {.dir = j->chk_dir,
                                 .interval_ms = j->interval_ms ? j->interval_ms : 5,
                                 .timeout_ms = j->timeout_ms,
                                 .capture = j->capture ? j->capture : capture_mode,
                                 .guarantee = j->guarantee};
        assert_int_equal(sl_pipeline_set_checkpoint(p, &cc), 0);
    }
    j->rc = sl_pipeline_run(p);
    snprintf(j->err, sizeof(j->err), "%s", sl_pipeline_errmsg(p));
    sl_pipeline_checkpoint_stats(p, &j->st);
    sl_pipeline_free(p);
    return j->rc;
}

/* --- files ------------------------------------------------------------------------------ */

typedef struct lines {
    char **v;
    size_t n;
} lines;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static lines read_sorted(const char *path)
{
    lines l = {0};
    FILE *f = fopen(path, "r");
    if (!f) return l;
    char buf[256];
    size_t cap = 0;
    while (fgets(buf, sizeof(buf), f)) {
        if (l.n == cap) {
            cap = cap ? cap * 2 : 1024;
            l.v = realloc(l.v, cap * sizeof(char *));
        }
        l.v[l.n++] = strdup(buf);
    }
    fclose(f);
    if (l.n) qsort(l.v, l.n, sizeof(char *), cmp_str);
    return l;
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

/* Every line of a is in b at least as often (a is a sub-multiset of b). */
static int submultiset(const lines *a, const lines *b)
{
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        while (j < b->n && strcmp(b->v[j], a->v[i]) < 0) j++;
        if (j == b->n || strcmp(b->v[j], a->v[i]) != 0) return 0;
        j++;
    }
    return 1;
}

static int same(const lines *a, const lines *b)
{
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i])) return 0;
    return 1;
}

static char tmpdir[256];
static lines oracle, oracle2, oracle_kind[3], oracle_tally;

static void path(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sluice-chk-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    char o[300];
    path(o, sizeof(o), "oracle.txt");
    job j = {.out = o};
    if (run_job(&j)) return -1;
    oracle = read_sorted(o);
    path(o, sizeof(o), "oracle2.txt");
    job j2 = {.out = o, .two_inputs = 1};
    if (run_job(&j2)) return -1;
    oracle2 = read_sorted(o);
    for (int k = 1; k < 3; k++) {
        char nm[32];
        snprintf(nm, sizeof(nm), "oracle-kind%d.txt", k);
        path(o, sizeof(o), nm);
        job jk = {.out = o, .kind = k};
        if (run_job(&jk)) {
            fprintf(stderr, "oracle of kind %d: %s\n", k, jk.err);
            return -1;
        }
        oracle_kind[k] = read_sorted(o);
        if (oracle_kind[k].n < 1000) return -1;
    }
    path(o, sizeof(o), "oracle-tally.txt");
    job jt = {.out = o, .tally = 1, .par_src = 2};
    if (run_job(&jt)) {
        fprintf(stderr, "tally oracle: %s\n", jt.err);
        return -1;
    }
    oracle_tally = read_sorted(o);
    return oracle.n > 1000 && oracle2.n > oracle.n && oracle_tally.n == 2 ? 0 : -1;
}

static int teardown(void **state)
{
    lines_free(&oracle);
    lines_free(&oracle2);
    lines_free(&oracle_kind[1]);
    lines_free(&oracle_kind[2]);
    lines_free(&oracle_tally);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs with stops at each of stops[] (0-terminated) and then to the end,
 * P changing from run to run; the output must be exactly the oracle's. */
static void stop_and_resume_as(const char *name, const int *pars, const uint64_t *stops, int two,
                               int kind, int tally)
{
    char dir[300], out[310];
    path(dir, sizeof(dir), name);
    snprintf(out, sizeof(out), "%s.txt", dir);
    const lines *orc = tally ? &oracle_tally : kind ? &oracle_kind[kind] : two ? &oracle2 : &oracle;
    int r = 0;
    for (;; r++) {
        job j = {.par = pars[r],
                 .par_src = tally ? 2
                            : two ? 1
                                  : pars[r] % 2 + 1,
                 .chk_dir = dir,
                 .out = out,
                 .stop_at = stops[r],
                 .two_inputs = two,
                 .kind = kind,
                 .tally = tally};
        assert_int_equal(run_job(&j), 0);
        if (r > 0) assert_true(j.st.restored_from > 0);
        assert_true(j.st.completed >= 1);
        if (capture_mode == SL_CAPTURE_FORK) { /* the children did the periodic ones */
            assert_int_equal(j.st.failed, 0);
#if !defined(__SANITIZE_THREAD__) /* TSan builds never fork */
            if (stops[r] && !j.st.forked_captures) fail_msg("%s: run %d forked nothing", name, r);
#endif
        }
        lines got = read_sorted(out);
        if (!stops[r]) {
            if (!same(&got, orc))
                fail_msg("%s: %zu lines after the last run, the oracle has %zu", name, got.n,
                         orc->n);
            lines_free(&got);
            break;
        }
        if (tally) { /* emits only at the end: nothing after a stop */
            assert_int_equal(got.n, 0);
            lines_free(&got);
            continue;
        }
        if (!submultiset(&got, orc)) {
            /* name a few lines that are not the oracle's */
            size_t jx = 0, shown = 0;
            for (size_t ix = 0; ix < got.n && shown < 3; ix++) {
                while (jx < orc->n && strcmp(orc->v[jx], got.v[ix]) < 0) jx++;
                if (jx == orc->n || strcmp(orc->v[jx], got.v[ix]) != 0) {
                    fprintf(stderr, "  not in the oracle: %s", got.v[ix]);
                    shown++;
                } else {
                    jx++;
                }
            }
        }
        if (!submultiset(&got, orc))
            fail_msg("%s: run %d wrote lines that are not the oracle's (or too often)", name, r);
        assert_true(got.n < orc->n); /* the stop did cut the input */
        lines_free(&got);
    }
}

static void stop_and_resume(const char *name, const int *pars, const uint64_t *stops, int two)
{
    stop_and_resume_as(name, pars, stops, two, 0, 0);
}

/* Sliding and session windows, and a user operator through its hooks. */
static void test_resume_other_kinds(void **state)
{
    int pars[2] = {3, 2};
    uint64_t stops[2] = {NREC / 3, 0};
    stop_and_resume_as("sliding", pars, stops, 0, 1, 0);
    stop_and_resume_as("session", pars, stops, 0, 2, 0);
    int same_par[3] = {2, 2, 2};
    uint64_t two_stops[3] = {NREC / 4, NREC / 2, 0};
    stop_and_resume_as("tally", same_par, two_stops, 0, 0, 1);
}

/* The same with every task's state captured by a forked child (Redis's
 * BGSAVE): state, timers and hooks through the child's file. */
static void test_resume_forked_capture(void **state)
{
    capture_mode = SL_CAPTURE_FORK;
    int pars[3] = {2, 3, 1};
    uint64_t stops[3] = {NREC / 4, NREC / 2, 0};
    stop_and_resume("forked", pars, stops, 0);
    int p2[2] = {3, 2};
    uint64_t s2[2] = {NREC / 3, 0};
    stop_and_resume_as("forked-sliding", p2, s2, 0, 1, 0);
    stop_and_resume_as("forked-tally", (int[3]){2, 2, 2}, stops, 0, 0, 1);
    capture_mode = 0;
}

static void test_resume_rescale(void **state)
{
    static const int cases[][2] = {{1, 1}, {1, 4}, {4, 2}, {2, 3}, {3, 1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "rescale-%d-%d", cases[i][0], cases[i][1]);
        int pars[2] = {cases[i][0], cases[i][1]};
        uint64_t stops[2] = {NREC / 3, 0};
        stop_and_resume(name, pars, stops, 0);
    }
}

static void test_two_stops(void **state)
{
    int pars[3] = {2, 3, 1};
    uint64_t stops[3] = {NREC / 5, NREC / 2, 0};
    stop_and_resume("two-stops", pars, stops, 0);
}

static void test_two_inputs_aligned(void **state)
{
    int pars[2] = {2, 3};
    uint64_t stops[2] = {NREC / 3, 0};
    stop_and_resume("two-inputs", pars, stops, 1);
}

static void test_backpressure_one_credit(void **state)
{
    char dir[300];
    path(dir, sizeof(dir), "one-credit");
    job j = {.par = 2, .chk_dir = dir, .credits = 1, .slow = 1, .slow_us = 1000, .interval_ms = 5};
    assert_int_equal(run_job(&j), 0);
    /* periodic ones completed, not just the final one */
    assert_true(j.st.completed >= 3);
}

/* Every checkpoint write (or fsync) fails: the periodic checkpoints are
 * aborted and counted, and the job fails at its final checkpoint, because
 * what the sinks staged since the last one cannot be committed. The slow
 * sink writes no file, so only checkpoint I/O meets the faults. */
/* A sink so slow that no barrier gets through within the timeout: every
 * periodic checkpoint is aborted and counted, the job goes on, and the final
 * checkpoint (no timeout: every task has finished) commits. */
static void test_timeout_aborts(void **state)
{
    char dir[300];
    path(dir, sizeof(dir), "timeout");
    job j = {.par = 1,
             .chk_dir = dir,
             .slow = 1,
             .slow_us = 20000,
             .credits = 1,
             .interval_ms = 1,
             .timeout_ms = 2};
    assert_int_equal(run_job(&j), 0);
    assert_true(j.st.failed >= 1);
    assert_non_null(strstr(j.st.last_error, "timeout"));
    assert_true(j.st.completed >= 1);
}

static void faults(const char *name, unsigned mask, int err)
{
    char dir[300];
    path(dir, sizeof(dir), name);
    sli_fsio_fail_after(mask, 0, err, true);
    job j = {.par = 2, .chk_dir = dir, .interval_ms = 1, .slow = 1, .credits = 1};
    int rc = run_job(&j);
    sli_fsio_fail_reset();
    assert_int_not_equal(rc, 0);
    assert_true(j.st.failed >= 2); /* at least one periodic and the final one */
    assert_int_equal(j.st.completed, 0);
    if (!strstr(j.err, "final checkpoint")) fail_msg("%s: %s", name, j.err);
}

static void test_disk_full_final_fails(void **state)
{
    faults("enospc", SLI_FSIO_WRITE, ENOSPC);
}

static void test_fsync_fails_final_fails(void **state)
{
    faults("eio-fsync", SLI_FSIO_FSYNC, EIO);
}

/* Faults for a while, then none: the failed ones are aborted and counted,
 * the job goes on, and its output is exact. */
/* Heal the disk once a checkpoint has failed on it (not after a time: the
 * job, rate-limited to half a second, is still running then). */
static void *heal_after(void *arg)
{
    sl_pipeline *p = arg;
    struct timespec ts = {0, 200 * 1000};
    for (;;) {
        sl_checkpoint_stats st;
        sl_pipeline_checkpoint_stats(p, &st);
        if (st.failed >= 1) break;
        nanosleep(&ts, NULL);
    }
    sli_fsio_fail_reset();
    return NULL;
}

static void test_transient_fault_aborts_and_goes_on(void **state)
{
    char dir[300], out[310];
    path(dir, sizeof(dir), "transient");
    snprintf(out, sizeof(out), "%s.txt", dir);
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    gen_ud g1 = {.p = p};
    /* rate-limited so the run lasts past the faults */
    sl_generator_conf gc = {.fn = gen, .ud = &g1, .count = NREC, .rate = NREC * 2.0};
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1};
    sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(rec), &wm);
    sl_stream *k = sl_stream_key_by(s, "key", rec_key, NULL);
    sl_window_conf wc = sl_window_tumbling(50, 0);
    wc.agg = &sl_agg_count;
    sl_agg_value av = {.offset = 8};
    wc.agg_ud = &av;
    sl_stream *w = sl_stream_parallelism(sl_stream_window(k, "win", &wc), 2);
    sl_write_conf oc = {.path = out, .format = fmt};
    sl_stream_sink(w, "out", &sl_sink_write, &oc);
    sl_checkpoint_conf cc = {.dir = dir, .interval_ms = 3};
    assert_int_equal(sl_pipeline_set_checkpoint(p, &cc), 0);
    assert_int_equal(sl_pipeline_start(p), 0);
    /* Every mkdir fails from now on - a checkpoint's directory is the only
     * one made while the job runs - until one checkpoint has failed. */
    sli_fsio_fail_after(SLI_FSIO_MKDIR, 0, ENOSPC, true);
    pthread_t th;
    pthread_create(&th, NULL, heal_after, p);
    int rc = sl_pipeline_wait(p, -1);
    pthread_join(th, NULL);
    sl_checkpoint_stats st;
    sl_pipeline_checkpoint_stats(p, &st);
    if (rc) fail_msg("transient: %s", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    assert_true(st.failed >= 1);
    assert_true(st.completed >= 1);
    assert_non_null(strstr(st.last_error, "failed"));
    lines got = read_sorted(out);
    assert_true(same(&got, &oracle));
    lines_free(&got);
}

/* The file sink's commit fails after the checkpoint's manifest is on disk
 * (its sidecar cannot be renamed into place: the crash between pre-commit
 * and commit). The job stops with an error naming the commit; the next start
 * rolls that checkpoint forward and the output ends exact. Renames: the
 * first checkpoint's manifest is the 1st, its sidecar the 2nd. */
static void test_file_commit_fails_then_rolls_forward(void **state)
{
    char dir[300], out[310];
    path(dir, sizeof(dir), "commit-fails");
    snprintf(out, sizeof(out), "%s.txt", dir);
    sli_fsio_fail_after(SLI_FSIO_RENAME, 1, EIO, true);
    job j = {.par = 1, .chk_dir = dir, .out = out, .interval_ms = 5};
    int rc = run_job(&j);
    sli_fsio_fail_reset();
    assert_int_not_equal(rc, 0);
    if (!strstr(j.err, "sluice-commit")) fail_msg("the error does not name the commit: %s", j.err);
    assert_true(j.st.completed >= 1); /* the manifest was written */
    lines mid = read_sorted(out);
    assert_true(submultiset(&mid, &oracle));
    assert_true(mid.n < oracle.n);
    lines_free(&mid);
    job k = {.par = 2, .chk_dir = dir, .out = out, .interval_ms = 5};
    assert_int_equal(run_job(&k), 0);
    assert_true(k.st.restored_from >= 1);
    lines got = read_sorted(out);
    if (!same(&got, &oracle)) fail_msg("%zu lines, the oracle has %zu", got.n, oracle.n);
    lines_free(&got);
}

static void flip_byte(const char *file, long at)
{
    int fd = open(file, O_RDWR);
    assert_true(fd >= 0);
    struct stat stt;
    fstat(fd, &stt);
    if (at < 0) at += stt.st_size;
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

static void test_corrupt_latest_falls_back(void **state)
{
    char dir[300], out[310];
    path(dir, sizeof(dir), "corrupt");
    snprintf(out, sizeof(out), "%s.txt", dir);
    job j = {.par = 2,
             .chk_dir = dir,
             .out = out,
             .stop_at = NREC / 2,
             .guarantee = SL_GUARANTEE_AT_LEAST_ONCE};
    assert_int_equal(run_job(&j), 0);
    uint64_t last = j.st.last_id;
    assert_true(j.st.completed >= 2);
    char man[400];
    snprintf(man, sizeof(man), "%s/chk-%" PRIu64 "/MANIFEST", dir, last);
    flip_byte(man, -3);
    job k = {.par = 2, .chk_dir = dir, .out = out, .guarantee = SL_GUARANTEE_AT_LEAST_ONCE};
    assert_int_equal(run_job(&k), 0);
    assert_true(k.st.restored_from > 0 && k.st.restored_from < last);
    assert_non_null(strstr(k.st.restore_warning, "skipped"));
}

static void test_other_graph_refused(void **state)
{
    char dir[300], out[310];
    path(dir, sizeof(dir), "graph");
    snprintf(out, sizeof(out), "%s.txt", dir);
    job j = {.chk_dir = dir, .out = out, .stop_at = NREC / 2};
    assert_int_equal(run_job(&j), 0);
    job k = {.chk_dir = dir, .out = out, .win_name = "windows"};
    assert_int_not_equal(run_job(&k), 0);
    if (!strstr(k.err, "windows") || !strstr(k.err, "win"))
        fail_msg("the refusal does not name the difference: %s", k.err);
}

/* A generator without fixed shards has one split per instance: its
 * positions cannot be mapped to another parallelism, and the restore says so
 * instead of losing or repeating records. */
static void test_source_splits_changed_refused(void **state)
{
    char dir[300], out[310];
    path(dir, sizeof(dir), "splits");
    snprintf(out, sizeof(out), "%s.txt", dir);
    job j = {.chk_dir = dir, .out = out, .stop_at = NREC / 2, .par_src = 2, .shards0 = 1};
    assert_int_equal(run_job(&j), 0);
    job k = {.chk_dir = dir, .out = out, .par_src = 1, .shards0 = 1};
    assert_int_not_equal(run_job(&k), 0);
    if (!strstr(k.err, "splits of source 'src'")) fail_msg("%s", k.err);
}

static void test_dir_is_a_file(void **state)
{
    char f[300], out[300];
    path(f, sizeof(f), "plainfile");
    path(out, sizeof(out), "plainfile.txt");
    FILE *fp = fopen(f, "w");
    fputs("x", fp);
    fclose(fp);
    job j = {.chk_dir = f, .out = out};
    assert_int_not_equal(run_job(&j), 0);
    assert_non_null(strstr(j.err, "plainfile"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_rescale),
        cmocka_unit_test(test_two_stops),
        cmocka_unit_test(test_resume_other_kinds),
        cmocka_unit_test(test_resume_forked_capture),
        cmocka_unit_test(test_two_inputs_aligned),
        cmocka_unit_test(test_backpressure_one_credit),
        cmocka_unit_test(test_transient_fault_aborts_and_goes_on),
        cmocka_unit_test(test_timeout_aborts),
        cmocka_unit_test(test_disk_full_final_fails),
        cmocka_unit_test(test_fsync_fails_final_fails),
        cmocka_unit_test(test_file_commit_fails_then_rolls_forward),
        cmocka_unit_test(test_corrupt_latest_falls_back),
        cmocka_unit_test(test_other_graph_refused),
        cmocka_unit_test(test_source_splits_changed_refused),
        cmocka_unit_test(test_dir_is_a_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
