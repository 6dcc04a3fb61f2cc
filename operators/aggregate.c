/*
 * operators/aggregate.c - the incremental aggregates (count, sum, min, max,
 * avg), the checks every builder applies to an aggregate table, and the
 * keyed rolling aggregate operator.
 *
 * Aggregate tables. Version 2 tables carry `flags`, promises that let an
 * operator inline an aggregate (SL_AGG_INT64_SUM: the window keeps count and
 * sum accumulators as plain int64 additions; SL_AGG_ADD_ONE: a count needs
 * no call per record). Operators never recognise an aggregate by its
 * address: a user table with the same flags gets the same fast paths.
 * Version 1 tables end before `flags`, so they are read through
 * sl_agg_flags(), which gives 0 for them.
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
 * and one add(). With SL_AGG_EMIT_UPDATES the new result is emitted after
 * every record; with SL_AGG_EMIT_FINAL once per key when the input ends
 * (not when it is cut by a cancel: sl_ctx_end_canceled, nothing partial).
 * Output records are [result size | reserved | result | key bytes]
 * (sluice/operators.h draws the layout): the record says how long its
 * result is, so readers need not be told.
 *
 * The builder copies the user's sl_agg_conf into memory the pipeline owns
 * (and, for SL_AGG_UD_VALUE aggregates, the sl_agg_value its ud points to),
 * so the caller's conf may be a stack variable.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sluice/crdt.h"
#include "sluice/error.h"
#include "sluice/operator.h"
#include "sluice/operators.h"
#include "sluice/pipeline.h"
#include "sluice/state.h"
#include "operators/aggregate.h"

/* --- built-in aggregates ----------------------------------------------------- */

/* Saturating int64 addition: what count's and sum's own add() and merge()
 * do when called directly (they cannot report an error); operators that run
 * them inline check instead (see the overflow rule in sluice/operators.h). */
static inline int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (!__builtin_add_overflow(a, b, &r)) return r;
    return b > 0 ? INT64_MAX : INT64_MIN;
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
    *(int64_t *)acc = sat_add(*(int64_t *)acc, 1);
}
static void sum_merge(void *acc, const void *o, const void *ud)
{
    *(int64_t *)acc = sat_add(*(int64_t *)acc, *(const int64_t *)o);
}
static void sum_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    *(int64_t *)acc = sat_add(*(int64_t *)acc, sli_agg_value(rec, len, ud));
}

static void min_init(void *acc, const void *ud)
{
    *(int64_t *)acc = INT64_MAX;
}
static void min_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    int64_t v = sli_agg_value(rec, len, ud);
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
    int64_t v = sli_agg_value(rec, len, ud);
    if (v > *(int64_t *)acc) *(int64_t *)acc = v;
}
static void max_merge(void *acc, const void *o, const void *ud)
{
    if (*(const int64_t *)o > *(int64_t *)acc) *(int64_t *)acc = *(const int64_t *)o;
}

/* avg: a 128-bit sum (two int64 words, low word first, so the accumulator
 * needs no 16-byte alignment) and a count. 2^63 values of magnitude 2^63
 * sum to 2^126: the sum cannot overflow, and the result is the double
 * nearest to sum / n (both converted once). */
typedef struct avg_acc {
    uint64_t lo;
    int64_t hi;
    int64_t n;
} avg_acc;
static inline __int128 avg_sum(const avg_acc *a)
{
    return (__int128)(((unsigned __int128)(uint64_t)a->hi << 64) | a->lo);
}
static inline void avg_set(avg_acc *a, __int128 s)
{
    a->lo = (uint64_t)s;
    a->hi = (int64_t)(s >> 64);
}
static void avg_init(void *acc, const void *ud)
{
    memset(acc, 0, sizeof(avg_acc));
}
static void avg_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    avg_acc *a = acc;
    avg_set(a, avg_sum(a) + sli_agg_value(rec, len, ud));
    a->n++;
}
static void avg_merge(void *acc, const void *o, const void *ud)
{
    avg_acc *a = acc;
    const avg_acc *b = o;
    avg_set(a, avg_sum(a) + avg_sum(b));
    a->n += b->n;
}
static void avg_result(const void *acc, void *out, const void *ud)
{
    const avg_acc *a = acc;
    double r = 0.0;
    if (a->n) {
        /* sum / n exactly in 128 bits, then the remainder: no rounding of
         * the sum to a double before the division. */
        __int128 s = avg_sum(a), q = s / a->n, rem = s % a->n;
        r = (double)q + (double)rem / (double)a->n;
    }
    memcpy(out, &r, sizeof(r));
}

const sl_aggregate sl_agg_count = {SL_AGGREGATE_VERSION,
                                   "count",
                                   8,
                                   8,
                                   i64_zero,
                                   count_add,
                                   sum_merge,
                                   i64_result,
                                   SL_AGG_INT64_SUM | SL_AGG_ADD_ONE | SL_AGG_UD_VALUE,
                                   NULL};
