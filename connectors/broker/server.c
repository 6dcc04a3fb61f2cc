/*
 * connectors/broker/server.c - the built-in broker speaks Kafka: a
 * single-threaded epoll server over a broker directory (sluice/server.h is
 * its public face, through connector_server.c).
 *
 * Event loop: one listening socket, one eventfd (sl_server_stop writes it;
 * async-signal-safe), and non-blocking client sockets, all level-triggered.
 * Each connection has an input buffer (grown to hold one whole frame, never
 * more than 4 + SLB_FRAME_MAX bytes) and an output buffer. Requests of a
 * connection are handled one at a time, in the order they came, and each
 * answer is appended to the output buffer before the next request is read,
 * so answers leave in request order (Kafka's guarantee per connection).
 * While a connection's output holds more than OUT_HIGH bytes its input is
 * not read (the client is slow to read: it is not allowed to grow us
 * without bound). A Fetch that finds less than its min_bytes is parked
 * (struct conn) until an append through this server or its max_wait_ms,
 * and is then handled again; the requests after it on its connection wait
 * with it, so the order holds. A frame whose length prefix is negative or above
 * SLB_FRAME_MAX, or whose header cannot be parsed, or whose body does not
 * parse as the request its header names, closes that connection only (one
 * line on the log); every other connection goes on.
 *
 * Framing (all integers big-endian, as everywhere on Kafka's wire):
 *
 *   request:  int32 length | int16 api_key | int16 api_version |
 *             int32 correlation_id | string client_id (int16 length, -1
 *             null) | body
 *   response: int32 length | int32 correlation_id | body
 *
 * Only non-flexible versions are advertised (table `apis` below), so the
 * request header is always v1 and the response header v0; flexible
 * requests (header v2, tagged fields) are only ever answered with an error,
 * which needs the correlation id alone (it precedes the tagged fields).
 *
 * Answers to what is not served:
 *   - ApiVersions at an unsupported version: the v0 layout, error 35
 *     UNSUPPORTED_VERSION, and the full table (so the client retries lower),
 *     as Kafka does;
 *   - any other unsupported version, or an unknown api key: the response
 *     header and one int16 error code 35. Kafka closes the connection
 *     instead; we never drop a connection for a request we merely do not
 *     serve.
 *
 * The record batch on Kafka's wire (v2, big-endian) differs from the one on
 * disk (batch.h, little-endian), so Produce decodes the client's batch into
 * sl_record views into the request (no copy) after checking its CRC-32C,
 * magic and attributes, and appends them through sl_log_append (or
 * sl_log_append_idempotent for a producer id), one batch per batch. Fetch
 * reads through an sl_log_reader and encodes the records as one Kafka batch
 * per partition. Kafka's v2 batch:
 *
 *   offset  size  field
 *   ------  ----  -------------------------------------------------------
 *        0     8  base_offset
 *        8     4  batch_length            bytes after this field
 *       12     4  partition_leader_epoch
 *       16     1  magic                   2
 *       17     4  crc                     CRC-32C of bytes [21, end)
 *       21     2  attributes              bits 0-2 compression, 3 timestamp
 *                                         type, 4 transactional, 5 control
 *       23     4  last_offset_delta
 *       27     8  first_timestamp
 *       35     8  max_timestamp
 *       43     8  producer_id             -1: none
 *       51     2  producer_epoch
 *       53     4  base_sequence
 *       57     4  record_count
 *       61     *  records                 as on disk (batch.h, varints)
 *
 * Allocation: connection buffers grow and are kept; the record and header
 * arrays Produce decodes into and the batch buffer Fetch encodes into are
 * the server's, grown and reused (no malloc per record).
 *
 * Not yet: flexible versions, compression, transactions over the wire,
 * consumer groups, ListOffsets by timestamp, sendfile; a waiting Fetch
 * wakes on appends through this server only (an append by another process
 * is seen at its max_wait_ms deadline).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "connectors/broker/server.h"
#include "engine/base/crc32c.h"

#define OUT_HIGH    (16 * 1024 * 1024) /* stop reading a client whose output is above this */
#define READ_CHUNK  65536
#define KHDR        61 /* bytes of a Kafka v2 batch header */
#define NODE_ID     0
#define MAX_HEADERS 65536 /* headers per record accepted from a client */

/* Kafka error codes used here. */
enum {
    KE_NONE = 0,
    KE_OFFSET_OUT_OF_RANGE = 1,
    KE_CORRUPT_MESSAGE = 2,
    KE_UNKNOWN_TOPIC = 3,
    KE_MESSAGE_TOO_LARGE = 10,
    KE_UNSUPPORTED_VERSION = 35,
    KE_INVALID_REQUEST = 42,
    KE_OUT_OF_ORDER_SEQ = 45,
    KE_INVALID_PRODUCER_EPOCH = 47,
    KE_UNSUPPORTED_COMPRESSION = 76,
    KE_INVALID_RECORD = 87,
    KE_UNKNOWN = -1,
};

enum { API_PRODUCE = 0, API_FETCH = 1, API_LIST_OFFSETS = 2, API_METADATA = 3, API_VERSIONS = 18 };

/* What the server answers: api key, lowest and highest version (all
 * non-flexible). */
static const struct {
    int16_t key, min, max;
} apis[] = {
    {API_PRODUCE, 3, 7},  {API_FETCH, 4, 10},   {API_LIST_OFFSETS, 1, 5},
    {API_METADATA, 0, 8}, {API_VERSIONS, 0, 2},
};
#define NAPIS (sizeof apis / sizeof apis[0])

typedef struct buf {
    uint8_t *p;
    size_t len, cap, off; /* off: bytes already sent (output) or consumed (input) */
} buf;

