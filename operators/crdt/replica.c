/*
 * operators/crdt/replica.c - CRDT replicas: the states of one replica per
 * (key, type), delta records to exchange through a topic, snapshots, and the
 * replica operator (include/sluice/crdt.h, section "Replicas", draws the
 * delta record and the snapshot as byte tables).
 *
 * Design. A replica is a table of entries (type, key, object) with an
 * open-addressing index of entry numbers by hash(type, key). A sketch's
 * delta is the registers that rose since the last take: each HyperLogLog
 * entry keeps a copy of the registers it last sent (2^p bytes, so a sketch
 * costs twice its size), and its record is a sketch of the risen registers
 * only (sparse while few rose), not the whole sketch. The types are
 * driven through one small function table (struct kind) over their public
 * verbs, so the replica knows nothing of their insides. A change is found
 * through the type's own pending delta (delta_pending / delta_take); a
 * HyperLogLog, which has none, is marked changed when it is taken for
 * update, and so are an entry just made for update (its first record is
 * its whole state, so that every replica gets the key even when the first
 * update changed nothing, e.g. a remove of an absent element) and an entry
 * restored with unsent changes (its whole state goes out as its delta,
 * which is correct since a state is the join of its deltas).
 *
 * Changes are found without scanning the table: taking a state for update
 * (and restoring one with unsent changes) puts its entry on a dirty list,
 * once; take_deltas visits that list only, so a batch that touched ten keys
 * costs ten visits whatever the table holds.
 *
 * Merging a delta record into a state the replica holds allocates nothing
 * in steady state: the record is decoded into a per-type scratch object
 * that keeps its buffers (enc.h, sli_crdt_<type>_decode_into; OR-Set
 * elements go back to a pool), then merged; a sketch is checked and joined
 * register by register straight from its bytes (no 2^p copy). Only a
 * state the replica does not have yet is decoded into a new object, and an
 * MV-Register (whose merge builds a new pair array) still allocates. End
 * markers (type 0) carry no state: apply() checks and skips them.
 *
 * Invariants:
 *   - at most one entry per (type, key); entries are never removed (a
 *     restore replaces the whole table);
 *   - index slots hold entry number + 1 (0: empty), load factor <= 1/2;
 *   - apply() leaves the table as it was on any error before the merge
 *     (the record is decoded first, the entry made only then);
 *   - take_deltas reuses one buffer: no allocation per delta once it has
 *     grown (the types' delta_take allocate the delta objects).
 *
 * The operator holds the caller's replica and runs as one instance (two
 * instances would share one replica across threads).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "operators/crdt/enc.h"
#include "sluice/connectors.h"
#include "sluice/crdt.h"
#include "sluice/state.h"

#define DELTA_MAGIC 0xCE
#define DELTA_HDR   20
#define END_TYPE    0  /* type byte of an end marker */
#define END_BODY    12 /* its body: version, 3 reserved, partition, partitions */
#define SNAP_MAGIC  "SLCR"
#define SNAP_HDR    24

/* --- the types, through one table ------------------------------------------------ */

typedef struct kind {
    void *(*make)(uint32_t id, int p);
    void (*free)(void *o);
    int (*merge)(void *a, const void *b);
    bool (*equal)(const void *a, const void *b);
    int (*encode)(const void *o, sl_buf *out);
    int (*decode)(const void *d, size_t n, uint32_t id, void **out);
    bool (*pending)(const void *o);     /* NULL: no deltas (hll) */
    int (*take)(void *o, void **delta); /* NULL: no deltas */
    /* decode into the replica's scratch object (enc.h); NULL: decode a new
     * object (mvreg) or merge from the bytes (hll) */
    int (*decode_into)(void *o, const void *d, size_t n);
} kind;

#define KIND(T, MAKE, DEC)                                                   \
    static void T##_free_(void *o)                                           \
    {                                                                        \
        sl_crdt_##T##_free(o);                                               \
    }                                                                        \
    static int T##_merge_(void *a, const void *b)                            \
    {                                                                        \
        return sl_crdt_##T##_merge(a, b);                                    \
    }                                                                        \
    static bool T##_equal_(const void *a, const void *b)                     \
    {                                                                        \
        return sl_crdt_##T##_equal(a, b);                                    \
    }                                                                        \
    static int T##_encode_(const void *o, sl_buf *b)                         \
    {                                                                        \
        return sl_crdt_##T##_encode(o, b);                                   \
    }                                                                        \
    static void *T##_make_(uint32_t id, int p)                               \
    {                                                                        \
        (void)p;                                                             \
        (void)id;                                                            \
        return MAKE;                                                         \
    }                                                                        \
    static int T##_decode_(const void *d, size_t n, uint32_t id, void **out) \
    {                                                                        \
        (void)id;                                                            \
        sl_crdt_##T *o = NULL;                                               \
        int rc = DEC;                                                        \
        *out = o;                                                            \
        return rc;                                                           \
    }

