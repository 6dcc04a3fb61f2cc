/*
 * tests/unit/test_state.c - keyed state (engine/state.c).
 *
 * The hash is an argument of every call, so the tests choose it: the real
 * xxHash, hashes whose low 32 bits are all equal (every key has the same home
 * slot), hashes whose low bits are all ones (home = last slot, clusters wrap
 * around), and a handful of identical hashes for many different keys.
 * Covered: get/find/remove against a brute-force reference over random
 * operations (several seeds and hash modes), explicit collisions, growth,
 * long-key arena reuse, iteration (every entry exactly once, removal during
 * iteration), clear, snapshot -> restore round trips for several value sizes,
 * key-group range restores that split a table into two disjoint halves, and
 * rejected inputs (every truncation, every flipped byte, structurally wrong
 * snapshots with a valid checksum, wrong value size) leaving the table as it
 * was. No assertion depends on timing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <xxhash.h>

#include "sluice/state.h"

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* --- keys and hash modes ------------------------------------------------- */

enum hash_mode { H_REAL, H_SAME_LOW, H_WRAP, H_FEW };
static const char *const mode_name[] = {"real", "same-low-bits", "wrap", "few-identical"};

typedef struct key {
    char b[32];
    uint32_t len;
} key;

/* Key k: decimal digits of k, then k % 13 'x' characters (distinct for
 * distinct k, 1..17 bytes); k == UINT32_MAX gives the empty key. */
static key make_key(uint32_t k)
{
    key r;
    memset(&r, 0, sizeof(r));
    if (k == UINT32_MAX) return r;
    r.len = (uint32_t)snprintf(r.b, sizeof(r.b), "%u", k);
    for (uint32_t i = 0; i < k % 13; i++) r.b[r.len++] = 'x';
    return r;
}

static uint64_t key_hash(const key *k, enum hash_mode m)
{
    uint64_t h = sl_hash(k->b, k->len);
    switch (m) {
    case H_REAL: return h;
    case H_SAME_LOW: return (h & 0xFFFFFFFF00000000ull) | 0x5;
    case H_WRAP: return h | 0xFFFFFFFFull;
    case H_FEW: return 0x9E3779B97F4A7C15ull * (1 + (h % 5));
    }
    return h;
}

/* --- basics -------------------------------------------------------------- */

static void test_hash_is_xxh3(void **state)
{
    static const char *const inputs[] = {"", "a", "campaign-42", "0123456789abcdef0123456789"};
    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
        assert_true(sl_hash(inputs[i], strlen(inputs[i])) ==
                    XXH3_64bits(inputs[i], strlen(inputs[i])));
    for (uint64_t h = 0; h < 100000; h += 997)
        assert_true(sl_key_group(h * 0x9E3779B97F4A7C15ull) < SL_KEY_GROUPS);
    assert_int_equal(sl_key_group(0), 0);
    assert_int_equal(sl_key_group(UINT64_MAX), SL_KEY_GROUPS - 1);
}

static void test_basic_ops(void **state)
{
    static const struct {
        const char *key;
        uint32_t len;
    } keys[] = {
        {"", 0},          {"a", 1},      {"abcdefg", 7},  {"abcdefgh", 8},
        {"abcdefghi", 9}, {"\0\0\0", 3}, {"\0\0\0\0", 4}, {"a longer key, 32 bytes long.....", 32}};
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    sl_state *s = sl_state_new(16);
    (void)state;

    assert_non_null(s);
    assert_int_equal(sl_state_value_size(s), 16);
    assert_int_equal(sl_state_count(s), 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t h = sl_hash(keys[i].key, keys[i].len);
        int created = -1;
        uint8_t *v = sl_state_get(s, h, keys[i].key, keys[i].len, &created);
        assert_non_null(v);
        assert_int_equal(created, 1);
        for (int b = 0; b < 16; b++) assert_int_equal(v[b], 0); /* zero-filled */
        memset(v, (int)(i + 1), 16);
        assert_ptr_equal(sl_state_get(s, h, keys[i].key, keys[i].len, &created), v);
        assert_int_equal(created, 0);
        assert_ptr_equal(sl_state_get(s, h, keys[i].key, keys[i].len, NULL), v);
        assert_ptr_equal(sl_state_find(s, h, keys[i].key, keys[i].len), v);
        assert_int_equal(sl_state_count(s), i + 1);
    }
    /* "\0\0\0" and "\0\0\0\0" differ only by length (both inline). */
    for (size_t i = 0; i < n; i++) {
        uint64_t h = sl_hash(keys[i].key, keys[i].len);
        uint8_t *v = sl_state_find(s, h, keys[i].key, keys[i].len);
        assert_non_null(v);
        assert_int_equal(v[0], i + 1);
        assert_int_equal(v[15], i + 1);
    }
    /* Absent: right hash wrong key, wrong hash right key. */
    assert_null(sl_state_find(s, sl_hash("a", 1), "b", 1));
    assert_null(sl_state_find(s, sl_hash("a", 1) ^ 1, "a", 1));
    assert_int_equal(sl_state_remove(s, sl_hash("zz", 2), "zz", 2), 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t h = sl_hash(keys[i].key, keys[i].len);
        assert_int_equal(sl_state_remove(s, h, keys[i].key, keys[i].len), 1);
        assert_int_equal(sl_state_remove(s, h, keys[i].key, keys[i].len), 0);
        assert_null(sl_state_find(s, h, keys[i].key, keys[i].len));
        assert_int_equal(sl_state_count(s), n - i - 1);
    }
    sl_state_free(s);
    sl_state_free(NULL);
}

