/*
 * examples/job_saga.c - the bundled job `saga`: an order workflow run as
 * sagas (sluice/saga.h) against simulated participants, the two sides
 * talking only through topics of the built-in broker.
 *
 * Every order is a saga of three steps:
 *
 *   step  name     participant  action            compensation
 *   0     reserve  inventory    hold one item     release it
 *   1     charge   payments     take the amount   refund it
 *   2     ship     shipping     ship the order    (none: the pivot)
 *
 * Two pipelines run in this process at once:
 *
 *   orchestrator  topic saga.orders -> "starts" ----------\
 *                 topic saga.replies -> "replies-in" ------> saga "saga"
 *                     port 0 commands -> "clock" -> topic saga.commands
 *                     port 1 outcomes -> "tally" -> --out (lines)
 *                     port 2 diverted -> "diverted" (counted)
 *   participants  topic saga.commands -> "commands-in" -> key by order
 *                     -> "participants" port 0 replies -> "clock" -> topic saga.replies
 *                                   port 1 ledger   -> topic saga.ledger
 *
 * Time. The saga runs in event time, so that a run's outcomes depend only
 * on its input: order i (1..N) arrives at event time (i - 1) / 10 ms; a
 * participant answers a command stamped t with a reply stamped t + 100 ms
 * (LATENCY_MS); timeouts are 250 ms. Event time crosses the topics as
 * watermark markers, because a topic source cannot know by itself that a
 * silent participant has nothing more to say (and a source that went idle
 * would let the orders' watermark run ahead and time out every saga):
 *
 *   - the orchestrator's "clock" appends, after the commands, a marker
 *     carrying its input watermark W (first -1: no command is stamped
 *     before 0): every later command is stamped after W;
 *   - the commands source takes each marker as its watermark (a punctuated
 *     strategy, sluice/source.h), so the participants' watermark is W;
 *   - the participants' "clock" appends markers W + LATENCY_MS: every later
 *     reply answers a command stamped after W;
 *   - the replies source takes those as its watermark; it never goes idle.
 *
 * So each round trip moves the saga's watermark on by LATENCY_MS, timeouts
 * fire exactly when no reply can come any more, and no reply is ever late.
 * Marker value (12 bytes, told from commands and replies, which are at
 * least 16, by its length):
 *
 *   offset  size  field
 *   0       4     "SLWM"
 *   4       8     watermark, int64 little-endian (ms)
 *
 * Orders. Before a fresh start the N orders are written to topic
 * saga.orders (8-byte id, stamped (id - 1) / 10 ms), then a marker of
 * SL_TIME_MAX: the orders' watermark goes to the end without the source
 * finishing. (A generator would finish, and once a task has finished the
 * engine takes no periodic checkpoint, engine/coord.c; the commands, sent
 * exactly-once, would then never be committed.)
 *
 * Faults. For a command (order, step, kind, attempt) a participant hashes
 * (--seed, order, step, kind, attempt) to u in [0, 1):
 *
 *   u < fail-rate                 action: half final failures (refused for
 *                                 good), half retryable (nothing applied);
 *                                 compensation: retryable
 *   u < fail-rate + timeout-rate  silent: no reply; half of these apply the
 *                                 command anyway (the reply was lost)
 *   else                          apply, reply success
 *
 * A participant applies each (order, step, kind) once: it answers a later
 * attempt of an applied or refused action with the result it gave, treats
 * the compensation of an action it never applied as a successful no-op, and
 * refuses that action if it comes after. Every application is one record in
 * topic saga.ledger:
 *
 *   offset  size  field
 *   0       8     order id, uint64 little-endian
 *   8       1     step (0 reserve, 1 charge, 2 ship)
 *   9       1     0 the action, 1 its compensation
 *   10      2     reserved, 0
 *   12      4     attempt, uint32
 *
 * Compensations have no attempts limit and never fail for good, so every
 * saga ends completed or compensated (failed: 0) whatever the rates.
 *
 * The end. "tally" counts the outcomes; when all N are in, the main thread
 * stops the orchestrator, then the participants (each a stop with a final
 * checkpoint when checkpoints are on). The report reads the committed
 * ledger back from the topic and checks it order by order: no (order, step,
 * kind) applied twice, no undo without its action, a shipped order holds
 * its item and was paid exactly once, an order not shipped holds nothing
 * and kept no payment, and as many orders shipped as completed.
 *
 * Checkpoints (--checkpoint-dir D): the orchestrator checkpoints into
 * D/orchestrator, the participants into D/participants, each exactly-once
 * (one broker transaction per checkpoint for each of its topic sinks,
 * --out is the transactional file sink); the topics live in D/broker unless
 * --dir is given. A rerun resumes both; replayed commands and replies are
 * the very same records, so outcomes do not change. Without checkpoints the
 * topics live in a temporary directory (or --dir), made afresh per run.
 */
#define _XOPEN_SOURCE 700
#include "jobs_saga.h"
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- the simulated world (event time, ms) ----------------------------------------- */

#define ORDERS_PER_MS 10
#define LATENCY_MS    100 /* a participant's reply: the command's time + this */
#define TIMEOUT_MS    250 /* per attempt, actions and compensations */
#define BACKOFF_MS    100 /* before attempt 2; doubled per attempt, at most ... */
#define BACKOFF_MAX   400
#define ATTEMPTS      3 /* per action (the pivot's timeouts retry past it) */
#define N_STEPS       3

#define T_ORDERS   "saga.orders"
#define T_COMMANDS "saga.commands"
#define T_REPLIES  "saga.replies"
#define T_LEDGER   "saga.ledger"

static const char *const step_names[N_STEPS] = {"reserve", "charge", "ship"};

/* --- small helpers ---------------------------------------------------------------- */

