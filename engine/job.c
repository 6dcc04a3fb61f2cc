/*
 * engine/job.c - the life of a running pipeline: start, the coordinator
 * thread, delayed wake-ups, cancel, wait, the end of the job, statistics,
 * and freeing the pipeline.
 *
 * start (user's thread): build the plan if sl_pipeline_explain() has not,
 * open every instance in plan order, make the scheduler (sched.c), queue
 * every task once, start the workers and then the coordinator.
 *
 * The coordinator thread sleeps on p->cond and wakes for delayed task
 * wake-ups (sources that said WAIT, processing-time timers), cancellation,
 * failure and the end of the job; then it stops the workers, closes every
 * instance and sets p->done. wait() joins it.
 *
 * Locks: p->lock guards done and the delayed list; p->cond (made by
 * sli_cond_init_mono in pipeline.c, so a wall-clock step neither stalls nor
 * hurries a timed wait) signals both. Times are engine/base/clock.h's
 * monotonic seconds. Delayed wake-ups are kept in an
 * unsorted array: there are at most a few per task.
 */
#include "engine/job.h"
#include "engine/base/clock.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "engine/plan.h"
#include "engine/sched.h"
#include "engine/spans.h"
#include "engine/task.h"
#include "engine/wakeup.h"
#include "engine/source.h"
#include "engine/coord.h"
#include "sluice/trace.h"

/* The absolute monotonic time `at` (seconds, as sli_clock_mono_s) as a
 * timespec for pthread_cond_timedwait on p->cond (sli_cond_init_mono). */
static struct timespec mono_deadline(double at)
{
    struct timespec ts;
    if (at < 0) at = 0;
    ts.tv_sec = (time_t)at;
    ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void close_instances(sl_pipeline *p)
{
    for (int i = p->n_ctx - 1; i >= 0; i--) {
        struct sl_ctx *c = p->ctxs[i];
        if (!c->opened) continue;
        c->opened = 0;
        if (c->node->kind == SL_NODE_SOURCE)
            sli_source_close(c);
        else if (c->node->op->close)
            c->node->op->close(c->self);
    }
}

static void *coord_main(void *arg)
{
    sl_pipeline *p = arg;
    int cancel_seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (atomic_load(&p->failed) || atomic_load(&p->tasks_done) == p->n_tasks) break;
        if (!cancel_seen && atomic_load(&p->canceled)) {
            cancel_seen = 1; /* sources see the flag on their next poll */
            pthread_mutex_unlock(&p->lock);
            for (int i = 0; i < p->n_tasks; i++)
                if (p->tasks[i]->root->node->kind == SL_NODE_SOURCE) sli_task_wake(p->tasks[i]);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        double now = sli_clock_mono_s();
        double next = sli_wakeups_fire(p, now, now + 0.05); /* tick: notice cancel */
        if (p->chk) {
            pthread_mutex_unlock(&p->lock); /* checkpoint I/O; tasks ack under p->lock */
            double at = sli_coord_tick(p, now);
            pthread_mutex_lock(&p->lock);
            if (at < next) next = at;
            if (atomic_load(&p->failed) || atomic_load(&p->tasks_done) == p->n_tasks) break;
        }
        struct timespec ts = mono_deadline(next);
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);

    sli_sched_stop(p->sched);
    /* Every task finished (or the job failed): the final checkpoint, which
     * also commits what the sinks staged since the last one. */
    if (p->chk && !atomic_load(&p->failed)) sli_coord_final(p);
    close_instances(p);
    p->elapsed = sli_clock_mono_s() - p->t_start;
    pthread_mutex_lock(&p->lock);
    p->done = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static int open_instances(sl_pipeline *p)
{
    for (int i = 0; i < p->n_ctx; i++) {
        struct sl_ctx *c = p->ctxs[i];
        int rc;
        if (c->node->kind == SL_NODE_SOURCE) {
            c->opened = 1; /* close what opened, also after an error */
            rc = sli_source_open(c);
        } else {
            rc = c->node->op->open ? c->node->op->open(c, &c->self) : 0;
        }
        if (rc < 0) {
            if (!p->err) {
                const char *kind = c->node->op ? c->node->op->kind : c->node->src->kind;
                sl_pipeline_error(p, rc, "operator '%s' (%s): cannot open: %s", c->node->name,
                                  kind ? kind : "?", sl_strerror(rc));
            }
            return p->err;
        }
        if (rc > 0) {
            const char *kind = c->node->op ? c->node->op->kind : c->node->src->kind;
            c->opened = 1; /* it did open: close it */
            return sl_pipeline_error(p, SL_EOPERATOR,
                                     "operator '%s' (%s): open() returned %d, expected 0 or a "
                                     "negative SL_E code",
                                     c->node->name, kind ? kind : "?", rc);
        }
        c->opened = 1;
    }
    return 0;
}

int sl_pipeline_start(sl_pipeline *p)
{
    if (!p) return SL_EINVAL;
    if (p->err) return p->err;
    if (p->started) return sl_pipeline_error(p, SL_ESTATE, "the pipeline was started already");
    int rc = p->planned ? 0 : sli_plan_build(p); /* explain() may have built it */
    if (rc) return rc;
    if ((rc = sli_coord_prepare(p)) != 0) return rc;
    if ((rc = open_instances(p)) != 0) goto fail;
    if ((rc = sli_coord_restore(p)) != 0) goto fail;
    sl_sched *s = NULL;
    if (sli_sched_new(&s, p, p->threads, sli_task_activate)) {
        rc = sl_pipeline_error(p, SL_ENOMEM, "out of memory while starting");
        goto fail;
    }
    p->sched = s;
    p->started = 1;
    p->t_start = sli_clock_mono_s();
    atomic_store_explicit(&p->published, 2, memory_order_release);
    sli_sched_queue_all(s);
    if (sli_sched_start(s) != 0 || pthread_create(&p->coord, NULL, coord_main, p) != 0) {
        sli_sched_stop(s);
        sli_sched_free(s);
        p->sched = NULL;
        close_instances(p);
        p->joined = 1;
        return sl_pipeline_error(p, SL_ENOMEM, "cannot start threads");
    }
    return 0;
fail:
    close_instances(p);
    return rc;
}

int sl_pipeline_wait(sl_pipeline *p, int timeout_ms)
{
    if (!p) return SL_EINVAL;
    if (!p->started) return p->err ? p->err : SL_ESTATE;
    if (!p->joined) {
        pthread_mutex_lock(&p->lock);
        if (timeout_ms < 0) {
            while (!p->done) pthread_cond_wait(&p->cond, &p->lock);
        } else {
            struct timespec ts;
            sli_clock_mono_deadline(&ts, timeout_ms);
            while (!p->done)
                if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) != 0) break;
        }
        int done = p->done;
        pthread_mutex_unlock(&p->lock);
        if (!done) return SL_EAGAIN;
        pthread_join(p->coord, NULL);
        sli_sched_free(p->sched);
        p->sched = NULL;
        p->joined = 1;
    }
    return p->err;
}

