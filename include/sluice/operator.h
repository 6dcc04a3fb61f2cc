/*
 * sluice/operator.h - writing operators and sinks (public API; sources:
 * sluice/source.h).
 *
 * An operator, a source or a sink is a versioned function table that the
 * engine calls; the engine knows none of them by name. Each parallel instance
 * gets its own `self` (made by open) and its own context `sl_ctx`, through
 * which it emits records, reads keys, owns keyed state, sets timers and
 * reports failures. All callbacks of one instance run on one worker thread at
 * a time (never concurrently), so an instance needs no locks of its own.
 *
 * Records arrive as whole batches (sluice/batch.h). An operator emits with
 * sl_emit() (reserve room for one record in the current output batch) or
 * hands an input batch on unchanged or edited in place with sl_forward(),
 * which costs nothing: chained operators receive it by function call.
 *
 * Control messages (watermarks, barriers, end of stream) travel in-band with
 * the data; the engine turns them into the watermark, snapshot and end
 * callbacks below and forwards them itself.
 *
 * Return values: open, process, watermark, timer, end and proc_timer return
 * 0 on success or a negative SL_E... code to fail the job (with
 * sl_ctx_fail() for a message). Any positive value is a bug in the operator
 * and fails the job too: "operator 'X' (kind): process() returned 3,
 * expected 0 or a negative SL_E code". (A source's poll returns an
 * sl_poll_result, >= 0, or a negative code.)
 */
#ifndef SLUICE_OPERATOR_H
#define SLUICE_OPERATOR_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>
#include "sluice/batch.h"
#include "sluice/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_ctx sl_ctx;     /* one per operator instance; engine-owned */
typedef struct sl_state sl_state; /* engine-owned keyed state (sluice/state.h) */

/* A growable byte buffer (snapshots, formatting). Zero-initialise to start;
 * sl_buf_free() releases it. */
