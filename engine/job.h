/*
 * engine/job.h - the life of a running pipeline (private to engine/; job.c):
 * start (plan, open instances, scheduler), the coordinator thread (delayed
 * wake-ups, cancellation, failure, end of job), wait, and stop. The public
 * side is sl_pipeline_start/wait/run/cancel (sluice/pipeline.h).
 */
#ifndef SLUICE_ENGINE_JOB_H
#define SLUICE_ENGINE_JOB_H

#include "engine/plan.h"

/* (Barriers are injected by the checkpoint coordinator: coord.h.) */

#endif
