/*
 * connectors/kafka/group.c - scale-out through a Kafka consumer group
 * (sl_kafka_group, sluice/kafka.h): each input partition is a task, a
 * pipeline of its own whose state travels through Kafka.
 *
 * Stages. A group reads one topic, the input (stage 0), or two when it
 * repartitions: then the input's tasks write the repartition topic (stage
 * 1), whose partitions are tasks too. Both topics are subscribed by the one
 * membership consumer, so Kafka's assignor spreads both; range assignment
 * per topic. Watermarks cross the repartition topic as markers (the sink
 * sends them, the source reads them: kafka_int.h draws them).
 *
 *   stage  reads        built by                 txid               state key
 *   0      input p      conf.build (or           sluice-<group>-p    "p"
 *                       conf.repartition)
 *   1      repartition  conf.build               sluice-<group>-rp   "rp"
 *          p
 *
 * A task's state record goes to the state topic's partition p modulo its
 * partition count (it is made with the input's count).
 *
 * Membership. One librdkafka consumer per process subscribes to the group's
 * topics and is polled by the run loop; it reads nothing (its
 * assigned partitions are paused at once): it is only how the group protocol
 * tells this process which partitions it owns. The tasks read and write
 * with their own clients (the task's source and sink, sluice/kafka.h).
 * Rebalances are eager: on a revocation every task of a revoked partition
 * is cancelled, which takes and commits a final checkpoint (output, offset
 * and state in one transaction), before the rebalance callback returns; on
 * an assignment, tasks start for the new partitions.
 *
 * Starting a task for partition p of topic T:
 *   1. its local directory WORK/T-p is wiped: a local checkpoint may be newer
 *      than what was committed (its commit was fenced), so only the state
 *      topic is trusted;
 *   2. the task's state topic partition is read to its end (read_committed)
 *      and its last record with the task's key, if any, is unpacked into
 *      WORK/T-p/chk-N/;
 *   3. the pipeline is built (build callback), given checkpoints in WORK/T-p
 *      (exactly-once, sync capture), and started: it resumes from chk-N if
 *      there is one, else from the group's committed offset of p, else from
 *      the beginning.
 * A task that fails (a fenced commit, a broker error) fails the whole
 * process: the others are cancelled and the message names the partition.
 *
 * The state record (value; key: the task's state key), little-endian:
 *
 *   offset  size  field
 *   0       4     magic "SLKS"
 *   4       4     version (1)
 *   8       8     checkpoint id N
 *   16      4     files F
 *   then F times:
 *           2     name length L
 *           L     file name (no '/')
 *           8     size S
 *           S     the file's bytes
 *
 * Threads: everything here runs on the thread that called
 * sl_kafka_group_run (rebalance callbacks included: librdkafka calls them
 * from rd_kafka_consumer_poll); the tasks run on their pipelines' workers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "connectors/kafka/kafka_int.h"
#include "engine/base/le.h"
#include "sluice/kafka.h"

#define STATE_MAGIC        "SLKS"
#define STATE_MAX_BYTES    (64 << 20)
#define RESTORE_TIMEOUT_MS 30000

typedef struct task {
    sl_kafka_task t;
    sl_pipeline *p;
    char *dir;
    int running;
} task;

/* The tasks of one topic the group reads: the input (stage 0) and, when
 * repartitioning, the repartition topic (stage 1). */
typedef struct stage {
    const char *topic;
    int32_t n_parts;
    task *tasks; /* [n_parts] */
    sl_kafka_build_fn build;
} stage;

/* A partition assigned whose task has not started yet. */
typedef struct pend {
    int stage;
    int32_t part;
} pend;

struct sl_kafka_group {
    sl_kafka_group_conf c;
    char **props;
    char *bootstrap, *topic, *group_id, *state_topic, *work_dir, *prefix, *rtopic;
    rd_kafka_t *rk;      /* membership */
    rd_kafka_t *restore; /* reads the state topic */
    stage st[2];
    int n_stages;
    int32_t state_parts; /* the state topic's partition count */
    pend *pending;       /* [n_parts of all stages] */
    int n_pending;       /* entries in pending, */
    int next_pending;    /* of which those before this have been started */
    volatile sig_atomic_t stop;
    atomic_int lost; /* the group took our partitions away (session expired) */
    int err;
    char errmsg[512];
};

