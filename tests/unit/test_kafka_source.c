/*
 * tests/unit/test_kafka_source.c - the Kafka source (connectors/kafka/
 * source.c) against sluice's own Kafka-protocol server, run in-process on a
 * thread over a temporary broker directory, and librdkafka's mock cluster:
 *
 *   - round trip: every record once, in order per partition, keys (none,
 *     empty, present) and timestamps kept, at parallelism 1 and 2; a parse
 *     callback's refusals go to the dead letters;
 *   - timestamps 0, 1, 2^40 and INT64_MAX (appended to the directory) read
 *     back as event times; the mock's -1 ("none") is SL_TIME_NONE;
 *   - until_end with transactions (librdkafka's transactional producer): a
 *     committed, an aborted, a committed and a still open transaction:
 *     read_committed ends at the last stable offset (no hang on the open
 *     one, the aborted one skipped), read_uncommitted sees all; a topic
 *     that ends in an aborted transaction's marker ends exactly there;
 *   - checkpoints: a run with a group and checkpoints, then the group's
 *     committed offsets seen from another handle, then a second run from
 *     the checkpoint that reads only what was added; a third, without a
 *     checkpoint, from the group's committed offsets, the same; a group
 *     that a Kafka sink claimed gets no commits, and the offsets registry
 *     gets the positions at the barriers;
 *   - 12 partitions at parallelism 2 with one credit; two consumer handles
 *     for them, not 12;
 *   - one-line errors: bootstrap unreachable, topic missing, no such
 *     partition, offset out of range, topic deleted under a following job,
 *     every broker gone longer than down_ms; a server restart within
 *     down_ms loses and repeats nothing and the job keeps running.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include "connectors/kafka/kafka_int.h"
#include "sluice/broker.h"
#include "sluice/kafka.h"
#include "sluice/server.h"
#include "sluice/sluice.h"
#include "tests/unit/kafka_test.h"

static char dir[] = "/tmp/sluice_test_kafka_source_XXXXXX";
static char chkdir[256], chkdir2[256];
static sl_broker *rb, *sb; /* the test's handle; the server's */
static sl_server *srv;
static pthread_t thr;
static char bootstrap[64];

static void *run_main(void *arg)
{
    (void)arg;
    sl_server_run(srv);
    return NULL;
}

/* ---- librdkafka producers (tests/unit/kafka_test.h) ---- */

/* key: NULL = none; klen 0 with a key = empty key. ts 0: the producer's now. */
static void produce(rd_kafka_t *rk, const char *topic, int32_t part, const char *key, size_t klen,
                    const char *value, int64_t ts)
{
    kt_produce(rk, topic, part, key, klen, value, strlen(value), ts);
}

static void create_topic(const char *name, int partitions)
{
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = partitions;
    assert_int_equal(sl_topic_create(rb, name, &c), 0);
}

/* ---- running the source ---- */

typedef struct run {
    const char *topic;
    const char *group;
    int64_t start;
    int until_end;
    int isolation;
    int par, credits;
    const char *chk; /* checkpoint directory, or NULL */
    const char *boot;
    sl_line_parse_fn parse;
    uint32_t max_len;
    int claim; /* as a Kafka sink with offsets_group = group would */
    /* out */
    rd_kafka_topic_partition_list_t *taken; /* claim: the offsets registry's, at the end */
    sl_collector *c, *dead;
    char err[512];
    int64_t pos[16]; /* positions after the run */
    int splits;
    uint64_t restored_from;
} run;

