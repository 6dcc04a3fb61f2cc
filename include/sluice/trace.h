/*
 * sluice/trace.h - W3C trace context, spans and the tracer that exports
 * them (public API; the OTLP exporters are in sluice/otlp.h).
 *
 * Trace context. sl_trace_ctx is the W3C `traceparent` triple: a 16-byte
 * trace id, an 8-byte span id (the parent, when carried) and the trace
 * flags (bit 0: sampled). sl_traceparent_parse/format read and write the
 * header value "00-<32 hex>-<16 hex>-<2 hex>" (W3C Trace Context, level 1):
 * lowercase hex only, all-zero ids invalid, version ff invalid; a version
 * above 00 is accepted when its first 55 characters have the version-00
 * layout and, if longer, the 56th is '-' (the spec's forward-compatibility
 * rule). sl_tracestate_parse checks a `tracestate` header value, which a
 * context carries beside the ids (sluice/tracectx.h).
 *
 * Spans. An sl_span lives in the caller's memory (stack, operator state):
 * sl_span_start() fills ids and the start time, the setters add attributes,
 * links and a status, sl_span_end() stamps the end time and, if the span is
 * sampled, copies it into the tracer's queue. Nothing is allocated and no
 * lock is taken: the queue is a bounded lock-free ring; when it is full the
 * span is dropped and counted, the caller never waits. Attributes, links
 * and strings beyond the bounds below are dropped (counted on the span) or
 * truncated. A span whose tracer is NULL records nothing: code under a
 * pipeline with no tracer pays for one NULL check.
 *
 * Sampling (head, at the start of a span): parent-based; a span with a
 * valid parent context is sampled iff the parent's sampled flag is set;
 * a root span is sampled by the trace id ratio rule of OpenTelemetry's
 * TraceIdRatioBased sampler (the last 8 bytes of the trace id, big endian,
 * shifted right by one, below ratio * 2^63), so every process decides the
 * same for one trace id. An unsampled span still gets ids (its children
 * inherit the decision) but is never queued.
 *
 * Export. One thread per tracer takes spans off the queue and hands them,
 * in batches of at most batch_size, to the exporter (a versioned function
 * table, as sl_operator is) at least every flush_interval_ms. Only that
 * thread ever waits on the exporter. An export that fails drops its batch
 * (counted). sl_tracer_free() exports what is queued, within
 * shutdown_timeout_ms, drops the rest (counted), joins the thread and
 * closes the exporter.
 *
 * Thread safety: every function here may be called from any thread; one
 * sl_span is used by one thread at a time.
 */
#ifndef SLUICE_TRACE_H
#define SLUICE_TRACE_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>
#include "sluice/pipeline.h"
#include "sluice/tracectx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- trace context ---------------------------------------------------------------- */

#define SL_TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

/* sl_trace_ctx, SL_TRACE_FLAG_SAMPLED and sl_trace_ctx_valid() are in
 * sluice/tracectx.h (included above): records carry the context in their
 * batch's trace column (sluice/batch.h). */

/* Parse a traceparent header value of len bytes (no NUL needed). 0, or
 * SL_EINVAL for anything malformed (out is then left zeroed). */
SL_API int sl_traceparent_parse(const char *s, size_t len, sl_trace_ctx *out);
/* Write "00-<trace>-<span>-<flags>" and a NUL into out (56 bytes). Only the
 * sampled bit of flags is written (the others are not defined in version
 * 00). SL_EINVAL when an id is all zero. */
SL_API int sl_traceparent_format(const sl_trace_ctx *c, char out[SL_TRACEPARENT_LEN + 1]);
/* Check a tracestate header value of len bytes (W3C Trace Context level 1:
 * at most 32 list-members "key=value" split by commas with optional spaces
 * and tabs around them, empty members allowed; keys lowercase, simple or
 * "tenant@system", at most 256 characters, none twice; values printable
 * ASCII without ',' or '=', 1 to 256, not ending in a space). On success
 * out->state points into s (not copied) and out->state_len is what the
 * context carries: the members with the separators between them, cut
 * after the last member that ends within SL_TRACESTATE_MAX bytes; a value
 * that holds no member gives state NULL, length 0. SL_EINVAL when
 * malformed (state NULL): the spec's rule is to drop the whole list, and
 * the traceparent stays good. Only the state fields of out are written. */
SL_API int sl_tracestate_parse(const char *s, size_t len, sl_trace_ctx *out);

