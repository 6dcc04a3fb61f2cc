/*
 * bench/bench_saga.c - `sluice bench saga`: the saga operator and the
 * bundled saga job (examples/job_saga.c), against a hand-written saga loop
 * run in the same process.
 *
 *  1. Throughput (--only throughput): sagas per second completed end to
 *     end by the bundled job (jobs_saga_run: three steps, reserve -> charge
 *     -> ship, the orchestrator and the participants as two pipelines of
 *     this process talking through the job's topics of the built-in broker
 *     in a temporary directory), no faults, with 1 and with 2 worker
 *     threads per pipeline (jobs_common.threads; each pipeline gets that
 *     many, so "2" is four workers on the machine), and once with the fault
 *     mix --fail-rate 0.1 --timeout-rate 0.05 at 1 thread. Seconds are the
 *     job's own (saga_result.seconds: from the start of the pipelines to
 *     the last outcome; writing the orders to their topic comes before).
 *     The job's ledger check must pass, or the bench fails (exit 1).
 *
 *     The baseline: the same orders through a hand-written saga loop with
 *     no engine. An open-addressing table (linear probing) holds each
 *     saga's state (id, step, attempt, phase, its 8 data bytes); finished
 *     sagas stay in it, marked done, so that a duplicate start would be
 *     recognised as the operator's "done" table does. The three
 *     participants are direct function calls that apply each (order, step,
 *     kind) once, by the job's ledger rule (a second table of 3 bytes per
 *     order; an applied action is answered again with its result, the
 *     fault decision is the job's hash, at rate 0), and each application
 *     appends a 16-byte ledger record to a buffer that is reused. Orders
 *     go in chunks of 1024 (the engine's batch size): start them all, then
 *     run the commands through the participants and the replies through
 *     the loop until the chunk has ended. What the baseline leaves out, so
 *     that the ratio engine / baseline is read for what it is: topics (no
 *     record is appended to or read from a log, no serialisation of
 *     commands and replies, no watermark markers), durability (no
 *     transactions, no fsync, no checkpoints), event-time timers (a
 *     deadline is kept in the state but no timer is ever set or deleted,
 *     no watermark drives anything), threads, channels and keyed routing,
 *     and faults (its participants never fail or stay silent). The ratio
 *     is the cost of all of that, not of the state machine alone.
 *
 *  2. Latency (--only latency): with the job's probe, the time from a
 *     saga's last reply being read off the replies topic to its outcome
 *     reaching the orchestrator's outcome node: p50, p99 and max over the
 *     sagas that ended on a reply. All orders are on their topic before the
 *     start, so every saga is in flight at once and the figure is mostly
 *     queueing behind other sagas' records: it grows with the orders (about
 *     0.2 ms at 200, 0.7 ms at 1000, 5 ms at 20000 on a shared 2-core
 *     machine). It is measured twice, with at most LAT_SMALL orders (one
 *     batch: the time a batch of replies takes through the saga to the
 *     outcome node) and with at most LAT_ORDERS; the number used is printed
 *     next to each figure. The job's probe stamps a batch once, so sagas of
 *     one batch share a figure and p99 may equal the max.
 *
 *  3. State (--only state): the saga operator alone, in a forked child
 *     process: a generator of order ids -> "starts" -> saga <- a replies
 *     source that never emits anything and never announces a watermark
 *     (so no timer fires: every saga stays in flight, waiting for step 0's
 *     reply), commands into a counting sink. With S sagas in flight
 *     (10^6, or --orders when that is smaller) the pipeline is canceled,
 *     which writes a final checkpoint (engine/coord.c: the generator has
 *     finished, so no periodic one would start); printed are its size on
 *     disk (sl_pipeline_checkpoint_stats last_bytes) per saga, and the
 *     child's RSS growth per saga from before the pipeline was built to all
 *     S in flight (that includes the pipeline's own buffers and threads,
 *     a fixed cost spread over S). The per-saga figures are the keyed state
 *     "run" (24 + max_data 8 bytes per value, plus the table's own
 *     overhead) and one event-time timer each.
 *
 * --csv: rows bench,variant,threads,events,seconds,events_per_s,peak_rss_mb;
 * a figure that is not a rate is in the variant's name (as bench crdt does).
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench/bench_util.h"
#include "bench/bench.h"
#include "examples/jobs.h"
#include "examples/jobs_saga.h"

#define LAT_SMALL    1000    /* orders of the first latency run (one batch), at most */
#define LAT_ORDERS   20000   /* orders of the second latency run, at most */
#define STATE_SAGAS  1000000 /* sagas in flight in the state run, at most */
#define N_STEPS      3
#define CHUNK        1024
#define FAIL_RATE    0.1
#define TIMEOUT_RATE 0.05

