/*
 * tests/unit/test_source.c - the engine's source layer (sluice/source.h):
 * split assignment and positions, the watermark and idleness rules, and
 * every path that can divert a record (late, dead letter), run with a slow
 * sink, one credit, several splits and event time 0.
 *
 *  - Splits: a source of 8 splits reads every record exactly once at
 *    parallelism 1, 3 and 8 (and one credit); each split's position after
 *    the run is its end. The generator's shards do the same.
 *  - Idleness is "polled and found nothing", never "not polled": several
 *    splits with backlogs behind a slow sink at one credit and a 5 ms idle
 *    timeout send no valid record to the late output, for a generic
 *    multi-split source and for the broker source (the bug of issue 7:
 *    17,952 valid records went late).
 *  - A silent split goes idle and windows fire before the input ends.
 *  - Punctuated watermarks follow the very record that moves them (the
 *    batch is cut there), so a record behind it is late whatever the batch.
 *  - Event time 0 and negative times are valid; CSV lines without an event
 *    time go to the dead letters with their line number and are counted.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "sluice/broker.h"
#include "sluice/sluice.h"

typedef struct rec {
    int64_t key;
    int64_t value; /* the record's sequence number */
} rec;

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    return (sl_bytes){p, 8};
}

static int64_t window_total(sl_collector *res)
{
    int64_t total = 0;
    for (size_t i = 0; i < sl_collector_count(res); i++) {
        sl_window_result r = sl_window_out(sl_collector_get(res, i, NULL));
        int64_t n;
        memcpy(&n, r.result, 8);
        total += n;
    }
    return total;
}

/* --- a multi-split source: split k makes records k*n .. (k+1)*n - 1 ------------------------ */

typedef struct multi {
    int splits;
    uint64_t per_split;
    int64_t ts_step; /* event time of record i of a split: i * ts_step */
} multi;

typedef struct mreader {
    uint64_t k, base;
} mreader;

static int multi_enum(sl_split_enum *e, void *conf)
{
    const multi *m = conf;
    for (int i = 0; i < m->splits; i++) {
        int rc = sl_split_add(e, &i, sizeof(i));
        if (rc) return rc;
    }
    return 0;
}

static int multi_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    const multi *m = sl_ctx_conf(ctx);
    int idx;
    assert_int_equal(split->desc_len, sizeof(idx));
    memcpy(&idx, split->desc, sizeof(idx));
    assert_int_equal(idx, split->index);
    assert_int_equal(split->count, m->splits);
    /* split k of the node goes to instance k % P */
    assert_int_equal(split->index % sl_ctx_parallelism(ctx), sl_ctx_instance(ctx));
    mreader *r = calloc(1, sizeof(*r));
    r->base = (uint64_t)split->index * m->per_split;
    *self = r;
    return 0;
}

static int multi_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    mreader *r = self;
    const multi *m = sl_ctx_conf(ctx);
    if (r->k >= m->per_split) return SL_POLL_END;
    for (uint32_t j = 0; j < max && r->k < m->per_split; j++, r->k++) {
        rec x = {(int64_t)(r->k % 7), (int64_t)(r->base + r->k)};
        if (sl_emit_copy(ctx, (int64_t)r->k * m->ts_step, 0, &x, sizeof(x)))
            return sl_ctx_error(ctx);
    }
    return SL_POLL_MORE;
}

static int multi_position(sl_ctx *ctx, void *self, sl_buf *out)
{
    mreader *r = self;
    return sl_buf_append(out, &r->k, sizeof(r->k));
}

static void multi_close(void *self)
{
    free(self);
}

static const sl_source multi_src = {.version = SL_SOURCE_VERSION,
                                    .kind = "multi",
                                    .enumerate = multi_enum,
                                    .open = multi_open,
                                    .poll = multi_poll,
                                    .position = multi_position,
                                    .close = multi_close};

