/*
 * connectors/kafka/sink.c - Apache Kafka as a pipeline sink (sl_sink_kafka,
 * sluice/kafka.h), on librdkafka.
 *
 * Each instance has one idempotent producer (enable.idempotence=true,
 * acks=all, partitioner=murmur2_random). A record's value is its payload
 * (or what conf->format makes of it), its key what conf->key returns, its
 * timestamp its event time. Keyed records are placed by librdkafka's
 * murmur2 partitioner (RD_KAFKA_PARTITION_UA), which is Kafka's Java
 * client's and sl_partition_for_key's; unkeyed records of one input batch
 * all go to one partition, the next batch to the next (round-robin per
 * batch, as sl_sink_broker), over the partition count read at open.
 *
 * Timestamps: event time SL_TIME_NONE goes out as "no timestamp" (librdkafka
 * stamps the produce time, as the broker stamps the append time); a
 * negative event time is refused (the job fails: Kafka timestamps are
 * >= 0). Event time 0 is a valid time, but librdkafka takes timestamp 0 for
 * "now" (rd_kafka_msg_new0), so such a record carries the produce time: the
 * sink says so once per process on stderr. Every other time goes as is.
 *
 * By the job's guarantee (sl_ctx_guarantee):
 *
 *   none, at-least-once   records are produced as they come (copied into
 *                   librdkafka's queue; on QUEUE_FULL the sink polls and
 *                   retries, never drops). Delivery reports are served
 *                   after every batch: the first failed delivery fails the
 *                   job naming topic, partition and error. At-least-once
 *                   flushes in snapshot(), so every record before the
 *                   barrier is acknowledged before the barrier passes;
 *                   end() flushes under both.
 *
 *   exactly-once    a transactional producer, transactional id
 *                   conf->transactional_id (default "sluice-TOPIC-NODE") +
 *                   "-" + instance; init_transactions at open fences an
 *                   older run with the same id.
 *     process()     records are staged in memory (one growing buffer, the
 *                   record layout below; no allocation per record)
 *     snapshot(n)   the pre-commit: the staged records, and on instance 0
 *                   the source offsets of consume-transform-produce
 *                   (slk_offsets_take(pipeline, offsets_group, n)), are
 *                   appended to "pending" (which still holds those of an
 *                   aborted checkpoint, if any), and pending is written
 *                   into the snapshot
 *     commit(n)     one transaction: begin, produce the pending records,
 *                   send_offsets_to_transaction with the commit marker
 *                   (group = the marker group "sluice-commit.<txid>", topic
 *                   partition (topic, 0), offset n) and, on instance 0, the
 *                   source offsets for offsets_group, commit (which flushes).
 *                   Nothing pending: no transaction.
 *     restore(m)    reads the marker group's committed offset (a consumer
 *                   with group.id = marker group, read_committed). If it is
 *                   >= m, m's records are in Kafka already; else they (and
 *                   their offsets, to the group the snapshot names) are
 *                   produced and committed in a new transaction with
 *                   marker m: the roll forward. The snapshot's own marker
 *                   group is read, so a changed transactional id still
 *                   finds it. A fresh start (nothing restored) commits
 *                   marker 0 at open: a marker left high by an older job
 *                   with the same id (its checkpoints since deleted) would
 *                   otherwise make this run's first restore skip a roll
 *                   forward. Records
 *                   staged after m were never in a transaction that
 *                   committed (init_transactions aborted it): the sources
 *                   replay them.
 *   Transaction errors: retriable ones are retried (the same call), those
 *   that require an abort abort the transaction and run it again from the
 *   pending records (still in memory; at most TXN_ATTEMPTS times) unless
 *   a record was refused for good (too large, invalid, no such topic: the
 *   job fails at once), fatal ones fail the job; a fenced producer fails it with "... was fenced by
 *   a newer producer with transactional id X: another run of this job took
 *   over". With offsets_group set, every instance claims the group at open
 *   (slk_offsets_claim), so the source leaves committing to the sink.
 *
 * Threads and the lock: process(), snapshot() and end() run on the
 * instance's worker; commit() runs on the coordinator thread. The engine
 * injects barrier n + 1 only after commit(n) returned, so snapshot() and
 * commit() never overlap; still, `pending` is only moved under s->lock, and
 * commit() takes it off under the lock, runs the transaction without it
 * (process() keeps staging meanwhile), and puts back what failed. process()
 * takes the lock once per batch, never per record. Delivery reports run
 * inside rd_kafka_poll/flush, on the thread that calls them.
 *
 * Trace context: a record that carries one (the batch's trace column,
 * sluice/batch.h) is produced with a `traceparent` header of the same trace
 * id and flags and a new span id, sluice's hop (connectors/topic_record.c);
 * under exactly-once the context is staged with the record and the hop made
 * when the transaction produces it.
 *
 * Staged record (in memory and in the snapshot), little-endian:
 *
 *   offset  size  field
 *   0       8     event time (SL_TIME_NONE: none)
 *   8       4     partition (-1: by key, murmur2)
 *   12      4     key length K (0xFFFFFFFF: no key; 0xFFFFFFFE: a watermark
 *                 marker, no key, below)
 *   16      4     value length V, with bit 31 (VL_TRACED) set when a trace
 *                 context follows the value (never for a marker), and bit
 *                 30 (VL_STATE) when a tracestate follows the context
 *   20      K     key
 *   20+K    V     value (a marker's: the value of its header)
 *   20+K+V  25    only with VL_TRACED: trace id 16, span id 8, flags 1 (the
 *                 sl_trace_ctx the record carried)
 *   45+K+V  2     only with VL_STATE: tracestate length S (1..512)
 *   47+K+V  S     only with VL_STATE: the tracestate
 * A snapshot written before contexts (or states) were staged has no
 * VL_TRACED (VL_STATE) record and reads as before. Values are below 1 GiB
 * (librdkafka's message.max.bytes), so neither bit is ever a length's.
 *
 * Watermark markers. A task's sink into its group's repartition topic
 * (sluice/kafka.h: repartitioning) stages, at each snapshot whose input
 * watermark or idleness differs from the last one it staged, one marker per
 * partition of the topic after the checkpoint's records: no key, an empty
 * value, header SLK_WM_HEADER (kafka_int.h draws it) with the task's input
 * partition, the input's partition count, sl_ctx_current_watermark() and
 * sl_ctx_input_idle(). They commit in the checkpoint's transaction, so a
 * repartition task sees a marker only after every record that preceded the
 * watermark upstream. After a restore the first snapshot stages one again.
 *
 * Snapshot (exactly-once only; other guarantees write nothing):
 *
 *   offset  size  field
 *   0       4     magic "SLKS"
 *   4       2     version (1)
 *   6       2     transactional id length T
 *   8       T     transactional id
 *   8+T     2     marker group length G
 *   10+T    G     marker group
 *   .       8     checkpoint id n
 *   .       2     source offsets group length O (0: none)
 *   .       O     source offsets group (conf->offsets_group)
 *   .       4     source offsets count C, then C times:
 *                   2 topic length L, L topic, 4 partition, 8 next offset
 *   .       8     record count R
 *   .       8     record bytes B
 *   .       B     R staged records (above)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "connectors/kafka/kafka_int.h"
#include "connectors/topic_record.h"
#include "sluice/kafka.h"

#define NO_KEY       0xFFFFFFFFu
#define WM_MARKER    0xFFFFFFFEu /* staged key length of a watermark marker */
#define VL_TRACED    0x80000000u /* staged value length: a trace context follows */
#define VL_STATE     0x40000000u /* staged value length: a tracestate follows it */
#define REC_HDR      20
#define REC_TRACE    25 /* a staged trace context: 16 + 8 + 1 */
#define TXN_ATTEMPTS 5  /* a transaction that must be aborted is run again this often */
#define RETRIES      20 /* a retriable call is repeated this often */
#define TXN_MS       60000
#define MD_MS        15000
#define ID_MAX       512

