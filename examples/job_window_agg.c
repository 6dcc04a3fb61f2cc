/*
 * examples/job_window_agg.c - the bundled job `window-agg`, and the
 * dead-letter sinks the event-time jobs share (jobs_deadletter*).
 *
 *   lines "event_time_ms,key,value" (--input FILE, stdin, or the values of a
 *   broker topic with --topic NAME [--dir DIR])
 *     -> source "csv" (parallelism 1): parses each line; malformed lines go to
 *        its port 1 (dead letters: counted, the first ten reported on stderr
 *        with their line numbers); punctuated watermarks: after each record
 *        the watermark becomes max_event_time_seen - delay - 1 (announced
 *        rounded down to the windows' ends, which changes no result:
 *        wa_watermark)
 *     -> key_by "key" -> window "window" (parallelism P): --window, --agg,
 *        --lateness; results "window_start,window_end,key,aggregate" to --out
 *        (default stdout); late records "late,event_time_ms,key,value" and
 *        records in no window (slide > size) "no-window,..." to --late-out
 *        (default stderr)
 *     with --combine: -> "window.combine" (chained to the reader) ->
 *        "window.key" -> window "window": sl_stream_window_combined, which
 *        pre-aggregates per key and slice before the shuffle (same output)
 *
 * A record is judged against the watermark before it (the source emits the
 * record, then the watermark), and every window instance sees the same
 * sequence of records and watermarks for its keys, so the sorted output is
 * the same for every --threads and --parallelism.
 *
 * --agg distinct is sl_agg_distinct (a HyperLogLog per key and window, the
 * estimate rounded); --agg distinct-exact counts exactly, which no
 * fixed-size accumulator can, with two windows of engine-owned state
 * (jobs_distinct_exact below, so checkpoints carry it like any window):
 *
 *   key_by (value, key) -> window "distinct-pairs" (the job's window, count):
 *     one result per distinct value of a key in a window, event time end - 1
 *   key_by key -> window "distinct-window" (tumbling, size = the slide,
 *     offset = (offset + size) mod slide, so that exactly the results of one
 *     first-stage window, all at its end - 1, fall into one of its windows),
 *     aggregate "pairs": how many results, and the first window's bounds
 *   -> "distinct-exact": rewrites each result as the first window's result
 *     record [start | end | 8 | 0 | count | key], so sinks and formats are
 *     those of any window.
 *
 * Its state is one entry per distinct (key, value) per window: what an exact
 * count must keep. Session windows (a value's sessions are not its key's)
 * and a lateness above 0 (a late value re-fires its first-stage window, and
 * the second stage would count it twice) are refused.
 *
 * Record after parsing (variable length):
 *
 *   offset  size     field
 *   0       8        value, int64
 *   8       key_len  key bytes (no comma)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "jobs.h"
#include "jobs_window.h"

/* --- the dead-letter sink --------------------------------------------------------------- */

static int dl_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    jobs_deadletters *d = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        uint64_t k = atomic_fetch_add(&d->count, 1);
        sl_dead_letter dl;
        if (k < 10 && sl_dead_letter_read(sl_batch_bytes(in, i), &dl) == 0)
            fprintf(stderr, "sluice %s: %.*s: %.*s\n", d->cmd, (int)dl.reason.len,
                    (const char *)dl.reason.ptr, (int)dl.raw.len, (const char *)dl.raw.ptr);
    }
    return 0;
}

const sl_operator jobs_deadletter_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "dead-letters", .process = dl_process};

static int dlt_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    jobs_deadletters *d = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        uint64_t k = atomic_fetch_add(&d->count, 1);
        sl_bytes b = sl_batch_bytes(in, i);
        if (k < 10) fprintf(stderr, "sluice %s: %.*s\n", d->cmd, (int)b.len, (const char *)b.ptr);
    }
    return 0;
}

const sl_operator jobs_deadletter_text_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "dead-letters", .process = dlt_process};

