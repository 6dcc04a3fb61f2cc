/*
 * connectors/broker/group.c - consumer groups: committed offsets and
 * membership.
 *
 * Committed offsets live in the internal compacted topic __consumer_offsets
 * (1 partition, fsync=always, 1 MiB segments, created on first use). A commit
 * appends one record:
 *
 *   key   (binary)                          value (binary)
 *   -----------------------------------     ------------------------------
 *   2  uint16 LE  group name length g       8  int64 LE  committed offset
 *   g  bytes      group name                m  bytes     metadata, m >= 0
 *   2  uint16 LE  topic name length t                    (the client's string,
 *   t  bytes      topic name                             to the value's end)
 *   4  int32 LE   partition
 *
 * The metadata tail was added for the Kafka protocol server (OffsetCommit
 * carries a metadata string); a value of exactly 8 bytes, as older versions
 * wrote, reads as empty metadata, so old records stay readable (an older
 * reader skips the longer values, though: it wants exactly 8 bytes).
 * sl_group_commit writes one record; slb_group_commit_many writes the
 * offsets of several partitions as one batch (one append, one fsync), as an
 * OffsetCommit request brings them; slb_group_offsets reads the log once and
 * returns the latest commit of every (group, topic, partition) key that
 * matches, for OffsetFetch, ListGroups and a fetch of all of a group's
 * offsets.
 *
 * Compaction keeps the latest commit per key. Several processes commit to the
 * same log, so a commit does not keep the partition's writer lock: it waits
 * for the lock (flock, blocking), recovers the tail as any writer does,
 * appends, fdatasyncs and releases it. A fetch reads the log from the start
 * and keeps the last value of its key (the log stays small: compaction).
 *
 * Membership: DIR/__groups/GROUP/TOPIC/ holds member-K.lock files and a
 * .join lock. Joining takes .join (flock, blocking), then the lowest K whose
 * member-K.lock it can flock exclusively without waiting, and keeps that lock
 * (and fd) for the member's life; a crashed member's lock is released by the
 * kernel, so membership needs no heartbeats. sl_group_member_assignment()
 * takes .join, probes every member-K.lock with a non-blocking flock (held =
 * live member), ranks the live slots 0..n-1 and gives member i the
 * partitions p with p % n == i. Members call it again from time to time (the
 * CLI does at every idle moment) to follow joins and leaves. There is no
 * fencing: during a change two members may both read a partition for a
 * moment, which at-least-once consumers tolerate (Kafka's eager rebalance
 * without generation ids would behave the same).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "connectors/broker/broker_int.h"
#include "connectors/broker/clean.h"
#include "connectors/broker/kgroup.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"

struct sl_group_member {
    char errmsg[SLB_ERRLEN];
    sl_broker *b;
    char topic[SL_TOPIC_NAME_MAX + 1];
    char dir[SLB_PATH_CAP];
    int slot;
    int fd; /* holds member-<slot>.lock */
};

static size_t offsets_key(uint8_t *k, const char *group, const char *topic, int32_t partition)
{
    size_t g = strlen(group), t = strlen(topic), n = 0;
    k[n++] = (uint8_t)g;
    k[n++] = (uint8_t)(g >> 8);
    memcpy(k + n, group, g);
    n += g;
    k[n++] = (uint8_t)t;
    k[n++] = (uint8_t)(t >> 8);
    memcpy(k + n, topic, t);
    n += t;
    slb_put32(k + n, (uint32_t)partition);
    return n + 4;
}

static int ensure_offsets_topic(sl_broker *b)
{
    sl_topic_conf c;
    char err[SLB_ERRLEN];
    if (slb_topic_load(b, SLB_OFFSETS_TOPIC, &c, err) == 0) return 0;
    sl_topic_conf_init(&c);
    c.partitions = 1;
    c.compact = 1;
    c.fsync = SL_FSYNC_ALWAYS;
    c.segment_bytes = 1 << 20;
    int rc = slb_topic_create(b, SLB_OFFSETS_TOPIC, &c, true);
    return rc == SL_EEXIST ? 0 : rc; /* another process was first */
}

static int check_args(sl_broker *b, const char *group, const char *topic, int32_t partition)
{
    int rc = slb_check_name("group", group, false, b->errmsg);
    if (rc == 0) rc = slb_check_name("topic", topic, true, b->errmsg);
    if (rc == 0 && partition < 0) {
        slb_seterr(b->errmsg, "partition %d is negative", partition);
        rc = SL_EINVAL;
    }
    return rc;
}

