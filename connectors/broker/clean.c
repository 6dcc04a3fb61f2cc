/*
 * connectors/broker/clean.c - retention and compaction of a partition's
 * sealed segments (the active segment is never touched), run by the writer
 * under its mu at each segment roll and by sl_topic_clean().
 *
 * Layers: the top of the storage (clean.c -> log.c -> index.c -> segment.c).
 * This file calls down into log.c (slb_plog, flushing) and the segment layer
 * (segment files, indexes); nothing below calls it. The writer reaches it at
 * each roll only through the after_roll hook (log.h), which the openers of
 * partition logs (broker.c, group.c) set to slb_plog_clean_locked.
 *
 * Retention deletes whole segments from the oldest, while the partition
 * without its oldest sealed segment still holds retention_bytes or more, or
 * that segment's largest record timestamp is older than now - retention_ms
 * (record timestamps are event times: a record of time 0 is old). The
 * log file goes first, then its index files (an index without its log is a
 * stray, removed at the next open).
 *
 * Compaction (compacted topics; sealed segments only; oldest first): a map
 * from XXH3-128 of each key to its latest offset is built over the sealed
 * segments; each segment is then rewritten keeping keyless records, the
 * latest record of each key, and tombstones younger than
 * tombstone_retention_ms. Batches keep their base offset and last offset
 * delta; empty batches are dropped, and a segment left empty is deleted. Crash
 * safety: the cleaned segment is written to BASE.log.cleaned and fsynced, the
 * old index files are unlinked, the cleaned file is renamed over BASE.log and
 * the directory fsynced, then new indexes are written. A crash leaves each
 * segment either old or new (never half of one); since segments are cleaned
 * oldest first and only records superseded by a later record of the same key
 * are dropped, every mix of old and new segments still holds the latest
 * record of each key.
 *
 * Transactions: a transactional batch's records are kept whole, markers
 * included, and supersede nothing (they stay out of the key map): an
 * aborted or still open transaction's record must not make a committed one
 * disappear, and a committed tombstone must not be dropped while the
 * records it deletes are kept. Compacting transactional records by their
 * fate (Kafka's cleaner drops aborted ones) is not done.
 *
 * Invariants: only sealed segments are read or rewritten, always under the
 * writer's mu; a failed step leaves every segment either old or new and the
 * in-memory view matching the disk; cleaning is housekeeping, so a roll does
 * not fail because cleaning did (it is retried at the next roll).
 */
#include "connectors/broker/clean.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/base/clock.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"

/* The text of an SL_E code, from error.h's X-macro (not sl_strerror(): the
 * broker's storage links nothing of the engine but engine/base/). */
static const char *code_text(int code)
{
    switch (code) {
#define SLB_TEXT_(name, value, text) \
    case value: return text;
        SL_ERRNO_MAP(SLB_TEXT_)
#undef SLB_TEXT_
    default: return "error";
    }
}

/* ---- retention ----------------------------------------------------------------- */

static int delete_segment_files(const char *pdir, int64_t base)
{
    char path[SLB_PATH_CAP];
    int rc = 0, r;
    /* The log first: index files without a log are strays, removed at open. */
    slb_seg_path(path, sizeof path, pdir, base, "log");
    if ((r = sli_fsio_unlink(path)) < 0 && r != -ENOENT) return sli_errno_code(r);
    slb_seg_path(path, sizeof path, pdir, base, "index");
    if ((r = sli_fsio_unlink(path)) < 0 && r != -ENOENT) rc = sli_errno_code(r);
    slb_seg_path(path, sizeof path, pdir, base, "timeindex");
    if ((r = sli_fsio_unlink(path)) < 0 && r != -ENOENT) rc = sli_errno_code(r);
    return rc;
}

static void drop_segment(slb_plog *l, size_t i)
{
    slb_seg_free(&l->segs[i]);
    memmove(&l->segs[i], &l->segs[i + 1], (l->nsegs - i - 1) * sizeof l->segs[0]);
    l->nsegs--;
}

