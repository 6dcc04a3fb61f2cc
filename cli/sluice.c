/*
 * cli/sluice.c - the `sluice` command: runs the bundled jobs, drives the
 * built-in broker and runs the benchmarks.
 *
 *   sluice jobs                      list the bundled jobs
 *   sluice run JOB [options]         run one (JOB --help for its options;
 *                                    --explain prints the plan instead)
 *   sluice bench NAME [options]      run a benchmark (--plot FILE.svg:
 *                                    its figures as an SVG, bench/plot.h)
 *   sluice topic|produce|consume     the built-in broker
 *   sluice status URL                a running job's summary (its --http endpoint)
 *   sluice --version | --help
 *
 * Exit status: 0 success, 1 runtime failure, 2 usage error; every error is
 * one line on stderr that names the problem. Options are parsed by
 * getopt_long everywhere (--name=value or --name value, bundled short
 * options, `--` ends options); at this level they stop at the command word.
 *
 * Standard output closed by its reader (`sluice ... | head -1`): SIGPIPE is
 * caught for the whole process (cli_catch_sigpipe: it only sets the flag
 * cli_output_closed reads), so writes
 * fail with EPIPE instead of killing the process; each command then ends
 * quietly with status 0, and the final flush of stdout here says nothing
 * either. Any other write error on stdout is reported and exits 1 (once: a
 * command that has already failed has printed its own line).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "bench/plot.h"
#include "cli/cli.h"

static const struct {
    const char *name;
    const char *summary; /* one line for `sluice jobs` */
    int (*run)(int argc, char **argv, const jobs_runner *r);
} jobs[] = {
    {"wordcount", "count words of a text (--input FILE or stdin), most frequent first",
     job_wordcount},
    {"generate", "deterministic event_time_ms,key,value events, to stdout or a topic",
     job_generate},
    {"window-agg", "windowed aggregates of CSV event_time_ms,key,value lines", job_window_agg},
    {"ysb", "Yahoo Streaming Benchmark: views per campaign per 10 s window", job_ysb},
    {"crdt-replicas", "N regions converge on CRDT page stats by exchanging deltas on a topic",
     job_crdt_replicas},
    {"saga", "orders as sagas (reserve, charge, ship) against participants on topics", job_saga},
    {"trace-collector", "assemble OTLP/JSON spans into traces, tail-sample them, span statistics",
     job_trace_collector},
    {"nexmark", "NEXMark queries on its generator's people, auctions and bids (or a dump)",
     job_nexmark},
};
#define N_JOBS (sizeof(jobs) / sizeof(jobs[0]))

static const struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} benches[] = {
    {"core", "generator -> filter -> key_by -> keyed count, against a hand-written loop",
     bench_core},
    {"ysb", "the ysb job on its generator, against a hand-written YSB loop", bench_ysb},
    {"windows", "sliding against tumbling windows; window result latency", bench_windows},
    {"window-agg", "the window-agg job on CSV lines, 1 k and 1 M keys, against a hand loop",
     bench_window_agg},
    {"nexmark", "NEXMark queries on the generator, 1 and 2 threads, against Flink per core",
     bench_nexmark},
    {"crdt", "CRDT updates, merges, sizes; window distinct against count and exact", bench_crdt},
    {"saga", "the saga job end to end against a hand-written saga loop; latency, state",
     bench_saga},
    {"trace", "trace-collector: spans/s assembled and sampled (1, 2 threads), memory per trace",
     bench_trace},
    {"metrics", "bench core while its /metrics and /api/job are scraped 10 times a second",
     bench_metrics},
    {"broker", "built-in broker: append against dd, sequential read, latency", bench_broker},
    {"checkpoint", "throughput with 1 s / 100 ms checkpoints, stalls, 1M-key recovery",
     bench_checkpoint},
    {"kafka", "Kafka server via librdkafka against its mock: produce, fetch, latency", bench_kafka},
    {"kafka-e2e", "jobs through Kafka (own server) against the built-in broker: ysb, latency",
     bench_kafka_e2e},
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
               "  group describe GROUP --topic T -b HOST   a group's committed offsets and lag\n"
               "  broker serve [options]     serve the broker to Kafka clients\n"
               "  checkpoints DIR            list the checkpoints in a checkpoint directory\n"
               "  status URL [--json]        a running job's summary from its --http endpoint\n"
               "  --version                  print versions of sluice and its allocator\n"
               "\ncommon job options: --threads N (worker threads), --parallelism P\n"
               "  (instances per operator; default: --threads N, else 1),\n"
               "  --explain (print the physical plan and exit)\n");
}

