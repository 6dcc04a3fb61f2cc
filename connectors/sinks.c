/*
 * connectors/sinks.c - sinks that write text (stdout or a file) and a sink
 * that collects records in memory.
 *
 * The write sink formats a whole batch into one buffer and writes it with
 * one write(2) on a descriptor opened O_APPEND, so lines of several
 * instances never interleave (for regular files Linux appends each write
 * atomically; standard output is written under a process-wide lock, the one
 * piece of shared state here, because it is one shared descriptor). Instance
 * 0 is opened first (the engine opens instances in order) and truncates the
 * file; the others append.
 *
 * A reader that closed the output (write(2) fails with EPIPE: `sluice run
 * generate | head -1`) is reported as SL_EPIPE, not SL_EIO, so that a program
 * can end quietly as other Unix tools do, while every other write error stays
 * an error. The process must ignore SIGPIPE (or handle it) for write(2) to
 * return EPIPE rather than kill it.
 *
 * Exactly-once (sl_ctx_guarantee, with checkpoints): the file is a
 * two-phase-commit sink. Formatted batches go to the instance's buffer of the
 * current epoch (under the instance's mutex, once per batch), never to the
 * file; snapshot() on checkpoint n's barrier closes the epoch as pending
 * under n and puts every pending epoch's bytes in the snapshot; commit(n), on
 * the coordinator thread, appends the pending epochs <= n to the file and
 * records what the file holds in a sidecar, FILE.sluice-commit (written
 * atomically: temporary file, fsync, rename), so that the file shows only the
 * output of completed checkpoints:
 *
 *   offset  size  field
 *   0       4     magic "SLFC"
 *   4       4     CRC-32C of bytes [8, end)
 *   8       8     c: the checkpoint whose output was being committed
 *   16      8     L: the file's committed length
 *   24      4     n: instances (of the checkpoint's run) whose output of c
 *                 is in the file
 *   28      4*n   their numbers
 *
 * Commits and restores of all instances run one after the other on one
 * thread (the coordinator, or start), so the sidecar has one writer at a time.
 * Restart from checkpoint m: each instance's restore() gets its snapshot
 * (old instance j's) and first cuts the file back to L (an append that a
 * crash interrupted is dropped); if the sidecar says j's output of m is in
 * the file it stops there, else it appends the snapshot's pending bytes and
 * records (m, L', S + {j}). Replaying those bytes is the roll forward;
 * cutting back to L is the roll back. A fresh exactly-once start empties the
 * file and removes the sidecar. Standard output cannot take back what it
 * wrote, so it is refused under exactly-once.
 *
 * Snapshot (write sink, exactly-once), little-endian:
 *
 *   offset  size  field
 *   0       4     magic "SLFW"
 *   4       4     the instance's number in the run that took it
 *   8       4     k: pending epochs
 *   12      ...   k times: checkpoint id u64, byte length u64, the bytes
 *
 * The collector copies records into its own arena under its mutex, a batch
 * at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "engine/base/le.h"
#include "engine/base/crc32c.h"
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"
#include "sluice/connectors.h"
#include "sluice/error.h"
#include "sluice/operator.h"

static pthread_mutex_t stdout_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct epoch {
    uint64_t id;
    sl_buf bytes;
} epoch;

typedef struct writer {
    int fd; /* -1 once closed by write_end */
    int is_stdout;
    sl_buf buf;
    char path[256]; /* for messages (cut if longer) */
    /* exactly-once */
    int eo;
    int instance;
    pthread_mutex_t lock; /* cur and pending: process vs commit */
    sl_buf cur;           /* the current epoch's bytes */
    int n_pending;
    epoch *pending; /* closed epochs, by increasing id */
    char side[300]; /* FILE.sluice-commit */
} writer;

/* --- the sidecar (exactly-once) ----------------------------------------------------------- */

#define SIDE_MAGIC "SLFC"
#define SIDE_MAXI  4096

typedef struct sidecar {
    uint64_t chk, len;
    uint32_t n;
    uint32_t inst[SIDE_MAXI];
} sidecar;

