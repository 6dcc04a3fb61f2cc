/*
 * connectors/broker/log.h - one partition of a topic on disk: segments,
 * indexes, the writer with its lock, recovery, retention and compaction
 * (private header). log.c implements it (the writer, recovery); it stands on
 * the segment layer (segment.h: segment files, offset and time indexes), and
 * retention and compaction (clean.h, clean.c) stand on it. Dependencies point
 * one way: clean.c -> log.c -> index.c -> segment.c; log.c reaches cleaning
 * only through the after_roll hook its opener gives it. The broker's storage
 * depends only on engine/base/ and on the public sluice/broker.h and
 * sluice/error.h.
 *
 * Directory layout of a broker:
 *
 *   DIR/TOPIC/topic.meta                     topic metadata (broker.c)
 *   DIR/TOPIC/P/.lock                        writer lock of partition P (flock)
 *   DIR/TOPIC/P/checkpoint                   log start offset, recovery point (segment.c)
 *   DIR/TOPIC/P/00000000000000000000.log     segment: record batches (batch.h)
 *   DIR/TOPIC/P/00000000000000000000.index   sparse offset index (sealed segments)
 *   DIR/TOPIC/P/00000000000000000000.timeindex  time index (sealed segments)
 *   DIR/TOPIC/P/NNNNNNNNNNNNNNNNNNNN.txnopen    transactions open when segment NNN
 *                                            became active (log.c; only if any)
 *   DIR/TOPIC/P/NNNNNNNNNNNNNNNNNNNN.log.cleaned compaction output being written
 *
 * Segments are named by their base offset (segment.h). The segment with the
 * largest base is the active one; only it is ever appended to.
 */
#ifndef SLUICE_BROKER_LOG_H
#define SLUICE_BROKER_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "connectors/broker/batch.h"
#include "connectors/broker/segment.h"
#include "sluice/broker.h"

#define SLB_ERRLEN       512
#define SLB_BATCH_TARGET (512 * 1024) /* producer batches are written at this size */

typedef struct slb_plog slb_plog;
typedef struct slb_abidx slb_abidx; /* aborted transactions of a partition (rawlog.c) */

/* What a partition remembers of one producer id (idempotence and fencing,
 * log.c): its latest epoch and its last batch. Rebuilt at open from the
 * producer batches of the active segment. */
typedef struct slb_pstate {
    int64_t pid;
    int32_t epoch;
    int32_t base_seq, last_seq; /* sequence numbers of the last batch's first and last slot */
    int64_t base_offset;        /* offset of the last batch's first record */
    uint32_t count;             /* records of the last batch */
    bool txn_open;              /* a transactional data batch and no marker after it yet */
    int64_t txn_first;          /* txn_open: offset of its first batch seen here */
} slb_pstate;

/* Called by the writer after each segment roll, with mu held and nothing
 * pending (cleaning: slb_plog_clean_locked, clean.h). Housekeeping: its
 * failure (err, SLB_ERRLEN) does not fail the append that rolled; it is
 * simply called again at the next roll. */
typedef int (*slb_roll_hook)(slb_plog *l, int64_t now_ms, char *err);

/* A partition opened for writing. Holds the partition's flock for its life.
 * mu guards everything below it against the broker's flusher thread; every
 * slb_plog_* function takes it. */