static void check_each_once(sl_collector *c, uint64_t n)
{
    assert_int_equal(sl_collector_count(c), n);
    uint8_t *seen = calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        rec x;
        sl_bytes b = sl_collector_get(c, i, NULL);
        assert_int_equal(b.len, sizeof(x));
        memcpy(&x, b.ptr, sizeof(x));
        assert_true(x.value >= 0 && (uint64_t)x.value < n);
        assert_int_equal(seen[x.value], 0);
        seen[x.value] = 1;
    }
    free(seen);
}

static void test_splits_read_once_with_positions(void **state)
{
    const int pars[] = {1, 3, 8};
    for (int credits = 1; credits <= 8; credits += 7) {
        for (size_t t = 0; t < sizeof(pars) / sizeof(pars[0]); t++) {
            multi m = {.splits = 8, .per_split = 2500, .ts_step = 1};
            sl_collector *c = sl_collector_new();
            sl_pipeline *p = sl_pipeline_new();
            sl_pipeline_set_threads(p, 2);
            sl_pipeline_set_credits(p, credits);
            sl_stream *s = sl_pipeline_source(p, "multi", &multi_src, &m, sizeof(rec), NULL);
            s = sl_stream_parallelism(s, pars[t]);
            sl_stream_sink(s, "out", &sl_sink_collect, c);
            int rc = sl_pipeline_run(p);
            if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
            assert_int_equal(rc, 0);
            check_each_once(c, 8 * 2500);
            assert_int_equal(sl_pipeline_source_splits(p, "multi"), 8);
            for (int k = 0; k < 8; k++) {
                sl_buf b = {0};
                assert_int_equal(sl_pipeline_source_position(p, "multi", k, &b), 0);
                uint64_t pos;
                assert_int_equal(b.len, sizeof(pos));
                memcpy(&pos, b.ptr, sizeof(pos));
                assert_int_equal(pos, 2500);
                sl_buf_free(&b);
            }
            sl_buf b = {0};
            assert_int_equal(sl_pipeline_source_position(p, "multi", 8, &b), SL_ERANGE);
            assert_int_equal(sl_pipeline_source_position(p, "nope", 0, &b), SL_ENOENT);
            sl_pipeline_free(p);
            sl_collector_free(c);
        }
    }
}

static int gen_rec(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    rec x = {(int64_t)(seq % 5), (int64_t)seq};
    memcpy(out, &x, sizeof(x));
    *ts = (int64_t)seq;
    return 0;
}

static void test_generator_shards(void **state)
{
    const int pars[] = {1, 3, 8};
    for (size_t t = 0; t < 3; t++) {
        sl_generator_conf gc = {.fn = gen_rec, .count = 10007, .shards = 8};
        sl_collector *c = sl_collector_new();
        sl_pipeline *p = sl_pipeline_new();
        sl_pipeline_set_threads(p, 2);
        sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec), NULL);
        sl_stream_sink(sl_stream_parallelism(s, pars[t]), "out", &sl_sink_collect, c);
        assert_int_equal(sl_pipeline_run(p), 0);
        check_each_once(c, 10007);
        assert_int_equal(sl_pipeline_source_splits(p, "gen"), 8);
        uint64_t sum = 0;
        for (int k = 0; k < 8; k++) {
            sl_buf b = {0};
            uint64_t pos;
            assert_int_equal(sl_pipeline_source_position(p, "gen", k, &b), 0);
            memcpy(&pos, b.ptr, sizeof(pos));
            sum += pos;
            sl_buf_free(&b);
        }
        assert_int_equal(sum, 10007);
        sl_pipeline_free(p);
        sl_collector_free(c);
    }
}

/* --- idleness versus backpressure ------------------------------------------------------------ */

static int slow_sink(sl_ctx *ctx, void *self, sl_batch *in)
{
    struct timespec d = {0, 1000 * 1000}; /* 1 ms per batch: the source is mostly blocked */
    nanosleep(&d, NULL);
    return sl_forward(ctx, in);
}

