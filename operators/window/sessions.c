/*
 * operators/window/sessions.c - session windows with Flink's merge rule
 * (sluice/window.h states the semantics; window.c builds the node).
 *
 * Per key, the sessions form a list sorted by start, kept in two keyed
 * state tables: "heads" (key -> first session start, count) and "sessions"
 * (key ‖ start, a composite key as in window_int.h -> header + accumulator):
 *
 *   head value      offset  size     field
 *                   0       8        start of the first session, int64
 *                   8       4        n: sessions of the key
 *                   12      4        unused
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
 *  - a session fires when the watermark reaches end - 1 (its timer), or at
 *    once when a record lands in it within the allowed lateness; `fired`
 *    keeps a session from firing twice without a change;
 *  - a record is late only when it would open a new session that has
 *    already expired (W >= t + gap - 1 + L) and touches no live session;
 *  - a key's head is removed with its last session: no state outlives the
 *    data;
 *  - nothing is allocated per record: the merge accumulator and the
 *    composite key live in the instance.
 *
 * Snapshots: both tables hold plain values (no pointers), so the engine's
 * keyed-state snapshot carries them, by key group (a composite key keeps
 * its key's key group), and the timers are the engine's; the window's own
 * snapshot hook (slices.c) records only the conf for a session window.
 *
 * Runs on the worker thread of the instance's task, like every operator.
 */
#include "operators/window/window_int.h"

#define SESS_HDR 24

typedef struct sess_hdr {
    int64_t end;
    int64_t next;
    uint8_t has_next;
    uint8_t fired;
    uint8_t pad[6];
} sess_hdr;
_Static_assert(sizeof(sess_hdr) == SESS_HDR, "sess_hdr layout is drawn in the file comment");

typedef struct sess_head {
    int64_t first;
    uint32_t n;
    uint32_t pad;
} sess_head;

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

/* merge(); inline and checked for int64 sums (an overflow sets w->ovf). */
static inline void sess_merge(win *w, void *acc, const void *o)
{
    if (w->i64sum) {
        int64_t x, y;
        memcpy(&x, acc, 8);
        memcpy(&y, o, 8);
        if (__builtin_add_overflow(x, y, &x)) w->ovf = 1;
        memcpy(acc, &x, 8);
    } else {
        w->agg->merge(acc, o, w->ud);
    }
}

static int sess_process_one(sl_ctx *ctx, win *w, const sl_batch *in, uint32_t i, int64_t W)
{
    int64_t ts = in->ts[i];
    uint64_t h = in->hash[i];
    sl_bytes key = sl_ctx_key(ctx, in, i);
    sl_bytes rec = sl_batch_bytes(in, i);
    int64_t ws = ts, we = win_sat_add(ts, w->gap);
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
    if (!have1 && W >= win_sat_add(we - 1, w->L)) { /* alone, and expired: late */
        if (hd->n == 0) sl_state_remove(w->heads, h, key.ptr, key.len);
        return sli_win_emit_input(ctx, WIN_PORT_LATE, in, i);
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
        w->ovf = 0;
        int has_next = 0;
        int64_t next = 0;
        if (have1) {
            sess_hdr *e1 = sess_find(w, h, key.ptr, key.len, s1);
            sess_merge(w, acc, (uint8_t *)e1 + SESS_HDR);
            has_next = e1->has_next;
            next = e1->next;
            if (have2) {
                sess_hdr *e2 = sess_find(w, h, key.ptr, key.len, s2);
                sess_merge(w, acc, (uint8_t *)e2 + SESS_HDR);
                has_next = e2->has_next;
                next = e2->next;
                sess_remove(w, h, key.ptr, key.len, s2);
                hd->n--;
            }
            sess_remove(w, h, key.ptr, key.len, s1);
            hd->n--;
            if (w->ovf) return sli_win_overflow(ctx, w, key.ptr, key.len, ms, me);
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
    if (w->add_one || w->add_value) {
        if (win_add_inline(w, (uint8_t *)e + SESS_HDR, rec.ptr, rec.len))
            return sli_win_overflow(ctx, w, key.ptr, key.len, ms, me);
    } else {
        w->agg->add((uint8_t *)e + SESS_HDR, rec.ptr, rec.len, ts, w->ud);
    }
    int rc;
    if (me - 1 <= W) { /* past its end (within lateness): fire at once */
        e->fired = 1;
        rc = sli_win_emit_result(ctx, w, WIN_PORT_RESULT, h, key.ptr, key.len, ms, me,
                                 (uint8_t *)e + SESS_HDR);
    } else {
        rc = sl_ctx_timer(ctx, me - 1, h, key.ptr, key.len);
    }
    if (!rc && w->L > 0) rc = sl_ctx_timer(ctx, win_sat_add(me - 1, w->L), h, key.ptr, key.len);
    return rc;
}

int sli_win_sess_timer(sl_ctx *ctx, win *w, const sl_timer *t)
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
            int rc = sli_win_emit_result(ctx, w, WIN_PORT_RESULT, t->hash, t->key, t->key_len, cur,
                                         e->end, (uint8_t *)e + SESS_HDR);
            if (rc) return rc;
        }
        if (win_sat_add(e->end - 1, w->L) <= T) {
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

int sli_win_sess_process(sl_ctx *ctx, win *w, sl_batch *in)
{
    if (in->trace && w->links) sli_win_links_add(w, in);
    const int64_t W = sl_ctx_current_watermark(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        int rc = sess_process_one(ctx, w, in, i, W);
        if (rc) return rc;
    }
    return 0;
}

int sli_win_sess_open(sl_ctx *ctx, win *w)
{
    w->sess_tmp = malloc(w->acc_size ? w->acc_size : 1);
    w->heads = sl_ctx_state(ctx, "heads", sizeof(sess_head));
    w->sessions = sl_ctx_state(ctx, "sessions", SESS_HDR + w->acc_size);
    if (!w->sess_tmp || !w->heads || !w->sessions) return SL_ENOMEM;
    return 0;
}
