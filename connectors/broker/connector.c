/*
 * connectors/broker/connector.c - the built-in broker as a pipeline source
 * and sink (sluice/connectors.h declares them and draws the record layout).
 *
 * Source: each instance opens its own broker handle and one reader per
 * partition it owns (p % P == instance) and polls them round-robin without
 * waiting (timeout 0), so a partition with no data never holds back the
 * others; when no partition has data the poll says WAIT and the engine
 * polls again a millisecond later. The engine only polls a source whose
 * output has credit, so "polled and found nothing" really means "no data":
 * a partition held back by backpressure is never polled into idleness.
 * Position for checkpoints: (partition, next offset) pairs.
 *
 * Sink: one producer; every batch of the stream is appended and flushed
 * before the next one is taken, so an acknowledged batch is durable per the
 * topic's fsync policy. Partitions have one writer each (a file lock), so
 * the sink runs as one instance; its input is rebalanced into it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sluice/broker.h"
#include "sluice/sluice.h"

int sl_broker_rec_key(sl_bytes rec, sl_bytes *key)
{
    uint32_t klen;
    key->ptr = NULL;
    key->len = 0;
    if (rec.len < 4) return 0;
    memcpy(&klen, rec.ptr, 4);
    if (klen == SL_BROKER_NO_KEY || (uint64_t)klen + 4 > rec.len) return 0;
    key->ptr = (const uint8_t *)rec.ptr + 4;
    key->len = klen;
    return 1;
}

sl_bytes sl_broker_rec_value(sl_bytes rec)
{
    sl_bytes v = {rec.ptr, 0}, k;
    if (rec.len < 4) return v;
    size_t skip = 4 + (sl_broker_rec_key(rec, &k) ? k.len : 0);
    v.ptr = (const uint8_t *)rec.ptr + skip;
    v.len = (uint32_t)(rec.len - skip);
    return v;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* --- source ------------------------------------------------------------------- */

typedef struct bpart {
    int32_t partition;
    sl_log_reader *r;
    int64_t end; /* bounded: first offset not to read */
    int done;    /* bounded: reached end */
    int64_t max_ts;
    int seen; /* has read a record */
    double last_data_ms;
} bpart;

typedef struct bsrc {
    sl_broker *b;
    int n;
    bpart *parts;
    int next;
    int idle;
} bsrc;

static void bsrc_close(void *self)
{
    bsrc *s = self;
    if (!s) return;
    for (int i = 0; i < s->n; i++) sl_log_reader_close(s->parts[i].r);
    free(s->parts);
    sl_broker_close(s->b);
    free(s);
}

static int bsrc_open(sl_ctx *ctx, void **self)
{
    const sl_broker_source_conf *c = sl_ctx_conf(ctx);
    if (!c || !c->dir || !c->topic)
        return sl_ctx_fail(ctx, SL_EINVAL, "needs a directory and a topic");
    bsrc *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    sl_topic_info *info = NULL;
    int rc = sl_broker_open(&s->b, c->dir, 0);
    if (rc) {
        rc = sl_ctx_fail(ctx, rc, "%s", s->b ? sl_broker_errmsg(s->b) : "out of memory");
        goto fail;
    }
    if ((rc = sl_topic_describe(s->b, c->topic, &info)) != 0) {
        rc = sl_ctx_fail(ctx, rc, "%s", sl_broker_errmsg(s->b));
        goto fail;
    }
    int inst = sl_ctx_instance(ctx), par = sl_ctx_parallelism(ctx);
    s->parts = calloc((size_t)info->partition_count, sizeof(*s->parts));
    if (!s->parts) {
        rc = SL_ENOMEM;
        goto fail;
    }
    for (int32_t p = 0; p < info->partition_count; p++) {
        if (p % par != inst) continue;
        bpart *bp = &s->parts[s->n];
        bp->partition = p;
        bp->end = info->partitions[p].next_offset;
        bp->last_data_ms = now_ms();
        rc = sl_log_reader_open(&bp->r, s->b, c->topic, p, c->start);
        if (rc) {
            rc = sl_ctx_fail(ctx, rc, "%s", sl_broker_errmsg(s->b));
            goto fail;
        }
        s->n++;
        if (c->until_end && sl_log_reader_position(bp->r) >= bp->end) bp->done = 1;
    }
    sl_topic_info_free(info);
    *self = s;
    return 0;
fail:
    sl_topic_info_free(info);
    bsrc_close(s);
    return rc;
}

