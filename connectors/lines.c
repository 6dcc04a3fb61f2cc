/*
 * connectors/lines.c - a source of text lines from a file or standard input.
 *
 * Each line, without its '\n' (and a '\r' before it), is one variable-length
 * record with event time 0. Any bytes are allowed: NUL, invalid UTF-8, lines
 * of any length (the read buffer grows to hold the longest line).
 *
 * Parallel reading: instance i of P owns the lines that *start* in the byte
 * range [i*size/P, (i+1)*size/P) of the file; it skips a partial first line
 * (the previous instance reads it past its range end). Standard input cannot
 * be split: only instance 0 reads it.
 *
 * Position (for checkpoints): the file offset of the next line to emit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "sluice/sluice.h"

#define READ_CHUNK (256 * 1024)

typedef struct lines {
    int fd;
    int own_fd;
    uint64_t pos; /* file offset of buf[start] */
    uint64_t end; /* lines starting at or after this belong to the next instance */
    uint8_t *buf;
    size_t start, len, cap; /* unread bytes are buf[start .. len) */
    int eof;
    int skip_partial;
} lines;

static int lines_open(sl_ctx *ctx, void **self)
{
    const sl_lines_conf *c = sl_ctx_conf(ctx);
    const char *path = c && c->path && strcmp(c->path, "-") != 0 ? c->path : NULL;
    lines *l = calloc(1, sizeof(*l));
    if (!l) return SL_ENOMEM;
    l->end = UINT64_MAX;
    l->fd = 0;
    if (path) {
        l->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (l->fd < 0) {
            int e = errno;
            free(l);
            return sl_ctx_fail(ctx,
                               e == ENOENT   ? SL_ENOENT
                               : e == EACCES ? SL_EPERM
                                             : SL_EIO,
                               "cannot open '%s': %s", path, strerror(e));
        }
        l->own_fd = 1;
        struct stat st;
        if (fstat(l->fd, &st) == 0 && S_ISREG(st.st_mode)) {
            uint64_t size = (uint64_t)st.st_size, p = (uint64_t)sl_ctx_parallelism(ctx);
            uint64_t i = (uint64_t)sl_ctx_instance(ctx);
            uint64_t from = size * i / p;
            l->end = size * (i + 1) / p;
            if (from > 0) {
                /* Start at from-1: if that byte is '\n' a line starts at from. */
                l->pos = from - 1;
                l->skip_partial = 1;
                if (lseek(l->fd, (off_t)l->pos, SEEK_SET) < 0) goto io;
            }
        } else if (sl_ctx_instance(ctx) > 0) {
            l->eof = 1; /* a pipe or device cannot be split */
        }
    } else if (sl_ctx_instance(ctx) > 0) {
        l->eof = 1;
    }
    *self = l;
    return 0;
io:
    close(l->fd);
    free(l);
    return sl_ctx_fail(ctx, SL_EIO, "cannot seek in '%s'", path);
}

static void lines_close(void *self)
{
    lines *l = self;
    if (!l) return;
    if (l->own_fd) close(l->fd);
    free(l->buf);
    free(l);
}

/* Read more input after the unread bytes. 0, or < 0 on error; sets eof. */
static int fill(sl_ctx *ctx, lines *l)
{
    if (l->start > 0) { /* slide unread bytes to the front */
        memmove(l->buf, l->buf + l->start, l->len - l->start);
        l->pos += l->start;
        l->len -= l->start;
        l->start = 0;
    }
    if (l->cap - l->len < READ_CHUNK) {
        size_t cap = l->cap ? l->cap : READ_CHUNK;
        while (cap - l->len < READ_CHUNK) cap *= 2;
        uint8_t *b = realloc(l->buf, cap);
        if (!b) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for a line of %zu bytes", l->len);
        l->buf = b;
        l->cap = cap;
    }
    for (;;) {
        ssize_t n = read(l->fd, l->buf + l->len, l->cap - l->len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return sl_ctx_fail(ctx, SL_EIO, "read error: %s", strerror(errno));
        if (n == 0) l->eof = 1;
        l->len += (size_t)n;
        return 0;
    }
}

static int lines_poll(sl_ctx *ctx, void *self)
{
    lines *l = self;
    int emitted = 0;
    while (emitted < SL_BATCH_CAPACITY) {
        uint8_t *p = l->buf + l->start;
        size_t avail = l->len - l->start;
        uint8_t *nl = avail ? memchr(p, '\n', avail) : NULL;
        if (!nl && !l->eof) {
            if (emitted) break; /* hand on what we have before blocking on read */
            int rc = fill(ctx, l);
            if (rc) return rc;
            continue;
        }
        if (!nl && avail == 0) return emitted ? SL_POLL_MORE : SL_POLL_END;
        size_t linelen = nl ? (size_t)(nl - p) : avail;
        size_t consumed = nl ? linelen + 1 : linelen;
        uint64_t line_pos = l->pos + l->start;
        if (l->skip_partial) {
            l->skip_partial = 0;
            l->start += consumed; /* the rest of the line that began before us */
            continue;
        }
        if (line_pos >= l->end) {
            l->eof = 1;
            l->start = l->len;
            return emitted ? SL_POLL_MORE : SL_POLL_END;
        }
        size_t reclen = linelen;
        if (reclen && p[reclen - 1] == '\r') reclen--;
        if (reclen > UINT32_MAX)
            return sl_ctx_fail(ctx, SL_ETOOBIG, "a line of %zu bytes is too long", reclen);
        if (sl_emit_copy(ctx, 0, 0, p, (uint32_t)reclen)) return sl_ctx_error(ctx);
        l->start += consumed;
        emitted++;
    }
    return SL_POLL_MORE;
}

static int lines_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    lines *l = self;
    uint64_t off = l->pos + l->start;
    return sl_buf_append(out, &off, sizeof(off));
}

static int lines_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    lines *l = self;
    uint64_t off;
    if (len != sizeof(off)) return SL_ECORRUPT;
    memcpy(&off, data, sizeof(off));
    if (!l->own_fd || lseek(l->fd, (off_t)off, SEEK_SET) < 0)
        return sl_ctx_fail(ctx, SL_ENOTSUP, "cannot rewind this input to offset %llu",
                           (unsigned long long)off);
    l->pos = off;
    l->start = l->len = 0;
    l->eof = 0;
    l->skip_partial = 0;
    return 0;
}

const sl_source sl_source_lines = {.version = SL_SOURCE_VERSION,
                                   .kind = "lines",
                                   .open = lines_open,
                                   .poll = lines_poll,
                                   .snapshot = lines_snapshot,
                                   .restore = lines_restore,
                                   .close = lines_close};

sl_stream *sl_pipeline_lines(sl_pipeline *p, const char *name, const sl_lines_conf *conf)
{
    return sl_pipeline_source(p, name, &sl_source_lines, (void *)conf, 0);
}
