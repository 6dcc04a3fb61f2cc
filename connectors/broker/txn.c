/*
 * connectors/broker/txn.c - transactional producers: producer ids and epochs
 * per transactional id, and fencing of stale producers.
 *
 * Kafka's transaction coordinator keeps, per transactional id, a producer id
 * and an epoch; InitProducerId bumps the epoch, which fences every producer
 * still holding the older one. The built-in broker keeps that map in one
 * small broker-level file, rewritten whole and atomically (temporary file,
 * fsync, rename, fsync of the directory: sli_fsio_write_file_atomic) under an
 * exclusive flock of a lock file, so producers in several processes may
 * open at once:
 *
 *   DIR/__transactions.state   the map (below)
 *   DIR/__transactions.lock    flock(LOCK_EX) while reading-modifying-writing
 *
 * __transactions.state (little-endian):
 *
 *   offset  size  field
 *   ------  ----  -------------------------------------------------------
 *        0     4  magic              "SLTX"
 *        4     4  crc                CRC-32C of bytes [8, end)
 *        8     8  next_producer_id   int64, the id the next new
 *                                    transactional id gets
 *       16     4  count              uint32, entries that follow
 *       20     *  entries            count times:
 *                   +0   8  producer_id    int64 >= 0
 *                   +8   2  epoch          int16 >= 0
 *                   +10  2  id_len         uint16, 1..SL_TOPIC_NAME_MAX
 *                   +12  *  id             id_len bytes
 *
 * A missing file is an empty map; a file that fails its checks is refused
 * (SL_ECORRUPT), never rewritten, so producer ids are never reused.
 *
 * Fencing happens at two places. The partition (log.c) refuses a batch whose
 * epoch is older than one it has already seen for the producer id; that
 * alone misses an old producer writing to a partition the new one has not
 * written to yet, so sl_txn_producer_append also checks, before each batch,
 * that the state file still names its epoch: one stat(2) per batch, and a
 * read of the file only when it changed (inode, size, ctime).
 *
 * Invariants: a transactional id's (producer_id, epoch) only grows (epoch
 * +1 per open; at the int16 limit a new producer id with epoch 0);
 * next_producer_id is above every producer id in the file; sequence numbers
 * of a producer start at 0 per partition in each epoch and advance only on
 * a successful append, so a failed append retried with the same records is
 * written once (log.c drops the duplicate).
 *
 * Transactions: a transaction begins with the first append after the
 * producer is opened or its last transaction ended; its batches carry
 * SLB_ATTR_TRANSACTIONAL. sl_txn_producer_commit / _abort end it by writing
 * a COMMIT / ABORT marker (a control batch, batch.h) to each partition it
 * appended to, after the same fence check (and the partition's own epoch
 * check). Readers skip the markers.
 *
 * Not here yet (issue 9): the last stable offset and read_committed readers
 * (which would skip aborted batches and stop at an open transaction), and
 * aborting a crashed producer's open transaction when its transactional id
 * is opened again or after a timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connectors/broker/batch.h"
#include "connectors/broker/broker_int.h"
#include "engine/base/crc32c.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"

#define TXN_STATE "__transactions.state"
#define TXN_LOCK  "__transactions.lock"
#define TXN_MAGIC "SLTX"
#define TXN_HDR   20
#define TXN_ENTRY 12
#define EPOCH_MAX 32767

struct sl_txn_producer {
    sl_broker *b;
    char topic[SL_TOPIC_NAME_MAX + 1];
    char tid[SL_TOPIC_NAME_MAX + 1];
    int32_t partitions;
    int64_t pid;
    int16_t epoch;
    int32_t *seq; /* next sequence per partition */
    bool *in_txn; /* partitions appended to in the open transaction */
    /* identity of the state file as last checked (fence check) */
    ino_t ino;
    off_t size;
    struct timespec ctime;
    char errmsg[SLB_ERRLEN];
};

/* The parsed map: buf holds the file; entries are found by scanning. */
typedef struct txn_state {
    uint8_t *buf;
    size_t len;
    int64_t next_pid;
    uint32_t count;
} txn_state;

static void state_path(char *buf, size_t cap, const sl_broker *b, const char *name)
{
    snprintf(buf, cap, "%s/%s", b->dir, name);
}