static void test_value_size_zero_and_clear(void **state)
{
    sl_state *s = sl_state_new(0);
    size_t it = 0;
    sl_state_entry e;
    (void)state;
    assert_non_null(s);
    for (uint32_t k = 0; k < 1000; k++) {
        key kk = make_key(k);
        int created = 0;
        assert_non_null(sl_state_get(s, key_hash(&kk, H_REAL), kk.b, kk.len, &created));
        assert_int_equal(created, 1);
    }
    assert_int_equal(sl_state_count(s), 1000);
    sl_state_clear(s);
    assert_int_equal(sl_state_count(s), 0);
    assert_int_equal(sl_state_next(s, &it, &e), 0);
    for (uint32_t k = 0; k < 1000; k++) {
        key kk = make_key(k);
        assert_null(sl_state_find(s, key_hash(&kk, H_REAL), kk.b, kk.len));
    }
    /* Usable after clear. */
    key kk = make_key(7);
    assert_non_null(sl_state_get(s, key_hash(&kk, H_REAL), kk.b, kk.len, NULL));
    assert_int_equal(sl_state_count(s), 1);
    sl_state_free(s);
}

/* --- random operations against a reference -------------------------------- */

typedef struct ref {
    uint8_t *present;
    uint64_t *value;
    size_t count;
} ref;

/* Iterate the table and check it holds exactly the reference's entries. */
static void check_against_ref(sl_state *s, const ref *r, uint32_t n_keys, enum hash_mode m)
{
    uint8_t *seen = calloc(n_keys + 1, 1);
    size_t it = 0, visited = 0;
    sl_state_entry e;
    assert_non_null(seen);
    assert_int_equal(sl_state_count(s), r->count);
    while (sl_state_next(s, &it, &e)) {
        /* Recover k from the key bytes. */
        uint32_t k;
        if (e.key_len == 0) {
            k = n_keys;
        } else {
            char buf[32];
            assert_true(e.key_len < sizeof(buf));
            memcpy(buf, e.key, e.key_len);
            buf[e.key_len] = 0;
            k = (uint32_t)strtoul(buf, NULL, 10);
        }
        assert_true(k <= n_keys);
        assert_int_equal(seen[k], 0);
        seen[k] = 1;
        assert_true(r->present[k]);
        key kk = make_key(k == n_keys ? UINT32_MAX : k);
        assert_int_equal(e.key_len, kk.len);
        assert_memory_equal(e.key, kk.b, kk.len);
        assert_true(e.hash == key_hash(&kk, m));
        assert_true(*(uint64_t *)e.value == r->value[k]);
        visited++;
    }
    assert_int_equal(visited, r->count);
    free(seen);
}

