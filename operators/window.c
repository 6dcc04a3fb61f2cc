/*
 * operators/window.c - event-time windows: tumbling and sliding windows over
 * slices, session windows with Flink's merge rule, allowed lateness, late
 * side output (sluice/window.h states the semantics).
 *
 * Tumbling and sliding windows. Time is cut into slices of g = gcd(size,
 * slide) aligned on `offset`; window boundaries are slice boundaries. Each
 * record is added once, to the accumulator of its slice, kept in the keyed
 * state table "slices" under the composite key (record key ‖ slice start):
 *
 *   composite key   offset  size     field
 *                   0       key_len  the record's key bytes
 *                   key_len 8        slice start, int64 (host order)
 *   value           0       acc_size the aggregate's accumulator
 *
 * The composite hash keeps the key hash's upper 32 bits (so the entry stays in
 * the key's key group) and mixes the slice start into the lower ones.
 *
 * Firing uses engine timers on the record key, one per key and window end
 * (never one per record): when a slice is created, a timer is set at
 * end - 1 of its first window that has not fired yet. When timer T fires, the
 * window [T + 1 - size, T + 1) merges its slices (size / g lookups) and is
 * emitted; if one of those slices also lies in the next window, the timer for
 * the next window end (T + slide) is set, so a chain of timers walks every
 * window that holds data. A slice is purged when its last window expires:
 * with lateness L > 0 a cleanup timer at (last window end) - 1 + L is set when
 * the slice is created; with L = 0 the last window's firing timer does it.
 * One timer callback handles both roles: whatever is due at T for the key.
 *
 * Session windows. Per key, the sessions form a list sorted by start, kept in
 * two keyed state tables: "heads" (key -> first session start, count) and
 * "sessions" (key ‖ start -> header + accumulator):
 *
 *   session value   offset  size     field
 *                   0       8        end (exclusive), int64
 *                   8       8        start of the next session of the key
 *                   16      1        has_next
 *                   17      1        fired: emitted since its last change
 *                   18      6        unused
 *                   24      acc_size accumulator
 *
 * Sessions of a key never overlap or touch (they would have merged), so a new
 * record's window [t, t + gap) intersects at most two of them (every session
 * is at least gap long). A merge builds the merged accumulator with merge(),
 * removes the old entries and inserts the merged one. Timers are set at
 * end - 1 (fire) and end - 1 + L (purge); a timer that a merge made stale
 * finds nothing due and does nothing.
 *
 * Invariants:
 *  - every state entry present belongs to a window (or session) that has not
 *    expired: purging happens in the timer at expiry, and timers up to the
 *    watermark fire before any record is processed at that watermark;
 *  - a window with data fires exactly once by timer (timers are set only at
 *    times above the current watermark, and (key, ts) fires once), plus once
 *    per record that reaches it after it fired and before it expired;
 *  - nothing is allocated per record: scratch buffers live in the instance.
 *
 * Runs on the worker thread of the instance's task, like every operator.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "sluice/sluice.h"
#include "sluice/window.h"

typedef struct win {
    sl_window_kind kind;
    int64_t size, slide, g, off, L, gap;
    const sl_aggregate *agg;
    const void *ud;
    uint32_t acc_size, rs;
    uint32_t in_width;
    sl_state *slices;   /* tumbling, sliding */
    sl_state *heads;    /* session */
    sl_state *sessions; /* session */
    uint8_t *ck;        /* composite key scratch */
    size_t ck_cap;
    uint8_t *acc_tmp; /* acc_size */
    uint8_t *res_tmp; /* result_size */
    uint8_t *sess_tmp;
} win;

#define SESS_HDR 24

typedef struct sess_hdr {
    int64_t end;
    int64_t next;
    uint8_t has_next;
    uint8_t fired;
    uint8_t pad[6];
} sess_hdr;

typedef struct sess_head {
    int64_t first;
    uint32_t n;
    uint32_t pad;
} sess_head;

static inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b) != 0 && ((a < 0) != (b < 0))) q--;
    return q;
}