/* 0 (missing: chk 0, len 0), or a negative code with a message on ctx. */
static int side_read(sl_ctx *ctx, writer *w, sidecar *sc)
{
    memset(sc, 0, sizeof(*sc));
    FILE *f = fopen(w->side, "rb");
    if (!f) {
        if (errno == ENOENT) return 0;
        return sl_ctx_fail(ctx, sli_errno_code(errno), "cannot read '%s': %s", w->side,
                           strerror(errno));
    }
    static const size_t max = 28 + 4 * SIDE_MAXI;
    uint8_t *b = malloc(max + 1);
    size_t n = b ? fread(b, 1, max + 1, f) : 0;
    fclose(f);
    if (!b) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    int ok = n >= 28 && n <= max && memcmp(b, SIDE_MAGIC, 4) == 0 &&
             sli_get_le(b + 4, 4) == sli_crc32c(0, b + 8, n - 8) &&
             n == 28 + 4 * sli_get_le(b + 24, 4);
    if (ok) {
        sc->chk = sli_get_le(b + 8, 8);
        sc->len = sli_get_le(b + 16, 8);
        sc->n = (uint32_t)sli_get_le(b + 24, 4);
        for (uint32_t i = 0; i < sc->n; i++) sc->inst[i] = (uint32_t)sli_get_le(b + 28 + 4 * i, 4);
    }
    free(b);
    if (!ok)
        return sl_ctx_fail(ctx, SL_ECORRUPT,
                           "'%s' is damaged (%zu bytes), so it is not known which output of "
                           "'%s' was committed",
                           w->side, n, w->path);
    return 0;
}

static int side_write(sl_ctx *ctx, writer *w, const sidecar *sc)
{
    uint8_t b[28 + 4 * SIDE_MAXI];
    memcpy(b, SIDE_MAGIC, 4);
    sli_put_le(b + 8, sc->chk, 8);
    sli_put_le(b + 16, sc->len, 8);
    sli_put_le(b + 24, sc->n, 4);
    for (uint32_t i = 0; i < sc->n; i++) sli_put_le(b + 28 + 4 * i, sc->inst[i], 4);
    size_t n = 28 + 4 * (size_t)sc->n;
    sli_put_le(b + 4, sli_crc32c(0, b + 8, n - 8), 4);
    int rc = sli_fsio_write_file_atomic(w->side, b, n);
    if (rc)
        return sl_ctx_fail(ctx, sli_errno_code(rc), "cannot write '%s': %s", w->side,
                           strerror(-rc));
    return 0;
}

static int side_has(const sidecar *sc, uint32_t inst)
{
    for (uint32_t i = 0; i < sc->n; i++)
        if (sc->inst[i] == inst) return 1;
    return 0;
}

/* Make the output of old instance `inst` for checkpoint chk - the bytes of
 * eps[0..k) - part of the file, once: cut the file back to the committed
 * length, append, fsync, record it. */
static int commit_bytes(sl_ctx *ctx, writer *w, uint64_t chk, uint32_t inst, const epoch *eps,
                        int k)
{
    sidecar sc;
    int rc = side_read(ctx, w, &sc);
    if (rc) return rc;
    if (sc.chk > chk)
        return sl_ctx_fail(ctx, SL_ECORRUPT,
                           "'%s' already holds the output of checkpoint %llu, newer than "
                           "checkpoint %llu being committed (a newer checkpoint was lost?)",
                           w->path, (unsigned long long)sc.chk, (unsigned long long)chk);
    if (sc.chk == chk && side_has(&sc, inst)) return 0; /* committed already */
    if (sc.chk < chk) {
        sc.chk = chk;
        sc.n = 0;
    }
    if (sc.n >= SIDE_MAXI) return sl_ctx_fail(ctx, SL_ERANGE, "too many sink instances");
    if ((rc = sli_fsio_ftruncate(w->fd, (off_t)sc.len)) != 0)
        return sl_ctx_fail(ctx, sli_errno_code(rc), "cannot cut '%s' back to %llu bytes: %s",
                           w->path, (unsigned long long)sc.len, strerror(-rc));
    uint64_t len = sc.len;
    for (int i = 0; i < k; i++) {
        rc = sli_fsio_write(w->fd, eps[i].bytes.ptr, eps[i].bytes.len);
        if (rc)
            return sl_ctx_fail(ctx, sli_errno_code(rc), "cannot write %s: %s", w->path,
                               strerror(-rc));
        len += eps[i].bytes.len;
    }
    if ((rc = sli_fsio_fsync(w->fd)) != 0)
        return sl_ctx_fail(ctx, sli_errno_code(rc), "cannot write %s: %s (at fsync)", w->path,
                           strerror(-rc));
    sc.len = len;
    sc.inst[sc.n++] = inst;
    return side_write(ctx, w, &sc);
}