static int retention_locked(slb_plog *l, int64_t now, char *err)
{
    int64_t total = 0;
    for (size_t i = 0; i < l->nsegs; i++) total += l->segs[i].size;
    bool any = false;
    while (l->nsegs > 1) {
        slb_segment *s = &l->segs[0];
        bool by_age = l->conf.retention_ms >= 0 &&
                      (s->max_ts == INT64_MIN || s->max_ts < now - l->conf.retention_ms);
        bool by_size = l->conf.retention_bytes >= 0 && total - s->size >= l->conf.retention_bytes;
        if (!by_age && !by_size) break;
        /* The log start moves first: a crash after it leaves segments below
         * it (removed at the next retention), never a segment missing above
         * it that readers would take for a gap. */
        int rc = slb_plog_set_log_start(l, l->segs[1].base, err);
        if (rc < 0) return rc;
        rc = delete_segment_files(l->dir, s->base);
        if (rc < 0) {
            slb_seterr(err, "topic '%s' partition %d: cannot delete segment %020" PRId64, l->topic,
                       l->partition, s->base);
            return rc;
        }
        total -= s->size;
        drop_segment(l, 0);
        any = true;
    }
    if (any && l->conf.fsync != SL_FSYNC_NEVER) (void)sli_fsio_fsync_dir(l->dir);
    return 0;
}

/* ---- compaction ------------------------------------------------------------------ */

typedef struct keymap_slot {
    XXH128_hash_t h;
    int64_t offset; /* -1: empty */
} keymap_slot;

typedef struct keymap {
    keymap_slot *v;
    size_t cap, n;
} keymap;

static keymap_slot *km_find(keymap *m, XXH128_hash_t h)
{
    size_t i = (size_t)h.low64 & (m->cap - 1);
    for (;;) {
        keymap_slot *s = &m->v[i];
        if (s->offset < 0 || (s->h.low64 == h.low64 && s->h.high64 == h.high64)) return s;
        i = (i + 1) & (m->cap - 1);
    }
}

static int km_put(keymap *m, XXH128_hash_t h, int64_t off)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 1024;
        keymap_slot *nv = malloc(ncap * sizeof *nv);
        if (!nv) return SL_ENOMEM;
        for (size_t i = 0; i < ncap; i++) nv[i].offset = -1;
        keymap old = *m;
        m->v = nv;
        m->cap = ncap;
        m->n = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.v[i].offset >= 0) {
                *km_find(m, old.v[i].h) = old.v[i];
                m->n++;
            }
        free(old.v);
    }
    keymap_slot *s = km_find(m, h);
    if (s->offset < 0) m->n++;
    s->h = h;
    if (off > s->offset) s->offset = off;
    return 0;
}

/* Read a whole sealed segment into *buf (malloc'ed). */
static int read_segment(slb_plog *l, const slb_segment *s, uint8_t **buf, char *err)
{
    char path[SLB_PATH_CAP];
    slb_seg_path(path, sizeof path, l->dir, s->base, "log");
    *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        slb_seterr(err, "topic '%s' partition %d: cannot open %s: %s", l->topic, l->partition, path,
                   strerror(errno));
        return sli_errno_code(-errno);
    }
    *buf = malloc(s->size ? (size_t)s->size : 1);
    int rc = *buf ? slb_read_full(fd, *buf, (size_t)s->size, 0) : -ENOMEM;
    close(fd);
    if (rc < 0) {
        free(*buf);
        *buf = NULL;
        slb_seterr(err, "topic '%s' partition %d: cannot read %s", l->topic, l->partition, path);
        return sli_errno_code(rc);
    }
    return 0;
}

/* Visit the records of a segment image; corruption is an error naming the
 * offset, since compaction must never drop or keep records it cannot read. */
typedef int (*rec_fn)(void *ctx, const slb_batch_hdr *h, const slb_rec *r);

static int for_each_record(slb_plog *l, const slb_segment *s, const uint8_t *buf, rec_fn fn,
                           void *ctx, char *err)
{
    int64_t pos = 0;
    int64_t expect = s->base;
    while (pos < s->size) {
        slb_batch_hdr h;
        int rc = slb_batch_check(buf + pos, (size_t)(s->size - pos), &h, true);
        if (rc < 0 || h.base_offset < expect) goto corrupt;
        slb_iter it;
        slb_rec r;
        slb_iter_init(&it, buf + pos, &h);
        while ((rc = slb_iter_next(&it, &r)) == 1)
            if ((rc = fn(ctx, &h, &r)) < 0) return rc;
        if (rc < 0) goto corrupt;
        if (fn && (rc = fn(ctx, &h, NULL)) < 0) return rc; /* end of batch */
        expect = slb_next_offset(&h);
        pos += h.length;
        continue;
    corrupt:
        slb_seterr(err,
                   "topic '%s' partition %d: corrupt batch at offset %" PRId64
                   " (segment %020" PRId64 ".log, byte %" PRId64 "); compaction skipped",
                   l->topic, l->partition, expect, s->base, pos);
        return SL_ECORRUPT;
    }
    return 0;
}