static int fail(sl_kafka_group *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(sl_kafka_group *g, int code, const char *fmt, ...)
{
    if (g->err) return g->err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->errmsg, sizeof(g->errmsg), fmt, ap);
    va_end(ap);
    g->err = code ? code : SL_EIO;
    return g->err;
}

static void say(const sl_kafka_group *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const sl_kafka_group *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(g->prefix, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int32_t sl_kafka_task_partition(const sl_kafka_task *t)
{
    return t ? t->partition : -1;
}

const char *sl_kafka_task_topic(const sl_kafka_task *t)
{
    return t ? t->topic : NULL;
}

const char *sl_kafka_task_repartition_topic(const sl_kafka_task *t)
{
    return t ? t->repartition : NULL;
}

int slk_task_lost(const sl_kafka_task *t)
{
    return t && t->g && atomic_load(&t->g->lost);
}

rd_kafka_consumer_group_metadata_t *slk_task_group_metadata(const sl_kafka_task *t)
{
    if (!t || !t->g || !t->g->rk) return NULL;
    return rd_kafka_consumer_group_metadata(t->g->rk);
}

/* --- the state record ----------------------------------------------------------------- */

int slk_state_pack(const char *chk_dir, uint64_t id, sl_buf *out, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/chk-%" PRIu64, chk_dir, id);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, errlen, "cannot read checkpoint %s: %s", path, strerror(errno));
        return SL_EIO;
    }
    size_t start = out->len, at_count;
    uint32_t files = 0;
    int rc = sl_buf_reserve(out, 20);
    if (rc) goto oom;
    memcpy(out->ptr + out->len, STATE_MAGIC, 4);
    sli_put_le(out->ptr + out->len + 4, 1, 4);
    sli_put_le(out->ptr + out->len + 8, id, 8);
    at_count = out->len + 16;
    out->len += 20;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char f[4400];
        snprintf(f, sizeof(f), "%s/%s", path, e->d_name);
        int fd = open(f, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
            if (fd >= 0) close(fd);
            snprintf(err, errlen, "cannot read %s: %s", f, strerror(errno));
            rc = SL_EIO;
            goto out;
        }
        size_t nl = strlen(e->d_name);
        if ((rc = sl_buf_reserve(out, 10 + nl + (size_t)st.st_size))) {
            close(fd);
            goto oom;
        }
        uint8_t *p = out->ptr + out->len;
        sli_put_le(p, nl, 2);
        memcpy(p + 2, e->d_name, nl);
        sli_put_le(p + 2 + nl, (uint64_t)st.st_size, 8);
        size_t got = 0, want = (size_t)st.st_size;
        while (got < want) {
            ssize_t r = read(fd, p + 10 + nl + got, want - got);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                break;
            }
            got += (size_t)r;
        }
        close(fd);
        if (got != want) {
            snprintf(err, errlen, "cannot read %s: short read", f);
            rc = SL_EIO;
            goto out;
        }
        out->len += 10 + nl + want;
        files++;
    }
    sli_put_le(out->ptr + at_count, files, 4);
    if (out->len - start > STATE_MAX_BYTES) {
        snprintf(err, errlen,
                 "the state of checkpoint %" PRIu64 " is %zu bytes, above the state topic's "
                 "limit of %d",
                 id, out->len - start, STATE_MAX_BYTES);
        rc = SL_ERANGE;
    }
out:
    closedir(d);
    if (rc) out->len = start;
    return rc;
oom:
    snprintf(err, errlen, "out of memory packing checkpoint %" PRIu64, id);
    rc = SL_ENOMEM;
    goto out;
}

