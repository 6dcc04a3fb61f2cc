/*
 * examples/jobs.h - the bundled jobs' entry points, and the few helpers they
 * share (option parsing as getopt_long does it, strict numbers, durations,
 * the broker directory, running a built pipeline).
 *
 * Floors: cli/ -> examples/ and bench/ -> the library's public API. A job is
 * a pipeline a user can read and copy: it includes <sluice/sluice.h> and this
 * header, nothing of the engine and nothing of the CLI. The CLI calls a job
 * as `job_NAME(argc, argv, runner)`:
 *
 *   - argv[0] is the job's name, the rest its options; the job parses them
 *     with getopt_long (--name=value, --name value, bundled short options,
 *     `--` ends options), so every job takes the common options
 *     (JOBS_COMMON_OPTIONS: --threads, --parallelism, --explain, --help);
 *   - it builds its pipeline and hands it to jobs_run(), which prints the
 *     plan for --explain, or runs it through the runner the caller gave: the
 *     CLI's runner owns what belongs to a terminal program (signals, the live
 *     progress line, the one-line summary at the end); a NULL runner runs the
 *     pipeline plainly (sl_pipeline_run);
 *   - whatever it must do after the run (flushing, reporting counts, freeing)
 *     it does itself, then returns the exit status: 0 ok, 1 runtime failure,
 *     2 usage error. Every error is one line "sluice run NAME: <problem>" on
 *     stderr.
 *
 * Why a runner passed in rather than the built pipeline handed back: a job
 * has work after its run that needs its own state (ysb frees its campaign
 * table, window-agg reports how many lines it skipped), and with a callback
 * that stays in the job's one function, in order, while the caller still
 * decides what a run looks like (the CLI: progress and summary; a test or a
 * benchmark: a plain run).
 *
 * Global state: getopt's own (optind, reset by jobs_getopt_reset() before
 * every parse) and one flag jobs_getopt() keeps beside it; so parsing is for
 * one thread, as getopt is.
 */
#ifndef SLUICE_EXAMPLES_JOBS_H
#define SLUICE_EXAMPLES_JOBS_H

#include <getopt.h>
#include <stdint.h>
#include <sluice/sluice.h>

/* --- running ---------------------------------------------------------------------- */

/* How a job's pipeline is run. run() runs p to its end and returns the exit
 * status (0, or 1 after printing "sluice CMD: <error>"; a reader that closed
 * the output, SL_EPIPE, counts as success and prints nothing). */
typedef struct jobs_runner {
    int (*run)(void *ud, sl_pipeline *p, const char *cmd);
    void *ud;
} jobs_runner;

/* The options every job takes. */
typedef struct jobs_common {
    int threads;     /* --threads N: worker threads; 0: the pipeline's default */
    int parallelism; /* --parallelism P: instances per operator; 0: not given
                      * (jobs_parallelism() gives the default) */
    int explain;     /* --explain: print the physical plan instead of running */
    /* Checkpoints: --checkpoint-dir DIR (NULL: none), --checkpoint-interval,
     * --checkpoint-timeout (ms; 0: the engine's default), --checkpoint-keep,
     * --from-checkpoint PATH, --guarantee (enum sl_guarantee, when
     * guarantee_set). */
    const char *checkpoint_dir;
    int64_t checkpoint_interval, checkpoint_timeout;
    unsigned checkpoint_keep;
    const char *from_checkpoint;
    int guarantee, guarantee_set;
    int capture;               /* --checkpoint-capture: enum sl_capture */
    const char *chk_opt_given; /* a --checkpoint-* option given (for the check) */
    /* Tracing (sluice/trace.h, sluice/otlp.h): on when --trace-out FILE
     * (OTLP/JSON lines) or --otlp-endpoint URL (OTLP/HTTP) is given, or
     * both; --trace-sample R (root spans' ratio, [0, 1]; default 1),
     * --service-name NAME (default: the job's name). */
    const char *trace_out, *otlp_endpoint, *service_name;
    double trace_sample;
    int trace_sample_given;
    const char *trace_opt_given; /* --trace-sample / --service-name given (for the check) */
    /* Monitoring (sluice/http.h): --http HOST:PORT serves /metrics, /api/job
     * and the status page while the job runs; --http-token FILE. */
    const char *http, *http_token;
} jobs_common;

