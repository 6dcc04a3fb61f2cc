/*
 * operators/window/combine.c - sl_stream_window_combined: a tumbling or
 * sliding window with a combiner, i.e. pre-aggregation before the shuffle
 * (the "local aggregation" of Flink's mini-batch mode, a MapReduce
 * combiner). sluice/window.h states what the user sees; this comment says
 * how and why it is the same as sl_stream_window(key_by(in)).
 *
 * The plan. Three nodes:
 *
 *   in ─► "<name>.combine" ─► "<name>.key" ═══ shuffle ═══► "<name>"
 *         (chained to in,     (key_by,                     (the window's
 *          one per instance)   comb_key)                    callbacks)
 *
 * The combiner keeps, per (key, slice n) where a slice is gcd(size, slide)
 * long as in slices.c, a partial accumulator of the aggregate, in engine
 * keyed state of the instance (so a checkpoint carries it and a restore
 * gives it back: nothing is flushed at a barrier). The final node is the
 * window operator (window.c's table, sli_win_op) fed through a thin wrapper:
 * it merges a partial into the window's slice with the aggregate's merge()
 * and hands raw records to the window unchanged.
 *
 * Records crossing the shuffle (variable length; the last byte is the tag):
 *
 *   raw      offset 0        len            the input record, unchanged
 *            offset len      1              0 (TAG_RAW)
 *
 *   partial  offset 0        acc_size       the accumulator
 *            offset acc_size key_len        the key bytes
 *            last            1              1 (TAG_PART)
 *   event time: the slice's start; hash: set by key_by from the key
 *
 * The invariant that makes the results equal. Let due(n) = end - 1 of the
 * first window that contains slice n (the watermark at which that window
 * fires). At the combiner, with input watermark W:
 *
 *  - a record of slice n with W < due(n) is added to the partial (n, key);
 *  - the partial (n, key) is emitted in the watermark() callback that sees
 *    W >= due(n), that is, on the same channel BEFORE that watermark (the
 *    engine flushes what a callback emitted before forwarding the
 *    watermark), and at the end of the input;
 *  - a record with W >= due(n) (late, or within allowed lateness, or about
 *    to be) and a record in no window (a gap of slide > size) go on RAW.
 *
 * So when a partial reaches the window, the window's watermark (a minimum
 * over channels, each at most what this combiner forwarded) is below
 * due(n): no window of slice n has fired, the partial is never late and its
 * merge is what adding its records would have done. A raw record travels on
 * the same channel in the same place relative to the watermarks as without
 * a combiner, so the window judges it (late port, firing again under
 * allowed lateness, unassigned port) exactly as it would have; and every
 * record of a window is in its state (as a record or inside a partial)
 * before the watermark that fires it. Within one input batch the final node
 * gives the window the partials first and the raw records after: a partial
 * and a raw record of the same batch are never of a window the other could
 * have fired (partials are of unfired windows, and nothing fires inside a
 * batch except on raw records of windows already fired), so the order does
 * not change any output.
 *
 * The final node. The window code reads keys with the key function of its
 * input (comb_key, which reads the tag) and aggregates with w->agg / w->ud
 * and the inline flags of its instance (window_int.h). For a batch of
 * partials the wrapper switches, for that call only: for SL_AGG_INT64_SUM
 * aggregates (count, sum) the inline add of the int64 at offset 0 (the
 * partial's accumulator), with the window's overflow check; for the others
 * w->agg = "partials", whose add() merges the record's accumulator (copied
 * to aligned memory) and whose init / merge / result are the aggregate's.
 * The raw records of a batch are copied without their tag into a batch of
 * the instance's own (the late and unassigned ports carry them unchanged,
 * at the input's width), and a thread-local tells comb_key that the records
 * it is given are untagged during that call. Raw records are the rare case
 * (records later than the watermark); partials pass in the engine's batch.
 *
 * Refused: session windows (a record may merge sessions: a slice of a key
 * is no unit) and early firing (its results depend on when partials come),
 * with SL_ENOTSUP and one line. End of the input: the watermark +inf
 * flushes everything. Cancel: the partials stay in the combiner's state
 * (their windows have not fired and, the watermark stopping, never fire in
 * this run); a stop with a savepoint carries them to the restarted job.
 *
 * Idle inputs (a limit, stated in sluice/window.h): an operator is told of
 * no IDLE, so a combiner holds its partials until its own watermark moves;
 * were its channels excluded downstream as idle while the other inputs
 * pushed the window's watermark past due(n), the partials would come late.
 * The final node checks every partial against its watermark and fails the
 * job with a message then (SL_ESTATE): loudly, never a wrong result.
 *
 * Hot path: per record one state lookup (sl_state_get on key ‖ slice) and
 * one add(); nothing is allocated per record (the composite key scratch
 * grows to the longest key once). Runs on the worker thread of the
 * instance's task; the statistics are atomics added once per batch.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include "engine/graph.h" /* sli_stream_inherit_parallelism */
