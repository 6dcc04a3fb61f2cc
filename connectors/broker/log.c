/*
 * connectors/broker/log.c - a partition on disk: the writer (lock, recovery,
 * append, segment roll, durability) and the lock-free views of a partition.
 *
 * Layers: the storage's dependencies point one way, clean.c -> log.c ->
 * index.c -> segment.c. This file calls the segment layer below it (segment.h:
 * segment files, indexes) and nothing of clean.c above it: retention and
 * compaction run at each roll through the plog's after_roll hook, which the
 * opener passes to slb_plog_open (broker.c and group.c pass
 * slb_plog_clean_locked, clean.h). Recovery in slb_plog_open never rolls, so
 * a partition is first cleaned at its first roll after opening (or by
 * sl_topic_clean).
 *
 * Segments. A partition directory holds segments named by base offset
 * (segment.h). Batches are appended to the active (last) segment with one pwrite
 * each; when it would exceed segment_bytes, or is older than segment_ms, it is
 * sealed (synced unless fsync=never, its indexes written by index.c) and a
 * new segment named by the next offset is created. A segment's age counts
 * from its first append (wall clock; after a reopen, from the file's last
 * change), never from its records' timestamps, which are event times.
 *
 * The segment file is a sequence of record batches, drawn in batch.h; the
 * index files are drawn in index.c.
 *
 * Timestamps: a record's timestamp is stored as given (0 is a time like any
 * other); SL_TIMESTAMP_NONE is replaced by the wall-clock time of the append
 * (here for sl_log_append, in broker.c for the producer).
 *
 * Recovery (slb_plog_open, under the partition lock): leftovers of an
 * interrupted compaction (*.cleaned) and of atomic writes (*.tmp) are removed;
 * sealed segments get their indexes loaded or rebuilt, and those written
 * since the recovery point (the partition checkpoint, segment.c) are checked
 * whole by CRC; the active segment is scanned batch by batch with CRC. Where
 * the scan stops, the rest is either a torn tail (an incomplete last batch,
 * or a bad one with nothing valid after it: a crashed writer's last write),
 * truncated silently by design, or corruption (a bad batch followed by valid
 * batches, which a writer writing one batch after another cannot leave):
 * then slb_plog_open fails with SL_ECORRUPT naming topic, partition, offset,
 * segment and byte, and truncates nothing; only slb_plog_repair (`sluice
 * topic repair`) cuts there, saying what it drops. Likewise a log that ends
 * before the recovery point, or whose active segment at the last roll is
 * gone, lost synced offsets: refused (appending would reuse their numbers)
 * until a repair accepts the loss.
 *
 * Checkpoint: the recovery point moves to the new active segment's base at
 * each roll (the sealed one is synced, unless fsync=never, and complete); the
 * log start moves before retention deletes (clean.c). Both only ever move
 * forward, and an older file is always safe.
 *
 * Durability: fsync=always fdatasyncs before an append returns; interval
 * fdatasyncs when the last sync is older than the interval and otherwise
 * leaves it to the broker's flusher thread (broker.c), which syncs within the
 * interval; never leaves it to the OS. A failed write is cut off again with
 * ftruncate; a failed fdatasync also marks the log failed (appends refused
 * until reopened: the page cache can no longer be trusted, cf. "fsyncgate").
 *
 * Producer batches and the background writer. sl_producer_send encodes into
 * the pending batch on the caller's thread without taking mu (for fsync=never
 * and always; interval partitions are shared with the flusher and lock per
 * record). A pending batch that reaches SLB_BATCH_TARGET is handed over
 * (slb_plog_handoff) to a writer thread of the partition, started on first
 * use, which writes it under mu while the producer encodes the next batch
 * into the other buffer: encoding overlaps write(2) (measured: append 0.25x
 * -> 0.55x of dd on 2 cores). At most one batch is in flight; a hand-over
 * waits for the previous one. The records of a producer are only promised
 * at sl_producer_flush/close (as before), and every flush, sl_log_append and
 * close first waits for the batch in flight, so an append or flush still
 * returns only once its batches are written and its fsync policy is met. A
 * failed background write drops that batch and the pending records built on
 * it (offsets reused, as a failed synchronous flush does) and is returned by
 * the next hand-over or flush. Invariants: the writer touches only `inflight`
 * and the log's state, always under mu; the producer's thread alone touches
 * `pending`; the pending batch's base offset is the in-flight batch's end
 * (pending_based) or, when nothing is in flight, next_offset.
 *
 * Producer state (idempotence and fencing; batch.h's producer fields): per
 * producer id, the latest epoch and the last batch (base sequence, count,
 * offset), in l->pst. slb_plog_append with a producer checks a batch against
 * it under mu (an older epoch: SL_EFENCED; a retry of the last batch:
 * acknowledged with its offset, not written; any sequence but the next:
 * SL_ERANGE) and notes it once written; markers (control batches) move only
 * the epoch. The state also says whether the id's transaction is open here
 * (a transactional data batch with no marker after it yet) and from which
 * offset: the last stable offset (slb_plog_lso_locked, describe) is the
 * smallest such offset, and markers written on another's behalf (txn.c)
 * are skipped where the transaction is known to be over. Recovery scans
 * only the active segment, so a roll carries the open transactions over in
 * a small file (.txnopen, drawn below) that recovery loads first (its
 * producers' epochs and sequences stay unknown). Recovery rebuilds the
 * state from the producer batches of the active segment as it scans them, so it matches the log after truncation
 * of a torn tail; the state of a producer whose batches are all in sealed
 * segments is not rebuilt (its next batch is accepted at any sequence; a
 * snapshot at each roll, as Kafka's, would close that gap). Entries are
 * never expired: a partition keeps one per producer id that wrote to it
 * since it was opened.
 *
 * Locking: the writer holds flock(LOCK_EX) on P/.lock (a second writer, in any
 * process, gets SL_EBUSY; its message names the Kafka-protocol server when
 * the holder is a server recorded in DIR/.server.PID, srvfile.c); l->mu guards the writer state against the flusher
 * thread, and every slb_plog_* function takes it.
 */
#include "connectors/broker/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connectors/broker/srvfile.h"
#include "engine/base/clock.h"
#include "engine/base/crc32c.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"

#define READ_CHUNK (1 << 20)

/* ---- small helpers ------------------------------------------------------- */

void slb_seterr(char *err, const char *fmt, ...)
{
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, SLB_ERRLEN, fmt, ap);
    va_end(ap);
}

int slb_plog_set_log_start(slb_plog *l, int64_t log_start, char *err)
{
    slb_ckpt c = l->ckpt;
    if (log_start <= c.log_start) return 0;
    c.log_start = log_start;
    int rc = slb_ckpt_write(l->dir, &c);
    if (rc < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot write the checkpoint of %s", l->topic,
                   l->partition, l->dir);
        return rc;
    }
    l->ckpt = c;
    return 0;
}

