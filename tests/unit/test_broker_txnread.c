/*
 * tests/unit/test_broker_txnread.c - the read side of broker transactions
 * and their recovery: read_committed readers (aborted data invisible, a
 * stop at the last stable offset and the records after it once the
 * transaction ends, also for a reader in another process following the
 * log), the LSO rebuilt after a crash, a torn marker cut by recovery, a
 * transactional id's re-open aborting its older producer's transaction on
 * every partition, the transaction timeout, and sl_txn_recover_commit.
 * A "crash" is a producer and broker handle closed without a commit (or a
 * forked child that exits without closing anything).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "connectors/broker/batch.h"
#include "connectors/broker/broker_int.h"
#include "engine/base/crc32c.h"
#include "engine/base/fsio.h"
#include "sluice/broker.h"
#include "tests/unit/test_broker_util.h"

typedef struct fx {
    char *dir;
    sl_broker *b;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = tb_tmpdir();
    assert_non_null(f->dir);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = 2;
    assert_int_equal(sl_topic_create(f->b, "t", &c), 0);
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

/* Close f->b and open it again: a crash of everything it held. */
static void reopen(fx *f)
{
    assert_int_equal(sl_broker_close(f->b), 0);
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
}

static sl_record rec_v(const char *v)
{
    sl_record r = {.timestamp = 1000, .value = v, .value_len = strlen(v)};
    return r;
}

static void txn_put(sl_txn_producer *p, int part, const char *v)
{
    sl_record r = rec_v(v);
    int rc = sl_txn_producer_append(p, part, &r, 1, NULL);
    if (rc) fprintf(stderr, "append: %s\n", sl_txn_producer_errmsg(p));
    assert_int_equal(rc, 0);
}

static void plain_put(sl_broker *b, int part, const char *v)
{
    sl_record r = rec_v(v);
    int rc = sl_log_append(b, "t", part, &r, 1, NULL);
    if (rc) fprintf(stderr, "append: %s\n", sl_broker_errmsg(b));
    assert_int_equal(rc, 0);
}

static sl_txn_producer *txn_open(sl_broker *b, const char *tid)
{
    sl_txn_producer *p;
    int rc = sl_txn_producer_open(&p, b, "t", tid);
    if (rc) fprintf(stderr, "open: %s\n", sl_broker_errmsg(b));
    assert_int_equal(rc, 0);
    return p;
}

/* Values a reader of partition p returns from the beginning without
 * waiting, joined by ','; *pos (may be NULL) gets its position after. */
static int read_iso(sl_broker *b, int p, int iso, char *out, size_t cap, int64_t *pos)
{
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, b, "t", p, SL_OFFSET_BEGINNING), 0);
    assert_int_equal(sl_log_reader_set_isolation(r, iso), 0);
    out[0] = 0;
    int n = 0, rc;
    sl_message m;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%.*s", n++ ? "," : "", (int)m.value_len,
                 (const char *)m.value);
    }
    if (rc != SL_EAGAIN) fprintf(stderr, "reader: %s\n", sl_log_reader_errmsg(r));
    assert_int_equal(rc, SL_EAGAIN);
    if (pos) *pos = sl_log_reader_position(r);
    sl_log_reader_close(r);
    return n;
}

static void expect(sl_broker *b, int p, const char *committed, const char *uncommitted)
{
    char buf[512];
    read_iso(b, p, SL_READ_COMMITTED, buf, sizeof buf, NULL);
    assert_string_equal(buf, committed);
    read_iso(b, p, SL_READ_UNCOMMITTED, buf, sizeof buf, NULL);
    assert_string_equal(buf, uncommitted);
}

static sl_partition_info part_info(sl_broker *b, int p)
{
    sl_topic_info *ti;
    assert_int_equal(sl_topic_describe(b, "t", &ti), 0);
    sl_partition_info pi = ti->partitions[p];
    sl_topic_info_free(ti);
    return pi;
}

/* Records of an aborted transaction are invisible to read_committed and
 * visible to read_uncommitted; interleaved transactions of two producers
 * are each decided by their own marker. */
