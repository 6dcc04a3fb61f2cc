/*
 * connectors/broker/server.c - the built-in broker speaks Kafka: a
 * single-threaded epoll server over a broker directory (sluice/server.h is
 * its public face, through connector_server.c). This file is the event
 * loop, the connections, the framing and the dispatch; the request handlers
 * live in kapi_*.c (server_int.h lists them and their contract), the wire
 * encoding in kwire.h.
 *
 * Event loop: one listening socket, one eventfd (sl_server_stop writes it;
 * async-signal-safe), and non-blocking client sockets, all level-triggered.
 * Each connection has an input buffer (grown to hold one whole frame, never
 * more than 4 + max_req bytes) and an output: a buffer of bytes with
 * file ranges between them (slb_orange: a Fetch's records, sent by sendfile
 * straight from the segment file; each holds a reference to its file, so a
 * segment deleted meanwhile stays readable until sent). conn_flush sends
 * them in order, bytes by send (MSG_MORE before a range) and ranges by
 * conn_send_range, the one place file bytes leave (a TLS connection preads
 * and encrypts there); a response's length prefix counts its ranges.
 * Requests of a connection are handled one at a time, in the order they
 * came, and each answer is appended to the output before the next request is
 * read, so answers leave in request order (Kafka's guarantee per
 * connection). While a connection's output (bytes and ranges) holds more
 * than OUT_HIGH bytes its input is not read (the client is slow to read: it
 * is not allowed to grow us without bound). A request whose handler parks it
 * (a Fetch that finds less than its min_bytes) waits at the head of its
 * connection until slb_srv_wake or its deadline, and is then handled again;
 * the requests after it on its connection wait with it, so the order holds.
 * A frame whose length prefix is negative or above max_req, or whose
 * header cannot be parsed, or whose body does not parse as the request its
 * header names, closes that connection only (one line on the log); every
 * other connection goes on. Once a second the loop lets the transaction
 * coordinator abort timed-out transactions (slb_k_txn_tick, kapi_txn.c;
 * its one call is in slb_server_run). A test-only hook
 * (slb_server_set_fault_drop) closes a connection at random right after a
 * request was handled, its answer unsent, as a lost connection does.
 *
 * Framing (all integers big-endian, as everywhere on Kafka's wire):
 *
 *   request:  int32 length | int16 api_key | int16 api_version |
 *             int32 correlation_id | string client_id (int16 length, -1
 *             null) | body
 *   response: int32 length | int32 correlation_id | body
 *
 * Only non-flexible versions are advertised (table `apis` below), so the
 * request header is always v1 and the response header v0; flexible
 * requests (header v2, tagged fields) are only ever answered with an error,
 * which needs the correlation id alone (it precedes the tagged fields).
 *
 * Ownership: open records the server in DIR/.server.PID (srvfile.c: pid
 * and address, under flock while we serve, removed at close), so that an
 * embedded writer refused by a partition lock we hold is told to produce
 * through us. Partition writers are opened lazily, at a partition's first
 * Produce: the lock is the one source of truth for who writes a partition,
 * an in-process pipeline may go on writing its own topics next to a server
 * that serves them to readers, and start-up does not recover every
 * partition of the directory. *
 * Answers to what is not served:
 *   - ApiVersions at an unsupported version: the v0 layout, error 35
 *     UNSUPPORTED_VERSION, and the full table (so the client retries lower),
 *     as Kafka does;
 *   - any other unsupported version, or an unknown api key: the response
 *     header and one int16 error code 35. Kafka closes the connection
 *     instead; we never drop a connection for a request we merely do not
 *     serve.
 *
 * Security and limits (slb_server_conf):
 *   - bytes move through ktls.h's slb_io_recv/slb_io_send (plain or TLS),
 *     except a plain connection's output in front of a file range (send
 *     with MSG_MORE) and the range itself (sendfile); a TLS read or write that waits for the other direction sets
 *     c->io_want, which conn_arm adds to the epoll interest, and bytes
 *     OpenSSL already decrypted are read in conn_service (epoll cannot see
 *     them);
 *   - with users (SASL), a connection is unauthenticated until
 *     kapi_sasl.c says otherwise: only ApiVersions, SaslHandshake and
 *     SaslAuthenticate are dispatched, anything else closes it (as Kafka
 *     does), its frames may not exceed UNAUTH_REQ_MAX, and after a v0
 *     handshake its frames are raw SASL tokens; a failed authentication
 *     sets c->closing: the answer is sent, nothing more is read, then the
 *     connection is closed;
 *   - a frame above max_req (--max-request-bytes) closes its connection;
 *     the input buffer holds at most one frame plus one read, and is freed
 *     when empty above SHRINK_ABOVE;
 *   - at most max_conns connections: more are accepted and closed at once;
 *     out of descriptors (EMFILE), the listener is disarmed until one
 *     closes (level-triggered epoll would spin otherwise);
 *   - a connection with a partial frame, an unfinished TLS handshake or no
 *     authentication yet that receives nothing for idle_ms is closed
 *     (checked by sweep_idle, every quarter of idle_ms, at most every
 *     second);
 *   - log levels: warn (default) one line per client disconnected for a
 *     protocol or authentication failure; info adds idle, refused and TLS
 *     failures and authentications; debug one line per connection and
 *     request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/base/net.h"
#include "connectors/broker/kgroup.h"
#include "connectors/broker/server_int.h"
#include "connectors/broker/srvfile.h"

#define OUT_HIGH   (16 * 1024 * 1024) /* stop reading a client whose output is above this */
#define READ_CHUNK 65536

