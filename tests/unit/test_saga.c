/*
 * tests/unit/test_saga.c - the saga operator (operators/saga/saga.c,
 * sluice/saga.h).
 *
 * Two levels:
 *
 *  - The state machine alone (operators/saga/saga_int.h), driven in a closed
 *    loop by a discrete-event harness: a heap of replies and timers in
 *    virtual event time, and a model of idempotent participants (a ledger
 *    per idempotency key: an action or compensation is applied at most
 *    once; a later attempt of an applied key gets the stored success; the
 *    compensation of an action never applied is a no-op success). A table
 *    of scripted faults walks every path: success; final failure, timeouts
 *    and retries used up at each step; retries that then succeed;
 *    compensation retries, failures and timeouts (failed-to-compensate
 *    names the step); pivot steps (the pivot's timeouts retried, forward
 *    only after it, failed-forward); builders that fail. Each case checks
 *    the exact command trace ("A1.2" = action of step 1, attempt 2) and the
 *    outcome record. Then: stale, duplicated, reordered and late replies
 *    never change a saga; and a randomized run against the participant
 *    model (seeds x fault rates, duplicated replies, silent participants)
 *    checks the invariants: every saga ends exactly once, no key is
 *    applied twice, a completed saga kept every action, a compensated one
 *    kept none and compensated in reverse order.
 *
 *  - The operator in pipelines: wiring, ports, diverted records (malformed,
 *    too large, duplicate starts, replies for unknown sagas), timeouts fired
 *    by the end of the input, with credits 1 and 8 and parallelism 1 and
 *    2; and a closed loop through an in-process participant bus (commands
 *    sink -> ledger -> reply log -> replies source), run straight through
 *    and run as two halves with a stop-with-savepoint in the middle: the
 *    outcomes are equal (credits 1, 2 and 8; parallelism 1 and 2); and in
 *    processing time with silent participants, stopped with a savepoint
 *    while sagas wait and restarted: their deadlines are re-armed and every
 *    saga ends (failed to compensate step 0, after its timeouts).
 *
 * The measurement (bytes of state per in-flight saga at 10^6 sagas with
 * their engine timers; sagas/s of the core loop, and end to end through the
 * engine with in-process participants on 1 and 2 threads) is printed by
 * test_measure, never asserted. Run one test with SAGA_TEST=<name>.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "sluice/sluice.h"
#include "engine/timer.h"
#include "operators/saga/saga_int.h"

#define NONE_TS        INT64_MIN
#define SILENT         3 /* a decision: no reply, not applied */
#define SILENT_APPLIED 4 /* a decision: applied, but the reply is lost */

/* --- builders ------------------------------------------------------------------ */

/* The command is "<A|C><step>:<data>"; data "bad<k>" makes step k's action
 * builder fail, "badc<k>" its compensation builder. */
static int build(sl_buf *out, uint64_t id, const void *data, uint32_t len, uint32_t attempt,
                 int kind, int step)
{
    char bad[16];
    snprintf(bad, sizeof(bad), kind ? "badc%d" : "bad%d", step);
    if (len == strlen(bad) && memcmp(data, bad, len) == 0) return SL_EINVAL;
    char h[16];
    int n = snprintf(h, sizeof(h), "%c%d:", kind ? 'C' : 'A', step);
    if (sl_buf_append(out, h, (size_t)n)) return SL_ENOMEM;
    return sl_buf_append(out, data, len);
}
#define BUILDERS(k)                                                                            \
    static int act##k(sl_buf *o, uint64_t id, const void *d, uint32_t l, uint32_t a, void *u)  \
    {                                                                                          \
        return build(o, id, d, l, a, 0, k);                                                    \
    }                                                                                          \
    static int comp##k(sl_buf *o, uint64_t id, const void *d, uint32_t l, uint32_t a, void *u) \
    {                                                                                          \
        return build(o, id, d, l, a, 1, k);                                                    \
    }
BUILDERS(0)
BUILDERS(1)
BUILDERS(2)

#define STEP(nm, a, c)                                                                       \
    {                                                                                        \
        .name = nm, .action = a, .compensation = c, .timeout_ms = 100,                       \
        .retry = {.attempts = 3, .backoff_ms = 10, .multiplier = 2.0, .max_backoff_ms = 15}, \
        .comp_retry = {                                                                      \
            .attempts = 2,                                                                   \
            .backoff_ms = 5                                                                  \
        }                                                                                    \
    }

/* reserve -> charge -> ship, all compensatable */
static const sl_saga_step steps_plain[3] = {STEP("reserve", act0, comp0),
                                            STEP("charge", act1, comp1), STEP("ship", act2, comp2)};
/* reserve -> charge (pivot) -> ship */
static const sl_saga_step steps_pivot[3] = {STEP("reserve", act0, comp0),
                                            STEP("charge", act1, NULL), STEP("ship", act2, NULL)};

static sl_saga_def def_of(const sl_saga_step *steps)
{
    sl_saga_def d = {.version = SL_SAGA_VERSION, .steps = steps, .n_steps = 3, .max_data = 16};
    return d;
}

/* --- the participant model ------------------------------------------------------- */

typedef struct ledger_e {
    uint8_t act_applied, comp_applied, act_blocked;
    uint8_t act_count, comp_count; /* applications (must stay <= 1) */
} ledger_e;

typedef struct script {
    int step, kind;
    uint32_t from, to; /* attempts from..to (inclusive) */
    int decision;
} script;

/* --- the discrete-event harness ---------------------------------------------------- */

typedef struct ev {
    int64_t ts;
    uint64_t seq;
    int type; /* 0 reply, 1 timer */
    uint64_t id;
    sl_saga_reply r;
} ev;

typedef struct harness {
    sli_saga_core core;
    uint32_t vsz;
    size_t n;
    uint8_t *states;
    uint8_t *alive;
    int64_t *timer; /* pending timer per saga, NONE_TS */
    sl_buf *trace;  /* per saga: "A0.1 A1.1 ..." */
    sl_saga_outcome *out;
    int *n_out;
    ledger_e *ledger; /* n * 3 */
    ev *heap;
    size_t hn, hcap;
    uint64_t seq;
    /* decisions: a script, or random */
    const script *sc;
    int n_sc;
    uint64_t seed;
    double fail, timeout, dup;
    int pivot; /* for the random model: no FINAL after it */
    size_t commands, replies_sent, stale;
} harness;

