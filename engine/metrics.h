/*
 * engine/metrics.h - the engine's side of sluice/metrics.h (private to
 * engine/): counting a source's dead letters by reason, and freeing that
 * table with the instance.
 */
#ifndef SLUICE_ENGINE_METRICS_H
#define SLUICE_ENGINE_METRICS_H

struct sl_ctx;

/* Count one dead letter of source instance c under its reason's class.
 * c's task thread. 0 or SL_ENOMEM. */
int sli_metrics_dead_letter(struct sl_ctx *c, const char *reason);
/* Free c's table (plan teardown). */
void sli_metrics_free(struct sl_ctx *c);

#endif
