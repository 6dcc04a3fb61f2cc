/*
 * engine/timer.c - event-time timers of one instance.
 *
 * A binary min-heap ordered by (ts, seq), seq being the insertion number, so
 * timers with equal times fire in the order they were set and every run is
 * deterministic. A (key, ts) pair is registered once: a set of the pairs
 * turns a second registration into a no-op, so operators may set the timer
 * of a window for every record of it.
 *
 * Memory (one timer per key and window: at a million keys it counts). The
 * set is a keyed state table whose entry is (pair_hash(hash, ts), key bytes)
 * -> seq: the key bytes alone, so that a key of up to 8 bytes sits inline in
 * the table's slot (no arena bytes); ts is told apart by the hash, which is
 * one-to-one in ts for a given key hash (xor with ts times an odd constant,
 * xorshift, multiplication by an odd constant: each a bijection of 64-bit
 * words), and a key has one hash, so (pair hash, key) names one (key, ts).
 * A heap entry is 40 bytes and holds a key of up to 8 bytes inline; longer
 * keys are copied into one malloc'd block per timer (timers are made per
 * key and window, not per record).
 *
 * Deleting is lazy: the set maps each live pair to the seq of its heap
 * entry; delete removes the pair from the set, and pop discards heap entries
 * whose pair is gone or belongs to a newer entry (deleted, then set again),
 * so a deleted timer never fires and a re-set one fires once.
 */
#include "engine/timer.h"
#include <stdlib.h>
#include <string.h>
#include "sluice/error.h"
#include "sluice/state.h"

typedef struct tmr {
    int64_t ts;
    uint64_t seq;
    uint64_t hash;
    uint32_t klen;
    union {
        uint8_t *p;   /* klen > INLINE_KEY: malloc'd copy */
        uint8_t b[8]; /* klen <= INLINE_KEY: the key itself */
    } key;
} tmr;
#define INLINE_KEY 8
_Static_assert(sizeof(tmr) == 40, "a heap entry is 40 bytes");

static inline const uint8_t *tmr_key(const tmr *x)
{
    return x->klen <= INLINE_KEY ? x->key.b : x->key.p;
}
static inline void tmr_free(tmr *x)
{
    if (x->klen > INLINE_KEY) free(x->key.p);
}

struct sl_timers {
    tmr *heap;
    size_t n, cap;
    uint64_t seq;
    sl_state *set;
    tmr popped;  /* the last popped timer: its key is out->key until the next pop */
    size_t dead; /* heap entries deleted but not yet popped */
};

sl_timers *sli_timers_new(void)
{
    sl_timers *t = calloc(1, sizeof(*t));
    if (!t) return NULL;
    t->set = sl_state_new(sizeof(uint64_t)); /* pair -> seq of its heap entry */
    if (!t->set) {
        free(t);
        return NULL;
    }
    return t;
}

void sli_timers_free(sl_timers *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) tmr_free(&t->heap[i]);
    free(t->heap);
    sl_state_free(t->set);
    tmr_free(&t->popped);
    free(t);
}

static int before(const tmr *a, const tmr *b)
{
    return a->ts < b->ts || (a->ts == b->ts && a->seq < b->seq);
}

/* The hash of a pair in the set: one-to-one in ts for a given hash (see
 * the file comment), so the set's key is the key bytes alone. */
static uint64_t pair_hash(uint64_t hash, int64_t ts)
{
    uint64_t h = hash ^ ((uint64_t)ts * 0x9E3779B97F4A7C15ull);
    h ^= h >> 29;
    return h * 0xBF58476D1CE4E5B9ull;
}

int sli_timers_add(sl_timers *t, int64_t ts, uint64_t hash, const void *key, uint32_t klen)
{
    int created = 0;
    void *live = sl_state_get(t->set, pair_hash(hash, ts), key, klen, &created);
    if (!live) return SL_ENOMEM;
    if (!created) return 0;
    memcpy(live, &t->seq, sizeof(t->seq)); /* the entry made below */
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        tmr *h = realloc(t->heap, cap * sizeof(*h));
        if (!h) goto oom;
        t->heap = h;
        t->cap = cap;
    }
    tmr x = {.ts = ts, .seq = t->seq, .hash = hash, .klen = klen};
    if (klen > INLINE_KEY) {
        if (!(x.key.p = malloc(klen))) goto oom;
        memcpy(x.key.p, key, klen);
    } else if (klen) {
        memcpy(x.key.b, key, klen);
    }
    t->seq++;
    size_t i = t->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&x, &t->heap[parent])) break;
        t->heap[i] = t->heap[parent];
        i = parent;
    }
    t->heap[i] = x;
    return 0;
oom:
    sl_state_remove(t->set, pair_hash(hash, ts), key, klen);
    return SL_ENOMEM;
}

/* Take the heap's top entry out into *top. */
static void heap_take(sl_timers *t, tmr *top)
{
    *top = t->heap[0];
    tmr last = t->heap[--t->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const tmr *best = &last;
        if (l < t->n && before(&t->heap[l], best)) m = l, best = &t->heap[l];
        if (r < t->n && before(&t->heap[r], best)) m = r;
        if (m == i) break;
        t->heap[i] = t->heap[m];
        i = m;
    }
    if (t->n) t->heap[i] = last;
}

int sli_timers_pop(sl_timers *t, int64_t wm, sl_timer *out)
{
    tmr_free(&t->popped);
    t->popped.klen = 0;
    tmr top;
    for (;;) {
        if (t->n == 0 || t->heap[0].ts > wm) return 0;
        heap_take(t, &top);
        uint64_t h = pair_hash(top.hash, top.ts), live;
        void *v = sl_state_find(t->set, h, tmr_key(&top), top.klen);
        if (v) memcpy(&live, v, sizeof(live));
        if (v && live == top.seq) {
            sl_state_remove(t->set, h, tmr_key(&top), top.klen);
            break;
        }
        tmr_free(&top); /* deleted (and maybe set again: a newer entry fires) */
        t->dead--;
    }
    t->popped = top; /* out->key points into it (inline) or at its block */
    out->ts = top.ts;
    out->hash = top.hash;
    out->key = top.klen ? tmr_key(&t->popped) : NULL;
    out->key_len = top.klen;
    return 1;
}

int sli_timers_delete(sl_timers *t, int64_t ts, uint64_t hash, const void *key, uint32_t klen)
{
    if (!t) return 0;
    if (sl_state_remove(t->set, pair_hash(hash, ts), key, klen) <= 0) return 0;
    t->dead++;
    return 1;
}

size_t sli_timers_count(const sl_timers *t)
{
    return t ? t->n - t->dead : 0;
}

int64_t sli_timers_next(const sl_timers *t)
{
    return t && t->n ? t->heap[0].ts : INT64_MAX;
}
