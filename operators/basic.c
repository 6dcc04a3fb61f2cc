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
 * output record carries its input record's. filter moves the column with
 * the records (a separate loop, taken only by batches that have one); a map
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

/* One pass: test record i, and if kept move it down to slot j. A constant
 * width W turns the payload move into a few register moves. KEEP (a constant
 * too) is the mask the kept records are marked in when the batch has a trace
 * column, for the column's compaction after the loop, else NO_MASK. */
#define NO_MASK ((uint64_t *)0)
#define FILTER_LOOP(W, KEEP)                              \
    for (uint32_t i = 0; i < n; i++) {                    \
        uint8_t *rec = in->data + (size_t)i * (W);        \
        if (!fn(rec, (W), in->ts[i], ud)) continue;       \
        if (KEEP) (KEEP)[i >> 6] |= 1ull << (i & 63);     \
        if (i != j) {                                     \
            in->ts[j] = in->ts[i];                        \
            in->hash[j] = in->hash[i];                    \
            memcpy(in->data + (size_t)j * (W), rec, (W)); \
        }                                                 \
        j++;                                              \
    }

/* A dropped record's sampled span ends here. */
static void dropped(void *ctx, const sl_batch *b, uint32_t i)
{
    sli_spans_dropped(ctx, b, i);
}

/* filter of a batch that carries trace contexts: the loops above, marking
 * what they keep, then the column compacted by that mask (per context, so
 * a few sampled records cost a few moves, not one per record). */
static uint32_t filter_traced(sl_ctx *ctx, sl_batch *in, sl_filter_fn fn, void *ud)
{
    uint32_t n = in->count, j = 0, w = in->width;
    uint64_t mask[SLI_TRACE_WORDS] = {0}, *keep = mask;
    switch (w) {
    case 0:
        for (uint32_t i = 0; i < n; i++) {
            if (!fn(in->data + in->var[i].off, in->var[i].len, in->ts[i], ud)) continue;
            keep[i >> 6] |= 1ull << (i & 63);
            in->ts[j] = in->ts[i];
            in->hash[j] = in->hash[i];
            in->var[j] = in->var[i];
            j++;
        }
        break;
    case 16: FILTER_LOOP(16, keep) break;
    case 32: FILTER_LOOP(32, keep) break;
    case 64: FILTER_LOOP(64, keep) break;
    default: FILTER_LOOP(w, keep) break;
    }
    sli_trace_compact(in, keep, dropped, ctx);
    return j;
}

static int filter_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    fn_conf *c = sl_ctx_conf(ctx);
    sl_filter_fn fn = (sl_filter_fn)c->fn;
    void *ud = c->ud;
    uint32_t n = in->count, j = 0, w = in->trace ? UINT32_MAX : in->width;
    switch (w) {
    case UINT32_MAX: j = filter_traced(ctx, in, fn, ud); break;
    case 0:
        for (uint32_t i = 0; i < n; i++) {
            if (!fn(in->data + in->var[i].off, in->var[i].len, in->ts[i], ud)) continue;
            in->ts[j] = in->ts[i];
            in->hash[j] = in->hash[i];
            in->var[j] = in->var[i]; /* arena bytes stay where they are */
            j++;
        }
        break;
    case 16: FILTER_LOOP(16, NO_MASK) break;
    case 32: FILTER_LOOP(32, NO_MASK) break;
    case 64: FILTER_LOOP(64, NO_MASK) break;
    default: FILTER_LOOP(w, NO_MASK) break;
    }
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