/* At a roll: every offset below next_offset, the new active segment's base,
 * is written, synced (unless fsync=never) and checked. A failure keeps the
 * older checkpoint, which is always safe (recovery checks more), so it is
 * not an error. The active segment itself is always scanned by recovery, and
 * a torn tail there is cut as before; so the recovery point does not move at
 * a close. mu held. */
static void advance_recovery_point(slb_plog *l)
{
    slb_ckpt c = l->ckpt;
    if (l->next_offset <= c.recovery_point) return;
    c.recovery_point = l->next_offset;
    if (slb_ckpt_write(l->dir, &c) == 0) l->ckpt = c;
}

/* ---- scanning a segment ----------------------------------------------------- */

typedef struct scan_result {
    int64_t valid_end;   /* bytes of complete, valid batches from the start */
    int64_t next_offset; /* after the last valid batch (or the start offset) */
    int64_t max_ts;
    int64_t first_base; /* base of the first batch, -1 if none */
    bool bad;           /* stopped at a corrupt (not merely incomplete) batch */
    bool impossible;    /* ... a complete batch (good CRC) that cannot be there */
    int64_t bad_base;   /* impossible: its base offset */
} scan_result;

/* Scan the batches of fd from byte 0 to file_size. With s, feed each valid
 * batch to slb_seg_note_batch (s must be reset to its base). Stops at the first
 * incomplete or invalid batch (bad CRC when check_crc, offsets going back or
 * below the segment base). */
static int pstate_note(slb_plog *l, const slb_batch_hdr *h);

/* With pl, also note each producer batch in pl's producer state. */
static int scan_segment(int fd, int64_t seg_base, int64_t file_size, slb_segment *s, bool check_crc,
                        slb_plog *pl, scan_result *res)
{
    res->valid_end = 0;
    res->next_offset = seg_base;
    res->max_ts = INT64_MIN;
    res->first_base = -1;
    res->bad = false;
    res->impossible = false;
    res->bad_base = -1;
    size_t cap = READ_CHUNK;
    uint8_t *buf = malloc(cap);
    if (!buf) return SL_ENOMEM;
    int64_t buf_pos = 0; /* file position of buf[0] */
    size_t have = 0;
    int64_t pos = 0;
    int rc = 0;
    for (;;) {
        size_t off = (size_t)(pos - buf_pos);
        size_t avail = have - off;
        slb_batch_hdr h;
        int c = slb_batch_check(buf + off, avail, &h, check_crc);
        if (c == SL_EAGAIN) {
            int64_t left = file_size - pos;
            if ((int64_t)avail >= left) break; /* torn tail or end */
            /* Refill from pos, growing the buffer for a large batch. */
            size_t need = avail >= SLB_HDR_SIZE ? h.length : SLB_HDR_SIZE;
            if (need > cap) {
                uint8_t *nb = realloc(buf, need);
                if (!nb) {
                    rc = SL_ENOMEM;
                    break;
                }
                buf = nb;
                cap = need;
                off = (size_t)(pos - buf_pos);
            }
            memmove(buf, buf + off, avail);
            buf_pos = pos;
            size_t want = cap - avail;
            if ((int64_t)want > left - (int64_t)avail) want = (size_t)(left - (int64_t)avail);
            int r = slb_read_full(fd, buf + avail, want, (off_t)(pos + (int64_t)avail));
            if (r < 0) {
                rc = SL_EIO;
                break;
            }
            have = avail + want;
            continue;
        }
        if (c < 0 || h.base_offset < res->next_offset ||
            (h.base_offset - seg_base) > UINT32_MAX - (int64_t)h.last_offset_delta - 1) {
            res->bad = true;
            /* A torn write leaves an incomplete or unchecked batch, never a
             * complete one whose CRC holds: that one was put there whole. */
            res->impossible = c == 0 && check_crc;
            res->bad_base = h.base_offset;
            break;
        }
        if (res->first_base < 0) res->first_base = h.base_offset;
        if (s && (rc = slb_seg_note_batch(s, pos, &h)) < 0) break;
        if (pl && (h.attributes & SLB_ATTR_PRODUCER) && (rc = pstate_note(pl, &h)) < 0) break;
        if (h.max_ts > res->max_ts) res->max_ts = h.max_ts;
        res->next_offset = slb_next_offset(&h);
        pos += h.length;
        res->valid_end = pos;
    }
    free(buf);
    return rc;
}

/* After a scan of the active segment stopped at byte from (a torn or bad
 * batch), look for complete valid batches after it: from byte from + 1 on,
 * every position whose header parses, with a base offset at or after
 * min_base, whose batch fits in the file and has a good CRC. A writer writes
 * batches one after another, so a valid batch after a bad one means the bad
 * one was complete once: corruption, not a torn write. *found_pos is the
 * first such batch (-1 if none), *last_next the offset after the last valid
 * batch found (walking batch by batch from the first, and looking again
 * after each bad one). Recovery only: reads the tail once. */
static int find_valid_after(int fd, int64_t from, int64_t file_size, int64_t min_base,
                            int64_t *found_pos, int64_t *last_next)
{
    *found_pos = -1;
    *last_next = -1;
    if (file_size - from <= SLB_HDR_SIZE) return 0;
    size_t len = (size_t)(file_size - from);
    uint8_t *buf = malloc(len);
    if (!buf) return SL_ENOMEM;
    int rc = slb_read_full(fd, buf, len, (off_t)from);
    if (rc < 0) {
        free(buf);
        return SL_EIO;
    }
    int64_t want = min_base;
    for (size_t q = 1; q + SLB_HDR_SIZE <= len;) {
        slb_batch_hdr h;
        if (slb_batch_check(buf + q, len - q, &h, true) == 0 && h.base_offset >= want) {
            if (*found_pos < 0) *found_pos = from + (int64_t)q;
            want = *last_next = slb_next_offset(&h);
            q += h.length;
        } else {
            q++;
        }
    }
    free(buf);
    return 0;
}

/* ---- open transactions at a segment's start (.txnopen) ------------------------- */

/* The transactions open when a segment became the active one, so that
 * recovery (which scans the active segment only) knows where they began:
 *
 *   P/NNNNNNNNNNNNNNNNNNNN.txnopen  (NNN: the segment's base; little-endian)
 *
 *   offset  size  field
 *   ------  ----  -------------------------------------------------------
 *        0     4  magic          "SLTO"
 *        4     4  crc            CRC-32C of bytes [8, end)
 *        8     4  count          uint32, entries that follow (>= 1)
 *       12    16  entries        count times: producer_id int64, first
 *                                offset int64 of its open transaction
 *
 * Written atomically at a roll, before the new segment is created, only
 * when a transaction is open (no file: none was); the previous one is then
 * removed, and recovery removes one without its segment. A missing or
 * damaged file costs only precision: a transaction then counts from its
 * first batch in the active segment (as before the file existed). */
#define TXNOPEN_MAGIC "SLTO"

