/*
 * tests/unit/test_base.c - engine/base/, the floor every other one stands on:
 * the errno mapper (table-driven, both signs), the clock helpers (units and
 * monotonicity, never speed), the monotonic timed wait, and the fault
 * injection of fsio staying out of the shared library's ABI.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <cmocka.h>

#include "engine/base/clock.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"
#include "sluice/error.h"

static void test_errno_code(void **state)
{
    (void)state;
    static const struct {
        int e, code;
    } map[] = {
        {0, 0},
        {ENOMEM, SL_ENOMEM},
        {ENOENT, SL_ENOENT},
        {ENOTDIR, SL_ENOENT},
        {EEXIST, SL_EEXIST},
        {ENOTEMPTY, SL_EEXIST},
        {EACCES, SL_EPERM},
        {EPERM, SL_EPERM},
        {EROFS, SL_EPERM},
        {ENOSPC, SL_EFULL},
        {EDQUOT, SL_EFULL},
        {EMFILE, SL_EFULL},
        {ENFILE, SL_EFULL},
        {EFBIG, SL_ETOOBIG},
        {EBUSY, SL_EBUSY},
        {ETXTBSY, SL_EBUSY},
        {EAGAIN, SL_EAGAIN},
        {EWOULDBLOCK, SL_EAGAIN},
        {EINVAL, SL_EINVAL},
        {ENAMETOOLONG, SL_EINVAL},
        {EISDIR, SL_EINVAL},
        {ELOOP, SL_EINVAL},
        {ERANGE, SL_ERANGE},
        {EOVERFLOW, SL_ERANGE},
        {ENOTSUP, SL_ENOTSUP},
        {EOPNOTSUPP, SL_ENOTSUP},
        {ENOSYS, SL_ENOTSUP},
        {ECANCELED, SL_ECANCELED},
        {EIO, SL_EIO},
        {EPIPE, SL_EIO},
        {EXDEV, SL_EIO},
        {12345, SL_EIO},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (sli_errno_code(map[i].e) != map[i].code || sli_errno_code(-map[i].e) != map[i].code)
            fail_msg("errno %d (%s): got %s and %s for -errno, want %s", map[i].e,
                     strerror(map[i].e), sl_err_name(sli_errno_code(map[i].e)),
                     sl_err_name(sli_errno_code(-map[i].e)), sl_err_name(map[i].code));
    }
    /* Every errno gives a code that sl_strerror() knows. */
    for (int e = 1; e < 200; e++) assert_string_not_equal(sl_err_name(sli_errno_code(e)), "SL_E?");
}

static void test_clock(void **state)
{
    (void)state;
    /* Units: the same instant in ms, ns and s (read in that order). */
    int64_t ms = sli_clock_mono_ms();
    int64_t ns = sli_clock_mono_ns();
    double s = sli_clock_mono_s();
    assert_true(ns / 1000000 >= ms);
    assert_true((int64_t)(s * 1000.0) >= ms);
    /* Monotonic: never goes back. */
    int64_t prev = sli_clock_mono_ns();
    for (int i = 0; i < 1000; i++) {
        int64_t now = sli_clock_mono_ns();
        assert_true(now >= prev);
        prev = now;
    }
    /* Wall clock: ms since the epoch, the same as time(2) gives in seconds.
     * time(2) reads the coarse clock, which may lag CLOCK_REALTIME by a tick
     * across a second boundary: a second either side is the same clock. */
    time_t t0 = time(NULL);
    int64_t w = sli_clock_wall_ms();
    time_t t1 = time(NULL);
    assert_true(w / 1000 >= (int64_t)t0 - 1 && w / 1000 <= (int64_t)t1 + 1);
}

/* A timed wait on a monotonic condition variable ends, with ETIMEDOUT, at a
 * deadline already passed (and at a future one, after it, in the monotonic
 * clock's terms). */
static void test_mono_timedwait(void **state)
{
    (void)state;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    assert_int_equal(sli_cond_init_mono(&cv), 0);
    struct timespec ts;
    pthread_mutex_lock(&mu);
    sli_clock_mono_deadline(&ts, 0);
    assert_int_equal(pthread_cond_timedwait(&cv, &mu, &ts), ETIMEDOUT);
    sli_clock_mono_deadline(&ts, 20);
    assert_true(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L);
    int rc;
    do rc = pthread_cond_timedwait(&cv, &mu, &ts);
    while (rc == 0); /* spurious wake-ups */
    assert_int_equal(rc, ETIMEDOUT);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    assert_true(now.tv_sec > ts.tv_sec || (now.tv_sec == ts.tv_sec && now.tv_nsec >= ts.tv_nsec));
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
}

/* The fault switches work through the static library (as tests use them)... */
static void test_fsio_fault_switch(void **state)
{
    (void)state;
    char dir[] = "/tmp/sluice-base-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/sub", dir);
    sli_fsio_fail_after(SLI_FSIO_MKDIR, 0, ENOSPC, false);
    assert_int_equal(sli_fsio_mkdir(path, 0755), -ENOSPC);
    assert_int_equal(sli_fsio_failures(), 1);
    assert_int_equal(sli_fsio_mkdir(path, 0755), 0); /* not persistent */
    sli_fsio_fail_reset();
    assert_int_equal(sli_errno_code(sli_fsio_mkdir(path, 0755)), SL_EEXIST);
    assert_int_equal(sli_fsio_remove_tree(dir), 0);
}

/* ... and are not in the shared library's dynamic symbol table, nor is fsio
 * or the errno mapper exported under the public sl_ prefix. */
static void test_fsio_switches_not_exported(void **state)
{
    (void)state;
    char so[4200], cmd[4400];
    snprintf(so, sizeof so, "%s/libsluice.so", SLUICE_BUILD_DIR);
    struct stat st;
    if (stat(so, &st) != 0) skip(); /* the shared library is not built */
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s' 2>/dev/null", so);
    FILE *f = popen(cmd, "r");
    if (!f) skip();
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        n++;
        if (strstr(line, "fsio_fail") || strstr(line, "fsio_crash") || strstr(line, " sl_fsio") ||
            strstr(line, " sl_errno_code"))
            fail_msg("exported: %s", line);
    }
    int st2 = pclose(f);
    if (n == 0 || st2 != 0) skip(); /* no nm */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errno_code),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_mono_timedwait),
        cmocka_unit_test(test_fsio_fault_switch),
        cmocka_unit_test(test_fsio_switches_not_exported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