/* Read and check the state file. A missing file is an empty map. */
static int state_read(const sl_broker *b, txn_state *s, struct stat *st, char *err)
{
    char path[SLB_PATH_CAP];
    state_path(path, sizeof path, b, TXN_STATE);
    memset(s, 0, sizeof *s);
    if (st) memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        slb_seterr(err, "cannot open %s: %s", path, strerror(errno));
        return sli_errno_code(-errno);
    }
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb) < 0) {
        rc = sli_errno_code(-errno);
        slb_seterr(err, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (sb.st_size < TXN_HDR || sb.st_size > (64 << 20)) goto corrupt;
    s->len = (size_t)sb.st_size;
    s->buf = malloc(s->len);
    if (!s->buf) {
        rc = SL_ENOMEM;
        slb_seterr(err, "out of memory");
        goto fail;
    }
    if (slb_read_full(fd, s->buf, s->len, 0) < 0) {
        rc = SL_EIO;
        slb_seterr(err, "cannot read %s", path);
        goto fail;
    }
    if (memcmp(s->buf, TXN_MAGIC, 4) != 0 ||
        slb_get32(s->buf + 4) != sli_crc32c(0, s->buf + 8, s->len - 8))
        goto corrupt;
    s->next_pid = (int64_t)slb_get64(s->buf + 8);
    s->count = slb_get32(s->buf + 16);
    size_t pos = TXN_HDR;
    for (uint32_t i = 0; i < s->count; i++) {
        if (s->len - pos < TXN_ENTRY) goto corrupt;
        uint16_t idl = (uint16_t)(s->buf[pos + 10] | s->buf[pos + 11] << 8);
        if (idl == 0 || idl > SL_TOPIC_NAME_MAX || s->len - pos - TXN_ENTRY < idl) goto corrupt;
        pos += TXN_ENTRY + idl;
    }
    if (pos != s->len || s->next_pid < 0) goto corrupt;
    if (st) *st = sb;
    close(fd);
    return 0;
corrupt:
    rc = SL_ECORRUPT;
    slb_seterr(err, "transaction state file %s is corrupt (bad magic, CRC or length)", path);
fail:
    close(fd);
    free(s->buf);
    s->buf = NULL;
    return rc;
}

/* Position of tid's entry in s, or 0 if it has none. */
static size_t state_find(const txn_state *s, const char *tid, int64_t *pid, int16_t *epoch)
{
    size_t tl = strlen(tid), pos = TXN_HDR;
    for (uint32_t i = 0; i < s->count; i++) {
        uint16_t idl = (uint16_t)(s->buf[pos + 10] | s->buf[pos + 11] << 8);
        if (idl == tl && memcmp(s->buf + pos + TXN_ENTRY, tid, tl) == 0) {
            *pid = (int64_t)slb_get64(s->buf + pos);
            *epoch = (int16_t)(s->buf[pos + 8] | s->buf[pos + 9] << 8);
            return pos;
        }
        pos += TXN_ENTRY + idl;
    }
    return 0;
}

static void put_entry(uint8_t *p, int64_t pid, int16_t epoch)
{
    slb_put64(p, (uint64_t)pid);
    p[8] = (uint8_t)((uint16_t)epoch & 0xff);
    p[9] = (uint8_t)((uint16_t)epoch >> 8);
}

static int lock_state(const sl_broker *b, char *err)
{
    char path[SLB_PATH_CAP];
    state_path(path, sizeof path, b, TXN_LOCK);
    int fd = sli_fsio_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        slb_seterr(err, "cannot open %s: %s", path, strerror(-fd));
        return sli_errno_code(fd);
    }
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            slb_seterr(err, "cannot lock %s: %s", path, strerror(e));
            return sli_errno_code(-e);
        }
    }
    return fd;
}

