/*
 * engine/plan.c - from the logical graph to the physical plan.
 *
 * Every node runs as `parallelism` instances (sl_ctx). An input edge is
 * *chained* when it is a forward edge between equal parallelism into a node
 * with one input: instance i of the consumer then runs inside the task of
 * instance i of the producer, and records pass by function call. Every other
 * edge becomes, for each producer instance, an sl_edge of channels to all
 * consumer instances; data goes where the partitioning says (forward: the
 * same index, hash: the owner of the record's key group, rebalance: round
 * robin, broadcast: all), and control messages go to every channel, so that
 * each consumer instance sees watermarks and end of stream from every
 * producer instance.
 *
 * Tasks are made in node order, which is topological, so a task's instance
 * list (root first) is a topological order of its chain.
 *
 * The plan is built once per pipeline (p->planned): by sl_pipeline_explain()
 * or by start, whichever comes first; then the graph is frozen (pipeline.c).
 * Each output port gets the instance's counter its records are added to
 * (records out, late or dead letters by the port's role, and bytes out on
 * data ports); the pipeline's totals are their sums (job.c).
 */
#include "engine/plan.h"
#include "engine/metrics.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/pool.h"
#include "engine/sched.h"
#include "engine/source.h"
#include "sluice/state.h"

static int is_chained(sl_pipeline *p, const sl_node *n)
{
    if (n->kind == SL_NODE_SOURCE || n->n_in != 1) return 0;
    const struct sl_stream *s = n->in[0];
    return s->part == SL_PART_FORWARD && p->nodes[s->node].parallelism == n->parallelism;
}

static int add_target(sl_port *port, sl_target t)
{
    sl_target *n = realloc(port->targets, (size_t)(port->n_targets + 1) * sizeof(*n));
    if (!n) return SL_ENOMEM;
    n[port->n_targets++] = t;
    port->targets = n;
    return 0;
}

static int push_ptr(void ***arr, int *n, void *v)
{
    void **a = realloc(*arr, (size_t)(*n + 1) * sizeof(void *));
    if (!a) return SL_ENOMEM;
    a[(*n)++] = v;
    *arr = a;
    return 0;
}

/* Instances of node k start at ctx index base[k]. */
static int validate(sl_pipeline *p)
{
    if (p->n_nodes == 0) return sl_pipeline_error(p, SL_EINVAL, "the pipeline has no nodes");
    int *consumed = calloc((size_t)p->n_nodes, sizeof(int));
    if (!consumed) return sl_pipeline_error(p, SL_ENOMEM, "out of memory");
    for (int k = 0; k < p->n_nodes; k++)
        for (int i = 0; i < p->nodes[k].n_in; i++)
            if (p->nodes[k].in[i]->port == 0) consumed[p->nodes[k].in[i]->node] = 1;
    int rc = 0;
    for (int k = 0; k < p->n_nodes && !rc; k++) {
        sl_node *n = &p->nodes[k];
        if (n->kind != SL_NODE_SINK && !consumed[k])
            rc = sl_pipeline_error(
                p, SL_EINVAL, "node '%s': its output goes nowhere (connect it to a sink)", n->name);
    }
    free(consumed);
    return rc;
}

