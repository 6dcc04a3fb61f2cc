/*
 * connectors/broker/kapi_group.c - consumer groups over the Kafka protocol:
 * JoinGroup v0-5, SyncGroup v0-3, Heartbeat v0-3, LeaveGroup v0-3,
 * OffsetCommit v0-7, OffsetFetch v0-5, ListGroups v0-2, DescribeGroups v0-4
 * (every non-flexible version; librdkafka 2.0.2, kafka-python 2.0.2 and
 * kafkajs 2.2 send versions within these). The handlers parse, ask the
 * coordinator (kgroup.c: the state machine) and encode; the committed
 * offsets go to and come from the broker's offset store (group.c), the same
 * __consumer_offsets topic that `sluice consume -G` over the directory
 * uses. Handler contract: server_int.h.
 *
 * Requests (after the v1 header; v = the versions a field is in):
 *
 *   JoinGroup     group_id string | session_timeout_ms int32 |
 *                 rebalance_timeout_ms int32 (v1+) | member_id string |
 *                 group_instance_id nullable string (v5+) |
 *                 protocol_type string | [name string | metadata bytes]
 *   SyncGroup     group_id | generation_id int32 | member_id |
 *                 group_instance_id (v3+) | [member_id | assignment bytes]
 *   Heartbeat     group_id | generation_id int32 | member_id |
 *                 group_instance_id (v3+)
 *   LeaveGroup    group_id | member_id (v0-2) |
 *                 [member_id | group_instance_id] (v3+)
 *   OffsetCommit  group_id | generation_id int32 (v1+) | member_id (v1+) |
 *                 group_instance_id (v7+) | retention_time_ms int64 (v2-4) |
 *                 [topic string | [partition int32 | offset int64 |
 *                 leader_epoch int32 (v6+) | timestamp int64 (v1 only) |
 *                 metadata nullable string]]
 *   OffsetFetch   group_id | [topic string | [partition int32]]
 *                 (the topic array is nullable from v2: every offset)
 *   ListGroups    (nothing)
 *   DescribeGroups [group_id] | include_authorized_operations int8 (v3+)
 *
 * A JoinGroup waits (SLB_K_PARK) until its rebalance completes; it is
 * handled again on every wake-up and answers once the coordinator marked
 * its member (member->answer; the member is found again through its
 * connection, as a v0-3 join of a new member carries no id). A follower's
 * SyncGroup waits until the leader's SyncGroup made the group Stable, or a
 * new rebalance made its wait vain (REBALANCE_IN_PROGRESS).
 *
 * Errors, as Kafka's coordinator answers them (checked in this order):
 *
 *   request       error                       when
 *   ------------  --------------------------  ------------------------------------
 *   any           INVALID_GROUP_ID 24         the group id is not a valid name
 *   JoinGroup     INVALID_SESSION_TIMEOUT 26  session timeout outside 100 ms..30 min
 *                 UNKNOWN_MEMBER_ID 25        a member id the group never gave out
 *                 INCONSISTENT_GROUP_PROT. 23 no protocol in common with the members
 *                 GROUP_MAX_SIZE_REACHED 81   a new member beyond 1000 (and ids
 *                                             handed out, not used yet)
 *                 MEMBER_ID_REQUIRED 79       v4+, a new member: here is your id
 *   SyncGroup,    UNKNOWN_MEMBER_ID 25        no such group or member; group Empty
 *   Heartbeat     ILLEGAL_GENERATION 22       not the group's generation
 *                 REBALANCE_IN_PROGRESS 27    PreparingRebalance (Heartbeat answers
 *                                             0 in CompletingRebalance, as newer
 *                                             Kafkas do; SyncGroup waits then)
 *   LeaveGroup    UNKNOWN_MEMBER_ID 25        no such group or member (v3: per member)
 *   OffsetCommit  ILLEGAL_GENERATION 22       no such group and generation >= 0, or
 *                                             a member of another generation
 *                 REBALANCE_IN_PROGRESS 27    CompletingRebalance
 *                 UNKNOWN_MEMBER_ID 25        not a member (a simple commit,
 *                                             generation < 0, only to a group
 *                                             without members)
 *                 UNKNOWN_TOPIC_OR_PART. 3    per partition
 *                 OFFSET_METADATA_TOO_LARGE 12 metadata above 4096 bytes
 *                 INVALID_REQUEST 42          a negative offset
 *                 UNKNOWN_SERVER_ERROR -1     the offset store failed (logged)
 *   DescribeGroups                            an unknown group: error 0, "Dead"
 *   OffsetFetch                               no commit: offset -1, metadata ""
 *
 * Not served: static membership (group_instance_id: such members are
 * treated as dynamic ones, logged once as they join) and group ids outside
 * the broker's names ([A-Za-z0-9._-], 1..200 bytes, not starting with '.'
 * or "__"): those get INVALID_GROUP_ID. Incremental cooperative
 * rebalancing (KIP-429) is the clients' protocol over these same requests:
 * nothing here knows of it (untested).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/broker/broker_int.h"
#include "connectors/broker/kgroup.h"
#include "connectors/broker/server_int.h"

#define KG_E_METADATA_TOO_LARGE 12 /* Kafka's OFFSET_METADATA_TOO_LARGE */
#define KG_ALL_GROUP_OPS        ((1 << 3) | (1 << 6) | (1 << 8)) /* READ, DELETE, DESCRIBE */

