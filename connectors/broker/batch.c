/*
 * connectors/broker/batch.c - encoding and checked decoding of record batches
 * (the byte tables are in connectors/broker/batch.h).
 *
 * Why this shape: one batch is written with one write(2) and read with one
 * buffered read, so the cost per record is a few varints and one memcpy; no
 * allocation per record on either side (the builder's buffer is reused). The
 * encoder of headerless records (the producer's common case) is inline in
 * batch.h: sizes are computed first (clz per varint), so the record is
 * written once, length prefix first, straight into the batch buffer.
 *
 * Invariants: the encoder only produces batches the decoder accepts; the
 * decoder never reads outside [batch, batch + length) whatever the bytes are;
 * offset deltas inside a batch strictly increase and stay within
 * last_offset_delta; a batch's CRC covers every byte except the CRC itself.
 */
#include "connectors/broker/batch.h"

#include <stdlib.h>
#include <string.h>

#include "engine/base/crc32c.h"

/* ---- varints (encoding in batch.h) ---------------------------------------- */

static inline size_t varint_size(int64_t v)
{
    return slb_uvarint_size(slb_zz64(v));
}

static inline uint8_t *put_varint(uint8_t *p, int64_t sv)
{
    return slb_put_uvarint(p, slb_zz64(sv));
}

/* Read a varint of at most maxbytes from [*pp, end). Returns 0 or -1. */
static inline int get_varint(const uint8_t **pp, const uint8_t *end, int maxbytes, int64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    int shift = 0;
    for (int i = 0; i < maxbytes; i++) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *pp = p;
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
        shift += 7;
    }
    return -1;
}

/* ---- header ---------------------------------------------------------------- */

int slb_hdr_parse(const uint8_t *p, slb_batch_hdr *h)
{
    h->base_offset = (int64_t)slb_get64(p);
    h->length = slb_get32(p + 8);
    h->crc = slb_get32(p + 12);
    h->magic = p[16];
    h->attributes = p[17];
    h->last_offset_delta = slb_get32(p + 20);
    h->record_count = slb_get32(p + 24);
    h->first_ts = (int64_t)slb_get64(p + 28);
    h->max_ts = (int64_t)slb_get64(p + 36);
    h->producer_id = -1;
    h->producer_epoch = -1;
    h->base_sequence = -1;
    uint8_t a = h->attributes;
    if (h->magic != SLB_MAGIC ||
        (a & ~(SLB_ATTR_PRODUCER | SLB_ATTR_TRANSACTIONAL | SLB_ATTR_CONTROL)) || p[18] || p[19])
        return SL_ECORRUPT;
    if (((a & SLB_ATTR_TRANSACTIONAL) && !(a & SLB_ATTR_PRODUCER)) ||
        ((a & SLB_ATTR_CONTROL) && !(a & SLB_ATTR_TRANSACTIONAL)))
        return SL_ECORRUPT;
    if ((a & SLB_ATTR_CONTROL) && (h->record_count != 1 || h->last_offset_delta != 0))
        return SL_ECORRUPT;
    if (h->length < slb_hdr_len(h) || h->length > SLB_MAX_BATCH) return SL_ECORRUPT;
    if (h->base_offset < 0 || h->base_offset > INT64_MAX / 2) return SL_ECORRUPT;
    if (h->last_offset_delta > INT32_MAX) return SL_ECORRUPT;
    if (h->record_count > h->last_offset_delta + 1u) return SL_ECORRUPT;
    /* Each record takes at least 7 bytes (see the table). */
    if ((uint64_t)h->record_count * 7 > h->length - slb_hdr_len(h)) return SL_ECORRUPT;
    return 0;
}

uint32_t slb_batch_crc(const uint8_t *batch, uint32_t len)
{
    uint32_t c = sli_crc32c(0, batch, 12);
    return sli_crc32c(c, batch + 16, len - 16);
}

