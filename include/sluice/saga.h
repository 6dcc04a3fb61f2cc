/*
 * sluice/saga.h - the saga operator: long-running multi-step transactions
 * with compensations, timeouts and retries, orchestrated as keyed state
 * (public API).
 *
 * A saga is an ordered list of named steps. Each step has an action (a
 * builder that makes the command bytes from the saga's data), a
 * compensation (the undo command; NULL marks a pivot), a timeout per
 * attempt and a retry policy, for the action and for the compensation.
 * The operator reads two inputs - new sagas ("starts") and replies from the
 * participants - and has three outputs:
 *
 *   port  stream                        records
 *   0     sl_stream_saga()              commands for the participants
 *   1     sl_stream_saga_outcomes()     one outcome per saga, when it ends
 *   2     sl_stream_saga_diverted()     input that changed no saga, with why
 *
 * Semantics (the state machine of operators/saga/saga.c, which tests/unit/
 * test_saga.c walks path by path):
 *
 *  - A start runs step 0's action (attempt 1). A success reply for the
 *    outstanding command runs the next step; after the last one the saga is
 *    COMPLETED.
 *  - A retryable failure, or no reply before the attempt's timeout, is
 *    retried after the backoff (backoff_ms, times multiplier per further
 *    attempt, capped at max_backoff_ms) while attempts remain. A final
 *    failure is never retried.
 *  - The pivot is the first step whose compensation is NULL. Before the
 *    pivot has succeeded, a step that fails for good starts the
 *    compensation: every completed step is undone in reverse order. A final
 *    failure or retries used up by retryable failures mean the participant
 *    did not apply the action, so that step itself is not compensated. The
 *    last attempt timing out leaves it in doubt (it may have been applied
 *    and its reply lost), so it IS compensated, first: participants must
 *    treat the compensation of an action they never applied as a success
 *    (a no-op).
 *  - The pivot itself cannot be undone: a timeout of its action is always
 *    retried, past the attempts limit (it may have been applied); only a
 *    definite answer ends it: a final failure, or a retryable failure on an
 *    attempt at or past the limit, compensates the steps before it.
 *  - After the pivot has succeeded the saga only goes forward: retryable
 *    failures and timeouts of later steps are retried without limit
 *    (attempts is ignored there; backoff keeps growing up to max_backoff_ms).
 *    A final failure there breaks the participant's contract: the outcome is
 *    FAILED_FORWARD, naming the step (needs a human).
 *  - A compensation is retried (its own timeout and policy) until it
 *    succeeds; a final failure or its attempts used up end the saga as
 *    FAILED_TO_COMPENSATE, naming the step. When every compensation has
 *    succeeded the saga is COMPENSATED.
 *  - Replies are matched to the one command outstanding: (step, kind,
 *    attempt) must be equal. Anything else - a reply for an unknown saga, a
 *    finished saga, an earlier attempt, another step or kind, a duplicate,
 *    a reply while the saga waits out a backoff - goes to port 2 and never
 *    changes a saga. So does a start for a saga id that is running or has
 *    finished (finished ids are remembered: a duplicate start never runs a
 *    saga twice), a malformed record, and a start whose data is longer than
 *    def.max_data.
 *  - Idempotency: a command's idempotency key is (saga id, step, kind), the
 *    first 12 bytes of the command record; all attempts of one command share
 *    it. A participant applies a key once and answers every further attempt
 *    of it with the result it gave (under the new attempt number).
 *
 * Time. def.time chooses the domain of timeouts and backoffs:
 *
 *  - SL_SAGA_EVENT_TIME (default): "now" is the event time of the record or
 *    timer being handled; deadlines are event-time timers, fired by the
 *    watermark and checkpointed by the engine. Outcomes then depend only on
 *    the inputs (records and their timestamps), never on thread timing, so
 *    tests and replays after a crash give the same result. A reply whose
 *    event time is at or past the outstanding attempt's deadline counts as
 *    arriving after the timeout, even if the watermark has not fired it yet.
 *    The participants must stamp replies with event times that move the
 *    watermark (e.g. the command's time plus their latency), and an idle
 *    input must not hold it back. A late reply (behind the watermark) sets
 *    its saga's next timer behind it too: that timer fires at the next
 *    advance of the watermark, as in Flink.
 *  - SL_SAGA_PROCESSING_TIME: "now" is the wall clock (sl_clock_ms()),
 *    natural against live services that may never answer. Deadlines are
 *    kept in the saga's state and re-armed after a restore (a deadline that
 *    passed while the job was down fires at once). Outcomes then depend on
 *    timing, as a live system's do. The engine drops processing-time timers
 *    still pending when the input ends: sagas running then end in a later
 *    run resumed from the checkpoint, not in this one.
 *
 * Emitted records carry "now" as their event time and the saga id's hash.
 * The reason text of a reply is not kept (compact state): an outcome's
 * reason is made from its cause, step names and attempt.
 *
 * State: engine keyed state, checkpointed with the rest of the job. A running
 * saga is one value of 24 + max_data bytes (rounded to 8) in table "run" plus
 * one pending timer; a finished saga leaves 8 bytes in table "done" (when it
 * may be forgotten), so that duplicates are recognised. Nothing is allocated
 * per record.
 *
 * Finished ids. With def.done_ttl_ms = 0 a finished id is kept for ever: a
 * start for it is always a duplicate, and the table grows by one entry per
 * saga. With done_ttl_ms = T > 0 the id is forgotten T ms after the outcome
 * (its "now"): a timer removes the entry, and, by the same rule as a
 * deadline, a record whose time is at or past that moment already finds the
 * id forgotten, whether or not the timer has fired - so outcomes stay
 * determined by the input. A start for a forgotten id runs a new saga, and a
 * reply for it is diverted as UNKNOWN: choose T longer than duplicates and
 * stray replies can arrive late (as Flink's state TTL, or a Kafka producer's
 * idempotence window).
 *
 * Ownership: sl_stream_saga() copies the def, its step array and the step
 * names (a stack def is fine); the builders' ud pointers are borrowed and
 * must outlive the pipeline.
 *
 * Record formats. All integers little-endian. Every record is variable
 * length (stream width 0).
 *
 * Start (input 0):
 *
 *   offset  size  field
 *   0       8     saga id, uint64
 *   8       rest  the saga's data (at most def.max_data bytes)
 *
 * Reply (input 1):
 *
 *   offset  size  field
 *   0       8     saga id, uint64
 *   8       2     step, uint16 (0 .. n_steps-1)
 *   10      1     kind: 0 action, 1 compensation
 *   11      1     status: 0 success, 1 retryable failure, 2 final failure
 *   12      4     attempt, uint32 (the command's, from 1)
 *   16      rest  reason (text, may be empty)
 *
 * Command (port 0):
 *
 *   offset  size  field
 *   0       8     saga id, uint64            \
 *   8       2     step, uint16                | idempotency key
 *   10      1     kind: 0 action, 1 comp.     | (12 bytes)
 *   11      1     reserved, 0                /
 *   12      4     attempt, uint32 (from 1)
 *   16      rest  the command bytes (what the step's builder made)
 *
 * Outcome (port 1):
 *
 *   offset  size  field
 *   0       8     saga id, uint64
 *   8       1     outcome: 1 completed, 2 compensated, 3 failed to
 *                 compensate, 4 failed forward
 *   9       1     cause: 0 none (completed), 1 final failure, 2 retries used
 *                 up, 3 timeout after the last attempt, 4 a builder failed
 *   10      2     step the outcome names: completed: the last step;
 *                 compensated, failed forward: the step that failed;
 *                 failed to compensate: the step whose compensation failed
 *   12      2     failed step: the step whose failure ended the forward
 *                 run (0xFFFF when completed)
 *   14      2     done: actions that succeeded
 *   16      2     undone: compensations that succeeded
 *   18      2     reserved, 0
 *   20      4     attempt of the last command the saga sent
 *   24      rest  reason (text)
 *
 * Diverted (port 2, a dead-letter port):
 *
 *   offset  size  field
 *   0       1     input: 0 starts, 1 replies
 *   1       1     why (enum sl_saga_why)
 *   2       2     reserved, 0
 *   4       4     n: length of the record, uint32
 *   8       n     the input record, unchanged
 */
