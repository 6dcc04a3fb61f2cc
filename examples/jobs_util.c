/*
 * examples/jobs_util.c - what the bundled jobs share, and with them the CLI
 * and the benchmarks (which sit above examples/ and may use it): getopt_long
 * error reporting, strict numbers and durations, the broker directory, and
 * jobs_run (--explain, or the caller's runner).
 *
 * Option errors follow one rule: one line "sluice CMD: <problem>" on stderr
 * that names the option as the user wrote it, and exit status 2. getopt is
 * told not to print (opterr = 0; option strings start with ':'), so the
 * line is ours: the option named comes from argv[optind - 1] for a long
 * option (cut at '=') and from optopt for a short one (which may sit inside
 * a bundle such as -eo).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jobs.h"

/* One error line: "sluice CMD: ..." ("sluice: ..." when cmd is NULL or ""). */
__attribute__((format(printf, 2, 3))) static void say(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cmd && *cmd)
        fprintf(stderr, "sluice %s: ", cmd);
    else
        fputs("sluice: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Whether the last jobs_getopt() call stayed inside one argument (a bundle
 * of short options such as -eo): then the option it complained about is
 * optopt, not argv[optind - 1]. */
static int in_bundle;

void jobs_getopt_reset(void)
{
    optind = 0;
    opterr = 0;
    in_bundle = 0;
}

int jobs_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    int before = optind;
    opterr = 0;
    int c = getopt_long(argc, argv, shortopts, longopts, NULL);
    in_bundle = optind == before;
    return c;
}

/* The option getopt just complained about, as the user wrote it. */
static void bad_option(char *out, size_t n, int optopt_, char **argv)
{
    const char *a = !in_bundle && optind > 0 ? argv[optind - 1] : NULL;
    if (a && a[0] == '-' && a[1] == '-' && a[2]) {
        size_t len = strcspn(a, "=");
        snprintf(out, n, "%.*s", (int)(len < 200 ? len : 200), a);
    } else if (optopt_ > 0 && optopt_ < 256) {
        snprintf(out, n, "-%c", optopt_);
    } else {
        snprintf(out, n, "%.200s", a ? a : "?");
    }
}

