/*
 * connectors/broker/batch.h - the on-disk record batch format: encoder and
 * checked decoder (private header).
 *
 * A segment file (.log) is a plain concatenation of record batches. All
 * fixed-width integers are little-endian. A batch:
 *
 *   offset  size  field
 *   ------  ----  -------------------------------------------------------
 *        0     8  base_offset        int64, offset of the first record slot
 *        8     4  batch_length       uint32, bytes of the whole batch,
 *                                    header included (>= 44)
 *       12     4  crc                uint32, CRC-32C of bytes [0,12) followed
 *                                    by bytes [16,batch_length)
 *       16     1  magic              2
 *       17     1  attributes         0, or SLB_ATTR_PRODUCER (0x40): the
 *                                    producer fields below follow the header;
 *                                    with it, SLB_ATTR_TRANSACTIONAL (0x10):
 *                                    part of a transaction, and with that,
 *                                    SLB_ATTR_CONTROL (0x20): a control batch
 *                                    (Kafka's bits 4 and 5); other bits
 *                                    reserved (compression codecs)
 *       18     2  reserved           0
 *       20     4  last_offset_delta  uint32; the batch covers offsets
 *                                    base_offset .. base_offset+last_offset_delta
 *                                    (kept by compaction, so the next batch's
 *                                    base is known even when records are gone)
 *       24     4  record_count       uint32, records that follow
 *       28     8  first_timestamp    int64 ms, timestamp of the first record
 *       36     8  max_timestamp      int64 ms, largest timestamp in the batch
 *       44     *  records            record_count records, back to back
 *
 * A batch written by an idempotent or transactional producer (attributes has
 * SLB_ATTR_PRODUCER) carries the fields Kafka's v2 header holds in its
 * producerId / producerEpoch / baseSequence slots, as 16 bytes between the
 * header and the records (batches without the bit, every log written before
 * it existed included, are unchanged: records start at byte 44):
 *
 *   offset  size  field
 *   ------  ----  -------------------------------------------------------
 *       44     8  producer_id        int64 >= 0 (txn.c allocates them)
 *       52     2  producer_epoch     int16 >= 0
 *       54     2  reserved           0
 *       56     4  base_sequence      int32 >= 0, sequence number of the first
 *                                    record; record i has base_sequence + i
 *       60     *  records            as above
 *
 * The CRC covers the producer fields like every other byte after it.
 *
 * A control batch (a transaction marker) holds one record, whose key and
 * value are those of Kafka's control records (big-endian, as on Kafka's
 * wire, so a protocol server passes them through); its base_sequence is -1
 * (it takes no sequence number):
 *
 *   field   size  content
 *   ------  ----  -------------------------------------------------------
 *   key        2  version, 0
 *              2  type: 0 ABORT, 1 COMMIT
 *   value      2  version, 0
 *              4  coordinator epoch, 0 (one coordinator: the directory)
 *
 * Readers never return control records: they skip control batches, whose
 * offsets are thus absent from what a consumer sees (as in Kafka).
 *
 * A record (as in Kafka's record v2; "varint" is a zigzag LEB128 varint of at
 * most 5 bytes, "varlong" of at most 10 bytes):
 *
 *   field             encoding
 *   ----------------  ------------------------------------------------------
 *   length            varint, bytes of the record after this field
 *   attributes        1 byte, 0
 *   timestamp_delta   varlong, timestamp - first_timestamp
 *   offset_delta      varint, offset - base_offset; strictly increasing
 *                     within a batch, 0 <= delta <= last_offset_delta
 *   key_length        varint, -1 for no key
 *   key               key_length bytes
 *   value_length      varint, -1 for a null value (a tombstone)
 *   value             value_length bytes
 *   header_count      varint >= 0
 *   headers           header_count times: varint key_length (>= 0), key,
 *                     varint value_length (-1 null), value
 *
 * The decoder trusts nothing: every length is checked against the bytes that
 * are there, so a corrupt or hostile batch yields SL_ECORRUPT, never a read
 * out of bounds (tests/fuzz/fuzz_batch_decode.c exercises it).
 */
#ifndef SLUICE_BROKER_BATCH_H
#define SLUICE_BROKER_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sluice/broker.h"

#define SLB_HDR_SIZE           44
#define SLB_ATTR_PRODUCER      0x40 /* producer fields follow the header */
#define SLB_PRODUCER_SIZE      16   /* bytes of the producer fields */
#define SLB_ATTR_TRANSACTIONAL 0x10 /* part of a transaction (needs PRODUCER) */
#define SLB_ATTR_CONTROL       0x20 /* a transaction marker (needs TRANSACTIONAL) */
#define SLB_MARKER_ABORT       0
#define SLB_MARKER_COMMIT      1
#define SLB_MAGIC              2
#define SLB_MAX_BATCH          (SL_MAX_RECORD_BYTES_LIMIT + (1 << 20)) /* largest batch_length */

