/*
 * tests/unit/test_metrics.c - sluice/metrics.h and its two writings
 * (ops/view.h: Prometheus text and the /api/job JSON).
 *
 * One pipeline of 8 nodes at parallelism 4 (source with dead letters, its
 * dead-letter sink, parse, filter, key_by, a tumbling window with late
 * records, the late sink, the result sink) over an input whose every path
 * is known: good lines, lines without an event time (dead letters of one
 * reason), lines with a bad number (another reason), zero values the filter
 * drops, and records far behind the watermark (late). Event time 0 is
 * in the input. It runs with one credit and with eight, and checks:
 *   - every instance of every node is in the reading, the JSON and the
 *     exposition (a sample per instance for each per-instance family);
 *   - the counts agree with the input along every edge, the late and
 *     dead-letter counts with sl_pipeline_stats, the reasons with the input;
 *   - readings taken while it runs never go down (counters monotonic);
 *   - with checkpoints, the histograms are cumulative and their +Inf
 *     bucket, _count and the completed count agree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ops/view.h"
#include "sluice/sluice.h"

#define KEYS 13

typedef struct rec {
    int64_t key, v;
} rec;

static char tmpdir[256];

/* The input: n good lines over KEYS keys, bad lines and late lines; counts
 * of each path. The late lines (event time 1) belong to window [0, 1000)
 * of their key; first[k] counts the other lines of key k the window keeps
 * there, late_of[k] the late lines of key k. */
typedef struct input {
    int good, no_ts, bad_num, zero, late;
    int first[KEYS], late_of[KEYS];
} input;

static void write_input(const char *path, int n, input *in)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    memset(in, 0, sizeof(*in));
    for (int i = 0; i < n; i++) {
        int64_t ts = (int64_t)i * 10; /* from event time 0 */
        if (i % 97 == 5) {
            fprintf(f, "x%d,k,1\n", i); /* no event time */
            in->no_ts++;
            continue;
        }
        if (i % 89 == 7) {
            fprintf(f, "%" PRId64 ",k%d,zz\n", ts, i % KEYS); /* bad value */
            in->bad_num++;
            continue;
        }
        int v = i % 11 == 0 ? 0 : 1 + i % 5;
        fprintf(f, "%" PRId64 ",%d,%d\n", ts, i % KEYS, v);
        in->good++;
        if (!v) in->zero++;
        if (v && ts < 1000) in->first[i % KEYS]++;
        if (i % 500 == 499) { /* far behind the watermark: late unless dropped */
            fprintf(f, "%d,%d,3\n", 1, i % KEYS);
            in->good++;
            in->late++;
            in->late_of[i % KEYS]++;
        }
    }
    fclose(f);
}

static int parse(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                 const char **reason, void *ud)
{
    (void)max_len;
    (void)ud;
    char buf[128];
    if (len >= sizeof(buf)) len = sizeof(buf) - 1;
    memcpy(buf, line, len);
    buf[len] = 0;
    char *a = buf, *b = strchr(a, ','), *c = b ? strchr(b + 1, ',') : NULL, *end;
    if (!b || !c) {
        *reason = "expected ts,key,value";
        return -1;
    }
    int64_t t = strtoll(a, &end, 10);
    if (end != b) {
        *reason = "no event time";
        return -1;
    }
    rec r;
    r.key = strtoll(b + 1, &end, 10);
    r.v = strtoll(c + 1, &end, 10);
    if (*end || end == c + 1) {
        *reason = "bad value";
        return -1;
    }
    *ts = t;
    memcpy(out, &r, sizeof(r));
    return (int)sizeof(r);
}

static int keep_nonzero(const void *p, uint32_t len, int64_t ts, void *ud)
{
    (void)len;
    (void)ts;
    (void)ud;
    rec r;
    memcpy(&r, p, sizeof(r));
    return r.v != 0;
}

