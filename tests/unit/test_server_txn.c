/*
 * tests/unit/test_server_txn.c - idempotent and transactional producers
 * (librdkafka) against the Kafka-protocol server (connectors/broker/
 * kapi_txn.c, kapi_produce.c), checked by reading the broker directory back
 * with sl_log_reader:
 *
 *   (a) an idempotent producer (enable.idempotence, acks=all) while the
 *       server closes connections at random after handling requests (the
 *       test hook slb_server_set_fault_drop, so answers are lost and
 *       requests retried): every message once, in order per partition,
 *       offsets without gaps;
 *   (b) librdkafka's transactional API across two topics: a commit, an
 *       abort, a commit; read_committed sees the committed ones only,
 *       read_uncommitted all of them; a second producer with the same
 *       transactional.id fences the first (its commit fails fenced);
 *   (c) send_offsets_to_transaction: group offsets appear only when the
 *       transaction commits (none after an abort);
 *   (d) the server restarted with a transaction open: the id's next
 *       init_transactions aborts it; another, with a short
 *       transaction.timeout.ms, is aborted by the server's timeout; nothing
 *       of either is visible to read_committed;
 *   (e) the error answers, with hand-built frames: a transactional batch
 *       for a partition not added (INVALID_TXN_STATE), retries and
 *       duplicates of older batches (DUPLICATE_SEQUENCE_NUMBER), a gap, a
 *       control batch from a client, an unknown partition among known ones,
 *       another producer id, an end without a transaction, a bad group and
 *       timeout, and a fenced epoch per request version (PRODUCER_FENCED
 *       from v2, INVALID_PRODUCER_EPOCH before, and for Produce);
 *   (f) a commit whose markers fail to be written (injected I/O error after
 *       the commit was made durable as prepared): it cannot be aborted any
 *       more, and after a restart the server completes it as a commit.
 *
 * The server runs on a thread of its own over a temporary directory with
 * its own broker handle; the test reads through a second handle.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "connectors/broker/server_int.h"
#include "engine/base/crc32c.h"
#include "engine/base/fsio.h"
#include "sluice/broker.h"
#include "sluice/server.h"

#define KRAW_FB_CAP 4096
#include "kafka_raw.h"
#include "tests/unit/kafka_test.h"

static char dir[] = "/tmp/sluice_test_server_txn_XXXXXX";
/* broker (kafka_raw.h) is the server's handle */
static sl_broker *rb; /* the test's (reads, describe) */
static char bootstrap[64];

static FILE *srvlog; /* the server's log while connections are dropped */

static void start_server(int drop_permille)
{
    assert_int_equal(sl_broker_open(&broker, dir, 0), 0);
    assert_int_equal(sl_server_open(&srv, broker, "127.0.0.1:0"), 0);
    if (drop_permille) {
        slb_server_set_fault_drop(srv, drop_permille, 12345);
        assert_non_null(srvlog = tmpfile());
        sl_server_set_log(srv, srvlog);
    }
    snprintf(bootstrap, sizeof bootstrap, "127.0.0.1:%d", sl_server_port(srv));
    assert_int_equal(server_thread_start(), 0);
}

static void stop_server(void)
{
    server_thread_stop();
    assert_int_equal(run_rc, 0);
    assert_int_equal(sl_broker_close(broker), 0);
    if (srvlog) fclose(srvlog);
    srvlog = NULL;
    srv = NULL;
    broker = NULL;
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir)) return -1;
    if (sl_broker_open(&rb, dir, 0) < 0) return -1;
    sl_topic_conf c;
    sl_topic_conf_init(&c);
    c.partitions = 3;
    if (sl_topic_create(rb, "a", &c) < 0 || sl_topic_create(rb, "w", &c) < 0) return -1;
    c.partitions = 2;
    if (sl_topic_create(rb, "b", &c) < 0 || sl_topic_create(rb, "idem", &c) < 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sl_broker_close(rb);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- librdkafka ---- */

static int delivered_ok, delivered_bad;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    if (m->err)
        delivered_bad++;
    else
        delivered_ok++;
}

/* A producer: idempotent, transactional if tid; extra "k=v" pairs, NULL
 * ended. */
