/*
 * connectors/broker/log.h - one partition of a topic on disk: segments,
 * indexes, the writer with its lock, recovery, retention and compaction
 * (private header). Three files implement it: log.c (segments, the writer,
 * recovery), index.c (offset and time indexes) and clean.c (retention and
 * compaction). The broker's storage depends only on engine/base/ and on the
 * public sluice/broker.h and sluice/error.h.
 *
 * Directory layout of a broker:
 *
 *   DIR/TOPIC/topic.meta                     topic metadata (broker.c)
 *   DIR/TOPIC/P/.lock                        writer lock of partition P (flock)
 *   DIR/TOPIC/P/00000000000000000000.log     segment: record batches (batch.h)
 *   DIR/TOPIC/P/00000000000000000000.index   sparse offset index (sealed segments)
 *   DIR/TOPIC/P/00000000000000000000.timeindex  time index (sealed segments)
 *   DIR/TOPIC/P/NNNNNNNNNNNNNNNNNNNN.log.cleaned compaction output being written
 *
 * Segments are named by their base offset, zero-padded to 20 digits, so that
 * names sort as offsets do. The segment with the largest base is the active
 * one; only it is ever appended to.
 */
#ifndef SLUICE_BROKER_LOG_H
#define SLUICE_BROKER_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "connectors/broker/batch.h"
#include "sluice/broker.h"

#define SLB_ERRLEN         512
#define SLB_PATH_CAP       4096         /* bytes of a path under the broker directory */
#define SLB_INDEX_INTERVAL 4096         /* bytes of log between offset index entries */
#define SLB_BATCH_TARGET   (512 * 1024) /* producer batches are written at this size */
#define SLB_INDEX_HDR      32

/* Sparse offset index entry: batch with base offset base+rel starts at pos. */
typedef struct slb_index_entry {
    uint32_t rel;
    uint32_t pos;
} slb_index_entry;

/* Time index entry: batches before offset base+rel have timestamps <= ts. */
typedef struct slb_time_entry {
    int64_t ts;
    uint32_t rel;
} slb_time_entry;

typedef struct slb_segment {
    int64_t base;
    int64_t size;        /* bytes of valid batches */
    int64_t next_offset; /* offset after its last batch (base if empty) */
    int64_t max_ts;      /* largest timestamp (INT64_MIN if empty) */
    int64_t first_ms;    /* when its first batch was appended (for segment_ms) */
    int64_t last_index_pos;
    slb_index_entry *idx;
    size_t nidx, capidx;
    slb_time_entry *tidx;
    size_t ntidx, captidx;
} slb_segment;

/* A partition opened for writing. Holds the partition's flock for its life.
 * mu guards everything below it against the broker's flusher thread; every
 * slb_plog_* function takes it. */
typedef struct slb_plog {
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
} slb_plog;

/* ---- helpers (log.c) ---- */

/* Format "topic T partition P: " prefixed messages into err (SLB_ERRLEN). */
void slb_seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Paths. */
void slb_seg_path(char *buf, size_t cap, const char *pdir, int64_t base, const char *ext);
/* Sorted base offsets of the .log files of pdir; *bases is malloc'ed. */
int slb_list_segments(const char *pdir, int64_t **bases, size_t *n);
/* pread exactly len bytes at off: 0, or -errno (-EIO if the file is shorter). */
int slb_read_full(int fd, void *buf, size_t len, off_t off);

/* ---- segments and their indexes (index.c) ---- */

/* Empty s and give it base offset base (no batches, max_ts INT64_MIN). */
void slb_seg_reset(slb_segment *s, int64_t base);
/* Free s's index arrays (s itself is not freed). */
void slb_seg_free(slb_segment *s);
/* Account for a batch written at byte pos of segment s: its figures and, every
 * SLB_INDEX_INTERVAL bytes, an offset and a time index entry. */
int slb_seg_note_batch(slb_segment *s, int64_t pos, const slb_batch_hdr *h);
/* Before sealing: make s's time index end with s's largest timestamp. */
int slb_seg_seal_tidx(slb_segment *s);
/* Write s's index file (time: .timeindex, else .index) atomically. */
int slb_index_write(const char *pdir, const slb_segment *s, bool time);
/* Read a segment's index file ("index" or "timeindex") if it is intact and
 * matches the log: entries malloc'ed into *out (count *n), covering the first
 * *log_size bytes of the log. Returns 0, SL_ENOENT (absent) or SL_ECORRUPT. */
int slb_index_load(const char *pdir, int64_t base, bool time, void **out, size_t *n,
                   int64_t *log_size);

/* ---- the writer (log.c; cleaning in clean.c) ---- */

/* Open partition pdir for writing: take its lock (blocking when wait, else
 * SL_EBUSY at once), recover it (see log.c), and leave it ready to append. */
int slb_plog_open(slb_plog **out, const char *pdir, const char *topic, int32_t partition,
                  const sl_topic_conf *conf, bool wait, char *err);
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
/* Write recs as one batch (after the pending one). */
int slb_plog_append(slb_plog *l, const sl_record *recs, size_t n, int64_t *base, char *err);
/* fdatasync if dirty and due (interval policy); for the flusher thread. */
int slb_plog_sync_due(slb_plog *l, int64_t mono_now, char *err);
/* Retention and (compacted topics) compaction of the sealed segments
 * (clean.c); now_ms 0 means the current wall-clock time. */
int slb_plog_clean(slb_plog *l, int64_t now_ms, char *err);
/* The same with mu held and nothing pending (log.c calls it at each roll). */
int slb_plog_clean_locked(slb_plog *l, int64_t now_ms, char *err);
/* Wait for the batch in flight and write the pending batch. mu held. */
int slb_plog_flush_locked(slb_plog *l, char *err);
/* Partition figures (for describe) from the writer's view. */
void slb_plog_info(slb_plog *l, sl_partition_info *pi);

/* Reader-side scan (no lock): figures of a partition directory. */
int slb_partition_info(const char *pdir, sl_partition_info *pi, char *err);
/* Is the partition's writer lock free? (SL_EBUSY if held.) */
int slb_partition_probe_lock(const char *pdir);

#endif