#define KIND_DELTAS(T)                            \
    static bool T##_pending_(const void *o)       \
    {                                             \
        return sl_crdt_##T##_delta_pending(o);    \
    }                                             \
    static int T##_take_(void *o, void **d)       \
    {                                             \
        sl_crdt_##T *x = NULL;                    \
        int rc = sl_crdt_##T##_delta_take(o, &x); \
        *d = x;                                   \
        return rc;                                \
    }

KIND(gcounter, sl_crdt_gcounter_new(id), sl_crdt_gcounter_decode(d, n, id, &o))
KIND(pncounter, sl_crdt_pncounter_new(id), sl_crdt_pncounter_decode(d, n, id, &o))
KIND(lww, sl_crdt_lww_new(id), sl_crdt_lww_decode(d, n, id, &o))
KIND(mvreg, sl_crdt_mvreg_new(id), sl_crdt_mvreg_decode(d, n, id, &o))
KIND(orset, sl_crdt_orset_new(id, SL_CRDT_DELTAS),
     sl_crdt_orset_decode(d, n, id, SL_CRDT_DELTAS, &o))
KIND(hll, sl_crdt_hll_new(p), sl_crdt_hll_decode(d, n, &o))
KIND_DELTAS(gcounter)
KIND_DELTAS(pncounter)
KIND_DELTAS(lww)
KIND_DELTAS(mvreg)
KIND_DELTAS(orset)

#define KIND_INTO(T)                                       \
    static int T##_into_(void *o, const void *d, size_t n) \
    {                                                      \
        return sli_crdt_##T##_decode_into(o, d, n);        \
    }
KIND_INTO(gcounter)
KIND_INTO(pncounter)
KIND_INTO(lww)
KIND_INTO(orset)

#define K(T, D, P, I)                                                                   \
    {                                                                                   \
        T##_make_, T##_free_, T##_merge_, T##_equal_, T##_encode_, T##_decode_, D, P, I \
    }
static const kind kinds[7] = {
    {0},
    K(gcounter, gcounter_pending_, gcounter_take_, gcounter_into_),
    K(pncounter, pncounter_pending_, pncounter_take_, pncounter_into_),
    K(lww, lww_pending_, lww_take_, lww_into_),
    K(mvreg, mvreg_pending_, mvreg_take_, NULL),
    K(orset, orset_pending_, orset_take_, orset_into_),
    K(hll, NULL, NULL, NULL),
};

static const kind *kind_of(int type)
{
    return type >= SL_CRDT_GCOUNTER && type <= SL_CRDT_HLL ? &kinds[type] : NULL;
}

/* --- the table ------------------------------------------------------------------- */

typedef struct entry {
    uint64_t hash;
    void *obj;
    uint8_t *key;
    uint32_t klen;
    uint8_t type;
    uint8_t changed; /* hll taken for update, or restored with unsent changes */
    uint8_t *sent;   /* hll: the registers as last sent (NULL: none sent yet) */
    uint8_t queued;  /* on the replica's dirty list */
} entry;

struct sl_crdt_replica {
    uint32_t id;
    int hll_p;
    uint64_t exchange;
    entry *e;
    size_t n, cap;
    uint32_t *slot;  /* entry number + 1; 0 empty */
    size_t nslot;    /* power of two */
    uint32_t *dirty; /* entries taken for update since the last take, each once */
    size_t ndirty, capdirty;
    int scan_all; /* the dirty list could not grow: the next take scans every entry */
    sl_buf buf;   /* take_deltas' record */
    sl_buf tmp;   /* a sketch's encoding, to diff against what was sent */
    uint8_t *cur; /* its registers (2^p) */
    /* apply(): per type, the object a delta record is decoded into before
     * it is merged into the entry (made on first use, then reused) */
    void *scratch[7];
};

static uint64_t key_hash(int type, const void *key, uint32_t klen)
{
    return sl_hash(key, klen) ^ ((uint64_t)type * 0x9E3779B97F4A7C15ull);
}

static void entries_free(entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kinds[e[i].type].free(e[i].obj);
        free(e[i].key);
        free(e[i].sent);
    }
    free(e);
}

sl_crdt_replica *sl_crdt_replica_new(uint32_t id, uint64_t exchange, int hll_p)
{
    if (hll_p == 0) hll_p = SL_CRDT_HLL_P_DEFAULT;
    if (hll_p < SL_CRDT_HLL_P_MIN || hll_p > SL_CRDT_HLL_P_MAX) return NULL;
    sl_crdt_replica *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->id = id;
    r->exchange = exchange;
    r->hll_p = hll_p;
    return r;
}

void sl_crdt_replica_free(sl_crdt_replica *r)
{
    if (!r) return;
    entries_free(r->e, r->n);
    free(r->slot);
    free(r->dirty);
    sl_buf_free(&r->buf);
    sl_buf_free(&r->tmp);
    free(r->cur);
    for (int t = SL_CRDT_GCOUNTER; t <= SL_CRDT_HLL; t++)
        if (r->scratch[t]) kinds[t].free(r->scratch[t]);
    free(r);
}

uint32_t sl_crdt_replica_id(const sl_crdt_replica *r)
{
    return r->id;
}

