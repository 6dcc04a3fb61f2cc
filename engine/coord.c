/*
 * engine/coord.c - the checkpoint coordinator (work in progress: the
 * configuration only; the barrier cycle lands next).
 */
#include <stdlib.h>
#include <string.h>
#include "engine/graph.h"
#include "engine/plan.h"
#include "sluice/error.h"

struct sli_coord {
    sl_checkpoint_conf conf;
    char *dir, *from;
    uint64_t restored_from;
};

int sl_pipeline_set_checkpoint(sl_pipeline *p, const sl_checkpoint_conf *conf)
{
    if (!p || !conf) return SL_EINVAL;
    if (p->started || p->planned)
        return sl_pipeline_error(p, SL_ESTATE, "checkpoints must be set before start");
    if (!conf->dir || !*conf->dir)
        return sl_pipeline_error(p, SL_EINVAL, "checkpoints need a directory");
    if (conf->interval_ms < 0)
        return sl_pipeline_error(p, SL_EINVAL, "checkpoint interval must be > 0, not %lld ms",
                                 (long long)conf->interval_ms);
    struct sli_coord *c = calloc(1, sizeof(*c));
    if (!c) return SL_ENOMEM;
    c->conf = *conf;
    c->dir = strdup(conf->dir);
    c->from = conf->from ? strdup(conf->from) : NULL;
    if (!c->dir || (conf->from && !c->from)) {
        free(c->dir);
        free(c->from);
        free(c);
        return SL_ENOMEM;
    }
    if (!c->conf.interval_ms) c->conf.interval_ms = 1000;
    if (!c->conf.timeout_ms) c->conf.timeout_ms = 60000;
    if (!c->conf.keep) c->conf.keep = 3;
    if (!c->conf.guarantee) c->conf.guarantee = SL_GUARANTEE_EXACTLY_ONCE;
    p->chk = c;
    return 0;
}

int sl_ctx_guarantee(const sl_ctx *ctx)
{
    struct sli_coord *c = ctx->p->chk;
    return c ? c->conf.guarantee : SL_GUARANTEE_NONE;
}

uint64_t sl_ctx_restored_from(const sl_ctx *ctx)
{
    struct sli_coord *c = ctx->p->chk;
    return c ? c->restored_from : 0;
}

void sl_pipeline_checkpoint_stats(const sl_pipeline *p, sl_checkpoint_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (p && p->chk) out->restored_from = p->chk->restored_from;
}
