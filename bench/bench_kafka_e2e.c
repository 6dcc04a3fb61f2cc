/*
 * bench/bench_kafka_e2e.c - `sluice bench kafka-e2e`: jobs end to end
 * through Kafka (sluice/kafka.h's source and sink on librdkafka, against
 * sluice's own Kafka server in this process), next to the same jobs on the
 * built-in broker in process (issue 11's targets).
 *
 * Setup: a temporary broker directory; the server (sl_server_run) on a
 * thread of its own on 127.0.0.1, port 0; the input topics written through
 * sl_producer over the directory before the server opens (so it reads them
 * like any other), each run's output to a topic of its own.
 *
 *   1. ysb     the ysb job (examples/job_ysb.c's pipeline) from --events
 *              JSON events (default 1,000,000) in a 2-partition topic to an
 *              output topic, exactly-once with 1 s checkpoints, at 1 and 2
 *              threads: once on the built-in broker (--topic/--out-topic
 *              over the directory), once through Kafka (--kafka). events/s
 *              from start to the end of the run (the final checkpoint's
 *              commit included); ratio kafka / embedded (goal >= 0.7). The
 *              two outputs, read back read_committed, must be the same
 *              lines, else the benchmark fails.
 *   1b. group the same ysb through Kafka as a consumer group of one member
 *              (sl_kafka_group: `ysb --group`), so through the group's
 *              repartition topic: input tasks (views keyed by campaign into
 *              it), repartition tasks (the count), 1 s checkpoints each.
 *              A group follows its input, so the run is timed from the
 *              group's start until the output holds every window that the
 *              input's watermark closes (all but the last; checked against
 *              the output above, line for line), polled every 20 ms; two
 *              commit intervals of latency are in it (input task, then
 *              repartition task). events/s; ratio to "ysb kafka" at 1 thread.
 *   2. latency a stateless job (Kafka source -> Kafka sink, exactly-once,
 *              100 ms checkpoints) first drains --latency-records records
 *              (default 300,000) of 100 bytes as fast as it can: its peak.
 *              Then, following a fresh topic, it gets records paced at half
 *              that peak for --latency-seconds (default 3) from a librdkafka
 *              producer; each value carries its send time (CLOCK_MONOTONIC
 *              ns); a read_committed consumer of the output takes receive -
 *              send per record: event appended to result committed, p50 and
 *              p99 (what a checkpoint interval costs: results are visible at
 *              the commit after their barrier).
 *
 * Value layout of the latency records (host byte order):
 *
 *   offset  size  field
 *        0     8  seq       record number
 *        8     8  sent_ns   CLOCK_MONOTONIC at produce()
 *       16    84  filler
 *
 * Output: a table per figure, then "ysb:" and "latency:" lines with the goal
 * and "met" / "NOT met"; --csv the rows of DESIGN.md. --quick: tiny sizes
 * for the smoke test (its figures mean nothing).
 */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include "bench/bench.h"
#include "bench/bench_serve.h"
#include "bench/bench_util.h"
#include "examples/jobs.h"
#include "examples/jobs_window.h"

#define LAT_VALUE 100
#define WARMUP    UINT64_MAX /* seq of the warm-up records, not measured */

static const char *B = "sluice bench kafka-e2e";

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* --- inputs ----------------------------------------------------------------------- */

/* The ysb job's JSON events at events_per_s of event time (the generator's
 * 10,000, or 1,000 for --quick, so that its few events still span two
 * 10 s windows), as values of topic (no keys). */
static int fill_ysb(sl_broker *b, const char *topic, uint64_t events, uint64_t events_per_s)
{
    static ysb_job j;
    memset(&j, 0, sizeof(j));
    j.cmd = "bench kafka-e2e";
    j.events = events;
    j.events_per_s = events_per_s;
    if (ysb_campaigns(&j, NULL)) return -1;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int rc = f ? ysb_emit_json(&j, f) : -1;
    if (f) fclose(f);
    ysb_free(&j);
    sl_producer *pr = NULL;
    if (!rc) rc = sl_producer_open(&pr, b, topic);
    for (char *at = text; !rc && at && at < text + len;) {
        char *nl = memchr(at, '\n', (size_t)(text + len - at));
        size_t l = nl ? (size_t)(nl - at) : (size_t)(text + len - at);
        sl_record r = {.value = at, .value_len = l, .timestamp = sl_clock_ms()};
        rc = sl_producer_send(pr, SL_PARTITION_ANY, &r, NULL);
        at += l + 1;
    }
    if (!rc) rc = sl_producer_flush(pr);
    if (rc)
        fprintf(stderr, "%s: cannot fill '%s': %s\n", B, topic,
                pr ? sl_producer_errmsg(pr) : sl_strerror(rc));
    sl_producer_close(pr);
    free(text);
    return rc ? -1 : 0;
}

