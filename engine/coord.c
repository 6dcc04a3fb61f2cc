/*
 * engine/coord.c - the checkpoint coordinator: asynchronous barrier
 * snapshots (Carbone et al. 2015, as in Flink), restore, and the commit
 * phase of two-phase-commit sinks.
 *
 * The cycle of checkpoint n, with the threads that run each step:
 *
 *   coordinator thread   every interval: n = last + 1; BARRIER(n) requested
 *                        at every source task (sli_pipeline_inject_barrier)
 *   source task          between two polls: flush, capture each instance of
 *                        its chain (split positions and watermark state,
 *                        keyed state, timers, snapshot hooks), pass BARRIER(n)
 *                        on, ack n with the captured blobs
 *   other tasks          BARRIER(n) on every open input (alignment, task.c):
 *                        capture the chain's instances, pass it on, ack
 *   coordinator thread   every task acked n: write the blobs and positions
 *                        (engine/checkpoint.c: state files, then the
 *                        manifest, atomically), then commit(n) on every sink
 *                        instance that has the hook
 *
 * Capturing is synchronous: the instance's state is serialised into memory
 * on its task's thread, on the barrier (that time is the task's "stall",
 * measured per task per checkpoint); the disk writes and fsyncs happen on the
 * coordinator thread, off the processing path. (Copy-on-write capture, which
 * would shorten the stall for large state, is not done: the serialisation
 * is a sequential copy of the tables, about 1 GB/s.)
 *
 * One checkpoint is in flight at a time. It is aborted - its blobs dropped,
 * its directory removed, nothing committed - when it is not complete within
 * timeout_ms, when writing it fails (disk full, fsync error), or when a task
 * finishes before acknowledging it; the job goes on and the next one starts
 * at the next interval. Once any task has finished no periodic checkpoint
 * starts (a finished task can no longer acknowledge, and its state after the
 * end must not be lost: Flink before 1.14 did the same); instead, when every
 * task has finished - at the end of the input, or after a cancel - the
 * coordinator captures every instance itself (no worker runs any more) and
 * writes a final checkpoint, then commits it. After a cancel that final
 * checkpoint is the savepoint the next start resumes from.
 *
 * Instance blob (one state file per instance; the store adds its own header
 * and CRC-32C), little-endian:
 *
 *   offset  size  field
 *   0       4     magic "SLIS"
 *   4       2     version, 1
 *   6       2     reserved, 0
 *   8       4     n: sections that follow
 *   12      ...   n sections:
 *                   +0   1  kind: 1 keyed state, 2 event-time timers,
 *                            3 the operator's snapshot hook, 4 source splits,
 *                            5 the instance's input watermark
 *                   +1   1  reserved, 0
 *                   +2   2  name_len (keyed state: the table's name; else 0)
 *                   +4   4  reserved, 0
 *                   +8   8  data_len
 *                   +16  *  name, then data (sl_state_snapshot's format,
 *                            timer.c's, the hook's own, source.c's SPLITS,
 *                            the watermark: an int64)
 *
 * Restore (sl_pipeline_start, after every instance opened, before any
 * record): for new instance i of Q, every blob of the same node name is read.
 * A node with a keyed input takes from every old blob the keyed state and
 * timers of the key groups it owns, and calls restore() with every old blob
 * (the hook keeps its own keys: the window does). Other nodes take old
 * instance j's blob when j % Q == i, whole. Sources restore the states of
 * the splits they own now (split k goes to instance k % Q) and seek them to
 * the checkpoint's positions; their first step announces the restored
 * watermark, before any record, so replayed records are judged against the
 * watermark they were judged against before.
 *
 * Every instance also gets back its input watermark (section 5; the minimum
 * over the old blobs it reads, SL_TIME_MIN from a checkpoint without one),
 * and a task with inputs starts from its root's: a task's watermark never
 * goes back, across a restart as within a run. Without it a restarted
 * window judged the first records against SL_TIME_MIN until every input had
 * announced its restored watermark: a record for a window that had fired
 * (kept under allowed lateness) was added without firing it again, its
 * result lost; and a channel that was idle or had ended before the
 * checkpoint came back into the minimum below where the watermark had been.
 *
 * Ids: a run continues after the highest id in the directory (complete or
 * not) and after the id it restored, so ids only grow and a stale instance's
 * id is always below the live one's (the fencing token of the sinks).
 *
 * Tracing (when the pipeline has a tracer, sluice/trace.h): each checkpoint
 * is a trace. Its root span "checkpoint" starts when the coordinator injects
 * the barriers and ends when the checkpoint is committed (status OK) or
 * aborted (ERROR, with the reason); each task adds, on its thread, an
 * "align" span (first barrier in to the last: tasks with inputs) and a
 * "snapshot" span (the capture, its stall) as children; the coordinator adds
 * "write" (blobs and manifest to the store, then the commits). The final
 * checkpoint has "snapshot" (every instance, by the coordinator) and
 * "write". Tasks read the root's context under c->lock; the root span
 * itself is the coordinator thread's.
 *
 * Locks: c->lock guards the in-flight checkpoint and the statistics; tasks
 * take it once per barrier to ack. The store is used by the coordinator
 * thread only (and by start, before any thread runs).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/base/le.h"
#include "engine/base/clock.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"
#include "engine/checkpoint.h"
#include "engine/coord.h"
#include "sluice/metrics.h"
#include "engine/graph.h"
#include "engine/plan.h"
#include "engine/source.h"
#include "engine/sched.h"
#include "engine/timer.h"
#include "sluice/error.h"
#include "sluice/state.h"
#include "sluice/trace.h"

enum { SEC_STATE = 1, SEC_TIMERS = 2, SEC_OPERATOR = 3, SEC_SPLITS = 4, SEC_WATERMARK = 5 };
#define BLOB_MAGIC "SLIS"
#define BLOB_HDR   12
#define SEC_HDR    16

typedef struct chk_blob {
    int node, inst;
    sl_buf data;
} chk_blob;

typedef struct chk_pos {
    int node;
    uint32_t split;
    sl_buf pos;
} chk_pos;

/* What one task (or the final capture) hands over. */
struct sli_capture {
    int n_blobs, cap_blobs;
    chk_blob *blobs;
    int n_pos, cap_pos;
    chk_pos *pos;
    int cur_node; /* for the position callback */
};

typedef struct dseries {
    double *v;
    size_t n, cap;
} dseries;

struct sli_coord {
    sl_checkpoint_conf conf;
    char *dir, *from;
    sli_chk_store *store;
    sli_chk_node *nodes;
    char **kinds;
    int n_nodes;
    sli_chk_reader *restore; /* the checkpoint resumed from, during start */
    sli_chk_store *from_store;
    uint64_t restored_from;
    double restore_ms;

    pthread_mutex_t lock;
    uint64_t last_id; /* highest id begun or found */
    uint64_t pend_id; /* in flight (0: none) */
    double pend_t0;   /* when injected */
    int pend_acks, pend_need;
    int pend_abort;        /* a task finished before acking it */
    double pend_stall;     /* longest task stall of this checkpoint */
    sl_span pend_span;     /* its trace's root (coordinator thread; tracing) */
    sl_trace_ctx pend_ctx; /* the root's context, for the tasks' spans */
    sli_capture pend;      /* blobs and positions acked so far */
    double next_at;
    int any_finished;
    /* forked captures (SL_CAPTURE_FORK): children still running or not yet
     * reaped, the in-flight checkpoint's count of them and of those read */
    struct forked {
        uint64_t id;
        pid_t pid;
        char path[600];
    } * forks;
    int n_forks, cap_forks;
    int pend_forks, pend_forks_done;
    uint64_t forked;     /* children started, for the statistics */
    char pend_fail[200]; /* why the in-flight one is to be aborted and counted */

