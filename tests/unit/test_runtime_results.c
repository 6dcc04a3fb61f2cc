/*
 * test_runtime_results.c - the runtime gives exactly the results of a
 * single-threaded oracle, whatever the parallelism and the thread count.
 *
 * What it proves:
 *  - table-driven over (source parallelism, operator parallelism, threads)
 *    covering 1..4 each: key_by + aggregate (count, sum, min, max, avg) with
 *    SL_AGG_EMIT_FINAL (one result per key, equal to the oracle's) and with
 *    SL_AGG_EMIT_UPDATES (one update per record; the last update of each key
 *    equals the oracle's result; count updates per key run 1, 2, ..., n in
 *    order); filter; map into the same and into another width; flat_map into
 *    variable-length records; explicit rebalance and broadcast edges (every
 *    consumer instance gets every record exactly once); side outputs;
 *  - the lines source with parallelism 1..4 reads every line of a generated
 *    file exactly once (byte-range split), with and without a final newline,
 *    CRLF lines, empty lines, a line longer than the read chunk, and files
 *    with fewer lines than instances;
 *  - an operator error (user operator, map callback, generator callback, a
 *    source that cannot open) stops the job - also an unbounded one - with a
 *    message naming the operator, and run returns non-zero;
 *  - builder errors (duplicate name, unconnected output, aggregate on an
 *    unkeyed stream, bad parallelism, bad side port, empty pipeline) give a
 *    clear, sticky sl_pipeline_errmsg;
 *  - sl_pipeline_cancel from another thread ends an unbounded job cleanly:
 *    wait returns 0, every record the sources emitted reached the sinks (the
 *    last rolling count of each key), sl_pipeline_canceled says so, and no
 *    final aggregate is emitted (test_runtime_cancel.c tests what a cancel
 *    does not emit).
 *
 * No assertion on time: a hang is caught by sl_pipeline_wait's generous
 * timeout (a failure, never a performance check) and by ctest's TIMEOUT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <cmocka.h>

#include "sluice/sluice.h"

#define WAIT_MS 300000 /* generous: only a hang exceeds it */

/* Run to the end; a wait that times out is a hang, hence a failure. */
static int run_bounded(sl_pipeline *p)
{
    int rc = sl_pipeline_start(p);
    if (rc) return rc;
    rc = sl_pipeline_wait(p, WAIT_MS);
    if (rc == SL_EAGAIN) fail_msg("pipeline did not finish: hang (lost wake-up or deadlock?)");
    return rc;
}

static void run_ok(sl_pipeline *p)
{
    int rc = run_bounded(p);
    if (rc) fail_msg("run failed: %s (%s)", sl_pipeline_errmsg(p), sl_err_name(rc));
}

/* --- the input --------------------------------------------------------------- */

typedef struct ev {
    int64_t key;
    int64_t val;
} ev;

typedef struct ev3 {
    int64_t key;
    int64_t val;
    int64_t extra;
} ev3;

#define NKEYS 97
#define NREC  20000

static int64_t key_of(uint64_t seq)
{
    return (int64_t)((seq * 2654435761u) % NKEYS);
}
static int64_t val_of(uint64_t seq)
{
    return (int64_t)((seq * 7919u) % 1000) - 300;
}

static int gen_ev(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    ev *e = out;
    e->key = key_of(seq);
    e->val = val_of(seq);
    *ts = (int64_t)seq;
    return 0;
}

static sl_bytes key8(const void *rec, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    sl_bytes k = {rec, 8};
    return k;
}

static sl_bytes key_all(const void *rec, uint32_t len, void *ud)
{
    (void)ud;
    sl_bytes k = {rec, len};
    return k;
}

static int keep_not3(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)len;
    (void)ts;
    (void)ud;
    return ((const ev *)rec)->val % 3 != 0;
}

/* --- parallelism table ------------------------------------------------------- */

typedef struct shape {
    int src_par, op_par, threads;
} shape;

