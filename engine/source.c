/*
 * engine/source.c - the source layer: splits, split readers, and the one
 * place where a source's watermark, idleness and positions are decided.
 *
 * Listing. When the job starts, the first instance of a source node to open
 * calls the table's enumerate() (or, without one, declares one split per
 * instance). Split k belongs to instance k % P. The split descriptions and,
 * later, each split's last position live in the node (sli_srcnode), so they
 * outlive the run and sl_pipeline_source_position() can read them.
 *
 * Polling. Each step polls one split of the instance, round robin, for at
 * most the room left in the current output batch, so every record of one
 * poll lands in one batch and the engine can read their event times from
 * the batch's ts column afterwards (no per-record call into the engine).
 * The engine is only asked to step a source whose output has credit.
 *
 * Per split the engine keeps:
 *
 *   max_ts        largest event time read (SL_TIME_MIN: none yet; records
 *                 with SL_TIME_NONE do not count)
 *   wm            the split's watermark: max_ts - delay - 1, or the
 *                 strategy's fn, or what the reader announced; never goes back
 *   idle          polled without data continuously for idle_ms
 *   empty_since   when the current run of empty polls began (ms, monotonic)
 *   last_poll     when it was last polled; a gap longer than idle_ms between
 *                 two polls means the source was blocked, and the count of
 *                 silence starts again: not being polled is never silence
 *   ended         its reader said SL_POLL_END; its position is kept
 *
 * The instance's watermark is the minimum of wm over splits that are neither
 * ended nor idle. When it rises it is announced: right after the record that
 * raised it for punctuated strategies (the batch is cut there: records before
 * go out, then the watermark, then the rest), else once per activation
 * (sli_source_announce). When every live split is idle the instance says
 * IDLE downstream, and ACTIVE when one has data again. When every split has
 * ended the task ends the stream (watermark +inf, END).
 *
 * Invariants: announced watermarks only increase; a split that has not been
 * polled never turns idle; a split that never had data holds the minimum at
 * SL_TIME_MIN until it turns idle or ends (as in Flink).
 *
 * Threads: open and close run on the starting / ending thread; everything
 * else inside the source task's activation. Nothing here is shared between
 * instances except the node's split table, which each instance writes only
 * at the slots of its own splits.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/base/le.h"
#include "engine/source.h"
#include "engine/metrics.h"
#include "engine/base/clock.h"
#include "engine/graph.h"
#include "engine/plan.h"
#include "engine/pool.h"
#include "engine/task.h"

struct sl_split_enum {
    sli_srcnode *sn;
    int parallelism;
    int err;
    char msg[256];
};

struct sli_srcnode {
    int enumerated;
    int n;
    sl_buf *desc; /* [n] split descriptions */
    sl_buf *pos;  /* [n] last positions */
    int *has_pos; /* [n] */
};

typedef struct src_split {
    sl_split split;
    void *reader;
    int opened, ended, idle;
    int64_t max_ts, wm;
    double empty_since, last_poll;
    /* sl_ctx_split_lag: written by the task thread, read by metrics
     * readers; lag_input and lag_part are written once, before lag_set
     * (release). */
    _Atomic int lag_set;
    _Atomic int64_t lag;
    char lag_input[64];
    int32_t lag_part;
} src_split;

struct sli_srcinst {
    int n;
    src_split *s;
    int next;      /* split to poll next */
    int live;      /* splits not ended */
    int empty_run; /* polls in a row that found nothing */
    int cur;       /* split being polled, -1 outside poll */
    int64_t announced;
    int idle_out;     /* IDLE announced downstream */
    sl_batch *scan_b; /* the batch the current poll fills */
    uint32_t scan_from;
    uint32_t dead; /* dead letters sent by the current poll */
};

/* --- listing splits ---------------------------------------------------------------- */