static const char *cmd = "bench saga";
static int csv;

/* --- output ------------------------------------------------------------------------ */

static void row(const char *variant, int threads, uint64_t sagas, double secs)
{
    double eps = secs > 0 ? (double)sagas / secs : 0;
    if (csv)
        printf("saga,%s,%d,%" PRIu64 ",%.6f,%.0f,%.1f\n", variant, threads, sagas, secs, eps,
               bench_peak_rss_mb());
    else
        printf("  %-36s %7d %10" PRIu64 " %9.3f %12.0f %9.1f\n", variant, threads, sagas, secs, eps,
               bench_peak_rss_mb());
}

static uint64_t mix(uint64_t x) /* splitmix64's finaliser, as the job's */
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* --- 1. the job --------------------------------------------------------------------- */

static int run_job(long long orders, uint64_t seed, int threads, int faults, int probe,
                   saga_result *res)
{
    saga_opts o = {.orders = orders,
                   .fail_rate = faults ? FAIL_RATE : 0,
                   .timeout_rate = faults ? TIMEOUT_RATE : 0,
                   .seed = seed,
                   .out = "",
                   .quiet = 1,
                   .probe = probe};
    jobs_common c = {.threads = threads};
    if (jobs_saga_run(cmd, &o, &c, res)) {
        fprintf(stderr,
                "sluice %s: the saga job failed (%d thread(s)%s): %lld sagas, %lld completed, "
                "%lld compensated, %lld failed, %lld stuck, ledger %s\n",
                cmd, threads, faults ? ", faults" : "", res->sagas, res->completed,
                res->compensated, res->failed, res->stuck,
                res->consistent ? "consistent" : "inconsistent");
        return 1;
    }
    return 0;
}

/* --- 1. the baseline: a hand-written saga loop ---------------------------------------- */

enum { B_FREE = 0, B_WAIT, B_DONE };          /* phase of a baseline saga */
enum { P_NONE = 0, P_APPLIED, P_REFUSED };    /* the job's ledger states (actions) */
enum { R_SUCCESS = 0, R_RETRYABLE, R_FINAL }; /* reply status */

typedef struct bl_saga {
    uint64_t id; /* 0: free slot (ids are 1..N) */
    int64_t deadline;
    uint32_t attempt;
    uint16_t step;
    uint8_t phase, outcome;
    uint8_t data[8];
} bl_saga;

typedef struct bl_led {
    uint64_t id;
    uint8_t st[N_STEPS];
} bl_led;

typedef struct bl_cmd {
    uint64_t id;
    uint16_t step;
    uint8_t kind;
    uint32_t attempt;
    int64_t ts;
    uint8_t data[8];
} bl_cmd;

typedef struct bl_reply {
    uint64_t id;
    uint16_t step;
    uint8_t kind, status;
    uint32_t attempt;
    int64_t ts;
} bl_reply;

typedef struct bl_world {
    bl_saga *run;
    bl_led *led;
    size_t mask;
    uint64_t seed;
    double fail_rate;                    /* 0: kept in memory so that the decision is really made */
    uint8_t ledger[CHUNK * N_STEPS][16]; /* the chunk's ledger records (reused) */
    size_t n_ledger;
    uint64_t applied[N_STEPS], completed, diverted;
} bl_world;

static bl_saga *bl_run_slot(bl_world *w, uint64_t id)
{
    size_t i = (size_t)mix(id) & w->mask;
    while (w->run[i].id && w->run[i].id != id) i = (i + 1) & w->mask;
    return &w->run[i];
}

