/*
 * connectors/broker/broker.c - the broker handle, topics (create, delete,
 * list, describe, clean), the key partitioner, sl_log_append and the
 * buffered producer.
 *
 * A broker is a directory; each topic is a subdirectory holding its metadata
 * file and one subdirectory per partition (layout in log.h). A topic appears
 * and disappears atomically: it is built in DIR/.tmp-NAME-PID and renamed into
 * place (then the directory is fsynced), and deleted by renaming it to
 * DIR/.deleted-NAME-PID before removing the files, while holding every
 * partition's writer lock so that no writer can be inside it.
 *
 * Topic metadata file DIR/TOPIC/topic.meta: text, one "key=value" per line,
 * written with sli_fsio_write_file_atomic and never changed afterwards:
 *
 *   line                        meaning
 *   --------------------------  -------------------------------------------
 *   sluice-topic 1              magic and format version (first line)
 *   partitions=N                1..SL_PARTITIONS_MAX
 *   compact=0|1                 compacted topic
 *   retention_bytes=B           per partition, -1 = unlimited
 *   retention_ms=T              -1 = unlimited
 *   fsync=never|always|interval durability policy
 *   fsync_interval_ms=T         for interval
 *   segment_bytes=B             roll size
 *   segment_ms=T                roll age
 *   tombstone_retention_ms=T    compacted topics
 *   max_record_bytes=B          largest key+value+headers
 *
 * Writers: the handle opens a partition's writer (log.c, with its flock) on
 * the first write to it and keeps it until sl_broker_close() or the topic's
 * deletion. A producer takes a partition's lock only when it writes there:
 * keyless records go round-robin over the partitions it can lock, skipping
 * one that another process writes (tried again at most once a second), and
 * wait for a lock only when every partition is held elsewhere; so several
 * keyless producers share a topic (records with a key, or for a given
 * partition, go where they must and fail if that partition has a writer).
 * Topics with fsync=interval get a flusher thread per handle that
 * fdatasyncs every partition whose last sync is older than its interval.
 *
 * Partitioner: Kafka's murmur2 (Utils.murmur2 in the Java client), seed
 * 0x9747b28c, then toPositive (& 0x7fffffff) modulo the partition count, so a
 * key lands on the same partition number as with Kafka's default partitioner.
 */
#include "connectors/broker/broker_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connectors/broker/clean.h"
#include "engine/base/clock.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"

/* ---- partitioner --------------------------------------------------------- */

