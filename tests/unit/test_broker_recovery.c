/*
 * tests/unit/test_broker_recovery.c - recovery of the built-in broker's log:
 *
 *  - torn tail: the active segment cut at every byte offset of its last two
 *    batches; reopening keeps exactly the complete batches and appends go on
 *    right after them (also with garbage instead of a cut);
 *  - bit flips in a sealed segment: every flip is reported as SL_ECORRUPT with
 *    topic, partition and offset, and no record that differs from what was
 *    appended is ever returned;
 *  - missing or corrupt index files are rebuilt.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "connectors/broker/batch.h"
#include "sluice/broker.h"
#include "tests/unit/test_broker_util.h"

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

/* Value of the record at offset o: "val-<o>-" plus o % 37 letters. */
static size_t make_value(char *buf, int64_t o)
{
    int n = snprintf(buf, 64, "val-%lld-", (long long)o);
    for (int i = 0; i < o % 37; i++) buf[n++] = (char)('a' + i % 26);
    return (size_t)n;
}

/* Append count records as one batch; values per make_value. */
static void append_batch(sl_broker *b, const char *topic, int count)
{
    sl_record rs[16];
    char vals[16][80];
    sl_topic_info *ti;
    assert_int_equal(sl_topic_describe(b, topic, &ti), 0);
    int64_t next = ti->partitions[0].next_offset;
    sl_topic_info_free(ti);
    for (int i = 0; i < count; i++) {
        memset(&rs[i], 0, sizeof rs[i]);
        rs[i].key = "k";
        rs[i].key_len = 1;
        rs[i].value = vals[i];
        rs[i].value_len = make_value(vals[i], next + i);
    }
    int64_t base;
    assert_int_equal(sl_log_append(b, topic, 0, rs, (size_t)count, &base), 0);
    assert_int_equal(base, next);
}

/* Read everything; check each record against make_value. Returns the count
 * of records, or -1 if the reader reported corruption (*errmsg copied). */
static long read_check(sl_broker *b, const char *topic, char *errmsg)
{
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, b, topic, 0, SL_OFFSET_BEGINNING), 0);
    long n = 0;
    int64_t expect = 0;
    sl_message m;
    int rc;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        char v[80];
        size_t vl = make_value(v, m.offset);
        assert_true(m.offset >= expect);
        assert_int_equal(m.value_len, vl);
        assert_memory_equal(m.value, v, vl); /* never a corrupt record */
        expect = m.offset + 1;
        n++;
    }
    if (rc == SL_ECORRUPT) {
        snprintf(errmsg, 512, "%s", sl_log_reader_errmsg(r));
        n = -1;
    } else {
        assert_int_equal(rc, SL_EAGAIN);
    }
    sl_log_reader_close(r);
    return n;
}

static void test_torn_tail_every_byte(void **state)
{
    (void)state;
    char *dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    assert_int_equal(sl_topic_create(b, "torn", NULL), 0);
    int counts[] = {3, 1, 5, 2, 4};
    int64_t ends[6] = {0}; /* byte end of each batch */
    int64_t recs[6] = {0}; /* records up to and including batch i */
    char path[4200];
    snprintf(path, sizeof path, "%s/torn/0/00000000000000000000.log", dir);
    for (int i = 0; i < 5; i++) {
        append_batch(b, "torn", counts[i]);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        ends[i + 1] = st.st_size;
        recs[i + 1] = recs[i] + counts[i];
    }
    assert_int_equal(sl_broker_close(b), 0);
    size_t len;
    char *pristine = slurp(path, &len);
    assert_int_equal((int64_t)len, ends[5]);

    /* Every cut from the start of batch 4 (of 5) to the full length. */
    for (int64_t cut = ends[3]; cut <= ends[5]; cut++) {
        spit(path, pristine, (size_t)cut);
        int complete = 0;
        while (complete < 5 && ends[complete + 1] <= cut) complete++;
        assert_int_equal(sl_broker_open(&b, dir, 0), 0);
        /* A reader before any writer recovered: the torn batch is invisible. */
        char err[512];
        assert_int_equal(read_check(b, "torn", err), recs[complete]);
        /* The writer recovers: truncates to the last complete batch... */
        sl_record r = {.key = "k", .key_len = 1};
        char v[80];
        r.value = v;
        r.value_len = make_value(v, recs[complete]);
        int64_t off;
        assert_int_equal(sl_log_append(b, "torn", 0, &r, 1, &off), 0);
        /* ...and appends right after it. */
        assert_int_equal(off, recs[complete]);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(st.st_size > ends[complete]);
        assert_int_equal(read_check(b, "torn", err), recs[complete] + 1);
        assert_int_equal(sl_broker_close(b), 0);
    }

    /* Garbage after the last batch (a torn write of junk) is cut off too. */
    char *junk = malloc(len + 300);
    memcpy(junk, pristine, len);
    for (int i = 0; i < 300; i++) junk[len + (size_t)i] = (char)(i * 7 + 1);
    spit(path, junk, len + 300);
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_record r = {.key = "k", .key_len = 1};
    char v[80];
    r.value = v;
    r.value_len = make_value(v, recs[5]);
    int64_t off;
    assert_int_equal(sl_log_append(b, "torn", 0, &r, 1, &off), 0);
    assert_int_equal(off, recs[5]);
    char err[512];
    assert_int_equal(read_check(b, "torn", err), recs[5] + 1);
    assert_int_equal(sl_broker_close(b), 0);
    free(junk);
    free(pristine);
    tb_rmrf(dir);
    free(dir);
}

