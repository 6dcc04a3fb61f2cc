/*
 * engine/deque.c - Chase–Lev work-stealing deque (see engine/deque.h).
 *
 * What: a ring of `mask + 1` atomic pointer slots and two signed 64-bit
 * indices. Items live at positions [top, bottom); position i is stored in
 * slot i & mask. The owner moves `bottom` (push: +1, pop: -1); thieves and,
 * for the last item, the owner move `top` forward with a compare-and-swap.
 *
 * Why this algorithm and these orders: it is the C11 version proved correct
 * by Lê, Pop, Cohen and Zappa Nardelli (PPoPP 2013), minus resizing (the
 * capacity is fixed, see deque.h). Push, pop and a successful steal cost no
 * lock; pop only touches `top` (a CAS) when it competes for the last item.
 *
 * Invariants:
 *  - top never decreases; it only changes by a successful CAS (+1).
 *  - bottom is written only by the owner; top <= bottom + 1 at all times,
 *    and top <= bottom whenever the owner is not inside pop.
 *  - bottom - top <= capacity: push refuses (SL_EFULL) beyond that, so a
 *    slot is never overwritten while its item can still be taken.
 *  - Indices are signed: in pop, bottom - 1 may be -1 on an empty deque and
 *    must compare below top (an unsigned index would wrap and "find" an item).
 *  - An item is returned by exactly one pop or steal. A thief, or the owner
 *    popping the last item, takes position t only by winning the CAS
 *    top: t -> t+1; a pop of any other item takes it by moving bottom below
 *    it while top is seen to be lower (the seq_cst fence orders the two).
 *
 * Memory orders (the paper's, with one deliberate strengthening):
 *  - push: the slot store is relaxed, then bottom is published with a
 *    release store. The paper uses a release fence followed by a relaxed
 *    store, which orders the same writes; a release store is what
 *    ThreadSanitizer models (it ignores fences), so the hand-off of a task's
 *    contents from pusher to thief is visible to it and reports stay clean.
 *    It costs nothing on x86 (a plain store either way).
 *  - pop: relaxed store of bottom - 1, then a seq_cst fence before reading
 *    top, so that an owner and a thief racing for the last item cannot both
 *    miss each other; the CAS for the last item is seq_cst.
 *  - steal: acquire load of top, seq_cst fence, acquire load of bottom; the
 *    slot is read relaxed *before* the CAS (after a successful CAS the owner
 *    may reuse the slot), and the value is used only if the CAS succeeds.
 *  - Slots are _Atomic(void *) accessed relaxed: a thief may read a slot that
 *    the owner is overwriting after a wrap; the value is then discarded (its
 *    CAS fails), and the access is not a data race in the C11 sense.
 *
 * Threads: push and pop on the owner thread only; steal and size_approx on
 * any thread. new and free when no other thread uses the deque.
 */
#include "engine/deque.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#define SL_CACHE_LINE 64

struct sl_deque {
    /* Written by thieves (and the owner's last-item CAS). */
    alignas(SL_CACHE_LINE) atomic_int_fast64_t top;
    /* Written by the owner only. */
    alignas(SL_CACHE_LINE) atomic_int_fast64_t bottom;
    /* Read-only after creation, on a line of their own so that writes to top
     * and bottom do not evict them from readers' caches. */
    alignas(SL_CACHE_LINE) int_fast64_t mask;
    _Atomic(void *) *slots;
};

int sli_deque_new(sl_deque **out, size_t capacity)
{
    sl_deque *d = NULL;
    size_t cap = 1;

    *out = NULL;
    /* Round up to a power of two; refuse what the signed indices or the
     * allocation could not hold. */
    if (capacity > ((size_t)1 << 40)) return SL_ENOMEM;
    while (cap < capacity) cap <<= 1;

    d = aligned_alloc(SL_CACHE_LINE, sizeof(*d));
    if (!d) goto fail;
    d->slots = malloc(cap * sizeof(d->slots[0]));
    if (!d->slots) goto fail;
    for (size_t i = 0; i < cap; i++) atomic_init(&d->slots[i], NULL);
    atomic_init(&d->top, 0);
    atomic_init(&d->bottom, 0);
    d->mask = (int_fast64_t)cap - 1;
    *out = d;
    return 0;

fail:
    free(d);
    return SL_ENOMEM;
}

void sli_deque_free(sl_deque *d)
{
    if (!d) return;
    free(d->slots);
    free(d);
}

/* Owner thread only. */
int sli_deque_push(sl_deque *d, void *item)
{
    int_fast64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
    int_fast64_t t = atomic_load_explicit(&d->top, memory_order_acquire);

    if (b - t > d->mask) return SL_EFULL;
    atomic_store_explicit(&d->slots[b & d->mask], item, memory_order_relaxed);
    /* Release: publishes the slot and everything written to *item before. */
    atomic_store_explicit(&d->bottom, b + 1, memory_order_release);
    return 0;
}

/* Owner thread only. */
void *sli_deque_pop(sl_deque *d)
{
    int_fast64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed) - 1;
    int_fast64_t t;
    void *item = NULL;

    atomic_store_explicit(&d->bottom, b, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    t = atomic_load_explicit(&d->top, memory_order_relaxed);
    if (t <= b) {
        /* Non-empty. */
        item = atomic_load_explicit(&d->slots[b & d->mask], memory_order_relaxed);
        if (t == b) {
            /* The last item: race the thieves for it. */
            if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                         memory_order_relaxed))
                item = NULL;
            atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
        }
    } else {
        /* Empty: restore bottom. */
        atomic_store_explicit(&d->bottom, b + 1, memory_order_relaxed);
    }
    return item;
}

/* Any thread. */
void *sli_deque_steal(sl_deque *d)
{
    int_fast64_t t = atomic_load_explicit(&d->top, memory_order_acquire);
    int_fast64_t b;
    void *item;

    atomic_thread_fence(memory_order_seq_cst);
    b = atomic_load_explicit(&d->bottom, memory_order_acquire);
    if (t >= b) return NULL;
    item = atomic_load_explicit(&d->slots[t & d->mask], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&d->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return NULL; /* lost the race for position t */
    return item;
}

/* Any thread. */
size_t sli_deque_size_approx(const sl_deque *d)
{
    /* The casts drop const for C11 compilers whose atomic_load takes a
     * non-const pointer; nothing is written. */
    sl_deque *m = (sl_deque *)d;
    int_fast64_t b = atomic_load_explicit(&m->bottom, memory_order_relaxed);
    int_fast64_t t = atomic_load_explicit(&m->top, memory_order_relaxed);
    return b > t ? (size_t)(b - t) : 0;
}
