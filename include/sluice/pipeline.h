/*
 * sluice/pipeline.h - building and running a pipeline (public API).
 *
 * A pipeline is a logical graph of named nodes: sources, operators and sinks,
 * connected by streams. Every node has a stable name, unique in the pipeline
 * (a checkpoint finds its state by that name). sl_pipeline_run() expands the
 * graph into a physical plan (each node as `parallelism` instances, forward
 * edges between equal parallelism fused into one task), runs it on a pool of
 * worker threads and returns when every bounded source has ended and its
 * records have reached the sinks, when the job is canceled, or on an error.
 *
 * Building is fluent: each call returns the new stream, or NULL after an
 * error, which the pipeline remembers; calls given a NULL stream do nothing
 * and return NULL, and sl_pipeline_run() then returns that first error with
 * its message in sl_pipeline_errmsg(). So a builder can check once, at the end.
 *
 * Ownership: the pipeline owns every stream handle. The `conf` given to
 * sl_pipeline_source(), sl_stream_apply(), sl_stream_apply_n() and
 * sl_stream_sink() is borrowed (the engine does not know its size): it must
 * stay valid until sl_pipeline_free(); pass sl_pipeline_dup(p, &conf,
 * sizeof conf) to hand over a copy instead. Builders that know their conf
 * (sl_stream_key_by and the bundled operators and connectors) copy it when
 * the node is made, so a conf on the caller's stack is fine there.
 *
 * The plan is made once, by sl_pipeline_explain() or at start; after that
 * the graph is frozen and building calls fail with SL_ESTATE.
 */
#ifndef SLUICE_PIPELINE_H
#define SLUICE_PIPELINE_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>
#include "sluice/operator.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_pipeline sl_pipeline;
typedef struct sl_stream sl_stream;

/* NULL only when out of memory. */
SL_API sl_pipeline *sl_pipeline_new(void);
SL_API void sl_pipeline_free(sl_pipeline *p); /* accepts NULL */

/* Worker threads (default: the number of CPUs) and default parallelism of
 * nodes (default 1). Channel credits: batches in flight per channel (default 8). */
SL_API int sl_pipeline_set_threads(sl_pipeline *p, int threads);
SL_API int sl_pipeline_set_parallelism(sl_pipeline *p, int parallelism);
SL_API int sl_pipeline_set_credits(sl_pipeline *p, int credits);

/* Source nodes: sl_pipeline_source() in sluice/source.h. */
/* An operator node reading `in`, emitting records of out_width bytes. */
SL_API sl_stream *sl_stream_apply(sl_stream *in, const char *name, const sl_operator *op,
                                  void *conf, uint32_t out_width);
/* An operator with several inputs (sl_ctx_input() tells them apart). */
SL_API sl_stream *sl_stream_apply_n(sl_stream *const *in, int n_in, const char *name,
                                    const sl_operator *op, void *conf, uint32_t out_width);
/* A sink: an operator that emits nothing. Returns 0 or the pipeline's error. */
SL_API int sl_stream_sink(sl_stream *in, const char *name, const sl_operator *sink, void *conf);

/* Declare side output `port` (1..) of the node that made s, with records of
 * `width` bytes, and return it as a stream. A new port has role SL_PORT_DATA;
 * a port declared before keeps its role. */
SL_API sl_stream *sl_stream_side(sl_stream *s, int port, uint32_t width);

/* What a port carries. The engine counts the records delivered on LATE and
 * DEAD_LETTER ports (connected or not) into sl_pipeline_stats. */
enum sl_port_role {
    SL_PORT_DATA = 0,       /* results */
    SL_PORT_LATE = 1,       /* records behind the watermark (window late output) */
    SL_PORT_DEAD_LETTER = 2 /* records that could not be handled, with a reason */
};
/* sl_stream_side() with a role (enum sl_port_role). Declaring a port again
 * with another role is an error. */
SL_API sl_stream *sl_stream_side_as(sl_stream *s, int port, uint32_t width, int role);

/* Key the stream: key_fn gives each record's key bytes; their hash travels
 * with the record and decides which instance of the next node gets it.
 * Unless set, its parallelism is its input's, so it runs chained to it. */
SL_API sl_stream *sl_stream_key_by(sl_stream *in, const char *name, sl_key_fn key, void *ud);

