/*
 * connectors/broker/kwire.h - Kafka's wire encoding, for the protocol server
 * (private header; static inline, no state).
 *
 * All fixed-width integers on Kafka's wire are big-endian. The primitive
 * types a request or response is made of:
 *
 *   type       encoding
 *   ---------  -----------------------------------------------------------
 *   int8..64   1, 2, 4, 8 bytes, big-endian, two's complement
 *   string     int16 length n, then n bytes of UTF-8; n = -1: null
 *   bytes      int32 length n, then n bytes; n = -1: null
 *   array      int32 count n, then n elements; n = -1: null
 *   varint     zigzag LEB128, at most 5 bytes (records only)
 *   varlong    zigzag LEB128, at most 10 bytes (records only)
 *
 * The reader (krd) checks every read against the end of the frame; a short
 * read sets bad and yields zeroes, so a handler parses straight through and
 * checks bad once. The writer (kwr) appends to a kbuf; an allocation
 * failure sets oom, later writes do nothing, and kwr_end drops the partial
 * frame. Flexible versions (compact types, tagged fields) are not spoken:
 * the server advertises non-flexible versions only (server.c).
 */
#ifndef SLUICE_BROKER_KWIRE_H
#define SLUICE_BROKER_KWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/broker.h"

/* Kafka error codes the server answers with. */
enum {
    KE_UNKNOWN = -1,
    KE_NONE = 0,
    KE_OFFSET_OUT_OF_RANGE = 1,
    KE_CORRUPT_MESSAGE = 2,
    KE_UNKNOWN_TOPIC = 3,
    KE_MESSAGE_TOO_LARGE = 10,
    KE_COORDINATOR_LOAD_IN_PROGRESS = 14,
    KE_COORDINATOR_NOT_AVAILABLE = 15,
    KE_NOT_COORDINATOR = 16,
    KE_INVALID_TOPIC = 17,
    KE_ILLEGAL_GENERATION = 22,
    KE_INCONSISTENT_GROUP_PROTOCOL = 23,
    KE_INVALID_GROUP_ID = 24,
    KE_UNKNOWN_MEMBER_ID = 25,
    KE_INVALID_SESSION_TIMEOUT = 26,
    KE_REBALANCE_IN_PROGRESS = 27,
    KE_TOPIC_AUTHORIZATION_FAILED = 29,
    KE_GROUP_AUTHORIZATION_FAILED = 30,
    KE_CLUSTER_AUTHORIZATION_FAILED = 31,
    KE_UNSUPPORTED_SASL_MECHANISM = 33,
    KE_ILLEGAL_SASL_STATE = 34,
    KE_UNSUPPORTED_VERSION = 35,
    KE_TOPIC_ALREADY_EXISTS = 36,
    KE_INVALID_PARTITIONS = 37,
    KE_INVALID_REPLICATION_FACTOR = 38,
    KE_INVALID_REQUEST = 42,
    KE_OUT_OF_ORDER_SEQ = 45,
    KE_DUPLICATE_SEQ = 46,
    KE_INVALID_PRODUCER_EPOCH = 47,
    KE_INVALID_TXN_STATE = 48,
    KE_INVALID_PRODUCER_ID_MAPPING = 49,
    KE_INVALID_TRANSACTION_TIMEOUT = 50,
    KE_CONCURRENT_TRANSACTIONS = 51,
    KE_TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53,
    KE_SASL_AUTHENTICATION_FAILED = 58,
    KE_UNKNOWN_PRODUCER_ID = 59,
    KE_NON_EMPTY_GROUP = 68,
    KE_GROUP_ID_NOT_FOUND = 69,
    KE_UNSUPPORTED_COMPRESSION = 76,
    KE_MEMBER_ID_REQUIRED = 79,
    KE_INVALID_RECORD = 87,
    KE_PRODUCER_FENCED = 90,
};

/* Api keys (Kafka's numbering). */
enum {
    KAPI_PRODUCE = 0,
    KAPI_FETCH = 1,
    KAPI_LIST_OFFSETS = 2,
    KAPI_METADATA = 3,
    KAPI_OFFSET_COMMIT = 8,
    KAPI_OFFSET_FETCH = 9,
    KAPI_FIND_COORDINATOR = 10,
    KAPI_JOIN_GROUP = 11,
    KAPI_HEARTBEAT = 12,
    KAPI_LEAVE_GROUP = 13,
    KAPI_SYNC_GROUP = 14,
    KAPI_DESCRIBE_GROUPS = 15,
    KAPI_LIST_GROUPS = 16,
    KAPI_SASL_HANDSHAKE = 17,
    KAPI_VERSIONS = 18,
    KAPI_CREATE_TOPICS = 19,
    KAPI_DELETE_TOPICS = 20,
    KAPI_INIT_PRODUCER_ID = 22,
    KAPI_ADD_PARTITIONS_TO_TXN = 24,
    KAPI_ADD_OFFSETS_TO_TXN = 25,
    KAPI_END_TXN = 26,
    KAPI_TXN_OFFSET_COMMIT = 28,
    KAPI_SASL_AUTHENTICATE = 36,
};

/* A growable byte buffer (a connection's input or output, or scratch). */
typedef struct kbuf {
    uint8_t *p;
    size_t len, cap, off; /* off: bytes already sent (output) or consumed (input) */
} kbuf;

