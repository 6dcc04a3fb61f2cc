/*
 * engine/internal.h - the runtime's shared structures (private to engine/).
 *
 * The objects, from the user's graph down to the threads:
 *
 *   sl_pipeline ── nodes[] (logical graph: name, table, conf, parallelism,
 *                   inputs as streams, output ports)
 *               ── tasks[] (physical plan: one task = one root instance plus
 *                   the instances chained below it, with its input channels)
 *               ── sched   (W workers, each with a Chase–Lev deque)
 *               ── coordinator thread (delayed wake-ups, cancel, end of job)
 *
 *   sl_ctx (one per instance) ── out[port] ── targets: chained instance
 *                                              (function call) or net edge
 *                                              (channels to the consumer's
 *                                              instances, with partitioning)
 *
 * Threads: building happens on the user's thread before start. After start,
 * an instance's callbacks and its output state run only inside its task's
 * activation, and a task is activated by at most one worker at a time (the
 * task state machine in sched.c guarantees it). Channels are the only
 * structures two tasks share; they are SPSC rings (channel.h).
 */
#ifndef SLUICE_ENGINE_INTERNAL_H
#define SLUICE_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "sluice/sluice.h"
#include "engine/channel.h"
#include "engine/pool.h"

#define SL_MAX_PORTS  4
#define SL_MAX_INPUTS 8
#define SL_ERRMSG_MAX 512

enum sl_part { SL_PART_FORWARD, SL_PART_HASH, SL_PART_REBALANCE, SL_PART_BROADCAST };
enum sl_node_kind { SL_NODE_SOURCE, SL_NODE_OPERATOR, SL_NODE_SINK };

struct sl_stream {
    sl_pipeline *p;
    int node;
    int port;
    uint32_t width;
    enum sl_part part; /* partitioning of edges reading this stream */
    sl_key_fn key;     /* non-NULL: the stream is keyed */
    void *key_ud;
    struct sl_stream *next_alloc;
};

typedef struct sl_node {
    char *name;
    enum sl_node_kind kind;
    const sl_source *src;
    const sl_operator *op;
    void *conf;
    int parallelism;
    int n_in;
    struct sl_stream *in[SL_MAX_INPUTS];
    int n_ports;
    uint32_t port_width[SL_MAX_PORTS];
    int chained;      /* planner: this node runs inside its input's task */
    void *owned_conf; /* freed with the pipeline */
    int inherit;      /* unset parallelism follows the input's (key_by) */
    sl_watermark_conf wm; /* sources: the watermark strategy (copied) */
    int has_wm;
    struct sli_srcnode *srcnode; /* sources: splits and positions (source.c) */
} sl_node;

struct sl_task;

/* A consumer of one output port: another instance in the same task (called
 * directly) or a network edge (channels to every instance of the consumer). */
typedef struct sl_edge {
    enum sl_part part;
    int n_ch;
    sl_channel **ch;  /* by consumer instance */
    sl_batch **build; /* HASH: the batch being filled per consumer instance */
    uint32_t rr;      /* REBALANCE: next channel */
} sl_edge;

typedef struct sl_target {
    struct sl_ctx *chained; /* non-NULL: chained consumer */
    int input;              /* its logical input index */
    sl_edge *edge;          /* else: network edge */
} sl_target;

typedef struct sl_port {
    uint32_t width;
    sl_batch *cur; /* being filled by sl_emit */
    int n_targets;
    sl_target *targets;
} sl_port;

typedef struct sl_timers sl_timers;

struct sl_ctx {
    sl_pipeline *p;
    sl_node *node;
    struct sl_task *task;
    int instance;
    void *self;
    int opened;
    int cur_input;
    int forwarded;  /* process() handed its input on */
    int64_t wm;     /* input watermark seen by this instance */
    struct sli_srcinst *src; /* sources: the split readers (source.c) */
    int ended;
    int is_sink;
    sl_port out[SL_MAX_PORTS];
    sl_key_fn in_key[SL_MAX_INPUTS];
    void *in_key_ud[SL_MAX_INPUTS];
    /* engine-owned keyed states by name */
    int n_states;
    struct {
        char *name;
        sl_state *st;
    } * states;
    sl_timers *timers;
    sl_timers *proc_timers; /* processing-time timers (wall-clock ms) */
    sl_buf keybuf;
    int err;
    _Atomic int64_t sink_wm; /* sinks: for stats, read by other threads */
};

enum sl_task_state {
    SL_TASK_IDLE = 0,
    SL_TASK_QUEUED = 1,
    SL_TASK_RUNNING = 2,
    SL_TASK_NOTIFIED = 3
};

