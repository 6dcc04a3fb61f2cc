/*
 * engine/test_hooks.h - what the runtime tests may look at or change inside
 * a pipeline (private; for tests/unit only, never for the library itself).
 *
 * Tests call these functions instead of reaching into engine structs, so the
 * structs can change without touching the tests. They are internal (sli_
 * prefix): not part of the public API, and not to be relied on by
 * applications. Unless said otherwise they read plan or instance state and
 * are safe after sl_pipeline_explain() or start and until
 * sl_pipeline_free(); instance state may be read only when no worker runs
 * the instance (after wait, or from inside the instance's own callbacks).
 */
#ifndef SLUICE_ENGINE_TEST_HOOKS_H
#define SLUICE_ENGINE_TEST_HOOKS_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/operator.h"
#include "sluice/pipeline.h"
#include "sluice/state.h"

/* --- instances ----------------------------------------------------------- */

/* Instances in plan order (node order, then instance index). */
int sli_test_n_instances(const sl_pipeline *p);
sl_ctx *sli_test_instance(const sl_pipeline *p, int i);
int sli_test_ctx_is_source(const sl_ctx *c);
const sl_operator *sli_test_ctx_operator(const sl_ctx *c); /* NULL for sources */
void *sli_test_ctx_self(const sl_ctx *c);                  /* what open() made */
/* The first instance of c's task (the chain's root: a source, or the
 * operator that reads the task's channels). */
sl_ctx *sli_test_chain_root(const sl_ctx *c);
/* Engine-owned keyed states of c, in creation order: the k-th one and its
 * name (NULL when k is out of range). */
int sli_test_ctx_n_states(const sl_ctx *c);
sl_state *sli_test_ctx_state_at(const sl_ctx *c, int k, const char **name);

/* --- channels and memory (any thread, also while running) ---------------- */

int sli_test_n_channels(const sl_pipeline *p);
size_t sli_test_channel_size(const sl_pipeline *p, int i); /* messages in the ring */
size_t sli_test_channel_credits(const sl_pipeline *p, int i);
size_t sli_test_batches_allocated(const sl_pipeline *p); /* batches in existence */
int sli_test_max_ports(void);                            /* output ports per node */
int sli_test_pool_chunk(void); /* batches a worker cache trades with the depot at once */

/* --- checkpoints --------------------------------------------------------- */

/* Called for every instance on an aligned barrier, inside the activation of
 * the instance's task (so it may touch the instance's self). Set before
 * start. */
typedef int (*sli_barrier_fn)(sl_pipeline *p, sl_ctx *c, uint64_t id, void *ud);
void sli_test_on_barrier(sl_pipeline *p, sli_barrier_fn fn, void *ud);
/* Ask every source to send BARRIER(id) and every id before it not yet sent
 * (any thread, while running). Ids start at 1. */
void sli_test_inject_barrier(sl_pipeline *p, uint64_t id);
/* Snapshot of c's pending event-time timers (engine/timer.c draws the
 * format), and its restore by key-group range into c (making c's timers if
 * it has none yet). Same rules as the instance state reads above. */
int sli_test_ctx_timers_snapshot(const sl_ctx *c, sl_buf *out);
int sli_test_ctx_timers_restore(sl_ctx *c, const void *data, size_t len, uint32_t kg_lo,
                                uint32_t kg_hi);

#endif
