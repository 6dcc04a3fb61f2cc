/*
 * operators/crdt/hll_int.h - private: the layout of a HyperLogLog sketch
 * (operators/crdt/hll.c) and its add, inline, for the modules that add to a
 * sketch per record (operators/crdt/agg.c: the "distinct" aggregate).
 *
 *   offset  size    field
 *   0       4       p: precision, 4..18
 *   4       4       m: 1 << p registers
 *   8       m       reg[i]: the largest rank seen for register i, 0..65-p
 *
 * Register idx of a 64-bit hash is its top p bits; the rank is 1 + the
 * number of leading zeros of the other 64 - p bits, capped at 65 - p by a
 * sentinel bit. Not under include/: nothing here is public.
 */
#ifndef SLUICE_OPERATORS_CRDT_HLL_INT_H
#define SLUICE_OPERATORS_CRDT_HLL_INT_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/crdt.h"

struct sl_crdt_hll {
    int p;
    uint32_t m;
    uint8_t reg[];
};
_Static_assert(offsetof(struct sl_crdt_hll, reg) == 8, "the layout drawn above");

/* sl_crdt_hll_add_hash, inline: one shift, one clz, one max. Returns 1
 * when the register rose, with its old and new values in *was and *now
 * (for those who keep a histogram), else 0. */
static inline int sli_crdt_hll_raise(sl_crdt_hll *h, uint64_t hash, uint8_t *was, uint8_t *now)
{
    uint32_t idx = (uint32_t)(hash >> (64 - h->p));
    /* The sentinel bit caps the rank at 65 - p when the rest is all zero. */
    uint64_t w = (hash << h->p) | (1ull << (h->p - 1));
    uint8_t rank = (uint8_t)(__builtin_clzll(w) + 1), old = h->reg[idx];
    if (rank <= old) return 0;
    h->reg[idx] = rank;
    *was = old;
    *now = rank;
    return 1;
}

static inline void sli_crdt_hll_add_hash(sl_crdt_hll *h, uint64_t hash)
{
    uint8_t was, now;
    (void)sli_crdt_hll_raise(h, hash, &was, &now);
}

/* The histogram of the register values: c[v] = the number of registers
 * equal to v (v <= 65 - p < SLI_CRDT_HLL_HIST). Word-wise (hll.c says why);
 * equal to the naive count. */
#define SLI_CRDT_HLL_HIST 66
void sli_crdt_hll_histogram(const sl_crdt_hll *h, uint32_t c[SLI_CRDT_HLL_HIST]);
/* Ertl's estimate from a histogram c of the 2^p registers of a sketch of
 * precision p: sl_crdt_hll_estimate(h) is
 * sli_crdt_hll_estimate_hist(histogram of h, h->p), bit for bit. For those
 * who keep the histogram as they add (the "distinct" aggregate). */
double sli_crdt_hll_estimate_hist(const uint32_t c[SLI_CRDT_HLL_HIST], int p);

#endif
