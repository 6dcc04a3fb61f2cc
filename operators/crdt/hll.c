/*
 * operators/crdt/hll.c - HyperLogLog distinct-count sketch (sluice/crdt.h).
 *
 * An item's 64-bit hash (XXH3-64) picks a register with its top p bits; the
 * register keeps the largest rank seen, the rank being 1 + the number of
 * leading zeros of the remaining 64 - p bits (so 1..65-p). The join is the
 * register-wise max, and the sketch of a union is the join of the sketches,
 * byte for byte.
 *
 * The estimate is Ertl's improved estimator (arXiv:1702.01284, 2017, the
 * "improved raw estimator"): from the histogram C[k] of register values,
 *   z = m * tau(1 - C[q+1]/m); for k = q..1: z = (z + C[k]) / 2;
 *   z += m * sigma(C[0]/m);  E = m^2 / (2 ln 2 * z),   q = 64 - p,
 * where sigma and tau are the series that correct for empty and saturated
 * registers. It is unbiased over the whole range (no switch to linear
 * counting and no empirical bias table as in HLL++), and with a 64-bit hash
 * the registers do not saturate below ~2^64 items, so no large-range
 * correction either.
 *
 * The histogram C (sli_crdt_hll_histogram) is the estimate's one pass over
 * the m registers, and it must not be a chain of increments of one counter:
 * a sketch of few items is mostly zeros, and c[0]++ per byte waits for the
 * previous store each time (store forwarding, ~5 cycles a byte). So it reads
 * 8 registers at a time: a zero word adds 8 to C[0], else its 8 bytes go to
 * 8 sub-histograms by byte position (an increment depends on the one 8
 * bytes before at most), summed at the end. The counts are exactly the
 * naive loop's (tests/unit/test_crdt_hll.c compares them), so the estimate
 * is bit-identical.
 *
 * Invariants: 4 <= p <= 18; every register <= 65 - p. An add is one hash,
 * one shift and one max: it never allocates. The struct holds no pointer
 * (registers inline, layout in hll_int.h), so a sketch may live in caller
 * memory and be moved by memcpy (sl_crdt_hll_init).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "operators/crdt/enc.h"
#include "operators/crdt/hll_int.h"

sl_crdt_hll *sl_crdt_hll_new(int p)
{
    if (p == 0) p = SL_CRDT_HLL_P_DEFAULT;
    if (p < SL_CRDT_HLL_P_MIN || p > SL_CRDT_HLL_P_MAX) return NULL;
    uint32_t m = 1u << p;
    sl_crdt_hll *h = calloc(1, sizeof *h + m);
    if (!h) return NULL;
    h->p = p;
    h->m = m;
    return h;
}

void sl_crdt_hll_free(sl_crdt_hll *h)
{
    free(h);
}

size_t sl_crdt_hll_footprint(int p)
{
    if (p == 0) p = SL_CRDT_HLL_P_DEFAULT;
    if (p < SL_CRDT_HLL_P_MIN || p > SL_CRDT_HLL_P_MAX) return 0;
    return sizeof(sl_crdt_hll) + ((size_t)1 << p);
}

sl_crdt_hll *sl_crdt_hll_init(void *mem, size_t size, int p)
{
    size_t need = sl_crdt_hll_footprint(p);
    if (!mem || !need || size < need) return NULL;
    sl_crdt_hll *h = mem;
    memset(h, 0, need);
    h->p = p ? p : SL_CRDT_HLL_P_DEFAULT;
    h->m = 1u << h->p;
    return h;
}

int sl_crdt_hll_copy(const sl_crdt_hll *h, sl_crdt_hll **out)
{
    if (!h || !out) return SL_EINVAL;
    sl_crdt_hll *d = sl_crdt_hll_new(h->p);
    if (!d) return SL_ENOMEM;
    memcpy(d->reg, h->reg, h->m);
    *out = d;
    return 0;
}

int sl_crdt_hll_precision(const sl_crdt_hll *h)
{
    return h ? h->p : 0;
}

void sl_crdt_hll_add_hash(sl_crdt_hll *h, uint64_t hash)
{
    sli_crdt_hll_add_hash(h, hash);
}

void sl_crdt_hll_add(sl_crdt_hll *h, const void *data, size_t len)
{
    sl_crdt_hll_add_hash(h, (uint64_t)XXH3_64bits(data, len));
}

int sl_crdt_hll_merge(sl_crdt_hll *a, const sl_crdt_hll *b)
{
    if (!a || !b || a->p != b->p) return SL_EINVAL;
    for (uint32_t i = 0; i < a->m; i++)
        if (b->reg[i] > a->reg[i]) a->reg[i] = b->reg[i];
    return 0;
}

static double sigma(double x)
{
    if (x == 1.0) return INFINITY;
    double y = 1.0, z = x, zp;
    do {
        x *= x;
        zp = z;
        z += x * y;
        y += y;
    } while (z != zp);
    return z;
}

static double tau(double x)
{
    if (x == 0.0 || x == 1.0) return 0.0;
    double y = 1.0, z = 1.0 - x, zp;
    do {
        x = sqrt(x);
        zp = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
    } while (z != zp);
    return z / 3.0;
}

void sli_crdt_hll_histogram(const sl_crdt_hll *h, uint32_t c[SLI_CRDT_HLL_HIST])
{
    /* 256 columns: a register's byte indexes them whatever it holds (a
     * corrupt sketch must not write out of bounds); columns past 65 are
     * dropped. */
    uint32_t s[8][256];
    memset(s, 0, sizeof(s));
    uint32_t zero = 0;
    const uint8_t *r = h->reg;
    for (uint32_t i = 0; i < h->m; i += 8) { /* m >= 16: whole words */
        uint64_t x;
        memcpy(&x, r + i, 8);
        if (!x) {
            zero += 8;
            continue;
        }
        s[0][x & 0xff]++;
        s[1][(x >> 8) & 0xff]++;
        s[2][(x >> 16) & 0xff]++;
        s[3][(x >> 24) & 0xff]++;
        s[4][(x >> 32) & 0xff]++;
        s[5][(x >> 40) & 0xff]++;
        s[6][(x >> 48) & 0xff]++;
        s[7][x >> 56]++;
    }
    for (int k = 0; k < SLI_CRDT_HLL_HIST; k++)
        c[k] = s[0][k] + s[1][k] + s[2][k] + s[3][k] + s[4][k] + s[5][k] + s[6][k] + s[7][k];
    c[0] += zero;
}

