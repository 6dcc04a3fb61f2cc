/*
 * tests/unit/test_kafka_sink.c - the Kafka sink (connectors/kafka/sink.c)
 * against sluice's own Kafka-protocol server, started in-process on a
 * thread over a temporary broker directory (the mock cluster's transactions
 * are too shallow for exactly-once: aborted records stay visible, nothing
 * is fenced). Everything is read back with librdkafka consumers
 * (read_committed unless said), group offsets with sl_group_fetch on a
 * second broker handle.
 *
 *   - round trip (at-least-once, sink parallelism 1 and 2, one credit):
 *     every record once, unkeyed records of a batch in one partition, per
 *     partition order kept; a format callback makes the value;
 *   - keyed placement: the partition of every record is
 *     sl_partition_for_key's (murmur2), the key is kept;
 *   - timestamps: SL_TIME_NONE (the produce time), 0 (librdkafka's "now":
 *     the produce time too), 1, year 9999, INT64_MAX kept; a negative
 *     event time fails the job with a one-line error;
 *   - at-least-once: when snapshot() returns, every record before the
 *     barrier is readable (a wrapper around the sink checks it in place);
 *   - exactly-once: at every commit(n), nothing past the previous commit is
 *     visible to read_committed before the inner commit, everything up to
 *     snapshot(n) after; at end() (before the final checkpoint) nothing
 *     staged since the last commit is visible; afterwards every record once;
 *     sink parallelism 2 (two transactional ids); one credit;
 *   - a crash between the manifest and the commit (the wrapper skips the
 *     inner commit of the final checkpoint): the restart's restore() rolls
 *     forward, every record exactly once, with the trace headers its staged
 *     context and tracestate make (read back from the snapshot); a third run (restore of a
 *     committed checkpoint) writes nothing;
 *   - fencing: a producer with the same transactional id initialised during
 *     the first commit fences the sink: the job fails with "... was fenced
 *     by a newer producer with transactional id X: another run of this job
 *     took over";
 *   - consume-transform-produce offsets (the registry filled in the
 *     wrapper's snapshot as a Kafka source would) become the group's
 *     committed offsets only when commit() runs;
 *   - refusals: a missing topic, a record larger than message.max.bytes
 *     (none and exactly-once), a record larger than the topic's limit (the
 *     broker refuses it: a failed delivery) each fail with a one-line error.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dirent.h>
#include <librdkafka/rdkafka.h>

#include "connectors/broker/server_int.h"
#include "connectors/kafka/kafka_int.h"
#include "sluice/broker.h"
#include "sluice/connectors.h"
#include "sluice/kafka.h"
#include "sluice/pipeline.h"
#include "sluice/server.h"
#include "sluice/trace.h"
#include "tests/unit/kafka_test.h"

static char chkroot[] = "/tmp/sluice_test_kafka_sink_chk_XXXXXX";
static kt_server S; /* sluice's server in process, on its own broker directory */
static int chk_seq;

static const kt_topic topics[] = {
    {"rt", 3, 0},    {"rt2", 3, 0},     {"rt1", 2, 0},  {"keyed", 4, 0},     {"ts", 1, 0},
    {"neg", 1, 0},   {"alo", 2, 0},     {"eo", 3, 0},   {"eo2", 2, 0},       {"eo1", 2, 0},
    {"crash", 2, 0}, {"fence", 1, 0},   {"ctp", 1, 0},  {"src", 2, 0},       {"big", 1, 0},
    {"bigeo", 1, 0}, {"small", 1, 512}, {"ctp2", 1, 0}, {"smalleo", 1, 512}, {"drops", 3, 0},
    {"reuse", 2, 0},
};

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(chkroot)) return -1;
    return kt_server_start(&S, "sluice_test_kafka_sink", topics, sizeof topics / sizeof topics[0]);
}

static int teardown(void **state)
{
    (void)state;
    return kt_server_stop(&S, chkroot);
}

/* ---- reading back ---- */

typedef struct got {
    int32_t part;
    int64_t off, ts;
    int64_t id; /* the record's id (value bytes 0..8), -1 for other values */
    char key[16];
    int keyed;
    size_t vlen;
    char tp[64], state[64]; /* its last traceparent and tracestate headers ("": none) */
    int n_headers;
} got;

/* Header name of m into buf ("" when it has none). */
static void header_str(rd_kafka_headers_t *h, const char *name, char *buf, size_t cap)
{
    const void *v = NULL;
    size_t vl = 0;
    buf[0] = 0;
    if (!h || rd_kafka_header_get_last(h, name, &v, &vl) || !v) return;
    if (vl >= cap) vl = cap - 1;
    memcpy(buf, v, vl);
    buf[vl] = 0;
}

/* Every record of topic (nparts partitions) from the beginning to the end
 * (the last stable offset under read_committed), in order per partition.
 * Returns the count; out holds up to cap. Safe from any thread. */
