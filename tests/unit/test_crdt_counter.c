/*
 * tests/unit/test_crdt_counter.c - what G-Counter and PN-Counter promise
 * (sluice/crdt.h): after any gossip, the merged value is the sum of each
 * replica's own increments (the per-replica maxima), minus its decrements;
 * overflow is refused; a delta is this replica's entry. Seeded; a failure
 * prints its seed. The lattice laws are in test_crdt_props.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sluice/crdt.h"
#include "tests/unit/crdt_test.h"

#define R 5

static void test_gcounter_value_is_sum_of_maxima(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 300; seed++) {
        rng r = {seed};
        sl_crdt_gcounter *c[R];
        uint64_t own[R] = {0};
        for (int i = 0; i < R; i++) c[i] = sl_crdt_gcounter_new(100 + (uint32_t)i * 7);
        for (int k = 0; k < 200; k++) {
            int i = (int)rng_below(&r, R), j = (int)rng_below(&r, R);
            if (rng_below(&r, 4)) {
                uint64_t n = rng_below(&r, 1000);
                assert_int_equal(sl_crdt_gcounter_increment(c[i], n), 0);
                own[i] += n;
            } else {
                assert_int_equal(sl_crdt_gcounter_merge(c[j], c[i]), 0);
            }
        }
        sl_crdt_gcounter *all = sl_crdt_gcounter_new(0);
        uint64_t sum = 0;
        for (int i = 0; i < R; i++) {
            /* a replica never sees more of another than that one counted */
            for (int j = 0; j < R; j++)
                CHECK_SEED(sl_crdt_gcounter_get(c[j], 100 + (uint32_t)i * 7) <= own[i], seed,
                           "replica %d sees too much of %d", j, i);
            CHECK_SEED(sl_crdt_gcounter_get(c[i], 100 + (uint32_t)i * 7) == own[i], seed,
                       "own count");
            assert_int_equal(sl_crdt_gcounter_merge(all, c[i]), 0);
            sum += own[i];
        }
        CHECK_SEED(sl_crdt_gcounter_value(all) == sum, seed, "value %llu != sum %llu",
                   (unsigned long long)sl_crdt_gcounter_value(all), (unsigned long long)sum);
        /* merging everything again (replays) counts nothing twice */
        for (int i = 0; i < R; i++) assert_int_equal(sl_crdt_gcounter_merge(all, c[i]), 0);
        CHECK_SEED(sl_crdt_gcounter_value(all) == sum, seed, "a replay double counted");
        sl_crdt_gcounter_free(all);
        for (int i = 0; i < R; i++) sl_crdt_gcounter_free(c[i]);
    }
}

static void test_pncounter_value(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 300; seed++) {
        rng r = {seed ^ 0xabcdef};
        sl_crdt_pncounter *c[R];
        int64_t own[R] = {0};
        for (int i = 0; i < R; i++) c[i] = sl_crdt_pncounter_new((uint32_t)(R - i));
        for (int k = 0; k < 200; k++) {
            int i = (int)rng_below(&r, R), j = (int)rng_below(&r, R);
            if (rng_below(&r, 4)) {
                int64_t d = (int64_t)rng_below(&r, 2001) - 1000;
                assert_int_equal(sl_crdt_pncounter_add(c[i], d), 0);
                own[i] += d;
            } else {
                assert_int_equal(sl_crdt_pncounter_merge(c[j], c[i]), 0);
            }
        }
        sl_crdt_pncounter *all = sl_crdt_pncounter_new(0);
        int64_t sum = 0;
        for (int i = 0; i < R; i++) {
            assert_int_equal(sl_crdt_pncounter_merge(all, c[i]), 0);
            sum += own[i];
        }
        CHECK_SEED(sl_crdt_pncounter_value(all) == sum, seed, "value %lld != %lld",
                   (long long)sl_crdt_pncounter_value(all), (long long)sum);
        sl_crdt_pncounter_free(all);
        for (int i = 0; i < R; i++) sl_crdt_pncounter_free(c[i]);
    }
}

