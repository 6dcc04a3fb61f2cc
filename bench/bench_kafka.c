/*
 * bench/bench_kafka.c - `sluice bench kafka`: the built-in broker's Kafka
 * server (sluice/server.h) measured through librdkafka, against librdkafka's
 * own mock cluster in the same process and run (issue 10's targets).
 *
 * Both servers run inside this process: sluice's sl_server_run() on a thread
 * of its own over a fresh temporary broker directory (127.0.0.1, port 0),
 * the mock cluster (rd_kafka_mock_cluster_new, one broker) on librdkafka's
 * mock thread. The clients are the same librdkafka code with the same
 * settings against either, so the ratios compare the servers. The machine
 * may have 2 cores for the server thread, librdkafka's threads (producer,
 * consumer, mock) and ours: each phase prints the CPU time it used (and the
 * server's own thread: sluice's, or the mock's "rdk:mock"), the load
 * average is printed, and a note says when both cores were busy. The
 * server thread's CPU per record depends little on what else runs.
 *
 *   1. produce  --records N records of 100 bytes (default 2,000,000), one
 *               producer, acks=all, no idempotence, no compression,
 *               linger.ms=5, batch.num.messages=10000, batch.size=1000000,
 *               one partition whose topic has fsync=never; after a warm-up
 *               of 10,000 records (connection, metadata), timed from the
 *               first produce() to the last delivery report. --rounds R
 *               (default 3) alternate sluice and the mock; the faster run of
 *               each counts. records/s and MB/s of values; ratio sluice /
 *               mock (target >= 1.5). The mock keeps ~5 MiB per partition
 *               and drops older batches: it never refuses, so any N works.
 *   2. fetch    a topic of --fetch-mb MiB (default 512) of --fetch-value
 *               byte values (default 1000), written beforehand through
 *               sl_producer over the directory, read once with read(2) (the
 *               warm-up, and the baseline: what the page cache alone hands
 *               out), then consumed from its beginning to its end through
 *               librdkafka (high-level consumer, assign, batches of what is
 *               queued, fetch.message.max.bytes 16 MiB, fetch.max.bytes
 *               64 MiB), timed from the first Fetch answer (librdkafka starts
 *               fetching up to 0.5 s after assign; the records of that first
 *               answer are not counted) to the last record: GB/s of values
 *               (target >= 1). The mock cannot hold such a topic.
 *   3. latency  produce-to-consume, paced: a record is due every 1/rate s;
 *               the producer sleeps until the next is due and sends what is
 *               due. First sluice and the mock at the same rate, half of
 *               sluice's peak of figure 1 (or --latency-rate), then both at
 *               --latency-light records/s (default 10,000; 0 skips it), each
 *               for --latency-seconds S (default 2) into a topic of its own.
 *               Each value carries its sequence number and send time
 *               (CLOCK_MONOTONIC ns); a consumer thread (fetch.wait.max.ms=1)
 *               takes receive - send per record: p50 / p99 / max (target p99
 *               < 5 ms for sluice at half its peak); the producer's delivery
 *               reports give produce() to acknowledgement (served when the
 *               producer is ahead of its schedule and every 256 records, so
 *               at most that late), which tells the produce side's share.
 *               Producer linger.ms=1 (--latency-linger) for both: with 0
 *               every record is a batch of its own, and the mock, which
 *               looks a Fetch's offset up by walking its batches, falls
 *               seconds behind (1 adds at most 1 ms). The mock drops what
 *               is more than ~5 MiB behind its log end; a
 *               consumer that falls that far behind fails its run, which is
 *               printed as the baseline's failure (sluice's failing is an
 *               error).
 *
 * Value layout of figures 1 and 3 (host byte order):
 *
 *   offset  size  field
 *   ------  ----  ------------------------------------------------------
 *        0     8  seq        record number; -1 marks a warm-up record
 *        8     8  sent_ns    CLOCK_MONOTONIC at produce() (figure 3)
 *       16    84  filler     'k'
 *
 * Invariants: per-record work allocates nothing of ours (librdkafka copies
 * the value: RD_KAFKA_MSG_F_COPY; the latency array is sized before the
 * run); every librdkafka handle, the server, its thread and the temporary
 * directory are released on every path (one `goto fail` per function). A
 * record not delivered or not received is an error naming the phase, never
 * a figure.
 *
 * Output: a table per figure, then one line per figure starting "produce:",
 * "fetch:" and "latency:" with its target and "met" or "NOT met". With --csv
 * the rows bench,variant,threads,events,seconds,events_per_s,peak_rss_mb,
 * where for latency rows "seconds" is the latency. --quick runs tiny sizes
 * (the smoke test's; its figures mean nothing).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <sluice/broker.h>
#include <sluice/server.h>

#include "bench/bench_util.h"
#include "bench/bench.h"
#include "bench/bench_serve.h"
#include "examples/jobs.h"

#define VALUE_BYTES 100
#define WARMUP_N    10000
#define DELIVERY_MS 60000 /* the longest wait for the last delivery report */
#define RECEIVE_MS  30000 /* the longest wait for a record not yet received */
#define AFTER_MS    5000  /* the longest wait for the last records once all were delivered */

typedef struct kctx {
    long long delivered, failed;
    const int64_t *sent; /* latency runs: send time of record i at [i] */
    int64_t *ack;        /* latency runs: delivery - send of each measured record */
    long long nack;
    char err[256]; /* the first error: failed delivery or librdkafka's error callback */
} kctx;

typedef struct cpu_mark {
    double wall, proc, srv; /* seconds: monotonic, process CPU, server thread CPU */
} cpu_mark;

typedef struct run_fig {
    double secs;         /* wall time of the timed part */
    double cpu, srv_cpu; /* process and server-thread CPU seconds in it */
    long long n;         /* records */
    double bytes;        /* value bytes */
} run_fig;

typedef struct lat_fig {
    double rate;               /* records/s offered */
    long long n;               /* records measured */
    int64_t p50, p99, max;     /* ns */
    int64_t ack50, ack99;      /* ns, produce() to delivery report */
    double cpu, srv_cpu, secs; /* as run_fig */
} lat_fig;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) < 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The CPU clock of the server being measured: sluice's server thread or
 * the mock cluster's thread (valid while it runs; g_srv_clock_ok false for
 * none). */
static clockid_t g_srv_clock = (clockid_t)-1;
static bool g_srv_clock_ok;

/* The CPU clock of this process's thread named name (its /proc comm), as
 * pthread_getcpuclockid() makes it from a thread id on Linux: ~tid << 3 |
 * CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED. False when there is no such thread.
 * This is how the mock cluster's thread ("rdk:mock", librdkafka's name) is
 * measured: librdkafka gives no handle on it. */
static bool thread_clock_by_name(const char *name, clockid_t *out)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return false;
    struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d))) {
        char path[300], comm[64] = "";
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%.32s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
        fclose(f);
        if (strcmp(comm, name) != 0) continue;
        unsigned tid = (unsigned)strtoul(e->d_name, NULL, 10);
        *out = (clockid_t)((~tid << 3) | 6u);
        struct timespec ts;
        found = clock_gettime(*out, &ts) == 0;
    }
    closedir(d);
    return found;
}

