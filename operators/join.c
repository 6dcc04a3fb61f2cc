/*
 * operators/join.c - keyed window and interval joins of two streams
 * (sluice/join.h states the semantics).
 *
 * One instance keeps, per key, the records of both inputs that can still
 * join: a `jkey` held inline as the value of an unmanaged engine state table
 * ("join"), with an array of entries sorted by event time (arrival order
 * among equal times) and an arena for their payloads:
 *
 *   jkey.ent[k]   ts int64 | off uint32 | len uint32 | side uint8
 *   jkey.bytes    payloads, appended; compacted when entries are dropped
 *
 * Records mostly arrive in event-time order, so an insert is usually an
 * append; an out-of-order one moves the entries after it by one. The arrays
 * grow by doubling, so nothing is allocated per record once a key's arrays
 * are big enough.
 *
 * Time is driven by engine event-time timers on the key (one per distinct
 * time; the engine fires a (key, time) once):
 *
 *   join      set on arrival, at                   on firing at t
 *   window    end - 1 of each unfired window       pair the window
 *             of the record                        [t + 1 - size, t + 1);
 *                                                  drop records whose last
 *                                                  window ended
 *   session   end - 1 of the merged session        pair and drop every run
 *             the record makes                    (gaps <= gap) ending by t
 *   interval  l.ts + upper / r.ts - lower          drop records expired by t
 *
 * Interval pairs are made on arrival, against the other side's entries of
 * the key whose times are in range (found by binary search on the sorted
 * array).
 *
 * Snapshot (the operator's own section; the engine keeps the timers), all
 * integers little endian:
 *
 *   offset  size  field
 *   0       4     "SLJ1"
 *   4       8     n_keys
 *   then per key:
 *   +0      8     key hash
 *   +8      4     key_len
 *   +12     4     n entries
 *   +16     k     key bytes
 *   then per entry:
 *   +0      8     ts (int64)
 *   +8      1     side (0 left, 1 right)
 *   +9      4     len
 *   +13     len   payload
 *
 * Restore gets every old instance's section and keeps the keys whose key
 * group this instance owns (sluice/state.h), merging entries into what is
 * there.
 */
#include <stdlib.h>
#include <string.h>
#include "sluice/join.h"
#include "sluice/state.h"

#define PORT_LATE_LEFT  1
#define PORT_LATE_RIGHT 2
#define SNAP_MAGIC      "SLJ1"

typedef struct jent {
    int64_t ts;
    uint32_t off, len;
    uint8_t side;
} jent;

/* A key's records; the value of the "join" table, held inline. */
typedef struct jkey {
    jent *ent;
    uint8_t *bytes;
    uint32_t n, cap;     /* entries */
    uint32_t used, bcap; /* payload bytes */
    /* Window joins: the window ends (end - 1) armed_lo, armed_lo + slide,
     * ..., armed_hi all have a timer set (valid when armed): a record whose
     * windows are among them sets none. A cache only: timers set twice fire
     * once. */
    int64_t armed_lo, armed_hi;
    int armed;
} jkey;

/* The node's conf: the user's conf and the inputs' widths. */
typedef struct join_node {
    sl_join_conf c;
    uint32_t in_width[2];
} join_node;

typedef struct join_self {
    const join_node *node;
    sl_state *keys;
    uint8_t *spare; /* a payload arena for jkey_drop, swapped with a key's */
    uint32_t spare_cap;
} join_self;

/* --- time arithmetic (saturating: times are any int64) -------------------------- */

static int64_t add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (!__builtin_add_overflow(a, b, &r)) return r;
    return b > 0 ? INT64_MAX : INT64_MIN;
}