static const sl_operator slow_op = {
    .version = SL_OPERATOR_VERSION, .kind = "slow", .process = slow_sink};

/* in -> slow -> key_by -> tumbling 100 ms count -> collect; late records
 * collected. The slow operator right after the source keeps it blocked on
 * its one credit most of the time. */
static void run_windowed(sl_pipeline *p, sl_stream *in, sl_key_fn key, sl_collector *late,
                         sl_collector *res)
{
    static sl_window_conf wc;
    wc = sl_window_tumbling(100, 0);
    wc.agg = &sl_agg_count;
    in = sl_stream_rebalance(in);
    sl_stream *slow = sl_stream_apply(in, "slow", &slow_op, NULL, sl_stream_width(in));
    sl_stream *w = sl_stream_window(sl_stream_key_by(slow, "key", key, NULL), "win", &wc);
    sl_stream_sink(sl_stream_window_late(w), "late", &sl_sink_collect, late);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
}

static void test_backlog_is_not_idle_generic(void **state)
{
    /* 4 splits of 20,000 in-order records on one instance, 1 credit,
     * a slow sink: the splits are rarely polled, never empty. */
    multi m = {.splits = 4, .per_split = 20000, .ts_step = 1};
    sl_watermark_conf wm = {.delay = 0, .idle_ms = 5};
    sl_collector *late = sl_collector_new(), *res = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_credits(p, 1);
    sl_stream *s = sl_pipeline_source(p, "multi", &multi_src, &m, sizeof(rec), &wm);
    s = sl_stream_parallelism(s, 1);
    run_windowed(p, s, key_of, late, res);
    assert_int_equal(sl_collector_count(late), 0);
    assert_int_equal(window_total(res), 4 * 20000);
    sl_pipeline_free(p);
    sl_collector_free(late);
    sl_collector_free(res);
}

static char dir[128];

static void fill_topic(const char *topic, int partitions, int per_partition)
{
    sl_broker *b;
    assert_int_equal(sl_broker_open(&b, dir, SL_BROKER_CREATE), 0);
    sl_topic_conf tc;
    sl_topic_conf_init(&tc);
    tc.partitions = partitions;
    assert_int_equal(sl_topic_create(b, topic, &tc), 0);
    sl_producer *pr;
    assert_int_equal(sl_producer_open(&pr, b, topic), 0);
    for (int i = 0; i < per_partition; i++) {
        for (int part = 0; part < partitions; part++) {
            int64_t key = i % 7;
            char v[32];
            snprintf(v, sizeof(v), "v%d", i);
            /* event times start at 0: 0 is a valid time */
            sl_record r = {
                .key = &key, .key_len = 8, .value = v, .value_len = strlen(v), .timestamp = i};
            assert_int_equal(sl_producer_send(pr, part, &r, NULL), 0);
        }
    }
    assert_int_equal(sl_producer_close(pr), 0);
    sl_broker_close(b);
}

static sl_bytes broker_key(const void *p, uint32_t len, void *ud)
{
    sl_bytes r = {p, len}, k;
    if (!sl_broker_rec_key(r, &k)) return r;
    return k;
}

static void test_backlog_is_not_idle_broker(void **state)
{
    fill_topic("backlog", 2, 20000);
    sl_broker_source_conf bc = {
        .dir = dir, .topic = "backlog", .start = SL_OFFSET_BEGINNING, .until_end = 1};
    sl_watermark_conf wm = {.delay = 0, .idle_ms = 5};
    sl_collector *late = sl_collector_new(), *res = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_credits(p, 1);
    sl_stream *s = sl_pipeline_broker(p, "topic", &bc, 0, &wm);
    s = sl_stream_parallelism(s, 1);
    run_windowed(p, s, broker_key, late, res);
    assert_int_equal(sl_collector_count(late), 0);
    assert_int_equal(window_total(res), 2 * 20000);
    sl_pipeline_free(p);
    sl_collector_free(late);
    sl_collector_free(res);
}

