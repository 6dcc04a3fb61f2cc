/*
 * connectors/otlp/otlp_file.c - the OTLP/JSON file exporter: each batch the
 * tracer hands over becomes one ExportTraceServiceRequest line appended to a
 * file (API: sluice/otlp.h; the line's format: otlp_json.c).
 *
 * The file is opened once, O_APPEND, through the engine's file layer
 * (engine/base/fsio.h, so tests can make writes fail). A batch is encoded
 * into a buffer kept across calls (no allocation once it has grown to the
 * largest batch) and written with one write loop, so a line is in the file
 * (the kernel's page cache) when export() returns, and lines of several
 * tracers appending to one file do not interleave within a line on a local
 * file system. Runs on the tracer's export thread only: no lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "engine/base/errmap.h"
#include "engine/base/fsio.h"
#include "sluice/otlp.h"

typedef struct file_exp {
    int fd;
    sl_buf buf;
} file_exp;

static int file_export(void *ud, const sl_trace_batch *b)
{
    file_exp *f = ud;
    f->buf.len = 0;
    int rc = sl_otlp_json_encode(b, &f->buf);
    if (rc) return rc;
    rc = sli_fsio_write(f->fd, f->buf.ptr, f->buf.len);
    return rc < 0 ? sli_errno_code(-rc) : 0;
}

static void file_close(void *ud)
{
    file_exp *f = ud;
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    sl_buf_free(&f->buf);
    free(f);
}

int sl_otlp_file_exporter(const char *path, sl_trace_exporter *out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!out) return SL_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!path || !*path) {
        if (err) snprintf(err, errlen, "span file: a path is required");
        return SL_EINVAL;
    }
    file_exp *f = calloc(1, sizeof(*f));
    if (!f) return SL_ENOMEM;
    f->fd = sli_fsio_open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (f->fd < 0) {
        int e = -f->fd;
        if (err) snprintf(err, errlen, "cannot open '%s' for appending: %s", path, strerror(e));
        free(f);
        return sli_errno_code(e);
    }
    *out = (sl_trace_exporter){.version = SL_TRACE_EXPORTER_VERSION,
                               .kind = "otlp-file",
                               .export = file_export,
                               .close = file_close,
                               .ud = f};
    return 0;
}
