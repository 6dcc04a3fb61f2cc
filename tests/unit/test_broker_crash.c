/*
 * tests/unit/test_broker_crash.c - the broker under kill -9 and with several
 * processes:
 *
 *  - a child appends (synchronous appends and the buffered producer, with
 *    segment rolls) and is killed with SIGKILL after a random short delay;
 *    after reopening, the partition holds offsets 0..n-1 without a gap, each
 *    with exactly the value that was appended at that offset;
 *  - a child appends to a compacted topic and compacts in a loop, and is
 *    killed likewise; after reopening, offsets increase, every record is the
 *    one appended at its offset, and the latest record of every key is there;
 *  - one writer process and two reader processes at once: each reader sees
 *    every record exactly once, in offset order.
 *
 * Trials are seeded and bounded; nothing asserts on time (the delays only
 * vary where the kill lands).
 */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <cmocka.h>

#include "engine/base/fsio.h"
#include "sluice/broker.h"
#include "tests/unit/test_broker_util.h"

#define KEYS 50

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int64_t next_offset(sl_broker *b, const char *topic)
{
    sl_topic_info *ti;
    if (sl_topic_describe(b, topic, &ti) < 0) return -1;
    int64_t n = ti->partitions[0].next_offset;
    sl_topic_info_free(ti);
    return n;
}

static size_t value_for(char *buf, int64_t o)
{
    int n = snprintf(buf, 96, "value-%lld-", (long long)o);
    for (int i = 0; i < (int)(o % 23); i++) buf[n++] = (char)('A' + (o + i) % 26);
    return (size_t)n;
}

static size_t key_for(char *buf, int64_t o)
{
    return (size_t)snprintf(buf, 16, "key%lld", (long long)(o % KEYS));
}

/* Child: append forever (until killed). Offsets are known because this is
 * the partition's only writer. */
static void child_append(const char *dir, const char *topic, unsigned seed, bool keys,
                         bool compact_too)
{
    sl_broker *b;
    if (sl_broker_open(&b, dir, 0) < 0) _exit(3);
    int64_t next = next_offset(b, topic);
    if (next < 0) _exit(4);
    sl_producer *p = NULL;
    if (sl_producer_open(&p, b, topic) < 0) _exit(5);
    srand(seed);
    char vals[32][96], ks[32][16];
    for (;;) {
        int n = 1 + rand() % 32;
        sl_record rs[32];
        for (int i = 0; i < n; i++) {
            memset(&rs[i], 0, sizeof rs[i]);
            rs[i].value = vals[i];
            rs[i].value_len = value_for(vals[i], next + i);
            if (keys) {
                rs[i].key = ks[i];
                rs[i].key_len = key_for(ks[i], next + i);
            }
        }
        if (rand() % 2) {
            int64_t base;
            if (sl_log_append(b, topic, 0, rs, (size_t)n, &base) < 0 || base != next) _exit(6);
        } else {
            for (int i = 0; i < n; i++) {
                int64_t off;
                if (sl_producer_send(p, 0, &rs[i], &off) < 0 || off != next + i) _exit(7);
            }
            if (sl_producer_flush(p) < 0) _exit(8);
        }
        next += n;
        if (compact_too && rand() % 4 == 0 && sl_topic_clean(b, topic, 0) < 0) _exit(9);
    }
}

