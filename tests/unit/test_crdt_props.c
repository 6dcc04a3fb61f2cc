/*
 * tests/unit/test_crdt_props.c - the laws every CRDT of sluice/crdt.h must
 * keep, checked on random states and operations (seeded; a failure prints
 * its seed):
 *
 *   - merge is commutative, associative and idempotent (as state equality
 *     and as encoded bytes);
 *   - delta-merge equals full-state merge: the deltas of every replica,
 *     joined in any order and with duplicates, give the join of the full
 *     states, also when replicas exchanged deltas and states meanwhile;
 *   - encode/decode round trips to an equal state and the same bytes.
 *
 * The types are driven through one table of adapters, so that every law
 * runs on every type. Type-specific promises (the values) are in
 * test_crdt_counter.c, test_crdt_register.c, test_crdt_orset.c and
 * test_crdt_hll.c.
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

typedef struct ops {
    const char *name;
    void *(*make)(uint32_t replica);
    void (*free)(void *);
    int (*copy)(const void *, void **);
    int (*merge)(void *, const void *);
    bool (*equal)(const void *, const void *);
    int (*encode)(const void *, sl_buf *);
    int (*decode)(const void *, size_t, void **);
    void (*op)(void *, rng *);          /* one random local update */
    int (*delta_take)(void *, void **); /* NULL: the type has no delta */
} ops;

static const char *const alphabet[] = {"", "a", "b", "ab", "ba", "zz", "hello", "x"};
static sl_bytes pick(rng *r)
{
    const char *s = alphabet[rng_below(r, 8)];
    return (sl_bytes){s, (uint32_t)strlen(s)};
}

/* G-Counter */
static void *g_make(uint32_t r)
{
    return sl_crdt_gcounter_new(r);
}
static void g_free(void *x)
{
    sl_crdt_gcounter_free(x);
}
static int g_copy(const void *x, void **o)
{
    return sl_crdt_gcounter_copy(x, (sl_crdt_gcounter **)o);
}
static int g_merge(void *a, const void *b)
{
    return sl_crdt_gcounter_merge(a, b);
}
static bool g_equal(const void *a, const void *b)
{
    return sl_crdt_gcounter_equal(a, b);
}
static int g_encode(const void *x, sl_buf *b)
{
    return sl_crdt_gcounter_encode(x, b);
}
static int g_decode(const void *p, size_t n, void **o)
{
    return sl_crdt_gcounter_decode(p, n, 0, (sl_crdt_gcounter **)o);
}
static void g_op(void *x, rng *r)
{
    assert_int_equal(sl_crdt_gcounter_increment(x, rng_below(r, 5)), 0);
}
static int g_delta(void *x, void **o)
{
    return sl_crdt_gcounter_delta_take(x, (sl_crdt_gcounter **)o);
}

/* PN-Counter */
static void *pn_make(uint32_t r)
{
    return sl_crdt_pncounter_new(r);
}
static void pn_free(void *x)
{
    sl_crdt_pncounter_free(x);
}
static int pn_copy(const void *x, void **o)
{
    return sl_crdt_pncounter_copy(x, (sl_crdt_pncounter **)o);
}
static int pn_merge(void *a, const void *b)
{
    return sl_crdt_pncounter_merge(a, b);
}
static bool pn_equal(const void *a, const void *b)
{
    return sl_crdt_pncounter_equal(a, b);
}
static int pn_encode(const void *x, sl_buf *b)
{
    return sl_crdt_pncounter_encode(x, b);
}
static int pn_decode(const void *p, size_t n, void **o)
{
    return sl_crdt_pncounter_decode(p, n, 0, (sl_crdt_pncounter **)o);
}
static void pn_op(void *x, rng *r)
{
    assert_int_equal(sl_crdt_pncounter_add(x, (int64_t)rng_below(r, 11) - 5), 0);
}
static int pn_delta(void *x, void **o)
{
    return sl_crdt_pncounter_delta_take(x, (sl_crdt_pncounter **)o);
}

