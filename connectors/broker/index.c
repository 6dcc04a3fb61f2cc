/*
 * connectors/broker/index.c - the sparse offset index and the time index of a
 * segment: kept in memory for every segment of an open partition, written to
 * files when a segment is sealed, loaded (or rebuilt by log.c's scan) when a
 * partition is opened, and read by readers to seek (reader.c).
 *
 * Layers: part of the segment layer (segment.h), below the writer: the
 * storage's dependencies point one way, clean.c -> log.c -> index.c ->
 * segment.c. This file calls only segment.c (file names, reads), batch.h,
 * crc32c and engine/base/; it includes neither log.h nor clean.h.
 *
 * Index files (.index and .timeindex), written when a segment is sealed, with
 * sli_fsio_write_file_atomic (temporary file, fsync, rename):
 *
 *   offset  size  field
 *   ------  ----  --------------------------------------------------------
 *        0     4  magic              "SLIX" (.index) or "SLTX" (.timeindex)
 *        4     4  version            1
 *        8     8  base_offset        int64, the segment's base offset
 *       16     8  log_size           bytes of .log this index describes
 *       24     4  count              uint32, number of entries
 *       28     4  crc                CRC-32C of the entries
 *       32     *  entries            .index: {uint32 rel_offset, uint32 pos}
 *                                    .timeindex: {int64 max_ts, uint32 rel_offset}
 *
 * The offset index is sparse: one entry per SLB_INDEX_INTERVAL bytes of log,
 * pointing at a batch start (rel_offset = batch base - segment base). A
 * time-index entry {ts, rel} says the batches before base+rel plus the batch
 * at base+rel have timestamps <= ts; its last entry is the segment's largest
 * timestamp (used by time retention). Index files are hints: an index whose
 * header, CRC or log_size does not match its log is rebuilt by scanning, and
 * readers check that an entry really points at a batch with that offset.
 * The active segment has no up-to-date index file: its index lives in the
 * writer's memory and is rebuilt by the recovery scan at every open.
 *
 * Invariants: entries are strictly increasing in rel (and pos, and, for the
 * time index, non-decreasing in ts); slb_index_load() refuses a file that
 * breaks them. The in-memory index of the active segment is always complete
 * for the batches written so far (slb_seg_note_batch() runs for each). A
 * sealed segment's time index ends with its largest timestamp
 * (slb_seg_seal_tidx()).
 */
#include "connectors/broker/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/base/crc32c.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"

/* ---- indexes --------------------------------------------------------------- */

static int push_idx(slb_segment *s, uint32_t rel, uint32_t pos)
{
    if (s->nidx == s->capidx) {
        size_t cap = s->capidx ? s->capidx * 2 : 64;
        slb_index_entry *n = realloc(s->idx, cap * sizeof *n);
        if (!n) return SL_ENOMEM;
        s->idx = n;
        s->capidx = cap;
    }
    s->idx[s->nidx].rel = rel;
    s->idx[s->nidx].pos = pos;
    s->nidx++;
    return 0;
}

static int push_tidx(slb_segment *s, int64_t ts, uint32_t rel)
{
    if (s->ntidx == s->captidx) {
        size_t cap = s->captidx ? s->captidx * 2 : 64;
        slb_time_entry *n = realloc(s->tidx, cap * sizeof *n);
        if (!n) return SL_ENOMEM;
        s->tidx = n;
        s->captidx = cap;
    }
    s->tidx[s->ntidx].ts = ts;
    s->tidx[s->ntidx].rel = rel;
    s->ntidx++;
    return 0;
}

/* Account for a batch written at pos of segment s (index entries, figures). */
int slb_seg_note_batch(slb_segment *s, int64_t pos, const slb_batch_hdr *h)
{
    uint32_t rel = (uint32_t)(h->base_offset - s->base);
    if (s->nidx == 0 || pos - s->last_index_pos >= SLB_INDEX_INTERVAL) {
        if (push_idx(s, rel, (uint32_t)pos) < 0) return SL_ENOMEM;
        s->last_index_pos = pos;
        if (h->max_ts > s->max_ts && push_tidx(s, h->max_ts, rel) < 0) return SL_ENOMEM;
    }
    if (h->max_ts > s->max_ts) s->max_ts = h->max_ts;
    s->next_offset = slb_next_offset(h);
    s->size = pos + h->length;
    return 0;
}

int slb_seg_seal_tidx(slb_segment *s)
{
    if (s->max_ts == INT64_MIN) return 0; /* empty: nothing to cover */
    if (s->ntidx > 0 && s->tidx[s->ntidx - 1].ts >= s->max_ts) return 0;
    return push_tidx(s, s->max_ts, (uint32_t)(s->next_offset - 1 - s->base));
}