static int run_job(run *r)
{
    r->c = sl_collector_new();
    r->dead = sl_collector_new();
    sl_kafka_source_conf kc = {.bootstrap = r->boot ? r->boot : bootstrap,
                               .topic = r->topic,
                               .group_id = r->group,
                               .start = r->start,
                               .until_end = r->until_end,
                               .isolation = r->isolation,
                               .parse = r->parse,
                               .max_len = r->max_len};
    const char *props[] = {"topic.metadata.refresh.interval.ms=1000", NULL};
    kc.props = props;
    sl_watermark_conf wm = {.delay = 10};
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    if (r->credits) sl_pipeline_set_credits(p, r->credits);
    sl_stream *s = sl_pipeline_kafka(p, "in", &kc, 0, &wm);
    sl_stream *d = sl_stream_dead_letters(s);
    s = sl_stream_parallelism(s, r->par ? r->par : 1);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, r->c), 0);
    assert_int_equal(sl_stream_sink(d, "dead", &sl_sink_collect, r->dead), 0);
    if (r->chk) {
        sl_checkpoint_conf cc = {.dir = r->chk, .interval_ms = 5};
        assert_int_equal(sl_pipeline_set_checkpoint(p, &cc), 0);
    }
    if (r->claim) slk_offsets_claim(p, r->group, 1);
    int rc = sl_pipeline_run(p);
    snprintf(r->err, sizeof r->err, "%s", rc ? sl_pipeline_errmsg(p) : "");
    if (r->claim) {
        int oom;
        r->taken = slk_offsets_take(p, r->group, UINT64_MAX, &oom);
        slk_offsets_claim(p, r->group, 0);
    }
    if (!rc) {
        r->splits = sl_pipeline_source_splits(p, "in");
        for (int i = 0; i < r->splits && i < 16; i++) {
            sl_buf b = {0};
            r->pos[i] = -1;
            if (sl_pipeline_source_position(p, "in", i, &b) == 0 && b.len == 8)
                memcpy(&r->pos[i], b.ptr, 8);
            sl_buf_free(&b);
        }
        sl_checkpoint_stats st;
        sl_pipeline_checkpoint_stats(p, &st);
        r->restored_from = st.restored_from;
    }
    sl_pipeline_free(p);
    return rc;
}

static void run_free(run *r)
{
    sl_collector_free(r->c);
    sl_collector_free(r->dead);
    if (r->taken) rd_kafka_topic_partition_list_destroy(r->taken);
}

/* The number in a value "<prefix><n>". */
static int value_num(sl_bytes rec, const char *prefix)
{
    sl_bytes v = sl_broker_rec_value(rec);
    size_t pl = strlen(prefix);
    if (v.len <= pl || memcmp(v.ptr, prefix, pl) != 0) return -1;
    char buf[32];
    snprintf(buf, sizeof buf, "%.*s", (int)(v.len - pl), (const char *)v.ptr + pl);
    return atoi(buf);
}

/* ---- round trip ---- */

#define NRT 3000

static int reject_bad(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                      const char **reason, void *ud)
{
    (void)ts, (void)ud;
    if (len >= 3 && memcmp(line, "bad", 3) == 0) {
        *reason = "starts with bad";
        return -1;
    }
    if (len > max_len) len = max_len;
    memcpy(out, line, len);
    return (int)len;
}

static void test_roundtrip(void **state)
{
    (void)state;
    create_topic("rt", 3);
    rd_kafka_t *pr = kt_producer(bootstrap, NULL);
    char v[32], k[32];
    for (int i = 0; i < NRT; i++) {
        snprintf(v, sizeof v, "v%d", i);
        snprintf(k, sizeof k, "k%d", i);
        /* i % 5: 0 no key, 1 empty key, others a key */
        produce(pr, "rt", i % 3, i % 5 == 0 ? NULL : k, i % 5 == 1 ? 0 : strlen(k), v, 1000 + i);
    }
    assert_int_equal(rd_kafka_flush(pr, 30000), 0);
    rd_kafka_destroy(pr);
    for (int par = 1; par <= 2; par++) {
        run r = {.topic = "rt", .start = SL_OFFSET_BEGINNING, .until_end = 1, .par = par};
        int rc = run_job(&r);
        if (rc) fail_msg("%s", r.err);
        assert_int_equal(sl_collector_count(r.c), NRT);
        char *seen = calloc(NRT, 1);
        int last[3] = {-1, -1, -1};
        for (size_t i = 0; i < sl_collector_count(r.c); i++) {
            int64_t ts;
            sl_bytes rec = sl_collector_get(r.c, i, &ts), key;
            int n = value_num(rec, "v");
            assert_true(n >= 0 && n < NRT);
            assert_int_equal(seen[n], 0);
            seen[n] = 1;
            assert_true(n > last[n % 3]); /* per-partition order */
            last[n % 3] = n;
            assert_int_equal(ts, 1000 + n);
            int has = sl_broker_rec_key(rec, &key);
            if (n % 5 == 0) {
                assert_false(has);
            } else if (n % 5 == 1) {
                assert_true(has);
                assert_int_equal(key.len, 0);
            } else {
                snprintf(k, sizeof k, "k%d", n);
                assert_true(has);
                assert_int_equal(key.len, strlen(k));
                assert_memory_equal(key.ptr, k, key.len);
            }
        }
        free(seen);
        assert_int_equal(r.splits, 3);
        for (int p = 0; p < 3; p++) assert_int_equal(r.pos[p], NRT / 3);
        run_free(&r);
    }
}

