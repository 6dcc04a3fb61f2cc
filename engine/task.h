/*
 * engine/task.h - what a task does when a worker activates it, and the
 * operator-facing calls that move records (private to engine/; task.c).
 */
#ifndef SLUICE_ENGINE_TASK_H
#define SLUICE_ENGINE_TASK_H

#include <stdint.h>
#include "engine/plan.h"

/* Runs on a worker, inside the task's activation (the scheduler calls it).
 * Returns 1 when the task should be activated again at once (its quantum ran
 * out). */
int sli_task_activate(sl_task *t);
/* Send the partly filled output batches of c (inside its task's activation). */
int sli_ctx_flush_all(struct sl_ctx *c);

#endif