/* Allocate or bump tid's producer id and epoch, durably. Lock held. */
static int state_bump(sl_txn_producer *p)
{
    txn_state s;
    char *err = p->b->errmsg;
    int rc = state_read(p->b, &s, NULL, err);
    if (rc < 0) return rc;
    int64_t pid;
    int16_t epoch;
    size_t at = s.buf ? state_find(&s, p->tid, &pid, &epoch) : 0;
    size_t tl = strlen(p->tid);
    size_t nlen = at ? s.len : (s.buf ? s.len : TXN_HDR) + TXN_ENTRY + tl;
    uint8_t *nb = malloc(nlen);
    if (!nb) {
        free(s.buf);
        slb_seterr(err, "out of memory");
        return SL_ENOMEM;
    }
    if (s.buf)
        memcpy(nb, s.buf, s.len);
    else
        memset(nb, 0, TXN_HDR);
    int64_t next = s.buf ? s.next_pid : 0;
    uint32_t count = s.buf ? s.count : 0;
    if (at && epoch < EPOCH_MAX) {
        epoch++;
    } else { /* a new transactional id, or its epochs ran out: a new producer id */
        pid = next++;
        epoch = 0;
    }
    if (!at) {
        at = nlen - TXN_ENTRY - tl;
        nb[at + 10] = (uint8_t)(tl & 0xff);
        nb[at + 11] = (uint8_t)(tl >> 8);
        memcpy(nb + at + TXN_ENTRY, p->tid, tl);
        count++;
    }
    put_entry(nb + at, pid, epoch);
    memcpy(nb, TXN_MAGIC, 4);
    slb_put64(nb + 8, (uint64_t)next);
    slb_put32(nb + 16, count);
    slb_put32(nb + 4, sli_crc32c(0, nb + 8, nlen - 8));
    free(s.buf);
    char path[SLB_PATH_CAP];
    state_path(path, sizeof path, p->b, TXN_STATE);
    int r = sli_fsio_write_file_atomic(path, nb, nlen);
    free(nb);
    if (r < 0) {
        slb_seterr(err, "cannot write %s: %s", path, strerror(-r));
        return sli_errno_code(r);
    }
    struct stat st;
    if (stat(path, &st) < 0) {
        slb_seterr(err, "cannot stat %s: %s", path, strerror(errno));
        return sli_errno_code(-errno);
    }
    p->pid = pid;
    p->epoch = epoch;
    p->ino = st.st_ino;
    p->size = st.st_size;
    p->ctime = st.st_ctim;
    return 0;
}

int sl_txn_producer_open(sl_txn_producer **out, sl_broker *b, const char *topic,
                         const char *transactional_id)
{
    if (out) *out = NULL;
    if (!out || !b || !topic) return SL_EINVAL;
    int rc, lfd = -1;
    size_t tl = transactional_id ? strlen(transactional_id) : 0;
    if (tl == 0 || tl > SL_TOPIC_NAME_MAX) {
        slb_seterr(b->errmsg, "transactional id must have 1 to %d bytes (has %zu)",
                   SL_TOPIC_NAME_MAX, tl);
        return SL_EINVAL;
    }
    sl_txn_producer *p = calloc(1, sizeof *p);
    if (!p) {
        slb_seterr(b->errmsg, "out of memory");
        return SL_ENOMEM;
    }
    p->b = b;
    sl_topic_conf conf;
    if ((rc = slb_topic_load(b, topic, &conf, b->errmsg)) < 0) goto fail;
    snprintf(p->topic, sizeof p->topic, "%s", topic);
    memcpy(p->tid, transactional_id, tl + 1);
    p->partitions = conf.partitions;
    p->seq = calloc((size_t)conf.partitions, sizeof *p->seq);
    p->in_txn = calloc((size_t)conf.partitions, sizeof *p->in_txn);
    if (!p->seq || !p->in_txn) {
        rc = SL_ENOMEM;
        slb_seterr(b->errmsg, "out of memory");
        goto fail;
    }
    if ((lfd = lock_state(b, b->errmsg)) < 0) {
        rc = lfd;
        goto fail;
    }
    rc = state_bump(p);
    close(lfd); /* releases the flock */
    if (rc < 0) goto fail;
    *out = p;
    return 0;
fail:
    sl_txn_producer_close(p);
    return rc;
}

