/*
 * tests/unit/test_runtime_contract.c - the engine's contracts with operator
 * code and builders, each a regression test of a review finding:
 *
 *  - sl_pipeline_explain() then sl_pipeline_run() works (the plan was built
 *    twice and the source's poll crashed), and the graph is frozen after
 *    explain: a later building call fails with SL_ESTATE and a message;
 *  - a positive return from process / watermark / timer / end / proc_timer
 *    fails the job with "operator 'X' (kind): fn() returned 3, expected 0 or
 *    a negative SL_E code" (it was ignored), table-driven;
 *  - records delivered on SL_PORT_LATE and SL_PORT_DEAD_LETTER ports, and a
 *    source's dead letters, are counted in sl_pipeline_stats (connected or
 *    not), sl_stream_side() keeps
 *    a declared port's role, and a conflicting role is refused;
 *  - sl_stream_op_conf() finds a node's conf only through its operator table;
 *  - sl_pipeline_dup(): a conf built on a stack frame that is gone is still
 *    valid when the job runs;
 *  - sl_ctx_error() read by many instances while another one fails returns
 *    the recorded code (under ThreadSanitizer: the read and the write of the
 *    pipeline's error take the same lock).
 *
 * Nothing is asserted about time: sources that wait for a callback stop
 * after a cap on polls, so a callback that never comes fails, not hangs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sluice/sluice.h"

/* --- a counting source: records 0 .. n-1 (int64, event time = value) ---------- */

typedef struct cnt_conf {
    int64_t n;
    atomic_int *wait_for; /* non-NULL: after the records, WAIT until it is set */
    int dead_every;       /* > 0: records with v % dead_every == 5 also make a dead letter */
    int zero_every;       /* > 0: records with v % zero_every == 50 get event time 0 */
} cnt_conf;

typedef struct cnt_src {
    int64_t next;
    long polls;
} cnt_src;

static int cnt_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    *self = calloc(1, sizeof(cnt_src));
    return *self ? 0 : SL_ENOMEM;
}

static int cnt_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    cnt_src *s = self;
    const cnt_conf *c = sl_ctx_conf(ctx);
    for (uint32_t k = 0; k < max && k < 300 && s->next < c->n; k++, s->next++) {
        int64_t ts = c->zero_every && s->next % c->zero_every == 50 ? 0 : s->next;
        int64_t *r = sl_emit(ctx, ts, (uint64_t)s->next * 0x9E3779B97F4A7C15ull, 8);
        if (!r) return sl_ctx_error(ctx);
        *r = s->next;
        if (c->dead_every && s->next % c->dead_every == 5) {
            int rc = sl_ctx_dead_letter(ctx, s->next, "test", r, 8);
            if (rc) return rc;
        }
    }
    if (s->next < c->n) return SL_POLL_MORE;
    if (c->wait_for && !atomic_load(c->wait_for) && ++s->polls < 200000) return SL_POLL_WAIT;
    return SL_POLL_END;
}

static const sl_source cnt_source = {.version = SL_SOURCE_VERSION,
                                     .kind = "count",
                                     .open = cnt_open,
                                     .poll = cnt_poll,
                                     .close = free};

/* A sink that adds up how many records it got. */
static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    atomic_long *n = sl_ctx_conf(ctx);
    atomic_fetch_add(n, (long)in->count);
    return 0;
}

static const sl_operator tally_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "tally", .process = tally_process};

static int pass_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    return sl_forward(ctx, in);
}

static const sl_operator pass_op = {
    .version = SL_OPERATOR_VERSION, .kind = "pass", .process = pass_process};

/* --- explain, then run ----------------------------------------------------------- */

