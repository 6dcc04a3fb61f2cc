/*
 * tests/unit/test_broker_txn.c - idempotent and transactional producers of
 * the built-in broker: producer ids and epochs (fencing), per-partition
 * sequence numbers (a retried batch is written once, a gap is refused), the
 * producer state rebuilt from the log after a crash (a forked child that
 * exits without closing anything, and a torn last batch), the batch format
 * with producer fields read beside old batches, and I/O failures of the
 * state file and of an append.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "connectors/broker/batch.h"
#include "connectors/broker/broker_int.h"
#include "engine/base/fsio.h"
#include "sluice/broker.h"
#include "tests/unit/test_broker_util.h"

typedef struct fx {
    char *dir;
    sl_broker *b;
} fx;

static void make_topic(sl_broker *b, const char *name, int parts)
{
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = parts;
    int rc = sl_topic_create(b, name, &c);
    if (rc) fprintf(stderr, "create: %s\n", sl_broker_errmsg(b));
    assert_int_equal(rc, 0);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tb_tmpdir();
    assert_non_null(f->dir);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    make_topic(f->b, "t", 2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sli_fsio_fail_reset();
    sl_broker_close(f->b);
    tb_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static sl_record rec_v(const char *v)
{
    sl_record r = {.timestamp = 1000, .value = v, .value_len = v ? strlen(v) : 0};
    return r;
}

/* Values of partition p from the beginning (read_uncommitted), joined by
 * ',' into out. */
static int read_values(sl_broker *b, int p, char *out, size_t cap)
{
    sl_log_reader *r;
    int rc = sl_log_reader_open(&r, b, "t", p, SL_OFFSET_BEGINNING);
    if (rc) fprintf(stderr, "reader: %s\n", sl_broker_errmsg(b));
    assert_int_equal(rc, 0);
    assert_int_equal(sl_log_reader_set_isolation(r, SL_READ_UNCOMMITTED), 0);
    out[0] = 0;
    int n = 0;
    sl_message m;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%.*s", n ? "," : "", (int)m.value_len, (const char *)m.value);
        n++;
    }
    assert_int_equal(rc, SL_EAGAIN);
    sl_log_reader_close(r);
    return n;
}

static int append_seq(sl_broker *b, int p, int64_t pid, int16_t epoch, int32_t seq, const char *v1,
                      const char *v2, int64_t *base)
{
    sl_record recs[2] = {rec_v(v1), rec_v(v2)};
    sl_producer_ref ref = {.producer_id = pid, .epoch = epoch, .base_sequence = seq};
    return sl_log_append_idempotent(b, "t", p, &ref, recs, v2 ? 2 : 1, base);
}

static void test_error_code(void **state)
{
    (void)state;
    assert_string_equal(sl_err_name(SL_EFENCED), "SL_EFENCED");
    assert_non_null(strstr(sl_strerror(SL_EFENCED), "fenced"));
}

/* Re-initialising a transactional id bumps its epoch and fences the older
 * producer, whatever partition it writes to next. */