static uint64_t rd64(const void *p)
{
    const uint8_t *b = p;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static void wr64(void *p, uint64_t v)
{
    uint8_t *b = p;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t mix(uint64_t x) /* splitmix64's finaliser */
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* --- watermark markers ------------------------------------------------------------ */

#define MARKER_LEN 12
static const char marker_magic[4] = {'S', 'L', 'W', 'M'};

static int is_marker(const void *rec, uint32_t len)
{
    return len == MARKER_LEN && memcmp(rec, marker_magic, 4) == 0;
}

/* The topic sources' watermark strategy: a marker is the split's watermark. */
static int64_t marker_wm(const void *rec, uint32_t len, int64_t ts, int64_t max_ts, void *ud)
{
    (void)ts, (void)max_ts, (void)ud;
    return is_marker(rec, len) ? (int64_t)rd64((const uint8_t *)rec + 4) : SL_TIME_MIN;
}

/* A topic message's value as the record (the broker source's parse hook). */
static int value_parse(const char *v, size_t len, void *out, uint32_t max_len, int64_t *ts,
                       const char **reason, void *ud)
{
    (void)ts, (void)ud;
    if (len > max_len) {
        *reason = "record longer than a saga record can be";
        return -1;
    }
    memcpy(out, v, len);
    return (int)len;
}

/* The key of every topic record: the order id (markers: none). */
static sl_bytes order_key(const void *rec, uint32_t len, void *ud)
{
    (void)ud;
    if (len < 8 || is_marker(rec, len)) return (sl_bytes){NULL, 0};
    return (sl_bytes){rec, 8};
}

/* "clock": forwards its input and appends a marker max(W + add, add - 1)
 * whenever its input watermark W moves past the last one (and once, before
 * any, at the first record). One instance, so markers follow everything the
 * watermark covers. */
typedef struct clock_conf {
    int64_t add;
} clock_conf;

typedef struct clock_self {
    int64_t add, last;
} clock_self;

static int clock_open(sl_ctx *ctx, void **self)
{
    const clock_conf *c = sl_ctx_conf(ctx);
    clock_self *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->add = c->add;
    s->last = SL_TIME_MIN;
    *self = s;
    return 0;
}

static int clock_mark(sl_ctx *ctx, clock_self *s, int64_t m)
{
    if (m <= s->last) return 0;
    s->last = m;
    /* (a topic takes no negative timestamp; the value is what counts) */
    uint8_t *o = sl_emit(ctx, m < 0 ? 0 : m, 0, MARKER_LEN);
    if (!o) return sl_ctx_error(ctx);
    memcpy(o, marker_magic, 4);
    wr64(o + 4, (uint64_t)m);
    return 0;
}

static int clock_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    clock_self *s = self;
    int rc = sl_forward(ctx, in);
    if (!rc && s->last == SL_TIME_MIN) rc = clock_mark(ctx, s, s->add - 1);
    return rc;
}

static int clock_watermark(sl_ctx *ctx, void *self, int64_t wm)
{
    clock_self *s = self;
    int64_t m = wm >= SL_TIME_MAX - s->add ? SL_TIME_MAX : wm + s->add;
    if (m < s->add - 1) m = s->add - 1;
    return clock_mark(ctx, s, m);
}

static const sl_operator clock_op = {.version = SL_OPERATOR_VERSION,
                                     .kind = "saga-clock",
                                     .open = clock_open,
                                     .process = clock_process,
                                     .watermark = clock_watermark,
                                     .close = free};

/* --- the job's shared state ------------------------------------------------------- */

typedef struct saga_job {
    const saga_opts *o;
    uint64_t n;            /* orders */
    _Atomic uint64_t done; /* outcomes counted (restored ones included) */
    _Atomic int64_t done_ns;
    _Atomic uint64_t diverted;
    _Atomic uint64_t restored; /* outcomes counted before the checkpoint resumed from */
    uint64_t count[5];         /* by outcome kind, 1..4 (tally's, read after the run) */
    int64_t *reply_ns;         /* probe: last reply read, per order (index id) */
    int64_t *out_ns;           /* probe: outcome, per order */
} saga_job;

/* --- orchestrator ---------------------------------------------------------------- */

/* An order on topic saga.orders is its id (8 bytes, uint64 little-endian,
 * also the key), stamped (id - 1) / 10 ms; a marker of SL_TIME_MAX ends them. */
#define ORDER_LEN 8

/* The orders source's watermark: an order's own time less 1 (they come in
 * time order, and another order may share the millisecond), the final
 * marker's value (SL_TIME_MAX: no more orders). */
static int64_t orders_wm(const void *rec, uint32_t len, int64_t ts, int64_t max_ts, void *ud)
{
    (void)ts, (void)ud;
    return is_marker(rec, len) ? (int64_t)rd64((const uint8_t *)rec + 4) : max_ts - 1;
}

/* "starts": an order as a saga start; its data is the item and the amount
 * (8 bytes, made from the id). */
static int starts_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes b = sl_batch_bytes(in, i);
        if (is_marker(b.ptr, b.len)) continue; /* the end of the orders */
        if (b.len != ORDER_LEN)
            return sl_ctx_fail(ctx, SL_EINVAL, "topic %s: a record of %u bytes is no order",
                               T_ORDERS, b.len);
        uint64_t id = rd64(b.ptr);
        uint8_t data[8];
        uint64_t h = mix(id);
        uint32_t item = (uint32_t)(h % 1000), cents = (uint32_t)(100 + (h >> 32) % 100000);
        memcpy(data, &item, 4);
        memcpy(data + 4, &cents, 4);
        uint8_t *o = sl_emit(ctx, in->ts[i], 0, sl_saga_start_size(8));
        if (!o) return sl_ctx_error(ctx);
        sl_saga_start_write(o, id, data, 8);
    }
    return 0;
}

static const sl_operator starts_op = {
    .version = SL_OPERATOR_VERSION, .kind = "saga-starts", .process = starts_process};

/* "replies-in" / "commands-in": drops the markers (they have moved the
 * watermark already); with the probe, notes when each order's reply was read. */
static int unmark_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    saga_job *j = sl_ctx_conf(ctx);
    int64_t t = j && j->reply_ns ? now_ns() : 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        if (is_marker(r.ptr, r.len)) continue;
        if (t && r.len >= 8) {
            uint64_t id = rd64(r.ptr);
            if (id >= 1 && id <= j->n) j->reply_ns[id] = t;
        }
        k++;
    }
    if (k == in->count) return sl_forward(ctx, in);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        if (is_marker(r.ptr, r.len)) continue;
        int rc = sl_emit_copy(ctx, in->ts[i], in->hash[i], r.ptr, r.len);
        if (rc) return rc;
    }
    return 0;
}

