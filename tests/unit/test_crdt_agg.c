/*
 * tests/unit/test_crdt_agg.c - sl_agg_distinct (operators/crdt/agg.c), the
 * HyperLogLog distinct count as an aggregate:
 *
 *  - the table: found by name, its accumulator exactly a p = 14 sketch;
 *  - called directly: duplicates do not count; merging the accumulators of
 *    two overlapping value sets gives, byte for byte, the accumulator of
 *    their union (so slices, sessions and partials merge exactly); the
 *    result at 10^5 distinct values is within 3 standard errors; small
 *    counts (1..100) are exact, up to 1000 within 3 standard errors;
 *  - position independence: an accumulator copied with memcpy to another
 *    address (as the engine moves and snapshots it) keeps working and stays
 *    equal to the original under the same adds;
 *  - through the engine: the keyed aggregate (final) and tumbling, sliding
 *    and session windows give the exact distinct count of a small input
 *    with duplicates, keyed per key.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sluice/sluice.h"

static int64_t result_of(const void *acc)
{
    int64_t r;
    sl_agg_distinct.result(acc, &r, NULL);
    return r;
}

static void add_value(void *acc, int64_t v)
{
    sl_agg_distinct.add(acc, &v, 8, 0, NULL);
}

static void test_table(void **state)
{
    (void)state;
    assert_ptr_equal(sl_agg_by_name("distinct"), &sl_agg_distinct);
    assert_null(sl_agg_by_name("distinct-exact")); /* a job path, not an aggregate */
    /* the sketch, then its histogram (operators/crdt/agg.c draws it) */
    assert_int_equal(sl_agg_distinct.acc_size, sl_crdt_hll_footprint(SL_AGG_DISTINCT_P) + 136);
    assert_int_equal(sl_agg_distinct.result_size, 8);
    assert_int_equal(sl_agg_flags(&sl_agg_distinct), SL_AGG_UD_VALUE);
    assert_non_null(sl_agg_distinct.merge);
}

static void test_merge_is_union_and_error(void **state)
{
    (void)state;
    const size_t sz = sl_agg_distinct.acc_size;
    void *a = malloc(sz), *b = malloc(sz), *u = malloc(sz);
    sl_agg_distinct.init(a, NULL);
    sl_agg_distinct.init(b, NULL);
    sl_agg_distinct.init(u, NULL);
    /* a: 0 .. 60000, b: 40000 .. 100000 (20000 in both), u: all, twice */
    for (int64_t v = 0; v < 60000; v++) add_value(a, v * 7919);
    for (int64_t v = 40000; v < 100000; v++) add_value(b, v * 7919);
    for (int rep = 0; rep < 2; rep++)
        for (int64_t v = 0; v < 100000; v++) add_value(u, v * 7919);
    /* the sketches are equal (the histogram after them is marked stale by
     * a merge, so only the sketch bytes are compared), and so are results */
    const size_t sk = sl_crdt_hll_footprint(SL_AGG_DISTINCT_P);
    sl_agg_distinct.merge(a, b, NULL);
    assert_memory_equal(a, u, sk);
    assert_int_equal(result_of(a), result_of(u));
    /* merge is idempotent */
    sl_agg_distinct.merge(a, b, NULL);
    assert_memory_equal(a, u, sk);
    assert_int_equal(result_of(a), result_of(u));
    double se = sl_crdt_hll_std_error(SL_AGG_DISTINCT_P);
    int64_t r = result_of(u);
    assert_true(fabs((double)r - 1e5) <= 3 * se * 1e5);
    free(a);
    free(b);
    free(u);
}

/* result() from the histogram the accumulator keeps equals
 * sl_crdt_hll_estimate of its sketch (which counts the registers), bit for
 * bit: after adds, after a merge (stale histogram), after adds that follow
 * a merge, and on a byte copy. */
static void test_kept_histogram(void **state)
{
    (void)state;
    const size_t sz = sl_agg_distinct.acc_size;
    uint8_t *a = malloc(sz), *b = malloc(sz), *c = malloc(sz);
    sl_agg_distinct.init(a, NULL);
    sl_agg_distinct.init(b, NULL);
    uint64_t x = 88172645463325252ull;
    for (int step = 0; step < 4000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        add_value((step & 1) ? a : b, (int64_t)(x % 50000));
        if (step % 97 == 0 || step < 40) {
            double e = sl_crdt_hll_estimate((const sl_crdt_hll *)a);
            assert_int_equal(result_of(a), (int64_t)llround(e));
        }
        if (step == 2000) sl_agg_distinct.merge(a, b, NULL); /* a's histogram goes stale */
    }
    memcpy(c, a, sz);
    sl_agg_distinct.merge(c, b, NULL);
    for (int v = 0; v < 300; v++) add_value(c, v);
    assert_int_equal(result_of(c), (int64_t)llround(sl_crdt_hll_estimate((const sl_crdt_hll *)c)));
    /* a fresh accumulator fed exactly: histogram kept all the way */
    sl_agg_distinct.init(c, NULL);
    for (int64_t v = 0; v < 200000; v += 3) add_value(c, v);
    assert_int_equal(result_of(c), (int64_t)llround(sl_crdt_hll_estimate((const sl_crdt_hll *)c)));
    free(a);
    free(b);
    free(c);
}

