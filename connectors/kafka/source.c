/*
 * connectors/kafka/source.c - a Kafka topic as a pipeline source, on
 * librdkafka (sluice/kafka.h is the contract).
 *
 * Splits. enumerate() asks the cluster for the topic's metadata (one
 * temporary handle, 10 s at most) and declares one split per partition (or
 * per listed partition, each checked to exist). A split's description:
 *
 *   offset  size  field
 *   0       4     partition (int32, host order)
 *   4       8     end (int64, host order): with until_end, the first offset
 *                 not to read, as of the start: ListOffsets(latest) with the
 *                 conf's isolation, i.e. the high watermark, or the last
 *                 stable offset under read_committed (librdkafka sends the
 *                 handle's isolation.level in ListOffsets v2+, and Kafka and
 *                 sluice's server answer the LSO to read_committed); else -1
 *
 * Readers. One consumer handle (rd_kafka_t) per source instance, shared by
 * the instance's splits: the engine opens, polls and closes all splits of
 * an instance through the same sl_ctx, so a small process-wide registry
 * (one mutex, touched at open, close and commit, never per record) maps the
 * ctx to its handle. Each split reads its partition's own queue
 * (rd_kafka_queue_get_partition, un-forwarded from the consumer queue), with
 * timeout 0: nothing there is SL_POLL_WAIT, so the engine's idleness rule
 * sees "polled and had nothing". Offsets are assigned explicitly
 * (rd_kafka_assign, at the instance's first poll, so seek() after open
 * wins), never committed by librdkafka (enable.auto.commit=false,
 * enable.auto.offset.store=false); the group is conf->group_id or a private
 * "sluice-PID-NODE" that never commits.
 *
 * Positions. A split's position is the next offset it will read (int64,
 * little-endian host order, 8 bytes). It is concrete from open on:
 * SL_OFFSET_BEGINNING / _END / SL_KAFKA_OFFSET_COMMITTED are resolved at
 * open (ListOffsets, the group's committed offset or else the beginning).
 * It moves past every record emitted and, on PARTITION_EOF
 * (enable.partition.eof), to the offset the fetcher reached (at most end),
 * which skips transaction markers and aborted records: so a bounded split
 * ends exactly at its end even when the last offsets before it are
 * markers, and never stops early (it ends only when position >= end, or
 * at the first record at or past end, where the position is set to end).
 *
 * Records: the broker source's layout and rules (connectors/broker/
 * connector.c): key length (0xFFFFFFFF: no key), key, value; or what parse
 * makes of the value, with its refusals as dead letters "partition P offset
 * O: reason". Event time: the message timestamp; -1 (none) is SL_TIME_NONE.
 *
 * Errors. A partition error that cannot heal (offset out of range, topic or
 * partition gone, not authorized, a fatal client error) fails the job with
 * one line naming topic and partition; others (a broker restarting) are
 * librdkafka's to retry, with a line on stderr, unless every broker stays
 * unreachable longer than conf->down_ms: librdkafka says when all brokers
 * went down (error_cb) but not when one came back, so its statistics
 * (every second) end the outage when they show a broker UP.
 *
 * Commit (version 3 hook). With a group id and unless a Kafka sink of the
 * pipeline claimed the group (slk_offsets_claimed: it sends the offsets in
 * its transaction), the positions of a completed checkpoint are committed
 * to the group synchronously on a handle of the node; a failure is a
 * warning on stderr, never a failed job. At a barrier the positions also go
 * to the offsets registry (slk_offsets_put) for such a sink.
 *
 * Trace context: a message's first `traceparent` header becomes its
 * record's trace context (connectors/topic_record.c), with its
 * `tracestate` headers joined into one list; a malformed one is ignored and counted
 * (sl_pipeline_trace_malformed).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include "connectors/kafka/kafka_int.h"
#include "connectors/topic_record.h"
#include "sluice/broker.h"
#include "sluice/error.h"
#include "sluice/kafka.h"

#define KS_TIMEOUT_MS 10000 /* metadata, ListOffsets, committed, commit */
#define KS_BATCH      256   /* messages taken from a partition queue at once */
#define KS_DESC_LEN   12

/* --- the shared handle of an instance ------------------------------------------- */

typedef struct ksplit ksplit;

typedef struct kcons {
    struct kcons *next;
    const sl_ctx *ctx; /* the instance */
    const void *pipeline;
    const char *node; /* sl_ctx_name: lives as long as the pipeline */
    int refs;         /* splits open + commits running */
    rd_kafka_t *rk;
    ksplit **splits; /* the instance's open splits */
    int n_splits, cap_splits;
    int assigned;
    char fatal[256];    /* set by on_error (on the polling thread) */
    int64_t down_since; /* every broker down since (ms; 0: one is up), by on_error / on_stats */
} kcons;