typedef struct conn {
    int fd;
    buf in, out;
    bool reading; /* EPOLLIN is armed */
    bool writing; /* EPOLLOUT is armed */
    /* A Fetch that found less than its min_bytes waits (its frame stays at
     * the head of the input, and the requests after it wait too) until a
     * Produce appends (gen moves past park_gen) or deadline (monotonic ms);
     * then it is handled again, with force at the deadline: answered with
     * whatever there is. */
    bool parked, force;
    int64_t deadline;
    uint64_t park_gen;
    char peer[64];
    struct conn *prev, *next;
} conn;

struct sl_server {
    sl_broker *b;
    int lfd, efd, sfd; /* listener, epoll, stop eventfd */
    int port;
    char host[256];
    FILE *log;
    conn *conns;
    /* Produce's decode arrays and Fetch's encode buffer (grown, reused). */
    sl_record *recs;
    size_t caprecs;
    sl_record_header *hdrs;
    size_t caphdrs;
    buf kb;
    uint64_t gen;      /* appends so far (wakes parked fetches) */
    int32_t park_wait; /* max_wait_ms of the Fetch that asked to park */
    char err[512];
};

/* ---- small helpers ------------------------------------------------------- */

static void seterr(sl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(sl_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
}

static int buf_reserve(buf *b, size_t more)
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

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}
static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* ---- the request reader: every read is bounds-checked; a short read sets
 * bad and yields zeroes, so a handler parses straight through and checks
 * bad once. ---- */

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd;

static const uint8_t *rd_take(rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *q = r->p;
    r->p += n;
    return q;
}
static int8_t rd_i8(rd *r)
{
    const uint8_t *q = rd_take(r, 1);
    return q ? (int8_t)q[0] : 0;
}
static int16_t rd_i16(rd *r)
{
    const uint8_t *q = rd_take(r, 2);
    return q ? (int16_t)be16(q) : 0;
}
static int32_t rd_i32(rd *r)
{
    const uint8_t *q = rd_take(r, 4);
    return q ? (int32_t)be32(q) : 0;
}
static int64_t rd_i64(rd *r)
{
    const uint8_t *q = rd_take(r, 8);
    return q ? (int64_t)be64(q) : 0;
}
/* A string (int16 length; -1 null: *len = -1, NULL). */
static const char *rd_str(rd *r, int *len)
{
    int16_t n = rd_i16(r);
    *len = n < 0 ? -1 : n;
    if (n < 0) {
        if (n != -1) r->bad = true;
        return NULL;
    }
    return (const char *)rd_take(r, (size_t)n);
}
/* Bytes (int32 length; -1 null). */
static const uint8_t *rd_bytes(rd *r, int32_t *len)
{
    int32_t n = rd_i32(r);
    *len = n;
    if (n < 0) {
        if (n != -1) r->bad = true;
        return NULL;
    }
    return rd_take(r, (size_t)n);
}
/* An array length: -1 (null) when nullable, else 0..what the rest of the
 * request can hold (each element takes at least min_elem bytes). */
static int32_t rd_arr(rd *r, bool nullable, size_t min_elem)
{
    int32_t n = rd_i32(r);
    if (n == -1 && nullable) return -1;
    if (n < 0 || (size_t)n * min_elem > (size_t)(r->end - r->p)) {
        r->bad = true;
        return 0;
    }
    return n;
}

/* ---- the response writer: appends to a connection's output; an
 * allocation failure sets oom and later writes do nothing. ---- */

typedef struct wr {
    buf *b;
    size_t start; /* offset of the frame's length prefix */
    bool oom;
} wr;

static uint8_t *wr_take(wr *w, size_t n)
{
    if (w->oom || buf_reserve(w->b, n) < 0) {
        w->oom = true;
        return NULL;
    }
    uint8_t *q = w->b->p + w->b->len;
    w->b->len += n;
    return q;
}
static void wr_i8(wr *w, int8_t v)
{
    uint8_t *q = wr_take(w, 1);
    if (q) q[0] = (uint8_t)v;
}
static void wr_i16(wr *w, int16_t v)
{
    uint8_t *q = wr_take(w, 2);
    if (q) put16(q, (uint16_t)v);
}
static void wr_i32(wr *w, int32_t v)
{
    uint8_t *q = wr_take(w, 4);
    if (q) put32(q, (uint32_t)v);
}
static void wr_i64(wr *w, int64_t v)
{
    uint8_t *q = wr_take(w, 8);
    if (q) put64(q, (uint64_t)v);
}
static void wr_str(wr *w, const char *s, int len) /* len -1: null */
{
    wr_i16(w, (int16_t)len);
    if (len > 0) {
        uint8_t *q = wr_take(w, (size_t)len);
        if (q) memcpy(q, s, (size_t)len);
    }
}
static void wr_bytes(wr *w, const uint8_t *p, size_t len)
{
    wr_i32(w, (int32_t)len);
    uint8_t *q = len ? wr_take(w, len) : NULL;
    if (q) memcpy(q, p, len);
}

static void wr_begin(wr *w, buf *b, int32_t corr)
{
    w->b = b;
    w->oom = false;
    w->start = b->len;
    wr_i32(w, 0);
    wr_i32(w, corr);
}
/* Patch the length prefix. Returns 0 or SL_ENOMEM (the partial frame is
 * dropped). */
static int wr_end(wr *w)
{
    if (w->oom) {
        w->b->len = w->start;
        return SL_ENOMEM;
    }
    put32(w->b->p + w->start, (uint32_t)(w->b->len - w->start - 4));
    return 0;
}

/* ---- topics -------------------------------------------------------------- */

/* A topic name from the wire as a C string in out; false if it cannot be
 * one (too long, or a NUL inside). */
static bool topic_name(const char *p, int len, char out[SL_TOPIC_NAME_MAX + 1])
{
    if (len <= 0 || len > SL_TOPIC_NAME_MAX || memchr(p, 0, (size_t)len)) return false;
    memcpy(out, p, (size_t)len);
    out[len] = 0;
    return true;
}