/* floor(a / b) for b > 0, and the matching non-negative remainder. */
static int64_t mod_floor(int64_t a, int64_t b)
{
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

/* Start of the last window (tumbling, sliding) that holds t. */
static int64_t last_start(const sl_window_conf *w, int64_t t)
{
    return add_sat(t, -mod_floor(add_sat(t, -mod_floor(w->offset, w->slide)), w->slide));
}

/* --- a key's entries ----------------------------------------------------------- */

static void jkey_free(jkey *k)
{
    free(k->ent);
    free(k->bytes);
    memset(k, 0, sizeof(*k));
}

/* First entry with ts > t (entries sorted by ts). */
static uint32_t upper_bound(const jkey *k, int64_t t)
{
    uint32_t lo = 0, hi = k->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (k->ent[mid].ts <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First entry with ts >= t. */
static uint32_t lower_bound(const jkey *k, int64_t t)
{
    return t == INT64_MIN ? 0 : upper_bound(k, t - 1);
}

/* Insert a record after the entries of equal or smaller time. Returns the
 * index, or -1 when out of memory (nothing changed). */
static int64_t jkey_insert(jkey *k, int side, int64_t ts, const void *p, uint32_t len)
{
    if (k->n == k->cap) {
        uint32_t cap = k->cap ? k->cap * 2 : 8;
        jent *e = realloc(k->ent, (size_t)cap * sizeof(*e));
        if (!e) return -1;
        k->ent = e;
        k->cap = cap;
    }
    if (k->bcap - k->used < len) {
        size_t cap = k->bcap ? k->bcap : 256;
        while (cap - k->used < len) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        uint8_t *b = realloc(k->bytes, cap);
        if (!b) return -1;
        k->bytes = b;
        k->bcap = (uint32_t)cap;
    }
    uint32_t at = upper_bound(k, ts);
    memmove(k->ent + at + 1, k->ent + at, (size_t)(k->n - at) * sizeof(jent));
    k->ent[at] = (jent){.ts = ts, .off = k->used, .len = len, .side = (uint8_t)side};
    if (len) memcpy(k->bytes + k->used, p, len);
    k->used += len;
    k->n++;
    return at;
}

/* Drop the entries for which drop[] is set. The kept payloads are copied
 * into the instance's spare arena, which then becomes the key's (the key's
 * old one is the new spare): payloads lie in arrival order, not in the
 * entries' time order, so they cannot be compacted in place in one pass.
 * Returns 0, or -1 when out of memory (nothing changed). */
static int jkey_drop(join_self *s, jkey *k, const uint8_t *drop)
{
    if (s->spare_cap < k->used) {
        uint8_t *b = realloc(s->spare, k->used);
        if (!b) return -1;
        s->spare = b;
        s->spare_cap = k->used;
    }
    uint32_t j = 0, used = 0;
    for (uint32_t i = 0; i < k->n; i++) {
        if (drop[i]) continue;
        jent e = k->ent[i];
        if (e.len) memcpy(s->spare + used, k->bytes + e.off, e.len);
        e.off = used;
        used += e.len;
        k->ent[j++] = e;
    }
    uint8_t *old = k->bytes;
    uint32_t old_cap = k->bcap;
    k->bytes = s->spare;
    k->bcap = s->spare_cap;
    s->spare = old;
    s->spare_cap = old_cap;
    k->n = j;
    k->used = used;
    return 0;
}

static sl_bytes ent_bytes(const jkey *k, const jent *e)
{
    return (sl_bytes){.ptr = k->bytes + e->off, .len = e->len};
}

/* --- pairs --------------------------------------------------------------------- */

/* Hand the pair (a, b) to the join function; a and b are entries (or the
 * arriving record) of either side. */
static int pair(sl_ctx *ctx, const join_node *nd, sl_bytes key, uint64_t hash, int64_t ts,
                int64_t ws, int64_t we, int a_side, int64_t a_ts, sl_bytes a, int64_t b_ts,
                sl_bytes b)
{
    sl_join_match m = {.key = key, .hash = hash, .ts = ts, .window_start = ws, .window_end = we};
    if (a_side == 0) {
        m.left_ts = a_ts, m.left = a, m.right_ts = b_ts, m.right = b;
    } else {
        m.left_ts = b_ts, m.left = b, m.right_ts = a_ts, m.right = a;
    }
    int rc = nd->c.fn(ctx, &m, nd->c.ud);
    if (rc == 0) return 0;
    int err = sl_ctx_error(ctx);
    return err ? err
               : sl_ctx_fail(ctx, rc < 0 ? rc : SL_EOPERATOR, "the join function returned %d", rc);
}

/* Every pair of entries [lo, hi) of k from different sides, in the window
 * [ws, we), at event time ts. */
static int pair_range(sl_ctx *ctx, const join_node *nd, const jkey *k, sl_bytes key, uint64_t hash,
                      uint32_t lo, uint32_t hi, int64_t ts, int64_t ws, int64_t we)
{
    for (uint32_t i = lo; i < hi; i++) {
        if (k->ent[i].side != 0) continue;
        for (uint32_t j = lo; j < hi; j++) {
            if (k->ent[j].side != 1) continue;
            int rc = pair(ctx, nd, key, hash, ts, ws, we, 0, k->ent[i].ts, ent_bytes(k, &k->ent[i]),
                          k->ent[j].ts, ent_bytes(k, &k->ent[j]));
            if (rc) return rc;
        }
    }
    return 0;
}

/* --- the operator --------------------------------------------------------------- */

static int join_open(sl_ctx *ctx, void **self)
{
    join_self *s = calloc(1, sizeof(*s));
    if (!s) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    s->node = sl_ctx_conf(ctx);
    s->keys = sl_ctx_state_unmanaged(ctx, "join", sizeof(jkey));
    *self = s;
    if (!s->keys) return sl_ctx_error(ctx) ? sl_ctx_error(ctx) : SL_ENOMEM;
    return 0;
}

static void join_close(void *self)
{
    join_self *s = self;
    if (!s) return;
    if (s->keys) {
        size_t it = 0;
        sl_state_entry e;
        while (sl_state_next(s->keys, &it, &e)) jkey_free(e.value);
    }
    free(s->spare);
    free(s);
}

/* Time a left / right entry stops being needed by an interval join. */
static int64_t interval_expiry(const sl_join_conf *c, int side, int64_t ts)
{
    return side == 0 ? add_sat(ts, c->upper) : add_sat(ts, -c->lower);
}

/* The last time (end - 1) of the session run that a record at t would be
 * part of among k's entries (t itself not inserted). */
static int64_t session_last(const jkey *k, int64_t gap, int64_t t)
{
    uint32_t at = upper_bound(k, t);
    int64_t last = t;
    /* entries before t within the run cannot end it later than t + gap - 1
     * unless they are after t: only the entries after t extend it */
    for (uint32_t i = at; i < k->n && k->ent[i].ts <= add_sat(last, gap); i++) last = k->ent[i].ts;
    return add_sat(last, gap - 1);
}

static int late_record(sl_ctx *ctx, int side, const sl_batch *in, uint32_t i)
{
    sl_bytes r = sl_batch_bytes(in, i);
    const sl_trace_ctx *tc = sl_batch_trace(in, i);
    if (tc) sl_ctx_set_trace(ctx, tc);
    void *o = sl_emit_port(ctx, side == 0 ? PORT_LATE_LEFT : PORT_LATE_RIGHT, in->ts[i],
                           in->hash[i], r.len);
    if (tc) sl_ctx_set_trace(ctx, NULL);
    if (!o) return sl_ctx_error(ctx);
    if (r.len) memcpy(o, r.ptr, r.len);
    return 0;
}

static int oom(sl_ctx *ctx)
{
    return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for the join's state");
}

/* A timer at end - 1 of each window (tumbling, sliding) of a record at t
 * that has not fired, unless k's armed range holds them all. Windows of
 * one record have ends spaced by the slide; the range grows when the new
 * ends touch it, else it is replaced. 0, or a negative code. */
static int arm_windows(sl_ctx *ctx, const sl_window_conf *w, jkey *k, int64_t t, int have_wm,
                       int64_t wm, uint64_t h, sl_bytes key)
{
    int64_t hi = add_sat(add_sat(last_start(w, t), w->size), -1), lo = hi;
    int64_t first = add_sat(t, -w->size); /* window starts are > first */
    for (int64_t st = last_start(w, t);;) {
        int64_t end1 = add_sat(add_sat(st, w->size), -1);
        if (have_wm && end1 <= wm) break;
        lo = end1;
        int64_t prev;
        if (__builtin_sub_overflow(st, w->slide, &prev) || prev <= first) break;
        st = prev;
    }
    if (have_wm && hi <= wm) return 0; /* cannot happen: the record is not late */
    if (k->armed && lo >= k->armed_lo && hi <= k->armed_hi) return 0;
    for (int64_t e = hi;; e -= w->slide) {
        int rc = sl_ctx_timer(ctx, e, h, key.ptr, key.len);
        if (rc) return rc;
        if (e <= lo || e - lo < w->slide) break;
    }
    if (k->armed && lo <= add_sat(k->armed_hi, w->slide) && hi >= add_sat(k->armed_lo, -w->slide)) {
        if (lo < k->armed_lo) k->armed_lo = lo;
        if (hi > k->armed_hi) k->armed_hi = hi;
    } else {
        k->armed_lo = lo;
        k->armed_hi = hi;
        k->armed = 1;
    }
    return 0;
}

static int join_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    join_self *s = self;
    const sl_join_conf *c = &s->node->c;
    const sl_window_conf *w = &c->window;
    int side = sl_ctx_input(ctx) == 0 ? 0 : 1;
    int64_t wm = sl_ctx_current_watermark(ctx);
    int have_wm = wm != SL_TIME_MIN;
    for (uint32_t i = 0; i < in->count; i++) {
        int64_t t = in->ts[i];
        uint64_t h = in->hash[i];
        sl_bytes key = sl_ctx_key(ctx, in, i);
        sl_bytes rec = sl_batch_bytes(in, i);
        /* Lateness first: a late record makes no state. */
        if (c->kind == SL_JOIN_INTERVAL) {
            if (have_wm && t <= wm) {
                int rc = late_record(ctx, side, in, i);
                if (rc) return rc;
                continue;
            }
        } else if (w->kind != SL_WINDOW_SESSION) {
            int64_t last_end1 = add_sat(add_sat(last_start(w, t), w->size), -1);
            if (have_wm && last_end1 <= wm) {
                int rc = late_record(ctx, side, in, i);
                if (rc) return rc;
                continue;
            }
        } else {
            jkey *k0 = sl_state_find(s->keys, h, key.ptr, key.len);
            int64_t end1 = k0 ? session_last(k0, w->gap, t) : add_sat(t, w->gap - 1);
            if (have_wm && end1 <= wm) {
                int rc = late_record(ctx, side, in, i);
                if (rc) return rc;
                continue;
            }
        }
        if (c->kind == SL_JOIN_INTERVAL) {
            /* Pairs with the other side's entries in range. */
            const jkey *f = sl_state_find(s->keys, h, key.ptr, key.len);
            int64_t lo = side == 0 ? add_sat(t, c->lower) : add_sat(t, -c->upper);
            int64_t hi = side == 0 ? add_sat(t, c->upper) : add_sat(t, -c->lower);
            for (uint32_t j = f ? lower_bound(f, lo) : 0; f && j < f->n && f->ent[j].ts <= hi;
                 j++) {
                if (f->ent[j].side == side) continue;
                int64_t o_ts = f->ent[j].ts, lts = side == 0 ? t : o_ts;
                int rc = pair(ctx, s->node, key, h, t > o_ts ? t : o_ts, add_sat(lts, c->lower),
                              add_sat(add_sat(lts, c->upper), 1), side, t, rec, o_ts,
                              ent_bytes(f, &f->ent[j]));
                if (rc) return rc;
            }
            int64_t exp = interval_expiry(c, side, t);
            if (have_wm && exp <= wm) continue; /* nothing in time can match it any more */
            jkey *k = sl_state_get(s->keys, h, key.ptr, key.len, NULL);
            if (!k || jkey_insert(k, side, t, rec.ptr, rec.len) < 0) return oom(ctx);
            if (sl_ctx_timer(ctx, exp, h, key.ptr, key.len) != 0) return sl_ctx_error(ctx);
            continue;
        }
        jkey *k = sl_state_get(s->keys, h, key.ptr, key.len, NULL);
        if (!k) return oom(ctx);
        if (jkey_insert(k, side, t, rec.ptr, rec.len) < 0) return oom(ctx);
        if (w->kind == SL_WINDOW_SESSION) {
            int64_t end1 = session_last(k, w->gap, t);
            if (sl_ctx_timer(ctx, end1, h, key.ptr, key.len) != 0) return sl_ctx_error(ctx);
            continue;
        }
        if (arm_windows(ctx, w, k, t, have_wm, wm, h, key) != 0) return sl_ctx_error(ctx);
    }
    return 0;
}

/* Remove the key when it holds nothing. */
static void key_tidy(join_self *s, jkey *k, const sl_timer *t)
{
    if (k->n) return;
    jkey_free(k);
    sl_state_remove(s->keys, t->hash, t->key, t->key_len);
}

static int join_timer(sl_ctx *ctx, void *self, const sl_timer *t)
{
    join_self *s = self;
    const sl_join_conf *c = &s->node->c;
    const sl_window_conf *w = &c->window;
    jkey *k = sl_state_find(s->keys, t->hash, t->key, t->key_len);
    if (!k) return 0;
    sl_bytes key = {.ptr = t->key, .len = t->key_len};
    uint8_t small[256], *drop = k->n <= sizeof(small) ? small : malloc(k->n);
    if (!drop) return oom(ctx);
    memset(drop, 0, k->n);
    int rc = 0;
    if (c->kind == SL_JOIN_INTERVAL) {
        for (uint32_t i = 0; i < k->n; i++)
            drop[i] = interval_expiry(c, k->ent[i].side, k->ent[i].ts) <= t->ts;
    } else if (w->kind == SL_WINDOW_SESSION) {
        /* Runs of entries no more than gap apart; those ending by t fire. */
        for (uint32_t a = 0; a < k->n && !rc;) {
            uint32_t b = a + 1;
            while (b < k->n && k->ent[b].ts <= add_sat(k->ent[b - 1].ts, w->gap)) b++;
            int64_t end = add_sat(k->ent[b - 1].ts, w->gap);
            if (add_sat(end, -1) <= t->ts) {
                rc = pair_range(ctx, s->node, k, key, t->hash, a, b, add_sat(end, -1), k->ent[a].ts,
                                end);
                memset(drop + a, 1, b - a);
            }
            a = b;
        }
    } else {
        int64_t end = add_sat(t->ts, 1), start = add_sat(end, -w->size);
        uint32_t lo = lower_bound(k, start), hi = lower_bound(k, end);
        rc = pair_range(ctx, s->node, k, key, t->hash, lo, hi, t->ts, start, end);
        for (uint32_t i = 0; i < k->n; i++)
            drop[i] = add_sat(add_sat(last_start(w, k->ent[i].ts), w->size), -1) <= t->ts;
    }
    if (!rc) {
        /* The join function may not touch this table, so k is still valid. */
        if (jkey_drop(s, k, drop) != 0)
            rc = oom(ctx);
        else
            key_tidy(s, k, t);
    }
    if (drop != small) free(drop);
    return rc;
}

static int join_end(sl_ctx *ctx, void *self)
{
    join_self *s = self;
    if (sl_ctx_end_canceled(ctx)) return 0;
    /* Every timer fired at the watermark +inf: nothing can be left. */
    size_t n = sl_state_count(s->keys);
    if (n)
        return sl_ctx_fail(ctx, SL_EINVAL,
                           "the join kept records of %zu keys after the input ended (a bug)", n);
    return 0;
}

/* --- snapshot ------------------------------------------------------------------ */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8) p[i] = (uint8_t)v;
}
static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int join_snapshot(sl_ctx *ctx, void *self, sl_buf *out)
{
    (void)ctx;
    join_self *s = self;
    uint8_t h[16];
    memcpy(h, SNAP_MAGIC, 4);
    put_le(h + 4, sl_state_count(s->keys), 8);
    if (sl_buf_append(out, h, 12)) return SL_ENOMEM;
    size_t it = 0;
    sl_state_entry e;
    while (sl_state_next(s->keys, &it, &e)) {
        const jkey *k = e.value;
        put_le(h, e.hash, 8);
        put_le(h + 8, e.key_len, 4);
        put_le(h + 12, k->n, 4);
        if (sl_buf_append(out, h, 16) || sl_buf_append(out, e.key, e.key_len)) return SL_ENOMEM;
        for (uint32_t i = 0; i < k->n; i++) {
            uint8_t eh[13];
            put_le(eh, (uint64_t)k->ent[i].ts, 8);
            eh[8] = k->ent[i].side;
            put_le(eh + 9, k->ent[i].len, 4);
            if (sl_buf_append(out, eh, 13) ||
                sl_buf_append(out, k->bytes + k->ent[i].off, k->ent[i].len))
                return SL_ENOMEM;
        }
    }
    return 0;
}

