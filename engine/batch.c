/*
 * engine/batch.c - record batches and their pools.
 *
 * Layout of one allocation (the columns have a fixed size, SL_BATCH_CAPACITY
 * records, so a batch is one malloc plus its payload area):
 *
 *   sl_batch | ts[CAP] int64 | hash[CAP] uint64 | var[CAP] sl_slice
 *
 * and `data` separately: CAP * width bytes for fixed-width streams, or a
 * growing arena for variable-length ones. A recycled batch keeps its data
 * area, so after warm-up nothing is allocated per batch or per record.
 * Invariant: data_len <= data_cap. data_len is the arena fill of
 * variable-length batches; fixed-width batches hold count * width bytes and
 * leave data_len at 0.
 *
 * The trace column (sluice/batch.h) is a separate allocation, its bits
 * then SL_BATCH_CAPACITY sl_trace_ctx and as many queueing times
 * (sli_trace_wait, the engine's), made the first time a record with a
 * context enters the batch and kept in trace_buf when the batch is recycled;
 * `trace` and `trace_set` point into it only while the batch carries
 * contexts. Attaching clears the bits (128 bytes), never the entries: an
 * entry is defined only where its bit is set. Invariant: bits at count and
 * after are clear (every operation here that removes records clears what
 * they leave), so appending never has to write one. Every copy of records
 * tests `trace` once, outside its per-record loop.
 *
 * Tracestate bytes. A context's `state` points into the column's state
 * blocks (a list at the end of trace_buf), STATE_BLOCK bytes each, filled
 * in order and never moved, so a pointer stays good while the batch holds
 * the context, through compaction too. Attaching the column empties them
 * (they are kept, like the column); copying a context into another batch
 * copies its bytes into that batch's blocks. A context whose state already
 * lies in the batch's blocks (a trace point rewriting record i's context)
 * keeps it without a copy.
 */
#include <stdlib.h>
#include <string.h>
#include "engine/pool.h"
#include "sluice/error.h"

static void blocks_free(sl_batch *b); /* the trace column's state blocks */