static const sl_operator unmark_op = {
    .version = SL_OPERATOR_VERSION, .kind = "saga-unmark", .process = unmark_process};

/* The builders: a command carries the order's data (8 bytes). */
static int build_cmd(sl_buf *out, uint64_t id, const void *data, uint32_t len, uint32_t attempt,
                     void *ud)
{
    (void)id, (void)attempt, (void)ud;
    return sl_buf_append(out, data, len);
}

/* "tally": counts outcomes by kind (its snapshot carries the counts), tells
 * the main thread when all are in, and hands them on. One instance. */
typedef struct tally {
    saga_job *j;
    uint64_t count[5];
} tally;

static int tally_open(sl_ctx *ctx, void **self)
{
    tally *t = calloc(1, sizeof(*t));
    if (!t) return SL_ENOMEM;
    t->j = sl_ctx_conf(ctx);
    *self = t;
    return 0;
}

static void tally_publish(tally *t)
{
    uint64_t all = 0;
    for (int k = 1; k <= 4; k++) all += t->count[k];
    memcpy(t->j->count, t->count, sizeof(t->count));
    if (all >= t->j->n && atomic_load(&t->j->done) < t->j->n)
        atomic_store(&t->j->done_ns, now_ns());
    atomic_store(&t->j->done, all);
}

static int tally_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    tally *t = self;
    int64_t now = t->j->out_ns ? now_ns() : 0;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_saga_outcome oc;
        if (sl_saga_outcome_read(sl_batch_bytes(in, i), &oc))
            return sl_ctx_fail(ctx, SL_ECORRUPT, "tally: not an outcome record");
        t->count[oc.outcome]++;
        if (now && oc.saga_id >= 1 && oc.saga_id <= t->j->n) t->j->out_ns[oc.saga_id] = now;
    }
    tally_publish(t);
    return sl_forward(ctx, in);
}

static int tally_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    (void)ctx;
    tally *t = self;
    return sl_buf_append(out, t->count, sizeof(t->count));
}

static int tally_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    tally *t = self;
    if (len != sizeof(t->count))
        return sl_ctx_fail(ctx, SL_ECORRUPT, "tally: snapshot of %zu bytes, expected %zu", len,
                           sizeof(t->count));
    memcpy(t->count, data, len);
    uint64_t all = 0;
    for (int k = 1; k <= 4; k++) all += t->count[k];
    atomic_store(&t->j->restored, all);
    tally_publish(t);
    return 0;
}

static const sl_operator tally_op = {.version = SL_OPERATOR_VERSION,
                                     .kind = "saga-tally",
                                     .open = tally_open,
                                     .process = tally_process,
                                     .snapshot = tally_snapshot,
                                     .restore = tally_restore,
                                     .close = free};

static int diverted_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    saga_job *j = sl_ctx_conf(ctx);
    atomic_fetch_add(&j->diverted, in->count);
    return 0;
}

static int discard_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)ctx, (void)self, (void)in;
    return 0;
}

static const sl_operator discard_op = {
    .version = SL_OPERATOR_VERSION, .kind = "discard", .process = discard_process};

static const sl_operator diverted_op = {
    .version = SL_OPERATOR_VERSION, .kind = "saga-diverted", .process = diverted_process};

static const char *outcome_name(int k)
{
    switch (k) {
    case SL_SAGA_COMPLETED: return "completed";
    case SL_SAGA_COMPENSATED: return "compensated";
    case SL_SAGA_FAILED_TO_COMPENSATE: return "failed-to-compensate";
    default: return "failed-forward";
    }
}

/* An outcome line: order_id,outcome,steps (the actions that succeeded). */
static int outcome_format(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    (void)ts, (void)ud;
    sl_saga_outcome oc;
    int rc = sl_saga_outcome_read((sl_bytes){rec, len}, &oc);
    if (rc) return rc;
    return sl_buf_printf(out, "%" PRIu64 ",%s,%u\n", oc.saga_id, outcome_name(oc.outcome),
                         (unsigned)oc.done) < 0
               ? SL_ENOMEM
               : 0;
}

/* --- participants ---------------------------------------------------------------- */

/* Per order and step, what the participant did (table "ledger", 3 bytes). */
enum { P_NONE = 0, P_APPLIED, P_REFUSED, P_UNDONE, P_TOMBSTONE };

typedef struct part_conf {
    const saga_opts *o;
} part_conf;

typedef struct part_self {
    const saga_opts *o;
    sl_state *st;
} part_self;

static int part_open(sl_ctx *ctx, void **self)
{
    const part_conf *c = sl_ctx_conf(ctx);
    part_self *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->o = c->o;
    if (!(s->st = sl_ctx_state(ctx, "ledger", N_STEPS))) {
        free(s);
        return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
    }
    *self = s;
    return 0;
}

/* The fault decision: 0 apply and reply, 1 retryable, 2 final, 3 silent
 * (applied), 4 silent (not applied). */
static int decide(const saga_opts *o, const sl_saga_command *c)
{
    uint64_t h = mix(mix(mix(mix(o->seed ^ 0x5a6a) ^ c->saga_id) ^ c->step) ^
                     ((uint64_t)c->kind << 32 | c->attempt));
    double u = (double)(h >> 11) * 0x1p-53;
    if (u < o->fail_rate) return c->kind == SL_SAGA_ACTION && (h & 1) ? 2 : 1;
    if (u < o->fail_rate + o->timeout_rate) return h & 2 ? 3 : 4;
    return 0;
}

static int reply(sl_ctx *ctx, const sl_saga_command *c, int64_t ts, int status)
{
    uint8_t *o = sl_emit_port(ctx, 0, ts, 0, sl_saga_reply_size(0));
    if (!o) return sl_ctx_error(ctx);
    sl_saga_reply r = {.saga_id = c->saga_id,
                       .step = c->step,
                       .kind = c->kind,
                       .status = (uint8_t)status,
                       .attempt = c->attempt};
    sl_saga_reply_write(o, &r);
    return 0;
}