static int ev_less(const ev *a, const ev *b)
{
    if (a->ts != b->ts) return a->ts < b->ts;
    if (a->type != b->type) return a->type < b->type;
    return a->seq < b->seq;
}
static void heap_push(harness *h, ev e)
{
    if (h->hn == h->hcap) {
        h->hcap = h->hcap ? 2 * h->hcap : 64;
        h->heap = realloc(h->heap, h->hcap * sizeof(ev));
        assert_non_null(h->heap);
    }
    e.seq = h->seq++;
    size_t i = h->hn++;
    while (i && ev_less(&e, &h->heap[(i - 1) / 2])) {
        h->heap[i] = h->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->heap[i] = e;
}
static ev heap_pop(harness *h)
{
    ev top = h->heap[0], last = h->heap[--h->hn];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const ev *best = &last;
        if (l < h->hn && ev_less(&h->heap[l], best)) m = l, best = &h->heap[l];
        if (l + 1 < h->hn && ev_less(&h->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        h->heap[i] = h->heap[m];
        i = m;
    }
    if (h->hn) h->heap[i] = last;
    return top;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}
static double unit(uint64_t seed, uint64_t id, uint64_t step, uint64_t kind, uint64_t att,
                   uint64_t salt)
{
    uint64_t x = mix(seed ^ mix(id * 31 + step * 7 + kind * 3 + att * 1000003 + salt * 977));
    return (double)(x >> 11) / 9007199254740992.0;
}

static int decide(harness *h, const sl_saga_command *c)
{
    if (h->sc) {
        for (int i = 0; i < h->n_sc; i++)
            if (h->sc[i].step == c->step && h->sc[i].kind == c->kind &&
                c->attempt >= h->sc[i].from && c->attempt <= h->sc[i].to)
                return h->sc[i].decision;
        return SL_SAGA_SUCCESS;
    }
    double u = unit(h->seed, c->saga_id, c->step, c->kind, c->attempt, 1);
    if (u < h->timeout)
        return unit(h->seed, c->saga_id, c->step, c->kind, c->attempt, 2) < 0.5 ? SILENT
                                                                                : SILENT_APPLIED;
    u = unit(h->seed, c->saga_id, c->step, c->kind, c->attempt, 3);
    if (u < h->fail / 2) return SL_SAGA_RETRYABLE;
    if (u < h->fail) {
        if (c->kind == SL_SAGA_ACTION && h->pivot >= 0 && c->step > h->pivot)
            return SL_SAGA_RETRYABLE; /* the contract after a pivot */
        return SL_SAGA_FINAL;
    }
    return SL_SAGA_SUCCESS;
}

/* An idempotent participant: returns the reply status, or SILENT. */
static int participate(harness *h, const sl_saga_command *c)
{
    ledger_e *L = &h->ledger[c->saga_id * 3 + c->step];
    if (c->kind == SL_SAGA_ACTION) {
        if (L->act_applied) return SL_SAGA_SUCCESS; /* the stored result */
        if (L->act_blocked) return SL_SAGA_FINAL;   /* compensated already */
    } else {
        if (L->comp_applied) return SL_SAGA_SUCCESS;
    }
    int d = decide(h, c);
    if (d == SL_SAGA_SUCCESS || d == SILENT_APPLIED) {
        if (c->kind == SL_SAGA_ACTION) {
            L->act_applied = 1;
            L->act_count++;
        } else {
            L->comp_applied = 1;
            L->comp_count++;
            if (!L->act_applied) L->act_blocked = 1; /* a no-op; refuse the action later */
        }
    }
    return d == SILENT_APPLIED ? SILENT : d;
}

static int h_command(void *ud, int64_t ts, const void *rec, uint32_t len)
{
    harness *h = ud;
    sl_saga_command c;
    sl_bytes b = {rec, len};
    assert_int_equal(sl_saga_command_read(b, &c), 0);
    /* the idempotency key is (id, step, kind) and the command bytes are the builder's */
    assert_int_equal(sli_saga_get64(c.key.ptr), c.saga_id);
    char want[32];
    int wn = snprintf(want, sizeof(want), "%c%d:", c.kind ? 'C' : 'A', c.step);
    assert_true(c.cmd.len >= (uint32_t)wn);
    assert_memory_equal(c.cmd.ptr, want, (size_t)wn);
    h->commands++;
    char t[32];
    int n = snprintf(t, sizeof(t), "%s%c%u.%" PRIu32, h->trace[c.saga_id].len ? " " : "",
                     c.kind ? 'C' : 'A', c.step, c.attempt);
    assert_int_equal(sl_buf_append(&h->trace[c.saga_id], t, (size_t)n), 0);
    int st = participate(h, &c);
    if (st == SILENT) return 0;
    int64_t lat = 1 + (int64_t)(unit(h->seed, c.saga_id, c.step, c.kind, c.attempt, 4) * 40);
    ev e = {.ts = ts + lat, .type = 0, .id = c.saga_id};
    e.r.saga_id = c.saga_id;
    e.r.step = c.step;
    e.r.kind = c.kind;
    e.r.status = (uint8_t)st;
    e.r.attempt = c.attempt;
    heap_push(h, e);
    h->replies_sent++;
    if (h->dup > 0 && unit(h->seed, c.saga_id, c.step, c.kind, c.attempt, 5) < h->dup) {
        e.ts += 7 + (int64_t)(unit(h->seed, c.saga_id, c.step, c.kind, c.attempt, 6) * 300);
        heap_push(h, e); /* a duplicate, later (possibly after newer replies) */
    }
    return 0;
}

static int h_outcome(void *ud, int64_t ts, const void *rec, uint32_t len)
{
    harness *h = ud;
    sl_saga_outcome o;
    sl_bytes b = {rec, len};
    assert_int_equal(sl_saga_outcome_read(b, &o), 0);
    assert_true(o.saga_id < h->n);
    assert_int_equal(h->n_out[o.saga_id], 0); /* ends exactly once */
    h->n_out[o.saga_id]++;
    h->out[o.saga_id] = o;
    h->out[o.saga_id].reason.ptr = NULL; /* not kept */
    return 0;
}

static int h_timer_set(void *ud, uint64_t id, int64_t ts)
{
    harness *h = ud;
    assert_int_equal(h->timer[id], NONE_TS); /* one pending timer per saga */
    h->timer[id] = ts;
    ev e = {.ts = ts, .type = 1, .id = id};
    heap_push(h, e);
    return 0;
}

static int h_timer_del(void *ud, uint64_t id, int64_t ts)
{
    harness *h = ud;
    assert_int_equal(h->timer[id], ts);
    h->timer[id] = NONE_TS;
    return 0;
}

static void h_init(harness *h, const sl_saga_def *def, size_t n)
{
    memset(h, 0, sizeof(*h));
    sli_saga_io io = {h, h_command, h_outcome, h_timer_set, h_timer_del, NULL};
    assert_null(sli_saga_def_invalid(def));
    sli_saga_core_init(&h->core, def, &io);
    h->vsz = sli_saga_value_size(&h->core);
    h->n = n;
    h->states = calloc(n, h->vsz);
    h->alive = calloc(n, 1);
    h->timer = malloc(n * sizeof(int64_t));
    h->trace = calloc(n, sizeof(sl_buf));
    h->out = calloc(n, sizeof(sl_saga_outcome));
    h->n_out = calloc(n, sizeof(int));
    h->ledger = calloc(n * 3, sizeof(ledger_e));
    assert_true(h->states && h->alive && h->timer && h->trace && h->out && h->n_out && h->ledger);
    for (size_t i = 0; i < n; i++) h->timer[i] = NONE_TS;
    h->pivot = h->core.pivot;
}

static void h_free(harness *h)
{
    sli_saga_core_free(&h->core);
    for (size_t i = 0; i < h->n; i++) sl_buf_free(&h->trace[i]);
    free(h->states);
    free(h->alive);
    free(h->timer);
    free(h->trace);
    free(h->out);
    free(h->n_out);
    free(h->ledger);
    free(h->heap);
}

static sli_saga_st *h_st(harness *h, uint64_t id)
{
    return (sli_saga_st *)(h->states + id * h->vsz);
}

static void h_ended(harness *h, uint64_t id, int rc)
{
    assert_true(rc >= 0);
    if (rc > 0) {
        h->alive[id] = 0;
        assert_int_equal(h->timer[id], NONE_TS); /* an ended saga leaves no timer */
    }
}

static void h_start(harness *h, uint64_t id, int64_t ts, const char *data)
{
    h->alive[id] = 1;
    int rc = sli_saga_on_start(&h->core, h_st(h, id), id, ts, data, (uint32_t)strlen(data));
    h_ended(h, id, rc);
}

/* Deliver reply r at ts to a running saga; returns why (0 taken). */
static int h_reply(harness *h, int64_t ts, const sl_saga_reply *r)
{
    if (!h->alive[r->saga_id]) return SL_SAGA_WHY_FINISHED;
    int why = -1;
    int rc = sli_saga_on_reply(&h->core, h_st(h, r->saga_id), ts, r, &why);
    h_ended(h, r->saga_id, rc);
    assert_true(why >= 0);
    return why;
}

/* Run until nothing is pending. */
static void h_run(harness *h)
{
    while (h->hn) {
        ev e = heap_pop(h);
        if (e.type == 1) {
            if (!h->alive[e.id] || h->timer[e.id] != e.ts) continue; /* deleted */
            h->timer[e.id] = NONE_TS;
            int rc = sli_saga_on_timer(&h->core, h_st(h, e.id), e.id, e.ts, e.ts);
            h_ended(h, e.id, rc);
        } else if (h_reply(h, e.ts, &e.r)) {
            h->stale++;
        }
    }
}

/* --- the table of paths ------------------------------------------------------------ */

typedef struct path_case {
    const char *name;
    int pivot; /* use steps_pivot */
    const char *data;
    script sc[4];
    int n_sc;
    const char *trace;
    int outcome, cause, step, failed_step, done, undone;
} path_case;

#define A   SL_SAGA_ACTION
#define C   SL_SAGA_COMPENSATION
#define RT  SL_SAGA_RETRYABLE
#define FI  SL_SAGA_FINAL
#define OK_ SL_SAGA_COMPLETED
#define CMP SL_SAGA_COMPENSATED
#define FTC SL_SAGA_FAILED_TO_COMPENSATE
#define FFW SL_SAGA_FAILED_FORWARD
#define NOS 0xFFFF

static const path_case paths[] = {
    {"success", 0, "o", {{0}}, 0, "A0.1 A1.1 A2.1", OK_, 0, 2, NOS, 3, 0},
    {"final at step 0",
     0,
     "o",
     {{0, A, 1, 1, FI}},
     1,
     "A0.1",
     CMP,
     SL_SAGA_CAUSE_FINAL,
     0,
     0,
     0,
     0},
    {"final at step 1",
     0,
     "o",
     {{1, A, 1, 1, FI}},
     1,
     "A0.1 A1.1 C0.1",
     CMP,
     SL_SAGA_CAUSE_FINAL,
     1,
     1,
     1,
     1},
    {"final at step 2",
     0,
     "o",
     {{2, A, 1, 1, FI}},
     1,
     "A0.1 A1.1 A2.1 C1.1 C0.1",
     CMP,
     SL_SAGA_CAUSE_FINAL,
     2,
     2,
     2,
     2},
    /* a timeout of the last attempt leaves the step in doubt: it is compensated too */
    {"timeout at step 0",
     0,
     "o",
     {{0, A, 1, 9, SILENT}},
     1,
     "A0.1 A0.2 A0.3 C0.1",
     CMP,
     SL_SAGA_CAUSE_TIMEOUT,
     0,
     0,
     0,
     1},
    {"timeout at step 1",
     0,
     "o",
     {{1, A, 1, 9, SILENT}},
     1,
     "A0.1 A1.1 A1.2 A1.3 C1.1 C0.1",
     CMP,
     SL_SAGA_CAUSE_TIMEOUT,
     1,
     1,
     1,
     2},
    {"timeout at step 2",
     0,
     "o",
     {{2, A, 1, 9, SILENT}},
     1,
     "A0.1 A1.1 A2.1 A2.2 A2.3 C2.1 C1.1 C0.1",
     CMP,
     SL_SAGA_CAUSE_TIMEOUT,
     2,
     2,
     2,
     3},
    {"retries then success",
     0,
     "o",
     {{1, A, 1, 2, RT}},
     1,
     "A0.1 A1.1 A1.2 A1.3 A2.1",
     OK_,
     0,
     2,
     NOS,
     3,
     0},
    {"timeout then success",
     0,
     "o",
     {{2, A, 1, 1, SILENT}, {0, A, 1, 1, RT}},
     2,
     "A0.1 A0.2 A1.1 A2.1 A2.2",
     OK_,
     0,
     2,
     NOS,
     3,
     0},
    {"retries used up at step 1",
     0,
     "o",
     {{1, A, 1, 9, RT}},
     1,
     "A0.1 A1.1 A1.2 A1.3 C0.1",
     CMP,
     SL_SAGA_CAUSE_RETRIES,
     1,
     1,
     1,
     1},
    {"compensation retried then done",
     0,
     "o",
     {{2, A, 1, 1, FI}, {1, C, 1, 1, RT}},
     2,
     "A0.1 A1.1 A2.1 C1.1 C1.2 C0.1",
     CMP,
     SL_SAGA_CAUSE_FINAL,
     2,
     2,
     2,
     2},
    {"compensation timeout then done",
     0,
     "o",
     {{2, A, 1, 1, FI}, {0, C, 1, 1, SILENT}},
     2,
     "A0.1 A1.1 A2.1 C1.1 C0.1 C0.2",
     CMP,
     SL_SAGA_CAUSE_FINAL,
     2,
     2,
     2,
     2},
    {"compensation retries used up",
     0,
     "o",
     {{2, A, 1, 1, FI}, {1, C, 1, 9, RT}},
     2,
     "A0.1 A1.1 A2.1 C1.1 C1.2",
     FTC,
     SL_SAGA_CAUSE_RETRIES,
     1,
     2,
     2,
     0},
    {"compensation final",
     0,
     "o",
     {{2, A, 1, 1, FI}, {0, C, 1, 1, FI}},
     2,
     "A0.1 A1.1 A2.1 C1.1 C0.1",
     FTC,
     SL_SAGA_CAUSE_FINAL,
     0,
     2,
     2,
     1},
    {"compensation timeouts",
     0,
     "o",
     {{1, A, 1, 1, FI}, {0, C, 1, 9, SILENT}},
     2,
     "A0.1 A1.1 C0.1 C0.2",
     FTC,
     SL_SAGA_CAUSE_TIMEOUT,
     0,
     1,
     1,
     0},
    {"action builder fails",
     0,
     "bad1",
     {{0}},
     0,
     "A0.1 C0.1",
     CMP,
     SL_SAGA_CAUSE_BUILDER,
     1,
     1,
     1,
     1},
    {"compensation builder fails",
     0,
     "badc0",
     {{1, A, 1, 1, FI}},
     1,
     "A0.1 A1.1",
     FTC,
     SL_SAGA_CAUSE_BUILDER,
     0,
     1,
     1,
     0},
    /* pivots: charge has no compensation */
    {"pivot: success", 1, "o", {{0}}, 0, "A0.1 A1.1 A2.1", OK_, 0, 2, NOS, 3, 0},
    {"pivot: final at the pivot",
     1,
     "o",
     {{1, A, 1, 1, FI}},
     1,
     "A0.1 A1.1 C0.1",
     CMP,
     SL_SAGA_CAUSE_FINAL,
     1,
     1,
     1,
     1},
    {"pivot: retries used up at the pivot",
     1,
     "o",
     {{1, A, 1, 9, RT}},
     1,
     "A0.1 A1.1 A1.2 A1.3 C0.1",
     CMP,
     SL_SAGA_CAUSE_RETRIES,
     1,
     1,
     1,
     1},
    {"pivot: timeouts retried past the limit",
     1,
     "o",
     {{1, A, 1, 5, SILENT}},
     1,
     "A0.1 A1.1 A1.2 A1.3 A1.4 A1.5 A1.6 A2.1",
     OK_,
     0,
     2,
     NOS,
     3,
     0},
    {"pivot: in doubt, then a definite no",
     1,
     "o",
     {{1, A, 1, 3, SILENT}, {1, A, 4, 4, FI}},
     2,
     "A0.1 A1.1 A1.2 A1.3 A1.4 C0.1",
     CMP,
     SL_SAGA_CAUSE_FINAL,
     1,
     1,
     1,
     1},
    {"pivot: forward retries without limit",
     1,
     "o",
     {{2, A, 1, 6, RT}},
     1,
     "A0.1 A1.1 A2.1 A2.2 A2.3 A2.4 A2.5 A2.6 A2.7",
     OK_,
     0,
     2,
     NOS,
     3,
     0},
    {"pivot: forward timeouts without limit",
     1,
     "o",
     {{2, A, 1, 4, SILENT}},
     1,
     "A0.1 A1.1 A2.1 A2.2 A2.3 A2.4 A2.5",
     OK_,
     0,
     2,
     NOS,
     3,
     0},
    {"pivot: final after the pivot",
     1,
     "o",
     {{2, A, 1, 1, FI}},
     1,
     "A0.1 A1.1 A2.1",
     FFW,
     SL_SAGA_CAUSE_FINAL,
     2,
     2,
     2,
     0},
};

static void test_paths(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const path_case *pc = &paths[i];
        sl_saga_def d = def_of(pc->pivot ? steps_pivot : steps_plain);
        harness h;
        h_init(&h, &d, 1);
        h.sc = pc->sc;
        h.n_sc = pc->n_sc;
        h_start(&h, 0, 1000, pc->data);
        h_run(&h);
        char tr[256];
        snprintf(tr, sizeof(tr), "%.*s", (int)h.trace[0].len, (const char *)h.trace[0].ptr);
        if (strcmp(tr, pc->trace) != 0 || h.n_out[0] != 1 || h.out[0].outcome != pc->outcome ||
            h.out[0].cause != pc->cause || h.out[0].step != pc->step ||
            h.out[0].failed_step != pc->failed_step || h.out[0].done != pc->done ||
            h.out[0].undone != pc->undone)
            fail_msg("case '%s': trace '%s' (want '%s'), outcomes %d, outcome %s cause %s step %u "
                     "failed %u done %u undone %u (want %s %s %d %d %d %d)",
                     pc->name, tr, pc->trace, h.n_out[0], sl_saga_outcome_name(h.out[0].outcome),
                     sl_saga_cause_name(h.out[0].cause), h.out[0].step, h.out[0].failed_step,
                     h.out[0].done, h.out[0].undone, sl_saga_outcome_name(pc->outcome),
                     sl_saga_cause_name(pc->cause), pc->step, pc->failed_step, pc->done,
                     pc->undone);
        assert_int_equal(h.alive[0], 0);
        h_free(&h);
    }
}

/* Backoffs: 10, then x2, capped at 15; the retry goes out when the backoff
 * timer fires, not before. */
static void test_backoff_times(void **state)
{
    (void)state;
    sl_saga_def d = def_of(steps_plain);
    harness h;
    h_init(&h, &d, 1);
    script sc[1] = {{0, A, 1, 9, RT}};
    h.sc = sc;
    h.n_sc = 1;
    h_start(&h, 0, 0, "o");
    /* reply 1 (retryable) at 1 + latency; the retry is due 10 later */
    assert_int_equal(h.timer[0], 100); /* timeout of attempt 1 */
    ev e = heap_pop(&h);               /* the reply */
    assert_int_equal(e.type, 0);
    assert_int_equal(h_reply(&h, e.ts, &e.r), 0);
    assert_int_equal(h.timer[0], e.ts + 10);
    assert_int_equal(h_st(&h, 0)->phase, SLI_SAGA_ACT_BACKOFF);
    /* a reply now (the same one again) is stale: the saga waits */
    assert_int_equal(h_reply(&h, e.ts + 1, &e.r), SL_SAGA_WHY_STALE);
    int64_t t2 = h.timer[0];
    ev t = heap_pop(&h); /* the old timeout is stale now; skip to the backoff timer */
    while (t.type != 1 || t.ts != t2) t = heap_pop(&h);
    h.timer[0] = NONE_TS;
    assert_int_equal(sli_saga_on_timer(&h.core, h_st(&h, 0), 0, t.ts, t.ts), 0);
    assert_int_equal(h_st(&h, 0)->attempt, 2);
    e = heap_pop(&h);
    assert_int_equal(h_reply(&h, e.ts, &e.r), 0);
    assert_int_equal(h.timer[0], e.ts + 15); /* 10 * 2 = 20, capped at 15 */
    h_run(&h);
    assert_int_equal(h.out[0].outcome, SL_SAGA_COMPENSATED);
    h_free(&h);
}

/* Stale, duplicated, reordered and late replies never change a saga. */
static void test_stale_replies(void **state)
{
    (void)state;
    sl_saga_def d = def_of(steps_plain);
    harness h;
    h_init(&h, &d, 2);
    script sc[1] = {{0, A, 1, 9, SILENT}}; /* we deliver replies by hand */
    h.sc = sc;
    h.n_sc = 1;
    h_start(&h, 0, 0, "o");
    sli_saga_st before;
    memcpy(&before, h_st(&h, 0), sizeof(before));
    sl_saga_reply r = {.saga_id = 0, .step = 0, .kind = A, .status = SL_SAGA_SUCCESS, .attempt = 2};
    assert_int_equal(h_reply(&h, 5, &r), SL_SAGA_WHY_STALE); /* a later attempt */
    r.attempt = 0;
    assert_int_equal(h_reply(&h, 5, &r), SL_SAGA_WHY_STALE); /* an earlier one */
    r.attempt = 1;
    r.step = 1;
    assert_int_equal(h_reply(&h, 5, &r), SL_SAGA_WHY_STALE); /* another step */
    r.step = 0;
    r.kind = C;
    assert_int_equal(h_reply(&h, 5, &r), SL_SAGA_WHY_STALE); /* another kind */
    assert_memory_equal(&before, h_st(&h, 0), sizeof(before));
    assert_int_equal(h.commands, 1);
    r.kind = A;
    assert_int_equal(h_reply(&h, 5, &r), 0); /* the one awaited */
    assert_int_equal(h_st(&h, 0)->step, 1);
    assert_int_equal(h.commands, 2);
    memcpy(&before, h_st(&h, 0), sizeof(before));
    assert_int_equal(h_reply(&h, 6, &r), SL_SAGA_WHY_STALE); /* the same again */
    r.status = SL_SAGA_FINAL;
    assert_int_equal(h_reply(&h, 6, &r), SL_SAGA_WHY_STALE); /* a contradicting duplicate */
    assert_memory_equal(&before, h_st(&h, 0), sizeof(before));
    /* event time: a reply at or past the deadline counts as after the
     * timeout (attempt 1 of step 1 is due at 5 + 100) */
    assert_int_equal(h.timer[0], 105);
    r.step = 1;
    r.status = SL_SAGA_SUCCESS;
    assert_int_equal(h_reply(&h, 105, &r), SL_SAGA_WHY_STALE);
    assert_int_equal(h_st(&h, 0)->step, 1);
    assert_int_equal(h_st(&h, 0)->attempt, 2);
    assert_int_equal(h_st(&h, 0)->phase, SLI_SAGA_ACT_BACKOFF);
    assert_int_equal(h.timer[0], 115);
    /* a saga that has not started: the operator diverts it (see the
     * pipeline test); a finished one likewise. */
    h_free(&h);
}

/* The same reply stream delivered in two orders gives the same outcome when
 * only the awaited reply counts. */
static void test_reordered_duplicates(void **state)
{
    (void)state;
    sl_saga_def d = def_of(steps_plain);
    harness h;
    h_init(&h, &d, 1);
    script sc[1] = {{0, A, 1, 9, SILENT}};
    h.sc = sc;
    h.n_sc = 1;
    h_start(&h, 0, 0, "o");
    sl_saga_reply r0 = {0, 0, A, SL_SAGA_SUCCESS, 1, {NULL, 0}};
    sl_saga_reply r1 = {0, 1, A, SL_SAGA_SUCCESS, 1, {NULL, 0}};
    sl_saga_reply r2 = {0, 2, A, SL_SAGA_SUCCESS, 1, {NULL, 0}};
    /* step 1's reply overtakes step 0's: stale, and step 1 never ran */
    assert_int_equal(h_reply(&h, 1, &r1), SL_SAGA_WHY_STALE);
    assert_int_equal(h_reply(&h, 2, &r0), 0);
    assert_int_equal(h_reply(&h, 3, &r0), SL_SAGA_WHY_STALE);
    assert_int_equal(h_reply(&h, 4, &r1), 0);
    assert_int_equal(h_reply(&h, 5, &r2), 0);
    assert_int_equal(h_reply(&h, 6, &r2), SL_SAGA_WHY_FINISHED);
    assert_int_equal(h.out[0].outcome, SL_SAGA_COMPLETED);
    h_free(&h);
}

static void test_def_checks(void **state)
{
    (void)state;
    sl_saga_def d = def_of(steps_plain);
    assert_null(sli_saga_def_invalid(&d));
    d.version = 99;
    assert_non_null(sli_saga_def_invalid(&d));
    d = def_of(steps_plain);
    d.n_steps = 0;
    assert_non_null(sli_saga_def_invalid(&d));
    sl_saga_step bad[1] = {STEP("x", act0, comp0)};
    bad[0].timeout_ms = 0;
    d = def_of(bad);
    d.n_steps = 1;
    assert_string_equal(sli_saga_def_invalid(&d), "has a step whose timeout_ms is not > 0");
    bad[0] = (sl_saga_step)STEP("x", NULL, comp0);
    assert_non_null(sli_saga_def_invalid(&d));
    bad[0] = (sl_saga_step)STEP("x", act0, comp0);
    bad[0].retry.backoff_ms = -1;
    assert_non_null(sli_saga_def_invalid(&d));
    bad[0] = (sl_saga_step)STEP("x", act0, comp0);
    d.time = 7;
    assert_non_null(sli_saga_def_invalid(&d));
    /* record readers refuse what is not one */
    uint8_t junk[32] = {0};
    sl_bytes b = {junk, 10};
    sl_saga_reply r;
    sl_saga_command c;
    sl_saga_outcome o;
    sl_saga_diverted_rec dv;
    assert_int_equal(sl_saga_reply_read(b, &r), SL_ECORRUPT);
    assert_int_equal(sl_saga_command_read(b, &c), SL_ECORRUPT);
    b.len = 24;
    assert_int_equal(sl_saga_outcome_read(b, &o), SL_ECORRUPT); /* outcome 0 */
    assert_int_equal(sl_saga_diverted_read(b, &dv), SL_ECORRUPT);
    junk[11] = 3;
    b.len = 16;
    assert_int_equal(sl_saga_reply_read(b, &r), SL_ECORRUPT); /* status 3 */
    /* writer and reader agree */
    uint8_t buf[64];
    sl_saga_reply w = {0x0102030405060708ull, 513, C, SL_SAGA_RETRYABLE, 70000, {"why", 3}};
    sl_saga_reply_write(buf, &w);
    b.ptr = buf;
    b.len = sl_saga_reply_size(3);
    assert_int_equal(sl_saga_reply_read(b, &r), 0);
    assert_true(r.saga_id == w.saga_id && r.step == 513 && r.kind == C &&
                r.status == SL_SAGA_RETRYABLE && r.attempt == 70000 && r.reason.len == 3);
    assert_int_equal(buf[0], 0x08); /* little-endian */
}

/* --- randomized, against the participant model -------------------------------------- */

static void check_invariants(harness *h, const sl_saga_def *d)
{
    for (uint64_t id = 0; id < h->n; id++) {
        if (h->n_out[id] != 1) fail_msg("saga %" PRIu64 ": %d outcomes", id, h->n_out[id]);
        assert_int_equal(h->alive[id], 0);
        assert_int_equal(h->timer[id], NONE_TS);
        const sl_saga_outcome *o = &h->out[id];
        const ledger_e *L = &h->ledger[id * 3];
        for (int k = 0; k < 3; k++) { /* no key applied twice */
            assert_true(L[k].act_count <= 1);
            assert_true(L[k].comp_count <= 1);
        }
        /* the compensations issued: first attempts in the trace */
        int comps[8], nc = 0;
        const char *t = (const char *)h->trace[id].ptr;
        size_t tl = h->trace[id].len;
        for (size_t i = 0; i + 3 < tl + 1; i++)
            if (t[i] == 'C' && (i == 0 || t[i - 1] == ' ') && t[i + 2] == '.' && t[i + 3] == '1' &&
                (i + 4 == tl || t[i + 4] == ' '))
                comps[nc++] = t[i + 1] - '0';
        switch (o->outcome) {
        case SL_SAGA_COMPLETED:
            for (int k = 0; k < 3; k++) assert_true(L[k].act_applied && !L[k].comp_applied);
            assert_int_equal(nc, 0);
            assert_int_equal(o->done, 3);
            break;
        case SL_SAGA_COMPENSATED:
            /* nothing kept: every applied action was compensated */
            for (int k = 0; k < 3; k++)
                if (L[k].act_applied && !L[k].comp_applied)
                    fail_msg("saga %" PRIu64 ": step %d kept after compensated (%.*s)", id, k,
                             (int)tl, t);
            /* every completed step compensated, in reverse order */
            assert_int_equal(nc, o->undone);
            assert_true(o->undone >= o->done);
            for (int i = 0; i < nc; i++) assert_int_equal(comps[i], nc - 1 - i);
            break;
        case SL_SAGA_FAILED_TO_COMPENSATE:
            assert_true(o->step < 3);
            if (o->cause != SL_SAGA_CAUSE_TIMEOUT) /* a timed-out one may be applied */
                assert_false(L[o->step].comp_applied);
            for (int i = 1; i < nc; i++) assert_true(comps[i] == comps[i - 1] - 1);
            break;
        default: fail_msg("saga %" PRIu64 ": outcome %s", id, sl_saga_outcome_name(o->outcome));
        }
        if (h->core.pivot >= 0 && o->outcome != SL_SAGA_COMPLETED) /* never undone past a pivot */
            for (int i = 0; i < nc; i++) assert_true(comps[i] < h->core.pivot);
    }
    (void)d;
}

static void test_randomized(void **state)
{
    (void)state;
    const double rates[][3] = {{0, 0, 0}, {0.1, 0.05, 0.2}, {0.3, 0.1, 0.3}, {0.5, 0.3, 0.5}};
    size_t totals[5] = {0};
    for (int piv = 0; piv < 2; piv++)
        for (uint64_t seed = 1; seed <= 6; seed++)
            for (size_t ri = 0; ri < sizeof(rates) / sizeof(rates[0]); ri++) {
                sl_saga_def d = def_of(piv ? steps_pivot : steps_plain);
                harness h;
                const size_t n = 400;
                h_init(&h, &d, n);
                h.seed = seed * 7919 + ri;
                h.fail = rates[ri][0];
                h.timeout = rates[ri][1];
                h.dup = rates[ri][2];
                /* starts interleave with the replies of earlier sagas */
                for (uint64_t id = 0; id < n; id++) {
                    int64_t t0 = (int64_t)id * 3;
                    while (h.hn && h.heap[0].ts < t0) {
                        ev e = heap_pop(&h);
                        if (e.type == 1) {
                            if (!h.alive[e.id] || h.timer[e.id] != e.ts) continue;
                            h.timer[e.id] = NONE_TS;
                            h_ended(&h, e.id,
                                    sli_saga_on_timer(&h.core, h_st(&h, e.id), e.id, e.ts, e.ts));
                        } else if (h_reply(&h, e.ts, &e.r)) {
                            h.stale++;
                        }
                    }
                    h_start(&h, id, t0, "o");
                }
                h_run(&h);
                check_invariants(&h, &d);
                for (size_t id = 0; id < n; id++) totals[h.out[id].outcome]++;
                h_free(&h);
            }
    /* the faults reached every ending (a test that can fail: not all completed) */
    assert_true(totals[SL_SAGA_COMPLETED] > 0);
    assert_true(totals[SL_SAGA_COMPENSATED] > 0);
    assert_true(totals[SL_SAGA_FAILED_TO_COMPENSATE] > 0);
    assert_int_equal(totals[SL_SAGA_FAILED_FORWARD], 0);
}

/* --- pipelines ------------------------------------------------------------------------ */

/* A bounded source over records in memory, with positions (an index). */
typedef struct vec {
    const sl_bytes *recs;
    const int64_t *ts;
    size_t n;
} vec;
typedef struct vec_reader {
    const vec *v;
    uint64_t pos;
} vec_reader;

static int vec_open(sl_ctx *ctx, const sl_split *split, void **reader)
{
    vec_reader *r = calloc(1, sizeof(*r));
    if (!r) return SL_ENOMEM;
    r->v = sl_ctx_conf(ctx);
    *reader = r;
    return 0;
}
static int vec_poll(sl_ctx *ctx, void *reader, uint32_t max)
{
    vec_reader *r = reader;
    for (uint32_t k = 0; k < max && r->pos < r->v->n; k++, r->pos++)
        if (sl_emit_copy(ctx, r->v->ts[r->pos], 0, r->v->recs[r->pos].ptr, r->v->recs[r->pos].len))
            return sl_ctx_error(ctx);
    return r->pos < r->v->n ? SL_POLL_MORE : SL_POLL_END;
}
static int pos_write(sl_ctx *ctx, void *reader, sl_buf *out)
{
    return sl_buf_append(out, &((vec_reader *)reader)->pos, 8);
}
static int pos_seek(sl_ctx *ctx, void *reader, const void *pos, size_t len)
{
    if (len != 8) return SL_ECORRUPT;
    memcpy(&((vec_reader *)reader)->pos, pos, 8);
    return 0;
}
static const sl_source vec_source = {.version = SL_SOURCE_VERSION,
                                     .kind = "vec",
                                     .open = vec_open,
                                     .poll = vec_poll,
                                     .position = pos_write,
                                     .seek = pos_seek,
                                     .close = free};

static sl_stream *vec_node(sl_pipeline *p, const char *name, const vec *v)
{
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1};
    return sl_pipeline_source(p, name, &vec_source, (void *)v, 0, &wm);
}