struct ksplit {
    kcons *kc;
    rd_kafka_queue_t *q;
    int32_t partition;
    int64_t end; /* -1: unbounded */
    int64_t pos; /* next offset */
    int ended;
    /* a task of a repartition topic: the last watermark marker of each
     * upstream (input) task; n_up is 0 otherwise */
    int32_t n_up;
    int64_t *up_wm;
    uint8_t *up_idle;
    uint8_t *rec; /* parse output */
    rd_kafka_message_t *msgs[KS_BATCH];
    slc_state st; /* the message's tracestate headers */
};

static pthread_mutex_t kc_lock = PTHREAD_MUTEX_INITIALIZER;
static kcons *kc_list;

/* conf->down_ms with its default: how long the source waits out brokers
 * that do not answer before it fails the job (< 0: for ever). */
static int64_t down_budget(const sl_kafka_source_conf *c)
{
    return c->down_ms ? c->down_ms : 60000;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kcons *kc = opaque;
    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[200];
        rd_kafka_fatal_error(rk, why, sizeof why);
        snprintf(kc->fatal, sizeof kc->fatal, "%s", why);
        return;
    }
    if (slk_err_fatal((rd_kafka_resp_err_t)err)) {
        if (!kc->fatal[0]) snprintf(kc->fatal, sizeof kc->fatal, "%s", reason);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !kc->down_since)
        kc->down_since = sl_clock_ms();
    /* Everything else is librdkafka's to retry (brokers down, timeouts);
     * those two its log already says. */
    if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        fprintf(stderr, "kafka source: %s\n", reason);
}

/* Statistics (served by rd_kafka_poll): a broker in state UP ends an outage. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    kcons *kc = opaque;
    static const char up[] = "\"state\":\"UP\"";
    (void)rk;
    if (kc->down_since && memmem(json, len, up, sizeof up - 1)) kc->down_since = 0;
    return 0; /* librdkafka frees json */
}

static int has_prop(const char *const *props, const char *key)
{
    size_t kl = strlen(key);
    for (; props && *props; props++)
        if (strncmp(*props, key, kl) == 0 && (*props)[kl] == '=') return 1;
    return 0;
}