static size_t read_topic(const char *topic, int nparts, int committed, got *out, size_t cap)
{
    static int seq;
    char err[512], gid[64];
    snprintf(gid, sizeof gid, "reader-%d", __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {{"bootstrap.servers", S.bootstrap},
                           {"group.id", gid},
                           {"enable.partition.eof", "true"},
                           {"enable.auto.commit", "false"},
                           {"isolation.level", committed ? "read_committed" : "read_uncommitted"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof err)) {
            fprintf(stderr, "conf: %s\n", err);
            abort();
        }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) abort();
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_assign(rk, l)) abort();
    rd_kafka_topic_partition_list_destroy(l);
    size_t n = 0;
    int eof = 0, idle = 0;
    while (eof < nparts && idle < 120) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m) {
            idle++;
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof++;
        } else if (m->err) {
            fprintf(stderr, "read %s: %s\n", topic, rd_kafka_message_errstr(m));
        } else {
            if (n < cap) {
                got *g = &out[n];
                memset(g, 0, sizeof *g);
                g->part = m->partition;
                g->off = m->offset;
                g->ts = rd_kafka_message_timestamp(m, NULL);
                g->id = -1;
                if (m->len >= 8) memcpy(&g->id, m->payload, 8);
                g->vlen = m->len;
                rd_kafka_headers_t *h = NULL;
                if (!rd_kafka_message_headers(m, &h)) g->n_headers = (int)rd_kafka_header_cnt(h);
                header_str(h, "traceparent", g->tp, sizeof g->tp);
                header_str(h, "tracestate", g->state, sizeof g->state);
                if (m->key) {
                    g->keyed = 1;
                    size_t kl = m->key_len < sizeof g->key - 1 ? m->key_len : sizeof g->key - 1;
                    memcpy(g->key, m->key, kl);
                }
            }
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    if (eof < nparts) fprintf(stderr, "read %s: no end after 60 s\n", topic);
    rd_kafka_destroy(rk);
    return n;
}

/* ---- the job ---- */

typedef struct rec16 {
    int64_t id;
    char key[8];
} rec16;

static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    rec16 *r = out;
    r->id = (int64_t)seq;
    snprintf(r->key, sizeof r->key, "u%03d", (int)(seq % 97));
    *ts = 1000 + (int64_t)seq;
    return 0;
}

static sl_bytes key_of(const void *rec, uint32_t len, void *ud)
{
    (void)len, (void)ud;
    const rec16 *r = rec;
    return (sl_bytes){r->key, (uint32_t)strlen(r->key)};
}

/* value: the id, then "#<id>" */
static int fmt_rec(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)len, (void)ts, (void)ud;
    const rec16 *r = rec;
    if (sl_buf_append(out, &r->id, 8)) return SL_ENOMEM;
    return sl_buf_printf(out, "#%" PRId64, r->id);
}

static int big_fmt(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)len, (void)ts, (void)ud;
    const rec16 *r = rec;
    if (sl_buf_append(out, &r->id, 8) || sl_buf_reserve(out, 4000)) return SL_ENOMEM;
    memset(out->ptr + out->len, 'x', 4000);
    out->len += 4000;
    return 0;
}

typedef struct job {
    const char *topic;
    uint64_t count;
    double rate;
    int guarantee; /* -1: no checkpoints */
    int64_t interval_ms;
    int parallelism, credits;
    const sl_operator *sink; /* NULL: sl_sink_kafka */
    sl_kafka_sink_conf kc;
    char chk[320];    /* "": a new checkpoint directory */
    const char *from; /* a chk-<id> directory to restore from; NULL: the latest */
    sl_gen_fn fn;
    int traced; /* records carry trace contexts (traced_ctx) */
} job;

static void job_init(job *j, const char *topic, uint64_t count, int guarantee)
{
    memset(j, 0, sizeof *j);
    j->topic = topic;
    j->count = count;
    j->guarantee = guarantee;
    j->interval_ms = 20;
    j->parallelism = 1;
    j->kc.bootstrap = S.bootstrap;
    j->kc.topic = topic;
    j->fn = gen;
}

/* The trace context of record id when traced: every third has one,
 * sampled on odd ids, with a tracestate on every sixth (its bytes in buf). */
static int traced_ctx(int64_t id, sl_trace_ctx *c, char *buf, size_t cap)
{
    if (id % 3) return 0;
    memset(c, 0, sizeof *c);
    memset(c->trace_id, 0x4b, 16);
    memcpy(c->trace_id + 8, &id, 8);
    memset(c->span_id, 0x0f, 8);
    c->flags = id % 2 ? SL_TRACE_FLAG_SAMPLED : 0;
    if (id % 6 == 0) {
        c->state_len = (uint16_t)snprintf(buf, cap, "rojo=%" PRId64 ",congo=t61rcWkgMzE", id);
        c->state = buf;
    }
    return 1;
}