struct slb_plog {
    char *dir; /* the partition directory */
    char topic[SL_TOPIC_NAME_MAX + 1];
    int32_t partition;
    sl_topic_conf conf;
    int lock_fd;
    pthread_mutex_t mu;
    int fd; /* active segment, read-write */
    slb_segment *segs;
    size_t nsegs; /* >= 1; segs[nsegs-1] is active */
    int64_t next_offset;
    bool dirty;           /* written since the last fdatasync */
    bool failed;          /* an fsync failed: refuse appends until reopened */
    int64_t last_sync_ms; /* monotonic */
    slb_builder pending;  /* buffered records (sl_producer); the producer's thread only */
    bool pending_based;   /* pending's base offset is set (see slb_plog_add_any) */
    slb_builder scratch;  /* sl_log_append's batch */
    int rolls;
    /* Background writer of full producer batches (fsync never or always): the
     * producer hands a finished batch over in `inflight` and goes on encoding
     * the next one in `pending` while io_main writes it (under mu). io_cv
     * signals both ways; io_rc and io_err keep a failure until the producer's
     * next hand-over or flush reports it. */
    pthread_t io;
    pthread_cond_t io_cv;
    bool io_started, io_busy, io_stop;
    int io_rc;
    slb_builder inflight;
    char io_err[SLB_ERRLEN];
    slb_roll_hook after_roll; /* NULL: nothing runs at a roll */
    slb_ckpt ckpt;            /* as last written (or read at open); segment.h */
    slb_pstate *pst;          /* producer states, npst of them (unsorted; few) */
    size_t npst, cappst;
    slb_abidx *abidx; /* aborted transactions, built on first need (rawlog.c); NULL */
    void (*abidx_free)(slb_abidx *a); /* set with abidx by rawlog.c (log.c sits below it) */
};

/* ---- helpers (log.c) ---- */

/* Format "topic T partition P: " prefixed messages into err (SLB_ERRLEN). */
void slb_seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Move the log start offset to log_start and write the checkpoint (before
 * retention deletes the segments below it). mu held. */
int slb_plog_set_log_start(slb_plog *l, int64_t log_start, char *err);

/* ---- the writer (log.c) ---- */

/* Open partition pdir for writing: take its lock (blocking when wait, else
 * SL_EBUSY at once), recover it (see log.c), and leave it ready to append.
 * after_roll runs after each segment roll (pass slb_plog_clean_locked, or
 * retention and compaction never run by themselves); recovery does not roll,
 * so the first call comes at the first roll after opening. */
int slb_plog_open(slb_plog **out, const char *pdir, const char *topic, int32_t partition,
                  const sl_topic_conf *conf, bool wait, slb_roll_hook after_roll, char *err);
/* Recover partition pdir as slb_plog_open does, except that a corrupt active
 * segment (a bad batch followed by valid ones, which slb_plog_open refuses
 * with SL_ECORRUPT) is cut at the bad batch; info says what was dropped
 * (segment -1: nothing). Takes the lock without waiting (SL_EBUSY). */
int slb_plog_repair(const char *pdir, const char *topic, int32_t partition,
                    const sl_topic_conf *conf, sl_repair_info *info, char *err);
/* Flush pending records, write nothing else, release the lock and free. */
int slb_plog_close(slb_plog *l, char *err);
/* Write the pending batch, honouring the fsync policy. */
int slb_plog_flush(slb_plog *l, char *err);
/* Hand the full pending batch to the background writer (starting it on
 * first use) after the previous one is written; returns that previous
 * write's error if it failed (the pending records are then dropped, as by a
 * failed flush). Producer's thread, without mu; not for fsync=interval. */
int slb_plog_handoff(slb_plog *l, char *err);
/* slb_plog_add for every case (first record of a batch, fsync=interval with
 * its lock, records with headers); out of line. */
int slb_plog_add_any(slb_plog *l, const sl_record *rec, int64_t ts, int64_t *offset, char *err);
/* Buffer one record (offset assigned now); writes the pending batch once it
 * reaches SLB_BATCH_TARGET bytes (so a batch ends at most one record past
 * the target). The producer's per-record path: the common case (a
 * partition not shared with the flusher thread, a batch already started, a
 * record without headers) is inline and encodes straight into the pending
 * batch. Runs on the producer's thread. */
