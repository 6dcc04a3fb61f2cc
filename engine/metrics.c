/*
 * engine/metrics.c - reading a pipeline's counters (sluice/metrics.h), and
 * the dead-letter reasons of source instances.
 *
 * Nothing here runs on the hot path. The counters it reads are written by
 * task threads in task.c (per batch: records and bytes in and out, late,
 * dead letters; per spell of backpressure: blocked time), each by the one
 * thread that runs its task, with sli_count (plan.h): a relaxed load and
 * store, so a reader on any thread sees whole values that never go down, and
 * the writer pays no lock prefix. A reading sums nothing at record rate:
 * it walks the plan's instances and tasks once.
 *
 * Dead-letter reasons. A source gives each dead letter a free-text reason
 * with its location first ("line 12: no event time", "partition 0 offset 7:
 * bad value"). The metric's label is its class: the text after the last
 * ": ", with runs of digits written N (so "field 3 too long" and "field 4
 * too long" are one class), cut at 63 bytes. An instance keeps 16 classes in
 * a table made at its first dead letter; a 17th class counts as "other".
 * The task thread writes a slot's text before it publishes the slot count
 * (release), and readers load the count first (acquire), so a reader never
 * sees a half-written label.
 *
 * Source lag (sl_ctx_split_lag, engine/source.c) is read per split of
 * every source instance; the splits are fixed when the instance opens.
 *
 * Threads: sli_metrics_dead_letter runs on the source's task thread;
 * sl_pipeline_metrics and sl_pipeline_checkpoint_history on any thread, once
 * the plan exists (the plan is never changed after it is built).
 */
#include "engine/metrics.h"
#include <stdlib.h>
#include <string.h>
#include "engine/base/clock.h"
#include "engine/channel.h"
#include "engine/coord.h"
#include "engine/graph.h"
#include "engine/plan.h"
#include "engine/source.h"
#include "engine/task.h"
#include "sluice/error.h"
#include "sluice/metrics.h"

#define REASONS 16

struct sli_dl_reasons {
    _Atomic int used; /* slots whose text is written */
    struct {
        char text[64];
        _Atomic uint64_t n;
    } slot[REASONS + 1]; /* the last one is "other" */
};

/* The class of a reason (see above) into out[64]. */
static void reason_class(const char *reason, char *out)
{
    const char *s = reason ? reason : "";
    for (const char *q = strstr(s, ": "); q; q = strstr(q + 2, ": ")) s = q + 2;
    size_t n = 0;
    while (*s && n < 63) {
        if (*s >= '0' && *s <= '9') {
            out[n++] = 'N';
            while (*s >= '0' && *s <= '9') s++;
        } else {
            char ch = *s++;
            out[n++] = (ch == '"' || ch == '\\' || ch == '\n' || (unsigned char)ch < 32) ? ' ' : ch;
        }
    }
    out[n] = 0;
    if (n == 0) strcpy(out, "unknown");
}

int sli_metrics_dead_letter(struct sl_ctx *c, const char *reason)
{
    struct sli_dl_reasons *r = atomic_load_explicit(&c->dl_reasons, memory_order_relaxed);
    if (!r) {
        if (!(r = calloc(1, sizeof(*r)))) return SL_ENOMEM;
        strcpy(r->slot[REASONS].text, "other");
        atomic_store_explicit(&c->dl_reasons, r, memory_order_release);
    }
    char cls[64];
    reason_class(reason, cls);
    int used = atomic_load_explicit(&r->used, memory_order_relaxed);
    int k = 0;
    while (k < used && strcmp(r->slot[k].text, cls) != 0) k++;
    if (k == used) {
        if (used < REASONS) {
            memcpy(r->slot[k].text, cls, sizeof(cls));
            atomic_store_explicit(&r->used, used + 1, memory_order_release);
        } else {
            k = REASONS;
        }
    }
    sli_count(&r->slot[k].n, 1);
    return 0;
}

void sli_metrics_free(struct sl_ctx *c)
{
    free(atomic_load_explicit(&c->dl_reasons, memory_order_relaxed));
    atomic_store_explicit(&c->dl_reasons, NULL, memory_order_relaxed);
}