    /* statistics (under lock) */
    uint64_t completed, failed, last_done, last_bytes;
    dseries durations, stalls;
    sl_checkpoint_history hist; /* ring of entries (hist_at: next slot), histograms */
    int hist_at;
    _Atomic uint64_t sink_commits;
    char last_error[256];
    char restore_warning[512];
};

static void reap_forks(sl_pipeline *p, int block);
static void kill_forks(struct sli_coord *c, uint64_t id);

/* --- small helpers ------------------------------------------------------------------------ */

static int dseries_add(dseries *s, double v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        double *n = realloc(s->v, cap * sizeof(*n));
        if (!n) return SL_ENOMEM;
        s->v = n;
        s->cap = cap;
    }
    s->v[s->n++] = v;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p-th percentile (nearest rank) of s; 0 when empty. */
static double dseries_pct(const dseries *s, double pct)
{
    if (!s->n) return 0;
    double *tmp = malloc(s->n * sizeof(*tmp));
    if (!tmp) return 0;
    memcpy(tmp, s->v, s->n * sizeof(*tmp));
    qsort(tmp, s->n, sizeof(*tmp), cmp_double);
    size_t k = (size_t)(pct / 100.0 * (double)s->n + 0.999999);
    if (k < 1) k = 1;
    if (k > s->n) k = s->n;
    double v = tmp[k - 1];
    free(tmp);
    return v;
}

static void capture_clear(sli_capture *cap)
{
    for (int i = 0; i < cap->n_blobs; i++) sl_buf_free(&cap->blobs[i].data);
    for (int i = 0; i < cap->n_pos; i++) sl_buf_free(&cap->pos[i].pos);
    free(cap->blobs);
    free(cap->pos);
    memset(cap, 0, sizeof(*cap));
}

/* Move the entries of src to the end of dst (src is left empty). */
static int capture_move(sli_capture *dst, sli_capture *src)
{
    if (src->n_blobs) {
        chk_blob *b = realloc(dst->blobs, (size_t)(dst->n_blobs + src->n_blobs) * sizeof(*b));
        if (!b) return SL_ENOMEM;
        dst->blobs = b;
        memcpy(b + dst->n_blobs, src->blobs, (size_t)src->n_blobs * sizeof(*b));
        dst->n_blobs += src->n_blobs;
        dst->cap_blobs = dst->n_blobs;
    }
    if (src->n_pos) {
        chk_pos *q = realloc(dst->pos, (size_t)(dst->n_pos + src->n_pos) * sizeof(*q));
        if (!q) return SL_ENOMEM;
        dst->pos = q;
        memcpy(q + dst->n_pos, src->pos, (size_t)src->n_pos * sizeof(*q));
        dst->n_pos += src->n_pos;
        dst->cap_pos = dst->n_pos;
    }
    free(src->blobs);
    free(src->pos);
    memset(src, 0, sizeof(*src));
    return 0;
}

static int node_index(const sl_pipeline *p, const sl_node *n)
{
    return (int)(n - p->nodes);
}

/* Key groups [lo, hi] of instance i of par (contiguous, possibly empty:
 * then lo > hi). */
static void kg_range(int i, int par, uint32_t *lo, uint32_t *hi)
{
    *lo = 1;
    *hi = 0;
    int found = 0;
    for (uint32_t kg = 0; kg < SL_KEY_GROUPS; kg++) {
        if (sl_key_group_owner(kg, (uint32_t)par) != (uint32_t)i) continue;
        if (!found) *lo = kg;
        *hi = kg;
        found = 1;
    }
}

static int node_keyed(const sl_node *n)
{
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] && n->in[k]->key) return 1;
    return 0;
}

static const char *node_kind_word(const sl_node *n)
{
    const char *k = n->kind == SL_NODE_SOURCE ? n->src->kind : n->op->kind;
    return k ? k : "?";
}

/* --- configuration ---------------------------------------------------------------------------- */

int sl_pipeline_set_checkpoint(sl_pipeline *p, const sl_checkpoint_conf *conf)
{
    if (!p || !conf) return SL_EINVAL;
    if (p->started || p->planned)
        return sl_pipeline_error(p, SL_ESTATE, "checkpoints must be set before start");
    if (!conf->dir || !*conf->dir)
        return sl_pipeline_error(p, SL_EINVAL, "checkpoints need a directory");
    if (conf->interval_ms < 0)
        return sl_pipeline_error(p, SL_EINVAL, "checkpoint interval must be > 0, not %lld ms",
                                 (long long)conf->interval_ms);
    if (conf->timeout_ms < 0)
        return sl_pipeline_error(p, SL_EINVAL, "checkpoint timeout must be > 0, not %lld ms",
                                 (long long)conf->timeout_ms);
    if (conf->guarantee < 0 || conf->guarantee > SL_GUARANTEE_EXACTLY_ONCE)
        return sl_pipeline_error(p, SL_EINVAL, "unknown guarantee %d", conf->guarantee);
    struct sli_coord *c = calloc(1, sizeof(*c));
    if (!c) return SL_ENOMEM;
    c->conf = *conf;
    c->dir = strdup(conf->dir);
    c->from = conf->from ? strdup(conf->from) : NULL;
    if (!c->dir || (conf->from && !c->from)) {
        free(c->dir);
        free(c->from);
        free(c);
        return SL_ENOMEM;
    }
    c->conf.dir = c->dir;
    c->conf.from = c->from;
    if (!c->conf.interval_ms) c->conf.interval_ms = 1000;
    if (!c->conf.timeout_ms) c->conf.timeout_ms = 60000;
    if (!c->conf.keep) c->conf.keep = 3;
    if (!c->conf.guarantee) c->conf.guarantee = SL_GUARANTEE_EXACTLY_ONCE;
    pthread_mutex_init(&c->lock, NULL);
    if (p->chk) sli_coord_free(p);
    p->chk = c;
    return 0;
}

void sli_coord_free(sl_pipeline *p)
{
    struct sli_coord *c = p->chk;
    if (!c) return;
    if (c->n_forks) {
        kill_forks(c, 0);
        reap_forks(p, 1);
    }
    free(c->forks);
    capture_clear(&c->pend);
    sli_chk_reader_free(c->restore);
    sli_chk_store_free(c->from_store);
    sli_chk_store_free(c->store);
    for (int i = 0; i < c->n_nodes; i++) free(c->kinds[i]);
    free(c->kinds);
    free(c->nodes);
    free(c->durations.v);
    free(c->stalls.v);
    free(c->dir);
    free(c->from);
    pthread_mutex_destroy(&c->lock);
    free(c);
    p->chk = NULL;
}

int sl_ctx_guarantee(const sl_ctx *ctx)
{
    struct sli_coord *c = ctx->p->chk;
    return c ? c->conf.guarantee : SL_GUARANTEE_NONE;
}

uint64_t sl_ctx_restored_from(const sl_ctx *ctx)
{
    struct sli_coord *c = ctx->p->chk;
    return c ? c->restored_from : 0;
}

uint64_t sl_ctx_checkpoint_id(const sl_ctx *ctx)
{
    return ctx->chk_id;
}