static int fill_plain(sl_broker *b, const char *topic, uint64_t n)
{
    sl_producer *pr = NULL;
    int rc = sl_producer_open(&pr, b, topic);
    uint8_t v[LAT_VALUE];
    memset(v, 'k', sizeof(v));
    int64_t now = sl_clock_ms();
    for (uint64_t i = 0; i < n && !rc; i++) {
        memcpy(v, &i, 8);
        sl_record r = {.value = v, .value_len = sizeof(v), .timestamp = now};
        rc = sl_producer_send(pr, 0, &r, NULL);
    }
    if (!rc) rc = sl_producer_flush(pr);
    if (rc)
        fprintf(stderr, "%s: cannot fill '%s': %s\n", B, topic,
                pr ? sl_producer_errmsg(pr) : sl_strerror(rc));
    sl_producer_close(pr);
    return rc ? -1 : 0;
}

/* Committed values of topic, sorted, newline-separated, into out. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int read_sorted(const char *dir, const char *topic, sl_buf *out)
{
    sl_broker *b = NULL;
    sl_topic_info *ti = NULL;
    int rc = sl_broker_open(&b, dir, 0);
    if (!rc) rc = sl_topic_describe(b, topic, &ti);
    char **v = NULL;
    size_t n = 0, cap = 0;
    for (int32_t p = 0; !rc && p < ti->partition_count; p++) {
        sl_log_reader *r = NULL;
        rc = sl_log_reader_open(&r, b, topic, p, SL_OFFSET_BEGINNING);
        int64_t end = ti->partitions[p].last_stable_offset;
        while (!rc && sl_log_reader_position(r) < end) {
            sl_message m;
            int e = sl_log_reader_next(r, &m, 0);
            if (e == SL_EAGAIN) break;
            if (e) {
                rc = e;
                break;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                char **nv = realloc(v, cap * sizeof(*v));
                if (!nv) {
                    rc = SL_ENOMEM;
                    break;
                }
                v = nv;
            }
            v[n] = strndup(m.value ? (const char *)m.value : "", m.value_len);
            if (!v[n]) rc = SL_ENOMEM;
            n++;
        }
        sl_log_reader_close(r);
    }
    if (!rc && n) qsort(v, n, sizeof(*v), cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (!rc) rc = sl_buf_append(out, v[i], strlen(v[i]));
        if (!rc) rc = sl_buf_append(out, "\n", 1);
        free(v[i]);
    }
    free(v);
    if (rc) fprintf(stderr, "%s: cannot read '%s': %s\n", B, topic, b ? sl_broker_errmsg(b) : "");
    sl_topic_info_free(ti);
    sl_broker_close(b);
    return rc ? -1 : (int)n;
}

/* --- figure 1: ysb ------------------------------------------------------------------ */

static int run_ysb(const char *dir, const char *bootstrap, uint64_t events, int threads,
                   const char *out, const char *ck, double *secs)
{
    static ysb_job j;
    memset(&j, 0, sizeof(j));
    j.cmd = "bench kafka-e2e";
    j.topic = "ysb-in";
    j.parallelism = threads;
    j.topics.job = "bench-ysb";
    if (bootstrap)
        j.topics.kafka = bootstrap;
    else
        j.topics.dir = dir;
    if (jobs_topics_check(j.cmd, &j.topics, j.topic, out)) return -1;
    if (ysb_campaigns(&j, NULL)) return -1;
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, threads);
    sl_stream *w = ysb_build(p, &j);
    jobs_topic_sink(p, w, &j.topics, NULL, "out", out, ysb_out_key, ysb_out_value, &j);
    sl_checkpoint_conf cc = {
        .dir = ck, .interval_ms = 1000, .guarantee = SL_GUARANTEE_EXACTLY_ONCE};
    int rc = sl_pipeline_set_checkpoint(p, &cc);
    double t0 = bench_now();
    if (!rc) rc = sl_pipeline_run(p);
    *secs = bench_now() - t0;
    if (rc)
        fprintf(stderr, "%s: ysb %s, %d threads: %s\n", B, bootstrap ? "kafka" : "embedded",
                threads, sl_pipeline_errmsg(p));
    uint64_t dl = atomic_load(&j.dl.count);
    if (!rc && dl) {
        fprintf(stderr, "%s: ysb: %" PRIu64 " dead letters\n", B, dl);
        rc = -1;
    }
    sl_pipeline_free(p);
    ysb_free(&j);
    return rc ? -1 : 0;
}

