/*
 * engine/pool.h - recycling of record batches (private).
 *
 * A batch is allocated once and then recycled for the life of the pipeline.
 * Each worker keeps a small cache (no lock); caches exchange batches with one
 * pipeline-wide depot in chunks of SL_POOL_CHUNK under a mutex, so the lock is
 * taken about once per SL_POOL_CHUNK batches, never per record. Batches flow
 * from producing to consuming workers, so one worker's cache tends to empty
 * and another's to fill: the depot evens them out.
 */
#ifndef SLUICE_ENGINE_POOL_H
#define SLUICE_ENGINE_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include "sluice/batch.h"

#define SL_POOL_CHUNK 16

typedef struct sl_pool {
    pthread_mutex_t lock;
    sl_batch *depot; /* free list through next_free */
    size_t n_depot;
    atomic_size_t n_alloc; /* batches in existence */
} sl_pool;

typedef struct sl_pool_cache {
    sl_batch *free;
    size_t n;
} sl_pool_cache;

int sli_pool_init(sl_pool *pool);
/* Frees every batch in the depot; caches must have been drained into it. */
void sli_pool_destroy(sl_pool *pool);
void sli_pool_cache_drain(sl_pool *pool, sl_pool_cache *c);

/* An empty batch of the given width (cache may be NULL: then the depot is
 * used under its lock). NULL when out of memory. */
sl_batch *sli_pool_get(sl_pool *pool, sl_pool_cache *c, uint32_t width);
void sli_pool_put(sl_pool *pool, sl_pool_cache *c, sl_batch *b);

/* A standalone batch outside any pool, and its destructor (tests, tools). */
sl_batch *sli_batch_alloc(uint32_t width);
void sli_batch_destroy(sl_batch *b);
/* Make room for `need` more arena bytes. 0 or SL_ENOMEM / SL_ETOOBIG. */
int sli_batch_grow(sl_batch *b, size_t need);
/* Copy of b (same width, records, arena) from the pool. */
sl_batch *sli_batch_clone(sl_pool *pool, sl_pool_cache *c, const sl_batch *b);
/* Give b its trace column (no record with a context) if it has none. 0 or
 * SL_ENOMEM. */
int sli_batch_trace_attach(sl_batch *b);

/* The trace column's bits (b->trace set; sluice/batch.h). */
#define SLI_TRACE_WORDS (SL_BATCH_CAPACITY / 64)
/* The engine's part of the column, after the entries: per record with a
 * context, the nanoseconds it has waited in channels since its context was
 * set (a trace point's span: its queueing delay, engine/spans.c). Defined
 * where the record's bit is set; moves with the context. */
static inline int64_t *sli_trace_wait(const sl_batch *b)
{
    return (int64_t *)(void *)(b->trace + SL_BATCH_CAPACITY);
}
static inline int sli_trace_has(const sl_batch *b, uint32_t i)
{
    return (int)(b->trace_set[i >> 6] >> (i & 63) & 1);
}
/* Clear the bits of records n and after (the invariant, after a batch
 * shrank to n records). */
static inline void sli_trace_clear_from(sl_batch *b, uint32_t n)
{
    if (n >= SL_BATCH_CAPACITY) return;
    b->trace_set[n >> 6] &= (1ull << (n & 63)) - 1;
    for (uint32_t w = (n >> 6) + 1; w < SLI_TRACE_WORDS; w++) b->trace_set[w] = 0;
}
/* Run the statements given after i for each record i of b (b->trace set)
 * that has a context, in order (they must not break or continue). */
#define SLI_TRACE_EACH(b, i, ...)                                               \
    for (uint32_t w_ = 0; w_ < SLI_TRACE_WORDS && (w_ << 6) < (b)->count; w_++) \
        for (uint64_t m_ = (b)->trace_set[w_]; m_; m_ &= m_ - 1) {              \
            uint32_t i = (w_ << 6) + (uint32_t)__builtin_ctzll(m_);             \
            __VA_ARGS__                                                         \
        }
/* Append record i of src to dst (widths equal), with its trace context.
 * 0 or a negative code. */
int sli_batch_append_from(sl_batch *dst, const sl_batch *src, uint32_t i);

#endif
