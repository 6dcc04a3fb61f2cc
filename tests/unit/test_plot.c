/*
 * tests/unit/test_plot.c - the SVG writer and the recorder of
 * `sluice bench NAME --plot FILE.svg` (bench/plot.c, compiled into this
 * test: bench/ is part of the CLI, not of the library).
 *
 * The writer draws fixed rows into memory (open_memstream); the tests check
 * what a reader needs and what can break silently: every variant's label,
 * the ratio labels against the in-run baseline, XML escaping of names, the
 * 1-2-5 tick selection (table-driven) and its labels, the height growing
 * with the rows, the latency panel, and well-formed structure (a small tag
 * matcher: every element closed in order, no raw '<' or stray '&' in text;
 * tests/integration/bench_plot.sh parses a real run's SVG with python3's
 * XML parser). The recorder: a file it cannot open is an error before
 * anything runs, rows without time are dropped, the file gets the SVG.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <math.h>
#include <unistd.h>
#include <cmocka.h>

#include "bench/plot.h"

static char *svg_of(const bench_plot_data *d)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(bench_plot_svg(f, d), 0);
    fclose(f);
    return buf;
}

/* Well-formed: tags nest and close in order, text has no raw '<' and every
 * '&' starts an entity. Returns the number of elements, or -1. */
static int well_formed(const char *s)
{
    char stack[64][32];
    int depth = 0, elements = 0, seen_root = 0;
    if (strncmp(s, "<?xml ", 6) != 0) return -1;
    while (*s) {
        if (*s == '&') {
            const char *e = strchr(s, ';');
            if (!e || e - s > 6) return -1;
            s = e + 1;
            continue;
        }
        if (*s != '<') {
            s++;
            continue;
        }
        if (s[1] == '?') {
            const char *e = strstr(s, "?>");
            if (!e) return -1;
            s = e + 2;
            continue;
        }
        const char *gt = strchr(s, '>');
        if (!gt) return -1;
        if (s[1] == '/') {
            size_t n = (size_t)(gt - s - 2);
            if (depth == 0 || strlen(stack[depth - 1]) != n || strncmp(stack[depth - 1], s + 2, n))
                return -1;
            depth--;
        } else {
            size_t n = strcspn(s + 1, " />");
            if (n == 0 || n >= 32) return -1;
            if (depth == 0 && seen_root) return -1; /* one root */
            seen_root = 1;
            elements++;
            /* a '<' inside the tag would be an unescaped one in an attribute */
            for (const char *p = s + 1; p < gt; p++)
                if (*p == '<') return -1;
            if (gt[-1] != '/') {
                if (depth == 64) return -1;
                memcpy(stack[depth], s + 1, n);
                stack[depth++][n] = 0;
            }
        }
        s = gt + 1;
    }
    return depth == 0 && seen_root ? elements : -1;
}

static int height_of(const char *svg)
{
    const char *h = strstr(svg, "height=\"");
    assert_non_null(h);
    return atoi(h + 8);
}

static const bench_plot_rowdata core_rows[] = {
    {"loop", 1, 100e6, 1}, {"engine", 1, 71e6, 0}, {"engine", 2, 130e6, 0}};

static void test_labels_and_ratios(void **state)
{
    (void)state;
    bench_plot_data d = {"sluice bench core", "2 CPUs online", core_rows, 3, NULL, 0};
    char *svg = svg_of(&d);
    assert_true(well_formed(svg) > 10);
    assert_non_null(strstr(svg, ">sluice bench core</text>"));
    assert_non_null(strstr(svg, ">2 CPUs online</text>"));
    assert_non_null(strstr(svg, ">loop</text>"));
    assert_non_null(strstr(svg, ">engine</text>"));
    assert_non_null(strstr(svg, "\xc3\x97"
                                "0.71<"));
    assert_non_null(strstr(svg, "\xc3\x97"
                                "1.30<"));
    assert_non_null(strstr(svg, ">baseline<"));
    assert_non_null(strstr(svg, ">1 thread</text>"));
    assert_non_null(strstr(svg, ">2 threads</text>"));
    assert_non_null(strstr(svg, "stroke-dasharray")); /* the baseline is drawn apart */
    assert_non_null(strstr(svg, ">71M"));             /* value labels */
    assert_null(strstr(svg, "Latency"));              /* no latency panel without latencies */
    free(svg);
}

