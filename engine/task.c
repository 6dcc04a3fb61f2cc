/*
 * engine/task.c - what a task does when a worker activates it.
 *
 * An activation (sli_task_activate) first tries to move output that waits for
 * credit into its channels; while any still waits, the task takes no input
 * (that is the backpressure). Then it runs up to SL_QUANTUM steps: a source
 * task polls its source, any other task takes one message from one of its
 * input channels (round robin) and handles it:
 *
 *   DATA       -> process() of the root instance, whose emits flow by function
 *                 call through the chained instances and into output edges
 *   WATERMARK  -> per-channel watermark; the task's watermark is the minimum
 *                 over channels that are neither idle nor ended, and it only
 *                 moves forward; when it does, each instance of the chain in
 *                 turn fires its due timers, gets watermark(), and passes the
 *                 watermark on (data emitted before it is flushed first)
 *   IDLE/ACTIVE-> excludes / re-includes the channel in the minimum
 *   BARRIER(n) -> alignment: the channel is held until BARRIER(n) came on
 *                 every open channel; then every instance of the chain is
 *                 snapshotted and the barrier passes on
 *   END(c)     -> when every channel has ended: watermark +inf (not when c,
 *                 a cancel: below), end() of each instance in chain order,
 *                 END(c) on every output channel
 *
 * Cancel. END carries a flag (the message value): 0 is the end of the input,
 * 1 a cancel (sl_pipeline_cancel): the source stopped before the end of its
 * input. A canceled END does NOT move the watermark to +inf: what is in
 * flight drains to the sinks, but windows and timers that the input did not
 * complete never fire (as in Flink). A channel that ended canceled keeps
 * its last watermark in the task's minimum (it is not dropped from it as a
 * finished input is), so the other inputs cannot push the watermark past
 * what it delivered; a task with any canceled input ends canceled and sends
 * END(1) on. end() still runs, and sl_ctx_end_canceled() tells it which end
 * this is, so an operator that emits at the end (a final aggregate, a
 * sorting sink) emits nothing partial as if complete.
 *
 * At the end of an activation partly filled output batches are flushed, so a
 * slow stream is not held back waiting for a full batch.
 *
 * Channels do not call the scheduler: a send or a drain that put messages in
 * the ring says so, and this file wakes the consumer right after (and the
 * consumer, taking a message, wakes a producer that waits for credit).
 *
 * The callback contract (sluice/operator.h): open, process, watermark,
 * timer, end and proc_timer return 0 or a negative SL_E code. Anything else
 * stops the job with "operator 'X' (kind): process() returned 3, expected 0
 * or a negative SL_E code"; the check is the same one branch as before, on
 * a return value that is almost always 0.
 *
 * Records delivered on a port are counted per batch into the instance's
 * counter the plan gave the port (records out, late, dead letters), and
 * records taken in into its records-in counter: a plain load and store per
 * batch, no shared atomic; the pipeline's totals are their sums.
 *
 * Runs on a worker thread; the scheduler guarantees one activation of a task
 * at a time, so nothing here takes a lock.
 */
#include "engine/task.h"
#include "engine/spans.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/wakeup.h"
#include "sluice/trace.h"
#include "engine/pool.h"
#include "engine/sched.h"
#include "engine/timer.h"
#include "engine/base/clock.h"

#define SL_QUANTUM 16

static void task_error(sl_task *t, struct sl_ctx *c, int rc)
{
    sl_pipeline *p = t->p;
    if (!atomic_load(&p->failed)) {
        const char *kind = c->node->op ? c->node->op->kind : c->node->src->kind;
        sli_pipeline_fail(p, rc, "operator '%s' (%s): %s", c->node->name, kind ? kind : "?",
                          sl_strerror(rc));
    }
    atomic_store(&p->failed, 1);
}

/* Callback `fn` of instance c returned rc != 0: a negative code is its
 * failure, a positive value breaks the contract. Returns the code the
 * caller passes on. */