static void test_aborted_invisible(void **state)
{
    fx *f = *state;
    sl_txn_producer *a = txn_open(f->b, "A"), *bp = txn_open(f->b, "B");
    plain_put(f->b, 0, "n1");
    txn_put(a, 0, "a1");
    txn_put(bp, 0, "b1");
    assert_int_equal(sl_txn_producer_commit(bp), 0);
    txn_put(a, 0, "a2");
    plain_put(f->b, 0, "n2");
    /* a is open from a1 on: read_committed stops there. */
    expect(f->b, 0, "n1", "n1,a1,b1,a2,n2");
    assert_int_equal(sl_txn_producer_abort(a), 0);
    txn_put(bp, 0, "b2");
    assert_int_equal(sl_txn_producer_commit(bp), 0);
    txn_put(a, 0, "a3");
    assert_int_equal(sl_txn_producer_commit(a), 0);
    expect(f->b, 0, "n1,b1,n2,b2,a3", "n1,a1,b1,a2,n2,b2,a3");
    /* A reader that starts inside the aborted transaction. */
    sl_log_reader *r;
    sl_message m;
    assert_int_equal(sl_log_reader_open(&r, f->b, "t", 0, 4), 0); /* a2's offset */
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_memory_equal(m.value, "n2", 2);
    sl_log_reader_close(r);
    assert_int_equal(sl_log_reader_set_isolation(NULL, 0), SL_EINVAL);
    assert_int_equal(sl_log_reader_open(&r, f->b, "t", 0, 0), 0);
    assert_int_equal(sl_log_reader_set_isolation(r, 7), SL_EINVAL);
    assert_non_null(strstr(sl_log_reader_errmsg(r), "isolation"));
    sl_log_reader_close(r);
    sl_txn_producer_close(a);
    sl_txn_producer_close(bp);
}

/* A reader stops at an open transaction (the LSO) and continues after its
 * commit: the same reader, opened before the commit. */
static void test_stop_at_open(void **state)
{
    fx *f = *state;
    sl_txn_producer *p = txn_open(f->b, "p");
    plain_put(f->b, 0, "n0");
    txn_put(p, 0, "x");
    plain_put(f->b, 0, "y");
    assert_int_equal(part_info(f->b, 0).last_stable_offset, 1);
    assert_int_equal(part_info(f->b, 0).next_offset, 3);
    sl_log_reader *r;
    sl_message m;
    assert_int_equal(sl_log_reader_open(&r, f->b, "t", 0, SL_OFFSET_BEGINNING), 0);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_int_equal(m.offset, 0);
    assert_int_equal(sl_log_reader_next(r, &m, 0), SL_EAGAIN);
    assert_int_equal(sl_log_reader_position(r), 1);
    assert_int_equal(sl_log_reader_next(r, &m, 0), SL_EAGAIN);
    assert_int_equal(sl_txn_producer_commit(p), 0);
    assert_int_equal(part_info(f->b, 0).last_stable_offset, 4);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_memory_equal(m.value, "x", 1);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_memory_equal(m.value, "y", 1);
    assert_int_equal(sl_log_reader_next(r, &m, 0), SL_EAGAIN);
    /* The next transaction: aborted, while the reader waits at it. */
    txn_put(p, 0, "z");
    plain_put(f->b, 0, "w");
    assert_int_equal(sl_log_reader_next(r, &m, 0), SL_EAGAIN);
    assert_int_equal(sl_txn_producer_abort(p), 0);
    assert_int_equal(sl_log_reader_next(r, &m, 0), 0);
    assert_memory_equal(m.value, "w", 1);
    sl_log_reader_close(r);
    sl_txn_producer_close(p);
}

/* A reader in another process follows the log: it waits at the open
 * transaction, then sees what the commit (or the abort) decides. */
