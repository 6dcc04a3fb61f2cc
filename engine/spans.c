/*
 * engine/spans.c - the open spans of a pipeline's trace points (the
 * operator is operators/trace_point.c, the API sl_stream_trace in
 * sluice/trace.h): where a record's span ends, and the table that lets any
 * thread end it.
 *
 * The span ends at whichever comes first (its `sluice.end` attribute):
 *
 *   the next trace point                        that point's name
 *   a sink                                      the sink's name
 *   an operator that does not hand the batch on
 *   (an aggregate, a window, a map that copies) that operator's name
 *   a filter that drops the record              the filter's name
 *                                               (sl_ctx_trace_dropped)
 *   none of these before REGION_CAP newer    "unseen", ended at its start
 *   spans were opened at the same instance,  (the record left by a way
 *   or the pipeline is freed                 that does not say so)
 *
 * Attributes: sluice.operator and sluice.instance (the point), sluice.end
 * and sluice.end_instance, sluice.key_hash when the record was keyed at
 * either place. The record's tracestate is taken where the span ends (the
 * record carries it; a slot has no room for 512 bytes), so an unseen span
 * has none.
 *
 * The table. Each trace point instance opens its spans in a region of its
 * own, a ring of REGION_CAP slots taken in the order the spans were opened;
 * the pipeline's table lists the regions. A span's id names its slot:
 *
 *   byte  0   1   2   3   4   5   6   7
 *        +-------+-------+---------------+
 *        |random |region |  sequence     |   (big endian)
 *        +-------+-------+---------------+
 *
 * so ending a span, on any thread, is a load of the region's pointer, of
 * slot seq % REGION_CAP and a compare of the whole id: no hash, no lock.
 * A slot's state:
 *
 *   FREE --its opener fills it--> OPEN
 *   OPEN --an end, or its opener evicting it (CAS)--> ENDING --copied--> FREE
 *
 * Only the region's instance opens spans in it, so taking a FREE slot
 * needs no locked instruction (a locked instruction waits for the thread's
 * pending stores: in perf, the claims of a shared table were most of an
 * opening's time), and the next slot is known and prefetched. If the slot
 * still holds an OPEN span (REGION_CAP openings old) the opener ends that
 * one first, as unseen; a slot in ENDING is another thread's for a few
 * instructions, and is waited for. An end that finds its slot OPEN with
 * another span in it (its own span was evicted) puts the state back.
 *
 * Cost, per sampled record: two locked instructions (the slot claimed at
 * the end, the place in the tracer's queue), and at its end a ~100-byte
 * record (sli_span_rec) queued to the tracer, whose export thread makes it
 * a span.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "engine/spans.h"
#include "engine/base/clock.h"
#include "engine/base/pages.h"
#include "engine/pool.h"
#include "engine/trace.h"
#include "sluice/pipeline.h"

#define REGION_CAP  16384 /* open spans per trace point instance (a power of 2) */
#define REGIONS_MAX 4096  /* trace point instances per pipeline (ids fit 2 bytes) */

enum { S_FREE = 0, S_OPEN, S_ENDING };

/* One cache line (instances are fewer than 2^16: SL_KEY_GROUPS). */
typedef struct slot {
    _Atomic uint32_t state;
    uint16_t instance;
    uint8_t keyed; /* key_hash is the record's key hash */
    uint8_t kind;
    uint8_t trace_id[16];
    uint8_t span_id[8]; /* its sequence number in bytes 4-7 */
    uint8_t parent[8];  /* all zero: a root */
    int64_t start_ns;
    uint64_t key_hash;
    const char *point; /* the trace point's node name (lives with the pipeline) */
} slot;
_Static_assert(sizeof(slot) == 64, "a slot is one cache line");

/* One instance's spans. `opened` is written by that instance only. */
struct sli_span_region {
    _Atomic uint64_t opened; /* spans opened: the next one's sequence number, mod 2^32 */
    uint16_t id;
    char pad[64 - sizeof(uint64_t) - sizeof(uint16_t)]; /* the slots off this line */
    slot slots[REGION_CAP];
};

struct sli_spans {
    _Atomic uint32_t n_regions; /* ids handed out (some regions may still be NULL) */
    _Atomic(sli_span_region *) regions[REGIONS_MAX];
};

static uint32_t id_seq(const uint8_t id[8])
{
    return (uint32_t)id[4] << 24 | (uint32_t)id[5] << 16 | (uint32_t)id[6] << 8 | id[7];
}