/* Random non-zero ids, from a per-thread generator seeded by getrandom():
 * no lock, no system call after a thread's first id. Not for secrets. */
SL_API void sl_trace_new_trace_id(uint8_t out[16]);
SL_API void sl_trace_new_span_id(uint8_t out[8]);

/* The head-sampling decision for a new span: parent valid -> its sampled
 * flag; else the trace-id ratio rule (ratio <= 0: never, >= 1: always). */
SL_API int sl_trace_should_sample(double ratio, const sl_trace_ctx *parent,
                                  const uint8_t trace_id[16]);

/* --- spans ------------------------------------------------------------------------ */

/* Bounds of one span (its size is fixed so that the queue holds spans by
 * value). Longer strings are cut (at a UTF-8 character boundary). */
#define SL_SPAN_NAME_MAX  64  /* bytes of the name, NUL included */
#define SL_SPAN_ATTRS_MAX 12  /* attributes per span */
#define SL_SPAN_KEY_MAX   32  /* bytes of an attribute key, NUL included */
#define SL_SPAN_STR_MAX   96  /* bytes of a string attribute value, NUL included */
#define SL_SPAN_LINKS_MAX 4   /* links per span */
#define SL_SPAN_MSG_MAX   128 /* bytes of the status message, NUL included */

/* OTLP's Span.SpanKind values. */
enum sl_span_kind {
    SL_SPAN_KIND_UNSPECIFIED = 0,
    SL_SPAN_KIND_INTERNAL = 1,
    SL_SPAN_KIND_SERVER = 2,
    SL_SPAN_KIND_CLIENT = 3,
    SL_SPAN_KIND_PRODUCER = 4,
    SL_SPAN_KIND_CONSUMER = 5
};
/* OTLP's Status.StatusCode values. */
enum sl_span_status { SL_SPAN_STATUS_UNSET = 0, SL_SPAN_STATUS_OK = 1, SL_SPAN_STATUS_ERROR = 2 };
enum sl_attr_type { SL_ATTR_STRING = 1, SL_ATTR_INT = 2, SL_ATTR_DOUBLE = 3, SL_ATTR_BOOL = 4 };

typedef struct sl_span_attr {
    char key[SL_SPAN_KEY_MAX];
    int type; /* enum sl_attr_type */
    union {
        char s[SL_SPAN_STR_MAX];
        int64_t i;
        double d;
        int b;
    } v;
} sl_span_attr;

typedef struct sl_tracer sl_tracer;

/* A span. The layout is public so that spans need no allocation; fill it
 * only through the functions below. Exporters read attrs[0..n_attrs) and
 * links[0..n_links) only: the slots past them hold no defined value. */
typedef struct sl_span {
    sl_tracer *tracer; /* NULL: records nothing */
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t parent_span_id[8]; /* all zero: a root span */
    uint8_t flags;             /* SL_TRACE_FLAG_SAMPLED when sampled */
    uint8_t kind;              /* enum sl_span_kind */
    uint8_t status;            /* enum sl_span_status */
    uint8_t n_attrs, n_links;
    uint16_t state_len; /* bytes of state (below); 0: none */
    uint32_t dropped_attrs, dropped_links;
    int64_t start_ns, end_ns; /* wall clock, ns since the Unix epoch */
    char name[SL_SPAN_NAME_MAX];
    char status_msg[SL_SPAN_MSG_MAX];
    sl_span_attr attrs[SL_SPAN_ATTRS_MAX];
    sl_trace_ctx links[SL_SPAN_LINKS_MAX];
    /* The W3C tracestate the span carries (OTLP traceState): its parent's,
     * state_len bytes (not NUL-terminated). Exporters read
     * state[0..state_len) only. */
    char state[SL_TRACESTATE_MAX];
} sl_span;

/* Start span s now. parent: the context it continues (remote, from a
 * traceparent, or local, from sl_span_context), whose tracestate the span
 * keeps (copied); NULL or invalid: a new trace. t NULL: s records nothing (every other call on it is a no-op). */
SL_API void sl_span_start(sl_tracer *t, sl_span *s, const char *name, int kind,
                          const sl_trace_ctx *parent);
/* sl_span_start with the start time given (wall clock, ns since the Unix
 * epoch, as sl_trace_now_ns): for a span whose beginning is known only
 * once it is over (a window's result starts at its first record). */
