/*
 * connectors/broker/kapi_txn.c - idempotent and transactional producers over
 * the wire: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
 * TxnOffsetCommit, EndTxn, and the periodic abort of timed-out
 * transactions. Handler contract: server_int.h.
 *
 * This server is the transaction coordinator of every transactional id
 * (FindCoordinator, kapi_meta.c). The coordinator's state and its rules
 * are txn.c's (broker_int.h, slb_txn_*), the same state file and the same
 * rules as the in-process sl_txn_producer: an id's producer id and epoch
 * (InitProducerId bumps the epoch, fencing the older one and aborting the
 * transaction it left open), the open transaction's partitions on any
 * topics and its group offsets, all written durably before they are
 * answered. EndTxn commits (prepared durably first, so a crash completes
 * it) or aborts: a COMMIT or ABORT marker to every partition of the
 * transaction, then, on commit, the group offsets through sl_group_commit;
 * an abort drops them. A transaction open longer than its
 * transaction_timeout_ms is aborted by slb_k_txn_tick (once a second, from
 * the event loop) with its epoch bumped, as Kafka does; one left open by a
 * crash is aborted the same way, or by its id's next InitProducerId.
 *
 * Versions served (all non-flexible; the later ones are flexible):
 *
 *   api                  versions  body (request -> response)
 *   -------------------  --------  -----------------------------------------
 *   InitProducerId (22)  0-1       transactional_id: nullable string,
 *                                  transaction_timeout_ms: int32
 *                                  -> throttle_time_ms: int32, error: int16,
 *                                  producer_id: int64, producer_epoch: int16
 *   AddPartitionsToTxn   0-2       transactional_id, producer_id: int64,
 *     (24)                         producer_epoch: int16, [topic: string,
 *                                  [partition: int32]]
 *                                  -> throttle, [topic, [partition, error]]
 *   AddOffsetsToTxn (25) 0-2       transactional_id, producer_id,
 *                                  producer_epoch, group_id: string
 *                                  -> throttle, error
 *   EndTxn (26)          0-2       transactional_id, producer_id,
 *                                  producer_epoch, committed: int8
 *                                  -> throttle, error
 *   TxnOffsetCommit (28) 0-2       transactional_id, group_id, producer_id,
 *                                  producer_epoch, [topic, [partition,
 *                                  offset: int64, leader_epoch: int32 (v2),
 *                                  metadata: nullable string]]
 *                                  -> throttle, [topic, [partition, error]]
 *
 * Errors, as Kafka's: an id without that producer id is
 * INVALID_PRODUCER_ID_MAPPING; another epoch is PRODUCER_FENCED from the
 * versions that know it (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn v2),
 * INVALID_PRODUCER_EPOCH before; no open transaction (or a partition not in
 * it, for Produce) is INVALID_TXN_STATE; a partition the broker does not
 * have is UNKNOWN_TOPIC_OR_PARTITION and the others of that request are not
 * attempted (OPERATION_NOT_ATTEMPTED); a transaction that cannot be ended
 * because another writer holds one of its partitions is
 * CONCURRENT_TRANSACTIONS (retriable). Every error other than these is
 * logged with the coordinator's message.
 */
#include <inttypes.h>

#include "connectors/broker/broker_int.h"
#include "connectors/broker/server_int.h"
#include "engine/base/clock.h"

#define KE_OPERATION_NOT_ATTEMPTED 55
#define TXN_TIMEOUT_MAX_MS         900000 /* Kafka's transaction.max.timeout.ms default */
#define TICK_MS                    1000

/* A transactional id or group id from the wire into out (the same rules as
 * a topic name: 1..SL_TOPIC_NAME_MAX bytes, no NUL). */
static bool wire_id(const char *p, int len, char out[SL_TOPIC_NAME_MAX + 1])
{
    return slb_srv_topic_name(p, len, out);
}

/* The Kafka error for a coordinator result; fenced_ver: the first version
 * of the request that knows PRODUCER_FENCED. */
