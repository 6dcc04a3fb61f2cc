/*
 * connectors/broker/connector.c - the built-in broker as a pipeline source
 * and sink (sluice/connectors.h declares them and draws the record layout).
 *
 * Source: on the engine's source layer (sluice/source.h) each partition is
 * a split, with its own broker handle and reader, read without waiting
 * (timeout 0): a partition with no data says WAIT and never holds back the
 * others. The engine owns each partition's watermark and idleness (polled
 * and found nothing, never "not polled"), and merges partitions by its rule,
 * so nothing here looks at the clock. Position: the next offset.
 *
 * Trace context: a message's first `traceparent` header becomes its
 * record's trace context (sluice/tracectx.h), with its `tracestate`
 * headers joined into one list; a malformed one is ignored and counted (sl_pipeline_trace_malformed;
 * connectors/topic_record.c has the rules).
 *
 * The sink is in connector_sink.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "connectors/topic_record.h"
#include "sluice/broker.h"
#include "sluice/connectors.h"
#include "sluice/source.h"

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

/* --- source ------------------------------------------------------------------- */

/* A split is a partition. Its description (made when the job starts):
 *
 *   offset  size  field
 *   0       4     partition (int32)
 *   4       8     end: with until_end, the first offset not to read (the
 *                 partition's end as of the start, as kcat -e; its last
 *                 stable offset under read_committed); else -1
 */
typedef struct bsplit {
    int32_t partition;
    int64_t end;
} bsplit;

typedef struct bsrc {
    sl_broker *b;
    sl_log_reader *r;
    bsplit d;
    int64_t lag_end;   /* following: the end offset last looked up (metrics) */
    int64_t lag_at_ms; /* when (monotonic ms) */
    uint8_t *rec;      /* parse output */
    slc_state st;      /* the message's tracestate headers */
} bsrc;

static const char *bsrc_errmsg(sl_broker *b)
{
    return b ? sl_broker_errmsg(b) : "out of memory";
}

static int bsrc_enumerate(sl_split_enum *e, void *conf)
{
    const sl_broker_source_conf *c = conf;
    if (!c || !c->dir || !c->topic)
        return sl_split_fail(e, SL_EINVAL, "needs a directory and a topic");
    if (c->isolation != SL_READ_COMMITTED && c->isolation != SL_READ_UNCOMMITTED)
        return sl_split_fail(e, SL_EINVAL,
                             "isolation %d is neither SL_READ_COMMITTED nor SL_READ_UNCOMMITTED",
                             c->isolation);
    sl_broker *b = NULL;
    sl_topic_info *info = NULL;
    int rc = sl_broker_open(&b, c->dir, 0);
    if (rc) {
        rc = sl_split_fail(e, rc, "%s", bsrc_errmsg(b));
        goto done;
    }
    if ((rc = sl_topic_describe(b, c->topic, &info)) != 0) {
        rc = sl_split_fail(e, rc, "%s", sl_broker_errmsg(b));
        goto done;
    }
    for (int32_t p = 0; p < info->partition_count && !rc; p++) {
        unsigned char d[12];
        const sl_partition_info *pi = &info->partitions[p];
        int64_t end = !c->until_end                         ? -1
                      : c->isolation == SL_READ_UNCOMMITTED ? pi->next_offset
                                                            : pi->last_stable_offset;
        memcpy(d, &p, 4);
        memcpy(d + 4, &end, 8);
        rc = sl_split_add(e, d, sizeof(d));
    }
done:
    sl_topic_info_free(info);
    sl_broker_close(b);
    return rc;
}

static void bsrc_close(void *self)
{
    bsrc *s = self;
    if (!s) return;
    sl_log_reader_close(s->r);
    sl_broker_close(s->b);
    free(s->rec);
    free(s);
}