static cpu_mark mark(void)
{
    cpu_mark m = {bench_now(), clock_s(CLOCK_PROCESS_CPUTIME_ID), 0};
    if (g_srv_clock_ok) m.srv = clock_s(g_srv_clock);
    return m;
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk, (void)level;
    if (getenv("SLUICE_KAFKA_DEBUG"))
        fprintf(stderr, "%.6f librdkafka %s: %s\n", bench_now(), fac, buf);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk, (void)err;
    kctx *k = opaque;
    if (k && !k->err[0]) snprintf(k->err, sizeof k->err, "%s", reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kctx *k = opaque;
    if (!m->err) {
        k->delivered++;
        if (k->ack && m->_private) /* msg_opaque: record number + 1 */
            k->ack[k->nack++] = now_ns() - k->sent[(intptr_t)m->_private - 1];
        return;
    }
    if (!k->failed++)
        snprintf(k->err, sizeof k->err, "delivery failed: %s", rd_kafka_err2str(m->err));
}

/* A librdkafka client of type for bootstrap with the settings kv (name,
 * value pairs, NULL-terminated) and k as its opaque; NULL with err set. */
static rd_kafka_t *client_new(rd_kafka_type_t type, const char *bootstrap, const char *const *kv,
                              kctx *k, char *err, size_t errlen)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (bootstrap && rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr))
        goto fail;
    for (; kv && kv[0]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], errstr, sizeof errstr)) goto fail;
    const char *debug = getenv("SLUICE_KAFKA_DEBUG");
    if (debug && *debug && rd_kafka_conf_set(conf, "debug", debug, errstr, sizeof errstr))
        goto fail;
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    if (type == RD_KAFKA_PRODUCER) rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk) goto fail;
    return rk;
fail:
    snprintf(err, errlen, "librdkafka: %.400s", errstr);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Produce one record (value copied), waiting while librdkafka's queue is
 * full; 0 or -1 with err set. */
static int produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const void *v, size_t len,
                       void *opaque, char *err, size_t errlen)
{
    for (;;) {
        if (rd_kafka_produce(rkt, 0, RD_KAFKA_MSG_F_COPY, (void *)v, len, NULL, 0, opaque) == 0)
            return 0;
        rd_kafka_resp_err_t e = rd_kafka_last_error();
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(err, errlen, "produce: %s", rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 1);
    }
}

/* Wait until k has every one of want delivery reports; 0 or -1 with err. */
static int await_deliveries(rd_kafka_t *rk, kctx *k, long long want, const char *what, char *err,
                            size_t errlen)
{
    rd_kafka_flush(rk, DELIVERY_MS);
    rd_kafka_poll(rk, 0);
    if (k->delivered == want && !k->failed) return 0;
    snprintf(err, errlen, "%s: %lld of %lld records not delivered within %d s%s%s", what,
             want - k->delivered, want, DELIVERY_MS / 1000, k->err[0] ? ": " : "", k->err);
    return -1;
}

/* clang-format off */
static const char *const produce_conf[] = {
    "acks", "all",
    "enable.idempotence", "false",
    "compression.codec", "none",
    "linger.ms", "5",
    "batch.num.messages", "10000",
    "batch.size", "1000000",
    "queue.buffering.max.messages", "1000000",
    "queue.buffering.max.kbytes", "1048576",
    "message.timeout.ms", "60000",
    NULL};
/* clang-format on */

/* Figure 1 against bootstrap: warm-up, then n records timed to the last
 * delivery report. 0 or -1 with err set. */
static int produce_run(const char *bootstrap, const char *topic, long long n, run_fig *f, char *err,
                       size_t errlen)
{
    kctx k = {0};
    int rc = -1;
    rd_kafka_topic_t *rkt = NULL;
    rd_kafka_t *rk = client_new(RD_KAFKA_PRODUCER, bootstrap, produce_conf, &k, err, errlen);
    if (!rk) return -1;
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    unsigned char v[VALUE_BYTES];
    memset(v, 'k', sizeof v);
    int64_t seq = -1, zero = 0;
    memcpy(v, &seq, 8);
    memcpy(v + 8, &zero, 8);
    for (int i = 0; i < WARMUP_N; i++)
        if (produce_one(rk, rkt, v, sizeof v, NULL, err, errlen) < 0) goto fail;
    if (await_deliveries(rk, &k, WARMUP_N, "warm-up", err, errlen) < 0) goto fail;
    k.delivered = 0;
    cpu_mark m0 = mark();
    for (long long i = 0; i < n; i++) {
        memcpy(v, &i, 8);
        if (produce_one(rk, rkt, v, sizeof v, NULL, err, errlen) < 0) goto fail;
    }
    if (await_deliveries(rk, &k, n, "produce", err, errlen) < 0) goto fail;
    cpu_mark m1 = mark();
    *f = (run_fig){m1.wall - m0.wall, m1.proc - m0.proc, m1.srv - m0.srv, n,
                   (double)n * VALUE_BYTES};
    rc = 0;
fail:
    if (rkt) rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return rc;
}

/* A consumer of partition 0 of topic from the beginning (assigned, no
 * group membership, nothing committed) with the settings kv; its metadata
 * fetched first so that the connection is up. NULL with err set. */
static rd_kafka_t *consumer_new(const char *bootstrap, const char *topic, const char *const *kv,
                                kctx *k, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *tp = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_t *rk = client_new(RD_KAFKA_CONSUMER, bootstrap, kv, k, err, errlen);
    if (!rk) return NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, 10000);
    if (e) {
        snprintf(err, errlen, "consumer metadata: %s%s%s", rd_kafka_err2str(e),
                 k->err[0] ? ": " : "", k->err);
        goto fail;
    }
    rd_kafka_metadata_destroy(md);
    tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    if ((e = rd_kafka_assign(rk, tp))) {
        snprintf(err, errlen, "assign: %s", rd_kafka_err2str(e));
        goto fail;
    }
    rd_kafka_topic_partition_list_destroy(tp);
    return rk;
fail:
    if (tp) rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_destroy(rk);
    return NULL;
}

/* clang-format off */
static const char *const fetch_conf[] = {
    "group.id", "sluice-bench-kafka",
    "enable.auto.commit", "false",
    "enable.auto.offset.store", "false",
    "fetch.message.max.bytes", "16777216",
    "fetch.max.bytes", "67108864",
    "receive.message.max.bytes", "68000000",
    "queued.max.messages.kbytes", "262144",
    "queued.min.messages", "1000000",
    "auto.offset.reset", "error",
    NULL};
/* clang-format on */

/* Up to max messages of consumer rk (its queue q): what is queued now, else
 * the first to come within timeout_ms (rd_kafka_consume_batch_queue alone
 * waits for a full batch or its timeout, which would hold back what is
 * there). The count, 0 if none came, or -1. */
