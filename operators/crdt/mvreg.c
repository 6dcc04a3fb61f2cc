/*
 * operators/crdt/mvreg.c - multi-value register (sluice/crdt.h).
 *
 * The state is a set of (clock, value) pairs, clocks being version vectors.
 * A local write takes the pointwise maximum of every clock it holds, adds
 * one for this replica, and replaces all pairs with (that clock, value): it
 * supersedes everything it has seen. The join keeps, of the union, the
 * pairs whose clock no other pair's clock strictly dominates (the maximal
 * elements of a partial order: commutative, associative, idempotent), so
 * writes that did not see each other are all kept until a write that has
 * seen them all supersedes them.
 *
 * Invariants: pairs sorted by (value bytes, clock encoding), no two equal,
 * no clock empty, none strictly below another; at most MV_MAX
 * pairs (maximal pairs have distinct writers, since one replica's writes
 * are ordered: this caps concurrent writers), so the quadratic dominance
 * check stays small; a merge past it fails with SL_ETOOBIG, unchanged.
 * The pending delta is a flag: a register's delta is a copy of it.
 */
#include <stdlib.h>
#include <string.h>
#include "operators/crdt/enc.h"

/* Concurrent values kept at most (more is SL_ETOOBIG). */
#define MV_MAX SL_CRDT_MAX_CONCURRENT

typedef struct mvpair {
    sli_vv clock;
    uint8_t *val;
    uint32_t len;
} mvpair;

struct sl_crdt_mvreg {
    uint32_t self;
    bool pending;
    uint32_t n;
    mvpair *v;
};

static void pair_free(mvpair *p)
{
    sli_vv_free(&p->clock);
    free(p->val);
    p->val = NULL;
}

static void pairs_free(mvpair *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) pair_free(&v[i]);
    free(v);
}

static int pair_set(mvpair *p, const sli_vv *clock, const void *val, uint32_t len)
{
    memset(p, 0, sizeof *p);
    if (len && !(p->val = malloc(len))) return SL_ENOMEM;
    if (len) memcpy(p->val, val, len);
    p->len = len;
    int rc = sli_vv_copy(&p->clock, clock);
    if (rc) pair_free(p);
    return rc;
}

static int pair_cmp(const void *x, const void *y)
{
    const mvpair *a = x, *b = y;
    int c = sli_crdt_bytes_cmp(a->val, a->len, b->val, b->len);
    return c ? c : sli_vv_cmp(&a->clock, &b->clock);
}

sl_crdt_mvreg *sl_crdt_mvreg_new(uint32_t replica)
{
    sl_crdt_mvreg *r = calloc(1, sizeof *r);
    if (r) r->self = replica;
    return r;
}

void sl_crdt_mvreg_free(sl_crdt_mvreg *r)
{
    if (!r) return;
    pairs_free(r->v, r->n);
    free(r);
}

int sl_crdt_mvreg_copy(const sl_crdt_mvreg *r, sl_crdt_mvreg **out)
{
    if (!r || !out) return SL_EINVAL;
    sl_crdt_mvreg *d = sl_crdt_mvreg_new(r->self);
    if (!d) return SL_ENOMEM;
    if (r->n && !(d->v = calloc(r->n, sizeof *d->v))) goto fail;
    for (; d->n < r->n; d->n++)
        if (pair_set(&d->v[d->n], &r->v[d->n].clock, r->v[d->n].val, r->v[d->n].len)) goto fail;
    *out = d;
    return 0;
fail:
    sl_crdt_mvreg_free(d);
    return SL_ENOMEM;
}

int sl_crdt_mvreg_set(sl_crdt_mvreg *r, sl_bytes value)
{
    if (!r || (value.len && !value.ptr)) return SL_EINVAL;
    if (value.len > SL_CRDT_MAX_VALUE) return SL_ETOOBIG;
    sli_vv clock = {0};
    int rc = 0;
    for (uint32_t i = 0; !rc && i < r->n; i++) rc = sli_vv_join(&clock, &r->v[i].clock);
    uint64_t c = sli_vv_get(&clock, r->self);
    if (!rc && c == UINT64_MAX) rc = SL_ERANGE;
    if (!rc) rc = sli_vv_set(&clock, r->self, c + 1);
    mvpair *v = NULL;
    if (!rc && !(v = calloc(1, sizeof *v))) rc = SL_ENOMEM;
    if (!rc) rc = pair_set(v, &clock, value.ptr, value.len);
    sli_vv_free(&clock);
    if (rc) {
        free(v);
        return rc;
    }
    pairs_free(r->v, r->n);
    r->v = v;
    r->n = 1;
    r->pending = true;
    return 0;
}

/* Marks in drop[] the pairs of v[0..n) that are not maximal (and all but
 * the first of equal ones); returns how many are kept. */
static uint32_t mark_maximal(const mvpair *v, uint32_t n, bool *drop)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        drop[i] = false;
        for (uint32_t j = 0; j < n && !drop[i]; j++) {
            if (j == i || !sli_vv_leq(&v[i].clock, &v[j].clock)) continue;
            if (!sli_vv_equal(&v[i].clock, &v[j].clock))
                drop[i] = true;
            else if (j < i && !sli_crdt_bytes_cmp(v[i].val, v[i].len, v[j].val, v[j].len))
                drop[i] = true;
        }
        k += !drop[i];
    }
    return k;
}