static void test_parse_dead_letters(void **state)
{
    (void)state;
    create_topic("dl", 1);
    rd_kafka_t *pr = kt_producer(bootstrap, NULL);
    produce(pr, "dl", 0, NULL, 0, "good1", 5);
    produce(pr, "dl", 0, NULL, 0, "bad2", 6);
    produce(pr, "dl", 0, NULL, 0, "good3", 7);
    assert_int_equal(rd_kafka_flush(pr, 30000), 0);
    rd_kafka_destroy(pr);
    run r = {.topic = "dl",
             .start = SL_OFFSET_BEGINNING,
             .until_end = 1,
             .parse = reject_bad,
             .max_len = 64};
    int rc = run_job(&r);
    if (rc) fail_msg("%s", r.err);
    assert_int_equal(sl_collector_count(r.c), 2);
    int64_t ts;
    sl_bytes a = sl_collector_get(r.c, 0, &ts);
    assert_int_equal(ts, 5);
    assert_int_equal(a.len, 5);
    assert_memory_equal(a.ptr, "good1", 5);
    assert_int_equal(sl_collector_count(r.dead), 1);
    sl_dead_letter dl;
    assert_int_equal(sl_dead_letter_read(sl_collector_get(r.dead, 0, &ts), &dl), 0);
    assert_int_equal(ts, 6);
    char reason[128];
    snprintf(reason, sizeof reason, "%.*s", (int)dl.reason.len, (const char *)dl.reason.ptr);
    assert_string_equal(reason, "partition 0 offset 1: starts with bad");
    assert_int_equal(dl.raw.len, 4);
    assert_memory_equal(dl.raw.ptr, "bad2", 4);
    run_free(&r);
}

/* ---- timestamps ---- */

static const int64_t tss[] = {0, 1, (int64_t)1 << 40, INT64_MAX};
#define NTS ((int)(sizeof tss / sizeof tss[0]))

static void test_timestamps(void **state)
{
    (void)state;
    /* "ts" was written before the server started (setup). */
    run r = {.topic = "ts", .start = SL_OFFSET_BEGINNING, .until_end = 1};
    int rc = run_job(&r);
    if (rc) fail_msg("%s", r.err);
    assert_int_equal(sl_collector_count(r.c), NTS);
    for (int i = 0; i < NTS; i++) {
        int64_t ts;
        sl_bytes rec = sl_collector_get(r.c, (size_t)i, &ts);
        assert_int_equal(value_num(rec, "t"), i);
        assert_int_equal(ts, tss[i]);
    }
    run_free(&r);
}

/* ---- transactions and until_end ---- */

static void txn(rd_kafka_t *pr, const char *topic, int parts, const char *prefix, int *seq, int n,
                int commit)
{
    kt_ok(rd_kafka_begin_transaction(pr), "begin");
    char v[32];
    for (int i = 0; i < n; i++, (*seq)++) {
        snprintf(v, sizeof v, "%s%d", prefix, *seq);
        produce(pr, topic, *seq % parts, NULL, 0, v, 0);
    }
    /* flushed first: an abort purges what was not sent yet */
    assert_int_equal(rd_kafka_flush(pr, 30000), 0);
    if (commit == 1) kt_ok(rd_kafka_commit_transaction(pr, 30000), "commit");
    if (commit == 0) kt_ok(rd_kafka_abort_transaction(pr, 30000), "abort");
    /* commit == 2: left open */
}

static int count_prefix(sl_collector *c, const char *prefix)
{
    int k = 0;
    for (size_t i = 0; i < sl_collector_count(c); i++)
        k += value_num(sl_collector_get(c, i, NULL), prefix) >= 0;
    return k;
}