static void test_fencing(void **state)
{
    fx *f = *state;
    sl_txn_producer *p1, *p2, *other;
    assert_int_equal(sl_txn_producer_open(&p1, f->b, "t", "job-1"), 0);
    assert_int_equal(sl_txn_producer_epoch(p1), 0);
    sl_record r = rec_v("a");
    int64_t off = -1;
    assert_int_equal(sl_txn_producer_append(p1, 0, &r, 1, &off), 0);
    assert_int_equal(off, 0);

    assert_int_equal(sl_txn_producer_open(&p2, f->b, "t", "job-1"), 0);
    assert_int_equal(sl_txn_producer_id(p2), sl_txn_producer_id(p1));
    assert_int_equal(sl_txn_producer_epoch(p2), 1);
    /* Another transactional id gets another producer id and is not fenced. */
    assert_int_equal(sl_txn_producer_open(&other, f->b, "t", "job-2"), 0);
    assert_int_not_equal(sl_txn_producer_id(other), sl_txn_producer_id(p1));
    assert_int_equal(sl_txn_producer_epoch(other), 0);

    /* p1 is fenced on a partition p2 never wrote to, and on partition 0. */
    r = rec_v("stale");
    assert_int_equal(sl_txn_producer_append(p1, 1, &r, 1, NULL), SL_EFENCED);
    assert_non_null(strstr(sl_txn_producer_errmsg(p1), "fenced"));
    assert_int_equal(sl_txn_producer_append(p1, 0, &r, 1, NULL), SL_EFENCED);
    r = rec_v("b");
    assert_int_equal(sl_txn_producer_append(p2, 0, &r, 1, &off), 0);
    assert_int_equal(off, 2); /* after the ABORT marker of p1's transaction (p2's open) */
    r = rec_v("c");
    assert_int_equal(sl_txn_producer_append(other, 0, &r, 1, &off), 0);
    assert_int_equal(sl_txn_producer_append(p1, 0, &r, 1, NULL), SL_EFENCED);
    char vals[256];
    assert_int_equal(read_values(f->b, 0, vals, sizeof vals), 3);
    assert_string_equal(vals, "a,b,c");
    assert_int_equal(read_values(f->b, 1, vals, sizeof vals), 0);

    /* The partition itself refuses the old epoch once the new one wrote. */
    assert_int_equal(append_seq(f->b, 0, sl_txn_producer_id(p1), 0, 1, "x", NULL, NULL),
                     SL_EFENCED);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "fenced"));
    assert_int_equal(sl_txn_producer_abort(p2), 0);
    sl_txn_producer_close(p1);
    sl_txn_producer_close(p2);
    sl_txn_producer_close(other);

    /* Epochs are durable: another broker handle opens epoch 2. */
    sl_broker *b2;
    assert_int_equal(sl_broker_open(&b2, f->dir, 0), 0);
    sl_txn_producer *p3;
    assert_int_equal(sl_txn_producer_open(&p3, b2, "t", "job-1"), 0);
    assert_int_equal(sl_txn_producer_epoch(p3), 2);
    sl_txn_producer_close(p3);
    assert_int_equal(sl_broker_close(b2), 0);
}

static void test_bad_args(void **state)
{
    fx *f = *state;
    sl_txn_producer *p = (sl_txn_producer *)1;
    assert_int_equal(sl_txn_producer_open(&p, f->b, "t", ""), SL_EINVAL);
    assert_null(p);
    assert_int_equal(sl_txn_producer_open(&p, f->b, "nope", "id"), SL_ENOENT);
    assert_int_equal(sl_txn_producer_open(&p, f->b, "t", "id"), 0);
    sl_record r = rec_v("a");
    assert_int_equal(sl_txn_producer_append(p, 2, &r, 1, NULL), SL_ERANGE);
    sl_txn_producer_close(p);
    sl_txn_producer_close(NULL);
    assert_int_equal(append_seq(f->b, 0, -1, 0, 0, "a", NULL, NULL), SL_EINVAL);
    assert_int_equal(append_seq(f->b, 0, 1, 0, -3, "a", NULL, NULL), SL_EINVAL);
    assert_int_equal(sl_log_append_idempotent(f->b, "t", 0, NULL, &r, 1, NULL), SL_EINVAL);
}

/* The same batch appended twice is in the log once; both calls get its
 * offset. */
static void test_duplicate_dropped(void **state)
{
    fx *f = *state;
    int64_t b1 = -1, b2 = -1;
    assert_int_equal(append_seq(f->b, 0, 7, 0, 0, "a", "b", &b1), 0);
    assert_int_equal(append_seq(f->b, 0, 7, 0, 0, "a", "b", &b2), 0);
    assert_int_equal(b1, 0);
    assert_int_equal(b2, 0);
    assert_int_equal(append_seq(f->b, 0, 7, 0, 2, "c", NULL, &b1), 0);
    assert_int_equal(b1, 2);
    assert_int_equal(append_seq(f->b, 0, 7, 0, 2, "c", NULL, &b2), 0);
    assert_int_equal(b2, 2);
    /* A plain append between them is fine; the producer's retry still is a
     * duplicate. */
    sl_record r = rec_v("plain");
    assert_int_equal(sl_log_append(f->b, "t", 0, &r, 1, NULL), 0);
    assert_int_equal(append_seq(f->b, 0, 7, 0, 2, "c", NULL, &b2), 0);
    assert_int_equal(b2, 2);
    char vals[256];
    assert_int_equal(read_values(f->b, 0, vals, sizeof vals), 4);
    assert_string_equal(vals, "a,b,c,plain");
    /* Sequences are per partition: partition 1 starts anew. */
    assert_int_equal(append_seq(f->b, 1, 7, 0, 0, "z", NULL, &b1), 0);
    assert_int_equal(b1, 0);
}

