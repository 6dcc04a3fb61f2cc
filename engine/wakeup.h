/*
 * engine/wakeup.h - delayed wake-ups and the end of tasks (private to
 * engine/; wakeup.c). Tasks and contexts call the first two from their
 * worker; the coordinator (job.c) calls sli_wakeups_fire.
 */
#ifndef SLUICE_ENGINE_WAKEUP_H
#define SLUICE_ENGINE_WAKEUP_H

#include "engine/plan.h"

/* Wake t again after delay_ms (any thread; the coordinator does it). */
void sli_task_wake_later(sl_task *t, double delay_ms);
/* t has sent its end of stream and drained it (its worker). When every task
 * has, the job is done. */
void sli_task_finished(sl_task *t);
/* The coordinator, holding p->lock: wake every task whose delayed wake-up is
 * due at `now` (the lock is let go around each wake), and return the
 * earliest due time left, or `next` if that is earlier. */
double sli_wakeups_fire(sl_pipeline *p, double now, double next);

#endif