static rd_kafka_t *producer(const char *tid, ...)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kt_set(conf, "bootstrap.servers", bootstrap);
    kt_set(conf, "enable.idempotence", "true");
    kt_set(conf, "acks", "all");
    kt_set(conf, "linger.ms", "2");
    kt_set(conf, "reconnect.backoff.ms", "10");
    kt_set(conf, "reconnect.backoff.max.ms", "100");
    kt_set(conf, "retry.backoff.ms", "10");
    if (tid) kt_set(conf, "transactional.id", tid);
    va_list ap;
    va_start(ap, tid);
    for (const char *k; (k = va_arg(ap, const char *));) kt_set(conf, k, va_arg(ap, const char *));
    va_end(ap);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) fail_msg("rd_kafka_new: %s", err);
    return rk;
}

static void produce(rd_kafka_t *rk, const char *topic, int32_t part, const char *value)
{
    kt_produce(rk, topic, part, NULL, 0, value, strlen(value), 0);
}

/* ---- reading the directory back ---- */

/* The values of (topic, part) under isolation, in offset order, up to the
 * last stable offset (committed) or the log end; offsets[] too. Returns the
 * count. */
static int read_part(const char *topic, int32_t part, int isolation, char vals[][32],
                     int64_t *offsets, int cap)
{
    sl_topic_info *ti;
    assert_int_equal(sl_topic_describe(rb, topic, &ti), 0);
    int64_t end = isolation == SL_READ_COMMITTED ? ti->partitions[part].last_stable_offset
                                                 : ti->partitions[part].next_offset;
    sl_topic_info_free(ti);
    sl_log_reader *r;
    assert_int_equal(sl_log_reader_open(&r, rb, topic, part, SL_OFFSET_BEGINNING), 0);
    assert_int_equal(sl_log_reader_set_isolation(r, isolation), 0);
    int n = 0;
    sl_message m;
    while (sl_log_reader_position(r) < end) {
        int rc = sl_log_reader_next(r, &m, 0); /* all written: nothing to wait for */
        if (rc == SL_EAGAIN) break;
        assert_int_equal(rc, 0);
        assert_true(n < cap);
        snprintf(vals[n], 32, "%.*s", (int)m.value_len, (const char *)m.value);
        if (offsets) offsets[n] = m.offset;
        n++;
    }
    sl_log_reader_close(r);
    return n;
}

static int count_prefix(const char *topic, int32_t part, int isolation, const char *prefix)
{
    static char vals[4096][32];
    int n = read_part(topic, part, isolation, vals, NULL, 4096), k = 0;
    for (int i = 0; i < n; i++) k += strncmp(vals[i], prefix, strlen(prefix)) == 0;
    return k;
}

static int64_t lso_gap(const char *topic, int32_t part)
{
    sl_topic_info *ti;
    assert_int_equal(sl_topic_describe(rb, topic, &ti), 0);
    int64_t g = ti->partitions[part].next_offset - ti->partitions[part].last_stable_offset;
    sl_topic_info_free(ti);
    return g;
}

/* ---- (a) idempotence under dropped connections ---- */

#define NIDEM 3000

