/*
 * examples/jobs_topics.c - a bundled job's topics, on the built-in broker in
 * process or on a Kafka cluster: the one place that turns --topic,
 * --out-topic, --dir, --kafka, -X, --follow and --group into a source or a
 * sink node, so every job that reads or writes topics says the same thing
 * the same way (jobs.h draws the options).
 *
 * The two kinds give the same records (sluice/connectors.h's layout: key
 * length, key, value; the message timestamp as event time) and the same
 * per-partition splits, so a job's operators never know which one it runs
 * on. Only the node kind differs ("broker" or "kafka"), so a checkpoint of
 * one is refused by the other, with a message naming the node.
 *
 * Transactional ids (exactly-once into Kafka) are "sluice-JOB-TOPIC": a job
 * restarted with the same output topic fences its older run. A job that
 * reads a Kafka topic commits its offsets at each checkpoint to a group
 * (--group, else "sluice-JOB-TOPIC"), inside the output's transaction when
 * it writes Kafka too (consume-transform-produce), so lag tools see its
 * progress; where it resumes is its checkpoint's business.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "jobs.h"

const char jobs_topics_help[] =
    "  --dir DIR        the built-in broker's directory (default $SLUICE_DIR, else\n"
    "                   ./sluice-data)\n"
    "  --kafka BOOTSTRAP  topics of a Kafka cluster (host:port[,...]; a real Kafka or\n"
    "                   `sluice broker serve`) instead of the built-in broker in process\n"
    "  -X KEY=VALUE     a librdkafka property for --kafka (repeatable, as kcat -X)\n"
    "  --follow         keep reading the topic as it grows (default: read to the end\n"
    "                   it had at the start); SIGTERM or Ctrl-C stops with a final\n"
    "                   checkpoint\n"
    "  --group G        run as a member of Kafka consumer group G (needs --kafka): the\n"
    "                   processes started with the same job and group share the\n"
    "                   input's partitions, and a partition's state moves with it\n"
    "                   (through Kafka) when members come and go; follows the topic\n"
    "  --session-timeout D  how long a silent member keeps its partitions (default 10s)\n";

/* "HOST:PORT[,HOST:PORT...]" with ports 1..65535 (librdkafka would take
 * more forms, but a typo should fail here, not after a 10 s timeout). */
static int bootstrap_ok(const char *s)
{
    if (!*s) return 0;
    for (;;) {
        const char *end = strchr(s, ','), *colon = NULL;
        if (!end) end = s + strlen(s);
        for (const char *p = s; p < end; p++)
            if (*p == ':') colon = p;
        if (!colon || colon == s || colon + 1 == end) return 0;
        long port = 0;
        for (const char *p = colon + 1; p < end; p++) {
            if (*p < '0' || *p > '9' || port > 65535) return 0;
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535) return 0;
        if (!*end) return 1;
        s = end + 1;
    }
}

int jobs_topics_opt(const char *cmd, int opt, const char *arg, jobs_topics *t)
{
    switch (opt) {
    case JOBS_OPT_DIR: return jobs_dir_opt(cmd, arg, &t->dir);
    case JOBS_OPT_KAFKA:
        if (!bootstrap_ok(arg)) {
            fprintf(stderr,
                    "sluice %s: --kafka needs HOST:PORT[,HOST:PORT...] (e.g. 127.0.0.1:9092), "
                    "not '%s'\n",
                    cmd, arg);
            return 2;
        }
        t->kafka = arg;
        return 0;
    case 'X':
        if (!strchr(arg, '=') || arg[0] == '=') {
            fprintf(stderr, "sluice %s: -X needs KEY=VALUE (a librdkafka property), not '%s'\n",
                    cmd, arg);
            return 2;
        }
        if (t->n_props == JOBS_MAX_PROPS) {
            fprintf(stderr, "sluice %s: at most %d -X properties\n", cmd, JOBS_MAX_PROPS);
            return 2;
        }
        t->props[t->n_props++] = arg;
        t->props[t->n_props] = NULL;
        return 0;
    case JOBS_OPT_GROUP:
        if (!*arg) {
            fprintf(stderr, "sluice %s: --group needs a group id\n", cmd);
            return 2;
        }
        t->group = arg;
        return 0;
    case JOBS_OPT_FOLLOW: t->follow = 1; return 0;
    case JOBS_OPT_SESSION_TIMEOUT:
        if (jobs_duration(arg, 0, &t->session_timeout) || t->session_timeout < 100 ||
            t->session_timeout > 1800000) {
            fprintf(stderr,
                    "sluice %s: --session-timeout needs a duration from 100ms to 30m, not '%s'\n",
                    cmd, arg);
            return 2;
        }
        return 0;
    default: return 1;
    }
}

