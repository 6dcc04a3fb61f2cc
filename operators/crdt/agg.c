/*
 * operators/crdt/agg.c - CRDTs as incremental aggregates (sl_aggregate):
 * "distinct", a HyperLogLog distinct count over the records' int64 values,
 * usable wherever count or sum are (keyed rolling aggregates, tumbling,
 * sliding and session windows).
 *
 * The accumulator IS the sketch: sl_crdt_hll_init() lays a precision-14
 * HyperLogLog out in the accumulator's own bytes (a small header and 2^14
 * one-byte registers, SL_AGG_DISTINCT_ACC_SIZE bytes, no pointers). So the
 * engine may copy an accumulator with memcpy (window slices, the ring of a
 * sliding window), snapshot it as bytes and restore it in another process:
 * a byte copy of a sketch is the same sketch. Nothing is allocated, per
 * record or otherwise.
 *
 *   init    sl_crdt_hll_init(acc, SL_AGG_DISTINCT_ACC_SIZE, 14)
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

static void distinct_init(void *acc, const void *ud)
{
    (void)ud;
    if (!sl_crdt_hll_init(acc, SL_AGG_DISTINCT_ACC_SIZE, SL_AGG_DISTINCT_P))
        memset(acc, 0, SL_AGG_DISTINCT_ACC_SIZE); /* unreachable: the size is checked by tests */
}

static void distinct_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    (void)ts;
    int64_t v = sli_agg_value(rec, len, ud);
    sli_crdt_hll_add_hash((sl_crdt_hll *)acc, sli_hash_inline(&v, sizeof(v)));
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
}

static void distinct_merge(void *acc, const void *other, const void *ud)
{
    (void)ud;
    (void)sl_crdt_hll_merge((sl_crdt_hll *)acc, (const sl_crdt_hll *)other);
}

static void distinct_result(const void *acc, void *out, const void *ud)
{
    (void)ud;
    double e = sl_crdt_hll_estimate((const sl_crdt_hll *)acc);
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
