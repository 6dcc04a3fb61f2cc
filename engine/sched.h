/*
 * engine/sched.h - the scheduler: worker threads, their work-stealing deques,
 * parking, and the task state machine (private to engine/).
 *
 * Task states (atomic, per task; the scheduler is their only writer):
 *
 *   IDLE --wake--> QUEUED --worker takes it--> RUNNING --done--> IDLE
 *                                               |  ^
 *                                         wake  v  | (after the activation:
 *                                            NOTIFIED   queued again)
 *
 * The scheduler knows a task only through its state word, its pipeline and
 * the activate function it is given; it calls nothing above it (job.c starts
 * and stops it, task.c and wakeup.c wake tasks).
 */
#ifndef SLUICE_ENGINE_SCHED_H
#define SLUICE_ENGINE_SCHED_H

#include "engine/pool.h"

struct sl_task;
struct sl_pipeline;
typedef struct sl_sched sl_sched;

enum sl_task_state {
    SL_TASK_IDLE = 0,
    SL_TASK_QUEUED = 1,
    SL_TASK_RUNNING = 2,
    SL_TASK_NOTIFIED = 3
};

/* A scheduler of `threads` workers for the pipeline's tasks (not started),
 * which runs a task by calling activate(t) (task.c's sli_task_activate: it
 * returns 1 when the task should run again at once). 0 or SL_ENOMEM; the
 * caller owns *out (sli_sched_free). */
int sli_sched_new(sl_sched **out, struct sl_pipeline *p, int threads,
                  int (*activate)(struct sl_task *t));
/* Queue every task of the pipeline once (before sli_sched_start): sources
 * begin polling, the others look at their empty inputs and go idle. */
void sli_sched_queue_all(sl_sched *s);
/* Start the worker threads. 0, or SL_ENOMEM with no thread left running. */
int sli_sched_start(sl_sched *s);
/* Stop and join the workers (any thread but a worker); their pool caches go
 * back to the pipeline's depot. */
void sli_sched_stop(sl_sched *s);
void sli_sched_free(sl_sched *s); /* accepts NULL; the workers must be stopped */

/* Make t runnable (any thread). Starts with a full fence: the caller has just
 * published what t is to see (a channel's tail) and now reads t's state. */
void sli_task_wake(struct sl_task *t);
/* The current thread's batch pool cache (NULL off the workers). */
sl_pool_cache *sli_sched_cache(void);

#endif