const sl_aggregate sl_agg_sum = {SL_AGGREGATE_VERSION,
                                 "sum",
                                 8,
                                 8,
                                 i64_zero,
                                 sum_add,
                                 sum_merge,
                                 i64_result,
                                 SL_AGG_INT64_SUM | SL_AGG_ADD_VALUE | SL_AGG_UD_VALUE,
                                 NULL};
const sl_aggregate sl_agg_min = {
    SL_AGGREGATE_VERSION, "min",           8,   8, min_init, min_add, min_merge,
    i64_result,           SL_AGG_UD_VALUE, NULL};
const sl_aggregate sl_agg_max = {
    SL_AGGREGATE_VERSION, "max",           8,   8, max_init, max_add, max_merge,
    i64_result,           SL_AGG_UD_VALUE, NULL};
const sl_aggregate sl_agg_avg = {
    SL_AGGREGATE_VERSION, "avg", sizeof(avg_acc), 8, avg_init, avg_add, avg_merge, avg_result,
    SL_AGG_UD_VALUE,      NULL};

const sl_aggregate *sl_agg_by_name(const char *name)
{
    static const sl_aggregate *const all[] = {&sl_agg_count, &sl_agg_sum, &sl_agg_min,
                                              &sl_agg_max,   &sl_agg_avg, &sl_agg_distinct};
    for (size_t i = 0; name && i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(all[i]->name, name) == 0) return all[i];
    return NULL;
}

/* --- checks and confs shared with the window builder -------------------------- */

const char *sli_agg_invalid(const sl_aggregate *a)
{
    if (!a) return "needs an aggregate";
    if (a->version < 1 || a->version > SL_AGGREGATE_VERSION) return "has an unknown version";
    if (!a->init || !a->add || !a->result) return "needs init(), add() and result()";
    uint32_t f = sl_agg_flags(a);
    if (f & ~(SL_AGG_INT64_SUM | SL_AGG_ADD_ONE | SL_AGG_ADD_VALUE | SL_AGG_UD_VALUE))
        return "has unknown flags";
    if ((f & SL_AGG_INT64_SUM) && (a->acc_size != 8 || a->result_size != 8))
        return "has SL_AGG_INT64_SUM but acc_size or result_size is not 8";
    if ((f & SL_AGG_ADD_ONE) && !(f & SL_AGG_INT64_SUM))
        return "has SL_AGG_ADD_ONE without SL_AGG_INT64_SUM";
    if ((f & SL_AGG_ADD_VALUE) && (f & (SL_AGG_INT64_SUM | SL_AGG_UD_VALUE | SL_AGG_ADD_ONE)) !=
                                      (SL_AGG_INT64_SUM | SL_AGG_UD_VALUE))
        return "has SL_AGG_ADD_VALUE without SL_AGG_INT64_SUM and SL_AGG_UD_VALUE (or with "
               "SL_AGG_ADD_ONE)";
    return NULL;
}

int sli_agg_ud_copy(sl_pipeline *p, const sl_aggregate *a, const void *ud, const void **out)
{
    *out = ud;
    if (!ud || !(sl_agg_flags(a) & SL_AGG_UD_VALUE)) return 0;
    sl_agg_value *v = malloc(sizeof(*v));
    if (!v || sl_pipeline_own(p, v)) /* own() frees v on failure */
        return sl_pipeline_error(p, SL_ENOMEM, "out of memory");
    memcpy(v, ud, sizeof(*v));
    *out = v;
    return 0;
}

const char *sli_key_str(char *buf, size_t cap, const void *key, uint32_t len)
{
    const uint8_t *k = key;
    size_t o = 0;
    int printable = len > 0;
    for (uint32_t i = 0; i < len; i++)
        if (k[i] < 0x20 || k[i] > 0x7e) printable = 0;
    if (cap == 0) return buf;
    buf[0] = 0;
    if (!printable && len == 8) {
        int64_t v;
        memcpy(&v, k, 8);
        snprintf(buf, cap, "%" PRId64, v);
        return buf;
    }
    for (uint32_t i = 0; i < len; i++) {
        char t[5];
        int n = k[i] >= 0x20 && k[i] <= 0x7e && k[i] != '\\'
                    ? snprintf(t, sizeof(t), "%c", k[i])
                    : snprintf(t, sizeof(t), "\\x%02x", k[i]);
        if (o + (size_t)n + 4 > cap) {
            if (o + 4 <= cap) memcpy(buf + o, "...", 4);
            return buf;
        }
        memcpy(buf + o, t, (size_t)n + 1);
        o += (size_t)n;
    }
    return buf;
}

/* --- keyed rolling aggregate -------------------------------------------------- */

typedef struct agg_self {
    sl_state *acc;
    uint32_t ts_off; /* offset of the largest event time in a state value */
    /* SL_AGG_EMIT_FINAL: the final results went out (end() ran on the whole
     * input). The checkpoint taken after the end says so (the operator's
     * section, one byte 1, written only then), so that a run resumed from
     * it does not emit them a second time. */
    int final_done;
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
    const uint32_t rs = agg->result_size, zero = 0;
    uint8_t *out = sl_emit(ctx, ts, hash, SL_AGG_OUT_HDR + rs + key.len);
    if (!out) return sl_ctx_error(ctx);
    memcpy(out, &rs, 4);
    memcpy(out + 4, &zero, 4);
    agg->result(acc, out + SL_AGG_OUT_HDR, ud);
    if (key.len) memcpy(out + SL_AGG_OUT_HDR + rs, key.ptr, key.len);
    return 0;
}