static inline int64_t align_down(int64_t t, int64_t off, int64_t step)
{
    return off + floor_div(t - off, step) * step;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static inline uint64_t ck_hash(uint64_t h, int64_t s)
{
    uint64_t x = ((uint64_t)s * 0x9E3779B97F4A7C15ull) ^ h;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (h & 0xFFFFFFFF00000000ull) | (x & 0xFFFFFFFFull);
}

/* Composite key (key ‖ start) in the scratch buffer; NULL when out of memory. */
static inline const uint8_t *ck_make(win *w, const void *key, uint32_t klen, int64_t s)
{
    if ((size_t)klen + 8 > w->ck_cap) {
        size_t cap = w->ck_cap ? w->ck_cap : 64;
        while (cap < (size_t)klen + 8) cap *= 2;
        uint8_t *n = realloc(w->ck, cap);
        if (!n) return NULL;
        w->ck = n;
        w->ck_cap = cap;
    }
    if (klen) memcpy(w->ck, key, klen);
    memcpy(w->ck + klen, &s, 8);
    return w->ck;
}

static int emit_result(sl_ctx *ctx, win *w, uint64_t h, const void *key, uint32_t klen,
                       int64_t start, int64_t end, const void *acc)
{
    uint8_t *o = sl_emit(ctx, end - 1, h, 16 + w->rs + klen);
    if (!o) return sl_ctx_error(ctx);
    memcpy(o, &start, 8);
    memcpy(o + 8, &end, 8);
    w->agg->result(acc, w->res_tmp, w->ud);
    memcpy(o + 16, w->res_tmp, w->rs);
    if (klen) memcpy(o + 16 + w->rs, key, klen);
    return 0;
}

static int emit_late(sl_ctx *ctx, const sl_batch *in, uint32_t i)
{
    sl_bytes r = sl_batch_bytes(in, i);
    void *o = sl_emit_port(ctx, 1, in->ts[i], in->hash[i], r.len);
    if (!o) return sl_ctx_error(ctx);
    if (r.len) memcpy(o, r.ptr, r.len);
    return 0;
}

/* --- tumbling and sliding -------------------------------------------------------- */

/* Merge the slices of window [e - size, e) of a key and emit it if it holds
 * data. *maxf: start of the last slice found. Returns 1 if emitted, 0 if the
 * window is empty, < 0 on error. */
static int fire_window(sl_ctx *ctx, win *w, uint64_t h, const void *key, uint32_t klen, int64_t e,
                       int64_t *maxf)
{
    int found = 0;
    w->agg->init(w->acc_tmp, w->ud);
    for (int64_t s = e - w->size; s < e; s += w->g) {
        const uint8_t *ck = ck_make(w, key, klen, s);
        if (!ck) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
        const void *v = sl_state_find(w->slices, ck_hash(h, s), ck, klen + 8);
        if (!v) continue;
        if (w->g == w->size)
            memcpy(w->acc_tmp, v, w->acc_size);
        else
            w->agg->merge(w->acc_tmp, v, w->ud);
        found = 1;
        *maxf = s;
    }
    if (!found) return 0;
    int rc = emit_result(ctx, w, h, key, klen, e - w->size, e, w->acc_tmp);
    return rc ? rc : 1;
}

static int slices_process(sl_ctx *ctx, win *w, sl_batch *in)
{
    const int64_t W = sl_ctx_current_watermark(ctx);
    const int64_t size = w->size, slide = w->slide, g = w->g, off = w->off, L = w->L;
    const sl_aggregate *agg = w->agg;
    const void *ud = w->ud;
    /* Cache of the last slice touched: consecutive records of one key and
     * slice (common in ordered input) skip the lookup. Valid until an insert. */
    void *last_acc = NULL;
    uint64_t last_h = 0;
    int64_t last_s = 0;
    const void *last_key = NULL;
    uint32_t last_klen = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        int64_t ts = in->ts[i];
        uint64_t h = in->hash[i];
        int64_t s = align_down(ts, off, g);
        int64_t end_last = align_down(s, off, slide) + size;
        /* Every window of the record has expired, or (slide > size) the record
         * falls between windows: late. */
        if (W >= end_last - 1 + L || s >= end_last) {
            int rc = emit_late(ctx, in, i);
            if (rc) return rc;
            continue;
        }
        sl_bytes key = sl_ctx_key(ctx, in, i);
        sl_bytes rec = sl_batch_bytes(in, i);
        void *acc;
        if (last_acc && h == last_h && s == last_s && key.len == last_klen &&
            memcmp(key.ptr, last_key, key.len) == 0) {
            acc = last_acc;
        } else {
            const uint8_t *ck = ck_make(w, key.ptr, key.len, s);
            int created = 0;
            acc = ck ? sl_state_get(w->slices, ck_hash(h, s), ck, key.len + 8, &created) : NULL;
            if (!acc) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for window state");
            if (created) {
                agg->init(acc, ud);
                /* First window not fired yet, and the purge of the slice. */
                int64_t end_first = align_down(s - size, off, slide) + slide + size;
                int64_t e = end_first;
                if (W >= e - 1) e = end_first + (floor_div(W + 1 - end_first, slide) + 1) * slide;
                int rc = 0;
                if (e <= end_last) rc = sl_ctx_timer(ctx, e - 1, h, key.ptr, key.len);
                if (!rc && L > 0) rc = sl_ctx_timer(ctx, end_last - 1 + L, h, key.ptr, key.len);
                if (rc) return rc;
                /* Timers do not move state values, but the insert may have. */
                last_acc = NULL;
            }
            last_acc = acc;
            last_h = h;
            last_s = s;
            last_key = key.ptr;
            last_klen = key.len;
            if ((const uint8_t *)key.ptr < (const uint8_t *)rec.ptr ||
                (const uint8_t *)key.ptr + key.len > (const uint8_t *)rec.ptr + rec.len)
                last_acc = NULL; /* the key is not in the record: maybe not stable */
        }
        agg->add(acc, rec.ptr, rec.len, ts, ud);
        /* Windows of the slice that fired already but have not expired fire
         * again at once. */
        int64_t end_first = align_down(s - size, off, slide) + slide + size;
        if (W >= end_first - 1) {
            last_acc = NULL; /* fire_window reuses the scratch key */
            for (int64_t e = end_first; e <= end_last && e - 1 <= W; e += slide) {
                if (W >= e - 1 + L) continue; /* expired */
                int64_t maxf;
                int rc = fire_window(ctx, w, h, key.ptr, key.len, e, &maxf);
                if (rc < 0) return rc;
            }
        }
    }
    return 0;
}