static void random_ops(enum hash_mode m, uint32_t n_keys, int n_ops, uint64_t seed)
{
    ref r;
    sl_state *s = sl_state_new(sizeof(uint64_t));
    uint64_t rs = seed;
    key *keys = calloc(n_keys + 1, sizeof(key));
    uint64_t *hashes = calloc(n_keys + 1, sizeof(uint64_t));

    assert_non_null(s);
    assert_non_null(keys);
    assert_non_null(hashes);
    r.present = calloc(n_keys + 1, 1);
    r.value = calloc(n_keys + 1, sizeof(uint64_t));
    r.count = 0;
    assert_non_null(r.present);
    assert_non_null(r.value);
    for (uint32_t k = 0; k <= n_keys; k++) {
        keys[k] = make_key(k == n_keys ? UINT32_MAX : k); /* k == n_keys: the empty key */
        hashes[k] = key_hash(&keys[k], m);
    }

    for (int op = 0; op < n_ops; op++) {
        uint32_t k = (uint32_t)(rng_next(&rs) % (n_keys + 1));
        uint64_t r3 = rng_next(&rs) % 100;
        const key *kk = &keys[k];
        if (r3 < 50) {
            int created = -1;
            uint64_t *v = sl_state_get(s, hashes[k], kk->b, kk->len, &created);
            assert_non_null(v);
            assert_int_equal(created, !r.present[k]);
            if (!r.present[k]) {
                assert_true(*v == 0);
                r.present[k] = 1;
                r.count++;
            }
            assert_true(*v == r.value[k]);
            *v = r.value[k] = r.value[k] * 31 + op + 1;
        } else if (r3 < 75) {
            uint64_t *v = sl_state_find(s, hashes[k], kk->b, kk->len);
            if (r.present[k]) {
                assert_non_null(v);
                assert_true(*v == r.value[k]);
            } else {
                assert_null(v);
            }
        } else if (r3 < 99) {
            assert_int_equal(sl_state_remove(s, hashes[k], kk->b, kk->len), r.present[k]);
            if (r.present[k]) {
                r.present[k] = 0;
                r.value[k] = 0;
                r.count--;
            }
        } else if (rng_next(&rs) % 20 == 0) {
            sl_state_clear(s);
            memset(r.present, 0, n_keys + 1);
            memset(r.value, 0, (n_keys + 1) * sizeof(uint64_t));
            r.count = 0;
        }
        assert_int_equal(sl_state_count(s), r.count);
        if (op % 10000 == 9999) check_against_ref(s, &r, n_keys, m);
    }
    check_against_ref(s, &r, n_keys, m);
    sl_state_free(s);
    free(r.present);
    free(r.value);
    free(keys);
    free(hashes);
}

static void test_random_vs_reference(void **state)
{
    static const struct {
        enum hash_mode mode;
        uint32_t n_keys;
        int ops;
    } cases[] = {
        {H_REAL, 3000, 100000}, {H_REAL, 50, 30000}, {H_SAME_LOW, 300, 30000},
        {H_WRAP, 300, 30000},   {H_FEW, 200, 20000},
    };
    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
        for (uint64_t seed = 1; seed <= 3; seed++)
            random_ops(cases[c].mode, cases[c].n_keys, cases[c].ops, seed * 1000003 + c);
}

/* --- collisions and growth ------------------------------------------------ */

static void test_identical_hash_different_keys(void **state)
{
    const uint64_t h = 0x0123456789ABCDEFull;
    static const struct {
        const char *key;
        uint32_t len;
    } keys[] = {{"", 0},
                {"k", 1},
                {"kk", 2},
                {"12345678", 8},
                {"123456789", 9},
                {"123456780", 9},
                {"a much longer key than eight", 28}};
    const size_t n = sizeof(keys) / sizeof(keys[0]);
    sl_state *s = sl_state_new(4);
    (void)state;
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        uint32_t *v = sl_state_get(s, h, keys[i].key, keys[i].len, NULL);
        assert_non_null(v);
        *v = (uint32_t)i + 100;
    }
    assert_int_equal(sl_state_count(s), n);
    for (size_t i = 0; i < n; i++) {
        uint32_t *v = sl_state_find(s, h, keys[i].key, keys[i].len);
        assert_non_null(v);
        assert_int_equal(*v, i + 100);
    }
    /* Remove each in turn; the others stay reachable (backward shift). */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(sl_state_remove(s, h, keys[i].key, keys[i].len), 1);
        for (size_t j = 0; j < n; j++) {
            uint32_t *v = sl_state_find(s, h, keys[j].key, keys[j].len);
            if (j <= i) {
                assert_null(v);
            } else {
                assert_non_null(v);
                assert_int_equal(*v, j + 100);
            }
        }
    }
    sl_state_free(s);
}

