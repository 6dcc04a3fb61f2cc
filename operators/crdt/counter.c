/*
 * operators/crdt/counter.c - G-Counter and PN-Counter (sluice/crdt.h).
 *
 * A G-Counter is a version vector: replica -> count, the join is the
 * pointwise maximum, the value the sum. A replica only ever raises its own
 * entry, so the maximum of two states holds every increment either has
 * seen, once. A PN-Counter is two G-Counters, increments (P) and decrements
 * (N); its value is sum P - sum N.
 *
 * Invariants: entries have counts > 0, replicas strictly ascending (sli_vv),
 * so equal states are equal arrays and encode to equal bytes. The pending
 * delta is a flag: the delta of any run of local increments is this
 * replica's own entry, which delta_take copies out. An increment is a binary
 * search and an add; it allocates only the first time a replica counts.
 */
#include <stdlib.h>
#include "operators/crdt/enc.h"

struct sl_crdt_gcounter {
    sli_vv v;
    uint32_t replica;
    bool pending;
};

struct sl_crdt_pncounter {
    sli_vv p, n;
    uint32_t replica;
    bool pending;
};

/* Add k to r's entry of v; SL_ERANGE past 2^64 - 1. */
static int vv_add(sli_vv *v, uint32_t r, uint64_t k)
{
    uint64_t c = sli_vv_get(v, r);
    if (k == 0) return 0;
    if (c > UINT64_MAX - k) return SL_ERANGE;
    return sli_vv_set(v, r, c + k);
}

static uint64_t vv_sum(const sli_vv *v)
{
    uint64_t s = 0;
    for (uint32_t i = 0; i < v->n; i++) s += v->e[i].c;
    return s;
}

/* ---- G-Counter ---- */

sl_crdt_gcounter *sl_crdt_gcounter_new(uint32_t replica)
{
    sl_crdt_gcounter *c = calloc(1, sizeof *c);
    if (c) c->replica = replica;
    return c;
}

void sl_crdt_gcounter_free(sl_crdt_gcounter *c)
{
    if (!c) return;
    sli_vv_free(&c->v);
    free(c);
}

int sl_crdt_gcounter_copy(const sl_crdt_gcounter *c, sl_crdt_gcounter **out)
{
    if (!c || !out) return SL_EINVAL;
    sl_crdt_gcounter *d = sl_crdt_gcounter_new(c->replica);
    if (!d) return SL_ENOMEM;
    int rc = sli_vv_copy(&d->v, &c->v);
    if (rc) {
        sl_crdt_gcounter_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int sl_crdt_gcounter_increment(sl_crdt_gcounter *c, uint64_t n)
{
    if (!c) return SL_EINVAL;
    int rc = vv_add(&c->v, c->replica, n);
    if (!rc && n) c->pending = true;
    return rc;
}

int sl_crdt_gcounter_merge(sl_crdt_gcounter *a, const sl_crdt_gcounter *b)
{
    if (!a || !b) return SL_EINVAL;
    return a == b ? 0 : sli_vv_join(&a->v, &b->v);
}

uint64_t sl_crdt_gcounter_value(const sl_crdt_gcounter *c)
{
    return c ? vv_sum(&c->v) : 0;
}

uint64_t sl_crdt_gcounter_get(const sl_crdt_gcounter *c, uint32_t replica)
{
    return c ? sli_vv_get(&c->v, replica) : 0;
}

bool sl_crdt_gcounter_equal(const sl_crdt_gcounter *a, const sl_crdt_gcounter *b)
{
    return a && b && sli_vv_equal(&a->v, &b->v);
}

bool sl_crdt_gcounter_delta_pending(const sl_crdt_gcounter *c)
{
    return c && c->pending;
}

int sl_crdt_gcounter_delta_take(sl_crdt_gcounter *c, sl_crdt_gcounter **out)
{
    if (!c || !out) return SL_EINVAL;
    *out = NULL;
    if (!c->pending) return 0;
    sl_crdt_gcounter *d = sl_crdt_gcounter_new(c->replica);
    if (!d) return SL_ENOMEM;
    int rc = sli_vv_set(&d->v, c->replica, sli_vv_get(&c->v, c->replica));
    if (rc) {
        sl_crdt_gcounter_free(d);
        return rc;
    }
    c->pending = false;
    *out = d;
    return 0;
}

int sl_crdt_gcounter_encode(const sl_crdt_gcounter *c, sl_buf *out)
{
    if (!c || !out) return SL_EINVAL;
    int rc = sli_crdt_put_hdr(out, SL_CRDT_GCOUNTER);
    return rc ? rc : sli_vv_encode(&c->v, out);
}

int sl_crdt_gcounter_decode(const void *data, size_t len, uint32_t replica, sl_crdt_gcounter **out)
{
    if (!out) return SL_EINVAL;
    *out = NULL;
    sli_crdt_rd r;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_GCOUNTER);
    if (rc) return rc;
    sl_crdt_gcounter *c = sl_crdt_gcounter_new(replica);
    if (!c) return SL_ENOMEM;
    sli_vv_decode(&r, &c->v);
    rc = sli_crdt_rd_close(&r);
    if (rc) {
        sl_crdt_gcounter_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* ---- PN-Counter ---- */

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
    int rc = vv_add(&c->p, c->replica, n);
    if (!rc && n) c->pending = true;
    return rc;
}

int sl_crdt_pncounter_decrement(sl_crdt_pncounter *c, uint64_t n)
{
    if (!c) return SL_EINVAL;
    int rc = vv_add(&c->n, c->replica, n);
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
    return (int64_t)(vv_sum(&c->p) - vv_sum(&c->n));
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
    sli_vv_decode(&r, &c->p);
    sli_vv_decode(&r, &c->n);
    rc = sli_crdt_rd_close(&r);
    if (rc) {
        sl_crdt_pncounter_free(c);
        return rc;
    }
    *out = c;
    return 0;
}