/* --- figure 1b: ysb through a group's repartition topic ---------------------------- */

typedef struct group_thread {
    sl_kafka_group *g;
    atomic_int done;
    int rc;
} group_thread;

static void *group_main(void *arg)
{
    group_thread *t = arg;
    t->rc = sl_kafka_group_run(t->g);
    atomic_store(&t->done, 1);
    return NULL;
}

/* The lines of sorted output `all` whose window (second field) is not the
 * last one: what a group that never sees the end of its input closes. */
static int closed_windows(const sl_buf *all, sl_buf *out)
{
    long long last = -1;
    for (size_t at = 0; at < all->len;) {
        const char *l = (const char *)all->ptr + at, *nl = memchr(l, '\n', all->len - at);
        const char *c = memchr(l, ',', (size_t)(nl - l));
        if (c && atoll(c + 1) > last) last = atoll(c + 1);
        at = (size_t)(nl - (const char *)all->ptr) + 1;
    }
    int n = 0;
    for (size_t at = 0; at < all->len;) {
        const char *l = (const char *)all->ptr + at, *nl = memchr(l, '\n', all->len - at);
        const char *c = memchr(l, ',', (size_t)(nl - l));
        if (c && atoll(c + 1) != last) {
            if (sl_buf_append(out, l, (size_t)(nl - l) + 1)) return -1;
            n++;
        }
        at = (size_t)(nl - (const char *)all->ptr) + 1;
    }
    return n;
}

static int run_ysb_group(const char *dir, const char *bootstrap, const char *out,
                         const sl_buf *want, int want_lines, double *secs)
{
    static ysb_job j;
    memset(&j, 0, sizeof(j));
    j.cmd = "bench kafka-e2e";
    j.topic = "ysb-in";
    j.topics.job = "bench-ysb";
    j.topics.kafka = bootstrap;
    j.topics.group = "bench-ysb-group";
    if (jobs_topics_check(j.cmd, &j.topics, j.topic, out)) return -1;
    if (ysb_campaigns(&j, NULL)) return -1;
    ysb_group yg;
    ysb_group_init(&yg, &j, out);
    char work[600];
    snprintf(work, sizeof work, "%s/group-work", dir);
    sl_kafka_group_conf gc = {.bootstrap = bootstrap,
                              .topic = j.topic,
                              .group_id = j.topics.group,
                              .work_dir = work,
                              .checkpoint_interval_ms = 1000,
                              .threads = 1,
                              .build = ysb_count_task,
                              .repartition = ysb_input_task,
                              .ud = &yg,
                              .log_prefix = "sluice bench kafka-e2e: group: "};
    group_thread gt = {0};
    atomic_init(&gt.done, 0);
    int rc = sl_kafka_group_new(&gt.g, &gc);
    pthread_t th;
    double t0 = bench_now();
    if (!rc && pthread_create(&th, NULL, group_main, &gt)) rc = SL_ENOMEM;
    if (rc) {
        fprintf(stderr, "%s: ysb group: %s\n", B,
                gt.g ? sl_kafka_group_errmsg(gt.g) : sl_strerror(rc));
        sl_kafka_group_free(gt.g);
        ysb_free(&j);
        return -1;
    }
    sl_buf got = {0};
    int n = 0;
    for (int i = 0; i < 15000 && !atomic_load(&gt.done); i++) { /* 300 s at most */
        got.len = 0;
        n = read_sorted(dir, out, &got);
        if (n < 0 || n >= want_lines) break;
        usleep(20000);
    }
    *secs = bench_now() - t0;
    sl_kafka_group_stop(gt.g);
    pthread_join(th, NULL);
    int ok = n == want_lines && gt.rc == 0;
    if (gt.rc) {
        fprintf(stderr, "%s: ysb group: %s\n", B, sl_kafka_group_errmsg(gt.g));
    } else if (n != want_lines) {
        fprintf(stderr, "%s: ysb group: %d of %d results came out within 300 s\n", B, n,
                want_lines);
    } else {
        /* after the stop: nothing more, and the same lines */
        got.len = 0;
        n = read_sorted(dir, out, &got);
        if (n != want_lines || got.len != want->len || memcmp(got.ptr, want->ptr, got.len)) {
            fprintf(stderr,
                    "%s: ysb group: the output through the repartition topic (%d results) "
                    "differs from the closed windows of the job's (%d results)\n",
                    B, n, want_lines);
            ok = 0;
        }
    }
    uint64_t dl = atomic_load(&j.dl.count);
    if (ok && dl) {
        fprintf(stderr, "%s: ysb group: %" PRIu64 " dead letters\n", B, dl);
        ok = 0;
    }
    sl_buf_free(&got);
    sl_kafka_group_free(gt.g);
    ysb_free(&j);
    return ok ? 0 : -1;
}