static void test_small_counts_exact(void **state)
{
    (void)state;
    void *a = malloc(sl_agg_distinct.acc_size);
    sl_agg_distinct.init(a, NULL);
    assert_int_equal(result_of(a), 0);
    for (int64_t n = 1; n <= 1000; n++) {
        add_value(a, n * 1000003 - 500);
        add_value(a, n * 1000003 - 500); /* a duplicate */
        int64_t r = result_of(a);
        if (n <= 100)
            assert_int_equal(r, n);
        else /* beyond, the estimate's bias rounds off by a little */
            assert_true(fabs((double)(r - n)) <= 3 * sl_crdt_hll_std_error(SL_AGG_DISTINCT_P) * n);
    }
    free(a);
}

static void test_value_offset(void **state)
{
    (void)state;
    /* The value read as sl_agg_value says: at offset 8 of a 16-byte record. */
    sl_agg_value val = {.offset = 8};
    void *a = malloc(sl_agg_distinct.acc_size);
    sl_agg_distinct.init(a, &val);
    for (int64_t i = 0; i < 100; i++) {
        int64_t rec[2] = {i, i % 10};
        sl_agg_distinct.add(a, rec, sizeof(rec), 0, &val);
    }
    assert_int_equal(result_of(a), 10);
    free(a);
}

static void test_position_independent(void **state)
{
    (void)state;
    const size_t sz = sl_agg_distinct.acc_size;
    uint8_t *a = malloc(sz), *big = malloc(sz + 64);
    sl_agg_distinct.init(a, NULL);
    for (int64_t v = 0; v < 5000; v++) add_value(a, v);
    uint8_t *b = big + 8; /* another address, 8-aligned as accumulators are */
    memcpy(b, a, sz);
    for (int64_t v = 5000; v < 9000; v++) {
        add_value(a, v);
        add_value(b, v);
    }
    assert_memory_equal(a, b, sz);
    assert_int_equal(result_of(a), result_of(b));
    free(a);
    free(big);
}

/* --- through the engine ---------------------------------------------------- */

typedef struct rec {
    int64_t key;
    int64_t value;
} rec;

/* 3 keys; key k gets values i % (10 * (k + 1)) at event time i (0 .. 599):
 * so in [0, 600) key 0 has 10 distinct values, key 1 20, key 2 30. */
#define NREC 600
static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    rec *r = out;
    r->key = (int64_t)(seq % 3);
    r->value = (int64_t)(seq % (10 * (uint64_t)(r->key + 1)));
    *ts = (int64_t)seq;
    return 0;
}

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    return (sl_bytes){p, 8};
}

/* The expected distinct count of key k's values at event times [lo, hi). */
static int64_t truth(int64_t k, int64_t lo, int64_t hi)
{
    char seen[64] = {0};
    int64_t n = 0;
    for (int64_t t = lo < 0 ? 0 : lo; t < hi && t < NREC; t++) {
        if (t % 3 != k) continue;
        int64_t v = t % (10 * (k + 1));
        if (!seen[v]) n++;
        seen[v] = 1;
    }
    return n;
}

static void run_kind(int kind)
{
    sl_generator_conf gc = {.fn = gen, .count = NREC};
    sl_watermark_conf wm = {.delay = 0};
    sl_agg_value val = {.offset = 8};
    sl_collector *res = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_stream *k =
        sl_stream_key_by(sl_pipeline_generator(p, "g", &gc, sizeof(rec), &wm), "key", key_of, NULL);
    sl_stream *out;
    if (kind == 0) {
        sl_agg_conf ac = {.agg = &sl_agg_distinct, .ud = &val, .emit = SL_AGG_EMIT_FINAL};
        out = sl_stream_aggregate(k, "agg", &ac);
    } else {
        sl_window_conf wc = kind == 1   ? sl_window_tumbling(100, 0)
                            : kind == 2 ? sl_window_sliding(200, 50)
                                        : sl_window_session(5);
        wc.agg = &sl_agg_distinct;
        wc.agg_ud = &val;
        out = sl_stream_window(k, "win", &wc);
    }
    sl_stream_sink(out, "out", &sl_sink_collect, res);
    assert_int_equal(sl_pipeline_run(p), 0);
    size_t n = sl_collector_count(res);
    assert_true(n >= 3);
    for (size_t i = 0; i < n; i++) {
        int64_t ts, key, got, want;
        sl_bytes b = sl_collector_get(res, i, &ts);
        if (kind == 0) {
            sl_agg_result r = sl_agg_out(b);
            assert_int_equal(r.result_size, 8);
            memcpy(&got, r.result, 8);
            memcpy(&key, r.key.ptr, 8);
            want = truth(key, 0, NREC);
        } else {
            sl_window_result r = sl_window_out(b);
            assert_int_equal(r.result_size, 8);
            memcpy(&got, r.result, 8);
            memcpy(&key, r.key.ptr, 8);
            want = truth(key, r.start, r.end);
        }
        if (got != want)
            fail_msg("kind %d key %lld: %lld distinct, want %lld", kind, (long long)key,
                     (long long)got, (long long)want);
    }
    sl_pipeline_free(p);
    sl_collector_free(res);
}

static void test_keyed(void **state)
{
    (void)state;
    run_kind(0);
}
static void test_tumbling(void **state)
{
    (void)state;
    run_kind(1);
}
static void test_sliding(void **state)
{
    (void)state;
    run_kind(2);
}
static void test_session(void **state)
{
    (void)state;
    run_kind(3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),          cmocka_unit_test(test_merge_is_union_and_error),
        cmocka_unit_test(test_kept_histogram), cmocka_unit_test(test_small_counts_exact),
        cmocka_unit_test(test_value_offset),   cmocka_unit_test(test_position_independent),
        cmocka_unit_test(test_keyed),          cmocka_unit_test(test_tumbling),
        cmocka_unit_test(test_sliding),        cmocka_unit_test(test_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