int sl_crdt_mvreg_merge(sl_crdt_mvreg *a, const sl_crdt_mvreg *b)
{
    if (!a || !b) return SL_EINVAL;
    if (a == b || !b->n) return 0;
    uint32_t n = a->n + b->n, i;
    mvpair *v = calloc(n, sizeof *v);
    bool *drop = malloc(n);
    if (!v || !drop) goto nomem;
    for (i = 0; i < b->n; i++)
        if (pair_set(&v[a->n + i], &b->v[i].clock, b->v[i].val, b->v[i].len)) goto nomem;
    if (a->n) memcpy(v, a->v, (size_t)a->n * sizeof *v);
    uint32_t k = mark_maximal(v, n, drop);
    if (k > MV_MAX) {
        for (i = a->n; i < n; i++) pair_free(&v[i]);
        free(v);
        free(drop);
        return SL_ETOOBIG; /* a keeps its own pairs */
    }
    k = 0;
    for (i = 0; i < n; i++) {
        if (drop[i])
            pair_free(&v[i]);
        else
            v[k++] = v[i];
    }
    qsort(v, k, sizeof *v, pair_cmp);
    free(drop);
    free(a->v);
    a->v = v;
    a->n = k;
    return 0;
nomem:
    for (i = 0; v && i < b->n; i++) pair_free(&v[a->n + i]);
    free(v);
    free(drop);
    return SL_ENOMEM;
}

size_t sl_crdt_mvreg_count(const sl_crdt_mvreg *r)
{
    return r ? r->n : 0;
}

sl_bytes sl_crdt_mvreg_value(const sl_crdt_mvreg *r, size_t i)
{
    if (!r || i >= r->n) return (sl_bytes){NULL, 0};
    return (sl_bytes){r->v[i].val, r->v[i].len};
}

bool sl_crdt_mvreg_equal(const sl_crdt_mvreg *a, const sl_crdt_mvreg *b)
{
    if (!a || !b || a->n != b->n) return false;
    for (uint32_t i = 0; i < a->n; i++)
        if (pair_cmp(&a->v[i], &b->v[i])) return false;
    return true;
}

bool sl_crdt_mvreg_delta_pending(const sl_crdt_mvreg *r)
{
    return r && r->pending;
}

int sl_crdt_mvreg_delta_take(sl_crdt_mvreg *r, sl_crdt_mvreg **out)
{
    if (!r || !out) return SL_EINVAL;
    *out = NULL;
    if (!r->pending) return 0;
    int rc = sl_crdt_mvreg_copy(r, out);
    if (!rc) r->pending = false;
    return rc;
}

int sl_crdt_mvreg_encode(const sl_crdt_mvreg *r, sl_buf *out)
{
    if (!r || !out) return SL_EINVAL;
    int rc = sli_crdt_put_hdr(out, SL_CRDT_MVREG);
    if (!rc) rc = sli_crdt_put32(out, r->n);
    for (uint32_t i = 0; !rc && i < r->n; i++) {
        rc = sli_vv_encode(&r->v[i].clock, out);
        if (!rc) rc = sli_crdt_putbytes(out, r->v[i].val, r->v[i].len);
    }
    return rc;
}

int sl_crdt_mvreg_decode(const void *data, size_t len, uint32_t replica, sl_crdt_mvreg **out)
{
    if (!out) return SL_EINVAL;
    *out = NULL;
    sli_crdt_rd r;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_MVREG);
    if (rc) return rc;
    /* Each pair: a clock of >= 1 entry (16 bytes) and a length (4). */
    uint32_t n = sli_crdt_getcount(&r, MV_MAX, 20);
    if (r.err) return r.err;
    sl_crdt_mvreg *x = sl_crdt_mvreg_new(replica);
    if (!x) return SL_ENOMEM;
    if (n && !(x->v = calloc(n, sizeof *x->v))) {
        sl_crdt_mvreg_free(x);
        return SL_ENOMEM;
    }
    for (; x->n < n; x->n++) {
        mvpair *p = &x->v[x->n];
        sli_vv clock = {0};
        sli_vv_decode(&r, &clock);
        sl_bytes v = sli_crdt_getbytes(&r);
        if (!r.err && clock.n == 0) r.err = SL_ECORRUPT;
        if (!r.err && (rc = pair_set(p, &clock, v.ptr, v.len))) r.err = rc;
        sli_vv_free(&clock);
        if (r.err) break;
        if (x->n && pair_cmp(&x->v[x->n - 1], p) >= 0) {
            x->n++;
            r.err = SL_ECORRUPT;
            break;
        }
    }
    rc = sli_crdt_rd_close(&r);
    /* Only maximal clocks: a valid state keeps no dominated pair. */
    for (uint32_t i = 0; !rc && i < x->n; i++)
        for (uint32_t j = 0; !rc && j < x->n; j++)
            if (i != j && sli_vv_leq(&x->v[i].clock, &x->v[j].clock) &&
                !sli_vv_equal(&x->v[i].clock, &x->v[j].clock))
                rc = SL_ECORRUPT;
    if (rc) {
        sl_crdt_mvreg_free(x);
        return rc;
    }
    *out = x;
    return 0;
}
