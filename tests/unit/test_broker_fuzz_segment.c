/*
 * tests/unit/test_broker_fuzz_segment.c - replays the committed corpus of the
 * segment-reader fuzz target (tests/fuzz/corpus/segment_reader/) through the
 * target's own run function, fuzz_segment_run, and checks each named seed's
 * verdict:
 *   valid-*  every record is read and the reader ends with SL_EAGAIN (the
 *            end of the log); the name's number-of-records suffix is checked
 *            too (valid-...-nN: N records);
 *   bad-*    the reader stops with SL_ECORRUPT (sealed segments only: in the
 *            active segment a bad tail is a torn write and reads as the end);
 *   any-*    no verdict: must only not crash, hang or loop (the target's own
 *            bound), e.g. corrupt active segments and inputs the fuzzer found.
 * Crash-finding is the fuzzer's job; this keeps every seed (and every crasher
 * added to the corpus later) passing in ctest, under ASan/UBSan in CI.
 *
 * `test_broker_fuzz_segment --generate DIR` writes the seed files (how the
 * committed corpus was made).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tests/fuzz/fuzz_segment_reader.c"

#define CORPUS SLUICE_SOURCE_DIR "/tests/fuzz/corpus/segment_reader"

static void put(const char *dir, const char *name, uint8_t mode, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(&mode, 1, 1, f) != 1 || (n && fwrite(p, 1, n, f) != n)) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

/* nb batches of per records each, from offset 0. */
static size_t segment(uint8_t *out, size_t cap, int nb, int per)
{
    slb_builder bb;
    slb_builder_init(&bb);
    size_t len = 0;
    for (int i = 0; i < nb; i++) {
        size_t n = fz_batch(&bb, (int64_t)i * per, per);
        if (len + n > cap) abort();
        memcpy(out + len, bb.buf, n);
        len += n;
    }
    slb_builder_free(&bb);
    return len;
}

static int generate(const char *dir)
{
    static uint8_t seg[1 << 16];
    size_t n = segment(seg, sizeof seg, 4, 3);
    size_t b0 = 0, b1 = 0; /* start of batch 1 and 2 */
    {
        slb_batch_hdr h;
        slb_batch_check(seg, n, &h, true);
        b0 = h.length;
        slb_batch_check(seg + b0, n - b0, &h, true);
        b1 = b0 + h.length;
    }
    put(dir, "valid-active-n12", 0, seg, n);
    put(dir, "valid-sealed-n14", 1, seg, n);
    put(dir, "valid-active-append-n13", 2, seg, n);
    put(dir, "valid-sealed-append-n15", 3, seg, n);
    /* An empty sealed segment followed by one at a higher base: a gap (issue
     * 8 item 3), reported as corruption. */
    put(dir, "bad-empty-sealed-gap", 1, seg, 0);
    /* A torn tail (half a batch) in the active segment reads as the end;
     * the writer's recovery cuts it. */
    put(dir, "valid-active-torn-tail-n9", 0, seg, n - 20);
    put(dir, "valid-active-torn-tail-append-n10", 2, seg, n - 20);
    /* Sealed: a flipped bit in each region is corruption. */
    static const struct {
        const char *name;
        size_t at;
    } flips[] = {{"base", 3},   {"length", 9}, {"crc", 13},
                 {"magic", 16}, {"count", 25}, {"record", 50}};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        char name[64];
        seg[b1 + flips[i].at] ^= 0x04;
        snprintf(name, sizeof name, "bad-sealed-flip-%s", flips[i].name);
        put(dir, name, 1, seg, n);
        snprintf(name, sizeof name, "any-active-flip-%s", flips[i].name);
        put(dir, name, 0, seg, n);
        snprintf(name, sizeof name, "any-active-flip-%s-append", flips[i].name);
        put(dir, name, 2, seg, n);
        seg[b1 + flips[i].at] ^= 0x04;
    }
    put(dir, "bad-sealed-torn", 1, seg, n - 20);
    /* A batch whose base is below the previous one's end (a duplicated
     * batch): today's reader skips its records as it skips those before a
     * seek position, so nothing is returned twice; no verdict. */
    static uint8_t dup[1 << 16];
    memcpy(dup, seg, b0);
    memcpy(dup + b0, seg, n);
    put(dir, "any-sealed-duplicate-batch", 1, dup, b0 + n);
    put(dir, "any-active-duplicate-batch", 0, dup, b0 + n);
    static const uint8_t zeros[64] = {0};
    put(dir, "bad-sealed-zeros", 1, zeros, sizeof zeros);
    put(dir, "any-active-zeros", 2, zeros, sizeof zeros);
    return 0;
}

static void test_replay_corpus(void **state)
{
    (void)state;
    DIR *d = opendir(CORPUS);
    assert_non_null(d);
    struct dirent *e;
    int files = 0, valid = 0, bad = 0, any = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", CORPUS, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc(1 << 20);
        size_t n = fread(buf, 1, 1 << 20, f);
        fclose(f);
        uint8_t *exact = malloc(n ? n : 1); /* exactly sized, for ASan */
        memcpy(exact, buf, n);
        free(buf);
        fuzz_seg_result res;
        fuzz_segment_run(exact, n, &res);
        if (res.violation) fail_msg("%s: %s", e->d_name, res.violation);
        if (!strncmp(e->d_name, "valid-", 6)) {
            const char *nn = strrchr(e->d_name, 'n');
            long want = nn ? strtol(nn + 1, NULL, 10) : -1;
            if (res.rc != SL_EAGAIN || res.records != want)
                fail_msg("%s: expected %ld records and the end of the log, got %ld and %d",
                         e->d_name, want, res.records, res.rc);
            valid++;
        } else if (!strncmp(e->d_name, "bad-", 4)) {
            if (res.rc != SL_ECORRUPT)
                fail_msg("%s: expected SL_ECORRUPT, got %d after %ld records", e->d_name, res.rc,
                         res.records);
            bad++;
        } else if (!strncmp(e->d_name, "any-", 4)) {
            any++;
        } else {
            fail_msg("%s: corpus files are named valid-*, bad-* or any-* (the expected verdict)",
                     e->d_name);
        }
        free(exact);
        files++;
    }
    closedir(d);
    /* The seeds that --generate writes are all there (the corpus may grow). */
    assert_true(valid >= 6);
    assert_true(bad >= 10); /* 6 flips, torn, zeros, empty sealed, renamed base */
    assert_int_equal(files, valid + bad + any);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--generate")) return generate(argv[2]);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_replay_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
