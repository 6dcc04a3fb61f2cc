/*
 * operators/crdt/orset.c - observed-remove set, add-wins, with a causal
 * context (sluice/crdt.h; Almeida, Shoker, Baquero, "Delta State
 * Replicated Data Types", 2018, the AWORSet over a dot store).
 *
 * State: a dot store (element -> its dots, a dot being (replica, n), made
 * by one add) and a causal context cc (every dot this state has seen). An
 * add makes a new dot d = (self, max n of self in cc + 1), gives the
 * element the dots {d} and puts d in cc. A remove forgets the element's
 * dots; they stay in cc. The join of (m1, c1) and (m2, c2) keeps for each
 * element the dots both hold, and the dots one holds that the other has
 * not seen:
 *     m(e) = (m1(e) & m2(e)) | (m1(e) - c2) | (m2(e) - c1),   cc = c1 | c2
 * so a remove beats the adds it saw and loses to an add it did not see
 * (add-wins), and an element with no dot left is gone.
 *
 * The context is compact: a version vector vv (every dot (r, n) with
 * n <= vv[r]) plus a cloud of dots past a gap, moved into vv as soon as the
 * gap fills (compaction after every change). A removed element leaves no
 * tombstone: its dots are covered by vv.
 *
 * Invariants: every dot in the store is in cc; no dot is held by two
 * elements; an element in the store has >= 1 dot, sorted; cloud dots are
 * sorted, unique, and each has n > vv[r] + 1. The store is an open-
 * addressing hash table (linear probing by XXH3 of the bytes, backward-shift
 * deletion, load <= 3/4); each element is one allocation holding its bytes
 * (capb >= len of them) and, when it has one dot, that dot. Removed
 * elements go to a small pool (POOL_KEEP) that inserts take from first, so
 * a set whose elements come and go reuses their memory; a scratch set that
 * is decoded into again and again (sli_crdt_orset_decode_into, a replica's
 * merge path) keeps all of its previous elements there (up to POOL_MAX).
 *
 * Deltas (SL_CRDT_DELTAS): the pending delta is an OR-Set joined with the
 * delta of each local operation, ({e -> {d}}, {d} | old dots of e) for an
 * add and ({}, dots of e) for a remove, applied in place without building
 * them. If that fails (out of memory), `broken` makes the next delta_take
 * hand over a copy of the whole state, which is always a valid delta.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "operators/crdt/enc.h"

typedef struct elem {
    uint64_t hash;
    uint32_t len, capb; /* capb: room for bytes (>= len) */
    uint32_t nd, capd;
    sli_dot *dots; /* &inl while capd == 1 */
    sli_dot inl;
    uint8_t bytes[];
} elem;

typedef struct cctx {
    sli_vv vv;
    sli_dot *cloud;
    uint32_t ncloud, capcloud;
} cctx;

struct sl_crdt_orset {
    uint32_t self;
    unsigned flags;
    elem **slot;
    size_t cap, count; /* cap: 0 or a power of two */
    cctx cc;
    struct sl_crdt_orset *delta; /* pending delta, or NULL */
    bool broken;                 /* the pending delta missed an op */
    sli_dot *scratch;            /* dots of one join (or of one decode), reused */
    uint32_t capscratch;
    elem **pool; /* decode_into: the elements of the previous decode, for reuse */
    uint32_t npool, cappool;
};

/* Elements a scratch set keeps for reuse at most, and any set of those
 * it removed. */
#define POOL_MAX  4096u
#define POOL_KEEP 8u

/* ---- elements ---- */

static uint64_t hash_bytes(const void *p, uint32_t len)
{
    return XXH3_64bits(p, len);
}

static elem *elem_new(const void *bytes, uint32_t len, uint64_t hash)
{
    elem *e = malloc(sizeof *e + len);
    if (!e) return NULL;
    e->hash = hash;
    e->len = len;
    e->capb = len;
    e->nd = 0;
    e->capd = 1;
    e->dots = &e->inl;
    if (len) memcpy(e->bytes, bytes, len);
    return e;
}