static void test_until_end_transactions(void **state)
{
    (void)state;
    create_topic("tx", 2);
    create_topic("txa", 2);
    rd_kafka_t *pr = kt_producer(bootstrap, "ksrc-test-tx");
    kt_ok(rd_kafka_init_transactions(pr, 30000), "init");
    int seq = 0;
    txn(pr, "tx", 2, "c", &seq, 10, 1);
    txn(pr, "tx", 2, "a", &seq, 6, 0);
    txn(pr, "tx", 2, "c", &seq, 4, 1);
    /* "txa" ends with an aborted transaction's records and marker. */
    int seq2 = 0;
    txn(pr, "txa", 2, "c", &seq2, 6, 1);
    txn(pr, "txa", 2, "a", &seq2, 6, 0);
    txn(pr, "tx", 2, "o", &seq, 8, 2); /* open while the jobs run */

    run r = {.topic = "tx", .start = SL_OFFSET_BEGINNING, .until_end = 1, .par = 2};
    int rc = run_job(&r);
    if (rc) fail_msg("%s", r.err);
    assert_int_equal(count_prefix(r.c, "c"), 14);
    assert_int_equal(sl_collector_count(r.c), 14);
    /* ended at the last stable offset: the first offset of the open
     * transaction, right after the second commit's marker */
    for (int p = 0; p < 2; p++) assert_int_equal(r.pos[p], 5 + 1 + 3 + 1 + 2 + 1);
    run_free(&r);

    run u = {.topic = "tx",
             .start = SL_OFFSET_BEGINNING,
             .until_end = 1,
             .isolation = SL_READ_UNCOMMITTED};
    rc = run_job(&u);
    if (rc) fail_msg("%s", u.err);
    assert_int_equal(count_prefix(u.c, "c"), 14);
    assert_int_equal(count_prefix(u.c, "a"), 6);
    assert_int_equal(count_prefix(u.c, "o"), 8);
    run_free(&u);
    kt_ok(rd_kafka_abort_transaction(pr, 30000), "abort the open one");

    run a = {.topic = "txa", .start = SL_OFFSET_BEGINNING, .until_end = 1};
    rc = run_job(&a);
    if (rc) fail_msg("%s", a.err);
    assert_int_equal(sl_collector_count(a.c), 6);
    assert_int_equal(count_prefix(a.c, "c"), 6);
    for (int p = 0; p < 2; p++) assert_int_equal(a.pos[p], 3 + 1 + 3 + 1);
    run_free(&a);
    rd_kafka_destroy(pr);
}

/* ---- checkpoints and the group ---- */

static void produce_range(const char *topic, int parts, int from, int to)
{
    rd_kafka_t *pr = kt_producer(bootstrap, NULL);
    char v[32];
    for (int i = from; i < to; i++) {
        snprintf(v, sizeof v, "v%d", i);
        produce(pr, topic, i % parts, NULL, 0, v, 1000 + i);
    }
    assert_int_equal(rd_kafka_flush(pr, 30000), 0);
    rd_kafka_destroy(pr);
}

/* Every value v<from> .. v<to - 1> exactly once, nothing else. */
static void expect_range(sl_collector *c, int from, int to)
{
    assert_int_equal(sl_collector_count(c), (size_t)(to - from));
    char *seen = calloc((size_t)(to - from), 1);
    for (size_t i = 0; i < sl_collector_count(c); i++) {
        int n = value_num(sl_collector_get(c, i, NULL), "v");
        assert_true(n >= from && n < to);
        assert_int_equal(seen[n - from], 0);
        seen[n - from] = 1;
    }
    free(seen);
}

static void committed(const char *group, const char *topic, int parts, int64_t *out)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kt_set(conf, "bootstrap.servers", bootstrap);
    kt_set(conf, "group.id", group);
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++) rd_kafka_topic_partition_list_add(l, topic, p);
    assert_int_equal(rd_kafka_committed(rk, l, 10000), 0);
    for (int p = 0; p < parts; p++) out[p] = l->elems[p].offset;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
}

