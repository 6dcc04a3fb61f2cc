/*
 * connectors/broker/rawlog.c - a partition's batches as they lie on disk,
 * for the protocol server (log.h, "raw batches"): a header-only cursor over
 * the writer's segments, the aborted-transaction index that read_committed
 * fetches list, and the lookup of an offset by timestamp.
 *
 * The cursor (slb_raw) never decodes a record. It finds the segment and the
 * byte position of an offset through the writer's in-memory segment list and
 * sparse offset index (index.c; both complete for every batch written, the
 * active segment's included), then reads batch headers with one pread per
 * window of SLB_RAW_WIN bytes: a run of small batches arrives with one call
 * (the caller may copy them from the window), while after a batch larger
 * than the window only the next header (64 bytes) is read, so large batches
 * are never read here at all and go from the file to the socket (sendfile).
 * The CRC is not checked: the bytes are passed on with a CRC derived from
 * the stored one (kapi_fetch.c), so the client checks it, and a batch that
 * rotted on disk fails there, never silently.
 *
 * Invariants: a returned batch lies wholly inside the valid bytes of its
 * segment as the writer counts them (seg_size, read under mu), so it is
 * complete and was written by this writer or checked by its recovery; its
 * base is >= its segment's base and < bound; cursors hold a reference to
 * their segment file, and the batches they return keep it valid only as
 * long as the caller takes its own reference (slb_rfile_ref).
 *
 * The aborted-transaction index (slb_abidx, hung on the writer, freed with
 * it, so a deleted topic takes its index with it) is built by one header
 * walk from the log start and extended to the log end on each use: it
 * tracks, per producer id, the first offset of its open transaction, and on
 * an ABORT marker records (producer id, first offset, marker offset). A
 * transaction begun before the log start is seen from its first batch still
 * stored. Entries are never removed (24 bytes per aborted transaction).
 *
 * Threads: everything here runs on the writer's thread (the server's loop);
 * the writer's mu is taken only to read the segment list, which the
 * flusher thread may read at the same time.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connectors/broker/log.h"

struct slb_abidx {
    slb_abtxn *v; /* aborted transactions, in marker order */
    size_t n, cap;
    slb_abtxn *open; /* open transactions: pid, first (last unused) */
    size_t nopen, capopen;
    int64_t scanned; /* offsets below it are indexed */
    slb_abtxn *res;  /* the last answer */
    size_t nres, capres;
};

void slb_rfile_unref(slb_rfile *f)
{
    if (!f || --f->refs > 0) return;
    close(f->fd);
    free(f);
}

void slb_abidx_free(slb_abidx *a)
{
    if (!a) return;
    free(a->v);
    free(a->open);
    free(a->res);
    free(a);
}

/* ---- the cursor ------------------------------------------------------------- */

/* Open segment base of rr->l as rr's current file. mu not held. */
static int open_seg(slb_raw *rr, int64_t base, int64_t size)
{
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, rr->l->dir, base, "log");
    slb_rfile *f = malloc(sizeof *f);
    int fd = f ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        int e = f ? errno : ENOMEM;
        free(f);
        slb_seterr(rr->err, "topic '%s' partition %d: cannot open %s: %s", rr->l->topic,
                   rr->l->partition, path, strerror(e));
        return e == ENOENT ? SL_ENOENT : e == ENOMEM ? SL_ENOMEM : SL_EIO;
    }
    f->fd = fd;
    f->refs = 1;
    slb_rfile_unref(rr->f);
    rr->f = f;
    rr->seg_base = base;
    rr->seg_size = size;
    rr->win_len = 0;
    return 0;
}

