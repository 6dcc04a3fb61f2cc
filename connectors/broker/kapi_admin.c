/*
 * connectors/broker/kapi_admin.c - CreateTopics (v0-4) and DeleteTopics
 * (v0-3), the non-flexible versions. Handler contract: server_int.h.
 *
 * CreateTopics maps a Kafka topic request onto sl_topic_create:
 *
 *   request field / config    sluice (sl_topic_conf)
 *   ------------------------  ----------------------------------------------
 *   num_partitions            partitions (-1: the default, 1)
 *   replication_factor        must be 1 or -1 (one broker), else
 *                             INVALID_REPLICATION_FACTOR
 *   assignments               each partition on broker 0 only (then
 *                             num_partitions must be -1), else
 *                             INVALID_REPLICA_ASSIGNMENT
 *   retention.ms              retention_ms (-1 unlimited)
 *   retention.bytes           retention_bytes (-1 unlimited)
 *   segment.bytes             segment_bytes
 *   segment.ms                segment_ms
 *   cleanup.policy            "delete" or "compact" (compact)
 *   delete.retention.ms       tombstone_retention_ms
 *   max.message.bytes         max_record_bytes
 *   flush.messages            1: fsync always; Kafka's default (2^63-1):
 *                             never; other counts: INVALID_CONFIG
 *   flush.ms                  N < 2^63-1: fsync every N ms (interval);
 *                             2^63-1: never (with flush.messages=1: always)
 *
 * A config with a null value keeps the default; any other name, or a value
 * that is not a whole number in range, is INVALID_CONFIG with a message
 * naming it (v1+ carry error_message). validate_only (v1+) checks all of it
 * and that the topic does not exist, and creates nothing. An existing topic
 * is TOPIC_ALREADY_EXISTS; a bad name (internal "__" names included)
 * INVALID_TOPIC_EXCEPTION. timeout_ms is ignored: creation is synchronous.
 *
 * DeleteTopics deletes through sl_topic_delete on the server's broker,
 * which first drops the broker's writers of the topic, and with them all a
 * Fetch cached of it (kapi_fetch.c); file ranges of earlier fetches still
 * being sent keep their own references to the files. Unknown topic:
 * UNKNOWN_TOPIC_OR_PARTITION; a partition written by another process:
 * UNKNOWN_SERVER_ERROR, and a line on the log.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "connectors/broker/broker_int.h"
#include "connectors/broker/server_int.h"

#define KE_INVALID_REPLICA_ASSIGNMENT 39
#define KE_INVALID_CONFIG             40

/* A whole decimal number in p (len bytes) into *v; false if it is not. */
static bool parse_i64(const char *p, int len, int64_t *v)
{
    char buf[32];
    if (!p || len <= 0 || len >= (int)sizeof buf) return false;
    memcpy(buf, p, (size_t)len);
    buf[len] = 0;
    char *end;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (errno || *end) return false;
    *v = x;
    return true;
}

static bool is(const char *p, int len, const char *s)
{
    return len == (int)strlen(s) && !memcmp(p, s, (size_t)len);
}