/* --- figure 2: latency --------------------------------------------------------------- */

typedef struct lat_consumer {
    const char *bootstrap, *topic;
    uint64_t expect;
    int64_t *lat; /* [expect], ns */
    atomic_uint_fast64_t got;
    atomic_int warm; /* a warm-up record came through: the path is up */
    atomic_int stop, failed;
    char err[600];
} lat_consumer;

static void *lat_consume(void *arg)
{
    lat_consumer *c = arg;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "bench-e2e-lat", err, sizeof err);
    rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof err);
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "1", err, sizeof err);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        snprintf(c->err, sizeof c->err, "consumer: %s", err);
        atomic_store(&c->failed, 1);
        return NULL;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, c->topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    while (!atomic_load(&c->stop) && atomic_load(&c->got) < c->expect) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (!m) continue;
        int64_t t = now_ns();
        if (!m->err && m->len >= 16) {
            uint64_t seq;
            int64_t sent;
            memcpy(&seq, m->payload, 8);
            memcpy(&sent, (const char *)m->payload + 8, 8);
            if (seq == WARMUP) {
                atomic_store(&c->warm, 1);
                rd_kafka_message_destroy(m);
                continue;
            }
            uint64_t k = atomic_load(&c->got);
            if (k < c->expect) c->lat[k] = t - sent;
            atomic_store(&c->got, k + 1);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int value_only(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    sl_bytes v = sl_broker_rec_value((sl_bytes){rec, len});
    return sl_buf_append(out, v.ptr, v.len);
}

/* The stateless job in p: topic in (follow unless bounded) -> topic out. */
static sl_pipeline *lat_pipeline(const char *bootstrap, const char *in, const char *out,
                                 int bounded, const char *ck, sl_kafka_sink_conf *sc)
{
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 1);
    sl_kafka_source_conf kc = {
        .bootstrap = bootstrap, .topic = in, .start = SL_OFFSET_BEGINNING, .until_end = bounded};
    sl_stream *s = sl_pipeline_kafka(p, "in", &kc, 0, NULL);
    /* the record is the broker layout: key length, key, value; the value goes out */
    *sc = (sl_kafka_sink_conf){.bootstrap = bootstrap, .topic = out, .format = value_only};
    sl_stream_sink(s, "out", &sl_sink_kafka, sc);
    sl_checkpoint_conf cc = {.dir = ck, .interval_ms = 100, .guarantee = SL_GUARANTEE_EXACTLY_ONCE};
    sl_pipeline_set_checkpoint(p, &cc);
    return p;
}

/* --- the benchmark ------------------------------------------------------------------ */