SL_API void sl_span_start_at(sl_tracer *t, sl_span *s, const char *name, int kind,
                             const sl_trace_ctx *parent, int64_t start_ns);
/* The context to hand to children and to propagate (ids, sampled flag, and
 * the tracestate, which points into s: good while s is). */
SL_API sl_trace_ctx sl_span_context(const sl_span *s);
/* 1 when s is sampled (worth filling attributes). */
SL_API int sl_span_recording(const sl_span *s);
/* Attributes: a key set again takes the new value. Past SL_SPAN_ATTRS_MAX
 * an attribute is dropped and counted (OTLP droppedAttributesCount). */
SL_API void sl_span_set_str(sl_span *s, const char *key, const char *val);
SL_API void sl_span_set_int(sl_span *s, const char *key, int64_t val);
SL_API void sl_span_set_double(sl_span *s, const char *key, double val);
SL_API void sl_span_set_bool(sl_span *s, const char *key, int val);
/* A link to another span's context (invalid contexts are ignored). */
SL_API void sl_span_add_link(sl_span *s, const sl_trace_ctx *ctx);
/* enum sl_span_status, with a message (ERROR only; may be NULL). */
SL_API void sl_span_set_status(sl_span *s, int status, const char *msg);
/* End s now (end_ns 0) or at end_ns, and queue it if sampled. s may be
 * reused or freed when this returns; until started again, calls on it do
 * nothing (an end given twice queues the span once). */
SL_API void sl_span_end(sl_span *s, int64_t end_ns);
/* Wall clock, ns since the Unix epoch (the clock spans use). */
SL_API int64_t sl_trace_now_ns(void);
/* Spans whose ids are derived rather than drawn (the same after a restart,
 * so that a replayed span repeats its ids): give s these ids after
 * sl_span_start (parent_span_id NULL: a root). The trace id and the
 * sampling decision are the parent context's given to sl_span_start. */
SL_API void sl_span_set_ids(sl_span *s, const uint8_t span_id[8], const uint8_t *parent_span_id);

/* --- trace points ------------------------------------------------------------------ */

/* A trace point: sl_stream_trace(s, name, &conf) passes s's records on
 * unchanged and opens a span named `name` for each sampled one, a child of
 * the context the record carries; the record then carries the new span's
 * context (sinks write it, the next trace point continues the trace). The
 * span ends where the record leaves the chain after the point: at the next
 * trace point, at a sink, at an operator that does not hand its batch on
 * (an aggregate, a window), or at a filter that drops it; its attributes
 * name the point and that place (sluice.operator, sluice.instance,
 * sluice.end, sluice.end_instance), where the record was keyed
 * sluice.key_hash, and sluice.queue_ns: the nanoseconds of the span the
 * record spent waiting in channels between instances (0 when it never left
 * its chain; absent when an operator's own sl_ctx_trace_dropped ended it).
 * The span exports its record's tracestate (OTLP traceState). A span
 * whose record was not seen again before 16,384 newer spans were opened at
 * the same point instance, or by the end (the pipeline freed), ends at its
 * start with sluice.end "unseen" (and no tracestate). Sampling is the tracer's rule
 * (sl_trace_should_sample): parent-based for a record with a context, else
 * the trace-id ratio. Without a tracer (sl_pipeline_set_tracer) a point
 * only hands batches on. The stream keeps its input's key. */
typedef struct sl_trace_point_conf {
    /* Ratio for records that carry no context: 0 the tracer's
     * (sl_tracer_sample_ratio), (0, 1] this point's own, < 0 none (only
     * traces that arrive sampled are continued). */
    double sample_ratio;
    int kind; /* enum sl_span_kind; 0: INTERNAL */
} sl_trace_point_conf;
/* conf may be NULL (all defaults). NULL on a bad conf, with the pipeline's
 * build error set. */
SL_API sl_stream *sl_stream_trace(sl_stream *in, const char *name, const sl_trace_point_conf *conf);

/* --- exporters -------------------------------------------------------------------- */

/* What one export call gets: spans of one tracer, with its resource. */
typedef struct sl_trace_batch {
    const sl_span *spans;
    size_t n;
    const char *service_name; /* resource attribute service.name */
    const char *scope_name;   /* instrumentation scope: "sluice" */
    const char *scope_version;
    /* The call must return by then (CLOCK_MONOTONIC, ms): retries and
     * waits inside the exporter stop there. sl_tracer_free() may bring it
     * closer during the call: exporters that wait read it again through
     * sl_trace_batch_deadline(). */
    int64_t deadline_mono_ms;
    const sl_tracer *tracer;
} sl_trace_batch;

