/*
 * engine/deque.h - Chase–Lev work-stealing deque of task pointers (private).
 *
 * One deque per worker. Its owner pushes and pops at the bottom (LIFO, so the
 * task it just made runnable runs next, with warm caches); any other worker
 * steals at the top (FIFO, the oldest task). Lock-free, C11 atomics with the
 * memory orders of Lê, Pop, Cohen and Zappa Nardelli, "Correct and Efficient
 * Work-Stealing for Weak Memory Models" (PPoPP 2013).
 *
 * Capacity is fixed at creation (rounded up to a power of two) and the deque
 * never grows: the scheduler keeps every task in at most one deque at a time,
 * so a capacity of at least the number of tasks always suffices, and
 * sli_deque_push() returns SL_EFULL rather than growing. (With that sizing a
 * push cannot fail: a stale view of `top` only counts items whose removal the
 * owner has not yet observed, and those are other tasks.)
 *
 * Items are opaque non-NULL pointers; NULL is the "nothing" result. The deque
 * does not own them. A push happens-before the pop or steal that returns the
 * item, so whatever the owner wrote to a task before pushing it is visible to
 * the thief that takes it.
 */
#ifndef SLUICE_ENGINE_DEQUE_H
#define SLUICE_ENGINE_DEQUE_H

#include <stddef.h>
#include "sluice/error.h"

typedef struct sl_deque sl_deque;

/* Make a deque holding up to `capacity` items (rounded up to a power of two,
 * at least 1). Returns 0 or SL_ENOMEM; the caller owns *out and frees it with
 * sli_deque_free(). */
int sli_deque_new(sl_deque **out, size_t capacity);
/* Free a deque (accepts NULL). No thread may be using it any more. */
void sli_deque_free(sl_deque *d);
/* Owner thread only: add item (non-NULL) at the bottom. 0, or SL_EFULL if the
 * deque holds `capacity` items (nothing is added then). */
int sli_deque_push(sl_deque *d, void *item);
/* Owner thread only: take the most recently pushed item, or NULL if empty. */
void *sli_deque_pop(sl_deque *d);
/* Any thread: take the oldest item, or NULL if the deque was empty or another
 * thread took that item first (a lost race: the caller may try again). */
void *sli_deque_steal(sl_deque *d);
/* Number of items, as seen at some recent moment (exact when quiescent). */
size_t sli_deque_size_approx(const sl_deque *d);

#endif
