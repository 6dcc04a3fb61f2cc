/*
 * connectors/broker/kapi_fetch.c - Fetch and ListOffsets. Handler contract:
 * server_int.h.
 *
 * Fetch serves the log's batches as they are (zero-copy). The batch on disk
 * (batch.h) and Kafka's v2 batch (kapi_produce.c) differ only in their
 * headers; the records section is byte for byte Kafka's. So for each batch
 * (rawlog.c's cursor, headers only) the response gets a converted 61-byte
 * Kafka header and then the records: straight from the segment file by
 * sendfile (a file range in the connection's output, server.c, holding a
 * reference to the file so that retention may delete the segment
 * meanwhile), or, for a batch that the cursor's header read brought whole
 * (small batches: at most SLB_RAW_WIN bytes), copied from that read.
 *
 *   Kafka header field        from the stored header
 *   ------------------------  ----------------------------------------------
 *   base_offset (BE)          base_offset
 *   batch_length              49 + records bytes
 *   partition_leader_epoch    0
 *   magic                     2
 *   crc                       derived, see below
 *   attributes                attributes & 0x30 (transactional, control;
 *                             sluice's 0x40 "producer fields follow" is
 *                             Kafka's delete-horizon bit and is dropped)
 *   last_offset_delta         last_offset_delta (kept by compaction)
 *   first/max_timestamp       first_ts / max_ts
 *   producer id/epoch/seq     the producer fields, or -1 / -1 / -1
 *   record_count              record_count
 *
 * The CRC. Stored: crc_d = C(X || R), X = stored header bytes [0,12) and
 * [16, hl) (hl = 44 or 60), R = the records. Kafka's: crc_k = C(K || R), K =
 * the Kafka header bytes [21, 61). For CRC-32C (as for any CRC with the
 * usual pre- and post-inversion) C(A || B) = S_n(C(A)) ^ C(B) where n =
 * |B| and S_n multiplies by x^(8n) modulo the polynomial (zlib's
 * crc32_combine); the length of A does not enter. Hence
 *
 *   crc_k = crc_d ^ S_|R|( C(X) ^ C(K) )
 *
 * computed from the headers alone in O(log |R|) (a table of x^(2^k) mod P):
 * the records are never read. This is exact, not a shortcut: a batch whose
 * stored CRC does not match its bytes gets a Kafka CRC that does not match
 * either, and the client's check.crcs reports it; nothing bad is passed on
 * as good.
 *
 * Limits as Kafka's (KIP-74): whole batches only; a partition stops before
 * the batch that would take it past its partition_max_bytes or the response
 * past max_bytes, except that the first batch of the response is always
 * sent whole, however large, so that a consumer never stalls.
 *
 * read_committed: batches stop at the last stable offset, and the response
 * lists the aborted transactions (producer id, first offset) that overlap
 * the offsets sent (rawlog.c's index of them), with the control batches
 * sent as they are: the client drops aborted batches and control records
 * itself, as with Kafka. read_uncommitted: aborted_transactions is null.
 *
 * The partitions are read through the server's broker writer of each
 * partition (opened and locked on first use; the server owns its
 * directory): its in-memory segment list and indexes say where an offset
 * lies and what the high watermark, last stable offset and log start are,
 * so a Fetch lists, opens or describes nothing but the segment files it
 * sends from (one open per partition and segment per request). Deleting a
 * topic drops its writers, and with them all that is cached. A partition
 * whose writer is another process's (SL_EBUSY) is served by decoding it
 * through an sl_log_reader and re-encoding one Kafka batch (the old path).
 *
 * A Fetch that finds less than its min_bytes parks (SLB_K_PARK) for its
 * max_wait_ms; an append through this server wakes it (an append by
 * another process is seen at the deadline).
 *
 * ListOffsets: earliest (-2), latest (-1: the high watermark, or the last
 * stable offset under read_committed) and by timestamp (v1+: the earliest
 * offset whose timestamp is >= the one given, and that timestamp, through
 * the time index; -1 / -1 when there is none). v0 answers the same offset
 * as a one-element array (an empty one when there is none), rather than
 * Kafka's segment-granular list.
 */
#include "connectors/broker/server_int.h"
#include <pthread.h>