static ssize_t take(rd_kafka_t *rk, rd_kafka_queue_t *q, rd_kafka_message_t **msgs, size_t max,
                    int timeout_ms)
{
    ssize_t c = rd_kafka_consume_batch_queue(q, 0, msgs, max);
    if (c != 0) return c;
    msgs[0] = rd_kafka_consumer_poll(rk, timeout_ms);
    return msgs[0] ? 1 : 0;
}

/* Figure 2: consume n records of topic from the beginning through
 * bootstrap. 0 or -1 with err set. */
static int fetch_run(const char *bootstrap, const char *topic, long long n, run_fig *f, char *err,
                     size_t errlen)
{
    kctx k = {0};
    int rc = -1;
    rd_kafka_queue_t *q = NULL;
    enum { BATCH = 4096 };
    rd_kafka_message_t **msgs = malloc(sizeof *msgs * BATCH);
    if (!msgs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cpu_mark m0 = {0};
    rd_kafka_t *rk = consumer_new(bootstrap, topic, fetch_conf, &k, err, errlen);
    if (!rk) goto fail;
    q = rd_kafka_queue_get_consumer(rk);
    /* The clock starts when the first fetch's records are in: they (all of
     * that response, which librdkafka queues at once) are not timed. */
    long long got = 0, first_n = -1; /* records received; of them untimed */
    double bytes = 0, first_bytes = 0;
    int64_t idle_since = now_ns();
    while (got < n) {
        ssize_t c = take(rk, q, msgs, BATCH, 100);
        for (;;) {
            if (c < 0) {
                snprintf(err, errlen, "fetch: %s", rd_kafka_err2str(rd_kafka_last_error()));
                goto fail;
            }
            for (ssize_t i = 0; i < c; i++) {
                rd_kafka_message_t *m = msgs[i];
                if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && !err[0])
                    snprintf(err, errlen, "fetch: %s", rd_kafka_message_errstr(m));
                else if (!m->err)
                    got++, bytes += (double)m->len;
                rd_kafka_message_destroy(m);
            }
            if (err[0]) goto fail;
            if (first_n >= 0 || got == 0 || c == 0) break;
            c = rd_kafka_consume_batch_queue(q, 0, msgs, BATCH); /* the rest of the first */
        }
        if (first_n < 0 && got > 0) {
            m0 = mark();
            first_n = got;
            first_bytes = bytes;
        }
        if (c > 0) idle_since = now_ns();
        if (now_ns() - idle_since > (int64_t)RECEIVE_MS * 1000000) {
            snprintf(err, errlen, "fetch: %lld of %lld records received, then nothing for %d s%s%s",
                     got, n, RECEIVE_MS / 1000, k.err[0] ? ": " : "", k.err);
            goto fail;
        }
    }
    cpu_mark m1 = mark();
    *f = (run_fig){m1.wall - m0.wall, m1.proc - m0.proc, m1.srv - m0.srv, got - first_n,
                   bytes - first_bytes};
    rc = 0;
fail:
    if (q) rd_kafka_queue_destroy(q);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    free(msgs);
    return rc;
}

/* ---- figure 2b: the server's side of Fetch, without a client's parsing ---- */

/* A minimal Fetch v4 client on one blocking socket: request 64 MiB from
 * the next offset, read the whole response into buf, walk its batch
 * headers only (base_offset, last_offset_delta) to learn the next offset.
 * What a real client adds (decoding every record, its queues) is left out,
 * so the figure is what the server hands out. Request (big-endian):
 *
 *   int32 length | int16 1 (Fetch) | int16 4 | int32 corr | string "bench" |
 *   int32 replica -1 | int32 max_wait 0 | int32 min_bytes 1 |
 *   int32 max_bytes | int8 isolation 0 | [topic: string | [int32 0 |
 *   int64 offset | int32 partition max_bytes]]
 *
 * Response v4: int32 length | int32 corr | int32 throttle | [topic: string |
 * [int32 partition | int16 error | int64 hw | int64 lso | [aborted: 16
 * bytes] | bytes records]]. */