static int ledger(sl_ctx *ctx, const sl_saga_command *c, int64_t ts)
{
    uint8_t *o = sl_emit_port(ctx, 1, ts, 0, 16);
    if (!o) return sl_ctx_error(ctx);
    wr64(o, c->saga_id);
    o[8] = (uint8_t)c->step;
    o[9] = c->kind;
    o[10] = o[11] = 0;
    memcpy(o + 12, &c->attempt, 4);
    return 0;
}

static int part_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    part_self *s = self;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_saga_command c;
        sl_bytes r = sl_batch_bytes(in, i);
        if (sl_saga_command_read(r, &c) || c.step >= N_STEPS)
            return sl_ctx_fail(ctx, SL_ECORRUPT, "participants: not a saga command (%u bytes)",
                               r.len);
        int64_t ts = in->ts[i] + LATENCY_MS;
        uint8_t *st = sl_state_get(s->st, in->hash[i], r.ptr, 8, NULL);
        if (!st) return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
        uint8_t *p = &st[c.step];
        int rc = 0;
        if (c.kind == SL_SAGA_ACTION) {
            if (*p == P_APPLIED) { /* applied before: the same answer */
                rc = reply(ctx, &c, ts, SL_SAGA_SUCCESS);
            } else if (*p != P_NONE) { /* refused, undone, or undone before it came */
                rc = reply(ctx, &c, ts, SL_SAGA_FINAL);
            } else {
                int d = decide(s->o, &c);
                if (d == 2) *p = P_REFUSED;
                if (d == 0 || d == 3) {
                    *p = P_APPLIED;
                    rc = ledger(ctx, &c, ts);
                }
                if (!rc && d <= 2)
                    rc = reply(ctx, &c, ts,
                               d == 0   ? SL_SAGA_SUCCESS
                               : d == 1 ? SL_SAGA_RETRYABLE
                                        : SL_SAGA_FINAL);
            }
        } else {
            if (*p == P_UNDONE || *p == P_TOMBSTONE) { /* undone before: the same answer */
                rc = reply(ctx, &c, ts, SL_SAGA_SUCCESS);
            } else {
                int d = decide(s->o, &c);
                if (d == 0 || d == 3) {
                    if (*p == P_APPLIED) {
                        *p = P_UNDONE;
                        rc = ledger(ctx, &c, ts);
                    } else if (*p == P_NONE) {
                        *p = P_TOMBSTONE; /* never applied: a no-op, and refuse it later */
                    }
                }
                if (!rc && d <= 2)
                    rc = reply(ctx, &c, ts, d == 0 ? SL_SAGA_SUCCESS : SL_SAGA_RETRYABLE);
            }
        }
        if (rc) return rc;
    }
    return 0;
}

static void part_close(void *self)
{
    free(self);
}

static const sl_operator part_op = {.version = SL_OPERATOR_VERSION,
                                    .kind = "saga-participants",
                                    .open = part_open,
                                    .process = part_process,
                                    .close = part_close};

/* --- topics and directories ------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int has_checkpoint(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL) found = strncmp(e->d_name, "chk-", 4) == 0;
    closedir(d);
    return found;
}

/* Orders 1..n onto topic saga.orders, then the end marker, in batches. */
static int orders_fill(sl_broker *b, uint64_t n)
{
    enum { BATCH = 1024 };
    uint8_t val[BATCH][ORDER_LEN], end[MARKER_LEN];
    sl_record recs[BATCH];
    int rc = 0;
    for (uint64_t id = 1; id <= n && !rc;) {
        size_t k = 0;
        for (; k < BATCH && id <= n; k++, id++) {
            wr64(val[k], id);
            recs[k] = (sl_record){.key = val[k],
                                  .key_len = ORDER_LEN,
                                  .value = val[k],
                                  .value_len = ORDER_LEN,
                                  .timestamp = (int64_t)((id - 1) / ORDERS_PER_MS)};
        }
        rc = sl_log_append(b, T_ORDERS, 0, recs, k, NULL);
    }
    if (rc) return rc;
    memcpy(end, marker_magic, 4);
    wr64(end + 4, (uint64_t)SL_TIME_MAX);
    sl_record m = {
        .value = end, .value_len = MARKER_LEN, .timestamp = (int64_t)((n - 1) / ORDERS_PER_MS)};
    return sl_log_append(b, T_ORDERS, 0, &m, 1, NULL);
}

/* The run a checkpoint directory holds: DIR/saga.job, one line of the
 * options that decide the outcomes. Written (atomically) at a fresh start;
 * a resume with other options would wait for orders that are not on the
 * topic, or report another run's outcomes as its own, so it is refused. */
static void rate_str(double d, char *buf, size_t cap) /* shortest that reads back as d */
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) return;
    }
}

static void job_line(const saga_opts *o, char *buf, size_t cap)
{
    char f[32], t[32];
    rate_str(o->fail_rate, f, sizeof(f));
    rate_str(o->timeout_rate, t, sizeof(t));
    snprintf(buf, cap, "--orders %lld --fail-rate %s --timeout-rate %s --seed %" PRIu64 "%s%s\n",
             o->orders, f, t, o->seed, o->dir ? " --dir " : "", o->dir ? o->dir : "");
}

