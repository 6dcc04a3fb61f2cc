/*
 * examples/job_trace_collector.c - the bundled job `trace-collector`: spans
 * as OTLP/JSON lines are assembled into traces, tail-sampled per whole
 * trace, and the kept traces written back as OTLP/JSON lines; statistics per
 * service and operation at the end.
 *
 *   lines, one ExportTraceServiceRequest each (--input FILE, stdin, or the
 *   values of a topic: --topic NAME [--dir DIR | --kafka BOOTSTRAP])
 *     -> source "otlp" (parallelism 1): sl_otlp_read() validates the whole
 *        line and packs its spans into one record (below); a malformed line
 *        goes to the dead letters (counted; the first ten on stderr with the
 *        reason). Event time of the line: the largest end time of its spans,
 *        in ms; punctuated watermarks max_event_time_seen - delay - 1,
 *        rounded down to a multiple of --watermark-step (default 100 ms):
 *        the engine cuts the reader's batch wherever the watermark moves, so
 *        a watermark after every line would make batches of one line
 *     -> "spans" (parallelism 1, chained): one record per span, event time
 *        its end time in ms; counts every span into the statistics (so they
 *        cover every valid span read, whatever is kept or late)
 *     -> key_by "trace" (the 16-byte trace id)
 *     -> "assemble" (parallelism P): per trace id, in engine keyed state, the
 *        trace's span records; an event-time timer at last + gap - 1, where
 *        last is the largest span end time (ms) of the trace: a trace is
 *        complete when the watermark passes its last span by the gap (a
 *        session window per trace id). When it fires, the trace is decided:
 *        statistics of the trace (orphans), the policies, and a kept trace
 *        is emitted as one OTLP/JSON line
 *     -> "out" (sl_sink_write, --out FILE); port 1 of "assemble", late spans,
 *        -> "late-out" (--late-out FILE, default standard error)
 *
 * Late spans: a span whose trace id is not in flight and whose event time is
 * at or behind the assembler's watermark (its trace was decided already, or
 * would be complete at once) is not assembled: it is counted and written, as
 * a request of its own, to the late output. A span of a trace in flight is
 * always taken, whatever its time. The watermark a record meets is fixed by
 * the input (one reader, punctuated watermarks), so which spans are late,
 * and so every figure, is the same for every --threads and --parallelism.
 *
 * Sampling, per trace, in this order: --keep-errors keeps a trace with a span
 * of status code 2 (ERROR); --keep-slower-than D keeps a trace whose duration
 * (largest end - smallest start, ns) is above D; the rest are kept when
 * (the trace id's bytes 8..15 as a big-endian uint64) >> 1 is below
 * floor(R * 2^63) (OpenTelemetry's TraceIdRatioBased, as its Go SDK has it:
 * sl_trace_should_sample, the rule sluice's own tracer samples root spans by).
 *
 * Packed line record (what the source makes of a line), entries back to back:
 *
 *   offset        size  field
 *   0             4     E: bytes of the entry after this field
 *   4             S     the span record (below; S = 68 + R + C + J)
 *   4+S           4     service length V, then V bytes
 *   8+S+V         4     name length N, then N bytes
 *
 * A line without spans is one entry with E = 0 (a record must have bytes).
 *
 * Span record (what "spans" emits; variable length):
 *
 *   offset  size  field
 *   0       16    trace id
 *   16      8     span id
 *   24      8     parent span id (zero: none)
 *   32      8     start time, ns (uint64)
 *   40      8     end time, ns (uint64)
 *   48      4     status code (int32)
 *   52      1     has parent (0 / 1)
 *   53      1     flags: in a trace's buffer, bit 0: the resource text is a
 *                 reference, bit 1: the scope text is (below); else 0
 *   54      2     zero
 *   56      4     R: resource text length
 *   60      4     C: scope text length
 *   64      4     J: span text length
 *   68      R+C+J resource, scope and span JSON texts, as read
 *
 * In a trace's buffer, a resource (or scope) text longer than 4 bytes that
 * equals the last one stored inline in that buffer is stored as a reference:
 * 4 bytes, the offset of that text in the buffer (R and C keep the text's
 * length). Spans of one resource and scope so cost their own JSON and the
 * header only.
 *
 * Memory: a trace in flight is one state entry (16-byte key, a 56-byte
 * value) and one buffer holding its span records; buffers of decided traces
 * are kept for reuse (up to 1024 per instance), so in a steady state nothing
 * is allocated per trace or per span. The statistics keep every span's
 * latency (8 bytes per span read, in arrays that double as they grow) for
 * exact percentiles: they grow with the input, as exact percentiles must.
 * No checkpoints: the buffers are not in engine-managed state, and the job
 * refuses --checkpoint-dir.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "jobs.h"
#include "jobs_trace.h"
#include "jobs_window.h"

#define SPAN_HDR  68
#define MAX_LINE  (64u << 20) /* largest packed record of one line */
#define FREE_KEEP 1024

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* A span record's texts. In a trace's buffer a resource or scope text equal
 * to the last one stored inline is a reference instead (flag bit 0 / 1 of
 * byte 53: 4 bytes, the offset in the buffer of the text); buf resolves it. */