/* A consumer handle: sluice's settings unless props set them. NULL with err. */
static rd_kafka_t *new_consumer(const sl_kafka_source_conf *c, const char *group, void *opaque,
                                char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = slk_conf_new(c->bootstrap, c->props, err, errlen);
    if (!conf) return NULL;
    const char *set[][2] = {
        {"group.id", group},
        {"isolation.level",
         c->isolation == SL_READ_UNCOMMITTED ? "read_uncommitted" : "read_committed"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
        {"auto.offset.reset", "error"},
        {"statistics.interval.ms", opaque ? "1000" : "0"},
        /* Prefetch by bytes (queued.max.messages.kbytes, 64 MiB a partition),
         * not by librdkafka's 100,000 messages: with that count the fetcher
         * paused and resumed under a source reading small records, and ysb
         * through Kafka waited on fetches half of its run (2.2 s against
         * 0.9 s for 1M events). */
        {"queued.min.messages", "10000000"},
    };
    char why[256];
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
        if (has_prop(c->props, set[i][0])) continue;
        if (rd_kafka_conf_set(conf, set[i][0], set[i][1], why, sizeof why)) {
            snprintf(err, errlen, "librdkafka configuration: %s", why);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    if (opaque) {
        rd_kafka_conf_set_error_cb(conf, on_error);
        rd_kafka_conf_set_stats_cb(conf, on_stats);
        rd_kafka_conf_set_opaque(conf, opaque);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        snprintf(err, errlen, "cannot make a consumer: %s", why);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static void *destroy_main(void *rk)
{
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

static void kc_free(kcons *kc)
{
    if (!kc) return;
    /* librdkafka 2.0.2 can leak a broker reference after a partition of a
     * deleted topic (the fatal errors here), and its destroy then waits
     * forever: a handle that saw one is destroyed on a thread of its own,
     * so the job still ends (with its one-line error). */
    pthread_t t;
    pthread_attr_t a;
    if (kc->rk && kc->fatal[0] && pthread_attr_init(&a) == 0) {
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int bad = pthread_create(&t, &a, destroy_main, kc->rk);
        pthread_attr_destroy(&a);
        if (!bad) kc->rk = NULL;
    }
    if (kc->rk) {
        /* Served and dropped first: an error event left in a queue holds a
         * partition, and destroy would wait for it forever. */
        rd_kafka_assign(kc->rk, NULL);
        rd_kafka_poll(kc->rk, 0);
        rd_kafka_consumer_close(kc->rk);
        rd_kafka_destroy(kc->rk);
    }
    free(kc->splits);
    free(kc);
}

/* Drop one reference (under kc_lock when the registry holds kc). */
static void kc_release(kcons *kc)
{
    pthread_mutex_lock(&kc_lock);
    int last = --kc->refs == 0;
    if (last)
        for (kcons **pp = &kc_list; *pp; pp = &(*pp)->next)
            if (*pp == kc) {
                *pp = kc->next;
                break;
            }
    pthread_mutex_unlock(&kc_lock);
    if (last) kc_free(kc);
}

/* The instance's handle, made on its first split. */
static int kc_get(sl_ctx *ctx, const sl_kafka_source_conf *c, kcons **out)
{
    pthread_mutex_lock(&kc_lock);
    kcons *kc = kc_list;
    while (kc && kc->ctx != ctx) kc = kc->next;
    if (kc) kc->refs++;
    pthread_mutex_unlock(&kc_lock);
    if (kc) {
        *out = kc;
        return 0;
    }
    if (!(kc = calloc(1, sizeof(*kc)))) return SL_ENOMEM;
    kc->ctx = ctx;
    kc->pipeline = sl_ctx_pipeline(ctx);
    kc->node = sl_ctx_name(ctx);
    kc->refs = 1;
    char group[256], err[512];
    if (c->group_id)
        snprintf(group, sizeof group, "%s", c->group_id);
    else
        snprintf(group, sizeof group, "sluice-%ld-%s", (long)getpid(), kc->node);
    if (!(kc->rk = new_consumer(c, group, kc, err, sizeof err))) {
        free(kc);
        return sl_ctx_fail(ctx, SL_EINVAL, "kafka source '%s': %s", sl_ctx_name(ctx), err);
    }
    pthread_mutex_lock(&kc_lock);
    kc->next = kc_list;
    kc_list = kc;
    pthread_mutex_unlock(&kc_lock);
    *out = kc;
    return 0;
}

int slk_source_handles(void)
{
    int n = 0;
    pthread_mutex_lock(&kc_lock);
    for (kcons *kc = kc_list; kc; kc = kc->next) n++;
    pthread_mutex_unlock(&kc_lock);
    return n;
}

/* --- enumerate --------------------------------------------------------------------- */

static int ksrc_enumerate(sl_split_enum *e, void *conf)
{
    const sl_kafka_source_conf *c = conf;
    if (!c || !c->bootstrap || !c->topic)
        return sl_split_fail(e, SL_EINVAL, "kafka source: needs bootstrap servers and a topic");
    if (c->isolation != SL_READ_COMMITTED && c->isolation != SL_READ_UNCOMMITTED)
        return sl_split_fail(e, SL_EINVAL,
                             "kafka source: isolation %d is neither SL_READ_COMMITTED nor "
                             "SL_READ_UNCOMMITTED",
                             c->isolation);
    if (c->start == SL_KAFKA_OFFSET_COMMITTED && !c->group_id)
        return sl_split_fail(e, SL_EINVAL,
                             "kafka source: start SL_KAFKA_OFFSET_COMMITTED needs a group_id");
    if (c->start < 0 && c->start != SL_OFFSET_BEGINNING && c->start != SL_OFFSET_END &&
        c->start != SL_KAFKA_OFFSET_COMMITTED)
        return sl_split_fail(e, SL_EINVAL, "kafka source: bad start offset %" PRId64, c->start);
    char err[512], group[64];
    snprintf(group, sizeof group, "sluice-%ld-enumerate", (long)getpid());
    const struct rd_kafka_metadata *md = NULL;
    int rc = 0;
    rd_kafka_t *rk = new_consumer(c, group, NULL, err, sizeof err);
    if (!rk) return sl_split_fail(e, SL_EINVAL, "kafka source: %s", err);
    /* All topics: asking for one would let a cluster that auto-creates make it. */
    rd_kafka_resp_err_t ke = rd_kafka_metadata(rk, 1, NULL, &md, KS_TIMEOUT_MS);
    if (ke) {
        rc = sl_split_fail(e, SL_EIO, "kafka source: cannot reach %s for topic '%s': %s",
                           c->bootstrap, c->topic, rd_kafka_err2str(ke));
        goto done;
    }
    const struct rd_kafka_metadata_topic *t = NULL;
    for (int i = 0; i < md->topic_cnt && !t; i++)
        if (strcmp(md->topics[i].topic, c->topic) == 0) t = &md->topics[i];
    if (!t || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        rc = sl_split_fail(e, SL_ENOENT, "kafka source: topic '%s' does not exist on %s", c->topic,
                           c->bootstrap);
        goto done;
    }
    if (t->err) {
        rc = sl_split_fail(e, SL_EIO, "kafka source: topic '%s' on %s: %s", c->topic, c->bootstrap,
                           rd_kafka_err2str(t->err));
        goto done;
    }
    int n = c->partitions && c->n_partitions > 0 ? c->n_partitions : t->partition_cnt;
    for (int i = 0; i < n && !rc; i++) {
        int32_t p = c->partitions && c->n_partitions > 0 ? c->partitions[i] : i;
        int found = 0;
        for (int j = 0; j < t->partition_cnt && !found; j++) found = t->partitions[j].id == p;
        if (!found) {
            rc = sl_split_fail(e, SL_ENOENT,
                               "kafka source: topic '%s' on %s has no partition %d (it has %d)",
                               c->topic, c->bootstrap, (int)p, t->partition_cnt);
            break;
        }
        int64_t end = -1;
        if (c->until_end) {
            int64_t lo, hi;
            ke = rd_kafka_query_watermark_offsets(rk, c->topic, p, &lo, &hi, KS_TIMEOUT_MS);
            if (ke) {
                rc = sl_split_fail(e, SL_EIO,
                                   "kafka source: topic '%s' partition %d on %s: cannot read "
                                   "its end offset: %s",
                                   c->topic, (int)p, c->bootstrap, rd_kafka_err2str(ke));
                break;
            }
            end = hi;
        }
        unsigned char d[KS_DESC_LEN];
        memcpy(d, &p, 4);
        memcpy(d + 4, &end, 8);
        rc = sl_split_add(e, d, sizeof d);
    }
done:
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return rc;
}

/* --- open and close ---------------------------------------------------------------- */

static void ksrc_close(void *self)
{
    ksplit *s = self;
    if (!s) return;
    kcons *kc = s->kc;
    if (kc) {
        for (int i = 0; i < kc->n_splits; i++)
            if (kc->splits[i] == s) {
                kc->splits[i] = kc->splits[--kc->n_splits];
                break;
            }
    }
    if (s->q) {
        for (rd_kafka_message_t *m; (m = rd_kafka_consume_queue(s->q, 0));)
            rd_kafka_message_destroy(m);
        rd_kafka_queue_destroy(s->q);
    }
    free(s->rec);
    free(s->up_wm);
    free(s->up_idle);
    free(s);
    if (kc) kc_release(kc);
}

/* How long the split's opening calls (the committed offset, ListOffsets)
 * go on retrying an error a retry can heal: the same budget as an outage
 * while reading (conf->down_ms), so a broker or coordinator that is slow to
 * answer for a moment (a loaded machine, a coordinator still being found)
 * is waited out here as it is there. A cancel is seen between attempts. */

static int open_retry(sl_ctx *ctx, const sl_kafka_source_conf *c, int64_t t0,
                      rd_kafka_resp_err_t ke)
{
    if (!ke || slk_err_fatal(ke) || sl_ctx_canceled(ctx)) return 0;
    int64_t down_ms = down_budget(c);
    if (down_ms > 0 && sl_clock_ms() - t0 >= down_ms) return 0;
    return 1;
}

/* The concrete offset the split starts at (conf->start resolved). */
static int resolve_start(sl_ctx *ctx, const sl_kafka_source_conf *c, ksplit *s)
{
    rd_kafka_resp_err_t ke = 0;
    int64_t lo = 0, hi = 0, off = c->start, t0 = sl_clock_ms();
    if (off == SL_KAFKA_OFFSET_COMMITTED) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        if (!l) return SL_ENOMEM;
        rd_kafka_topic_partition_list_add(l, c->topic, s->partition);
        do {
            ke = rd_kafka_committed(s->kc->rk, l, KS_TIMEOUT_MS);
            if (!ke) ke = l->elems[0].err;
        } while (open_retry(ctx, c, t0, ke));
        off = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        if (ke)
            return sl_ctx_fail(ctx, SL_EIO,
                               "kafka source: topic '%s' partition %d: cannot read the "
                               "committed offset of group '%s': %s",
                               c->topic, (int)s->partition, c->group_id, rd_kafka_err2str(ke));
        if (off < 0) off = SL_OFFSET_BEGINNING; /* the group has none */
    }
    if (off == SL_OFFSET_BEGINNING || off == SL_OFFSET_END) {
        do {
            ke = rd_kafka_query_watermark_offsets(s->kc->rk, c->topic, s->partition, &lo, &hi,
                                                  KS_TIMEOUT_MS);
        } while (open_retry(ctx, c, t0, ke));
        if (ke)
            return sl_ctx_fail(ctx, SL_EIO,
                               "kafka source: topic '%s' partition %d: cannot read its "
                               "offsets: %s",
                               c->topic, (int)s->partition, rd_kafka_err2str(ke));
        off = off == SL_OFFSET_BEGINNING ? lo : hi;
    }
    s->pos = off;
    return 0;
}

static int ksrc_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    const sl_kafka_source_conf *c = sl_ctx_conf(ctx);
    if (!split->desc || split->desc_len != KS_DESC_LEN)
        return sl_ctx_fail(ctx, SL_EINVAL, "kafka source: bad split description");
    if (c->parse && c->max_len == 0)
        return sl_ctx_fail(ctx, SL_EINVAL, "kafka source: a parse callback needs max_len");
    if (!c->parse && sl_ctx_out_width(ctx, 0) != 0)
        return sl_ctx_fail(ctx, SL_EINVAL,
                           "kafka source: records are variable length without parse");
    ksplit *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    memcpy(&s->partition, split->desc, 4);
    memcpy(&s->end, (const uint8_t *)split->desc + 4, 8);
    int rc = 0;
    if (c->parse && !(s->rec = malloc(c->max_len))) {
        rc = SL_ENOMEM;
        goto fail;
    }
    if (c->task && c->task->reads_repartition) {
        s->n_up = c->task->upstreams;
        s->up_wm = malloc((size_t)s->n_up * sizeof(*s->up_wm));
        s->up_idle = calloc((size_t)s->n_up, 1);
        if (!s->up_wm || !s->up_idle) {
            rc = SL_ENOMEM;
            goto fail;
        }
        for (int32_t i = 0; i < s->n_up; i++) s->up_wm[i] = SL_TIME_MIN;
    }
    if ((rc = kc_get(ctx, c, &s->kc)) != 0) goto fail;
    kcons *kc = s->kc;
    if (kc->assigned) {
        rc = sl_ctx_fail(ctx, SL_ESTATE, "kafka source: a split opened after the first poll");
        goto fail;
    }
    if (kc->n_splits == kc->cap_splits) {
        int cap = kc->cap_splits ? kc->cap_splits * 2 : 8;
        ksplit **v = realloc(kc->splits, (size_t)cap * sizeof(*v));
        if (!v) {
            rc = SL_ENOMEM;
            goto fail;
        }
        kc->splits = v;
        kc->cap_splits = cap;
    }
    kc->splits[kc->n_splits++] = s;
    if (!(s->q = rd_kafka_queue_get_partition(kc->rk, c->topic, s->partition))) {
        rc = sl_ctx_fail(ctx, SL_ENOMEM, "kafka source: topic '%s' partition %d: no queue",
                         c->topic, (int)s->partition);
        goto fail;
    }
    /* Its messages stay in its own queue instead of the consumer's. */
    rd_kafka_queue_forward(s->q, NULL);
    if ((rc = resolve_start(ctx, c, s)) != 0) goto fail;
    *self = s;
    return 0;
fail:
    ksrc_close(s);
    return rc;
}

/* --- poll ------------------------------------------------------------------------------ */

/* The instance's first poll: assign every split that has something to read,
 * at its position. */
static int assign_all(sl_ctx *ctx, const sl_kafka_source_conf *c, kcons *kc)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(kc->n_splits);
    if (!l) return SL_ENOMEM;
    for (int i = 0; i < kc->n_splits; i++) {
        ksplit *s = kc->splits[i];
        if (s->end >= 0 && s->pos >= s->end) continue;
        rd_kafka_topic_partition_list_add(l, c->topic, s->partition)->offset = s->pos;
    }
    rd_kafka_resp_err_t ke = rd_kafka_assign(kc->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    kc->assigned = 1;
    if (ke)
        return sl_ctx_fail(ctx, SL_EIO, "kafka source: topic '%s': cannot assign partitions: %s",
                           c->topic, rd_kafka_err2str(ke));
    return 0;
}

/* Stop fetching a split that ended (its queue is no longer read). */
static void split_ended(const sl_kafka_source_conf *c, ksplit *s)
{
    s->ended = 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l) return;
    rd_kafka_topic_partition_list_add(l, c->topic, s->partition);
    rd_kafka_pause_partitions(s->kc->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* The message's trace context (its first `traceparent` header, with its
 * `tracestate` headers joined: connectors/topic_record.h), or NULL; a
 * malformed one is counted (connectors/topic_record.c). */
static const sl_trace_ctx *msg_trace(sl_ctx *ctx, ksplit *s, const rd_kafka_message_t *m,
                                     sl_trace_ctx *out)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL, *sv = NULL;
    size_t vl = 0, svl = 0;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get(h, 0, SLC_TRACEPARENT, &v, &vl))
        return NULL;
    slc_state_reset(&s->st);
    for (size_t k = 0; !rd_kafka_header_get(h, k, SLC_TRACESTATE, &sv, &svl); k++)
        slc_state_add(&s->st, sv, sv ? svl : 0);
    return slc_trace_read(ctx, v, v ? vl : 0, &s->st, out);
}

/* One message: its record or its dead letter. */
static int emit(sl_ctx *ctx, const sl_kafka_source_conf *c, ksplit *s, const rd_kafka_message_t *m)
{
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    sl_trace_ctx tc;
    slc_topic_msg tm = {.trace = msg_trace(ctx, s, m, &tc),
                        .key = m->key,
                        .key_len = m->key_len,
                        .value = m->payload,
                        .value_len = m->len,
                        .ts = ts == -1 ? SL_TIME_NONE : ts,
                        .partition = m->partition,
                        .offset = m->offset};
    return slc_topic_emit(ctx, &tm, c->parse, c->ud, c->max_len, s->rec);
}

/* A watermark marker of an upstream task (kafka_int.h): keep it, then
 * announce the minimum over the upstream tasks that are not idle. When the
 * last one goes idle, the split announces the largest watermark of them
 * all and goes idle, as Flink's watermark valve does: the windows the
 * last active task's watermark closed close, and an idle split holds the
 * minimum downstream no more. Returns 1 when m is no marker. */
static int marker(sl_ctx *ctx, const sl_kafka_source_conf *c, ksplit *s,
                  const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t vl = 0;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, SLK_WM_HEADER, &v, &vl))
        return 1;
    slk_wm w;
    if (slk_wm_unpack(v, vl, &w))
        return sl_ctx_fail(ctx, SL_ECORRUPT,
                           "kafka source: topic '%s' partition %d offset %" PRId64
                           ": a malformed watermark marker",
                           c->topic, (int)s->partition, m->offset);
    if (w.upstreams != s->n_up)
        return sl_ctx_fail(ctx, SL_ESTATE,
                           "kafka source: topic '%s' partition %d offset %" PRId64
                           ": a watermark marker of a group whose input has %d partitions, not "
                           "%d (did the input topic grow?)",
                           c->topic, (int)s->partition, m->offset, (int)w.upstreams, (int)s->n_up);
    if (w.wm > s->up_wm[w.upstream]) s->up_wm[w.upstream] = w.wm;
    s->up_idle[w.upstream] = (uint8_t)w.idle;
    int64_t min = SL_TIME_MAX, max = SL_TIME_MIN;
    int active = 0;
    for (int32_t i = 0; i < s->n_up; i++) {
        if (s->up_wm[i] > max) max = s->up_wm[i];
        if (s->up_idle[i]) continue;
        active = 1;
        if (s->up_wm[i] < min) min = s->up_wm[i];
    }
    if (active) return min > SL_TIME_MIN ? sl_ctx_watermark(ctx, min) : 0;
    int rc = max > SL_TIME_MIN ? sl_ctx_watermark(ctx, max) : 0;
    return rc ? rc : sl_ctx_idle(ctx, 1);
}

