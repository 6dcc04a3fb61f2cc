/*
 * engine/checkpoint.h - checkpoint storage: writing a checkpoint's state
 * files and manifest, finding and verifying the latest complete one, keeping
 * the last K (private header; not part of the public API).
 *
 * The coordinator (issue 9) drives it: sli_chk_begin(id) when a barrier is
 * injected, sli_chk_add_state() per acknowledged operator instance,
 * sli_chk_add_position() per source split, sli_chk_commit() when every task
 * has acknowledged (or sli_chk_abort()). On restart, sli_chk_open_latest()
 * gives a verified reader. The layout and the byte formats are drawn in
 * engine/checkpoint.c.
 *
 * Threads: a store and its writers and readers are used by one thread at a
 * time (the coordinator's); separate stores on separate directories are
 * independent. Messages: sli_chk_store_errmsg() names the last failure of a
 * store (one line, no trailing newline).
 */
#ifndef SLUICE_ENGINE_CHECKPOINT_H
#define SLUICE_ENGINE_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One node of the job's logical graph: its stable name and its kind
 * ("source", "map", "window", ...). The fingerprint is a hash over the list. */
typedef struct sli_chk_node {
    const char *name;
    const char *kind;
} sli_chk_node;

typedef struct sli_chk_store sli_chk_store;
typedef struct sli_chk_writer sli_chk_writer;
typedef struct sli_chk_reader sli_chk_reader;

/* One state blob in a checkpoint (pointers into the reader, valid until it is
 * freed). */
typedef struct sli_chk_state {
    const char *node;
    uint32_t instance;
    uint32_t kg_first, kg_last; /* key-group range, inclusive */
    const void *data;
    uint64_t len;
} sli_chk_state;

/* One source split's position (pointers into the reader). */
typedef struct sli_chk_position {
    const char *node;
    uint32_t split;
    const void *pos;
    uint32_t len;
} sli_chk_position;

/* The fingerprint of a graph: FNV-1a 64 over "name\0kind\0" of each node in
 * order. */
uint64_t sli_chk_fingerprint(const sli_chk_node *nodes, size_t n);

/* Open a store on dir for the graph nodes[0..n) (copied), keeping the last
 * keep complete checkpoints (keep >= 1). nodes may be NULL (n 0) to inspect a
 * directory of any graph (`sluice checkpoints`): then begin is refused and
 * open does not compare graphs. dir need not exist yet (it is made by the
 * first begin); a dir that exists and is not a directory is an error. On
 * failure *out is NULL and err (if not NULL) holds a one-line message.
 * Returns 0 or a negative SL_E code. */
int sli_chk_store_open(sli_chk_store **out, const char *dir, const sli_chk_node *nodes, size_t n,
                       unsigned keep, char *err, size_t errlen);
/* Destroys s (NULL is fine). Writers and readers must be gone first. */
void sli_chk_store_free(sli_chk_store *s);
const char *sli_chk_store_errmsg(const sli_chk_store *s);
uint64_t sli_chk_store_fingerprint(const sli_chk_store *s);

/* Start checkpoint id (> 0): makes DIR/chk-<id>/. An incomplete leftover of
 * the same id (a crash before its manifest) is removed first; a complete one
 * gives SL_EEXIST. One writer per store at a time (SL_ESTATE otherwise). */
int sli_chk_begin(sli_chk_store *s, uint64_t id, sli_chk_writer **out);
/* Write one state blob of instance `instance` of node `node` (which must be a
 * node of the graph) as its own file, fsynced. The bytes are copied to disk
 * before return. After a failure the writer can only be aborted. */
int sli_chk_add_state(sli_chk_writer *w, const char *node, uint32_t instance, uint32_t kg_first,
                      uint32_t kg_last, const void *data, uint64_t len);
/* Record a source split's position (at most 65535 bytes). */
int sli_chk_add_position(sli_chk_writer *w, const char *node, uint32_t split, const void *pos,
                         uint32_t len);
/* Write the manifest last and atomically (tmp, fsync, rename, fsync of the
 * directory), then delete checkpoints beyond the last `keep` complete ones
 * (a failure there is not the commit's: it is left for the next commit).
 * On failure the checkpoint is removed (sli_chk_abort) and the previous ones
 * are untouched. Frees w in both cases. The manifest on disk is the commit
 * point: if the rename succeeded but a later step failed and the manifest
 * cannot be unlinked either (the disk refuses every change), the checkpoint
 * stays complete and valid although commit returned an error; recovery then
 * rolls it forward like any complete one. */
int sli_chk_commit(sli_chk_writer *w);
/* Remove the staged files of w and free it (NULL is fine). */
void sli_chk_abort(sli_chk_writer *w);

/* Ids of the chk-<id> directories of the store, complete or not, ascending.
 * *ids is malloc'd (free it); *n may be 0. A missing dir is no checkpoints. */
int sli_chk_list(sli_chk_store *s, uint64_t **ids, size_t *n);
/* Whether chk-<id> has a manifest (not verified), and its total bytes. */
bool sli_chk_has_manifest(sli_chk_store *s, uint64_t id);
uint64_t sli_chk_bytes(sli_chk_store *s, uint64_t id);

/* Open checkpoint id, verifying the manifest and every state file (size,
 * CRC, header). A corrupt or incomplete one gives SL_ECORRUPT (SL_ENOENT
 * when it has no manifest) and the errmsg says what; one of another graph
 * gives SL_EINVAL with the fingerprints and the node list difference. */
int sli_chk_open(sli_chk_store *s, uint64_t id, sli_chk_reader **out);
/* Open the latest complete, valid checkpoint. Each newer one that is
 * incomplete or corrupt is skipped with one warning line appended to warn
 * ("checkpoint 7 skipped: ...\n"; warn may be NULL). SL_ENOENT when none is
 * left; SL_EINVAL (refusal) when the latest valid one is of another graph. */
int sli_chk_open_latest(sli_chk_store *s, sli_chk_reader **out, char *warn, size_t warnlen);
void sli_chk_reader_free(sli_chk_reader *r);

uint64_t sli_chk_reader_id(const sli_chk_reader *r);
int64_t sli_chk_reader_created_ms(const sli_chk_reader *r);
uint64_t sli_chk_reader_fingerprint(const sli_chk_reader *r);
size_t sli_chk_reader_nstates(const sli_chk_reader *r);
const sli_chk_state *sli_chk_reader_state_at(const sli_chk_reader *r, size_t i);
/* The blob of (node, instance), or NULL. */
const sli_chk_state *sli_chk_reader_state(const sli_chk_reader *r, const char *node,
                                          uint32_t instance);
size_t sli_chk_reader_npositions(const sli_chk_reader *r);
const sli_chk_position *sli_chk_reader_position_at(const sli_chk_reader *r, size_t i);

#endif
