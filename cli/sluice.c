/*
 * examples/sluice.c - the `sluice` command: runs the bundled jobs, drives the
 * built-in broker and runs the benchmarks.
 *
 *   sluice jobs                      list the bundled jobs
 *   sluice run JOB [options]         run one (JOB --help for its options)
 *   sluice bench NAME [--csv]        run a benchmark
 *   sluice topic|produce|consume     the built-in broker
 *   sluice --version | --help
 *
 * Exit status: 0 success, 1 runtime failure, 2 usage error; every error is
 * one line on stderr that names the problem.
 */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "examples/jobs_window.h"

static const sl_cli_job jobs[] = {
    {"wordcount", "count words of a text (--input FILE or stdin), most frequent first",
     sl_job_wordcount},
    {"generate", "deterministic event_time_ms,key,value events, to stdout or a topic",
     sl_job_generate},
    {"window-agg", "windowed aggregates of CSV event_time_ms,key,value lines", sl_job_window_agg},
    {"ysb", "Yahoo Streaming Benchmark: views per campaign per 10 s window", sl_job_ysb},
};
#define N_JOBS (sizeof(jobs) / sizeof(jobs[0]))

static const struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} benches[] = {
    {"core", "generator -> filter -> key_by -> keyed count, against a hand-written loop",
     sl_bench_core},
    {"ysb", "the ysb job on its generator, against a hand-written YSB loop", sl_bench_ysb},
    {"windows", "sliding against tumbling windows; window result latency", sl_bench_windows},
    {"broker", "built-in broker: append against dd, sequential read, latency", sl_bench_broker},
};
#define N_BENCHES (sizeof(benches) / sizeof(benches[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice <command> [options]\n\n"
               "commands:\n"
               "  jobs                       list the bundled jobs\n"
               "  run JOB [options]          run a bundled job (sluice run JOB --help)\n"
               "  bench NAME [--csv]         run a benchmark (sluice bench --help)\n"
               "  topic create|list|describe|delete ...   manage broker topics\n"
               "  produce TOPIC [options]    append lines from stdin to a topic\n"
               "  consume TOPIC [options]    print records of a topic\n"
               "  --version                  print versions of sluice and its allocator\n"
               "\ncommon job options: --threads N (worker threads), --parallelism P\n");
}

static int cmd_jobs(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: sluice jobs\nLists the bundled jobs that `sluice run` runs.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "sluice jobs: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
    for (size_t i = 0; i < N_JOBS; i++) printf("%-12s %s\n", jobs[i].name, jobs[i].summary);
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: sluice run JOB [--threads N] [--parallelism P] [job options]\n"
                   "jobs (sluice jobs lists them; sluice run JOB --help for options):\n");
        for (size_t i = 0; i < N_JOBS; i++)
            fprintf(f, "  %-12s %s\n", jobs[i].name, jobs[i].summary);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < N_JOBS; i++)
        if (strcmp(argv[1], jobs[i].name) == 0) return jobs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sluice run: unknown job '%s' (sluice jobs lists them)\n", argv[1]);
    return 2;
}

static int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: sluice bench NAME [--csv] [options]\nbenchmarks:\n");
        for (size_t i = 0; i < N_BENCHES; i++)
            fprintf(f, "  %-8s %s\n", benches[i].name, benches[i].summary);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < N_BENCHES; i++)
        if (strcmp(argv[1], benches[i].name) == 0) return benches[i].run(argc - 1, argv + 1);
    fprintf(stderr, "sluice bench: unknown benchmark '%s' (sluice bench --help lists them)\n",
            argv[1]);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("sluice %s\nallocator: %s\n", sl_version(), sl_allocator());
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "jobs") == 0) return cmd_jobs(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "topic") == 0) return sl_cli_topic(argc - 1, argv + 1);
    if (strcmp(cmd, "produce") == 0) return sl_cli_produce(argc - 1, argv + 1);
    if (strcmp(cmd, "consume") == 0) return sl_cli_consume(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command '%s' (sluice --help lists them)\n", cmd);
    return 2;
}
