/*
 * tests/unit/test_broker_txnsource.c - the broker source's isolation: a
 * bounded (until_end) source reads committed transactions only under
 * read_committed (the default: a zeroed conf) and ends each partition at its
 * last stable offset as of the start, while a transaction is still open;
 * read_uncommitted reads every record to the end; a bad isolation value is
 * an error naming it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/broker.h"
#include "sluice/sluice.h"
#include "tests/unit/test_broker_util.h"

static char *dir;

static void put(sl_broker *b, sl_txn_producer *p, int part, const char *v)
{
    sl_record r = {.value = v, .value_len = strlen(v), .timestamp = 1000};
    if (p)
        assert_int_equal(sl_txn_producer_append(p, part, &r, 1, NULL), 0);
    else
        assert_int_equal(sl_log_append(b, "tx", part, &r, 1, NULL), 0);
}

/* The values the source reads, sorted and joined by ','. */
static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_source(int isolation, char *out, size_t cap, char *err, size_t errcap)
{
    sl_collector *c = sl_collector_new();
    sl_broker_source_conf sc = {.dir = dir,
                                .topic = "tx",
                                .start = SL_OFFSET_BEGINNING,
                                .until_end = 1,
                                .isolation = isolation};
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_broker(p, "in", &sc, 0, NULL);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
    int rc = sl_pipeline_run(p);
    if (err) snprintf(err, errcap, "%s", sl_pipeline_errmsg(p));
    out[0] = 0;
    size_t n = sl_collector_count(c);
    char **v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        int64_t ts;
        sl_bytes val = sl_broker_rec_value(sl_collector_get(c, i, &ts));
        v[i] = strndup((const char *)val.ptr, val.len);
    }
    qsort(v, n, sizeof *v, cmp);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", i ? "," : "", v[i]);
        free(v[i]);
    }
    free(v);
    sl_pipeline_free(p);
    sl_collector_free(c);
    return rc;
}

static void test_source_isolation(void **state)
{
    (void)state;
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, 0), 0);
    sl_topic_conf tc;
    sl_topic_conf_init(&tc);
    tc.partitions = 2;
    assert_int_equal(sl_topic_create(b, "tx", &tc), 0);
    sl_txn_producer *a, *c;
    assert_int_equal(sl_txn_producer_open(&a, b, "tx", "a"), 0);
    assert_int_equal(sl_txn_producer_open(&c, b, "tx", "c"), 0);
    put(b, NULL, 0, "n0");
    put(b, a, 0, "a0");
    put(b, a, 1, "a1");
    assert_int_equal(sl_txn_producer_commit(a), 0);
    put(b, a, 0, "b0");
    assert_int_equal(sl_txn_producer_abort(a), 0);
    put(b, NULL, 0, "n1");
    put(b, c, 0, "c0"); /* open while the jobs run */
    put(b, NULL, 0, "n2");
    put(b, NULL, 1, "m1");

    char out[512], err[512];
    assert_int_equal(run_source(SL_READ_COMMITTED, out, sizeof out, NULL, 0), 0);
    assert_string_equal(out, "a0,a1,m1,n0,n1");
    assert_int_equal(run_source(SL_READ_UNCOMMITTED, out, sizeof out, NULL, 0), 0);
    assert_string_equal(out, "a0,a1,b0,c0,m1,n0,n1,n2");
    assert_int_not_equal(run_source(5, out, sizeof out, err, sizeof err), 0);
    assert_non_null(strstr(err, "isolation 5"));

    assert_int_equal(sl_txn_producer_commit(c), 0);
    assert_int_equal(run_source(SL_READ_COMMITTED, out, sizeof out, NULL, 0), 0);
    assert_string_equal(out, "a0,a1,c0,m1,n0,n1,n2");
    sl_txn_producer_close(a);
    sl_txn_producer_close(c);
    assert_int_equal(sl_broker_close(b), 0);
}

static int setup(void **state)
{
    (void)state;
    dir = tb_tmpdir();
    return dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tb_rmrf(dir);
    free(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_isolation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