static inline int slb_plog_add(slb_plog *l, const sl_record *rec, int64_t ts, int64_t *offset,
                               char *err)
{
    slb_builder *pb = &l->pending;
    if (l->conf.fsync == SL_FSYNC_INTERVAL || pb->count == 0 || rec->header_count)
        return slb_plog_add_any(l, rec, ts, offset, err);
    int64_t delta = pb->last_delta + 1;
    if (slb_builder_add(pb, rec, ts, delta) < 0) {
        slb_seterr(err, "out of memory");
        return SL_ENOMEM;
    }
    if (offset) *offset = pb->base_offset + delta;
    return pb->len >= SLB_BATCH_TARGET ? slb_plog_handoff(l, err) : 0;
}
/* Write recs as one batch (after the pending one). With pr (not NULL) the
 * batch is a producer's (batch.h, producer fields) and is checked against
 * the partition's producer state first: an epoch older than the latest seen
 * for the id is SL_EFENCED; a retry of the producer's last batch (same
 * epoch, base sequence and count) writes nothing and returns 0 with *base
 * the offset it was written at; any other base sequence than the next one
 * (last + 1; 0 for a new epoch) is SL_ERANGE (out of order, or a duplicate
 * of an older batch). A producer id the partition has no state for (new,
 * or whose batches are all in sealed segments) is accepted at any
 * sequence. */
int slb_plog_append(slb_plog *l, const sl_producer_ref *pr, const sl_record *recs, size_t n,
                    int64_t *base, char *err);
/* slb_plog_append with attribute bits txn_attrs (SLB_ATTR_TRANSACTIONAL:
 * the batch is part of the producer's open transaction; needs pr). With
 * SLB_APPEND_DUP_OK in txn_attrs (not a batch attribute), a batch of pr's
 * epoch whose sequences all lie below the last one written (a retry of an
 * older batch: Kafka's DUPLICATE_SEQUENCE_NUMBER) writes nothing and
 * returns SLB_APPEND_DUP with *base -1, instead of SL_ERANGE. */
#define SLB_APPEND_DUP_OK 0x80
#define SLB_APPEND_DUP    2
int slb_plog_append_attrs(slb_plog *l, const sl_producer_ref *pr, uint8_t txn_attrs,
                          const sl_record *recs, size_t n, int64_t *base, char *err);
/* Write a transaction marker (a control batch, batch.h) of type
 * SLB_MARKER_COMMIT or _ABORT for producer pr (its base_sequence is
 * ignored): SL_EFENCED if the partition has seen a newer epoch of the
 * producer id. *offset (may be NULL) gets the marker's offset. With
 * only_open, nothing is written (and 1 returned) when the partition's
 * producer state says the producer id has no open transaction here (a
 * producer id it has no state for is taken to have one). */
int slb_plog_append_marker(slb_plog *l, const sl_producer_ref *pr, int type, bool only_open,
                           int64_t *offset, char *err);
/* The last stable offset: the first offset of the earliest transaction still
 * open (as far as the producer state knows it), else the log end. mu held
 * or l not shared. */
int64_t slb_plog_lso_locked(const slb_plog *l);
/* Note the producer batch h (others are ignored) in l's producer states, as
 * recovery does; with slb_txnopen_load and slb_plog_lso_locked, a zeroed
 * slb_plog serves as a throwaway collector (describe, reader.c). Returns 0
 * or SL_ENOMEM. */
int slb_plog_note_batch(slb_plog *l, const slb_batch_hdr *h);
/* Seed l's producer states with the transactions open when segment base of
 * pdir became active (its .txnopen file; nothing if none). 0 or SL_ENOMEM. */
int slb_txnopen_load(const char *pdir, int64_t base, slb_plog *l);
/* The state of producer pid in l, or NULL. mu held (or l not shared). */
const slb_pstate *slb_plog_pstate(slb_plog *l, int64_t pid);
/* fdatasync if dirty and due (interval policy); for the flusher thread. */
int slb_plog_sync_due(slb_plog *l, int64_t mono_now, char *err);
/* Wait for the batch in flight and write the pending batch. mu held. */
int slb_plog_flush_locked(slb_plog *l, char *err);
/* Partition figures (for describe) from the writer's view. */
void slb_plog_info(slb_plog *l, sl_partition_info *pi);