static void test_idempotent_drops(void **state)
{
    (void)state;
    start_server(100); /* 10% of requests lose their answer and their connection */
    delivered_ok = delivered_bad = 0;
    rd_kafka_t *rk = producer(NULL, "max.in.flight.requests.per.connection", "5",
                              "batch.num.messages", "20", NULL);
    char v[32];
    for (int i = 0; i < NIDEM; i++) {
        snprintf(v, sizeof v, "m%05d", i);
        produce(rk, "idem", i % 2, v);
        rd_kafka_poll(rk, 0);
    }
    assert_int_equal(rd_kafka_flush(rk, 120000), RD_KAFKA_RESP_ERR_NO_ERROR);
    char fatal[256] = "";
    rd_kafka_resp_err_t fe = rd_kafka_fatal_error(rk, fatal, sizeof fatal);
    if (fe) fail_msg("fatal: %s", fatal);
    rd_kafka_destroy(rk);
    int drops = 0; /* the hook did drop connections */
    char line[512];
    rewind(srvlog);
    while (fgets(line, sizeof line, srvlog)) drops += strstr(line, "fault injected") != NULL;
    stop_server();
    if (drops < 3) fail_msg("only %d connections dropped", drops);
    print_message("%d connections dropped\n", drops);
    assert_int_equal(delivered_bad, 0);
    assert_int_equal(delivered_ok, NIDEM);
    static char vals[NIDEM][32];
    static int64_t offs[NIDEM];
    static bool seen[NIDEM];
    memset(seen, 0, sizeof seen);
    int total = 0;
    for (int32_t p = 0; p < 2; p++) {
        int n = read_part("idem", p, SL_READ_UNCOMMITTED, vals, offs, NIDEM);
        int last = -1;
        for (int i = 0; i < n; i++) {
            int x = atoi(vals[i] + 1);
            assert_true(x >= 0 && x < NIDEM && x % 2 == p);
            if (seen[x])
                fail_msg("partition %d: m%05d twice (offset %lld)", p, x, (long long)offs[i]);
            seen[x] = true;
            if (x <= last) fail_msg("partition %d: m%05d after m%05d", p, x, last);
            last = x;
            assert_int_equal(offs[i], offs[0] + i); /* no gaps in offsets */
        }
        total += n;
    }
    assert_int_equal(total, NIDEM); /* with no duplicate above: every message once */
}

/* ---- (b) transactions across two topics, and fencing ---- */

static void test_transactions_fencing(void **state)
{
    (void)state;
    start_server(0);
    rd_kafka_t *p1 = producer("tx-b", NULL);
    kt_ok(rd_kafka_init_transactions(p1, 30000), "init");
    kt_ok(rd_kafka_begin_transaction(p1), "begin 1");
    produce(p1, "a", 0, "c1-a0");
    produce(p1, "a", 1, "c1-a1");
    produce(p1, "b", 0, "c1-b0");
    kt_ok(rd_kafka_commit_transaction(p1, 30000), "commit 1");
    kt_ok(rd_kafka_begin_transaction(p1), "begin 2");
    produce(p1, "a", 0, "ab-a0");
    produce(p1, "a", 2, "ab-a2");
    produce(p1, "b", 1, "ab-b1");
    assert_int_equal(rd_kafka_flush(p1, 30000), 0); /* written, then aborted */
    kt_ok(rd_kafka_abort_transaction(p1, 30000), "abort 2");
    kt_ok(rd_kafka_begin_transaction(p1), "begin 3");
    produce(p1, "a", 2, "c2-a2");
    produce(p1, "b", 1, "c2-b1");
    kt_ok(rd_kafka_commit_transaction(p1, 30000), "commit 3");

    /* A second producer with the same id fences the first. */
    rd_kafka_t *p2 = producer("tx-b", NULL);
    kt_ok(rd_kafka_init_transactions(p2, 30000), "init p2");
    rd_kafka_error_t *e = rd_kafka_begin_transaction(p1);
    if (!e) {
        produce(p1, "a", 0, "zz-fenced");
        e = rd_kafka_commit_transaction(p1, 30000);
    }
    assert_non_null(e);
    char fatal[256] = "";
    rd_kafka_resp_err_t fe = rd_kafka_fatal_error(p1, fatal, sizeof fatal);
    if (rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR__FENCED && fe != RD_KAFKA_RESP_ERR__FENCED)
        fail_msg("p1 not fenced: %s (fatal: %s)", rd_kafka_error_string(e), fatal);
    rd_kafka_error_destroy(e);
    rd_kafka_destroy(p1);
    kt_ok(rd_kafka_begin_transaction(p2), "p2 begin");
    produce(p2, "b", 0, "c3-b0");
    kt_ok(rd_kafka_commit_transaction(p2, 30000), "p2 commit");
    rd_kafka_destroy(p2);
    stop_server();

    static const struct {
        const char *topic;
        int32_t part;
        const char *committed, *all;
    } want[] = {
        {"a", 0, "c1-a0", "c1-a0 ab-a0"}, {"a", 1, "c1-a1", "c1-a1"},
        {"a", 2, "c2-a2", "ab-a2 c2-a2"}, {"b", 0, "c1-b0 c3-b0", "c1-b0 c3-b0"},
        {"b", 1, "c2-b1", "ab-b1 c2-b1"},
    };
    static char vals[64][32];
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        for (int iso = 0; iso < 2; iso++) {
            int n = read_part(want[i].topic, want[i].part, iso, vals, NULL, 64);
            char got[512] = "";
            for (int k = 0; k < n; k++) {
                if (!strcmp(vals[k], "zz-fenced")) continue; /* never sent, or aborted */
                if (got[0]) strcat(got, " ");
                strcat(got, vals[k]);
            }
            const char *exp = iso == SL_READ_COMMITTED ? want[i].committed : want[i].all;
            if (strcmp(got, exp))
                fail_msg("%s/%d %s: got '%s', want '%s'", want[i].topic, want[i].part,
                         iso == SL_READ_COMMITTED ? "read_committed" : "read_uncommitted", got,
                         exp);
        }
        assert_int_equal(lso_gap(want[i].topic, want[i].part), 0);
    }
    assert_int_equal(count_prefix("a", 0, SL_READ_COMMITTED, "zz-"), 0);
}