void sl_pipeline_checkpoint_stats(const sl_pipeline *p, sl_checkpoint_stats *out)
{
    memset(out, 0, sizeof(*out));
    struct sli_coord *c = p ? p->chk : NULL;
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    out->completed = c->completed;
    out->failed = c->failed;
    out->restored_from = c->restored_from;
    out->restore_ms = c->restore_ms;
    out->last_id = c->last_done;
    out->last_bytes = c->last_bytes;
    out->forked_captures = c->forked;
    out->duration_p50_ms = dseries_pct(&c->durations, 50);
    out->duration_p99_ms = dseries_pct(&c->durations, 99);
    out->duration_max_ms = dseries_pct(&c->durations, 100);
    out->stall_p50_ms = dseries_pct(&c->stalls, 50);
    out->stall_p99_ms = dseries_pct(&c->stalls, 99);
    out->stall_max_ms = dseries_pct(&c->stalls, 100);
    snprintf(out->last_error, sizeof(out->last_error), "%s", c->last_error);
    snprintf(out->restore_warning, sizeof(out->restore_warning), "%s", c->restore_warning);
    pthread_mutex_unlock(&c->lock);
}

/* --- capture (task threads, or the coordinator for the final one) ------------------------------ */

static int sec_begin(sl_buf *b, int kind, const char *name, size_t *at)
{
    size_t nl = name ? strlen(name) : 0;
    if (sl_buf_reserve(b, SEC_HDR + nl)) return SL_ENOMEM;
    uint8_t *h = b->ptr + b->len;
    memset(h, 0, SEC_HDR);
    h[0] = (uint8_t)kind;
    sli_put_le(h + 2, nl, 2);
    if (nl) memcpy(h + SEC_HDR, name, nl);
    *at = b->len;
    b->len += SEC_HDR + nl;
    return 0;
}

static void sec_end(sl_buf *b, size_t at, uint32_t *n_sec)
{
    size_t nl = (size_t)sli_get_le(b->ptr + at + 2, 2);
    sli_put_le(b->ptr + at + 8, b->len - at - SEC_HDR - nl, 8);
    (*n_sec)++;
}

static int pos_cb(void *ud, uint32_t split, const void *pos, uint32_t len)
{
    sli_capture *cap = ud;
    if (cap->n_pos == cap->cap_pos) {
        int n = cap->cap_pos ? cap->cap_pos * 2 : 8;
        chk_pos *q = realloc(cap->pos, (size_t)n * sizeof(*q));
        if (!q) return SL_ENOMEM;
        cap->pos = q;
        cap->cap_pos = n;
    }
    chk_pos *e = &cap->pos[cap->n_pos];
    memset(e, 0, sizeof(*e));
    e->node = cap->cur_node;
    e->split = split;
    if (len && sl_buf_append(&e->pos, pos, len)) return SL_ENOMEM;
    cap->n_pos++;
    return 0;
}

/* Serialise instance c for checkpoint id into a new blob of cap. In a
 * forked child (child 1) errors are returned, not recorded (recording takes
 * the pipeline's lock, which another thread may have held at the fork). */
static int capture_instance(sl_pipeline *p, struct sl_ctx *c, uint64_t id, sli_capture *cap,
                            int child)
{
    if (cap->n_blobs == cap->cap_blobs) {
        int n = cap->cap_blobs ? cap->cap_blobs * 2 : 4;
        chk_blob *b = realloc(cap->blobs, (size_t)n * sizeof(*b));
        if (!b)
            return child ? SL_ENOMEM
                         : sl_ctx_fail(c, SL_ENOMEM, "out of memory taking a checkpoint");
        cap->blobs = b;
        cap->cap_blobs = n;
    }
    chk_blob *bl = &cap->blobs[cap->n_blobs];
    memset(bl, 0, sizeof(*bl));
    bl->node = node_index(p, c->node);
    bl->inst = c->instance;
    sl_buf *b = &bl->data;
    uint32_t n_sec = 0;
    size_t at;
    int rc = sl_buf_reserve(b, BLOB_HDR);
    if (rc) goto oom;
    memcpy(b->ptr, BLOB_MAGIC, 4);
    sli_put_le(b->ptr + 4, 1, 2);
    sli_put_le(b->ptr + 6, 0, 2);
    b->len = BLOB_HDR;
    for (int k = 0; k < c->n_states; k++) {
        if (c->states[k].unmanaged) continue;
        if ((rc = sec_begin(b, SEC_STATE, c->states[k].name, &at))) goto oom;
        if ((rc = sl_state_snapshot(c->states[k].st, b))) goto oom;
        sec_end(b, at, &n_sec);
    }
    if (c->timers && sli_timers_count(c->timers)) {
        if ((rc = sec_begin(b, SEC_TIMERS, NULL, &at))) goto oom;
        if ((rc = sli_timers_snapshot(c->timers, b))) goto oom;
        sec_end(b, at, &n_sec);
    }
    const sl_operator *op = c->node->op;
    if (op && op->snapshot) {
        if ((rc = sec_begin(b, SEC_OPERATOR, NULL, &at))) goto oom;
        c->chk_id = id;
        rc = op->snapshot(c, c->self, b);
        c->chk_id = 0;
        if (rc) {
            cap->n_blobs++; /* freed with the capture */
            if (child) return rc < 0 ? rc : SL_EOPERATOR;
            return c->err ? c->err
                          : sl_ctx_fail(c, rc < 0 ? rc : SL_EOPERATOR,
                                        "snapshot() for checkpoint %" PRIu64 " failed: %s", id,
                                        sl_strerror(rc < 0 ? rc : SL_EOPERATOR));
        }
        sec_end(b, at, &n_sec);
    }
    if (c->node->kind == SL_NODE_SOURCE) {
        if ((rc = sec_begin(b, SEC_SPLITS, NULL, &at))) goto oom;
        cap->cur_node = bl->node;
        c->chk_id = id;
        rc = sli_source_snapshot(c, b, pos_cb, cap);
        c->chk_id = 0;
        if (rc) {
            cap->n_blobs++;
            return c->err ? c->err : sl_ctx_fail(c, rc, "checkpoint: %s", sl_strerror(rc));
        }
        sec_end(b, at, &n_sec);
    }
    if ((rc = sec_begin(b, SEC_WATERMARK, NULL, &at))) goto oom;
    if ((rc = sl_buf_reserve(b, 8))) goto oom;
    sli_put_le(b->ptr + b->len, (uint64_t)c->wm, 8);
    b->len += 8;
    sec_end(b, at, &n_sec);
    sli_put_le(b->ptr + 8, n_sec, 4);
    cap->n_blobs++;
    return 0;
oom:
    cap->n_blobs++;
    if (child) return rc ? rc : SL_ENOMEM;
    return sl_ctx_fail(c, rc ? rc : SL_ENOMEM, "cannot take checkpoint %" PRIu64 ": %s", id,
                       sl_strerror(rc ? rc : SL_ENOMEM));
}

/* --- forked capture (SL_CAPTURE_FORK) ------------------------------------------------------- */

/* What a child hands over, in a file DIR/.capture-<id>-<task> (private to
 * one run; not part of any checkpoint), little-endian, blobs one after the
 * other: node u32, instance u32, length u64, bytes. */
#define FORK_MIN_ENTRIES 65536

static int forkable(const struct sl_ctx *x)
{
    const sl_operator *op = x->node->op;
    return x->node->kind != SL_NODE_SOURCE && !(op && op->version >= 3 && op->commit);
}

static int want_fork(const struct sli_coord *c, const sl_task *t)
{
#if defined(__SANITIZE_THREAD__)
    (void)c;
    (void)t;
    return 0; /* ThreadSanitizer does not follow a fork of a threaded process */
#else
    if (c->conf.capture == SL_CAPTURE_SYNC) return 0;
    size_t entries = 0;
    int any = 0;
    for (int i = 0; i < t->n_insts; i++) {
        const struct sl_ctx *x = t->insts[i];
        if (!forkable(x)) continue;
        any = 1;
        for (int k = 0; k < x->n_states; k++) entries += sl_state_count(x->states[k].st);
        if (x->timers) entries += sli_timers_count(x->timers);
    }
    if (!any) return 0;
    return c->conf.capture == SL_CAPTURE_FORK || entries >= FORK_MIN_ENTRIES;
#endif
}

