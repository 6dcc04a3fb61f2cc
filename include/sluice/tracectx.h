/*
 * sluice/tracectx.h - W3C trace context of a record (public API).
 *
 * A record may carry the trace context it came with (W3C Trace Context,
 * version 00: the `traceparent` header "00-TRACEID-SPANID-FLAGS"): the
 * trace id, the id of the span that produced it (its parent, for the next
 * hop) and the trace flags (bit 0: sampled). It travels in an optional
 * column of the record's batch (sl_batch.trace, sluice/batch.h), which is
 * absent (NULL) on streams whose records carry none, so a pipeline without
 * tracing pays nothing for it. sluice/trace.h parses and formats the
 * header and makes spans of these contexts.
 *
 * An all-zero entry means "no context".
 *
 * `tracestate` (the vendors' list that travels with the traceparent) is
 * carried beside the ids: `state` points at its bytes (not NUL-terminated),
 * `state_len` long, NULL and 0 when the record has none. Ownership: a
 * context read from a batch (sl_batch_trace) points into that batch's
 * memory, valid while the batch is; a context given to the engine
 * (sl_batch_set_trace, sl_ctx_set_trace) has its state bytes copied when
 * the record takes it, so the caller's bytes need only live until then.
 * Code that keeps a context beyond its batch (a window's links) keeps the
 * ids only. sl_tracestate_parse (sluice/trace.h) checks a header value.
 */
#ifndef SLUICE_TRACECTX_H
#define SLUICE_TRACECTX_H

#include "sluice/export.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_TRACE_FLAG_SAMPLED 0x01
/* The most tracestate bytes a context carries: W3C asks to propagate at
 * least 512; longer lists are cut at a list-member (sl_tracestate_parse). */
#define SL_TRACESTATE_MAX 512

typedef struct sl_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;      /* W3C trace-flags; SL_TRACE_FLAG_SAMPLED */
    uint16_t state_len; /* bytes at state, at most SL_TRACESTATE_MAX; 0: none */
    const char *state;  /* W3C tracestate, or NULL (ownership above) */
} sl_trace_ctx;

/* 1 when tc is a context: non-NULL with both ids non-zero (engine/trace.c;
 * parsing and the tracer are in sluice/trace.h). */
SL_API int sl_trace_ctx_valid(const sl_trace_ctx *tc);

#ifdef __cplusplus
}
#endif
#endif