#include "connectors/broker/broker_int.h"
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
    kput64(h, (uint64_t)base);
    kput32(h + 8, (uint32_t)(s->kb.len - 12));
    kput32(h + 12, 0); /* partition_leader_epoch */
    h[16] = 2;
    kput16(h + 21, 0);
    kput32(h + 23, (uint32_t)(last - base));
    kput64(h + 27, (uint64_t)first_ts);
    kput64(h + 35, (uint64_t)max_ts);
    kput64(h + 43, (uint64_t)-1);
    kput16(h + 51, (uint16_t)-1);
    kput32(h + 53, (uint32_t)-1);
    kput32(h + 57, (uint32_t)count);
    kput32(h + 17, sli_crc32c(0, h + 21, s->kb.len - 21));
    return 0;
fail:
    sl_log_reader_close(lr);
    s->kb.len = 0;
    return rc;
}

/* ---- CRC-32C arithmetic (see the top comment) ------------------------------ */

#define CRC32C_POLY 0x82f63b78u /* reflected */

static uint32_t x2n_table[32]; /* x^(2^k) mod P, k = 0..31 */
static pthread_once_t x2n_once = PTHREAD_ONCE_INIT;

/* a * b mod P, both in the reflected representation (x^0 is bit 31). */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return p;
}

static void x2n_init(void)
{
    uint32_t p = 1u << 30; /* x^1 */
    x2n_table[0] = p;
    for (int n = 1; n < 32; n++) x2n_table[n] = p = multmodp(p, p);
}

/* S_n(crc): crc shifted over n zero bytes' worth of x (x^(8n) mod P). */
static uint32_t crc_shift(uint32_t crc, uint64_t n)
{
    pthread_once(&x2n_once, x2n_init);
    uint32_t p = 1u << 31; /* x^0 */
    unsigned k = 3;        /* n bytes = 8n bits = 2^3 n */
    while (n) {
        if (n & 1) p = multmodp(x2n_table[k & 31], p);
        n >>= 1;
        k++;
    }
    return multmodp(p, crc);
}

/* The Kafka header (61 bytes) of stored batch b, whose records are rl
 * bytes; the CRC derived from the stored one. */
static void kafka_header(uint8_t k[KHDR], const slb_raw_batch *b, uint32_t rl)
{
    const slb_batch_hdr *h = &b->h;
    bool prod = (h->attributes & SLB_ATTR_PRODUCER) != 0;
    kput64(k, (uint64_t)h->base_offset);
    kput32(k + 8, (uint32_t)(KHDR - 12) + rl);
    kput32(k + 12, 0); /* partition_leader_epoch */
    k[16] = 2;
    kput16(k + 21, (uint16_t)(h->attributes & (SLB_ATTR_TRANSACTIONAL | SLB_ATTR_CONTROL)));
    kput32(k + 23, h->last_offset_delta);
    kput64(k + 27, (uint64_t)h->first_ts);
    kput64(k + 35, (uint64_t)h->max_ts);
    kput64(k + 43, (uint64_t)(prod ? h->producer_id : -1));
    kput16(k + 51, (uint16_t)(prod ? h->producer_epoch : -1));
    kput32(k + 53, (uint32_t)(prod ? h->base_sequence : -1));
    kput32(k + 57, h->record_count);
    size_t hl = slb_hdr_len(h);
    uint32_t cx = sli_crc32c(sli_crc32c(0, b->raw, 12), b->raw + 16, hl - 16);
    uint32_t ck = sli_crc32c(0, k + 21, KHDR - 21);
    kput32(k + 17, h->crc ^ crc_shift(cx ^ ck, rl));
}

/* ---- Fetch, zero-copy --------------------------------------------------------- */

/* The partition's figures; first_offset is the log start: the checkpoint's
 * (moved by retention), or the first segment's base if that is lower.
 * Compaction may delete an emptied first segment without moving the log
 * start, and an offset in between is read from the next batch (as Kafka). */
static void part_info(slb_plog *l, sl_partition_info *pi)
{
    slb_plog_info(l, pi);
    pthread_mutex_lock(&l->mu);
    if (l->ckpt.log_start < pi->first_offset) pi->first_offset = l->ckpt.log_start;
    pthread_mutex_unlock(&l->mu);
}