static void test_follow_other_process(void **state)
{
    fx *f = *state;
    sl_txn_producer *p = txn_open(f->b, "p");
    txn_put(p, 1, "x");
    plain_put(f->b, 1, "y");
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sl_broker *cb;
        sl_log_reader *r;
        sl_message m;
        int bad = 0;
        if (sl_broker_open(&cb, f->dir, 0) || sl_log_reader_open(&r, cb, "t", 1, 0)) _exit(10);
        if (sl_log_reader_next(r, &m, 0) != SL_EAGAIN) bad |= 1; /* at the LSO */
        char c = 1;
        if (write(go[1], &c, 1) != 1) _exit(11);
        /* Expected: x, y (committed), then v (z aborted). The cap only
         * keeps a broken reader from hanging the test. */
        const char *want[] = {"x", "y", "v"};
        for (int i = 0; i < 3; i++) {
            if (sl_log_reader_next(r, &m, 20000) != 0 || m.value_len != 1 ||
                memcmp(m.value, want[i], 1) != 0)
                bad |= 2 << i;
        }
        sl_log_reader_close(r);
        sl_broker_close(cb);
        _exit(bad);
    }
    char c;
    assert_int_equal(read(go[0], &c, 1), 1);
    assert_int_equal(sl_txn_producer_commit(p), 0);
    txn_put(p, 1, "z");
    assert_int_equal(sl_txn_producer_abort(p), 0);
    txn_put(p, 1, "v");
    assert_int_equal(sl_txn_producer_commit(p), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(go[0]);
    close(go[1]);
    sl_txn_producer_close(p);
}

/* A producer process that crashes (exits without closing anything) leaves
 * its transaction open: after reopening, the LSO and the readers' stop are
 * rebuilt from the log, on both partitions; re-opening its transactional
 * id aborts it there. */
static void test_crash_rebuilt(void **state)
{
    fx *f = *state;
    plain_put(f->b, 0, "n0");
    reopen(f); /* the child takes the partition locks */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sl_broker *cb;
        sl_txn_producer *p;
        sl_record r = rec_v("crashed");
        if (sl_broker_open(&cb, f->dir, 0) || sl_txn_producer_open(&p, cb, "t", "job") ||
            sl_txn_producer_append(p, 0, &r, 1, NULL) || sl_txn_producer_append(p, 1, &r, 1, NULL))
            _exit(1);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_int_equal(WEXITSTATUS(st), 0);
    reopen(f);
    plain_put(f->b, 0, "n1"); /* through a writer: its recovery rebuilt the state */
    plain_put(f->b, 1, "m1");
    sl_partition_info p0 = part_info(f->b, 0), p1 = part_info(f->b, 1);
    assert_int_equal(p0.last_stable_offset, 1);
    assert_int_equal(p0.next_offset, 3);
    assert_int_equal(p1.last_stable_offset, 0);
    expect(f->b, 0, "n0", "n0,crashed,n1");
    expect(f->b, 1, "", "crashed,m1");
    reopen(f); /* the lock-free view (describe without a writer) agrees */
    assert_int_equal(part_info(f->b, 0).last_stable_offset, 1);
    assert_int_equal(part_info(f->b, 1).last_stable_offset, 0);
    sl_txn_producer *p = txn_open(f->b, "job");
    assert_int_equal(sl_txn_producer_epoch(p), 1);
    expect(f->b, 0, "n0,n1", "n0,crashed,n1");
    expect(f->b, 1, "m1", "crashed,m1");
    p0 = part_info(f->b, 0);
    p1 = part_info(f->b, 1);
    assert_int_equal(p0.last_stable_offset, p0.next_offset);
    assert_int_equal(p1.last_stable_offset, p1.next_offset);
    sl_txn_producer_close(p);
}

/* The old producer wrote partitions 0 and 1, the new one only 0: the
 * re-open aborts both (1 included); the older producer is fenced. */
static void test_reopen_aborts_every_partition(void **state)
{
    fx *f = *state;
    sl_txn_producer *old = txn_open(f->b, "job");
    txn_put(old, 0, "o0");
    txn_put(old, 1, "o1");
    sl_txn_producer *nw = txn_open(f->b, "job"); /* same handle: its writers end it */
    txn_put(nw, 0, "n0");
    assert_int_equal(sl_txn_producer_commit(nw), 0);
    expect(f->b, 0, "n0", "o0,n0");
    expect(f->b, 1, "", "o1");
    assert_int_equal(part_info(f->b, 1).last_stable_offset, 2);
    assert_int_equal(sl_txn_producer_commit(old), SL_EFENCED);
    sl_txn_producer_close(old);
    sl_txn_producer_close(nw);

    /* Crash of a handle with an open transaction; another handle re-opens. */
    old = txn_open(f->b, "job2");
    txn_put(old, 1, "q1");
    sl_txn_producer_close(old);
    reopen(f);
    sl_txn_producer *again = txn_open(f->b, "job2");
    expect(f->b, 1, "", "o1,q1");
    assert_int_equal(part_info(f->b, 1).last_stable_offset, part_info(f->b, 1).next_offset);
    sl_txn_producer_close(again);

    /* The old producer's partition still has a live writer (another
     * handle): the re-open cannot end the transaction there and says so. */
    sl_broker *b2;
    assert_int_equal(sl_broker_open(&b2, f->dir, 0), 0);
    sl_txn_producer *z = txn_open(b2, "job3");
    txn_put(z, 0, "zz");
    sl_txn_producer *y;
    assert_int_equal(sl_txn_producer_open(&y, f->b, "t", "job3"), SL_EBUSY);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "writer"));
    assert_int_equal(
        sl_txn_producer_append(z, 0, &(sl_record){.value = "x", .value_len = 1}, 1, NULL),
        SL_EFENCED); /* the bump is durable all the same */
    sl_txn_producer_close(z);
    assert_int_equal(sl_broker_close(b2), 0);
    y = txn_open(f->b, "job3"); /* the writer is gone: now it is aborted */
    expect(f->b, 0, "n0", "o0,n0,zz");
    sl_txn_producer_close(y);
}

