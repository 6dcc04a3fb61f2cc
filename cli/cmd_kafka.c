/*
 * cli/cmd_kafka.c - `sluice produce|consume|topic -b HOST:PORT` (also
 * --bootstrap): the broker commands against a Kafka server, through
 * librdkafka. cli/cmd_broker.c parses the same flags as for a directory and
 * calls in here; the output is the same (consume prints with the same
 * formatter, cli/msgfmt.h).
 *
 * Reaching the server: every command first asks for the cluster's metadata
 * (kafka_reach). The bootstrap broker unreachable (refused, unresolvable,
 * all brokers down) is one line "sluice CMD: cannot reach Kafka broker
 * HOST:PORT: <librdkafka's reason>" as soon as librdkafka gives up on it,
 * and at most CLI_KAFKA_CONNECT_TIMEOUT_S (10) seconds after the start when
 * it does not answer at all; exit 1. librdkafka's own log lines are dropped:
 * what matters comes back as errors and is reported once
 * ($SLUICE_KAFKA_DEBUG=CONTEXTS, librdkafka's debug contexts such as
 * cgrp,fetch,protocol, prints them on stderr for diagnosis).
 *
 * produce: each line of stdin (without its newline) is one record; -K SEP
 * splits key and value at the first SEP (no SEP: no key). With no -p a keyed
 * record goes where Kafka's Java client puts it (partitioner=murmur2_random:
 * murmur2(key) & 0x7fffffff mod partitions, the same as
 * sl_partition_for_key), an unkeyed one to a random partition. acks=all.
 * Nothing is silently lost: produce waits for the delivery report of every
 * record before it exits; the first failed delivery (or a record still
 * unacknowledged after message.timeout.ms, 30 s) is one line naming its
 * input line, with the number of records not delivered, and exit 1; it stops
 * reading stdin at the first failure it learns of.
 *
 * consume: a librdkafka consumer. Without -G it assigns the partitions
 * itself (-p, else all) under a throw-away group id that is never committed
 * to; -o gives the start (beginning, end, OFFSET, -N = RD_KAFKA_OFFSET_TAIL).
 * With -G and no -p it subscribes: partitions are shared with the group's
 * other members by Kafka's group protocol, and on each assignment the
 * group's committed offset wins over -o. With -G and -p it assigns that
 * partition and commits to the group. Commits (-G), as over a directory:
 * only offsets of records whose output was flushed without error (written[],
 * advanced after each successful fflush), when idle, before partitions are
 * revoked, and at exit; never what was read but not written. An offset
 * outside the log is an error (auto.offset.reset=error), as over a
 * directory. -e: exits once every assigned partition has reported its end
 * (enable.partition.eof; under read_committed the last stable offset).
 * Losing every broker (librdkafka's ALL_BROKERS_DOWN) is one line: with -e
 * the end, exit 1; without, a warning, and librdkafka keeps retrying.
 * --isolation maps to isolation.level (read_committed by default).
 * session.timeout.ms is 10 s (Kafka's default 45 s): a member killed without
 * leaving gives its partitions up to the group within 10 s.
 *
 * topic: list (metadata; internal "__" topics are not shown, as over a
 * directory), describe (partitions, leader, replicas, in-sync replicas,
 * first and next offset from the watermarks), create (--partitions,
 * --replication-factor, default 1; --compact, --retention-bytes,
 * --retention-ms and --segment-bytes become cleanup.policy, retention.bytes,
 * retention.ms and segment.bytes) and delete, through the admin API; each
 * request has the same 10 s bound.
 *
 * Invariants: one librdkafka handle per command, destroyed on every path (the
 * one `goto fail` of each function); per-record work allocates nothing of
 * ours (librdkafka copies the payload: RD_KAFKA_MSG_F_COPY); per-partition
 * state is an array indexed by partition id, sized from the metadata.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "cli/cli.h"
#include "cli/msgfmt.h"
#include "cli/cmd_kafka.h"

/* What librdkafka reported through its error callback (served by
 * rd_kafka_poll / rd_kafka_consumer_poll). */
