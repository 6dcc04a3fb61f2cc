/*
 * engine/graph.h - the logical graph: the pipeline object, its nodes and its
 * streams (private to engine/).
 *
 * The objects, from the user's graph down to the threads, and the header that
 * defines each:
 *
 *   sl_pipeline ── nodes[] (this header: name, table, conf, parallelism,
 *                   inputs as streams, output ports and their roles)
 *               ── tasks[], ctxs[], channels[] (plan.h: the physical plan)
 *               ── sched (sched.h: W workers, each with a Chase–Lev deque)
 *               ── coordinator thread (job.h: delayed wake-ups, cancel, end)
 *
 * The pipeline struct is defined here because every module reaches it; the
 * plan and run parts only hold pointers to types that plan.h and sched.h
 * define, so this header needs neither of them (no include cycle: graph.h <-
 * plan.h <- task.h, sched.h, job.h; channel.h, timer.h and pool.h stand
 * alone).
 *
 * Threads: building happens on the user's thread before start. The plan is
 * built once (by sl_pipeline_explain() or sl_pipeline_start(), whichever comes
 * first); after that the graph is frozen: building calls fail with
 * SL_ESTATE. After start, the run fields are shared as their comments say.
 */
#ifndef SLUICE_ENGINE_GRAPH_H
#define SLUICE_ENGINE_GRAPH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "engine/pool.h"
#include "sluice/operator.h"
#include "sluice/pipeline.h"
#include "sluice/source.h"

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
    int port_role[SL_MAX_PORTS]; /* SL_PORT_DATA, _LATE or _DEAD_LETTER */
    unsigned port_declared;      /* bit k: port k was declared */
    int chained;                 /* planner: this node runs inside its input's task */
    int inherit;                 /* unset parallelism follows the input's (key_by) */
    sl_watermark_conf wm;        /* sources: the watermark strategy (copied) */
    int has_wm;
    struct sli_srcnode *srcnode; /* sources: splits and positions (source.c) */
} sl_node;

struct sl_task;
struct sl_ctx;
struct sl_sched;
struct sl_channel;

struct sl_pipeline {
    int threads;
    int parallelism;
    int credits;
    int n_nodes, cap_nodes;
    sl_node *nodes;
    struct sl_stream *streams; /* every stream handle, for freeing */
    void **owned;              /* confs freed with the pipeline (sl_pipeline_own) */
    int n_owned;
    int err; /* first error; written under err_lock */
    char errmsg[SL_ERRMSG_MAX];
    pthread_mutex_t err_lock;

    /* plan (plan.h), built once */
    int planned;
    /* For readers on other threads (sl_pipeline_metrics): 1 once the plan is
     * built, 2 once started (t_start set); stored with release after what
     * it announces, so a reader that loads it with acquire may walk the plan. */
    atomic_int published;
    int n_tasks;
    struct sl_task **tasks;
    int n_ctx;
    struct sl_ctx **ctxs;
    int n_channels;
    struct sl_channel **channels;
    sl_pool pool;

    /* run (job.c, sched.c) */
    int started, joined;
    struct sl_sched *sched;
    pthread_t coord;
    pthread_mutex_t lock; /* guards done/delayed below; cond signals both */
    pthread_cond_t cond;  /* on CLOCK_MONOTONIC */
    int done;
    atomic_int tasks_done;
    atomic_int failed;
    atomic_int canceled;
    atomic_int cancel_cut; /* a source stopped before its end (sl_pipeline_canceled) */
    double t_start;
    double elapsed;
    /* malformed trace headers sources ignored (sl_ctx_trace_malformed) */
    _Atomic uint64_t trace_malformed;
    /* checkpoint hook: called for every instance on an aligned barrier
     * (set through test_hooks.h until checkpoints land) */
    int (*on_barrier)(sl_pipeline *p, struct sl_ctx *c, uint64_t id, void *ud);
    void *on_barrier_ud;
    /* checkpoints (coord.c): NULL when the job has none; the task loop
     * reaches the coordinator through the two hooks it sets */
    struct sli_coord *chk;
    int (*chk_barrier)(struct sl_task *t, uint64_t id);
    void (*chk_finished)(struct sl_task *t);
    /* tracing (trace.c): NULL when the job has none; owned */
    struct sl_tracer *tracer;
    struct sli_spans *spans; /* trace points' open spans (spans.c); NULL: none */
    int n_delayed, cap_delayed;
    struct {
        double at;
        struct sl_task *t;
    } * delayed;
};

/* pipeline.c */

/* Record a run-time failure (first one wins) and, once started, tell the
 * coordinator. Any thread. Returns code. */
int sli_pipeline_fail(sl_pipeline *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The node that made s follows its input's parallelism unless set (as
 * key_by's does, engine/keyby.c), so it stays chained to its input: for
 * builders that plan one node per upstream instance (the window combiner,
 * operators/window/combine.c). Building thread, before the plan. */
void sli_stream_inherit_parallelism(sl_stream *s);
/* The counters of sl_pipeline_stats (not elapsed_s): any thread, once the
 * plan exists. */
void sli_pipeline_counts(const sl_pipeline *p, sl_pipeline_stats *out);
/* The first recorded error code (0: none), read under err_lock. Any thread. */
int sli_pipeline_err(sl_pipeline *p);

#endif
