/*
 * tests/unit/test_aggregate_edges.c - the built-in aggregates at the ends of
 * int64, one table row per case, each run through the keyed aggregate
 * (final results) and through tumbling, sliding and session windows:
 *
 *  - a sum (or a window's merge of partial sums: slices of a sliding
 *    window, sessions bridged by a record) that leaves int64 fails the job
 *    with SL_ERANGE and a message naming the key and the window; it never
 *    wraps and emits nothing wrong; a sum that comes back into range on the
 *    way (MAX, -1, +1) is not an error;
 *  - avg of values near the ends is exact (no overflow of its sum);
 *  - min and max over the whole range;
 *  - count and sum called directly (as a user operator may) saturate.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "sluice/sluice.h"

#define MAX  INT64_MAX
#define MIN  INT64_MIN
#define N(a) ((int)(sizeof(a) / sizeof(a[0])))

typedef struct rec {
    int64_t key;
    int64_t value;
} rec;

typedef struct pt {
    int64_t ts, v;
} pt;

typedef struct script {
    const pt *pts;
    int n, next;
} script;

static int script_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    return 0;
}

static int script_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    script *s = sl_ctx_conf(ctx);
    if (s->next >= s->n) return SL_POLL_END;
    const pt *p = &s->pts[s->next++];
    rec r = {1, p->v};
    return sl_emit_copy(ctx, p->ts, 0, &r, sizeof(r)) ? sl_ctx_error(ctx) : SL_POLL_MORE;
}

static const sl_source script_src = {
    .version = SL_SOURCE_VERSION, .kind = "script", .open = script_open, .poll = script_poll};

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

enum { KEYED, TUMBLING, SLIDING, SESSION };
static const char *const kind_name[] = {"keyed", "tumbling", "sliding", "session"};

/* want: "=RESULT" (the one result, int64 or avg with three decimals) or
 * "!TEXT" (the run fails with SL_ERANGE and the message contains TEXT). */
typedef struct row {
    const char *agg;
    int kinds; /* bit per kind it runs on */
    pt pts[4];
    int n;
    const char *want;
} row;

#define ALL     ((1 << KEYED) | (1 << TUMBLING) | (1 << SLIDING) | (1 << SESSION))
#define WINDOWS ((1 << TUMBLING) | (1 << SLIDING) | (1 << SESSION))

static const row rows[] = {
    /* sums that leave int64, by a record's addition */
    {"sum", ALL, {{1, MAX}, {2, 1}}, 2, "!leaves int64"},
    {"sum", ALL, {{1, MIN}, {2, -1}}, 2, "!leaves int64"},
    {"sum", ALL, {{1, MAX}, {2, MAX}}, 2, "!key '1'"},
    /* in range at every step: not an error */
    {"sum", ALL, {{1, MAX}, {2, -1}, {3, 1}}, 3, "=9223372036854775807"},
    {"sum", ALL, {{1, MAX}, {2, MIN}}, 2, "=-1"},
    {"sum", ALL, {{1, MIN}}, 1, "=-9223372036854775808"},
    /* the window names itself: tumbling(10) [0, 10) */
    {"sum", 1 << TUMBLING, {{1, MAX}, {2, 1}}, 2, "!window [0, 10)"},
    /* sliding(4, 2): slices [0,2) and [2,4) each in range, their merge is not */
    {"sum", 1 << SLIDING, {{1, MAX}, {3, 1}}, 2, "!leaves int64"},
    /* sessions (gap 10) [0,10) and [15,25) in range; ts 8 bridges them */
    {"sum", 1 << SESSION, {{0, MAX}, {15, 1}, {8, 0}}, 3, "!leaves int64"},
    /* avg: exact whatever the sum */
    {"avg", ALL, {{1, MAX}, {2, MAX}}, 2, "=9223372036854775808.000"},
    {"avg", ALL, {{1, MIN}, {2, MIN}}, 2, "=-9223372036854775808.000"},
    {"avg", ALL, {{1, MAX}, {2, MIN}}, 2, "=-0.500"},
    {"avg", ALL, {{1, MAX}, {2, 1}}, 2, "=4611686018427387904.000"},
    {"avg", WINDOWS, {{0, MAX}, {15, MAX}, {8, MAX}}, 3, "=9223372036854775808.000"},
    /* min, max over the whole range */
    {"min", ALL, {{1, MAX}, {2, MIN}}, 2, "=-9223372036854775808"},
    {"max", ALL, {{1, MIN}, {2, MAX}}, 2, "=9223372036854775807"},
    {"min", ALL, {{1, MAX}}, 1, "=9223372036854775807"},
    {"max", ALL, {{1, MIN}}, 1, "=-9223372036854775808"},
    {"count", ALL, {{1, MAX}, {2, MAX}}, 2, "=2"},
};

