/*
 * operators/window/emit.c - the window's output records: a result (its
 * layout is drawn in sluice/window.h), which with a tracer carries its
 * span's context (links.c makes the span), and an input record sent on
 * unchanged to a side port (late, or in no window) with its own context.
 * Shared by the tumbling / sliding code (slices.c) and the session code
 * (sessions.c).
 */
#include "operators/window/window_int.h"

/* A result record (sluice/window.h draws it) of window [start, end) of a
 * key, from accumulator acc, on `port` (results or early results). */
int sli_win_emit_result(sl_ctx *ctx, win *w, int port, uint64_t h, const void *key, uint32_t klen,
                        int64_t start, int64_t end, const void *acc)
{
    sl_trace_ctx tc;
    int traced = w->links && sli_win_links_span(ctx, w, h, start, end, &tc);
    if (traced) sl_ctx_set_trace(ctx, &tc);
    uint8_t *o = sl_emit_port(ctx, port, end - 1, h, SL_WINDOW_OUT_HDR + w->rs + klen);
    if (traced) sl_ctx_set_trace(ctx, NULL);
    if (!o) return sl_ctx_error(ctx);
    const uint32_t rs = w->rs, zero = 0;
    memcpy(o, &start, 8);
    memcpy(o + 8, &end, 8);
    memcpy(o + 16, &rs, 4);
    memcpy(o + 20, &zero, 4);
    w->agg->result(acc, w->res_tmp, w->ud);
    memcpy(o + SL_WINDOW_OUT_HDR, w->res_tmp, rs);
    if (klen) memcpy(o + SL_WINDOW_OUT_HDR + rs, key, klen);
    return 0;
}

/* Input record i, unchanged (its trace context too), on side port `port`
 * (late or unassigned). */
int sli_win_emit_input(sl_ctx *ctx, int port, const sl_batch *in, uint32_t i)
{
    sl_bytes r = sl_batch_bytes(in, i);
    const sl_trace_ctx *tc = sl_batch_trace(in, i);
    if (tc) sl_ctx_set_trace(ctx, tc);
    void *o = sl_emit_port(ctx, port, in->ts[i], in->hash[i], r.len);
    if (tc) sl_ctx_set_trace(ctx, NULL);
    if (!o) return sl_ctx_error(ctx);
    if (r.len) memcpy(o, r.ptr, r.len);
    return 0;
}
