/*
 * tests/unit/test_deque.c - the Chase–Lev deque (engine/deque.c).
 *
 * Single-threaded: capacity rounding and the full/empty edges, LIFO order for
 * the owner, FIFO order for steals, and random push/pop/steal sequences
 * checked against a plain array model (including index wrap-around).
 * Concurrent: the owner pushes and pops while 2-3 thieves steal, a few
 * million items in all; every item must be taken exactly once (per-thread
 * count arrays, summed after join), and the contents the owner wrote before
 * pushing must be seen by whoever takes the item (ThreadSanitizer checks the
 * hand-off). No assertion depends on timing or on how the races fall.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "engine/deque.h"

/* --- single-threaded ----------------------------------------------------- */

/* Distinct, aligned, never NULL; never dereferenced. */
static void *ptr_of(uintptr_t i)
{
    return (void *)(i * 8 + 8);
}

static void test_capacity_rounding(void **state)
{
    static const struct {
        size_t requested, effective;
    } cases[] = {{0, 1}, {1, 1}, {2, 2}, {3, 4}, {4, 4}, {5, 8}, {1000, 1024}, {4096, 4096}};
    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        sl_deque *d = NULL;
        assert_int_equal(sli_deque_new(&d, cases[c].requested), 0);
        assert_non_null(d);
        for (size_t i = 0; i < cases[c].effective; i++)
            assert_int_equal(sli_deque_push(d, ptr_of(i)), 0);
        assert_int_equal(sli_deque_push(d, ptr_of(999999)), SL_EFULL);
        assert_int_equal(sli_deque_size_approx(d), cases[c].effective);
        /* A refused push added nothing: the items come back intact. */
        for (size_t i = cases[c].effective; i-- > 0;) assert_ptr_equal(sli_deque_pop(d), ptr_of(i));
        assert_null(sli_deque_pop(d));
        sli_deque_free(d);
    }
    sli_deque_free(NULL);
}

static void test_lifo_fifo(void **state)
{
    sl_deque *d = NULL;
    (void)state;
    assert_int_equal(sli_deque_new(&d, 64), 0);
    for (int round = 0; round < 3; round++) {
        for (uintptr_t i = 0; i < 64; i++) assert_int_equal(sli_deque_push(d, ptr_of(i)), 0);
        for (uintptr_t i = 64; i-- > 0;) assert_ptr_equal(sli_deque_pop(d), ptr_of(i)); /* LIFO */
        assert_null(sli_deque_pop(d));
        for (uintptr_t i = 0; i < 64; i++) assert_int_equal(sli_deque_push(d, ptr_of(i)), 0);
        for (uintptr_t i = 0; i < 64; i++)
            assert_ptr_equal(sli_deque_steal(d), ptr_of(i)); /* FIFO */
        assert_null(sli_deque_steal(d));
        assert_int_equal(sli_deque_size_approx(d), 0);
    }
    sli_deque_free(d);
}

