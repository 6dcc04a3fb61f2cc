/*
 * operators/crdt/lww.c - last-writer-wins register (sluice/crdt.h).
 *
 * The state is empty or one write (ts, replica, value). Writes are totally
 * ordered by (ts, replica id, value bytes), and the join keeps the larger,
 * so merge is a max: commutative, associative, idempotent. The replica id
 * breaks ties between replicas writing at the same timestamp; the value
 * bytes only order two writes of one replica at one timestamp, which keeps
 * the join deterministic even then.
 *
 * Invariants: has == false means ts, replica and len are 0. The value
 * buffer is owned (cap bytes) and reused when a new value fits. The pending
 * delta is a flag: the register's delta is a copy of it.
 */
#include <stdlib.h>
#include <string.h>
#include "operators/crdt/enc.h"

struct sl_crdt_lww {
    bool has;
    bool pending;
    uint32_t self;
    int64_t ts;
    uint32_t replica;
    uint32_t len, cap;
    uint8_t *val;
};

sl_crdt_lww *sl_crdt_lww_new(uint32_t replica)
{
    sl_crdt_lww *r = calloc(1, sizeof *r);
    if (r) r->self = replica;
    return r;
}

void sl_crdt_lww_free(sl_crdt_lww *r)
{
    if (!r) return;
    free(r->val);
    free(r);
}

/* Order of writes: <0, 0, >0. */
static int wcmp(int64_t ts, uint32_t rep, const void *v, uint32_t len, const sl_crdt_lww *r)
{
    if (ts != r->ts) return ts < r->ts ? -1 : 1;
    if (rep != r->replica) return rep < r->replica ? -1 : 1;
    return sli_crdt_bytes_cmp(v, len, r->val, r->len);
}

static int store(sl_crdt_lww *r, int64_t ts, uint32_t rep, const void *v, uint32_t len)
{
    if (len > r->cap) {
        uint8_t *p = malloc(len);
        if (!p) return SL_ENOMEM;
        free(r->val);
        r->val = p;
        r->cap = len;
    }
    if (len) memmove(r->val, v, len);
    r->len = len;
    r->ts = ts;
    r->replica = rep;
    r->has = true;
    return 0;
}

int sl_crdt_lww_copy(const sl_crdt_lww *r, sl_crdt_lww **out)
{
    if (!r || !out) return SL_EINVAL;
    sl_crdt_lww *d = sl_crdt_lww_new(r->self);
    if (!d) return SL_ENOMEM;
    if (r->has && store(d, r->ts, r->replica, r->val, r->len)) {
        sl_crdt_lww_free(d);
        return SL_ENOMEM;
    }
    *out = d;
    return 0;
}

int sl_crdt_lww_set(sl_crdt_lww *r, int64_t ts, sl_bytes value)
{
    if (!r || (value.len && !value.ptr)) return SL_EINVAL;
    if (value.len > SL_CRDT_MAX_VALUE) return SL_ETOOBIG;
    if (r->has && wcmp(ts, r->self, value.ptr, value.len, r) <= 0) return 1;
    int rc = store(r, ts, r->self, value.ptr, value.len);
    if (!rc) r->pending = true;
    return rc;
}

int sl_crdt_lww_merge(sl_crdt_lww *a, const sl_crdt_lww *b)
{
    if (!a || !b) return SL_EINVAL;
    if (a == b || !b->has) return 0;
    if (a->has && wcmp(b->ts, b->replica, b->val, b->len, a) <= 0) return 0;
    return store(a, b->ts, b->replica, b->val, b->len);
}

bool sl_crdt_lww_get(const sl_crdt_lww *r, sl_bytes *value, int64_t *ts, uint32_t *replica)
{
    if (!r || !r->has) return false;
    if (value) *value = (sl_bytes){r->val, r->len};
    if (ts) *ts = r->ts;
    if (replica) *replica = r->replica;
    return true;
}

bool sl_crdt_lww_equal(const sl_crdt_lww *a, const sl_crdt_lww *b)
{
    if (!a || !b || a->has != b->has) return false;
    return !a->has || wcmp(b->ts, b->replica, b->val, b->len, a) == 0;
}

bool sl_crdt_lww_delta_pending(const sl_crdt_lww *r)
{
    return r && r->pending;
}

int sl_crdt_lww_delta_take(sl_crdt_lww *r, sl_crdt_lww **out)
{
    if (!r || !out) return SL_EINVAL;
    *out = NULL;
    if (!r->pending) return 0;
    int rc = sl_crdt_lww_copy(r, out);
    if (!rc) r->pending = false;
    return rc;
}

int sl_crdt_lww_encode(const sl_crdt_lww *r, sl_buf *out)
{
    if (!r || !out) return SL_EINVAL;
    int rc = sli_crdt_put_hdr(out, SL_CRDT_LWW);
    if (!rc) rc = sli_crdt_put8(out, r->has ? 1 : 0);
    if (rc || !r->has) return rc;
    rc = sli_crdt_put64(out, (uint64_t)r->ts);
    if (!rc) rc = sli_crdt_put32(out, r->replica);
    return rc ? rc : sli_crdt_putbytes(out, r->val, r->len);
}

/* Check the bytes; sets the fields (v points into data). */
static int parse(const void *data, size_t len, uint8_t *has, int64_t *ts, uint32_t *rep,
                 sl_bytes *v)
{
    sli_crdt_rd r;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_LWW);
    if (rc) return rc;
    *has = sli_crdt_get8(&r);
    *ts = 0;
    *rep = 0;
    *v = (sl_bytes){NULL, 0};
    if (*has == 1) {
        *ts = (int64_t)sli_crdt_get64(&r);
        *rep = sli_crdt_get32(&r);
        *v = sli_crdt_getbytes(&r);
    } else if (*has != 0 && !r.err) {
        r.err = SL_ECORRUPT;
    }
    return sli_crdt_rd_close(&r);
}

int sli_crdt_lww_decode_into(sl_crdt_lww *x, const void *data, size_t len)
{
    uint8_t has;
    int64_t ts;
    uint32_t rep;
    sl_bytes v;
    x->pending = false;
    int rc = parse(data, len, &has, &ts, &rep, &v);
    if (!rc && has) return store(x, ts, rep, v.ptr, v.len);
    x->has = false; /* empty (also after an error: a valid state) */
    x->ts = 0;
    x->replica = 0;
    x->len = 0;
    return rc;
}

int sl_crdt_lww_decode(const void *data, size_t len, uint32_t replica, sl_crdt_lww **out)
{
    if (!out) return SL_EINVAL;
    *out = NULL;
    sli_crdt_rd r;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_LWW);
    if (rc) return rc;
    sl_crdt_lww *x = sl_crdt_lww_new(replica);
    if (!x) return SL_ENOMEM;
    rc = sli_crdt_lww_decode_into(x, data, len);
    if (rc) {
        sl_crdt_lww_free(x);
        return rc;
    }
    *out = x;
    return 0;
}