/* A group id from the wire as a C string; false if it is not a valid name. */
static bool group_name(const char *p, int len, char out[SL_TOPIC_NAME_MAX + 1])
{
    char err[SLB_ERRLEN];
    if (!p || len <= 0 || len > SL_TOPIC_NAME_MAX || memchr(p, 0, (size_t)len)) return false;
    memcpy(out, p, (size_t)len);
    out[len] = 0;
    return slb_check_name("group", out, false, err) == 0;
}

/* A wire string as a C string in out (cap bytes); false when it does not fit. */
static bool cstr(const char *p, int len, char *out, size_t cap)
{
    if (len < 0) len = 0;
    if ((size_t)len >= cap || (len && memchr(p, 0, (size_t)len))) return false;
    if (len) memcpy(out, p, (size_t)len);
    out[len] = 0;
    return true;
}

static void kwr_cstr(kwr *w, const char *s)
{
    kwr_str(w, s ? s : "", s ? (int)strlen(s) : 0);
}

/* "/HOST" of a connection's "HOST:PORT", as Kafka shows a client host. */
static void client_host(const slb_conn *c, char *out, size_t cap)
{
    const char *colon = strrchr(c->peer, ':');
    int n = colon ? (int)(colon - c->peer) : (int)strlen(c->peer);
    snprintf(out, cap, "/%.*s", n, c->peer);
}

/* The client id of the request being handled: the header's, in the frame
 * at the head of c's input (server.c handles the frame in place there):
 * int32 length | int16 key | int16 version | int32 correlation id |
 * string client_id. Empty if null or unprintable. */
static void header_client_id(const slb_conn *c, char *out, size_t cap)
{
    krd h = {c->in.p + c->in.off + 12, c->in.p + c->in.len, false};
    int len;
    const char *id = krd_str(&h, &len);
    if (h.bad || !cstr(id, len, out, cap)) out[0] = 0;
}

/* Park the request for ms (a wait of the group protocol). */
static int park(sl_server *s, int64_t ms)
{
    s->park_ms = (int32_t)(ms > 600000 ? 600000 : ms < 1000 ? 1000 : ms);
    return SLB_K_PARK;
}

/* ---- JoinGroup ------------------------------------------------------------ */

static void join_answer(kwr *w, int16_t ver, int16_t err, const slb_kgroup *g, const slb_kmember *m,
                        const char *member_id, int member_id_len)
{
    if (ver >= 2) kwr_i32(w, 0); /* throttle_time_ms */
    kwr_i16(w, err);
    if (err != KE_NONE) {
        kwr_i32(w, -1);
        kwr_str(w, "", 0);
        kwr_str(w, "", 0);
        kwr_str(w, member_id ? member_id : "", member_id ? member_id_len : 0);
        kwr_i32(w, 0);
        return;
    }
    kwr_i32(w, g->generation);
    kwr_cstr(w, g->protocol);
    kwr_cstr(w, g->leader);
    kwr_cstr(w, m->id);
    bool leader = g->leader && !strcmp(g->leader, m->id);
    kwr_i32(w, leader ? g->nmembers : 0);
    if (!leader) return;
    for (const slb_kmember *x = g->members; x; x = x->next) {
        kwr_cstr(w, x->id);
        if (ver >= 5) kwr_str(w, NULL, -1); /* group_instance_id */
        int32_t len;
        const uint8_t *meta = slb_kg_member_meta(g, x, &len);
        kwr_bytes(w, meta, (size_t)len);
    }
}