/* ---- (c) offsets in a transaction ---- */

static void send_offsets(rd_kafka_t *rk, int64_t a0, int64_t b1)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(l, "a", 0)->offset = a0;
    rd_kafka_topic_partition_list_add(l, "b", 1)->offset = b1;
    rd_kafka_consumer_group_metadata_t *g = rd_kafka_consumer_group_metadata_new("g-txn");
    kt_ok(rd_kafka_send_offsets_to_transaction(rk, l, g, 30000), "send offsets");
    rd_kafka_consumer_group_metadata_destroy(g);
    rd_kafka_topic_partition_list_destroy(l);
}

static void test_txn_offsets(void **state)
{
    (void)state;
    start_server(0);
    rd_kafka_t *p = producer("tx-c", NULL);
    kt_ok(rd_kafka_init_transactions(p, 30000), "init");
    kt_ok(rd_kafka_begin_transaction(p), "begin");
    produce(p, "b", 0, "off-1");
    send_offsets(p, 5, 7);
    kt_ok(rd_kafka_abort_transaction(p, 30000), "abort");
    int64_t off = -1;
    assert_int_equal(sl_group_fetch(rb, "g-txn", "a", 0, &off), SL_ENOENT);
    assert_int_equal(sl_group_fetch(rb, "g-txn", "b", 1, &off), SL_ENOENT);

    kt_ok(rd_kafka_begin_transaction(p), "begin");
    produce(p, "b", 0, "off-2");
    send_offsets(p, 11, 13);
    kt_ok(rd_kafka_commit_transaction(p, 30000), "commit");
    assert_int_equal(sl_group_fetch(rb, "g-txn", "a", 0, &off), 0);
    assert_int_equal(off, 11);
    assert_int_equal(sl_group_fetch(rb, "g-txn", "b", 1, &off), 0);
    assert_int_equal(off, 13);

    kt_ok(rd_kafka_begin_transaction(p), "begin");
    send_offsets(p, 20, 21); /* aborted: 11 and 13 stay */
    kt_ok(rd_kafka_abort_transaction(p, 30000), "abort");
    assert_int_equal(sl_group_fetch(rb, "g-txn", "a", 0, &off), 0);
    assert_int_equal(off, 11);
    rd_kafka_destroy(p);
    stop_server();
    assert_int_equal(count_prefix("b", 0, SL_READ_COMMITTED, "off-1"), 0);
    assert_int_equal(count_prefix("b", 0, SL_READ_COMMITTED, "off-2"), 1);
}

/* ---- (d) a restart with a transaction open ---- */

/* Begin a transaction of tid, write value to (topic, part), make sure it
 * is written, and leave it open: the server stops (as if it crashed) and
 * the producer goes away. */
