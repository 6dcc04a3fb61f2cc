/*
 * examples/cli.h - the pieces the `sluice` command-line program is made of.
 *
 * examples/sluice.c dispatches `sluice <command>` to the functions below. Each
 * takes the arguments after the command word (argv[0] is the command word
 * itself, as for main), prints errors as one line "sluice <cmd>: <problem>" on
 * stderr, and returns the process exit status (0 ok, 1 runtime failure, 2 usage
 * error). Each handles --help itself.
 */
#ifndef SLUICE_EXAMPLES_CLI_H
#define SLUICE_EXAMPLES_CLI_H

#include "sluice/sluice.h"

/* Broker commands (examples/cmd_broker.c). */
int sl_cli_topic(int argc, char **argv);   /* sluice topic create|list|describe|delete */
int sl_cli_produce(int argc, char **argv); /* sluice produce TOPIC ... */
int sl_cli_consume(int argc, char **argv); /* sluice consume TOPIC ... */

/* Benchmarks (bench/bench_<name>.c); dispatched by `sluice bench <name>`. */
int sl_bench_core(int argc, char **argv);
int sl_bench_broker(int argc, char **argv);

/* Bundled jobs (examples/job_<name>.c): `sluice run NAME [options]`. */
typedef struct sl_cli_job {
    const char *name;
    const char *summary; /* one line for `sluice jobs` */
    int (*run)(int argc, char **argv);
} sl_cli_job;
int sl_job_wordcount(int argc, char **argv);
int sl_job_generate(int argc, char **argv);

/* --- shared by commands (examples/cmd_common.c) ------------------------------- */

/* Parse a whole number in [lo, hi] given to option `opt` of command `cmd`;
 * on error print "sluice CMD: OPT needs ..." and return 2 (a usage error). */
int sl_cli_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi,
               long long *out);
/* Options every job takes. Returns 1 if argv[*i] was one (consuming its
 * value), 0 if not, 2 after a usage error (printed). */
typedef struct sl_cli_common {
    int threads;     /* 0: the pipeline's default (number of CPUs) */
    int parallelism; /* 0: 1 */
} sl_cli_common;
int sl_cli_common_opt(const char *cmd, int argc, char **argv, int *i, sl_cli_common *c);
/* Apply --threads / --parallelism to p. */
void sl_cli_common_apply(const sl_cli_common *c, sl_pipeline *p);
/* Run p: SIGINT/SIGTERM cancel it (a second one exits at once); on a terminal
 * a run longer than a second shows a live progress line on stderr. Prints
 * "sluice CMD: <error>" on failure. Returns the exit status (0 or 1). */
int sl_cli_run_pipeline(sl_pipeline *p, const char *cmd);

/* The broker directory: --dir DIR, else $SLUICE_DIR, else "./sluice-data". */
const char *sl_cli_broker_dir(const char *flag_value);

#endif