static int trace_process(sl_ctx *ctx, void *self, sl_batch *b)
{
    (void)self;
    for (uint32_t i = 0; i < b->count; i++) {
        sl_trace_ctx c;
        char buf[64];
        const rec16 *r = sl_batch_at(b, i);
        if (traced_ctx(r->id, &c, buf, sizeof buf) && sl_batch_set_trace(b, i, &c))
            return sl_ctx_fail(ctx, SL_ENOMEM, "trace column");
    }
    return sl_forward(ctx, b);
}

static const sl_operator trace_op = {
    .version = SL_OPERATOR_VERSION, .kind = "trace", .process = trace_process};

/* g's headers are those of its record's context (traced_ctx): a
 * traceparent of the same trace id and flags and a new span id, the
 * tracestate as it was; none without a context. */
static void check_trace_headers(const got *g)
{
    sl_trace_ctx c, h;
    char buf[64];
    if (!traced_ctx(g->id, &c, buf, sizeof buf)) {
        assert_int_equal(g->n_headers, 0);
        return;
    }
    assert_int_equal(sl_traceparent_parse(g->tp, strlen(g->tp), &h), 0);
    assert_memory_equal(h.trace_id, c.trace_id, 16);
    assert_memory_not_equal(h.span_id, c.span_id, 8); /* sluice's hop */
    assert_int_equal(h.flags, c.flags);
    if (c.state) {
        assert_int_equal(g->n_headers, 2);
        assert_int_equal(strlen(g->state), c.state_len);
        assert_memory_equal(g->state, c.state, c.state_len);
    } else {
        assert_int_equal(g->n_headers, 1);
    }
}