static void test_empty_edges(void **state)
{
    sl_deque *d = NULL;
    (void)state;
    assert_int_equal(sli_deque_new(&d, 4), 0);
    /* Repeated pops and steals on an empty deque leave it usable (pop moves
     * bottom to -1 transiently: signed indices). */
    for (int i = 0; i < 10; i++) {
        assert_null(sli_deque_pop(d));
        assert_null(sli_deque_steal(d));
        assert_int_equal(sli_deque_size_approx(d), 0);
    }
    assert_int_equal(sli_deque_push(d, ptr_of(1)), 0);
    assert_int_equal(sli_deque_size_approx(d), 1);
    assert_ptr_equal(sli_deque_pop(d), ptr_of(1));
    assert_null(sli_deque_pop(d));
    assert_int_equal(sli_deque_push(d, ptr_of(2)), 0);
    assert_ptr_equal(sli_deque_steal(d), ptr_of(2));
    assert_null(sli_deque_steal(d));
    assert_null(sli_deque_pop(d));
    /* Full, then one steal frees exactly one place (wrapping around). */
    for (uintptr_t i = 0; i < 4; i++) assert_int_equal(sli_deque_push(d, ptr_of(10 + i)), 0);
    assert_int_equal(sli_deque_push(d, ptr_of(99)), SL_EFULL);
    assert_ptr_equal(sli_deque_steal(d), ptr_of(10));
    assert_int_equal(sli_deque_push(d, ptr_of(14)), 0);
    assert_int_equal(sli_deque_push(d, ptr_of(99)), SL_EFULL);
    assert_ptr_equal(sli_deque_pop(d), ptr_of(14));
    assert_ptr_equal(sli_deque_steal(d), ptr_of(11));
    assert_ptr_equal(sli_deque_pop(d), ptr_of(13));
    assert_ptr_equal(sli_deque_pop(d), ptr_of(12));
    assert_null(sli_deque_pop(d));
    sli_deque_free(d);
}

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Random single-threaded sequences against an array model. */
static void test_random_model(void **state)
{
    static const size_t caps[] = {1, 2, 8, 64};
    (void)state;
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        for (uint64_t seed = 1; seed <= 4; seed++) {
            size_t cap = caps[c];
            uintptr_t *model = malloc(cap * sizeof(*model));
            size_t lo = 0, n = 0; /* model holds model[lo .. lo+n) mod cap */
            uintptr_t next = 0;
            uint64_t rs = seed * 7919 + cap;
            sl_deque *d = NULL;
            assert_non_null(model);
            assert_int_equal(sli_deque_new(&d, cap), 0);
            for (int op = 0; op < 20000; op++) {
                uint64_t r = rng_next(&rs) % 5;
                if (r < 2) {
                    int rc = sli_deque_push(d, ptr_of(next));
                    if (n == cap) {
                        assert_int_equal(rc, SL_EFULL);
                    } else {
                        assert_int_equal(rc, 0);
                        model[(lo + n) % cap] = next;
                        n++;
                    }
                    next++;
                } else if (r < 4) {
                    void *p = sli_deque_pop(d);
                    if (n == 0) {
                        assert_null(p);
                    } else {
                        n--;
                        assert_ptr_equal(p, ptr_of(model[(lo + n) % cap]));
                    }
                } else {
                    void *p = sli_deque_steal(d);
                    if (n == 0) {
                        assert_null(p);
                    } else {
                        assert_ptr_equal(p, ptr_of(model[lo]));
                        lo = (lo + 1) % cap;
                        n--;
                    }
                }
                assert_int_equal(sli_deque_size_approx(d), n);
            }
            sli_deque_free(d);
            free(model);
        }
    }
}

/* --- concurrent ---------------------------------------------------------- */

#define MAX_THIEVES 3

typedef struct item {
    uint64_t tag;      /* written by the owner before the push */
    uint32_t taken_by; /* written by whoever takes it (plain store) */
} item;

typedef struct run {
    sl_deque *d;
    item *items;
    size_t n_items;
    atomic_int done;
    uint8_t *counts[MAX_THIEVES + 1]; /* [0] owner, [1..] thieves */
    size_t taken[MAX_THIEVES + 1];
    int bad[MAX_THIEVES + 1]; /* a taker saw a wrong tag (read after join) */
} run;

typedef struct thief_arg {
    run *r;
    int id;
} thief_arg;

static uint64_t tag_of(size_t i)
{
    return (uint64_t)i * 0x9E3779B97F4A7C15ull ^ 0x5EED;
}

static void consume(run *r, int who, void *p, int *bad)
{
    item *it = p;
    size_t i = (size_t)(it - r->items);
    if (i >= r->n_items || it->tag != tag_of(i)) {
        *bad = 1;
        return;
    }
    it->taken_by = (uint32_t)who;
    if (r->counts[who][i] < 255) r->counts[who][i]++;
    r->taken[who]++;
}

static void *thief_main(void *arg)
{
    thief_arg *ta = arg;
    run *r = ta->r;
    int bad = 0;
    unsigned misses = 0;
    while (!atomic_load_explicit(&r->done, memory_order_acquire)) {
        void *p = sli_deque_steal(r->d);
        if (p) {
            consume(r, ta->id, p, &bad);
            misses = 0;
        } else if (++misses % 64 == 0) {
            sched_yield(); /* 2-core machines: let the owner run */
        }
    }
    r->bad[ta->id] = bad;
    return NULL;
}

