/*
 * operators/crdt/enc.h - what the CRDT modules share (private): the bounds-
 * checked reader and the writers of the encodings drawn in sluice/crdt.h,
 * and version vectors (sorted (replica, counter) arrays) that the
 * MV-Register's clocks and the OR-Set's context and dots are made of.
 *
 * Reader invariant: off <= n; every get checks the bytes it needs first and
 * sets err (sticky) instead of reading past n, so a decoder can read a whole
 * record and check err once.
 */
#ifndef SLUICE_OPERATORS_CRDT_ENC_H
#define SLUICE_OPERATORS_CRDT_ENC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "sluice/crdt.h"

#define SLI_CRDT_MAGIC 0xCD
#define SLI_CRDT_HDR   4

typedef struct sli_crdt_rd {
    const uint8_t *p;
    size_t n, off;
    int err; /* 0, or the first SL_E... met */
} sli_crdt_rd;

/* Checks the header for `type`, leaves the reader after it. */
int sli_crdt_rd_open(sli_crdt_rd *r, const void *data, size_t len, int type);
uint8_t sli_crdt_get8(sli_crdt_rd *r);
uint32_t sli_crdt_get32(sli_crdt_rd *r);
uint64_t sli_crdt_get64(sli_crdt_rd *r);
/* A BYTES field (len u32 + bytes): points into the input. */
sl_bytes sli_crdt_getbytes(sli_crdt_rd *r);
/* A count whose items take at least `min_item` bytes each: SL_ETOOBIG above
 * `cap`, SL_ECORRUPT if the rest of the input cannot hold them (so nothing
 * is allocated for bytes that are not there). */
uint32_t sli_crdt_getcount(sli_crdt_rd *r, uint32_t cap, size_t min_item);
/* err, or SL_ECORRUPT if bytes are left over. */
int sli_crdt_rd_close(const sli_crdt_rd *r);

int sli_crdt_put_hdr(sl_buf *b, int type);
int sli_crdt_put8(sl_buf *b, uint8_t v);
int sli_crdt_put32(sl_buf *b, uint32_t v);
int sli_crdt_put64(sl_buf *b, uint64_t v);
int sli_crdt_putbytes(sl_buf *b, const void *p, uint32_t len);

/* Byte order of elements and values: memcmp, shorter first on a tie. */
int sli_crdt_bytes_cmp(const void *a, uint32_t alen, const void *b, uint32_t blen);

/* A dot, or a version-vector entry. */
typedef struct sli_dot {
    uint32_t r;
    uint64_t c;
} sli_dot;

static inline int sli_dot_cmp(const sli_dot *a, const sli_dot *b)
{
    if (a->r != b->r) return a->r < b->r ? -1 : 1;
    if (a->c != b->c) return a->c < b->c ? -1 : 1;
    return 0;
}

/* Field by field: sli_dot has padding, never memcmp it. */
static inline bool sli_dots_equal(const sli_dot *a, const sli_dot *b, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (a[i].r != b[i].r || a[i].c != b[i].c) return false;
    return true;
}

/* Version vector: entries with c > 0, r strictly ascending. Zero-initialise. */
typedef struct sli_vv {
    sli_dot *e;
    uint32_t n, cap;
} sli_vv;

void sli_vv_free(sli_vv *v);
int sli_vv_copy(sli_vv *dst, const sli_vv *src);
uint64_t sli_vv_get(const sli_vv *v, uint32_t r);
/* Set r's counter (c > 0), inserting the entry if needed. */
int sli_vv_set(sli_vv *v, uint32_t r, uint64_t c);
/* Add k to r's counter; SL_ERANGE past 2^64 - 1 (unchanged). */
int sli_vv_add(sli_vv *v, uint32_t r, uint64_t k);
/* Sum of the counters, modulo 2^64. */
uint64_t sli_vv_sum(const sli_vv *v);
/* a := pointwise max(a, b). */
int sli_vv_join(sli_vv *a, const sli_vv *b);
bool sli_vv_equal(const sli_vv *a, const sli_vv *b);
/* a <= b pointwise. */
bool sli_vv_leq(const sli_vv *a, const sli_vv *b);
/* Order of encodings (for canonical sorting): by n, then entries. */
int sli_vv_cmp(const sli_vv *a, const sli_vv *b);
int sli_vv_encode(const sli_vv *v, sl_buf *b);
/* Reads a VV (canonical: ascending, counters > 0); sets r->err on failure. */
int sli_vv_decode(sli_crdt_rd *r, sli_vv *v);

/* Decode into an existing object (the replica's per-type scratch, so that
 * merging a delta record allocates nothing once the scratch has grown): the
 * same checks as the type's public decode (which is new + this), the
 * object's buffers reused. On error the object holds some valid state of
 * no meaning (fit only to be decoded into again); it is never half-freed.
 * The pending delta is cleared. */
int sli_crdt_gcounter_decode_into(sl_crdt_gcounter *c, const void *data, size_t len);
int sli_crdt_pncounter_decode_into(sl_crdt_pncounter *c, const void *data, size_t len);
int sli_crdt_lww_decode_into(sl_crdt_lww *x, const void *data, size_t len);
/* An OR-Set made without SL_CRDT_DELTAS: its elements are kept in a pool
 * for the next decode instead of being freed. */
int sli_crdt_orset_decode_into(sl_crdt_orset *s, const void *data, size_t len);

#endif