#include "operators/aggregate.h"
#include "operators/window/window_int.h"

#define TAG_RAW  0
#define TAG_PART 1

#define SNAP_MAGIC "SLWC"
#define SNAP_LEN   48

/* The conf shared by the three nodes, owned by the pipeline. It starts with
 * the window's node conf, which the window's open() reads. */
typedef struct comb_conf {
    win_node_conf wn; /* first: sl_ctx_conf() of the final node is read as one */
    const sl_aggregate *agg;
    const void *ud; /* the node's copy (wn.c.agg_ud) */
    sl_key_fn key;
    void *key_ud;
    int64_t g, off, k, s;    /* slice length, offset mod slide, size and slide in slices */
    uint32_t acc_size, accr; /* accr: acc_size rounded up to 8 (the due time follows) */
    int i64;                 /* SL_AGG_INT64_SUM */
    int add_one, add_value;  /* SL_AGG_ADD_ONE / _ADD_VALUE: inline checked adds */
    sl_aggregate part;       /* "partials": add() merges a partial */
    sl_agg_value zero;       /* the int64 at offset 0 (a partial's count or sum) */
    _Atomic uint64_t n_in, n_part, n_raw, n_bytes;
} comb_conf;

static const sl_operator comb_op, fin_op;

/* --- slices: the grid of window_int.h (the window's own rule) ------------------------- */

static inline int64_t sat64(__int128 x)
{
    return sli_win_sat(x);
}
static inline int64_t first_end(const comb_conf *c, int64_t n)
{
    return sli_win_first_end(c->k, c->s, n);
}
static inline int64_t last_end(const comb_conf *c, int64_t n)
{
    return sli_win_last_end(c->k, c->s, n);
}
/* The watermark that fires the first window of slice n. */
static inline int64_t due_of(const comb_conf *c, int64_t n)
{
    return sli_win_fire_ms(c->off, c->g, first_end(c, n));
}
static inline int64_t slice_start(const comb_conf *c, int64_t n)
{
    return sat64((__int128)c->off + (__int128)n * c->g);
}

/* --- the shuffle's key function --------------------------------------------------------- */

/* Set by the final node while the window reads its batch of untagged raw
 * records (that instance's thread, that call only). */
static _Thread_local const comb_conf *tl_untagged;
/* Aligned room for one accumulator, the final instance's (partials calls). */
static _Thread_local uint8_t *tl_tmp;

static sl_bytes comb_key(const void *rec, uint32_t len, void *ud)
{
    const comb_conf *c = ud;
    const uint8_t *p = rec;
    if (tl_untagged == c) return c->key(rec, len, c->key_ud);
    if (len && p[len - 1] == TAG_RAW) return c->key(rec, len - 1, c->key_ud);
    sl_bytes k = {p, 0};
    if (len > c->acc_size) {
        k.ptr = p + c->acc_size;
        k.len = len - 1 - c->acc_size;
    }
    return k;
}

/* --- "partials": the aggregate the window runs on a batch of partials ------------------ */

