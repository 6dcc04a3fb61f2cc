/*
 * engine/state.c - keyed state: the hash table behind sluice/state.h, and
 * its snapshot format.
 *
 * What: a map from key (bytes plus the 64-bit hash computed once at key_by)
 * to a fixed-size value, one per operator instance and state name. Every
 * keyed record does one lookup here, so it is built for the hot path:
 *
 *  - Open addressing with linear probing over a power-of-two array of slots.
 *    The home slot of a key is `hash & mask` (the low bits; key groups use
 *    the high bits, so the two do not correlate). A probe compares the full
 *    64-bit hash first and the key bytes only on a hash match.
 *  - A slot is a 24-byte header followed by the value, inline, so a lookup
 *    touches one cache line for small values:
 *
 *        0   8  hash
 *        8   8  key: the key bytes themselves if key_len <= 8 (zero-padded),
 *                   else the key's byte offset in the arena
 *       16   4  key_len + 1; 0 marks an empty slot
 *       20   4  unused (0)
 *       24   value_size bytes of value, then padding to a multiple of 8
 *
 *    Values are therefore 8-byte aligned, and they move when the table grows
 *    or when a removal shifts entries (the header allows both).
 *  - Keys longer than 8 bytes live in an arena owned by the table. Removal
 *    leaves the bytes behind as garbage (`adead`); when garbage exceeds half
 *    the arena (and 4 KiB), the next insertion of a long key compacts it.
 *  - The table doubles when an insertion would take it past 3/4 full. No
 *    allocation happens on a lookup or on an update of an existing key;
 *    insertions allocate only when growing (amortized).
 *  - Removal is by backward-shift deletion (no tombstones): the entries after
 *    the hole in its probe cluster are moved back into it when that keeps them
 *    reachable from their home slot, so probe lengths never degrade.
 *
 * Why these choices: the common case (10^3..10^6 keys, 8..16-byte keys, 8..64
 * byte aggregates) then costs one hash-indexed load and one compare, with
 * neither pointer chasing nor per-entry allocation.
 *
 * Invariants:
 *  - cap = mask + 1 is a power of two, 16 <= cap <= MAX_CAP, and
 *    count <= grow_at = cap - cap / 4: there is always an empty slot, so
 *    probes terminate and the iterator below can anchor on an empty slot.
 *  - Every entry sits in the cluster that starts at or after its home slot
 *    and contains no empty slot between its home and itself (linear probing
 *    invariant, kept by backward shift).
 *  - A key is present at most once.
 *  - arena[0 .. alen) holds the long keys of live entries and `adead` bytes
 *    of garbage.
 *
 * Iteration with removal. sl_state_next() visits slots *downwards*, starting
 * just below an empty slot E chosen at the first call and wrapping around,
 * E-1, E-2, ..., E+1. Backward shift moves entries only towards lower slots
 * within a cluster and never across an empty slot, so when the entry at slot i
 * (just returned) is removed, the entries that move come from slots i+1 ..
 * E-1, all visited already, and land in slots >= i, which the iterator has
 * passed: nothing is skipped and nothing is returned twice. The same holds for
 * removing any entry already returned. E itself stays empty (no entry ever
 * moves into it), so the anchor remains valid. The iterator packs E (high
 * half of size_t) and the number of slots visited (low half); MAX_CAP keeps
 * both within a half. Inserting during iteration is not supported: it may
 * return entries twice or skip them, and growth ends the iteration. An
 * entry's key and value pointers point into the table (a short key into its
 * slot): they are valid until the table next changes.
 *
 * Snapshot format (sl_state_snapshot / sl_state_restore), all integers
 * little-endian:
 *
 *    offset  size      field
 *    0       4         magic "SLST" (53 4C 53 54)
 *    4       2         format version, 1
 *    6       2         reserved, 0
 *    8       4         value_size
 *    12      4         G: number of key-group sections
 *    16      8         N: number of entries (sum over the sections)
 *    24      ...       G sections, by strictly increasing key group
 *    len-8   8         checksum: XXH3_64bits of bytes [0, len-8)
 *
 *  Section (one per non-empty key group):
 *    0       4         key group kg (< SL_KEY_GROUPS)
 *    4       4         n: entries in the section (>= 1)
 *    8       8         byte length of the n entries that follow (lets a
 *                      restore skip the key groups it does not own)
 *    16      ...       n entries
 *
 *  Entry:
 *    0       8         hash (sl_key_group(hash) == kg)
 *    8       4         key_len (< 2^32 - 1)
 *    12      key_len   key bytes
 *    12+key_len  value_size  value bytes, as the operator stored them
 *
 * Value bytes are copied as they are: a snapshot is portable between machines
 * of the same endianness and struct layout, which is what checkpoints need.
 *
 * Restore validates the whole input (magic, version, checksum, every length,
 * every entry's key group against its section, section order and counts)
 * before it changes anything, and reserves the room it needs before inserting,
 * so it is all-or-nothing: on any error (SL_ECORRUPT, SL_EINVAL, SL_ENOMEM)
 * the table's entries are unchanged (it may have grown its capacity). Entries
 * whose key already exists overwrite the existing value.
 *
 * Threads: a table is used by one thread at a time (its instance's task).
 */