static int twice(const void *in, uint32_t len, void *out, int64_t *ts, void *ud)
{
    (void)len;
    (void)ts;
    (void)ud;
    rec r;
    memcpy(&r, in, sizeof(r));
    r.v *= 2;
    memcpy(out, &r, sizeof(r));
    return 0;
}

static sl_bytes key_of(const void *p, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    return (sl_bytes){.ptr = p, .len = 8};
}

typedef struct job {
    sl_pipeline *p;
    sl_collector *out, *late, *dead;
} job;

static void build(job *j, const char *path, int credits, const char *chk_dir)
{
    j->p = sl_pipeline_new();
    sl_pipeline_set_threads(j->p, 2);
    sl_pipeline_set_parallelism(j->p, 4);
    sl_pipeline_set_credits(j->p, credits);
    j->out = sl_collector_new();
    j->late = sl_collector_new();
    j->dead = sl_collector_new();
    /* One split, punctuated: the watermark follows each record, so a line
     * of event time 1 after event time 4990 is late once the instances
     * without a split have ended. Until then they hold the window's
     * watermark (the minimum of its inputs) and the line is on time: how
     * many are is up to the threads (check_late counts both ways). */
    sl_lines_conf lc = {.path = path, .parse = parse, .max_len = sizeof(rec), .splits = 1};
    sl_watermark_conf wm = {.delay = 100, .punctuated = 1};
    sl_stream *src = sl_pipeline_lines(j->p, "src", &lc, sizeof(rec), &wm);
    sl_stream_sink(sl_stream_dead_letters(src), "dead-sink", &sl_sink_collect, j->dead);
    sl_stream *m = sl_stream_map(src, "parse", twice, NULL, sizeof(rec));
    sl_stream *f = sl_stream_filter(m, "keep", keep_nonzero, NULL);
    sl_stream *k = sl_stream_key_by(f, "by-key", key_of, NULL);
    sl_window_conf wc = sl_window_tumbling(1000, 0);
    wc.agg = &sl_agg_count;
    sl_stream *w = sl_stream_window(k, "win", &wc);
    sl_stream_sink(sl_stream_window_late(w), "late-sink", &sl_sink_collect, j->late);
    sl_stream_sink(w, "out", &sl_sink_collect, j->out);
    if (chk_dir) {
        sl_checkpoint_conf cc = {.dir = chk_dir, .interval_ms = 5};
        assert_int_equal(sl_pipeline_set_checkpoint(j->p, &cc), 0);
    }
}

static void job_free(job *j)
{
    sl_pipeline_free(j->p);
    sl_collector_free(j->out);
    sl_collector_free(j->late);
    sl_collector_free(j->dead);
}

static const sl_metrics_instance *inst(const sl_metrics *m, const char *node, int i)
{
    for (int k = 0; k < m->n_nodes; k++)
        if (!strcmp(m->nodes[k].name, node)) return &m->instances[m->nodes[k].first_instance + i];
    fail_msg("no node %s", node);
    return NULL;
}

typedef struct sums {
    uint64_t in, out, late, dead;
} sums;

static sums node_sums(const sl_metrics *m, const char *node)
{
    sums s = {0};
    for (int i = 0; i < 4; i++) {
        const sl_metrics_instance *x = inst(m, node, i);
        s.in += x->records_in;
        s.out += x->records_out;
        s.late += x->late;
        s.dead += x->dead_letters;
    }
    return s;
}

/* Every counter of b is >= the same counter of a. */
static void expect_monotonic(const sl_metrics *a, const sl_metrics *b)
{
    assert_int_equal(a->n_instances, b->n_instances);
    for (int i = 0; i < a->n_instances; i++) {
        const sl_metrics_instance *x = &a->instances[i], *y = &b->instances[i];
        assert_true(y->records_in >= x->records_in);
        assert_true(y->records_out >= x->records_out);
        assert_true(y->bytes_in >= x->bytes_in);
        assert_true(y->bytes_out >= x->bytes_out);
        assert_true(y->late >= x->late);
        assert_true(y->dead_letters >= x->dead_letters);
        assert_true(y->watermark >= x->watermark);
    }
    for (int t = 0; t < a->n_tasks; t++)
        assert_true(b->tasks[t].blocked_s >= a->tasks[t].blocked_s);
    assert_true(b->totals.records_in >= a->totals.records_in);
    assert_true(b->totals.records_out >= a->totals.records_out);
}