/* Options before a subcommand's operand: only -h / --help; the rest is the
 * operand's (getopt stops at the first non-option, "+"). Returns JOBS_HELP,
 * 2 after an error, or 0 with optind at the operand. */
static int leading_opts(const char *cmd, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
    int c;
    jobs_getopt_reset();
    while ((c = jobs_getopt(argc, argv, "+:h", opts)) != -1) {
        int r = jobs_opt(cmd, c, argv, NULL);
        if (r) return r;
    }
    return 0;
}

static int cmd_jobs(int argc, char **argv)
{
    int r = leading_opts("jobs", argc, argv);
    if (r == JOBS_HELP) {
        printf("usage: sluice jobs\nLists the bundled jobs that `sluice run` runs.\n");
        return 0;
    }
    if (r || jobs_no_operands("jobs", argc, argv)) return 2;
    for (size_t i = 0; i < N_JOBS; i++) printf("%-15s %s\n", jobs[i].name, jobs[i].summary);
    return 0;
}

static void run_usage(FILE *f)
{
    fprintf(f, "usage: sluice run JOB [--threads N] [--parallelism P] [--explain] [job options]\n"
               "jobs (sluice jobs lists them; sluice run JOB --help for options):\n");
    for (size_t i = 0; i < N_JOBS; i++) fprintf(f, "  %-12s %s\n", jobs[i].name, jobs[i].summary);
}

static int cmd_run(int argc, char **argv)
{
    int r = leading_opts("run", argc, argv);
    if (r == JOBS_HELP) {
        run_usage(stdout);
        return 0;
    }
    if (r) return 2;
    if (optind >= argc) {
        fprintf(stderr, "sluice run: missing JOB (sluice jobs lists them)\n");
        return 2;
    }
    const char *name = argv[optind];
    for (size_t i = 0; i < N_JOBS; i++)
        if (strcmp(name, jobs[i].name) == 0)
            return jobs[i].run(argc - optind, argv + optind, &cli_runner);
    fprintf(stderr, "sluice run: unknown job '%s' (sluice jobs lists them)\n", name);
    return 2;
}

/* `sluice bench NAME ... --plot FILE`: --plot FILE (or --plot=FILE) is taken
 * out of the bench's arguments (up to a `--`), so that no bench parses it;
 * FILE is created or truncated before the bench runs (a bad path fails at
 * once, not after a long run), the bench's rows are recorded
 * (bench/plot.h), and the SVG is written when the bench returned 0. With
 * --help or -h among the arguments the bench prints its usage and no plot is
 * made. argv[0] is NAME. */
static int bench_with_plot(const char *name, int (*run)(int, char **), int argc, char **argv)
{
    const char *plot = NULL;
    int help = 0, n = 0;
    char **av = calloc((size_t)argc + 1, sizeof(char *));
    if (!av) {
        fprintf(stderr, "sluice bench %s: out of memory\n", name);
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (i > 0 && strcmp(a, "--") == 0) {
            while (i < argc) av[n++] = argv[i++];
            break;
        }
        if (i > 0 && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) help = 1;
        if (i > 0 && (strcmp(a, "--plot") == 0 || strncmp(a, "--plot=", 7) == 0)) {
            const char *v = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !*v || (a[6] != '=' && v[0] == '-' && v[1] != 0)) {
                fprintf(stderr, "sluice bench %s: --plot needs a FILE (an .svg to write)\n", name);
                free(av);
                return 2;
            }
            plot = v;
            continue;
        }
        av[n++] = argv[i];
    }
    av[n] = NULL;
    if (plot && !help) {
        int rc = bench_plot_begin(plot);
        if (rc) {
            fprintf(stderr, "sluice bench %s: --plot %s: %s\n", name, plot, strerror(-rc));
            free(av);
            return 1;
        }
    }
    int status = run(n, av);
    free(av);
    if (bench_plot_recording()) {
        int rc = bench_plot_end(name, status == 0);
        if (rc && status == 0) {
            fprintf(stderr, "sluice bench %s: --plot %s: %s\n", name, plot, strerror(-rc));
            status = 1;
        }
    }
    return status;
}