/* LWW-Register: few timestamps, so that ties between replicas happen */
static void *l_make(uint32_t r)
{
    return sl_crdt_lww_new(r);
}
static void l_free(void *x)
{
    sl_crdt_lww_free(x);
}
static int l_copy(const void *x, void **o)
{
    return sl_crdt_lww_copy(x, (sl_crdt_lww **)o);
}
static int l_merge(void *a, const void *b)
{
    return sl_crdt_lww_merge(a, b);
}
static bool l_equal(const void *a, const void *b)
{
    return sl_crdt_lww_equal(a, b);
}
static int l_encode(const void *x, sl_buf *b)
{
    return sl_crdt_lww_encode(x, b);
}
static int l_decode(const void *p, size_t n, void **o)
{
    return sl_crdt_lww_decode(p, n, 0, (sl_crdt_lww **)o);
}
static void l_op(void *x, rng *r)
{
    int rc = sl_crdt_lww_set(x, (int64_t)rng_below(r, 12) - 2, pick(r));
    assert_true(rc == 0 || rc == 1);
}
static int l_delta(void *x, void **o)
{
    return sl_crdt_lww_delta_take(x, (sl_crdt_lww **)o);
}

/* MV-Register */
static void *m_make(uint32_t r)
{
    return sl_crdt_mvreg_new(r);
}
static void m_free(void *x)
{
    sl_crdt_mvreg_free(x);
}
static int m_copy(const void *x, void **o)
{
    return sl_crdt_mvreg_copy(x, (sl_crdt_mvreg **)o);
}
static int m_merge(void *a, const void *b)
{
    return sl_crdt_mvreg_merge(a, b);
}
static bool m_equal(const void *a, const void *b)
{
    return sl_crdt_mvreg_equal(a, b);
}
static int m_encode(const void *x, sl_buf *b)
{
    return sl_crdt_mvreg_encode(x, b);
}
static int m_decode(const void *p, size_t n, void **o)
{
    return sl_crdt_mvreg_decode(p, n, 0, (sl_crdt_mvreg **)o);
}
static void m_op(void *x, rng *r)
{
    assert_int_equal(sl_crdt_mvreg_set(x, pick(r)), 0);
}
static int m_delta(void *x, void **o)
{
    return sl_crdt_mvreg_delta_take(x, (sl_crdt_mvreg **)o);
}

/* OR-Set: adds and removes over a small alphabet, so they collide */
static void *o_make(uint32_t r)
{
    return sl_crdt_orset_new(r, SL_CRDT_DELTAS);
}
static void o_free(void *x)
{
    sl_crdt_orset_free(x);
}
static int o_copy(const void *x, void **o)
{
    return sl_crdt_orset_copy(x, (sl_crdt_orset **)o);
}
static int o_merge(void *a, const void *b)
{
    return sl_crdt_orset_merge(a, b);
}
static bool o_equal(const void *a, const void *b)
{
    return sl_crdt_orset_equal(a, b);
}
static int o_encode(const void *x, sl_buf *b)
{
    return sl_crdt_orset_encode(x, b);
}
static int o_decode(const void *p, size_t n, void **o)
{
    return sl_crdt_orset_decode(p, n, 0, 0, (sl_crdt_orset **)o);
}
static void o_op(void *x, rng *r)
{
    if (rng_below(r, 3))
        assert_int_equal(sl_crdt_orset_add(x, pick(r)), 0);
    else
        assert_int_equal(sl_crdt_orset_remove(x, pick(r)), 0);
}
static int o_delta(void *x, void **o)
{
    return sl_crdt_orset_delta_take(x, (sl_crdt_orset **)o);
}

/* HyperLogLog (p 6: small, with collisions in registers) */
static void *h_make(uint32_t r)
{
    return sl_crdt_hll_new(6);
}
static void h_free(void *x)
{
    sl_crdt_hll_free(x);
}
static int h_copy(const void *x, void **o)
{
    return sl_crdt_hll_copy(x, (sl_crdt_hll **)o);
}
static int h_merge(void *a, const void *b)
{
    return sl_crdt_hll_merge(a, b);
}
static bool h_equal(const void *a, const void *b)
{
    return sl_crdt_hll_equal(a, b);
}
static int h_encode(const void *x, sl_buf *b)
{
    return sl_crdt_hll_encode(x, b);
}
static int h_decode(const void *p, size_t n, void **o)
{
    return sl_crdt_hll_decode(p, n, (sl_crdt_hll **)o);
}
static void h_op(void *x, rng *r)
{
    uint64_t v = rng_below(r, 5000);
    sl_crdt_hll_add(x, &v, sizeof v);
}

