/*
 * engine/hash.h - the key hash, inlined (private).
 *
 * xxHash3 compiled into the caller (XXH_INLINE_ALL): for the short keys that
 * dominate (8..32 bytes) it is a handful of instructions, cheaper than the
 * call through the shared library's PLT. sl_hash() (sluice/state.h) is the
 * same function for callers outside the engine.
 */
#ifndef SLUICE_ENGINE_HASH_H
#define SLUICE_ENGINE_HASH_H

#include <stddef.h>
#include <stdint.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

static inline uint64_t sli_hash_inline(const void *key, size_t len)
{
    return (uint64_t)XXH3_64bits(key, len);
}

#endif