/* Describe the topic named by (p, len); NULL if there is none. */
static sl_topic_info *describe(sl_server *s, const char *p, int len)
{
    char name[SL_TOPIC_NAME_MAX + 1];
    sl_topic_info *ti = NULL;
    if (!topic_name(p, len, name) || sl_topic_describe(s->b, name, &ti) < 0) return NULL;
    return ti;
}

/* ---- ApiVersions --------------------------------------------------------- */

static void api_versions(wr *w, int16_t ver, int16_t error)
{
    wr_i16(w, error);
    wr_i32(w, (int32_t)NAPIS);
    for (size_t i = 0; i < NAPIS; i++) {
        wr_i16(w, apis[i].key);
        wr_i16(w, apis[i].min);
        wr_i16(w, apis[i].max);
    }
    if (ver >= 1) wr_i32(w, 0); /* throttle_time_ms */
}

/* ---- Metadata ------------------------------------------------------------ */

static void meta_topic(sl_server *s, wr *w, int16_t ver, const char *name, int len)
{
    sl_topic_info *ti = describe(s, name, len);
    wr_i16(w, ti ? KE_NONE : KE_UNKNOWN_TOPIC);
    wr_str(w, name, len);
    if (ver >= 1) wr_i8(w, 0); /* is_internal */
    int32_t np = ti ? ti->partition_count : 0;
    wr_i32(w, np);
    for (int32_t i = 0; i < np; i++) {
        wr_i16(w, KE_NONE);
        wr_i32(w, i);
        wr_i32(w, NODE_ID);          /* leader */
        if (ver >= 7) wr_i32(w, -1); /* leader_epoch: unknown */
        wr_i32(w, 1);                /* replica_nodes */
        wr_i32(w, NODE_ID);
        wr_i32(w, 1); /* isr_nodes */
        wr_i32(w, NODE_ID);
        if (ver >= 5) wr_i32(w, 0); /* offline_replicas */
    }
    if (ver >= 8) wr_i32(w, INT32_MIN); /* topic_authorized_operations: not asked */
    sl_topic_info_free(ti);
}

static int metadata(sl_server *s, rd *r, wr *w, int16_t ver)
{
    int32_t n = rd_arr(r, ver >= 1, 2);
    if (r->bad) return SL_EPARSE;
    const uint8_t *topics = r->p; /* re-read below, after the brokers */
    for (int32_t i = 0; i < n; i++) {
        int len;
        rd_str(r, &len);
    }
    if (ver >= 4) rd_i8(r); /* allow_auto_topic_creation: no auto-creation */
    if (ver >= 8) {
        rd_i8(r);
        rd_i8(r);
    }
    if (r->bad) return SL_EPARSE;

    if (ver >= 3) wr_i32(w, 0); /* throttle_time_ms */
    wr_i32(w, 1);               /* brokers: this one */
    wr_i32(w, NODE_ID);
    wr_str(w, s->host, (int)strlen(s->host));
    wr_i32(w, s->port);
    if (ver >= 1) wr_str(w, NULL, -1);    /* rack */
    if (ver >= 2) wr_str(w, "sluice", 6); /* cluster_id */
    if (ver >= 1) wr_i32(w, NODE_ID);     /* controller_id */
    if (n == 0 && ver >= 1) {             /* an empty list (v1+): no topics, the brokers only */
        wr_i32(w, 0);
    } else if (n > 0) {
        rd t = {topics, r->end, false};
        wr_i32(w, n);
        for (int32_t i = 0; i < n; i++) {
            int len;
            const char *name = rd_str(&t, &len);
            meta_topic(s, w, ver, name ? name : "", len < 0 ? 0 : len);
        }
    } else { /* null (v1+) or empty (v0): every topic */
        char **names = NULL;
        size_t count = 0;
        if (sl_topic_list(s->b, &names, &count) < 0) count = 0;
        wr_i32(w, (int32_t)count);
        for (size_t i = 0; i < count; i++) meta_topic(s, w, ver, names[i], (int)strlen(names[i]));
        sl_topic_list_free(names, count);
    }
    if (ver >= 8) wr_i32(w, INT32_MIN); /* cluster_authorized_operations */
    return 0;
}

/* ---- Produce ------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
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
static int64_t rd_varint(rd *r, int maxb)
{
    uint64_t v = 0;
    for (int i = 0; i < maxb; i++) {
        const uint8_t *q = rd_take(r, 1);
        if (!q) return 0;
        v |= (uint64_t)(q[0] & 0x7f) << (7 * i);
        if (!(q[0] & 0x80)) return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    }
    r->bad = true;
    return 0;
}

/* Variable-length bytes of a record: varint length (-1 null). */
static const uint8_t *rd_vbytes(rd *r, int64_t *len)
{
    *len = rd_varint(r, 5);
    if (*len < -1) r->bad = true;
    if (*len <= 0) return NULL;
    return rd_take(r, (size_t)*len);
}

/* Decode the records of the Kafka batch at p (len bytes, checked by the
 * caller) into s->recs; returns the count or a Kafka error (negated as
 * -code - 1000 to tell it apart: see produce_batch). */
