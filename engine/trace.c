/*
 * engine/trace.c - W3C trace context, span ids, head sampling, spans and the
 * tracer's queue and export thread (API: sluice/trace.h).
 *
 * traceparent (W3C Trace Context level 1), version 00, 55 bytes:
 *
 *   offset  len  field        rule
 *   0       2    version      lowercase hex; "ff" invalid; above "00": see below
 *   2       1    '-'
 *   3       32   trace-id     lowercase hex, not all zero
 *   35      1    '-'
 *   36      16   parent-id    lowercase hex, not all zero
 *   52      1    '-'
 *   53      2    trace-flags  lowercase hex; bit 0 sampled
 *
 * A version-00 value is exactly 55 bytes. A higher version may be longer;
 * then byte 55 must be '-' and what follows is ignored (forward
 * compatibility: parse what version 00 defines).
 *
 * Ids: xoshiro256** per thread (_Thread_local state, seeded from
 * getrandom(); a thread whose getrandom fails seeds from its clock and its
 * addresses through splitmix64), so drawing an id takes no lock and no
 * system call; an all-zero draw is drawn again.
 *
 * The queue: two rings of queue_capacity cells each (by default 2048 and
 * 8192: QUEUE_DEFAULT), one of whole spans (sl_span, ~2.5 KB: checkpoints,
 * sagas, users' spans, and trace points' spans that carry a tracestate:
 * point_span_whole) and one of trace points' compact spans
 * (sli_span_rec, a 128-byte cell), so that the many small ones touch
 * 16 times less memory: a trace point's span at 1 % sampling used to land
 * in a cold ~2 KB cell, a cache miss, and on the first lap a page fault.
 * Each is Vyukov's bounded MPMC ring (one consumer here). Cell i carries
 * a sequence number; a producer claims position pos by CAS on enq when cell
 * pos & mask has seq == pos, copies the span in, then publishes seq = pos+1
 * (release). The consumer takes position deq when its cell's seq == deq+1,
 * copies the span out, then frees the cell for the next lap with seq =
 * deq + capacity. A producer that finds seq < pos (the cell of the previous
 * lap not yet consumed) sees the ring full: the span is dropped and counted,
 * never waited for. Invariants: enq - deq <= capacity; every position is
 * claimed by one producer and consumed once.
 *
 * The export thread sleeps on `cv` (monotonic clock) until flush_interval
 * passes, `kick` (half a batch) spans are waiting, a flush is asked, or
 * the tracer stops. How it learns that spans are waiting depends on the
 * rate. While they come slowly it is idle (`idle` set) and the producer
 * whose span completes a kick's worth signals it (under the mutex; seq_cst
 * on idle and enq on both sides, so no kick is lost). When it was woken by
 * a kick's worth, spans come fast: it polls the ring every POLL_US instead
 * (until POLL_MAX polls in a row find less than a kick's worth), with
 * `idle` clear, and producers signal only when the ring is half full:
 * a wake-up from another core is an interrupt there, costly in a virtual
 * machine, and a fast producer would send one every few hundred spans.
 * It then copies up to batch_size spans into its own buffer, so that producers can reuse the cells during the export (a span's
 * used part only: its fixed fields and the attributes and links it has),
 * and calls the exporter, which is only ever called from this thread. `done` counts the
 * spans handled (exported or dropped) by the thread; sl_tracer_flush waits
 * on done_cv for done to reach the number of spans queued at its call. On
 * stop, the thread exports what is left until shutdown_timeout_ms, then
 * drops the rest (counted), and exits. free sets shutdown_at before it
 * signals, and sl_trace_batch_deadline() reads it, so an export already
 * under way when free is called is cut to the same time.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include "engine/base/clock.h"
#include "engine/base/pages.h"
#include "engine/graph.h"
#include "engine/trace.h"
#include "sluice/error.h"
#include "sluice/trace.h"

/* --- traceparent ------------------------------------------------------------------ */

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1; /* uppercase is invalid in traceparent */
}

/* n bytes from 2n lowercase hex characters; -1 on a bad character. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val(s[2 * i]), lo = hex_val(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void tohex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

int sl_trace_ctx_valid(const sl_trace_ctx *c)
{
    return c && !all_zero(c->trace_id, 16) && !all_zero(c->span_id, 8);
}

int sl_traceparent_parse(const char *s, size_t len, sl_trace_ctx *out)
{
    sl_trace_ctx c = {0};
    if (out) *out = c;
    if (!s || !out || len < SL_TRACEPARENT_LEN) return SL_EINVAL;
    uint8_t ver;
    if (unhex(s, &ver, 1) || ver == 0xff) return SL_EINVAL;
    if (ver == 0 && len != SL_TRACEPARENT_LEN) return SL_EINVAL;
    if (ver > 0 && len > SL_TRACEPARENT_LEN && s[SL_TRACEPARENT_LEN] != '-') return SL_EINVAL;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return SL_EINVAL;
    if (unhex(s + 3, c.trace_id, 16) || unhex(s + 36, c.span_id, 8) || unhex(s + 53, &c.flags, 1))
        return SL_EINVAL;
    if (!sl_trace_ctx_valid(&c)) return SL_EINVAL;
    *out = c;
    return 0;
}

int sl_traceparent_format(const sl_trace_ctx *c, char out[SL_TRACEPARENT_LEN + 1])
{
    if (!out) return SL_EINVAL;
    out[0] = 0;
    if (!sl_trace_ctx_valid(c)) return SL_EINVAL;
    uint8_t flags = c->flags & SL_TRACE_FLAG_SAMPLED;
    memcpy(out, "00-", 3);
    tohex(c->trace_id, 16, out + 3);
    out[35] = '-';
    tohex(c->span_id, 8, out + 36);
    out[52] = '-';
    tohex(&flags, 1, out + 53);
    out[55] = 0;
    return 0;
}

/* tracestate (W3C Trace Context level 1, section 3.3), as a table of the
 * characters each part may hold:
 *
 *   list    = member *( OWS "," OWS member ), at most 32 non-empty members
 *   member  = key "=" value                    OWS = *( " " / "\t" )
 *   key     = lcalpha 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" )
 *           / ( lcalpha / DIGIT ) 0*240( same ) "@" lcalpha 0*13( same )
 *   value   = 0*255( 0x20-0x7E but "," and "=" ) and one more that is not " "
 */
