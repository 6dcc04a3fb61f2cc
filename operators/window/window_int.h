/*
 * operators/window/window_int.h - private header of the window operator:
 * the instance struct, the per-key state layouts that slices.c and
 * sessions.c keep in engine-owned keyed state, and the small helpers they
 * share (composite keys, result and side-output records). Not under
 * include/: nothing here is public, and cross-file functions carry the
 * internal prefix sli_win_.
 *
 * Files of the module:
 *   window.c    conf validation and copy, the builders sl_stream_window*,
 *               the operator table (open / close / dispatch of records and
 *               timers), the test hook
 *   slices.c    tumbling and sliding windows: a per-key ring of slices,
 *               block (prefix / suffix) aggregates, the far list, early firing
 *   sessions.c  session windows: a sorted list of sessions per key, merges
 *   combine.c   sl_stream_window_combined: a combiner before the shuffle and
 *               a final node that runs this operator's callbacks on partials
 *   links.c     with a tracer: a result as a span linked to the sampled
 *               records that went into it
 *   emit.c      the output records: results (with their span's context)
 *               and input records sent on to a side port
 *
 * Composite keys. Far slices and sessions are kept under (record key ‖
 * int64) keys: the key hash keeps its upper 32 bits, so the entry stays in
 * the key's key group (and instance), and the int64 is mixed into the lower
 * 32 bits (ck_hash). ck_make builds the key bytes in one scratch buffer of
 * the instance, which grows to the longest key once and is reused after.
 *
 * Runs on the worker thread of the instance's task, like every operator.
 */
#ifndef SLUICE_OPERATORS_WINDOW_INT_H
#define SLUICE_OPERATORS_WINDOW_INT_H

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "sluice/batch.h"
#include "sluice/error.h"
#include "sluice/operator.h"
#include "sluice/operators.h"
#include "sluice/pipeline.h"
#include "sluice/state.h"
#include "sluice/window.h"
#include "operators/aggregate.h"

/* --- the slice grid (window.c, slices.c and combine.c: one rule) ---------------------- */

/* Tumbling and sliding windows cut time into slices of g = gcd(size,
 * slide): slice n is [off + n g, off + (n + 1) g), off = offset mod slide.
 * Window ends, in slices, are e = m s + k (its slices [e - k, e)), with
 * k = size / g and s = slide / g; the window ending at slice e fires when
 * the watermark reaches off + e g - 1. 128-bit intermediates: times near
 * the int64 limits must not overflow (results saturate). */
static inline int64_t sli_win_sat(__int128 x)
{
    return x > INT64_MAX ? INT64_MAX : x < INT64_MIN ? INT64_MIN : (int64_t)x;
}
/* floor(a / b), saturated; b != 0. */
static inline int64_t sli_win_fdiv(__int128 a, __int128 b)
{
    if (a >= INT64_MIN && a <= INT64_MAX && b > 0 && b <= INT64_MAX) {
        /* 64-bit operands (the usual case): no 128-bit division */
        int64_t x = (int64_t)a, y = (int64_t)b, q = x / y;
        return (x % y != 0 && x < 0) ? q - 1 : q;
    }
    __int128 q = a / b;
    if ((a % b) != 0 && ((a < 0) != (b < 0))) q--;
    return sli_win_sat(q);
}
/* off, g, k, s of a valid tumbling or sliding conf. */
static inline void sli_win_grid(const sl_window_conf *c, int64_t *off, int64_t *g, int64_t *k,
                                int64_t *s)
{
    const int64_t slide = c->kind == SL_WINDOW_TUMBLING ? c->size : c->slide;
    int64_t a = c->size, b = slide;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    *g = a;
    *off = c->offset % slide;
    *k = c->size / a;
    *s = slide / a;
}
static inline int64_t sli_win_slice_of(int64_t off, int64_t g, int64_t t)
{
    return sli_win_fdiv((__int128)t - off, g);
}
/* Watermark (ms) at which the window ending at slice e fires. */
static inline int64_t sli_win_fire_ms(int64_t off, int64_t g, int64_t e)
{
    return sli_win_sat((__int128)off + (__int128)e * g - 1);
}
/* First and last window end (slices) of the windows holding slice n; the
 * slice is in no window when first > last (slide > size: gaps). */
static inline int64_t sli_win_first_end(int64_t k, int64_t s, int64_t n)
{
    return sli_win_sat((__int128)s * -sli_win_fdiv(-((__int128)n - k + 1), s) + k);
}
static inline int64_t sli_win_last_end(int64_t k, int64_t s, int64_t n)
{
    return sli_win_sat((__int128)s * sli_win_fdiv(n, s) + k);
}