static int txnopen_write(slb_plog *l, int64_t base)
{
    size_t n = 0;
    for (size_t i = 0; i < l->npst; i++) n += l->pst[i].txn_open;
    if (n == 0) return 0;
    size_t len = 12 + 16 * n;
    uint8_t *buf = malloc(len);
    if (!buf) return SL_ENOMEM;
    memcpy(buf, TXNOPEN_MAGIC, 4);
    slb_put32(buf + 8, (uint32_t)n);
    uint8_t *q = buf + 12;
    for (size_t i = 0; i < l->npst; i++) {
        if (!l->pst[i].txn_open) continue;
        slb_put64(q, (uint64_t)l->pst[i].pid);
        slb_put64(q + 8, (uint64_t)l->pst[i].txn_first);
        q += 16;
    }
    slb_put32(buf + 4, sli_crc32c(0, buf + 8, len - 8));
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, l->dir, base, "txnopen");
    int rc = sli_fsio_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

/* Seed pl's producer states from segment base's .txnopen (if any): the
 * entries are open transactions of producers whose epoch and sequence are
 * unknown (epoch -1: pstate_check accepts them as it does an unknown id). */
int slb_txnopen_load(const char *pdir, int64_t base, slb_plog *pl)
{
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, pdir, base, "txnopen");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (fstat(fd, &st) == 0 && st.st_size >= 12 && st.st_size <= (16 << 20) &&
        (buf = malloc((size_t)st.st_size)) != NULL &&
        slb_read_full(fd, buf, (size_t)st.st_size, 0) == 0)
        len = (size_t)st.st_size;
    close(fd);
    uint32_t n = len ? slb_get32(buf + 8) : 0;
    if (len == 0 || memcmp(buf, TXNOPEN_MAGIC, 4) != 0 || n == 0 || len != 12 + 16 * (size_t)n ||
        slb_get32(buf + 4) != sli_crc32c(0, buf + 8, len - 8)) {
        free(buf);
        return 0; /* damaged: as if absent (see above) */
    }
    for (uint32_t i = 0; i < n; i++) {
        int64_t pid = (int64_t)slb_get64(buf + 12 + 16 * i);
        int64_t first = (int64_t)slb_get64(buf + 20 + 16 * i);
        if (pid < 0 || first < 0 || first >= base || slb_plog_pstate(pl, pid)) continue;
        slb_batch_hdr h = {.producer_id = pid,
                           .producer_epoch = -1,
                           .base_offset = first,
                           .attributes = SLB_ATTR_PRODUCER | SLB_ATTR_TRANSACTIONAL};
        if (pstate_note(pl, &h) < 0) {
            free(buf);
            return SL_ENOMEM;
        }
    }
    free(buf);
    return 0;
}

/* ---- the writer ---------------------------------------------------------- */

/* Whether process pid is a live server of the broker directory of
 * partition directory pdir (DIR/TOPIC/PARTITION): then addr says where it
 * listens (srvfile.c). */
static bool served_by(const char *pdir, long pid, char *addr, size_t cap)
{
    char dir[SLB_PATH_CAP];
    snprintf(dir, sizeof dir, "%s", pdir);
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(dir, '/');
        if (!slash) return false;
        *slash = 0;
    }
    return pid > 0 && slb_srvfile_owner(dir[0] ? dir : "/", pid, addr, cap);
}

static int open_lock(const char *pdir, bool wait, char *err, const char *topic, int32_t partition)
{
    char path[SLB_PATH_CAP];
    snprintf(path, sizeof path, "%s/.lock", pdir);
    int fd = sli_fsio_open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot open lock file %s: %s", topic, partition,
                   path, strerror(-fd));
        return sli_errno_code(fd);
    }
    /* The holder's pid (written below by each writer) and whether it is the
     * server recorded in DIR/.server.PID: a writer that would wait for the lock
     * does not wait for a server, which holds its partitions until it stops. */
    char pid[32] = "";
    long spid = 0;
    char saddr[300];
    bool server = false;
    int r, e = 0;
    do r = flock(fd, LOCK_EX | LOCK_NB);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (e = errno) == EWOULDBLOCK) {
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        spid = strtol(pid, NULL, 10);
        server = served_by(pdir, spid, saddr, sizeof saddr);
        if (wait && !server) {
            do r = flock(fd, LOCK_EX);
            while (r < 0 && errno == EINTR);
            e = r < 0 ? errno : 0;
        }
    }
    if (r < 0) {
        close(fd);
        if (server) {
            slb_seterr(err,
                       "topic '%s' partition %d is written by sluice broker serve (pid %ld, %s); "
                       "produce through it (-b %s)",
                       topic, partition, spid, saddr, saddr);
            return SL_EBUSY;
        }
        if (e == EWOULDBLOCK) {
            slb_seterr(err,
                       "topic '%s' partition %d: already has a writer (process %s holds %s); one "
                       "writer per partition",
                       topic, partition, pid[0] ? pid : "?", path);
            return SL_EBUSY;
        }
        slb_seterr(err, "topic '%s' partition %d: cannot lock %s: %s", topic, partition, path,
                   strerror(e));
        return SL_EIO;
    }
    /* Record our pid for the message above (informative only). */
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (sli_fsio_ftruncate(fd, 0) == 0) (void)sli_fsio_pwrite(fd, pid, (size_t)n, 0);
    return fd;
}

/* Remove leftovers: *.cleaned, *.tmp, index files without a log. */
static void remove_strays(const char *pdir)
{
    DIR *d = opendir(pdir);
    if (!d) return;
    struct dirent *e;
    char path[SLB_PATH_CAP], logp[SLB_PATH_CAP];
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        size_t l = strlen(n);
        bool kill = false;
        if (l > 8 && !strcmp(n + l - 8, ".cleaned")) kill = true;
        if (l > 4 && !strcmp(n + l - 4, ".tmp")) kill = true;
        int64_t b = slb_seg_parse_name(n, "index");
        if (b < 0) b = slb_seg_parse_name(n, "timeindex");
        if (b < 0) b = slb_seg_parse_name(n, "txnopen");
        if (b >= 0) {
            slb_seg_path(logp, sizeof logp, pdir, b, "log");
            if (access(logp, F_OK) != 0) kill = true;
        }
        if (kill) {
            snprintf(path, sizeof path, "%s/%s", pdir, n);
            (void)sli_fsio_unlink(path);
        }
    }
    closedir(d);
}

/* Load or rebuild the indexes of sealed segment s (s->base set). With
 * scan, check every batch (CRC) and rebuild them even if they look intact
 * (a segment written after the last recovery point). */
