/*
 * test_runtime_backpressure.c - a fast source into a deliberately slow sink
 * keeps every channel within its credits and memory bounded.
 *
 * What it proves, for several shapes (rebalance fan-in, hash fan-out and
 * fan-in, an operator that expands each batch into several, credits 1, 2
 * and 3 - 3 is not a power of two, so the ring is larger than the credit):
 *  - channel occupancy (sl_channel_size on every p->channels[i]) never
 *    exceeds the channel's credits, sampled from inside the slow sink and
 *    concurrently from the test thread while the job runs;
 *  - the number of batches ever allocated (p->pool.n_alloc) stays under a
 *    bound computed from the plan alone (channels x credits, per-instance
 *    output and hash-build batches, per-worker pool caches), the same bound
 *    for N and for 4N events: memory does not grow with the input;
 *  - every record reaches the sink exactly once (count and checksum).
 *
 * The sink sleeps per batch so that the source is much faster; nothing is
 * asserted about time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/internal.h"

#define WAIT_MS 300000 /* generous: only a hang exceeds it */
#ifndef BP_EVENTS
#define BP_EVENTS 60000
#endif

typedef struct ev {
    int64_t key;
    int64_t val;
} ev;

static int gen_ev(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    (void)ud;
    ev *e = out;
    e->key = (int64_t)(seq % 101);
    e->val = (int64_t)seq;
    *ts = (int64_t)seq;
    return 0;
}

static sl_bytes key8(const void *rec, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    sl_bytes k = {rec, 8};
    return k;
}

typedef struct probe {
    sl_pipeline *p;
    atomic_llong n, sum;
    atomic_long over;    /* samples above the credit */
    atomic_long max_occ; /* largest occupancy seen */
    atomic_long samples;
    atomic_size_t max_alloc;
    int delay_us;
    char what[200];
} probe;

static void sample(probe *pr)
{
    sl_pipeline *p = pr->p;
    for (int i = 0; i < p->n_channels; i++) {
        sl_channel *ch = p->channels[i];
        size_t sz = sl_channel_size(ch);
        if (sz > ch->credits && atomic_fetch_add(&pr->over, 1) == 0)
            snprintf(pr->what, sizeof(pr->what), "channel %d holds %zu messages, credits %zu", i,
                     sz, ch->credits);
        long cur = atomic_load(&pr->max_occ);
        while ((long)sz > cur && !atomic_compare_exchange_weak(&pr->max_occ, &cur, (long)sz)) {}
    }
    size_t a = atomic_load(&p->pool.n_alloc), m = atomic_load(&pr->max_alloc);
    while (a > m && !atomic_compare_exchange_weak(&pr->max_alloc, &m, a)) {}
    atomic_fetch_add(&pr->samples, 1);
}

static int slow_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    probe *pr = sl_ctx_conf(ctx);
    long long s = 0;
    for (uint32_t i = 0; i < in->count; i++) s += ((const ev *)sl_batch_at(in, i))->val;
    atomic_fetch_add(&pr->n, in->count);
    atomic_fetch_add(&pr->sum, s);
    sample(pr);
    usleep((useconds_t)pr->delay_us);
    return 0;
}

static const sl_operator slow_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "slow-sink", .process = slow_process};

/* Each record becomes three: one input batch fills three output batches. */
static int triple(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)ud;
    for (int k = 0; k < 3; k++) {
        int rc = sl_emit_copy(ctx, ts, 0, rec, len);
        if (rc) return rc;
    }
    return 0;
}

typedef struct shape {
    const char *name;
    int credits, threads, src_par, sink_par;
    int hash;   /* key_by before the sink (hash edge) instead of rebalance */
    int expand; /* a flat_map x3 between */
} shape;

static const shape shapes[] = {
    {"rebalance 2->1", 2, 2, 2, 1, 0, 0}, {"hash 2->2", 1, 2, 2, 2, 1, 0},
    {"hash 3->2", 3, 3, 3, 2, 1, 0},      {"expand x3 1->2->1", 1, 2, 1, 1, 0, 1},
    {"rebalance 4->3", 1, 4, 4, 3, 0, 0},
};

/* Batches that can exist at once, from the plan alone: what the channels
 * hold (credits each), what waits for credit (one activation's output per
 * channel: an input batch expands to at most 3 + hash split), per instance
 * one batch being filled per port and one hash-build batch per channel, one
 * in the hands of each worker, and the pool caches (< 2 chunks each) plus
 * one chunk in transit to the depot. Independent of the number of events. */