/* Forget a group that a failed first request created and left unused. */
static void drop_unused(slb_kgroups *kg, slb_kgroup *g)
{
    if (g->members || g->pending || g->generation || g->protocol_type) return;
    for (slb_kgroup **pp = &kg->groups; *pp; pp = &(*pp)->next)
        if (*pp == g) {
            *pp = g->next;
            g->next = NULL;
            break;
        }
    free(g->id);
    free(g);
}

int slb_k_join_group(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    int glen, mlen, ilen = 0, tlen;
    const char *gid = krd_str(r, &glen);
    int32_t session = krd_i32(r);
    int32_t rebalance = ver >= 1 ? krd_i32(r) : session;
    const char *mid = krd_str(r, &mlen);
    const char *inst = ver >= 5 ? krd_str(r, &ilen) : NULL;
    const char *ptype = krd_str(r, &tlen);
    int32_t n = krd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    const uint8_t *protos_at = r->p;
    for (int32_t i = 0; i < n; i++) {
        int l;
        int32_t ml;
        krd_str(r, &l);
        krd_bytes(r, &ml);
    }
    if (r->bad) return SL_EPARSE;

    slb_kgroups *kg = slb_kgroups_get(s);
    if (!kg) return SL_ENOMEM;
    char name[SL_TOPIC_NAME_MAX + 1], member[256], type[256], cid[256] = "";
    if (!group_name(gid, glen, name)) {
        join_answer(w, ver, KE_INVALID_GROUP_ID, NULL, NULL, mid, mlen);
        return 0;
    }
    if (!cstr(mid, mlen, member, sizeof member)) {
        join_answer(w, ver, KE_UNKNOWN_MEMBER_ID, NULL, NULL, mid, mlen);
        return 0;
    }
    slb_kgroup *g = slb_kg_find(kg, name);
    slb_kmember *m = g ? slb_kg_member_joining(g, c) : NULL;
    if (m) { /* this request, parked: handled again */
        if (!m->answer) return park(s, (int64_t)m->rebalance_ms + 5000);
        join_answer(w, ver, KE_NONE, g, m, NULL, 0);
        slb_kg_join_answered(m);
        return 0;
    }
    if (!cstr(ptype, tlen, type, sizeof type)) {
        join_answer(w, ver, KE_INCONSISTENT_GROUP_PROTOCOL, NULL, NULL, mid, mlen);
        return 0;
    }
    header_client_id(c, cid, sizeof cid);
    if (inst && !(g && slb_kg_member(g, member))) /* once, as it joins */
        slb_srv_log(s,
                    "sluice broker serve: group %s: group.instance.id '%.*s' ignored (static "
                    "membership is not served; the member is a dynamic one)\n",
                    name, ilen, inst);
    slb_kproto *protos = calloc(n > 0 ? (size_t)n : 1, sizeof *protos);
    if (!protos) return SL_ENOMEM;
    int rc = 0;
    krd pr = {protos_at, r->end, false};
    bool names_ok = true;
    for (int32_t i = 0; i < n; i++) {
        int l;
        const char *pn = krd_str(&pr, &l);
        protos[i].meta = (uint8_t *)krd_bytes(&pr, &protos[i].meta_len);
        if (protos[i].meta_len < 0) protos[i].meta_len = 0;
        protos[i].name = malloc((size_t)(l > 0 ? l : 0) + 1);
        if (!protos[i].name) {
            rc = SL_ENOMEM;
            goto fail;
        }
        if (!cstr(pn, l, protos[i].name, (size_t)(l > 0 ? l : 0) + 1) || l <= 0) names_ok = false;
    }
    bool created = !g;
    if (!g && !(g = slb_kg_create(kg, name))) {
        rc = SL_ENOMEM;
        goto fail;
    }
    char host[80];
    client_host(c, host, sizeof host);
    slb_kjoin j = {.group = name,
                   .member_id = member,
                   .member_id_len = mlen < 0 ? 0 : mlen,
                   .client_id = cid,
                   .protocol_type = type,
                   .session_ms = session,
                   .rebalance_ms = rebalance > 0 ? rebalance : session,
                   .nprotos = n,
                   .protos = protos,
                   .require_known = ver >= 4};
    const char *new_id = NULL;
    int e = names_ok ? slb_kg_join(s, g, c, host, &j, &m, &new_id) : KE_INCONSISTENT_GROUP_PROTOCOL;
    if (e == SL_ENOMEM) {
        rc = SL_ENOMEM;
    } else if (e != KE_NONE) {
        join_answer(w, ver, (int16_t)e, NULL, NULL, new_id ? new_id : mid,
                    new_id ? (int)strlen(new_id) : mlen);
        if (created) drop_unused(kg, g);
    } else if (m->answer) {
        join_answer(w, ver, KE_NONE, g, m, NULL, 0);
        slb_kg_join_answered(m);
    } else {
        rc = park(s, (int64_t)m->rebalance_ms + 5000);
    }
fail:
    for (int32_t i = 0; i < n; i++) free(protos[i].name); /* the metadata is the request's */
    free(protos);
    return rc;
}