static int agg_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    agg_self *s = self;
    const sl_agg_conf *c = sl_ctx_conf(ctx);
    const sl_aggregate *agg = c->agg;
    const void *ud = c->ud;
    int updates = c->emit == SL_AGG_EMIT_UPDATES;
    const uint32_t fl = sl_agg_flags(agg);
    const int add_one = (fl & SL_AGG_ADD_ONE) != 0;
    const int inline_sum = add_one || (fl & SL_AGG_ADD_VALUE);
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
        if (inline_sum) { /* count and sum: checked int64 addition */
            int64_t v = add_one ? 1 : sli_agg_value(rec.ptr, rec.len, ud), x;
            memcpy(&x, acc, 8);
            if (__builtin_add_overflow(x, v, &x)) {
                char kb[80];
                return sl_ctx_fail(ctx, SL_ERANGE,
                                   "%s of key '%s' leaves int64 at event time %" PRId64 " (%" PRId64
                                   " + %" PRId64 ")",
                                   agg->name ? agg->name : "sum",
                                   sli_key_str(kb, sizeof(kb), key.ptr, key.len), in->ts[i],
                                   *(int64_t *)acc, v);
            }
            memcpy(acc, &x, 8);
        } else {
            agg->add(acc, rec.ptr, rec.len, in->ts[i], ud);
        }
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
    /* Canceled: the input was cut, so "final" results would be partial
     * counts that look complete: emit none. */
    if (c->emit != SL_AGG_EMIT_FINAL || sl_ctx_end_canceled(ctx) || s->final_done) return 0;
    size_t it = 0;
    sl_state_entry e;
    while (sl_state_next(s->acc, &it, &e)) {
        int64_t max_ts;
        memcpy(&max_ts, (const uint8_t *)e.value + s->ts_off, 8);
        sl_bytes key = {e.key, e.key_len};
        int rc = emit_result(ctx, c->agg, c->ud, e.value, max_ts, e.hash, key);
        if (rc) return rc;
    }
    s->final_done = 1;
    return 0;
}

static int agg_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    (void)ctx;
    const agg_self *s = self;
    static const uint8_t done = 1;
    return s->final_done ? sl_buf_append(out, &done, 1) : 0;
}

/* Every old instance's section comes here (a keyed node): one that had
 * emitted its final results means the input had ended for all. */
static int agg_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    agg_self *s = self;
    if (len == 0) return 0;
    if (len != 1 || *(const uint8_t *)data != 1)
        return sl_ctx_fail(ctx, SL_ECORRUPT,
                           "the aggregate's state in the checkpoint is malformed (%zu bytes)", len);
    s->final_done = 1;
    return 0;
}

static const sl_operator agg_op = {.version = SL_OPERATOR_VERSION,
                                   .kind = "aggregate",
                                   .open = agg_open,
                                   .process = agg_process,
                                   .end = agg_end,
                                   .snapshot = agg_snapshot,
                                   .restore = agg_restore,
                                   .close = agg_close};

sl_stream *sl_stream_aggregate(sl_stream *in, const char *name, const sl_agg_conf *conf)
{
    if (!in) return NULL;
    sl_pipeline *p = sl_stream_pipeline(in);
    const char *nm = name ? name : "";
    if (!sl_stream_keyed(in)) {
        sl_pipeline_error(p, SL_EINVAL, "aggregate '%s': its input is not keyed (use key_by)", nm);
        return NULL;
    }
    if (!conf) {
        sl_pipeline_error(p, SL_EINVAL, "aggregate '%s': no conf", nm);
        return NULL;
    }
    if (!conf->agg) {
        sl_pipeline_error(p, SL_EINVAL, "aggregate '%s': needs an aggregate (conf.agg)", nm);
        return NULL;
    }
    const char *why = sli_agg_invalid(conf->agg);
    if (why) {
        sl_pipeline_error(p, SL_EINVAL, "aggregate '%s': the aggregate '%s' %s", nm,
                          conf->agg->name ? conf->agg->name : "", why);
        return NULL;
    }
    if (conf->emit != SL_AGG_EMIT_UPDATES && conf->emit != SL_AGG_EMIT_FINAL) {
        sl_pipeline_error(p, SL_EINVAL, "aggregate '%s': unknown emit mode %d", nm,
                          (int)conf->emit);
        return NULL;
    }
    /* The node keeps its own copy of the conf (owned by the pipeline). */
    sl_agg_conf *c = malloc(sizeof(*c));
    if (!c || sl_pipeline_own(p, c)) { /* own() frees c on failure */
        sl_pipeline_error(p, SL_ENOMEM, "aggregate '%s': out of memory", nm);
        return NULL;
    }
    *c = *conf;
    if (sli_agg_ud_copy(p, c->agg, conf->ud, &c->ud)) return NULL;
    return sl_stream_apply(in, name, &agg_op, c, 0);
}
