/*
 * connectors/broker/kapi_fetch.c - Fetch and ListOffsets. Handler contract:
 * server_int.h.
 *
 * Fetch reads each partition through an sl_log_reader (at the request's
 * isolation level) and encodes the records as one Kafka v2 batch per
 * partition (layout: kapi_produce.c) in the server's reused buffer s->kb.
 * A Fetch that finds less than its min_bytes parks (SLB_K_PARK) for its
 * max_wait_ms; an append through this server wakes it (an append by
 * another process is seen at the deadline).
 */
#include "connectors/broker/server_int.h"
#include "engine/base/crc32c.h"

#define KHDR 61 /* bytes of a Kafka v2 batch header */

/* ---- Fetch --------------------------------------------------------------- */

/* Append message m to the Kafka batch being built in s->kb (header space
 * already reserved) as offset m->offset - base. */
static int kb_add(sl_server *s, const sl_message *m, int64_t base, int64_t first_ts)
{
    size_t need = 1 + 10 + 5 + 5 + m->key_len + 5 + m->value_len + 5 + 5;
    for (size_t i = 0; i < m->header_count; i++)
        need += 10 + m->headers[i].key_len + m->headers[i].value_len;
    if (kbuf_reserve(&s->kb, need + 5) < 0) return SL_ENOMEM;
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
    if ((rc = kbuf_reserve(&s->kb, KHDR)) < 0) goto fail;
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

/* Returns 0 (answered), 1 (nothing to answer yet: park it, see slb_conn) or
 * SL_EPARSE. */
int slb_k_fetch(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    bool force = c->force;
    krd_i32(r); /* replica_id */
    int32_t max_wait = krd_i32(r), min_bytes = krd_i32(r);
    int64_t got = 0;
    bool any_err = false;
    int32_t max_bytes = krd_i32(r);
    int8_t iso = krd_i8(r);
    if (ver >= 7) {
        krd_i32(r); /* session_id: sessions are not kept; 0 is answered */
        krd_i32(r); /* session_epoch */
    }
    int32_t nt = krd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    int isolation = iso == 1 ? SL_READ_COMMITTED : SL_READ_UNCOMMITTED;
    if (max_bytes <= 0) max_bytes = 1;
    kwr_i32(w, 0); /* throttle_time_ms */
    if (ver >= 7) {
        kwr_i16(w, KE_NONE);
        kwr_i32(w, 0); /* session_id */
    }
    kwr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn = krd_str(r, &tl);
        int32_t np = krd_arr(r, false, 16);
        if (r->bad) return SL_EPARSE;
        sl_topic_info *ti = slb_srv_describe(s, tn, tl);
        kwr_str(w, tn, tl);
        kwr_i32(w, np);
        for (int32_t j = 0; j < np; j++) {
            int32_t part = krd_i32(r);
            if (ver >= 9) krd_i32(r); /* current_leader_epoch */
            int64_t off = krd_i64(r);
            if (ver >= 5) krd_i64(r); /* log_start_offset (a follower's) */
            int32_t pmax = krd_i32(r);
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
                    if (rc < 0) e = slb_srv_kafka_error(rc);
                    max_bytes -= (int32_t)s->kb.len;
                    got += (int64_t)s->kb.len;
                }
            }
            kwr_i32(w, part);
            kwr_i16(w, e);
            kwr_i64(w, hw);
            kwr_i64(w, lso);
            if (ver >= 5) kwr_i64(w, start);
            kwr_i32(w, -1); /* aborted_transactions: null (readers filter them) */
            if (e != KE_NONE) any_err = true;
            bool have = e == KE_NONE && s->kb.len > 0;
            kwr_bytes(w, s->kb.p, have ? s->kb.len : 0);
            s->kb.len = 0;
        }
        sl_topic_info_free(ti);
    }
    if (ver >= 7) {
        int32_t nf = krd_arr(r, false, 6); /* forgotten_topics_data */
        for (int32_t i = 0; i < nf && !r->bad; i++) {
            int tl;
            krd_str(r, &tl);
            int32_t n = krd_arr(r, false, 4);
            for (int32_t j = 0; j < n; j++) krd_i32(r);
        }
    }
    if (r->bad) return SL_EPARSE;
    if (!force && max_wait > 0 && !any_err && got < (min_bytes > 0 ? min_bytes : 1)) {
        s->park_ms = max_wait;
        return SLB_K_PARK;
    }
    return 0;
}

/* ---- ListOffsets --------------------------------------------------------- */

int slb_k_list_offsets(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    krd_i32(r); /* replica_id */
    int8_t iso = ver >= 2 ? krd_i8(r) : 0;
    int32_t nt = krd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    if (ver >= 2) kwr_i32(w, 0); /* throttle_time_ms */
    kwr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn = krd_str(r, &tl);
        int32_t np = krd_arr(r, false, 12);
        if (r->bad) return SL_EPARSE;
        sl_topic_info *ti = slb_srv_describe(s, tn, tl);
        kwr_str(w, tn, tl);
        kwr_i32(w, np);
        for (int32_t j = 0; j < np; j++) {
            int32_t part = krd_i32(r);
            if (ver >= 4) krd_i32(r); /* current_leader_epoch */
            int64_t ts = krd_i64(r);
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
            kwr_i32(w, part);
            kwr_i16(w, e);
            kwr_i64(w, -1); /* timestamp */
            kwr_i64(w, off);
            if (ver >= 4) kwr_i32(w, -1); /* leader_epoch */
        }
        sl_topic_info_free(ti);
    }
    return 0;
}
