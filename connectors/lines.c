/*
 * connectors/lines.c - text lines of a file or standard input as a source:
 * plain lines, CSV lines with an event-time column, or records parsed from
 * lines by a callback; unreadable lines go to the dead-letter port.
 *
 * Each line, without its '\n' (and a '\r' before it), is one input. Any
 * bytes are allowed: NUL, invalid UTF-8, lines of any length (the read
 * buffer grows to hold the longest line). What a line becomes:
 *
 *   parse set       parse(line) makes the record and its event time; -1
 *                   with a reason sends the line to the dead letters
 *   ts_column > 0   the line itself, with event time the whole number of ms
 *                   in that CSV column (1-based); a line whose column is
 *                   missing or not a number is a dead letter
 *   neither         the line itself, with no event time (SL_TIME_NONE)
 *
 * With trace_column > 0 the record also carries the W3C trace context in
 * that CSV column, a `traceparent` value (connectors/topic_record.c reads
 * it): none when the column is missing or empty, and a malformed one is
 * ignored and counted (sl_pipeline_trace_malformed); with tracestate_column
 * too, the `tracestate` in that column goes with it. The engine clears the
 * context after each poll (sl_ctx_set_trace).
 *
 * Splits: a regular file is cut into byte ranges (conf.splits, or one per
 * instance). The split [from, to) owns the lines that *start* in it; it
 * skips a partial first line (the previous split reads it past its end).
 * Standard input and pipes are one split. A dead letter says "line N" when
 * the split starts at byte 0 (line numbers are known), else "byte N".
 *
 * Position: the byte offset of the next line (uint64, host order); seek
 * rewinds a file there.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "connectors/topic_record.h"
#include "engine/base/errmap.h"
#include "sluice/connectors.h"
#include "sluice/source.h"

#define READ_CHUNK (256 * 1024)
#define DEAD_SHOW  200 /* bytes of a bad line kept in its dead letter */

/* A split's description (what enumerate declares):
 *
 *   offset  size  field
 *   0       8     from: first byte (uint64)
 *   8       8     to: lines starting at or after it are the next split's
 *   16      4     seekable: 1 for a regular file
 */
typedef struct lines_split {
    uint64_t from, to;
    uint32_t seekable;
} lines_split;

typedef struct lines {
    int fd;
    int own_fd;
    int seekable;
    uint64_t pos;    /* file offset of buf[start] */
    uint64_t end;    /* lines starting at or after this belong to the next split */
    uint64_t lineno; /* lines read so far; counts only when line_known */
    int line_known;
    uint8_t *buf;
    size_t start, len, cap; /* unread bytes are buf[start .. len) */
    int eof;
    int skip_partial;
    uint8_t *rec; /* parse output, conf->max_len bytes */
} lines;

static const char *conf_path(const sl_lines_conf *c)
{
    return c && c->path && strcmp(c->path, "-") != 0 ? c->path : NULL;
}

static int open_fail(sl_ctx *ctx, const char *path, int e)
{
    return sl_ctx_fail(ctx, sli_errno_code(e), "cannot open '%s': %s", path, strerror(e));
}

static int lines_enumerate(sl_split_enum *e, void *conf)
{
    const sl_lines_conf *c = conf;
    const char *path = conf_path(c);
    lines_split d = {0, UINT64_MAX, 0};
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (path && access(path, R_OK) != 0)
            return sl_split_fail(e, sli_errno_code(errno), "cannot open '%s': %s", path,
                                 strerror(errno));
        return sl_split_add(e, &d, sizeof(d)); /* stdin or a pipe: one split */
    }
    uint64_t size = (uint64_t)st.st_size;
    uint64_t n = c->splits > 0 ? (uint64_t)c->splits : (uint64_t)sl_split_parallelism(e);
    if (n < 1) n = 1;
    for (uint64_t i = 0; i < n; i++) {
        d.from = size * i / n;
        d.to = i + 1 == n ? UINT64_MAX : size * (i + 1) / n;
        d.seekable = 1;
        int rc = sl_split_add(e, &d, sizeof(d));
        if (rc) return rc;
    }
    return 0;
}

static void lines_close(void *self)
{
    lines *l = self;
    if (!l) return;
    if (l->own_fd) close(l->fd);
    free(l->buf);
    free(l->rec);
    free(l);
}