static int sendall(int fd, const void *p, size_t n)
{
    const char *q = p;
    while (n) {
        ssize_t k = send(fd, q, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        q += k, n -= (size_t)k;
    }
    return 0;
}

static int recvall(int fd, void *p, size_t n)
{
    char *q = p;
    while (n) {
        ssize_t k = recv(fd, q, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        q += k, n -= (size_t)k;
    }
    return 0;
}

static uint32_t rbe32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int raw_fetch_run(int port, const char *topic, long long end, run_fig *f, char *err,
                         size_t errlen)
{
    enum { MAXB = 64 << 20 };
    int rc = -1, fd = socket(AF_INET, SOCK_STREAM, 0);
    uint8_t *buf = malloc(MAXB + 4096);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!buf || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        snprintf(err, errlen, "raw fetch: cannot connect to port %d: %s", port, strerror(errno));
        goto fail;
    }
    size_t tl = strlen(topic);
    uint8_t req[512], *q = req + 4;
#define P16(v) (q[0] = (uint8_t)((v) >> 8), q[1] = (uint8_t)(v), q += 2)
#define P32(v) (P16((uint32_t)(v) >> 16), P16((uint32_t)(v)&0xffff))
    P16(1), P16(4), P32(0), P16(5), memcpy(q, "bench", 5), q += 5;
    P32(-1), P32(0), P32(1), P32(MAXB), *q++ = 0, P32(1), P16(tl), memcpy(q, topic, tl), q += tl;
    P32(1), P32(0);
    uint8_t *off_at = q;
    q += 8;
    P32(MAXB);
#undef P32
#undef P16
    size_t rl = (size_t)(q - req);
    req[0] = (uint8_t)((rl - 4) >> 24), req[1] = (uint8_t)((rl - 4) >> 16);
    req[2] = (uint8_t)((rl - 4) >> 8), req[3] = (uint8_t)(rl - 4);
    long long next = 0, fetches = 0;
    double bytes = 0;
    cpu_mark m0 = mark();
    while (next < end) {
        for (int i = 0; i < 8; i++) off_at[i] = (uint8_t)((uint64_t)next >> (56 - 8 * i));
        uint8_t lp[4];
        if (sendall(fd, req, rl) < 0 || recvall(fd, lp, 4) < 0) {
            snprintf(err, errlen, "raw fetch: connection lost at offset %lld", next);
            goto fail;
        }
        uint32_t n = rbe32(lp);
        if (n > MAXB + 4096 || recvall(fd, buf, n) < 0) {
            snprintf(err, errlen, "raw fetch: bad response of %u bytes at offset %lld", n, next);
            goto fail;
        }
        /* corr 4, throttle 4, [1] 4, topic 2+tl, [1] 4, partition 4, error 2,
         * hw 8, lso 8, aborted array 4 (+16 each), records 4 + len */
        size_t at = 4 + 4 + 4 + 2 + tl + 4 + 4;
        if (n < at + 2 + 16 + 4 + 4 || buf[at] || buf[at + 1]) {
            snprintf(err, errlen, "raw fetch: error answer at offset %lld", next);
            goto fail;
        }
        at += 2 + 16;
        int32_t na = (int32_t)rbe32(buf + at);
        at += 4 + (na > 0 ? (size_t)na * 16 : 0);
        uint32_t rsz = rbe32(buf + at);
        at += 4;
        if (at + rsz > n || rsz == 0) {
            snprintf(err, errlen, "raw fetch: nothing at offset %lld of %lld", next, end);
            goto fail;
        }
        for (size_t b = at; b + 27 <= at + rsz;) {
            uint32_t blen = rbe32(buf + b + 8);
            if (b + 12 + blen > at + rsz) break; /* a partial batch at the end */
            uint64_t base = (uint64_t)rbe32(buf + b) << 32 | rbe32(buf + b + 4);
            next = (long long)base + rbe32(buf + b + 23) + 1;
            b += 12 + blen;
        }
        bytes += rsz;
        fetches++;
    }
    cpu_mark m1 = mark();
    *f = (run_fig){m1.wall - m0.wall, m1.proc - m0.proc, m1.srv - m0.srv, fetches, bytes};
    rc = 0;
fail:
    if (fd >= 0) close(fd);
    free(buf);
    return rc;
}

/* ---- figure 3: latency ---------------------------------------------------- */

typedef struct lat_cons {
    rd_kafka_t *rk;
    long long want, got; /* measured records expected, received */
    int64_t *lat;        /* want entries: receive - send, ns */
    atomic_int ready;    /* a warm-up record came through */
    atomic_int stop;     /* the producer side gave up */
    atomic_llong done;   /* when every record was delivered (ns), 0 before */
    atomic_int ended;    /* the thread is past its last write (of err, got, lat) */
    char err[256];
} lat_cons;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The consumer thread: takes receive - send of every measured record. */
static void *lat_consumer(void *arg)
{
    lat_cons *c = arg;
    enum { BATCH = 1024 };
    rd_kafka_message_t *msgs[BATCH];
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(c->rk);
    int64_t last = now_ns();
    while (c->got < c->want && !atomic_load(&c->stop)) {
        ssize_t n = take(c->rk, q, msgs, BATCH, 10);
        int64_t now = now_ns();
        if (n < 0) {
            snprintf(c->err, sizeof c->err, "consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
            break;
        }
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            int64_t seq, sent;
            if (!m->err && m->len >= 16) {
                memcpy(&seq, m->payload, 8);
                memcpy(&sent, (const char *)m->payload + 8, 8);
                if (seq < 0)
                    atomic_store(&c->ready, 1);
                else if (c->got < c->want)
                    c->lat[c->got++] = now_ns() - sent;
            } else if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && !c->err[0]) {
                snprintf(c->err, sizeof c->err, "consume: %s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
        }
        if (c->err[0]) break;
        if (n > 0) last = now;
        int64_t done = atomic_load(&c->done);
        if (now - last > (int64_t)RECEIVE_MS * 1000000 ||
            (done && now - done > (int64_t)AFTER_MS * 1000000)) {
            snprintf(c->err, sizeof c->err, "nothing more came for %.1f s",
                     (double)(now - last) / 1e9);
            break;
        }
    }
    rd_kafka_queue_destroy(q);
    atomic_store(&c->ended, 1);
    return NULL;
}

/* clang-format off */
static const char *const lat_cons_conf[] = {
    "group.id", "sluice-bench-kafka",
    "enable.auto.commit", "false",
    "enable.auto.offset.store", "false",
    "fetch.wait.max.ms", "1",
    "fetch.min.bytes", "1",
    "fetch.error.backoff.ms", "1",
    "auto.offset.reset", "error",
    NULL};
/* clang-format on */

static void sleep_until(int64_t t_ns)
{
    struct timespec ts = {(time_t)(t_ns / 1000000000LL), (long)(t_ns % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

/* Figure 3 against bootstrap: rate records/s for seconds, paced. 0 or -1
 * with err set. */
static int latency_run(const char *bootstrap, const char *topic, double rate, double seconds,
                       int linger_ms, lat_fig *f, char *err, size_t errlen)
{
    kctx kp = {0}, kc = {0};
    int rc = -1;
    bool started = false;
    rd_kafka_t *prod = NULL;
    rd_kafka_topic_t *rkt = NULL;
    long long n = (long long)(rate * seconds);
    if (n < 100) n = 100;
    lat_cons c = {.want = n};
    char linger_s[24];
    snprintf(linger_s, sizeof linger_s, "%d", linger_ms);
    /* clang-format off */
    const char *const prod_conf[] = {
        "acks", "all",
        "enable.idempotence", "false",
        "compression.codec", "none",
        "linger.ms", linger_s,
        "batch.num.messages", "10000",
        "batch.size", "1000000",
        "queue.buffering.max.messages", "1000000",
        "queue.buffering.max.kbytes", "1048576",
        "message.timeout.ms", "60000",
        NULL};
    /* clang-format on */
    pthread_t th;
    c.lat = malloc(sizeof *c.lat * (size_t)n);
    int64_t *sent = malloc(sizeof *sent * (size_t)n);
    kp.ack = malloc(sizeof *kp.ack * (size_t)n);
    if (!c.lat || !sent || !kp.ack) {
        free(c.lat);
        free(sent);
        free(kp.ack);
        snprintf(err, errlen, "out of memory for %lld latencies", n);
        return -1;
    }
    c.rk = consumer_new(bootstrap, topic, lat_cons_conf, &kc, err, errlen);
    if (!c.rk) goto fail;
    prod = client_new(RD_KAFKA_PRODUCER, bootstrap, prod_conf, &kp, err, errlen);
    if (!prod) goto fail;
    rkt = rd_kafka_topic_new(prod, topic, NULL);
    if (!rkt) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    if (pthread_create(&th, NULL, lat_consumer, &c) != 0) {
        snprintf(err, errlen, "cannot start the consumer thread");
        goto fail;
    }
    started = true;
    unsigned char v[VALUE_BYTES];
    memset(v, 'k', sizeof v);
    /* Warm-up: a record every 10 ms until the consumer has one. */
    long long sent_n = 0;
    int64_t seq = -1, t;
    memcpy(v, &seq, 8);
    int64_t give_up = now_ns() + (int64_t)RECEIVE_MS * 1000000;
    while (!atomic_load(&c.ready)) {
        t = now_ns();
        if (t > give_up || atomic_load(&c.ended)) {
            atomic_store(&c.stop, 1); /* c.err and kc.err are the thread's until it ends */
            pthread_join(th, NULL);
            started = false;
            snprintf(err, errlen, "latency warm-up: no record came back within %d s%s%s",
                     RECEIVE_MS / 1000, c.err[0] ? ": " : "", c.err[0] ? c.err : kc.err);
            goto fail;
        }
        memcpy(v + 8, &t, 8);
        if (produce_one(prod, rkt, v, sizeof v, NULL, err, errlen) < 0) goto fail;
        sent_n++;
        rd_kafka_poll(prod, 10);
    }
    /* Paced: record i is due at t0 + i / rate. */
    kp.sent = sent;
    cpu_mark m0 = mark();
    int64_t t0 = now_ns();
    double gap = 1e9 / rate;
    for (long long i = 0; i < n; i++) {
        int64_t due = t0 + (int64_t)((double)i * gap);
        if (now_ns() < due) { /* ahead: serve delivery reports, then wait */
            rd_kafka_poll(prod, 0);
            sleep_until(due);
        }
        memcpy(v, &i, 8);
        t = now_ns();
        memcpy(v + 8, &t, 8);
        sent[i] = t;
        if (produce_one(prod, rkt, v, sizeof v, (void *)(intptr_t)(i + 1), err, errlen) < 0)
            goto fail;
        sent_n++;
        if ((i & 255) == 0) rd_kafka_poll(prod, 0);
    }
    if (await_deliveries(prod, &kp, sent_n, "latency", err, errlen) < 0) goto fail;
    atomic_store(&c.done, now_ns());
    pthread_join(th, NULL);
    started = false;
    cpu_mark m1 = mark();
    if (c.err[0] || c.got < n) {
        snprintf(err, errlen, "latency: %lld of %lld records received%s%s", c.got, n,
                 c.err[0] ? ": " : "", c.err[0] ? c.err : kc.err);
        goto fail;
    }
    if (kp.nack != n) {
        snprintf(err, errlen, "latency: %lld delivery reports for %lld records", kp.nack, n);
        goto fail;
    }
    qsort(c.lat, (size_t)n, sizeof *c.lat, cmp_i64);
    qsort(kp.ack, (size_t)n, sizeof *kp.ack, cmp_i64);
    *f = (lat_fig){.rate = rate,
                   .n = n,
                   .p50 = c.lat[n / 2],
                   .p99 = c.lat[(n * 99) / 100],
                   .max = c.lat[n - 1],
                   .ack50 = kp.ack[n / 2],
                   .ack99 = kp.ack[(n * 99) / 100],
                   .cpu = m1.proc - m0.proc,
                   .srv_cpu = m1.srv - m0.srv,
                   .secs = m1.wall - m0.wall};
    rc = 0;
fail:
    if (started) {
        atomic_store(&c.stop, 1);
        pthread_join(th, NULL);
    }
    if (rkt) rd_kafka_topic_destroy(rkt);
    if (prod) rd_kafka_destroy(prod);
    if (c.rk) {
        rd_kafka_consumer_close(c.rk);
        rd_kafka_destroy(c.rk);
    }
    free(c.lat);
    free(sent);
    free(kp.ack);
    return rc;
}

/* ---- the fetch topic and its read(2) baseline ----------------------------- */

/* Write records of value_bytes into partition 0 of topic through the
 * directory API. 0 or -1 with err set. */
static int fill_topic(sl_broker *b, const char *topic, long long records, int value_bytes,
                      char *err, size_t errlen)
{
    sl_producer *p = NULL;
    int rc = -1;
    char *v = malloc((size_t)value_bytes);
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memset(v, 'f', (size_t)value_bytes);
    sl_record rec = {.value = v, .value_len = (size_t)value_bytes, .timestamp = SL_TIMESTAMP_NONE};
    if (sl_producer_open(&p, b, topic) < 0) {
        snprintf(err, errlen, "%s", sl_broker_errmsg(b));
        goto fail;
    }
    for (long long i = 0; i < records; i++) {
        memcpy(v, &i, value_bytes < 8 ? (size_t)value_bytes : 8);
        if (sl_producer_send(p, 0, &rec, NULL) < 0) {
            snprintf(err, errlen, "%s", sl_producer_errmsg(p));
            goto fail;
        }
    }
    if (sl_producer_flush(p) < 0) {
        snprintf(err, errlen, "%s", sl_producer_errmsg(p));
        goto fail;
    }
    rc = 0;
fail:
    sl_producer_close(p);
    free(v);
    return rc;
}

static char *g_rbuf;        /* nftw callbacks have no argument */
static double g_read_bytes; /* what read_cb read */
static int g_read_err;

static int read_cb(const char *path, const struct stat *st, int flag, struct FTW *w)
{
    (void)st, (void)w;
    size_t l = strlen(path);
    if (flag != FTW_F || l < 4 || strcmp(path + l - 4, ".log") != 0) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return g_read_err = errno, 1;
    ssize_t r;
    while ((r = read(fd, g_rbuf, 1 << 20)) > 0) g_read_bytes += (double)r;
    if (r < 0) g_read_err = errno;
    close(fd);
    return r < 0;
}

/* Read every segment file (*.log) under dir with read(2) in 1 MiB blocks;
 * bytes read into *bytes; seconds, or -1 with err set. */
static double read_baseline(const char *dir, double *bytes, char *err, size_t errlen)
{
    g_rbuf = malloc(1 << 20);
    if (!g_rbuf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    g_read_bytes = 0;
    g_read_err = 0;
    double t0 = bench_now();
    int r = nftw(dir, read_cb, 16, FTW_PHYS);
    double t = bench_now() - t0;
    free(g_rbuf);
    g_rbuf = NULL;
    if (r != 0 || g_read_err) {
        snprintf(err, errlen, "reading the segments of %.300s: %s", dir,
                 strerror(g_read_err ? g_read_err : errno));
        return -1;
    }
    *bytes = g_read_bytes;
    return t;
}

/* ---- the server thread ---------------------------------------------------- */

/* ---- output --------------------------------------------------------------- */

/* x per second, 0 when no time passed. */
static double per_s(double x, double secs)
{
    return secs > 0 ? x / secs : 0;
}

/* Make err "pfx: err". */
static void err_prefix(char *err, size_t len, const char *pfx)
{
    char t[512];
    snprintf(t, sizeof t, "%s", err);
    snprintf(err, len, "%.40s: %.400s", pfx, t);
}

static const char *met(bool ok)
{
    return ok ? "met" : "NOT met";
}

static void cpu_line(const char *who, double cpu, double srv, double wall, long long n)
{
    printf("    %-24s CPU %.2f s in %.2f s (%.0f%% of 2 cores), of it the server's thread "
           "%.2f s",
           who, cpu, wall, wall > 0 ? 100.0 * cpu / (2.0 * wall) : 0.0, srv);
    if (n > 0) printf(" = %.2f us per record", srv * 1e6 / (double)n);
    printf("\n");
}

static void usage(FILE *f)
{
    fprintf(
        f, "usage: sluice bench kafka [--records N] [--rounds R] [--fetch-mb M] [--fetch-value B]\n"
           "         [--latency-seconds S] [--latency-rate R] [--latency-light R]\n"
           "         [--latency-linger MS] [--dir DIR] [--quick] [--csv]\n"
           "sluice's Kafka server (a thread of this process, over a temporary broker\n"
           "directory) against librdkafka's mock cluster, both through librdkafka:\n"
           "  produce  N records of 100 bytes (default 2000000), acks=all, fsync=never,\n"
           "           the faster of R alternating rounds (default 3); target >= 1.5x\n"
           "  fetch    a topic of M MiB (default 512) of B-byte values (default 1000),\n"
           "           consumed from the page cache; read(2) of its files is the baseline;\n"
           "           target >= 1 GB/s\n"
           "  latency  produce to consume for S seconds (default 2) at half of sluice's\n"
           "           peak (or --latency-rate), then at --latency-light records/s (default\n"
           "           10000, 0: skip); producer linger.ms MS (default 1); target p99 < 5 ms\n"
           "--dir DIR  where the topics go (default: a temporary directory, removed at\n"
           "           the end); --quick: tiny sizes, for a smoke test.\n");
}

int bench_kafka(int argc, char **argv)
{
    const char *cmd = "bench kafka";
    enum {
        O_CSV = JOBS_OPT_FIRST_FREE,
        O_RECORDS,
        O_FETCH_MB,
        O_FETCH_VALUE,
        O_LAT_S,
        O_ROUNDS,
        O_LAT_LINGER,
        O_LAT_RATE,
        O_LAT_LIGHT,
        O_DIR,
        O_QUICK
    };
    static const struct option opts[] = {{"csv", no_argument, NULL, O_CSV},
                                         {"records", required_argument, NULL, O_RECORDS},
                                         {"fetch-mb", required_argument, NULL, O_FETCH_MB},
                                         {"fetch-value", required_argument, NULL, O_FETCH_VALUE},
                                         {"latency-seconds", required_argument, NULL, O_LAT_S},
                                         {"rounds", required_argument, NULL, O_ROUNDS},
                                         {"latency-linger", required_argument, NULL, O_LAT_LINGER},
                                         {"latency-rate", required_argument, NULL, O_LAT_RATE},
                                         {"latency-light", required_argument, NULL, O_LAT_LIGHT},
                                         {"dir", required_argument, NULL, O_DIR},
                                         {"quick", no_argument, NULL, O_QUICK},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    long long records = 2000000, fetch_mb = 512, fetch_value = 1000, lat_s = 2, lat_linger = 1,
              lat_rate = 0, lat_light = 10000, rounds = 3;
    bool records_set = false, rounds_set = false, fetch_set = false, lat_set = false, quick = false,
         csv = false;
    const char *dir_opt = NULL;
    int opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_CSV: csv = true; break;
        case O_QUICK: quick = true; break;
        case O_RECORDS:
            ret = jobs_int(cmd, "--records", optarg, 1000, 1000000000LL, &records);
            records_set = true;
            break;
        case O_FETCH_MB:
            ret = jobs_int(cmd, "--fetch-mb", optarg, 1, 65536, &fetch_mb);
            fetch_set = true;
            break;
        case O_FETCH_VALUE:
            ret = jobs_int(cmd, "--fetch-value", optarg, 8, 1000000, &fetch_value);
            break;
        case O_LAT_S:
            ret = jobs_int(cmd, "--latency-seconds", optarg, 1, 600, &lat_s);
            lat_set = true;
            break;
        case O_ROUNDS:
            ret = jobs_int(cmd, "--rounds", optarg, 1, 100, &rounds);
            rounds_set = true;
            break;
        case O_LAT_LINGER:
            ret = jobs_int(cmd, "--latency-linger", optarg, 0, 1000, &lat_linger);
            break;
        case O_LAT_RATE:
            ret = jobs_int(cmd, "--latency-rate", optarg, 100, 100000000LL, &lat_rate);
            break;
        case O_LAT_LIGHT:
            ret = jobs_int(cmd, "--latency-light", optarg, 0, 100000000LL, &lat_light);
            break;
        case O_DIR: ret = jobs_dir_opt(cmd, optarg, &dir_opt); break;
        default: ret = jobs_opt(cmd, opt, argv, NULL); break;
        }
        if (ret == JOBS_HELP) {
            usage(stdout);
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    double lat_seconds = (double)lat_s;
    if (quick) {
        if (!records_set) records = 20000;
        if (!rounds_set) rounds = 1;
        if (!fetch_set) fetch_mb = 24; /* above the first Fetch answer (16 MiB) */
        if (!lat_set) lat_seconds = 0.2;
    }
    long long fetch_records = fetch_mb * 1048576 / fetch_value;
    if (fetch_records < 1) fetch_records = 1;

    char err[512] = "";
    char tmpl[] = "/tmp/sluice-bench-kafka-XXXXXX";
    char dir[4096], topic_dir[4200], bootstrap[64];
    bool made = false, srv_started = false;
    int status = 1;
    sl_broker *b = NULL;
    sl_server *s = NULL;
    srv_thread st = {0};
    pthread_t srv_th;
    rd_kafka_t *mock_rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    if (dir_opt) {
        snprintf(dir, sizeof dir, "%s", dir_opt);
    } else {
        if (!mkdtemp(tmpl)) {
            snprintf(err, sizeof err, "cannot create a temporary directory: %s", strerror(errno));
            goto fail;
        }
        snprintf(dir, sizeof dir, "%s", tmpl);
        made = true;
    }
    if (sl_broker_open(&b, dir, SL_BROKER_CREATE) < 0) {
        snprintf(err, sizeof err, "%s", sl_broker_errmsg(b));
        goto fail;
    }
    sl_topic_conf tc;
    sl_topic_conf_init(&tc);
    tc.fsync = SL_FSYNC_NEVER;
    const char *topics[] = {"bench-produce", "bench-fetch", "bench-latency", "bench-latency-light"};
    for (int i = 0; i < 4; i++)
        if (sl_topic_create(b, topics[i], &tc) < 0) {
            snprintf(err, sizeof err, "%.300s (in %.180s)", sl_broker_errmsg(b), dir);
            goto fail;
        }

    /* The fetch topic, written before the server owns the directory. */
    if (!csv)
        fprintf(stderr, "sluice bench kafka: writing %lld MiB for the fetch figure in %s\n",
                fetch_mb, dir);
    if (fill_topic(b, "bench-fetch", fetch_records, (int)fetch_value, err, sizeof err) < 0)
        goto fail;
    snprintf(topic_dir, sizeof topic_dir, "%s/bench-fetch", dir);
    double log_bytes = 0;
    double t_read = read_baseline(topic_dir, &log_bytes, err, sizeof err); /* warms the cache */
    if (t_read < 0) goto fail;

    /* sluice's server on a thread of its own. */
    if (sl_server_open(&s, b, "127.0.0.1:0") < 0) {
        snprintf(err, sizeof err, "server: %s", s ? sl_server_errmsg(s) : "out of memory");
        goto fail;
    }
    st.s = s;
    if (pthread_create(&srv_th, NULL, server_main, &st) != 0) {
        snprintf(err, sizeof err, "cannot start the server thread");
        goto fail;
    }
    srv_started = true;
    g_srv_clock_ok = pthread_getcpuclockid(srv_th, &g_srv_clock) == 0;
    snprintf(bootstrap, sizeof bootstrap, "127.0.0.1:%d", sl_server_port(s));

    /* librdkafka's mock cluster: one broker, the same topics. */
    kctx mk = {0};
    mock_rk = client_new(RD_KAFKA_PRODUCER, NULL, NULL, &mk, err, sizeof err);
    if (!mock_rk) goto fail;
    mc = rd_kafka_mock_cluster_new(mock_rk, 1);
    if (!mc) {
        snprintf(err, sizeof err, "cannot create librdkafka's mock cluster");
        goto fail;
    }
    for (int i = 0; i < 4; i++)
        if (rd_kafka_mock_topic_create(mc, topics[i], 1, 1)) {
            snprintf(err, sizeof err, "mock cluster: cannot create topic %s", topics[i]);
            goto fail;
        }
    const char *mock_bs = rd_kafka_mock_cluster_bootstraps(mc);

    /* 1. produce */
    /* Rounds alternate between the two servers and the faster run of each
     * counts: other processes on a shared machine slow one run or another. */
    run_fig ps = {0}, pm = {0}, fs, fr = {0}, r;
    for (long long round = 0; round < rounds; round++) {
        if (!csv)
            fprintf(stderr, "sluice bench kafka: produce, round %lld of %lld, %lld records\n",
                    round + 1, rounds, records);
        g_srv_clock_ok = pthread_getcpuclockid(srv_th, &g_srv_clock) == 0;
        if (produce_run(bootstrap, "bench-produce", records, &r, err, sizeof err) < 0) goto fail;
        if (!ps.n || r.secs < ps.secs) ps = r;
        g_srv_clock_ok = thread_clock_by_name("rdk:mock", &g_srv_clock);
        if (produce_run(mock_bs, "bench-produce", records, &r, err, sizeof err) < 0) {
            err_prefix(err, sizeof err, "mock cluster");
            goto fail;
        }
        if (!pm.n || r.secs < pm.secs) pm = r;
    }
    g_srv_clock_ok = pthread_getcpuclockid(srv_th, &g_srv_clock) == 0;

    /* 2. fetch */
    if (!csv) fprintf(stderr, "sluice bench kafka: fetch, %lld records\n", fetch_records);
    if (fetch_run(bootstrap, "bench-fetch", fetch_records, &fs, err, sizeof err) < 0) goto fail;
    if (raw_fetch_run(sl_server_port(s), "bench-fetch", fetch_records, &fr, err, sizeof err) < 0)
        goto fail;

    /* 3. latency at half of each one's peak */
    /* Latency runs: sluice and the mock at the same offered load, half of
     * sluice's peak (or --latency-rate), then both at --latency-light. Each
     * run has a topic of its own, read from its beginning. The mock keeps
     * ~5 MiB per partition: a consumer further behind than that loses
     * records there; that is the baseline failing, printed as such. */
    double rate_hi = lat_rate ? (double)lat_rate : per_s((double)ps.n, ps.secs) / 2;
    struct {
        const char *bs, *topic, *who;
        double rate;
        lat_fig f;
        char err[512];
    } L[4] = {{.bs = bootstrap, .topic = "bench-latency", .who = "sluice", .rate = rate_hi},
              {.bs = mock_bs,
               .topic = "bench-latency",
               .who = "mock cluster (baseline)",
               .rate = rate_hi},
              {.bs = bootstrap,
               .topic = "bench-latency-light",
               .who = "sluice",
               .rate = (double)lat_light},
              {.bs = mock_bs,
               .topic = "bench-latency-light",
               .who = "mock cluster (baseline)",
               .rate = (double)lat_light}};
    int nlat = lat_light ? 4 : 2;
    for (int i = 0; i < nlat; i++) {
        if (!csv)
            fprintf(stderr, "sluice bench kafka: latency, %s at %.0f records/s for %.1f s\n",
                    L[i].who, L[i].rate, lat_seconds);
        g_srv_clock_ok = L[i].bs == bootstrap ? pthread_getcpuclockid(srv_th, &g_srv_clock) == 0
                                              : thread_clock_by_name("rdk:mock", &g_srv_clock);
        if (latency_run(L[i].bs, L[i].topic, L[i].rate, lat_seconds, (int)lat_linger, &L[i].f,
                        L[i].err, sizeof L[i].err) == 0)
            continue;
        if (L[i].bs == bootstrap) {
            snprintf(err, sizeof err, "%s", L[i].err);
            goto fail;
        }
        if (!csv) fprintf(stderr, "sluice bench kafka: mock cluster: %s\n", L[i].err);
    }
    lat_fig ls = L[0].f, lm = L[1].f;
    g_srv_clock_ok = pthread_getcpuclockid(srv_th, &g_srv_clock) == 0;

    double rss = bench_peak_rss_mb();
    double ratio = per_s((double)ps.n, ps.secs) > 0
                       ? per_s((double)ps.n, ps.secs) / per_s((double)pm.n, pm.secs)
                       : 0;
    double fetch_gbs = per_s(fs.bytes, fs.secs) / 1e9, read_gbs = per_s(log_bytes, t_read) / 1e9;
    double raw_gbs = per_s(fr.bytes, fr.secs) / 1e9;
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) < 1) load[0] = -1;
    /* --plot (bench/plot.h): each baseline before the rows compared with it */
    bench_plot_row("produce, mock cluster (baseline)", 1, (uint64_t)pm.n, pm.secs);
    bench_plot_row("produce, sluice", 1, (uint64_t)ps.n, ps.secs);
    bench_plot_row("fetch, read(2) (baseline)", 1, (uint64_t)fetch_records, t_read);
    bench_plot_row("fetch, sluice", 1, (uint64_t)fs.n, fs.secs);
    bench_plot_row("fetch, sluice, raw client", 1, (uint64_t)fetch_records, fr.secs);
    for (int i = 0; i < nlat; i++)
        if (L[i].f.n) {
            char lv[96];
            snprintf(lv, sizeof lv, "%s at %.0f/s", L[i].who, L[i].rate);
            bench_plot_latency(lv, 1, (double)L[i].f.p50 / 1e6, (double)L[i].f.p99 / 1e6);
        }
    if (csv) {
        printf("bench,variant,threads,events,seconds,events_per_s,peak_rss_mb\n");
        const struct {
            const char *v;
            long long n;
            double secs;
        } rr[] = {{"produce_sluice", ps.n, ps.secs},
                  {"produce_mock", pm.n, pm.secs},
                  {"fetch_sluice", fs.n, fs.secs},
                  {"fetch_sluice_raw_client", fetch_records, fr.secs},
                  {"fetch_read_baseline", fetch_records, t_read}};
        for (size_t i = 0; i < sizeof rr / sizeof rr[0]; i++)
            printf("kafka,%s,1,%lld,%.6f,%.0f,%.1f\n", rr[i].v, rr[i].n, rr[i].secs,
                   per_s((double)rr[i].n, rr[i].secs), rss);
        static const char *const lat_names[] = {"sluice", "mock", "sluice_light", "mock_light"};
        for (int i = 0; i < nlat; i++) {
            const lat_fig *f = &L[i].f;
            const struct {
                const char *q;
                int64_t ns;
            } qs[] = {{"p50", f->p50}, {"p99", f->p99}, {"max", f->max}};
            for (int j = 0; f->n && j < 3; j++)
                printf("kafka,latency_%s_%s,2,%lld,%.9f,%.0f,%.1f\n", qs[j].q, lat_names[i], f->n,
                       (double)qs[j].ns / 1e9, per_s(1.0, (double)qs[j].ns / 1e9), rss);
        }
    } else {
        printf("sluice bench kafka: sluice's Kafka server (a thread of this process) against\n"
               "librdkafka %s's mock cluster (one broker, its own thread), same client settings;\n"
               "%ld cores online, shared by the server, librdkafka's threads and the bench; load\n"
               "average at the end %.2f (above %ld, other processes took cores from this run)\n",
               rd_kafka_version_str(), sysconf(_SC_NPROCESSORS_ONLN), load[0],
               sysconf(_SC_NPROCESSORS_ONLN));
        char rounds_s[64] = "one round each";
        if (rounds > 1)
            snprintf(rounds_s, sizeof rounds_s, "the faster of %lld alternating rounds each",
                     rounds);
        printf("\n1. produce: %lld records of %d bytes, acks=all, fsync=never, 1 partition, one "
               "producer,\n   linger.ms=5 batch.num.messages=10000 batch.size=1000000, no "
               "compression, no\n   idempotence; %s\n",
               records, VALUE_BYTES, rounds_s);
        printf("  %-26s %9s %14s %10s\n", "server", "seconds", "records/s", "MB/s");
        printf("  %-26s %9.3f %14.0f %10.1f\n", "sluice", ps.secs, per_s((double)ps.n, ps.secs),
               per_s(ps.bytes, ps.secs) / 1e6);
        printf("  %-26s %9.3f %14.0f %10.1f\n", "mock cluster (baseline)", pm.secs,
               per_s((double)pm.n, pm.secs), per_s(pm.bytes, pm.secs) / 1e6);
        cpu_line("sluice:", ps.cpu, ps.srv_cpu, ps.secs, ps.n);
        cpu_line("mock:", pm.cpu, pm.srv_cpu, pm.secs, pm.n);
        printf("\n2. fetch: %.0f MiB of log, %lld records of %lld bytes, 1 partition, page cache "
               "warm;\n   one consumer, fetch.message.max.bytes=16 MiB fetch.max.bytes=64 MiB, "
               "timed from\n   the first Fetch answer (%lld records after it)\n",
               log_bytes / 1048576.0, fetch_records, fetch_value, fs.n);
        printf("  %-26s %9s %14s %10s\n", "variant", "seconds", "records/s", "GB/s");
        printf("  %-26s %9.3f %14.0f %10.2f\n", "sluice, librdkafka consumer", fs.secs,
               per_s((double)fs.n, fs.secs), fetch_gbs);
        printf("  %-26s %9.3f %14.0f %10.2f\n", "sluice, raw Fetch v4 client", fr.secs,
               per_s((double)fetch_records, fr.secs), raw_gbs);
        printf("  %-26s %9.3f %14s %10.2f\n", "read(2) of the segments", t_read, "-", read_gbs);
        cpu_line("sluice:", fs.cpu, fs.srv_cpu, fs.secs, fs.n);
        cpu_line("raw client:", fr.cpu, fr.srv_cpu, fr.secs, fetch_records);
        printf("   (the raw client reads whole responses of up to 64 MiB and walks batch headers\n"
               "   only: what the server hands out, without librdkafka's per-record decoding;\n"
               "   its GB/s count the log bytes sent, batch headers included)\n");
        char light[64] = "";
        if (lat_light) snprintf(light, sizeof light, ", then at %lld (light load)", lat_light);
        printf("\n3. latency: produce to consume, paced at %s%s;\n   %.1f s each, producer "
               "linger.ms=%lld, consumer fetch.wait.max.ms=1, 100-byte records;\n   ack: "
               "produce() to delivery report\n",
               lat_rate ? "--latency-rate for both" : "half of sluice's peak for both", light,
               lat_seconds, lat_linger);
        printf("  %-24s %10s %8s %8s %8s %8s %8s %8s\n", "server", "records/s", "records", "p50 ms",
               "p99 ms", "max ms", "ack p50", "ack p99");
        for (int i = 0; i < nlat; i++) {
            const lat_fig *f = &L[i].f;
            if (f->n)
                printf("  %-24s %10.0f %8lld %8.3f %8.3f %8.3f %8.3f %8.3f\n", L[i].who, L[i].rate,
                       f->n, (double)f->p50 / 1e6, (double)f->p99 / 1e6, (double)f->max / 1e6,
                       (double)f->ack50 / 1e6, (double)f->ack99 / 1e6);
            else
                printf("  %-24s %10.0f   failed: %s\n", L[i].who, L[i].rate, L[i].err);
        }
        cpu_line("sluice:", ls.cpu, ls.srv_cpu, ls.secs, 0);
        if (lm.n) cpu_line("mock:", lm.cpu, lm.srv_cpu, lm.secs, 0);
        double busy = 0;
        const double loads[] = {per_s(ps.cpu, ps.secs), per_s(pm.cpu, pm.secs),
                                per_s(fs.cpu, fs.secs), per_s(ls.cpu, ls.secs),
                                lm.n ? per_s(lm.cpu, lm.secs) : 0};
        for (int i = 0; i < 5; i++)
            if (loads[i] > busy) busy = loads[i];
        printf("\n");
        printf("produce: sluice %.0f records/s = %.2fx the mock cluster's %.0f (target >= 1.5x): "
               "%s\n",
               per_s((double)ps.n, ps.secs), ratio, per_s((double)pm.n, pm.secs),
               met(ratio >= 1.5));
        printf("fetch: sluice serves %.2f GB/s to a raw Fetch client, %.2f GB/s of values through "
               "librdkafka, read(2) %.2f GB/s (target >= 1 GB/s, the server's figure): %s\n",
               raw_gbs, fetch_gbs, read_gbs, met(raw_gbs >= 1.0));
        char mock_p99[64];
        if (lm.n)
            snprintf(mock_p99, sizeof mock_p99, "%.3f ms", (double)lm.p99 / 1e6);
        else
            snprintf(mock_p99, sizeof mock_p99, "- (failed)");
        printf("latency: sluice p99 %.3f ms at %.0f records/s, mock p99 %s at the same "
               "(target p99 < 5 ms): %s\n",
               (double)ls.p99 / 1e6, L[0].rate, mock_p99, met(ls.p99 < 5000000));
        if (busy > 1.6)
            printf("note: up to %.1f of 2 cores were busy in a phase: the server thread and "
                   "librdkafka's threads compete for them, so the figures are bounded by CPU\n",
                   busy);
        if (quick) printf("note: --quick sizes; the figures mean nothing\n");
    }
    status = 0;
fail:
    if (status && err[0]) fprintf(stderr, "sluice bench kafka: %s\n", err);
    if (mc) rd_kafka_mock_cluster_destroy(mc);
    if (mock_rk) rd_kafka_destroy(mock_rk);
    if (srv_started) {
        sl_server_stop(s);
        pthread_join(srv_th, NULL);
        if (st.rc < 0 && !status)
            fprintf(stderr, "sluice bench kafka: server: %s\n", sl_server_errmsg(s)), status = 1;
    }
    sl_server_close(s);
    sl_broker_close(b);
    if (made) nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}
