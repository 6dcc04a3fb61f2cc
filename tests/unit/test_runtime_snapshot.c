/*
 * test_runtime_snapshot.c - snapshot and restore of operator state, driven
 * directly (the checkpoint coordinator comes with a later issue).
 *
 * What it proves:
 *  - engine-owned keyed state: a keyed aggregate (count, sum, max, avg;
 *    short and long keys) runs over the first half of the input; after the
 *    run the state of every instance (sli_test_ctx_state_at) is snapshotted
 *    with sl_state_snapshot; a fresh pipeline restores it into its aggregate
 *    instances before any record (from the `open` of an operator chained
 *    behind the aggregate, given the snapshots in its conf) and runs the
 *    second half: the final results - values and event times - equal those
 *    of an uninterrupted run, and the counts equal a single-threaded oracle;
 *  - redistribution: snapshots taken at parallelism P are restored at
 *    parallelism Q (2 -> 3, 3 -> 2, 4 -> 1, 1 -> 4) by key-group ranges
 *    (sl_key_group_owner), and the results are the same: the engine's hash
 *    routing and the key-group ranges agree;
 *  - operator memory: an operator's own snapshot/restore hooks, called from
 *    its end and open, carry its state across the two halves;
 *  - a corrupt snapshot is refused (SL_ECORRUPT) and the run fails with a
 *    message naming the operator that could not open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/test_hooks.h"
#include "sluice/sluice.h"

#define WAIT_MS 300000 /* generous: only a hang exceeds it */
#define NREC    30000
#define NKEYS   211
#define MAX_PAR 4
#define MAX_ST  4

static int run_bounded(sl_pipeline *p)
{
    int rc = sl_pipeline_start(p);
    if (rc) return rc;
    rc = sl_pipeline_wait(p, WAIT_MS);
    if (rc == SL_EAGAIN) fail_msg("pipeline did not finish: hang");
    return rc;
}

/* Records: a key of 3..21 bytes (short keys inline, long ones in the state's
 * arena) and a value. */
typedef struct ev {
    char key[24];
    int64_t val;
} ev;

static void make_key(uint64_t k, char out[24])
{
    memset(out, 0, 24);
    int n = snprintf(out, 24, "k%llu", (unsigned long long)k);
    int pad = (int)(k % 3) * 7; /* 0, 7 or 14 more bytes */
    for (int i = 0; i < pad && n < 23; i++) out[n++] = (char)('a' + i);
}

static int gen_ev(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    uint64_t s = seq + *(const uint64_t *)ud; /* ud: first sequence number */
    ev *e = out;
    make_key((s * 2654435761u) % NKEYS, e->key);
    e->val = (int64_t)((s * 7919u) % 1000) - 400;
    *ts = (int64_t)((s * 48271u) % 100000); /* out of order: max matters */
    return 0;
}

static sl_bytes key_str(const void *rec, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    const ev *e = rec;
    sl_bytes k = {e->key, (uint32_t)strlen(e->key)};
    return k;
}

/* --- saved keyed state ------------------------------------------------------- */

typedef struct saved {
    int par;
    int n_states;
    char name[MAX_ST][32];
    uint32_t vsize[MAX_ST];
    sl_buf buf[MAX_PAR][MAX_ST];
} saved;

static void saved_free(saved *s)
{
    for (int i = 0; i < MAX_PAR; i++)
        for (int k = 0; k < MAX_ST; k++) sl_buf_free(&s->buf[i][k]);
}

/* After a run: snapshot every state of every instance of node `name`. */
static void snapshot_node(sl_pipeline *p, const char *name, saved *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0, n = sli_test_n_instances(p); i < n; i++) {
        sl_ctx *c = sli_test_instance(p, i);
        if (strcmp(sl_ctx_name(c), name) != 0) continue;
        int inst = sl_ctx_instance(c), n_states = sli_test_ctx_n_states(c);
        assert_true(inst < MAX_PAR && n_states <= MAX_ST);
        out->par = sl_ctx_parallelism(c);
        out->n_states = n_states;
        for (int k = 0; k < n_states; k++) {
            const char *nm = NULL;
            sl_state *st = sli_test_ctx_state_at(c, k, &nm);
            assert_non_null(st);
            snprintf(out->name[k], sizeof(out->name[k]), "%s", nm);
            out->vsize[k] = sl_state_value_size(st);
            assert_int_equal(sl_state_snapshot(st, &out->buf[inst][k]), 0);
        }
    }
    assert_true(out->par > 0);
}