static int load_sealed(slb_plog *l, slb_segment *s, bool scan, char *err)
{
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, l->dir, s->base, "log");
    struct stat st;
    if (stat(path, &st) < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot stat %s: %s", l->topic, l->partition, path,
                   strerror(errno));
        return sli_errno_code(-errno);
    }
    void *ix = NULL, *tx = NULL;
    size_t nix = 0, ntx = 0;
    int64_t lsz1 = -1, lsz2 = -1;
    int r1 = slb_index_load(l->dir, s->base, false, &ix, &nix, &lsz1);
    int r2 = slb_index_load(l->dir, s->base, true, &tx, &ntx, &lsz2);
    if (!scan && r1 == 0 && r2 == 0 && lsz1 == st.st_size && lsz2 == st.st_size && ntx > 0 &&
        nix > 0) {
        s->idx = ix;
        s->nidx = s->capidx = nix;
        s->tidx = tx;
        s->ntidx = s->captidx = ntx;
        s->size = st.st_size;
        s->max_ts = s->tidx[ntx - 1].ts;
        s->last_index_pos = s->idx[nix - 1].pos;
        s->next_offset = -1; /* unknown without a scan; not needed for sealed */
        return 0;
    }
    free(ix);
    free(tx);
    if (r1 == SL_ENOMEM || r2 == SL_ENOMEM) return SL_ENOMEM;
    /* Rebuild by scanning with CRC; a sealed segment is never truncated: a
     * corrupt batch is left for readers to report. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sli_errno_code(-errno);
    int64_t base = s->base;
    slb_seg_reset(s, base);
    scan_result res;
    int rc = scan_segment(fd, base, st.st_size, s, true, NULL, &res);
    close(fd);
    if (rc < 0) return rc;
    s->size = st.st_size; /* the whole file, good or not, counts */
    if (slb_seg_seal_tidx(s) < 0) return SL_ENOMEM;
    if (res.valid_end != st.st_size) return 0; /* corrupt: keep in memory, don't persist */
    if ((rc = slb_index_write(l->dir, s, false)) < 0 ||
        (rc = slb_index_write(l->dir, s, true)) < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot write index of segment %020" PRId64,
                   l->topic, l->partition, s->base);
        return rc;
    }
    return 0;
}

static void plog_free(slb_plog *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->nsegs; i++) slb_seg_free(&l->segs[i]);
    free(l->segs);
    if (l->fd >= 0) close(l->fd);
    if (l->lock_fd >= 0) close(l->lock_fd); /* releases the flock */
    if (l->io_started) {
        pthread_mutex_lock(&l->mu);
        l->io_stop = true;
        pthread_cond_broadcast(&l->io_cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->io, NULL);
    }
    slb_builder_free(&l->pending);
    slb_builder_free(&l->inflight);
    slb_builder_free(&l->scratch);
    pthread_cond_destroy(&l->io_cv);
    pthread_mutex_destroy(&l->mu);
    free(l->pst);
    if (l->abidx) l->abidx_free(l->abidx);
    free(l->dir);
    free(l);
}

/* slb_plog_open and slb_plog_repair: with repair, a corrupt active segment
 * is cut at its first bad batch (and *repair says what was dropped) instead
 * of refused. */
static int plog_open(slb_plog **out, const char *pdir, const char *topic, int32_t partition,
                     const sl_topic_conf *conf, bool wait, slb_roll_hook after_roll,
                     sl_repair_info *repair, char *err)
{
    *out = NULL;
    int rc = SL_ENOMEM;
    int64_t *bases = NULL;
    size_t nb = 0;
    slb_plog *l = calloc(1, sizeof *l);
    if (!l) goto fail_nomem;
    l->fd = -1;
    l->lock_fd = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->io_cv, NULL);
    slb_builder_init(&l->pending);
    slb_builder_init(&l->inflight);
    slb_builder_init(&l->scratch);
    l->dir = strdup(pdir);
    if (!l->dir) goto fail_nomem;
    snprintf(l->topic, sizeof l->topic, "%s", topic);
    l->partition = partition;
    l->conf = *conf;
    l->after_roll = after_roll;
    l->last_sync_ms = sli_clock_mono_ms();

    rc = open_lock(pdir, wait, err, topic, partition);
    if (rc < 0) goto fail;
    l->lock_fd = rc;
    remove_strays(pdir);

    if ((rc = slb_list_segments(pdir, &bases, &nb)) < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot list %s: %s", topic, partition, pdir,
                   strerror(errno)); /* EMFILE: "Too many open files" */
        goto fail;
    }
    if (nb == 0) {
        free(bases);
        bases = malloc(sizeof *bases);
        if (!bases) goto fail_nomem;
        bases[0] = 0;
        nb = 1;
    }
    l->segs = calloc(nb, sizeof *l->segs);
    if (!l->segs) goto fail_nomem;
    l->nsegs = nb;
    for (size_t i = 0; i < nb; i++) slb_seg_reset(&l->segs[i], bases[i]);
    /* The checkpoint (segment.c): without one (a partition from before it
     * existed, or a damaged file) nothing is known to be checked. */
    int cr = slb_ckpt_read(pdir, &l->ckpt);
    if (cr < 0) {
        l->ckpt.log_start = bases[0];
        l->ckpt.recovery_point = 0;
    }
    bool write_ckpt = cr < 0 && nb > 1; /* after checking them all, once */
    /* Sealed segments holding offsets at or after the recovery point were
     * written since the last roll or clean close: check them whole. */
    for (size_t i = 0; i + 1 < nb; i++)
        if ((rc = load_sealed(l, &l->segs[i], bases[i + 1] > l->ckpt.recovery_point, err)) < 0)
            goto fail;

    /* The active segment: full CRC scan, truncate a torn or corrupt tail. */
    slb_segment *a = &l->segs[nb - 1];
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, pdir, a->base, "log");
    l->fd = sli_fsio_open(path, O_RDWR | O_CREAT, 0644);
    if (l->fd < 0) {
        rc = sli_errno_code(l->fd);
        slb_seterr(err, "topic '%s' partition %d: cannot open %s: %s", topic, partition, path,
                   strerror(-l->fd));
        goto fail;
    }
    struct stat st;
    if (fstat(l->fd, &st) < 0) {
        rc = sli_errno_code(errno);
        slb_seterr(err, "topic '%s' partition %d: cannot stat %s: %s", topic, partition, path,
                   strerror(errno));
        goto fail;
    }
    scan_result res;
    if ((rc = slb_txnopen_load(pdir, a->base, l)) < 0) goto fail_nomem;
    if ((rc = scan_segment(l->fd, a->base, st.st_size, a, true, l, &res)) < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot read %s", topic, partition, path);
        goto fail;
    }
    if (res.valid_end < st.st_size) {
        /* Torn (nothing valid after it: cut silently, by design) or corrupt
         * (valid batches follow: refuse, cut only on an explicit repair). */
        int64_t found, last_next;
        if ((rc = find_valid_after(l->fd, res.valid_end, st.st_size, res.next_offset, &found,
                                   &last_next)) < 0) {
            slb_seterr(err, "topic '%s' partition %d: cannot read %s", topic, partition, path);
            goto fail;
        }
        if (res.impossible && !repair) {
            slb_seterr(err,
                       "topic '%s' partition %d: corrupt segment %020" PRId64
                       ".log: the batch at byte %" PRId64 " has base offset %" PRId64
                       " where offset %" PRId64
                       " is next (a segment renamed or copied?); appends refused, nothing "
                       "truncated: `sluice topic repair %s -p %d` drops bytes %" PRId64 "..%" PRId64
                       " of that segment",
                       topic, partition, a->base, res.valid_end, res.bad_base, res.next_offset,
                       topic, partition, res.valid_end, (int64_t)st.st_size - 1);
            rc = SL_ECORRUPT;
            goto fail;
        }
        if (found >= 0 && !repair) {
            slb_seterr(err,
                       "topic '%s' partition %d: corrupt batch at offset %" PRId64
                       " (segment %020" PRId64 ".log, byte %" PRId64
                       ") followed by valid batches (offsets up to %" PRId64
                       "); appends refused, nothing truncated: `sluice topic repair %s -p %d` "
                       "drops bytes %" PRId64 "..%" PRId64 " of that segment",
                       topic, partition, res.next_offset, a->base, res.valid_end, last_next - 1,
                       topic, partition, res.valid_end, (int64_t)st.st_size - 1);
            rc = SL_ECORRUPT;
            goto fail;
        }
        if (repair) {
            repair->segment = a->base;
            repair->byte = res.valid_end;
            repair->bytes_dropped = (int64_t)st.st_size - res.valid_end;
            repair->first_offset_dropped = res.next_offset;
            repair->last_offset_dropped = found >= 0 ? last_next - 1 : -1;
        }
        int r = sli_fsio_ftruncate(l->fd, res.valid_end);
        if (r == 0) r = sli_fsio_fdatasync(l->fd);
        if (r < 0) {
            rc = sli_errno_code(r);
            slb_seterr(err,
                       "topic '%s' partition %d: cannot truncate the torn tail of %s at byte "
                       "%" PRId64 ": %s",
                       topic, partition, path, res.valid_end, strerror(-r));
            goto fail;
        }
    }
    a->size = res.valid_end;
    a->next_offset = res.next_offset;
    /* The recovery point is the active segment's base as of the last roll:
     * if that segment is gone (and no later one exists), or the log ends
     * before it, offsets that were written and synced are missing (a deleted
     * or truncated segment), and appending would give their numbers to new
     * records. Refuse until a repair. */
    int64_t rp = l->ckpt.recovery_point;
    if (res.next_offset < rp || rp > a->base) {
        if (!repair) {
            slb_seterr(err,
                       "topic '%s' partition %d: offsets from %" PRId64
                       " on are missing: segment %020" PRId64
                       ".log (the active segment at the last roll) is gone or truncated and the "
                       "log ends at offset %" PRId64
                       "; appends refused so that these offsets are not reused: `sluice topic "
                       "repair %s -p %d` accepts the loss",
                       topic, partition, res.next_offset < rp ? res.next_offset : rp, rp,
                       res.next_offset, topic, partition);
            rc = SL_ECORRUPT;
            goto fail;
        }
        if (repair->segment < 0) {
            repair->segment = a->base;
            repair->byte = res.valid_end;
            repair->first_offset_dropped = res.next_offset;
        }
        repair->last_offset_dropped = rp - 1 >= res.next_offset ? rp - 1 : -1;
        repair->missing = 1;
        l->ckpt.recovery_point = a->base;
        if ((rc = slb_ckpt_write(pdir, &l->ckpt)) < 0) {
            slb_seterr(err, "topic '%s' partition %d: cannot write the checkpoint of %s", topic,
                       partition, pdir);
            goto fail;
        }
    }
    if (write_ckpt) { /* best effort: without it, the next open checks everything again */
        slb_ckpt c = {.log_start = bases[0], .recovery_point = a->base};
        if (slb_ckpt_write(pdir, &c) == 0) l->ckpt = c;
    }
    /* The age of the active segment (for segment_ms) counts from its first
     * append, which no file records; its last change (mtime) is the closest
     * bound we have. Not the records' timestamps: those are event times, which
     * may be anything from 0 on, and would roll a segment at every reopen. */
    int64_t now = sli_clock_wall_ms();
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    a->first_ms = a->size > 0 ? (mtime < now ? mtime : now) : 0;
    l->next_offset = res.next_offset;
    free(bases);
    *out = l;
    return 0;

