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

#ifdef __cplusplus
}
#endif
#endif
