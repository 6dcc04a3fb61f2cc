/*
 * engine/channel.c - bounded SPSC channels (see channel.h for the protocol).
 *
 * Lost wake-ups are excluded by a Dekker pair: the producer, finding the ring
 * full, sets producer_waiting and then re-reads head; the consumer, after
 * advancing head, reads producer_waiting. Both sides use seq_cst, so at least
 * one of them sees the other's write: either the producer sees the freed slot,
 * or the consumer sees the flag and wakes the producer.
 */
#include <stdlib.h>
#include <string.h>
#include "engine/internal.h"

int sl_channel_new(sl_channel **out, size_t credits)
{
    size_t cap = 1;
    while (cap < credits) cap <<= 1;
    sl_channel *ch = calloc(1, sizeof(*ch));
    if (!ch) return SL_ENOMEM;
    ch->ring = calloc(cap, sizeof(sl_msg));
    if (!ch->ring) {
        free(ch);
        return SL_ENOMEM;
    }
    ch->mask = cap - 1;
    ch->credits = credits;
    ch->wm = SL_TIME_MIN;
    atomic_init(&ch->head, 0);
    atomic_init(&ch->tail, 0);
    atomic_init(&ch->producer_waiting, 0);
    *out = ch;
    return 0;
}

void sl_channel_free(sl_channel *ch)
{
    if (!ch) return;
    free(ch->ring);
    free(ch->ovf);
    free(ch);
}

static int ovf_push(sl_channel *ch, const sl_msg *m)
{
    if (ch->ovf_len == ch->ovf_cap) {
        size_t cap = ch->ovf_cap ? ch->ovf_cap * 2 : 8;
        sl_msg *n = malloc(cap * sizeof(*n));
        if (!n) return SL_ENOMEM;
        for (size_t i = 0; i < ch->ovf_len; i++)
            n[i] = ch->ovf[(ch->ovf_head + i) % (ch->ovf_cap ? ch->ovf_cap : 1)];
        free(ch->ovf);
        ch->ovf = n;
        ch->ovf_cap = cap;
        ch->ovf_head = 0;
    }
    ch->ovf[(ch->ovf_head + ch->ovf_len) % ch->ovf_cap] = *m;
    ch->ovf_len++;
    return 0;
}

/* Ring full: announce that we wait, then look once more (Dekker). Returns 1
 * if there is room after all. */
static int announce_wait(sl_channel *ch)
{
    atomic_store_explicit(&ch->producer_waiting, 1, memory_order_seq_cst);
    size_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    size_t h = atomic_load_explicit(&ch->head, memory_order_seq_cst);
    return t - h < ch->credits;
}

int sl_channel_drain(sl_channel *ch)
{
    int moved = 0;
    while (ch->ovf_len) {
        if (sl_channel_try_push(ch, &ch->ovf[ch->ovf_head]) != 0) {
            if (announce_wait(ch)) continue;
            if (moved) sl_task_wake(ch->consumer);
            return 1;
        }
        ch->ovf_head = (ch->ovf_head + 1) % ch->ovf_cap;
        ch->ovf_len--;
        moved = 1;
    }
    if (moved) sl_task_wake(ch->consumer);
    return 0;
}

int sl_channel_send(sl_channel *ch, const sl_msg *m, int *blocked)
{
    if (ch->ovf_len == 0) {
        for (;;) {
            if (sl_channel_try_push(ch, m) == 0) {
                sl_task_wake(ch->consumer);
                return 0;
            }
            if (!announce_wait(ch)) break;
        }
    }
    int rc = ovf_push(ch, m);
    if (rc) return rc;
    *blocked = 1;
    return 0;
}