int slb_batch_check(const uint8_t *p, size_t avail, slb_batch_hdr *h, bool check_crc)
{
    if (avail < SLB_HDR_SIZE) return SL_EAGAIN;
    if (slb_hdr_parse(p, h) < 0) return SL_ECORRUPT;
    if (avail < h->length) return SL_EAGAIN;
    if (check_crc && slb_batch_crc(p, h->length) != h->crc) return SL_ECORRUPT;
    if (h->attributes & SLB_ATTR_PRODUCER) {
        const uint8_t *q = p + SLB_HDR_SIZE;
        int64_t pid = (int64_t)slb_get64(q);
        int32_t epoch = (int16_t)(q[8] | q[9] << 8);
        int32_t seq = (int32_t)slb_get32(q + 12);
        bool control = (h->attributes & SLB_ATTR_CONTROL) != 0;
        if (pid < 0 || epoch < 0 || q[10] || q[11] || (control ? seq != -1 : seq < 0) ||
            (int64_t)seq + (int64_t)h->last_offset_delta > INT32_MAX)
            return SL_ECORRUPT;
        h->producer_id = pid;
        h->producer_epoch = epoch;
        h->base_sequence = seq;
    }
    return 0;
}

/* ---- record iterator ------------------------------------------------------- */

void slb_iter_init(slb_iter *it, const uint8_t *batch, const slb_batch_hdr *h)
{
    it->p = batch + slb_hdr_len(h);
    it->end = batch + h->length;
    it->h = *h;
    it->left = h->record_count;
    it->prev_delta = -1;
}

int slb_iter_next(slb_iter *it, slb_rec *r)
{
    if (it->left == 0) return it->p == it->end ? 0 : SL_ECORRUPT;
    const uint8_t *p = it->p, *start = p;
    int64_t len, tsd, od, kl, vl, hc;
    if (get_varint(&p, it->end, 5, &len) < 0) return SL_ECORRUPT;
    if (len < 6 || len > it->end - p) return SL_ECORRUPT;
    const uint8_t *end = p + len;
    if (*p++ != 0) return SL_ECORRUPT; /* attributes */
    if (get_varint(&p, end, 10, &tsd) < 0) return SL_ECORRUPT;
    if (get_varint(&p, end, 5, &od) < 0) return SL_ECORRUPT;
    if (od <= it->prev_delta || od > (int64_t)it->h.last_offset_delta) return SL_ECORRUPT;
    if (get_varint(&p, end, 5, &kl) < 0) return SL_ECORRUPT;
    if (kl < -1 || kl > end - p) return SL_ECORRUPT;
    r->key = kl >= 0 ? p : NULL;
    r->key_len = (int32_t)kl;
    if (kl > 0) p += kl;
    if (get_varint(&p, end, 5, &vl) < 0) return SL_ECORRUPT;
    if (vl < -1 || vl > end - p) return SL_ECORRUPT;
    r->value = vl >= 0 ? p : NULL;
    r->value_len = (int32_t)vl;
    if (vl > 0) p += vl;
    if (get_varint(&p, end, 5, &hc) < 0) return SL_ECORRUPT;
    if (hc < 0 || hc > end - p) return SL_ECORRUPT;
    r->headers = p;
    r->headers_len = (size_t)(end - p);
    r->header_count = (uint32_t)hc;
    /* Validate the headers now, so that slb_headers_decode cannot fail later
     * and a record is either wholly good or rejected. */
    for (int64_t i = 0; i < hc; i++) {
        int64_t hk, hv;
        if (get_varint(&p, end, 5, &hk) < 0 || hk < 0 || hk > end - p) return SL_ECORRUPT;
        p += hk;
        if (get_varint(&p, end, 5, &hv) < 0 || hv < -1 || hv > end - p) return SL_ECORRUPT;
        if (hv > 0) p += hv;
    }
    if (p != end) return SL_ECORRUPT;
    /* Timestamps: the delta must not overflow and must stay within max_ts. */
    if ((tsd > 0 && it->h.first_ts > INT64_MAX - tsd) ||
        (tsd < 0 && it->h.first_ts < INT64_MIN - tsd))
        return SL_ECORRUPT;
    r->timestamp = it->h.first_ts + tsd;
    if (r->timestamp > it->h.max_ts) return SL_ECORRUPT;
    r->offset = it->h.base_offset + od;
    r->raw = start;
    r->raw_len = (size_t)(end - start);
    it->prev_delta = od;
    it->p = end;
    it->left--;
    return 1;
}

int slb_headers_decode(const slb_rec *r, sl_record_header *out)
{
    const uint8_t *p = r->headers, *end = r->headers + r->headers_len;
    for (uint32_t i = 0; i < r->header_count; i++) {
        int64_t hk, hv;
        if (get_varint(&p, end, 5, &hk) < 0 || hk < 0 || hk > end - p) return SL_ECORRUPT;
        out[i].key = (const char *)p;
        out[i].key_len = (size_t)hk;
        p += hk;
        if (get_varint(&p, end, 5, &hv) < 0 || hv < -1 || hv > end - p) return SL_ECORRUPT;
        out[i].value = hv >= 0 ? p : NULL;
        out[i].value_len = hv > 0 ? (size_t)hv : 0;
        if (hv > 0) p += hv;
    }
    return 0;
}

