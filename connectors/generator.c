/*
 * connectors/generator.c - a source that makes records with a user callback.
 *
 * Instance i of P makes the records seq = i, i + P, i + 2P, ... below
 * `count` (or forever when count is 0), a batch per poll, writing them
 * straight into the output batch's columns. With a rate, each instance
 * keeps to rate / P records per second: when it is ahead it says WAIT and
 * is polled again a millisecond later, so a rate-limited generator costs no
 * CPU while it waits. Position (for checkpoints): the next k.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sluice/sluice.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct gen {
    uint64_t k; /* next record of this instance is seq = instance + k * P */
    uint64_t inst, par;
    double t0;
} gen;

static int gen_open(sl_ctx *ctx, void **self)
{
    const sl_generator_conf *c = sl_ctx_conf(ctx);
    if (!c || !c->fn) return sl_ctx_fail(ctx, SL_EINVAL, "generator without a callback");
    if (c->rate < 0) return sl_ctx_fail(ctx, SL_EINVAL, "generator rate must be >= 0");
    if (!sl_ctx_out_width(ctx, 0))
        return sl_ctx_fail(ctx, SL_EINVAL, "generator records need a fixed width");
    gen *g = calloc(1, sizeof(*g));
    if (!g) return SL_ENOMEM;
    g->inst = (uint64_t)sl_ctx_instance(ctx);
    g->par = (uint64_t)sl_ctx_parallelism(ctx);
    g->t0 = -1;
    *self = g;
    return 0;
}

static void gen_close(void *self)
{
    free(self);
}

static int gen_poll(sl_ctx *ctx, void *self)
{
    gen *g = self;
    const sl_generator_conf *c = sl_ctx_conf(ctx);
    uint64_t n = SL_BATCH_CAPACITY;
    if (c->count) {
        uint64_t mine = c->count > g->inst ? (c->count - g->inst + g->par - 1) / g->par : 0;
        if (g->k >= mine) return SL_POLL_END;
        if (mine - g->k < n) n = mine - g->k;
    }
    if (c->rate > 0) {
        double now = now_s();
        if (g->t0 < 0) g->t0 = now;
        double allowed = (now - g->t0) * c->rate / (double)g->par + 1;
        if ((double)g->k >= allowed) return SL_POLL_WAIT;
        if ((double)(g->k + n) > allowed) n = (uint64_t)(allowed - (double)g->k) + 1;
    }
    sl_batch *b = sl_out_batch(ctx, 0);
    if (!b) return sl_ctx_error(ctx);
    uint32_t i = b->count, w = b->width;
    if (n > SL_BATCH_CAPACITY - i) n = SL_BATCH_CAPACITY - i;
    uint64_t seq = g->inst + g->k * g->par, step = g->par;
    sl_gen_fn fn = c->fn;
    void *ud = c->ud;
    uint8_t *out = b->data + (size_t)i * w;
    for (uint32_t j = 0; j < n; j++, seq += step, out += w) {
        int rc = fn(out, seq, &b->ts[i + j], ud);
        if (rc) {
            b->count = i + j; /* keep the records made so far */
            return rc < 0 ? rc : SL_EOPERATOR;
        }
    }
    memset(b->hash + i, 0, n * sizeof(uint64_t));
    b->count = i + (uint32_t)n;
    g->k += n;
    return SL_POLL_MORE;
}

static int gen_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    gen *g = self;
    return sl_buf_append(out, &g->k, sizeof(g->k));
}

static int gen_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    gen *g = self;
    if (len != sizeof(g->k)) return SL_ECORRUPT;
    memcpy(&g->k, data, sizeof(g->k));
    return 0;
}

const sl_source sl_source_generator = {.version = SL_SOURCE_VERSION,
                                       .kind = "generator",
                                       .open = gen_open,
                                       .poll = gen_poll,
                                       .snapshot = gen_snapshot,
                                       .restore = gen_restore,
                                       .close = gen_close};

sl_stream *sl_pipeline_generator(sl_pipeline *p, const char *name, const sl_generator_conf *conf,
                                 uint32_t width)
{
    return sl_pipeline_source(p, name, &sl_source_generator, (void *)conf, width);
}