static int api_versions(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver);

/* What the server answers: api key, lowest and highest version (all
 * non-flexible), handler. */
static const struct {
    int16_t key, min, max;
    slb_khandler fn;
} apis[] = {
    {KAPI_PRODUCE, 3, 7, slb_k_produce},
    {KAPI_FETCH, 4, 10, slb_k_fetch},
    {KAPI_LIST_OFFSETS, 0, 5, slb_k_list_offsets},
    {KAPI_METADATA, 0, 8, slb_k_metadata},
    {KAPI_FIND_COORDINATOR, 0, 2, slb_k_find_coordinator},
    {KAPI_OFFSET_COMMIT, 0, 7, slb_k_offset_commit},
    {KAPI_OFFSET_FETCH, 0, 5, slb_k_offset_fetch},
    {KAPI_JOIN_GROUP, 0, 5, slb_k_join_group},
    {KAPI_HEARTBEAT, 0, 3, slb_k_heartbeat},
    {KAPI_LEAVE_GROUP, 0, 3, slb_k_leave_group},
    {KAPI_SYNC_GROUP, 0, 3, slb_k_sync_group},
    {KAPI_DESCRIBE_GROUPS, 0, 4, slb_k_describe_groups},
    {KAPI_LIST_GROUPS, 0, 2, slb_k_list_groups},
    {KAPI_VERSIONS, 0, 2, api_versions},
    {KAPI_SASL_HANDSHAKE, 0, 1, slb_k_sasl_handshake},
    {KAPI_SASL_AUTHENTICATE, 0, 1, slb_k_sasl_authenticate},
    {KAPI_CREATE_TOPICS, 0, 4, slb_k_create_topics},
    {KAPI_DELETE_TOPICS, 0, 3, slb_k_delete_topics},
    {KAPI_INIT_PRODUCER_ID, 0, 1, slb_k_init_producer_id},
    {KAPI_ADD_PARTITIONS_TO_TXN, 0, 2, slb_k_add_partitions_to_txn},
    {KAPI_ADD_OFFSETS_TO_TXN, 0, 2, slb_k_add_offsets_to_txn},
    {KAPI_END_TXN, 0, 2, slb_k_end_txn},
    {KAPI_TXN_OFFSET_COMMIT, 0, 2, slb_k_txn_offset_commit},
};
#define NAPIS (sizeof apis / sizeof apis[0])

/* ---- small helpers ------------------------------------------------------- */