static void test_explain_then_run(void **state)
{
    (void)state;
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    assert_int_equal(sl_pipeline_set_threads(p, 2), 0);
    cnt_conf cc = {.n = 5000};
    atomic_long got = 0;
    sl_stream *s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
    s = sl_stream_apply(sl_stream_rebalance(s), "pass", &pass_op, NULL, 8);
    s = sl_stream_parallelism(s, 2);
    assert_int_equal(sl_stream_sink(s, "sink", &tally_sink, &got), 0);
    sl_buf plan = {0};
    assert_int_equal(sl_pipeline_explain(p, &plan), 0);
    assert_non_null(plan.ptr);
    assert_non_null(strstr((const char *)plan.ptr, "edge src(1) -> pass(2): rebalance"));
    /* A second explain describes the same plan. */
    sl_buf again = {0};
    assert_int_equal(sl_pipeline_explain(p, &again), 0);
    assert_int_equal(again.len, plan.len);
    assert_memory_equal(again.ptr, plan.ptr, plan.len);
    int rc = sl_pipeline_run(p);
    if (rc) fail_msg("run after explain: %s", sl_pipeline_errmsg(p));
    assert_int_equal(atomic_load(&got), 5000);
    sl_pipeline_stats st;
    sl_pipeline_stats_get(p, &st);
    assert_int_equal(st.records_in, 5000);
    assert_int_equal(st.records_out, 5000);
    sl_buf_free(&plan);
    sl_buf_free(&again);
    sl_pipeline_free(p);
}

static void test_graph_frozen_after_explain(void **state)
{
    (void)state;
    sl_pipeline *p = sl_pipeline_new();
    cnt_conf cc = {.n = 10};
    atomic_long got = 0;
    sl_stream *s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
    assert_int_equal(sl_stream_sink(s, "sink", &tally_sink, &got), 0);
    sl_buf plan = {0};
    assert_int_equal(sl_pipeline_explain(p, &plan), 0);
    assert_null(sl_stream_apply(s, "late-comer", &pass_op, NULL, 8));
    assert_int_equal(sl_pipeline_run(p), SL_ESTATE);
    const char *msg = sl_pipeline_errmsg(p);
    if (!strstr(msg, "late-comer") || !strstr(msg, "explain"))
        fail_msg("unexpected message: %s", msg);
    sl_buf_free(&plan);
    sl_pipeline_free(p);

    /* Settings the plan was made from are frozen too. */
    p = sl_pipeline_new();
    s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
    assert_int_equal(sl_stream_sink(s, "sink", &tally_sink, &got), 0);
    assert_int_equal(sl_pipeline_explain(p, &plan), 0);
    assert_int_equal(sl_pipeline_set_parallelism(p, 3), SL_ESTATE);
    assert_int_equal(sl_pipeline_set_threads(p, 2), 0); /* not part of the plan */
    sl_buf_free(&plan);
    sl_pipeline_free(p);
}

/* --- the return contract ----------------------------------------------------------- */

enum bad_fn { BAD_PROCESS, BAD_WATERMARK, BAD_TIMER, BAD_END, BAD_PROC_TIMER };

typedef struct bad_conf {
    enum bad_fn fn;
    atomic_int proc_fired;
} bad_conf;

static int bad_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    bad_conf *c = sl_ctx_conf(ctx);
    if (c->fn == BAD_PROCESS) return 3;
    if (c->fn == BAD_TIMER && in->count) {
        int rc = sl_ctx_timer(ctx, in->ts[0], 7, "k", 1);
        if (rc) return rc;
    }
    if (c->fn == BAD_PROC_TIMER && in->count) {
        int rc = sl_ctx_proc_timer(ctx, 0, 7, "k", 1); /* due long ago */
        if (rc) return rc;
    }
    return 0;
}

static int bad_watermark(sl_ctx *ctx, void *self, int64_t wm)
{
    bad_conf *c = sl_ctx_conf(ctx);
    return c->fn == BAD_WATERMARK ? 3 : 0;
}

static int bad_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    bad_conf *c = sl_ctx_conf(ctx);
    return c->fn == BAD_TIMER ? 3 : 0;
}

static int bad_end(sl_ctx *ctx, void *self)
{
    bad_conf *c = sl_ctx_conf(ctx);
    return c->fn == BAD_END ? 3 : 0;
}

