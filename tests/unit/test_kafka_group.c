/*
 * tests/unit/test_kafka_group.c - a consumer group that repartitions
 * (sl_kafka_group with .repartition, sluice/kafka.h), on sluice's own Kafka
 * server in process.
 *
 * The job counts records per (key, 10 ms window), where the key is not the
 * input's partitioning: the input tasks (3 input partitions) send each
 * record to the group's repartition topic (2 partitions) keyed by its key,
 * and the repartition tasks count. Records carry (key, event time) in their
 * 16-byte value, so event time 0 is a time like any other.
 *
 * Input: partitions 0 and 1 hold keys in different orders with event times
 * 0, 1, 2, ...; partition 2 holds nothing, so only its idleness (marker
 * with the idle flag) lets windows close; key 99 records are filtered out
 * by the input tasks (they only move the watermark). The scenario:
 *   part 1  event times 0..999; the group runs until every window that the
 *           watermark (998) closes is committed, then stops (final
 *           checkpoints) -- nothing more may come out;
 *   part 2  event times 1000..1999 and one key-99 record far ahead in
 *           partitions 0 and 1; a new run of the group restores both kinds
 *           of task from the state topic (the counts so far, the markers
 *           seen) and goes on until every window is committed.
 * The output must be exactly the expected counts: no window lost, late or
 * twice (exactly-once across the stop), no dead letter (markers never
 * reach the job), no late record. Run with the default credits and with
 * one credit.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <unistd.h>
#include <cmocka.h>
#include "tests/unit/kafka_test.h"
#include "sluice/kafka.h"
#include "sluice/sluice.h"
#include "sluice/window.h"

#define PER_PART   1000 /* records per data partition per part */
#define KEYS       5
#define WINDOW_MS  10
#define FLUSH_KEY  99
#define FLUSH_TIME 1000000

static kt_server S;
static char workroot[] = "/tmp/sluice_test_kafka_group_work_XXXXXX";

static const kt_topic topics[] = {
    {"in-a", 3, 0},
    {"out-a", 1, 0},
    {"in-b", 3, 0},
    {"out-b", 1, 0},
};

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(workroot)) return -1;
    return kt_server_start(&S, "sluice_test_kafka_group", topics, sizeof topics / sizeof *topics);
}

static int teardown(void **state)
{
    (void)state;
    return kt_server_stop(&S, workroot);
}

/* ---- the job ---- */

typedef struct scenario {
    const char *in, *out, *group;
    int credits;
    atomic_uint_fast64_t dead, late; /* must stay 0 */
} scenario;

typedef struct kv {
    int64_t key, ts;
} kv;

static int parse_kv(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                    const char **reason, void *ud)
{
    (void)max_len, (void)ud;
    if (len != sizeof(kv)) {
        *reason = "not a 16-byte (key, time) value";
        return -1;
    }
    kv v;
    memcpy(&v, line, sizeof v);
    memcpy(out, &v.key, 8);
    *ts = v.ts;
    return 8;
}

static int not_flush(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)len, (void)ts, (void)ud;
    int64_t k;
    memcpy(&k, rec, 8);
    return k != FLUSH_KEY;
}

static sl_bytes key8(const void *rec, uint32_t len, void *ud)
{
    (void)len, (void)ud;
    return (sl_bytes){rec, 8};
}

static int fmt_kv(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)len, (void)ud;
    kv v;
    memcpy(&v.key, rec, 8);
    v.ts = ts;
    return sl_buf_append(out, &v, sizeof v);
}

static int fmt_count(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)ts, (void)ud;
    sl_window_result r = sl_window_out((sl_bytes){rec, len});
    int64_t k, n;
    memcpy(&k, r.key.ptr, 8);
    memcpy(&n, r.result, 8);
    return sl_buf_printf(out, "%" PRId64 ",%" PRId64 ",%" PRId64, k, r.start, n);
}

/* A sink that counts what reaches it (late records, dead letters). */
static int count_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    atomic_fetch_add((atomic_uint_fast64_t *)sl_ctx_conf(ctx), in->count);
    return 0;
}
static const sl_operator count_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "count", .process = count_process};

/* The input tasks: parse, drop the flush records, to the repartition topic
 * keyed by the record's key. */
static int build_input(sl_pipeline *p, const sl_kafka_task *t, void *ud)
{
    scenario *sc = ud;
    if (sc->credits) sl_pipeline_set_credits(p, sc->credits);
    const char *rt = sl_kafka_task_repartition_topic(t);
    if (!rt) return SL_EINVAL;
    sl_kafka_source_conf kc = {.parse = parse_kv, .max_len = 8, .task = t};
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1, .idle_ms = 100};
    sl_stream *s = sl_pipeline_kafka(p, "in", &kc, 8, &wm);
    if (!s) return SL_EINVAL;
    sl_stream_sink(sl_stream_dead_letters(s), "dead-in", &count_sink, &sc->dead);
    s = sl_stream_filter(s, "no-flush", not_flush, NULL);
    sl_kafka_sink_conf *oc = sl_pipeline_dup(
        p,
        &(sl_kafka_sink_conf){
            .bootstrap = S.bootstrap, .topic = rt, .key = key8, .format = fmt_kv, .task = t},
        sizeof(sl_kafka_sink_conf));
    return oc ? sl_stream_sink(s, "to-repartition", &sl_sink_kafka, oc) : SL_ENOMEM;
}