int sl_split_add(sl_split_enum *e, const void *desc, size_t len)
{
    sli_srcnode *sn = e->sn;
    int n = sn->n + 1;
    sl_buf *d = realloc(sn->desc, (size_t)n * sizeof(*d));
    if (!d) return SL_ENOMEM;
    sn->desc = d;
    memset(&d[n - 1], 0, sizeof(*d));
    if (len && sl_buf_append(&d[n - 1], desc, len)) return SL_ENOMEM;
    sn->n = n;
    return 0;
}

int sl_split_parallelism(const sl_split_enum *e)
{
    return e->parallelism;
}

int sl_split_fail(sl_split_enum *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    e->err = code < 0 ? code : SL_EINVAL;
    return e->err;
}

static int enumerate(struct sl_ctx *c)
{
    sl_node *node = c->node;
    sli_srcnode *sn = node->srcnode;
    if (!sn && !(sn = node->srcnode = calloc(1, sizeof(*sn))))
        return sl_ctx_fail(c, SL_ENOMEM, "out of memory");
    if (sn->enumerated) return 0;
    sn->enumerated = 1;
    sl_split_enum e = {.sn = sn, .parallelism = node->parallelism};
    int rc = 0;
    if (node->src->enumerate) {
        rc = node->src->enumerate(&e, node->conf);
        if (rc >= 0 && e.err) rc = e.err;
        if (rc < 0) return sl_ctx_fail(c, rc, "%s", e.msg[0] ? e.msg : sl_strerror(rc));
    } else {
        for (int i = 0; i < node->parallelism && !rc; i++) rc = sl_split_add(&e, NULL, 0);
        if (rc) return sl_ctx_fail(c, rc, "out of memory");
    }
    sn->pos = calloc((size_t)sn->n + 1, sizeof(*sn->pos));
    sn->has_pos = calloc((size_t)sn->n + 1, sizeof(*sn->has_pos));
    if (!sn->pos || !sn->has_pos) return sl_ctx_fail(c, SL_ENOMEM, "out of memory");
    return 0;
}

void sli_source_node_free(struct sl_node *n)
{
    sli_srcnode *sn = n->srcnode;
    if (!sn) return;
    for (int i = 0; i < sn->n; i++) {
        sl_buf_free(&sn->desc[i]);
        if (sn->pos) sl_buf_free(&sn->pos[i]);
    }
    free(sn->desc);
    free(sn->pos);
    free(sn->has_pos);
    free(sn);
    n->srcnode = NULL;
}

/* --- opening and closing --------------------------------------------------------------- */

int sli_source_open(struct sl_ctx *c)
{
    int rc = enumerate(c);
    if (rc) return rc;
    sli_srcnode *sn = c->node->srcnode;
    sli_srcinst *si = calloc(1, sizeof(*si));
    if (!si) return sl_ctx_fail(c, SL_ENOMEM, "out of memory");
    c->src = si;
    si->cur = -1;
    si->announced = SL_TIME_MIN;
    int par = c->node->parallelism;
    for (int k = c->instance; k < sn->n; k += par) si->n++;
    if (si->n && !(si->s = calloc((size_t)si->n, sizeof(*si->s))))
        return sl_ctx_fail(c, SL_ENOMEM, "out of memory");
    int j = 0;
    for (int k = c->instance; k < sn->n; k += par, j++) {
        src_split *sp = &si->s[j];
        sp->split.index = k;
        sp->split.count = sn->n;
        sp->split.desc = sn->desc[k].len ? sn->desc[k].ptr : NULL;
        sp->split.desc_len = sn->desc[k].len;
        sp->max_ts = SL_TIME_MIN;
        sp->wm = SL_TIME_MIN;
        sp->empty_since = -1;
        sp->last_poll = -1;
        rc = c->node->src->open(c, &sp->split, &sp->reader);
        if (rc < 0) {
            if (!c->err) sl_ctx_fail(c, rc, "cannot open split %d: %s", k, sl_strerror(rc));
            return rc;
        }
        sp->opened = 1;
        si->live++;
    }
    return 0;
}

