/*
 * bench/plot.c - the figures of `sluice bench NAME --plot FILE.svg`: a
 * recorder of the rows a benchmark prints and an SVG writer of its own (no
 * gnuplot: the plot needs bars, text and lines, which SVG draws directly,
 * and a browser shows it).
 *
 * Recording: bench_plot_begin opens the file (creating or truncating it, so
 * that a bad path is reported before the benchmark runs) and turns the
 * recorder on; bench_row and the benches that print their own rows call
 * bench_plot_rowdata, the ones that measure latency percentiles call
 * bench_plot_latency; bench_plot_end draws and writes. The recorder is one
 * static object of the process, used from the thread that prints the rows
 * (the CLI's main thread); children forked by bench_in_child never record.
 *
 * The drawing (bench_plot_svg), top to bottom:
 *   - the title "sluice bench NAME", a subtitle (CPUs, date), a legend;
 *   - panel 1, throughput: one horizontal bar per row, grouped by threads
 *     (ascending; rows in recorded order inside a group), scaled on an axis
 *     of 1-2-5 ticks with K/M/G units. Baselines (named so, see
 *     bench_plot_is_baseline, or marked by bench_plot_mark_baseline) are
 *     grey with a dashed outline; every other bar is labelled with its
 *     value and its ratio to its baseline ("x0.71" with a multiplication
 *     sign): the nearest baseline recorded before it, else the first after
 *     it (benches print theirs first or, like bench broker, in between);
 *   - panel 2, only when latencies were recorded: p50 and p99 bars per
 *     variant and threads, in ms, on their own axis.
 * The height grows with the rows (24 px a bar), so that nexmark's 9 queries
 * on 1 and 2 threads stay readable; the width is fixed (900 px, viewBox set
 * so that browsers scale it). Every text and attribute taken from a variant
 * name is XML-escaped; labels longer than LABEL_MAX bytes are cut (at a
 * UTF-8 character boundary) with the whole name kept in the bar's <title>.
 * Invariant: the output is a well-formed XML document whatever the rows
 * hold, with no rows at all included (then a note says so).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include "bench/plot.h"

#define W          900 /* width of the drawing */
#define X0         250 /* left end of the bars; labels end 10 px left of it */
#define PW         500 /* width of the bars' area: its right end is the axis end */
#define BAR_PITCH  24
#define BAR_H      18
#define LABEL_MAX  40
#define C_BAR      "#4c78a8"
#define C_BASE     "#bdbdbd"
#define C_P50      "#f2a65a"
#define C_P99      "#c4561d"
#define FONT       "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
#define TIMES_SIGN "\xc3\x97" /* U+00D7 in UTF-8 */

/* ---- small pieces --------------------------------------------------------- */

static void put_escaped(FILE *f, const char *s, size_t max)
{
    size_t n = strlen(s), cut = n;
    if (max && n > max) {
        cut = max - 1;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--; /* inside a UTF-8 char */
    }
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            /* XML 1.0 allows no control characters but tab, LF, CR */
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                fputc('?', f);
            else
                fputc((int)c, f);
        }
    }
    if (cut < n) fputs("\xe2\x80\xa6", f); /* U+2026 */
}

void bench_plot_fmt(double v, char *buf, size_t len)
{
    static const struct {
        double scale;
        const char *unit;
    } u[] = {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "K"}};
    double a = fabs(v);
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++)
        if (a >= u[i].scale) {
            snprintf(buf, len, "%.3g%s", v / u[i].scale, u[i].unit);
            return;
        }
    snprintf(buf, len, "%.3g", v);
}

double bench_plot_ticks(double max, double *step)
{
    if (!(max > 0) || !isfinite(max)) {
        *step = 0.2;
        return 1;
    }
    double raw = max / 5, mag = pow(10, floor(log10(raw))), norm = raw / mag, s;
    if (norm <= 1 + 1e-9)
        s = 1;
    else if (norm <= 2 + 1e-9)
        s = 2;
    else if (norm <= 5 + 1e-9)
        s = 5;
    else
        s = 10;
    *step = s * mag;
    double top = ceil(max / *step - 1e-9) * *step;
    return top < max ? top + *step : top;
}

int bench_plot_is_baseline(const char *v)
{
    static const char *const words[] = {"baseline", "loop", "floor", "mock"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t wl = strlen(words[i]);
        for (const char *p = v; *p; p++)
            if (strncasecmp(p, words[i], wl) == 0) return 1;
    }
    return strncmp(v, "dd", 2) == 0 && (v[2] == 0 || v[2] == '_' || v[2] == '-' || v[2] == ' ');
}