/* A transaction open longer than its timeout is aborted by
 * sl_txn_abort_expired (and its producer fenced); not before. */
static void test_timeout_abort(void **state)
{
    fx *f = *state;
    sl_txn_producer *p = txn_open(f->b, "slow");
    assert_int_equal(sl_txn_producer_set_timeout(p, 0), SL_EINVAL);
    assert_int_equal(sl_txn_producer_set_timeout(p, 60 * 60 * 1000), 0);
    txn_put(p, 0, "s");
    int64_t now = (int64_t)time(NULL) * 1000;
    assert_int_equal(sl_txn_abort_expired(f->b, now), 0); /* 1 h not over */
    /* This handle writes partition 0 itself: the marker goes through it. */
    assert_int_equal(sl_txn_abort_expired(f->b, now + 2 * 60 * 60 * 1000), 1);
    assert_int_equal(sl_txn_abort_expired(f->b, now + 2 * 60 * 60 * 1000), 0);
    expect(f->b, 0, "", "s");
    assert_int_equal(part_info(f->b, 0).last_stable_offset, part_info(f->b, 0).next_offset);
    assert_int_equal(sl_txn_producer_commit(p), SL_EFENCED);
    sl_txn_producer_close(p);

    /* Held by a live writer elsewhere: left for later, then aborted. */
    sl_broker *b2;
    assert_int_equal(sl_broker_open(&b2, f->dir, 0), 0);
    p = txn_open(b2, "slow2");
    assert_int_equal(sl_txn_producer_set_timeout(p, 1000), 0);
    txn_put(p, 1, "s2");
    now = (int64_t)time(NULL) * 1000 + 60 * 60 * 1000;
    reopen(f);
    assert_int_equal(sl_txn_abort_expired(f->b, now), 0);
    expect(f->b, 1, "", "s2");
    sl_txn_producer_close(p);
    assert_int_equal(sl_broker_close(b2), 0);
    assert_int_equal(sl_txn_abort_expired(f->b, now), 1);
    expect(f->b, 1, "", "s2");
    assert_int_equal(part_info(f->b, 1).last_stable_offset, part_info(f->b, 1).next_offset);
    /* sl_txn_producer_open aborts expired transactions too (the default
     * timeout is far away, so nothing here). */
    sl_txn_producer_close(txn_open(f->b, "other"));
    assert_int_equal(sl_txn_abort_expired(NULL, 0), SL_EINVAL);
}