fail_nomem:
    rc = SL_ENOMEM;
    slb_seterr(err, "topic '%s' partition %d: out of memory", topic, partition);
fail:
    free(bases);
    plog_free(l);
    return rc;
}

int slb_plog_open(slb_plog **out, const char *pdir, const char *topic, int32_t partition,
                  const sl_topic_conf *conf, bool wait, slb_roll_hook after_roll, char *err)
{
    return plog_open(out, pdir, topic, partition, conf, wait, after_roll, NULL, err);
}

int slb_plog_repair(const char *pdir, const char *topic, int32_t partition,
                    const sl_topic_conf *conf, sl_repair_info *info, char *err)
{
    memset(info, 0, sizeof *info);
    info->partition = partition;
    info->segment = info->byte = info->first_offset_dropped = info->last_offset_dropped = -1;
    slb_plog *l;
    int rc = plog_open(&l, pdir, topic, partition, conf, false, NULL, info, err);
    if (rc < 0) return rc;
    return slb_plog_close(l, err);
}

/* Called with l->mu held. */
static int sync_now(slb_plog *l, char *err)
{
    int r = sli_fsio_fdatasync(l->fd);
    if (r < 0) {
        l->failed = true;
        slb_seterr(err,
                   "topic '%s' partition %d: fdatasync failed: %s; appends refused until the "
                   "partition is reopened",
                   l->topic, l->partition, strerror(-r));
        return sli_errno_code(r);
    }
    l->dirty = false;
    l->last_sync_ms = sli_clock_mono_ms();
    return 0;
}

/* Seal the active segment and start a new one at next_offset. mu held. */
static int roll(slb_plog *l, char *err)
{
    slb_segment *a = &l->segs[l->nsegs - 1];
    int rc;
    if (l->conf.fsync != SL_FSYNC_NEVER && (rc = sync_now(l, err)) < 0) return rc;
    if (slb_seg_seal_tidx(a) < 0) return SL_ENOMEM;
    if ((rc = slb_index_write(l->dir, a, false)) < 0 ||
        (rc = slb_index_write(l->dir, a, true)) < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot write the index of segment %020" PRId64,
                   l->topic, l->partition, a->base);
        return rc;
    }
    slb_segment *ns = realloc(l->segs, (l->nsegs + 1) * sizeof *ns);
    if (!ns) return SL_ENOMEM;
    l->segs = ns;
    char path[SLB_PATH_CAP];
    /* Open transactions carried into the new segment (a failure costs only
     * the LSO's precision after a reopen; see txnopen_write). */
    (void)txnopen_write(l, l->next_offset);
    slb_seg_path(path, sizeof path, l->dir, l->next_offset, "log");
    int fd = sli_fsio_open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot create segment %s: %s", l->topic,
                   l->partition, path, strerror(-fd));
        return sli_errno_code(fd);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size != 0) {
        close(fd);
        slb_seterr(err, "topic '%s' partition %d: new segment %s is not empty", l->topic,
                   l->partition, path);
        return SL_ECORRUPT;
    }
    if (l->conf.fsync != SL_FSYNC_NEVER) {
        int r = sli_fsio_fsync_dir(l->dir);
        if (r < 0) {
            close(fd);
            (void)sli_fsio_unlink(path);
            slb_seterr(err, "topic '%s' partition %d: cannot sync directory %s: %s", l->topic,
                       l->partition, l->dir, strerror(-r));
            return sli_errno_code(r);
        }
    }
    close(l->fd);
    l->fd = fd;
    memset(&l->segs[l->nsegs], 0, sizeof l->segs[0]);
    slb_seg_reset(&l->segs[l->nsegs], l->next_offset);
    l->nsegs++;
    l->rolls++;
    /* The sealed segment's (a is stale after the realloc): no longer needed. */
    slb_seg_path(path, sizeof path, l->dir, l->segs[l->nsegs - 2].base, "txnopen");
    (void)sli_fsio_unlink(path);
    advance_recovery_point(l); /* the sealed segment is synced and complete */
    /* The hook (cleaning, set by the opener: clean.c is above this file) is
     * housekeeping: its failure does not fail the append that rolled; it is
     * retried at the next roll. */
    if (l->after_roll) {
        char junk[SLB_ERRLEN];
        (void)l->after_roll(l, sli_clock_wall_ms(), junk);
    }
    return 0;
}