static int write_all_fd(int fd, const void *buf, size_t n)
{
    const uint8_t *q = buf;
    while (n) {
        ssize_t k = write(fd, q, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The child: capture the forkable instances of t into path, then _exit. */
static void child_capture(sl_pipeline *p, sl_task *t, uint64_t id, const char *path)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the job */
    if (getppid() == 1) _exit(4);     /* the job died before that */
    sli_capture cap = {0};
    for (int i = 0; i < t->n_insts; i++)
        if (forkable(t->insts[i]) && capture_instance(p, t->insts[i], id, &cap, 1)) _exit(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) _exit(3);
    for (int i = 0; i < cap.n_blobs; i++) {
        uint8_t h[16];
        sli_put_le(h, (uint32_t)cap.blobs[i].node, 4);
        sli_put_le(h + 4, (uint32_t)cap.blobs[i].inst, 4);
        sli_put_le(h + 8, cap.blobs[i].data.len, 8);
        if (write_all_fd(fd, h, 16) ||
            write_all_fd(fd, cap.blobs[i].data.ptr, cap.blobs[i].data.len))
            _exit(3);
    }
    _exit(close(fd) == 0 ? 0 : 3);
}

/* Read a child's file into cap. 0 or -1. */
static int read_forked(const char *path, sli_capture *cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    uint8_t h[16];
    int rc = 0;
    size_t got;
    while ((got = fread(h, 1, 16, f)) == 16) {
        if (cap->n_blobs == cap->cap_blobs) {
            int n = cap->cap_blobs ? cap->cap_blobs * 2 : 4;
            chk_blob *b = realloc(cap->blobs, (size_t)n * sizeof(*b));
            if (!b) {
                rc = -1;
                break;
            }
            cap->blobs = b;
            cap->cap_blobs = n;
        }
        chk_blob *bl = &cap->blobs[cap->n_blobs];
        memset(bl, 0, sizeof(*bl));
        bl->node = (int)sli_get_le(h, 4);
        bl->inst = (int)sli_get_le(h + 4, 4);
        uint64_t len = sli_get_le(h + 8, 8);
        cap->n_blobs++;
        if (sl_buf_reserve(&bl->data, len) || fread(bl->data.ptr, 1, len, f) != len) {
            rc = -1;
            break;
        }
        bl->data.len = len;
    }
    if (got != 0) rc = -1;
    fclose(f);
    return rc;
}

/* Reap the children that ended (all of them, waiting, when block); a
 * child of the in-flight checkpoint adds its blobs to it, or marks it
 * failed; any other child's output is dropped. */
static void reap_forks(sl_pipeline *p, int block)
{
    struct sli_coord *c = p->chk;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        struct forked e = {0};
        int found = 0;
        for (int i = 0; i < c->n_forks && !found; i++) {
            int st;
            pid_t r = waitpid(c->forks[i].pid, &st, block ? 0 : WNOHANG);
            if (r == 0) continue;
            e = c->forks[i];
            c->forks[i] = c->forks[--c->n_forks];
            found = 1;
            int ok = r == e.pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
            e.pid = ok ? 0 : -1; /* reuse as the outcome */
        }
        pthread_mutex_unlock(&c->lock);
        if (!found) return;
        sli_capture cap = {0};
        int ok = e.pid == 0 && read_forked(e.path, &cap) == 0;
        unlink(e.path);
        pthread_mutex_lock(&c->lock);
        if (e.id == c->pend_id && c->pend_id) {
            if (ok && capture_move(&c->pend, &cap) == 0)
                c->pend_forks_done++;
            else if (!c->pend_fail[0])
                snprintf(c->pend_fail, sizeof(c->pend_fail),
                         "the process that captured a task's state failed");
        }
        pthread_mutex_unlock(&c->lock);
        capture_clear(&cap);
    }
}

/* Stop the children of checkpoint id (0: all); reap_forks collects them. */
static void kill_forks(struct sli_coord *c, uint64_t id)
{
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->n_forks; i++)
        if (!id || c->forks[i].id == id) kill(c->forks[i].pid, SIGKILL);
    pthread_mutex_unlock(&c->lock);
}

/* Fork a child that captures t's forkable instances for id. Returns 1 if
 * it runs (registered with the in-flight checkpoint), 0 to capture here. */
static int fork_capture(sl_pipeline *p, sl_task *t, uint64_t id)
{
    struct sli_coord *c = p->chk;
    pthread_mutex_lock(&c->lock);
    int live = id == c->pend_id;
    int room = c->n_forks < c->cap_forks;
    if (live && !room) {
        int n = c->cap_forks ? c->cap_forks * 2 : 8;
        struct forked *f = realloc(c->forks, (size_t)n * sizeof(*f));
        if (f) {
            c->forks = f;
            c->cap_forks = n;
            room = 1;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (!live || !room) return 0;
    char path[600];
    snprintf(path, sizeof(path), "%s/.capture-%" PRIu64 "-%d", c->dir, id, t->id);
    pid_t pid = fork();
    if (pid == 0) child_capture(p, t, id, path); /* does not return */
    if (pid < 0) return 0;
    pthread_mutex_lock(&c->lock);
    struct forked *e = &c->forks[c->n_forks++];
    e->id = id;
    e->pid = pid;
    snprintf(e->path, sizeof(e->path), "%s", path);
    if (id == c->pend_id) c->pend_forks++;
    c->forked++;
    pthread_mutex_unlock(&c->lock);
    return 1;
}

/* Remove what children of a crashed run left in the directory. */
static void remove_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".capture-", 9) != 0) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* --- tracing ----------------------------------------------------------------------------------- */

/* A child span of parent from start_ns to end_ns, named `name`, with the
 * task's identity (t NULL: the coordinator's). */
static void child_span(sl_tracer *tr, const sl_trace_ctx *parent, const char *name,
                       int64_t start_ns, int64_t end_ns, const sl_task *t, uint64_t id,
                       size_t bytes)
{
    sl_span s;
    /* it began before the span could be made */
    sl_span_start_at(tr, &s, name, SL_SPAN_KIND_INTERNAL, parent, start_ns);
    if (sl_span_recording(&s)) {
        sl_span_set_int(&s, "checkpoint.id", (int64_t)id);
        if (t) {
            sl_span_set_str(&s, "sluice.task", t->root->node->name);
            sl_span_set_int(&s, "sluice.instance", t->root->instance);
        }
        if (bytes) sl_span_set_int(&s, "checkpoint.bytes", (int64_t)bytes);
    }
    sl_span_end(&s, end_ns);
}

static size_t capture_bytes(const sli_capture *cap)
{
    size_t n = 0;
    for (int i = 0; i < cap->n_blobs; i++) n += cap->blobs[i].data.len;
    return n;
}

/* End the root span of checkpoint id: ok, or failed with why. */
static void root_end(sl_span *root, uint64_t id, const char *why, uint64_t bytes)
{
    if (sl_span_recording(root)) {
        sl_span_set_int(root, "checkpoint.id", (int64_t)id);
        if (bytes) sl_span_set_int(root, "checkpoint.bytes", (int64_t)bytes);
        sl_span_set_status(root, why ? SL_SPAN_STATUS_ERROR : SL_SPAN_STATUS_OK, why);
    }
    sl_span_end(root, 0); /* nothing when root has no tracer */
}

