/*
 * operators/window/slices.c - tumbling and sliding windows over slices
 * (sluice/window.h states the semantics; window.c builds the node).
 *
 * Time is cut into slices of g = gcd(size, slide) aligned on `offset`:
 * slice n is [off + n g, off + (n + 1) g). In slices a window is k = size / g
 * long and windows start every s = slide / g, so window ends are e = m s + k
 * and window e holds slices [e - k, e); it fires when the watermark reaches
 * off + e g - 1. Each record is added once, to its slice. When s > k
 * (slide > size) some slices lie in no window: a record there is not late,
 * it goes to the unassigned port (3), whatever the watermark.
 *
 * The slices of a key live in ONE block of memory, found through ONE
 * keyed-state value (table "slices", keyed by the record key alone, so a
 * record costs one lookup of its own key): the value is a pointer to the
 * key's block, which holds its header and its ring of cmask + 1 slots,
 * slice n in slot n & (cap - 1). Why a pointer: a hash table pays for its
 * empty slots (it is 3/8 to 3/4 full) and, while it doubles, for two arrays
 * at once; a malloc'd block pays for its own bytes only. So the table's
 * slot is 24 + 8 bytes, and the block is as large as the key needs: a new
 * key's ring has ONE slot, and it grows (ring_fit: a new block, doubling,
 * slots moved to their new places, the table's pointer updated) when a
 * record makes a slice outside it, up to w->cap slots (a power of two,
 * sized at open: k + L / g + max(k, 8), at most 4096; a test can force it,
 * window_test.h); past that the slice goes to the far list, as below. A
 * block never moves otherwise (the table moves the pointer, not the block),
 * so the hot-key cache's pointers stay valid until ring_fit or removal. The
 * record path is unchanged: table slot -> block, as it was table slot ->
 * inline ring; ring_fit runs only when a new slice is made. Growing may move
 * base down (to a new slice below it, not expired, or, when windows
 * overlap, to the start of the first window holding the lowest slice, so
 * that its windows fire by block aggregates) and moves far slices that come
 * into range into the ring. The block is freed with its key (timer) or at
 * close.
 *
 * Memory of a key of a tumbling count with 8-byte keys: a table slot of 32
 * bytes (3/8 to 3/4 full, twice over while it doubles), a block of 64 + 16
 * (one ring slot while the key has one slice), plus its timer
 * (engine/timer.c). `sluice bench windows --keys N` measures it.
 *
 *   value      0              8        the key's block (its khdr)
 *
 *   block      -56            16       kext: pb, pu: aux of slices pb k .. pu = prefixes
 *              (only when     16       sb, slo: aux of slices slo .. sb k + k - 1 = suffixes
 *              k > s or       16       dlo, dhi: slices changed since the last
 *              early firing)           early firing (dlo > dhi: none)
 *                             8        early: an early-firing timer is pending
 *   khdr       0              8        base: the ring holds slices [base, base + cap)
 *              8              8        top: 1 + highest slice with data
 *              16             8        tmr: earliest timer set, not yet fired
 *              24             8        nxt: first window end no timer has handled
 *              32             8        aux_hi: highest slice whose aux is in use
 *              40             8        far_head: smallest far slice
 *              48             4        n_far: slices in the far list
 *              52             4        cmask: the ring has cmask + 1 slots
 *              56             8        lo: no ring slot in [base, lo) has data
 *   slot i     64 + i stride  8        tag: the slice held (== n: slot has data)
 *                             a8       accumulator (acc_size rounded up to 8)
 *                             a8       aux (only when windows overlap, k > s)
 *
 * Slices outside [base, base + cap) (records far ahead of the watermark, or
 * behind the ring of a new key) go to the table "far", key (record key ‖
 * slice, int64; see window_int.h), a list sorted by slice:
 *
 *   far value  0              8        next far slice of the key
 *              8              1        has_next
 *              9              7        unused
 *              16             acc      accumulator
 *
 * A slice lives in exactly one place: the ring when it is in range, else the
 * far list; when base moves up (expiry) far slices that come into range move
 * into the ring. Slices below expired_below(W) have expired (every window
 * holding them has end - 1 + L <= W): base never goes below that bound and
 * a record in such a slice is late.
 *
 * Firing. A key has at most one live timer that matters (tmr): at the firing
 * time of the first window after nxt that holds data, or, when none is left,
 * at the expiry of its last slice. The timer callback fires every due window
 * holding data in order (empty windows are skipped by jumping to the next
 * slice with data), purges, sets nxt past the watermark and sets the next
 * timer; when no data is left the key is removed. A record in a new slice
 * sets a timer only if it is earlier than tmr; a record for windows already
 * due but not expired (allowed lateness) fires them at once.
 *
 * Overlapping windows (sliding) are combined with prefix / suffix aggregates
 * over blocks of k slices (van Herk / Gil-Werman): window [a, a + k) is
 * suffix(a) of block a / k merged with prefix(a + k - 1) of the next block.
 * Prefixes are extended as windows advance, suffixes computed once per block,
 * so a firing costs O(1) merges amortized instead of k. A record that changes
 * a slice whose aux is in use invalidates the affected prefix / suffix
 * (lateness); windows re-fired for late records, windows with far slices or
 * outside the ring are merged slice by slice.
 *
 * next_data() scans the ring from max(from, base, lo); a scan that starts at
 * that bound raises lo to the slice it finds, so the scans of a key's
 * firings do not revisit empty slots. A new key's ring starts at the first
 * window holding its first slice when the ring has room for it, so its
 * first windows fire by block aggregates too.
 *
 * Early firing (early_ms > 0): a record sets a processing-time timer for its
 * key (now + early_ms) unless one is pending, and widens [dlo, dhi]. When it
 * is due, each window that holds a slice of [dlo, dhi] and that the
 * watermark has not fired yet fires its partial result on port 2 (merged
 * slice by slice, so the block aggregates of the final firings are
 * untouched). No data, no early firing.
 *
 * Per record: the hot-key cache (below) finds the key's value without a
 * table lookup; the slice of consecutive records in one slice is computed
 * once, and with it whether the slice is late or in no window (one side
 * port number, so the record loop has one test for both); count and sum
 * (aggregates flagged SL_AGG_INT64_SUM with SL_AGG_ADD_ONE or
 * SL_AGG_ADD_VALUE) accumulate and merge inline (int64 + checked by
 * __builtin_add_overflow, an add and a jo; no call): a sum that leaves int64
 * fails the job naming the key and window, never wraps; functions of the watermark alone are remembered
 * per watermark; divisions use 64-bit operands unless the values need 128
 * bits (times near the int64 limits must not overflow).
 *
 * Invariants:
 *  - expired slices are purged when the key's timer runs or a record touches
 *    the key; timers up to the watermark fire before any record is processed
 *    at that watermark, so a record never sees a due window that has not
 *    fired;
 *  - a window with data fires exactly once by timer (timers are set only at
 *    times above the current watermark; nxt moves past every window handled),
 *    plus once per record that reaches it after it fired and before it
 *    expired;
 *  - nothing is allocated per record: scratch buffers live in the instance.
 *
 * Snapshots: the table "slices" holds pointers, so the engine's keyed-state
 * snapshot cannot carry it; the window's snapshot hook writes the blocks
 * themselves (format drawn at sli_win_snapshot, end of file), "far" is a
 * plain keyed table the engine snapshots, the timers are the engine's.
 *
 * Runs on the worker thread of the instance's task, like every operator.
 */
#include <sys/mman.h>
#include "operators/window/window_int.h"

/* Hot-key cache of the record path: a record's key (up to 8 bytes,
 * zero-padded into key8) -> its block (khdr), direct mapped by key hash, so
 * that a record of a key seen recently skips the table lookup. A block
 * stays where it is until ring_fit moves it or its key is removed; those,
 * and inserts into the table (kept from when values lived in the table),
 * start a new generation. Equal keys have equal hashes, so comparing the
 * key bytes is enough. */
#define KC_SIZE 2048
typedef struct kc_ent {
    uint64_t key8;
    uint32_t klen1; /* key length + 1 */
    uint32_t gen;
    struct khdr *hd;
} kc_ent;

static inline void kc_invalidate(win *w)
{
    if (++w->kc_gen == 0) { /* wrapped: old entries could look valid */
        memset(w->kc, 0, KC_SIZE * sizeof(kc_ent));
        w->kc_gen = 1;
    }
}