#ifndef SLUICE_SAGA_H
#define SLUICE_SAGA_H

#include "sluice/export.h"
#include <stdint.h>
#include "sluice/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SL_SAGA_VERSION          1
#define SL_SAGA_MAX_STEPS        1024
#define SL_SAGA_DEFAULT_MAX_DATA 64
#define SL_SAGA_MAX_DATA         65535

/* Build a command from the saga's data into `out` (append; it starts
 * empty). attempt counts from 1. Return 0, or a negative SL_E code: the
 * command then counts as failed for good (cause "a builder failed"), except
 * SL_ENOMEM, which fails the job. */
typedef int (*sl_saga_build_fn)(sl_buf *out, uint64_t saga_id, const void *data, uint32_t len,
                                uint32_t attempt, void *ud);

typedef struct sl_saga_retry {
    uint32_t attempts;      /* attempts in all, the first included; 0: no limit */
    int64_t backoff_ms;     /* wait before attempt 2 (>= 0) */
    double multiplier;      /* each later wait is the previous times this; <= 1: constant */
    int64_t max_backoff_ms; /* cap on a wait; 0: none */
} sl_saga_retry;

typedef struct sl_saga_step {
    const char *name;              /* copied; for messages and outcomes */
    sl_saga_build_fn action;       /* required */
    sl_saga_build_fn compensation; /* NULL: a pivot (see above) */
    int64_t timeout_ms;            /* per action attempt, > 0 */
    sl_saga_retry retry;           /* of the action */
    int64_t comp_timeout_ms;       /* per compensation attempt; 0: timeout_ms */
    sl_saga_retry comp_retry;      /* of the compensation */
    void *ud;                      /* for both builders (borrowed) */
} sl_saga_step;

