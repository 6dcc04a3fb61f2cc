/*
 * engine/wakeup.c - delayed wake-ups and the end of tasks: what a running
 * task asks of the coordinator thread (job.c), kept below both so that
 * tasks never call up into the job.
 *
 * A delayed wake-up (a source that said WAIT, a processing-time timer) is
 * an entry (due time, task) in the pipeline's unsorted delayed array; there
 * are at most a few per task. The coordinator sleeps on p->cond until the
 * earliest is due and fires the due ones with sli_wakeups_fire(). A task
 * that has finished bumps p->tasks_done; the last one wakes the coordinator.
 *
 * Locks: p->lock guards the delayed array; p->cond (monotonic clock)
 * signals a change. Due times are engine/base/clock.h's monotonic seconds.
 */
#include "engine/wakeup.h"
#include <stdlib.h>
#include "engine/base/clock.h"
#include "engine/sched.h"

void sli_task_wake_later(sl_task *t, double delay_ms)
{
    sl_pipeline *p = t->p;
    pthread_mutex_lock(&p->lock);
    if (p->n_delayed == p->cap_delayed) {
        int cap = p->cap_delayed ? p->cap_delayed * 2 : 16;
        void *n = realloc(p->delayed, (size_t)cap * sizeof(*p->delayed));
        if (!n) {
            pthread_mutex_unlock(&p->lock);
            sli_task_wake(t); /* no room to wait: poll again now */
            return;
        }
        p->delayed = n;
        p->cap_delayed = cap;
    }
    p->delayed[p->n_delayed].at = sli_clock_mono_s() + delay_ms / 1000.0;
    p->delayed[p->n_delayed].t = t;
    p->n_delayed++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void sli_task_finished(sl_task *t)
{
    sl_pipeline *p = t->p;
    if (atomic_fetch_add(&p->tasks_done, 1) + 1 == p->n_tasks) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
}

double sli_wakeups_fire(sl_pipeline *p, double now, double next)
{
    for (int i = 0; i < p->n_delayed;) {
        if (p->delayed[i].at <= now) {
            sl_task *t = p->delayed[i].t;
            p->delayed[i] = p->delayed[--p->n_delayed];
            pthread_mutex_unlock(&p->lock);
            sli_task_wake(t);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (p->delayed[i].at < next) next = p->delayed[i].at;
        i++;
    }
    return next;
}