static bl_led *bl_led_slot(bl_world *w, uint64_t id)
{
    size_t i = (size_t)mix(id ^ 0x5bd1e995) & w->mask;
    while (w->led[i].id && w->led[i].id != id) i = (i + 1) & w->mask;
    return &w->led[i];
}

/* The job's fault decision (examples/job_saga.c decide()), at rate 0: the
 * same hashing per command, always "apply". */
static int bl_decide(const bl_world *w, const bl_cmd *c)
{
    uint64_t h = mix(mix(mix(mix(w->seed ^ 0x5a6a) ^ c->id) ^ c->step) ^
                     ((uint64_t)c->kind << 32 | c->attempt));
    double u = (double)(h >> 11) * 0x1p-53;
    return u < w->fail_rate;
}

/* A participant (inventory, payments or shipping: the step says which):
 * applies an action once, answers a repeat with the result it gave. */
static void bl_participant(bl_world *w, const bl_cmd *c, bl_reply *r)
{
    bl_led *l = bl_led_slot(w, c->id);
    l->id = c->id;
    uint8_t *p = &l->st[c->step];
    *r = (bl_reply){
        .id = c->id, .step = c->step, .kind = c->kind, .attempt = c->attempt, .ts = c->ts + 100};
    if (*p == P_APPLIED) {
        r->status = R_SUCCESS;
    } else if (*p != P_NONE) {
        r->status = R_FINAL;
    } else if (bl_decide(w, c)) {
        *p = P_REFUSED;
        r->status = R_FINAL;
    } else {
        *p = P_APPLIED;
        uint8_t *e = w->ledger[w->n_ledger++];
        memcpy(e, &c->id, 8);
        e[8] = (uint8_t)c->step;
        e[9] = c->kind;
        e[10] = e[11] = 0;
        memcpy(e + 12, &c->attempt, 4);
        w->applied[c->step]++;
        r->status = R_SUCCESS;
    }
}

static void bl_command(const bl_saga *s, int64_t ts, bl_cmd *c)
{
    *c = (bl_cmd){.id = s->id, .step = s->step, .kind = 0, .attempt = s->attempt, .ts = ts};
    memcpy(c->data, s->data, 8);
}

static int run_baseline(uint64_t n, uint64_t seed, double *secs)
{
    size_t cap = 1;
    while (cap < 2 * n) cap <<= 1;
    bl_world *w = calloc(1, sizeof(*w));
    bl_cmd *cmds = malloc(CHUNK * sizeof(*cmds));
    bl_reply *reps = malloc(CHUNK * sizeof(*reps));
    if (w) {
        w->run = calloc(cap, sizeof(bl_saga));
        w->led = calloc(cap, sizeof(bl_led));
    }
    if (!w || !cmds || !reps || !w->run || !w->led) {
        fprintf(stderr, "sluice %s: out of memory for the baseline's tables\n", cmd);
        if (w) free(w->run), free(w->led);
        free(w), free(cmds), free(reps);
        return 1;
    }
    w->mask = cap - 1;
    w->seed = seed;
    double t0 = bench_now();
    for (uint64_t first = 1; first <= n; first += CHUNK) {
        size_t k = n - first + 1 < CHUNK ? (size_t)(n - first + 1) : CHUNK, nc = 0;
        w->n_ledger = 0;
        for (size_t i = 0; i < k; i++) { /* the starts */
            uint64_t id = first + i, h = mix(id);
            int64_t ts = (int64_t)((id - 1) / 10);
            bl_saga *s = bl_run_slot(w, id);
            if (s->id) { /* a duplicate start: never in this input */
                w->diverted++;
                continue;
            }
            uint32_t item = (uint32_t)(h % 1000), cents = (uint32_t)(100 + (h >> 32) % 100000);
            *s = (bl_saga){.id = id, .deadline = ts + 250, .attempt = 1, .phase = B_WAIT};
            memcpy(s->data, &item, 4);
            memcpy(s->data + 4, &cents, 4);
            bl_command(s, ts, &cmds[nc++]);
        }
        while (nc) {
            for (size_t i = 0; i < nc; i++) bl_participant(w, &cmds[i], &reps[i]);
            size_t nr = nc;
            nc = 0;
            for (size_t i = 0; i < nr; i++) {
                const bl_reply *r = &reps[i];
                bl_saga *s = bl_run_slot(w, r->id);
                if (!s->id || s->phase != B_WAIT || r->step != s->step || r->kind != 0 ||
                    r->attempt != s->attempt || r->status != R_SUCCESS) {
                    w->diverted++; /* (no failure can come: rate 0) */
                    continue;
                }
                if (s->step + 1 == N_STEPS) {
                    s->phase = B_DONE;
                    s->outcome = 1; /* completed */
                    s->deadline = INT64_MIN;
                    w->completed++;
                } else {
                    s->step++;
                    s->attempt = 1;
                    s->deadline = r->ts + 250;
                    bl_command(s, r->ts, &cmds[nc++]);
                }
            }
        }
    }
    *secs = bench_now() - t0;
    int ok = w->completed == n && w->applied[2] == n && w->applied[0] == n && !w->diverted;
    if (!ok)
        fprintf(stderr,
                "sluice %s: the baseline completed %" PRIu64 " of %" PRIu64
                " sagas (shipped %" PRIu64 ", diverted %" PRIu64 ")\n",
                cmd, w->completed, n, w->applied[2], w->diverted);
    free(w->run);
    free(w->led);
    free(w);
    free(cmds);
    free(reps);
    return ok ? 0 : 1;
}