static int callback_failed(struct sl_ctx *c, const char *fn, int rc)
{
    if (rc < 0) {
        task_error(c->task, c, rc);
        return rc;
    }
    sl_pipeline *p = c->p;
    if (!atomic_load(&p->failed)) {
        const char *kind = c->node->op ? c->node->op->kind : c->node->src->kind;
        sli_pipeline_fail(p, SL_EOPERATOR,
                          "operator '%s' (%s): %s() returned %d, expected 0 or a negative SL_E "
                          "code",
                          c->node->name, kind ? kind : "?", fn, rc);
    }
    atomic_store(&p->failed, 1);
    return SL_EOPERATOR;
}

/* --- output ----------------------------------------------------------------- */

static int edge_send(struct sl_ctx *c, sl_channel *ch, sl_msg *m)
{
    int rc = sli_channel_send(ch, m, &c->task->blocked);
    if (rc > 0) {
        sli_task_wake(ch->consumer); /* after the publish: see sched.h */
        return 0;
    }
    if (rc && m->batch) sli_batch_put(c->p, m->batch);
    return rc;
}

static int edge_send_batch(struct sl_ctx *c, sl_channel *ch, sl_batch *b)
{
    sl_msg m = {.kind = SL_MSG_DATA, .batch = b};
    /* a traced batch's send time: its records' queueing delay (spans.c) */
    if (b->trace && c->p->spans && c->p->tracer) m.value = sl_trace_now_ns();
    return edge_send(c, ch, &m);
}

/* Send the partly filled per-destination batches of a hash edge. */
static int edge_flush(struct sl_ctx *c, sl_edge *e)
{
    int rc = 0;
    if (e->part != SL_PART_HASH) return 0;
    for (int k = 0; k < e->n_ch && !rc; k++) {
        sl_batch *b = e->build[k];
        if (!b || b->count == 0) continue;
        e->build[k] = NULL;
        rc = edge_send_batch(c, e->ch[k], b);
    }
    return rc;
}

/* The hash shuffle of a batch that carries trace contexts: the generic
 * per-record copy, which takes each record's context along (the untraced
 * loop below never looks at the column). Takes b over. */
static int edge_hash_traced(struct sl_ctx *c, sl_edge *e, sl_batch *b)
{
    sl_pipeline *p = c->p;
    uint32_t n_ch = (uint32_t)e->n_ch;
    int rc = 0;
    for (uint32_t i = 0; i < b->count && !rc; i++) {
        uint32_t d = sl_key_group_owner(sl_key_group(b->hash[i]), n_ch);
        sl_batch *o = e->build[d];
        if (!o && !(o = e->build[d] = sli_batch_get(p, b->width))) {
            rc = SL_ENOMEM;
            break;
        }
        rc = sli_batch_append_from(o, b, i);
        if (!rc && o->count == SL_BATCH_CAPACITY) {
            e->build[d] = NULL;
            rc = edge_send_batch(c, e->ch[d], o);
        }
    }
    sli_batch_put(p, b);
    return rc;
}