static int bad_proc_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    bad_conf *c = sl_ctx_conf(ctx);
    atomic_store(&c->proc_fired, 1);
    return c->fn == BAD_PROC_TIMER ? 3 : 0;
}

static const sl_operator bad_op = {.version = SL_OPERATOR_VERSION,
                                   .kind = "bad",
                                   .process = bad_process,
                                   .watermark = bad_watermark,
                                   .timer = bad_timer,
                                   .end = bad_end,
                                   .proc_timer = bad_proc_timer};

static void test_positive_return_is_an_error(void **state)
{
    (void)state;
    static const struct {
        enum bad_fn fn;
        const char *name;
    } cases[] = {
        {BAD_PROCESS, "process"}, {BAD_WATERMARK, "watermark"},   {BAD_TIMER, "timer"},
        {BAD_END, "end"},         {BAD_PROC_TIMER, "proc_timer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bad_conf bc = {.fn = cases[i].fn};
        atomic_init(&bc.proc_fired, 0);
        cnt_conf cc = {.n = 100, .wait_for = cases[i].fn == BAD_PROC_TIMER ? &bc.proc_fired : NULL};
        atomic_long got = 0;
        sl_pipeline *p = sl_pipeline_new();
        assert_int_equal(sl_pipeline_set_threads(p, 2), 0);
        sl_stream *s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
        s = sl_stream_apply(s, "op", &bad_op, &bc, 8);
        assert_int_equal(sl_stream_sink(s, "sink", &tally_sink, &got), 0);
        int rc = sl_pipeline_run(p);
        char want[160];
        snprintf(want, sizeof(want),
                 "operator 'op' (bad): %s() returned 3, expected 0 or a negative SL_E code",
                 cases[i].name);
        if (rc != SL_EOPERATOR || strcmp(sl_pipeline_errmsg(p), want) != 0)
            fail_msg("%s: rc %d (%s), message '%s', wanted '%s'", cases[i].name, rc,
                     sl_err_name(rc), sl_pipeline_errmsg(p), want);
        sl_pipeline_free(p);
    }
}

/* --- port roles and the late / dead-letter counters --------------------------------- */

static sl_bytes key8(const void *rec, uint32_t len, void *ud);

/* Record v goes to port 1 (late) when v % 10 == 0, to port 2 (dead letter)
 * when v % 10 == 1, else to port 0. */
static int route_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    for (uint32_t i = 0; i < in->count; i++) {
        int64_t v = *(const int64_t *)sl_batch_at(in, i);
        int port = v % 10 == 0 ? 1 : v % 10 == 1 ? 2 : 0;
        int64_t *o = sl_emit_port(ctx, port, in->ts[i], in->hash[i], 8);
        if (!o) return sl_ctx_error(ctx);
        *o = v;
    }
    return 0;
}

static const sl_operator route_op = {
    .version = SL_OPERATOR_VERSION, .kind = "route", .process = route_process};

static void test_late_and_dead_letter_counters(void **state)
{
    (void)state;
    for (int par = 1; par <= 3; par += 2) {
        sl_pipeline *p = sl_pipeline_new();
        assert_int_equal(sl_pipeline_set_threads(p, 2), 0);
        cnt_conf cc = {.n = 10000, .dead_every = 100};
        atomic_long data = 0, late = 0;
        sl_stream *s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
        s = sl_stream_parallelism(
            sl_stream_apply(sl_stream_rebalance(s), "route", &route_op, NULL, 8), par);
        sl_stream *l = sl_stream_side_as(s, 1, 8, SL_PORT_LATE);
        assert_non_null(l);
        /* Declared again without a role: keeps LATE. */
        assert_non_null(sl_stream_side(s, 1, 8));
        /* The dead-letter port is declared but not connected: still counted. */
        assert_non_null(sl_stream_side_as(s, 2, 8, SL_PORT_DEAD_LETTER));
        assert_int_equal(sl_stream_sink(s, "data", &tally_sink, &data), 0);
        assert_int_equal(sl_stream_sink(l, "late", &tally_sink, &late), 0);
        int rc = sl_pipeline_run(p);
        if (rc) fail_msg("run: %s", sl_pipeline_errmsg(p));
        sl_pipeline_stats st;
        sl_pipeline_stats_get(p, &st);
        assert_int_equal(st.records_in, 10000);
        assert_int_equal(st.late, 1000);
        /* 1000 from the router, 100 from the source's own dead-letter port */
        assert_int_equal(st.dead_letters, 1100);
        assert_int_equal(atomic_load(&data), 8000);
        assert_int_equal(atomic_load(&late), 1000);
        assert_int_equal(st.records_out, 9000);
        sl_pipeline_free(p);
    }
}