static void keep_position(struct sl_ctx *c, src_split *sp)
{
    sli_srcnode *sn = c->node->srcnode;
    const sl_source *src = c->node->src;
    if (!src->position || !sp->opened) return;
    sl_buf *b = &sn->pos[sp->split.index];
    b->len = 0;
    if (src->position(c, sp->reader, b) == 0) sn->has_pos[sp->split.index] = 1;
}

void sli_source_close(struct sl_ctx *c)
{
    sli_srcinst *si = c->src;
    if (!si) return;
    for (int j = 0; j < si->n; j++) {
        src_split *sp = &si->s[j];
        if (!sp->opened) continue;
        if (!sp->ended) keep_position(c, sp);
        if (c->node->src->close) c->node->src->close(sp->reader);
        sp->opened = 0;
    }
    /* si itself stays until the plan is freed: metrics readers on other
     * threads may still read its splits' lag (sli_source_lag). */
}

void sli_source_free(struct sl_ctx *c)
{
    sli_srcinst *si = c->src;
    if (!si) return;
    free(si->s);
    free(si);
    c->src = NULL;
}

/* --- the watermark rule ------------------------------------------------------------------ */

/* Minimum over live, active splits; *any = 0 when there is none. */
static int64_t inst_min(const sli_srcinst *si, int *any)
{
    int64_t wm = SL_TIME_MAX;
    *any = 0;
    for (int j = 0; j < si->n; j++) {
        const src_split *sp = &si->s[j];
        if (sp->ended || sp->idle) continue;
        *any = 1;
        if (sp->wm < wm) wm = sp->wm;
    }
    return wm;
}

/* sl_ctx_input_idle (sluice/operator.h) lives here, with the idleness of
 * sources: a task with inputs is idle when all of them are (task.c keeps
 * idle_out); a task without inputs is rooted at a source instance, idle
 * when it announced IDLE (every live split idle). */
int sl_ctx_input_idle(const sl_ctx *c)
{
    const sl_task *t = c->task;
    if (!t) return 0;
    if (t->n_in > 0) return t->idle_out;
    const sli_srcinst *si = t->n_insts > 0 ? t->insts[0]->src : NULL;
    return si && si->live > 0 && si->idle_out;
}

int sli_source_announce(struct sl_ctx *c)
{
    sli_srcinst *si = c->src;
    if (!si || si->live == 0) return 0; /* the end of the stream says +inf */
    int any;
    int64_t wm = inst_min(si, &any);
    if (!any) {
        if (si->idle_out) return 0;
        si->idle_out = 1;
        return sli_source_send_idle(c, 1);
    }
    if (si->idle_out) {
        si->idle_out = 0;
        int rc = sli_source_send_idle(c, 0);
        if (rc) return rc;
    }
    if (wm <= si->announced) return 0;
    si->announced = wm;
    return sli_source_send_watermark(c, wm);
}

/* Raise split sp's watermark to cand; for punctuated strategies announce
 * at once when the instance's minimum rises. */
static inline int split_raise(struct sl_ctx *c, src_split *sp, int64_t cand, int punctuated)
{
    if (cand <= sp->wm) return 0;
    sp->wm = cand;
    return punctuated ? sli_source_announce(c) : 0;
}

/* The bounded out-of-orderness rule, max_ts - delay - 1, saturating at
 * SL_TIME_MIN (no watermark yet) near the bottom of int64. */
static inline int64_t bounded_wm(int64_t max_ts, int64_t delay)
{
    return max_ts < SL_TIME_MIN + delay + 1 ? SL_TIME_MIN : max_ts - delay - 1;
}

/* max(init, ts[0 .. n)): four independent maxima (branch-free selects), so
 * the loop is not one long compare chain; it runs once per polled batch. */