/* Apply config (name, value) to c; on error *msg says why. */
static int16_t apply_config(sl_topic_conf *c, const char *n, int nl, const char *v, int vl,
                            bool *flush_always, char *msg, size_t cap)
{
    if (!v) return KE_NONE; /* null: the default */
    int64_t x = 0;
    bool num = parse_i64(v, vl, &x);
    if (is(n, nl, "cleanup.policy")) {
        if (is(v, vl, "delete"))
            c->compact = 0;
        else if (is(v, vl, "compact"))
            c->compact = 1;
        else
            goto bad;
        return KE_NONE;
    }
    if (!num) goto bad;
    if (is(n, nl, "retention.ms") && x >= -1) {
        c->retention_ms = x;
    } else if (is(n, nl, "retention.bytes") && x >= -1) {
        c->retention_bytes = x;
    } else if (is(n, nl, "segment.bytes") && x >= 1024 && x <= (1LL << 31)) {
        c->segment_bytes = x;
    } else if (is(n, nl, "segment.ms") && x >= 1) {
        c->segment_ms = x;
    } else if (is(n, nl, "delete.retention.ms") && x >= 0) {
        c->tombstone_retention_ms = x;
    } else if (is(n, nl, "max.message.bytes") && x >= 1 && x <= SL_MAX_RECORD_BYTES_LIMIT) {
        c->max_record_bytes = (int32_t)x;
    } else if (is(n, nl, "flush.messages") && (x == 1 || x == INT64_MAX)) {
        *flush_always = x == 1;
        if (x == 1) c->fsync = SL_FSYNC_ALWAYS;
    } else if (is(n, nl, "flush.ms") && x >= 1) {
        if (x != INT64_MAX && c->fsync != SL_FSYNC_ALWAYS) {
            c->fsync = SL_FSYNC_INTERVAL;
            c->fsync_interval_ms = x;
        }
    } else {
        goto bad;
    }
    return KE_NONE;
bad:
    snprintf(msg, cap, "config %.*s=%.*s is not supported%s", nl, n, vl > 64 ? 64 : vl, v,
             num || is(n, nl, "cleanup.policy") ? " (unknown name or value out of range)"
                                                : " (not a whole number)");
    return KE_INVALID_CONFIG;
}

int slb_k_create_topics(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int32_t nt = krd_arr(r, false, 14);
    if (r->bad) return SL_EPARSE;
    /* The results go after the topics are read; validate_only and
     * timeout_ms come after them, so the request is read twice. */
    krd again = *r;
    for (int32_t i = 0; i < nt && !r->bad; i++) {
        int l;
        krd_str(r, &l);
        krd_i32(r);
        krd_i16(r);
        int32_t na = krd_arr(r, false, 8);
        for (int32_t j = 0; j < na && !r->bad; j++) {
            krd_i32(r);
            int32_t nb = krd_arr(r, false, 4);
            for (int32_t k = 0; k < nb; k++) krd_i32(r);
        }
        int32_t nc = krd_arr(r, false, 4);
        for (int32_t j = 0; j < nc && !r->bad; j++) {
            krd_str(r, &l);
            krd_str(r, &l);
        }
    }
    krd_i32(r); /* timeout_ms */
    bool validate_only = ver >= 1 && krd_i8(r) != 0;
    if (r->bad) return SL_EPARSE;
    if (ver >= 2) kwr_i32(w, 0); /* throttle_time_ms */
    kwr_i32(w, nt);
    r = &again;
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn = krd_str(r, &tl);
        int32_t np = krd_i32(r);
        int16_t rf = krd_i16(r);
        char msg[SLB_ERRLEN] = "";
        int16_t e = KE_NONE;
        sl_topic_conf conf;
        sl_topic_conf_init(&conf);
        int32_t na = krd_arr(r, false, 8);
        for (int32_t j = 0; j < na; j++) {
            krd_i32(r); /* partition_index */
            int32_t nb = krd_arr(r, false, 4);
            for (int32_t k = 0; k < nb; k++)
                if (krd_i32(r) != SLB_NODE_ID || nb != 1) e = KE_INVALID_REPLICA_ASSIGNMENT;
            if (nb != 1) e = KE_INVALID_REPLICA_ASSIGNMENT;
        }
        if (e == KE_INVALID_REPLICA_ASSIGNMENT)
            snprintf(msg, sizeof msg, "replica assignments must name broker %d alone", SLB_NODE_ID);
        bool flush_always = false;
        int32_t nc = krd_arr(r, false, 4);
        for (int32_t j = 0; j < nc; j++) {
            int nl, vl;
            const char *n = krd_str(r, &nl);
            const char *v = krd_str(r, &vl);
            if (r->bad) break;
            if (e == KE_NONE) e = apply_config(&conf, n, nl, v, vl, &flush_always, msg, sizeof msg);
        }
        if (r->bad) return SL_EPARSE;
        char name[SL_TOPIC_NAME_MAX + 1];
        if (e != KE_NONE) {
        } else if (!slb_srv_topic_name(tn, tl, name) ||
                   slb_check_name("topic", name, false, msg) < 0) {
            e = KE_INVALID_TOPIC;
            if (!msg[0]) snprintf(msg, sizeof msg, "topic name is empty or too long");
        } else if (rf != -1 && rf != 1) {
            e = KE_INVALID_REPLICATION_FACTOR;
            snprintf(msg, sizeof msg,
                     "replication factor %d: this broker is one node, only 1 (or -1) can be "
                     "served",
                     rf);
        } else if (na > 0 && np != -1) {
            e = KE_INVALID_REQUEST;
            snprintf(msg, sizeof msg, "both num_partitions and replica assignments given");
        } else if ((na > 0 ? na : np) != -1 &&
                   ((na > 0 ? na : np) < 1 || (na > 0 ? na : np) > SL_PARTITIONS_MAX)) {
            e = KE_INVALID_PARTITIONS;
            snprintf(msg, sizeof msg, "partition count %d is out of range 1..%d", np,
                     SL_PARTITIONS_MAX);
        } else {
            if (na > 0)
                conf.partitions = na;
            else if (np > 0)
                conf.partitions = np;
            sl_topic_conf existing;
            char err[SLB_ERRLEN];
            if (slb_topic_load(s->b, name, &existing, err) == 0) {
                e = KE_TOPIC_ALREADY_EXISTS;
                snprintf(msg, sizeof msg, "topic '%s' already exists", name);
            } else if (!validate_only) {
                int rc = sl_topic_create(s->b, name, &conf);
                if (rc < 0) {
                    e = rc == SL_EEXIST   ? KE_TOPIC_ALREADY_EXISTS
                        : rc == SL_EINVAL ? KE_INVALID_CONFIG
                                          : KE_UNKNOWN;
                    snprintf(msg, sizeof msg, "%s", sl_broker_errmsg(s->b));
                } else {
                    slb_srv_log(s, "sluice broker serve: topic '%s' created (%d partitions)\n",
                                name, conf.partitions);
                }
            }
        }
        kwr_str(w, tn, tl);
        kwr_i16(w, e);
        if (ver >= 1) kwr_str(w, e ? msg : NULL, e ? (int)strlen(msg) : -1);
    }
    return 0;
}

