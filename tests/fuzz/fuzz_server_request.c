/*
 * tests/fuzz/fuzz_server_request.c - libFuzzer target for the Kafka-protocol
 * server's request decoder: the request header, the dispatch table and every
 * handler behind it (connectors/broker/server.c, kapi_*.c), without sockets.
 *
 * Input: the bytes a client sends on one connection, a framed stream:
 *
 *   offset  size  field
 *   ------  ----  -------------------------------------------------------
 *        0     4  length L            int32, big-endian
 *        4     L  request frame       header v1 (api_key, api_version,
 *                                     correlation_id, client_id) + body
 *      4+L     .  the next frame, and so on
 *
 * Why whole streams rather than one frame: a session is a sequence (Produce
 * then Fetch, JoinGroup then SyncGroup, InitProducerId then an idempotent
 * Produce), and the state a request leaves is what the next one trips over;
 * the seeds are also real client sessions byte for byte. The stream is cut
 * into frames by the rule of server.c's conn_process (a length prefix below
 * 0 or above SLB_FRAME_MAX closes the connection; a partial last frame waits
 * for bytes that never come), and each frame goes, alone in the input
 * buffer of a connection without a socket, to slb_server_handle_frame, the
 * server's own dispatcher: a request of an api
 * added to the dispatch table later is reached with no change here.
 *
 * Each run starts from the same state, so a crash reproduces from its input
 * alone: a broker in a temporary directory (topic "t" of 3 partitions,
 * empty; topic "u" of 1 partition holding 3 records) and a server over it
 * (listening on a free loopback port, never accepting). They are kept for
 * the next run when a run left the log as it found it and called only apis
 * that keep no other state (most inputs: malformed or read-only), and built
 * again in a new directory otherwise. Invariants, checked per frame (a
 * violation aborts, which libFuzzer reports as a crash):
 *
 *   - no crash, leak or undefined behaviour (ASan + UBSan);
 *   - answered (0): exactly one response frame was appended, its length
 *     prefix matches its size (its bytes and the file ranges a zero-copy
 *     Fetch adds), and it echoes the request's correlation id;
 *     no frame at all only for Produce (acks=0);
 *   - parked (a Fetch below min_bytes): handled again as at its deadline,
 *     it must answer and not park again;
 *   - malformed (SL_EPARSE, SL_ENOMEM, SL_EPERM before authentication: the
 *     server closes the connection):
 *     nothing appended to the output, and the log unchanged: the topics and
 *     every partition's first and next offset are as before the frame.
 *
 * fuzz_server_run() is also the entry point of the corpus replay,
 * tests/unit/test_server_fuzz_corpus.c, which checks each seed's verdict
 * (named by its file) and writes the seeds with --generate.
 *
 * Build: tests/fuzz/build.sh (clang -fsanitize=fuzzer,address,undefined).
 */
#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connectors/broker/server_int.h"
#include "sluice/broker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_PARTS 256 /* partitions remembered by a log snapshot */

typedef struct fuzz_srv_result {
    int frames;            /* whole frames handled */
    int answered;          /* response frames written */
    int silent;            /* frames answered with nothing (Produce acks=0) */
    int parked;            /* frames that parked first */
    bool closed;           /* the server would close the connection */
    int close_rc;          /* why: SL_EPARSE, SL_ENOMEM, or SL_ERANGE (length prefix) */
    bool partial;          /* the stream ended inside a frame */
    long appended;         /* records added to the log by the whole stream */
    const char *violation; /* NULL, or the invariant broken */
} fuzz_srv_result;

/* What a malformed frame must not change: per partition, its first and next
 * offset, in the order of sl_topic_list (sorted); topics by a hash of their
 * names. */
typedef struct fz_snap {
    size_t n;
    int64_t first[FZ_MAX_PARTS], next[FZ_MAX_PARTS];
    uint64_t names;
    size_t topics;
    long records;
} fz_snap;

static void fz_die(const char *what)
{
    fprintf(stderr, "fuzz_server_request: %s\n", what);
    abort();
}