/* Read partition 0 fully and check it; returns the number of records. */
static int64_t check_log(const char *dir, const char *topic, bool compacted, int64_t *next_out)
{
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    /* Reopening as the writer runs recovery. */
    if (!compacted) {
        sl_topic_info *ti;
        assert_int_equal(sl_topic_describe(b, topic, &ti), 0);
        sl_topic_info_free(ti);
    }
    assert_int_equal(sl_topic_clean(b, topic, 0), 0); /* takes the lock: recovery */
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, b, topic, 0, SL_OFFSET_BEGINNING), 0);
    sl_message m;
    int rc;
    int64_t n = 0, prev = -1;
    int64_t last_of_key[KEYS];
    for (int i = 0; i < KEYS; i++) last_of_key[i] = -1;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        char v[96], k[16];
        size_t vl = value_for(v, m.offset);
        if (compacted)
            assert_true(m.offset > prev);
        else
            assert_int_equal(m.offset, prev + 1); /* no gaps */
        assert_int_equal(m.value_len, vl);
        assert_memory_equal(m.value, v, vl);
        if (compacted) {
            size_t kl = key_for(k, m.offset);
            assert_int_equal(m.key_len, kl);
            assert_memory_equal(m.key, k, kl);
            last_of_key[m.offset % KEYS] = m.offset;
        }
        prev = m.offset;
        n++;
    }
    if (rc != SL_EAGAIN) fprintf(stderr, "%s\n", sl_log_reader_errmsg(r));
    assert_int_equal(rc, SL_EAGAIN);
    int64_t next = next_offset(b, topic);
    assert_true(next >= prev + 1);
    if (compacted) {
        /* The latest record of each key (the last KEYS offsets) is there. */
        for (int64_t o = next - 1; o >= 0 && o >= next - KEYS; o--)
            assert_int_equal(last_of_key[o % KEYS], o);
    }
    sl_log_reader_close(r);
    sl_broker_close(b);
    *next_out = next;
    return n;
}

static void kill_trials(bool compacted)
{
    char *dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = compacted ? 4096 : 32 * 1024;
    c.compact = compacted;
    c.tombstone_retention_ms = 0;
    assert_int_equal(sl_topic_create(b, "k9", &c), 0);
    sl_broker_close(b);
    srand(compacted ? 4242 : 1234);
    int64_t prev_next = 0;
    int trials = 12;
    bool compaction_ran = false;
    /* At least 12 trials; with compaction, more until one found the log
     * compacted (a slow build - TSan - may write too little in 12 for the
     * cleaner to have run; each trial appends to the same log). */
    for (int t = 0; t < trials || (compacted && !compaction_ran && t < 200); t++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) child_append(dir, "k9", (unsigned)(t * 7919 + 17), compacted, compacted);
        sleep_us(2000 + rand() % 40000);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        /* Killed, not exited with an error of its own. */
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            fail_msg("child exited with status %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        int64_t next;
        int64_t n = check_log(dir, "k9", compacted, &next);
        assert_true(next >= prev_next); /* nothing acknowledged before is lost */
        if (!compacted) assert_int_equal(n, next);
        if (n < next) compaction_ran = true;
        prev_next = next;
    }
    assert_true(prev_next > 0);
    if (compacted) assert_true(compaction_ran); /* the trials did exercise it */
    tb_rmrf(dir);
    free(dir);
}

static void test_kill9_appends(void **state)
{
    (void)state;
    kill_trials(false);
}

static void test_kill9_compaction(void **state)
{
    (void)state;
    kill_trials(true);
}

/* Crash at chosen points of every protocol step: a child appends to a
 * compacted topic with tiny segments (each roll writes indexes and compacts)
 * and _exits right before the (n+1)-th file-changing call other than the
 * appends' own writes, for n = 0..39 and then every 37th call, until it
 * finishes. Each crash must leave a consistent, complete log. */
