/*
 * test_runtime_trace.c - trace contexts (the batch's optional trace column,
 * sluice/batch.h) travel with their records through the runtime.
 *
 * What it proves, table-driven over source parallelism 1..3, downstream
 * parallelism 1..3, fixed- and variable-width records, with one credit per
 * channel and tiny batches (a punctuated watermark cuts the source's batch
 * after almost every record), event times starting at 0:
 *  - a source gives some records a context (sl_ctx_set_trace, or
 *    sl_batch_set_trace on its output batch) and others none;
 *  - through map into another width, filter (in place), a whole-batch
 *    operator that copies with sl_emit_from, flat_map (two
 *    outputs per input keep its context, a third emitted after clearing it
 *    has none), key_by and the hash shuffle into another parallelism, a map
 *    in place, rebalance, a second consumer of one stream (batch clones) and
 *    a broadcast, every record that reaches a sink carries exactly the
 *    context its source record had (trace id, span id, flags, and the
 *    tracestate's bytes, which most have), and a record without one
 *    carries none;
 *  - with no context anywhere, no batch a sink sees has a trace column (the
 *    column costs nothing when tracing is off);
 *  - the lines source with a trace column (1..3 splits): a valid
 *    traceparent, also with blanks around it, becomes the line's context;
 *    an empty or missing column gives none; malformed ones (uppercase,
 *    version ff) give none and are counted; a negative column is refused;
 *  - its tracestate column ('|'-delimited, so a state of several members
 *    fits): a valid state, also with blanks around it, goes with the
 *    context; an empty or missing one gives none; a malformed one is
 *    dropped and counted while the context stays; a state beside a
 *    malformed traceparent is not counted again; a state column without a
 *    trace column is refused.
 *
 * No assertion on time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <cmocka.h>

#include "sluice/sluice.h"

#define WAIT_MS 300000 /* generous: only a hang exceeds it */
#define NREC    3000

/* Record seq has a context unless seq % 3 == 0 (or none at all when the
 * case says so); it is derived from seq so that a sink can check it. */
static int has_ctx(uint64_t seq, int traced)
{
    return traced && seq % 3 != 0;
}

/* The context of seq, with a tracestate written into st (most seqs; some
 * have none). */
static void ctx_of(uint64_t seq, sl_trace_ctx *tc, char st[64])
{
    memset(tc, 0, sizeof(*tc));
    if (seq % 4 != 1) {
        tc->state = st;
        tc->state_len = (uint16_t)snprintf(st, 64, "sl=%llu,t%u@v=x y", (unsigned long long)seq,
                                           (unsigned)(seq % 7));
    }
    for (int k = 0; k < 8; k++) {
        tc->trace_id[k] = (uint8_t)(seq >> (8 * k));
        tc->trace_id[8 + k] = (uint8_t)(0xA0 + k);
        tc->span_id[k] = (uint8_t)((seq * 7 + 1) >> (8 * k)) ^ 0x5A;
    }
    tc->flags = (uint8_t)(seq & 1);
}

/* --- the source: splits of seq = split, split + S, ... ------------------------ */

typedef struct src_conf {
    int traced;
} src_conf;

typedef struct reader {
    uint64_t next, step;
} reader;

typedef struct rec16 {
    uint64_t seq;
    uint64_t val;
} rec16;

static int src_open(sl_ctx *ctx, const sl_split *sp, void **self)
{
    reader *r = calloc(1, sizeof(*r));
    if (!r) return SL_ENOMEM;
    r->next = (uint64_t)sp->index;
    r->step = (uint64_t)sp->count;
    *self = r;
    return 0;
}

