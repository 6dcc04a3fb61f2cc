/*
 * engine/test_hooks.c - the accessors of test_hooks.h: plain reads of the
 * plan and of instances, and the checkpoint hook, for the runtime tests.
 * Nothing here is on a hot path and nothing here is used by the engine.
 */
#include "engine/test_hooks.h"
#include "engine/graph.h"
#include "engine/coord.h"
#include "engine/plan.h"
#include "engine/pool.h"
#include "engine/timer.h"

int sli_test_n_instances(const sl_pipeline *p)
{
    return p->n_ctx;
}

sl_ctx *sli_test_instance(const sl_pipeline *p, int i)
{
    return i >= 0 && i < p->n_ctx ? p->ctxs[i] : NULL;
}

int sli_test_ctx_is_source(const sl_ctx *c)
{
    return c->node->kind == SL_NODE_SOURCE;
}

const sl_operator *sli_test_ctx_operator(const sl_ctx *c)
{
    return c->node->op;
}

void *sli_test_ctx_self(const sl_ctx *c)
{
    return c->self;
}

sl_ctx *sli_test_chain_root(const sl_ctx *c)
{
    return c->task->insts[0];
}

int sli_test_ctx_n_states(const sl_ctx *c)
{
    return c->n_states;
}

sl_state *sli_test_ctx_state_at(const sl_ctx *c, int k, const char **name)
{
    if (k < 0 || k >= c->n_states) return NULL;
    if (name) *name = c->states[k].name;
    return c->states[k].st;
}

int sli_test_n_channels(const sl_pipeline *p)
{
    return p->n_channels;
}

size_t sli_test_channel_size(const sl_pipeline *p, int i)
{
    return sli_channel_size(p->channels[i]);
}

size_t sli_test_channel_credits(const sl_pipeline *p, int i)
{
    return p->channels[i]->credits;
}

size_t sli_test_batches_allocated(const sl_pipeline *p)
{
    return atomic_load(&((sl_pipeline *)p)->pool.n_alloc);
}

int sli_test_max_ports(void)
{
    return SL_MAX_PORTS;
}

int sli_test_pool_chunk(void)
{
    return SL_POOL_CHUNK;
}

void sli_test_on_barrier(sl_pipeline *p, sli_barrier_fn fn, void *ud)
{
    p->on_barrier = fn;
    p->on_barrier_ud = ud;
}

void sli_test_inject_barrier(sl_pipeline *p, uint64_t id)
{
    sli_pipeline_inject_barrier(p, id);
}

int sli_test_ctx_timers_snapshot(const sl_ctx *c, sl_buf *out)
{
    return sli_timers_snapshot(c->timers, out);
}

int sli_test_ctx_timers_restore(sl_ctx *c, const void *data, size_t len, uint32_t kg_lo,
                                uint32_t kg_hi)
{
    if (!c->timers && !(c->timers = sli_timers_new())) return SL_ENOMEM;
    return sli_timers_restore(c->timers, data, len, kg_lo, kg_hi);
}
