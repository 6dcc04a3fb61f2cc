/*
 * operators/watermark.c - watermark strategies for sources: per-partition
 * bounded out-of-orderness or user watermarks, periodic or punctuated, with
 * idleness; and a generator source that uses them.
 *
 * A source instance reads one or more partitions. For each it tracks the
 * largest event time seen and the partition's watermark (max - delay - 1, or
 * what the user function says; never decreasing). The instance's watermark is
 * the minimum over its active partitions, announced with sl_ctx_watermark()
 * after every record (punctuated) or after every poll (periodic); the engine
 * ignores announcements that do not advance it.
 *
 * Idleness: a partition is idle after it has been *polled without data*
 * continuously for idle_ms of processing time (CLOCK_MONOTONIC). The engine
 * polls a source only when its output channels have credit, so a partition
 * held back by backpressure is not polled and its silence does not count;
 * moreover a gap between two polls longer than idle_ms (the source was
 * blocked) restarts the count, so a partition never turns idle on the first
 * empty poll after being blocked. Data makes a partition active again. When
 * every partition of the instance is idle the instance announces idleness
 * (downstream minimums then ignore it) until data comes.
 *
 * Invariants: announced watermarks only increase; an idle partition is
 * excluded from the minimum; a partition that never had data holds the
 * minimum at SL_TIME_MIN until it turns idle (as in Flink).
 *
 * Runs on the source instance's thread; nothing here is shared.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sluice/sluice.h"
#include "sluice/window.h"

typedef struct wm_part {
    int64_t max_ts;
    int64_t wm;
    int idle;
    double empty_since; /* ms; < 0: the last poll had data */
    double last_poll;   /* ms; < 0: never polled */
} wm_part;

