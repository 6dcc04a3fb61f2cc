/*
 * bench/plot.h - `sluice bench NAME --plot FILE.svg`: a recorder of the
 * figures a benchmark prints, and a small SVG writer that draws them.
 *
 * The CLI strips --plot FILE from the bench's arguments, calls
 * bench_plot_begin (which creates or truncates FILE at once, so that a bad
 * path fails before a long benchmark runs), runs the bench, and calls
 * bench_plot_end, which writes the SVG when the bench succeeded. Between
 * them, every bench_row (bench/bench_util.h) records its row through
 * bench_plot_rowdata, and benches that print their own rows or measure latency
 * percentiles call bench_plot_rowdata / bench_plot_latency themselves. When no
 * recording is on, both return at once. Recording is process-wide state of
 * the CLI's main thread: call them from the thread that prints the rows.
 *
 * The writer (bench_plot_svg) is a pure function of a bench_plot_data, so
 * that tests draw fixed rows without running a bench.
 */
#ifndef SLUICE_BENCH_PLOT_H
#define SLUICE_BENCH_PLOT_H

#include <stdint.h>
#include <stdio.h>

/* One throughput row: events/s of `variant` on `threads` threads; baseline
 * set when it is an in-run baseline (drawn apart, the others' ratios are to
 * it). */
typedef struct bench_plot_rowdata {
    const char *variant;
    int threads;
    double events_per_s;
    int baseline;
} bench_plot_rowdata;

/* One latency measurement, in milliseconds. */
typedef struct bench_plot_latdata {
    const char *variant;
    int threads;
    double p50_ms, p99_ms;
} bench_plot_latdata;

typedef struct bench_plot_data {
    const char *title;    /* "sluice bench core" */
    const char *subtitle; /* "4 CPUs, 2025-01-01 10:00 UTC" */
    const bench_plot_rowdata *rows;
    size_t n_rows;
    const bench_plot_latdata *lats;
    size_t n_lats;
} bench_plot_data;

/* Start recording for a plot written to `path` by bench_plot_end. The file
 * is created or truncated now. 0, or -errno when it cannot be opened. */
int bench_plot_begin(const char *path);

/* Whether a recording is on. */
int bench_plot_recording(void);

/* Record a row (events / seconds events/s; rows with no time or no events
 * are not drawn) or a latency pair. Copies `variant`. No-ops when no
 * recording is on. */
void bench_plot_row(const char *variant, int threads, uint64_t events, double seconds);
void bench_plot_latency(const char *variant, int threads, double p50_ms, double p99_ms);

/* Mark the row recorded last as a baseline, for benches whose baseline's
 * name says nothing of it (bench trace's "core", bench checkpoint's
 * "none"). Rows are marked from their names otherwise (below). */
void bench_plot_mark_baseline(void);

/* End the recording: when `write` is set, draw what was recorded under the
 * title "sluice bench `bench`" with this host's CPU count and the date and
 * write it to the file; close the file and free the rows either way.
 * 0, or -errno when writing failed. */
int bench_plot_end(const char *bench, int write);

/* The writer. Returns 0, or -errno of a failed write to f. */
int bench_plot_svg(FILE *f, const bench_plot_data *d);

/* Whether a variant name is an in-run baseline: the names the benches give
 * theirs ("loop", "hand-loop", "baseline (...)", "dd_baseline",
 * "export-copy-floor", "produce_mock", ...). The writer draws a row's ratio
 * to the nearest baseline row before it, else to the first one after it. */
int bench_plot_is_baseline(const char *variant);

/* The axis for values 0..max: a step of 1, 2 or 5 times a power of ten
 * giving about five intervals; returns the axis end (a multiple of *step,
 * >= max; 1 with step 0.2 when max <= 0). */
double bench_plot_ticks(double max, double *step);

/* A value with a K/M/G unit and up to three significant digits
 * ("37.2M", "500K", "1.5G", "0.2"). */
void bench_plot_fmt(double v, char *buf, size_t len);

#endif