/* Announce min over live partitions of max_ts - delay - 1, and idleness. */
static int bsrc_watermark(sl_ctx *ctx, bsrc *s, const sl_broker_source_conf *c)
{
    if (c->watermark_delay < 0) return 0;
    double now = now_ms();
    int64_t wm = SL_TIME_MAX;
    int live = 0;
    for (int i = 0; i < s->n; i++) {
        bpart *bp = &s->parts[i];
        if (bp->done) continue;
        if (c->idle_ms > 0 && now - bp->last_data_ms >= (double)c->idle_ms) continue;
        live++;
        int64_t w = bp->seen ? bp->max_ts - c->watermark_delay - 1 : SL_TIME_MIN;
        if (w < wm) wm = w;
    }
    if (live == 0) {
        /* every partition ended or idle: ended ones advance to +inf at the
         * end of the source; idle ones stop holding the watermark back */
        if (c->idle_ms > 0 && !s->idle) {
            s->idle = 1;
            return sl_ctx_idle(ctx, 1);
        }
        return 0;
    }
    s->idle = 0;
    return wm > SL_TIME_MIN ? sl_ctx_watermark(ctx, wm) : 0;
}

static int bsrc_poll(sl_ctx *ctx, void *self)
{
    bsrc *s = self;
    const sl_broker_source_conf *c = sl_ctx_conf(ctx);
    int emitted = 0, live = 0;
    for (int k = 0; k < s->n && emitted < SL_BATCH_CAPACITY; k++) {
        bpart *bp = &s->parts[(s->next + k) % s->n];
        if (bp->done) continue;
        live++;
        int got = 0;
        while (emitted < SL_BATCH_CAPACITY) {
            sl_message m;
            int rc = sl_log_reader_next(bp->r, &m, 0);
            if (rc == SL_EAGAIN) {
                if (c->until_end && sl_log_reader_position(bp->r) >= bp->end) bp->done = 1;
                break;
            }
            if (rc) return sl_ctx_fail(ctx, rc, "%s", sl_log_reader_errmsg(bp->r));
            if (c->until_end && m.offset >= bp->end) {
                bp->done = 1;
                break;
            }
            uint32_t klen = m.key ? (uint32_t)m.key_len : 0;
            uint32_t vlen = m.value ? (uint32_t)m.value_len : 0;
            uint8_t *out = sl_emit(ctx, m.timestamp, 0, 4 + klen + vlen);
            if (!out) return sl_ctx_error(ctx);
            uint32_t kfield = m.key ? klen : SL_BROKER_NO_KEY;
            memcpy(out, &kfield, 4);
            if (klen) memcpy(out + 4, m.key, klen);
            if (vlen) memcpy(out + 4 + klen, m.value, vlen);
            if (!bp->seen || m.timestamp > bp->max_ts) bp->max_ts = m.timestamp;
            bp->seen = 1;
            emitted++;
            got++;
        }
        if (got) bp->last_data_ms = now_ms(); /* once per poll, not per record */
    }
    s->next = s->n ? (s->next + 1) % s->n : 0;
    int rc = bsrc_watermark(ctx, s, c);
    if (rc) return rc;
    if (emitted) return SL_POLL_MORE;
    return live == 0 ? SL_POLL_END : SL_POLL_WAIT;
}