static int ksrc_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    ksplit *s = self;
    kcons *kc = s->kc;
    const sl_kafka_source_conf *c = sl_ctx_conf(ctx);
    if (s->ended || (s->end >= 0 && s->pos >= s->end)) {
        if (!s->ended) split_ended(c, s);
        return SL_POLL_END;
    }
    if (!kc->assigned) {
        int rc = assign_all(ctx, c, kc);
        if (rc) return rc;
    }
    rd_kafka_poll(kc->rk, 0); /* error_cb, stats_cb */
    if (kc->fatal[0])
        return sl_ctx_fail(ctx, SL_EIO, "kafka source: topic '%s' partition %d: %s", c->topic,
                           (int)s->partition, kc->fatal);
    int64_t down_ms = down_budget(c);
    if (kc->down_since && down_ms > 0 && sl_clock_ms() - kc->down_since > down_ms)
        return sl_ctx_fail(ctx, SL_EIO,
                           "kafka source: topic '%s' partition %d: no broker of %s reachable "
                           "for more than %" PRId64 " ms",
                           c->topic, (int)s->partition, c->bootstrap, down_ms);
    if (max > KS_BATCH) max = KS_BATCH;
    ssize_t n = rd_kafka_consume_batch_queue(s->q, 0, s->msgs, max);
    if (n < 0)
        return sl_ctx_fail(ctx, SL_EIO, "kafka source: topic '%s' partition %d: %s", c->topic,
                           (int)s->partition, rd_kafka_err2str(rd_kafka_last_error()));
    int rc = 0, got = 0;
    ssize_t i = 0;
    for (; i < n && !rc && !s->ended; i++) {
        rd_kafka_message_t *m = s->msgs[i];
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* The fetcher is at m->offset: markers and aborted records skipped. */
            int64_t at = s->end >= 0 && m->offset > s->end ? s->end : m->offset;
            if (at > s->pos) s->pos = at;
        } else if (m->err) {
            if (slk_err_fatal(m->err))
                rc = sl_ctx_fail(ctx, SL_EIO, "kafka source: topic '%s' partition %d: %s", c->topic,
                                 (int)s->partition, rd_kafka_message_errstr(m));
            else
                fprintf(stderr, "kafka source: topic '%s' partition %d: %s (retrying)\n", c->topic,
                        (int)s->partition, rd_kafka_message_errstr(m));
        } else if (m->offset < s->pos) {
            /* before the position (a re-fetch): already emitted */
        } else if (s->end >= 0 && m->offset >= s->end) {
            s->pos = s->end; /* past the end as of the start: not ours */
        } else {
            rc = s->n_up ? marker(ctx, c, s, m) : 1;
            if (rc == 0) {
                s->pos = m->offset + 1;
            } else if (rc == 1) {
                rc = emit(ctx, c, s, m);
                if (!rc) {
                    s->pos = m->offset + 1;
                    got++;
                }
            }
        }
        rd_kafka_message_destroy(m);
        if (!rc && s->end >= 0 && s->pos >= s->end) split_ended(c, s);
    }
    for (; i < n; i++) rd_kafka_message_destroy(s->msgs[i]);
    if (rc) return rc;
    /* Lag for the metrics: the high watermark librdkafka last fetched
     * (cached, no request), or the end this split reads to. */
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(kc->rk, c->topic, s->partition, &lo, &hi) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0)
        hi = s->end;
    if (s->end >= 0 && hi > s->end) hi = s->end;
    if (hi >= 0) sl_ctx_split_lag(ctx, c->topic, s->partition, hi > s->pos ? hi - s->pos : 0);
    if (s->ended) return got ? SL_POLL_MORE : SL_POLL_END;
    return n ? SL_POLL_MORE : SL_POLL_WAIT;
}