static void seterr(sl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(sl_server *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
}

/* ---- ApiVersions --------------------------------------------------------- */

static void versions_body(kwr *w, int16_t ver, int16_t error)
{
    kwr_i16(w, error);
    kwr_i32(w, (int32_t)NAPIS);
    for (size_t i = 0; i < NAPIS; i++) {
        kwr_i16(w, apis[i].key);
        kwr_i16(w, apis[i].min);
        kwr_i16(w, apis[i].max);
    }
    if (ver >= 1) kwr_i32(w, 0); /* throttle_time_ms */
}

static int api_versions(sl_server *s, slb_conn *c, krd *r, kwr *w, int16_t ver)
{
    (void)s, (void)c, (void)r; /* v0-2 bodies carry nothing we need */
    versions_body(w, ver, KE_NONE);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int handle_one(sl_server *s, slb_conn *c, krd *rp, int16_t key, int16_t ver, int32_t corr);

/* Answer the request frame (p, n: after the length prefix) on c. Returns a
 * handler's result (server_int.h): 0, SLB_K_PARK (nothing written),
 * SL_EPARSE (malformed: close the connection), SL_EPERM (a request other
 * than ApiVersions and SASL's before authentication: close, logged) or
 * SL_ENOMEM. At log level debug, one line per request. */
static int handle(sl_server *s, slb_conn *c, const uint8_t *p, size_t n)
{
    krd r = {p, p + n, false};
    int16_t key = krd_i16(&r), ver = krd_i16(&r);
    int32_t corr = krd_i32(&r);
    if (r.bad) return SL_EPARSE;
    if (!c->authed && key != KAPI_VERSIONS && key != KAPI_SASL_HANDSHAKE &&
        key != KAPI_SASL_AUTHENTICATE) {
        slb_srv_logl(s, SLB_LOG_WARN,
                     "sluice broker serve: client %s: api %d before authentication; "
                     "disconnected\n",
                     c->peer, key);
        return SL_EPERM;
    }
    if (s->wildcard) /* advertise what this client reached */
        snprintf(s->host, sizeof s->host, "%s", c->local);
    if (s->log_level < SLB_LOG_DEBUG) return handle_one(s, c, &r, key, ver, corr);
    krd idr = r;
    int idl = 0;
    const char *id = krd_str(&idr, &idl);
    int64_t t0 = mono_us();
    int rc = handle_one(s, c, &r, key, ver, corr);
    slb_srv_logl(s, SLB_LOG_DEBUG,
                 "sluice broker serve: client %s (%.*s): api %d v%d corr %d: %s, %lld us\n",
                 c->peer, idr.bad || idl < 0 ? 0 : (idl > 64 ? 64 : idl), id ? id : "", key, ver,
                 corr,
                 rc == 0            ? "answered"
                 : rc == SLB_K_PARK ? "waits"
                                    : sl_strerror(rc),
                 (long long)(mono_us() - t0));
    return rc;
}

static int handle_one(sl_server *s, slb_conn *c, krd *rp, int16_t key, int16_t ver, int32_t corr)
{
    krd r = *rp;
    int supported = -1; /* index in apis if key and version are served */
    for (size_t i = 0; i < NAPIS; i++)
        if (apis[i].key == key && ver >= apis[i].min && ver <= apis[i].max) supported = (int)i;
    kwr w;
    kwr_begin(&w, &c->out, corr);
    if (supported < 0) {
        if (key == KAPI_VERSIONS)
            versions_body(&w, 0, KE_UNSUPPORTED_VERSION);
        else
            kwr_i16(&w, KE_UNSUPPORTED_VERSION);
        return kwr_end(&w);
    }
    int len;
    krd_str(&r, &len); /* client_id */
    if (r.bad) {
        c->out.len = w.start; /* no half-written header left behind */
        return SL_EPARSE;
    }
    size_t nrq0 = c->nrq;
    c->req_extra = 0;
    int rc = apis[supported].fn(s, c, &r, &w, ver);
    if (rc == 0 && (rc = kwr_end(&w)) == 0) {
        /* the file ranges the handler added are part of the response */
        int64_t total = (int64_t)(c->out.len - w.start - 4) + c->req_extra;
        if (total <= INT32_MAX) {
            kput32(c->out.p + w.start, (uint32_t)total);
            return 0;
        }
        rc = SL_ENOMEM;
    }
    while (c->nrq > nrq0) { /* not answered: its ranges go too */
        slb_orange *o = &c->rq[--c->nrq];
        c->rqbytes -= o->len;
        slb_rfile_unref(o->f);
    }
    c->out.len = w.start;
    return rc == SLB_K_SILENT ? 0 : rc;
}

/* The dispatcher without a socket (server_int.h): the fuzz target
 * (tests/fuzz/fuzz_server_request.c) and its corpus replay feed frames here,
 * at the head of c->in as conn_process leaves them (handlers may read the
 * request header there: kapi_group.c's client id). */
int slb_server_handle_frame(sl_server *s, slb_conn *c)
{
    kbuf *in = &c->in;
    if (!in->p || in->len - in->off < 4) return SL_EPARSE;
    uint32_t fl = kbe32(in->p + in->off);
    if (fl > SLB_FRAME_MAX || in->len - in->off - 4 < fl) return SL_EPARSE;
    return handle(s, c, in->p + in->off + 4, fl);
}

/* ---- connections and the loop --------------------------------------------- */

#define SHRINK_ABOVE   (1024 * 1024) /* an empty input buffer above this is freed */
#define UNAUTH_REQ_MAX (512 * 1024)  /* largest frame before authentication (Kafka's too) */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The largest frame c may send now. */
static int32_t frame_limit(const sl_server *s, const slb_conn *c)
{
    return c->authed || s->max_req < UNAUTH_REQ_MAX ? s->max_req : UNAUTH_REQ_MAX;
}

/* Bytes of output not sent yet (buffer and file ranges). */
static int64_t conn_pending(const slb_conn *c)
{
    return (int64_t)(c->out.len - c->out.off) + c->rqbytes;
}

static void conn_close(sl_server *s, slb_conn *c)
{
    slb_kgroup_conn_gone(s, c);
    epoll_ctl(s->efd, EPOLL_CTL_DEL, c->fd, NULL);
    slb_tls_detach(c);
    slb_sasl_free(c);
    close(c->fd);
    for (size_t i = c->rqhead; i < c->nrq; i++) slb_rfile_unref(c->rq[i].f);
    free(c->rq);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->in.p);
    free(c->out.p);
    free(c);
    s->nconns--;
    if (s->accept_paused) { /* a descriptor is free again */
        struct epoll_event el = {.events = EPOLLIN, .data.ptr = &s->lfd};
        if (epoll_ctl(s->efd, EPOLL_CTL_MOD, s->lfd, &el) == 0) s->accept_paused = false;
    }
}

/* Close c after an I/O failure, naming it at log level debug. */
static void conn_lost(sl_server *s, slb_conn *c)
{
    slb_srv_logl(s, c->ssl && strstr(c->io_err, "TLS") ? SLB_LOG_INFO : SLB_LOG_DEBUG,
                 "sluice broker serve: client %s: %s; disconnected\n", c->peer,
                 c->io_err[0] ? c->io_err : "closed");
    conn_close(s, c);
}

static bool can_read(const slb_conn *c)
{
    return !c->closing && conn_pending(c) < OUT_HIGH;
}

/* Arm EPOLLIN while the output is below OUT_HIGH, EPOLLOUT while output
 * is pending, and either as TLS asks (c->io_want). */
static int conn_arm(sl_server *s, slb_conn *c)
{
    bool rdg = can_read(c) || (c->io_want & SLB_IO_WRITE_WANTS_IN);
    bool wrg = conn_pending(c) > 0 || (c->io_want & SLB_IO_READ_WANTS_OUT);
    if (rdg == c->reading && wrg == c->writing) return 0;
    struct epoll_event ev = {.events = (rdg ? EPOLLIN : 0) | (wrg ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(s->efd, EPOLL_CTL_MOD, c->fd, &ev) < 0) return SL_EIO;
    c->reading = rdg;
    c->writing = wrg;
    return 0;
}

/* Send up to len bytes of file f from *off to the socket; the one place
 * file bytes leave: sendfile on a plain connection, pread and slb_io_send on
 * a TLS one (the retry of a write that would block preads the same bytes
 * again, as OpenSSL asks). Returns the bytes sent (0: none now, EAGAIN) or
 * -1 (the connection is gone, or the file is shorter than the range: the
 * response cannot be completed). */
static ssize_t conn_send_range(slb_conn *c, slb_rfile *f, int64_t *off, int64_t len)
{
    if (c->ssl) {
        uint8_t tmp[16384];
        size_t want = len < (int64_t)sizeof tmp ? (size_t)len : sizeof tmp;
        ssize_t got = pread(f->fd, tmp, want, (off_t)*off);
        if (got <= 0) {
            snprintf(c->io_err, sizeof c->io_err, "segment file shorter than a fetched range");
            return -1;
        }
        ssize_t k = slb_io_send(c, tmp, (size_t)got);
        if (k > 0) *off += k;
        return k;
    }
    off_t o = (off_t)*off;
    size_t n = len > (1 << 30) ? (size_t)1 << 30 : (size_t)len;
    for (;;) {
        ssize_t k = sendfile(c->fd, f->fd, &o, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        if (k == 0) return -1; /* end of file inside the range */
        *off = (int64_t)o;
        return k;
    }
}

/* Send what the output holds, as far as the socket takes it: out's bytes
 * (send) and the file ranges between them (conn_send_range), in order.
 * Returns 0 or -1 (the connection is broken; c->io_err says why). */
static int conn_flush(slb_conn *c)
{
    for (;;) {
        bool range = c->rqhead < c->nrq;
        size_t lim = range ? c->rq[c->rqhead].at : c->out.len;
        while (c->out.off < lim) {
            ssize_t k;
            if (range && !c->ssl) { /* MSG_MORE: a file range follows, send them together */
                k = send(c->fd, c->out.p + c->out.off, lim - c->out.off, MSG_NOSIGNAL | MSG_MORE);
                if (k < 0 && errno == EINTR) continue;
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
                if (k < 0) snprintf(c->io_err, sizeof c->io_err, "send: %s", strerror(errno));
            } else {
                k = slb_io_send(c, c->out.p + c->out.off, lim - c->out.off);
                if (k == 0) return 0;
            }
            if (k < 0) return -1;
            c->out.off += (size_t)k;
        }
        if (!range) break;
        slb_orange *o = &c->rq[c->rqhead];
        while (o->len > 0) {
            ssize_t k = conn_send_range(c, o->f, &o->off, o->len);
            if (k < 0) return -1;
            if (k == 0) return 0;
            o->len -= k;
            c->rqbytes -= k;
        }
        slb_rfile_unref(o->f);
        o->f = NULL;
        c->rqhead++;
    }
    c->out.off = c->out.len = 0;
    c->nrq = c->rqhead = 0;
    return 0;
}

/* The test hook's draw (slb_server_set_fault_drop): xorshift64*. */
static bool fault_drop(sl_server *s)
{
    uint64_t x = s->txn.drop_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->txn.drop_rng = x;
    return (x * 2685821657736338717ull >> 33) % 1000 < (uint64_t)s->txn.drop_permille;
}

void slb_server_set_fault_drop(sl_server *s, int permille, uint64_t seed)
{
    s->txn.drop_permille = permille;
    s->txn.drop_rng = seed ? seed : 1;
}

/* Answer every whole frame in c's input (while the output has room).
 * Returns 0 or -1 after closing c. */
static int conn_process(sl_server *s, slb_conn *c)
{
    kbuf *in = &c->in;
    while (!c->parked && !c->closing && in->len - in->off >= 4 && conn_pending(c) < OUT_HIGH) {
        int32_t fl = (int32_t)kbe32(in->p + in->off), lim = frame_limit(s, c);
        if (fl < 0 || fl > lim) {
            slb_srv_log(s,
                        "sluice broker serve: client %s: frame length %d out of range 0..%d%s; "
                        "disconnected\n",
                        c->peer, fl, lim,
                        lim < s->max_req ? " (before authentication)"
                                         : (lim < SLB_FRAME_MAX ? " (--max-request-bytes)" : ""));
            conn_close(s, c);
            return -1;
        }
        if (in->len - in->off < 4 + (size_t)fl) break;
        int rc;
        if (c->sasl == SLB_SASL_RAW && !c->authed) /* a raw token after SaslHandshake v0 */
            rc = slb_sasl_raw(s, c, in->p + in->off + 4, (size_t)fl);
        else
            rc = handle(s, c, in->p + in->off + 4, (size_t)fl);
        if (rc < 0) {
            if (rc != SL_EPERM) /* SL_EPERM: logged where it was found */
                slb_srv_log(s, "sluice broker serve: client %s: %s; disconnected\n", c->peer,
                            rc == SL_EPARSE ? "malformed request" : "out of memory");
            conn_close(s, c);
            return -1;
        }
        if (rc == SLB_K_PARK) {
            c->parked = true;
            if (!c->rewait) c->deadline = mono_ms() + s->park_ms;
            c->rewait = false;
            c->park_gen = s->gen;
            break;
        }
        c->force = false;
        c->rewait = false;
        in->off += 4 + (size_t)fl;
        if (s->txn.drop_permille && fault_drop(s)) {
            slb_srv_log(s, "sluice broker serve: client %s: fault injected; disconnected\n",
                        c->peer);
            conn_close(s, c);
            return -1;
        }
    }
    if (in->off == in->len) in->off = in->len = 0;
    return 0;
}

/* Read what the socket (or TLS) has into c's input and answer whole frames.
 * Returns 0 or -1 after closing c. */
static int conn_read(sl_server *s, slb_conn *c)
{
    kbuf *in = &c->in;
    if (in->off > 0 && in->off == in->len) in->off = in->len = 0;
    if (in->len == 0 && in->cap > SHRINK_ABOVE) { /* a big request is done: give it back */
        free(in->p);
        in->p = NULL;
        in->cap = 0;
    }
    if (in->off > 0 && in->cap - in->len < READ_CHUNK) { /* slide to the front */
        memmove(in->p, in->p + in->off, in->len - in->off);
        in->len -= in->off;
        in->off = 0;
    }
    size_t want = READ_CHUNK;
    if (in->len - in->off >= 4) { /* room for the whole frame, up to its limit */
        int32_t fl = (int32_t)kbe32(in->p + in->off);
        if (fl >= 0 && fl <= frame_limit(s, c) && 4 + (size_t)fl > in->len - in->off)
            want = 4 + (size_t)fl - (in->len - in->off);
        if (want > (size_t)4 << 20) want = (size_t)4 << 20;
        if (want < 16384 && c->ssl) want = 16384; /* one whole TLS record */
    }
    if (kbuf_reserve(in, want) < 0) {
        slb_srv_log(s, "sluice broker serve: client %s: out of memory; disconnected\n", c->peer);
        conn_close(s, c);
        return -1;
    }
    ssize_t k = slb_io_recv(c, in->p + in->len, in->cap - in->len);
    if (k == 0) return 0;
    if (k < 0) {
        conn_lost(s, c);
        return -1;
    }
    in->len += (size_t)k;
    c->last_rx = mono_ms();
    return conn_process(s, c);
}

/* After input was read or output drained: answer what is whole, send, read
 * what TLS already holds, re-arm. Returns 0 or -1 after closing c. */
static int conn_service(sl_server *s, slb_conn *c)
{
    for (;;) {
        if (conn_flush(c) < 0) {
            conn_lost(s, c);
            return -1;
        }
        if (conn_process(s, c) < 0) return -1;
        if (conn_flush(c) < 0) {
            conn_lost(s, c);
            return -1;
        }
        if (c->closing && c->out.off == c->out.len) { /* the last answer is out */
            conn_close(s, c);
            return -1;
        }
        if (c->parked || !slb_io_pending(c) || !can_read(c)) break;
        if (conn_read(s, c) < 0) return -1;
    }
    if (conn_arm(s, c) < 0) {
        conn_close(s, c);
        return -1;
    }
    return 0;
}

static void accept_all(sl_server *s)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(s->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && !s->accept_paused) {
                /* level-triggered: stop listening until a connection closes */
                struct epoll_event el = {.events = 0, .data.ptr = &s->lfd};
                if (epoll_ctl(s->efd, EPOLL_CTL_MOD, s->lfd, &el) == 0) s->accept_paused = true;
                slb_srv_logl(s, SLB_LOG_WARN,
                             "sluice broker serve: out of file descriptors at %d connections; "
                             "new ones wait until one closes\n",
                             s->nconns);
            }
            return; /* EAGAIN, or a transient error: the next event retries */
        }
        char host[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
            port = ntohs(a->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
            port = ntohs(a->sin6_port);
        }
        if (s->nconns >= s->max_conns) {
            slb_srv_logl(s, SLB_LOG_INFO,
                         "sluice broker serve: client %s:%d refused: %d connections already "
                         "(--max-connections)\n",
                         host, port, s->nconns);
            close(fd);
            continue;
        }
        slb_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->authed = s->users.n == 0;
        c->last_rx = mono_ms();
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
        if (s->wildcard) {
            struct sockaddr_storage la;
            socklen_t ll = sizeof la;
            snprintf(c->local, sizeof c->local, "127.0.0.1");
            if (getsockname(fd, (struct sockaddr *)&la, &ll) == 0) {
                if (la.ss_family == AF_INET)
                    inet_ntop(AF_INET, &((struct sockaddr_in *)&la)->sin_addr, c->local,
                              sizeof c->local);
                else if (la.ss_family == AF_INET6)
                    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&la)->sin6_addr, c->local,
                              sizeof c->local);
            }
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if ((s->tls && slb_tls_attach(s->tls, c) < 0) ||
            epoll_ctl(s->efd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            slb_tls_detach(c);
            close(fd);
            free(c);
            continue;
        }
        c->reading = true;
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        slb_srv_logl(s, SLB_LOG_DEBUG, "sluice broker serve: client %s connected%s\n", c->peer,
                     c->ssl ? " (TLS)" : "");
    }
}

/* Handle again the parked fetches whose wait is over (an append since, or
 * the deadline); returns the epoll timeout until the next deadline (-1:
 * none parked). */
static int wake_parked(sl_server *s)
{
    int64_t now = mono_ms(), next = -1;
    slb_conn *c = s->conns;
    while (c) {
        slb_conn *nx = c->next; /* c may be closed below */
        if (c->parked && (c->park_gen != s->gen || now >= c->deadline)) {
            c->parked = false;
            c->force = now >= c->deadline;
            c->rewait = !c->force;
            conn_service(s, c);
        } else if (c->parked) {
            int64_t left = c->deadline - now;
            if (next < 0 || left < next) next = left;
        }
        c = nx;
    }
    /* conn_process may have parked again (nothing new for it yet) */
    for (c = s->conns; c; c = c->next)
        if (c->parked) {
            int64_t left = c->deadline - now;
            if (left < 0) left = 0;
            if (next < 0 || left < next) next = left;
        }
    return next < 0 ? -1 : (int)(next > 60000 ? 60000 : next);
}

/* True if c's input holds the start of a frame but not all of it. */
static bool partial(const slb_conn *c)
{
    size_t avail = c->in.len - c->in.off;
    if (avail == 0) return false;
    if (avail < 4) return true;
    int32_t fl = (int32_t)kbe32(c->in.p + c->in.off);
    return fl >= 0 && avail < 4 + (size_t)fl;
}

/* Close the connections that stopped mid-request, mid-handshake or before
 * authenticating for s->idle_ms (checked every quarter of it, at most every
 * second); returns the epoll timeout until the next check (-1: none). */
static int sweep_idle(sl_server *s)
{
    if (s->idle_ms <= 0) return -1;
    int64_t now = mono_ms();
    if (now >= s->next_sweep) {
        slb_conn *c = s->conns;
        while (c) {
            slb_conn *nx = c->next;
            bool waiting = partial(c) || !c->authed || slb_io_handshaking(c);
            if (waiting && now - c->last_rx >= s->idle_ms) {
                slb_srv_logl(s, SLB_LOG_INFO,
                             "sluice broker serve: client %s: nothing received for %d ms %s; "
                             "disconnected\n",
                             c->peer, (int)(now - c->last_rx),
                             partial(c)              ? "in the middle of a request"
                             : slb_io_handshaking(c) ? "during the TLS handshake"
                                                     : "before authenticating");
                conn_close(s, c);
            }
            c = nx;
        }
        int32_t step = s->idle_ms / 4;
        s->next_sweep = now + (step < 10 ? 10 : step > 1000 ? 1000 : step);
    }
    return (int)(s->next_sweep - now);
}

int slb_server_run(sl_server *s)
{
    if (!s || s->efd < 0) return SL_EINVAL;
    struct epoll_event evs[64];
    for (;;) {
        /* the wait ends at the first of: a parked request's deadline, the idle
         * sweep, the group coordinator's timers (kgroup.c), the transaction
         * coordinator's timeout check (kapi_txn.c) */
        int t = wake_parked(s), ti = sweep_idle(s);
        if (ti >= 0 && (t < 0 || ti < t)) t = ti;
        int n = epoll_wait(s->efd, evs, 64, slb_k_txn_tick(s, slb_kgroup_tick(s, t)));
        if (n < 0) {
            if (errno == EINTR) continue;
            seterr(s, "epoll_wait: %s", strerror(errno));
            return SL_EIO;
        }
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &s->sfd) {
                uint64_t v;
                if (read(s->sfd, &v, sizeof v) < 0) { /* drained either way */
                }
                return 0;
            }
            if (ptr == &s->lfd) {
                accept_all(s);
                continue;
            }
            slb_conn *c = ptr;
            uint32_t e = evs[i].events;
            bool rd = (e & (EPOLLERR | EPOLLHUP)) ||
                      (can_read(c) &&
                       ((e & EPOLLIN) || ((e & EPOLLOUT) && (c->io_want & SLB_IO_READ_WANTS_OUT))));
            if (rd && conn_read(s, c) < 0) continue;
            conn_service(s, c);
        }
    }
}