static int dlf_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    jobs_deadletters_fmt *f = sl_ctx_conf(ctx);
    sl_buf b = {0};
    for (uint32_t i = 0; i < in->count; i++) {
        uint64_t k = atomic_fetch_add(&f->dl->count, 1);
        if (k >= 10) continue;
        sl_bytes r = sl_batch_bytes(in, i);
        b.len = 0;
        if (f->format(&b, r.ptr, r.len, in->ts[i], f->ud) == 0)
            fprintf(stderr, "sluice %s: %.*s\n", f->dl->cmd, (int)b.len, (const char *)b.ptr);
    }
    sl_buf_free(&b);
    return 0;
}

const sl_operator jobs_deadletter_fmt_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "dead-letters", .process = dlf_process};

/* --- window-agg ------------------------------------------------------------------------- */

#define MAX_KEY 4096

/* A decimal int64: an optional '-' and 1 to 19 digits, nothing else (no
 * spaces, no '+'), within int64. 0, or -1 for anything else. */
static int parse_i64(const char *p, size_t len, int64_t *out)
{
    int neg = len > 0 && p[0] == '-';
    size_t i = (size_t)neg;
    if (len == i || len - i > 19) return -1;
    uint64_t v = 0;
    for (; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9) return -1;
        v = v * 10 + d; /* 19 digits fit in uint64 */
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return -1;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* Reasons are given in this order: the line's shape (two commas, no
 * third), the key, the event time, the value. The value is parsed first:
 * one that parses holds no comma, so the third comma is looked for only
 * when it does not. */
static int parse_csv(const char *line, size_t len, void *out, uint32_t max_len, int64_t *ts,
                     const char **reason, void *ud)
{
    const char *c1 = memchr(line, ',', len);
    if (!c1) {
        *reason = "expected event_time_ms,key,value";
        return -1;
    }
    const char *rest = c1 + 1;
    size_t rlen = len - (size_t)(rest - line);
    const char *c2 = memchr(rest, ',', rlen);
    if (!c2) {
        *reason = "expected event_time_ms,key,value";
        return -1;
    }
    const char *val = c2 + 1;
    size_t vlen = len - (size_t)(val - line);
    int64_t t, v;
    int v_bad = parse_i64(val, vlen, &v);
    if (v_bad && memchr(val, ',', vlen)) {
        *reason = "too many fields";
        return -1;
    }
    size_t klen = (size_t)(c2 - rest);
    if (klen == 0) {
        *reason = "empty key";
        return -1;
    }
    if (klen + 8 > max_len) {
        *reason = "key too long";
        return -1;
    }
    if (parse_i64(line, (size_t)(c1 - line), &t)) {
        *reason = "bad event_time_ms";
        return -1;
    }
    if (v_bad) {
        *reason = "bad value";
        return -1;
    }
    memcpy(out, &v, 8);
    memcpy((uint8_t *)out + 8, rest, klen);
    *ts = t;
    return (int)(klen + 8);
}

/* --- the watermark ------------------------------------------------------------------ */

/* The rule is max_event_time_seen - delay - 1 after each record. Tumbling
 * and sliding windows act on the watermark only where it reaches a window's
 * end - 1 (it fires) or end - 1 + lateness (it expires: records for it are
 * late from then on). So the source announces the rule's value rounded
 * down to the last such point it reached: every window fires, expires and
 * judges each record exactly as under the rule itself, while a watermark
 * is announced (and the source's batch cut) once per slide of event time
 * instead of at nearly every record (CSV lines 20 to a millisecond were cut
 * into batches of 20). Window ends are offset + size + k * slide. Sessions
 * end where the data says: they get the rule unrounded. Near the bottom of
 * int64, where rounding down would leave int64, too. */
typedef struct wa_wm {
    int64_t delay;
    int round;             /* tumbling or sliding */
    int64_t slide, p1, p2; /* the points: p1, p2 mod slide (end - 1, end - 1 + L) */
} wa_wm;

