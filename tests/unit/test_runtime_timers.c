/*
 * tests/unit/test_runtime_timers.c - event-time timers: setting, firing in
 * (time, insertion) order, and deleting (sl_ctx_timer_delete).
 *
 *  - The timer set directly (engine/timer.h): a pair set twice fires once;
 *    a deleted timer never fires; deleted then set again fires once; the
 *    count leaves deleted timers out; deleting what was never set says 0.
 *  - In a pipeline: an operator sets a timer at ts + 10 for every record and
 *    deletes the timers of key 2 when it sees value -1; only the others
 *    fire, each once, in time order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/timer.h"
#include "sluice/sluice.h"

static void test_timer_set_delete(void **state)
{
    sl_timers *t = sli_timers_new();
    assert_non_null(t);
    assert_int_equal(sli_timers_add(t, 10, 1, "a", 1), 0);
    assert_int_equal(sli_timers_add(t, 10, 1, "a", 1), 0); /* same pair: once */
    assert_int_equal(sli_timers_add(t, 5, 2, "b", 1), 0);
    assert_int_equal(sli_timers_add(t, 7, 3, "c", 1), 0);
    assert_int_equal(sli_timers_count(t), 3);
    assert_int_equal(sli_timers_delete(t, 5, 2, "b", 1), 1);
    assert_int_equal(sli_timers_delete(t, 5, 2, "b", 1), 0); /* already gone */
    assert_int_equal(sli_timers_delete(t, 6, 3, "c", 1), 0); /* never set */
    assert_int_equal(sli_timers_count(t), 2);
    /* deleted, then set again: fires once, at its time */
    assert_int_equal(sli_timers_delete(t, 7, 3, "c", 1), 1);
    assert_int_equal(sli_timers_add(t, 7, 3, "c", 1), 0);
    assert_int_equal(sli_timers_count(t), 2);
    sl_timer tm;
    assert_int_equal(sli_timers_pop(t, 100, &tm), 1);
    assert_int_equal(tm.ts, 7);
    assert_memory_equal(tm.key, "c", 1);
    assert_int_equal(sli_timers_pop(t, 100, &tm), 1);
    assert_int_equal(tm.ts, 10);
    assert_memory_equal(tm.key, "a", 1);
    assert_int_equal(sli_timers_pop(t, 100, &tm), 0);
    assert_int_equal(sli_timers_count(t), 0);
    /* a fired timer can be set again and fires again */
    assert_int_equal(sli_timers_add(t, 10, 1, "a", 1), 0);
    assert_int_equal(sli_timers_pop(t, 9, &tm), 0);
    assert_int_equal(sli_timers_pop(t, 10, &tm), 1);
    sli_timers_free(t);
}

typedef struct rec {
    int64_t key;
    int64_t value;
} rec;

typedef struct fired {
    int64_t ts[64];
    int64_t key[64];
    int n;
} fired;

static int tm_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    for (uint32_t i = 0; i < in->count; i++) {
        const rec *r = sl_batch_at(in, i);
        if (r->value == -1) {
            for (int64_t t = 0; t < 100; t++) {
                int rc = sl_ctx_timer_delete(ctx, t + 10, (uint64_t)r->key, &r->key, 8);
                if (rc < 0) return rc;
            }
            continue;
        }
        int rc = sl_ctx_timer(ctx, in->ts[i] + 10, (uint64_t)r->key, &r->key, 8);
        if (rc) return rc;
    }
    return 0;
}

static int tm_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    fired *f = sl_ctx_conf(ctx);
    if (f->n < 64) {
        f->ts[f->n] = t->ts;
        memcpy(&f->key[f->n], t->key, 8);
        f->n++;
    }
    return 0;
}

static const sl_operator tm_op = {
    .version = SL_OPERATOR_VERSION, .kind = "timers", .process = tm_process, .timer = tm_timer};

static const rec script[] = {{1, 0}, {2, 0}, {3, 0}, {2, 0}, {2, -1}, {1, 0}};
static const int64_t script_ts[] = {0, 1, 2, 3, 4, 5};

static int sc_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    *self = calloc(1, sizeof(int));
    return 0;
}

static int sc_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    int *k = self;
    if (*k) return SL_POLL_END;
    *k = 1;
    for (int i = 0; i < 6; i++)
        if (sl_emit_copy(ctx, script_ts[i], 0, &script[i], sizeof(rec))) return sl_ctx_error(ctx);
    return SL_POLL_MORE;
}

static const sl_source sc_src = {.version = SL_SOURCE_VERSION,
                                 .kind = "script",
                                 .open = sc_open,
                                 .poll = sc_poll,
                                 .close = free};

static void test_timer_delete_in_pipeline(void **state)
{
    fired f;
    memset(&f, 0, sizeof(f));
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_stream *s = sl_pipeline_source(p, "src", &sc_src, NULL, sizeof(rec), NULL);
    sl_stream_sink(s, "timers", &tm_op, &f);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_pipeline_free(p);
    /* key 1 at 10 and 15, key 3 at 12; key 2's (11, 13) deleted */
    assert_int_equal(f.n, 3);
    assert_int_equal(f.ts[0], 10);
    assert_int_equal(f.key[0], 1);
    assert_int_equal(f.ts[1], 12);
    assert_int_equal(f.key[1], 3);
    assert_int_equal(f.ts[2], 15);
    assert_int_equal(f.key[2], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timer_set_delete),
        cmocka_unit_test(test_timer_delete_in_pipeline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