static uint32_t id_region(const uint8_t id[8])
{
    return (uint32_t)id[2] << 8 | id[3];
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Queue the span held in s (state ENDING, the caller's) and free the slot.
 * end: where the record left (NULL: unseen, the span ends at its start);
 * tc: the record's context there, whose tracestate the span exports (NULL:
 * none known). */
static void slot_end(sl_tracer *tr, slot *s, const struct sl_ctx *end, const sl_trace_ctx *tc,
                     const sl_batch *b, uint32_t i, int64_t now)
{
    sli_span_rec r = {.start_ns = s->start_ns,
                      .end_ns = end ? now : s->start_ns,
                      .point = s->point,
                      .end = end ? end->node->name : NULL,
                      .instance = s->instance,
                      .end_instance = end ? end->instance : 0,
                      .key_hash = s->key_hash,
                      .keyed = (uint8_t)s->keyed,
                      .kind = (uint8_t)s->kind,
                      .queue_ns = end && b ? sli_trace_wait(b)[i] : -1};
    memcpy(r.trace_id, s->trace_id, 16);
    memcpy(r.span_id, s->span_id, 8);
    memcpy(r.parent, s->parent, 8);
    atomic_store_explicit(&s->state, S_FREE, memory_order_release);
    if (end && b && !r.keyed && end->in_key[end->cur_input]) {
        r.keyed = 1;
        r.key_hash = b->hash[i];
    }
    sli_span_rec_end(tr, &r, tc ? tc->state : NULL, tc ? tc->state_len : 0);
}

/* End the span of context tc if it is open in t (else nothing). */
static void span_end(sli_spans *t, sl_tracer *tr, const sl_trace_ctx *tc, const struct sl_ctx *end,
                     const sl_batch *b, uint32_t i, int64_t now)
{
    uint32_t seq = id_seq(tc->span_id), rid = id_region(tc->span_id);
    if (rid >= REGIONS_MAX) return; /* not one of ours */
    sli_span_region *r = atomic_load_explicit(&t->regions[rid], memory_order_acquire);
    if (!r) return;
    slot *s = &r->slots[seq & (REGION_CAP - 1)];
    uint32_t open = S_OPEN;
    if (!atomic_compare_exchange_strong_explicit(&s->state, &open, S_ENDING, memory_order_acquire,
                                                 memory_order_relaxed))
        return; /* free, or another thread's: not ours to end */
    if (memcmp(s->span_id, tc->span_id, 8) || memcmp(s->trace_id, tc->trace_id, 16)) {
        atomic_store_explicit(&s->state, S_OPEN, memory_order_release);
        return; /* another span: ours was evicted, or tc is not one of ours */
    }
    slot_end(tr, s, end, tc, b, i, now);
}

sli_spans *sli_spans_new(void)
{
    return calloc(1, sizeof(sli_spans));
}

/* c's region, made the first time c opens a span. NULL: out of memory, or
 * REGIONS_MAX instances have one. */
static sli_span_region *region_of(struct sl_ctx *c, sli_spans *t)
{
    if (c->span_region) return c->span_region;
    uint32_t rid = atomic_fetch_add_explicit(&t->n_regions, 1, memory_order_relaxed);
    if (rid >= REGIONS_MAX) return NULL;
    sli_span_region *r = sli_pages_alloc(sizeof(*r)); /* made at once: see pages.h */
    if (!r) return NULL;
    r->id = (uint16_t)rid;
    atomic_store_explicit(&t->regions[rid], r, memory_order_release);
    return c->span_region = r;
}

int sli_spans_open(struct sl_ctx *c, int kind, const sl_batch *b, uint32_t i,
                   const uint8_t trace_id[16], const sl_trace_ctx *parent, int64_t now,
                   sl_trace_ctx *out)
{
    sl_tracer *tr = c->p->tracer;
    sli_span_region *r = region_of(c, c->p->spans);
    if (!r) return SL_ENOMEM;
    uint32_t seq = (uint32_t)atomic_load_explicit(&r->opened, memory_order_relaxed);
    atomic_store_explicit(&r->opened, seq + 1ull, memory_order_relaxed);
    slot *s = &r->slots[seq & (REGION_CAP - 1)];
    for (;;) {
        uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == S_FREE) break; /* only this instance fills its slots */
        if (st == S_OPEN) {
            /* REGION_CAP openings old and never seen again: unseen */
            if (atomic_compare_exchange_weak_explicit(&s->state, &st, S_ENDING,
                                                      memory_order_acquire, memory_order_relaxed))
                slot_end(tr, s, NULL, NULL, NULL, 0, now);
        } else {
            cpu_relax();
        }
    }
    memcpy(s->trace_id, trace_id, 16);
    sl_trace_new_span_id(s->span_id);
    if (!(s->span_id[0] | s->span_id[1])) s->span_id[0] = 1;
    s->span_id[2] = (uint8_t)(r->id >> 8);
    s->span_id[3] = (uint8_t)r->id;
    s->span_id[4] = (uint8_t)(seq >> 24);
    s->span_id[5] = (uint8_t)(seq >> 16);
    s->span_id[6] = (uint8_t)(seq >> 8);
    s->span_id[7] = (uint8_t)seq;
    if (parent)
        memcpy(s->parent, parent->span_id, 8);
    else
        memset(s->parent, 0, 8);
    s->instance = (uint16_t)c->instance;
    s->keyed = c->in_key[c->cur_input] != NULL;
    s->key_hash = s->keyed ? b->hash[i] : 0;
    s->kind = (uint8_t)(kind ? kind : SL_SPAN_KIND_INTERNAL);
    s->start_ns = now;
    s->point = c->node->name;
    memcpy(out->trace_id, trace_id, 16);
    memcpy(out->span_id, s->span_id, 8);
    out->flags = SL_TRACE_FLAG_SAMPLED;
    out->state = parent ? parent->state : NULL; /* tracestate travels on unchanged */
    out->state_len = parent ? parent->state_len : 0;
    atomic_store_explicit(&s->state, S_OPEN, memory_order_release);
    /* the next opening's slot, a whole lap since it was last written */
    __builtin_prefetch(&r->slots[(seq + 1) & (REGION_CAP - 1)], 1, 3);
    return 0;
}

