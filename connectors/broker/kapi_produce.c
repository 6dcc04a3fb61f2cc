/*
 * connectors/broker/kapi_produce.c - Produce: a client's record batches into
 * the log. Handler contract: server_int.h.
 *
 * The record batch on Kafka's wire (v2, big-endian) differs from the one on
 * disk (batch.h, little-endian), so Produce decodes the client's batch into
 * sl_record views into the request (no copy) after checking its CRC-32C,
 * magic and attributes, and appends them through sl_log_append (or
 * slb_log_append for a producer id), one batch per batch. A producer id's
 * batch is checked against the partition's producer state (log.c: an older
 * epoch is INVALID_PRODUCER_EPOCH, a retry of the last batch is answered
 * with its offset, one of an older batch with DUPLICATE_SEQUENCE_NUMBER,
 * which clients take as written, a gap with OUT_OF_ORDER_SEQUENCE_NUMBER).
 * A transactional batch (attributes bit 4) is accepted only from the
 * transactional id's current epoch and for a partition added to its open
 * transaction (kapi_txn.c; else INVALID_PRODUCER_EPOCH or
 * INVALID_TXN_STATE); control batches (bit 5) are the broker's to write,
 * never a client's (INVALID_RECORD). Kafka's v2 batch:
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
 * The record and header arrays it decodes into are the server's, grown and
 * reused (no malloc per record). A compressed batch (attributes bits 0-2:
 * gzip 1, snappy 2 raw or xerial-framed, lz4 3 frame, zstd 4 frame) has its
 * records section decompressed by kcompress.c into the server's one
 * growable buffer (s->zbuf), behind a copy of the 61-byte header, and is
 * then decoded and appended exactly as an uncompressed one: the log keeps it
 * uncompressed. Its decompressed size is capped at the request limit
 * (max_req): above it, or malformed, it is CORRUPT_MESSAGE, with a warning
 * line in the server's log.
 *
 * acks. The appends are synchronous on the server's thread: sl_log_append
 * returns only after the batch is written and the topic's fsync policy is
 * met (log.c), and the answer is written after it. So:
 *   acks=0    no answer at all (SLB_K_SILENT), the append is done all the same;
 *   acks=1    answered after the append returned, i.e. with the same
 *             durability as acks=all (there are no replicas to wait for);
 *   acks=all  the same: fsync=always: fdatasync'ed before the answer (a
 *             failed fdatasync is the answer's error, and the partition then
 *             refuses appends until reopened); fsync=interval: in the page
 *             cache, synced within fsync_interval_ms by this append or the
 *             flusher thread; fsync=never: in the page cache (survives a
 *             crash of the process, not of the machine), as Kafka's default
 *             flush settings promise.
 * tests/unit/test_server_fetch.c checks that an fdatasync failure reaches
 * the acks=all answer of an fsync=always topic and not a fsync=never one.
 */
#include "connectors/broker/broker_int.h"
#include "connectors/broker/kcompress.h"
#include "connectors/broker/server_int.h"
#include "engine/base/crc32c.h"

#define KHDR        61    /* bytes of a Kafka v2 batch header */
#define MAX_HEADERS 65536 /* headers per record accepted from a client */

/* Decode the records of the Kafka batch at p (len bytes, checked by the
 * caller) into s->recs; returns the count or a Kafka error (negated as
 * -code - 1000 to tell it apart: see produce_batch). */
