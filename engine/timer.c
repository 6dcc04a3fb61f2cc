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
 *
 * Snapshot (sli_timers_snapshot / sli_timers_restore): the live timers (set,
 * neither fired nor deleted) in firing order, (ts, seq) ascending, so that a
 * restore re-adding them in file order keeps the order of equal times. All
 * integers little-endian; format version 1:
 *
 *    offset  size      field
 *    0       4         magic "SLTM" (53 4C 54 4D)
 *    4       2         format version, 1
 *    6       2         reserved, 0
 *    8       8         N: number of timers
 *    16      ...       N entries, by (ts, seq) ascending
 *    len-8   8         checksum: XXH3_64bits of bytes [0, len-8)
 *
 *  Entry:
 *    0       8         ts (int64, two's complement)
 *    8       8         key hash (its key group says which instance owns it)
 *    16      4         key_len (< 2^32 - 1)
 *    20      key_len   key bytes
 *
 * Restore validates the whole input (magic, version, reserved, checksum,
 * every length, N, ts order) before it changes anything, then re-adds the
 * timers whose key group lies in [kg_lo, kg_hi]; a timer already set is left
 * as it is. It is all-or-nothing: when adding fails (SL_ENOMEM) half-way the
 * timers it added are taken out again (rollback below), so on any error the
 * set of live timers is unchanged. Seq numbers are not stored: restored
 * timers get fresh ones in file order, after every timer already set.
 */
#include "engine/base/le.h"
#include "engine/timer.h"
#include <stdlib.h>
#include <string.h>
#include "sluice/error.h"
#include "sluice/state.h"
#include <xxhash.h>

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

/* --- snapshot ------------------------------------------------------------ */

#define TSNAP_MAGIC   "SLTM"
#define TSNAP_VERSION 1
#define TSNAP_HDR     16
#define TSNAP_ENT     20
#define TSNAP_TRAILER 8

/* Is heap entry x live: its pair is in the set and maps to x's seq? */
static int tmr_live(const sl_timers *t, const tmr *x)
{
    uint64_t live;
    void *v = sl_state_find(t->set, pair_hash(x->hash, x->ts), tmr_key(x), x->klen);
    if (!v) return 0;
    memcpy(&live, v, sizeof(live));
    return live == x->seq;
}

static int by_fire_order(const void *a, const void *b)
{
    const tmr *x = *(const tmr *const *)a, *y = *(const tmr *const *)b;
    return before(x, y) ? -1 : before(y, x) ? 1 : 0;
}

int sli_timers_snapshot(const sl_timers *t, sl_buf *out)
{
    size_t n = 0, total = TSNAP_HDR + TSNAP_TRAILER, pos;
    const tmr **live = NULL;
    uint8_t *base;
    int rc = 0;

    if (!out) return SL_EINVAL;
    if (t && t->n) {
        live = malloc(t->n * sizeof(*live));
        if (!live) return SL_ENOMEM;
        for (size_t i = 0; i < t->n; i++) {
            if (!tmr_live(t, &t->heap[i])) continue;
            live[n++] = &t->heap[i];
            if (t->heap[i].klen > SIZE_MAX / 4 - total) {
                rc = SL_ETOOBIG;
                goto fail;
            }
            total += TSNAP_ENT + (size_t)t->heap[i].klen;
        }
        qsort(live, n, sizeof(*live), by_fire_order);
    }
    rc = sl_buf_reserve(out, total);
    if (rc) goto fail;
    base = out->ptr + out->len;
    memcpy(base, TSNAP_MAGIC, 4);
    sli_put_le(base + 4, TSNAP_VERSION, 2);
    sli_put_le(base + 6, 0, 2);
    sli_put_le(base + 8, n, 8);
    pos = TSNAP_HDR;
    for (size_t i = 0; i < n; i++) {
        const tmr *x = live[i];
        sli_put_le(base + pos, (uint64_t)x->ts, 8);
        sli_put_le(base + pos + 8, x->hash, 8);
        sli_put_le(base + pos + 16, x->klen, 4);
        if (x->klen) memcpy(base + pos + TSNAP_ENT, tmr_key(x), x->klen);
        pos += TSNAP_ENT + x->klen;
    }
    sli_put_le(base + pos, XXH3_64bits(base, pos), 8);
    out->len += total;
fail:
    free(live);
    return rc;
}

/* Check every rule of the format; changes nothing. *sel: timers in range. */
static int tsnap_validate(const uint8_t *d, size_t len, uint32_t kg_lo, uint32_t kg_hi, size_t *sel)
{
    size_t end, pos = TSNAP_HDR;
    uint64_t n;
    int64_t prev = INT64_MIN;

    if (len < TSNAP_HDR + TSNAP_TRAILER) return SL_ECORRUPT;
    if (memcmp(d, TSNAP_MAGIC, 4) != 0 || sli_get_le(d + 4, 2) != TSNAP_VERSION ||
        sli_get_le(d + 6, 2) != 0)
        return SL_ECORRUPT;
    end = len - TSNAP_TRAILER;
    if (XXH3_64bits(d, end) != sli_get_le(d + end, 8)) return SL_ECORRUPT;
    n = sli_get_le(d + 8, 8);
    *sel = 0;
    for (uint64_t k = 0; k < n; k++) {
        int64_t ts;
        uint32_t klen;
        if (end - pos < TSNAP_ENT) return SL_ECORRUPT;
        ts = (int64_t)sli_get_le(d + pos, 8);
        klen = (uint32_t)sli_get_le(d + pos + 16, 4);
        if (ts < prev || klen == UINT32_MAX || klen > end - pos - TSNAP_ENT) return SL_ECORRUPT;
        prev = ts;
        uint32_t kg = sl_key_group(sli_get_le(d + pos + 8, 8));
        if (kg >= kg_lo && kg <= kg_hi) (*sel)++;
        pos += TSNAP_ENT + (size_t)klen;
    }
    return pos == end ? 0 : SL_ECORRUPT;
}

/* Re-establish the heap property over heap[0 .. n). */
static void heapify(sl_timers *t)
{
    for (size_t s = t->n / 2; s-- > 0;) {
        tmr x = t->heap[s];
        size_t i = s;
        for (;;) {
            size_t l = 2 * i + 1, r = l + 1, m = i;
            const tmr *best = &x;
            if (l < t->n && before(&t->heap[l], best)) m = l, best = &t->heap[l];
            if (r < t->n && before(&t->heap[r], best)) m = r;
            if (m == i) break;
            t->heap[i] = t->heap[m];
            i = m;
        }
        t->heap[i] = x;
    }
}

/* Take out every timer added with a seq >= seq0 (the ones a failed restore
 * added): their pairs leave the set, their entries the heap. */
static void rollback(sl_timers *t, uint64_t seq0)
{
    size_t w = 0;
    for (size_t i = 0; i < t->n; i++) {
        tmr *x = &t->heap[i];
        if (x->seq < seq0) {
            t->heap[w++] = *x;
            continue;
        }
        sl_state_remove(t->set, pair_hash(x->hash, x->ts), tmr_key(x), x->klen);
        tmr_free(x);
    }
    t->n = w;
    heapify(t);
}

int sli_timers_restore(sl_timers *t, const void *data, size_t len, uint32_t kg_lo, uint32_t kg_hi)
{
    const uint8_t *d = data;
    size_t sel, pos = TSNAP_HDR;
    uint64_t n, seq0;
    int rc;

    if (!t || kg_lo > kg_hi || (!data && len)) return SL_EINVAL;
    if (!data) return SL_ECORRUPT;
    rc = tsnap_validate(d, len, kg_lo, kg_hi, &sel);
    if (rc) return rc;
    if (sel == 0) return 0;
    if (sel > SIZE_MAX / sizeof(tmr) - t->n) return SL_ENOMEM;
    if (t->n + sel > t->cap) { /* room up front: fewer ways to fail half-way */
        tmr *h = realloc(t->heap, (t->n + sel) * sizeof(*h));
        if (!h) return SL_ENOMEM;
        t->heap = h;
        t->cap = t->n + sel;
    }
    seq0 = t->seq;
    n = sli_get_le(d + 8, 8);
    for (uint64_t k = 0; k < n; k++) {
        int64_t ts = (int64_t)sli_get_le(d + pos, 8);
        uint64_t hash = sli_get_le(d + pos + 8, 8);
        uint32_t klen = (uint32_t)sli_get_le(d + pos + 16, 4), kg = sl_key_group(hash);
        if (kg >= kg_lo && kg <= kg_hi) {
            rc = sli_timers_add(t, ts, hash, d + pos + TSNAP_ENT, klen);
            if (rc) {
                rollback(t, seq0);
                return rc;
            }
        }
        pos += TSNAP_ENT + (size_t)klen;
    }
    return 0;
}
