/*
 * connectors/broker/kgroup.c - the Kafka protocol server's group
 * coordinator: consumer groups as Kafka's classic (eager) group protocol
 * runs them. kapi_group.c parses the requests and calls in here; the state
 * lives in memory (s->kg), the committed offsets in the broker's offset
 * store (group.c), so a restart of the server forgets the members (they get
 * UNKNOWN_MEMBER_ID and join again) but never the offsets.
 *
 * States and what moves a group between them:
 *
 *   Empty --JoinGroup--> PreparingRebalance
 *   PreparingRebalance --every member rejoined, or the rebalance timeout
 *       (members that did not rejoin are removed)--> CompletingRebalance
 *       (generation + 1, a protocol and a leader chosen, every parked
 *       JoinGroup answered; the leader's answer lists the members), or
 *       Empty when no member is left (generation + 1 too)
 *   CompletingRebalance --the leader's SyncGroup--> Stable (the followers'
 *       parked SyncGroups get their assignment)
 *   Stable or CompletingRebalance --a new member joins, a member's
 *       protocols change, the leader rejoins, a member leaves or its
 *       session expires--> PreparingRebalance (members learn it from
 *       Heartbeat: REBALANCE_IN_PROGRESS, and rejoin)
 *
 * Invariants:
 *   - a member is in exactly one group's list; ids are unique (client id,
 *     this server's boot stamp, a counter);
 *   - joined is set only while the group is PreparingRebalance;
 *   - a member's session expires (it is removed) when it sent nothing for
 *     session_ms, unless a JoinGroup or SyncGroup of it is parked here
 *     (Kafka keeps those alive too);
 *   - generation only grows; the protocol is one every member supports,
 *     the first in the leader's order;
 *   - every change a parked request may wait for calls slb_srv_wake, so
 *     parked JoinGroups and SyncGroups are handled again and answer.
 *
 * Transitions are traced on the server's log with SLUICE_KGROUP_TRACE=1.
 *
 * Timers: slb_kgroup_tick runs once per turn of the server loop (server.c)
 * and bounds the loop's epoll timeout by the next session or rebalance
 * deadline. Runs on the server's loop thread only (no lock).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "connectors/broker/kgroup.h"
#include "connectors/broker/server_int.h"

#define SESSION_MIN_MS 100     /* Kafka's group.min.session.timeout.ms is 6000 */
#define SESSION_MAX_MS 1800000 /* Kafka's group.max.session.timeout.ms */

/* Group transitions are normal operation: logged only with
 * SLUICE_KGROUP_TRACE=1 in the environment (the server logs one line per
 * start and stop by default). */
static void trace(sl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(sl_server *s, const char *fmt, ...)
{
    if (!s->kg || !s->kg->trace || !s->log) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(s->log, fmt, ap);
    va_end(ap);
    fflush(s->log);
}

int64_t slb_kg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

slb_kgroups *slb_kgroups_get(sl_server *s)
{
    if (s->kg) return s->kg;
    slb_kgroups *kg = calloc(1, sizeof *kg);
    if (!kg) return NULL;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    kg->boot = (uint32_t)ts.tv_sec ^ (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() << 16;
    kg->min_session_ms = SESSION_MIN_MS;
    kg->max_session_ms = SESSION_MAX_MS;
    const char *tr = getenv("SLUICE_KGROUP_TRACE");
    kg->trace = tr && tr[0] == '1';
    s->kg = kg;
    return kg;
}

static void free_protos(slb_kproto *p, int n)
{
    for (int i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].meta);
    }
    free(p);
}

static void member_free(slb_kmember *m)
{
    free(m->id);
    free(m->client_id);
    free(m->client_host);
    free_protos(m->protos, m->nprotos);
    free(m->assign);
    free(m);
}

static void group_free(slb_kgroup *g)
{
    while (g->members) {
        slb_kmember *m = g->members;
        g->members = m->next;
        member_free(m);
    }
    while (g->pending) {
        slb_kpending *p = g->pending;
        g->pending = p->next;
        free(p->id);
        free(p);
    }
    free(g->id);
    free(g->protocol_type);
    free(g->protocol);
    free(g->leader);
    free(g);
}

