/*
 * operators/saga/saga.c - the saga operator: a state machine per saga id, kept
 * in engine keyed state, driven by starts, replies and timers.
 *
 * Two layers. The core (sli_saga_*, operators/saga/saga_int.h) is the state
 * machine alone: it reads and writes one saga's fixed-size state value and
 * acts on the world through four callbacks (emit a command, emit an
 * outcome, set / delete the saga's timer). The operator below maps those to
 * sl_emit_port() and engine timers, and keeps the tables. Tests drive the
 * core directly, in a closed loop with a model of the participants, so every
 * path is reached deterministically; the operator is tested in pipelines.
 *
 * The machine (sluice/saga.h states the rules for users):
 *
 *   start ─> ACT_WAIT(step 0, attempt 1)
 *   ACT_WAIT  ── success ──> ACT_WAIT(step+1, 1) | COMPLETED after the last
 *             ── retryable / timeout, attempts left ──> ACT_BACKOFF(attempt+1)
 *             ── final, or none left ──> compensate (or FAILED_FORWARD once
 *                the pivot has passed; the pivot's own timeouts always retry)
 *   ACT_BACKOFF ── timer ──> ACT_WAIT (the same step, the new attempt)
 *   compensate from step f: COMP_WAIT(f, 1) | COMPENSATED when f < 0
 *   COMP_WAIT ── success ──> COMP_WAIT(step-1, 1) | COMPENSATED after step 0
 *             ── retryable / timeout, attempts left ──> COMP_BACKOFF
 *             ── final, or none left ──> FAILED_TO_COMPENSATE (names step)
 *   COMP_BACKOFF ── timer ──> COMP_WAIT
 *
 * Invariants:
 *  - exactly one command is outstanding or one backoff pending per running
 *    saga, and exactly one timer is pending for it, at st->deadline (the
 *    timeout of the outstanding command, or the end of the backoff);
 *  - a reply changes a saga only when (step, kind, attempt) equal the
 *    outstanding command's and the saga is not in a backoff; everything else
 *    is diverted, so duplicated, reordered and stale replies are harmless;
 *  - steps below the compensation start all have compensations (the pivot
 *    is the first step without one, and compensation never starts once it
 *    has passed), so undone = compensation start + 1 - current step;
 *  - a saga id ends at most once while it is remembered: at its outcome it
 *    moves from table "run" to table "done" (8 bytes: the time it is
 *    forgotten, int64 little-endian; INT64_MAX with no done_ttl_ms), and a
 *    start for an id in either table is diverted as a duplicate;
 *  - with done_ttl_ms, a done entry is gone once "now" reaches its time:
 *    lookups treat it as absent from then on (done_find), and a timer at that
 *    time, under the id's 8-byte key like the saga's own timers, removes it
 *    (it can tell itself from a stale saga timer: those are all earlier).
 *
 * Time domains: event time (default; timers are engine event-time timers,
 * checkpointed with the state; an outcome depends on the input records and
 * their timestamps only) or processing time (engine processing-time timers,
 * which the engine does not checkpoint: the deadlines live in the state and
 * the first callback after a restore re-arms them all). Why both: live
 * services are naturally timed by the wall clock, but only event time gives
 * replays and tests the same outcomes whatever the threads and crashes.
 *
 * Hot path: no allocation per record (two scratch buffers grow once per
 * instance); a reply is one table lookup.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sluice/error.h"
#include "sluice/operator.h"
#include "sluice/pipeline.h"
#include "sluice/saga.h"
#include "sluice/state.h"
#include "sluice/trace.h"
#include "operators/saga/saga_int.h"

#define NO_DEADLINE    INT64_MIN
#define NO_STEP        0xFFFFu
#define BUILDER_FAILED 1 /* send(): the builder returned an error */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* --- records ---------------------------------------------------------------- */

sl_bytes sl_saga_key(const void *rec, uint32_t len, void *ud)
{
    (void)ud;
    sl_bytes k = {rec, len < 8 ? len : 8};
    return k;
}

int sl_saga_reply_read(sl_bytes rec, sl_saga_reply *out)
{
    const uint8_t *p = rec.ptr;
    if (rec.len < SL_SAGA_REPLY_HDR) return SL_ECORRUPT;
    out->saga_id = sli_saga_get64(p);
    out->step = get16(p + 8);
    out->kind = p[10];
    out->status = p[11];
    out->attempt = get32(p + 12);
    out->reason.ptr = p + SL_SAGA_REPLY_HDR;
    out->reason.len = rec.len - SL_SAGA_REPLY_HDR;
    if (out->kind > SL_SAGA_COMPENSATION || out->status > SL_SAGA_FINAL) return SL_ECORRUPT;
    return 0;
}

int sl_saga_command_read(sl_bytes rec, sl_saga_command *out)
{
    const uint8_t *p = rec.ptr;
    if (rec.len < SL_SAGA_COMMAND_HDR) return SL_ECORRUPT;
    out->saga_id = sli_saga_get64(p);
    out->step = get16(p + 8);
    out->kind = p[10];
    out->attempt = get32(p + 12);
    out->key.ptr = p;
    out->key.len = 12;
    out->cmd.ptr = p + SL_SAGA_COMMAND_HDR;
    out->cmd.len = rec.len - SL_SAGA_COMMAND_HDR;
    return out->kind > SL_SAGA_COMPENSATION ? SL_ECORRUPT : 0;
}