static int slices_timer(sl_ctx *ctx, win *w, const sl_timer *t)
{
    int64_t T = t->ts, e = T + 1;
    if (floor_div(e - w->size - w->off, w->slide) * w->slide == e - w->size - w->off) {
        int64_t maxf = 0;
        int rc = fire_window(ctx, w, t->hash, t->key, t->key_len, e, &maxf);
        if (rc < 0) return rc;
        if (rc == 1 && maxf >= e + w->slide - w->size) {
            rc = sl_ctx_timer(ctx, T + w->slide, t->hash, t->key, t->key_len);
            if (rc) return rc;
        }
    }
    int64_t ec = T + 1 - w->L; /* last window end of the slices that expire now */
    if (floor_div(ec - w->size - w->off, w->slide) * w->slide == ec - w->size - w->off) {
        for (int64_t s = ec - w->size; s < ec - w->size + w->slide; s += w->g) {
            const uint8_t *ck = ck_make(w, t->key, t->key_len, s);
            if (!ck) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
            sl_state_remove(w->slices, ck_hash(t->hash, s), ck, t->key_len + 8);
        }
    }
    return 0;
}

/* --- sessions ------------------------------------------------------------------------ */

static inline sess_hdr *sess_find(win *w, uint64_t h, const void *key, uint32_t klen, int64_t s)
{
    const uint8_t *ck = ck_make(w, key, klen, s);
    return ck ? sl_state_find(w->sessions, ck_hash(h, s), ck, klen + 8) : NULL;
}

static inline void sess_remove(win *w, uint64_t h, const void *key, uint32_t klen, int64_t s)
{
    const uint8_t *ck = ck_make(w, key, klen, s);
    if (ck) sl_state_remove(w->sessions, ck_hash(h, s), ck, klen + 8);
}

/* Point the link before `s` (the head, or session prev) at next. */
static void sess_relink(win *w, sess_head *hd, uint64_t h, const void *key, uint32_t klen,
                        int have_prev, int64_t prev, int has_next, int64_t next)
{
    if (!have_prev) {
        hd->first = next; /* meaningful only when n > 0 */
        return;
    }
    sess_hdr *p = sess_find(w, h, key, klen, prev);
    if (p) {
        p->next = next;
        p->has_next = (uint8_t)has_next;
    }
}