static int src_poll(sl_ctx *ctx, void *self, uint32_t max)
{
    reader *r = self;
    const src_conf *c = sl_ctx_conf(ctx);
    for (uint32_t n = 0; n < max && n < 3; n++) {
        if (r->next >= NREC) return SL_POLL_END;
        uint64_t seq = r->next;
        r->next += r->step;
        rec16 rec = {.seq = seq, .val = seq * 10};
        sl_trace_ctx tc;
        char st[64];
        ctx_of(seq, &tc, st);
        int64_t ts = (int64_t)(seq / 2); /* 0 first: a valid time */
        if (has_ctx(seq, c->traced) && seq % 2) {
            /* the emit path: the record takes the context along */
            sl_ctx_set_trace(ctx, &tc);
            int rc = sl_emit_copy(ctx, ts, 0, &rec, sizeof(rec));
            sl_ctx_set_trace(ctx, NULL);
            if (rc) return rc;
        } else {
            int rc = sl_emit_copy(ctx, ts, 0, &rec, sizeof(rec));
            if (rc) return rc;
            if (has_ctx(seq, c->traced)) { /* the column path, on the batch itself */
                sl_batch *b = sl_out_batch(ctx, 0);
                if (!b || b->count == 0) return SL_ESTATE;
                rc = sl_batch_set_trace(b, b->count - 1, &tc);
                if (rc) return rc;
            }
        }
    }
    return SL_POLL_MORE;
}

static void src_close(void *self)
{
    free(self);
}

static int src_enumerate(sl_split_enum *e, void *conf)
{
    int n = sl_split_parallelism(e) + 1; /* more splits than instances */
    for (int k = 0; k < n; k++) {
        int rc = sl_split_add(e, &k, sizeof(k));
        if (rc) return rc;
    }
    return 0;
}

static const sl_source test_src = {.version = SL_SOURCE_VERSION,
                                   .kind = "trace-test",
                                   .enumerate = src_enumerate,
                                   .open = src_open,
                                   .poll = src_poll,
                                   .close = src_close};

/* --- operators ------------------------------------------------------------------ */

typedef struct rec24 {
    uint64_t seq;
    uint64_t val;
    uint64_t k; /* which output of the flat_map */
} rec24;

/* map 16 -> 24 bytes: another width, so records are emitted anew */
static int widen(const void *in, uint32_t len, void *out, int64_t *ts, void *ud)
{
    const rec16 *a = in;
    rec24 b = {.seq = a->seq, .val = a->val, .k = 0};
    memcpy(out, &b, sizeof(b));
    return 0;
}

static int drop_fifths(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    rec24 r;
    memcpy(&r, rec, sizeof(r));
    return r.seq % 5 != 0;
}

/* A whole-batch operator that copies each record with sl_emit_from (the
 * copy carries its input record's context). */
static int relay_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        void *out = sl_emit_from(ctx, in, i, in->ts[i], in->hash[i], r.len);
        if (!out) return sl_ctx_error(ctx);
        memcpy(out, r.ptr, r.len);
    }
    return 0;
}

static const sl_operator relay_op = {
    .version = SL_OPERATOR_VERSION, .kind = "relay", .process = relay_process};

/* Two outputs that keep the input's context, then one without. The output
 * width is the case's: 24 (fixed) or 0 (variable: the record plus a tail). */
static int fan_out(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    rec24 r;
    memcpy(&r, rec, sizeof(r));
    uint32_t w = sl_ctx_out_width(ctx, 0);
    for (uint64_t k = 0; k < 3; k++) {
        if (k == 2) sl_ctx_set_trace(ctx, NULL); /* no parent: no context */
        r.k = k;
        uint32_t l = w ? w : (uint32_t)sizeof(r) + (uint32_t)(r.seq % 7);
        uint8_t *out = sl_emit(ctx, ts, 0, l);
        if (!out) return sl_ctx_error(ctx);
        memset(out, 0xEE, l);
        memcpy(out, &r, sizeof(r));
    }
    return 0;
}

static sl_bytes seq_key(const void *rec, uint32_t len, void *ud)
{
    sl_bytes b = {rec, 8};
    return b;
}