/* Write one finished batch. mu held. */
static int write_batch(slb_plog *l, const uint8_t *buf, size_t len, char *err)
{
    if (l->failed) {
        slb_seterr(err,
                   "topic '%s' partition %d: an earlier fsync failed; reopen the partition to "
                   "recover",
                   l->topic, l->partition);
        return SL_EIO;
    }
    slb_segment *a = &l->segs[l->nsegs - 1];
    int64_t now = sli_clock_wall_ms();
    if (a->size > 0 && (a->size + (int64_t)len > l->conf.segment_bytes ||
                        (l->conf.segment_ms >= 0 && now - a->first_ms >= l->conf.segment_ms))) {
        int rc = roll(l, err);
        if (rc < 0) return rc;
        a = &l->segs[l->nsegs - 1];
    }
    if (a->size + (int64_t)len > UINT32_MAX) {
        slb_seterr(err, "topic '%s' partition %d: segment would exceed 4 GiB", l->topic,
                   l->partition);
        return SL_ETOOBIG;
    }
    int64_t pos = a->size;
    int r = sli_fsio_pwrite(l->fd, buf, len, pos);
    if (r < 0) {
        (void)sli_fsio_ftruncate(l->fd, pos); /* cut off a partial write */
        slb_seterr(err, "topic '%s' partition %d: write failed: %s", l->topic, l->partition,
                   strerror(-r));
        return sli_errno_code(r);
    }
    slb_batch_hdr h;
    slb_hdr_parse(buf, &h);
    int rc = slb_seg_note_batch(a, pos, &h);
    if (rc < 0) return rc;
    if (a->first_ms == 0) a->first_ms = now;
    l->next_offset = slb_next_offset(&h);
    l->dirty = true;
    bool sync = l->conf.fsync == SL_FSYNC_ALWAYS ||
                (l->conf.fsync == SL_FSYNC_INTERVAL &&
                 sli_clock_mono_ms() - l->last_sync_ms >= l->conf.fsync_interval_ms);
    if (sync && (rc = sync_now(l, err)) < 0) {
        /* Not durable: take the batch back so that no reader relies on it. */
        if (sli_fsio_ftruncate(l->fd, pos) == 0) {
            a->size = pos;
            l->next_offset = h.base_offset;
            a->next_offset = h.base_offset;
            while (a->nidx && a->idx[a->nidx - 1].pos >= pos) a->nidx--;
        }
        return rc;
    }
    return 0;
}

/* Wait until the background writer is idle; return (and clear) the error of
 * its last batch, dropping the pending records built on top of it. mu held. */
static int io_wait_locked(slb_plog *l, char *err)
{
    while (l->io_busy) pthread_cond_wait(&l->io_cv, &l->mu);
    if (l->io_rc == 0) return 0;
    int rc = l->io_rc;
    l->io_rc = 0;
    memcpy(err, l->io_err, SLB_ERRLEN);
    slb_builder_reset(&l->pending, l->next_offset);
    l->pending_based = false;
    return rc;
}

int slb_plog_flush_locked(slb_plog *l, char *err)
{
    int rc = io_wait_locked(l, err);
    if (rc < 0 || l->pending.count == 0) return rc;
    size_t len = slb_builder_finish(&l->pending, -1);
    rc = write_batch(l, l->pending.buf, len, err);
    /* On failure the pending records are dropped: their offsets are reused. */
    slb_builder_reset(&l->pending, l->next_offset);
    l->pending_based = false; /* sl_log_append may move next_offset next */
    return rc;
}