static int64_t wa_watermark(const void *rec, uint32_t len, int64_t ts, int64_t max_ts, void *ud)
{
    (void)rec, (void)len, (void)ts;
    const wa_wm *w = ud;
    if (max_ts == SL_TIME_MIN || max_ts < SL_TIME_MIN + w->delay + 1) return SL_TIME_MIN;
    int64_t wm = max_ts - w->delay - 1;
    if (!w->round || wm < SL_TIME_MIN + 2 * w->slide) return wm;
    /* wm - p stays in int64 (wm >= SL_TIME_MIN + 2 slide, 0 <= p < slide);
     * one division per record when the two points coincide (lateness 0) */
    int64_t m1 = (wm - w->p1) % w->slide;
    if (m1 < 0) m1 += w->slide;
    int64_t r1 = wm - m1;
    if (w->p2 == w->p1) return r1;
    int64_t m2 = (wm - w->p2) % w->slide;
    if (m2 < 0) m2 += w->slide;
    int64_t r2 = wm - m2;
    return r1 > r2 ? r1 : r2;
}

static void wa_wm_init(wa_wm *w, const sl_window_conf *wc, int64_t delay)
{
    memset(w, 0, sizeof(*w));
    w->delay = delay;
    w->round = wc->kind != SL_WINDOW_SESSION && wc->slide > 0 && wc->slide < INT64_MAX / 4;
    if (!w->round) return;
    w->slide = wc->slide;
    __int128 e1 = ((__int128)wc->offset + wc->size - 1) % wc->slide;
    if (e1 < 0) e1 += wc->slide;
    __int128 e2 = (e1 + wc->lateness % wc->slide) % wc->slide;
    w->p1 = (int64_t)e1;
    w->p2 = (int64_t)e2;
}

static sl_bytes rec_key(const void *rec, uint32_t len, void *ud)
{
    sl_bytes k = {(const uint8_t *)rec + 8, len - 8};
    return k;
}

typedef struct fmt_ud {
    const sl_aggregate *agg;
} fmt_ud;

static int fmt_result(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const fmt_ud *f = ud;
    sl_bytes b = {rec, len};
    sl_window_result r = sl_window_out(b);
    int rc = sl_buf_printf(out, "%" PRId64 ",%" PRId64 ",%.*s,", r.start, r.end, (int)r.key.len,
                           (const char *)r.key.ptr);
    if (rc) return rc;
    if (f->agg == &sl_agg_avg) {
        double d;
        memcpy(&d, r.result, 8);
        return sl_buf_printf(out, "%.3f\n", d);
    }
    int64_t x;
    memcpy(&x, r.result, 8);
    return sl_buf_printf(out, "%" PRId64 "\n", x);
}

/* Records the window did not count, as text "WHY,event_time_ms,key,value":
 * input 0 the late ones ("late"), input 1 those in no window ("no-window",
 * a sliding window whose slide is longer than its size). */
static int divert_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    const char *why = sl_ctx_input(ctx) == 0 ? "late" : "no-window";
    char line[MAX_KEY + 96];
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        int64_t v;
        memcpy(&v, r.ptr, 8);
        int n = snprintf(line, sizeof(line), "%s,%" PRId64 ",%.*s,%" PRId64, why, in->ts[i],
                         (int)(r.len - 8), (const char *)r.ptr + 8, v);
        int rc = sl_emit_copy(ctx, in->ts[i], 0, line, (uint32_t)n);
        if (rc) return rc;
    }
    return 0;
}

static const sl_operator divert_op = {
    .version = SL_OPERATOR_VERSION, .kind = "divert", .process = divert_process};

/* The same as a topic's value: without the newline. */
static int fmt_value(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    int rc = fmt_result(out, rec, len, ts, ud);
    if (!rc && out->len) out->len--;
    return rc;
}

/* A result's key: its window key (so a key's results share a partition). */
static sl_bytes result_key(const void *rec, uint32_t len, void *ud)
{
    sl_bytes b = {rec, len};
    return sl_window_out(b).key;
}

static int fmt_line(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    int rc = sl_buf_append(out, rec, len);
    return rc ? rc : sl_buf_append(out, "\n", 1);
}