static int job_file(const char *cmd, const char *chk_dir, const saga_opts *o, int resume)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], want[PATH_MAX + 160], got[PATH_MAX + 160] = "";
    snprintf(path, sizeof(path), "%s/saga.job", chk_dir);
    job_line(o, want, sizeof(want));
    if (resume) {
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(got, sizeof(got), f)) got[0] = 0;
            fclose(f);
        }
        if (strcmp(got, want) == 0) return 0;
        got[strcspn(got, "\n")] = 0;
        if (!*got)
            fprintf(stderr,
                    "sluice %s: --checkpoint-dir %s holds checkpoints but no saga.job: not a "
                    "directory of this job (give another)\n",
                    cmd, chk_dir);
        else
            fprintf(stderr,
                    "sluice %s: --checkpoint-dir %s holds the run %s: resume it with those "
                    "options, or give another directory\n",
                    cmd, chk_dir, got);
        return 2;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int bad = !f || fputs(want, f) == EOF;
    if (f && fclose(f)) bad = 1;
    if (bad || rename(tmp, path)) {
        fprintf(stderr, "sluice %s: %s: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    return 0;
}

/* Fresh: make the four topics (one partition each) anew and write the n
 * orders; resuming: check that they are there. */
static int topics_prepare(const char *cmd, const char *dir, int fresh, uint64_t n)
{
    static const char *const names[] = {T_ORDERS, T_COMMANDS, T_REPLIES, T_LEDGER};
    sl_broker *b = NULL;
    int rc = sl_broker_open(&b, dir, SL_BROKER_CREATE);
    for (int i = 0; i < 4 && !rc; i++) {
        if (!fresh) { /* resuming: the run's topics must be there, as they were */
            sl_topic_info *info = NULL;
            rc = sl_topic_describe(b, names[i], &info);
            sl_topic_info_free(info);
            if (rc == SL_ENOENT) {
                fprintf(stderr,
                        "sluice %s: the checkpoints resume a run whose topic %s is not in %s "
                        "(deleted, or another --dir): give another --checkpoint-dir\n",
                        cmd, names[i], dir);
                sl_broker_close(b);
                return 1;
            }
            continue;
        }
        if ((rc = sl_topic_delete(b, names[i])) == SL_ENOENT) rc = 0;
        if (rc) break;
        sl_topic_conf tc;
        sl_topic_conf_init(&tc);
        tc.partitions = 1;
        rc = sl_topic_create(b, names[i], &tc);
    }
    if (!rc && fresh) rc = orders_fill(b, n);
    if (rc)
        fprintf(stderr, "sluice %s: topics in %s: %s\n", cmd, dir,
                b && *sl_broker_errmsg(b) ? sl_broker_errmsg(b) : sl_strerror(rc));
    sl_broker_close(b);
    return rc ? 1 : 0;
}

/* --- the report -------------------------------------------------------------------- */

typedef struct ledger_sums {
    long long reserved, released, charged, refunded, shipped;
    long long twice, orphan_undo, bad_shipped, bad_unshipped, unknown;
} ledger_sums;

/* Read the committed ledger and check it order by order (file comment). */
static int ledger_check(const char *cmd, const char *dir, uint64_t n, ledger_sums *s)
{
    uint8_t(*c)[N_STEPS][2] = calloc(n + 1, sizeof(*c));
    sl_broker *b = NULL;
    sl_log_reader *r = NULL;
    int rc = c ? sl_broker_open(&b, dir, 0) : SL_ENOMEM;
    if (!rc) rc = sl_log_reader_open(&r, b, T_LEDGER, 0, SL_OFFSET_BEGINNING);
    memset(s, 0, sizeof(*s));
    while (!rc) {
        sl_message m;
        rc = sl_log_reader_next(r, &m, 0);
        if (rc == SL_EAGAIN) {
            rc = 0;
            break;
        }
        if (rc) break;
        if (m.value_len != 16) {
            s->unknown++;
            continue;
        }
        uint64_t id = rd64(m.value);
        unsigned step = ((const uint8_t *)m.value)[8], kind = ((const uint8_t *)m.value)[9];
        if (id < 1 || id > n || step >= N_STEPS || kind > 1) {
            s->unknown++;
            continue;
        }
        if (c[id][step][kind] < 255) c[id][step][kind]++;
    }
    if (rc) {
        fprintf(stderr, "sluice %s: reading the ledger: %s\n", cmd,
                r   ? sl_log_reader_errmsg(r)
                : b ? sl_broker_errmsg(b)
                    : sl_strerror(rc));
    } else {
        for (uint64_t id = 1; id <= n; id++) {
            uint8_t(*o)[2] = c[id];
            for (int st = 0; st < N_STEPS; st++) {
                if (o[st][0] > 1 || o[st][1] > 1) s->twice++;
                if (o[st][1] > o[st][0]) s->orphan_undo++;
            }
            s->reserved += o[0][0];
            s->released += o[0][1];
            s->charged += o[1][0];
            s->refunded += o[1][1];
            s->shipped += o[2][0];
            int held = o[0][0] - o[0][1], kept = o[1][0] - o[1][1];
            if (o[2][0] ? held != 1 || o[1][0] != 1 || o[1][1] != 0 : held != 0 || kept != 0) {
                if (o[2][0])
                    s->bad_shipped++;
                else
                    s->bad_unshipped++;
            }
        }
    }
    sl_log_reader_close(r);
    sl_broker_close(b);
    free(c);
    return rc ? 1 : 0;
}

/* --- running ----------------------------------------------------------------------- */

/* A runner that only starts the pipeline (jobs_run applies the checkpoint
 * options first): both pipelines must run at once. */
static int start_only(void *ud, sl_pipeline *p, const char *cmd)
{
    (void)ud;
    if (sl_pipeline_start(p) == 0) return 0;
    fprintf(stderr, "sluice %s: %s\n", cmd, sl_pipeline_errmsg(p));
    return 1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void probe_figures(const saga_job *j, saga_result *res)
{
    int64_t *lat = malloc((size_t)j->n * sizeof(*lat));
    size_t k = 0;
    for (uint64_t id = 1; lat && id <= j->n; id++)
        if (j->reply_ns[id] && j->out_ns[id] >= j->reply_ns[id])
            lat[k++] = j->out_ns[id] - j->reply_ns[id];
    if (k) {
        qsort(lat, k, sizeof(*lat), cmp_i64);
        res->lat_p50_us = (double)lat[k / 2] / 1e3;
        res->lat_p99_us = (double)lat[k * 99 / 100] / 1e3;
        res->lat_max_us = (double)lat[k - 1] / 1e3;
    }
    res->lat_n = (long long)k;
    free(lat);
}

int jobs_saga_run(const char *cmd, const saga_opts *o, const jobs_common *c, saga_result *res)
{
    saga_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof(*res));
    res->lat_p50_us = res->lat_p99_us = res->lat_max_us = -1;
    saga_job j = {.o = o, .n = (uint64_t)o->orders};
    char tmp[] = "/tmp/sluice-saga.XXXXXX", dir_buf[PATH_MAX], chk_o[PATH_MAX], chk_p[PATH_MAX];
    const char *dir = o->dir;
    int made_tmp = 0, rc = 1, resume = 0;
    sl_pipeline *po = NULL, *pp = NULL;
    int started_o = 0, started_p = 0;
    sl_http *http = NULL; /* one endpoint shows both pipelines */
    jobs_common co = *c, cp = *c;
    co.http = cp.http = co.http_token = cp.http_token = NULL;
    if (c->checkpoint_dir) {
        if (mkdir(c->checkpoint_dir, 0777) && errno != EEXIST) {
            fprintf(stderr, "sluice %s: --checkpoint-dir %s: %s\n", cmd, c->checkpoint_dir,
                    strerror(errno));
            return 1;
        }
        snprintf(chk_o, sizeof(chk_o), "%s/orchestrator", c->checkpoint_dir);
        snprintf(chk_p, sizeof(chk_p), "%s/participants", c->checkpoint_dir);
        co.checkpoint_dir = chk_o;
        cp.checkpoint_dir = chk_p;
        resume = has_checkpoint(chk_o) || has_checkpoint(chk_p);
        int jf = job_file(cmd, c->checkpoint_dir, o, resume);
        if (jf) return jf;
        if (!dir) {
            snprintf(dir_buf, sizeof(dir_buf), "%s/broker", c->checkpoint_dir);
            dir = dir_buf;
        }
    } else if (!dir) {
        if (!mkdtemp(tmp)) {
            fprintf(stderr, "sluice %s: a temporary directory: %s\n", cmd, strerror(errno));
            return 1;
        }
        dir = tmp;
        made_tmp = 1;
    }
    if (topics_prepare(cmd, dir, !resume, j.n)) goto out;
    if (o->probe) {
        j.reply_ns = calloc(j.n + 1, sizeof(int64_t));
        j.out_ns = calloc(j.n + 1, sizeof(int64_t));
        if (!j.reply_ns || !j.out_ns) goto oom;
    }

    /* the saga */
    sl_saga_step steps[N_STEPS];
    for (int i = 0; i < N_STEPS; i++) {
        sl_saga_retry fwd = {ATTEMPTS, BACKOFF_MS, 2.0, BACKOFF_MAX};
        sl_saga_retry back = {0, BACKOFF_MS, 2.0, BACKOFF_MAX};
        steps[i] = (sl_saga_step){.name = step_names[i],
                                  .action = build_cmd,
                                  .compensation = i < 2 ? build_cmd : NULL,
                                  .timeout_ms = TIMEOUT_MS,
                                  .retry = fwd,
                                  .comp_timeout_ms = TIMEOUT_MS,
                                  .comp_retry = back};
    }
    sl_saga_def def = {.version = SL_SAGA_VERSION,
                       .steps = steps,
                       .n_steps = N_STEPS,
                       .max_data = 8,
                       .time = SL_SAGA_EVENT_TIME};
    sl_watermark_conf orders_wm_conf = {.punctuated = 1, .fn = orders_wm};
    sl_watermark_conf mark_wm = {.punctuated = 1, .fn = marker_wm};
    clock_conf ck_o = {0}, ck_p = {LATENCY_MS};
    part_conf pc = {o};
    int out_none = o->out && !*o->out;
    const char *out_path = o->out && *o->out ? o->out : NULL;
    sl_write_conf wc = {.path = out_path ? out_path : "-", .format = outcome_format};

    /* orchestrator */
    if (!(po = sl_pipeline_new()) || !(pp = sl_pipeline_new())) goto oom;
    jobs_common_apply(c, po);
    jobs_common_apply(c, pp);
    sl_broker_source_conf osc = {.dir = dir,
                                 .topic = T_ORDERS,
                                 .start = SL_OFFSET_BEGINNING,
                                 .parse = value_parse,
                                 .max_len = MARKER_LEN};
    sl_stream *orders = sl_pipeline_broker(po, "orders", &osc, 0, &orders_wm_conf);
    sl_stream *starts = sl_stream_apply(orders, "starts", &starts_op, NULL, 0);
    sl_broker_source_conf rsc = {.dir = dir,
                                 .topic = T_REPLIES,
                                 .start = SL_OFFSET_BEGINNING,
                                 .parse = value_parse,
                                 .max_len = 4096};
    sl_stream *rin = sl_pipeline_broker(po, "replies", &rsc, 0, &mark_wm);
    rin = sl_stream_apply(rin, "replies-in", &unmark_op, j.reply_ns ? &j : NULL, 0);
    sl_stream *saga = sl_stream_saga(starts, rin, "saga", &def);
    sl_stream *ck = sl_stream_parallelism(sl_stream_apply(saga, "clock", &clock_op, &ck_o, 0), 1);
    sl_broker_sink_conf csk = {.dir = dir,
                               .topic = T_COMMANDS,
                               .key = order_key,
                               .transactional_id = "sluice-saga-commands"};
    sl_stream_sink(ck, "commands-out", &sl_sink_broker, &csk);
    sl_stream *oc = sl_stream_parallelism(
        sl_stream_apply(sl_stream_saga_outcomes(saga), "tally", &tally_op, &j, 0), 1);
    if (out_none)
        sl_stream_sink(oc, "outcomes-out", &discard_op, NULL);
    else
        sl_stream_sink(oc, "outcomes-out", &sl_sink_write, &wc);
    sl_stream_sink(sl_stream_saga_diverted(saga), "diverted", &diverted_op, &j);

    /* participants */
    sl_broker_source_conf csc = {.dir = dir,
                                 .topic = T_COMMANDS,
                                 .start = SL_OFFSET_BEGINNING,
                                 .parse = value_parse,
                                 .max_len = 4096};
    sl_stream *cin = sl_pipeline_broker(pp, "commands", &csc, 0, &mark_wm);
    cin = sl_stream_apply(cin, "commands-in", &unmark_op, NULL, 0);
    cin = sl_stream_key_by(cin, "by-order", order_key, NULL);
    sl_stream *part = sl_stream_apply(cin, "participants", &part_op, &pc, 0);
    sl_stream *led = sl_stream_side(part, 1, 0);
    sl_stream *rck = sl_stream_parallelism(sl_stream_apply(part, "clock", &clock_op, &ck_p, 0), 1);
    sl_broker_sink_conf rsk = {.dir = dir,
                               .topic = T_REPLIES,
                               .key = order_key,
                               .transactional_id = "sluice-saga-replies"};
    sl_stream_sink(rck, "replies-out", &sl_sink_broker, &rsk);
    sl_broker_sink_conf lsk = {
        .dir = dir, .topic = T_LEDGER, .key = order_key, .transactional_id = "sluice-saga-ledger"};
    sl_stream_sink(led, "ledger-out", &sl_sink_broker, &lsk);

    /* the broker sinks run as one writer each (and "tally" feeds the outcomes') */
    static const char *const one_po[] = {"commands-out", "outcomes-out", "diverted"};
    static const char *const one_pp[] = {"replies-out", "ledger-out"};
    for (int i = 0; i < 3; i++) sl_pipeline_set_node_parallelism(po, one_po[i], 1);
    for (int i = 0; i < 2; i++) sl_pipeline_set_node_parallelism(pp, one_pp[i], 1);

    if (c->explain) {
        rc = jobs_run(NULL, po, cmd, &co);
        if (!rc) rc = jobs_run(NULL, pp, cmd, &cp);
        goto out;
    }
    if ((rc = jobs_http_open(cmd, c, &http)) != 0) goto out;
    if (http && (sl_http_add_pipeline(http, "orchestrator", po) ||
                 sl_http_add_pipeline(http, "participants", pp)))
        goto oom;
    int64_t t0 = now_ns();
    jobs_runner starter = {start_only, NULL};
    if ((rc = jobs_run(&starter, pp, cmd, &cp)) != 0) goto out;
    started_p = 1;
    if ((rc = jobs_run(&starter, po, cmd, &co)) != 0) goto out;
    started_o = 1;
    rc = 1;
    /* Wait for every outcome, or for either side to fail. */
    for (;;) {
        int w = sl_pipeline_wait(po, 20);
        if (w != SL_EAGAIN) {
            started_o = 0;
            if (w) {
                fprintf(stderr, "sluice %s: orchestrator: %s\n", cmd, sl_pipeline_errmsg(po));
                goto out;
            }
            break; /* ended by itself: cannot happen while the replies topic is followed */
        }
        if (atomic_load(&j.done) >= j.n) {
            sl_pipeline_cancel(po); /* a stop with a final checkpoint */
            started_o = 0;
            if (sl_pipeline_wait(po, -1)) {
                fprintf(stderr, "sluice %s: orchestrator: %s\n", cmd, sl_pipeline_errmsg(po));
                goto out;
            }
            break;
        }
        w = sl_pipeline_wait(pp, 0);
        if (w != SL_EAGAIN) {
            started_p = 0;
            fprintf(stderr, "sluice %s: participants: %s\n", cmd,
                    w ? sl_pipeline_errmsg(pp) : "ended before the orchestrator");
            goto out;
        }
    }
    sl_pipeline_cancel(pp);
    started_p = 0;
    if (sl_pipeline_wait(pp, -1)) {
        fprintf(stderr, "sluice %s: participants: %s\n", cmd, sl_pipeline_errmsg(pp));
        goto out;
    }
    int64_t t_end = atomic_load(&j.done_ns);
    res->seconds = (double)((t_end ? t_end : now_ns()) - t0) / 1e9;
    sl_checkpoint_stats cs;
    sl_pipeline_checkpoint_stats(po, &cs);
    res->resumed_from = cs.restored_from;
    if (j.reply_ns) probe_figures(&j, res);

    /* the report */
    res->sagas = (long long)j.n;
    res->completed = (long long)j.count[SL_SAGA_COMPLETED];
    res->compensated = (long long)j.count[SL_SAGA_COMPENSATED];
    res->failed =
        (long long)(j.count[SL_SAGA_FAILED_TO_COMPENSATE] + j.count[SL_SAGA_FAILED_FORWARD]);
    res->stuck = res->sagas - res->completed - res->compensated - res->failed;
    res->diverted = (long long)atomic_load(&j.diverted);
    res->restored = (long long)atomic_load(&j.restored);
    ledger_sums ls;
    if (ledger_check(cmd, dir, j.n, &ls)) goto out;
    res->consistent = !ls.twice && !ls.orphan_undo && !ls.bad_shipped && !ls.bad_unshipped &&
                      !ls.unknown && ls.shipped == res->completed;
    if (!o->quiet) {
        printf("ledger inventory: reserved %lld, released %lld, held %lld\n", ls.reserved,
               ls.released, ls.reserved - ls.released);
        printf("ledger payments: charged %lld, refunded %lld, kept %lld\n", ls.charged, ls.refunded,
               ls.charged - ls.refunded);
        printf("ledger shipping: shipped %lld\n", ls.shipped);
        if (!res->consistent)
            printf("ledger problems: applied twice %lld, undone without the action %lld, "
                   "shipped but not held and paid once %lld, not shipped but held or paid "
                   "%lld, unreadable entries %lld, shipped %lld against completed %lld\n",
                   ls.twice, ls.orphan_undo, ls.bad_shipped, ls.bad_unshipped, ls.unknown,
                   ls.shipped, res->completed);
        printf("sagas: %lld, completed: %lld, compensated: %lld, failed: %lld, stuck: %lld, "
               "ledger: %s\n",
               res->sagas, res->completed, res->compensated, res->failed, res->stuck,
               res->consistent ? "consistent" : "inconsistent");
        if (fflush(stdout) || ferror(stdout)) {
            fprintf(stderr, "sluice %s: writing the report: %s\n", cmd, strerror(errno));
            goto out;
        }
    }
    rc = res->consistent && !res->failed && !res->stuck ? 0 : 1;
    goto out;
oom:
    fprintf(stderr, "sluice %s: out of memory\n", cmd);
    rc = 1;
out:
    if (started_o) {
        sl_pipeline_cancel(po);
        sl_pipeline_wait(po, -1);
    }
    if (started_p) {
        sl_pipeline_cancel(pp);
        sl_pipeline_wait(pp, -1);
    }
    sl_http_stop(http); /* before the pipelines it shows are freed */
    sl_pipeline_free(po);
    sl_pipeline_free(pp);
    free(j.reply_ns);
    free(j.out_ns);
    if (made_tmp) nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

/* --- the command line -------------------------------------------------------------- */

static void help(void)
{
    printf("usage: sluice run saga --orders N [--fail-rate F] [--timeout-rate T] [--seed S]\n"
           "                       [--out FILE] [--dir DIR] [--threads N] [--parallelism P]\n"
           "                       [--checkpoint-dir DIR [--checkpoint-interval I] ...]\n"
           "Runs N orders (ids 1..N) as sagas: reserve inventory -> charge payment -> ship,\n"
           "compensated in reverse (release, refund) when a step fails for good or times out;\n"
           "shipping is the pivot. The participants (inventory, payments, shipping) are a\n"
           "second pipeline of this process that talks to the orchestrator only through\n"
           "topics of the built-in broker; they fail a command at rate F (default 0), stay\n"
           "silent at rate T (default 0), each decided by a hash of S (default 1), the order,\n"
           "the step and the attempt, so the outcomes are the same whatever the threads, the\n"
           "timing and the crashes. Writes `order_id,outcome,steps` per order (outcome:\n"
           "completed, compensated, failed-to-compensate, failed-forward; steps: actions\n"
           "acknowledged as applied; one applied whose reply was lost is compensated\n"
           "without being counted) to FILE (default standard output), then the ledgers and\n"
           "`sagas: N, completed: C, compensated: K, failed: F, stuck: S, ledger: consistent`.\n"
           "Exit 1 unless consistent with nothing failed or stuck.\n"
           "  --dir DIR          broker directory for the job's topics saga.orders,\n"
           "                     saga.commands, saga.replies and saga.ledger (made afresh\n"
           "                     unless resuming);\n"
           "                     default: DIR/broker of --checkpoint-dir, else a temporary one\n"
           "  --checkpoint-dir   the orchestrator and the participants checkpoint into\n"
           "                     DIR/orchestrator and DIR/participants (exactly-once); a rerun\n"
           "                     resumes both (with the same options: DIR/saga.job)\n"
           "  --threads N        worker threads of each pipeline\n"
           "  --parallelism P    instances of the saga and participant operators (default:\n"
           "                     --threads N, else 1)\n");
    fputs(jobs_trace_help, stdout);
}

/* A rate in [0, 1]: "0.1", "5%" is not taken (say it plainly). */
static int parse_rate(const char *cmd, const char *opt, const char *v, double *out)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (!*v || errno || *end || !(d >= 0.0 && d <= 1.0)) {
        fprintf(stderr, "sluice %s: %s needs a rate from 0 to 1 (e.g. 0.1), not '%s'\n", cmd, opt,
                v);
        return 2;
    }
    *out = d;
    return 0;
}

int job_saga(int argc, char **argv, const jobs_runner *run)
{
    (void)run; /* two pipelines at once, each run plainly */
    const char *cmd = "run saga";
    enum { O_ORDERS = JOBS_OPT_FIRST_FREE, O_FAIL, O_TIMEOUT, O_SEED, O_OUT };
    static const struct option opts[] = {{"orders", required_argument, NULL, O_ORDERS},
                                         {"fail-rate", required_argument, NULL, O_FAIL},
                                         {"timeout-rate", required_argument, NULL, O_TIMEOUT},
                                         {"seed", required_argument, NULL, O_SEED},
                                         {"out", required_argument, NULL, O_OUT},
                                         {"dir", required_argument, NULL, JOBS_OPT_DIR},
                                         JOBS_COMMON_OPTIONS,
                                         {0}};
    saga_opts o = {.seed = 1};
    jobs_common common = {0};
    long long v;
    int opt, ret = 0, have_orders = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        ret = 0;
        switch (opt) {
        case O_ORDERS:
            ret = jobs_int(cmd, "--orders", optarg, 1, 100000000, &o.orders);
            have_orders = 1;
            break;
        case O_FAIL: ret = parse_rate(cmd, "--fail-rate", optarg, &o.fail_rate); break;
        case O_TIMEOUT: ret = parse_rate(cmd, "--timeout-rate", optarg, &o.timeout_rate); break;
        case O_SEED:
            if (!(ret = jobs_int(cmd, "--seed", optarg, 0, INT64_MAX, &v))) o.seed = (uint64_t)v;
            break;
        case O_OUT:
            if (!*optarg) {
                fprintf(stderr, "sluice %s: --out needs a file name\n", cmd);
                ret = 2;
            }
            o.out = optarg;
            break;
        case JOBS_OPT_DIR: ret = jobs_dir_opt(cmd, optarg, &o.dir); break;
        default: ret = jobs_opt(cmd, opt, argv, &common); break;
        }
        if (ret == JOBS_HELP) {
            help();
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    if (!have_orders) {
        fprintf(stderr, "sluice %s: --orders N is required (how many orders to run)\n", cmd);
        return 2;
    }
    if (o.fail_rate + o.timeout_rate > 1.0) {
        fprintf(stderr,
                "sluice %s: --fail-rate %g plus --timeout-rate %g is more than 1 (they are "
                "shares of the same commands)\n",
                cmd, o.fail_rate, o.timeout_rate);
        return 2;
    }
    if (common.from_checkpoint) {
        fprintf(stderr,
                "sluice %s: --from-checkpoint is not supported (two pipelines resume together "
                "from --checkpoint-dir)\n",
                cmd);
        return 2;
    }
    if (!common.checkpoint_dir && common.chk_opt_given) {
        fprintf(stderr, "sluice %s: %s needs --checkpoint-dir\n", cmd, common.chk_opt_given);
        return 2;
    }
    saga_result res;
    int rc = jobs_saga_run(cmd, &o, &common, &res);
    if (res.sagas && !common.explain) {
        /* the summary line every job ends with (stderr) */
        double rate = res.seconds > 0 ? (double)(res.sagas - res.restored) / res.seconds : 0;
        char from[96] = "";
        if (res.resumed_from)
            snprintf(from, sizeof(from), ", resumed from checkpoint %" PRIu64 " (%lld had ended)",
                     res.resumed_from, res.restored);
        fprintf(stderr,
                "sluice %s: %lld sagas, %lld stale or unknown replies diverted, %.2f s, "
                "%.0f sagas/s%s\n",
                cmd, res.sagas, res.diverted, res.seconds, rate, from);
    }
    return rc;
}