int jobs_opt(const char *cmd, int opt, char **argv, jobs_common *c)
{
    long long v;
    char name[256];
    switch (opt) {
    case 'h': return JOBS_HELP;
    case JOBS_OPT_THREADS:
    case JOBS_OPT_PARALLELISM:
        if (!c) break;
        if (opt == JOBS_OPT_THREADS) {
            if (jobs_int(cmd, "--threads", optarg, 1, 256, &v)) return 2;
            c->threads = (int)v;
        } else {
            if (jobs_int(cmd, "--parallelism", optarg, 1, SL_KEY_GROUPS, &v)) return 2;
            c->parallelism = (int)v;
        }
        return 0;
    case JOBS_OPT_EXPLAIN:
        if (!c) break;
        c->explain = 1;
        return 0;
    case JOBS_OPT_CHK_DIR:
        if (!c) break;
        if (!*optarg) {
            say(cmd, "--checkpoint-dir needs a directory, not an empty string");
            return 2;
        }
        c->checkpoint_dir = optarg;
        return 0;
    case JOBS_OPT_CHK_INTERVAL:
    case JOBS_OPT_CHK_TIMEOUT: {
        if (!c) break;
        const char *o =
            opt == JOBS_OPT_CHK_INTERVAL ? "--checkpoint-interval" : "--checkpoint-timeout";
        int64_t d;
        if (jobs_duration(optarg, 0, &d)) {
            say(cmd, "%s needs a duration above 0 (100ms, 1s, 1m or ms), not '%s'", o, optarg);
            return 2;
        }
        *(opt == JOBS_OPT_CHK_INTERVAL ? &c->checkpoint_interval : &c->checkpoint_timeout) = d;
        c->chk_opt_given = o;
        return 0;
    }
    case JOBS_OPT_CHK_KEEP:
        if (!c) break;
        if (jobs_int(cmd, "--checkpoint-keep", optarg, 1, 1000, &v)) return 2;
        c->checkpoint_keep = (unsigned)v;
        c->chk_opt_given = "--checkpoint-keep";
        return 0;
    case JOBS_OPT_CHK_FROM:
        if (!c) break;
        if (!*optarg) {
            say(cmd, "--from-checkpoint needs a checkpoint directory, not an empty string");
            return 2;
        }
        c->from_checkpoint = optarg;
        c->chk_opt_given = "--from-checkpoint";
        return 0;
    case JOBS_OPT_CHK_CAPTURE:
        if (!c) break;
        if (strcmp(optarg, "auto") == 0)
            c->capture = SL_CAPTURE_AUTO;
        else if (strcmp(optarg, "sync") == 0)
            c->capture = SL_CAPTURE_SYNC;
        else if (strcmp(optarg, "fork") == 0)
            c->capture = SL_CAPTURE_FORK;
        else {
            say(cmd, "--checkpoint-capture must be auto, sync or fork, not '%s'", optarg);
            return 2;
        }
        c->chk_opt_given = "--checkpoint-capture";
        return 0;
    case JOBS_OPT_GUARANTEE:
        if (!c) break;
        if (strcmp(optarg, "exactly-once") == 0)
            c->guarantee = SL_GUARANTEE_EXACTLY_ONCE;
        else if (strcmp(optarg, "at-least-once") == 0)
            c->guarantee = SL_GUARANTEE_AT_LEAST_ONCE;
        else if (strcmp(optarg, "none") == 0)
            c->guarantee = SL_GUARANTEE_NONE;
        else {
            say(cmd, "--guarantee must be exactly-once, at-least-once or none, not '%s'", optarg);
            return 2;
        }
        c->guarantee_set = 1;
        return 0;
    case JOBS_OPT_TRACE_SAMPLE: {
        if (!c) break;
        char *end;
        errno = 0;
        double r = strtod(optarg, &end);
        if (!*optarg || *end || errno || !(r >= 0 && r <= 1)) {
            say(cmd, "--trace-sample needs a ratio from 0 to 1, not '%s'", optarg);
            return 2;
        }
        c->trace_sample = r;
        c->trace_sample_given = 1;
        c->trace_opt_given = "--trace-sample";
        return 0;
    }
    case JOBS_OPT_TRACE_OUT:
        if (!c) break;
        if (!*optarg) {
            say(cmd, "--trace-out needs a file, not an empty string");
            return 2;
        }
        c->trace_out = optarg;
        return 0;
    case JOBS_OPT_OTLP_ENDPOINT: {
        if (!c) break;
        char err[300];
        if (sl_otlp_check_url(optarg, err, sizeof(err))) {
            say(cmd, "--otlp-endpoint: %s", err);
            return 2;
        }
        c->otlp_endpoint = optarg;
        return 0;
    }
    case JOBS_OPT_SERVICE_NAME:
        if (!c) break;
        if (!*optarg) {
            say(cmd, "--service-name needs a name, not an empty string");
            return 2;
        }
        c->service_name = optarg;
        c->trace_opt_given = "--service-name";
        return 0;
    case JOBS_OPT_HTTP:
    case JOBS_OPT_HTTP_TOKEN:
        if (!c) break;
        if (!*optarg) {
            say(cmd, "%s needs a %s, not an empty string",
                opt == JOBS_OPT_HTTP ? "--http" : "--http-token",
                opt == JOBS_OPT_HTTP ? "HOST:PORT" : "file");
            return 2;
        }
        *(opt == JOBS_OPT_HTTP ? &c->http : &c->http_token) = optarg;
        return 0;
    case ':':
        bad_option(name, sizeof(name), optopt, argv);
        say(cmd, "%s needs a value", name);
        return 2;
    case '?':
        bad_option(name, sizeof(name), optopt, argv);
        if (optopt && !in_bundle && optind > 0 && strncmp(argv[optind - 1], "--", 2) == 0 &&
            strchr(argv[optind - 1], '='))
            say(cmd, "%s takes no value", name);
        else
            say(cmd, "unknown option '%s' (--help lists them)", name);
        return 2;
    default: break;
    }
    /* A value the option table has but the job does not handle: a bug of the
     * job, reported as such rather than ignored. */
    say(cmd, "option %d is not handled", opt);
    return 2;
}