static void test_checkpoint_resume_and_group(void **state)
{
    (void)state;
    create_topic("ck", 4);
    produce_range("ck", 4, 0, 2000);
    run r1 = {.topic = "ck",
              .group = "g-ck",
              .start = SL_OFFSET_BEGINNING,
              .until_end = 1,
              .par = 2,
              .credits = 1,
              .chk = chkdir};
    int rc = run_job(&r1);
    if (rc) fail_msg("%s", r1.err);
    expect_range(r1.c, 0, 2000);
    run_free(&r1);
    int64_t off[4];
    committed("g-ck", "ck", 4, off);
    for (int p = 0; p < 4; p++) assert_int_equal(off[p], 500);

    produce_range("ck", 4, 2000, 3000);
    /* from the checkpoint: only what was added (start says the beginning) */
    run r2 = {.topic = "ck",
              .group = "g-ck",
              .start = SL_OFFSET_BEGINNING,
              .until_end = 1,
              .par = 1,
              .chk = chkdir};
    rc = run_job(&r2);
    if (rc) fail_msg("%s", r2.err);
    assert_true(r2.restored_from > 0);
    expect_range(r2.c, 2000, 3000);
    for (int p = 0; p < 4; p++) assert_int_equal(r2.pos[p], 750);
    run_free(&r2);
    committed("g-ck", "ck", 4, off);
    for (int p = 0; p < 4; p++) assert_int_equal(off[p], 750);

    /* without a checkpoint, from the group's committed offsets */
    produce_range("ck", 4, 3000, 3400);
    run r3 = {.topic = "ck", .group = "g-ck", .start = SL_KAFKA_OFFSET_COMMITTED, .until_end = 1};
    rc = run_job(&r3);
    if (rc) fail_msg("%s", r3.err);
    expect_range(r3.c, 3000, 3400);
    run_free(&r3);
    /* a group a Kafka sink claimed: the source leaves committing to it, and
     * puts its positions at each barrier in the offsets registry */
    run r5 = {.topic = "ck",
              .group = "g-claimed",
              .start = SL_OFFSET_BEGINNING,
              .until_end = 1,
              .chk = chkdir2,
              .claim = 1};
    rc = run_job(&r5);
    if (rc) fail_msg("%s", r5.err);
    expect_range(r5.c, 0, 3400);
    committed("g-claimed", "ck", 4, off);
    for (int p = 0; p < 4; p++) assert_int_equal(off[p], RD_KAFKA_OFFSET_INVALID);
    assert_non_null(r5.taken);
    assert_int_equal(r5.taken->cnt, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(r5.taken->elems[i].topic, "ck");
        assert_int_equal(r5.taken->elems[i].offset, 850);
    }
    run_free(&r5);
    /* a group with no offsets starts at the beginning */
    run r4 = {.topic = "ck", .group = "g-new", .start = SL_KAFKA_OFFSET_COMMITTED, .until_end = 1};
    rc = run_job(&r4);
    if (rc) fail_msg("%s", r4.err);
    expect_range(r4.c, 0, 3400);
    run_free(&r4);
}

/* ---- many partitions, little credit ---- */

static void test_many_partitions(void **state)
{
    (void)state;
    create_topic("many", 12);
    produce_range("many", 12, 0, 2400);
    run r = {.topic = "many", .start = SL_OFFSET_BEGINNING, .until_end = 1, .par = 2, .credits = 1};
    int rc = run_job(&r);
    if (rc) fail_msg("%s", r.err);
    expect_range(r.c, 0, 2400);
    assert_int_equal(r.splits, 12);
    int last[12];
    for (int p = 0; p < 12; p++) last[p] = -1;
    for (size_t i = 0; i < sl_collector_count(r.c); i++) {
        int n = value_num(sl_collector_get(r.c, i, NULL), "v");
        assert_true(n > last[n % 12]);
        last[n % 12] = n;
    }
    for (int p = 0; p < 12; p++) assert_int_equal(r.pos[p], 200);
    run_free(&r);
}

/* ---- errors ---- */

static void one_line_with(const char *msg, const char *a, const char *b)
{
    print_message("error: %s\n", msg);
    assert_null(strchr(msg, '\n'));
    assert_non_null(strstr(msg, a));
    if (b) assert_non_null(strstr(msg, b));
}

