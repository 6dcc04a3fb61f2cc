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
 *        0     4  magic              "SLT3" (read, never written: "SLT2",
 *                                    version 2, and "SLTX", version 1; see
 *                                    below)
 *        4     4  crc                CRC-32C of bytes [8, end)
 *        8     8  next_producer_id   int64, the id the next new
 *                                    transactional id (or idempotent
 *                                    producer of the server) gets
 *       16     4  count              uint32, entries that follow
 *       20     *  entries            count times:
 *                   +0   8  producer_id    int64 >= 0
 *                   +8   2  epoch          int16 >= 0
 *                   +10  2  id_len         uint16, 1..SL_TOPIC_NAME_MAX
 *                   +12  8  txn_start_ms   int64, wall-clock ms at which the
 *                                          open transaction was begun; -1:
 *                                          no open transaction (part_count
 *                                          and offset_count are then 0)
 *                   +20  8  txn_timeout_ms int64, the id's transaction
 *                                          timeout
 *                   +28  2  txn_epoch      int16, the epoch the open (or
 *                                          last) transaction was begun in;
 *                                          below epoch: its abort was begun
 *                                          (the epoch bumped) but not done
 *                   +30  2  phase          uint16: 0 open, 1 commit prepared
 *                                          (markers and offsets being
 *                                          written), 2 last one committed,
 *                                          3 last one aborted
 *                   +32  4  part_count     uint32, 0..SL_PARTITIONS_MAX
 *                   +36  4  offset_count   uint32, 0..SL_PARTITIONS_MAX
 *                   +40  *  id             id_len bytes
 *                        *  partitions     part_count times: the partitions
 *                                          it may have written to
 *                             2  topic_len uint16, 1..SL_TOPIC_NAME_MAX
 *                             *  topic     topic_len bytes
 *                             4  partition int32
 *                        *  offsets        offset_count times: the group
 *                                          offsets it commits (TxnOffset-
 *                                          Commit)
 *                             2  group_len uint16, 1..SL_TOPIC_NAME_MAX
 *                             *  group     group_len bytes
 *                             2  topic_len uint16, 1..SL_TOPIC_NAME_MAX
 *                             *  topic     topic_len bytes
 *                             4  partition int32
 *                             8  offset    int64
 *
 * Version 2 entries are 36 bytes: +30 is topic_len (one topic for the whole
 * transaction, after the id) and part_count int32 partitions follow; no
 * phase, no offsets. Version 1 entries are 12 bytes (+0..+11), then the id.
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
 * SLB_ATTR_TRANSACTIONAL. Before the first append to a partition, the
 * partition is added to the transaction's entry in the state file (Kafka's
 * AddPartitionsToTxn; one atomic rewrite per partition per transaction), so
 * that whoever finds the transaction open after a crash knows where to end
 * it. sl_txn_producer_commit / _abort end it by writing a COMMIT / ABORT
 * marker (a control batch, batch.h) to each partition it appended to, after
 * the same fence check (and the partition's own epoch check), and then
 * forget it in the state file. Readers skip the markers; read_committed
 * readers (reader.c) use them to decide the transaction's records.
 *
 * Ending a transaction its producer did not end:
 * - sl_txn_producer_open of the same id: bumps the epoch and writes that
 *   durably first (fencing the old producer, on the state file and, with
 *   the ABORT markers of the new epoch, on the partitions), then writes
 *   ABORT to every partition the entry lists, then forgets the transaction.
 * - the timeout: expire_locked aborts, the same way, every transaction open
 *   longer than its timeout (default 15 min) and every abort left half done
 *   (txn_epoch < epoch). It runs lazily: in every sl_txn_producer_open (for
 *   the other ids of the directory) and in sl_txn_abort_expired, which
 *   `sluice topic describe` and `sluice consume` call.
 * - sl_txn_recover_commit: writes COMMIT with the entry's own producer id
 *   and epoch (no bump), only if the entry still names that epoch and its
 *   open transaction; else 1 (nothing to do).
 * Markers of these paths are written only where the partition's producer
 * state (log.c) says the producer's transaction is still open (or does not
 * know: a partition whose active segment holds nothing of the producer gets
 * one anyway; a marker without an open transaction is ignored by readers),
 * so a crash between markers is completed, not repeated. A partition that
 * another writer holds (a producer still alive in another process) cannot
 * be marked: the call fails with SL_EBUSY (open, recover) or leaves the
 * transaction for later (timeout), and readers keep waiting at it; the
 * epoch bump is durable either way, so the live producer is fenced.
 * Markers go through the broker handle's writer of the partition if it has
 * one (recover_commit opens and keeps it, as the sink appends there next);
 * otherwise through a writer opened and closed for the marker, so that a
 * reader (`consume`) does not keep partition locks.
 *
 * The Kafka-protocol server is a transaction coordinator over the same
 * file (slb_txn_*, at the end, for kapi_txn.c): its transactions span
 * topics and carry group offsets, and every path that ends one goes through
 * finish_locked (a commit is first made durable as "prepared", so a crash
 * between markers completes it; then markers; then a commit's offsets
 * through sl_group_commit; then the transaction is forgotten). Idempotent
 * producers of the server take their ids from next_producer_id too.
 *
 * Lock order: the state lock, then partition locks, never waiting for the
 * latter (SL_EBUSY); a producer holds partition locks and takes the state
 * lock (waiting) to register a partition, so nothing waits in a cycle.
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
#include "engine/base/clock.h"
#include "engine/base/crc32c.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"

