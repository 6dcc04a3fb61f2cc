/*
 * engine/ctx.c - the operator context: what an instance can ask of the
 * engine besides emitting (task.c): its identity and conf, the key of a
 * record, engine-owned keyed state, timers, and failure reporting.
 *
 * A context belongs to one instance and is used only inside its task's
 * activations, except its counters and pub_wm (plan.h), which readers load atomically.
 *
 * Failures: c->err is written and read only by the instance's own callbacks
 * (one worker at a time, ordered by the task state machine); the pipeline's
 * error is shared by every thread and is written and read under its
 * err_lock (sli_pipeline_fail / sli_pipeline_err), so sl_ctx_error() sees a
 * consistent code whichever instance failed first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/base/clock.h"
#include "engine/graph.h"
#include "engine/wakeup.h"
#include "engine/plan.h"
#include "engine/timer.h"
#include "sluice/state.h"

const char *sl_ctx_name(const sl_ctx *c)
{
    return c->node->name;
}
void *sl_ctx_conf(const sl_ctx *c)
{
    return c->node->conf;
}
struct sl_pipeline *sl_ctx_pipeline(const sl_ctx *c)
{
    return c->p;
}
int sl_ctx_instance(const sl_ctx *c)
{
    return c->instance;
}
int sl_ctx_parallelism(const sl_ctx *c)
{
    return c->node->parallelism;
}
int sl_ctx_input(const sl_ctx *c)
{
    return c->cur_input;
}
int64_t sl_ctx_current_watermark(const sl_ctx *c)
{
    return c->wm;
}
int sl_ctx_canceled(const sl_ctx *c)
{
    return atomic_load(&c->p->canceled);
}

uint32_t sl_ctx_out_width(const sl_ctx *c, int port)
{
    return port >= 0 && port < c->node->n_ports ? c->out[port].width : 0;
}

int sl_ctx_fail(sl_ctx *c, int code, const char *fmt, ...)
{
    char msg[SL_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *kind = c->node->op ? c->node->op->kind : c->node->src->kind;
    if (code >= 0) code = SL_EOPERATOR;
    c->err = code;
    sli_pipeline_fail(c->p, code, "operator '%s' (%s): %s", c->node->name, kind ? kind : "?", msg);
    return code;
}

int sl_ctx_error(const sl_ctx *c)
{
    if (c->err) return c->err;
    if (!atomic_load(&c->p->failed)) return 0;
    int e = sli_pipeline_err(c->p); /* under the lock that wrote it */
    return e ? e : SL_ECANCELED;
}

sl_bytes sl_ctx_key(sl_ctx *c, const sl_batch *b, uint32_t i)
{
    sl_key_fn fn = c->in_key[c->cur_input];
    sl_bytes r = sl_batch_bytes(b, i);
    if (!fn) return r; /* unkeyed input: the whole record */
    return fn(r.ptr, r.len, c->in_key_ud[c->cur_input]);
}

static sl_bytes whole_record(const void *payload, uint32_t len, void *ud)
{
    sl_bytes b = {payload, len};
    return b;
}

sl_key_fn sl_ctx_key_fn(sl_ctx *c, void **ud)
{
    sl_key_fn fn = c->in_key[c->cur_input];
    *ud = c->in_key_ud[c->cur_input];
    return fn ? fn : whole_record;
}

int64_t sl_clock_ms(void)
{
    return sli_clock_wall_ms();
}

int sl_ctx_proc_timer(sl_ctx *c, int64_t due_ms, uint64_t hash, const void *key, uint32_t key_len)
{
    if (!c->node->op || c->node->op->version < 2 || !c->node->op->proc_timer)
        return sl_ctx_fail(c, SL_EINVAL,
                           "a processing-time timer needs a version 2 operator "
                           "table with proc_timer");
    if (!c->proc_timers && !(c->proc_timers = sli_timers_new()))
        return sl_ctx_fail(c, SL_ENOMEM, "out of memory for timers");
    int rc = sli_timers_add(c->proc_timers, due_ms, hash, key, key_len);
    if (rc) return sl_ctx_fail(c, rc, "cannot add a timer: %s", sl_strerror(rc));
    sl_task *t = c->task;
    if (due_ms < t->proc_wake_at) { /* the task must wake earlier than planned */
        t->proc_wake_at = due_ms;
        int64_t delay = due_ms - sl_clock_ms();
        sli_task_wake_later(t, delay > 0 ? (double)delay : 0.0);
    }
    return 0;
}

static sl_state *ctx_state(sl_ctx *c, const char *name, uint32_t value_size, int unmanaged)
{
    for (int i = 0; i < c->n_states; i++) {
        if (strcmp(c->states[i].name, name) == 0) {
            if (sl_state_value_size(c->states[i].st) != value_size) {
                sl_ctx_fail(c, SL_EINVAL, "state '%s' exists with another value size", name);
                return NULL;
            }
            if (unmanaged) c->states[i].unmanaged = 1;
            return c->states[i].st;
        }
    }
    void *n = realloc(c->states, (size_t)(c->n_states + 1) * sizeof(*c->states));
    if (!n) goto oom;
    c->states = n;
    sl_state *st = sl_state_new(value_size);
    char *nm = strdup(name);
    if (!st || !nm) {
        sl_state_free(st);
        free(nm);
        goto oom;
    }
    c->states[c->n_states].name = nm;
    c->states[c->n_states].st = st;
    c->states[c->n_states].unmanaged = unmanaged;
    c->n_states++;
    return st;
oom:
    sl_ctx_fail(c, SL_ENOMEM, "out of memory for state '%s'", name);
    return NULL;
}

sl_state *sl_ctx_state(sl_ctx *c, const char *name, uint32_t value_size)
{
    return ctx_state(c, name, value_size, 0);
}

sl_state *sl_ctx_state_unmanaged(sl_ctx *c, const char *name, uint32_t value_size)
{
    return ctx_state(c, name, value_size, 1);
}

int sl_ctx_timer_delete(sl_ctx *c, int64_t ts, uint64_t hash, const void *key, uint32_t key_len)
{
    int rc = sli_timers_delete(c->timers, ts, hash, key, key_len);
    return rc < 0 ? sl_ctx_fail(c, rc, "cannot delete a timer: %s", sl_strerror(rc)) : rc;
}

int sl_ctx_proc_timer_delete(sl_ctx *c, int64_t due_ms, uint64_t hash, const void *key,
                             uint32_t key_len)
{
    int rc = sli_timers_delete(c->proc_timers, due_ms, hash, key, key_len);
    return rc < 0 ? sl_ctx_fail(c, rc, "cannot delete a timer: %s", sl_strerror(rc)) : rc;
}

int sl_ctx_timer(sl_ctx *c, int64_t ts, uint64_t hash, const void *key, uint32_t key_len)
{
    if (!c->timers && !(c->timers = sli_timers_new()))
        return sl_ctx_fail(c, SL_ENOMEM, "out of memory for timers");
    int rc = sli_timers_add(c->timers, ts, hash, key, key_len);
    if (rc) return sl_ctx_fail(c, rc, "cannot add a timer: %s", sl_strerror(rc));
    return 0;
}