/* The baseline of row i: the nearest one before it, else the first after
 * it; -1 when there is none, or i is one itself. */
static long baseline_of(const bench_plot_rowdata *r, size_t n, size_t i)
{
    if (r[i].baseline) return -1;
    for (size_t k = i; k-- > 0;)
        if (r[k].baseline && r[k].events_per_s > 0) return (long)k;
    for (size_t k = i + 1; k < n; k++)
        if (r[k].baseline && r[k].events_per_s > 0) return (long)k;
    return -1;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The distinct thread counts of rows (or latencies), ascending, in t[]. */
static size_t thread_groups(const int *threads, size_t n, int *t)
{
    size_t g = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < g && t[k] != threads[i]) k++;
        if (k == g) t[g++] = threads[i];
    }
    qsort(t, g, sizeof(int), cmp_int);
    return g;
}

/* Vertical grid lines and tick labels of an axis 0..top from y0 to y1. */
static void axis(FILE *f, double top, double step, int y0, int y1, const char *unit,
                 const char *title)
{
    char lab[32];
    int nt = (int)floor(top / step + 0.5);
    for (int k = 0; k <= nt; k++) {
        double v = step * k;
        double x = X0 + PW * (v / top);
        bench_plot_fmt(v, lab, sizeof lab);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" "
                "stroke-width=\"1\"/>\n",
                x, y0, x, y1, k ? "#e0e0e0" : "#555");
        fprintf(f,
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"11\" "
                "fill=\"#333\">%s%s</text>\n",
                x, y1 + 14, lab, unit);
    }
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\" "
            "fill=\"#333\">%s</text>\n",
            X0 + PW / 2, y1 + 32, title);
}

static void threads_heading(FILE *f, int y, int threads)
{
    fprintf(f,
            "<text x=\"10\" y=\"%d\" font-size=\"12\" font-weight=\"bold\" fill=\"#222\">"
            "%d thread%s</text>\n",
            y, threads, threads == 1 ? "" : "s");
}

/* ---- the writer ----------------------------------------------------------- */

