/*
 * operators/aggregate.c - the incremental aggregates (count, sum, min, max,
 * avg) and the keyed rolling aggregate operator.
 *
 * Each instance keeps one accumulator per key in engine-owned keyed state
 * ("acc"), so the engine snapshots and restores it. A state value is
 *
 *   offset        size       field
 *   0             acc_size   the aggregate's accumulator
 *   ts_off        8          largest event time added (ts_off = acc_size
 *                            rounded up to 8)
 *
 * Per record: one state lookup (hash first, key bytes only on a hash match)
 * and one add(). With
 * SL_AGG_EMIT_UPDATES the new result is emitted after every record; with
 * SL_AGG_EMIT_FINAL once per key when the input ends. Output records are
 * [result | key bytes] (sluice/operators.h draws the layout).
 */
#include <stdlib.h>
#include <string.h>
#include "sluice/sluice.h"

/* --- built-in aggregates ----------------------------------------------------- */

static inline int64_t value_of(const void *rec, uint32_t len, const void *ud)
{
    const sl_agg_value *v = ud;
    int64_t x;
    if (!v) {
        if (len < 8) return 0;
        memcpy(&x, rec, 8);
        return x;
    }
    if (v->fn) return v->fn(rec, len, v->ud);
    if ((uint64_t)v->offset + 8 > len) return 0;
    memcpy(&x, (const uint8_t *)rec + v->offset, 8);
    return x;
}

static void i64_zero(void *acc, const void *ud)
{
    memset(acc, 0, 8);
}
static void i64_result(const void *acc, void *out, const void *ud)
{
    memcpy(out, acc, 8);
}

static void count_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    ++*(int64_t *)acc;
}
static void sum_merge(void *acc, const void *o, const void *ud)
{
    *(int64_t *)acc += *(const int64_t *)o;
}
static void sum_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    *(int64_t *)acc += value_of(rec, len, ud);
}

static void min_init(void *acc, const void *ud)
{
    *(int64_t *)acc = INT64_MAX;
}
static void min_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    int64_t v = value_of(rec, len, ud);
    if (v < *(int64_t *)acc) *(int64_t *)acc = v;
}
static void min_merge(void *acc, const void *o, const void *ud)
{
    if (*(const int64_t *)o < *(int64_t *)acc) *(int64_t *)acc = *(const int64_t *)o;
}

static void max_init(void *acc, const void *ud)
{
    *(int64_t *)acc = INT64_MIN;
}
static void max_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    int64_t v = value_of(rec, len, ud);
    if (v > *(int64_t *)acc) *(int64_t *)acc = v;
}
static void max_merge(void *acc, const void *o, const void *ud)
{
    if (*(const int64_t *)o > *(int64_t *)acc) *(int64_t *)acc = *(const int64_t *)o;
}

typedef struct avg_acc {
    int64_t sum;
    int64_t n;
} avg_acc;
static void avg_init(void *acc, const void *ud)
{
    memset(acc, 0, sizeof(avg_acc));
}
static void avg_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    avg_acc *a = acc;
    a->sum += value_of(rec, len, ud);
    a->n++;
}
static void avg_merge(void *acc, const void *o, const void *ud)
{
    avg_acc *a = acc;
    const avg_acc *b = o;
    a->sum += b->sum;
    a->n += b->n;
}
static void avg_result(const void *acc, void *out, const void *ud)
{
    const avg_acc *a = acc;
    double r = a->n ? (double)a->sum / (double)a->n : 0.0;
    memcpy(out, &r, sizeof(r));
}

const sl_aggregate sl_agg_count = {
    SL_AGGREGATE_VERSION, "count", 8, 8, i64_zero, count_add, sum_merge, i64_result};
const sl_aggregate sl_agg_sum = {
    SL_AGGREGATE_VERSION, "sum", 8, 8, i64_zero, sum_add, sum_merge, i64_result};
const sl_aggregate sl_agg_min = {
    SL_AGGREGATE_VERSION, "min", 8, 8, min_init, min_add, min_merge, i64_result};
const sl_aggregate sl_agg_max = {
    SL_AGGREGATE_VERSION, "max", 8, 8, max_init, max_add, max_merge, i64_result};
const sl_aggregate sl_agg_avg = {
    SL_AGGREGATE_VERSION, "avg", sizeof(avg_acc), 8, avg_init, avg_add, avg_merge, avg_result};