static const shape shapes[] = {
    {1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {4, 4, 4}, {1, 4, 2}, {4, 1, 3},
    {2, 3, 4}, {3, 2, 1}, {4, 3, 2}, {1, 2, 3}, {3, 4, 4}, {2, 1, 1},
};
#define N_SHAPES (sizeof(shapes) / sizeof(shapes[0]))

static sl_pipeline *new_pipeline(const shape *s, int credits)
{
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    assert_int_equal(sl_pipeline_set_threads(p, s->threads), 0);
    assert_int_equal(sl_pipeline_set_parallelism(p, s->op_par), 0);
    if (credits) assert_int_equal(sl_pipeline_set_credits(p, credits), 0);
    return p;
}

/* --- oracle for aggregates ---------------------------------------------------- */

typedef struct oracle {
    int64_t n, sum, min, max;
} oracle;

static void oracle_add(oracle *o, int64_t v)
{
    if (o->n == 0) {
        o->min = v;
        o->max = v;
    }
    o->n++;
    o->sum += v;
    if (v < o->min) o->min = v;
    if (v > o->max) o->max = v;
}

/* Expected result bytes of aggregate `agg` for oracle o. */
static void oracle_result(const sl_aggregate *agg, const oracle *o, uint8_t out[8])
{
    int64_t r = 0;
    if (agg == &sl_agg_count) r = o->n;
    if (agg == &sl_agg_sum) r = o->sum;
    if (agg == &sl_agg_min) r = o->n ? o->min : INT64_MAX;
    if (agg == &sl_agg_max) r = o->n ? o->max : INT64_MIN;
    if (agg == &sl_agg_avg) {
        double d = o->n ? (double)o->sum / (double)o->n : 0.0;
        memcpy(out, &d, 8);
        return;
    }
    memcpy(out, &r, 8);
}

/* Check a collector of [result(8) | key(8)] records against oracles[NKEYS].
 * final: one record per key; updates: one per input record, last per key
 * equals the oracle, count updates run 1..n. */
static void check_agg_output(const sl_aggregate *agg, sl_agg_emit emit, sl_collector *c,
                             const oracle *orc, const char *what)
{
    int64_t seen[NKEYS] = {0};
    uint8_t last[NKEYS][8];
    int64_t total = 0, keys = 0;
    for (int k = 0; k < NKEYS; k++) {
        total += orc[k].n;
        keys += orc[k].n > 0;
    }
    size_t n = sl_collector_count(c);
    if (emit == SL_AGG_EMIT_FINAL && (int64_t)n != keys)
        fail_msg("%s: %zu results, expected one per key (%lld)", what, n, (long long)keys);
    if (emit == SL_AGG_EMIT_UPDATES && (int64_t)n != total)
        fail_msg("%s: %zu updates, expected one per record (%lld)", what, n, (long long)total);
    for (size_t i = 0; i < n; i++) {
        sl_bytes r = sl_collector_get(c, i, NULL);
        assert_int_equal(r.len, SL_AGG_OUT_HDR + 16);
        sl_bytes kb = sl_agg_out_key(r);
        int64_t key;
        memcpy(&key, kb.ptr, 8);
        assert_true(key >= 0 && key < NKEYS);
        seen[key]++;
        if (emit == SL_AGG_EMIT_FINAL && seen[key] > 1)
            fail_msg("%s: key %lld emitted twice", what, (long long)key);
        if (agg == &sl_agg_count && emit == SL_AGG_EMIT_UPDATES) {
            int64_t v;
            memcpy(&v, sl_agg_out_result(r), 8);
            if (v != seen[key])
                fail_msg("%s: key %lld update #%lld says count %lld", what, (long long)key,
                         (long long)seen[key], (long long)v);
        }
        memcpy(last[key], sl_agg_out_result(r), 8);
    }
    for (int k = 0; k < NKEYS; k++) {
        if (orc[k].n == 0) {
            assert_int_equal(seen[k], 0);
            continue;
        }
        uint8_t want[8];
        oracle_result(agg, &orc[k], want);
        if (seen[k] == 0) fail_msg("%s: key %d missing", what, k);
        if (memcmp(want, last[k], 8) != 0) {
            int64_t w, g;
            memcpy(&w, want, 8);
            memcpy(&g, last[k], 8);
            fail_msg("%s: key %d: got %lld, oracle %lld (raw)", what, k, (long long)g,
                     (long long)w);
        }
    }
}

/* --- aggregates: key_by + aggregate, FINAL and UPDATES -------------------------- */

static void test_aggregates(void **state)
{
    (void)state;
    const sl_aggregate *aggs[] = {&sl_agg_count, &sl_agg_sum, &sl_agg_min, &sl_agg_max,
                                  &sl_agg_avg};
    oracle orc[NKEYS];
    memset(orc, 0, sizeof(orc));
    for (uint64_t s = 0; s < NREC; s++) {
        ev e;
        int64_t ts;
        gen_ev(&e, s, &ts, NULL);
        if (keep_not3(&e, sizeof(e), ts, NULL)) oracle_add(&orc[e.key], e.val);
    }
    sl_agg_value val = {.offset = 8};
    for (size_t a = 0; a < sizeof(aggs) / sizeof(aggs[0]); a++) {
        for (int emit = 0; emit <= 1; emit++) {
            for (size_t si = 0; si < N_SHAPES; si++) {
                const shape *sh = &shapes[si];
                char what[128];
                snprintf(what, sizeof(what), "%s/%s src_par=%d op_par=%d threads=%d", aggs[a]->name,
                         emit ? "final" : "updates", sh->src_par, sh->op_par, sh->threads);
                sl_pipeline *p = new_pipeline(sh, 0);
                sl_collector *c = sl_collector_new();
                sl_generator_conf gc = {.fn = gen_ev, .count = NREC};
                sl_agg_conf ac = {.agg = aggs[a], .ud = &val, .emit = (sl_agg_emit)emit};
                sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
                s = sl_stream_parallelism(s, sh->src_par);
                s = sl_stream_parallelism(sl_stream_filter(s, "not3", keep_not3, NULL),
                                          sh->src_par);
                s = sl_stream_parallelism(sl_stream_key_by(s, "by-key", key8, NULL), sh->src_par);
                s = sl_stream_aggregate(s, "agg", &ac);
                assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
                run_ok(p);
                check_agg_output(aggs[a], (sl_agg_emit)emit, c, orc, what);
                sl_pipeline_stats st;
                sl_pipeline_stats_get(p, &st);
                assert_int_equal(st.records_in, NREC);
                sl_collector_free(c);
                sl_pipeline_free(p);
            }
        }
    }
}

/* --- map into the same width, map into another width ----------------------------- */

static int map_same(const void *in, uint32_t len, void *out, int64_t *ts, void *ud)
{
    (void)len;
    (void)ts;
    (void)ud;
    const ev *i = in;
    ev *o = out;
    o->key = i->key;
    o->val = i->val * 2 + 1;
    return 0;
}

static int map_wide(const void *in, uint32_t len, void *out, int64_t *ts, void *ud)
{
    (void)len;
    (void)ud;
    const ev *i = in;
    ev3 *o = out;
    o->key = i->key;
    o->val = i->val;
    o->extra = (i->val * i->val) % 1000 + *ts % 7;
    *ts += 1;
    return 0;
}

static void test_maps(void **state)
{
    (void)state;
    oracle same[NKEYS], wide[NKEYS];
    memset(same, 0, sizeof(same));
    memset(wide, 0, sizeof(wide));
    for (uint64_t s = 0; s < NREC; s++) {
        ev e;
        int64_t ts;
        gen_ev(&e, s, &ts, NULL);
        oracle_add(&same[e.key], e.val * 2 + 1);
        oracle_add(&wide[e.key], (e.val * e.val) % 1000 + ts % 7);
    }
    for (int variant = 0; variant < 2; variant++) {
        for (size_t si = 0; si < N_SHAPES; si++) {
            const shape *sh = &shapes[si];
            char what[96];
            snprintf(what, sizeof(what), "map %s src_par=%d op_par=%d threads=%d",
                     variant ? "wide" : "same", sh->src_par, sh->op_par, sh->threads);
            sl_pipeline *p = new_pipeline(sh, 0);
            sl_collector *c = sl_collector_new();
            sl_generator_conf gc = {.fn = gen_ev, .count = NREC};
            sl_agg_value val = {.offset = variant ? 16 : 8};
            sl_agg_conf ac = {.agg = &sl_agg_sum, .ud = &val, .emit = SL_AGG_EMIT_FINAL};
            sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
            s = sl_stream_parallelism(s, sh->src_par);
            if (variant)
                s = sl_stream_map(s, "widen", map_wide, NULL, sizeof(ev3));
            else
                s = sl_stream_parallelism(sl_stream_map(s, "double", map_same, NULL, sizeof(ev)),
                                          sh->src_par);
            s = sl_stream_key_by(s, "by-key", key8, NULL);
            s = sl_stream_aggregate(s, "sum", &ac);
            assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
            run_ok(p);
            check_agg_output(&sl_agg_sum, SL_AGG_EMIT_FINAL, c, variant ? wide : same, what);
            sl_collector_free(c);
            sl_pipeline_free(p);
        }
    }
}

/* --- flat_map into variable-length records ------------------------------------------ */

/* Record seq emits |val| % 4 strings "key/j" plus j+1 dots (lengths vary). */
static int fm_words(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)len;
    (void)ud;
    const ev *e = rec;
    int n = (int)((e->val < 0 ? -e->val : e->val) % 4);
    for (int j = 0; j < n; j++) {
        char w[64];
        int l = snprintf(w, sizeof(w), "%lld/%d", (long long)e->key, j);
        for (int d = 0; d <= j; d++) w[l++] = '.';
        int rc = sl_emit_copy(ctx, ts, 0, w, (uint32_t)l);
        if (rc) return rc;
    }
    return 0;
}

