/*
 * engine/trace.h - how engine code reaches a pipeline's tracer (private
 * header; the API is sluice/trace.h).
 *
 * sli_pipeline_tracer(p) is the tracer given with sl_pipeline_set_tracer(),
 * or NULL: code that traces does
 *
 *     sl_span s;
 *     sl_span_start(sli_pipeline_tracer(p), &s, "checkpoint", SL_SPAN_KIND_INTERNAL, NULL);
 *     ...
 *     sl_span_end(&s, 0);
 *
 * and with no tracer pays one NULL check per call. The tracer is set before
 * the pipeline starts and freed with it, so reading it needs no lock.
 */
#ifndef SLUICE_ENGINE_TRACE_H
#define SLUICE_ENGINE_TRACE_H

#include "engine/graph.h"
#include "sluice/trace.h"

static inline sl_tracer *sli_pipeline_tracer(const sl_pipeline *p)
{
    return p ? p->tracer : NULL;
}

/* A new random trace id that sl_trace_should_sample(ratio, NULL, id)
 * samples (ratio > 0): for the trace points, which pick the records to
 * sample first (spans.c) and then give them ids the rule agrees with, so
 * that other processes decide the same for these traces. */
void sli_trace_new_sampled_trace_id(double ratio, uint8_t out[16]);

/* Start span s sampled, with these ids and start time (parent_span_id NULL:
 * a root): for spans opened in one place and ended in another, as trace
 * points' are (spans.c), where the sampling was decided already. t NULL:
 * s records nothing. */
void sli_span_begin(sl_tracer *t, sl_span *s, const char *name, int kind,
                    const uint8_t trace_id[16], const uint8_t span_id[8],
                    const uint8_t *parent_span_id, int64_t start_ns);

#endif