void slb_kgroups_free(slb_kgroups *kg)
{
    if (!kg) return;
    while (kg->groups) {
        slb_kgroup *g = kg->groups;
        kg->groups = g->next;
        group_free(g);
    }
    free(kg);
}

slb_kgroup *slb_kg_find(slb_kgroups *kg, const char *id)
{
    for (slb_kgroup *g = kg->groups; g; g = g->next)
        if (!strcmp(g->id, id)) return g;
    return NULL;
}

slb_kgroup *slb_kg_create(slb_kgroups *kg, const char *id)
{
    slb_kgroup *g = slb_kg_find(kg, id);
    if (g) return g;
    g = calloc(1, sizeof *g);
    if (!g || !(g->id = strdup(id))) {
        free(g);
        return NULL;
    }
    g->state = SLB_KG_EMPTY;
    slb_kgroup **tail = &kg->groups; /* keep creation order (ListGroups) */
    while (*tail) tail = &(*tail)->next;
    *tail = g;
    return g;
}

slb_kmember *slb_kg_member(slb_kgroup *g, const char *id)
{
    for (slb_kmember *m = g->members; m; m = m->next)
        if (!strcmp(m->id, id)) return m;
    return NULL;
}

slb_kmember *slb_kg_member_joining(slb_kgroup *g, const struct slb_conn *c)
{
    for (slb_kmember *m = g->members; m; m = m->next)
        if (m->join_conn == c) return m;
    return NULL;
}

const char *slb_kg_state_name(slb_kg_state st)
{
    switch (st) {
    case SLB_KG_EMPTY: return "Empty";
    case SLB_KG_PREPARING: return "PreparingRebalance";
    case SLB_KG_COMPLETING: return "CompletingRebalance";
    case SLB_KG_STABLE: return "Stable";
    default: return "Dead";
    }
}

static const slb_kproto *find_proto(const slb_kmember *m, const char *name)
{
    for (int i = 0; i < m->nprotos; i++)
        if (!strcmp(m->protos[i].name, name)) return &m->protos[i];
    return NULL;
}

const uint8_t *slb_kg_member_meta(const slb_kgroup *g, const slb_kmember *m, int32_t *len)
{
    const slb_kproto *p = g->protocol ? find_proto(m, g->protocol) : NULL;
    *len = p ? p->meta_len : 0;
    return p ? p->meta : NULL;
}

void slb_kg_seen(slb_kmember *m)
{
    m->last_seen = slb_kg_now();
}

/* ---- transitions ----------------------------------------------------------- */