#define TS_MEMBERS_MAX 32

static int ts_keychar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
           ch == '*' || ch == '/';
}

/* 0 when s[0..n) is a key. */
static int ts_key(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);
    size_t tn = at ? (size_t)(at - s) : n;
    if (!tn || tn > (at ? 241u : 256u)) return -1;
    if (!(s[0] >= 'a' && s[0] <= 'z') && !(at && s[0] >= '0' && s[0] <= '9')) return -1;
    for (size_t i = 1; i < tn; i++)
        if (!ts_keychar(s[i])) return -1;
    if (!at) return 0;
    size_t sn = n - tn - 1;
    if (!sn || sn > 14 || !(at[1] >= 'a' && at[1] <= 'z')) return -1;
    for (size_t i = 2; i <= sn; i++)
        if (!ts_keychar(at[i])) return -1;
    return 0;
}

/* 0 when s[0..n) is a value. */
static int ts_value(const char *s, size_t n)
{
    if (!n || n > 256 || s[n - 1] == ' ') return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == ',' || s[i] == '=') return -1;
    return 0;
}

int sl_tracestate_parse(const char *s, size_t len, sl_trace_ctx *out)
{
    if (!out) return SL_EINVAL;
    out->state = NULL;
    out->state_len = 0;
    if (!s) return len ? SL_EINVAL : 0;
    struct {
        size_t from, eq, to;
    } m[TS_MEMBERS_MAX];
    size_t n = 0, i = 0;
    while (i <= len) {
        size_t from = i, to;
        const char *comma = memchr(s + i, ',', len - i);
        to = comma ? (size_t)(comma - s) : len;
        i = to + 1;
        while (from < to && (s[from] == ' ' || s[from] == '\t')) from++;
        while (to > from && (s[to - 1] == ' ' || s[to - 1] == '\t')) to--;
        if (from == to) continue; /* an empty member */
        const char *eq = memchr(s + from, '=', to - from);
        if (n == TS_MEMBERS_MAX || !eq) return SL_EINVAL;
        size_t e = (size_t)(eq - s);
        if (ts_key(s + from, e - from) || ts_value(s + e + 1, to - e - 1)) return SL_EINVAL;
        for (size_t k = 0; k < n; k++)
            if (m[k].eq - m[k].from == e - from && !memcmp(s + m[k].from, s + from, e - from))
                return SL_EINVAL; /* a key twice */
        m[n].from = from;
        m[n].eq = e;
        m[n].to = to;
        n++;
    }
    size_t keep = 0; /* members within SL_TRACESTATE_MAX bytes of the first */
    while (keep < n && m[keep].to - m[0].from <= SL_TRACESTATE_MAX) keep++;
    if (!keep) return 0;
    out->state = s + m[0].from;
    out->state_len = (uint16_t)(m[keep - 1].to - m[0].from);
    return 0;
}

/* --- ids -------------------------------------------------------------------------- */