typedef struct ksink {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    const char *topic; /* the conf's (borrowed: it outlives the pipeline) */
    const char *bootstrap;
    const char *offsets_group;
    const void *pipeline;
    char **props; /* the user's properties (for the restore's consumer) */
    int32_t nparts;
    uint32_t rr;
    int guarantee, instance, claimed, failed, warned_zero;
    size_t max_bytes; /* message.max.bytes: larger records are refused at once */
    sl_buf fmt;       /* the formatted value of the record at hand */
    /* delivery reports */
    rd_kafka_resp_err_t dr_err;
    char dr_msg[512];
    /* exactly-once */
    pthread_mutex_t lock;
    sl_buf staged; /* since the last barrier */
    size_t n_staged;
    sl_buf pending; /* pre-committed, not yet committed */
    size_t n_pending;
    rd_kafka_topic_partition_list_t *pending_offs; /* instance 0: source offsets */
    char txid[ID_MAX], marker[ID_MAX + 16];
    /* a task of a consumer group (sl_kafka_group): its state goes into each
     * transaction; last_offs are the offsets of the last commit, so that a
     * checkpoint with no output and no progress commits nothing */
    const sl_kafka_task *task;
    rd_kafka_topic_partition_list_t *last_offs;
    sl_buf state;
    /* a task's sink into the repartition topic: the marker last staged */
    int markers, mk_staged, mk_idle;
    int64_t mk_wm;
} ksink;

/* Runs inside rd_kafka_poll/flush, on their caller's thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    ksink *s = opaque;
    if (!m->err || s->dr_err) return;
    s->dr_err = m->err;
    snprintf(s->dr_msg, sizeof s->dr_msg, "topic '%s' partition %" PRId32 ": delivery failed: %s",
             s->topic, m->partition, rd_kafka_err2str(m->err));
}

static void ksink_close(void *self)
{
    ksink *s = self;
    if (!s) return;
    if (s->rk) {
        if (s->failed) rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        /* end() flushed everything of a job that ended; this is for a
         * cancel, bounded so that a dead cluster cannot hold the close. */
        rd_kafka_flush(s->rk, 10000);
        if (s->rkt) rd_kafka_topic_destroy(s->rkt);
        rd_kafka_destroy(s->rk);
    }
    if (s->claimed) slk_offsets_claim(s->pipeline, s->offsets_group, 0);
    if (s->pending_offs) rd_kafka_topic_partition_list_destroy(s->pending_offs);
    if (s->last_offs) rd_kafka_topic_partition_list_destroy(s->last_offs);
    sl_buf_free(&s->state);
    sl_buf_free(&s->fmt);
    sl_buf_free(&s->staged);
    sl_buf_free(&s->pending);
    free(s->props);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int fail(sl_ctx *ctx, ksink *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int is_fenced(rd_kafka_resp_err_t e);

/* Every failure of the sink comes here. A producer that was fenced fails
 * with that reason, whichever call noticed it first (a delivery report, a
 * transactional call, the abort after it): the fencing is the cause, the
 * rest are its symptoms. */
static int fail(sl_ctx *ctx, ksink *s, int code, const char *fmt, ...)
{
    char msg[768], why[512];
    if (s) s->failed = 1;
    if (s && s->rk && s->txid[0] &&
        (is_fenced(s->dr_err) || is_fenced(rd_kafka_fatal_error(s->rk, why, sizeof why))))
        return sl_ctx_fail(ctx, SL_EIO,
                           "topic '%s': the producer was fenced by a newer producer with "
                           "transactional id %s: another run of this job took over",
                           s->topic, s->txid);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sl_ctx_fail(ctx, code, "%s", msg);
}

/* A conf: sluice's settings for this sink, then the user's (they win). */
static rd_kafka_conf_t *make_conf(ksink *s, const sl_kafka_sink_conf *c, const char *const *mine,
                                  char *err, size_t errlen)
{
    size_t n = 0, m = 0;
    while (c->props && c->props[n]) n++;
    while (mine[m]) m++;
    const char **all = malloc((n + m + 1) * sizeof(*all));
    if (!all) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < m; i++) all[i] = mine[i];
    for (size_t i = 0; i < n; i++) all[m + i] = c->props[i];
    all[n + m] = NULL;
    rd_kafka_conf_t *conf = slk_conf_new(c->bootstrap, all, err, errlen);
    free(all);
    if (conf) rd_kafka_conf_set_opaque(conf, s);
    return conf;
}

