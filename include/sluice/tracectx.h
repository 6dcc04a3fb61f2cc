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
 * An all-zero entry means "no context". `tracestate` is not carried.
 */
#ifndef SLUICE_TRACECTX_H
#define SLUICE_TRACECTX_H

#include "sluice/export.h"
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_TRACE_FLAG_SAMPLED 0x01

typedef struct sl_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags; /* W3C trace-flags; SL_TRACE_FLAG_SAMPLED */
} sl_trace_ctx;

/* 1 when tc is a context: non-NULL with both ids non-zero (engine/trace.c;
 * parsing and the tracer are in sluice/trace.h). */
SL_API int sl_trace_ctx_valid(const sl_trace_ctx *tc);

#ifdef __cplusplus
}
#endif
#endif
