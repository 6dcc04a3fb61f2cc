/*
 * engine/pipeline.c - the logical graph: making a pipeline, building its
 * nodes and streams, and its errors. It is the bottom of the engine: it
 * calls nothing above it. Running, freeing and statistics are job.c's; the
 * plan is plan.c's; key_by is an operator like any other (keyby.c).
 *
 * Nodes are appended in creation order, and a node can only read streams of
 * nodes that exist already, so the node array is a topological order of the
 * graph and no cycle can be built. Building errors are sticky: the first one
 * is kept in p->err / p->errmsg, later calls return NULL, and run() reports it.
 *
 * The graph is frozen once the plan is built (by sl_pipeline_explain() or
 * start): the plan was made from it, so a later change would silently not
 * take effect; building calls then fail with SL_ESTATE instead.
 *
 * Confs: the engine cannot copy the conf of sl_pipeline_source() or
 * sl_stream_apply() (it does not know its size): those are borrowed, and
 * builders that know the size copy theirs with sl_pipeline_dup().
 *
 * Every output port has a role (SL_PORT_DATA, _LATE, _DEAD_LETTER); the plan
 * turns it into a per-port counter that deliver() adds each batch to, which
 * is where the late and dead-letter statistics come from.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "engine/base/clock.h"
#include "engine/graph.h"
#include "sluice/state.h"

static int vfail(sl_pipeline *p, int code, const char *fmt, va_list ap)
{
    pthread_mutex_lock(&p->err_lock);
    if (p->err == 0) {
        p->err = code ? code : SL_EINVAL;
        vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
    }
    pthread_mutex_unlock(&p->err_lock);
    return code;
}

int sli_pipeline_fail(sl_pipeline *p, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(p, code, fmt, ap);
    va_end(ap);
    if (p->started) {
        atomic_store(&p->failed, 1);
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    return code;
}

int sli_pipeline_err(sl_pipeline *p)
{
    pthread_mutex_lock(&p->err_lock);
    int e = p->err;
    pthread_mutex_unlock(&p->err_lock);
    return e;
}

int sl_pipeline_error(sl_pipeline *p, int code, const char *fmt, ...)
{
    if (!p) return code;
    va_list ap;
    va_start(ap, fmt);
    vfail(p, code, fmt, ap);
    va_end(ap);
    return code;
}

sl_pipeline *sl_pipeline_new(void)
{
    sl_pipeline *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    p->threads = n > 0 ? (int)n : 1;
    p->parallelism = 1;
    p->credits = 8;
    if (pthread_mutex_init(&p->err_lock, NULL) != 0) goto fail;
    if (pthread_mutex_init(&p->lock, NULL) != 0) goto fail_lock;
    /* Timed waits (job.c) measure on the monotonic clock. */
    if (sli_cond_init_mono(&p->cond) != 0) goto fail_cond;
    if (sli_pool_init(&p->pool) != 0) goto fail_pool;
    return p;
fail_pool:
    pthread_cond_destroy(&p->cond);
fail_cond:
    pthread_mutex_destroy(&p->lock);
fail_lock:
    pthread_mutex_destroy(&p->err_lock);
fail:
    free(p);
    return NULL;
}

void *sl_pipeline_dup(sl_pipeline *p, const void *ptr, size_t size)
{
    if (!p || p->err) return NULL;
    void *c = malloc(size ? size : 1);
    if (!c) {
        sl_pipeline_error(p, SL_ENOMEM, "out of memory");
        return NULL;
    }
    if (size) memcpy(c, ptr, size);
    return sl_pipeline_own(p, c) ? NULL : c;
}

int sl_pipeline_own(sl_pipeline *p, void *ptr)
{
    void **n = realloc(p->owned, (size_t)(p->n_owned + 1) * sizeof(*n));
    if (!n) {
        free(ptr);
        return sl_pipeline_error(p, SL_ENOMEM, "out of memory");
    }
    n[p->n_owned++] = ptr;
    p->owned = n;
    return 0;
}

const char *sl_pipeline_errmsg(const sl_pipeline *p)
{
    return p ? p->errmsg : "no pipeline";
}