/* The repartition tasks: count per key and window, to the output. */
static int build_count(sl_pipeline *p, const sl_kafka_task *t, void *ud)
{
    scenario *sc = ud;
    if (sc->credits) sl_pipeline_set_credits(p, sc->credits);
    sl_kafka_source_conf kc = {.parse = parse_kv, .max_len = 8, .task = t};
    sl_stream *s = sl_pipeline_kafka(p, "repartitioned", &kc, 8, NULL);
    if (!s) return SL_EINVAL;
    sl_stream_sink(sl_stream_dead_letters(s), "dead-re", &count_sink, &sc->dead);
    sl_window_conf wc = sl_window_tumbling(WINDOW_MS, 0);
    wc.agg = &sl_agg_count;
    sl_stream *w = sl_stream_window(sl_stream_key_by(s, "by-key", key8, NULL), "count", &wc);
    sl_stream_sink(sl_stream_window_late(w), "late", &count_sink, &sc->late);
    sl_kafka_sink_conf *oc = sl_pipeline_dup(
        p,
        &(sl_kafka_sink_conf){
            .bootstrap = S.bootstrap, .topic = sc->out, .format = fmt_count, .task = t},
        sizeof(sl_kafka_sink_conf));
    return oc ? sl_stream_sink(w, "out", &sl_sink_kafka, oc) : SL_ENOMEM;
}

/* ---- running the group ---- */

typedef struct member {
    sl_kafka_group *g;
    pthread_t thr;
    int rc;
} member;

static void *member_main(void *arg)
{
    member *m = arg;
    m->rc = sl_kafka_group_run(m->g);
    if (m->rc) fprintf(stderr, "  group failed: %s\n", sl_kafka_group_errmsg(m->g));
    return NULL;
}

static void member_start(member *m, scenario *sc, int run)
{
    char work[512];
    snprintf(work, sizeof work, "%s/%s-%d", workroot, sc->group, run);
    sl_kafka_group_conf gc = {.bootstrap = S.bootstrap,
                              .topic = sc->in,
                              .group_id = sc->group,
                              .work_dir = work,
                              .checkpoint_interval_ms = 100,
                              .session_timeout_ms = 10000,
                              .build = build_count,
                              .repartition = build_input,
                              .repartition_partitions = 2,
                              .ud = sc,
                              .log_prefix = "  group: "};
    assert_int_equal(sl_kafka_group_new(&m->g, &gc), 0);
    assert_int_equal(pthread_create(&m->thr, NULL, member_main, m), 0);
}

static void member_stop(member *m)
{
    sl_kafka_group_stop(m->g);
    pthread_join(m->thr, NULL);
    if (m->rc) fail_msg("the group failed: %s", sl_kafka_group_errmsg(m->g));
    sl_kafka_group_free(m->g);
}

/* ---- input and output ---- */

/* Part `part` (0 or 1) of the input: keys in partition 0 go 0,1,2,3,4,...,
 * in partition 1 0,3,1,4,2,...; partition 2 gets nothing. */
static void produce_part(const char *topic, int part)
{
    rd_kafka_t *rk = kt_producer(S.bootstrap, NULL);
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < PER_PART; i++) {
            int64_t t = (int64_t)part * PER_PART + i;
            kv v = {p == 0 ? t % KEYS : (t * 3) % KEYS, t};
            kt_produce(rk, topic, p, NULL, 0, &v, sizeof v, t);
        }
    if (part == 1)
        for (int p = 0; p < 2; p++) {
            kv v = {FLUSH_KEY, FLUSH_TIME};
            kt_produce(rk, topic, p, NULL, 0, &v, sizeof v, FLUSH_TIME);
        }
    assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);
}

/* counts[key][window]: what the job must say, from the input's rule. */
static int64_t expect[KEYS][2 * PER_PART / WINDOW_MS];

static void compute_expected(void)
{
    memset(expect, 0, sizeof expect);
    for (int part = 0; part < 2; part++)
        for (int p = 0; p < 2; p++)
            for (int i = 0; i < PER_PART; i++) {
                int64_t t = (int64_t)part * PER_PART + i;
                expect[p == 0 ? t % KEYS : (t * 3) % KEYS][t / WINDOW_MS]++;
            }
}