/* A gap, or an older batch than the last, is refused and writes nothing. */
static void test_sequence_gap(void **state)
{
    fx *f = *state;
    assert_int_equal(append_seq(f->b, 0, 3, 0, 0, "a", "b", NULL), 0);
    assert_int_equal(append_seq(f->b, 0, 3, 0, 5, "x", NULL, NULL), SL_ERANGE);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "out-of-order sequence 5 (expected 2)"));
    assert_int_equal(append_seq(f->b, 0, 3, 0, 2, "c", NULL, NULL), 0);
    /* seq 0 again, but not the last batch: an older duplicate. */
    assert_int_equal(append_seq(f->b, 0, 3, 0, 0, "a", "b", NULL), SL_ERANGE);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "duplicate of an older batch"));
    /* Same base sequence as the last batch but another size: not a retry. */
    assert_int_equal(append_seq(f->b, 0, 3, 0, 2, "c", "d", NULL), SL_ERANGE);
    /* A new epoch must start at 0. */
    assert_int_equal(append_seq(f->b, 0, 3, 1, 3, "d", NULL, NULL), SL_ERANGE);
    assert_int_equal(append_seq(f->b, 0, 3, 1, 0, "d", NULL, NULL), 0);
    char vals[256];
    assert_int_equal(read_values(f->b, 0, vals, sizeof vals), 4);
    assert_string_equal(vals, "a,b,c,d");
}

/* A child appends and dies without closing or flushing anything (as kill -9
 * would leave it); the parent's writer rebuilds the producer state from the
 * log: a retry is dropped, a gap refused, an old epoch fenced. Then the last
 * batch is torn: recovery cuts it and forgets it, so its retry is written. */
static void test_recovery(void **state)
{
    fx *f = *state;
    assert_int_equal(sl_broker_close(f->b), 0);
    f->b = NULL;
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0) {
        sl_broker *b;
        if (sl_broker_open(&b, f->dir, 0) != 0) _exit(1);
        if (append_seq(b, 0, 9, 1, 0, "a", "b", NULL) != 0) _exit(2);
        if (append_seq(b, 0, 9, 2, 0, "c", NULL, NULL) != 0) _exit(3);
        if (append_seq(b, 0, 11, 0, 0, "d", NULL, NULL) != 0) _exit(4);
        if (append_seq(b, 0, 11, 0, 1, "e", "f", NULL) != 0) _exit(5);
        _exit(0); /* no close: the partition lock dies with the process */
    }
    int st;
    assert_int_equal(waitpid(c, &st, 0), c);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    int64_t base = -1;
    assert_int_equal(append_seq(f->b, 0, 9, 2, 0, "c", NULL, &base), 0); /* retry */
    assert_int_equal(base, 2);
    assert_int_equal(append_seq(f->b, 0, 9, 1, 2, "x", NULL, NULL), SL_EFENCED);
    assert_int_equal(append_seq(f->b, 0, 9, 2, 2, "x", NULL, NULL), SL_ERANGE);
    assert_int_equal(append_seq(f->b, 0, 11, 0, 1, "e", "f", &base), 0); /* retry */
    assert_int_equal(base, 4);
    char vals[256];
    assert_int_equal(read_values(f->b, 0, vals, sizeof vals), 6);
    assert_string_equal(vals, "a,b,c,d,e,f");
    assert_int_equal(sl_broker_close(f->b), 0);
    f->b = NULL;

    /* Tear the last batch (e,f): cut its last 3 bytes. */
    char path[4096];
    snprintf(path, sizeof path, "%s/t/0/%020d.log", f->dir, 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size - 3), 0);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    assert_int_equal(append_seq(f->b, 0, 11, 0, 1, "e", "f", &base), 0); /* now new */
    assert_int_equal(base, 4);
    assert_int_equal(append_seq(f->b, 0, 11, 0, 1, "e", "f", &base), 0); /* retry */
    assert_int_equal(base, 4);
    assert_int_equal(read_values(f->b, 0, vals, sizeof vals), 6);
    assert_string_equal(vals, "a,b,c,d,e,f");
}

