/*
 * tests/unit/test_crdt_register.c - what the registers promise
 * (sluice/crdt.h). LWW: the merged value is the write with the largest
 * (timestamp, replica id) whatever the order of merges, a tie in time goes
 * to the larger replica id, an older local write loses. MV: concurrent
 * writes are all kept, a write that has seen them supersedes them all, and
 * after random gossip the merged values are exactly the writes no other
 * write has seen (checked against a model that records, per write, which
 * writes it had seen). Seeded; a failure prints its seed.
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

static sl_bytes B(const char *s)
{
    return (sl_bytes){s, (uint32_t)strlen(s)};
}

static bool is(sl_bytes b, const char *s)
{
    return b.len == strlen(s) && (!b.len || !memcmp(b.ptr, s, b.len));
}

static void test_lww_tie_break_by_replica(void **state)
{
    (void)state;
    sl_crdt_lww *a = sl_crdt_lww_new(1), *b = sl_crdt_lww_new(2), *x = NULL, *y = NULL;
    assert_int_equal(sl_crdt_lww_set(b, 10, B("from-2")), 0);
    assert_int_equal(sl_crdt_lww_set(a, 10, B("from-1")), 0);
    assert_int_equal(sl_crdt_lww_copy(a, &x), 0);
    assert_int_equal(sl_crdt_lww_copy(b, &y), 0);
    assert_int_equal(sl_crdt_lww_merge(x, b), 0);
    assert_int_equal(sl_crdt_lww_merge(y, a), 0);
    sl_bytes v;
    int64_t ts;
    uint32_t rep;
    assert_true(sl_crdt_lww_get(x, &v, &ts, &rep));
    assert_true(is(v, "from-2") && ts == 10 && rep == 2);
    assert_true(sl_crdt_lww_equal(x, y));
    /* a later timestamp wins whatever the replica id */
    assert_int_equal(sl_crdt_lww_set(a, 11, B("late")), 0);
    assert_int_equal(sl_crdt_lww_merge(x, a), 0);
    assert_true(sl_crdt_lww_get(x, &v, NULL, &rep) && is(v, "late") && rep == 1);
    /* an older local write loses and changes nothing */
    assert_int_equal(sl_crdt_lww_set(x, 5, B("old")), 1);
    assert_true(sl_crdt_lww_get(x, &v, NULL, NULL) && is(v, "late"));
    /* event time 0 and negative times are times like any other */
    sl_crdt_lww *z = sl_crdt_lww_new(3);
    assert_false(sl_crdt_lww_get(z, &v, NULL, NULL));
    assert_int_equal(sl_crdt_lww_set(z, INT64_MIN, B("")), 0);
    assert_true(sl_crdt_lww_get(z, &v, &ts, NULL) && v.len == 0 && ts == INT64_MIN);
    assert_int_equal(sl_crdt_lww_set(z, INT64_MIN, B("")), 1); /* the same write again */
    sl_crdt_lww_free(z);
    sl_crdt_lww_free(a);
    sl_crdt_lww_free(b);
    sl_crdt_lww_free(x);
    sl_crdt_lww_free(y);
    sl_crdt_lww_free(NULL);
}

static void test_lww_random_merges_give_the_largest_write(void **state)
{
    (void)state;
    static const char *vals[] = {"a", "b", "c", "d"};
    for (uint64_t seed = 1; seed <= 300; seed++) {
        rng r = {seed * 31};
        sl_crdt_lww *s[4];
        int64_t best_ts = INT64_MIN;
        uint32_t best_rep = 0;
        const char *best = NULL;
        for (int i = 0; i < 4; i++) s[i] = sl_crdt_lww_new((uint32_t)(10 - i));
        for (int k = 0; k < 60; k++) {
            int i = (int)rng_below(&r, 4), j = (int)rng_below(&r, 4);
            if (rng_below(&r, 3)) {
                int64_t ts = rng_below(&r, 8);
                const char *v = vals[rng_below(&r, 4)];
                int rc = sl_crdt_lww_set(s[i], ts, B(v));
                assert_true(rc == 0 || rc == 1);
                uint32_t rep = (uint32_t)(10 - i);
                if (rc == 0 && (!best || ts > best_ts || (ts == best_ts && rep > best_rep) ||
                                (ts == best_ts && rep == best_rep && strcmp(v, best) > 0))) {
                    best_ts = ts, best_rep = rep, best = v;
                }
            } else {
                assert_int_equal(sl_crdt_lww_merge(s[j], s[i]), 0);
            }
        }
        sl_crdt_lww *all = sl_crdt_lww_new(0);
        for (int i = 3; i >= 0; i--) assert_int_equal(sl_crdt_lww_merge(all, s[i]), 0);
        sl_bytes v;
        int64_t ts;
        uint32_t rep;
        if (best) {
            CHECK_SEED(sl_crdt_lww_get(all, &v, &ts, &rep), seed, "empty");
            CHECK_SEED(is(v, best) && ts == best_ts && rep == best_rep, seed,
                       "merged (%lld, %u) != largest write (%lld, %u)", (long long)ts, rep,
                       (long long)best_ts, best_rep);
        }
        sl_crdt_lww_free(all);
        for (int i = 0; i < 4; i++) sl_crdt_lww_free(s[i]);
    }
}

