/*
 * operators/crdt/gcounter.c - grow-only counter (sluice/crdt.h).
 *
 * A G-Counter is a version vector: replica -> count, the join is the
 * pointwise maximum, the value the sum. A replica only ever raises its own
 * entry, so the maximum of two states holds every increment either has
 * seen, once.
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
    int rc = sli_vv_add(&c->v, c->replica, n);
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
    return c ? sli_vv_sum(&c->v) : 0;
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

int sli_crdt_gcounter_decode_into(sl_crdt_gcounter *c, const void *data, size_t len)
{
    sli_crdt_rd r;
    c->v.n = 0;
    c->pending = false;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_GCOUNTER);
    if (rc) return rc;
    sli_vv_decode(&r, &c->v);
    rc = sli_crdt_rd_close(&r);
    if (rc) c->v.n = 0;
    return rc;
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
    rc = sli_crdt_gcounter_decode_into(c, data, len);
    if (rc) {
        sl_crdt_gcounter_free(c);
        return rc;
    }
    *out = c;
    return 0;
}
