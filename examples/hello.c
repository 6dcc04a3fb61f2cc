/* hello.c - a complete sluice pipeline: count even numbers by last digit.
 * Build: cc hello.c $(pkg-config --cflags --libs sluice) */
#include <inttypes.h>
#include <stdio.h>
#include <sluice/sluice.h>

typedef struct {
    int64_t n;
} num;

static int gen(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    ((num *)out)->n = (int64_t)seq;
    *ts = (int64_t)seq;
    return 0;
}
static int even(const void *rec, uint32_t len, int64_t ts, void *ud)
{
    return ((const num *)rec)->n % 2 == 0;
}
static sl_bytes last_digit(const void *rec, uint32_t len, void *ud)
{
    static const char digits[] = "0123456789";
    return (sl_bytes){&digits[((const num *)rec)->n % 10], 1};
}
static int show(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    sl_bytes r = {rec, len}, key = sl_agg_out_key(r, 8);
    int64_t count = *(const int64_t *)sl_agg_out_result(r);
    return sl_buf_printf(out, "numbers ending in %.*s: %" PRId64 "\n", (int)key.len,
                         (const char *)key.ptr, count);
}

int main(void)
{
    sl_generator_conf gc = {.fn = gen, .count = 1000000};
    sl_agg_conf count = {.agg = &sl_agg_count, .emit = SL_AGG_EMIT_FINAL};
    sl_write_conf out = {.format = show};
    sl_pipeline *p = sl_pipeline_new();
    sl_stream *s = sl_pipeline_generator(p, "numbers", &gc, sizeof(num));
    s = sl_stream_filter(s, "even", even, NULL);
    s = sl_stream_key_by(s, "by-digit", last_digit, NULL);
    s = sl_stream_aggregate(s, "count", &count);
    sl_stream_sink(s, "print", &sl_sink_write, &out);
    int rc = sl_pipeline_run(p);
    if (rc) fprintf(stderr, "hello: %s\n", sl_pipeline_errmsg(p));
    sl_pipeline_free(p);
    return rc ? 1 : 0;
}