struct sl_wm_gen {
    sl_watermark_conf c;
    int n;
    wm_part *p;
    int64_t announced;
    int inst_idle;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

sl_wm_gen *sl_wm_gen_new(const sl_watermark_conf *conf, int n_partitions)
{
    if (n_partitions < 1) return NULL;
    sl_wm_gen *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    g->p = calloc((size_t)n_partitions, sizeof(*g->p));
    if (!g->p) {
        free(g);
        return NULL;
    }
    if (conf) g->c = *conf;
    if (g->c.delay < 0) g->c.delay = 0;
    g->n = n_partitions;
    g->announced = SL_TIME_MIN;
    for (int i = 0; i < n_partitions; i++) {
        g->p[i].max_ts = SL_TIME_MIN;
        g->p[i].wm = SL_TIME_MIN;
        g->p[i].empty_since = -1;
        g->p[i].last_poll = -1;
    }
    return g;
}

void sl_wm_gen_free(sl_wm_gen *g)
{
    if (!g) return;
    free(g->p);
    free(g);
}

int64_t sl_wm_gen_watermark(const sl_wm_gen *g)
{
    return g->announced;
}

int sl_wm_gen_is_idle(const sl_wm_gen *g, int partition)
{
    return partition >= 0 && partition < g->n && g->p[partition].idle;
}

/* Announce the minimum over active partitions (or idleness). */
static int announce(sl_ctx *ctx, sl_wm_gen *g)
{
    int64_t wm = SL_TIME_MAX;
    int any = 0;
    for (int i = 0; i < g->n; i++) {
        if (g->p[i].idle) continue;
        any = 1;
        if (g->p[i].wm < wm) wm = g->p[i].wm;
    }
    if (!any) {
        if (g->inst_idle) return 0;
        g->inst_idle = 1;
        return sl_ctx_idle(ctx, 1);
    }
    if (g->inst_idle) {
        g->inst_idle = 0;
        int rc = sl_ctx_idle(ctx, 0);
        if (rc) return rc;
    }
    if (wm <= g->announced) return 0;
    g->announced = wm;
    return sl_ctx_watermark(ctx, wm);
}

static inline void observe(sl_wm_gen *g, wm_part *p, const void *rec, uint32_t len, int64_t ts)
{
    if (ts > p->max_ts) p->max_ts = ts;
    int64_t cand;
    if (g->c.fn)
        cand = g->c.fn(rec, len, ts, p->max_ts, g->c.ud);
    else
        cand = p->max_ts == SL_TIME_MIN ? SL_TIME_MIN : p->max_ts - g->c.delay - 1;
    if (cand > p->wm) p->wm = cand;
}

int sl_wm_gen_record(sl_ctx *ctx, sl_wm_gen *g, int partition, const void *rec, uint32_t len,
                     int64_t ts)
{
    if (partition < 0 || partition >= g->n)
        return sl_ctx_fail(ctx, SL_EINVAL, "watermarks: no partition %d", partition);
    wm_part *p = &g->p[partition];
    observe(g, p, rec, len, ts);
    p->empty_since = -1;
    if (p->idle) {
        p->idle = 0;
        if (!g->c.punctuated) return announce(ctx, g); /* re-activate at once */
    }
    return g->c.punctuated ? announce(ctx, g) : 0;
}

int sl_wm_gen_batch(sl_ctx *ctx, sl_wm_gen *g, int partition, const sl_batch *b, uint32_t from,
                    uint32_t to)
{
    if (partition < 0 || partition >= g->n)
        return sl_ctx_fail(ctx, SL_EINVAL, "watermarks: no partition %d", partition);
    if (g->c.punctuated || g->c.fn) {
        for (uint32_t i = from; i < to; i++) {
            sl_bytes r = sl_batch_bytes(b, i);
            int rc = sl_wm_gen_record(ctx, g, partition, r.ptr, r.len, b->ts[i]);
            if (rc) return rc;
        }
        return 0;
    }
    if (from >= to) return 0;
    wm_part *p = &g->p[partition];
    int64_t mx = p->max_ts;
    for (uint32_t i = from; i < to; i++)
        if (b->ts[i] > mx) mx = b->ts[i];
    observe(g, p, NULL, 0, mx);
    p->empty_since = -1;
    if (p->idle) {
        p->idle = 0;
        return announce(ctx, g);
    }
    return 0;
}

int sl_wm_gen_polled(sl_ctx *ctx, sl_wm_gen *g, int partition, int had_data)
{
    if (partition < 0 || partition >= g->n)
        return sl_ctx_fail(ctx, SL_EINVAL, "watermarks: no partition %d", partition);
    wm_part *p = &g->p[partition];
    if (g->c.idle_ms > 0) {
        double now = now_ms();
        if (had_data) {
            p->empty_since = -1;
        } else {
            /* A long gap since the previous poll means the source was not
             * polled (backpressure): silence is counted from now. */
            if (p->empty_since < 0 ||
                (p->last_poll >= 0 && now - p->last_poll > (double)g->c.idle_ms))
                p->empty_since = now;
            if (!p->idle && now - p->empty_since >= (double)g->c.idle_ms) {
                p->idle = 1;
                p->last_poll = now;
                return announce(ctx, g);
            }
        }
        p->last_poll = now;
    }
    return g->c.punctuated ? 0 : announce(ctx, g);
}

/* --- generator with watermarks ------------------------------------------------------ */

typedef struct genwm {
    uint64_t k;
    uint64_t inst, par;
    double t0;
    sl_wm_gen *g;
} genwm;

static int genwm_open(sl_ctx *ctx, void **self)
{
    const sl_generator_wm_conf *c = sl_ctx_conf(ctx);
    if (!c || !c->gen.fn) return sl_ctx_fail(ctx, SL_EINVAL, "generator without a callback");
    if (c->gen.rate < 0) return sl_ctx_fail(ctx, SL_EINVAL, "generator rate must be >= 0");
    if (!sl_ctx_out_width(ctx, 0))
        return sl_ctx_fail(ctx, SL_EINVAL, "generator records need a fixed width");
    genwm *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->g = sl_wm_gen_new(&c->wm, 1);
    if (!s->g) {
        free(s);
        return SL_ENOMEM;
    }
    s->inst = (uint64_t)sl_ctx_instance(ctx);
    s->par = (uint64_t)sl_ctx_parallelism(ctx);
    s->t0 = -1;
    *self = s;
    return 0;
}

static void genwm_close(void *self)
{
    genwm *s = self;
    if (!s) return;
    sl_wm_gen_free(s->g);
    free(s);
}

static int genwm_poll(sl_ctx *ctx, void *self)
{
    genwm *s = self;
    const sl_generator_wm_conf *c = sl_ctx_conf(ctx);
    uint64_t n = SL_BATCH_CAPACITY;
    if (c->gen.count) {
        uint64_t mine = c->gen.count > s->inst ? (c->gen.count - s->inst + s->par - 1) / s->par : 0;
        if (s->k >= mine) return SL_POLL_END;
        if (mine - s->k < n) n = mine - s->k;
    }
    if (c->gen.rate > 0) {
        double now = now_ms() / 1e3;
        if (s->t0 < 0) s->t0 = now;
        double allowed = (now - s->t0) * c->gen.rate / (double)s->par + 1;
        if ((double)s->k >= allowed) {
            int rc = sl_wm_gen_polled(ctx, s->g, 0, 0);
            return rc ? rc : SL_POLL_WAIT;
        }
        if ((double)(s->k + n) > allowed) n = (uint64_t)(allowed - (double)s->k) + 1;
    }
    if (c->wm.punctuated) {
        for (uint64_t j = 0; j < n; j++) {
            sl_batch *b = sl_out_batch(ctx, 0);
            if (!b) return sl_ctx_error(ctx);
            uint32_t i = b->count, w = b->width;
            b->hash[i] = 0;
            int rc =
                c->gen.fn(b->data + (size_t)i * w, s->inst + s->k * s->par, &b->ts[i], c->gen.ud);
            if (rc) return rc < 0 ? rc : SL_EOPERATOR;
            b->count = i + 1;
            s->k++;
            rc = sl_wm_gen_record(ctx, s->g, 0, b->data + (size_t)i * w, w, b->ts[i]);
            if (rc) return rc;
        }
        int rc = sl_wm_gen_polled(ctx, s->g, 0, 1);
        return rc ? rc : SL_POLL_MORE;
    }
    sl_batch *b = sl_out_batch(ctx, 0);
    if (!b) return sl_ctx_error(ctx);
    uint32_t room = SL_BATCH_CAPACITY - b->count, w = b->width, from = b->count;
    if (n > room) n = room;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t i = b->count;
        b->hash[i] = 0;
        int rc =
            c->gen.fn(b->data + (size_t)i * w, s->inst + (s->k + j) * s->par, &b->ts[i], c->gen.ud);
        if (rc) return rc < 0 ? rc : SL_EOPERATOR;
        b->count = i + 1;
    }
    s->k += n;
    int rc = sl_wm_gen_batch(ctx, s->g, 0, b, from, b->count);
    if (!rc) rc = sl_wm_gen_polled(ctx, s->g, 0, n > 0);
    return rc ? rc : SL_POLL_MORE;
}

static int genwm_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    genwm *s = self;
    return sl_buf_append(out, &s->k, sizeof(s->k));
}

static int genwm_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    genwm *s = self;
    if (len != sizeof(s->k)) return SL_ECORRUPT;
    memcpy(&s->k, data, sizeof(s->k));
    return 0;
}

const sl_source sl_source_generator_wm = {.version = SL_SOURCE_VERSION,
                                          .kind = "generator",
                                          .open = genwm_open,
                                          .poll = genwm_poll,
                                          .snapshot = genwm_snapshot,
                                          .restore = genwm_restore,
                                          .close = genwm_close};

sl_stream *sl_pipeline_generator_wm(sl_pipeline *p, const char *name,
                                    const sl_generator_wm_conf *conf, uint32_t width)
{
    return sl_pipeline_source(p, name, &sl_source_generator_wm, (void *)conf, width);
}
