/*
 * engine/channel.c - bounded SPSC channels (see channel.h for the protocol).
 *
 * Lost wake-ups are excluded by a Dekker pair: the producer, finding the ring
 * full, sets producer_waiting and then re-reads head; the consumer, after
 * advancing head, reads producer_waiting. Both sides use seq_cst, so at least
 * one of them sees the other's write: either the producer sees the freed slot,
 * or the consumer sees the flag and wakes the producer.
 *
 * The channel never calls the scheduler: send and drain report "the consumer
 * needs a wake-up" to their caller (task.c), which makes it right after, so
 * the publish of the tail and the full fence at the start of sli_task_wake()
 * keep their order (the lost wake-up fixed in fdf047e / d4f9b03).
 */
#include "engine/channel.h"
#include <stdlib.h>
#include <string.h>

int sli_channel_new(sl_channel **out, size_t credits)
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

void sli_channel_free(sl_channel *ch)
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

int sli_channel_drain(sl_channel *ch, int *wake)
{
    int moved = 0;
    while (ch->ovf_len) {
        if (sli_channel_try_push(ch, &ch->ovf[ch->ovf_head]) != 0) {
            if (announce_wait(ch)) continue;
            if (moved) *wake = 1;
            return 1;
        }
        ch->ovf_head = (ch->ovf_head + 1) % ch->ovf_cap;
        ch->ovf_len--;
        moved = 1;
    }
    if (moved) *wake = 1;
    return 0;
}

int sli_channel_send(sl_channel *ch, const sl_msg *m, int *blocked)
{
    if (ch->ovf_len == 0) {
        for (;;) {
            if (sli_channel_try_push(ch, m) == 0) return 1;
            if (!announce_wait(ch)) break;
        }
    }
    int rc = ovf_push(ch, m);
    if (rc) return rc;
    *blocked = 1;
    return 0;
}