/* Per-key header of tumbling / sliding state (drawn in the file comment). */
typedef struct khdr {
    int64_t base;     /* the ring holds slices [base, base + cap) */
    int64_t top;      /* 1 + the highest slice with data (ring or far) */
    int64_t tmr;      /* earliest timer set and not fired yet, INT64_MAX: none */
    int64_t nxt;      /* first window end (slices) not handled by a timer */
    int64_t aux_hi;   /* highest slice whose aux is in use (NONE: none) */
    int64_t far_head; /* smallest far slice (when n_far > 0) */
    uint32_t n_far;   /* slices kept in the far list */
    uint32_t cmask;   /* the ring has cmask + 1 slots (a power of two) */
    int64_t lo;       /* no ring slot in [base, lo) holds data (INT64_MAX: none) */
} khdr;
#define KHDR ((size_t)sizeof(khdr))
_Static_assert(sizeof(khdr) == 64, "khdr layout is drawn in the file comment");

/* What only overlapping windows and early firing need, kept just before
 * the key's header in its block (w->xsize bytes: 0 for tumbling without
 * early firing, so that those keys do not pay for it). */
typedef struct kext {
    int64_t pb, pu;   /* aux of slices pb*k .. pu hold prefix aggregates */
    int64_t sb, slo;  /* aux of slices slo .. sb*k+k-1 hold suffix aggregates */
    int64_t dlo, dhi; /* early firing: slices updated since the last early firing */
    int64_t early;    /* early firing: a processing-time timer is pending */
} kext;
#define KEXT ((size_t)sizeof(kext))
/* Only when w->xsize is KEXT (windows overlap, or early firing). */
static inline kext *kx(const khdr *hd)
{
    return (kext *)(void *)((uint8_t *)hd - KEXT);
}

typedef struct far_hdr {
    int64_t next; /* next far slice of the key (sorted) */
    uint8_t has_next;
    uint8_t pad[7];
} far_hdr;
#define FAR_HDR ((size_t)sizeof(far_hdr))

#define NONE INT64_MIN

/* Slice numbers and times: the grid of window_int.h, on the instance's
 * constants. */
static inline int64_t fdiv128(__int128 a, __int128 b)
{
    return sli_win_fdiv(a, b);
}
static inline int64_t sat64(__int128 x)
{
    return sli_win_sat(x);
}
static inline int64_t slice_of(const win *w, int64_t t)
{
    return sli_win_slice_of(w->off, w->g, t);
}
static inline int64_t fire_ms(const win *w, int64_t e)
{
    return sli_win_fire_ms(w->off, w->g, e);
}
static inline int64_t first_end(const win *w, int64_t n)
{
    return sli_win_first_end(w->k, w->s, n);
}
static inline int64_t last_end(const win *w, int64_t n)
{
    return sli_win_last_end(w->k, w->s, n);
}
/* Smallest window end whose firing time is above W. */
static int64_t first_end_after_calc(const win *w, int64_t W)
{
    int64_t m = fdiv128((__int128)W + 1 - w->off, w->g) + 1;
    if (m > -((int64_t)1 << 62) && m < ((int64_t)1 << 62)) { /* 64-bit remainder */
        int64_t r = (w->k - m) % w->s;
        if (r < 0) r += w->s;
        return m + r;
    }
    __int128 r = ((__int128)w->k - m) % w->s;
    if (r < 0) r += w->s;
    return sat64((__int128)m + r);
}
/* Slices below this have expired at watermark W: every window holding them
 * has end - 1 + L <= W (slice n expires with its last window, whose start
 * is floor(n / s) s). */
static int64_t expired_below_calc(const win *w, int64_t W)
{
    if (W == SL_TIME_MIN) return INT64_MIN;
    if (W == SL_TIME_MAX) return INT64_MAX;
    int64_t q =
        fdiv128((__int128)W + 1 - w->L - w->off - (__int128)w->k * w->g, (__int128)w->s * w->g);
    return sat64(((__int128)q + 1) * w->s);
}

/* The two above depend on the watermark alone, and every key's timer at one
 * watermark asks for them: remembered for the last watermark. */
static inline int64_t first_end_after(win *w, int64_t W)
{
    if (W != w->fea_W) {
        w->fea = first_end_after_calc(w, W);
        w->fea_W = W;
    }
    return w->fea;
}
static inline int64_t expired_below(win *w, int64_t W)
{
    if (W != w->eb_W) {
        w->eb = expired_below_calc(w, W);
        w->eb_W = W;
    }
    return w->eb;
}

/* Accumulators: count and sum (int64, merge is +) inline, others by call. */
static inline void acc_init(const win *w, void *a)
{
    if (w->i64sum)
        memset(a, 0, 8);
    else
        w->agg->init(a, w->ud);
}
static inline void acc_copy(const win *w, void *dst, const void *src)
{
    if (w->i64sum)
        memcpy(dst, src, 8);
    else
        memcpy(dst, src, w->acc_size);
}
/* An int64 merge that overflows sets w->ovf; the firing that asked for it
 * fails the job (sli_win_overflow). */
static inline void acc_merge(win *w, void *a, const void *b)
{
    if (w->i64sum) {
        int64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (__builtin_add_overflow(x, y, &x)) w->ovf = 1;
        memcpy(a, &x, 8);
    } else {
        w->agg->merge(a, b, w->ud);
    }
}

static inline uint64_t ring_cap(const khdr *hd)
{
    return (uint64_t)hd->cmask + 1;
}
static inline uint8_t *ring_slot(const win *w, khdr *hd, int64_t n)
{
    return (uint8_t *)hd + KHDR + (size_t)((uint64_t)n & hd->cmask) * w->sstride;
}
static inline int in_ring(const win *w, const khdr *hd, int64_t n)
{
    (void)w;
    return n >= hd->base && (uint64_t)n - (uint64_t)hd->base < ring_cap(hd);
}

/* Far slices (outside the ring): a list sorted by slice number in the table
 * "far", key (record key ‖ slice), value far_hdr + accumulator. */
static inline far_hdr *far_find(win *w, uint64_t h, const void *key, uint32_t klen, int64_t n)
{
    const uint8_t *ck = ck_make(w, key, klen, n);
    return ck ? sl_state_find(w->far, ck_hash(h, n), ck, klen + 8) : NULL;
}

/* Accumulator of slice n of the key, or NULL when it holds no data. */
static void *slice_acc(win *w, khdr *hd, uint64_t h, const void *key, uint32_t klen, int64_t n)
{
    if (in_ring(w, hd, n)) {
        uint8_t *sl = ring_slot(w, hd, n);
        int64_t tag;
        memcpy(&tag, sl, 8);
        return tag == n ? sl + 8 : NULL;
    }
    if (!hd->n_far) return NULL;
    far_hdr *f = far_find(w, h, key, klen, n);
    return f ? (uint8_t *)f + FAR_HDR : NULL;
}

/* First slice >= from that holds data, or NONE. */
static int64_t next_data(win *w, khdr *hd, uint64_t h, const void *key, uint32_t klen, int64_t from)
{
    int64_t best = NONE;
    /* Scan the ring from max(from, base, lo); a scan that starts at the
     * bound max(base, lo) moves lo up to the first slice found. */
    int64_t bound = hd->lo > hd->base ? hd->lo : hd->base;
    int64_t lo = from > bound ? from : bound;
    __int128 hi = hd->top, rhi = (__int128)hd->base + ring_cap(hd);
    if (hi > rhi) hi = rhi;
    int64_t n = lo;
    for (; n < hi; n++) {
        int64_t tag;
        memcpy(&tag, ring_slot(w, hd, n), 8);
        if (tag == n) {
            best = n;
            break;
        }
    }
    if (lo == bound && lo < hi) hd->lo = n; /* no data in [bound, n) */
    if (hd->n_far) {
        int64_t cur = hd->far_head;
        for (;;) {
            far_hdr *f = far_find(w, h, key, klen, cur);
            if (!f) break;
            if (cur >= from) {
                if (best == NONE || cur < best) best = cur;
                break;
            }
            if (!f->has_next) break;
            cur = f->next;
        }
    }
    return best;
}