static void leave_open(const char *tid, const char *topic, int32_t part, const char *value,
                       const char *timeout_ms)
{
    rd_kafka_t *p = timeout_ms ? producer(tid, "transaction.timeout.ms", timeout_ms,
                                          "message.timeout.ms", timeout_ms, NULL)
                               : producer(tid, NULL);
    kt_ok(rd_kafka_init_transactions(p, 30000), "init");
    kt_ok(rd_kafka_begin_transaction(p), "begin");
    delivered_ok = 0;
    produce(p, topic, part, value);
    assert_int_equal(rd_kafka_flush(p, 30000), 0);
    assert_int_equal(delivered_ok, 1);
    stop_server();
    rd_kafka_destroy(p);
}

static void test_restart_open_txn(void **state)
{
    (void)state;
    /* Aborted by the id's next InitProducerId. */
    start_server(0);
    leave_open("tx-d", "a", 1, "open-d", NULL);
    assert_true(lso_gap("a", 1) > 0); /* still open across the restart */
    start_server(0);
    assert_true(lso_gap("a", 1) > 0);
    rd_kafka_t *p = producer("tx-d", NULL);
    kt_ok(rd_kafka_init_transactions(p, 30000), "init after restart");
    assert_int_equal(lso_gap("a", 1), 0);
    kt_ok(rd_kafka_begin_transaction(p), "begin");
    produce(p, "a", 1, "after-d");
    kt_ok(rd_kafka_commit_transaction(p, 30000), "commit");
    rd_kafka_destroy(p);
    assert_int_equal(count_prefix("a", 1, SL_READ_COMMITTED, "open-d"), 0);
    assert_int_equal(count_prefix("a", 1, SL_READ_UNCOMMITTED, "open-d"), 1);
    assert_int_equal(count_prefix("a", 1, SL_READ_COMMITTED, "after-d"), 1);

    /* Aborted by the server when its timeout passes. */
    leave_open("tx-e", "b", 1, "open-e", "2000");
    start_server(0);
    int spins = 0;
    while (lso_gap("b", 1) > 0 && spins++ < 600) usleep(100 * 1000);
    assert_int_equal(lso_gap("b", 1), 0);
    stop_server();
    assert_int_equal(count_prefix("b", 1, SL_READ_COMMITTED, "open-e"), 0);
    assert_int_equal(count_prefix("b", 1, SL_READ_UNCOMMITTED, "open-e"), 1);
}

/* ---- (e) error answers, hand-built frames ---- */

static int wfd;
static int32_t wcorr;
static uint8_t wr[65536]; /* the last response, after its correlation id */

/* Start f as a request on the wire connection (the next correlation id). */
static void wreq(fb *f, int16_t key, int16_t ver)
{
    req(f, key, ver, ++wcorr);
}

/* Send f, read its response body into wr. */
static void call(fb *f)
{
    fin(f);
    send_all(wfd, f->p, f->n);
    uint8_t h[8];
    assert_int_equal(recv_all(wfd, h, 8), 0);
    uint32_t n = (uint32_t)g32(h) - 4;
    assert_int_equal(g32(h + 4), wcorr);
    assert_true(n <= sizeof wr);
    assert_int_equal(recv_all(wfd, wr, n), 0);
}

static int16_t init_pid(const char *tid, int32_t timeout, int64_t *pid, int16_t *epoch)
{
    fb f;
    wreq(&f, 22, 0);
    bstr(&f, tid);
    b32(&f, (uint32_t)timeout);
    call(&f);
    *pid = g64(wr + 6);
    *epoch = g16(wr + 14);
    return g16(wr + 4);
}

/* Produce v3 of one record batch (one record "x") to w/part; returns the
 * error, *base the offset. */