/* --explain: print sl_pipeline_explain(p) on stdout and return 0 (1 after an
 * error line); else run p through r (NULL: plainly). Returns the exit status.
 * With tracing asked for, a tracer is made and handed to p (which owns it)
 * before the run (an unwritable --trace-out: a usage error, 2); the run is
 * one span "job NAME" with the pipeline's counts; after the run the spans
 * are flushed (at most 10 s) and dropped spans, if any, are told on stderr. */
int jobs_run(const jobs_runner *r, sl_pipeline *p, const char *cmd, const jobs_common *c);

/* --http and --http-token: start the job's endpoint in *out (NULL when not
 * asked for) and tell its URL on stderr. A job that runs several pipelines
 * at once shows each with sl_http_add_pipeline(); jobs_run() does this for
 * the one it runs. 0, or 2 (a usage error, told on stderr). */
int jobs_http_open(const char *cmd, const jobs_common *c, sl_http **out);

/* The instances per operator a job runs with: --parallelism P when given,
 * else --threads N (as many instances as workers, as `sluice bench` runs
 * them: without it more workers than instances have nothing to do), else 1.
 * Nodes that must stay single (one reader, one sorter, one writer) fix
 * their own parallelism whatever this says. */
int jobs_parallelism(const jobs_common *c);

/* Apply --threads and jobs_parallelism() to the whole pipeline. */
void jobs_common_apply(const jobs_common *c, sl_pipeline *p);

/* --- the bundled jobs (examples/job_<name>.c) --------------------------------------- */

int job_wordcount(int argc, char **argv, const jobs_runner *r);
int job_generate(int argc, char **argv, const jobs_runner *r);
int job_window_agg(int argc, char **argv, const jobs_runner *r);
int job_ysb(int argc, char **argv, const jobs_runner *r);
int job_crdt_replicas(int argc, char **argv, const jobs_runner *r);
int job_saga(int argc, char **argv, const jobs_runner *r);
int job_trace_collector(int argc, char **argv, const jobs_runner *r);
int job_nexmark(int argc, char **argv, const jobs_runner *r);

/* --- option parsing ----------------------------------------------------------------- */

/* getopt_long values of the common options (above any character). */
enum {
    JOBS_OPT_THREADS = 0x1000,
    JOBS_OPT_PARALLELISM,
    JOBS_OPT_EXPLAIN,
    JOBS_OPT_CHK_DIR,
    JOBS_OPT_CHK_INTERVAL,
    JOBS_OPT_CHK_TIMEOUT,
    JOBS_OPT_CHK_KEEP,
    JOBS_OPT_CHK_FROM,
    JOBS_OPT_GUARANTEE,
    JOBS_OPT_CHK_CAPTURE,
    JOBS_OPT_TRACE_SAMPLE,
    JOBS_OPT_TRACE_OUT,
    JOBS_OPT_OTLP_ENDPOINT,
    JOBS_OPT_SERVICE_NAME,
    JOBS_OPT_HTTP,
    JOBS_OPT_HTTP_TOKEN,
    JOBS_OPT_DIR,
    JOBS_OPT_KAFKA,
    JOBS_OPT_GROUP,
    JOBS_OPT_FOLLOW,
    JOBS_OPT_SESSION_TIMEOUT,
    JOBS_OPT_FIRST_FREE
};