int32_t sl_murmur2(const void *key, size_t len)
{
    const uint8_t *data = key;
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t len4 = len / 4;
    for (size_t i = 0; i < len4; i++) {
        size_t i4 = i * 4;
        uint32_t k = (uint32_t)data[i4] | (uint32_t)data[i4 + 1] << 8 |
                     (uint32_t)data[i4 + 2] << 16 | (uint32_t)data[i4 + 3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    size_t tail = len & ~(size_t)3;
    switch (len % 4) {
    case 3: h ^= (uint32_t)data[tail + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)data[tail + 1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)data[tail]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int32_t sl_partition_for_key(const void *key, size_t len, int32_t npartitions)
{
    if (npartitions <= 0) return 0;
    return (int32_t)(((uint32_t)sl_murmur2(key, len) & 0x7fffffffu) % (uint32_t)npartitions);
}

/* ---- names, paths, metadata ---------------------------------------------- */

int slb_check_name(const char *what, const char *name, bool internal_ok, char *err)
{
    if (!name || !*name) {
        slb_seterr(err, "%s name is empty", what);
        return SL_EINVAL;
    }
    size_t n = strlen(name);
    if (n > SL_TOPIC_NAME_MAX) {
        slb_seterr(err, "%s name '%.40s...' is longer than %d bytes", what, name,
                   SL_TOPIC_NAME_MAX);
        return SL_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            slb_seterr(err, "%s name '%s' has a character other than [A-Za-z0-9._-]", what, name);
            return SL_EINVAL;
        }
    }
    if (name[0] == '.') {
        slb_seterr(err, "%s name '%s' must not start with '.'", what, name);
        return SL_EINVAL;
    }
    if (!internal_ok && name[0] == '_' && name[1] == '_') {
        slb_seterr(err, "%s name '%s' is reserved: names starting with '__' are internal", what,
                   name);
        return SL_EINVAL;
    }
    return 0;
}

void slb_part_dir(char *buf, size_t cap, const sl_broker *b, const char *topic, int32_t p)
{
    snprintf(buf, cap, "%s/%s/%d", b->dir, topic, (int)p);
}

void sl_topic_conf_init(sl_topic_conf *c)
{
    memset(c, 0, sizeof *c);
    c->partitions = 1;
    c->compact = 0;
    c->retention_bytes = -1;
    c->retention_ms = -1;
    c->fsync = SL_FSYNC_NEVER;
    c->fsync_interval_ms = 1000;
    c->segment_bytes = 64 << 20;
    c->segment_ms = 7LL * 24 * 3600 * 1000;
    c->tombstone_retention_ms = 24LL * 3600 * 1000;
    c->max_record_bytes = 1 << 20;
}

static int check_conf(const sl_topic_conf *c, char *err)
{
    if (c->partitions < 1 || c->partitions > SL_PARTITIONS_MAX) {
        slb_seterr(err, "partition count %d is out of range 1..%d", c->partitions,
                   SL_PARTITIONS_MAX);
        return SL_EINVAL;
    }
    if (c->retention_bytes < -1 || c->retention_ms < -1) {
        slb_seterr(err, "retention must be -1 (unlimited) or >= 0");
        return SL_EINVAL;
    }
    if (c->fsync != SL_FSYNC_NEVER && c->fsync != SL_FSYNC_ALWAYS &&
        c->fsync != SL_FSYNC_INTERVAL) {
        slb_seterr(err, "fsync policy %d is unknown", c->fsync);
        return SL_EINVAL;
    }
    if (c->fsync == SL_FSYNC_INTERVAL && c->fsync_interval_ms <= 0) {
        slb_seterr(err, "fsync interval %" PRId64 " ms must be > 0", c->fsync_interval_ms);
        return SL_EINVAL;
    }
    if (c->segment_bytes < 1024 || c->segment_bytes > (1LL << 31)) {
        slb_seterr(err, "segment size %" PRId64 " is out of range 1024..2^31", c->segment_bytes);
        return SL_EINVAL;
    }
    if (c->segment_ms < 1 || c->tombstone_retention_ms < 0) {
        slb_seterr(err, "segment_ms must be >= 1 and tombstone_retention_ms >= 0");
        return SL_EINVAL;
    }
    if (c->max_record_bytes < 1 || c->max_record_bytes > SL_MAX_RECORD_BYTES_LIMIT) {
        slb_seterr(err, "max record size %d is out of range 1..%d", c->max_record_bytes,
                   SL_MAX_RECORD_BYTES_LIMIT);
        return SL_EINVAL;
    }
    return 0;
}

static const char *fsync_name(int32_t f)
{
    return f == SL_FSYNC_ALWAYS ? "always" : f == SL_FSYNC_INTERVAL ? "interval" : "never";
}

static int meta_format(const sl_topic_conf *c, char *buf, size_t cap)
{
    return snprintf(buf, cap,
                    "sluice-topic 1\npartitions=%d\ncompact=%d\nretention_bytes=%" PRId64
                    "\nretention_ms=%" PRId64 "\nfsync=%s\nfsync_interval_ms=%" PRId64
                    "\nsegment_bytes=%" PRId64 "\nsegment_ms=%" PRId64
                    "\ntombstone_retention_ms=%" PRId64 "\nmax_record_bytes=%d\n",
                    c->partitions, c->compact ? 1 : 0, c->retention_bytes, c->retention_ms,
                    fsync_name(c->fsync), c->fsync_interval_ms, c->segment_bytes, c->segment_ms,
                    c->tombstone_retention_ms, c->max_record_bytes);
}

int slb_topic_load(const sl_broker *b, const char *name, sl_topic_conf *c, char *err)
{
    char path[SLB_PATH_CAP];
    snprintf(path, sizeof path, "%s/%s/topic.meta", b->dir, name);
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) {
            slb_seterr(err, "unknown topic '%s' (no %s)", name, path);
            return SL_ENOENT;
        }
        slb_seterr(err, "cannot read %s: %s", path, strerror(errno));
        return sli_errno_code(-errno);
    }
    sl_topic_conf_init(c);
    c->partitions = 0;
    char line[256];
    int rc = 0;
    if (!fgets(line, sizeof line, f) || strcmp(line, "sluice-topic 1\n") != 0) rc = SL_ECORRUPT;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');
        if (!eq) {
            rc = SL_ECORRUPT;
            break;
        }
        *eq = '\0';
        char *v = eq + 1;
        v[strcspn(v, "\n")] = '\0';
        char *end;
        long long n = strtoll(v, &end, 10);
        bool num = *v && !*end;
        if (!strcmp(line, "fsync")) {
            if (!strcmp(v, "never"))
                c->fsync = SL_FSYNC_NEVER;
            else if (!strcmp(v, "always"))
                c->fsync = SL_FSYNC_ALWAYS;
            else if (!strcmp(v, "interval"))
                c->fsync = SL_FSYNC_INTERVAL;
            else
                rc = SL_ECORRUPT;
        } else if (!num) {
            rc = SL_ECORRUPT;
        } else if (!strcmp(line, "partitions")) {
            c->partitions = (int32_t)n;
        } else if (!strcmp(line, "compact")) {
            c->compact = n != 0;
        } else if (!strcmp(line, "retention_bytes")) {
            c->retention_bytes = n;
        } else if (!strcmp(line, "retention_ms")) {
            c->retention_ms = n;
        } else if (!strcmp(line, "fsync_interval_ms")) {
            c->fsync_interval_ms = n;
        } else if (!strcmp(line, "segment_bytes")) {
            c->segment_bytes = n;
        } else if (!strcmp(line, "segment_ms")) {
            c->segment_ms = n;
        } else if (!strcmp(line, "tombstone_retention_ms")) {
            c->tombstone_retention_ms = n;
        } else if (!strcmp(line, "max_record_bytes")) {
            c->max_record_bytes = (int32_t)n;
        } /* unknown keys: written by a newer version; ignored */
    }
    fclose(f);
    char junk[SLB_ERRLEN];
    if (rc == 0 && check_conf(c, junk) < 0) rc = SL_ECORRUPT;
    if (rc < 0) slb_seterr(err, "topic '%s': metadata file %s is corrupt", name, path);
    return rc;
}

