/*
 * connectors/broker/connector_sink.c - the built-in broker as a pipeline sink
 * (sl_sink_broker, sluice/connectors.h).
 *
 * Partitions have one writer each (a file lock), so the sink runs as one
 * instance; its input is rebalanced into it.
 *
 * Without exactly-once: one producer; every batch of the stream is appended
 * and flushed before the next one is taken, so an acknowledged batch is
 * durable per the topic's fsync policy.
 *
 * Exactly-once (sl_ctx_guarantee, with checkpoints): one broker transaction
 * per checkpoint, as Flink's Kafka sink does it.
 *
 *   process()     records go into the open transaction of the sink's
 *                 transactional producer (one batch per partition per input
 *                 batch): read_committed readers do not see them yet
 *   snapshot(n)   the pre-commit: the transaction holds everything up to the
 *                 barrier; the snapshot records (producer id, epoch). Until
 *                 n is committed, records that come are held in memory
 *   commit(n)     COMMIT markers (sl_txn_producer_commit), then the producer
 *                 is opened again: a new epoch for the next transaction, and
 *                 the held records go into it
 *   restore(m)    after a crash: sl_txn_recover_commit(producer id, epoch of
 *                 m) commits the transaction of m if its markers were not all
 *                 written (roll forward; nothing if it was committed); the
 *                 producer opened afterwards bumps the epoch, which aborts any
 *                 later transaction (roll back: its records are replayed)
 *
 * Because each committed transaction is followed by a new epoch, (producer
 * id, epoch) names exactly one transaction, so the roll forward cannot
 * commit a later one. If checkpoint n is aborted, its transaction simply
 * goes on into n + 1 (held records are appended on the next barrier) and
 * the commit of n + 1 covers both. The coordinator starts checkpoint n + 1
 * only after commit(n) returned, so at most one transaction is pre-committed
 * at a time. The producer is opened lazily (first record or barrier), after
 * restore() had its chance to roll forward with the old epoch.
 *
 * Commit runs on the coordinator thread while process() may run on the
 * worker: both take s->lock (once per batch).
 *
 * Snapshot (exactly-once), little-endian:
 *
 *   offset  size  field
 *   0       4     magic "SLBS"
 *   4       8     producer id (-1: no transaction yet)
 *   12      2     epoch
 *   14      2     transactional id length L
 *   16      L     transactional id
 *
 * Held records (in memory only), one after the other:
 *
 *   offset      size  field
 *   0           8     timestamp i64
 *   8           4     key length K (UINT32_MAX: no key)
 *   12          4     value length V
 *   16          1     traceparent length P (0 or 55)
 *   17          2     tracestate length S (0 without a traceparent)
 *   19          K     key
 *   19+K        V     value
 *   19+K+V      P     traceparent
 *   19+K+V+P    S     tracestate
 *
 * Trace context: a record that carries one (the batch's trace column,
 * sluice/batch.h) is written with a `traceparent` header of the same trace
 * id and flags and a new span id, sluice's hop (connectors/topic_record.c),
 * and its `tracestate` header when it has a state.
 * Records without one get no header; a batch without the column costs one
 * test per batch.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "connectors/topic_record.h"
#include "sluice/broker.h"
#include "sluice/connectors.h"
#include "sluice/source.h"

#define NO_KEY UINT32_MAX

typedef struct bsink {
    sl_broker *b;
    sl_producer *prod;
    sl_buf buf;
    const char *topic;
    /* exactly-once */
    int eo;
    pthread_mutex_t lock;
    sl_txn_producer *tp; /* NULL until first needed */
    int32_t nparts;
    uint32_t rr;
    int awaiting; /* pre-committed, commit not come yet */
    int in_txn;   /* records appended since the last commit */
    sl_buf held;  /* records that came while awaiting */
    size_t n_held;
    sl_buf vals; /* formatted values of the batch being appended */
    sl_record *recs, *sorted;
    int32_t *part;
    size_t *voff; /* where each record's formatted value starts in vals */
    /* traced batches: each record's two trace headers, its traceparent */
    sl_record_header (*hdr)[2];
    char (*tpv)[SLC_TRACEPARENT_MAX + 1];
    size_t cap;
    int32_t *count;
    char txid[SL_TOPIC_NAME_MAX + 1];
} bsink;