static void test_equal_low_bits_and_growth(void **state)
{
    /* Every key's home slot is the same (low 32 bits equal); insert enough to
     * grow several times, then remove in a scrambled order. */
    const uint32_t n = 2000;
    sl_state *s = sl_state_new(8);
    uint64_t rs = 7;
    uint32_t *order = malloc(n * sizeof(*order));
    (void)state;
    assert_non_null(s);
    assert_non_null(order);
    for (uint32_t k = 0; k < n; k++) {
        uint64_t h = ((uint64_t)k << 32) | 0x1234u;
        uint64_t *v = sl_state_get(s, h, &k, sizeof(k), NULL);
        assert_non_null(v);
        *v = k * 3ull;
        order[k] = k;
    }
    for (uint32_t k = 0; k < n; k++) {
        uint64_t *v = sl_state_find(s, ((uint64_t)k << 32) | 0x1234u, &k, sizeof(k));
        assert_non_null(v);
        assert_true(*v == k * 3ull);
    }
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next(&rs) % (i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = order[i];
        assert_int_equal(sl_state_remove(s, ((uint64_t)k << 32) | 0x1234u, &k, sizeof(k)), 1);
        if (i % 97 == 0)
            for (uint32_t j = i + 1; j < n; j++) {
                uint32_t kj = order[j];
                uint64_t *v = sl_state_find(s, ((uint64_t)kj << 32) | 0x1234u, &kj, sizeof(kj));
                assert_non_null(v);
                assert_true(*v == kj * 3ull);
            }
    }
    assert_int_equal(sl_state_count(s), 0);
    free(order);
    sl_state_free(s);
}

static void test_growth_keeps_entries(void **state)
{
    const uint32_t n = 200000;
    sl_state *s = sl_state_new(12);
    (void)state;
    assert_non_null(s);
    for (uint32_t k = 0; k < n; k++) {
        key kk = make_key(k);
        uint32_t *v = sl_state_get(s, key_hash(&kk, H_REAL), kk.b, kk.len, NULL);
        assert_non_null(v);
        v[0] = k;
        v[2] = ~k;
    }
    assert_int_equal(sl_state_count(s), n);
    for (uint32_t k = 0; k < n; k++) {
        key kk = make_key(k);
        uint32_t *v = sl_state_find(s, key_hash(&kk, H_REAL), kk.b, kk.len);
        assert_non_null(v);
        assert_int_equal(v[0], k);
        assert_int_equal(v[1], 0);
        assert_int_equal(v[2], ~k);
    }
    sl_state_free(s);
}

static void test_long_key_churn(void **state)
{
    /* Insert and remove long keys over and over: the arena's garbage is
     * reclaimed and every live key stays correct. */
    sl_state *s = sl_state_new(8);
    char kb[64];
    (void)state;
    assert_non_null(s);
    for (uint32_t round = 0; round < 50; round++) {
        for (uint32_t k = 0; k < 1000; k++) {
            int len = snprintf(kb, sizeof(kb), "round-%u-key-%u-padding-padding", round, k);
            uint64_t *v = sl_state_get(s, sl_hash(kb, (size_t)len), kb, (uint32_t)len, NULL);
            assert_non_null(v);
            *v = round * 100000ull + k;
        }
        /* Remove the previous round's keys (and half of this round's). */
        for (uint32_t k = 0; k < 1000; k++) {
            int len;
            if (round > 0) {
                len = snprintf(kb, sizeof(kb), "round-%u-key-%u-padding-padding", round - 1, k);
                if (k % 2 == 1)
                    assert_int_equal(
                        sl_state_remove(s, sl_hash(kb, (size_t)len), kb, (uint32_t)len), 1);
            }
            if (k % 2 == 0) {
                len = snprintf(kb, sizeof(kb), "round-%u-key-%u-padding-padding", round, k);
                assert_int_equal(sl_state_remove(s, sl_hash(kb, (size_t)len), kb, (uint32_t)len),
                                 1);
            }
        }
        assert_int_equal(sl_state_count(s), 500);
        for (uint32_t k = 1; k < 1000; k += 2) {
            int len = snprintf(kb, sizeof(kb), "round-%u-key-%u-padding-padding", round, k);
            uint64_t *v = sl_state_find(s, sl_hash(kb, (size_t)len), kb, (uint32_t)len);
            assert_non_null(v);
            assert_true(*v == round * 100000ull + k);
        }
    }
    sl_state_free(s);
}