/* Key groups [lo, hi] owned by instance i of par (a contiguous range). */
static void kg_range(int i, int par, uint32_t *lo, uint32_t *hi)
{
    *lo = UINT32_MAX;
    *hi = 0;
    for (uint32_t kg = 0; kg < SL_KEY_GROUPS; kg++) {
        if (sl_key_group_owner(kg, (uint32_t)par) != (uint32_t)i) continue;
        if (*lo == UINT32_MAX) *lo = kg;
        *hi = kg;
    }
}

/* Chained behind the aggregate: its open restores the aggregate instance's
 * keyed state (the aggregate opened first: it precedes in node order). */
typedef struct restore_conf {
    const saved *from; /* NULL: nothing to restore */
    const char *target;
} restore_conf;

static int restorer_open(sl_ctx *ctx, void **self)
{
    (void)self;
    restore_conf *rc = sl_ctx_conf(ctx);
    if (!rc->from) return 0;
    sl_ctx *agg = sli_test_chain_root(ctx);
    if (strcmp(sl_ctx_name(agg), rc->target) != 0 || sl_ctx_instance(agg) != sl_ctx_instance(ctx))
        return sl_ctx_fail(ctx, SL_EINVAL, "not chained behind '%s'", rc->target);
    uint32_t lo, hi;
    kg_range(sl_ctx_instance(ctx), sl_ctx_parallelism(ctx), &lo, &hi);
    if (lo == UINT32_MAX) return 0;
    for (int k = 0; k < rc->from->n_states; k++) {
        sl_state *st = sl_ctx_state(agg, rc->from->name[k], rc->from->vsize[k]);
        if (!st) return sl_ctx_error(agg);
        for (int j = 0; j < rc->from->par; j++) {
            const sl_buf *b = &rc->from->buf[j][k];
            int r = sl_state_restore(st, b->ptr, b->len, lo, hi);
            if (r) return r;
        }
    }
    return 0;
}

static int pass_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    return sl_forward(ctx, in);
}

static const sl_operator restorer_op = {.version = SL_OPERATOR_VERSION,
                                        .kind = "restorer",
                                        .open = restorer_open,
                                        .process = pass_process};

/* One run: records [first, first + count) through key_by -> aggregate
 * (parallelism par) -> restorer -> collector. Returns the run's code. */
static int run_agg(const sl_aggregate *agg, uint64_t first, uint64_t count, int par,
                   const saved *from, saved *snap_out, sl_collector *c)
{
    sl_pipeline *p = sl_pipeline_new();
    assert_int_equal(sl_pipeline_set_threads(p, 1 + par % 3), 0);
    assert_int_equal(sl_pipeline_set_parallelism(p, par), 0);
    sl_generator_conf gc = {.fn = gen_ev, .ud = &first, .count = count};
    sl_agg_value val = {.offset = offsetof(ev, val)};
    sl_agg_conf ac = {.agg = agg, .ud = &val, .emit = SL_AGG_EMIT_FINAL};
    restore_conf rcf = {.from = from, .target = "agg"};
    sl_stream *s = sl_stream_parallelism(sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL),
                                         1 + (par + 1) % 3);
    s = sl_stream_key_by(s, "by-key", key_str, NULL);
    s = sl_stream_aggregate(s, "agg", &ac);
    s = sl_stream_apply(s, "restore", &restorer_op, &rcf, 0);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
    int rc = run_bounded(p);
    if (!rc && snap_out) snapshot_node(p, "agg", snap_out);
    if (rc) print_message("run: %s\n", sl_pipeline_errmsg(p));
    char *msg = strdup(sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    if (rc && strstr(msg, "'restore'") == NULL)
        fail_msg("error does not name the operator: %s", msg);
    free(msg);
    return rc;
}

/* Results of a collector: per key (index by number) the result bytes and ts. */
typedef struct result {
    int seen;
    uint8_t r[8];
    int64_t ts;
} result;

static void results_of(sl_collector *c, uint32_t rsize, result out[NKEYS])
{
    memset(out, 0, sizeof(result) * NKEYS);
    for (size_t i = 0; i < sl_collector_count(c); i++) {
        int64_t ts;
        sl_bytes r = sl_collector_get(c, i, &ts);
        sl_bytes k = sl_agg_out_key(r);
        unsigned long long key = 0;
        char kb[32] = {0};
        assert_true(k.len < sizeof(kb));
        memcpy(kb, k.ptr, k.len);
        assert_int_equal(sscanf(kb, "k%llu", &key), 1);
        assert_true(key < NKEYS);
        char want[24];
        make_key(key, want);
        assert_string_equal(kb, want);
        if (out[key].seen++) fail_msg("key %s emitted twice", kb);
        memcpy(out[key].r, sl_agg_out_result(r), rsize);
        out[key].ts = ts;
    }
}