/* Ratios go to the nearest baseline before a row, else the first after it. */
static void test_ratio_to_which_baseline(void **state)
{
    (void)state;
    static const bench_plot_rowdata rows[] = {{"append", 1, 50, 0},
                                              {"dd_baseline", 1, 100, 1},
                                              {"read", 1, 300, 0},
                                              {"export-copy-floor", 1, 1000, 1},
                                              {"export", 1, 250, 0}};
    bench_plot_data d = {"t", "s", rows, 5, NULL, 0};
    char *svg = svg_of(&d);
    assert_true(well_formed(svg) > 0);
    assert_non_null(strstr(svg, "\xc3\x97"
                                "0.50<")); /* append / dd (after it) */
    assert_non_null(strstr(svg, "\xc3\x97"
                                "3.00<")); /* read / dd (before it) */
    assert_non_null(strstr(svg, "\xc3\x97"
                                "0.25<")); /* export / the floor */
    free(svg);
}

static void test_escapes(void **state)
{
    (void)state;
    static const bench_plot_rowdata rows[] = {{"a<b&c\"d'e>", 1, 5e6, 0}, {"loop & co", 1, 1e7, 1}};
    static const bench_plot_latdata lats[] = {{"p<&", 1, 1.5, 4.5}};
    bench_plot_data d = {"sluice bench <x&y>", "cpus & date", rows, 2, lats, 1};
    char *svg = svg_of(&d);
    assert_true(well_formed(svg) > 0);
    assert_non_null(strstr(svg, "a&lt;b&amp;c&quot;d&apos;e&gt;"));
    assert_non_null(strstr(svg, "loop &amp; co"));
    assert_non_null(strstr(svg, "sluice bench &lt;x&amp;y&gt;"));
    assert_non_null(strstr(svg, "p&lt;&amp;"));
    assert_null(strstr(svg, "a<b"));
    assert_null(strstr(svg, "<&"));
    free(svg);
}

static void test_long_label_cut(void **state)
{
    (void)state;
    char name[200];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = 0;
    name[38] = '\xc3'; /* a two-byte character across the cut */
    name[39] = '\xa9';
    bench_plot_rowdata rows[] = {{name, 1, 1e6, 0}};
    bench_plot_data d = {"t", "s", rows, 1, NULL, 0};
    char *svg = svg_of(&d);
    assert_true(well_formed(svg) > 0);
    assert_non_null(strstr(svg, "\xe2\x80\xa6</text>")); /* cut with an ellipsis */
    assert_non_null(strstr(svg, name));                  /* whole in the <title> */
    assert_null(strstr(svg, "\xc3\xe2"));                /* not inside the character */
    free(svg);
}

static void test_ticks(void **state)
{
    (void)state;
    static const struct {
        double max, step, top;
    } cases[] = {
        {1, 0.2, 1},           {0, 0.2, 1},       {-3, 0.2, 1},      {37e6, 10e6, 40e6},
        {1.2e9, 0.5e9, 1.5e9}, {7, 2, 8},         {100, 20, 100},    {0.037, 0.01, 0.04},
        {101, 50, 150},        {4.9e5, 1e5, 5e5}, {2e6, 0.5e6, 2e6},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double step = 0, top = bench_plot_ticks(cases[i].max, &step);
        if (fabs(step - cases[i].step) > cases[i].step * 1e-9 ||
            fabs(top - cases[i].top) > cases[i].top * 1e-9)
            fail_msg("max %g: step %g top %g, expected %g %g", cases[i].max, step, top,
                     cases[i].step, cases[i].top);
        assert_true(top >= cases[i].max);
    }
}

static void test_fmt(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *s;
    } cases[] = {{0, "0"},        {0.2, "0.2"},    {0.6000000000000001, "0.6"},
                 {999, "999"},    {1000, "1K"},    {37.25e6, "37.2M"},
                 {1.5e9, "1.5G"}, {500e6, "500M"}, {30e6, "30M"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        bench_plot_fmt(cases[i].v, buf, sizeof buf);
        assert_string_equal(buf, cases[i].s);
    }
}

/* The axis labels the writer draws for a few ranges. */
static void test_axis_labels(void **state)
{
    (void)state;
    static const struct {
        double max;
        const char *labels[4];
    } cases[] = {{1, {">0<", ">0.4<", ">1<", NULL}},
                 {37e6, {">10M<", ">20M<", ">40M<", NULL}},
                 {1.2e9, {">500M<", ">1G<", ">1.5G<", NULL}}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bench_plot_rowdata rows[] = {{"v", 1, cases[i].max, 0}};
        bench_plot_data d = {"t", "s", rows, 1, NULL, 0};
        char *svg = svg_of(&d);
        for (int k = 0; cases[i].labels[k]; k++)
            if (!strstr(svg, cases[i].labels[k]))
                fail_msg("max %g: no tick %s", cases[i].max, cases[i].labels[k]);
        free(svg);
    }
}

