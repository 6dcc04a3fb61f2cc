/*
 * engine/job.h - the life of a running pipeline (private to engine/; job.c):
 * start (plan, open instances, scheduler), the coordinator thread (delayed
 * wake-ups, cancellation, failure, end of job), wait, and stop. The public
 * side is sl_pipeline_start/wait/run/cancel (sluice/pipeline.h).
 */
#ifndef SLUICE_ENGINE_JOB_H
#define SLUICE_ENGINE_JOB_H

#include "engine/plan.h"

/* Wake t again after delay_ms (any thread; the coordinator does it). */
void sli_task_wake_later(sl_task *t, double delay_ms);
/* t has sent its end of stream and drained it (its worker). When every task
 * has, the job is done. */
void sli_task_finished(sl_task *t);
/* Ask every source to inject BARRIER(id), and every id before it not yet
 * sent, in order (any thread, while running). Ids start at 1. */
void sli_pipeline_inject_barrier(sl_pipeline *p, uint64_t id);

#endif