static int is_fenced(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__FENCED || e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/* A fencing seen as an error code (fail() words it). */
static int fenced_fail(sl_ctx *ctx, ksink *s)
{
    s->dr_err = RD_KAFKA_RESP_ERR__FENCED;
    return fail(ctx, s, SL_EIO, "fenced");
}

static int run_txn(sl_ctx *ctx, ksink *s, const sl_buf *recs,
                   const rd_kafka_topic_partition_list_t *offs, const char *ogroup,
                   const char *marker, uint64_t n);

static int ksink_open(sl_ctx *ctx, void **self)
{
    const sl_kafka_sink_conf *c = sl_ctx_conf(ctx);
    if (!c || !c->bootstrap || !*c->bootstrap || !c->topic || !*c->topic)
        return sl_ctx_fail(ctx, SL_EINVAL, "a Kafka sink needs bootstrap servers and a topic");
    ksink *s = calloc(1, sizeof(*s));
    if (!s) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    s->topic = c->topic;
    s->bootstrap = c->bootstrap;
    s->offsets_group = c->offsets_group;
    s->task = c->task;
    if (s->task) s->offsets_group = s->task->group_id;
    s->markers = s->task && s->task->repartition && strcmp(c->topic, s->task->repartition) == 0;
    s->pipeline = sl_ctx_pipeline(ctx);
    s->guarantee = sl_ctx_guarantee(ctx);
    s->instance = sl_ctx_instance(ctx);
    int rc = 0;
    char err[512];
    rd_kafka_conf_t *conf = NULL;
    if (!(s->props = slk_props_dup(c->props))) {
        rc = fail(ctx, s, SL_ENOMEM, "out of memory");
        goto fail;
    }
    int eo = s->guarantee == SL_GUARANTEE_EXACTLY_ONCE;
    if (s->task && !eo) {
        rc = fail(ctx, s, SL_EINVAL, "a consumer group task's sink runs exactly-once");
        goto fail;
    }
    if (s->offsets_group && strlen(s->offsets_group) >= ID_MAX) {
        rc = fail(ctx, s, SL_EINVAL, "the offsets group is longer than %d bytes", ID_MAX - 1);
        goto fail;
    }
    char tidprop[ID_MAX + 32];
    if (eo) {
        const char *base = s->task ? s->task->txid : c->transactional_id;
        int n = base ? snprintf(s->txid, sizeof s->txid, "%s-%d", base, s->instance)
                     : snprintf(s->txid, sizeof s->txid, "sluice-%s-%s-%d", c->topic,
                                sl_ctx_name(ctx), s->instance);
        if (n <= 0 || (size_t)n >= sizeof s->txid || (base && !*base)) {
            rc = fail(ctx, s, SL_EINVAL, "the transactional id is empty or too long");
            goto fail;
        }
        snprintf(s->marker, sizeof s->marker, "sluice-commit.%s", s->txid);
        snprintf(tidprop, sizeof tidprop, "transactional.id=%s", s->txid);
    }
    /* a task's checkpoint goes out as one record of up to the state topic's 64 MiB */
    const char *mine[] = {
        "enable.idempotence=true",    "acks=all",
        "partitioner=murmur2_random", s->task ? "message.max.bytes=67108864" : "linger.ms=5",
        eo ? tidprop : NULL,          NULL};
    if (!(conf = make_conf(s, c, mine, err, sizeof err))) {
        rc = fail(ctx, s, SL_EINVAL, "%s", err);
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char mb[32];
    size_t mbl = sizeof mb;
    s->max_bytes = rd_kafka_conf_get(conf, "message.max.bytes", mb, &mbl) == RD_KAFKA_CONF_OK
                       ? (size_t)strtoull(mb, NULL, 10)
                       : (size_t)1000000;
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!s->rk) {
        rd_kafka_conf_destroy(conf);
        rc = fail(ctx, s, SL_EINVAL, "cannot make a Kafka producer: %s", err);
        goto fail;
    }
    if (!(s->rkt = rd_kafka_topic_new(s->rk, c->topic, NULL))) {
        rc = fail(ctx, s, SL_EINVAL, "topic '%s': %s", c->topic,
                  rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    /* The topic must exist: its partition count drives the round-robin. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t me = rd_kafka_metadata(s->rk, 0, s->rkt, &md, MD_MS);
    if (me) {
        rc = fail(ctx, s, SL_EIO, "cannot read the metadata of topic '%s' from %s: %s", c->topic,
                  c->bootstrap, rd_kafka_err2str(me));
        goto fail;
    }
    if (md->topic_cnt < 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        rd_kafka_resp_err_t te =
            md->topic_cnt < 1 ? RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART : md->topics[0].err;
        rd_kafka_metadata_destroy(md);
        rc = fail(ctx, s, SL_ENOENT, "topic '%s' at %s: %s (a Kafka sink's topic must exist)",
                  c->topic, c->bootstrap,
                  rd_kafka_err2str(te ? te : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
        goto fail;
    }
    s->nparts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    s->rr = (uint32_t)s->instance;
    if (eo) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(s->rk, TXN_MS);
        if (e) {
            rc = fail(ctx, s, SL_EIO,
                      "topic '%s': cannot start transactions (transactional id %s): %s", c->topic,
                      s->txid, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            goto fail;
        }
        /* A fresh start resets the marker: an older job with this id (a
         * checkpoint directory since wiped) may have left it above the ids
         * this run's checkpoints will have, and a restore would then take
         * their uncommitted records for committed. */
        if (!sl_ctx_restored_from(ctx)) {
            sl_buf none = {0};
            if ((rc = run_txn(ctx, s, &none, NULL, NULL, s->marker, 0)) != 0) goto fail;
        }
        if (s->offsets_group && *s->offsets_group) {
            slk_offsets_claim(s->pipeline, s->offsets_group, 1);
            s->claimed = 1;
        }
    }
    *self = s;
    return 0;
fail:
    s->failed = 1;
    ksink_close(s);
    return rc;
}

/* The value (into s->fmt when formatted) and key of record i. */
static int make_record(sl_ctx *ctx, ksink *s, const sl_kafka_sink_conf *c, const sl_batch *in,
                       uint32_t i, sl_bytes *key, int *keyed, sl_bytes *val)
{
    sl_bytes r = sl_batch_bytes(in, i);
    *val = r;
    *keyed = 0;
    if (c->key) {
        *key = c->key(r.ptr, r.len, c->key_ud);
        *keyed = 1;
    }
    if (c->format) {
        s->fmt.len = 0;
        int rc = c->format(&s->fmt, r.ptr, r.len, in->ts[i], c->format_ud);
        if (rc) return fail(ctx, s, rc, "topic '%s': cannot format a record", s->topic);
        val->ptr = s->fmt.ptr;
        val->len = (uint32_t)s->fmt.len;
    }
    int64_t ts = in->ts[i];
    if (ts < 0 && ts != SL_TIME_NONE)
        return fail(ctx, s, SL_EINVAL,
                    "topic '%s': a record has event time %" PRId64
                    " (Kafka timestamps are >= 0; SL_TIME_NONE stamps the produce time)",
                    s->topic, ts);
    if (ts == 0 && !s->warned_zero) {
        s->warned_zero = 1;
        static atomic_int said; /* once per process: a group runs a sink per task */
        if (atomic_exchange(&said, 1)) return 0;
        fprintf(stderr,
                "sluice: Kafka sink '%s' topic '%s': records with event time 0 carry the produce "
                "time (librdkafka takes timestamp 0 for 'now')\n",
                sl_ctx_name(ctx), s->topic);
    }
    return 0;
}

/* What a staged record is. */
enum { REC_UNKEYED = 0, REC_KEYED = 1, REC_MARKER = 2 };

/* Produce one record (copied), polling while librdkafka's queue is full. A
 * marker's val is its header's value; the record has no key and no value.
 * tc: the record's trace context, or NULL; it goes out as the hop's
 * traceparent header (a new span id) and, when it has a state, a
 * tracestate header. */
static rd_kafka_resp_err_t produce(ksink *s, int64_t ts, int32_t part, const void *key,
                                   uint32_t klen, int kind, const void *val, uint32_t vlen,
                                   const sl_trace_ctx *tc)
{
    int keyed = kind == REC_KEYED;
    char tp[SLC_TRACEPARENT_MAX + 1];
    rd_kafka_vu_t vu[8];
    size_t n = 0;
    vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_RKT, .u.rkt = s->rkt};
    vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_PARTITION, .u.i32 = part};
    vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_MSGFLAGS, .u.i = RD_KAFKA_MSG_F_COPY};
    if (kind == REC_MARKER) {
        vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_HEADER,
                                  .u.header = {SLK_WM_HEADER, val, (ssize_t)vlen}};
    } else {
        vu[n++] = (rd_kafka_vu_t){
            .vtype = RD_KAFKA_VTYPE_KEY,
            .u.mem = {keyed ? (void *)(key ? key : "") : NULL, keyed ? (size_t)klen : 0}};
        vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_VALUE,
                                  .u.mem = {(void *)(val ? val : ""), (size_t)vlen}};
        vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_TIMESTAMP,
                                  .u.i64 = ts == SL_TIME_NONE || ts < 0 ? 0 : ts};
    }
    if (tc) {
        slc_trace_hop(tc, tp); /* sluice's hop: a new span id */
        vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_HEADER,
                                  .u.header = {SLC_TRACEPARENT, tp, SLC_TRACEPARENT_MAX}};
        if (tc->state_len)
            vu[n++] = (rd_kafka_vu_t){.vtype = RD_KAFKA_VTYPE_HEADER,
                                      .u.header = {SLC_TRACESTATE, tc->state, tc->state_len}};
    }
    for (;;) {
        rd_kafka_error_t *err = rd_kafka_produceva(s->rk, vu, n);
        rd_kafka_resp_err_t e = err ? rd_kafka_error_code(err) : RD_KAFKA_RESP_ERR_NO_ERROR;
        rd_kafka_error_destroy(err);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) return e;
        rd_kafka_poll(s->rk, 100);       /* backpressure: wait for deliveries, never drop */
        if (s->dr_err) return s->dr_err; /* the caller reports s->dr_msg */
    }
}