/* The value of the exposition's sample `series` (the whole text before the
 * space), or -1 when absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (!strncmp(l, series, n) && l[n] == ' ') return strtod(l + n + 1, NULL);
    return -1;
}

static void check_exposition(const sl_pipeline *p, const sl_metrics *m, const input *in)
{
    sli_view v;
    assert_int_equal(sli_view_take(&v, "test \"job\"", 0, &(sli_view_src){NULL, p}, 1, NULL), 0);
    sl_buf prom = {0}, json = {0};
    assert_int_equal(sli_view_prometheus(&v, &prom), 0);
    assert_int_equal(sli_view_json(&v, &json), 0);
    assert_int_equal(sl_buf_append(&prom, "", 1), 0);
    assert_int_equal(sl_buf_append(&json, "", 1), 0);
    const char *text = (const char *)prom.ptr;
    /* every instance of every node, in both writings */
    static const char *fams[] = {"sluice_records_in_total", "sluice_records_out_total",
                                 "sluice_bytes_in_total", "sluice_late_records_total"};
    for (int k = 0; k < m->n_nodes; k++)
        for (int i = 0; i < m->nodes[k].parallelism; i++) {
            const sl_metrics_instance *x = &m->instances[m->nodes[k].first_instance + i];
            for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
                char series[256];
                snprintf(series, sizeof(series),
                         "%s{job=\"test \\\"job\\\"\",node=\"%s\",instance=\"%d\"}", fams[f],
                         m->nodes[k].name, i);
                double want = f == 0   ? (double)x->records_in
                              : f == 1 ? (double)x->records_out
                              : f == 2 ? (double)x->bytes_in
                                       : (double)x->late;
                double got = sample(text, series);
                if (got != want) fail_msg("%s: %g, expected %g", series, got, want);
            }
        }
    char needle[64];
    for (int k = 0; k < m->n_nodes; k++) {
        snprintf(needle, sizeof(needle), "{\"name\":\"%s\"", m->nodes[k].name);
        assert_non_null(strstr((const char *)json.ptr, needle));
    }
    /* dead letters by reason: the two reasons of the input, summed over instances */
    double no_ts = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        char s[200];
        snprintf(s, sizeof(s),
                 "sluice_dead_letters_total{job=\"test \\\"job\\\"\",node=\"src\",instance=\"%d\","
                 "reason=\"no event time\"}",
                 i);
        double a = sample(text, s);
        snprintf(s, sizeof(s),
                 "sluice_dead_letters_total{job=\"test \\\"job\\\"\",node=\"src\",instance=\"%d\","
                 "reason=\"bad value\"}",
                 i);
        double b = sample(text, s);
        no_ts += a > 0 ? a : 0;
        bad += b > 0 ? b : 0;
    }
    assert_int_equal((int)no_ts, in->no_ts);
    assert_int_equal((int)bad, in->bad_num);
    /* every family is announced once, before its samples */
    assert_non_null(strstr(text, "# TYPE sluice_records_in_total counter\n"));
    assert_null(strstr(strstr(text, "# TYPE sluice_records_in_total") + 1,
                       "# TYPE sluice_records_in_total"));
    if (v.has_chk) {
        /* cumulative buckets; +Inf == _count == completed */
        double prev = 0, inf = -1;
        for (const char *l = text; (l = strstr(l, "sluice_checkpoint_duration_seconds_bucket{"));
             l++) {
            const char *sp = strchr(l, '\n');
            while (*sp != ' ') sp--; /* the value follows the last space */
            double x = strtod(sp + 1, NULL);
            assert_true(x >= prev);
            prev = x;
            if (strstr(l, "le=\"+Inf\"") && strstr(l, "le=\"+Inf\"") < sp) inf = x;
        }
        assert_true(inf >= 1);
        assert_true(inf == sample(text, "sluice_checkpoint_duration_seconds_count{job=\"test "
                                        "\\\"job\\\"\"}"));
        assert_true(inf == sample(text, "sluice_checkpoint_size_bytes_count{job=\"test "
                                        "\\\"job\\\"\"}"));
        assert_true(inf == sample(text, "sluice_checkpoints_total{job=\"test \\\"job\\\"\","
                                        "outcome=\"completed\"}"));
        assert_non_null(strstr((const char *)json.ptr, "\"history\":[{\"id\":"));
    }
    sl_buf_free(&prom);
    sl_buf_free(&json);
    sli_view_free(&v);
}