static int sess_process_one(sl_ctx *ctx, win *w, const sl_batch *in, uint32_t i, int64_t W)
{
    int64_t ts = in->ts[i];
    uint64_t h = in->hash[i];
    sl_bytes key = sl_ctx_key(ctx, in, i);
    sl_bytes rec = sl_batch_bytes(in, i);
    int64_t ws = ts, we = ts + w->gap;
    int created = 0;
    sess_head *hd = sl_state_get(w->heads, h, key.ptr, key.len, &created);
    if (!hd) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for session state");
    /* Find the first session that ends at or after ws (sorted by start, and
     * disjoint, so ends are sorted too). */
    int have_prev = 0, have1 = 0, have2 = 0;
    int64_t prev = 0, s1 = 0, s2 = 0;
    sess_hdr h1 = {0}, h2 = {0};
    int64_t cur = hd->first;
    int has = hd->n > 0;
    while (has) {
        sess_hdr *e = sess_find(w, h, key.ptr, key.len, cur);
        if (!e) return sl_ctx_fail(ctx, SL_ECORRUPT, "session list broken");
        if (e->end >= ws) {
            if (cur <= we) {
                have1 = 1;
                s1 = cur;
                h1 = *e;
                if (e->has_next) {
                    sess_hdr *e2 = sess_find(w, h, key.ptr, key.len, e->next);
                    if (!e2) return sl_ctx_fail(ctx, SL_ECORRUPT, "session list broken");
                    if (e->next <= we) {
                        have2 = 1;
                        s2 = e->next;
                        h2 = *e2;
                    }
                }
            }
            break;
        }
        have_prev = 1;
        prev = cur;
        has = e->has_next;
        cur = e->next;
    }
    if (!have1 && W >= we - 1 + w->L) { /* alone, and expired: late */
        if (hd->n == 0) sl_state_remove(w->heads, h, key.ptr, key.len);
        return emit_late(ctx, in, i);
    }
    int64_t ms = ws, me = we;
    if (have1) {
        if (s1 < ms) ms = s1;
        if (h1.end > me) me = h1.end;
    }
    if (have2 && h2.end > me) me = h2.end;
    sess_hdr *e;
    if (have1 && !have2 && ms == s1) {
        /* The record falls in (or extends the end of) one session: in place. */
        e = sess_find(w, h, key.ptr, key.len, s1);
        if (me != e->end) e->fired = 0;
        e->end = me;
    } else {
        /* New or merged session: build the accumulator, replace the entries. */
        uint8_t *acc = w->sess_tmp;
        w->agg->init(acc, w->ud);
        int has_next = 0;
        int64_t next = 0;
        if (have1) {
            sess_hdr *e1 = sess_find(w, h, key.ptr, key.len, s1);
            w->agg->merge(acc, (uint8_t *)e1 + SESS_HDR, w->ud);
            has_next = e1->has_next;
            next = e1->next;
            if (have2) {
                sess_hdr *e2 = sess_find(w, h, key.ptr, key.len, s2);
                w->agg->merge(acc, (uint8_t *)e2 + SESS_HDR, w->ud);
                has_next = e2->has_next;
                next = e2->next;
                sess_remove(w, h, key.ptr, key.len, s2);
                hd->n--;
            }
            sess_remove(w, h, key.ptr, key.len, s1);
            hd->n--;
        } else {
            /* Insert before `cur` (the first session ending at or after ws). */
            has_next = has;
            next = cur;
        }
        const uint8_t *ck = ck_make(w, key.ptr, key.len, ms);
        int cr = 0;
        e = ck ? sl_state_get(w->sessions, ck_hash(h, ms), ck, key.len + 8, &cr) : NULL;
        if (!e) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for session state");
        e->end = me;
        e->next = next;
        e->has_next = (uint8_t)has_next;
        e->fired = 0;
        memcpy((uint8_t *)e + SESS_HDR, acc, w->acc_size);
        hd->n++;
        sess_relink(w, hd, h, key.ptr, key.len, have_prev, prev, 1, ms);
        e = sess_find(w, h, key.ptr, key.len, ms);
    }
    w->agg->add((uint8_t *)e + SESS_HDR, rec.ptr, rec.len, ts, w->ud);
    int rc;
    if (me - 1 <= W) { /* past its end (within lateness): fire at once */
        e->fired = 1;
        rc = emit_result(ctx, w, h, key.ptr, key.len, ms, me, (uint8_t *)e + SESS_HDR);
    } else {
        rc = sl_ctx_timer(ctx, me - 1, h, key.ptr, key.len);
    }
    if (!rc && w->L > 0) rc = sl_ctx_timer(ctx, me - 1 + w->L, h, key.ptr, key.len);
    return rc;
}