static int map_fn(void *ctx, const slb_batch_hdr *h, const slb_rec *r)
{
    /* Transactional records (aborted, or not decided yet) supersede nothing. */
    if (!r || r->key_len < 0 || (h->attributes & SLB_ATTR_TRANSACTIONAL)) return 0;
    return km_put(ctx, XXH3_128bits(r->key, (size_t)r->key_len), r->offset);
}

typedef struct clean_ctx {
    keymap *map;
    int64_t tomb_before;
    slb_builder bld;
    bool started;
    uint8_t *out;
    size_t out_len, out_cap;
    slb_segment seg; /* the cleaned segment's figures and indexes */
    size_t dropped;
} clean_ctx;

static int clean_fn(void *vctx, const slb_batch_hdr *h, const slb_rec *r)
{
    clean_ctx *c = vctx;
    if (!c->started) {
        slb_builder_reset(&c->bld, h->base_offset);
        /* A producer's batch keeps its producer fields (batch.h). */
        if ((h->attributes & SLB_ATTR_PRODUCER) &&
            slb_builder_set_producer(&c->bld, h->producer_id, (int16_t)h->producer_epoch,
                                     h->base_sequence) < 0)
            return SL_ENOMEM;
        c->bld.txn_attrs = h->attributes & (SLB_ATTR_TRANSACTIONAL | SLB_ATTR_CONTROL);
        c->started = true;
    }
    if (r) {
        bool keep = true;
        /* Markers, and transactional records (whose fate compaction does not
         * look up), are kept. */
        if (h->attributes & SLB_ATTR_TRANSACTIONAL) return slb_builder_add_raw(&c->bld, r);
        if (r->key_len >= 0) {
            keymap_slot *s = km_find(c->map, XXH3_128bits(r->key, (size_t)r->key_len));
            if (s->offset >= 0 && s->offset > r->offset) keep = false;
        }
        if (keep && r->value_len < 0 && r->timestamp < c->tomb_before) keep = false;
        if (!keep) {
            c->dropped++;
            return 0;
        }
        return slb_builder_add_raw(&c->bld, r);
    }
    /* End of an input batch: emit what was kept of it. */
    c->started = false;
    if (c->bld.count == 0) return 0;
    size_t len = slb_builder_finish(&c->bld, h->last_offset_delta);
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : (1 << 20);
        while (cap < c->out_len + len) cap *= 2;
        uint8_t *n = realloc(c->out, cap);
        if (!n) return SL_ENOMEM;
        c->out = n;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, c->bld.buf, len);
    slb_batch_hdr nh;
    slb_hdr_parse(c->bld.buf, &nh);
    int rc = slb_seg_note_batch(&c->seg, (int64_t)c->out_len, &nh);
    c->out_len += len;
    return rc;
}

