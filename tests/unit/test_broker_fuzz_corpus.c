/*
 * tests/unit/test_broker_fuzz_corpus.c - replays the committed corpus of the
 * batch-decoder fuzz target (tests/fuzz/corpus/batch_decode/) through the
 * target's own entry point, LLVMFuzzerTestOneInput, and checks the verdict of
 * each named seed: files named valid-* decode without error, bad-* are
 * rejected. Crash-finding is the fuzzer's job; this keeps every input it was
 * seeded with (and every crasher added to the corpus later) passing in ctest.
 *
 * `test_broker_fuzz_corpus --generate DIR` writes the seed files (how the
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

#include "tests/fuzz/fuzz_batch_decode.c"

#define CORPUS SLUICE_SOURCE_DIR "/tests/fuzz/corpus/batch_decode"

static size_t build(slb_builder *b, int64_t base, int n, bool headers, bool tomb)
{
    slb_builder_reset(b, base);
    sl_record_header hs[2] = {{"trace", 5, "abc", 3}, {"nullv", 5, NULL, 0}};
    for (int i = 0; i < n; i++) {
        char k[16], v[32];
        snprintf(k, sizeof k, "key%d", i);
        snprintf(v, sizeof v, "value-%d", i);
        sl_record r = {.key = k, .key_len = strlen(k), .value = v, .value_len = strlen(v)};
        if (tomb && i == n - 1) r.value = NULL, r.value_len = 0;
        if (headers) r.headers = hs, r.header_count = 2;
        slb_builder_add(b, &r, 1700000000000LL + i, i);
    }
    return slb_builder_finish(b, -1);
}

static int generate(const char *dir)
{
    slb_builder b;
    slb_builder_init(&b);
    uint8_t two[4096];
    size_t n = build(&b, 0, 3, false, false);
    fc_put(dir, "valid-one-batch", b.buf, n);
    memcpy(two, b.buf, n);
    size_t n2 = build(&b, 3, 2, true, true);
    memcpy(two + n, b.buf, n2);
    fc_put(dir, "valid-two-batches-headers-tombstone", two, n + n2);
    n = build(&b, 1000, 1, false, false);
    fc_put(dir, "valid-single-record", b.buf, n);
    n = build(&b, 0, 4, true, false);
    fc_put(dir, "bad-truncated", b.buf, n - 5);
    b.buf[n - 3] ^= 0x40;
    fc_put(dir, "bad-crc", b.buf, n);
    b.buf[n - 3] ^= 0x40;
    b.buf[16] = 7;
    fc_put(dir, "bad-magic", b.buf, n);
    /* A record whose key length runs past the batch, CRC made valid. */
    n = build(&b, 0, 1, false, false);
    b.buf[SLB_HDR_SIZE + 4] = 0x7e; /* key length varint (zigzag 0x7e = 63) */
    slb_put32(b.buf + 12, slb_batch_crc(b.buf, (uint32_t)n));
    fc_put(dir, "bad-key-length-crc-ok", b.buf, n);
    /* Two records, for the fuzzer to mutate. */
    n = build(&b, 0, 2, false, false);
    fc_put(dir, "valid-for-offsets", b.buf, n);
    slb_builder_free(&b);
    uint8_t zeros[64] = {0};
    fc_put(dir, "bad-zeros", zeros, sizeof zeros);
    return 0;
}

/* A corpus file's verdict: records decoded (1), an error (0) (the target itself runs first:
 * under ASan a bad read in it fails here; a libFuzzer target always
 * returns 0, so there is nothing to assert on its result). */
static int judge(const char *name, const uint8_t *p, size_t n, void *ud)
{
    (void)name, (void)ud;
    (void)LLVMFuzzerTestOneInput(p, n);
    long rc = slb_decode_all(p, n, true);
    return rc > 0 ? 1 : rc < 0 ? 0 : -1; /* no records, no error: neither verdict */
}

static void test_replay_corpus(void **state)
{
    (void)state;
    int n[3];
    fc_replay(CORPUS, judge, NULL, n);
    int valid = n[0], bad = n[1];
    /* The seeds that --generate writes are all there (the corpus may grow). */
    assert_true(valid >= 4);
    assert_true(bad >= 5);
    assert_int_equal(n[2], 0); /* no any-* files here */
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--generate")) return generate(argv[2]);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_replay_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