/* --- iteration ------------------------------------------------------------ */

static sl_state *fill(enum hash_mode m, uint32_t n, uint32_t value_size)
{
    sl_state *s = sl_state_new(value_size);
    assert_non_null(s);
    for (uint32_t k = 0; k < n; k++) {
        key kk = make_key(k);
        uint8_t *v = sl_state_get(s, key_hash(&kk, m), kk.b, kk.len, NULL);
        assert_non_null(v);
        if (value_size >= 4) memcpy(v, &k, 4);
        for (uint32_t b = 4; b < value_size; b++) v[b] = (uint8_t)(k + b);
    }
    return s;
}

static uint32_t key_index(const sl_state_entry *e)
{
    char buf[32];
    assert_true(e->key_len > 0 && e->key_len < sizeof(buf));
    memcpy(buf, e->key, e->key_len);
    buf[e->key_len] = 0;
    return (uint32_t)strtoul(buf, NULL, 10);
}

static void test_iteration_with_removal(void **state)
{
    /* remove_every: 0 = remove nothing, 1 = remove every entry, 2 = every
     * other, 3 = every third; run in every hash mode (wrap-around clusters,
     * one giant cluster, identical hashes). */
    static const uint32_t sizes[] = {1, 11, 12, 13, 500, 5000};
    (void)state;
    for (int m = H_REAL; m <= H_FEW; m++) {
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
            uint32_t n = sizes[si];
            if (m != H_REAL && n > 500) continue;
            for (uint32_t every = 0; every <= 3; every++) {
                sl_state *s = fill((enum hash_mode)m, n, 8);
                uint8_t *seen = calloc(n, 1), *removed = calloc(n, 1);
                size_t it = 0, visits = 0, n_removed = 0;
                sl_state_entry e;
                assert_non_null(seen);
                assert_non_null(removed);
                while (sl_state_next(s, &it, &e)) {
                    uint32_t k = key_index(&e);
                    assert_true(k < n);
                    if (seen[k])
                        fail_msg("mode %s n %u every %u: key %u visited twice", mode_name[m], n,
                                 every, k);
                    seen[k] = 1;
                    assert_true(*(uint32_t *)e.value == k);
                    visits++;
                    if (every && visits % every == 0) {
                        assert_int_equal(sl_state_remove(s, e.hash, e.key, e.key_len), 1);
                        removed[k] = 1;
                        n_removed++;
                    }
                }
                assert_int_equal(visits, n);
                assert_int_equal(sl_state_count(s), n - n_removed);
                /* A finished iterator stays finished. */
                assert_int_equal(sl_state_next(s, &it, &e), 0);
                for (uint32_t k = 0; k < n; k++) {
                    key kk = make_key(k);
                    uint32_t *v = sl_state_find(s, key_hash(&kk, (enum hash_mode)m), kk.b, kk.len);
                    if (removed[k]) {
                        assert_null(v);
                    } else {
                        assert_non_null(v);
                        assert_int_equal(*v, k);
                    }
                }
                free(seen);
                free(removed);
                sl_state_free(s);
            }
        }
    }
}

/* --- snapshots ------------------------------------------------------------ */

/* Same entries, same values (by iterating a and finding in b). */
static void assert_same_table(sl_state *a, sl_state *b)
{
    size_t it = 0;
    sl_state_entry e;
    assert_int_equal(sl_state_count(a), sl_state_count(b));
    while (sl_state_next(a, &it, &e)) {
        void *v = sl_state_find(b, e.hash, e.key, e.key_len);
        assert_non_null(v);
        if (sl_state_value_size(a)) assert_memory_equal(v, e.value, sl_state_value_size(a));
    }
}