/* Ports of a window node (sluice/window.h draws them). */
#define WIN_PORT_RESULT     0
#define WIN_PORT_LATE       1
#define WIN_PORT_EARLY      2
#define WIN_PORT_UNASSIGNED 3

/* The conf of a window node, owned by the pipeline: a copy of the user's
 * conf (agg_ud pointing at the node's own copy of an sl_agg_value when the
 * aggregate has SL_AGG_UD_VALUE), the width of the window's input (the
 * width of the late and unassigned ports), and the ring size a test forced
 * (0: sized from the conf; see window_test.h). A stream made by another
 * node is told apart by asking the engine for the conf of the node only if
 * it runs the window's operator table (sl_stream_op_conf). */
typedef struct win_node_conf {
    sl_window_conf c;
    uint32_t in_width;
    uint32_t test_ring;
} win_node_conf;

struct kc_ent;
struct hp_pool;

/* One instance of a window node. */
typedef struct win {
    sl_window_kind kind;
    int64_t size, slide, g, off, L, gap;
    int64_t k, s;    /* window size and slide in slices */
    uint64_t cap;    /* most ring slots per key (a power of two) */
    unsigned cbits0; /* a new key's ring has 1 << cbits0 slots */
    uint32_t xsize;  /* bytes before a ring's first slot (slices.c: kext) */
    size_t sstride;  /* bytes per ring slot */
    int blocks;      /* windows overlap (k > s): prefix / suffix aggregates */
    const sl_aggregate *agg;
    const void *ud;
    uint32_t acc_size, rs;
    sl_state *slices;   /* tumbling, sliding: key -> khdr + ring */
    sl_state *far;      /* tumbling, sliding: key ‖ slice -> far_hdr + acc */
    sl_state *heads;    /* session */
    sl_state *sessions; /* session */
    uint8_t *ck;        /* composite key scratch */
    size_t ck_cap;
    uint8_t *acc_tmp; /* acc_size */
    uint8_t *res_tmp; /* result_size */
    uint8_t *sess_tmp;
    int64_t early_ms;        /* early firing period (processing time), 0: none */
    int i64sum;              /* SL_AGG_INT64_SUM: int64 accumulator, merge is +, init is 0 */
    int add_one;             /* SL_AGG_ADD_ONE: add() is ++ (count) */
    int add_value;           /* SL_AGG_ADD_VALUE: add() adds the record's value (sum) */
    int ovf;                 /* an inline merge left int64 (the caller fails the job) */
    int64_t fea_W, fea;      /* memo: first_end_after(fea_W) */
    int64_t eb_W, eb;        /* memo: expired_below(eb_W) */
    struct kc_ent *kc;       /* hot keys: key -> khdr (tumbling, sliding) */
    struct hp_pool *hp;      /* blocks of large accumulators, in huge pages (slices.c) */
    uint32_t kc_gen;         /* entries of other generations are void */
    struct win_links *links; /* sampled contributions (links.c); NULL: no tracer */
} win;

/* --- results as spans (links.c) ----------------------------------------------- */

struct win_links;
/* Make w->links when the pipeline has a tracer (else leave it NULL). */
int sli_win_links_open(sl_ctx *ctx, win *w);
void sli_win_links_close(win *w);
/* Keep the sampled contexts of batch in (which has a trace column). */
void sli_win_links_add(win *w, const sl_batch *in);
/* At the firing of window [start, end) of key h: 1 with *out the context
 * of the result's span when sampled contributions were kept, else 0. */
int sli_win_links_span(sl_ctx *ctx, win *w, uint64_t h, int64_t start, int64_t end,
                       sl_trace_ctx *out);

/* --- composite keys ------------------------------------------------------------ */

/* a + b, saturating at the ends of int64: window times near the limits of
 * event time must not overflow (a session at t ends at t + gap). */
static inline int64_t win_sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (!__builtin_add_overflow(a, b, &r)) return r;
    return b > 0 ? INT64_MAX : INT64_MIN;
}

static inline uint64_t ck_hash(uint64_t h, int64_t s)
{
    uint64_t x = ((uint64_t)s * 0x9E3779B97F4A7C15ull) ^ h;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (h & 0xFFFFFFFF00000000ull) | (x & 0xFFFFFFFFull);
}

/* Composite key (key ‖ s) in the scratch buffer; NULL when out of memory. */
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

