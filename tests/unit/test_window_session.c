/*
 * tests/unit/test_window_session.c - session windows: a record bridging two
 * sessions merges them; a late bridging record within the allowed lateness
 * merges two fired sessions and the merged window fires at once; a bridging
 * record after both sessions expired goes to the late output; a record that
 * touches a live session after the other expired joins the live one only.
 *
 * A scripted source replays records and explicit watermarks in order (one
 * instance), so each case is exact; results are compared as sorted lines.
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

typedef struct step {
    int wm; /* 1: a watermark, 0: a record */
    int64_t t;
    int64_t key;
} step;

typedef struct script {
    const step *steps;
    int n;
    int next;
} script;

typedef struct rec {
    int64_t key;
    int64_t value;
} rec;

static int script_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    *self = NULL; /* the script is the conf */
    return 0;
}

static int script_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    script *s = sl_ctx_conf(ctx);
    if (s->next >= s->n) return SL_POLL_END;
    const step *st = &s->steps[s->next++];
    if (st->wm) return sl_ctx_watermark(ctx, st->t) ? sl_ctx_error(ctx) : SL_POLL_MORE;
    rec r = {st->key, 1};
    return sl_emit_copy(ctx, st->t, 0, &r, sizeof(r)) ? sl_ctx_error(ctx) : SL_POLL_MORE;
}

static const sl_source script_src = {
    .version = SL_SOURCE_VERSION, .kind = "script", .open = script_open, .poll = script_poll};

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run the script through a session window (gap, lateness, count) and check
 * the sorted lines "start,end,key,count" / "late,ts,key". */
static void run(const step *steps, int n, int64_t gap, int64_t lateness, const char **expect,
                int n_expect, int par)
{
    script s = {steps, n, 0};
    sl_window_conf wc = sl_window_session(gap);
    wc.lateness = lateness;
    wc.agg = &sl_agg_count;
    sl_collector *res = sl_collector_new(), *late = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_parallelism(p, par);
    sl_stream *src = sl_stream_parallelism(
        sl_pipeline_source(p, "script", &script_src, &s, sizeof(rec), NULL), 1);
    sl_stream *k = sl_stream_parallelism(sl_stream_key_by(src, "key", key_of, NULL), 1);
    sl_stream *w = sl_stream_window(k, "sessions", &wc);
    sl_stream_sink(sl_stream_window_late(w), "late", &sl_sink_collect, late);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    size_t nr = sl_collector_count(res), nl = sl_collector_count(late);
    char **got = calloc(nr + nl + 1, sizeof(char *));
    for (size_t i = 0; i < nr; i++) {
        sl_window_result r = sl_window_out(sl_collector_get(res, i, NULL));
        int64_t key, cnt;
        memcpy(&key, r.key.ptr, 8);
        memcpy(&cnt, r.result, 8);
        char buf[128];
        snprintf(buf, sizeof(buf), "%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64, r.start, r.end,
                 key, cnt);
        got[i] = strdup(buf);
    }
    for (size_t i = 0; i < nl; i++) {
        int64_t ts;
        sl_bytes b = sl_collector_get(late, i, &ts);
        rec x;
        memcpy(&x, b.ptr, sizeof(x));
        char buf[128];
        snprintf(buf, sizeof(buf), "late,%" PRId64 ",%" PRId64, ts, x.key);
        got[nr + i] = strdup(buf);
    }
    size_t ng = nr + nl;
    qsort(got, ng, sizeof(char *), cmp_str);
    char **want = calloc((size_t)n_expect + 1, sizeof(char *));
    for (int i = 0; i < n_expect; i++) want[i] = (char *)expect[i];
    qsort(want, (size_t)n_expect, sizeof(char *), cmp_str);
    for (size_t i = 0; i < ng || i < (size_t)n_expect; i++)
        if (i >= ng || i >= (size_t)n_expect || strcmp(got[i], want[i]) != 0)
            fprintf(stderr, "line %zu: got '%s', want '%s'\n", i, i < ng ? got[i] : "",
                    i < (size_t)n_expect ? want[i] : "");
    assert_int_equal(ng, (size_t)n_expect);
    for (size_t i = 0; i < ng; i++) assert_string_equal(got[i], want[i]);
    for (size_t i = 0; i < ng; i++) free(got[i]);
    free(got);
    free(want);
    sl_pipeline_free(p);
    sl_collector_free(res);
    sl_collector_free(late);
}

#define N(a) ((int)(sizeof(a) / sizeof(a[0])))

static void test_bridging_record(void **state)
{
    /* [0,10) and [20,30); the record at 10 touches both: one session [0,30). */
    static const step s[] = {{0, 0, 1}, {0, 20, 1}, {0, 10, 1}, {0, 3, 2}};
    static const char *want[] = {"0,30,1,3", "3,13,2,1"};
    for (int par = 1; par <= 4; par += 3) run(s, N(s), 10, 0, want, N(want), par);
}

static void test_late_bridging_within_lateness(void **state)
{
    /* Both sessions fire (watermark 29); with lateness 30 neither has expired,
     * so the record at 10 merges them and [0,30) fires at once; the end of
     * input fires nothing more. */
    static const step s[] = {{0, 0, 1}, {1, 9, 0}, {0, 20, 1}, {1, 29, 0}, {0, 10, 1}};
    static const char *want[] = {"0,10,1,1", "20,30,1,1", "0,30,1,3"};
    for (int par = 1; par <= 4; par += 3) run(s, N(s), 10, 30, want, N(want), par);
}

static void test_bridging_beyond_lateness(void **state)
{
    /* Both sessions expired (9 + 5 and 29 + 5 <= 40): the record at 10 is late. */
    static const step s[] = {{0, 0, 1}, {0, 20, 1}, {1, 40, 0}, {0, 10, 1}};
    static const char *want[] = {"0,10,1,1", "20,30,1,1", "late,10,1"};
    for (int par = 1; par <= 4; par += 3) run(s, N(s), 10, 5, want, N(want), par);
}

static void test_bridging_one_side_expired(void **state)
{
    /* At watermark 20 [0,10) has fired and expired (9 + 5 <= 20); [20,30) is
     * open. The record at 10 touches it only: [10,30) with 2 records. */
    static const step s[] = {{0, 0, 1}, {0, 20, 1}, {1, 20, 0}, {0, 10, 1}};
    static const char *want[] = {"0,10,1,1", "10,30,1,2"};
    for (int par = 1; par <= 4; par += 3) run(s, N(s), 10, 5, want, N(want), par);
}

static void test_extend_fired_session(void **state)
{
    /* A fired session extended by a record within the lateness fires again at
     * once when its new end is behind the watermark, else at its new end. */
    static const step s[] = {{0, 0, 1}, {1, 12, 0}, {0, 5, 1}, {0, 11, 1}, {1, 100, 0}};
    /* [0,10) fires at 9; record 5: [0,15) end-1=14 > 12: fires at 14 with 2;
     * record 11 (W 12): [0,21) fires at 20 with 3. */
    static const char *want[] = {"0,10,1,1", "0,21,1,3"};
    for (int par = 1; par <= 4; par += 3) run(s, N(s), 10, 50, want, N(want), par);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bridging_record),
        cmocka_unit_test(test_late_bridging_within_lateness),
        cmocka_unit_test(test_bridging_beyond_lateness),
        cmocka_unit_test(test_bridging_one_side_expired),
        cmocka_unit_test(test_extend_fired_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