int jobs_no_operands(const char *cmd, int argc, char **argv)
{
    if (optind >= argc) return 0;
    say(cmd, "unexpected argument '%s'", argv[optind]);
    return 2;
}

int jobs_int(const char *cmd, const char *opt, const char *val, long long lo, long long hi,
             long long *out)
{
    char *end;
    errno = 0;
    long long v = val ? strtoll(val, &end, 10) : 0;
    if (!val || !*val || *end || errno || v < lo || v > hi) {
        say(cmd, "%s needs a whole number from %lld to %lld, not '%s'", opt, lo, hi,
            val ? val : "");
        return 2;
    }
    *out = v;
    return 0;
}

int jobs_duration(const char *s, int allow_zero, int64_t *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno || v < 0 || *s == '-' || *s == '+' || *s == ' ') return -1;
    long long mul = 1;
    if (*end == 0 || strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else
        return -1;
    if (v > INT64_MAX / 4 / mul) return -1;
    if (v == 0 && !allow_zero) return -1;
    *out = (int64_t)(v * mul);
    return 0;
}

int jobs_dir_opt(const char *cmd, const char *v, const char **dir)
{
    if (!*v) {
        fprintf(stderr, "sluice %s: --dir needs a directory, not an empty string\n", cmd);
        return 2;
    }
    *dir = v;
    return 0;
}

const char *jobs_broker_dir(const char *flag_value)
{
    if (flag_value && *flag_value) return flag_value;
    const char *env = getenv("SLUICE_DIR");
    if (env && *env) return env;
    return "./sluice-data";
}

int jobs_parallelism(const jobs_common *c)
{
    return c->parallelism ? c->parallelism : c->threads ? c->threads : 1;
}

void jobs_common_apply(const jobs_common *c, sl_pipeline *p)
{
    if (c->threads) sl_pipeline_set_threads(p, c->threads);
    sl_pipeline_set_parallelism(p, jobs_parallelism(c));
}

/* The checkpoint options, checked together and given to the pipeline.
 * Returns 0, or 2 after a usage error line. */
static int apply_checkpoints(const char *cmd, sl_pipeline *p, const jobs_common *c)
{
    if (!c->checkpoint_dir) {
        if (c->chk_opt_given) {
            say(cmd, "%s needs --checkpoint-dir", c->chk_opt_given);
            return 2;
        }
        if (c->guarantee_set && c->guarantee > SL_GUARANTEE_NONE) {
            say(cmd,
                "--guarantee %s needs --checkpoint-dir (a restart resumes from its checkpoints)",
                c->guarantee == SL_GUARANTEE_EXACTLY_ONCE ? "exactly-once" : "at-least-once");
            return 2;
        }
        return 0;
    }
    if (c->guarantee_set && c->guarantee == SL_GUARANTEE_NONE)
        return 0; /* checkpoints off, as asked */
    sl_checkpoint_conf cc = {.dir = c->checkpoint_dir,
                             .interval_ms = c->checkpoint_interval,
                             .timeout_ms = c->checkpoint_timeout,
                             .keep = c->checkpoint_keep,
                             .from = c->from_checkpoint,
                             .capture = c->capture,
                             .guarantee =
                                 c->guarantee_set ? c->guarantee : SL_GUARANTEE_EXACTLY_ONCE};
    if (sl_pipeline_set_checkpoint(p, &cc)) {
        say(cmd, "%s", sl_pipeline_errmsg(p));
        return 2;
    }
    return 0;
}