static void elem_free(elem *e)
{
    if (!e) return;
    if (e->dots != &e->inl) free(e->dots);
    free(e);
}

static int elem_set_dots(elem *e, const sli_dot *d, uint32_t n)
{
    if (n > e->capd) {
        sli_dot *p = malloc((size_t)n * sizeof *p);
        if (!p) return SL_ENOMEM;
        if (e->dots != &e->inl) free(e->dots);
        e->dots = p;
        e->capd = n;
    }
    memmove(e->dots, d, (size_t)n * sizeof *d);
    e->nd = n;
    return 0;
}

/* ---- the hash table ---- */

static size_t tbl_find(const sl_crdt_orset *s, const void *bytes, uint32_t len, uint64_t h)
{
    if (!s->cap) return SIZE_MAX;
    size_t mask = s->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const elem *e = s->slot[i];
        if (!e) return SIZE_MAX;
        if (e->hash == h && e->len == len && (!len || !memcmp(e->bytes, bytes, len))) return i;
    }
}

static void tbl_place(elem **slot, size_t cap, elem *e)
{
    size_t mask = cap - 1, i = e->hash & mask;
    while (slot[i]) i = (i + 1) & mask;
    slot[i] = e;
}

static int tbl_insert(sl_crdt_orset *s, elem *e)
{
    if ((s->count + 1) * 4 > s->cap * 3) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        elem **slot = calloc(cap, sizeof *slot);
        if (!slot) return SL_ENOMEM;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) tbl_place(slot, cap, s->slot[i]);
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    tbl_place(s->slot, s->cap, e);
    s->count++;
    return 0;
}

/* Keep a removed element for the next insert (elem_get): a set whose
 * elements come and go, as a replica's do under removes and re-adds,
 * then reuses their memory. Up to POOL_KEEP of them (POOL_MAX while a
 * decode fills the pool); else freed. */
static void pool_put(sl_crdt_orset *s, elem *e)
{
    if (s->npool == s->cappool && s->cappool < POOL_KEEP) {
        elem **p = realloc(s->pool, POOL_KEEP * sizeof *p);
        if (p) {
            s->pool = p;
            s->cappool = POOL_KEEP;
        }
    }
    if (s->npool < s->cappool)
        s->pool[s->npool++] = e;
    else
        elem_free(e);
}

