/* hello.c - a complete sluice pipeline: count even numbers by last digit.
 * Build: cc hello.c $(pkg-config --cflags --libs sluice) */
#include <inttypes.h>
#include <stdio.h>
#include <sluice/sluice.h>

static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    *(int64_t *)out = *ts = (int64_t)seq; /* record: one int64; event time = seq */
    return 0;
}
static int even(const void *n, uint32_t len, int64_t ts, void *ud)
{
    return *(const int64_t *)n % 2 == 0;
}
static sl_bytes last_digit(const void *n, uint32_t len, void *ud)
{
    return (sl_bytes){&"0123456789"[*(const int64_t *)n % 10], 1};
}
static int show(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    sl_bytes r = {rec, len}, digit = sl_agg_out_key(r);
    return sl_buf_printf(out, "numbers ending in %.1s: %" PRId64 "\n", (const char *)digit.ptr,
                         *(const int64_t *)sl_agg_out_result(r));
}

int main(void)
{
    sl_generator_conf numbers = {.fn = gen, .count = 1000000};
    sl_agg_conf count = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_FINAL};
    sl_write_conf print = {.format = show};
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_generator(p, "numbers", &numbers, sizeof(int64_t), NULL);
    s = sl_stream_filter(s, "even", even, NULL);
    s = sl_stream_key_by(s, "by-digit", last_digit, NULL);
    s = sl_stream_aggregate(s, "count", &count);
    sl_stream_sink(s, "print", &sl_sink_write, &print);
    int rc = sl_pipeline_run(p); /* builder errors are reported here, once */
    if (rc) fprintf(stderr, "hello: %s\n", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    return rc ? 1 : 0;
}
