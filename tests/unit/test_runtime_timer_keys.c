/*
 * tests/unit/test_runtime_timer_keys.c - the timer set (engine/timer.h) with
 * keys of every length it stores differently: empty, short (kept inline in
 * the heap entry and in the set's slot, up to 8 bytes) and long (copied
 * into a block, and into the set's arena), against a model:
 *
 *  - many keys, several times each, set in a scrambled order, some twice,
 *    some deleted (and some of those set again): every live (key, time) pair
 *    fires exactly once, in (time, first setting) order, with its own key
 *    bytes and length, and the popped key stays readable until the next pop;
 *  - one key at several times and several keys at one time are distinct
 *    pairs (the set tells times apart by the pair hash alone);
 *  - freeing the set with timers left frees their keys (ASan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "engine/timer.h"
#include "sluice/state.h"

#define NKEYS  60
#define NTIMES 5

static const uint32_t lens[] = {0, 1, 7, 8, 9, 16, 40};
#define NLENS (sizeof(lens) / sizeof(lens[0]))

typedef struct pair {
    int key;
    int64_t ts;
    int live;       /* set and not deleted */
    uint64_t order; /* when it was (last) set */
} pair;

static uint32_t key_len(int k)
{
    return lens[k % NLENS];
}

/* Key k's bytes: distinct for distinct k of one length (except length 0,
 * which has one key: k % NLENS == 0 keys are all the empty key). */
static void key_bytes(int k, uint8_t *out)
{
    uint32_t n = key_len(k);
    for (uint32_t i = 0; i < n; i++) out[i] = (uint8_t)(k * 31 + i * 7);
    if (n) out[0] = (uint8_t)k; /* k < 256: distinct */
}

static int key_id(int k)
{
    return key_len(k) == 0 ? 0 : k; /* the empty keys are one key */
}

static uint64_t key_hash(int k)
{
    uint8_t b[64];
    key_bytes(k, b);
    return sl_hash(b, key_len(k));
}

static int64_t time_of(int j)
{
    static const int64_t t[NTIMES] = {INT64_MIN, -5, 0, 17, INT64_MAX};
    return t[j];
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void test_keys_against_model(void **state)
{
    sl_timers *t = sli_timers_new();
    assert_non_null(t);
    static pair model[NKEYS * NTIMES];
    int np = 0;
    for (int k = 0; k < NKEYS; k++)
        for (int j = 0; j < NTIMES; j++)
            model[np++] = (pair){.key = k, .ts = time_of(j), .live = 0, .order = 0};
    uint64_t seed = 0x9E3779B97F4A7C15ull, order = 1;
    for (int step = 0; step < 4 * np; step++) {
        pair *p = &model[rnd(&seed) % (uint64_t)np];
        uint8_t b[64];
        key_bytes(p->key, b);
        /* the empty keys are one key: act on its first pair of that time */
        pair *m = p;
        if (key_id(p->key) == 0)
            for (int i = 0; i < np; i++)
                if (key_id(model[i].key) == 0 && model[i].ts == p->ts) {
                    m = &model[i];
                    break;
                }
        if (rnd(&seed) % 4 == 0) {
            int rc = sli_timers_delete(t, p->ts, key_hash(p->key), b, key_len(p->key));
            assert_int_equal(rc, m->live);
            m->live = 0;
        } else {
            assert_int_equal(sli_timers_add(t, p->ts, key_hash(p->key), b, key_len(p->key)), 0);
            if (!m->live) {
                m->live = 1;
                m->order = order++;
            }
        }
    }
    size_t live = 0;
    for (int i = 0; i < np; i++) live += model[i].live;
    assert_int_equal(sli_timers_count(t), live);
    qsort(model, (size_t)np, sizeof(pair), cmp_pair);
    sl_timer tm;
    for (int i = 0; i < np; i++) {
        if (!model[i].live) continue;
        assert_int_equal(sli_timers_pop(t, INT64_MAX, &tm), 1);
        uint8_t b[64];
        key_bytes(model[i].key, b);
        assert_int_equal(tm.ts, model[i].ts);
        assert_int_equal(tm.hash, key_hash(model[i].key));
        assert_int_equal(tm.key_len, key_len(model[i].key));
        if (tm.key_len) assert_memory_equal(tm.key, b, tm.key_len);
    }
    assert_int_equal(sli_timers_pop(t, INT64_MAX, &tm), 0);
    assert_int_equal(sli_timers_count(t), 0);
    sli_timers_free(t);
}

/* One key at many times, many keys at one time; freed with timers left. */
static void test_times_apart(void **state)
{
    sl_timers *t = sli_timers_new();
    assert_non_null(t);
    const char *lk = "a key longer than eight bytes";
    uint64_t h = sl_hash("k", 1), hl = sl_hash(lk, (uint32_t)strlen(lk));
    for (int64_t ts = 0; ts < 1000; ts++) {
        assert_int_equal(sli_timers_add(t, ts, h, "k", 1), 0);
        assert_int_equal(sli_timers_add(t, ts, hl, lk, (uint32_t)strlen(lk)), 0);
        assert_int_equal(sli_timers_add(t, ts, h, "k", 1), 0); /* again: once */
    }
    assert_int_equal(sli_timers_count(t), 2000);
    sl_timer tm;
    for (int64_t ts = 0; ts < 500; ts++) {
        assert_int_equal(sli_timers_pop(t, INT64_MAX, &tm), 1);
        assert_int_equal(tm.ts, ts);
        assert_int_equal(tm.key_len, 1);
        assert_memory_equal(tm.key, "k", 1);
        assert_int_equal(sli_timers_pop(t, INT64_MAX, &tm), 1);
        assert_int_equal(tm.ts, ts);
        assert_int_equal(tm.key_len, strlen(lk));
        assert_memory_equal(tm.key, lk, strlen(lk));
    }
    assert_int_equal(sli_timers_count(t), 1000);
    sli_timers_free(t); /* 1000 left, 500 with a long key: freed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_against_model),
        cmocka_unit_test(test_times_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