typedef struct rec_store {
    uint8_t buf[64][40];
    sl_bytes b[64];
    int64_t ts[64];
    size_t n;
} rec_store;
static void store_add(rec_store *s, int64_t ts, const void *p, uint32_t len)
{
    assert_true(s->n < 64 && len <= 40);
    memcpy(s->buf[s->n], p, len);
    s->b[s->n].ptr = s->buf[s->n];
    s->b[s->n].len = len;
    s->ts[s->n++] = ts;
}
static void store_start(rec_store *s, int64_t ts, uint64_t id, const char *data)
{
    uint8_t b[40];
    uint32_t n = (uint32_t)strlen(data);
    sl_saga_start_write(b, id, data, n);
    store_add(s, ts, b, sl_saga_start_size(n));
}

/* Spans of a traced run (sluice/trace.h), as the exporter got them. */
typedef struct tspan {
    char name[SL_SPAN_NAME_MAX], msg[SL_SPAN_MSG_MAX];
    uint8_t trace[16], id[8], parent[8];
    int64_t start, end, saga;
    int status;
} tspan;
static pthread_mutex_t tspans_lock = PTHREAD_MUTEX_INITIALIZER;
static tspan tspans[256];
static size_t n_tspans;

static int tspans_export(void *ud, const sl_trace_batch *b)
{
    (void)ud;
    pthread_mutex_lock(&tspans_lock);
    for (size_t i = 0; i < b->n; i++) {
        const sl_span *x = &b->spans[i];
        assert_true(n_tspans < 256);
        tspan *t = &tspans[n_tspans++];
        snprintf(t->name, sizeof(t->name), "%s", x->name);
        snprintf(t->msg, sizeof(t->msg), "%s", x->status_msg);
        memcpy(t->trace, x->trace_id, 16);
        memcpy(t->id, x->span_id, 8);
        memcpy(t->parent, x->parent_span_id, 8);
        t->start = x->start_ns;
        t->end = x->end_ns;
        t->status = x->status;
        t->saga = -1;
        for (int k = 0; k < x->n_attrs; k++)
            if (!strcmp(x->attrs[k].key, "saga.id")) t->saga = x->attrs[k].v.i;
    }
    pthread_mutex_unlock(&tspans_lock);
    return 0;
}

