/*
 * examples/job_wordcount.c - the bundled job `wordcount`.
 *
 *   lines (--input FILE or stdin)
 *     -> flat_map "split": words split on ASCII whitespace, A-Z lower-cased,
 *        every other byte kept as it is (NUL, UTF-8, invalid UTF-8)
 *     -> key_by "word" -> aggregate "count" (emitted once, at end of input)
 *     -> sink "sorted" (parallelism 1): keeps the counts, and at the end
 *        prints `word<TAB>count` lines by count descending, then word
 *        bytewise ascending.
 *
 * Canceled (Ctrl-C, SIGTERM): the counts would be those of a part of the
 * input, indistinguishable from complete ones, so nothing is printed: the
 * aggregate emits no final results on a cancel, and the sink checks too
 * (sl_ctx_end_canceled); the runner says the job was canceled.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jobs.h"

static int is_space(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static int split(sl_ctx *ctx, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const uint8_t *p = rec;
    uint32_t i = 0;
    while (i < len) {
        while (i < len && is_space(p[i])) i++;
        uint32_t start = i;
        while (i < len && !is_space(p[i])) i++;
        if (i == start) break;
        uint8_t *w = sl_emit(ctx, ts, 0, i - start);
        if (!w) return sl_ctx_error(ctx);
        for (uint32_t k = start; k < i; k++) {
            uint8_t c = p[k];
            w[k - start] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
        }
    }
    return 0;
}

static sl_bytes whole(const void *rec, uint32_t len, void *ud)
{
    sl_bytes b = {rec, len};
    return b;
}

/* --- the sorting sink ------------------------------------------------------------ */

typedef struct entry {
    int64_t count;
    uint32_t off, len;
} entry;

typedef struct sorter {
    sl_buf words;
    sl_buf entries;
} sorter;

static int sorter_open(sl_ctx *ctx, void **self)
{
    *self = calloc(1, sizeof(sorter));
    return *self ? 0 : SL_ENOMEM;
}

static void sorter_close(void *self)
{
    sorter *s = self;
    if (!s) return;
    sl_buf_free(&s->words);
    sl_buf_free(&s->entries);
    free(s);
}

static int sorter_process(sl_ctx *ctx, void *self, sl_batch *in)
{
    sorter *s = self;
    for (uint32_t i = 0; i < in->count; i++) {
        sl_bytes r = sl_batch_bytes(in, i), w = sl_agg_out_key(r);
        entry e = {.off = (uint32_t)s->words.len, .len = w.len};
        memcpy(&e.count, sl_agg_out_result(r), 8);
        if (s->words.len + w.len > UINT32_MAX)
            return sl_ctx_fail(ctx, SL_ETOOBIG, "more than 4 GiB of distinct words");
        if (sl_buf_append(&s->words, w.ptr, w.len) || sl_buf_append(&s->entries, &e, sizeof(e)))
            return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
    }
    return 0;
}

static const uint8_t *sort_words;

static int by_count_then_word(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(sort_words + x->off, sort_words + y->off, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int sorter_end(sl_ctx *ctx, void *self)
{
    sorter *s = self;
    if (sl_ctx_end_canceled(ctx)) return 0; /* partial counts: print none */
    size_t n = s->entries.len / sizeof(entry);
    entry *e = (entry *)s->entries.ptr;
    sort_words = s->words.ptr; /* one sink instance: qsort has no user pointer */
    if (n) qsort(e, n, sizeof(entry), by_count_then_word);
    sl_buf out = {0};
    for (size_t i = 0; i < n; i++) {
        if (sl_buf_append(&out, s->words.ptr + e[i].off, e[i].len) ||
            sl_buf_printf(&out, "\t%" PRId64 "\n", e[i].count))
            return sl_ctx_fail(ctx, SL_ENOMEM, "out of memory");
        if (out.len >= (1 << 20) || i + 1 == n) {
            if (fwrite(out.ptr, 1, out.len, stdout) != out.len) {
                int err = errno;
                sl_buf_free(&out);
                if (err == EPIPE) return sl_ctx_fail(ctx, SL_EPIPE, "output closed (broken pipe)");
                return sl_ctx_fail(ctx, SL_EIO, "cannot write the result to standard output: %s",
                                   strerror(err));
            }
            out.len = 0;
        }
    }
    sl_buf_free(&out);
    if (fflush(stdout) != 0) {
        if (errno == EPIPE) return sl_ctx_fail(ctx, SL_EPIPE, "output closed (broken pipe)");
        return sl_ctx_fail(ctx, SL_EIO, "cannot write standard output: %s", strerror(errno));
    }
    return 0;
}

static const sl_operator sorter_op = {.version = SL_OPERATOR_VERSION,
                                      .kind = "sorted-print",
                                      .open = sorter_open,
                                      .process = sorter_process,
                                      .end = sorter_end,
                                      .close = sorter_close};

/* --- the job ------------------------------------------------------------------------ */

static void help(void)
{
    printf(
        "usage: sluice run wordcount [--input FILE] [--threads N] [--parallelism P] [--explain]\n"
        "           [--checkpoint-dir DIR [--checkpoint-interval D] [--checkpoint-timeout D]\n"
        "            [--checkpoint-keep K] [--from-checkpoint PATH]\n"
        "            [--checkpoint-capture auto|sync|fork]\n"
        "            [--guarantee exactly-once|at-least-once|none]]\n"
        "Counts the words of FILE (default: standard input), split on ASCII whitespace,\n"
        "with ASCII letters lower-cased, and prints word<TAB>count lines, most frequent\n"
        "first, then by word (bytewise).\n");
    fputs(jobs_trace_help, stdout);
}

int job_wordcount(int argc, char **argv, const jobs_runner *run)
{
    const char *cmd = "run wordcount";
    enum { O_INPUT = JOBS_OPT_FIRST_FREE };
    static const struct option opts[] = {
        {"input", required_argument, NULL, O_INPUT}, JOBS_COMMON_OPTIONS, {0}};
    jobs_common common = {0};
    sl_lines_conf in = {.path = NULL};
    int opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        if (opt == O_INPUT)
            in.path = optarg;
        else if ((ret = jobs_opt(cmd, opt, argv, &common)) == JOBS_HELP) {
            help();
            return 0;
        } else if (ret) {
            return ret;
        }
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    sl_agg_conf count = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_FINAL};
    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    jobs_common_apply(&common, p);
    sl_stream *s = sl_pipeline_lines(p, "read", &in, 0, NULL);
    s = sl_stream_flat_map(s, "split", split, NULL, 0);
    s = sl_stream_key_by(s, "word", whole, NULL);
    s = sl_stream_aggregate(s, "count", &count);
    sl_stream_sink(s, "sorted", &sorter_op, NULL);
    sl_pipeline_set_node_parallelism(p, "sorted", 1); /* one instance sorts everything */
    int rc = jobs_run(run, p, cmd, &common);
    sl_pipeline_free(p);
    return rc;
}