/* Rewrite sealed segment i per the map. mu held. */
static int clean_segment(slb_plog *l, size_t i, keymap *map, int64_t now, bool *removed, char *err)
{
    slb_segment *s = &l->segs[i];
    *removed = false;
    uint8_t *buf = NULL;
    int rc = read_segment(l, s, &buf, err);
    if (rc < 0) return rc;
    clean_ctx c;
    memset(&c, 0, sizeof c);
    c.map = map;
    c.tomb_before = now - l->conf.tombstone_retention_ms;
    slb_builder_init(&c.bld);
    slb_seg_reset(&c.seg, s->base);
    int fd = -1;
    char cleaned[SLB_PATH_CAP + 16], logp[SLB_PATH_CAP], path[SLB_PATH_CAP];
    rc = for_each_record(l, s, buf, clean_fn, &c, err);
    free(buf);
    buf = NULL;
    if (rc < 0 || c.dropped == 0) goto out;

    slb_seg_path(logp, sizeof logp, l->dir, s->base, "log");
    snprintf(cleaned, sizeof cleaned, "%s.cleaned", logp);
    /* 1. The cleaned copy, complete and synced, beside the old segment. */
    fd = sli_fsio_open(cleaned, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        rc = sli_errno_code(fd);
        goto io_fail;
    }
    if ((rc = sli_fsio_write(fd, c.out, c.out_len)) < 0 || (rc = sli_fsio_fsync(fd)) < 0) {
        rc = sli_errno_code(rc);
        goto io_fail;
    }
    close(fd);
    fd = -1;
    /* 2. Old indexes go first: an index never describes the wrong log. */
    slb_seg_path(path, sizeof path, l->dir, s->base, "index");
    if ((rc = sli_fsio_unlink(path)) < 0 && rc != -ENOENT) goto io_fail_errno;
    slb_seg_path(path, sizeof path, l->dir, s->base, "timeindex");
    if ((rc = sli_fsio_unlink(path)) < 0 && rc != -ENOENT) goto io_fail_errno;
    /* 3. Swap in the cleaned log (or drop an emptied segment). */
    if (c.out_len == 0) {
        if ((rc = sli_fsio_unlink(logp)) < 0) goto io_fail_errno;
        (void)sli_fsio_unlink(cleaned);
    } else if ((rc = sli_fsio_rename(cleaned, logp)) < 0) {
        goto io_fail_errno;
    }
    if ((rc = sli_fsio_fsync_dir(l->dir)) < 0) goto io_fail_errno;
    /* 4. New indexes (a crash before this only costs a rebuild). */
    if (c.out_len == 0) {
        slb_seg_free(&c.seg);
        drop_segment(l, i);
        *removed = true;
    } else {
        c.seg.size = (int64_t)c.out_len;
        c.seg.first_ms = s->first_ms;
        if (slb_seg_seal_tidx(&c.seg) < 0) {
            rc = SL_ENOMEM;
            goto out;
        }
        slb_seg_free(s);
        *s = c.seg;
        memset(&c.seg, 0, sizeof c.seg);
        if ((rc = slb_index_write(l->dir, s, false)) < 0 ||
            (rc = slb_index_write(l->dir, s, true)) < 0) {
            slb_seterr(err, "topic '%s' partition %d: cannot write index of %020" PRId64, l->topic,
                       l->partition, s->base);
            goto out;
        }
    }
    rc = 0;
    goto out;

io_fail_errno:
    rc = sli_errno_code(rc);
io_fail:
    slb_seterr(err, "topic '%s' partition %d: compaction of segment %020" PRId64 " failed (%s)",
               l->topic, l->partition, s->base, code_text(rc));
    if (fd >= 0) close(fd);
    fd = -1;
    (void)unlink(cleaned);
out:
    if (fd >= 0) close(fd);
    slb_seg_free(&c.seg);
    slb_builder_free(&c.bld);
    free(c.out);
    return rc;
}

static int compact_locked(slb_plog *l, int64_t now, char *err)
{
    if (!l->conf.compact || l->nsegs < 2) return 0;
    keymap map = {0};
    int rc = 0;
    for (size_t i = 0; i + 1 < l->nsegs && rc == 0; i++) {
        uint8_t *buf;
        if ((rc = read_segment(l, &l->segs[i], &buf, err)) < 0) break;
        rc = for_each_record(l, &l->segs[i], buf, map_fn, &map, err);
        free(buf);
    }
    for (size_t i = 0; rc == 0 && i + 1 < l->nsegs;) {
        bool removed;
        rc = clean_segment(l, i, &map, now, &removed, err);
        if (!removed) i++;
    }
    free(map.v);
    return rc;
}

int slb_plog_clean_locked(slb_plog *l, int64_t now, char *err)
{
    int rc = retention_locked(l, now, err);
    if (rc == 0) rc = compact_locked(l, now, err);
    return rc;
}

int slb_plog_clean(slb_plog *l, int64_t now_ms, char *err)
{
    pthread_mutex_lock(&l->mu);
    int rc = slb_plog_flush_locked(l, err);
    if (rc == 0) rc = slb_plog_clean_locked(l, now_ms ? now_ms : sli_clock_wall_ms(), err);
    pthread_mutex_unlock(&l->mu);
    return rc;
}
