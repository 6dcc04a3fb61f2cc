/*
 * connectors/broker/reader.c - sl_log_reader: reads one partition from any
 * offset and follows it as it grows, in any process, without locks.
 *
 * How: the reader keeps one segment open and a large buffer (>= 1 MiB) filled
 * with pread, so sequential reading costs one system call per megabyte. Each
 * batch is checked (header bounds, CRC-32C, offsets increasing) before any of
 * its records is returned; the record iterator checks every length, so a
 * corrupt record is never returned.
 *
 * Following the log: at the end of the data of the current segment the reader
 * lists the partition directory. If a segment with a larger base exists, the
 * current one is sealed: it is read once more (the writer may have appended
 * before rolling), and then the reader moves to the next segment (the
 * smallest larger base; offsets may jump where compaction or retention
 * removed records). If not, the reader waits on an inotify watch of the
 * partition directory (IN_MODIFY, IN_CREATE, IN_MOVED_TO...). The watch is
 * created the first time the reader has to wait (closing an inotify instance
 * costs a grace period in the kernel, so readers that never wait should not
 * have one), and the data is checked once more after creating it, so that no
 * change is missed; the wait is capped at one second as a fallback for
 * filesystems that do not notify.
 *
 * What is torn and what is corrupt: in the active segment an incomplete batch
 * is a write in progress, and a complete batch with a bad CRC is a torn write
 * of a crashed writer that the next writer's recovery will cut off; both are
 * invisible (the reader waits, and discards its buffered bytes from there so
 * that it re-reads what replaces them) unless a valid batch follows them (a
 * writer writes one batch after another, so that one was complete once):
 * that is corruption. In a sealed segment any bad batch is corruption. So is
 * every impossible layout, on every path (the "read it once more" one
 * included, which used to loop forever on a renamed segment): a batch base
 * below its segment's base, offsets going back or skipping within a segment
 * (not compacted), a batch reaching into the next segment, and a gap or an
 * overlap between segments: each segment starts where the one before it
 * ends, except where retention deleted the segments below the log start (the
 * partition checkpoint, segment.c) and, on compacted topics, where compaction
 * removed an emptied segment. A missing first segment above the log start and
 * a missing active segment (the checkpoint's recovery point beyond the last
 * segment) are gaps too. Corruption: sl_log_reader_next returns SL_ECORRUPT
 * naming the topic, partition, offset, segment and byte, and stays there
 * until sl_log_reader_seek.
 *
 * Transactions (read_committed, the default; sl_log_reader_set_isolation).
 * A transactional batch's fate is written after it (its producer's COMMIT
 * or ABORT marker), so the reader looks ahead, from the log alone (no
 * index, no writer state: it works the same in any process and after any
 * crash). While no transaction is near, the only cost is one attribute test
 * per batch: a batch is returned as soon as it is read (the fast path of
 * non-transactional topics is unchanged). When the reader meets a
 * transactional data batch, a second cursor (`scan`: a reader of the same
 * partition that never waits, made on first need) starts at it (where it
 * stopped last time if that is there, else by a seek) and reads batches ahead, keeping the transactions it has seen open
 * (producer id, first offset) and those whose ABORT it met (producer id,
 * first offset, marker offset). The reader returns a batch at offset o only
 * when o is below every open transaction's first offset (the last stable
 * offset as far as the reader can know it); a transactional batch inside an
 * aborted range of its producer is skipped whole. When the scan reaches the
 * end of the data with a transaction still open at or before o, the reader
 * waits, as at the end of the log (sl_log_reader_next's timeout; the
 * directory watch wakes it when the marker is written), and the scan goes
 * on from where it stopped. Once nothing is open and the reader has caught
 * up with the scan, the scan is left idle until the next transaction. Lists
 * hold only the transactions between the reader and the scan. A marker
 * whose transaction began before the reader's start position is ignored;
 * so is a transaction that began before it: its records there are not the
 * reader's, and the non-transactional records after its start may be
 * returned before it ends (Kafka would hold them back; what is returned is
 * the same). SL_OFFSET_END under read_committed is the last stable offset
 * of the active segment, found on the walk to the end that seek does anyway
 * (its producer batches noted as recovery notes them, with the segment's
 * .txnopen, log.c). Corruption met by the scan is reported by the reader as its
 * own (with the scan's message). read_uncommitted returns every data batch.
 *
 * Threads: a reader is used by one thread at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connectors/broker/broker_int.h"
#include "engine/base/clock.h"
#include "engine/base/errmap.h"

#define RBUF (1 << 20)

/* A transaction seen by the look-ahead: producer id, first offset seen,
 * and (aborted ones) the offset of its ABORT marker. */
