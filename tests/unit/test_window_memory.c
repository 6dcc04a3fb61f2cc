/*
 * tests/unit/test_window_memory.c - what a window key costs in memory.
 *
 * A tumbling or sliding window keeps one value per key in its keyed state
 * table "slices": a pointer to the key's block (header and ring of slices),
 * whose ring starts with one slot and grows (doubling) only when the key has
 * records in more slices (operators/window/slices.c). A hash table pays for
 * its empty slots and, while it doubles, for two arrays, so its values must
 * stay small whatever the window: <= 16 bytes for count, also for a 10 s /
 * 100 ms sliding window (the whole ring, 256 slots of 24 bytes, was inline
 * in every key's value). Many keys with one record each, all in one
 * window, must still give exact results (one per key and window, count 1).
 *
 * `sluice bench windows --keys N` measures the bytes per key (RSS).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "engine/test_hooks.h"
#include "sluice/sluice.h"

#define KEYS 5000

typedef struct kv {
    int64_t key;
    int64_t value;
} kv;

/* Every key once, event times spread over [0, 10 s) in order. */
static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    kv *r = out;
    r->key = (int64_t)seq;
    r->value = 1;
    *ts = (int64_t)(seq * 10000 / KEYS);
    return 0;
}

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

/* Runs the window over KEYS keys; returns the value size of its "slices"
 * table; *results and *total: results and the sum of their counts. */
static uint32_t run(sl_window_conf wc, size_t *results, int64_t *total)
{
    sl_generator_conf gc = {.fn = gen, .count = KEYS};
    sl_watermark_conf wm = {.delay = 0};
    wc.agg = &sl_agg_count;
    sl_collector *res = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_stream *s = sl_pipeline_generator(p, "events", &gc, sizeof(kv), &wm);
    s = sl_stream_key_by(s, "key", key_of, NULL);
    s = sl_stream_window(s, "window", &wc);
    sl_stream_sink(s, "out", &sl_sink_collect, res);
    assert_int_equal(sl_pipeline_run(p), 0);
    uint32_t vs = 0;
    for (int i = 0; i < sli_test_n_instances(p); i++) {
        sl_ctx *c = sli_test_instance(p, i);
        const char *name;
        sl_state *st;
        for (int k = 0; (st = sli_test_ctx_state_at(c, k, &name)) != NULL; k++)
            if (strcmp(name, "slices") == 0) vs = sl_state_value_size(st);
    }
    *results = sl_collector_count(res);
    *total = 0;
    for (size_t i = 0; i < *results; i++) {
        sl_window_result r = sl_window_out(sl_collector_get(res, i, NULL));
        int64_t n;
        memcpy(&n, r.result, 8);
        *total += n;
    }
    sl_pipeline_free(p);
    sl_collector_free(res);
    return vs;
}

static void test_tumbling_value_small(void **state)
{
    size_t results;
    int64_t total;
    uint32_t vs = run(sl_window_tumbling(10000, 0), &results, &total);
    assert_int_not_equal(vs, 0);
    assert_true(vs <= 16); /* was 368: 112 + 16 slots of 16 bytes */
    assert_int_equal(results, KEYS);
    assert_int_equal(total, KEYS);
}

static void test_sliding_value_small(void **state)
{
    size_t results;
    int64_t total;
    uint32_t vs = run(sl_window_sliding(10000, 100), &results, &total);
    assert_int_not_equal(vs, 0);
    assert_true(vs <= 16);                         /* was 6256: 112 + 256 slots of 24 bytes */
    assert_int_equal(results, (size_t)KEYS * 100); /* each record is in 100 windows */
    assert_int_equal(total, (int64_t)KEYS * 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tumbling_value_small),
        cmocka_unit_test(test_sliding_value_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