int slb_raw_seek(slb_raw *rr, slb_plog *l, int64_t offset, int64_t bound)
{
    rr->l = l;
    rr->f = NULL;
    rr->next = offset;
    rr->bound = bound;
    rr->last_len = 0;
    rr->win_len = 0;
    rr->err[0] = 0;
    pthread_mutex_lock(&l->mu);
    size_t i = 0;
    while (i + 1 < l->nsegs && l->segs[i + 1].base <= offset) i++;
    const slb_segment *sg = &l->segs[i];
    int64_t base = sg->base, size = sg->size, pos = 0;
    /* the last index entry at or below the offset: a batch starts there */
    size_t lo = 0, hi = sg->nidx;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (base + (int64_t)sg->idx[mid].rel <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0) pos = sg->idx[lo - 1].pos;
    pthread_mutex_unlock(&l->mu);
    rr->pos = pos;
    return open_seg(rr, base, size);
}

void slb_raw_close(slb_raw *rr)
{
    slb_rfile_unref(rr->f);
    rr->f = NULL;
}

/* At the end of the current segment's valid bytes: its size again (the
 * active one grows), else the next segment. 1: more to read, 0: the end. */
static int advance(slb_raw *rr)
{
    slb_plog *l = rr->l;
    pthread_mutex_lock(&l->mu);
    int64_t nbase = -1, nsize = 0;
    for (size_t i = 0; i < l->nsegs; i++) {
        if (l->segs[i].base == rr->seg_base) rr->seg_size = l->segs[i].size;
        if (l->segs[i].base > rr->seg_base) {
            nbase = l->segs[i].base;
            nsize = l->segs[i].size;
            break;
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (rr->pos < rr->seg_size) return 1;
    if (nbase < 0) return 0;
    int rc = open_seg(rr, nbase, nsize);
    if (rc < 0) return rc;
    rr->pos = 0;
    return 1;
}

int slb_raw_next(slb_raw *rr, slb_raw_batch *b)
{
    if (!rr->f) return SL_EINVAL;
    for (;;) {
        if (rr->pos >= rr->seg_size) {
            int rc = advance(rr);
            if (rc <= 0) return rc;
            continue;
        }
        /* the header in the window, else a read: a whole window after small
         * batches, only the header after a large one */
        int64_t wend = rr->win_pos + (int64_t)rr->win_len;
        if (rr->win_len == 0 || rr->pos < rr->win_pos ||
            rr->pos + SLB_HDR_SIZE + SLB_PRODUCER_SIZE > wend) {
            size_t want = rr->last_len > SLB_RAW_WIN / 2 ? 64 : SLB_RAW_WIN;
            if ((int64_t)want > rr->seg_size - rr->pos) want = (size_t)(rr->seg_size - rr->pos);
            ssize_t k;
            do k = pread(rr->f->fd, rr->win, want, (off_t)rr->pos);
            while (k < 0 && errno == EINTR);
            if (k < (ssize_t)SLB_HDR_SIZE) {
                rr->win_len = 0;
                slb_seterr(rr->err,
                           "topic '%s' partition %d: segment %020" PRId64
                           ".log: cannot read a batch header at byte %" PRId64 ": %s",
                           rr->l->topic, rr->l->partition, rr->seg_base, rr->pos,
                           k < 0 ? strerror(errno) : "file shorter than the log says");
                return k < 0 ? SL_EIO : SL_ECORRUPT;
            }
            rr->win_pos = rr->pos;
            rr->win_len = (size_t)k;
        }
        const uint8_t *p = rr->win + (rr->pos - rr->win_pos);
        size_t in_win = (size_t)(rr->win_pos + (int64_t)rr->win_len - rr->pos);
        slb_batch_hdr h;
        bool bad = slb_hdr_parse(p, &h) < 0 || h.base_offset < rr->seg_base ||
                   rr->pos + (int64_t)h.length > rr->seg_size;
        if (!bad && (h.attributes & SLB_ATTR_PRODUCER)) {
            if (in_win < SLB_HDR_SIZE + SLB_PRODUCER_SIZE) {
                bad = true;
            } else {
                const uint8_t *q = p + SLB_HDR_SIZE;
                h.producer_id = (int64_t)slb_get64(q);
                h.producer_epoch = (int16_t)(q[8] | q[9] << 8);
                h.base_sequence = (int32_t)slb_get32(q + 12);
            }
        }
        if (bad) {
            slb_seterr(rr->err,
                       "topic '%s' partition %d: corrupt batch header in segment %020" PRId64
                       ".log at byte %" PRId64,
                       rr->l->topic, rr->l->partition, rr->seg_base, rr->pos);
            return SL_ECORRUPT;
        }
        if (h.base_offset >= rr->bound) return 0;
        int64_t pos = rr->pos;
        rr->pos += h.length;
        rr->last_len = h.length;
        if (slb_next_offset(&h) <= rr->next) continue; /* wholly before the wanted offset */
        b->h = h;
        memcpy(b->raw, p, slb_hdr_len(&h));
        b->f = rr->f;
        b->pos = pos;
        b->bytes = in_win >= h.length ? p : NULL;
        return 1;
    }
}

/* ---- aborted transactions ---------------------------------------------------- */

static int push(slb_abtxn **v, size_t *n, size_t *cap, int64_t pid, int64_t first, int64_t last)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        slb_abtxn *nv = realloc(*v, nc * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = (slb_abtxn){pid, first, last};
    return 0;
}

/* The marker type of control batch b (SLB_MARKER_*) or SL_ECORRUPT. */
static int marker_type(const slb_raw_batch *b)
{
    uint8_t buf[256];
    const uint8_t *p = b->bytes;
    if (!p) {
        if (b->h.length > sizeof buf) return SL_ECORRUPT;
        if (pread(b->f->fd, buf, b->h.length, (off_t)b->pos) != (ssize_t)b->h.length)
            return SL_ECORRUPT;
        p = buf;
    }
    slb_iter it;
    slb_rec rec;
    slb_iter_init(&it, p, &b->h);
    return slb_iter_next(&it, &rec) == 1 ? slb_marker_decode(&rec) : SL_ECORRUPT;
}

int slb_plog_aborted(slb_plog *l, int64_t from, int64_t to, const slb_abtxn **out, size_t *n,
                     char *err)
{
    *out = NULL;
    *n = 0;
    slb_abidx *a = l->abidx;
    if (!a) {
        if (!(a = calloc(1, sizeof *a))) goto nomem;
        l->abidx = a;
        l->abidx_free = slb_abidx_free;
    }
    pthread_mutex_lock(&l->mu);
    int64_t end = l->next_offset;
    pthread_mutex_unlock(&l->mu);
    int rc = 0;
    if (a->scanned < end) {
        slb_raw *rr = malloc(sizeof *rr);
        if (!rr) goto nomem;
        if ((rc = slb_raw_seek(rr, l, a->scanned, end)) < 0) goto scan_fail;
        slb_raw_batch b;
        while ((rc = slb_raw_next(rr, &b)) == 1) {
            uint8_t at = b.h.attributes;
            if (at & SLB_ATTR_TRANSACTIONAL) {
                size_t i = 0;
                while (i < a->nopen && a->open[i].pid != b.h.producer_id) i++;
                if (at & SLB_ATTR_CONTROL) {
                    int type = marker_type(&b);
                    if (type < 0) {
                        slb_seterr(rr->err,
                                   "topic '%s' partition %d: corrupt transaction marker at "
                                   "offset %" PRId64,
                                   l->topic, l->partition, b.h.base_offset);
                        rc = SL_ECORRUPT;
                        break;
                    }
                    if (i < a->nopen) {
                        if (type == SLB_MARKER_ABORT &&
                            (rc = push(&a->v, &a->n, &a->cap, b.h.producer_id, a->open[i].first,
                                       b.h.base_offset)) < 0)
                            break;
                        a->open[i] = a->open[--a->nopen];
                    }
                } else if (i == a->nopen && (rc = push(&a->open, &a->nopen, &a->capopen,
                                                       b.h.producer_id, b.h.base_offset, -1)) < 0) {
                    break;
                }
            }
            a->scanned = slb_next_offset(&b.h);
        }
    scan_fail:
        if (rc < 0) {
            if (rc == SL_ENOMEM)
                slb_seterr(err, "out of memory");
            else
                memcpy(err, rr->err, SLB_ERRLEN);
        }
        slb_raw_close(rr);
        free(rr);
        if (rc < 0) return rc;
        if (a->scanned < end) a->scanned = end; /* the walk ended at the end */
    }
    /* Markers come in offset order: the first entry whose marker is at or
     * after from, then every one that began before to. */
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a->v[mid].last < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* of those, the ones that began before to, copied to the result */
    a->nres = 0;
    for (size_t i = lo; i < a->n; i++)
        if (a->v[i].first < to &&
            push(&a->res, &a->nres, &a->capres, a->v[i].pid, a->v[i].first, a->v[i].last) < 0)
            goto nomem;
    *out = a->res;
    *n = a->nres;
    return 0;
nomem:
    slb_seterr(err, "out of memory");
    return SL_ENOMEM;
}

/* ---- offset by timestamp ------------------------------------------------------ */

int slb_plog_offset_for_time(slb_plog *l, int64_t ts, int64_t *off, int64_t *found_ts, char *err)
{
    *off = -1;
    *found_ts = -1;
    /* The first segment whose largest timestamp reaches ts, and in it the
     * last time-index entry below ts: every batch before that entry's
     * batch has smaller timestamps (an entry is made only when the
     * segment's largest timestamp grows), so the scan starts there. */
    pthread_mutex_lock(&l->mu);
    int64_t start = -1, end = l->next_offset;
    for (size_t i = 0; i < l->nsegs && start < 0; i++) {
        const slb_segment *sg = &l->segs[i];
        if (sg->max_ts == INT64_MIN || sg->max_ts < ts) continue;
        start = sg->base;
        for (size_t j = 0; j < sg->ntidx && sg->tidx[j].ts < ts; j++)
            start = sg->base + sg->tidx[j].rel;
    }
    pthread_mutex_unlock(&l->mu);
    if (start < 0) return 0;
    slb_raw *rr = malloc(sizeof *rr);
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc;
    if (!rr) {
        slb_seterr(err, "out of memory");
        return SL_ENOMEM;
    }
    if ((rc = slb_raw_seek(rr, l, start, end)) < 0) goto fail;
    slb_raw_batch b;
    while ((rc = slb_raw_next(rr, &b)) == 1) {
        if (b.h.max_ts < ts || (b.h.attributes & SLB_ATTR_CONTROL) || b.h.record_count == 0)
            continue;
        const uint8_t *p = b.bytes;
        if (!p) {
            if (b.h.length > cap) {
                uint8_t *nb = realloc(buf, b.h.length);
                if (!nb) {
                    rc = SL_ENOMEM;
                    slb_seterr(rr->err, "out of memory");
                    goto fail;
                }
                buf = nb;
                cap = b.h.length;
            }
            if (pread(b.f->fd, buf, b.h.length, (off_t)b.pos) != (ssize_t)b.h.length) {
                rc = SL_EIO;
                slb_seterr(rr->err,
                           "topic '%s' partition %d: cannot read the batch at offset %" PRId64,
                           l->topic, l->partition, b.h.base_offset);
                goto fail;
            }
            p = buf;
        }
        slb_iter it;
        slb_rec rec;
        slb_iter_init(&it, p, &b.h);
        int c;
        while ((c = slb_iter_next(&it, &rec)) == 1)
            if (rec.timestamp >= ts) {
                *off = rec.offset;
                *found_ts = rec.timestamp;
                rc = 0;
                goto done;
            }
        if (c < 0) {
            rc = SL_ECORRUPT;
            slb_seterr(rr->err,
                       "topic '%s' partition %d: malformed record in the batch at offset %" PRId64,
                       l->topic, l->partition, b.h.base_offset);
            goto fail;
        }
    }
    if (rc < 0) goto fail;
done:
    slb_raw_close(rr);
    free(rr);
    free(buf);
    return 0;
fail:
    memcpy(err, rr->err, SLB_ERRLEN);
    slb_raw_close(rr);
    free(rr);
    free(buf);
    return rc;
}