static int16_t produce_raw(const char *tid, int32_t part, int64_t pid, int16_t epoch, int32_t seq,
                           uint16_t attrs, int64_t *base)
{
    fb f;
    wreq(&f, 0, 3);
    bstr(&f, tid);
    b16(&f, 0xffff); /* acks -1 */
    b32(&f, 10000);
    b32(&f, 1);
    bstr(&f, "w");
    b32(&f, 1);
    b32(&f, (uint32_t)part);
    b32(&f, 61 + 8); /* the batch's bytes */
    size_t b = f.n;
    b64(&f, 0);
    b32(&f, 49 + 8);
    b32(&f, 0);
    b8(&f, 2);
    b32(&f, 0); /* crc, below */
    b16(&f, attrs);
    b32(&f, 0);
    b64(&f, 1000);
    b64(&f, 1000);
    b64(&f, (uint64_t)pid);
    b16(&f, (uint16_t)epoch);
    b32(&f, (uint32_t)seq);
    b32(&f, 1);
    static const uint8_t rec[] = {14, 0, 0, 0, 1, 2, 'x', 0}; /* length 7, no key, "x" */
    bmem(&f, rec, sizeof rec);
    uint32_t crc = sli_crc32c(0, f.p + b + 21, f.n - b - 21);
    for (int i = 0; i < 4; i++) f.p[b + 17 + i] = (uint8_t)(crc >> (24 - 8 * i));
    call(&f);
    const uint8_t *p = wr + 4 + 2 + 1 + 4 + 4; /* topics, "a", partitions, partition */
    *base = g64(p + 2);
    return g16(p);
}

/* AddPartitionsToTxn of w/parts[0..n); errs[] gets each answer. */
static void add_parts(int16_t ver, const char *tid, int64_t pid, int16_t epoch,
                      const int32_t *parts, int n, int16_t *errs)
{
    fb f;
    wreq(&f, 24, ver);
    bstr(&f, tid);
    b64(&f, (uint64_t)pid);
    b16(&f, (uint16_t)epoch);
    b32(&f, 1);
    bstr(&f, "w");
    b32(&f, (uint32_t)n);
    for (int i = 0; i < n; i++) b32(&f, (uint32_t)parts[i]);
    call(&f);
    assert_int_equal(g32(wr + 4), 1);
    const uint8_t *p = wr + 8 + 3;
    assert_int_equal(g32(p), n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(g32(p + 4 + 6 * i), parts[i]);
        errs[i] = g16(p + 8 + 6 * i);
    }
}

static int16_t add_part(int16_t ver, const char *tid, int64_t pid, int16_t epoch, int32_t part)
{
    int16_t e;
    add_parts(ver, tid, pid, epoch, &part, 1, &e);
    return e;
}

static int16_t end_txn(int16_t ver, const char *tid, int64_t pid, int16_t epoch, bool commit)
{
    fb f;
    wreq(&f, 26, ver);
    bstr(&f, tid);
    b64(&f, (uint64_t)pid);
    b16(&f, (uint16_t)epoch);
    b8(&f, commit);
    call(&f);
    return g16(wr + 4);
}

static int16_t add_offsets(const char *tid, int64_t pid, int16_t epoch, const char *group)
{
    fb f;
    wreq(&f, 25, 0);
    bstr(&f, tid);
    b64(&f, (uint64_t)pid);
    b16(&f, (uint16_t)epoch);
    bstr(&f, group);
    call(&f);
    return g16(wr + 4);
}

/* TxnOffsetCommit v0 of w/0 at offset. */
static int16_t txn_offset(const char *tid, const char *group, int64_t pid, int16_t epoch,
                          int64_t offset)
{
    fb f;
    wreq(&f, 28, 0);
    bstr(&f, tid);
    bstr(&f, group);
    b64(&f, (uint64_t)pid);
    b16(&f, (uint16_t)epoch);
    b32(&f, 1);
    bstr(&f, "w");
    b32(&f, 1);
    b32(&f, 0);
    b64(&f, (uint64_t)offset);
    bstr(&f, NULL);
    call(&f);
    assert_int_equal(g32(wr + 4), 1);
    assert_int_equal(g32(wr + 8 + 3), 1);
    return g16(wr + 8 + 3 + 8);
}

static void connect_wire(void)
{
    wfd = connect_srv();
}