static int refused(sl_ctx *ctx, ksink *s, rd_kafka_resp_err_t e, int32_t part, size_t bytes)
{
    if (part >= 0)
        return fail(ctx, s, SL_EIO,
                    "topic '%s' partition %" PRId32 ": a record of %zu bytes was refused: %s",
                    s->topic, part, bytes, rd_kafka_err2str(e));
    return fail(ctx, s, SL_EIO, "topic '%s': a record of %zu bytes was refused: %s", s->topic,
                bytes, rd_kafka_err2str(e));
}

/* A failed delivery or a fatal producer error, as a job failure. */
static int check_deliveries(sl_ctx *ctx, ksink *s)
{
    if (s->dr_err) return fail(ctx, s, SL_EIO, "%s", s->dr_msg);
    char why[512];
    rd_kafka_resp_err_t fe = rd_kafka_fatal_error(s->rk, why, sizeof why);
    if (fe) {
        if (is_fenced(fe)) return fenced_fail(ctx, s);
        return fail(ctx, s, SL_EIO, "topic '%s': the producer failed: %s", s->topic, why);
    }
    return 0;
}

/* Flush until every record produced so far is acknowledged (or failed:
 * message.timeout.ms bounds each record's wait). Worker thread. */
static int flush_all(sl_ctx *ctx, ksink *s)
{
    while (rd_kafka_flush(s->rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT) {
        int rc = check_deliveries(ctx, s);
        if (rc) return rc;
    }
    return check_deliveries(ctx, s);
}

/* --- exactly-once ------------------------------------------------------------------ */

/* tc: the record's trace context, or NULL (vlen < VL_STATE: the caller
 * refused bigger records). */
static int stage(ksink *s, int64_t ts, int32_t part, const void *key, uint32_t klen, int kind,
                 const void *val, uint32_t vlen, const sl_trace_ctx *tc)
{
    int keyed = kind == REC_KEYED;
    uint16_t sl = tc ? tc->state_len : 0;
    size_t need = REC_HDR + (keyed ? klen : 0) + vlen + (tc ? REC_TRACE : 0) + (sl ? 2u + sl : 0);
    if (sl_buf_reserve(&s->staged, need)) return SL_ENOMEM;
    uint8_t *d = s->staged.ptr + s->staged.len;
    uint32_t kl = keyed ? klen : kind == REC_MARKER ? WM_MARKER : NO_KEY;
    uint32_t vl = vlen | (tc ? VL_TRACED : 0) | (sl ? VL_STATE : 0);
    memcpy(d, &ts, 8);
    memcpy(d + 8, &part, 4);
    memcpy(d + 12, &kl, 4);
    memcpy(d + 16, &vl, 4);
    if (keyed && klen) memcpy(d + REC_HDR, key, klen);
    uint8_t *v = d + REC_HDR + (keyed ? klen : 0);
    if (vlen) memcpy(v, val, vlen);
    if (tc) {
        memcpy(v + vlen, tc->trace_id, 16);
        memcpy(v + vlen + 16, tc->span_id, 8);
        v[vlen + 24] = tc->flags;
        if (sl) {
            memcpy(v + vlen + REC_TRACE, &sl, 2);
            memcpy(v + vlen + REC_TRACE + 2, tc->state, sl);
        }
    }
    s->staged.len += need;
    s->n_staged++;
    return 0;
}

static int eo_process(sl_ctx *ctx, ksink *s, const sl_kafka_sink_conf *c, sl_batch *in)
{
    int rc = 0;
    int32_t rr = (int32_t)(s->rr++ % (uint32_t)s->nparts);
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < in->count && !rc; i++) {
        sl_bytes k = {0}, v;
        int keyed;
        if ((rc = make_record(ctx, s, c, in, i, &k, &keyed, &v)) != 0) break;
        size_t bytes = (size_t)v.len + (keyed ? k.len : 0);
        if (bytes > s->max_bytes) {
            rc = refused(ctx, s, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, keyed ? -1 : rr, bytes);
            break;
        }
        if (stage(s, in->ts[i], keyed ? RD_KAFKA_PARTITION_UA : rr, k.ptr, k.len,
                  keyed ? REC_KEYED : REC_UNKEYED, v.ptr, v.len, sl_batch_trace(in, i)))
            rc = fail(ctx, s, SL_ENOMEM, "out of memory staging records");
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Walk staged records: calls fn for each (kind: REC_...; tc: its trace
 * context or NULL); stops at its first error. */
typedef int (*rec_fn)(void *arg, int64_t ts, int32_t part, const uint8_t *key, uint32_t klen,
                      int kind, const uint8_t *val, uint32_t vlen, const sl_trace_ctx *tc);
static int walk(const uint8_t *d, size_t len, size_t *count, rec_fn fn, void *arg)
{
    size_t off = 0, n = 0;
    while (off < len) {
        if (len - off < REC_HDR) return SL_ECORRUPT;
        int64_t ts;
        int32_t part;
        uint32_t kl, vl;
        memcpy(&ts, d + off, 8);
        memcpy(&part, d + off + 8, 4);
        memcpy(&kl, d + off + 12, 4);
        memcpy(&vl, d + off + 16, 4);
        size_t k = kl == NO_KEY || kl == WM_MARKER ? 0 : kl;
        int kind = kl == NO_KEY ? REC_UNKEYED : kl == WM_MARKER ? REC_MARKER : REC_KEYED;
        size_t tl = vl & VL_TRACED ? REC_TRACE : 0;
        int stated = (vl & VL_STATE) != 0;
        uint16_t sl = 0;
        vl &= ~(VL_TRACED | VL_STATE);
        if (stated && !tl) return SL_ECORRUPT;
        if (len - off - REC_HDR < k || len - off - REC_HDR - k < (size_t)vl + tl)
            return SL_ECORRUPT;
        const uint8_t *v = d + off + REC_HDR + k;
        if (stated) {
            if (len - off - REC_HDR - k - vl - tl < 2) return SL_ECORRUPT;
            memcpy(&sl, v + vl + tl, 2);
            if (!sl || sl > SL_TRACESTATE_MAX || len - off - REC_HDR - k - vl - tl - 2 < (size_t)sl)
                return SL_ECORRUPT;
            tl += 2u + sl;
        }
        if (kind == REC_MARKER && (vl != SLK_WM_LEN || part < 0 || tl)) return SL_ECORRUPT;
        if (fn) {
            sl_trace_ctx tc = {.flags = 0};
            if (tl) {
                memcpy(tc.trace_id, v + vl, 16);
                memcpy(tc.span_id, v + vl + 16, 8);
                tc.flags = v[vl + 24];
                tc.state = sl ? (const char *)v + vl + REC_TRACE + 2 : NULL;
                tc.state_len = sl;
            }
            int rc = fn(arg, ts, part, d + off + REC_HDR, (uint32_t)k, kind, v, vl,
                        tl && sl_trace_ctx_valid(&tc) ? &tc : NULL);
            if (rc) return rc;
        }
        off += REC_HDR + k + vl + tl;
        n++;
    }
    if (count) *count = n;
    return 0;
}

/* Source offsets: add src's to dst (newer wins). */
static int merge_offsets(rd_kafka_topic_partition_list_t **dst,
                         const rd_kafka_topic_partition_list_t *src)
{
    if (!src) return 0;
    if (!*dst && !(*dst = rd_kafka_topic_partition_list_new(src->cnt))) return SL_ENOMEM;
    for (int i = 0; i < src->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &src->elems[i];
        rd_kafka_topic_partition_t *t =
            rd_kafka_topic_partition_list_find(*dst, e->topic, e->partition);
        if (!t) t = rd_kafka_topic_partition_list_add(*dst, e->topic, e->partition);
        t->offset = e->offset;
    }
    return 0;
}

/* A task's sink into the repartition topic: its input watermark to every
 * partition, after the checkpoint's records, when it changed. s->lock held. */
static int stage_markers(sl_ctx *ctx, ksink *s)
{
    slk_wm m = {.upstream = s->task->partition,
                .upstreams = s->task->upstreams,
                .wm = sl_ctx_current_watermark(ctx),
                .idle = sl_ctx_input_idle(ctx)};
    if (s->mk_staged && m.wm == s->mk_wm && m.idle == s->mk_idle) return 0;
    uint8_t v[SLK_WM_LEN];
    slk_wm_pack(v, &m);
    for (int32_t p = 0; p < s->nparts; p++)
        if (stage(s, SL_TIME_NONE, p, NULL, 0, REC_MARKER, v, SLK_WM_LEN, NULL)) return SL_ENOMEM;
    s->mk_staged = 1;
    s->mk_wm = m.wm;
    s->mk_idle = m.idle;
    return 0;
}

static int ksink_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    ksink *s = self;
    if (s->guarantee == SL_GUARANTEE_AT_LEAST_ONCE) return flush_all(ctx, s);
    if (s->guarantee != SL_GUARANTEE_EXACTLY_ONCE) return 0;
    uint64_t n = sl_ctx_checkpoint_id(ctx);
    rd_kafka_topic_partition_list_t *offs = NULL;
    if (s->claimed && s->instance == 0) {
        int oom = 0;
        offs = slk_offsets_take(s->pipeline, s->offsets_group, n, &oom);
        if (oom) return fail(ctx, s, SL_ENOMEM, "out of memory taking the source offsets");
    }
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (s->markers) rc = stage_markers(ctx, s);
    if (!rc && merge_offsets(&s->pending_offs, offs)) rc = SL_ENOMEM;
    if (!rc && !s->pending.len) {
        sl_buf t = s->pending; /* keep both buffers' capacity */
        s->pending = s->staged;
        s->staged = t;
    } else if (!rc && sl_buf_append(&s->pending, s->staged.ptr, s->staged.len))
        rc = SL_ENOMEM;
    if (!rc) {
        s->n_pending += s->n_staged;
        s->staged.len = 0;
        s->n_staged = 0;
    }
    if (offs) rd_kafka_topic_partition_list_destroy(offs);
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        return fail(ctx, s, rc, "out of memory pre-committing");
    }
    /* the snapshot */
    size_t tl = strlen(s->txid), gl = strlen(s->marker),
           ol = s->offsets_group ? strlen(s->offsets_group) : 0,
           need = 8 + tl + 2 + gl + 8 + 2 + ol + 4 + 16;
    const rd_kafka_topic_partition_list_t *po = s->pending_offs;
    for (int i = 0; po && i < po->cnt; i++) need += 2 + strlen(po->elems[i].topic) + 12;
    need += s->pending.len;
    if (sl_buf_reserve(out, need)) rc = SL_ENOMEM;
    if (!rc) {
        uint8_t *d = out->ptr + out->len, *p = d;
        uint16_t v = 1, l16;
        memcpy(p, "SLKS", 4);
        memcpy(p + 4, &v, 2);
        l16 = (uint16_t)tl;
        memcpy(p + 6, &l16, 2);
        memcpy(p + 8, s->txid, tl);
        p += 8 + tl;
        l16 = (uint16_t)gl;
        memcpy(p, &l16, 2);
        memcpy(p + 2, s->marker, gl);
        p += 2 + gl;
        memcpy(p, &n, 8);
        l16 = (uint16_t)ol;
        memcpy(p + 8, &l16, 2);
        if (ol) memcpy(p + 10, s->offsets_group, ol);
        p += 10 + ol;
        uint32_t cnt = po ? (uint32_t)po->cnt : 0;
        memcpy(p, &cnt, 4);
        p += 4;
        for (uint32_t i = 0; i < cnt; i++) {
            l16 = (uint16_t)strlen(po->elems[i].topic);
            memcpy(p, &l16, 2);
            memcpy(p + 2, po->elems[i].topic, l16);
            memcpy(p + 2 + l16, &po->elems[i].partition, 4);
            memcpy(p + 6 + l16, &po->elems[i].offset, 8);
            p += 14 + l16;
        }
        uint64_t rn = s->n_pending, rb = s->pending.len;
        memcpy(p, &rn, 8);
        memcpy(p + 8, &rb, 8);
        if (rb) memcpy(p + 16, s->pending.ptr, rb);
        p += 16 + rb;
        out->len += (size_t)(p - d);
    }
    pthread_mutex_unlock(&s->lock);
    return rc ? fail(ctx, s, rc, "out of memory writing the snapshot") : 0;
}

