/*
 * tests/unit/test_broker_integrity.c - damage to a partition is always
 * reported, never a hang, a silent gap or a silent truncation (issue 8):
 *
 *  - a segment renamed to a higher base or copied under another name: the
 *    reader reports corruption (it used to loop forever re-reading a sealed
 *    segment);
 *  - a middle sealed segment emptied, deleted or truncated at a batch
 *    boundary: the reader reports the missing offsets instead of jumping;
 *  - a flipped byte in a complete batch of the active segment followed by
 *    valid batches: readers report it, the writer refuses to append (nothing
 *    is truncated) until sl_topic_repair, which says what it drops; a torn
 *    tail is still cut silently;
 *  - the active segment deleted: the next append refuses instead of reusing
 *    its offsets.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sluice/broker.h"
#include "tests/unit/test_broker_util.h"

#define NSEG 8

/* Value of the record at offset o. */
static size_t make_value(char *buf, int64_t o)
{
    return (size_t)snprintf(buf, 64, "value-%026lld", (long long)o); /* 32 bytes */
}

static void append_n(sl_broker *b, const char *topic, int count)
{
    sl_record rs[64];
    char vals[64][64];
    for (int k = 0; k < count;) {
        int n = count - k < 50 ? count - k : 50;
        sl_topic_info *ti;
        assert_int_equal(sl_topic_describe(b, topic, &ti), 0);
        int64_t next = ti->partitions[0].next_offset;
        sl_topic_info_free(ti);
        for (int i = 0; i < n; i++) {
            memset(&rs[i], 0, sizeof rs[i]);
            rs[i].value = vals[i];
            rs[i].value_len = make_value(vals[i], next + i);
        }
        int64_t base;
        assert_int_equal(sl_log_append(b, topic, 0, rs, (size_t)n, &base), 0);
        assert_int_equal(base, next);
        k += n;
    }
}

/* Read the whole partition; every record returned must be the one appended,
 * in order, without a jump. Returns the records read; *rc the last code;
 * err the reader's message. */
static long read_all(sl_broker *b, const char *topic, int *rc_out, char *err)
{
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, b, topic, 0, SL_OFFSET_BEGINNING), 0);
    long n = 0;
    int64_t expect = -1;
    sl_message m;
    int rc;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        char v[64];
        size_t vl = make_value(v, m.offset);
        if (expect >= 0) assert_int_equal(m.offset, expect); /* never a silent jump */
        assert_int_equal(m.value_len, vl);
        assert_memory_equal(m.value, v, vl);
        expect = m.offset + 1;
        n++;
    }
    /* Asked again, the reader says the same (it stays at the damage). */
    if (rc == SL_ECORRUPT) assert_int_equal(sl_log_reader_next(r, &m, 0), SL_ECORRUPT);
    *rc_out = rc;
    snprintf(err, 512, "%s", sl_log_reader_errmsg(r));
    sl_log_reader_close(r);
    return n;
}

/* A topic "t" of NSEG sealed segments of 50 records each (one batch of 50
 * each: segment_bytes is below one batch of ~2 KB), plus an empty active one. */
static char *make_log(int nseg)
{
    char *dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = 1024;
    assert_int_equal(sl_topic_create(b, "t", &c), 0);
    for (int i = 0; i < nseg; i++) append_n(b, "t", 50);
    assert_int_equal(sl_broker_close(b), 0);
    return dir;
}

static void seg_path(char *buf, size_t cap, const char *dir, int64_t base, const char *ext)
{
    snprintf(buf, cap, "%s/t/0/%020" PRId64 ".%s", dir, base, ext);
}

static void copy_file(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    assert_non_null(f);
    assert_non_null(g);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) assert_int_equal(fwrite(buf, 1, n, g), n);
    fclose(f);
    fclose(g);
}

/* Open, read all, expect corruption naming the topic, the partition and
 * what; at most `most` records before it. */
static void expect_corrupt(const char *dir, long most, const char *what)
{
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    int rc;
    char err[512];
    long n = read_all(b, "t", &rc, err);
    if (rc != SL_ECORRUPT)
        fail_msg("expected corruption, got %d after %ld records: %s", rc, n, err);
    assert_true(n <= most);
    assert_non_null(strstr(err, "topic 't' partition 0"));
    if (!strstr(err, what)) fail_msg("message '%s' does not say '%s'", err, what);
    sl_broker_close(b);
}

/* Issue 8 item 1: segment 100 renamed to 110 (and to a base above every
 * other segment), or copied under another name: reported, no hang. */
static void test_renamed_or_copied_segment(void **state)
{
    (void)state;
    char a[4200], z[4200];
    const int64_t to[] = {110, 149, 900};
    for (size_t k = 0; k < sizeof to / sizeof to[0]; k++) {
        char *dir = make_log(6);
        seg_path(a, sizeof a, dir, 100, "log");
        seg_path(z, sizeof z, dir, to[k], "log");
        assert_int_equal(rename(a, z), 0);
        expect_corrupt(dir, 100, "offset");
        tb_rmrf(dir);
        free(dir);
    }
    /* A copy of segment 100 under the names 110, 120 and 90. */
    const int64_t copies[] = {110, 120, 90, 1000};
    for (size_t k = 0; k < sizeof copies / sizeof copies[0]; k++) {
        char *dir = make_log(6);
        seg_path(a, sizeof a, dir, 100, "log");
        seg_path(z, sizeof z, dir, copies[k], "log");
        copy_file(a, z);
        expect_corrupt(dir, 300, "offset");
        tb_rmrf(dir);
        free(dir);
    }
}

