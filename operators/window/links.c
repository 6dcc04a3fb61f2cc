/*
 * operators/window/links.c - a window's result as a span with links to the
 * sampled spans of the records that went into it (sluice/window.h, the
 * trace context of results).
 *
 * With a tracer on the pipeline, the window keeps the trace contexts of
 * sampled records it took in, only ever from batches that carry a trace
 * column: a window without traced input pays one pointer test per batch
 * and per result. They are kept per key and bucket of event time: the
 * slice for tumbling and sliding windows (windows are unions of slices),
 * the gap for sessions (a bucket that narrow never holds records of two
 * sessions of a key: they are a gap apart); the first LINKS_PER_BUCKET of
 * each (event time, arrival time, context), the others only counted. When a window [start, end) of a key fires, the buckets it
 * covers make its result a span, named after the window node: the child of
 * the earliest-arrived contribution in the window (so that trace goes on
 * downstream), with links to up to SL_SPAN_LINKS_MAX of them (the span
 * counts the others as dropped links), started at that arrival and ended
 * at the firing; attributes sluice.window.start, sluice.window.end,
 * sluice.key_hash and sluice.contributors (every sampled record of the
 * window that was seen, kept or only counted). The result record carries
 * the span's context. At the firing, the buckets no later window can cover
 * are forgotten (below start + slide; for sessions, those ending by the
 * session's end); a re-firing within the allowed lateness links what came
 * since.
 *
 * The table: open addressing with linear probing over (key hash, bucket)
 * (two keys with one 64-bit hash share their links: accepted, tracing is
 * best effort), deletion by backward shift, grown by doubling up to
 * LINKS_MAX_SLOTS; past that, contributions to new buckets are not kept.
 * Not in checkpoints: after a restore the windows link nothing from before
 * it. A session's firing visits at most LINKS_MAX_VISIT buckets.
 *
 * Runs on the instance's worker thread, like the rest of the operator.
 */
#include "engine/pool.h" /* the trace column's bits */
#include "operators/window/window_int.h"
#include "sluice/trace.h"

#define LINKS_PER_BUCKET 4
#define LINKS_MAX_SLOTS  4096 /* (key, bucket) pairs at most: about 900 KB */
#define LINKS_MAX_VISIT  256  /* buckets a firing looks at, at most */

typedef struct contrib {
    int64_t ts;    /* event time */
    int64_t at_ns; /* arrival (wall clock) */
    sl_trace_ctx c;
} contrib;

typedef struct lslot {
    uint64_t h;
    int64_t b;     /* bucket */
    uint32_t used; /* 0: empty slot */
    uint32_t n;    /* contributions kept */
    uint64_t seen; /* contributions seen (kept or not) */
    contrib e[LINKS_PER_BUCKET];
} lslot;

struct win_links {
    sl_tracer *tracer;
    lslot *slots;
    size_t cap, n;      /* slots, used */
    int64_t width, off; /* bucket b is [off + b width, off + (b + 1) width) */
};

static size_t home(const struct win_links *l, uint64_t h, int64_t b)
{
    uint64_t x = (h ^ ((uint64_t)b * 0xD6E8FEB86659FD93ull)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 20) & (l->cap - 1);
}

static int64_t bucket_of(const struct win_links *l, int64_t ts)
{
    return sli_win_fdiv((__int128)ts - l->off, l->width);
}

static lslot *find(struct win_links *l, uint64_t h, int64_t b)
{
    if (!l->n) return NULL;
    for (size_t i = home(l, h, b);; i = (i + 1) & (l->cap - 1)) {
        if (!l->slots[i].used) return NULL;
        if (l->slots[i].h == h && l->slots[i].b == b) return &l->slots[i];
    }
}

static int grow(struct win_links *l)
{
    size_t cap = l->cap ? l->cap * 2 : 64;
    lslot *old = l->slots, *s = calloc(cap, sizeof(*s));
    if (!s) return SL_ENOMEM;
    size_t ocap = l->cap;
    l->slots = s;
    l->cap = cap;
    for (size_t k = 0; k < ocap; k++) {
        if (!old[k].used) continue;
        size_t i = home(l, old[k].h, old[k].b);
        while (s[i].used) i = (i + 1) & (cap - 1);
        s[i] = old[k];
    }
    free(old);
    return 0;
}

static lslot *insert(struct win_links *l, uint64_t h, int64_t b)
{
    lslot *s = find(l, h, b);
    if (s) return s;
    if ((l->n + 1) * 4 > l->cap * 3) {
        if (l->cap >= LINKS_MAX_SLOTS || grow(l)) return NULL; /* full: not kept */
    }
    size_t i = home(l, h, b);
    while (l->slots[i].used) i = (i + 1) & (l->cap - 1);
    s = &l->slots[i];
    s->h = h;
    s->b = b;
    s->used = 1;
    s->n = 0;
    s->seen = 0;
    l->n++;
    return s;
}

