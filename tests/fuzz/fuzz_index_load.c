/*
 * tests/fuzz/fuzz_index_load.c - libFuzzer target for index loading
 * (connectors/broker/index.c: slb_index_load) and for its users: a reader
 * seeking through the offset index (reader.c) and a writer opening the
 * partition (log.c loads the indexes of sealed segments).
 *
 * A fixed, valid partition is made once per process in a temporary
 * directory: segment 0 (FZI_BATCHES batches of 3 records, big enough for
 * several sparse index entries) and, after it, segment FZI_SEALED_END (2
 * records), so that segment 0 is sealed. Record o has the value "r<o>". The
 * genuine .index and .timeindex of segment 0 are written with
 * slb_index_write, as the writer does when it seals a segment.
 *
 * Input layout:
 *
 *   offset  size  field
 *   ------  ----  -------------------------------------------------------
 *        0     1  mode   bit 0: the input is segment 0's .timeindex (else
 *                               its .index)
 *                        bit 1: the other index file is the genuine one
 *                               (else it is absent)
 *                        bit 2: open the partition for writing and append
 *                               one record first ("appended")
 *        1     2  seek   uint16 LE; the reader starts at seek % records
 *        3     *  the bytes of the index file
 *
 * Index files are hints: whatever their content, slb_index_load returns 0,
 * SL_ENOENT or SL_ECORRUPT and never reads out of bounds, and the reader
 * returns exactly the records of the log from the seek offset on, in order,
 * then SL_EAGAIN. Anything else is a violation (the target aborts).
 *
 * fuzz_index_run() is also the entry point of the corpus replay,
 * tests/unit/test_broker_fuzz_index.c (which writes the seeds with
 * --generate). Build: tests/fuzz/build.sh.
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
#include "connectors/broker/segment.h"
#include "sluice/broker.h"

#define FZI_BATCHES    200
#define FZI_PER_BATCH  3
#define FZI_SEALED_END (FZI_BATCHES * FZI_PER_BATCH) /* base of the second segment */
#define FZI_RECORDS    (FZI_SEALED_END + 2)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_index_result {
    int load_rc; /* slb_index_load of the fuzzed file */
    int append_rc;
    long records; /* records read from the seek offset */
    const char *violation;
    char why[200];
} fuzz_index_result;

static char fzi_dir[256];
static char fzi_pdir[512];
static uint8_t *fzi_genuine[2]; /* .index, .timeindex */
static size_t fzi_genuine_len[2];
static uint8_t *fzi_seg1;
static size_t fzi_seg1_len;

static void fzi_die(const char *what)
{
    fprintf(stderr, "fuzz_index_load: %s\n", what);
    abort();
}

static void fzi_path(char *buf, size_t cap, int64_t base, const char *ext)
{
    snprintf(buf, cap, "%s/%020lld.%s", fzi_pdir, (long long)base, ext);
}

static void fzi_write(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fzi_die("cannot write a file");
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k <= 0) fzi_die("short write");
        p += k, n -= (size_t)k;
    }
    close(fd);
}

static uint8_t *fzi_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fzi_die("cannot read a file it wrote");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
    if (!p || fread(p, 1, (size_t)len, f) != (size_t)len) fzi_die("short read");
    fclose(f);
    *n = (size_t)len;
    return p;
}

static size_t fzi_batch(slb_builder *bb, int64_t base, int n)
{
    slb_builder_reset(bb, base);
    for (int i = 0; i < n; i++) {
        char v[32];
        int k = snprintf(v, sizeof v, "r%lld", (long long)(base + i));
        sl_record r = {.value = v, .value_len = (size_t)k};
        slb_builder_add(bb, &r, 1700000000000LL + base + i, i);
    }
    return slb_builder_finish(bb, -1);
}

