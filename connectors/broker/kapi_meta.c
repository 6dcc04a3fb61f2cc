/*
 * connectors/broker/kapi_meta.c - the cluster as the Kafka protocol server
 * shows it: Metadata (one broker, node 0, leader of every partition, with
 * itself as the only replica) and FindCoordinator (that broker coordinates
 * every group and transactional id). Handler contract: server_int.h.
 */
#include <string.h>

#include "connectors/broker/server_int.h"

/* ---- Metadata ------------------------------------------------------------ */

static void meta_topic(sl_server *s, kwr *w, int16_t ver, const char *name, int len)
{
    sl_topic_info *ti = slb_srv_describe(s, name, len);
    kwr_i16(w, ti ? KE_NONE : KE_UNKNOWN_TOPIC);
    kwr_str(w, name, len);
    /* is_internal: the broker's own topics (committed offsets) start with "__" */
    if (ver >= 1) kwr_i8(w, len > 2 && name[0] == '_' && name[1] == '_');
    int32_t np = ti ? ti->partition_count : 0;
    kwr_i32(w, np);
    for (int32_t i = 0; i < np; i++) {
        kwr_i16(w, KE_NONE);
        kwr_i32(w, i);
        kwr_i32(w, SLB_NODE_ID);      /* leader */
        if (ver >= 7) kwr_i32(w, -1); /* leader_epoch: unknown */
        kwr_i32(w, 1);                /* replica_nodes */
        kwr_i32(w, SLB_NODE_ID);
        kwr_i32(w, 1); /* isr_nodes */
        kwr_i32(w, SLB_NODE_ID);
        if (ver >= 5) kwr_i32(w, 0); /* offline_replicas */
    }
    if (ver >= 8) kwr_i32(w, INT32_MIN); /* topic_authorized_operations: not asked */
    sl_topic_info_free(ti);
}

int slb_k_metadata(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int32_t n = krd_arr(r, ver >= 1, 2);
    if (r->bad) return SL_EPARSE;
    const uint8_t *topics = r->p; /* re-read below, after the brokers */
    for (int32_t i = 0; i < n; i++) {
        int len;
        krd_str(r, &len);
    }
    if (ver >= 4) krd_i8(r); /* allow_auto_topic_creation: no auto-creation */
    if (ver >= 8) {
        krd_i8(r);
        krd_i8(r);
    }
    if (r->bad) return SL_EPARSE;

    if (ver >= 3) kwr_i32(w, 0); /* throttle_time_ms */
    kwr_i32(w, 1);               /* brokers: this one */
    kwr_i32(w, SLB_NODE_ID);
    kwr_str(w, s->host, (int)strlen(s->host));
    kwr_i32(w, s->port);
    if (ver >= 1) kwr_str(w, NULL, -1);    /* rack */
    if (ver >= 2) kwr_str(w, "sluice", 6); /* cluster_id */
    if (ver >= 1) kwr_i32(w, SLB_NODE_ID); /* controller_id */
    if (n == 0 && ver >= 1) {              /* an empty list (v1+): no topics, the brokers only */
        kwr_i32(w, 0);
    } else if (n > 0) {
        krd t = {topics, r->end, false};
        kwr_i32(w, n);
        for (int32_t i = 0; i < n; i++) {
            int len;
            const char *name = krd_str(&t, &len);
            meta_topic(s, w, ver, name ? name : "", len < 0 ? 0 : len);
        }
    } else { /* null (v1+) or empty (v0): every topic */
        char **names = NULL;
        size_t count = 0;
        if (sl_topic_list(s->b, &names, &count) < 0) count = 0;
        kwr_i32(w, (int32_t)count);
        for (size_t i = 0; i < count; i++) meta_topic(s, w, ver, names[i], (int)strlen(names[i]));
        sl_topic_list_free(names, count);
    }
    if (ver >= 8) kwr_i32(w, INT32_MIN); /* cluster_authorized_operations */
    return 0;
}

/* ---- FindCoordinator ------------------------------------------------------
 * Every group and every transactional id is coordinated by this one broker:
 * the answer names it whatever the key (v0: a group; v1+: key_type 0 group,
 * 1 transaction). */
int slb_k_find_coordinator(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int len;
    krd_str(r, &len); /* key */
    int8_t type = ver >= 1 ? krd_i8(r) : 0;
    if (r->bad || len < 0) return SL_EPARSE;
    if (ver >= 1) kwr_i32(w, 0); /* throttle_time_ms */
    bool ok = type == 0 || type == 1;
    kwr_i16(w, ok ? KE_NONE : KE_INVALID_REQUEST);
    if (ver >= 1) kwr_str(w, NULL, -1); /* error_message */
    kwr_i32(w, ok ? SLB_NODE_ID : -1);
    kwr_str(w, ok ? s->host : "", ok ? (int)strlen(s->host) : 0);
    kwr_i32(w, ok ? s->port : -1);
    return 0;
}