/* The window declares its late port as SL_PORT_LATE: its late records are
 * counted too. Punctuated watermarks (max - 1), so the watermark is exact
 * per record: every record with event time 0 after the first ten is late. */
static void test_window_late_counted(void **state)
{
    (void)state;
    sl_pipeline *p = sl_pipeline_new();
    assert_int_equal(sl_pipeline_set_threads(p, 2), 0);
    cnt_conf cc = {.n = 1000, .zero_every = 100};
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1};
    atomic_long results = 0;
    sl_stream *s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, &wm);
    s = sl_stream_key_by(s, "by", key8, NULL);
    sl_window_conf wc = sl_window_tumbling(10, 0);
    wc.agg = &sl_agg_count;
    s = sl_stream_window(s, "win", &wc);
    assert_int_equal(sl_stream_sink(s, "out", &tally_sink, &results), 0);
    int rc = sl_pipeline_run(p);
    if (rc) fail_msg("run: %s", sl_pipeline_errmsg(p));
    sl_pipeline_stats st;
    sl_pipeline_stats_get(p, &st);
    assert_int_equal(st.records_in, 1000);
    assert_int_equal(st.late, 10); /* v = 50, 150, ..., 950, all at time 0 */
    sl_pipeline_free(p);
}

static void test_port_role_conflict(void **state)
{
    (void)state;
    sl_pipeline *p = sl_pipeline_new();
    cnt_conf cc = {.n = 1};
    sl_stream *s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
    s = sl_stream_apply(s, "route", &route_op, NULL, 8);
    assert_non_null(sl_stream_side_as(s, 1, 8, SL_PORT_LATE));
    assert_null(sl_stream_side_as(s, 1, 8, SL_PORT_DEAD_LETTER));
    assert_int_equal(sl_pipeline_run(p), SL_EINVAL);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "port 1"));
    sl_pipeline_free(p);

    p = sl_pipeline_new();
    s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
    assert_null(sl_stream_side_as(s, 2, 8, 7));
    assert_int_equal(sl_pipeline_run(p), SL_EINVAL);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "role"));
    sl_pipeline_free(p);
}

/* --- finding a node's conf by its operator table ------------------------------------- */

static sl_bytes key8(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {rec, 8};
    return k;
}

static void test_op_conf(void **state)
{
    (void)state;
    sl_pipeline *p = sl_pipeline_new();
    cnt_conf cc = {.n = 1};
    int marker = 0;
    sl_stream *src = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
    sl_stream *s = sl_stream_apply(src, "pass", &pass_op, &marker, 8);
    assert_ptr_equal(sl_stream_op_conf(s, &pass_op), &marker);
    assert_ptr_equal(sl_stream_conf(s), &marker);
    assert_null(sl_stream_op_conf(s, &route_op));
    assert_null(sl_stream_op_conf(src, &pass_op)); /* a source runs no operator table */
    sl_stream *k = sl_stream_key_by(s, "by", key8, NULL);
    assert_null(sl_stream_op_conf(k, &pass_op));
    assert_null(sl_stream_op_conf(NULL, &pass_op));
    sl_pipeline_free(p);
}

/* --- a copied conf outlives the builder's stack frame ------------------------------- */