/* Entries for a job's struct option table (before its {0} terminator). */
#define JOBS_COMMON_OPTIONS                                                      \
    {"threads", required_argument, NULL, JOBS_OPT_THREADS},                      \
        {"parallelism", required_argument, NULL, JOBS_OPT_PARALLELISM},          \
        {"explain", no_argument, NULL, JOBS_OPT_EXPLAIN},                        \
        {"checkpoint-dir", required_argument, NULL, JOBS_OPT_CHK_DIR},           \
        {"checkpoint-interval", required_argument, NULL, JOBS_OPT_CHK_INTERVAL}, \
        {"checkpoint-timeout", required_argument, NULL, JOBS_OPT_CHK_TIMEOUT},   \
        {"checkpoint-keep", required_argument, NULL, JOBS_OPT_CHK_KEEP},         \
        {"from-checkpoint", required_argument, NULL, JOBS_OPT_CHK_FROM},         \
        {"guarantee", required_argument, NULL, JOBS_OPT_GUARANTEE},              \
        {"checkpoint-capture", required_argument, NULL, JOBS_OPT_CHK_CAPTURE},   \
        {"trace-sample", required_argument, NULL, JOBS_OPT_TRACE_SAMPLE},        \
        {"trace-out", required_argument, NULL, JOBS_OPT_TRACE_OUT},              \
        {"otlp-endpoint", required_argument, NULL, JOBS_OPT_OTLP_ENDPOINT},      \
        {"service-name", required_argument, NULL, JOBS_OPT_SERVICE_NAME},        \
        {"http", required_argument, NULL, JOBS_OPT_HTTP},                        \
        {"http-token", required_argument, NULL, JOBS_OPT_HTTP_TOKEN},            \
    {                                                                            \
        "help", no_argument, NULL, 'h'                                           \
    }

/* The help paragraphs of the tracing and monitoring options (every job takes them). */
extern const char jobs_trace_help[];

/* Returned by jobs_opt when --help / -h was given. */
#define JOBS_HELP (-1)

/* Reset getopt for a new parse of argv (getopt keeps its position in globals;
 * glibc starts over, bundles included, when optind is 0). */
void jobs_getopt_reset(void);
/* getopt_long, silent (errors are reported by jobs_opt, which needs to know
 * where the option came from). Option strings start with ':' so that a
 * missing value ':' is told from an unknown option '?'. GNU permutation:
 * operands may come between options; `--` ends the options. */
int jobs_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts);

/* Handle a getopt_long result `opt` that the job did not: a common option
 * (stored in *c, which may be NULL for commands without them), -h / --help
 * (returns JOBS_HELP), or an error: '?' (unknown option, or a value given to
 * an option that takes none) and ':' (missing value) print one line
 * "sluice CMD: ..." naming the option and return 2. Returns 0 when handled. */
int jobs_opt(const char *cmd, int opt, char **argv, jobs_common *c);

/* After the loop: arguments left over are an error ("unexpected argument
 * 'X'"); returns 2 after printing it, else 0. */
int jobs_no_operands(const char *cmd, int argc, char **argv);

/* A whole number in [lo, hi] given to option `opt`; on error prints "sluice
 * CMD: OPT needs a whole number from LO to HI, not 'VAL'" and returns 2. */
int jobs_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi,
             long long *out);

/* "250ms", "10s", "1m", "1h" or plain milliseconds (> 0 unless allow_zero).
 * Returns 0, or -1 when malformed. */
int jobs_duration(const char *s, int allow_zero, int64_t *out);

/* --- topics: the built-in broker or a Kafka cluster (examples/jobs_topics.c) -------- */

/* Where a job's --topic / --out-topic live. Without --kafka: topics of the
 * built-in broker in --dir, in process. With --kafka BOOTSTRAP: topics of
 * that Kafka cluster (a real one, or `sluice broker serve`), through
 * librdkafka, with -X key=value properties (as kcat's). A topic source
 * reads to the end offsets of its start unless --follow (or --group). */