/* ---- broker handle ----------------------------------------------------------- */

static void *flusher_main(void *arg);

int sl_broker_open(sl_broker **out, const char *dir, unsigned flags)
{
    sl_broker *b = calloc(1, sizeof *b);
    *out = b;
    if (!b) return SL_ENOMEM;
    pthread_mutex_init(&b->mu, NULL);
    if (sli_cond_init_mono(&b->cv) != 0) { /* cannot happen on Linux */
        pthread_cond_init(&b->cv, NULL);   /* so that sl_broker_close() may destroy it */
        slb_seterr(b->errmsg, "cannot make a monotonic condition variable");
        return SL_ENOMEM;
    }
    if (!dir || !*dir) {
        slb_seterr(b->errmsg, "broker directory is empty");
        return SL_EINVAL;
    }
    b->dir = strdup(dir);
    if (!b->dir) {
        slb_seterr(b->errmsg, "out of memory");
        return SL_ENOMEM;
    }
    struct stat st;
    if (stat(dir, &st) < 0) {
        int e = errno;
        if (e == ENOENT && (flags & SL_BROKER_CREATE)) {
            int r = sli_fsio_mkdir(dir, 0755);
            if (r < 0 && r != -EEXIST) {
                slb_seterr(b->errmsg, "cannot create broker directory %s: %s", dir, strerror(-r));
                return sli_errno_code(r);
            }
            return 0;
        }
        slb_seterr(b->errmsg, "broker directory %s: %s", dir, strerror(e));
        return sli_errno_code(-e);
    }
    if (!S_ISDIR(st.st_mode)) {
        slb_seterr(b->errmsg, "broker directory %s is not a directory", dir);
        return SL_ENOENT;
    }
    return 0;
}

const char *sl_broker_errmsg(const sl_broker *b)
{
    return b ? b->errmsg : "out of memory";
}

const char *sl_broker_dir(const sl_broker *b)
{
    return b ? b->dir : NULL;
}

/* Close the writers of wt and free it. */
static int wtopic_free(slb_wtopic *wt, char *err)
{
    int rc = 0;
    if (!wt) return 0;
    for (int32_t p = 0; wt->parts && p < wt->conf.partitions; p++) {
        int r = slb_plog_close(wt->parts[p], err);
        if (r < 0 && rc == 0) rc = r;
    }
    free(wt->parts);
    free(wt);
    return rc;
}

int sl_broker_close(sl_broker *b)
{
    if (!b) return 0;
    if (b->flusher_running) {
        pthread_mutex_lock(&b->mu);
        b->stop = true;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->flusher, NULL);
    }
    int rc = 0;
    for (size_t i = 0; i < b->ntopics; i++) {
        int r = wtopic_free(b->topics[i], b->errmsg);
        if (r < 0 && rc == 0) rc = r;
    }
    free(b->topics);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->dir);
    free(b);
    return rc;
}