/* ---- SyncGroup, Heartbeat, LeaveGroup --------------------------------------- */

/* The group and member a request names; a Kafka error when there is none. */
static int16_t find_member(sl_server *s, const char *gid, int glen, const char *mid, int mlen,
                           slb_kgroup **gp, slb_kmember **mp)
{
    char name[SL_TOPIC_NAME_MAX + 1], member[256];
    *gp = NULL;
    *mp = NULL;
    if (!group_name(gid, glen, name)) return KE_INVALID_GROUP_ID;
    slb_kgroups *kg = slb_kgroups_get(s);
    if (!kg || !cstr(mid, mlen, member, sizeof member)) return KE_UNKNOWN_MEMBER_ID;
    *gp = slb_kg_find(kg, name);
    *mp = *gp ? slb_kg_member(*gp, member) : NULL;
    return *mp ? KE_NONE : KE_UNKNOWN_MEMBER_ID;
}

static void sync_answer(kwr *w, int16_t ver, int16_t err, const uint8_t *a, int32_t len)
{
    if (ver >= 1) kwr_i32(w, 0);
    kwr_i16(w, err);
    kwr_bytes(w, a, err == KE_NONE && len > 0 ? (size_t)len : 0);
}

int slb_k_sync_group(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    int glen, mlen, ilen;
    const char *gid = krd_str(r, &glen);
    int32_t gen = krd_i32(r);
    const char *mid = krd_str(r, &mlen);
    if (ver >= 3) krd_str(r, &ilen);
    int32_t n = krd_arr(r, false, 6);
    if (r->bad) return SL_EPARSE;
    const char **ids = calloc(n > 0 ? (size_t)n : 1, sizeof *ids);
    int *id_lens = calloc(n > 0 ? (size_t)n : 1, sizeof *id_lens);
    const uint8_t **as = calloc(n > 0 ? (size_t)n : 1, sizeof *as);
    int32_t *as_lens = calloc(n > 0 ? (size_t)n : 1, sizeof *as_lens);
    int rc = 0;
    if (!ids || !id_lens || !as || !as_lens) {
        rc = SL_ENOMEM;
        goto fail;
    }
    for (int32_t i = 0; i < n; i++) {
        ids[i] = krd_str(r, &id_lens[i]);
        as[i] = krd_bytes(r, &as_lens[i]);
    }
    if (r->bad) {
        rc = SL_EPARSE;
        goto fail;
    }
    slb_kgroup *g;
    slb_kmember *m;
    int16_t err = find_member(s, gid, glen, mid, mlen, &g, &m);
    if (m) {
        slb_kg_seen(m);
        if (m->sync_conn == c) m->sync_conn = NULL;
    }
    if (err == KE_NONE && g->state == SLB_KG_EMPTY) err = KE_UNKNOWN_MEMBER_ID;
    if (err == KE_NONE && gen != g->generation) err = KE_ILLEGAL_GENERATION;
    if (err == KE_NONE && g->state == SLB_KG_PREPARING) err = KE_REBALANCE_IN_PROGRESS;
    if (err == KE_NONE && g->state == SLB_KG_COMPLETING) {
        if (g->leader && !strcmp(g->leader, m->id)) {
            if ((rc = slb_kg_sync_leader(s, g, ids, id_lens, as, as_lens, n)) < 0) goto fail;
        } else { /* a follower waits for the leader's assignment */
            m->sync_conn = c;
            rc = park(s, (int64_t)m->rebalance_ms + 5000);
            goto fail;
        }
    }
    sync_answer(w, ver, err, m ? m->assign : NULL, m ? m->assign_len : 0);
fail:
    free(ids);
    free(id_lens);
    free(as);
    free(as_lens);
    return rc;
}