static int lines_open(sl_ctx *ctx, const sl_split *split, void **self)
{
    const sl_lines_conf *c = sl_ctx_conf(ctx);
    const char *path = conf_path(c);
    lines_split d;
    if (!split->desc || split->desc_len != sizeof(d))
        return sl_ctx_fail(ctx, SL_EINVAL, "lines: bad split description");
    memcpy(&d, split->desc, sizeof(d));
    if (c && c->parse && c->max_len == 0)
        return sl_ctx_fail(ctx, SL_EINVAL, "lines: a parse callback needs max_len");
    uint32_t width = sl_ctx_out_width(ctx, 0);
    if (c && !c->parse && width != 0)
        return sl_ctx_fail(ctx, SL_EINVAL, "lines: records are variable length without parse");
    lines *l = calloc(1, sizeof(*l));
    if (!l) return SL_ENOMEM;
    l->end = d.to;
    l->seekable = (int)d.seekable;
    l->line_known = d.from == 0;
    if (c && c->parse && !(l->rec = malloc(c->max_len))) {
        free(l);
        return SL_ENOMEM;
    }
    l->fd = 0;
    if (path) {
        l->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (l->fd < 0) {
            int e = errno;
            lines_close(l);
            return open_fail(ctx, path, e);
        }
        l->own_fd = 1;
        if (d.from > 0) {
            /* Start at from-1: if that byte is '\n' a line starts at from. */
            l->pos = d.from - 1;
            l->skip_partial = 1;
            if (lseek(l->fd, (off_t)l->pos, SEEK_SET) < 0) {
                lines_close(l);
                return sl_ctx_fail(ctx, SL_EIO, "cannot seek in '%s'", path);
            }
        }
    }
    *self = l;
    return 0;
}

/* Read more input after the unread bytes. 0, 1 when a pipe, FIFO or
 * terminal has nothing yet (the poll then says WAIT instead of blocking in
 * read(2), so that a cancel - Ctrl-C, SIGTERM - is seen while the input
 * is silent), or < 0 on error; sets eof. */
static int fill(sl_ctx *ctx, lines *l)
{
    if (!l->seekable) {
        struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
        int r;
        while ((r = poll(&pfd, 1, 0)) < 0 && errno == EINTR) {}
        if (r == 0) return 1;
    }
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
        if (n < 0)
            return sl_ctx_fail(ctx, sli_errno_code(errno), "read error: %s", strerror(errno));
        if (n == 0) l->eof = 1;
        l->len += (size_t)n;
        return 0;
    }
}

/* CSV column col (1-based) of line, without the blanks around it, as
 * [*from, *to); 0, or -1 when the line has fewer columns. */
static int csv_field(const uint8_t *p, size_t len, int col, char delim, size_t *from, size_t *to)
{
    size_t i = 0;
    for (int k = 1; k < col; k++) {
        const uint8_t *q = memchr(p + i, delim, len - i);
        if (!q) return -1;
        i = (size_t)(q - p) + 1;
    }
    size_t j = i;
    while (j < len && p[j] != (uint8_t)delim) j++;
    while (i < j && (p[i] == ' ' || p[i] == '\t')) i++;
    while (j > i && (p[j - 1] == ' ' || p[j - 1] == '\t')) j--;
    *from = i;
    *to = j;
    return 0;
}

/* A whole number of ms in CSV column col (1-based) of line; 0 or -1. */
static int csv_ts(const uint8_t *p, size_t len, int col, char delim, int64_t *out)
{
    size_t i, j;
    if (csv_field(p, len, col, delim, &i, &j) != 0 || i == j) return -1;
    int neg = p[i] == '-';
    if (neg || p[i] == '+') i++;
    if (i == j || j - i > 18) return -1;
    int64_t v = 0;
    for (; i < j; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

static int dead_letter(sl_ctx *ctx, lines *l, uint64_t line_pos, const char *reason,
                       const uint8_t *line, size_t len)
{
    char why[160];
    if (l->line_known)
        snprintf(why, sizeof(why), "line %" PRIu64 ": %s", l->lineno, reason);
    else
        snprintf(why, sizeof(why), "byte %" PRIu64 ": %s", line_pos, reason);
    return sl_ctx_dead_letter(ctx, SL_TIME_NONE, why, line,
                              (uint32_t)(len > DEAD_SHOW ? DEAD_SHOW : len));
}

/* The trace context in the line's trace column (with the state in its
 * tracestate column): none when the line has no such column or it is
 * empty; a malformed one is counted and ignored. */
static const sl_trace_ctx *line_trace(sl_ctx *ctx, const sl_lines_conf *c, const uint8_t *p,
                                      size_t len, sl_trace_ctx *out)
{
    char delim = c->delimiter ? c->delimiter : ',';
    size_t i, j, si = 0, sj = 0;
    if (csv_field(p, len, c->trace_column, delim, &i, &j) != 0 || i == j) return NULL;
    slc_state st; /* one value: used where it lies (join untouched) */
    slc_state_reset(&st);
    if (c->tracestate_column > 0 && csv_field(p, len, c->tracestate_column, delim, &si, &sj) == 0 &&
        si < sj)
        slc_state_add(&st, p + si, sj - si);
    return slc_trace_read(ctx, p + i, j - i, &st, out);
}

/* One line: emit its record or its dead letter. */
static int line_emit(sl_ctx *ctx, const sl_lines_conf *c, lines *l, uint64_t line_pos,
                     const uint8_t *p, size_t len)
{
    if (c && c->parse) {
        int64_t ts = SL_TIME_NONE;
        const char *reason = "malformed";
        int r = c->parse((const char *)p, len, l->rec, c->max_len, &ts, &reason, c->ud);
        if (r < 0) return dead_letter(ctx, l, line_pos, reason, p, len);
        if ((uint32_t)r > c->max_len)
            return sl_ctx_fail(ctx, SL_EOPERATOR, "parse made %d bytes, more than max_len %u", r,
                               c->max_len);
        uint32_t w = sl_ctx_out_width(ctx, 0);
        return sl_emit_copy(ctx, ts, 0, l->rec, w ? w : (uint32_t)r);
    }
    int64_t ts = SL_TIME_NONE;
    if (c && c->ts_column > 0 &&
        csv_ts(p, len, c->ts_column, c->delimiter ? c->delimiter : ',', &ts) != 0)
        return dead_letter(ctx, l, line_pos, "no event time (ms) in the time column", p, len);
    return sl_emit_copy(ctx, ts, 0, p, (uint32_t)len);
}

/* One line, with its trace context when the conf names a trace column. */
static int one_line(sl_ctx *ctx, const sl_lines_conf *c, lines *l, uint64_t line_pos,
                    const uint8_t *p, size_t len)
{
    if (len > UINT32_MAX)
        return sl_ctx_fail(ctx, SL_ETOOBIG, "a line of %zu bytes is too long", len);
    if (!c || c->trace_column <= 0) return line_emit(ctx, c, l, line_pos, p, len);
    sl_trace_ctx tc;
    sl_ctx_set_trace(ctx, line_trace(ctx, c, p, len, &tc));
    int rc = line_emit(ctx, c, l, line_pos, p, len);
    sl_ctx_set_trace(ctx, NULL); /* tc is ours */
    return rc;
}

static int lines_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    lines *l = self;
    const sl_lines_conf *c = sl_ctx_conf(ctx);
    uint32_t done = 0; /* lines handled: records and dead letters */
    while (done < max) {
        uint8_t *p = l->buf + l->start;
        size_t avail = l->len - l->start;
        uint8_t *nl = avail ? memchr(p, '\n', avail) : NULL;
        if (!nl && !l->eof) {
            if (done) break; /* hand on what we have before reading more */
            int rc = fill(ctx, l);
            if (rc < 0) return rc;
            if (rc == 1) return SL_POLL_WAIT;
            continue;
        }
        if (!nl && avail == 0) return done ? SL_POLL_MORE : SL_POLL_END;
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
            return done ? SL_POLL_MORE : SL_POLL_END;
        }
        size_t reclen = linelen;
        if (reclen && p[reclen - 1] == '\r') reclen--;
        l->lineno++;
        int rc = one_line(ctx, c, l, line_pos, p, reclen);
        if (rc) return rc;
        l->start += consumed;
        done++;
    }
    return SL_POLL_MORE;
}