static void test_mvreg_keeps_concurrent_values(void **state)
{
    (void)state;
    sl_crdt_mvreg *a = sl_crdt_mvreg_new(1), *b = sl_crdt_mvreg_new(2);
    assert_int_equal(sl_crdt_mvreg_count(a), 0);
    assert_int_equal(sl_crdt_mvreg_set(a, B("x")), 0);
    assert_int_equal(sl_crdt_mvreg_set(b, B("y")), 0);
    assert_int_equal(sl_crdt_mvreg_merge(a, b), 0);
    assert_int_equal(sl_crdt_mvreg_count(a), 2);
    assert_true(is(sl_crdt_mvreg_value(a, 0), "x"));
    assert_true(is(sl_crdt_mvreg_value(a, 1), "y"));
    /* a write that has seen both supersedes both */
    assert_int_equal(sl_crdt_mvreg_set(a, B("z")), 0);
    assert_int_equal(sl_crdt_mvreg_merge(b, a), 0);
    assert_int_equal(sl_crdt_mvreg_count(b), 1);
    assert_true(is(sl_crdt_mvreg_value(b, 0), "z"));
    /* b writes after seeing z: a merge of the older a keeps only b's */
    assert_int_equal(sl_crdt_mvreg_set(b, B("w")), 0);
    assert_int_equal(sl_crdt_mvreg_merge(b, a), 0);
    assert_int_equal(sl_crdt_mvreg_count(b), 1);
    assert_true(is(sl_crdt_mvreg_value(b, 0), "w"));
    /* the same value written concurrently twice is two pairs, one value each */
    sl_crdt_mvreg *c = sl_crdt_mvreg_new(3), *d = sl_crdt_mvreg_new(4);
    assert_int_equal(sl_crdt_mvreg_set(c, B("same")), 0);
    assert_int_equal(sl_crdt_mvreg_set(d, B("same")), 0);
    assert_int_equal(sl_crdt_mvreg_merge(c, d), 0);
    assert_int_equal(sl_crdt_mvreg_count(c), 2);
    sl_crdt_mvreg_free(c);
    sl_crdt_mvreg_free(d);
    sl_crdt_mvreg_free(a);
    sl_crdt_mvreg_free(b);
}

/* Model: write w has a set seen[w] of the writes its replica had seen (its
 * own included). After merging all replicas, the register must hold
 * exactly the writes w' that no write w has seen (w' != w, w' in seen[w])
 * among the writes each replica's state still holds or superseded. */
#define MAXW 64
static void test_mvreg_random_against_model(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 300; seed++) {
        rng r = {seed * 977};
        sl_crdt_mvreg *s[3];
        /* known[i]: writes replica i has seen (bitmask over write numbers) */
        uint64_t known[3] = {0}, seen[MAXW] = {0};
        char names[MAXW][16];
        int nw = 0;
        for (int i = 0; i < 3; i++) s[i] = sl_crdt_mvreg_new((uint32_t)i + 1);
        for (int k = 0; k < 40; k++) {
            int i = (int)rng_below(&r, 3), j = (int)rng_below(&r, 3);
            if (rng_below(&r, 2) && nw < MAXW) {
                snprintf(names[nw], sizeof names[nw], "w%d", nw);
                assert_int_equal(sl_crdt_mvreg_set(s[i], B(names[nw])), 0);
                known[i] |= 1ull << nw;
                seen[nw] = known[i];
                nw++;
            } else {
                assert_int_equal(sl_crdt_mvreg_merge(s[j], s[i]), 0);
                known[j] |= known[i];
            }
        }
        sl_crdt_mvreg *all = sl_crdt_mvreg_new(0);
        for (int i = 0; i < 3; i++) assert_int_equal(sl_crdt_mvreg_merge(all, s[i]), 0);
        uint64_t everything = known[0] | known[1] | known[2], expect = 0;
        for (int w = 0; w < nw; w++) {
            bool superseded = false;
            for (int v = 0; v < nw; v++)
                if (v != w && (seen[v] >> w & 1)) superseded = true;
            if ((everything >> w & 1) && !superseded) expect |= 1ull << w;
        }
        uint64_t got = 0;
        for (size_t q = 0; q < sl_crdt_mvreg_count(all); q++) {
            sl_bytes v = sl_crdt_mvreg_value(all, q);
            const char *c = v.ptr; /* "wN", not NUL-terminated */
            int w = 0;
            for (uint32_t q2 = 1; q2 < v.len; q2++) w = w * 10 + (c[q2] - '0');
            got |= 1ull << w;
        }
        CHECK_SEED(got == expect, seed, "values %llx, expected %llx", (unsigned long long)got,
                   (unsigned long long)expect);
        sl_crdt_mvreg_free(all);
        for (int i = 0; i < 3; i++) sl_crdt_mvreg_free(s[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lww_tie_break_by_replica),
        cmocka_unit_test(test_lww_random_merges_give_the_largest_write),
        cmocka_unit_test(test_mvreg_keeps_concurrent_values),
        cmocka_unit_test(test_mvreg_random_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