/* Run the job: 0 or the pipeline's code, with its message in msg. */
static int run_job(job *j, char *msg, size_t msglen)
{
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_parallelism(p, j->parallelism);
    if (j->credits) sl_pipeline_set_credits(p, j->credits);
    if (j->guarantee >= 0) {
        if (!j->chk[0]) snprintf(j->chk, sizeof j->chk, "%s/c%d", chkroot, ++chk_seq);
        sl_checkpoint_conf cc = {.dir = j->chk,
                                 .interval_ms = j->interval_ms,
                                 .guarantee = j->guarantee,
                                 .from = j->from};
        assert_int_equal(sl_pipeline_set_checkpoint(p, &cc), 0);
    }
    sl_generator_conf gc = {.fn = j->fn, .count = j->count, .rate = j->rate};
    sl_stream *s = sl_pipeline_generator(p, "gen", &gc, sizeof(rec16), NULL);
    if (j->traced) s = sl_stream_apply(s, "trace", &trace_op, NULL, sizeof(rec16));
    sl_stream_sink(s, "out", j->sink ? j->sink : &sl_sink_kafka, &j->kc);
    int rc = sl_pipeline_run(p);
    if (msg) snprintf(msg, msglen, "%s", sl_pipeline_errmsg(p));
    if (rc && !msg) fprintf(stderr, "job: %s\n", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    return rc;
}

/* Every id 0..n-1 exactly once in g[0..cnt), and ids increase within each
 * partition (one source instance: its order is the id order). */
static void check_once_in_order(const got *g, size_t cnt, uint64_t n)
{
    assert_int_equal(cnt, n);
    unsigned char *seen = calloc(n, 1);
    int64_t last[16];
    for (int i = 0; i < 16; i++) last[i] = -1;
    for (size_t i = 0; i < cnt; i++) {
        assert_true(g[i].id >= 0 && (uint64_t)g[i].id < n);
        assert_int_equal(seen[g[i].id], 0);
        seen[g[i].id] = 1;
        assert_true(g[i].part >= 0 && g[i].part < 16);
        assert_true(g[i].id > last[g[i].part]);
        last[g[i].part] = g[i].id;
    }
    free(seen);
}

/* ---- round trips ---- */

static void round_trip(const char *topic, int nparts, int guarantee, int parallelism, int credits)
{
    const uint64_t n = 5000;
    job j;
    job_init(&j, topic, n, guarantee);
    j.parallelism = parallelism;
    j.credits = credits;
    j.kc.format = fmt_rec;
    assert_int_equal(run_job(&j, NULL, 0), 0);
    got *g = calloc(n + 100, sizeof *g);
    size_t cnt = read_topic(topic, nparts, 1, g, n + 100);
    if (parallelism == 1) {
        check_once_in_order(g, cnt, n);
        /* unkeyed: the records of one input batch share a partition, and
         * batches go round-robin, so every partition got some */
        int per[8] = {0};
        for (size_t i = 0; i < cnt; i++) per[g[i].part]++;
        for (int p = 0; p < nparts; p++) assert_true(per[p] > 0);
    } else {
        assert_int_equal(cnt, n);
        unsigned char *seen = calloc(n, 1);
        for (size_t i = 0; i < cnt; i++) {
            assert_true(g[i].id >= 0 && (uint64_t)g[i].id < n);
            assert_int_equal(seen[g[i].id]++, 0);
        }
        free(seen);
    }
    for (size_t i = 0; i < cnt; i++) {
        assert_false(g[i].keyed);
        assert_int_equal(g[i].ts, 1000 + g[i].id);
        char want[32];
        int wl = snprintf(want, sizeof want, "#%" PRId64, g[i].id);
        assert_int_equal(g[i].vlen, 8 + (size_t)wl);
    }
    free(g);
}

static void test_round_trip_at_least_once(void **state)
{
    (void)state;
    round_trip("rt", 3, SL_GUARANTEE_AT_LEAST_ONCE, 1, 0);
}

static void test_round_trip_one_credit_none(void **state)
{
    (void)state;
    round_trip("rt1", 2, -1, 1, 1);
}

static void test_round_trip_two_instances(void **state)
{
    (void)state;
    round_trip("rt2", 3, SL_GUARANTEE_AT_LEAST_ONCE, 2, 0);
}

static void test_keyed_placement(void **state)
{
    (void)state;
    const uint64_t n = 3000;
    job j;
    job_init(&j, "keyed", n, -1);
    j.kc.key = key_of;
    assert_int_equal(run_job(&j, NULL, 0), 0);
    got *g = calloc(n + 100, sizeof *g);
    size_t cnt = read_topic("keyed", 4, 1, g, n + 100);
    check_once_in_order(g, cnt, n);
    for (size_t i = 0; i < cnt; i++) {
        char want[8];
        snprintf(want, sizeof want, "u%03d", (int)(g[i].id % 97));
        assert_true(g[i].keyed);
        assert_string_equal(g[i].key, want);
        assert_int_equal(g[i].part, sl_partition_for_key(want, strlen(want), 4));
        assert_int_equal(g[i].vlen, sizeof(rec16));
    }
    free(g);
}

/* ---- timestamps ---- */

static const int64_t ts_table[] = {SL_TIME_NONE, 0, 1, 253402300799999LL, INT64_MAX, 5};

static int gen_ts(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    rec16 *r = out;
    memset(r, 0, sizeof *r);
    r->id = (int64_t)seq;
    *ts = ts_table[seq % (sizeof ts_table / sizeof ts_table[0])];
    return 0;
}

static int gen_neg(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    rec16 *r = out;
    memset(r, 0, sizeof *r);
    r->id = (int64_t)seq;
    *ts = seq == 7 ? -5 : (int64_t)seq;
    return 0;
}

static void test_timestamps(void **state)
{
    (void)state;
    const size_t n = sizeof ts_table / sizeof ts_table[0];
    int64_t before = sl_clock_ms();
    job j;
    job_init(&j, "ts", n, SL_GUARANTEE_EXACTLY_ONCE);
    j.fn = gen_ts;
    assert_int_equal(run_job(&j, NULL, 0), 0);
    int64_t after = sl_clock_ms();
    got g[16];
    size_t cnt = read_topic("ts", 1, 1, g, 16);
    check_once_in_order(g, cnt, n);
    for (size_t i = 0; i < cnt; i++) {
        int64_t want = ts_table[g[i].id];
        if (want == SL_TIME_NONE || want == 0) /* the produce time */
            assert_true(g[i].ts >= before && g[i].ts <= after);
        else
            assert_int_equal(g[i].ts, want);
    }

    char msg[512];
    job_init(&j, "neg", 20, -1);
    j.fn = gen_neg;
    assert_int_not_equal(run_job(&j, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "event time -5"));
    assert_non_null(strstr(msg, "'neg'"));
    assert_null(strchr(msg, '\n'));
}

/* ---- a wrapper around the sink that checks visibility in place ---- */

enum { W_ALO = 1, W_EO = 2, W_SKIP_FINAL = 3, W_FENCE = 4, W_CTP = 5, W_CTP_SKIP_FINAL = 6 };

static struct {
    int mode;
    const char *topic;
    int nparts;
    uint64_t processed;       /* records given to the sink */
    uint64_t at_snapshot[64]; /* processed at snapshot(n), n < 64 */
    uint64_t committed;       /* processed at the last successful commit's snapshot */
    uint64_t commits, snapshots, ends, bad;
    char why[512];
    uint64_t last_commit_id;
    rd_kafka_t *fencer;
    const char *group; /* W_CTP*: the offsets group */
} W;

static void w_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void w_bad(const char *fmt, ...)
{
    if (W.bad++) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(W.why, sizeof W.why, fmt, ap);
    va_end(ap);
}

static size_t visible(int committed)
{
    static got buf[20000];
    return read_topic(W.topic, W.nparts, committed, buf, 20000);
}

static int w_open(sl_ctx *ctx, void **self)
{
    return sl_sink_kafka.open(ctx, self);
}
static void w_close(void *self)
{
    sl_sink_kafka.close(self);
}
static int w_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    int rc = sl_sink_kafka.process(ctx, self, in);
    if (!rc) W.processed += in->count;
    return rc;
}
/* commit() runs on the coordinator while end() runs on the worker: the
 * checks of both hold W_lock, so none reads Kafka while the other commits. */