/* The spans of the wiring run: sagas 1..6 each a trace of a root "saga"
 * (ERROR: failed to compensate) and five attempts, every one timed out
 * (ERROR "timeout"), children of the root and inside its time; saga 10 a
 * root alone (its builder failed: no attempt). */
static void check_wiring_spans(void)
{
    static const uint8_t zero[8];
    assert_int_equal(n_tspans, 6 * 6 + 1);
    for (size_t i = 0; i < n_tspans; i++) {
        const tspan *r = &tspans[i];
        if (strcmp(r->name, "saga") != 0) continue;
        assert_memory_equal(r->parent, zero, 8);
        int kids = 0;
        for (size_t k = 0; k < n_tspans; k++) {
            const tspan *c = &tspans[k];
            if (k == i || memcmp(c->trace, r->trace, 16)) continue;
            kids++;
            assert_memory_equal(c->parent, r->id, 8);
            assert_memory_not_equal(c->id, r->id, 8);
            assert_int_equal(c->saga, r->saga);
            assert_int_equal(c->status, SL_SPAN_STATUS_ERROR);
            assert_string_equal(c->msg, "timeout");
            assert_true(c->start >= r->start && c->end <= r->end && c->start <= c->end);
        }
        if (r->saga == 10) {
            assert_int_equal(kids, 0);
            assert_int_equal(r->status, SL_SPAN_STATUS_UNSET);
        } else {
            assert_int_equal(kids, 5);
            assert_int_equal(r->status, SL_SPAN_STATUS_ERROR);
        }
    }
}