typedef struct parts {
    const uint8_t *res, *sc, *js;
    uint32_t rl, cl, jl;
    uint32_t size; /* bytes of the record */
} parts;

static parts rec_parts(const uint8_t *buf, const uint8_t *s)
{
    parts p = {.rl = rd32(s + 56), .cl = rd32(s + 60), .jl = rd32(s + 64)};
    const uint8_t *q = s + SPAN_HDR;
    if (s[53] & 1) {
        p.res = buf + rd32(q);
        q += 4;
    } else {
        p.res = q;
        q += p.rl;
    }
    if (s[53] & 2) {
        p.sc = buf + rd32(q);
        q += 4;
    } else {
        p.sc = q;
        q += p.cl;
    }
    p.js = q;
    p.size = (uint32_t)(q + p.jl - s);
    return p;
}

/* --- the reader: a line into a packed record ---------------------------------------- */

typedef struct pack {
    uint8_t *out;
    uint32_t len, max;
    int64_t ts;
    int too_big;
} pack;

static int pack_span(const sl_otlp_span *s, void *ud)
{
    pack *k = ud;
    uint64_t need = 4 + SPAN_HDR + (uint64_t)s->resource.len + s->scope.len + s->json.len + 8 +
                    s->service.len + s->name.len;
    if (need > k->max - k->len) {
        k->too_big = 1;
        return 1;
    }
    uint8_t *o = k->out + k->len;
    uint32_t e = (uint32_t)need - 4, st = (uint32_t)s->status, hp = s->has_parent ? 1 : 0;
    memcpy(o, &e, 4);
    o += 4;
    memcpy(o, s->trace_id, 16);
    memcpy(o + 16, s->span_id, 8);
    memcpy(o + 24, s->parent_id, 8);
    memcpy(o + 32, &s->start_ns, 8);
    memcpy(o + 40, &s->end_ns, 8);
    memcpy(o + 48, &st, 4);
    memset(o + 52, 0, 4);
    o[52] = (uint8_t)hp;
    memcpy(o + 56, &s->resource.len, 4);
    memcpy(o + 60, &s->scope.len, 4);
    memcpy(o + 64, &s->json.len, 4);
    o += SPAN_HDR;
    memcpy(o, s->resource.ptr, s->resource.len);
    o += s->resource.len;
    memcpy(o, s->scope.ptr, s->scope.len);
    o += s->scope.len;
    memcpy(o, s->json.ptr, s->json.len);
    o += s->json.len;
    memcpy(o, &s->service.len, 4);
    memcpy(o + 4, s->service.ptr, s->service.len);
    o += 4 + s->service.len;
    memcpy(o, &s->name.len, 4);
    memcpy(o + 4, s->name.ptr, s->name.len);
    k->len += (uint32_t)need;
    int64_t ms = (int64_t)(s->end_ns / 1000000u);
    if (ms > k->ts) k->ts = ms;
    return 0;
}

int jobs_trace_parse(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                     const char **reason, void *ud)
{
    pack k = {.out = out, .max = max_len, .ts = SL_TIME_NONE};
    int rc = sl_otlp_read(line, len, pack_span, &k, reason);
    if (k.too_big) {
        *reason = "the line's spans take more than 64 MiB";
        return -1;
    }
    if (rc) return -1;
    *ts = k.ts;
    if (k.len == 0) { /* no spans: one empty entry (an empty record cannot be emitted) */
        memset(out, 0, 4);
        return 4;
    }
    return (int)k.len;
}

/* --- statistics ----------------------------------------------------------------------- */

/* Per (service, name): key [u32 service length | service | name]. */
typedef struct tc_stat {
    uint64_t count, errors;
    uint64_t *lat; /* latencies, ns, in arrival order (sorted at the end) */
    uint64_t n, cap;
} tc_stat;

static int stat_add(tc_job *j, sl_bytes svc, sl_bytes name, int err, uint64_t lat)
{
    uint8_t key[4 + 2 * SL_OTLP_MAX_NAME];
    memcpy(key, &svc.len, 4);
    memcpy(key + 4, svc.ptr, svc.len);
    memcpy(key + 4 + svc.len, name.ptr, name.len);
    uint32_t kl = 4 + svc.len + name.len;
    tc_stat *s = sl_state_get(j->stats, sl_hash(key, kl), key, kl, NULL);
    if (!s) return SL_ENOMEM;
    if (s->n == s->cap) {
        uint64_t nc = s->cap ? s->cap * 2 : 16;
        uint64_t *p = realloc(s->lat, nc * sizeof(*p));
        if (!p) return SL_ENOMEM;
        s->lat = p;
        s->cap = nc;
    }
    s->lat[s->n++] = lat;
    s->count++;
    s->errors += err;
    return 0;
}