static _Thread_local uint64_t rng_s[4];
static _Thread_local int rng_seeded;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(void)
{
    uint64_t seed[4] = {0};
    size_t got = 0;
    while (got < sizeof(seed)) {
        ssize_t r = getrandom((char *)seed + got, sizeof(seed) - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        got += (size_t)r;
    }
    if (got < sizeof(seed)) {
        uint64_t x = (uint64_t)sli_clock_mono_ns() ^ (uint64_t)sli_clock_wall_ns() ^
                     (uint64_t)(uintptr_t)&rng_s ^ (uint64_t)(uintptr_t)pthread_self();
        for (int i = 0; i < 4; i++) seed[i] ^= splitmix64(&x);
    }
    if (all_zero((const uint8_t *)seed, sizeof(seed))) seed[0] = 1; /* xoshiro needs non-zero */
    memcpy(rng_s, seed, sizeof(seed));
    rng_seeded = 1;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna). */
static uint64_t rng_next(void)
{
    if (!rng_seeded) rng_seed();
    uint64_t *s = rng_s;
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Ids are whole rng words stored as they come (no byte loop, no
 * variable-length copy): a few instructions each, as a sampled record
 * makes two or three of them. Zero, the invalid id, is drawn again. */
uint64_t sli_trace_rand64(void)
{
    return rng_next();
}

void sl_trace_new_trace_id(uint8_t out[16])
{
    uint64_t w[2];
    do {
        w[0] = rng_next();
        w[1] = rng_next();
    } while (!(w[0] | w[1]));
    memcpy(out, w, 16);
}

void sl_trace_new_span_id(uint8_t out[8])
{
    uint64_t w;
    do w = rng_next();
    while (!w);
    memcpy(out, &w, 8);
}

/* --- sampling --------------------------------------------------------------------- */

/* TraceIdRatioBased's threshold: ratio * 2^63 ((0, 1) only). */
static uint64_t ratio_bound(double ratio)
{
    return (uint64_t)(ratio * 9223372036854775808.0);
}

int sl_trace_should_sample(double ratio, const sl_trace_ctx *parent, const uint8_t trace_id[16])
{
    if (sl_trace_ctx_valid(parent)) return (parent->flags & SL_TRACE_FLAG_SAMPLED) != 0;
    if (!(ratio > 0)) return 0; /* NaN too */
    if (ratio >= 1) return 1;
    /* OpenTelemetry TraceIdRatioBased (as in opentelemetry-go): the low 8
     * bytes of the id, big endian, >> 1, against ratio * 2^63. */
    uint64_t x = 0;
    for (int i = 8; i < 16; i++) x = x << 8 | trace_id[i];
    return (x >> 1) < ratio_bound(ratio);
}

/* The low half is what the rule reads (big endian, >> 1): drawn below
 * the bound at once, by a multiply-shift of a random 63-bit value into
 * [0, bound) (no division), then stored big endian. Two draws: the high
 * half and the low half's source. */
void sli_trace_new_sampled_trace_id(double ratio, uint8_t out[16])
{
    uint64_t bound = ratio < 1 ? ratio_bound(ratio) : 0;
    if (!bound) { /* every id is sampled (or, at a ratio too small to bound, the rule's own) */
        sl_trace_new_trace_id(out);
        return;
    }
    uint64_t hi = rng_next(), r = rng_next();
    uint64_t low = (uint64_t)(((unsigned __int128)(r >> 1) * bound) >> 63); /* < bound */
    uint64_t x = __builtin_bswap64(low << 1 | (r & 1));                     /* big endian */
    if (!hi && !x) hi = 1; /* never the invalid all-zero id */
    memcpy(out, &hi, 8);
    memcpy(out + 8, &x, 8);
}

/* --- the tracer ------------------------------------------------------------------- */

/* The cells of the two rings: a sequence number, then what it holds. The
 * sequence number is kept minus the cell's index (cell_seq), so that zeroed
 * memory is a ring's initial state: the spans' ring's pages are touched as
 * spans come, not at sl_tracer_new. */
struct span_cell {
    _Atomic size_t seq;
    sl_span span;
};

#define REC_CELL 128 /* bytes: two cache lines (the ring is page-aligned) */
struct rec_cell {
    _Atomic size_t seq;
    sli_span_rec rec;
};
_Static_assert(sizeof(struct rec_cell) <= REC_CELL, "a trace point's span fits its cell");

/* One ring: its cells, and its ends, which lie on the tracer's producer and
 * consumer lines (below). Read-only after sl_tracer_new. */
typedef struct ring {
    char *cells;
    size_t stride; /* bytes per cell */
    size_t mask;   /* capacity - 1 */
    _Atomic size_t *enq, *deq;
    _Atomic uint64_t *dropped; /* spans dropped because it was full */
    size_t urgent;             /* spans waiting that wake a polling export thread: half the ring */
} ring;

struct sl_tracer {
    char *service;
    double ratio;
    uint32_t batch_size;
    uint32_t kick; /* spans between two wake-ups of the export thread */
    int64_t flush_ms, export_ms, shutdown_ms;
    sl_trace_exporter exp;

    ring spans, points; /* whole spans; trace points' compact ones */
    sl_span *batch;     /* batch_size spans, the export thread's */

    pthread_t thread;
    pthread_mutex_t m;
    pthread_cond_t cv;           /* wakes the export thread (monotonic) */
    pthread_cond_t done_cv;      /* the export thread handled spans (monotonic) */
    int stop, flush_req;         /* under m */
    _Atomic int64_t shutdown_at; /* 0, or when free's time runs out (mono ms) */

    /* What the threads that end spans write, and what the export thread
     * writes, on cache lines of their own: a span's end then touches no
     * line the export thread keeps writing (sharing one cost the end a
     * miss per counter). */
    _Alignas(64) _Atomic int idle; /* the export thread waits for a kick (its own line) */
    _Alignas(64) _Atomic size_t enq, points_enq;
    _Atomic uint64_t started, ended, sampled, dropped_full, points_dropped;
    _Alignas(64) _Atomic size_t deq, points_deq;
    _Atomic uint64_t done, exported, dropped_export, export_errors, batches;
    char pad_end[64 - 7 * 8]; /* keeps what follows off the export thread's line */
};

const char *sl_tracer_service_name(const sl_tracer *t)
{
    return t ? t->service : "";
}

static void add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Cell pos of r: its sequence number first (see above), then its span. */
static _Atomic size_t *cell_at(const ring *r, size_t pos)
{
    return (_Atomic size_t *)(void *)(r->cells + (pos & r->mask) * r->stride);
}

static size_t cell_seq(const ring *r, size_t pos)
{
    return atomic_load_explicit(cell_at(r, pos), memory_order_acquire) + (pos & r->mask);
}

static void cell_set_seq(const ring *r, size_t pos, size_t seq)
{
    atomic_store_explicit(cell_at(r, pos), seq - (pos & r->mask), memory_order_release);
}

/* Bytes of a ring cell prefetched ahead of a push: its sequence number and
 * a trace point's compact span (two lines). A full span writes more, but
 * full spans are rare (checkpoints, sagas); prefetching a whole one for
 * every trace point's span cost more cache than it saved. */
#define PUSH_PREFETCH 128

/* Copy the used part of a span: the fields before the attributes, then the
 * attributes and links and the tracestate in use (a span is ~2.5 KB, most
 * of it unused room). */
static void copy_span(sl_span *dst, const sl_span *src)
{
    int na = src->n_attrs <= SL_SPAN_ATTRS_MAX ? src->n_attrs : SL_SPAN_ATTRS_MAX;
    int nl = src->n_links <= SL_SPAN_LINKS_MAX ? src->n_links : SL_SPAN_LINKS_MAX;
    memcpy(dst, src, offsetof(sl_span, attrs));
    dst->n_attrs = (uint8_t)na;
    dst->n_links = (uint8_t)nl;
    memcpy(dst->attrs, src->attrs, (size_t)na * sizeof(src->attrs[0]));
    memcpy(dst->links, src->links, (size_t)nl * sizeof(src->links[0]));
    if (dst->state_len > SL_TRACESTATE_MAX) dst->state_len = 0; /* copied with the fields */
    memcpy(dst->state, src->state, dst->state_len);
}

/* Claim r's next cell: NULL when the ring is full (the span counted as
 * dropped), else the cell, its position in *pos, to fill and then hand
 * over with ring_publish. */
static void *ring_claim(ring *r, size_t *pos_out)
{
    size_t pos = atomic_load_explicit(r->enq, memory_order_relaxed);
    for (;;) {
        intptr_t dif = (intptr_t)cell_seq(r, pos) - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(r->enq, &pos, pos + 1, memory_order_seq_cst,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            add(r->dropped, 1); /* full: the span is dropped */
            return NULL;
        } else {
            pos = atomic_load_explicit(r->enq, memory_order_relaxed);
        }
    }
    *pos_out = pos;
    return cell_at(r, pos);
}

/* Spans claimed and not yet taken by the export thread, in r. */
static size_t ring_waiting(const ring *r)
{
    size_t e = atomic_load_explicit(r->enq, memory_order_seq_cst);
    size_t d = atomic_load_explicit(r->deq, memory_order_relaxed);
    return e - d;
}

static size_t rings_waiting(sl_tracer *t)
{
    return ring_waiting(&t->spans) + ring_waiting(&t->points);
}

/* Hand r's filled cell at pos to the export thread, and wake it once per
 * `kick` spans of the ring (a test of the ring's fill would read deq, the
 * export thread's line, at every span). The cell after it is prefetched for
 * writing: a cell is last touched by the export thread a whole lap
 * earlier, so without this every line the next span writes would miss. */
static void ring_publish(sl_tracer *t, ring *r, size_t pos)
{
    cell_set_seq(r, pos, pos + 1);
    const char *next = (const char *)cell_at(r, pos + 1);
    size_t ahead = r->stride < PUSH_PREFETCH ? r->stride : PUSH_PREFETCH;
    for (size_t off = 0; off < ahead; off += 64) __builtin_prefetch(next + off, 1, 3);
    size_t n = pos + 1;
    if (n % t->kick) return;
    int wake = atomic_load_explicit(&t->idle, memory_order_seq_cst);
    if (!wake && n % r->urgent == 0) wake = ring_waiting(r) >= r->urgent; /* half full */
    if (wake) {
        pthread_mutex_lock(&t->m);
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->m);
    }
}

static void rec_to_span(sl_tracer *t, sl_span *s, const sli_span_rec *r);

/* Export thread only. Moves up to max spans of r into out, as sl_spans;
 * returns how many. */
static size_t ring_pop(sl_tracer *t, ring *r, sl_span *out, size_t max)
{
    size_t n = 0, pos = atomic_load_explicit(r->deq, memory_order_relaxed);
    while (n < max) {
        if (cell_seq(r, pos) != pos + 1) break; /* empty, or a producer still copying in */
        void *c = cell_at(r, pos);
        if (r == &t->points)
            rec_to_span(t, &out[n++], &((struct rec_cell *)c)->rec);
        else
            copy_span(&out[n++], &((struct span_cell *)c)->span);
        cell_set_seq(r, pos, pos + r->mask + 1);
        pos++;
    }
    atomic_store_explicit(r->deq, pos, memory_order_release);
    return n;
}

/* Export thread only: up to max spans from both rings. */
static size_t rings_pop(sl_tracer *t, sl_span *out, size_t max)
{
    size_t n = ring_pop(t, &t->points, out, max);
    return n + ring_pop(t, &t->spans, out + n, max - n);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Export one batch of n spans (export thread). */
static void export_batch(sl_tracer *t, size_t n, int64_t deadline)
{
    sl_trace_batch b = {.spans = t->batch,
                        .n = n,
                        .service_name = t->service,
                        .scope_name = "sluice",
                        .scope_version = SLUICE_VERSION,
                        .deadline_mono_ms = deadline,
                        .tracer = t};
    add(&t->batches, 1);
    int rc = t->exp.export(t->exp.ud, &b);
    if (rc == 0) {
        add(&t->exported, n);
    } else {
        add(&t->export_errors, 1);
        add(&t->dropped_export, n);
    }
}

static void mark_done(sl_tracer *t, uint64_t n)
{
    if (!n) return;
    pthread_mutex_lock(&t->m);
    add(&t->done, n);
    pthread_cond_broadcast(&t->done_cv);
    pthread_mutex_unlock(&t->m);
}

/* The export thread's poll interval while spans come fast (see the top),
 * and how many polls in a row may find less than a kick's worth before it
 * goes back to idle. 1 ms: at 1 % of bench core's records (~400,000
 * spans/s) a kick's worth (256) comes every ~0.6 ms, so a poll mostly
 * finds one; at 200 us three polls in four found less, and the thread's
 * CPU time at 1 % went down from 0.15-0.19 s to 0.11-0.14 s a run with
 * 1 ms. Producers still signal when a ring is half full, so a faster
 * stream does not wait for the poll. */
#define POLL_US  1000
#define POLL_MAX 20

/* The earlier of `until` and POLL_US from now (monotonic). */
static struct timespec poll_deadline(const struct timespec *until)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += POLL_US * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    int later =
        ts.tv_sec > until->tv_sec || (ts.tv_sec == until->tv_sec && ts.tv_nsec >= until->tv_nsec);
    return later ? *until : ts;
}

static void *export_main(void *arg)
{
    sl_tracer *t = arg;
    int polling = 0; /* the last wake was a kick's worth of spans: they come fast */
    pthread_mutex_lock(&t->m);
    for (;;) {
        struct timespec until;
        sli_clock_mono_deadline(&until, t->flush_ms);
        atomic_store_explicit(&t->idle, !polling, memory_order_seq_cst);
        int full = 0, polls = 0;
        while (!t->stop && !t->flush_req && !(full = rings_waiting(t) >= t->kick)) {
            if (polling && ++polls > POLL_MAX) { /* they stopped coming fast: idle */
                polling = 0;
                atomic_store_explicit(&t->idle, 1, memory_order_seq_cst);
                continue; /* look at the ring again, now that producers kick */
            }
            struct timespec ts = polling ? poll_deadline(&until) : until;
            int rc = pthread_cond_timedwait(&t->cv, &t->m, &ts);
            if (rc == ETIMEDOUT &&
                (!polling || (ts.tv_sec == until.tv_sec && ts.tv_nsec == until.tv_nsec)))
                break; /* the flush interval is over */
        }
        atomic_store_explicit(&t->idle, 0, memory_order_relaxed);
        polling = full;
        int stop = t->stop;
        t->flush_req = 0;
        pthread_mutex_unlock(&t->m);
        int64_t shutdown_at = atomic_load_explicit(&t->shutdown_at, memory_order_relaxed);
        for (;;) {
            size_t n = rings_pop(t, t->batch, t->batch_size);
            if (!n) break;
            int64_t now = sli_clock_mono_ms();
            if (stop && now >= shutdown_at) {
                add(&t->dropped_export, n); /* out of time at shutdown */
            } else {
                int64_t dl = now + t->export_ms;
                export_batch(t, n, stop ? min64(dl, shutdown_at) : dl);
            }
            mark_done(t, n);
            /* Outside shutdown, a short batch means the ring is drained
             * for now; go back to waiting. */
            if (!stop && n < t->batch_size) break;
        }
        pthread_mutex_lock(&t->m);
        if (stop) break;
    }
    pthread_mutex_unlock(&t->m);
    return NULL;
}

/* The rings' sizes when the conf leaves queue_capacity 0: 2048 whole spans
 * (OpenTelemetry's default queue), and 8192 trace points' spans, whose
 * 128-byte cells make that 1 MB. At 1 % of bench core's records, about
 * 330,000 spans/s, 2048 is 6 ms of them: on this project's 2-vCPU machine
 * the export thread fell that far behind (kept off its CPU, we believe) in
 * 2 to 7 runs of 10, which lost spans (counted); none did in ten with 8192. */
#define QUEUE_DEFAULT  2048
#define POINTS_DEFAULT 8192

static size_t pow2_at_least(size_t n)
{
    size_t c = 1;
    while (c < n) c <<= 1;
    return c;
}

/* Half a ring of cap cells, a multiple of kick (tested at kick's multiples). */
static size_t urgent_of(size_t cap, size_t kick)
{
    return cap / 2 > kick ? (cap / 2) / kick * kick : kick;
}

/* Free t's memory (any of it may be NULL), and t. */
static void tracer_release(sl_tracer *t)
{
    free(t->batch);
    free(t->spans.cells);
    sli_pages_free(t->points.cells, (t->points.mask + 1) * REC_CELL);
    free(t->service);
    free(t);
}

static void err_say(char *err, size_t n, const char *msg)
{
    if (err && n) snprintf(err, n, "%s", msg);
}

int sl_tracer_new(const sl_tracer_conf *conf, const sl_trace_exporter *exp, sl_tracer **out,
                  char *err, size_t errlen)
{
    if (out) *out = NULL;
    err_say(err, errlen, "");
    int rc = SL_EINVAL;
    sl_tracer *t = NULL;
    if (!out || !conf || !exp) {
        err_say(err, errlen, "tracer: conf, exporter and out are required");
        goto fail;
    }
    if (exp->version < 1 || exp->version > SL_TRACE_EXPORTER_VERSION || !exp->export) {
        err_say(err, errlen, "tracer: exporter table has an unknown version or no export()");
        goto fail;
    }
    if (!conf->service_name || !*conf->service_name) {
        err_say(err, errlen, "tracer: service_name is required");
        goto fail;
    }
    if (!(conf->sample_ratio >= 0 && conf->sample_ratio <= 1)) {
        err_say(err, errlen, "tracer: sample_ratio must be from 0 to 1");
        goto fail;
    }
    if (conf->queue_capacity > (1u << 20) || conf->flush_interval_ms < 0 ||
        conf->export_timeout_ms < 0 || conf->shutdown_timeout_ms < 0) {
        err_say(err, errlen,
                "tracer: queue_capacity above 1048576 or a negative interval or timeout");
        goto fail;
    }
    rc = SL_ENOMEM;
    t = aligned_alloc(64, (sizeof(*t) + 63) & ~(size_t)63); /* its counters' lines */
    if (t) memset(t, 0, sizeof(*t));
    if (!t) goto fail;
    size_t cap = pow2_at_least(conf->queue_capacity ? conf->queue_capacity : QUEUE_DEFAULT);
    size_t points_cap = conf->queue_capacity ? cap : POINTS_DEFAULT;
    t->batch_size = conf->batch_size ? conf->batch_size : 512;
    if (t->batch_size > cap) t->batch_size = (uint32_t)cap;
    t->kick = t->batch_size / 2 ? t->batch_size / 2 : 1;
    t->ratio = conf->sample_ratio;
    t->flush_ms = conf->flush_interval_ms ? conf->flush_interval_ms : 1000;
    t->export_ms = conf->export_timeout_ms ? conf->export_timeout_ms : 10000;
    t->shutdown_ms = conf->shutdown_timeout_ms ? conf->shutdown_timeout_ms : 5000;
    t->exp = *exp;
    t->service = strdup(conf->service_name);
    t->spans = (ring){.cells = calloc(cap, sizeof(struct span_cell)),
                      .stride = sizeof(struct span_cell),
                      .mask = cap - 1,
                      .enq = &t->enq,
                      .deq = &t->deq,
                      .dropped = &t->dropped_full,
                      .urgent = urgent_of(cap, t->kick)};
    t->points = (ring){.cells = sli_pages_alloc(points_cap * REC_CELL), /* pages.h */
                       .stride = REC_CELL,
                       .mask = points_cap - 1,
                       .enq = &t->points_enq,
                       .deq = &t->points_deq,
                       .dropped = &t->points_dropped,
                       .urgent = urgent_of(points_cap, t->kick)};
    t->batch = calloc(t->batch_size, sizeof(*t->batch));
    if (!t->service || !t->spans.cells || !t->points.cells || !t->batch) goto fail_free;
    if (pthread_mutex_init(&t->m, NULL)) goto fail_free;
    if (sli_cond_init_mono(&t->cv)) goto fail_mutex;
    if (sli_cond_init_mono(&t->done_cv)) goto fail_cv;
    if (pthread_create(&t->thread, NULL, export_main, t)) goto fail_done_cv;
    *out = t;
    return 0;
fail_done_cv:
    pthread_cond_destroy(&t->done_cv);
fail_cv:
    pthread_cond_destroy(&t->cv);
fail_mutex:
    pthread_mutex_destroy(&t->m);
fail_free:
    err_say(err, errlen, "tracer: out of memory");
    tracer_release(t);
    t = NULL;
fail:
    if (exp && exp->close) exp->close(exp->ud);
    return rc;
}

void sl_tracer_free(sl_tracer *t)
{
    if (!t) return;
    atomic_store_explicit(&t->shutdown_at, sli_clock_mono_ms() + t->shutdown_ms,
                          memory_order_relaxed);
    pthread_mutex_lock(&t->m);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->m);
    pthread_join(t->thread, NULL);
    if (t->exp.close) t->exp.close(t->exp.ud);
    pthread_cond_destroy(&t->done_cv);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->m);
    tracer_release(t);
}