/* A write sink to a descriptor already open (standard error), whole
 * batches per write(2). conf: sl_write_conf with path NULL. */
static int fdw_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    const sl_write_conf *c = sl_ctx_conf(ctx);
    sl_buf b = {0};
    int rc = 0;
    for (uint32_t i = 0; i < in->count && !rc; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        rc = c->format(&b, r.ptr, r.len, in->ts[i], c->ud);
    }
    if (rc) {
        sl_buf_free(&b);
        return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    }
    fflush(stderr);
    size_t off = 0;
    while (off < b.len) {
        ssize_t k = write(2, b.ptr + off, b.len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            sl_buf_free(&b);
            return sl_ctx_fail(ctx, SL_EIO, "cannot write standard error: %s", strerror(errno));
        }
        off += (size_t)k;
    }
    sl_buf_free(&b);
    return 0;
}

const sl_operator jobs_stderr_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "write", .process = fdw_process};

/* --- distinct-exact: two windows ------------------------------------------------------- */

static sl_bytes pair_key(const void *rec, uint32_t len, void *ud)
{
    (void)ud;
    sl_bytes k = {rec, len}; /* value and key bytes */
    return k;
}

/* A first-stage result [start | end | 8 | 0 | count | value | key]: its key. */
#define PAIR_HDR (SL_WINDOW_OUT_HDR + 8 + 8)
static sl_bytes pair_result_key(const void *rec, uint32_t len, void *ud)
{
    (void)ud;
    sl_bytes k = {(const uint8_t *)rec + PAIR_HDR, len >= PAIR_HDR ? len - PAIR_HDR : 0};
    return k;
}

/* Aggregate "pairs" over first-stage results: how many, and their window. */
typedef struct pairs_acc {
    int64_t n, start, end;
} pairs_acc;
static void pairs_init(void *acc, const void *ud)
{
    memset(acc, 0, sizeof(pairs_acc));
}
static void pairs_add(void *acc, const void *rec, uint32_t len, int64_t ts, const void *ud)
{
    pairs_acc *a = acc;
    if (len < SL_WINDOW_OUT_HDR) return;
    memcpy(&a->start, rec, 8);
    memcpy(&a->end, (const uint8_t *)rec + 8, 8);
    a->n++;
}
static void pairs_merge(void *acc, const void *other, const void *ud)
{
    pairs_acc *a = acc;
    const pairs_acc *b = other;
    if (!a->n) {
        a->start = b->start;
        a->end = b->end;
    }
    a->n += b->n;
}
static void pairs_result(const void *acc, void *out, const void *ud)
{
    memcpy(out, acc, sizeof(pairs_acc));
}
static const sl_aggregate pairs_agg = {SL_AGGREGATE_VERSION,
                                       "pairs",
                                       sizeof(pairs_acc),
                                       sizeof(pairs_acc),
                                       pairs_init,
                                       pairs_add,
                                       pairs_merge,
                                       pairs_result,
                                       0,
                                       NULL};

static int rewrite_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    for (uint32_t i = 0; i < in->count; i++) {
        sl_window_result r = sl_window_out(sl_batch_bytes(in, i));
        if (r.result_size != sizeof(pairs_acc))
            return sl_ctx_fail(ctx, SL_ECORRUPT, "distinct-exact: a result of %u bytes",
                               r.result_size);
        pairs_acc a;
        memcpy(&a, r.result, sizeof(a));
        const uint32_t rs = 8, zero = 0;
        uint8_t *o = sl_emit(ctx, in->ts[i], in->hash[i], SL_WINDOW_OUT_HDR + 8 + r.key.len);
        if (!o) return sl_ctx_error(ctx);
        memcpy(o, &a.start, 8);
        memcpy(o + 8, &a.end, 8);
        memcpy(o + 16, &rs, 4);
        memcpy(o + 20, &zero, 4);
        memcpy(o + 24, &a.n, 8);
        if (r.key.len) memcpy(o + 32, r.key.ptr, r.key.len);
    }
    return 0;
}