long slb_decode_all(const uint8_t *buf, size_t len, bool check_crc)
{
    long n = 0;
    size_t pos = 0;
    int64_t next = -1;
    sl_record_header hdrs[16];
    while (pos < len) {
        slb_batch_hdr h;
        int rc = slb_batch_check(buf + pos, len - pos, &h, check_crc);
        if (rc < 0) return rc;
        if (next >= 0 && h.base_offset < next) return SL_ECORRUPT;
        slb_iter it;
        slb_rec r;
        slb_iter_init(&it, buf + pos, &h);
        while ((rc = slb_iter_next(&it, &r)) == 1) {
            if (r.header_count <= 16 && slb_headers_decode(&r, hdrs) < 0) return SL_ECORRUPT;
            n++;
        }
        if (rc < 0) return rc;
        next = slb_next_offset(&h);
        pos += h.length;
    }
    return n;
}

/* ---- encoder ----------------------------------------------------------------- */

size_t slb_record_payload(const sl_record *r)
{
    size_t n = (r->key ? r->key_len : 0) + (r->value ? r->value_len : 0);
    for (size_t i = 0; i < r->header_count; i++)
        n += r->headers[i].key_len + (r->headers[i].value ? r->headers[i].value_len : 0);
    return n;
}

static size_t body_size(const sl_record *r, int64_t ts_delta, int64_t offset_delta)
{
    size_t n = 1 + varint_size(ts_delta) + varint_size(offset_delta);
    n += r->key ? varint_size((int64_t)r->key_len) + r->key_len : 1;
    n += r->value ? varint_size((int64_t)r->value_len) + r->value_len : 1;
    n += varint_size((int64_t)r->header_count);
    for (size_t i = 0; i < r->header_count; i++) {
        const sl_record_header *h = &r->headers[i];
        n += varint_size((int64_t)h->key_len) + h->key_len;
        n += h->value ? varint_size((int64_t)h->value_len) + h->value_len : 1;
    }
    return n;
}

size_t slb_record_size(const sl_record *r, int64_t ts_delta, int64_t offset_delta)
{
    size_t b = body_size(r, ts_delta, offset_delta);
    return varint_size((int64_t)b) + b;
}

void slb_builder_init(slb_builder *b)
{
    memset(b, 0, sizeof *b);
}

void slb_builder_free(slb_builder *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}

void slb_builder_reset(slb_builder *b, int64_t base_offset)
{
    b->len = SLB_HDR_SIZE;
    b->count = 0;
    b->base_offset = base_offset;
    b->first_ts = 0;
    b->max_ts = INT64_MIN;
    b->last_delta = -1;
    b->producer = false;
    b->txn_attrs = 0;
}

void slb_marker_encode(uint8_t key[4], uint8_t value[6], int type)
{
    key[0] = key[1] = 0;
    key[2] = 0;
    key[3] = (uint8_t)type;
    memset(value, 0, 6);
}

int slb_marker_decode(const slb_rec *r)
{
    if (r->key_len != 4 || r->value_len != 6 || r->key[0] || r->key[1] || r->key[2] ||
        r->key[3] > SLB_MARKER_COMMIT || r->value[0] || r->value[1])
        return SL_ECORRUPT;
    return r->key[3];
}

int slb_builder_set_producer(slb_builder *b, int64_t producer_id, int16_t epoch,
                             int32_t base_sequence)
{
    if (slb_builder_reserve(b, SLB_PRODUCER_SIZE) < 0) return SL_ENOMEM;
    if (!b->producer) b->len += SLB_PRODUCER_SIZE;
    b->producer = true;
    b->producer_id = producer_id;
    b->producer_epoch = epoch;
    b->base_sequence = base_sequence;
    return 0;
}

int slb_builder_reserve(slb_builder *b, size_t more)
{
    if (b->buf && b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < b->len + more) cap *= 2;
    uint8_t *nb = realloc(b->buf, cap);
    if (!nb) return SL_ENOMEM;
    b->buf = nb;
    b->cap = cap;
    if (b->len < SLB_HDR_SIZE) b->len = SLB_HDR_SIZE;
    return 0;
}