void slb_seg_free(slb_segment *s)
{
    free(s->idx);
    free(s->tidx);
    s->idx = NULL;
    s->tidx = NULL;
    s->nidx = s->capidx = s->ntidx = s->captidx = 0;
}

void slb_seg_reset(slb_segment *s, int64_t base)
{
    slb_seg_free(s);
    s->base = base;
    s->size = 0;
    s->next_offset = base;
    s->max_ts = INT64_MIN;
    s->first_ms = 0;
    s->last_index_pos = 0;
}

int slb_index_write(const char *pdir, const slb_segment *s, bool time)
{
    size_t esz = time ? 12 : 8;
    size_t cnt = time ? s->ntidx : s->nidx;
    size_t len = SLB_INDEX_HDR + cnt * esz;
    uint8_t *buf = malloc(len);
    if (!buf) return SL_ENOMEM;
    memcpy(buf, time ? "SLTX" : "SLIX", 4);
    slb_put32(buf + 4, 1);
    slb_put64(buf + 8, (uint64_t)s->base);
    slb_put64(buf + 16, (uint64_t)s->size);
    slb_put32(buf + 24, (uint32_t)cnt);
    uint8_t *p = buf + SLB_INDEX_HDR;
    for (size_t i = 0; i < cnt; i++) {
        if (time) {
            slb_put64(p, (uint64_t)s->tidx[i].ts);
            slb_put32(p + 8, s->tidx[i].rel);
        } else {
            slb_put32(p, s->idx[i].rel);
            slb_put32(p + 4, s->idx[i].pos);
        }
        p += esz;
    }
    slb_put32(buf + 28, sli_crc32c(0, buf + SLB_INDEX_HDR, cnt * esz));
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, pdir, s->base, time ? "timeindex" : "index");
    int rc = sli_fsio_write_file_atomic(path, buf, len);
    free(buf);
    return rc < 0 ? sli_errno_code(rc) : 0;
}

int slb_index_load(const char *pdir, int64_t base, bool time, void **out, size_t *n,
                   int64_t *log_size)
{
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, pdir, base, time ? "timeindex" : "index");
    *out = NULL;
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? SL_ENOENT : SL_ECORRUPT;
    struct stat st;
    uint8_t *buf = NULL;
    int rc = SL_ECORRUPT;
    if (fstat(fd, &st) < 0 || st.st_size < SLB_INDEX_HDR || st.st_size > (1 << 30)) goto done;
    buf = malloc((size_t)st.st_size);
    if (!buf) {
        rc = SL_ENOMEM;
        goto done;
    }
    if (slb_read_full(fd, buf, (size_t)st.st_size, 0) < 0) goto done;
    size_t esz = time ? 12 : 8;
    uint32_t cnt = slb_get32(buf + 24);
    if (memcmp(buf, time ? "SLTX" : "SLIX", 4) || slb_get32(buf + 4) != 1 ||
        (int64_t)slb_get64(buf + 8) != base ||
        (uint64_t)st.st_size != SLB_INDEX_HDR + (uint64_t)cnt * esz ||
        sli_crc32c(0, buf + SLB_INDEX_HDR, cnt * esz) != slb_get32(buf + 28))
        goto done;
    int64_t lsz = (int64_t)slb_get64(buf + 16);
    void *v = malloc(cnt ? cnt * (time ? sizeof(slb_time_entry) : sizeof(slb_index_entry)) : 1);
    if (!v) {
        rc = SL_ENOMEM;
        goto done;
    }
    const uint8_t *p = buf + SLB_INDEX_HDR;
    for (uint32_t i = 0; i < cnt; i++, p += esz) {
        if (time) {
            slb_time_entry *t = v;
            t[i].ts = (int64_t)slb_get64(p);
            t[i].rel = slb_get32(p + 8);
            if (i && (t[i].rel <= t[i - 1].rel || t[i].ts < t[i - 1].ts)) goto bad;
        } else {
            slb_index_entry *x = v;
            x[i].rel = slb_get32(p);
            x[i].pos = slb_get32(p + 4);
            if ((int64_t)x[i].pos >= lsz) goto bad;
            if (i && (x[i].rel <= x[i - 1].rel || x[i].pos <= x[i - 1].pos)) goto bad;
        }
    }
    *out = v;
    *n = cnt;
    *log_size = lsz;
    rc = 0;
    goto done;
bad:
    free(v);
done:
    free(buf);
    close(fd);
    return rc;
}