static void part_init(void *acc, const void *ud)
{
    const comb_conf *c = ud;
    c->agg->init(acc, c->ud);
}
static void part_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    const comb_conf *c = ud;
    (void)ts;
    (void)len; /* checked by fin_process: len > acc_size */
    memcpy(tl_tmp, rec, c->acc_size);
    c->agg->merge(acc, tl_tmp, c->ud);
}
static void part_merge(void *acc, const void *other, const void *ud)
{
    const comb_conf *c = ud;
    c->agg->merge(acc, other, c->ud);
}
static void part_result(const void *acc, void *out, const void *ud)
{
    const comb_conf *c = ud;
    c->agg->result(acc, out, c->ud);
}

/* --- the combiner --------------------------------------------------------------------- */

/* One combiner instance. "partials": key ‖ slice (int64) -> accumulator
 * (accr bytes) ‖ due (int64), engine keyed state. */
typedef struct comb {
    sl_state *st;
    int64_t min_due; /* smallest due of a held partial (INT64_MAX: none) */
    int scan;        /* min_due unknown (after a restore): scan at the next watermark */
    uint8_t *ck;     /* composite key scratch */
    size_t ck_cap;
} comb;

static int comb_open(sl_ctx *ctx, void **self)
{
    const comb_conf *c = sl_ctx_conf(ctx);
    comb *m = calloc(1, sizeof(*m));
    if (!m) return SL_ENOMEM;
    m->st = sl_ctx_state(ctx, "partials", c->accr + 8);
    if (!m->st) {
        free(m);
        return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
    }
    m->min_due = INT64_MAX;
    m->scan = 1; /* a restore may fill the table after open */
    *self = m;
    return 0;
}

static void comb_close(void *self)
{
    comb *m = self;
    if (!m) return;
    free(m->ck);
    free(m);
}

static const uint8_t *comb_ck(comb *m, sl_bytes key, int64_t n)
{
    if ((size_t)key.len + 8 > m->ck_cap) {
        size_t cap = m->ck_cap ? m->ck_cap : 64;
        while (cap < (size_t)key.len + 8) cap *= 2;
        uint8_t *x = realloc(m->ck, cap);
        if (!x) return NULL;
        m->ck = x;
        m->ck_cap = cap;
    }
    if (key.len) memcpy(m->ck, key.ptr, key.len);
    memcpy(m->ck + key.len, &n, 8);
    return m->ck;
}

static int comb_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    comb_conf *c = sl_ctx_conf(ctx);
    comb *m = self;
    const int64_t W = sl_ctx_current_watermark(ctx);
    const uint32_t as = c->acc_size;
    uint64_t n_raw = 0, n_bytes = 0;
    /* The slice of the last record (consecutive records of one slice skip
     * the divisions): t_lo <= t < t_hi is slice n, raw when its first window
     * has fired at this watermark or it is in no window. */
    int64_t t_lo = 1, t_hi = 0, n = 0, due = 0;
    int raw = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        const int64_t t = in->ts[i];
        if (__builtin_expect(t < t_lo || t >= t_hi, 0)) {
            n = sli_win_slice_of(c->off, c->g, t);
            t_lo = slice_start(c, n);
            t_hi = sat64((__int128)t_lo + c->g);
            if (t_hi == INT64_MAX) t_hi = t_lo; /* no caching at the limit */
            due = due_of(c, n);
            raw = first_end(c, n) > last_end(c, n) || W >= due;
        }
        sl_bytes r = sl_batch_bytes(in, i);
        if (raw) {
            uint8_t *o = sl_emit(ctx, t, 0, r.len + 1);
            if (!o) return sl_ctx_error(ctx);
            if (r.len) memcpy(o, r.ptr, r.len);
            o[r.len] = TAG_RAW;
            n_raw++;
            n_bytes += r.len + 1;
            continue;
        }
        sl_bytes key = c->key(r.ptr, r.len, c->key_ud);
        const uint8_t *ck = comb_ck(m, key, n);
        if (!ck) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for the combiner's key");
        int created = 0;
        uint8_t *acc = sl_state_get(m->st, sl_hash(ck, key.len + 8), ck, key.len + 8, &created);
        if (!acc) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for partial aggregates");
        if (created) {
            c->agg->init(acc, c->ud);
            memcpy(acc + c->accr, &due, 8);
            if (due < m->min_due) m->min_due = due;
        }
        if (c->add_one || c->add_value) { /* count, sum: checked, as the window adds */
            int64_t x, v = c->add_one ? 1 : sli_agg_value(r.ptr, r.len, c->ud);
            memcpy(&x, acc, 8);
            if (__builtin_add_overflow(x, v, &x)) {
                char kb[80];
                return sl_ctx_fail(ctx, SL_ERANGE,
                                   "%s of key '%s' in slice [%" PRId64 ", %" PRId64
                                   ") leaves int64 (no wrap, no saturation: the job stops)",
                                   c->agg->name ? c->agg->name : "sum",
                                   sli_key_str(kb, sizeof(kb), key.ptr, key.len), t_lo,
                                   sat64((__int128)t_lo + c->g));
            }
            memcpy(acc, &x, 8);
        } else {
            c->agg->add(acc, r.ptr, r.len, t, c->ud);
        }
    }
    (void)as;
    atomic_fetch_add_explicit(&c->n_in, in->count, memory_order_relaxed);
    if (n_raw) {
        atomic_fetch_add_explicit(&c->n_raw, n_raw, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->n_bytes, n_bytes, memory_order_relaxed);
    }
    return 0;
}