/* The graph is frozen once planned (see the top comment). Records the error. */
static int frozen(sl_pipeline *p, const char *what, const char *name)
{
    if (p->started)
        return sl_pipeline_error(p, SL_ESTATE, "%s%s%s: the pipeline is already running", what,
                                 name ? " " : "", name ? name : "");
    if (p->planned)
        return sl_pipeline_error(p, SL_ESTATE,
                                 "%s%s%s: the plan was built already (sl_pipeline_explain); "
                                 "build the whole graph first",
                                 what, name ? " " : "", name ? name : "");
    return 0;
}

static int check_settable(sl_pipeline *p, int v, int lo, int hi, const char *what, int planned)
{
    if (!p) return SL_EINVAL;
    if (p->started) return sl_pipeline_error(p, SL_ESTATE, "%s: the pipeline is running", what);
    if (planned && p->planned) return frozen(p, what, NULL);
    if (v < lo || v > hi)
        return sl_pipeline_error(p, SL_ERANGE, "%s must be between %d and %d, not %d", what, lo, hi,
                                 v);
    return 0;
}

int sl_pipeline_set_threads(sl_pipeline *p, int n)
{
    int rc = check_settable(p, n, 1, 256, "threads", 0);
    if (!rc) p->threads = n;
    return rc;
}

int sl_pipeline_set_parallelism(sl_pipeline *p, int n)
{
    int rc = check_settable(p, n, 1, SL_KEY_GROUPS, "parallelism", 1);
    if (!rc) p->parallelism = n;
    return rc;
}

int sl_pipeline_set_credits(sl_pipeline *p, int n)
{
    int rc = check_settable(p, n, 1, 4096, "credits", 1);
    if (!rc) p->credits = n;
    return rc;
}

static struct sl_stream *new_stream(sl_pipeline *p, int node, int port, uint32_t width)
{
    struct sl_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        sl_pipeline_error(p, SL_ENOMEM, "out of memory");
        return NULL;
    }
    s->p = p;
    s->node = node;
    s->port = port;
    s->width = width;
    s->part = SL_PART_FORWARD;
    s->next_alloc = p->streams;
    p->streams = s;
    return s;
}

/* Append a node; returns its index or -1 (error recorded). */
static int add_node(sl_pipeline *p, const char *name, enum sl_node_kind kind)
{
    if (p->err) return -1;
    if (p->started || p->planned) {
        char what[96];
        snprintf(what, sizeof(what), "node '%s'", name ? name : "");
        frozen(p, what, NULL);
        return -1;
    }
    if (!name || !*name) {
        sl_pipeline_error(p, SL_EINVAL, "every node needs a non-empty name");
        return -1;
    }
    for (int i = 0; i < p->n_nodes; i++) {
        if (strcmp(p->nodes[i].name, name) == 0) {
            sl_pipeline_error(p, SL_EEXIST, "node '%s': the name is already used", name);
            return -1;
        }
    }
    if (p->n_nodes == p->cap_nodes) {
        int cap = p->cap_nodes ? p->cap_nodes * 2 : 16;
        sl_node *n = realloc(p->nodes, (size_t)cap * sizeof(*n));
        if (!n) {
            sl_pipeline_error(p, SL_ENOMEM, "out of memory");
            return -1;
        }
        p->nodes = n;
        p->cap_nodes = cap;
    }
    sl_node *n = &p->nodes[p->n_nodes];
    memset(n, 0, sizeof(*n));
    n->name = strdup(name);
    if (!n->name) {
        sl_pipeline_error(p, SL_ENOMEM, "out of memory");
        return -1;
    }
    n->kind = kind;
    n->parallelism = 0; /* 0: the pipeline's default, fixed at planning */
    return p->n_nodes++;
}