typedef struct rtxn {
    int64_t pid, first, last;
} rtxn;

struct sl_log_reader {
    char errmsg[SLB_ERRLEN];
    char topic[SL_TOPIC_NAME_MAX + 1];
    int32_t partition;
    char pdir[SLB_PATH_CAP];
    int ifd;         /* inotify watching pdir; -1 until first needed */
    bool no_inotify; /* inotify failed: fall back to short sleeps */
    int fd;          /* current segment */
    int64_t seg_base;
    int64_t seg_prev_end;       /* offset after the last batch read in this segment; -1 unknown */
    int64_t seg_limit;          /* base of the next segment once one exists; -1 none yet */
    bool compact;               /* compacted topic: a segment may be gone whole (emptied) */
    int64_t ckpt_rp;            /* recovery point read by active_missing() */
    int64_t skip_from, skip_to; /* offsets jumped over (retention); skip_to 0: none */
    char pending[256];          /* corruption found by seek, reported by next ("" none) */
    int64_t pos;                /* file position of the next batch to look at */
    int64_t next_offset;        /* smallest offset still to return */
    uint8_t *buf;
    size_t cap, have;
    int64_t buf_pos; /* file position of buf[0] */
    bool in_batch;
    slb_iter it;
    uint32_t batch_len;
    int64_t batch_next;
    sl_record_header *hdrs;
    size_t hcap;
    /* read_committed (see "Transactions" above) */
    int isolation;        /* enum sl_isolation */
    sl_log_reader *scan;  /* the look-ahead cursor; NULL until first needed */
    bool scan_on;         /* scan is ahead of this reader (else: at its position) */
    bool end_seek;        /* at SL_OFFSET_END, nothing returned since */
    rtxn *open, *aborted; /* open transactions; aborted ranges not yet passed */
    size_t nopen, nab, capopen, capab;
};

static void close_segment(sl_log_reader *r)
{
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->have = 0;
    r->buf_pos = 0;
    r->pos = 0;
    r->in_batch = false;
}

static int open_segment(sl_log_reader *r, int64_t base)
{
    close_segment(r);
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, r->pdir, base, "log");
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        slb_seterr(r->errmsg, "topic '%s' partition %d: cannot open %s: %s", r->topic, r->partition,
                   path, strerror(e));
        return sli_errno_code(e);
    }
    r->seg_base = base;
    r->seg_prev_end = base; /* reading from byte 0; index_hint() makes it unknown */
    r->seg_limit = -1;
    return 0;
}

/* Make at least need bytes from r->pos available in the buffer if the file
 * has them; returns how many are available (may be less). */
static size_t fill(sl_log_reader *r, size_t need)
{
    if (r->pos < r->buf_pos || r->pos > r->buf_pos + (int64_t)r->have) {
        /* pos moved outside the buffer (a seek by the offset index, after
         * open_segment emptied it): nothing buffered is of use */
        r->buf_pos = r->pos;
        r->have = 0;
    }
    size_t off = (size_t)(r->pos - r->buf_pos);
    size_t avail = r->have - off;
    if (avail >= need) return avail;
    if (need > r->cap) {
        uint8_t *nb = realloc(r->buf, need);
        if (!nb) return avail;
        r->buf = nb;
        r->cap = need;
    }
    memmove(r->buf, r->buf + off, avail);
    r->buf_pos = r->pos;
    r->have = avail;
    while (r->have < r->cap) {
        ssize_t n = pread(r->fd, r->buf + r->have, r->cap - r->have, (off_t)(r->pos + r->have));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        r->have += (size_t)n;
        if (r->have >= need && r->have >= RBUF / 2) break;
    }
    return r->have;
}

/* Forget buffered bytes from pos on (they may be replaced on disk). */
static void discard_tail(sl_log_reader *r)
{
    r->have = (size_t)(r->pos - r->buf_pos);
}

/* Position from the segment's offset index for target (0 if none). */
static int64_t index_hint(sl_log_reader *r, int64_t target)
{
    void *v;
    size_t n;
    int64_t lsz;
    if (target <= r->seg_base) return 0;
    if (slb_index_load(r->pdir, r->seg_base, false, &v, &n, &lsz) < 0) return 0;
    slb_index_entry *e = v;
    int64_t rel = target - r->seg_base;
    size_t lo = 0, hi = n; /* first entry with rel > target */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((int64_t)e[mid].rel <= rel)
            lo = mid + 1;
        else
            hi = mid;
    }
    int64_t pos = 0;
    if (lo > 0) {
        /* Trust the entry only if a batch with that offset starts there. */
        uint8_t h[SLB_HDR_SIZE];
        slb_batch_hdr bh;
        if (pread(r->fd, h, sizeof h, e[lo - 1].pos) == (ssize_t)sizeof h &&
            slb_hdr_parse(h, &bh) == 0 && bh.base_offset == r->seg_base + e[lo - 1].rel)
            pos = e[lo - 1].pos;
    }
    free(v);
    return pos;
}