/* map in place (same width): the column stays where it is */
static int bump(const void *in, uint32_t len, void *out, int64_t *ts, void *ud)
{
    rec24 r;
    memcpy(&r, in, sizeof(r));
    r.val += 1;
    memcpy(out, &r, sizeof(r));
    return 0;
}

static int keep_all(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return 1;
}

/* --- the checking sink ------------------------------------------------------------ */

typedef struct seen {
    pthread_mutex_t lock;
    int traced;              /* the case gives contexts */
    uint32_t count[NREC][3]; /* records seen, by seq and k */
    int bad;                 /* mismatches; the first one is in why */
    char why[200];
    int traced_batches; /* batches that had a trace column */
} seen;

static int check_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    seen *s = sl_ctx_conf(ctx);
    pthread_mutex_lock(&s->lock);
    if (in->trace) s->traced_batches++;
    for (uint32_t i = 0; i < in->count; i++) {
        rec24 r;
        memcpy(&r, sl_batch_at(in, i), sizeof(r));
        if (r.seq >= NREC || r.k > 2) {
            if (!s->bad++)
                snprintf(s->why, sizeof(s->why), "bad record seq %llu k %llu",
                         (unsigned long long)r.seq, (unsigned long long)r.k);
            continue;
        }
        s->count[r.seq][r.k]++;
        const sl_trace_ctx *got = sl_batch_trace(in, i);
        int want = r.k < 2 && has_ctx(r.seq, s->traced);
        sl_trace_ctx tc;
        char st[64];
        ctx_of(r.seq, &tc, st);
        int ok = want ? got && memcmp(got, &tc, offsetof(sl_trace_ctx, flags) + 1) == 0 &&
                            got->state_len == tc.state_len &&
                            (!tc.state_len || memcmp(got->state, tc.state, tc.state_len) == 0)
                      : got == NULL;
        if (!ok && !s->bad++)
            snprintf(s->why, sizeof(s->why), "seq %llu k %llu: context %s, expected %s",
                     (unsigned long long)r.seq, (unsigned long long)r.k,
                     got ? (want ? "another one" : "present") : "absent",
                     want ? "the source's" : "none");
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static const sl_operator check_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "check", .process = check_process};

static seen *seen_new(int traced)
{
    seen *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_mutex_init(&s->lock, NULL);
    s->traced = traced;
    return s;
}

