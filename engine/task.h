/*
 * engine/task.h - what a task does when a worker activates it, and the
 * batches of the current thread (private to engine/; task.c, source.c).
 */
#ifndef SLUICE_ENGINE_TASK_H
#define SLUICE_ENGINE_TASK_H

#include <stdint.h>
#include "engine/plan.h"
#include "engine/pool.h"
#include "engine/sched.h"

/* Batches for the current thread: its worker's cache, else the depot. */
static inline sl_batch *sli_batch_get(sl_pipeline *p, uint32_t width)
{
    return sli_pool_get(&p->pool, sli_sched_cache(), width);
}
static inline void sli_batch_put(sl_pipeline *p, sl_batch *b)
{
    sli_pool_put(&p->pool, sli_sched_cache(), b);
}

/* Runs on a worker, inside the task's activation (the scheduler calls it).
 * Returns 1 when the task should be activated again at once (its quantum ran
 * out). */
int sli_task_activate(sl_task *t);
/* Time task t has waited for credit, ended spells and the one going on; for
 * metrics readers on any thread (never decreases between two calls). */
uint64_t sli_task_blocked_ns(sl_task *t);
/* For the source layer (source.c): send a watermark / idleness change from
 * source instance c downstream, after the data emitted before it. */
int sli_source_send_watermark(struct sl_ctx *c, int64_t wm);
int sli_source_send_idle(struct sl_ctx *c, int idle);
/* Send the partly filled output batches of c (inside its task's activation). */
int sli_ctx_flush_all(struct sl_ctx *c);

#endif