/* The batch's deadline now (CLOCK_MONOTONIC, ms): deadline_mono_ms, or
 * sooner once the tracer is being freed. Any thread. */
SL_API int64_t sl_trace_batch_deadline(const sl_trace_batch *b);

#define SL_TRACE_EXPORTER_VERSION 1

/* An exporter instance: its functions and their ud. export() runs on the
 * tracer's export thread only, one call at a time; it returns 0 when the
 * batch was delivered, or a negative SL_E code when it was not (the tracer
 * then counts the batch's spans as dropped). close() is called once, at
 * sl_tracer_free (or when sl_tracer_new fails, which also owns ud). */
typedef struct sl_trace_exporter {
    int version;      /* SL_TRACE_EXPORTER_VERSION */
    const char *kind; /* "otlp-file", "otlp-http" (messages) */
    int (*export)(void *ud, const sl_trace_batch *b);
    void (*close)(void *ud); /* optional */
    void *ud;
} sl_trace_exporter;

/* --- the tracer ------------------------------------------------------------------- */

typedef struct sl_tracer_conf {
    const char *service_name; /* required, non-empty; copied */
    double sample_ratio;      /* [0, 1], root spans sampled */
    /* Spans held for export, in each of two queues: whole spans, and trace
     * points' (sl_stream_trace) compact ones (128 bytes each). Rounded up to
     * a power of 2; 0: 2048 whole spans and 8192 trace points' spans. */
    uint32_t queue_capacity;
    uint32_t batch_size;         /* spans per export call at most; 0: 512 */
    int64_t flush_interval_ms;   /* export at least this often; 0: 1000 */
    int64_t export_timeout_ms;   /* one export call's time; 0: 10000 */
    int64_t shutdown_timeout_ms; /* sl_tracer_free's time to export what is queued; 0: 5000 */
} sl_tracer_conf;

/* Make a tracer and start its export thread. The tracer takes exp->ud over
 * on success and on failure (close() is called). SL_EINVAL with a one-line
 * message in err (may be NULL) for a bad conf or exporter, SL_ENOMEM. */
SL_API int sl_tracer_new(const sl_tracer_conf *conf, const sl_trace_exporter *exp, sl_tracer **out,
                         char *err, size_t errlen);
/* Export what is queued (within shutdown_timeout_ms), drop and count the
 * rest, join the export thread, close the exporter, free. Accepts NULL. */
SL_API void sl_tracer_free(sl_tracer *t);
/* Wait until every span queued before the call has been exported or
 * dropped, at most timeout_ms. 0, or SL_EAGAIN when the time ran out. */
SL_API int sl_tracer_flush(sl_tracer *t, int64_t timeout_ms);
/* The conf's service name. */
SL_API const char *sl_tracer_service_name(const sl_tracer *t);
/* The conf's sample ratio (root spans; sl_trace_should_sample's rule). */
SL_API double sl_tracer_sample_ratio(const sl_tracer *t);

typedef struct sl_tracer_stats {
    uint64_t started, ended; /* spans, sampled or not */
    uint64_t sampled;        /* spans started sampled */
    uint64_t exported;       /* spans the exporter accepted */
    uint64_t dropped_full;   /* sampled spans dropped: the queue was full */
    uint64_t dropped_export; /* spans of failed exports, or left at shutdown */
    uint64_t export_errors;  /* failed export calls */
    uint64_t batches;        /* export calls */
    uint32_t queue_capacity; /* the whole spans' queue's size in spans */
} sl_tracer_stats;
/* Any thread, also while spans are being exported (then a recent view). */
SL_API void sl_tracer_stats_get(const sl_tracer *t, sl_tracer_stats *out);

/* Attach tracer t to pipeline p, before it starts (SL_ESTATE after). The
 * pipeline takes t over: sl_pipeline_free() frees it (flushing), as does
 * attaching another one; NULL detaches (and frees) the current one. Engine
 * code reaches the tracer through the pipeline. */
SL_API int sl_pipeline_set_tracer(sl_pipeline *p, sl_tracer *t);
/* The pipeline's tracer (NULL: none), e.g. to read its stats after a run. */
SL_API sl_tracer *sl_pipeline_tracer(const sl_pipeline *p);

#ifdef __cplusplus
}
#endif
#endif