/* Remove the element at slot i (to the pool); backward-shift the run after it. */
static void tbl_remove_at(sl_crdt_orset *s, size_t i)
{
    size_t mask = s->cap - 1;
    pool_put(s, s->slot[i]);
    s->slot[i] = NULL;
    s->count--;
    for (size_t j = (i + 1) & mask; s->slot[j]; j = (j + 1) & mask) {
        size_t home = s->slot[j]->hash & mask;
        /* Move j into the hole at i unless its home lies in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        s->slot[i] = s->slot[j];
        s->slot[j] = NULL;
        i = j;
    }
}

/* ---- causal context ---- */

static void cc_free(cctx *c)
{
    sli_vv_free(&c->vv);
    free(c->cloud);
    memset(c, 0, sizeof *c);
}

static bool cloud_has(const cctx *c, const sli_dot *d)
{
    uint32_t lo = 0, hi = c->ncloud;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int k = sli_dot_cmp(&c->cloud[mid], d);
        if (!k) return true;
        if (k < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool cc_has(const cctx *c, const sli_dot *d)
{
    return d->c <= sli_vv_get(&c->vv, d->r) || cloud_has(c, d);
}

static int cloud_reserve(cctx *c, uint32_t n)
{
    if (n <= c->capcloud) return 0;
    if (n > SL_CRDT_MAX_ELEMENTS) return SL_ETOOBIG;
    uint32_t cap = c->capcloud ? c->capcloud : 8;
    while (cap < n) cap *= 2;
    sli_dot *p = realloc(c->cloud, (size_t)cap * sizeof *p);
    if (!p) return SL_ENOMEM;
    c->cloud = p;
    c->capcloud = cap;
    return 0;
}

/* Move cloud dots into vv where the gap closed; drop those vv covers. */
static int cc_compact(cctx *c)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < c->ncloud; i++) {
        sli_dot d = c->cloud[i];
        uint64_t v = sli_vv_get(&c->vv, d.r);
        if (d.c <= v) continue;
        if (d.c == v + 1) {
            int rc = sli_vv_set(&c->vv, d.r, d.c);
            if (rc) {
                /* keep the rest as they are: still a valid (uncompacted) context */
                memmove(c->cloud + k, c->cloud + i, (size_t)(c->ncloud - i) * sizeof d);
                c->ncloud = k + (c->ncloud - i);
                return rc;
            }
            continue;
        }
        c->cloud[k++] = d;
    }
    c->ncloud = k;
    return 0;
}

static int cc_add(cctx *c, const sli_dot *d)
{
    uint64_t v = sli_vv_get(&c->vv, d->r);
    if (d->c <= v || cloud_has(c, d)) return 0;
    if (d->c == v + 1) {
        int rc = sli_vv_set(&c->vv, d->r, d->c);
        return rc ? rc : cc_compact(c);
    }
    int rc = cloud_reserve(c, c->ncloud + 1);
    if (rc) return rc;
    uint32_t i = c->ncloud;
    while (i > 0 && sli_dot_cmp(&c->cloud[i - 1], d) > 0) i--;
    memmove(c->cloud + i + 1, c->cloud + i, (size_t)(c->ncloud - i) * sizeof *d);
    c->cloud[i] = *d;
    c->ncloud++;
    return 0;
}

/* a := a | b, compacted. */
static int cc_join(cctx *a, const cctx *b)
{
    int rc = sli_vv_join(&a->vv, &b->vv);
    if (rc) return rc;
    if (b->ncloud) {
        rc = cloud_reserve(a, a->ncloud + b->ncloud);
        if (rc) return rc;
        /* merge from the back, then drop duplicates */
        int64_t x = (int64_t)a->ncloud - 1, y = (int64_t)b->ncloud - 1;
        int64_t k = (int64_t)a->ncloud + b->ncloud - 1;
        while (y >= 0) {
            if (x >= 0 && sli_dot_cmp(&a->cloud[x], &b->cloud[y]) > 0)
                a->cloud[k--] = a->cloud[x--];
            else
                a->cloud[k--] = b->cloud[y--];
        }
        uint32_t n = a->ncloud + b->ncloud, u = 0;
        for (uint32_t i = 0; i < n; i++)
            if (!u || sli_dot_cmp(&a->cloud[u - 1], &a->cloud[i])) a->cloud[u++] = a->cloud[i];
        a->ncloud = u;
    }
    return cc_compact(a);
}

static int cc_copy(cctx *dst, const cctx *src)
{
    int rc = sli_vv_copy(&dst->vv, &src->vv);
    if (!rc) rc = cloud_reserve(dst, src->ncloud);
    if (rc) return rc;
    if (src->ncloud) memcpy(dst->cloud, src->cloud, (size_t)src->ncloud * sizeof *src->cloud);
    dst->ncloud = src->ncloud;
    return 0;
}

static bool cc_equal(const cctx *a, const cctx *b)
{
    return sli_vv_equal(&a->vv, &b->vv) && a->ncloud == b->ncloud &&
           sli_dots_equal(a->cloud, b->cloud, a->ncloud);
}

/* The next dot of replica r: past everything of r in the context. */
static uint64_t cc_max(const cctx *c, uint32_t r)
{
    uint64_t m = sli_vv_get(&c->vv, r);
    for (uint32_t i = 0; i < c->ncloud; i++)
        if (c->cloud[i].r == r && c->cloud[i].c > m) m = c->cloud[i].c;
    return m;
}

/* ---- object ---- */

sl_crdt_orset *sl_crdt_orset_new(uint32_t replica, unsigned flags)
{
    if (flags & ~SL_CRDT_DELTAS) return NULL;
    sl_crdt_orset *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->self = replica;
    s->flags = flags;
    return s;
}

static void clear(sl_crdt_orset *s)
{
    for (size_t i = 0; i < s->cap; i++) elem_free(s->slot[i]);
    free(s->slot);
    s->slot = NULL;
    s->cap = s->count = 0;
    cc_free(&s->cc);
}

void sl_crdt_orset_free(sl_crdt_orset *s)
{
    if (!s) return;
    clear(s);
    sl_crdt_orset_free(s->delta);
    free(s->scratch);
    for (uint32_t i = 0; i < s->npool; i++) elem_free(s->pool[i]);
    free(s->pool);
    free(s);
}

static int scratch_reserve(sl_crdt_orset *s, uint32_t n)
{
    if (n <= s->capscratch) return 0;
    uint32_t cap = s->capscratch ? s->capscratch : 8;
    while (cap < n) cap *= 2;
    sli_dot *p = realloc(s->scratch, (size_t)cap * sizeof *p);
    if (!p) return SL_ENOMEM;
    s->scratch = p;
    s->capscratch = cap;
    return 0;
}

/* An element for bytes: one of the pool's last few that has room (a
 * scratch set decoding deltas of similar elements reuses them all), else
 * a new one. */
static elem *elem_get(sl_crdt_orset *s, const void *bytes, uint32_t len, uint64_t h)
{
    for (uint32_t k = 0; k < 4 && k < s->npool; k++) {
        uint32_t i = s->npool - 1 - k;
        elem *e = s->pool[i];
        if (e->capb < len) continue;
        s->pool[i] = s->pool[--s->npool];
        e->hash = h;
        e->len = len;
        e->nd = 0;
        if (len) memcpy(e->bytes, bytes, len);
        return e;
    }
    return elem_new(bytes, len, h);
}

/* Insert a new element with dots d[0..n), n >= 1. */
static int insert_new(sl_crdt_orset *s, const void *bytes, uint32_t len, uint64_t h,
                      const sli_dot *d, uint32_t n)
{
    elem *e = elem_get(s, bytes, len, h);
    if (!e) return SL_ENOMEM;
    int rc = elem_set_dots(e, d, n);
    if (!rc) rc = tbl_insert(s, e);
    if (rc) elem_free(e);
    return rc;
}

int sl_crdt_orset_copy(const sl_crdt_orset *s, sl_crdt_orset **out)
{
    if (!s || !out) return SL_EINVAL;
    sl_crdt_orset *d = sl_crdt_orset_new(s->self, s->flags);
    if (!d) return SL_ENOMEM;
    int rc = cc_copy(&d->cc, &s->cc);
    for (size_t i = 0; !rc && i < s->cap; i++) {
        const elem *e = s->slot[i];
        if (e) rc = insert_new(d, e->bytes, e->len, e->hash, e->dots, e->nd);
    }
    if (rc) {
        sl_crdt_orset_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* Join the delta of one local op into the pending delta p: element e gets
 * (p(e) & dd) | (p(e) - ctx) | (dd - p.cc), and ctx joins p's context.
 * (Only e can hold dots of ctx: they are e's own.) */
static int pend_apply(sl_crdt_orset *p, const void *bytes, uint32_t len, uint64_t h,
                      const sli_dot *dd, uint32_t ndd, const sli_dot *ctx, uint32_t nctx)
{
    size_t i = tbl_find(p, bytes, len, h);
    elem *x = i == SIZE_MAX ? NULL : p->slot[i];
    uint32_t nx = x ? x->nd : 0;
    int rc = scratch_reserve(p, nx + ndd);
    if (rc) return rc;
    uint32_t k = 0;
    for (uint32_t a = 0; a < nx; a++) {
        bool in_dd = false, in_ctx = false;
        for (uint32_t b = 0; b < ndd; b++) in_dd |= !sli_dot_cmp(&x->dots[a], &dd[b]);
        for (uint32_t b = 0; b < nctx; b++) in_ctx |= !sli_dot_cmp(&x->dots[a], &ctx[b]);
        if (in_dd || !in_ctx) p->scratch[k++] = x->dots[a];
    }
    for (uint32_t b = 0; b < ndd; b++) {
        bool have = false;
        for (uint32_t a = 0; a < k; a++) have |= !sli_dot_cmp(&p->scratch[a], &dd[b]);
        if (!have && !cc_has(&p->cc, &dd[b])) p->scratch[k++] = dd[b];
    }
    /* keep the dots sorted */
    for (uint32_t a = 1; a < k; a++)
        for (uint32_t b = a; b > 0 && sli_dot_cmp(&p->scratch[b - 1], &p->scratch[b]) > 0; b--) {
            sli_dot t = p->scratch[b];
            p->scratch[b] = p->scratch[b - 1];
            p->scratch[b - 1] = t;
        }
    if (x && k)
        rc = elem_set_dots(x, p->scratch, k);
    else if (x)
        tbl_remove_at(p, i);
    else if (k)
        rc = insert_new(p, bytes, len, h, p->scratch, k);
    for (uint32_t b = 0; !rc && b < nctx; b++) rc = cc_add(&p->cc, &ctx[b]);
    return rc;
}

/* Record a local op in the pending delta (if deltas are kept). */
static void pend(sl_crdt_orset *s, const void *bytes, uint32_t len, uint64_t h, const sli_dot *dd,
                 uint32_t ndd, const sli_dot *ctx, uint32_t nctx)
{
    if (!(s->flags & SL_CRDT_DELTAS) || s->broken) return;
    if (!s->delta && !(s->delta = sl_crdt_orset_new(s->self, 0))) {
        s->broken = true;
        return;
    }
    if (pend_apply(s->delta, bytes, len, h, dd, ndd, ctx, nctx)) s->broken = true;
}

static bool elem_ok(sl_bytes e)
{
    return (e.ptr || !e.len) && e.len <= SL_CRDT_MAX_VALUE;
}

int sl_crdt_orset_add(sl_crdt_orset *s, sl_bytes e)
{
    if (!s || (!e.ptr && e.len)) return SL_EINVAL;
    if (e.len > SL_CRDT_MAX_VALUE) return SL_ETOOBIG;
    uint64_t h = hash_bytes(e.ptr, e.len);
    size_t i = tbl_find(s, e.ptr, e.len, h);
    elem *x = i == SIZE_MAX ? NULL : s->slot[i];
    if (!x && s->count >= SL_CRDT_MAX_ELEMENTS) return SL_ETOOBIG;
    uint64_t m = cc_max(&s->cc, s->self);
    if (m == UINT64_MAX) return SL_ERANGE;
    sli_dot d = {s->self, m + 1};
    /* The delta's context: the new dot and the dots it replaces. */
    uint32_t nctx = 1 + (x ? x->nd : 0);
    int rc = scratch_reserve(s, nctx);
    if (rc) return rc;
    s->scratch[0] = d;
    if (x) memcpy(s->scratch + 1, x->dots, (size_t)x->nd * sizeof d);
    rc = cc_add(&s->cc, &d);
    if (rc) return rc;
    if (x)
        rc = elem_set_dots(x, &d, 1); /* capd >= 1 always: cannot fail */
    else
        rc = insert_new(s, e.ptr, e.len, h, &d, 1);
    if (rc) {
        /* d stays in cc, held by nothing: the state changed, so the next
         * delta must carry it (the whole state does) */
        s->broken = (s->flags & SL_CRDT_DELTAS) != 0;
        return rc;
    }
    pend(s, e.ptr, e.len, h, &d, 1, s->scratch, nctx);
    return 0;
}

int sl_crdt_orset_remove(sl_crdt_orset *s, sl_bytes e)
{
    if (!s || !elem_ok(e)) return SL_EINVAL;
    uint64_t h = hash_bytes(e.ptr, e.len);
    size_t i = tbl_find(s, e.ptr, e.len, h);
    if (i == SIZE_MAX) return 0;
    elem *x = s->slot[i];
    int rc = scratch_reserve(s, x->nd);
    if (rc) return rc;
    uint32_t n = x->nd;
    memcpy(s->scratch, x->dots, (size_t)n * sizeof *x->dots);
    tbl_remove_at(s, i); /* its dots stay in cc */
    pend(s, e.ptr, e.len, h, NULL, 0, s->scratch, n);
    return 0;
}

int sl_crdt_orset_merge(sl_crdt_orset *a, const sl_crdt_orset *b)
{
    if (!a || !b) return SL_EINVAL;
    if (a == b) return 0;
    int rc = 0;
    /* 1. a's elements: (A & B) | (A - Bcc) | (B - Acc); emptied ones get nd 0. */
    for (size_t i = 0; !rc && i < a->cap; i++) {
        elem *x = a->slot[i];
        if (!x) continue;
        size_t j = tbl_find(b, x->bytes, x->len, x->hash);
        const elem *y = j == SIZE_MAX ? NULL : b->slot[j];
        uint32_t ny = y ? y->nd : 0, p = 0, q = 0, k = 0;
        rc = scratch_reserve(a, x->nd + ny);
        if (rc) break;
        while (p < x->nd || q < ny) {
            int c = p == x->nd ? 1 : q == ny ? -1 : sli_dot_cmp(&x->dots[p], &y->dots[q]);
            if (c < 0) {
                if (!cc_has(&b->cc, &x->dots[p])) a->scratch[k++] = x->dots[p];
                p++;
            } else if (c > 0) {
                if (!cc_has(&a->cc, &y->dots[q])) a->scratch[k++] = y->dots[q];
                q++;
            } else {
                a->scratch[k++] = x->dots[p];
                p++, q++;
            }
        }
        if (k)
            rc = elem_set_dots(x, a->scratch, k);
        else
            x->nd = 0;
    }
    /* 2. b's elements a does not have: B - Acc. */
    for (size_t j = 0; !rc && j < b->cap; j++) {
        const elem *y = b->slot[j];
        if (!y || tbl_find(a, y->bytes, y->len, y->hash) != SIZE_MAX) continue;
        rc = scratch_reserve(a, y->nd);
        if (rc) break;
        uint32_t k = 0;
        for (uint32_t q = 0; q < y->nd; q++)
            if (!cc_has(&a->cc, &y->dots[q])) a->scratch[k++] = y->dots[q];
        if (k) rc = insert_new(a, y->bytes, y->len, y->hash, a->scratch, k);
    }
    /* 3. drop emptied elements (restart the scan after each backward shift) */
    for (size_t i = 0; i < a->cap;) {
        if (a->slot[i] && a->slot[i]->nd == 0)
            tbl_remove_at(a, i);
        else
            i++;
    }
    if (!rc) rc = cc_join(&a->cc, &b->cc);
    return rc;
}

bool sl_crdt_orset_contains(const sl_crdt_orset *s, sl_bytes e)
{
    if (!s || !elem_ok(e)) return false;
    return tbl_find(s, e.ptr, e.len, hash_bytes(e.ptr, e.len)) != SIZE_MAX;
}

size_t sl_crdt_orset_size(const sl_crdt_orset *s)
{
    return s ? s->count : 0;
}

bool sl_crdt_orset_next(const sl_crdt_orset *s, size_t *cursor, sl_bytes *e)
{
    if (!s || !cursor) return false;
    for (size_t i = *cursor; i < s->cap; i++) {
        if (!s->slot[i]) continue;
        if (e) *e = (sl_bytes){s->slot[i]->bytes, s->slot[i]->len};
        *cursor = i + 1;
        return true;
    }
    *cursor = s->cap;
    return false;
}

size_t sl_crdt_orset_context_size(const sl_crdt_orset *s)
{
    return s ? (size_t)s->cc.vv.n + s->cc.ncloud : 0;
}

bool sl_crdt_orset_equal(const sl_crdt_orset *a, const sl_crdt_orset *b)
{
    if (!a || !b || a->count != b->count || !cc_equal(&a->cc, &b->cc)) return false;
    for (size_t i = 0; i < a->cap; i++) {
        const elem *x = a->slot[i];
        if (!x) continue;
        size_t j = tbl_find(b, x->bytes, x->len, x->hash);
        if (j == SIZE_MAX) return false;
        const elem *y = b->slot[j];
        if (x->nd != y->nd || !sli_dots_equal(x->dots, y->dots, x->nd)) return false;
    }
    return true;
}

bool sl_crdt_orset_delta_pending(const sl_crdt_orset *s)
{
    return s && (s->broken ||
                 (s->delta && (s->delta->count || s->delta->cc.vv.n || s->delta->cc.ncloud)));
}

int sl_crdt_orset_delta_take(sl_crdt_orset *s, sl_crdt_orset **out)
{
    if (!s || !out || !(s->flags & SL_CRDT_DELTAS)) return SL_EINVAL;
    *out = NULL;
    if (s->broken) {
        int rc = sl_crdt_orset_copy(s, out);
        if (rc) return rc;
        (*out)->flags = 0;
        sl_crdt_orset_free(s->delta);
        s->delta = NULL;
        s->broken = false;
        return 0;
    }
    if (!sl_crdt_orset_delta_pending(s)) return 0;
    *out = s->delta;
    s->delta = NULL;
    return 0;
}

static int elem_ptr_cmp(const void *x, const void *y)
{
    const elem *a = *(elem *const *)x, *b = *(elem *const *)y;
    return sli_crdt_bytes_cmp(a->bytes, a->len, b->bytes, b->len);
}

int sl_crdt_orset_encode(const sl_crdt_orset *s, sl_buf *out)
{
    if (!s || !out) return SL_EINVAL;
    elem **v = NULL;
    if (s->count && !(v = malloc(s->count * sizeof *v))) return SL_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slot[i]) v[n++] = s->slot[i];
    if (n > 1) qsort(v, n, sizeof *v, elem_ptr_cmp);
    int rc = sli_crdt_put_hdr(out, SL_CRDT_ORSET);
    if (!rc) rc = sli_vv_encode(&s->cc.vv, out);
    if (!rc) rc = sli_crdt_put32(out, s->cc.ncloud);
    for (uint32_t i = 0; !rc && i < s->cc.ncloud; i++) {
        rc = sli_crdt_put32(out, s->cc.cloud[i].r);
        if (!rc) rc = sli_crdt_put64(out, s->cc.cloud[i].c);
    }
    if (!rc) rc = sli_crdt_put32(out, (uint32_t)n);
    for (size_t i = 0; !rc && i < n; i++) {
        rc = sli_crdt_putbytes(out, v[i]->bytes, v[i]->len);
        if (!rc) rc = sli_crdt_put32(out, v[i]->nd);
        for (uint32_t k = 0; !rc && k < v[i]->nd; k++) {
            rc = sli_crdt_put32(out, v[i]->dots[k].r);
            if (!rc) rc = sli_crdt_put64(out, v[i]->dots[k].c);
        }
    }
    free(v);
    return rc;
}

static int dot_cmp_q(const void *x, const void *y)
{
    return sli_dot_cmp(x, y);
}

/* Empty s for a decode, its elements moved to the pool (up to POOL_MAX;
 * the rest freed) and its arrays kept. */
static void reset_for_decode(sl_crdt_orset *s)
{
    if (s->count && s->npool + s->count > s->cappool) {
        uint32_t want = s->npool + (uint32_t)s->count;
        if (want > POOL_MAX) want = POOL_MAX;
        if (want > s->cappool) {
            elem **p = realloc(s->pool, (size_t)want * sizeof *p);
            if (p) {
                s->pool = p;
                s->cappool = want;
            }
        }
    }
    for (size_t i = 0; i < s->cap; i++) {
        elem *e = s->slot[i];
        if (!e) continue;
        s->slot[i] = NULL;
        if (s->npool < s->cappool)
            s->pool[s->npool++] = e;
        else
            elem_free(e);
    }
    s->count = 0;
    s->cc.vv.n = 0;
    s->cc.ncloud = 0;
    sl_crdt_orset_free(s->delta);
    s->delta = NULL;
    s->broken = false;
}

int sli_crdt_orset_decode_into(sl_crdt_orset *s, const void *data, size_t len)
{
    reset_for_decode(s);
    sli_crdt_rd r;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_ORSET);
    if (rc) return rc;
    /* every dot of the store, to check none is held twice: s->scratch */
    size_t nall = 0;
    sl_bytes prev = {NULL, 0};
    sli_vv_decode(&r, &s->cc.vv);
    uint32_t nc = sli_crdt_getcount(&r, SL_CRDT_MAX_ELEMENTS, 12);
    if (!r.err && (rc = cloud_reserve(&s->cc, nc))) r.err = rc;
    for (uint32_t i = 0; !r.err && i < nc; i++) {
        sli_dot d;
        d.r = sli_crdt_get32(&r);
        d.c = sli_crdt_get64(&r);
        if (r.err) break;
        uint64_t v = sli_vv_get(&s->cc.vv, d.r);
        if (d.c <= v || d.c - v == 1 || (i && sli_dot_cmp(&s->cc.cloud[i - 1], &d) >= 0))
            r.err = SL_ECORRUPT;
        else
            s->cc.cloud[s->cc.ncloud++] = d;
    }
    /* An element takes at least its length, its dot count and one dot. */
    uint32_t n = sli_crdt_getcount(&r, SL_CRDT_MAX_ELEMENTS, 20);
    for (uint32_t i = 0; !r.err && i < n; i++) {
        sl_bytes e = sli_crdt_getbytes(&r);
        uint32_t nd = sli_crdt_getcount(&r, UINT32_MAX, 12);
        if (r.err) break;
        if (nd == 0 || (i && sli_crdt_bytes_cmp(prev.ptr, prev.len, e.ptr, e.len) >= 0)) {
            r.err = SL_ECORRUPT;
            break;
        }
        prev = e;
        /* the count was checked against the bytes left: nall + nd stays small */
        if (nall + nd > UINT32_MAX || (rc = scratch_reserve(s, (uint32_t)(nall + nd)))) {
            r.err = rc ? rc : SL_ETOOBIG;
            break;
        }
        sli_dot *d = s->scratch + nall;
        for (uint32_t k = 0; k < nd; k++) {
            d[k].r = sli_crdt_get32(&r);
            d[k].c = sli_crdt_get64(&r);
            if (!r.err && (!cc_has(&s->cc, &d[k]) || (k && sli_dot_cmp(&d[k - 1], &d[k]) >= 0)))
                r.err = SL_ECORRUPT;
        }
        if (r.err) break;
        if ((rc = insert_new(s, e.ptr, e.len, hash_bytes(e.ptr, e.len), d, nd))) r.err = rc;
        nall += nd;
    }
    rc = sli_crdt_rd_close(&r);
    if (!rc && nall > 1) {
        qsort(s->scratch, nall, sizeof *s->scratch, dot_cmp_q);
        for (size_t i = 1; i < nall; i++)
            if (!sli_dot_cmp(&s->scratch[i - 1], &s->scratch[i])) rc = SL_ECORRUPT;
    }
    if (rc) reset_for_decode(s); /* the empty set: a valid state */
    return rc;
}

int sl_crdt_orset_decode(const void *data, size_t len, uint32_t replica, unsigned flags,
                         sl_crdt_orset **out)
{
    if (!out) return SL_EINVAL;
    *out = NULL;
    sli_crdt_rd r;
    int rc = sli_crdt_rd_open(&r, data, len, SL_CRDT_ORSET);
    if (rc) return rc;
    sl_crdt_orset *s = sl_crdt_orset_new(replica, flags);
    if (!s) return flags & ~SL_CRDT_DELTAS ? SL_EINVAL : SL_ENOMEM;
    rc = sli_crdt_orset_decode_into(s, data, len);
    if (rc) {
        sl_crdt_orset_free(s);
        return rc;
    }
    *out = s;
    return 0;
}