/* Runs on the flusher thread; takes b->mu, then each writer's mu. */
static void *flusher_main(void *arg)
{
    sl_broker *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        int64_t tick = 1000;
        int64_t now = sli_clock_mono_ms();
        char err[SLB_ERRLEN];
        for (size_t i = 0; i < b->ntopics; i++) {
            slb_wtopic *wt = b->topics[i];
            if (wt->conf.fsync != SL_FSYNC_INTERVAL) continue;
            if (wt->conf.fsync_interval_ms < tick) tick = wt->conf.fsync_interval_ms;
            for (int32_t p = 0; p < wt->conf.partitions; p++)
                if (wt->parts[p]) (void)slb_plog_sync_due(wt->parts[p], now, err);
        }
        if (tick > 2) tick /= 2;
        struct timespec ts; /* b->cv waits on the monotonic clock */
        sli_clock_mono_deadline(&ts, tick);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static slb_wtopic *find_wtopic(sl_broker *b, const char *name, size_t *idx)
{
    for (size_t i = 0; i < b->ntopics; i++)
        if (!strcmp(b->topics[i]->name, name)) {
            if (idx) *idx = i;
            return b->topics[i];
        }
    return NULL;
}

/* The topic as this handle writes it (metadata loaded once). */
static int get_wtopic(sl_broker *b, const char *name, bool internal_ok, slb_wtopic **out)
{
    *out = find_wtopic(b, name, NULL);
    if (*out) return 0;
    int rc = slb_check_name("topic", name, internal_ok, b->errmsg);
    if (rc < 0) return rc;
    slb_wtopic *wt = calloc(1, sizeof *wt);
    if (!wt) goto nomem;
    snprintf(wt->name, sizeof wt->name, "%s", name);
    if ((rc = slb_topic_load(b, name, &wt->conf, b->errmsg)) < 0) {
        free(wt);
        return rc;
    }
    wt->parts = calloc((size_t)wt->conf.partitions, sizeof *wt->parts);
    slb_wtopic **nt = realloc(b->topics, (b->ntopics + 1) * sizeof *nt);
    if (!wt->parts || !nt) {
        if (nt) b->topics = nt;
        free(wt->parts);
        free(wt);
        goto nomem;
    }
    pthread_mutex_lock(&b->mu);
    b->topics = nt;
    b->topics[b->ntopics++] = wt;
    pthread_mutex_unlock(&b->mu);
    *out = wt;
    return 0;
nomem:
    slb_seterr(b->errmsg, "out of memory");
    return SL_ENOMEM;
}

/* The writer of one partition, opened (and locked) on first use; with wait,
 * waits for another process's lock instead of failing with SL_EBUSY. */
static int get_writer_wait(sl_broker *b, slb_wtopic *wt, int32_t p, bool wait, slb_plog **out)
{
    if (p < 0 || p >= wt->conf.partitions) {
        slb_seterr(b->errmsg, "topic '%s' has no partition %d (it has %d: 0..%d)", wt->name, p,
                   wt->conf.partitions, wt->conf.partitions - 1);
        return SL_ERANGE;
    }
    if (wt->parts[p]) {
        *out = wt->parts[p];
        return 0;
    }
    char pdir[SLB_PATH_CAP];
    slb_part_dir(pdir, sizeof pdir, b, wt->name, p);
    slb_plog *l;
    int rc =
        slb_plog_open(&l, pdir, wt->name, p, &wt->conf, wait, slb_plog_clean_locked, b->errmsg);
    if (rc < 0) return rc;
    pthread_mutex_lock(&b->mu);
    wt->parts[p] = l;
    if (wt->conf.fsync == SL_FSYNC_INTERVAL && !b->flusher_running) {
        if (pthread_create(&b->flusher, NULL, flusher_main, b) == 0) b->flusher_running = true;
    }
    pthread_mutex_unlock(&b->mu);
    if (wt->conf.fsync == SL_FSYNC_INTERVAL && !b->flusher_running) {
        slb_seterr(b->errmsg, "cannot start the fsync flusher thread");
        return SL_ENOMEM;
    }
    *out = l;
    return 0;
}

static int get_writer(sl_broker *b, slb_wtopic *wt, int32_t p, slb_plog **out)
{
    return get_writer_wait(b, wt, p, false, out);
}

/* Check one record against the topic's rules. */
static int check_record(const slb_wtopic *wt, const sl_record *r, char *err)
{
    if (!r) {
        slb_seterr(err, "record is NULL");
        return SL_EINVAL;
    }
    size_t payload = r->header_count ? slb_record_payload(r)
                                     : (r->key ? r->key_len : 0) + (r->value ? r->value_len : 0);
    if (payload > (size_t)wt->conf.max_record_bytes) {
        slb_seterr(err, "record of %zu bytes is larger than topic '%s' allows (%d bytes)", payload,
                   wt->name, wt->conf.max_record_bytes);
        return SL_ETOOBIG;
    }
    if (wt->conf.compact && !r->key) {
        slb_seterr(err, "topic '%s' is compacted: every record needs a key", wt->name);
        return SL_EINVAL;
    }
    if ((r->key_len && !r->key) || (r->value_len && !r->value) ||
        (r->header_count && !r->headers)) {
        slb_seterr(err, "record has a length without its data");
        return SL_EINVAL;
    }
    if (r->timestamp < 0 && r->timestamp != SL_TIMESTAMP_NONE) {
        slb_seterr(err,
                   "record timestamp %" PRId64
                   " is negative (SL_TIMESTAMP_NONE stamps the time of the append)",
                   r->timestamp);
        return SL_EINVAL;
    }
    return 0;
}

static int log_append(sl_broker *b, const char *topic, int32_t partition, const sl_producer_ref *pr,
                      uint8_t txn_attrs, const sl_record *recs, size_t n, int64_t *base_offset)
{
    if (!b) return SL_EINVAL;
    slb_wtopic *wt;
    int rc = get_wtopic(b, topic, true, &wt);
    if (rc < 0) return rc;
    if (n == 0 || !recs) {
        slb_seterr(b->errmsg, "no records to append");
        return SL_EINVAL;
    }
    if (partition < 0 || partition >= wt->conf.partitions) {
        slb_seterr(b->errmsg, "topic '%s' has no partition %d (it has %d: 0..%d)", wt->name,
                   partition, wt->conf.partitions, wt->conf.partitions - 1);
        return SL_ERANGE;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_record(wt, &recs[i], b->errmsg)) < 0) return rc;
        total += slb_record_size(&recs[i], 0, (int64_t)i) + 10;
    }
    if (total > SLB_MAX_BATCH - SLB_HDR_SIZE || n > INT32_MAX) {
        slb_seterr(b->errmsg, "%zu records of %zu bytes are too many for one batch", n, total);
        return SL_ETOOBIG;
    }
    slb_plog *l;
    if ((rc = get_writer(b, wt, partition, &l)) < 0) return rc;
    return slb_plog_append_attrs(l, pr, txn_attrs, recs, n, base_offset, b->errmsg);
}

