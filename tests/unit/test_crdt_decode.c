/*
 * tests/unit/test_crdt_decode.c - the CRDT decoders against bad bytes:
 * replays the committed corpus of the fuzz target
 * (tests/fuzz/corpus/crdt_decode/) through the target itself, whose checks
 * abort on a non-canonical accept, and checks each named seed's verdict
 * (valid-* decode, bad-* are refused); then every truncation of every
 * valid encoding, a byte appended, and seeded random mutations of them
 * (fixed seeds; a failure prints its seed), each run in an exactly-sized
 * copy so that ASan sees any read past the input. Also the error codes:
 * unknown version, another type, counts above the caps.
 *
 * `test_crdt_decode --generate DIR` writes the seed files (how the
 * committed corpus was made).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "tests/unit/fuzz_corpus.h"

#include "tests/fuzz/fuzz_crdt_decode.c"
#include "tests/unit/crdt_test.h"

#define CORPUS SLUICE_SOURCE_DIR "/tests/fuzz/corpus/crdt_decode"

static sl_bytes B(const char *s)
{
    return (sl_bytes){s, (uint32_t)strlen(s)};
}

/* Valid encoding number i (0 <= i < NVALID) into out; its seed name. */
#define NVALID 12
static const char *build_valid(int i, sl_buf *out)
{
    out->len = 0;
    switch (i) {
    case 0: {
        sl_crdt_gcounter *a = sl_crdt_gcounter_new(2), *b = sl_crdt_gcounter_new(1);
        sl_crdt_gcounter_increment(a, 5);
        sl_crdt_gcounter_increment(b, 300);
        sl_crdt_gcounter_merge(a, b);
        sl_crdt_gcounter_encode(a, out);
        sl_crdt_gcounter_free(a);
        sl_crdt_gcounter_free(b);
        return "valid-gcounter";
    }
    case 1: {
        sl_crdt_pncounter *a = sl_crdt_pncounter_new(7);
        sl_crdt_pncounter_add(a, 10);
        sl_crdt_pncounter_add(a, -3);
        sl_crdt_pncounter_encode(a, out);
        sl_crdt_pncounter_free(a);
        return "valid-pncounter";
    }
    case 2: {
        sl_crdt_lww *a = sl_crdt_lww_new(3);
        sl_crdt_lww_set(a, 1700000000000, B("editor-42"));
        sl_crdt_lww_encode(a, out);
        sl_crdt_lww_free(a);
        return "valid-lww";
    }
    case 3: {
        sl_crdt_lww *a = sl_crdt_lww_new(3);
        sl_crdt_lww_encode(a, out);
        sl_crdt_lww_free(a);
        return "valid-lww-empty";
    }
    case 4: {
        sl_crdt_mvreg *a = sl_crdt_mvreg_new(1), *b = sl_crdt_mvreg_new(2);
        sl_crdt_mvreg_set(a, B("x"));
        sl_crdt_mvreg_set(b, B("y"));
        sl_crdt_mvreg_merge(a, b);
        sl_crdt_mvreg_encode(a, out);
        sl_crdt_mvreg_free(a);
        sl_crdt_mvreg_free(b);
        return "valid-mvreg-concurrent";
    }
    case 5: {
        sl_crdt_orset *a = sl_crdt_orset_new(1, 0), *b = sl_crdt_orset_new(2, 0);
        sl_crdt_orset_add(a, B("tag-a"));
        sl_crdt_orset_add(a, B("tag-b"));
        sl_crdt_orset_add(b, B("tag-a"));
        sl_crdt_orset_merge(a, b);
        sl_crdt_orset_remove(a, B("tag-b"));
        sl_crdt_orset_add(a, B(""));
        sl_crdt_orset_encode(a, out);
        sl_crdt_orset_free(a);
        sl_crdt_orset_free(b);
        return "valid-orset";
    }
    case 6: {
        /* a delta past a gap: a context with a cloud */
        sl_crdt_orset *a = sl_crdt_orset_new(1, SL_CRDT_DELTAS), *d = NULL;
        sl_crdt_orset_add(a, B("one"));
        sl_crdt_orset_delta_take(a, &d);
        sl_crdt_orset_free(d);
        sl_crdt_orset_add(a, B("two"));
        sl_crdt_orset_remove(a, B("one"));
        sl_crdt_orset_delta_take(a, &d);
        sl_crdt_orset_encode(d, out);
        sl_crdt_orset_free(d);
        sl_crdt_orset_free(a);
        return "valid-orset-delta-cloud";
    }
    case 7: {
        sl_crdt_hll *h = sl_crdt_hll_new(10);
        for (uint64_t k = 0; k < 40; k++) sl_crdt_hll_add(h, &k, sizeof k);
        sl_crdt_hll_encode(h, out);
        sl_crdt_hll_free(h);
        return "valid-hll-sparse";
    }
    case 8: {
        sl_crdt_hll *h = sl_crdt_hll_new(4);
        for (uint64_t k = 0; k < 1000; k++) sl_crdt_hll_add(h, &k, sizeof k);
        sl_crdt_hll_encode(h, out);
        sl_crdt_hll_free(h);
        return "valid-hll-dense";
    }
    case 9: {
        sl_crdt_gcounter *a = sl_crdt_gcounter_new(2);
        sl_crdt_gcounter_encode(a, out);
        sl_crdt_gcounter_free(a);
        return "valid-gcounter-zero";
    }
    case 10: {
        sl_crdt_mvreg *a = sl_crdt_mvreg_new(1), *b = sl_crdt_mvreg_new(2),
                      *c = sl_crdt_mvreg_new(3);
        sl_crdt_mvreg_set(a, B("first"));
        sl_crdt_mvreg_merge(b, a);
        sl_crdt_mvreg_set(b, B("second"));
        sl_crdt_mvreg_set(c, B("third"));
        sl_crdt_mvreg_merge(c, b);
        sl_crdt_mvreg_merge(c, a);
        sl_crdt_mvreg_encode(c, out);
        sl_crdt_mvreg_free(a);
        sl_crdt_mvreg_free(b);
        sl_crdt_mvreg_free(c);
        return "valid-mvreg-clocks";
    }
    default: {
        sl_crdt_orset *a = sl_crdt_orset_new(9, 0);
        char e[16];
        for (int k = 0; k < 30; k++) {
            snprintf(e, sizeof e, "e%d", k);
            sl_crdt_orset_add(a, B(e));
            if (k % 4 == 0) sl_crdt_orset_add(a, B(e));
            if (k % 5 == 0) sl_crdt_orset_remove(a, B(e));
        }
        sl_crdt_orset_encode(a, out);
        sl_crdt_orset_free(a);
        return "valid-orset-many";
    }
    }
}