static int list_segments(sl_log_reader *r, int64_t **bases, size_t *n)
{
    int rc = slb_list_segments(r->pdir, bases, n);
    if (rc < 0) {
        slb_seterr(r->errmsg, "topic '%s' partition %d: cannot list %s: %s%s", r->topic,
                   r->partition, r->pdir, strerror(errno),
                   rc == SL_ENOENT ? " (topic deleted?)" : "");
        return rc;
    }
    if (*n == 0) {
        free(*bases);
        slb_seterr(r->errmsg, "topic '%s' partition %d: no segments in %s (topic deleted?)",
                   r->topic, r->partition, r->pdir);
        return SL_ENOENT;
    }
    return 0;
}

/* Skip complete valid batches to the end of the current segment. With tl,
 * note the producer batches in it (the last stable offset of the segment:
 * slb_plog_lso_locked). */
static void skip_to_end(sl_log_reader *r, slb_plog *tl)
{
    for (;;) {
        size_t avail = fill(r, SLB_HDR_SIZE);
        slb_batch_hdr h;
        int c = slb_batch_check(r->buf + (r->pos - r->buf_pos), avail, &h, false);
        if (c == SL_EAGAIN && avail >= SLB_HDR_SIZE) {
            avail = fill(r, h.length);
            c = slb_batch_check(r->buf + (r->pos - r->buf_pos), avail, &h, false);
        }
        if (c < 0) break;
        if (slb_batch_crc(r->buf + (r->pos - r->buf_pos), h.length) != h.crc) break;
        if (tl) (void)slb_plog_note_batch(tl, &h); /* out of memory: less precise */
        r->pos += h.length;
        r->next_offset = slb_next_offset(&h);
        r->seg_prev_end = r->next_offset;
    }
    discard_tail(r);
}

int sl_log_reader_seek(sl_log_reader *r, int64_t offset)
{
    if (!r) return SL_EINVAL;
    if (offset < SL_OFFSET_BEGINNING) {
        slb_seterr(r->errmsg, "offset %" PRId64 " is negative", offset);
        return SL_EINVAL;
    }
    int64_t *bases;
    size_t n;
    int rc;
    r->pending[0] = '\0';
    r->skip_to = 0;
    r->scan_on = false; /* read_committed: the look-ahead starts again from here */
    r->nopen = r->nab = 0;
    r->end_seek = false;
    for (int attempt = 0;; attempt++) {
        if ((rc = list_segments(r, &bases, &n)) < 0) return rc;
        size_t i = 0;
        int64_t want = offset;
        if (offset == SL_OFFSET_END) {
            i = n - 1;
        } else {
            if (offset == SL_OFFSET_BEGINNING || offset < bases[0]) want = bases[0];
            /* Offsets below the first segment are gone on purpose only
             * below the log start (retention moves it before deleting; the
             * checkpoint is read after listing, so it is at least as new). */
            slb_ckpt ck;
            if (!r->compact && want == bases[0] && slb_ckpt_read(r->pdir, &ck) == 0 &&
                ck.log_start < bases[0] && (offset == SL_OFFSET_BEGINNING || offset < bases[0]))
                snprintf(r->pending, sizeof r->pending,
                         "offsets %" PRId64 "..%" PRId64
                         " are missing: the log starts at offset %" PRId64
                         " (retention) but its first segment at %" PRId64,
                         ck.log_start > offset ? ck.log_start : offset, bases[0] - 1, ck.log_start,
                         bases[0]);
            if (!r->pending[0] && !r->compact && offset >= 0 && offset < bases[0]) {
                r->skip_from = offset; /* below the log start: deleted by retention */
                r->skip_to = bases[0];
            }
            while (i + 1 < n && bases[i + 1] <= want) i++;
        }
        rc = open_segment(r, bases[i]);
        free(bases);
        if (rc == SL_ENOENT && attempt < 100) continue; /* removed meanwhile */
        if (rc < 0) return rc;
        if (offset == SL_OFFSET_END) {
            r->next_offset = r->seg_base;
            r->pos = index_hint(r, INT64_MAX / 4);
            if (r->pos > 0) {
                r->seg_prev_end = -1;
                uint8_t h[SLB_HDR_SIZE];
                slb_batch_hdr bh;
                if (pread(r->fd, h, sizeof h, r->pos) == (ssize_t)sizeof h &&
                    slb_hdr_parse(h, &bh) == 0)
                    r->next_offset = bh.base_offset;
            }
            /* read_committed: the end is the last stable offset (as Kafka's
             * ListOffsets answers), so that a transaction open here is read
             * once committed. Found on the walk to the end, which reads the
             * active segment anyway (and its .txnopen). */
            slb_plog tl = {.npst = 0};
            bool track = r->isolation == SL_READ_COMMITTED;
            if (track && r->pos == 0) (void)slb_txnopen_load(r->pdir, r->seg_base, &tl);
            skip_to_end(r, track ? &tl : NULL);
            tl.next_offset = r->next_offset;
            int64_t lso = slb_plog_lso_locked(&tl);
            free(tl.pst);
            if (lso < r->next_offset && (rc = sl_log_reader_seek(r, lso)) < 0) return rc;
            r->end_seek = true;
        } else {
            r->next_offset = want;
            r->pos = index_hint(r, want);
            if (r->pos > 0) r->seg_prev_end = -1;
        }
        return 0;
    }
}