const char jobs_trace_help[] =
    "Tracing (every job): --trace-out FILE appends the job's spans to FILE as OTLP/JSON,\n"
    "one request per line; --otlp-endpoint URL posts them to an OTLP/HTTP collector\n"
    "(e.g. http://127.0.0.1:4318/v1/traces); both may be given. --trace-sample R samples\n"
    "root spans at ratio R (0 to 1, default 1); --service-name NAME (default: the job's\n"
    "name). Spans the collector cannot take are dropped and counted, never waited for.\n"
    "Monitoring (every job): --http HOST:PORT serves, while the job runs, its status page\n"
    "at /, Prometheus metrics at /metrics and its figures as JSON at /api/job (PORT 0:\n"
    "any free port; the URL is printed on standard error). Only a loopback address\n"
    "unless --http-token FILE is given: then every request needs that token (the file's\n"
    "first line) as `Authorization: Bearer TOKEN` or `?token=TOKEN`.\n";

/* Both exporters at once (--trace-out and --otlp-endpoint): each batch goes
 * to both; the batch counts as failed if either failed. */
typedef struct tee {
    sl_trace_exporter a, b;
} tee;

static int tee_export(void *ud, const sl_trace_batch *batch)
{
    tee *t = ud;
    int ra = t->a.export(t->a.ud, batch);
    int rb = t->b.export(t->b.ud, batch);
    return ra ? ra : rb;
}

static void tee_close(void *ud)
{
    tee *t = ud;
    if (t->a.close) t->a.close(t->a.ud);
    if (t->b.close) t->b.close(t->b.ud);
    free(t);
}

/* The tracing options: a tracer for p when asked. The job's name ("run
 * wordcount" -> "wordcount") is the default service name. Returns 0, or 2
 * after a usage error line. */
static int apply_tracing(const char *cmd, sl_pipeline *p, const jobs_common *c)
{
    if (!c->trace_out && !c->otlp_endpoint) {
        if (c->trace_opt_given) {
            say(cmd, "%s needs --trace-out or --otlp-endpoint", c->trace_opt_given);
            return 2;
        }
        return 0;
    }
    char err[512];
    sl_trace_exporter file = {0}, http = {0}, exp;
    if (c->trace_out && sl_otlp_file_exporter(c->trace_out, &file, err, sizeof(err))) {
        say(cmd, "--trace-out: %s", err);
        return 2;
    }
    if (c->otlp_endpoint) {
        sl_otlp_http_conf hc = {.url = c->otlp_endpoint};
        if (sl_otlp_http_exporter(&hc, &http, err, sizeof(err))) {
            if (file.close) file.close(file.ud);
            say(cmd, "--otlp-endpoint: %s", err);
            return 2;
        }
    }
    if (c->trace_out && c->otlp_endpoint) {
        tee *t = malloc(sizeof(*t));
        if (!t) {
            file.close(file.ud);
            http.close(http.ud);
            say(cmd, "out of memory");
            return 1;
        }
        *t = (tee){.a = file, .b = http};
        exp = (sl_trace_exporter){.version = SL_TRACE_EXPORTER_VERSION,
                                  .kind = "tee",
                                  .export = tee_export,
                                  .close = tee_close,
                                  .ud = t};
    } else {
        exp = c->trace_out ? file : http;
    }
    const char *svc = c->service_name;
    if (!svc) svc = strncmp(cmd, "run ", 4) == 0 ? cmd + 4 : cmd;
    sl_tracer_conf tc = {.service_name = svc,
                         .sample_ratio = c->trace_sample_given ? c->trace_sample : 1.0};
    sl_tracer *t;
    if (sl_tracer_new(&tc, &exp, &t, err, sizeof(err))) {
        say(cmd, "%s", err);
        return 1;
    }
    if (sl_pipeline_set_tracer(p, t)) {
        sl_tracer_free(t);
        say(cmd, "tracing: the pipeline has started already");
        return 1;
    }
    return 0;
}