static void test_errors(void **state)
{
    (void)state;
    run r = {.topic = "rt", .until_end = 1, .boot = "127.0.0.1:1"};
    assert_int_not_equal(run_job(&r), 0);
    one_line_with(r.err, "127.0.0.1:1", "'rt'");
    run_free(&r);

    run m = {.topic = "no-such-topic", .until_end = 1};
    assert_int_not_equal(run_job(&m), 0);
    one_line_with(m.err, "no-such-topic", bootstrap);
    assert_non_null(strstr(m.err, "does not exist"));
    run_free(&m);

    /* a partition the topic does not have */
    sl_collector *c = sl_collector_new();
    int32_t parts[] = {1, 7};
    sl_kafka_source_conf kc = {.bootstrap = bootstrap,
                               .topic = "rt",
                               .until_end = 1,
                               .partitions = parts,
                               .n_partitions = 2};
    sl_pipeline *p = sl_pipeline_new();
    assert_int_equal(
        sl_stream_sink(sl_pipeline_kafka(p, "in", &kc, 0, NULL), "out", &sl_sink_collect, c), 0);
    assert_int_not_equal(sl_pipeline_run(p), 0);
    one_line_with(sl_pipeline_errmsg(p), "partition 7", "'rt'");
    sl_pipeline_free(p);
    sl_collector_free(c);

    /* the listed partitions only */
    c = sl_collector_new();
    parts[1] = 2;
    p = sl_pipeline_new();
    assert_int_equal(
        sl_stream_sink(sl_pipeline_kafka(p, "in", &kc, 0, NULL), "out", &sl_sink_collect, c), 0);
    assert_int_equal(sl_pipeline_run(p), 0);
    assert_int_equal(sl_collector_count(c), 2 * NRT / 3);
    for (size_t i = 0; i < sl_collector_count(c); i++)
        assert_int_not_equal(value_num(sl_collector_get(c, i, NULL), "v") % 3, 0);
    sl_pipeline_free(p);
    sl_collector_free(c);
}

/* ---- broker trouble ---- */

static void start_server(const char *listen)
{
    assert_int_equal(sl_server_open(&srv, sb, listen), 0);
    snprintf(bootstrap, sizeof bootstrap, "127.0.0.1:%d", sl_server_port(srv));
    assert_int_equal(pthread_create(&thr, NULL, run_main, NULL), 0);
}

static void stop_server(void)
{
    sl_server_stop(srv);
    pthread_join(thr, NULL);
    sl_server_close(srv);
    srv = NULL;
}

/* Wait (a hang guard, not a timing assertion) until c holds n records. */
static void wait_count(sl_collector *c, size_t n, sl_pipeline *p)
{
    for (int i = 0; i < 60000 && sl_collector_count(c) < n; i++) {
        if (sl_pipeline_wait(p, 0) != SL_EAGAIN)
            fail_msg("the job ended: %s", sl_pipeline_errmsg(p));
        usleep(1000);
    }
    assert_int_equal(sl_collector_count(c), n);
}

/* 12 partitions at parallelism 2 make 2 consumer handles, not 12. */
static void test_many_partitions_two_handles(void **state)
{
    (void)state;
    sl_collector *c = sl_collector_new();
    sl_kafka_source_conf kc = {
        .bootstrap = bootstrap, .topic = "many", .start = SL_OFFSET_BEGINNING};
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_credits(p, 1);
    sl_stream *s = sl_stream_parallelism(sl_pipeline_kafka(p, "in", &kc, 0, NULL), 2);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
    assert_int_equal(sl_pipeline_start(p), 0);
    wait_count(c, 2400, p);
    assert_int_equal(slk_source_handles(), 2);
    sl_pipeline_cancel(p);
    int rc = sl_pipeline_wait(p, -1);
    if (rc) fail_msg("%s", sl_pipeline_errmsg(p));
    expect_range(c, 0, 2400);
    assert_int_equal(slk_source_handles(), 0);
    sl_pipeline_free(p);
    sl_collector_free(c);
}

/* A following job survives a restart of the server (shorter than down_ms):
 * nothing lost or twice, and it keeps running past down_ms. */
