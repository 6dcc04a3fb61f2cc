/*
 * operators/window/window.c - the window operator's shared part: conf
 * validation and copy, the builder sl_stream_window, and the operator table
 * that dispatches records and timers to the tumbling / sliding code
 * (slices.c) or the session code (sessions.c). The side-output builders and
 * the test hook, which serve plain and combined windows alike, are in
 * sides.c. sluice/window.h states the semantics
 * (Flink's), the ports and the result record layout; window_int.h draws the
 * module's files.
 *
 * The node. sl_stream_window() validates the conf (one clear error per bad
 * field, reported by sl_pipeline_run()), then copies it into a
 * win_node_conf owned by the pipeline, so the caller's conf may live on its
 * stack; for aggregates with SL_AGG_UD_VALUE (the built-ins) the
 * sl_agg_value that agg_ud points to is copied too. The node conf also
 * records the input width, which the late and unassigned ports carry, and
 * which sl_stream_window_late() / _unassigned() (sides.c) find through
 * sl_stream_op_conf(out, sli_win_op()), which answers only for a node that
 * runs this table. Ports (sluice/window.h):
 *
 *   0  results                 declared by sl_stream_apply
 *   1  late records            always declared (late records are possible
 *                              with any conf), role SL_PORT_LATE: the
 *                              engine counts them in sl_pipeline_stats.late
 *   2  early results           declared when early_ms > 0
 *   3  records in no window    declared when slide > size (the only case
 *                              with gaps), or when asked for
 *
 * Ports 1 and 3 are always declared when the operator can emit to them, so a
 * record never goes to a port the node does not have; a declared port with
 * no consumer discards what reaches it.
 *
 * Instances. win_open() turns the conf into the instance's constants
 * (slice length g = gcd(size, slide), offset reduced modulo the slide, the
 * aggregate's inline flags) and lets slices.c or sessions.c open their
 * state; the record and timer callbacks are a branch on the kind per batch
 * or per timer, never per record.
 *
 * Runs on the worker thread of the instance's task, like every operator;
 * builders run on the thread that builds the pipeline.
 */
#include <inttypes.h>
#include "operators/aggregate.h"
#include "operators/window/window_int.h"

/* --- operator table ------------------------------------------------------------------- */

static int win_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    win *w = self;
    return w->kind == SL_WINDOW_SESSION ? sli_win_sess_process(ctx, w, in)
                                        : sli_win_slices_process(ctx, w, in);
}

static int win_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    win *w = self;
    return w->kind == SL_WINDOW_SESSION ? sli_win_sess_timer(ctx, w, t)
                                        : sli_win_slices_timer(ctx, w, t);
}

static int win_proc_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    win *w = self;
    return w->kind == SL_WINDOW_SESSION ? 0 : sli_win_slices_early(ctx, w, t);
}

/* Snapshot / restore hooks: what the engine's keyed-state snapshot cannot
 * carry (slices.c: the per-key blocks behind pointers, and the conf). */
static int win_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    (void)ctx;
    return sli_win_snapshot(self, out);
}

static int win_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    return sli_win_restore(ctx, self, data, len);
}

static void win_close(void *self)
{
    win *w = self;
    if (!w) return;
    sli_win_slices_close(w); /* tumbling, sliding: the per-key rings */
    sli_win_links_close(w);
    free(w->ck);
    free(w->acc_tmp);
    free(w->res_tmp);
    free(w->sess_tmp);
    free(w->kc);
    free(w);
}

static int win_open(sl_ctx *ctx, void **self)
{
    const win_node_conf *nc = sl_ctx_conf(ctx);
    const sl_window_conf *c = &nc->c;
    const uint32_t flags = sl_agg_flags(c->agg);
    win *w = calloc(1, sizeof(*w));
    if (!w) return SL_ENOMEM;
    w->kind = c->kind;
    w->size = c->size;
    w->slide = c->kind == SL_WINDOW_TUMBLING ? c->size : c->slide;
    if (c->kind == SL_WINDOW_SESSION)
        w->g = 1;
    else
        sli_win_grid(c, &w->off, &w->g, &w->k, &w->s);
    w->gap = c->gap;
    w->L = c->lateness;
    w->agg = c->agg;
    w->ud = c->agg_ud;
    w->acc_size = c->agg->acc_size;
    w->rs = c->agg->result_size;
    w->i64sum = (flags & SL_AGG_INT64_SUM) != 0;
    w->add_one = (flags & SL_AGG_ADD_ONE) != 0;
    w->add_value = (flags & SL_AGG_ADD_VALUE) != 0;
    w->early_ms = c->kind == SL_WINDOW_SESSION ? 0 : c->early_ms;
    w->acc_tmp = malloc(w->acc_size ? w->acc_size : 1);
    w->res_tmp = malloc(w->rs ? w->rs : 1);
    if (!w->acc_tmp || !w->res_tmp) goto fail;
    if (sli_win_links_open(ctx, w)) goto fail;
    if (w->kind == SL_WINDOW_SESSION) {
        if (sli_win_sess_open(ctx, w)) goto fail;
    } else {
        if (sli_win_slices_open(ctx, w, nc->test_ring)) goto fail;
    }
    *self = w;
    return 0;
fail:
    win_close(w);
    return SL_ENOMEM;
}