/* The state of one Fetch across its partitions. */
typedef struct fetch_ctx {
    int32_t max_bytes; /* left for the response */
    int64_t sent;      /* record bytes in the response so far */
    int isolation;
} fetch_ctx;

/* Write the aborted_transactions and records fields of partition l from
 * offset off (below bound) to w. The records are streamed first (the header
 * converted, the records copied or as a file range) after a placeholder;
 * then the aborted list of the offsets sent is inserted before them and the
 * ranges' positions moved by as much. Returns 0, or an SL_E... code with
 * nothing written (the caller answers the partition's error). */
static int fetch_zero_copy(sl_server *s, slb_conn *c, kwr *w, slb_plog *l, int64_t off,
                           int64_t bound, int32_t pmax, fetch_ctx *fx)
{
    kbuf *o = w->b;
    size_t at = o->len, nrq0 = c->nrq;
    int64_t extra0 = c->req_extra, psent = 0, end = off;
    if (kbuf_reserve(o, 4) < 0) return SL_ENOMEM;
    o->len += 4; /* records length, patched below */
    slb_raw *rr = (slb_raw *)s->rawcur;
    int rc = slb_raw_seek(rr, l, off, bound);
    slb_raw_batch b;
    while (rc == 0 && (rc = slb_raw_next(rr, &b)) == 1) {
        uint32_t hl = (uint32_t)slb_hdr_len(&b.h), rl = b.h.length - hl;
        int64_t kl = KHDR + (int64_t)rl;
        if (fx->sent > 0 && (psent + kl > pmax || kl > fx->max_bytes)) {
            rc = 0;
            break;
        }
        bool copy = b.bytes != NULL;
        if (kbuf_reserve(o, KHDR + (copy ? rl : 0)) < 0) {
            rc = SL_ENOMEM;
            break;
        }
        kafka_header(o->p + o->len, &b, rl);
        o->len += KHDR;
        if (copy) {
            memcpy(o->p + o->len, b.bytes + hl, rl);
            o->len += rl;
        } else if (rl && (rc = slb_conn_add_range(c, b.f, b.pos + hl, rl)) < 0) {
            break;
        }
        psent += kl;
        fx->sent += kl;
        fx->max_bytes -= (int32_t)(kl < fx->max_bytes ? kl : fx->max_bytes);
        end = slb_next_offset(&b.h);
        rc = 0;
    }
    if (rc < 0) {
        if (rc != SL_ENOMEM) slb_srv_log(s, "sluice broker serve: fetch: %s\n", rr->err);
        goto fail;
    }
    slb_raw_close(rr);
    /* the aborted transactions of [off, end) */
    uint8_t *ab = NULL;
    size_t abn = 4;
    const slb_abtxn *v = NULL;
    size_t n = 0;
    if (fx->isolation == SL_READ_COMMITTED && end > off) {
        char err[SLB_ERRLEN];
        if ((rc = slb_plog_aborted(l, off, end, &v, &n, err)) < 0) {
            slb_srv_log(s, "sluice broker serve: fetch: %s\n", err);
            goto fail;
        }
        abn += n * 16;
    }
    if (kbuf_reserve(o, abn) < 0) {
        rc = SL_ENOMEM;
        goto fail;
    }
    memmove(o->p + at + abn, o->p + at, o->len - at);
    o->len += abn;
    ab = o->p + at;
    kput32(ab, fx->isolation == SL_READ_COMMITTED ? (uint32_t)n : (uint32_t)-1);
    for (size_t i = 0; i < n; i++) {
        kput64(ab + 4 + 16 * i, (uint64_t)v[i].pid);
        kput64(ab + 12 + 16 * i, (uint64_t)v[i].first);
    }
    for (size_t i = nrq0; i < c->nrq; i++) c->rq[i].at += abn;
    int64_t rlen = (int64_t)(o->len - at - abn - 4) + (c->req_extra - extra0);
    kput32(o->p + at + abn, (uint32_t)rlen);
    return 0;
fail:
    slb_raw_close(rr);
    while (c->nrq > nrq0) {
        slb_orange *q = &c->rq[--c->nrq];
        c->rqbytes -= q->len;
        slb_rfile_unref(q->f);
    }
    c->req_extra = extra0;
    o->len = at;
    return rc;
}