enum sl_saga_time { SL_SAGA_EVENT_TIME = 0, SL_SAGA_PROCESSING_TIME = 1 };

typedef struct sl_saga_def {
    int version; /* SL_SAGA_VERSION */
    const sl_saga_step *steps;
    uint32_t n_steps;  /* 1 .. SL_SAGA_MAX_STEPS */
    uint32_t max_data; /* data bytes kept per saga; 0: SL_SAGA_DEFAULT_MAX_DATA */
    int time;          /* enum sl_saga_time */
    /* How long a finished saga's id is remembered, in the time domain's
     * ms from its outcome; 0: for ever. See "Finished ids" above. */
    int64_t done_ttl_ms;
} sl_saga_def;

enum sl_saga_kind { SL_SAGA_ACTION = 0, SL_SAGA_COMPENSATION = 1 };
enum sl_saga_status { SL_SAGA_SUCCESS = 0, SL_SAGA_RETRYABLE = 1, SL_SAGA_FINAL = 2 };
enum sl_saga_outcome_kind {
    SL_SAGA_COMPLETED = 1,
    SL_SAGA_COMPENSATED = 2,
    SL_SAGA_FAILED_TO_COMPENSATE = 3,
    SL_SAGA_FAILED_FORWARD = 4
};
enum sl_saga_cause {
    SL_SAGA_CAUSE_NONE = 0,
    SL_SAGA_CAUSE_FINAL = 1,
    SL_SAGA_CAUSE_RETRIES = 2,
    SL_SAGA_CAUSE_TIMEOUT = 3,
    SL_SAGA_CAUSE_BUILDER = 4
};
enum sl_saga_why {
    SL_SAGA_WHY_UNKNOWN = 1,   /* reply for a saga id never started */
    SL_SAGA_WHY_FINISHED = 2,  /* reply for a saga that has ended */
    SL_SAGA_WHY_STALE = 3,     /* not the outstanding command (attempt, step, kind) */
    SL_SAGA_WHY_DUPLICATE = 4, /* start for a saga id running or finished */
    SL_SAGA_WHY_MALFORMED = 5, /* too short, bad kind, status or step */
    SL_SAGA_WHY_TOO_LARGE = 6  /* start with more than max_data bytes of data */
};