int64_t sl_trace_batch_deadline(const sl_trace_batch *b)
{
    int64_t d = b->deadline_mono_ms;
    if (!b->tracer) return d;
    int64_t s = atomic_load_explicit(&((sl_tracer *)b->tracer)->shutdown_at, memory_order_relaxed);
    return s && s < d ? s : d;
}

int sl_tracer_flush(sl_tracer *t, int64_t timeout_ms)
{
    if (!t) return 0;
    /* every span claimed so far: a claimed cell is filled and handed over
     * within a few instructions */
    uint64_t target = atomic_load_explicit(&t->enq, memory_order_seq_cst) +
                      atomic_load_explicit(&t->points_enq, memory_order_seq_cst);
    struct timespec ts;
    sli_clock_mono_deadline(&ts, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&t->m);
    t->flush_req = 1;
    pthread_cond_signal(&t->cv);
    while (atomic_load_explicit(&t->done, memory_order_relaxed) < target) {
        if (pthread_cond_timedwait(&t->done_cv, &t->m, &ts) == ETIMEDOUT) {
            rc = atomic_load_explicit(&t->done, memory_order_relaxed) < target ? SL_EAGAIN : 0;
            break;
        }
    }
    pthread_mutex_unlock(&t->m);
    return rc;
}

/* Trace points' spans so far (each started, sampled and ended): every push
 * into their ring is taken (points_enq) or dropped. No counter per point's
 * span: a locked add waits for the producer's pending stores, which was a
 * large part of a span's cost. */