static void test_flat_map(void **state)
{
    (void)state;
    /* Oracle: count per (key, j); the word determines both. */
    int64_t want[NKEYS][4];
    memset(want, 0, sizeof(want));
    int64_t words = 0;
    for (uint64_t s = 0; s < NREC; s++) {
        ev e;
        int64_t ts;
        gen_ev(&e, s, &ts, NULL);
        int n = (int)((e.val < 0 ? -e.val : e.val) % 4);
        for (int j = 0; j < n; j++) want[e.key][j]++;
        words += n;
    }
    for (int emit = 0; emit <= 1; emit++) {
        for (size_t si = 0; si < N_SHAPES; si++) {
            const shape *sh = &shapes[si];
            sl_pipeline *p = new_pipeline(sh, 0);
            sl_collector *c = sl_collector_new();
            sl_generator_conf gc = {.fn = gen_ev, .count = NREC};
            sl_agg_conf ac = {.agg = &sl_agg_count, .emit = (sl_agg_emit)emit};
            sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
            s = sl_stream_parallelism(s, sh->src_par);
            s = sl_stream_parallelism(sl_stream_flat_map(s, "words", fm_words, NULL, 0),
                                      sh->src_par);
            s = sl_stream_key_by(s, "by-word", key_all, NULL);
            s = sl_stream_aggregate(s, "count", &ac);
            assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
            run_ok(p);
            int64_t got[NKEYS][4], seen[NKEYS][4];
            memset(got, 0, sizeof(got));
            memset(seen, 0, sizeof(seen));
            size_t n = sl_collector_count(c);
            if (emit == SL_AGG_EMIT_UPDATES) assert_int_equal(n, words);
            for (size_t i = 0; i < n; i++) {
                sl_bytes r = sl_collector_get(c, i, NULL);
                sl_bytes k = sl_agg_out_key(r);
                char w[64];
                assert_true(k.len > 0 && k.len < sizeof(w));
                memcpy(w, k.ptr, k.len);
                w[k.len] = 0;
                long long key;
                int j, dots = 0;
                assert_int_equal(sscanf(w, "%lld/%d", &key, &j), 2);
                for (uint32_t b = 0; b < k.len; b++) dots += w[b] == '.';
                assert_int_equal(dots, j + 1);
                assert_true(key >= 0 && key < NKEYS && j >= 0 && j < 4);
                memcpy(&got[key][j], sl_agg_out_result(r), 8);
                seen[key][j]++;
                if (emit == SL_AGG_EMIT_UPDATES) assert_int_equal(got[key][j], seen[key][j]);
            }
            for (int k = 0; k < NKEYS; k++)
                for (int j = 0; j < 4; j++) {
                    if (emit == SL_AGG_EMIT_FINAL) assert_int_equal(seen[k][j], want[k][j] ? 1 : 0);
                    if (got[k][j] != want[k][j])
                        fail_msg("flat_map %s shape %zu: word %d/%d: %lld, oracle %lld",
                                 emit ? "final" : "updates", si, k, j, (long long)got[k][j],
                                 (long long)want[k][j]);
                }
            sl_collector_free(c);
            sl_pipeline_free(p);
        }
    }
}