/* Unpack a state record into dir/chk-N/. Returns 0 (and *id) or a code. */
static int state_unpack(sl_kafka_group *g, const char *key, const uint8_t *v, size_t len,
                        const char *dir, uint64_t *id)
{
    if (len < 20 || memcmp(v, STATE_MAGIC, 4) != 0 || sli_get_le(v + 4, 4) != 1)
        return fail(g, SL_ECORRUPT, "task %s: the state record in '%s' is not sluice's", key,
                    g->state_topic);
    *id = sli_get_le(v + 8, 8);
    uint32_t files = (uint32_t)sli_get_le(v + 16, 4);
    char path[4096];
    snprintf(path, sizeof(path), "%s/chk-%" PRIu64, dir, *id);
    if (mkdir(path, 0755) && errno != EEXIST)
        return fail(g, SL_EIO, "cannot make %s: %s", path, strerror(errno));
    size_t at = 20;
    for (uint32_t i = 0; i < files; i++) {
        if (len - at < 2) goto bad;
        size_t nl = sli_get_le(v + at, 2);
        if (len - at < 10 + nl) goto bad;
        char name[256];
        if (nl == 0 || nl >= sizeof(name)) goto bad;
        memcpy(name, v + at + 2, nl);
        name[nl] = 0;
        if (strchr(name, '/') || name[0] == '.') goto bad;
        uint64_t size = sli_get_le(v + at + 2 + nl, 8);
        at += 10 + nl;
        if (size > len - at) goto bad;
        char f[4400];
        snprintf(f, sizeof(f), "%s/%s", path, name);
        int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return fail(g, SL_EIO, "cannot write %s: %s", f, strerror(errno));
        size_t put = 0;
        while (put < size) {
            ssize_t w = write(fd, v + at + put, (size_t)size - put);
            if (w <= 0) {
                if (w < 0 && errno == EINTR) continue;
                break;
            }
            put += (size_t)w;
        }
        if (close(fd) || put != size) return fail(g, SL_EIO, "cannot write %s", f);
        at += (size_t)size;
    }
    if (at != len) goto bad;
    return 0;
bad:
    return fail(g, SL_ECORRUPT, "task %s: the state record in '%s' is malformed", key,
                g->state_topic);
}

/* --- the state topic -------------------------------------------------------------- */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);

/* A client with sluice's settings, then extra (name, value pairs), then the
 * user's properties. The member (membership client) gets the rebalance
 * callback. */
static rd_kafka_t *client(sl_kafka_group *g, const char *const *extra, int member)
{
    char err[512];
    rd_kafka_conf_t *conf = slk_conf_new(g->bootstrap, NULL, err, sizeof(err));
    if (!conf) {
        fail(g, SL_EINVAL, "%s", err);
        return NULL;
    }
    for (; extra && extra[0]; extra += 2)
        if (rd_kafka_conf_set(conf, extra[0], extra[1], err, sizeof(err))) {
            rd_kafka_conf_destroy(conf);
            fail(g, SL_EINVAL, "librdkafka configuration: %s", err);
            return NULL;
        }
    /* the user's properties last: they win */
    for (char **p = g->props; p && *p; p++) {
        char *eq = strchr(*p, '=');
        char key[256];
        size_t kl = eq ? (size_t)(eq - *p) : 0;
        if (!eq || kl >= sizeof(key)) continue; /* slk_conf_new checked them at new */
        memcpy(key, *p, kl);
        key[kl] = 0;
        if (rd_kafka_conf_set(conf, key, eq + 1, err, sizeof(err))) {
            rd_kafka_conf_destroy(conf);
            fail(g, SL_EINVAL, "librdkafka configuration: %s", err);
            return NULL;
        }
    }
    if (member) {
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_opaque(conf, g);
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        fail(g, SL_EIO, "cannot start a Kafka client for %s: %s", g->bootstrap, err);
    }
    return rk;
}

/* A topic's partition count (and that the cluster answers); 0 when the
 * topic does not exist and may_miss, else a failure. */