/* --- output records ---------------------------------------------------------------- */

/* A result record (sluice/window.h draws it) of window [start, end) of a
 * key, from accumulator acc, on `port` (results or early results); with a
 * tracer, the result's span (links.c) becomes its context. */
int sli_win_emit_result(sl_ctx *ctx, win *w, int port, uint64_t h, const void *key, uint32_t klen,
                        int64_t start, int64_t end, const void *acc);

/* Input record i, unchanged (its trace context too), on side port `port`
 * (late or unassigned). */
int sli_win_emit_input(sl_ctx *ctx, int port, const sl_batch *in, uint32_t i);

/* Fail the job: the int64 sum (count) of window [start, end) of a key left
 * int64 (SL_ERANGE; sluice/operators.h states the rule). Returns the code. */
static inline __attribute__((cold)) int sli_win_overflow(sl_ctx *ctx, const win *w, const void *key,
                                                         uint32_t klen, int64_t start, int64_t end)
{
    char kb[80];
    return sl_ctx_fail(ctx, SL_ERANGE,
                       "%s of key '%s' in window [%" PRId64 ", %" PRId64
                       ") leaves int64 (no wrap, no saturation: the job stops)",
                       w->agg->name ? w->agg->name : "sum", sli_key_str(kb, sizeof(kb), key, klen),
                       start, end);
}

/* The checked inline add of count and sum (w->add_one or w->add_value) to
 * the int64 at acc: 0, or 1 when the sum leaves int64 (acc unchanged). */
static inline int win_add_inline(const win *w, void *acc, const void *rec, uint32_t len)
{
    int64_t x, v = w->add_one ? 1 : sli_agg_value(rec, len, w->ud);
    memcpy(&x, acc, 8);
    if (__builtin_add_overflow(x, v, &x)) return 1;
    memcpy(acc, &x, 8);
    return 0;
}

/* --- slices.c: tumbling and sliding ----------------------------------------------- */

/* Open: sizes, the ring (ring > 0 forces its number of slots), state tables.
 * Returns 0 or SL_ENOMEM (the caller frees w). */
int sli_win_slices_open(sl_ctx *ctx, win *w, uint32_t ring);
int sli_win_slices_process(sl_ctx *ctx, win *w, sl_batch *in);
/* Aggregates with a prefetch hook take the prefetching record path only
 * when keys x slot bytes reach this (1 MiB; a test knob: tests set it to 0
 * before any pipeline runs, to drive that path with few keys). */
extern size_t sli_win_prefetch_min;
int sli_win_slices_timer(sl_ctx *ctx, win *w, const sl_timer *t);
int sli_win_slices_early(sl_ctx *ctx, win *w, const sl_timer *t);
/* Snapshot / restore of an instance (slices.c draws the format): the
 * per-key blocks of tumbling and sliding windows, and the conf. Restore
 * installs the blocks of the key groups this instance owns; on any error
 * (SL_ECORRUPT, SL_EINVAL, SL_ENOMEM, with a message on ctx) nothing has
 * changed. */
int sli_win_snapshot(win *w, sl_buf *out);
int sli_win_restore(sl_ctx *ctx, win *w, const void *data, size_t len);
/* Close: free the rings of the keys left in "slices" (their values stay). */
void sli_win_slices_close(win *w);

/* --- sessions.c --------------------------------------------------------------------- */

int sli_win_sess_open(sl_ctx *ctx, win *w);
int sli_win_sess_process(sl_ctx *ctx, win *w, sl_batch *in);
int sli_win_sess_timer(sl_ctx *ctx, win *w, const sl_timer *t);

/* --- window.c and combine.c ------------------------------------------------------- */

/* The window operator's table (window.c), whose callbacks the combined
 * window's final node runs. sli_win_conf_check: 0 when c is a valid window
 * conf with a valid aggregate, else the error recorded on p (naming window
 * nm) and returned: the one rule both builders apply. sli_win_sides: declare
 * a window node's side ports (late, early, unassigned) on its output `out`,
 * -1 on failure (recorded on the pipeline). */
const sl_operator *sli_win_op(void);
int sli_win_conf_check(sl_pipeline *p, const char *nm, const sl_window_conf *c);
int sli_win_sides(sl_stream *out, const sl_window_conf *c, uint32_t in_width);
/* The window conf of the final node of sl_stream_window_combined() that made
 * `out`, or NULL (combine.c): the side-output builders accept it. */
win_node_conf *sli_win_combined_conf(sl_stream *out);

#endif