typedef struct slb_batch_hdr {
    int64_t base_offset;
    uint32_t length;
    uint32_t crc;
    uint8_t magic;
    uint8_t attributes;
    uint32_t last_offset_delta;
    uint32_t record_count;
    int64_t first_ts;
    int64_t max_ts;
    /* Producer fields (attributes & SLB_ATTR_PRODUCER), filled by
     * slb_batch_check once the whole batch is there; else -1. */
    int64_t producer_id;
    int32_t producer_epoch;
    int32_t base_sequence;
} slb_batch_hdr;

/* Bytes before the first record: 44, or 60 with the producer fields. */
static inline size_t slb_hdr_len(const slb_batch_hdr *h)
{
    return SLB_HDR_SIZE + ((h->attributes & SLB_ATTR_PRODUCER) ? SLB_PRODUCER_SIZE : 0);
}

/* One decoded record; pointers point into the batch. */
typedef struct slb_rec {
    int64_t offset;
    int64_t timestamp;
    const uint8_t *key; /* NULL if key_len < 0 */
    int32_t key_len;    /* -1: no key */
    const uint8_t *value;
    int32_t value_len; /* -1: tombstone */
    uint32_t header_count;
    const uint8_t *headers; /* encoded headers, headers_len bytes */
    size_t headers_len;
    const uint8_t *raw; /* the whole record, length prefix included */
    size_t raw_len;
} slb_rec;

typedef struct slb_iter {
    const uint8_t *p, *end;
    slb_batch_hdr h;
    uint32_t left;
    int64_t prev_delta;
} slb_iter;

/* Parse the 44-byte header at p (at least SLB_HDR_SIZE bytes). Checks magic and
 * length bounds only; the producer fields are not read (-1). Returns 0 or
 * SL_ECORRUPT. */
int slb_hdr_parse(const uint8_t *p, slb_batch_hdr *h);
/* CRC of a whole batch of len bytes, as stored at bytes 12..15. */
uint32_t slb_batch_crc(const uint8_t *batch, uint32_t len);
/* Check the batch at p, of which avail bytes are present: 0 if it is complete
 * with a good CRC (h filled), SL_EAGAIN if fewer than its length are present
 * (h filled when at least the header is), SL_ECORRUPT otherwise. With
 * check_crc false, the CRC is not computed. */
int slb_batch_check(const uint8_t *p, size_t avail, slb_batch_hdr *h, bool check_crc);
static inline int64_t slb_next_offset(const slb_batch_hdr *h)
{
    return h->base_offset + (int64_t)h->last_offset_delta + 1;
}

/* Iterate over the records of a checked batch. next returns 1 with *r filled,
 * 0 at the end (after checking that count and length agree), SL_ECORRUPT on a
 * malformed record. */
void slb_iter_init(slb_iter *it, const uint8_t *batch, const slb_batch_hdr *h);
int slb_iter_next(slb_iter *it, slb_rec *r);
/* Decode a record's headers into out (r->header_count entries). Returns 0 or
 * SL_ECORRUPT. */
int slb_headers_decode(const slb_rec *r, sl_record_header *out);

/* Decode every record of a buffer of batches (check_crc as above): the fuzz
 * target's and the corpus test's entry point. Returns the number of records,
 * or SL_ECORRUPT / SL_EAGAIN (truncated). */
long slb_decode_all(const uint8_t *buf, size_t len, bool check_crc);

/* ---- encoder ----------------------------------------------------------- */

typedef struct slb_builder {
    uint8_t *buf; /* header space + records */
    size_t len, cap;
    uint32_t count;
    int64_t base_offset;
    int64_t first_ts, max_ts;
    int64_t last_delta;
    bool producer;     /* slb_builder_set_producer was called since the reset */
    uint8_t txn_attrs; /* SLB_ATTR_TRANSACTIONAL / _CONTROL bits, with producer */
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
} slb_builder;

/* Bytes a record takes in a batch (length prefix included). */
size_t slb_record_size(const sl_record *r, int64_t ts_delta, int64_t offset_delta);
/* Bytes of key + value + headers as counted against max_record_bytes. */
size_t slb_record_payload(const sl_record *r);
void slb_builder_init(slb_builder *b);
void slb_builder_free(slb_builder *b);
/* Start an empty batch whose first record will have offset base_offset. */
void slb_builder_reset(slb_builder *b, int64_t base_offset);
/* Mark the batch as a producer's (the producer fields, table above). Call
 * after slb_builder_reset and before the first record. Returns 0 or
 * SL_ENOMEM. */