static int join_restore(sl_ctx *ctx, void *self, const void *data, size_t len)
{
    join_self *s = self;
    const uint8_t *d = data, *end = d + len;
    uint32_t q = (uint32_t)sl_ctx_parallelism(ctx), me = (uint32_t)sl_ctx_instance(ctx);
    if (len < 12 || memcmp(d, SNAP_MAGIC, 4) != 0) goto bad;
    uint64_t n_keys = get_le(d + 4, 8);
    d += 12;
    for (uint64_t x = 0; x < n_keys; x++) {
        if (end - d < 16) goto bad;
        uint64_t hash = get_le(d, 8);
        uint32_t klen = (uint32_t)get_le(d + 8, 4), n = (uint32_t)get_le(d + 12, 4);
        d += 16;
        if ((size_t)(end - d) < klen) goto bad;
        const uint8_t *key = d;
        d += klen;
        int mine = sl_key_group_owner(sl_key_group(hash), q) == me;
        jkey *k = NULL;
        if (mine && !(k = sl_state_get(s->keys, hash, key, klen, NULL))) return oom(ctx);
        for (uint32_t i = 0; i < n; i++) {
            if (end - d < 13) goto bad;
            int64_t ts = (int64_t)get_le(d, 8);
            int side = d[8];
            uint32_t rl = (uint32_t)get_le(d + 9, 4);
            d += 13;
            if (side > 1 || (size_t)(end - d) < rl) goto bad;
            if (k && jkey_insert(k, side, ts, d, rl) < 0) return oom(ctx);
            d += rl;
        }
    }
    if (d != end) goto bad;
    return 0;
bad:
    return sl_ctx_fail(ctx, SL_ECORRUPT, "the join's state in the checkpoint is malformed");
}