static long find(const sl_crdt_replica *r, int type, const void *key, uint32_t klen, uint64_t h)
{
    if (!r->nslot) return -1;
    for (size_t i = h & (r->nslot - 1);; i = (i + 1) & (r->nslot - 1)) {
        uint32_t s = r->slot[i];
        if (!s) return -1;
        const entry *e = &r->e[s - 1];
        if (e->hash == h && e->type == type && e->klen == klen &&
            (klen == 0 || memcmp(e->key, key, klen) == 0))
            return (long)(s - 1);
    }
}

static void slot_put(uint32_t *slot, size_t nslot, uint64_t h, uint32_t v)
{
    size_t i = h & (nslot - 1);
    while (slot[i]) i = (i + 1) & (nslot - 1);
    slot[i] = v;
}

/* Room for one more entry (entries and index). */
static int grow(sl_crdt_replica *r)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        entry *e = realloc(r->e, cap * sizeof(*e));
        if (!e) return SL_ENOMEM;
        r->e = e;
        r->cap = cap;
    }
    if ((r->n + 1) * 2 > r->nslot) {
        size_t ns = r->nslot ? r->nslot * 2 : 32;
        uint32_t *s = calloc(ns, sizeof(*s));
        if (!s) return SL_ENOMEM;
        for (size_t i = 0; i < r->n; i++) slot_put(s, ns, r->e[i].hash, (uint32_t)i + 1);
        free(r->slot);
        r->slot = s;
        r->nslot = ns;
    }
    return 0;
}

/* Add an entry owning obj (on failure obj is not taken). */
static int add(sl_crdt_replica *r, int type, const void *key, uint32_t klen, uint64_t h, void *obj,
               entry **out)
{
    if (r->n >= UINT32_MAX - 1) return SL_ETOOBIG;
    int rc = grow(r);
    if (rc) return rc;
    uint8_t *k = malloc(klen ? klen : 1);
    if (!k) return SL_ENOMEM;
    if (klen) memcpy(k, key, klen);
    entry *e = &r->e[r->n];
    *e = (entry){.hash = h, .obj = obj, .key = k, .klen = klen, .type = (uint8_t)type};
    slot_put(r->slot, r->nslot, h, (uint32_t)r->n + 1);
    r->n++;
    *out = e;
    return 0;
}

/* Queue entry i for the next take (never fails: without memory for the
 * list, the next take scans every entry). */
static void mark(sl_crdt_replica *r, size_t i)
{
    if (r->e[i].queued) return;
    if (r->ndirty == r->capdirty) {
        size_t cap = r->capdirty ? r->capdirty * 2 : 64;
        uint32_t *d = realloc(r->dirty, cap * sizeof(*d));
        if (!d) {
            r->scan_all = 1;
            return;
        }
        r->dirty = d;
        r->capdirty = cap;
    }
    r->dirty[r->ndirty++] = (uint32_t)i;
    r->e[i].queued = 1;
}

static void *access_(sl_crdt_replica *r, int type, sl_bytes key, unsigned flags)
{
    if (!r || key.len > SL_CRDT_REPLICA_MAX_KEY || (key.len && !key.ptr)) return NULL;
    uint64_t h = key_hash(type, key.ptr, key.len);
    long i = find(r, type, key.ptr, key.len, h);
    if (i >= 0) {
        if (flags & SL_CRDT_REPLICA_UPDATE) {
            if (type == SL_CRDT_HLL) r->e[i].changed = 1;
            mark(r, (size_t)i);
        }
        return r->e[i].obj;
    }
    if (!(flags & SL_CRDT_REPLICA_UPDATE)) return NULL;
    void *o = kinds[type].make(r->id, r->hll_p);
    entry *e;
    if (!o) return NULL;
    if (add(r, type, key.ptr, key.len, h, o, &e)) {
        kinds[type].free(o);
        return NULL;
    }
    e->changed = 1; /* sent at least once, even if its first update changes nothing
                     * (a remove of an absent element): every replica then has the key */
    mark(r, r->n - 1);
    return o;
}

sl_crdt_gcounter *sl_crdt_replica_gcounter(sl_crdt_replica *r, sl_bytes key, unsigned flags)
{
    return access_(r, SL_CRDT_GCOUNTER, key, flags);
}
sl_crdt_pncounter *sl_crdt_replica_pncounter(sl_crdt_replica *r, sl_bytes key, unsigned flags)
{
    return access_(r, SL_CRDT_PNCOUNTER, key, flags);
}
sl_crdt_lww *sl_crdt_replica_lww(sl_crdt_replica *r, sl_bytes key, unsigned flags)
{
    return access_(r, SL_CRDT_LWW, key, flags);
}
sl_crdt_mvreg *sl_crdt_replica_mvreg(sl_crdt_replica *r, sl_bytes key, unsigned flags)
{
    return access_(r, SL_CRDT_MVREG, key, flags);
}
sl_crdt_orset *sl_crdt_replica_orset(sl_crdt_replica *r, sl_bytes key, unsigned flags)
{
    return access_(r, SL_CRDT_ORSET, key, flags);
}
sl_crdt_hll *sl_crdt_replica_hll(sl_crdt_replica *r, sl_bytes key, unsigned flags)
{
    return access_(r, SL_CRDT_HLL, key, flags);
}