static int fz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void fz_snapshot(sl_broker *b, fz_snap *sn)
{
    memset(sn, 0, sizeof *sn);
    sn->names = 1469598103934665603ULL;
    char **names = NULL;
    size_t count = 0;
    if (sl_topic_list(b, &names, &count) < 0) fz_die("sl_topic_list");
    sn->topics = count;
    for (size_t i = 0; i < count; i++) {
        for (const char *q = names[i]; *q; q++)
            sn->names = (sn->names ^ (uint8_t)*q) * 1099511628211ULL;
        sn->names = (sn->names ^ 0xff) * 1099511628211ULL;
        sl_topic_info *ti = NULL;
        if (sl_topic_describe(b, names[i], &ti) < 0) continue; /* being deleted */
        for (int32_t p = 0; p < ti->partition_count && sn->n < FZ_MAX_PARTS; p++, sn->n++) {
            sn->first[sn->n] = ti->partitions[p].first_offset;
            sn->next[sn->n] = ti->partitions[p].next_offset;
            sn->records += (long)(ti->partitions[p].next_offset - ti->partitions[p].first_offset);
        }
        sl_topic_info_free(ti);
    }
    sl_topic_list_free(names, count);
}

static bool fz_same(const fz_snap *a, const fz_snap *b)
{
    return a->n == b->n && a->names == b->names && a->topics == b->topics &&
           !memcmp(a->first, b->first, a->n * sizeof a->first[0]) &&
           !memcmp(a->next, b->next, a->n * sizeof a->next[0]);
}

/* Forget c's output: the bytes and the file ranges (their references). */
static void fz_drop_output(slb_conn *c)
{
    for (size_t i = 0; i < c->nrq; i++) slb_rfile_unref(c->rq[i].f);
    c->nrq = c->rqhead = 0;
    c->rqbytes = c->req_extra = 0;
    c->out.len = c->out.off = 0;
}

/* The frame at the head of c->in (p, n: after its length prefix) on
 * connection c; fills res and returns false when the connection would be
 * closed or an invariant broke. */
static bool fz_frame(sl_server *s, slb_conn *c, const uint8_t *p, size_t n, fuzz_srv_result *res)
{
    fz_snap before, after;
    fz_snapshot(s->b, &before);
    fz_drop_output(c);
    int16_t key = n >= 2 ? (int16_t)kbe16(p) : -1;
    int rc = slb_server_handle_frame(s, c);
    res->frames++;
    if (rc == SLB_K_PARK) {
        res->parked++;
        if (c->out.len != 0 || c->nrq != 0) {
            res->violation = "a parked request left bytes in the output";
            return false;
        }
        c->force = true; /* its deadline */
        rc = slb_server_handle_frame(s, c);
        c->force = false;
        if (rc == SLB_K_PARK) {
            res->violation = "a request parked again at its deadline";
            return false;
        }
    }
    if (rc < 0) {
        res->closed = true;
        res->close_rc = rc;
        if (rc != SL_EPARSE && rc != SL_ENOMEM && rc != SL_EPERM) {
            res->violation = "a handler failed with a code other than SL_EPARSE, SL_EPERM or "
                             "SL_ENOMEM";
            return false;
        }
        if (c->out.len != 0 || c->nrq != 0) {
            res->violation = "a malformed request left bytes in the output";
            return false;
        }
        fz_snapshot(s->b, &after);
        if (!fz_same(&before, &after)) res->violation = "a malformed request changed the log";
        return false;
    }
    if (rc != 0) {
        res->violation = "a handler returned an unknown code";
        return false;
    }
    if (c->out.len == 0 && c->nrq == 0) {
        if (key != KAPI_PRODUCE) {
            res->violation = "a request other than Produce (acks=0) got no answer";
            return false;
        }
        res->silent++;
        return true;
    }
    int64_t ranges = 0; /* zero-copy Fetch: file ranges sent after the bytes */
    for (size_t i = 0; i < c->nrq; i++) {
        if (c->rq[i].at > c->out.len || c->rq[i].len < 0) {
            res->violation = "a file range of the response is out of its place";
            return false;
        }
        ranges += c->rq[i].len;
    }
    if (c->out.len < 8 || (int64_t)kbe32(c->out.p) != (int64_t)c->out.len - 4 + ranges) {
        res->violation = "the response's length prefix does not match its size";
        return false;
    }
    if (n < 8 || kbe32(c->out.p + 4) != kbe32(p + 4)) {
        res->violation = "the response does not echo the correlation id";
        return false;
    }
    res->answered++;
    return true;
}

/* The broker and server of the runs, and the log they start from. */
static char fz_dir[512];
static sl_broker *fz_b;
static sl_server *fz_s;
static fz_snap fz_initial;