#include "sluice/state.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SLOT_HDR       24
#define MIN_CAP        16
#define MAX_VALUE_SIZE (1u << 24)
#define IT_SHIFT       (sizeof(size_t) * 4)
#define IT_LOW         (((size_t)1 << IT_SHIFT) - 1)
#define MAX_CAP        ((size_t)1 << (IT_SHIFT - 1))
#define ARENA_MIN      256
#define COMPACT_MIN    4096

#define SNAP_MAGIC   "SLST"
#define SNAP_VERSION 1
#define SNAP_HDR     24
#define SNAP_SEC_HDR 16
#define SNAP_ENT_HDR 12
#define SNAP_TRAILER 8

typedef struct slot {
    uint64_t hash;
    uint64_t key;   /* inline key bytes (key_len <= 8) or arena offset */
    uint32_t klen1; /* key_len + 1, 0 = empty */
    uint32_t pad;
} slot;

struct sl_state {
    uint8_t *slots; /* (mask + 1) * stride bytes */
    size_t mask;
    size_t count;
    size_t grow_at;
    size_t stride;
    uint32_t value_size;
    uint8_t *arena;
    size_t alen, acap, adead;
};

uint64_t sl_hash(const void *key, size_t len)
{
    return XXH3_64bits(key, len);
}

static inline slot *slot_at(const sl_state *s, size_t i)
{
    return (slot *)(void *)(s->slots + i * s->stride);
}

static inline void *slot_value(slot *sl)
{
    return (uint8_t *)sl + SLOT_HDR;
}

static inline const void *slot_key(const sl_state *s, const slot *sl)
{
    return sl->klen1 - 1 <= 8 ? (const void *)&sl->key : (const void *)(s->arena + sl->key);
}

static inline uint64_t inline_key(const void *key, uint32_t key_len)
{
    uint64_t k = 0;
    if (key_len == 8) /* the common fixed-size key: one load, not a memcpy call */
        memcpy(&k, key, 8);
    else if (key_len)
        memcpy(&k, key, key_len);
    return k;
}

/* Slot holding key, or the empty slot where it would go (*found = 0). A
 * match is tested before emptiness: an empty slot never matches (its klen1 is
 * 0), and a hit, the common case, then takes one well-predicted branch. Short
 * keys compare as one 64-bit word. */
static inline size_t probe(const sl_state *s, uint64_t hash, const void *key, uint32_t key_len,
                           int *found)
{
    size_t i = (size_t)hash & s->mask;
    uint32_t klen1 = key_len + 1;

    if (key_len <= 8) {
        uint64_t ik = 0;
        if (key_len == 8)
            memcpy(&ik, key, 8);
        else
            ik = inline_key(key, key_len);
        for (;;) {
            const slot *sl = slot_at(s, i);
            if (sl->hash == hash && ((sl->klen1 ^ klen1) | (sl->key ^ ik)) == 0) {
                *found = 1;
                return i;
            }
            if (sl->klen1 == 0) {
                *found = 0;
                return i;
            }
            i = (i + 1) & s->mask;
        }
    }
    for (;;) {
        const slot *sl = slot_at(s, i);
        if (sl->hash == hash && sl->klen1 == klen1 &&
            memcmp(s->arena + sl->key, key, key_len) == 0) {
            *found = 1;
            return i;
        }
        if (sl->klen1 == 0) {
            *found = 0;
            return i;
        }
        i = (i + 1) & s->mask;
    }
}