/* Silent participants: every saga times out at every step when the input
 * ends (the watermark goes to +inf and fires the timers in order). The
 * diverted port gets the malformed, too large, duplicate and unknown.
 * traced: with a tracer, the spans are checked too (and their ids are the
 * same from run to run: derived from the saga). */
static void wiring_run_traced(int credits, int par, int traced);
static void wiring_run(int credits, int par)
{
    wiring_run_traced(credits, par, 0);
}
static void wiring_run_traced(int credits, int par, int traced)
{
    static rec_store st, rp;
    memset(&st, 0, sizeof(st));
    memset(&rp, 0, sizeof(rp));
    for (uint64_t id = 1; id <= 5; id++) store_start(&st, (int64_t)id, id, "o");
    store_start(&st, 6, 3, "o");                  /* duplicate */
    store_start(&st, 7, 9, "0123456789abcdefXX"); /* 18 > max_data 16 */
    store_add(&st, 8, "short", 5);                /* malformed */
    store_start(&st, 9, 6, "0123456789abcdef");   /* exactly max_data: runs */
    store_start(&st, 10, 10, "bad0");             /* ends at once: step 0's builder fails */
    store_start(&st, 11, 10, "o");                /* a duplicate of a finished saga */
    sl_saga_reply r = {777, 0, A, SL_SAGA_SUCCESS, 1, {NULL, 0}};
    uint8_t rb[SL_SAGA_REPLY_HDR];
    sl_saga_reply_write(rb, &r);
    store_add(&rp, 2, rb, sizeof(rb)); /* unknown saga */
    r.step = 9;
    r.saga_id = 778;
    sl_saga_reply_write(rb, &r);
    store_add(&rp, 3, rb, sizeof(rb)); /* step out of range */
    vec vs = {st.b, st.ts, st.n}, vr = {rp.b, rp.ts, rp.n};

    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_credits(p, credits);
    if (traced) {
        n_tspans = 0;
        sl_trace_exporter ex = {
            .version = SL_TRACE_EXPORTER_VERSION, .kind = "test", .export = tspans_export};
        sl_tracer_conf tc = {.service_name = "test", .sample_ratio = 1.0};
        sl_tracer *tr = NULL;
        assert_int_equal(sl_tracer_new(&tc, &ex, &tr, NULL, 0), 0);
        assert_int_equal(sl_pipeline_set_tracer(p, tr), 0);
    }
    sl_saga_def d = def_of(steps_plain);
    sl_stream *cmds =
        sl_stream_saga(vec_node(p, "starts", &vs), vec_node(p, "replies", &vr), "saga", &d);
    cmds = sl_stream_parallelism(cmds, par);
    sl_collector *cc = sl_collector_new(), *oc = sl_collector_new(), *dc = sl_collector_new();
    sl_stream_sink(cmds, "cmds", &sl_sink_collect, cc);
    sl_stream_sink(sl_stream_saga_outcomes(cmds), "outcomes", &sl_sink_collect, oc);
    sl_stream_sink(sl_stream_saga_diverted(cmds), "diverted", &sl_sink_collect, dc);
    int rc = sl_pipeline_run(p);
    if (rc) fail_msg("run: %s", sl_pipeline_errmsg(p));
    /* 6 sagas x (A0.1 A0.2 A0.3 C0.1 C0.2); saga 10 sends nothing */
    assert_int_equal(sl_collector_count(cc), 30);
    assert_int_equal(sl_collector_count(oc), 7);
    int seen[11] = {0};
    for (size_t i = 0; i < 7; i++) {
        sl_saga_outcome o;
        assert_int_equal(sl_saga_outcome_read(sl_collector_get(oc, i, NULL), &o), 0);
        assert_true(o.saga_id >= 1 && o.saga_id <= 10);
        seen[o.saga_id]++;
        if (o.saga_id == 10) {
            assert_int_equal(o.outcome, SL_SAGA_COMPENSATED);
            assert_int_equal(o.cause, SL_SAGA_CAUSE_BUILDER);
            assert_int_equal(o.done, 0);
            continue;
        }
        assert_int_equal(o.outcome, SL_SAGA_FAILED_TO_COMPENSATE);
        assert_int_equal(o.cause, SL_SAGA_CAUSE_TIMEOUT);
        assert_int_equal(o.step, 0);
        assert_int_equal(o.attempt, 2);
        assert_int_equal(o.undone, 0);
    }
    for (int i = 1; i <= 6; i++) assert_int_equal(seen[i], 1);
    assert_int_equal(seen[10], 1);
    /* the commands of one saga, in order: attempts, then compensations,
     * with the builder's bytes */
    int next[11] = {0};
    const char *order[5] = {"A0.1", "A0.2", "A0.3", "C0.1", "C0.2"};
    for (size_t i = 0; i < sl_collector_count(cc); i++) {
        sl_saga_command c;
        assert_int_equal(sl_saga_command_read(sl_collector_get(cc, i, NULL), &c), 0);
        assert_true(c.saga_id >= 1 && c.saga_id <= 6);
        char t[32];
        snprintf(t, sizeof(t), "%c%u.%u", c.kind ? 'C' : 'A', c.step, c.attempt);
        assert_string_equal(t, order[next[c.saga_id]++]);
        assert_int_equal(c.cmd.len, 3 + (c.saga_id == 6 ? 16 : 1));
    }
    int why[8] = {0};
    assert_int_equal(sl_collector_count(dc), 6);
    for (size_t i = 0; i < sl_collector_count(dc); i++) {
        sl_saga_diverted_rec dv;
        assert_int_equal(sl_saga_diverted_read(sl_collector_get(dc, i, NULL), &dv), 0);
        why[dv.why]++;
    }
    assert_int_equal(why[SL_SAGA_WHY_DUPLICATE], 2);
    assert_int_equal(why[SL_SAGA_WHY_TOO_LARGE], 1);
    assert_int_equal(why[SL_SAGA_WHY_MALFORMED], 2);
    assert_int_equal(why[SL_SAGA_WHY_UNKNOWN], 1);
    sl_pipeline_stats ps;
    sl_pipeline_stats_get(p, &ps);
    assert_int_equal(ps.dead_letters, 6);
    sl_collector_free(cc);
    sl_collector_free(oc);
    sl_collector_free(dc);
    sl_pipeline_free(p); /* frees the tracer: every span exported */
    if (traced) check_wiring_spans();
}