typedef struct kctx {
    const char *cmd;
    const char *bootstrap;
    int down;         /* every broker down, or the bootstrap name unresolvable */
    char reason[512]; /* the first connection error's text */
    /* produce: delivery reports */
    long long failed;     /* records whose delivery failed */
    long long first_line; /* input line of the first failure */
    char first_err[256];
} kctx;

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level; /* errors come back through on_error */
    if (getenv("SLUICE_KAFKA_DEBUG")) fprintf(stderr, "librdkafka %s: %s\n", fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    kctx *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__RESOLVE ||
        err == RD_KAFKA_RESP_ERR__FATAL || err == RD_KAFKA_RESP_ERR__AUTHENTICATION)
        k->down = 1;
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !k->reason[0])
        snprintf(k->reason, sizeof k->reason, "%s", reason);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A configuration with bootstrap, our callbacks, and the settings in kv
 * (name, value pairs, NULL-terminated). NULL after one line on stderr. */
static rd_kafka_conf_t *kafka_conf(kctx *k, const char *const *kv)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", k->bootstrap, errstr, sizeof errstr))
        goto fail;
    for (; kv && kv[0]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], errstr, sizeof errstr)) goto fail;
    const char *debug = getenv("SLUICE_KAFKA_DEBUG");
    if (debug && *debug && rd_kafka_conf_set(conf, "debug", debug, errstr, sizeof errstr))
        goto fail;
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, k);
    return conf;
fail:
    fprintf(stderr, "sluice %s: librdkafka configuration: %s\n", k->cmd, errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static rd_kafka_t *kafka_new(kctx *k, rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "sluice %s: cannot start a Kafka client for %s: %s\n", k->cmd, k->bootstrap,
                errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* The cluster's metadata (all topics), or NULL after one line naming the
 * broker: unreachable as soon as librdkafka says so, silent for
 * CLI_KAFKA_CONNECT_TIMEOUT_S. */
static const struct rd_kafka_metadata *kafka_reach(kctx *k, rd_kafka_t *rk)
{
    double deadline = now_s() + CLI_KAFKA_CONNECT_TIMEOUT_S;
    rd_kafka_resp_err_t err;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        err = rd_kafka_metadata(rk, 1, NULL, &md, 250);
        if (!err) return md;
        rd_kafka_poll(rk, 0); /* serve on_error */
        if (k->down || now_s() >= deadline) break;
    }
    if (k->down)
        fprintf(stderr, "sluice %s: cannot reach Kafka broker %s: %s\n", k->cmd, k->bootstrap,
                k->reason[0] ? k->reason : rd_kafka_err2str(err));
    else
        fprintf(stderr, "sluice %s: no answer from Kafka broker %s within %d s%s%s\n", k->cmd,
                k->bootstrap, CLI_KAFKA_CONNECT_TIMEOUT_S, k->reason[0] ? ": " : "", k->reason);
    return NULL;
}

/* The topic's metadata in md, or NULL after one line. */
static const struct rd_kafka_metadata_topic *
kafka_topic(kctx *k, const struct rd_kafka_metadata *md, const char *topic)
{
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        if (strcmp(t->topic, topic)) continue;
        if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) break;
        if (t->err) {
            fprintf(stderr, "sluice %s: topic '%s' on %s: %s\n", k->cmd, topic, k->bootstrap,
                    rd_kafka_err2str(t->err));
            return NULL;
        }
        return t;
    }
    fprintf(stderr, "sluice %s: topic '%s' does not exist on Kafka broker %s\n", k->cmd, topic,
            k->bootstrap);
    return NULL;
}

static int check_partition(kctx *k, const char *topic, const struct rd_kafka_metadata_topic *t,
                           int32_t p)
{
    if (p < t->partition_cnt) return 0;
    fprintf(stderr, "sluice %s: topic '%s' has no partition %d (it has %d: 0..%d)\n", k->cmd, topic,
            p, t->partition_cnt, t->partition_cnt - 1);
    return 2;
}

/* ---- produce ------------------------------------------------------------------------ */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kctx *k = opaque;
    if (!m->err) return;
    if (!k->failed++) {
        k->first_line = (long long)(intptr_t)m->_private;
        snprintf(k->first_err, sizeof k->first_err, "%s", rd_kafka_err2str(m->err));
    }
}