static int16_t txn_error(sl_server *s, int rc, int16_t ver, int16_t fenced_ver, const char *what)
{
    slb_txn_view_reset(s->txn.view); /* every caller but Produce's may have changed the state */
    switch (rc) {
    case 0: return KE_NONE;
    case SL_ENOENT: return KE_INVALID_PRODUCER_ID_MAPPING;
    case SL_EFENCED: return ver >= fenced_ver ? KE_PRODUCER_FENCED : KE_INVALID_PRODUCER_EPOCH;
    case SL_ESTATE: return KE_INVALID_TXN_STATE;
    case SL_EBUSY: return KE_CONCURRENT_TRANSACTIONS;
    default:
        slb_srv_log(s, "sluice broker serve: %s: %s\n", what, sl_broker_errmsg(s->b));
        return KE_UNKNOWN;
    }
}

/* ---- InitProducerId ------------------------------------------------------ */

int slb_k_init_producer_id(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c, (void)ver;
    int tl;
    const char *tp = krd_str(r, &tl);
    int32_t timeout = krd_i32(r);
    if (r->bad) return SL_EPARSE;
    char tid[SL_TOPIC_NAME_MAX + 1];
    int64_t pid = -1;
    int16_t epoch = -1, e = KE_NONE;
    if (tl >= 0 && !wire_id(tp, tl, tid))
        e = KE_INVALID_REQUEST;
    else if (tl >= 0 && (timeout <= 0 || timeout > TXN_TIMEOUT_MAX_MS))
        e = KE_INVALID_TRANSACTION_TIMEOUT;
    else {
        int rc = slb_txn_init(s->b, tl >= 0 ? tid : NULL, timeout, &pid, &epoch);
        e = txn_error(s, rc, 0, 1, "InitProducerId");
        if (rc < 0) pid = -1, epoch = -1;
        if (rc == 0 && tl >= 0) slb_srv_wake(s); /* an abort may have moved a last stable offset */
    }
    kwr_i32(w, 0); /* throttle_time_ms */
    kwr_i16(w, e);
    kwr_i64(w, pid);
    kwr_i16(w, epoch);
    return 0;
}

/* ---- AddPartitionsToTxn -------------------------------------------------- */

int slb_k_add_partitions_to_txn(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int tl;
    const char *tp = krd_str(r, &tl);
    int64_t pid = krd_i64(r);
    int16_t epoch = krd_i16(r);
    int32_t nt = krd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    char tid[SL_TOPIC_NAME_MAX + 1];
    bool id_ok = wire_id(tp, tl, tid);
    /* Pass 1: is every partition the broker's? */
    krd r0 = *r;
    bool all_known = true;
    int32_t maxp = 0;
    for (int32_t i = 0; i < nt; i++) {
        int nl;
        const char *np = krd_str(r, &nl);
        int32_t n = krd_arr(r, false, 4);
        if (r->bad) return SL_EPARSE;
        sl_topic_info *ti = slb_srv_describe(s, np, nl);
        for (int32_t j = 0; j < n; j++) {
            int32_t p = krd_i32(r);
            if (!ti || p < 0 || p >= ti->partition_count) all_known = false;
        }
        sl_topic_info_free(ti);
        if (n > maxp) maxp = n;
    }
    if (r->bad) return SL_EPARSE;
    int32_t *parts = malloc(((size_t)maxp + 1) * sizeof *parts);
    if (!parts) return SL_ENOMEM;
    /* Pass 2: add them (one state write per topic) and answer. */
    *r = r0;
    kwr_i32(w, 0); /* throttle_time_ms */
    kwr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int nl;
        const char *np = krd_str(r, &nl);
        int32_t n = krd_arr(r, false, 4);
        char topic[SL_TOPIC_NAME_MAX + 1];
        sl_topic_info *ti = slb_srv_describe(s, np, nl);
        for (int32_t j = 0; j < n; j++) parts[j] = krd_i32(r);
        int16_t e = KE_OPERATION_NOT_ATTEMPTED;
        if (!id_ok)
            e = KE_INVALID_REQUEST;
        else if (all_known && slb_srv_topic_name(np, nl, topic))
            e = txn_error(s, slb_txn_add_partitions(s->b, tid, pid, epoch, topic, parts, (size_t)n),
                          ver, 2, "AddPartitionsToTxn");
        kwr_str(w, np, nl);
        kwr_i32(w, n);
        for (int32_t j = 0; j < n; j++) {
            bool known = ti && parts[j] >= 0 && parts[j] < ti->partition_count;
            kwr_i32(w, parts[j]);
            kwr_i16(w, known ? e : KE_UNKNOWN_TOPIC);
        }
        sl_topic_info_free(ti);
    }
    free(parts);
    return 0;
}