static int decode_records(sl_server *s, const uint8_t *p, size_t len, int32_t count)
{
    int64_t first_ts = (int64_t)kbe64(p + 27);
    if (kgrow((void **)&s->recs, &s->caprecs, (size_t)count, sizeof *s->recs) < 0) return SL_ENOMEM;
    krd r = {p + KHDR, p + len, false};
    size_t nh = 0;
    for (int32_t i = 0; i < count; i++) {
        int64_t rl = krd_varint(&r, 5);
        if (r.bad || rl < 0 || rl > r.end - r.p) return SL_ECORRUPT;
        krd rr = {r.p, r.p + rl, false};
        r.p += rl;
        sl_record *rec = &s->recs[i];
        krd_i8(&rr); /* attributes */
        int64_t tsd = krd_varint(&rr, 10);
        krd_varint(&rr, 5); /* offset delta: offsets are the log's */
        int64_t kl, vl;
        rec->key = krd_vbytes(&rr, &kl);
        rec->key_len = kl > 0 ? (size_t)kl : 0;
        if (kl == 0) rec->key = "";
        rec->value = krd_vbytes(&rr, &vl);
        rec->value_len = vl > 0 ? (size_t)vl : 0;
        if (vl == 0) rec->value = "";
        int64_t t = first_ts + tsd;
        rec->timestamp = t < 0 ? SL_TIMESTAMP_NONE : t;
        int64_t hc = krd_varint(&rr, 5);
        if (rr.bad || hc < 0 || hc > MAX_HEADERS) return SL_ECORRUPT;
        if (kgrow((void **)&s->hdrs, &s->caphdrs, nh + (size_t)hc, sizeof *s->hdrs) < 0)
            return SL_ENOMEM;
        rec->headers = (const sl_record_header *)(uintptr_t)nh; /* index; fixed below */
        rec->header_count = (size_t)hc;
        for (int64_t j = 0; j < hc; j++) {
            sl_record_header *h = &s->hdrs[nh++];
            int64_t hk, hv;
            h->key = (const char *)krd_vbytes(&rr, &hk);
            if (hk < 0) rr.bad = true;
            h->key_len = hk > 0 ? (size_t)hk : 0;
            if (hk == 0) h->key = "";
            h->value = krd_vbytes(&rr, &hv);
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

/* The framing of the batch at p (len bytes left in the record set): its
 * size in *n, magic 2, the CRC-32C when crc is set, attributes a client may
 * send. Returns a Kafka error code. */
static int16_t batch_frame(const uint8_t *p, size_t len, size_t *n, bool crc)
{
    if (len < 17) return KE_CORRUPT_MESSAGE;
    int8_t magic = (int8_t)p[16];
    if (magic != 2) return KE_UNSUPPORTED_VERSION; /* message formats v0 and v1 */
    int32_t blen = (int32_t)kbe32(p + 8);
    if (blen < KHDR - 12 || (size_t)blen > len - 12) return KE_CORRUPT_MESSAGE;
    *n = (size_t)blen + 12;
    if (crc && kbe32(p + 17) != sli_crc32c(0, p + 21, *n - 21)) return KE_CORRUPT_MESSAGE;
    uint16_t attrs = kbe16(p + 21);
    if (attrs & 0x20) return KE_INVALID_RECORD; /* control batches are the broker's */
    if ((attrs & 0x07) > SLB_KZ_ZSTD) return KE_UNSUPPORTED_COMPRESSION;
    return KE_NONE;
}

/* Append the batches of one partition's records (p, len). Returns a Kafka
 * error code; *base gets the first offset written. Every batch's framing,
 * CRC and attributes are checked before the first is appended, so a bad
 * batch refuses the whole set (as Kafka validates a set whole); a batch
 * whose records do not decode (a CRC-valid batch of a broken client) stops
 * the set there, the batches before it written (the client sees the error
 * and the offset of what was written). */
static int16_t produce_partition(sl_server *s, const char *tid, int tidl, const char *topic,
                                 int32_t part, int32_t nparts, const uint8_t *p, size_t len,
                                 int64_t *base)
{
    *base = -1;
    if (part < 0 || part >= nparts) return KE_UNKNOWN_TOPIC;
    if (!p || len == 0) return KE_CORRUPT_MESSAGE;
    size_t n;
    for (size_t at = 0; at < len; at += n) {
        int16_t e = batch_frame(p + at, len - at, &n, true);
        if (e != KE_NONE) return e;
    }
    while (len > 0) {
        batch_frame(p, len, &n, false); /* checked above */
        uint16_t attrs = kbe16(p + 21);
        /* a compressed batch: its header, then its records decompressed, in
         * s->zbuf (kcompress.c), decoded from there as an uncompressed one */
        const uint8_t *dp = p;
        size_t dn = n;
        int codec = attrs & 0x07;
        if (codec) {
            if (kgrow((void **)&s->zbuf, &s->capzbuf, KHDR, 1) < 0) return KE_UNKNOWN;
            memcpy(s->zbuf, p, KHDR);
            size_t zn;
            char zerr[160];
            int zr = slb_kdecompress(codec, p + KHDR, n - KHDR, &s->zbuf, &s->capzbuf, KHDR,
                                     (size_t)s->max_req, &zn, zerr, sizeof zerr);
            if (zr < 0) {
                slb_srv_logl(s, SLB_LOG_WARN, "sluice broker serve: Produce to %s-%d: %s\n", topic,
                             (int)part, zerr);
                return zr == SL_ENOMEM ? KE_UNKNOWN : KE_CORRUPT_MESSAGE;
            }
            dp = s->zbuf;
            dn = KHDR + zn;
        }
        int32_t count = (int32_t)kbe32(p + 57);
        /* a record takes at least 7 bytes: no count the batch cannot hold */
        if (count <= 0 || (size_t)count > (dn - KHDR) / 7) return KE_CORRUPT_MESSAGE;
        int rc = decode_records(s, dp, dn, count);
        if (rc < 0) return rc == SL_ENOMEM ? KE_UNKNOWN : KE_CORRUPT_MESSAGE;
        int64_t pid = (int64_t)kbe64(p + 43), off = -1;
        bool txn = attrs & 0x10;
        if (txn && pid < 0) return KE_INVALID_RECORD;
        if (pid >= 0) {
            sl_producer_ref ref = {pid, (int16_t)kbe16(p + 51), (int32_t)kbe32(p + 53)};
            if (ref.epoch < 0 || ref.base_sequence < 0) return KE_INVALID_RECORD;
            if (txn) {
                int16_t e = slb_k_txn_check_produce(s, tid, tidl, pid, ref.epoch, topic, part);
                if (e != KE_NONE) return e;
            }
            rc = slb_log_append(s->b, topic, part, &ref,
                                (txn ? SLB_ATTR_TRANSACTIONAL : 0) | SLB_APPEND_DUP_OK, s->recs,
                                (size_t)count, &off);
            if (rc == SLB_APPEND_DUP) return KE_DUPLICATE_SEQ; /* written before */
        } else {
            rc = sl_log_append(s->b, topic, part, s->recs, (size_t)count, &off);
        }
        if (rc < 0) return slb_srv_kafka_error(rc);
        if (*base < 0) *base = off;
        slb_srv_wake(s);
        p += n;
        len -= n;
    }
    return KE_NONE;
}

/* Whether the topic data ahead of r parses whole: a malformed request must
 * be refused before its first batch is appended, not after. */
static bool topic_data_parses(krd r)
{
    int32_t nt = krd_arr(&r, false, 6);
    for (int32_t i = 0; i < nt && !r.bad; i++) {
        int tl;
        krd_str(&r, &tl);
        int32_t np = krd_arr(&r, false, 8);
        for (int32_t j = 0; j < np && !r.bad; j++) {
            int32_t rl;
            krd_i32(&r); /* partition */
            krd_bytes(&r, &rl);
        }
    }
    return !r.bad;
}

int slb_k_produce(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int tidl;
    const char *tid = krd_str(r, &tidl);
    int16_t acks = krd_i16(r);
    krd_i32(r); /* timeout_ms */
    if (r->bad || !topic_data_parses(*r)) return SL_EPARSE;
    int32_t nt = krd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    kwr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn = krd_str(r, &tl);
        int32_t np = krd_arr(r, false, 8);
        if (r->bad) return SL_EPARSE;
        sl_topic_info *ti = slb_srv_describe(s, tn, tl);
        kwr_str(w, tn, tl);
        kwr_i32(w, np);
        for (int32_t j = 0; j < np; j++) {
            int32_t part = krd_i32(r), rl;
            const uint8_t *recs = krd_bytes(r, &rl);
            if (r->bad) {
                sl_topic_info_free(ti);
                return SL_EPARSE;
            }
            int64_t base = -1;
            int16_t e = ti ? produce_partition(s, tid, tidl, ti->name, part, ti->partition_count,
                                               recs, rl < 0 ? 0 : (size_t)rl, &base)
                           : KE_UNKNOWN_TOPIC;
            kwr_i32(w, part);
            kwr_i16(w, e);
            kwr_i64(w, base);
            kwr_i64(w, -1); /* log_append_time_ms: create time is kept */
            if (ver >= 5)
                kwr_i64(w, ti && part >= 0 && part < ti->partition_count
                               ? ti->partitions[part].first_offset
                               : -1);
        }
        sl_topic_info_free(ti);
    }
    kwr_i32(w, 0); /* throttle_time_ms */
    return acks == 0 ? SLB_K_SILENT : 0;
}