int cli_kafka_produce(const char *bootstrap, const char *topic, const char *sep, int32_t partition)
{
    static const char *const kv[] = {
        "acks",      "all", "partitioner", "murmur2_random", "message.timeout.ms", "30000",
        "linger.ms", "5",   NULL};
    kctx k = {.cmd = "produce", .bootstrap = bootstrap};
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_t *rk = NULL;
    char *line = NULL;
    size_t linecap = 0;
    int status = 1;
    rd_kafka_conf_t *conf = kafka_conf(&k, kv);
    if (!conf) goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    if (!(rk = kafka_new(&k, RD_KAFKA_PRODUCER, conf))) goto fail;
    if (!(md = kafka_reach(&k, rk))) goto fail;
    const struct rd_kafka_metadata_topic *t = kafka_topic(&k, md, topic);
    if (!t) goto fail;
    if (partition >= 0 && (status = check_partition(&k, topic, t, partition))) goto fail;
    status = 0;
    size_t seplen = sep ? strlen(sep) : 0;
    long long lineno = 0;
    ssize_t n;
    while (!k.failed && (n = getline(&line, &linecap, stdin)) >= 0) {
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n') len--;
        lineno++;
        const char *key = NULL, *val = line;
        size_t klen = 0, vlen = len;
        const char *hit = sep ? memmem(line, len, sep, seplen) : NULL;
        if (hit) {
            key = line;
            klen = (size_t)(hit - line);
            val = hit + seplen;
            vlen = len - klen - seplen;
        }
        rd_kafka_resp_err_t err;
        for (;;) {
            err = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic),
                RD_KAFKA_V_PARTITION(partition >= 0 ? partition : RD_KAFKA_PARTITION_UA),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
                RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_OPAQUE((void *)(intptr_t)lineno),
                RD_KAFKA_V_END);
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
            rd_kafka_poll(rk, 100); /* the queue drains as deliveries come back */
        }
        if (err) {
            fprintf(stderr, "sluice produce: line %lld: %s\n", lineno, rd_kafka_err2str(err));
            status = 1;
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    if (ferror(stdin)) {
        fprintf(stderr, "sluice produce: reading stdin: %s\n", strerror(errno));
        status = 1;
    }
    /* Every delivery report, however long it takes (each record fails at
     * message.timeout.ms at the latest). */
    while (rd_kafka_outq_len(rk) > 0) rd_kafka_flush(rk, 1000);
    if (k.failed) {
        fprintf(stderr,
                "sluice produce: line %lld: not delivered to %s: %s (%lld record%s not "
                "delivered in all)\n",
                k.first_line, bootstrap, k.first_err, k.failed, k.failed == 1 ? "" : "s");
        status = 1;
    }
fail:
    free(line);
    if (md) rd_kafka_metadata_destroy(md);
    if (rk) rd_kafka_destroy(rk);
    return status;
}

/* ---- consume ------------------------------------------------------------------------ */

static volatile sig_atomic_t kstop;

static void on_stop(int sig)
{
    (void)sig;
    kstop = 1;
}

typedef struct kpart {
    bool assigned, eof;
    int64_t next;      /* offset after the last record printed (-1: none) */
    int64_t written;   /* next when stdout was last flushed without error */
    int64_t committed; /* last committed (-1: none) */
} kpart;

typedef struct kconsumer {
    kctx k;
    rd_kafka_t *rk;
    const char *topic;
    const cli_kafka_consume_opts *o;
    kpart *p;
    int32_t nparts;
    int status;
} kconsumer;

/* Standard output flushed: 0 written (written[] advances), 1 closed by its
 * reader (end quietly), -1 failed (reported once). */
static int kflush(kconsumer *c)
{
    static int reported;
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) {
        for (int32_t i = 0; i < c->nparts; i++) c->p[i].written = c->p[i].next;
        return 0;
    }
    int e = errno;
    if (cli_output_closed() || e == EPIPE) return 1;
    if (!reported++)
        fprintf(stderr, "sluice consume: cannot write standard output%s%s\n", e ? ": " : "",
                e ? strerror(e) : "");
    return -1;
}

/* Commit written offsets of the assigned partitions (all = also those
 * being revoked: the caller passes them in only). */
