/*
 * test_batch_trace.c - the batch's sparse trace column (sluice/batch.h,
 * engine/batch.c) against a model.
 *
 * The column is a bit per record plus entries that are defined only where
 * the bit is set, and a batch recycled through the pool keeps the entries
 * of its last use. So every operation is checked against a plain model (one
 * optional context per record), after every step, for every record: the
 * context sl_batch_trace() gives, and the invariant that no bit is set at
 * count or after. The operations, drawn at random from a fixed seed, on
 * fixed- and variable-width batches:
 *  - push a record, then give it a context or not (sl_batch_set_trace; an
 *    invalid context clears one);
 *  - sl_batch_compact with random keep flags (all, none, a few);
 *  - sl_batch_truncate;
 *  - sli_batch_append_from into a second batch, and sli_batch_clone;
 *  - recycle the batch through the pool (sl_batch_clear / put / get): the
 *    stale entries it keeps must not come back as contexts.
 * With each context, the engine's queueing time (sli_trace_wait): zero when
 * a context is set, then moved with it; and its tracestate (none, or 1 to
 * 512 bytes, enough to fill several of the column's state blocks): the
 * bytes are copied when set (the caller's buffer is scribbled on at once)
 * and when copied into another batch (the copy's pointer is its own), and
 * a context set again from the batch's own entry keeps its state. (The
 * filter moves contexts itself, per context: test_runtime_trace checks
 * what comes out of it, test_trace_point the spans of what it drops.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine/pool.h"
#include "sluice/error.h"

typedef struct model {
    uint32_t count;
    int has[SL_BATCH_CAPACITY];
    sl_trace_ctx c[SL_BATCH_CAPACITY]; /* ids and flags; state NULL */
    uint64_t sseed[SL_BATCH_CAPACITY]; /* its tracestate: state_bytes(sseed, slen) */
    uint16_t slen[SL_BATCH_CAPACITY];
    int64_t wait[SL_BATCH_CAPACITY]; /* the engine's queueing time, moves with c */
    uint64_t payload[SL_BATCH_CAPACITY];
} model;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static sl_trace_ctx ctx_for(uint64_t x)
{
    sl_trace_ctx c;
    memset(&c, 0, sizeof c);
    for (int k = 0; k < 8; k++) {
        c.trace_id[k] = (uint8_t)(x >> (8 * k));
        c.trace_id[8 + k] = (uint8_t)(0xC0 + k);
        c.span_id[k] = (uint8_t)((x * 31 + 7) >> (8 * k)) | 1;
    }
    c.flags = (uint8_t)(x & 1);
    return c;
}

static void state_bytes(uint64_t seed, uint16_t len, char *out)
{
    for (uint16_t k = 0; k < len; k++) out[k] = (char)('a' + (seed * 7 + k * 13u) % 26);
}

/* Give record i of b (and of the model) context c with a random state, set
 * from a buffer that is scribbled on right after. */
static void set_with_state(sl_batch *b, model *m, uint32_t i, sl_trace_ctx c, uint64_t seed)
{
    char tmp[SL_TRACESTATE_MAX];
    uint64_t r = rnd() % 8;
    uint16_t len = r < 3    ? 0
                   : r == 3 ? SL_TRACESTATE_MAX
                            : (uint16_t)(rnd() % SL_TRACESTATE_MAX + 1);
    state_bytes(seed, len, tmp);
    c.state = len ? tmp : NULL;
    c.state_len = len;
    assert_int_equal(sl_batch_set_trace(b, i, &c), 0);
    memset(tmp, '#', sizeof tmp);
    c.state = NULL;
    c.state_len = 0;
    m->c[i] = c;
    m->sseed[i] = seed;
    m->slen[i] = len;
    m->has[i] = 1;
}

static uint64_t payload_of(const sl_batch *b, uint32_t i)
{
    uint64_t v;
    memcpy(&v, sl_batch_bytes(b, i).ptr, 8);
    return v;
}

static void check(const sl_batch *b, const model *m)
{
    assert_int_equal(b->count, m->count);
    for (uint32_t i = 0; i < m->count; i++) {
        assert_int_equal(payload_of(b, i), m->payload[i]);
        const sl_trace_ctx *t = sl_batch_trace(b, i);
        if (!m->has[i]) {
            assert_null(t);
            continue;
        }
        assert_non_null(t);
        assert_memory_equal(t, &m->c[i], offsetof(sl_trace_ctx, flags) + 1);
        assert_int_equal(t->state_len, m->slen[i]);
        if (m->slen[i]) {
            char want[SL_TRACESTATE_MAX];
            state_bytes(m->sseed[i], m->slen[i], want);
            assert_non_null(t->state);
            assert_memory_equal(t->state, want, m->slen[i]);
        } else {
            assert_null(t->state);
        }
        assert_int_equal(sli_trace_wait(b)[i], m->wait[i]);
    }
    if (!b->trace) {
        for (uint32_t i = 0; i < m->count; i++) assert_false(m->has[i]);
        return;
    }
    for (uint32_t i = b->count; i < SL_BATCH_CAPACITY; i++) assert_false(sli_trace_has(b, i));
}