static void run_concurrent(int n_thieves, size_t capacity, size_t n_items, unsigned pop_every)
{
    run *r = calloc(1, sizeof(*r));
    pthread_t th[MAX_THIEVES];
    thief_arg ta[MAX_THIEVES];
    int bad_owner = 0;
    uint64_t rs = 42 + capacity;

    assert_non_null(r);
    assert_true(n_thieves <= MAX_THIEVES);
    r->n_items = n_items;
    r->items = calloc(n_items, sizeof(item));
    assert_non_null(r->items);
    for (int t = 0; t <= n_thieves; t++) {
        r->counts[t] = calloc(n_items, 1);
        assert_non_null(r->counts[t]);
    }
    atomic_init(&r->done, 0);
    assert_int_equal(sli_deque_new(&r->d, capacity), 0);

    for (int t = 0; t < n_thieves; t++) {
        ta[t].r = r;
        ta[t].id = t + 1;
        assert_int_equal(pthread_create(&th[t], NULL, thief_main, &ta[t]), 0);
    }

    for (size_t i = 0; i < n_items; i++) {
        r->items[i].tag = tag_of(i);
        while (sli_deque_push(r->d, &r->items[i]) == SL_EFULL) {
            void *p = sli_deque_pop(r->d);
            if (p) consume(r, 0, p, &bad_owner);
        }
        /* Pop now and then (sometimes in bursts) to race the thieves for
         * the bottom and, when the deque is short, the last item. */
        if (rng_next(&rs) % pop_every == 0) {
            unsigned burst = 1 + (unsigned)(rng_next(&rs) % 4);
            for (unsigned k = 0; k < burst; k++) {
                void *p = sli_deque_pop(r->d);
                if (!p) break;
                consume(r, 0, p, &bad_owner);
            }
        }
    }
    /* Drain: pop returns NULL only when nothing is left to take. */
    for (void *p; (p = sli_deque_pop(r->d)) != NULL;) consume(r, 0, p, &bad_owner);
    assert_int_equal(sli_deque_size_approx(r->d), 0);
    atomic_store_explicit(&r->done, 1, memory_order_release);
    for (int t = 0; t < n_thieves; t++) assert_int_equal(pthread_join(th[t], NULL), 0);

    assert_int_equal(bad_owner, 0);
    for (int t = 1; t <= n_thieves; t++) assert_int_equal(r->bad[t], 0);
    size_t lost = 0, dup = 0, total = 0;
    for (size_t i = 0; i < n_items; i++) {
        unsigned c = 0;
        for (int t = 0; t <= n_thieves; t++) c += r->counts[t][i];
        if (c == 0) lost++;
        if (c > 1) dup++;
    }
    for (int t = 0; t <= n_thieves; t++) total += r->taken[t];
    printf("    thieves=%d cap=%zu items=%zu: owner took %zu, thieves took %zu", n_thieves,
           capacity, n_items, r->taken[0], total - r->taken[0]);
    printf(" (lost %zu, duplicated %zu)\n", lost, dup);
    assert_int_equal(lost, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(total, n_items);

    sli_deque_free(r->d);
    for (int t = 0; t <= n_thieves; t++) free(r->counts[t]);
    free(r->items);
    free(r);
}

/* SLUICE_DEQUE_ITEMS scales the concurrent runs (default 1,000,000 each). */
static size_t items_per_run(void)
{
    const char *e = getenv("SLUICE_DEQUE_ITEMS");
    if (e && *e) {
        long v = strtol(e, NULL, 10);
        if (v > 0) return (size_t)v;
    }
    return 1000000;
}

static void test_concurrent_2_thieves(void **state)
{
    (void)state;
    run_concurrent(2, 1024, items_per_run(), 3);
}

static void test_concurrent_3_thieves_small(void **state)
{
    (void)state;
    /* Capacity 16: constant wrap-around and frequent SL_EFULL. */
    run_concurrent(3, 16, items_per_run(), 2);
}

static void test_concurrent_3_thieves_tiny(void **state)
{
    (void)state;
    /* Capacity 2: almost every take is a race for the last item. */
    run_concurrent(3, 2, items_per_run() / 2, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity_rounding),
        cmocka_unit_test(test_lifo_fifo),
        cmocka_unit_test(test_empty_edges),
        cmocka_unit_test(test_random_model),
        cmocka_unit_test(test_concurrent_2_thieves),
        cmocka_unit_test(test_concurrent_3_thieves_small),
        cmocka_unit_test(test_concurrent_3_thieves_tiny),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