/* --- rebalance and broadcast edges ---------------------------------------------------- */

typedef struct tagged {
    int64_t seq;
    int64_t inst;
} tagged;

static int fm_tag(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)rec;
    (void)len;
    (void)ud;
    tagged t = {ts, sl_ctx_instance(ctx)};
    return sl_emit_copy(ctx, ts, 0, &t, sizeof(t));
}

static void check_tagged(sl_collector *c, int copies, int n_inst, const char *what)
{
    /* copies == n_inst: broadcast, (seq, inst) exactly once each.
     * copies == 1: rebalance, each seq exactly once on any instance. */
    uint8_t *seen = calloc((size_t)NREC * (size_t)n_inst, 1);
    assert_non_null(seen);
    size_t n = sl_collector_count(c);
    if (n != (size_t)NREC * (size_t)copies)
        fail_msg("%s: %zu records, expected %d", what, n, NREC * copies);
    for (size_t i = 0; i < n; i++) {
        int64_t ts;
        sl_bytes r = sl_collector_get(c, i, &ts);
        tagged t;
        assert_int_equal(r.len, sizeof(t));
        memcpy(&t, r.ptr, sizeof(t));
        assert_int_equal(t.seq, ts);
        assert_true(t.seq >= 0 && t.seq < NREC && t.inst >= 0 && t.inst < n_inst);
        size_t slot = copies == 1 ? (size_t)t.seq : (size_t)t.seq * (size_t)n_inst + (size_t)t.inst;
        if (seen[slot]++)
            fail_msg("%s: record %lld/%lld twice", what, (long long)t.seq, (long long)t.inst);
    }
    free(seen);
}

static void test_rebalance_broadcast(void **state)
{
    (void)state;
    for (int bcast = 0; bcast <= 1; bcast++) {
        for (size_t si = 0; si < N_SHAPES; si++) {
            const shape *sh = &shapes[si];
            char what[96];
            snprintf(what, sizeof(what), "%s src_par=%d op_par=%d threads=%d",
                     bcast ? "broadcast" : "rebalance", sh->src_par, sh->op_par, sh->threads);
            sl_pipeline *p = new_pipeline(sh, 0);
            sl_collector *c = sl_collector_new();
            sl_generator_conf gc = {.fn = gen_ev, .count = NREC};
            sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
            s = sl_stream_parallelism(s, sh->src_par);
            s = bcast ? sl_stream_broadcast(s) : sl_stream_rebalance(s);
            s = sl_stream_flat_map(s, "tag", fm_tag, NULL, sizeof(tagged));
            assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
            run_ok(p);
            check_tagged(c, bcast ? sh->op_par : 1, sh->op_par, what);
            sl_collector_free(c);
            sl_pipeline_free(p);
        }
    }
}