size_t sl_crdt_replica_size(const sl_crdt_replica *r)
{
    return r ? r->n : 0;
}

const void *sl_crdt_replica_at(const sl_crdt_replica *r, size_t i, sl_bytes *key, int *type)
{
    if (!r || i >= r->n) return NULL;
    if (key) *key = (sl_bytes){r->e[i].key, r->e[i].klen};
    if (type) *type = r->e[i].type;
    return r->e[i].obj;
}

/* --- deltas ---------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
    return get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* r->buf := the record header for e, followed by the encoding of obj. */
static int make_record(sl_crdt_replica *r, const entry *e, const void *obj)
{
    uint8_t h[DELTA_HDR] = {DELTA_MAGIC, 1, e->type, 0};
    put32(h + 4, r->id);
    put64(h + 8, r->exchange);
    put32(h + 16, e->klen);
    r->buf.len = 0;
    int rc = sl_buf_append(&r->buf, h, sizeof(h));
    if (!rc && e->klen) rc = sl_buf_append(&r->buf, e->key, e->klen);
    if (!rc) rc = kinds[e->type].encode(obj, &r->buf);
    return rc;
}

/* r->buf := the record of a sketch's delta: the registers that rose since
 * they were last sent (a sketch of those registers only, zero elsewhere, in
 * the canonical form: sparse when 4 * n + 4 < 2^p), r->cur := all of them.
 * Registers raised by merges go out too (harmless: a join). */
static int hll_record(sl_crdt_replica *r, entry *e)
{
    size_t m = (size_t)1 << r->hll_p;
    if (!e->sent && !(e->sent = calloc(m, 1))) return SL_ENOMEM;
    if (!r->cur && !(r->cur = malloc(m))) return SL_ENOMEM;
    r->tmp.len = 0;
    int rc = sl_crdt_hll_encode(e->obj, &r->tmp);
    if (rc) return rc;
    const uint8_t *p = r->tmp.ptr; /* hll body, crdt.h: p, form, registers */
    if (p[5] == 0) {
        memcpy(r->cur, p + 6, m);
    } else {
        memset(r->cur, 0, m);
        uint32_t n = get32(p + 6);
        for (uint32_t j = 0; j < n; j++) {
            uint32_t v = get32(p + 10 + 4 * (size_t)j);
            r->cur[v >> 8] = (uint8_t)v;
        }
    }
    uint32_t nz = 0;
    for (size_t i = 0; i < m; i++) nz += r->cur[i] > e->sent[i];
    int sparse = (uint64_t)nz * 4 + 4 < m;
    uint8_t h[DELTA_HDR] = {DELTA_MAGIC, 1, e->type, 0};
    put32(h + 4, r->id);
    put64(h + 8, r->exchange);
    put32(h + 16, e->klen);
    r->buf.len = 0;
    uint8_t hh[10] = {SLI_CRDT_MAGIC,    SL_CRDT_HLL,    SL_CRDT_ENCODING_VERSION, 0,
                      (uint8_t)r->hll_p, (uint8_t)sparse};
    put32(hh + 6, nz);
    rc = sl_buf_reserve(&r->buf, DELTA_HDR + e->klen + sizeof(hh) + (sparse ? 4 * (size_t)nz : m));
    if (rc) return rc;
    sl_buf_append(&r->buf, h, sizeof(h));
    if (e->klen) sl_buf_append(&r->buf, e->key, e->klen);
    sl_buf_append(&r->buf, hh, sparse ? 10 : 6);
    uint8_t *o = r->buf.ptr + r->buf.len;
    for (size_t i = 0; i < m; i++) {
        uint8_t v = r->cur[i] > e->sent[i] ? r->cur[i] : 0;
        if (!sparse) {
            *o++ = v;
        } else if (v) {
            put32(o, (uint32_t)i << 8 | v);
            o += 4;
        }
    }
    r->buf.len = (size_t)(o - r->buf.ptr);
    return 0;
}

/* Send entry e's delta, if it has one. */
static int take_one(sl_crdt_replica *r, entry *e, sl_crdt_delta_fn emit, void *ud)
{
    const kind *k = &kinds[e->type];
    int rc;
    {
        if (e->changed && e->type == SL_CRDT_HLL) {
            if ((rc = hll_record(r, e))) return rc;
            if ((rc = emit(ud, (sl_bytes){e->key, e->klen}, r->buf.ptr, r->buf.len))) return rc;
            memcpy(e->sent, r->cur, (size_t)1 << r->hll_p);
            e->changed = 0;
            return 0;
        }
        if (e->changed) {
            /* the whole state: a new entry, or a restored entry's unsent changes */
            if ((rc = make_record(r, e, e->obj))) return rc;
            if ((rc = emit(ud, (sl_bytes){e->key, e->klen}, r->buf.ptr, r->buf.len))) return rc;
            e->changed = 0;
            if (k->take) { /* its pending delta went out inside the state */
                void *d = NULL;
                if ((rc = k->take(e->obj, &d))) return rc;
                k->free(d);
            }
            return 0;
        }
        if (!k->pending || !k->pending(e->obj)) return 0;
        void *d = NULL;
        if ((rc = k->take(e->obj, &d))) return rc;
        if (!d) return 0;
        rc = make_record(r, e, d);
        if (!rc) rc = emit(ud, (sl_bytes){e->key, e->klen}, r->buf.ptr, r->buf.len);
        if (rc) {
            /* not sent: send the whole state next time instead */
            e->changed = 1;
            k->free(d);
            return rc;
        }
        k->free(d);
    }
    return 0;
}