/* sl_txn_recover_commit in the four cases of its contract. */
static void test_recover_commit(void **state)
{
    fx *f = *state;
    /* Nothing open: 1 (also for an unknown id). */
    sl_txn_producer *p = txn_open(f->b, "r");
    int64_t pid = sl_txn_producer_id(p);
    int16_t ep = sl_txn_producer_epoch(p);
    assert_int_equal(sl_txn_recover_commit(f->b, "t", "r", pid, ep), 1);
    assert_int_equal(sl_txn_recover_commit(f->b, "t", "nobody", 0, 0), 1);
    assert_int_equal(sl_txn_recover_commit(f->b, "t", "", 0, 0), SL_EINVAL);

    /* Open on two partitions, crash: 0, both committed. */
    txn_put(p, 0, "a0");
    txn_put(p, 1, "a1");
    sl_txn_producer_close(p);
    reopen(f);
    assert_int_equal(sl_txn_recover_commit(f->b, "other", "r", pid, ep), SL_EINVAL);
    assert_non_null(strstr(sl_broker_errmsg(f->b), "topic 't'"));
    assert_int_equal(sl_txn_recover_commit(f->b, "t", "r", pid, ep), 0);
    expect(f->b, 0, "a0", "a0");
    expect(f->b, 1, "a1", "a1");
    assert_int_equal(sl_txn_recover_commit(f->b, "t", "r", pid, ep), 1);
    reopen(f);

    /* Committed on one of two partitions before the crash: 0, the other
     * committed, and no second marker on the first. */
    p = txn_open(f->b, "r");
    pid = sl_txn_producer_id(p);
    ep = sl_txn_producer_epoch(p);
    txn_put(p, 0, "b0");
    txn_put(p, 1, "b1");
    sl_producer_ref ref = {.producer_id = pid, .epoch = ep, .base_sequence = -1};
    assert_int_equal(
        slb_log_append_marker(f->b, "t", 0, &ref, SLB_MARKER_COMMIT, false, true, NULL), 0);
    sl_txn_producer_close(p);
    reopen(f);
    int64_t end0 = part_info(f->b, 0).next_offset;
    expect(f->b, 0, "a0,b0", "a0,b0");
    expect(f->b, 1, "a1", "a1,b1");
    assert_int_equal(sl_txn_recover_commit(f->b, "t", "r", pid, ep), 0);
    assert_int_equal(part_info(f->b, 0).next_offset, end0);
    expect(f->b, 1, "a1,b1", "a1,b1");
    reopen(f);

    /* The epoch was bumped since: 1, the data stays aborted. */
    p = txn_open(f->b, "r");
    pid = sl_txn_producer_id(p);
    ep = sl_txn_producer_epoch(p);
    txn_put(p, 0, "c0");
    sl_txn_producer_close(p);
    reopen(f);
    sl_txn_producer_close(txn_open(f->b, "r"));
    assert_int_equal(sl_txn_recover_commit(f->b, "t", "r", pid, ep), 1);
    expect(f->b, 0, "a0,b0", "a0,b0,c0");
}

/* A torn COMMIT marker at the tail is cut by recovery: the transaction
 * stays open (readers stop at it) until recovered. */
static void test_torn_marker(void **state)
{
    fx *f = *state;
    sl_txn_producer *p = txn_open(f->b, "torn");
    int64_t pid = sl_txn_producer_id(p);
    int16_t ep = sl_txn_producer_epoch(p);
    txn_put(p, 0, "d");
    /* The state as the crash leaves it: the transaction listed as open. */
    char st[4096], keep[4200];
    snprintf(st, sizeof st, "%s/__transactions.state", f->dir);
    snprintf(keep, sizeof keep, "%s/keep", f->dir);
    assert_int_equal(link(st, keep), 0);
    assert_int_equal(sl_txn_producer_commit(p), 0);
    sl_txn_producer_close(p);
    assert_int_equal(sl_broker_close(f->b), 0);
    f->b = NULL;
    assert_int_equal(rename(keep, st), 0);
    char seg[4096];
    snprintf(seg, sizeof seg, "%s/t/0/%020d.log", f->dir, 0);
    struct stat sb;
    assert_int_equal(stat(seg, &sb), 0);
    assert_int_equal(truncate(seg, sb.st_size - 5), 0); /* into the marker */
    assert_int_equal(sl_broker_open(&f->b, f->dir, 0), 0);
    plain_put(f->b, 0, "e"); /* the writer's recovery cuts the torn marker */
    sl_partition_info pi = part_info(f->b, 0);
    assert_int_equal(pi.next_offset, 2); /* d at 0, e at 1: the marker is gone */
    assert_int_equal(pi.last_stable_offset, 0);
    expect(f->b, 0, "", "d,e");
    assert_int_equal(sl_txn_recover_commit(f->b, "t", "torn", pid, ep), 0);
    expect(f->b, 0, "d,e", "d,e");
}

/* A transaction that spans segment rolls: the LSO still counts from its
 * first batch after a reopen (the .txnopen file carried into the active
 * segment), in the lock-free view and in a writer's; its producer's next
 * batch is still accepted at its next sequence; the re-open aborts it all. */