static int bsrc_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    const sl_broker_source_conf *c = sl_ctx_conf(ctx);
    if (!split->desc || split->desc_len != 12)
        return sl_ctx_fail(ctx, SL_EINVAL, "broker: bad split description");
    if (c->parse && c->max_len == 0)
        return sl_ctx_fail(ctx, SL_EINVAL, "broker: a parse callback needs max_len");
    if (!c->parse && sl_ctx_out_width(ctx, 0) != 0)
        return sl_ctx_fail(ctx, SL_EINVAL, "broker: records are variable length without parse");
    bsrc *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    memcpy(&s->d.partition, split->desc, 4);
    memcpy(&s->d.end, (const uint8_t *)split->desc + 4, 8);
    int rc = 0;
    if (c->parse && !(s->rec = malloc(c->max_len))) {
        rc = SL_ENOMEM;
        goto fail;
    }
    if ((rc = sl_broker_open(&s->b, c->dir, 0)) != 0) {
        rc = sl_ctx_fail(ctx, rc, "%s", bsrc_errmsg(s->b));
        goto fail;
    }
    if ((rc = sl_log_reader_open(&s->r, s->b, c->topic, s->d.partition, c->start)) != 0) {
        rc = sl_ctx_fail(ctx, rc, "%s", sl_broker_errmsg(s->b));
        goto fail;
    }
    if ((rc = sl_log_reader_set_isolation(s->r, c->isolation)) != 0) {
        rc = sl_ctx_fail(ctx, rc, "%s", sl_log_reader_errmsg(s->r));
        goto fail;
    }
    *self = s;
    return 0;
fail:
    bsrc_close(s);
    return rc;
}

/* The message's trace context (its first `traceparent` header, with its
 * `tracestate` headers joined: connectors/topic_record.h), or NULL. */
static const sl_trace_ctx *bsrc_trace(sl_ctx *ctx, bsrc *s, const sl_message *m, sl_trace_ctx *out)
{
    const sl_record_header *tp = NULL;
    slc_state_reset(&s->st);
    for (size_t k = 0; k < m->header_count; k++) {
        const sl_record_header *h = &m->headers[k];
        if (!tp && h->key_len == SLC_TRACEPARENT_LEN &&
            !memcmp(h->key, SLC_TRACEPARENT, h->key_len))
            tp = h;
        else if (h->key_len == SLC_TRACESTATE_LEN && !memcmp(h->key, SLC_TRACESTATE, h->key_len))
            slc_state_add(&s->st, h->value, h->value_len);
    }
    if (!tp) return NULL;
    return slc_trace_read(ctx, tp->value, tp->value ? tp->value_len : 0, &s->st, out);
}

/* One message: its record or its dead letter (connectors/topic_record.c). */
static int bsrc_emit(sl_ctx *ctx, const sl_broker_source_conf *c, bsrc *s, const sl_message *m)
{
    sl_trace_ctx tc;
    slc_topic_msg tm = {.trace = m->header_count ? bsrc_trace(ctx, s, m, &tc) : NULL,
                        .key = m->key,
                        .key_len = m->key_len,
                        .value = m->value,
                        .value_len = m->value_len,
                        .ts = m->timestamp,
                        .partition = m->partition,
                        .offset = m->offset};
    return slc_topic_emit(ctx, &tm, c->parse, c->ud, c->max_len, s->rec);
}

static int bsrc_read(sl_ctx *ctx, const sl_broker_source_conf *c, bsrc *s, uint32_t max);

/* Tell the engine how far this split is behind (sluice/metrics.h): to the
 * end it reads to, or, when following the log, to the end offset looked up
 * at most once a second (a topic description reads the partition's files);
 * 0 when the reader found nothing more. */