/* ---- open and close ------------------------------------------------------- */

void slb_server_conf_init(slb_server_conf *conf)
{
    memset(conf, 0, sizeof *conf);
    conf->max_request_bytes = SLB_FRAME_MAX;
    conf->max_connections = SLB_MAX_CONNECTIONS;
    conf->idle_timeout_ms = SLB_IDLE_TIMEOUT_MS;
    conf->log_level = SLB_LOG_WARN;
}

int slb_server_open(sl_server **out, sl_broker *b, const char *addr)
{
    slb_server_conf conf;
    slb_server_conf_init(&conf);
    conf.listen = addr;
    return slb_server_open_conf(out, b, &conf);
}

/* Raise the soft limit on open files to the hard one (each connection is a
 * descriptor); warn if it still holds fewer than the connections allowed. */
static void raise_nofile(sl_server *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)s->max_conns + 64)
        slb_srv_logl(s, SLB_LOG_WARN,
                     "sluice broker serve: the open-file limit (%llu) is below --max-connections "
                     "%d: connections beyond it wait\n",
                     (unsigned long long)rl.rlim_cur, s->max_conns);
}

int slb_server_open_conf(sl_server **out, sl_broker *b, const slb_server_conf *conf)
{
    int rc = SL_EINVAL;
    struct addrinfo *ai = NULL;
    sl_server *s = calloc(1, sizeof *s);
    *out = s;
    if (!s) return SL_ENOMEM;
    s->lfd = s->efd = s->sfd = s->srvfd = -1;
    s->b = b;
    slb_server_conf defaults;
    if (!conf) {
        slb_server_conf_init(&defaults);
        conf = &defaults;
    }
    const char *addr = conf->listen ? conf->listen : "127.0.0.1:9092";
    s->log = conf->log;
    s->log_level = conf->log_level;
    s->max_req = conf->max_request_bytes;
    s->max_conns = conf->max_connections;
    s->idle_ms = conf->idle_timeout_ms;
    if (s->log_level < SLB_LOG_ERROR || s->log_level > SLB_LOG_DEBUG) {
        seterr(s, "log level %d is not one of error, warn, info, debug (0..3)", s->log_level);
        goto fail;
    }
    if (s->max_req < 64 || s->max_req > SLB_FRAME_MAX) {
        seterr(s, "max request bytes %d out of range 64..%d", s->max_req, SLB_FRAME_MAX);
        goto fail;
    }
    if (s->max_conns < 1) {
        seterr(s, "max connections %d must be at least 1", s->max_conns);
        goto fail;
    }
    if (s->idle_ms < 0) {
        seterr(s, "idle timeout %d ms must be 0 (none) or more", s->idle_ms);
        goto fail;
    }
    if (!conf->tls_cert != !conf->tls_key) {
        seterr(s, "TLS needs both a certificate and a key file (--tls-cert and --tls-key)");
        goto fail;
    }
    if (conf->tls_cert &&
        (rc = slb_tls_open(&s->tls, conf->tls_cert, conf->tls_key, s->err, sizeof s->err)) < 0)
        goto fail;
    if (conf->sasl_users) {
        bool world = false;
        if ((rc = slb_users_load(&s->users, conf->sasl_users, &world, s->err, sizeof s->err)) < 0)
            goto fail;
        if (world)
            slb_srv_logl(s, SLB_LOG_WARN,
                         "sluice broker serve: warning: users file '%s' is readable by every "
                         "user (chmod 600 it)\n",
                         conf->sasl_users);
    }
    rc = SL_EINVAL;
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!b || !colon || hl == 0 || hl >= sizeof s->host || !colon[1] || *end || port < 0 ||
        port > 65535) {
        seterr(s, "listen address '%s' is not HOST:PORT (PORT 0..65535)", addr);
        goto fail;
    }
    memcpy(s->host, addr, hl);
    s->host[hl] = 0;
    if (s->host[0] == '[' && s->host[hl - 1] == ']') { /* [::1] */
        memmove(s->host, s->host + 1, hl - 2);
        s->host[hl - 2] = 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int g = getaddrinfo(s->host, colon + 1, &hints, &ai);
    if (g != 0) {
        seterr(s, "listen address '%s': %s", addr, gai_strerror(g));
        goto fail;
    }
    if (ai->ai_family == AF_INET)
        s->wildcard = ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr == htonl(INADDR_ANY);
    else if (ai->ai_family == AF_INET6)
        s->wildcard = IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
    if (!sli_is_loopback(ai->ai_addr) && s->users.n == 0) {
        seterr(s,
               "listen address '%s' is not a loopback address; without authentication "
               "(--sasl-users) the server listens on loopback only",
               addr);
        goto fail;
    }
    rc = SL_EIO;
    s->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(s->lfd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(s->lfd, 128) < 0) {
        seterr(s, "cannot listen on %s: %s", addr, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    if (getsockname(s->lfd, (struct sockaddr *)&sa, &sl) < 0) {
        seterr(s, "getsockname: %s", strerror(errno));
        goto fail;
    }
    s->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                            : ((struct sockaddr_in6 *)&sa)->sin6_port);
    if ((s->srvfd = slb_srvfile_claim(sl_broker_dir(b), s->host, s->port, s->err, sizeof s->err)) <
        0) {
        rc = s->srvfd;
        goto fail;
    }
    s->efd = epoll_create1(EPOLL_CLOEXEC);
    s->sfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = &s->lfd};
    struct epoll_event es = {.events = EPOLLIN, .data.ptr = &s->sfd};
    if (s->efd < 0 || s->sfd < 0 || epoll_ctl(s->efd, EPOLL_CTL_ADD, s->lfd, &el) < 0 ||
        epoll_ctl(s->efd, EPOLL_CTL_ADD, s->sfd, &es) < 0) {
        seterr(s, "event loop: %s", strerror(errno));
        goto fail;
    }
    freeaddrinfo(ai);
    raise_nofile(s);
    return 0;
fail:
    if (ai) freeaddrinfo(ai);
    slb_tls_free(s->tls);
    s->tls = NULL;
    slb_users_free(&s->users);
    if (s->lfd >= 0) close(s->lfd);
    if (s->efd >= 0) close(s->efd);
    if (s->sfd >= 0) close(s->sfd);
    if (s->srvfd >= 0) slb_srvfile_release(sl_broker_dir(b), s->srvfd);
    s->lfd = s->efd = s->sfd = s->srvfd = -1;
    return rc;
}