sl_stream *sl_pipeline_source(sl_pipeline *p, const char *name, const sl_source *src, void *conf,
                              uint32_t width, const sl_watermark_conf *wm)
{
    if (!p) return NULL;
    if (!src || src->version < 2 || src->version > SL_SOURCE_VERSION || !src->open || !src->poll) {
        sl_pipeline_error(p, SL_EINVAL,
                          "source '%s': not a version 2 or %d source table (with open and poll)",
                          name ? name : "", SL_SOURCE_VERSION);
        return NULL;
    }
    if (wm && (wm->delay < 0 || wm->idle_ms < 0)) {
        sl_pipeline_error(p, SL_EINVAL, "source '%s': watermark delay and idle_ms must be >= 0",
                          name ? name : "");
        return NULL;
    }
    int id = add_node(p, name, SL_NODE_SOURCE);
    if (id < 0) return NULL;
    sl_node *n = &p->nodes[id];
    n->src = src;
    n->conf = conf;
    if (wm) {
        n->wm = *wm;
        n->has_wm = 1;
    }
    /* Port 1: the engine-provided dead-letter port (sluice/source.h),
     * counted in the pipeline's dead_letters. */
    n->n_ports = 2;
    n->port_width[0] = width;
    n->port_width[1] = 0;
    n->port_role[1] = SL_PORT_DEAD_LETTER;
    n->port_declared = 1u | 2u;
    return new_stream(p, id, 0, width);
}

sl_stream *sl_stream_dead_letters(sl_stream *s)
{
    if (!s) return NULL;
    if (s->p->nodes[s->node].kind != SL_NODE_SOURCE) {
        sl_pipeline_error(s->p, SL_EINVAL, "node '%s': dead letters come from sources only",
                          s->p->nodes[s->node].name);
        return NULL;
    }
    return sl_stream_side(s, 1, 0);
}

static int check_inputs(sl_stream *const *in, int n_in, const char *name)
{
    if (n_in < 1 || !in || !in[0]) return 0;
    sl_pipeline *p = in[0]->p;
    if (p->err) return 0;
    if (n_in > SL_MAX_INPUTS) {
        sl_pipeline_error(p, SL_ERANGE, "node '%s': at most %d inputs", name ? name : "",
                          SL_MAX_INPUTS);
        return 0;
    }
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) return 0;
        if (in[i]->p != p) {
            sl_pipeline_error(p, SL_EINVAL, "node '%s': input %d belongs to another pipeline",
                              name ? name : "", i);
            return 0;
        }
    }
    return 1;
}

static int add_op_node(sl_stream *const *in, int n_in, const char *name, const sl_operator *op,
                       void *conf, enum sl_node_kind kind)
{
    if (!check_inputs(in, n_in, name)) return -1;
    sl_pipeline *p = in[0]->p;
    if (!op || op->version < 1 || op->version > SL_OPERATOR_VERSION || !op->process) {
        sl_pipeline_error(p, SL_EINVAL,
                          "node '%s': not a version 1..%d operator table with process",
                          name ? name : "", SL_OPERATOR_VERSION);
        return -1;
    }
    int id = add_node(p, name, kind);
    if (id < 0) return -1;
    sl_node *n = &p->nodes[id];
    n->op = op;
    n->conf = conf;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    return id;
}

sl_stream *sl_stream_apply_n(sl_stream *const *in, int n_in, const char *name,
                             const sl_operator *op, void *conf, uint32_t out_width)
{
    int id = add_op_node(in, n_in, name, op, conf, SL_NODE_OPERATOR);
    if (id < 0) return NULL;
    sl_pipeline *p = in[0]->p;
    p->nodes[id].n_ports = 1;
    p->nodes[id].port_width[0] = out_width;
    p->nodes[id].port_declared = 1;
    return new_stream(p, id, 0, out_width);
}

sl_stream *sl_stream_apply(sl_stream *in, const char *name, const sl_operator *op, void *conf,
                           uint32_t out_width)
{
    return sl_stream_apply_n(&in, 1, name, op, conf, out_width);
}

int sl_stream_sink(sl_stream *in, const char *name, const sl_operator *sink, void *conf)
{
    if (!in) return SL_EINVAL;
    int id = add_op_node(&in, 1, name, sink, conf, SL_NODE_SINK);
    return id < 0 ? (in->p->err ? in->p->err : SL_EINVAL) : 0;
}