/* --- side outputs --------------------------------------------------------------------- */

/* Even values go to port 0 (the whole record), odd ones to port 1 (the value
 * alone, 8 bytes), and values divisible by 5 also to port 2 (variable). */
static int split_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    for (uint32_t i = 0; i < in->count; i++) {
        const ev *e = sl_batch_at(in, i);
        void *o;
        if (e->val % 2 == 0) {
            if (!(o = sl_emit_port(ctx, 0, in->ts[i], 0, sizeof(ev)))) return sl_ctx_error(ctx);
            memcpy(o, e, sizeof(ev));
        } else {
            if (!(o = sl_emit_port(ctx, 1, in->ts[i], 0, 8))) return sl_ctx_error(ctx);
            memcpy(o, &e->val, 8);
        }
        if (e->val % 5 == 0) {
            char w[32];
            int l = snprintf(w, sizeof(w), "v%lld", (long long)e->val);
            if (!(o = sl_emit_port(ctx, 2, in->ts[i], 0, (uint32_t)l))) return sl_ctx_error(ctx);
            memcpy(o, w, (size_t)l);
        }
    }
    return 0;
}

static const sl_operator split_op = {
    .version = SL_OPERATOR_VERSION, .kind = "split", .process = split_process};

static void test_side_outputs(void **state)
{
    (void)state;
    for (size_t si = 0; si < N_SHAPES; si++) {
        const shape *sh = &shapes[si];
        sl_pipeline *p = new_pipeline(sh, 0);
        sl_collector *even = sl_collector_new(), *odd = sl_collector_new(),
                     *five = sl_collector_new();
        sl_generator_conf gc = {.fn = gen_ev, .count = NREC};
        sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
        s = sl_stream_parallelism(s, sh->src_par);
        sl_stream *main_out = sl_stream_apply(s, "split", &split_op, NULL, sizeof(ev));
        sl_stream *odd_out = sl_stream_side(main_out, 1, 8);
        sl_stream *five_out = sl_stream_side(main_out, 2, 0);
        assert_int_equal(sl_stream_sink(main_out, "even", &sl_sink_collect, even), 0);
        assert_int_equal(sl_stream_sink(odd_out, "odd", &sl_sink_collect, odd), 0);
        assert_int_equal(sl_stream_sink(five_out, "five", &sl_sink_collect, five), 0);
        run_ok(p);
        uint8_t *seen = calloc(NREC, 1);
        size_t n_even = 0, n_odd = 0, n_five = 0;
        for (uint64_t q = 0; q < NREC; q++) {
            int64_t v = val_of(q);
            if (v % 2 == 0)
                n_even++;
            else
                n_odd++;
            if (v % 5 == 0) n_five++;
        }
        assert_int_equal(sl_collector_count(even), n_even);
        assert_int_equal(sl_collector_count(odd), n_odd);
        assert_int_equal(sl_collector_count(five), n_five);
        for (size_t i = 0; i < sl_collector_count(even); i++) {
            int64_t ts;
            sl_bytes r = sl_collector_get(even, i, &ts);
            ev e;
            assert_int_equal(r.len, sizeof(ev));
            memcpy(&e, r.ptr, sizeof(e));
            assert_true(ts >= 0 && ts < NREC);
            assert_int_equal(e.val, val_of((uint64_t)ts));
            assert_int_equal(e.key, key_of((uint64_t)ts));
            assert_int_equal(seen[ts]++, 0);
        }
        for (size_t i = 0; i < sl_collector_count(odd); i++) {
            int64_t ts, v;
            sl_bytes r = sl_collector_get(odd, i, &ts);
            assert_int_equal(r.len, 8);
            memcpy(&v, r.ptr, 8);
            assert_true(ts >= 0 && ts < NREC);
            assert_int_equal(v, val_of((uint64_t)ts));
            assert_int_equal(seen[ts]++, 0);
        }
        for (size_t i = 0; i < sl_collector_count(five); i++) {
            int64_t ts;
            sl_bytes r = sl_collector_get(five, i, &ts);
            char want[32];
            int l = snprintf(want, sizeof(want), "v%lld", (long long)val_of((uint64_t)ts));
            assert_int_equal(r.len, l);
            assert_memory_equal(r.ptr, want, (size_t)l);
            assert_int_equal(seen[ts] & 2, 0);
            seen[ts] |= 2;
        }
        free(seen);
        sl_collector_free(even);
        sl_collector_free(odd);
        sl_collector_free(five);
        sl_pipeline_free(p);
    }
}