static int run_throughput(long long orders, uint64_t seed)
{
    saga_result r1, r2, rf;
    double sb = 0;
    if (run_baseline((uint64_t)orders, seed, &sb)) return 1;
    if (!csv) {
        printf("saga throughput: %lld orders, 3 steps (reserve, charge, ship); the job's two "
               "pipelines (orchestrator, participants) through its topics of the built-in "
               "broker; threads per pipeline\n",
               orders);
        printf("  %-36s %7s %10s %9s %12s %9s\n", "variant", "threads", "sagas", "seconds",
               "sagas/s", "peak MB");
    }
    row(csv ? "baseline-hand-loop" : "baseline (hand loop, no engine)", 1, (uint64_t)orders, sb);
    bench_plot_row("baseline (hand loop)", 1, (uint64_t)orders, sb);
    if (run_job(orders, seed, 1, 0, 0, &r1)) return 1;
    row("engine", 1, (uint64_t)r1.sagas, r1.seconds);
    bench_plot_row("engine", 1, (uint64_t)r1.sagas, r1.seconds);
    if (run_job(orders, seed, 2, 0, 0, &r2)) return 1;
    row("engine", 2, (uint64_t)r2.sagas, r2.seconds);
    bench_plot_row("engine", 2, (uint64_t)r2.sagas, r2.seconds);
    if (run_job(orders, seed, 1, 1, 0, &rf)) return 1;
    char name[96];
    snprintf(name, sizeof(name), csv ? "engine-faults-0.1-0.05" : "engine, faults 0.1 / 0.05");
    row(name, 1, (uint64_t)rf.sagas, rf.seconds);
    bench_plot_row("engine, faults 0.1 / 0.05", 1, (uint64_t)rf.sagas, rf.seconds);
    double eb = sb > 0 ? (double)orders / sb : 0, e1 = r1.seconds > 0 ? r1.sagas / r1.seconds : 0,
           e2 = r2.seconds > 0 ? r2.sagas / r2.seconds : 0;
    if (!csv) {
        printf("  faults: %lld completed, %lld compensated, %lld stale or duplicate replies "
               "diverted; ledger consistent\n",
               rf.completed, rf.compensated, rf.diverted);
        printf("  ratio engine-1t / baseline: %.4f (the baseline has no topics, durability, "
               "timers or threads)\n",
               eb > 0 ? e1 / eb : 0);
        printf("  ratio engine-2t / 1t: %.3f\n", e1 > 0 ? e2 / e1 : 0);
    }
    return 0;
}

/* --- 2. latency ------------------------------------------------------------------------ */