/* Every late line went one way: to the late output, or (on time, while
 * the window's watermark was still held) into window [0, 1000) of its key;
 * none lost, none both, and that window fired once (lateness itself is
 * pinned down by the window tests, on deterministic inputs). Per key: late records + the window's count beyond
 * the input's other lines there == the key's late lines. */
static void check_late(const job *j, const input *in)
{
    int late[KEYS] = {0}, extra[KEYS], fired[KEYS] = {0}, total = 0;
    for (int k = 0; k < KEYS; k++) extra[k] = -in->first[k];
    for (size_t q = 0; q < sl_collector_count(j->late); q++) {
        rec r;
        sl_bytes b = sl_collector_get(j->late, q, NULL);
        assert_int_equal(b.len, sizeof(r));
        memcpy(&r, b.ptr, sizeof(r));
        assert_true(r.key >= 0 && r.key < KEYS);
        late[r.key]++;
    }
    for (size_t q = 0; q < sl_collector_count(j->out); q++) {
        sl_window_result w = sl_window_out(sl_collector_get(j->out, q, NULL));
        int64_t key;
        uint64_t n;
        assert_int_equal(w.key.len, 8);
        assert_int_equal(w.result_size, 8);
        memcpy(&key, w.key.ptr, 8);
        memcpy(&n, w.result, 8);
        assert_true(key >= 0 && key < KEYS);
        if (w.start == 0) {
            extra[key] += (int)n;
            fired[key]++;
        }
    }
    for (int k = 0; k < KEYS; k++) {
        /* fired once: a line after the firing was late, never a second result */
        assert_int_equal(fired[k], 1);
        if (late[k] + extra[k] != in->late_of[k])
            fail_msg("key %d: %d late + %d on time, expected %d late lines", k, late[k], extra[k],
                     in->late_of[k]);
        total += late[k];
    }
    assert_int_equal(total, sl_collector_count(j->late));
    assert_true(total <= in->late);
}