/* --- the lines source ----------------------------------------------------------------- */

typedef struct line {
    const uint8_t *ptr;
    size_t len;
} line;

static int line_cmp(const void *a, const void *b)
{
    const line *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->ptr, y->ptr, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Write a file of n_lines generated lines (kind selects the shape); fill
 * want[] with the records the source must produce. Returns the buffer
 * holding the expected line bytes (free it). */
static uint8_t *make_lines_file(const char *path, int n_lines, int final_nl, int big, line **want,
                                size_t *n_want)
{
    size_t cap = (size_t)n_lines * 400 + (big ? 800000 : 0) + 16, len = 0;
    uint8_t *file = malloc(cap), *exp = malloc(cap);
    line *w = calloc((size_t)n_lines + 1, sizeof(line));
    assert_true(file && exp && w);
    size_t elen = 0;
    for (int i = 0; i < n_lines; i++) {
        size_t start = len;
        if (i % 41 == 7) {
            /* empty line */
        } else if (big && i == n_lines / 2) {
            for (int k = 0; k < 700000; k++) file[len++] = (uint8_t)('a' + k % 26);
        } else {
            len += (size_t)sprintf((char *)file + len, "line %d ", i);
            int pad = (i * 37) % 300;
            for (int k = 0; k < pad; k++) file[len++] = (uint8_t)('A' + (i + k) % 26);
        }
        size_t rec_len = len - start;
        memcpy(exp + elen, file + start, rec_len);
        w[i].ptr = exp + elen; /* fixed up below: exp does not move */
        w[i].len = rec_len;
        elen += rec_len;
        if (i % 13 == 5) file[len++] = '\r'; /* CRLF: the '\r' is not part of the record */
        if (i < n_lines - 1 || final_nl) file[len++] = '\n';
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(file, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(file);
    /* A file whose last line is empty and has no newline has one record less. */
    *n_want = (size_t)n_lines;
    if (!final_nl && n_lines > 0 && w[n_lines - 1].len == 0) *n_want = (size_t)n_lines - 1;
    *want = w;
    return exp;
}

static void test_lines_source(void **state)
{
    (void)state;
    static const struct {
        int n_lines, final_nl, big;
    } files[] = {{5000, 1, 0}, {5000, 0, 0}, {300, 1, 1}, {3, 1, 0},
                 {1, 0, 0},    {2, 1, 0},    {0, 1, 0}};
    char path[] = "/tmp/sluice-test-lines-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    for (size_t fi = 0; fi < sizeof(files) / sizeof(files[0]); fi++) {
        line *want;
        size_t n_want;
        uint8_t *exp = make_lines_file(path, files[fi].n_lines, files[fi].final_nl, files[fi].big,
                                       &want, &n_want);
        qsort(want, n_want, sizeof(line), line_cmp);
        for (int par = 1; par <= 4; par++) {
            shape sh = {par, par == 1 ? 1 : par - 1, (par % 4) + 1};
            sl_pipeline *p = new_pipeline(&sh, 0);
            sl_collector *c = sl_collector_new();
            sl_lines_conf lc = {.path = path};
            sl_stream *s = sl_stream_parallelism(sl_pipeline_lines(p, "lines", &lc, 0, NULL), par);
            assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
            run_ok(p);
            size_t n = sl_collector_count(c);
            if (n != n_want)
                fail_msg("file %zu (%d lines), parallelism %d: %zu records, expected %zu", fi,
                         files[fi].n_lines, par, n, n_want);
            line *got = calloc(n + 1, sizeof(line));
            for (size_t i = 0; i < n; i++) {
                sl_bytes b = sl_collector_get(c, i, NULL);
                got[i].ptr = b.ptr;
                got[i].len = b.len;
            }
            qsort(got, n, sizeof(line), line_cmp);
            for (size_t i = 0; i < n; i++)
                if (line_cmp(&got[i], &want[i]) != 0)
                    fail_msg("file %zu, parallelism %d: record %zu differs (%zu vs %zu bytes)", fi,
                             par, i, got[i].len, want[i].len);
            free(got);
            sl_collector_free(c);
            sl_pipeline_free(p);
        }
        free(want);
        free(exp);
    }
    unlink(path);
}

/* --- errors while running -------------------------------------------------------------- */

static int explode_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    for (uint32_t i = 0; i < in->count; i++)
        if (in->ts[i] == 5000)
            return sl_ctx_fail(ctx, SL_EPARSE, "record %lld is bad", (long long)in->ts[i]);
    return 0;
}

static const sl_operator explode_op = {
    .version = SL_OPERATOR_VERSION, .kind = "exploder", .process = explode_process};

static int map_fail(const void *in, uint32_t len, void *out, int64_t *ts, void *ud)
{
    (void)len;
    (void)ud;
    memcpy(out, in, sizeof(ev));
    return *ts == 7777 ? SL_EPARSE : 0;
}

static int gen_fail(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    gen_ev(out, seq, ts, ud);
    return seq == 3333 ? SL_EIO : 0;
}

static void expect_run_error(sl_pipeline *p, const char *const *needles)
{
    int rc = run_bounded(p);
    if (rc == 0) fail_msg("the run succeeded; expected an error");
    const char *msg = sl_pipeline_errmsg(p);
    for (int i = 0; needles[i]; i++)
        if (!strstr(msg, needles[i]))
            fail_msg("error message \"%s\" does not mention \"%s\"", msg, needles[i]);
}

static void test_operator_errors(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        for (int unbounded = 0; unbounded <= 1; unbounded++) {
            shape sh = {2, 2, 2};
            sl_pipeline *p = new_pipeline(&sh, 0);
            sl_generator_conf gc = {.fn = variant == 2 ? gen_fail : gen_ev,
                                    .count = unbounded ? 0 : NREC};
            sl_lines_conf lc = {.path = "/nonexistent/sluice-test-no-such-file"};
            sl_stream *s = variant == 3 ? sl_pipeline_lines(p, "reader", &lc, 0, NULL)
                                        : sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
            if (variant == 3) s = sl_stream_map(s, "len", map_same, NULL, sizeof(ev));
            s = sl_stream_rebalance(s);
            if (variant == 0) s = sl_stream_apply(s, "explode", &explode_op, NULL, sizeof(ev));
            if (variant == 1) s = sl_stream_map(s, "bad-map", map_fail, NULL, sizeof(ev));
            s = sl_stream_key_by(s, "by-key", key8, NULL);
            sl_agg_conf ac = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_UPDATES};
            s = sl_stream_aggregate(s, "count", &ac);
            sl_collector *c = sl_collector_new();
            assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
            static const char *const n0[] = {"'explode'", "exploder", "record 5000 is bad", NULL};
            static const char *const n1[] = {"'bad-map'", "map", NULL};
            static const char *const n2[] = {"'src'", "generator", NULL};
            static const char *const n3[] = {"'reader'", "cannot open", NULL};
            static const char *const *needles[] = {n0, n1, n2, n3};
            if (variant == 3 && unbounded) { /* same as bounded for an open failure */
                sl_collector_free(c);
                sl_pipeline_free(p);
                continue;
            }
            expect_run_error(p, needles[variant]);
            sl_collector_free(c);
            sl_pipeline_free(p);
        }
    }
}