static void test_broker_restart(void **state)
{
    (void)state;
    create_topic("rs", 2);
    produce_range("rs", 2, 0, 200);
    sl_collector *c = sl_collector_new();
    const char *props[] = {"reconnect.backoff.ms=10", "reconnect.backoff.max.ms=200", NULL};
    sl_kafka_source_conf kc = {.bootstrap = bootstrap,
                               .topic = "rs",
                               .start = SL_OFFSET_BEGINNING,
                               .props = props,
                               .down_ms = 3000};
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_stream *s = sl_stream_parallelism(sl_pipeline_kafka(p, "in", &kc, 0, NULL), 2);
    assert_int_equal(sl_stream_sink(s, "out", &sl_sink_collect, c), 0);
    assert_int_equal(sl_pipeline_start(p), 0);
    wait_count(c, 200, p);
    char listen[64];
    snprintf(listen, sizeof listen, "%s", bootstrap);
    stop_server();
    usleep(300 * 1000); /* the consumer sees its connection go */
    start_server(listen);
    produce_range("rs", 2, 200, 400);
    wait_count(c, 400, p);
    /* the outage ended when the broker came back: past down_ms, still running */
    usleep(4000 * 1000);
    if (sl_pipeline_wait(p, 0) != SL_EAGAIN) fail_msg("the job ended: %s", sl_pipeline_errmsg(p));
    sl_pipeline_cancel(p);
    int rc = sl_pipeline_wait(p, -1);
    if (rc) fail_msg("%s", sl_pipeline_errmsg(p));
    expect_range(c, 0, 400);
    sl_pipeline_free(p);
    sl_collector_free(c);
}

/* A topic deleted under a following job fails it, naming the topic. */
static void test_topic_deleted(void **state)
{
    (void)state;
    create_topic("del", 1);
    produce_range("del", 1, 0, 50);
    sl_collector *c = sl_collector_new();
    const char *props[] = {"topic.metadata.refresh.interval.ms=200", NULL};
    sl_kafka_source_conf kc = {
        .bootstrap = bootstrap, .topic = "del", .start = SL_OFFSET_BEGINNING, .props = props};
    sl_pipeline *p = sl_pipeline_new();
    assert_int_equal(
        sl_stream_sink(sl_pipeline_kafka(p, "in", &kc, 0, NULL), "out", &sl_sink_collect, c), 0);
    assert_int_equal(sl_pipeline_start(p), 0);
    wait_count(c, 50, p);
    char cmd[256]; /* through the server (DeleteTopics), which holds the partition */
    snprintf(cmd, sizeof cmd, "%s topic delete del -b %s >/dev/null", SLUICE_BIN, bootstrap);
    assert_int_equal(system(cmd), 0);
    int rc = sl_pipeline_wait(p, 60000);
    if (rc == SL_EAGAIN) {
        sl_pipeline_cancel(p);
        sl_pipeline_wait(p, -1);
        fail_msg("the job did not notice the topic's deletion");
    }
    assert_int_not_equal(rc, 0);
    one_line_with(sl_pipeline_errmsg(p), "'del'", "partition 0");
    sl_pipeline_free(p);
    sl_collector_free(c);
}

/* An offset the partition does not have fails the job, naming it. */
static void test_offset_out_of_range(void **state)
{
    (void)state;
    run r = {.topic = "rt", .start = 99999};
    assert_int_not_equal(run_job(&r), 0);
    one_line_with(r.err, "'rt' partition", "ut of range");
    run_free(&r);
}

/* Every broker gone for longer than down_ms fails a following job, naming
 * topic and bootstrap; the server then comes back for the other tests. */
static void test_broker_down_long(void **state)
{
    (void)state;
    sl_collector *c = sl_collector_new();
    sl_kafka_source_conf kc = {
        .bootstrap = bootstrap, .topic = "rt", .start = SL_OFFSET_BEGINNING, .down_ms = 1500};
    sl_pipeline *p = sl_pipeline_new();
    assert_int_equal(
        sl_stream_sink(sl_pipeline_kafka(p, "in", &kc, 0, NULL), "out", &sl_sink_collect, c), 0);
    assert_int_equal(sl_pipeline_start(p), 0);
    wait_count(c, NRT, p);
    char listen[64];
    snprintf(listen, sizeof listen, "%s", bootstrap);
    stop_server();
    int rc = sl_pipeline_wait(p, 60000);
    start_server(listen);
    if (rc == SL_EAGAIN) {
        sl_pipeline_cancel(p);
        sl_pipeline_wait(p, -1);
        fail_msg("the job did not give up on the brokers");
    }
    assert_int_not_equal(rc, 0);
    one_line_with(sl_pipeline_errmsg(p), "'rt'", listen);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "reachable"));
    sl_pipeline_free(p);
    sl_collector_free(c);
}

