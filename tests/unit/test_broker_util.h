/*
 * tests/unit/test_broker_util.h - helpers shared by the broker tests: temporary
 * directories, a snapshot of a directory tree (to check that a failed call
 * changed nothing), and reading a whole partition.
 */
#ifndef SLUICE_TEST_BROKER_UTIL_H
#define SLUICE_TEST_BROKER_UTIL_H

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/broker.h"

static int tb_rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s;
    (void)f;
    (void)w;
    return remove(p);
}

static inline void tb_rmrf(const char *dir)
{
    nftw(dir, tb_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static inline char *tb_tmpdir(void)
{
    char tmpl[] = "/tmp/sluice-broker-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

/* A text snapshot of a tree: "path size\n" per entry, sorted by nftw order. */
static char *tb_snap_buf;
static size_t tb_snap_len;
static int tb_snap_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)f;
    (void)w;
    char line[4200];
    int n = snprintf(line, sizeof line, "%s %lld\n", p,
                     S_ISDIR(s->st_mode) ? 0LL : (long long)s->st_size);
    tb_snap_buf = realloc(tb_snap_buf, tb_snap_len + (size_t)n + 1);
    memcpy(tb_snap_buf + tb_snap_len, line, (size_t)n + 1);
    tb_snap_len += (size_t)n;
    return 0;
}

static int tb_cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted snapshot of the tree under dir (caller frees). */
static inline char *tb_snapshot(const char *dir)
{
    tb_snap_buf = NULL;
    tb_snap_len = 0;
    nftw(dir, tb_snap_cb, 16, FTW_PHYS);
    if (!tb_snap_buf) return strdup("");
    /* sort lines */
    size_t n = 0;
    for (char *p = tb_snap_buf; *p; p++) n += *p == '\n';
    char **lines = malloc(n * sizeof *lines);
    size_t i = 0;
    for (char *tok = strtok(tb_snap_buf, "\n"); tok; tok = strtok(NULL, "\n")) lines[i++] = tok;
    qsort(lines, i, sizeof *lines, tb_cmp_lines);
    size_t total = 1;
    for (size_t k = 0; k < i; k++) total += strlen(lines[k]) + 1;
    char *out = malloc(total);
    out[0] = '\0';
    for (size_t k = 0; k < i; k++) {
        strcat(out, lines[k]);
        strcat(out, "\n");
    }
    free(lines);
    free(tb_snap_buf);
    tb_snap_buf = NULL;
    return out;
}

#endif