int slb_server_port(const sl_server *s)
{
    return s ? s->port : -1;
}

void slb_server_set_log(sl_server *s, FILE *log)
{
    if (s) s->log = log;
}

void slb_server_stop(sl_server *s)
{
    uint64_t one = 1;
    if (s && s->sfd >= 0 && write(s->sfd, &one, sizeof one) < 0) {
        /* already signalled (counter full): the loop will see it */
    }
}

void slb_server_close(sl_server *s)
{
    if (!s) return;
    while (s->conns) conn_close(s, s->conns);
    if (s->srvfd >= 0) slb_srvfile_release(sl_broker_dir(s->b), s->srvfd);
    slb_kgroups_free(s->kg);
    slb_k_txn_close(s);
    if (s->lfd >= 0) close(s->lfd);
    if (s->efd >= 0) close(s->efd);
    if (s->sfd >= 0) close(s->sfd);
    free(s->recs);
    free(s->hdrs);
    free(s->zbuf);
    free(s->kb.p);
    slb_tls_free(s->tls);
    slb_users_free(&s->users);
    free(s->rawcur);
    free(s);
}

int slb_server_user_add(const char *path, const char *user, const char *password, char *err,
                        size_t errlen)
{
    return slb_users_add(path, user, password, err, errlen);
}

const char *slb_server_errmsg(const sl_server *s)
{
    return s ? s->err : "out of memory";
}
