/*
 * engine/base/clock.h - the one clock of sluice (private header; not part of
 * the public API).
 *
 * Two clocks, never mixed:
 *   - wall time (CLOCK_REALTIME): ms since the Unix epoch, the unit of event
 *     and record timestamps (DESIGN.md "Data model"); it may jump (NTP, the
 *     administrator), so it is only ever stored, never used to measure;
 *   - monotonic time (CLOCK_MONOTONIC): for durations, timeouts, idleness,
 *     rates and deadlines; its origin is arbitrary (boot), so it is only ever
 *     subtracted, never stored or shown as a date.
 *
 * Timed waits on a condition variable use the monotonic clock too:
 * sli_cond_init_mono() makes such a condition variable, and
 * sli_clock_mono_deadline() gives the absolute time for
 * pthread_cond_timedwait(), so that a wall-clock jump neither stretches nor
 * cuts a wait short.
 *
 * All functions are thread-safe and allocate nothing.
 */
#ifndef SLUICE_ENGINE_BASE_CLOCK_H
#define SLUICE_ENGINE_BASE_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Wall clock, ms since the Unix epoch. */
int64_t sli_clock_wall_ms(void);
/* Wall clock, ns since the Unix epoch (span times). */
int64_t sli_clock_wall_ns(void);
/* Monotonic clock, ms from an arbitrary origin. */
int64_t sli_clock_mono_ms(void);
/* Monotonic clock, ns from an arbitrary origin. */
int64_t sli_clock_mono_ns(void);
/* Monotonic clock, seconds (with sub-microsecond resolution) from an
 * arbitrary origin. */
double sli_clock_mono_s(void);

/* Initialise cv to time its waits on the monotonic clock (attributes
 * otherwise default). Returns 0 or the pthread error number. */
int sli_cond_init_mono(pthread_cond_t *cv);
/* The absolute monotonic time ms milliseconds from now (ms >= 0), for
 * pthread_cond_timedwait() on a condition variable made by
 * sli_cond_init_mono(). */
void sli_clock_mono_deadline(struct timespec *ts, int64_t ms);

#endif