int bench_plot_svg(FILE *f, const bench_plot_data *d)
{
    size_t nr = d->n_rows, nl = d->n_lats;
    int *th = malloc((nr + nl + 1) * sizeof(int)), *groups = malloc((nr + nl + 1) * sizeof(int));
    if (!th || !groups) {
        free(th);
        free(groups);
        return -ENOMEM;
    }
    size_t ng = 0;
    double max = 0, lmax = 0;
    size_t n_base = 0;
    long only_base = -1;
    for (size_t i = 0; i < nr; i++) {
        th[i] = d->rows[i].threads;
        if (d->rows[i].events_per_s > max) max = d->rows[i].events_per_s;
        if (d->rows[i].baseline) {
            n_base++;
            only_base = (long)i;
        }
    }
    ng = thread_groups(th, nr, groups);
    for (size_t i = 0; i < nl; i++) {
        if (d->lats[i].p50_ms > lmax) lmax = d->lats[i].p50_ms;
        if (d->lats[i].p99_ms > lmax) lmax = d->lats[i].p99_ms;
    }

    /* heights: header 104; panel 1: a heading and the bars per group, axis 46 */
    int h1 = nr ? (int)(ng * (BAR_PITCH + 8) + nr * BAR_PITCH) + 46 : 30;
    int lat_pitch = 2 * 15 + 10;
    int h2 = nl ? 40 + (int)nl * lat_pitch + 46 : 0;
    int height = 104 + h1 + h2 + 10;

    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" " FONT ">\n",
            W, height, W, height);
    fputs("<title>", f);
    put_escaped(f, d->title ? d->title : "sluice bench", 0);
    fputs("</title>\n", f);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, height);
    fputs("<text x=\"10\" y=\"28\" font-size=\"18\" font-weight=\"bold\" fill=\"#111\">", f);
    put_escaped(f, d->title ? d->title : "sluice bench", 0);
    fputs("</text>\n<text x=\"10\" y=\"48\" font-size=\"12\" fill=\"#555\">", f);
    put_escaped(f, d->subtitle ? d->subtitle : "", 0);
    fputs("</text>\n", f);
    /* legend: the baseline's entry only when there is one */
    fputs("<rect x=\"10\" y=\"60\" width=\"14\" height=\"10\" fill=\"" C_BAR "\"/>", f);
    if (n_base)
        fputs("<text x=\"30\" y=\"69\" font-size=\"11\" fill=\"#333\">measured variant "
              "(" TIMES_SIGN "N: its events/s over its baseline's)</text>\n"
              "<rect x=\"340\" y=\"60\" width=\"14\" height=\"10\" fill=\"" C_BASE
              "\" stroke=\"#555\" stroke-dasharray=\"3 2\"/>"
              "<text x=\"360\" y=\"69\" font-size=\"11\" fill=\"#333\">in-run baseline (same "
              "process, same run)</text>\n",
              f);
    else
        fputs("<text x=\"30\" y=\"69\" font-size=\"11\" fill=\"#333\">measured variant "
              "(this bench recorded no in-run baseline)</text>\n",
              f);

    int y;
    fputs("<text x=\"10\" y=\"96\" font-size=\"13\" font-weight=\"bold\" fill=\"#222\">"
          "Throughput, events/s (higher is better)</text>\n",
          f);
    y = 104;
    if (!nr) {
        fputs("<text x=\"10\" y=\"124\" font-size=\"12\" fill=\"#a00\">no events/s rows were "
              "recorded</text>\n",
              f);
        y += 30;
    } else {
        double step, top = bench_plot_ticks(max, &step);
        int y_axis0 = y;
        /* grid first, so bars draw over it: the bottom is known from the counts */
        int y_bars_end = y + (int)(ng * (BAR_PITCH + 8) + nr * BAR_PITCH);
        axis(f, top, step, y_axis0, y_bars_end, "", "events/s");
        for (size_t g = 0; g < ng; g++) {
            y += BAR_PITCH;
            threads_heading(f, y - 6, groups[g]);
            for (size_t i = 0; i < nr; i++) {
                const bench_plot_rowdata *r = &d->rows[i];
                if (r->threads != groups[g]) continue;
                int base = r->baseline;
                double w = r->events_per_s > 0 ? PW * (r->events_per_s / top) : 0;
                char val[32];
                bench_plot_fmt(r->events_per_s, val, sizeof val);
                fputs("<g>\n<title>", f);
                put_escaped(f, r->variant, 0);
                fprintf(f, ", %d thread%s: %.0f events/s</title>\n", r->threads,
                        r->threads == 1 ? "" : "s", r->events_per_s);
                fprintf(f,
                        "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"12\" "
                        "fill=\"#111\">",
                        X0 - 10, y + 13);
                put_escaped(f, r->variant, LABEL_MAX);
                fputs("</text>\n", f);
                if (base)
                    fprintf(f,
                            "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"" C_BASE
                            "\" stroke=\"#555\" stroke-dasharray=\"4 2\"/>\n",
                            X0, y, w, BAR_H);
                else
                    fprintf(f,
                            "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"" C_BAR
                            "\"/>\n",
                            X0, y, w, BAR_H);
                fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" fill=\"#111\">%s",
                        X0 + w + 6, y + 13, val);
                long b = baseline_of(d->rows, nr, i);
                if (base)
                    fputs("  <tspan fill=\"#555\" font-style=\"italic\">baseline</tspan>", f);
                else if (b >= 0)
                    fprintf(f, "  <tspan font-weight=\"bold\">" TIMES_SIGN "%.2f</tspan>",
                            r->events_per_s / d->rows[b].events_per_s);
                fputs("</text>\n</g>\n", f);
                y += BAR_PITCH;
            }
            y += 8;
        }
        if (n_base == 1 && d->rows[only_base].events_per_s > 0) {
            double x = X0 + PW * (d->rows[only_base].events_per_s / top);
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#555\" "
                    "stroke-dasharray=\"4 3\" stroke-width=\"1\"/>\n",
                    x, y_axis0, x, y_bars_end);
        }
        y = y_bars_end + 46;
    }

    if (nl) {
        y += 16;
        fprintf(f,
                "<text x=\"10\" y=\"%d\" font-size=\"13\" font-weight=\"bold\" fill=\"#222\">"
                "Latency, ms (lower is better)</text>\n"
                "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"" C_P50 "\"/>"
                "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#333\">p50</text>"
                "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"" C_P99 "\"/>"
                "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#333\">p99</text>\n",
                y, X0, y - 9, X0 + 20, y, X0 + 60, y - 9, X0 + 80, y);
        y += 24;
        double step, top = bench_plot_ticks(lmax, &step);
        int y0 = y, y1 = y + (int)nl * lat_pitch;
        axis(f, top, step, y0, y1, "", "milliseconds");
        for (size_t i = 0; i < nl; i++) {
            const bench_plot_latdata *l = &d->lats[i];
            fputs("<g>\n<title>", f);
            put_escaped(f, l->variant, 0);
            fprintf(f, ", %d thread%s: p50 %.3f ms, p99 %.3f ms</title>\n", l->threads,
                    l->threads == 1 ? "" : "s", l->p50_ms, l->p99_ms);
            fprintf(f,
                    "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"12\" fill=\"#111\">",
                    X0 - 10, y + 19);
            put_escaped(f, l->variant, LABEL_MAX - 12);
            fprintf(f, ", %d thread%s</text>\n", l->threads, l->threads == 1 ? "" : "s");
            const struct {
                const char *q, *color;
                double v;
            } bars[2] = {{"p50", C_P50, l->p50_ms}, {"p99", C_P99, l->p99_ms}};
            for (int k = 0; k < 2; k++) {
                double v = bars[k].v > 0 ? bars[k].v : 0;
                double w = PW * (v / top);
                int yb = y + 4 + k * 15;
                fprintf(f,
                        "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"13\" fill=\"%s\"/>\n"
                        "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"#111\">%s %.3g ms"
                        "</text>\n",
                        X0, yb, w, bars[k].color, X0 + w + 6, yb + 11, bars[k].q, bars[k].v);
            }
            fputs("</g>\n", f);
            y += lat_pitch;
        }
    }
    fputs("</svg>\n", f);
    free(th);
    free(groups);
    if (fflush(f) || ferror(f)) return errno ? -errno : -EIO;
    return 0;
}