/* "spans": a packed line into span records; every span into the statistics. */
static int spans_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    tc_job *j = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        const uint8_t *p = r.ptr, *end = p + r.len;
        while (p < end) {
            uint32_t e = rd32(p);
            if (e == 0) break; /* a line without spans */
            const uint8_t *s = p + 4;
            uint32_t sl = SPAN_HDR + rd32(s + 56) + rd32(s + 60) + rd32(s + 64);
            uint64_t start = rd64(s + 32), fin = rd64(s + 40);
            int32_t st;
            memcpy(&st, s + 48, 4);
            sl_bytes svc = {s + sl + 4, rd32(s + sl)};
            sl_bytes name = {s + sl + 8 + svc.len, rd32(s + sl + 4 + svc.len)};
            int rc = stat_add(j, svc, name, st == SL_OTLP_ERROR, fin > start ? fin - start : 0);
            if (rc) return sl_ctx_fail(ctx, rc, "out of memory");
            j->spans++;
            if (sl_emit_copy(ctx, (int64_t)(fin / 1000000u), 0, s, sl)) return sl_ctx_error(ctx);
            p += 4 + (size_t)e;
        }
    }
    return 0;
}

static const sl_operator spans_op = {
    .version = SL_OPERATOR_VERSION, .kind = "otlp-spans", .process = spans_process};

static sl_bytes trace_key(const void *rec, uint32_t len, void *ud)
{
    (void)len;
    (void)ud;
    sl_bytes k = {rec, 16};
    return k;
}

/* --- assembly ------------------------------------------------------------------------- */

/* A trace in flight (the state value; the buffer is the instance's). */
typedef struct tc_trace {
    uint8_t *buf; /* span records back to back */
    uint32_t len, cap, n;
    uint32_t res_off, res_len, sc_off, sc_len; /* the last resource / scope text inline */
    int64_t last;                              /* largest span end time, ms */
    int64_t timer;
} tc_trace;

typedef struct assembler {
    sl_state *tr;
    uint8_t *free_buf[FREE_KEEP];
    uint32_t free_cap[FREE_KEEP];
    int n_free;
    uint64_t *ids; /* scratch: span ids of a trace */
    uint32_t *off; /* scratch: offsets of its span records */
    uint8_t *done;
    size_t scratch;
    sl_buf line;
} assembler;

static int asm_open(sl_ctx *ctx, void **self)
{
    assembler *a = calloc(1, sizeof(*a));
    if (!a) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    *self = a;
    a->tr = sl_ctx_state_unmanaged(ctx, "traces", sizeof(tc_trace));
    if (!a->tr) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    return 0;
}

static void asm_close(void *self)
{
    assembler *a = self;
    if (!a) return;
    if (a->tr) {
        size_t it = 0;
        sl_state_entry e;
        while (sl_state_next(a->tr, &it, &e)) free(((tc_trace *)e.value)->buf);
    }
    for (int i = 0; i < a->n_free; i++) free(a->free_buf[i]);
    free(a->ids);
    free(a->off);
    free(a->done);
    sl_buf_free(&a->line);
    free(a);
}