static void bsrc_lag(sl_ctx *ctx, const sl_broker_source_conf *c, bsrc *s, int caught_up)
{
    int64_t pos = sl_log_reader_position(s->r), end = s->d.end;
    if (end < 0 && caught_up) {
        end = pos;
    } else if (end < 0) {
        int64_t now = sl_clock_ms();
        if (now - s->lag_at_ms >= 1000 || s->lag_at_ms == 0) {
            sl_topic_info *ti;
            if (sl_topic_describe(s->b, c->topic, &ti) == 0) {
                if (s->d.partition < ti->partition_count) {
                    const sl_partition_info *pi = &ti->partitions[s->d.partition];
                    s->lag_end = c->isolation == SL_READ_UNCOMMITTED ? pi->next_offset
                                                                     : pi->last_stable_offset;
                }
                sl_topic_info_free(ti);
            }
            s->lag_at_ms = now;
        }
        end = s->lag_end;
    }
    sl_ctx_split_lag(ctx, c->topic, s->d.partition, end > pos ? end - pos : 0);
}

static int bsrc_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    bsrc *s = self;
    const sl_broker_source_conf *c = sl_ctx_conf(ctx);
    int rc = bsrc_read(ctx, c, s, max);
    if (rc >= 0) bsrc_lag(ctx, c, s, rc == SL_POLL_WAIT);
    return rc;
}

static int bsrc_read(sl_ctx *ctx, const sl_broker_source_conf *c, bsrc *s, uint32_t max)
{
    uint32_t got = 0;
    while (got < max) {
        if (s->d.end >= 0 && sl_log_reader_position(s->r) >= s->d.end)
            return got ? SL_POLL_MORE : SL_POLL_END;
        sl_message m;
        int rc = sl_log_reader_next(s->r, &m, 0);
        if (rc == SL_EAGAIN) return got ? SL_POLL_MORE : SL_POLL_WAIT;
        if (rc) return sl_ctx_fail(ctx, rc, "%s", sl_log_reader_errmsg(s->r));
        if (s->d.end >= 0 && m.offset >= s->d.end) {
            /* Past the end as of the start: not ours; the position stays at end. */
            sl_log_reader_seek(s->r, s->d.end);
            return got ? SL_POLL_MORE : SL_POLL_END;
        }
        if ((rc = bsrc_emit(ctx, c, s, &m)) != 0) return rc;
        got++;
    }
    return SL_POLL_MORE;
}

/* Position: the next offset (int64, host order). */
static int bsrc_position(sl_ctx *ctx, void *self, sl_buf *out)
{
    bsrc *s = self;
    int64_t pos = sl_log_reader_position(s->r);
    return sl_buf_append(out, &pos, 8);
}

static int bsrc_seek(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    bsrc *s = self;
    int64_t off;
    if (len != 8) return SL_ECORRUPT;
    memcpy(&off, data, 8);
    int rc = sl_log_reader_seek(s->r, off);
    return rc ? sl_ctx_fail(ctx, rc, "%s", sl_log_reader_errmsg(s->r)) : 0;
}

const sl_source sl_source_broker = {.version = SL_SOURCE_VERSION,
                                    .kind = "broker",
                                    .enumerate = bsrc_enumerate,
                                    .open = bsrc_open,
                                    .poll = bsrc_poll,
                                    .position = bsrc_position,
                                    .seek = bsrc_seek,
                                    .close = bsrc_close};

sl_stream *sl_pipeline_broker(sl_pipeline *p, const char *name, const sl_broker_source_conf *conf,
                              uint32_t width, const sl_watermark_conf *wm)
{
    if (!p) return NULL;
    if (!conf || !conf->dir || !conf->topic) {
        sl_pipeline_error(p, SL_EINVAL, "broker source '%s': needs a directory and a topic",
                          name ? name : "");
        return NULL;
    }
    /* Copied, strings included: a conf on the caller's stack is fine. */
    sl_broker_source_conf *copy = sl_pipeline_dup(p, conf, sizeof(*conf));
    if (!copy || !(copy->dir = sl_pipeline_dup(p, conf->dir, strlen(conf->dir) + 1)) ||
        !(copy->topic = sl_pipeline_dup(p, conf->topic, strlen(conf->topic) + 1)))
        return NULL;
    return sl_pipeline_source(p, name, &sl_source_broker, copy, width, wm);
}
