/*
 * engine/source.h - the source layer's entry points for the rest of the
 * engine (private). engine/source.c explains the rules.
 *
 * Threads: sli_source_open/close run on the thread that starts or ends the
 * job; step and announce run inside the source task's activation.
 */
#ifndef SLUICE_ENGINE_SOURCE_H
#define SLUICE_ENGINE_SOURCE_H

#include "sluice/source.h"

struct sl_ctx;
struct sl_node;

/* Per source node: the splits listed by enumerate and their last positions.
 * Owned by the node; freed by sli_source_node_free. */
typedef struct sli_srcnode sli_srcnode;
/* Per source instance: its splits and their watermark state. */
typedef struct sli_srcinst sli_srcinst;

/* Open the readers of instance c's splits (listing the splits first if no
 * instance of the node has yet). Returns 0 or a negative code (recorded). */
int sli_source_open(struct sl_ctx *c);
/* Keep each open split's position, close its reader. Idempotent. The
 * instance's split table stays (for metrics readers) until
 * sli_source_free, when the plan is freed. */
void sli_source_close(struct sl_ctx *c);
void sli_source_free(struct sl_ctx *c);
/* Poll the next split. Returns SL_POLL_MORE, SL_POLL_WAIT (a whole round of
 * splits had nothing), SL_POLL_END (every split ended) or a negative code. */
int sli_source_step(struct sl_ctx *c);
/* Announce the instance's watermark / idleness if it changed (periodic
 * strategies: once per activation). Returns 0 or a negative code. */
int sli_source_announce(struct sl_ctx *c);
void sli_source_node_free(struct sl_node *n);
/* Split k of source instance c as sl_ctx_split_lag last reported it: 1 and
 * the fields, 0 when it never did, -1 past the last split. Any thread once
 * the job started (the splits are fixed when the instance opens). */
int sli_source_lag(struct sl_ctx *c, int k, char *input, size_t cap, int32_t *partition,
                   int64_t *lag);

/* Checkpoints (coord.c). Snapshot: append the instance's split states (the
 * SPLITS section drawn in source.c) to splits and hand each split's position
 * to pos_fn. Inside the source task's activation, between polls. */
typedef int (*sli_pos_fn)(void *ud, uint32_t split, const void *pos, uint32_t len);
int sli_source_snapshot(struct sl_ctx *c, sl_buf *splits, sli_pos_fn pos_fn, void *ud);
/* Restore, after open and before the first poll: the split states of a
 * SPLITS section (splits of other instances are skipped), and split index's
 * position (1: not c's split). The first step then announces the restored
 * watermark before any record. */
int sli_source_restore_splits(struct sl_ctx *c, const void *data, size_t len);
/* Splits the source node listed (after the first instance opened). */
int sli_source_n_splits(const struct sl_ctx *c);
/* Split index's description as enumerate declared it (NULL, 0 if none). */
void sli_source_split_desc(const struct sl_ctx *c, int index, const void **desc, size_t *len);
int sli_source_restore_position(struct sl_ctx *c, uint32_t index, const void *pos, size_t len);

#endif