int bench_kafka_e2e(int argc, char **argv)
{
    enum { O_EVENTS = 0x2000, O_LREC, O_LSEC, O_CSV, O_QUICK };
    static const struct option opts[] = {{"events", required_argument, NULL, O_EVENTS},
                                         {"latency-records", required_argument, NULL, O_LREC},
                                         {"latency-seconds", required_argument, NULL, O_LSEC},
                                         {"csv", no_argument, NULL, O_CSV},
                                         {"quick", no_argument, NULL, O_QUICK},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    long long events = 1000000, lrec = 300000, lsec = 3;
    int csv = 0, quick = 0, opt;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        int r = 0;
        switch (opt) {
        case O_EVENTS:
            r = jobs_int("bench kafka-e2e", "--events", optarg, 1000, 1LL << 32, &events);
            break;
        case O_LREC:
            r = jobs_int("bench kafka-e2e", "--latency-records", optarg, 1000, 1LL << 30, &lrec);
            break;
        case O_LSEC:
            r = jobs_int("bench kafka-e2e", "--latency-seconds", optarg, 1, 600, &lsec);
            break;
        case O_CSV: csv = 1; break;
        case O_QUICK:
            quick = 1;
            events = 20000;
            lrec = 5000;
            lsec = 1;
            break;
        default:
            r = jobs_opt("bench kafka-e2e", opt, argv, NULL);
            if (r == JOBS_HELP) {
                printf("usage: sluice bench kafka-e2e [--events N] [--latency-records N]\n"
                       "           [--latency-seconds S] [--csv] [--quick]\n"
                       "ysb from a topic to a topic, exactly-once with 1 s checkpoints, through\n"
                       "Kafka (sluice's server in this process) against the same job on the\n"
                       "built-in broker; then end-to-end latency at half of a stateless job's\n"
                       "peak with 100 ms checkpoints.\n");
                return 0;
            }
            break;
        }
        if (r) return r;
    }
    if (jobs_no_operands("bench kafka-e2e", argc, argv)) return 2;

    int status = 1;
    char dir[] = "/tmp/sluice-kafka-e2e.XXXXXX";
    sl_broker *b = NULL;
    sl_server *s = NULL;
    srv_thread st = {0};
    pthread_t th;
    int th_started = 0;
    sl_buf emb = {0}, kaf = {0};
    int64_t *lat = NULL;
    if (!mkdtemp(dir)) {
        fprintf(stderr, "%s: cannot make a temporary directory: %s\n", B, strerror(errno));
        return 1;
    }
    sl_topic_conf tc1, tc2;
    sl_topic_conf_init(&tc1);
    sl_topic_conf_init(&tc2);
    tc2.partitions = 2;
    const char *outs[] = {"out-emb-1", "out-emb-2", "out-k-1", "out-k-2", "out-group"};
    if (sl_broker_open(&b, dir, 0) || sl_topic_create(b, "ysb-in", &tc2) ||
        sl_topic_create(b, "lat-in", &tc1) || sl_topic_create(b, "lat-out", &tc1) ||
        sl_topic_create(b, "lat-in2", &tc1) || sl_topic_create(b, "lat-out2", &tc1)) {
        fprintf(stderr, "%s: %s\n", B, b ? sl_broker_errmsg(b) : "cannot open the broker");
        goto out;
    }
    for (int i = 0; i < 5; i++)
        if (sl_topic_create(b, outs[i], &tc2)) {
            fprintf(stderr, "%s: %s\n", B, sl_broker_errmsg(b));
            goto out;
        }
    if (!csv)
        fprintf(stderr, "%s: writing %lld ysb events and %lld records in %s\n", B, events, lrec,
                dir);
    if (fill_ysb(b, "ysb-in", (uint64_t)events, quick ? 1000 : 10000) ||
        fill_plain(b, "lat-in", (uint64_t)lrec))
        goto out;
    if (sl_server_open(&s, b, "127.0.0.1:0") < 0) {
        fprintf(stderr, "%s: server: %s\n", B, s ? sl_server_errmsg(s) : "out of memory");
        goto out;
    }
    st.s = s;
    if (pthread_create(&th, NULL, server_main, &st)) goto out;
    th_started = 1;
    char boot[64];
    snprintf(boot, sizeof boot, "127.0.0.1:%d", sl_server_port(s));

    /* figure 1 */
    double secs[2][2] = {{0}};
    for (int t = 1; t <= 2; t++) {
        for (int k = 0; k < 2; k++) {
            char ck[600];
            snprintf(ck, sizeof ck, "%s/ck-ysb-%d-%d", dir, k, t);
            if (run_ysb(dir, k ? boot : NULL, (uint64_t)events, t, outs[k * 2 + t - 1], ck,
                        &secs[t - 1][k]))
                goto out;
        }
        emb.len = kaf.len = 0;
        int ne = read_sorted(dir, outs[t - 1], &emb), nk = read_sorted(dir, outs[2 + t - 1], &kaf);
        if (ne < 0 || nk < 0) goto out;
        if (ne == 0 || emb.len != kaf.len || memcmp(emb.ptr, kaf.ptr, emb.len)) {
            fprintf(stderr,
                    "%s: ysb at %d threads: the output through Kafka (%d results) differs from "
                    "the embedded one (%d results)\n",
                    B, t, nk, ne);
            goto out;
        }
    }
    /* figure 1b: the closed windows of that output, through a group */
    sl_buf closed = {0};
    int nclosed = closed_windows(&kaf, &closed);
    double gsecs = 0;
    if (nclosed <= 0 || run_ysb_group(dir, boot, outs[4], &closed, nclosed, &gsecs)) {
        if (nclosed <= 0) fprintf(stderr, "%s: ysb group: no closed window to expect\n", B);
        sl_buf_free(&closed);
        goto out;
    }
    sl_buf_free(&closed);
    if (!csv) printf("ysb, topic to topic, exactly-once, 1 s checkpoints (%lld events):\n", events);
    bench_header(csv);
    for (int t = 1; t <= 2; t++) {
        bench_row(csv, "kafka-e2e", "ysb embedded", t, (uint64_t)events, secs[t - 1][0]);
        bench_row(csv, "kafka-e2e", "ysb kafka", t, (uint64_t)events, secs[t - 1][1]);
    }
    bench_row(csv, "kafka-e2e", "ysb kafka group", 1, (uint64_t)events, gsecs);

    /* figure 2: peak of the stateless job, then latency at half of it */
    char ck[600];
    sl_kafka_sink_conf sc;
    snprintf(ck, sizeof ck, "%s/ck-peak", dir);
    sl_pipeline *p = lat_pipeline(boot, "lat-in", "lat-out", 1, ck, &sc);
    double t0 = bench_now();
    int rc = sl_pipeline_run(p);
    double peak_s = bench_now() - t0;
    if (rc) {
        fprintf(stderr, "%s: latency peak: %s\n", B, sl_pipeline_errmsg(p));
        sl_pipeline_free(p);
        goto out;
    }
    sl_pipeline_free(p);
    double peak = (double)lrec / peak_s, rate = peak / 2;
    uint64_t n = (uint64_t)(rate * (double)lsec);
    if (n < 100) n = 100;
    lat = calloc(n, sizeof(*lat));
    lat_consumer lc = {.bootstrap = boot, .topic = "lat-out2", .expect = n, .lat = lat};
    atomic_init(&lc.got, 0);
    atomic_init(&lc.stop, 0);
    atomic_init(&lc.failed, 0);
    atomic_init(&lc.warm, 0);
    snprintf(ck, sizeof ck, "%s/ck-lat", dir);
    p = lat_pipeline(boot, "lat-in2", "lat-out2", 0, ck, &sc);
    pthread_t cth;
    if (!lat || sl_pipeline_start(p) || pthread_create(&cth, NULL, lat_consume, &lc)) {
        fprintf(stderr, "%s: latency: cannot start: %s\n", B, sl_pipeline_errmsg(p));
        sl_pipeline_free(p);
        goto out;
    }
    char err[512];
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set(pc, "bootstrap.servers", boot, err, sizeof err);
    rd_kafka_conf_set(pc, "linger.ms", "1", err, sizeof err);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
    int perr = !prod;
    uint8_t v[LAT_VALUE];
    memset(v, 'k', sizeof v);
    /* Warm-up: records not measured, every 10 ms until one came out committed
     * (the job's clients and the consumer take a while to start fetching;
     * librdkafka starts up to 0.5 s after an assign), at most 30 s. */
    for (int w = 0; prod && w < 3000 && !atomic_load(&lc.warm) && !atomic_load(&lc.failed); w++) {
        uint64_t seq = WARMUP;
        int64_t t = now_ns();
        memcpy(v, &seq, 8);
        memcpy(v + 8, &t, 8);
        rd_kafka_producev(prod, RD_KAFKA_V_TOPIC("lat-in2"), RD_KAFKA_V_PARTITION(0),
                          RD_KAFKA_V_VALUE(v, sizeof v), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_END);
        rd_kafka_poll(prod, 10);
    }
    if (!atomic_load(&lc.warm)) perr = 1;
    int64_t start = now_ns();
    for (uint64_t i = 0; i < n && prod; i++) {
        int64_t due = start + (int64_t)((double)i * 1e9 / rate);
        int64_t t = now_ns();
        if (due > t) {
            struct timespec d = {(due - t) / 1000000000, (due - t) % 1000000000};
            nanosleep(&d, NULL);
        }
        int64_t sent = now_ns();
        memcpy(v, &i, 8);
        memcpy(v + 8, &sent, 8);
        while (rd_kafka_producev(prod, RD_KAFKA_V_TOPIC("lat-in2"), RD_KAFKA_V_PARTITION(0),
                                 RD_KAFKA_V_VALUE(v, sizeof v),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(prod, 1);
        rd_kafka_poll(prod, 0);
    }
    if (prod && rd_kafka_flush(prod, 30000)) perr = 1;
    /* wait for every record to come out committed (at most 60 s) */
    for (int i = 0; i < 6000 && atomic_load(&lc.got) < n && !atomic_load(&lc.failed); i++)
        usleep(10000);
    atomic_store(&lc.stop, 1);
    pthread_join(cth, NULL);
    double lat_s = (double)(now_ns() - start) / 1e9;
    sl_pipeline_cancel(p);
    rc = sl_pipeline_wait(p, -1);
    if (rc) fprintf(stderr, "%s: latency job: %s\n", B, sl_pipeline_errmsg(p));
    sl_checkpoint_stats cs;
    sl_pipeline_checkpoint_stats(p, &cs);
    sl_pipeline_free(p);
    if (prod) rd_kafka_destroy(prod);
    uint64_t got = atomic_load(&lc.got);
    if (perr || rc || got < n || atomic_load(&lc.failed)) {
        fprintf(stderr, "%s: latency: %" PRIu64 " of %" PRIu64 " records came out committed%s%s\n",
                B, got, n, lc.err[0] ? ": " : "", lc.err);
        goto out;
    }
    qsort(lat, n, sizeof(*lat), cmp_i64);
    double p50 = (double)lat[n / 2] / 1e6, p99 = (double)lat[n * 99 / 100] / 1e6,
           mx = (double)lat[n - 1] / 1e6;
    bench_plot_latency("appended to committed", 1, p50, p99);
    if (csv) {
        bench_row(csv, "kafka-e2e", "stateless peak", 1, (uint64_t)lrec, peak_s);
        printf("kafka-e2e,latency-p50-ms,1,%" PRIu64 ",%.3f,%.0f,%.1f\n", n, p50, rate,
               bench_peak_rss_mb());
        printf("kafka-e2e,latency-p99-ms,1,%" PRIu64 ",%.3f,%.0f,%.1f\n", n, p99, rate,
               bench_peak_rss_mb());
    } else {
        printf("stateless job Kafka -> Kafka, exactly-once, 100 ms checkpoints:\n");
        bench_header(csv);
        bench_row(csv, "kafka-e2e", "stateless peak", 1, (uint64_t)lrec, peak_s);
        printf("  latency at %.0f records/s (half the peak), %" PRIu64
               " records: p50 %.1f ms, p99 %.1f ms, max %.1f ms (appended -> committed)\n",
               rate, n, p50, p99, mx);
        printf("  checkpoints: %" PRIu64 " in %.1f s (one every %.0f ms; barrier -> manifest "
               "p50 %.1f ms, p99 %.1f ms)\n",
               cs.completed, lat_s, cs.completed ? lat_s * 1e3 / (double)cs.completed : 0,
               cs.duration_p50_ms, cs.duration_p99_ms);
        for (int t = 1; t <= 2; t++) {
            double r = secs[t - 1][0] > 0 ? secs[t - 1][0] / secs[t - 1][1] : 0;
            printf("ysb: %d thread%s: kafka / embedded = %.2f (goal >= 0.7): %s\n", t,
                   t > 1 ? "s" : "", r, r >= 0.7 ? "met" : "NOT met");
        }
        printf("ysb through a group's repartition topic (1 member, 1 thread per task): "
               "group / kafka = %.2f (%d closed windows' results, the same)\n",
               gsecs > 0 ? secs[0][1] / gsecs : 0, nclosed);
        printf("latency: p50 %.1f ms, p99 %.1f ms at half of peak, 100 ms checkpoints\n", p50, p99);
    }
    status = 0;
out:
    if (th_started) {
        sl_server_stop(s);
        pthread_join(th, NULL);
    }
    sl_server_close(s);
    sl_broker_close(b);
    sl_buf_free(&emb);
    sl_buf_free(&kaf);
    free(lat);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}