static void atomic_max(_Atomic uint64_t *m, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(m, memory_order_relaxed);
    while (v > cur && !atomic_compare_exchange_weak_explicit(m, &cur, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {}
}

/* Bytes of span buffers held by traces in flight: now and at most. */
static void held_add(tc_job *j, uint64_t now, uint64_t before)
{
    uint64_t h = atomic_fetch_add_explicit(&j->held, now - before, memory_order_relaxed);
    atomic_max(&j->peak_held, h + now - before);
}

static int64_t deadline(const tc_job *j, int64_t last)
{
    return last > INT64_MAX - 1 - (j->gap - 1) ? INT64_MAX - 1 : last + j->gap - 1;
}

static int bytes_eq(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    return al == bl && memcmp(a, b, al) == 0;
}

static int put_group_open(sl_buf *b, const uint8_t *res, uint32_t rl)
{
    int rc = sl_buf_append(b, "{\"resource\":", 12);
    rc = rc ? rc : sl_buf_append(b, res, rl);
    return rc ? rc : sl_buf_append(b, ",\"scopeSpans\":[", 15);
}

static int put_scope_open(sl_buf *b, const uint8_t *sc, uint32_t cl)
{
    int rc = sl_buf_append(b, "{\"scope\":", 9);
    rc = rc ? rc : sl_buf_append(b, sc, cl);
    return rc ? rc : sl_buf_append(b, ",\"spans\":[", 10);
}

/* One span as a request of its own (a late span). */
static int late_line(sl_buf *b, const uint8_t *s)
{
    parts p = rec_parts(NULL, s);
    b->len = 0;
    int rc = sl_buf_append(b, "{\"resourceSpans\":[", 18);
    rc = rc ? rc : put_group_open(b, p.res, p.rl);
    rc = rc ? rc : put_scope_open(b, p.sc, p.cl);
    rc = rc ? rc : sl_buf_append(b, p.js, p.jl);
    return rc ? rc : sl_buf_append(b, "]}]}]}", 6);
}

static int grow_scratch(assembler *a, size_t n)
{
    if (n <= a->scratch) return 0;
    size_t c = a->scratch ? a->scratch : 64;
    while (c < n) c *= 2;
    uint64_t *ids = realloc(a->ids, c * sizeof(*ids));
    if (ids) a->ids = ids;
    uint32_t *off = realloc(a->off, c * sizeof(*off));
    if (off) a->off = off;
    uint8_t *done = realloc(a->done, c);
    if (done) a->done = done;
    if (!ids || !off || !done) return SL_ENOMEM;
    a->scratch = c;
    return 0;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* The kept trace as one request: spans grouped by resource, then by scope,
 * each group where its first span was. */
static int trace_line(assembler *a, const tc_trace *t)
{
    sl_buf *b = &a->line;
    b->len = 0;
    memset(a->done, 0, t->n);
    int rc = sl_buf_append(b, "{\"resourceSpans\":[", 18);
    int first_r = 1;
    for (uint32_t i = 0; i < t->n && !rc; i++) {
        if (a->done[i]) continue;
        parts pi = rec_parts(t->buf, t->buf + a->off[i]);
        uint32_t rl = pi.rl;
        const uint8_t *res = pi.res;
        if (!first_r) rc = sl_buf_append(b, ",", 1);
        first_r = 0;
        rc = rc ? rc : put_group_open(b, res, rl);
        int first_c = 1;
        for (uint32_t k = i; k < t->n && !rc; k++) {
            if (a->done[k]) continue;
            parts pk = rec_parts(t->buf, t->buf + a->off[k]);
            if (!bytes_eq(pk.res, pk.rl, res, rl)) continue;
            uint32_t cl = pk.cl;
            const uint8_t *sc = pk.sc;
            if (!first_c) rc = sl_buf_append(b, ",", 1);
            first_c = 0;
            rc = rc ? rc : put_scope_open(b, sc, cl);
            int first_s = 1;
            for (uint32_t m = k; m < t->n && !rc; m++) {
                if (a->done[m]) continue;
                parts pm = rec_parts(t->buf, t->buf + a->off[m]);
                if (!bytes_eq(pm.res, pm.rl, res, rl) || !bytes_eq(pm.sc, pm.cl, sc, cl)) continue;
                a->done[m] = 1;
                if (!first_s) rc = sl_buf_append(b, ",", 1);
                first_s = 0;
                rc = rc ? rc : sl_buf_append(b, pm.js, pm.jl);
            }
            rc = rc ? rc : sl_buf_append(b, "]}", 2);
        }
        rc = rc ? rc : sl_buf_append(b, "]}", 2);
    }
    return rc ? rc : sl_buf_append(b, "]}", 2);
}

/* Decide a complete trace: count it, apply the policies, emit it if kept. */
static int decide(sl_ctx *ctx, assembler *a, tc_job *j, const uint8_t *tid, const tc_trace *t)
{
    if (grow_scratch(a, t->n)) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    uint64_t lo = UINT64_MAX, hi = 0;
    int err = 0;
    uint32_t off = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        const uint8_t *s = t->buf + off;
        a->off[i] = off;
        memcpy(&a->ids[i], s + 16, 8);
        uint64_t st = rd64(s + 32), en = rd64(s + 40);
        if (st < lo) lo = st;
        if (en > hi) hi = en;
        int32_t code;
        memcpy(&code, s + 48, 4);
        err |= code == SL_OTLP_ERROR;
        off += rec_parts(t->buf, s).size;
    }
    qsort(a->ids, t->n, sizeof(uint64_t), cmp_u64);
    uint64_t orphans = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        const uint8_t *s = t->buf + a->off[i];
        if (!s[52]) continue;
        uint64_t p;
        memcpy(&p, s + 24, 8);
        if (!bsearch(&p, a->ids, t->n, sizeof(uint64_t), cmp_u64)) orphans++;
    }
    uint64_t dur = hi > lo ? hi - lo : 0;
    _Atomic uint64_t *why = NULL;
    if (j->keep_errors && err)
        why = &j->kept_errors;
    else if (j->slower_set && dur > j->slower_ns)
        why = &j->kept_slow;
    else if (sl_trace_should_sample(j->sample_rate, NULL, tid))
        why = &j->kept_sample;
    atomic_fetch_add_explicit(&j->traces, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&j->orphans, orphans, memory_order_relaxed);
    atomic_fetch_add_explicit(&j->in_traces, t->n, memory_order_relaxed);
    if (!why) return 0;
    atomic_fetch_add_explicit(why, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&j->kept_spans, t->n, memory_order_relaxed);
    if (trace_line(a, t)) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    if (a->line.len > UINT32_MAX)
        return sl_ctx_fail(ctx, SL_ETOOBIG, "a kept trace of more than 4 GiB");
    return sl_emit_copy(ctx, t->last, 0, a->line.ptr, (uint32_t)a->line.len);
}

static int asm_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    assembler *a = self;
    tc_job *j = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        const uint8_t *s = r.ptr;
        int64_t ts = in->ts[i];
        uint64_t h = in->hash[i];
        tc_trace *t = sl_state_find(a->tr, h, s, 16);
        if (!t) {
            if (ts <= sl_ctx_current_watermark(ctx)) { /* late */
                atomic_fetch_add_explicit(&j->late, 1, memory_order_relaxed);
                if (late_line(&a->line, s)) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
                uint8_t *o = sl_emit_port(ctx, 1, ts, 0, (uint32_t)a->line.len);
                if (!o) return sl_ctx_error(ctx);
                memcpy(o, a->line.ptr, a->line.len);
                continue;
            }
            t = sl_state_get(a->tr, h, s, 16, NULL);
            if (!t) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
            if (a->n_free) {
                a->n_free--;
                t->buf = a->free_buf[a->n_free];
                t->cap = a->free_cap[a->n_free];
                held_add(j, t->cap, 0);
            }
            t->last = ts;
            t->timer = deadline(j, ts);
            uint64_t n = atomic_fetch_add_explicit(&j->in_flight, 1, memory_order_relaxed) + 1;
            atomic_max(&j->peak_in_flight, n);
            int rc = sl_ctx_timer(ctx, t->timer, h, s, 16);
            if (rc) return rc;
            t = sl_state_find(a->tr, h, s, 16);
        }
        parts pr = rec_parts(NULL, s);
        int rref = t->n && pr.rl > 4 && pr.rl == t->res_len &&
                   memcmp(t->buf + t->res_off, pr.res, pr.rl) == 0;
        int cref = t->n && pr.cl > 4 && pr.cl == t->sc_len &&
                   memcmp(t->buf + t->sc_off, pr.sc, pr.cl) == 0;
        uint64_t need =
            SPAN_HDR + (rref ? 4 : (uint64_t)pr.rl) + (cref ? 4 : (uint64_t)pr.cl) + pr.jl;
        if (t->len + need > UINT32_MAX)
            return sl_ctx_fail(ctx, SL_ETOOBIG, "a trace of more than 4 GiB");
        if (t->len + need > t->cap) {
            uint64_t c = t->cap ? t->cap : 512;
            while (c < t->len + need) c *= 2;
            if (c > UINT32_MAX) c = UINT32_MAX;
            uint8_t *nb = realloc(t->buf, c);
            if (!nb) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
            t->buf = nb;
            held_add(j, c, t->cap);
            t->cap = (uint32_t)c;
        }
        uint8_t *o = t->buf + t->len, *q = o + SPAN_HDR;
        memcpy(o, s, SPAN_HDR);
        o[53] = (uint8_t)(rref | cref << 1);
        if (rref) {
            memcpy(q, &t->res_off, 4);
            q += 4;
        } else {
            t->res_off = (uint32_t)(q - t->buf);
            t->res_len = pr.rl;
            memcpy(q, pr.res, pr.rl);
            q += pr.rl;
        }
        if (cref) {
            memcpy(q, &t->sc_off, 4);
            q += 4;
        } else {
            t->sc_off = (uint32_t)(q - t->buf);
            t->sc_len = pr.cl;
            memcpy(q, pr.sc, pr.cl);
            q += pr.cl;
        }
        memcpy(q, pr.js, pr.jl);
        t->len += (uint32_t)need;
        t->n++;
        if (ts > t->last) t->last = ts;
    }
    return 0;
}

