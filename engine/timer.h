/*
 * engine/timer.h - the timers of one instance (private to engine/): a min-heap
 * by (time, insertion order) with each (key, time) pair registered once. Used
 * for event-time timers (fired by the watermark) and processing-time timers
 * (fired by the wall clock); timer.c explains the layout.
 *
 * One instance's timers are used only inside its task's activations.
 */
#ifndef SLUICE_ENGINE_TIMER_H
#define SLUICE_ENGINE_TIMER_H

#include <stddef.h>
#include <stdint.h>
#include "sluice/operator.h"

typedef struct sl_timers sl_timers;

sl_timers *sli_timers_new(void);    /* NULL when out of memory */
void sli_timers_free(sl_timers *t); /* accepts NULL */
/* Register (key, ts); a second registration of the pair is a no-op. 0 or
 * SL_ENOMEM. The key is copied. */
int sli_timers_add(sl_timers *t, int64_t ts, uint64_t hash, const void *key, uint32_t klen);
/* Pop the earliest timer with ts <= wm into *out (key valid until the next
 * call); returns 1 if one was popped. */
int sli_timers_pop(sl_timers *t, int64_t wm, sl_timer *out);
/* Delete the timer (key, ts): 1 if one was set, 0 if none, or SL_ENOMEM. */
int sli_timers_delete(sl_timers *t, int64_t ts, uint64_t hash, const void *key, uint32_t klen);
/* Timers set and neither fired nor deleted. */
size_t sli_timers_count(const sl_timers *t);
/* Time of the earliest timer, INT64_MAX when there is none. */
int64_t sli_timers_next(const sl_timers *t);
/* Append a snapshot of the live timers to out (t may be NULL: no timers);
 * 0, SL_ENOMEM or SL_ETOOBIG. Restore re-adds the snapshot's timers whose
 * key group is in [kg_lo, kg_hi]; the input is validated whole first and a
 * failure (SL_ECORRUPT, SL_EINVAL, SL_ENOMEM) leaves the live timers as they
 * were. timer.c draws the format. */
int sli_timers_snapshot(const sl_timers *t, sl_buf *out);
int sli_timers_restore(sl_timers *t, const void *data, size_t len, uint32_t kg_lo, uint32_t kg_hi);

#endif