static void epochs_free(epoch *e, int n)
{
    for (int i = 0; i < n; i++) sl_buf_free(&e[i].bytes);
}

static int write_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    writer *w = self;
    if (!w->eo) return 0;
    uint64_t id = sl_ctx_checkpoint_id(ctx);
    pthread_mutex_lock(&w->lock);
    int rc = 0;
    epoch *np = realloc(w->pending, (size_t)(w->n_pending + 1) * sizeof(*np));
    if (!np) {
        rc = SL_ENOMEM;
    } else {
        w->pending = np;
        np[w->n_pending].id = id;
        np[w->n_pending].bytes = w->cur; /* moved */
        memset(&w->cur, 0, sizeof(w->cur));
        w->n_pending++;
        size_t total = 12;
        for (int i = 0; i < w->n_pending; i++) total += 16 + w->pending[i].bytes.len;
        rc = sl_buf_reserve(out, total);
        if (!rc) {
            uint8_t *d = out->ptr + out->len;
            memcpy(d, "SLFW", 4);
            sli_put_le(d + 4, (uint32_t)w->instance, 4);
            sli_put_le(d + 8, (uint32_t)w->n_pending, 4);
            size_t at = 12;
            for (int i = 0; i < w->n_pending; i++) {
                sli_put_le(d + at, w->pending[i].id, 8);
                sli_put_le(d + at + 8, w->pending[i].bytes.len, 8);
                if (w->pending[i].bytes.len)
                    memcpy(d + at + 16, w->pending[i].bytes.ptr, w->pending[i].bytes.len);
                at += 16 + w->pending[i].bytes.len;
            }
            out->len += total;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return rc ? sl_ctx_fail(ctx, rc, "cannot stage the output of %s: %s", w->path, sl_strerror(rc))
              : 0;
}

static int write_commit(sl_ctx *ctx, void *self, uint64_t id)
{
    writer *w = self;
    if (!w->eo) return 0;
    /* Take the closed epochs <= id out under the lock (snapshot() may grow
     * the array meanwhile on the worker), write them unlocked. If the write
     * fails the job fails, and a restart rolls them forward from the
     * checkpoint. */
    pthread_mutex_lock(&w->lock);
    int k = 0;
    while (k < w->n_pending && w->pending[k].id <= id) k++;
    epoch *mine = k ? malloc((size_t)k * sizeof(*mine)) : NULL;
    if (mine) {
        memcpy(mine, w->pending, (size_t)k * sizeof(*mine));
        memmove(w->pending, w->pending + k, (size_t)(w->n_pending - k) * sizeof(*w->pending));
        w->n_pending -= k;
    }
    pthread_mutex_unlock(&w->lock);
    if (!k) return 0;
    if (!mine) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    int rc = commit_bytes(ctx, w, id, (uint32_t)w->instance, mine, k);
    epochs_free(mine, k);
    free(mine);
    return rc;
}

static int write_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    writer *w = self;
    if (!w->eo) return 0; /* at-least-once: what is in the file stays */
    const uint8_t *d = data;
    if (len < 12 || memcmp(d, "SLFW", 4) != 0) goto bad;
    uint32_t inst = (uint32_t)sli_get_le(d + 4, 4), k = (uint32_t)sli_get_le(d + 8, 4);
    epoch *eps = calloc(k ? k : 1, sizeof(*eps));
    if (!eps) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    size_t at = 12;
    uint32_t i;
    for (i = 0; i < k; i++) {
        if (len - at < 16) break;
        uint64_t bl = sli_get_le(d + at + 8, 8);
        if (len - at - 16 < bl) break;
        eps[i].id = sli_get_le(d + at, 8);
        /* points into data: not freed */
        eps[i].bytes.ptr = (uint8_t *)d + at + 16;
        eps[i].bytes.len = bl;
        at += 16 + bl;
    }
    int rc = 0;
    if (i != k || at != len)
        rc = SL_ECORRUPT;
    else
        rc = commit_bytes(ctx, w, sl_ctx_restored_from(ctx), inst, eps, (int)k);
    free(eps);
    if (rc == SL_ECORRUPT && !sl_ctx_error(ctx)) goto bad;
    return rc;
bad:
    return sl_ctx_fail(ctx, SL_ECORRUPT, "the checkpoint's staged output for %s is malformed",
                       w->path);
}