static void test_snapshot_round_trip(void **state)
{
    static const struct {
        uint32_t value_size, n;
        enum hash_mode mode;
    } cases[] = {{0, 100, H_REAL},  {4, 0, H_REAL},     {4, 1, H_REAL},       {8, 3000, H_REAL},
                 {24, 777, H_REAL}, {100, 200, H_REAL}, {8, 300, H_SAME_LOW}, {8, 100, H_FEW}};
    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        sl_state *a = fill(cases[c].mode, cases[c].n, cases[c].value_size);
        sl_state *b = sl_state_new(cases[c].value_size);
        sl_buf buf = {0};
        assert_non_null(b);
        /* The snapshot appends to what the buffer holds. */
        assert_int_equal(sl_buf_append(&buf, "prefix", 6), 0);
        assert_int_equal(sl_state_snapshot(a, &buf), 0);
        assert_memory_equal(buf.ptr, "prefix", 6);
        assert_int_equal(sl_state_restore(b, buf.ptr + 6, buf.len - 6, 0, SL_KEY_GROUPS - 1), 0);
        assert_same_table(a, b);
        assert_same_table(b, a);
        /* Restoring again over the same entries changes nothing. */
        assert_int_equal(sl_state_restore(b, buf.ptr + 6, buf.len - 6, 0, UINT32_MAX), 0);
        assert_same_table(a, b);
        /* A snapshot of the restored table restores the same entries. */
        sl_buf buf2 = {0};
        assert_int_equal(sl_state_snapshot(b, &buf2), 0);
        assert_int_equal(buf2.len, buf.len - 6);
        sl_state *c2 = sl_state_new(cases[c].value_size);
        assert_int_equal(sl_state_restore(c2, buf2.ptr, buf2.len, 0, SL_KEY_GROUPS - 1), 0);
        assert_same_table(a, c2);
        sl_state_free(c2);
        sl_buf_free(&buf2);
        sl_buf_free(&buf);
        sl_state_free(a);
        sl_state_free(b);
    }
}

static void test_restore_overwrites_and_merges(void **state)
{
    sl_state *a = sl_state_new(8), *b = sl_state_new(8);
    sl_buf buf = {0};
    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    for (uint64_t k = 0; k < 100; k++)
        *(uint64_t *)sl_state_get(a, sl_hash(&k, 8), &k, 8, NULL) = k;
    for (uint64_t k = 50; k < 150; k++)
        *(uint64_t *)sl_state_get(b, sl_hash(&k, 8), &k, 8, NULL) = 1000 + k;
    assert_int_equal(sl_state_snapshot(a, &buf), 0);
    assert_int_equal(sl_state_restore(b, buf.ptr, buf.len, 0, SL_KEY_GROUPS - 1), 0);
    assert_int_equal(sl_state_count(b), 150);
    for (uint64_t k = 0; k < 150; k++) {
        uint64_t *v = sl_state_find(b, sl_hash(&k, 8), &k, 8);
        assert_non_null(v);
        assert_true(*v == (k < 100 ? k : 1000 + k));
    }
    sl_buf_free(&buf);
    sl_state_free(a);
    sl_state_free(b);
}

static void test_restore_key_group_split(void **state)
{
    static const uint32_t splits[] = {1, 100, 512, 1000, 1023};
    sl_state *all = fill(H_REAL, 20000, 8);
    sl_buf buf = {0};
    (void)state;
    assert_int_equal(sl_state_snapshot(all, &buf), 0);
    for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
        uint32_t cut = splits[i];
        sl_state *lo = sl_state_new(8), *hi = sl_state_new(8);
        size_t it = 0;
        sl_state_entry e;
        assert_int_equal(sl_state_restore(lo, buf.ptr, buf.len, 0, cut - 1), 0);
        assert_int_equal(sl_state_restore(hi, buf.ptr, buf.len, cut, SL_KEY_GROUPS - 1), 0);
        /* Disjoint, and each holds only its own key groups. */
        assert_int_equal(sl_state_count(lo) + sl_state_count(hi), sl_state_count(all));
        while (sl_state_next(lo, &it, &e)) {
            assert_true(sl_key_group(e.hash) < cut);
            assert_null(sl_state_find(hi, e.hash, e.key, e.key_len));
        }
        it = 0;
        while (sl_state_next(hi, &it, &e)) assert_true(sl_key_group(e.hash) >= cut);
        /* Union = original. */
        it = 0;
        while (sl_state_next(all, &it, &e)) {
            void *v = sl_state_find(sl_key_group(e.hash) < cut ? lo : hi, e.hash, e.key, e.key_len);
            assert_non_null(v);
            assert_memory_equal(v, e.value, 8);
        }
        sl_state_free(lo);
        sl_state_free(hi);
    }
    /* Three-way split by instance owner, as a rescale to parallelism 3 does. */
    sl_state *part[3];
    size_t total = 0;
    for (uint32_t p = 0; p < 3; p++) {
        uint32_t lo_kg = SL_KEY_GROUPS, hi_kg = 0;
        for (uint32_t kg = 0; kg < SL_KEY_GROUPS; kg++)
            if (sl_key_group_owner(kg, 3) == p) {
                if (kg < lo_kg) lo_kg = kg;
                hi_kg = kg;
            }
        part[p] = sl_state_new(8);
        assert_int_equal(sl_state_restore(part[p], buf.ptr, buf.len, lo_kg, hi_kg), 0);
        total += sl_state_count(part[p]);
    }
    assert_int_equal(total, sl_state_count(all));
    {
        size_t it = 0;
        sl_state_entry e;
        while (sl_state_next(all, &it, &e))
            assert_non_null(sl_state_find(part[sl_key_group_owner(sl_key_group(e.hash), 3)], e.hash,
                                          e.key, e.key_len));
    }
    for (int p = 0; p < 3; p++) sl_state_free(part[p]);
    sl_buf_free(&buf);
    sl_state_free(all);
}

