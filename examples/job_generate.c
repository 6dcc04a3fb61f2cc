/*
 * examples/job_generate.c - the bundled job `generate`: deterministic test
 * events as CSV lines `event_time_ms,key,value`, for window-agg and the
 * broker, written to standard output or appended to a broker topic.
 *
 *   generator (fixed 32-byte events) -> sink: stdout lines, or the broker
 *   sink (the key is the event's key, so Kafka's partitioner places it)
 *
 * Event i happens at start + i * 1000 / rate + d ms, d drawn from
 * [0, --disorder] (so the stream is out of order within that bound); its key
 * is one of --keys keys and its value a number from 0 to 999. The same
 * options always give the same events.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jobs.h"

typedef struct event {
    int64_t ts;
    int64_t value;
    char key[16];
} event;

typedef struct gen_opts {
    long long keys, rate, disorder, start;
} gen_opts;

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int make(void *out, uint64_t seq, int64_t *ts, void *ud)
{
    const gen_opts *o = ud;
    event *e = out;
    uint64_t h = mix(seq);
    int64_t t = o->start + (int64_t)(seq * 1000 / (uint64_t)o->rate);
    if (o->disorder) t += o->disorder - (int64_t)(h % (uint64_t)(o->disorder + 1));
    e->ts = t;
    e->value = (int64_t)((h >> 20) % 1000);
    snprintf(e->key, sizeof(e->key), "k%" PRIu64, (h >> 40) % (uint64_t)o->keys);
    *ts = t;
    return 0;
}

static int as_csv(sl_buf *out, const void *rec, uint32_t len, int64_t ts, void *ud)
{
    const event *e = rec;
    return sl_buf_printf(out, "%" PRId64 ",%s,%" PRId64 "%s", e->ts, e->key, e->value,
                         ud ? "\n" : "");
}

static sl_bytes key_of(const void *rec, uint32_t len, void *ud)
{
    const event *e = rec;
    sl_bytes k = {e->key, (uint32_t)strlen(e->key)};
    return k;
}

static void help(void)
{
    printf("usage: sluice run generate [--events N] [--keys K] [--rate R] [--disorder MS]\n"
           "                           [--start MS] [--topic NAME [--dir DIR | --kafka BOOTSTRAP\n"
           "                           [-X KEY=VALUE]...]] [--threads N] [--explain]\n"
           "                           [--checkpoint-dir DIR ...] (as window-agg --help says)\n"
           "Writes N events as CSV lines event_time_ms,key,value (the input of window-agg):\n"
           "R events per second of event time (default 1000) from MS (default 0), out of\n"
           "order by up to --disorder ms (default 0), over K keys (default 100). With\n"
           "--topic they are appended to a topic (one record per event, keyed by its key;\n"
           "the built-in broker's in --dir, or a Kafka cluster's with --kafka), else\n"
           "printed on standard output.\n");
    fputs(jobs_trace_help, stdout);
}

int job_generate(int argc, char **argv, const jobs_runner *run)
{
    const char *cmd = "run generate";
    enum { O_EVENTS = JOBS_OPT_FIRST_FREE, O_KEYS, O_RATE, O_DISORDER, O_START, O_TOPIC };
    static const struct option opts[] = {{"events", required_argument, NULL, O_EVENTS},
                                         {"keys", required_argument, NULL, O_KEYS},
                                         {"rate", required_argument, NULL, O_RATE},
                                         {"disorder", required_argument, NULL, O_DISORDER},
                                         {"start", required_argument, NULL, O_START},
                                         {"topic", required_argument, NULL, O_TOPIC},
                                         JOBS_TOPIC_OPTIONS,
                                         JOBS_COMMON_OPTIONS,
                                         {0}};
    gen_opts o = {.keys = 100, .rate = 1000, .disorder = 0, .start = 0};
    long long events = 100000;
    const char *topic = NULL;
    jobs_topics tp = {.job = "generate"};
    jobs_common common = {0};
    int opt, ret = 0;
    jobs_getopt_reset();
    while ((opt = jobs_getopt(argc, argv, ":hX:", opts)) != -1) {
        if ((ret = jobs_topics_opt(cmd, opt, optarg, &tp)) != 1) {
            if (ret) return ret;
            continue;
        }
        ret = 0;
        switch (opt) {
        case O_EVENTS: ret = jobs_int(cmd, "--events", optarg, 1, 1LL << 40, &events); break;
        case O_KEYS: ret = jobs_int(cmd, "--keys", optarg, 1, 1LL << 32, &o.keys); break;
        case O_RATE: ret = jobs_int(cmd, "--rate", optarg, 1, 1000000000, &o.rate); break;
        case O_DISORDER:
            ret = jobs_int(cmd, "--disorder", optarg, 0, 1LL << 40, &o.disorder);
            break;
        case O_START: ret = jobs_int(cmd, "--start", optarg, 0, 1LL << 50, &o.start); break;
        case O_TOPIC: topic = optarg; break;
        default: ret = jobs_opt(cmd, opt, argv, &common); break;
        }
        if (ret == JOBS_HELP) {
            help();
            return 0;
        }
        if (ret) return ret;
    }
    if (jobs_no_operands(cmd, argc, argv)) return 2;
    /* generate writes a topic, reads none: --topic here is the output's */
    if (tp.follow || tp.group) {
        fprintf(stderr, "sluice %s: %s is for jobs that read a topic; generate writes one\n", cmd,
                tp.follow ? "--follow" : "--group");
        return 2;
    }
    if (jobs_topics_check(cmd, &tp, NULL, topic)) return 2;
    if (common.parallelism > 1) {
        fprintf(stderr, "sluice %s: --parallelism: the events come from one generator, in order\n",
                cmd);
        return 2;
    }
    sl_generator_conf gc = {.fn = make, .ud = &o, .count = (uint64_t)events};
    sl_write_conf wc = {.format = as_csv, .ud = "\n"};
    sl_pipeline *p = sl_pipeline_new();
    if (!p) {
        fprintf(stderr, "sluice %s: out of memory\n", cmd);
        return 1;
    }
    sl_pipeline_set_threads(p, common.threads ? common.threads : 1);
    sl_stream *s = sl_pipeline_generator(p, "events", &gc, sizeof(event), NULL);
    if (topic)
        jobs_topic_sink(p, s, &tp, NULL, "topic", topic, key_of, as_csv, NULL);
    else
        sl_stream_sink(s, "stdout", &sl_sink_write, &wc);
    int rc = jobs_run(run, p, cmd, &common);
    sl_pipeline_free(p);
    return rc;
}
