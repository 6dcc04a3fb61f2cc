/*
 * tests/fuzz/fuzz_segment_reader.c - libFuzzer target for the broker's
 * segment reader and its recovery (connectors/broker/reader.c, log.c), over
 * segment files of any content.
 *
 * Input layout:
 *
 *   offset  size  field
 *   ------  ----  -------------------------------------------------------
 *        0     1  mode    bit 0: the segment is sealed (a valid segment follows
 *                                it where the input's valid batches end)
 *                         bit 1: open the partition for writing first
 *                                (recovery scan and truncation of the tail,
 *                                then one append), as a producer would
 *                         bit 2: the file is named by base FUZZ_ODD_BASE
 *                                instead of 0 (a segment renamed or copied
 *                                under a base that is not its first offset)
 *        1     *  the bytes of segment file 00000000000000000000.log
 *
 * Each run writes those files into a fixed temporary partition directory
 * (made once per process, topic "t", one partition), opens a reader at the
 * beginning and reads with timeout 0 until it answers anything but a record.
 * It must never crash, read out of bounds (ASan) or hang (libFuzzer's
 * -timeout); errors are expected. The number of records read is bounded by
 * the input size plus the one appended and the follower's, so a reader that
 * returned more (looping over the same batch) is a violation: the target
 * aborts (libFuzzer reports it as a crash).
 *
 * fuzz_segment_run() is also the entry point of the corpus replay,
 * tests/unit/test_broker_fuzz_segment.c, which checks the verdict of the
 * named seeds (valid-*: read whole; bad-*: SL_ECORRUPT) and writes them with
 * --generate.
 *
 * Build: tests/fuzz/build.sh (clang -fsanitize=fuzzer,address,undefined).
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connectors/broker/batch.h"
#include "sluice/broker.h"

#define FUZZ_NEXT_BASE 1000000 /* base of the segment that seals the input */
#define FUZZ_ODD_BASE  7       /* mode bit 2: the input's file name's base */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_seg_result {
    long records; /* records returned */
    int rc;       /* the reader's last answer: SL_EAGAIN at the end, or an error */
    int append_rc;
    const char *violation; /* NULL, or what the reader did that it must not */
} fuzz_seg_result;

static char fz_dir[256];  /* the broker directory */
static char fz_pdir[512]; /* its partition t/0 */

static void fz_die(const char *what)
{
    fprintf(stderr, "fuzz_segment_reader: %s\n", what);
    abort();
}

static void fz_write(const char *name, const uint8_t *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fz_pdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fz_die("cannot write a segment file");
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k <= 0) fz_die("short write");
        p += k, n -= (size_t)k;
    }
    close(fd);
}

/* Removes every segment and index file of the partition (not .lock). */
static void fz_clear(void)
{
    DIR *d = opendir(fz_pdir);
    if (!d) fz_die("cannot list the partition");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", fz_pdir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static int fz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* The temporary directory goes when the process exits. */
static void fz_cleanup(void)
{
    if (fz_dir[0]) nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static void fz_init(void)
{
    if (fz_dir[0]) return;
    const char *tmp = getenv("TMPDIR");
    snprintf(fz_dir, sizeof fz_dir, "%s/fuzz-segment-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fz_dir)) fz_die("mkdtemp");
    atexit(fz_cleanup);
    sl_broker *b = NULL;
    if (sl_broker_open(&b, fz_dir, 0) != 0) fz_die("sl_broker_open");
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = 1;
    if (sl_topic_create(b, "t", &c) != 0) fz_die("sl_topic_create");
    sl_broker_close(b);
    snprintf(fz_pdir, sizeof fz_pdir, "%s/t/0", fz_dir);
}

/* One valid batch of n records at base (the follower segment, the seeds). */
static size_t fz_batch(slb_builder *bb, int64_t base, int n)
{
    slb_builder_reset(bb, base);
    for (int i = 0; i < n; i++) {
        char v[32];
        int k = snprintf(v, sizeof v, "value-%d", i);
        sl_record r = {.key = "k", .key_len = 1, .value = v, .value_len = (size_t)k};
        slb_builder_add(bb, &r, 1700000000000LL + i, i);
    }
    return slb_builder_finish(bb, -1);
}

static void fuzz_segment_run(const uint8_t *data, size_t size, fuzz_seg_result *res)
{
    memset(res, 0, sizeof *res);
    fz_init();
    fz_clear();
    uint8_t mode = size ? data[0] : 0;
    const uint8_t *seg = size ? data + 1 : data;
    size_t seglen = size ? size - 1 : 0;
    char segname[64];
    snprintf(segname, sizeof segname, "%020d.log", mode & 4 ? FUZZ_ODD_BASE : 0);
    fz_write(segname, seg, seglen);
    long follower = 0;
    if (mode & 1) {
        slb_builder bb;
        slb_builder_init(&bb);
        /* The follower starts where the input's valid batches end, so that a
         * valid input stays a valid log (no gap); a damaged one may leave a
         * gap, which the reader must report. */
        int64_t next = mode & 4 ? FUZZ_ODD_BASE : 0;
        for (size_t at = 0; at < seglen;) {
            slb_batch_hdr h;
            if (slb_batch_check(seg + at, seglen - at, &h, true) != 0 || h.length == 0) break;
            next = slb_next_offset(&h);
            at += h.length;
        }
        int64_t base = mode & 4 ? FUZZ_ODD_BASE : 0;
        if (next <= base) next = base + 1; /* never the input's own file name */
        if (next > FUZZ_NEXT_BASE) next = FUZZ_NEXT_BASE;
        size_t n = fz_batch(&bb, next, 2);
        char name[64];
        snprintf(name, sizeof name, "%020lld.log", (long long)next);
        fz_write(name, bb.buf, n);
        slb_builder_free(&bb);
        follower = 2;
    }
    sl_broker *b = NULL;
    if (sl_broker_open(&b, fz_dir, 0) != 0) fz_die("sl_broker_open");
    long appended = 0;
    if (mode & 2) {
        sl_record r = {.value = "appended", .value_len = 8, .timestamp = 1};
        res->append_rc = sl_log_append(b, "t", 0, &r, 1, NULL);
        appended = res->append_rc == 0;
    }
    sl_log_reader *r = NULL;
    res->rc = sl_log_reader_open(&r, b, "t", 0, SL_OFFSET_BEGINNING);
    if (res->rc == 0) {
        /* A record takes at least 7 bytes and a batch 44: more records than
         * bytes means the reader went round in circles. */
        long bound = (long)seglen + appended + follower + 1;
        sl_message m;
        while ((res->rc = sl_log_reader_next(r, &m, 0)) == 0) {
            if (++res->records > bound) {
                res->violation = "the reader returned more records than the input can hold";
                break;
            }
        }
        sl_log_reader_close(r);
    }
    sl_broker_close(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_seg_result res;
    fuzz_segment_run(data, size, &res);
    if (res.violation) fz_die(res.violation);
    return 0;
}