/* ---- AddOffsetsToTxn ------------------------------------------------------ */

int slb_k_add_offsets_to_txn(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int tl, gl;
    const char *tp = krd_str(r, &tl);
    int64_t pid = krd_i64(r);
    int16_t epoch = krd_i16(r);
    const char *gp = krd_str(r, &gl);
    if (r->bad) return SL_EPARSE;
    char tid[SL_TOPIC_NAME_MAX + 1], group[SL_TOPIC_NAME_MAX + 1];
    int16_t e;
    if (!wire_id(tp, tl, tid))
        e = KE_INVALID_REQUEST;
    else if (!wire_id(gp, gl, group))
        e = KE_INVALID_GROUP_ID;
    else
        e = txn_error(s, slb_txn_add_partitions(s->b, tid, pid, epoch, NULL, NULL, 0), ver, 2,
                      "AddOffsetsToTxn");
    kwr_i32(w, 0);
    kwr_i16(w, e);
    return 0;
}

/* ---- TxnOffsetCommit ------------------------------------------------------ */

typedef struct off_name {
    char topic[SL_TOPIC_NAME_MAX + 1];
} off_name;

int slb_k_txn_offset_commit(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int tl, gl;
    const char *tp = krd_str(r, &tl);
    const char *gp = krd_str(r, &gl);
    int64_t pid = krd_i64(r);
    int16_t epoch = krd_i16(r);
    int32_t nt = krd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    /* Pass 1: count the partitions, parse everything. */
    krd r0 = *r;
    size_t total = 0;
    for (int32_t i = 0; i < nt; i++) {
        int nl, ml;
        krd_str(r, &nl);
        int32_t n = krd_arr(r, false, ver >= 2 ? 18 : 14);
        for (int32_t j = 0; j < n; j++) {
            krd_i32(r);
            krd_i64(r);
            if (ver >= 2) krd_i32(r);
            krd_str(r, &ml);
        }
        total += (size_t)n;
    }
    if (r->bad) return SL_EPARSE;
    slb_txn_offset *offs = malloc((total + 1) * sizeof *offs);
    off_name *names = malloc(((size_t)nt + 1) * sizeof *names);
    int16_t *errs = malloc((total + 1) * sizeof *errs);
    if (!offs || !names || !errs) {
        free(offs), free(names), free(errs);
        return SL_ENOMEM;
    }
    /* Pass 2: the valid ones go to the coordinator in one call. */
    *r = r0;
    size_t k = 0, nvalid = 0;
    for (int32_t i = 0; i < nt; i++) {
        int nl, ml;
        const char *np = krd_str(r, &nl);
        int32_t n = krd_arr(r, false, 14);
        sl_topic_info *ti = slb_srv_describe(s, np, nl);
        bool named = slb_srv_topic_name(np, nl, names[i].topic);
        for (int32_t j = 0; j < n; j++, k++) {
            int32_t p = krd_i32(r);
            int64_t off = krd_i64(r);
            if (ver >= 2) krd_i32(r);
            krd_str(r, &ml);
            errs[k] = KE_NONE;
            if (!named || !ti || p < 0 || p >= ti->partition_count)
                errs[k] = KE_UNKNOWN_TOPIC;
            else if (off < 0)
                errs[k] = KE_OFFSET_OUT_OF_RANGE;
            else
                offs[nvalid++] = (slb_txn_offset){names[i].topic, p, off};
        }
        sl_topic_info_free(ti);
    }
    char tid[SL_TOPIC_NAME_MAX + 1], group[SL_TOPIC_NAME_MAX + 1];
    int16_t e;
    if (!wire_id(tp, tl, tid))
        e = KE_INVALID_REQUEST;
    else if (!wire_id(gp, gl, group) || slb_check_name("group", group, false, s->b->errmsg) < 0)
        e = KE_INVALID_GROUP_ID; /* checked now: sl_group_commit must not refuse it at EndTxn */
    else
        e = nvalid ? txn_error(s, slb_txn_add_offsets(s->b, tid, pid, epoch, group, offs, nvalid),
                               ver, 3, "TxnOffsetCommit")
                   : KE_NONE;
    /* Pass 3: the answer. */
    *r = r0;
    k = 0;
    kwr_i32(w, 0);
    kwr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int nl, ml;
        const char *np = krd_str(r, &nl);
        int32_t n = krd_arr(r, false, 14);
        kwr_str(w, np, nl);
        kwr_i32(w, n);
        for (int32_t j = 0; j < n; j++, k++) {
            int32_t p = krd_i32(r);
            krd_i64(r);
            if (ver >= 2) krd_i32(r);
            krd_str(r, &ml);
            kwr_i32(w, p);
            kwr_i16(w, errs[k] != KE_NONE ? errs[k] : e);
        }
    }
    free(offs), free(names), free(errs);
    return 0;
}