static void test_lso_across_rolls(void **state)
{
    fx *f = *state;
    assert_int_equal(sl_topic_delete(f->b, "t"), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = 1024;
    assert_int_equal(sl_topic_create(f->b, "t", &c), 0);
    plain_put(f->b, 0, "first");
    sl_txn_producer *p = txn_open(f->b, "long");
    int64_t pid = sl_txn_producer_id(p);
    int16_t ep = sl_txn_producer_epoch(p);
    char v[200];
    memset(v, 'v', sizeof v - 1);
    v[sizeof v - 1] = 0;
    for (int i = 0; i < 20; i++) txn_put(p, 0, v);
    plain_put(f->b, 0, "after");
    sl_partition_info pi = part_info(f->b, 0);
    assert_true(pi.segments >= 3);
    assert_int_equal(pi.last_stable_offset, 1);
    sl_txn_producer_close(p);
    reopen(f);
    pi = part_info(f->b, 0); /* lock-free */
    assert_int_equal(pi.last_stable_offset, 1);
    assert_int_equal(pi.next_offset, 22);
    sl_record r = rec_v("more");
    sl_producer_ref ref = {.producer_id = pid, .epoch = ep, .base_sequence = 20};
    assert_int_equal(sl_log_append_idempotent(f->b, "t", 0, &ref, &r, 1, NULL), 0);
    assert_int_equal(part_info(f->b, 0).last_stable_offset, 1); /* the writer's view */
    char buf[8192];
    assert_int_equal(read_iso(f->b, 0, SL_READ_COMMITTED, buf, sizeof buf, NULL), 1);
    assert_string_equal(buf, "first");
    sl_txn_producer_close(txn_open(f->b, "long"));
    pi = part_info(f->b, 0);
    assert_int_equal(pi.last_stable_offset, pi.next_offset);
    /* "more" was an idempotent, not a transactional, batch. */
    assert_int_equal(read_iso(f->b, 0, SL_READ_COMMITTED, buf, sizeof buf, NULL), 3);
    assert_string_equal(buf, "first,after,more");
}

/* Compaction lets no transactional record supersede another: an aborted
 * transaction's later value of a key does not remove the committed one. */
static void test_compaction_and_aborts(void **state)
{
    fx *f = *state;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.compact = 1;
    c.segment_bytes = 1024; /* one record per segment */
    assert_int_equal(sl_topic_create(f->b, "c", &c), 0);
    static char big[600];
    memset(big, 'v', sizeof big);
    sl_record r = {.key = "k", .key_len = 1, .value = big, .value_len = 600, .timestamp = 1};
    big[0] = '1';
    assert_int_equal(sl_log_append(f->b, "c", 0, &r, 1, NULL), 0);
    sl_txn_producer *p;
    assert_int_equal(sl_txn_producer_open(&p, f->b, "c", "ct"), 0);
    big[0] = '2';
    assert_int_equal(sl_txn_producer_append(p, 0, &r, 1, NULL), 0);
    assert_int_equal(sl_txn_producer_abort(p), 0);
    r.key = "j";
    assert_int_equal(sl_log_append(f->b, "c", 0, &r, 1, NULL), 0);
    assert_int_equal(sl_log_append(f->b, "c", 0, &r, 1, NULL), 0);
    int rc = sl_topic_clean(f->b, "c", 0);
    if (rc) fprintf(stderr, "clean: %s\n", sl_broker_errmsg(f->b));
    assert_int_equal(rc, 0);
    sl_log_reader *rd;
    sl_message m;
    assert_int_equal(sl_log_reader_open(&rd, f->b, "c", 0, SL_OFFSET_BEGINNING), 0);
    assert_int_equal(sl_log_reader_next(rd, &m, 0), 0);
    assert_int_equal(m.offset, 0); /* k's committed value is still there */
    assert_int_equal(((const char *)m.value)[0], '1');
    assert_int_equal(sl_log_reader_next(rd, &m, 0), 0);
    assert_memory_equal(m.key, "j", 1);
    sl_log_reader_close(rd);
    sl_txn_producer_close(p);
}

/* A state file of version 1 (no transaction fields) is read and its epochs
 * go on; a failed write of the state file at the first append to a
 * partition fails that append (nothing written), and the retry works. */
static void test_state_file_v1_and_faults(void **state)
{
    fx *f = *state;
    uint8_t v1[20 + 12 + 2] = {'S', 'L', 'T', 'X'};
    slb_put64(v1 + 8, 5);  /* next producer id */
    slb_put32(v1 + 16, 1); /* one entry */
    slb_put64(v1 + 20, 3); /* producer 3 */
    v1[28] = 7;            /* epoch 7 */
    v1[30] = 2;            /* id "ab" */
    memcpy(v1 + 32, "ab", 2);
    slb_put32(v1 + 4, sli_crc32c(0, v1 + 8, sizeof v1 - 8));
    char path[4096];
    snprintf(path, sizeof path, "%s/__transactions.state", f->dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(v1, 1, sizeof v1, fp), sizeof v1);
    fclose(fp);
    sl_txn_producer *p = txn_open(f->b, "ab");
    assert_int_equal(sl_txn_producer_id(p), 3);
    assert_int_equal(sl_txn_producer_epoch(p), 8);
    sl_txn_producer *q = txn_open(f->b, "new");
    assert_int_equal(sl_txn_producer_id(q), 5);
    sl_txn_producer_close(q);

    sl_record r = rec_v("x");
    sli_fsio_fail_after(SLI_FSIO_RENAME, 0, EIO, false);
    assert_int_not_equal(sl_txn_producer_append(p, 0, &r, 1, NULL), 0);
    sli_fsio_fail_reset();
    assert_int_equal(part_info(f->b, 0).next_offset, 0);
    txn_put(p, 0, "x");
    assert_int_equal(sl_txn_producer_commit(p), 0);
    expect(f->b, 0, "x", "x");
    sl_txn_producer_close(p);
}

/* The topic of an open transaction was deleted: re-opening the id (on
 * another topic) finds nothing to end there, and works. */
static void test_topic_deleted(void **state)
{
    fx *f = *state;
    sl_txn_producer *p = txn_open(f->b, "gone");
    txn_put(p, 0, "x");
    sl_txn_producer_close(p);
    reopen(f);
    assert_int_equal(sl_topic_delete(f->b, "t"), 0);
    assert_int_equal(sl_topic_create(f->b, "u", NULL), 0);
    assert_int_equal(sl_txn_producer_open(&p, f->b, "u", "gone"), 0);
    assert_int_equal(sl_txn_producer_epoch(p), 1);
    sl_txn_producer_close(p);
}

/* SL_OFFSET_END is the LSO under read_committed (a transaction open at the
 * end is read once committed), the log end under read_uncommitted. */
static void test_end_is_lso(void **state)
{
    fx *f = *state;
    plain_put(f->b, 0, "n0");
    sl_txn_producer *p = txn_open(f->b, "e");
    txn_put(p, 0, "x");
    plain_put(f->b, 0, "y");
    sl_log_reader *rc_r, *ru_r;
    sl_message m;
    assert_int_equal(sl_log_reader_open(&rc_r, f->b, "t", 0, SL_OFFSET_END), 0);
    assert_int_equal(sl_log_reader_position(rc_r), 1);
    assert_int_equal(sl_log_reader_open(&ru_r, f->b, "t", 0, SL_OFFSET_END), 0);
    assert_int_equal(sl_log_reader_set_isolation(ru_r, SL_READ_UNCOMMITTED), 0);
    assert_int_equal(sl_log_reader_position(ru_r), 3);
    assert_int_equal(sl_log_reader_next(rc_r, &m, 0), SL_EAGAIN);
    assert_int_equal(sl_txn_producer_commit(p), 0);
    assert_int_equal(sl_log_reader_next(rc_r, &m, 0), 0);
    assert_memory_equal(m.value, "x", 1);
    assert_int_equal(sl_log_reader_next(rc_r, &m, 0), 0);
    assert_memory_equal(m.value, "y", 1);
    assert_int_equal(sl_log_reader_next(ru_r, &m, 0), SL_EAGAIN); /* the marker only */
    assert_int_equal(sl_log_reader_seek(ru_r, SL_OFFSET_END), 0);
    assert_int_equal(sl_log_reader_position(ru_r), 4);
    sl_log_reader_close(rc_r);
    sl_log_reader_close(ru_r);
    sl_txn_producer_close(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_aborted_invisible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow_other_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_aborts_every_partition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lso_across_rolls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction_and_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_file_v1_and_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_is_lso, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