/* Reader-side scan (no lock): figures of a partition directory. */
int slb_partition_info(const char *pdir, sl_partition_info *pi, char *err);
/* Is the partition's writer lock free? (SL_EBUSY if held.) */
int slb_partition_probe_lock(const char *pdir);

/* ---- raw batches, for the protocol server (rawlog.c) ---- */

/* A segment file opened for reading, shared by reference: the protocol
 * server keeps it until the bytes it points at are sent, so a segment that
 * retention deletes meanwhile stays readable (its inode lives while open). */
typedef struct slb_rfile {
    int fd;
    int refs;
} slb_rfile;

static inline slb_rfile *slb_rfile_ref(slb_rfile *f)
{
    f->refs++;
    return f;
}
void slb_rfile_unref(slb_rfile *f); /* closes the file at the last reference; NULL ok */

/* One batch as it lies on disk: its header (producer fields filled), the
 * file and the position of its first byte; bytes is the whole batch when it
 * happened to lie in the cursor's read window (valid until the next call),
 * else NULL (the caller sends it from the file). */
typedef struct slb_raw_batch {
    slb_batch_hdr h;
    uint8_t raw[SLB_HDR_SIZE + SLB_PRODUCER_SIZE]; /* its header bytes (slb_hdr_len(&h)) */
    slb_rfile *f;
    int64_t pos;
    const uint8_t *bytes;
} slb_raw_batch;

#define SLB_RAW_WIN 16384 /* bytes of the cursor's header read window */

/* A cursor over the batches of a partition that the caller writes (l): it
 * walks the writer's in-memory segment list and offset index and reads
 * headers only (one pread per window: small batches come with it, large
 * ones are not read at all). Batches entirely below `next` are skipped;
 * the walk stops before the first batch whose base is >= bound. Used on the
 * writer's thread (the protocol server's loop); mu is taken briefly. */
typedef struct slb_raw {
    slb_plog *l;
    int64_t next, bound;
    slb_rfile *f; /* the current segment; NULL before the first */
    int64_t seg_base, seg_size, pos;
    uint32_t last_len; /* length of the last batch (chooses the read size) */
    int64_t win_pos;
    size_t win_len;
    uint8_t win[SLB_RAW_WIN];
    char err[SLB_ERRLEN];
} slb_raw;

/* Position rr at the batch holding offset (or the first after it). */
int slb_raw_seek(slb_raw *rr, slb_plog *l, int64_t offset, int64_t bound);
/* The next batch: 1 (b filled), 0 (none before bound), or a negative SL_E...
 * code (rr->err says why: an unreadable or corrupt segment). */
int slb_raw_next(slb_raw *rr, slb_raw_batch *b);
void slb_raw_close(slb_raw *rr);

/* read_committed: the aborted transactions of l (producer id, first
 * offset) that overlap offsets [from, to), as Kafka's Fetch lists them.
 * Built by one header scan of the log on first need, extended as the log
 * grows; *out (count *n) is valid until the next call. Writer's thread. */
typedef struct slb_abtxn {
    int64_t pid, first, last; /* last: the offset of its ABORT marker */
} slb_abtxn;
int slb_plog_aborted(slb_plog *l, int64_t from, int64_t to, const slb_abtxn **out, size_t *n,
                     char *err);
/* The earliest offset whose record timestamp is >= ts (*off; its timestamp
 * in *found_ts), through the time and offset indexes and a scan of one or
 * two index intervals; *off = -1 when there is none. Writer's thread. */
int slb_plog_offset_for_time(slb_plog *l, int64_t ts, int64_t *off, int64_t *found_ts, char *err);
void slb_abidx_free(slb_abidx *a);

#endif