/* A topic entry of a Fetch or ListOffsets request: its name (*tn, *tl)
 * and partition count (returned; -1: the request does not parse, each
 * partition taking at least min_part bytes), both echoed to w; known when
 * the topic exists (name, its conf and a handle for slb_broker_plog). */
static int32_t topic_head(sl_server *s, krd *r, kwr *w, size_t min_part, const char **tn, int *tl,
                          char name[SL_TOPIC_NAME_MAX + 1], const sl_topic_conf **conf,
                          slb_plog **l, bool *known)
{
    *tn = krd_str(r, tl);
    int32_t np = krd_arr(r, false, min_part);
    if (r->bad) return -1;
    *known = slb_srv_topic_name(*tn, *tl, name) && slb_broker_plog(s->b, name, -1, l, conf) == 0;
    kwr_str(w, *tn, *tl);
    kwr_i32(w, np);
    return np;
}

/* Replace the partition fields just written (error, hw, lso, log start)
 * by the error of rc, when the records cannot be read after all. */
static void part_error(kwr *w, int16_t ver, int rc, int64_t hw, int64_t lso, int64_t start)
{
    w->b->len -= 8 + 8 + (ver >= 5 ? 8 : 0) + 2;
    kwr_i16(w, slb_srv_kafka_error(rc));
    kwr_i64(w, hw);
    kwr_i64(w, lso);
    if (ver >= 5) kwr_i64(w, start);
}

/* Returns 0 (answered), 1 (nothing to answer yet: park it, see slb_conn) or
 * SL_EPARSE. */