typedef struct magic_conf {
    uint64_t magic[8];
    atomic_long *seen;
} magic_conf;

static int magic_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    const magic_conf *c = sl_ctx_conf(ctx);
    for (int i = 0; i < 8; i++)
        if (c->magic[i] != 0xC0FFEE00u + (uint64_t)i)
            return sl_ctx_fail(ctx, SL_ECORRUPT, "conf word %d is %llx", i,
                               (unsigned long long)c->magic[i]);
    atomic_fetch_add(c->seen, (long)in->count);
    return 0;
}

static const sl_operator magic_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "magic", .process = magic_process};

static __attribute__((noinline)) void build_with_stack_conf(sl_pipeline *p, const cnt_conf *cc,
                                                            atomic_long *seen)
{
    magic_conf mc = {.seen = seen};
    for (int i = 0; i < 8; i++) mc.magic[i] = 0xC0FFEE00u + (uint64_t)i;
    sl_stream *s = sl_pipeline_source(p, "src", &cnt_source, (void *)cc, 8, NULL);
    assert_int_equal(sl_stream_sink(s, "sink", &magic_sink, sl_pipeline_dup(p, &mc, sizeof(mc))),
                     0);
}

static __attribute__((noinline)) uint64_t scribble(void)
{
    volatile uint64_t junk[64];
    for (int i = 0; i < 64; i++) junk[i] = 0xDEADBEEFu;
    return junk[5];
}

static void test_dup_conf(void **state)
{
    (void)state;
    sl_pipeline *p = sl_pipeline_new();
    cnt_conf cc = {.n = 777};
    atomic_long seen = 0;
    build_with_stack_conf(p, &cc, &seen);
    assert_int_equal(scribble(), 0xDEADBEEFu);
    int rc = sl_pipeline_run(p);
    if (rc) fail_msg("run: %s", sl_pipeline_errmsg(p));
    assert_int_equal(atomic_load(&seen), 777);
    sl_pipeline_free(p);
}

/* --- sl_ctx_error while another instance fails --------------------------------------- */

static int fail_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    int rc = sl_ctx_error(ctx);
    if (rc) return rc;
    atomic_long *n = sl_ctx_conf(ctx);
    if (sl_ctx_instance(ctx) == 0 && atomic_fetch_add(n, 1) == 3)
        return sl_ctx_fail(ctx, SL_EIO, "instance 0 fails on its 4th batch");
    return 0;
}

static const sl_operator fail_op = {
    .version = SL_OPERATOR_VERSION, .kind = "fail", .process = fail_process};

static void test_ctx_error_while_failing(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        sl_pipeline *p = sl_pipeline_new();
        assert_int_equal(sl_pipeline_set_threads(p, 4), 0);
        assert_int_equal(sl_pipeline_set_parallelism(p, 4), 0);
        cnt_conf cc = {.n = 200000};
        atomic_long batches = 0;
        sl_stream *s = sl_pipeline_source(p, "src", &cnt_source, &cc, 8, NULL);
        assert_int_equal(sl_stream_sink(sl_stream_rebalance(s), "fail", &fail_op, &batches), 0);
        int rc = sl_pipeline_run(p);
        assert_int_equal(rc, SL_EIO);
        assert_string_equal(sl_pipeline_errmsg(p),
                            "operator 'fail' (fail): instance 0 fails on its 4th batch");
        sl_pipeline_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explain_then_run),
        cmocka_unit_test(test_graph_frozen_after_explain),
        cmocka_unit_test(test_positive_return_is_an_error),
        cmocka_unit_test(test_late_and_dead_letter_counters),
        cmocka_unit_test(test_window_late_counted),
        cmocka_unit_test(test_port_role_conflict),
        cmocka_unit_test(test_op_conf),
        cmocka_unit_test(test_dup_conf),
        cmocka_unit_test(test_ctx_error_while_failing),
    };
    return cmocka_run_group_tests_name("runtime_contract", tests, NULL, NULL);
}