/* --- a silent split goes idle ------------------------------------------------------------------ */

typedef struct silent {
    atomic_int result_seen;
    atomic_int split0_done;
    int result_before_end;
    uint64_t max_records;
} silent;

typedef struct sreader {
    int index;
    uint64_t k;
} sreader;

static int silent_enum(sl_split_enum *e, void *conf)
{
    int rc = sl_split_add(e, NULL, 0);
    return rc ? rc : sl_split_add(e, NULL, 0);
}

static int silent_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    sreader *r = calloc(1, sizeof(*r));
    r->index = split->index;
    *self = r;
    return 0;
}

/* Split 0: one record per poll, 1 ms of event time apart, until a result
 * came out (or a bound in records). Split 1: one record at time 0, then
 * nothing until split 0 ends. */
static int silent_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    sreader *r = self;
    silent *s = sl_ctx_conf(ctx);
    rec x = {r->index + 1, 1};
    if (r->index == 1) {
        if (r->k == 0) {
            r->k = 1;
            return sl_emit_copy(ctx, 0, 0, &x, sizeof(x)) ? sl_ctx_error(ctx) : SL_POLL_MORE;
        }
        return atomic_load(&s->split0_done) ? SL_POLL_END : SL_POLL_WAIT;
    }
    if (atomic_load(&s->result_seen)) s->result_before_end = 1;
    if (atomic_load(&s->result_seen) || r->k >= s->max_records) {
        atomic_store(&s->split0_done, 1);
        return SL_POLL_END;
    }
    int64_t ts = (int64_t)r->k++;
    return sl_emit_copy(ctx, ts, 0, &x, sizeof(x)) ? sl_ctx_error(ctx) : SL_POLL_MORE;
}

static const sl_source silent_src = {.version = SL_SOURCE_VERSION,
                                     .kind = "silent",
                                     .enumerate = silent_enum,
                                     .open = silent_open,
                                     .poll = silent_poll,
                                     .close = multi_close};

static int seen_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    silent *s = sl_ctx_conf(ctx);
    if (in->count) atomic_store(&s->result_seen, 1);
    return 0;
}

static const sl_operator seen_op = {
    .version = SL_OPERATOR_VERSION, .kind = "seen", .process = seen_process};

static void test_silent_split_goes_idle(void **state)
{
    silent s;
    memset(&s, 0, sizeof(s));
    s.max_records = 50 * 1000 * 1000; /* a bound in records, not in time */
    sl_watermark_conf wm = {.delay = 0, .idle_ms = 20};
    sl_window_conf wc = sl_window_tumbling(10, 0);
    wc.agg = &sl_agg_count;
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_stream *src = sl_pipeline_source(p, "src", &silent_src, &s, sizeof(rec), &wm);
    src = sl_stream_parallelism(src, 1);
    sl_stream *w = sl_stream_window(sl_stream_key_by(src, "key", key_of, NULL), "win", &wc);
    sl_stream_sink(w, "seen", &seen_op, &s);
    assert_int_equal(sl_pipeline_run(p), 0);
    assert_int_equal(s.result_before_end, 1);
    sl_pipeline_free(p);
}

/* --- punctuated watermarks cut the batch -------------------------------------------------------------- */

static const int64_t cut_ts[] = {10, 20, 5, 21, 0};

static int cut_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    mreader *r = self;
    if (r->k) return SL_POLL_END;
    r->k = 1;
    assert_true(max >= 5);
    for (int i = 0; i < 5; i++) {
        rec x = {1, i};
        if (sl_emit_copy(ctx, cut_ts[i], 0, &x, sizeof(x))) return sl_ctx_error(ctx);
    }
    return SL_POLL_MORE;
}

static const sl_source cut_src = {.version = SL_SOURCE_VERSION,
                                  .kind = "cut",
                                  .open = silent_open,
                                  .poll = cut_poll,
                                  .close = multi_close};