/* A log of several segments; returns the first segment's path in seg0. */
static char *make_segmented(char *seg0, size_t cap, long *total)
{
    char *dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = 2048;
    assert_int_equal(sl_topic_create(b, "bf", &c), 0);
    for (int i = 0; i < 40; i++) append_batch(b, "bf", 1 + i % 4);
    assert_int_equal(sl_broker_close(b), 0);
    snprintf(seg0, cap, "%s/bf/0/00000000000000000000.log", dir);
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    char err[512];
    *total = read_check(b, "bf", err);
    sl_broker_close(b);
    return dir;
}

static void test_bitflip_sealed_segment(void **state)
{
    (void)state;
    char seg0[4200];
    long total;
    char *dir = make_segmented(seg0, sizeof seg0, &total);
    assert_true(total > 0);
    size_t len;
    char *pristine = slurp(seg0, &len);
    assert_true(len > 1000);
    char *copy = malloc(len);
    int reported = 0;
    for (size_t pos = 0; pos < len; pos += 3) {
        memcpy(copy, pristine, len);
        copy[pos] ^= (char)(1 << (pos % 8));
        spit(seg0, copy, len);
        sl_broker *b;
        assert_int_equal(sl_broker_open(&b, dir, 0), 0);
        char err[512] = "";
        /* read_check asserts that every record returned is the one appended */
        long n = read_check(b, "bf", err);
        assert_int_equal(n, -1); /* every flip is detected */
        assert_non_null(strstr(err, "topic 'bf' partition 0"));
        assert_non_null(strstr(err, "offset"));
        assert_non_null(strstr(err, "00000000000000000000.log"));
        reported++;
        /* Appending still works: corruption in a sealed segment does not
         * stop the partition (the active segment is fine). */
        sl_record r = {.key = "k", .key_len = 1};
        char v[80];
        r.value = v;
        r.value_len = make_value(v, total);
        int64_t off;
        assert_int_equal(sl_log_append(b, "bf", 0, &r, 1, &off), 0);
        assert_int_equal(off, total);
        sl_broker_close(b);
        /* take the extra record back for the next trial: restore the active
         * segment by truncation is not needed, offsets just grow */
        total++;
    }
    assert_true(reported > 300);
    spit(seg0, pristine, len);
    free(copy);
    free(pristine);
    tb_rmrf(dir);
    free(dir);
}

static void test_index_rebuild(void **state)
{
    (void)state;
    char seg0[4200];
    long total;
    char *dir = make_segmented(seg0, sizeof seg0, &total);
    /* Find the sealed segments' index files; delete one, corrupt another. */
    char pdir[4200];
    snprintf(pdir, sizeof pdir, "%s/bf/0", dir);
    DIR *d = opendir(pdir);
    assert_non_null(d);
    struct dirent *e;
    char idx[8][4600];
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".index") && n < 8)
            snprintf(idx[n++], sizeof idx[0], "%s/%s", pdir, e->d_name);
    closedir(d);
    assert_true(n >= 2);
    assert_int_equal(unlink(idx[0]), 0);
    size_t len;
    char *buf = slurp(idx[1], &len);
    buf[len - 1] ^= 0x55;
    spit(idx[1], buf, len);
    free(buf);
    char tix[4700];
    snprintf(tix, sizeof tix, "%.*stimeindex", (int)(strlen(idx[1]) - 5), idx[1]);
    spit(tix, "garbage", 7);

    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    /* Readers cope without a good index (they validate its hints). */
    char err[512];
    assert_int_equal(read_check(b, "bf", err), total);
    /* The writer rebuilds them on open. */
    sl_record r = {.key = "k", .key_len = 1};
    char v[80];
    r.value = v;
    r.value_len = make_value(v, total);
    assert_int_equal(sl_log_append(b, "bf", 0, &r, 1, NULL), 0);
    struct stat st;
    assert_int_equal(stat(idx[0], &st), 0);
    assert_true(st.st_size > 32);
    /* Seeking to every offset works (uses the rebuilt indexes). */
    sl_log_reader *rd;
    assert_int_equal(sl_log_reader_open(&rd, b, "bf", 0, 0), 0);
    for (int64_t o = 0; o <= total; o++) {
        sl_message m;
        assert_int_equal(sl_log_reader_seek(rd, o), 0);
        assert_int_equal(sl_log_reader_next(rd, &m, 0), 0);
        assert_int_equal(m.offset, o);
    }
    sl_log_reader_close(rd);
    sl_broker_close(b);
    tb_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torn_tail_every_byte),
        cmocka_unit_test(test_bitflip_sealed_segment),
        cmocka_unit_test(test_index_rebuild),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