static void test_overflow_and_edges(void **state)
{
    (void)state;
    sl_crdt_gcounter *g = sl_crdt_gcounter_new(1);
    assert_int_equal(sl_crdt_gcounter_increment(g, UINT64_MAX), 0);
    assert_int_equal(sl_crdt_gcounter_increment(g, 1), SL_ERANGE);
    assert_true(sl_crdt_gcounter_value(g) == UINT64_MAX);
    assert_int_equal(sl_crdt_gcounter_increment(g, 0), 0);
    assert_int_equal(sl_crdt_gcounter_increment(NULL, 1), SL_EINVAL);
    assert_int_equal(sl_crdt_gcounter_merge(g, NULL), SL_EINVAL);
    sl_crdt_gcounter_free(g);
    sl_crdt_gcounter_free(NULL);

    sl_crdt_pncounter *p = sl_crdt_pncounter_new(1);
    assert_int_equal(sl_crdt_pncounter_add(p, INT64_MIN), 0);
    assert_true(sl_crdt_pncounter_value(p) == INT64_MIN);
    assert_int_equal(sl_crdt_pncounter_add(p, INT64_MAX), 0);
    assert_true(sl_crdt_pncounter_value(p) == -1);
    assert_int_equal(sl_crdt_pncounter_decrement(p, UINT64_MAX), SL_ERANGE);
    sl_crdt_pncounter_free(p);
    sl_crdt_pncounter_free(NULL);

    /* a zero count is no entry: a fresh counter equals one incremented by 0 */
    sl_crdt_gcounter *a = sl_crdt_gcounter_new(1), *b = sl_crdt_gcounter_new(2);
    assert_int_equal(sl_crdt_gcounter_increment(a, 0), 0);
    assert_true(sl_crdt_gcounter_equal(a, b));
    sl_crdt_gcounter_free(a);
    sl_crdt_gcounter_free(b);
}

static void test_delta_is_own_entry(void **state)
{
    (void)state;
    sl_crdt_pncounter *a = sl_crdt_pncounter_new(7), *b = sl_crdt_pncounter_new(9);
    assert_int_equal(sl_crdt_pncounter_add(b, 100), 0);
    assert_int_equal(sl_crdt_pncounter_merge(a, b), 0);
    assert_false(sl_crdt_pncounter_delta_pending(a)); /* a merge is not a local change */
    assert_int_equal(sl_crdt_pncounter_add(a, 5), 0);
    assert_int_equal(sl_crdt_pncounter_add(a, -2), 0);
    assert_true(sl_crdt_pncounter_delta_pending(a));
    sl_crdt_pncounter *d = NULL;
    assert_int_equal(sl_crdt_pncounter_delta_take(a, &d), 0);
    assert_non_null(d);
    assert_int_equal(sl_crdt_pncounter_value(d), 3); /* only a's own entry */
    assert_false(sl_crdt_pncounter_delta_pending(a));
    assert_int_equal(sl_crdt_pncounter_merge(b, d), 0);
    assert_true(sl_crdt_pncounter_equal(a, b));
    sl_crdt_pncounter_free(d);
    sl_crdt_pncounter_free(a);
    sl_crdt_pncounter_free(b);

    sl_crdt_gcounter *g = sl_crdt_gcounter_new(3), *gd = NULL;
    assert_int_equal(sl_crdt_gcounter_increment(g, 4), 0);
    assert_int_equal(sl_crdt_gcounter_increment(g, 4), 0);
    assert_int_equal(sl_crdt_gcounter_delta_take(g, &gd), 0);
    assert_true(sl_crdt_gcounter_get(gd, 3) == 8);
    assert_true(sl_crdt_gcounter_equal(g, gd));
    sl_crdt_gcounter_free(gd);
    sl_crdt_gcounter_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcounter_value_is_sum_of_maxima),
        cmocka_unit_test(test_pncounter_value),
        cmocka_unit_test(test_overflow_and_edges),
        cmocka_unit_test(test_delta_is_own_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
