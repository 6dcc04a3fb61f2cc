/*
 * tests/unit/test_broker_fuzz_index.c - replays the committed corpus of the
 * index-loading fuzz target (tests/fuzz/corpus/index_load/) through the
 * target's own run function, fuzz_index_run. Every input must keep the
 * target's oracle (whatever the index file holds, the reader returns exactly
 * the log's records from the seek offset; an append after loading takes the
 * next offset); besides, the named seeds have a verdict for slb_index_load:
 *   valid-*  the genuine index file: loads (0);
 *   bad-*    a damaged one: SL_ECORRUPT (an index is a hint: it is rebuilt or
 *            ignored, and the oracle still holds);
 *   any-*    no verdict (inputs the fuzzer found, mixed cases).
 *
 * `test_broker_fuzz_index --generate DIR` writes the seed files (how the
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

#include "engine/base/crc32c.h"
#include "tests/fuzz/fuzz_index_load.c"

#define CORPUS SLUICE_SOURCE_DIR "/tests/fuzz/corpus/index_load"

static void put(const char *dir, const char *name, uint8_t mode, unsigned seek, const uint8_t *p,
                size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    uint8_t hdr[3] = {mode, (uint8_t)seek, (uint8_t)(seek >> 8)};
    if (!f || fwrite(hdr, 1, 3, f) != 3 || (n && fwrite(p, 1, n, f) != n)) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static int generate(const char *dir)
{
    fzi_init();
    static const char *const ext[2] = {"index", "timeindex"};
    for (int w = 0; w < 2; w++) {
        const uint8_t *g = fzi_genuine[w];
        size_t n = fzi_genuine_len[w];
        uint8_t *c = malloc(n);
        if (!c) return 1;
        char name[96];
        for (int mode = 0; mode < 8; mode += 2) {
            snprintf(name, sizeof name, "valid-%s-mode%d", ext[w], mode | w);
            put(dir, name, (uint8_t)(mode | w), (unsigned)(17 + 97 * mode), g, n);
        }
        /* Damaged copies: each header field, an entry, the size. */
        static const struct {
            const char *what;
            size_t at;
        } flips[] = {{"magic", 1},  {"version", 4}, {"base", 8},  {"logsize", 16},
                     {"count", 24}, {"crc", 28},    {"entry", 33}};
        for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
            if (flips[i].at >= n) continue;
            memcpy(c, g, n);
            c[flips[i].at] ^= 0x10;
            /* log_size is checked against the log by the caller, not by
             * slb_index_load: no verdict for it. */
            const char *v = strcmp(flips[i].what, "logsize") ? "bad" : "any";
            snprintf(name, sizeof name, "%s-%s-flip-%s", v, ext[w], flips[i].what);
            put(dir, name, (uint8_t)(2 | w), (unsigned)(5 + 31 * i), c, n);
            snprintf(name, sizeof name, "%s-%s-flip-%s-append", v, ext[w], flips[i].what);
            put(dir, name, (uint8_t)(6 | w), (unsigned)(400 + i), c, n);
        }
        snprintf(name, sizeof name, "bad-%s-truncated", ext[w]);
        put(dir, name, (uint8_t)w, 300, g, n - 3);
        snprintf(name, sizeof name, "bad-%s-header-only", ext[w]);
        put(dir, name, (uint8_t)(4 | w), 599, g, 20);
        /* An entry that points at the wrong batch, with its CRC made good:
         * the reader must check where the entry leads (the index is a hint). */
        if (n >= 32 + 16) {
            memcpy(c, g, n);
            c[32 + (w ? 8 : 4) + 8 * (w ? 0 : 1)] += 3; /* pos (index) or rel (timeindex) */
            uint32_t crc = sli_crc32c(0, c + 32, n - 32);
            memcpy(c + 28, &crc, 4);
            snprintf(name, sizeof name, "any-%s-entry-moved-crc-ok", ext[w]);
            put(dir, name, (uint8_t)(2 | w), 550, c, n);
        }
        free(c);
    }
    static const uint8_t zeros[64] = {0};
    put(dir, "bad-index-zeros", 0, 0, zeros, sizeof zeros);
    put(dir, "any-index-empty", 4, 123, zeros, 0);
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
        fuzz_index_result res;
        fuzz_index_run(exact, n, &res);
        if (res.violation) fail_msg("%s: %s", e->d_name, res.violation);
        if (!strncmp(e->d_name, "valid-", 6)) {
            if (res.load_rc != 0)
                fail_msg("%s: the genuine index did not load: %d", e->d_name, res.load_rc);
            valid++;
        } else if (!strncmp(e->d_name, "bad-", 4)) {
            if (res.load_rc != SL_ECORRUPT)
                fail_msg("%s: expected SL_ECORRUPT from slb_index_load, got %d", e->d_name,
                         res.load_rc);
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
    assert_true(valid >= 8);
    assert_true(bad >= 16); /* 6 flips x 2 modes + 2, per file */
    assert_int_equal(files, valid + bad + any);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--generate")) return generate(argv[2]);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_replay_corpus)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