static void seen_free(seen *s)
{
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Every seq that passes the filter came `copies` times with each k. */
static void seen_expect(const seen *s, uint32_t copies, const char *which)
{
    if (s->bad) fail_msg("%s: %d mismatches; first: %s", which, s->bad, s->why);
    for (uint64_t seq = 0; seq < NREC; seq++)
        for (int k = 0; k < 3; k++) {
            uint32_t want = seq % 5 != 0 ? copies : 0;
            if (s->count[seq][k] != want)
                fail_msg("%s: seq %llu k %d came %u times, expected %u", which,
                         (unsigned long long)seq, k, s->count[seq][k], want);
        }
}

/* --- the cases ------------------------------------------------------------------ */

typedef struct tcase {
    int src_par, par, threads;
    uint32_t width; /* of the flat_map's output: 24 or 0 */
    int traced;
} tcase;

static void run_case(const tcase *tc)
{
    sl_pipeline *p = sl_pipeline_new();
    assert_non_null(p);
    assert_int_equal(sl_pipeline_set_threads(p, tc->threads), 0);
    assert_int_equal(sl_pipeline_set_credits(p, 1), 0);
    src_conf sc = {.traced = tc->traced};
    sl_watermark_conf wm = {.delay = 0, .punctuated = 1}; /* cuts batches */
    seen *main_s = seen_new(tc->traced), *second = seen_new(tc->traced),
         *bcast = seen_new(tc->traced);

    sl_stream *s = sl_pipeline_source(p, "src", &test_src, &sc, sizeof(rec16), &wm);
    s = sl_stream_parallelism(s, tc->src_par);
    s = sl_stream_map(s, "widen", widen, NULL, sizeof(rec24));
    s = sl_stream_filter(s, "drop", drop_fifths, NULL);
    s = sl_stream_apply(s, "relay", &relay_op, NULL, sizeof(rec24));
    s = sl_stream_flat_map(s, "fan", fan_out, NULL, tc->width);
    s = sl_stream_key_by(s, "by-seq", seq_key, NULL);
    s = sl_stream_parallelism(s, tc->par);
    if (tc->width)
        s = sl_stream_map(s, "bump", bump, NULL, sizeof(rec24));
    else
        s = sl_stream_filter(s, "all", keep_all, NULL);
    s = sl_stream_parallelism(s, tc->par);
    sl_stream *r = sl_stream_rebalance(s);
    assert_non_null(r);
    /* Two consumers of r (the first gets a clone of each batch), and a
     * broadcast into two instances. */
    assert_int_equal(sl_stream_sink(r, "check", &check_sink, main_s), 0);
    assert_int_equal(sl_stream_sink(r, "check2", &check_sink, second), 0);
    sl_stream *b = sl_stream_broadcast(s);
    assert_non_null(b);
    assert_int_equal(sl_stream_sink(b, "check-bcast", &check_sink, bcast), 0);
    assert_int_equal(sl_pipeline_set_node_parallelism(p, "check-bcast", 2), 0);

    int rc = sl_pipeline_start(p);
    if (!rc) rc = sl_pipeline_wait(p, WAIT_MS);
    if (rc == SL_EAGAIN) fail_msg("pipeline did not finish: hang");
    if (rc) fail_msg("run failed: %s", sl_pipeline_errmsg(p));
    seen_expect(main_s, 1, "rebalanced sink");
    seen_expect(second, 1, "second sink");
    seen_expect(bcast, 2, "broadcast sink");
    if (tc->traced) {
        assert_true(main_s->traced_batches > 0);
    } else {
        /* nobody gave a context: no batch grew the column */
        assert_int_equal(main_s->traced_batches + second->traced_batches + bcast->traced_batches,
                         0);
    }
    assert_int_equal(sl_pipeline_trace_malformed(p), 0);
    seen_free(main_s);
    seen_free(second);
    seen_free(bcast);
    sl_pipeline_free(p);
}

static void test_table(void **state)
{
    (void)state;
    for (int sp = 1; sp <= 3; sp++)
        for (int par = 1; par <= 3; par++)
            for (int w = 0; w < 2; w++) {
                tcase tc = {.src_par = sp,
                            .par = par,
                            .threads = 1 + (sp + par) % 2,
                            .width = w ? sizeof(rec24) : 0,
                            .traced = 1};
                run_case(&tc);
            }
}

static void test_untraced_has_no_column(void **state)
{
    (void)state;
    for (int par = 1; par <= 3; par++) {
        tcase tc = {.src_par = 2, .par = par, .threads = 2, .width = sizeof(rec24), .traced = 0};
        run_case(&tc);
        tc.width = 0;
        run_case(&tc);
    }
}

/* --- the lines source's trace column ----------------------------------------------- */

#define NLINES 600
#define TP_TID "4bf92f3577b34da6a3ce929d0e0e47"

/* Line n: "n,key,TRACE" where TRACE is, by n % 6: a valid traceparent
 * (trace id ending in n % 256, flags n & 1), empty, missing (two columns),
 * uppercase, version ff, blanks around a valid one. */
static int line_kind(int n)
{
    return n % 6;
}

typedef struct lines_seen {
    pthread_mutex_t lock;
    int count[NLINES];
    int bad;
    char why[200];
} lines_seen;

static int lines_check(sl_ctx *ctx, void *self, sl_batch *in)
{
    lines_seen *s = sl_ctx_conf(ctx);
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i);
        int n = atoi(r.ptr);
        if (n < 0 || n >= NLINES) continue;
        s->count[n]++;
        const sl_trace_ctx *got = sl_batch_trace(in, i);
        int k = line_kind(n);
        int want = k == 0 || k == 5;
        int ok = want ? got != NULL : got == NULL;
        if (ok && got) {
            ok = got->trace_id[15] == (uint8_t)(n & 0xff) && got->trace_id[0] == 0x4b &&
                 got->span_id[7] == 0xb7 && got->flags == (uint8_t)(n & 1);
        }
        if (!ok && !s->bad++)
            snprintf(s->why, sizeof(s->why), "line %d (kind %d): context %s", n, k,
                     got ? "wrong or unexpected" : "missing");
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static const sl_operator lines_check_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "lines-check", .process = lines_check};