static uint64_t points_of(sl_tracer *t)
{
    return atomic_load_explicit(&t->points_enq, memory_order_relaxed) +
           atomic_load_explicit(&t->points_dropped, memory_order_relaxed);
}

void sl_tracer_stats_get(const sl_tracer *tc, sl_tracer_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!tc) return;
    sl_tracer *t = (sl_tracer *)tc;
#define LD(f) atomic_load_explicit(&t->f, memory_order_relaxed)
    uint64_t points = points_of(t);
    *out = (sl_tracer_stats){.started = LD(started) + points,
                             .ended = LD(ended) + points,
                             .sampled = LD(sampled) + points,
                             .exported = LD(exported),
                             .dropped_full = LD(dropped_full) + LD(points_dropped),
                             .dropped_export = LD(dropped_export),
                             .export_errors = LD(export_errors),
                             .batches = LD(batches),
                             .queue_capacity = (uint32_t)(t->spans.mask + 1)};
#undef LD
}

/* --- spans ------------------------------------------------------------------------ */

int64_t sl_trace_now_ns(void)
{
    return sli_clock_wall_ns();
}

/* Copy src into dst (cap bytes, NUL included), cut at a UTF-8 character
 * boundary when too long. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    if (!src) src = "";
    size_t n = strnlen(src, cap);
    if (n == cap) { /* too long: cut to cap - 1, not inside a character */
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
    }
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* The fields of a sampled span's start, once its ids are set: one place
 * for sl_span_start_at and rec_to_span (which counts nothing: its span was
 * counted when it was queued). */
