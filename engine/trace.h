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

/* 64 random bits from the calling thread's generator (xoshiro256**, seeded
 * from getrandom), which makes the ids: not for secrets. */
uint64_t sli_trace_rand64(void);

/* A trace point's span in compact form (engine/spans.c), ended by
 * sli_span_rec_end: queued as it is and made into an sl_span, with its
 * attributes, by the export thread, so that the thread that ends it copies
 * ~100 bytes and no strings. It is sampled (only sampled points open spans).
 * The names live as long as the pipeline, which frees its tracer (and so
 * exports or drops every queued span) before its nodes. */
typedef struct sli_span_rec {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent[8]; /* all zero: a root */
    int64_t start_ns, end_ns;
    const char *point; /* the span's name and sluice.operator */
    const char *end;   /* sluice.end: the node the record left at; NULL: "unseen" */
    int32_t instance, end_instance;
    uint64_t key_hash;
    uint8_t keyed;    /* key_hash holds the record's key hash */
    uint8_t kind;     /* enum sl_span_kind */
    int64_t queue_ns; /* sluice.queue_ns: time in channels; < 0: not known */
} sli_span_rec;

/* Queue r's span (counted started, sampled and ended, as sl_span_start and
 * sl_span_end count), with the tracestate of its record (state_len bytes at
 * state, copied; NULL, 0: none). */
void sli_span_rec_end(sl_tracer *t, const sli_span_rec *r, const char *state, uint16_t state_len);

#endif