/* ---- the recorder --------------------------------------------------------- */

static struct {
    FILE *f;
    bench_plot_rowdata *rows;
    size_t n_rows, cap_rows;
    bench_plot_latdata *lats;
    size_t n_lats, cap_lats;
} rec;

int bench_plot_begin(const char *path)
{
    FILE *f = fopen(path, "we");
    if (!f) return errno ? -errno : -EIO;
    if (rec.f) fclose(rec.f);
    rec.f = f;
    return 0;
}

int bench_plot_recording(void)
{
    return rec.f != NULL;
}

static int grow(void **a, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return 0;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*a, c * size);
    if (!p) return -1;
    *a = p;
    *cap = c;
    return 0;
}

void bench_plot_row(const char *variant, int threads, uint64_t events, double seconds)
{
    if (!rec.f || !(seconds > 0) || events == 0) return;
    if (grow((void **)&rec.rows, &rec.cap_rows, rec.n_rows, sizeof(*rec.rows))) return;
    char *v = strdup(variant ? variant : "");
    if (!v) return;
    rec.rows[rec.n_rows++] =
        (bench_plot_rowdata){v, threads, (double)events / seconds, bench_plot_is_baseline(v)};
}

void bench_plot_mark_baseline(void)
{
    if (rec.f && rec.n_rows) rec.rows[rec.n_rows - 1].baseline = 1;
}

void bench_plot_latency(const char *variant, int threads, double p50_ms, double p99_ms)
{
    if (!rec.f) return;
    if (grow((void **)&rec.lats, &rec.cap_lats, rec.n_lats, sizeof(*rec.lats))) return;
    char *v = strdup(variant ? variant : "");
    if (!v) return;
    rec.lats[rec.n_lats++] = (bench_plot_latdata){v, threads, p50_ms, p99_ms};
}

int bench_plot_end(const char *bench, int write)
{
    int rc = 0;
    if (!rec.f) return 0;
    if (write) {
        char title[160], sub[160], date[64] = "";
        time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm)) strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        snprintf(title, sizeof title, "sluice bench %s", bench);
        snprintf(sub, sizeof sub, "%ld CPU%s online, %s; figures of this run", cpus,
                 cpus == 1 ? "" : "s", date);
        bench_plot_data d = {title, sub, rec.rows, rec.n_rows, rec.lats, rec.n_lats};
        rc = bench_plot_svg(rec.f, &d);
    }
    if (fclose(rec.f) && !rc) rc = errno ? -errno : -EIO;
    rec.f = NULL;
    for (size_t i = 0; i < rec.n_rows; i++) free((char *)rec.rows[i].variant);
    for (size_t i = 0; i < rec.n_lats; i++) free((char *)rec.lats[i].variant);
    free(rec.rows);
    free(rec.lats);
    rec.rows = NULL;
    rec.lats = NULL;
    rec.n_rows = rec.cap_rows = rec.n_lats = rec.cap_lats = 0;
    return rc;
}