static size_t empty_slot_for(const sl_state *s, uint64_t hash)
{
    size_t i = (size_t)hash & s->mask;
    while (slot_at(s, i)->klen1) i = (i + 1) & s->mask;
    return i;
}

/* Move every entry into a fresh array of new_cap slots. The entries are
 * unchanged on failure. */
static int rehash(sl_state *s, size_t new_cap)
{
    size_t old_cap = s->mask + 1, nmask = new_cap - 1;
    uint8_t *ns;

    if (new_cap > MAX_CAP || new_cap > SIZE_MAX / s->stride) return SL_ENOMEM;
    ns = calloc(new_cap, s->stride);
    if (!ns) return SL_ENOMEM;
    for (size_t i = 0; i < old_cap; i++) {
        const slot *sl = slot_at(s, i);
        size_t j;
        if (!sl->klen1) continue;
        j = (size_t)sl->hash & nmask;
        while (((const slot *)(void *)(ns + j * s->stride))->klen1) j = (j + 1) & nmask;
        memcpy(ns + j * s->stride, sl, s->stride);
    }
    free(s->slots);
    s->slots = ns;
    s->mask = nmask;
    s->grow_at = new_cap - new_cap / 4;
    return 0;
}

/* Make room for `n` entries in all (no growth until count exceeds n). */
static int reserve_entries(sl_state *s, size_t n)
{
    size_t cap = s->mask + 1;
    if (n <= s->grow_at) return 0;
    while (n > cap - cap / 4) {
        if (cap >= MAX_CAP) return SL_ENOMEM;
        cap *= 2;
    }
    return rehash(s, cap);
}

static int arena_reserve(sl_state *s, size_t extra)
{
    size_t ncap;
    uint8_t *na;

    if (s->acap - s->alen >= extra) return 0;
    if (extra > SIZE_MAX / 2 - s->alen) return SL_ENOMEM;
    ncap = s->acap ? s->acap : ARENA_MIN;
    while (ncap < s->alen + extra) ncap *= 2;
    na = realloc(s->arena, ncap);
    if (!na) return SL_ENOMEM;
    s->arena = na;
    s->acap = ncap;
    return 0;
}

/* Copy the live long keys into a fresh arena and drop the garbage. Leaves the
 * table as it was on failure (compaction is only an optimisation). */
static void arena_compact(sl_state *s)
{
    size_t live = s->alen - s->adead, ncap = ARENA_MIN, off = 0;
    uint8_t *na;

    while (ncap < live + live / 2) ncap *= 2;
    na = malloc(ncap);
    if (!na) return;
    for (size_t i = 0; i <= s->mask; i++) {
        slot *sl = slot_at(s, i);
        uint32_t klen = sl->klen1 - 1;
        if (!sl->klen1 || klen <= 8) continue;
        memcpy(na + off, s->arena + sl->key, klen);
        sl->key = off;
        off += klen;
    }
    free(s->arena);
    s->arena = na;
    s->acap = ncap;
    s->alen = off;
    s->adead = 0;
}

/* Fill the empty slot i with a new entry. The arena must have room for a long
 * key. Does not touch the value. */
static slot *place(sl_state *s, size_t i, uint64_t hash, const void *key, uint32_t key_len)
{
    slot *sl = slot_at(s, i);
    sl->hash = hash;
    sl->klen1 = key_len + 1;
    sl->pad = 0;
    if (key_len <= 8) {
        sl->key = inline_key(key, key_len);
    } else {
        memcpy(s->arena + s->alen, key, key_len);
        sl->key = s->alen;
        s->alen += key_len;
    }
    s->count++;
    return sl;
}