int sl_crdt_replica_take_deltas(sl_crdt_replica *r, sl_crdt_delta_fn emit, void *ud)
{
    if (!r || !emit) return SL_EINVAL;
    if (r->scan_all) { /* every entry, then the list is moot */
        for (size_t i = 0; i < r->n; i++) {
            int rc = take_one(r, &r->e[i], emit, ud);
            if (rc) return rc; /* scan_all stays: the next take goes on */
        }
        for (size_t i = 0; i < r->n; i++) r->e[i].queued = 0;
        r->ndirty = 0;
        r->scan_all = 0;
        return 0;
    }
    for (size_t j = 0; j < r->ndirty; j++) {
        entry *e = &r->e[r->dirty[j]];
        int rc = take_one(r, e, emit, ud);
        if (rc) { /* e and the rest stay queued */
            memmove(r->dirty, r->dirty + j, (r->ndirty - j) * sizeof(*r->dirty));
            r->ndirty -= j;
            return rc;
        }
        e->queued = 0;
    }
    r->ndirty = 0;
    return 0;
}

/* Check a record's header (a delta record, or an end marker: type 0); sets
 * the fields. */
static int parse_record(const void *rec, size_t len, int *type, uint32_t *sender, uint64_t *exch,
                        sl_bytes *key, const uint8_t **body, size_t *blen)
{
    const uint8_t *p = rec;
    if (!rec || len < DELTA_HDR || p[0] != DELTA_MAGIC) return SL_ECORRUPT;
    if (p[1] != 1) return SL_ENOTSUP;
    if ((p[2] != END_TYPE && !kind_of(p[2])) || p[3] != 0) return SL_ECORRUPT;
    uint32_t klen = get32(p + 16);
    if (klen > SL_CRDT_REPLICA_MAX_KEY || klen > len - DELTA_HDR) return SL_ECORRUPT;
    *type = p[2];
    *sender = get32(p + 4);
    *exch = get64(p + 8);
    *key = (sl_bytes){p + DELTA_HDR, klen};
    *body = p + DELTA_HDR + klen;
    *blen = len - DELTA_HDR - klen;
    return 0;
}

/* An end marker's body (crdt.h): sets partition and partitions. */
static int parse_end(const uint8_t *body, size_t blen, uint32_t *partition, uint32_t *partitions)
{
    if (blen != END_BODY || body[1] || body[2] || body[3]) return SL_ECORRUPT;
    if (body[0] != 1) return SL_ENOTSUP;
    *partition = get32(body + 4);
    *partitions = get32(body + 8);
    return *partitions == 0 || *partition >= *partitions ? SL_ECORRUPT : 0;
}

sl_bytes sl_crdt_replica_delta_key(const void *rec, uint32_t len, void *ud)
{
    (void)ud;
    int type;
    uint32_t sender;
    uint64_t exch;
    sl_bytes key = {"", 0};
    const uint8_t *body;
    size_t blen;
    if (parse_record(rec, len, &type, &sender, &exch, &key, &body, &blen)) return (sl_bytes){"", 0};
    return key;
}

int sl_crdt_replica_end_marker(const sl_crdt_replica *r, sl_bytes key, uint32_t partition,
                               uint32_t partitions, sl_buf *out)
{
    if (!r || !out || (key.len && !key.ptr) || key.len > SL_CRDT_REPLICA_MAX_KEY ||
        partition >= partitions)
        return SL_EINVAL;
    uint8_t h[DELTA_HDR] = {DELTA_MAGIC, 1, END_TYPE, 0};
    put32(h + 4, r->id);
    put64(h + 8, r->exchange);
    put32(h + 16, key.len);
    uint8_t b[END_BODY] = {1};
    put32(b + 4, partition);
    put32(b + 8, partitions);
    int rc = sl_buf_reserve(out, sizeof(h) + key.len + sizeof(b));
    if (rc) return rc;
    sl_buf_append(out, h, sizeof(h));
    if (key.len) sl_buf_append(out, key.ptr, key.len);
    sl_buf_append(out, b, sizeof(b));
    return 0;
}