static int latency_at(long long n, uint64_t seed)
{
    saga_result r;
    if (run_job(n, seed, 1, 0, 1, &r)) return 1;
    if (r.lat_n <= 0) {
        fprintf(stderr, "sluice %s: the probe measured no saga\n", cmd);
        return 1;
    }
    bench_plot_latency("reply to outcome", 1, r.lat_p50_us / 1e3, r.lat_p99_us / 1e3);
    if (csv) {
        static const char *const q[3] = {"p50", "p99", "max"};
        double v[3] = {r.lat_p50_us, r.lat_p99_us, r.lat_max_us};
        for (int i = 0; i < 3; i++) {
            char name[96];
            snprintf(name, sizeof(name), "latency-%s-us=%.1f", q[i], v[i]);
            row(name, 1, (uint64_t)r.sagas, r.seconds);
        }
    } else {
        printf("  reply-to-outcome p50 us: %.1f, p99 us: %.1f, max us: %.1f (%lld orders, "
               "%lld sagas measured)\n",
               r.lat_p50_us, r.lat_p99_us, r.lat_max_us, n, r.lat_n);
    }
    return 0;
}

static int run_latency(long long orders, uint64_t seed)
{
    long long small = orders < LAT_SMALL ? orders : LAT_SMALL;
    long long big = orders < LAT_ORDERS ? orders : LAT_ORDERS;
    if (!csv)
        printf("saga latency: a saga's last reply read off the replies topic -> its outcome at "
               "the outcome node (the job's probe), 1 thread per pipeline; every order is in "
               "flight from the start, so the figure grows with the orders (queueing)\n");
    if (latency_at(small, seed)) return 1;
    return big > small ? latency_at(big, seed) : 0;
}

/* --- 3. state per in-flight saga --------------------------------------------------------- */

/* An order id (8 bytes, 1..N) at (id - 1) / 10 ms, as the job's orders. */
static int gen_order(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    uint64_t id = seq + 1;
    memcpy(out, &id, 8);
    *ts = (int64_t)(seq / 10);
    return 0;
}

/* "starts": an order as a saga start with the job's 8 data bytes. */
static int starts_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    for (uint32_t i = 0; i < in->count; i++) {
        uint64_t id;
        memcpy(&id, sl_batch_bytes(in, i).ptr, 8);
        uint64_t h = mix(id);
        uint32_t d[2] = {(uint32_t)(h % 1000), (uint32_t)(100 + (h >> 32) % 100000)};
        uint8_t *o = sl_emit(ctx, in->ts[i], 0, sl_saga_start_size(8));
        if (!o) return sl_ctx_error(ctx);
        sl_saga_start_write(o, id, d, 8);
    }
    return 0;
}

static const sl_operator starts_op = {
    .version = SL_OPERATOR_VERSION, .kind = "bench-saga-starts", .process = starts_process};

/* The replies that never come: one split that always has nothing, and no
 * watermark strategy, so the saga's watermark never moves. */
static int silent_open(sl_ctx *ctx, const sl_split *split, void **reader)
{
    (void)ctx, (void)split;
    *reader = NULL;
    return 0;
}

static int silent_poll(sl_ctx *ctx, void *reader, uint32_t max)
{
    (void)ctx, (void)reader, (void)max;
    return SL_POLL_WAIT;
}

static void silent_close(void *reader)
{
    (void)reader;
}

static const sl_source silent_src = {.version = SL_SOURCE_VERSION,
                                     .kind = "bench-saga-silent",
                                     .open = silent_open,
                                     .poll = silent_poll,
                                     .close = silent_close};

static int count_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    atomic_fetch_add((_Atomic uint64_t *)sl_ctx_conf(ctx), in->count);
    return 0;
}

static const sl_operator count_op = {
    .version = SL_OPERATOR_VERSION, .kind = "bench-saga-count", .process = count_process};