int slb_log_append(sl_broker *b, const char *topic, int32_t partition, const sl_producer_ref *pr,
                   uint8_t txn_attrs, const sl_record *recs, size_t n, int64_t *base_offset)
{
    return log_append(b, topic, partition, pr, txn_attrs, recs, n, base_offset);
}

int slb_log_append_marker(sl_broker *b, const char *topic, int32_t partition,
                          const sl_producer_ref *pr, int type, bool only_open, bool keep,
                          int64_t *offset)
{
    slb_wtopic *wt;
    int rc = get_wtopic(b, topic, false, &wt);
    if (rc < 0) return rc;
    if (partition < 0 || partition >= wt->conf.partitions) {
        slb_seterr(b->errmsg, "topic '%s' has no partition %d", wt->name, partition);
        return SL_ERANGE;
    }
    slb_plog *l;
    if (keep || wt->parts[partition]) {
        if ((rc = get_writer(b, wt, partition, &l)) < 0) return rc;
        return slb_plog_append_marker(l, pr, type, only_open, offset, b->errmsg);
    }
    /* A writer for this marker alone: its lock is released at once. */
    char pdir[SLB_PATH_CAP];
    slb_part_dir(pdir, sizeof pdir, b, wt->name, partition);
    if ((rc = slb_plog_open(&l, pdir, wt->name, partition, &wt->conf, false, slb_plog_clean_locked,
                            b->errmsg)) < 0)
        return rc;
    rc = slb_plog_append_marker(l, pr, type, only_open, offset, b->errmsg);
    char cerr[SLB_ERRLEN];
    int crc = slb_plog_close(l, cerr);
    if (rc >= 0 && crc < 0) {
        memcpy(b->errmsg, cerr, sizeof cerr);
        rc = crc;
    }
    return rc;
}

int sl_log_append(sl_broker *b, const char *topic, int32_t partition, const sl_record *recs,
                  size_t n, int64_t *base_offset)
{
    return log_append(b, topic, partition, NULL, 0, recs, n, base_offset);
}

int sl_log_append_idempotent(sl_broker *b, const char *topic, int32_t partition,
                             const sl_producer_ref *producer, const sl_record *recs, size_t n,
                             int64_t *base_offset)
{
    if (!b) return SL_EINVAL;
    if (!producer) {
        slb_seterr(b->errmsg, "no producer given");
        return SL_EINVAL;
    }
    return log_append(b, topic, partition, producer, 0, recs, n, base_offset);
}

/* ---- topics ---------------------------------------------------------------------- */

int slb_topic_create(sl_broker *b, const char *name, const sl_topic_conf *conf, bool internal)
{
    sl_topic_conf c;
    if (conf)
        c = *conf;
    else
        sl_topic_conf_init(&c);
    int rc = slb_check_name("topic", name, internal, b->errmsg);
    if (rc < 0) return rc;
    if ((rc = check_conf(&c, b->errmsg)) < 0) return rc;
    char final[SLB_PATH_CAP], tmp[SLB_PATH_CAP], path[SLB_PATH_CAP + 64];
    snprintf(final, sizeof final, "%s/%s", b->dir, name);
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%ld", b->dir, name, (long)getpid());
    struct stat st;
    if (stat(final, &st) == 0) {
        slb_seterr(b->errmsg, "topic '%s' already exists", name);
        return SL_EEXIST;
    }
    (void)sli_fsio_remove_tree(tmp); /* a leftover of ours from a crash */
    int r = sli_fsio_mkdir(tmp, 0755);
    if (r < 0) {
        slb_seterr(b->errmsg, "cannot create topic '%s': mkdir %s: %s", name, tmp, strerror(-r));
        return sli_errno_code(r);
    }
    char meta[1024];
    int mlen = meta_format(&c, meta, sizeof meta);
    snprintf(path, sizeof path, "%s/topic.meta", tmp);
    if ((r = sli_fsio_write_file_atomic(path, meta, (size_t)mlen)) < 0) goto fail;
    for (int32_t p = 0; p < c.partitions; p++) {
        snprintf(path, sizeof path, "%s/%d", tmp, (int)p);
        if ((r = sli_fsio_mkdir(path, 0755)) < 0) goto fail;
        char seg[SLB_PATH_CAP + 96];
        slb_seg_path(seg, sizeof seg, path, 0, "log");
        int fd = sli_fsio_open(seg, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) {
            r = fd;
            goto fail;
        }
        close(fd);
        if (c.fsync != SL_FSYNC_NEVER && (r = sli_fsio_fsync_dir(path)) < 0) goto fail;
    }
    if ((r = sli_fsio_fsync_dir(tmp)) < 0) goto fail;
    if ((r = sli_fsio_rename(tmp, final)) < 0) {
        if (r == -EEXIST || r == -ENOTEMPTY) {
            (void)sli_fsio_remove_tree(tmp);
            slb_seterr(b->errmsg, "topic '%s' already exists", name);
            return SL_EEXIST;
        }
        goto fail;
    }
    if ((r = sli_fsio_fsync_dir(b->dir)) < 0) {
        /* The topic is in place but maybe not durable: say so, keep it. */
        slb_seterr(b->errmsg, "topic '%s' created, but syncing %s failed: %s", name, b->dir,
                   strerror(-r));
        return sli_errno_code(r);
    }
    return 0;
fail:
    slb_seterr(b->errmsg, "cannot create topic '%s' in %s: %s", name, b->dir, strerror(-r));
    (void)sli_fsio_remove_tree(tmp);
    return sli_errno_code(r);
}