#define JOBS_MAX_PROPS 64
typedef struct jobs_topics {
    const char *job; /* "window-agg": names transactional ids */
    const char *dir;
    const char *kafka;
    const char *props[JOBS_MAX_PROPS + 1]; /* NULL-terminated */
    int n_props;
    const char *group;
    int follow;
    int64_t session_timeout; /* --session-timeout (ms; 0: the group's default) */
    /* set by jobs_topics_check: with --kafka and an input topic, the group
     * whose committed offsets follow the checkpoints (--group, else
     * "sluice-JOB-TOPIC"); the output's transactions carry them */
    char offsets_group[300];
} jobs_topics;

/* Entries for a job's option table; the job's short options add "X:". */
#define JOBS_TOPIC_OPTIONS                                                   \
    {"dir", required_argument, NULL, JOBS_OPT_DIR},                          \
        {"kafka", required_argument, NULL, JOBS_OPT_KAFKA},                  \
        {"group", required_argument, NULL, JOBS_OPT_GROUP},                  \
        {"follow", no_argument, NULL, JOBS_OPT_FOLLOW},                      \
    {                                                                        \
        "session-timeout", required_argument, NULL, JOBS_OPT_SESSION_TIMEOUT \
    }

/* Handle a topic option (JOBS_OPT_DIR .. JOBS_OPT_FOLLOW, 'X'): 0 when
 * handled, 2 after a usage error line, 1 when opt is not one. */
int jobs_topics_opt(const char *cmd, int opt, const char *arg, jobs_topics *t);
/* After parsing: options that make no sense together or without a topic.
 * in_topic / out_topic: the job's --topic / --out-topic (NULL: not given).
 * Returns 0 or 2 after a usage error line. */
int jobs_topics_check(const char *cmd, jobs_topics *t, const char *in_topic, const char *out_topic);
/* A source node reading `topic` (the broker record layout, or what parse
 * makes of each value), with every partition a split and its own watermark. */
sl_stream *jobs_topic_source(sl_pipeline *p, const jobs_topics *t, const sl_kafka_task *task,
                             const char *name, const char *topic, sl_line_parse_fn parse, void *ud,
                             uint32_t max_len, uint32_t width, const sl_watermark_conf *wm);
/* A sink node writing s to `topic`: values by format, keys by key (NULL:
 * none), both given ud. The conf lives as long as p; t must too (its props). The broker's
 * sink runs as one instance (one writer per partition). */
int jobs_topic_sink(sl_pipeline *p, sl_stream *s, const jobs_topics *t, const sl_kafka_task *task,
                    const char *name, const char *topic, sl_key_fn key, sl_format_fn format,
                    void *ud);
/* With --group: run the job as a member of Kafka consumer group t->group
 * (sluice/kafka.h, sl_kafka_group): build makes the graph of one input
 * partition (task), with jobs_topic_source/sink given the task. A job whose
 * key is not the input's partitioning key gives repartition too (NULL:
 * none): it then makes the graph of an input partition, which ends in a sink
 * into sl_kafka_task_repartition_topic(task) keyed by the job's key, and
 * build makes the graph of a partition of that topic (its source reads
 * sl_kafka_task_topic(task)); the group's repartition topic is
 * "<group>.repartition", with the input's partition count. Until SIGINT or
 * SIGTERM, which stop every task with a final checkpoint (exit 0). c gives
 * --threads (per task), --checkpoint-interval and --checkpoint-dir (the
 * local work directory). Returns the exit status. */
int jobs_group_run(const char *cmd, const jobs_topics *t, const char *topic, const jobs_common *c,
                   sl_kafka_build_fn build, sl_kafka_build_fn repartition, void *ud);
/* The help lines of the topic options. */
extern const char jobs_topics_help[];

/* The broker directory: --dir DIR, else $SLUICE_DIR, else "./sluice-data". */
const char *jobs_broker_dir(const char *flag_value);
/* --dir's value v: sets *dir and returns 0, or, for an empty v (which must
 * not fall back silently to the default), prints "sluice CMD: --dir needs a
 * directory, not an empty string" and returns 2. */
int jobs_dir_opt(const char *cmd, const char *v, const char **dir);

#endif
