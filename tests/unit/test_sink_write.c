/*
 * tests/unit/test_sink_write.c - the write sink (connectors/sinks.c) fails
 * the job whenever its output fails: a write, the fsync at the end of the
 * input, to a file or to a full device. A job whose output failed never
 * reports success. Failures are injected through engine/base/fsio.h (the
 * sink writes files through it), so each is exact and needs no full disk.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sluice/sluice.h>
#include "engine/base/fsio.h"

static char path[256];

static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    *(int64_t *)out = *ts = (int64_t)seq;
    return 0;
}

static int fmt(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return sl_buf_printf(out, "%lld\n", (long long)*(const int64_t *)rec);
}

/* Generate n numbers into the write sink (to `to`, NULL: standard output)
 * with `par` sink instances; returns the run's code, *msg its message. */
static int run_sink(const char *to, uint64_t n, int par, char *msg, size_t cap)
{
    sl_generator_conf g = {.fn = gen, .count = n};
    sl_write_conf w = {.path = to, .format = fmt};
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    sl_stream *s = sl_pipeline_generator(p, "numbers", &g, sizeof(int64_t), NULL);
    if (par > 1) s = sl_stream_rebalance(s);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_write, &w), 0);
    if (par > 1) assert_int_equal(sl_pipeline_set_node_parallelism(p, "out", par), 0);
    int rc = sl_pipeline_run(p);
    snprintf(msg, cap, "%s", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    return rc;
}

static long file_lines(const char *f)
{
    FILE *fp = fopen(f, "r");
    if (!fp) return -1;
    long n = 0;
    int c;
    while ((c = fgetc(fp)) != EOF) n += c == '\n';
    fclose(fp);
    return n;
}

static void test_file_ok(void **state)
{
    char msg[512];
    assert_int_equal(run_sink(path, 100000, 1, msg, sizeof msg), 0);
    assert_int_equal(file_lines(path), 100000);
}

static void test_write_fails(void **state)
{
    static const int errs[] = {ENOSPC, EIO, EDQUOT};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        char msg[512];
        /* the first write succeeds, the second fails */
        sli_fsio_fail_after(SLI_FSIO_WRITE, 1, errs[i], false);
        int rc = run_sink(path, 100000, 1, msg, sizeof msg);
        long failed = sli_fsio_failures();
        sli_fsio_fail_reset();
        if (rc == 0 || !strstr(msg, strerror(errs[i])) || !strstr(msg, path))
            fprintf(stderr, "write fails with %s: rc %d, '%s'\n", strerror(errs[i]), rc, msg);
        assert_int_equal(failed, 1);
        assert_true(rc < 0);
        assert_non_null(strstr(msg, path));
        assert_non_null(strstr(msg, strerror(errs[i])));
    }
}

/* The last write was fine, the fsync at the end of the input is not: a
 * write the kernel could not carry out late (NFS, a failed writeback). */
static void test_fsync_fails(void **state)
{
    for (int par = 1; par <= 3; par += 2) {
        char msg[512];
        sli_fsio_fail_after(SLI_FSIO_FSYNC, 0, EIO, false);
        int rc = run_sink(path, 5000, par, msg, sizeof msg);
        long failed = sli_fsio_failures();
        sli_fsio_fail_reset();
        if (rc == 0 || !strstr(msg, "fsync"))
            fprintf(stderr, "fsync fails: rc %d, '%s'\n", rc, msg);
        assert_int_equal(failed, 1);
        assert_int_equal(rc, SL_EIO);
        assert_non_null(strstr(msg, "Input/output error"));
        assert_non_null(strstr(msg, "fsync"));
        assert_non_null(strstr(msg, path));
    }
    /* and without injection the same runs pass */
    char msg[512];
    assert_int_equal(run_sink(path, 5000, 3, msg, sizeof msg), 0);
    assert_int_equal(file_lines(path), 5000);
}

/* A device that is always full: the first write fails. */
static void test_dev_full(void **state)
{
    char msg[512];
    int rc = run_sink("/dev/full", 10, 1, msg, sizeof msg);
    assert_int_equal(rc, SL_EFULL);
    assert_non_null(strstr(msg, "cannot write /dev/full: No space left on device"));
}

static int setup(void **state)
{
    snprintf(path, sizeof path, "/tmp/sluice-test-sink-write-%ld.txt", (long)getpid());
    return 0;
}

static int teardown(void **state)
{
    unlink(path);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_ok),
        cmocka_unit_test(test_write_fails),
        cmocka_unit_test(test_fsync_fails),
        cmocka_unit_test(test_dev_full),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
