/*
 * examples/jobs_saga.h - the bundled job `saga` as a function, for the CLI
 * (`sluice run saga`, examples/job_saga.c parses the options) and for
 * `sluice bench saga` (bench/bench_saga.c runs it without outcome lines).
 *
 * The job: an order workflow (reserve inventory -> charge payment -> ship)
 * orchestrated by the saga operator (sluice/saga.h) in one pipeline, against
 * simulated participants (inventory, payments, shipping) in a second
 * pipeline of the same process; the two talk only through topics of the
 * built-in broker. examples/job_saga.c's file comment draws the graph, the
 * records and the fault model.
 */
#ifndef SLUICE_EXAMPLES_JOBS_SAGA_H
#define SLUICE_EXAMPLES_JOBS_SAGA_H

#include <stdint.h>
#include "jobs.h"

typedef struct saga_opts {
    long long orders;    /* --orders N: order ids 1..N */
    double fail_rate;    /* --fail-rate F: share of commands a participant fails */
    double timeout_rate; /* --timeout-rate T: share it stays silent on */
    uint64_t seed;       /* --seed S: decides every fault (with order, step, attempt) */
    const char *out;     /* --out FILE; NULL: standard output; "" : no outcome lines */
    const char *dir;     /* --dir: broker directory; NULL: see job_saga.c */
    int quiet;           /* no ledger and check lines (the bench prints its own) */
    int probe;           /* measure the time from the last reply read to the outcome */
} saga_opts;

typedef struct saga_result {
    long long sagas, completed, compensated, failed, stuck;
    long long diverted; /* replies and starts that changed no saga (stale, duplicates) */
    int consistent;     /* the ledgers passed the check */
    double seconds;     /* wall time from the start of the pipelines to the last outcome */
    /* With probe: microseconds from reading a saga's last reply off the
     * replies topic to its outcome reaching the outcomes node, over the
     * sagas that ended on a reply (not on a timeout); -1 without. */
    double lat_p50_us, lat_p99_us, lat_max_us;
    long long lat_n;
    uint64_t resumed_from; /* orchestrator's checkpoint id resumed from; 0: fresh */
    long long restored;    /* sagas that had ended before it (not counted in seconds) */
} saga_result;

/* Run the job (both pipelines) with o and the common options c (threads,
 * parallelism, checkpoints). Prints the outcome lines, the ledgers and the
 * check line unless told not to, errors as "sluice CMD: ..." on stderr.
 * Returns the exit status: 0 when the check line says consistent with no
 * saga failed or stuck, 1 otherwise or on a runtime failure. res may be
 * NULL. */
int jobs_saga_run(const char *cmd, const saga_opts *o, const jobs_common *c, saga_result *res);

#endif