static int edge_data(struct sl_ctx *c, sl_edge *e, sl_batch *b)
{
    sl_pipeline *p = c->p;
    switch (e->part) {
    case SL_PART_FORWARD: return edge_send_batch(c, e->ch[c->instance % e->n_ch], b);
    case SL_PART_REBALANCE: return edge_send_batch(c, e->ch[e->rr++ % (uint32_t)e->n_ch], b);
    case SL_PART_BROADCAST:
        for (int k = 0; k < e->n_ch - 1; k++) {
            sl_batch *copy = sli_batch_clone(&p->pool, sli_sched_cache(), b);
            if (!copy) {
                sli_batch_put(p, b);
                return SL_ENOMEM;
            }
            int rc = edge_send_batch(c, e->ch[k], copy);
            if (rc) {
                sli_batch_put(p, b);
                return rc;
            }
        }
        return edge_send_batch(c, e->ch[e->n_ch - 1], b);
    case SL_PART_HASH: break;
    }
    uint32_t n_ch = (uint32_t)e->n_ch;
    if (n_ch == 1) return edge_send_batch(c, e->ch[0], b);
    int rc = 0;
    uint32_t w = b->width;
    if (b->trace) return edge_hash_traced(c, e, b);
    for (uint32_t i = 0; i < b->count && !rc; i++) {
        uint32_t d = sl_key_group_owner(sl_key_group(b->hash[i]), n_ch);
        sl_batch *o = e->build[d];
        if (!o) {
            o = e->build[d] = sli_batch_get(p, w);
            if (!o) {
                rc = SL_ENOMEM;
                break;
            }
        }
        if (w) { /* fixed width: copy the columns directly */
            uint32_t k = o->count++;
            o->ts[k] = b->ts[i];
            o->hash[k] = b->hash[i];
            memcpy(o->data + (size_t)k * w, b->data + (size_t)i * w, w);
        } else {
            rc = sli_batch_append_from(o, b, i);
        }
        if (!rc && o->count == SL_BATCH_CAPACITY) {
            e->build[d] = NULL;
            rc = edge_send_batch(c, e->ch[d], o);
        }
    }
    sli_batch_put(p, b);
    return rc;
}

static int inst_process(struct sl_ctx *c, int input, sl_batch *b);
static int inst_watermark(struct sl_ctx *c, int64_t wm);
static int inst_control_out(struct sl_ctx *c, uint32_t kind, int64_t value,
                            int (*chained)(struct sl_ctx *, int64_t));

/* Hand batch b (owned by us) to every target of port o of instance c. */
static int deliver(struct sl_ctx *c, sl_port *o, sl_batch *b)
{
    sl_pipeline *p = c->p;
    sli_count(o->mcount, b->count);
    if (o->mbytes) sli_count(o->mbytes, sli_batch_bytes(b));
    if (o->n_targets == 0) {
        sli_batch_put(p, b);
        return 0;
    }
    for (int k = 0; k < o->n_targets; k++) {
        int last = k == o->n_targets - 1;
        sl_batch *bb = last ? b : sli_batch_clone(&p->pool, sli_sched_cache(), b);
        if (!bb) {
            sli_batch_put(p, b);
            return SL_ENOMEM;
        }
        sl_target *t = &o->targets[k];
        /* Both calls take bb over, also when they fail. */
        int rc = t->chained ? inst_process(t->chained, t->input, bb) : edge_data(c, t->edge, bb);
        if (rc) {
            if (!last) sli_batch_put(p, b);
            return rc;
        }
    }
    return 0;
}

static int port_flush(struct sl_ctx *c, sl_port *o)
{
    sl_batch *b = o->cur;
    if (!b || b->count == 0) return 0;
    o->cur = NULL;
    return deliver(c, o, b);
}

int sli_ctx_flush_all(struct sl_ctx *c)
{
    int rc = 0;
    for (int port = 0; port < c->node->n_ports && !rc; port++) {
        sl_port *o = &c->out[port];
        rc = port_flush(c, o);
        for (int k = 0; k < o->n_targets && !rc; k++)
            if (o->targets[k].edge) rc = edge_flush(c, o->targets[k].edge);
    }
    return rc;
}

static int task_flush(sl_task *t)
{
    for (int i = 0; i < t->n_insts; i++) {
        int rc = sli_ctx_flush_all(t->insts[i]);
        if (rc) return rc;
    }
    return 0;
}

sl_batch *sl_out_batch(sl_ctx *c, int port)
{
    if (port < 0 || port >= c->node->n_ports) {
        sl_ctx_fail(c, SL_EINVAL, "emit to port %d, which the node does not have", port);
        return NULL;
    }
    sl_port *o = &c->out[port];
    sl_batch *b = o->cur;
    if (b && b->count == SL_BATCH_CAPACITY) {
        o->cur = NULL;
        int rc = deliver(c, o, b);
        if (rc) {
            task_error(c->task, c, rc);
            return NULL;
        }
        b = NULL;
    }
    if (!b && !(b = o->cur = sli_batch_get(c->p, o->width)))
        sl_ctx_fail(c, SL_ENOMEM, "out of memory");
    return b;
}