/* Backward-shift deletion: the entries after the hole that may move into
 * it do, so that lookups need no tombstones. */
static void erase(struct win_links *l, lslot *s)
{
    size_t i = (size_t)(s - l->slots), j = i;
    l->slots[i].used = 0;
    l->n--;
    for (;;) {
        j = (j + 1) & (l->cap - 1);
        if (!l->slots[j].used) return;
        size_t k = home(l, l->slots[j].h, l->slots[j].b);
        /* j's entry may move to i if its home is not in (i, j] (cyclic) */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue;
        l->slots[i] = l->slots[j];
        l->slots[j].used = 0;
        i = j;
    }
}

int sli_win_links_open(sl_ctx *ctx, win *w)
{
    sl_tracer *t = sl_pipeline_tracer(sl_ctx_pipeline(ctx));
    if (!t) return 0;
    if (!(w->links = calloc(1, sizeof(*w->links)))) return SL_ENOMEM;
    w->links->tracer = t;
    w->links->width = w->kind == SL_WINDOW_SESSION ? w->gap : w->g;
    w->links->off = w->kind == SL_WINDOW_SESSION ? 0 : w->off;
    return 0;
}

void sli_win_links_close(win *w)
{
    if (!w->links) return;
    free(w->links->slots);
    free(w->links);
    w->links = NULL;
}

void sli_win_links_add(win *w, const sl_batch *in)
{
    struct win_links *l = w->links;
    int64_t now = 0;
    SLI_TRACE_EACH(in, i, {
        const sl_trace_ctx *c = &in->trace[i];
        lslot *s = c->flags & SL_TRACE_FLAG_SAMPLED
                       ? insert(l, in->hash[i], bucket_of(l, in->ts[i]))
                       : NULL;
        if (s && s->n < LINKS_PER_BUCKET) {
            if (!now) now = sl_trace_now_ns();
            s->e[s->n++] = (contrib){.ts = in->ts[i], .at_ns = now, .c = *c};
            s->e[s->n - 1].c.state = NULL; /* its bytes are the batch's: ids only */
            s->e[s->n - 1].c.state_len = 0;
        }
        if (s) s->seen++;
    })
}

int sli_win_links_span(sl_ctx *ctx, win *w, uint64_t h, int64_t start, int64_t end,
                       sl_trace_ctx *out)
{
    struct win_links *l = w->links;
    if (!l->n) return 0;
    int64_t b0 = bucket_of(l, start), b1 = bucket_of(l, end - 1);
    if (b1 - b0 >= LINKS_MAX_VISIT) b0 = b1 - (LINKS_MAX_VISIT - 1);
    /* buckets below `keep` no later window covers */
    int64_t keep =
        w->kind == SL_WINDOW_SESSION ? bucket_of(l, end) : bucket_of(l, start + w->slide);
    const contrib *first = NULL;
    uint64_t seen = 0;
    for (int64_t b = b0; b <= b1; b++) {
        lslot *s = find(l, h, b);
        if (!s) continue;
        seen += s->seen; /* the bucket's records are this window's */
        for (uint32_t j = 0; j < s->n; j++) {
            const contrib *c = &s->e[j];
            if (c->ts < start || c->ts >= end) continue;
            if (!first || c->at_ns < first->at_ns) first = c;
        }
    }
    int made = 0;
    if (first) {
        sl_span sp;
        sl_span_start_at(l->tracer, &sp, sl_ctx_name(ctx), SL_SPAN_KIND_INTERNAL, &first->c,
                         first->at_ns);
        for (int64_t b = b0; b <= b1; b++) {
            const lslot *s = find(l, h, b);
            for (uint32_t j = 0; s && j < s->n; j++)
                if (s->e[j].ts >= start && s->e[j].ts < end) sl_span_add_link(&sp, &s->e[j].c);
        }
        sl_span_set_int(&sp, "sluice.window.start", start);
        sl_span_set_int(&sp, "sluice.window.end", end);
        sl_span_set_int(&sp, "sluice.key_hash", (int64_t)h);
        sl_span_set_int(&sp, "sluice.contributors", (int64_t)seen);
        *out = sl_span_context(&sp);
        sl_span_end(&sp, 0);
        made = sl_trace_ctx_valid(out);
    }
    for (int64_t b = b0; b <= b1 && b < keep; b++) {
        lslot *s = find(l, h, b);
        if (s) erase(l, s);
    }
    return made;
}
