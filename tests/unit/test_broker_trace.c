/*
 * tests/unit/test_broker_trace.c - W3C trace context through the built-in
 * broker's topic source and sink.
 *
 * What it proves: a message with a valid `traceparent` header (version 00,
 * or a later version with more after a '-') comes out of a pipeline's
 * broker sink with a `traceparent` of the same trace id and flags and a new,
 * non-zero span id, also after a flat_map and a rebalance, with and without
 * exactly-once (the transactional path); a message without the header, or
 * with a malformed one (each kind: too long or short, uppercase hex,
 * version ff, zero trace or span id, bad separators, a non-hex digit, empty
 * or null value), comes out without one, and every malformed header is
 * counted (sl_pipeline_trace_malformed), never a failure. Source
 * parallelism 1..2 over 2 partitions.
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

#define TID  "4bf92f3577b34da6a3ce929d0e0e47"
#define SPAN "00f067aa0ba902b7"

/* The header a message gets, by kind; NULL value pointer: none at all. */
static const struct {
    const char *value; /* "" with null_value: a null header value */
    int valid;
    int null_value;
} kinds[] = {
    {NULL, 0, 0},                                                /* no header */
    {"00-" TID "%02x-" SPAN "-01", 1, 0},                        /* valid, sampled */
    {"00-" TID "%02x-" SPAN "-00", 1, 0},                        /* valid, not sampled */
    {"01-" TID "%02x-" SPAN "-01-what-follows", 1, 0},           /* a later version */
    {"00-" TID "%02x-" SPAN "-01-", 0, 0},                       /* version 00 is 55 long */
    {"00-" TID "%02x-" SPAN "-0", 0, 0},                         /* short */
    {"00-4BF92F3577B34DA6A3CE929D0E0E47%02x-" SPAN "-01", 0, 0}, /* uppercase */
    {"ff-" TID "%02x-" SPAN "-01", 0, 0},                        /* version ff */
    {"00-00000000000000000000000000000000-" SPAN "-01", 0, 0},   /* zero trace id */
    {"00-" TID "%02x-0000000000000000-01", 0, 0},                /* zero span id */
    {"00_" TID "%02x_" SPAN "_01", 0, 0},                        /* separators */
    {"00-" TID "%02x-" SPAN "-0g", 0, 0},                        /* not hex */
    {"", 0, 0},                                                  /* empty */
    {"", 0, 1},                                                  /* null value */
};
#define NKINDS (int)(sizeof(kinds) / sizeof(kinds[0]))
#define NREC   700

static int kind_of(int i)
{
    return i % NKINDS;
}

static int n_malformed(void)
{
    int n = 0;
    for (int i = 0; i < NREC; i++)
        if (kinds[kind_of(i)].value && !kinds[kind_of(i)].valid) n++;
    return n;
}

static void make_topic(sl_broker *b, const char *topic, int partitions)
{
    sl_topic_conf tc;
    sl_topic_conf_init(&tc);
    tc.partitions = partitions;
    assert_int_equal(sl_topic_create(b, topic, &tc), 0);
}

static void fill_input(sl_broker *b)
{
    make_topic(b, "in", 2);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, b, "in"), 0);
    for (int i = 0; i < NREC; i++) {
        char v[32], tp[128];
        snprintf(v, sizeof(v), "v%d", i);
        int k = kind_of(i);
        sl_record_header h[2] = {
            {.key = "other", .key_len = 5, .value = "x", .value_len = 1},
            {.key = "traceparent", .key_len = 11},
        };
        if (kinds[k].value) {
            snprintf(tp, sizeof(tp), kinds[k].value, i & 0xff);
            h[1].value = kinds[k].null_value ? NULL : tp;
            h[1].value_len = kinds[k].null_value ? 0 : strlen(tp);
        }
        sl_record r = {.value = v,
                       .value_len = strlen(v),
                       .timestamp = i / 3, /* 0 first: a valid time */
                       .headers = h,
                       .header_count = kinds[k].value ? 2 : 1};
        assert_int_equal(sl_producer_send(p, SL_PARTITION_ANY, &r, NULL), 0);
    }
    assert_int_equal(sl_producer_close(p), 0);
}

/* pass each record on as a new record, from its input record */
static int copy_rec(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return sl_emit_copy(ctx, ts, 0, rec, len);
}