int sl_saga_outcome_read(sl_bytes rec, sl_saga_outcome *out)
{
    const uint8_t *p = rec.ptr;
    if (rec.len < SL_SAGA_OUTCOME_HDR) return SL_ECORRUPT;
    out->saga_id = sli_saga_get64(p);
    out->outcome = p[8];
    out->cause = p[9];
    out->step = get16(p + 10);
    out->failed_step = get16(p + 12);
    out->done = get16(p + 14);
    out->undone = get16(p + 16);
    out->attempt = get32(p + 20);
    out->reason.ptr = p + SL_SAGA_OUTCOME_HDR;
    out->reason.len = rec.len - SL_SAGA_OUTCOME_HDR;
    if (out->outcome < SL_SAGA_COMPLETED || out->outcome > SL_SAGA_FAILED_FORWARD ||
        out->cause > SL_SAGA_CAUSE_BUILDER)
        return SL_ECORRUPT;
    return 0;
}

int sl_saga_diverted_read(sl_bytes rec, sl_saga_diverted_rec *out)
{
    const uint8_t *p = rec.ptr;
    if (rec.len < SL_SAGA_DIVERTED_HDR) return SL_ECORRUPT;
    uint32_t n = get32(p + 4);
    if (n != rec.len - SL_SAGA_DIVERTED_HDR || p[0] > 1 || p[1] < SL_SAGA_WHY_UNKNOWN ||
        p[1] > SL_SAGA_WHY_TOO_LARGE)
        return SL_ECORRUPT;
    out->input = p[0];
    out->why = p[1];
    out->rec.ptr = p + SL_SAGA_DIVERTED_HDR;
    out->rec.len = n;
    return 0;
}

void sl_saga_start_write(void *dst, uint64_t saga_id, const void *data, uint32_t len)
{
    sli_saga_put64(dst, saga_id);
    if (len) memcpy((uint8_t *)dst + SL_SAGA_START_HDR, data, len);
}

void sl_saga_reply_write(void *dst, const sl_saga_reply *r)
{
    uint8_t *p = dst;
    sli_saga_put64(p, r->saga_id);
    put16(p + 8, r->step);
    p[10] = r->kind;
    p[11] = r->status;
    put32(p + 12, r->attempt);
    if (r->reason.len) memcpy(p + SL_SAGA_REPLY_HDR, r->reason.ptr, r->reason.len);
}

void sl_saga_reply_to(void *dst, const sl_saga_command *c, int status, const char *reason,
                      uint32_t reason_len)
{
    sl_saga_reply r = {c->saga_id,      c->step,    c->kind,
                       (uint8_t)status, c->attempt, {reason, reason ? reason_len : 0}};
    sl_saga_reply_write(dst, &r);
}

const char *sl_saga_outcome_name(int o)
{
    static const char *const n[] = {"?", "completed", "compensated", "failed-to-compensate",
                                    "failed-forward"};
    return o >= 1 && o <= 4 ? n[o] : "?";
}
const char *sl_saga_cause_name(int c)
{
    static const char *const n[] = {"none", "final failure", "retries used up",
                                    "timeout after the last attempt", "builder failed"};
    return c >= 0 && c <= 4 ? n[c] : "?";
}
const char *sl_saga_why_name(int w)
{
    static const char *const n[] = {"?",
                                    "unknown saga",
                                    "finished saga",
                                    "stale reply",
                                    "duplicate start",
                                    "malformed record",
                                    "data too large"};
    return w >= 1 && w <= 6 ? n[w] : "?";
}

/* --- the core ------------------------------------------------------------------ */

static int valid_retry(const sl_saga_retry *r)
{
    return r->backoff_ms >= 0 && r->max_backoff_ms >= 0 && r->multiplier == r->multiplier;
}

const char *sli_saga_def_invalid(const sl_saga_def *d)
{
    if (!d) return "needs a definition";
    if (d->version != SL_SAGA_VERSION) return "has an unknown version (want SL_SAGA_VERSION)";
    if (!d->steps || d->n_steps < 1 || d->n_steps > SL_SAGA_MAX_STEPS) return "needs 1..1024 steps";
    if (d->max_data > SL_SAGA_MAX_DATA) return "max_data is above 65535";
    if (d->time != SL_SAGA_EVENT_TIME && d->time != SL_SAGA_PROCESSING_TIME)
        return "has an unknown time domain";
    if (d->done_ttl_ms < 0) return "has a negative done_ttl_ms";
    for (uint32_t i = 0; i < d->n_steps; i++) {
        const sl_saga_step *s = &d->steps[i];
        if (!s->name || !*s->name) return "has a step without a name";
        if (!s->action) return "has a step without an action builder";
        if (s->timeout_ms <= 0) return "has a step whose timeout_ms is not > 0";
        if (s->comp_timeout_ms < 0) return "has a step whose comp_timeout_ms is negative";
        if (!valid_retry(&s->retry) || !valid_retry(&s->comp_retry))
            return "has a retry policy with a negative backoff or a NaN multiplier";
    }
    return NULL;
}

void sli_saga_core_init(sli_saga_core *c, const sl_saga_def *def, const sli_saga_io *io)
{
    memset(c, 0, sizeof(*c));
    c->def = *def;
    c->io = *io;
    c->max_data = def->max_data ? def->max_data : SL_SAGA_DEFAULT_MAX_DATA;
    c->pivot = -1;
    for (uint32_t i = 0; i < def->n_steps; i++)
        if (!def->steps[i].compensation) {
            c->pivot = (int)i;
            break;
        }
}