int sli_plan_build(sl_pipeline *p)
{
    if (p->planned) return 0;
    int rc = validate(p);
    if (rc) return rc;
    int *base = calloc((size_t)p->n_nodes, sizeof(int));
    if (!base) return sl_pipeline_error(p, SL_ENOMEM, "out of memory");

    /* Instances. */
    int total = 0;
    for (int k = 0; k < p->n_nodes; k++) {
        sl_node *n = &p->nodes[k];
        if (n->parallelism == 0)
            n->parallelism = n->inherit ? p->nodes[n->in[0]->node].parallelism : p->parallelism;
        base[k] = total;
        total += n->parallelism;
    }
    p->ctxs = calloc((size_t)total, sizeof(*p->ctxs));
    if (!p->ctxs) goto oom;
    p->n_ctx = total;
    for (int k = 0; k < p->n_nodes; k++) {
        sl_node *n = &p->nodes[k];
        n->chained = is_chained(p, n);
        for (int i = 0; i < n->parallelism; i++) {
            struct sl_ctx *c = calloc(1, sizeof(*c));
            if (!c) goto oom;
            p->ctxs[base[k] + i] = c;
            c->p = p;
            c->node = n;
            c->instance = i;
            c->wm = SL_TIME_MIN;
            c->is_sink = n->kind == SL_NODE_SINK;
            atomic_init(&c->pub_wm, SL_TIME_MIN);
            for (int port = 0; port < n->n_ports; port++) {
                c->out[port].width = n->port_width[port];
                int role = n->port_role[port];
                c->out[port].mcount = role == SL_PORT_LATE          ? &c->m.late
                                      : role == SL_PORT_DEAD_LETTER ? &c->m.dead
                                                                    : &c->m.out;
                c->out[port].mbytes = role == SL_PORT_DATA ? &c->m.bytes_out : NULL;
            }
            for (int j = 0; j < n->n_in; j++) {
                c->in_key[j] = n->in[j]->key;
                c->in_key_ud[j] = n->in[j]->key_ud;
            }
        }
    }

    /* Tasks: one per instance of an unchained node; chained instances join
     * the task of the same instance of their input node. */
    for (int k = 0; k < p->n_nodes; k++) {
        sl_node *n = &p->nodes[k];
        for (int i = 0; i < n->parallelism; i++) {
            struct sl_ctx *c = p->ctxs[base[k] + i];
            sl_task *t;
            if (n->chained) {
                t = p->ctxs[base[n->in[0]->node] + i]->task;
            } else {
                t = calloc(1, sizeof(*t));
                if (!t) goto oom;
                t->id = p->n_tasks;
                t->p = p;
                t->root = c;
                if (n->kind == SL_NODE_SOURCE) {
                    t->src_step = sli_source_step;
                    t->src_announce = sli_source_announce;
                }
                t->wm = SL_TIME_MIN;
                t->proc_wake_at = INT64_MAX;
                atomic_init(&t->state, SL_TASK_IDLE);
                atomic_init(&t->inject_barrier, 0);
                if (push_ptr((void ***)&p->tasks, &p->n_tasks, t)) {
                    free(t);
                    goto oom;
                }
            }
            c->task = t;
            if (push_ptr((void ***)&t->insts, &t->n_insts, c)) goto oom;
        }
    }

    /* Edges. */
    for (int k = 0; k < p->n_nodes; k++) {
        sl_node *n = &p->nodes[k];
        for (int j = 0; j < n->n_in; j++) {
            struct sl_stream *s = n->in[j];
            sl_node *u = &p->nodes[s->node];
            for (int ui = 0; ui < u->parallelism; ui++) {
                struct sl_ctx *uc = p->ctxs[base[s->node] + ui];
                sl_port *port = &uc->out[s->port];
                if (n->chained) {
                    sl_target t = {.chained = p->ctxs[base[k] + ui], .input = j};
                    if (add_target(port, t)) goto oom;
                    continue;
                }
                sl_edge *e = calloc(1, sizeof(*e));
                if (!e) goto oom;
                sl_target t = {.edge = e, .input = j};
                if (add_target(port, t)) {
                    free(e);
                    goto oom;
                }
                e->part = s->part;
                if (e->part == SL_PART_FORWARD && u->parallelism != n->parallelism)
                    e->part = SL_PART_REBALANCE;
                e->rr = (uint32_t)ui;
                e->n_ch = n->parallelism;
                e->ch = calloc((size_t)e->n_ch, sizeof(*e->ch));
                e->build = calloc((size_t)e->n_ch, sizeof(*e->build));
                if (!e->ch || !e->build) goto oom;
                for (int ni = 0; ni < n->parallelism; ni++) {
                    sl_channel *ch;
                    if (sli_channel_new(&ch, (size_t)p->credits)) goto oom;
                    e->ch[ni] = ch;
                    if (push_ptr((void ***)&p->channels, &p->n_channels, ch)) {
                        sli_channel_free(ch);
                        e->ch[ni] = NULL;
                        goto oom;
                    }
                    ch->producer = uc->task;
                    ch->consumer = p->ctxs[base[k] + ni]->task;
                    ch->input = j;
                    if (push_ptr((void ***)&ch->consumer->in, &ch->consumer->n_in, ch)) goto oom;
                    if (push_ptr((void ***)&ch->producer->out, &ch->producer->n_out, ch)) goto oom;
                }
            }
        }
    }
    for (int t = 0; t < p->n_tasks; t++) p->tasks[t]->n_open_in = p->tasks[t]->n_in;
    free(base);
    p->planned = 1;
    atomic_store_explicit(&p->published, 1, memory_order_release);
    return 0;
oom:
    free(base);
    return sl_pipeline_error(p, SL_ENOMEM, "out of memory while planning");
}