void *sl_emit_port(sl_ctx *c, int port, int64_t ts, uint64_t hash, uint32_t len)
{
    sl_batch *b = sl_out_batch(c, port);
    if (!b) return NULL;
    if (b->width && len != b->width) {
        sl_ctx_fail(c, SL_EINVAL, "emitted %u bytes into a stream of %u-byte records", len,
                    b->width);
        return NULL;
    }
    void *dst = sl_batch_reserve(b, ts, hash, len);
    if (!dst) {
        sl_ctx_fail(c, SL_ENOMEM, "out of memory for a %u-byte record", len);
        return NULL;
    }
    /* The one test an untraced pipeline pays per emitted record. */
    if (c->emit_trace && sl_batch_set_trace(b, b->count - 1, c->emit_trace) != 0) {
        sl_ctx_fail(c, SL_ENOMEM, "out of memory for a trace column");
        return NULL;
    }
    return dst;
}

void sl_ctx_set_trace(sl_ctx *c, const sl_trace_ctx *tc)
{
    c->emit_trace = sl_trace_ctx_valid(tc) ? tc : NULL;
}

void *sl_emit_from(sl_ctx *c, const sl_batch *in, uint32_t i, int64_t ts, uint64_t hash,
                   uint32_t len)
{
    const sl_trace_ctx *keep = c->emit_trace;
    c->emit_trace = in && in->trace && i < in->count ? sl_batch_trace(in, i) : NULL;
    void *dst = sl_emit_port(c, 0, ts, hash, len);
    c->emit_trace = keep;
    return dst;
}

void sl_ctx_trace_malformed(sl_ctx *c)
{
    atomic_fetch_add_explicit(&c->p->trace_malformed, 1, memory_order_relaxed);
}

void *sl_emit(sl_ctx *c, int64_t ts, uint64_t hash, uint32_t len)
{
    return sl_emit_port(c, 0, ts, hash, len);
}

int sl_emit_copy(sl_ctx *c, int64_t ts, uint64_t hash, const void *payload, uint32_t len)
{
    void *dst = sl_emit_port(c, 0, ts, hash, len);
    if (!dst) return sl_ctx_error(c) ? sl_ctx_error(c) : SL_ENOMEM;
    if (len) memcpy(dst, payload, len);
    return 0;
}

int sl_forward(sl_ctx *c, sl_batch *in)
{
    sl_port *o = &c->out[0];
    if (c->node->n_ports < 1 || in->width != o->width)
        return sl_ctx_fail(c, SL_EINVAL, "forwarded a batch of width %u into a stream of width %u",
                           in->width, o->width);
    c->forwarded = 1;
    int rc = port_flush(c, o); /* keep order: what was emitted before goes first */
    if (rc) {
        sli_batch_put(c->p, in);
        return rc;
    }
    return deliver(c, o, in);
}

/* --- instances ---------------------------------------------------------------- */

static int inst_process(struct sl_ctx *c, int input, sl_batch *b)
{
    sli_count(&c->m.in, b->count);
    sli_count(&c->m.bytes_in, sli_batch_bytes(b));
    c->cur_input = input;
    c->forwarded = 0;
    int rc = c->node->op->process(c, c->self, b);
    c->emit_trace = NULL; /* it may point into b */
    if (!c->forwarded) {
        /* b's records leave the chain here: their trace points' spans end */
        if (b->trace && c->p->spans) sli_spans_end_batch(c, b);
        sli_batch_put(c->p, b);
    }
    c->forwarded = 0;
    if (rc) return callback_failed(c, "process", rc);
    return c->task->p->failed ? SL_ECANCELED : 0;
}

/* The source layer (source.c) decides when; these send. */
int sli_source_send_watermark(struct sl_ctx *c, int64_t wm)
{
    return inst_watermark(c, wm);
}