/* Run the target on an exactly-sized copy (so ASan sees any over-read). */
static int run(const uint8_t *p, size_t n)
{
    uint8_t *exact = malloc(n ? n : 1);
    if (n) memcpy(exact, p, n);
    int v = crdt_fuzz_one(exact, n);
    free(exact);
    return v;
}

/* Bad seeds: each a valid encoding with one thing wrong. */
static int generate(const char *dir)
{
    sl_buf b = {0};
    for (int i = 0; i < NVALID; i++) {
        const char *name = build_valid(i, &b);
        fc_put(dir, name, b.ptr, b.len);
    }
    build_valid(0, &b);
    fc_put(dir, "bad-gcounter-truncated", b.ptr, b.len - 3);
    b.ptr[2] = 2;
    fc_put(dir, "bad-version", b.ptr, b.len);
    b.ptr[2] = 1;
    b.ptr[0] = 0xCE;
    fc_put(dir, "bad-magic", b.ptr, b.len);
    b.ptr[0] = 0xCD;
    sl_buf_append(&b, "", 1);
    fc_put(dir, "bad-trailing-byte", b.ptr, b.len);
    build_valid(0, &b);
    /* swap the two entries' replica ids: not ascending */
    uint8_t t = b.ptr[8];
    b.ptr[8] = b.ptr[20];
    b.ptr[20] = t;
    fc_put(dir, "bad-gcounter-unsorted", b.ptr, b.len);
    build_valid(0, &b);
    memset(b.ptr + 12, 0, 8); /* a zero count */
    fc_put(dir, "bad-gcounter-zero-entry", b.ptr, b.len);
    build_valid(0, &b);
    memset(b.ptr + 4, 0xff, 4); /* 4G entries */
    fc_put(dir, "bad-gcounter-huge-count", b.ptr, b.len);
    build_valid(8, &b);
    b.ptr[6 + 3] = 62; /* above 65 - p */
    fc_put(dir, "bad-hll-register-too-big", b.ptr, b.len);
    build_valid(8, &b);
    b.ptr[4] = 19;
    fc_put(dir, "bad-hll-precision", b.ptr, b.len);
    build_valid(5, &b);
    b.ptr[b.len - 1] ^= 0x10; /* the last dot's counter: outside the context */
    fc_put(dir, "bad-orset-dot-outside-context", b.ptr, b.len);
    build_valid(2, &b);
    b.ptr[4] = 2;
    fc_put(dir, "bad-lww-flag", b.ptr, b.len);
    build_valid(4, &b);
    b.ptr[1] = SL_CRDT_ORSET; /* an MV-Register's bytes called an OR-Set */
    fc_put(dir, "bad-wrong-type", b.ptr, b.len);
    uint8_t zeros[64] = {0};
    fc_put(dir, "bad-zeros", zeros, sizeof zeros);
    fc_put(dir, "bad-empty", zeros, 0);
    sl_buf_free(&b);
    return 0;
}

/* A corpus file's verdict: 1 when the decoders accept it (run() < 0 is a
 * refusal; it reads an exactly-sized copy already). */
static int judge(const char *name, const uint8_t *p, size_t n, void *ud)
{
    (void)name, (void)ud;
    return run(p, n) >= 0;
}

static void test_replay_corpus(void **state)
{
    (void)state;
    int n[3];
    fc_replay(CORPUS, judge, NULL, n);
    print_message("corpus: %d valid, %d bad\n", n[0], n[1]);
    assert_true(n[0] >= NVALID && n[1] >= 10);
}