static int sess_timer(sl_ctx *ctx, win *w, const sl_timer *t)
{
    int64_t T = t->ts;
    sess_head *hd = sl_state_find(w->heads, t->hash, t->key, t->key_len);
    if (!hd) return 0;
    int have_prev = 0;
    int64_t prev = 0, cur = hd->first;
    int has = hd->n > 0;
    while (has) {
        sess_hdr *e = sess_find(w, t->hash, t->key, t->key_len, cur);
        if (!e) return sl_ctx_fail(ctx, SL_ECORRUPT, "session list broken");
        if (e->end - 1 > T) break; /* this and later sessions are not due */
        int64_t next = e->next;
        int has_next = e->has_next;
        if (!e->fired) {
            e->fired = 1;
            int rc = emit_result(ctx, w, t->hash, t->key, t->key_len, cur, e->end,
                                 (uint8_t *)e + SESS_HDR);
            if (rc) return rc;
        }
        if (e->end - 1 + w->L <= T) {
            sess_remove(w, t->hash, t->key, t->key_len, cur);
            hd->n--;
            sess_relink(w, hd, t->hash, t->key, t->key_len, have_prev, prev, has_next, next);
        } else {
            have_prev = 1;
            prev = cur;
        }
        has = has_next;
        cur = next;
    }
    if (hd->n == 0) sl_state_remove(w->heads, t->hash, t->key, t->key_len);
    return 0;
}

/* --- operator table ------------------------------------------------------------------- */

static int win_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    win *w = self;
    if (w->kind != SL_WINDOW_SESSION) return slices_process(ctx, w, in);
    int64_t W = sl_ctx_current_watermark(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        int rc = sess_process_one(ctx, w, in, i, W);
        if (rc) return rc;
    }
    return 0;
}

static int win_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    win *w = self;
    return w->kind == SL_WINDOW_SESSION ? sess_timer(ctx, w, t) : slices_timer(ctx, w, t);
}

static void win_close(void *self)
{
    win *w = self;
    if (!w) return;
    free(w->ck);
    free(w->acc_tmp);
    free(w->res_tmp);
    free(w->sess_tmp);
    free(w);
}

static int win_open(sl_ctx *ctx, void **self)
{
    const sl_window_conf *c = sl_ctx_conf(ctx);
    win *w = calloc(1, sizeof(*w));
    if (!w) return SL_ENOMEM;
    w->kind = c->kind;
    w->size = c->size;
    w->slide = c->kind == SL_WINDOW_TUMBLING ? c->size : c->slide;
    w->off = c->kind == SL_WINDOW_SESSION ? 0 : c->offset % w->slide;
    w->gap = c->gap;
    w->L = c->lateness;
    w->g = c->kind == SL_WINDOW_SESSION ? 1 : gcd64(w->size, w->slide);
    w->agg = c->agg;
    w->ud = c->agg_ud;
    w->acc_size = c->agg->acc_size;
    w->rs = c->agg->result_size;
    size_t a = w->acc_size ? w->acc_size : 1;
    w->acc_tmp = malloc(a);
    w->sess_tmp = malloc(a);
    w->res_tmp = malloc(w->rs ? w->rs : 1);
    if (!w->acc_tmp || !w->sess_tmp || !w->res_tmp) goto oom;
    if (w->kind == SL_WINDOW_SESSION) {
        w->heads = sl_ctx_state(ctx, "heads", sizeof(sess_head));
        w->sessions = sl_ctx_state(ctx, "sessions", SESS_HDR + w->acc_size);
        if (!w->heads || !w->sessions) goto oom;
    } else {
        w->slices = sl_ctx_state(ctx, "slices", w->acc_size);
        if (!w->slices) goto oom;
    }
    *self = w;
    return 0;
oom:
    win_close(w);
    return SL_ENOMEM;
}

