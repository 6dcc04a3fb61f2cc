/*
 * operators/crdt/enc.c - the CRDT modules' shared encoding helpers and
 * version vectors (see enc.h; the formats are drawn in sluice/crdt.h).
 *
 * Integers are little-endian, fixed width (engine/base/le.h). The reader
 * never reads past its input: each get checks first and leaves a sticky
 * error instead. Counts are checked against the bytes left before anyone
 * allocates for them, so a decoder allocates at most a small multiple of
 * its input whatever the counts claim.
 */
#include <stdlib.h>
#include <string.h>
#include "engine/base/le.h"
#include "operators/crdt/enc.h"

int sl_crdt_peek(const void *data, size_t len)
{
    const uint8_t *p = data;
    if (!p || len < SLI_CRDT_HDR || p[0] != SLI_CRDT_MAGIC) return SL_ECORRUPT;
    if (p[1] < SL_CRDT_GCOUNTER || p[1] > SL_CRDT_HLL) return SL_ECORRUPT;
    if (p[2] != SL_CRDT_ENCODING_VERSION) return SL_ENOTSUP;
    if (p[3] != 0) return SL_ECORRUPT;
    return p[1];
}

int sli_crdt_rd_open(sli_crdt_rd *r, const void *data, size_t len, int type)
{
    r->p = data;
    r->n = len;
    r->off = 0;
    r->err = 0;
    int t = sl_crdt_peek(data, len);
    if (t < 0) return r->err = t;
    if (t != type) return r->err = SL_EINVAL;
    r->off = SLI_CRDT_HDR;
    return 0;
}

static bool need(sli_crdt_rd *r, size_t k)
{
    if (r->err) return false;
    if (r->n - r->off < k) {
        r->err = SL_ECORRUPT;
        return false;
    }
    return true;
}

uint8_t sli_crdt_get8(sli_crdt_rd *r)
{
    if (!need(r, 1)) return 0;
    return r->p[r->off++];
}

uint32_t sli_crdt_get32(sli_crdt_rd *r)
{
    if (!need(r, 4)) return 0;
    uint32_t v = (uint32_t)sli_get_le(r->p + r->off, 4);
    r->off += 4;
    return v;
}

uint64_t sli_crdt_get64(sli_crdt_rd *r)
{
    if (!need(r, 8)) return 0;
    uint64_t v = sli_get_le(r->p + r->off, 8);
    r->off += 8;
    return v;
}

sl_bytes sli_crdt_getbytes(sli_crdt_rd *r)
{
    sl_bytes b = {NULL, 0};
    uint32_t len = sli_crdt_get32(r);
    if (r->err) return b;
    if (len > SL_CRDT_MAX_VALUE) {
        r->err = SL_ETOOBIG;
        return b;
    }
    if (!need(r, len)) return b;
    b.ptr = r->p + r->off;
    b.len = len;
    r->off += len;
    return b;
}

uint32_t sli_crdt_getcount(sli_crdt_rd *r, uint32_t cap, size_t min_item)
{
    uint32_t n = sli_crdt_get32(r);
    if (r->err) return 0;
    if (n > cap) {
        r->err = SL_ETOOBIG;
        return 0;
    }
    if ((r->n - r->off) / min_item < n) {
        r->err = SL_ECORRUPT;
        return 0;
    }
    return n;
}

int sli_crdt_rd_close(const sli_crdt_rd *r)
{
    if (r->err) return r->err;
    return r->off == r->n ? 0 : SL_ECORRUPT;
}

int sli_crdt_put_hdr(sl_buf *b, int type)
{
    uint8_t h[SLI_CRDT_HDR] = {SLI_CRDT_MAGIC, (uint8_t)type, SL_CRDT_ENCODING_VERSION, 0};
    return sl_buf_append(b, h, sizeof h);
}

int sli_crdt_put8(sl_buf *b, uint8_t v)
{
    return sl_buf_append(b, &v, 1);
}

int sli_crdt_put32(sl_buf *b, uint32_t v)
{
    uint8_t x[4];
    sli_put_le(x, v, 4);
    return sl_buf_append(b, x, 4);
}

int sli_crdt_put64(sl_buf *b, uint64_t v)
{
    uint8_t x[8];
    sli_put_le(x, v, 8);
    return sl_buf_append(b, x, 8);
}

int sli_crdt_putbytes(sl_buf *b, const void *p, uint32_t len)
{
    int rc = sli_crdt_put32(b, len);
    return rc ? rc : sl_buf_append(b, p, len);
}

