/*
 * tests/unit/fuzz_corpus.h - a committed libFuzzer corpus replayed under
 * ctest. Each file's name says the verdict it must get:
 *
 *   valid-*   the decoder accepts it
 *   bad-*     the decoder refuses it
 *   any-*     either (only no crash, no over-read)
 *
 *   fc_put(dir, name, p, n)         write one seed (a test's --generate)
 *   fc_replay(dir, judge, ud, n)    every file of dir, read into a buffer of
 *                                   exactly its size (so ASan sees any read
 *                                   past the input), judged by
 *                                   judge(name, p, len, ud): 1 accepted,
 *                                   0 refused, -1 neither (fails valid-*
 *                                   and bad-*); n[0..2] count valid, bad, any
 *
 * Header-only (static inline), for cmocka tests: a wrong verdict or a file
 * named otherwise fails the test with the file's name.
 */
#ifndef SLUICE_TESTS_FUZZ_CORPUS_H
#define SLUICE_TESTS_FUZZ_CORPUS_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void fc_put(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

typedef int (*fc_judge_fn)(const char *name, const uint8_t *p, size_t n, void *ud);

static inline void fc_replay(const char *dir, fc_judge_fn judge, void *ud, int counts[3])
{
    counts[0] = counts[1] = counts[2] = 0;
    DIR *d = opendir(dir);
    if (!d) fail_msg("cannot open the corpus %s", dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) fail_msg("cannot read %s", path);
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        rewind(f);
        uint8_t *p = malloc(size > 0 ? (size_t)size : 1);
        size_t n = size > 0 ? fread(p, 1, (size_t)size, f) : 0;
        fclose(f);
        if (n != (size_t)(size > 0 ? size : 0)) fail_msg("short read of %s", path);
        int v = judge(e->d_name, p, n, ud);
        free(p);
        if (!strncmp(e->d_name, "valid-", 6)) {
            if (v != 1) fail_msg("%s: expected to be accepted, got verdict %d", e->d_name, v);
            counts[0]++;
        } else if (!strncmp(e->d_name, "bad-", 4)) {
            if (v != 0) fail_msg("%s: expected to be refused, got verdict %d", e->d_name, v);
            counts[1]++;
        } else if (!strncmp(e->d_name, "any-", 4)) {
            counts[2]++;
        } else {
            fail_msg("%s: corpus files are named valid-*, bad-* or any-* (the verdict)", e->d_name);
        }
    }
    closedir(d);
}

#endif