void sli_plan_free(sl_pipeline *p)
{
    p->planned = 0;
    atomic_store_explicit(&p->published, 0, memory_order_relaxed);
    for (int i = 0; i < p->n_ctx; i++) {
        struct sl_ctx *c = p->ctxs[i];
        if (!c) continue;
        for (int port = 0; port < SL_MAX_PORTS; port++) {
            sl_port *o = &c->out[port];
            for (int t = 0; t < o->n_targets; t++) {
                sl_edge *e = o->targets[t].edge;
                if (!e) continue;
                for (int k = 0; e->build && k < e->n_ch; k++) sli_batch_destroy(e->build[k]);
                free(e->build);
                free(e->ch);
                free(e);
            }
            free(o->targets);
            sli_batch_destroy(o->cur);
        }
        for (int s = 0; s < c->n_states; s++) {
            free(c->states[s].name);
            sl_state_free(c->states[s].st);
        }
        free(c->states);
        sli_timers_free(c->timers);
        sli_timers_free(c->proc_timers);
        sl_buf_free(&c->keybuf);
        sli_metrics_free(c);
        sli_source_free(c);
        free(c);
    }
    free(p->ctxs);
    p->ctxs = NULL;
    p->n_ctx = 0;
    for (int i = 0; i < p->n_channels; i++) {
        sl_channel *ch = p->channels[i];
        /* Batches still queued (after a failure or cancel) go back to no pool:
         * destroy them here. */
        sl_msg m;
        while (sli_channel_pop(ch, &m))
            if (m.batch) sli_batch_destroy(m.batch);
        for (size_t k = 0; k < ch->ovf_len; k++) {
            sl_msg *o = &ch->ovf[(ch->ovf_head + k) % ch->ovf_cap];
            if (o->batch) sli_batch_destroy(o->batch);
        }
        sli_channel_free(ch);
    }
    free(p->channels);
    p->channels = NULL;
    p->n_channels = 0;
    for (int t = 0; t < p->n_tasks; t++) {
        free(p->tasks[t]->insts);
        free(p->tasks[t]->in);
        free(p->tasks[t]->out);
        free(p->tasks[t]);
    }
    free(p->tasks);
    p->tasks = NULL;
    p->n_tasks = 0;
}

int sl_pipeline_explain(sl_pipeline *p, sl_buf *out)
{
    static const char *parts[] = {"forward", "hash", "rebalance", "broadcast"};
    if (!p) return SL_EINVAL;
    if (p->err) return p->err;
    int brc = sli_plan_build(p); /* once: start() uses the same plan */
    if (brc) return brc;
    int rc = 0;
    for (int t = 0; t < p->n_tasks && !rc; t++) {
        sl_task *task = p->tasks[t];
        rc = sl_buf_printf(out, "task %d:", t);
        for (int i = 0; i < task->n_insts && !rc; i++)
            rc = sl_buf_printf(out, "%s %s[%d]", i ? " ->" : "", task->insts[i]->node->name,
                               task->insts[i]->instance);
        if (!rc) rc = sl_buf_printf(out, "  (%d input channels)\n", task->n_in);
    }
    for (int k = 0; k < p->n_nodes && !rc; k++) {
        sl_node *n = &p->nodes[k];
        for (int j = 0; j < n->n_in && !rc; j++) {
            sl_node *u = &p->nodes[n->in[j]->node];
            const char *how = n->chained ? "chained" : parts[n->in[j]->part];
            if (!n->chained && n->in[j]->part == SL_PART_FORWARD &&
                u->parallelism != n->parallelism)
                how = "rebalance";
            rc = sl_buf_printf(out, "edge %s(%d) -> %s(%d): %s\n", u->name, u->parallelism, n->name,
                               n->parallelism, how);
        }
    }
    return rc;
}