static int asm_timer(sl_ctx *ctx, void *self, const sl_timer *tm)
{
    assembler *a = self;
    tc_job *j = sl_ctx_conf(ctx);
    tc_trace *t = sl_state_find(a->tr, tm->hash, tm->key, tm->key_len);
    if (!t || t->timer != tm->ts) return 0;
    int64_t d = deadline(j, t->last);
    if (d > tm->ts) { /* spans came since: wait for the new deadline */
        t->timer = d;
        return sl_ctx_timer(ctx, d, tm->hash, tm->key, tm->key_len);
    }
    uint8_t tid[16];
    memcpy(tid, tm->key, 16);
    tc_trace v = *t;
    int rc = decide(ctx, a, j, tid, &v);
    if (a->n_free < FREE_KEEP && v.cap <= (1u << 20)) {
        a->free_buf[a->n_free] = v.buf;
        a->free_cap[a->n_free++] = v.cap;
    } else {
        free(v.buf);
    }
    sl_state_remove(a->tr, tm->hash, tid, 16);
    atomic_fetch_sub_explicit(&j->in_flight, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&j->held, v.cap, memory_order_relaxed);
    return rc;
}

static const sl_operator assemble_op = {.version = SL_OPERATOR_VERSION,
                                        .kind = "trace-assemble",
                                        .open = asm_open,
                                        .process = asm_process,
                                        .timer = asm_timer,
                                        .close = asm_close};

static int fmt_line(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    int rc = sl_buf_append(out, rec, len);
    return rc ? rc : sl_buf_append(out, "\n", 1);
}

/* --- the pipeline ----------------------------------------------------------------------- */

/* The watermark after a record: max_end_ms_seen - delay - 1, rounded down to
 * a multiple of the step. The source announces a watermark (and cuts its
 * batch there) only when it moves, so a step keeps batches whole. */
static int64_t wm_step(const void *rec, uint32_t len, int64_t ts, int64_t max_ts, void *ud)
{
    (void)rec;
    (void)len;
    (void)ts;
    const tc_job *j = ud;
    if (max_ts == SL_TIME_MIN) return SL_TIME_MIN;
    int64_t x = max_ts - j->delay - 1, st = j->wm_step;
    int64_t q = x >= 0 ? x / st : -((-x + st - 1) / st);
    return q * st;
}