int sl_log_reader_open(sl_log_reader **out, sl_broker *b, const char *topic, int32_t partition,
                       int64_t offset)
{
    *out = NULL;
    if (!b) return SL_EINVAL;
    sl_topic_conf conf;
    int rc = slb_check_name("topic", topic, true, b->errmsg);
    if (rc < 0) return rc;
    if ((rc = slb_topic_load(b, topic, &conf, b->errmsg)) < 0) return rc;
    if (partition < 0 || partition >= conf.partitions) {
        slb_seterr(b->errmsg, "topic '%s' has no partition %d (it has %d: 0..%d)", topic, partition,
                   conf.partitions, conf.partitions - 1);
        return SL_ERANGE;
    }
    if (offset < SL_OFFSET_BEGINNING) {
        slb_seterr(b->errmsg, "offset %" PRId64 " is negative", offset);
        return SL_EINVAL;
    }
    sl_log_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->buf = malloc(RBUF))) {
        free(r);
        slb_seterr(b->errmsg, "out of memory");
        return SL_ENOMEM;
    }
    r->cap = RBUF;
    r->fd = -1;
    snprintf(r->topic, sizeof r->topic, "%s", topic);
    r->partition = partition;
    r->compact = conf.compact != 0;
    slb_part_dir(r->pdir, sizeof r->pdir, b, topic, partition);
    r->ifd = -1; /* the inotify watch is made on first need: closing one is slow */
    if ((rc = sl_log_reader_seek(r, offset)) < 0) {
        memcpy(b->errmsg, r->errmsg, sizeof b->errmsg);
        sl_log_reader_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void sl_log_reader_close(sl_log_reader *r)
{
    if (!r) return;
    close_segment(r);
    if (r->ifd >= 0) close(r->ifd);
    sl_log_reader_close(r->scan);
    free(r->open);
    free(r->aborted);
    free(r->buf);
    free(r->hdrs);
    free(r);
}

const char *sl_log_reader_errmsg(const sl_log_reader *r)
{
    return r ? r->errmsg : "out of memory";
}

int sl_log_reader_skipped(sl_log_reader *r, int64_t *from, int64_t *to)
{
    if (!r || r->skip_to == 0) return 0;
    if (from) *from = r->skip_from;
    if (to) *to = r->skip_to;
    r->skip_to = 0;
    return 1;
}

int64_t sl_log_reader_position(const sl_log_reader *r)
{
    return r ? r->next_offset : -1;
}

/* Create the inotify watch if not done yet. Returns true if it was created
 * now (the caller must check for data again before sleeping on it). */
static bool ensure_watch(sl_log_reader *r)
{
    if (r->ifd >= 0 || r->no_inotify) return false;
    r->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r->ifd >= 0 && inotify_add_watch(r->ifd, r->pdir,
                                         IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE |
                                             IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
        close(r->ifd);
        r->ifd = -1;
    }
    if (r->ifd < 0) r->no_inotify = true;
    return r->ifd >= 0;
}

int sl_log_reader_fd(sl_log_reader *r)
{
    if (!r) return -1;
    ensure_watch(r);
    return r->ifd;
}

static int report_corrupt(sl_log_reader *r, const char *why)
{
    slb_seterr(r->errmsg,
               "topic '%s' partition %d: corrupt data at offset %" PRId64 " (segment %020" PRId64
               ".log, byte %" PRId64 "): %s",
               r->topic, r->partition, r->next_offset, r->seg_base, r->pos, why);
    r->in_batch = false;
    discard_tail(r);
    return SL_ECORRUPT;
}

/* Why the batch h (complete, good CRC) at r->pos cannot be where it is, or
 * NULL: a base below the segment's base (a segment renamed to a higher base,
 * or copied under another name), offsets going back within the segment, or
 * offsets reaching into the next segment. */
static const char *layout_error(sl_log_reader *r, const slb_batch_hdr *h)
{
    if (h->base_offset < r->seg_base)
        return "batch base offset below the segment's base offset (segment renamed or copied?)";
    if (r->seg_prev_end >= 0 && h->base_offset < r->seg_prev_end)
        return "batch base offset below the end of the batch before it";
    if (r->seg_prev_end >= 0 && h->base_offset > r->seg_prev_end && !r->compact)
        return "offsets missing between this batch and the one before it";
    if (r->seg_limit >= 0 && slb_next_offset(h) > r->seg_limit)
        return "batch reaches into the offsets of the next segment";
    return NULL;
}

/* Is the segment the writer rolled to last (the recovery point in the
 * checkpoint) missing, although the current one, the last listed, is below
 * it? The checkpoint is written after the segment is created, so a second
 * listing after reading it sees that segment if it exists. */
static bool active_missing(sl_log_reader *r)
{
    slb_ckpt ck;
    if (slb_ckpt_read(r->pdir, &ck) < 0 || ck.recovery_point <= r->seg_base) return false;
    int64_t *bases;
    size_t n;
    if (slb_list_segments(r->pdir, &bases, &n) < 0) return false;
    bool missing = n > 0 && bases[n - 1] < ck.recovery_point;
    free(bases);
    r->ckpt_rp = ck.recovery_point;
    return missing;
}

/* Is there a complete, valid batch after r->pos (in the next buffer-full),
 * with offsets at or after the reader's position? 1 yes, 0 no, -1 the batch
 * at r->pos itself is complete and valid now (the writer finished it while
 * we looked: read it). */
static int valid_batch_follows(sl_log_reader *r)
{
    size_t have = fill(r, r->cap);
    size_t off = (size_t)(r->pos - r->buf_pos);
    slb_batch_hdr h0;
    if (slb_batch_check(r->buf + off, have - off, &h0, true) == 0) return -1;
    bool found = false;
    for (size_t q = off + 1; !found && q + SLB_HDR_SIZE <= have; q++) {
        slb_batch_hdr h;
        found = slb_batch_check(r->buf + q, have - q, &h, true) == 0 &&
                h.base_offset >= r->next_offset && h.base_offset >= r->seg_base;
    }
    discard_tail(r); /* what follows pos may yet be replaced on disk */
    return found;
}

static void drain(sl_log_reader *r)
{
    char ev[4096];
    while (r->ifd >= 0 && read(r->ifd, ev, sizeof ev) > 0) {}
}

/* Wait for a change of the partition directory until deadline (monotonic
 * ms; -1 forever). Returns false when the time is up. */
static bool wait_change(sl_log_reader *r, int64_t deadline)
{
    int64_t now = sli_clock_mono_ms();
    if (deadline >= 0 && now >= deadline) return false;
    int64_t t = deadline < 0 ? 1000 : deadline - now;
    if (t > 1000) t = 1000;
    if (r->ifd >= 0) {
        struct pollfd p = {.fd = r->ifd, .events = POLLIN};
        (void)poll(&p, 1, (int)t);
        drain(r);
    } else {
        struct timespec ts = {0, (long)(t < 10 ? t : 10) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Wait for a change (or not, with timeout_ms 0): 0 to look again, SL_EAGAIN
 * when the time is up. *deadline starts at -2 (not computed yet). */
static int wait_more(sl_log_reader *r, int timeout_ms, int64_t *deadline)
{
    if (timeout_ms == 0) return SL_EAGAIN;
    if (ensure_watch(r)) return 0; /* watching from now on: look once more */
    if (*deadline == -2) *deadline = timeout_ms < 0 ? -1 : sli_clock_mono_ms() + timeout_ms;
    /* Events queued before the last look only cause one more look. */
    return wait_change(r, *deadline) ? 0 : SL_EAGAIN;
}

/* The next complete, checked batch at r->pos (moving on to the following
 * segments, waiting as timeout_ms says): 0 with *hp filled and its bytes at
 * r->buf + (r->pos - r->buf_pos), not consumed; or SL_EAGAIN, SL_ECORRUPT,
 * ... */
static int next_batch(sl_log_reader *r, slb_batch_hdr *hp, int timeout_ms, int64_t *deadline)
{
    for (;;) {
        size_t avail = fill(r, SLB_HDR_SIZE);
        uint8_t *p = r->buf + (r->pos - r->buf_pos);
        slb_batch_hdr h;
        int c = slb_batch_check(p, avail, &h, true);
        if (c == SL_EAGAIN && avail >= SLB_HDR_SIZE) {
            avail = fill(r, h.length);
            p = r->buf + (r->pos - r->buf_pos);
            c = slb_batch_check(p, avail, &h, true);
        }
        if (c == 0) {
            const char *why = layout_error(r, &h);
            if (why) return report_corrupt(r, why);
            *hp = h;
            return 0;
        }
        /* End of the readable data of this segment. */
        discard_tail(r);
        int64_t *bases;
        size_t n;
        int rc = list_segments(r, &bases, &n);
        if (rc < 0) return rc;
        int64_t next_base = -1;
        bool still_there = false; /* the current segment is still listed */
        for (size_t i = 0; i < n; i++) {
            if (bases[i] == r->seg_base) still_there = true;
            if (bases[i] > r->seg_base) {
                next_base = bases[i];
                break;
            }
        }
        free(bases);
        if (next_base >= 0) {
            r->seg_limit = next_base;
            /* Sealed: read it once more, then it must end cleanly. */
            avail = fill(r, SLB_HDR_SIZE);
            p = r->buf + (r->pos - r->buf_pos);
            c = slb_batch_check(p, avail, &h, true);
            if (c == SL_EAGAIN && avail >= SLB_HDR_SIZE) {
                avail = fill(r, h.length);
                p = r->buf + (r->pos - r->buf_pos);
                c = slb_batch_check(p, avail, &h, true);
            }
            if (c == 0) {
                /* The same checks as the main path: a batch that is valid but
                 * cannot be here is corruption, never "read it once more"
                 * (which would loop forever). */
                const char *why = layout_error(r, &h);
                if (why) return report_corrupt(r, why);
                continue;
            }
            if (avail > 0)
                return report_corrupt(r, c == SL_EAGAIN ? "truncated batch in a sealed segment"
                                                        : "bad batch (CRC or header)");
            /* Continuity: the next segment starts where this one ends. A
             * segment that retention deleted under the reader (it is no
             * longer listed; retention deletes the oldest) and compaction
             * (which deletes a segment it emptied) may leave a jump; any other
             * hole or overlap is corruption, never a silent jump. */
            int64_t end = r->seg_prev_end;
            if (end >= 0 && end > next_base) {
                char why[160];
                snprintf(why, sizeof why,
                         "this segment ends at offset %" PRId64 " but the next one (%020" PRId64
                         ".log) starts at %" PRId64 ": segments overlap",
                         end, next_base, next_base);
                return report_corrupt(r, why);
            }
            slb_ckpt ck;
            if (end >= 0 && end < next_base && !still_there && !r->compact &&
                slb_ckpt_read(r->pdir, &ck) == 0 && next_base > ck.log_start)
                still_there = true; /* gone, but not by retention: a gap all the same */
            if (end >= 0 && end < next_base && still_there && !r->compact) {
                char why[200];
                snprintf(why, sizeof why,
                         "offsets %" PRId64 "..%" PRId64 " are missing: this segment ends at "
                         "offset %" PRId64 " and the next one (%020" PRId64
                         ".log) starts at %" PRId64,
                         end, next_base - 1, end, next_base, next_base);
                return report_corrupt(r, why);
            }
            int64_t want = r->next_offset;
            if (want < next_base && !r->compact) { /* retention deleted them before we read them */
                if (r->skip_to == 0) r->skip_from = want;
                r->skip_to = next_base;
            }
            rc = open_segment(r, next_base);
            if (rc == SL_ENOENT) continue; /* removed meanwhile: list again */
            if (rc < 0) return rc;
            if (want < next_base) want = next_base;
            r->next_offset = want;
            r->pos = index_hint(r, want);
            continue;
        }
        /* The active segment: an incomplete or bad batch is a write in
         * progress or a crashed writer's torn tail, unless valid batches
         * follow it (a writer writes batches one after another, so a valid
         * batch after it means it was complete once): then it is corruption
         * that the next writer refuses to truncate (see log.c). */
        if (!r->compact && active_missing(r)) {
            char why[200];
            snprintf(why, sizeof why,
                     "the log ends here but segment %020" PRId64
                     ".log (the active segment at the writer's last roll) is missing",
                     r->ckpt_rp);
            return report_corrupt(r, why);
        }
        int vf = valid_batch_follows(r);
        if (vf < 0) continue;
        if (vf > 0) return report_corrupt(r, "bad batch followed by valid batches");
        if ((rc = wait_more(r, timeout_ms, deadline)) != 0) return rc;
    }
}

/* Step over the batch h at r->pos. */
static void consume_batch(sl_log_reader *r, const slb_batch_hdr *h)
{
    r->pos += h->length;
    r->seg_prev_end = slb_next_offset(h);
    if (r->seg_prev_end > r->next_offset) r->next_offset = r->seg_prev_end;
}

static int add_txn(rtxn **v, size_t *n, size_t *cap, int64_t pid, int64_t first, int64_t last)
{
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 8;
        rtxn *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = (rtxn){pid, first, last};
    return 0;
}

/* The look-ahead cursor: a reader of the same partition that never waits. */
static int scan_make(sl_log_reader *r)
{
    sl_log_reader *s = calloc(1, sizeof *s);
    if (!s || !(s->buf = malloc(RBUF))) {
        free(s);
        slb_seterr(r->errmsg, "out of memory");
        return SL_ENOMEM;
    }
    s->cap = RBUF;
    s->fd = -1;
    s->ifd = -1;
    s->no_inotify = true;
    s->isolation = SL_READ_UNCOMMITTED;
    memcpy(s->topic, r->topic, sizeof s->topic);
    s->partition = r->partition;
    memcpy(s->pdir, r->pdir, sizeof s->pdir);
    s->compact = r->compact;
    r->scan = s;
    return 0;
}

/* Let the look-ahead read the next batch; 0, SL_EAGAIN at the end of the
 * data, or an error (message copied to r). */
static int scan_step(sl_log_reader *r)
{
    sl_log_reader *s = r->scan;
    slb_batch_hdr h;
    int64_t dl = -2;
    int rc = next_batch(s, &h, 0, &dl);
    if (rc == SL_EAGAIN) return rc;
    if (rc < 0) {
        memcpy(r->errmsg, s->errmsg, sizeof r->errmsg);
        return rc;
    }
    if (slb_next_offset(&h) > s->next_offset && (h.attributes & SLB_ATTR_TRANSACTIONAL)) {
        size_t i = 0;
        while (i < r->nopen && r->open[i].pid != h.producer_id) i++;
        if (h.attributes & SLB_ATTR_CONTROL) {
            if (i < r->nopen) { /* the marker ends the transaction */
                slb_iter it;
                slb_rec rec;
                int type = SL_ECORRUPT;
                slb_iter_init(&it, s->buf + (s->pos - s->buf_pos), &h);
                if (slb_iter_next(&it, &rec) == 1) type = slb_marker_decode(&rec);
                if (type < 0) {
                    slb_seterr(r->errmsg,
                               "topic '%s' partition %d: corrupt transaction marker at offset "
                               "%" PRId64,
                               r->topic, r->partition, h.base_offset);
                    return SL_ECORRUPT;
                }
                if (type == SLB_MARKER_ABORT &&
                    add_txn(&r->aborted, &r->nab, &r->capab, h.producer_id, r->open[i].first,
                            h.base_offset) < 0) {
                    slb_seterr(r->errmsg, "out of memory");
                    return SL_ENOMEM;
                }
                r->open[i] = r->open[--r->nopen];
            } /* else: a marker of a transaction begun before this reader looked */
        } else if (i == r->nopen && add_txn(&r->open, &r->nopen, &r->capopen, h.producer_id,
                                            h.base_offset, -1) < 0) {
            slb_seterr(r->errmsg, "out of memory");
            return SL_ENOMEM;
        }
    }
    consume_batch(s, &h);
    return 0;
}

/* read_committed: may the data batch h at r->pos be returned? 1 yes, 0 no
 * (aborted: skip it), SL_EAGAIN (a transaction open at or before it: wait),
 * or an error. */
static int txn_visible(sl_log_reader *r, const slb_batch_hdr *h)
{
    int64_t o = h->base_offset;
    bool txn = (h->attributes & SLB_ATTR_TRANSACTIONAL) != 0;
    int rc;
    if (r->scan_on && r->nopen == 0 && o >= r->scan->next_offset) r->scan_on = false;
    if (!r->scan_on) {
        if (!txn) return 1;
        if (!r->scan && (rc = scan_make(r)) < 0) return rc;
        /* Usually the scan stopped right here, where this reader caught up
         * with it: it goes on from there (no seek: no directory listing). */
        if ((r->scan->fd < 0 || r->scan->next_offset != o) &&
            (rc = sl_log_reader_seek(r->scan, o)) < 0) {
            memcpy(r->errmsg, r->scan->errmsg, sizeof r->errmsg);
            return rc;
        }
        r->nopen = r->nab = 0;
        r->scan_on = true;
    }
    /* Aborted ranges this reader has passed are forgotten. */
    size_t k = 0;
    for (size_t i = 0; i < r->nab; i++)
        if (r->aborted[i].last >= o) r->aborted[k++] = r->aborted[i];
    r->nab = k;
    for (;;) {
        int64_t lso = INT64_MAX;
        for (size_t i = 0; i < r->nopen; i++)
            if (r->open[i].first < lso) lso = r->open[i].first;
        if (o < lso && r->scan->next_offset > o) break; /* the scan passed o: decided */
        if ((rc = scan_step(r)) != 0) return rc;
    }
    if (txn)
        for (size_t i = 0; i < r->nab; i++)
            if (r->aborted[i].pid == h->producer_id && r->aborted[i].first <= o &&
                o <= r->aborted[i].last)
                return 0;
    return 1;
}

int sl_log_reader_set_isolation(sl_log_reader *r, int isolation)
{
    if (!r) return SL_EINVAL;
    if (isolation != SL_READ_COMMITTED && isolation != SL_READ_UNCOMMITTED) {
        slb_seterr(r->errmsg, "isolation %d is neither SL_READ_COMMITTED nor SL_READ_UNCOMMITTED",
                   isolation);
        return SL_EINVAL;
    }
    bool again = r->end_seek && isolation != r->isolation;
    r->isolation = isolation;
    r->scan_on = false;
    r->nopen = r->nab = 0;
    /* Opened (or moved) at SL_OFFSET_END and nothing read since: the end
     * depends on the isolation. */
    return again ? sl_log_reader_seek(r, SL_OFFSET_END) : 0;
}

int sl_log_reader_next(sl_log_reader *r, sl_message *msg, int timeout_ms)
{
    if (!r || !msg) return SL_EINVAL;
    if (r->pending[0]) return report_corrupt(r, r->pending);
    int64_t deadline = -2; /* computed when first needed: the fast path reads no clock */
    for (;;) {
        if (r->in_batch) {
            slb_rec rec;
            int c = slb_iter_next(&r->it, &rec);
            if (c == 1) {
                if (rec.offset < r->next_offset) continue;
                if (rec.header_count > r->hcap) {
                    sl_record_header *nh = realloc(r->hdrs, rec.header_count * sizeof *nh);
                    if (!nh) {
                        slb_seterr(r->errmsg, "out of memory");
                        return SL_ENOMEM;
                    }
                    r->hdrs = nh;
                    r->hcap = rec.header_count;
                }
                if (slb_headers_decode(&rec, r->hdrs) < 0)
                    return report_corrupt(r, "malformed record headers");
                msg->partition = r->partition;
                msg->offset = rec.offset;
                msg->timestamp = rec.timestamp;
                msg->key = rec.key;
                msg->key_len = rec.key_len > 0 ? (size_t)rec.key_len : 0;
                msg->value = rec.value;
                msg->value_len = rec.value_len > 0 ? (size_t)rec.value_len : 0;
                msg->headers = r->hdrs;
                msg->header_count = rec.header_count;
                r->next_offset = rec.offset + 1;
                return 0;
            }
            if (c < 0) return report_corrupt(r, "malformed record in a batch with a good CRC");
            r->in_batch = false;
            r->pos += r->batch_len;
            r->seg_prev_end = r->batch_next;
            if (r->batch_next > r->next_offset) r->next_offset = r->batch_next;
            continue;
        }
        slb_batch_hdr h;
        int rc = next_batch(r, &h, timeout_ms, &deadline);
        if (rc) return rc;
        if (slb_next_offset(&h) <= r->next_offset || (h.attributes & SLB_ATTR_CONTROL)) {
            /* Entirely before the wanted offset, or a transaction marker,
             * which no reader returns (batch.h). */
            consume_batch(r, &h);
            continue;
        }
        /* read_committed: one test per batch while no transaction is near. */
        if (r->isolation == SL_READ_COMMITTED &&
            (r->scan_on || (h.attributes & SLB_ATTR_TRANSACTIONAL))) {
            int v = txn_visible(r, &h);
            if (v == SL_EAGAIN) { /* at the last stable offset */
                if ((rc = wait_more(r, timeout_ms, &deadline)) != 0) return rc;
                continue;
            }
            if (v < 0) return v;
            if (v == 0) { /* an aborted transaction's batch */
                consume_batch(r, &h);
                continue;
            }
        }
        slb_iter_init(&r->it, r->buf + (r->pos - r->buf_pos), &h);
        r->batch_len = h.length;
        r->batch_next = slb_next_offset(&h);
        r->in_batch = true;
        r->end_seek = false; /* a batch with records to return (per batch, not per record) */
    }
}