typedef struct sl_buf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} sl_buf;
SL_API int sl_buf_append(sl_buf *b, const void *data, size_t len);
SL_API int sl_buf_printf(sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
SL_API int sl_buf_reserve(sl_buf *b, size_t extra);
SL_API void sl_buf_free(sl_buf *b);

/* Key bytes of a record (points into the payload, or static memory). */
typedef sl_bytes (*sl_key_fn)(const void *payload, uint32_t len, void *ud);

/* An event-time timer as given back to the timer callback. */
typedef struct sl_timer {
    int64_t ts;    /* fires when the watermark reaches ts */
    uint64_t hash; /* key hash */
    const void *key;
    uint32_t key_len;
} sl_timer;

/* Version 2 added proc_timer, version 3 commit. The engine accepts tables of
 * version 1 (which end at close), 2 (which end at proc_timer) and 3. */
#define SL_OPERATOR_VERSION 3

typedef struct sl_operator {
    int version;      /* SL_OPERATOR_VERSION */
    const char *kind; /* short word used in messages ("filter", "window") */
    /* Make one instance. conf is sl_ctx_conf(ctx). May leave *self NULL. */
    int (*open)(sl_ctx *ctx, void **self);
    /* Records of input sl_ctx_input(ctx). The batch is the engine's: read it,
     * edit it in place, or hand it on with sl_forward(). Required. */
    int (*process)(sl_ctx *ctx, void *self, sl_batch *in);
    /* The input watermark advanced to wm (timers up to wm have fired). The
     * engine forwards the watermark after this returns. Optional. */
    int (*watermark)(sl_ctx *ctx, void *self, int64_t wm);
    /* An event-time timer set with sl_ctx_timer() fired. Optional. */
    int (*timer)(sl_ctx *ctx, void *self, const sl_timer *t);
    /* Every input has ended; emit what is left. Optional. */
    int (*end)(sl_ctx *ctx, void *self);
    /* Write / read the instance's own state (engine-owned keyed state is
     * snapshotted by the engine). Optional. */
    int (*snapshot)(sl_ctx *ctx, void *self, sl_buf *out);
    int (*restore)(sl_ctx *ctx, void *self, const void *data, size_t len);
    /* Free self. Called once for every successful open, also after errors. */
    void (*close)(void *self);
    /* Version 2: a processing-time timer set with sl_ctx_proc_timer() is due
     * (t->ts is its due time in wall-clock ms). Optional. */
    int (*proc_timer)(sl_ctx *ctx, void *self, const sl_timer *t);
    /* Version 3: the second phase of a two-phase-commit sink (exactly-once).
     * With checkpoints on, snapshot() on checkpoint n's barrier is the
     * pre-commit: the instance closes the output it took since the previous
     * barrier (staged, not yet visible) and describes what it staged in its
     * snapshot. Once checkpoint n is complete (its manifest is on disk),
     * commit(ctx, self, n) makes visible everything staged up to n. It runs
     * on the job's coordinator thread, possibly while process() of the same
     * instance runs on a worker: it may only touch what snapshot() closed,
     * under the instance's own lock. Commits come in increasing order; an id
     * may be skipped (a later commit covers it). After the input ends (or a
     * stop with a savepoint) the engine takes a final checkpoint and commits
     * it, after end() and with no worker running.
     * On a restart, restore() gets the snapshot of the checkpoint the job
     * resumes from (sl_ctx_restored_from()), before any record: it must roll
     * forward what that snapshot staged (idempotently: it may have been
     * committed already, in part or whole) and discard anything staged after
     * it. Optional; for sinks only. */
    int (*commit)(sl_ctx *ctx, void *self, uint64_t checkpoint_id);
} sl_operator;

/* --- emitting ------------------------------------------------------------ */

/* Reserve one record on output port 0 and return its payload (len bytes; for
 * fixed-width outputs len must equal the width), or NULL after a failure that
 * the context has recorded (return sl_ctx_error(ctx) then). */
SL_API void *sl_emit(sl_ctx *ctx, int64_t ts, uint64_t hash, uint32_t len);
/* Same on a side output port (1..): late records, dead letters. */
SL_API void *sl_emit_port(sl_ctx *ctx, int port, int64_t ts, uint64_t hash, uint32_t len);
/* The current output batch of `port`, with room for at least one more record
 * (a full one is sent on first), for code that fills columns directly:
 * sl_batch_reserve()/sl_batch_push(), or for fixed widths write record
 * b->count (payload, ts, hash) and increment count. NULL after a failure. */
SL_API sl_batch *sl_out_batch(sl_ctx *ctx, int port);
/* Emit a copy of payload. Returns 0 or a negative code. */
SL_API int sl_emit_copy(sl_ctx *ctx, int64_t ts, uint64_t hash, const void *payload, uint32_t len);
/* Hand the input batch `in` on to port 0 as it is (zero copy). The engine owns
 * it afterwards: do not touch it again. Its width must be the output width. */
SL_API int sl_forward(sl_ctx *ctx, sl_batch *in);

/* --- trace context (sluice/tracectx.h, the batch's trace column) ---------- */

/* The records this instance emits from now on (sl_emit, sl_emit_port,
 * sl_emit_copy) carry the trace context *tc, copied at each emit; tc is
 * borrowed until then. NULL, or a tc without a trace id: they carry none
 * (the default). The engine clears it when the callback that set it
 * returns. A source's reader sets it to the context it read with the
 * message; flat_map sets it to each input record's, so every output of a
 * flat_map callback carries its input's context. Records written into
 * sl_out_batch() columns directly carry none (sl_batch_set_trace for them). */
SL_API void sl_ctx_set_trace(sl_ctx *ctx, const sl_trace_ctx *tc);
/* sl_emit() of a record that carries record i of batch `in`'s trace context
 * (none if it has none): for operators that make new records from input
 * records. */
SL_API void *sl_emit_from(sl_ctx *ctx, const sl_batch *in, uint32_t i, int64_t ts, uint64_t hash,
                          uint32_t len);
/* Count one malformed trace header that a source ignored (the record goes
 * on without a context); sl_pipeline_trace_malformed() reads the count. */
SL_API void sl_ctx_trace_malformed(sl_ctx *ctx);
/* An operator that drops a record carrying context *tc (a filter) says so:
 * the span a trace point opened for the record (sl_stream_trace) ends here.
 * Records of a batch the operator does not hand on need no call: the
 * engine ends their spans when process() returns. */
SL_API void sl_ctx_trace_dropped(sl_ctx *ctx, const sl_trace_ctx *tc);

/* --- context ------------------------------------------------------------- */

SL_API const char *sl_ctx_name(const sl_ctx *ctx); /* node name */
SL_API void *sl_ctx_conf(const sl_ctx *ctx);       /* conf given when the node was made */
SL_API int sl_ctx_instance(const sl_ctx *ctx);     /* 0 .. parallelism-1 */
SL_API int sl_ctx_parallelism(const sl_ctx *ctx);
/* The pipeline the instance runs in (for connectors that pair a source and a
 * sink of one pipeline, e.g. offsets sent in a sink's transaction). */
SL_API struct sl_pipeline *sl_ctx_pipeline(const sl_ctx *ctx);
SL_API int sl_ctx_input(const sl_ctx *ctx); /* logical input of the batch being processed */
SL_API int64_t
sl_ctx_current_watermark(const sl_ctx *ctx); /* input watermark, SL_TIME_MIN at start */
/* 1 while every input of the instance is idle (its sources had nothing for
 * their idle_ms, sluice/source.h): the watermark holds but says nothing
 * about what comes; 0 otherwise. For operators that forward watermarks
 * beyond the pipeline (a Kafka sink into a repartition topic). */
SL_API int sl_ctx_input_idle(const sl_ctx *ctx);
SL_API uint32_t sl_ctx_out_width(const sl_ctx *ctx, int port);
SL_API int sl_ctx_canceled(const sl_ctx *ctx); /* sources: stop soon (job canceled) */
/* In end(): 1 when the input ended because the job was canceled (the
 * watermark did not reach +inf: what the input did not complete must not be
 * emitted as if complete), 0 when the whole input was seen. */
SL_API int sl_ctx_end_canceled(const sl_ctx *ctx);

/* Delivery guarantees of a job's sinks (sl_pipeline_set_checkpoint). */
enum sl_guarantee {
    SL_GUARANTEE_NONE = 0,          /* output as it comes; nothing replayed */
    SL_GUARANTEE_AT_LEAST_ONCE = 1, /* output as it comes; a restart replays */
    SL_GUARANTEE_EXACTLY_ONCE = 2   /* output staged per checkpoint, visible on commit */
};
/* The job's guarantee (enum sl_guarantee): SL_GUARANTEE_NONE without
 * checkpoints. Valid from open() on. */
SL_API int sl_ctx_guarantee(const sl_ctx *ctx);
/* Id of the checkpoint this run resumed from (its restore() calls come right
 * after open()), or 0 for a fresh start. Valid from open() on. */
SL_API uint64_t sl_ctx_restored_from(const sl_ctx *ctx);
/* Inside snapshot() (and a source's position() at a barrier): the id of the checkpoint being taken (ids grow by one
 * per barrier; an aborted checkpoint's id is never committed, a later commit
 * covers what was staged under it). 0 outside snapshot(). */
SL_API uint64_t sl_ctx_checkpoint_id(const sl_ctx *ctx);

/* Key bytes of record i of a keyed input (computed by the key_by's key
 * function; points into the record's payload or a per-context buffer valid
 * until the next call). */
SL_API sl_bytes sl_ctx_key(sl_ctx *ctx, const sl_batch *b, uint32_t i);
/* The key function of the current input (for loops over a batch: fetch it
 * once, call it per record). For an unkeyed input it returns the whole
 * record as the key. */
SL_API sl_key_fn sl_ctx_key_fn(sl_ctx *ctx, void **ud);

/* Engine-owned keyed state with `value_size`-byte values, one table per
 * (instance, name); the engine snapshots and restores it with the operator. */
SL_API sl_state *sl_ctx_state(sl_ctx *ctx, const char *name, uint32_t value_size);
/* The same for a table whose values the engine must not copy as they are
 * (they hold pointers): it is left out of the engine's snapshot, and the
 * operator's own snapshot / restore hooks must carry what it holds. */
SL_API sl_state *sl_ctx_state_unmanaged(sl_ctx *ctx, const char *name, uint32_t value_size);

/* Register an event-time timer for key (hash, key): timer() is called once
 * the watermark reaches ts. Setting the same (key, ts) twice fires once. */
SL_API int sl_ctx_timer(sl_ctx *ctx, int64_t ts, uint64_t hash, const void *key, uint32_t key_len);
/* Delete the event-time timer (key, ts) so that it does not fire. Returns 1
 * if it was set, 0 if no such timer was pending, or a negative code. */
SL_API int sl_ctx_timer_delete(sl_ctx *ctx, int64_t ts, uint64_t hash, const void *key,
                               uint32_t key_len);

/* Register a processing-time timer for key (hash, key): proc_timer() is
 * called once the wall clock (sl_clock_ms) reaches due_ms, between batches
 * on the instance's worker, never at the same time as another callback of
 * the instance. The same (key, due_ms) twice fires once. Timers still
 * pending when the input ends are dropped (as in Flink). */
SL_API int sl_ctx_proc_timer(sl_ctx *ctx, int64_t due_ms, uint64_t hash, const void *key,
                             uint32_t key_len);
/* The same for a processing-time timer. */
SL_API int sl_ctx_proc_timer_delete(sl_ctx *ctx, int64_t due_ms, uint64_t hash, const void *key,
                                    uint32_t key_len);
/* Wall-clock time, ms since the Unix epoch (the time of processing-time timers). */
SL_API int64_t sl_clock_ms(void);

/* Record a failure: the job stops with "operator 'NAME' (KIND): message" and a
 * non-zero exit. Returns code, so `return sl_ctx_fail(ctx, SL_EINVAL, ...)`. */
SL_API int sl_ctx_fail(sl_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
SL_API int sl_ctx_error(const sl_ctx *ctx); /* the recorded failure code, or 0 */

#ifdef __cplusplus
}
#endif
#endif