int sli_source_send_idle(struct sl_ctx *c, int idle)
{
    return inst_control_out(c, idle ? SL_MSG_IDLE : SL_MSG_ACTIVE, 0, NULL);
}

/* Send a control message on every channel of every edge of c's ports,
 * after the data emitted before it. */
static int inst_control_out(struct sl_ctx *c, uint32_t kind, int64_t value,
                            int (*chained)(struct sl_ctx *, int64_t))
{
    int rc = sli_ctx_flush_all(c);
    for (int port = 0; port < c->node->n_ports && !rc; port++) {
        sl_port *o = &c->out[port];
        for (int k = 0; k < o->n_targets && !rc; k++) {
            sl_target *t = &o->targets[k];
            if (t->chained) {
                if (chained) rc = chained(t->chained, value);
                continue;
            }
            for (int j = 0; j < t->edge->n_ch && !rc; j++) {
                sl_msg m = {.kind = kind, .value = value};
                rc = edge_send(c, t->edge->ch[j], &m);
            }
        }
    }
    return rc;
}

static int inst_watermark(struct sl_ctx *c, int64_t wm)
{
    if (wm <= c->wm) return 0;
    c->wm = wm;
    const sl_operator *op = c->node->op;
    int rc = 0;
    const char *fn = "timer";
    if (op && c->timers) {
        sl_timer tm;
        while (!rc && sli_timers_pop(c->timers, wm, &tm)) {
            if (op->timer) rc = op->timer(c, c->self, &tm);
        }
    }
    if (!rc && op && op->watermark) {
        fn = "watermark";
        rc = op->watermark(c, c->self, wm);
    }
    c->emit_trace = NULL;
    if (rc) return callback_failed(c, fn, rc);
    atomic_store_explicit(&c->pub_wm, wm, memory_order_relaxed);
    return inst_control_out(c, SL_MSG_WATERMARK, wm, inst_watermark);
}

/* End of the instance's input: complete (canceled 0: watermark +inf first)
 * or cut by a cancel (canceled 1: the watermark stays). */
static int inst_end(struct sl_ctx *c, int64_t canceled)
{
    int rc = canceled ? 0 : inst_watermark(c, SL_TIME_MAX);
    if (rc) return rc;
    c->end_canceled = canceled != 0;
    const sl_operator *op = c->node->op;
    if (op && op->end) {
        rc = op->end(c, c->self);
        c->emit_trace = NULL;
        if (rc) return callback_failed(c, "end", rc);
    }
    c->ended = 1;
    return inst_control_out(c, SL_MSG_END, canceled != 0, inst_end);
}

int sl_ctx_end_canceled(const sl_ctx *c)
{
    return c->end_canceled;
}

/* Snapshot hook of every instance of the chain, then the barrier passes on. */
static int task_barrier(sl_task *t, uint64_t id)
{
    sl_pipeline *p = t->p;
    for (int i = 0; i < t->n_insts; i++) {
        struct sl_ctx *c = t->insts[i];
        int rc = sli_ctx_flush_all(c);
        if (!rc && p->on_barrier) rc = p->on_barrier(p, c, id, p->on_barrier_ud);
        if (rc < 0) {
            task_error(t, c, rc);
            return rc;
        }
    }
    if (p->chk_barrier) {
        int rc = p->chk_barrier(t, id);
        if (rc < 0) {
            task_error(t, t->root, rc);
            return rc;
        }
    }
    /* Forward on network edges only: chained instances were handled above. */
    for (int i = 0; i < t->n_insts; i++) {
        int rc = inst_control_out(t->insts[i], SL_MSG_BARRIER, (int64_t)id, NULL);
        if (rc) return rc;
    }
    return 0;
}

/* --- inputs ------------------------------------------------------------------- */