static int fzi_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* The temporary directory goes when the process exits. */
static void fzi_cleanup(void)
{
    if (fzi_dir[0]) nftw(fzi_dir, fzi_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static void fzi_init(void)
{
    if (fzi_dir[0]) return;
    const char *tmp = getenv("TMPDIR");
    snprintf(fzi_dir, sizeof fzi_dir, "%s/fuzz-index-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fzi_dir)) fzi_die("mkdtemp");
    atexit(fzi_cleanup);
    sl_broker *b = NULL;
    if (sl_broker_open(&b, fzi_dir, 0) != 0) fzi_die("sl_broker_open");
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    if (sl_topic_create(b, "t", &c) != 0) fzi_die("sl_topic_create");
    sl_broker_close(b);
    snprintf(fzi_pdir, sizeof fzi_pdir, "%s/t/0", fzi_dir);

    /* Segment 0 and its in-memory indexes, as the writer keeps them. */
    slb_builder bb;
    slb_builder_init(&bb);
    slb_segment s;
    memset(&s, 0, sizeof s);
    slb_seg_reset(&s, 0);
    uint8_t *log = NULL;
    size_t len = 0;
    for (int i = 0; i < FZI_BATCHES; i++) {
        size_t n = fzi_batch(&bb, (int64_t)i * FZI_PER_BATCH, FZI_PER_BATCH);
        slb_batch_hdr h;
        if (slb_batch_check(bb.buf, n, &h, true) != 0) fzi_die("a batch it built does not decode");
        if (slb_seg_note_batch(&s, (int64_t)len, &h) != 0) fzi_die("slb_seg_note_batch");
        log = realloc(log, len + n);
        if (!log) fzi_die("out of memory");
        memcpy(log + len, bb.buf, n);
        len += n;
    }
    char path[1024];
    fzi_path(path, sizeof path, 0, "log");
    fzi_write(path, log, len);
    free(log);
    if (slb_seg_seal_tidx(&s) != 0) fzi_die("slb_seg_seal_tidx");
    if (slb_index_write(fzi_pdir, &s, false) != 0 || slb_index_write(fzi_pdir, &s, true) != 0)
        fzi_die("slb_index_write");
    slb_seg_free(&s);
    fzi_path(path, sizeof path, 0, "index");
    fzi_genuine[0] = fzi_read(path, &fzi_genuine_len[0]);
    fzi_path(path, sizeof path, 0, "timeindex");
    fzi_genuine[1] = fzi_read(path, &fzi_genuine_len[1]);
    size_t n = fzi_batch(&bb, FZI_SEALED_END, 2);
    fzi_seg1 = malloc(n);
    if (!fzi_seg1) fzi_die("out of memory");
    memcpy(fzi_seg1, bb.buf, n);
    fzi_seg1_len = n;
    slb_builder_free(&bb);
}

static void fuzz_index_run(const uint8_t *data, size_t size, fuzz_index_result *res)
{
    memset(res, 0, sizeof *res);
    fzi_init();
    uint8_t mode = size > 0 ? data[0] : 0;
    unsigned seek = size > 2 ? (unsigned)data[1] | (unsigned)data[2] << 8 : 0;
    const uint8_t *ix = size > 3 ? data + 3 : data;
    size_t ixlen = size > 3 ? size - 3 : 0;
    int which = mode & 1, other = !which;
    char path[1024];
    /* The second segment as made (an append in mode bit 2 grows it). */
    fzi_path(path, sizeof path, FZI_SEALED_END, "log");
    fzi_write(path, fzi_seg1, fzi_seg1_len);
    fzi_path(path, sizeof path, FZI_SEALED_END, "index");
    unlink(path);
    fzi_path(path, sizeof path, FZI_SEALED_END, "timeindex");
    unlink(path);
    static const char *const ext[2] = {"index", "timeindex"};
    fzi_path(path, sizeof path, 0, ext[which]);
    fzi_write(path, ix, ixlen);
    fzi_path(path, sizeof path, 0, ext[other]);
    if (mode & 2)
        fzi_write(path, fzi_genuine[other], fzi_genuine_len[other]);
    else
        unlink(path);

    void *entries = NULL;
    size_t nent = 0;
    int64_t lsz = 0;
    res->load_rc = slb_index_load(fzi_pdir, 0, which == 1, &entries, &nent, &lsz);
    free(entries);
    if (res->load_rc != 0 && res->load_rc != SL_ENOENT && res->load_rc != SL_ECORRUPT) {
        snprintf(res->why, sizeof res->why, "slb_index_load returned %d", res->load_rc);
        res->violation = res->why;
        return;
    }
    entries = NULL;
    (void)slb_index_load(fzi_pdir, 0, which != 1, &entries, &nent, &lsz);
    free(entries);

    sl_broker *b = NULL;
    if (sl_broker_open(&b, fzi_dir, 0) != 0) fzi_die("sl_broker_open");
    long total = FZI_RECORDS;
    if (mode & 4) {
        sl_record r = {.value = "appended", .value_len = 8, .timestamp = 1};
        int64_t at = -1;
        res->append_rc = sl_log_append(b, "t", 0, &r, 1, &at);
        if (res->append_rc == 0 && at != FZI_RECORDS) {
            snprintf(res->why, sizeof res->why,
                     "an append after loading the index took offset %lld, not %d", (long long)at,
                     FZI_RECORDS);
            res->violation = res->why;
        }
        if (res->append_rc == 0) total++;
    }
    int64_t from = (int64_t)(seek % FZI_RECORDS);
    sl_log_reader *r = NULL;
    int rc = res->violation ? -1 : sl_log_reader_open(&r, b, "t", 0, from);
    if (rc == 0) {
        sl_message m;
        int64_t want = from;
        while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
            char v[32];
            int k = want < FZI_RECORDS ? snprintf(v, sizeof v, "r%lld", (long long)want)
                                       : snprintf(v, sizeof v, "appended");
            if (m.offset != want || m.value_len != (size_t)k ||
                memcmp(m.value, v, (size_t)k) != 0) {
                snprintf(res->why, sizeof res->why,
                         "reading from %lld: record %lld where offset %lld ('%s') was expected",
                         (long long)from, (long long)m.offset, (long long)want, v);
                res->violation = res->why;
                break;
            }
            want++, res->records++;
        }
        if (!res->violation && (rc != SL_EAGAIN || want != total)) {
            snprintf(res->why, sizeof res->why,
                     "reading from %lld: ended at %lld of %ld with %d (%s)", (long long)from,
                     (long long)want, total, rc, sl_log_reader_errmsg(r));
            res->violation = res->why;
        }
        sl_log_reader_close(r);
    } else if (!res->violation) {
        snprintf(res->why, sizeof res->why, "sl_log_reader_open at %lld: %d", (long long)from, rc);
        res->violation = res->why;
    }
    sl_broker_close(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_index_result res;
    fuzz_index_run(data, size, &res);
    if (res.violation) fzi_die(res.violation);
    return 0;
}