/* After the run: the spans flushed, drops told (stderr) when there were any. */
static void trace_report(const char *cmd, sl_tracer *t)
{
    if (!t) return;
    int rc = sl_tracer_flush(t, 10000);
    sl_tracer_stats st;
    sl_tracer_stats_get(t, &st);
    if (rc || st.dropped_full || st.dropped_export || st.export_errors)
        say(cmd,
            "tracing: %llu spans exported, %llu dropped (queue full %llu, export failed %llu), "
            "%llu export errors%s",
            (unsigned long long)st.exported,
            (unsigned long long)(st.dropped_full + st.dropped_export),
            (unsigned long long)st.dropped_full, (unsigned long long)st.dropped_export,
            (unsigned long long)st.export_errors, rc ? "; some still queued" : "");
}

int jobs_http_open(const char *cmd, const jobs_common *c, sl_http **out)
{
    *out = NULL;
    if (c && c->http) {
        char err[300];
        const char *jobname = strncmp(cmd, "run ", 4) == 0 ? cmd + 4 : cmd;
        sl_http_conf hc = {.listen = c->http, .token_file = c->http_token, .job = jobname};
        if (sl_http_start(out, &hc, err, sizeof(err)) != 0) {
            say(cmd, "%s", err); /* names the option already */
            return 2;
        }
        fprintf(stderr, "sluice %s: status page at %s (metrics at /metrics)\n", cmd,
                sl_http_url(*out));
    } else if (c && c->http_token) {
        say(cmd, "--http-token needs --http HOST:PORT");
        return 2;
    }
    return 0;
}

int jobs_run(const jobs_runner *r, sl_pipeline *p, const char *cmd, const jobs_common *c)
{
    if (c) {
        int rc = apply_checkpoints(cmd, p, c);
        if (rc) return rc;
        if (!c->explain && (rc = apply_tracing(cmd, p, c)) != 0) return rc;
    }
    if (c && c->explain) {
        sl_buf plan = {0};
        int rc = sl_pipeline_explain(p, &plan);
        if (rc) {
            fprintf(stderr, "sluice %s: %s\n", cmd,
                    *sl_pipeline_errmsg(p) ? sl_pipeline_errmsg(p) : sl_strerror(rc));
            sl_buf_free(&plan);
            return 1;
        }
        fwrite(plan.ptr, 1, plan.len, stdout);
        sl_buf_free(&plan);
        return 0;
    }
    sl_http *http = NULL;
    int hrc = jobs_http_open(cmd, c, &http);
    if (hrc) return hrc;
    sl_http_set_pipeline(http, p);
    sl_tracer *tr = sl_pipeline_tracer(p);
    sl_span job;
    char name[SL_SPAN_NAME_MAX];
    snprintf(name, sizeof(name), "job %s", strncmp(cmd, "run ", 4) == 0 ? cmd + 4 : cmd);
    sl_span_start(tr, &job, name, SL_SPAN_KIND_INTERNAL, NULL);
    int status;
    if (r && r->run) {
        status = r->run(r->ud, p, cmd);
    } else {
        int rc = sl_pipeline_run(p);
        status = rc == 0 || rc == SL_EPIPE ? 0 : 1;
        if (status)
            fprintf(stderr, "sluice %s: %s\n", cmd,
                    *sl_pipeline_errmsg(p) ? sl_pipeline_errmsg(p) : sl_strerror(rc));
    }
    if (sl_span_recording(&job)) {
        sl_pipeline_stats ps;
        sl_pipeline_stats_get(p, &ps);
        sl_span_set_int(&job, "sluice.records_in", (int64_t)ps.records_in);
        sl_span_set_int(&job, "sluice.records_out", (int64_t)ps.records_out);
        sl_span_set_int(&job, "sluice.late", (int64_t)ps.late);
        sl_span_set_int(&job, "sluice.dead_letters", (int64_t)ps.dead_letters);
        sl_span_set_int(&job, "sluice.exit_status", status);
        if (status) sl_span_set_status(&job, SL_SPAN_STATUS_ERROR, sl_pipeline_errmsg(p));
    }
    sl_span_end(&job, 0);
    trace_report(cmd, tr);
    sl_http_set_pipeline(http, NULL);
    sl_http_stop(http);
    return status;
}
