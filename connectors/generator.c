/*
 * connectors/generator.c - the one generator source: records made by a user
 * callback, one at a time (fn) or a run at a time (fill), bounded by count or
 * unbounded, as fast as possible or at a rate.
 *
 * Splits are shards: shard s of S makes the records seq = s, s + S, s + 2S,
 * ... below `count` (or forever when count is 0), written straight into the
 * output batch's columns. With a rate, each shard keeps to rate / S records
 * per second: when it is ahead its poll returns SL_POLL_WAIT having made
 * nothing (the engine polls again a moment later, and counts the silence
 * toward idleness, as it should: the shard had nothing).
 *
 * Watermarks, idleness and positions are the engine's (sluice/source.h);
 * the generator only makes records. Position: the next k (uint64, host
 * order), the shard's count of records made.
 */
#include <stdlib.h>
#include <string.h>
#include "engine/base/clock.h"
#include "sluice/connectors.h"
#include "sluice/source.h"

typedef struct gen {
    uint64_t k; /* records made; the next is seq = shard + k * shards */
    uint64_t shard, shards;
    uint64_t mine; /* records of this shard in all (UINT64_MAX: unbounded) */
    double t0;     /* rate: time of the first poll (s, monotonic), < 0 before */
} gen;

static int gen_enumerate(sl_split_enum *e, void *conf)
{
    const sl_generator_conf *c = conf;
    int n = c && c->shards > 0 ? c->shards : sl_split_parallelism(e);
    for (int i = 0; i < n; i++) {
        int rc = sl_split_add(e, NULL, 0);
        if (rc) return rc;
    }
    return 0;
}

static int gen_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    const sl_generator_conf *c = sl_ctx_conf(ctx);
    if (!c || (!c->fn && !c->fill))
        return sl_ctx_fail(ctx, SL_EINVAL, "generator without a callback (fn or fill)");
    if (c->rate < 0) return sl_ctx_fail(ctx, SL_EINVAL, "generator rate must be >= 0");
    if (!sl_ctx_out_width(ctx, 0))
        return sl_ctx_fail(ctx, SL_EINVAL, "generator records need a fixed width");
    gen *g = calloc(1, sizeof(*g));
    if (!g) return SL_ENOMEM;
    g->shard = (uint64_t)split->index;
    g->shards = (uint64_t)split->count;
    g->mine = !c->count             ? UINT64_MAX
              : c->count > g->shard ? (c->count - g->shard + g->shards - 1) / g->shards
                                    : 0;
    g->t0 = -1;
    *self = g;
    return 0;
}

static void gen_close(void *self)
{
    free(self);
}

static int gen_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    gen *g = self;
    const sl_generator_conf *c = sl_ctx_conf(ctx);
    if (g->k >= g->mine) return SL_POLL_END;
    uint64_t n = g->mine - g->k;
    if (n > max) n = max;
    if (c->rate > 0) {
        double now = sli_clock_mono_s();
        if (g->t0 < 0) g->t0 = now;
        double allowed = (now - g->t0) * c->rate / (double)g->shards + 1;
        if ((double)g->k >= allowed) return SL_POLL_WAIT;
        if ((double)(g->k + n) > allowed) n = (uint64_t)(allowed - (double)g->k) + 1;
        if (n > max) n = max;
    }
    if (n == 0) return SL_POLL_MORE;
    sl_batch *b = sl_out_batch(ctx, 0);
    if (!b) return sl_ctx_error(ctx);
    uint32_t i = b->count, w = b->width;
    uint64_t seq = g->shard + g->k * g->shards, step = g->shards;
    uint8_t *out = b->data + (size_t)i * w;
    int rc = 0;
    if (c->fill) {
        rc = c->fill(out, b->ts + i, (uint32_t)n, seq, step, c->ud);
    } else {
        sl_gen_fn fn = c->fn;
        void *ud = c->ud;
        for (uint32_t j = 0; j < n; j++, seq += step, out += w) {
            rc = fn(out, seq, &b->ts[i + j], ud);
            if (rc) {
                n = j; /* keep the records made so far */
                break;
            }
        }
    }
    memset(b->hash + i, 0, n * sizeof(uint64_t));
    b->count = i + (uint32_t)n;
    g->k += n;
    if (rc) return rc < 0 ? rc : SL_EOPERATOR;
    return SL_POLL_MORE;
}

static int gen_position(sl_ctx *ctx, void *self, sl_buf *out)
{
    gen *g = self;
    return sl_buf_append(out, &g->k, sizeof(g->k));
}

static int gen_seek(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    gen *g = self;
    if (len != sizeof(g->k)) return SL_ECORRUPT;
    memcpy(&g->k, data, sizeof(g->k));
    return 0;
}

const sl_source sl_source_generator = {.version = SL_SOURCE_VERSION,
                                       .kind = "generator",
                                       .enumerate = gen_enumerate,
                                       .open = gen_open,
                                       .poll = gen_poll,
                                       .position = gen_position,
                                       .seek = gen_seek,
                                       .close = gen_close};

sl_stream *sl_pipeline_generator(sl_pipeline *p, const char *name, const sl_generator_conf *conf,
                                 uint32_t width, const sl_watermark_conf *wm)
{
    if (!p) return NULL;
    if (!conf) {
        sl_pipeline_error(p, SL_EINVAL, "generator '%s': no conf", name ? name : "");
        return NULL;
    }
    if (conf->shards < 0) {
        sl_pipeline_error(p, SL_EINVAL, "generator '%s': shards must be >= 0", name ? name : "");
        return NULL;
    }
    sl_generator_conf *copy = sl_pipeline_dup(p, conf, sizeof(*conf));
    if (!copy) return NULL;
    return sl_pipeline_source(p, name, &sl_source_generator, copy, width, wm);
}