typedef struct outputs {
    int64_t seen[KEYS][2 * PER_PART / WINDOW_MS];
    size_t lines, bad;
    char first_bad[128];
} outputs;

static void on_line(const rd_kafka_message_t *m, void *ud)
{
    outputs *o = ud;
    char line[128];
    size_t n = m->len < sizeof line - 1 ? m->len : sizeof line - 1;
    memcpy(line, m->payload, n);
    line[n] = 0;
    int64_t k, start, c;
    o->lines++;
    if (sscanf(line, "%" SCNd64 ",%" SCNd64 ",%" SCNd64, &k, &start, &c) != 3 || k < 0 ||
        k >= KEYS || start < 0 || start % WINDOW_MS ||
        start / WINDOW_MS >= 2 * PER_PART / WINDOW_MS || o->seen[k][start / WINDOW_MS]) {
        if (!o->bad++) snprintf(o->first_bad, sizeof o->first_bad, "%s", line);
        return;
    }
    o->seen[k][start / WINDOW_MS] = c;
}

static void read_out(const char *topic, outputs *o)
{
    memset(o, 0, sizeof *o);
    kt_read(S.bootstrap, topic, 0, 1, on_line, o);
}

/* Windows that end at or before `until` (all: INT64_MAX). */
static size_t expected_lines(int64_t until)
{
    size_t n = 0;
    for (int k = 0; k < KEYS; k++)
        for (int w = 0; w < 2 * PER_PART / WINDOW_MS; w++)
            if (expect[k][w] && (int64_t)(w + 1) * WINDOW_MS <= until) n++;
    return n;
}

/* Poll the output until it has `want` lines (120 s at most). */
static void wait_lines(const char *topic, size_t want, outputs *o)
{
    for (int i = 0; i < 1200; i++) {
        read_out(topic, o);
        if (o->lines >= want) return;
        usleep(100 * 1000);
    }
    fail_msg("%s: %zu lines committed, not %zu, within 120 s", topic, o->lines, want);
}

static void check(const outputs *o, int64_t until)
{
    if (o->bad) fail_msg("%zu bad or repeated lines, the first: '%s'", o->bad, o->first_bad);
    for (int k = 0; k < KEYS; k++)
        for (int w = 0; w < 2 * PER_PART / WINDOW_MS; w++) {
            int64_t want = (int64_t)(w + 1) * WINDOW_MS <= until ? expect[k][w] : 0;
            if (o->seen[k][w] != want)
                fail_msg("key %d window %d: count %" PRId64 ", want %" PRId64, k, w * WINDOW_MS,
                         o->seen[k][w], want);
        }
}

static void scenario_run(scenario *sc)
{
    compute_expected();
    outputs *o = calloc(1, sizeof *o);
    assert_non_null(o);
    /* part 1: the watermark reaches 998 (every input task's last time, the
     * idle one excluded), so windows ending at or before 999 close */
    produce_part(sc->in, 0);
    member m;
    member_start(&m, sc, 1);
    size_t want1 = expected_lines(PER_PART - 1);
    wait_lines(sc->out, want1, o);
    member_stop(&m);
    read_out(sc->out, o);
    assert_int_equal(o->lines, want1);
    check(o, PER_PART - 1);
    /* part 2, with a new run that restores both kinds of task */
    produce_part(sc->in, 1);
    member_start(&m, sc, 2);
    size_t want = expected_lines(INT64_MAX);
    wait_lines(sc->out, want, o);
    member_stop(&m);
    read_out(sc->out, o);
    assert_int_equal(o->lines, want);
    check(o, INT64_MAX);
    assert_int_equal(atomic_load(&sc->dead), 0);
    assert_int_equal(atomic_load(&sc->late), 0);
    free(o);
}

static void test_repartition_stop_restart(void **state)
{
    (void)state;
    static scenario sc = {.in = "in-a", .out = "out-a", .group = "grp-a"};
    scenario_run(&sc);
}

static void test_repartition_one_credit(void **state)
{
    (void)state;
    static scenario sc = {.in = "in-b", .out = "out-b", .group = "grp-b", .credits = 1};
    scenario_run(&sc);
}

/* Bad confs are refused at new, with a message. */
static void test_bad_repartition_conf(void **state)
{
    (void)state;
    sl_kafka_group *g = NULL;
    sl_kafka_group_conf gc = {.bootstrap = S.bootstrap,
                              .topic = "in-a",
                              .group_id = "grp-bad",
                              .build = build_count,
                              .repartition = build_input,
                              .repartition_topic = "in-a"};
    assert_int_equal(sl_kafka_group_new(&g, &gc), SL_EINVAL);
    assert_non_null(g);
    assert_non_null(strstr(sl_kafka_group_errmsg(g), "repartition topic"));
    sl_kafka_group_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_repartition_conf),
        cmocka_unit_test(test_repartition_stop_restart),
        cmocka_unit_test(test_repartition_one_credit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