static int build_cmd(sl_buf *out, uint64_t id, const void *data, uint32_t len, uint32_t attempt,
                     void *ud)
{
    (void)id, (void)attempt, (void)ud;
    return sl_buf_append(out, data, len);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

typedef struct state_fig {
    double chk_bytes, rss_kb, secs;
    uint64_t in_flight;
    int ok;
} state_fig;

/* In the child: the operator alone with n sagas in flight, then a cancel. */
static void state_child(uint64_t n, state_fig *f)
{
    char dir[] = "/tmp/sluice-bench-saga.XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "sluice %s: a temporary directory: %s\n", cmd, strerror(errno));
        return;
    }
    sl_saga_step steps[N_STEPS];
    static const char *const names[N_STEPS] = {"reserve", "charge", "ship"};
    for (int i = 0; i < N_STEPS; i++)
        steps[i] = (sl_saga_step){
            .name = names[i],
            .action = build_cmd,
            .compensation = i < 2 ? build_cmd : NULL,
            .timeout_ms = 250,
            .retry = {.attempts = 3, .backoff_ms = 100, .multiplier = 2.0, .max_backoff_ms = 400},
            .comp_retry = {.backoff_ms = 100, .multiplier = 2.0, .max_backoff_ms = 400}};
    sl_saga_def def = {.version = SL_SAGA_VERSION,
                       .steps = steps,
                       .n_steps = N_STEPS,
                       .max_data = 8,
                       .time = SL_SAGA_EVENT_TIME};
    _Atomic uint64_t commands, others;
    atomic_init(&commands, 0);
    atomic_init(&others, 0);
    double rss0 = bench_status_kb("VmRSS");
    sl_pipeline *p = sl_pipeline_new();
    if (!p) goto out;
    sl_pipeline_set_threads(p, 1);
    sl_generator_conf gc = {.fn = gen_order, .count = n};
    sl_watermark_conf wm = {.monotonous = 1};
    sl_stream *orders = sl_pipeline_generator(p, "orders", &gc, 8, &wm);
    sl_stream *starts = sl_stream_apply(orders, "starts", &starts_op, NULL, 0);
    sl_stream *replies = sl_pipeline_source(p, "replies", &silent_src, NULL, 0, NULL);
    sl_stream *saga = sl_stream_saga(starts, replies, "saga", &def);
    sl_stream_sink(saga, "commands", &count_op, &commands);
    sl_stream_sink(sl_stream_saga_outcomes(saga), "outcomes", &count_op, &others);
    sl_stream_sink(sl_stream_saga_diverted(saga), "diverted", &count_op, &others);
    sl_checkpoint_conf cc = {.dir = dir, .interval_ms = 3600000};
    double t0 = bench_now();
    if (sl_pipeline_set_checkpoint(p, &cc) || sl_pipeline_start(p)) {
        fprintf(stderr, "sluice %s: state: %s\n", cmd, sl_pipeline_errmsg(p));
        goto out;
    }
    int w = SL_EAGAIN;
    while (atomic_load(&commands) < n && (w = sl_pipeline_wait(p, 10)) == SL_EAGAIN) {}
    if (w != SL_EAGAIN) {
        fprintf(stderr,
                "sluice %s: state: the pipeline ended with %" PRIu64 " of %" PRIu64
                " sagas started%s%s\n",
                cmd, atomic_load(&commands), n, w ? ": " : "", w ? sl_pipeline_errmsg(p) : "");
        goto out;
    }
    f->secs = bench_now() - t0;
    double rss1 = bench_status_kb("VmRSS");
    f->in_flight = atomic_load(&commands);
    sl_pipeline_cancel(p);
    if (sl_pipeline_wait(p, -1)) {
        fprintf(stderr, "sluice %s: state: %s\n", cmd, sl_pipeline_errmsg(p));
        goto out;
    }
    sl_checkpoint_stats cs;
    sl_pipeline_checkpoint_stats(p, &cs);
    if (!cs.completed || !cs.last_bytes) {
        fprintf(stderr, "sluice %s: state: no checkpoint was written at the cancel%s%s\n", cmd,
                *cs.last_error ? ": " : "", cs.last_error);
        goto out;
    }
    f->chk_bytes = (double)cs.last_bytes;
    f->rss_kb = rss0 >= 0 && rss1 >= 0 ? rss1 - rss0 : -1;
    f->ok = f->in_flight == n && !atomic_load(&others);
    if (!f->ok)
        fprintf(stderr,
                "sluice %s: state: %" PRIu64 " commands for %" PRIu64 " sagas, %" PRIu64
                " outcomes or diverted records\n",
                cmd, f->in_flight, n, atomic_load(&others));
out:
    sl_pipeline_free(p);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void state_in_child(void *ud, void *out)
{
    state_child(*(const uint64_t *)ud, out);
}

static int run_state(uint64_t n)
{
    state_fig f = {.ok = 0};
    int got = bench_in_child(state_in_child, &n, &f, sizeof(f));
    if (got || !f.ok) {
        if (got) fprintf(stderr, "sluice %s: state: the child process reported nothing\n", cmd);
        return 1;
    }
    double per_chk = f.chk_bytes / (double)n, per_rss = f.rss_kb * 1024.0 / (double)n;
    if (csv) {
        char name[96];
        snprintf(name, sizeof(name), "state-checkpoint-bytes-per-saga=%.1f", per_chk);
        row(name, 1, n, f.secs);
        snprintf(name, sizeof(name), "state-rss-bytes-per-saga=%.1f", per_rss);
        row(name, 1, n, f.secs);
    } else {
        printf("saga state: %" PRIu64 " sagas in flight (the saga operator alone, 1 thread; "
               "replies never come), started in %.3f s\n",
               n, f.secs);
        printf("  checkpoint bytes per saga: %.1f (final checkpoint at the cancel, %.0f bytes "
               "on disk in all; %" PRIu64 " sagas)\n",
               per_chk, f.chk_bytes, n);
        printf("  RSS growth bytes per saga: %.1f (a child process, from before the pipeline "
               "was built, its buffers and threads included; %" PRIu64 " sagas)\n",
               per_rss, n);
    }
    return 0;
}

/* --- the command line ------------------------------------------------------------------- */

int bench_saga(int argc, char **argv)
{
    static const char *const parts[] = {"throughput", "latency", "state"};
    enum { O_CSV = JOBS_OPT_FIRST_FREE, O_ORDERS, O_SEED, O_ONLY };
    static const struct option opts[] = {
        {"csv", no_argument, NULL, O_CSV},         {"orders", required_argument, NULL, O_ORDERS},
        {"seed", required_argument, NULL, O_SEED}, {"only", required_argument, NULL, O_ONLY},
        {"help", no_argument, NULL, 'h'},          {0}};
    long long orders = 200000, seed = 1;
    int opt, ret = 0, only = 0, have_orders = 0;
    csv = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = 1; break;
        case O_ORDERS:
            ret = jobs_int(cmd, "--orders", optarg, 100, 100000000, &orders);
            have_orders = 1;
            break;
        case O_SEED: ret = jobs_int(cmd, "--seed", optarg, 0, INT64_MAX, &seed); break;
        case O_ONLY:
            for (only = 3; only > 0 && strcmp(optarg, parts[only - 1]) != 0; only--) {}
            if (!only) {
                fprintf(stderr,
                        "sluice %s: --only must be throughput, latency or state, not '%s'\n", cmd,
                        optarg);
                ret = 2;
            }
            break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            printf("usage: sluice bench saga [--orders N] [--seed S]\n"
                   "           [--only throughput|latency|state] [--csv]\n"
                   "The bundled saga job (reserve -> charge -> ship, participants in this\n"
                   "process, through the job's topics): sagas/s end to end with 1 and 2 threads\n"
                   "per pipeline and with faults (fail rate 0.1, timeout rate 0.05), against a\n"
                   "hand-written saga loop with no engine over the same N orders (default\n"
                   "200000); p50 / p99 / max time from a saga's last reply to its outcome, at\n"
                   "most %d and at most %d orders; bytes of checkpoint and of RSS per\n"
                   "in-flight saga with the saga operator alone (%d sagas, or N when given\n"
                   "and smaller). S seeds the faults (default 1).\n",
                   LAT_SMALL, LAT_ORDERS, STATE_SAGAS);
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    uint64_t n_state = have_orders && orders < STATE_SAGAS ? (uint64_t)orders : STATE_SAGAS;
    if (csv) bench_header(1);
    if ((!only || only == 1) && run_throughput(orders, (uint64_t)seed)) return 1;
    if ((!only || only == 2) && run_latency(orders, (uint64_t)seed)) return 1;
    if ((!only || only == 3) && run_state(n_state)) return 1;
    return 0;
}
