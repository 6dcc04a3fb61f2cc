/*
 * tests/unit/kafka_test.h - what the Kafka connector tests share: sluice's
 * own Kafka server in process (on a fresh broker directory, with the
 * test's topics made first), librdkafka producers and consumers with
 * sluice's settings, and reading a topic back. Header-only (static
 * functions), included by one test file each; cmocka's fail_msg reports
 * what went wrong.
 *
 *   kt_server_start(&s, "name", topics, n)   broker dir + server thread
 *   kt_server_stop(&s)                       0 when the server ran clean
 *   kt_producer(boot, txid)                  idempotent (transactional) producer
 *   kt_produce(rk, topic, part, key, klen, val, vlen, ts)
 *   kt_ok(err, what)                         fail on an rd_kafka_error_t
 *   kt_read(boot, topic, part, committed, fn, ud)   a partition to its end
 */
#ifndef SLUICE_TESTS_KAFKA_TEST_H
#define SLUICE_TESTS_KAFKA_TEST_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include "sluice/broker.h"
#include "sluice/server.h"

typedef struct kt_topic {
    const char *name;
    int partitions;
    int32_t max_record_bytes; /* 0: the default */
} kt_topic;

typedef struct kt_server {
    char dir[256];
    char bootstrap[64];
    sl_broker *sb, *rb; /* the server's handle; the test's (topics, groups) */
    sl_server *srv;
    pthread_t thr;
    int run_rc;
} kt_server;

static inline void *kt_server_main(void *arg)
{
    kt_server *s = arg;
    s->run_rc = sl_server_run(s->srv);
    return NULL;
}

/* A server on 127.0.0.1 (any port) over a new directory /tmp/NAME_XXXXXX
 * holding topics[0 .. n). Returns 0 or -1 (for cmocka's setup). */
static inline int kt_server_start(kt_server *s, const char *name, const kt_topic *topics, size_t n)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof s->dir, "/tmp/%s_XXXXXX", name);
    if (!mkdtemp(s->dir)) return -1;
    if (sl_broker_open(&s->rb, s->dir, 0) < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        sl_topic_conf c;
        sl_topic_conf_init(&c);
        c.partitions = topics[i].partitions;
        if (topics[i].max_record_bytes) c.max_record_bytes = topics[i].max_record_bytes;
        if (sl_topic_create(s->rb, topics[i].name, &c) < 0) return -1;
    }
    if (sl_broker_open(&s->sb, s->dir, 0) < 0) return -1;
    if (sl_server_open(&s->srv, s->sb, "127.0.0.1:0") < 0) return -1;
    snprintf(s->bootstrap, sizeof s->bootstrap, "127.0.0.1:%d", sl_server_port(s->srv));
    return pthread_create(&s->thr, NULL, kt_server_main, s) ? -1 : 0;
}

/* Stop the server, close the handles, remove the directory (and extra, a
 * path to remove too, or NULL). 0 when all went well. */
static inline int kt_server_stop(kt_server *s, const char *extra)
{
    sl_server_stop(s->srv);
    pthread_join(s->thr, NULL);
    sl_server_close(s->srv);
    sl_broker_close(s->sb);
    sl_broker_close(s->rb);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", s->dir, extra ? extra : "");
    return system(cmd) == 0 && s->run_rc == 0 ? 0 : -1;
}

static inline void kt_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        fail_msg("conf %s=%s: %s", k, v, err);
}

/* Quiet librdkafka (its log lines are not the test's). */
static inline void kt_no_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level, (void)fac, (void)buf;
}

static inline rd_kafka_t *kt_producer(const char *boot, const char *tid)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kt_set(conf, "bootstrap.servers", boot);
    kt_set(conf, "enable.idempotence", "true");
    kt_set(conf, "linger.ms", "2");
    if (tid) kt_set(conf, "transactional.id", tid);
    rd_kafka_conf_set_log_cb(conf, kt_no_log);
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) fail_msg("rd_kafka_new: %s", err);
    return rk;
}

/* key NULL: none. ts 0: the producer's now (librdkafka's rule). */
static inline void kt_produce(rd_kafka_t *rk, const char *topic, int32_t part, const void *key,
                              size_t klen, const void *val, size_t vlen, int64_t ts)
{
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                                  RD_KAFKA_V_KEY((void *)key, key ? klen : 0),
                                  RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_TIMESTAMP(ts),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
    if (e) fail_msg("produce to %s/%d: %s", topic, (int)part, rd_kafka_err2str(e));
}

static inline void kt_ok(rd_kafka_error_t *e, const char *what)
{
    if (e) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %s", what, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fail_msg("%s", msg);
    }
}

typedef void (*kt_msg_fn)(const rd_kafka_message_t *m, void *ud);

/* Every message of (topic, part) from the beginning to its end as of now
 * (the last stable offset with committed, else the high watermark), in
 * order, to fn. Returns how many. */
static inline size_t kt_read(const char *boot, const char *topic, int32_t part, int committed,
                             kt_msg_fn fn, void *ud)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kt_set(conf, "bootstrap.servers", boot);
    kt_set(conf, "group.id", "kafka-test-reader");
    kt_set(conf, "enable.auto.commit", "false");
    kt_set(conf, "enable.partition.eof", "true");
    kt_set(conf, "isolation.level", committed ? "read_committed" : "read_uncommitted");
    rd_kafka_conf_set_log_cb(conf, kt_no_log);
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) fail_msg("rd_kafka_new: %s", err);
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, part, &lo, &hi, 10000);
    if (e) fail_msg("%s/%d: offsets: %s", topic, (int)part, rd_kafka_err2str(e));
    size_t n = 0;
    if (hi > lo) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, part)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        for (int idle = 0; idle < 300;) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
            if (!m) {
                idle++;
                continue;
            }
            int eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
            if (!m->err) {
                if (fn) fn(m, ud);
                n++;
            } else if (!eof) {
                fail_msg("%s/%d: %s", topic, (int)part, rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            if (eof) break;
        }
    }
    rd_kafka_destroy(rk);
    return n;
}

#endif
