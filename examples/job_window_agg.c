/*
 * examples/job_window_agg.c - the bundled job `window-agg`, and the pieces
 * the event-time jobs share (line source with watermarks and dead letters,
 * dead-letter sink).
 *
 *   lines "event_time_ms,key,value" (--input FILE, stdin, or the values of a
 *   broker topic with --topic NAME [--dir DIR])
 *     -> source "csv" (parallelism 1): parses each line; malformed lines go to
 *        its port 1 (dead letters: counted, the first ten reported on stderr
 *        with their line numbers); punctuated watermarks: after each record
 *        the watermark becomes max_event_time_seen - delay - 1
 *     -> key_by "key" -> window "window" (parallelism P): --window, --agg,
 *        --lateness; results "window_start,window_end,key,aggregate" to --out
 *        (default stdout); late records "late,event_time_ms,key,value" to
 *        --late-out (default stderr)
 *
 * A record is judged against the watermark before it (the source emits the
 * record, then the watermark), and every window instance sees the same
 * sequence of records and watermarks for its keys, so the sorted output is
 * the same for every --threads and --parallelism.
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

/* --- the line source ------------------------------------------------------------------ */

typedef struct lsrc {
    FILE *f;
    int own;
    /* --topic: one reader per partition, each read up to end[i], merged by
     * record timestamp through one peeked record per partition */
    sl_broker *b;
    sl_log_reader **r;
    int64_t *end;
    int n_parts;
    struct peek {
        int has;
        int64_t ts;
        char *buf;
        size_t len, cap;
    } * peek;
    char *line;
    size_t cap;
    uint64_t lineno;
    uint8_t *rec;
    sl_wm_gen *g;
} lsrc;

static void lsrc_close(void *self);

/* Open a reader on every partition of the topic, each to read up to the
 * offset that was its end now. */
static int topic_open(sl_ctx *ctx, lsrc *s, const sl_jobs_lines_conf *c)
{
    sl_topic_info *info = NULL;
    int rc = sl_broker_open(&s->b, c->dir, 0);
    if (!rc) rc = sl_topic_describe(s->b, c->topic, &info);
    if (rc) return sl_ctx_fail(ctx, rc, "%s", s->b ? sl_broker_errmsg(s->b) : "out of memory");
    s->r = calloc((size_t)info->partition_count, sizeof(*s->r));
    s->end = calloc((size_t)info->partition_count, sizeof(*s->end));
    s->peek = calloc((size_t)info->partition_count, sizeof(*s->peek));
    if (!s->r || !s->end || !s->peek) {
        sl_topic_info_free(info);
        return SL_ENOMEM;
    }
    for (int32_t p = 0; p < info->partition_count; p++) {
        s->end[p] = info->partitions[p].next_offset;
        rc = sl_log_reader_open(&s->r[p], s->b, c->topic, p, SL_OFFSET_BEGINNING);
        if (rc) {
            sl_topic_info_free(info);
            return sl_ctx_fail(ctx, rc, "%s", sl_broker_errmsg(s->b));
        }
        s->n_parts++;
    }
    sl_topic_info_free(info);
    return 0;
}

/* Make sure partition p has its next record peeked (copied), unless it is
 * done. 0, or < 0 on error. */
static int peek_part(sl_ctx *ctx, lsrc *s, int p)
{
    struct peek *k = &s->peek[p];
    if (k->has || !s->r[p]) return 0;
    sl_message m;
    int rc = sl_log_reader_position(s->r[p]) >= s->end[p] ? SL_EAGAIN
                                                          : sl_log_reader_next(s->r[p], &m, 0);
    if (rc == 0 && m.offset < s->end[p]) {
        size_t len = m.value ? m.value_len : 0;
        if (len > k->cap) {
            char *nb = realloc(k->buf, len);
            if (!nb) return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory for a record");
            k->buf = nb;
            k->cap = len;
        }
        if (len) memcpy(k->buf, m.value, len);
        k->len = len;
        k->ts = m.timestamp;
        k->has = 1;
        return 0;
    }
    if (rc != 0 && rc != SL_EAGAIN)
        return sl_ctx_fail(ctx, rc, "%s", sl_log_reader_errmsg(s->r[p]));
    sl_log_reader_close(s->r[p]); /* read to its end */
    s->r[p] = NULL;
    return 0;
}

/* The next line: from the file, or the value of the topic record with the
 * smallest timestamp among the partitions' next ones (ties: the lowest
 * partition), so the merged order is fixed by the log. 1 with the line set,
 * 0 at the end, < 0 on error. */