static void start_fields(sl_span *s, const char *name, int kind, int64_t start_ns)
{
    s->flags = SL_TRACE_FLAG_SAMPLED;
    s->kind = (uint8_t)(kind >= 0 && kind <= SL_SPAN_KIND_CONSUMER ? kind : 0);
    s->status = SL_SPAN_STATUS_UNSET;
    s->n_attrs = s->n_links = 0;
    s->dropped_attrs = s->dropped_links = 0;
    s->status_msg[0] = 0;
    s->end_ns = 0;
    copy_str(s->name, sizeof(s->name), name);
    s->start_ns = start_ns;
}

/* s keeps the tracestate of its parent c (one that fits; else none). */
static void keep_state(sl_span *s, const sl_trace_ctx *c)
{
    if (!c || !c->state || !c->state_len || c->state_len > SL_TRACESTATE_MAX) return;
    memcpy(s->state, c->state, c->state_len);
    s->state_len = c->state_len;
}

void sl_span_start(sl_tracer *t, sl_span *s, const char *name, int kind, const sl_trace_ctx *parent)
{
    sl_span_start_at(t, s, name, kind, parent, 0);
}

void sl_span_start_at(sl_tracer *t, sl_span *s, const char *name, int kind,
                      const sl_trace_ctx *parent, int64_t start_ns)
{
    s->tracer = t;
    s->flags = 0;
    if (!t) return;
    add(&t->started, 1);
    if (sl_trace_ctx_valid(parent)) {
        memcpy(s->trace_id, parent->trace_id, 16);
        memcpy(s->parent_span_id, parent->span_id, 8);
    } else {
        sl_trace_new_trace_id(s->trace_id);
        memset(s->parent_span_id, 0, 8);
    }
    sl_trace_new_span_id(s->span_id);
    s->state_len = 0;
    if (sl_trace_ctx_valid(parent)) keep_state(s, parent); /* sampled or not, it travels on */
    if (!sl_trace_should_sample(t->ratio, parent, s->trace_id)) return;
    add(&t->sampled, 1);
    start_fields(s, name, kind, start_ns ? start_ns : sli_clock_wall_ns());
}