int slb_k_heartbeat(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int glen, mlen, ilen;
    const char *gid = krd_str(r, &glen);
    int32_t gen = krd_i32(r);
    const char *mid = krd_str(r, &mlen);
    if (ver >= 3) krd_str(r, &ilen);
    if (r->bad) return SL_EPARSE;
    slb_kgroup *g;
    slb_kmember *m;
    int16_t err = find_member(s, gid, glen, mid, mlen, &g, &m);
    if (m) slb_kg_seen(m);
    if (err == KE_NONE && g->state == SLB_KG_EMPTY) err = KE_UNKNOWN_MEMBER_ID;
    if (err == KE_NONE && gen != g->generation) err = KE_ILLEGAL_GENERATION;
    if (err == KE_NONE && g->state == SLB_KG_PREPARING) err = KE_REBALANCE_IN_PROGRESS;
    if (ver >= 1) kwr_i32(w, 0);
    kwr_i16(w, err);
    return 0;
}

int slb_k_leave_group(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int glen, mlen, ilen;
    const char *gid = krd_str(r, &glen);
    if (ver <= 2) {
        const char *mid = krd_str(r, &mlen);
        if (r->bad) return SL_EPARSE;
        slb_kgroup *g;
        slb_kmember *m;
        int16_t err = find_member(s, gid, glen, mid, mlen, &g, &m);
        if (m) slb_kg_remove(s, g, m, "left the group");
        if (ver >= 1) kwr_i32(w, 0);
        kwr_i16(w, err);
        return 0;
    }
    int32_t n = krd_arr(r, false, 4);
    if (r->bad) return SL_EPARSE;
    const uint8_t *members_at = r->p;
    for (int32_t i = 0; i < n; i++) {
        krd_str(r, &mlen);
        krd_str(r, &ilen);
    }
    if (r->bad) return SL_EPARSE;
    char name[SL_TOPIC_NAME_MAX + 1];
    bool gok = group_name(gid, glen, name);
    kwr_i32(w, 0);
    kwr_i16(w, gok ? KE_NONE : KE_INVALID_GROUP_ID);
    kwr_i32(w, gok ? n : 0);
    krd mr = {members_at, r->end, false};
    for (int32_t i = 0; gok && i < n; i++) {
        const char *mid = krd_str(&mr, &mlen);
        const char *inst = krd_str(&mr, &ilen);
        slb_kgroup *g;
        slb_kmember *m;
        int16_t err = find_member(s, gid, glen, mid, mlen, &g, &m);
        kwr_str(w, mid, mlen);
        kwr_str(w, inst, ilen);
        kwr_i16(w, err);
        if (m) slb_kg_remove(s, g, m, "left the group");
    }
    return 0;
}

/* ---- OffsetCommit ----------------------------------------------------------- */

/* Where a group's commit may go: KE_NONE, or the error every partition gets. */
static int16_t commit_gate(sl_server *s, const char *gid, int glen, int32_t gen, const char *mid,
                           int mlen, char name[SL_TOPIC_NAME_MAX + 1])
{
    if (!group_name(gid, glen, name)) return KE_INVALID_GROUP_ID;
    slb_kgroups *kg = slb_kgroups_get(s);
    slb_kgroup *g = kg ? slb_kg_find(kg, name) : NULL;
    if (!g) return gen < 0 ? KE_NONE : KE_ILLEGAL_GENERATION; /* a simple commit, or a stale one */
    if (gen < 0 && g->state == SLB_KG_EMPTY) return KE_NONE;
    if (g->state == SLB_KG_COMPLETING) return KE_REBALANCE_IN_PROGRESS;
    char member[256];
    slb_kmember *m = cstr(mid, mlen, member, sizeof member) ? slb_kg_member(g, member) : NULL;
    if (!m) return KE_UNKNOWN_MEMBER_ID;
    if (gen != g->generation) return KE_ILLEGAL_GENERATION;
    slb_kg_seen(m);
    return KE_NONE;
}

/* One pass over the request's topics: counts (fill NULL) or collects the
 * commits that pass (fill: the partitions' errors in errs). */
typedef struct commit_ctx {
    sl_server *s;
    int16_t ver;
    int16_t gate;
    slb_commit *cs;
    size_t ncs;
    int16_t *errs; /* per partition, in request order */
    size_t nparts;
    char (*topics)[SL_TOPIC_NAME_MAX + 1];
} commit_ctx;