static int fmt_value(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    sl_bytes r = {rec, len};
    sl_bytes v = sl_broker_rec_value(r);
    return sl_buf_append(out, v.ptr, v.len);
}

static void check_output(sl_broker *b, const char *topic)
{
    int seen[NREC] = {0};
    for (int part = 0; part < 2; part++) {
        sl_log_reader *r;
        assert_int_equal(sl_log_reader_open(&r, b, topic, part, SL_OFFSET_BEGINNING), 0);
        sl_message m;
        while (sl_log_reader_next(r, &m, 0) == 0) {
            char v[32];
            assert_true(m.value_len < sizeof(v));
            memcpy(v, m.value, m.value_len);
            v[m.value_len] = 0;
            int i = atoi(v + 1);
            assert_true(i >= 0 && i < NREC);
            seen[i]++;
            int k = kind_of(i);
            const sl_record_header *tp = NULL;
            for (size_t h = 0; h < m.header_count; h++)
                if (m.headers[h].key_len == 11 && !memcmp(m.headers[h].key, "traceparent", 11))
                    tp = &m.headers[h];
            if (!kinds[k].valid) {
                if (tp) fail_msg("v%d (kind %d): a traceparent came out of none", i, k);
                continue;
            }
            if (!tp) fail_msg("v%d (kind %d): no traceparent came out", i, k);
            char in[128], want_tid[33];
            snprintf(in, sizeof(in), kinds[k].value, i & 0xff);
            memcpy(want_tid, in + 3, 32);
            want_tid[32] = 0;
            const char *out = tp->value;
            assert_int_equal(tp->value_len, 55);
            assert_memory_equal(out, "00-", 3);             /* we speak version 00 */
            assert_memory_equal(out + 3, want_tid, 32);     /* the same trace */
            assert_memory_not_equal(out + 36, in + 36, 16); /* a new span id */
            assert_memory_not_equal(out + 36, "0000000000000000", 16);
            assert_memory_equal(out + 52, in + 52, 3); /* the same flags */
            for (int c = 0; c < 55; c++)
                assert_true((out[c] >= '0' && out[c] <= '9') || (out[c] >= 'a' && out[c] <= 'f') ||
                            out[c] == '-');
        }
        sl_log_reader_close(r);
    }
    for (int i = 0; i < NREC; i++)
        if (seen[i] != 1) fail_msg("v%d came out %d times", i, seen[i]);
}

static void run_copy(int src_par, int exactly_once, const char *out_topic)
{
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, SL_BROKER_CREATE), 0);
    make_topic(b, out_topic, 2);

    sl_broker_source_conf sc = {.dir = dir, .topic = "in", .until_end = 1};
    sl_broker_sink_conf kc = {.dir = dir, .topic = out_topic, .format = fmt_value};
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_credits(p, 1);
    char chk[200];
    snprintf(chk, sizeof(chk), "%s/chk-%s", dir, out_topic);
    sl_checkpoint_conf cc = {.dir = chk, .interval_ms = 20};
    if (exactly_once) assert_int_equal(sl_pipeline_set_checkpoint(p, &cc), 0);
    sl_stream *s = sl_pipeline_broker(p, "in", &sc, 0, NULL);
    s = sl_stream_parallelism(s, src_par);
    s = sl_stream_flat_map(s, "copy", copy_rec, NULL, 0);
    s = sl_stream_rebalance(s);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_broker, &kc), 0);
    assert_int_equal(sl_pipeline_set_node_parallelism(p, "out", 1), 0);
    int rc = sl_pipeline_run(p);
    if (rc) fail_msg("run failed: %s", sl_pipeline_errmsg(p));
    assert_int_equal(sl_pipeline_trace_malformed(p), n_malformed());
    sl_pipeline_free(p);
    check_output(b, out_topic);
    sl_broker_close(b);
}

static void test_through_the_broker(void **state)
{
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, SL_BROKER_CREATE), 0);
    fill_input(b);
    sl_broker_close(b);
    run_copy(1, 0, "out-1");
    run_copy(2, 0, "out-2");
    run_copy(2, 1, "out-eo");
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-btrace-XXXXXX");
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
        cmocka_unit_test(test_through_the_broker),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