int slb_builder_set_producer(slb_builder *b, int64_t producer_id, int16_t epoch,
                             int32_t base_sequence);
/* A marker record (table above) of type SLB_MARKER_*: key 4 bytes, value
 * 6 bytes. */
void slb_marker_encode(uint8_t key[4], uint8_t value[6], int type);
/* The type of the marker record r of a control batch, or SL_ECORRUPT. */
int slb_marker_decode(const slb_rec *r);
/* Make room for more bytes after b->len. Returns 0 or SL_ENOMEM. */
int slb_builder_reserve(slb_builder *b, size_t more);
/* slb_builder_add for any record (headers included); out of line. */
int slb_builder_add_any(slb_builder *b, const sl_record *r, int64_t ts, int64_t offset_delta);

/* ---- varints (zigzag LEB128, as Kafka) ---------------------------------- */

static inline uint64_t slb_zz64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* Bytes of the LEB128 encoding of v: 7 bits per byte, so floor(bits / 7) + 1
 * with bits = 63 - clz(v | 1); the division by a constant is a multiply. */
static inline size_t slb_uvarint_size(uint64_t v)
{
    return (size_t)(63 - __builtin_clzll(v | 1)) / 7 + 1;
}

static inline uint8_t *slb_put_uvarint(uint8_t *p, uint64_t v)
{
    if (v < 0x80) { /* the common cases take one or two well-predicted branches */
        *p = (uint8_t)v;
        return p + 1;
    }
    if (v < 0x4000) {
        p[0] = (uint8_t)(v | 0x80);
        p[1] = (uint8_t)(v >> 7);
        return p + 2;
    }
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Append a record with timestamp ts and offset base+offset_delta (deltas must
 * increase). Returns 0 or SL_ENOMEM. This is the producer's per-record path:
 * a record without headers is encoded here, inline, straight into the batch
 * buffer (sizes first, so the length prefix is written in place; one
 * capacity check; the key and value are the only bytes copied). */
static inline int slb_builder_add(slb_builder *b, const sl_record *r, int64_t ts,
                                  int64_t offset_delta)
{
    if (r->header_count) return slb_builder_add_any(b, r, ts, offset_delta);
    if (b->count == 0) b->first_ts = ts;
    uint64_t tz = slb_zz64(ts - b->first_ts), oz = slb_zz64(offset_delta);
    size_t kl = r->key ? r->key_len : 0, vl = r->value ? r->value_len : 0;
    uint64_t kz = r->key ? (uint64_t)kl << 1 : 1, vz = r->value ? (uint64_t)vl << 1 : 1;
    /* attributes + header_count (0) + the varints + key + value */
    size_t body = 2 + slb_uvarint_size(tz) + slb_uvarint_size(oz) + slb_uvarint_size(kz) +
                  slb_uvarint_size(vz) + kl + vl;
    if (b->len + body + 10 > b->cap && slb_builder_reserve(b, body + 10) < 0) return SL_ENOMEM;
    uint8_t *p = slb_put_uvarint(b->buf + b->len, (uint64_t)body << 1);
    *p++ = 0;
    p = slb_put_uvarint(p, tz);
    p = slb_put_uvarint(p, oz);
    p = slb_put_uvarint(p, kz);
    if (kl) memcpy(p, r->key, kl);
    p = slb_put_uvarint(p + kl, vz);
    if (vl) memcpy(p, r->value, vl);
    p += vl;
    *p++ = 0;
    b->len = (size_t)(p - b->buf);
    b->count++;
    if (ts > b->max_ts) b->max_ts = ts;
    b->last_delta = offset_delta;
    return 0;
}
/* Append an already-encoded record (from slb_rec.raw) with its offset and
 * timestamp (used by compaction, which keeps offsets and timestamps). */
int slb_builder_add_raw(slb_builder *b, const slb_rec *r);
/* Write the header with the given last_offset_delta (-1: that of the last
 * record added) and the CRC. Returns the batch length. */
size_t slb_builder_finish(slb_builder *b, int64_t last_offset_delta);

/* Little-endian helpers. */
static inline void slb_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline void slb_put64(uint8_t *p, uint64_t v)
{
    slb_put32(p, (uint32_t)v);
    slb_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t slb_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t slb_get64(const uint8_t *p)
{
    return (uint64_t)slb_get32(p) | (uint64_t)slb_get32(p + 4) << 32;
}

#endif