sl_trace_ctx sl_span_context(const sl_span *s)
{
    sl_trace_ctx c = {0};
    if (!s || !s->tracer) return c;
    memcpy(c.trace_id, s->trace_id, 16);
    memcpy(c.span_id, s->span_id, 8);
    c.flags = s->flags;
    if (s->state_len && s->state_len <= SL_TRACESTATE_MAX) {
        c.state = s->state;
        c.state_len = s->state_len;
    }
    return c;
}

void sl_span_set_ids(sl_span *s, const uint8_t span_id[8], const uint8_t *parent_span_id)
{
    if (!s || !s->tracer) return;
    memcpy(s->span_id, span_id, 8);
    if (parent_span_id)
        memcpy(s->parent_span_id, parent_span_id, 8);
    else
        memset(s->parent_span_id, 0, 8);
}

double sl_tracer_sample_ratio(const sl_tracer *t)
{
    return t ? t->ratio : 0;
}

int sl_span_recording(const sl_span *s)
{
    return s && s->tracer && (s->flags & SL_TRACE_FLAG_SAMPLED);
}

/* The attribute slot for key (existing, else new), or NULL (not recording,
 * or no room: counted). */
static sl_span_attr *attr_slot(sl_span *s, const char *key)
{
    if (!sl_span_recording(s) || !key) return NULL;
    char k[SL_SPAN_KEY_MAX];
    copy_str(k, sizeof(k), key);
    for (int i = 0; i < s->n_attrs; i++)
        if (strcmp(s->attrs[i].key, k) == 0) return &s->attrs[i];
    if (s->n_attrs >= SL_SPAN_ATTRS_MAX) {
        s->dropped_attrs++;
        return NULL;
    }
    sl_span_attr *a = &s->attrs[s->n_attrs++];
    memcpy(a->key, k, sizeof(k));
    return a;
}

/* The next attribute slot, key copied without a search: for rec_to_span,
 * which sets each key once on a fresh span. */
static sl_span_attr *attr_append(sl_span *s, const char *key)
{
    if (!sl_span_recording(s)) return NULL;
    if (s->n_attrs >= SL_SPAN_ATTRS_MAX) {
        s->dropped_attrs++;
        return NULL;
    }
    sl_span_attr *a = &s->attrs[s->n_attrs++];
    copy_str(a->key, sizeof(a->key), key);
    return a;
}

void sl_span_set_str(sl_span *s, const char *key, const char *val)
{
    sl_span_attr *a = attr_slot(s, key);
    if (!a) return;
    a->type = SL_ATTR_STRING;
    copy_str(a->v.s, sizeof(a->v.s), val);
}

void sl_span_set_int(sl_span *s, const char *key, int64_t val)
{
    sl_span_attr *a = attr_slot(s, key);
    if (!a) return;
    a->type = SL_ATTR_INT;
    a->v.i = val;
}

