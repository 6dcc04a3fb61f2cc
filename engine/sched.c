/*
 * engine/sched.c - worker threads, work stealing, parking, and the
 * coordinator thread of a running pipeline.
 *
 * Task states (atomic, per task):
 *
 *   IDLE --wake--> QUEUED --worker takes it--> RUNNING --done--> IDLE
 *                                               |  ^
 *                                         wake  v  | (after the activation:
 *                                            NOTIFIED   queued again)
 *
 * so a task is in at most one deque at a time and is never activated twice
 * at once, and a wake-up that arrives during an activation is not lost: it
 * turns into another activation. Each worker owns a Chase–Lev deque (LIFO
 * for the owner, FIFO for thieves); wake-ups from a worker go to its own
 * deque, others to the mutex-protected injector (start, delayed wake-ups).
 *
 * Each worker also has a `next` slot (Go's runnext, Tokio's LIFO slot): the
 * task a worker wakes during an activation, typically the consumer of the
 * batches it just sent, runs right after that activation, while those
 * batches are still in this core's cache. A second wake-up displaces the
 * first into the deque, where thieves can take it; the slot itself is
 * never stolen, and it is run before the worker looks anywhere else, so a
 * task cannot wait there for more than one activation.
 *
 * Parking is an event count: a worker with nothing to do spins briefly, then
 * increments `sleepers`, reads `epoch`, looks for work once more, and sleeps
 * on the condition variable only if `epoch` has not moved. Whoever makes a
 * task runnable pushes it, increments `epoch`, and signals if anyone sleeps.
 * With seq_cst on both sides either the sleeper sees the new task or the
 * waker sees the sleeper, so no wake-up is lost and nobody busy-waits.
 *
 * The coordinator thread sleeps on the pipeline's condition variable and
 * wakes for delayed task wake-ups (sources that said WAIT), cancellation,
 * failure and the end of the job; then it stops the workers, closes every
 * instance and reports the job done.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "engine/deque.h"
#include "engine/internal.h"
#include "engine/source.h"

typedef struct worker {
    struct sl_sched *s;
    int id;
    pthread_t th;
    sl_deque *dq;
    sl_task *next; /* runs after the current activation (owner only) */
    uint64_t rng;
    sl_pool_cache cache;
} worker;

struct sl_sched {
    sl_pipeline *p;
    int n;
    worker *w;
    atomic_int stop;
    atomic_int sleepers;
    atomic_uint_fast64_t epoch;
    pthread_mutex_t park_lock;
    pthread_cond_t park_cond;
    pthread_mutex_t inj_lock;
    sl_task **inj;
    size_t inj_head, inj_len, inj_cap;
};

static _Thread_local worker *tl_worker;

/* A full memory fence. ThreadSanitizer does not model fences (and GCC
 * refuses them under -fsanitize=thread), so there it is a seq_cst
 * read-modify-write, which is a full barrier on the machines we run on. */
#if defined(__SANITIZE_THREAD__)
static atomic_int fence_word;
#define SL_FULL_FENCE() atomic_fetch_add_explicit(&fence_word, 0, memory_order_seq_cst)
#else
#define SL_FULL_FENCE() atomic_thread_fence(memory_order_seq_cst)
#endif

sl_pool_cache *sl_sched_cache(void)
{
    return tl_worker ? &tl_worker->cache : NULL;
}

static void notify(sl_sched *s)
{
    atomic_fetch_add_explicit(&s->epoch, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&s->sleepers, memory_order_seq_cst) > 0) {
        pthread_mutex_lock(&s->park_lock);
        pthread_cond_signal(&s->park_cond);
        pthread_mutex_unlock(&s->park_lock);
    }
}

static void inject(sl_sched *s, sl_task *t)
{
    pthread_mutex_lock(&s->inj_lock);
    /* Each task is queued at most once, so n_tasks slots always suffice. */
    s->inj[(s->inj_head + s->inj_len) % s->inj_cap] = t;
    s->inj_len++;
    pthread_mutex_unlock(&s->inj_lock);
}