int sl_crdt_replica_end_marker_read(const void *rec, size_t len, sl_crdt_end_marker *m)
{
    int type;
    uint32_t sender, part, parts;
    uint64_t exch;
    sl_bytes key;
    const uint8_t *body;
    size_t blen;
    int rc = parse_record(rec, len, &type, &sender, &exch, &key, &body, &blen);
    if (rc) return rc;
    if (type != END_TYPE) return 0;
    if ((rc = parse_end(body, blen, &part, &parts))) return rc;
    if (m)
        *m = (sl_crdt_end_marker){
            .sender = sender, .exchange = exch, .partition = part, .partitions = parts};
    return 1;
}

/* A sketch's encoding, checked as sl_crdt_hll_decode checks it (canonical
 * form, registers in range, no trailing bytes), then joined into h straight
 * from the bytes: nothing is allocated, and h is unchanged on error. A
 * register (i, v) is raised through sl_crdt_hll_add_hash with a hash whose
 * top p bits are i and whose rank (1 + leading zeros of the other 64 - p
 * bits, capped at 65 - p) is v, which is the max that merge takes. */
static int hll_merge_bytes(sl_crdt_hll *h, int want_p, const uint8_t *d, size_t n)
{
    if (n < 6) return SL_ECORRUPT;
    int p = d[4], form = d[5];
    if (p < SL_CRDT_HLL_P_MIN || p > SL_CRDT_HLL_P_MAX || form > 1) return SL_ECORRUPT;
    size_t m = (size_t)1 << p;
    uint8_t maxv = (uint8_t)(65 - p);
    uint32_t nz = 0;
    if (form == 0) {
        if (n - 6 != m) return SL_ECORRUPT;
        for (size_t i = 0; i < m; i++) {
            if (d[6 + i] > maxv) return SL_ECORRUPT;
            nz += d[6 + i] != 0;
        }
        if ((uint64_t)nz * 4 + 4 < m) return SL_ECORRUPT; /* sparse is the canonical form */
    } else {
        if (n < 10) return SL_ECORRUPT;
        nz = get32(d + 6);
        if (nz > m) return SL_ETOOBIG;
        if ((n - 10) / 4 < nz) return SL_ECORRUPT;
        if ((uint64_t)nz * 4 + 4 >= m) return SL_ECORRUPT; /* dense is the canonical form */
        int64_t last = -1;
        for (uint32_t k = 0; k < nz; k++) {
            uint32_t x = get32(d + 10 + 4 * (size_t)k);
            uint32_t idx = x >> 8;
            uint8_t v = (uint8_t)(x & 0xff);
            if (idx >= m || (int64_t)idx <= last || v == 0 || v > maxv) return SL_ECORRUPT;
            last = idx;
        }
        if (n - 10 != 4 * (size_t)nz) return SL_ECORRUPT;
    }
    if (p != want_p) return SL_EINVAL;
    int q = 64 - p;
#define RAISE(i, v) \
    sl_crdt_hll_add_hash(h, (uint64_t)(i) << q | ((int)(v) <= q ? 1ull << (q - (int)(v)) : 0))
    if (form == 0) {
        for (size_t i = 0; i < m; i++)
            if (d[6 + i]) RAISE(i, d[6 + i]);
    } else {
        for (uint32_t k = 0; k < nz; k++) {
            uint32_t x = get32(d + 10 + 4 * (size_t)k);
            RAISE(x >> 8, x & 0xff);
        }
    }
#undef RAISE
    return 0;
}

/* The scratch object of a type (made on first use). */
static void *scratch_of(sl_crdt_replica *r, int type)
{
    if (!r->scratch[type])
        r->scratch[type] = type == SL_CRDT_ORSET ? (void *)sl_crdt_orset_new(r->id, 0)
                                                 : kinds[type].make(r->id, r->hll_p);
    return r->scratch[type];
}

/* Merge the encoded state (body) into (type, key), making the entry if new.
 * An existing entry merges without allocating (once the scratch objects
 * have grown): the body is decoded into the type's scratch object, or for
 * a sketch joined straight from the bytes; only a new entry decodes a new
 * object. Either way the body is checked whole before the entry changes. */
static int merge_encoded(sl_crdt_replica *r, int type, sl_bytes key, const uint8_t *body,
                         size_t blen, int changed)
{
    const kind *k = &kinds[type];
    int rc = sl_crdt_peek(body, blen);
    if (rc < 0) return rc;
    if (rc != type) return SL_ECORRUPT;
    uint64_t h = key_hash(type, key.ptr, key.len);
    long i = find(r, type, key.ptr, key.len, h);
    if (i >= 0 && (type == SL_CRDT_HLL || k->decode_into)) {
        if (type == SL_CRDT_HLL) {
            rc = hll_merge_bytes(r->e[i].obj, r->hll_p, body, blen);
        } else {
            void *o = scratch_of(r, type);
            if (!o) return SL_ENOMEM;
            rc = k->decode_into(o, body, blen);
            if (!rc) rc = k->merge(r->e[i].obj, o);
        }
        if (!rc && changed) {
            r->e[i].changed = 1;
            mark(r, (size_t)i);
        }
        return rc;
    }
    void *o = NULL;
    if ((rc = k->decode(body, blen, r->id, &o))) return rc;
    if (type == SL_CRDT_HLL && sl_crdt_hll_precision(o) != r->hll_p) {
        k->free(o);
        return SL_EINVAL;
    }
    if (i < 0) {
        entry *e;
        if ((rc = add(r, type, key.ptr, key.len, h, o, &e))) {
            k->free(o);
            return rc;
        }
        e->changed = (uint8_t)changed;
        if (changed) mark(r, r->n - 1);
        return 0;
    }
    rc = k->merge(r->e[i].obj, o);
    k->free(o);
    if (!rc && changed) {
        r->e[i].changed = 1;
        mark(r, (size_t)i);
    }
    return rc;
}

