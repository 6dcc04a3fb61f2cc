/*
 * cli/cli.h - the pieces the `sluice` command-line program is made of.
 *
 * Floors: cli/ sits on top. It calls the bundled jobs (examples/jobs.h) and
 * the benchmarks (bench/bench.h), which know nothing of it, and the library
 * through its public API. What belongs to a terminal program lives here and
 * only here: the command dispatcher, signal handling, the live progress line
 * and the one-line summary at the end of a job (the runner the jobs are given,
 * cli_runner), and the broker commands.
 *
 * cli/sluice.c dispatches `sluice <command>` to the functions below. Each
 * takes the arguments after the command word (argv[0] is the command word
 * itself, as for main), parses them with getopt_long, prints errors as one
 * line "sluice <cmd>: <problem>" on stderr, and returns the process exit
 * status (0 ok, 1 runtime failure, 2 usage error). Each handles --help itself.
 */
#ifndef SLUICE_CLI_CLI_H
#define SLUICE_CLI_CLI_H

#include <sluice/sluice.h>
#include "examples/jobs.h"

/* Broker commands (cli/cmd_broker.c). */
int cli_topic(int argc, char **argv);   /* sluice topic create|list|describe|delete|clean */
int cli_produce(int argc, char **argv); /* sluice produce TOPIC ... */
int cli_consume(int argc, char **argv); /* sluice consume TOPIC ... */
int cli_broker(int argc, char **argv);  /* sluice broker serve ... */
/* sluice checkpoints DIR (cli/cmd_checkpoints.c). */
int cli_checkpoints(int argc, char **argv);
int cli_group(int argc, char **argv); /* sluice group describe GROUP --topic T -b HOST */
/* sluice status URL: a running job's summary from its --http endpoint (cli/cmd_status.c). */
int cli_status(int argc, char **argv);

/* Whether standard output's reader has gone (SIGPIPE seen; cli/sluice.c
 * catches it for the whole process so writes fail with EPIPE instead). A
 * command that sees a write error with this set ends quietly, status 0. */
int cli_output_closed(void);
/* Catch SIGPIPE for the whole process (main calls it once, first). */
void cli_catch_sigpipe(void);

/* Running a job's pipeline (cli/cmd_common.c). Runs p: SIGINT/SIGTERM cancel
 * it (a second one exits at once); on a terminal a run longer than a second
 * shows a live progress line on stderr; at the end one summary line on stderr
 * (terminal or not): "sluice CMD: N in, N out, [N late, N dead letters, ]T s,
 * R/s". On failure prints "sluice CMD: <error>" instead. A reader that closed
 * the output (SL_EPIPE) ends the job quietly: no message, status 0. Returns
 * the exit status (0 or 1). */
int cli_run_pipeline(sl_pipeline *p, const char *cmd);
/* The runner handed to jobs: cli_run_pipeline. */
extern const jobs_runner cli_runner;

#endif
