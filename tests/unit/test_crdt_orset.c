/*
 * tests/unit/test_crdt_orset.c - what the OR-Set promises (sluice/crdt.h):
 * add wins over a concurrent remove, a remove wins over the adds it saw;
 * after random operations and gossip every replica's membership is that of
 * the textbook OR-Set (every add a unique tag, a remove tombstones the tags
 * it observed, kept for ever) run alongside as the model; and the causal
 * context does not grow with removed elements: once replicas have
 * exchanged everything it is one entry per replica. Seeded; a failure
 * prints its seed.
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

static void test_add_wins(void **state)
{
    (void)state;
    sl_crdt_orset *a = sl_crdt_orset_new(1, 0), *b = sl_crdt_orset_new(2, 0);
    assert_int_equal(sl_crdt_orset_add(a, B("x")), 0);
    assert_int_equal(sl_crdt_orset_merge(b, a), 0);
    assert_true(sl_crdt_orset_contains(b, B("x")));
    /* concurrently: a removes x, b adds x again */
    assert_int_equal(sl_crdt_orset_remove(a, B("x")), 0);
    assert_false(sl_crdt_orset_contains(a, B("x")));
    assert_int_equal(sl_crdt_orset_add(b, B("x")), 0);
    assert_int_equal(sl_crdt_orset_merge(a, b), 0);
    assert_int_equal(sl_crdt_orset_merge(b, a), 0);
    assert_true(sl_crdt_orset_contains(a, B("x")));
    assert_true(sl_crdt_orset_contains(b, B("x")));
    assert_true(sl_crdt_orset_equal(a, b));
    /* a remove that saw every add wins */
    assert_int_equal(sl_crdt_orset_remove(b, B("x")), 0);
    assert_int_equal(sl_crdt_orset_merge(a, b), 0);
    assert_false(sl_crdt_orset_contains(a, B("x")));
    assert_int_equal(sl_crdt_orset_size(a), 0);
    /* removing what is not there is nothing */
    assert_int_equal(sl_crdt_orset_remove(a, B("nope")), 0);
    /* the empty element is an element */
    assert_int_equal(sl_crdt_orset_add(a, B("")), 0);
    assert_true(sl_crdt_orset_contains(a, B("")));
    sl_crdt_orset *d = NULL;
    assert_int_equal(sl_crdt_orset_delta_take(a, &d), SL_EINVAL); /* no SL_CRDT_DELTAS */
    assert_null(sl_crdt_orset_new(1, 0x80));
    sl_crdt_orset_free(a);
    sl_crdt_orset_free(b);
    sl_crdt_orset_free(NULL);
}

/* The textbook OR-Set: tags (replica, n) per add, tombstones for ever. */
#define NE   6
#define MAXT 4096
typedef struct model {
    int ntags;
    struct {
        int elem, rep, n;
        bool dead;
    } tag[MAXT];
} model;

static void m_add(model *m, int e, int rep, int *counter)
{
    assert_true(m->ntags < MAXT);
    m->tag[m->ntags].elem = e;
    m->tag[m->ntags].rep = rep;
    m->tag[m->ntags].n = ++*counter;
    m->tag[m->ntags].dead = false;
    m->ntags++;
}

static void m_remove(model *m, int e)
{
    for (int i = 0; i < m->ntags; i++)
        if (m->tag[i].elem == e) m->tag[i].dead = true;
}

static void m_merge(model *dst, const model *src)
{
    for (int i = 0; i < src->ntags; i++) {
        int j;
        for (j = 0; j < dst->ntags; j++)
            if (dst->tag[j].rep == src->tag[i].rep && dst->tag[j].n == src->tag[i].n) break;
        if (j == dst->ntags) {
            assert_true(dst->ntags < MAXT);
            dst->tag[dst->ntags++] = src->tag[i];
        } else if (src->tag[i].dead) {
            dst->tag[j].dead = true;
        }
    }
}

static bool m_has(const model *m, int e)
{
    for (int i = 0; i < m->ntags; i++)
        if (m->tag[i].elem == e && !m->tag[i].dead) return true;
    return false;
}

static const char *const names[NE] = {"", "a", "b", "apple", "banana", "x\0y"};
static sl_bytes E(int e)
{
    return (sl_bytes){names[e], e == 5 ? 3u : (uint32_t)strlen(names[e])};
}

static void check(const sl_crdt_orset *s, const model *m, uint64_t seed, const char *what)
{
    size_t n = 0;
    for (int e = 0; e < NE; e++) {
        bool has = sl_crdt_orset_contains(s, E(e));
        CHECK_SEED(has == m_has(m, e), seed, "%s: element %d: set says %d, model %d", what, e, has,
                   m_has(m, e));
        n += has;
    }
    CHECK_SEED(sl_crdt_orset_size(s) == n, seed, "%s: size", what);
    size_t cursor = 0, seen = 0;
    sl_bytes x;
    while (sl_crdt_orset_next(s, &cursor, &x)) {
        CHECK_SEED(sl_crdt_orset_contains(s, x), seed, "iteration gave a non-member");
        seen++;
    }
    CHECK_SEED(seen == n, seed, "%s: iteration gave %zu of %zu", what, seen, n);
}