static pthread_mutex_t W_lock = PTHREAD_MUTEX_INITIALIZER;

static int w_end(sl_ctx *ctx, void *self)
{
    int rc = sl_sink_kafka.end(ctx, self);
    pthread_mutex_lock(&W_lock);
    W.ends++;
    if (!rc && W.mode == W_EO) {
        /* before the final checkpoint: only what was committed */
        size_t v = visible(1);
        if (v != W.committed)
            w_bad("end: %zu visible, %" PRIu64 " committed, %" PRIu64 " processed", v, W.committed,
                  W.processed);
    }
    pthread_mutex_unlock(&W_lock);
    return rc;
}
static int w_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    uint64_t id = sl_ctx_checkpoint_id(ctx);
    if (W.mode == W_CTP || W.mode == W_CTP_SKIP_FINAL) {
        /* as a Kafka source of the pipeline does at the barrier */
        if (!slk_offsets_claimed(sl_ctx_pipeline(ctx), W.group)) w_bad("the group is not claimed");
        slk_offsets_put(sl_ctx_pipeline(ctx), W.group, id, "src", 1, 1000 + (int64_t)id);
    }
    int rc = sl_sink_kafka.snapshot(ctx, self, out);
    W.snapshots++;
    if (id < 64) W.at_snapshot[id] = W.processed;
    if (!rc && W.mode == W_ALO) {
        size_t v = visible(0);
        if (v != W.processed)
            w_bad("snapshot %" PRIu64 ": %zu visible, %" PRIu64 " processed", id, v, W.processed);
    }
    return rc;
}
static int w_restore(sl_ctx *ctx, void *self, const void *d, size_t len)
{
    return sl_sink_kafka.restore(ctx, self, d, len);
}
static int w_commit_locked(sl_ctx *ctx, void *self, uint64_t id);
static int w_commit(sl_ctx *ctx, void *self, uint64_t id)
{
    pthread_mutex_lock(&W_lock);
    int rc = w_commit_locked(ctx, self, id);
    pthread_mutex_unlock(&W_lock);
    return rc;
}
static int w_commit_locked(sl_ctx *ctx, void *self, uint64_t id)
{
    if ((W.mode == W_SKIP_FINAL || W.mode == W_CTP_SKIP_FINAL) && W.ends)
        return 0; /* "crash" after the final manifest */
    if (W.mode == W_FENCE && !W.fencer) {
        char err[256];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", S.bootstrap, err, sizeof err);
        rd_kafka_conf_set(c, "transactional.id", "fence-job-0", err, sizeof err);
        W.fencer = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
        rd_kafka_error_t *e = rd_kafka_init_transactions(W.fencer, 30000);
        if (e) {
            w_bad("fencer: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    }
    int64_t off = -1;
    int have = 0;
    if (W.mode == W_CTP) {
        have = sl_group_fetch(S.rb, "g-ctp", "src", 1, &off) == 0;
        int64_t want = W.last_commit_id ? 1000 + (int64_t)W.last_commit_id : -1;
        if ((have ? off : -1) != want)
            w_bad("before commit %" PRIu64 ": group offset %" PRId64 ", want %" PRId64, id,
                  have ? off : -1, want);
    }
    if (W.mode == W_EO) {
        size_t v = visible(1);
        if (v != W.committed)
            w_bad("before commit %" PRIu64 ": %zu visible, %" PRIu64 " committed", id, v,
                  W.committed);
    }
    int rc = sl_sink_kafka.commit(ctx, self, id);
    if (rc) return rc;
    W.commits++;
    if (id < 64) W.committed = W.at_snapshot[id];
    if (W.mode == W_EO) {
        size_t v = visible(1);
        if (v != W.committed)
            w_bad("after commit %" PRIu64 ": %zu visible, %" PRIu64 " staged up to it", id, v,
                  W.committed);
    }
    if (W.mode == W_CTP) {
        have = sl_group_fetch(S.rb, "g-ctp", "src", 1, &off) == 0;
        if (!have || off != 1000 + (int64_t)id)
            w_bad("after commit %" PRIu64 ": group offset %" PRId64, id, have ? off : -1);
    }
    W.last_commit_id = id;
    return 0;
}

static const sl_operator w_sink = {.version = SL_OPERATOR_VERSION,
                                   .kind = "kafka-checked",
                                   .open = w_open,
                                   .process = w_process,
                                   .end = w_end,
                                   .snapshot = w_snapshot,
                                   .restore = w_restore,
                                   .close = w_close,
                                   .commit = w_commit};

static void w_reset(int mode, const char *topic, int nparts)
{
    if (W.fencer) rd_kafka_destroy(W.fencer);
    memset(&W, 0, sizeof W);
    W.mode = mode;
    W.topic = topic;
    W.nparts = nparts;
}

static void test_at_least_once_flush_at_barrier(void **state)
{
    (void)state;
    const uint64_t n = 4000;
    w_reset(W_ALO, "alo", 2);
    job j;
    job_init(&j, "alo", n, SL_GUARANTEE_AT_LEAST_ONCE);
    j.rate = 20000; /* a few barriers while records flow */
    j.credits = 1;
    j.sink = &w_sink;
    /* records would wait in librdkafka's queue: only the barrier's flush sends them */
    static const char *const props[] = {"linger.ms=60000", NULL};
    j.kc.props = props;
    assert_int_equal(run_job(&j, NULL, 0), 0);
    if (W.bad) fail_msg("%s", W.why);
    assert_true(W.snapshots >= 1); /* the final checkpoint at least */
    got *g = calloc(n + 100, sizeof *g);
    check_once_in_order(g, read_topic("alo", 2, 1, g, n + 100), n);
    free(g);
}

static void eo_visibility(const char *topic, int nparts, int credits)
{
    const uint64_t n = 4000;
    w_reset(W_EO, topic, nparts);
    job j;
    job_init(&j, topic, n, SL_GUARANTEE_EXACTLY_ONCE);
    j.rate = 20000;
    j.credits = credits;
    j.sink = &w_sink;
    j.kc.key = key_of;
    assert_int_equal(run_job(&j, NULL, 0), 0);
    if (W.bad) fail_msg("%s", W.why);
    assert_true(W.commits >= 1);
    assert_int_equal(W.committed, n);
    got *g = calloc(n + 100, sizeof *g);
    size_t cnt = read_topic(topic, nparts, 1, g, n + 100);
    check_once_in_order(g, cnt, n);
    for (size_t i = 0; i < cnt; i++)
        assert_int_equal(g[i].part, sl_partition_for_key(g[i].key, strlen(g[i].key), nparts));
    free(g);
}

static void test_exactly_once_visible_on_commit(void **state)
{
    (void)state;
    eo_visibility("eo", 3, 0);
}

static void test_exactly_once_one_credit(void **state)
{
    (void)state;
    eo_visibility("eo1", 2, 1);
}

static void test_exactly_once_two_instances(void **state)
{
    (void)state;
    round_trip("eo2", 2, SL_GUARANTEE_EXACTLY_ONCE, 2, 0);
}

static void test_crash_before_commit_rolls_forward(void **state)
{
    (void)state;
    const uint64_t n = 3000;
    w_reset(W_SKIP_FINAL, "crash", 2);
    job j;
    job_init(&j, "crash", n, SL_GUARANTEE_EXACTLY_ONCE);
    j.interval_ms = 3600 * 1000; /* the final checkpoint only */
    j.sink = &w_sink;
    j.traced = 1; /* the staged contexts and states go through the snapshot */
    assert_int_equal(run_job(&j, NULL, 0), 0);
    assert_int_equal(W.commits, 0);
    got *g = calloc(n + 100, sizeof *g);
    assert_int_equal(read_topic("crash", 2, 1, g, n + 100), 0); /* not committed */
    assert_int_equal(read_topic("crash", 2, 0, g, n + 100), 0); /* not even produced */

    /* the checkpoint of the first run, to restore from again below */
    char first[640] = "";
    DIR *dd = opendir(j.chk);
    assert_non_null(dd);
    for (struct dirent *e; (e = readdir(dd)) != NULL;)
        if (!strncmp(e->d_name, "chk-", 4)) {
            assert_string_equal(first, ""); /* only the final checkpoint */
            snprintf(first, sizeof first, "%s/%s", j.chk, e->d_name);
        }
    closedir(dd);
    assert_string_not_equal(first, "");

    /* the restart: restore() finds the marker below the checkpoint, and
     * produces the snapshot's records with their trace headers */
    w_reset(0, "crash", 2);
    assert_int_equal(run_job(&j, NULL, 0), 0);
    check_once_in_order(g, read_topic("crash", 2, 1, g, n + 100), n);
    for (uint64_t i = 0; i < n; i++) check_trace_headers(&g[i]);

    /* the same checkpoint again: it is committed, nothing more is written */
    j.from = first;
    assert_int_equal(run_job(&j, NULL, 0), 0);
    check_once_in_order(g, read_topic("crash", 2, 1, g, n + 100), n);
    assert_int_equal(read_topic("crash", 2, 0, g, n + 100), n);
    free(g);
}

/* An older job with the same transactional id left the marker at 100; this
 * job starts afresh (a new checkpoint directory), "crashes" after the
 * manifest of its checkpoint 1; the restart must still roll forward. */
static void test_stale_marker_of_an_older_job(void **state)
{
    (void)state;
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", S.bootstrap, err, sizeof err);
    rd_kafka_conf_set(c, "transactional.id", "reuse-job-0", err, sizeof err);
    rd_kafka_t *old = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    assert_non_null(old);
    assert_null(rd_kafka_init_transactions(old, 30000));
    assert_null(rd_kafka_begin_transaction(old));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "reuse", 0)->offset = 100;
    rd_kafka_consumer_group_metadata_t *g =
        rd_kafka_consumer_group_metadata_new("sluice-commit.reuse-job-0");
    assert_null(rd_kafka_send_offsets_to_transaction(old, l, g, 30000));
    assert_null(rd_kafka_commit_transaction(old, 30000));
    rd_kafka_consumer_group_metadata_destroy(g);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(old);

    const uint64_t n = 1000;
    w_reset(W_SKIP_FINAL, "reuse", 2);
    job j;
    job_init(&j, "reuse", n, SL_GUARANTEE_EXACTLY_ONCE);
    j.interval_ms = 3600 * 1000;
    j.sink = &w_sink;
    j.kc.transactional_id = "reuse-job";
    assert_int_equal(run_job(&j, NULL, 0), 0);
    assert_int_equal(W.commits, 0);
    w_reset(0, "reuse", 2);
    assert_int_equal(run_job(&j, NULL, 0), 0);
    got *gt = calloc(n + 100, sizeof *gt);
    check_once_in_order(gt, read_topic("reuse", 2, 1, gt, n + 100), n);
    free(gt);
}

static void test_fenced_by_newer_producer(void **state)
{
    (void)state;
    w_reset(W_FENCE, "fence", 1);
    job j;
    job_init(&j, "fence", 500, SL_GUARANTEE_EXACTLY_ONCE);
    j.sink = &w_sink;
    j.kc.transactional_id = "fence-job";
    char msg[512];
    assert_int_not_equal(run_job(&j, msg, sizeof msg), 0);
    if (W.bad) fail_msg("%s", W.why);
    assert_non_null(W.fencer);
    if (!strstr(msg, "was fenced by a newer producer with transactional id fence-job-0: "
                     "another run of this job took over"))
        fail_msg("the job failed with another message: %s", msg);
    assert_null(strchr(msg, '\n'));
    w_reset(0, "fence", 1);
    got g[8];
    assert_int_equal(read_topic("fence", 1, 1, g, 8), 0);
}

static void test_ctp_offsets_commit_with_the_transaction(void **state)
{
    (void)state;
    const uint64_t n = 3000;
    w_reset(W_CTP, "ctp", 1);
    W.group = "g-ctp";
    job j;
    job_init(&j, "ctp", n, SL_GUARANTEE_EXACTLY_ONCE);
    j.rate = 20000;
    j.sink = &w_sink;
    j.kc.offsets_group = "g-ctp";
    int64_t off;
    assert_int_equal(sl_group_fetch(S.rb, "g-ctp", "src", 1, &off), SL_ENOENT);
    assert_int_equal(run_job(&j, NULL, 0), 0);
    if (W.bad) fail_msg("%s", W.why);
    assert_true(W.commits >= 1);
    assert_int_equal(sl_group_fetch(S.rb, "g-ctp", "src", 1, &off), 0);
    assert_int_equal(off, 1000 + (int64_t)W.last_commit_id);
    /* the claim ends with the sink */
    got *g = calloc(n + 100, sizeof *g);
    check_once_in_order(g, read_topic("ctp", 1, 1, g, n + 100), n);
    free(g);
}

/* The offsets of a checkpoint whose commit did not happen are committed by
 * the restart's roll forward, with its records. */
static void test_ctp_offsets_roll_forward(void **state)
{
    (void)state;
    const uint64_t n = 2000;
    w_reset(W_CTP_SKIP_FINAL, "ctp2", 1);
    W.group = "g-ctp2";
    job j;
    job_init(&j, "ctp2", n, SL_GUARANTEE_EXACTLY_ONCE);
    j.interval_ms = 3600 * 1000; /* the final checkpoint only */
    j.sink = &w_sink;
    j.kc.offsets_group = "g-ctp2";
    assert_int_equal(run_job(&j, NULL, 0), 0);
    if (W.bad) fail_msg("%s", W.why);
    assert_int_equal(W.commits, 0);
    assert_true(W.snapshots >= 1);
    int64_t off = -1;
    assert_int_equal(sl_group_fetch(S.rb, "g-ctp2", "src", 1, &off), SL_ENOENT);
    got *g = calloc(n + 100, sizeof *g);
    assert_int_equal(read_topic("ctp2", 1, 1, g, n + 100), 0);

    w_reset(0, "ctp2", 1);
    assert_int_equal(run_job(&j, NULL, 0), 0);
    assert_int_equal(sl_group_fetch(S.rb, "g-ctp2", "src", 1, &off), 0);
    assert_true(off > 1000); /* 1000 + the id of the first run's final checkpoint */
    check_once_in_order(g, read_topic("ctp2", 1, 1, g, n + 100), n);
    free(g);
}

/* The server drops connections at random after answering (the answers are
 * lost; librdkafka retries, transactional calls fail retriably or must be
 * aborted and run again): still every record exactly once. */
static void test_exactly_once_under_dropped_connections(void **state)
{
    (void)state;
    const uint64_t n = 4000;
    job j;
    job_init(&j, "drops", n, SL_GUARANTEE_EXACTLY_ONCE);
    j.rate = 20000;
    j.kc.key = key_of;
    /* the hook's two ints are read by the server's thread: a benign race
     * in a test (this test is not built under TSan) */
    slb_server_set_fault_drop(S.srv, 30, 7);
    char msg[512];
    int rc = run_job(&j, msg, sizeof msg);
    slb_server_set_fault_drop(S.srv, 0, 0);
    if (rc) fail_msg("%s", msg);
    got *g = calloc(n + 100, sizeof *g);
    check_once_in_order(g, read_topic("drops", 3, 1, g, n + 100), n);
    free(g);
}

/* ---- refusals ---- */

/* msg contains needle; prints msg when not, so a failure shows the message */
static void assert_msg_has(const char *msg, const char *needle)
{
    if (!strstr(msg, needle)) fprintf(stderr, "message: %s\nexpected in it: %s\n", msg, needle);
    assert_non_null(strstr(msg, needle));
}

static void test_refusals(void **state)
{
    (void)state;
    char msg[512];
    job j;
    /* a missing topic */
    job_init(&j, "no-such-topic", 10, -1);
    assert_int_not_equal(run_job(&j, msg, sizeof msg), 0);
    assert_msg_has(msg, "no-such-topic");
    assert_msg_has(msg, "must exist");
    assert_null(strchr(msg, '\n'));

    /* larger than message.max.bytes: refused by librdkafka */
    static const char *const props[] = {"message.max.bytes=2000", NULL};
    job_init(&j, "big", 10, -1);
    j.kc.format = big_fmt;
    j.kc.props = props;
    assert_int_not_equal(run_job(&j, msg, sizeof msg), 0);
    assert_msg_has(msg, "'big'");
    assert_msg_has(msg, "4008 bytes was refused");
    assert_null(strchr(msg, '\n'));
    job_init(&j, "bigeo", 10, SL_GUARANTEE_EXACTLY_ONCE);
    j.kc.format = big_fmt;
    j.kc.props = props;
    assert_int_not_equal(run_job(&j, msg, sizeof msg), 0);
    assert_msg_has(msg, "'bigeo'");
    assert_msg_has(msg, "4008 bytes was refused");
    got g[8];
    assert_int_equal(read_topic("bigeo", 1, 0, g, 8), 0);

    /* larger than the topic allows: the broker refuses the delivery */
    job_init(&j, "small", 10, SL_GUARANTEE_AT_LEAST_ONCE);
    j.kc.format = big_fmt;
    assert_int_not_equal(run_job(&j, msg, sizeof msg), 0);
    assert_msg_has(msg, "topic 'small' partition 0");
    assert_null(strchr(msg, '\n'));
    assert_int_equal(read_topic("small", 1, 0, g, 8), 0);

    /* the same in a transaction: the commit aborts and fails (a refusal is
     * not run again) */
    job_init(&j, "smalleo", 10, SL_GUARANTEE_EXACTLY_ONCE);
    j.kc.format = big_fmt;
    assert_int_not_equal(run_job(&j, msg, sizeof msg), 0);
    assert_msg_has(msg, "topic 'smalleo'");
    assert_msg_has(msg, "Message size too large");
    assert_msg_has(msg, "checkpoint");
    assert_null(strchr(msg, '\n'));
    assert_int_equal(read_topic("smalleo", 1, 1, g, 8), 0);

    /* a bad property */
    static const char *const bad[] = {"no.such.property=1", NULL};
    job_init(&j, "rt", 10, -1);
    j.kc.props = bad;
    assert_int_not_equal(run_job(&j, msg, sizeof msg), 0);
    assert_msg_has(msg, "no.such.property");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_at_least_once),
        cmocka_unit_test(test_round_trip_one_credit_none),
        cmocka_unit_test(test_round_trip_two_instances),
        cmocka_unit_test(test_keyed_placement),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_at_least_once_flush_at_barrier),
        cmocka_unit_test(test_exactly_once_visible_on_commit),
        cmocka_unit_test(test_exactly_once_one_credit),
        cmocka_unit_test(test_exactly_once_two_instances),
        cmocka_unit_test(test_crash_before_commit_rolls_forward),
        cmocka_unit_test(test_stale_marker_of_an_older_job),
        cmocka_unit_test(test_fenced_by_newer_producer),
        cmocka_unit_test(test_ctp_offsets_commit_with_the_transaction),
        cmocka_unit_test(test_ctp_offsets_roll_forward),
        cmocka_unit_test(test_exactly_once_under_dropped_connections),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
