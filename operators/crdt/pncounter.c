/*
 * operators/crdt/pncounter.c - counter with decrements (sluice/crdt.h).
 *
 * Two G-Counters (version vectors, see gcounter.c): increments P and
 * decrements N, each raised only by its own replica and joined by pointwise
 * maximum; the value is sum P - sum N (modulo 2^64, so exact whenever the
 * true value fits in int64).
 *
 * Invariants: as gcounter.c, for each vector. The pending delta is a flag:
 * this replica's two entries, copied out by delta_take. Updates allocate
 * only the first time a replica increments (or decrements).
 */
#include <stdlib.h>
#include "operators/crdt/enc.h"

struct sl_crdt_pncounter {
    sli_vv p, n;
    uint32_t replica;
    bool pending;
};

sl_crdt_pncounter *sl_crdt_pncounter_new(uint32_t replica)
{
    sl_crdt_pncounter *c = calloc(1, sizeof *c);
    if (c) c->replica = replica;
    return c;
}

void sl_crdt_pncounter_free(sl_crdt_pncounter *c)
{
    if (!c) return;
    sli_vv_free(&c->p);
    sli_vv_free(&c->n);
    free(c);
}

int sl_crdt_pncounter_copy(const sl_crdt_pncounter *c, sl_crdt_pncounter **out)
{
    if (!c || !out) return SL_EINVAL;
    sl_crdt_pncounter *d = sl_crdt_pncounter_new(c->replica);
    if (!d) return SL_ENOMEM;
    int rc = sli_vv_copy(&d->p, &c->p);
    if (!rc) rc = sli_vv_copy(&d->n, &c->n);
    if (rc) {
        sl_crdt_pncounter_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int sl_crdt_pncounter_increment(sl_crdt_pncounter *c, uint64_t n)
{
    if (!c) return SL_EINVAL;
    int rc = sli_vv_add(&c->p, c->replica, n);
    if (!rc && n) c->pending = true;
    return rc;
}

int sl_crdt_pncounter_decrement(sl_crdt_pncounter *c, uint64_t n)
{
    if (!c) return SL_EINVAL;
    int rc = sli_vv_add(&c->n, c->replica, n);
    if (!rc && n) c->pending = true;
    return rc;
}

int sl_crdt_pncounter_add(sl_crdt_pncounter *c, int64_t d)
{
    if (d >= 0) return sl_crdt_pncounter_increment(c, (uint64_t)d);
    return sl_crdt_pncounter_decrement(c, (uint64_t)0 - (uint64_t)d);
}

int sl_crdt_pncounter_merge(sl_crdt_pncounter *a, const sl_crdt_pncounter *b)
{
    if (!a || !b) return SL_EINVAL;
    if (a == b) return 0;
    int rc = sli_vv_join(&a->p, &b->p);
    return rc ? rc : sli_vv_join(&a->n, &b->n);
}

int64_t sl_crdt_pncounter_value(const sl_crdt_pncounter *c)
{
    if (!c) return 0;
    return (int64_t)(sli_vv_sum(&c->p) - sli_vv_sum(&c->n));
}

bool sl_crdt_pncounter_equal(const sl_crdt_pncounter *a, const sl_crdt_pncounter *b)
{
    return a && b && sli_vv_equal(&a->p, &b->p) && sli_vv_equal(&a->n, &b->n);
}

bool sl_crdt_pncounter_delta_pending(const sl_crdt_pncounter *c)
{
    return c && c->pending;
}

int sl_crdt_pncounter_delta_take(sl_crdt_pncounter *c, sl_crdt_pncounter **out)
{
    if (!c || !out) return SL_EINVAL;
    *out = NULL;
    if (!c->pending) return 0;
    sl_crdt_pncounter *d = sl_crdt_pncounter_new(c->replica);
    if (!d) return SL_ENOMEM;
    uint64_t p = sli_vv_get(&c->p, c->replica), n = sli_vv_get(&c->n, c->replica);
    int rc = p ? sli_vv_set(&d->p, c->replica, p) : 0;
    if (!rc && n) rc = sli_vv_set(&d->n, c->replica, n);
    if (rc) {
        sl_crdt_pncounter_free(d);
        return rc;
    }
    c->pending = false;
    *out = d;
    return 0;
}

int sl_crdt_pncounter_encode(const sl_crdt_pncounter *c, sl_buf *out)
{
    if (!c || !out) return SL_EINVAL;
    int rc = sli_crdt_put_hdr(out, SL_CRDT_PNCOUNTER);
    if (!rc) rc = sli_vv_encode(&c->p, out);
    return rc ? rc : sli_vv_encode(&c->n, out);
}

int sli_crdt_pncounter_decode_into(sl_crdt_pncounter *c, const void *data, size_t len)
{
    sli_crdt_rd r;
    c->p.n = c->n.n = 0;
    c->pending = false;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_PNCOUNTER);
    if (rc) return rc;
    sli_vv_decode(&r, &c->p);
    sli_vv_decode(&r, &c->n);
    rc = sli_crdt_rd_close(&r);
    if (rc) c->p.n = c->n.n = 0;
    return rc;
}

int sl_crdt_pncounter_decode(const void *data, size_t len, uint32_t replica,
                             sl_crdt_pncounter **out)
{
    if (!out) return SL_EINVAL;
    *out = NULL;
    sli_crdt_rd r;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_PNCOUNTER);
    if (rc) return rc;
    sl_crdt_pncounter *c = sl_crdt_pncounter_new(replica);
    if (!c) return SL_ENOMEM;
    rc = sli_crdt_pncounter_decode_into(c, data, len);
    if (rc) {
        sl_crdt_pncounter_free(c);
        return rc;
    }
    *out = c;
    return 0;
}