/* A write that fails is retried with the same sequence and lands once. */
static void test_append_failure_retry(void **state)
{
    fx *f = *state;
    sl_txn_producer *p;
    assert_int_equal(sl_txn_producer_open(&p, f->b, "t", "retry"), 0);
    sl_record r = rec_v("a");
    assert_int_equal(sl_txn_producer_append(p, 0, &r, 1, NULL), 0);
    r = rec_v("b");
    sli_fsio_fail_after(SLI_FSIO_WRITE, 0, ENOSPC, false);
    assert_int_equal(sl_txn_producer_append(p, 0, &r, 1, NULL), SL_EFULL);
    sli_fsio_fail_reset();
    int64_t off = -1;
    assert_int_equal(sl_txn_producer_append(p, 0, &r, 1, &off), 0);
    assert_int_equal(off, 1);
    char vals[64];
    assert_int_equal(read_values(f->b, 0, vals, sizeof vals), 2);
    assert_string_equal(vals, "a,b");
    sl_txn_producer_close(p);
}

/* The state file is written atomically: a failed rename or fsync leaves the
 * old epoch; a damaged file is refused, not overwritten. */
static void test_state_file_faults(void **state)
{
    fx *f = *state;
    sl_txn_producer *p;
    assert_int_equal(sl_txn_producer_open(&p, f->b, "t", "s"), 0);
    sl_txn_producer_close(p);
    sli_fsio_fail_after(SLI_FSIO_RENAME, 0, EIO, false);
    assert_int_not_equal(sl_txn_producer_open(&p, f->b, "t", "s"), 0);
    assert_null(p);
    sli_fsio_fail_reset();
    sli_fsio_fail_after(SLI_FSIO_FSYNC, 0, EIO, false);
    assert_int_not_equal(sl_txn_producer_open(&p, f->b, "t", "s"), 0);
    sli_fsio_fail_reset();
    assert_int_equal(sl_txn_producer_open(&p, f->b, "t", "s"), 0);
    assert_int_equal(sl_txn_producer_epoch(p), 1);
    sl_txn_producer_close(p);

    char path[4096];
    snprintf(path, sizeof path, "%s/__transactions.state", f->dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, 21), 1);
    byte ^= 1;
    assert_int_equal(pwrite(fd, &byte, 1, 21), 1);
    close(fd);
    assert_int_equal(sl_txn_producer_open(&p, f->b, "t", "s"), SL_ECORRUPT);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "corrupt"));
    /* The topics are not confused by the broker-level files. */
    char **names;
    size_t n;
    assert_int_equal(sl_topic_list(f->b, &names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "t");
    sl_topic_list_free(names, n);
}

/* The producer fields round-trip through the encoder and the checked
 * decoder; batches without them decode as before; a flipped producer byte
 * fails the CRC. */