/* Slice n changed: drop the prefix / suffix aggregates that include it. */
static inline void aux_touch(khdr *hd, int64_t n, int64_t k)
{
    if (n > hd->aux_hi) return; /* aux in use: the windows overlap, kx() is there */
    kext *x = kx(hd);
    if (x->pb != NONE && n >= x->pb * k && n <= x->pu) x->pu = n - 1;
    if (x->sb != NONE && fdiv128(n, k) == x->sb) x->sb = NONE;
    hd->aux_hi = x->pb != NONE ? x->pu : NONE;
}

/* Window [e - k, e) of a key merged slice by slice into acc_tmp; 1 if it
 * holds data. */
static int merge_naive(win *w, khdr *hd, uint64_t h, const void *key, uint32_t klen, int64_t e)
{
    int found = 0;
    acc_init(w, w->acc_tmp);
    for (int64_t n = e - w->k; n < e; n++) {
        const void *v = slice_acc(w, hd, h, key, klen, n);
        if (!v) continue;
        if (w->k == 1)
            acc_copy(w, w->acc_tmp, v);
        else
            acc_merge(w, w->acc_tmp, v);
        found = 1;
    }
    return found;
}

/* aux[n] := slice n (or the empty accumulator). */
static inline void aux_set(win *w, khdr *hd, int64_t n)
{
    uint8_t *sl = ring_slot(w, hd, n);
    int64_t tag;
    memcpy(&tag, sl, 8);
    uint8_t *aux = sl + 8 + w->acc_size;
    if (tag == n)
        acc_copy(w, aux, sl + 8);
    else
        acc_init(w, aux);
}
/* aux[n] := aux[from] merged with slice n. */
static inline void aux_fold(win *w, khdr *hd, int64_t n, int64_t from)
{
    uint8_t *sl = ring_slot(w, hd, n);
    int64_t tag;
    memcpy(&tag, sl, 8);
    uint8_t *aux = sl + 8 + w->acc_size;
    acc_copy(w, aux, ring_slot(w, hd, from) + 8 + w->acc_size);
    if (tag == n) acc_merge(w, aux, sl + 8);
}

/* Window [a, e) (all in the ring, no far slices) by prefix / suffix
 * aggregates over blocks of k slices (van Herk / Gil-Werman): the window is
 * suffix(a) of block a / k merged with prefix(e - 1) of the next block (or
 * the prefix alone when a is a block start). Result in acc_tmp. */
static void merge_blocks(win *w, khdr *hd, int64_t a, int64_t e)
{
    const int64_t k = w->k, j = e - 1;
    kext *x = kx(hd);
    int64_t rb = fdiv128(j, k), lb = fdiv128(a, k);
    if (x->pb != rb) {
        if (x->sb == rb) x->sb = NONE;
        x->pb = rb;
        x->pu = rb * k - 1;
    }
    for (int64_t n = x->pu + 1; n <= j; n++) {
        if (n == rb * k)
            aux_set(w, hd, n);
        else
            aux_fold(w, hd, n, n - 1);
    }
    if (x->pu < j) x->pu = j;
    const uint8_t *pj = ring_slot(w, hd, j) + 8 + w->acc_size;
    if (lb == rb) {
        acc_copy(w, w->acc_tmp, pj);
    } else {
        int64_t top = lb * k + k - 1;
        if (x->sb != lb) {
            x->sb = lb;
            x->slo = top + 1;
        }
        for (int64_t n = x->slo - 1; n >= a; n--) {
            if (n == top)
                aux_set(w, hd, n);
            else
                aux_fold(w, hd, n, n + 1);
        }
        if (x->slo > a) x->slo = a;
        acc_copy(w, w->acc_tmp, ring_slot(w, hd, a) + 8 + w->acc_size);
        acc_merge(w, w->acc_tmp, pj);
    }
    hd->aux_hi = x->pu;
}

/* Fire window [e - k, e) of a key (if it holds data). Returns 0 or < 0. */
static int fire_window(sl_ctx *ctx, win *w, khdr *hd, uint64_t h, const void *key, uint32_t klen,
                       int64_t e, int use_blocks)
{
    int64_t a = e - w->k;
    if (use_blocks && w->blocks && !hd->n_far && a >= hd->base && in_ring(w, hd, e - 1)) {
        merge_blocks(w, hd, a, e);
    } else if (!merge_naive(w, hd, h, key, klen, e)) {
        return 0;
    }
    int64_t s0 = sat64((__int128)w->off + (__int128)a * w->g);
    int64_t e0 = sat64((__int128)w->off + (__int128)e * w->g);
    if (__builtin_expect(w->ovf, 0)) return sli_win_overflow(ctx, w, key, klen, s0, e0);
    return sli_win_emit_result(ctx, w, WIN_PORT_RESULT, h, key, klen, s0, e0, w->acc_tmp);
}

/* Register a timer at T for the key unless one at or before T is pending.
 * hd->tmr == INT64_MAX means none: a window whose firing time saturates at
 * INT64_MAX (its end is past the last representable time) still gets its
 * timer, which the end of input (watermark +inf) fires; the engine's timer
 * set makes repeated requests for it one. */
static inline int want_timer(sl_ctx *ctx, khdr *hd, int64_t T, uint64_t h, const void *key,
                             uint32_t klen)
{
    if (T >= hd->tmr && hd->tmr != INT64_MAX) return 0;
    hd->tmr = T;
    return sl_ctx_timer(ctx, T, h, key, klen);
}

/* Purge the slices that expired below `eb`: move the ring up and the far
 * slices that now fall in it into it; drop expired far slices. */
static int purge(win *w, khdr **hdp, uint64_t h, const void *key, uint32_t klen, int64_t eb)
{
    khdr *hd = *hdp;
    if (eb > hd->base) hd->base = eb;
    if (!hd->n_far) return 0;
    int have_prev = 0;
    int64_t prev = 0, cur = hd->far_head;
    int more = 1;
    while (more) {
        far_hdr *f = far_find(w, h, key, klen, cur);
        if (!f) return SL_ECORRUPT;
        int64_t next = f->next;
        more = f->has_next;
        int drop = cur < eb, move = !drop && in_ring(w, hd, cur);
        if (!drop && !move) {
            if (cur >= hd->base) break; /* beyond the ring: so are the rest */
            have_prev = 1;
            prev = cur;
            cur = next;
            continue;
        }
        if (move) {
            uint8_t *sl = ring_slot(w, hd, cur);
            memcpy(sl, &cur, 8);
            memcpy(sl + 8, (uint8_t *)f + FAR_HDR, w->acc_size);
            if (cur < hd->lo) hd->lo = cur;
            aux_touch(hd, cur, w->k);
        }
        const uint8_t *ck = ck_make(w, key, klen, cur);
        if (!ck) return SL_ENOMEM;
        sl_state_remove(w->far, ck_hash(h, cur), ck, klen + 8);
        hd->n_far--;
        if (have_prev) {
            far_hdr *p = far_find(w, h, key, klen, prev);
            if (!p) return SL_ECORRUPT;
            p->next = next;
            p->has_next = (uint8_t)more;
        } else {
            hd->far_head = next;
        }
        cur = next;
    }
    return 0;
}

static int ring_fit(win *w, khdr **hdp, uint64_t h, const void *key, uint32_t klen, int64_t n,
                    int64_t eb);

/* A new slice n (no data yet) for the key: its accumulator, in the ring or
 * in the far list. NULL when out of memory (ctx failed). Growing the ring
 * moves the key's block: *hdp is the header after the call. */