typedef struct txn_run {
    sl_ctx *ctx;
    ksink *s;
    rd_kafka_resp_err_t err; /* a refused record */
    int32_t part;
    size_t bytes;
} txn_run;

static int produce_staged(void *arg, int64_t ts, int32_t part, const uint8_t *key, uint32_t klen,
                          int kind, const uint8_t *val, uint32_t vlen, const sl_trace_ctx *tc)
{
    txn_run *t = arg;
    rd_kafka_resp_err_t e = produce(t->s, ts, part, key, klen, kind, val, vlen, tc);
    if (!e) return 0;
    t->err = e;
    t->part = part;
    t->bytes = (size_t)klen + vlen;
    return SL_EIO;
}

enum { T_OK = 0, T_ABORT = 1, T_FAIL = 2 };

/* Errors that refuse records for good: a transaction that hit one is not
 * run again. */
static int refusal(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE || e == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
           e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE || e == RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP ||
           e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

/* Classify a transactional call's error (destroying it); T_OK for a
 * retriable one (the caller repeats the call). */
static int classify(sl_ctx *ctx, ksink *s, rd_kafka_error_t *e, const char *what, uint64_t n,
                    int *rc)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    int r;
    char why[512], why2[512];
    snprintf(why, sizeof why, "%s", rd_kafka_error_string(e));
    if (is_fenced(code) ||
        (rd_kafka_error_is_fatal(e) && is_fenced(rd_kafka_fatal_error(s->rk, why2, sizeof why2)))) {
        *rc = fenced_fail(ctx, s);
        r = T_FAIL;
    } else if (rd_kafka_error_is_retriable(e)) {
        r = T_OK;
        usleep(100 * 1000);
    } else if (rd_kafka_error_txn_requires_abort(e) && refusal(code)) {
        /* running it again would be refused again */
        *rc = s->dr_err ? fail(ctx, s, SL_EIO, "%s (checkpoint %" PRIu64 ")", s->dr_msg, n)
                        : fail(ctx, s, SL_EIO,
                               "topic '%s': a record was refused in the transaction of "
                               "checkpoint %" PRIu64 ": %s",
                               s->topic, n, why);
        rd_kafka_error_t *a = rd_kafka_abort_transaction(s->rk, TXN_MS);
        if (a) rd_kafka_error_destroy(a);
        r = T_FAIL;
    } else if (rd_kafka_error_txn_requires_abort(e)) {
        r = T_ABORT;
        if (!s->dr_err)
            snprintf(s->dr_msg, sizeof s->dr_msg, "topic '%.200s': %s: %.250s", s->topic, what,
                     why);
    } else {
        *rc = fail(ctx, s, SL_EIO, "topic '%s': %s of checkpoint %" PRIu64 " failed: %s", s->topic,
                   what, n, why);
        r = T_FAIL;
    }
    rd_kafka_error_destroy(e);
    return r;
}

