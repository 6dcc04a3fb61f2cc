/*
 * tests/unit/test_crdt_hll_hist.c - the HyperLogLog's word-wise histogram
 * (operators/crdt/hll.c, sli_crdt_hll_histogram) counts exactly what the
 * naive loop c[reg[i]]++ counts, so the estimate is bit-identical to the
 * one computed from the naive histogram: for every precision 4..18, on
 * sketches filled by adds at several fill levels (empty, a handful of
 * items, m/64, m/8, m, 8m) and on sketches whose registers are set directly
 * (random values up to 65 - p, all at the largest value, zero words
 * alternating with full ones, one register set at each end). The estimate
 * is recomputed from the naive histogram by the estimator itself
 * (sli_crdt_hll_estimate_hist, the one place the formula lives) and
 * compared with ==; tests/unit/test_crdt_hll.c checks the formula's
 * accuracy.
 *
 * Also: the inline add that sl_agg_distinct uses (hll_int.h) builds the
 * same sketch, byte for byte, as sl_crdt_hll_add.
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
#include "operators/crdt/hll_int.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Histogram and estimate against the naive ones. */
static void check(const sl_crdt_hll *h, const char *what)
{
    uint32_t want[SLI_CRDT_HLL_HIST] = {0}, got[SLI_CRDT_HLL_HIST];
    for (uint32_t i = 0; i < h->m; i++) want[h->reg[i]]++;
    memset(got, 0xAB, sizeof(got));
    sli_crdt_hll_histogram(h, got);
    for (int k = 0; k < SLI_CRDT_HLL_HIST; k++) {
        if (got[k] != want[k])
            fprintf(stderr, "p=%d %s: c[%d] = %u, naive %u\n", h->p, what, k, got[k], want[k]);
        assert_int_equal(got[k], want[k]);
    }
    /* the estimate from the naive histogram, through the one estimator
     * (sli_crdt_hll_estimate_hist): equal to sl_crdt_hll_estimate's */
    double e = sl_crdt_hll_estimate(h), r = sli_crdt_hll_estimate_hist(want, h->p);
    if (e != r) fprintf(stderr, "p=%d %s: estimate %.17g, naive %.17g\n", h->p, what, e, r);
    assert_true(e == r);
}

static void test_filled_by_adds(void **state)
{
    for (int p = SL_CRDT_HLL_P_MIN; p <= SL_CRDT_HLL_P_MAX; p++) {
        sl_crdt_hll *h = sl_crdt_hll_new(p);
        assert_non_null(h);
        uint64_t m = (uint64_t)1 << p, added = 0;
        const uint64_t levels[] = {0, 3, m / 64, m / 8, m, 8 * m};
        check(h, "empty");
        for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
            for (; added < levels[l]; added++) {
                uint64_t item = added ^ ((uint64_t)p << 56);
                sl_crdt_hll_add(h, &item, sizeof(item));
            }
            char what[32];
            snprintf(what, sizeof(what), "%llu items", (unsigned long long)added);
            check(h, what);
        }
        sl_crdt_hll_free(h);
    }
}

static void test_registers_set(void **state)
{
    for (int p = SL_CRDT_HLL_P_MIN; p <= SL_CRDT_HLL_P_MAX; p++) {
        sl_crdt_hll *h = sl_crdt_hll_new(p);
        assert_non_null(h);
        const uint8_t maxv = (uint8_t)(65 - p);
        /* random values, with zeros in half the cases */
        for (int round = 0; round < 4; round++) {
            for (uint32_t i = 0; i < h->m; i++)
                h->reg[i] = (round & 1) && rnd() % 2 ? 0 : (uint8_t)(rnd() % (maxv + 1u));
            check(h, "random");
        }
        memset(h->reg, maxv, h->m);
        check(h, "all at the largest value");
        for (uint32_t i = 0; i < h->m; i++) h->reg[i] = (i / 8) % 2 ? (uint8_t)(1 + i % maxv) : 0;
        check(h, "zero words between full ones");
        memset(h->reg, 0, h->m);
        h->reg[0] = 1;
        h->reg[h->m - 1] = maxv;
        check(h, "the two ends");
        sl_crdt_hll_free(h);
    }
}

/* sl_agg_distinct's inline add (hll_int.h + the inlined XXH3) builds the
 * sketch sl_crdt_hll_add builds. */
static void test_inline_add_same_sketch(void **state)
{
    static uint8_t acc[SL_AGG_DISTINCT_ACC_SIZE];
    sl_agg_value val = {.offset = 0};
    sl_agg_distinct.init(acc, &val);
    sl_crdt_hll *h = sl_crdt_hll_new(SL_AGG_DISTINCT_P);
    assert_non_null(h);
    for (int64_t i = 0; i < 200000; i++) {
        int64_t v = (int64_t)(rnd() % 50000) - 25000;
        sl_agg_distinct.add(acc, &v, sizeof(v), 0, &val);
        sl_crdt_hll_add(h, &v, sizeof(v));
    }
    assert_true(sl_crdt_hll_equal((const sl_crdt_hll *)(const void *)acc, h));
    sl_crdt_hll_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filled_by_adds),
        cmocka_unit_test(test_registers_set),
        cmocka_unit_test(test_inline_add_same_sketch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