/* Snapshot layout: count u32, then count x (partition i32, next offset i64). */
static int bsrc_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    bsrc *s = self;
    uint32_t n = (uint32_t)s->n;
    int rc = sl_buf_append(out, &n, 4);
    for (int i = 0; i < s->n && !rc; i++) {
        int64_t pos = sl_log_reader_position(s->parts[i].r);
        rc = sl_buf_append(out, &s->parts[i].partition, 4);
        if (!rc) rc = sl_buf_append(out, &pos, 8);
    }
    return rc;
}

static int bsrc_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    bsrc *s = self;
    const uint8_t *p = data;
    uint32_t n;
    if (len < 4) return SL_ECORRUPT;
    memcpy(&n, p, 4);
    if (len != 4 + (size_t)n * 12) return SL_ECORRUPT;
    for (uint32_t k = 0; k < n; k++) {
        int32_t part;
        int64_t off;
        memcpy(&part, p + 4 + k * 12, 4);
        memcpy(&off, p + 8 + k * 12, 8);
        for (int i = 0; i < s->n; i++) {
            if (s->parts[i].partition != part) continue;
            int rc = sl_log_reader_seek(s->parts[i].r, off);
            if (rc) return sl_ctx_fail(ctx, rc, "%s", sl_log_reader_errmsg(s->parts[i].r));
        }
    }
    return 0;
}

const sl_source sl_source_broker = {.version = SL_SOURCE_VERSION,
                                    .kind = "broker",
                                    .open = bsrc_open,
                                    .poll = bsrc_poll,
                                    .snapshot = bsrc_snapshot,
                                    .restore = bsrc_restore,
                                    .close = bsrc_close};

sl_stream *sl_pipeline_broker(sl_pipeline *p, const char *name, const sl_broker_source_conf *conf)
{
    return sl_pipeline_source(p, name, &sl_source_broker, (void *)conf, 0);
}

/* --- sink ----------------------------------------------------------------------- */

typedef struct bsink {
    sl_broker *b;
    sl_producer *prod;
    sl_buf buf;
} bsink;

static void bsink_close(void *self)
{
    bsink *s = self;
    if (!s) return;
    sl_producer_close(s->prod);
    sl_broker_close(s->b);
    sl_buf_free(&s->buf);
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
    int rc = sl_broker_open(&s->b, c->dir, 0);
    if (!rc) rc = sl_producer_open(&s->prod, s->b, c->topic);
    if (rc) {
        rc = sl_ctx_fail(ctx, rc, "%s", s->b ? sl_broker_errmsg(s->b) : "out of memory");
        bsink_close(s);
        return rc;
    }
    *self = s;
    return 0;
}

static int bsink_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    bsink *s = self;
    const sl_broker_sink_conf *c = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        sl_record rec = {.value = r.ptr, .value_len = r.len, .timestamp = in->ts[i]};
        if (c->key) {
            sl_bytes k = c->key(r.ptr, r.len, c->key_ud);
            rec.key = k.ptr;
            rec.key_len = k.len;
        }
        if (c->format) {
            s->buf.len = 0;
            int rc = c->format(&s->buf, r.ptr, r.len, in->ts[i], c->format_ud);
            if (rc) return sl_ctx_fail(ctx, rc, "cannot format a record");
            rec.value = s->buf.ptr ? (const void *)s->buf.ptr : "";
            rec.value_len = s->buf.len;
        }
        int rc = sl_producer_send(s->prod, SL_PARTITION_ANY, &rec, NULL);
        if (rc) return sl_ctx_fail(ctx, rc, "%s", sl_producer_errmsg(s->prod));
    }
    int rc = sl_producer_flush(s->prod);
    return rc ? sl_ctx_fail(ctx, rc, "%s", sl_producer_errmsg(s->prod)) : 0;
}

const sl_operator sl_sink_broker = {.version = SL_OPERATOR_VERSION,
                                    .kind = "broker",
                                    .open = bsink_open,
                                    .process = bsink_process,
                                    .close = bsink_close};