static int decode_records(sl_server *s, const uint8_t *p, size_t len, int32_t count)
{
    int64_t first_ts = (int64_t)be64(p + 27);
    if (grow((void **)&s->recs, &s->caprecs, (size_t)count, sizeof *s->recs) < 0) return SL_ENOMEM;
    rd r = {p + KHDR, p + len, false};
    size_t nh = 0;
    for (int32_t i = 0; i < count; i++) {
        int64_t rl = rd_varint(&r, 5);
        if (r.bad || rl < 0 || rl > r.end - r.p) return SL_ECORRUPT;
        rd rr = {r.p, r.p + rl, false};
        r.p += rl;
        sl_record *rec = &s->recs[i];
        rd_i8(&rr); /* attributes */
        int64_t tsd = rd_varint(&rr, 10);
        rd_varint(&rr, 5); /* offset delta: offsets are the log's */
        int64_t kl, vl;
        rec->key = rd_vbytes(&rr, &kl);
        rec->key_len = kl > 0 ? (size_t)kl : 0;
        if (kl == 0) rec->key = "";
        rec->value = rd_vbytes(&rr, &vl);
        rec->value_len = vl > 0 ? (size_t)vl : 0;
        if (vl == 0) rec->value = "";
        int64_t t = first_ts + tsd;
        rec->timestamp = t < 0 ? SL_TIMESTAMP_NONE : t;
        int64_t hc = rd_varint(&rr, 5);
        if (rr.bad || hc < 0 || hc > MAX_HEADERS) return SL_ECORRUPT;
        if (grow((void **)&s->hdrs, &s->caphdrs, nh + (size_t)hc, sizeof *s->hdrs) < 0)
            return SL_ENOMEM;
        rec->headers = (const sl_record_header *)(uintptr_t)nh; /* index; fixed below */
        rec->header_count = (size_t)hc;
        for (int64_t j = 0; j < hc; j++) {
            sl_record_header *h = &s->hdrs[nh++];
            int64_t hk, hv;
            h->key = (const char *)rd_vbytes(&rr, &hk);
            if (hk < 0) rr.bad = true;
            h->key_len = hk > 0 ? (size_t)hk : 0;
            if (hk == 0) h->key = "";
            h->value = rd_vbytes(&rr, &hv);
            h->value_len = hv > 0 ? (size_t)hv : 0;
            if (hv == 0) h->value = "";
        }
        if (rr.bad || rr.p != rr.end) return SL_ECORRUPT;
    }
    if (r.p != r.end) return SL_ECORRUPT;
    for (int32_t i = 0; i < count; i++) {
        if (s->recs[i].header_count)
            s->recs[i].headers = s->hdrs + (uintptr_t)s->recs[i].headers;
        else
            s->recs[i].headers = NULL;
    }
    return count;
}

static int16_t kafka_error(int rc)
{
    switch (rc) {
    case SL_ENOENT: return KE_UNKNOWN_TOPIC;
    case SL_ETOOBIG: return KE_MESSAGE_TOO_LARGE;
    case SL_EFENCED: return KE_INVALID_PRODUCER_EPOCH;
    case SL_ERANGE: return KE_OUT_OF_ORDER_SEQ;
    case SL_ECORRUPT: return KE_CORRUPT_MESSAGE;
    case SL_EINVAL: return KE_INVALID_RECORD;
    default: return KE_UNKNOWN;
    }
}

/* Append the batches of one partition's records (p, len). Returns a Kafka
 * error code; *base gets the first offset written. Stops at the first bad
 * batch (those before it stay written, as Kafka would not; the client sees
 * the error and the offset of what was written). */
static int16_t produce_partition(sl_server *s, const char *topic, int32_t part, int32_t nparts,
                                 const uint8_t *p, size_t len, int64_t *base)
{
    *base = -1;
    if (part < 0 || part >= nparts) return KE_UNKNOWN_TOPIC;
    if (!p || len == 0) return KE_CORRUPT_MESSAGE;
    while (len > 0) {
        if (len < 17) return KE_CORRUPT_MESSAGE;
        int8_t magic = (int8_t)p[16];
        if (magic != 2) return KE_UNSUPPORTED_VERSION; /* message formats v0 and v1 */
        int32_t blen = (int32_t)be32(p + 8);
        if (blen < KHDR - 12 || (size_t)blen > len - 12) return KE_CORRUPT_MESSAGE;
        size_t n = (size_t)blen + 12;
        if (be32(p + 17) != sli_crc32c(0, p + 21, n - 21)) return KE_CORRUPT_MESSAGE;
        uint16_t attrs = be16(p + 21);
        if (attrs & 0x07) return KE_UNSUPPORTED_COMPRESSION;
        if (attrs & 0x30) return KE_UNSUPPORTED_VERSION; /* transactions: not yet */
        int32_t count = (int32_t)be32(p + 57);
        /* a record takes at least 7 bytes: no count the batch cannot hold */
        if (count <= 0 || (size_t)count > (n - KHDR) / 7) return KE_CORRUPT_MESSAGE;
        int rc = decode_records(s, p, n, count);
        if (rc < 0) return rc == SL_ENOMEM ? KE_UNKNOWN : KE_CORRUPT_MESSAGE;
        int64_t pid = (int64_t)be64(p + 43), off = -1;
        if (pid >= 0) {
            sl_producer_ref ref = {pid, (int16_t)be16(p + 51), (int32_t)be32(p + 53)};
            if (ref.epoch < 0 || ref.base_sequence < 0) return KE_INVALID_RECORD;
            rc = sl_log_append_idempotent(s->b, topic, part, &ref, s->recs, (size_t)count, &off);
        } else {
            rc = sl_log_append(s->b, topic, part, s->recs, (size_t)count, &off);
        }
        if (rc < 0) return kafka_error(rc);
        if (*base < 0) *base = off;
        s->gen++;
        p += n;
        len -= n;
    }
    return KE_NONE;
}