int jobs_topics_check(const char *cmd, jobs_topics *t, const char *in_topic, const char *out_topic)
{
    const char *need = NULL;
    if (!in_topic && !out_topic && (t->dir || t->kafka))
        need = t->dir ? "--dir" : "--kafka";
    else if (!in_topic && (t->follow || t->group))
        need = t->follow ? "--follow" : "--group";
    if (need) {
        fprintf(stderr, "sluice %s: %s is for --topic%s, which is missing\n", cmd, need,
                strcmp(need, "--dir") == 0 || strcmp(need, "--kafka") == 0 ? " or --out-topic"
                                                                           : "");
        return 2;
    }
    if (t->dir && t->kafka) {
        fprintf(stderr,
                "sluice %s: give --dir (the built-in broker in process) or --kafka (a Kafka "
                "cluster), not both\n",
                cmd);
        return 2;
    }
    if (t->n_props && !t->kafka) {
        fprintf(stderr, "sluice %s: -X sets librdkafka properties, which need --kafka\n", cmd);
        return 2;
    }
    if (t->session_timeout && !t->group) {
        fprintf(stderr, "sluice %s: --session-timeout is for --group\n", cmd);
        return 2;
    }
    if (t->group && !t->kafka) {
        fprintf(stderr,
                "sluice %s: --group needs --kafka (consumer groups are Kafka's; serve the "
                "built-in broker with `sluice broker serve` and give --kafka HOST:PORT)\n",
                cmd);
        return 2;
    }
    t->offsets_group[0] = 0;
    if (t->kafka && in_topic && t->group)
        snprintf(t->offsets_group, sizeof(t->offsets_group), "%s", t->group);
    else if (t->kafka && in_topic)
        snprintf(t->offsets_group, sizeof(t->offsets_group), "sluice-%s-%s", t->job, in_topic);
    return 0;
}

sl_stream *jobs_topic_source(sl_pipeline *p, const jobs_topics *t, const sl_kafka_task *task,
                             const char *name, const char *topic, sl_line_parse_fn parse, void *ud,
                             uint32_t max_len, uint32_t width, const sl_watermark_conf *wm)
{
    int bounded = !t->follow && !t->group;
    if (!t->kafka) {
        sl_broker_source_conf bc = {.dir = jobs_broker_dir(t->dir),
                                    .topic = topic,
                                    .start = SL_OFFSET_BEGINNING,
                                    .until_end = bounded,
                                    .parse = parse,
                                    .ud = ud,
                                    .max_len = max_len};
        return sl_pipeline_broker(p, name, &bc, width, wm);
    }
    sl_kafka_source_conf kc = {.bootstrap = t->kafka,
                               .topic = topic,
                               .group_id = t->offsets_group[0] ? t->offsets_group : NULL,
                               .props = t->props,
                               .start = t->group ? SL_KAFKA_OFFSET_COMMITTED : SL_OFFSET_BEGINNING,
                               .until_end = bounded,
                               .parse = parse,
                               .ud = ud,
                               .max_len = max_len,
                               .task = task};
    return sl_pipeline_kafka(p, name, &kc, width, wm);
}

