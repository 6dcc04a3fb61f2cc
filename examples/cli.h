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

/* Broker commands (examples/cmd_broker.c). */
int sl_cli_topic(int argc, char **argv);   /* sluice topic create|list|describe|delete */
int sl_cli_produce(int argc, char **argv); /* sluice produce TOPIC ... */
int sl_cli_consume(int argc, char **argv); /* sluice consume TOPIC ... */

/* Benchmarks (bench/bench_<name>.c); dispatched by `sluice bench <name>`. */
int sl_bench_core(int argc, char **argv);
int sl_bench_broker(int argc, char **argv);

/* The broker directory: --dir DIR, else $SLUICE_DIR, else "./sluice-data". */
const char *sl_cli_broker_dir(const char *flag_value);

#endif