static int produce(sl_server *s, rd *r, wr *w, int16_t ver, bool *no_answer)
{
    int len;
    rd_str(r, &len); /* transactional_id */
    int16_t acks = rd_i16(r);
    rd_i32(r); /* timeout_ms */
    int32_t nt = rd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    *no_answer = acks == 0;
    wr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn = rd_str(r, &tl);
        int32_t np = rd_arr(r, false, 8);
        if (r->bad) return SL_EPARSE;
        sl_topic_info *ti = describe(s, tn, tl);
        wr_str(w, tn, tl);
        wr_i32(w, np);
        for (int32_t j = 0; j < np; j++) {
            int32_t part = rd_i32(r), rl;
            const uint8_t *recs = rd_bytes(r, &rl);
            if (r->bad) {
                sl_topic_info_free(ti);
                return SL_EPARSE;
            }
            int64_t base = -1;
            int16_t e = ti ? produce_partition(s, ti->name, part, ti->partition_count, recs,
                                               rl < 0 ? 0 : (size_t)rl, &base)
                           : KE_UNKNOWN_TOPIC;
            wr_i32(w, part);
            wr_i16(w, e);
            wr_i64(w, base);
            wr_i64(w, -1); /* log_append_time_ms: create time is kept */
            if (ver >= 5)
                wr_i64(w, ti && part >= 0 && part < ti->partition_count
                              ? ti->partitions[part].first_offset
                              : -1);
        }
        sl_topic_info_free(ti);
    }
    wr_i32(w, 0); /* throttle_time_ms */
    return 0;
}

/* ---- Fetch --------------------------------------------------------------- */

static uint8_t *kput_varint(uint8_t *q, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        *q++ = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    *q++ = (uint8_t)z;
    return q;
}

/* Append message m to the Kafka batch being built in s->kb (header space
 * already reserved) as offset m->offset - base. */
static int kb_add(sl_server *s, const sl_message *m, int64_t base, int64_t first_ts)
{
    size_t need = 1 + 10 + 5 + 5 + m->key_len + 5 + m->value_len + 5 + 5;
    for (size_t i = 0; i < m->header_count; i++)
        need += 10 + m->headers[i].key_len + m->headers[i].value_len;
    if (buf_reserve(&s->kb, need + 5) < 0) return SL_ENOMEM;
    uint8_t body[64], *q = body; /* everything before the key */
    *q++ = 0;
    q = kput_varint(q, m->timestamp - first_ts);
    q = kput_varint(q, m->offset - base);
    /* Sizes of the varints after the key are not known until written: write
     * the body first to a place after a 5-byte gap, then move it. */
    uint8_t *start = s->kb.p + s->kb.len, *d = start + 5;
    memcpy(d, body, (size_t)(q - body));
    d += q - body;
    d = kput_varint(d, m->key ? (int64_t)m->key_len : -1);
    if (m->key && m->key_len) memcpy(d, m->key, m->key_len), d += m->key_len;
    d = kput_varint(d, m->value ? (int64_t)m->value_len : -1);
    if (m->value && m->value_len) memcpy(d, m->value, m->value_len), d += m->value_len;
    d = kput_varint(d, (int64_t)m->header_count);
    for (size_t i = 0; i < m->header_count; i++) {
        const sl_record_header *h = &m->headers[i];
        d = kput_varint(d, (int64_t)h->key_len);
        if (h->key_len) memcpy(d, h->key, h->key_len), d += h->key_len;
        d = kput_varint(d, h->value ? (int64_t)h->value_len : -1);
        if (h->value && h->value_len) memcpy(d, h->value, h->value_len), d += h->value_len;
    }
    size_t body_len = (size_t)(d - (start + 5));
    uint8_t lp[5], *le = kput_varint(lp, (int64_t)body_len);
    size_t ll = (size_t)(le - lp);
    memmove(start + ll, start + 5, body_len);
    memcpy(start, lp, ll);
    s->kb.len += ll + body_len;
    return 0;
}

/* Read partition part of topic from offset into one Kafka batch in s->kb
 * (empty when there is nothing), up to max bytes (at least one record).
 * Returns 0 or a negative SL_E... code. */
static int fetch_read(sl_server *s, const char *topic, int32_t part, int64_t offset, int isolation,
                      int32_t max)
{
    s->kb.len = 0;
    sl_log_reader *lr = NULL;
    int rc = sl_log_reader_open(&lr, s->b, topic, part, offset);
    if (rc < 0) return rc;
    if ((rc = sl_log_reader_set_isolation(lr, isolation)) < 0) goto fail;
    if ((rc = buf_reserve(&s->kb, KHDR)) < 0) goto fail;
    s->kb.len = KHDR;
    int64_t base = -1, last = -1, first_ts = 0, max_ts = INT64_MIN;
    int32_t count = 0;
    for (;;) {
        if (count > 0 && s->kb.len >= (size_t)max) break;
        sl_message m;
        rc = sl_log_reader_next(lr, &m, 0);
        if (rc == SL_EAGAIN) break;
        if (rc < 0) goto fail;
        if (count == 0) {
            base = m.offset;
            first_ts = m.timestamp;
        }
        size_t before = s->kb.len;
        if ((rc = kb_add(s, &m, base, first_ts)) < 0) goto fail;
        if (count > 0 && s->kb.len > (size_t)max) { /* over the limit: not this one */
            s->kb.len = before;
            break;
        }
        last = m.offset;
        if (m.timestamp > max_ts) max_ts = m.timestamp;
        count++;
    }
    sl_log_reader_close(lr);
    if (count == 0) {
        s->kb.len = 0;
        return 0;
    }
    uint8_t *h = s->kb.p;
    put64(h, (uint64_t)base);
    put32(h + 8, (uint32_t)(s->kb.len - 12));
    put32(h + 12, 0); /* partition_leader_epoch */
    h[16] = 2;
    put16(h + 21, 0);
    put32(h + 23, (uint32_t)(last - base));
    put64(h + 27, (uint64_t)first_ts);
    put64(h + 35, (uint64_t)max_ts);
    put64(h + 43, (uint64_t)-1);
    put16(h + 51, (uint16_t)-1);
    put32(h + 53, (uint32_t)-1);
    put32(h + 57, (uint32_t)count);
    put32(h + 17, sli_crc32c(0, h + 21, s->kb.len - 21));
    return 0;
fail:
    sl_log_reader_close(lr);
    s->kb.len = 0;
    return rc;
}