void sl_span_set_double(sl_span *s, const char *key, double val)
{
    sl_span_attr *a = attr_slot(s, key);
    if (!a) return;
    a->type = SL_ATTR_DOUBLE;
    a->v.d = val;
}

void sl_span_set_bool(sl_span *s, const char *key, int val)
{
    sl_span_attr *a = attr_slot(s, key);
    if (!a) return;
    a->type = SL_ATTR_BOOL;
    a->v.b = val != 0;
}

void sl_span_add_link(sl_span *s, const sl_trace_ctx *ctx)
{
    if (!sl_span_recording(s) || !sl_trace_ctx_valid(ctx)) return;
    if (s->n_links >= SL_SPAN_LINKS_MAX) {
        s->dropped_links++;
        return;
    }
    s->links[s->n_links++] = *ctx;
}

void sl_span_set_status(sl_span *s, int status, const char *msg)
{
    if (!sl_span_recording(s)) return;
    if (status < SL_SPAN_STATUS_UNSET || status > SL_SPAN_STATUS_ERROR) return;
    s->status = (uint8_t)status;
    copy_str(s->status_msg, sizeof(s->status_msg),
             status == SL_SPAN_STATUS_ERROR && msg ? msg : "");
}

void sl_span_end(sl_span *s, int64_t end_ns)
{
    sl_tracer *t = s ? s->tracer : NULL;
    if (!t) return;
    add(&t->ended, 1);
    s->tracer = NULL; /* ended: further calls on s do nothing */
    if (!(s->flags & SL_TRACE_FLAG_SAMPLED)) return;
    s->end_ns = end_ns ? end_ns : sli_clock_wall_ns();
    if (s->end_ns < s->start_ns) s->end_ns = s->start_ns;
    size_t pos;
    struct span_cell *c = ring_claim(&t->spans, &pos);
    if (!c) return;
    copy_span(&c->span, s);
    ring_publish(t, &t->spans, pos);
}

/* A point's span whose record carries a tracestate: too big for the
 * points' cells, it is queued whole with its state, as sl_span_end queues
 * (only traces that came in with a tracestate take this way). */
static void point_span_whole(sl_tracer *t, const sli_span_rec *r, const char *state,
                             uint16_t state_len)
{
    add(&t->started, 1);
    add(&t->sampled, 1);
    add(&t->ended, 1);
    size_t pos;
    struct span_cell *c = ring_claim(&t->spans, &pos);
    if (!c) return;
    rec_to_span(t, &c->span, r);
    memcpy(c->span.state, state, state_len);
    c->span.state_len = state_len;
    ring_publish(t, &t->spans, pos);
}

void sli_span_rec_end(sl_tracer *t, const sli_span_rec *r, const char *state, uint16_t state_len)
{
    if (state && state_len && state_len <= SL_TRACESTATE_MAX) {
        point_span_whole(t, r, state, state_len);
        return;
    }
    size_t pos; /* counted by the push: points_of() */
    struct rec_cell *c = ring_claim(&t->points, &pos);
    if (!c) return;
    c->rec = *r;
    ring_publish(t, &t->points, pos);
}

/* The sl_span a point's span is, with its attributes (sluice/trace.h,
 * sl_stream_trace): made by the export thread from a compact cell, or by
 * the producer when the span goes whole (point_span_whole). */
static void rec_to_span(sl_tracer *t, sl_span *s, const sli_span_rec *r)
{
    s->tracer = t; /* for attr_append; cleared below, as sl_span_end leaves it */
    memcpy(s->trace_id, r->trace_id, 16);
    memcpy(s->span_id, r->span_id, 8);
    memcpy(s->parent_span_id, r->parent, 8);
    start_fields(s, r->point, r->kind, r->start_ns);
    s->state_len = 0; /* with a state it comes whole: point_span_whole */
    s->end_ns = r->end_ns > r->start_ns ? r->end_ns : r->start_ns;
    sl_span_attr *a;
    if ((a = attr_append(s, "sluice.operator"))) {
        a->type = SL_ATTR_STRING;
        copy_str(a->v.s, sizeof(a->v.s), r->point);
    }
    if ((a = attr_append(s, "sluice.instance"))) {
        a->type = SL_ATTR_INT;
        a->v.i = r->instance;
    }
    if ((a = attr_append(s, "sluice.end"))) {
        a->type = SL_ATTR_STRING;
        copy_str(a->v.s, sizeof(a->v.s), r->end ? r->end : "unseen");
    }
    if (r->end && (a = attr_append(s, "sluice.end_instance"))) {
        a->type = SL_ATTR_INT;
        a->v.i = r->end_instance;
    }
    if (r->keyed && (a = attr_append(s, "sluice.key_hash"))) {
        a->type = SL_ATTR_INT;
        a->v.i = (int64_t)r->key_hash;
    }
    if (r->queue_ns >= 0 && (a = attr_append(s, "sluice.queue_ns"))) {
        a->type = SL_ATTR_INT;
        a->v.i = r->queue_ns;
    }
    s->tracer = NULL;
}

/* --- pipelines -------------------------------------------------------------------- */

int sl_pipeline_set_tracer(sl_pipeline *p, sl_tracer *t)
{
    if (!p) return SL_EINVAL;
    if (p->started) return SL_ESTATE;
    if (p->tracer != t) sl_tracer_free(p->tracer);
    p->tracer = t;
    return 0;
}

sl_tracer *sl_pipeline_tracer(const sl_pipeline *p)
{
    return p ? p->tracer : NULL;
}