int jobs_topic_sink(sl_pipeline *p, sl_stream *s, const jobs_topics *t, const sl_kafka_task *task,
                    const char *name, const char *topic, sl_key_fn key, sl_format_fn format,
                    void *ud)
{
    if (!t->kafka) {
        sl_broker_sink_conf bc = {.dir = jobs_broker_dir(t->dir),
                                  .topic = topic,
                                  .key = key,
                                  .key_ud = ud,
                                  .format = format,
                                  .format_ud = ud};
        sl_broker_sink_conf *c = sl_pipeline_dup(p, &bc, sizeof(bc));
        if (!c || sl_stream_sink(s, name, &sl_sink_broker, c)) return -1;
        sl_pipeline_set_node_parallelism(p, name, 1); /* one writer per partition */
        return 0;
    }
    char txid[512];
    snprintf(txid, sizeof(txid), "sluice-%s-%s", t->job, topic);
    sl_kafka_sink_conf kc = {.bootstrap = t->kafka,
                             .topic = topic,
                             .props = t->props,
                             .key = key,
                             .key_ud = ud,
                             .format = format,
                             .format_ud = ud,
                             .offsets_group = t->offsets_group[0] ? t->offsets_group : NULL,
                             .task = task};
    sl_kafka_sink_conf *c = sl_pipeline_dup(p, &kc, sizeof(kc));
    if (!c || !(c->transactional_id = sl_pipeline_dup(p, txid, strlen(txid) + 1))) return -1;
    return sl_stream_sink(s, name, &sl_sink_kafka, c) ? -1 : 0;
}

/* --- --group ------------------------------------------------------------------------ */

static sl_kafka_group *volatile group_running;

static void on_group_signal(int sig)
{
    sl_kafka_group *g = group_running;
    if (g) sl_kafka_group_stop(g);
}

/* The group's tasks come and go with its assignment: each partition's
 * pipeline is shown on the endpoint while it runs. */
static void show_pipeline(void *ud, const char *name, sl_pipeline *p, int up)
{
    sl_http *http = ud;
    if (!http) return;
    if (up)
        sl_http_add_pipeline(http, name, p); /* only out of memory fails: then not shown */
    else
        sl_http_remove_pipeline(http, p);
}

int jobs_group_run(const char *cmd, const jobs_topics *t, const char *topic, const jobs_common *c,
                   sl_kafka_build_fn build, sl_kafka_build_fn repartition, void *ud)
{
    if (c->from_checkpoint || (c->guarantee_set && c->guarantee != SL_GUARANTEE_EXACTLY_ONCE)) {
        fprintf(stderr,
                "sluice %s: --group runs exactly-once from the checkpoints in Kafka; it takes no "
                "%s\n",
                cmd, c->from_checkpoint ? "--from-checkpoint" : "--guarantee");
        return 2;
    }
    if (c->explain) {
        fprintf(stderr,
                "sluice %s: --explain shows one pipeline; --group builds one per partition (run "
                "--explain without --group to see the job's graph)\n",
                cmd);
        return 2;
    }
    if (c->trace_out || c->otlp_endpoint || c->trace_opt_given) {
        fprintf(stderr,
                "sluice %s: tracing (--trace-out, --otlp-endpoint) is not done with --group yet\n",
                cmd);
        return 2;
    }
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "sluice %s: ", cmd);
    sl_kafka_group_conf gc = {.bootstrap = t->kafka,
                              .topic = topic,
                              .group_id = t->group,
                              .props = t->props,
                              .work_dir = c->checkpoint_dir,
                              .checkpoint_interval_ms = c->checkpoint_interval,
                              .threads = c->threads,
                              .session_timeout_ms = (int)t->session_timeout,
                              .build = build,
                              .ud = ud,
                              .log_prefix = prefix,
                              .repartition = repartition,
                              .on_pipeline = show_pipeline};
    /* one endpoint shows the partitions' pipelines this process runs */
    sl_http *http = NULL;
    int rc = jobs_http_open(cmd, c, &http);
    if (rc) return rc;
    gc.on_pipeline_ud = http;
    sl_kafka_group *g = NULL;
    rc = sl_kafka_group_new(&g, &gc);
    if (rc) {
        fprintf(stderr, "sluice %s: %s\n", cmd,
                g && *sl_kafka_group_errmsg(g) ? sl_kafka_group_errmsg(g) : sl_strerror(rc));
        sl_kafka_group_free(g);
        sl_http_stop(http);
        return rc == SL_EINVAL ? 2 : 1;
    }
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_group_signal;
    sigemptyset(&sa.sa_mask);
    group_running = g;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    rc = sl_kafka_group_run(g);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    group_running = NULL;
    if (rc) fprintf(stderr, "sluice %s: %s\n", cmd, sl_kafka_group_errmsg(g));
    sl_kafka_group_free(g);
    sl_http_stop(http);
    return rc ? 1 : 0;
}