static const sl_operator join_op = {.version = SL_OPERATOR_VERSION,
                                    .kind = "join",
                                    .open = join_open,
                                    .process = join_process,
                                    .timer = join_timer,
                                    .end = join_end,
                                    .snapshot = join_snapshot,
                                    .restore = join_restore,
                                    .close = join_close};

/* --- builders ------------------------------------------------------------------ */

static const char *conf_problem(const sl_join_conf *c)
{
    if (!c->fn) return "fn is required";
    if (c->kind == SL_JOIN_INTERVAL) {
        if (c->lower > c->upper) return "an interval join needs lower <= upper";
        return NULL;
    }
    if (c->kind != SL_JOIN_WINDOW) return "kind must be SL_JOIN_WINDOW or SL_JOIN_INTERVAL";
    const sl_window_conf *w = &c->window;
    if (w->lateness != 0) return "allowed lateness is not supported by joins (it must be 0)";
    if (w->early_ms != 0) return "early firing is not supported by joins (early_ms must be 0)";
    switch (w->kind) {
    case SL_WINDOW_TUMBLING:
        if (w->size <= 0 || w->slide != w->size) return "a tumbling window needs size > 0";
        return NULL;
    case SL_WINDOW_SLIDING:
        if (w->size <= 0 || w->slide <= 0) return "a sliding window needs size > 0 and slide > 0";
        if (w->slide > w->size) return "a sliding window join needs slide <= size";
        return NULL;
    case SL_WINDOW_SESSION:
        if (w->gap <= 0) return "a session window needs gap > 0";
        return NULL;
    }
    return "unknown window kind";
}