static const sl_operator rewrite_op = {
    .version = SL_OPERATOR_VERSION, .kind = "distinct-exact", .process = rewrite_process};

sl_stream *jobs_distinct_exact(sl_stream *in, const sl_window_conf *wc, int parallelism,
                               sl_stream **first, const char **why)
{
    *why = NULL;
    if (wc->kind == SL_WINDOW_SESSION) {
        *why = "supports tumbling and sliding windows, not session windows";
        return NULL;
    }
    if (wc->lateness > 0) {
        *why = "needs --lateness 0 (a late value would be counted twice)";
        return NULL;
    }
    if (wc->early_ms > 0) {
        *why = "does not fire early";
        return NULL;
    }
    sl_window_conf c1 = *wc;
    c1.agg = &sl_agg_count;
    c1.agg_ud = NULL;
    sl_stream *k1 = sl_stream_key_by(in, "pair", pair_key, NULL);
    sl_stream *w1 = sl_stream_window(k1, "distinct-pairs", &c1);
    if (parallelism) w1 = sl_stream_parallelism(w1, parallelism);
    if (first) *first = w1;
    int64_t sl = wc->slide, off = ((wc->offset + wc->size) % sl + sl) % sl;
    sl_window_conf c2 = sl_window_tumbling(sl, off);
    c2.agg = &pairs_agg;
    sl_stream *k2 = sl_stream_key_by(w1, "distinct-key", pair_result_key, NULL);
    sl_stream *w2 = sl_stream_window(k2, "distinct-window", &c2);
    if (parallelism) w2 = sl_stream_parallelism(w2, parallelism);
    sl_stream *out = sl_stream_apply(w2, "distinct-exact", &rewrite_op, NULL, 0);
    if (parallelism) out = sl_stream_parallelism(out, parallelism);
    return out;
}

static void wa_help(void)
{
    printf(
        "usage: sluice run window-agg [--input FILE | --topic NAME] [--window SPEC]\n"
        "           [--agg AGG] [--delay D] [--lateness L] [--combine]\n"
        "           [--out FILE | --out-topic NAME]\n"
        "           [--late-out FILE] [--threads N] [--parallelism P] [--explain]\n"
        "           [--dir DIR | --kafka BOOTSTRAP [-X KEY=VALUE]...] [--follow]\n"
        "           [--checkpoint-dir DIR [--checkpoint-interval D] [--checkpoint-timeout D]\n"
        "            [--checkpoint-keep K] [--from-checkpoint PATH]\n"
        "            [--checkpoint-capture auto|sync|fork]\n"
        "            [--guarantee exactly-once|at-least-once|none]]\n"
        "Aggregates CSV lines event_time_ms,key,value (FILE, standard input, or the values\n"
        "of a topic, read to its current end unless --follow) per key and event-time window, and\n"
        "writes window_start,window_end,key,aggregate lines.\n"
        "  --window tumbling:SIZE | sliding:SIZE:SLIDE | session:GAP   (default tumbling:1s)\n"
        "           durations: 250ms, 10s, 1m, 1h or plain milliseconds\n"
        "  --agg count|sum|min|max|avg|distinct|distinct-exact   aggregate of the\n"
        "           values (default count; avg is printed with three decimals;\n"
        "           distinct: a HyperLogLog estimate of the number of distinct\n"
        "           values, rounded, about 0.8 %% standard error, 16 KiB per key and\n"
        "           window; distinct-exact: the exact number, state per distinct\n"
        "           value, tumbling and sliding windows, --lateness 0)\n"
        "  --delay D      out-of-orderness: after each record the watermark becomes\n"
        "                 max_event_time_seen - D - 1 (default 0)\n"
        "  --lateness L   allowed lateness (default 0): late data within it updates a\n"
        "                 window, which is written again\n"
        "  --combine      pre-aggregate before the shuffle (a combiner chained to the\n"
        "                 reader; tumbling and sliding windows, not distinct-exact):\n"
        "                 the same output, fewer records sent to the P window instances\n"
        "  --out FILE     results (default standard output)\n"
        "  --out-topic NAME  results as the values of a topic, keyed by key; with\n"
        "                 exactly-once, one transaction per checkpoint\n"
        "  --late-out FILE  records later than the lateness, as late,event_time_ms,key,value,\n"
        "                 and records in no window (slide > size) as no-window,...\n"
        "                 (default standard error)\n"
        "Malformed lines are counted, the first ten reported on standard error with\n"
        "their line numbers, and skipped. The sorted output is the same for every\n"
        "--threads and --parallelism.\n");
    fputs(jobs_topics_help, stdout);
    fputs(jobs_trace_help, stdout);
}