static int kcommit(kconsumer *c, const rd_kafka_topic_partition_list_t *only)
{
    if (!c->o->group) return 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (int32_t i = 0; i < c->nparts; i++) {
        kpart *kp = &c->p[i];
        if (!kp->assigned || kp->written < 0 || kp->written == kp->committed) continue;
        if (only && !rd_kafka_topic_partition_list_find(only, c->topic, i)) continue;
        rd_kafka_topic_partition_list_add(l, c->topic, i)->offset = kp->written;
    }
    int rc = 0;
    if (l->cnt) {
        rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, l, 0);
        for (int j = 0; !err && j < l->cnt; j++)
            if (l->elems[j].err) err = l->elems[j].err;
        if (err) {
            fprintf(stderr, "sluice consume: commit to group '%s' failed: %s\n", c->o->group,
                    rd_kafka_err2str(err));
            rc = 1;
        } else {
            for (int j = 0; j < l->cnt; j++)
                c->p[l->elems[j].partition].committed = l->elems[j].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* Start l's partitions: the group's committed offset, else -o. */
static void kassign(kconsumer *c, rd_kafka_topic_partition_list_t *l)
{
    const cli_kafka_consume_opts *o = c->o;
    if (o->group) {
        rd_kafka_resp_err_t err = rd_kafka_committed(c->rk, l, CLI_KAFKA_CONNECT_TIMEOUT_S * 1000);
        if (err) { /* the group's offsets unknown: reading from -o may read records again */
            fprintf(stderr,
                    "sluice consume: cannot fetch the committed offsets of group '%s': %s\n",
                    o->group, rd_kafka_err2str(err));
            c->status = 1;
            kstop = 1;
            return;
        }
    }
    for (int j = 0; j < l->cnt; j++) {
        rd_kafka_topic_partition_t *e = &l->elems[j];
        int64_t committed = o->group && !e->err ? e->offset : -1;
        if (committed >= 0)
            e->offset = committed;
        else if (o->rel)
            e->offset = RD_KAFKA_OFFSET_TAIL(-o->offset);
        else if (o->offset == SL_OFFSET_BEGINNING)
            e->offset = RD_KAFKA_OFFSET_BEGINNING;
        else if (o->offset == SL_OFFSET_END)
            e->offset = RD_KAFKA_OFFSET_END;
        else
            e->offset = o->offset;
        e->err = 0;
        if (e->partition >= 0 && e->partition < c->nparts) {
            kpart *kp = &c->p[e->partition];
            kp->assigned = true;
            kp->eof = false;
            kp->next = kp->written = committed;
            kp->committed = committed;
        }
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, l);
    if (err) {
        fprintf(stderr, "sluice consume: cannot assign partitions of '%s': %s\n", c->topic,
                rd_kafka_err2str(err));
        c->status = 1;
        kstop = 1;
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    kconsumer *c = opaque; /* the consumer's opaque is its kconsumer */
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        kassign(c, l);
        return;
    }
    /* Revoked: commit what was written of them, then give them up. */
    if (kflush(c) == 0 && kcommit(c, l)) c->status = 1;
    for (int j = 0; j < l->cnt; j++)
        if (l->elems[j].partition >= 0 && l->elems[j].partition < c->nparts)
            c->p[l->elems[j].partition].assigned = false;
    rd_kafka_assign(rk, NULL);
}

static bool all_at_end(const kconsumer *c)
{
    int32_t n = 0;
    for (int32_t i = 0; i < c->nparts; i++) {
        if (!c->p[i].assigned) continue;
        if (!c->p[i].eof) return false;
        n++;
    }
    return n > 0;
}

/* A consumer error that ends the run (others are retried by librdkafka). */
static bool fatal_consume_error(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || e == RD_KAFKA_RESP_ERR__FATAL ||
           e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
}

int cli_kafka_consume(const char *bootstrap, const char *topic, const cli_kafka_consume_opts *o)
{
    char gid[64];
    snprintf(gid, sizeof gid, "sluice-consume-%ld", (long)getpid());
    const char *kv[] = {"group.id",
                        o->group ? o->group : gid,
                        "enable.auto.commit",
                        "false",
                        "enable.auto.offset.store",
                        "false",
                        "enable.partition.eof",
                        "true",
                        "auto.offset.reset",
                        "error",
                        "session.timeout.ms",
                        "10000",
                        "isolation.level",
                        o->read_committed ? "read_committed" : "read_uncommitted",
                        NULL};
    kconsumer c = {.k = {.cmd = "consume", .bootstrap = bootstrap}, .topic = topic, .o = o};
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *l = NULL;
    bool subscribed = false;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    kstop = 0;
    int status = 1;
    rd_kafka_conf_t *conf = kafka_conf(&c.k, kv);
    if (!conf) goto fail;
    if (o->group && o->partition < 0) rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, &c); /* c.k is its first member: on_error sees a kctx */
    if (!(c.rk = kafka_new(&c.k, RD_KAFKA_CONSUMER, conf))) goto fail;
    if (!(md = kafka_reach(&c.k, c.rk))) goto fail;
    const struct rd_kafka_metadata_topic *t = kafka_topic(&c.k, md, topic);
    if (!t) goto fail;
    if (o->partition >= 0 && (status = check_partition(&c.k, topic, t, o->partition))) goto fail;
    status = 1;
    c.nparts = t->partition_cnt;
    if (!(c.p = calloc((size_t)(c.nparts ? c.nparts : 1), sizeof *c.p))) {
        fprintf(stderr, "sluice consume: out of memory\n");
        goto fail;
    }
    for (int32_t i = 0; i < c.nparts; i++) c.p[i].next = c.p[i].written = c.p[i].committed = -1;
    rd_kafka_poll_set_consumer(c.rk);
    l = rd_kafka_topic_partition_list_new(c.nparts ? c.nparts : 1);
    if (o->group && o->partition < 0) {
        rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t err = rd_kafka_subscribe(c.rk, l);
        if (err) {
            fprintf(stderr, "sluice consume: cannot join group '%s': %s\n", o->group,
                    rd_kafka_err2str(err));
            goto fail;
        }
        subscribed = true;
    } else {
        for (int32_t i = 0; i < c.nparts; i++)
            if (o->partition < 0 || i == o->partition)
                rd_kafka_topic_partition_list_add(l, topic, i);
        kassign(&c, l);
        if (c.status) goto fail;
    }
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    status = 0;
    long long printed = 0, unflushed = 0;
    int os = 0;
    while (!kstop && (o->count < 0 || printed < o->count)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c.rk, 500);
        if (c.k.down) { /* every broker lost (on_error) */
            fprintf(stderr, "sluice consume: %s Kafka broker %s: %s\n",
                    o->exit_at_end ? "lost" : "warning: lost (retrying)", bootstrap,
                    c.k.reason[0] ? c.k.reason : "all brokers are down");
            c.k.down = 0;
            c.k.reason[0] = '\0';
            if (o->exit_at_end) {
                if (m) rd_kafka_message_destroy(m);
                status = 1;
                break;
            }
        }
        if (!m || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m) {
                if (m->partition >= 0 && m->partition < c.nparts) c.p[m->partition].eof = true;
                rd_kafka_message_destroy(m);
            }
            if ((os = kflush(&c)) != 0) break;
            unflushed = 0;
            if (kcommit(&c, NULL)) {
                status = 1;
                break;
            }
            if (o->exit_at_end && all_at_end(&c)) break;
            continue;
        }
        if (m->err) {
            bool fatal = fatal_consume_error(m->err);
            if (fatal)
                fprintf(stderr, "sluice consume: topic '%s' partition %d: %s\n", topic,
                        m->partition, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (fatal) {
                status = 1;
                break;
            }
            continue;
        }
        if (m->partition >= 0 && m->partition < c.nparts && c.p[m->partition].assigned) {
            sl_message sm = {.partition = m->partition,
                             .offset = m->offset,
                             .timestamp = rd_kafka_message_timestamp(m, NULL),
                             .key = m->key,
                             .key_len = m->key_len,
                             .value = m->payload,
                             .value_len = m->len};
            cli_print_msg(o->fmt, topic, &sm);
            c.p[m->partition].next = m->offset + 1;
            c.p[m->partition].eof = false;
            printed++;
            if (++unflushed >= 4096) {
                if ((os = kflush(&c)) != 0) {
                    rd_kafka_message_destroy(m);
                    break;
                }
                unflushed = 0;
            }
        }
        rd_kafka_message_destroy(m);
        if (ferror(stdout)) break; /* kflush below tells closed from failed */
    }
    if (os == 0) os = kflush(&c);
    if (kcommit(&c, NULL)) status = 1;
    if (os < 0) status = 1;
    if (c.status) status = 1;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
fail:
    if (l) rd_kafka_topic_partition_list_destroy(l);
    if (md) rd_kafka_metadata_destroy(md);
    if (c.rk) {
        if (subscribed) rd_kafka_unsubscribe(c.rk);
        rd_kafka_consumer_close(c.rk);
        rd_kafka_destroy(c.rk);
    }
    free(c.p);
    return status;
}