/* role < 0: keep the role of a declared port (DATA for a new one). */
static sl_stream *side(sl_stream *s, int port, uint32_t width, int role)
{
    if (!s || s->p->err) return NULL;
    sl_pipeline *p = s->p;
    sl_node *n = &p->nodes[s->node];
    if (frozen(p, "side output of", n->name)) return NULL;
    if (port < 1 || port >= SL_MAX_PORTS) {
        sl_pipeline_error(p, SL_ERANGE, "node '%s': side output port must be 1..%d, not %d",
                          n->name, SL_MAX_PORTS - 1, port);
        return NULL;
    }
    if (n->kind == SL_NODE_SOURCE && port == 1 && width != 0) {
        sl_pipeline_error(p, SL_EINVAL,
                          "node '%s': port 1 of a source is its dead-letter port (variable length)",
                          n->name);
        return NULL;
    }
    unsigned bit = 1u << port;
    if (role >= 0) {
        if (role > SL_PORT_DEAD_LETTER) {
            sl_pipeline_error(p, SL_EINVAL, "node '%s': port %d: unknown port role %d", n->name,
                              port, role);
            return NULL;
        }
        if ((n->port_declared & bit) && n->port_role[port] != role) {
            sl_pipeline_error(p, SL_EINVAL, "node '%s': port %d was declared with role %d, not %d",
                              n->name, port, n->port_role[port], role);
            return NULL;
        }
        n->port_role[port] = role;
    } else if (!(n->port_declared & bit)) {
        n->port_role[port] = SL_PORT_DATA;
    }
    n->port_declared |= bit;
    if (port >= n->n_ports) n->n_ports = port + 1;
    n->port_width[port] = width;
    return new_stream(p, s->node, port, width);
}

sl_stream *sl_stream_side(sl_stream *s, int port, uint32_t width)
{
    return side(s, port, width, -1);
}

sl_stream *sl_stream_side_as(sl_stream *s, int port, uint32_t width, int role)
{
    if (s && role < 0) {
        sl_pipeline_error(s->p, SL_EINVAL, "side output: unknown port role %d", role);
        return NULL;
    }
    return side(s, port, width, role);
}

sl_stream *sl_stream_parallelism(sl_stream *s, int parallelism)
{
    if (!s || s->p->err) return NULL;
    sl_node *n = &s->p->nodes[s->node];
    if (frozen(s->p, "parallelism of", n->name)) return NULL;
    if (parallelism < 1 || parallelism > SL_KEY_GROUPS) {
        sl_pipeline_error(s->p, SL_ERANGE, "node '%s': parallelism must be 1..%d, not %d", n->name,
                          SL_KEY_GROUPS, parallelism);
        return NULL;
    }
    n->parallelism = parallelism;
    return s;
}

int sl_pipeline_set_node_parallelism(sl_pipeline *p, const char *name, int parallelism)
{
    if (!p) return SL_EINVAL;
    if (p->err) return p->err;
    if (frozen(p, "parallelism of", name)) return p->err;
    for (int i = 0; i < p->n_nodes; i++) {
        if (strcmp(p->nodes[i].name, name) != 0) continue;
        if (parallelism < 1 || parallelism > SL_KEY_GROUPS)
            return sl_pipeline_error(p, SL_ERANGE, "node '%s': parallelism must be 1..%d, not %d",
                                     name, SL_KEY_GROUPS, parallelism);
        p->nodes[i].parallelism = parallelism;
        return 0;
    }
    return sl_pipeline_error(p, SL_ENOENT, "no node named '%s'", name ? name : "");
}

sl_stream *sl_stream_rebalance(sl_stream *s)
{
    if (!s || s->p->err || frozen(s->p, "rebalance", NULL)) return NULL;
    s->part = SL_PART_REBALANCE;
    return s;
}

sl_stream *sl_stream_broadcast(sl_stream *s)
{
    if (!s || s->p->err || frozen(s->p, "broadcast", NULL)) return NULL;
    s->part = SL_PART_BROADCAST;
    return s;
}

sl_pipeline *sl_stream_pipeline(const sl_stream *s)
{
    return s ? s->p : NULL;
}
uint32_t sl_stream_width(const sl_stream *s)
{
    return s ? s->width : 0;
}
int sl_stream_keyed(const sl_stream *s)
{
    return s && s->key != NULL;
}

void *sl_stream_conf(const sl_stream *s)
{
    return s ? s->p->nodes[s->node].conf : NULL;
}

void *sl_stream_op_conf(const sl_stream *s, const sl_operator *op)
{
    if (!s || !op) return NULL;
    const sl_node *n = &s->p->nodes[s->node];
    return n->op == op ? n->conf : NULL;
}

sl_stream *sl_stream_keep_key(sl_stream *out, const sl_stream *in)
{
    if (!out || !in) return out;
    out->key = in->key;
    out->key_ud = in->key_ud;
    return out;
}