int sl_group_commit(sl_broker *b, const char *group, const char *topic, int32_t partition,
                    int64_t offset)
{
    if (!b) return SL_EINVAL;
    int rc = check_args(b, group, topic, partition);
    if (rc < 0) return rc;
    if (offset < 0) {
        slb_seterr(b->errmsg, "committed offset %lld is negative", (long long)offset);
        return SL_EINVAL;
    }
    if ((rc = ensure_offsets_topic(b)) < 0) return rc;
    sl_topic_conf c;
    if ((rc = slb_topic_load(b, SLB_OFFSETS_TOPIC, &c, b->errmsg)) < 0) return rc;
    uint8_t key[2 * SL_TOPIC_NAME_MAX + 16], val[8];
    size_t klen = offsets_key(key, group, topic, partition);
    slb_put64(val, (uint64_t)offset);
    sl_record rec = {
        .key = key, .key_len = klen, .value = val, .value_len = 8, .timestamp = SL_TIMESTAMP_NONE};
    char pdir[SLB_PATH_CAP];
    slb_part_dir(pdir, sizeof pdir, b, SLB_OFFSETS_TOPIC, 0);
    slb_plog *l;
    if ((rc = slb_plog_open(&l, pdir, SLB_OFFSETS_TOPIC, 0, &c, true, slb_plog_clean_locked,
                            b->errmsg)) < 0)
        return rc;
    rc = slb_plog_append(l, NULL, &rec, 1, NULL, b->errmsg);
    char err[SLB_ERRLEN];
    int r = slb_plog_close(l, err);
    if (rc == 0 && r < 0) {
        rc = r;
        memcpy(b->errmsg, err, sizeof err);
    }
    return rc;
}

int sl_group_fetch(sl_broker *b, const char *group, const char *topic, int32_t partition,
                   int64_t *offset)
{
    if (!b || !offset) return SL_EINVAL;
    int rc = check_args(b, group, topic, partition);
    if (rc < 0) return rc;
    sl_topic_conf c;
    char err[SLB_ERRLEN];
    if (slb_topic_load(b, SLB_OFFSETS_TOPIC, &c, err) < 0) goto none;
    uint8_t key[2 * SL_TOPIC_NAME_MAX + 16];
    size_t klen = offsets_key(key, group, topic, partition);
    sl_log_reader *r;
    if ((rc = sl_log_reader_open(&r, b, SLB_OFFSETS_TOPIC, 0, SL_OFFSET_BEGINNING)) < 0) return rc;
    bool found = false;
    sl_message m;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        if (m.key_len == klen && !memcmp(m.key, key, klen) && m.value && m.value_len >= 8) {
            *offset = (int64_t)slb_get64(m.value);
            found = true;
        }
    }
    if (rc != SL_EAGAIN) {
        memcpy(b->errmsg, sl_log_reader_errmsg(r), sizeof b->errmsg);
        sl_log_reader_close(r);
        return rc;
    }
    sl_log_reader_close(r);
    if (found) return 0;
none:
    slb_seterr(b->errmsg, "group '%s' has no committed offset for topic '%s' partition %d", group,
               topic, partition);
    return SL_ENOENT;
}

int slb_group_commit_many(sl_broker *b, const char *group, const slb_commit *cs, size_t n)
{
    if (!b || (n && !cs)) return SL_EINVAL;
    if (n == 0) return 0;
    int rc = 0;
    sl_record *recs = NULL;
    uint8_t *buf = NULL;
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_args(b, group, cs[i].topic, cs[i].partition)) < 0) return rc;
        if (cs[i].offset < 0) {
            slb_seterr(b->errmsg, "committed offset %lld is negative", (long long)cs[i].offset);
            return SL_EINVAL;
        }
        if (cs[i].meta_len > SLB_GROUP_META_MAX) {
            slb_seterr(b->errmsg, "commit metadata of %zu bytes is above %d", cs[i].meta_len,
                       SLB_GROUP_META_MAX);
            return SL_ETOOBIG;
        }
        need += 2 * SL_TOPIC_NAME_MAX + 16 + 8 + cs[i].meta_len;
    }
    if ((rc = ensure_offsets_topic(b)) < 0) return rc;
    sl_topic_conf c;
    if ((rc = slb_topic_load(b, SLB_OFFSETS_TOPIC, &c, b->errmsg)) < 0) return rc;
    recs = calloc(n, sizeof *recs);
    buf = malloc(need);
    if (!recs || !buf) {
        slb_seterr(b->errmsg, "out of memory for a commit of %zu offsets", n);
        rc = SL_ENOMEM;
        goto fail;
    }
    uint8_t *q = buf;
    for (size_t i = 0; i < n; i++) {
        size_t klen = offsets_key(q, group, cs[i].topic, cs[i].partition);
        uint8_t *val = q + klen;
        slb_put64(val, (uint64_t)cs[i].offset);
        if (cs[i].meta_len) memcpy(val + 8, cs[i].meta, cs[i].meta_len);
        recs[i] = (sl_record){.key = q,
                              .key_len = klen,
                              .value = val,
                              .value_len = 8 + cs[i].meta_len,
                              .timestamp = SL_TIMESTAMP_NONE};
        q = val + 8 + cs[i].meta_len;
    }
    char pdir[SLB_PATH_CAP];
    slb_part_dir(pdir, sizeof pdir, b, SLB_OFFSETS_TOPIC, 0);
    slb_plog *l;
    if ((rc = slb_plog_open(&l, pdir, SLB_OFFSETS_TOPIC, 0, &c, true, slb_plog_clean_locked,
                            b->errmsg)) < 0)
        goto fail;
    rc = slb_plog_append(l, NULL, recs, n, NULL, b->errmsg);
    char err[SLB_ERRLEN];
    int r = slb_plog_close(l, err);
    if (rc == 0 && r < 0) {
        rc = r;
        memcpy(b->errmsg, err, sizeof err);
    }