static void run_and_check(int credits, int chk)
{
    char path[300], chk_dir[300];
    snprintf(path, sizeof(path), "%s/in.csv", tmpdir);
    snprintf(chk_dir, sizeof(chk_dir), "%s/chk-%d-%d", tmpdir, credits, chk);
    input in;
    write_input(path, 20000, &in);
    job j;
    build(&j, path, credits, chk ? chk_dir : NULL);
    sl_metrics m0, m1;
    assert_int_equal(sl_pipeline_metrics(j.p, &m0), SL_ESTATE); /* no plan yet */
    assert_int_equal(sl_pipeline_start(j.p), 0);
    assert_int_equal(sl_pipeline_metrics(j.p, &m0), 0);
    assert_int_equal(m0.n_nodes, 8);
    assert_int_equal(m0.n_instances, 32);
    int readings = 0;
    for (;;) {
        int rc = sl_pipeline_wait(j.p, 0);
        assert_int_equal(sl_pipeline_metrics(j.p, &m1), 0);
        expect_monotonic(&m0, &m1);
        sl_metrics_clear(&m0);
        m0 = m1;
        readings++;
        if (rc != SL_EAGAIN) {
            assert_int_equal(rc, 0);
            break;
        }
    }
    assert_int_equal(sl_pipeline_metrics(j.p, &m1), 0);
    assert_int_equal(m1.state, SL_STATE_FINISHED);
    sl_pipeline_stats st;
    sl_pipeline_stats_get(j.p, &st);
    sums src = node_sums(&m1, "src"), parse_ = node_sums(&m1, "parse"),
         keep = node_sums(&m1, "keep"), win = node_sums(&m1, "win"), out = node_sums(&m1, "out"),
         late = node_sums(&m1, "late-sink"), dead = node_sums(&m1, "dead-sink");
    assert_int_equal(src.out, in.good);
    assert_int_equal(src.dead, in.no_ts + in.bad_num);
    assert_int_equal(src.in, in.good + in.no_ts + in.bad_num);
    assert_int_equal(dead.in, src.dead);
    assert_int_equal(parse_.in, src.out);
    assert_int_equal(keep.in, parse_.out);
    assert_int_equal(keep.out, in.good - in.zero);
    assert_int_equal(win.in, keep.out);
    assert_int_equal(win.late, sl_collector_count(j.late));
    assert_int_equal(win.late, st.late);
    check_late(&j, &in);
    assert_int_equal(late.in, win.late);
    assert_int_equal(out.in, win.out);
    assert_int_equal(out.in, sl_collector_count(j.out));
    assert_int_equal(src.dead, st.dead_letters);
    assert_int_equal(m1.totals.records_in, st.records_in);
    /* bytes: fixed-width records */
    assert_int_equal(node_sums(&m1, "parse").in * sizeof(rec),
                     inst(&m1, "parse", 0)->bytes_in + inst(&m1, "parse", 1)->bytes_in +
                         inst(&m1, "parse", 2)->bytes_in + inst(&m1, "parse", 3)->bytes_in);
    /* the reasons table */
    uint64_t r_no_ts = 0, r_bad = 0;
    for (int r = 0; r < m1.n_reasons; r++) {
        if (!strcmp(m1.reasons[r].reason, "no event time")) r_no_ts += m1.reasons[r].count;
        if (!strcmp(m1.reasons[r].reason, "bad value")) r_bad += m1.reasons[r].count;
    }
    assert_int_equal(r_no_ts, in.no_ts);
    assert_int_equal(r_bad, in.bad_num);
    /* the sinks saw the end: their watermark is +inf */
    assert_true(inst(&m1, "out", 0)->watermark == SL_TIME_MAX);
    check_exposition(j.p, &m1, &in);
    sl_metrics_clear(&m0);
    sl_metrics_clear(&m1);
    job_free(&j);
    (void)readings;
}

static void test_one_credit(void **state)
{
    (void)state;
    run_and_check(1, 0);
}

static void test_eight_credits(void **state)
{
    (void)state;
    run_and_check(8, 0);
}

static void test_checkpoints(void **state)
{
    (void)state;
    run_and_check(2, 1);
}

/* Reasons: the location is not part of the class; digits are N; 17th class
 * and later go to "other". Driven through a lines source's dead letters. */
static void test_reason_classes(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof(path), "%s/reasons.csv", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 40; i++) fprintf(f, "x,%d,1\n", i); /* no event time: 40 */
    fclose(f);
    sl_pipeline *p = sl_pipeline_new();
    sl_lines_conf lc = {.path = path, .parse = parse, .max_len = sizeof(rec)};
    sl_collector *c = sl_collector_new(), *d = sl_collector_new();
    sl_stream *src = sl_pipeline_lines(p, "src", &lc, sizeof(rec), NULL);
    sl_stream_sink(sl_stream_dead_letters(src), "dead", &sl_sink_collect, d);
    sl_stream_sink(src, "out", &sl_sink_collect, c);
    assert_int_equal(sl_pipeline_run(p), 0);
    sl_metrics m;
    assert_int_equal(sl_pipeline_metrics(p, &m), 0);
    assert_int_equal(m.n_reasons, 1);
    assert_string_equal(m.reasons[0].reason, "no event time");
    assert_int_equal(m.reasons[0].count, 40);
    sl_metrics_clear(&m);
    sl_pipeline_free(p);
    sl_collector_free(c);
    sl_collector_free(d);
}