static int64_t column_max(const int64_t *ts, uint32_t n, int64_t init)
{
    int64_t m0 = init, m1 = init, m2 = init, m3 = init;
    const int64_t *p = ts, *end4 = ts + (n & ~3u), *end = ts + n;
    for (; p < end4; p += 4) {
        m0 = p[0] > m0 ? p[0] : m0;
        m1 = p[1] > m1 ? p[1] : m1;
        m2 = p[2] > m2 ? p[2] : m2;
        m3 = p[3] > m3 ? p[3] : m3;
    }
    for (; p < end; p++) m0 = *p > m0 ? *p : m0;
    m0 = m1 > m0 ? m1 : m0;
    m2 = m3 > m2 ? m3 : m2;
    return m2 > m0 ? m2 : m0;
}

/* Cut b at the punctuated watermarks found by scan_pending: records up to
 * cut[0] stay in b, (cut[k-1], cut[k]] and the records after the last cut
 * are copied into batches of their own, each record once. Then b, wm[0],
 * the next piece, wm[1], ... go out (the split's watermark set back to
 * what it was at each cut, so that sli_source_announce sends that one),
 * and the last piece becomes the batch the poll goes on filling. */
static int cut_and_announce(struct sl_ctx *c, sl_batch *b, const uint32_t *cut, const int64_t *wm,
                            uint32_t n_cut)
{
    sli_srcinst *si = c->src;
    src_split *sp = &si->s[si->cur];
    uint32_t to = b->count;
    int64_t final_wm = sp->wm;
    sl_batch *piece[SL_BATCH_CAPACITY]; /* piece[k]: the records after cut[k] */
    uint32_t n_piece = 0;
    for (uint32_t k = 0; k < n_cut; k++) {
        uint32_t lo = cut[k] + 1, hi = k + 1 < n_cut ? cut[k + 1] + 1 : to;
        if (lo >= hi) break; /* the last cut at the batch's last record */
        sl_batch *r = sli_batch_get(c->p, b->width);
        int rc = r ? 0 : SL_ENOMEM;
        for (uint32_t i = lo; i < hi && !rc; i++) rc = sli_batch_append_from(r, b, i);
        if (rc) {
            sli_batch_put(c->p, r);
            while (n_piece) sli_batch_put(c->p, piece[--n_piece]);
            return sl_ctx_fail(c, rc, "out of memory");
        }
        piece[n_piece++] = r;
    }
    if (n_piece) sl_batch_truncate(b, cut[0] + 1); /* the pieces took the contexts along */
    si->scan_b = NULL;
    int rc = 0;
    for (uint32_t k = 0; k < n_cut; k++) {
        sp->wm = wm[k];
        if (!rc) rc = sli_source_announce(c); /* flushes the current batch first */
        if (k < n_piece) {
            if (rc || c->out[0].cur) { /* the flush took the batch, or failed */
                sli_batch_put(c->p, piece[k]);
                if (!rc) rc = sl_ctx_fail(c, SL_ESTATE, "source batch cut out of order");
                continue;
            }
            c->out[0].cur = piece[k];
        }
    }
    sp->wm = final_wm;
    if (rc) return rc;
    if (n_piece == n_cut) { /* records after the last cut: the poll goes on filling them */
        si->scan_b = piece[n_piece - 1];
        si->scan_from = si->scan_b->count;
    }
    return 0;
}

/* Records [scan_from, count) of the current poll's batch: fold their event
 * times into the split. Punctuated: find the records after which the
 * instance's watermark rises, then cut the batch there and send each
 * watermark after its records (cut_and_announce). */
