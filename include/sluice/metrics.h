/*
 * sluice/metrics.h - what a running pipeline is doing, per node instance and
 * per task (public API): the numbers a metrics system scrapes and a status
 * page draws.
 *
 * Collection costs nothing on the hot path: every instance counts what it
 * takes and hands on in counters of its own, added to once per batch by the
 * one thread that runs its task (a plain load and store, no atomic
 * read-modify-write, no lock), and sl_pipeline_metrics() reads and sums them
 * when asked. A reading is therefore a consistent view of each counter, not
 * of all of them at one instant; counters never go down.
 *
 * What the counters mean, per instance:
 *   records_in   records handed to it (operators, sinks); for a source, the
 *                records it read (= records_out of its data ports)
 *   records_out  records it emitted on its data ports (results)
 *   bytes_in/out the same in payload bytes (fixed width x count, or the
 *                variable-length payloads' bytes)
 *   late         records it emitted on SL_PORT_LATE ports
 *   dead_letters records it emitted on SL_PORT_DEAD_LETTER ports; sources'
 *                dead letters are also counted by reason (sl_metrics_reason)
 *   watermark    the input watermark it has seen (a source: the watermark
 *                it announced); SL_TIME_MIN before the first
 * and per task (a chain of instances sharing one input):
 *   queued/capacity  batches waiting in its input channels / their credits
 *   blocked_s        total time its output waited for credit (backpressure)
 *
 * Ownership: sl_pipeline_metrics() fills *out with arrays it allocates;
 * sl_metrics_clear() frees them. Strings in it (node names, kinds) point
 * into the pipeline and live as long as it does.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdint.h>
#include "sluice/export.h"
#include "sluice/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The partitioning of an edge. */
enum sl_metrics_part {
    SL_METRICS_FORWARD = 0,
    SL_METRICS_HASH = 1,
    SL_METRICS_REBALANCE = 2,
    SL_METRICS_BROADCAST = 3
};

typedef struct sl_metrics_node {
    const char *name;
    const char *kind; /* "source", "operator" or "sink" */
    const char *type; /* the table's kind ("lines", "window", ...); "" if none */
    int parallelism;
    int chained; /* runs inside its (first) input's task */
    int n_inputs;
    int inputs[8];      /* node indexes */
    int input_part[8];  /* enum sl_metrics_part */
    int first_instance; /* its instances are instances[first_instance ..
                           first_instance + parallelism - 1] */
} sl_metrics_node;

typedef struct sl_metrics_instance {
    int node; /* index into nodes */
    int instance;
    int task; /* index into tasks */
    uint64_t records_in, records_out, bytes_in, bytes_out, late, dead_letters;
    int64_t watermark;
} sl_metrics_instance;

typedef struct sl_metrics_task {
    int id;
    int root_instance; /* the instance that reads its channels (or the source) */
    int n_instances;   /* chained instances, root first */
    uint64_t queued, capacity;
    double blocked_s;
} sl_metrics_task;

/* Dead letters of one source instance with one reason. A reason is the text
 * the source gave without its location (what precedes the last ": ",
 * e.g. "line 12: "), with runs of digits written as N, cut at 63 bytes; an
 * instance keeps 16 reasons, the 17th and later count as "other". */
typedef struct sl_metrics_reason {
    int instance; /* index into instances */
    char reason[64];
    uint64_t count;
} sl_metrics_reason;

/* How far a source split is behind the end of its input, as the source
 * reported it (sl_ctx_split_lag): Kafka and broker topic partitions. */
typedef struct sl_metrics_lag {
    int instance; /* index into instances */
    char input[64];
    int32_t partition;
    int64_t lag; /* records */
} sl_metrics_lag;

enum sl_pipeline_state {
    SL_STATE_CREATED = 0,
    SL_STATE_RUNNING = 1,
    SL_STATE_FINISHED = 2,
    SL_STATE_FAILED = 3,
    SL_STATE_CANCELED = 4
};

typedef struct sl_metrics {
    int state; /* enum sl_pipeline_state */
    sl_pipeline_stats totals;
    int checkpoints;       /* 1 when the pipeline takes checkpoints */
    uint64_t sink_commits; /* commit() calls of two-phase-commit sinks that succeeded */
    int n_nodes, n_instances, n_tasks, n_reasons, n_lags;
    sl_metrics_node *nodes;
    sl_metrics_instance *instances;
    sl_metrics_task *tasks;
    sl_metrics_reason *reasons;
    sl_metrics_lag *lags;
} sl_metrics;

/* A reading of p's counters, from any thread, while it runs or after. The
 * plan must exist (after sl_pipeline_start() or sl_pipeline_explain()):
 * SL_ESTATE before. SL_ENOMEM, or 0. */
SL_API int sl_pipeline_metrics(const sl_pipeline *p, sl_metrics *out);
SL_API void sl_metrics_clear(sl_metrics *m); /* frees the arrays; zeroes *m */

/* The checkpoints' history and histograms (the counts and percentiles are in
 * sl_checkpoint_stats). */
#define SL_CHECKPOINT_HISTORY 32
#define SL_CHECKPOINT_BUCKETS 12
typedef struct sl_checkpoint_entry {
    uint64_t id;
    int ok;
    int64_t time_ms;    /* wall clock when it completed or failed (unix ms) */
    double duration_ms; /* barrier injected -> manifest written (0 if failed) */
    double stall_ms;    /* the longest time one task spent on its barrier */
    uint64_t bytes;
    char error[160]; /* why it failed ("" if ok) */
} sl_checkpoint_entry;

typedef struct sl_checkpoint_history {
    int n;                                            /* entries, oldest first */
    sl_checkpoint_entry entry[SL_CHECKPOINT_HISTORY]; /* the last n of this run */
    /* Cumulative histograms over this run's completed checkpoints:
     * count[i] = how many had a value <= le[i] (the last le is +inf). */
    double duration_le_ms[SL_CHECKPOINT_BUCKETS];
    uint64_t duration_count[SL_CHECKPOINT_BUCKETS];
    double duration_sum_ms;
    double bytes_le[SL_CHECKPOINT_BUCKETS];
    uint64_t bytes_count[SL_CHECKPOINT_BUCKETS];
    double bytes_sum;
} sl_checkpoint_history;
/* Any thread. Zeroes *out (with the bucket bounds set) when p has no
 * checkpoints. */
SL_API void sl_pipeline_checkpoint_history(const sl_pipeline *p, sl_checkpoint_history *out);

#ifdef __cplusplus
}
#endif
#endif