static int next_line(sl_ctx *ctx, lsrc *s, const char **line, size_t *len)
{
    if (!s->r) {
        ssize_t n = getline(&s->line, &s->cap, s->f);
        if (n < 0) {
            if (ferror(s->f)) return sl_ctx_fail(ctx, SL_EIO, "read error: %s", strerror(errno));
            return 0;
        }
        *line = s->line;
        *len = (size_t)n;
        return 1;
    }
    int best = -1;
    for (int p = 0; p < s->n_parts; p++) {
        int rc = peek_part(ctx, s, p);
        if (rc) return rc;
        if (s->peek[p].has && (best < 0 || s->peek[p].ts < s->peek[best].ts)) best = p;
    }
    if (best < 0) return 0;
    s->peek[best].has = 0;
    *line = s->peek[best].buf ? s->peek[best].buf : "";
    *len = s->peek[best].len;
    return 1;
}

static int lsrc_open(sl_ctx *ctx, void **self)
{
    const sl_jobs_lines_conf *c = sl_ctx_conf(ctx);
    lsrc *s = calloc(1, sizeof(*s));
    if (!s) return SL_ENOMEM;
    s->rec = malloc(c->max_len ? c->max_len : 1);
    s->g = sl_wm_gen_new(&c->wm, 1);
    if (!s->rec || !s->g) goto oom;
    if (sl_ctx_instance(ctx) > 0) { /* one reader: line numbers and order */
        *self = s;
        return 0;
    }
    if (c->topic) {
        int rc = topic_open(ctx, s, c);
        if (rc) {
            lsrc_close(s);
            return rc;
        }
        *self = s;
        return 0;
    }
    if (!c->path || strcmp(c->path, "-") == 0) {
        s->f = stdin;
    } else {
        s->f = fopen(c->path, "r");
        if (!s->f) {
            int e = errno;
            sl_wm_gen_free(s->g);
            free(s->rec);
            free(s);
            return sl_ctx_fail(ctx, e == ENOENT ? SL_ENOENT : SL_EIO, "cannot open '%s': %s",
                               c->path, strerror(e));
        }
        s->own = 1;
    }
    *self = s;
    return 0;
oom:
    sl_wm_gen_free(s->g);
    free(s->rec);
    free(s);
    return SL_ENOMEM;
}

static void lsrc_close(void *self)
{
    lsrc *s = self;
    if (!s) return;
    if (s->own) fclose(s->f);
    for (int i = 0; s->r && i < s->n_parts; i++) {
        sl_log_reader_close(s->r[i]);
        free(s->peek[i].buf);
    }
    free(s->peek);
    free(s->r);
    free(s->end);
    sl_broker_close(s->b);
    free(s->line);
    free(s->rec);
    sl_wm_gen_free(s->g);
    free(s);
}

static int dead_letter(sl_ctx *ctx, lsrc *s, const char *line, size_t len, const char *reason)
{
    char head[96];
    int n = snprintf(head, sizeof(head), "line %" PRIu64 ": %s: ", s->lineno, reason);
    size_t show = len > 200 ? 200 : len;
    uint8_t *o = sl_emit_port(ctx, 1, 0, 0, (uint32_t)(n + show));
    if (!o) return sl_ctx_error(ctx);
    memcpy(o, head, (size_t)n);
    memcpy(o + n, line, show);
    return 0;
}

static int lsrc_poll(sl_ctx *ctx, void *self)
{
    lsrc *s = self;
    const sl_jobs_lines_conf *c = sl_ctx_conf(ctx);
    if (!s->f && !s->r) return SL_POLL_END;
    for (int k = 0; k < 256; k++) {
        const char *line = NULL;
        size_t len = 0;
        int got = next_line(ctx, s, &line, &len);
        if (got < 0) return got;
        if (got == 0) return SL_POLL_END;
        s->lineno++;
        if (len && line[len - 1] == '\n') len--;
        if (len && line[len - 1] == '\r') len--;
        int64_t ts = 0;
        const char *reason = "malformed";
        int r = c->parse(line, len, s->rec, c->max_len, &ts, &reason, c->ud);
        if (r < 0) {
            int rc = dead_letter(ctx, s, line, len, reason);
            if (rc) return rc;
            continue;
        }
        uint32_t rl = c->width ? c->width : (uint32_t)r;
        void *o = sl_emit(ctx, ts, 0, rl);
        if (!o) return sl_ctx_error(ctx);
        memcpy(o, s->rec, rl);
        int rc = sl_wm_gen_record(ctx, s->g, 0, s->rec, rl, ts);
        if (rc) return rc;
    }
    int rc = sl_wm_gen_polled(ctx, s->g, 0, 1);
    return rc ? rc : SL_POLL_MORE;
}

