/*
 * connectors/broker/server_int.h - what the Kafka-protocol server's files
 * share (private header): the server and connection structs, and the
 * request handlers, one file per family of apis:
 *
 *   server.c        event loop, connections, framing, dispatch, ApiVersions
 *   kapi_meta.c     Metadata, FindCoordinator
 *   kapi_produce.c  Produce
 *   kapi_fetch.c    Fetch, ListOffsets
 *   kapi_group.c    JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
 *                   OffsetFetch, ListGroups, DescribeGroups (kgroup.c: the
 *                   group coordinator's state machine)
 *   kapi_sasl.c     SaslHandshake, SaslAuthenticate, v0's raw SASL tokens
 *   ktls.c          a connection's byte I/O, plain or TLS (ktls.h)
 *   scram.c         SCRAM-SHA-256, PLAIN's check, the users file (scram.h)
 *   kapi_admin.c    CreateTopics, DeleteTopics
 *   kapi_txn.c      InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
 *                   TxnOffsetCommit, EndTxn (the transaction coordinator)
 *   ksrv.c          what handlers call back into (log lines, topic lookup,
 *                   error codes, file ranges of a connection's output); it
 *                   sits below server.c and the handlers alike
 *   rawlog.c        the log's batches as stored, for zero-copy Fetch
 *   srvfile.c       DIR/.server.PID: which server writes a directory
 *
 * A handler parses the request body from r (the header is already read) and
 * appends the response body to w (server.c writes the response header and
 * the length prefix). It returns:
 *
 *   0             answered (w holds the body)
 *   SLB_K_PARK    nothing to answer yet: the request waits at the head of
 *                 its connection (the ones after it wait too, so the order
 *                 holds) until slb_srv_wake is called or s->park_ms pass,
 *                 and is then handled again with c->force set at the
 *                 deadline (answer with whatever there is)
 *   SLB_K_SILENT  handled, no response (Produce with acks=0)
 *   SL_EPARSE     the body does not parse: the connection is closed
 *   SL_ENOMEM     out of memory: the connection is closed
 *
 * Whatever a handler wrote to w is dropped unless it returns 0.
 */
#ifndef SLUICE_BROKER_SERVER_INT_H
#define SLUICE_BROKER_SERVER_INT_H

#include <stdio.h>

#include "connectors/broker/ktls.h"
#include "connectors/broker/kwire.h"
#include "connectors/broker/scram.h"
#include "connectors/broker/log.h"
#include "connectors/broker/server.h"

#define SLB_K_PARK   1
#define SLB_K_SILENT 2

#define SLB_NODE_ID 0 /* the one broker's node id */

/* A file range in a connection's output: sent after the output's bytes
 * before `at` (and before those from `at` on). */
typedef struct slb_orange {
    size_t at;
    slb_rfile *f; /* a reference, dropped once sent */
    int64_t off, len;
} slb_orange;

typedef struct slb_conn {
    int fd;
    kbuf in, out;
    /* The output is out's bytes with file ranges between them (zero-copy
     * Fetch): rq[rqhead..nrq) are unsent, rqbytes bytes in all; req_extra
     * counts the range bytes of the response being written. */
    slb_orange *rq;
    size_t nrq, caprq, rqhead;
    int64_t rqbytes, req_extra;
    bool reading; /* EPOLLIN is armed */
    bool writing; /* EPOLLOUT is armed */
    /* A parked request (SLB_K_PARK) stays at the head of the input until
     * the server's gen moves past park_gen or deadline (monotonic ms). */
    bool parked, force;
    /* woken by an append before its deadline: if it parks again, it keeps
     * the deadline it had (a request waits at most its max_wait_ms in all,
     * however often appends elsewhere wake it) */
    bool rewait;
    int64_t deadline;
    uint64_t park_gen;
    char peer[64];
    struct slb_conn *prev, *next;
    /* Security and limits (server.c, ktls.c, kapi_sasl.c). */
    struct ssl_st *ssl; /* TLS state; NULL on a plain connection */
    int io_want;        /* SLB_IO_* (ktls.h): what a TLS read/write waits for */
    char io_err[128];   /* why the I/O layer ended the connection */
    bool authed;        /* SASL done (or not required) */
    bool closing;       /* close once the output is sent; read nothing more */
    uint8_t sasl;       /* SLB_SASL_*: where the SASL exchange stands */
    uint8_t mech;       /* SLB_MECH_*, chosen by SaslHandshake */
    slb_scram *scram;   /* during a SCRAM exchange */
    int64_t last_rx;    /* monotonic ms of the last bytes received */
    char local[48];     /* the address the client reached (wildcard listeners) */
} slb_conn;

/* The transaction coordinator's state in the server (kapi_txn.c), and the
 * test-only fault hook (server.c: slb_server_set_fault_drop). */
typedef struct slb_ktxn {
    struct slb_txn_view *view; /* the transaction state file as last read (txn.c) */
    int64_t next_tick;         /* monotonic ms of the next timeout check */
    int drop_permille;         /* close a connection after this share of requests */
    uint64_t drop_rng;
} slb_ktxn;

enum { SLB_SASL_NONE, SLB_SASL_RAW, SLB_SASL_AUTHENTICATE }; /* after a v0 / v1 handshake */
enum { SLB_MECH_NONE, SLB_MECH_SCRAM, SLB_MECH_PLAIN };
enum { SLB_LOG_ERROR, SLB_LOG_WARN, SLB_LOG_INFO, SLB_LOG_DEBUG };