#define TXN_STATE  "__transactions.state"
#define TXN_LOCK   "__transactions.lock"
#define TXN_MAGIC1 "SLTX" /* version 1: entries without the transaction fields */
#define TXN_MAGIC2 "SLT2" /* version 2: one topic per open transaction */
#define TXN_MAGIC  "SLT3"
#define TXN_HDR    20
#define TXN_ENTRY1 12
#define TXN_ENTRY2 36
#define TXN_ENTRY  40

/* An entry's phase (version 3, +30). */
#define PHASE_OPEN      0 /* start_ms >= 0: open; else no transaction since the epoch began */
#define PHASE_PREPARED  1 /* commit decided (durable): markers and offsets being written */
#define PHASE_COMMITTED 2 /* no transaction open; the last one (txn_epoch) committed */
#define PHASE_ABORTED   3 /* no transaction open; the last one (txn_epoch) aborted */
#define EPOCH_MAX       32767

struct sl_txn_producer {
    sl_broker *b;
    char topic[SL_TOPIC_NAME_MAX + 1];
    char tid[SL_TOPIC_NAME_MAX + 1];
    int32_t partitions;
    int64_t pid;
    int16_t epoch;
    int64_t timeout_ms;
    int32_t *seq;     /* next sequence per partition */
    bool *in_txn;     /* partitions appended to in the open transaction */
    bool *registered; /* partitions the state file lists for the open transaction */
    /* identity of the state file as last checked (fence check) */
    ino_t ino;
    off_t size;
    struct timespec ctime;
    char errmsg[SLB_ERRLEN];
};

/* A partition of an open transaction. */
typedef struct txn_tp {
    char topic[SL_TOPIC_NAME_MAX + 1];
    int32_t partition;
} txn_tp;

/* A group offset of an open transaction (TxnOffsetCommit). */
typedef struct txn_off {
    char group[SL_TOPIC_NAME_MAX + 1];
    char topic[SL_TOPIC_NAME_MAX + 1];
    int32_t partition;
    int64_t offset;
} txn_off;

/* One transactional id's entry, parsed. */
typedef struct txn_entry {
    int64_t pid;
    int16_t epoch;
    char id[SL_TOPIC_NAME_MAX + 1];
    int64_t start_ms; /* the open transaction's first registration (wall clock); -1: none */
    int64_t timeout_ms;
    int16_t txn_epoch; /* the epoch it was begun in; < epoch: being aborted */
    uint16_t phase;    /* PHASE_*: open, commit prepared, or how the last one ended */
    uint32_t nparts;
    txn_tp *parts; /* the partitions it may have written to */
    uint32_t noffs;
    txn_off *offs; /* group offsets committed when it commits */
} txn_entry;

/* The parsed map. */
typedef struct txn_state {
    int64_t next_pid;
    uint32_t count;
    txn_entry *e;
} txn_state;

static void state_path(char *buf, size_t cap, const sl_broker *b, const char *name)
{
    snprintf(buf, cap, "%s/%s", b->dir, name);
}

static void state_free(txn_state *s)
{
    for (uint32_t i = 0; i < s->count; i++) {
        free(s->e[i].parts);
        free(s->e[i].offs);
    }
    free(s->e);
    memset(s, 0, sizeof *s);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* Parse the file's bytes (magic and CRC checked by the caller) of format
 * version ver (1, 2 or 3). */
static int state_parse(const uint8_t *buf, size_t len, int ver, txn_state *s)
{
    s->next_pid = (int64_t)slb_get64(buf + 8);
    uint32_t count = slb_get32(buf + 16);
    size_t fixed = ver == 1 ? TXN_ENTRY1 : ver == 2 ? TXN_ENTRY2 : TXN_ENTRY, pos = TXN_HDR;
    if (s->next_pid < 0 || count > (len - TXN_HDR) / fixed) return SL_ECORRUPT;
    s->e = calloc(count ? count : 1, sizeof *s->e);
    if (!s->e) return SL_ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        txn_entry *e = &s->e[i];
        s->count = i + 1;
        e->start_ms = -1;
        if (len - pos < fixed) return SL_ECORRUPT;
        const uint8_t *q = buf + pos, *end = buf + len;
        e->pid = (int64_t)slb_get64(q);
        e->epoch = (int16_t)get16(q + 8);
        uint16_t idl = get16(q + 10), tl = 0;
        uint32_t np = 0, no = 0;
        if (ver >= 2) {
            e->start_ms = (int64_t)slb_get64(q + 12);
            e->timeout_ms = (int64_t)slb_get64(q + 20);
            e->txn_epoch = (int16_t)get16(q + 28);
            np = slb_get32(q + 32);
        }
        if (ver == 2) tl = get16(q + 30);
        if (ver == 3) {
            e->phase = get16(q + 30);
            no = slb_get32(q + 36);
        }
        if (e->pid < 0 || e->epoch < 0 || idl == 0 || idl > SL_TOPIC_NAME_MAX ||
            tl > SL_TOPIC_NAME_MAX || np > SL_PARTITIONS_MAX || no > SL_PARTITIONS_MAX ||
            e->phase > PHASE_ABORTED || (size_t)(end - q) < fixed + idl + tl)
            return SL_ECORRUPT;
        q += fixed;
        memcpy(e->id, q, idl);
        q += idl;
        char topic2[SL_TOPIC_NAME_MAX + 1] = ""; /* version 2: one topic for all */
        memcpy(topic2, q, tl);
        q += tl;
        if (np && !(e->parts = calloc(np, sizeof *e->parts))) return SL_ENOMEM;
        if (no && !(e->offs = calloc(no, sizeof *e->offs))) return SL_ENOMEM;
        e->nparts = np;
        e->noffs = no;
        for (uint32_t k = 0; k < np; k++) {
            txn_tp *t = &e->parts[k];
            if (ver == 2) {
                if (end - q < 4) return SL_ECORRUPT;
                memcpy(t->topic, topic2, sizeof topic2);
            } else {
                if (end - q < 2) return SL_ECORRUPT;
                uint16_t l = get16(q);
                if (l == 0 || l > SL_TOPIC_NAME_MAX || end - q < 6 + l) return SL_ECORRUPT;
                memcpy(t->topic, q + 2, l);
                q += 2 + l;
            }
            t->partition = (int32_t)slb_get32(q);
            q += 4;
        }
        for (uint32_t k = 0; k < no; k++) {
            txn_off *o = &e->offs[k];
            uint16_t gl, l;
            if (end - q < 2 || (gl = get16(q)) == 0 || gl > SL_TOPIC_NAME_MAX || end - q < 4 + gl)
                return SL_ECORRUPT;
            memcpy(o->group, q + 2, gl);
            q += 2 + gl;
            if ((l = get16(q)) == 0 || l > SL_TOPIC_NAME_MAX || end - q < 14 + l)
                return SL_ECORRUPT;
            memcpy(o->topic, q + 2, l);
            q += 2 + l;
            o->partition = (int32_t)slb_get32(q);
            o->offset = (int64_t)slb_get64(q + 4);
            q += 12;
        }
        pos = (size_t)(q - buf);
    }
    return pos == len ? 0 : SL_ECORRUPT;
}