int sli_coord_barrier(sl_task *t, uint64_t id)
{
    sl_pipeline *p = t->p;
    struct sli_coord *c = p->chk;
    double t0 = sli_clock_mono_s();
    int64_t t0_ns = p->tracer ? sl_trace_now_ns() : 0;
    sli_capture cap = {0};
    int rc = 0;
    int forked = want_fork(c, t) && fork_capture(p, t, id);
    for (int i = 0; i < t->n_insts && !rc; i++) {
        if (forked && forkable(t->insts[i])) continue; /* the child has them */
        rc = capture_instance(p, t->insts[i], id, &cap, 0);
    }
    double stall = (sli_clock_mono_s() - t0) * 1e3;
    int64_t t1_ns = p->tracer ? sl_trace_now_ns() : 0;
    size_t bytes = p->tracer ? capture_bytes(&cap) : 0;
    sl_trace_ctx root = {0};
    pthread_mutex_lock(&c->lock);
    if (!rc && id == c->pend_id) {
        if (capture_move(&c->pend, &cap)) c->pend_abort = 1;
        c->pend_acks++;
        if (stall > c->pend_stall) c->pend_stall = stall;
        root = c->pend_ctx;
    }
    t->chk_acked = id;
    pthread_mutex_unlock(&c->lock);
    if (sl_trace_ctx_valid(&root) && (root.flags & SL_TRACE_FLAG_SAMPLED)) {
        if (t->barrier_ns) child_span(p->tracer, &root, "align", t->barrier_ns, t0_ns, t, id, 0);
        child_span(p->tracer, &root, "snapshot", t0_ns, t1_ns, t, id, bytes);
    }
    t->barrier_ns = 0;
    capture_clear(&cap);
    if (!rc) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    return rc;
}

void sli_coord_task_finished(sl_task *t)
{
    struct sli_coord *c = t->p->chk;
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->any_finished = 1;
    if (c->pend_id && t->chk_acked < c->pend_id) c->pend_abort = 1;
    pthread_mutex_unlock(&c->lock);
}

/* --- writing (coordinator thread) --------------------------------------------------------------- */

static int write_checkpoint(sl_pipeline *p, uint64_t id, sli_capture *cap, char *err, size_t errlen)
{
    struct sli_coord *c = p->chk;
    sli_chk_writer *w = NULL;
    int rc = sli_chk_begin(c->store, id, &w);
    if (rc) goto fail;
    for (int i = 0; i < cap->n_blobs && !rc; i++) {
        chk_blob *b = &cap->blobs[i];
        sl_node *n = &p->nodes[b->node];
        uint32_t lo, hi;
        kg_range(b->inst, n->parallelism, &lo, &hi);
        if (lo > hi) lo = hi = 0;
        rc = sli_chk_add_state(w, n->name, (uint32_t)b->inst, lo, hi, b->data.ptr, b->data.len);
    }
    for (int i = 0; i < cap->n_pos && !rc; i++) {
        chk_pos *e = &cap->pos[i];
        rc = sli_chk_add_position(w, p->nodes[e->node].name, e->split, e->pos.ptr,
                                  (uint32_t)e->pos.len);
    }
    if (rc) {
        snprintf(err, errlen, "%s", sli_chk_store_errmsg(c->store));
        sli_chk_abort(w);
        return rc;
    }
    rc = sli_chk_commit(w); /* frees w */
    if (rc) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "%s", sli_chk_store_errmsg(c->store));
    return rc;
}

/* Sources with a commit hook learn that id is complete, with the positions
 * of their splits in it (each node once, through its first open instance),
 * before the sinks commit. */
static int commit_sources(sl_pipeline *p, uint64_t id, const sli_capture *cap)
{
    for (int i = 0; i < p->n_ctx; i++) {
        struct sl_ctx *x = p->ctxs[i];
        const sl_source *src = x->node->src;
        if (x->node->kind != SL_NODE_SOURCE || !src || src->version < 3 || !src->commit ||
            !x->opened)
            continue;
        int first = 1, node = node_index(p, x->node);
        for (int j = 0; j < i && first; j++)
            if (p->ctxs[j]->node == x->node && p->ctxs[j]->opened) first = 0;
        if (!first) continue;
        int n = 0;
        sl_split_pos *v = calloc((size_t)(cap->n_pos ? cap->n_pos : 1), sizeof(*v));
        if (!v) return sli_pipeline_fail(p, SL_ENOMEM, "out of memory committing a checkpoint");
        for (int k = 0; k < cap->n_pos; k++) {
            const chk_pos *e = &cap->pos[k];
            if (e->node != node) continue;
            v[n].split = (int)e->split;
            sli_source_split_desc(x, (int)e->split, &v[n].desc, &v[n].desc_len);
            v[n].pos = e->pos.ptr;
            v[n].len = e->pos.len;
            n++;
        }
        int rc = src->commit(x, id, v, n);
        free(v);
        if (rc) {
            if (rc > 0) rc = SL_EOPERATOR;
            if (x->err) return x->err;
            return sli_pipeline_fail(
                p, rc, "source '%s' (%s): commit of checkpoint %" PRIu64 " failed: %s",
                x->node->name, src->kind ? src->kind : "?", id, sl_strerror(rc));
        }
    }
    return 0;
}

/* The second phase: every sink instance with the hook commits id. A failure
 * stops the job (a restart rolls the checkpoint forward). */
static int commit_sinks(sl_pipeline *p, uint64_t id)
{
    for (int i = 0; i < p->n_ctx; i++) {
        struct sl_ctx *x = p->ctxs[i];
        const sl_operator *op = x->node->op;
        if (!op || op->version < 3 || !op->commit || !x->opened) continue;
        int rc = op->commit(x, x->self, id);
        if (rc) {
            if (rc > 0) rc = SL_EOPERATOR;
            if (x->err) return x->err; /* sl_ctx_fail recorded the sink's own message */
            return sli_pipeline_fail(
                p, rc, "operator '%s' (%s): commit of checkpoint %" PRIu64 " failed: %s",
                x->node->name, op->kind ? op->kind : "?", id, sl_strerror(rc));
        }
        atomic_fetch_add_explicit(&p->chk->sink_commits, 1, memory_order_relaxed);
    }
    return 0;
}

/* The histograms' upper bounds (the last is +inf). */
static const double hist_ms[SL_CHECKPOINT_BUCKETS] = {1,   5,    10,   50,    100,   250,
                                                      500, 1000, 2500, 10000, 60000, HUGE_VAL};
static const double hist_bytes[SL_CHECKPOINT_BUCKETS] = {1 << 10,
                                                         16 << 10,
                                                         256 << 10,
                                                         1 << 20,
                                                         4 << 20,
                                                         16 << 20,
                                                         64 << 20,
                                                         256 << 20,
                                                         1024.0 * (1 << 20),
                                                         4096.0 * (1 << 20),
                                                         16384.0 * (1 << 20),
                                                         HUGE_VAL};

static void hist_bounds(sl_checkpoint_history *h)
{
    memcpy(h->duration_le_ms, hist_ms, sizeof(hist_ms));
    memcpy(h->bytes_le, hist_bytes, sizeof(hist_bytes));
}