static void test_punctuated_follows_the_record(void **state)
{
    /* One poll emits 10, 20, 5, 21, 0. Punctuated with delay 0 the watermark
     * is 19 right after the record at 20, so window [0, 10) has fired and
     * the records at 5 and 0 are late; the one at 10 is not ([10, 20) fires
     * at 19 too, with it in). Announced once per poll instead, nothing would be late. */
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1};
    for (int credits = 1; credits <= 2; credits++) {
        sl_collector *late = sl_collector_new(), *res = sl_collector_new();
        sl_pipeline *p = sl_pipeline_new();
        sl_pipeline_set_threads(p, 2);
        sl_pipeline_set_credits(p, credits);
        sl_stream *s = sl_pipeline_source(p, "cut", &cut_src, NULL, sizeof(rec), &wm);
        sl_window_conf wc = sl_window_tumbling(10, 0);
        wc.agg = &sl_agg_count;
        sl_stream *w = sl_stream_window(sl_stream_key_by(s, "key", key_of, NULL), "win", &wc);
        sl_stream_sink(sl_stream_window_late(w), "late", &sl_sink_collect, late);
        sl_stream_sink(w, "out", &sl_sink_collect, res);
        assert_int_equal(sl_pipeline_run(p), 0);
        assert_int_equal(sl_collector_count(late), 2);
        assert_int_equal(window_total(res), 3);
        sl_pipeline_free(p);
        sl_collector_free(late);
        sl_collector_free(res);
    }
}

/* --- event time 0, CSV and dead letters ------------------------------------------------------------- */

static void test_csv_time_zero_and_dead_letters(void **state)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/events.csv", dir);
    FILE *f = fopen(path, "w");
    fputs("0,a,1\n0,b,2\n-5,a,3\nnot-a-time,a,4\n4999,b,5\n5000,a,6\n,a,7\n", f);
    fclose(f);
    for (int splits = 1; splits <= 3; splits += 2) {
        sl_lines_conf lc = {.path = path, .ts_column = 1, .splits = splits};
        sl_watermark_conf wm = {.delay = 0, .punctuated = 1};
        sl_collector *recs = sl_collector_new(), *dead = sl_collector_new();
        sl_pipeline *p = sl_pipeline_new();
        sl_pipeline_set_threads(p, 2);
        sl_pipeline_set_credits(p, 1);
        sl_stream *s = sl_pipeline_lines(p, "csv", &lc, 0, &wm);
        sl_stream_sink(sl_stream_dead_letters(s), "dead", &sl_sink_collect, dead);
        sl_stream_sink(s, "out", &sl_sink_collect, recs);
        assert_int_equal(sl_pipeline_run(p), 0);
        sl_pipeline_stats st;
        sl_pipeline_stats_get(p, &st);
        sl_pipeline_free(p);
        assert_int_equal(sl_collector_count(recs), 5);
        int zeros = 0, neg = 0;
        for (size_t i = 0; i < 5; i++) {
            int64_t ts;
            sl_collector_get(recs, i, &ts);
            zeros += ts == 0;
            neg += ts == -5;
        }
        assert_int_equal(zeros, 2); /* 0 is a time, not "now" */
        assert_int_equal(neg, 1);
        assert_int_equal(sl_collector_count(dead), 2);
        for (size_t i = 0; i < 2; i++) {
            sl_dead_letter dl;
            assert_int_equal(sl_dead_letter_read(sl_collector_get(dead, i, NULL), &dl), 0);
            char why[200];
            snprintf(why, sizeof(why), "%.*s", (int)dl.reason.len, (const char *)dl.reason.ptr);
            if (splits == 1) /* line numbers are known from byte 0 */
                assert_true(strncmp(why, "line 4:", 7) == 0 || strncmp(why, "line 7:", 7) == 0);
            assert_non_null(strstr(why, "event time"));
            assert_true(dl.raw.len > 0);
            assert_true(((const char *)dl.raw.ptr)[0] == ',' ||
                        ((const char *)dl.raw.ptr)[0] == 'n');
        }
        sl_collector_free(recs);
        sl_collector_free(dead);
    }
}