/* Read and check the state file. A missing file is an empty map. */
static int state_read(const sl_broker *b, txn_state *s, struct stat *st, char *err)
{
    char path[SLB_PATH_CAP];
    state_path(path, sizeof path, b, TXN_STATE);
    memset(s, 0, sizeof *s);
    if (st) memset(st, 0, sizeof *st);
    uint8_t *buf = NULL;
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
    size_t len = (size_t)sb.st_size;
    if (!(buf = malloc(len))) {
        rc = SL_ENOMEM;
        slb_seterr(err, "out of memory");
        goto fail;
    }
    if (slb_read_full(fd, buf, len, 0) < 0) {
        rc = SL_EIO;
        slb_seterr(err, "cannot read %s", path);
        goto fail;
    }
    int ver = !memcmp(buf, TXN_MAGIC, 4)    ? 3
              : !memcmp(buf, TXN_MAGIC2, 4) ? 2
              : !memcmp(buf, TXN_MAGIC1, 4) ? 1
                                            : 0;
    if (!ver || slb_get32(buf + 4) != sli_crc32c(0, buf + 8, len - 8)) goto corrupt;
    if ((rc = state_parse(buf, len, ver, s)) == SL_ECORRUPT) goto corrupt;
    if (rc < 0) {
        slb_seterr(err, "out of memory");
        goto fail;
    }
    if (st) *st = sb;
    free(buf);
    close(fd);
    return 0;
corrupt:
    rc = SL_ECORRUPT;
    slb_seterr(err, "transaction state file %s is corrupt (bad magic, CRC or length)", path);
fail:
    close(fd);
    free(buf);
    state_free(s);
    return rc;
}

/* Write s whole, atomically (format version 3); *st (may be NULL) gets
 * the new file's identity. */
static int state_write(const sl_broker *b, const txn_state *s, struct stat *st, char *err)
{
    size_t len = TXN_HDR;
    for (uint32_t i = 0; i < s->count; i++) {
        const txn_entry *e = &s->e[i];
        len += TXN_ENTRY + strlen(e->id);
        for (uint32_t k = 0; k < e->nparts; k++) len += 6 + strlen(e->parts[k].topic);
        for (uint32_t k = 0; k < e->noffs; k++)
            len += 16 + strlen(e->offs[k].group) + strlen(e->offs[k].topic);
    }
    uint8_t *nb = calloc(1, len);
    if (!nb) {
        slb_seterr(err, "out of memory");
        return SL_ENOMEM;
    }
    memcpy(nb, TXN_MAGIC, 4);
    slb_put64(nb + 8, (uint64_t)s->next_pid);
    slb_put32(nb + 16, s->count);
    uint8_t *q = nb + TXN_HDR;
    for (uint32_t i = 0; i < s->count; i++) {
        const txn_entry *e = &s->e[i];
        size_t idl = strlen(e->id);
        slb_put64(q, (uint64_t)e->pid);
        put16(q + 8, (uint16_t)e->epoch);
        put16(q + 10, (uint16_t)idl);
        slb_put64(q + 12, (uint64_t)e->start_ms);
        slb_put64(q + 20, (uint64_t)e->timeout_ms);
        put16(q + 28, (uint16_t)e->txn_epoch);
        put16(q + 30, e->phase);
        slb_put32(q + 32, e->nparts);
        slb_put32(q + 36, e->noffs);
        q += TXN_ENTRY;
        memcpy(q, e->id, idl);
        q += idl;
        for (uint32_t k = 0; k < e->nparts; k++) {
            size_t l = strlen(e->parts[k].topic);
            put16(q, (uint16_t)l);
            memcpy(q + 2, e->parts[k].topic, l);
            slb_put32(q + 2 + l, (uint32_t)e->parts[k].partition);
            q += 6 + l;
        }
        for (uint32_t k = 0; k < e->noffs; k++) {
            const txn_off *o = &e->offs[k];
            size_t gl = strlen(o->group), l = strlen(o->topic);
            put16(q, (uint16_t)gl);
            memcpy(q + 2, o->group, gl);
            q += 2 + gl;
            put16(q, (uint16_t)l);
            memcpy(q + 2, o->topic, l);
            q += 2 + l;
            slb_put32(q, (uint32_t)o->partition);
            slb_put64(q + 4, (uint64_t)o->offset);
            q += 12;
        }
    }
    slb_put32(nb + 4, sli_crc32c(0, nb + 8, len - 8));
    char path[SLB_PATH_CAP];
    state_path(path, sizeof path, b, TXN_STATE);
    int r = sli_fsio_write_file_atomic(path, nb, len);
    free(nb);
    if (r < 0) {
        slb_seterr(err, "cannot write %s: %s", path, strerror(-r));
        return sli_errno_code(r);
    }
    struct stat sb;
    if (stat(path, &sb) < 0) {
        slb_seterr(err, "cannot stat %s: %s", path, strerror(errno));
        return sli_errno_code(-errno);
    }
    if (st) *st = sb;
    return 0;
}