static int topic_partitions(sl_kafka_group *g, const char *topic, int may_miss, int32_t *n)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(g->rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(g->rk, 0, t, &md, 10000);
    if (t) rd_kafka_topic_destroy(t);
    if (e)
        return fail(g, SL_EIO, "cannot reach Kafka at %s: %s", g->bootstrap, rd_kafka_err2str(e));
    int rc = 0;
    *n = 0;
    if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        if (!may_miss)
            rc = fail(g, SL_ENOENT, "topic '%s' does not exist on %s", topic, g->bootstrap);
    } else {
        *n = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Make a topic if missing (compacted: the state topic); then *n is its
 * partition count. */
static int topic_ensure(sl_kafka_group *g, const char *topic, int32_t parts, int compacted,
                        int32_t *n)
{
    int rc = topic_partitions(g, topic, 1, n);
    if (rc || *n > 0) return rc;
    char err[512];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, parts, 1, err, sizeof(err));
    if (!nt) return fail(g, SL_EINVAL, "topic '%s': %s", topic, err);
    if (compacted) {
        rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
        char maxb[32];
        snprintf(maxb, sizeof(maxb), "%d", STATE_MAX_BYTES);
        rd_kafka_NewTopic_set_config(nt, "max.message.bytes", maxb);
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(g->rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(g->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(o, 10000, err, sizeof(err));
    rd_kafka_CreateTopics(g->rk, &nt, 1, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);
    if (!ev) {
        rc = fail(g, SL_EAGAIN, "topic '%s': no answer from %s", topic, g->bootstrap);
    } else if (rd_kafka_event_error(ev)) {
        rc = fail(g, SL_EIO, "topic '%s': %s", topic, rd_kafka_event_error_string(ev));
    } else {
        size_t nr = 0;
        const rd_kafka_topic_result_t **r =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nr);
        rd_kafka_resp_err_t e = nr ? rd_kafka_topic_result_error(r[0]) : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
            rc = fail(g, SL_EIO, "cannot create topic '%s': %s", topic,
                      rd_kafka_topic_result_error_string(r[0]));
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    /* made now, or by another member at the same time: its count */
    for (int i = 0; !rc && *n == 0 && i < 50; i++) {
        rc = topic_partitions(g, topic, 1, n);
        if (!rc && *n == 0) usleep(100 * 1000);
    }
    if (!rc && *n == 0) rc = fail(g, SL_EIO, "topic '%s' was made but does not show", topic);
    return rc;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Read the state topic's partition of task t to its end; the last record
 * with the task's key goes to dir. *found says whether there was one. */
static int state_restore(sl_kafka_group *g, const sl_kafka_task *t, const char *dir, int *found,
                         uint64_t *id)
{
    *found = 0;
    const char *key = t->state_key;
    size_t kl = strlen(key);
    int32_t part = t->state_partition;
    int64_t lo = 0, hi = 0;
    /* A broker slow to answer (a loaded machine) is waited out, as the
     * reading that follows is, for RESTORE_TIMEOUT_MS. */
    double t0 = mono_s();
    rd_kafka_resp_err_t e;
    do {
        e = rd_kafka_query_watermark_offsets(g->restore, g->state_topic, part, &lo, &hi, 10000);
    } while (e && !slk_err_fatal(e) && !g->stop && (mono_s() - t0) * 1000 < RESTORE_TIMEOUT_MS);
    if (e)
        return fail(g, SL_EIO, "state topic '%s' partition %d: %s", g->state_topic, (int)part,
                    rd_kafka_err2str(e));
    if (hi <= lo) return 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, g->state_topic, part)->offset = RD_KAFKA_OFFSET_BEGINNING;
    e = rd_kafka_assign(g->restore, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) return fail(g, SL_EIO, "state topic '%s': %s", g->state_topic, rd_kafka_err2str(e));
    sl_buf last = {0};
    int rc = 0, have = 0;
    double waited = 0;
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g->restore, 200);
        if (!m) {
            waited += 200;
            if (waited > RESTORE_TIMEOUT_MS) {
                rc = fail(g, SL_EAGAIN,
                          "state topic '%s' partition %d: not read to its end within %d s",
                          g->state_topic, (int)part, RESTORE_TIMEOUT_MS / 1000);
                break;
            }
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        if (m->err) {
            rc = fail(g, SL_EIO, "state topic '%s' partition %d: %s", g->state_topic, (int)part,
                      rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            break;
        }
        if (m->key_len == kl && memcmp(m->key, key, kl) == 0) {
            last.len = 0;
            if (m->len && sl_buf_append(&last, m->payload, m->len)) rc = SL_ENOMEM;
            have = m->len > 0; /* an empty value would be a tombstone */
        }
        rd_kafka_message_destroy(m);
        if (rc) {
            fail(g, rc, "out of memory restoring task %s", key);
            break;
        }
    }
    rd_kafka_assign(g->restore, NULL);
    if (!rc && have) {
        rc = state_unpack(g, key, last.ptr, last.len, dir, id);
        if (!rc) *found = 1;
    }
    sl_buf_free(&last);
    return rc;
}

/* --- tasks ------------------------------------------------------------------------ */

static int rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char f[4400];
        snprintf(f, sizeof(f), "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(f, &st) == 0 && S_ISDIR(st.st_mode))
            rc |= rm_tree(f);
        else
            rc |= unlink(f);
    }
    closedir(d);
    return rc | rmdir(path);
}

/* A task's name in lines: "partition 3" of the input, "repartition
 * partition 3" of the repartition topic. */
static const char *stage_word(int st)
{
    return st ? "repartition partition" : "partition";
}

static int task_start(sl_kafka_group *g, int st, int32_t part)
{
    double t0 = mono_s();
    stage *sg = &g->st[st];
    task *k = &sg->tasks[part];
    if (k->running) return 0;
    free(k->dir);
    if (asprintf(&k->dir, "%s/%s-%d", g->work_dir, sg->topic, (int)part) < 0) {
        k->dir = NULL;
        return fail(g, SL_ENOMEM, "out of memory");
    }
    if (rm_tree(k->dir) || mkdir(k->dir, 0755))
        return fail(g, SL_EIO, "cannot make the task directory %s: %s", k->dir, strerror(errno));
    k->t = (sl_kafka_task){.partition = part,
                           .bootstrap = g->bootstrap,
                           .topic = sg->topic,
                           .group_id = g->group_id,
                           .state_topic = g->state_topic,
                           .props = (const char *const *)g->props,
                           .chk_dir = k->dir,
                           .repartition = st == 0 ? g->rtopic : NULL,
                           .upstreams = g->rtopic ? g->st[0].n_parts : 0,
                           .reads_repartition = st == 1,
                           .g = g};
    /* The input's tasks keep the names they had before repartitioning
     * existed; the repartition topic's are told apart by an "r". */
    snprintf(k->t.txid, sizeof(k->t.txid), "sluice-%s-%s%d", g->group_id, st ? "r" : "", (int)part);
    snprintf(k->t.state_key, sizeof(k->t.state_key), "%s%d", st ? "r" : "", (int)part);
    k->t.state_partition = part % g->state_parts;
    int found = 0;
    uint64_t id = 0;
    int rc = state_restore(g, &k->t, k->dir, &found, &id);
    if (rc) return rc;
    sl_pipeline *p = sl_pipeline_new();
    if (!p) return fail(g, SL_ENOMEM, "out of memory");
    sl_pipeline_set_threads(p, g->c.threads > 0 ? g->c.threads : 1);
    rc = sg->build(p, &k->t, g->c.ud);
    if (!rc) {
        sl_checkpoint_conf cc = {.dir = k->dir,
                                 .interval_ms = g->c.checkpoint_interval_ms,
                                 .keep = 2,
                                 .guarantee = SL_GUARANTEE_EXACTLY_ONCE,
                                 .capture = SL_CAPTURE_SYNC};
        rc = sl_pipeline_set_checkpoint(p, &cc);
    }
    if (!rc) rc = sl_pipeline_start(p);
    if (rc) {
        fail(g, rc, "%s %d: %s", stage_word(st), (int)part,
             *sl_pipeline_errmsg(p) ? sl_pipeline_errmsg(p) : sl_strerror(rc));
        sl_pipeline_free(p);
        return g->err;
    }
    k->p = p;
    k->running = 1;
    if (g->c.on_pipeline) {
        char name[48];
        snprintf(name, sizeof(name), "%s-%d", st ? "repartition" : "partition", (int)part);
        g->c.on_pipeline(g->c.on_pipeline_ud, name, p, 1);
    }
    if (found)
        say(g, "took %s %d (state of checkpoint %" PRIu64 ", %.2f s)", stage_word(st), (int)part,
            id, mono_s() - t0);
    else
        say(g, "took %s %d (no state yet, %.2f s)", stage_word(st), (int)part, mono_s() - t0);
    return 0;
}

/* Wait for a task's pipeline to end; a failure is the group's. */
static void task_end(sl_kafka_group *g, int st, task *k, int cancel)
{
    if (!k->running) return;
    if (cancel) sl_pipeline_cancel(k->p);
    int rc = sl_pipeline_wait(k->p, -1);
    if (rc && rc != SL_EPIPE)
        fail(g, rc, "%s %d: %s", stage_word(st), (int)k->t.partition,
             *sl_pipeline_errmsg(k->p) ? sl_pipeline_errmsg(k->p) : sl_strerror(rc));
    if (g->c.on_pipeline) g->c.on_pipeline(g->c.on_pipeline_ud, NULL, k->p, 0);
    sl_pipeline_free(k->p);
    k->p = NULL;
    k->running = 0;
}

/* Stop the running tasks of the partitions in `only` (NULL: all), each
 * with a final checkpoint. */
static void stop_tasks(sl_kafka_group *g, const rd_kafka_topic_partition_list_t *only)
{
    double t0 = mono_s();
    int n = 0;
    /* cancel all first, so their final checkpoints run at the same time */
    for (int pass = 0; pass < 2; pass++)
        for (int st = 0; st < g->n_stages; st++)
            for (int32_t i = 0; i < g->st[st].n_parts; i++) {
                task *k = &g->st[st].tasks[i];
                if (!k->running) continue;
                if (only && !rd_kafka_topic_partition_list_find(only, g->st[st].topic, i)) continue;
                if (pass == 0) {
                    sl_pipeline_cancel(k->p);
                } else {
                    task_end(g, st, k, 0);
                    n++;
                }
            }
    if (n && !g->err)
        say(g, "gave up %d task%s (final checkpoints committed, %.2f s)", n, n > 1 ? "s" : "",
            mono_s() - t0);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    sl_kafka_group *g = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* Membership only: the member reads nothing. Its partitions are
         * assigned at their end (no committed offset to look up) and paused. */
        for (int i = 0; i < parts->cnt; i++) parts->elems[i].offset = RD_KAFKA_OFFSET_END;
        rd_kafka_assign(rk, parts);
        rd_kafka_pause_partitions(rk, parts);
        g->n_pending = g->next_pending = 0;
        for (int i = 0; i < parts->cnt; i++)
            for (int st = 0; st < g->n_stages; st++)
                if (strcmp(parts->elems[i].topic, g->st[st].topic) == 0 &&
                    parts->elems[i].partition < g->st[st].n_parts)
                    g->pending[g->n_pending++] = (pend){st, parts->elems[i].partition};
    } else {
        g->n_pending = g->next_pending = 0;
        if (rd_kafka_assignment_lost(rk)) {
            /* Out of the group for longer than the session timeout: other
             * members own these partitions now. Nothing may be committed:
             * the tasks' sinks refuse (slk_task_lost), and the process stops. */
            atomic_store(&g->lost, 1);
            fail(g, SL_EFENCED,
                 "this process was out of group '%s' for longer than its session timeout "
                 "(paused, or cut off): its partitions went to other members, which fenced "
                 "its transactions; nothing it did since its last commit is committed",
                 g->group_id);
        }
        stop_tasks(g, parts);
        rd_kafka_assign(rk, NULL);
    }
}

/* --- the group -------------------------------------------------------------------- */

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s ? s : dflt);
}