int sl_topic_create(sl_broker *b, const char *name, const sl_topic_conf *conf)
{
    if (!b) return SL_EINVAL;
    return slb_topic_create(b, name, conf, false);
}

int sl_topic_delete(sl_broker *b, const char *name)
{
    if (!b) return SL_EINVAL;
    int rc = slb_check_name("topic", name, false, b->errmsg);
    if (rc < 0) return rc;
    sl_topic_conf c;
    if ((rc = slb_topic_load(b, name, &c, b->errmsg)) < 0) return rc;
    /* Our own writers first. */
    size_t idx;
    slb_wtopic *wt = find_wtopic(b, name, &idx);
    if (wt) {
        pthread_mutex_lock(&b->mu);
        b->topics[idx] = b->topics[--b->ntopics];
        pthread_mutex_unlock(&b->mu);
        char err[SLB_ERRLEN];
        (void)wtopic_free(wt, err);
    }
    /* Take every partition's lock, so that no writer is or gets inside. */
    int *fds = malloc(sizeof(int) * (size_t)c.partitions);
    if (!fds) {
        slb_seterr(b->errmsg, "out of memory");
        return SL_ENOMEM;
    }
    int32_t locked = 0;
    char path[SLB_PATH_CAP], gone[SLB_PATH_CAP], final[SLB_PATH_CAP];
    for (; locked < c.partitions; locked++) {
        snprintf(path, sizeof path, "%s/%s/%d/.lock", b->dir, name, (int)locked);
        int fd = sli_fsio_open(path, O_RDWR | O_CREAT, 0644);
        if (fd < 0) {
            rc = sli_errno_code(fd);
            slb_seterr(b->errmsg, "cannot delete topic '%s': cannot open %s: %s", name, path,
                       strerror(-fd));
            goto out;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd);
            rc = SL_EBUSY;
            slb_seterr(b->errmsg,
                       "cannot delete topic '%s': partition %d has a writer (lock %s is held)",
                       name, (int)locked, path);
            goto out;
        }
        fds[locked] = fd;
    }
    snprintf(final, sizeof final, "%s/%s", b->dir, name);
    snprintf(gone, sizeof gone, "%s/.deleted-%s-%ld", b->dir, name, (long)getpid());
    (void)sli_fsio_remove_tree(gone);
    int r = sli_fsio_rename(final, gone);
    if (r < 0) {
        rc = sli_errno_code(r);
        slb_seterr(b->errmsg, "cannot delete topic '%s': rename %s: %s", name, final, strerror(-r));
        goto out;
    }
    (void)sli_fsio_fsync_dir(b->dir);
    r = sli_fsio_remove_tree(gone);
    if (r < 0) {
        rc = sli_errno_code(r);
        slb_seterr(b->errmsg, "topic '%s' deleted, but removing %s failed: %s", name, gone,
                   strerror(-r));
    }
out:
    for (int32_t i = 0; i < locked; i++) close(fds[i]);
    free(fds);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int sl_topic_list(sl_broker *b, char ***names, size_t *count)
{
    if (!b || !names || !count) return SL_EINVAL;
    *names = NULL;
    *count = 0;
    DIR *d = opendir(b->dir);
    if (!d) {
        slb_seterr(b->errmsg, "cannot list broker directory %s: %s", b->dir, strerror(errno));
        return sli_errno_code(-errno);
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    char path[SLB_PATH_CAP];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (slb_check_name("topic", e->d_name, true, NULL) < 0) continue;
        snprintf(path, sizeof path, "%s/%s/topic.meta", b->dir, e->d_name);
        if (access(path, F_OK) != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) goto nomem;
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name))) goto nomem;
        n++;
    }
    closedir(d);
    if (n) qsort(v, n, sizeof *v, cmp_str);
    *names = v;
    *count = n;
    return 0;
nomem:
    closedir(d);
    sl_topic_list_free(v, n);
    slb_seterr(b->errmsg, "out of memory");
    return SL_ENOMEM;
}

void sl_topic_list_free(char **names, size_t count)
{
    if (!names) return;
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
}

