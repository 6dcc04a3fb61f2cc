/*
 * operators/saga/saga_int.h - private: the saga state machine without the
 * engine, so that tests can drive it step by step in a closed loop with a
 * model of the participants (operators/saga/saga.c implements it; the operator
 * there is a thin shell that maps the io callbacks to sl_emit_port and
 * timers). Not under include/: internals, with the sli_ prefix.
 */
#ifndef SLUICE_OPERATORS_SAGA_SAGA_INT_H
#define SLUICE_OPERATORS_SAGA_SAGA_INT_H

#include <stdint.h>
#include "sluice/operator.h"
#include "sluice/saga.h"

/* One running saga: the value of table "run" (40 bytes + data, rounded to
 * 8). The key is the saga id's 8 bytes (little-endian, as in the records).
 *
 *   offset  size  field
 *   0       8     deadline: the pending timer's time (timeout or end of a
 *                 backoff), INT64_MIN when none
 *   8       8     started: when the saga started (wall clock, ns; 0 without spans)
 *   16      8     sent: when the current command was sent (wall clock, ns)
 *   24      4     attempt of the current command (from 1)
 *   28      2     step: the current step (forward or compensating)
 *   30      1     phase (enum below)
 *   31      1     flags: bit 0 pivot passed
 *   32      2     failed step (the one that started the compensation)
 *   34      1     cause of the compensation (enum sl_saga_cause)
 *   35      1     reserved
 *   36      2     done: actions that succeeded
 *   38      2     data length
 *   40      ...   data (max_data bytes)
 *
 * started and sent are the spans' times (a saga is a trace, each attempt a
 * span: the io's span callback); nothing else reads them.
 */
typedef struct sli_saga_st {
    int64_t deadline;
    int64_t started;
    int64_t sent;
    uint32_t attempt;
    uint16_t step;
    uint8_t phase;
    uint8_t flags;
    uint16_t failed_step;
    uint8_t cause;
    uint8_t reserved;
    uint16_t done;
    uint16_t data_len;
    uint8_t data[];
} sli_saga_st;
_Static_assert(sizeof(sli_saga_st) == 40, "saga state header is 40 bytes");

enum {
    SLI_SAGA_ACT_WAIT = 1,    /* action outstanding; deadline = its timeout */
    SLI_SAGA_ACT_BACKOFF = 2, /* next action attempt after deadline */
    SLI_SAGA_COMP_WAIT = 3,   /* compensation outstanding */
    SLI_SAGA_COMP_BACKOFF = 4 /* next compensation attempt after deadline */
};
#define SLI_SAGA_F_PIVOT_PASSED 1u

/* A span the machine reports (wall clock, ns since the Unix epoch: spans
 * are read beside other services' spans, whatever the saga's own clock): a
 * command attempt that ended (its reply came, or its timeout), or the saga
 * itself at its outcome (root). */
typedef struct sli_saga_span {
    uint64_t saga_id;
    int root;         /* 1: the saga (outcome set); 0: an attempt */
    int kind;         /* attempts: SL_SAGA_ACTION or SL_SAGA_COMPENSATION */
    uint16_t step;    /* attempts: the step */
    uint32_t attempt; /* attempts: from 1 */
    int64_t start_ns, end_ns;
    int error;       /* the attempt failed or timed out; the saga did not end well */
    const char *msg; /* why (error only), may be NULL */
    uint32_t msg_len;
    int outcome; /* root: enum sl_saga_outcome_kind */
} sli_saga_span;

/* What the machine does to the world. Each returns 0 or a negative code
 * (span: nothing to return; NULL: no spans). */
typedef struct sli_saga_io {
    void *ud;
    int (*command)(void *ud, int64_t ts, const void *rec, uint32_t len);
    int (*outcome)(void *ud, int64_t ts, const void *rec, uint32_t len);
    int (*timer_set)(void *ud, uint64_t saga_id, int64_t ts);
    int (*timer_del)(void *ud, uint64_t saga_id, int64_t ts);
    void (*span)(void *ud, const sli_saga_span *s);
} sli_saga_io;

typedef struct sli_saga_core {
    sl_saga_def def;   /* steps borrowed from the caller */
    int pivot;         /* index of the first step without compensation, or -1 */
    uint32_t max_data; /* resolved */
    sli_saga_io io;
    sl_buf cmd; /* scratch: the builder's output */
    sl_buf rec; /* scratch: the record being emitted */
} sli_saga_core;

/* NULL when def is acceptable, else why not (a phrase). */
const char *sli_saga_def_invalid(const sl_saga_def *def);
void sli_saga_core_init(sli_saga_core *c, const sl_saga_def *def, const sli_saga_io *io);
void sli_saga_core_free(sli_saga_core *c);
/* Bytes of a "run" value. */
uint32_t sli_saga_value_size(const sli_saga_core *c);

/* The events. st is the saga's "run" value. Each returns a negative code
 * (a failure of the job), 0 while the saga runs on, or its outcome (enum
 * sl_saga_outcome_kind, > 0) when it has just ended: the caller then drops
 * st and remembers the outcome. */
int sli_saga_on_start(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t now, const void *data,
                      uint32_t len);
/* *why is set to 0 when the reply was the one awaited, else to the
 * sl_saga_why it is diverted for (the saga may still have moved: an
 * event-time reply past the deadline runs the timeout first). */
int sli_saga_on_reply(sli_saga_core *c, sli_saga_st *st, int64_t now, const sl_saga_reply *r,
                      int *why);
/* A timer at ts; a timer that is not st->deadline is ignored. */
int sli_saga_on_timer(sli_saga_core *c, sli_saga_st *st, uint64_t id, int64_t ts, int64_t now);

/* Little-endian helpers shared with the tests. */
static inline void sli_saga_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t sli_saga_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

#endif