int slb_k_fetch(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    bool force = c->force;
    krd_i32(r); /* replica_id */
    int32_t max_wait = krd_i32(r), min_bytes = krd_i32(r);
    bool any_err = false;
    int32_t max_bytes = krd_i32(r);
    int8_t iso = krd_i8(r);
    if (ver >= 7) {
        krd_i32(r); /* session_id: sessions are not kept; 0 is answered */
        krd_i32(r); /* session_epoch */
    }
    int32_t nt = krd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    if (!s->rawcur && !(s->rawcur = malloc(sizeof(slb_raw)))) return SL_ENOMEM;
    fetch_ctx fx = {max_bytes > 0 ? max_bytes : 1, 0,
                    iso == 1 ? SL_READ_COMMITTED : SL_READ_UNCOMMITTED};
    kwr_i32(w, 0); /* throttle_time_ms */
    if (ver >= 7) {
        kwr_i16(w, KE_NONE);
        kwr_i32(w, 0); /* session_id */
    }
    kwr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn;
        char name[SL_TOPIC_NAME_MAX + 1];
        const sl_topic_conf *conf = NULL;
        slb_plog *l;
        bool known;
        int32_t np = topic_head(s, r, w, 16, &tn, &tl, name, &conf, &l, &known);
        if (np < 0) return SL_EPARSE;
        for (int32_t j = 0; j < np; j++) {
            int32_t part = krd_i32(r);
            if (ver >= 9) krd_i32(r); /* current_leader_epoch */
            int64_t off = krd_i64(r);
            if (ver >= 5) krd_i64(r); /* log_start_offset (a follower's) */
            int32_t pmax = krd_i32(r);
            if (r->bad) return SL_EPARSE;
            int16_t e = KE_NONE;
            int64_t hw = -1, lso = -1, start = -1;
            int prc = SL_ENOENT;
            l = NULL;
            if (known && part >= 0 && part < conf->partitions)
                prc = slb_broker_plog(s->b, name, part, &l, NULL);
            if (prc == 0) {
                sl_partition_info pi;
                part_info(l, &pi);
                hw = pi.next_offset;
                lso = pi.last_stable_offset;
                start = pi.first_offset;
            } else if (prc == SL_EBUSY) { /* another process writes it: the old path */
                sl_topic_info *ti = slb_srv_describe(s, tn, tl);
                if (ti && part < ti->partition_count) {
                    hw = ti->partitions[part].next_offset;
                    lso = ti->partitions[part].last_stable_offset;
                    start = ti->partitions[part].first_offset;
                } else {
                    prc = SL_ENOENT;
                }
                sl_topic_info_free(ti);
            }
            if (prc < 0 && prc != SL_EBUSY)
                e = prc == SL_ENOENT || prc == SL_ERANGE ? KE_UNKNOWN_TOPIC
                                                         : slb_srv_kafka_error(prc);
            else if (off < start || off > hw)
                e = KE_OFFSET_OUT_OF_RANGE;
            kwr_i32(w, part);
            kwr_i16(w, e);
            kwr_i64(w, hw);
            kwr_i64(w, lso);
            if (ver >= 5) kwr_i64(w, start);
            int64_t bound = fx.isolation == SL_READ_COMMITTED ? lso : hw;
            if (e != KE_NONE) any_err = true;
            if (e == KE_NONE && prc == 0 && off < bound) {
                int rc = fetch_zero_copy(s, c, w, l, off, bound, pmax > 0 ? pmax : 1, &fx);
                if (rc == 0) continue;
                if (rc == SL_ENOMEM) return rc;
                /* unreadable: the error in place of the records */
                part_error(w, ver, rc, hw, lso, start);
                any_err = true;
                e = KE_UNKNOWN;
            } else if (e == KE_NONE && prc == SL_EBUSY && off < bound && fx.max_bytes > 0) {
                int32_t lim = pmax < fx.max_bytes ? pmax : fx.max_bytes;
                int rc = fetch_read(s, name, part, off, fx.isolation, lim > 0 ? lim : 1);
                if (rc < 0) {
                    part_error(w, ver, rc, hw, lso, start);
                    e = KE_UNKNOWN;
                    any_err = true;
                }
                fx.max_bytes -= (int32_t)s->kb.len;
                fx.sent += (int64_t)s->kb.len;
            }
            kwr_i32(w, -1); /* aborted_transactions: null */
            bool have = e == KE_NONE && s->kb.len > 0;
            kwr_bytes(w, s->kb.p, have ? s->kb.len : 0);
            s->kb.len = 0;
        }
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
    if (!force && max_wait > 0 && !any_err && fx.sent < (min_bytes > 0 ? min_bytes : 1)) {
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
        const char *tn;
        char name[SL_TOPIC_NAME_MAX + 1];
        const sl_topic_conf *conf = NULL;
        slb_plog *l;
        bool known;
        int32_t np = topic_head(s, r, w, ver == 0 ? 16 : 12, &tn, &tl, name, &conf, &l, &known);
        if (np < 0) return SL_EPARSE;
        for (int32_t j = 0; j < np; j++) {
            int32_t part = krd_i32(r);
            if (ver >= 4) krd_i32(r); /* current_leader_epoch */
            int64_t ts = krd_i64(r);
            if (ver == 0) krd_i32(r); /* max_num_offsets */
            if (r->bad) return SL_EPARSE;
            int16_t e = KE_NONE;
            int64_t off = -1, fts = -1;
            int prc = SL_ENOENT;
            l = NULL;
            if (known && part >= 0 && part < conf->partitions)
                prc = slb_broker_plog(s->b, name, part, &l, NULL);
            if (prc < 0) {
                e = prc == SL_ENOENT || prc == SL_ERANGE ? KE_UNKNOWN_TOPIC
                                                         : slb_srv_kafka_error(prc);
            } else if (ts == -2 || ts == -1) {
                sl_partition_info pi;
                part_info(l, &pi);
                off = ts == -2   ? pi.first_offset
                      : iso == 1 ? pi.last_stable_offset
                                 : pi.next_offset;
            } else if (ts < 0) {
                e = KE_INVALID_REQUEST; /* -3 (max timestamp) and others: not served */
            } else {
                char err[SLB_ERRLEN];
                int rc = slb_plog_offset_for_time(l, ts, &off, &fts, err);
                if (rc < 0) {
                    slb_srv_log(s, "sluice broker serve: list offsets: %s\n", err);
                    e = slb_srv_kafka_error(rc);
                    off = fts = -1;
                }
            }
            kwr_i32(w, part);
            kwr_i16(w, e);
            if (ver == 0) {
                kwr_i32(w, off >= 0 ? 1 : 0);
                if (off >= 0) kwr_i64(w, off);
                continue;
            }
            kwr_i64(w, fts);
            kwr_i64(w, off);
            if (ver >= 4) kwr_i32(w, -1); /* leader_epoch */
        }
    }
    return 0;
}