static int scan_pending(struct sl_ctx *c)
{
    sli_srcinst *si = c->src;
    sl_batch *b = si->scan_b;
    if (!b || si->cur < 0) return 0;
    src_split *sp = &si->s[si->cur];
    const sl_watermark_conf *w = c->node->has_wm ? &c->node->wm : NULL;
    uint32_t from = si->scan_from, to = b->count;
    si->scan_from = to;
    if (from >= to) return 0;
    if (!w) return 0;               /* no strategy: only what readers announce */
    if (!w->punctuated && !w->fn) { /* periodic bounded: one pass over the ts column */
        int64_t mx = w->monotonous ? (b->ts[to - 1] > sp->max_ts ? b->ts[to - 1] : sp->max_ts)
                                   : column_max(b->ts + from, to - from, sp->max_ts);
        sp->max_ts = mx;
        if (mx != SL_TIME_MIN) return split_raise(c, sp, bounded_wm(mx, w->delay), 0);
        return 0;
    }
    uint32_t cut[SL_BATCH_CAPACITY], n_cut = 0;
    int64_t cut_wm[SL_BATCH_CAPACITY], announced = si->announced;
    for (uint32_t i = from; i < to; i++) {
        int64_t ts = b->ts[i];
        if (ts > sp->max_ts) sp->max_ts = ts;
        int64_t cand;
        if (w->fn) {
            sl_bytes r = sl_batch_bytes(b, i);
            cand = w->fn(r.ptr, r.len, ts, sp->max_ts, w->ud);
        } else {
            cand = bounded_wm(sp->max_ts, w->delay);
        }
        if (cand <= sp->wm) continue;
        if (!w->punctuated) {
            sp->wm = cand;
            continue;
        }
        int any;
        int64_t before = inst_min(si, &any);
        sp->wm = cand;
        int64_t after = inst_min(si, &any);
        if (after <= before || after <= announced) continue;
        /* records up to i go before this watermark */
        cut[n_cut] = i;
        cut_wm[n_cut++] = sp->wm;
        announced = after;
    }
    return n_cut ? cut_and_announce(c, b, cut, cut_wm, n_cut) : 0;
}

/* After the reader emitted outside our batch (a watermark it announced
 * flushed it), find the batch the poll goes on filling. */
static void rescan_target(struct sl_ctx *c)
{
    sli_srcinst *si = c->src;
    if (si->scan_b && c->out[0].cur == si->scan_b) return;
    si->scan_b = c->out[0].cur;
    si->scan_from = 0;
}

/* --- what readers call during poll ---------------------------------------------------------------- */

static src_split *current_split(struct sl_ctx *c, const char *what)
{
    if (c->node->kind != SL_NODE_SOURCE || !c->src || c->src->cur < 0) {
        sl_ctx_fail(c, SL_EINVAL, "%s: only a source's reader may call it, inside poll", what);
        return NULL;
    }
    return &c->src->s[c->src->cur];
}

int sl_ctx_watermark(sl_ctx *c, int64_t wm)
{
    src_split *sp = current_split(c, "sl_ctx_watermark");
    if (!sp) return c->err;
    rescan_target(c);
    int rc = scan_pending(c); /* records read before it count first */
    if (rc) return rc;
    if (sp->idle) {
        sp->idle = 0;
        sp->empty_since = -1;
    }
    if (wm > sp->wm) sp->wm = wm;
    rc = sli_source_announce(c);
    rescan_target(c);
    return rc;
}

int sl_ctx_idle(sl_ctx *c, int idle)
{
    src_split *sp = current_split(c, "sl_ctx_idle");
    if (!sp) return c->err;
    rescan_target(c);
    int rc = scan_pending(c);
    if (rc) return rc;
    sp->idle = idle != 0;
    sp->empty_since = -1;
    rc = sli_source_announce(c);
    rescan_target(c);
    return rc;
}

void sl_ctx_split_lag(sl_ctx *c, const char *input, int32_t partition, int64_t lag)
{
    if (!c->src || c->src->cur < 0) return; /* outside poll */
    src_split *sp = &c->src->s[c->src->cur];
    if (!atomic_load_explicit(&sp->lag_set, memory_order_relaxed)) {
        snprintf(sp->lag_input, sizeof(sp->lag_input), "%s", input ? input : "");
        sp->lag_part = partition;
        atomic_store_explicit(&sp->lag, lag < 0 ? 0 : lag, memory_order_relaxed);
        atomic_store_explicit(&sp->lag_set, 1, memory_order_release);
        return;
    }
    atomic_store_explicit(&sp->lag, lag < 0 ? 0 : lag, memory_order_relaxed);
}