int sl_crdt_replica_apply(sl_crdt_replica *r, const void *rec, size_t len)
{
    if (!r) return SL_EINVAL;
    int type;
    uint32_t sender;
    uint64_t exch;
    sl_bytes key;
    const uint8_t *body;
    size_t blen;
    int rc = parse_record(rec, len, &type, &sender, &exch, &key, &body, &blen);
    if (rc) return rc;
    if (type == END_TYPE) {
        uint32_t part, parts;
        if ((rc = parse_end(body, blen, &part, &parts))) return rc;
        return exch != r->exchange ? 1 : 2;
    }
    if (exch != r->exchange) return 1;
    return merge_encoded(r, type, key, body, blen, 0);
}

bool sl_crdt_replica_equal(const sl_crdt_replica *a, const sl_crdt_replica *b)
{
    if (!a || !b || a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++) {
        const entry *e = &a->e[i];
        long j = find(b, e->type, e->key, e->klen, e->hash);
        if (j < 0 || !kinds[e->type].equal(e->obj, b->e[j].obj)) return false;
    }
    return true;
}

/* --- snapshots ------------------------------------------------------------------- */

static int entry_cmp(const void *x, const void *y)
{
    const entry *a = *(const entry *const *)x, *b = *(const entry *const *)y;
    if (a->type != b->type) return a->type < b->type ? -1 : 1;
    return sli_crdt_bytes_cmp(a->key, a->klen, b->key, b->klen);
}

int sl_crdt_replica_snapshot(const sl_crdt_replica *r, sl_buf *out)
{
    if (!r || !out) return SL_EINVAL;
    if (r->n > UINT32_MAX) return SL_ETOOBIG;
    const entry **order = malloc((r->n ? r->n : 1) * sizeof(*order));
    if (!order) return SL_ENOMEM;
    for (size_t i = 0; i < r->n; i++) order[i] = &r->e[i];
    qsort(order, r->n, sizeof(*order), entry_cmp);
    size_t start = out->len;
    uint8_t h[SNAP_HDR] = {'S', 'L', 'C', 'R', 1, (uint8_t)r->hll_p, 0, 0};
    put32(h + 8, r->id);
    put64(h + 12, r->exchange);
    put32(h + 20, (uint32_t)r->n);
    int rc = sl_buf_append(out, h, sizeof(h));
    for (size_t i = 0; !rc && i < r->n; i++) {
        const entry *e = order[i];
        const kind *k = &kinds[e->type];
        uint8_t eh[6] = {e->type, (uint8_t)(e->changed || (k->pending && k->pending(e->obj)))};
        put32(eh + 2, e->klen);
        rc = sl_buf_append(out, eh, sizeof(eh));
        if (!rc && e->klen) rc = sl_buf_append(out, e->key, e->klen);
        size_t at = out->len;
        uint8_t l[4] = {0};
        if (!rc) rc = sl_buf_append(out, l, 4);
        if (!rc) rc = k->encode(e->obj, out);
        if (!rc) {
            size_t sl = out->len - at - 4;
            if (sl > UINT32_MAX)
                rc = SL_ETOOBIG;
            else
                put32(out->ptr + at, (uint32_t)sl);
        }
    }
    free(order);
    if (rc) out->len = start;
    return rc;
}