static int64_t inputs_watermark(sl_task *t, int *any_active)
{
    int64_t wm = SL_TIME_MAX;
    *any_active = 0;
    for (int i = 0; i < t->n_in; i++) {
        sl_channel *ch = t->in[i];
        if (ch->ended ? !ch->end_canceled : ch->idle) continue; /* a canceled one holds */
        *any_active = 1;
        if (ch->wm < wm) wm = ch->wm;
    }
    return wm;
}

static int task_advance_watermark(sl_task *t)
{
    int any;
    int64_t wm = inputs_watermark(t, &any);
    if (!any && t->n_open_in > 0) return 0; /* every open input idle: hold */
    if (wm <= t->wm) return 0;
    t->wm = wm;
    return inst_watermark(t->root, wm);
}

/* When every open input is idle the task's outputs are idle too; the first
 * input to become active again makes them active. */
static int task_idle_changed(sl_task *t)
{
    int any;
    inputs_watermark(t, &any);
    int idle = !any && t->n_open_in > 0;
    int rc = 0;
    if (idle != t->idle_out) {
        t->idle_out = idle;
        for (int i = 0; i < t->n_insts && !rc; i++)
            rc = inst_control_out(t->insts[i], idle ? SL_MSG_IDLE : SL_MSG_ACTIVE, 0, NULL);
    }
    if (!rc) rc = task_advance_watermark(t);
    return rc;
}

static int check_alignment(sl_task *t)
{
    if (!t->barrier) return 0;
    for (int i = 0; i < t->n_in; i++)
        if (!t->in[i]->ended && !t->in[i]->aligned) return 0;
    uint64_t id = t->barrier;
    t->barrier = 0;
    for (int i = 0; i < t->n_in; i++) t->in[i]->aligned = 0;
    return task_barrier(t, id);
}

static int handle_msg(sl_task *t, sl_channel *ch, sl_msg *m)
{
    switch (m->kind) {
    case SL_MSG_DATA:
        if (m->value && m->batch->trace) sli_spans_waited(m->batch, m->value);
        return inst_process(t->root, ch->input, m->batch);
    case SL_MSG_WATERMARK:
        if (m->value > ch->wm) ch->wm = m->value;
        return task_advance_watermark(t);
    case SL_MSG_IDLE: ch->idle = 1; return task_idle_changed(t);
    case SL_MSG_ACTIVE: ch->idle = 0; return task_idle_changed(t);
    case SL_MSG_BARRIER:
        /* Channels are FIFO and sources send every id in order, and an
         * aligned channel is not read until alignment completes: so all
         * channels deliver the same id next. */
        if (!t->barrier) {
            t->barrier = (uint64_t)m->value;
            t->barrier_ns = t->p->tracer ? sl_trace_now_ns() : 0; /* the alignment's span */
        }
        if ((uint64_t)m->value != t->barrier)
            return sl_ctx_fail(t->root, SL_ECORRUPT, "barrier %lld arrived while aligning %llu",
                               (long long)m->value, (unsigned long long)t->barrier);
        ch->aligned = 1;
        return check_alignment(t);
    case SL_MSG_END: {
        ch->ended = 1;
        if (m->value) ch->end_canceled = t->in_canceled = 1;
        int rc = 0;
        if (--t->n_open_in == 0) {
            rc = inst_end(t->root, t->in_canceled);
            t->ended = 1;
        } else {
            rc = task_advance_watermark(t);
            if (!rc) rc = check_alignment(t);
        }
        return rc;
    }
    }
    return SL_EINVAL;
}

/* Take one message from the next channel that has one and is not held by
 * barrier alignment. Returns 1 if one was handled, 0 if none, < 0 error. */