static void *slice_new(sl_ctx *ctx, win *w, khdr **hdp, uint64_t h, const void *key, uint32_t klen,
                       int64_t n)
{
    if (!in_ring(w, *hdp, n)) {
        int rc = ring_fit(w, hdp, h, key, klen, n, expired_below(w, sl_ctx_current_watermark(ctx)));
        if (rc) {
            sl_ctx_fail(ctx, rc,
                        rc == SL_ENOMEM ? "out of memory for window state"
                                        : "window slice list broken");
            return NULL;
        }
    }
    khdr *hd = *hdp;
    if (n >= hd->top) hd->top = n + 1;
    aux_touch(hd, n, w->k);
    if (in_ring(w, hd, n)) {
        uint8_t *sl = ring_slot(w, hd, n);
        memcpy(sl, &n, 8);
        acc_init(w, sl + 8);
        if (n < hd->lo) hd->lo = n;
        return sl + 8;
    }
    /* Far: find it or insert it in order. */
    int have_prev = 0;
    int64_t prev = 0, cur = hd->far_head;
    int has = hd->n_far > 0;
    while (has) {
        far_hdr *f = far_find(w, h, key, klen, cur);
        if (!f) {
            sl_ctx_fail(ctx, SL_ECORRUPT, "window slice list broken");
            return NULL;
        }
        if (cur == n) return (uint8_t *)f + FAR_HDR;
        if (cur > n) break;
        have_prev = 1;
        prev = cur;
        has = f->has_next;
        cur = f->next;
    }
    const uint8_t *ck = ck_make(w, key, klen, n);
    int created = 0;
    far_hdr *f = ck ? sl_state_get(w->far, ck_hash(h, n), ck, klen + 8, &created) : NULL;
    if (!f) {
        sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for window state");
        return NULL;
    }
    f->next = cur;
    f->has_next = (uint8_t)has;
    w->agg->init((uint8_t *)f + FAR_HDR, w->ud);
    hd->n_far++;
    if (have_prev) {
        far_hdr *p = far_find(w, h, key, klen, prev);
        if (!p) {
            sl_ctx_fail(ctx, SL_ECORRUPT, "window slice list broken");
            return NULL;
        }
        p->next = n;
        p->has_next = 1;
    } else {
        hd->far_head = n;
    }
    return (uint8_t *)f + FAR_HDR; /* only lookups since the insert: f is valid */
}

/* A key's block: [colour] [kext: w->xsize bytes] [khdr] [1 << bits ring slots],
 * every tag NONE; returns its header, NULL when out of memory. The
 * accumulators and aux of the slots are written before they are read (a
 * slot is initialized when its slice is made, an aux when a prefix or
 * suffix reaches it). */
/* Cache colouring of large blocks: a block of a few KiB comes from the
 * allocator at a few fixed offsets modulo the page, so the headers of many
 * keys would share a few cache sets; its header starts 0..15 cache lines
 * in, by key hash (recomputed when it is freed). Blocks under 4 KiB are not
 * coloured (the extra bytes would weigh). */
static inline size_t block_color(const win *w, uint64_t cap, uint64_t h)
{
    return cap * w->sstride >= 4096 ? (size_t)((h >> 32) & 15) * 64 : 0;
}
/* Blocks of large accumulators (a slot of 4 KiB or more: sl_agg_distinct's
 * 16 KiB sketches) come from a pool of 2 MiB chunks that the kernel is
 * asked to back with huge pages (madvise MADV_HUGEPAGE; a hint, ignored
 * where transparent huge pages are off). With many keys each record's add
 * touches another key's sketch at a random register: with 4 KiB pages
 * nearly every one was a TLB miss as well as a cache miss (1000 keys: 16
 * MiB of open sketches, 4096 pages). A block of up to HP_MAX bytes is
 * carved from the current chunk (its size is fixed by its number of slots,
 * so freed blocks go to a free list per size and are reused as they are);
 * larger blocks, and every block of small accumulators, come from malloc as
 * before. The first chunk stays on 4 KiB pages (a handful of keys would
 * otherwise pay 2 MiB of resident memory); the chunks are unmapped when the
 * instance closes. */
#define HP_CHUNK ((size_t)2 << 20)
#define HP_MAX   ((size_t)1 << 20)
#define HP_BITS  32
typedef struct hp_pool {
    void *free[HP_BITS]; /* freed blocks by ring bits, linked through their first bytes */
    uint8_t *cur;        /* the chunk being carved: [cur, end) is free */
    uint8_t *end;
    void **chunks; /* every chunk, for munmap */
    size_t n_chunks, cap_chunks;
} hp_pool;

/* Bytes of a block of 1 << bits slots, the largest colour included. */
static inline size_t hp_block_bytes(const win *w, unsigned bits)
{
    uint64_t cap = (uint64_t)1 << bits;
    size_t b =
        (cap * w->sstride >= 4096 ? 15 * 64 : 0) + w->xsize + KHDR + (size_t)cap * w->sstride;
    return (b + 63) & ~(size_t)63;
}
static inline int block_pooled(const win *w, unsigned bits)
{
    return w->hp && bits < HP_BITS && hp_block_bytes(w, bits) <= HP_MAX;
}