/* Emit (and drop) every partial whose due time is <= wm. */
static int comb_flush(sl_ctx *ctx, comb_conf *c, comb *m, int64_t wm)
{
    if (!m->scan && (m->min_due == INT64_MAX || m->min_due > wm)) return 0;
    const uint32_t as = c->acc_size;
    uint64_t n_part = 0, n_bytes = 0;
    int64_t next = INT64_MAX;
    size_t it = 0;
    sl_state_entry e;
    while (sl_state_next(m->st, &it, &e)) {
        const uint8_t *v = e.value;
        int64_t due, n;
        memcpy(&due, v + c->accr, 8);
        if (due > wm) {
            if (due < next) next = due;
            continue;
        }
        const uint32_t klen = e.key_len - 8;
        memcpy(&n, (const uint8_t *)e.key + klen, 8);
        uint8_t *o = sl_emit(ctx, slice_start(c, n), 0, as + klen + 1);
        if (!o) return sl_ctx_error(ctx);
        memcpy(o, v, as);
        if (klen) memcpy(o + as, e.key, klen);
        o[as + klen] = TAG_PART;
        n_part++;
        n_bytes += as + klen + 1;
        sl_state_remove(m->st, e.hash, e.key, e.key_len);
    }
    m->min_due = next;
    m->scan = 0;
    if (n_part) {
        atomic_fetch_add_explicit(&c->n_part, n_part, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->n_bytes, n_bytes, memory_order_relaxed);
    }
    return 0;
}

static int comb_watermark(sl_ctx *ctx, void *self, int64_t wm)
{
    return comb_flush(ctx, sl_ctx_conf(ctx), self, wm);
}

/* The end of the input: everything goes on (the watermark +inf came first,
 * so this finds nothing, but it costs one look). After a cancel the
 * partials stay: their windows have not fired and, the watermark stopping
 * where it is, never fire in this run; a stop with a savepoint keeps them
 * in the combiner's state, and the restarted job sends them on. */
static int comb_end(sl_ctx *ctx, void *self)
{
    if (sl_ctx_end_canceled(ctx)) return 0;
    return comb_flush(ctx, sl_ctx_conf(ctx), self, INT64_MAX);
}

/* Snapshot hook: the partials are engine keyed state (snapshotted by the
 * engine); this is the slicing they were made with, checked on restore:
 *
 *   offset  size  field
 *   0       4     "SLWC"
 *   4       4     version, 1
 *   8       8     slice length g
 *   16      8     offset mod slide
 *   24      8     window size in slices k
 *   32      8     slide in slices s
 *   40      4     accumulator size
 *   44      4     reserved, 0
 */