/* SL_EFENCED if the state file no longer names this producer's epoch. */
static int fence_check(sl_txn_producer *p)
{
    char path[SLB_PATH_CAP];
    state_path(path, sizeof path, p->b, TXN_STATE);
    struct stat st;
    if (stat(path, &st) == 0 && st.st_ino == p->ino && st.st_size == p->size &&
        st.st_ctim.tv_sec == p->ctime.tv_sec && st.st_ctim.tv_nsec == p->ctime.tv_nsec)
        return 0;
    txn_state s;
    int rc = state_read(p->b, &s, &st, p->errmsg);
    if (rc < 0) return rc;
    int64_t pid = -1;
    int16_t epoch = -1;
    if (!s.buf || !state_find(&s, p->tid, &pid, &epoch)) pid = -1;
    free(s.buf);
    if (pid != p->pid || epoch != p->epoch) {
        snprintf(p->errmsg, sizeof p->errmsg,
                 "transactional id '%s': producer %" PRId64 " epoch %d is fenced by producer "
                 "%" PRId64 " epoch %d",
                 p->tid, p->pid, p->epoch, pid, epoch);
        return SL_EFENCED;
    }
    p->ino = st.st_ino;
    p->size = st.st_size;
    p->ctime = st.st_ctim;
    return 0;
}

int sl_txn_producer_append(sl_txn_producer *p, int32_t partition, const sl_record *recs, size_t n,
                           int64_t *base_offset)
{
    if (!p) return SL_EINVAL;
    p->errmsg[0] = 0;
    if (partition < 0 || partition >= p->partitions) {
        snprintf(p->errmsg, sizeof p->errmsg, "topic '%s' has no partition %d (it has %d)",
                 p->topic, partition, p->partitions);
        return SL_ERANGE;
    }
    if (n > INT32_MAX || (int64_t)p->seq[partition] + (int64_t)n - 1 > INT32_MAX) {
        snprintf(p->errmsg, sizeof p->errmsg,
                 "producer %" PRId64 " epoch %d: sequence numbers of partition %d ran out; "
                 "open the producer again",
                 p->pid, p->epoch, partition);
        return SL_ERANGE;
    }
    int rc = fence_check(p);
    if (rc < 0) return rc;
    sl_producer_ref ref = {
        .producer_id = p->pid, .epoch = p->epoch, .base_sequence = p->seq[partition]};
    if (!recs || n == 0) {
        snprintf(p->errmsg, sizeof p->errmsg, "no records to append");
        return SL_EINVAL;
    }
    rc = slb_log_append(p->b, p->topic, partition, &ref, SLB_ATTR_TRANSACTIONAL, recs, n,
                        base_offset);
    if (rc < 0) {
        snprintf(p->errmsg, sizeof p->errmsg, "%s", p->b->errmsg);
        return rc;
    }
    p->seq[partition] += (int32_t)n;
    p->in_txn[partition] = true;
    return 0;
}

/* Write a marker of type to each partition of the open transaction. */
static int end_txn(sl_txn_producer *p, int type)
{
    if (!p) return SL_EINVAL;
    p->errmsg[0] = 0;
    int rc = fence_check(p);
    if (rc < 0) return rc;
    sl_producer_ref ref = {.producer_id = p->pid, .epoch = p->epoch, .base_sequence = -1};
    for (int32_t i = 0; i < p->partitions; i++) {
        if (!p->in_txn[i]) continue;
        if ((rc = slb_log_append_marker(p->b, p->topic, i, &ref, type, NULL)) < 0) {
            snprintf(p->errmsg, sizeof p->errmsg, "%s", p->b->errmsg);
            return rc; /* the partitions left keep in_txn: the call may be retried */
        }
        p->in_txn[i] = false;
    }
    return 0;
}

int sl_txn_producer_commit(sl_txn_producer *p)
{
    return end_txn(p, SLB_MARKER_COMMIT);
}

int sl_txn_producer_abort(sl_txn_producer *p)
{
    return end_txn(p, SLB_MARKER_ABORT);
}

int64_t sl_txn_producer_id(const sl_txn_producer *p)
{
    return p ? p->pid : -1;
}

int16_t sl_txn_producer_epoch(const sl_txn_producer *p)
{
    return p ? p->epoch : -1;
}

void sl_txn_producer_close(sl_txn_producer *p)
{
    if (!p) return;
    free(p->seq);
    free(p->in_txn);
    free(p);
}

const char *sl_txn_producer_errmsg(const sl_txn_producer *p)
{
    return p ? p->errmsg : "out of memory";
}