sl_batch *sli_batch_alloc(uint32_t width)
{
    size_t cols =
        (size_t)SL_BATCH_CAPACITY * (sizeof(int64_t) + sizeof(uint64_t) + sizeof(sl_slice));
    sl_batch *b = malloc(sizeof(*b) + cols);
    if (!b) return NULL;
    memset(b, 0, sizeof(*b));
    b->ts = (int64_t *)(b + 1);
    b->hash = (uint64_t *)(b->ts + SL_BATCH_CAPACITY);
    b->var = (sl_slice *)(b->hash + SL_BATCH_CAPACITY);
    b->width = width;
    if (width && sli_batch_grow(b, (size_t)width * SL_BATCH_CAPACITY) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

void sli_batch_destroy(sl_batch *b)
{
    if (!b) return;
    free(b->data);
    blocks_free(b);
    free(b->trace_buf);
    free(b);
}

#define TRACE_SET_BYTES (SLI_TRACE_WORDS * sizeof(uint64_t))
#define TRACE_COL_BYTES \
    (TRACE_SET_BYTES + (size_t)SL_BATCH_CAPACITY * (sizeof(sl_trace_ctx) + sizeof(int64_t)))

#define STATE_BLOCK 8192 /* at least SL_TRACESTATE_MAX */

typedef struct state_block {
    struct state_block *next;
    size_t used;
    char bytes[STATE_BLOCK];
} state_block;

/* The column's state blocks: `cur` is the one being filled; those before
 * it are full, those after it empty. */
typedef struct state_blocks {
    state_block *head, *cur;
} state_blocks;

static state_blocks *blocks_of(const sl_batch *b)
{
    return (state_blocks *)(void *)((uint8_t *)b->trace_buf + TRACE_COL_BYTES);
}

static void blocks_free(sl_batch *b)
{
    if (!b->trace_buf) return;
    for (state_block *k = blocks_of(b)->head, *next; k; k = next) {
        next = k->next;
        free(k);
    }
}

/* Point dst's state at n bytes copied from src into b's blocks (n at most
 * SL_TRACESTATE_MAX). 0 or SL_ENOMEM (then dst has no state). */
static int state_copy(sl_batch *b, sl_trace_ctx *dst, const char *src, size_t n)
{
    state_blocks *bl = blocks_of(b);
    state_block *k = bl->cur;
    if (!k || STATE_BLOCK - k->used < n) {
        state_block *next = k ? k->next : bl->head;
        if (!next) {
            next = malloc(sizeof(*next));
            if (!next) {
                dst->state = NULL;
                dst->state_len = 0;
                return SL_ENOMEM;
            }
            next->next = NULL;
            if (k)
                k->next = next;
            else
                bl->head = next;
        }
        next->used = 0;
        k = bl->cur = next;
    }
    memcpy(k->bytes + k->used, src, n);
    dst->state = k->bytes + k->used;
    k->used += n;
    return 0;
}

/* 1 when p lies in b's filled blocks. */
static int state_is_ours(const sl_batch *b, const char *p)
{
    const state_blocks *bl = blocks_of(b);
    for (const state_block *k = bl->head; k; k = k->next) {
        if (p >= k->bytes && p < k->bytes + k->used) return 1;
        if (k == bl->cur) break;
    }
    return 0;
}

/* Record i's context becomes *tc (valid), with its state in b's memory. */
static int put_ctx(sl_batch *b, uint32_t i, const sl_trace_ctx *tc)
{
    sl_trace_ctx *dst = &b->trace[i];
    *dst = *tc;
    b->trace_set[i >> 6] |= 1ull << (i & 63);
    if (!tc->state_len || !tc->state || tc->state_len > SL_TRACESTATE_MAX) {
        dst->state = NULL; /* none, or one sl_tracestate_parse did not make: not carried */
        dst->state_len = 0;
        return 0;
    }
    return state_is_ours(b, tc->state) ? 0 : state_copy(b, dst, tc->state, tc->state_len);
}

int sli_batch_trace_attach(sl_batch *b)
{
    if (b->trace) return 0;
    if (!b->trace_buf) {
        if (!(b->trace_buf = malloc(TRACE_COL_BYTES + sizeof(state_blocks)))) return SL_ENOMEM;
        *blocks_of(b) = (state_blocks){0};
    }
    memset(b->trace_buf, 0, TRACE_SET_BYTES);
    state_blocks *bl = blocks_of(b);
    bl->cur = bl->head;
    if (bl->cur) bl->cur->used = 0;
    b->trace_set = b->trace_buf;
    b->trace = (sl_trace_ctx *)((uint8_t *)b->trace_buf + TRACE_SET_BYTES);
    return 0;
}

int sl_batch_set_trace(sl_batch *b, uint32_t i, const sl_trace_ctx *tc)
{
    if (i >= b->count) return SL_EINVAL;
    if (!sl_trace_ctx_valid(tc)) {
        if (b->trace) b->trace_set[i >> 6] &= ~(1ull << (i & 63));
        return 0;
    }
    if (!b->trace && sli_batch_trace_attach(b) != 0) return SL_ENOMEM;
    sli_trace_wait(b)[i] = 0;
    return put_ctx(b, i, tc);
}

void sl_batch_truncate(sl_batch *b, uint32_t n)
{
    if (n >= b->count) return;
    if (b->trace) sli_trace_clear_from(b, n);
    b->count = n;
}

int sli_batch_grow(sl_batch *b, size_t need)
{
    size_t want = (size_t)b->data_len + need;
    if (want <= b->data_cap) return 0;
    if (want > UINT32_MAX) return SL_ETOOBIG;
    size_t cap = b->data_cap ? b->data_cap : 4096;
    while (cap < want) cap *= 2;
    if (cap > UINT32_MAX) cap = UINT32_MAX;
    uint8_t *d = realloc(b->data, cap);
    if (!d) return SL_ENOMEM;
    b->data = d;
    b->data_cap = (uint32_t)cap;
    return 0;
}

void *sl_batch_reserve(sl_batch *b, int64_t ts, uint64_t hash, uint32_t len)
{
    uint32_t i = b->count;
    if (i >= SL_BATCH_CAPACITY) return NULL;
    uint8_t *dst;
    if (b->width) {
        dst = b->data + (size_t)i * b->width;
    } else {
        if (b->data_cap - b->data_len < len && sli_batch_grow(b, len) != 0) return NULL;
        b->var[i].off = b->data_len;
        b->var[i].len = len;
        dst = b->data + b->data_len;
        b->data_len += len;
    }
    b->ts[i] = ts;
    b->hash[i] = hash;
    b->count = i + 1;
    return dst;
}

int sl_batch_push(sl_batch *b, int64_t ts, uint64_t hash, const void *payload, uint32_t len)
{
    if (b->count >= SL_BATCH_CAPACITY) return SL_EFULL;
    if (b->width && len != b->width) return SL_EINVAL;
    if (!b->width && (size_t)b->data_len + len > UINT32_MAX) return SL_ETOOBIG;
    void *dst = sl_batch_reserve(b, ts, hash, len);
    if (!dst) return SL_ENOMEM;
    if (len) memcpy(dst, payload, len);
    return 0;
}

int sli_batch_append_from(sl_batch *dst, const sl_batch *src, uint32_t i)
{
    sl_bytes r = sl_batch_bytes(src, i);
    int rc = sl_batch_push(dst, src->ts[i], src->hash[i], r.ptr, r.len);
    if (rc || !src->trace || !sli_trace_has(src, i)) return rc;
    rc = sl_batch_set_trace(dst, dst->count - 1, &src->trace[i]);
    if (!rc) sli_trace_wait(dst)[dst->count - 1] = sli_trace_wait(src)[i];
    return rc;
}

/* The compaction loop for one payload width W; a constant W lets the
 * compiler turn the payload copy into a few moves instead of a memmove call. */
#define COMPACT_LOOP(W)                                                        \
    for (uint32_t i = 0; i < n; i++) {                                         \
        if (!keep[i]) continue;                                                \
        if (i != j) {                                                          \
            b->ts[j] = b->ts[i];                                               \
            b->hash[j] = b->hash[i];                                           \
            memcpy(b->data + (size_t)j * (W), b->data + (size_t)i * (W), (W)); \
        }                                                                      \
        j++;                                                                   \
    }

/* Context i moves to the rank of i among the kept records: entries are
 * read in increasing i and written at a rank <= i, so none is overwritten
 * before it is read. The bits are rebuilt, which also clears those at the
 * new count and after. */
static void trace_compact(sl_batch *b, const uint64_t keep[SLI_TRACE_WORDS])
{
    int64_t *wait = sli_trace_wait(b);
    uint32_t base = 0; /* records kept before word w */
    for (uint32_t w = 0; w < SLI_TRACE_WORDS; w++) {
        uint64_t m = b->trace_set[w];
        b->trace_set[w] = 0;
        for (; m; m &= m - 1) {
            uint32_t bit = (uint32_t)__builtin_ctzll(m), i = (w << 6) + bit;
            if (!(keep[w] >> bit & 1)) continue;
            uint32_t j = base + (uint32_t)__builtin_popcountll(keep[w] & ((1ull << bit) - 1));
            if (j != i) {
                b->trace[j] = b->trace[i];
                wait[j] = wait[i];
            }
            b->trace_set[j >> 6] |= 1ull << (j & 63);
        }
        base += (uint32_t)__builtin_popcountll(keep[w]);
    }
}

void sl_batch_compact(sl_batch *b, const uint8_t *keep)
{
    if (b->trace) {
        uint64_t mask[SLI_TRACE_WORDS] = {0};
        for (uint32_t i = 0; i < b->count; i++)
            if (keep[i]) mask[i >> 6] |= 1ull << (i & 63);
        trace_compact(b, mask);
    }
    uint32_t n = b->count, j = 0, w = b->width;
    switch (w) {
    case 0:
        for (uint32_t i = 0; i < n; i++) {
            if (!keep[i]) continue;
            b->ts[j] = b->ts[i];
            b->hash[j] = b->hash[i];
            b->var[j] = b->var[i]; /* arena bytes stay where they are */
            j++;
        }
        break;
    case 8: COMPACT_LOOP(8) break;
    case 16: COMPACT_LOOP(16) break;
    case 24: COMPACT_LOOP(24) break;
    case 32: COMPACT_LOOP(32) break;
    case 48: COMPACT_LOOP(48) break;
    case 64: COMPACT_LOOP(64) break;
    default: COMPACT_LOOP(w) break;
    }
    b->count = j;
}

void sl_batch_clear(sl_batch *b)
{
    b->count = 0;
    b->data_len = 0;
    b->trace = NULL; /* its memory stays in trace_buf; attaching clears its bits */
}

/* --- pools ----------------------------------------------------------------- */

int sli_pool_init(sl_pool *pool)
{
    memset(pool, 0, sizeof(*pool));
    if (pthread_mutex_init(&pool->lock, NULL) != 0) return SL_ENOMEM;
    atomic_init(&pool->n_alloc, 0);
    return 0;
}

void sli_pool_destroy(sl_pool *pool)
{
    sl_batch *b = pool->depot;
    while (b) {
        sl_batch *n = b->next_free;
        sli_batch_destroy(b);
        b = n;
    }
    pool->depot = NULL;
    pthread_mutex_destroy(&pool->lock);
}

void sli_pool_cache_drain(sl_pool *pool, sl_pool_cache *c)
{
    if (!c->free) return;
    sl_batch *last = c->free;
    while (last->next_free) last = last->next_free;
    pthread_mutex_lock(&pool->lock);
    last->next_free = pool->depot;
    pool->depot = c->free;
    pool->n_depot += c->n;
    pthread_mutex_unlock(&pool->lock);
    c->free = NULL;
    c->n = 0;
}

/* Move up to one chunk from the depot into the cache (holds the lock). */
static void cache_refill(sl_pool *pool, sl_pool_cache *c)
{
    pthread_mutex_lock(&pool->lock);
    for (int k = 0; k < SL_POOL_CHUNK && pool->depot; k++) {
        sl_batch *b = pool->depot;
        pool->depot = b->next_free;
        pool->n_depot--;
        b->next_free = c->free;
        c->free = b;
        c->n++;
    }
    pthread_mutex_unlock(&pool->lock);
}

sl_batch *sli_pool_get(sl_pool *pool, sl_pool_cache *c, uint32_t width)
{
    sl_batch *b = NULL;
    if (c) {
        if (!c->free) cache_refill(pool, c);
        if (c->free) {
            b = c->free;
            c->free = b->next_free;
            c->n--;
        }
    } else {
        pthread_mutex_lock(&pool->lock);
        if ((b = pool->depot) != NULL) {
            pool->depot = b->next_free;
            pool->n_depot--;
        }
        pthread_mutex_unlock(&pool->lock);
    }
    if (!b) {
        b = sli_batch_alloc(0);
        if (!b) return NULL;
        atomic_fetch_add_explicit(&pool->n_alloc, 1, memory_order_relaxed);
    }
    b->next_free = NULL;
    b->pool = pool;
    b->count = 0;
    b->data_len = 0;
    b->trace = NULL;
    b->width = width;
    if (width && b->data_cap < (size_t)width * SL_BATCH_CAPACITY &&
        sli_batch_grow(b, (size_t)width * SL_BATCH_CAPACITY) != 0) {
        sli_pool_put(pool, c, b);
        return NULL;
    }
    return b;
}

void sli_pool_put(sl_pool *pool, sl_pool_cache *c, sl_batch *b)
{
    if (!b) return;
    if (!c) {
        pthread_mutex_lock(&pool->lock);
        b->next_free = pool->depot;
        pool->depot = b;
        pool->n_depot++;
        pthread_mutex_unlock(&pool->lock);
        return;
    }
    b->next_free = c->free;
    c->free = b;
    if (++c->n < 2 * SL_POOL_CHUNK) return;
    /* Spill one chunk to the depot. */
    sl_batch *head = c->free, *tail = head;
    for (int k = 1; k < SL_POOL_CHUNK; k++) tail = tail->next_free;
    c->free = tail->next_free;
    c->n -= SL_POOL_CHUNK;
    pthread_mutex_lock(&pool->lock);
    tail->next_free = pool->depot;
    pool->depot = head;
    pool->n_depot += SL_POOL_CHUNK;
    pthread_mutex_unlock(&pool->lock);
}

sl_batch *sli_batch_clone(sl_pool *pool, sl_pool_cache *c, const sl_batch *src)
{
    sl_batch *b = sli_pool_get(pool, c, src->width);
    if (!b) return NULL;
    size_t bytes = src->width ? (size_t)src->count * src->width : src->data_len;
    if (bytes > b->data_cap && sli_batch_grow(b, bytes) != 0) {
        sli_pool_put(pool, c, b);
        return NULL;
    }
    memcpy(b->ts, src->ts, src->count * sizeof(int64_t));
    memcpy(b->hash, src->hash, src->count * sizeof(uint64_t));
    if (!src->width) memcpy(b->var, src->var, src->count * sizeof(sl_slice));
    if (bytes) memcpy(b->data, src->data, bytes);
    if (src->trace) {
        if (sli_batch_trace_attach(b) != 0) {
            sli_pool_put(pool, c, b);
            return NULL;
        }
        int rc = 0;
        SLI_TRACE_EACH(src, i, {
            if (put_ctx(b, i, &src->trace[i]) != 0) rc = SL_ENOMEM;
            sli_trace_wait(b)[i] = sli_trace_wait(src)[i];
        })
        if (rc) {
            sli_pool_put(pool, c, b);
            return NULL;
        }
    }
    b->count = src->count;
    b->data_len = src->data_len;
    return b;
}