static void snap_fill(const comb_conf *c, uint8_t *b)
{
    const uint32_t ver = 1, as = c->acc_size, zero = 0;
    memcpy(b, SNAP_MAGIC, 4);
    memcpy(b + 4, &ver, 4);
    memcpy(b + 8, &c->g, 8);
    memcpy(b + 16, &c->off, 8);
    memcpy(b + 24, &c->k, 8);
    memcpy(b + 32, &c->s, 8);
    memcpy(b + 40, &as, 4);
    memcpy(b + 44, &zero, 4);
}

static int comb_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    (void)self;
    uint8_t b[SNAP_LEN];
    snap_fill(sl_ctx_conf(ctx), b);
    return sl_buf_append(out, b, sizeof(b));
}

static int comb_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    comb *m = self;
    uint8_t b[SNAP_LEN];
    snap_fill(sl_ctx_conf(ctx), b);
    if (len != SNAP_LEN || memcmp(data, SNAP_MAGIC, 4) != 0)
        return sl_ctx_fail(ctx, SL_ECORRUPT, "checkpoint: the combiner's state is malformed");
    if (memcmp(data, b, SNAP_LEN) != 0)
        return sl_ctx_fail(ctx, SL_EINVAL,
                           "checkpoint: the combiner's partials were made with another window "
                           "(size, slide, offset or aggregate): restore it as it was");
    m->scan = 1;
    return 0;
}

static const sl_operator comb_op = {.version = SL_OPERATOR_VERSION,
                                    .kind = "combiner",
                                    .open = comb_open,
                                    .process = comb_process,
                                    .watermark = comb_watermark,
                                    .end = comb_end,
                                    .snapshot = comb_snapshot,
                                    .restore = comb_restore,
                                    .close = comb_close};

/* --- the final node: the window, fed partials and raw records --------------------------- */

typedef struct fin {
    win *w;       /* the window instance (window.c's open) */
    sl_batch raw; /* the raw records of the current batch, untagged */
    uint8_t *tmp; /* acc_size, malloc-aligned: a partial before merge() */
    uint8_t keep[SL_BATCH_CAPACITY];
} fin;

static void fin_close(void *self)
{
    fin *f = self;
    if (!f) return;
    if (f->w) sli_win_op()->close(f->w);
    free(f->raw.ts);
    free(f->raw.hash);
    free(f->raw.var);
    free(f->raw.data);
    free(f->tmp);
    free(f);
}

static int fin_open(sl_ctx *ctx, void **self)
{
    const comb_conf *c = sl_ctx_conf(ctx);
    fin *f = calloc(1, sizeof(*f));
    if (!f) return SL_ENOMEM;
    int rc = sli_win_op()->open(ctx, (void **)&f->w);
    if (rc) {
        free(f);
        return rc;
    }
    f->raw.width = c->wn.in_width;
    f->raw.ts = malloc(SL_BATCH_CAPACITY * sizeof(int64_t));
    f->raw.hash = malloc(SL_BATCH_CAPACITY * sizeof(uint64_t));
    f->raw.var = malloc(SL_BATCH_CAPACITY * sizeof(sl_slice));
    f->tmp = malloc(c->accr ? c->accr : 8);
    if (!f->raw.ts || !f->raw.hash || !f->raw.var || !f->tmp) {
        fin_close(f);
        return SL_ENOMEM;
    }
    *self = f;
    return 0;
}

/* Append payload p (len bytes) of a raw record to f->raw. */
static int raw_push(fin *f, int64_t ts, uint64_t h, const uint8_t *p, uint32_t len)
{
    sl_batch *b = &f->raw;
    if ((uint64_t)b->data_len + len > b->data_cap) {
        uint64_t cap = b->data_cap ? b->data_cap : 4096;
        while (cap < (uint64_t)b->data_len + len) cap *= 2;
        if (cap > UINT32_MAX) return SL_ETOOBIG;
        uint8_t *d = realloc(b->data, cap);
        if (!d) return SL_ENOMEM;
        b->data = d;
        b->data_cap = (uint32_t)cap;
    }
    if (len) memcpy(b->data + b->data_len, p, len);
    if (!b->width) {
        b->var[b->count].off = b->data_len;
        b->var[b->count].len = len;
    }
    b->ts[b->count] = ts;
    b->hash[b->count] = h;
    b->data_len += len;
    b->count++;
    return 0;
}