static void test_pipeline_wiring(void **state)
{
    (void)state;
    wiring_run(8, 1);
    wiring_run(1, 1); /* one credit */
    wiring_run(1, 2);
    wiring_run(8, 2);
}

static int cmp_tspan(const void *a, const void *b)
{
    return memcmp(((const tspan *)a)->id, ((const tspan *)b)->id, 8);
}

/* A saga is a trace: the wiring run with a tracer, one credit and two
 * instances; the span ids of two runs are the same. */
static void test_pipeline_traces(void **state)
{
    (void)state;
    static tspan first[256];
    wiring_run_traced(1, 2, 1);
    size_t n = n_tspans;
    memcpy(first, tspans, n * sizeof(tspan));
    wiring_run_traced(8, 1, 1);
    assert_int_equal(n_tspans, n);
    qsort(first, n, sizeof(tspan), cmp_tspan);
    qsort(tspans, n, sizeof(tspan), cmp_tspan);
    for (size_t i = 0; i < n; i++) {
        assert_memory_equal(first[i].id, tspans[i].id, 8);
        assert_memory_equal(first[i].trace, tspans[i].trace, 16);
    }
}

/* A bad definition is refused when the node is made. */
static void test_pipeline_refuses(void **state)
{
    (void)state;
    static rec_store st;
    vec v = {st.b, st.ts, 0};
    sl_pipeline *p = sl_pipeline_new();
    sl_saga_def d = def_of(steps_plain);
    d.n_steps = 0;
    assert_null(sl_stream_saga(vec_node(p, "s", &v), vec_node(p, "r", &v), "saga", &d));
    assert_int_equal(sl_pipeline_run(p), SL_EINVAL);
    assert_non_null(strstr(sl_pipeline_errmsg(p), "saga 'saga': the definition needs"));
    sl_pipeline_free(p);
}

/* --- the closed loop: commands -> participants -> reply log -> replies ------------------- */

#define BUS_N 300

typedef struct bus {
    pthread_mutex_t mu;
    uint64_t seed;
    double fail;
    size_t n;         /* sagas */
    ledger_e *ledger; /* n * 3 */
    uint8_t (*log)[SL_SAGA_REPLY_HDR];
    int64_t *log_ts;
    size_t nlog, cap;
    int64_t max_ts, wm_idle;
    sl_saga_outcome *out;
    int *n_out;
    size_t total, cancel_at;
    sl_pipeline *p;
    int twice;  /* an outcome came twice */
    int silent; /* participants never answer */
} bus;

static int bus_decide(bus *b, const sl_saga_command *c)
{
    ledger_e *L = &b->ledger[c->saga_id * 3 + c->step];
    if (c->kind == A && L->act_applied) return SL_SAGA_SUCCESS;
    if (c->kind == C && L->comp_applied) return SL_SAGA_SUCCESS;
    double u = unit(b->seed, c->saga_id, c->step, c->kind, c->attempt, 3);
    int d = u < b->fail / 2 ? SL_SAGA_RETRYABLE : u < b->fail ? SL_SAGA_FINAL : SL_SAGA_SUCCESS;
    if (d == SL_SAGA_SUCCESS) {
        if (c->kind == A)
            L->act_applied = 1, L->act_count++;
        else
            L->comp_applied = 1, L->comp_count++;
    }
    return d;
}

static int cmd_sink(sl_ctx *ctx, void *self, sl_batch *in)
{
    bus *b = sl_ctx_conf(ctx);
    pthread_mutex_lock(&b->mu);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_saga_command c;
        if (sl_saga_command_read(sl_batch_bytes(in, i), &c) || c.saga_id >= b->n) {
            pthread_mutex_unlock(&b->mu);
            return sl_ctx_fail(ctx, SL_ECORRUPT, "bad command");
        }
        if (b->silent) continue;
        int st = bus_decide(b, &c);
        if (b->nlog == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 1024;
            b->log = realloc(b->log, b->cap * SL_SAGA_REPLY_HDR);
            b->log_ts = realloc(b->log_ts, b->cap * sizeof(int64_t));
        }
        sl_saga_reply_to(b->log[b->nlog], &c, st, NULL, 0);
        b->log_ts[b->nlog] = in->ts[i] + 1;
        if (in->ts[i] + 1 > b->max_ts) b->max_ts = in->ts[i] + 1;
        b->nlog++;
    }
    pthread_mutex_unlock(&b->mu);
    return 0;
}
static const sl_operator cmd_sink_op = {
    .version = SL_OPERATOR_VERSION, .kind = "participants", .process = cmd_sink};

static int out_sink(sl_ctx *ctx, void *self, sl_batch *in)
{
    bus *b = sl_ctx_conf(ctx);
    pthread_mutex_lock(&b->mu);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_saga_outcome o;
        if (sl_saga_outcome_read(sl_batch_bytes(in, i), &o) || o.saga_id >= b->n) {
            pthread_mutex_unlock(&b->mu);
            return sl_ctx_fail(ctx, SL_ECORRUPT, "bad outcome");
        }
        if (b->n_out[o.saga_id]++) b->twice = 1;
        o.reason.ptr = NULL;
        b->out[o.saga_id] = o;
        if (++b->total == b->cancel_at && b->p)
            sl_pipeline_cancel(b->p); /* stop with a savepoint */
    }
    pthread_mutex_unlock(&b->mu);
    return 0;
}
static const sl_operator out_sink_op = {
    .version = SL_OPERATOR_VERSION, .kind = "outcomes", .process = out_sink};

static int bus_open(sl_ctx *ctx, const sl_split *split, void **reader)
{
    vec_reader *r = calloc(1, sizeof(*r));
    if (!r) return SL_ENOMEM;
    *reader = r;
    return 0;
}
static int bus_poll(sl_ctx *ctx, void *reader, uint32_t max)
{
    vec_reader *r = reader;
    bus *b = sl_ctx_conf(ctx);
    pthread_mutex_lock(&b->mu);
    uint32_t k = 0;
    for (; k < max && r->pos < b->nlog; k++, r->pos++)
        if (sl_emit_copy(ctx, b->log_ts[r->pos], 0, b->log[r->pos], SL_SAGA_REPLY_HDR)) {
            pthread_mutex_unlock(&b->mu);
            return sl_ctx_error(ctx);
        }
    int done = b->total == b->n;
    /* Idle: virtual time goes on, so that backoff timers set behind the
     * watermark (by replies that came late) fire at its next advance.
     * Timeouts are 10^9 ms away: reaching them takes 10^7 idle polls. */
    if (!k && !done) b->wm_idle = b->wm_idle > b->max_ts ? b->wm_idle + 100 : b->max_ts + 100;
    int64_t wm = b->wm_idle;
    pthread_mutex_unlock(&b->mu);
    if (k) return SL_POLL_MORE;
    if (done) return SL_POLL_END;
    sl_ctx_watermark(ctx, wm);
    return SL_POLL_WAIT;
}
static const sl_source bus_source = {.version = SL_SOURCE_VERSION,
                                     .kind = "bus",
                                     .open = bus_open,
                                     .poll = bus_poll,
                                     .position = pos_write,
                                     .seek = pos_seek,
                                     .close = free};