/* ---- EndTxn ---------------------------------------------------------------- */

int slb_k_end_txn(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int tl;
    const char *tp = krd_str(r, &tl);
    int64_t pid = krd_i64(r);
    int16_t epoch = krd_i16(r);
    int8_t commit = krd_i8(r);
    if (r->bad) return SL_EPARSE;
    char tid[SL_TOPIC_NAME_MAX + 1];
    int16_t e = KE_INVALID_REQUEST;
    if (wire_id(tp, tl, tid)) {
        int rc = slb_txn_end(s->b, tid, pid, epoch, commit != 0);
        e = txn_error(s, rc, ver, 2, "EndTxn");
        if (rc == 0) slb_srv_wake(s); /* the last stable offset moved */
    }
    kwr_i32(w, 0);
    kwr_i16(w, e);
    return 0;
}

/* ---- timeouts, and the server's part of Produce ------------------------------ */

int slb_k_txn_tick(sl_server *s, int timeout)
{
    int64_t now = sli_clock_mono_ms();
    if (now >= s->txn.next_tick) {
        s->txn.next_tick = now + TICK_MS;
        int rc = sl_txn_abort_expired(s->b, 0);
        if (rc != 0) slb_txn_view_reset(s->txn.view);
        if (rc > 0) {
            slb_srv_log(s, "sluice broker serve: %d timed-out transaction(s) aborted\n", rc);
            slb_srv_wake(s);
            return 0; /* parked fetches look again at once */
        }
        if (rc < 0)
            slb_srv_log(s, "sluice broker serve: transaction timeouts: %s\n",
                        sl_broker_errmsg(s->b));
    }
    int64_t left = s->txn.next_tick - now;
    return timeout >= 0 && timeout < left ? timeout : (int)left;
}

int16_t slb_k_txn_check_produce(sl_server *s, const char *tp, int tl, int64_t pid, int16_t epoch,
                                const char *topic, int32_t partition)
{
    char tid[SL_TOPIC_NAME_MAX + 1];
    if (!wire_id(tp, tl, tid)) return KE_INVALID_TXN_STATE; /* no transactional id */
    int rc = slb_txn_check_produce(s->b, &s->txn.view, tid, pid, epoch, topic, partition);
    switch (rc) {
    case 0: return KE_NONE;
    case SL_EFENCED: return KE_INVALID_PRODUCER_EPOCH; /* Produce never says PRODUCER_FENCED */
    default: return txn_error(s, rc, 0, 0, "Produce");
    }
}

void slb_k_txn_close(sl_server *s)
{
    slb_txn_view_free(s->txn.view);
    s->txn.view = NULL;
}