/* ---- topic -------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int admin_status(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION || e == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS ||
                   e == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR ||
                   e == RD_KAFKA_RESP_ERR_INVALID_CONFIG
               ? 2
               : 1;
}

/* Run create or delete through the admin API; the per-topic result. */
static int topic_admin(kctx *k, rd_kafka_t *rk, const char *name, const sl_topic_conf *conf,
                       int replication, bool create)
{
    char errstr[512];
    int status = 1;
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_DeleteTopic_t *dt = NULL;
    rd_kafka_event_t *ev = NULL;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(
        rk, create ? RD_KAFKA_ADMIN_OP_CREATETOPICS : RD_KAFKA_ADMIN_OP_DELETETOPICS);
    int tmo = CLI_KAFKA_CONNECT_TIMEOUT_S * 1000;
    if (rd_kafka_AdminOptions_set_request_timeout(ao, tmo, errstr, sizeof errstr) ||
        rd_kafka_AdminOptions_set_operation_timeout(ao, tmo, errstr, sizeof errstr))
        goto msg;
    if (create) {
        nt = rd_kafka_NewTopic_new(name, conf->partitions, replication, errstr, sizeof errstr);
        if (!nt) goto msg;
        sl_topic_conf d;
        sl_topic_conf_init(&d);
        char v[32];
        if (conf->compact) rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
        if (conf->retention_bytes != d.retention_bytes) {
            snprintf(v, sizeof v, "%" PRId64, conf->retention_bytes);
            rd_kafka_NewTopic_set_config(nt, "retention.bytes", v);
        }
        if (conf->retention_ms != d.retention_ms) {
            snprintf(v, sizeof v, "%" PRId64, conf->retention_ms);
            rd_kafka_NewTopic_set_config(nt, "retention.ms", v);
        }
        if (conf->segment_bytes != d.segment_bytes) {
            snprintf(v, sizeof v, "%" PRId64, conf->segment_bytes);
            rd_kafka_NewTopic_set_config(nt, "segment.bytes", v);
        }
        rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
    } else {
        dt = rd_kafka_DeleteTopic_new(name);
        rd_kafka_DeleteTopics(rk, &dt, 1, ao, q);
    }
    ev = rd_kafka_queue_poll(q, tmo + 5000);
    if (!ev) {
        fprintf(stderr, "sluice %s: no answer from Kafka broker %s within %d s\n", k->cmd,
                k->bootstrap, CLI_KAFKA_CONNECT_TIMEOUT_S + 5);
        goto fail;
    }
    if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "sluice %s: %s\n", k->cmd, rd_kafka_event_error_string(ev));
        status = admin_status(rd_kafka_event_error(ev));
        goto fail;
    }
    const rd_kafka_topic_result_t **res;
    size_t n = 0;
    if (create)
        res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    else
        res = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (!e) continue;
        const char *s = rd_kafka_topic_result_error_string(res[i]);
        fprintf(stderr, "sluice %s: topic '%s': %s\n", k->cmd, name, s ? s : rd_kafka_err2str(e));
        status = admin_status(e);
        goto fail;
    }
    status = 0;
    goto fail;