static sl_saga_step steps_loop[3];

static int loop_time = SL_SAGA_EVENT_TIME;
static int loop_threads = 2;

static int loop_run(bus *b, const vec *starts, int credits, int par, const char *chk)
{
    sl_pipeline *p = sl_pipeline_new();
    b->p = p;
    sl_pipeline_set_threads(p, loop_threads);
    sl_pipeline_set_credits(p, credits);
    sl_saga_def d = def_of(steps_loop);
    d.time = loop_time;
    sl_watermark_conf wm = {.delay = 0};
    sl_stream *rs = sl_pipeline_source(p, "replies", &bus_source, b, 0, &wm);
    sl_stream *cmds = sl_stream_saga(vec_node(p, "starts", starts), rs, "saga", &d);
    cmds = sl_stream_parallelism(cmds, par);
    sl_stream_sink(cmds, "participants", &cmd_sink_op, b);
    sl_stream_sink(sl_stream_saga_outcomes(cmds), "outcomes", &out_sink_op, b);
    if (chk) {
        sl_checkpoint_conf cc = {
            .dir = chk, .interval_ms = 3600000, .guarantee = SL_GUARANTEE_AT_LEAST_ONCE};
        assert_int_equal(sl_pipeline_set_checkpoint(p, &cc), 0);
    }
    int rc = sl_pipeline_run(p);
    if (rc) fail_msg("run: %s", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    b->p = NULL;
    return rc;
}

static bus *bus_new(uint64_t seed, double fail, size_t n)
{
    bus *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    b->n = n;
    b->ledger = calloc(n * 3, sizeof(ledger_e));
    b->out = calloc(n, sizeof(sl_saga_outcome));
    b->n_out = calloc(n, sizeof(int));
    assert_true(b->ledger && b->out && b->n_out);
    pthread_mutex_init(&b->mu, NULL);
    b->seed = seed;
    b->fail = fail;
    return b;
}
static void bus_free(bus *b)
{
    pthread_mutex_destroy(&b->mu);
    free(b->ledger);
    free(b->out);
    free(b->n_out);
    free(b->log);
    free(b->log_ts);
    free(b);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static vec bus_starts_n(size_t n)
{
    static uint8_t(*sb)[16];
    static sl_bytes *sbb;
    static int64_t *sts;
    static size_t have;
    if (have < n) {
        free(sb);
        free(sbb);
        free(sts);
        sb = malloc(n * 16);
        sbb = malloc(n * sizeof(sl_bytes));
        sts = malloc(n * sizeof(int64_t));
        assert_true(sb && sbb && sts);
        have = n;
    }
    for (uint64_t id = 0; id < n; id++) {
        sl_saga_start_write(sb[id], id, "o", 1);
        sbb[id].ptr = sb[id];
        sbb[id].len = sl_saga_start_size(1);
        sts[id] = (int64_t)id;
    }
    vec v = {sbb, sts, n};
    return v;
}
static vec bus_starts(void)
{
    return bus_starts_n(BUS_N);
}

static void loop_case(uint64_t seed, double fail, int credits, int par)
{
    vec starts = bus_starts();
    /* straight through */
    bus *ref = bus_new(seed, fail, BUS_N);
    loop_run(ref, &starts, credits, par, NULL);
    assert_int_equal(ref->total, BUS_N);
    assert_false(ref->twice);
    /* two halves: stop with a savepoint after a third of the outcomes */
    char dir[] = "/tmp/sl_saga_chk_XXXXXX";
    assert_non_null(mkdtemp(dir));
    bus *b = bus_new(seed, fail, BUS_N);
    b->cancel_at = BUS_N / 3;
    loop_run(b, &starts, credits, par, dir);
    size_t first = b->total;
    printf("savepoint case seed %" PRIu64 ": %zu of %d sagas ended before the stop\n", seed, first,
           BUS_N);
    assert_true(first >= BUS_N / 3);
    b->cancel_at = 0;
    loop_run(b, &starts, credits, par, dir);
    assert_int_equal(b->total, BUS_N);
    assert_false(b->twice);
    size_t kinds[5] = {0};
    for (size_t id = 0; id < BUS_N; id++) {
        const sl_saga_outcome *x = &ref->out[id], *y = &b->out[id];
        if (x->outcome != y->outcome || x->cause != y->cause || x->step != y->step ||
            x->done != y->done || x->undone != y->undone || x->attempt != y->attempt)
            fail_msg("saga %zu: %s/%u/%u vs %s/%u/%u after the savepoint", id,
                     sl_saga_outcome_name(x->outcome), x->step, x->done,
                     sl_saga_outcome_name(y->outcome), y->step, y->done);
        kinds[x->outcome]++;
        for (int k = 0; k < 3; k++) {
            const ledger_e *L = &b->ledger[id * 3 + k];
            assert_true(L->act_count <= 1 && L->comp_count <= 1);
            if (y->outcome == SL_SAGA_COMPENSATED) assert_false(L->act_applied && !L->comp_applied);
            if (y->outcome == SL_SAGA_COMPLETED) assert_true(L->act_applied && !L->comp_applied);
        }
    }
    if (fail > 0) assert_true(kinds[SL_SAGA_COMPENSATED] > 0 && kinds[SL_SAGA_COMPLETED] > 0);
    rm_rf(dir);
    bus_free(ref);
    bus_free(b);
}

static void test_pipeline_savepoint(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        steps_loop[i] = steps_plain[i];
        steps_loop[i].timeout_ms = 1000000000; /* timeouts never fire in this loop */
    }
    loop_case(1, 0.3, 8, 1);
    loop_case(2, 0.3, 1, 1); /* one credit */
    loop_case(3, 0.2, 2, 2);
}

/* Finished ids with done_ttl_ms (event time). Sagas "bad0" end at their
 * start (step 0's builder fails), so each start's outcome time is its own.
 * With a TTL of 100 ms a start at or past outcome + 100 finds the id
 * forgotten and runs again, whether or not the timer that removes the entry
 * has fired (the deadline rule), so the counts are fixed for every credit
 * and parallelism; without a TTL every later start is a duplicate. Event
 * time 0 included. Then the memory: 2,000 finished sagas leave their done
 * entries in the final checkpoint without a TTL, none with one (the timers
 * fired at the end of the input). */
static int ttl_run(int64_t ttl, int credits, int par, const vec *vs, const char *chk,
                   size_t *outcomes, size_t *dups, uint64_t *chk_bytes)
{
    static const vec none = {NULL, NULL, 0};
    sl_pipeline *p = sl_pipeline_new();
    sl_pipeline_set_threads(p, 2);
    sl_pipeline_set_credits(p, credits);
    sl_saga_def d = def_of(steps_plain);
    d.done_ttl_ms = ttl;
    sl_stream *cmds =
        sl_stream_saga(vec_node(p, "starts", vs), vec_node(p, "replies", &none), "saga", &d);
    cmds = sl_stream_parallelism(cmds, par);
    sl_collector *cc = sl_collector_new(), *oc = sl_collector_new(), *dc = sl_collector_new();
    sl_stream_sink(cmds, "cmds", &sl_sink_collect, cc); /* "bad0": no command */
    sl_stream_sink(sl_stream_saga_outcomes(cmds), "outcomes", &sl_sink_collect, oc);
    sl_stream_sink(sl_stream_saga_diverted(cmds), "diverted", &sl_sink_collect, dc);
    if (chk) {
        sl_checkpoint_conf ck = {
            .dir = chk, .interval_ms = 3600000, .guarantee = SL_GUARANTEE_AT_LEAST_ONCE};
        assert_int_equal(sl_pipeline_set_checkpoint(p, &ck), 0);
    }
    int rc = sl_pipeline_run(p);
    if (rc) fail_msg("run: %s", sl_pipeline_errmsg(p));
    *outcomes = sl_collector_count(oc);
    *dups = 0;
    for (size_t i = 0; i < sl_collector_count(dc); i++) {
        sl_saga_diverted_rec dv;
        assert_int_equal(sl_saga_diverted_read(sl_collector_get(dc, i, NULL), &dv), 0);
        assert_int_equal(dv.why, SL_SAGA_WHY_DUPLICATE);
        (*dups)++;
    }
    if (chk_bytes) {
        sl_checkpoint_stats cs;
        sl_pipeline_checkpoint_stats(p, &cs);
        assert_true(cs.completed >= 1);
        *chk_bytes = cs.last_bytes;
    }
    assert_int_equal(sl_collector_count(cc), 0);
    sl_collector_free(cc);
    sl_collector_free(oc);
    sl_collector_free(dc);
    sl_pipeline_free(p);
    return 0;
}

static void test_done_ttl(void **state)
{
    (void)state;
    static rec_store st;
    memset(&st, 0, sizeof(st));
    store_start(&st, 0, 12, "bad0");   /* at event time 0: forgotten at 100 */
    store_start(&st, 10, 10, "bad0");  /* forgotten at 110 */
    store_start(&st, 50, 10, "bad0");  /* duplicate */
    store_start(&st, 99, 12, "bad0");  /* duplicate (99 < 100) */
    store_start(&st, 100, 12, "bad0"); /* TTL: runs again (100 >= 100) */
    store_start(&st, 105, 11, "bad0"); /* forgotten at 205 */
    store_start(&st, 111, 11, "bad0"); /* duplicate */
    store_start(&st, 200, 10, "bad0"); /* TTL: runs again */
    store_start(&st, 250, 10, "bad0"); /* duplicate of that run (forgotten at 300) */
    vec vs = {st.b, st.ts, st.n};
    const int cfg[4][2] = {{8, 1}, {1, 1}, {1, 2}, {8, 2}}; /* credits, parallelism */
    for (int k = 0; k < 4; k++) {
        size_t outcomes, dups;
        ttl_run(100, cfg[k][0], cfg[k][1], &vs, NULL, &outcomes, &dups, NULL);
        assert_int_equal(outcomes, 5); /* 12 twice, 10 twice, 11 */
        assert_int_equal(dups, 4);
        ttl_run(0, cfg[k][0], cfg[k][1], &vs, NULL, &outcomes, &dups, NULL);
        assert_int_equal(outcomes, 3); /* each id once */
        assert_int_equal(dups, 6);
    }

    /* the done table empties with a TTL */
    enum { N = 2000 };
    uint8_t(*buf)[SL_SAGA_START_HDR + 4] = calloc(N, sizeof(*buf));
    sl_bytes *b = calloc(N, sizeof(*b));
    int64_t *ts = calloc(N, sizeof(*ts));
    assert_true(buf && b && ts);
    for (size_t i = 0; i < N; i++) {
        sl_saga_start_write(buf[i], 1000 + i, "bad0", 4);
        b[i] = (sl_bytes){buf[i], sl_saga_start_size(4)};
        ts[i] = (int64_t)i;
    }
    vec big = {b, ts, N};
    uint64_t bytes[2];
    for (int t = 0; t < 2; t++) {
        char dir[] = "/tmp/test_saga_ttl.XXXXXX";
        assert_non_null(mkdtemp(dir));
        size_t outcomes, dups;
        ttl_run(t ? 100 : 0, 8, 2, &big, dir, &outcomes, &dups, &bytes[t]);
        assert_int_equal(outcomes, N);
        assert_int_equal(dups, 0);
        rm_rf(dir);
    }
    /* each done entry is at least its 8-byte key and 8-byte value */
    if (bytes[1] + (uint64_t)N * 16 > bytes[0])
        fail_msg("final checkpoint: %" PRIu64 " bytes with a TTL, %" PRIu64 " without", bytes[1],
                 bytes[0]);
    free(buf);
    free(b);
    free(ts);
}

/* Processing time: silent participants, so every attempt times out by the
 * wall clock whatever the timing (the outcome is fixed: step 0 tried 3
 * times, its compensation twice, failed to compensate). Stopped with a
 * savepoint at the first outcome and restarted: the deadlines of the sagas
 * in flight are re-armed from their state (else they would never end). */
static void test_pipeline_processing_time(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        steps_loop[i] = steps_plain[i];
        steps_loop[i].timeout_ms = 20;
    }
    loop_time = SL_SAGA_PROCESSING_TIME;
    vec starts = bus_starts();
    for (int credits = 1; credits <= 8; credits += 7) {
        char dir[] = "/tmp/sl_saga_chk_XXXXXX";
        assert_non_null(mkdtemp(dir));
        bus *b = bus_new(1, 0, BUS_N);
        b->silent = 1;
        b->cancel_at = 1;
        loop_run(b, &starts, credits, 1, dir);
        printf("processing time, credits %d: %zu of %d sagas ended before the stop\n", credits,
               b->total, BUS_N);
        b->cancel_at = 0;
        loop_run(b, &starts, credits, 1, dir);
        assert_int_equal(b->total, BUS_N);
        assert_false(b->twice);
        for (size_t id = 0; id < BUS_N; id++) {
            assert_int_equal(b->out[id].outcome, SL_SAGA_FAILED_TO_COMPENSATE);
            assert_int_equal(b->out[id].cause, SL_SAGA_CAUSE_TIMEOUT);
            assert_int_equal(b->out[id].step, 0);
            assert_int_equal(b->out[id].attempt, 2);
        }
        rm_rf(dir);
        bus_free(b);
    }
    loop_time = SL_SAGA_EVENT_TIME;
}

