/*
 * operators/crdt/agg.c - CRDTs as incremental aggregates (sl_aggregate):
 * "distinct", a HyperLogLog distinct count over the records' int64 values,
 * usable wherever count or sum are (keyed rolling aggregates, tumbling,
 * sliding and session windows).
 *
 * The accumulator IS the sketch, and the sketch's histogram:
 * sl_crdt_hll_init() lays a precision-14 HyperLogLog out in the
 * accumulator's first bytes (a small header and 2^14 one-byte registers, no
 * pointers), and after it comes hist[v], the number of registers equal to
 * v, kept as registers change:
 *
 *   offset   size   field
 *   0        16392  the sketch (sl_crdt_hll_footprint(14); hll_int.h)
 *   16392    132    hist[0..65]: uint16, registers equal to v (sum 2^14)
 *   16524    2      stale: 1 after a merge (hist is not kept), else 0
 *   16526    2      padding, 0
 *
 * So the engine may copy an accumulator with memcpy (window slices, the
 * ring of a sliding window), snapshot it as bytes and restore it in another
 * process: a byte copy is the same sketch. Nothing is allocated, per record
 * or otherwise. Why the histogram: the estimate needs the histogram of the
 * 2^14 registers, and a window fires one estimate per key and window; with
 * ~1000 values per key the pass over 16 KiB costs as much as the ~1000 adds
 * themselves (branchy: a mostly empty sketch). An add that raises a
 * register moves one count (two uint16 on a line the key keeps hot), and
 * result() reads 66 counts. A merge (slices of a sliding window, sessions,
 * partials of a combiner) marks the histogram stale instead of updating it
 * (the register-wise max stays one vector loop); result() of a stale
 * accumulator counts the registers, as sl_crdt_hll_estimate does, and adds
 * leave a stale histogram alone.
 *
 *   init    sl_crdt_hll_init(acc, 16392, 14); hist[0] = 2^14
 *   add     v = the record's int64 value, read as sl_agg_value says (the
 *           built-ins' rule: fn, else the int64 at offset, 0 for a short
 *           record); sl_crdt_hll_add(sketch, &v, 8): XXH3-64 of v's 8
 *           bytes in host order, then one register max (both inlined
 *           here: engine/hash.h, operators/crdt/hll_int.h)
 *   prefetch  the same hash, and __builtin_prefetch of the register's cache
 *           line, its address computed from the constant precision (acc's
 *           bytes are not read: the caller may pass a guess): with 1000
 *           keys the sketches of the open windows are 16 MiB, far more
 *           than L2, so each add() would wait for a miss; the windows call
 *           prefetch() a few records ahead of add() and the misses overlap
 *           (sluice/operators.h, operators/window/slices.c). The value is
 *           hashed twice; that is cheaper than one miss.
 *   merge   register-wise max (the HyperLogLog join): merging the sketches
 *           of two record sets gives the sketch of their union, so slices,
 *           sessions and pre-aggregated partials merge exactly
 *   result  the estimate (Ertl's estimator) rounded to the nearest int64
 *
 * Invariant: an accumulator is always a valid p = 14 sketch once init() ran
 * on it; merge() of two of them cannot fail (same precision).
 *
 * The exact distinct count ("distinct-exact" in `sluice run window-agg`) is
 * not an aggregate: its state grows with the number of distinct values, and
 * an accumulator has a fixed size and no destroy hook. The job computes it
 * with two windows instead (examples/job_window_agg.c).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "sluice/crdt.h"
#include "sluice/operators.h"
#include "engine/hash.h"
#include "operators/aggregate.h"
#include "operators/crdt/hll_int.h"

_Static_assert(SL_AGG_DISTINCT_P == SL_CRDT_HLL_P_DEFAULT, "distinct uses the default precision");

#define SKETCH_SIZE (8u + (1u << SL_AGG_DISTINCT_P))
#define M           (1u << SL_AGG_DISTINCT_P)
#define STALE       66 /* hist[STALE]: the flag drawn above */
_Static_assert(SL_AGG_DISTINCT_ACC_SIZE == SKETCH_SIZE + 68 * 2, "the layout drawn above");
_Static_assert(SLI_CRDT_HLL_HIST == 66, "hist[] holds every register value");

static inline uint16_t *hist_of(void *acc)
{
    return (uint16_t *)((uint8_t *)acc + SKETCH_SIZE);
}

static void distinct_init(void *acc, const void *ud)
{
    (void)ud;
    if (!sl_crdt_hll_init(acc, SKETCH_SIZE, SL_AGG_DISTINCT_P))
        memset(acc, 0, SKETCH_SIZE); /* unreachable: the size is checked by tests */
    uint16_t *h = hist_of(acc);
    memset(h, 0, 68 * 2);
    /* 2^14 registers of 0: a count of 16384 fits a uint16; so does every
     * count (they sum to 2^14). */
    h[0] = (uint16_t)M;
}

static void distinct_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    (void)ts;
    int64_t v = sli_agg_value(rec, len, ud);
    uint8_t was, now; /* was < now <= 65 - 14: inside hist */
    if (sli_crdt_hll_raise((sl_crdt_hll *)acc, sli_hash_inline(&v, sizeof(v)), &was, &now)) {
        uint16_t *h = hist_of(acc);
        if (h[STALE]) return;
        h[was]--;
        h[now]++;
    }
}

static void distinct_prefetch(const void *acc, const void *rec, uint32_t len, const void *ud)
{
    int64_t v = sli_agg_value(rec, len, ud);
    uint64_t h = sli_hash_inline(&v, sizeof(v));
    /* The register's address from the constant precision: acc's bytes are
     * not read (prefetch's rule; acc may be a guess). */
    __builtin_prefetch((const uint8_t *)acc + offsetof(struct sl_crdt_hll, reg) +
                           (h >> (64 - SL_AGG_DISTINCT_P)),
                       1);
    __builtin_prefetch((const uint8_t *)acc + SKETCH_SIZE, 1); /* hist[0..31] */
}

static void distinct_merge(void *acc, const void *other, const void *ud)
{
    (void)ud;
    (void)sl_crdt_hll_merge((sl_crdt_hll *)acc, (const sl_crdt_hll *)other);
    hist_of(acc)[STALE] = 1;
}

static void distinct_result(const void *acc, void *out, const void *ud)
{
    (void)ud;
    const uint16_t *h = hist_of((void *)acc);
    uint32_t c[SLI_CRDT_HLL_HIST];
    if (h[STALE])
        sli_crdt_hll_histogram((const sl_crdt_hll *)acc, c);
    else
        for (int k = 0; k < SLI_CRDT_HLL_HIST; k++) c[k] = h[k];
    double e = sli_crdt_hll_estimate_hist(c, SL_AGG_DISTINCT_P);
    int64_t r = e >= 9.2e18 ? INT64_MAX : (int64_t)llround(e);
    memcpy(out, &r, 8);
}

const sl_aggregate sl_agg_distinct = {.version = SL_AGGREGATE_VERSION,
                                      .name = "distinct",
                                      .acc_size = SL_AGG_DISTINCT_ACC_SIZE,
                                      .result_size = 8,
                                      .init = distinct_init,
                                      .add = distinct_add,
                                      .merge = distinct_merge,
                                      .result = distinct_result,
                                      .flags = SL_AGG_UD_VALUE,
                                      .prefetch = distinct_prefetch};