typedef struct sl_task {
    int id;
    sl_pipeline *p;
    _Atomic int state;
    struct sl_ctx *root; /* the source or the operator that reads the channels */
    int n_insts;
    struct sl_ctx **insts; /* root first, then chained ones in topological order */
    int n_in;
    sl_channel **in; /* input channels (all logical inputs) */
    int n_out;
    sl_channel **out;                /* output channels, for draining pending messages */
    int in_next;                     /* round-robin start */
    int n_open_in;                   /* inputs not yet at end of stream */
    int64_t wm;                      /* min over active inputs */
    int blocked;                     /* pending output: waits for credit */
    int finished;                    /* end of stream sent and drained */
    int ended;                       /* end processing done (EOS queued) */
    int waiting;                     /* source said WAIT: delayed wake-up pending */
    int idle_out;                    /* outputs announced idle */
    int64_t proc_wake_at;            /* earliest processing-time timer a wake-up is set for */
    uint64_t barrier;                /* checkpoint barrier being aligned (0: none) */
    _Atomic uint64_t inject_barrier; /* sources: highest barrier id requested */
    uint64_t barrier_sent;           /* sources: highest barrier id sent */
} sl_task;

typedef struct sl_sched sl_sched;

struct sl_pipeline {
    int threads;
    int parallelism;
    int credits;
    int n_nodes, cap_nodes;
    sl_node *nodes;
    struct sl_stream *streams; /* every stream handle, for freeing */
    void **owned;              /* confs freed with the pipeline (sl_pipeline_own) */
    int n_owned;
    int err;
    char errmsg[SL_ERRMSG_MAX];
    pthread_mutex_t err_lock;

    /* plan */
    int planned;
    int n_tasks;
    sl_task **tasks;
    int n_ctx;
    struct sl_ctx **ctxs;
    int n_channels;
    sl_channel **channels;
    sl_pool pool;

    /* run */
    int started, joined;
    sl_sched *sched;
    pthread_t coord;
    pthread_mutex_t lock; /* guards done/delayed below; cond signals both */
    pthread_cond_t cond;
    int done;
    atomic_int tasks_done;
    atomic_int failed;
    atomic_int canceled;
    double t_start;
    double elapsed;
    _Atomic uint64_t records_in, records_out;
    /* checkpoint hook: called for every instance on an aligned barrier */
    int (*on_barrier)(sl_pipeline *p, struct sl_ctx *c, uint64_t id, void *ud);
    void *on_barrier_ud;
    int n_delayed, cap_delayed;
    struct {
        double at;
        sl_task *t;
    } * delayed;
};

/* pipeline.c */
int sl_pipeline_fail(sl_pipeline *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
double sl_now_s(void);

/* plan.c */
int sl_plan_build(sl_pipeline *p);
void sl_plan_free(sl_pipeline *p);

/* task.c: runs on a worker, inside the task's activation. Returns 1 when
 * the task should be activated again at once (its quantum ran out). */
int sl_task_activate(sl_task *t);
/* Ask every source to inject BARRIER(id), and every id before it not yet
 * sent, in order (any thread, while running). Ids start at 1. */
void sl_pipeline_inject_barrier(sl_pipeline *p, uint64_t id);
/* Called when the whole task is done (sched bookkeeping). */
void sl_task_finished(sl_task *t);
int sl_ctx_flush_all(struct sl_ctx *c);

/* sched.c */
int sl_sched_start(sl_pipeline *p);
void sl_sched_stop(sl_pipeline *p);
/* Make t runnable (any thread). */
void sl_task_wake(sl_task *t);
/* Wake t again after delay_ms (any thread). */
void sl_task_wake_later(sl_task *t, double delay_ms);
/* The current thread's batch pool cache (NULL off the workers). */
sl_pool_cache *sl_sched_cache(void);

/* timer.c */
sl_timers *sl_timers_new(void);
void sl_timers_free(sl_timers *t);
int sl_timers_add(sl_timers *t, int64_t ts, uint64_t hash, const void *key, uint32_t klen);
/* Pop the earliest timer with ts <= wm into *out (key valid until the next
 * call); returns 1 if one was popped. */
int sl_timers_pop(sl_timers *t, int64_t wm, sl_timer *out);
size_t sl_timers_count(const sl_timers *t);
/* Time of the earliest timer, INT64_MAX when there is none. */
int64_t sl_timers_next(const sl_timers *t);

/* Batches for the current thread. */
static inline sl_batch *sl_batch_get(sl_pipeline *p, uint32_t width)
{
    return sl_pool_get(&p->pool, sl_sched_cache(), width);
}
static inline void sl_batch_put(sl_pipeline *p, sl_batch *b)
{
    sl_pool_put(&p->pool, sl_sched_cache(), b);
}

#endif