const sl_aggregate *sl_agg_by_name(const char *name)
{
    static const sl_aggregate *const all[] = {&sl_agg_count, &sl_agg_sum, &sl_agg_min, &sl_agg_max,
                                              &sl_agg_avg};
    for (size_t i = 0; name && i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}

/* --- keyed rolling aggregate -------------------------------------------------- */

typedef struct agg_self {
    sl_state *acc;
    uint32_t ts_off; /* offset of the largest event time in a state value */
} agg_self;

static int agg_open(sl_ctx *ctx, void **out)
{
    const sl_agg_conf *c = sl_ctx_conf(ctx);
    agg_self *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->ts_off = (c->agg->acc_size + 7u) & ~7u;
    s->acc = sl_ctx_state(ctx, "acc", s->ts_off + 8);
    if (!s->acc) {
        free(s);
        return SL_ENOMEM;
    }
    *out = s;
    return 0;
}

static void agg_close(void *self)
{
    free(self);
}

static int emit_result(sl_ctx *ctx, const sl_aggregate *agg, const void *ud, const void *acc,
                       int64_t ts, uint64_t hash, sl_bytes key)
{
    uint8_t *out = sl_emit(ctx, ts, hash, agg->result_size + key.len);
    if (!out) return sl_ctx_error(ctx);
    agg->result(acc, out, ud);
    memcpy(out + agg->result_size, key.ptr, key.len);
    return 0;
}

static int agg_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    agg_self *s = self;
    const sl_agg_conf *c = sl_ctx_conf(ctx);
    const sl_aggregate *agg = c->agg;
    const void *ud = c->ud;
    int updates = c->emit == SL_AGG_EMIT_UPDATES;
    void *kud;
    sl_key_fn kfn = sl_ctx_key_fn(ctx, &kud);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes rec = sl_batch_bytes(in, i);
        sl_bytes key = kfn(rec.ptr, rec.len, kud);
        int created;
        void *acc = sl_state_get(s->acc, in->hash[i], key.ptr, key.len, &created);
        if (!acc) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for key state");
        int64_t *max_ts = (int64_t *)((uint8_t *)acc + s->ts_off);
        if (created) {
            agg->init(acc, ud);
            *max_ts = in->ts[i];
        } else if (in->ts[i] > *max_ts) {
            *max_ts = in->ts[i];
        }
        agg->add(acc, rec.ptr, rec.len, in->ts[i], ud);
        if (updates) {
            int rc = emit_result(ctx, agg, ud, acc, in->ts[i], in->hash[i], key);
            if (rc) return rc;
        }
    }
    return 0;
}

static int agg_end(sl_ctx *ctx, void *self)
{
    agg_self *s = self;
    const sl_agg_conf *c = sl_ctx_conf(ctx);
    if (c->emit != SL_AGG_EMIT_FINAL) return 0;
    size_t it = 0;
    sl_state_entry e;
    while (sl_state_next(s->acc, &it, &e)) {
        int64_t max_ts;
        memcpy(&max_ts, (const uint8_t *)e.value + s->ts_off, 8);
        sl_bytes key = {e.key, e.key_len};
        int rc = emit_result(ctx, c->agg, c->ud, e.value, max_ts, e.hash, key);
        if (rc) return rc;
    }
    return 0;
}

static const sl_operator agg_op = {.version = SL_OPERATOR_VERSION,
                                   .kind = "aggregate",
                                   .open = agg_open,
                                   .process = agg_process,
                                   .end = agg_end,
                                   .close = agg_close};

sl_stream *sl_stream_aggregate(sl_stream *in, const char *name, const sl_agg_conf *conf)
{
    if (!in) return NULL;
    sl_pipeline *p = sl_stream_pipeline(in);
    if (!sl_stream_keyed(in)) {
        sl_pipeline_error(p, SL_EINVAL, "aggregate '%s': its input is not keyed (use key_by)",
                          name ? name : "");
        return NULL;
    }
    if (!conf || !conf->agg || conf->agg->version != SL_AGGREGATE_VERSION || !conf->agg->init ||
        !conf->agg->add || !conf->agg->result) {
        sl_pipeline_error(p, SL_EINVAL, "aggregate '%s': not a version %d aggregate",
                          name ? name : "", SL_AGGREGATE_VERSION);
        return NULL;
    }
    return sl_stream_apply(in, name, &agg_op, (void *)conf, 0);
}