static void push(sl_batch *b, model *m, uint64_t v)
{
    assert_int_equal(sl_batch_push(b, (int64_t)v, 0, &v, 8), 0);
    uint32_t i = m->count++;
    m->payload[i] = v;
    m->has[i] = 0;
    if (rnd() % 4 == 0) { /* one in four gets a context */
        set_with_state(b, m, i, ctx_for(v), v);
        assert_int_equal(sli_trace_wait(b)[i], 0); /* a new context has waited nowhere */
        m->wait[i] = sli_trace_wait(b)[i] = (int64_t)(rnd() % 1000000);
    }
}

static void compact(sl_batch *b, model *m)
{
    uint8_t keep[SL_BATCH_CAPACITY];
    int mode = (int)(rnd() % 4);
    for (uint32_t i = 0; i < m->count; i++)
        keep[i] = mode == 0 ? 1 : mode == 1 ? 0 : mode == 2 ? rnd() % 8 == 0 : rnd() % 2;
    sl_batch_compact(b, keep);
    uint32_t j = 0;
    for (uint32_t i = 0; i < m->count; i++) {
        if (!keep[i]) continue;
        m->payload[j] = m->payload[i];
        m->has[j] = m->has[i];
        m->c[j] = m->c[i];
        m->sseed[j] = m->sseed[i];
        m->slen[j] = m->slen[i];
        m->wait[j] = m->wait[i];
        j++;
    }
    m->count = j;
}

static void run(uint32_t width)
{
    sl_pool pool;
    assert_int_equal(sli_pool_init(&pool), 0);
    sl_batch *b = sli_pool_get(&pool, NULL, width);
    assert_non_null(b);
    static model m;
    memset(&m, 0, sizeof m);
    uint64_t next = 1;
    for (int step = 0; step < 20000; step++) {
        int op = (int)(rnd() % 10);
        if (op <= 4 && m.count < SL_BATCH_CAPACITY) {
            push(b, &m, next++);
        } else if (op == 5 && m.count) { /* clear or overwrite one context */
            uint32_t i = (uint32_t)(rnd() % m.count);
            if (rnd() % 2) {
                sl_trace_ctx bad;
                memset(&bad, 0, sizeof bad);
                assert_int_equal(sl_batch_set_trace(b, i, rnd() % 2 ? &bad : NULL), 0);
                m.has[i] = 0;
            } else if (m.has[i] && rnd() % 2) {
                /* set again from an entry of the batch (a trace point's new
                 * span: new span id, the state as it was), from record i or
                 * another record j */
                uint32_t j = rnd() % 2 ? i : (uint32_t)(rnd() % m.count);
                if (!m.has[j]) j = i;
                sl_trace_ctx again = *sl_batch_trace(b, j);
                again.span_id[0] ^= 0x80;
                assert_int_equal(sl_batch_set_trace(b, i, &again), 0);
                if (m.slen[j]) assert_ptr_equal(sl_batch_trace(b, i)->state, again.state);
                m.c[i] = m.c[j];
                m.c[i].span_id[0] ^= 0x80;
                m.sseed[i] = m.sseed[j];
                m.slen[i] = m.slen[j];
                m.wait[i] = 0;
            } else {
                set_with_state(b, &m, i, ctx_for(next), next);
                next++;
                m.wait[i] = 0;
            }
        } else if (op == 6) {
            compact(b, &m);
        } else if (op == 7 && m.count) {
            uint32_t n = (uint32_t)(rnd() % (m.count + 1));
            sl_batch_truncate(b, n);
            m.count = n;
        } else if (op == 8) { /* copies: clone, and record by record */
            sl_batch *c = sli_batch_clone(&pool, NULL, b);
            assert_non_null(c);
            check(c, &m);
            for (uint32_t i = 0; i < m.count; i++) /* the copy's states are its own */
                if (m.has[i] && m.slen[i])
                    assert_ptr_not_equal(sl_batch_trace(c, i)->state, sl_batch_trace(b, i)->state);
            sli_pool_put(&pool, NULL, c);
            sl_batch *d = sli_pool_get(&pool, NULL, width);
            assert_non_null(d);
            for (uint32_t i = 0; i < m.count; i++)
                assert_int_equal(sli_batch_append_from(d, b, i), 0);
            check(d, &m);
            sli_pool_put(&pool, NULL, d);
        } else if (op == 9 && rnd() % 8 == 0) { /* recycle: stale entries stay behind */
            sli_pool_put(&pool, NULL, b);
            b = sli_pool_get(&pool, NULL, width);
            assert_non_null(b);
            m.count = 0;
        }
        check(b, &m);
    }
    sli_pool_put(&pool, NULL, b);
    sli_pool_destroy(&pool);
}

static void test_fixed_width(void **state)
{
    (void)state;
    run(8);
}

static void test_variable_width(void **state)
{
    (void)state;
    run(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_width),
        cmocka_unit_test(test_variable_width),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
