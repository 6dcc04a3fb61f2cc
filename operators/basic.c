/*
 * operators/basic.c - map, filter and flat_map: per-record callbacks run in a
 * tight loop over each batch.
 *
 * filter edits its input batch in place (moves the records the predicate
 * accepts down, in order, in the same pass that tests them) and forwards it, so a filter costs no copy and no
 * allocation; a map into records of the same width also writes in place.
 * The callbacks and their ud live in a small conf that the pipeline frees.
 *
 * Trace contexts (the batch's optional trace column, sluice/batch.h): every
 * output record carries its input record's. filter moves each context with
 * its record (batches that have the column only); a map
 * in place leaves it where it is; a map into another width and flat_map
 * name each input record as the parent of what is emitted from it
 * (sl_ctx_set_trace), again only when the batch has the column.
 */
#include <stdlib.h>
#include <string.h>
#include "engine/pool.h"  /* the trace column's bits */
#include "engine/spans.h" /* a dropped record's span */
#include "sluice/operators.h"
#include "sluice/pipeline.h"

typedef struct fn_conf {
    void *fn;
    void *ud;
} fn_conf;

/* Wrap (fn, ud) into a conf; the pipeline owns it once the node exists. */
static fn_conf *new_conf(sl_stream *in, void *fn, void *ud)
{
    if (!in) return NULL;
    fn_conf *c = malloc(sizeof(*c));
    if (!c) {
        sl_pipeline_error(sl_stream_pipeline(in), SL_ENOMEM, "out of memory");
        return NULL;
    }
    c->fn = fn;
    c->ud = ud;
    return c;
}

/* --- filter --------------------------------------------------------------- */

/* One pass over records [from, to): test record i, and if kept move it
 * down to slot j. A constant width W turns the payload move into a few
 * register moves. */
#define FILTER_LOOP(W)                                    \
    for (uint32_t i = from; i < to; i++) {                \
        uint8_t *rec = in->data + (size_t)i * (W);        \
        if (!fn(rec, (W), in->ts[i], ud)) continue;       \
        if (i != j) {                                     \
            in->ts[j] = in->ts[i];                        \
            in->hash[j] = in->hash[i];                    \
            memcpy(in->data + (size_t)j * (W), rec, (W)); \
        }                                                 \
        j++;                                              \
    }

/* Filter records [from, to) of in, the kept ones moved down from slot j;
 * returns the slot after the last kept one. */
static uint32_t filter_range(sl_batch *in, sl_filter_fn fn, void *ud, uint32_t from, uint32_t to,
                             uint32_t j)
{
    switch (in->width) {
    case 0:
        for (uint32_t i = from; i < to; i++) {
            if (!fn(in->data + in->var[i].off, in->var[i].len, in->ts[i], ud)) continue;
            in->ts[j] = in->ts[i];
            in->hash[j] = in->hash[i];
            in->var[j] = in->var[i]; /* arena bytes stay where they are */
            j++;
        }
        break;
    case 16: FILTER_LOOP(16) break;
    case 32: FILTER_LOOP(32) break;
    case 64: FILTER_LOOP(64) break;
    default: FILTER_LOOP(in->width) break;
    }
    return j;
}

/* filter of a batch that carries trace contexts: the records between two
 * with a context go through the plain loop, and each record with one is
 * tested alone, so its context moves with it (or its span ends when it is
 * dropped) at a cost per context, none per record. Moves write only slots
 * below the record being looked at, so its record, hash and context are
 * still in place when it is. */
static uint32_t filter_traced(sl_ctx *ctx, sl_batch *in, sl_filter_fn fn, void *ud)
{
    uint64_t had[SLI_TRACE_WORDS];
    memcpy(had, in->trace_set, sizeof had);
    memset(in->trace_set, 0, sizeof had); /* rebuilt below: the invariant holds */
    int64_t *wait = sli_trace_wait(in), now = 0;
    uint32_t from = 0, j = 0;
    for (uint32_t w = 0; w < SLI_TRACE_WORDS; w++)
        for (uint64_t m = had[w]; m; m &= m - 1) {
            uint32_t t = (w << 6) + (uint32_t)__builtin_ctzll(m);
            j = filter_range(in, fn, ud, from, t, j);
            uint32_t after = filter_range(in, fn, ud, t, t + 1, j);
            if (after == j) {
                sli_spans_dropped(ctx, in, t, &now); /* its sampled span ends here */
            } else {
                in->trace[j] = in->trace[t];
                wait[j] = wait[t];
                in->trace_set[j >> 6] |= 1ull << (j & 63);
            }
            j = after;
            from = t + 1;
        }
    return filter_range(in, fn, ud, from, in->count, j);
}

static int filter_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    fn_conf *c = sl_ctx_conf(ctx);
    sl_filter_fn fn = (sl_filter_fn)c->fn;
    uint32_t j = in->trace ? filter_traced(ctx, in, fn, c->ud)
                           : filter_range(in, fn, c->ud, 0, in->count, 0);
    in->count = j;
    if (j == 0) return 0; /* the engine recycles the batch */
    return sl_forward(ctx, in);
}

