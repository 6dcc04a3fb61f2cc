/*
 * connectors/broker/kgroup.h - the group coordinator of the Kafka protocol
 * server (kgroup.c: groups, members, the rebalance state machine, timers)
 * and the committed-offset calls of the broker's group store that it uses
 * (group.c). Private header.
 *
 * The coordinator's state is a struct slb_kgroups hung off sl_server
 * (s->kg), created by the first group request and freed by
 * slb_server_close. It is touched by the server's loop thread only, so it
 * has no lock. kapi_group.c parses the requests, calls in here, and encodes
 * the answers from the structs below.
 */
#ifndef SLUICE_BROKER_KGROUP_H
#define SLUICE_BROKER_KGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/broker.h"

/* ---- the offset store (group.c) ------------------------------------------ */

#define SLB_GROUP_META_MAX 4096 /* bytes of commit metadata kept (Kafka's default limit) */

/* One partition's commit: topic and partition, offset, metadata. */
typedef struct slb_commit {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *meta;
    size_t meta_len; /* <= SLB_GROUP_META_MAX */
} slb_commit;

/* Commit n offsets of group as one batch (one append, one fsync) to
 * __consumer_offsets. Errors: SL_EINVAL (a bad name, a negative partition
 * or offset), SL_ETOOBIG (metadata above SLB_GROUP_META_MAX), I/O errors;
 * nothing is written then. b's errmsg says which. */
int slb_group_commit_many(sl_broker *b, const char *group, const slb_commit *cs, size_t n);

/* The latest commit of a (group, topic, partition) key. */
typedef struct slb_offset {
    char group[SL_TOPIC_NAME_MAX + 1];
    char topic[SL_TOPIC_NAME_MAX + 1];
    int32_t partition;
    int64_t offset;
    size_t meta_len;
    uint8_t *meta; /* malloc'ed, NULL when meta_len is 0 */
} slb_offset;

/* Every key's latest commit, of group (NULL: of every group), read from the
 * log in one pass, in the order the keys were first committed. *out is the
 * caller's, released with slb_group_offsets_free; NULL when *count is 0. */
int slb_group_offsets(sl_broker *b, const char *group, slb_offset **out, size_t *count);
void slb_group_offsets_free(slb_offset *v, size_t count);

/* ---- the coordinator (kgroup.c) ------------------------------------------ */

struct sl_server;
struct slb_conn;

typedef enum {
    SLB_KG_EMPTY,
    SLB_KG_PREPARING,  /* PreparingRebalance: waiting for the members to rejoin */
    SLB_KG_COMPLETING, /* CompletingRebalance: waiting for the leader's SyncGroup */
    SLB_KG_STABLE,
    SLB_KG_DEAD, /* only ever reported, for a group that does not exist */
} slb_kg_state;

typedef struct slb_kproto {
    char *name;
    uint8_t *meta;
    int32_t meta_len;
} slb_kproto;

typedef struct slb_kmember {
    char *id, *client_id, *client_host;
    int32_t session_ms, rebalance_ms;
    slb_kproto *protos;
    int nprotos;
    uint8_t *assign; /* the leader's assignment for this generation (SyncGroup) */
    int32_t assign_len;
    int64_t last_seen; /* monotonic ms of its last request: session expiry */
    /* joined: it (re)joined during the current PreparingRebalance.
     * join_conn: the connection whose JoinGroup waits for this member (parked),
     * answered once answer is set (the rebalance completed). sync_conn: the
     * connection whose SyncGroup waits (a follower before the leader's). */
    bool joined, answer;
    struct slb_conn *join_conn, *sync_conn;
    struct slb_kmember *next;
} slb_kmember;

/* A member id handed out with MEMBER_ID_REQUIRED (JoinGroup v4+), not yet
 * a member: it may join with it until its deadline. */
typedef struct slb_kpending {
    char *id;
    int64_t deadline;
    struct slb_kpending *next;
} slb_kpending;