static txn_entry *state_find(txn_state *s, const char *tid)
{
    for (uint32_t i = 0; i < s->count; i++)
        if (!strcmp(s->e[i].id, tid)) return &s->e[i];
    return NULL;
}

/* Forget e's open transaction (its partitions and offsets), noting how it
 * ended (PHASE_COMMITTED or PHASE_ABORTED). */
static void entry_clear_txn(txn_entry *e, uint16_t ended)
{
    e->start_ms = -1;
    e->phase = ended;
    e->nparts = e->noffs = 0;
    free(e->parts);
    free(e->offs);
    e->parts = NULL;
    e->offs = NULL;
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

/* Write a marker of type for e's open transaction to each of its
 * partitions where it is still open (with e's current epoch). keep: through
 * b's writers (kept). Lock held. */
static int mark_entry(sl_broker *b, const txn_entry *e, int type, bool keep, int *written)
{
    sl_producer_ref ref = {.producer_id = e->pid, .epoch = e->epoch, .base_sequence = -1};
    for (uint32_t k = 0; k < e->nparts; k++) {
        int rc = slb_log_append_marker(b, e->parts[k].topic, e->parts[k].partition, &ref, type,
                                       true, keep, NULL);
        /* The topic was deleted (or made again with fewer partitions): nothing
         * of the transaction is left there to end. */
        if (rc == SL_ENOENT || rc == SL_ERANGE) continue;
        if (rc < 0) return rc;
        if (rc == 0 && written) (*written)++;
    }
    return 0;
}

/* End e's open transaction with type (SLB_MARKER_COMMIT or _ABORT), the one
 * rule for every path that ends a transaction through the state file: a
 * commit is first made durable as PHASE_PREPARED (so that whoever finds it
 * after a crash completes the commit, never aborts half of it), then the
 * markers are written (mark_entry: only where still open), then a commit's
 * group offsets (sl_group_commit), then the transaction is forgotten. A
 * failure leaves the entry as it was (or PREPARED) for a retry. Lock held. */
static int finish_locked(sl_broker *b, txn_state *s, txn_entry *e, int type, bool keep,
                         int *written)
{
    int rc;
    if (type == SLB_MARKER_COMMIT && e->phase != PHASE_PREPARED) {
        e->phase = PHASE_PREPARED;
        if ((rc = state_write(b, s, NULL, b->errmsg)) < 0) return rc;
    }
    if ((rc = mark_entry(b, e, type, keep, written)) < 0) return rc;
    for (uint32_t k = 0; type == SLB_MARKER_COMMIT && k < e->noffs; k++) {
        const txn_off *o = &e->offs[k];
        if ((rc = sl_group_commit(b, o->group, o->topic, o->partition, o->offset)) < 0) return rc;
    }
    entry_clear_txn(e, type == SLB_MARKER_COMMIT ? PHASE_COMMITTED : PHASE_ABORTED);
    return state_write(b, s, NULL, b->errmsg);
}

/* Abort the transactions of s that are past their timeout at now, or whose
 * abort an earlier call began (txn_epoch < epoch), except skip's: bump the
 * epoch (fencing the producer, made durable before any marker), write ABORT
 * markers, forget the transaction. A transaction whose commit was prepared
 * is committed instead (finish_locked). A failure leaves that transaction
 * for a later call. Returns how many were ended (negative: a state write
 * failed). Lock held. */
static int expire_locked(sl_broker *b, txn_state *s, int64_t now, const char *skip)
{
    int n = 0, rc;
    for (uint32_t i = 0; i < s->count; i++) {
        txn_entry *e = &s->e[i];
        if (e->start_ms < 0 || (skip && !strcmp(e->id, skip))) continue;
        if (e->phase == PHASE_PREPARED) {
            if (finish_locked(b, s, e, SLB_MARKER_COMMIT, false, NULL) == 0) n++;
            continue;
        }
        bool pending = e->txn_epoch < e->epoch;
        if (!pending && now - e->start_ms <= e->timeout_ms) continue;
        if (!pending && e->epoch < EPOCH_MAX) {
            e->epoch++;
            if ((rc = state_write(b, s, NULL, b->errmsg)) < 0) return rc;
        }
        if (finish_locked(b, s, e, SLB_MARKER_ABORT, false, NULL) == 0) n++;
    }
    return n;
}

/* Allocate or bump tid's producer id and epoch in s, durably, ending the
 * transaction an older epoch left open (aborted; completed if its commit
 * was prepared) and expired ones of other ids. timeout_ms > 0 becomes the
 * id's transaction timeout. *out gets the entry. Lock held. */
static int bump_locked(sl_broker *b, txn_state *s, const char *tid, int64_t timeout_ms,
                       struct stat *st, txn_entry **out)
{
    char *err = b->errmsg;
    int rc;
    if ((rc = expire_locked(b, s, sli_clock_wall_ms(), tid)) < 0) return rc;
    txn_entry *e = state_find(s, tid);
    if (!e) {
        txn_entry *ne = realloc(s->e, (s->count + 1) * sizeof *ne);
        if (!ne) {
            slb_seterr(err, "out of memory");
            return SL_ENOMEM;
        }
        s->e = ne;
        e = &s->e[s->count++];
        memset(e, 0, sizeof *e);
        snprintf(e->id, sizeof e->id, "%s", tid);
        e->pid = s->next_pid++;
        e->epoch = 0;
        e->start_ms = -1;
        e->timeout_ms = SL_TXN_TIMEOUT_DEFAULT_MS;
    } else {
        if (e->start_ms >= 0 && e->phase == PHASE_PREPARED &&
            (rc = finish_locked(b, s, e, SLB_MARKER_COMMIT, false, NULL)) < 0)
            return rc;
        bool open_txn = e->start_ms >= 0, ran_out = e->epoch >= EPOCH_MAX;
        if (!ran_out) {
            e->epoch++;
            /* Fence the older producer before ending its transaction. */
            if (open_txn && (rc = state_write(b, s, NULL, err)) < 0) return rc;
        }
        if (open_txn) {
            if ((rc = mark_entry(b, e, SLB_MARKER_ABORT, false, NULL)) < 0) {
                char why[SLB_ERRLEN];
                memcpy(why, err, sizeof why);
                slb_seterr(err,
                           "transactional id '%s': cannot abort the transaction epoch %d "
                           "left open (epoch %d fences it already; opening again retries): %s",
                           tid, e->txn_epoch, e->epoch, why);
                return rc;
            }
            entry_clear_txn(e, PHASE_ABORTED);
        }
        if (ran_out) { /* epochs ran out: a new producer id */
            e->pid = s->next_pid++;
            e->epoch = 0;
        }
    }
    if (timeout_ms > 0) e->timeout_ms = timeout_ms;
    if ((rc = state_write(b, s, st, err)) < 0) return rc;
    *out = e;
    return 0;
}

/* sl_txn_producer_open's part under the lock. */
static int state_bump(sl_txn_producer *p)
{
    txn_state s;
    struct stat st;
    txn_entry *e;
    int rc = state_read(p->b, &s, NULL, p->b->errmsg);
    if (rc < 0) return rc;
    if ((rc = bump_locked(p->b, &s, p->tid, 0, &st, &e)) == 0) {
        p->pid = e->pid;
        p->epoch = e->epoch;
        p->ino = st.st_ino;
        p->size = st.st_size;
        p->ctime = st.st_ctim;
    }
    state_free(&s);
    return rc;
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
    p->timeout_ms = SL_TXN_TIMEOUT_DEFAULT_MS;
    sl_topic_conf conf;
    if ((rc = slb_check_name("topic", topic, false, b->errmsg)) < 0 ||
        (rc = slb_topic_load(b, topic, &conf, b->errmsg)) < 0)
        goto fail;
    snprintf(p->topic, sizeof p->topic, "%s", topic);
    memcpy(p->tid, transactional_id, tl + 1);
    p->partitions = conf.partitions;
    p->seq = calloc((size_t)conf.partitions, sizeof *p->seq);
    p->in_txn = calloc((size_t)conf.partitions, sizeof *p->in_txn);
    p->registered = calloc((size_t)conf.partitions, sizeof *p->registered);
    if (!p->seq || !p->in_txn || !p->registered) {
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

int sl_txn_producer_set_timeout(sl_txn_producer *p, int64_t timeout_ms)
{
    if (!p) return SL_EINVAL;
    if (timeout_ms <= 0) {
        snprintf(p->errmsg, sizeof p->errmsg, "transaction timeout %" PRId64 " ms is not positive",
                 timeout_ms);
        return SL_EINVAL;
    }
    p->timeout_ms = timeout_ms;
    return 0;
}

static int fenced(sl_txn_producer *p, int64_t pid, int16_t epoch)
{
    snprintf(p->errmsg, sizeof p->errmsg,
             "transactional id '%s': producer %" PRId64 " epoch %d is fenced by producer "
             "%" PRId64 " epoch %d",
             p->tid, p->pid, p->epoch, pid, epoch);
    return SL_EFENCED;
}

static void note_identity(sl_txn_producer *p, const struct stat *st)
{
    p->ino = st->st_ino;
    p->size = st->st_size;
    p->ctime = st->st_ctim;
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
    txn_entry *e = state_find(&s, p->tid);
    int64_t pid = e ? e->pid : -1;
    int16_t epoch = e ? e->epoch : -1;
    state_free(&s);
    if (pid != p->pid || epoch != p->epoch) return fenced(p, pid, epoch);
    note_identity(p, &st);
    return 0;
}

/* Change this producer's open transaction in the state file under its lock:
 * add partition (>= 0) to it, beginning it if needed, or (partition -1)
 * forget it. SL_EFENCED if a newer epoch was opened. */
static int state_txn_update(sl_txn_producer *p, int32_t partition)
{
    int lfd = lock_state(p->b, p->errmsg);
    if (lfd < 0) return lfd;
    txn_state s;
    int rc = state_read(p->b, &s, NULL, p->errmsg);
    if (rc < 0) goto out;
    txn_entry *e = state_find(&s, p->tid);
    if (!e || e->pid != p->pid || e->epoch != p->epoch) {
        rc = fenced(p, e ? e->pid : -1, e ? e->epoch : -1);
        goto out;
    }
    if (partition < 0) {
        if (e->start_ms < 0) goto out;
        entry_clear_txn(e, PHASE_COMMITTED);
    } else {
        if (e->start_ms < 0) {
            e->start_ms = sli_clock_wall_ms();
            e->timeout_ms = p->timeout_ms;
            e->txn_epoch = p->epoch;
            e->phase = PHASE_OPEN;
        }
        uint32_t k = 0;
        while (k < e->nparts &&
               (e->parts[k].partition != partition || strcmp(e->parts[k].topic, p->topic)))
            k++;
        if (k == e->nparts) {
            txn_tp *np = realloc(e->parts, (e->nparts + 1) * sizeof *np);
            if (!np) {
                rc = SL_ENOMEM;
                snprintf(p->errmsg, sizeof p->errmsg, "out of memory");
                goto out;
            }
            e->parts = np;
            snprintf(np[e->nparts].topic, sizeof np[e->nparts].topic, "%s", p->topic);
            np[e->nparts++].partition = partition;
        }
    }
    struct stat st;
    if ((rc = state_write(p->b, &s, &st, p->errmsg)) < 0) goto out;
    note_identity(p, &st);
out:
    state_free(&s);
    close(lfd);
    return rc;
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
    if (!recs || n == 0) {
        snprintf(p->errmsg, sizeof p->errmsg, "no records to append");
        return SL_EINVAL;
    }
    /* A partition new to the transaction is listed in the state file first
     * (Kafka's AddPartitionsToTxn), so that a crash leaves a record of where
     * the transaction must be ended; that also checks the fence. */
    int rc = p->registered[partition] ? fence_check(p) : state_txn_update(p, partition);
    if (rc < 0) return rc;
    p->registered[partition] = true;
    sl_producer_ref ref = {
        .producer_id = p->pid, .epoch = p->epoch, .base_sequence = p->seq[partition]};
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

/* Write a marker of type to each partition of the open transaction, then
 * forget the transaction in the state file. */
static int end_txn(sl_txn_producer *p, int type)
{
    if (!p) return SL_EINVAL;
    p->errmsg[0] = 0;
    int rc = fence_check(p);
    if (rc < 0) return rc;
    bool any = false;
    for (int32_t i = 0; i < p->partitions; i++) any |= p->registered[i];
    if (!any) return 0;
    sl_producer_ref ref = {.producer_id = p->pid, .epoch = p->epoch, .base_sequence = -1};
    for (int32_t i = 0; i < p->partitions; i++) {
        if (!p->in_txn[i]) continue;
        if ((rc = slb_log_append_marker(p->b, p->topic, i, &ref, type, false, true, NULL)) < 0) {
            snprintf(p->errmsg, sizeof p->errmsg, "%s", p->b->errmsg);
            return rc; /* the partitions left keep in_txn: the call may be retried */
        }
        p->in_txn[i] = false;
    }
    /* Every marker is written: the transaction is over even if this fails
     * (a later open or recovery finds nothing open to end). */
    rc = state_txn_update(p, -1);
    if (rc < 0 && rc != SL_EFENCED) return rc;
    memset(p->registered, 0, (size_t)p->partitions * sizeof *p->registered);
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

int sl_txn_abort_expired(sl_broker *b, int64_t now_ms)
{
    if (!b) return SL_EINVAL;
    if (now_ms == 0) now_ms = sli_clock_wall_ms();
    char path[SLB_PATH_CAP];
    struct stat st;
    state_path(path, sizeof path, b, TXN_STATE);
    if (stat(path, &st) < 0 && errno == ENOENT) return 0; /* no transactions: write nothing */
    int lfd = lock_state(b, b->errmsg);
    if (lfd < 0) return lfd;
    txn_state s;
    int rc = state_read(b, &s, NULL, b->errmsg);
    if (rc == 0) rc = expire_locked(b, &s, now_ms, NULL);
    state_free(&s);
    close(lfd);
    return rc;
}

int sl_txn_recover_commit(sl_broker *b, const char *topic, const char *transactional_id,
                          int64_t producer_id, int16_t epoch)
{
    if (!b) return SL_EINVAL;
    if (!topic || !transactional_id || !transactional_id[0] || producer_id < 0 || epoch < 0) {
        slb_seterr(b->errmsg,
                   "recover commit: needs a topic, a transactional id, a producer id >= 0 and an "
                   "epoch >= 0");
        return SL_EINVAL;
    }
    int lfd = lock_state(b, b->errmsg);
    if (lfd < 0) return lfd;
    txn_state s;
    int rc = state_read(b, &s, NULL, b->errmsg);
    if (rc < 0) goto out;
    txn_entry *e = state_find(&s, transactional_id);
    if (!e || e->pid != producer_id || e->epoch != epoch || e->start_ms < 0 ||
        e->txn_epoch != epoch) {
        rc = 1; /* nothing of that producer open: committed, aborted, or never begun */
        goto out;
    }
    for (uint32_t k = 0; k < e->nparts; k++) {
        if (strcmp(e->parts[k].topic, topic) != 0) {
            slb_seterr(b->errmsg,
                       "transactional id '%s': producer %" PRId64 " epoch %d has its open "
                       "transaction on topic '%s', not '%s'",
                       transactional_id, producer_id, epoch, e->parts[k].topic, topic);
            rc = SL_EINVAL;
            goto out;
        }
    }
    int written = 0;
    if ((rc = finish_locked(b, &s, e, SLB_MARKER_COMMIT, true, &written)) < 0) goto out;
    rc = written ? 0 : 1;
out:
    state_free(&s);
    close(lfd);
    return rc;
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
    free(p->registered);
    free(p);
}

const char *sl_txn_producer_errmsg(const sl_txn_producer *p)
{
    return p ? p->errmsg : "out of memory";
}

/* ---- the Kafka-protocol server's transaction coordinator ----------------- */

/* Lock the state file and read it into s. Returns the lock's fd or an
 * error. */
static int coord_open(sl_broker *b, txn_state *s)
{
    int lfd = lock_state(b, b->errmsg);
    if (lfd < 0) return lfd;
    int rc = state_read(b, s, NULL, b->errmsg);
    if (rc < 0) {
        close(lfd);
        return rc;
    }
    return lfd;
}

static void coord_close(txn_state *s, int lfd)
{
    state_free(s);
    close(lfd);
}

/* e (tid's entry, may be NULL) against a request's producer id and epoch:
 * SL_ENOENT if tid has no entry or another producer id, SL_EFENCED if the
 * epoch is not the entry's, else 0. */
static int coord_check(sl_broker *b, const txn_entry *e, const char *tid, int64_t pid,
                       int16_t epoch)
{
    if (!e || e->pid != pid) {
        slb_seterr(b->errmsg, "transactional id '%s' does not have producer id %" PRId64, tid, pid);
        return SL_ENOENT;
    }
    if (e->epoch != epoch) {
        slb_seterr(b->errmsg,
                   "transactional id '%s': producer %" PRId64 " epoch %d is fenced by epoch %d",
                   tid, pid, epoch, e->epoch);
        return SL_EFENCED;
    }
    return 0;
}

/* SL_ESTATE if e's commit is prepared (being written: nothing may join or
 * abort it; Kafka answers CONCURRENT_TRANSACTIONS or INVALID_TXN_STATE). */
static int coord_not_prepared(sl_broker *b, const txn_entry *e)
{
    if (e->start_ms < 0 || e->phase != PHASE_PREPARED) return 0;
    slb_seterr(b->errmsg, "transactional id '%s': its commit is being completed", e->id);
    return SL_ESTATE;
}

/* Begin e's transaction if none is open. */
static void coord_begin_txn(txn_entry *e)
{
    if (e->start_ms >= 0) return;
    e->start_ms = sli_clock_wall_ms();
    e->txn_epoch = e->epoch;
    e->phase = PHASE_OPEN;
    if (e->timeout_ms <= 0) e->timeout_ms = SL_TXN_TIMEOUT_DEFAULT_MS;
}

int slb_txn_init(sl_broker *b, const char *tid, int64_t timeout_ms, int64_t *pid, int16_t *epoch)
{
    txn_state s;
    int lfd = coord_open(b, &s), rc;
    if (lfd < 0) return lfd;
    if (!tid) { /* an idempotent producer: a fresh id, epoch 0 */
        if ((rc = expire_locked(b, &s, sli_clock_wall_ms(), NULL)) >= 0) {
            *pid = s.next_pid++;
            *epoch = 0;
            rc = state_write(b, &s, NULL, b->errmsg);
        }
    } else {
        txn_entry *e;
        if ((rc = bump_locked(b, &s, tid, timeout_ms, NULL, &e)) == 0) {
            *pid = e->pid;
            *epoch = e->epoch;
        }
    }
    coord_close(&s, lfd);
    return rc < 0 ? rc : 0;
}

int slb_txn_add_partitions(sl_broker *b, const char *tid, int64_t pid, int16_t epoch,
                           const char *topic, const int32_t *parts, size_t n)
{
    txn_state s;
    int lfd = coord_open(b, &s);
    if (lfd < 0) return lfd;
    txn_entry *e = state_find(&s, tid);
    int rc = coord_check(b, e, tid, pid, epoch);
    if (rc < 0 || (rc = coord_not_prepared(b, e)) < 0) goto out;
    bool changed = e->start_ms < 0;
    coord_begin_txn(e);
    for (size_t i = 0; i < n; i++) {
        uint32_t k = 0;
        while (k < e->nparts &&
               (e->parts[k].partition != parts[i] || strcmp(e->parts[k].topic, topic)))
            k++;
        if (k < e->nparts) continue;
        txn_tp *np = realloc(e->parts, (e->nparts + 1) * sizeof *np);
        if (!np) {
            slb_seterr(b->errmsg, "out of memory");
            rc = SL_ENOMEM;
            goto out;
        }
        e->parts = np;
        snprintf(np[e->nparts].topic, sizeof np[e->nparts].topic, "%s", topic);
        np[e->nparts++].partition = parts[i];
        changed = true;
    }
    if (changed) rc = state_write(b, &s, NULL, b->errmsg);
out:
    coord_close(&s, lfd);
    return rc;
}

int slb_txn_add_offsets(sl_broker *b, const char *tid, int64_t pid, int16_t epoch,
                        const char *group, const slb_txn_offset *offs, size_t n)
{
    txn_state s;
    int lfd = coord_open(b, &s);
    if (lfd < 0) return lfd;
    txn_entry *e = state_find(&s, tid);
    int rc = coord_check(b, e, tid, pid, epoch);
    if (rc < 0 || (rc = coord_not_prepared(b, e)) < 0) goto out;
    if (e->start_ms < 0) {
        slb_seterr(b->errmsg,
                   "transactional id '%s' has no open transaction (AddOffsetsToTxn first)", tid);
        rc = SL_ESTATE;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t k = 0;
        while (k < e->noffs &&
               (e->offs[k].partition != offs[i].partition || strcmp(e->offs[k].group, group) ||
                strcmp(e->offs[k].topic, offs[i].topic)))
            k++;
        if (k == e->noffs) {
            txn_off *no = realloc(e->offs, (e->noffs + 1) * sizeof *no);
            if (!no) {
                slb_seterr(b->errmsg, "out of memory");
                rc = SL_ENOMEM;
                goto out;
            }
            e->offs = no;
            e->noffs++;
            snprintf(no[k].group, sizeof no[k].group, "%s", group);
            snprintf(no[k].topic, sizeof no[k].topic, "%s", offs[i].topic);
            no[k].partition = offs[i].partition;
        }
        e->offs[k].offset = offs[i].offset;
    }
    rc = state_write(b, &s, NULL, b->errmsg);
out:
    coord_close(&s, lfd);
    return rc;
}

int slb_txn_end(sl_broker *b, const char *tid, int64_t pid, int16_t epoch, bool commit)
{
    txn_state s;
    int lfd = coord_open(b, &s);
    if (lfd < 0) return lfd;
    txn_entry *e = state_find(&s, tid);
    int rc = coord_check(b, e, tid, pid, epoch);
    if (rc < 0) goto out;
    if (e->start_ms < 0) { /* a retry of the end that went through is answered the same */
        if (e->txn_epoch == epoch && e->phase == (commit ? PHASE_COMMITTED : PHASE_ABORTED))
            goto out;
        slb_seterr(b->errmsg, "transactional id '%s' has no open transaction to %s", tid,
                   commit ? "commit" : "abort");
        rc = SL_ESTATE;
        goto out;
    }
    if (!commit && (rc = coord_not_prepared(b, e)) < 0) goto out; /* a retried commit goes on */
    rc = finish_locked(b, &s, e, commit ? SLB_MARKER_COMMIT : SLB_MARKER_ABORT, true, NULL);
out:
    coord_close(&s, lfd);
    return rc;
}

/* The state file as last read, for the check of each transactional batch
 * (read again only when its identity changed). */
struct slb_txn_view {
    txn_state s;
    bool loaded;
    ino_t ino;
    off_t size;
    struct timespec ctime;
};

void slb_txn_view_reset(slb_txn_view *v)
{
    if (v) v->loaded = false;
}

void slb_txn_view_free(slb_txn_view *v)
{
    if (!v) return;
    state_free(&v->s);
    free(v);
}

int slb_txn_check_produce(sl_broker *b, slb_txn_view **vp, const char *tid, int64_t pid,
                          int16_t epoch, const char *topic, int32_t partition)
{
    if (!*vp && !(*vp = calloc(1, sizeof **vp))) return SL_ENOMEM;
    slb_txn_view *v = *vp;
    char path[SLB_PATH_CAP];
    state_path(path, sizeof path, b, TXN_STATE);
    struct stat st;
    int rc;
    if (stat(path, &st) < 0) memset(&st, 0, sizeof st); /* none: an empty map */
    if (!v->loaded || st.st_ino != v->ino || st.st_size != v->size ||
        st.st_ctim.tv_sec != v->ctime.tv_sec || st.st_ctim.tv_nsec != v->ctime.tv_nsec) {
        state_free(&v->s);
        v->loaded = false;
        if ((rc = state_read(b, &v->s, &st, b->errmsg)) < 0) return rc;
        v->loaded = true;
        v->ino = st.st_ino;
        v->size = st.st_size;
        v->ctime = st.st_ctim;
    }
    const txn_entry *e = state_find(&v->s, tid);
    if ((rc = coord_check(b, e, tid, pid, epoch)) < 0) return rc;
    for (uint32_t k = 0; e->start_ms >= 0 && e->phase == PHASE_OPEN && k < e->nparts; k++)
        if (e->parts[k].partition == partition && !strcmp(e->parts[k].topic, topic)) return 0;
    slb_seterr(b->errmsg,
               "transactional id '%s': topic '%s' partition %d is not in its open transaction "
               "(AddPartitionsToTxn first)",
               tid, topic, partition);
    return SL_ESTATE;
}