/* Under c->lock: a history entry (the ring keeps the last SL_CHECKPOINT_HISTORY). */
static void hist_add(struct sli_coord *c, uint64_t id, int ok, double dur_ms, double stall_ms,
                     uint64_t bytes, const char *why)
{
    sl_checkpoint_history *h = &c->hist;
    sl_checkpoint_entry *e = &h->entry[c->hist_at];
    c->hist_at = (c->hist_at + 1) % SL_CHECKPOINT_HISTORY;
    if (h->n < SL_CHECKPOINT_HISTORY) h->n++;
    *e = (sl_checkpoint_entry){.id = id,
                               .ok = ok,
                               .time_ms = sli_clock_wall_ms(),
                               .duration_ms = dur_ms,
                               .stall_ms = stall_ms,
                               .bytes = bytes};
    snprintf(e->error, sizeof(e->error), "%s", why ? why : "");
    if (!ok) return;
    for (int i = 0; i < SL_CHECKPOINT_BUCKETS; i++) {
        if (dur_ms <= hist_ms[i]) h->duration_count[i]++;
        if ((double)bytes <= hist_bytes[i]) h->bytes_count[i]++;
    }
    h->duration_sum_ms += dur_ms;
    h->bytes_sum += (double)bytes;
}

static void record_failure(struct sli_coord *c, uint64_t id, const char *why)
{
    pthread_mutex_lock(&c->lock);
    c->failed++;
    snprintf(c->last_error, sizeof(c->last_error), "checkpoint %" PRIu64 " failed: %s", id, why);
    hist_add(c, id, 0, 0, 0, 0, why);
    pthread_mutex_unlock(&c->lock);
}

static void record_success(struct sli_coord *c, uint64_t id, double dur_ms, double stall_ms)
{
    uint64_t bytes = sli_chk_bytes(c->store, id);
    pthread_mutex_lock(&c->lock);
    c->completed++;
    c->last_done = id;
    c->last_bytes = bytes;
    dseries_add(&c->durations, dur_ms);
    dseries_add(&c->stalls, stall_ms);
    hist_add(c, id, 1, dur_ms, stall_ms, bytes, NULL);
    pthread_mutex_unlock(&c->lock);
}

void sl_pipeline_checkpoint_history(const sl_pipeline *p, sl_checkpoint_history *out)
{
    memset(out, 0, sizeof(*out));
    hist_bounds(out);
    struct sli_coord *c = p ? p->chk : NULL;
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    *out = c->hist;
    /* oldest first */
    int first = c->hist.n < SL_CHECKPOINT_HISTORY ? 0 : c->hist_at;
    for (int i = 0; i < c->hist.n; i++)
        out->entry[i] = c->hist.entry[(first + i) % SL_CHECKPOINT_HISTORY];
    pthread_mutex_unlock(&c->lock);
    hist_bounds(out);
}

uint64_t sli_coord_sink_commits(sl_pipeline *p)
{
    return p->chk ? atomic_load_explicit(&p->chk->sink_commits, memory_order_relaxed) : 0;
}

double sli_coord_tick(sl_pipeline *p, double now)
{
    struct sli_coord *c = p->chk;
    if (!c || atomic_load(&p->failed)) return now + 1.0;
    if (c->n_forks) reap_forks(p, 0);
    sli_capture done = {0};
    uint64_t done_id = 0, aborted_id = 0;
    const char *why = NULL;
    double dur = 0, stall = 0;
    sl_span root; /* the ended checkpoint's root span, moved out of c */
    root.tracer = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->pend_id) {
        if (c->pend_abort) {
            aborted_id = c->pend_id; /* a task finished: the final checkpoint covers it */
        } else if (c->pend_fail[0]) {
            aborted_id = c->pend_id;
            why = c->pend_fail;
        } else if (c->pend_acks >= c->pend_need && c->pend_forks_done >= c->pend_forks) {
            done_id = c->pend_id;
            done = c->pend;
            memset(&c->pend, 0, sizeof(c->pend));
            dur = (now - c->pend_t0) * 1e3;
            stall = c->pend_stall;
        } else if ((now - c->pend_t0) * 1e3 > (double)c->conf.timeout_ms) {
            aborted_id = c->pend_id;
            why = "not every task acknowledged it within the checkpoint timeout";
        }
        if (done_id || aborted_id) {
            if (c->pend_span.tracer) root = c->pend_span;
            c->pend_span.tracer = NULL;
            memset(&c->pend_ctx, 0, sizeof(c->pend_ctx));
            capture_clear(&c->pend);
            c->pend_id = 0;
            c->pend_abort = 0;
            c->pend_forks = c->pend_forks_done = 0;
        }
    }
    int start = !c->pend_id && !c->any_finished && now >= c->next_at && !atomic_load(&p->canceled);
    uint64_t new_id = 0;
    if (start) {
        new_id = c->pend_id = ++c->last_id;
        c->pend_t0 = now;
        c->pend_acks = 0;
        c->pend_need = p->n_tasks;
        c->pend_stall = 0;
        c->next_at = now + (double)c->conf.interval_ms / 1e3;
        if (p->tracer) {
            sl_span_start(p->tracer, &c->pend_span, "checkpoint", SL_SPAN_KIND_INTERNAL, NULL);
            c->pend_ctx = sl_span_context(&c->pend_span);
        }
    }
    char why_copy[200] = "";
    if (why) snprintf(why_copy, sizeof(why_copy), "%s", why);
    c->pend_fail[0] = 0;
    pthread_mutex_unlock(&c->lock);
    if (aborted_id) kill_forks(c, aborted_id);
    if (aborted_id && why) record_failure(c, aborted_id, why_copy);
    if (aborted_id)
        root_end(&root, aborted_id,
                 why ? why_copy
                     : "a task finished before acknowledging it (the final checkpoint covers it)",
                 0);
    if (done_id) {
        char err[256] = "";
        int64_t w0 = root.tracer ? sl_trace_now_ns() : 0;
        uint64_t bytes = root.tracer ? capture_bytes(&done) : 0;
        int rc = write_checkpoint(p, done_id, &done, err, sizeof(err));
        double end = sli_clock_mono_s();
        if (rc)
            record_failure(c, done_id, err[0] ? err : sl_strerror(rc));
        else {
            record_success(c, done_id, dur + (end - now) * 1e3, stall);
            if (commit_sources(p, done_id, &done) == 0) commit_sinks(p, done_id);
        }
        if (sl_span_recording(&root)) {
            sl_trace_ctx rctx = sl_span_context(&root);
            child_span(p->tracer, &rctx, "write", w0, sl_trace_now_ns(), NULL, done_id, bytes);
        }
        root_end(&root, done_id, rc ? (err[0] ? err : sl_strerror(rc)) : NULL, bytes);
    }
    capture_clear(&done);
    if (new_id) sli_pipeline_inject_barrier(p, new_id);
    pthread_mutex_lock(&c->lock);
    double next = c->pend_id || c->n_forks ? now + 0.002 : c->next_at;
    pthread_mutex_unlock(&c->lock);
    return next;
}