fail:
    free(recs);
    free(buf);
    return rc;
}

/* Parse an offsets key; false if it is not one. */
static bool parse_key(const uint8_t *k, size_t n, slb_offset *o)
{
    if (n < 2) return false;
    size_t g = (size_t)k[0] | (size_t)k[1] << 8;
    if (n < 2 + g + 2) return false;
    size_t t = (size_t)k[2 + g] | (size_t)k[3 + g] << 8;
    if (n != 2 + g + 2 + t + 4 || g > SL_TOPIC_NAME_MAX || t > SL_TOPIC_NAME_MAX) return false;
    memcpy(o->group, k + 2, g);
    o->group[g] = 0;
    memcpy(o->topic, k + 4 + g, t);
    o->topic[t] = 0;
    o->partition = (int32_t)slb_get32(k + 4 + g + t);
    return true;
}

int slb_group_offsets(sl_broker *b, const char *group, slb_offset **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    if (!b) return SL_EINVAL;
    sl_topic_conf c;
    char err[SLB_ERRLEN];
    if (slb_topic_load(b, SLB_OFFSETS_TOPIC, &c, err) < 0) return 0; /* nothing committed yet */
    sl_log_reader *r;
    int rc = sl_log_reader_open(&r, b, SLB_OFFSETS_TOPIC, 0, SL_OFFSET_BEGINNING);
    if (rc < 0) return rc;
    slb_offset *v = NULL, o;
    size_t n = 0, cap = 0;
    sl_message m;
    while ((rc = sl_log_reader_next(r, &m, 0)) == 0) {
        if (!m.value || m.value_len < 8 || m.value_len > 8 + SLB_GROUP_META_MAX ||
            !parse_key(m.key, m.key_len, &o))
            continue;
        if (group && strcmp(group, o.group) != 0) continue;
        size_t i = 0; /* the key's entry: the latest commit wins */
        while (i < n && !(v[i].partition == o.partition && !strcmp(v[i].topic, o.topic) &&
                          !strcmp(v[i].group, o.group)))
            i++;
        if (i == n) {
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 16;
                slb_offset *nv = realloc(v, nc * sizeof *v);
                if (!nv) {
                    slb_seterr(b->errmsg, "out of memory reading committed offsets");
                    rc = SL_ENOMEM;
                    break;
                }
                v = nv;
                cap = nc;
            }
            o.meta = NULL;
            o.meta_len = 0;
            v[n++] = o;
        }
        v[i].offset = (int64_t)slb_get64(m.value);
        uint8_t *meta = NULL;
        if (m.value_len > 8 && !(meta = malloc(m.value_len - 8))) {
            slb_seterr(b->errmsg, "out of memory reading committed offsets");
            rc = SL_ENOMEM;
            break;
        }
        if (meta) memcpy(meta, (const uint8_t *)m.value + 8, m.value_len - 8);
        free(v[i].meta);
        v[i].meta = meta;
        v[i].meta_len = m.value_len - 8;
    }
    if (rc != SL_EAGAIN) {
        if (rc != SL_ENOMEM) memcpy(b->errmsg, sl_log_reader_errmsg(r), sizeof b->errmsg);
        sl_log_reader_close(r);
        slb_group_offsets_free(v, n);
        return rc;
    }
    sl_log_reader_close(r);
    *out = v;
    *count = n;
    return 0;
}

void slb_group_offsets_free(slb_offset *v, size_t count)
{
    for (size_t i = 0; v && i < count; i++) free(v[i].meta);
    free(v);
}

int sl_group_offsets(sl_broker *b, const char *group, sl_group_offset **out, size_t *count)
{
    slb_offset *v;
    size_t n;
    *out = NULL;
    *count = 0;
    int rc = slb_group_offsets(b, group, &v, &n);
    if (rc || n == 0) return rc;
    sl_group_offset *o = malloc(n * sizeof(*o));
    if (!o) {
        slb_group_offsets_free(v, n);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(o[i].group, v[i].group, sizeof(o[i].group));
        memcpy(o[i].topic, v[i].topic, sizeof(o[i].topic));
        o[i].partition = v[i].partition;
        o[i].offset = v[i].offset;
    }
    slb_group_offsets_free(v, n);
    *out = o;
    *count = n;
    return 0;
}