/* Returns 0 (answered), 1 (nothing to answer yet: park it, see conn) or
 * SL_EPARSE. */
static int fetch(sl_server *s, rd *r, wr *w, int16_t ver, bool force)
{
    rd_i32(r); /* replica_id */
    int32_t max_wait = rd_i32(r), min_bytes = rd_i32(r);
    int64_t got = 0;
    bool any_err = false;
    int32_t max_bytes = rd_i32(r);
    int8_t iso = rd_i8(r);
    if (ver >= 7) {
        rd_i32(r); /* session_id: sessions are not kept; 0 is answered */
        rd_i32(r); /* session_epoch */
    }
    int32_t nt = rd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    int isolation = iso == 1 ? SL_READ_COMMITTED : SL_READ_UNCOMMITTED;
    if (max_bytes <= 0) max_bytes = 1;
    wr_i32(w, 0); /* throttle_time_ms */
    if (ver >= 7) {
        wr_i16(w, KE_NONE);
        wr_i32(w, 0); /* session_id */
    }
    wr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn = rd_str(r, &tl);
        int32_t np = rd_arr(r, false, 16);
        if (r->bad) return SL_EPARSE;
        sl_topic_info *ti = describe(s, tn, tl);
        wr_str(w, tn, tl);
        wr_i32(w, np);
        for (int32_t j = 0; j < np; j++) {
            int32_t part = rd_i32(r);
            if (ver >= 9) rd_i32(r); /* current_leader_epoch */
            int64_t off = rd_i64(r);
            if (ver >= 5) rd_i64(r); /* log_start_offset (a follower's) */
            int32_t pmax = rd_i32(r);
            if (r->bad) {
                sl_topic_info_free(ti);
                return SL_EPARSE;
            }
            int16_t e = KE_NONE;
            int64_t hw = -1, lso = -1, start = -1;
            if (!ti || part < 0 || part >= ti->partition_count) {
                e = KE_UNKNOWN_TOPIC;
            } else {
                const sl_partition_info *pi = &ti->partitions[part];
                hw = pi->next_offset;
                lso = pi->last_stable_offset;
                start = pi->first_offset;
                int64_t end = isolation == SL_READ_COMMITTED ? lso : hw;
                if (off < start || off > hw) {
                    e = KE_OFFSET_OUT_OF_RANGE;
                } else if (off < end && max_bytes > 0) {
                    int32_t lim = pmax < max_bytes ? pmax : max_bytes;
                    int rc = fetch_read(s, ti->name, part, off, isolation, lim > 0 ? lim : 1);
                    if (rc < 0) e = kafka_error(rc);
                    max_bytes -= (int32_t)s->kb.len;
                    got += (int64_t)s->kb.len;
                }
            }
            wr_i32(w, part);
            wr_i16(w, e);
            wr_i64(w, hw);
            wr_i64(w, lso);
            if (ver >= 5) wr_i64(w, start);
            wr_i32(w, -1); /* aborted_transactions: null (readers filter them) */
            if (e != KE_NONE) any_err = true;
            bool have = e == KE_NONE && s->kb.len > 0;
            wr_bytes(w, s->kb.p, have ? s->kb.len : 0);
            s->kb.len = 0;
        }
        sl_topic_info_free(ti);
    }
    if (ver >= 7) {
        int32_t nf = rd_arr(r, false, 6); /* forgotten_topics_data */
        for (int32_t i = 0; i < nf && !r->bad; i++) {
            int tl;
            rd_str(r, &tl);
            int32_t n = rd_arr(r, false, 4);
            for (int32_t j = 0; j < n; j++) rd_i32(r);
        }
    }
    if (r->bad) return SL_EPARSE;
    if (!force && max_wait > 0 && !any_err && got < (min_bytes > 0 ? min_bytes : 1)) {
        s->park_wait = max_wait;
        return 1;
    }
    return 0;
}

/* ---- ListOffsets --------------------------------------------------------- */

static int list_offsets(sl_server *s, rd *r, wr *w, int16_t ver)
{
    rd_i32(r); /* replica_id */
    int8_t iso = ver >= 2 ? rd_i8(r) : 0;
    int32_t nt = rd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    if (ver >= 2) wr_i32(w, 0); /* throttle_time_ms */
    wr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn = rd_str(r, &tl);
        int32_t np = rd_arr(r, false, 12);
        if (r->bad) return SL_EPARSE;
        sl_topic_info *ti = describe(s, tn, tl);
        wr_str(w, tn, tl);
        wr_i32(w, np);
        for (int32_t j = 0; j < np; j++) {
            int32_t part = rd_i32(r);
            if (ver >= 4) rd_i32(r); /* current_leader_epoch */
            int64_t ts = rd_i64(r);
            if (r->bad) {
                sl_topic_info_free(ti);
                return SL_EPARSE;
            }
            int16_t e = KE_NONE;
            int64_t off = -1;
            if (!ti || part < 0 || part >= ti->partition_count) {
                e = KE_UNKNOWN_TOPIC;
            } else if (ts == -2) {
                off = ti->partitions[part].first_offset;
            } else if (ts == -1) {
                off = iso == 1 ? ti->partitions[part].last_stable_offset
                               : ti->partitions[part].next_offset;
            } else {
                e = KE_INVALID_REQUEST; /* by timestamp: not yet */
            }
            wr_i32(w, part);
            wr_i16(w, e);
            wr_i64(w, -1); /* timestamp */
            wr_i64(w, off);
            if (ver >= 4) wr_i32(w, -1); /* leader_epoch */
        }
        sl_topic_info_free(ti);
    }
    return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