struct sl_server {
    sl_broker *b;
    int lfd, efd, sfd; /* listener, epoll, stop eventfd */
    int srvfd;         /* DIR/.server, locked while we serve (srvfile.c) */
    int port;
    char host[256];
    FILE *log;
    slb_conn *conns;
    /* Produce's decode arrays and Fetch's encode buffer (grown, reused). */
    sl_record *recs;
    size_t caprecs;
    sl_record_header *hdrs;
    size_t caphdrs;
    uint8_t *zbuf; /* a compressed batch, decompressed (kcompress.c) */
    size_t capzbuf;
    kbuf kb;
    void *rawcur;    /* Fetch's slb_raw cursor (rawlog.c), allocated once */
    uint64_t gen;    /* wake-ups so far (appends, ...): wakes parked requests */
    int32_t park_ms; /* how long the request that returned SLB_K_PARK waits */

    struct slb_kgroups *kg; /* the group coordinator (kgroup.h), created on first use */
    slb_ktxn txn;
    char err[512];
    /* Security and limits. */
    slb_tls *tls;      /* TLS context; NULL: plaintext */
    slb_users users;   /* SASL users; users.n == 0: no authentication */
    int32_t max_req;   /* largest request frame (bytes after the prefix) */
    int32_t max_conns; /* connections beyond this are closed at accept */
    int32_t nconns;
    int32_t idle_ms;    /* a partial request or unauthenticated connection idle this long: closed */
    int log_level;      /* SLB_LOG_* */
    bool accept_paused; /* out of file descriptors: the listener waits for a close */
    int64_t next_sweep; /* monotonic ms of the next idle check */
    bool wildcard;      /* listening on 0.0.0.0 or [::]: host is set per request to
                           the address the client reached (what Metadata advertises) */
};

typedef int (*slb_khandler)(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);

int slb_k_metadata(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_find_coordinator(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_produce(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_fetch(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_list_offsets(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
/* kapi_group.c */
int slb_k_join_group(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_sync_group(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_heartbeat(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_leave_group(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_offset_commit(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_offset_fetch(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_list_groups(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_describe_groups(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
/* kapi_admin.c */
int slb_k_create_topics(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_delete_topics(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);

/* Append len bytes of file f from off to c's output, after what is there
 * (the response being written counts them in its length). Takes its own
 * reference to f. Returns 0 or SL_ENOMEM. */
int slb_conn_add_range(slb_conn *c, slb_rfile *f, int64_t off, int64_t len);
int slb_k_init_producer_id(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_add_partitions_to_txn(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_add_offsets_to_txn(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_txn_offset_commit(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_end_txn(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
/* Abort timed-out transactions once a second; returns the event loop's
 * timeout (ms, from timeout: -1 none) shortened to the next check. */
int slb_k_txn_tick(sl_server *s, int timeout);
/* Produce of a transactional batch of (pid, epoch) with transactional id
 * (tp, tl) to (topic, partition): KE_NONE if it belongs to the id's open
 * transaction, else the Kafka error. */
int16_t slb_k_txn_check_produce(sl_server *s, const char *tp, int tl, int64_t pid, int16_t epoch,
                                const char *topic, int32_t partition);
void slb_k_txn_close(sl_server *s);
/* Test hook: after answering a request, close its connection (the answer
 * unsent) with probability permille/1000, from a PRNG seeded with seed. 0
 * turns it off. */
void slb_server_set_fault_drop(sl_server *s, int permille, uint64_t seed);

/* Answer the request frame at the head of c->in (its length prefix at
 * c->in.p + c->in.off, the whole frame there, as the event loop leaves it:
 * handlers may read the header in place) as if it had come on c, without a
 * socket (c->fd may be -1; c is not in the server's list); c->in is left
 * as it was. The response frame, if any, is appended to c->out. Returns
 * what a handler does (above), after the response header is written: 0,
 * SLB_K_PARK (call again with c->force set to answer), SL_EPARSE or
 * SL_ENOMEM (the server would close the connection). For the fuzz target. */
int slb_server_handle_frame(sl_server *s, slb_conn *c);

/* Wake every parked request (something they may wait for happened). */
static inline void slb_srv_wake(sl_server *s)
{
    s->gen++;
}

/* A topic name from the wire as a C string in out; false if it cannot be
 * one (empty, too long, or a NUL inside). */
bool slb_srv_topic_name(const char *p, int len, char out[SL_TOPIC_NAME_MAX + 1]);
/* Describe the topic named by (p, len); NULL if there is none. */
sl_topic_info *slb_srv_describe(sl_server *s, const char *p, int len);
/* The Kafka error code for a negative SL_E... code. */
int16_t slb_srv_kafka_error(int rc);
/* One line on the server's log (if any), at warn level. */
void slb_srv_log(sl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line on the server's log if its level is at least level (SLB_LOG_*). */
void slb_srv_logl(sl_server *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int slb_k_sasl_handshake(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
int slb_k_sasl_authenticate(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);
/* A raw SASL token (p, n: after its length prefix) after a v0 handshake:
 * appends the raw answer to c->out. Returns 0, or SL_EPERM (authentication
 * failed: close now; the reason is logged) or SL_ENOMEM. */
int slb_sasl_raw(sl_server *s, slb_conn *c, const uint8_t *p, size_t n);
/* Free c's SASL exchange state. */
void slb_sasl_free(slb_conn *c);

#endif