void sl_group_offsets_free(sl_group_offset *v)
{
    free(v);
}

/* ---- membership ------------------------------------------------------------ */

static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int r = sli_fsio_mkdir(path, 0755);
        *p = '/';
        if (r < 0 && r != -EEXIST) return r;
    }
    int r = sli_fsio_mkdir(path, 0755);
    return r == -EEXIST ? 0 : r;
}

static int join_lock(sl_group_member *m)
{
    char path[SLB_PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/.join", m->dir);
    int fd = sli_fsio_open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) return fd;
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    return fd;
}

int sl_group_join(sl_group_member **out, sl_broker *b, const char *group, const char *topic)
{
    *out = NULL;
    if (!b) return SL_EINVAL;
    int rc = check_args(b, group, topic, 0);
    if (rc < 0) return rc;
    sl_topic_conf c;
    if ((rc = slb_topic_load(b, topic, &c, b->errmsg)) < 0) return rc;
    sl_group_member *m = calloc(1, sizeof *m);
    if (!m) {
        slb_seterr(b->errmsg, "out of memory");
        return SL_ENOMEM;
    }
    m->b = b;
    m->fd = -1;
    snprintf(m->topic, sizeof m->topic, "%s", topic);
    snprintf(m->dir, sizeof m->dir, "%s/__groups/%s/%s", b->dir, group, topic);
    int r = mkdirs(m->dir);
    if (r < 0) {
        slb_seterr(b->errmsg, "group '%s': cannot create %s: %s", group, m->dir, strerror(-r));
        free(m);
        return sli_errno_code(r);
    }
    int jfd = join_lock(m);
    if (jfd < 0) {
        slb_seterr(b->errmsg, "group '%s': cannot lock %s/.join: %s", group, m->dir,
                   strerror(-jfd));
        free(m);
        return sli_errno_code(jfd);
    }
    for (int k = 0; k < 100000; k++) {
        char path[SLB_PATH_CAP + 32];
        snprintf(path, sizeof path, "%s/member-%d.lock", m->dir, k);
        int fd = sli_fsio_open(path, O_RDWR | O_CREAT, 0644);
        if (fd < 0) {
            r = fd;
            break;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            m->fd = fd;
            m->slot = k;
            break;
        }
        close(fd);
    }
    close(jfd);
    if (m->fd < 0) {
        slb_seterr(b->errmsg, "group '%s': cannot take a member slot in %s", group, m->dir);
        free(m);
        return r < 0 ? sli_errno_code(r) : SL_EFULL;
    }
    *out = m;
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

int sl_group_member_assignment(sl_group_member *m, int32_t *parts, size_t cap, size_t *count)
{
    if (!m || !count) return SL_EINVAL;
    *count = 0;
    sl_topic_conf c;
    int rc = slb_topic_load(m->b, m->topic, &c, m->errmsg);
    if (rc < 0) return rc;
    int jfd = join_lock(m);
    if (jfd < 0) {
        slb_seterr(m->errmsg, "cannot lock %s/.join: %s", m->dir, strerror(-jfd));
        return sli_errno_code(jfd);
    }
    DIR *d = opendir(m->dir);
    if (!d) {
        close(jfd);
        slb_seterr(m->errmsg, "cannot list %s: %s", m->dir, strerror(errno));
        return sli_errno_code(-errno);
    }
    int live[4096], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 4096) {
        int k;
        char tail[8];
        if (sscanf(e->d_name, "member-%d.lock%1s", &k, tail) != 1) continue;
        if (k == m->slot) {
            live[n++] = k;
            continue;
        }
        char path[SLB_PATH_CAP + 300];
        snprintf(path, sizeof path, "%s/%s", m->dir, e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) live[n++] = k;
        close(fd); /* releases a probe lock we may have taken */
    }
    closedir(d);
    close(jfd);
    qsort(live, (size_t)n, sizeof live[0], cmp_int);
    int rank = 0;
    while (rank < n && live[rank] != m->slot) rank++;
    for (int32_t p = 0; p < c.partitions; p++) {
        if (p % n != rank) continue;
        if (*count < cap) parts[*count] = p;
        (*count)++;
    }
    return 0;
}

void sl_group_leave(sl_group_member *m)
{
    if (!m) return;
    if (m->fd >= 0) close(m->fd);
    free(m);
}

const char *sl_group_member_errmsg(const sl_group_member *m)
{
    return m ? m->errmsg : "out of memory";
}
