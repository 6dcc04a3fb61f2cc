/*
 * sluice/join.h - keyed joins of two streams in event time (public API).
 *
 * Both inputs are keyed (sl_stream_key_by) by key functions that give the
 * same bytes for records that should meet: records of one key reach one
 * instance of the join. Joins are inner joins, with Apache Flink's
 * semantics:
 *
 *  - window join (sl_join_window): the window conf of sluice/window.h
 *    (tumbling, sliding with slide <= size, session). When a window fires
 *    (the watermark reaches end - 1), every pair (left, right) of its
 *    records with equal keys is handed to the join function, with event
 *    time end - 1. Session windows are formed over the records of both
 *    inputs together: a record at t opens [t, t + gap) and windows that
 *    overlap or touch merge. A window's records are dropped once it fired.
 *  - interval join (sl_join_interval): a pair (l, r) with equal keys and
 *    l.ts + lower <= r.ts <= l.ts + upper is handed over as soon as its
 *    second record arrives, with event time max(l.ts, r.ts). A left record
 *    is kept until the watermark reaches l.ts + upper, a right one until it
 *    reaches r.ts - lower: no record that can still arrive in time matches
 *    it afterwards.
 *
 * Late records. The watermark wm says no record at or before wm will come.
 * A record is late when nothing it could still join is left: for a window
 * join when every window it belongs to has fired (for sessions: the merged
 * window it would make), for an interval join when ts <= wm. A late
 * record joins nothing and goes unchanged, with its trace context, to side
 * output port 1 (left input) or 2 (right input), sl_stream_join_late(); the
 * engine counts it in sl_pipeline_stats.late whether the port is connected
 * or not. Event time is any int64: 0 and negative times are ordinary.
 *
 * State. An instance keeps the records of each key it has not dropped yet,
 * in arrival order sorted by event time, with engine event-time timers for
 * the times they fire or expire; the state is therefore bounded by the
 * watermark (records of one window, or of lower..upper around the
 * watermark). It is checkpointed with the operator (and split by key group
 * on a rescale); at the end of the input (watermark +inf) every window
 * fires, and the state is empty. Memory grows per key, never per record
 * (each key's arrays grow by doubling).
 *
 * Results carry no trace context. For anything else on two keyed inputs
 * (an outer join, a join against a table, enrichment with a timeout) use
 * sl_stream_apply_n() on two keyed streams: an operator gets each batch
 * with sl_ctx_input() telling the input, and has keyed state
 * (sl_ctx_state) and event-time timers (sl_ctx_timer) for the key.
 *
 * Ownership: sl_stream_join() copies the conf; fn's ud is borrowed and must
 * outlive the pipeline.
 */
#ifndef SLUICE_JOIN_H
#define SLUICE_JOIN_H

#include "sluice/export.h"
#include <stdint.h>
#include "sluice/window.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One matching pair, as handed to the join function. */
typedef struct sl_join_match {
    sl_bytes key; /* the key bytes (of the left record's key function) */
    uint64_t hash;
    int64_t ts; /* the result's event time: window end - 1, or max(left, right) */
    /* The window (window joins); for an interval join, [left_ts + lower,
     * left_ts + upper + 1). */
    int64_t window_start, window_end;
    int64_t left_ts, right_ts;
    sl_bytes left, right; /* the records' payloads, valid during the call */
} sl_join_match;

/* Called for each pair; emits what it wants with sl_emit() / sl_emit_copy()
 * (usually at m->ts with m->hash). Returns 0, or a negative code that fails
 * the job (sl_ctx_fail() for a message). */
typedef int (*sl_join_fn)(sl_ctx *ctx, const sl_join_match *m, void *ud);

typedef enum sl_join_kind { SL_JOIN_WINDOW = 0, SL_JOIN_INTERVAL = 1 } sl_join_kind;

typedef struct sl_join_conf {
    sl_join_kind kind;
    sl_window_conf window; /* SL_JOIN_WINDOW: kind, size, slide, offset, gap; lateness 0, no agg */
    int64_t lower, upper;  /* SL_JOIN_INTERVAL: lower <= upper, in ms */
    sl_join_fn fn;         /* required */
    void *ud;              /* for fn */
    uint32_t out_width;    /* width of the result records; 0: variable length */
} sl_join_conf;

/* Conf makers (fn and ud are set afterwards). */
static inline sl_join_conf sl_join_window(sl_window_conf w)
{
    sl_join_conf c;
    memset(&c, 0, sizeof(c));
    c.kind = SL_JOIN_WINDOW;
    c.window = w;
    return c;
}
static inline sl_join_conf sl_join_interval(int64_t lower, int64_t upper)
{
    sl_join_conf c;
    memset(&c, 0, sizeof(c));
    c.kind = SL_JOIN_INTERVAL;
    c.lower = lower;
    c.upper = upper;
    return c;
}

/* A join node of two keyed streams (both from sl_stream_key_by, of the same
 * pipeline). Returns its result stream, or NULL with the pipeline's error
 * set (a bad conf, an input that is not keyed). */
SL_API sl_stream *sl_stream_join(sl_stream *left, sl_stream *right, const char *name,
                                 const sl_join_conf *conf);

/* The late records of the join node that made `join_out`: side 0 the left
 * input's (port 1), side 1 the right input's (port 2), each unchanged. */
SL_API sl_stream *sl_stream_join_late(sl_stream *join_out, int side);

#ifdef __cplusplus
}
#endif
#endif
