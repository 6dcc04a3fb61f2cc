/*
 * connectors/topic_record.h - one message of a topic (the built-in broker's
 * or Kafka's) made into a pipeline record, the same way for both sources
 * (private to connectors/). The record layout is sluice/connectors.h's:
 * key length (SL_BROKER_NO_KEY: no key), key, value; or what the conf's
 * parse callback makes of the value, whose refusals go to the dead letters
 * as "partition P offset O: reason" with the first 200 bytes of the value.
 */
#ifndef SLUICE_CONNECTORS_TOPIC_RECORD_H
#define SLUICE_CONNECTORS_TOPIC_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/broker.h" /* sl_record_header */
#include "sluice/connectors.h"

typedef struct slc_topic_msg {
    const void *key; /* NULL: no key (an empty key is not NULL) */
    size_t key_len;
    const void *value; /* NULL: none (a tombstone reads as an empty value) */
    size_t value_len;
    int64_t ts; /* event time; SL_TIME_NONE when the message has none */
    int32_t partition;
    int64_t offset;
    const sl_trace_ctx *trace; /* the message's trace context, or NULL */
} slc_topic_msg;

/* The W3C trace context headers of topic messages, the same for both kinds
 * of topics: a message's first `traceparent` header and, with it, all its
 * `tracestate` headers, which are one list (W3C Trace Context 3.3.1.1, as
 * HTTP combines a repeated field): joined in order with ',' (sluice/trace.h
 * checks both). */
#define SLC_TRACEPARENT     "traceparent"
#define SLC_TRACEPARENT_LEN 11
#define SLC_TRACEPARENT_MAX 55 /* SL_TRACEPARENT_LEN of sluice/trace.h */
#define SLC_TRACESTATE      "tracestate"
#define SLC_TRACESTATE_LEN  10

/* A message's tracestate headers, as a source meets them: slc_state_reset
 * before the message, slc_state_add for each value in order. One value is
 * used where it lies; more are joined into `join`, so the slc_state (one
 * per source split) must live until the record is emitted. More than
 * SLC_STATE_HEADERS_MAX, or joined longer than SLC_STATE_JOIN_MAX bytes,
 * is malformed (more than 32 list-members, or members past W3C's bounds). */
#define SLC_STATE_HEADERS_MAX 32
#define SLC_STATE_JOIN_MAX    8192
typedef struct slc_state {
    int n;           /* values added */
    int over;        /* too many or too long: malformed */
    const char *one; /* n == 1: the value */
    size_t one_len;  /* its length */
    size_t len;      /* n > 1: bytes in join */
    char join[SLC_STATE_JOIN_MAX];
} slc_state;
void slc_state_reset(slc_state *st);
void slc_state_add(slc_state *st, const void *value, size_t len);

/* The headers' values made into *out (st: the message's tracestate
 * headers, NULL or none added when it has none; out->state then points into
 * st or the message): returns out, or NULL when the traceparent is
 * malformed (then counted with sl_ctx_trace_malformed: the record goes on
 * without a context). A malformed tracestate is counted the same way and
 * dropped, the spec's rule; the traceparent is kept. */
const sl_trace_ctx *slc_trace_read(sl_ctx *ctx, const void *value, size_t len, const slc_state *st,
                                   sl_trace_ctx *out);
/* The headers a sink writes for a record that carries tc, into h[0] and
 * h[1]: traceparent (into tp) and, when tc has a state, tracestate
 * (pointing at tc's bytes, which must live until the record is sent).
 * Returns how many (1 or 2). */
int slc_trace_headers(const sl_trace_ctx *tc, sl_record_header h[2],
                      char tp[SLC_TRACEPARENT_MAX + 1]);
/* The traceparent a sink writes for a record that carries tc: the same
 * trace id and flags, and a new span id (sluice's hop, whose parent was
 * tc's span). out gets SLC_TRACEPARENT_MAX characters and a NUL. */
void slc_trace_hop(const sl_trace_ctx *tc, char out[SLC_TRACEPARENT_MAX + 1]);

/* Emit m on ctx's port 0 (or its dead letter). With parse, rec is a
 * scratch buffer of max_len bytes. Returns 0 or a negative code (recorded). */
int slc_topic_emit(sl_ctx *ctx, const slc_topic_msg *m, sl_line_parse_fn parse, void *ud,
                   uint32_t max_len, uint8_t *rec);

#endif