int slb_builder_add_any(slb_builder *b, const sl_record *r, int64_t ts, int64_t offset_delta)
{
    if (b->count == 0) b->first_ts = ts;
    int64_t tsd = ts - b->first_ts;
    size_t body = body_size(r, tsd, offset_delta);
    if (slb_builder_reserve(b, body + 10) < 0) return SL_ENOMEM;
    uint8_t *p = b->buf + b->len;
    p = put_varint(p, (int64_t)body);
    *p++ = 0;
    p = put_varint(p, tsd);
    p = put_varint(p, offset_delta);
    if (r->key) {
        p = put_varint(p, (int64_t)r->key_len);
        if (r->key_len) memcpy(p, r->key, r->key_len);
        p += r->key_len;
    } else {
        p = put_varint(p, -1);
    }
    if (r->value) {
        p = put_varint(p, (int64_t)r->value_len);
        if (r->value_len) memcpy(p, r->value, r->value_len);
        p += r->value_len;
    } else {
        p = put_varint(p, -1);
    }
    p = put_varint(p, (int64_t)r->header_count);
    for (size_t i = 0; i < r->header_count; i++) {
        const sl_record_header *h = &r->headers[i];
        p = put_varint(p, (int64_t)h->key_len);
        if (h->key_len) memcpy(p, h->key, h->key_len);
        p += h->key_len;
        if (h->value) {
            p = put_varint(p, (int64_t)h->value_len);
            if (h->value_len) memcpy(p, h->value, h->value_len);
            p += h->value_len;
        } else {
            p = put_varint(p, -1);
        }
    }
    b->len = (size_t)(p - b->buf);
    b->count++;
    if (ts > b->max_ts) b->max_ts = ts;
    b->last_delta = offset_delta;
    return 0;
}

int slb_builder_add_raw(slb_builder *b, const slb_rec *r)
{
    /* Re-encode: the timestamp delta depends on the batch's first timestamp,
     * which changes when earlier records are dropped. */
    sl_record rec = {.key = r->key,
                     .key_len = r->key_len > 0 ? (size_t)r->key_len : 0,
                     .value = r->value,
                     .value_len = r->value_len > 0 ? (size_t)r->value_len : 0};
    if (r->key_len >= 0 && !rec.key) rec.key = "";
    if (r->value_len >= 0 && !rec.value) rec.value = "";
    sl_record_header stackh[8];
    sl_record_header *h = stackh;
    if (r->header_count > 8) {
        h = malloc(sizeof *h * r->header_count);
        if (!h) return SL_ENOMEM;
    }
    if (slb_headers_decode(r, h) < 0) {
        if (h != stackh) free(h);
        return SL_ECORRUPT;
    }
    rec.headers = h;
    rec.header_count = r->header_count;
    int rc = slb_builder_add(b, &rec, r->timestamp, r->offset - b->base_offset);
    if (h != stackh) free(h);
    return rc;
}

size_t slb_builder_finish(slb_builder *b, int64_t last_offset_delta)
{
    if (slb_builder_reserve(b, 0) < 0) return 0;
    uint8_t *p = b->buf;
    if (last_offset_delta < 0) last_offset_delta = b->last_delta < 0 ? 0 : b->last_delta;
    if (b->count == 0) b->max_ts = b->first_ts;
    slb_put64(p, (uint64_t)b->base_offset);
    slb_put32(p + 8, (uint32_t)b->len);
    p[16] = SLB_MAGIC;
    p[17] = b->producer ? (uint8_t)(SLB_ATTR_PRODUCER | b->txn_attrs) : 0;
    p[18] = p[19] = 0;
    if (b->producer) {
        slb_put64(p + SLB_HDR_SIZE, (uint64_t)b->producer_id);
        p[SLB_HDR_SIZE + 8] = (uint8_t)b->producer_epoch;
        p[SLB_HDR_SIZE + 9] = (uint8_t)((uint16_t)b->producer_epoch >> 8);
        p[SLB_HDR_SIZE + 10] = p[SLB_HDR_SIZE + 11] = 0;
        slb_put32(p + SLB_HDR_SIZE + 12, (uint32_t)b->base_sequence);
    }
    slb_put32(p + 20, (uint32_t)last_offset_delta);
    slb_put32(p + 24, b->count);
    slb_put64(p + 28, (uint64_t)b->first_ts);
    slb_put64(p + 36, (uint64_t)b->max_ts);
    slb_put32(p + 12, slb_batch_crc(p, (uint32_t)b->len));
    return b->len;
}