static void *hp_alloc(win *w, unsigned bits)
{
    hp_pool *hp = w->hp;
    void *b = hp->free[bits];
    if (b) {
        memcpy(&hp->free[bits], b, sizeof(void *));
        return b;
    }
    size_t need = hp_block_bytes(w, bits);
    if ((size_t)(hp->end - hp->cur) < need) {
        if (hp->n_chunks == hp->cap_chunks) {
            size_t nc = hp->cap_chunks ? hp->cap_chunks * 2 : 16;
            void **n = realloc(hp->chunks, nc * sizeof(void *));
            if (!n) return NULL;
            hp->chunks = n;
            hp->cap_chunks = nc;
        }
        /* 2 MiB aligned: map twice that, unmap the ends */
        uint8_t *m =
            mmap(NULL, 2 * HP_CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return NULL;
        uint8_t *a = (uint8_t *)(((uintptr_t)m + HP_CHUNK - 1) & ~(uintptr_t)(HP_CHUNK - 1));
        if (a > m) munmap(m, (size_t)(a - m));
        if (a + HP_CHUNK < m + 2 * HP_CHUNK)
            munmap(a + HP_CHUNK, (size_t)(m + 2 * HP_CHUNK - (a + HP_CHUNK)));
#ifdef MADV_HUGEPAGE
        /* not the first chunk: a few keys keep to 4 KiB pages, so their
         * memory grows with the pages they touch, not 2 MiB at once */
        if (hp->n_chunks > 0) (void)madvise(a, HP_CHUNK, MADV_HUGEPAGE);
#endif
        hp->chunks[hp->n_chunks++] = a;
        hp->cur = a;
        hp->end = a + HP_CHUNK;
    }
    b = hp->cur;
    hp->cur += need;
    return b;
}

static void hp_release(win *w)
{
    hp_pool *hp = w->hp;
    if (!hp) return;
    for (size_t i = 0; i < hp->n_chunks; i++) munmap(hp->chunks[i], HP_CHUNK);
    free(hp->chunks);
    free(hp);
    w->hp = NULL;
}

static khdr *block_alloc(win *w, unsigned bits, uint64_t h)
{
    uint64_t cap = (uint64_t)1 << bits;
    size_t color = block_color(w, cap, h);
    uint8_t *b = block_pooled(w, bits) ? hp_alloc(w, bits)
                                       : malloc(color + w->xsize + KHDR + (size_t)cap * w->sstride);
    if (!b) return NULL;
    khdr *hd = (khdr *)(void *)(b + color + w->xsize);
    const int64_t tag = NONE;
    for (uint64_t i = 0; i < cap; i++) memcpy((uint8_t *)hd + KHDR + i * w->sstride, &tag, 8);
    return hd;
}

/* Free a key's block; accepts NULL. */
static void block_free(win *w, khdr *hd, uint64_t h)
{
    if (!hd) return;
    uint8_t *b = (uint8_t *)hd - w->xsize - block_color(w, (uint64_t)hd->cmask + 1, h);
    unsigned bits = (unsigned)__builtin_ctzll((uint64_t)hd->cmask + 1);
    if (block_pooled(w, bits)) {
        memcpy(b, &w->hp->free[bits], sizeof(void *));
        w->hp->free[bits] = b;
    } else {
        free(b);
    }
}

/* Slice n (no data yet, not expired) is outside the key's ring: grow the
 * ring, doubling, until it holds n and every slice of the old ring, if that
 * fits in w->cap slots (else n goes to the far list, as before). The slots
 * move to their places in the new ring, aux included (prefix / suffix
 * aggregates refer to slices, not slots); base moves down to n when n is
 * below it; far slices that come into range move into the ring. Runs only
 * when a record makes a new slice, never per record. 0, or SL_ENOMEM or
 * SL_ECORRUPT. */
static int ring_fit(win *w, khdr **hdp, uint64_t h, const void *key, uint32_t klen, int64_t n,
                    int64_t eb)
{
    khdr *hd = *hdp;
    const uint64_t cap = ring_cap(hd);
    if (cap >= w->cap) return 0;
    int64_t nb = n < hd->base ? n : hd->base;
    __int128 hi = (__int128)hd->base + (__int128)cap - 1; /* the old ring's last slice */
    if (hi < n) hi = n;
    /* Overlapping windows fire by block aggregates only when the whole
     * window lies in the ring: reach down to the start of the first window
     * holding nb, as key_init does for a full ring, when that has not
     * expired and the ring stays within half its largest size. */
    if (w->blocks) {
        int64_t a0 = sat64((__int128)first_end(w, nb) - w->k);
        if (a0 < nb && a0 >= eb && hi - a0 + 1 <= (__int128)(w->cap / 2)) nb = a0;
    }
    __int128 span = hi - nb + 1;
    if (span > (__int128)w->cap) return 0;
    unsigned bits = 0;
    while (((uint64_t)1 << bits) < (uint64_t)span) bits++;
    khdr **pp = sl_state_find(w->slices, h, key, klen);
    if (!pp || *pp != hd) return SL_ECORRUPT;
    khdr *nh = block_alloc(w, bits, h);
    if (!nh) return SL_ENOMEM;
    memcpy((uint8_t *)nh - w->xsize, (uint8_t *)hd - w->xsize, w->xsize + KHDR);
    const uint64_t nmask = ((uint64_t)1 << bits) - 1, omask = cap - 1;
    const uint8_t * or = (const uint8_t *)hd + KHDR;
    uint8_t *nr = (uint8_t *)nh + KHDR;
    for (uint64_t i = 0; i < cap; i++) {
        uint64_t m = (uint64_t)hd->base + i;
        memcpy(nr + (size_t)(m & nmask) * w->sstride, or +(size_t)(m & omask) * w->sstride,
               w->sstride);
    }
    nh->cmask = (uint32_t)(((uint64_t)1 << bits) - 1);
    nh->base = nb;
    *pp = nh;
    block_free(w, hd, h);
    kc_invalidate(w); /* the hot-key cache may hold the old block */
    *hdp = nh;
    /* INT64_MIN: nothing expires here, in-range far slices move in */
    return nh->n_far ? purge(w, hdp, h, key, klen, INT64_MIN) : 0;
}

/* A new key's block, its ring of 1 << w->cbits0 slots; NULL when out of
 * memory. */
static khdr *key_new(win *w, uint64_t h, int64_t n, int64_t eb, int64_t W)
{
    /* The ring starts a quarter below n (room for records slightly out of
     * order), or at the start of the first window holding n when the ring
     * has room for it, so that the key's first windows lie in the ring and
     * fire by block aggregates. */
    const uint64_t cap0 = (uint64_t)1 << w->cbits0;
    khdr *hd = block_alloc(w, w->cbits0, h);
    if (!hd) return NULL;
    hd->cmask = (uint32_t)(cap0 - 1);
    int64_t b = sat64((__int128)n - (int64_t)(cap0 / 4));
    int64_t a0 = sat64((__int128)first_end(w, n) - w->k);
    if (a0 < b && (__int128)n - a0 < (__int128)(cap0 / 2)) b = a0;
    hd->base = b > eb ? b : eb;
    hd->top = n;
    hd->tmr = INT64_MAX;
    hd->nxt = W == SL_TIME_MIN ? NONE : first_end_after(w, W);
    hd->aux_hi = NONE;
    if (w->xsize) {
        kext *x = kx(hd);
        x->pb = x->sb = NONE;
        x->pu = x->slo = NONE;
        x->dlo = INT64_MAX;
        x->dhi = INT64_MIN;
        x->early = 0;
    }
    hd->far_head = 0;
    hd->n_far = 0;
    hd->lo = INT64_MAX;
    return hd;
}

/* The slow part of a record's path: a new slice (timers), or a record for
 * windows already due (they fire at once; the record is not late, so at
 * least one of them has not expired). */
static int record_slow(sl_ctx *ctx, win *w, khdr *hd, uint64_t h, const void *key, uint32_t klen,
                       int64_t n, int64_t W, int is_new)
{
    int64_t ef = first_end(w, n), el = last_end(w, n);
    int64_t nd = W == SL_TIME_MIN ? ef : first_end_after(w, W);
    if (nd < ef) nd = ef;
    if (is_new) {
        int64_t T = nd <= el ? fire_ms(w, nd) : sat64((__int128)fire_ms(w, el) + w->L);
        int rc = want_timer(ctx, hd, T, h, key, klen);
        if (rc) return rc;
    }
    if (nd > ef) { /* windows ef .. nd - s are due: fire those not expired */
        for (int64_t e = ef; e < nd && e <= el; e += w->s) {
            if (W >= sat64((__int128)fire_ms(w, e) + w->L)) continue;
            int rc = fire_window(ctx, w, hd, h, key, klen, e, 0);
            if (rc) return rc;
        }
        if (hd->nxt == NONE || hd->nxt < nd) hd->nxt = nd;
    }
    return 0;
}

/* Look-ahead of the record path, with the deferred adds below (only for
 * aggregates with a prefetch hook): the FIFO hides the miss on the
 * accumulator's bytes, but the record path itself reads the key's header
 * and its slot's tag, which the sketches streaming through the cache evict
 * too. So at record i it prefetches the header of record i + 2 PF_D's key
 * and the slot of record i + PF_D (its key's block as the hot-key cache
 * has it, the slice of record i). Guesses: an entry of the current
 * generation points to a live block (of that key, or of another with the
 * same cache slot), and a wrong guess costs a useless prefetch; nothing
 * here writes, and what it reads is used only as an address. */
#define PF_D 8
static inline void prefetch_ahead(const win *w, const sl_batch *in, uint32_t i, int64_t t_lo,
                                  int64_t t_hi, int64_t n)
{
    const kc_ent *const kc = w->kc;
    if (i + 2 * PF_D < in->count) {
        const kc_ent *ce = &kc[(in->hash[i + 2 * PF_D] >> 20) & (KC_SIZE - 1)];
        __builtin_prefetch(ce);
        if (ce->gen == w->kc_gen) __builtin_prefetch(ce->hd);
    }
    uint32_t j = i + PF_D;
    if (j >= in->count) return;
    const int64_t t = in->ts[j];
    if (t < t_lo || t >= t_hi) return;
    const kc_ent *ce = &kc[(in->hash[j] >> 20) & (KC_SIZE - 1)];
    if (ce->gen != w->kc_gen) return;
    const khdr *hd = ce->hd;
    __builtin_prefetch((const uint8_t *)hd + KHDR + (size_t)((uint64_t)n & hd->cmask) * w->sstride);
}

/* The prefetching record path pays (a second hash of the value, the queue)
 * only when the accumulators of the keys' current slices do not all stay
 * in the cache: from 1 MiB of them (half a core's L2 here; 10 distinct keys
 * are 160 KiB, 100 are 1.6 MiB). Tests set it to 0. */
size_t sli_win_prefetch_min = (size_t)1 << 20;

/* Deferred adds of the record path, for aggregates with a prefetch hook
 * (sluice/operators.h; sl_agg_distinct: a 16 KiB sketch per key and slice,
 * so with many keys each add() would wait for a cache and TLB miss on its
 * register). On the plain fast path (the record's slice is in its key's
 * ring and already has data, and no window of it is due) the record path
 * calls prefetch(acc, record) and queues the add; the add is done DQ_DEPTH
 * records later, when the line is in. A FIFO of up to DQ_DEPTH (acc,
 * record, ts): adds stay in record order. The queue is emptied (dq_flush)
 * before anything that can read, copy or move an accumulator or a key's
 * block: a new key, a purge, a new slice (slice_new, ring_fit), a record
 * for due windows (record_slow fires them), a side output, every return,
 * and the end of the batch; so whatever reads an accumulator sees every add
 * of the records before it, as without the queue. Aggregates without the
 * hook, and count and sum (inline adds), never queue. The record pointers
 * point into the input batch, which lives until process() returns. */
#define DQ_DEPTH 8
typedef struct dq_ent {
    uint8_t *acc;
    const uint8_t *rec;
    uint32_t len;
    int64_t ts;
} dq_ent;
typedef struct dq {
    dq_ent e[DQ_DEPTH];
    uint32_t head, n; /* the oldest is e[(head - n) & (DQ_DEPTH - 1)] */
} dq;

/* Every deferred add, oldest first: before anything reads, copies or moves
 * an accumulator, and at the end of the batch. */
static inline void dq_flush(dq *q, const sl_aggregate *agg, const void *ud)
{
    for (uint32_t j = q->n; j > 0; j--) {
        const dq_ent *e = &q->e[(q->head - j) & (DQ_DEPTH - 1)];
        agg->add(e->acc, e->rec, e->len, e->ts, ud);
    }
    q->n = 0;
}

/* The record loop, compiled twice (always inlined with pf NULL or not), so
 * that the path without prefetching (count, sum, small state) carries none
 * of its tests. */
static inline __attribute__((always_inline)) int slices_process(sl_ctx *ctx, win *w, sl_batch *in,
                                                                const sl_agg_prefetch_fn pf)
{
    const int64_t W = sl_ctx_current_watermark(ctx);
    const int64_t eb = expired_below(w, W);
    const size_t sstride = w->sstride;
    const int inline_add = w->add_one || w->add_value;
    const sl_aggregate *agg = w->agg;
    const void *ud = w->ud;
    void *kud;
    sl_key_fn kf = sl_ctx_key_fn(ctx, &kud);
    const uint32_t count = in->count, width = in->width;
    const int64_t *const tsc = in->ts;
    const uint64_t *const hc = in->hash;
    kc_ent *const kc = w->kc;
    dq q;
    q.head = q.n = 0;
#define DQ_FLUSH()                      \
    do {                                \
        if (q.n) dq_flush(&q, agg, ud); \
    } while (0)
    /* The slice of the last record: consecutive records of one slice (the
     * common case) skip the division. t_lo <= t < t_hi is slice cur_n. */
    int64_t t_lo = 1, t_hi = 0, cur_n = 0;
    int cur_due = 0, cur_side = 0; /* cur_side: 0, or the side port of the slice's records */
    for (uint32_t i = 0; i < count; i++) {
        const int64_t t = tsc[i];
        if (__builtin_expect(t < t_lo || t >= t_hi, 0)) {
            cur_n = slice_of(w, t);
            t_lo = sat64((__int128)w->off + (__int128)cur_n * w->g);
            t_hi = sat64((__int128)t_lo + w->g);
            if (t_hi == INT64_MAX) t_hi = t_lo; /* no caching at the limit */
            int64_t ef = first_end(w, cur_n);
            cur_due = W >= fire_ms(w, ef); /* some window already due */
            /* in a gap between windows (size < slide): in no window, not
             * late whatever the watermark; else late when expired */
            cur_side = ef > last_end(w, cur_n) ? WIN_PORT_UNASSIGNED
                       : cur_n < eb            ? WIN_PORT_LATE
                                               : 0;
        }
        const int64_t n = cur_n;
        if (pf) prefetch_ahead(w, in, i, t_lo, t_hi, n);
        if (__builtin_expect(cur_side, 0)) {
            DQ_FLUSH();
            int rc = sli_win_emit_input(ctx, cur_side, in, i);
            if (rc) return rc;
            continue;
        }
        sl_bytes rec;
        if (width) {
            rec.ptr = in->data + (size_t)i * width;
            rec.len = width;
        } else {
            rec = sl_batch_bytes(in, i);
        }
        sl_bytes key = kf(rec.ptr, rec.len, kud);
        const uint64_t h = hc[i];
        khdr *hd;
        kc_ent *ce = NULL;
        uint64_t k8 = 0;
        if (key.len == 8) {
            memcpy(&k8, key.ptr, 8);
            ce = &kc[(h >> 20) & (KC_SIZE - 1)];
        } else if (key.len < 8) {
            if (key.len) memcpy(&k8, key.ptr, key.len);
            ce = &kc[(h >> 20) & (KC_SIZE - 1)];
        }
        if (ce && ce->gen == w->kc_gen && ce->key8 == k8 && ce->klen1 == key.len + 1) {
            hd = ce->hd;
        } else {
            int created = 0;
            khdr **pp = sl_state_get(w->slices, h, key.ptr, key.len, &created);
            if (!pp) {
                DQ_FLUSH();
                return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for window state");
            }
            if (created) {
                DQ_FLUSH(); /* a new key: deferred adds go first */
                kc_invalidate(w);
                if (!(*pp = key_new(w, h, n, eb, W))) {
                    sl_state_remove(w->slices, h, key.ptr, key.len);
                    return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for window state");
                }
            }
            hd = *pp;
            if (ce) {
                ce->key8 = k8;
                ce->klen1 = key.len + 1;
                ce->gen = w->kc_gen;
                ce->hd = hd;
            }
        }
        if (hd->base < eb) {
            DQ_FLUSH();
            int rc = purge(w, &hd, h, key.ptr, key.len, eb);
            if (rc) return sl_ctx_fail(ctx, rc, "window slice list broken");
        }
        uint8_t *acc;
        int is_new = 0;
        uint8_t *sl = (uint8_t *)hd + KHDR + (size_t)((uint64_t)n & hd->cmask) * sstride;
        int64_t tag;
        memcpy(&tag, sl, 8);
        if (tag == n && n >= hd->base) { /* a tag equal to n is in the ring */
            acc = sl + 8;
            if (n <= hd->aux_hi) aux_touch(hd, n, w->k);
            if (pf && !cur_due) {
                /* The plain fast path: prefetch now, add DQ_DEPTH records
                 * later (or at the next flush), in record order. aux_touch
                 * and the early-firing marks below read no accumulator. */
                pf(acc, rec.ptr, rec.len, ud);
                dq_ent *e = &q.e[q.head & (DQ_DEPTH - 1)];
                if (q.n == DQ_DEPTH)
                    agg->add(e->acc, e->rec, e->len, e->ts, ud); /* the oldest */
                else
                    q.n++;
                e->acc = acc;
                e->rec = rec.ptr;
                e->len = rec.len;
                e->ts = t;
                q.head++;
                goto marks;
            }
            DQ_FLUSH();
        } else {
            DQ_FLUSH(); /* slice_new may move the key's block */
            acc = slice_acc(w, hd, h, key.ptr, key.len, n);
            if (!acc) {
                acc = slice_new(ctx, w, &hd, h, key.ptr, key.len, n); /* may move hd */
                if (!acc) return sl_ctx_error(ctx);
                is_new = 1;
            } else {
                aux_touch(hd, n, w->k);
            }
        }
        if (inline_add) {
            if (__builtin_expect(win_add_inline(w, acc, rec.ptr, rec.len), 0)) {
                int64_t ef = first_end(w, n);
                int64_t s0 = sat64((__int128)w->off + (__int128)(ef - w->k) * w->g);
                int64_t e0 = sat64((__int128)w->off + (__int128)ef * w->g);
                return sli_win_overflow(ctx, w, key.ptr, key.len, s0, e0);
            }
        } else {
            agg->add(acc, rec.ptr, rec.len, t, ud);
        }
        if (is_new || cur_due) {
            /* hd as slice_new left it; it changed "far" only since */
            int rc = record_slow(ctx, w, hd, h, key.ptr, key.len, n, W, is_new);
            if (rc) return rc;
        }
    marks:
        if (w->early_ms) {
            kext *x = kx(hd);
            if (n < x->dlo) x->dlo = n;
            if (n > x->dhi) x->dhi = n;
            if (!x->early) {
                x->early = 1;
                int64_t due = sat64((__int128)sl_clock_ms() + w->early_ms);
                int rc = sl_ctx_proc_timer(ctx, due, h, key.ptr, key.len);
                if (rc) {
                    DQ_FLUSH();
                    return rc;
                }
            }
        }
    }
    DQ_FLUSH();
#undef DQ_FLUSH
    return 0;
}

int sli_win_slices_process(sl_ctx *ctx, win *w, sl_batch *in)
{
    if (in->trace && w->links) sli_win_links_add(w, in);
    /* Prefetch and defer (sluice/operators.h, prefetch): only aggregates
     * with the hook, only with enough state, and only the plain fast path
     * of the loop defers. */
    const sl_agg_prefetch_fn pf =
        w->add_one || w->add_value || sl_state_count(w->slices) * w->sstride < sli_win_prefetch_min
            ? NULL
            : sl_agg_prefetch(w->agg);
    return pf ? slices_process(ctx, w, in, pf) : slices_process(ctx, w, in, NULL);
}

int sli_win_slices_timer(sl_ctx *ctx, win *w, const sl_timer *t)
{
    const int64_t W = sl_ctx_current_watermark(ctx);
    khdr **pp = sl_state_find(w->slices, t->hash, t->key, t->key_len);
    if (!pp) return 0;
    khdr *hd = *pp;
    uint64_t h = t->hash;
    const void *key = t->key;
    uint32_t klen = t->key_len;
    hd->tmr = INT64_MAX; /* this one fired; later stale ones are harmless */
    int64_t e = hd->nxt;
    if (e == NONE) { /* made before any watermark: start at its first data */
        int64_t d = next_data(w, hd, h, key, klen, INT64_MIN);
        e = d == NONE ? NONE : first_end(w, d);
    }
    while (e != NONE && fire_ms(w, e) <= W) {
        int64_t d = next_data(w, hd, h, key, klen, e - w->k);
        if (d == NONE) break;
        if (d >= e) { /* empty windows up to the first one holding d */
            e = first_end(w, d);
            continue;
        }
        int rc = fire_window(ctx, w, hd, h, key, klen, e, 1);
        if (rc) return rc;
        if (e > INT64_MAX - w->s) break;
        e += w->s;
    }
    int rc = purge(w, &hd, h, key, klen, expired_below(w, W));
    if (rc) return sl_ctx_fail(ctx, rc, "window slice list broken");
    if (W == SL_TIME_MAX || (hd->top <= hd->base && !hd->n_far)) {
        block_free(w, hd, h);
        sl_state_remove(w->slices, h, key, klen);
        kc_invalidate(w);
        return 0;
    }
    /* Next: the first window holding data, or the expiry of the last data. */
    int64_t T;
    hd->nxt = first_end_after(w, W);
    int64_t d = next_data(w, hd, h, key, klen, hd->nxt - w->k);
    if (d != NONE) {
        int64_t ne = first_end(w, d);
        if (ne < hd->nxt) ne = hd->nxt;
        T = fire_ms(w, ne);
    } else {
        T = sat64((__int128)fire_ms(w, last_end(w, hd->top - 1)) + w->L);
    }
    if (T <= W) T = W + 1;
    return want_timer(ctx, hd, T, h, key, klen);
}

/* Early firing (processing-time timer of a key): every window of the key
 * that holds a slice updated since the last early firing and that the
 * watermark has not fired yet fires its partial result on port 2. The next
 * record of the key sets the next timer. */
int sli_win_slices_early(sl_ctx *ctx, win *w, const sl_timer *t)
{
    khdr **pp = sl_state_find(w->slices, t->hash, t->key, t->key_len);
    if (!pp) return 0; /* the key's windows all fired and it was removed */
    khdr *hd = *pp;
    kext *x = kx(hd);
    x->early = 0;
    if (x->dlo > x->dhi) return 0;
    const int64_t W = sl_ctx_current_watermark(ctx);
    int64_t e = first_end(w, x->dlo), el = last_end(w, x->dhi);
    x->dlo = INT64_MAX;
    x->dhi = INT64_MIN;
    if (W != SL_TIME_MIN) {
        int64_t nd = first_end_after(w, W);
        if (e < nd) e = nd;
    }
    for (; e <= el; e += w->s) {
        if (!merge_naive(w, hd, t->hash, t->key, t->key_len, e)) continue;
        int64_t a = e - w->k;
        int64_t s0 = sat64((__int128)w->off + (__int128)a * w->g);
        int64_t e0 = sat64((__int128)w->off + (__int128)e * w->g);
        if (w->ovf) return sli_win_overflow(ctx, w, t->key, t->key_len, s0, e0);
        int rc = sli_win_emit_result(ctx, w, WIN_PORT_EARLY, t->hash, t->key, t->key_len, s0, e0,
                                     w->acc_tmp);
        if (rc) return rc;
        if (e > INT64_MAX - w->s) break;
    }
    return 0;
}

int sli_win_slices_open(sl_ctx *ctx, win *w, uint32_t ring)
{
    w->blocks = w->k > w->s;
    /* Ring: a window, the allowed lateness and as much again for
     * out-of-order records ahead of the watermark; capped (far slices take
     * the rest). A test can force a size (window_test.h). */
    uint64_t want =
        (uint64_t)w->k + (uint64_t)((w->L + w->g - 1) / w->g) + (uint64_t)(w->k > 8 ? w->k : 8);
    if (want > 4096) want = 4096;
    if (ring > 0) want = ring;
    w->cap = 1;
    while (w->cap < want) w->cap *= 2;
    w->cbits0 = 0; /* a new key starts with one slot; ring_fit grows it */
    size_t a8 = (w->acc_size + 7u) & ~(size_t)7;
    w->sstride = 8 + a8 * (w->blocks ? 2 : 1);
    w->xsize = (w->blocks || w->early_ms) ? (uint32_t)KEXT : 0;
    w->slices = sl_ctx_state_unmanaged(ctx, "slices", (uint32_t)sizeof(khdr *));
    w->fea_W = w->eb_W = SL_TIME_MIN;
    w->fea = first_end_after_calc(w, SL_TIME_MIN);
    w->eb = expired_below_calc(w, SL_TIME_MIN);
    w->kc = calloc(KC_SIZE, sizeof(kc_ent));
    if (w->sstride >= 4096 && !(w->hp = calloc(1, sizeof(hp_pool)))) return SL_ENOMEM;
    w->kc_gen = 1;
    w->far = sl_ctx_state(ctx, "far", (uint32_t)(FAR_HDR + a8));
    if (!w->kc || !w->slices || !w->far) return SL_ENOMEM;
    return 0;
}

void sli_win_slices_close(win *w)
{
    size_t it = 0;
    sl_state_entry e;
    while (w->slices && sl_state_next(w->slices, &it, &e)) {
        khdr *hd;
        memcpy(&hd, e.value, sizeof(hd));
        block_free(w, hd, e.hash);
        memset(e.value, 0, sizeof(hd));
    }
    hp_release(w);
}

/* --- snapshot and restore (off the record path) ----------------------------- */

/* The snapshot format of a window instance (window.c's snapshot / restore
 * hooks), all integers little-endian, version 1. The table "slices" holds
 * pointers to per-key blocks, so the engine's raw snapshot of it would be
 * meaningless: this format carries the blocks themselves. The other tables
 * ("far"; sessions' "heads" and "sessions") hold plain values and are
 * snapshotted and restored by the engine with the instance's keyed state;
 * event-time timers by the engine too (engine/timer.c). A session window's
 * snapshot is the header and the trailer (N = 0): it records the conf, so a
 * restore into another window is refused.
 *
 *    offset  size      field
 *    0       4         magic "SLWN" (53 4C 57 4E)
 *    4       2         format version, 1
 *    6       2         kind (sl_window_kind)
 *    8       8         size          \
 *    16      8         slide          |
 *    24      8         offset (mod slide)  the instance's conf: a restore
 *    32      8         gap            |    into a window whose values
 *    40      8         lateness       |    differ is refused (SL_EINVAL)
 *    48      4         acc_size       |
 *    52      4         xsize          |
 *    56      8         sstride       /
 *    64      8         N: blocks that follow
 *    72      ...       N blocks
 *    len-8   8         checksum: sl_hash (XXH3_64bits) of bytes [0, len-8)
 *
 *  Block (one per key in "slices"):
 *    0       8         key hash (its key group says which instance owns it)
 *    8       4         key_len (< 2^32 - 1)
 *    12      4         bits: the ring has 1 << bits slots (<= the
 *                      instance's largest ring, w->cap)
 *    16      key_len   key bytes
 *    16+key_len  xsize + 64 + (1 << bits) * sstride
 *                      the block as it is in memory: kext (xsize bytes),
 *                      khdr (cmask must be (1 << bits) - 1), the ring
 *
 * Block bytes are copied as they are (portable between machines of the
 * same endianness and struct layout, as keyed state values are). Restore
 * checks everything first (magic, version, checksum, conf, every length,
 * every cmask, no key twice in the input nor already present) and only
 * then installs the blocks of the keys whose key group this instance owns
 * (sl_key_group_owner); out of memory half-way (or a key twice in one
 * input) takes the installed ones out again, so the instance is unchanged
 * on any error. A restored block's pending early firing is cleared
 * (processing-time timers are not carried over: the key's next record arms
 * one). Restoring the snapshots of several old instances one after the
 * other (parallelism P -> Q) gives this instance the union of its keys. */

#define WSNAP_MAGIC   "SLWN"
#define WSNAP_VERSION 1
#define WSNAP_HDR     72
#define WSNAP_BLK     16
#define WSNAP_TRAILER 8

static void wput(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t wget(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void wsnap_header(const win *w, uint8_t *d, uint64_t n)
{
    memcpy(d, WSNAP_MAGIC, 4);
    wput(d + 4, WSNAP_VERSION, 2);
    wput(d + 6, (uint64_t)w->kind, 2);
    wput(d + 8, (uint64_t)w->size, 8);
    wput(d + 16, (uint64_t)w->slide, 8);
    wput(d + 24, (uint64_t)w->off, 8);
    wput(d + 32, (uint64_t)w->gap, 8);
    wput(d + 40, (uint64_t)w->L, 8);
    wput(d + 48, w->acc_size, 4);
    wput(d + 52, w->xsize, 4);
    wput(d + 56, (uint64_t)w->sstride, 8);
    wput(d + 64, n, 8);
}

static inline size_t block_bytes(const win *w, unsigned bits)
{
    return w->xsize + KHDR + ((size_t)1 << bits) * w->sstride;
}

static unsigned ring_bits(const khdr *hd)
{
    unsigned b = 0;
    while (((uint64_t)1 << b) < (uint64_t)hd->cmask + 1) b++;
    return b;
}

int sli_win_snapshot(win *w, sl_buf *out)
{
    size_t total = WSNAP_HDR + WSNAP_TRAILER, n = 0, it = 0, pos;
    sl_state_entry e;
    uint8_t *d;
    int rc;

    if (w->slices)
        while (sl_state_next(w->slices, &it, &e)) {
            khdr *hd;
            memcpy(&hd, e.value, sizeof(hd));
            if (!hd) continue;
            size_t b = WSNAP_BLK + (size_t)e.key_len + block_bytes(w, ring_bits(hd));
            if (b > SIZE_MAX / 4 - total) return SL_ETOOBIG;
            total += b;
            n++;
        }
    rc = sl_buf_reserve(out, total);
    if (rc) return rc;
    d = out->ptr + out->len;
    wsnap_header(w, d, n);
    pos = WSNAP_HDR;
    it = 0;
    if (w->slices)
        while (sl_state_next(w->slices, &it, &e)) {
            khdr *hd;
            memcpy(&hd, e.value, sizeof(hd));
            if (!hd) continue;
            unsigned bits = ring_bits(hd);
            wput(d + pos, e.hash, 8);
            wput(d + pos + 8, e.key_len, 4);
            wput(d + pos + 12, bits, 4);
            pos += WSNAP_BLK;
            if (e.key_len) memcpy(d + pos, e.key, e.key_len);
            pos += e.key_len;
            memcpy(d + pos, (uint8_t *)hd - w->xsize, block_bytes(w, bits));
            pos += block_bytes(w, bits);
        }
    wput(d + pos, sl_hash(d, pos), 8);
    out->len += total;
    return 0;
}

/* Does this instance own key hash h? */
static inline int owns(sl_ctx *ctx, uint64_t h)
{
    return sl_key_group_owner(sl_key_group(h), (uint32_t)sl_ctx_parallelism(ctx)) ==
           (uint32_t)sl_ctx_instance(ctx);
}

/* Check the whole input; changes nothing. */
static int wsnap_validate(sl_ctx *ctx, win *w, const uint8_t *d, size_t len)
{
    uint8_t want[WSNAP_HDR];
    size_t end, pos = WSNAP_HDR;
    uint64_t n;

    if (len < WSNAP_HDR + WSNAP_TRAILER || memcmp(d, WSNAP_MAGIC, 4) != 0)
        return sl_ctx_fail(ctx, SL_ECORRUPT, "window snapshot: bad magic or too short (%zu bytes)",
                           len);
    if (wget(d + 4, 2) != WSNAP_VERSION)
        return sl_ctx_fail(ctx, SL_ECORRUPT, "window snapshot: unknown format version %u",
                           (unsigned)wget(d + 4, 2));
    end = len - WSNAP_TRAILER;
    if (sl_hash(d, end) != wget(d + end, 8))
        return sl_ctx_fail(ctx, SL_ECORRUPT, "window snapshot: checksum mismatch (%zu bytes)", len);
    n = wget(d + 64, 8);
    wsnap_header(w, want, n);
    if (memcmp(want, d, WSNAP_HDR) != 0)
        return sl_ctx_fail(ctx, SL_EINVAL,
                           "window snapshot: taken of a window with another kind, size, slide, "
                           "offset, gap, lateness or aggregate");
    if (n && !w->slices)
        return sl_ctx_fail(ctx, SL_ECORRUPT, "window snapshot: blocks for a session window");
    for (uint64_t k = 0; k < n; k++) {
        if (end - pos < WSNAP_BLK) goto bad;
        uint64_t h = wget(d + pos, 8);
        uint32_t klen = (uint32_t)wget(d + pos + 8, 4);
        uint64_t bits = wget(d + pos + 12, 4);
        if (klen == UINT32_MAX || bits > 30 || ((uint64_t)1 << bits) > w->cap) goto bad;
        size_t bb = block_bytes(w, (unsigned)bits);
        if ((uint64_t)klen + bb > end - pos - WSNAP_BLK) goto bad;
        const uint8_t *key = d + pos + WSNAP_BLK;
        khdr hd;
        memcpy(&hd, key + klen + w->xsize, KHDR);
        if ((uint64_t)hd.cmask + 1 != ((uint64_t)1 << bits)) goto bad;
        if (owns(ctx, h) && sl_state_find(w->slices, h, key, klen))
            return sl_ctx_fail(ctx, SL_EINVAL, "window snapshot: a key restored twice (block %llu)",
                               (unsigned long long)k);
        pos += WSNAP_BLK + klen + bb;
    }
    if (pos != end) goto bad;
    return 0;
bad:
    return sl_ctx_fail(ctx, SL_ECORRUPT, "window snapshot: block at byte %zu is malformed", pos);
}

int sli_win_restore(sl_ctx *ctx, win *w, const void *data, size_t len)
{
    const uint8_t *d = data;
    size_t pos = WSNAP_HDR, done = 0;
    uint64_t n;
    int rc;

    if (!data) return sl_ctx_fail(ctx, SL_ECORRUPT, "window snapshot: no data");
    rc = wsnap_validate(ctx, w, d, len);
    if (rc) return rc;
    n = wget(d + 64, 8);
    for (uint64_t k = 0; k < n; k++) {
        uint64_t h = wget(d + pos, 8);
        uint32_t klen = (uint32_t)wget(d + pos + 8, 4);
        unsigned bits = (unsigned)wget(d + pos + 12, 4);
        const uint8_t *key = d + pos + WSNAP_BLK;
        size_t bb = block_bytes(w, bits);
        pos += WSNAP_BLK + klen + bb;
        if (!owns(ctx, h)) continue;
        int created = 0;
        khdr *hd = block_alloc(w, bits, h);
        khdr **pp = hd ? sl_state_get(w->slices, h, key, klen, &created) : NULL;
        if (!pp || !created) { /* out of memory, or a key twice in the input */
            block_free(w, hd, h);
            rc = pp ? sl_ctx_fail(ctx, SL_ECORRUPT, "window snapshot: key of block %llu twice",
                                  (unsigned long long)k)
                    : sl_ctx_fail(ctx, SL_ENOMEM,
                                  "window snapshot: out of memory restoring %llu blocks",
                                  (unsigned long long)n);
            goto undo;
        }
        memcpy((uint8_t *)hd - w->xsize, key + klen, bb);
        /* Processing-time timers are not carried over (early results are a
         * preview, not state): the key's next record arms a new one. */
        if (w->early_ms) kx(hd)->early = 0;
        *pp = hd;
        done++;
    }
    kc_invalidate(w); /* the table changed under the hot-key cache */
    return 0;
undo:
    /* Take out the blocks installed above: the first `done` owned ones. */
    pos = WSNAP_HDR;
    for (uint64_t k = 0; k < n && done; k++) {
        uint64_t h = wget(d + pos, 8);
        uint32_t klen = (uint32_t)wget(d + pos + 8, 4);
        unsigned bits = (unsigned)wget(d + pos + 12, 4);
        const uint8_t *key = d + pos + WSNAP_BLK;
        pos += WSNAP_BLK + klen + block_bytes(w, bits);
        if (!owns(ctx, h)) continue;
        khdr **pp = sl_state_find(w->slices, h, key, klen);
        if (pp) {
            block_free(w, *pp, h);
            sl_state_remove(w->slices, h, key, klen);
        }
        done--;
    }
    kc_invalidate(w);
    return rc;
}