/* --- builder errors --------------------------------------------------------------------- */

static void expect_build_error(sl_pipeline *p, int code, const char *a, const char *b)
{
    int rc = run_bounded(p);
    if (code && rc != code)
        fail_msg("run returned %s, expected %s (%s)", sl_err_name(rc), sl_err_name(code),
                 sl_pipeline_errmsg(p));
    assert_true(rc != 0);
    const char *msg = sl_pipeline_errmsg(p);
    if ((a && !strstr(msg, a)) || (b && !strstr(msg, b)))
        fail_msg("builder error message \"%s\" should mention \"%s\" and \"%s\"", msg, a ? a : "",
                 b ? b : "");
}

static void test_builder_errors(void **state)
{
    (void)state;
    sl_generator_conf gc = {.fn = gen_ev, .count = 10};
    sl_agg_conf ac = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_FINAL};
    sl_collector *c = sl_collector_new();

    /* Duplicate node name; the error is sticky: later calls return NULL and
     * run reports the first error, not a later one. */
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_generator(p, "x", &gc, sizeof(ev), NULL);
    assert_non_null(s);
    assert_null(sl_stream_filter(s, "x", keep_not3, NULL));
    assert_null(sl_stream_map(NULL, "y", map_same, NULL, sizeof(ev)));
    assert_null(sl_stream_parallelism(sl_stream_filter(s, "z", keep_not3, NULL), 0));
    assert_int_not_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
    expect_build_error(p, SL_EEXIST, "'x'", "already used");
    sl_pipeline_free(p);

    /* Unconnected output. */
    p = sl_pipeline_new();
    s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
    assert_non_null(sl_stream_map(s, "dangling", map_same, NULL, sizeof(ev)));
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
    expect_build_error(p, SL_EINVAL, "'dangling'", "goes nowhere");
    sl_pipeline_free(p);

    /* Aggregate on an unkeyed stream. */
    p = sl_pipeline_new();
    s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
    assert_null(sl_stream_aggregate(s, "agg", &ac));
    expect_build_error(p, SL_EINVAL, "'agg'", "not keyed");
    sl_pipeline_free(p);

    /* A map keeps no key: aggregate after key_by then map is unkeyed. */
    p = sl_pipeline_new();
    s = sl_stream_key_by(sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL), "k", key8, NULL);
    s = sl_stream_map(s, "m", map_wide, NULL, sizeof(ev3));
    assert_null(sl_stream_aggregate(s, "agg2", &ac));
    expect_build_error(p, SL_EINVAL, "'agg2'", "not keyed");
    sl_pipeline_free(p);

    /* Bad parallelism on a node, both too small and too large. */
    for (int bad = 0; bad < 2; bad++) {
        p = sl_pipeline_new();
        s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
        assert_null(sl_stream_parallelism(s, bad ? SL_KEY_GROUPS + 1 : 0));
        expect_build_error(p, SL_ERANGE, "'src'", "parallelism");
        sl_pipeline_free(p);
    }

    /* Bad pipeline settings: refused, the pipeline keeps its old value. */
    p = sl_pipeline_new();
    assert_int_equal(sl_pipeline_set_parallelism(p, 0), SL_ERANGE);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "parallelism"));
    sl_pipeline_free(p);
    p = sl_pipeline_new();
    assert_int_equal(sl_pipeline_set_threads(p, 0), SL_ERANGE);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "threads"));
    sl_pipeline_free(p);
    p = sl_pipeline_new();
    assert_int_equal(sl_pipeline_set_credits(p, 0), SL_ERANGE);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "credits"));
    sl_pipeline_free(p);

    /* Bad side output port. */
    p = sl_pipeline_new();
    s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
    assert_null(sl_stream_side(s, 9, 8));
    expect_build_error(p, SL_ERANGE, "'src'", "port");
    sl_pipeline_free(p);

    /* Nothing to run. */
    p = sl_pipeline_new();
    expect_build_error(p, SL_EINVAL, "no nodes", NULL);
    sl_pipeline_free(p);

    /* Empty name. */
    p = sl_pipeline_new();
    assert_null(sl_pipeline_generator(p, "", &gc, sizeof(ev), NULL));
    expect_build_error(p, SL_EINVAL, "name", NULL);
    sl_pipeline_free(p);

    sl_collector_free(c);
}