static void compare(const result *want, const result *got, const char *what)
{
    for (int k = 0; k < NKEYS; k++) {
        if (want[k].seen != got[k].seen)
            fail_msg("%s: key %d seen %d times, uninterrupted %d", what, k, got[k].seen,
                     want[k].seen);
        if (memcmp(want[k].r, got[k].r, 8) != 0) {
            int64_t a, b;
            memcpy(&a, want[k].r, 8);
            memcpy(&b, got[k].r, 8);
            fail_msg("%s: key %d result %lld (raw), uninterrupted %lld", what, k, (long long)b,
                     (long long)a);
        }
        if (want[k].ts != got[k].ts)
            fail_msg("%s: key %d event time %lld, uninterrupted %lld", what, k,
                     (long long)got[k].ts, (long long)want[k].ts);
    }
}

static void check_split_run(const sl_aggregate *agg, int par1, int par2)
{
    char what[96];
    snprintf(what, sizeof(what), "%s, parallelism %d then %d", agg->name, par1, par2);
    /* Uninterrupted. */
    sl_collector *whole = sl_collector_new();
    assert_int_equal(run_agg(agg, 0, NREC, 1, NULL, NULL, whole), 0);
    result want[NKEYS];
    results_of(whole, agg->result_size, want);
    if (agg == &sl_agg_count) { /* against a single-threaded oracle */
        int64_t n[NKEYS] = {0};
        for (uint64_t s = 0; s < NREC; s++) n[(s * 2654435761u) % NKEYS]++;
        for (int k = 0; k < NKEYS; k++) {
            int64_t v;
            memcpy(&v, want[k].r, 8);
            assert_int_equal(v, n[k]);
        }
    }
    /* First half, snapshot, second half restored. */
    saved snap;
    sl_collector *first = sl_collector_new(), *second = sl_collector_new();
    assert_int_equal(run_agg(agg, 0, NREC / 2, par1, NULL, &snap, first), 0);
    assert_int_equal(snap.par, par1);
    assert_int_equal(run_agg(agg, NREC / 2, NREC - NREC / 2, par2, &snap, NULL, second), 0);
    result got[NKEYS];
    results_of(second, agg->result_size, got);
    compare(want, got, what);
    saved_free(&snap);
    sl_collector_free(whole);
    sl_collector_free(first);
    sl_collector_free(second);
}

static void test_keyed_state_same_parallelism(void **state)
{
    (void)state;
    const sl_aggregate *aggs[] = {&sl_agg_count, &sl_agg_sum, &sl_agg_max, &sl_agg_avg};
    for (size_t a = 0; a < sizeof(aggs) / sizeof(aggs[0]); a++)
        for (int par = 1; par <= 3; par++) check_split_run(aggs[a], par, par);
}

static void test_keyed_state_redistribution(void **state)
{
    (void)state;
    static const int moves[][2] = {{2, 3}, {3, 2}, {4, 1}, {1, 4}, {3, 4}};
    const sl_aggregate *aggs[] = {&sl_agg_count, &sl_agg_avg};
    for (size_t a = 0; a < 2; a++)
        for (size_t m = 0; m < sizeof(moves) / sizeof(moves[0]); m++)
            check_split_run(aggs[a], moves[m][0], moves[m][1]);
}

static void test_corrupt_snapshot_refused(void **state)
{
    (void)state;
    saved snap;
    sl_collector *c = sl_collector_new();
    assert_int_equal(run_agg(&sl_agg_count, 0, NREC / 2, 2, NULL, &snap, c), 0);
    /* The buffer itself refuses a flipped byte ... */
    sl_buf *b = &snap.buf[0][0];
    assert_true(b->len > 40);
    b->ptr[b->len / 2] ^= 0x40;
    sl_state *st = sl_state_new(snap.vsize[0]);
    assert_int_equal(sl_state_restore(st, b->ptr, b->len, 0, SL_KEY_GROUPS - 1), SL_ECORRUPT);
    assert_int_equal(sl_state_count(st), 0);
    sl_state_free(st);
    /* ... and a pipeline restoring it does not run, naming the operator. */
    sl_collector *c2 = sl_collector_new();
    assert_int_not_equal(run_agg(&sl_agg_count, NREC / 2, NREC / 2, 2, &snap, NULL, c2), 0);
    assert_int_equal(sl_collector_count(c2), 0);
    saved_free(&snap);
    sl_collector_free(c);
    sl_collector_free(c2);
}

/* --- operator memory: the snapshot / restore hooks ------------------------------ */