/* --- positions and commits ---------------------------------------------------------- */

/* Position: the next offset (int64, host order: little-endian on every
 * platform sluice builds on, so `sluice checkpoints` prints it as a
 * number). A split of a repartition topic adds its upstream tasks' last
 * watermarks, so that a restored task goes on from them:
 *
 *   offset  size  field
 *   0       8     next offset
 *   8       4     upstream tasks U
 *   12      8*U   per upstream task: its watermark (int64)
 *
 * Idleness is not kept: a restored split takes every upstream task for
 * active at its watermark until its next marker (the engine's restored
 * splits are active too), so a task that was idle and has data now holds
 * the minimum until its records are in.
 *
 * At a barrier, also into the offsets registry for a Kafka sink of the
 * same pipeline. */
static int ksrc_position(sl_ctx *ctx, void *self, sl_buf *out)
{
    ksplit *s = self;
    const sl_kafka_source_conf *c = sl_ctx_conf(ctx);
    uint64_t chk = sl_ctx_checkpoint_id(ctx);
    if (chk && c->group_id) {
        int rc =
            slk_offsets_put(sl_ctx_pipeline(ctx), c->group_id, chk, c->topic, s->partition, s->pos);
        if (rc) return rc;
    }
    int rc = sl_buf_append(out, &s->pos, 8);
    if (rc || !s->n_up) return rc;
    if ((rc = sl_buf_reserve(out, 4 + 8 * (size_t)s->n_up)) != 0) return rc;
    uint8_t *d = out->ptr + out->len;
    memcpy(d, &s->n_up, 4);
    memcpy(d + 4, s->up_wm, 8 * (size_t)s->n_up);
    out->len += 4 + 8 * (size_t)s->n_up;
    return 0;
}

