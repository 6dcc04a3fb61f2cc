/*
 * cli/cmd_checkpoints.c - `sluice checkpoints DIR`: list the checkpoints of
 * a checkpoint directory, newest last, one line each:
 *
 *     id  time (UTC)                bytes  state       source positions
 *     7   2026-11-30T20:37:43.120Z  10412  complete    src[0]=4096 src[1]=0x78797a
 *     8   -                          2048  incomplete  no manifest
 *
 * Every checkpoint is opened through the checkpoint store (engine/checkpoint.h)
 * without a graph to compare with, so each is fully verified (manifest and
 * every state file by CRC): "complete" means what a restore would accept;
 * a corrupt one says why. A position of 8 bytes is printed as the
 * little-endian uint64 (offsets and sequence numbers are stored so), any
 * other as 0x and hex.
 *
 * This command reads the engine's private checkpoint module directly (there
 * is no public API for checkpoint directories yet); it changes nothing.
 * Exit status: 0 listed (even if some are corrupt), 1 the directory cannot be
 * read, 2 usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/checkpoint.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice checkpoints DIR\n"
               "Lists the checkpoints in DIR (a job's --checkpoint-dir): id, time, size,\n"
               "complete or not (every file is verified by CRC), and the sources' positions.\n");
}

static void print_time(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    if (ms < 0 || !gmtime_r(&t, &tm) || !strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm)) {
        printf("%-24s", "-");
        return;
    }
    printf("%s.%03dZ", buf, (int)(ms % 1000));
}

static void print_position(const sli_chk_position *p)
{
    printf(" %s[%" PRIu32 "]=", p->node, p->split);
    const unsigned char *b = p->pos;
    if (p->len == 8) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
        printf("%" PRIu64, v);
        return;
    }
    printf("0x");
    for (uint32_t i = 0; i < p->len; i++) printf("%02x", b[i]);
}

int cli_checkpoints(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "sluice checkpoints: unknown option '%s' (sluice checkpoints --help)\n",
                argv[optind - 1]);
        return 2;
    }
    if (argc - optind != 1) {
        fprintf(stderr, "sluice checkpoints: expected one directory (sluice checkpoints DIR)\n");
        return 2;
    }
    const char *dir = argv[optind];
    int status = 1;
    uint64_t *ids = NULL;
    size_t n = 0;
    char err[512];
    sli_chk_store *s = NULL;
    if (sli_chk_store_open(&s, dir, NULL, 0, 1, err, sizeof err) < 0) {
        fprintf(stderr, "sluice checkpoints: %s\n", err);
        goto fail;
    }
    FILE *probe = fopen(dir, "r");
    if (!probe) {
        fprintf(stderr, "sluice checkpoints: %s: no such directory\n", dir);
        goto fail;
    }
    fclose(probe);
    if (sli_chk_list(s, &ids, &n) < 0) {
        fprintf(stderr, "sluice checkpoints: %s\n", sli_chk_store_errmsg(s));
        goto fail;
    }
    if (n == 0) {
        printf("no checkpoints in %s\n", dir);
        status = 0;
        goto fail;
    }
    printf("%-6s %-24s %10s  %-10s  %s\n", "id", "time (UTC)", "bytes", "state",
           "source positions");
    for (size_t i = 0; i < n; i++) {
        sli_chk_reader *r = NULL;
        int rc = sli_chk_open(s, ids[i], &r);
        printf("%-6" PRIu64 " ", ids[i]);
        print_time(rc == 0 ? sli_chk_reader_created_ms(r) : -1);
        printf(" %10" PRIu64 "  ", sli_chk_bytes(s, ids[i]));
        if (rc == 0) {
            printf("%-10s ", "complete");
            for (size_t k = 0; k < sli_chk_reader_npositions(r); k++)
                print_position(sli_chk_reader_position_at(r, k));
            if (sli_chk_reader_npositions(r) == 0) printf(" -");
        } else {
            /* The store's message starts "checkpoint N ..." or
             * "checkpoint N: ...": print what follows. */
            const char *m = sli_chk_store_errmsg(s);
            const char *p = strchr(m, ' ');
            p = p ? strchr(p + 1, ' ') : NULL;
            p = p ? p + 1 : m;
            if (rc == SL_ENOENT) p = "no manifest";
            printf("%-10s  %s", rc == SL_ENOENT ? "incomplete" : "corrupt", p);
        }
        printf("\n");
        sli_chk_reader_free(r);
    }
    status = 0;
    if (fflush(stdout) != 0 && !cli_output_closed()) {
        fprintf(stderr, "sluice checkpoints: writing the output failed\n");
        status = 1;
    }
fail:
    free(ids);
    sli_chk_store_free(s);
    return status;
}