int sl_crdt_replica_restore(sl_crdt_replica *r, const void *data, size_t len)
{
    if (!r || (!data && len)) return SL_EINVAL;
    const uint8_t *p = data;
    if (len < SNAP_HDR || memcmp(p, SNAP_MAGIC, 4) != 0) return SL_ECORRUPT;
    if (p[4] != 1) return SL_ENOTSUP;
    if (p[6] || p[7]) return SL_ECORRUPT;
    if (p[5] != r->hll_p || get64(p + 12) != r->exchange) return SL_EINVAL;
    uint32_t n = get32(p + 20);
    if (n > (len - SNAP_HDR) / 10) return SL_ECORRUPT; /* each entry takes >= 10 bytes */
    /* build the new table aside, then swap: r is unchanged on error */
    sl_crdt_replica t = {.id = r->id, .hll_p = r->hll_p, .exchange = r->exchange};
    size_t off = SNAP_HDR;
    int rc = 0;
    size_t prev = SIZE_MAX; /* t's entry made from the previous snapshot entry */
    for (uint32_t i = 0; i < n && !rc; i++) {
        if (len - off < 6) {
            rc = SL_ECORRUPT;
            break;
        }
        int type = p[off], flags = p[off + 1];
        uint32_t klen = get32(p + off + 2);
        off += 6;
        if (!kind_of(type) || flags > 1 || klen > SL_CRDT_REPLICA_MAX_KEY || len - off < klen ||
            len - off - klen < 4) {
            rc = SL_ECORRUPT;
            break;
        }
        sl_bytes key = {p + off, klen};
        off += klen;
        uint32_t sl = get32(p + off);
        off += 4;
        if (sl > len - off) {
            rc = SL_ECORRUPT;
            break;
        }
        entry cur = {.type = (uint8_t)type, .key = (uint8_t *)key.ptr, .klen = klen};
        const entry *cp = &cur, *pp = prev == SIZE_MAX ? NULL : &t.e[prev];
        if (pp && entry_cmp(&pp, &cp) >= 0) {
            rc = SL_ECORRUPT; /* not strictly ascending: a duplicate or a forgery */
            break;
        }
        rc = merge_encoded(&t, type, key, p + off, sl, flags);
        off += sl;
        if (!rc) prev = t.n - 1;
    }
    if (!rc && off != len) rc = SL_ECORRUPT;
    if (rc) {
        entries_free(t.e, t.n);
        free(t.slot);
        free(t.dirty);
        return rc;
    }
    entries_free(r->e, r->n);
    free(r->slot);
    r->e = t.e;
    r->n = t.n;
    r->cap = t.cap;
    r->slot = t.slot;
    r->nslot = t.nslot;
    free(r->dirty);
    r->dirty = t.dirty;
    r->ndirty = t.ndirty;
    r->capdirty = t.capdirty;
    r->scan_all = t.scan_all;
    return 0;
}

/* --- the operator ---------------------------------------------------------------- */

typedef struct rep_op {
    sl_crdt_replica_conf conf;
    sl_ctx *ctx;
    int64_t ts; /* event time of the deltas being emitted */
} rep_op;

static int op_open(sl_ctx *ctx, void **self)
{
    const sl_crdt_replica_conf *c = sl_ctx_conf(ctx);
    if (!c || !c->replica)
        return sl_ctx_fail(ctx, SL_EINVAL, "the replica operator needs a conf with a replica");
    if (sl_ctx_parallelism(ctx) != 1)
        return sl_ctx_fail(ctx, SL_EINVAL,
                           "the replica operator runs as one instance (it holds one replica), "
                           "not %d",
                           sl_ctx_parallelism(ctx));
    rep_op *o = calloc(1, sizeof(*o));
    if (!o) return SL_ENOMEM;
    o->conf = *c;
    *self = o;
    return 0;
}

static int op_emit(void *ud, sl_bytes key, const void *rec, size_t len)
{
    (void)key;
    rep_op *o = ud;
    if (len > UINT32_MAX) return SL_ETOOBIG;
    return sl_emit_copy(o->ctx, o->ts, 0, rec, (uint32_t)len);
}

static int op_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    rep_op *o = self;
    sl_crdt_replica *r = o->conf.replica;
    if (sl_ctx_input(ctx) == o->conf.deltas_input) {
        for (uint32_t i = 0; i < in->count; i++) {
            sl_bytes v = sl_broker_rec_value(sl_batch_bytes(in, i));
            int rc = sl_crdt_replica_apply(r, v.ptr, v.len);
            if (rc < 0)
                return sl_ctx_fail(ctx, rc, "delta record %u of the batch: %s", i, sl_strerror(rc));
        }
        return 0;
    }
    if (!o->conf.update) return sl_ctx_fail(ctx, SL_EINVAL, "local records but no update()");
    int64_t ts = SL_TIME_MIN;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes rec = sl_batch_bytes(in, i);
        int rc = o->conf.update(r, rec.ptr, rec.len, in->ts[i], o->conf.ud);
        if (rc) return sl_ctx_fail(ctx, rc < 0 ? rc : SL_EINVAL, "update(): %s", sl_strerror(rc));
        if (in->ts[i] > ts) ts = in->ts[i];
    }
    o->ctx = ctx;
    o->ts = ts == SL_TIME_MIN ? 0 : ts;
    int rc = sl_crdt_replica_take_deltas(r, op_emit, o);
    return rc ? sl_ctx_fail(ctx, rc, "sending deltas: %s", sl_strerror(rc)) : 0;
}

static int op_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    rep_op *o = self;
    int rc = sl_crdt_replica_snapshot(o->conf.replica, out);
    return rc ? sl_ctx_fail(ctx, rc, "snapshot: %s", sl_strerror(rc)) : 0;
}

static int op_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    rep_op *o = self;
    int rc = sl_crdt_replica_restore(o->conf.replica, data, len);
    return rc ? sl_ctx_fail(ctx, rc, "restore: %s", sl_strerror(rc)) : 0;
}

static void op_close(void *self)
{
    free(self);
}

const sl_operator sl_crdt_replica_op = {.version = SL_OPERATOR_VERSION,
                                        .kind = "crdt-replica",
                                        .open = op_open,
                                        .process = op_process,
                                        .snapshot = op_snapshot,
                                        .restore = op_restore,
                                        .close = op_close};
