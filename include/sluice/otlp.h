/*
 * sluice/otlp.h - spans as OTLP: the OTLP/JSON encoding, and two exporters
 * for sl_tracer (sluice/trace.h): to a file, one request per line, and to a
 * collector over OTLP/HTTP (public API).
 *
 * The encoding is the protobuf JSON mapping of OTLP's
 * ExportTraceServiceRequest with OTLP's own rules (trace and span ids as
 * lowercase hex, not base64); connectors/otlp/otlp_json.c draws it.
 *
 * Ownership: each constructor fills an sl_trace_exporter whose ud it
 * allocated; hand it to sl_tracer_new(), which owns it from then on (its
 * close() frees it). A caller that does not use it calls out->close(out->ud).
 */
#ifndef SLUICE_OTLP_H
#define SLUICE_OTLP_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>
#include "sluice/operator.h"
#include "sluice/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append batch b to out as one ExportTraceServiceRequest JSON object and a
 * '\n'. Strings are escaped; invalid UTF-8 becomes U+FFFD. 0 or SL_ENOMEM. */
SL_API int sl_otlp_json_encode(const sl_trace_batch *b, sl_buf *out);

/* An exporter that appends each batch to the file at path (created 0644 if
 * missing), one line per batch, written with one write(2) loop per batch (no
 * user-space buffering). SL_EIO/SL_EPERM/SL_ENOENT with "cannot open 'PATH':
 * REASON" in err when the file cannot be opened for appending. */
SL_API int sl_otlp_file_exporter(const char *path, sl_trace_exporter *out, char *err,
                                 size_t errlen);

/* OTLP/HTTP (JSON body). */
typedef struct sl_otlp_http_conf {
    const char *url; /* required: http:// or https://, e.g. http://127.0.0.1:4318/v1/traces */
    int64_t request_timeout_ms; /* one POST, all of it; 0: 10000 */
    int64_t connect_timeout_ms; /* 0: 5000 */
    int64_t backoff_ms;         /* first retry's wait; 0: 200 */
    int64_t max_backoff_ms;     /* 0: 5000 */
    int max_attempts;           /* per batch, the first included; 0: 5 */
} sl_otlp_http_conf;

/* An exporter that POSTs each batch (Content-Type: application/json) to
 * conf->url, reusing one connection. A batch is delivered by a 2xx answer.
 * 429, 502, 503, 504 and transport errors (refused, reset, timed out) are
 * retried after an exponential backoff with jitter (the wait drawn in
 * [w/2, w], w = backoff_ms * 2^(attempt-1) up to max_backoff_ms) while
 * attempts remain and the batch's deadline allows; any other answer drops
 * the batch at once. Only the tracer's export thread waits. SL_EINVAL with
 * a message in err for a URL that is not http(s)://HOST[:PORT][/PATH]. */
SL_API int sl_otlp_http_exporter(const sl_otlp_http_conf *conf, sl_trace_exporter *out, char *err,
                                 size_t errlen);

/* 0 when url would be taken by sl_otlp_http_exporter, else SL_EINVAL with
 * the reason in err (for option checks before anything is built). */
SL_API int sl_otlp_check_url(const char *url, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