typedef struct tally {
    int64_t n, sum, max_ts;
} tally;

typedef struct tally_conf {
    sl_buf out[MAX_PAR]; /* written by end() through the snapshot hook */
    sl_buf in[MAX_PAR];  /* read by open() through the restore hook */
} tally_conf;

static int tally_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    (void)ctx;
    return sl_buf_append(out, self, sizeof(tally));
}

static int tally_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    if (len != sizeof(tally)) return sl_ctx_fail(ctx, SL_ECORRUPT, "snapshot of %zu bytes", len);
    memcpy(self, data, sizeof(tally));
    return 0;
}

static const sl_operator tally_op;

static int tally_open(sl_ctx *ctx, void **self)
{
    tally_conf *c = sl_ctx_conf(ctx);
    tally *t = calloc(1, sizeof(*t));
    if (!t) return SL_ENOMEM;
    *self = t;
    const sl_buf *in = &c->in[sl_ctx_instance(ctx)];
    if (in->len) return tally_op.restore(ctx, t, in->ptr, in->len);
    return 0;
}

static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)ctx;
    tally *t = self;
    for (uint32_t i = 0; i < in->count; i++) {
        const ev *e = sl_batch_at(in, i);
        t->n++;
        t->sum += e->val;
        if (in->ts[i] > t->max_ts) t->max_ts = in->ts[i];
    }
    return 0;
}

static int tally_end(sl_ctx *ctx, void *self)
{
    tally_conf *c = sl_ctx_conf(ctx);
    return tally_op.snapshot(ctx, self, &c->out[sl_ctx_instance(ctx)]);
}

static void tally_close(void *self)
{
    free(self);
}

static const sl_operator tally_op = {.version = SL_OPERATOR_VERSION,
                                     .kind = "tally",
                                     .open = tally_open,
                                     .process = tally_process,
                                     .end = tally_end,
                                     .snapshot = tally_snapshot,
                                     .restore = tally_restore,
                                     .close = tally_close};

static void run_tally(uint64_t first, uint64_t count, int par, tally_conf *tc)
{
    sl_pipeline *p = sl_pipeline_new();
    assert_int_equal(sl_pipeline_set_threads(p, 2), 0);
    assert_int_equal(sl_pipeline_set_parallelism(p, par), 0);
    sl_generator_conf gc = {.fn = gen_ev, .ud = &first, .count = count};
    sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
    s = sl_stream_key_by(sl_stream_parallelism(s, 2), "by-key", key_str, NULL);
    assert_int_equal(sl_stream_sink(s, "tally", &tally_op, tc), 0);
    int rc = run_bounded(p);
    if (rc) fail_msg("tally run: %s", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
}

static void test_operator_memory_hooks(void **state)
{
    (void)state;
    for (int par = 1; par <= MAX_PAR; par++) {
        tally_conf *whole = calloc(1, sizeof(*whole)), *a = calloc(1, sizeof(*a)),
                   *b = calloc(1, sizeof(*b));
        run_tally(0, NREC, par, whole);
        run_tally(0, NREC / 3, par, a);
        for (int i = 0; i < par; i++) b->in[i] = a->out[i]; /* borrowed */
        run_tally(NREC / 3, NREC - NREC / 3, par, b);
        tally tw = {0, 0, 0}, tb = {0, 0, 0};
        for (int i = 0; i < par; i++) {
            tally x, y;
            assert_int_equal(whole->out[i].len, sizeof(tally));
            assert_int_equal(b->out[i].len, sizeof(tally));
            memcpy(&x, whole->out[i].ptr, sizeof(x));
            memcpy(&y, b->out[i].ptr, sizeof(y));
            /* Same keys go to the same instance: per-instance totals agree. */
            assert_int_equal(x.n, y.n);
            assert_int_equal(x.sum, y.sum);
            assert_int_equal(x.max_ts, y.max_ts);
            tw.n += x.n;
            tb.n += y.n;
        }
        assert_int_equal(tw.n, NREC);
        assert_int_equal(tb.n, NREC);
        for (int i = 0; i < MAX_PAR; i++) {
            sl_buf_free(&whole->out[i]);
            sl_buf_free(&a->out[i]);
            sl_buf_free(&b->out[i]);
        }
        free(whole);
        free(a);
        free(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyed_state_same_parallelism),
        cmocka_unit_test(test_keyed_state_redistribution),
        cmocka_unit_test(test_corrupt_snapshot_refused),
        cmocka_unit_test(test_operator_memory_hooks),
    };
    return cmocka_run_group_tests_name("runtime_snapshot", tests, NULL, NULL);
}
