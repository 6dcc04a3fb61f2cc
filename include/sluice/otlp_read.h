/*
 * sluice/otlp_read.h - reading spans from OTLP/JSON lines (public API).
 *
 * One line is one ExportTraceServiceRequest in the protobuf JSON mapping:
 *
 *   {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name",
 *     "value":{"stringValue":"saga"}}]},"scopeSpans":[{"scope":{...},
 *     "spans":[{"traceId":"<32 hex>","spanId":"<16 hex>","parentSpanId":...,
 *     "name":"...","startTimeUnixNano":"...","endTimeUnixNano":"...",
 *     "status":{"code":2}}, ...]}]}]}
 *
 * sl_otlp_read() validates the whole line as JSON (RFC 8259: strings with
 * their escapes, numbers, nesting up to 64 levels; bytes after the value are
 * an error) and calls back once per span, in order. What it accepts of the
 * mapping: lowerCamelCase or the proto field names (trace_id, ...); int64
 * and fixed64 as a JSON number or a decimal string; the status code as an
 * integer or its name (STATUS_CODE_UNSET, _OK, _ERROR); null or an absent
 * field is the default; unknown fields are skipped (but still validated);
 * ids are hex (either case), as OTLP/JSON says (not base64). A span needs a
 * traceId (32 hex, not all zero) and a spanId (16 hex, not all zero); an
 * empty or absent parentSpanId means a root span. The service of a span is
 * its resource's "service.name" string attribute, or "unknown_service".
 *
 * No allocation: decoded strings live in the reader's stack frame and raw
 * texts point into the line; both are valid only during the callback.
 * Thread-safe (no shared state).
 */
#ifndef SLUICE_OTLP_READ_H
#define SLUICE_OTLP_READ_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>
#include "sluice/batch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest decoded span name or service name accepted (bytes of UTF-8). */
#define SL_OTLP_MAX_NAME 4096

enum sl_otlp_status { SL_OTLP_UNSET = 0, SL_OTLP_OK = 1, SL_OTLP_ERROR = 2 };

typedef struct sl_otlp_span {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_id[8]; /* zero when has_parent is 0 */
    int has_parent;
    uint64_t start_ns, end_ns; /* startTimeUnixNano, endTimeUnixNano (0 when absent) */
    int status;                /* status.code: enum sl_otlp_status, or another value as given */
    sl_bytes name;             /* decoded span name ("" when absent) */
    sl_bytes service;          /* decoded service.name of its resource */
    sl_bytes resource;         /* raw JSON text of its resource object ("{}" when absent) */
    sl_bytes scope;            /* raw JSON text of its scope object ("{}" when absent) */
    sl_bytes json;             /* raw JSON text of the span object itself */
} sl_otlp_span;

/* Called once per span; return 0 to go on, non-zero to stop (sl_otlp_read
 * then returns that value). */
typedef int (*sl_otlp_span_fn)(const sl_otlp_span *span, void *ud);

/* Read one line (without its newline). Returns 0 when the whole line is
 * valid (fn was called for every span), SL_EPARSE with *reason set to a
 * static one-line description when it is not (fn may have been called for
 * spans before the problem: a caller that wants all or nothing discards
 * what it made), or what fn returned. */
SL_API int sl_otlp_read(const char *line, size_t len, sl_otlp_span_fn fn, void *ud,
                        const char **reason);

#ifdef __cplusplus
}
#endif
#endif