msg:
    fprintf(stderr, "sluice %s: %s\n", k->cmd, errstr);
    status = 2;
fail:
    if (ev) rd_kafka_event_destroy(ev);
    if (nt) rd_kafka_NewTopic_destroy(nt);
    if (dt) rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    return status;
}

static int topic_describe(kctx *k, rd_kafka_t *rk, const struct rd_kafka_metadata *md,
                          const char *name)
{
    const struct rd_kafka_metadata_topic *t = kafka_topic(k, md, name);
    if (!t) return 1;
    printf("topic %s: %d partition%s\n", name, t->partition_cnt, t->partition_cnt == 1 ? "" : "s");
    printf("%9s %8s %8s %8s %14s %14s\n", "partition", "leader", "replicas", "in_sync",
           "first_offset", "next_offset");
    int status = 0;
    for (int32_t p = 0; p < t->partition_cnt; p++) {
        const struct rd_kafka_metadata_partition *mp = NULL;
        for (int i = 0; i < t->partition_cnt; i++)
            if (t->partitions[i].id == p) mp = &t->partitions[i];
        if (!mp) continue;
        int64_t lo = -1, hi = -1;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            rk, name, p, &lo, &hi, CLI_KAFKA_CONNECT_TIMEOUT_S * 1000);
        if (err) {
            fprintf(stderr, "sluice %s: topic '%s' partition %d: offsets: %s\n", k->cmd, name, p,
                    rd_kafka_err2str(err));
            status = 1;
        }
        printf("%9d %8d %8d %8d %14" PRId64 " %14" PRId64 "\n", p, mp->leader, mp->replica_cnt,
               mp->isr_cnt, lo, hi);
    }
    return status;
}