void sli_saga_core_free(sli_saga_core *c)
{
    sl_buf_free(&c->cmd);
    sl_buf_free(&c->rec);
}

uint32_t sli_saga_value_size(const sli_saga_core *c)
{
    return (uint32_t)((sizeof(sli_saga_st) + c->max_data + 7u) & ~(size_t)7u);
}

/* The wait before attempt `next` (>= 2). */
static int64_t backoff(const sl_saga_retry *r, uint32_t next)
{
    double b = (double)r->backoff_ms, cap = r->max_backoff_ms ? (double)r->max_backoff_ms : 1e15;
    for (uint32_t k = 2; k < next && r->multiplier > 1.0 && b < cap; k++) b *= r->multiplier;
    if (b > cap) b = cap;
    return (int64_t)b;
}

static int set_timer(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t ts)
{
    st->deadline = ts;
    return c->io.timer_set(c->io.ud, id, ts);
}

static int clear_timer(sli_saga_core *c, sli_saga_st *st, uint64_t id)
{
    if (st->deadline == NO_DEADLINE) return 0;
    int64_t d = st->deadline;
    st->deadline = NO_DEADLINE;
    return c->io.timer_del(c->io.ud, id, d);
}

static int64_t add_sat(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* The wall clock for spans (ns), 0 when nobody takes spans. */
static int64_t span_now(const sli_saga_core *c)
{
    if (!c->io.span) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Send the current command (st->step, kind, st->attempt) and arm its
 * timeout. Returns 0, BUILDER_FAILED, or a negative code. */
static int send(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now, int kind)
{
    const sl_saga_step *s = &c->def.steps[st->step];
    sl_saga_build_fn fn = kind == SL_SAGA_ACTION ? s->action : s->compensation;
    c->cmd.len = 0;
    int rc = fn(&c->cmd, id, st->data, st->data_len, st->attempt, s->ud);
    if (rc == SL_ENOMEM) return rc;
    if (rc) return BUILDER_FAILED;
    if (c->cmd.len > UINT32_MAX - SL_SAGA_COMMAND_HDR) return BUILDER_FAILED;
    c->rec.len = 0;
    if ((rc = sl_buf_reserve(&c->rec, SL_SAGA_COMMAND_HDR + c->cmd.len))) return rc;
    uint8_t *p = c->rec.ptr;
    sli_saga_put64(p, id);
    put16(p + 8, st->step);
    p[10] = (uint8_t)kind;
    p[11] = 0;
    put32(p + 12, st->attempt);
    if (c->cmd.len) memcpy(p + SL_SAGA_COMMAND_HDR, c->cmd.ptr, c->cmd.len);
    rc = c->io.command(c->io.ud, now, p, (uint32_t)(SL_SAGA_COMMAND_HDR + c->cmd.len));
    if (rc) return rc;
    st->sent = span_now(c);
    st->phase = kind == SL_SAGA_ACTION ? SLI_SAGA_ACT_WAIT : SLI_SAGA_COMP_WAIT;
    int64_t t = kind == SL_SAGA_ACTION || !s->comp_timeout_ms ? s->timeout_ms : s->comp_timeout_ms;
    return set_timer(c, st, id, add_sat(now, t));
}

/* The outstanding attempt (kind) ended: its span. */
static void attempt_span(sli_saga_core *c, const sli_saga_st *st, uint64_t id, int64_t now,
                         int kind, int error, const char *msg, uint32_t msg_len)
{
    if (!c->io.span) return;
    sli_saga_span e = {.saga_id = id,
                       .kind = kind,
                       .step = st->step,
                       .attempt = st->attempt,
                       .start_ns = st->sent,
                       .end_ns = span_now(c),
                       .error = error,
                       .msg = msg,
                       .msg_len = msg_len};
    c->io.span(c->io.ud, &e);
}

static uint16_t comp_from(const sli_saga_st *st)
{
    return st->cause == SL_SAGA_CAUSE_TIMEOUT ? st->failed_step : (uint16_t)(st->failed_step - 1u);
}

static int finish(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now, int outcome,
                  int cause, uint16_t step, uint16_t failed_step)
{
    int rc = clear_timer(c, st, id);
    if (rc) return rc;
    uint16_t undone = 0;
    if (outcome == SL_SAGA_COMPENSATED)
        undone = (uint16_t)(comp_from(st) + 1u);
    else if (outcome == SL_SAGA_FAILED_TO_COMPENSATE)
        undone = (uint16_t)(comp_from(st) - st->step);
    char reason[256];
    const char *nm = c->def.steps[step].name;
    int n;
    switch (outcome) {
    case SL_SAGA_COMPLETED:
        n = snprintf(reason, sizeof(reason), "all %u steps succeeded", c->def.n_steps);
        break;
    case SL_SAGA_COMPENSATED:
        n = snprintf(reason, sizeof(reason), "step '%s' failed (%s); %u step(s) compensated", nm,
                     sl_saga_cause_name(cause), undone);
        break;
    case SL_SAGA_FAILED_TO_COMPENSATE:
        n = snprintf(reason, sizeof(reason),
                     "compensation of step '%s' failed (%s, attempt %" PRIu32
                     ") after step '%s' failed (%s)",
                     nm, sl_saga_cause_name(cause), st->attempt, c->def.steps[failed_step].name,
                     sl_saga_cause_name(st->cause));
        break;
    default:
        n = snprintf(reason, sizeof(reason),
                     "step '%s' failed (%s) after the pivot: cannot go forward or back", nm,
                     sl_saga_cause_name(cause));
        break;
    }
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(reason)) n = (int)sizeof(reason) - 1;
    c->rec.len = 0;
    if ((rc = sl_buf_reserve(&c->rec, SL_SAGA_OUTCOME_HDR + (size_t)n))) return rc;
    uint8_t *p = c->rec.ptr;
    memset(p, 0, SL_SAGA_OUTCOME_HDR);
    sli_saga_put64(p, id);
    p[8] = (uint8_t)outcome;
    p[9] = (uint8_t)cause;
    put16(p + 10, step);
    put16(p + 12, failed_step);
    put16(p + 14, st->done);
    put16(p + 16, undone);
    put32(p + 20, st->attempt);
    memcpy(p + SL_SAGA_OUTCOME_HDR, reason, (size_t)n);
    rc = c->io.outcome(c->io.ud, now, p, (uint32_t)(SL_SAGA_OUTCOME_HDR + (size_t)n));
    if (!rc && c->io.span) {
        sli_saga_span e = {.saga_id = id,
                           .root = 1,
                           .start_ns = st->started,
                           .end_ns = span_now(c),
                           .error = outcome != SL_SAGA_COMPLETED && outcome != SL_SAGA_COMPENSATED,
                           .msg = reason,
                           .msg_len = (uint32_t)n,
                           .outcome = outcome};
        c->io.span(c->io.ud, &e);
    }
    return rc ? rc : outcome;
}

/* Send the compensation of st->step (attempt 1 set by the caller), or end. */
static int send_comp(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now)
{
    int rc = send(c, st, id, now, SL_SAGA_COMPENSATION);
    if (rc == BUILDER_FAILED)
        return finish(c, st, id, now, SL_SAGA_FAILED_TO_COMPENSATE, SL_SAGA_CAUSE_BUILDER, st->step,
                      st->failed_step);
    return rc;
}

/* The current step's action failed for good. */
static int action_failed(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now, int cause)
{
    uint16_t s = st->step;
    if (st->flags & SLI_SAGA_F_PIVOT_PASSED)
        return finish(c, st, id, now, SL_SAGA_FAILED_FORWARD, cause, s, s);
    st->failed_step = s;
    st->cause = (uint8_t)cause;
    if (cause == SL_SAGA_CAUSE_TIMEOUT && (int)s == c->pivot) st->cause = SL_SAGA_CAUSE_RETRIES;
    if (comp_from(st) == NO_STEP) /* nothing to undo */
        return finish(c, st, id, now, SL_SAGA_COMPENSATED, cause, s, s);
    st->step = comp_from(st);
    st->attempt = 1;
    return send_comp(c, st, id, now);
}

static int send_action(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now)
{
    int rc = send(c, st, id, now, SL_SAGA_ACTION);
    return rc == BUILDER_FAILED ? action_failed(c, st, id, now, SL_SAGA_CAUSE_BUILDER) : rc;
}

/* Retry the current command after its backoff. */
static int retry(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now, int kind)
{
    const sl_saga_step *s = &c->def.steps[st->step];
    const sl_saga_retry *r = kind == SL_SAGA_ACTION ? &s->retry : &s->comp_retry;
    if (st->attempt < UINT32_MAX) st->attempt++;
    int64_t b = backoff(r, st->attempt);
    if (b == 0)
        return kind == SL_SAGA_ACTION ? send_action(c, st, id, now) : send_comp(c, st, id, now);
    st->phase = kind == SL_SAGA_ACTION ? SLI_SAGA_ACT_BACKOFF : SLI_SAGA_COMP_BACKOFF;
    return set_timer(c, st, id, add_sat(now, b));
}

/* A retryable failure or a timeout (cause) of the outstanding command. */
static int not_done(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now, int kind,
                    int cause)
{
    const sl_saga_step *s = &c->def.steps[st->step];
    if (kind == SL_SAGA_ACTION) {
        int unlimited = (st->flags & SLI_SAGA_F_PIVOT_PASSED) || s->retry.attempts == 0 ||
                        ((int)st->step == c->pivot && cause == SL_SAGA_CAUSE_TIMEOUT);
        if (unlimited || st->attempt < s->retry.attempts) return retry(c, st, id, now, kind);
        return action_failed(c, st, id, now,
                             cause == SL_SAGA_CAUSE_TIMEOUT ? cause : SL_SAGA_CAUSE_RETRIES);
    }
    if (s->comp_retry.attempts == 0 || st->attempt < s->comp_retry.attempts)
        return retry(c, st, id, now, kind);
    return finish(c, st, id, now, SL_SAGA_FAILED_TO_COMPENSATE,
                  cause == SL_SAGA_CAUSE_TIMEOUT ? cause : SL_SAGA_CAUSE_RETRIES, st->step,
                  st->failed_step);
}

int sli_saga_on_start(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now, const void *data,
                      uint32_t len)
{
    memset(st, 0, sizeof(*st));
    st->deadline = NO_DEADLINE;
    st->attempt = 1;
    st->failed_step = NO_STEP;
    st->data_len = (uint16_t)len;
    st->started = st->sent = span_now(c);
    if (len) memcpy(st->data, data, len);
    return send_action(c, st, id, now);
}

int sli_saga_on_timer(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t ts, int64_t now)
{
    if (ts != st->deadline) return 0; /* not this saga's pending timer */
    st->deadline = NO_DEADLINE;
    if (st->phase == SLI_SAGA_ACT_WAIT || st->phase == SLI_SAGA_COMP_WAIT)
        attempt_span(c, st, id, now,
                     st->phase == SLI_SAGA_ACT_WAIT ? SL_SAGA_ACTION : SL_SAGA_COMPENSATION, 1,
                     "timeout", 7);
    switch (st->phase) {
    case SLI_SAGA_ACT_WAIT: return not_done(c, st, id, now, SL_SAGA_ACTION, SL_SAGA_CAUSE_TIMEOUT);
    case SLI_SAGA_ACT_BACKOFF: return send_action(c, st, id, now);
    case SLI_SAGA_COMP_WAIT:
        return not_done(c, st, id, now, SL_SAGA_COMPENSATION, SL_SAGA_CAUSE_TIMEOUT);
    case SLI_SAGA_COMP_BACKOFF: return send_comp(c, st, id, now);
    default: return SL_ECORRUPT;
    }
}

int sli_saga_on_reply(sli_saga_core *c, sli_saga_st *st, int64_t now, const sl_saga_reply *r,
                      int *why)
{
    uint64_t id = r->saga_id;
    int waiting = st->phase == SLI_SAGA_ACT_WAIT || st->phase == SLI_SAGA_COMP_WAIT;
    *why = SL_SAGA_WHY_STALE;
    if (waiting && c->def.time == SL_SAGA_EVENT_TIME && now >= st->deadline) {
        /* In event time the reply came after the timeout, whatever the
         * watermark says yet: run the timeout first. */
        int64_t d = st->deadline;
        int rc = clear_timer(c, st, id);
        if (rc) return rc;
        st->deadline = d;
        return sli_saga_on_timer(c, st, id, d, d);
    }
    int kind = st->phase == SLI_SAGA_ACT_WAIT ? SL_SAGA_ACTION : SL_SAGA_COMPENSATION;
    if (!waiting || r->step != st->step || r->kind != kind || r->attempt != st->attempt) return 0;
    *why = 0;
    int rc = clear_timer(c, st, id);
    if (rc) return rc;
    attempt_span(c, st, id, now, kind, r->status != SL_SAGA_SUCCESS,
                 r->reason.len                    ? (const char *)r->reason.ptr
                 : r->status == SL_SAGA_RETRYABLE ? "retryable failure"
                 : r->status != SL_SAGA_SUCCESS   ? "final failure"
                                                  : NULL,
                 r->reason.len                    ? r->reason.len
                 : r->status == SL_SAGA_RETRYABLE ? 17
                 : r->status != SL_SAGA_SUCCESS   ? 13
                                                  : 0);
    if (kind == SL_SAGA_ACTION) {
        switch (r->status) {
        case SL_SAGA_SUCCESS:
            st->done++;
            if ((int)st->step == c->pivot) st->flags |= SLI_SAGA_F_PIVOT_PASSED;
            if (st->step + 1u == c->def.n_steps)
                return finish(c, st, id, now, SL_SAGA_COMPLETED, SL_SAGA_CAUSE_NONE, st->step,
                              NO_STEP);
            st->step++;
            st->attempt = 1;
            return send_action(c, st, id, now);
        case SL_SAGA_RETRYABLE: return not_done(c, st, id, now, kind, SL_SAGA_CAUSE_RETRIES);
        default: return action_failed(c, st, id, now, SL_SAGA_CAUSE_FINAL);
        }
    }
    switch (r->status) {
    case SL_SAGA_SUCCESS:
        if (st->step == 0)
            return finish(c, st, id, now, SL_SAGA_COMPENSATED, st->cause, st->failed_step,
                          st->failed_step);
        st->step--;
        st->attempt = 1;
        return send_comp(c, st, id, now);
    case SL_SAGA_RETRYABLE: return not_done(c, st, id, now, kind, SL_SAGA_CAUSE_RETRIES);
    default:
        return finish(c, st, id, now, SL_SAGA_FAILED_TO_COMPENSATE, SL_SAGA_CAUSE_FINAL, st->step,
                      st->failed_step);
    }
}

/* --- the operator --------------------------------------------------------------- */

typedef struct saga_self {
    sli_saga_core core;
    sl_ctx *ctx;
    sl_tracer *tracer; /* the pipeline's, or NULL: no spans */
    uint64_t salt;     /* of the node's name: its sagas' trace ids */
    sl_state *run, *done;
    uint64_t hash; /* of the saga being handled (for timers) */
    int proc;      /* processing-time domain */
    int rearm;     /* processing time, restored: re-arm the deadlines first */
} saga_self;

static int io_command(void *ud, int64_t ts, const void *rec, uint32_t len)
{
    saga_self *s = ud;
    void *p = sl_emit(s->ctx, ts, s->hash, len);
    if (!p) return sl_ctx_error(s->ctx);
    memcpy(p, rec, len);
    return 0;
}

static int io_outcome(void *ud, int64_t ts, const void *rec, uint32_t len)
{
    saga_self *s = ud;
    void *p = sl_emit_port(s->ctx, 1, ts, s->hash, len);
    if (!p) return sl_ctx_error(s->ctx);
    memcpy(p, rec, len);
    return 0;
}

static int io_timer_set(void *ud, uint64_t id, int64_t ts)
{
    saga_self *s = ud;
    uint8_t k[8];
    sli_saga_put64(k, id);
    return s->proc ? sl_ctx_proc_timer(s->ctx, ts, s->hash, k, 8)
                   : sl_ctx_timer(s->ctx, ts, s->hash, k, 8);
}

static int io_timer_del(void *ud, uint64_t id, int64_t ts)
{
    saga_self *s = ud;
    uint8_t k[8];
    sli_saga_put64(k, id);
    int rc = s->proc ? sl_ctx_proc_timer_delete(s->ctx, ts, s->hash, k, 8)
                     : sl_ctx_timer_delete(s->ctx, ts, s->hash, k, 8);
    return rc < 0 ? rc : 0;
}

/* --- spans: a saga is a trace ---------------------------------------------------
 *
 * Ids are derived, not drawn, so that a saga keeps its trace across a
 * restart (a replayed attempt repeats its span's ids): trace id and the
 * root's span id from (node name, saga id), an attempt's span id from
 * (saga id, step, kind, attempt). The sampling decision is the trace id's
 * (the tracer's ratio rule), so every span of a saga is kept or none.
 * Times are the wall clock (the state keeps when the saga started and when
 * its command went out), whatever the saga's own clock: spans are read
 * beside other services' spans. */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 1;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static void io_span(void *ud, const sli_saga_span *e)
{
    saga_self *s = ud;
    if (!s->tracer) return;
    uint64_t base = mix64(s->salt ^ e->saga_id);
    sl_trace_ctx root = {.flags = 0};
    put_be64(root.trace_id, base);
    put_be64(root.trace_id + 8, mix64(base ^ 0x5a6a));
    put_be64(root.span_id, mix64(base ^ 0x726f6f74)); /* "root" */
    if (sl_trace_should_sample(sl_tracer_sample_ratio(s->tracer), NULL, root.trace_id))
        root.flags = SL_TRACE_FLAG_SAMPLED;
    if (!(root.flags & SL_TRACE_FLAG_SAMPLED)) return;
    const sl_saga_step *st = e->root ? NULL : &s->core.def.steps[e->step];
    char name[SL_SPAN_NAME_MAX];
    if (e->root)
        snprintf(name, sizeof(name), "saga");
    else
        snprintf(name, sizeof(name), "%s%s", e->kind == SL_SAGA_COMPENSATION ? "undo " : "",
                 st->name);
    sl_span sp;
    sl_span_start_at(s->tracer, &sp, name, SL_SPAN_KIND_INTERNAL, &root, e->start_ns);
    if (e->root) {
        sl_span_set_ids(&sp, root.span_id, NULL);
    } else {
        uint8_t id[8];
        put_be64(id, mix64(base ^ ((uint64_t)e->step << 40 | (uint64_t)e->kind << 32 |
                                   (uint64_t)e->attempt)));
        sl_span_set_ids(&sp, id, root.span_id);
    }
    sl_span_set_int(&sp, "saga.id", (int64_t)e->saga_id);
    if (e->root) {
        sl_span_set_str(&sp, "saga.outcome", sl_saga_outcome_name(e->outcome));
    } else {
        sl_span_set_str(&sp, "saga.step", st->name);
        sl_span_set_str(&sp, "saga.kind",
                        e->kind == SL_SAGA_COMPENSATION ? "compensation" : "action");
        sl_span_set_int(&sp, "saga.attempt", e->attempt);
    }
    if (e->error) {
        char msg[SL_SPAN_MSG_MAX];
        int n = e->msg_len < sizeof(msg) ? (int)e->msg_len : (int)sizeof(msg) - 1;
        snprintf(msg, sizeof(msg), "%.*s", n, e->msg ? e->msg : "");
        sl_span_set_status(&sp, SL_SPAN_STATUS_ERROR, msg);
    }
    sl_span_end(&sp, e->end_ns > sp.start_ns ? e->end_ns : sp.start_ns);
}

static int saga_open(sl_ctx *ctx, void **out)
{
    const sl_saga_def *def = sl_ctx_conf(ctx);
    saga_self *s = calloc(1, sizeof(*s));
    if (!s) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    sli_saga_io io = {s, io_command, io_outcome, io_timer_set, io_timer_del, io_span};
    sli_saga_core_init(&s->core, def, &io);
    s->ctx = ctx;
    s->tracer = sl_pipeline_tracer(sl_ctx_pipeline(ctx));
    const char *nm = sl_ctx_name(ctx);
    s->salt = sl_hash(nm, (uint32_t)strlen(nm));
    s->proc = def->time == SL_SAGA_PROCESSING_TIME;
    s->rearm = s->proc && sl_ctx_restored_from(ctx) != 0;
    s->run = sl_ctx_state(ctx, "run", sli_saga_value_size(&s->core));
    s->done = sl_ctx_state(ctx, "done", 8);
    if (!s->run || !s->done) {
        sli_saga_core_free(&s->core);
        free(s);
        return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for saga state");
    }
    *out = s;
    return 0;
}

static void saga_close(void *self)
{
    saga_self *s = self;
    if (!s) return;
    sli_saga_core_free(&s->core);
    free(s);
}

/* Processing time after a restore: the engine kept no processing-time
 * timers, the states kept their deadlines (and, with a TTL, the done
 * entries when they are forgotten). */
static int rearm(saga_self *s)
{
    s->rearm = 0;
    size_t it = 0;
    sl_state_entry e;
    while (sl_state_next(s->run, &it, &e)) {
        const sli_saga_st *st = e.value;
        if (st->deadline == NO_DEADLINE) continue;
        int rc = sl_ctx_proc_timer(s->ctx, st->deadline, e.hash, e.key, e.key_len);
        if (rc) return rc;
    }
    if (s->core.def.done_ttl_ms <= 0) return 0;
    it = 0;
    while (sl_state_next(s->done, &it, &e)) {
        int rc =
            sl_ctx_proc_timer(s->ctx, (int64_t)sli_saga_get64(e.value), e.hash, e.key, e.key_len);
        if (rc) return rc;
    }
    return 0;
}

static int divert(saga_self *s, int input, int why, int64_t ts, uint64_t hash, sl_bytes rec)
{
    uint8_t *p = sl_emit_port(s->ctx, 2, ts, hash, SL_SAGA_DIVERTED_HDR + rec.len);
    if (!p) return sl_ctx_error(s->ctx);
    p[0] = (uint8_t)input;
    p[1] = (uint8_t)why;
    p[2] = p[3] = 0;
    put32(p + 4, rec.len);
    if (rec.len) memcpy(p + SL_SAGA_DIVERTED_HDR, rec.ptr, rec.len);
    return 0;
}

/* Saga `key` ended at `now`: from "run" to "done", remembered until
 * now + done_ttl_ms (for ever without a TTL), with a timer to forget it. */
static int ended(saga_self *s, const uint8_t *key, uint64_t hash, int64_t now)
{
    sl_state_remove(s->run, hash, key, 8);
    uint8_t *d = sl_state_get(s->done, hash, key, 8, NULL);
    if (!d) return sl_ctx_fail(s->ctx, SL_ENOMEM, "out of memory for saga state");
    int64_t ttl = s->core.def.done_ttl_ms, until = INT64_MAX;
    if (ttl > 0) until = now > INT64_MAX - ttl ? INT64_MAX - 1 : now + ttl;
    sli_saga_put64(d, (uint64_t)until);
    if (ttl <= 0) return 0;
    int rc = s->proc ? sl_ctx_proc_timer(s->ctx, until, hash, key, 8)
                     : sl_ctx_timer(s->ctx, until, hash, key, 8);
    return rc < 0 ? rc : 0;
}

/* Is `key` a remembered finished saga at `now`? A done entry whose time has
 * come is forgotten here, before its timer fires (the deadline rule). */
static int done_find(saga_self *s, const uint8_t *key, uint64_t hash, int64_t now)
{
    const uint8_t *d = sl_state_find(s->done, hash, key, 8);
    if (!d) return 0;
    if (s->core.def.done_ttl_ms > 0 && (int64_t)sli_saga_get64(d) <= now) {
        sl_state_remove(s->done, hash, key, 8);
        return 0;
    }
    return 1;
}

static int failed(saga_self *s, int rc, uint64_t id)
{
    if (sl_ctx_error(s->ctx)) return sl_ctx_error(s->ctx);
    return sl_ctx_fail(s->ctx, rc, "saga %" PRIu64 ": %s", id, sl_strerror(rc));
}

static int on_start(saga_self *s, int64_t ts, uint64_t hash, sl_bytes rec)
{
    if (rec.len < SL_SAGA_START_HDR) return divert(s, 0, SL_SAGA_WHY_MALFORMED, ts, hash, rec);
    if (rec.len - SL_SAGA_START_HDR > s->core.max_data)
        return divert(s, 0, SL_SAGA_WHY_TOO_LARGE, ts, hash, rec);
    const uint8_t *key = rec.ptr;
    int64_t now = s->proc ? sl_clock_ms() : ts;
    if (done_find(s, key, hash, now)) return divert(s, 0, SL_SAGA_WHY_DUPLICATE, ts, hash, rec);
    int created;
    sli_saga_st *st = sl_state_get(s->run, hash, key, 8, &created);
    if (!st) return sl_ctx_fail(s->ctx, SL_ENOMEM, "out of memory for saga state");
    if (!created) return divert(s, 0, SL_SAGA_WHY_DUPLICATE, ts, hash, rec);
    uint64_t id = sli_saga_get64(key);
    int rc = sli_saga_on_start(&s->core, st, id, now, key + SL_SAGA_START_HDR,
                               rec.len - SL_SAGA_START_HDR);
    if (rc < 0) return failed(s, rc, id);
    return rc > 0 ? ended(s, key, hash, now) : 0;
}

static int on_reply(saga_self *s, int64_t ts, uint64_t hash, sl_bytes rec)
{
    sl_saga_reply r;
    if (sl_saga_reply_read(rec, &r) || r.step >= s->core.def.n_steps)
        return divert(s, 1, SL_SAGA_WHY_MALFORMED, ts, hash, rec);
    const uint8_t *key = rec.ptr;
    int64_t now = s->proc ? sl_clock_ms() : ts;
    sli_saga_st *st = sl_state_find(s->run, hash, key, 8);
    if (!st) {
        int why = done_find(s, key, hash, now) ? SL_SAGA_WHY_FINISHED : SL_SAGA_WHY_UNKNOWN;
        return divert(s, 1, why, ts, hash, rec);
    }
    int why;
    int rc = sli_saga_on_reply(&s->core, st, now, &r, &why);
    if (rc < 0) return failed(s, rc, r.saga_id);
    if (rc > 0 && (rc = ended(s, key, hash, now))) return rc;
    return why ? divert(s, 1, why, ts, hash, rec) : 0;
}

static int saga_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    saga_self *s = self;
    int rc;
    if (s->rearm && (rc = rearm(s))) return rc;
    int input = sl_ctx_input(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes rec = sl_batch_bytes(in, i);
        s->hash = in->hash[i];
        rc = input == 0 ? on_start(s, in->ts[i], s->hash, rec)
                        : on_reply(s, in->ts[i], s->hash, rec);
        if (rc) return rc;
    }
    return 0;
}

