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
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"
#include "sluice/connectors.h"
#include "sluice/error.h"
#include "sluice/operator.h"

static pthread_mutex_t stdout_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct writer {
    int fd; /* -1 once closed by write_end */
    int is_stdout;
    sl_buf buf;
    char path[256]; /* for messages (cut if longer) */
} writer;

static int write_open(sl_ctx *ctx, void **self)
{
    const sl_write_conf *c = sl_ctx_conf(ctx);
    const char *path = c && c->path && strcmp(c->path, "-") != 0 ? c->path : NULL;
    writer *w = calloc(1, sizeof(*w));
    if (!w) return SL_ENOMEM;
    w->fd = 1;
    w->is_stdout = 1;
    if (path) {
        int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC;
        if (sl_ctx_instance(ctx) == 0) flags |= O_TRUNC;
        w->fd = sli_fsio_open(path, flags, 0644);
        if (w->fd < 0) {
            int e = -w->fd;
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
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        int rc;
        if (c && c->format) {
            rc = c->format(&w->buf, r.ptr, r.len, in->ts[i], c->ud);
        } else {
            rc = sl_buf_reserve(&w->buf, (size_t)r.len + 1);
            if (!rc) {
                memcpy(w->buf.ptr + w->buf.len, r.ptr, r.len);
                w->buf.ptr[w->buf.len + r.len] = '\n';
                w->buf.len += (size_t)r.len + 1;
            }
        }
        if (rc) return sl_ctx_fail(ctx, rc, "cannot format record: %s", sl_strerror(rc));
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
    if (!w || w->is_stdout || w->fd < 0) return 0;
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
    free(w);
}

const sl_operator sl_sink_write = {.version = SL_OPERATOR_VERSION,
                                   .kind = "write",
                                   .open = write_open,
                                   .process = write_process,
                                   .end = write_end,
                                   .close = write_close};

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