int jobs_trace_build(sl_pipeline *p, tc_job *j)
{
    sl_watermark_conf wm = {.delay = j->delay, .punctuated = 1, .fn = wm_step, .ud = j};
    sl_stream *src;
    if (j->topic) {
        src = jobs_topic_source(p, j->tp, NULL, "otlp", j->topic, jobs_trace_parse, NULL, MAX_LINE,
                                0, &wm);
    } else {
        sl_lines_conf lc = {.path = j->input, .parse = jobs_trace_parse, .max_len = MAX_LINE};
        src = sl_pipeline_lines(p, "otlp", &lc, 0, &wm);
    }
    src = sl_stream_parallelism(src, 1);
    sl_stream *bad = sl_stream_dead_letters(src);
    sl_stream *spans = sl_stream_parallelism(sl_stream_apply(src, "spans", &spans_op, j, 0), 1);
    sl_stream *keyed = sl_stream_parallelism(sl_stream_key_by(spans, "trace", trace_key, NULL), 1);
    sl_stream *as = sl_stream_apply(keyed, "assemble", &assemble_op, j, 0);
    as = sl_stream_parallelism(as, j->parallelism ? j->parallelism : 1);
    sl_stream *late = sl_stream_side_as(as, 1, 0, SL_PORT_LATE);
    j->oc = (sl_write_conf){.path = j->out, .format = fmt_line};
    j->lc = (sl_write_conf){.path = j->late_out, .format = fmt_line};
    sl_stream_sink(as, "out", &sl_sink_write, &j->oc);
    sl_stream_sink(late, "late-out", j->late_out ? &sl_sink_write : &jobs_stderr_sink, &j->lc);
    return sl_stream_sink(bad, "dead-letters", &jobs_deadletter_sink, &j->dl);
}

tc_job *jobs_trace_new(void)
{
    tc_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->stats = sl_state_new(sizeof(tc_stat));
    if (!j->stats) {
        free(j);
        return NULL;
    }
    j->gap = 5000;
    j->wm_step = 100;
    j->sample_rate = 1;
    return j;
}

void jobs_trace_free(tc_job *j)
{
    if (!j) return;
    size_t it = 0;
    sl_state_entry e;
    while (sl_state_next(j->stats, &it, &e)) free(((tc_stat *)e.value)->lat);
    sl_state_free(j->stats);
    free(j);
}

/* --- the report ------------------------------------------------------------------------- */

typedef struct stat_row {
    sl_bytes svc, name;
    tc_stat *s;
} stat_row;

