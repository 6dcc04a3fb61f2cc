/*
 * bench/bench.h - the benchmarks' entry points, called by the CLI as
 * `sluice bench NAME [options]`.
 *
 * Floors: bench/ depends on the library's public API and on the bundled jobs
 * (examples/: bench ysb runs the ysb job's pipeline), never on cli/. Each
 * entry point takes argv[0] = the benchmark's name and its options (parsed
 * with getopt_long through examples/jobs.h's helpers), handles --help, prints
 * errors as one line "sluice bench NAME: <problem>" and returns the exit
 * status (0 ok, 1 failure, 2 usage error).
 */
#ifndef SLUICE_BENCH_BENCH_H
#define SLUICE_BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>

int bench_core(int argc, char **argv);    /* bench/bench_core.c */
int bench_ysb(int argc, char **argv);     /* bench/bench_ysb.c */
int bench_windows(int argc, char **argv); /* bench/bench_windows.c */
int bench_broker(int argc, char **argv);  /* bench/bench_broker.c */
/* bench/bench_checkpoint.c */
int bench_checkpoint(int argc, char **argv);
/* bench/bench_kafka.c */
int bench_kafka(int argc, char **argv);
/* bench/bench_crdt.c */
int bench_crdt(int argc, char **argv);
/* bench/bench_kafka_e2e.c */
int bench_kafka_e2e(int argc, char **argv);
/* bench/bench_saga.c */
int bench_saga(int argc, char **argv);
/* bench/bench_trace.c */
int bench_trace(int argc, char **argv);
/* bench/bench_window_agg.c */
int bench_window_agg(int argc, char **argv);
/* bench/bench_nexmark.c */
int bench_nexmark(int argc, char **argv);
/* bench/bench_metrics.c */
int bench_metrics(int argc, char **argv);

/* bench core's work, for other benchmarks that measure a cost on top of it
 * (bench trace's overhead rows). bench_core_loop: the hand-written loop;
 * bench_core_engine: the pipeline on `threads` workers, with `tracer` (NULL:
 * none; the pipeline takes it over, and its counts go to *stats if stats is
 * not NULL, read when the run ended) and, when `point` is set, a trace
 * point right after the source, and shown by `http` while it runs (NULL:
 * no endpoint). Both fill counts[BENCH_CORE_KEYS]; the
 * engine returns 0 or an SL_E code with a message in err. */
#define BENCH_CORE_KEYS 10000
struct sl_tracer;
struct sl_tracer_stats;
struct sl_http;
void bench_core_loop(uint64_t n, int64_t *counts);
int bench_core_engine(uint64_t n, int threads, int point, struct sl_tracer *tracer,
                      struct sl_tracer_stats *stats, struct sl_http *http, int64_t *counts,
                      char *err, size_t errlen);

#endif