/* The saga node. starts and replies are records as drawn above; the node
 * keys both by saga id itself (nodes "<name>.starts" and "<name>.replies"),
 * since it knows where the id is. Returns the command stream (port 0). */
SL_API sl_stream *sl_stream_saga(sl_stream *starts, sl_stream *replies, const char *name,
                                 const sl_saga_def *def);
SL_API sl_stream *sl_stream_saga_outcomes(sl_stream *saga_out); /* port 1 */
SL_API sl_stream *sl_stream_saga_diverted(sl_stream *saga_out); /* port 2 */

/* The key function the node uses (the 8-byte saga id at offset 0). */
SL_API sl_bytes sl_saga_key(const void *rec, uint32_t len, void *ud);

/* --- reading and writing records --------------------------------------------- */

typedef struct sl_saga_reply {
    uint64_t saga_id;
    uint16_t step;
    uint8_t kind;   /* enum sl_saga_kind */
    uint8_t status; /* enum sl_saga_status */
    uint32_t attempt;
    sl_bytes reason;
} sl_saga_reply;

typedef struct sl_saga_command {
    uint64_t saga_id;
    uint16_t step;
    uint8_t kind;
    uint32_t attempt;
    sl_bytes key; /* the idempotency key: the record's first 12 bytes */
    sl_bytes cmd; /* the command bytes */
} sl_saga_command;

typedef struct sl_saga_outcome {
    uint64_t saga_id;
    uint8_t outcome; /* enum sl_saga_outcome_kind */
    uint8_t cause;   /* enum sl_saga_cause */
    uint16_t step, failed_step, done, undone;
    uint32_t attempt;
    sl_bytes reason;
} sl_saga_outcome;

typedef struct sl_saga_diverted_rec {
    int input; /* 0 starts, 1 replies */
    int why;   /* enum sl_saga_why */
    sl_bytes rec;
} sl_saga_diverted_rec;

#define SL_SAGA_START_HDR    8
#define SL_SAGA_REPLY_HDR    16
#define SL_SAGA_COMMAND_HDR  16
#define SL_SAGA_OUTCOME_HDR  24
#define SL_SAGA_DIVERTED_HDR 8

/* Readers: 0, or SL_ECORRUPT for a record that is not one (too short, or
 * a kind / status / outcome out of range). Views point into rec. */
SL_API int sl_saga_reply_read(sl_bytes rec, sl_saga_reply *out);
SL_API int sl_saga_command_read(sl_bytes rec, sl_saga_command *out);
SL_API int sl_saga_outcome_read(sl_bytes rec, sl_saga_outcome *out);
SL_API int sl_saga_diverted_read(sl_bytes rec, sl_saga_diverted_rec *out);

/* Writers for participants and feeders: the record's size, and writing it
 * into dst (that many bytes, e.g. from sl_emit()). */
static inline uint32_t sl_saga_start_size(uint32_t data_len)
{
    return SL_SAGA_START_HDR + data_len;
}
SL_API void sl_saga_start_write(void *dst, uint64_t saga_id, const void *data, uint32_t len);
static inline uint32_t sl_saga_reply_size(uint32_t reason_len)
{
    return SL_SAGA_REPLY_HDR + reason_len;
}
/* r->reason is copied after the header. */
SL_API void sl_saga_reply_write(void *dst, const sl_saga_reply *r);
/* The reply to command c with `status` (reason may be NULL): for
 * participants, e.g. sl_emit(ctx, ts, hash, sl_saga_reply_size(n)). */
SL_API void sl_saga_reply_to(void *dst, const sl_saga_command *c, int status, const char *reason,
                             uint32_t reason_len);

/* Names for messages: "completed", "compensated", "failed-to-compensate",
 * "failed-forward"; "final failure", ...; "unknown saga", ... ("?" when out
 * of range). */
SL_API const char *sl_saga_outcome_name(int outcome);
SL_API const char *sl_saga_cause_name(int cause);
SL_API const char *sl_saga_why_name(int why);

#ifdef __cplusplus
}
#endif
#endif