sl_stream *sl_stream_join(sl_stream *left, sl_stream *right, const char *name,
                          const sl_join_conf *conf)
{
    sl_pipeline *p = sl_stream_pipeline(left);
    if (!p) return NULL;
    const char *nm = name ? name : "(null)";
    if (!right || sl_stream_pipeline(right) != p) {
        sl_pipeline_error(p, SL_EINVAL, "join '%s': both inputs must be streams of one pipeline",
                          nm);
        return NULL;
    }
    if (!conf) {
        sl_pipeline_error(p, SL_EINVAL, "join '%s': conf is required", nm);
        return NULL;
    }
    const char *why = conf_problem(conf);
    if (why) {
        sl_pipeline_error(p, SL_EINVAL, "join '%s': %s", nm, why);
        return NULL;
    }
    if (!sl_stream_keyed(left) || !sl_stream_keyed(right)) {
        sl_pipeline_error(p, SL_EINVAL,
                          "join '%s': both inputs must be keyed (sl_stream_key_by): the %s one "
                          "is not",
                          nm, sl_stream_keyed(left) ? "right" : "left");
        return NULL;
    }
    join_node nd = {.c = *conf, .in_width = {sl_stream_width(left), sl_stream_width(right)}};
    join_node *owned = sl_pipeline_dup(p, &nd, sizeof nd);
    if (!owned) return NULL;
    sl_stream *ins[2] = {left, right};
    sl_stream *out = sl_stream_apply_n(ins, 2, name, &join_op, owned, conf->out_width);
    if (!out) return NULL;
    if (!sl_stream_side_as(out, PORT_LATE_LEFT, nd.in_width[0], SL_PORT_LATE) ||
        !sl_stream_side_as(out, PORT_LATE_RIGHT, nd.in_width[1], SL_PORT_LATE))
        return NULL;
    return out;
}

sl_stream *sl_stream_join_late(sl_stream *join_out, int side)
{
    if (!join_out) return NULL;
    const join_node *nd = sl_stream_op_conf(join_out, &join_op);
    if (!nd || (side != 0 && side != 1)) {
        sl_pipeline_error(sl_stream_pipeline(join_out), SL_EINVAL,
                          nd ? "join_late: side must be 0 (left) or 1 (right)"
                             : "join_late: the stream is not the output of a join node");
        return NULL;
    }
    return sl_stream_side(join_out, side == 0 ? PORT_LATE_LEFT : PORT_LATE_RIGHT,
                          nd->in_width[side]);
}