static int parse_window(const char *cmd, const char *spec, sl_window_conf *wc)
{
    char buf[128];
    if (strlen(spec) >= sizeof(buf)) goto bad;
    strcpy(buf, spec);
    char *colon = strchr(buf, ':');
    if (!colon) goto bad;
    *colon = 0;
    char *a = colon + 1, *b = strchr(a, ':');
    if (b) *b++ = 0;
    int64_t x, y;
    if (strcmp(buf, "tumbling") == 0 && !b) {
        if (jobs_duration(a, 0, &x)) goto bad;
        *wc = sl_window_tumbling(x, 0);
    } else if (strcmp(buf, "sliding") == 0 && b) {
        if (jobs_duration(a, 0, &x) || jobs_duration(b, 0, &y)) goto bad;
        *wc = sl_window_sliding(x, y);
    } else if (strcmp(buf, "session") == 0 && !b) {
        if (jobs_duration(a, 0, &x)) goto bad;
        *wc = sl_window_session(x);
    } else {
        goto bad;
    }
    return 0;
bad:
    fprintf(stderr,
            "sluice %s: --window needs tumbling:SIZE, sliding:SIZE:SLIDE or session:GAP "
            "(durations like 250ms, 10s, 1m), not '%s'\n",
            cmd, spec);
    return 2;
}

/* What the graph is built from (the job's options, parsed). */
typedef struct wa_graph {
    const char *cmd;
    const jobs_topics *tp;
    const char *topic, *out_topic, *input;
    const sl_watermark_conf *wm;
    const sl_window_conf *wc;
    fmt_ud *fu;
    sl_write_conf *oc, *lo;
    jobs_deadletters *dl;
    int parallelism;
    int exact;   /* --agg distinct-exact */
    int combine; /* --combine: sl_stream_window_combined */
} wa_graph;

/* The job's graph in p; with a task (--group), the graph of one input
 * partition. Errors are recorded in p (sl_pipeline_run reports them). */
static int wa_build(sl_pipeline *p, const sl_kafka_task *task, void *ud)
{
    const wa_graph *g = ud;
    const char *why = NULL;
    /* Everything at parallelism 1 except the window: one reader (line numbers,
     * one sequence of watermarks) and sinks that see whole batches in order. */
    sl_stream *src;
    if (g->topic) {
        /* Every partition is a split with its own watermark. */
        src = jobs_topic_source(p, g->tp, task, "csv", g->topic, parse_csv, NULL, MAX_KEY + 8, 0,
                                g->wm);
    } else {
        sl_lines_conf lc = {.path = g->input, .parse = parse_csv, .max_len = MAX_KEY + 8};
        src = sl_pipeline_lines(p, "csv", &lc, 0, g->wm);
    }
    src = sl_stream_parallelism(src, 1);
    sl_stream *bad = sl_stream_dead_letters(src);
    sl_stream *w, *w1;
    if (g->combine) { /* a combiner chained to the reader, then the shuffle */
        w = sl_stream_window_combined(src, "window", rec_key, NULL, g->wc);
        w = w1 = sl_stream_parallelism(w, g->parallelism ? g->parallelism : 1);
    } else if (g->exact) {
        sl_stream *k = sl_stream_parallelism(sl_stream_key_by(src, "key", rec_key, NULL), 1);
        w = jobs_distinct_exact(k, g->wc, g->parallelism ? g->parallelism : 1, &w1, &why);
        if (!w && why) return sl_pipeline_error(p, SL_EINVAL, "--agg distinct-exact %s", why);
    } else {
        sl_stream *k = sl_stream_parallelism(sl_stream_key_by(src, "key", rec_key, NULL), 1);
        w = sl_stream_window(k, "window", g->wc);
        w = w1 = sl_stream_parallelism(w, g->parallelism ? g->parallelism : 1);
    }
    sl_stream *diverted[2] = {sl_stream_window_late(w1), sl_stream_window_unassigned(w1)};
    sl_stream *late = sl_stream_apply_n(diverted, 2, "diverted", &divert_op, NULL, 0);
    late = sl_stream_parallelism(late, 1);
    if (g->out_topic)
        jobs_topic_sink(p, w, g->tp, task, "out", g->out_topic, result_key, fmt_value, g->fu);
    else
        sl_stream_sink(w, "out", &sl_sink_write, g->oc);
    if (g->lo->path)
        sl_stream_sink(late, "late-out", &sl_sink_write, g->lo);
    else
        sl_stream_sink(late, "late-out", &jobs_stderr_sink, g->lo);
    sl_stream_sink(bad, "dead-letters", &jobs_deadletter_sink, g->dl);
    return 0;
}