int sli_coord_final(sl_pipeline *p)
{
    struct sli_coord *c = p->chk;
    if (!c) return 0;
    pthread_mutex_lock(&c->lock);
    capture_clear(&c->pend);
    c->pend_id = 0;
    uint64_t id = ++c->last_id;
    pthread_mutex_unlock(&c->lock);
    kill_forks(c, 0); /* an in-flight checkpoint's children: not needed now */
    reap_forks(p, 1);
    pthread_mutex_lock(&c->lock);
    pthread_mutex_unlock(&c->lock);
    double t0 = sli_clock_mono_s();
    sl_span root;
    sl_span_start(p->tracer, &root, "checkpoint", SL_SPAN_KIND_INTERNAL, NULL);
    sl_span_set_bool(&root, "checkpoint.final", 1);
    sl_trace_ctx rctx = sl_span_context(&root);
    int64_t t0_ns = sl_span_recording(&root) ? sl_trace_now_ns() : 0;
    sli_capture cap = {0};
    int rc = 0;
    for (int i = 0; i < p->n_ctx && !rc; i++) {
        struct sl_ctx *x = p->ctxs[i];
        if (!x->opened) continue;
        rc = capture_instance(p, x, id, &cap, 0);
    }
    uint64_t bytes = capture_bytes(&cap);
    int64_t t1_ns = sl_span_recording(&root) ? sl_trace_now_ns() : 0;
    if (sl_span_recording(&root))
        child_span(p->tracer, &rctx, "snapshot", t0_ns, t1_ns, NULL, id, bytes);
    if (rc) {
        capture_clear(&cap);
        root_end(&root, id, "the final checkpoint could not be taken", 0);
        return sli_pipeline_fail(p, rc, "the final checkpoint %" PRIu64 " could not be taken: %s",
                                 id, p->errmsg[0] ? p->errmsg : sl_strerror(rc));
    }
    double stall = (sli_clock_mono_s() - t0) * 1e3;
    char err[256] = "";
    rc = write_checkpoint(p, id, &cap, err, sizeof(err));
    if (!rc) rc = commit_sources(p, id, &cap) ? -1 : 0;
    capture_clear(&cap);
    if (sl_span_recording(&root))
        child_span(p->tracer, &rctx, "write", t1_ns, sl_trace_now_ns(), NULL, id, bytes);
    if (rc == -1) {
        root_end(&root, id, "a source's commit failed", 0);
        return p->err ? p->err : SL_EOPERATOR;
    }
    if (rc) {
        root_end(&root, id, err[0] ? err : "the final checkpoint could not be written", 0);
        record_failure(c, id, err);
        return sli_pipeline_fail(p, rc,
                                 "the final checkpoint %" PRIu64
                                 " could not be written, so the output since the last "
                                 "checkpoint is not committed: %s",
                                 id, err);
    }
    record_success(c, id, (sli_clock_mono_s() - t0) * 1e3, stall);
    rc = commit_sinks(p, id);
    root_end(&root, id, rc ? "a sink's commit failed" : NULL, bytes);
    return rc;
}

/* --- opening the store and restoring (sl_pipeline_start) ------------------------------------------ */

/* "DIR/chk-ID" (a trailing slash allowed) -> its parent and ID. Returns 0,
 * 1 when the name is not chk-<id>, or SL_ENOMEM. */