int cli_kafka_topic(const char *bootstrap, const char *sub, const char *name,
                    const sl_topic_conf *conf, int replication)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "topic %.40s", sub);
    kctx k = {.cmd = cmd, .bootstrap = bootstrap};
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_t *rk = NULL;
    const char **names = NULL;
    int status = 1;
    rd_kafka_conf_t *kc = kafka_conf(&k, NULL);
    if (!kc) goto fail;
    if (!(rk = kafka_new(&k, RD_KAFKA_PRODUCER, kc))) goto fail;
    if (!(md = kafka_reach(&k, rk))) goto fail;
    if (!strcmp(sub, "list")) {
        if (!(names = calloc((size_t)md->topic_cnt + 1, sizeof *names))) goto fail;
        size_t n = 0;
        for (int i = 0; i < md->topic_cnt; i++)
            if (strncmp(md->topics[i].topic, "__", 2)) names[n++] = md->topics[i].topic;
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) printf("%s\n", names[i]);
        status = 0;
    } else if (!strcmp(sub, "describe")) {
        status = topic_describe(&k, rk, md, name);
    } else {
        status = topic_admin(&k, rk, name, conf, replication, !strcmp(sub, "create"));
    }
fail:
    free(names);
    if (md) rd_kafka_metadata_destroy(md);
    if (rk) rd_kafka_destroy(rk);
    return status;
}

/* ---- group describe ----------------------------------------------------------------- */

int cli_kafka_group_describe(const char *bootstrap, const char *group, const char *topic)
{
    kctx k = {.cmd = "group describe", .bootstrap = bootstrap};
    const char *kv[] = {"group.id", group, "enable.auto.commit", "false", NULL};
    rd_kafka_conf_t *conf = kafka_conf(&k, kv);
    if (!conf) return 1;
    rd_kafka_t *rk = kafka_new(&k, RD_KAFKA_CONSUMER, conf);
    if (!rk) return 1;
    int rc = 1;
    const struct rd_kafka_metadata *md = kafka_reach(&k, rk);
    if (!md) goto out;
    const struct rd_kafka_metadata_topic *t = kafka_topic(&k, md, topic);
    if (!t) goto out_md;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(t->partition_cnt);
    for (int i = 0; i < t->partition_cnt; i++)
        rd_kafka_topic_partition_list_add(l, topic, t->partitions[i].id);
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, CLI_KAFKA_CONNECT_TIMEOUT_S * 1000);
    if (e) {
        fprintf(stderr, "sluice %s: offsets of group '%s' on %s: %s\n", k.cmd, group, bootstrap,
                rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(l);
        goto out_md;
    }
    rc = 0;
    long long total = 0;
    printf("%-24s %9s %12s %12s %10s\n", "topic", "partition", "committed", "end", "lag");
    for (int i = 0; i < l->cnt && !rc; i++) {
        const rd_kafka_topic_partition_t *p = &l->elems[i];
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, topic, p->partition, &lo, &hi,
                                             CLI_KAFKA_CONNECT_TIMEOUT_S * 1000);
        if (e) {
            fprintf(stderr, "sluice %s: topic '%s' partition %d: %s\n", k.cmd, topic,
                    (int)p->partition, rd_kafka_err2str(e));
            rc = 1;
            break;
        }
        if (p->err) {
            fprintf(stderr, "sluice %s: group '%s' partition %d: %s\n", k.cmd, group,
                    (int)p->partition, rd_kafka_err2str(p->err));
            rc = 1;
            break;
        }
        long long lag = p->offset >= 0 ? hi - p->offset : hi - lo;
        total += lag;
        if (p->offset >= 0)
            printf("%-24s %9d %12lld %12lld %10lld\n", topic, (int)p->partition,
                   (long long)p->offset, (long long)hi, lag);
        else
            printf("%-24s %9d %12s %12lld %10lld\n", topic, (int)p->partition, "-", (long long)hi,
                   lag);
    }
    if (!rc) printf("total lag %lld\n", total);
    rd_kafka_topic_partition_list_destroy(l);
out_md:
    rd_kafka_metadata_destroy(md);
out:
    rd_kafka_destroy(rk);
    return rc;
}
