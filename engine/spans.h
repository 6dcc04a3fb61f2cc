/*
 * engine/spans.h - the open spans of a pipeline's trace points (private;
 * the API is sl_stream_trace in sluice/trace.h, the operator in
 * operators/trace_point.c, the table's design in spans.c).
 *
 * The table exists once a trace point was added (p->spans, made at build
 * time) and is freed with the pipeline, after it ended what is still open
 * and before the tracer is freed. Ending is safe from any thread.
 */
#ifndef SLUICE_ENGINE_SPANS_H
#define SLUICE_ENGINE_SPANS_H

#include "engine/plan.h"
#include "sluice/trace.h"

typedef struct sli_spans sli_spans;
typedef struct sli_span_region sli_span_region; /* one instance's part of it */

/* The records of batch b leave the pipeline's chains at instance c (a sink,
 * or an operator that did not hand b on): the spans they carry, if open,
 * end there. Called by the engine only when b has a trace column and the
 * pipeline has trace points. */
void sli_spans_end_batch(struct sl_ctx *c, const sl_batch *b);

/* A new table (the first trace point's builder makes it, as p->spans), or
 * NULL when out of memory. */
sli_spans *sli_spans_new(void);

/* Open a span for record i of b at trace point c (kind: an sl_span_kind, 0
 * for internal), the child of parent (NULL: a root of trace_id), starting
 * at now; out gets the context the record carries from then on (with the
 * parent's tracestate, unchanged). 0, or SL_ENOMEM when c's region could
 * not be made (out of memory, or 4096 instances of trace points). */
int sli_spans_open(struct sl_ctx *c, int kind, const sl_batch *b, uint32_t i,
                   const uint8_t trace_id[16], const sl_trace_ctx *parent, int64_t now,
                   sl_trace_ctx *out);

/* End the span of context tc, if it is open, at c (record i of b; b NULL
 * when the record is gone), at now. */
void sli_spans_end(struct sl_ctx *c, const sl_trace_ctx *tc, const sl_batch *b, uint32_t i,
                   int64_t now);

/* Record i of b (it has a context) is dropped at c (a filter): its span,
 * if open, ends there, at *now, which is read from the clock first if 0
 * (so a batch's drops read it once). */
void sli_spans_dropped(struct sl_ctx *c, const sl_batch *b, uint32_t i, int64_t *now);

/* Batch b (it has a trace column) was sent into a channel at sent_ns
 * (sl_trace_now_ns) and is taken out now: each of its records with a
 * context has waited that long more (sluice.queue_ns of its span). */
void sli_spans_waited(sl_batch *b, int64_t sent_ns);

/* End what is still open (as unseen) and free the table. NULL accepted. */
void sli_spans_free(sli_spans *t, sl_tracer *tracer);

#endif