static int on_timer(sl_ctx *ctx, saga_self *s, const sl_timer *t)
{
    int rc;
    if (s->rearm && (rc = rearm(s))) return rc;
    if (t->key_len != 8) return 0;
    int64_t now = s->proc ? sl_clock_ms() : t->ts;
    sli_saga_st *st = sl_state_find(s->run, t->hash, t->key, 8);
    if (!st) {
        /* ended: a stale timer of the saga, or the one that forgets it (the
         * done_find rule removes the entry if its time has come) */
        done_find(s, t->key, t->hash, now > t->ts ? now : t->ts);
        return 0;
    }
    uint64_t id = sli_saga_get64(t->key);
    s->hash = t->hash;
    rc = sli_saga_on_timer(&s->core, st, id, t->ts, now);
    if (rc < 0) return failed(s, rc, id);
    return rc > 0 ? ended(s, t->key, t->hash, now) : 0;
}

static int saga_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    return on_timer(ctx, self, t);
}

static int saga_watermark(sl_ctx *ctx, void *self, int64_t wm)
{
    saga_self *s = self;
    return s->rearm ? rearm(s) : 0;
}

static const sl_operator saga_op = {.version = SL_OPERATOR_VERSION,
                                    .kind = "saga",
                                    .open = saga_open,
                                    .process = saga_process,
                                    .watermark = saga_watermark,
                                    .timer = saga_timer,
                                    .close = saga_close,
                                    .proc_timer = saga_timer};