/* Event times at the ends of int64 pass through the source layer unchanged,
 * and the watermark rule saturates instead of overflowing (UBSan checks). */
static const int64_t extreme_ts[] = {INT64_MIN + 1, INT64_MIN + 3, 0, -1, INT64_MAX - 1};

static int extreme_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    mreader *r = self;
    if (r->k) return SL_POLL_END;
    r->k = 1;
    for (int i = 0; i < 5; i++) {
        rec x = {1, i};
        if (sl_emit_copy(ctx, extreme_ts[i], 0, &x, sizeof(x))) return sl_ctx_error(ctx);
    }
    return SL_POLL_MORE;
}

static const sl_source extreme_src = {.version = SL_SOURCE_VERSION,
                                      .kind = "extreme",
                                      .open = silent_open,
                                      .poll = extreme_poll,
                                      .close = multi_close};

static void test_int64_extremes(void **state)
{
    for (int punct = 0; punct <= 1; punct++) {
        sl_watermark_conf wm = {.delay = 10, .punctuated = punct};
        sl_collector *c = sl_collector_new();
        sl_pipeline *p = sl_pipeline_new();
        sl_pipeline_set_credits(p, 1);
        sl_stream *s = sl_pipeline_source(p, "x", &extreme_src, NULL, sizeof(rec), &wm);
        sl_stream_sink(s, "out", &sl_sink_collect, c);
        assert_int_equal(sl_pipeline_run(p), 0);
        sl_pipeline_free(p);
        assert_int_equal(sl_collector_count(c), 5);
        for (size_t i = 0; i < 5; i++) {
            int64_t ts;
            rec x;
            sl_bytes b = sl_collector_get(c, i, &ts);
            memcpy(&x, b.ptr, sizeof(x));
            assert_true(ts == extreme_ts[x.value]);
        }
        sl_collector_free(c);
    }
}

/* Monotonous timestamps: the periodic rule reads a poll's last event time.
 * In-order input gives what the full scan gives; input that breaks the
 * promise (cut_src: 10, 20, 5, 21, 0) loses nothing: every record is in a
 * result or in the late output. */
static void test_monotonous(void **state)
{
    for (int mono = 0; mono <= 1; mono++) {
        multi m = {.splits = 3, .per_split = 5000, .ts_step = 1};
        sl_watermark_conf wm = {.delay = 0, .monotonous = mono};
        sl_collector *late = sl_collector_new(), *res = sl_collector_new();
        sl_pipeline *p = sl_pipeline_new();
        sl_pipeline_set_threads(p, 2);
        sl_pipeline_set_credits(p, 1);
        sl_stream *s = sl_pipeline_source(p, "multi", &multi_src, &m, sizeof(rec), &wm);
        run_windowed(p, s, key_of, late, res);
        assert_int_equal(sl_collector_count(late), 0);
        assert_int_equal(window_total(res), 3 * 5000);
        sl_pipeline_free(p);
        sl_collector_free(late);
        sl_collector_free(res);
    }
    sl_watermark_conf wm = {.delay = 0, .monotonous = 1};
    sl_collector *late = sl_collector_new(), *res = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_source(p, "cut", &cut_src, NULL, sizeof(rec), &wm);
    sl_window_conf wc = sl_window_tumbling(10, 0);
    wc.agg = &sl_agg_count;
    sl_stream *w = sl_stream_window(sl_stream_key_by(s, "key", key_of, NULL), "win", &wc);
    sl_stream_sink(sl_stream_window_late(w), "late", &sl_sink_collect, late);
    sl_stream_sink(w, "out", &sl_sink_collect, res);
    assert_int_equal(sl_pipeline_run(p), 0);
    assert_int_equal(window_total(res) + (int64_t)sl_collector_count(late), 5);
    sl_pipeline_free(p);
    sl_collector_free(late);
    sl_collector_free(res);
}

