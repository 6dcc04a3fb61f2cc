/*
 * examples/jobs_window.h - the event-time jobs and benchmarks of the sluice
 * CLI (window-agg, ysb; bench ysb, bench windows), and the small pieces they
 * share (a text-line source with a parse callback, watermarks and a
 * dead-letter port; a dead-letter sink; duration parsing).
 *
 * Each entry point follows examples/cli.h: argv[0] is the job or benchmark
 * name, --help is handled, errors are one line "sluice run <job>: <problem>"
 * on stderr, and the return value is the exit status (0 ok, 1 runtime
 * failure, 2 usage error).
 */
#ifndef SLUICE_EXAMPLES_JOBS_WINDOW_H
#define SLUICE_EXAMPLES_JOBS_WINDOW_H

#include <stdatomic.h>
#include <stdint.h>
#include "sluice/sluice.h"

int sl_job_window_agg(int argc, char **argv); /* examples/job_window_agg.c */
int sl_job_ysb(int argc, char **argv);        /* examples/job_ysb.c */
int sl_bench_ysb(int argc, char **argv);      /* bench/bench_ysb.c */
int sl_bench_windows(int argc, char **argv);  /* bench/bench_windows.c */

/* --- shared by the jobs (examples/job_window_agg.c) ------------------------------- */

/* "250ms", "10s", "1m", "1h" or plain milliseconds (> 0 unless allow_zero).
 * Returns 0, or -1 when malformed. */
int sl_jobs_duration(const char *s, int allow_zero, int64_t *out);

/* Parse one line (without its newline) into a record of at most max_len
 * bytes at `out`. Return the record length (>= 0) and set *ts, or -1 with
 * *reason set (a static string) for a malformed line. */
typedef int (*sl_jobs_parse_fn)(const char *line, size_t len, void *out, uint32_t max_len,
                                int64_t *ts, const char **reason, void *ud);

/* A source (parallelism 1) of the lines of `path` (NULL or "-": standard
 * input): each line parsed by `parse` goes to port 0 (records of `width`
 * bytes, or variable length when width is 0) with watermarks `wm` from its
 * event times; each malformed line goes to port 1 as the text
 * "line N: REASON: LINE" (see sl_jobs_deadletters). */
typedef struct sl_jobs_lines_conf {
    const char *path;
    sl_jobs_parse_fn parse;
    void *ud;
    uint32_t width;   /* 0: variable length */
    uint32_t max_len; /* largest record parse may write */
    sl_watermark_conf wm;
} sl_jobs_lines_conf;
extern const sl_source sl_jobs_lines_source;

/* A sink (parallelism 1) for dead letters: counts them and prints the first
 * ten on stderr as "sluice CMD: TEXT". */
typedef struct sl_jobs_deadletters {
    const char *cmd;
    _Atomic uint64_t count;
} sl_jobs_deadletters;
extern const sl_operator sl_jobs_deadletter_sink;

#endif