static sl_task *inject_take(sl_sched *s)
{
    sl_task *t = NULL;
    pthread_mutex_lock(&s->inj_lock);
    if (s->inj_len) {
        t = s->inj[s->inj_head];
        s->inj_head = (s->inj_head + 1) % s->inj_cap;
        s->inj_len--;
    }
    pthread_mutex_unlock(&s->inj_lock);
    return t;
}

static void enqueue(sl_sched *s, sl_task *t)
{
    worker *w = tl_worker;
    if (w && w->s == s) {
        sl_task *old = w->next;
        w->next = t;
        if (!old) return; /* this worker runs it next; nobody to wake */
        t = old;          /* the displaced task goes where thieves see it */
        if (sl_deque_push(w->dq, t) != 0) inject(s, t);
    } else {
        inject(s, t);
    }
    notify(s);
}

void sl_task_wake(sl_task *t)
{
    sl_sched *s = t->p->sched;
    /* Dekker with run(): the caller has just published input (a channel's
     * tail) and now reads the state; run() publishes RUNNING and then reads
     * the input. Without a full fence on both sides each could read the
     * other's old value (store-load reordering), the consumer going idle
     * over a message nobody wakes it for. */
    SL_FULL_FENCE();
    for (;;) {
        int st = atomic_load_explicit(&t->state, memory_order_seq_cst);
        if (st == SL_TASK_IDLE) {
            if (atomic_compare_exchange_weak(&t->state, &st, SL_TASK_QUEUED)) {
                enqueue(s, t);
                return;
            }
        } else if (st == SL_TASK_RUNNING) {
            if (atomic_compare_exchange_weak(&t->state, &st, SL_TASK_NOTIFIED)) return;
        } else {
            return; /* QUEUED or NOTIFIED: it will run */
        }
    }
}

void sl_task_wake_later(sl_task *t, double delay_ms)
{
    sl_pipeline *p = t->p;
    pthread_mutex_lock(&p->lock);
    if (p->n_delayed == p->cap_delayed) {
        int cap = p->cap_delayed ? p->cap_delayed * 2 : 16;
        void *n = realloc(p->delayed, (size_t)cap * sizeof(*p->delayed));
        if (!n) {
            pthread_mutex_unlock(&p->lock);
            sl_task_wake(t); /* no room to wait: poll again now */
            return;
        }
        p->delayed = n;
        p->cap_delayed = cap;
    }
    p->delayed[p->n_delayed].at = sl_now_s() + delay_ms / 1000.0;
    p->delayed[p->n_delayed].t = t;
    p->n_delayed++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static sl_task *find_task(worker *w)
{
    sl_sched *s = w->s;
    sl_task *t = w->next;
    if (t) {
        w->next = NULL;
        return t;
    }
    t = sl_deque_pop(w->dq);
    if (t) return t;
    if ((t = inject_take(s))) return t;
    int start = (int)(xorshift(&w->rng) % (uint64_t)s->n);
    for (int k = 0; k < s->n; k++) {
        int v = (start + k) % s->n;
        if (v == w->id) continue;
        if ((t = sl_deque_steal(s->w[v].dq))) return t;
    }
    return NULL;
}

static void run(worker *w, sl_task *t)
{
    /* Publish RUNNING before the activation reads its inputs (see
     * sl_task_wake): a wake-up that sees QUEUED must be sure we read after. */
    atomic_exchange_explicit(&t->state, SL_TASK_RUNNING, memory_order_seq_cst);
    SL_FULL_FENCE();
    int again = sl_task_activate(t);
    if (again) {
        atomic_store_explicit(&t->state, SL_TASK_QUEUED, memory_order_release);
        if (sl_deque_push(w->dq, t) != 0) inject(w->s, t);
        if (atomic_load_explicit(&w->s->sleepers, memory_order_relaxed) > 0) notify(w->s);
        return;
    }
    int st = SL_TASK_RUNNING;
    if (!atomic_compare_exchange_strong(&t->state, &st, SL_TASK_IDLE)) {
        /* NOTIFIED during the activation: run it again. */
        atomic_store_explicit(&t->state, SL_TASK_QUEUED, memory_order_release);
        if (sl_deque_push(w->dq, t) != 0) inject(w->s, t);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    sl_sched *s = w->s;
    tl_worker = w;
    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        sl_task *t = find_task(w);
        for (int spin = 0; !t && spin < 64; spin++) {
            sched_yield();
            t = find_task(w);
        }
        if (!t) {
            atomic_fetch_add_explicit(&s->sleepers, 1, memory_order_seq_cst);
            uint_fast64_t e = atomic_load_explicit(&s->epoch, memory_order_seq_cst);
            t = find_task(w);
            if (!t) {
                pthread_mutex_lock(&s->park_lock);
                while (atomic_load_explicit(&s->epoch, memory_order_seq_cst) == e &&
                       !atomic_load(&s->stop))
                    pthread_cond_wait(&s->park_cond, &s->park_lock);
                pthread_mutex_unlock(&s->park_lock);
            }
            atomic_fetch_sub_explicit(&s->sleepers, 1, memory_order_seq_cst);
            if (!t) continue;
        }
        run(w, t);
    }
    sl_pool_cache_drain(&s->p->pool, &w->cache);
    tl_worker = NULL;
    return NULL;
}

void sl_task_finished(sl_task *t)
{
    sl_pipeline *p = t->p;
    if (atomic_fetch_add(&p->tasks_done, 1) + 1 == p->n_tasks) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
}

static void sched_free(sl_sched *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) sl_deque_free(s->w[i].dq);
    free(s->w);
    free(s->inj);
    pthread_mutex_destroy(&s->park_lock);
    pthread_cond_destroy(&s->park_cond);
    pthread_mutex_destroy(&s->inj_lock);
    free(s);
}

