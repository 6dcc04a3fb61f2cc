/*
 * operators/trace_point.c - the trace point operator, sl_stream_trace
 * (sluice/trace.h): a span for each sampled record, from the point to the
 * place where the record leaves the chain of operators after it.
 *
 * The point hands its batch on unchanged but for the trace column. For each
 * record it decides head sampling with the tracer's rule: parent-based when
 * the record carries a context (a sampled one continues, an unsampled one
 * is passed by), else the point's ratio on a new trace id. A sampled record
 * gets a new span, the child of the context it carried, and the record's
 * context becomes the new span's: sinks write it, the next point continues
 * the trace from it. Where the span ends, and the table of open spans that
 * lets any thread end it, are the engine's (engine/spans.c): the engine
 * knows where records leave a chain.
 *
 * Cost: nothing without a tracer (the batch is handed on). With one, a
 * batch whose records carry no context costs a counter: the gap to the
 * next sampled record is drawn when it is reached, so the loop jumps from
 * one sampled record to the next; a batch with contexts costs a bit test
 * per record.
 */
#include <math.h>
#include <stdlib.h>
#include "engine/plan.h"
#include "engine/spans.h"
#include "engine/trace.h"
#include "sluice/pipeline.h"

typedef struct tp_conf {
    sl_trace_point_conf c;
} tp_conf;

/* An instance of a trace point: the ratio for records without a context
 * and how many such records to pass before the next one is sampled. Which
 * records start a trace is drawn as the gaps between them (geometric, as
 * independent draws at `ratio` would give): no random draw per record. */
typedef struct tp_self {
    double ratio;
    double inv_log_q; /* 1 / ln(1 - ratio), for the gaps */
    uint64_t skip;
} tp_self;

/* Records passed before the next sampled one: floor(ln U / ln(1 - ratio)),
 * U uniform in (0, 1], is geometric with success probability ratio. */
static uint64_t next_gap(const tp_self *me)
{
    if (me->ratio >= 1) return 0;
    uint64_t x = sli_trace_rand64();
    double u = ((double)(x >> 11) + 1) * 0x1p-53; /* (0, 1] */
    double g = floor(log(u) * me->inv_log_q);
    return g < 1e18 ? (uint64_t)g : UINT64_MAX;
}

static int tp_open(sl_ctx *c, void **self)
{
    const tp_conf *tc = sl_ctx_conf(c);
    tp_self *s = calloc(1, sizeof(*s));
    if (!s) return sl_ctx_fail(c, SL_ENOMEM, "out of memory");
    s->ratio = tc->c.sample_ratio == 0 ? sl_tracer_sample_ratio(c->p->tracer) : tc->c.sample_ratio;
    if (s->ratio > 0 && s->ratio < 1) s->inv_log_q = 1 / log1p(-s->ratio);
    if (s->ratio > 0) s->skip = next_gap(s);
    *self = s;
    return 0;
}

static void tp_close(void *self)
{
    free(self);
}

static int span_table_full(sl_ctx *c)
{
    return sl_ctx_fail(c, SL_ENOMEM,
                       "out of memory for the open spans (or more than 4096 trace point "
                       "instances in the pipeline)");
}

static int tp_process(sl_ctx *c, void *self, sl_batch *b)
{
    tp_self *me = self;
    sl_tracer *tr = c->p->tracer;
    if (!tr) return sl_forward(c, b);
    const tp_conf *tc = sl_ctx_conf(c);
    int64_t now = sl_trace_now_ns();
    if (!b->trace) {
        /* No record carries a context: only new traces, at the drawn gaps,
         * so the loop jumps from one sampled record to the next. */
        uint32_t i = 0;
        while (me->ratio > 0 && me->skip < (uint64_t)(b->count - i)) {
            i += (uint32_t)me->skip;
            me->skip = next_gap(me);
            uint8_t trace_id[16];
            sl_trace_ctx out;
            sli_trace_new_sampled_trace_id(me->ratio, trace_id);
            if (sli_spans_open(c, tc->c.kind, b, i, trace_id, NULL, now, &out) != 0)
                return span_table_full(c);
            if (sl_batch_set_trace(b, i, &out) != 0)
                return sl_ctx_fail(c, SL_ENOMEM, "out of memory for a trace column");
            i++;
        }
        if (me->ratio > 0) me->skip -= b->count - i;
        return sl_forward(c, b);
    }
    for (uint32_t i = 0; i < b->count; i++) {
        const sl_trace_ctx *in = sl_batch_trace(b, i);
        uint8_t trace_id[16];
        if (in) {
            if (!(in->flags & SL_TRACE_FLAG_SAMPLED)) continue; /* parent-based: not sampled */
            sli_spans_end(c, in, b, i, now);                    /* the span before ends here */
            memcpy(trace_id, in->trace_id, 16);
        } else {
            if (!(me->ratio > 0)) continue;
            if (me->skip) {
                me->skip--;
                continue;
            }
            me->skip = next_gap(me);
            sli_trace_new_sampled_trace_id(me->ratio, trace_id);
        }
        sl_trace_ctx out;
        if (sli_spans_open(c, tc->c.kind, b, i, trace_id, in, now, &out) != 0)
            return span_table_full(c);
        if (sl_batch_set_trace(b, i, &out) != 0)
            return sl_ctx_fail(c, SL_ENOMEM, "out of memory for a trace column");
    }
    return sl_forward(c, b);
}

static const sl_operator tp_op = {.version = SL_OPERATOR_VERSION,
                                  .kind = "trace",
                                  .open = tp_open,
                                  .process = tp_process,
                                  .close = tp_close};

sl_stream *sl_stream_trace(sl_stream *in, const char *name, const sl_trace_point_conf *conf)
{
    sl_pipeline *p = sl_stream_pipeline(in);
    if (!p) return NULL;
    if (conf && (conf->sample_ratio > 1 || conf->sample_ratio != conf->sample_ratio ||
                 conf->kind < 0 || conf->kind > SL_SPAN_KIND_CONSUMER)) {
        sl_pipeline_error(p, SL_EINVAL,
                          "trace point '%s': sample_ratio must be at most 1 and kind an "
                          "sl_span_kind",
                          name ? name : "(null)");
        return NULL;
    }
    if (!p->spans && !(p->spans = sli_spans_new())) {
        sl_pipeline_error(p, SL_ENOMEM, "out of memory");
        return NULL;
    }
    tp_conf tc = {.c = conf ? *conf : (sl_trace_point_conf){0}};
    void *owned = sl_pipeline_dup(p, &tc, sizeof tc);
    if (!owned) return NULL;
    sl_stream *out = sl_stream_apply(in, name, &tp_op, owned, sl_stream_width(in));
    return out ? sl_stream_keep_key(out, in) : NULL;
}