int sl_topic_describe(sl_broker *b, const char *name, sl_topic_info **out)
{
    if (!b || !out) return SL_EINVAL;
    *out = NULL;
    int rc = slb_check_name("topic", name, true, b->errmsg);
    if (rc < 0) return rc;
    sl_topic_info *ti = calloc(1, sizeof *ti);
    if (!ti) goto nomem;
    snprintf(ti->name, sizeof ti->name, "%s", name);
    if ((rc = slb_topic_load(b, name, &ti->conf, b->errmsg)) < 0) {
        free(ti);
        return rc;
    }
    ti->partition_count = ti->conf.partitions;
    ti->partitions = calloc((size_t)ti->partition_count, sizeof *ti->partitions);
    if (!ti->partitions) {
        free(ti);
        goto nomem;
    }
    slb_wtopic *wt = find_wtopic(b, name, NULL);
    for (int32_t p = 0; p < ti->partition_count; p++) {
        sl_partition_info *pi = &ti->partitions[p];
        pi->partition = p;
        if (wt && wt->parts[p]) {
            slb_plog_info(wt->parts[p], pi);
            continue;
        }
        char pdir[SLB_PATH_CAP];
        slb_part_dir(pdir, sizeof pdir, b, name, p);
        if ((rc = slb_partition_info(pdir, pi, b->errmsg)) < 0) {
            sl_topic_info_free(ti);
            return rc;
        }
        pi->partition = p;
    }
    *out = ti;
    return 0;
nomem:
    slb_seterr(b->errmsg, "out of memory");
    return SL_ENOMEM;
}

void sl_topic_info_free(sl_topic_info *info)
{
    if (!info) return;
    free(info->partitions);
    free(info);
}

int slb_broker_plog(sl_broker *b, const char *topic, int32_t partition, slb_plog **out,
                    const sl_topic_conf **conf)
{
    *out = NULL;
    slb_wtopic *wt;
    int rc = get_wtopic(b, topic, true, &wt);
    if (rc < 0) return rc;
    if (conf) *conf = &wt->conf;
    if (partition < 0) return 0;
    return get_writer(b, wt, partition, out);
}

int sl_topic_clean(sl_broker *b, const char *name, int64_t now_ms)
{
    if (!b) return SL_EINVAL;
    slb_wtopic *wt;
    int rc = get_wtopic(b, name, true, &wt);
    if (rc < 0) return rc;
    for (int32_t p = 0; p < wt->conf.partitions; p++) {
        bool had = wt->parts[p] != NULL;
        slb_plog *l;
        if ((rc = get_writer(b, wt, p, &l)) < 0) return rc;
        rc = slb_plog_clean(l, now_ms, b->errmsg);
        if (!had) {
            /* Do not keep locks the caller did not ask for. */
            pthread_mutex_lock(&b->mu);
            wt->parts[p] = NULL;
            pthread_mutex_unlock(&b->mu);
            char err[SLB_ERRLEN];
            int r = slb_plog_close(l, err);
            if (rc == 0 && r < 0) {
                rc = r;
                memcpy(b->errmsg, err, sizeof err);
            }
        }
        if (rc < 0) return rc;
    }
    return 0;
}

int sl_topic_repair(sl_broker *b, const char *name, int32_t partition, sl_repair_info *info)
{
    if (!b) return SL_EINVAL;
    sl_repair_info scratch;
    if (!info) info = &scratch;
    slb_wtopic *wt;
    int rc = get_wtopic(b, name, true, &wt);
    if (rc < 0) return rc;
    if (partition < 0 || partition >= wt->conf.partitions) {
        slb_seterr(b->errmsg, "topic '%s' has no partition %d (it has %d: 0..%d)", wt->name,
                   partition, wt->conf.partitions, wt->conf.partitions - 1);
        return SL_ERANGE;
    }
    if (wt->parts[partition]) { /* this handle writes to it: it recovered cleanly */
        memset(info, 0, sizeof *info);
        info->partition = partition;
        info->segment = info->byte = info->first_offset_dropped = info->last_offset_dropped = -1;
        return 0;
    }
    char pdir[SLB_PATH_CAP];
    slb_part_dir(pdir, sizeof pdir, b, wt->name, partition);
    return slb_plog_repair(pdir, wt->name, partition, &wt->conf, info, b->errmsg);
}

/* ---- producer ---------------------------------------------------------------------- */

struct sl_producer {
    sl_broker *b;
    int64_t now_ms;    /* cached clock for records without a timestamp */
    unsigned now_uses; /* records stamped with now_ms since it was read */
    slb_wtopic *wt;
    uint8_t *touched;    /* partitions with buffered records */
    int64_t *busy_until; /* keyless: another process writes it; skip until (mono ms) */
    char errmsg[SLB_ERRLEN];
};