static void test_wire_errors(void **state)
{
    (void)state;
    start_server(0);
    connect_wire();

    int64_t pid, pid2, base, b0;
    int16_t epoch, epoch2, errs[2];
    assert_int_equal(init_pid("raw", 0, &pid, &epoch), KE_INVALID_TRANSACTION_TIMEOUT);
    assert_int_equal(init_pid("raw", 60000, &pid, &epoch), 0);
    assert_true(pid >= 0 && epoch >= 0);
    assert_int_equal(init_pid(NULL, 0, &pid2, &epoch2), 0); /* idempotent: a fresh id */
    assert_true(pid2 >= 0 && pid2 != pid && epoch2 == 0);

    /* A transactional batch only for a partition of the open transaction. */
    assert_int_equal(produce_raw("raw", 0, pid, epoch, 0, 0x10, &base), KE_INVALID_TXN_STATE);
    int32_t two[2] = {0, 99};
    add_parts(1, "raw", pid, epoch, two, 2, errs);
    assert_int_equal(errs[0], 55); /* OPERATION_NOT_ATTEMPTED */
    assert_int_equal(errs[1], KE_UNKNOWN_TOPIC);
    assert_int_equal(add_part(1, "raw", pid, epoch, 0), 0);
    assert_int_equal(produce_raw("raw", 0, pid, epoch, 0, 0x10, &b0), 0);
    assert_int_equal(produce_raw("raw", 0, pid, epoch, 0, 0x10, &base), 0); /* a retry */
    assert_int_equal(base, b0);
    assert_int_equal(produce_raw("raw", 0, pid, epoch, 1, 0x10, &base), 0);
    assert_int_equal(base, b0 + 1);
    assert_int_equal(produce_raw("raw", 0, pid, epoch, 0, 0x10, &base), KE_DUPLICATE_SEQ);
    assert_int_equal(produce_raw("raw", 0, pid, epoch, 5, 0x10, &base), KE_OUT_OF_ORDER_SEQ);
    assert_int_equal(produce_raw("raw", 0, pid, epoch, 2, 0x30, &base), KE_INVALID_RECORD);
    assert_int_equal(produce_raw(NULL, 0, pid, epoch, 2, 0x10, &base), KE_INVALID_TXN_STATE);
    assert_int_equal(produce_raw("raw", 1, pid, epoch, 0, 0x10, &base), KE_INVALID_TXN_STATE);
    /* The idempotent producer's duplicates too. */
    assert_int_equal(produce_raw(NULL, 1, pid2, 0, 0, 0, &b0), 0);
    assert_int_equal(produce_raw(NULL, 1, pid2, 0, 1, 0, &base), 0);
    assert_int_equal(produce_raw(NULL, 1, pid2, 0, 0, 0, &base), KE_DUPLICATE_SEQ);
    assert_int_equal(produce_raw(NULL, 1, pid2, 0, 1, 0, &base), 0);
    assert_int_equal(base, b0 + 1);

    /* Ending. */
    assert_int_equal(end_txn(1, "raw", pid + 100, epoch, true), KE_INVALID_PRODUCER_ID_MAPPING);
    assert_int_equal(end_txn(1, "nope", pid, epoch, true), KE_INVALID_PRODUCER_ID_MAPPING);
    assert_int_equal(end_txn(1, "raw", pid, epoch, true), 0);
    assert_int_equal(end_txn(1, "raw", pid, epoch, true), 0); /* a retry */
    assert_int_equal(end_txn(1, "raw", pid, epoch, false), KE_INVALID_TXN_STATE);
    assert_int_equal(lso_gap("w", 0), 0);

    /* Offsets. */
    assert_int_equal(txn_offset("raw", "g-raw", pid, epoch, 3), KE_INVALID_TXN_STATE);
    assert_int_equal(add_offsets("raw", pid, epoch, "g-raw"), 0);
    assert_int_equal(txn_offset("raw", "__bad", pid, epoch, 3), KE_INVALID_GROUP_ID);
    assert_int_equal(txn_offset("raw", "g-raw", pid, epoch, 3), 0);
    assert_int_equal(add_part(1, "raw", pid, epoch, 2), 0);
    assert_int_equal(produce_raw("raw", 2, pid, epoch, 0, 0x10, &base), 0);
    assert_true(lso_gap("w", 2) > 0);

    /* A new epoch fences the old one (and aborts its transaction). */
    assert_int_equal(init_pid("raw", 60000, &pid2, &epoch2), 0);
    assert_true(pid2 == pid && epoch2 == epoch + 1);
    assert_int_equal(lso_gap("w", 2), 0);
    int64_t off;
    assert_int_equal(sl_group_fetch(rb, "g-raw", "w", 0, &off), SL_ENOENT);
    assert_int_equal(add_part(2, "raw", pid, epoch, 0), KE_PRODUCER_FENCED);
    assert_int_equal(add_part(1, "raw", pid, epoch, 0), KE_INVALID_PRODUCER_EPOCH);
    assert_int_equal(add_offsets("raw", pid, epoch, "g-raw"), KE_INVALID_PRODUCER_EPOCH);
    assert_int_equal(end_txn(2, "raw", pid, epoch, true), KE_PRODUCER_FENCED);
    assert_int_equal(end_txn(0, "raw", pid, epoch, false), KE_INVALID_PRODUCER_EPOCH);
    assert_int_equal(txn_offset("raw", "g-raw", pid, epoch, 3), KE_INVALID_PRODUCER_EPOCH);
    assert_int_equal(add_part(2, "raw", pid, epoch2, 0), 0);
    assert_int_equal(produce_raw("raw", 0, pid, epoch, 9, 0x10, &base), KE_INVALID_PRODUCER_EPOCH);
    assert_int_equal(produce_raw("raw", 0, pid, epoch2, 0, 0x10, &base), 0);
    assert_int_equal(end_txn(2, "raw", pid, epoch2, false), 0);
    assert_int_equal(count_prefix("w", 0, SL_READ_COMMITTED, "x"), 2); /* the first commit */
    close(wfd);
    stop_server();
}