static int ksrc_seek(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    ksplit *s = self;
    int64_t off;
    int32_t n_up = 0;
    if (len >= 12) memcpy(&n_up, (const uint8_t *)data + 8, 4);
    if (len < 8 || (len > 8 && (n_up != s->n_up || len != 12 + 8 * (size_t)s->n_up)))
        return sl_ctx_fail(ctx, SL_ECORRUPT,
                           "kafka source: partition %d: a position of %zu bytes, not this "
                           "source's",
                           (int)s->partition, len);
    memcpy(&off, data, 8);
    if (len > 8) memcpy(s->up_wm, (const uint8_t *)data + 12, 8 * (size_t)s->n_up);
    if (off < 0)
        return sl_ctx_fail(ctx, SL_ECORRUPT, "kafka source: partition %d: position %" PRId64,
                           (int)s->partition, off);
    if (s->kc->assigned)
        return sl_ctx_fail(ctx, SL_ESTATE, "kafka source: seek after the first poll");
    s->pos = off;
    return 0;
}

static int ksrc_commit(sl_ctx *ctx, uint64_t id, const sl_split_pos *pos, int n)
{
    const sl_kafka_source_conf *c = sl_ctx_conf(ctx);
    const void *pipeline = sl_ctx_pipeline(ctx);
    if (!c->group_id || n <= 0 || slk_offsets_claimed(pipeline, c->group_id)) return 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    if (!l) return SL_ENOMEM;
    for (int i = 0; i < n; i++) {
        int32_t p;
        int64_t off;
        if (pos[i].desc_len != KS_DESC_LEN || pos[i].len < 8) continue;
        memcpy(&p, pos[i].desc, 4);
        memcpy(&off, pos[i].pos, 8);
        rd_kafka_topic_partition_list_add(l, c->topic, p)->offset = off;
    }
    /* A handle of the node: this instance's, another's, or a new one. */
    pthread_mutex_lock(&kc_lock);
    kcons *kc = kc_list;
    while (kc && kc->ctx != ctx) kc = kc->next;
    if (!kc)
        for (kc = kc_list; kc; kc = kc->next)
            if (kc->pipeline == pipeline && strcmp(kc->node, sl_ctx_name(ctx)) == 0) break;
    if (kc) kc->refs++;
    pthread_mutex_unlock(&kc_lock);
    char err[512] = "";
    rd_kafka_t *rk = kc ? kc->rk : new_consumer(c, c->group_id, NULL, err, sizeof err);
    rd_kafka_resp_err_t ke = RD_KAFKA_RESP_ERR__FAIL;
    if (rk && l->cnt) {
        ke = rd_kafka_commit(rk, l, 0);
        for (int i = 0; i < l->cnt && !ke; i++) ke = l->elems[i].err;
        if (ke) snprintf(err, sizeof err, "%s", rd_kafka_err2str(ke));
    } else if (rk) {
        ke = 0;
    }
    if (ke)
        fprintf(stderr,
                "kafka source '%s': warning: offsets of checkpoint %" PRIu64
                " not committed to group '%s' (topic '%s'): %s\n",
                sl_ctx_name(ctx), id, c->group_id, c->topic, err);
    if (kc)
        kc_release(kc);
    else if (rk)
        rd_kafka_destroy(rk);
    rd_kafka_topic_partition_list_destroy(l);
    return 0;
}