typedef struct slb_kgroup {
    char *id;
    slb_kg_state state;
    int32_t generation;
    char *protocol_type; /* NULL: none yet (an Empty group) */
    char *protocol;      /* the selected protocol; NULL before the first generation */
    char *leader;        /* the leader's member id, NULL without members */
    slb_kmember *members;
    int nmembers;
    int64_t rebalance_deadline; /* PreparingRebalance ends at the latest then */
    slb_kpending *pending;
    struct slb_kgroup *next;
} slb_kgroup;

typedef struct slb_kgroups {
    slb_kgroup *groups;
    uint64_t seq;  /* member ids handed out */
    uint32_t boot; /* this server's start, in member ids: ids differ across restarts */
    int64_t min_session_ms, max_session_ms;
    bool trace; /* SLUICE_KGROUP_TRACE=1: log transitions */
} slb_kgroups;

/* Members (with the ids handed out and not yet used) a group may have: a
 * join beyond gets GROUP_MAX_SIZE_REACHED (Kafka's group.max.size). */
#define SLB_KG_MAX_MEMBERS    1000
#define SLB_KE_GROUP_MAX_SIZE 81

/* The coordinator of s, created on first use; NULL when out of memory. */
slb_kgroups *slb_kgroups_get(struct sl_server *s);
void slb_kgroups_free(slb_kgroups *kg);
/* Monotonic milliseconds. */
int64_t slb_kg_now(void);

slb_kgroup *slb_kg_find(slb_kgroups *kg, const char *id);
/* Find or create (state Empty); NULL when out of memory. */
slb_kgroup *slb_kg_create(slb_kgroups *kg, const char *id);
slb_kmember *slb_kg_member(slb_kgroup *g, const char *id);
/* The member whose parked JoinGroup is on c. */
slb_kmember *slb_kg_member_joining(slb_kgroup *g, const struct slb_conn *c);
const char *slb_kg_state_name(slb_kg_state st);
/* The member's metadata for the group's selected protocol (NULL, 0 if none). */
const uint8_t *slb_kg_member_meta(const slb_kgroup *g, const slb_kmember *m, int32_t *len);

/* A JoinGroup's fields, as parsed. */
typedef struct slb_kjoin {
    const char *group, *member_id, *client_id, *protocol_type;
    int member_id_len;
    int32_t session_ms, rebalance_ms;
    int nprotos;
    slb_kproto *protos; /* borrowed: copied into the member */
    bool require_known; /* v4+: a new member gets MEMBER_ID_REQUIRED first */
} slb_kjoin;

/* Handle a new JoinGroup on c (not a parked one handled again). Returns a
 * Kafka error code (KE_...) and *out the member (NULL on error). With
 * KE_NONE the caller answers when (*out)->answer is set (at once, or when
 * the request, parked, is handled again: slb_kg_member_joining finds the
 * member then). KE_MEMBER_ID_REQUIRED returns the new id in *new_id (owned
 * by the group). SL_ENOMEM when out of memory. */
int slb_kg_join(struct sl_server *s, slb_kgroup *g, struct slb_conn *c, const char *peer,
                const slb_kjoin *j, slb_kmember **out, const char **new_id);
/* The member's parked JoinGroup was answered. */
void slb_kg_join_answered(slb_kmember *m);
/* The leader's SyncGroup: store the assignments (member ids not in the
 * group are ignored) and go Stable. */
int slb_kg_sync_leader(struct sl_server *s, slb_kgroup *g, const char **ids, const int *id_lens,
                       const uint8_t **as, const int32_t *as_lens, int n);
/* Remove a member (LeaveGroup): a rebalance follows. */
void slb_kg_remove(struct sl_server *s, slb_kgroup *g, slb_kmember *m, const char *why);
/* The member is alive (a request from it). */
void slb_kg_seen(slb_kmember *m);

/* The server loop's timer: expire silent members and pending ids, end
 * rebalances whose timeout passed. Returns the epoll timeout: the smaller
 * of timeout_ms and the time to the next deadline (0 after waking parked
 * requests; -1 only when timeout_ms is -1 and nothing is due). */
int slb_kgroup_tick(struct sl_server *s, int timeout_ms);
/* The connection c closes: forget the requests parked on it. */
void slb_kgroup_conn_gone(struct sl_server *s, const struct slb_conn *c);

#endif