int sl_producer_open(sl_producer **out, sl_broker *b, const char *topic)
{
    *out = NULL;
    if (!b) return SL_EINVAL;
    slb_wtopic *wt;
    int rc = get_wtopic(b, topic, false, &wt);
    if (rc < 0) return rc;
    sl_producer *p = calloc(1, sizeof *p);
    if (p) p->touched = calloc((size_t)wt->conf.partitions, 1);
    if (p) p->busy_until = calloc((size_t)wt->conf.partitions, sizeof *p->busy_until);
    if (!p || !p->touched || !p->busy_until) {
        if (p) free(p->touched);
        if (p) free(p->busy_until);
        free(p);
        slb_seterr(b->errmsg, "out of memory");
        return SL_ENOMEM;
    }
    p->b = b;
    p->wt = wt;
    *out = p;
    return 0;
}

/* The partition for a keyless record: the next one round-robin that this
 * handle writes already, or whose lock it can take now; a partition another
 * process holds is skipped for a second. When every partition is held
 * elsewhere, waits for the next one's lock. Only the slow path (a partition
 * not yet open) reads the clock or touches a lock. */
static int keyless_partition(sl_producer *p, int32_t *out)
{
    slb_wtopic *wt = p->wt;
    uint32_t n = (uint32_t)wt->conf.partitions;
    int64_t now = 0;
    slb_plog *l;
    int rc;
    for (uint32_t tries = 0; tries < n; tries++) {
        int32_t q = (int32_t)(wt->rr++ % n);
        if (wt->parts[q]) {
            *out = q;
            return 0;
        }
        if (!now) now = sli_clock_mono_ms();
        if (p->busy_until[q] > now) continue;
        rc = get_writer(p->b, wt, q, &l);
        if (rc == 0) {
            *out = q;
            return 0;
        }
        if (rc != SL_EBUSY) goto fail;
        p->busy_until[q] = now + 1000;
    }
    int32_t q = (int32_t)(wt->rr++ % n);
    if ((rc = get_writer_wait(p->b, wt, q, true, &l)) < 0) goto fail;
    *out = q;
    return 0;
fail:
    memcpy(p->errmsg, p->b->errmsg, sizeof p->errmsg);
    return rc;
}

int sl_producer_send(sl_producer *p, int32_t partition, const sl_record *rec, int64_t *offset)
{
    if (!p) return SL_EINVAL;
    slb_wtopic *wt = p->wt;
    int rc;
    if (rec && !rec->header_count) {
        /* The checks of check_record for the common record, without branches
         * on the way; check_record explains a failure. */
        size_t payload = (rec->key ? rec->key_len : 0) + (rec->value ? rec->value_len : 0);
        bool bad = (payload > (size_t)wt->conf.max_record_bytes) |
                   ((wt->conf.compact != 0) & !rec->key) | (rec->key_len && !rec->key) |
                   (rec->value_len && !rec->value) |
                   ((rec->timestamp < 0) & (rec->timestamp != SL_TIMESTAMP_NONE));
        if (bad) return check_record(wt, rec, p->errmsg);
    } else if ((rc = check_record(wt, rec, p->errmsg)) < 0) {
        return rc;
    }
    if (partition == SL_PARTITION_ANY && rec->key) {
        partition = sl_partition_for_key(rec->key, rec->key_len, wt->conf.partitions);
    } else if (partition == SL_PARTITION_ANY) {
        if ((rc = keyless_partition(p, &partition)) < 0) return rc;
    } else if (partition < 0 || partition >= wt->conf.partitions) {
        slb_seterr(p->errmsg, "topic '%s' has no partition %d (it has %d: 0..%d)", wt->name,
                   partition, wt->conf.partitions, wt->conf.partitions - 1);
        return SL_ERANGE;
    }
    slb_plog *l = wt->parts[partition];
    if (!l && (rc = get_writer(p->b, wt, partition, &l)) < 0) {
        memcpy(p->errmsg, p->b->errmsg, sizeof p->errmsg);
        return rc;
    }
    int64_t ts = rec->timestamp;
    if (ts == SL_TIMESTAMP_NONE) {
        /* Reading the clock per record costs more than encoding it; the
         * cached value is at most 64 records old (and renewed per flush). */
        if (p->now_uses++ % 64 == 0) p->now_ms = sli_clock_wall_ms();
        ts = p->now_ms;
    }
    if ((rc = slb_plog_add(l, rec, ts, offset, p->errmsg)) < 0) return rc;
    p->touched[partition] = 1;
    return 0;
}

int sl_producer_flush(sl_producer *p)
{
    if (!p) return SL_EINVAL;
    int rc = 0;
    p->now_uses = 0;
    for (int32_t i = 0; i < p->wt->conf.partitions; i++) {
        if (!p->touched[i]) continue;
        p->touched[i] = 0;
        int r = slb_plog_flush(p->wt->parts[i], p->errmsg);
        if (r < 0 && rc == 0) rc = r;
    }
    return rc;
}

int sl_producer_close(sl_producer *p)
{
    if (!p) return 0;
    int rc = sl_producer_flush(p);
    free(p->touched);
    free(p->busy_until);
    free(p);
    return rc;
}

const char *sl_producer_errmsg(const sl_producer *p)
{
    return p ? p->errmsg : "out of memory";
}