int sl_pipeline_run(sl_pipeline *p)
{
    int rc = sl_pipeline_start(p);
    if (rc) return rc;
    return sl_pipeline_wait(p, -1);
}

void sl_pipeline_cancel(sl_pipeline *p)
{
    /* Async-signal-safe: one atomic store; the coordinator notices within
     * its tick and stops the sources. */
    if (p) atomic_store(&p->canceled, 1);
}

int sl_pipeline_canceled(const sl_pipeline *p)
{
    return p ? atomic_load(&((sl_pipeline *)p)->cancel_cut) : 0;
}

/* --- freeing ----------------------------------------------------------------- */

/* The end of a pipeline's life: a job still running is canceled and waited
 * for, then the plan, the graph and what the pipeline owns are freed. */
void sl_pipeline_free(sl_pipeline *p)
{
    if (!p) return;
    if (p->started && !p->joined) {
        sl_pipeline_cancel(p);
        sl_pipeline_wait(p, -1);
    }
    sli_plan_free(p);
    sli_coord_free(p);
    sli_spans_free(p->spans, p->tracer); /* ends what is open, so before the tracer */
    sl_tracer_free(p->tracer);
    for (int i = 0; i < p->n_nodes; i++) {
        free(p->nodes[i].name);
        sli_source_node_free(&p->nodes[i]);
    }
    free(p->nodes);
    for (struct sl_stream *s = p->streams, *n; s; s = n) {
        n = s->next_alloc;
        free(s);
    }
    for (int i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    free(p->delayed);
    sli_pool_destroy(&p->pool);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->err_lock);
    free(p);
}

/* --- statistics --------------------------------------------------------------- */

uint64_t sl_pipeline_trace_malformed(const sl_pipeline *p)
{
    return p ? atomic_load_explicit(&((sl_pipeline *)p)->trace_malformed, memory_order_relaxed) : 0;
}

void sli_pipeline_counts(const sl_pipeline *p, sl_pipeline_stats *out)
{
    /* sums of the instances' own counters (plan.h; engine/metrics.c) */
    out->records_in = out->records_out = out->late = out->dead_letters = 0;
    int64_t wm = SL_TIME_MAX;
    int any = 0;
    for (int i = 0; i < p->n_ctx; i++) {
        struct sl_ctx *c = p->ctxs[i];
        if (c->node->kind == SL_NODE_SOURCE)
            out->records_in += atomic_load_explicit(&c->m.out, memory_order_relaxed);
        out->late += atomic_load_explicit(&c->m.late, memory_order_relaxed);
        out->dead_letters += atomic_load_explicit(&c->m.dead, memory_order_relaxed);
        if (!c->is_sink) continue;
        out->records_out += atomic_load_explicit(&c->m.in, memory_order_relaxed);
        int64_t w = atomic_load_explicit(&c->pub_wm, memory_order_relaxed);
        if (w < wm) wm = w;
        any = 1;
    }
    out->watermark = any ? wm : SL_TIME_MIN;
}

void sl_pipeline_stats_get(const sl_pipeline *p, sl_pipeline_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!p) return;
    sli_pipeline_counts(p, out);
    if (p->started) out->elapsed_s = p->joined ? p->elapsed : sli_clock_mono_s() - p->t_start;
}