/* ---- the mock cluster ---- */

static void test_mock_cluster(void **state)
{
    (void)state;
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(mock_rk);
    rd_kafka_mock_cluster_t *mock = rd_kafka_mock_cluster_new(mock_rk, 1);
    assert_non_null(mock);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mock);
    assert_int_equal(rd_kafka_mock_topic_create(mock, "m", 2, 1), 0);
    rd_kafka_t *pr = kt_producer(boot, NULL);
    char v[32];
    for (int i = 0; i < 400; i++) {
        snprintf(v, sizeof v, "v%d", i);
        /* -1: no timestamp */
        produce(pr, "m", i % 2, i % 2 ? "k" : NULL, 1, v, i < 2 ? -1 : 1000 + i);
    }
    assert_int_equal(rd_kafka_flush(pr, 30000), 0);
    rd_kafka_destroy(pr);
    run r = {.topic = "m",
             .start = SL_OFFSET_BEGINNING,
             .until_end = 1,
             .par = 2,
             .isolation = SL_READ_UNCOMMITTED,
             .boot = boot};
    int rc = run_job(&r);
    if (rc) fail_msg("%s", r.err);
    expect_range(r.c, 0, 400);
    for (size_t i = 0; i < sl_collector_count(r.c); i++) {
        int64_t ts;
        sl_bytes rec = sl_collector_get(r.c, i, &ts), key;
        int n = value_num(rec, "v");
        assert_int_equal(ts, n < 2 ? SL_TIME_NONE : 1000 + n);
        assert_int_equal(sl_broker_rec_key(rec, &key), n % 2);
    }
    for (int p = 0; p < 2; p++) assert_int_equal(r.pos[p], 200);
    run_free(&r);
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_rk);
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) return -1;
    snprintf(chkdir, sizeof chkdir, "%s/chk", dir);
    snprintf(chkdir2, sizeof chkdir2, "%s/chk2", dir);
    if (sl_broker_open(&rb, dir, 0) < 0) return -1;
    /* timestamps the librdkafka producer cannot send (0 is its "now") */
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = 1;
    if (sl_topic_create(rb, "ts", &c) < 0) return -1;
    for (int i = 0; i < NTS; i++) {
        char v[16];
        snprintf(v, sizeof v, "t%d", i);
        sl_record rec = {.value = v, .value_len = strlen(v), .timestamp = tss[i]};
        if (sl_log_append(rb, "ts", 0, &rec, 1, NULL) < 0) return -1;
    }
    /* the append took the partition's writer lock, which the server needs */
    if (sl_broker_close(rb) < 0 || sl_broker_open(&rb, dir, 0) < 0) return -1;
    if (sl_broker_open(&sb, dir, 0) < 0) return -1;
    if (sl_server_open(&srv, sb, "127.0.0.1:0") < 0) return -1;
    snprintf(bootstrap, sizeof bootstrap, "127.0.0.1:%d", sl_server_port(srv));
    return pthread_create(&thr, NULL, run_main, NULL) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_server_stop(srv);
    pthread_join(thr, NULL);
    sl_server_close(srv);
    sl_broker_close(sb);
    sl_broker_close(rb);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_parse_dead_letters),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_until_end_transactions),
        cmocka_unit_test(test_checkpoint_resume_and_group),
        cmocka_unit_test(test_many_partitions),
        cmocka_unit_test(test_many_partitions_two_handles),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_broker_restart),
        cmocka_unit_test(test_offset_out_of_range),
        cmocka_unit_test(test_topic_deleted),
        cmocka_unit_test(test_broker_down_long),
        cmocka_unit_test(test_mock_cluster),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
