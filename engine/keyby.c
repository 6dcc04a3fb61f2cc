/*
 * engine/keyby.c - key_by: an operator, built on the public operator API
 * like any other, that fills the hash column of each batch in place from
 * the user's key function and hands the batch on (zero copy). The stream it
 * makes is hash-partitioned by key group and keyed (its key function travels
 * with it, so the next node can read keys); unless set, its parallelism is
 * its input's, so it stays chained to it.
 *
 * The conf (key function and its ud) is copied at build time.
 */
#include "engine/graph.h"
#include "engine/hash.h"
#include "sluice/operator.h"
#include "sluice/pipeline.h"

/* key_by: an engine operator that fills the hash column in place and hands
 * the batch on; the stream it makes is hash-partitioned and keyed. */
typedef struct keyby_conf {
    sl_key_fn key;
    void *ud;
} keyby_conf;

static int keyby_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    keyby_conf *kc = sl_ctx_conf(ctx);
    uint32_t n = in->count;
    if (in->width) {
        for (uint32_t i = 0; i < n; i++) {
            sl_bytes k = kc->key(in->data + (size_t)i * in->width, in->width, kc->ud);
            in->hash[i] = sli_hash_inline(k.ptr, k.len);
        }
    } else {
        for (uint32_t i = 0; i < n; i++) {
            sl_bytes k = kc->key(in->data + in->var[i].off, in->var[i].len, kc->ud);
            in->hash[i] = sli_hash_inline(k.ptr, k.len);
        }
    }
    return sl_forward(ctx, in);
}

static const sl_operator keyby_op = {
    .version = SL_OPERATOR_VERSION, .kind = "key_by", .process = keyby_process};

sl_stream *sl_stream_key_by(sl_stream *in, const char *name, sl_key_fn key, void *ud)
{
    if (!in || in->p->err) return NULL;
    if (!key) {
        sl_pipeline_error(in->p, SL_EINVAL, "key_by '%s': no key function", name ? name : "");
        return NULL;
    }
    /* Copied at build time: the caller's variables may go away. */
    keyby_conf kc = {.key = key, .ud = ud};
    keyby_conf *owned = sl_pipeline_dup(in->p, &kc, sizeof(kc));
    if (!owned) return NULL;
    sl_stream *out = sl_stream_apply(in, name, &keyby_op, owned, in->width);
    if (!out) return NULL;
    in->p->nodes[out->node].inherit = 1; /* stays chained to its input */
    out->part = SL_PART_HASH;
    out->key = key;
    out->key_ud = ud;
    return out;
}

void sli_stream_inherit_parallelism(sl_stream *s)
{
    if (s) s->p->nodes[s->node].inherit = 1;
}
