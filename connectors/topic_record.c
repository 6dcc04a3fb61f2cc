/*
 * connectors/topic_record.c - a topic's message as a pipeline record: the
 * one place both topic sources (connectors/broker/connector.c and
 * connectors/kafka/source.c) apply the record layout and the parse and
 * dead-letter rules (topic_record.h says what they are), and read and
 * write the trace context headers, traceparent and tracestate (sluice/trace.h
 * parses and formats them).
 * A message's context is given to its record with sl_ctx_set_trace() for
 * the one emit, so a source without traced messages never touches the
 * batch's trace column.
 */
#include "connectors/topic_record.h"
#include <stdio.h>
#include <string.h>
#include "sluice/source.h"
#include "sluice/trace.h"

void slc_state_reset(slc_state *st)
{
    st->n = st->over = 0;
    st->len = 0;
}

void slc_state_add(slc_state *st, const void *value, size_t len)
{
    if (!value) len = 0;
    if (st->over || ++st->n > SLC_STATE_HEADERS_MAX) {
        st->over = 1;
        return;
    }
    if (st->n == 1) {
        st->one = value;
        st->one_len = len;
        return;
    }
    if (st->n == 2) { /* the first moves into join */
        if (st->one_len > sizeof(st->join)) {
            st->over = 1;
            return;
        }
        if (st->one_len) memcpy(st->join, st->one, st->one_len); /* one may be NULL */
        st->len = st->one_len;
    }
    if (st->len + 1 + len > sizeof(st->join)) {
        st->over = 1;
        return;
    }
    st->join[st->len++] = ',';
    if (len) memcpy(st->join + st->len, value, len);
    st->len += len;
}

const sl_trace_ctx *slc_trace_read(sl_ctx *ctx, const void *value, size_t len, const slc_state *st,
                                   sl_trace_ctx *out)
{
    if (sl_traceparent_parse(value, len, out) != 0) {
        sl_ctx_trace_malformed(ctx);
        return NULL;
    }
    if (!st || !st->n) return out;
    const char *v = st->n == 1 ? st->one : st->join;
    size_t vl = st->n == 1 ? st->one_len : st->len;
    if (st->over || sl_tracestate_parse(v ? v : "", v ? vl : 0, out) != 0) {
        out->state = NULL; /* the whole list is dropped */
        out->state_len = 0;
        sl_ctx_trace_malformed(ctx);
    }
    return out;
}

void slc_trace_hop(const sl_trace_ctx *tc, char out[SLC_TRACEPARENT_MAX + 1])
{
    sl_trace_ctx hop = *tc;
    sl_trace_new_span_id(hop.span_id);
    sl_traceparent_format(&hop, out); /* cannot fail: both ids are non-zero */
}

int slc_trace_headers(const sl_trace_ctx *tc, sl_record_header h[2],
                      char tp[SLC_TRACEPARENT_MAX + 1])
{
    slc_trace_hop(tc, tp);
    h[0] = (sl_record_header){.key = SLC_TRACEPARENT,
                              .key_len = SLC_TRACEPARENT_LEN,
                              .value = tp,
                              .value_len = SLC_TRACEPARENT_MAX};
    if (!tc->state_len) return 1;
    h[1] = (sl_record_header){.key = SLC_TRACESTATE,
                              .key_len = SLC_TRACESTATE_LEN,
                              .value = tc->state,
                              .value_len = tc->state_len};
    return 2;
}

int slc_topic_emit(sl_ctx *ctx, const slc_topic_msg *m, sl_line_parse_fn parse, void *ud,
                   uint32_t max_len, uint8_t *rec)
{
    uint32_t klen = m->key ? (uint32_t)m->key_len : 0;
    uint32_t vlen = m->value ? (uint32_t)m->value_len : 0;
    if (parse) {
        int64_t ts = m->ts;
        const char *reason = "malformed";
        int r = parse((const char *)m->value, vlen, rec, max_len, &ts, &reason, ud);
        if (r < 0) {
            char why[160];
            snprintf(why, sizeof(why), "partition %d offset %lld: %s", (int)m->partition,
                     (long long)m->offset, reason);
            return sl_ctx_dead_letter(ctx, m->ts, why, m->value, vlen > 200 ? 200 : vlen);
        }
        if ((uint32_t)r > max_len)
            return sl_ctx_fail(ctx, SL_EOPERATOR, "parse made %d bytes, more than max_len %u", r,
                               max_len);
        uint32_t w = sl_ctx_out_width(ctx, 0);
        if (m->trace) sl_ctx_set_trace(ctx, m->trace);
        int rc = sl_emit_copy(ctx, ts, 0, rec, w ? w : (uint32_t)r);
        if (m->trace) sl_ctx_set_trace(ctx, NULL);
        return rc;
    }
    if (m->trace) sl_ctx_set_trace(ctx, m->trace);
    uint8_t *out = sl_emit(ctx, m->ts, 0, 4 + klen + vlen);
    if (m->trace) sl_ctx_set_trace(ctx, NULL);
    if (!out) return sl_ctx_error(ctx);
    uint32_t kfield = m->key ? klen : SL_BROKER_NO_KEY;
    memcpy(out, &kfield, 4);
    if (klen) memcpy(out + 4, m->key, klen);
    if (vlen) memcpy(out + 4 + klen, m->value, vlen);
    return 0;
}