static const ops types[] = {
    {"gcounter", g_make, g_free, g_copy, g_merge, g_equal, g_encode, g_decode, g_op, g_delta},
    {"pncounter", pn_make, pn_free, pn_copy, pn_merge, pn_equal, pn_encode, pn_decode, pn_op,
     pn_delta},
    {"lww", l_make, l_free, l_copy, l_merge, l_equal, l_encode, l_decode, l_op, l_delta},
    {"mvreg", m_make, m_free, m_copy, m_merge, m_equal, m_encode, m_decode, m_op, m_delta},
    {"orset", o_make, o_free, o_copy, o_merge, o_equal, o_encode, o_decode, o_op, o_delta},
    {"hll", h_make, h_free, h_copy, h_merge, h_equal, h_encode, h_decode, h_op, NULL},
};
#define NTYPES (sizeof types / sizeof types[0])
#define SEEDS  2000

static const uint32_t ids[3] = {3, 1, 2};

/* x := a join b, as a new object. */
static void *join2(const ops *t, const void *a, const void *b)
{
    void *x = NULL;
    assert_int_equal(t->copy(a, &x), 0);
    assert_int_equal(t->merge(x, b), 0);
    return x;
}

/* Random states: three replicas that update and sometimes merge. */
static void random_states(const ops *t, rng *r, void *s[3], int steps)
{
    for (int i = 0; i < 3; i++) s[i] = t->make(ids[i]);
    for (int k = 0; k < steps; k++) {
        int i = (int)rng_below(r, 3), j = (int)rng_below(r, 3);
        if (rng_below(r, 5) == 0)
            assert_int_equal(t->merge(s[i], s[j]), 0);
        else
            t->op(s[i], r);
    }
}

static void round_trip(const ops *t, const void *x, uint64_t seed)
{
    sl_buf b = {0}, b2 = {0};
    assert_int_equal(t->encode(x, &b), 0);
    void *y = NULL;
    int rc = t->decode(b.ptr, b.len, &y);
    CHECK_SEED(rc == 0, seed, "%s: decode of an encoding failed: %s", t->name, sl_err_name(rc));
    CHECK_SEED(t->equal(x, y), seed, "%s: decode(encode(x)) != x", t->name);
    assert_int_equal(t->encode(y, &b2), 0);
    CHECK_SEED(b.len == b2.len && !memcmp(b.ptr, b2.ptr, b.len), seed, "%s: re-encoding differs",
               t->name);
    /* equal states encode to equal bytes, and the bytes name the type */
    CHECK_SEED(sl_crdt_peek(b.ptr, b.len) > 0, seed, "%s: peek", t->name);
    t->free(y);
    sl_buf_free(&b);
    sl_buf_free(&b2);
}

static void test_lattice_laws(void **state)
{
    (void)state;
    for (size_t ti = 0; ti < NTYPES; ti++) {
        const ops *t = &types[ti];
        for (uint64_t seed = 1; seed <= SEEDS; seed++) {
            rng r = {seed * 7919 + ti};
            void *s[3];
            random_states(t, &r, s, 5 + (int)(seed % 40));
            void *ab = join2(t, s[0], s[1]), *ba = join2(t, s[1], s[0]);
            CHECK_SEED(t->equal(ab, ba), seed, "%s: merge not commutative", t->name);
            void *ab_c = join2(t, ab, s[2]);
            void *bc = join2(t, s[1], s[2]);
            void *a_bc = join2(t, s[0], bc);
            CHECK_SEED(t->equal(ab_c, a_bc), seed, "%s: merge not associative", t->name);
            void *aa = join2(t, s[0], s[0]);
            CHECK_SEED(t->equal(aa, s[0]), seed, "%s: merge not idempotent", t->name);
            assert_int_equal(t->merge(aa, aa), 0); /* the same object */
            CHECK_SEED(t->equal(aa, s[0]), seed, "%s: self-merge changed the state", t->name);
            void *abb = join2(t, ab, s[1]);
            CHECK_SEED(t->equal(abb, ab), seed, "%s: merging b again changed a|b", t->name);
            /* a|b is an upper bound: a | (a|b) = a|b */
            void *a_ab = join2(t, s[0], ab);
            CHECK_SEED(t->equal(a_ab, ab), seed, "%s: a | (a|b) != a|b", t->name);
            for (int i = 0; i < 3; i++) round_trip(t, s[i], seed);
            round_trip(t, ab_c, seed);
            void *all[] = {ab, ba, ab_c, bc, a_bc, aa, abb, a_ab, s[0], s[1], s[2]};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) t->free(all[i]);
        }
    }
}