/* nexmark: 9 queries on 1 and 2 threads, 24 px a bar at least. */
static void test_height_grows(void **state)
{
    (void)state;
    static const char *const q[9] = {"q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11"};
    bench_plot_rowdata rows[18];
    for (int i = 0; i < 18; i++)
        rows[i] = (bench_plot_rowdata){q[i / 2], i % 2 + 1, 1e6 * (i + 1), 0};
    bench_plot_data few = {"t", "s", rows, 3, NULL, 0}, many = {"t", "s", rows, 18, NULL, 0};
    char *a = svg_of(&few), *b = svg_of(&many);
    assert_true(well_formed(b) > 0);
    assert_true(height_of(b) >= height_of(a) + 15 * 24);
    for (int i = 0; i < 9; i++) {
        char want[16];
        snprintf(want, sizeof want, ">%s</text>", q[i]);
        assert_non_null(strstr(b, want));
    }
    assert_null(strstr(b, "\xc3\x97")); /* no baseline: no ratios */
    free(a);
    free(b);
}

static void test_latency_panel(void **state)
{
    (void)state;
    static const bench_plot_latdata lats[] = {{"window result", 1, 1.25, 4.5},
                                              {"window result", 2, 0.8, 12}};
    bench_plot_data d = {"sluice bench ysb", "s", core_rows, 3, lats, 2};
    char *svg = svg_of(&d);
    assert_true(well_formed(svg) > 0);
    assert_non_null(strstr(svg, "Latency"));
    assert_non_null(strstr(svg, "p50 1.25 ms"));
    assert_non_null(strstr(svg, "p99 12 ms"));
    assert_non_null(strstr(svg, ">window result, 2 threads</text>"));
    free(svg);
}

static void test_nothing_recorded(void **state)
{
    (void)state;
    bench_plot_data d = {"sluice bench x", "s", NULL, 0, NULL, 0};
    char *svg = svg_of(&d);
    assert_true(well_formed(svg) > 0);
    assert_non_null(strstr(svg, "no events/s rows"));
    free(svg);
}

static void test_is_baseline(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        int base;
    } cases[] = {{"loop", 1},
                 {"hand-loop", 1},
                 {"loop 1k keys", 1},
                 {"baseline (hand loop, no engine)", 1},
                 {"collector-baseline-reader", 1},
                 {"dd_baseline", 1},
                 {"dd (baseline)", 1},
                 {"export-copy-floor", 1},
                 {"produce_mock", 1},
                 {"engine", 0},
                 {"job 1k keys", 0},
                 {"q11", 0},
                 {"ddos", 0},
                 {"collector", 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (bench_plot_is_baseline(cases[i].v) != cases[i].base)
            fail_msg("%s: expected %d", cases[i].v, cases[i].base);
}

static void test_recorder(void **state)
{
    (void)state;
    char path[] = "/tmp/test_plot.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "old", 3), 3);
    close(fd);
    assert_false(bench_plot_recording());
    bench_plot_row("not recorded", 1, 10, 1); /* no recording on: a no-op */
    assert_int_equal(bench_plot_begin("/nonexistent-dir/x.svg"), -ENOENT);
    assert_false(bench_plot_recording());
    assert_int_equal(bench_plot_begin(path), 0);
    assert_true(bench_plot_recording());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fgetc(f), EOF); /* truncated before the bench runs */
    fclose(f);
    bench_plot_row("fast", 1, 1000000, 0.01);
    bench_plot_row("slow", 2, 1000000, 0.02);
    bench_plot_mark_baseline(); /* the row recorded last */
    bench_plot_row("no time", 1, 5, 0);
    bench_plot_latency("lat", 1, 1, 2);
    assert_int_equal(bench_plot_end("core", 1), 0);
    assert_false(bench_plot_recording());
    f = fopen(path, "r");
    assert_non_null(f);
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    unlink(path);
    assert_true(well_formed(buf) > 0);
    assert_non_null(strstr(buf, ">sluice bench core</text>"));
    assert_non_null(strstr(buf, " CPU"));
    assert_non_null(strstr(buf, ">fast</text>"));
    assert_null(strstr(buf, "no time"));
    assert_null(strstr(buf, "not recorded"));
    assert_non_null(strstr(buf, "\xc3\x97"
                                "2.00<")); /* fast / slow, the marked baseline */
    assert_non_null(strstr(buf, "Latency"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_and_ratios),
        cmocka_unit_test(test_ratio_to_which_baseline),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_long_label_cut),
        cmocka_unit_test(test_ticks),
        cmocka_unit_test(test_fmt),
        cmocka_unit_test(test_axis_labels),
        cmocka_unit_test(test_height_grows),
        cmocka_unit_test(test_latency_panel),
        cmocka_unit_test(test_nothing_recorded),
        cmocka_unit_test(test_is_baseline),
        cmocka_unit_test(test_recorder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