/* The insertion path of sl_state_get (kept out of the lookup loop). */
__attribute__((noinline)) static void *insert_new(sl_state *s, size_t i, uint64_t hash,
                                                  const void *key, uint32_t key_len, int *created)
{
    slot *sl;

    if (key_len > 8) {
        if (s->adead >= COMPACT_MIN && s->adead > s->alen / 2) arena_compact(s);
        if (arena_reserve(s, key_len)) return NULL;
    }
    if (s->count >= s->grow_at) {
        if (rehash(s, (s->mask + 1) * 2)) return NULL;
        i = empty_slot_for(s, hash);
    }
    sl = place(s, i, hash, key, key_len);
    memset(slot_value(sl), 0, s->value_size);
    if (created) *created = 1;
    return slot_value(sl);
}

sl_state *sl_state_new(uint32_t value_size)
{
    sl_state *s;

    if (value_size > MAX_VALUE_SIZE) return NULL;
    s = calloc(1, sizeof(*s));
    if (!s) goto fail;
    s->value_size = value_size;
    s->stride = SLOT_HDR + (((size_t)value_size + 7) & ~(size_t)7);
    s->slots = calloc(MIN_CAP, s->stride);
    if (!s->slots) goto fail;
    s->mask = MIN_CAP - 1;
    s->grow_at = MIN_CAP - MIN_CAP / 4;
    return s;

fail:
    free(s);
    return NULL;
}

void sl_state_free(sl_state *s)
{
    if (!s) return;
    free(s->slots);
    free(s->arena);
    free(s);
}

void *sl_state_get(sl_state *s, uint64_t hash, const void *key, uint32_t key_len, int *created)
{
    int found;
    size_t i;

    if (created) *created = 0;
    if (key_len == UINT32_MAX) return NULL; /* cannot be represented */
    i = probe(s, hash, key, key_len, &found);
    if (found) return slot_value(slot_at(s, i));
    return insert_new(s, i, hash, key, key_len, created);
}

void *sl_state_find(sl_state *s, uint64_t hash, const void *key, uint32_t key_len)
{
    int found;
    size_t i;

    if (key_len == UINT32_MAX) return NULL;
    i = probe(s, hash, key, key_len, &found);
    return found ? slot_value(slot_at(s, i)) : NULL;
}