static void test_batch_format(void **state)
{
    (void)state;
    slb_builder b;
    slb_builder_init(&b);
    slb_builder_reset(&b, 100);
    assert_int_equal(slb_builder_set_producer(&b, 0x123456789, 513, 77), 0);
    sl_record r = rec_v("hello");
    assert_int_equal(slb_builder_add(&b, &r, 5, 0), 0);
    assert_int_equal(slb_builder_add(&b, &r, 6, 1), 0);
    size_t len = slb_builder_finish(&b, -1);
    assert_int_equal(len, b.len);
    slb_batch_hdr h;
    assert_int_equal(slb_batch_check(b.buf, len, &h, true), 0);
    assert_int_equal(h.attributes, SLB_ATTR_PRODUCER);
    assert_int_equal(h.producer_id, 0x123456789);
    assert_int_equal(h.producer_epoch, 513);
    assert_int_equal(h.base_sequence, 77);
    assert_int_equal(slb_decode_all(b.buf, len, true), 2);
    /* an old-style batch after it in the same buffer */
    uint8_t *two = malloc(2 * len + 100);
    memcpy(two, b.buf, len);
    slb_builder_reset(&b, 102);
    assert_int_equal(slb_builder_add(&b, &r, 7, 0), 0);
    size_t len2 = slb_builder_finish(&b, -1);
    memcpy(two + len, b.buf, len2);
    assert_int_equal(slb_batch_check(two + len, len2, &h, true), 0);
    assert_int_equal(h.attributes, 0);
    assert_int_equal(h.producer_id, -1);
    assert_int_equal(slb_decode_all(two, len + len2, true), 3);
    two[SLB_HDR_SIZE + 2] ^= 0x10;
    assert_int_equal(slb_batch_check(two, len, &h, true), SL_ECORRUPT);
    assert_int_equal(slb_decode_all(two, len + len2, true), SL_ECORRUPT);
    two[SLB_HDR_SIZE + 2] ^= 0x10;
    /* an unknown attribute bit is refused */
    two[17] |= 0x01;
    assert_int_equal(slb_batch_check(two, len, &h, false), SL_ECORRUPT);
    /* a control batch: one marker record, base sequence -1 */
    uint8_t key[4], val[6];
    slb_marker_encode(key, val, SLB_MARKER_ABORT);
    sl_record mr = {.key = key, .key_len = 4, .value = val, .value_len = 6, .timestamp = 9};
    slb_builder_reset(&b, 200);
    assert_int_equal(slb_builder_set_producer(&b, 1, 0, -1), 0);
    assert_int_equal(slb_builder_add(&b, &mr, 9, 0), 0);
    b.txn_attrs = SLB_ATTR_TRANSACTIONAL | SLB_ATTR_CONTROL;
    len = slb_builder_finish(&b, -1);
    assert_int_equal(slb_batch_check(b.buf, len, &h, true), 0);
    assert_int_equal(slb_decode_all(b.buf, len, true), 1);
    slb_iter it;
    slb_rec rec;
    slb_iter_init(&it, b.buf, &h);
    assert_int_equal(slb_iter_next(&it, &rec), 1);
    assert_int_equal(slb_marker_decode(&rec), SLB_MARKER_ABORT);
    b.buf[17] = SLB_ATTR_PRODUCER | SLB_ATTR_CONTROL; /* control without transactional */
    assert_int_equal(slb_batch_check(b.buf, len, &h, false), SL_ECORRUPT);
    b.buf[17] = SLB_ATTR_TRANSACTIONAL; /* transactional without producer fields */
    assert_int_equal(slb_batch_check(b.buf, len, &h, false), SL_ECORRUPT);
    b.buf[17] = SLB_ATTR_PRODUCER | SLB_ATTR_TRANSACTIONAL; /* data batch with sequence -1 */
    assert_int_equal(slb_batch_check(b.buf, len, &h, false), SL_ECORRUPT);
    free(two);
    slb_builder_free(&b);
}

/* Compaction keeps a producer batch's producer fields (the sequence state a
 * writer rebuilds reads them) in what it keeps of it. */
static void test_compaction_keeps_producer(void **state)
{
    fx *f = *state;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.compact = 1;
    c.segment_bytes = 1024; /* one batch per segment */
    assert_int_equal(sl_topic_create(f->b, "c", &c), 0);
    static char big[600];
    memset(big, 'v', sizeof big);
    sl_record r[2] = {{.key = "k", .key_len = 1, .value = big, .value_len = 600, .timestamp = 1},
                      {.key = "j", .key_len = 1, .value = big, .value_len = 600, .timestamp = 1}};
    sl_producer_ref ref = {.producer_id = 5, .epoch = 3, .base_sequence = 0};
    assert_int_equal(sl_log_append_idempotent(f->b, "c", 0, &ref, r, 2, NULL), 0);
    ref.base_sequence = 2;
    assert_int_equal(sl_log_append_idempotent(f->b, "c", 0, &ref, r, 1, NULL), 0);
    r[0].key = "x";
    ref.base_sequence = 3;
    assert_int_equal(sl_log_append_idempotent(f->b, "c", 0, &ref, r, 1, NULL), 0);
    assert_int_equal(
        slb_log_append_marker(f->b, "c", 0, &ref, SLB_MARKER_COMMIT, false, true, NULL), 0);
    ref.base_sequence = 4;
    assert_int_equal(sl_log_append_idempotent(f->b, "c", 0, &ref, r, 1, NULL), 0);
    int rc = sl_topic_clean(f->b, "c", 0);
    if (rc) fprintf(stderr, "clean: %s\n", sl_broker_errmsg(f->b));
    assert_int_equal(rc, 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/c/0/%020d.log", f->dir, 0);
    uint8_t buf[4096];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    assert_true(n > 0);
    slb_batch_hdr h;
    assert_int_equal(slb_batch_check(buf, (size_t)n, &h, true), 0);
    assert_int_equal(h.length, (uint32_t)n); /* the first k dropped: j alone */
    assert_int_equal(h.record_count, 1);
    assert_int_equal(h.last_offset_delta, 1);
    assert_int_equal(h.attributes, SLB_ATTR_PRODUCER);
    assert_int_equal(h.producer_id, 5);
    assert_int_equal(h.producer_epoch, 3);
    assert_int_equal(h.base_sequence, 0);
    /* The marker is kept and still skipped by readers; data as compacted. */
    sl_log_reader *rd;
    assert_int_equal(sl_log_reader_open(&rd, f->b, "c", 0, SL_OFFSET_BEGINNING), 0);
    sl_message m;
    char got[64] = "";
    while (sl_log_reader_next(rd, &m, 0) == 0)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", got[0] ? "," : "",
                 (long long)m.offset);
    sl_log_reader_close(rd);
    assert_string_equal(got, "1,2,3,5"); /* 3 and 5 share a key; 5 is in the active segment */
}