int sli_source_lag(struct sl_ctx *c, int k, char *input, size_t cap, int32_t *partition,
                   int64_t *lag)
{
    if (!c->src || k >= c->src->n) return -1;
    src_split *sp = &c->src->s[k];
    if (!atomic_load_explicit(&sp->lag_set, memory_order_acquire)) return 0;
    snprintf(input, cap, "%s", sp->lag_input);
    *partition = sp->lag_part;
    *lag = atomic_load_explicit(&sp->lag, memory_order_relaxed);
    return 1;
}

int sl_ctx_dead_letter(sl_ctx *c, int64_t ts, const char *reason, const void *raw, uint32_t len)
{
    if (c->node->kind != SL_NODE_SOURCE || c->node->n_ports < 2)
        return sl_ctx_fail(c, SL_EINVAL,
                           "sl_ctx_dead_letter: only sources have a dead-letter port");
    uint32_t rl = reason ? (uint32_t)strlen(reason) : 0;
    uint32_t split = c->src && c->src->cur >= 0 ? (uint32_t)c->src->s[c->src->cur].split.index : 0;
    uint8_t *out = sl_emit_port(c, 1, ts, 0, 8 + rl + len);
    if (!out) return sl_ctx_error(c) ? sl_ctx_error(c) : SL_ENOMEM;
    memcpy(out, &split, 4);
    memcpy(out + 4, &rl, 4);
    if (rl) memcpy(out + 8, reason, rl);
    if (len) memcpy(out + 8 + rl, raw, len);
    if (c->src) c->src->dead++;
    return sli_metrics_dead_letter(c, reason);
}

int sl_dead_letter_read(sl_bytes rec, sl_dead_letter *out)
{
    uint32_t split, rl;
    if (rec.len < 8) return SL_ECORRUPT;
    memcpy(&split, rec.ptr, 4);
    memcpy(&rl, (const uint8_t *)rec.ptr + 4, 4);
    if ((uint64_t)rl + 8 > rec.len) return SL_ECORRUPT;
    out->split = (int)split;
    out->reason.ptr = (const uint8_t *)rec.ptr + 8;
    out->reason.len = rl;
    out->raw.ptr = (const uint8_t *)rec.ptr + 8 + rl;
    out->raw.len = rec.len - 8 - rl;
    return 0;
}

/* --- polling ------------------------------------------------------------------------------ */

/* Idleness: polled and found nothing, for idle_ms without a break. */
static void idle_rule(struct sl_ctx *c, src_split *sp, int had_data)
{
    int64_t idle_ms = c->node->has_wm ? c->node->wm.idle_ms : 0;
    if (had_data) {
        sp->empty_since = -1;
        sp->idle = 0;
        if (idle_ms > 0) sp->last_poll = (double)sli_clock_mono_ns() * 1e-6;
        return;
    }
    if (idle_ms <= 0) return;
    double now = (double)sli_clock_mono_ns() * 1e-6;
    if (sp->empty_since < 0 || (sp->last_poll >= 0 && now - sp->last_poll > (double)idle_ms))
        sp->empty_since = now;
    if (!sp->idle && now - sp->empty_since >= (double)idle_ms) sp->idle = 1;
    sp->last_poll = now;
}

