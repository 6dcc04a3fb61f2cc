/*
 * engine/sched.c - worker threads, work stealing and parking.
 *
 * The task state machine (drawn in sched.h) makes a task sit in at most one
 * deque at a time and never be activated twice at once, and a wake-up that
 * arrives during an activation is not lost: it turns into another
 * activation. Each worker owns a Chase–Lev deque (LIFO for the owner, FIFO
 * for thieves); wake-ups from a worker go to its own deque, others to the
 * mutex-protected injector (start, delayed wake-ups from the coordinator).
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
 * The scheduler does not know about jobs: job.c creates it, queues every
 * task once, starts it, and stops it when the job is over.
 */
#include "engine/sched.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "engine/deque.h"
#include "engine/plan.h"

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
    int (*activate)(sl_task *t); /* what running a task means (task.c) */
    int n;
    int n_started; /* worker threads running */
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

sl_pool_cache *sli_sched_cache(void)
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
        if (sli_deque_push(w->dq, t) != 0) inject(s, t);
    } else {
        inject(s, t);
    }
    notify(s);
}

void sli_task_wake(sl_task *t)
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
    t = sli_deque_pop(w->dq);
    if (t) return t;
    if ((t = inject_take(s))) return t;
    int start = (int)(xorshift(&w->rng) % (uint64_t)s->n);
    for (int k = 0; k < s->n; k++) {
        int v = (start + k) % s->n;
        if (v == w->id) continue;
        if ((t = sli_deque_steal(s->w[v].dq))) return t;
    }
    return NULL;
}

static void run(worker *w, sl_task *t)
{
    /* Publish RUNNING before the activation reads its inputs (see
     * sli_task_wake): a wake-up that sees QUEUED must be sure we read after. */
    atomic_exchange_explicit(&t->state, SL_TASK_RUNNING, memory_order_seq_cst);
    SL_FULL_FENCE();
    int again = w->s->activate(t);
    if (again) {
        atomic_store_explicit(&t->state, SL_TASK_QUEUED, memory_order_release);
        if (sli_deque_push(w->dq, t) != 0) inject(w->s, t);
        if (atomic_load_explicit(&w->s->sleepers, memory_order_relaxed) > 0) notify(w->s);
        return;
    }
    int st = SL_TASK_RUNNING;
    if (!atomic_compare_exchange_strong(&t->state, &st, SL_TASK_IDLE)) {
        /* NOTIFIED during the activation: run it again. */
        atomic_store_explicit(&t->state, SL_TASK_QUEUED, memory_order_release);
        if (sli_deque_push(w->dq, t) != 0) inject(w->s, t);
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
    sli_pool_cache_drain(&s->p->pool, &w->cache);
    tl_worker = NULL;
    return NULL;
}

void sli_sched_free(sl_sched *s)
{
    if (!s) return;
    for (int i = 0; s->w && i < s->n; i++) sli_deque_free(s->w[i].dq);
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

void sli_sched_stop(sl_sched *s)
{
    sched_stop(s, s->n_started);
    s->n_started = 0;
}

int sli_sched_new(sl_sched **out, sl_pipeline *p, int threads, int (*activate)(sl_task *t))
{
    sl_sched *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->p = p;
    s->activate = activate;
    s->n = threads;
    pthread_mutex_init(&s->park_lock, NULL);
    pthread_cond_init(&s->park_cond, NULL);
    pthread_mutex_init(&s->inj_lock, NULL);
    s->inj_cap = (size_t)p->n_tasks + 1;
    s->inj = calloc(s->inj_cap, sizeof(*s->inj));
    s->w = calloc((size_t)s->n, sizeof(*s->w));
    if (!s->inj || !s->w) goto fail;
    for (int i = 0; i < s->n; i++) {
        s->w[i].s = s;
        s->w[i].id = i;
        s->w[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        if (sli_deque_new(&s->w[i].dq, (size_t)p->n_tasks + 1)) goto fail;
    }
    *out = s;
    return 0;
fail:
    sli_sched_free(s);
    return SL_ENOMEM;
}

void sli_sched_queue_all(sl_sched *s)
{
    sl_pipeline *p = s->p;
    for (int i = 0; i < p->n_tasks; i++) {
        atomic_store(&p->tasks[i]->state, SL_TASK_QUEUED);
        inject(s, p->tasks[i]);
    }
}

int sli_sched_start(sl_sched *s)
{
    for (; s->n_started < s->n; s->n_started++)
        if (pthread_create(&s->w[s->n_started].th, NULL, worker_main, &s->w[s->n_started]) != 0)
            break;
    if (s->n_started == s->n) return 0;
    sli_sched_stop(s);
    return SL_ENOMEM;
}