static int bytes_cmp(sl_bytes a, sl_bytes b)
{
    uint32_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

static int row_cmp(const void *x, const void *y)
{
    const stat_row *a = x, *b = y;
    int c = bytes_cmp(a->svc, b->svc);
    return c ? c : bytes_cmp(a->name, b->name);
}

/* Bytes below 0x20, 0x7f and '\' as \xNN; the rest as they are. */
static void put_esc(FILE *f, sl_bytes b)
{
    const uint8_t *p = b.ptr;
    for (uint32_t i = 0; i < b.len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
            fprintf(f, "\\x%02x", p[i]);
        else
            fputc(p[i], f);
    }
}

static void put_us(FILE *f, uint64_t ns)
{
    fprintf(f, "\t%" PRIu64 ".%03" PRIu64, ns / 1000, ns % 1000);
}

/* Nearest rank: the value at rank ceil(p/100 * n) of the sorted n values. */
static uint64_t pct(const uint64_t *v, uint64_t n, unsigned p)
{
    uint64_t rank = (p * n + 99) / 100;
    return v[rank ? rank - 1 : 0];
}

int jobs_trace_report(tc_job *j, FILE *f)
{
    size_t n = sl_state_count(j->stats), it = 0, k = 0;
    stat_row *rows = calloc(n ? n : 1, sizeof(*rows));
    if (!rows) return SL_ENOMEM;
    sl_state_entry e;
    while (sl_state_next(j->stats, &it, &e) && k < n) {
        uint32_t sl;
        memcpy(&sl, e.key, 4);
        rows[k].svc = (sl_bytes){(const uint8_t *)e.key + 4, sl};
        rows[k].name = (sl_bytes){(const uint8_t *)e.key + 4 + sl, e.key_len - 4 - sl};
        rows[k++].s = e.value;
    }
    qsort(rows, k, sizeof(*rows), row_cmp);
    fprintf(f, "service\toperation\tspans\terrors\terror_rate\tp50_us\tp95_us\tp99_us\n");
    for (size_t i = 0; i < k; i++) {
        tc_stat *s = rows[i].s;
        qsort(s->lat, s->n, sizeof(uint64_t), cmp_u64);
        put_esc(f, rows[i].svc);
        fputc('\t', f);
        put_esc(f, rows[i].name);
        fprintf(f, "\t%" PRIu64 "\t%" PRIu64 "\t%.4f", s->count, s->errors,
                (double)s->errors / (double)s->count);
        put_us(f, pct(s->lat, s->n, 50));
        put_us(f, pct(s->lat, s->n, 95));
        put_us(f, pct(s->lat, s->n, 99));
        fputc('\n', f);
    }
    free(rows);
    uint64_t ke = atomic_load(&j->kept_errors), ks = atomic_load(&j->kept_slow),
             kr = atomic_load(&j->kept_sample);
    fprintf(f, "traces: %" PRIu64 ", kept: %" PRIu64 ", spans: %" PRIu64 ", orphans: %" PRIu64 "\n",
            atomic_load(&j->traces), ke + ks + kr, j->spans, atomic_load(&j->orphans));
    fprintf(f,
            "kept by policy: errors %" PRIu64 ", slower-than %" PRIu64 ", sample %" PRIu64
            "; kept spans: %" PRIu64 "\n",
            ke, ks, kr, atomic_load(&j->kept_spans));
    fprintf(f, "late spans: %" PRIu64 ", malformed lines: %" PRIu64 "\n", atomic_load(&j->late),
            atomic_load(&j->dl.count));
    return 0;
}

/* --- options ---------------------------------------------------------------------------- */

static void tc_help(void)
{
    printf("usage: sluice run trace-collector [--input FILE | --topic NAME] --out FILE\n"
           "           [--trace-gap D] [--delay D] [--watermark-step D] [--keep-errors]\n"
           "           [--keep-slower-than D]\n"
           "           [--sample-rate R] [--late-out FILE] [--stats FILE] [--credits N]\n"
           "           [--threads N] [--parallelism P] [--explain]\n"
           "           [--dir DIR | --kafka BOOTSTRAP [-X KEY=VALUE]...] [--follow]\n"
           "Reads spans as OTLP/JSON lines (one ExportTraceServiceRequest per line: FILE,\n"
           "standard input, or the values of a topic, read to its current end unless\n"
           "--follow), assembles them into traces by trace id, keeps whole traces by the\n"
           "policies below and writes each kept trace as one OTLP/JSON line (its spans'\n"
           "JSON as read, grouped under their resource and scope) to --out. At the end it\n"
           "prints, per service.name and span name (sorted by bytes), the span count, errors,\n"
           "error rate and latency (end - start) p50/p95/p99 in microseconds, over every\n"
           "valid span read (kept, dropped or late); the percentile p is the value at rank\n"
           "ceil(p/100 * n) of the n latencies sorted (nearest rank); then\n"
           "  traces: N, kept: K, spans: S, orphans: O\n"
           "  kept by policy: errors E, slower-than W, sample M; kept spans: KS\n"
           "  late spans: L, malformed lines: B\n"
           "where S counts every valid span read, and an orphan is a span of an assembled\n"
           "trace whose parentSpanId is not the spanId of a span of that trace.\n"
           "  --out FILE       kept traces, one request per line (required)\n"
           "  --trace-gap D    a trace is complete when the watermark passes its last span's\n"
           "                   end time by D (default 5s; 250ms, 10s, 1m or plain ms)\n"
           "  --delay D        out-of-orderness: after each line the watermark becomes\n"
           "                   max_end_time_seen - D - 1 (default 0), rounded down to a\n"
           "                   multiple of the step; event time of a span: its\n"
           "                   endTimeUnixNano in ms\n"
           "  --watermark-step D  the watermark moves in steps of D (default 100ms; 1 moves\n"
           "                   it after every line that raises it, which cuts the reader's\n"
           "                   batches there and costs throughput)\n"
           "  --keep-errors    keep every trace with a span of status code ERROR (2)\n"
           "  --keep-slower-than D  keep every trace whose duration (largest end - smallest\n"
           "                   start) is above D\n"
           "  --sample-rate R  keep the rest with probability R in [0, 1] (default 1; not\n"
           "                   --trace-sample, which samples this job's own spans): a trace\n"
           "                   is kept when (its id's bytes 8..15 as a big-endian uint64) >> 1\n"
           "                   is below floor(R * 2^63) (OpenTelemetry's TraceIdRatioBased)\n"
           "  --late-out FILE  spans that came after their trace was decided (their trace id\n"
           "                   not in flight and their event time at or behind the watermark),\n"
           "                   one request each (default standard error)\n"
           "  --stats FILE     where the statistics go (default standard output)\n"
           "  --credits N      batches in flight per channel (default 8)\n"
           "Malformed lines (not JSON, or a span without a valid traceId / spanId, a bad\n"
           "time or status) are counted, the first ten reported on standard error with the\n"
           "reason, and skipped. Every figure and the set of kept traces are the same for\n"
           "every --threads and --parallelism (from a topic of several partitions, whose\n"
           "lines interleave as they are read, which spans are late may vary). No\n"
           "checkpoints (--checkpoint-dir is refused).\n");
    fputs(jobs_topics_help, stdout);
    fputs(jobs_trace_help, stdout);
}

int job_trace_collector(int argc, char **argv, const jobs_runner *run)
{
    const char *cmd = "run trace-collector";
    enum {
        O_INPUT = JOBS_OPT_FIRST_FREE,
        O_TOPIC,
        O_OUT,
        O_LATE_OUT,
        O_STATS,
        O_GAP,
        O_DELAY,
        O_ERRORS,
        O_SLOWER,
        O_RATE,
        O_CREDITS,
        O_WM_STEP
    };
    static const struct option opts[] = {{"input", required_argument, NULL, O_INPUT},
                                         {"topic", required_argument, NULL, O_TOPIC},
                                         {"out", required_argument, NULL, O_OUT},
                                         {"late-out", required_argument, NULL, O_LATE_OUT},
                                         {"stats", required_argument, NULL, O_STATS},
                                         {"trace-gap", required_argument, NULL, O_GAP},
                                         {"delay", required_argument, NULL, O_DELAY},
                                         {"keep-errors", no_argument, NULL, O_ERRORS},
                                         {"keep-slower-than", required_argument, NULL, O_SLOWER},
                                         {"sample-rate", required_argument, NULL, O_RATE},
                                         {"credits", required_argument, NULL, O_CREDITS},
                                         {"watermark-step", required_argument, NULL, O_WM_STEP},
                                         JOBS_TOPIC_OPTIONS,
                                         JOBS_COMMON_OPTIONS,
                                         {0}};
    jobs_topics tp = {.job = "trace-collector"};
    jobs_common common = {0};
    const char *stats = NULL;
    long long credits = 0;
    tc_job *j = jobs_trace_new();
    if (!j) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    j->tp = &tp;
    j->dl.cmd = cmd;
    int opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":hX:", opts)) != -1) {
        if ((ret = jobs_topics_opt(cmd, opt, optarg, &tp)) != 1) {
            if (ret) goto done;
            continue;
        }
        ret = 0;
        int64_t d;
        switch (opt) {
        case O_INPUT: j->input = optarg; break;
        case O_TOPIC: j->topic = optarg; break;
        case O_OUT: j->out = optarg; break;
        case O_LATE_OUT: j->late_out = optarg; break;
        case O_STATS: stats = optarg; break;
        case O_ERRORS: j->keep_errors = 1; break;
        case O_CREDITS: ret = jobs_int(cmd, "--credits", optarg, 1, 1024, &credits); break;
        case O_GAP:
        case O_WM_STEP:
        case O_DELAY:
        case O_SLOWER: {
            const char *name = opt == O_GAP       ? "--trace-gap"
                               : opt == O_WM_STEP ? "--watermark-step"
                               : opt == O_DELAY   ? "--delay"
                                                  : "--keep-slower-than";
            int pos = opt == O_GAP || opt == O_WM_STEP;
            if (jobs_duration(optarg, !pos, &d) ||
                (opt == O_SLOWER && d > (int64_t)(UINT64_MAX / 1000000u))) {
                fprintf(stderr,
                        "sluice %s: %s needs a duration (250ms, 10s, 1m or ms%s), not '%s'\n", cmd,
                        name, pos ? ", above 0" : "", optarg);
                ret = 2;
            } else if (opt == O_GAP) {
                j->gap = d;
            } else if (opt == O_WM_STEP) {
                j->wm_step = d;
            } else if (opt == O_DELAY) {
                j->delay = d;
            } else {
                j->slower_set = 1;
                j->slower_ns = (uint64_t)d * 1000000u;
            }
            break;
        }
        case O_RATE: {
            char *end;
            errno = 0;
            double r = strtod(optarg, &end);
            if (!*optarg || *end || errno || !(r >= 0 && r <= 1)) {
                fprintf(stderr, "sluice %s: --sample-rate needs a number from 0 to 1, not '%s'\n",
                        cmd, optarg);
                ret = 2;
            } else {
                j->sample_rate = r;
            }
            break;
        }
        default: ret = jobs_opt(cmd, opt, argv, &common); break;
        }
        if (ret == JOBS_HELP) {
            tc_help();
            ret = 0;
            goto done;
        }
        if (ret) goto done;
    }
    ret = 2;
    if (jobs_no_operands(cmd, argc, argv)) goto done;
    if (j->input && j->topic) {
        fprintf(stderr, "sluice %s: give --input or --topic, not both\n", cmd);
        goto done;
    }
    if (!j->out) {
        fprintf(stderr, "sluice %s: --out FILE is required (where the kept traces go)\n", cmd);
        goto done;
    }
    if (common.checkpoint_dir || common.chk_opt_given) {
        fprintf(stderr, "sluice %s: %s: this job does not take checkpoints yet\n", cmd,
                common.checkpoint_dir ? "--checkpoint-dir" : common.chk_opt_given);
        goto done;
    }
    if (tp.group) {
        fprintf(stderr, "sluice %s: --group is not supported (it needs checkpoints)\n", cmd);
        goto done;
    }
    if (jobs_topics_check(cmd, &tp, j->topic, NULL)) goto done;
    ret = 1;
    if (j->input && strcmp(j->input, "-") != 0 && access(j->input, R_OK) != 0) {
        fprintf(stderr, "sluice %s: cannot read '%s': %s\n", cmd, j->input, strerror(errno));
        goto done;
    }
    FILE *sf = stdout;
    if (stats && !(sf = fopen(stats, "w"))) {
        fprintf(stderr, "sluice %s: cannot write '%s': %s\n", cmd, stats, strerror(errno));
        goto done;
    }
    j->parallelism = jobs_parallelism(&common);
    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        if (sf != stdout) fclose(sf);
        goto done;
    }
    if (common.threads) sl_pipeline_set_threads(p, common.threads);
    if (credits) sl_pipeline_set_credits(p, (int)credits);
    jobs_trace_build(p, j);
    ret = jobs_run(run, p, cmd, &common);
    sl_pipeline_free(p);
    uint64_t nbad = atomic_load(&j->dl.count);
    if (nbad > 10)
        fprintf(stderr, "sluice %s: %" PRIu64 " malformed lines skipped in all\n", cmd, nbad);
    if (ret == 0 && !common.explain && jobs_trace_report(j, sf)) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        ret = 1;
    }
    if (sf != stdout && fclose(sf)) {
        fprintf(stderr, "sluice %s: cannot write '%s': %s\n", cmd, stats, strerror(errno));
        ret = 1;
    }
done:
    jobs_trace_free(j);
    return ret;
}