/* Empty slot i by backward shift (see the file comment). */
static void delete_at(sl_state *s, size_t i)
{
    size_t mask = s->mask, j = i;

    for (;;) {
        slot *sj;
        size_t home;
        j = (j + 1) & mask;
        sj = slot_at(s, j);
        if (!sj->klen1) break;
        home = (size_t)sj->hash & mask;
        /* sj may fill the hole iff the hole lies in [home, j) cyclically. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            memcpy(slot_at(s, i), sj, s->stride);
            i = j;
        }
    }
    slot_at(s, i)->klen1 = 0;
}

int sl_state_remove(sl_state *s, uint64_t hash, const void *key, uint32_t key_len)
{
    int found;
    size_t i;

    if (key_len == UINT32_MAX) return 0;
    i = probe(s, hash, key, key_len, &found);
    if (!found) return 0;
    if (key_len > 8) s->adead += key_len;
    delete_at(s, i);
    s->count--;
    if (s->count == 0) s->alen = s->adead = 0; /* all garbage: start over */
    return 1;
}

size_t sl_state_count(const sl_state *s)
{
    return s->count;
}

uint32_t sl_state_value_size(const sl_state *s)
{
    return s->value_size;
}

/* Keeps the capacity and the arena's memory. */
void sl_state_clear(sl_state *s)
{
    memset(s->slots, 0, (s->mask + 1) * s->stride);
    s->count = 0;
    s->alen = s->adead = 0;
}

int sl_state_next(sl_state *s, size_t *it, sl_state_entry *e)
{
    size_t cap = s->mask + 1, anchor, t;

    if (*it == 0) {
        if (s->count == 0) return 0;
        for (anchor = 0; slot_at(s, anchor)->klen1; anchor++) continue;
        t = 0;
    } else {
        anchor = *it >> IT_SHIFT;
        t = *it & IT_LOW;
        if (anchor >= cap || t > cap) return 0; /* the table grew meanwhile */
    }
    for (; t < cap; t++) {
        slot *sl = slot_at(s, (anchor - 1 - t) & s->mask);
        if (!sl->klen1) continue;
        e->hash = sl->hash;
        e->key = slot_key(s, sl);
        e->key_len = sl->klen1 - 1;
        e->value = slot_value(sl);
        *it = (anchor << IT_SHIFT) | (t + 1);
        return 1;
    }
    *it = (anchor << IT_SHIFT) | cap;
    return 0;
}

/* --- snapshot ------------------------------------------------------------ */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int sl_state_snapshot(const sl_state *s, sl_buf *out)
{
    /* Per key group: entries, and then the write position of the next one. */
    uint32_t n_in[SL_KEY_GROUPS] = {0};
    uint64_t bytes[SL_KEY_GROUPS] = {0};
    size_t cap = s->mask + 1, total = SNAP_HDR + SNAP_TRAILER, pos;
    uint32_t groups = 0;
    uint8_t *base;
    int rc;

    for (size_t i = 0; i < cap; i++) {
        const slot *sl = slot_at(s, i);
        uint32_t kg;
        if (!sl->klen1) continue;
        kg = sl_key_group(sl->hash);
        n_in[kg]++;
        bytes[kg] += SNAP_ENT_HDR + (uint64_t)(sl->klen1 - 1) + s->value_size;
    }
    for (uint32_t kg = 0; kg < SL_KEY_GROUPS; kg++) {
        if (!n_in[kg]) continue;
        groups++;
        if (bytes[kg] > SIZE_MAX / 2 - total) return SL_ETOOBIG;
        total += SNAP_SEC_HDR + (size_t)bytes[kg];
    }
    rc = sl_buf_reserve(out, total);
    if (rc) return rc;
    base = out->ptr + out->len;

    memcpy(base, SNAP_MAGIC, 4);
    put_u16(base + 4, SNAP_VERSION);
    put_u16(base + 6, 0);
    put_u32(base + 8, s->value_size);
    put_u32(base + 12, groups);
    put_u64(base + 16, s->count);
    /* Section headers; bytes[kg] becomes the offset of the next entry. */
    pos = SNAP_HDR;
    for (uint32_t kg = 0; kg < SL_KEY_GROUPS; kg++) {
        uint64_t len;
        if (!n_in[kg]) continue;
        len = bytes[kg];
        put_u32(base + pos, kg);
        put_u32(base + pos + 4, n_in[kg]);
        put_u64(base + pos + 8, len);
        bytes[kg] = pos + SNAP_SEC_HDR;
        pos += SNAP_SEC_HDR + (size_t)len;
    }
    for (size_t i = 0; i < cap; i++) {
        slot *sl = slot_at(s, i);
        uint32_t klen, kg;
        uint8_t *p;
        if (!sl->klen1) continue;
        klen = sl->klen1 - 1;
        kg = sl_key_group(sl->hash);
        p = base + bytes[kg];
        put_u64(p, sl->hash);
        put_u32(p + 8, klen);
        if (klen) memcpy(p + SNAP_ENT_HDR, slot_key(s, sl), klen);
        if (s->value_size) memcpy(p + SNAP_ENT_HDR + klen, slot_value(sl), s->value_size);
        bytes[kg] += SNAP_ENT_HDR + (uint64_t)klen + s->value_size;
    }
    put_u64(base + pos, XXH3_64bits(base, pos));
    out->len += total;
    return 0;
}

/* What a validated snapshot holds within [kg_lo, kg_hi]. */
typedef struct snap_scan {
    size_t selected;   /* entries */
    size_t long_bytes; /* key bytes of selected keys longer than 8 bytes */
} snap_scan;

/* Check every structural rule of the format; nothing is changed. */
static int snap_validate(const uint8_t *d, size_t len, uint32_t value_size, uint32_t kg_lo,
                         uint32_t kg_hi, snap_scan *sc)
{
    size_t end, pos = SNAP_HDR;
    uint32_t groups;
    uint64_t n_total, seen = 0;
    int64_t prev_kg = -1;

    if (len < SNAP_HDR + SNAP_TRAILER) return SL_ECORRUPT;
    if (memcmp(d, SNAP_MAGIC, 4) != 0 || get_u16(d + 4) != SNAP_VERSION || get_u16(d + 6) != 0)
        return SL_ECORRUPT;
    end = len - SNAP_TRAILER;
    if (XXH3_64bits(d, end) != get_u64(d + end)) return SL_ECORRUPT;
    if (get_u32(d + 8) != value_size) return SL_EINVAL;
    groups = get_u32(d + 12);
    n_total = get_u64(d + 16);
    if (groups > SL_KEY_GROUPS) return SL_ECORRUPT;

    sc->selected = 0;
    sc->long_bytes = 0;
    for (uint32_t g = 0; g < groups; g++) {
        uint32_t kg, n;
        uint64_t blen;
        size_t sec_end;
        int want;

        if (end - pos < SNAP_SEC_HDR) return SL_ECORRUPT;
        kg = get_u32(d + pos);
        n = get_u32(d + pos + 4);
        blen = get_u64(d + pos + 8);
        if (kg >= SL_KEY_GROUPS || (int64_t)kg <= prev_kg || n == 0) return SL_ECORRUPT;
        if (blen > end - pos - SNAP_SEC_HDR) return SL_ECORRUPT;
        prev_kg = kg;
        pos += SNAP_SEC_HDR;
        sec_end = pos + (size_t)blen;
        want = kg >= kg_lo && kg <= kg_hi;
        for (uint32_t k = 0; k < n; k++) {
            uint64_t hash;
            uint32_t klen;
            if (sec_end - pos < SNAP_ENT_HDR) return SL_ECORRUPT;
            hash = get_u64(d + pos);
            klen = get_u32(d + pos + 8);
            if (klen == UINT32_MAX || sl_key_group(hash) != kg) return SL_ECORRUPT;
            if ((uint64_t)klen + value_size > sec_end - pos - SNAP_ENT_HDR) return SL_ECORRUPT;
            pos += SNAP_ENT_HDR + (size_t)klen + value_size;
            if (want) {
                sc->selected++;
                if (klen > 8) sc->long_bytes += klen;
            }
        }
        if (pos != sec_end) return SL_ECORRUPT;
        seen += n;
    }
    if (pos != end || seen != n_total) return SL_ECORRUPT;
    return 0;
}

int sl_state_restore(sl_state *s, const void *data, size_t len, uint32_t kg_lo, uint32_t kg_hi)
{
    const uint8_t *d = data;
    snap_scan sc;
    size_t pos = SNAP_HDR, end;
    uint32_t groups;
    int rc;

    if (kg_lo > kg_hi || (!data && len)) return SL_EINVAL;
    if (!data) return SL_ECORRUPT;
    rc = snap_validate(d, len, s->value_size, kg_lo, kg_hi, &sc);
    if (rc) return rc;
    if (sc.selected == 0) return 0;
    /* Room for the worst case (every selected key new), so that inserting
     * below cannot fail half-way. */
    if (sc.selected > SIZE_MAX - s->count) return SL_ENOMEM;
    rc = reserve_entries(s, s->count + sc.selected);
    if (rc) return rc;
    rc = arena_reserve(s, sc.long_bytes);
    if (rc) return rc;

    end = len - SNAP_TRAILER;
    groups = get_u32(d + 12);
    for (uint32_t g = 0; g < groups && pos < end; g++) {
        uint32_t kg = get_u32(d + pos), n = get_u32(d + pos + 4);
        size_t blen = (size_t)get_u64(d + pos + 8);
        pos += SNAP_SEC_HDR;
        if (kg < kg_lo || kg > kg_hi) {
            pos += blen;
            continue;
        }
        for (uint32_t k = 0; k < n; k++) {
            uint64_t hash = get_u64(d + pos);
            uint32_t klen = get_u32(d + pos + 8);
            const uint8_t *key = d + pos + SNAP_ENT_HDR;
            int found;
            size_t i = probe(s, hash, key, klen, &found);
            slot *sl = found ? slot_at(s, i) : place(s, i, hash, key, klen);
            if (s->value_size) memcpy(slot_value(sl), key + klen, s->value_size);
            pos += SNAP_ENT_HDR + (size_t)klen + s->value_size;
        }
    }
    return 0;
}