static int write_open(sl_ctx *ctx, void **self)
{
    const sl_write_conf *c = sl_ctx_conf(ctx);
    const char *path = c && c->path && strcmp(c->path, "-") != 0 ? c->path : NULL;
    int guarantee = sl_ctx_guarantee(ctx);
    uint64_t restored = sl_ctx_restored_from(ctx);
    if (guarantee == SL_GUARANTEE_EXACTLY_ONCE && !path)
        return sl_ctx_fail(ctx, SL_EINVAL,
                           "exactly-once needs a file to write to: standard output cannot take "
                           "back what it wrote (give a file, or --guarantee at-least-once)");
    writer *w = calloc(1, sizeof(*w));
    if (!w) return SL_ENOMEM;
    w->fd = 1;
    w->is_stdout = 1;
    w->instance = sl_ctx_instance(ctx);
    pthread_mutex_init(&w->lock, NULL);
    if (path) {
        int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
        w->eo = guarantee == SL_GUARANTEE_EXACTLY_ONCE;
        snprintf(w->side, sizeof(w->side), "%s.sluice-commit", path);
        /* A fresh start empties the file; a restart keeps what was committed
         * (exactly-once restore cuts it back to that) or written. */
        if (sl_ctx_instance(ctx) == 0 && !restored) {
            flags |= O_TRUNC;
            if (w->eo) {
                int rc = sli_fsio_unlink(w->side);
                if (rc && rc != -ENOENT) {
                    sl_ctx_fail(ctx, sli_errno_code(rc), "cannot remove '%s': %s", w->side,
                                strerror(-rc));
                    pthread_mutex_destroy(&w->lock);
                    free(w);
                    return sl_ctx_error(ctx);
                }
            }
        }
        w->fd = sli_fsio_open(path, flags, 0644);
        if (w->fd < 0) {
            int e = -w->fd;
            pthread_mutex_destroy(&w->lock);
            free(w);
            return sl_ctx_fail(ctx, sli_errno_code(e), "cannot open '%s' for writing: %s", path,
                               strerror(e));
        }
        w->is_stdout = 0;
        snprintf(w->path, sizeof(w->path), "%s", path);
    }
    *self = w;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -errno;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    writer *w = self;
    const sl_write_conf *c = sl_ctx_conf(ctx);
    w->buf.len = 0;
    sl_buf *to = &w->buf;
    if (w->eo) { /* staged in the current epoch, made visible by commit */
        pthread_mutex_lock(&w->lock);
        to = &w->cur;
    }
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        int rc;
        if (c && c->format) {
            rc = c->format(to, r.ptr, r.len, in->ts[i], c->ud);
        } else {
            rc = sl_buf_reserve(to, (size_t)r.len + 1);
            if (!rc) {
                memcpy(to->ptr + to->len, r.ptr, r.len);
                to->ptr[to->len + r.len] = '\n';
                to->len += (size_t)r.len + 1;
            }
        }
        if (rc) {
            if (w->eo) pthread_mutex_unlock(&w->lock);
            return sl_ctx_fail(ctx, rc, "cannot format record: %s", sl_strerror(rc));
        }
    }
    if (w->eo) {
        pthread_mutex_unlock(&w->lock);
        return 0;
    }
    int rc;
    if (w->is_stdout) {
        pthread_mutex_lock(&stdout_lock);
        rc = write_all(w->fd, w->buf.ptr, w->buf.len);
        pthread_mutex_unlock(&stdout_lock);
    } else {
        rc = sli_fsio_write(w->fd, w->buf.ptr, w->buf.len);
    }
    if (rc == -EPIPE) return sl_ctx_fail(ctx, SL_EPIPE, "output closed (broken pipe)");
    if (rc)
        return sl_ctx_fail(ctx, sli_errno_code(rc), "cannot write %s: %s",
                           w->is_stdout ? "standard output" : w->path, strerror(-rc));
    return 0;
}