int sl_kafka_group_new(sl_kafka_group **out, const sl_kafka_group_conf *conf)
{
    *out = NULL;
    if (!conf || !conf->bootstrap || !conf->topic || !conf->group_id || !conf->build ||
        !*conf->bootstrap || !*conf->topic || !*conf->group_id)
        return SL_EINVAL;
    sl_kafka_group *g = calloc(1, sizeof(*g));
    if (!g) return SL_ENOMEM;
    g->c = *conf;
    char state[512], work[1024];
    snprintf(state, sizeof(state), "%s.state", conf->group_id);
    const char *tmp = getenv("TMPDIR");
    snprintf(work, sizeof(work), "%s/sluice-%s-%d", tmp && *tmp ? tmp : "/tmp", conf->group_id,
             (int)getpid());
    g->bootstrap = strdup(conf->bootstrap);
    g->topic = strdup(conf->topic);
    g->group_id = strdup(conf->group_id);
    g->state_topic = dup_or(conf->state_topic, state);
    g->work_dir = dup_or(conf->work_dir, work);
    g->prefix = dup_or(conf->log_prefix, "sluice group: ");
    g->props = slk_props_dup(conf->props);
    char rtopic[512];
    snprintf(rtopic, sizeof(rtopic), "%s.repartition", conf->group_id);
    if (conf->repartition) g->rtopic = dup_or(conf->repartition_topic, rtopic);
    if (!g->bootstrap || !g->topic || !g->group_id || !g->state_topic || !g->work_dir ||
        !g->prefix || !g->props || (conf->repartition && !g->rtopic)) {
        sl_kafka_group_free(g);
        return SL_ENOMEM;
    }
    char err[512];
    rd_kafka_conf_t *check = slk_conf_new(g->bootstrap, conf->props, err, sizeof(err));
    if (!check) {
        fail(g, SL_EINVAL, "%s", err);
        *out = g; /* so that the caller can read the message */
        return SL_EINVAL;
    }
    rd_kafka_conf_destroy(check);
    *out = g;
    if (g->rtopic && (!*g->rtopic || !strcmp(g->rtopic, g->topic) ||
                      !strcmp(g->rtopic, g->state_topic) || conf->repartition_partitions < 0)) {
        fail(g, SL_EINVAL,
             "the repartition topic must be a topic of its own, not empty, the input or the "
             "state topic, with a partition count >= 0");
        return SL_EINVAL;
    }
    return 0;
}

