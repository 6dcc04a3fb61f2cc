/*
 * sluice/tracectx.h - W3C trace context of a record (public API).
 *
 * A record may carry the trace context it came with (W3C Trace Context,
 * version 00: the `traceparent` header "00-TRACEID-SPANID-FLAGS"): the
 * trace id, the id of the span that produced it (its parent, for the next
 * hop) and the trace flags (bit 0: sampled). It travels in an optional
 * column of the record's batch (sl_batch.trace, sluice/batch.h), which is
 * absent (NULL) on streams whose records carry none, so a pipeline without
 * tracing pays nothing for it.
 *
 * An all-zero trace_id means "no context". `tracestate` is not carried.
 */
#ifndef SLUICE_TRACECTX_H
#define SLUICE_TRACECTX_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_TRACE_FLAG_SAMPLED 0x01u

typedef struct sl_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;
} sl_trace_ctx;

/* 1 when tc is a context (non-NULL and its trace id not all zero). */
static inline int sl_trace_ctx_valid(const sl_trace_ctx *tc)
{
    if (!tc) return 0;
    uint8_t any = 0;
    for (int k = 0; k < 16; k++) any |= tc->trace_id[k];
    return any != 0;
}

#ifdef __cplusplus
}
#endif
#endif