int sli_source_step(struct sl_ctx *c)
{
    sli_srcinst *si = c->src;
    if (!si || si->live == 0) return SL_POLL_END;
    int j = si->next;
    for (int k = 0; k < si->n && si->s[j].ended; k++) j = (j + 1) % si->n;
    si->next = (j + 1) % si->n;
    src_split *sp = &si->s[j];

    sl_batch *b = sl_out_batch(c, 0); /* sends a full one on first */
    if (!b) return sl_ctx_error(c) ? sl_ctx_error(c) : SL_ENOMEM;
    uint32_t from = b->count, max = SL_BATCH_CAPACITY - b->count;
    si->cur = j;
    si->scan_b = b;
    si->scan_from = from;
    si->dead = 0;
    int was_idle = sp->idle;
    int r = c->node->src->poll(c, sp->reader, max);
    c->emit_trace = NULL;
    if (r < 0) {
        si->cur = -1;
        return r;
    }
    /* Every record of the poll must be in the batch we gave it. */
    sl_batch *now = c->out[0].cur;
    uint32_t got;
    if (si->scan_b == b && now != b)
        return sl_ctx_fail(c, SL_EINVAL, "split %d: poll emitted more than the %u records asked",
                           sp->split.index, max);
    if (si->scan_b == b) {
        got = b->count - from;
    } else { /* the reader announced a watermark mid-poll */
        rescan_target(c);
        got = 1;
    }
    int rc = scan_pending(c);
    si->cur = -1;
    si->scan_b = NULL;
    if (rc) return rc;
    idle_rule(c, sp, got > 0 || si->dead > 0);
    if (r == SL_POLL_END) {
        sp->ended = 1;
        si->live--;
        keep_position(c, sp);
    }
    if (got > 0 || si->dead > 0) {
        si->empty_run = 0;
    } else if (r != SL_POLL_END) {
        si->empty_run++;
    }
    if (sp->idle != was_idle || r == SL_POLL_END) {
        rc = sli_source_announce(c);
        if (rc) return rc;
    }
    if (si->live == 0) return SL_POLL_END;
    if (r == SL_POLL_WAIT && si->empty_run >= si->live) {
        si->empty_run = 0;
        return SL_POLL_WAIT;
    }
    return SL_POLL_MORE;
}

/* --- reading positions after a run ---------------------------------------------------------------- */

static sl_node *find_source(sl_pipeline *p, const char *name)
{
    for (int i = 0; p && name && i < p->n_nodes; i++)
        if (p->nodes[i].kind == SL_NODE_SOURCE && !strcmp(p->nodes[i].name, name))
            return &p->nodes[i];
    return NULL;
}

int sl_pipeline_source_splits(sl_pipeline *p, const char *name)
{
    sl_node *n = find_source(p, name);
    if (!n) return SL_ENOENT;
    return n->srcnode && n->srcnode->enumerated ? n->srcnode->n : SL_ESTATE;
}

int sl_pipeline_source_position(sl_pipeline *p, const char *name, int split, sl_buf *out)
{
    sl_node *n = find_source(p, name);
    if (!n) return SL_ENOENT;
    sli_srcnode *sn = n->srcnode;
    if (!sn || !sn->enumerated) return SL_ESTATE;
    if (split < 0 || split >= sn->n) return SL_ERANGE;
    if (!sn->has_pos[split]) return SL_ENOENT;
    return sl_buf_append(out, sn->pos[split].ptr, sn->pos[split].len);
}

/* --- checkpoints ---------------------------------------------------------------------------- */

/* SPLITS section (coord.c puts it in the instance's snapshot), little-endian:
 *
 *   offset  size  field
 *   0       4     n: splits that follow
 *   4       24*n  per split: index u32, flags u32 (1 ended, 2 idle),
 *                 max_ts i64, wm i64
 *
 * Positions go to the checkpoint's position list (pos_fn), one per split. */
#define SPLIT_REC 24

