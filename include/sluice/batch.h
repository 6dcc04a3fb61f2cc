/*
 * sluice/batch.h - record batches (public API).
 *
 * Records never travel one by one: they move in batches of up to
 * SL_BATCH_CAPACITY records of one stream. A batch is columnar:
 *
 *   ts[i]    event time of record i, int64 milliseconds since the Unix epoch
 *   hash[i]  64-bit key hash (xxHash3), set by key_by; 0 before it
 *   payload  either fixed-size structs stored inline (width > 0):
 *              data[i * width .. (i + 1) * width)
 *            or variable-length bytes (width == 0): var[i] = {off, len}
 *              into the batch's arena `data`
 *   trace[i] optional: record i's W3C trace context (sluice/tracectx.h)
 *
 * The trace column. `trace` is NULL while no record of the batch carries a
 * trace context, which is always so in a pipeline without tracing: then
 * nothing reads or writes it. It appears when a record with a context is
 * put in the batch: by a source that read one (sl_batch_set_trace, or
 * sl_ctx_set_trace before emitting), or by the engine copying records that
 * had one. It is sparse: bit i of trace_set says record i has a context,
 * and only then is trace[i] defined; read it with sl_batch_trace(). A
 * sampled record among a thousand then costs a bit test per record, not a
 * column of entries to zero and move. Invariant: bits at `count` and after
 * are clear, so a record appended without a context (sl_batch_push,
 * sl_emit, or columns written directly) has none without anyone writing
 * its bit. Code that shrinks a batch in place must keep that:
 * sl_batch_compact() and sl_batch_truncate() do. The engine keeps the
 * column through forward, chaining, channels, clones (several consumers,
 * broadcast), the hash shuffle and rebalance; map, filter, key_by keep each
 * record's context and flat_map gives each output its input record's
 * (sl_ctx_set_trace). Records an operator makes anew (aggregates, windows)
 * carry none unless it says otherwise. A context's tracestate bytes live
 * in the batch's memory (they move with the context, and are copied when
 * the record is copied into another batch): a pointer read from trace[i]
 * is good while the batch is.
 *
 * A stream's width is fixed when the node that produces it is created, so an
 * operator knows which of the two layouts it reads. Batches and their arenas
 * are owned by the engine and recycled through per-worker pools: an operator
 * never allocates or frees one, and nothing is allocated per record once the
 * pools are warm (an arena grows, rarely, and keeps its size when recycled).
 *
 * The struct is public so that operators can run tight loops over the columns;
 * fields other than those documented here are the engine's.
 */
#ifndef SLUICE_BATCH_H
#define SLUICE_BATCH_H

#include "sluice/export.h"
#include <stdint.h>
#include <string.h>
#include "sluice/tracectx.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_BATCH_CAPACITY 1024

/* Event time bounds: "no watermark yet" and "end of all time". */
#define SL_TIME_MIN INT64_MIN
#define SL_TIME_MAX INT64_MAX

typedef struct sl_slice {
    uint32_t off;
    uint32_t len;
} sl_slice;

typedef struct sl_bytes {
    const void *ptr;
    uint32_t len;
} sl_bytes;

typedef struct sl_batch {
    uint32_t count;             /* records present, <= SL_BATCH_CAPACITY */
    uint32_t width;             /* fixed payload size, 0 for variable-length bytes */
    int64_t *ts;                /* [SL_BATCH_CAPACITY] */
    uint64_t *hash;             /* [SL_BATCH_CAPACITY] */
    sl_slice *var;              /* [SL_BATCH_CAPACITY], used when width == 0 */
    uint8_t *data;              /* fixed payloads, or the arena of variable ones */
    uint32_t data_len;          /* bytes of data in use (arena fill) */
    uint32_t data_cap;          /* bytes allocated at data */
    struct sl_batch *next_free; /* engine: pool link */
    void *pool;                 /* engine: owning pool */
    /* Added last (the layout above is unchanged): the trace column, NULL
     * when no record carries a context (see above), else
     * [SL_BATCH_CAPACITY] entries, trace[i] defined where bit i of
     * trace_set ([SL_BATCH_CAPACITY / 64] words) is set. */
    sl_trace_ctx *trace;
    void *trace_buf;     /* engine: the column's memory, kept when recycled */
    uint64_t *trace_set; /* with trace: which records have a context */
} sl_batch;

/* Payload of record i: for fixed-width streams a pointer to its struct. */
static inline void *sl_batch_at(const sl_batch *b, uint32_t i)
{
    return b->width ? b->data + (size_t)i * b->width : b->data + b->var[i].off;
}

/* Payload of record i as bytes, whatever the layout. */
static inline sl_bytes sl_batch_bytes(const sl_batch *b, uint32_t i)
{
    sl_bytes r;
    if (b->width) {
        r.ptr = b->data + (size_t)i * b->width;
        r.len = b->width;
    } else {
        r.ptr = b->data + b->var[i].off;
        r.len = b->var[i].len;
    }
    return r;
}

/* Append one record, copying `len` payload bytes (for fixed-width batches len
 * must equal width). Returns 0, SL_EFULL when the batch holds
 * SL_BATCH_CAPACITY records, SL_ETOOBIG past 4 GiB of arena, or SL_ENOMEM. */
SL_API int sl_batch_push(sl_batch *b, int64_t ts, uint64_t hash, const void *payload, uint32_t len);

/* Reserve room for one record and return a pointer to its payload
 * (`len` bytes, uninitialised), or NULL when full / out of memory. */
SL_API void *sl_batch_reserve(sl_batch *b, int64_t ts, uint64_t hash, uint32_t len);

/* Keep only the records whose keep[i] is nonzero, in order (in place). */
SL_API void sl_batch_compact(sl_batch *b, const uint8_t *keep);

/* Drop every record; keeps the allocated room. */
SL_API void sl_batch_clear(sl_batch *b);

/* Keep the first n records (n <= count), dropping the others' trace
 * contexts with them. */
SL_API void sl_batch_truncate(sl_batch *b, uint32_t n);

/* Give record i (< count) the trace context *tc (copied, with its
 * tracestate bytes; a state longer than SL_TRACESTATE_MAX is not carried);
 * a NULL tc, or one that is not valid (sl_trace_ctx_valid: both ids
 * non-zero), gives it none. Makes the batch's trace column on first use
 * (its memory is kept when the batch is recycled, so this allocates once
 * per batch of the pool at most, and tracestate blocks of 8 KiB as the
 * states need). Returns 0, SL_EINVAL for i >= count, or SL_ENOMEM (then
 * the record has the context without its state). */
SL_API int sl_batch_set_trace(sl_batch *b, uint32_t i, const sl_trace_ctx *tc);

/* Record i's trace context, or NULL when it has none (one pointer test when
 * the batch has no trace column, else one bit test). */
static inline const sl_trace_ctx *sl_batch_trace(const sl_batch *b, uint32_t i)
{
    return b->trace && (b->trace_set[i >> 6] >> (i & 63) & 1) ? &b->trace[i] : NULL;
}

#ifdef __cplusplus
}
#endif
#endif