static int commit_pass(commit_ctx *x, krd *r, bool fill)
{
    int32_t nt = krd_arr(r, false, 6);
    for (int32_t t = 0; t < nt && !r->bad; t++) {
        int tlen;
        const char *tn = krd_str(r, &tlen);
        int32_t np = krd_arr(r, false, 14);
        if (r->bad) break;
        sl_topic_info *ti = NULL;
        bool tok = fill && x->gate == KE_NONE && slb_srv_topic_name(tn, tlen, x->topics[t]);
        if (tok) ti = slb_srv_describe(x->s, tn, tlen);
        for (int32_t i = 0; i < np && !r->bad; i++) {
            int32_t part = krd_i32(r);
            int64_t off = krd_i64(r);
            if (x->ver >= 6) krd_i32(r); /* committed_leader_epoch */
            if (x->ver == 1) krd_i64(r); /* commit_timestamp */
            int ml;
            const char *meta = krd_str(r, &ml);
            if (r->bad || !fill) {
                x->nparts++;
                continue;
            }
            int16_t e = x->gate;
            if (e == KE_NONE && (!ti || part < 0 || part >= ti->partition_count))
                e = KE_UNKNOWN_TOPIC;
            if (e == KE_NONE && ml > SLB_GROUP_META_MAX) e = KG_E_METADATA_TOO_LARGE;
            if (e == KE_NONE && off < 0) e = KE_INVALID_REQUEST;
            if (e == KE_NONE)
                x->cs[x->ncs++] = (slb_commit){.topic = x->topics[t],
                                               .partition = part,
                                               .offset = off,
                                               .meta = meta,
                                               .meta_len = ml > 0 ? (size_t)ml : 0};
            x->errs[x->nparts++] = e;
        }
        sl_topic_info_free(ti);
    }
    return r->bad ? SL_EPARSE : 0;
}

int slb_k_offset_commit(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int glen, mlen = 0, ilen;
    const char *gid = krd_str(r, &glen), *mid = NULL;
    int32_t gen = -1;
    if (ver >= 1) {
        gen = krd_i32(r);
        mid = krd_str(r, &mlen);
    }
    if (ver >= 7) krd_str(r, &ilen);
    if (ver >= 2 && ver <= 4) krd_i64(r); /* retention_time_ms: the topic's compaction decides */
    if (r->bad) return SL_EPARSE;
    const uint8_t *topics_at = r->p;
    commit_ctx x = {.s = s, .ver = ver};
    if (commit_pass(&x, r, false) < 0) return SL_EPARSE;
    int32_t nt = (int32_t)kbe32(topics_at);
    int rc = 0;
    char name[SL_TOPIC_NAME_MAX + 1];
    x.gate = commit_gate(s, gid, glen, gen, mid, mlen, name);
    x.cs = calloc(x.nparts ? x.nparts : 1, sizeof *x.cs);
    x.errs = calloc(x.nparts ? x.nparts : 1, sizeof *x.errs);
    x.topics = calloc(nt > 0 ? (size_t)nt : 1, sizeof *x.topics);
    if (!x.cs || !x.errs || !x.topics) {
        rc = SL_ENOMEM;
        goto fail;
    }
    x.nparts = 0;
    krd r2 = {topics_at, r->end, false};
    if ((rc = commit_pass(&x, &r2, true)) < 0) goto fail;
    if (x.ncs > 0) {
        int crc = slb_group_commit_many(s->b, name, x.cs, x.ncs);
        if (crc < 0) {
            slb_srv_log(s, "sluice broker serve: group %s: commit of %zu offsets failed: %s\n",
                        name, x.ncs, sl_broker_errmsg(s->b));
            for (size_t i = 0; i < x.nparts; i++)
                if (x.errs[i] == KE_NONE) x.errs[i] = KE_UNKNOWN;
        } else {
            slb_srv_wake(s);
        }
    }
    if (ver >= 3) kwr_i32(w, 0);
    krd r3 = {topics_at, r->end, false};
    nt = krd_arr(&r3, false, 6);
    kwr_i32(w, nt);
    size_t k = 0;
    for (int32_t t = 0; t < nt; t++) {
        int tlen;
        const char *tn = krd_str(&r3, &tlen);
        int32_t np = krd_arr(&r3, false, 14);
        kwr_str(w, tn, tlen);
        kwr_i32(w, np);
        for (int32_t i = 0; i < np; i++) {
            int32_t part = krd_i32(&r3);
            krd_i64(&r3);
            if (ver >= 6) krd_i32(&r3);
            if (ver == 1) krd_i64(&r3);
            int ml;
            krd_str(&r3, &ml);
            kwr_i32(w, part);
            kwr_i16(w, x.errs[k++]);
        }
    }
fail:
    free(x.cs);
    free(x.errs);
    free(x.topics);
    return rc;
}