static int lines_position(sl_ctx *ctx, void *self, sl_buf *out)
{
    lines *l = self;
    uint64_t off = l->pos + l->start;
    return sl_buf_append(out, &off, sizeof(off));
}

static int lines_seek(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    lines *l = self;
    uint64_t off;
    if (len != sizeof(off)) return SL_ECORRUPT;
    memcpy(&off, data, sizeof(off));
    if (!l->seekable || lseek(l->fd, (off_t)off, SEEK_SET) < 0)
        return sl_ctx_fail(ctx, SL_ENOTSUP, "cannot rewind this input to offset %llu",
                           (unsigned long long)off);
    l->pos = off;
    l->start = l->len = 0;
    l->eof = 0;
    l->skip_partial = 0;
    l->line_known = 0;
    return 0;
}

const sl_source sl_source_lines = {.version = SL_SOURCE_VERSION,
                                   .kind = "lines",
                                   .enumerate = lines_enumerate,
                                   .open = lines_open,
                                   .poll = lines_poll,
                                   .position = lines_position,
                                   .seek = lines_seek,
                                   .close = lines_close};

sl_stream *sl_pipeline_lines(sl_pipeline *p, const char *name, const sl_lines_conf *conf,
                             uint32_t width, const sl_watermark_conf *wm)
{
    if (!p) return NULL;
    static const sl_lines_conf stdin_conf; /* NULL conf: standard input, plain lines */
    sl_lines_conf *copy = sl_pipeline_dup(p, conf ? conf : &stdin_conf, sizeof(*copy));
    if (!copy) return NULL;
    if (copy->path && !(copy->path = sl_pipeline_dup(p, copy->path, strlen(copy->path) + 1)))
        return NULL;
    if (copy->trace_column < 0) {
        sl_pipeline_error(p, SL_EINVAL, "source '%s': trace_column must be >= 1 (or 0: none)",
                          name ? name : "");
        return NULL;
    }
    if (copy->tracestate_column < 0 || (copy->tracestate_column && copy->trace_column <= 0)) {
        sl_pipeline_error(p, SL_EINVAL,
                          "source '%s': tracestate_column must be >= 1 with a trace_column "
                          "(or 0: none)",
                          name ? name : "");
        return NULL;
    }
    if (copy->ts_column < 0) {
        sl_pipeline_error(p, SL_EINVAL, "source '%s': ts_column must be >= 1 (or 0: none)",
                          name ? name : "");
        return NULL;
    }
    return sl_pipeline_source(p, name, &sl_source_lines, copy, width, wm);
}