int sli_crdt_bytes_cmp(const void *a, uint32_t alen, const void *b, uint32_t blen)
{
    uint32_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c < 0 ? -1 : 1;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* ---- version vectors ---- */

void sli_vv_free(sli_vv *v)
{
    free(v->e);
    v->e = NULL;
    v->n = v->cap = 0;
}

static int vv_reserve(sli_vv *v, uint32_t n)
{
    if (n <= v->cap) return 0;
    if (n > SL_CRDT_MAX_REPLICAS) return SL_ETOOBIG;
    uint32_t cap = v->cap ? v->cap : 4;
    while (cap < n) cap *= 2;
    sli_dot *e = realloc(v->e, (size_t)cap * sizeof *e);
    if (!e) return SL_ENOMEM;
    v->e = e;
    v->cap = cap;
    return 0;
}

int sli_vv_copy(sli_vv *dst, const sli_vv *src)
{
    dst->n = 0;
    int rc = vv_reserve(dst, src->n);
    if (rc) return rc;
    if (src->n) memcpy(dst->e, src->e, (size_t)src->n * sizeof *src->e);
    dst->n = src->n;
    return 0;
}

/* Index of r, or of where it would go (then e[i].r != r or i == n). */
static uint32_t vv_find(const sli_vv *v, uint32_t r)
{
    uint32_t lo = 0, hi = v->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->e[mid].r < r)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t sli_vv_get(const sli_vv *v, uint32_t r)
{
    uint32_t i = vv_find(v, r);
    return i < v->n && v->e[i].r == r ? v->e[i].c : 0;
}

int sli_vv_set(sli_vv *v, uint32_t r, uint64_t c)
{
    uint32_t i = vv_find(v, r);
    if (i < v->n && v->e[i].r == r) {
        v->e[i].c = c;
        return 0;
    }
    int rc = vv_reserve(v, v->n + 1);
    if (rc) return rc;
    memmove(v->e + i + 1, v->e + i, (size_t)(v->n - i) * sizeof *v->e);
    v->e[i] = (sli_dot){r, c};
    v->n++;
    return 0;
}

int sli_vv_add(sli_vv *v, uint32_t r, uint64_t k)
{
    uint64_t c = sli_vv_get(v, r);
    if (k == 0) return 0;
    if (c > UINT64_MAX - k) return SL_ERANGE;
    return sli_vv_set(v, r, c + k);
}

uint64_t sli_vv_sum(const sli_vv *v)
{
    uint64_t s = 0;
    for (uint32_t i = 0; i < v->n; i++) s += v->e[i].c;
    return s;
}

int sli_vv_join(sli_vv *a, const sli_vv *b)
{
    /* Count the union first: one allocation, then merge from the back. */
    uint32_t i = 0, j = 0, u = 0;
    while (i < a->n || j < b->n) {
        if (j == b->n || (i < a->n && a->e[i].r < b->e[j].r))
            i++;
        else if (i == a->n || b->e[j].r < a->e[i].r)
            j++;
        else
            i++, j++;
        u++;
    }
    int rc = vv_reserve(a, u);
    if (rc) return rc;
    int64_t x = (int64_t)a->n - 1, y = (int64_t)b->n - 1, k = (int64_t)u - 1;
    while (y >= 0) {
        if (x >= 0 && a->e[x].r > b->e[y].r)
            a->e[k--] = a->e[x--];
        else if (x >= 0 && a->e[x].r == b->e[y].r) {
            sli_dot d = a->e[x--];
            if (b->e[y].c > d.c) d.c = b->e[y].c;
            y--;
            a->e[k--] = d;
        } else
            a->e[k--] = b->e[y--];
    }
    a->n = u;
    return 0;
}

bool sli_vv_equal(const sli_vv *a, const sli_vv *b)
{
    return a->n == b->n && sli_dots_equal(a->e, b->e, a->n);
}

bool sli_vv_leq(const sli_vv *a, const sli_vv *b)
{
    uint32_t j = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        while (j < b->n && b->e[j].r < a->e[i].r) j++;
        if (j == b->n || b->e[j].r != a->e[i].r || b->e[j].c < a->e[i].c) return false;
    }
    return true;
}

int sli_vv_cmp(const sli_vv *a, const sli_vv *b)
{
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (uint32_t i = 0; i < a->n; i++) {
        int c = sli_dot_cmp(&a->e[i], &b->e[i]);
        if (c) return c;
    }
    return 0;
}

int sli_vv_encode(const sli_vv *v, sl_buf *b)
{
    int rc = sli_crdt_put32(b, v->n);
    for (uint32_t i = 0; !rc && i < v->n; i++) {
        rc = sli_crdt_put32(b, v->e[i].r);
        if (!rc) rc = sli_crdt_put64(b, v->e[i].c);
    }
    return rc;
}

int sli_vv_decode(sli_crdt_rd *r, sli_vv *v)
{
    v->n = 0;
    uint32_t n = sli_crdt_getcount(r, SL_CRDT_MAX_REPLICAS, 12);
    if (r->err) return r->err;
    int rc = vv_reserve(v, n);
    if (rc) return r->err = rc;
    for (uint32_t i = 0; i < n; i++) {
        sli_dot d;
        d.r = sli_crdt_get32(r);
        d.c = sli_crdt_get64(r);
        if (r->err) return r->err;
        if (d.c == 0 || (i && d.r <= v->e[i - 1].r)) return r->err = SL_ECORRUPT;
        v->e[v->n++] = d;
    }
    return 0;
}
