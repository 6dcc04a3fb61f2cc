/*
 * engine/plan.h - the physical plan: instances (sl_ctx), tasks, output ports
 * and the edges between tasks (private to engine/).
 *
 *   sl_ctx (one per instance) ── out[port] ── targets: chained instance
 *                                              (function call) or net edge
 *                                              (channels to the consumer's
 *                                              instances, with partitioning)
 *   sl_task ── insts[] (root first, then the chained ones) ── in[], out[]
 *
 * plan.c builds all of it once, from the graph (graph.h), and frees it with
 * the pipeline.
 *
 * Threads: after start, an instance's callbacks and its output state run only
 * inside its task's activation, and a task is activated by at most one worker
 * at a time (the state machine in sched.h guarantees it). Channels are the
 * only structures two tasks share; they are SPSC rings (channel.h).
 */
#ifndef SLUICE_ENGINE_PLAN_H
#define SLUICE_ENGINE_PLAN_H

#include <stdatomic.h>
#include <stdint.h>
#include "engine/channel.h"
#include "engine/graph.h"
#include "engine/timer.h"
#include "sluice/operator.h"
#include "sluice/state.h"

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
    /* Records delivered here are added, per batch, to this instance's
     * counter for the port's role (records out, late or dead letters) and,
     * on data ports, to its bytes out: single writer (the task's thread),
     * read by sl_pipeline_metrics and summed by sl_pipeline_stats_get. */
    _Atomic uint64_t *mcount, *mbytes;
    int n_targets;
    sl_target *targets;
} sl_port;

struct sl_ctx {
    sl_pipeline *p;
    sl_node *node;
    struct sl_task *task;
    int instance;
    void *self;
    int opened;
    int cur_input;
    int forwarded;           /* process() handed its input on */
    int64_t wm;              /* input watermark seen by this instance */
    struct sli_srcinst *src; /* sources: the split readers (source.c) */
    int ended;
    int end_canceled; /* end() came from a cancel, not the end of input */
    int is_sink;
    sl_port out[SL_MAX_PORTS];
    sl_key_fn in_key[SL_MAX_INPUTS];
    void *in_key_ud[SL_MAX_INPUTS];
    /* engine-owned keyed states by name */
    int n_states;
    struct {
        char *name;
        sl_state *st;
        int unmanaged; /* not in the engine's snapshot (sl_ctx_state_unmanaged) */
    } * states;
    sl_timers *timers;
    sl_timers *proc_timers; /* processing-time timers (wall-clock ms) */
    sl_buf keybuf;
    int err;
    /* This instance's counters (sluice/metrics.h): written only by its
     * task's thread, with sli_count (a load and a store, no lock prefix),
     * read by any thread. pub_wm mirrors wm for readers. */
    struct {
        _Atomic uint64_t in, out, bytes_in, bytes_out, late, dead;
    } m;
    _Atomic int64_t pub_wm;
    struct sli_dl_reasons *_Atomic dl_reasons; /* sources: made at the first dead letter */
    uint64_t chk_id;                           /* inside snapshot(): the checkpoint being taken */
    int restored_src;                          /* sources: announce the restored watermark first */
    /* Trace context the records emitted next carry (sl_ctx_set_trace),
     * borrowed; NULL (the rule without tracing) for none. Cleared when a
     * callback returns. */
    const sl_trace_ctx *emit_trace;
    /* Trace points: this instance's region of the pipeline's table of open
     * spans (engine/spans.c), made at its first span; the table owns it. */
    struct sli_span_region *span_region;
};

typedef struct sl_task {
    int id;
    sl_pipeline *p;
    _Atomic int state;   /* enum sl_task_state (sched.h) */
    struct sl_ctx *root; /* the source or the operator that reads the channels */
    int n_insts;
    struct sl_ctx **insts; /* root first, then chained ones in topological order */
    int n_in;
    sl_channel **in; /* input channels (all logical inputs) */
    int n_out;
    sl_channel **out;                /* output channels, for draining pending messages */
    int in_next;                     /* round-robin start */
    int n_open_in;                   /* inputs not yet at end of stream */
    int in_canceled;                 /* an input ended by a cancel: so does this task */
    int64_t wm;                      /* min over active inputs */
    int blocked;                     /* pending output: waits for credit */
    _Atomic int64_t blocked_since;   /* monotonic ns when it began (0: not blocked) */
    _Atomic uint64_t blocked_ns;     /* total time blocked, ended spells (metrics) */
    _Atomic uint32_t blocked_seq;    /* odd while the two above change (a seqlock) */
    int finished;                    /* end of stream sent and drained */
    int ended;                       /* end processing done (EOS queued) */
    int waiting;                     /* source said WAIT: delayed wake-up pending */
    double wait_ms;                  /* its delay: doubles while WAITs follow each other */
    int idle_out;                    /* outputs announced idle */
    int64_t proc_wake_at;            /* earliest processing-time timer a wake-up is set for */
    uint64_t barrier;                /* checkpoint barrier being aligned (0: none) */
    int64_t barrier_ns;              /* wall clock when its first channel brought it (tracing) */
    _Atomic uint64_t inject_barrier; /* sources: highest barrier id requested */
    uint64_t barrier_sent;           /* sources: highest barrier id sent */
    uint64_t chk_acked;              /* last checkpoint acked (coord.c, under its lock) */
    /* Sources: the source layer's step and announce (source.c), set by the
     * plan, so that the task loop knows no source by name. */
    int (*src_step)(struct sl_ctx *c);
    int (*src_announce)(struct sl_ctx *c);
} sl_task;

/* Add n to a counter that only the calling thread writes (a plain load and
 * store: no read-modify-write; readers on other threads see whole values). */
static inline void sli_count(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* A batch's payload bytes (metrics). */
static inline uint64_t sli_batch_bytes(const sl_batch *b)
{
    return b->width ? (uint64_t)b->count * b->width : b->data_len;
}

/* Build the plan (user's thread, before start; once: p->planned). 0 or the
 * pipeline's error. */
int sli_plan_build(sl_pipeline *p);
/* Free the plan and what it holds (batches still queued after a failure). */
void sli_plan_free(sl_pipeline *p);

#endif