/* Settings of the node that made s; each returns s. */
SL_API sl_stream *sl_stream_parallelism(sl_stream *s, int parallelism);
/* The same for any node by name (sinks have no stream handle). */
SL_API int sl_pipeline_set_node_parallelism(sl_pipeline *p, const char *name, int parallelism);
SL_API sl_stream *sl_stream_rebalance(sl_stream *s); /* spread batches round-robin */
SL_API sl_stream *sl_stream_broadcast(sl_stream *s); /* every instance gets every record */

/* Facts about a stream, for operator builders. */
SL_API sl_pipeline *sl_stream_pipeline(const sl_stream *s);
SL_API uint32_t sl_stream_width(const sl_stream *s);
SL_API int sl_stream_keyed(const sl_stream *s);
/* The conf given to the node that made s. */
SL_API void *sl_stream_conf(const sl_stream *s);
/* The same, but only if that node runs operator table `op` (else NULL): how
 * a builder finds the conf of a node it made, e.g. the window's, given its
 * output stream, without trusting an arbitrary conf pointer. */
SL_API void *sl_stream_op_conf(const sl_stream *s, const sl_operator *op);
/* Declare that `out` carries the records of `in` unchanged (a filter), so it
 * keeps in's key. Returns out. */
SL_API sl_stream *sl_stream_keep_key(sl_stream *out, const sl_stream *in);
/* The pipeline takes `ptr` over and free()s it when it is freed (confs that
 * builders allocate). Returns 0, or SL_ENOMEM having freed ptr. */
SL_API int sl_pipeline_own(sl_pipeline *p, void *ptr);
/* A copy of `size` bytes at ptr, owned by the pipeline (freed with it): for
 * confs that must outlive the caller's variables. NULL after an error, which
 * the pipeline records. */
SL_API void *sl_pipeline_dup(sl_pipeline *p, const void *ptr, size_t size);
/* Record a building error (first one wins); returns code. For helpers that
 * build nodes and validate their arguments. */