static size_t bound_for(sl_pipeline *p)
{
    size_t b = 0;
    for (int i = 0; i < p->n_channels; i++) b += p->channels[i]->credits + 4;
    b += (size_t)p->n_ctx * (SL_MAX_PORTS + (size_t)p->n_channels);
    b += (size_t)(p->threads + 1) * (3 * SL_POOL_CHUNK + 2);
    return b;
}

static void run_shape(const shape *sh, uint64_t n, size_t *alloc_out, size_t *bound_out)
{
    probe *pr = calloc(1, sizeof(*pr));
    assert_non_null(pr);
    pr->delay_us = 300;
    sl_pipeline *p = sl_pipeline_new();
    pr->p = p;
    assert_int_equal(sl_pipeline_set_threads(p, sh->threads), 0);
    assert_int_equal(sl_pipeline_set_credits(p, sh->credits), 0);
    assert_int_equal(sl_pipeline_set_parallelism(p, sh->sink_par), 0);
    sl_generator_conf gc = {.fn = gen_ev, .count = n};
    sl_stream *s =
        sl_stream_parallelism(sl_pipeline_generator(p, "fast", &gc, sizeof(ev), NULL), sh->src_par);
    if (sh->expand) {
        s = sl_stream_parallelism(
            sl_stream_flat_map(sl_stream_rebalance(s), "x3", triple, NULL, sizeof(ev)), 2);
        s = sl_stream_rebalance(s);
    } else if (sh->hash) {
        s = sl_stream_parallelism(sl_stream_key_by(s, "by-key", key8, NULL), sh->src_par);
    } else {
        s = sl_stream_rebalance(s);
    }
    assert_int_equal(sl_stream_sink(s, "slow", &slow_sink, pr), 0);
    assert_int_equal(sl_pipeline_start(p), 0);
    /* Sample from this thread too, concurrently with the workers. */
    int rc;
    for (long k = 0; (rc = sl_pipeline_wait(p, 0)) == SL_EAGAIN; k++) {
        sample(pr);
        if (k > 3000000) fail_msg("%s: the job did not end (hang)", sh->name);
        usleep(50);
    }
    if (rc) fail_msg("%s: run failed: %s", sh->name, sl_pipeline_errmsg(p));
    if (atomic_load(&pr->over))
        fail_msg("%s, %llu events: %ld samples over the credit; first: %s", sh->name,
                 (unsigned long long)n, atomic_load(&pr->over), pr->what);
    uint64_t want_n = sh->expand ? 3 * n : n;
    long long want_sum = (long long)(n * (n - 1) / 2) * (sh->expand ? 3 : 1);
    assert_int_equal(atomic_load(&pr->n), want_n);
    assert_int_equal(atomic_load(&pr->sum), want_sum);
    size_t alloc = atomic_load(&p->pool.n_alloc);
    if (alloc < atomic_load(&pr->max_alloc)) alloc = atomic_load(&pr->max_alloc);
    *alloc_out = alloc;
    *bound_out = bound_for(p);
    print_message("  %-20s %7llu events: %4zu batches allocated (bound %zu), max occupancy "
                  "%ld/%d, %ld samples\n",
                  sh->name, (unsigned long long)n, alloc, *bound_out, atomic_load(&pr->max_occ),
                  sh->credits, atomic_load(&pr->samples));
    sl_pipeline_free(p);
    free(pr);
}

static void test_occupancy_and_memory_bounded(void **state)
{
    (void)state;
    const uint64_t N = BP_EVENTS;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        size_t a1, b1, a4, b4;
        run_shape(&shapes[i], N, &a1, &b1);
        run_shape(&shapes[i], 4 * N, &a4, &b4);
        assert_int_equal(b1, b4); /* the bound does not depend on the input */
        if (a1 > b1)
            fail_msg("%s: %zu batches for %llu events, bound %zu", shapes[i].name, a1,
                     (unsigned long long)N, b1);
        if (a4 > b4)
            fail_msg("%s: %zu batches for %llu events, bound %zu", shapes[i].name, a4,
                     (unsigned long long)(4 * N), b4);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_occupancy_and_memory_bounded),
    };
    return cmocka_run_group_tests_name("runtime_backpressure", tests, NULL, NULL);
}