static void test_delta_equals_full_merge(void **state)
{
    (void)state;
    for (size_t ti = 0; ti < NTYPES; ti++) {
        const ops *t = &types[ti];
        if (!t->delta_take) continue;
        for (uint64_t seed = 1; seed <= SEEDS; seed++) {
            rng r = {seed * 104729 + ti};
            void *s[3];
            for (int i = 0; i < 3; i++) s[i] = t->make(ids[i]);
            void **d = NULL;
            size_t nd = 0, capd = 0;
            int steps = 10 + (int)(seed % 60);
            for (int k = 0; k <= steps; k++) {
                int i = (int)rng_below(&r, 3), j = (int)rng_below(&r, 3);
                uint32_t what = rng_below(&r, 10);
                bool last = k == steps;
                if (what < 5 && !last) {
                    t->op(s[i], &r);
                } else if (what < 7 || last) {
                    for (int q = last ? 0 : i; q <= (last ? 2 : i); q++) {
                        void *x = NULL;
                        assert_int_equal(t->delta_take(s[q], &x), 0);
                        if (!x) continue;
                        if (nd == capd) d = realloc(d, (capd = capd ? capd * 2 : 16) * sizeof *d);
                        d[nd++] = x;
                    }
                } else if (what < 9 && nd) {
                    /* deliver a random delta (maybe again, maybe late) */
                    assert_int_equal(t->merge(s[j], d[rng_below(&r, (uint32_t)nd)]), 0);
                } else {
                    assert_int_equal(t->merge(s[j], s[i]), 0);
                }
            }
            void *full = t->make(99);
            for (int i = 0; i < 3; i++) assert_int_equal(t->merge(full, s[i]), 0);
            for (int pass = 0; pass < 2; pass++) {
                /* a random order, with about a third delivered twice */
                void *acc = t->make(98);
                size_t *perm = malloc((nd + 1) * sizeof *perm);
                for (size_t k = 0; k < nd; k++) perm[k] = k;
                for (size_t k = nd; k > 1; k--) {
                    size_t x = rng_below(&r, (uint32_t)k), tmp = perm[k - 1];
                    perm[k - 1] = perm[x];
                    perm[x] = tmp;
                }
                for (size_t k = 0; k < nd; k++) {
                    assert_int_equal(t->merge(acc, d[perm[k]]), 0);
                    if (rng_below(&r, 3) == 0)
                        assert_int_equal(t->merge(acc, d[rng_below(&r, (uint32_t)(k + 1))]), 0);
                }
                CHECK_SEED(t->equal(acc, full), seed,
                           "%s: joined deltas (%zu, pass %d) != joined full states", t->name, nd,
                           pass);
                free(perm);
                t->free(acc);
            }
            for (size_t k = 0; k < nd; k++) {
                round_trip(t, d[k], seed);
                t->free(d[k]);
            }
            free(d);
            t->free(full);
            for (int i = 0; i < 3; i++) t->free(s[i]);
        }
    }
}

/* Nothing pending after a take; a take with nothing pending gives NULL. */
static void test_delta_drain(void **state)
{
    (void)state;
    rng r = {42};
    for (size_t ti = 0; ti < NTYPES; ti++) {
        const ops *t = &types[ti];
        if (!t->delta_take) continue;
        void *x = t->make(5), *d = NULL;
        assert_int_equal(t->delta_take(x, &d), 0);
        assert_null(d);
        t->op(x, &r);
        t->op(x, &r);
        t->op(x, &r);
        assert_int_equal(t->delta_take(x, &d), 0);
        /* (an op may change nothing: an increment by 0, a losing write) */
        t->free(d);
        d = (void *)1;
        assert_int_equal(t->delta_take(x, &d), 0);
        assert_null(d);
        t->free(x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lattice_laws),
        cmocka_unit_test(test_delta_equals_full_merge),
        cmocka_unit_test(test_delta_drain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