static int cmd_bench(int argc, char **argv)
{
    int r = leading_opts("bench", argc, argv);
    if (r == JOBS_HELP) {
        printf("usage: sluice bench NAME [--csv] [--plot FILE.svg] [options]\n"
               "--plot FILE.svg draws the figures of the run (events/s against the in-run\n"
               "baseline, latency percentiles) as an SVG.\nbenchmarks:\n");
        for (size_t i = 0; i < N_BENCHES; i++)
            printf("  %-11s %s\n", benches[i].name, benches[i].summary);
        return 0;
    }
    if (r) return 2;
    if (optind >= argc) {
        fprintf(stderr, "sluice bench: missing NAME (sluice bench --help lists them)\n");
        return 2;
    }
    const char *name = argv[optind];
    for (size_t i = 0; i < N_BENCHES; i++)
        if (strcmp(name, benches[i].name) == 0)
            return bench_with_plot(benches[i].name, benches[i].run, argc - optind, argv + optind);
    fprintf(stderr, "sluice bench: unknown benchmark '%s' (sluice bench --help lists them)\n",
            name);
    return 2;
}

static int dispatch(int argc, char **argv)
{
    enum { O_VERSION = JOBS_OPT_FIRST_FREE };
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, O_VERSION}, {0}};
    int c;
    jobs_getopt_reset();
    while ((c = jobs_getopt(argc, argv, "+:h", opts)) != -1) {
        if (c == O_VERSION) {
            printf("sluice %s\nallocator: %s\n", sl_version(), sl_allocator());
            return 0;
        }
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        return jobs_opt(NULL, c, argv, NULL); /* "sluice: unknown option ..." */
    }
    if (optind >= argc) {
        fprintf(stderr, "sluice: missing command (sluice --help lists them)\n");
        return 2;
    }
    argc -= optind;
    argv += optind;
    const char *cmd = argv[0];
    if (strcmp(cmd, "version") == 0) {
        printf("sluice %s\nallocator: %s\n", sl_version(), sl_allocator());
        return 0;
    }
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "jobs") == 0) return cmd_jobs(argc, argv);
    if (strcmp(cmd, "run") == 0) return cmd_run(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "topic") == 0) return cli_topic(argc, argv);
    if (strcmp(cmd, "produce") == 0) return cli_produce(argc, argv);
    if (strcmp(cmd, "consume") == 0) return cli_consume(argc, argv);
    if (strcmp(cmd, "broker") == 0) return cli_broker(argc, argv);
    if (strcmp(cmd, "checkpoints") == 0) return cli_checkpoints(argc, argv);
    if (strcmp(cmd, "group") == 0) return cli_group(argc, argv);
    if (strcmp(cmd, "status") == 0) return cli_status(argc, argv);
    fprintf(stderr, "sluice: unknown command '%s' (sluice --help lists them)\n", cmd);
    return 2;
}

int main(int argc, char **argv)
{
    cli_catch_sigpipe();
    int status = dispatch(argc, argv);
    int flushed = fflush(stdout) == 0, e = errno;
    /* A command that failed has said why already (one line per error). */
    if ((!flushed || ferror(stdout)) && !cli_output_closed() && status == 0) {
        fprintf(stderr, "sluice: cannot write standard output%s%s\n", flushed ? "" : ": ",
                flushed ? "" : strerror(e));
        if (status == 0) status = 1;
    }
    return status;
}