static int fin_partials(sl_ctx *ctx, const comb_conf *c, fin *f, sl_batch *in)
{
    win *w = f->w;
    const sl_aggregate *agg = w->agg;
    const void *ud = w->ud;
    const int add_one = w->add_one, add_value = w->add_value;
    if (c->i64) {
        w->add_one = 0;
        w->add_value = 1;
        w->ud = &c->zero;
    } else {
        w->agg = &c->part;
        w->ud = c;
        tl_tmp = f->tmp;
    }
    int rc = sli_win_op()->process(ctx, w, in);
    w->agg = agg;
    w->ud = ud;
    w->add_one = add_one;
    w->add_value = add_value;
    tl_tmp = NULL;
    return rc;
}

static int fin_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    const comb_conf *c = sl_ctx_conf(ctx);
    fin *f = self;
    const uint32_t count = in->count;
    const int64_t W = sl_ctx_current_watermark(ctx);
    uint32_t n_raw = 0;
    f->raw.count = 0;
    f->raw.data_len = 0;
    for (uint32_t i = 0; i < count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        const uint8_t *p = r.ptr;
        uint8_t tag = r.len ? p[r.len - 1] : 0xFF;
        if (tag == TAG_PART && r.len > c->acc_size) {
            /* never true while the invariant holds (see the top) */
            if (__builtin_expect(W >= due_of(c, sli_win_slice_of(c->off, c->g, in->ts[i])), 0))
                return sl_ctx_fail(ctx, SL_ESTATE,
                                   "a partial aggregate of slice [%" PRId64 ", ...) came after the "
                                   "watermark (%" PRId64 ") fired its window (was an input of the "
                                   "combiner idle?)",
                                   in->ts[i], W);
            f->keep[i] = 1;
            continue;
        }
        if (tag != TAG_RAW || (c->wn.in_width && r.len - 1 != c->wn.in_width))
            return sl_ctx_fail(ctx, SL_ECORRUPT,
                               "a record from the combiner is malformed (%" PRIu32 " bytes)",
                               r.len);
        f->keep[i] = 0;
        int rc = raw_push(f, in->ts[i], in->hash[i], p, r.len - 1);
        if (rc) return sl_ctx_fail(ctx, rc, "out of memory for the window's raw records");
        n_raw++;
    }
    int rc = 0;
    if (n_raw < count) {
        if (n_raw) sl_batch_compact(in, f->keep);
        rc = fin_partials(ctx, c, f, in);
    }
    if (!rc && n_raw) {
        tl_untagged = c;
        rc = sli_win_op()->process(ctx, f->w, &f->raw);
        tl_untagged = NULL;
    }
    return rc;
}

static int fin_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    fin *f = self;
    return sli_win_op()->timer(ctx, f->w, t);
}

static int fin_proc_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    fin *f = self;
    return sli_win_op()->proc_timer ? sli_win_op()->proc_timer(ctx, f->w, t) : 0;
}

static int fin_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    fin *f = self;
    return sli_win_op()->snapshot(ctx, f->w, out);
}

static int fin_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    fin *f = self;
    return sli_win_op()->restore(ctx, f->w, data, len);
}

static const sl_operator fin_op = {.version = SL_OPERATOR_VERSION,
                                   .kind = "window",
                                   .open = fin_open,
                                   .process = fin_process,
                                   .timer = fin_timer,
                                   .proc_timer = fin_proc_timer,
                                   .snapshot = fin_snapshot,
                                   .restore = fin_restore,
                                   .close = fin_close};

/* --- builder ---------------------------------------------------------------------------- */

win_node_conf *sli_win_combined_conf(sl_stream *out)
{
    comb_conf *c = out ? sl_stream_op_conf(out, &fin_op) : NULL;
    return c ? &c->wn : NULL;
}

int sl_window_combined_stats(sl_stream *out, sl_window_combine_stats *st)
{
    comb_conf *c = out ? sl_stream_op_conf(out, &fin_op) : NULL;
    if (!c || !st) return SL_EINVAL;
    st->records_in = atomic_load(&c->n_in);
    st->partials = atomic_load(&c->n_part);
    st->raw = atomic_load(&c->n_raw);
    st->bytes = atomic_load(&c->n_bytes);
    return 0;
}