/* --- cancel ----------------------------------------------------------------------------- */

static void *cancel_thread(void *arg)
{
    sl_pipeline_cancel(arg);
    return NULL;
}

static void test_cancel(void **state)
{
    (void)state;
    for (size_t si = 0; si < N_SHAPES; si += 2) {
        const shape *sh = &shapes[si];
        sl_pipeline *p = new_pipeline(sh, 2);
        sl_collector *c = sl_collector_new();
        sl_generator_conf gc = {.fn = gen_ev, .count = 0}; /* unbounded */
        /* rolling counts: a cancel emits no final results (they would be
         * partial), but every update of what was in flight arrives */
        sl_agg_conf ac = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_UPDATES};
        sl_stream *s = sl_pipeline_generator(p, "src", &gc, sizeof(ev), NULL);
        s = sl_stream_parallelism(s, sh->src_par);
        s = sl_stream_key_by(s, "by-key", key8, NULL);
        s = sl_stream_aggregate(s, "count", &ac);
        assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
        assert_int_equal(sl_pipeline_start(p), 0);
        /* Let records flow (a condition, not a time). */
        sl_pipeline_stats st;
        for (int i = 0;; i++) {
            sl_pipeline_stats_get(p, &st);
            if (st.records_in >= 50000) break;
            if (i > 600000) fail_msg("no records after a long wait");
            usleep(500);
        }
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, cancel_thread, p), 0);
        pthread_join(th, NULL);
        int rc = sl_pipeline_wait(p, WAIT_MS);
        if (rc == SL_EAGAIN) fail_msg("canceled pipeline did not end");
        if (rc) fail_msg("canceled run returned %s: %s", sl_err_name(rc), sl_pipeline_errmsg(p));
        /* What was in flight drained to the sink: the last counts of the
         * keys add up to every record the sources emitted. */
        sl_pipeline_stats_get(p, &st);
        assert_int_equal(sl_pipeline_canceled(p), 1);
        int64_t last[NKEYS] = {0}, total = 0;
        for (size_t i = 0; i < sl_collector_count(c); i++) {
            sl_agg_result r = sl_agg_out(sl_collector_get(c, i, NULL));
            int64_t v, k;
            memcpy(&v, r.result, 8);
            memcpy(&k, r.key.ptr, 8);
            assert_true(k >= 0 && k < NKEYS);
            if (v > last[k]) last[k] = v;
        }
        for (int k = 0; k < NKEYS; k++) total += last[k];
        if ((uint64_t)total != st.records_in)
            fail_msg("cancel: sinks counted %lld records, sources emitted %llu", (long long)total,
                     (unsigned long long)st.records_in);
        sl_collector_free(c);
        sl_pipeline_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregates),      cmocka_unit_test(test_maps),
        cmocka_unit_test(test_flat_map),        cmocka_unit_test(test_rebalance_broadcast),
        cmocka_unit_test(test_side_outputs),    cmocka_unit_test(test_lines_source),
        cmocka_unit_test(test_operator_errors), cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests_name("runtime_results", tests, NULL, NULL);
}