sl_stream *sl_stream_saga(sl_stream *starts, sl_stream *replies, const char *name,
                          const sl_saga_def *def)
{
    if (!starts || !replies) return NULL;
    sl_pipeline *p = sl_stream_pipeline(starts);
    const char *nm = name ? name : "";
    const char *why = sli_saga_def_invalid(def);
    if (why) {
        sl_pipeline_error(p, SL_EINVAL, "saga '%s': the definition %s", nm, why);
        return NULL;
    }
    if (sl_stream_width(starts) != 0 || sl_stream_width(replies) != 0) {
        sl_pipeline_error(p, SL_EINVAL,
                          "saga '%s': starts and replies must be variable-length streams (width 0)",
                          nm);
        return NULL;
    }
    /* One block owned by the pipeline: the def, its steps, their names. */
    size_t names = 0;
    for (uint32_t i = 0; i < def->n_steps; i++) names += strlen(def->steps[i].name) + 1;
    size_t sz = sizeof(sl_saga_def) + def->n_steps * sizeof(sl_saga_step) + names;
    uint8_t *blk = malloc(sz);
    if (!blk || sl_pipeline_own(p, blk)) {
        sl_pipeline_error(p, SL_ENOMEM, "saga '%s': out of memory", nm);
        return NULL;
    }
    sl_saga_def *d = (sl_saga_def *)blk;
    sl_saga_step *steps = (sl_saga_step *)(blk + sizeof(sl_saga_def));
    char *str = (char *)(steps + def->n_steps);
    *d = *def;
    for (uint32_t i = 0; i < def->n_steps; i++) {
        steps[i] = def->steps[i];
        size_t n = strlen(def->steps[i].name) + 1;
        memcpy(str, def->steps[i].name, n);
        steps[i].name = str;
        str += n;
    }
    d->steps = steps;
    char kn[256];
    snprintf(kn, sizeof(kn), "%s.starts", nm);
    sl_stream *ks = sl_stream_key_by(starts, kn, sl_saga_key, NULL);
    snprintf(kn, sizeof(kn), "%s.replies", nm);
    sl_stream *kr = sl_stream_key_by(replies, kn, sl_saga_key, NULL);
    if (!ks || !kr) return NULL;
    sl_stream *ins[2] = {ks, kr};
    sl_stream *out = sl_stream_apply_n(ins, 2, name, &saga_op, d, 0);
    if (!out || !sl_stream_side(out, 1, 0) || !sl_stream_side_as(out, 2, 0, SL_PORT_DEAD_LETTER))
        return NULL;
    return out;
}

sl_stream *sl_stream_saga_outcomes(sl_stream *saga_out)
{
    return saga_out ? sl_stream_side(saga_out, 1, 0) : NULL;
}

sl_stream *sl_stream_saga_diverted(sl_stream *saga_out)
{
    return saga_out ? sl_stream_side_as(saga_out, 2, 0, SL_PORT_DEAD_LETTER) : NULL;
}
