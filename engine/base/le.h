/*
 * engine/base/le.h - little-endian integers in byte formats (checkpoint
 * blobs, snapshots, sidecars): the one pair of helpers every format drawn as
 * a byte table uses, so that no file keeps its own copy.
 */
#ifndef SLUICE_ENGINE_BASE_LE_H
#define SLUICE_ENGINE_BASE_LE_H

#include <stdint.h>

/* Write the n low bytes of v at p, least significant first (n <= 8). */
static inline void sli_put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Read n bytes at p, least significant first (n <= 8). */
static inline uint64_t sli_get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

#endif
