/*
 * examples/jobs_trace.h - the trace-collector job's pieces, shared with the
 * benchmark that runs its pipeline (bench trace). The job and its record
 * layouts are described in examples/job_trace_collector.c.
 *
 * Public API only (<sluice/sluice.h>); names carry the jobs_ / tc_ prefix.
 */
#ifndef SLUICE_EXAMPLES_JOBS_TRACE_H
#define SLUICE_EXAMPLES_JOBS_TRACE_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sluice/sluice.h>
#include "jobs.h"
#include "jobs_window.h"

/* One run of the job: its options, and the counts the run leaves. The
 * atomics are written by the assembler instances; stats and spans by the
 * single "spans" instance; read them after the run. */
typedef struct tc_job {
    /* options */
    const char *input, *topic, *out, *late_out;
    const jobs_topics *tp;
    int64_t gap, delay, wm_step; /* ms */
    int keep_errors, slower_set;
    uint64_t slower_ns;
    double sample_rate; /* --sample-rate, by sl_trace_should_sample's rule */
    int parallelism;
    /* sinks' confs (live as long as the pipeline) */
    sl_write_conf oc, lc;
    jobs_deadletters dl;
    /* results */
    sl_state *stats; /* (service, name) -> latencies, counts */
    uint64_t spans;  /* valid spans read */
    _Atomic uint64_t traces, kept_errors, kept_slow, kept_sample, kept_spans, orphans, late,
        in_traces;
    _Atomic uint64_t in_flight, peak_in_flight; /* traces */
    _Atomic uint64_t held, peak_held;           /* bytes of their span buffers */
} tc_job;

/* A job with the defaults (gap 5 s, sample rate 1), or NULL when out of
 * memory; jobs_trace_free() releases it (NULL accepted). */
tc_job *jobs_trace_new(void);
void jobs_trace_free(tc_job *j);
/* The job's graph in p (j must outlive p's run). */
int jobs_trace_build(sl_pipeline *p, tc_job *j);
/* The statistics table and the summary lines, to f. 0 or SL_ENOMEM. */
int jobs_trace_report(tc_job *j, FILE *f);
/* The line parser of the source (sl_line_parse_fn). */
int jobs_trace_parse(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                     const char **reason, void *ud);

#endif