static void test_truncations_and_trailing_bytes(void **state)
{
    (void)state;
    sl_buf b = {0};
    for (int i = 0; i < NVALID; i++) {
        const char *name = build_valid(i, &b);
        if (run(b.ptr, b.len) < 0) fail_msg("%s does not decode", name);
        for (size_t n = 0; n < b.len; n++)
            if (run(b.ptr, n) >= 0) fail_msg("%s cut to %zu of %zu bytes decoded", name, n, b.len);
        sl_buf_append(&b, "\0", 1);
        if (run(b.ptr, b.len) >= 0) fail_msg("%s with a byte appended decoded", name);
    }
    sl_buf_free(&b);
}

/* Random mutations: any verdict is fine, a crash or a non-canonical accept
 * (the target aborts) is not. Counts how many still decoded. */
static void test_random_mutations(void **state)
{
    (void)state;
    sl_buf b = {0};
    long accepted = 0, total = 0;
    for (int i = 0; i < NVALID; i++) {
        build_valid(i, &b);
        for (uint64_t seed = 1; seed <= 3000; seed++) {
            rng r = {seed * 1000003 + (uint64_t)i};
            uint8_t m[4096];
            size_t n = b.len < sizeof m ? b.len : sizeof m;
            memcpy(m, b.ptr, n);
            int edits = 1 + (int)rng_below(&r, 4);
            for (int k = 0; k < edits && n; k++) {
                size_t at = rng_below(&r, (uint32_t)n);
                switch (rng_below(&r, 5)) {
                case 0: m[at] ^= (uint8_t)(1u << rng_below(&r, 8)); break;
                case 1: m[at] = (uint8_t)rng_next(&r); break;
                case 2: n = at; break; /* cut */
                case 3:                /* delete a byte */
                    memmove(m + at, m + at + 1, n - at - 1);
                    n--;
                    break;
                default: /* an extreme value in a 4-byte field */
                    if (at + 4 <= n) memset(m + at, rng_below(&r, 2) ? 0xff : 0x00, 4);
                }
            }
            if (n >= 4) m[0] = 0xCD, m[2] = 1, m[3] = 0; /* keep the header, go deeper */
            accepted += run(m, n) >= 0;
            total++;
        }
    }
    print_message("mutations: %ld of %ld still decoded (each re-encoded to its bytes)\n", accepted,
                  total);
    sl_buf_free(&b);
}

static void test_error_codes(void **state)
{
    (void)state;
    sl_buf b = {0};
    build_valid(0, &b);
    sl_crdt_gcounter *g = NULL;
    sl_crdt_hll *h = NULL;
    assert_int_equal(sl_crdt_peek(b.ptr, b.len), SL_CRDT_GCOUNTER);
    assert_int_equal(sl_crdt_hll_decode(b.ptr, b.len, &h), SL_EINVAL); /* another type */
    b.ptr[2] = 9;
    assert_int_equal(sl_crdt_gcounter_decode(b.ptr, b.len, 1, &g), SL_ENOTSUP);
    assert_int_equal(sl_crdt_peek(b.ptr, b.len), SL_ENOTSUP);
    b.ptr[2] = 1;
    memset(b.ptr + 4, 0xff, 4);
    assert_int_equal(sl_crdt_gcounter_decode(b.ptr, b.len, 1, &g), SL_ETOOBIG);
    b.ptr[4] = 0xff, b.ptr[5] = 0xff, b.ptr[6] = 0, b.ptr[7] = 0; /* 65535: more than there is */
    assert_int_equal(sl_crdt_gcounter_decode(b.ptr, b.len, 1, &g), SL_ECORRUPT);
    assert_null(g);
    assert_int_equal(sl_crdt_gcounter_decode(NULL, 0, 1, &g), SL_ECORRUPT);
    assert_int_equal(sl_crdt_gcounter_decode(b.ptr, b.len, 1, NULL), SL_EINVAL);
    /* a value above the cap is refused by the decoder (and by updates) */
    sl_buf x = {0};
    uint8_t hdr[] = {0xCD, SL_CRDT_LWW, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    sl_buf_append(&x, hdr, sizeof hdr);
    uint8_t len[4] = {0, 0, 0, 0x02}; /* 32 MiB */
    sl_buf_append(&x, len, 4);
    sl_crdt_lww *l = NULL;
    assert_int_equal(sl_crdt_lww_decode(x.ptr, x.len, 1, &l), SL_ETOOBIG);
    sl_crdt_lww *w = sl_crdt_lww_new(1);
    assert_int_equal(sl_crdt_lww_set(w, 0, (sl_bytes){x.ptr, SL_CRDT_MAX_VALUE + 1}), SL_ETOOBIG);
    sl_crdt_lww_free(w);
    sl_buf_free(&x);
    sl_buf_free(&b);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--generate")) return generate(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_corpus),
        cmocka_unit_test(test_truncations_and_trailing_bytes),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_error_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