/* Offsets of partition p as a read_uncommitted reader returns them, joined
 * by ','. */
static int read_offsets(sl_broker *b, const char *topic, int p, char *out, size_t cap)
{
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, b, topic, p, SL_OFFSET_BEGINNING), 0);
    assert_int_equal(sl_log_reader_set_isolation(r, SL_READ_UNCOMMITTED), 0);
    out[0] = 0;
    int n = 0, rc;
    sl_message m;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%lld", n++ ? "," : "", (long long)m.offset);
    }
    assert_int_equal(rc, SL_EAGAIN);
    int64_t pos = sl_log_reader_position(r);
    sl_log_reader_close(r);
    return (int)pos;
}

/* Commit and abort write one marker per partition of the transaction;
 * readers skip them; markers of a fenced producer are refused. */
static void test_markers(void **state)
{
    fx *f = *state;
    sl_txn_producer *p;
    assert_int_equal(sl_txn_producer_open(&p, f->b, "t", "m"), 0);
    assert_int_equal(sl_txn_producer_commit(p), 0); /* nothing open: nothing written */
    sl_record r[2] = {rec_v("a"), rec_v("b")};
    int64_t off = -1;
    assert_int_equal(sl_txn_producer_append(p, 0, r, 2, &off), 0);
    assert_int_equal(off, 0);
    r[0] = rec_v("z");
    assert_int_equal(sl_txn_producer_append(p, 1, r, 1, NULL), 0);
    assert_int_equal(sl_txn_producer_commit(p), 0); /* markers: p0 @2, p1 @1 */
    r[0] = rec_v("c");
    assert_int_equal(sl_txn_producer_append(p, 0, r, 1, &off), 0);
    assert_int_equal(off, 3);
    assert_int_equal(sl_txn_producer_abort(p), 0); /* p0 @4 */
    r[0] = rec_v("d");
    assert_int_equal(sl_txn_producer_append(p, 0, r, 1, &off), 0);
    assert_int_equal(off, 5);
    char buf[256];
    assert_int_equal(read_offsets(f->b, "t", 0, buf, sizeof buf), 6);
    assert_string_equal(buf, "0,1,3,5");
    assert_int_equal(read_values(f->b, 0, buf, sizeof buf), 4);
    assert_string_equal(buf, "a,b,c,d"); /* read_uncommitted: the aborted c too */
    assert_int_equal(read_offsets(f->b, "t", 1, buf, sizeof buf), 2);
    assert_string_equal(buf, "0");
    /* A reader that starts at a marker's offset goes on after it. */
    sl_log_reader *rd;
    sl_message m;
    assert_int_equal(sl_log_reader_open(&rd, f->b, "t", 0, 4), 0);
    assert_int_equal(sl_log_reader_next(rd, &m, 0), SL_EAGAIN); /* read_committed: d is open */
    assert_int_equal(sl_log_reader_set_isolation(rd, SL_READ_UNCOMMITTED), 0);
    assert_int_equal(sl_log_reader_next(rd, &m, 0), 0);
    assert_int_equal(m.offset, 5);
    sl_log_reader_close(rd);

    /* The raw marker: a control batch with one COMMIT record. */
    char path[4096];
    snprintf(path, sizeof path, "%s/t/1/%020d.log", f->dir, 0);
    uint8_t raw[1024];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, raw, sizeof raw);
    close(fd);
    slb_batch_hdr h;
    assert_int_equal(slb_batch_check(raw, (size_t)n, &h, true), 0);
    assert_int_equal(h.attributes, SLB_ATTR_PRODUCER | SLB_ATTR_TRANSACTIONAL);
    size_t first = h.length;
    assert_int_equal(slb_batch_check(raw + first, (size_t)n - first, &h, true), 0);
    assert_int_equal(h.attributes, SLB_ATTR_PRODUCER | SLB_ATTR_TRANSACTIONAL | SLB_ATTR_CONTROL);
    assert_int_equal(h.base_offset, 1);
    assert_int_equal(h.base_sequence, -1);
    assert_int_equal(h.producer_id, sl_txn_producer_id(p));
    slb_iter it;
    slb_rec rec;
    slb_iter_init(&it, raw + first, &h);
    assert_int_equal(slb_iter_next(&it, &rec), 1);
    assert_int_equal(slb_marker_decode(&rec), SLB_MARKER_COMMIT);
    assert_int_equal(first + h.length, (size_t)n);

    /* Fencing of commits: by the state file, and by the partition. */
    assert_int_equal(sl_txn_producer_append(p, 1, r, 1, NULL), 0);
    sl_txn_producer *p2;
    assert_int_equal(sl_txn_producer_open(&p2, f->b, "t", "m"), 0);
    assert_int_equal(sl_txn_producer_commit(p), SL_EFENCED);
    assert_int_equal(sl_txn_producer_abort(p), SL_EFENCED);
    r[0] = rec_v("e");
    assert_int_equal(sl_txn_producer_append(p2, 1, r, 1, NULL), 0);
    assert_int_equal(sl_txn_producer_commit(p2), 0);
    sl_producer_ref old = {.producer_id = sl_txn_producer_id(p), .epoch = 0};
    assert_int_equal(
        slb_log_append_marker(f->b, "t", 1, &old, SLB_MARKER_COMMIT, false, true, NULL),
        SL_EFENCED);
    sl_txn_producer_close(p);
    sl_txn_producer_close(p2);
}