/* Answer the request frame (p, n: after the length prefix) on c. Returns
 * 0, 1 (a Fetch to park: nothing written), SL_EPARSE (malformed: close the
 * connection) or SL_ENOMEM. */
static int handle(sl_server *s, conn *c, const uint8_t *p, size_t n)
{
    rd r = {p, p + n, false};
    int16_t key = rd_i16(&r), ver = rd_i16(&r);
    int32_t corr = rd_i32(&r);
    if (r.bad) return SL_EPARSE;
    int supported = -1; /* index in apis if key and version are served */
    bool known = false;
    for (size_t i = 0; i < NAPIS; i++)
        if (apis[i].key == key) {
            known = true;
            if (ver >= apis[i].min && ver <= apis[i].max) supported = (int)i;
        }
    wr w;
    wr_begin(&w, &c->out, corr);
    if (supported < 0) {
        if (key == API_VERSIONS)
            api_versions(&w, 0, KE_UNSUPPORTED_VERSION);
        else
            wr_i16(&w, KE_UNSUPPORTED_VERSION);
        (void)known;
        return wr_end(&w);
    }
    int len;
    rd_str(&r, &len); /* client_id */
    if (r.bad) return SL_EPARSE;
    int rc = 0;
    bool no_answer = false;
    switch (key) {
    case API_VERSIONS: api_versions(&w, ver, KE_NONE); break;
    case API_METADATA: rc = metadata(s, &r, &w, ver); break;
    case API_PRODUCE: rc = produce(s, &r, &w, ver, &no_answer); break;
    case API_FETCH: rc = fetch(s, &r, &w, ver, c->force); break;
    case API_LIST_OFFSETS: rc = list_offsets(s, &r, &w, ver); break;
    }
    if (rc != 0 || no_answer) {
        c->out.len = w.start;
        return rc;
    }
    return wr_end(&w);
}

/* ---- connections and the loop --------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logf_(sl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(sl_server *s, const char *fmt, ...)
{
    if (!s->log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(s->log, fmt, ap);
    va_end(ap);
    fflush(s->log);
}

static void conn_close(sl_server *s, conn *c)
{
    epoll_ctl(s->efd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->in.p);
    free(c->out.p);
    free(c);
}

/* Arm EPOLLIN while the output is below OUT_HIGH, EPOLLOUT while output
 * is pending. */
static int conn_arm(sl_server *s, conn *c)
{
    bool rdg = c->out.len - c->out.off<OUT_HIGH, wrg = c->out.len> c->out.off;
    if (rdg == c->reading && wrg == c->writing) return 0;
    struct epoll_event ev = {.events = (rdg ? EPOLLIN : 0) | (wrg ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(s->efd, EPOLL_CTL_MOD, c->fd, &ev) < 0) return SL_EIO;
    c->reading = rdg;
    c->writing = wrg;
    return 0;
}

/* Send what the output holds, as far as the socket takes it. Returns 0 or
 * -1 (the connection is gone). */
static int conn_flush(conn *c)
{
    while (c->out.off < c->out.len) {
        ssize_t k = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return -1;
        }
        c->out.off += (size_t)k;
    }
    c->out.off = c->out.len = 0;
    return 0;
}

/* Answer every whole frame in c's input (while the output has room).
 * Returns 0 or -1 after closing c. */
static int conn_process(sl_server *s, conn *c)
{
    buf *in = &c->in;
    while (!c->parked && in->len - in->off >= 4 && c->out.len - c->out.off < OUT_HIGH) {
        int32_t fl = (int32_t)be32(in->p + in->off);
        if (fl < 0 || fl > SLB_FRAME_MAX) {
            logf_(s,
                  "sluice broker serve: client %s: frame length %d out of range 0..%d; "
                  "disconnected\n",
                  c->peer, fl, SLB_FRAME_MAX);
            conn_close(s, c);
            return -1;
        }
        if (in->len - in->off < 4 + (size_t)fl) break;
        int rc = handle(s, c, in->p + in->off + 4, (size_t)fl);
        if (rc < 0) {
            logf_(s, "sluice broker serve: client %s: %s; disconnected\n", c->peer,
                  rc == SL_EPARSE ? "malformed request" : "out of memory");
            conn_close(s, c);
            return -1;
        }
        if (rc == 1) {
            c->parked = true;
            c->deadline = mono_ms() + s->park_wait;
            c->park_gen = s->gen;
            break;
        }
        c->force = false;
        in->off += 4 + (size_t)fl;
    }
    if (in->off == in->len) in->off = in->len = 0;
    return 0;
}

static int conn_read(sl_server *s, conn *c)
{
    buf *in = &c->in;
    if (in->off > 0 && in->off == in->len) in->off = in->len = 0;
    if (in->off > 0 && in->cap - in->len < READ_CHUNK) { /* slide to the front */
        memmove(in->p, in->p + in->off, in->len - in->off);
        in->len -= in->off;
        in->off = 0;
    }
    size_t want = READ_CHUNK;
    if (in->len - in->off >= 4) { /* room for the whole frame, up to its limit */
        int32_t fl = (int32_t)be32(in->p + in->off);
        if (fl >= 0 && fl <= SLB_FRAME_MAX && 4 + (size_t)fl > in->len - in->off)
            want = 4 + (size_t)fl - (in->len - in->off);
        if (want > (size_t)4 << 20) want = (size_t)4 << 20;
    }
    if (buf_reserve(in, want) < 0) {
        logf_(s, "sluice broker serve: client %s: out of memory; disconnected\n", c->peer);
        conn_close(s, c);
        return -1;
    }
    ssize_t k = recv(c->fd, in->p + in->len, in->cap - in->len, 0);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    if (k <= 0) {
        conn_close(s, c);
        return -1;
    }
    in->len += (size_t)k;
    return conn_process(s, c);
}