static uint64_t ld(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static const char *node_kind(const sl_node *n)
{
    return n->kind == SL_NODE_SOURCE ? "source" : n->kind == SL_NODE_SINK ? "sink" : "operator";
}

/* The state, and the run's elapsed time into *elapsed. */
static int pipeline_state(sl_pipeline *p, int published, double *elapsed)
{
    *elapsed = 0;
    if (published < 2) return SL_STATE_CREATED;
    pthread_mutex_lock(&p->lock);
    int done = p->done;
    *elapsed = done ? p->elapsed : sli_clock_mono_s() - p->t_start; /* both set before */
    pthread_mutex_unlock(&p->lock);
    if (atomic_load(&p->failed)) return SL_STATE_FAILED;
    if (!done) return SL_STATE_RUNNING;
    return atomic_load(&p->cancel_cut) ? SL_STATE_CANCELED : SL_STATE_FINISHED;
}

int sl_pipeline_metrics(const sl_pipeline *cp, sl_metrics *out)
{
    memset(out, 0, sizeof(*out));
    sl_pipeline *p = (sl_pipeline *)cp;
    int published = p ? atomic_load_explicit(&p->published, memory_order_acquire) : 0;
    if (!published) return SL_ESTATE;
    out->state = pipeline_state(p, published, &out->totals.elapsed_s);
    sli_pipeline_counts(p, &out->totals);
    if (published == 2) { /* p->chk is set before start */
        out->checkpoints = p->chk != NULL;
        out->sink_commits = sli_coord_sink_commits(p);
    }
    out->nodes = calloc((size_t)p->n_nodes, sizeof(*out->nodes));
    out->instances = calloc((size_t)p->n_ctx, sizeof(*out->instances));
    out->tasks = calloc((size_t)p->n_tasks, sizeof(*out->tasks));
    if (!out->nodes || !out->instances || !out->tasks) goto oom;
    out->n_nodes = p->n_nodes;
    out->n_instances = p->n_ctx;
    out->n_tasks = p->n_tasks;

    int n_reasons = 0;
    for (int i = 0, first = 0; i < p->n_nodes; i++) {
        sl_node *n = &p->nodes[i];
        sl_metrics_node *mn = &out->nodes[i];
        const char *type = n->op ? n->op->kind : n->src ? n->src->kind : NULL;
        *mn = (sl_metrics_node){.name = n->name,
                                .kind = node_kind(n),
                                .type = type ? type : "",
                                .parallelism = n->parallelism,
                                .chained = n->chained,
                                .n_inputs = n->n_in > 8 ? 8 : n->n_in,
                                .first_instance = first};
        for (int j = 0; j < mn->n_inputs; j++) {
            mn->inputs[j] = n->in[j]->node;
            mn->input_part[j] = (int)n->in[j]->part;
        }
        first += n->parallelism;
    }
    for (int i = 0; i < p->n_ctx; i++) {
        struct sl_ctx *c = p->ctxs[i];
        sl_metrics_instance *mi = &out->instances[i];
        mi->node = (int)(c->node - p->nodes);
        mi->instance = c->instance;
        mi->task = c->task ? c->task->id : -1;
        mi->records_out = ld(&c->m.out);
        mi->bytes_out = ld(&c->m.bytes_out);
        int src = c->node->kind == SL_NODE_SOURCE;
        mi->records_in = src ? mi->records_out + ld(&c->m.dead) : ld(&c->m.in);
        mi->bytes_in = src ? mi->bytes_out : ld(&c->m.bytes_in);
        mi->late = ld(&c->m.late);
        mi->dead_letters = ld(&c->m.dead);
        mi->watermark = atomic_load_explicit(&c->pub_wm, memory_order_relaxed);
        struct sli_dl_reasons *r = atomic_load_explicit(&c->dl_reasons, memory_order_acquire);
        if (r) n_reasons += atomic_load_explicit(&r->used, memory_order_acquire) + 1;
    }
    for (int i = 0; i < p->n_tasks; i++) {
        sl_task *t = p->tasks[i];
        sl_metrics_task *mt = &out->tasks[i];
        mt->id = t->id;
        mt->root_instance = -1;
        for (int k = 0; k < p->n_ctx; k++)
            if (p->ctxs[k] == t->root) mt->root_instance = k;
        mt->n_instances = t->n_insts;
        for (int k = 0; k < t->n_in; k++) {
            mt->queued += sli_channel_size(t->in[k]);
            mt->capacity += t->in[k]->mask + 1;
        }
        mt->blocked_s = (double)sli_task_blocked_ns(t) / 1e9;
    }
    if (n_reasons) {
        out->reasons = calloc((size_t)n_reasons, sizeof(*out->reasons));
        if (!out->reasons) goto oom;
        for (int i = 0; i < p->n_ctx; i++) {
            struct sli_dl_reasons *r =
                atomic_load_explicit(&p->ctxs[i]->dl_reasons, memory_order_acquire);
            if (!r) continue;
            int used = atomic_load_explicit(&r->used, memory_order_acquire);
            for (int k = 0; k <= REASONS && out->n_reasons < n_reasons; k++) {
                if (k >= used && k < REASONS) continue;
                uint64_t n = ld(&r->slot[k].n);
                if (k == REASONS && n == 0) continue;
                sl_metrics_reason *mr = &out->reasons[out->n_reasons++];
                mr->instance = i;
                memcpy(mr->reason, r->slot[k].text, sizeof(mr->reason));
                mr->count = n;
            }
        }
    }
    if (published == 2) { /* sources' readers exist once started */
        int n_lags = 0;
        char in[64];
        int32_t part;
        int64_t lag;
        for (int i = 0; i < p->n_ctx; i++)
            for (int k = 0; sli_source_lag(p->ctxs[i], k, in, sizeof(in), &part, &lag) >= 0; k++)
                n_lags++;
        if (n_lags && !(out->lags = calloc((size_t)n_lags, sizeof(*out->lags)))) goto oom;
        for (int i = 0; i < p->n_ctx; i++)
            for (int k = 0, r;
                 out->n_lags < n_lags &&
                 (r = sli_source_lag(p->ctxs[i], k, in, sizeof(in), &part, &lag)) >= 0;
                 k++) {
                if (!r) continue;
                sl_metrics_lag *ml = &out->lags[out->n_lags++];
                ml->instance = i;
                memcpy(ml->input, in, sizeof(ml->input));
                ml->partition = part;
                ml->lag = lag;
            }
    }
    return 0;
oom:
    sl_metrics_clear(out);
    return SL_ENOMEM;
}

void sl_metrics_clear(sl_metrics *m)
{
    if (!m) return;
    free(m->nodes);
    free(m->instances);
    free(m->tasks);
    free(m->reasons);
    free(m->lags);
    memset(m, 0, sizeof(*m));
}
