/*
 * sluice/state.h - engine-owned keyed state (public API).
 *
 * A table from key (bytes, with the 64-bit hash computed at key_by) to a
 * fixed-size value, one per operator instance and name (sl_ctx_state()).
 * Values are zero-filled when created, 8-byte aligned, and stored inline in
 * the table's slots (one cache line per lookup), so a value pointer is valid
 * only until the next call that inserts or removes a key in the same table.
 * Key bytes are copied into the table. Every key belongs
 * to one of SL_KEY_GROUPS key groups (sl_key_group(hash)); snapshots are
 * written by key group so that state can be redistributed when parallelism
 * changes. Single-threaded: used only from its instance's callbacks.
 */
#ifndef SLUICE_STATE_H
#define SLUICE_STATE_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>
#include "sluice/operator.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_KEY_GROUPS 1024

/* Key group of a key hash, and the instance (of p) that owns a key group. */
static inline uint32_t sl_key_group(uint64_t hash)
{
    return (uint32_t)(((hash >> 32) * (uint64_t)SL_KEY_GROUPS) >> 32);
}
static inline uint32_t sl_key_group_owner(uint32_t key_group, uint32_t parallelism)
{
    return (uint32_t)((uint64_t)key_group * parallelism / SL_KEY_GROUPS);
}

/* The hash sluice uses for keys (xxHash3, 64 bits). */
SL_API uint64_t sl_hash(const void *key, size_t len);

/* A standalone table (operators normally use sl_ctx_state()). The caller owns
 * the result and frees it with sl_state_free(). */
SL_API sl_state *sl_state_new(uint32_t value_size);
SL_API void sl_state_free(sl_state *s);

/* Value of key, created zero-filled if absent (*created set to 1 then, if
 * created is not NULL). NULL only when out of memory. */
SL_API void *sl_state_get(sl_state *s, uint64_t hash, const void *key, uint32_t key_len,
                          int *created);
/* Value of key, or NULL if absent. */
SL_API void *sl_state_find(sl_state *s, uint64_t hash, const void *key, uint32_t key_len);
/* Remove key; returns 1 if it was present. */
SL_API int sl_state_remove(sl_state *s, uint64_t hash, const void *key, uint32_t key_len);
SL_API size_t sl_state_count(const sl_state *s);
SL_API uint32_t sl_state_value_size(const sl_state *s);
SL_API void sl_state_clear(sl_state *s);

/* Iterate: start with *it = 0; returns 0 at the end. Removing the entry just
 * returned is allowed during iteration (read its key and value first: they
 * are gone after the removal); inserting during iteration is not. */
typedef struct sl_state_entry {
    uint64_t hash;
    const void *key;
    uint32_t key_len;
    void *value;
} sl_state_entry;
SL_API int sl_state_next(sl_state *s, size_t *it, sl_state_entry *e);

/* Append a snapshot of the table to out; restore adds a snapshot's entries
 * (only those whose key group is in [kg_lo, kg_hi]) to s. The snapshot format
 * is drawn in engine/state.c. */
SL_API int sl_state_snapshot(const sl_state *s, sl_buf *out);
SL_API int sl_state_restore(sl_state *s, const void *data, size_t len, uint32_t kg_lo,
                            uint32_t kg_hi);

#ifdef __cplusplus
}
#endif
#endif