static void bsink_close(void *self)
{
    bsink *s = self;
    if (!s) return;
    sl_producer_close(s->prod);
    sl_txn_producer_close(s->tp);
    sl_broker_close(s->b);
    sl_buf_free(&s->buf);
    sl_buf_free(&s->held);
    sl_buf_free(&s->vals);
    free(s->recs);
    free(s->sorted);
    free(s->part);
    free(s->voff);
    free(s->hdr);
    free(s->tpv);
    free(s->count);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int bsink_open(sl_ctx *ctx, void **self)
{
    const sl_broker_sink_conf *c = sl_ctx_conf(ctx);
    if (!c || !c->dir || !c->topic)
        return sl_ctx_fail(ctx, SL_EINVAL, "needs a directory and a topic");
    if (sl_ctx_parallelism(ctx) != 1)
        return sl_ctx_fail(ctx, SL_EINVAL,
                           "a broker sink runs as one instance (one writer per partition); "
                           "set its parallelism to 1");
    bsink *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    s->topic = c->topic;
    s->eo = sl_ctx_guarantee(ctx) == SL_GUARANTEE_EXACTLY_ONCE;
    int rc = sl_broker_open(&s->b, c->dir, 0);
    if (!rc && !s->eo) rc = sl_producer_open(&s->prod, s->b, c->topic);
    if (!rc && s->eo) {
        sl_topic_info *ti = NULL;
        rc = sl_topic_describe(s->b, c->topic, &ti);
        if (!rc) s->nparts = ti->partition_count;
        sl_topic_info_free(ti);
        int n = c->transactional_id ? snprintf(s->txid, sizeof(s->txid), "%s", c->transactional_id)
                                    : snprintf(s->txid, sizeof(s->txid), "sluice:%s:%s", c->topic,
                                               sl_ctx_name(ctx));
        if (!rc && (n <= 0 || (size_t)n >= sizeof(s->txid))) {
            rc = sl_ctx_fail(ctx, SL_EINVAL, "the transactional id is empty or too long");
            bsink_close(s);
            return rc;
        }
        s->count = calloc((size_t)(s->nparts > 0 ? s->nparts : 1), sizeof(*s->count));
        if (!rc && !s->count) rc = SL_ENOMEM;
    }
    if (rc) {
        rc = sl_ctx_fail(ctx, rc, "%s", s->b ? sl_broker_errmsg(s->b) : "out of memory");
        bsink_close(s);
        return rc;
    }
    *self = s;
    return 0;
}

/* Give rec the trace headers of the hop from record i's context, in h and
 * tp, if it has one (the tracestate header points into the batch). */
static void trace_header(const sl_batch *in, uint32_t i, sl_record *rec, sl_record_header h[2],
                         char tp[SLC_TRACEPARENT_MAX + 1])
{
    const sl_trace_ctx *tc = sl_batch_trace(in, i);
    if (!tc) return;
    rec->header_count = (size_t)slc_trace_headers(tc, h, tp);
    rec->headers = h;
}

/* The value (and key) of record r of a batch, formatted into s->buf when
 * the conf formats. */
static int make_record(sl_ctx *ctx, bsink *s, const sl_broker_sink_conf *c, sl_buf *vals,
                       const sl_batch *in, uint32_t i, sl_record *rec, size_t *voff)
{
    sl_bytes r = sl_batch_bytes(in, i);
    memset(rec, 0, sizeof(*rec));
    rec->value = r.ptr;
    rec->value_len = r.len;
    rec->timestamp = in->ts[i];
    *voff = SIZE_MAX;
    if (c->key) {
        sl_bytes k = c->key(r.ptr, r.len, c->key_ud);
        rec->key = k.ptr;
        rec->key_len = k.len;
    }
    if (c->format) {
        size_t before = vals->len;
        int rc = c->format(vals, r.ptr, r.len, in->ts[i], c->format_ud);
        if (rc) return sl_ctx_fail(ctx, rc, "cannot format a record");
        *voff = before; /* the buffer may move: fixed up by the caller */
        rec->value_len = vals->len - before;
    }
    return 0;
}

/* --- exactly-once -------------------------------------------------------------------- */

static int ensure_cap(bsink *s, size_t n)
{
    if (n <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < n) cap *= 2;
    sl_record *r = realloc(s->recs, cap * sizeof(*r));
    if (r) s->recs = r;
    sl_record *t = realloc(s->sorted, cap * sizeof(*t));
    if (t) s->sorted = t;
    int32_t *p = realloc(s->part, cap * sizeof(*p));
    if (p) s->part = p;
    size_t *v = realloc(s->voff, cap * sizeof(*v));
    if (v) s->voff = v;
    sl_record_header(*h)[2] = realloc(s->hdr, cap * sizeof(*h));
    if (h) s->hdr = h;
    char(*tpv)[SLC_TRACEPARENT_MAX + 1] = realloc(s->tpv, cap * sizeof(*tpv));
    if (tpv) s->tpv = tpv;
    if (!r || !t || !p || !v || !h || !tpv) return SL_ENOMEM;
    s->cap = cap;
    return 0;
}

static int open_tp(sl_ctx *ctx, bsink *s)
{
    if (s->tp) return 0;
    int rc = sl_txn_producer_open(&s->tp, s->b, s->topic, s->txid);
    if (rc) return sl_ctx_fail(ctx, rc, "%s", sl_broker_errmsg(s->b));
    return 0;
}

/* Append recs[0..n) to the open transaction: one batch per partition. */
static int txn_append(sl_ctx *ctx, bsink *s, sl_record *recs, size_t n)
{
    if (!n) return 0;
    int rc = open_tp(ctx, s);
    if (rc) return rc;
    int32_t np = s->nparts;
    memset(s->count, 0, (size_t)np * sizeof(*s->count));
    uint32_t rr = s->rr++ % (uint32_t)np;
    for (size_t i = 0; i < n; i++) {
        int32_t p =
            recs[i].key ? sl_partition_for_key(recs[i].key, recs[i].key_len, np) : (int32_t)rr;
        s->part[i] = p;
        s->count[p]++;
    }
    /* counting sort by partition: each partition's records stay in order */
    size_t at = 0;
    for (int32_t p = 0; p < np; p++) {
        size_t c = (size_t)s->count[p];
        s->count[p] = (int32_t)at;
        at += c;
    }
    for (size_t i = 0; i < n; i++) s->sorted[s->count[s->part[i]]++] = recs[i];
    size_t from = 0;
    for (int32_t p = 0; p < np; p++) {
        size_t to = (size_t)s->count[p];
        if (to > from) {
            rc = sl_txn_producer_append(s->tp, p, s->sorted + from, to - from, NULL);
            if (rc)
                return sl_ctx_fail(ctx, rc, "topic '%s' partition %d: %s", s->topic, p,
                                   sl_txn_producer_errmsg(s->tp));
        }
        from = to;
    }
    s->in_txn = 1;
    return 0;
}

#define HELD_HDR 19 /* a held record's fixed part (drawn at the top) */

static int hold(bsink *s, const sl_record *r)
{
    size_t kl0 = r->key ? r->key_len : 0;
    uint8_t tpl = r->header_count ? (uint8_t)r->headers[0].value_len : 0;
    uint16_t tsl = r->header_count > 1 ? (uint16_t)r->headers[1].value_len : 0;
    size_t need = HELD_HDR + kl0 + r->value_len + tpl + tsl;
    if (sl_buf_reserve(&s->held, need)) return SL_ENOMEM;
    uint8_t *d = s->held.ptr + s->held.len;
    uint32_t kl = r->key ? (uint32_t)r->key_len : NO_KEY, vl = (uint32_t)r->value_len;
    memcpy(d, &r->timestamp, 8);
    memcpy(d + 8, &kl, 4);
    memcpy(d + 12, &vl, 4);
    d[16] = tpl;
    memcpy(d + 17, &tsl, 2);
    uint8_t *at = d + HELD_HDR;
    if (r->key) memcpy(at, r->key, r->key_len);
    at += kl0;
    memcpy(at, r->value ? r->value : "", r->value_len);
    at += r->value_len;
    if (tpl) memcpy(at, r->headers[0].value, tpl);
    if (tsl) memcpy(at + tpl, r->headers[1].value, tsl);
    s->held.len += need;
    s->n_held++;
    return 0;
}

/* Append the held records to the open transaction (lock held). */
static int flush_held(sl_ctx *ctx, bsink *s)
{
    size_t off = 0;
    while (off < s->held.len) {
        size_t n = 0;
        if (ensure_cap(s, 1024)) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
        while (off < s->held.len && n < 1024) {
            const uint8_t *d = s->held.ptr + off;
            sl_record *r = &s->recs[n++];
            uint32_t kl, vl;
            memset(r, 0, sizeof(*r));
            memcpy(&r->timestamp, d, 8);
            memcpy(&kl, d + 8, 4);
            memcpy(&vl, d + 12, 4);
            uint8_t tpl = d[16];
            uint16_t tsl;
            memcpy(&tsl, d + 17, 2);
            size_t k = kl == NO_KEY ? 0 : kl;
            r->key = kl == NO_KEY ? NULL : d + HELD_HDR;
            r->key_len = k;
            r->value = d + HELD_HDR + k;
            r->value_len = vl;
            if (tpl) {
                sl_record_header *h = s->hdr[n - 1];
                h[0] = (sl_record_header){.key = SLC_TRACEPARENT,
                                          .key_len = SLC_TRACEPARENT_LEN,
                                          .value = d + HELD_HDR + k + vl,
                                          .value_len = tpl};
                h[1] = (sl_record_header){.key = SLC_TRACESTATE,
                                          .key_len = SLC_TRACESTATE_LEN,
                                          .value = d + HELD_HDR + k + vl + tpl,
                                          .value_len = tsl};
                r->headers = h;
                r->header_count = tsl ? 2 : 1;
            }
            off += HELD_HDR + k + vl + tpl + tsl;
        }
        int rc = txn_append(ctx, s, s->recs, n);
        if (rc) return rc;
    }
    s->held.len = 0;
    s->n_held = 0;
    return 0;
}

static int eo_process(sl_ctx *ctx, bsink *s, const sl_broker_sink_conf *c, sl_batch *in)
{
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (ensure_cap(s, in->count)) {
        rc = sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
        goto out;
    }
    s->vals.len = 0;
    size_t *voff = s->voff;
    for (uint32_t i = 0; i < in->count && !rc; i++)
        rc = make_record(ctx, s, c, &s->vals, in, i, &s->recs[i], &voff[i]);
    for (uint32_t i = 0; i < in->count && !rc; i++)
        if (voff[i] != SIZE_MAX) s->recs[i].value = s->vals.ptr ? s->vals.ptr + voff[i] : NULL;
    if (rc) goto out;
    if (in->trace)
        for (uint32_t i = 0; i < in->count; i++)
            trace_header(in, i, &s->recs[i], s->hdr[i], s->tpv[i]);
    if (s->awaiting) {
        for (uint32_t i = 0; i < in->count && !rc; i++)
            if (hold(s, &s->recs[i])) rc = sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    } else {
        rc = txn_append(ctx, s, s->recs, in->count);
    }
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int bsink_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    bsink *s = self;
    if (!s->eo) return 0;
    pthread_mutex_lock(&s->lock);
    int rc = open_tp(ctx, s);
    /* An aborted checkpoint left a transaction pre-committed: it goes on. */
    if (!rc && s->awaiting) rc = flush_held(ctx, s);
    int64_t pid = -1;
    int16_t ep = 0;
    if (!rc) {
        /* An empty transaction records none: its epoch goes on to the
         * next transaction, which a roll forward to this checkpoint must
         * not commit (the crash trials found that). */
        if (s->in_txn) {
            pid = sl_txn_producer_id(s->tp);
            ep = sl_txn_producer_epoch(s->tp);
        }
        s->awaiting = 1;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc) return rc;
    size_t l = strlen(s->txid);
    if (sl_buf_reserve(out, 16 + l)) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    uint8_t *d = out->ptr + out->len;
    memcpy(d, "SLBS", 4);
    memcpy(d + 4, &pid, 8);
    memcpy(d + 12, &ep, 2);
    uint16_t l16 = (uint16_t)l;
    memcpy(d + 14, &l16, 2);
    memcpy(d + 16, s->txid, l);
    out->len += 16 + l;
    return 0;
}

static int bsink_commit(sl_ctx *ctx, void *self, uint64_t id)
{
    bsink *s = self;
    if (!s->eo) return 0;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (!s->awaiting) goto out; /* nothing pre-committed */
    if (s->in_txn) {
        rc = sl_txn_producer_commit(s->tp);
        if (rc) {
            rc = sl_ctx_fail(ctx, rc, "topic '%s': commit of checkpoint %" PRIu64 ": %s", s->topic,
                             id, sl_txn_producer_errmsg(s->tp));
            goto out;
        }
        /* A new epoch names the next transaction. */
        sl_txn_producer_close(s->tp);
        s->tp = NULL;
        s->in_txn = 0;
        if ((rc = open_tp(ctx, s)) != 0) goto out;
    }
    s->awaiting = 0;
    rc = flush_held(ctx, s);
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int bsink_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    bsink *s = self;
    if (!s->eo) return 0;
    const uint8_t *d = data;
    int64_t pid;
    int16_t ep;
    uint16_t l;
    if (len < 16 || memcmp(d, "SLBS", 4) != 0) goto bad;
    memcpy(&pid, d + 4, 8);
    memcpy(&ep, d + 12, 2);
    memcpy(&l, d + 14, 2);
    if (len != 16u + l || l == 0 || l > SL_TOPIC_NAME_MAX) goto bad;
    char txid[SL_TOPIC_NAME_MAX + 1];
    memcpy(txid, d + 16, l);
    txid[l] = 0;
    if (pid < 0) return 0;
    int rc = sl_txn_recover_commit(s->b, s->topic, txid, pid, ep);
    if (rc < 0)
        return sl_ctx_fail(ctx, rc,
                           "topic '%s': cannot complete the transaction of checkpoint "
                           "%" PRIu64 ": %s",
                           s->topic, sl_ctx_restored_from(ctx), sl_broker_errmsg(s->b));
    return 0;
bad:
    return sl_ctx_fail(ctx, SL_ECORRUPT, "the checkpoint's broker sink state is malformed");
}

/* --- both ------------------------------------------------------------------------- */

static int bsink_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    bsink *s = self;
    const sl_broker_sink_conf *c = sl_ctx_conf(ctx);
    if (s->eo) return eo_process(ctx, s, c, in);
    const int traced = in->trace != NULL;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_record rec;
        size_t voff;
        sl_record_header h[2];
        char tp[SLC_TRACEPARENT_MAX + 1];
        s->buf.len = 0;
        int rc = make_record(ctx, s, c, &s->buf, in, i, &rec, &voff);
        if (rc) return rc;
        if (voff != SIZE_MAX) rec.value = s->buf.ptr ? (const void *)s->buf.ptr : "";
        if (traced) trace_header(in, i, &rec, h, tp); /* copied by send */
        rc = sl_producer_send(s->prod, SL_PARTITION_ANY, &rec, NULL);
        if (rc) return sl_ctx_fail(ctx, rc, "%s", sl_producer_errmsg(s->prod));
    }
    int rc = sl_producer_flush(s->prod);
    return rc ? sl_ctx_fail(ctx, rc, "%s", sl_producer_errmsg(s->prod)) : 0;
}

const sl_operator sl_sink_broker = {.version = SL_OPERATOR_VERSION,
                                    .kind = "broker",
                                    .open = bsink_open,
                                    .process = bsink_process,
                                    .snapshot = bsink_snapshot,
                                    .restore = bsink_restore,
                                    .close = bsink_close,
                                    .commit = bsink_commit};