static const sl_operator window_op = {.version = SL_OPERATOR_VERSION,
                                      .kind = "window",
                                      .open = win_open,
                                      .process = win_process,
                                      .timer = win_timer,
                                      .close = win_close};

/* Window output stream -> width of its input, for sl_stream_window_late().
 * The stream API does not reach a node's conf from a stream, so the builder
 * remembers the last few windows here (building happens on one thread per
 * pipeline; the lock covers pipelines built concurrently). */
#define LATE_REG 256
static struct {
    const sl_stream *out;
    uint32_t width;
} late_reg[LATE_REG];
static unsigned late_next;
static pthread_mutex_t late_lock = PTHREAD_MUTEX_INITIALIZER;

sl_stream *sl_stream_window(sl_stream *in, const char *name, const sl_window_conf *c)
{
    if (!in) return NULL;
    sl_pipeline *p = sl_stream_pipeline(in);
    const char *nm = name ? name : "";
    if (!sl_stream_keyed(in)) {
        sl_pipeline_error(p, SL_EINVAL, "window '%s': its input is not keyed (use key_by)", nm);
        return NULL;
    }
    if (!c || !c->agg || c->agg->version != SL_AGGREGATE_VERSION || !c->agg->init || !c->agg->add ||
        !c->agg->result) {
        sl_pipeline_error(p, SL_EINVAL, "window '%s': needs a version %d aggregate", nm,
                          SL_AGGREGATE_VERSION);
        return NULL;
    }
    if (c->lateness < 0) {
        sl_pipeline_error(p, SL_EINVAL, "window '%s': lateness must be >= 0", nm);
        return NULL;
    }
    switch (c->kind) {
    case SL_WINDOW_TUMBLING:
        if (c->size <= 0) {
            sl_pipeline_error(p, SL_EINVAL, "window '%s': size must be > 0", nm);
            return NULL;
        }
        break;
    case SL_WINDOW_SLIDING:
        if (c->size <= 0 || c->slide <= 0) {
            sl_pipeline_error(p, SL_EINVAL, "window '%s': size and slide must be > 0", nm);
            return NULL;
        }
        if (c->size != c->slide && !c->agg->merge) {
            sl_pipeline_error(p, SL_EINVAL, "window '%s': sliding windows need merge()", nm);
            return NULL;
        }
        break;
    case SL_WINDOW_SESSION:
        if (c->gap <= 0) {
            sl_pipeline_error(p, SL_EINVAL, "window '%s': session gap must be > 0", nm);
            return NULL;
        }
        if (!c->agg->merge) {
            sl_pipeline_error(p, SL_EINVAL, "window '%s': session windows need merge()", nm);
            return NULL;
        }
        break;
    default:
        sl_pipeline_error(p, SL_EINVAL, "window '%s': unknown window kind %d", nm, (int)c->kind);
        return NULL;
    }
    uint32_t width = sl_stream_width(in);
    sl_stream *out = sl_stream_apply(in, name, &window_op, (void *)c, 0);
    if (!out) return NULL;
    if (!sl_stream_side(out, 1, width)) return NULL;
    pthread_mutex_lock(&late_lock);
    late_reg[late_next % LATE_REG].out = out;
    late_reg[late_next % LATE_REG].width = width;
    late_next++;
    pthread_mutex_unlock(&late_lock);
    return out;
}

sl_stream *sl_stream_window_late(sl_stream *out)
{
    if (!out) return NULL;
    int found = 0;
    uint32_t width = 0;
    pthread_mutex_lock(&late_lock);
    for (unsigned k = 0; k < LATE_REG && k < late_next; k++) {
        unsigned j = (late_next - 1 - k) % LATE_REG;
        if (late_reg[j].out == out) {
            found = 1;
            width = late_reg[j].width;
            break;
        }
    }
    pthread_mutex_unlock(&late_lock);
    if (!found) {
        sl_pipeline_error(sl_stream_pipeline(out), SL_EINVAL,
                          "window_late: the stream is not the output of a window node");
        return NULL;
    }
    return sl_stream_side(out, 1, width);
}