sl_stream *sl_stream_window_combined(sl_stream *in, const char *name, sl_key_fn key, void *key_ud,
                                     const sl_window_conf *conf)
{
    if (!in) return NULL;
    sl_pipeline *p = sl_stream_pipeline(in);
    const char *nm = name ? name : "";
    if (!key) {
        sl_pipeline_error(p, SL_EINVAL, "window '%s': no key function", nm);
        return NULL;
    }
    if (sli_win_conf_check(p, nm, conf)) return NULL;
    if (conf->kind == SL_WINDOW_SESSION) {
        sl_pipeline_error(p, SL_ENOTSUP,
                          "window '%s': a combiner cannot pre-aggregate session windows (a "
                          "record may merge two sessions): use sl_stream_window",
                          nm);
        return NULL;
    }
    if (!conf->agg->merge) {
        sl_pipeline_error(p, SL_EINVAL,
                          "window '%s': a combiner needs the aggregate's merge() ('%s' has none)",
                          nm, conf->agg->name ? conf->agg->name : "");
        return NULL;
    }
    if (conf->early_ms > 0) {
        sl_pipeline_error(p, SL_ENOTSUP,
                          "window '%s': a combiner cannot serve early firing (early_ms): use "
                          "sl_stream_window",
                          nm);
        return NULL;
    }
    size_t nl = strlen(nm);
    char *cname = malloc(nl + 16), *kname = malloc(nl + 16);
    comb_conf *c = calloc(1, sizeof(*c));
    if (!cname || !kname || !c) {
        free(cname);
        free(kname);
        free(c);
        sl_pipeline_error(p, SL_ENOMEM, "window '%s': out of memory", nm);
        return NULL;
    }
    snprintf(cname, nl + 16, "%s.combine", nm);
    snprintf(kname, nl + 16, "%s.key", nm);
    sl_stream *out = NULL;
    if (sl_pipeline_own(p, c)) { /* frees c */
        sl_pipeline_error(p, SL_ENOMEM, "window '%s': out of memory", nm);
        goto done;
    }
    c->wn.c = *conf;
    c->wn.in_width = sl_stream_width(in);
    if (sli_agg_ud_copy(p, conf->agg, conf->agg_ud, &c->wn.c.agg_ud)) goto done;
    const uint32_t flags = sl_agg_flags(conf->agg);
    c->agg = conf->agg;
    c->ud = c->wn.c.agg_ud;
    c->key = key;
    c->key_ud = key_ud;
    sli_win_grid(conf, &c->off, &c->g, &c->k, &c->s); /* the window's own slicing */
    c->acc_size = conf->agg->acc_size;
    c->accr = (c->acc_size + 7u) & ~7u;
    c->i64 = (flags & SL_AGG_INT64_SUM) != 0;
    c->add_one = (flags & SL_AGG_ADD_ONE) != 0;
    c->add_value = (flags & SL_AGG_ADD_VALUE) != 0;
    c->part.version = SL_AGGREGATE_VERSION;
    c->part.name = conf->agg->name;
    c->part.acc_size = conf->agg->acc_size;
    c->part.result_size = conf->agg->result_size;
    c->part.init = part_init;
    c->part.add = part_add;
    c->part.merge = part_merge;
    c->part.result = part_result;
    c->zero.offset = 0;

    sl_stream *s = sl_stream_apply(in, cname, &comb_op, c, 0);
    if (!s) goto done;
    sli_stream_inherit_parallelism(s); /* one combiner per instance of in, chained to it */
    s = sl_stream_key_by(s, kname, comb_key, c);
    if (!s) goto done;
    s = sl_stream_apply(s, name, &fin_op, c, 0);
    if (!s) goto done;
    if (sli_win_sides(s, conf, c->wn.in_width)) goto done; /* early_ms is 0 here */
    out = s;
done:
    free(cname);
    free(kname);
    return out;
}