/* Run the lines source with conf *lc at source parallelism 1..max_par (as
 * many splits), two threads and one credit, into `sink` (a lines_seen in
 * its conf): every line once, no mismatch, `malformed` counted. */
static void run_lines(const sl_lines_conf *lc, const sl_operator *sink, int max_par, int malformed)
{
    for (int par = 1; par <= max_par; par++) {
        lines_seen *s = calloc(1, sizeof(*s));
        assert_non_null(s);
        pthread_mutex_init(&s->lock, NULL);
        sl_pipeline *p = sl_pipeline_new();
        sl_pipeline_set_threads(p, 2);
        sl_pipeline_set_credits(p, 1);
        sl_lines_conf c = *lc;
        c.splits = par;
        sl_stream *in = sl_pipeline_lines(p, "lines", &c, 0, NULL);
        in = sl_stream_parallelism(in, par);
        sl_stream *r = sl_stream_rebalance(in);
        assert_int_equal(sl_stream_sink(r, "check", sink, s), 0);
        int rc = sl_pipeline_start(p);
        if (!rc) rc = sl_pipeline_wait(p, WAIT_MS);
        if (rc) fail_msg("run failed: %s", sl_pipeline_errmsg(p));
        if (s->bad) fail_msg("%d mismatches; first: %s", s->bad, s->why);
        for (int n = 0; n < NLINES; n++)
            if (s->count[n] != 1) fail_msg("line %d came %d times", n, s->count[n]);
        assert_int_equal(sl_pipeline_trace_malformed(p), malformed);
        sl_pipeline_free(p);
        pthread_mutex_destroy(&s->lock);
        free(s);
    }
}

/* A new file at path (a mkstemp template, filled in), open for writing. */
static FILE *temp_file(char *path)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    return f;
}

static void test_lines_trace_column(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-test-trace-lines-XXXXXX";
    FILE *f = temp_file(path);
    int malformed = 0;
    for (int n = 0; n < NLINES; n++) {
        char tp[80];
        snprintf(tp, sizeof(tp), "00-" TP_TID "%02x-00f067aa0ba902b7-%02x", n & 0xff, n & 1);
        switch (line_kind(n)) {
        case 0: fprintf(f, "%d,k,%s\n", n, tp); break;
        case 1: fprintf(f, "%d,k,\n", n); break;
        case 2: fprintf(f, "%d,k\n", n); break;
        case 3:
            fprintf(f, "%d,k,00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\n", n);
            malformed++;
            break;
        case 4:
            tp[0] = tp[1] = 'f';
            fprintf(f, "%d,k,%s\n", n, tp);
            malformed++;
            break;
        case 5: fprintf(f, "%d,k, %s \n", n, tp); break;
        }
    }
    assert_int_equal(fclose(f), 0);
    run_lines(&(sl_lines_conf){.path = path, .ts_column = 1, .trace_column = 3}, &lines_check_sink,
              3, malformed);
    /* a negative column is refused when the node is made */
    sl_pipeline *p = sl_pipeline_new();
    sl_lines_conf bad = {.path = path, .trace_column = -1};
    assert_null(sl_pipeline_lines(p, "lines", &bad, 0, NULL));
    assert_non_null(strstr(sl_pipeline_errmsg(p), "trace_column"));
    sl_pipeline_free(p);
    unlink(path);
}