static void fz_teardown(void)
{
    if (!fz_s) return;
    slb_server_close(fz_s);
    if (sl_broker_close(fz_b) != 0) fz_die("sl_broker_close");
    nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
    fz_s = NULL;
    fz_b = NULL;
}

static void fz_setup(void)
{
    if (fz_s) return;
    static bool registered;
    if (!registered) atexit(fz_teardown);
    registered = true;
    const char *tmp = getenv("TMPDIR");
    snprintf(fz_dir, sizeof fz_dir, "%s/fuzz-server-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fz_dir)) fz_die("mkdtemp");
    if (sl_broker_open(&fz_b, fz_dir, 0) != 0) fz_die("sl_broker_open");
    sl_topic_conf tc;
    sl_topic_conf_init(&tc);
    tc.partitions = 3;
    if (sl_topic_create(fz_b, "t", &tc) != 0) fz_die("sl_topic_create t");
    tc.partitions = 1;
    if (sl_topic_create(fz_b, "u", &tc) != 0) fz_die("sl_topic_create u");
    sl_record recs[3] = {
        {.key = "k0", .key_len = 2, .value = "v0", .value_len = 2, .timestamp = 1000},
        {.key = NULL, .value = "v1", .value_len = 2, .timestamp = 1001},
        {.key = "k2", .key_len = 2, .value = NULL, .timestamp = 1002},
    };
    if (sl_log_append(fz_b, "u", 0, recs, 3, NULL) != 0) fz_die("sl_log_append");
    if (slb_server_open(&fz_s, fz_b, "127.0.0.1:0") != 0) fz_die(slb_server_errmsg(fz_s));
    fz_snapshot(fz_b, &fz_initial);
}

/* Whether api key leaves no state behind but what the log shows (the apis
 * served when this target was written; any other, e.g. a group's, makes
 * the next run start from a fresh directory). */
static bool fz_stateless(int16_t key)
{
    return key == KAPI_PRODUCE || key == KAPI_FETCH || key == KAPI_LIST_OFFSETS ||
           key == KAPI_METADATA || key == KAPI_FIND_COORDINATOR || key == KAPI_VERSIONS;
}

/* Each run starts from the same state: the broker and server are kept from
 * the previous run only if it left the log as it found it and called only
 * stateless apis; else they are rebuilt in a new directory. */
static void fuzz_server_run(const uint8_t *data, size_t size, fuzz_srv_result *res)
{
    memset(res, 0, sizeof *res);
    fz_setup();
    sl_server *s = fz_s;
    bool reset = false;
    slb_conn c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    c.authed = s->users.n == 0; /* as accept_all: no SASL users, no authentication */
    snprintf(c.peer, sizeof c.peer, "fuzz");
    size_t at = 0;
    while (size - at >= 4) {
        int32_t fl = (int32_t)kbe32(data + at);
        if (fl < 0 || fl > SLB_FRAME_MAX) { /* as conn_process */
            res->closed = true;
            res->close_rc = SL_ERANGE;
            break;
        }
        if (size - at - 4 < (size_t)fl) break;
        /* The frame, length prefix first, alone in the connection's input
         * as the event loop leaves it, in an exactly-sized copy so that
         * ASan sees a read past the frame. */
        uint8_t *frame = malloc(4 + (size_t)fl);
        if (!frame) fz_die("out of memory");
        memcpy(frame, data + at, 4 + (size_t)fl);
        c.in = (kbuf){.p = frame, .len = 4 + (size_t)fl, .cap = 4 + (size_t)fl};
        if (fl >= 2 && !fz_stateless((int16_t)kbe16(frame + 4))) reset = true;
        bool go = fz_frame(s, &c, frame + 4, (size_t)fl, res);
        c.in = (kbuf){0};
        free(frame);
        at += 4 + (size_t)fl;
        if (!go) break;
    }
    res->partial = !res->closed && !res->violation && at < size;
    fz_snap last;
    fz_snapshot(fz_b, &last);
    res->appended = last.records - fz_initial.records;
    fz_drop_output(&c);
    free(c.rq);
    free(c.out.p);
    if (reset || !fz_same(&last, &fz_initial)) fz_teardown();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_srv_result res;
    fuzz_server_run(data, size, &res);
    if (res.violation) fz_die(res.violation);
    return 0;
}