int sli_source_snapshot(struct sl_ctx *c, sl_buf *splits, sli_pos_fn pos_fn, void *ud)
{
    sli_srcinst *si = c->src;
    const sl_source *src = c->node->src;
    uint32_t n = si ? (uint32_t)si->n : 0;
    if (sl_buf_reserve(splits, 4 + (size_t)n * SPLIT_REC)) return SL_ENOMEM;
    uint8_t *d = (uint8_t *)splits->ptr + splits->len;
    sli_put_le(d, n, 4);
    sl_buf pos = {0};
    int rc = 0;
    for (uint32_t j = 0; j < n && !rc; j++) {
        src_split *sp = &si->s[j];
        uint8_t *r = d + 4 + (size_t)j * SPLIT_REC;
        sli_put_le(r, (uint32_t)sp->split.index, 4);
        sli_put_le(r + 4, (sp->ended ? 1u : 0u) | (sp->idle ? 2u : 0u), 4);
        sli_put_le(r + 8, (uint64_t)sp->max_ts, 8);
        sli_put_le(r + 16, (uint64_t)sp->wm, 8);
        pos.len = 0;
        if (src->position && sp->opened) {
            rc = src->position(c, sp->reader, &pos);
            if (rc < 0) {
                rc = sl_ctx_fail(c, rc, "split %d: position() failed: %s", sp->split.index,
                                 sl_strerror(rc));
                break;
            }
            rc = 0;
        }
        if (pos.len > UINT32_MAX) rc = SL_ERANGE;
        if (!rc) rc = pos_fn(ud, (uint32_t)sp->split.index, pos.ptr, (uint32_t)pos.len);
    }
    sl_buf_free(&pos);
    if (!rc) splits->len += 4 + (size_t)n * SPLIT_REC;
    return rc;
}

static src_split *find_split(sli_srcinst *si, uint32_t index)
{
    for (int j = 0; si && j < si->n; j++)
        if ((uint32_t)si->s[j].split.index == index) return &si->s[j];
    return NULL;
}

int sli_source_restore_splits(struct sl_ctx *c, const void *data, size_t len)
{
    const uint8_t *d = data;
    if (len < 4 || (len - 4) / SPLIT_REC != sli_get_le(d, 4) || (len - 4) % SPLIT_REC)
        return sl_ctx_fail(c, SL_ECORRUPT, "checkpoint: split section of %zu bytes is malformed",
                           len);
    uint32_t n = (uint32_t)sli_get_le(d, 4);
    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *r = d + 4 + (size_t)k * SPLIT_REC;
        src_split *sp = find_split(c->src, (uint32_t)sli_get_le(r, 4));
        if (!sp) continue; /* another instance's split */
        sp->max_ts = (int64_t)sli_get_le(r + 8, 8);
        sp->wm = (int64_t)sli_get_le(r + 16, 8);
        c->restored_src = 1;
    }
    return 0;
}

int sli_source_restore_position(struct sl_ctx *c, uint32_t index, const void *pos, size_t len)
{
    src_split *sp = find_split(c->src, index);
    if (!sp) return 1;
    const sl_source *src = c->node->src;
    if (!len) return 0; /* a source without positions: it starts over */
    if (!src->seek)
        return sl_ctx_fail(c, SL_EINVAL,
                           "split %u: the source cannot seek, so it cannot resume from a "
                           "checkpoint",
                           index);
    int rc = src->seek(c, sp->reader, pos, len);
    if (rc < 0 && !c->err)
        sl_ctx_fail(c, rc, "split %u: cannot resume from the checkpoint's position: %s", index,
                    sl_strerror(rc));
    c->restored_src = 1;
    return rc < 0 ? rc : 0;
}

int sli_source_n_splits(const struct sl_ctx *c)
{
    return c->node->srcnode ? c->node->srcnode->n : 0;
}

void sli_source_split_desc(const struct sl_ctx *c, int index, const void **desc, size_t *len)
{
    const sli_srcnode *sn = c->node->srcnode;
    *desc = NULL;
    *len = 0;
    if (!sn || index < 0 || index >= sn->n || !sn->desc) return;
    *desc = sn->desc[index].ptr;
    *len = sn->desc[index].len;
}