/* The source builders copy their conf, strings included: built in a frame
 * whose memory is then overwritten, the sources still read the right input. */
static __attribute__((noinline)) void build_sources(sl_pipeline *p, sl_collector **c)
{
    char path[160], dirbuf[160], topic[16] = "copied";
    snprintf(path, sizeof(path), "%s/copied.csv", dir);
    snprintf(dirbuf, sizeof(dirbuf), "%s", dir);
    sl_lines_conf lc = {.path = path, .ts_column = 1};
    sl_broker_source_conf bc = {
        .dir = dirbuf, .topic = topic, .start = SL_OFFSET_BEGINNING, .until_end = 1};
    sl_generator_conf gc = {.fn = gen_rec, .count = 10};
    sl_stream_sink(sl_pipeline_lines(p, "csv", &lc, 0, NULL), "o0", &sl_sink_collect, c[0]);
    sl_stream_sink(sl_pipeline_broker(p, "topic", &bc, 0, NULL), "o1", &sl_sink_collect, c[1]);
    sl_stream_sink(sl_pipeline_generator(p, "gen", &gc, sizeof(rec), NULL), "o2", &sl_sink_collect,
                   c[2]);
    memset(path, 0x5a, sizeof(path));
    memset(dirbuf, 0x5a, sizeof(dirbuf));
    memset(topic, 0x5a, sizeof(topic));
    memset(&lc, 0x5a, sizeof(lc));
    memset(&bc, 0x5a, sizeof(bc));
    memset(&gc, 0x5a, sizeof(gc));
}

static void test_builders_copy_confs(void **state)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/copied.csv", dir);
    FILE *f = fopen(path, "w");
    fputs("1,a\n2,b\n", f);
    fclose(f);
    fill_topic("copied", 2, 7);
    sl_collector *c[3];
    for (int i = 0; i < 3; i++) c[i] = sl_collector_new();
    sl_pipeline *p = sl_pipeline_new();
    build_sources(p, c);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "%s\n", sl_pipeline_errmsg(p));
    assert_int_equal(rc, 0);
    assert_int_equal(sl_collector_count(c[0]), 2);
    assert_int_equal(sl_collector_count(c[1]), 2 * 7);
    assert_int_equal(sl_collector_count(c[2]), 10);
    sl_pipeline_free(p);
    for (int i = 0; i < 3; i++) sl_collector_free(c[i]);
}

static void test_bad_tables_refused(void **state)
{
    sl_source old = multi_src;
    old.version = 1;
    sl_pipeline *p = sl_pipeline_new();
    assert_null(sl_pipeline_source(p, "old", &old, NULL, 8, NULL));
    assert_int_equal(sl_pipeline_run(p), SL_EINVAL);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "version 2"));
    sl_pipeline_free(p);
    /* port 1 of a source is its dead-letter port */
    p = sl_pipeline_new();
    multi m = {.splits = 1, .per_split = 1};
    sl_stream *s = sl_pipeline_source(p, "m", &multi_src, &m, sizeof(rec), NULL);
    assert_null(sl_stream_side(s, 1, 8));
    sl_pipeline_free(p);
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/sluice-test-source-%d", (int)getpid());
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s", dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splits_read_once_with_positions),
        cmocka_unit_test(test_generator_shards),
        cmocka_unit_test(test_backlog_is_not_idle_generic),
        cmocka_unit_test(test_backlog_is_not_idle_broker),
        cmocka_unit_test(test_silent_split_goes_idle),
        cmocka_unit_test(test_punctuated_follows_the_record),
        cmocka_unit_test(test_csv_time_zero_and_dead_letters),
        cmocka_unit_test(test_int64_extremes),
        cmocka_unit_test(test_monotonous),
        cmocka_unit_test(test_builders_copy_confs),
        cmocka_unit_test(test_bad_tables_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
