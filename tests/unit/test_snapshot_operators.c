/*
 * test_snapshot_operators.c - snapshot and restore of the engine-owned state
 * that the stateful built-in operators keep outside their keyed tables: the
 * pending event-time timers of an instance (engine/timer.c), which windows
 * and sessions rely on to fire. (The keyed tables themselves are covered by
 * test_state.c and test_runtime_snapshot.c.)
 *
 * What it proves, table-driven over parallelism changes (1->1, 1->4, 4->2,
 * 2->3, 3->1):
 *  - a snapshot taken mid-stream (after part of the timers fired, some
 *    deleted, some deleted and set again) and restored by key-group range
 *    into Q fresh instances fires exactly the timers the uninterrupted
 *    instances still had: the same (ts, key) multiset, each on the instance
 *    that owns its key group, in time order, and - from one source instance
 *    - in exactly the original order (equal times keep their insertion
 *    order);
 *  - restoring on top of timers already set is a union (a pair set twice
 *    fires once);
 *  - a corrupt snapshot (every single flipped bit, every truncation, a wrong
 *    version or reserved field with a valid checksum, an entry count that
 *    does not match) is refused with SL_ECORRUPT and leaves the instance's
 *    timers exactly as they were;
 *  - the snapshot of an empty or absent timer set restores to nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/timer.h"
#include "sluice/sluice.h"

#define NKEYS   97
#define MAX_PAR 4
#define NFIRE   4096

/* Keys of 0..20 bytes: empty, inline (<= 8) and malloc'd (> 8). */
static uint32_t make_key(int k, char out[24])
{
    int n = snprintf(out, 24, "%d", k);
    if (k == 0) return 0; /* the empty key */
    int pad = (k % 3) * 6;
    for (int i = 0; i < pad && n < 23; i++) out[n++] = (char)('a' + i);
    return (uint32_t)n;
}

static uint64_t key_hash(int k)
{
    char b[24];
    uint32_t n = make_key(k, b);
    return sl_hash(b, n);
}

static uint32_t owner(uint64_t hash, int par)
{
    return sl_key_group_owner(sl_key_group(hash), (uint32_t)par);
}

/* Key-group range of instance i of par (contiguous). */
static int kg_range(int i, int par, uint32_t *lo, uint32_t *hi)
{
    *lo = UINT32_MAX;
    *hi = 0;
    for (uint32_t kg = 0; kg < SL_KEY_GROUPS; kg++) {
        if (sl_key_group_owner(kg, (uint32_t)par) != (uint32_t)i) continue;
        if (*lo == UINT32_MAX) *lo = kg;
        *hi = kg;
    }
    return *lo != UINT32_MAX;
}

typedef struct fired {
    int64_t ts;
    int key;
} fired;

static int key_of(const sl_timer *t)
{
    char b[32] = {0};
    assert_true(t->key_len < sizeof(b));
    if (t->key_len) memcpy(b, t->key, t->key_len);
    int k = atoi(b);
    char want[24];
    uint32_t n = make_key(k, want);
    assert_int_equal(n, t->key_len);
    assert_memory_equal(want, b, n);
    assert_true(t->hash == key_hash(k));
    return k;
}

/* Pop everything up to wm into out (may be NULL); returns the count. */
static size_t drain(sl_timers *t, int64_t wm, fired *out, size_t cap)
{
    size_t n = 0;
    sl_timer x;
    int64_t prev = INT64_MIN;
    while (sli_timers_pop(t, wm, &x) == 1) {
        assert_true(x.ts >= prev); /* time order */
        prev = x.ts;
        int k = key_of(&x);
        if (out) {
            assert_true(n < cap);
            out[n] = (fired){x.ts, k};
        }
        n++;
    }
    return n;
}

static int cmp_fired(const void *a, const void *b)
{
    const fired *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return (x->key > y->key) - (x->key < y->key);
}

/* The same history of timers on instance i of par: a few timers per key at
 * repeating times (equal times across keys), some deleted, some deleted and
 * set again, some set twice. */
static void populate(sl_timers *t, int i, int par)
{
    for (int round = 0; round < 3; round++)
        for (int k = 0; k < NKEYS; k++) {
            uint64_t h = key_hash(k);
            if (owner(h, par) != (uint32_t)i) continue;
            char b[24];
            uint32_t n = make_key(k, b);
            int64_t ts = (int64_t)((k * 7 + round * 13) % 40) * 1000 - 5000; /* < 0 too */
            assert_int_equal(sli_timers_add(t, ts, h, b, n), 0);
            assert_int_equal(sli_timers_add(t, ts, h, b, n), 0); /* no-op */
            if (k % 5 == round)
                assert_int_equal(sli_timers_delete(t, ts, h, b, n), 1);
            else if (k % 7 == round) { /* deleted, then set again: fires once */
                assert_int_equal(sli_timers_delete(t, ts, h, b, n), 1);
                assert_int_equal(sli_timers_add(t, ts, h, b, n), 0);
            }
        }
}

