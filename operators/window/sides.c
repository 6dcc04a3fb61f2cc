/*
 * operators/window/sides.c - the builders that find a window node from its
 * output stream: the side outputs (sl_stream_window_late, _early,
 * _unassigned; sluice/window.h) and the test hook (window_test.h). They
 * serve both kinds of window node: sl_stream_window's (window.c, the conf
 * found through sl_stream_op_conf(out, sli_win_op())) and the final node of
 * sl_stream_window_combined (combine.c, sli_win_combined_conf). Kept apart
 * from both so that neither has to know the other's node: this file sits
 * above window.c and combine.c, and combine.c above window.c.
 *
 * Builders run on the thread that builds the pipeline.
 */
#include "operators/window/window_int.h"
#include "operators/window/window_test.h"

/* The conf of the window node that made `out`, or NULL when another node
 * made it (error recorded, naming `what`). */
static win_node_conf *node_conf_of(sl_stream *out, const char *what)
{
    win_node_conf *nc = sl_stream_op_conf(out, sli_win_op());
    if (!nc) nc = sli_win_combined_conf(out); /* sl_stream_window_combined's final node */
    if (nc) return nc;
    if (out)
        sl_pipeline_error(sl_stream_pipeline(out), SL_EINVAL,
                          "%s: the stream is not the output of a window node", what);
    return NULL;
}

sl_stream *sl_stream_window_late(sl_stream *out)
{
    const win_node_conf *nc = node_conf_of(out, "window_late");
    return nc ? sl_stream_side(out, WIN_PORT_LATE, nc->in_width) : NULL;
}

sl_stream *sl_stream_window_early(sl_stream *out)
{
    const win_node_conf *nc = node_conf_of(out, "window_early");
    if (!nc) return NULL;
    if (nc->c.early_ms <= 0) {
        sl_pipeline_error(sl_stream_pipeline(out), SL_EINVAL,
                          "window_early: the window node has no early firing (early_ms is 0)");
        return NULL;
    }
    return sl_stream_side(out, WIN_PORT_EARLY, 0);
}

sl_stream *sl_stream_window_unassigned(sl_stream *out)
{
    const win_node_conf *nc = node_conf_of(out, "window_unassigned");
    return nc ? sl_stream_side_as(out, WIN_PORT_UNASSIGNED, nc->in_width, SL_PORT_DEAD_LETTER)
              : NULL;
}

/* --- test hook ---------------------------------------------------------------------------- */

int sli_window_test_ring(sl_stream *window_out, uint32_t slots)
{
    win_node_conf *nc = node_conf_of(window_out, "window test ring");
    if (!nc) return SL_EINVAL;
    nc->test_ring = slots;
    return 0;
}