static void sched_stop(sl_sched *s, int started)
{
    atomic_store(&s->stop, 1);
    pthread_mutex_lock(&s->park_lock);
    atomic_fetch_add(&s->epoch, 1);
    pthread_cond_broadcast(&s->park_cond);
    pthread_mutex_unlock(&s->park_lock);
    for (int i = 0; i < started; i++) pthread_join(s->w[i].th, NULL);
}

/* --- the coordinator ------------------------------------------------------------ */

static void close_instances(sl_pipeline *p)
{
    for (int i = p->n_ctx - 1; i >= 0; i--) {
        struct sl_ctx *c = p->ctxs[i];
        if (!c->opened) continue;
        c->opened = 0;
        if (c->node->kind == SL_NODE_SOURCE)
            sli_source_close(c);
        else if (c->node->op->close)
            c->node->op->close(c->self);
    }
}

static void *coord_main(void *arg)
{
    sl_pipeline *p = arg;
    int cancel_seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (atomic_load(&p->failed) || atomic_load(&p->tasks_done) == p->n_tasks) break;
        if (!cancel_seen && atomic_load(&p->canceled)) {
            cancel_seen = 1; /* sources see the flag on their next poll */
            pthread_mutex_unlock(&p->lock);
            for (int i = 0; i < p->n_tasks; i++)
                if (p->tasks[i]->root->node->kind == SL_NODE_SOURCE) sl_task_wake(p->tasks[i]);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        double now = sl_now_s(), next = now + 0.05; /* tick: notice cancel */
        for (int i = 0; i < p->n_delayed;) {
            if (p->delayed[i].at <= now) {
                sl_task *t = p->delayed[i].t;
                p->delayed[i] = p->delayed[--p->n_delayed];
                pthread_mutex_unlock(&p->lock);
                sl_task_wake(t);
                pthread_mutex_lock(&p->lock);
                continue;
            }
            if (p->delayed[i].at < next) next = p->delayed[i].at;
            i++;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double wait = next - sl_now_s();
        if (wait < 0) wait = 0;
        long ns = ts.tv_nsec + (long)(wait * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);

    sched_stop(p->sched, p->sched->n);
    close_instances(p);
    p->elapsed = sl_now_s() - p->t_start;
    pthread_mutex_lock(&p->lock);
    p->done = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static int open_instances(sl_pipeline *p)
{
    for (int i = 0; i < p->n_ctx; i++) {
        struct sl_ctx *c = p->ctxs[i];
        int rc;
        if (c->node->kind == SL_NODE_SOURCE) {
            c->opened = 1; /* close what opened, also after an error */
            rc = sli_source_open(c);
        } else {
            rc = c->node->op->open ? c->node->op->open(c, &c->self) : 0;
        }
        if (rc < 0) {
            if (!p->err) {
                const char *kind = c->node->op ? c->node->op->kind : c->node->src->kind;
                sl_pipeline_error(p, rc, "operator '%s' (%s): cannot open: %s", c->node->name,
                                  kind ? kind : "?", sl_strerror(rc));
            }
            return p->err;
        }
        c->opened = 1;
    }
    return 0;
}

int sl_pipeline_start(sl_pipeline *p)
{
    if (!p) return SL_EINVAL;
    if (p->err) return p->err;
    if (p->started) return sl_pipeline_error(p, SL_ESTATE, "the pipeline was started already");
    int rc = sl_plan_build(p);
    if (rc) return rc;
    if ((rc = open_instances(p)) != 0) {
        close_instances(p);
        return rc;
    }
    sl_sched *s = calloc(1, sizeof(*s));
    if (!s) goto oom;
    s->p = p;
    s->n = p->threads;
    pthread_mutex_init(&s->park_lock, NULL);
    pthread_cond_init(&s->park_cond, NULL);
    pthread_mutex_init(&s->inj_lock, NULL);
    s->inj_cap = (size_t)p->n_tasks + 1;
    s->inj = calloc(s->inj_cap, sizeof(*s->inj));
    s->w = calloc((size_t)s->n, sizeof(*s->w));
    if (!s->inj || !s->w) goto oom_s;
    for (int i = 0; i < s->n; i++) {
        s->w[i].s = s;
        s->w[i].id = i;
        s->w[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        if (sl_deque_new(&s->w[i].dq, (size_t)p->n_tasks + 1)) goto oom_s;
    }
    p->sched = s;
    p->started = 1;
    p->t_start = sl_now_s();
    /* Every task starts queued once: sources begin polling, the others look
     * at their (empty) inputs and go idle. */
    for (int i = 0; i < p->n_tasks; i++) {
        atomic_store(&p->tasks[i]->state, SL_TASK_QUEUED);
        inject(s, p->tasks[i]);
    }
    int n_started = 0;
    for (; n_started < s->n; n_started++)
        if (pthread_create(&s->w[n_started].th, NULL, worker_main, &s->w[n_started]) != 0) break;
    if (n_started < s->n || pthread_create(&p->coord, NULL, coord_main, p) != 0) {
        sched_stop(s, n_started);
        close_instances(p);
        p->joined = 1;
        return sl_pipeline_error(p, SL_ENOMEM, "cannot start threads");
    }
    return 0;
oom_s:
    sched_free(s);
oom:
    close_instances(p);
    return sl_pipeline_error(p, SL_ENOMEM, "out of memory while starting");
}

int sl_pipeline_wait(sl_pipeline *p, int timeout_ms)
{
    if (!p) return SL_EINVAL;
    if (!p->started) return p->err ? p->err : SL_ESTATE;
    if (!p->joined) {
        pthread_mutex_lock(&p->lock);
        if (timeout_ms < 0) {
            while (!p->done) pthread_cond_wait(&p->cond, &p->lock);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long ns = ts.tv_nsec + (long)timeout_ms * 1000000L;
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            while (!p->done)
                if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) != 0) break;
        }
        int done = p->done;
        pthread_mutex_unlock(&p->lock);
        if (!done) return SL_EAGAIN;
        pthread_join(p->coord, NULL);
        sched_free(p->sched);
        p->sched = NULL;
        p->joined = 1;
    }
    return p->err;
}

void sl_pipeline_inject_barrier(sl_pipeline *p, uint64_t id)
{
    for (int i = 0; i < p->n_tasks; i++) {
        sl_task *t = p->tasks[i];
        if (t->root->node->kind != SL_NODE_SOURCE) continue;
        /* Raise the requested id (never lower it); the source sends every id
         * up to it, in order. */
        uint64_t cur = atomic_load(&t->inject_barrier);
        while (cur < id && !atomic_compare_exchange_weak(&t->inject_barrier, &cur, id)) {}
        sl_task_wake(t);
    }
}
