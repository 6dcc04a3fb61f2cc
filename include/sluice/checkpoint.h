/*
 * sluice/checkpoint.h - reading a checkpoint directory (public API).
 *
 * A job given a checkpoint directory writes there one subdirectory per
 * checkpoint (chk-<id>/: state files and a manifest written last, every file
 * with a CRC-32C). This header lists what a directory holds, for tools such
 * as `sluice checkpoints DIR`; it only reads. Each checkpoint is verified as
 * a restore would verify it (the manifest and every state file by CRC).
 *
 * Errors: 0 or a negative SL_E... code; sl_checkpoint_list_open() writes a
 * one-line message to err. Threads: a list is used by one thread at a time.
 */
#ifndef SLUICE_CHECKPOINT_H
#define SLUICE_CHECKPOINT_H

#include "sluice/export.h"
#include <stddef.h>
#include <stdint.h>

#include "sluice/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_checkpoint_list sl_checkpoint_list;

/* One checkpoint of the list. Strings are owned by the list. */
typedef struct sl_checkpoint_info {
    uint64_t id;
    int64_t created_ms;  /* ms since the epoch; -1 when not complete */
    uint64_t bytes;      /* of all its files on disk */
    int status;          /* 0 complete; SL_ENOENT incomplete (no manifest);
                           another SL_E code when corrupt or unreadable */
    const char *problem; /* why it is not complete ("" when it is), one line */
    size_t n_positions;  /* source split positions recorded in it */
} sl_checkpoint_info;

/* One source split's position in a checkpoint. Owned by the list. */
typedef struct sl_checkpoint_position {
    const char *node; /* the source node's name */
    uint32_t split;   /* split index */
    const void *pos;  /* the position's bytes (8-byte ones are a little-endian uint64) */
    uint32_t len;
} sl_checkpoint_position;

/* Read the checkpoints of dir, oldest first. A dir that does not exist or is
 * not a directory is an error (err gets a one-line message). */
SL_API int sl_checkpoint_list_open(sl_checkpoint_list **out, const char *dir, char *err,
                                   size_t errlen);
SL_API size_t sl_checkpoint_list_count(const sl_checkpoint_list *l);
/* Fills *info for the i-th checkpoint; SL_ERANGE past the end. */
SL_API int sl_checkpoint_list_get(const sl_checkpoint_list *l, size_t i, sl_checkpoint_info *info);
/* Fills *pos with position k of the i-th checkpoint; SL_ERANGE past the end. */
SL_API int sl_checkpoint_list_position(const sl_checkpoint_list *l, size_t i, size_t k,
                                       sl_checkpoint_position *pos);
/* Frees l (NULL is fine). */
SL_API void sl_checkpoint_list_free(sl_checkpoint_list *l);

#ifdef __cplusplus
}
#endif

#endif