/* Call expr (an rd_kafka_error_t * expression) until it succeeds or fails
 * for good; sets r to T_OK / T_ABORT / T_FAIL. */
#define TXN_CALL(r, expr, what)                                   \
    do {                                                          \
        (r) = T_FAIL;                                             \
        for (int try_ = 0; try_ < RETRIES; try_++) {              \
            rd_kafka_error_t *e_ = (expr);                        \
            if (!e_) {                                            \
                (r) = T_OK;                                       \
                break;                                            \
            }                                                     \
            int c_ = classify(ctx, s, e_, (what), n, &rc);        \
            if (c_ != T_OK) {                                     \
                (r) = c_;                                         \
                break;                                            \
            }                                                     \
            if (try_ == RETRIES - 1)                              \
                rc = fail(ctx, s, SL_EIO,                         \
                          "topic '%s': %s of checkpoint %" PRIu64 \
                          " still failing after %d retries",      \
                          s->topic, (what), n, RETRIES);          \
        }                                                         \
    } while (0)

/* One transaction with records recs, source offsets offs of group ogroup
 * (may be NULL) and marker n on marker group `marker`. Either thread (the
 * coordinator's for commit, the worker's for restore); no lock held. */
static int run_txn(sl_ctx *ctx, ksink *s, const sl_buf *recs,
                   const rd_kafka_topic_partition_list_t *offs, const char *ogroup,
                   const char *marker, uint64_t n)
{
    int rc = 0;
    rd_kafka_topic_partition_list_t *ml = rd_kafka_topic_partition_list_new(1);
    rd_kafka_consumer_group_metadata_t *mg = rd_kafka_consumer_group_metadata_new(marker);
    /* a task sends its offsets as a member of its group (its generation:
     * a zombie of an older one is refused), else as the group alone */
    rd_kafka_consumer_group_metadata_t *og = !(offs && offs->cnt && ogroup && *ogroup) ? NULL
                                             : s->task
                                                 ? slk_task_group_metadata(s->task)
                                                 : rd_kafka_consumer_group_metadata_new(ogroup);
    if (!ml || !mg || (offs && offs->cnt && ogroup && *ogroup && !og)) {
        rc = fail(ctx, s, SL_ENOMEM, "out of memory committing");
        goto out;
    }
    rd_kafka_topic_partition_list_add(ml, s->topic, 0)->offset = (int64_t)n;
    for (int attempt = 1;; attempt++) {
        int r;
        s->dr_err = 0;
        s->dr_msg[0] = 0;
        TXN_CALL(r, rd_kafka_begin_transaction(s->rk), "beginning the transaction");
        if (r == T_OK) {
            txn_run t = {ctx, s, 0, -1, 0};
            if (walk(recs->ptr, recs->len, NULL, produce_staged, &t)) {
                rc = s->dr_err ? fail(ctx, s, SL_EIO, "%s", s->dr_msg)
                               : refused(ctx, s, t.err, t.part, t.bytes);
                rd_kafka_error_t *e = rd_kafka_abort_transaction(s->rk, TXN_MS);
                if (e) rd_kafka_error_destroy(e);
                goto out;
            }
            if (s->task && s->state.len) {
                /* the task's checkpoint, under its key, in the state topic */
                const char *key = s->task->state_key;
                size_t kl = strlen(key);
                rd_kafka_resp_err_t e;
                while ((e = rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(s->task->state_topic),
                                              RD_KAFKA_V_PARTITION(s->task->state_partition),
                                              RD_KAFKA_V_KEY(key, kl),
                                              RD_KAFKA_V_VALUE(s->state.ptr, s->state.len),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                              RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    rd_kafka_poll(s->rk, 10);
                if (e) {
                    rc = fail(ctx, s, SL_EIO,
                              "state topic '%s' partition %d: cannot add checkpoint %" PRIu64
                              " of %s (%zu bytes): %s",
                              s->task->state_topic, (int)s->task->state_partition, n,
                              s->task->state_key, s->state.len, rd_kafka_err2str(e));
                    rd_kafka_error_t *ae = rd_kafka_abort_transaction(s->rk, TXN_MS);
                    if (ae) rd_kafka_error_destroy(ae);
                    goto out;
                }
            }
            TXN_CALL(r, rd_kafka_send_offsets_to_transaction(s->rk, ml, mg, TXN_MS),
                     "sending the commit marker");
        }
        if (r == T_OK && og)
            TXN_CALL(r, rd_kafka_send_offsets_to_transaction(s->rk, offs, og, TXN_MS),
                     "sending the source offsets");
        if (r == T_OK) TXN_CALL(r, rd_kafka_commit_transaction(s->rk, TXN_MS), "the commit");
        if (r == T_OK) break;
        if (r == T_FAIL) {
            if (!rc) rc = fail(ctx, s, SL_EIO, "topic '%s': the transaction failed", s->topic);
            goto out;
        }
        /* T_ABORT: abort, then run the whole transaction again, unless a
         * delivery report says a record was refused for good. The call
         * that needed the abort may have seen the transaction's state
         * before the report was served (code _STATE, not the refusal);
         * once the abort returns every record has its report: serve them. */
        char why[512];
        snprintf(why, sizeof why, "%s", s->dr_msg);
        int ar;
        TXN_CALL(ar, rd_kafka_abort_transaction(s->rk, TXN_MS), "aborting the transaction");
        rd_kafka_poll(s->rk, 0);
        if (s->dr_err) snprintf(why, sizeof why, "%s", s->dr_msg);
        if (ar != T_OK) {
            if (!rc) rc = fail(ctx, s, SL_EIO, "%s", why); /* why names the topic */
            goto out;
        }
        if (s->dr_err && refusal(s->dr_err)) {
            rc = fail(ctx, s, SL_EIO, "%s (checkpoint %" PRIu64 ")", why, n);
            goto out;
        }
        if (attempt >= TXN_ATTEMPTS) {
            rc = fail(ctx, s, SL_EIO, "%s (checkpoint %" PRIu64 ", %d attempts)", why, n, attempt);
            goto out;
        }
    }
out:
    if (ml) rd_kafka_topic_partition_list_destroy(ml);
    if (mg) rd_kafka_consumer_group_metadata_destroy(mg);
    if (og) rd_kafka_consumer_group_metadata_destroy(og);
    return rc;
}

/* The same partitions at the same offsets. */
static int same_offsets(const rd_kafka_topic_partition_list_t *a,
                        const rd_kafka_topic_partition_list_t *b)
{
    if (!a || !b || a->cnt != b->cnt) return 0;
    for (int i = 0; i < a->cnt; i++) {
        const rd_kafka_topic_partition_t *x = &a->elems[i];
        const rd_kafka_topic_partition_t *y = rd_kafka_topic_partition_list_find(
            (rd_kafka_topic_partition_list_t *)b, x->topic, x->partition);
        if (!y || y->offset != x->offset) return 0;
    }
    return 1;
}

static int ksink_commit(sl_ctx *ctx, void *self, uint64_t n)
{
    ksink *s = self;
    if (s->guarantee != SL_GUARANTEE_EXACTLY_ONCE) return 0;
    pthread_mutex_lock(&s->lock);
    sl_buf recs = s->pending;
    size_t nrecs = s->n_pending;
    rd_kafka_topic_partition_list_t *offs = s->pending_offs;
    memset(&s->pending, 0, sizeof s->pending);
    s->n_pending = 0;
    s->pending_offs = NULL;
    pthread_mutex_unlock(&s->lock);
    int rc = 0;
    int work = recs.len || (offs && offs->cnt && !same_offsets(offs, s->last_offs));
    if (s->task && slk_task_lost(s->task)) {
        rc = fail(ctx, s, SL_EFENCED,
                  "partition %d: this process lost its place in group '%s' (silent longer than "
                  "its session timeout); another member owns the partition and has fenced its "
                  "transactions: checkpoint %" PRIu64 " is not committed",
                  (int)s->task->partition, s->task->group_id, n);
    } else if (work && s->task) {
        char err[512];
        s->state.len = 0;
        if ((rc = slk_state_pack(s->task->chk_dir, n, &s->state, err, sizeof err)) != 0)
            rc = fail(ctx, s, rc, "partition %d: %s", (int)s->task->partition, err);
    }
    if (!rc && work) rc = run_txn(ctx, s, &recs, offs, s->offsets_group, s->marker, n);
    pthread_mutex_lock(&s->lock);
    if (rc) {
        /* keep them for whoever looks (the job fails) */
        if (s->pending.len && sl_buf_append(&recs, s->pending.ptr, s->pending.len))
            fprintf(stderr, "sluice: Kafka sink topic '%s': out of memory keeping records\n",
                    s->topic);
        sl_buf_free(&s->pending);
        s->pending = recs;
        s->n_pending += nrecs;
        if (!offs) {
            offs = s->pending_offs;
        } else if (s->pending_offs) {
            merge_offsets(&offs, s->pending_offs);
            rd_kafka_topic_partition_list_destroy(s->pending_offs);
        }
        s->pending_offs = offs;
    } else {
        if (!s->pending.ptr) {
            recs.len = 0; /* keep the capacity */
            s->pending = recs;
        } else {
            sl_buf_free(&recs);
        }
        if (offs && s->task) {
            if (s->last_offs) rd_kafka_topic_partition_list_destroy(s->last_offs);
            s->last_offs = offs;
        } else if (offs) {
            rd_kafka_topic_partition_list_destroy(offs);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* The committed offset of marker group `group` on (topic, 0): -1 if none. */
static int read_marker(sl_ctx *ctx, ksink *s, const char *group, int64_t *out)
{
    char err[512], gid[ID_MAX + 48];
    snprintf(gid, sizeof gid, "group.id=%s", group);
    const char *mine[] = {gid, "isolation.level=read_committed", "enable.auto.commit=false", NULL};
    sl_kafka_sink_conf c = {.bootstrap = s->bootstrap, .props = (const char *const *)s->props};
    rd_kafka_conf_t *conf = make_conf(s, &c, mine, err, sizeof err);
    if (!conf) return fail(ctx, s, SL_EINVAL, "%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return fail(ctx, s, SL_EIO, "cannot make a Kafka consumer: %s", err);
    }
    int rc = 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l) {
        rc = fail(ctx, s, SL_ENOMEM, "out of memory");
        goto out;
    }
    rd_kafka_topic_partition_list_add(l, s->topic, 0);
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, TXN_MS);
    if (!e) e = l->elems[0].err;
    if (e) {
        rc = fail(ctx, s, SL_EIO,
                  "topic '%s': cannot read the commit marker of group '%s' (to learn whether "
                  "checkpoint %" PRIu64 " was committed): %s",
                  s->topic, group, sl_ctx_restored_from(ctx), rd_kafka_err2str(e));
        goto out;
    }
    *out = l->elems[0].offset < 0 ? -1 : l->elems[0].offset;
out:
    if (l) rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return rc;
}

static int ksink_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    ksink *s = self;
    if (s->guarantee != SL_GUARANTEE_EXACTLY_ONCE || len == 0) return 0;
    const uint8_t *d = data, *p, *end = d + len;
    uint16_t v, tl, gl, ol;
    uint64_t m, rn, rb;
    uint32_t cnt;
    char group[ID_MAX + 16], ogroup[ID_MAX];
    rd_kafka_topic_partition_list_t *offs = NULL;
    int rc = 0;
    if (len < 8 || memcmp(d, "SLKS", 4) != 0) goto bad;
    memcpy(&v, d + 4, 2);
    memcpy(&tl, d + 6, 2);
    if (v != 1 || (size_t)(end - d) < 8u + tl + 2u) goto bad;
    p = d + 8 + tl;
    memcpy(&gl, p, 2);
    p += 2;
    if (gl == 0 || gl >= sizeof group || (size_t)(end - p) < (size_t)gl + 12) goto bad;
    memcpy(group, p, gl);
    group[gl] = 0;
    p += gl;
    memcpy(&m, p, 8);
    memcpy(&ol, p + 8, 2);
    p += 10;
    if (ol >= sizeof ogroup || (size_t)(end - p) < (size_t)ol + 4) goto bad;
    memcpy(ogroup, p, ol);
    ogroup[ol] = 0;
    memcpy(&cnt, p + ol, 4);
    p += ol + 4;
    if (cnt && !ol) goto bad;
    for (uint32_t i = 0; i < cnt; i++) {
        uint16_t l;
        char topic[256];
        int32_t part;
        int64_t off;
        if (end - p < 2) goto bad;
        memcpy(&l, p, 2);
        if (l == 0 || l >= sizeof topic || (size_t)(end - p) < 14u + l) goto bad;
        memcpy(topic, p + 2, l);
        topic[l] = 0;
        memcpy(&part, p + 2 + l, 4);
        memcpy(&off, p + 6 + l, 8);
        p += 14 + l;
        if (!offs && !(offs = rd_kafka_topic_partition_list_new((int)cnt))) goto oom;
        rd_kafka_topic_partition_list_add(offs, topic, part)->offset = off;
    }
    if (end - p < 16) goto bad;
    memcpy(&rn, p, 8);
    memcpy(&rb, p + 8, 8);
    p += 16;
    size_t have = 0;
    if ((uint64_t)(end - p) != rb || walk(p, (size_t)rb, &have, NULL, NULL) || have != rn) goto bad;
    if (rb || cnt) {
        int64_t marker = -1;
        if ((rc = read_marker(ctx, s, group, &marker)) != 0) goto out;
        if (marker < 0 || (uint64_t)marker < m) {
            /* not committed: roll forward */
            sl_buf recs = {(uint8_t *)p, (size_t)rb, (size_t)rb}; /* a view, not freed */
            rc = run_txn(ctx, s, &recs, offs, ogroup, group, m);
        }
    }
    goto out;
bad:
    rc = fail(ctx, s, SL_ECORRUPT, "the checkpoint's Kafka sink state is malformed");
    goto out;
oom:
    rc = fail(ctx, s, SL_ENOMEM, "out of memory restoring");
out:
    if (offs) rd_kafka_topic_partition_list_destroy(offs);
    return rc;
}

/* --- all guarantees ------------------------------------------------------------ */

static int ksink_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    ksink *s = self;
    const sl_kafka_sink_conf *c = sl_ctx_conf(ctx);
    if (s->guarantee == SL_GUARANTEE_EXACTLY_ONCE) return eo_process(ctx, s, c, in);
    int32_t rr = (int32_t)(s->rr++ % (uint32_t)s->nparts);
    const int traced = in->trace != NULL;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes k = {0}, v;
        int keyed;
        int rc = make_record(ctx, s, c, in, i, &k, &keyed, &v);
        if (rc) return rc;
        int32_t part = keyed ? RD_KAFKA_PARTITION_UA : rr;
        const sl_trace_ctx *tc = traced ? sl_batch_trace(in, i) : NULL;
        rd_kafka_resp_err_t e = produce(s, in->ts[i], part, k.ptr, k.len,
                                        keyed ? REC_KEYED : REC_UNKEYED, v.ptr, v.len, tc);
        if (e && s->dr_err) return check_deliveries(ctx, s);
        if (e) return refused(ctx, s, e, part, (size_t)v.len + (keyed ? k.len : 0));
    }
    rd_kafka_poll(s->rk, 0); /* delivery reports */
    return check_deliveries(ctx, s);
}

static int ksink_end(sl_ctx *ctx, void *self)
{
    ksink *s = self;
    /* exactly-once: the final checkpoint commits what is staged */
    if (s->guarantee == SL_GUARANTEE_EXACTLY_ONCE) return 0;
    return flush_all(ctx, s);
}

const sl_operator sl_sink_kafka = {.version = SL_OPERATOR_VERSION,
                                   .kind = "kafka",
                                   .open = ksink_open,
                                   .process = ksink_process,
                                   .end = ksink_end,
                                   .snapshot = ksink_snapshot,
                                   .restore = ksink_restore,
                                   .close = ksink_close,
                                   .commit = ksink_commit};