static void accept_all(sl_server *s)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(s->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN, or a transient error: the next event retries */
        conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char host[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(s->efd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->reading = true;
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
    }
}

/* Handle again the parked fetches whose wait is over (an append since, or
 * the deadline); returns the epoll timeout until the next deadline (-1:
 * none parked). */
static int wake_parked(sl_server *s)
{
    int64_t now = mono_ms(), next = -1;
    conn *c = s->conns;
    while (c) {
        conn *nx = c->next; /* c may be closed below */
        if (c->parked && (c->park_gen != s->gen || now >= c->deadline)) {
            c->parked = false;
            c->force = now >= c->deadline;
            if (conn_process(s, c) == 0 && (conn_flush(c) < 0 || conn_arm(s, c) < 0))
                conn_close(s, c);
        } else if (c->parked) {
            int64_t left = c->deadline - now;
            if (next < 0 || left < next) next = left;
        }
        c = nx;
    }
    /* conn_process may have parked again (nothing new for it yet) */
    for (c = s->conns; c; c = c->next)
        if (c->parked) {
            int64_t left = c->deadline - now;
            if (left < 0) left = 0;
            if (next < 0 || left < next) next = left;
        }
    return next < 0 ? -1 : (int)(next > 60000 ? 60000 : next);
}

int slb_server_run(sl_server *s)
{
    if (!s || s->efd < 0) return SL_EINVAL;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(s->efd, evs, 64, wake_parked(s));
        if (n < 0) {
            if (errno == EINTR) continue;
            seterr(s, "epoll_wait: %s", strerror(errno));
            return SL_EIO;
        }
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &s->sfd) {
                uint64_t v;
                if (read(s->sfd, &v, sizeof v) < 0) { /* drained either way */
                }
                return 0;
            }
            if (ptr == &s->lfd) {
                accept_all(s);
                continue;
            }
            conn *c = ptr;
            uint32_t e = evs[i].events;
            if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (conn_read(s, c) < 0) continue;
            }
            if (conn_flush(c) < 0) {
                conn_close(s, c);
                continue;
            }
            /* Output drained below the mark: frames left in the input. */
            if (conn_process(s, c) < 0) continue;
            if (conn_flush(c) < 0 || conn_arm(s, c) < 0) conn_close(s, c);
        }
    }
}

/* ---- open and close ------------------------------------------------------- */

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

int slb_server_open(sl_server **out, sl_broker *b, const char *addr)
{
    int rc = SL_EINVAL;
    struct addrinfo *ai = NULL;
    sl_server *s = calloc(1, sizeof *s);
    *out = s;
    if (!s) return SL_ENOMEM;
    s->lfd = s->efd = s->sfd = -1;
    s->b = b;
    if (!addr) addr = "127.0.0.1:9092";
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!b || !colon || hl == 0 || hl >= sizeof s->host || !colon[1] || *end || port < 0 ||
        port > 65535) {
        seterr(s, "listen address '%s' is not HOST:PORT (PORT 0..65535)", addr);
        goto fail;
    }
    memcpy(s->host, addr, hl);
    s->host[hl] = 0;
    if (s->host[0] == '[' && s->host[hl - 1] == ']') { /* [::1] */
        memmove(s->host, s->host + 1, hl - 2);
        s->host[hl - 2] = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int g = getaddrinfo(s->host, colon + 1, &hints, &ai);
    if (g != 0) {
        seterr(s, "listen address '%s': %s", addr, gai_strerror(g));
        goto fail;
    }
    if (!is_loopback(ai->ai_addr)) {
        seterr(s,
               "listen address '%s' is not a loopback address; the server has no "
               "authentication yet, so it listens on loopback only",
               addr);
        goto fail;
    }
    rc = SL_EIO;
    s->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(s->lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s->lfd, 128) < 0) {
        seterr(s, "cannot listen on %s: %s", addr, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    if (getsockname(s->lfd, (struct sockaddr *)&sa, &sl) < 0) {
        seterr(s, "getsockname: %s", strerror(errno));
        goto fail;
    }
    s->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                            : ((struct sockaddr_in6 *)&sa)->sin6_port);
    s->efd = epoll_create1(EPOLL_CLOEXEC);
    s->sfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = &s->lfd};
    struct epoll_event es = {.events = EPOLLIN, .data.ptr = &s->sfd};
    if (s->efd < 0 || s->sfd < 0 || epoll_ctl(s->efd, EPOLL_CTL_ADD, s->lfd, &el) < 0 ||
        epoll_ctl(s->efd, EPOLL_CTL_ADD, s->sfd, &es) < 0) {
        seterr(s, "event loop: %s", strerror(errno));
        goto fail;
    }
    freeaddrinfo(ai);
    return 0;
fail:
    if (ai) freeaddrinfo(ai);
    if (s->lfd >= 0) close(s->lfd);
    if (s->efd >= 0) close(s->efd);
    if (s->sfd >= 0) close(s->sfd);
    s->lfd = s->efd = s->sfd = -1;
    return rc;
}

int slb_server_port(const sl_server *s)
{
    return s ? s->port : -1;
}

void slb_server_set_log(sl_server *s, FILE *log)
{
    if (s) s->log = log;
}

void slb_server_stop(sl_server *s)
{
    uint64_t one = 1;
    if (s && s->sfd >= 0 && write(s->sfd, &one, sizeof one) < 0) {
        /* already signalled (counter full): the loop will see it */
    }
}

void slb_server_close(sl_server *s)
{
    if (!s) return;
    while (s->conns) conn_close(s, s->conns);
    if (s->lfd >= 0) close(s->lfd);
    if (s->efd >= 0) close(s->efd);
    if (s->sfd >= 0) close(s->sfd);
    free(s->recs);
    free(s->hdrs);
    free(s->kb.p);
    free(s);
}

const char *slb_server_errmsg(const sl_server *s)
{
    return s ? s->err : "out of memory";
}
