/*
 * tests/unit/test_crdt_hll.c - what the HyperLogLog sketch promises
 * (sluice/crdt.h): the estimate is within 3 standard errors (1.04/sqrt(2^p))
 * of the true count at 10^2, 10^4, 10^6 and 10^7 distinct items for
 * p = 10, 14 and 16; merging two sketches gives, byte for byte, the sketch of
 * the union; duplicates do not count; the encoding is sparse while it is
 * shorter. The items are a counter's 8 bytes, hashed by the sketch (no
 * allocation per item), so 3 x 10^7 adds take well under a second.
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

#include "sluice/crdt.h"
#include "sluice/state.h"

static void test_error_within_three_sigma(void **state)
{
    (void)state;
    static const int ps[] = {10, 14, 16};
    static const uint64_t marks[] = {100, 10000, 1000000, 10000000};
    for (size_t pi = 0; pi < 3; pi++) {
        int p = ps[pi];
        sl_crdt_hll *h = sl_crdt_hll_new(p);
        assert_non_null(h);
        double se = sl_crdt_hll_std_error(p);
        uint64_t i = 0;
        for (size_t k = 0; k < 4; k++) {
            /* a different item stream per precision, so the three are independent */
            for (; i < marks[k]; i++) {
                uint64_t item = i ^ ((uint64_t)p << 56);
                sl_crdt_hll_add(h, &item, sizeof item);
            }
            double est = sl_crdt_hll_estimate(h);
            double rel = (est - (double)marks[k]) / (double)marks[k];
            print_message("p=%2d n=%-9llu estimate %.1f relative error %+.4f (%.2f sigma)\n", p,
                          (unsigned long long)marks[k], est, rel, fabs(rel) / se);
            if (fabs(rel) > 3 * se)
                fail_msg("p=%d n=%llu: relative error %f > 3 x %f", p, (unsigned long long)marks[k],
                         rel, se);
        }
        sl_crdt_hll_free(h);
    }
}

static void test_merge_is_sketch_of_union(void **state)
{
    (void)state;
    for (int p = SL_CRDT_HLL_P_MIN; p <= SL_CRDT_HLL_P_MAX; p += 2) {
        sl_crdt_hll *a = sl_crdt_hll_new(p), *b = sl_crdt_hll_new(p), *u = sl_crdt_hll_new(p);
        for (uint64_t i = 0; i < 200000; i++) {
            if (i < 150000) sl_crdt_hll_add(a, &i, sizeof i);
            if (i >= 50000) sl_crdt_hll_add(b, &i, sizeof i);
            sl_crdt_hll_add(u, &i, sizeof i);
        }
        assert_false(sl_crdt_hll_equal(a, u));
        assert_int_equal(sl_crdt_hll_merge(a, b), 0);
        if (!sl_crdt_hll_equal(a, u)) fail_msg("p=%d: merge(a, b) != sketch of the union", p);
        sl_buf x = {0}, y = {0};
        assert_int_equal(sl_crdt_hll_encode(a, &x), 0);
        assert_int_equal(sl_crdt_hll_encode(u, &y), 0);
        assert_true(x.len == y.len && !memcmp(x.ptr, y.ptr, x.len));
        sl_buf_free(&x);
        sl_buf_free(&y);
        sl_crdt_hll_free(a);
        sl_crdt_hll_free(b);
        sl_crdt_hll_free(u);
    }
}

static void test_edges(void **state)
{
    (void)state;
    assert_null(sl_crdt_hll_new(3));
    assert_null(sl_crdt_hll_new(19));
    assert_null(sl_crdt_hll_new(-1));
    sl_crdt_hll *d = sl_crdt_hll_new(0), *e = sl_crdt_hll_new(10);
    assert_int_equal(sl_crdt_hll_precision(d), SL_CRDT_HLL_P_DEFAULT);
    assert_true(sl_crdt_hll_estimate(d) == 0.0);
    assert_int_equal(sl_crdt_hll_merge(d, e), SL_EINVAL); /* precisions differ */
    /* one item a million times is one item */
    for (int i = 0; i < 1000000; i++) sl_crdt_hll_add(d, "same", 4);
    assert_true(fabs(sl_crdt_hll_estimate(d) - 1.0) < 0.01);
    /* the hash is XXH3-64 of the bytes (sl_hash): add and add_hash agree */
    sl_crdt_hll *h = sl_crdt_hll_new(0);
    sl_crdt_hll_add_hash(h, sl_hash("same", 4));
    assert_true(sl_crdt_hll_equal(d, h));
    /* the extreme hashes: rank capped at 65 - p, register 0 and m - 1 */
    sl_crdt_hll_add_hash(e, 0);
    sl_crdt_hll_add_hash(e, UINT64_MAX);
    sl_buf b = {0};
    assert_int_equal(sl_crdt_hll_encode(e, &b), 0);
    sl_crdt_hll *back = NULL;
    assert_int_equal(sl_crdt_hll_decode(b.ptr, b.len, &back), 0);
    assert_true(sl_crdt_hll_equal(back, e));
    assert_true(b.len < 32); /* sparse: two registers */
    sl_buf_free(&b);
    /* a full sketch is dense: 6 + 2^p bytes */
    sl_crdt_hll *f = sl_crdt_hll_new(12);
    for (uint64_t i = 0; i < 100000; i++) sl_crdt_hll_add(f, &i, sizeof i);
    assert_int_equal(sl_crdt_hll_encode(f, &b), 0);
    assert_int_equal(b.len, 6 + 4096);
    sl_buf_free(&b);
    assert_true(fabs(sl_crdt_hll_std_error(14) - 1.04 / 128) < 1e-12);
    sl_crdt_hll_free(f);
    sl_crdt_hll_free(back);
    sl_crdt_hll_free(h);
    sl_crdt_hll_free(d);
    sl_crdt_hll_free(e);
    sl_crdt_hll_free(NULL);
}

/* A sketch in caller memory, moved by memcpy as an accumulator is. */
static void test_in_caller_memory(void **state)
{
    (void)state;
    size_t n = sl_crdt_hll_footprint(12);
    assert_true(n >= 4096 && n < 4096 + 64);
    assert_int_equal(sl_crdt_hll_footprint(3), 0);
    uint64_t *mem = malloc(n), *moved = malloc(n);
    assert_null(sl_crdt_hll_init(mem, n - 1, 12));
    sl_crdt_hll *h = sl_crdt_hll_init(mem, n, 12), *ref = sl_crdt_hll_new(12);
    assert_non_null(h);
    for (uint64_t i = 0; i < 5000; i++) {
        sl_crdt_hll_add(h, &i, sizeof i);
        sl_crdt_hll_add(ref, &i, sizeof i);
    }
    memcpy(moved, mem, n);
    memset(mem, 0xee, n);
    sl_crdt_hll *m = (sl_crdt_hll *)moved;
    assert_true(sl_crdt_hll_equal(m, ref));
    assert_int_equal(sl_crdt_hll_merge(ref, m), 0);
    assert_true(fabs(sl_crdt_hll_estimate(m) - 5000) < 5000 * 3 * sl_crdt_hll_std_error(12));
    sl_crdt_hll_free(ref);
    free(mem);
    free(moved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_within_three_sigma),
        cmocka_unit_test(test_merge_is_sketch_of_union),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_in_caller_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