static void unlink_member(slb_kgroup *g, slb_kmember *m)
{
    for (slb_kmember **pp = &g->members; *pp; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    g->nmembers--;
    if (g->leader && !strcmp(g->leader, m->id)) {
        free(g->leader);
        g->leader = NULL;
    }
    member_free(m);
}

static void prepare_rebalance(sl_server *s, slb_kgroup *g)
{
    int64_t t = slb_kg_now(), rb = 0;
    for (slb_kmember *m = g->members; m; m = m->next) {
        m->joined = false;
        if (m->rebalance_ms > rb) rb = m->rebalance_ms;
        free(m->assign); /* a new generation gets new assignments */
        m->assign = NULL;
        m->assign_len = 0;
    }
    g->state = SLB_KG_PREPARING;
    g->rebalance_deadline = t + rb;
    trace(s, "sluice broker serve: group %s: rebalancing (generation %d, %d members)\n", g->id,
          g->generation, g->nmembers);
    slb_srv_wake(s);
}

/* The protocol every member supports, first in the leader's order. */
static const char *select_protocol(const slb_kgroup *g, const slb_kmember *leader)
{
    for (int i = 0; i < leader->nprotos; i++) {
        const char *name = leader->protos[i].name;
        bool all = true;
        for (const slb_kmember *m = g->members; m && all; m = m->next) all = find_proto(m, name);
        if (all) return name;
    }
    return NULL;
}

/* End PreparingRebalance: drop the members that did not rejoin, start the
 * next generation and answer the parked joins. */
static void complete_rebalance(sl_server *s, slb_kgroup *g)
{
    for (slb_kmember *m = g->members, *nx; m; m = nx) {
        nx = m->next;
        if (!m->joined) {
            trace(s, "sluice broker serve: group %s: member %s did not rejoin in time; removed\n",
                  g->id, m->id);
            unlink_member(g, m);
        }
    }
    g->generation++;
    free(g->protocol);
    g->protocol = NULL;
    if (!g->members) {
        g->state = SLB_KG_EMPTY;
        slb_srv_wake(s);
        return;
    }
    slb_kmember *leader = g->leader ? slb_kg_member(g, g->leader) : NULL;
    if (!leader) {
        leader = g->members;
        free(g->leader);
        g->leader = strdup(leader->id);
    }
    const char *p = select_protocol(g, leader);
    g->protocol = p ? strdup(p) : NULL;
    if (!g->leader || !g->protocol) {
        /* out of memory (joins checked a common protocol): try again */
        prepare_rebalance(s, g);
        return;
    }
    int64_t t = slb_kg_now();
    for (slb_kmember *m = g->members; m; m = m->next) {
        m->joined = false;
        m->answer = m->join_conn != NULL;
        m->last_seen = t;
    }
    g->state = SLB_KG_COMPLETING;
    trace(s, "sluice broker serve: group %s: generation %d, %d members, protocol %s\n", g->id,
          g->generation, g->nmembers, g->protocol);
    slb_srv_wake(s);
}

static void maybe_complete(sl_server *s, slb_kgroup *g)
{
    if (g->state != SLB_KG_PREPARING) return;
    for (slb_kmember *m = g->members; m; m = m->next)
        if (!m->joined) return;
    complete_rebalance(s, g);
}

void slb_kg_remove(sl_server *s, slb_kgroup *g, slb_kmember *m, const char *why)
{
    trace(s, "sluice broker serve: group %s: member %s %s\n", g->id, m->id, why);
    unlink_member(g, m);
    if (g->state == SLB_KG_STABLE || g->state == SLB_KG_COMPLETING) prepare_rebalance(s, g);
    maybe_complete(s, g);
    slb_srv_wake(s);
}

/* Can a member with j's protocols join g (self: its current entry, if any)? */
static bool protocols_ok(const slb_kgroup *g, const slb_kmember *self, const slb_kjoin *j)
{
    if (!j->protocol_type[0] || j->nprotos == 0) return false;
    if (g->nmembers == 0 || (g->nmembers == 1 && self)) return true;
    if (g->protocol_type && strcmp(g->protocol_type, j->protocol_type) != 0) return false;
    for (int i = 0; i < j->nprotos; i++) {
        bool all = true;
        for (const slb_kmember *m = g->members; m && all; m = m->next)
            if (m != self) all = find_proto(m, j->protos[i].name);
        if (all) return true;
    }
    return false;
}

static bool same_protocols(const slb_kmember *m, const slb_kjoin *j)
{
    if (m->nprotos != j->nprotos) return false;
    for (int i = 0; i < j->nprotos; i++)
        if (strcmp(m->protos[i].name, j->protos[i].name) != 0 ||
            m->protos[i].meta_len != j->protos[i].meta_len ||
            (j->protos[i].meta_len &&
             memcmp(m->protos[i].meta, j->protos[i].meta, (size_t)j->protos[i].meta_len) != 0))
            return false;
    return true;
}

static slb_kproto *copy_protos(const slb_kjoin *j)
{
    slb_kproto *p = calloc((size_t)j->nprotos, sizeof *p);
    if (!p) return NULL;
    for (int i = 0; i < j->nprotos; i++) {
        p[i].name = strdup(j->protos[i].name);
        p[i].meta_len = j->protos[i].meta_len;
        p[i].meta = malloc(j->protos[i].meta_len > 0 ? (size_t)j->protos[i].meta_len : 1);
        if (!p[i].name || !p[i].meta) {
            free_protos(p, i + 1);
            return NULL;
        }
        if (j->protos[i].meta_len > 0)
            memcpy(p[i].meta, j->protos[i].meta, (size_t)j->protos[i].meta_len);
    }
    return p;
}

static char *new_member_id(slb_kgroups *kg, const char *client_id)
{
    char buf[160];
    snprintf(buf, sizeof buf, "%.100s-%08x-%llu", client_id[0] ? client_id : "member", kg->boot,
             (unsigned long long)++kg->seq);
    return strdup(buf);
}

int slb_kg_join(sl_server *s, slb_kgroup *g, struct slb_conn *c, const char *peer,
                const slb_kjoin *j, slb_kmember **out, const char **new_id)
{
    slb_kgroups *kg = s->kg;
    *out = NULL;
    *new_id = NULL;
    if (j->session_ms < kg->min_session_ms || j->session_ms > kg->max_session_ms)
        return KE_INVALID_SESSION_TIMEOUT;
    bool known = j->member_id_len > 0;
    slb_kmember *m = known ? slb_kg_member(g, j->member_id) : NULL;
    slb_kpending *pend = NULL, **pp = &g->pending;
    if (known && !m) {
        for (; *pp; pp = &(*pp)->next)
            if (!strcmp((*pp)->id, j->member_id)) break;
        pend = *pp;
        if (!pend) return KE_UNKNOWN_MEMBER_ID;
    }
    if (!protocols_ok(g, m, j)) return KE_INCONSISTENT_GROUP_PROTOCOL;
    if (!known) { /* a new member: is there room? */
        int n = g->nmembers;
        for (slb_kpending *p = g->pending; p; p = p->next) n++;
        if (n >= SLB_KG_MAX_MEMBERS) return SLB_KE_GROUP_MAX_SIZE;
    }
    if (!known && j->require_known) { /* v4+: hand out an id, the client joins again with it */
        slb_kpending *p = calloc(1, sizeof *p);
        if (!p || !(p->id = new_member_id(kg, j->client_id))) {
            free(p);
            return SL_ENOMEM;
        }
        p->deadline = slb_kg_now() + j->session_ms;
        p->next = g->pending;
        g->pending = p;
        *new_id = p->id;
        return KE_MEMBER_ID_REQUIRED;
    }
    bool fresh = !m, changed = m && !same_protocols(m, j);
    char *ptype = g->protocol_type && !strcmp(g->protocol_type, j->protocol_type)
                      ? NULL
                      : strdup(j->protocol_type);
    slb_kproto *protos = fresh || changed ? copy_protos(j) : NULL;
    char *cid = strdup(j->client_id), *host = strdup(peer);
    slb_kmember *nm = fresh ? calloc(1, sizeof *nm) : NULL;
    if (fresh && nm) nm->id = pend ? pend->id : new_member_id(kg, j->client_id);
    if ((!ptype && (!g->protocol_type || strcmp(g->protocol_type, j->protocol_type))) ||
        ((fresh || changed) && !protos) || !cid || !host || (fresh && (!nm || !nm->id))) {
        free(ptype);
        if (protos) free_protos(protos, j->nprotos);
        free(cid);
        free(host);
        if (nm && nm->id != (pend ? pend->id : NULL)) free(nm->id);
        free(nm);
        return SL_ENOMEM;
    }
    if (ptype) {
        free(g->protocol_type);
        g->protocol_type = ptype;
    }
    if (fresh) {
        if (pend) { /* the pending id becomes the member's */
            *pp = pend->next;
            free(pend);
        }
        m = nm;
        slb_kmember **tail = &g->members;
        while (*tail) tail = &(*tail)->next;
        *tail = m;
        g->nmembers++;
    }
    if (protos) {
        free_protos(m->protos, m->nprotos);
        m->protos = protos;
        m->nprotos = j->nprotos;
    }
    free(m->client_id);
    m->client_id = cid;
    free(m->client_host);
    m->client_host = host;
    m->session_ms = j->session_ms;
    m->rebalance_ms = j->rebalance_ms;
    m->last_seen = slb_kg_now();
    *out = m;
    bool is_leader = g->leader && !strcmp(g->leader, m->id);
    if (!fresh && !changed &&
        ((g->state == SLB_KG_STABLE && !is_leader) || g->state == SLB_KG_COMPLETING)) {
        m->answer = true; /* nothing changes: the current generation, at once */
        m->join_conn = c;
        return KE_NONE;
    }
    if (g->state != SLB_KG_PREPARING) prepare_rebalance(s, g);
    m->joined = true;
    m->join_conn = c;
    m->answer = false;
    maybe_complete(s, g);
    return KE_NONE;
}

void slb_kg_join_answered(slb_kmember *m)
{
    m->answer = false;
    m->join_conn = NULL;
}

int slb_kg_sync_leader(sl_server *s, slb_kgroup *g, const char **ids, const int *id_lens,
                       const uint8_t **as, const int32_t *as_lens, int n)
{
    for (int i = 0; i < n; i++) {
        slb_kmember *m = g->members;
        while (m &&
               !((int)strlen(m->id) == id_lens[i] && !memcmp(m->id, ids[i], (size_t)id_lens[i])))
            m = m->next;
        if (!m) continue; /* not a member (any more): Kafka ignores it too */
        uint8_t *a = malloc(as_lens[i] > 0 ? (size_t)as_lens[i] : 1);
        if (!a) return SL_ENOMEM;
        if (as_lens[i] > 0) memcpy(a, as[i], (size_t)as_lens[i]);
        free(m->assign);
        m->assign = a;
        m->assign_len = as_lens[i] > 0 ? as_lens[i] : 0;
    }
    g->state = SLB_KG_STABLE;
    trace(s, "sluice broker serve: group %s: generation %d stable\n", g->id, g->generation);
    slb_srv_wake(s);
    return 0;
}

/* ---- timers and connections ------------------------------------------------ */

/* Is m kept alive by a request of it parked here? */
static bool kept_alive(const slb_kmember *m)
{
    return m->joined || m->sync_conn || (m->answer && m->join_conn);
}

int slb_kgroup_tick(sl_server *s, int timeout_ms)
{
    slb_kgroups *kg = s->kg;
    if (!kg) return timeout_ms;
    uint64_t gen0 = s->gen;
    int64_t t = slb_kg_now(), next = -1;
    for (slb_kgroup *g = kg->groups; g; g = g->next) {
        for (slb_kpending **pp = &g->pending; *pp;) {
            slb_kpending *p = *pp;
            if (t >= p->deadline) {
                *pp = p->next;
                free(p->id);
                free(p);
                continue;
            }
            if (next < 0 || p->deadline < next) next = p->deadline;
            pp = &p->next;
        }
        for (bool again = true; again;) { /* a removal may change the list: rescan */
            again = false;
            for (slb_kmember *m = g->members; m; m = m->next)
                if (!kept_alive(m) && t - m->last_seen >= m->session_ms) {
                    slb_kg_remove(s, g, m, "session timed out; removed");
                    again = true;
                    break;
                }
        }
        if (g->state == SLB_KG_PREPARING && t >= g->rebalance_deadline) complete_rebalance(s, g);
        for (slb_kmember *m = g->members; m; m = m->next)
            if (!kept_alive(m) && (next < 0 || m->last_seen + m->session_ms < next))
                next = m->last_seen + m->session_ms;
        if (g->state == SLB_KG_PREPARING && (next < 0 || g->rebalance_deadline < next))
            next = g->rebalance_deadline;
    }
    if (s->gen != gen0) return 0;
    if (next < 0) return timeout_ms;
    int64_t left = next - t;
    if (left < 0) left = 0;
    if (left > 60000) left = 60000;
    return timeout_ms >= 0 && timeout_ms < left ? timeout_ms : (int)left;
}

void slb_kgroup_conn_gone(sl_server *s, const struct slb_conn *c)
{
    if (!s->kg) return;
    for (slb_kgroup *g = s->kg->groups; g; g = g->next)
        for (slb_kmember *m = g->members; m; m = m->next) {
            if (m->join_conn == c) {
                m->join_conn = NULL;
                m->answer = false; /* joined stays: it did join; its session runs on */
                m->last_seen = slb_kg_now();
            }
            if (m->sync_conn == c) {
                m->sync_conn = NULL;
                m->last_seen = slb_kg_now();
            }
        }
}