/* The background writer: writes each handed-over batch under mu. */
static void *io_main(void *arg)
{
    slb_plog *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->io_busy && !l->io_stop) pthread_cond_wait(&l->io_cv, &l->mu);
        if (!l->io_busy) break;
        l->io_rc = write_batch(l, l->inflight.buf, l->inflight.len, l->io_err);
        l->io_busy = false;
        pthread_cond_broadcast(&l->io_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int slb_plog_handoff(slb_plog *l, char *err)
{
    pthread_mutex_lock(&l->mu);
    int rc;
    if (!l->io_started) {
        if (pthread_create(&l->io, NULL, io_main, l) == 0) {
            l->io_started = true;
        } else { /* no thread: write it here */
            rc = slb_plog_flush_locked(l, err);
            pthread_mutex_unlock(&l->mu);
            return rc;
        }
    }
    if ((rc = io_wait_locked(l, err)) < 0 || l->pending.count == 0) goto out;
    slb_builder_finish(&l->pending, -1);
    slb_builder t = l->inflight;
    l->inflight = l->pending;
    l->pending = t;
    l->io_busy = true;
    pthread_cond_broadcast(&l->io_cv);
    /* The next batch starts where the one in flight ends. */
    slb_builder_reset(&l->pending, l->inflight.base_offset + l->inflight.last_delta + 1);
    l->pending_based = true;
out:
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int slb_plog_flush(slb_plog *l, char *err)
{
    pthread_mutex_lock(&l->mu);
    int rc = slb_plog_flush_locked(l, err);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int slb_plog_add_any(slb_plog *l, const sl_record *rec, int64_t ts, int64_t *offset, char *err)
{
    /* Only fsync=interval partitions are shared with the flusher thread; the
     * others are touched by the owning thread alone and skip the lock (this
     * is the per-record path). */
    bool lock = l->conf.fsync == SL_FSYNC_INTERVAL;
    if (lock) pthread_mutex_lock(&l->mu);
    int rc = 0;
    /* An empty pending batch takes the log's next offset, unless a hand-over
     * already based it on the batch in flight (whose offsets next_offset
     * does not include yet, and which only the writer may read under mu). */
    if (l->pending.count == 0 && !l->pending_based) slb_builder_reset(&l->pending, l->next_offset);
    int64_t delta = l->pending.last_delta + 1;
    if ((rc = slb_builder_add(&l->pending, rec, ts, delta)) < 0) {
        slb_seterr(err, "out of memory");
        goto out;
    }
    if (offset) *offset = l->pending.base_offset + delta;
    /* Full: write it now (a batch ends at most one record past the target). */
    if (l->pending.len >= SLB_BATCH_TARGET)
        rc = lock ? slb_plog_flush_locked(l, err) : slb_plog_handoff(l, err);
out:
    if (lock) pthread_mutex_unlock(&l->mu);
    return rc;
}

/* ---- producer state (idempotence, fencing) ---------------------------------- */

int slb_plog_note_batch(slb_plog *l, const slb_batch_hdr *h)
{
    return (h->attributes & SLB_ATTR_PRODUCER) ? pstate_note(l, h) : 0;
}

const slb_pstate *slb_plog_pstate(slb_plog *l, int64_t pid)
{
    for (size_t i = 0; i < l->npst; i++)
        if (l->pst[i].pid == pid) return &l->pst[i];
    return NULL;
}

/* Remember the producer batch h (written, or found by recovery). A control
 * batch takes no sequence number: it only moves the epoch (a newer epoch
 * starts its sequences anew). */
static int pstate_note(slb_plog *l, const slb_batch_hdr *h)
{
    slb_pstate *st = (slb_pstate *)slb_plog_pstate(l, h->producer_id);
    if (!st) {
        if (l->npst == l->cappst) {
            size_t cap = l->cappst ? 2 * l->cappst : 8;
            slb_pstate *n = realloc(l->pst, cap * sizeof *n);
            if (!n) return SL_ENOMEM;
            l->pst = n;
            l->cappst = cap;
        }
        st = &l->pst[l->npst++];
        st->pid = h->producer_id;
        st->epoch = -1;
        st->txn_open = false;
        st->txn_first = -1;
    }
    if (h->attributes & SLB_ATTR_CONTROL) {
        st->txn_open = false; /* a marker ends the id's transaction, whatever its epoch */
        if (h->producer_epoch > st->epoch) { /* nothing of this epoch yet: expect 0 */
            st->epoch = h->producer_epoch;
            st->base_seq = -2;
            st->last_seq = -1;
            st->base_offset = -1;
            st->count = 0;
        }
        return 0;
    }
    if ((h->attributes & SLB_ATTR_TRANSACTIONAL) && !st->txn_open) {
        st->txn_open = true;
        st->txn_first = h->base_offset;
    }
    st->epoch = h->producer_epoch;
    st->base_seq = h->base_sequence;
    st->last_seq = h->base_sequence + (int32_t)h->last_offset_delta;
    st->base_offset = h->base_offset;
    st->count = h->record_count;
    return 0;
}

/* Check a producer batch of n records against the state: 0 to write it, 1
 * for a retry of the last batch (*dup_base set), 2 for a batch of the same
 * epoch wholly below the last sequence written (a duplicate of an older
 * batch: SL_ERANGE to callers without SLB_APPEND_DUP_OK), or an error. */
static int pstate_check(slb_plog *l, const sl_producer_ref *pr, size_t n, int64_t *dup_base,
                        char *err)
{
    bool dup_older = false; /* wholly below the last sequence written: written before */
    if (pr->producer_id < 0 || pr->epoch < 0 || pr->base_sequence < 0 ||
        (int64_t)pr->base_sequence + (int64_t)n - 1 > INT32_MAX) {
        slb_seterr(err,
                   "topic '%s' partition %d: invalid producer id %" PRId64
                   ", epoch %d or sequence %d",
                   l->topic, l->partition, pr->producer_id, pr->epoch, pr->base_sequence);
        return SL_EINVAL;
    }
    const slb_pstate *st = slb_plog_pstate(l, pr->producer_id);
    if (!st || st->epoch < 0) return 0; /* unknown, or known only from a .txnopen file */
    if (pr->epoch < st->epoch) {
        slb_seterr(err,
                   "topic '%s' partition %d: producer %" PRId64
                   " epoch %d is fenced: epoch %d has written since",
                   l->topic, l->partition, pr->producer_id, pr->epoch, st->epoch);
        return SL_EFENCED;
    }
    int32_t expect = pr->epoch > st->epoch ? 0 : st->last_seq + 1;
    if (pr->epoch == st->epoch && pr->base_sequence == st->base_seq && n == st->count) {
        *dup_base = st->base_offset;
        return 1;
    }
    if (pr->base_sequence == expect) return 0;
    if (pr->epoch == st->epoch && pr->base_sequence <= st->last_seq &&
        pr->base_sequence + (int64_t)n - 1 <= st->last_seq)
        dup_older = true;
    slb_seterr(err,
               "topic '%s' partition %d: producer %" PRId64
               " epoch %d: out-of-order sequence %d (expected %d)%s",
               l->topic, l->partition, pr->producer_id, pr->epoch, pr->base_sequence, expect,
               pr->base_sequence < expect ? ": a duplicate of an older batch" : "");
    return dup_older ? 2 : SL_ERANGE;
}

int slb_plog_append(slb_plog *l, const sl_producer_ref *pr, const sl_record *recs, size_t n,
                    int64_t *base, char *err)
{
    return slb_plog_append_attrs(l, pr, 0, recs, n, base, err);
}

int64_t slb_plog_lso_locked(const slb_plog *l)
{
    int64_t lso = l->next_offset;
    for (size_t i = 0; i < l->npst; i++)
        if (l->pst[i].txn_open && l->pst[i].txn_first < lso) lso = l->pst[i].txn_first;
    return lso;
}

int slb_plog_append_marker(slb_plog *l, const sl_producer_ref *pr, int type, bool only_open,
                           int64_t *offset, char *err)
{
    pthread_mutex_lock(&l->mu);
    int rc = slb_plog_flush_locked(l, err);
    if (rc < 0) goto out;
    const slb_pstate *st = slb_plog_pstate(l, pr->producer_id);
    if (only_open && st && !st->txn_open) {
        rc = 1;
        goto out;
    }
    if (pr->producer_id < 0 || pr->epoch < 0) {
        slb_seterr(err, "topic '%s' partition %d: invalid producer id %" PRId64 " or epoch %d",
                   l->topic, l->partition, pr->producer_id, pr->epoch);
        rc = SL_EINVAL;
        goto out;
    }
    if (st && pr->epoch < st->epoch) {
        slb_seterr(err,
                   "topic '%s' partition %d: producer %" PRId64
                   " epoch %d is fenced: epoch %d has written since",
                   l->topic, l->partition, pr->producer_id, pr->epoch, st->epoch);
        rc = SL_EFENCED;
        goto out;
    }
    uint8_t key[4], value[6];
    slb_marker_encode(key, value, type);
    sl_record rec = {
        .key = key, .key_len = 4, .value = value, .value_len = 6, .timestamp = sli_clock_wall_ms()};
    slb_builder_reset(&l->scratch, l->next_offset);
    if (slb_builder_set_producer(&l->scratch, pr->producer_id, pr->epoch, -1) < 0 ||
        slb_builder_add(&l->scratch, &rec, rec.timestamp, 0) < 0) {
        slb_seterr(err, "out of memory");
        rc = SL_ENOMEM;
        goto out;
    }
    l->scratch.txn_attrs = SLB_ATTR_TRANSACTIONAL | SLB_ATTR_CONTROL;
    size_t len = slb_builder_finish(&l->scratch, -1);
    int64_t at = l->next_offset;
    rc = write_batch(l, l->scratch.buf, len, err);
    if (rc == 0) {
        slb_batch_hdr h;
        (void)slb_batch_check(l->scratch.buf, len, &h, false);
        rc = pstate_note(l, &h);
        if (rc < 0) slb_seterr(err, "out of memory");
    }
    if (rc == 0 && offset) *offset = at;
out:
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int slb_plog_append_attrs(slb_plog *l, const sl_producer_ref *pr, uint8_t txn_attrs,
                          const sl_record *recs, size_t n, int64_t *base, char *err)
{
    pthread_mutex_lock(&l->mu);
    int rc = slb_plog_flush_locked(l, err);
    if (rc < 0) goto out;
    if (pr) {
        int64_t dup;
        if ((rc = pstate_check(l, pr, n, &dup, err)) < 0) goto out;
        if (rc == 2) { /* a duplicate of an older batch: its offset is not known */
            if (txn_attrs & SLB_APPEND_DUP_OK) {
                if (base) *base = -1;
            } else {
                rc = SL_ERANGE;
            }
            goto out;
        }
        if (rc == 1) { /* a retry: acknowledged, not written again */
            if (base) *base = dup;
            rc = 0;
            goto out;
        }
    }
    slb_builder_reset(&l->scratch, l->next_offset);
    if (pr &&
        slb_builder_set_producer(&l->scratch, pr->producer_id, pr->epoch, pr->base_sequence) < 0) {
        slb_seterr(err, "out of memory");
        rc = SL_ENOMEM;
        goto out;
    }
    if (pr) l->scratch.txn_attrs = txn_attrs & SLB_ATTR_TRANSACTIONAL;
    int64_t now = sli_clock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        if ((rc = slb_builder_add(&l->scratch, &recs[i],
                                  recs[i].timestamp != SL_TIMESTAMP_NONE ? recs[i].timestamp : now,
                                  (int64_t)i)) < 0) {
            slb_seterr(err, "out of memory");
            goto out;
        }
    }
    size_t len = slb_builder_finish(&l->scratch, -1);
    int64_t b0 = l->next_offset;
    rc = write_batch(l, l->scratch.buf, len, err);
    if (rc == 0 && pr) {
        slb_batch_hdr h;
        (void)slb_batch_check(l->scratch.buf, len, &h, false);
        rc = pstate_note(l, &h);
        if (rc < 0) slb_seterr(err, "out of memory");
    }
    if (rc == 0 && base) *base = b0;
    /* Keep the scratch buffer from growing without bound after a big batch. */
    if (l->scratch.cap > 4 * SLB_BATCH_TARGET) slb_builder_free(&l->scratch);
out:
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int slb_plog_sync_due(slb_plog *l, int64_t mono_now, char *err)
{
    pthread_mutex_lock(&l->mu);
    int rc = 0;
    if (l->dirty && !l->failed && l->conf.fsync == SL_FSYNC_INTERVAL &&
        mono_now - l->last_sync_ms >= l->conf.fsync_interval_ms)
        rc = sync_now(l, err);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int slb_plog_close(slb_plog *l, char *err)
{
    if (!l) return 0;
    pthread_mutex_lock(&l->mu);
    int rc = slb_plog_flush_locked(l, err);
    if (rc == 0 && l->dirty && !l->failed && l->conf.fsync != SL_FSYNC_NEVER) rc = sync_now(l, err);
    pthread_mutex_unlock(&l->mu);
    plog_free(l);
    return rc;
}

void slb_plog_info(slb_plog *l, sl_partition_info *pi)
{
    pthread_mutex_lock(&l->mu);
    pi->partition = l->partition;
    pi->next_offset = l->next_offset;
    pi->segments = (int32_t)l->nsegs;
    pi->size_bytes = 0;
    for (size_t i = 0; i < l->nsegs; i++) pi->size_bytes += l->segs[i].size;
    pi->first_offset = l->segs[0].base;
    pi->last_stable_offset = slb_plog_lso_locked(l);
    pthread_mutex_unlock(&l->mu);
}

/* ---- lock-free views (describe, delete) ------------------------------------ */

int slb_partition_probe_lock(const char *pdir)
{
    char path[SLB_PATH_CAP];
    snprintf(path, sizeof path, "%s/.lock", pdir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0; /* no lock file: nobody ever wrote */
    int r = flock(fd, LOCK_EX | LOCK_NB);
    close(fd);
    return r < 0 && errno == EWOULDBLOCK ? SL_EBUSY : 0;
}

int slb_partition_info(const char *pdir, sl_partition_info *pi, char *err)
{
    int64_t *bases;
    size_t n;
    int rc = slb_list_segments(pdir, &bases, &n);
    if (rc < 0) {
        slb_seterr(err, "cannot list %s: %s", pdir, strerror(errno));
        return rc;
    }
    pi->segments = (int32_t)n;
    pi->size_bytes = 0;
    pi->first_offset = pi->next_offset = pi->last_stable_offset = n ? bases[0] : 0;
    char path[SLB_PATH_CAP];
    for (size_t i = 0; i < n; i++) {
        slb_seg_path(path, sizeof path, pdir, bases[i], "log");
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue; /* removed meanwhile by retention */
        struct stat st;
        if (fstat(fd, &st) == 0) {
            pi->size_bytes += st.st_size;
            if (i == 0 && st.st_size >= SLB_HDR_SIZE) {
                uint8_t h[SLB_HDR_SIZE];
                slb_batch_hdr bh;
                if (slb_read_full(fd, h, sizeof h, 0) == 0 && slb_hdr_parse(h, &bh) == 0)
                    pi->first_offset = bh.base_offset;
            }
            if (i + 1 == n) {
                /* A throwaway plog collects the producer states, for the LSO. */
                slb_plog tl = {.npst = 0};
                scan_result res;
                (void)slb_txnopen_load(pdir, bases[i], &tl);
                if (scan_segment(fd, bases[i], st.st_size, NULL, true, &tl, &res) == 0) {
                    tl.next_offset = pi->next_offset = res.next_offset;
                    pi->last_stable_offset = slb_plog_lso_locked(&tl);
                }
                free(tl.pst);
                if (n == 1 && res.first_base < 0) pi->first_offset = pi->next_offset;
            }
        }
        close(fd);
    }
    free(bases);
    return 0;
}