/* The lines source's tracestate column: "n|k|TRACEPARENT|TRACESTATE" with
 * '|' as the delimiter (a state of several members holds commas). By n % 6:
 * a valid pair; a valid traceparent with an empty state column; with no
 * state column; with a malformed state (dropped and counted, the context
 * kept); a malformed traceparent with a valid state (no context, counted
 * once); a state with blanks around it. */
#define TS_OK "congo=t61rcWkgMzE,rojo@sys=00f067aa0ba902b7"

static int state_check(sl_ctx *ctx, void *self, sl_batch *in)
{
    (void)self;
    lines_seen *s = sl_ctx_conf(ctx);
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < in->count; i++) {
        int n = atoi(sl_batch_bytes(in, i).ptr);
        if (n < 0 || n >= NLINES) continue;
        s->count[n]++;
        const sl_trace_ctx *got = sl_batch_trace(in, i);
        int k = n % 6;
        const char *want = k == 0 || k == 5 ? TS_OK : NULL;
        int ok = k == 4 ? got == NULL
                        : got && got->trace_id[15] == (uint8_t)(n & 0xff) &&
                              (want ? got->state_len == strlen(want) &&
                                          memcmp(got->state, want, strlen(want)) == 0
                                    : got->state_len == 0 && got->state == NULL);
        if (!ok && !s->bad++)
            snprintf(s->why, sizeof(s->why), "line %d (kind %d): context %s, state '%.*s'", n, k,
                     got ? "present" : "absent", got ? (int)got->state_len : 0,
                     got && got->state ? got->state : "");
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static const sl_operator state_check_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "state-check", .process = state_check};

static void test_lines_tracestate_column(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-test-tracestate-lines-XXXXXX";
    FILE *f = temp_file(path);
    int malformed = 0;
    for (int n = 0; n < NLINES; n++) {
        char tp[80];
        snprintf(tp, sizeof(tp), "00-" TP_TID "%02x-00f067aa0ba902b7-01", n & 0xff);
        switch (n % 6) {
        case 0: fprintf(f, "%d|k|%s|%s\n", n, tp, TS_OK); break;
        case 1: fprintf(f, "%d|k|%s|\n", n, tp); break;
        case 2: fprintf(f, "%d|k|%s\n", n, tp); break;
        case 3:
            fprintf(f, "%d|k|%s|Congo=1\n", n, tp);
            malformed++;
            break;
        case 4:
            fprintf(f, "%d|k|%.54s|%s\n", n, tp, TS_OK); /* a traceparent one short */
            malformed++;
            break;
        case 5: fprintf(f, "%d|k|%s| %s \n", n, tp, TS_OK); break;
        }
    }
    assert_int_equal(fclose(f), 0);
    run_lines(
        &(sl_lines_conf){.path = path, .delimiter = '|', .trace_column = 3, .tracestate_column = 4},
        &state_check_sink, 2, malformed);
    /* a state column needs a trace column, and is not negative */
    sl_lines_conf bad[] = {{.path = path, .tracestate_column = 4},
                           {.path = path, .trace_column = 3, .tracestate_column = -1}};
    for (size_t b = 0; b < 2; b++) {
        sl_pipeline *p = sl_pipeline_new();
        assert_null(sl_pipeline_lines(p, "lines", &bad[b], 0, NULL));
        assert_non_null(strstr(sl_pipeline_errmsg(p), "tracestate_column"));
        sl_pipeline_free(p);
    }
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_untraced_has_no_column),
        cmocka_unit_test(test_lines_trace_column),
        cmocka_unit_test(test_lines_tracestate_column),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