static const sl_operator filter_op = {
    .version = SL_OPERATOR_VERSION, .kind = "filter", .process = filter_process};

/* --- map ------------------------------------------------------------------ */

static int map_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    fn_conf *c = sl_ctx_conf(ctx);
    sl_map_fn fn = (sl_map_fn)c->fn;
    uint32_t ow = sl_ctx_out_width(ctx, 0);
    if (in->width && in->width == ow) {
        /* Same width: write each record in place through a copy of it. */
        uint8_t tmp[256];
        uint8_t *scratch = ow <= sizeof(tmp) ? tmp : malloc(ow);
        if (!scratch) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
        int rc = 0;
        for (uint32_t i = 0; i < in->count && !rc; i++) {
            uint8_t *rec = in->data + (size_t)i * ow;
            memcpy(scratch, rec, ow);
            rc = fn(scratch, ow, rec, &in->ts[i], c->ud);
        }
        if (scratch != tmp) free(scratch);
        if (rc) return rc < 0 ? rc : SL_EOPERATOR;
        memset(in->hash, 0, in->count * sizeof(uint64_t)); /* keys do not survive a map */
        return sl_forward(ctx, in);
    }
    if (!ow) return sl_ctx_fail(ctx, SL_EINVAL, "map needs a fixed output width; use flat_map");
    /* Other width: build each record in scratch, then emit it with the
     * event time the callback chose. */
    uint8_t tmp[256];
    uint8_t *scratch = ow <= sizeof(tmp) ? tmp : malloc(ow);
    if (!scratch) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    int rc = 0;
    const int tr = in->trace != NULL; /* 0: no record has a context */
    for (uint32_t i = 0; i < in->count && !rc; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        int64_t ts = in->ts[i];
        rc = fn(r.ptr, r.len, scratch, &ts, c->ud);
        if (tr) sl_ctx_set_trace(ctx, sl_batch_trace(in, i));
        if (!rc) rc = sl_emit_copy(ctx, ts, 0, scratch, ow);
    }
    if (scratch != tmp) free(scratch);
    return rc > 0 ? SL_EOPERATOR : rc;
}

static const sl_operator map_op = {
    .version = SL_OPERATOR_VERSION, .kind = "map", .process = map_process};

/* --- flat_map ---------------------------------------------------------------- */

static int flat_map_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    fn_conf *c = sl_ctx_conf(ctx);
    sl_flat_map_fn fn = (sl_flat_map_fn)c->fn;
    const int tr = in->trace != NULL; /* 0: no record has a context */
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        if (tr)
            sl_ctx_set_trace(ctx, sl_batch_trace(in, i)); /* what fn emits comes from record i */
        int rc = fn(ctx, r.ptr, r.len, in->ts[i], c->ud);
        if (rc) return rc < 0 ? rc : SL_EOPERATOR;
    }
    return 0;
}

static const sl_operator flat_map_op = {
    .version = SL_OPERATOR_VERSION, .kind = "flat_map", .process = flat_map_process};

/* --- builders ------------------------------------------------------------------ */

static sl_stream *apply_fn(sl_stream *in, const char *name, const sl_operator *op, void *fn,
                           void *ud, uint32_t width, const char *what)
{
    if (!in) return NULL;
    if (!fn) {
        sl_pipeline_error(sl_stream_pipeline(in), SL_EINVAL, "%s '%s': no callback", what,
                          name ? name : "");
        return NULL;
    }
    fn_conf *c = new_conf(in, fn, ud);
    if (!c) return NULL;
    sl_stream *out = sl_stream_apply(in, name, op, c, width);
    if (!out || sl_pipeline_own(sl_stream_pipeline(in), c) != 0) {
        if (!out) free(c);
        return NULL;
    }
    return out;
}

sl_stream *sl_stream_filter(sl_stream *in, const char *name, sl_filter_fn fn, void *ud)
{
    sl_stream *out = apply_fn(in, name, &filter_op, (void *)fn, ud, sl_stream_width(in), "filter");
    return sl_stream_keep_key(out, in);
}

sl_stream *sl_stream_map(sl_stream *in, const char *name, sl_map_fn fn, void *ud,
                         uint32_t out_width)
{
    if (in && out_width == 0) {
        sl_pipeline_error(sl_stream_pipeline(in), SL_EINVAL,
                          "map '%s': needs a fixed output width (use flat_map for bytes)",
                          name ? name : "");
        return NULL;
    }
    return apply_fn(in, name, &map_op, (void *)fn, ud, out_width, "map");
}

sl_stream *sl_stream_flat_map(sl_stream *in, const char *name, sl_flat_map_fn fn, void *ud,
                              uint32_t out_width)
{
    return apply_fn(in, name, &flat_map_op, (void *)fn, ud, out_width, "flat_map");
}