/* Source lag (sl_ctx_split_lag) from the broker source: read from inside
 * the sink's first batch, some partition is still behind (the source had
 * polled one batch of 40,000 records); after the end, every partition is
 * reported and none is behind. The same reading in the exposition. */
typedef struct probe {
    sl_pipeline *p;
    int batches;
    int64_t first_max_lag;
    int first_n_lags;
} probe;

static int probe_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)in;
    probe *pr = sl_ctx_conf(ctx);
    (void)self;
    if (pr->batches++ == 0) {
        sl_metrics m;
        if (sl_pipeline_metrics(pr->p, &m) != 0) return SL_EIO;
        pr->first_n_lags = m.n_lags;
        for (int i = 0; i < m.n_lags; i++)
            if (m.lags[i].lag > pr->first_max_lag) pr->first_max_lag = m.lags[i].lag;
        sl_metrics_clear(&m);
    }
    return 0;
}

static const sl_operator probe_op = {
    .version = SL_OPERATOR_VERSION, .kind = "probe", .process = probe_process};

/* Two pipelines shown as one job (several pipelines, ops/view.c): every
 * node under "NAME/NODE", indexes shifted consistently, totals and
 * checkpoints added up, both writings name every instance; and the
 * endpoint's list refuses what would make names ambiguous. */