/* ---- OffsetFetch ------------------------------------------------------------ */

static void fetch_partition(kwr *w, int16_t ver, int32_t part, const slb_offset *o, int16_t err)
{
    kwr_i32(w, part);
    kwr_i64(w, o ? o->offset : -1);
    if (ver >= 5) kwr_i32(w, -1); /* committed_leader_epoch: unknown */
    kwr_str(w, o ? (const char *)o->meta : "", o ? (int)o->meta_len : 0);
    kwr_i16(w, err);
}

int slb_k_offset_fetch(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int glen;
    const char *gid = krd_str(r, &glen);
    int32_t nt = krd_arr(r, ver >= 2, 6);
    if (r->bad) return SL_EPARSE;
    const uint8_t *topics_at = r->p;
    for (int32_t t = 0; t < nt; t++) {
        int tlen;
        krd_str(r, &tlen);
        int32_t np = krd_arr(r, false, 4);
        for (int32_t i = 0; i < np; i++) krd_i32(r);
    }
    if (r->bad) return SL_EPARSE;
    char name[SL_TOPIC_NAME_MAX + 1];
    int16_t err = KE_NONE;
    slb_offset *offs = NULL;
    size_t noffs = 0;
    if (!group_name(gid, glen, name)) {
        err = KE_INVALID_GROUP_ID;
    } else {
        int rc = slb_group_offsets(s->b, name, &offs, &noffs);
        if (rc == SL_ENOMEM) return rc;
        if (rc < 0) {
            slb_srv_log(s, "sluice broker serve: group %s: reading committed offsets: %s\n", name,
                        sl_broker_errmsg(s->b));
            err = KE_UNKNOWN;
        }
    }
    if (ver >= 3) kwr_i32(w, 0);
    if (nt < 0) { /* every committed offset of the group, by topic */
        size_t ntopics = 0;
        for (size_t i = 0; i < noffs; i++) {
            size_t k = 0;
            while (k < i && strcmp(offs[k].topic, offs[i].topic)) k++;
            if (k == i) ntopics++;
        }
        kwr_i32(w, err == KE_NONE ? (int32_t)ntopics : 0);
        for (size_t i = 0; err == KE_NONE && i < noffs; i++) {
            size_t k = 0;
            while (k < i && strcmp(offs[k].topic, offs[i].topic)) k++;
            if (k < i) continue; /* the topic was written with its first entry */
            int32_t np = 0;
            for (size_t j = i; j < noffs; j++) np += !strcmp(offs[j].topic, offs[i].topic);
            kwr_cstr(w, offs[i].topic);
            kwr_i32(w, np);
            for (size_t j = i; j < noffs; j++)
                if (!strcmp(offs[j].topic, offs[i].topic))
                    fetch_partition(w, ver, offs[j].partition, &offs[j], KE_NONE);
        }
    } else {
        krd t2 = {topics_at, r->end, false};
        kwr_i32(w, nt);
        for (int32_t t = 0; t < nt; t++) {
            int tlen;
            const char *tn = krd_str(&t2, &tlen);
            int32_t np = krd_arr(&t2, false, 4);
            kwr_str(w, tn, tlen);
            kwr_i32(w, np);
            for (int32_t i = 0; i < np; i++) {
                int32_t part = krd_i32(&t2);
                const slb_offset *o = NULL;
                for (size_t j = 0; j < noffs && !o; j++)
                    if (offs[j].partition == part && (int)strlen(offs[j].topic) == tlen &&
                        !memcmp(offs[j].topic, tn, (size_t)tlen))
                        o = &offs[j];
                /* v0-1 have no top-level error: each partition carries it */
                fetch_partition(w, ver, part, o, ver < 2 ? err : KE_NONE);
            }
        }
    }
    if (ver >= 2) kwr_i16(w, err);
    slb_group_offsets_free(offs, noffs);
    return 0;
}

/* ---- ListGroups, DescribeGroups ------------------------------------------------ */