static int take_input(sl_task *t)
{
    for (int k = 0; k < t->n_in; k++) {
        int i = (t->in_next + k) % t->n_in;
        sl_channel *ch = t->in[i];
        if (ch->aligned || ch->ended) continue;
        sl_msg m;
        if (!sli_channel_pop(ch, &m)) continue;
        if (atomic_load_explicit(&ch->producer_waiting, memory_order_seq_cst)) {
            atomic_store_explicit(&ch->producer_waiting, 0, memory_order_relaxed);
            sli_task_wake(ch->producer);
        }
        t->in_next = (i + 1) % t->n_in;
        int rc = handle_msg(t, ch, &m);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

/* --- sources ------------------------------------------------------------------ */

/* canceled: the source stops before the end of its input (a cancel). */
static int source_end(sl_task *t, int canceled)
{
    if (canceled) atomic_store(&t->p->cancel_cut, 1);
    int rc = inst_end(t->root, canceled);
    t->ended = 1;
    return rc;
}

/* One poll. Returns 1 to go on, 0 to stop this activation, < 0 error. */
static int source_step(sl_task *t)
{
    struct sl_ctx *c = t->root;
    sl_pipeline *p = t->p;
    /* Send every requested barrier, in order, so that each channel carries
     * each id and alignment downstream can match them one by one. */
    if (c->restored_src) { /* resumed: the restored watermark before any record */
        c->restored_src = 0;
        int rc = t->src_announce(c);
        if (rc) return rc;
    }
    uint64_t want = atomic_load(&t->inject_barrier);
    while (t->barrier_sent < want) {
        int rc = task_barrier(t, ++t->barrier_sent);
        if (rc) return rc;
    }
    if (atomic_load_explicit(&p->canceled, memory_order_relaxed)) {
        int rc = source_end(t, 1);
        return rc ? rc : 0;
    }
    int r = t->src_step(c);
    if (r < 0) {
        task_error(t, c, r);
        return r;
    }
    if (p->failed) return SL_ECANCELED;
    switch (r) {
    case SL_POLL_MORE: t->wait_ms = 0; return 1;
    case SL_POLL_WAIT: t->waiting = 1; return 0;
    default: { /* the reader's end; under a cancel it may be one it made */
        int rc = source_end(t, atomic_load_explicit(&p->canceled, memory_order_relaxed));
        return rc ? rc : 0;
    }
    }
}

/* How long a source that has nothing waits before it is polled again: 1 ms
 * after data, doubling while polls keep finding nothing, up to 16 ms (or a
 * quarter of the node's idle_ms, so that idleness, which needs polls closer
 * than idle_ms, is still seen). An idle source then costs ~60 activations a
 * second instead of 1,000 (a process with a dozen idle Kafka tasks burnt a
 * core on them and starved librdkafka's heartbeats); a record arriving after
 * silence waits at most the cap. */
static double source_wait_ms(sl_task *t)
{
    double cap = 16.0;
    const sl_node *n = t->root->node;
    if (n->has_wm && n->wm.idle_ms > 0 && (double)n->wm.idle_ms / 4 < cap)
        cap = (double)n->wm.idle_ms / 4;
    if (cap < 1.0) cap = 1.0;
    t->wait_ms = t->wait_ms < 1.0 ? 1.0 : t->wait_ms * 2;
    if (t->wait_ms > cap) t->wait_ms = cap;
    return t->wait_ms;
}

/* --- activation ------------------------------------------------------------------ */

/* Fire the processing-time timers that are due, in due order per instance,
 * and arrange a wake-up for the earliest one left. */
static int fire_proc_timers(sl_task *t)
{
    int64_t now = sl_clock_ms();
    if (now < t->proc_wake_at) return 0;
    int64_t next = INT64_MAX;
    for (int i = 0; i < t->n_insts; i++) {
        struct sl_ctx *c = t->insts[i];
        if (!c->proc_timers) continue;
        sl_timer tm;
        while (sli_timers_pop(c->proc_timers, now, &tm)) {
            int rc = c->node->op->proc_timer(c, c->self, &tm);
            c->emit_trace = NULL;
            if (rc) return callback_failed(c, "proc_timer", rc);
        }
        int64_t n = sli_timers_next(c->proc_timers);
        if (n < next) next = n;
    }
    t->proc_wake_at = next;
    if (next != INT64_MAX) sli_task_wake_later(t, (double)(next - now));
    return 0;
}

/* Backpressure time (metrics): a spell of waiting for credit begins when an
 * activation ends blocked and ends when an activation finds credit again.
 * Two clock reads per spell, none while records flow. The pair
 * (blocked_ns, blocked_since) changes under a sequence number (odd while it
 * changes) so that a reader on another thread never sees an ended spell
 * both in the total and as ongoing, or in neither (sli_task_blocked_ns).
 * Sequentially consistent stores: a few per spell, never per record. */
static void blocked_note(sl_task *t)
{
    int64_t since = atomic_load_explicit(&t->blocked_since, memory_order_relaxed);
    if (t->blocked == !!since) return;
    uint32_t seq = atomic_load_explicit(&t->blocked_seq, memory_order_relaxed);
    atomic_store(&t->blocked_seq, seq + 1);
    if (t->blocked) {
        atomic_store(&t->blocked_since, sli_clock_mono_ns());
    } else {
        int64_t d = sli_clock_mono_ns() - since;
        uint64_t ns = atomic_load_explicit(&t->blocked_ns, memory_order_relaxed);
        atomic_store(&t->blocked_ns, ns + (d > 0 ? (uint64_t)d : 0));
        atomic_store(&t->blocked_since, 0);
    }
    atomic_store(&t->blocked_seq, seq + 2);
}

uint64_t sli_task_blocked_ns(sl_task *t)
{
    for (;;) {
        uint32_t s1 = atomic_load(&t->blocked_seq);
        uint64_t ns = atomic_load(&t->blocked_ns);
        int64_t since = atomic_load(&t->blocked_since);
        uint32_t s2 = atomic_load(&t->blocked_seq);
        if (s1 != s2 || (s1 & 1)) continue;
        if (since) {
            int64_t d = sli_clock_mono_ns() - since;
            if (d > 0) ns += (uint64_t)d;
        }
        return ns;
    }
}

static int task_activate(sl_task *t);

/* Returns 1 when the task should be activated again right away. */
int sli_task_activate(sl_task *t)
{
    int again = task_activate(t);
    if (t->blocked || atomic_load_explicit(&t->blocked_since, memory_order_relaxed))
        blocked_note(t);
    return again;
}

static int task_activate(sl_task *t)
{
    sl_pipeline *p = t->p;
    if (t->finished || atomic_load_explicit(&p->failed, memory_order_relaxed)) return 0;
    if (t->blocked) {
        t->blocked = 0;
        for (int i = 0; i < t->n_out; i++) {
            int wake = 0;
            if (sli_channel_drain(t->out[i], &wake)) t->blocked = 1;
            if (wake) sli_task_wake(t->out[i]->consumer); /* after the publish */
        }
        if (t->blocked) return 0;
        blocked_note(t);
    }
    int rc = 0, again = 0;
    if (!t->ended && t->proc_wake_at != INT64_MAX && (rc = fire_proc_timers(t)) < 0) return 0;
    if (!t->ended) {
        int is_source = t->root->node->kind == SL_NODE_SOURCE;
        for (int q = 0; q < SL_QUANTUM && !t->blocked && !t->ended; q++) {
            rc = is_source ? source_step(t) : take_input(t);
            if (rc <= 0) break;
        }
        if (rc > 0 && !t->blocked && !t->ended) again = 1;
        /* Periodic source watermarks: once per activation. */
        if (rc >= 0 && is_source && !t->ended) rc = t->src_announce(t->root);
        if (rc >= 0) rc = task_flush(t);
    }
    if (rc < 0) {
        if (!p->failed) task_error(t, t->root, rc);
        return 0;
    }
    if (t->waiting && !t->blocked) {
        t->waiting = 0;
        sli_task_wake_later(t, source_wait_ms(t));
    }
    if (t->ended && !t->blocked) {
        t->finished = 1;
        if (p->chk_finished) p->chk_finished(t);
        sli_task_finished(t);
        return 0;
    }
    /* A non-source task with input left keeps going (the quantum ran out). */
    return again;
}