#define MID_WM 9000 /* timers up to here fired before the barrier */

/* Snapshot at par1 after firing up to MID_WM, restore at par2, fire the
 * rest: the oracle is the same history drained without interruption. */
static void check_move(int par1, int par2)
{
    static fired want[NFIRE], got[NFIRE], inst_got[NFIRE], order1[NFIRE];
    size_t nwant = 0, ngot = 0, n1 = 0;
    sl_buf snap[MAX_PAR];
    memset(snap, 0, sizeof(snap));

    for (int i = 0; i < par1; i++) {
        sl_timers *orig = sli_timers_new(), *twin = sli_timers_new();
        assert_non_null(orig);
        assert_non_null(twin);
        populate(orig, i, par1);
        populate(twin, i, par1);
        drain(orig, MID_WM, NULL, 0);
        drain(twin, MID_WM, NULL, 0);
        assert_int_equal(sli_timers_snapshot(orig, &snap[i]), 0);
        /* The snapshot does not change the timers: the twin and the
         * original fire the same. */
        size_t a = drain(twin, INT64_MAX, want + nwant, NFIRE - nwant);
        size_t b = drain(orig, INT64_MAX, order1, NFIRE);
        assert_int_equal(a, b);
        assert_memory_equal(want + nwant, order1, a * sizeof(fired));
        n1 = b;
        nwant += a;
        sli_timers_free(orig);
        sli_timers_free(twin);
    }
    assert_true(nwant > NKEYS); /* the test has something to check */

    for (int j = 0; j < par2; j++) {
        uint32_t lo, hi;
        sl_timers *t = sli_timers_new();
        assert_non_null(t);
        if (kg_range(j, par2, &lo, &hi))
            for (int i = 0; i < par1; i++)
                assert_int_equal(sli_timers_restore(t, snap[i].ptr, snap[i].len, lo, hi), 0);
        size_t expect = sli_timers_count(t);
        size_t n = drain(t, INT64_MAX, inst_got, NFIRE);
        assert_int_equal(n, expect);
        for (size_t x = 0; x < n; x++) /* each on the instance that owns it */
            assert_int_equal(owner(key_hash(inst_got[x].key), par2), (uint32_t)j);
        if (par1 == 1) { /* one source: exactly the original order */
            size_t m = 0;
            for (size_t x = 0; x < n1; x++) {
                if (owner(key_hash(order1[x].key), par2) != (uint32_t)j) continue;
                assert_true(m < n);
                assert_int_equal(inst_got[m].ts, order1[x].ts);
                assert_int_equal(inst_got[m].key, order1[x].key);
                m++;
            }
            assert_int_equal(m, n);
        }
        memcpy(got + ngot, inst_got, n * sizeof(fired));
        ngot += n;
        sli_timers_free(t);
    }
    assert_int_equal(ngot, nwant);
    qsort(want, nwant, sizeof(fired), cmp_fired);
    qsort(got, ngot, sizeof(fired), cmp_fired);
    for (size_t x = 0; x < nwant; x++)
        if (want[x].ts != got[x].ts || want[x].key != got[x].key)
            fail_msg("%d -> %d: timer %zu is (%lld, key %d), uninterrupted (%lld, key %d)", par1,
                     par2, x, (long long)got[x].ts, got[x].key, (long long)want[x].ts, want[x].key);
    for (int i = 0; i < MAX_PAR; i++) sl_buf_free(&snap[i]);
}

static void test_timers_rescale(void **state)
{
    (void)state;
    static const int moves[][2] = {{1, 1}, {1, 4}, {4, 2}, {2, 3}, {3, 1}, {4, 4}};
    for (size_t m = 0; m < sizeof(moves) / sizeof(moves[0]); m++)
        check_move(moves[m][0], moves[m][1]);
}

static void test_timers_restore_is_union(void **state)
{
    (void)state;
    sl_timers *a = sli_timers_new(), *b = sli_timers_new();
    sl_buf snap = {0};
    populate(a, 0, 1);
    populate(b, 0, 1);
    size_t n = sli_timers_count(a);
    assert_int_equal(sli_timers_snapshot(a, &snap), 0);
    /* Restored on top of the same timers: nothing new. */
    assert_int_equal(sli_timers_restore(b, snap.ptr, snap.len, 0, SL_KEY_GROUPS - 1), 0);
    assert_int_equal(sli_timers_count(b), n);
    assert_int_equal(drain(b, INT64_MAX, NULL, 0), n);
    /* A restore twice into an empty set: each timer once. */
    sl_timers *c = sli_timers_new();
    assert_int_equal(sli_timers_restore(c, snap.ptr, snap.len, 0, SL_KEY_GROUPS - 1), 0);
    assert_int_equal(sli_timers_restore(c, snap.ptr, snap.len, 0, SL_KEY_GROUPS - 1), 0);
    assert_int_equal(sli_timers_count(c), n);
    assert_int_equal(drain(c, INT64_MAX, NULL, 0), n);
    sl_buf_free(&snap);
    sli_timers_free(a);
    sli_timers_free(b);
    sli_timers_free(c);
}