static const sl_operator window_op = {.version = SL_OPERATOR_VERSION,
                                      .kind = "window",
                                      .open = win_open,
                                      .process = win_process,
                                      .timer = win_timer,
                                      .proc_timer = win_proc_timer,
                                      .snapshot = win_snapshot,
                                      .restore = win_restore,
                                      .close = win_close};

/* The table and the conf check, for the combined window (combine.c), whose
 * final node runs this table's callbacks. */
const sl_operator *sli_win_op(void)
{
    return &window_op;
}

/* --- builders ------------------------------------------------------------------------- */

/* Why conf c (whose aggregate is valid) is not a valid window conf, as one
 * phrase, or NULL. */
static const char *conf_invalid(const sl_window_conf *c)
{
    if (c->lateness < 0) return "lateness must be >= 0";
    if (c->early_ms < 0 || (c->early_ms > 0 && c->kind == SL_WINDOW_SESSION))
        return "early firing needs early_ms > 0 and a tumbling or sliding window";
    switch (c->kind) {
    case SL_WINDOW_TUMBLING:
        if (c->size <= 0) return "size must be > 0";
        return NULL;
    case SL_WINDOW_SLIDING:
        if (c->size <= 0 || c->slide <= 0) return "size and slide must be > 0";
        if (c->size != c->slide && !c->agg->merge) return "sliding windows need merge()";
        return NULL;
    case SL_WINDOW_SESSION:
        if (c->gap <= 0) return "session gap must be > 0";
        if (!c->agg->merge) return "session windows need merge()";
        return NULL;
    }
    return "unknown window kind (conf.kind)";
}

int sli_win_conf_check(sl_pipeline *p, const char *nm, const sl_window_conf *c)
{
    if (!c) return sl_pipeline_error(p, SL_EINVAL, "window '%s': no conf", nm);
    if (!c->agg)
        return sl_pipeline_error(p, SL_EINVAL, "window '%s': needs an aggregate (conf.agg)", nm);
    const char *why = sli_agg_invalid(c->agg);
    if (why)
        return sl_pipeline_error(p, SL_EINVAL, "window '%s': the aggregate '%s' %s", nm,
                                 c->agg->name ? c->agg->name : "", why);
    if ((why = conf_invalid(c)) != NULL)
        return sl_pipeline_error(p, SL_EINVAL, "window '%s': %s", nm, why);
    return 0;
}

int sli_win_sides(sl_stream *out, const sl_window_conf *c, uint32_t in_width)
{
    if (!sl_stream_side_as(out, WIN_PORT_LATE, in_width, SL_PORT_LATE)) return -1;
    if (c->early_ms > 0 && !sl_stream_side(out, WIN_PORT_EARLY, 0)) return -1;
    if (c->kind == SL_WINDOW_SLIDING && c->slide > c->size &&
        !sl_stream_side_as(out, WIN_PORT_UNASSIGNED, in_width, SL_PORT_DEAD_LETTER))
        return -1;
    return 0;
}

sl_stream *sl_stream_window(sl_stream *in, const char *name, const sl_window_conf *c)
{
    if (!in) return NULL;
    sl_pipeline *p = sl_stream_pipeline(in);
    const char *nm = name ? name : "";
    if (!sl_stream_keyed(in)) {
        sl_pipeline_error(p, SL_EINVAL, "window '%s': its input is not keyed (use key_by)", nm);
        return NULL;
    }
    if (sli_win_conf_check(p, nm, c)) return NULL;
    win_node_conf *nc = calloc(1, sizeof(*nc));
    if (!nc || sl_pipeline_own(p, nc)) { /* own() frees nc on failure */
        sl_pipeline_error(p, SL_ENOMEM, "window '%s': out of memory", nm);
        return NULL;
    }
    nc->c = *c;
    nc->in_width = sl_stream_width(in);
    if (sli_agg_ud_copy(p, c->agg, c->agg_ud, &nc->c.agg_ud)) return NULL;
    sl_stream *out = sl_stream_apply(in, name, &window_op, nc, 0);
    if (!out) return NULL;
    return sli_win_sides(out, c, nc->in_width) ? NULL : out;
}