int slb_k_delete_topics(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int32_t nt = krd_arr(r, false, 2);
    if (r->bad) return SL_EPARSE;
    krd names = *r;
    for (int32_t i = 0; i < nt; i++) {
        int l;
        krd_str(r, &l);
    }
    krd_i32(r); /* timeout_ms */
    if (r->bad) return SL_EPARSE;
    if (ver >= 1) kwr_i32(w, 0); /* throttle_time_ms */
    kwr_i32(w, nt);
    for (int32_t i = 0; i < nt; i++) {
        int tl;
        const char *tn = krd_str(&names, &tl);
        char name[SL_TOPIC_NAME_MAX + 1];
        int16_t e = KE_NONE;
        if (!slb_srv_topic_name(tn, tl, name) || slb_check_name("topic", name, false, NULL) < 0) {
            e = tn && tl > 2 && tn[0] == '_' && tn[1] == '_' ? KE_INVALID_TOPIC : KE_UNKNOWN_TOPIC;
        } else {
            int rc = sl_topic_delete(s->b, name);
            if (rc == SL_ENOENT) {
                e = KE_UNKNOWN_TOPIC;
            } else if (rc < 0) {
                e = KE_UNKNOWN;
                slb_srv_log(s, "sluice broker serve: delete topic '%s': %s\n", name,
                            sl_broker_errmsg(s->b));
            } else {
                slb_srv_log(s, "sluice broker serve: topic '%s' deleted\n", name);
                slb_srv_wake(s); /* parked fetches of it answer UNKNOWN_TOPIC */
            }
        }
        kwr_str(w, tn, tl);
        kwr_i16(w, e);
    }
    return 0;
}