int job_window_agg(int argc, char **argv, const jobs_runner *run)
{
    const char *cmd = "run window-agg";
    enum {
        O_INPUT = JOBS_OPT_FIRST_FREE,
        O_TOPIC,
        O_OUT,
        O_OUT_TOPIC,
        O_LATE_OUT,
        O_AGG,
        O_WINDOW,
        O_DELAY,
        O_LATENESS,
        O_COMBINE
    };
    static const struct option opts[] = {{"input", required_argument, NULL, O_INPUT},
                                         {"topic", required_argument, NULL, O_TOPIC},
                                         {"out", required_argument, NULL, O_OUT},
                                         {"out-topic", required_argument, NULL, O_OUT_TOPIC},
                                         {"late-out", required_argument, NULL, O_LATE_OUT},
                                         {"agg", required_argument, NULL, O_AGG},
                                         {"window", required_argument, NULL, O_WINDOW},
                                         {"delay", required_argument, NULL, O_DELAY},
                                         {"lateness", required_argument, NULL, O_LATENESS},
                                         {"combine", no_argument, NULL, O_COMBINE},
                                         JOBS_TOPIC_OPTIONS,
                                         JOBS_COMMON_OPTIONS,
                                         {0}};
    const char *input = NULL, *out = NULL, *late_out = NULL, *agg_name = "count";
    const char *topic = NULL, *out_topic = NULL;
    jobs_topics tp = {.job = "window-agg"};
    sl_window_conf wc = sl_window_tumbling(1000, 0);
    int64_t delay = 0, lateness = 0;
    jobs_common common = {0};
    int opt, ret = 0, combine = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":hX:", opts)) != -1) {
        if ((ret = jobs_topics_opt(cmd, opt, optarg, &tp)) != 1) {
            if (ret) return ret;
            continue;
        }
        ret = 0;
        switch (opt) {
        case O_INPUT: input = optarg; break;
        case O_TOPIC: topic = optarg; break;
        case O_OUT: out = optarg; break;
        case O_OUT_TOPIC: out_topic = optarg; break;
        case O_LATE_OUT: late_out = optarg; break;
        case O_AGG: agg_name = optarg; break;
        case O_WINDOW: ret = parse_window(cmd, optarg, &wc); break;
        case O_COMBINE: combine = 1; break;
        case O_DELAY:
        case O_LATENESS:
            if (jobs_duration(optarg, 1, opt == O_DELAY ? &delay : &lateness)) {
                fprintf(stderr, "sluice %s: %s needs a duration (250ms, 10s, 1m or ms), not '%s'\n",
                        cmd, opt == O_DELAY ? "--delay" : "--lateness", optarg);
                ret = 2;
            }
            break;
        default: ret = jobs_opt(cmd, opt, argv, &common); break;
        }
        if (ret == JOBS_HELP) {
            wa_help();
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    const int exact = strcmp(agg_name, "distinct-exact") == 0;
    const sl_aggregate *agg = exact ? &sl_agg_count : sl_agg_by_name(agg_name);
    if (!agg) {
        fprintf(stderr,
                "sluice %s: --agg must be count, sum, min, max, avg, distinct or distinct-exact, "
                "not '%s'\n",
                cmd, agg_name);
        return 2;
    }
    if (exact && (wc.kind == SL_WINDOW_SESSION || lateness > 0)) {
        fprintf(stderr, "sluice %s: --agg distinct-exact %s\n", cmd,
                wc.kind == SL_WINDOW_SESSION
                    ? "supports tumbling and sliding windows, not session windows"
                    : "needs --lateness 0 (a late value would be counted twice)");
        return 2;
    }
    if (combine && (exact || wc.kind == SL_WINDOW_SESSION)) {
        fprintf(stderr, "sluice %s: --combine works with tumbling and sliding windows and %s\n",
                cmd, exact ? "not with --agg distinct-exact" : "not session windows");
        return 2;
    }
    if (input && topic) {
        fprintf(stderr, "sluice %s: give --input or --topic, not both\n", cmd);
        return 2;
    }
    if (out && out_topic) {
        fprintf(stderr, "sluice %s: give --out or --out-topic, not both\n", cmd);
        return 2;
    }
    if (jobs_topics_check(cmd, &tp, topic, out_topic)) return 2;
    if (input && strcmp(input, "-") != 0 && access(input, R_OK) != 0) {
        fprintf(stderr, "sluice %s: cannot read '%s': %s\n", cmd, input, strerror(errno));
        return 1;
    }
    sl_agg_value val = {.offset = 0};
    wc.lateness = lateness;
    wc.agg = agg;
    wc.agg_ud = &val;
    /* Punctuated: the watermark follows the record that moves it, so where
     * watermarks fall is fixed by the input; rounded to the windows' points
     * (wa_watermark). */
    wa_wm wmr;
    wa_wm_init(&wmr, &wc, delay);
    sl_watermark_conf wm = {.delay = delay, .punctuated = 1, .fn = wa_watermark, .ud = &wmr};
    fmt_ud fu = {agg};
    sl_write_conf oc = {.path = out, .format = fmt_result, .ud = &fu};
    sl_write_conf lo = {.path = late_out, .format = fmt_line};
    jobs_deadletters dl = {.cmd = cmd};
    atomic_init(&dl.count, 0);

    wa_graph g = {.cmd = cmd,
                  .tp = &tp,
                  .topic = topic,
                  .out_topic = out_topic,
                  .input = input,
                  .wm = &wm,
                  .wc = &wc,
                  .fu = &fu,
                  .oc = &oc,
                  .lo = &lo,
                  .dl = &dl,
                  .parallelism = jobs_parallelism(&common),
                  .exact = exact,
                  .combine = combine};
    if (tp.group) {
        if (!out_topic || late_out) {
            fprintf(stderr,
                    "sluice %s: --group writes its results to --out-topic (committed with the "
                    "state in one Kafka transaction); %s\n",
                    cmd, late_out ? "--late-out is not supported with it" : "give --out-topic");
            return 2;
        }
        int rc = jobs_group_run(cmd, &tp, topic, &common, wa_build, NULL, &g);
        uint64_t nbad = atomic_load(&dl.count);
        if (nbad > 10)
            fprintf(stderr, "sluice %s: %" PRIu64 " malformed lines skipped in all\n", cmd, nbad);
        return rc;
    }
    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    if (common.threads) sl_pipeline_set_threads(p, common.threads);
    wa_build(p, NULL, &g);
    int rc = jobs_run(run, p, cmd, &common);
    sl_pipeline_free(p);
    uint64_t nbad = atomic_load(&dl.count);
    if (nbad > 10)
        fprintf(stderr, "sluice %s: %" PRIu64 " malformed lines skipped in all\n", cmd, nbad);
    return rc;
}