static int split_from(const char *from, char **parent, uint64_t *id)
{
    size_t n = strlen(from);
    while (n > 1 && from[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && from[b - 1] != '/') b--;
    const char *base = from + b;
    size_t bl = n - b;
    if (bl < 5 || strncmp(base, "chk-", 4) != 0) return 1;
    uint64_t v = 0;
    for (size_t i = 4; i < bl; i++) {
        if (base[i] < '0' || base[i] > '9' || v > UINT64_MAX / 10 - 1) return 1;
        v = v * 10 + (uint64_t)(base[i] - '0');
    }
    if (!v) return 1;
    *parent = b ? strndup(from, b) : strdup(".");
    if (!*parent) return SL_ENOMEM;
    *id = v;
    return 0;
}

static int open_store(sl_pipeline *p)
{
    struct sli_coord *c = p->chk;
    c->n_nodes = p->n_nodes;
    c->nodes = calloc((size_t)p->n_nodes, sizeof(*c->nodes));
    c->kinds = calloc((size_t)p->n_nodes, sizeof(*c->kinds));
    if (!c->nodes || !c->kinds) return sl_pipeline_error(p, SL_ENOMEM, "out of memory");
    for (int i = 0; i < p->n_nodes; i++) {
        const sl_node *n = &p->nodes[i];
        const char *role = n->kind == SL_NODE_SOURCE ? "source"
                           : n->kind == SL_NODE_SINK ? "sink"
                                                     : "operator";
        size_t len = strlen(role) + strlen(node_kind_word(n)) + 2;
        if (!(c->kinds[i] = malloc(len))) return sl_pipeline_error(p, SL_ENOMEM, "out of memory");
        snprintf(c->kinds[i], len, "%s:%s", role, node_kind_word(n));
        c->nodes[i].name = n->name;
        c->nodes[i].kind = c->kinds[i];
    }
    char err[512];
    int rc = sli_chk_store_open(&c->store, c->dir, c->nodes, (size_t)c->n_nodes, c->conf.keep, err,
                                sizeof(err));
    if (rc) return sl_pipeline_error(p, rc, "checkpoint directory: %s", err);
    uint64_t *ids = NULL;
    size_t n = 0;
    rc = sli_chk_list(c->store, &ids, &n);
    if (rc)
        return sl_pipeline_error(p, rc, "checkpoint directory: %s", sli_chk_store_errmsg(c->store));
    if (n) c->last_id = ids[n - 1];
    free(ids);
    return 0;
}

/* Find the checkpoint to resume from (none: a fresh start). Warnings about
 * checkpoints skipped go to warn. */
static int find_restore(sl_pipeline *p, char *warn, size_t warnlen)
{
    struct sli_coord *c = p->chk;
    int rc;
    if (c->from) {
        char *parent = NULL;
        uint64_t id = 0;
        rc = split_from(c->from, &parent, &id);
        if (rc == SL_ENOMEM) return sl_pipeline_error(p, rc, "out of memory");
        if (rc)
            return sl_pipeline_error(p, SL_EINVAL,
                                     "--from-checkpoint needs a checkpoint directory chk-<id>, "
                                     "not '%s'",
                                     c->from);
        char err[512];
        rc = sli_chk_store_open(&c->from_store, parent, c->nodes, (size_t)c->n_nodes, 1, err,
                                sizeof(err));
        free(parent);
        if (rc) return sl_pipeline_error(p, rc, "checkpoint '%s': %s", c->from, err);
        rc = sli_chk_open(c->from_store, id, &c->restore);
        if (rc)
            return sl_pipeline_error(p, rc, "checkpoint '%s': %s", c->from,
                                     sli_chk_store_errmsg(c->from_store));
    } else {
        rc = sli_chk_open_latest(c->store, &c->restore, warn, warnlen);
        if (rc == SL_ENOENT) return 0;
        if (rc)
            return sl_pipeline_error(p, rc, "checkpoint directory '%s': %s", c->dir,
                                     sli_chk_store_errmsg(c->store));
    }
    c->restored_from = sli_chk_reader_id(c->restore);
    if (c->restored_from > c->last_id) c->last_id = c->restored_from;
    return 0;
}

/* Restore what instance x takes of one old blob; *wm: the blob's watermark
 * (left as it is when the blob has none). */
static int restore_sections(struct sl_ctx *x, const sli_chk_state *st, int take_all_keys,
                            uint32_t lo, uint32_t hi, int whole, int64_t *wm)
{
    const uint8_t *d = st->data;
    uint64_t len = st->len;
    const char *what = x->node->name;
    if (len < BLOB_HDR || memcmp(d, BLOB_MAGIC, 4) != 0 || sli_get_le(d + 4, 2) != 1)
        return sl_ctx_fail(x, SL_ECORRUPT,
                           "checkpoint: the state of '%s' instance %u is not an instance "
                           "snapshot of version 1",
                           what, st->instance);
    uint32_t n_sec = (uint32_t)sli_get_le(d + 8, 4);
    uint64_t pos = BLOB_HDR;
    for (uint32_t s = 0; s < n_sec; s++) {
        if (len - pos < SEC_HDR) goto bad;
        const uint8_t *h = d + pos;
        int kind = h[0];
        uint32_t nl = (uint32_t)sli_get_le(h + 2, 2);
        uint64_t dl = sli_get_le(h + 8, 8);
        if (len - pos - SEC_HDR < nl || len - pos - SEC_HDR - nl < dl) goto bad;
        const char *name = (const char *)h + SEC_HDR;
        const uint8_t *data = h + SEC_HDR + nl;
        pos += SEC_HDR + nl + dl;
        int rc = 0;
        switch (kind) {
        case SEC_STATE: {
            if (!take_all_keys && !whole) break;
            if (dl < 12 || nl == 0 || nl > 255) goto bad;
            char nm[256];
            memcpy(nm, name, nl);
            nm[nl] = 0;
            sl_state *tab = sl_ctx_state(x, nm, (uint32_t)sli_get_le(data + 8, 4));
            if (!tab) return x->err;
            rc = sl_state_restore(tab, data, dl, lo, hi);
            if (rc)
                return sl_ctx_fail(x, rc, "checkpoint: cannot restore state '%s': %s", nm,
                                   sl_strerror(rc));
            break;
        }
        case SEC_TIMERS:
            if (!take_all_keys && !whole) break;
            if (!x->timers && !(x->timers = sli_timers_new()))
                return sl_ctx_fail(x, SL_ENOMEM, "out of memory");
            rc = sli_timers_restore(x->timers, data, dl, lo, hi);
            if (rc)
                return sl_ctx_fail(x, rc, "checkpoint: cannot restore timers: %s", sl_strerror(rc));
            break;
        case SEC_OPERATOR: {
            if (!take_all_keys && !whole) break;
            const sl_operator *op = x->node->op;
            if (!op || !op->restore)
                return sl_ctx_fail(x, SL_EINVAL,
                                   "checkpoint: '%s' has operator state in the checkpoint but "
                                   "no restore hook",
                                   what);
            rc = op->restore(x, x->self, data, dl);
            if (rc)
                return x->err ? x->err
                              : sl_ctx_fail(x, rc < 0 ? rc : SL_EOPERATOR, "restore() failed: %s",
                                            sl_strerror(rc < 0 ? rc : SL_EOPERATOR));
            break;
        }
        case SEC_SPLITS:
            if (x->node->kind != SL_NODE_SOURCE) goto bad;
            rc = sli_source_restore_splits(x, data, dl);
            if (rc) return rc;
            break;
        case SEC_WATERMARK:
            if (dl != 8) goto bad;
            *wm = (int64_t)sli_get_le(data, 8);
            break;
        default: goto bad;
        }
    }
    if (pos != len) goto bad;
    return 0;
bad:
    return sl_ctx_fail(x, SL_ECORRUPT,
                       "checkpoint: the state of '%s' instance %u is malformed (%llu bytes)", what,
                       st->instance, (unsigned long long)len);
}

static int restore_instance(sl_pipeline *p, struct sl_ctx *x)
{
    struct sli_coord *c = p->chk;
    const sli_chk_reader *r = c->restore;
    int q = x->node->parallelism, keyed = node_keyed(x->node);
    int is_src = x->node->kind == SL_NODE_SOURCE;
    uint32_t lo = 0, hi = SL_KEY_GROUPS - 1;
    if (keyed) kg_range(x->instance, q, &lo, &hi);
    size_t ns = sli_chk_reader_nstates(r);
    int64_t floor = INT64_MAX; /* the least watermark of the blobs read */
    for (size_t i = 0; i < ns; i++) {
        const sli_chk_state *st = sli_chk_reader_state_at(r, i);
        if (strcmp(st->node, x->node->name) != 0) continue;
        int whole = !keyed && (int)(st->instance % (uint32_t)q) == x->instance;
        int rc;
        int64_t wm = SL_TIME_MIN;
        if (keyed && lo > hi) continue; /* owns no key group */
        if (is_src)                     /* splits of any old instance may be ours now */
            rc = restore_sections(x, st, 1, 0, SL_KEY_GROUPS - 1, 0, &wm);
        else
            rc = restore_sections(x, st, keyed, lo, hi, whole, &wm);
        if (rc) return rc;
        if ((is_src || keyed || whole) && wm < floor) floor = wm;
    }
    if (floor != INT64_MAX && floor > x->wm) {
        x->wm = floor;
        atomic_store_explicit(&x->pub_wm, floor, memory_order_relaxed);
    }
    if (is_src) {
        size_t np = sli_chk_reader_npositions(r), mine = 0;
        for (size_t i = 0; i < np; i++)
            mine += strcmp(sli_chk_reader_position_at(r, i)->node, x->node->name) == 0;
        if (mine != (size_t)sli_source_n_splits(x))
            return sl_ctx_fail(x, SL_EINVAL,
                               "checkpoint %" PRIu64 " has %zu splits of source '%s' but it has %d "
                               "now (its splits depend on its parallelism or its input changed): "
                               "restore it as it was",
                               c->restored_from, mine, x->node->name, sli_source_n_splits(x));
        for (size_t i = 0; i < np; i++) {
            const sli_chk_position *e = sli_chk_reader_position_at(r, i);
            if (strcmp(e->node, x->node->name) != 0) continue;
            int rc = sli_source_restore_position(x, e->split, e->pos, e->len);
            if (rc < 0) return rc;
        }
    }
    return 0;
}

int sli_coord_restore(sl_pipeline *p)
{
    struct sli_coord *c = p->chk;
    if (!c || !c->restore) return 0;
    double t0 = sli_clock_mono_s();
    int rc;
    for (int i = 0; i < p->n_ctx; i++) {
        struct sl_ctx *x = p->ctxs[i];
        rc = restore_instance(p, x);
        if (rc) {
            if (!p->err) {
                sl_pipeline_error(p, rc, "operator '%s' (%s): cannot restore checkpoint %" PRIu64,
                                  x->node->name, node_kind_word(x->node), c->restored_from);
            }
            return p->err;
        }
    }
    /* A task's watermark starts where its root instance's was. */
    for (int i = 0; i < p->n_tasks; i++) {
        sl_task *t = p->tasks[i];
        if (t->n_in > 0 && t->root->wm > t->wm) t->wm = t->root->wm;
    }
    sli_chk_reader_free(c->restore);
    c->restore = NULL;
    c->restore_ms = (sli_clock_mono_s() - t0) * 1e3;
    return 0;
}

void sli_pipeline_inject_barrier(sl_pipeline *p, uint64_t id)
{
    for (int i = 0; i < p->n_tasks; i++) {
        sl_task *t = p->tasks[i];
        if (t->root->node->kind != SL_NODE_SOURCE) continue;
        /* Raise the requested id (never lower it); the source sends every id
         * up to it, in order. */
        uint64_t cur = atomic_load(&t->inject_barrier);
        while (cur < id && !atomic_compare_exchange_weak(&t->inject_barrier, &cur, id)) {}
        sli_task_wake(t);
    }
}

int sli_coord_prepare(sl_pipeline *p)
{
    struct sli_coord *c = p->chk;
    if (!c) return 0;
    p->chk_barrier = sli_coord_barrier;
    p->chk_finished = sli_coord_task_finished;
    int rc = open_store(p);
    if (!rc) { /* made now (not at the first checkpoint): forked captures write there */
        int mk = sli_fsio_mkdir(c->dir, 0755);
        if (mk && mk != -EEXIST)
            rc = sl_pipeline_error(p, sli_errno_code(-mk),
                                   "cannot make checkpoint directory '%s': %s", c->dir,
                                   strerror(-mk));
    }
    if (!rc) remove_leftovers(c->dir);
    if (!rc) rc = find_restore(p, c->restore_warning, sizeof(c->restore_warning));
    if (rc) return rc;
    size_t wl = strlen(c->restore_warning);
    if (wl && c->restore_warning[wl - 1] == '\n') c->restore_warning[wl - 1] = 0;
    p->chk->next_at = sli_clock_mono_s() + (double)p->chk->conf.interval_ms / 1e3;
    return 0;
}