/* Markers survive a reopen without disturbing the sequence state: the
 * retry of the batch before a marker is still a duplicate; a marker of a
 * new epoch makes the next batch start at 0. */
static void test_markers_recovery(void **state)
{
    fx *f = *state;
    sl_producer_ref ref = {.producer_id = 4, .epoch = 0, .base_sequence = 0};
    int64_t base;
    assert_int_equal(append_seq(f->b, 0, 4, 0, 0, "a", "b", NULL), 0);
    assert_int_equal(slb_log_append_marker(f->b, "t", 0, &ref, SLB_MARKER_ABORT, false, true, NULL),
                     0);
    ref.epoch = 1;
    assert_int_equal(slb_log_append_marker(f->b, "t", 0, &ref, SLB_MARKER_ABORT, false, true, NULL),
                     0);
    assert_int_equal(sl_broker_close(f->b), 0);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    assert_int_equal(append_seq(f->b, 0, 4, 0, 0, "a", "b", NULL), SL_EFENCED);
    assert_int_equal(append_seq(f->b, 0, 4, 1, 2, "c", NULL, NULL), SL_ERANGE);
    assert_int_equal(append_seq(f->b, 0, 4, 1, 0, "c", NULL, &base), 0);
    assert_int_equal(base, 4);
    ref.epoch = 1;
    assert_int_equal(
        slb_log_append_marker(f->b, "t", 0, &ref, SLB_MARKER_COMMIT, false, true, NULL), 0);
    assert_int_equal(sl_broker_close(f->b), 0);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    assert_int_equal(append_seq(f->b, 0, 4, 1, 0, "c", NULL, &base), 0); /* retry */
    assert_int_equal(base, 4);
    char buf[256];
    assert_int_equal(read_values(f->b, 0, buf, sizeof buf), 3);
    assert_string_equal(buf, "a,b,c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_code),
        cmocka_unit_test_setup_teardown(test_fencing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequence_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_failure_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_file_faults, setup, teardown),
        cmocka_unit_test(test_batch_format),
        cmocka_unit_test_setup_teardown(test_compaction_keeps_producer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_markers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_markers_recovery, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