SL_API int sl_pipeline_error(sl_pipeline *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Running. run = start + wait until done. wait returns SL_EAGAIN when
 * timeout_ms (>= 0) passes first; -1 waits for the end. cancel may be called
 * from a signal handler (or from a source or operator, any thread): sources
 * stop, what is in flight drains to the sinks, but the watermark does NOT
 * advance to +inf as at the end of the input: windows, timers and final
 * aggregates that the input did not complete are not emitted (operators'
 * end() can tell, sl_ctx_end_canceled). A canceled run still returns 0 (no
 * error); sl_pipeline_canceled says whether the cancel cut the input. */
SL_API int sl_pipeline_run(sl_pipeline *p);
SL_API int sl_pipeline_start(sl_pipeline *p);
SL_API int sl_pipeline_wait(sl_pipeline *p, int timeout_ms);
SL_API void sl_pipeline_cancel(sl_pipeline *p);
/* 1 when a cancel stopped some source before the end of its input (so
 * results that needed the rest of it were not emitted), else 0 (a cancel
 * that came after every input had ended cut nothing). Final after wait. */
SL_API int sl_pipeline_canceled(const sl_pipeline *p);

/* Checkpoints (asynchronous barrier snapshots, DESIGN.md "State and
 * checkpoints"). Every interval_ms a barrier enters at every source; each
 * instance snapshots on it (engine keyed state, event-time timers, its
 * snapshot hook; sources their split positions and watermarks); when every
 * instance has, the checkpoint is written to dir/chk-<id>/ (state files, then
 * the manifest, atomically) and the sinks are told to commit. At the end of
 * the input, and on a cancel (a stop with a savepoint), a final checkpoint
 * is taken and committed after the sinks' end(). A start with a checkpoint
 * directory resumes from its latest complete checkpoint (or from `from`):
 * state restored by key group (so the parallelism may differ), sources
 * rewound, sinks rolled forward to it. A checkpoint of another graph is
 * refused with a message naming the difference. */
typedef struct sl_checkpoint_conf {
    const char *dir;     /* required; made if missing */
    int64_t interval_ms; /* > 0; 0 means the default, 1000 */
    int64_t timeout_ms;  /* a checkpoint not acknowledged by then is aborted; 0: 60000 */
    unsigned keep;       /* complete checkpoints kept; 0: 3 */
    const char *from;    /* NULL: latest in dir; else a chk-<id> directory to start from */
    int guarantee;       /* enum sl_guarantee; 0 (NONE) means EXACTLY_ONCE here */
    int capture;         /* enum sl_capture */
} sl_checkpoint_conf;

/* How a task captures its instances' state on a barrier. SYNC: serialised
 * on the task's thread before the barrier passes on (the stall grows with
 * the state). FORK: as Redis's BGSAVE, the task forks; the child, a
 * copy-on-write image of the process at the barrier, serialises the state
 * and exits, while the task goes on at once (the stall is the fork; pages
 * the task then changes are copied by the kernel, up to twice the state's
 * memory while the child runs). Sources and two-phase-commit sinks are
 * always captured in the process. AUTO: FORK for tasks holding at least
 * 65536 keyed entries and timers, SYNC for the others. snapshot() hooks
 * may run in the child, so they must not change the process (only write
 * out); commit-capable sinks' snapshot() always runs in the process.
 * Sanitizer builds with ThreadSanitizer always use SYNC. */
enum sl_capture { SL_CAPTURE_AUTO = 0, SL_CAPTURE_SYNC = 1, SL_CAPTURE_FORK = 2 };
/* Before start. Strings are copied. SL_EINVAL (with a message) for a bad conf. */
SL_API int sl_pipeline_set_checkpoint(sl_pipeline *p, const sl_checkpoint_conf *conf);

typedef struct sl_checkpoint_stats {
    uint64_t completed, failed; /* checkpoints of this run (the final one included) */
    uint64_t restored_from;     /* 0: a fresh start */
    double restore_ms;          /* reading and restoring it, in start */
    uint64_t last_id;           /* last completed */
    uint64_t last_bytes;        /* its size on disk */
    uint64_t forked_captures;   /* task captures done by a forked child (SL_CAPTURE_FORK) */
    /* Over this run's completed checkpoints: barrier injected -> manifest
     * written, and the longest time one task spent on one barrier (the stall:
     * capturing its instances' state before passing the barrier on). */
    double duration_p50_ms, duration_p99_ms, duration_max_ms;
    double stall_p50_ms, stall_p99_ms, stall_max_ms;
    char last_error[256];      /* why the last failed checkpoint failed ("" if none) */
    char restore_warning[512]; /* newer checkpoints skipped as corrupt or incomplete,
                                   one line each ("" if none) */
} sl_checkpoint_stats;
/* Any thread, also while running (then a recent view). */
SL_API void sl_pipeline_checkpoint_stats(const sl_pipeline *p, sl_checkpoint_stats *out);

/* Defined since sl_pipeline_stats has `late` and `dead_letters` (code that
 * must also build against older headers can test it). */
#define SL_PIPELINE_STATS_HAS_DIVERTED 1

typedef struct sl_pipeline_stats {
    uint64_t records_in;   /* emitted by sources on their data port */
    uint64_t records_out;  /* received by sinks */
    uint64_t late;         /* emitted on SL_PORT_LATE ports */
    uint64_t dead_letters; /* emitted on SL_PORT_DEAD_LETTER ports */
    int64_t watermark;     /* lowest input watermark over the sinks */
    double elapsed_s;
} sl_pipeline_stats;
SL_API void sl_pipeline_stats_get(const sl_pipeline *p, sl_pipeline_stats *out);
/* Malformed trace headers that sources ignored, counted by
 * sl_ctx_trace_malformed(): a bad traceparent (the record went on without
 * a trace context) or a bad tracestate beside a good traceparent (the
 * record kept the context, without the state). Any thread. */
SL_API uint64_t sl_pipeline_trace_malformed(const sl_pipeline *p);

/* The message of the last error ("" when none). */
SL_API const char *sl_pipeline_errmsg(const sl_pipeline *p);

/* Description of the physical plan (tasks, chains, edges), for --explain.
 * Builds the plan, which start then uses: the graph is frozen after it. */
SL_API int sl_pipeline_explain(sl_pipeline *p, sl_buf *out);

/* Versions: sluice's, and the allocator actually in use ("jemalloc 5.3.0-..."
 * read through mallctl, or "libc" in sanitizer builds). */
SL_API const char *sl_version(void);
SL_API const char *sl_allocator(void);

#ifdef __cplusplus
}
#endif
#endif