/* End of input: make a file's contents durable and close it, reporting what
 * fails (the job then fails). Another instance may still append to the same
 * file; each fsyncs its own descriptor after its last write. */
static int write_end(sl_ctx *ctx, void *self)
{
    writer *w = self;
    if (!w || w->is_stdout || w->fd < 0 || w->eo) return 0; /* eo: the final commit writes */
    struct stat st;
    int rc = 0;
    if (fstat(w->fd, &st) == 0 && S_ISREG(st.st_mode)) rc = sli_fsio_fsync(w->fd);
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) < 0 && rc == 0 && errno != EINTR) rc = -errno;
    if (rc)
        return sl_ctx_fail(ctx, sli_errno_code(rc), "cannot write %s: %s (at fsync or close)",
                           w->path, strerror(-rc));
    return 0;
}

static void write_close(void *self)
{
    writer *w = self;
    if (!w) return;
    if (!w->is_stdout && w->fd >= 0) close(w->fd);
    sl_buf_free(&w->buf);
    sl_buf_free(&w->cur);
    epochs_free(w->pending, w->n_pending);
    free(w->pending);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

const sl_operator sl_sink_write = {.version = SL_OPERATOR_VERSION,
                                   .kind = "write",
                                   .open = write_open,
                                   .process = write_process,
                                   .end = write_end,
                                   .snapshot = write_snapshot,
                                   .restore = write_restore,
                                   .close = write_close,
                                   .commit = write_commit};

/* --- collector ----------------------------------------------------------------- */

struct sl_collector {
    pthread_mutex_t lock;
    sl_buf data; /* payload bytes */
    sl_buf recs; /* array of struct rec */
};

struct rec {
    size_t off;
    uint32_t len;
    int64_t ts;
};

sl_collector *sl_collector_new(void)
{
    sl_collector *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

void sl_collector_free(sl_collector *c)
{
    if (!c) return;
    pthread_mutex_destroy(&c->lock);
    sl_buf_free(&c->data);
    sl_buf_free(&c->recs);
    free(c);
}

size_t sl_collector_count(const sl_collector *c)
{
    return c->recs.len / sizeof(struct rec);
}

sl_bytes sl_collector_get(const sl_collector *c, size_t i, int64_t *ts)
{
    const struct rec *r = (const struct rec *)c->recs.ptr + i;
    if (ts) *ts = r->ts;
    sl_bytes b = {c->data.ptr + r->off, r->len};
    return b;
}

static int collect_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    sl_collector *c = sl_ctx_conf(ctx);
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    for (uint32_t i = 0; i < in->count && !rc; i++) {
        sl_bytes b = sl_batch_bytes(in, i);
        struct rec r = {c->data.len, b.len, in->ts[i]};
        rc = sl_buf_append(&c->data, b.ptr, b.len);
        if (!rc) rc = sl_buf_append(&c->recs, &r, sizeof(r));
    }
    pthread_mutex_unlock(&c->lock);
    return rc ? sl_ctx_fail(ctx, rc, "collector: out of memory") : 0;
}

static int collect_open(sl_ctx *ctx, void **self)
{
    if (!sl_ctx_conf(ctx)) return sl_ctx_fail(ctx, SL_EINVAL, "collect sink without a collector");
    return 0;
}

const sl_operator sl_sink_collect = {.version = SL_OPERATOR_VERSION,
                                     .kind = "collect",
                                     .open = collect_open,
                                     .process = collect_process};
