/*
 * cli/cmd_checkpoints.c - `sluice checkpoints DIR`: list the checkpoints of
 * a checkpoint directory, newest last, one line each:
 *
 *     id  time (UTC)                bytes  state       source positions
 *     7   2026-11-30T20:37:43.120Z  10412  complete    src[0]=4096 src[1]=0x78797a
 *     8   -                          2048  incomplete  no manifest
 *
 * The list comes from the public sluice/checkpoint.h, which verifies each
 * checkpoint fully (manifest and every state file by CRC) without a graph to
 * compare with: "complete" means what a restore would accept; a corrupt one
 * says why. A position of 8 bytes is printed as the
 * little-endian uint64 (offsets and sequence numbers are stored so), any
 * other as 0x and hex.
 * It changes nothing.
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

static void print_position(const sl_checkpoint_position *p)
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
    char err[512];
    sl_checkpoint_list *l = NULL;
    if (sl_checkpoint_list_open(&l, dir, err, sizeof err) < 0) {
        fprintf(stderr, "sluice checkpoints: %s\n", err);
        goto fail;
    }
    size_t n = sl_checkpoint_list_count(l);
    if (n == 0) {
        printf("no checkpoints in %s\n", dir);
        status = 0;
        goto fail;
    }
    printf("%-6s %-24s %10s  %-10s  %s\n", "id", "time (UTC)", "bytes", "state",
           "source positions");
    for (size_t i = 0; i < n; i++) {
        sl_checkpoint_info info;
        if (sl_checkpoint_list_get(l, i, &info) < 0) break;
        printf("%-6" PRIu64 " ", info.id);
        print_time(info.created_ms);
        printf(" %10" PRIu64 "  ", info.bytes);
        if (info.status == 0) {
            printf("%-10s ", "complete");
            sl_checkpoint_position p;
            for (size_t k = 0; sl_checkpoint_list_position(l, i, k, &p) == 0; k++)
                print_position(&p);
            if (info.n_positions == 0) printf(" -");
        } else {
            printf("%-10s  %s", info.status == SL_ENOENT ? "incomplete" : "corrupt",
                   info.status == SL_ENOENT ? "no manifest" : info.problem);
        }
        printf("\n");
    }
    status = 0;
    if (fflush(stdout) != 0 && !cli_output_closed()) {
        fprintf(stderr, "sluice checkpoints: writing the output failed\n");
        status = 1;
    }
fail:
    sl_checkpoint_list_free(l);
    return status;
}
