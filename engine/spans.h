/*
 * engine/spans.h - the open spans of a pipeline's trace points (private;
 * the API is sl_stream_trace in sluice/trace.h, the design in spans.c).
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

/* The records of batch b leave the pipeline's chains at instance c (a sink,
 * or an operator that did not hand b on): the spans they carry, if open,
 * end there. Called by the engine only when b has a trace column and the
 * pipeline has trace points. */
void sli_spans_end_batch(struct sl_ctx *c, const sl_batch *b);

/* End what is still open (as unseen) and free the table. NULL accepted. */
void sli_spans_free(sli_spans *t, sl_tracer *tracer);

#endif