const sl_source sl_jobs_lines_source = {.version = SL_SOURCE_VERSION,
                                        .kind = "lines",
                                        .open = lsrc_open,
                                        .poll = lsrc_poll,
                                        .close = lsrc_close};

/* --- the dead-letter sink --------------------------------------------------------------- */

static int dl_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    sl_jobs_deadletters *d = sl_ctx_conf(ctx);
    for (uint32_t i = 0; i < in->count; i++) {
        uint64_t k = atomic_fetch_add(&d->count, 1);
        if (k < 10) {
            sl_bytes b = sl_batch_bytes(in, i);
            fprintf(stderr, "sluice %s: %.*s\n", d->cmd, (int)b.len, (const char *)b.ptr);
        }
    }
    return 0;
}

const sl_operator sl_jobs_deadletter_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "dead-letters", .process = dl_process};

static int dlf_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    sl_jobs_deadletters_fmt *f = sl_ctx_conf(ctx);
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

const sl_operator sl_jobs_deadletter_fmt_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "dead-letters", .process = dlf_process};

/* --- window-agg ------------------------------------------------------------------------- */

#define MAX_KEY 4096

static int parse_i64(const char *p, size_t len, int64_t *out)
{
    if (len == 0 || len > 20) return -1;
    char buf[24];
    memcpy(buf, p, len);
    buf[len] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end || errno || buf[0] == ' ' || buf[0] == '+' || buf[0] == '\t') return -1;
    *out = v;
    return 0;
}

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
    if (memchr(val, ',', vlen)) {
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
    int64_t t, v;
    if (parse_i64(line, (size_t)(c1 - line), &t)) {
        *reason = "bad event_time_ms";
        return -1;
    }
    if (parse_i64(val, vlen, &v)) {
        *reason = "bad value";
        return -1;
    }
    memcpy(out, &v, 8);
    memcpy((uint8_t *)out + 8, rest, klen);
    *ts = t;
    return (int)(klen + 8);
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
    sl_window_result r = sl_window_out(b, f->agg->result_size);
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

static int fmt_late(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    int64_t v;
    memcpy(&v, rec, 8);
    return sl_buf_printf(out, "late,%" PRId64 ",%.*s,%" PRId64 "\n", ts, (int)(len - 8),
                         (const char *)rec + 8, v);
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

static const sl_operator stderr_sink = {
    .version = SL_OPERATOR_VERSION, .kind = "write", .process = fdw_process};

static void wa_help(void)
{
    printf(
        "usage: sluice run window-agg [--input FILE | --topic NAME [--dir DIR]] [--window SPEC]\n"
        "           [--agg AGG] [--delay D] [--lateness L] [--out FILE] [--late-out FILE]\n"
        "           [--threads N] [--parallelism P] [--explain]\n"
        "Aggregates CSV lines event_time_ms,key,value (FILE, standard input, or the values\n"
        "of a broker topic read to its current end) per key and event-time window, and\n"
        "writes window_start,window_end,key,aggregate lines.\n"
        "  --window tumbling:SIZE | sliding:SIZE:SLIDE | session:GAP   (default tumbling:1s)\n"
        "           durations: 250ms, 10s, 1m, 1h or plain milliseconds\n"
        "  --agg count|sum|min|max|avg   aggregate of the values (default count;\n"
        "           avg is printed with three decimals)\n"
        "  --delay D      out-of-orderness: after each record the watermark becomes\n"
        "                 max_event_time_seen - D - 1 (default 0)\n"
        "  --lateness L   allowed lateness (default 0): late data within it updates a\n"
        "                 window, which is written again\n"
        "  --out FILE     results (default standard output)\n"
        "  --late-out FILE  records later than the lateness, as late,event_time_ms,key,value\n"
        "                 (default standard error)\n"
        "Malformed lines are counted, the first ten reported on standard error with\n"
        "their line numbers, and skipped. The sorted output is the same for every\n"
        "--threads and --parallelism.\n");
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

int job_window_agg(int argc, char **argv, const jobs_runner *run)
{
    const char *cmd = "run window-agg";
    enum {
        O_INPUT = JOBS_OPT_FIRST_FREE,
        O_TOPIC,
        O_DIR,
        O_OUT,
        O_LATE_OUT,
        O_AGG,
        O_WINDOW,
        O_DELAY,
        O_LATENESS
    };
    static const struct option opts[] = {{"input", required_argument, NULL, O_INPUT},
                                         {"topic", required_argument, NULL, O_TOPIC},
                                         {"dir", required_argument, NULL, O_DIR},
                                         {"out", required_argument, NULL, O_OUT},
                                         {"late-out", required_argument, NULL, O_LATE_OUT},
                                         {"agg", required_argument, NULL, O_AGG},
                                         {"window", required_argument, NULL, O_WINDOW},
                                         {"delay", required_argument, NULL, O_DELAY},
                                         {"lateness", required_argument, NULL, O_LATENESS},
                                         JOBS_COMMON_OPTIONS,
                                         {0}};
    const char *input = NULL, *out = NULL, *late_out = NULL, *agg_name = "count";
    const char *topic = NULL, *dir = NULL;
    sl_window_conf wc = sl_window_tumbling(1000, 0);
    int64_t delay = 0, lateness = 0;
    jobs_common common = {0};
    int opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (opt) {
        case O_INPUT: input = optarg; break;
        case O_TOPIC: topic = optarg; break;
        case O_DIR: dir = optarg; break;
        case O_OUT: out = optarg; break;
        case O_LATE_OUT: late_out = optarg; break;
        case O_AGG: agg_name = optarg; break;
        case O_WINDOW: ret = parse_window(cmd, optarg, &wc); break;
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
    const sl_aggregate *agg = sl_agg_by_name(agg_name);
    if (!agg) {
        fprintf(stderr, "sluice %s: --agg must be count, sum, min, max or avg, not '%s'\n", cmd,
                agg_name);
        return 2;
    }
    if (input && topic) {
        fprintf(stderr, "sluice %s: give --input or --topic, not both\n", cmd);
        return 2;
    }
    if (input && strcmp(input, "-") != 0 && access(input, R_OK) != 0) {
        fprintf(stderr, "sluice %s: cannot read '%s': %s\n", cmd, input, strerror(errno));
        return 1;
    }
    sl_agg_value val = {.offset = 0};
    wc.lateness = lateness;
    wc.agg = agg;
    wc.agg_ud = &val;
    sl_jobs_lines_conf lc = {.path = input,
                             .topic = topic,
                             .dir = jobs_broker_dir(dir),
                             .parse = parse_csv,
                             .width = 0,
                             .max_len = MAX_KEY + 8,
                             .wm = {.delay = delay, .punctuated = 1}};
    fmt_ud fu = {agg};
    sl_write_conf oc = {.path = out, .format = fmt_result, .ud = &fu};
    sl_write_conf lo = {.path = late_out, .format = fmt_late};
    sl_jobs_deadletters dl = {.cmd = cmd};
    atomic_init(&dl.count, 0);

    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    /* Everything at parallelism 1 except the window: one reader (line numbers,
     * one sequence of watermarks) and sinks that see whole batches in order. */
    if (common.threads) sl_pipeline_set_threads(p, common.threads);
    sl_stream *src = sl_pipeline_source(p, "csv", &sl_jobs_lines_source, &lc, 0);
    src = sl_stream_parallelism(src, 1);
    sl_stream *bad = sl_stream_side(src, 1, 0);
    sl_stream *k = sl_stream_parallelism(sl_stream_key_by(src, "key", rec_key, NULL), 1);
    sl_stream *w = sl_stream_window(k, "window", &wc);
    w = sl_stream_parallelism(w, common.parallelism ? common.parallelism : 1);
    sl_stream *late = sl_stream_window_late(w);
    sl_stream_sink(w, "out", &sl_sink_write, &oc);
    if (late_out)
        sl_stream_sink(late, "late-out", &sl_sink_write, &lo);
    else
        sl_stream_sink(late, "late-out", &stderr_sink, &lo);
    sl_stream_sink(bad, "dead-letters", &sl_jobs_deadletter_sink, &dl);
    int rc = jobs_run(run, p, cmd, &common);
    sl_pipeline_free(p);
    uint64_t nbad = atomic_load(&dl.count);
    if (nbad > 10)
        fprintf(stderr, "sluice %s: %" PRIu64 " malformed lines skipped in all\n", cmd, nbad);
    return rc;
}