/* Issue 8 item 3: a middle sealed segment emptied, deleted, or truncated at
 * a batch boundary: the reader reports the missing offsets. */
static void test_gap_in_sealed_segments(void **state)
{
    (void)state;
    char p[4200];
    for (int how = 0; how < 2; how++) {
        char *dir = make_log(NSEG);
        seg_path(p, sizeof p, dir, 200, "log");
        if (how == 0) assert_int_equal(truncate(p, 0), 0);
        if (how == 1) assert_int_equal(unlink(p), 0);
        expect_corrupt(dir, 200, "missing");
        tb_rmrf(dir);
        free(dir);
    }
    /* Segments of two batches: cut a segment after its first batch. */
    char *dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = 2100;
    assert_int_equal(sl_topic_create(b, "t", &c), 0);
    for (int i = 0; i < 16; i++) append_n(b, "t", 25);
    assert_int_equal(sl_broker_close(b), 0);
    seg_path(p, sizeof p, dir, 100, "log");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(truncate(p, st.st_size / 2), 0); /* two equal batches */
    char ip[4200];
    seg_path(ip, sizeof ip, dir, 100, "index");
    (void)unlink(ip);
    seg_path(ip, sizeof ip, dir, 100, "timeindex");
    (void)unlink(ip);
    expect_corrupt(dir, 125, "offsets 125..149 are missing");
    tb_rmrf(dir);
    free(dir);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* Issue 8 item 2: eight batches of 50 in the active segment (fsync always),
 * one byte flipped in one of the first seven: readers return exactly the
 * batches before it and then report corruption; appends are refused and
 * truncate nothing; sl_topic_repair cuts it and says what it dropped; then
 * appends go on from the corrupt batch's offset. A flip in the last batch is
 * a torn tail: cut silently by the next writer, as before. */
static void test_flip_in_active_segment(void **state)
{
    (void)state;
    char *dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.fsync = SL_FSYNC_ALWAYS;
    assert_int_equal(sl_topic_create(b, "t", &c), 0);
    int64_t ends[9] = {0};
    char p[4200];
    seg_path(p, sizeof p, dir, 0, "log");
    for (int i = 0; i < 8; i++) {
        append_n(b, "t", 50);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        ends[i + 1] = st.st_size;
    }
    assert_int_equal(sl_broker_close(b), 0);
    size_t len;
    char *pristine = slurp(p, &len);
    char *copy = malloc(len);
    int trials = 0;
    for (size_t pos = 3; pos < len; pos += 41) {
        int batch = 0;
        while ((int64_t)pos >= ends[batch + 1]) batch++;
        memcpy(copy, pristine, len);
        copy[pos] ^= (char)(1 << (pos % 8));
        spit(p, copy, len);
        assert_int_equal(sl_broker_open(&b, dir, 0), 0);
        int rc;
        char err[512];
        long n = read_all(b, "t", &rc, err);
        assert_int_equal(n, 50L * batch); /* exactly the prefix */
        sl_record r = {.value = "x", .value_len = 1};
        int64_t off;
        if (batch == 7) { /* the last batch: a torn tail, cut by the writer */
            assert_int_equal(rc, SL_EAGAIN);
            assert_int_equal(sl_log_append(b, "t", 0, &r, 1, &off), 0);
            assert_int_equal(off, 350);
            sl_broker_close(b);
            trials++;
            continue;
        }
        assert_int_equal(rc, SL_ECORRUPT);
        assert_non_null(strstr(err, "topic 't' partition 0"));
        char want[64];
        snprintf(want, sizeof want, "offset %d ", 50 * batch);
        if (!strstr(err, want)) fail_msg("'%s' does not name %s", err, want);
        snprintf(want, sizeof want, "byte %" PRId64, ends[batch]);
        if (!strstr(err, want)) fail_msg("'%s' does not name %s", err, want);
        /* The writer refuses and truncates nothing. */
        assert_int_equal(sl_log_append(b, "t", 0, &r, 1, &off), SL_ECORRUPT);
        assert_non_null(strstr(sl_broker_errmsg(b), "repair"));
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal((size_t)st.st_size, len);
        /* Repair says what it drops, and only then cuts. */
        sl_repair_info ri;
        assert_int_equal(sl_topic_repair(b, "t", 0, &ri), 0);
        assert_int_equal(ri.segment, 0);
        assert_int_equal(ri.byte, ends[batch]);
        assert_int_equal(ri.bytes_dropped, (int64_t)len - ends[batch]);
        assert_int_equal(ri.first_offset_dropped, 50 * batch);
        assert_int_equal(ri.last_offset_dropped, 399);
        assert_int_equal(sl_log_append(b, "t", 0, &r, 1, &off), 0);
        assert_int_equal(off, 50 * batch);
        assert_int_equal(sl_topic_repair(b, "t", 0, &ri), 0); /* nothing left to do */
        assert_int_equal(ri.segment, -1);
        sl_broker_close(b);
        trials++;
    }
    assert_true(trials > 50);
    free(copy);
    free(pristine);
    tb_rmrf(dir);
    free(dir);
}

/* Issue 8 item 3: the active segment deleted: readers report it, the next
 * append refuses instead of reusing its offsets, repair accepts the loss. */
static void test_deleted_active_segment(void **state)
{
    (void)state;
    char *dir = make_log(NSEG); /* segments 0..350 sealed, 400 active (empty) */
    char p[4200];
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    append_n(b, "t", 20); /* 400..419 in the active segment */
    assert_int_equal(sl_broker_close(b), 0);
    seg_path(p, sizeof p, dir, 400, "log");
    assert_int_equal(unlink(p), 0);
    expect_corrupt(dir, 400, "00000000000000000400.log");
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_record r = {.value = "x", .value_len = 1};
    int64_t off;
    assert_int_equal(sl_log_append(b, "t", 0, &r, 1, &off), SL_ECORRUPT);
    assert_non_null(strstr(sl_broker_errmsg(b), "offsets from 400 on are missing"));
    sl_repair_info ri;
    assert_int_equal(sl_topic_repair(b, "t", 0, &ri), 0);
    assert_int_equal(ri.missing, 1);
    assert_int_equal(ri.first_offset_dropped, 400);
    assert_int_equal(sl_log_append(b, "t", 0, &r, 1, &off), 0);
    assert_int_equal(off, 400);
    sl_broker_close(b);
    tb_rmrf(dir);
    free(dir);
}

/* The first segment deleted by hand is a gap (the log start says 0);
 * deleted by retention it is not (the log start moved first). */
static void test_log_start(void **state)
{
    (void)state;
    char *dir = make_log(NSEG);
    char p[4200];
    seg_path(p, sizeof p, dir, 0, "log");
    assert_int_equal(unlink(p), 0);
    expect_corrupt(dir, 0, "offsets 0..49 are missing");
    tb_rmrf(dir);
    free(dir);

    dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = 1024;
    c.retention_bytes = 5000; /* about two segments of ~2 KB */
    assert_int_equal(sl_topic_create(b, "t", &c), 0);
    for (int i = 0; i < NSEG; i++) append_n(b, "t", 50);
    assert_int_equal(sl_topic_clean(b, "t", 0), 0);
    assert_int_equal(sl_broker_close(b), 0);
    seg_path(p, sizeof p, dir, 0, "log");
    assert_int_equal(access(p, F_OK), -1); /* retention did delete */
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    int rc;
    char err[512];
    long n = read_all(b, "t", &rc, err);
    if (rc != SL_EAGAIN) fail_msg("%s", err);
    assert_true(n > 0 && n < 400);
    sl_broker_close(b);
    tb_rmrf(dir);
    free(dir);
}

/* Issue 8 item 7: a reader that falls behind retention says what it
 * skipped (sl_log_reader_skipped), and reports no corruption. */
static void test_retention_skip_reported(void **state)
{
    (void)state;
    char *dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = 1024;
    c.retention_bytes = 5000;
    assert_int_equal(sl_topic_create(b, "t", &c), 0);
    append_n(b, "t", 50);
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, b, "t", 0, SL_OFFSET_BEGINNING), 0);
    sl_message m;
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(m.offset, 0);
    assert_int_equal(sl_log_reader_skipped(r, NULL, NULL), 0);
    for (int i = 0; i < NSEG; i++) append_n(b, "t", 50); /* retention runs at the rolls */
    int64_t expect = 1, from = -1, to = -1;
    int rc, skips = 0;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        if (m.offset != expect) {
            assert_int_equal(sl_log_reader_skipped(r, &from, &to), 1);
            assert_int_equal(from, expect);
            assert_int_equal(to, m.offset);
            skips++;
        } else {
            assert_int_equal(sl_log_reader_skipped(r, NULL, NULL), 0);
        }
        expect = m.offset + 1;
    }
    assert_int_equal(rc, SL_EAGAIN);
    assert_int_equal(skips, 1);
    assert_true(from == 50 && to > 50);
    assert_int_equal(expect, 450);
    sl_log_reader_close(r);
    /* Opening below the log start says so too. */
    assert_int_equal(sl_log_reader_open(&r, b, "t", 0, 3), 0);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(sl_log_reader_skipped(r, &from, &to), 1);
    assert_int_equal(from, 3);
    assert_int_equal(to, m.offset);
    sl_log_reader_close(r);
    sl_broker_close(b);
    tb_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renamed_or_copied_segment),
        cmocka_unit_test(test_gap_in_sealed_segments),
        cmocka_unit_test(test_flip_in_active_segment),
        cmocka_unit_test(test_deleted_active_segment),
        cmocka_unit_test(test_log_start),
        cmocka_unit_test(test_retention_skip_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
