/*
 * tests/unit/test_runtime_proc_timer.c - processing-time timers: a timer set
 * from process() fires once per (key, due time) with its key, on the
 * instance's own thread between batches, also when its due time has passed
 * already; timers still pending at the end of the input are dropped; a
 * version 1 operator table is still accepted, and asking it for a
 * processing-time timer fails with a message. No assertion is on time: the
 * source keeps the job alive until the timers have fired (with a cap on
 * polls that turns a timer that never fires into a failure, not a hang).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sluice/sluice.h"

#define KEYS 3

typedef struct shared {
    atomic_int fired[KEYS];
    atomic_int in_callback[4]; /* per instance: its callbacks never overlap */
    atomic_int overlap;
    int past; /* set the timers in the past */
} shared;

/* Source: emits key i as record i (i < KEYS), then waits for every timer. */
typedef struct src {
    int next;
    long polls;
} src;

static int src_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    *self = calloc(1, sizeof(src));
    return *self ? 0 : SL_ENOMEM;
}

static int src_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    src *s = self;
    shared *sh = sl_ctx_conf(ctx);
    if (s->next < KEYS) {
        char k = (char)('a' + s->next++);
        return sl_emit_copy(ctx, 0, 0, &k, 1) ? sl_ctx_error(ctx) : SL_POLL_MORE;
    }
    int done = 1;
    for (int i = 0; i < KEYS; i++) done &= atomic_load(&sh->fired[i]) > 0;
    if (done || ++s->polls > 200000) return SL_POLL_END; /* ~200 s of 1 ms waits */
    return SL_POLL_WAIT;
}

static const sl_source source = {.version = SL_SOURCE_VERSION,
                                 .kind = "keys",
                                 .open = src_open,
                                 .poll = src_poll,
                                 .close = free};

static int op_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    shared *sh = sl_ctx_conf(ctx);
    atomic_fetch_add(&sh->in_callback[sl_ctx_instance(ctx)], 1);
    int64_t now = sl_clock_ms();
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes k = sl_batch_bytes(in, i);
        int64_t due = sh->past ? now - 1000 : now + 5;
        /* the same (key, due) twice fires once */
        if (sl_ctx_proc_timer(ctx, due, in->hash[i], k.ptr, k.len)) return sl_ctx_error(ctx);
        if (sl_ctx_proc_timer(ctx, due, in->hash[i], k.ptr, k.len)) return sl_ctx_error(ctx);
        /* and one an hour away, pending at the end: dropped, never fired */
        if (sl_ctx_proc_timer(ctx, now + 3600 * 1000, in->hash[i], k.ptr, k.len))
            return sl_ctx_error(ctx);
    }
    atomic_fetch_sub(&sh->in_callback[sl_ctx_instance(ctx)], 1);
    return 0;
}

static int op_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    shared *sh = sl_ctx_conf(ctx);
    if (atomic_fetch_add(&sh->in_callback[sl_ctx_instance(ctx)], 1) != 0)
        atomic_store(&sh->overlap, 1);
    if (t->key_len != 1) return sl_ctx_fail(ctx, SL_EINVAL, "timer key of %u bytes", t->key_len);
    int k = ((const char *)t->key)[0] - 'a';
    if (k < 0 || k >= KEYS) return sl_ctx_fail(ctx, SL_EINVAL, "timer for an unknown key");
    if (t->ts > sl_clock_ms()) return sl_ctx_fail(ctx, SL_EINVAL, "timer fired before it was due");
    atomic_fetch_add(&sh->fired[k], 1);
    int rc = sl_emit_copy(ctx, t->ts, t->hash, t->key, 1);
    atomic_fetch_sub(&sh->in_callback[sl_ctx_instance(ctx)], 1);
    return rc;
}

static const sl_operator op = {.version = SL_OPERATOR_VERSION,
                               .kind = "proc-timers",
                               .process = op_process,
                               .proc_timer = op_timer};

static sl_bytes whole(const void *rec, uint32_t len, void *ud)
{
    sl_bytes b = {rec, len};
    return b;
}

static void run_case(int past, int parallelism, int threads)
{
    shared sh;
    memset(&sh, 0, sizeof(sh));
    sh.past = past;
    sl_collector *out = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, threads);
    sl_stream *s = sl_pipeline_source(p, "keys", &source, &sh, 1, NULL);
    s = sl_stream_key_by(s, "key", whole, NULL);
    s = sl_stream_parallelism(sl_stream_apply(s, "timers", &op, &sh, 1), parallelism);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, out), 0);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    for (int i = 0; i < KEYS; i++) assert_int_equal(atomic_load(&sh.fired[i]), 1);
    assert_int_equal(atomic_load(&sh.overlap), 0);
    assert_int_equal(sl_collector_count(out), KEYS); /* the hour-away timers never fired */
    sl_pipeline_free(p);
    sl_collector_free(out);
}

static void test_fire_once_per_key(void **state)
{
    for (int threads = 1; threads <= 2; threads++)
        for (int par = 1; par <= 3; par++) run_case(0, par, threads);
}

static void test_due_in_the_past(void **state)
{
    run_case(1, 2, 2);
}

static int v1_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    return sl_ctx_proc_timer(ctx, sl_clock_ms(), 0, NULL, 0);
}

static void test_version_1_table(void **state)
{
    sl_operator v1 = {.version = 1, .kind = "old", .process = v1_process};
    shared sh;
    memset(&sh, 0, sizeof(sh));
    sl_collector *out = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_source(p, "keys", &source, &sh, 1, NULL);
    s = sl_stream_apply(s, "old", &v1, NULL, 1);
    assert_non_null(s);
    sl_stream_sink(s, "out", &sl_sink_collect, out);
    assert_int_not_equal(sl_pipeline_run(p), 0);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "'old'"));
    assert_non_null(strstr(sl_pipeline_errmsg(p), "version 2"));
    sl_pipeline_free(p);
    sl_collector_free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fire_once_per_key),
        cmocka_unit_test(test_due_in_the_past),
        cmocka_unit_test(test_version_1_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