const sl_source sl_source_kafka = {.version = SL_SOURCE_VERSION,
                                   .kind = "kafka",
                                   .enumerate = ksrc_enumerate,
                                   .open = ksrc_open,
                                   .poll = ksrc_poll,
                                   .position = ksrc_position,
                                   .seek = ksrc_seek,
                                   .close = ksrc_close,
                                   .commit = ksrc_commit};

static const char *dup_str(sl_pipeline *p, const char *s)
{
    return s ? sl_pipeline_dup(p, s, strlen(s) + 1) : NULL;
}

sl_stream *sl_pipeline_kafka(sl_pipeline *p, const char *name, const sl_kafka_source_conf *conf,
                             uint32_t width, const sl_watermark_conf *wm)
{
    if (!p) return NULL;
    sl_kafka_source_conf tc;
    if (conf && conf->task) {
        /* A consumer group's task: its partition of the group's topic, from
         * the task's checkpoint, else the group's committed offset, followed. */
        const sl_kafka_task *t = conf->task;
        tc = *conf;
        tc.bootstrap = t->bootstrap;
        tc.topic = t->topic;
        tc.group_id = t->group_id;
        tc.props = t->props;
        tc.partitions = &t->partition;
        tc.n_partitions = 1;
        tc.start = SL_KAFKA_OFFSET_COMMITTED;
        tc.until_end = 0;
        conf = &tc;
        if (t->reads_repartition) wm = NULL; /* the upstream tasks' markers say it */
    }
    if (!conf || !conf->bootstrap || !conf->topic) {
        sl_pipeline_error(p, SL_EINVAL, "kafka source '%s': needs bootstrap servers and a topic",
                          name ? name : "");
        return NULL;
    }
    if (conf->n_partitions < 0 || (conf->n_partitions > 0 && !conf->partitions)) {
        sl_pipeline_error(p, SL_EINVAL, "kafka source '%s': bad partition list", name ? name : "");
        return NULL;
    }
    /* Copied, strings and arrays included: a conf on the caller's stack is fine. */
    sl_kafka_source_conf *copy = sl_pipeline_dup(p, conf, sizeof(*conf));
    if (!copy || !(copy->bootstrap = dup_str(p, conf->bootstrap)) ||
        !(copy->topic = dup_str(p, conf->topic)))
        return NULL;
    if (conf->group_id && !(copy->group_id = dup_str(p, conf->group_id))) return NULL;
    if (conf->n_partitions > 0 &&
        !(copy->partitions =
              sl_pipeline_dup(p, conf->partitions, (size_t)conf->n_partitions * sizeof(int32_t))))
        return NULL;
    if (conf->props) {
        char **v = slk_props_dup(conf->props);
        if (!v) {
            sl_pipeline_error(p, SL_ENOMEM, "out of memory");
            return NULL;
        }
        if (sl_pipeline_own(p, v)) return NULL; /* it freed v */
        copy->props = (const char *const *)v;
    }
    return sl_pipeline_source(p, name, &sl_source_kafka, copy, width, wm);
}
