/*
 * cli/cmd_common.c - running a job's pipeline as a terminal program does:
 * signal handling, a live progress line, and a one-line summary at the end.
 * The jobs (examples/) build their pipelines and hand them to this runner
 * through a function pointer (cli_runner, a jobs_runner), so they never
 * depend on the CLI.
 *
 * Signals: the handler only calls sl_pipeline_cancel() (one atomic store),
 * so the sources stop and what is in flight drains to the sinks; windows and
 * final results that the input did not complete are not emitted (the engine
 * does not advance the watermark to +inf on a cancel). The run then says so
 * on stderr, prints its summary, and exits with 128 + signal (130 for
 * SIGINT, 143 for SIGTERM, as shells report a job killed by it), never 0:
 * its output is not the complete result. A second signal exits at once with
 * status 128 + signal. SIGPIPE does not kill the
 * process (main() handles it, cli/sluice.c): a sink that writes to a pipe
 * whose reader has gone gets EPIPE and fails with SL_EPIPE, which ends the
 * job quietly with status 0 (as ripgrep and git do): no error, no summary.
 *
 * Progress: only when stderr is a terminal and the run has lasted a second,
 * redrawn every 250 ms on one line, erased at the end. The summary line is
 * printed whether stderr is a terminal or not, after a successful run or one
 * stopped by a signal (then after a line saying so); a failed run prints its
 * error line instead:
 *
 *   sluice run window-agg: 1000000 in, 4021 out, 0 late, 0 dead letters, 0.42 s, 2.38 M/s
 *
 * Rate is records in per second of the whole run (elapsed from start).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"

static volatile sig_atomic_t output_closed;

static void on_sigpipe(int sig)
{
    output_closed = 1;
}

void cli_catch_sigpipe(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigpipe;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

int cli_output_closed(void)
{
    return output_closed;
}

static sl_pipeline *volatile running;
static volatile sig_atomic_t signals_seen, first_signal;

static void on_signal(int sig)
{
    if (signals_seen++) _exit(128 + sig);
    first_signal = sig;
    if (running) sl_pipeline_cancel(running);
}

/* 1234567 -> "1.23M" (progress line). */
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
    char chk[64] = "";
    sl_checkpoint_stats cs;
    sl_pipeline_checkpoint_stats(p, &cs);
    if (cs.completed || cs.failed)
        snprintf(chk, sizeof(chk), "  checkpoints %" PRIu64 " (%" PRIu64 " failed)", cs.completed,
                 cs.failed);
    fprintf(stderr, "\r\033[K  in %s  out %s  %s rec/s  %.1fs%s%s", in, out, r, st.elapsed_s, wm,
            chk);
    fflush(stderr);
}

/* The summary line: exact counts, elapsed, and the input rate. */
static void summary(sl_pipeline *p, const char *cmd)
{
    sl_pipeline_stats st;
    sl_pipeline_stats_get(p, &st);
    double rate = st.elapsed_s > 0 ? (double)st.records_in / st.elapsed_s : 0;
    char r[32];
    if (rate >= 1e9)
        snprintf(r, sizeof(r), "%.2f G/s", rate / 1e9);
    else if (rate >= 1e6)
        snprintf(r, sizeof(r), "%.2f M/s", rate / 1e6);
    else if (rate >= 1e3)
        snprintf(r, sizeof(r), "%.2f K/s", rate / 1e3);
    else
        snprintf(r, sizeof(r), "%.0f /s", rate);
    char diverted[64] = "";
#ifdef SL_PIPELINE_STATS_HAS_DIVERTED
    /* Records on late and dead-letter ports, counted by the engine
     * (sl_stream_side_as roles): shown as soon as the engine counts them. */
    snprintf(diverted, sizeof(diverted), "%" PRIu64 " late, %" PRIu64 " dead letters, ", st.late,
             st.dead_letters);
#endif
    char chk[96] = "";
    sl_checkpoint_stats cs;
    sl_pipeline_checkpoint_stats(p, &cs);
    if (cs.completed || cs.failed)
        snprintf(chk, sizeof(chk), ", %" PRIu64 " checkpoint%s (%" PRIu64 " failed)", cs.completed,
                 cs.completed == 1 ? "" : "s", cs.failed);
    fprintf(stderr, "sluice %s: %" PRIu64 " in, %" PRIu64 " out, %s%.2f s, %s%s\n", cmd,
            st.records_in, st.records_out, diverted, st.elapsed_s, r, chk);
}

int cli_run_pipeline(sl_pipeline *p, const char *cmd)
{
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    running = p;
    signals_seen = 0;
    first_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    int rc = sl_pipeline_start(p);
    sl_checkpoint_stats cs;
    sl_pipeline_checkpoint_stats(p, &cs);
    for (const char *l = cs.restore_warning; *l;) { /* one line per checkpoint skipped */
        size_t n = strcspn(l, "\n");
        fprintf(stderr, "sluice %s: warning: %.*s\n", cmd, (int)n, l);
        l += n;
        if (*l) l++;
    }
    if (rc == 0 && cs.restored_from)
        fprintf(stderr, "sluice %s: resuming from checkpoint %" PRIu64 "\n", cmd, cs.restored_from);
    int tty = isatty(2), shown = 0;
    uint64_t failed_seen = 0;
    double last_t = 0;
    uint64_t last_in = 0;
    while (rc == 0 && (rc = sl_pipeline_wait(p, 250)) == SL_EAGAIN) {
        rc = 0;
        sl_pipeline_stats st;
        sl_pipeline_stats_get(p, &st);
        sl_pipeline_checkpoint_stats(p, &cs);
        if (cs.failed > failed_seen) { /* each failed checkpoint is named once */
            failed_seen = cs.failed;
            fprintf(stderr, "%ssluice %s: warning: %s; the job goes on\n", shown ? "\r\033[K" : "",
                    cmd, cs.last_error);
        }
        if (tty && st.elapsed_s >= 1.0) {
            progress(p, &last_t, &last_in);
            shown = 1;
        }
    }
    if (shown) fprintf(stderr, "\r\033[K");
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    running = NULL;
    if (rc == SL_EPIPE) return 0; /* the reader has what it wanted */
    if (rc) {
        fprintf(stderr, "sluice %s: %s\n", cmd,
                *sl_pipeline_errmsg(p) ? sl_pipeline_errmsg(p) : sl_strerror(rc));
        return 1;
    }
    if (signals_seen) {
        int sig = first_signal;
        const char *name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
        sl_pipeline_checkpoint_stats(p, &cs);
        if (cs.last_id && sl_pipeline_canceled(p)) {
            /* A stop with a savepoint: the final checkpoint holds where the
             * sources stopped and the state; the next start resumes there. */
            fprintf(stderr,
                    "sluice %s: stopped by %s with a savepoint: checkpoint %" PRIu64
                    " is committed and the next start resumes from it\n",
                    cmd, name, cs.last_id);
            summary(p, cmd);
            return 0;
        }
        if (sl_pipeline_canceled(p))
            fprintf(stderr,
                    "sluice %s: canceled by %s: the input was cut short; results written so far "
                    "are complete, windows and totals the input did not complete were not "
                    "emitted\n",
                    cmd, name);
        else
            fprintf(stderr, "sluice %s: canceled by %s after the input had ended\n", cmd, name);
        summary(p, cmd);
        return 128 + sig;
    }
    summary(p, cmd);
    return 0;
}

static int run_for_job(void *ud, sl_pipeline *p, const char *cmd)
{
    return cli_run_pipeline(p, cmd);
}

const jobs_runner cli_runner = {.run = run_for_job, .ud = NULL};