int sl_kafka_group_run(sl_kafka_group *g)
{
    if (!g || g->err) return g ? g->err : SL_EINVAL;
    char session[32];
    int session_ms = g->c.session_timeout_ms > 0 ? g->c.session_timeout_ms : 10000;
    snprintf(session, sizeof(session), "%d", session_ms);
    /* Heartbeats well inside the session, as Kafka advises (a third at
     * most): librdkafka's default of 3 s lost every session under ~9 s. */
    char beat[32];
    snprintf(beat, sizeof(beat), "%d", session_ms / 4 > 3000 ? 3000 : session_ms / 4 + 1);
    const char *member[] = {"group.id",
                            g->group_id,
                            "enable.auto.commit",
                            "false",
                            "session.timeout.ms",
                            session,
                            "heartbeat.interval.ms",
                            beat,
                            "partition.assignment.strategy",
                            "range",
                            NULL};
    char restore_group[600];
    snprintf(restore_group, sizeof(restore_group), "%s.restore", g->group_id);
    const char *reader[] = {"group.id", restore_group, "enable.auto.commit", "false",
                            "enable.partition.eof", "true", "isolation.level", "read_committed",
                            "fetch.message.max.bytes", "67108864", "receive.message.max.bytes",
                            "134217728",
                            /* a task's start waits for this read: no
                             * fetch may wait for more data than there is */
                            "fetch.wait.max.ms", "10", NULL};
    if (mkdir(g->work_dir, 0755) && errno != EEXIST)
        return fail(g, SL_EIO, "cannot make %s: %s", g->work_dir, strerror(errno));
    g->rk = client(g, member, 1);
    if (!g->rk) return g->err ? g->err : fail(g, SL_EIO, "cannot start a Kafka client");
    g->restore = client(g, reader, 0);
    if (!g->restore) return g->err ? g->err : fail(g, SL_EIO, "cannot start a Kafka client");
    /* stage 0: the input; stage 1: the repartition topic, when there is one */
    g->n_stages = g->rtopic ? 2 : 1;
    g->st[0] = (stage){.topic = g->topic, .build = g->rtopic ? g->c.repartition : g->c.build};
    int rc = topic_partitions(g, g->topic, 0, &g->st[0].n_parts);
    if (!rc && g->rtopic) {
        g->st[1] = (stage){.topic = g->rtopic, .build = g->c.build};
        int32_t want =
            g->c.repartition_partitions > 0 ? g->c.repartition_partitions : g->st[0].n_parts;
        rc = topic_ensure(g, g->rtopic, want, 0, &g->st[1].n_parts);
    }
    if (!rc) rc = topic_ensure(g, g->state_topic, g->st[0].n_parts, 1, &g->state_parts);
    if (rc) return rc;
    int32_t all = 0;
    for (int st = 0; st < g->n_stages; st++) {
        g->st[st].tasks = calloc((size_t)g->st[st].n_parts, sizeof(task));
        if (!g->st[st].tasks) return fail(g, SL_ENOMEM, "out of memory");
        all += g->st[st].n_parts;
    }
    if (!(g->pending = calloc((size_t)all, sizeof(*g->pending))))
        return fail(g, SL_ENOMEM, "out of memory");
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(2);
    for (int st = 0; st < g->n_stages; st++)
        rd_kafka_topic_partition_list_add(sub, g->st[st].topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(g->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) return fail(g, SL_EIO, "cannot join group '%s': %s", g->group_id, rd_kafka_err2str(e));
    if (g->rtopic)
        say(g,
            "joining group '%s' on %s (topic '%s', %d partitions, through repartition topic "
            "'%s', %d partitions)",
            g->group_id, g->bootstrap, g->topic, (int)g->st[0].n_parts, g->rtopic,
            (int)g->st[1].n_parts);
    else
        say(g, "joining group '%s' on %s (topic '%s', %d partitions)", g->group_id, g->bootstrap,
            g->topic, (int)g->st[0].n_parts);
    while (!g->stop && !g->err) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g->rk, 100);
        if (m) {
            if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                (m->err == RD_KAFKA_RESP_ERR__FATAL ||
                 m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                 m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                 m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED))
                fail(g, SL_EIO, "group '%s': %s", g->group_id, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
        }
        /* Starting a task takes a while (clients, transactions): the member
         * is polled between two, so that the group hears from it. A
         * rebalance there replaces the pending list (a revocation empties
         * it, an assignment starts it again from its first entry): the
         * loop reads the list afresh after every poll and never clears it
         * itself, or an assignment that came during the poll is lost and
         * its partitions are owned by no running task. */
        while (g->next_pending < g->n_pending && !g->err && !g->stop) {
            pend pd = g->pending[g->next_pending++];
            task_start(g, pd.stage, pd.part);
            rd_kafka_message_t *pm = rd_kafka_consumer_poll(g->rk, 0);
            if (pm) rd_kafka_message_destroy(pm);
        }
        for (int st = 0; st < g->n_stages; st++)
            for (int32_t i = 0; i < g->st[st].n_parts && !g->err; i++) {
                task *k = &g->st[st].tasks[i];
                if (k->running && sl_pipeline_wait(k->p, 0) != SL_EAGAIN) task_end(g, st, k, 0);
            }
    }
    stop_tasks(g, NULL);
    rd_kafka_consumer_close(g->rk);
    if (!g->err) say(g, "left group '%s'", g->group_id);
    return g->err;
}

void sl_kafka_group_stop(sl_kafka_group *g)
{
    if (g) g->stop = 1;
}

const char *sl_kafka_group_errmsg(const sl_kafka_group *g)
{
    return g ? g->errmsg : "no group";
}

void sl_kafka_group_free(sl_kafka_group *g)
{
    if (!g) return;
    for (int st = 0; st < g->n_stages; st++) {
        for (int32_t i = 0; g->st[st].tasks && i < g->st[st].n_parts; i++) {
            task_end(g, st, &g->st[st].tasks[i], 1);
            free(g->st[st].tasks[i].dir);
        }
        free(g->st[st].tasks);
    }
    if (g->rk) rd_kafka_destroy(g->rk);
    if (g->restore) rd_kafka_destroy(g->restore);
    if (g->work_dir && !g->c.work_dir) rm_tree(g->work_dir);
    free(g->pending);
    free(g->rtopic);
    free(g->props);
    free(g->bootstrap);
    free(g->topic);
    free(g->group_id);
    free(g->state_topic);
    free(g->work_dir);
    free(g->prefix);
    free(g);
}