static void test_random_against_model(void **state)
{
    (void)state;
    static model m[3], mall;
    for (uint64_t seed = 1; seed <= 400; seed++) {
        rng r = {seed * 65537};
        sl_crdt_orset *s[3];
        int counter[3] = {0};
        for (int i = 0; i < 3; i++) {
            s[i] = sl_crdt_orset_new((uint32_t)(3 - i), seed & 1 ? SL_CRDT_DELTAS : 0);
            m[i].ntags = 0;
        }
        for (int k = 0; k < 80; k++) {
            int i = (int)rng_below(&r, 3), j = (int)rng_below(&r, 3), e = (int)rng_below(&r, NE);
            uint32_t what = rng_below(&r, 10);
            if (what < 4) {
                assert_int_equal(sl_crdt_orset_add(s[i], E(e)), 0);
                m_add(&m[i], e, 3 - i, &counter[i]);
            } else if (what < 7) {
                assert_int_equal(sl_crdt_orset_remove(s[i], E(e)), 0);
                m_remove(&m[i], e);
            } else if (i != j) {
                assert_int_equal(sl_crdt_orset_merge(s[j], s[i]), 0);
                m_merge(&m[j], &m[i]);
            }
            check(s[i], &m[i], seed, "replica");
            check(s[j], &m[j], seed, "replica");
        }
        sl_crdt_orset *all = sl_crdt_orset_new(9, 0);
        mall.ntags = 0;
        for (int i = 0; i < 3; i++) {
            assert_int_equal(sl_crdt_orset_merge(all, s[i]), 0);
            m_merge(&mall, &m[i]);
        }
        check(all, &mall, seed, "merged");
        /* everything exchanged: the context is a version vector, no cloud */
        CHECK_SEED(sl_crdt_orset_context_size(all) <= 3, seed, "context of %zu entries",
                   sl_crdt_orset_context_size(all));
        sl_crdt_orset_free(all);
        for (int i = 0; i < 3; i++) sl_crdt_orset_free(s[i]);
    }
}

/* 30,000 elements added and removed; deltas delivered out of order. The
 * context ends at one entry per replica and the set is empty. */
static void test_no_tombstone_growth(void **state)
{
    (void)state;
    const uint64_t seed = 12345;
    rng r = {seed};
    sl_crdt_orset *s[3], *sink = sl_crdt_orset_new(100, 0);
    for (int i = 0; i < 3; i++) s[i] = sl_crdt_orset_new((uint32_t)i, SL_CRDT_DELTAS);
    sl_crdt_orset *held[8] = {0};
    size_t max_ctx = 0;
    for (int k = 0; k < 30000; k++) {
        char e[32];
        int i = k % 3;
        snprintf(e, sizeof e, "elem-%d", k);
        assert_int_equal(sl_crdt_orset_add(s[i], B(e)), 0);
        assert_int_equal(sl_crdt_orset_remove(s[i], B(e)), 0);
        sl_crdt_orset *d = NULL;
        assert_int_equal(sl_crdt_orset_delta_take(s[i], &d), 0);
        assert_non_null(d);
        /* hold up to 8 deltas and release them in random order */
        int slot = (int)rng_below(&r, 8);
        if (held[slot]) {
            assert_int_equal(sl_crdt_orset_merge(sink, held[slot]), 0);
            sl_crdt_orset_free(held[slot]);
        }
        held[slot] = d;
        if (sl_crdt_orset_context_size(sink) > max_ctx) max_ctx = sl_crdt_orset_context_size(sink);
    }
    for (int q = 0; q < 8; q++) {
        if (held[q]) assert_int_equal(sl_crdt_orset_merge(sink, held[q]), 0);
        sl_crdt_orset_free(held[q]);
    }
    CHECK_SEED(sl_crdt_orset_size(sink) == 0, seed, "set not empty");
    CHECK_SEED(sl_crdt_orset_context_size(sink) == 3, seed, "context of %zu entries",
               sl_crdt_orset_context_size(sink));
    /* while deltas were held back, the cloud held the dots past the gaps
     * (a held delta can wait dozens of rounds), never the removed elements */
    print_message("context peaked at %zu entries for 30000 removed elements\n", max_ctx);
    CHECK_SEED(max_ctx < 500, seed, "context peaked at %zu entries", max_ctx);
    sl_buf b = {0};
    assert_int_equal(sl_crdt_orset_encode(sink, &b), 0);
    CHECK_SEED(b.len < 100, seed, "encoding of %zu bytes", b.len);
    sl_buf_free(&b);
    sl_crdt_orset_free(sink);
    for (int i = 0; i < 3; i++) sl_crdt_orset_free(s[i]);
}

/* Many elements: the table grows, shrinks by backward shifts, and still finds
 * every member. */
static void test_many_elements(void **state)
{
    (void)state;
    sl_crdt_orset *s = sl_crdt_orset_new(1, 0);
    char e[32];
    for (int k = 0; k < 20000; k++) {
        snprintf(e, sizeof e, "%d", k);
        assert_int_equal(sl_crdt_orset_add(s, B(e)), 0);
    }
    for (int k = 0; k < 20000; k += 3) {
        snprintf(e, sizeof e, "%d", k);
        assert_int_equal(sl_crdt_orset_remove(s, B(e)), 0);
    }
    for (int k = 0; k < 20000; k++) {
        snprintf(e, sizeof e, "%d", k);
        if (sl_crdt_orset_contains(s, B(e)) != (k % 3 != 0)) fail_msg("element %d", k);
    }
    assert_int_equal(sl_crdt_orset_size(s), 20000 - 6667);
    assert_int_equal(sl_crdt_orset_context_size(s), 1);
    sl_crdt_orset *c = NULL;
    assert_int_equal(sl_crdt_orset_copy(s, &c), 0);
    assert_true(sl_crdt_orset_equal(s, c));
    sl_crdt_orset_free(c);
    sl_crdt_orset_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_wins),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_no_tombstone_growth),
        cmocka_unit_test(test_many_elements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