static inline int kbuf_reserve(kbuf *b, size_t more)
{
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return SL_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline uint16_t kbe16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t kbe32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t kbe64(const uint8_t *p)
{
    return (uint64_t)kbe32(p) << 32 | kbe32(p + 4);
}
static inline void kput16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void kput32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void kput64(uint8_t *p, uint64_t v)
{
    kput32(p, (uint32_t)(v >> 32));
    kput32(p + 4, (uint32_t)v);
}

/* ---- the request reader: every read is bounds-checked; a short read sets
 * bad and yields zeroes, so a handler parses straight through and checks
 * bad once. ---- */

typedef struct krd {
    const uint8_t *p, *end;
    bool bad;
} krd;

static inline const uint8_t *krd_take(krd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *q = r->p;
    r->p += n;
    return q;
}
static inline int8_t krd_i8(krd *r)
{
    const uint8_t *q = krd_take(r, 1);
    return q ? (int8_t)q[0] : 0;
}
static inline int16_t krd_i16(krd *r)
{
    const uint8_t *q = krd_take(r, 2);
    return q ? (int16_t)kbe16(q) : 0;
}
static inline int32_t krd_i32(krd *r)
{
    const uint8_t *q = krd_take(r, 4);
    return q ? (int32_t)kbe32(q) : 0;
}
static inline int64_t krd_i64(krd *r)
{
    const uint8_t *q = krd_take(r, 8);
    return q ? (int64_t)kbe64(q) : 0;
}
/* A string (int16 length; -1 null: *len = -1, NULL). */
static inline const char *krd_str(krd *r, int *len)
{
    int16_t n = krd_i16(r);
    *len = n < 0 ? -1 : n;
    if (n < 0) {
        if (n != -1) r->bad = true;
        return NULL;
    }
    return (const char *)krd_take(r, (size_t)n);
}
/* Bytes (int32 length; -1 null). */
static inline const uint8_t *krd_bytes(krd *r, int32_t *len)
{
    int32_t n = krd_i32(r);
    *len = n;
    if (n < 0) {
        if (n != -1) r->bad = true;
        return NULL;
    }
    return krd_take(r, (size_t)n);
}
/* An array length: -1 (null) when nullable, else 0..what the rest of the
 * request can hold (each element takes at least min_elem bytes). */
static inline int32_t krd_arr(krd *r, bool nullable, size_t min_elem)
{
    int32_t n = krd_i32(r);
    if (n == -1 && nullable) return -1;
    if (n < 0 || (size_t)n * min_elem > (size_t)(r->end - r->p)) {
        r->bad = true;
        return 0;
    }
    return n;
}

/* ---- the response writer: appends to a connection's output; an
 * allocation failure sets oom and later writes do nothing. ---- */

typedef struct kwr {
    kbuf *b;
    size_t start; /* offset of the frame's length prefix */
    bool oom;
} kwr;

static inline uint8_t *kwr_take(kwr *w, size_t n)
{
    if (w->oom || kbuf_reserve(w->b, n) < 0) {
        w->oom = true;
        return NULL;
    }
    uint8_t *q = w->b->p + w->b->len;
    w->b->len += n;
    return q;
}
static inline void kwr_i8(kwr *w, int8_t v)
{
    uint8_t *q = kwr_take(w, 1);
    if (q) q[0] = (uint8_t)v;
}
static inline void kwr_i16(kwr *w, int16_t v)
{
    uint8_t *q = kwr_take(w, 2);
    if (q) kput16(q, (uint16_t)v);
}
static inline void kwr_i32(kwr *w, int32_t v)
{
    uint8_t *q = kwr_take(w, 4);
    if (q) kput32(q, (uint32_t)v);
}
static inline void kwr_i64(kwr *w, int64_t v)
{
    uint8_t *q = kwr_take(w, 8);
    if (q) kput64(q, (uint64_t)v);
}
static inline void kwr_str(kwr *w, const char *s, int len) /* len -1: null */
{
    kwr_i16(w, (int16_t)len);
    if (len > 0) {
        uint8_t *q = kwr_take(w, (size_t)len);
        if (q) memcpy(q, s, (size_t)len);
    }
}
static inline void kwr_bytes(kwr *w, const uint8_t *p, size_t len)
{
    kwr_i32(w, (int32_t)len);
    uint8_t *q = len ? kwr_take(w, len) : NULL;
    if (q) memcpy(q, p, len);
}

static inline void kwr_begin(kwr *w, kbuf *b, int32_t corr)
{
    w->b = b;
    w->oom = false;
    w->start = b->len;
    kwr_i32(w, 0);
    kwr_i32(w, corr);
}
/* Patch the length prefix. Returns 0 or SL_ENOMEM (the partial frame is
 * dropped). */
static inline int kwr_end(kwr *w)
{
    if (w->oom) {
        w->b->len = w->start;
        return SL_ENOMEM;
    }
    kput32(w->b->p + w->start, (uint32_t)(w->b->len - w->start - 4));
    return 0;
}

/* ---- records' varints ---- */

static inline int kgrow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return SL_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* Zigzag varint of at most maxb bytes. */
static inline int64_t krd_varint(krd *r, int maxb)
{
    uint64_t v = 0;
    for (int i = 0; i < maxb; i++) {
        const uint8_t *q = krd_take(r, 1);
        if (!q) return 0;
        v |= (uint64_t)(q[0] & 0x7f) << (7 * i);
        if (!(q[0] & 0x80)) return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    }
    r->bad = true;
    return 0;
}

/* Variable-length bytes of a record: varint length (-1 null). */
static inline const uint8_t *krd_vbytes(krd *r, int64_t *len)
{
    *len = krd_varint(r, 5);
    if (*len < -1) r->bad = true;
    if (*len <= 0) return NULL;
    return krd_take(r, (size_t)*len);
}

static inline uint8_t *kput_varint(uint8_t *q, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        *q++ = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    *q++ = (uint8_t)z;
    return q;
}

#endif
