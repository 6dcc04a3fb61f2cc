/*
 * connectors/broker/segment.h - the lowest layer of a partition's storage
 * (private header): a segment's in-memory figures and indexes, the index
 * files, and the helpers that name, list and read segment files. Two files
 * implement it: segment.c (file names, listing, reading) and index.c (the
 * offset and time indexes, their files drawn there). It calls nothing above
 * it; the storage's dependencies point one way: clean.c -> log.c -> index.c
 * -> segment.c (clean.h, log.h and this header, in that order).
 *
 * Segment files are named by their base offset, zero-padded to 20 digits,
 * so that names sort as offsets do: NNNNNNNNNNNNNNNNNNNN.log (record batches,
 * batch.h), .index and .timeindex (index.c). The directory layout of a
 * broker is drawn in log.h.
 */
#ifndef SLUICE_BROKER_SEGMENT_H
#define SLUICE_BROKER_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "connectors/broker/batch.h"

#define SLB_PATH_CAP       4096 /* bytes of a path under the broker directory */
#define SLB_INDEX_INTERVAL 4096 /* bytes of log between offset index entries */
#define SLB_INDEX_HDR      32   /* bytes of an index file's header (index.c) */

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

/* ---- segment files (segment.c) ---- */

/* The path of segment base's file with extension ext ("log", "index", ...). */
void slb_seg_path(char *buf, size_t cap, const char *pdir, int64_t base, const char *ext);
/* Parse a file name "NNNNNNNNNNNNNNNNNNNN.ext" exactly; returns the base or -1. */
int64_t slb_seg_parse_name(const char *name, const char *ext);
/* Sorted base offsets of the .log files of pdir; *bases is malloc'ed. */
int slb_list_segments(const char *pdir, int64_t **bases, size_t *n);
/* pread exactly len bytes at off: 0, or -errno (-EIO if the file is shorter). */
int slb_read_full(int fd, void *buf, size_t len, off_t off);

/* ---- the partition checkpoint (segment.c) ---- */

/* A partition's log start offset and recovery point (file P/checkpoint,
 * drawn in segment.c), as Kafka's log-start-offset-checkpoint and
 * recovery-point-offset-checkpoint. An older value is always safe (it only
 * makes recovery check more), so the file is rewritten atomically after the
 * fact: at each roll, at a clean close, and before retention deletes. */
typedef struct slb_ckpt {
    int64_t log_start;      /* offsets below it were deleted on purpose (retention) */
    int64_t recovery_point; /* offsets below it were written, synced and checked */
} slb_ckpt;

/* Read pdir's checkpoint: 0, SL_ENOENT (none: a partition from before it
 * existed), SL_ECORRUPT (bad magic or CRC). */
int slb_ckpt_read(const char *pdir, slb_ckpt *c);
/* Write it atomically (temporary file, fsync, rename, fsync of pdir). */
int slb_ckpt_write(const char *pdir, const slb_ckpt *c);

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

#endif
