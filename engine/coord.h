/*
 * engine/coord.h - the checkpoint coordinator's entry points for the rest of
 * the engine (private). engine/coord.c explains the protocol.
 *
 * Threads: prepare and restore run in sl_pipeline_start (user's thread,
 * before any worker); barrier and task_finished on the task's worker; tick
 * and final on the coordinator thread; free with the pipeline.
 */
#ifndef SLUICE_ENGINE_COORD_H
#define SLUICE_ENGINE_COORD_H

#include <stdint.h>
#include "engine/plan.h"

typedef struct sli_capture sli_capture;

/* Open the checkpoint directory and find the checkpoint to resume from
 * (before the instances open: they may ask sl_ctx_restored_from). */
int sli_coord_prepare(sl_pipeline *p);
/* Restore every instance from it (after they opened). */
int sli_coord_restore(sl_pipeline *p);
/* The task side (task.c calls them through p->chk_barrier and
 * p->chk_finished, which prepare sets, so that the task loop does not
 * depend on the coordinator): task t's instances capture their state for
 * checkpoint id and it acks (on the aligned barrier, before it is passed
 * on); t finished, so a checkpoint it has not acked cannot complete. */
int sli_coord_barrier(sl_task *t, uint64_t id);
void sli_coord_task_finished(sl_task *t);
/* Start, complete or abort checkpoints; returns when to be called next
 * (monotonic seconds). */
double sli_coord_tick(sl_pipeline *p, double now);
/* Every task finished: take, write and commit the final checkpoint. */
int sli_coord_final(sl_pipeline *p);
void sli_coord_free(sl_pipeline *p);
/* Successful commit() calls of two-phase-commit sinks (metrics); any thread. */
uint64_t sli_coord_sink_commits(sl_pipeline *p);
/* Ask every source to inject BARRIER(id), and every id before it not yet
 * sent, in order (any thread, while running). Ids start at 1. */
void sli_pipeline_inject_barrier(sl_pipeline *p, uint64_t id);

#endif