void sli_spans_end_batch(struct sl_ctx *c, const sl_batch *b)
{
    sl_tracer *tr = c->p->tracer;
    if (!tr) return;
    int64_t now = sl_trace_now_ns();
    SLI_TRACE_EACH(b, i, {
        if (b->trace[i].flags & SL_TRACE_FLAG_SAMPLED)
            span_end(c->p->spans, tr, &b->trace[i], c, b, i, now);
    })
}

void sli_spans_end(struct sl_ctx *c, const sl_trace_ctx *tc, const sl_batch *b, uint32_t i,
                   int64_t now)
{
    span_end(c->p->spans, c->p->tracer, tc, c, b, i, now);
}

void sli_spans_dropped(struct sl_ctx *c, const sl_batch *b, uint32_t i, int64_t *now)
{
    if (!c->p->spans || !c->p->tracer || !(b->trace[i].flags & SL_TRACE_FLAG_SAMPLED)) return;
    if (!*now) *now = sl_trace_now_ns();
    span_end(c->p->spans, c->p->tracer, &b->trace[i], c, b, i, *now);
}

void sli_spans_waited(sl_batch *b, int64_t sent_ns)
{
    int64_t waited = sl_trace_now_ns() - sent_ns, *wait = sli_trace_wait(b);
    if (waited < 0) waited = 0; /* the wall clock stepped back */
    SLI_TRACE_EACH(b, i, wait[i] += waited;)
}

void sl_ctx_trace_dropped(sl_ctx *c, const sl_trace_ctx *tc)
{
    if (!c || !c->p->spans || !c->p->tracer || !tc || !(tc->flags & SL_TRACE_FLAG_SAMPLED) ||
        !sl_trace_ctx_valid(tc))
        return;
    span_end(c->p->spans, c->p->tracer, tc, c, NULL, 0, sl_trace_now_ns());
}

void sli_spans_free(sli_spans *t, sl_tracer *tracer)
{
    if (!t) return;
    uint32_t n = atomic_load(&t->n_regions);
    for (uint32_t k = 0; k < n && k < REGIONS_MAX; k++) {
        sli_span_region *r = atomic_load(&t->regions[k]);
        if (!r) continue;
        /* Slots are taken in order: only the first `opened` were ever
         * used (a short run ends without touching the rest of the pages). */
        uint64_t used = atomic_load(&r->opened);
        for (uint32_t j = 0; tracer && j < REGION_CAP && j < used; j++)
            if (atomic_load(&r->slots[j].state) == S_OPEN) {
                atomic_store(&r->slots[j].state, S_ENDING);
                slot_end(tracer, &r->slots[j], NULL, NULL, NULL, 0, 0);
            }
        sli_pages_free(r, sizeof(*r));
    }
    free(t);
}