static void test_two_pipelines(void **state)
{
    (void)state;
    char path[300], chk_a[300], chk_b[300];
    snprintf(path, sizeof(path), "%s/in2.csv", tmpdir);
    snprintf(chk_a, sizeof(chk_a), "%s/chk-two-a", tmpdir);
    snprintf(chk_b, sizeof(chk_b), "%s/chk-two-b", tmpdir);
    input in;
    write_input(path, 20000, &in);
    job a, b;
    build(&a, path, 1, chk_a);
    build(&b, path, 8, chk_b);
    sli_view_src src[2] = {{"orders", a.p}, {"replies", b.p}};
    sli_view v;
    /* before either is planned: no job */
    assert_int_equal(sli_view_take(&v, "j", 0, src, 2, NULL), 0);
    assert_int_equal(v.has_job, 0);
    sli_view_free(&v);
    assert_int_equal(sl_pipeline_start(a.p), 0);
    assert_int_equal(sl_pipeline_start(b.p), 0);
    int ra, rb;
    do { /* readings while both run, as a scrape takes them */
        ra = sl_pipeline_wait(a.p, 0);
        rb = sl_pipeline_wait(b.p, 0);
        assert_int_equal(sli_view_take(&v, "j", 0, src, 2, NULL), 0);
        assert_int_equal(v.m.n_nodes, 16);
        sli_view_free(&v);
    } while (ra == SL_EAGAIN || rb == SL_EAGAIN);
    assert_int_equal(ra, 0);
    assert_int_equal(rb, 0);
    sl_metrics ma, mb;
    assert_int_equal(sl_pipeline_metrics(a.p, &ma), 0);
    assert_int_equal(sl_pipeline_metrics(b.p, &mb), 0);
    assert_int_equal(sli_view_take(&v, "j", 0, src, 2, NULL), 0);
    const sl_metrics *m = &v.m;
    assert_int_equal(v.has_job, 1);
    assert_int_equal(m->state, SL_STATE_FINISHED);
    assert_int_equal(m->n_nodes, ma.n_nodes + mb.n_nodes);
    assert_int_equal(m->n_instances, ma.n_instances + mb.n_instances);
    assert_int_equal(m->n_tasks, ma.n_tasks + mb.n_tasks);
    assert_int_equal(m->n_reasons, ma.n_reasons + mb.n_reasons);
    assert_int_equal(m->totals.records_in, ma.totals.records_in + mb.totals.records_in);
    assert_int_equal(m->totals.late, ma.totals.late + mb.totals.late);
    assert_string_equal(m->nodes[0].name, "orders/src");
    assert_string_equal(m->nodes[ma.n_nodes].name, "replies/src");
    for (int i = 0; i < m->n_instances; i++) { /* the indexes agree with each other */
        const sl_metrics_instance *x = &m->instances[i];
        const sl_metrics_node *nd = &m->nodes[x->node];
        assert_true(i >= nd->first_instance && i < nd->first_instance + nd->parallelism);
        assert_true(x->task >= 0 && x->task < m->n_tasks);
        assert_int_equal(m->tasks[x->task].id, x->task);
        const sl_metrics_instance *y =
            i < ma.n_instances ? &ma.instances[i] : &mb.instances[i - ma.n_instances];
        assert_int_equal(x->records_in, y->records_in);
    }
    for (int t = 0; t < m->n_tasks; t++) {
        int r = m->tasks[t].root_instance;
        if (r >= 0) assert_int_equal(m->instances[r].task, t);
    }
    for (int k = 0; k < m->n_nodes; k++)
        for (int i = 0; i < m->nodes[k].n_inputs; i++) {
            int from = m->nodes[k].inputs[i];
            assert_true((k < ma.n_nodes) == (from < ma.n_nodes)); /* no edge between the two */
        }
    /* checkpoints of both */
    sl_checkpoint_stats ca, cb;
    sl_pipeline_checkpoint_stats(a.p, &ca);
    sl_pipeline_checkpoint_stats(b.p, &cb);
    assert_int_equal(v.has_chk, 1);
    assert_int_equal(v.cs.completed, ca.completed + cb.completed);
    uint64_t inf = v.ch.duration_count[SL_CHECKPOINT_BUCKETS - 1];
    assert_int_equal(inf, ca.completed + cb.completed);
    for (int i = 1; i < v.ch.n; i++)
        assert_true(v.ch.entry[i].time_ms >= v.ch.entry[i - 1].time_ms);
    /* both writings */
    sl_buf prom = {0}, json = {0};
    assert_int_equal(sli_view_prometheus(&v, &prom), 0);
    assert_int_equal(sli_view_json(&v, &json), 0);
    assert_int_equal(sl_buf_append(&prom, "", 1), 0);
    assert_int_equal(sl_buf_append(&json, "", 1), 0);
    for (int i = 0; i < m->n_instances; i++) {
        char series[200];
        const sl_metrics_instance *x = &m->instances[i];
        snprintf(series, sizeof(series),
                 "sluice_records_in_total{job=\"j\",node=\"%s\",instance=\"%d\"}",
                 m->nodes[x->node].name, x->instance);
        assert_true(sample((const char *)prom.ptr, series) == (double)x->records_in);
    }
    assert_non_null(strstr((const char *)json.ptr, "{\"name\":\"replies/win\""));
    assert_non_null(strstr((const char *)json.ptr, "\"inputs\":[\"replies/by-key\"]"));
    sl_buf_free(&prom);
    sl_buf_free(&json);
    sli_view_free(&v);
    sl_metrics_clear(&ma);
    sl_metrics_clear(&mb);

    /* the endpoint's list */
    sl_http *h;
    char err[200];
    sl_http_conf hc = {.listen = "127.0.0.1:0"};
    assert_int_equal(sl_http_start(&h, &hc, err, sizeof(err)), 0);
    assert_int_equal(sl_http_add_pipeline(h, "orders", a.p), 0);
    assert_int_equal(sl_http_add_pipeline(h, "orders", b.p), SL_EINVAL); /* the same name */
    assert_int_equal(sl_http_add_pipeline(h, "other", a.p), SL_EINVAL);  /* shown already */
    assert_int_equal(sl_http_add_pipeline(h, "a/b", b.p), SL_EINVAL);    /* a '/' */
    assert_int_equal(sl_http_add_pipeline(h, "", b.p), SL_EINVAL);
    for (int i = 0; i < 9; i++) { /* past the first capacity, and back */
        char name[16];
        snprintf(name, sizeof(name), "r%d", i);
        assert_int_equal(sl_http_add_pipeline(h, name, b.p), 0);
        sl_http_remove_pipeline(h, b.p);
    }
    assert_int_equal(sl_http_add_pipeline(h, "replies", b.p), 0);
    sl_http_set_pipeline(h, a.p); /* alone, unnamed: no named one may join it */
    assert_int_equal(sl_http_add_pipeline(h, "replies", b.p), SL_EINVAL);
    sl_http_set_pipeline(h, NULL);
    assert_int_equal(sl_http_add_pipeline(h, "replies", b.p), 0);
    sl_http_remove_pipeline(h, a.p); /* not shown: nothing happens */
    sl_http_stop(h);
    job_free(&a);
    job_free(&b);
}

