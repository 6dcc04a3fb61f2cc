/*
 * examples/cmd_common.c - what every `sluice` command shares: strict number
 * parsing with one-line errors, the options every job takes, and running a
 * pipeline with signal handling and a live progress line.
 *
 * Signals: the handler only calls sl_pipeline_cancel() (one atomic store),
 * so the sources stop and what is in flight drains to the sinks; a second
 * signal exits at once with status 130.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"

int sl_cli_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi,
               long long *out)
{
    char *end;
    errno = 0;
    long long v = val ? strtoll(val, &end, 10) : 0;
    if (!val || !*val || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "sluice %s: %s needs a whole number from %lld to %lld, not '%s'\n", cmd,
                opt, lo, hi, val ? val : "");
        return 2;
    }
    *out = v;
    return 0;
}

int sl_cli_common_opt(const char *cmd, int argc, char **argv, int *i, sl_cli_common *c)
{
    const char *a = argv[*i];
    int *dst = NULL;
    long long hi = 0;
    if (strcmp(a, "--threads") == 0) {
        dst = &c->threads;
        hi = 256;
    } else if (strcmp(a, "--parallelism") == 0) {
        dst = &c->parallelism;
        hi = SL_KEY_GROUPS;
    } else {
        return 0;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "sluice %s: %s needs a value\n", cmd, a);
        return 2;
    }
    long long v;
    if (sl_cli_int(cmd, a, argv[++*i], 1, hi, &v)) return 2;
    *dst = (int)v;
    return 1;
}

void sl_cli_common_apply(const sl_cli_common *c, sl_pipeline *p)
{
    if (c->threads) sl_pipeline_set_threads(p, c->threads);
    if (c->parallelism) sl_pipeline_set_parallelism(p, c->parallelism);
}

static sl_pipeline *volatile running;
static volatile sig_atomic_t signals_seen;

static void on_signal(int sig)
{
    if (signals_seen++) _exit(128 + sig);
    if (running) sl_pipeline_cancel(running);
}

static void human(char *out, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(out, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(out, n, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(out, n, "%.1fK", v / 1e3);
    else
        snprintf(out, n, "%.0f", v);
}

static void progress(sl_pipeline *p, double *last_t, uint64_t *last_in)
{
    sl_pipeline_stats st;
    sl_pipeline_stats_get(p, &st);
    double dt = st.elapsed_s - *last_t;
    double rate = dt > 0 ? (double)(st.records_in - *last_in) / dt : 0;
    *last_t = st.elapsed_s;
    *last_in = st.records_in;
    char in[32], out[32], r[32], wm[48] = "";
    human(in, sizeof(in), (double)st.records_in);
    human(out, sizeof(out), (double)st.records_out);
    human(r, sizeof(r), rate);
    if (st.watermark != SL_TIME_MIN && st.watermark != SL_TIME_MAX)
        snprintf(wm, sizeof(wm), "  watermark %" PRId64, st.watermark);
    fprintf(stderr, "\r\033[K  in %s  out %s  %s rec/s  %.1fs%s", in, out, r, st.elapsed_s, wm);
    fflush(stderr);
}

int sl_cli_run_pipeline(sl_pipeline *p, const char *cmd)
{
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    running = p;
    signals_seen = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    signal(SIGPIPE, SIG_IGN); /* a closed output is an error the sink reports */

    int rc = sl_pipeline_start(p);
    int tty = isatty(2), shown = 0;
    double last_t = 0;
    uint64_t last_in = 0;
    while (rc == 0 && (rc = sl_pipeline_wait(p, 250)) == SL_EAGAIN) {
        rc = 0;
        sl_pipeline_stats st;
        sl_pipeline_stats_get(p, &st);
        if (tty && st.elapsed_s >= 1.0) {
            progress(p, &last_t, &last_in);
            shown = 1;
        }
    }
    if (shown) fprintf(stderr, "\r\033[K");
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    running = NULL;
    if (rc) {
        fprintf(stderr, "sluice %s: %s\n", cmd,
                *sl_pipeline_errmsg(p) ? sl_pipeline_errmsg(p) : sl_strerror(rc));
        return 1;
    }
    if (signals_seen)
        fprintf(stderr, "sluice %s: stopped by signal; results so far written\n", cmd);
    return 0;
}