static void run_row(const row *r, int kind)
{
    script s = {r->pts, r->n, 0};
    sl_agg_value val = {.offset = 8};
    const sl_aggregate *agg = sl_agg_by_name(r->agg);
    assert_non_null(agg);
    sl_collector *res = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_stream *k = sl_stream_key_by(sl_pipeline_source(p, "s", &script_src, &s, sizeof(rec), NULL),
                                    "key", key_of, NULL);
    sl_stream *out;
    if (kind == KEYED) {
        sl_agg_conf ac = {.agg = agg, .ud = &val, .emit = SL_AGG_EMIT_FINAL};
        out = sl_stream_aggregate(k, "agg", &ac);
    } else {
        sl_window_conf wc = kind == TUMBLING  ? sl_window_tumbling(10, 0)
                            : kind == SLIDING ? sl_window_sliding(4, 2)
                                              : sl_window_session(10);
        wc.agg = agg;
        wc.agg_ud = &val;
        out = sl_stream_window(k, "win", &wc);
    }
    sl_stream_sink(out, "out", &sl_sink_collect, res);
    int rc = sl_pipeline_run(p);
    char got[128] = "";
    if (rc == 0) {
        /* one result, except sliding(4, 2), whose records at ts 1..3 are
         * all in its window [0, 4) (also in [-2, 2) and [2, 6)) */
        size_t n = sl_collector_count(res);
        assert_true(n >= 1);
        sl_bytes b = sl_collector_get(res, n - 1, NULL);
        for (size_t i = 0; kind == SLIDING && i < n; i++) {
            sl_bytes x = sl_collector_get(res, i, NULL);
            if (sl_window_out(x).start == 0) b = x;
        }
        const void *result;
        uint32_t rs;
        if (kind == KEYED) {
            result = sl_agg_out(b).result;
            rs = sl_agg_out(b).result_size;
        } else {
            result = sl_window_out(b).result;
            rs = sl_window_out(b).result_size;
        }
        assert_int_equal(rs, 8);
        if (strcmp(r->agg, "avg") == 0) {
            double d;
            memcpy(&d, result, 8);
            snprintf(got, sizeof(got), "=%.3f", d);
        } else {
            int64_t v;
            memcpy(&v, result, 8);
            snprintf(got, sizeof(got), "=%" PRId64, v);
        }
    } else {
        snprintf(got, sizeof(got), "!(%d) %s", rc, sl_pipeline_errmsg(p));
    }
    int ok = r->want[0] == '=' ? strcmp(got, r->want) == 0
                               : rc == SL_ERANGE && strstr(got, r->want + 1) != NULL;
    if (!ok)
        fprintf(stderr, "%s %s (%" PRId64 ", ...): got '%s', want '%s'\n", kind_name[kind], r->agg,
                r->pts[0].v, got, r->want);
    assert_true(ok);
    sl_pipeline_free(p);
    sl_collector_free(res);
}

static void test_table(void **state)
{
    for (int i = 0; i < N(rows); i++)
        for (int kind = KEYED; kind <= SESSION; kind++)
            if (rows[i].kinds & (1 << kind)) run_row(&rows[i], kind);
}

/* A user operator calling the built-ins' functions: they cannot report, so
 * they saturate rather than wrap. */
static void test_direct_calls_saturate(void **state)
{
    int64_t acc = MAX, o = 1, out;
    rec r = {1, 1};
    sl_agg_value val = {.offset = 8};
    sl_agg_sum.add(&acc, &r, sizeof(r), 0, &val);
    assert_true(acc == MAX);
    sl_agg_sum.merge(&acc, &o, &val);
    assert_true(acc == MAX);
    sl_agg_count.add(&acc, &r, sizeof(r), 0, &val);
    assert_true(acc == MAX);
    acc = MIN;
    o = -1;
    sl_agg_sum.merge(&acc, &o, &val);
    assert_true(acc == MIN);
    r.value = -5;
    sl_agg_sum.add(&acc, &r, sizeof(r), 0, &val);
    sl_agg_sum.result(&acc, &out, &val);
    assert_true(out == MIN);
    /* avg's accumulator: merge of two halves equals adding all */
    uint8_t a1[64], a2[64];
    assert_true(sl_agg_avg.acc_size <= sizeof(a1));
    sl_agg_avg.init(a1, &val);
    sl_agg_avg.init(a2, &val);
    r.value = MAX;
    for (int i = 0; i < 3; i++) sl_agg_avg.add(a1, &r, sizeof(r), 0, &val);
    for (int i = 0; i < 5; i++) sl_agg_avg.add(a2, &r, sizeof(r), 0, &val);
    sl_agg_avg.merge(a1, a2, &val);
    double d;
    sl_agg_avg.result(a1, &d, &val);
    assert_true(d == 9223372036854775808.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_direct_calls_saturate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