static void test_source_lag(void **state)
{
    (void)state;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/broker", tmpdir);
    sl_broker *b = NULL;
    assert_int_equal(sl_broker_open(&b, dir, SL_BROKER_CREATE), 0);
    sl_topic_conf tc;
    sl_topic_conf_init(&tc);
    tc.partitions = 2;
    assert_int_equal(sl_topic_create(b, "events", &tc), 0);
    static sl_record recs[1000];
    char v[16] = "value";
    for (int i = 0; i < 1000; i++)
        recs[i] = (sl_record){.value = v, .value_len = 5, .timestamp = i};
    for (int part = 0; part < 2; part++)
        for (int k = 0; k < 40; k++)
            assert_int_equal(sl_log_append(b, "events", part, recs, 1000, NULL), 0);
    assert_int_equal(sl_broker_close(b), 0);

    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_pipeline_set_credits(p, 1);
    probe pr = {.p = p};
    sl_broker_source_conf bc = {
        .dir = dir, .topic = "events", .start = SL_OFFSET_BEGINNING, .until_end = 1};
    sl_stream *src = sl_pipeline_broker(p, "topic", &bc, 0, NULL);
    sl_stream_parallelism(src, 1);
    assert_int_equal(sl_stream_sink(sl_stream_rebalance(src), "probe", &probe_op, &pr), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    assert_true(pr.first_n_lags >= 1);
    assert_true(pr.first_max_lag > 0);
    sl_metrics m;
    assert_int_equal(sl_pipeline_metrics(p, &m), 0);
    assert_int_equal(m.n_lags, 2);
    for (int i = 0; i < m.n_lags; i++) {
        assert_string_equal(m.lags[i].input, "events");
        assert_int_equal(m.lags[i].lag, 0);
    }
    assert_true(m.lags[0].partition != m.lags[1].partition);
    sli_view v0;
    assert_int_equal(sli_view_take(&v0, "j", 0, &(sli_view_src){NULL, p}, 1, NULL), 0);
    sl_buf prom = {0};
    assert_int_equal(sli_view_prometheus(&v0, &prom), 0);
    assert_int_equal(sl_buf_append(&prom, "", 1), 0);
    assert_non_null(strstr((const char *)prom.ptr,
                           "sluice_source_lag_records{job=\"j\",node=\"topic\","
                           "instance=\"0\",topic=\"events\",partition=\"1\"} 0\n"));
    sl_buf_free(&prom);
    sli_view_free(&v0);
    sl_metrics_clear(&m);
    sl_pipeline_free(p);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sluice-test-metrics-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_credit),  cmocka_unit_test(test_eight_credits),
        cmocka_unit_test(test_checkpoints), cmocka_unit_test(test_reason_classes),
        cmocka_unit_test(test_source_lag),  cmocka_unit_test(test_two_pipelines),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd)) rc = rc ? rc : 1;
    return rc;
}