double sl_crdt_hll_estimate(const sl_crdt_hll *h)
{
    if (!h) return 0.0;
    uint32_t c[SLI_CRDT_HLL_HIST];
    sli_crdt_hll_histogram(h, c);
    return sli_crdt_hll_estimate_hist(c, h->p);
}

double sli_crdt_hll_estimate_hist(const uint32_t c[SLI_CRDT_HLL_HIST], int p)
{
    int q = 64 - p;
    double m = (double)(1u << p);
    double z = m * tau(1.0 - (double)c[q + 1] / m);
    for (int k = q; k >= 1; k--) z = 0.5 * (z + (double)c[k]);
    z += m * sigma((double)c[0] / m);
    if (isinf(z)) return 0.0;
    return m * m / (2.0 * log(2.0) * z);
}

double sl_crdt_hll_std_error(int p)
{
    if (p == 0) p = SL_CRDT_HLL_P_DEFAULT;
    if (p < SL_CRDT_HLL_P_MIN || p > SL_CRDT_HLL_P_MAX) return NAN;
    return 1.04 / sqrt((double)(1u << p));
}

bool sl_crdt_hll_equal(const sl_crdt_hll *a, const sl_crdt_hll *b)
{
    return a && b && a->p == b->p && !memcmp(a->reg, b->reg, a->m);
}

int sl_crdt_hll_encode(const sl_crdt_hll *h, sl_buf *out)
{
    if (!h || !out) return SL_EINVAL;
    uint32_t nz = 0;
    for (uint32_t i = 0; i < h->m; i++) nz += h->reg[i] != 0;
    bool sparse = (uint64_t)nz * 4 + 4 < h->m;
    int rc = sli_crdt_put_hdr(out, SL_CRDT_HLL);
    if (!rc) rc = sli_crdt_put8(out, (uint8_t)h->p);
    if (!rc) rc = sli_crdt_put8(out, sparse ? 1 : 0);
    if (rc) return rc;
    if (!sparse) return sl_buf_append(out, h->reg, h->m);
    rc = sl_buf_reserve(out, 4 + (size_t)nz * 4);
    if (!rc) rc = sli_crdt_put32(out, nz);
    for (uint32_t i = 0; !rc && i < h->m; i++)
        if (h->reg[i]) rc = sli_crdt_put32(out, i << 8 | h->reg[i]);
    return rc;
}

int sl_crdt_hll_decode(const void *data, size_t len, sl_crdt_hll **out)
{
    if (!out) return SL_EINVAL;
    *out = NULL;
    sli_crdt_rd r;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_HLL);
    if (rc) return rc;
    int p = sli_crdt_get8(&r);
    uint8_t form = sli_crdt_get8(&r);
    if (r.err) return r.err;
    if (p < SL_CRDT_HLL_P_MIN || p > SL_CRDT_HLL_P_MAX || form > 1) return SL_ECORRUPT;
    uint32_t m = 1u << p;
    uint8_t maxv = (uint8_t)(65 - p);
    /* Check the length before allocating the registers. */
    if (form == 0 && r.n - r.off != m) return SL_ECORRUPT;
    sl_crdt_hll *h = NULL;
    if (form == 0) {
        uint32_t nz = 0;
        for (uint32_t i = 0; i < m; i++) {
            if (r.p[r.off + i] > maxv) return SL_ECORRUPT;
            nz += r.p[r.off + i] != 0;
        }
        if ((uint64_t)nz * 4 + 4 < m) return SL_ECORRUPT; /* sparse is the canonical form */
        if (!(h = sl_crdt_hll_new(p))) return SL_ENOMEM;
        memcpy(h->reg, r.p + r.off, m);
        r.off += m;
    } else {
        uint32_t n = sli_crdt_getcount(&r, m, 4);
        if (r.err) return r.err;
        if ((uint64_t)n * 4 + 4 >= m) return SL_ECORRUPT; /* dense is the canonical form */
        if (!(h = sl_crdt_hll_new(p))) return SL_ENOMEM;
        int64_t last = -1;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t x = sli_crdt_get32(&r);
            uint32_t idx = x >> 8;
            uint8_t v = (uint8_t)(x & 0xff);
            if (idx >= m || (int64_t)idx <= last || v == 0 || v > maxv) {
                sl_crdt_hll_free(h);
                return SL_ECORRUPT;
            }
            h->reg[idx] = v;
            last = idx;
        }
    }
    rc = sli_crdt_rd_close(&r);
    if (rc) {
        sl_crdt_hll_free(h);
        return rc;
    }
    *out = h;
    return 0;
}