/* ---- (f) a prepared commit is completed ---- */

static void test_prepared_commit_completed(void **state)
{
    (void)state;
    start_server(0);
    connect_wire();
    int64_t pid, base;
    int16_t epoch;
    int c1 = count_prefix("w", 1, SL_READ_COMMITTED, "x"); /* test_wire_errors' */
    int c2 = count_prefix("w", 2, SL_READ_COMMITTED, "x");
    assert_int_equal(init_pid("prep", 60000, &pid, &epoch), 0);
    int32_t two[2] = {1, 2};
    int16_t errs[2];
    add_parts(1, "prep", pid, epoch, two, 2, errs);
    assert_int_equal(errs[0], 0);
    assert_int_equal(errs[1], 0);
    assert_int_equal(produce_raw("prep", 1, pid, epoch, 0, 0x10, &base), 0);
    assert_int_equal(produce_raw("prep", 2, pid, epoch, 0, 0x10, &base), 0);
    /* The state file's write (prepared) goes through, the first marker's
     * fails, and every write after it. */
    sli_fsio_fail_after(SLI_FSIO_WRITE, 1, 5 /* EIO */, true);
    assert_int_equal(end_txn(1, "prep", pid, epoch, true), KE_UNKNOWN);
    assert_int_equal(end_txn(1, "prep", pid, epoch, false), KE_INVALID_TXN_STATE);
    assert_true(lso_gap("w", 1) > 0 && lso_gap("w", 2) > 0);
    assert_int_equal(count_prefix("w", 1, SL_READ_COMMITTED, "x"), c1);
    close(wfd);
    sli_fsio_fail_reset();
    stop_server();
    start_server(0); /* the timeout check completes the commit at once */
    int spins = 0;
    while ((lso_gap("w", 1) > 0 || lso_gap("w", 2) > 0) && spins++ < 600) usleep(100 * 1000);
    assert_int_equal(lso_gap("w", 1), 0);
    assert_int_equal(lso_gap("w", 2), 0);
    stop_server();
    assert_int_equal(count_prefix("w", 1, SL_READ_COMMITTED, "x"), c1 + 1);
    assert_int_equal(count_prefix("w", 2, SL_READ_COMMITTED, "x"), c2 + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_errors),
        cmocka_unit_test(test_idempotent_drops),
        cmocka_unit_test(test_transactions_fencing),
        cmocka_unit_test(test_txn_offsets),
        cmocka_unit_test(test_restart_open_txn),
        cmocka_unit_test(test_prepared_commit_completed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