/* Fix the trailing checksum after editing a snapshot, so that the structural
 * checks (not the checksum) are what reject it. */
static void reseal(uint8_t *p, size_t len)
{
    uint64_t h = XXH3_64bits(p, len - 8);
    for (int i = 0; i < 8; i++) p[len - 8 + i] = (uint8_t)(h >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_restore_rejects_corrupt(void **state)
{
    sl_state *src = sl_state_new(8), *dst = sl_state_new(8), *before = sl_state_new(8);
    sl_buf buf = {0};
    uint8_t *copy;
    (void)state;
    assert_non_null(src);
    assert_non_null(dst);
    /* Two keys in one key group (same high bits) and one in another, a short
     * and a long key: layout known below. */
    const uint64_t h1 = 0x0000000100000001ull, h2 = 0x0000000200000002ull,
                   h3 = 0xF000000000000003ull;
    *(uint64_t *)sl_state_get(src, h1, "a", 1, NULL) = 11;
    *(uint64_t *)sl_state_get(src, h2, "b-long-key", 10, NULL) = 22;
    *(uint64_t *)sl_state_get(src, h3, "c", 1, NULL) = 33;
    assert_int_equal(sl_key_group(h1), 0);
    assert_int_equal(sl_key_group(h2), 0);
    assert_int_equal(sl_key_group(h3), 960);
    assert_int_equal(sl_state_snapshot(src, &buf), 0);
    /* header 24 + section(16 + (12+1+8) + (12+10+8)) + section(16 + 12+1+8) + 8 */
    assert_int_equal(buf.len, 24 + 16 + 21 + 30 + 16 + 21 + 8);

    /* The destination already holds an entry; failures must keep it as is. */
    *(uint64_t *)sl_state_get(dst, 42, "keep", 4, NULL) = 4242;
    *(uint64_t *)sl_state_get(before, 42, "keep", 4, NULL) = 4242;

    /* Every truncation. */
    for (size_t len = 0; len < buf.len; len++)
        assert_int_equal(sl_state_restore(dst, buf.ptr, len, 0, SL_KEY_GROUPS - 1), SL_ECORRUPT);
    /* Trailing garbage. */
    copy = malloc(buf.len + 1);
    assert_non_null(copy);
    memcpy(copy, buf.ptr, buf.len);
    copy[buf.len] = 0;
    assert_int_equal(sl_state_restore(dst, copy, buf.len + 1, 0, SL_KEY_GROUPS - 1), SL_ECORRUPT);
    /* Every single flipped bit in every byte position (one bit per byte). */
    for (size_t i = 0; i < buf.len; i++) {
        memcpy(copy, buf.ptr, buf.len);
        copy[i] ^= (uint8_t)(1u << (i % 8));
        assert_int_equal(sl_state_restore(dst, copy, buf.len, 0, SL_KEY_GROUPS - 1), SL_ECORRUPT);
    }
    /* Structural errors behind a valid checksum. Offsets: section 0 header at
     * 24, its first entry at 40 (hash 40, key_len 48), second entry at 61;
     * section 1 header at 91; trailer at len - 8. */
    static const struct {
        const char *what;
        size_t off;
        int width; /* 4 or 8 */
        uint64_t value;
    } edits[] = {
        {"bad version", 4, 4, 2 | (0u << 16)},
        {"reserved set", 4, 4, 1u | (1u << 16)},
        {"group count too high", 12, 4, 3},
        {"group count too low", 12, 4, 1},
        {"entry count wrong", 16, 8, 4},
        {"key group out of range", 24, 4, SL_KEY_GROUPS},
        {"section entries wrong", 28, 4, 1},
        {"section entries zero", 28, 4, 0},
        {"section length short", 32, 8, 50},
        {"section length past end", 32, 8, 1000},
        {"entry hash in wrong group", 40, 8, 0xF000000000000001ull},
        {"key length past section", 48, 4, 1000},
        {"key length UINT32_MAX", 48, 4, UINT32_MAX},
        {"sections out of order", 91, 4, 0},
    };
    for (size_t e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
        memcpy(copy, buf.ptr, buf.len);
        if (edits[e].width == 4)
            put32(copy + edits[e].off, (uint32_t)edits[e].value);
        else
            put64(copy + edits[e].off, edits[e].value);
        reseal(copy, buf.len);
        int rc = sl_state_restore(dst, copy, buf.len, 0, SL_KEY_GROUPS - 1);
        if (rc != SL_ECORRUPT)
            fail_msg("%s: restore returned %d, want SL_ECORRUPT", edits[e].what, rc);
    }
    /* Bad magic. */
    memcpy(copy, buf.ptr, buf.len);
    copy[0] = 'X';
    reseal(copy, buf.len);
    assert_int_equal(sl_state_restore(dst, copy, buf.len, 0, SL_KEY_GROUPS - 1), SL_ECORRUPT);
    free(copy);

    /* Wrong value size, bad key-group range, NULL data. */
    sl_state *wide = sl_state_new(16);
    assert_int_equal(sl_state_restore(wide, buf.ptr, buf.len, 0, SL_KEY_GROUPS - 1), SL_EINVAL);
    assert_int_equal(sl_state_count(wide), 0);
    sl_state_free(wide);
    assert_int_equal(sl_state_restore(dst, buf.ptr, buf.len, 10, 9), SL_EINVAL);
    assert_int_equal(sl_state_restore(dst, NULL, 0, 0, SL_KEY_GROUPS - 1), SL_ECORRUPT);

    assert_same_table(dst, before);
    assert_same_table(before, dst);

    /* And the intact snapshot still restores. */
    assert_int_equal(sl_state_restore(dst, buf.ptr, buf.len, 0, SL_KEY_GROUPS - 1), 0);
    assert_int_equal(sl_state_count(dst), 4);
    assert_true(*(uint64_t *)sl_state_find(dst, h2, "b-long-key", 10) == 22);
    /* Only key group 960. */
    sl_state *only = sl_state_new(8);
    assert_int_equal(sl_state_restore(only, buf.ptr, buf.len, 960, 960), 0);
    assert_int_equal(sl_state_count(only), 1);
    assert_true(*(uint64_t *)sl_state_find(only, h3, "c", 1) == 33);
    sl_state_free(only);

    sl_buf_free(&buf);
    sl_state_free(src);
    sl_state_free(dst);
    sl_state_free(before);
}

static void test_empty_snapshot(void **state)
{
    sl_state *a = sl_state_new(8), *b = sl_state_new(8);
    sl_buf buf = {0};
    (void)state;
    assert_int_equal(sl_state_snapshot(a, &buf), 0);
    assert_int_equal(buf.len, 32);
    assert_memory_equal(buf.ptr, "SLST", 4);
    assert_int_equal(sl_state_restore(b, buf.ptr, buf.len, 0, SL_KEY_GROUPS - 1), 0);
    assert_int_equal(sl_state_count(b), 0);
    sl_buf_free(&buf);
    sl_state_free(a);
    sl_state_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_is_xxh3),
        cmocka_unit_test(test_basic_ops),
        cmocka_unit_test(test_value_size_zero_and_clear),
        cmocka_unit_test(test_random_vs_reference),
        cmocka_unit_test(test_identical_hash_different_keys),
        cmocka_unit_test(test_equal_low_bits_and_growth),
        cmocka_unit_test(test_growth_keeps_entries),
        cmocka_unit_test(test_long_key_churn),
        cmocka_unit_test(test_iteration_with_removal),
        cmocka_unit_test(test_snapshot_round_trip),
        cmocka_unit_test(test_restore_overwrites_and_merges),
        cmocka_unit_test(test_restore_key_group_split),
        cmocka_unit_test(test_restore_rejects_corrupt),
        cmocka_unit_test(test_empty_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
