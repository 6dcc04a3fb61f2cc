/*
 * engine/channel.h - bounded SPSC channels of batches and control messages.
 *
 * One channel per (producer instance, consumer instance) pair. A ring of
 * `credits` message slots: data batches and in-band control messages
 * (watermark, idle/active, barrier, end of stream) share it, so control is
 * ordered with the data. The capacity is the credit: when the ring is full
 * the producer parks what it could not send in its overflow queue, stops
 * taking input, and is woken by the consumer once a slot frees. So memory is
 * bounded by credits x batch size per channel, plus what one input batch can
 * expand to.
 *
 * Only the producer task touches tail/ovf*, only the consumer task touches
 * head and the consumer-side fields; `producer_waiting` is the one flag both
 * write (Dekker-style with seq_cst on both sides, so no wake-up is lost).
 *
 * A channel knows nothing of the scheduler: it tells its caller, by return
 * value, when the other side needs a wake-up, and the caller (task.c) makes
 * it with sli_task_wake(), whose leading full fence pairs with the worker's
 * publish-RUNNING-then-read-inputs. The producer and consumer fields are
 * opaque task pointers, for the caller.
 */
#ifndef SLUICE_ENGINE_CHANNEL_H
#define SLUICE_ENGINE_CHANNEL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "sluice/batch.h"
#include "sluice/error.h"

enum sl_msg_kind {
    SL_MSG_DATA = 0,
    SL_MSG_WATERMARK, /* value: event time */
    SL_MSG_IDLE,
    SL_MSG_ACTIVE,
    SL_MSG_BARRIER, /* value: checkpoint id */
    SL_MSG_END      /* end of stream */
};

typedef struct sl_msg {
    uint32_t kind;
    int64_t value;
    sl_batch *batch;
} sl_msg;

struct sl_task;

typedef struct sl_channel {
    _Alignas(64) atomic_size_t head; /* consumer: next slot to read */
    _Alignas(64) atomic_size_t tail; /* producer: next slot to write */
    _Alignas(64) atomic_int producer_waiting;
    size_t mask; /* capacity - 1; capacity is a power of two */
    size_t credits;
    sl_msg *ring;
    struct sl_task *producer, *consumer;
    int input; /* logical input index at the consumer */
    /* producer side: messages waiting for credit (FIFO) */
    sl_msg *ovf;
    size_t ovf_head, ovf_len, ovf_cap;
    /* consumer side */
    int64_t wm;
    int idle;
    int ended;
    int end_canceled; /* ended by a cancel: its watermark holds (task.c) */
    int aligned;      /* holds back input until the barrier is aligned */
} sl_channel;

int sli_channel_new(sl_channel **out, size_t credits);
void sli_channel_free(sl_channel *ch); /* returns nothing to pools */

/* Producer: try to put one message; 0 or SL_EFULL. */
static inline int sli_channel_try_push(sl_channel *ch, const sl_msg *m)
{
    size_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
    size_t h = atomic_load_explicit(&ch->head, memory_order_acquire);
    if (t - h >= ch->credits) return SL_EFULL;
    ch->ring[t & ch->mask] = *m;
    atomic_store_explicit(&ch->tail, t + 1, memory_order_release);
    return 0;
}

/* Consumer: take one message; 1 if one was taken. */
static inline int sli_channel_pop(sl_channel *ch, sl_msg *m)
{
    size_t h = atomic_load_explicit(&ch->head, memory_order_relaxed);
    size_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
    if (h == t) return 0;
    *m = ch->ring[h & ch->mask];
    atomic_store_explicit(&ch->head, h + 1, memory_order_seq_cst);
    return 1;
}

static inline int sli_channel_empty(sl_channel *ch)
{
    return atomic_load_explicit(&ch->head, memory_order_relaxed) ==
           atomic_load_explicit(&ch->tail, memory_order_acquire);
}

static inline size_t sli_channel_size(sl_channel *ch)
{
    return atomic_load_explicit(&ch->tail, memory_order_acquire) -
           atomic_load_explicit(&ch->head, memory_order_acquire);
}

/* Producer: send m, or queue it in the overflow when the ring is full.
 * Returns 1 when m went into the ring (the caller must wake the consumer),
 * 0 when it waits in the overflow (then *blocked is set, and the consumer
 * will wake the producer once a slot frees), or SL_ENOMEM. */
int sli_channel_send(sl_channel *ch, const sl_msg *m, int *blocked);
/* Producer: move overflow into the ring; returns 1 if some is still waiting
 * (and then the consumer will wake the producer). Sets *wake when messages
 * went into the ring (the caller must wake the consumer). */
int sli_channel_drain(sl_channel *ch, int *wake);

#endif