/* --- measurement (printed, not asserted) ------------------------------------------------- */

static size_t rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    size_t pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%zu %zu", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (size_t)sysconf(_SC_PAGESIZE) / 1024;
}

typedef struct meter {
    size_t cmds;
    sl_timers *timers;
} meter;
static int m_cmd(void *ud, int64_t ts, const void *rec, uint32_t len)
{
    ((meter *)ud)->cmds++;
    return 0;
}
static int m_timer(void *ud, uint64_t id, int64_t ts)
{
    uint8_t k[8];
    sli_saga_put64(k, id);
    return sli_timers_add(((meter *)ud)->timers, ts, sl_hash(k, 8), k, 8);
}
static int m_timer_del(void *ud, uint64_t id, int64_t ts)
{
    uint8_t k[8];
    sli_saga_put64(k, id);
    int rc = sli_timers_delete(((meter *)ud)->timers, ts, sl_hash(k, 8), k, 8);
    return rc < 0 ? rc : 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_measure(void **state)
{
    (void)state;
#ifdef SLUICE_SANITIZED
    const size_t n = 100000, n_loop = 5000;
#else
    const size_t n = 1000000, n_loop = 100000;
#endif
    /* The state as an operator instance keeps it: table "run" (a 40-byte
     * value: 24 + max_data 16) and one pending event-time timer per saga
     * (the engine's timer heap and set, engine/timer.c). */
    sl_saga_def d = def_of(steps_plain);
    meter m = {0, sli_timers_new()};
    assert_non_null(m.timers);
    sli_saga_io io = {&m, m_cmd, m_cmd, m_timer, m_timer_del, NULL};
    sli_saga_core core;
    sli_saga_core_init(&core, &d, &io);
    sl_state *run = sl_state_new(sli_saga_value_size(&core));
    assert_non_null(run);
    size_t r0 = rss_kb();
    for (uint64_t id = 0; id < n; id++) {
        uint8_t k[8];
        sli_saga_put64(k, id);
        sli_saga_st *st = sl_state_get(run, sl_hash(k, 8), k, 8, NULL);
        assert_non_null(st);
        assert_int_equal(sli_saga_on_start(&core, st, id, (int64_t)id, "order-12345678", 14), 0);
    }
    size_t r1 = rss_kb();
    assert_int_equal(sli_timers_count(m.timers), n);
    printf("saga state: %zu in-flight sagas (14 data bytes each, max_data 16): %.1f bytes/saga "
           "(RSS delta: table 'run' with %u-byte values + one engine timer each)\n",
           n, (double)(r1 - r0) * 1024.0 / (double)n, sli_saga_value_size(&core));
    /* the core loop: 3 steps, replies in process, all successes */
    double t0 = now_s();
    size_t ended = 0;
    for (int step = 0; step < 3; step++)
        for (uint64_t id = 0; id < n; id++) {
            uint8_t k[8];
            sli_saga_put64(k, id);
            sli_saga_st *st = sl_state_find(run, sl_hash(k, 8), k, 8);
            sl_saga_reply r = {id, (uint16_t)step, A, SL_SAGA_SUCCESS, 1, {NULL, 0}};
            int why;
            int rc = sli_saga_on_reply(&core, st, (int64_t)id + step, &r, &why);
            assert_int_equal(why, 0);
            if (rc > 0) {
                ended++;
                sl_state_remove(run, sl_hash(k, 8), k, 8);
            }
        }
    double s = now_s() - t0;
    assert_int_equal(ended, n);
    assert_int_equal(sli_timers_count(m.timers), 0);
    printf("saga core loop (no engine): %zu sagas x 3 steps in %.2f s: %.0f sagas/s\n", n, s,
           (double)n / s);
    sl_state_free(run);
    sli_timers_free(m.timers);
    sli_saga_core_free(&core);
    /* Through the engine: starts and the in-process participant bus (the
     * closed loop of test_pipeline_savepoint, every command succeeds). */
    for (int i = 0; i < 3; i++) {
        steps_loop[i] = steps_plain[i];
        steps_loop[i].timeout_ms = 1000000000;
    }
    vec starts = bus_starts_n(n_loop);
    for (int threads = 1; threads <= 2; threads++) {
        bus *b = bus_new(1, 0, n_loop);
        loop_threads = threads;
        t0 = now_s();
        loop_run(b, &starts, 8, 1, NULL);
        s = now_s() - t0;
        assert_int_equal(b->total, n_loop);
        printf("saga pipeline, %d thread(s): %zu sagas x 3 steps end to end in %.2f s: %.0f "
               "sagas/s\n",
               threads, n_loop, s, (double)n_loop / s);
        bus_free(b);
    }
    loop_threads = 2;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_backoff_times),
        cmocka_unit_test(test_stale_replies),
        cmocka_unit_test(test_reordered_duplicates),
        cmocka_unit_test(test_def_checks),
        cmocka_unit_test(test_randomized),
        cmocka_unit_test(test_pipeline_wiring),
        cmocka_unit_test(test_pipeline_traces),
        cmocka_unit_test(test_pipeline_refuses),
        cmocka_unit_test(test_pipeline_savepoint),
        cmocka_unit_test(test_pipeline_processing_time),
        cmocka_unit_test(test_done_ttl),
        cmocka_unit_test(test_measure),
    };
    if (getenv("SAGA_TEST")) cmocka_set_test_filter(getenv("SAGA_TEST"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