static void test_timers_empty(void **state)
{
    (void)state;
    sl_buf s1 = {0}, s2 = {0};
    sl_timers *t = sli_timers_new();
    assert_int_equal(sli_timers_snapshot(NULL, &s1), 0);
    assert_int_equal(sli_timers_snapshot(t, &s2), 0);
    assert_int_equal(s1.len, s2.len);
    assert_memory_equal(s1.ptr, s2.ptr, s1.len);
    assert_int_equal(sli_timers_restore(t, s1.ptr, s1.len, 0, SL_KEY_GROUPS - 1), 0);
    assert_int_equal(sli_timers_count(t), 0);
    assert_int_equal(sli_timers_restore(t, NULL, 0, 0, SL_KEY_GROUPS - 1), SL_ECORRUPT);
    assert_int_equal(sli_timers_restore(t, s1.ptr, s1.len, 5, 4), SL_EINVAL);
    sl_buf_free(&s1);
    sl_buf_free(&s2);
    sli_timers_free(t);
}

/* Restore `bad` into a set holding timers: refused, and the set fires
 * exactly what it held. */
static void refused_unchanged(const uint8_t *bad, size_t len, const char *what, size_t at)
{
    sl_timers *t = sli_timers_new();
    char b[24];
    uint32_t n = make_key(5, b);
    assert_int_equal(sli_timers_add(t, 7, key_hash(5), b, n), 0);
    assert_int_equal(sli_timers_add(t, 3, key_hash(5), b, n), 0);
    int rc = sli_timers_restore(t, bad, len, 0, SL_KEY_GROUPS - 1);
    if (rc != SL_ECORRUPT)
        fail_msg("%s at %zu: restore returned %d (%s), not SL_ECORRUPT", what, at, rc,
                 sl_strerror(rc));
    assert_int_equal(sli_timers_count(t), 2);
    fired f[4];
    assert_int_equal(drain(t, INT64_MAX, f, 4), 2);
    assert_int_equal(f[0].ts, 3);
    assert_int_equal(f[1].ts, 7);
    sli_timers_free(t);
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Rewrite the trailer so that only the structure is wrong. */
static void reseal(uint8_t *d, size_t len)
{
    put_le(d + len - 8, sl_hash(d, len - 8), 8);
}

static void test_timers_corrupt_refused(void **state)
{
    (void)state;
    sl_timers *a = sli_timers_new();
    sl_buf snap = {0};
    populate(a, 0, 2);
    assert_int_equal(sli_timers_snapshot(a, &snap), 0);
    assert_true(snap.len > 100);
    uint8_t *d = malloc(snap.len);
    assert_non_null(d);
    for (size_t i = 0; i < snap.len; i++) /* every byte, one bit each */
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(d, snap.ptr, snap.len);
            d[i] ^= (uint8_t)(1u << bit);
            refused_unchanged(d, snap.len, "flipped bit", i);
        }
    for (size_t l = 0; l < snap.len; l++) refused_unchanged(snap.ptr, l, "truncated", l);
    /* Valid checksum, wrong structure. */
    static const struct {
        size_t off;
        int width;
        uint64_t v;
        const char *what;
    } bad[] = {{4, 2, 2, "version 2"},
               {6, 2, 1, "reserved field"},
               {8, 8, 0, "too few entries"},
               {8, 8, 100000, "too many entries"},
               {16, 8, (uint64_t)INT64_MAX, "times out of order"},
               {32, 4, 1000, "key length past the end"}};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        memcpy(d, snap.ptr, snap.len);
        put_le(d + bad[k].off, bad[k].v, bad[k].width);
        reseal(d, snap.len);
        refused_unchanged(d, snap.len, bad[k].what, bad[k].off);
    }
    /* The unchanged copy restores. */
    sl_timers *t = sli_timers_new();
    assert_int_equal(sli_timers_restore(t, snap.ptr, snap.len, 0, SL_KEY_GROUPS - 1), 0);
    assert_int_equal(sli_timers_count(t), sli_timers_count(a));
    free(d);
    sl_buf_free(&snap);
    sli_timers_free(a);
    sli_timers_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_rescale),
        cmocka_unit_test(test_timers_restore_is_union),
        cmocka_unit_test(test_timers_empty),
        cmocka_unit_test(test_timers_corrupt_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