int slb_k_list_groups(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c, (void)r; /* v0-2 requests have no fields */
    slb_kgroups *kg = slb_kgroups_get(s);
    if (!kg) return SL_ENOMEM;
    slb_offset *offs = NULL;
    size_t noffs = 0;
    int rc = slb_group_offsets(s->b, NULL, &offs, &noffs);
    if (rc == SL_ENOMEM) return rc;
    int16_t err = KE_NONE;
    if (rc < 0) {
        slb_srv_log(s, "sluice broker serve: ListGroups: reading committed offsets: %s\n",
                    sl_broker_errmsg(s->b));
        err = KE_COORDINATOR_NOT_AVAILABLE;
        noffs = 0;
    }
    /* the groups in memory, then those that only have committed offsets */
    int32_t n = 0;
    for (slb_kgroup *g = kg->groups; g; g = g->next) n++;
    for (size_t i = 0; i < noffs; i++) {
        size_t k = 0;
        while (k < i && strcmp(offs[k].group, offs[i].group)) k++;
        if (k == i && !slb_kg_find(kg, offs[i].group)) n++;
    }
    if (ver >= 1) kwr_i32(w, 0);
    kwr_i16(w, err);
    kwr_i32(w, n);
    for (slb_kgroup *g = kg->groups; g; g = g->next) {
        kwr_cstr(w, g->id);
        kwr_cstr(w, g->protocol_type);
    }
    for (size_t i = 0; i < noffs; i++) {
        size_t k = 0;
        while (k < i && strcmp(offs[k].group, offs[i].group)) k++;
        if (k < i || slb_kg_find(kg, offs[i].group)) continue;
        kwr_cstr(w, offs[i].group);
        kwr_str(w, "", 0); /* a simple group: no protocol type */
    }
    slb_group_offsets_free(offs, noffs);
    return 0;
}

int slb_k_describe_groups(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)c;
    int32_t n = krd_arr(r, false, 2);
    if (r->bad) return SL_EPARSE;
    const uint8_t *groups_at = r->p;
    for (int32_t i = 0; i < n; i++) {
        int l;
        krd_str(r, &l);
    }
    bool auth_ops = ver >= 3 ? krd_i8(r) != 0 : false;
    if (r->bad) return SL_EPARSE;
    slb_kgroups *kg = slb_kgroups_get(s);
    if (!kg) return SL_ENOMEM;
    if (ver >= 1) kwr_i32(w, 0);
    kwr_i32(w, n);
    krd gr = {groups_at, r->end, false};
    for (int32_t i = 0; i < n; i++) {
        int l;
        const char *gid = krd_str(&gr, &l);
        char name[SL_TOPIC_NAME_MAX + 1];
        bool ok = group_name(gid, l, name);
        slb_kgroup *g = ok ? slb_kg_find(kg, name) : NULL;
        const char *state = "Dead";
        if (g) {
            state = slb_kg_state_name(g->state);
        } else if (ok) { /* only committed offsets: an Empty group, as Kafka loads it */
            slb_offset *offs = NULL;
            size_t noffs = 0;
            int rc = slb_group_offsets(s->b, name, &offs, &noffs);
            slb_group_offsets_free(offs, noffs);
            if (rc == SL_ENOMEM) return rc;
            if (rc == 0 && noffs > 0) state = "Empty";
        }
        bool stable = g && g->state == SLB_KG_STABLE;
        kwr_i16(w, ok ? KE_NONE : KE_INVALID_GROUP_ID);
        kwr_str(w, gid, l);
        kwr_cstr(w, state);
        kwr_cstr(w, g ? g->protocol_type : "");
        kwr_cstr(w, stable ? g->protocol : "");
        kwr_i32(w, g ? g->nmembers : 0);
        for (const slb_kmember *m = g ? g->members : NULL; m; m = m->next) {
            kwr_cstr(w, m->id);
            if (ver >= 4) kwr_str(w, NULL, -1);
            kwr_cstr(w, m->client_id);
            kwr_cstr(w, m->client_host);
            int32_t ml = 0;
            const uint8_t *meta = stable ? slb_kg_member_meta(g, m, &ml) : NULL;
            kwr_bytes(w, meta, (size_t)ml);
            kwr_bytes(w, stable ? m->assign : NULL, stable ? (size_t)m->assign_len : 0);
        }
        if (ver >= 3) kwr_i32(w, auth_ops ? KG_ALL_GROUP_OPS : INT32_MIN);
    }
    return 0;
}