static void test_crash_points_compaction(void **state)
{
    (void)state;
    long n = 0;
    int crashes = 0;
    for (;;) {
        char *dir = tb_tmpdir();
        sl_broker *b;
        assert_int_equal(sl_broker_open(&b, dir, 0), 0);
        sl_topic_conf c;
        sl_topic_conf_init(&c);
        c.segment_bytes = 2048;
        c.compact = 1;
        assert_int_equal(sl_topic_create(b, "cp", &c), 0);
        sl_broker_close(b);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            sl_broker *cb;
            if (sl_broker_open(&cb, dir, 0) < 0) _exit(3);
            sli_fsio_crash_after(SLI_FSIO_ALL & ~SLI_FSIO_WRITE, n);
            char vals[8][96], ks[8][16];
            for (int64_t next = 0; next < 600; next += 8) {
                sl_record rs[8];
                for (int i = 0; i < 8; i++) {
                    memset(&rs[i], 0, sizeof rs[i]);
                    rs[i].value = vals[i];
                    rs[i].value_len = value_for(vals[i], next + i);
                    rs[i].key = ks[i];
                    rs[i].key_len = key_for(ks[i], next + i);
                }
                if (sl_log_append(cb, "cp", 0, rs, 8, NULL) < 0) _exit(4);
            }
            if (sl_topic_clean(cb, "cp", 0) < 0) _exit(5);
            sl_broker_close(cb);
            _exit(0);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        int code = WEXITSTATUS(st);
        if (code != 0 && code != SLI_FSIO_CRASH_STATUS) fail_msg("child failed with %d", code);
        int64_t next;
        check_log(dir, "cp", true, &next);
        tb_rmrf(dir);
        free(dir);
        if (code == 0) break;
        crashes++;
        n += n < 40 ? 1 : 37;
    }
    assert_true(crashes > 40);
}

/* Reader child: read n records from offset 0, each exactly once, in order. */
static void child_read(const char *dir, int64_t n)
{
    sl_broker *b;
    if (sl_broker_open(&b, dir, 0) < 0) _exit(3);
    sl_log_reader *r;
    if (sl_log_reader_open(&r, b, "mp", 0, SL_OFFSET_BEGINNING) < 0) _exit(4);
    int64_t expect = 0;
    while (expect < n) {
        sl_message m;
        int rc = sl_log_reader_next(r, &m, 60000); /* a hang guard, not a timing check */
        if (rc == SL_EAGAIN) _exit(5);
        if (rc < 0) _exit(6);
        char v[96];
        size_t vl = value_for(v, m.offset);
        if (m.offset != expect || m.value_len != vl || memcmp(m.value, v, vl) != 0) _exit(7);
        expect++;
    }
    sl_message m;
    if (sl_log_reader_next(r, &m, 0) != SL_EAGAIN) _exit(8); /* nothing extra */
    sl_log_reader_close(r);
    sl_broker_close(b);
    _exit(0);
}

static void test_writer_two_readers(void **state)
{
    (void)state;
    char *dir = tb_tmpdir();
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.segment_bytes = 16 * 1024; /* many rolls while the readers follow */
    assert_int_equal(sl_topic_create(b, "mp", &c), 0);
    sl_broker_close(b);
    const int64_t total = 20000;
    pid_t readers[2];
    for (int i = 0; i < 2; i++) {
        readers[i] = fork();
        assert_true(readers[i] >= 0);
        if (readers[i] == 0) child_read(dir, total);
    }
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        sl_broker *wb;
        if (sl_broker_open(&wb, dir, 0) < 0) _exit(3);
        srand(99);
        int64_t next = 0;
        char vals[64][96];
        while (next < total) {
            int n = 1 + rand() % 64;
            if (next + n > total) n = (int)(total - next);
            sl_record rs[64];
            for (int i = 0; i < n; i++) {
                memset(&rs[i], 0, sizeof rs[i]);
                rs[i].value = vals[i];
                rs[i].value_len = value_for(vals[i], next + i);
            }
            if (sl_log_append(wb, "mp", 0, rs, (size_t)n, NULL) < 0) _exit(4);
            next += n;
            if (rand() % 16 == 0) sleep_us(rand() % 2000); /* let readers catch up */
        }
        sl_broker_close(wb);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(writer, &st, 0), writer);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(waitpid(readers[i], &st, 0), readers[i]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("reader %d failed: status %d", i, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    tb_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_appends),
        cmocka_unit_test(test_kill9_compaction),
        cmocka_unit_test(test_crash_points_compaction),
        cmocka_unit_test(test_writer_two_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
