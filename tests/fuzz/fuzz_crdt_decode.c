/*
 * tests/fuzz/fuzz_crdt_decode.c - libFuzzer target for the CRDT decoders
 * (operators/crdt/, formats drawn in sluice/crdt.h).
 *
 * Every input goes through all six decoders (only the one its type byte
 * names gets past the header). A decoder must return an error for any
 * malformed input and never read outside it (ASan/UBSan catch it if it
 * does). What one accepts must be canonical: it re-encodes to exactly the
 * input, and it survives being merged with itself and with a copy, and its
 * values read; the target aborts otherwise, so the fuzzer reports it.
 *
 * Build: tests/fuzz/build.sh (clang -fsanitize=fuzzer,address,undefined).
 * Its corpus, tests/fuzz/corpus/crdt_decode/, is replayed by
 * tests/unit/test_crdt_decode.c in every ctest run, with truncations and
 * mutations of valid encodings.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/crdt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_bytes(const sl_buf *b, const uint8_t *data, size_t size)
{
    if (b->len != size || memcmp(b->ptr, data, size)) abort();
}

/* Decode data as every type; returns the result of the decoder of the type
 * the header names (or the first decoder's error when it names none). */
static int crdt_fuzz_one(const uint8_t *data, size_t size)
{
    int verdict = sl_crdt_peek(data, size);
    int type = verdict;
    sl_buf b = {0};
    int rc;

    sl_crdt_gcounter *g = NULL, *g2 = NULL;
    rc = sl_crdt_gcounter_decode(data, size, 1, &g);
    if (type == SL_CRDT_GCOUNTER) verdict = rc;
    if (!rc) {
        if (sl_crdt_gcounter_encode(g, &b)) abort();
        same_bytes(&b, data, size);
        if (sl_crdt_gcounter_copy(g, &g2) || sl_crdt_gcounter_merge(g2, g) ||
            !sl_crdt_gcounter_equal(g, g2) || sl_crdt_gcounter_increment(g, 1) == SL_EINVAL)
            abort();
        (void)sl_crdt_gcounter_value(g);
    }
    sl_crdt_gcounter_free(g);
    sl_crdt_gcounter_free(g2);
    b.len = 0;

    sl_crdt_pncounter *p = NULL, *p2 = NULL;
    rc = sl_crdt_pncounter_decode(data, size, 1, &p);
    if (type == SL_CRDT_PNCOUNTER) verdict = rc;
    if (!rc) {
        if (sl_crdt_pncounter_encode(p, &b)) abort();
        same_bytes(&b, data, size);
        if (sl_crdt_pncounter_copy(p, &p2) || sl_crdt_pncounter_merge(p2, p) ||
            !sl_crdt_pncounter_equal(p, p2))
            abort();
        (void)sl_crdt_pncounter_value(p);
    }
    sl_crdt_pncounter_free(p);
    sl_crdt_pncounter_free(p2);
    b.len = 0;

    sl_crdt_lww *l = NULL, *l2 = NULL;
    rc = sl_crdt_lww_decode(data, size, 1, &l);
    if (type == SL_CRDT_LWW) verdict = rc;
    if (!rc) {
        if (sl_crdt_lww_encode(l, &b)) abort();
        same_bytes(&b, data, size);
        if (sl_crdt_lww_copy(l, &l2) || sl_crdt_lww_merge(l2, l) || !sl_crdt_lww_equal(l, l2))
            abort();
        sl_bytes v;
        (void)sl_crdt_lww_get(l, &v, NULL, NULL);
    }
    sl_crdt_lww_free(l);
    sl_crdt_lww_free(l2);
    b.len = 0;

    sl_crdt_mvreg *m = NULL, *m2 = NULL;
    rc = sl_crdt_mvreg_decode(data, size, 1, &m);
    if (type == SL_CRDT_MVREG) verdict = rc;
    if (!rc) {
        if (sl_crdt_mvreg_encode(m, &b)) abort();
        same_bytes(&b, data, size);
        if (sl_crdt_mvreg_copy(m, &m2) || sl_crdt_mvreg_merge(m2, m) || !sl_crdt_mvreg_equal(m, m2))
            abort();
        rc = sl_crdt_mvreg_set(m, (sl_bytes){"v", 1});
        if (rc && rc != SL_ERANGE) abort(); /* ERANGE: the clock of replica 1 is full */
        for (size_t i = 0; i < sl_crdt_mvreg_count(m2); i++) (void)sl_crdt_mvreg_value(m2, i);
    }
    sl_crdt_mvreg_free(m);
    sl_crdt_mvreg_free(m2);
    b.len = 0;

    sl_crdt_orset *o = NULL, *o2 = NULL;
    rc = sl_crdt_orset_decode(data, size, 1, SL_CRDT_DELTAS, &o);
    if (type == SL_CRDT_ORSET) verdict = rc;
    if (!rc) {
        if (sl_crdt_orset_encode(o, &b)) abort();
        same_bytes(&b, data, size);
        if (sl_crdt_orset_copy(o, &o2) || sl_crdt_orset_merge(o2, o) || !sl_crdt_orset_equal(o, o2))
            abort();
        size_t cur = 0, n = 0;
        sl_bytes e;
        while (sl_crdt_orset_next(o, &cur, &e)) {
            if (!sl_crdt_orset_contains(o2, e)) abort();
            n++;
        }
        if (n != sl_crdt_orset_size(o)) abort();
        /* adds and removes on a decoded state keep it decodable */
        (void)sl_crdt_orset_add(o, (sl_bytes){"e", 1});
        (void)sl_crdt_orset_remove(o2, (sl_bytes){"e", 1});
        if (sl_crdt_orset_merge(o, o2)) abort();
        b.len = 0;
        sl_crdt_orset *o3 = NULL;
        if (sl_crdt_orset_encode(o, &b) || sl_crdt_orset_decode(b.ptr, b.len, 2, 0, &o3)) abort();
        sl_crdt_orset_free(o3);
    }
    sl_crdt_orset_free(o);
    sl_crdt_orset_free(o2);
    b.len = 0;

    sl_crdt_hll *h = NULL, *h2 = NULL;
    rc = sl_crdt_hll_decode(data, size, &h);
    if (type == SL_CRDT_HLL) verdict = rc;
    if (!rc) {
        if (sl_crdt_hll_encode(h, &b)) abort();
        same_bytes(&b, data, size);
        if (sl_crdt_hll_copy(h, &h2) || sl_crdt_hll_merge(h2, h) || !sl_crdt_hll_equal(h, h2))
            abort();
        double est = sl_crdt_hll_estimate(h);
        if (!(est >= 0)) abort();
    }
    sl_crdt_hll_free(h);
    sl_crdt_hll_free(h2);
    sl_buf_free(&b);
    return verdict;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)crdt_fuzz_one(data, size);
    return 0;
}
