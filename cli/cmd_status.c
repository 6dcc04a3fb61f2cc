/*
 * cli/cmd_status.c - `sluice status URL`: a running job's summary as text
 * (or JSON), from the job's HTTP endpoint (--http HOST:PORT).
 *
 * It GETs URL/api/job twice, --interval ms apart (default 1000), with
 * libcurl, and parses both with the CLI's JSON tree (cli/json.h). Counters in
 * /api/job are totals since the start; what a person wants to see is rates,
 * so the two samples give them: a node's rate is the growth of its
 * records_out (summed over instances) over the growth of the server's clock
 * now_ms (this process's monotonic clock when now_ms is missing or did not
 * move), and its backpressure is the largest growth of blocked_s among the
 * tasks its instances run in, over the same time (the fraction of that time
 * spent waiting for credit). Everything else is the second sample's.
 *
 * Missing fields and nulls print as "-" (JSON: null), so an older or newer
 * server still gives a summary. Errors are one line: unreachable ("cannot
 * reach URL: Connection refused"), an HTTP error (404: "not a sluice
 * endpoint"; 401: a hint about --token), a body that is not JSON or has no
 * "job". Exit status: 0 ok, 1 failure, 2 usage.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/json.h"

#define CMD "sluice status"

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice status URL [--json] [--token FILE] [--interval MS]\n"
               "Summarises a running job (or `sluice broker serve`) from its HTTP endpoint:\n"
               "URL is what the job printed for --http (http://HOST:PORT; a bare HOST:PORT is\n"
               "taken as http). It reads URL/api/job twice, MS milliseconds apart (default\n"
               "1000; 0: back to back, and no rates), and prints the job, its state and\n"
               "uptime, totals, one line per node (parallelism, records in and out, rate/s\n"
               "over the interval, backpressure = share of the interval its tasks waited for\n"
               "credit, lowest watermark), the checkpoints and, for a broker, its partitions'\n"
               "offsets and the consumer groups' lag.\n"
               "  --json         one JSON object instead:\n"
               "                 {\"url\",\"job\",\"state\",\"uptime_s\",\"interval_s\",\n"
               "                  \"totals\":{...as /api/job, plus \"records_in_per_s\"},\n"
               "                  \"nodes\":[{\"name\",\"kind\",\"parallelism\",\"records_in\",\n"
               "                    \"records_out\",\"rate\",\"backpressure\",\"watermark_ms\"}],\n"
               "                  \"checkpoints\":..., \"broker\":...}  (the last two as /api/job\n"
               "                 gives them; unknown numbers are null)\n"
               "  --token FILE   the endpoint's token (first line of FILE), sent as\n"
               "                 Authorization: Bearer (as the job's --http-token FILE)\n"
               "  --interval MS  time between the two samples (default 1000)\n");
}

typedef struct {
    char *p;
    size_t n, cap;
} body;

static size_t on_data(char *d, size_t size, size_t nmemb, void *ud)
{
    body *b = ud;
    size_t n = size * nmemb;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->n + n + 1) cap *= 2;
        if (cap > (64u << 20)) return 0; /* a status document is never this big */
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One GET of api and its JSON. Prints the error line and returns -1 on any
 * failure. url is what the user gave (for messages). */
static int fetch(CURL *c, const char *url, const char *api, const char *token_file, cli_json **out,
                 double *t)
{
    body b = {0};
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, api);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    CURLcode rc = curl_easy_perform(c);
    *t = mono_s();
    if (rc != CURLE_OK) {
        long os = 0;
        curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os);
        const char *why = rc == CURLE_COULDNT_CONNECT && os ? strerror((int)os)
                          : err[0]                          ? err
                                                            : curl_easy_strerror(rc);
        fprintf(stderr, CMD ": cannot reach %s: %s\n", url, why);
        free(b.p);
        return -1;
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code == 401) {
        if (token_file)
            fprintf(stderr, CMD ": %s: the token in %s was refused (HTTP 401)\n", url, token_file);
        else
            fprintf(stderr, CMD ": %s: unauthorized (HTTP 401): the endpoint needs --token FILE\n",
                    url);
        free(b.p);
        return -1;
    }
    if (code != 200) {
        fprintf(stderr, CMD ": %s: not a sluice endpoint (HTTP %ld)\n", url, code);
        free(b.p);
        return -1;
    }
    const char *why = NULL;
    size_t at = 0;
    int pr = cli_json_parse(b.p ? b.p : "", b.n, out, &why, &at);
    free(b.p);
    if (pr < 0) {
        fprintf(stderr,
                CMD ": %s: not a sluice endpoint (bad JSON from /api/job: %s at byte %zu)\n", url,
                why, at);
        return -1;
    }
    if (!cli_json_str(cli_json_get(*out, "job"), NULL)) {
        fprintf(stderr, CMD ": %s: not a sluice endpoint (/api/job has no \"job\")\n", url);
        cli_json_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static int read_token(const char *file, char *tok, size_t cap)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, CMD ": cannot read --token %s: %s\n", file, strerror(errno));
        return -1;
    }
    if (!fgets(tok, (int)cap, f)) tok[0] = 0;
    fclose(f);
    tok[strcspn(tok, "\r\n")] = 0;
    if (!tok[0]) {
        fprintf(stderr, CMD ": --token %s: the first line is empty\n", file);
        return -1;
    }
    return 0;
}

/* Per node, from one sample. */
typedef struct {
    double in, out, wm; /* wm: NAN when no instance has one */
} node_sum;

static node_sum sum_node(const cli_json *n)
{
    node_sum s = {0, 0, NAN};
    const cli_json *is = cli_json_get(n, "instances");
    for (size_t i = 0; i < cli_json_len(is); i++) {
        const cli_json *x = cli_json_at(is, i);
        s.in += cli_json_num(cli_json_get(x, "records_in"), 0);
        s.out += cli_json_num(cli_json_get(x, "records_out"), 0);
        double w = cli_json_num(cli_json_get(x, "watermark_ms"), NAN);
        if (!isnan(w) && (isnan(s.wm) || w < s.wm)) s.wm = w;
    }
    return s;
}

static const cli_json *find_named(const cli_json *arr, const char *field, const char *name)
{
    for (size_t i = 0; i < cli_json_len(arr); i++) {
        const cli_json *x = cli_json_at(arr, i);
        const char *s = cli_json_str(cli_json_get(x, field), NULL);
        if (s && strcmp(s, name) == 0) return x;
    }
    return NULL;
}

static const cli_json *find_task(const cli_json *tasks, double id)
{
    for (size_t i = 0; i < cli_json_len(tasks); i++) {
        const cli_json *t = cli_json_at(tasks, i);
        if (cli_json_num(cli_json_get(t, "id"), NAN) == id) return t;
    }
    return NULL;
}

/* Largest blocked_s growth over dt among the tasks of n's instances (NAN if unknown). */
static double backpressure(const cli_json *n, const cli_json *t1, const cli_json *t2, double dt)
{
    double bp = NAN;
    const cli_json *is = cli_json_get(n, "instances");
    for (size_t i = 0; dt > 0 && i < cli_json_len(is); i++) {
        double id = cli_json_num(cli_json_get(cli_json_at(is, i), "task"), NAN);
        if (isnan(id)) continue;
        double a = cli_json_num(cli_json_get(find_task(t1, id), "blocked_s"), NAN);
        double b = cli_json_num(cli_json_get(find_task(t2, id), "blocked_s"), NAN);
        if (isnan(a) || isnan(b)) continue;
        double f = (b - a) / dt;
        f = f < 0 ? 0 : f > 1 ? 1 : f;
        if (isnan(bp) || f > bp) bp = f;
    }
    return bp;
}

/* Text helpers: "-" for unknown. */
static void put_int(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.0f", v);
}

static void put_dur(char *buf, size_t cap, double ms)
{
    if (isnan(ms))
        snprintf(buf, cap, "-");
    else if (fabs(ms) < 1000)
        snprintf(buf, cap, "%.0f ms", ms);
    else if (fabs(ms) < 120000)
        snprintf(buf, cap, "%.1f s", ms / 1000);
    else if (fabs(ms) < 7200000)
        snprintf(buf, cap, "%.1f min", ms / 60000);
    else
        snprintf(buf, cap, "%.1f h", ms / 3600000);
}

static void put_bytes(char *buf, size_t cap, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else if (v < 1024)
        snprintf(buf, cap, "%.0f B", v);
    else if (v < 1048576)
        snprintf(buf, cap, "%.1f KiB", v / 1024);
    else if (v < 1073741824)
        snprintf(buf, cap, "%.1f MiB", v / 1048576);
    else
        snprintf(buf, cap, "%.1f GiB", v / 1073741824);
}

static double jnum(const cli_json *o, const char *k)
{
    return cli_json_num(cli_json_get(o, k), NAN);
}

static void json_num_or_null(const char *key, double v, int comma)
{
    printf("%s\"%s\":", comma ? "," : "", key);
    cli_json_write_num(stdout, v); /* NAN prints null */
}

static void print_text(const char *url, const cli_json *j1, const cli_json *j2, double dt)
{
    char a[64], b[64], c[64];
    const cli_json *tot = cli_json_get(j2, "totals"), *proc = cli_json_get(j2, "process");
    put_dur(a, sizeof a, jnum(j2, "uptime_s") * 1000);
    put_bytes(b, sizeof b, jnum(proc, "rss_bytes"));
    printf("job %s  %s  up %s  cpu %.1f s  rss %s  (%s)\n",
           cli_json_str(cli_json_get(j2, "job"), "?"), cli_json_str(cli_json_get(j2, "state"), "?"),
           a, jnum(proc, "cpu_s"), b, url);
    double in1 = jnum(cli_json_get(j1, "totals"), "records_in"), in2 = jnum(tot, "records_in");
    put_int(a, sizeof a, dt > 0 ? (in2 - in1) / dt : NAN);
    printf("totals: %.0f in, %.0f out, %.0f late, %.0f dead letters; %s in/s\n", in2,
           jnum(tot, "records_out"), jnum(tot, "late"), jnum(tot, "dead_letters"), a);
    put_int(a, sizeof a, jnum(tot, "watermark_ms"));
    put_dur(b, sizeof b, jnum(tot, "watermark_lag_ms"));
    printf("watermark: %s (lag %s)\n", a, b);

    const cli_json *nodes = cli_json_get(j2, "nodes");
    if (cli_json_len(nodes)) {
        printf("\n%-16s %-8s %3s %12s %12s %10s %7s  %s\n", "node", "kind", "par", "records in",
               "records out", "rate/s", "backpr", "watermark");
        const cli_json *n1s = cli_json_get(j1, "nodes"), *t1 = cli_json_get(j1, "tasks"),
                       *t2 = cli_json_get(j2, "tasks");
        for (size_t i = 0; i < cli_json_len(nodes); i++) {
            const cli_json *n = cli_json_at(nodes, i);
            const char *name = cli_json_str(cli_json_get(n, "name"), "?");
            node_sum s = sum_node(n);
            const cli_json *n1 = find_named(n1s, "name", name);
            double rate = n1 && dt > 0 ? (s.out - sum_node(n1).out) / dt : NAN;
            double bp = backpressure(n, t1, t2, dt);
            put_int(a, sizeof a, rate);
            if (isnan(bp))
                snprintf(b, sizeof b, "-");
            else
                snprintf(b, sizeof b, "%.1f%%", bp * 100);
            put_int(c, sizeof c, s.wm);
            printf("%-16s %-8s %3.0f %12.0f %12.0f %10s %7s  %s\n", name,
                   cli_json_str(cli_json_get(n, "kind"), "-"), jnum(n, "parallelism"), s.in, s.out,
                   a, b, c);
        }
    }

    const cli_json *ck = cli_json_get(j2, "checkpoints");
    if (cli_json_is_null(ck)) {
        printf("\ncheckpoints: off\n");
    } else {
        put_bytes(a, sizeof a, jnum(ck, "last_bytes"));
        put_dur(b, sizeof b, jnum(ck, "duration_p50_ms"));
        put_dur(c, sizeof c, jnum(ck, "duration_p99_ms"));
        printf("\ncheckpoints: %.0f completed, %.0f failed, last #%.0f (%s), p50 %s, p99 %s",
               jnum(ck, "completed"), jnum(ck, "failed"), jnum(ck, "last_id"), a, b, c);
        put_dur(a, sizeof a, jnum(ck, "stall_max_ms"));
        printf(", longest stall %s\n", a);
        const cli_json *h = cli_json_get(ck, "history");
        size_t nh = cli_json_len(h);
        for (size_t i = nh > 5 ? nh - 5 : 0; i < nh; i++) {
            const cli_json *x = cli_json_at(h, i);
            int ok = cli_json_get(x, "ok") && cli_json_get(x, "ok")->type == CJ_TRUE;
            put_dur(a, sizeof a, jnum(x, "duration_ms"));
            put_bytes(b, sizeof b, jnum(x, "bytes"));
            const char *e = cli_json_str(cli_json_get(x, "error"), "");
            printf("  #%-6.0f %-6s %10s %10s%s%s\n", jnum(x, "id"), ok ? "ok" : "failed", a, b,
                   *e ? "  " : "", e);
        }
    }

    const cli_json *br = cli_json_get(j2, "broker");
    if (!cli_json_is_null(br)) {
        printf("\nbroker %s\n%-24s %9s %14s %14s\n", cli_json_str(cli_json_get(br, "dir"), ""),
               "topic", "partition", "start offset", "end offset");
        const cli_json *ts = cli_json_get(br, "topics");
        for (size_t i = 0; i < cli_json_len(ts); i++) {
            const cli_json *t = cli_json_at(ts, i), *ps = cli_json_get(t, "partitions");
            for (size_t k = 0; k < cli_json_len(ps); k++) {
                const cli_json *p = cli_json_at(ps, k);
                printf("%-24s %9.0f %14.0f %14.0f\n", cli_json_str(cli_json_get(t, "name"), "?"),
                       jnum(p, "partition"), jnum(p, "start_offset"), jnum(p, "end_offset"));
            }
        }
        const cli_json *gs = cli_json_get(br, "groups");
        if (cli_json_len(gs))
            printf("%-16s %-24s %9s %14s %10s\n", "group", "topic", "partition", "committed",
                   "lag");
        for (size_t i = 0; i < cli_json_len(gs); i++) {
            const cli_json *g = cli_json_at(gs, i);
            printf("%-16s %-24s %9.0f %14.0f %10.0f\n", cli_json_str(cli_json_get(g, "group"), "?"),
                   cli_json_str(cli_json_get(g, "topic"), "?"), jnum(g, "partition"),
                   jnum(g, "committed"), jnum(g, "lag"));
        }
    }
}

static void print_json(const char *url, const cli_json *j1, const cli_json *j2, double dt)
{
    const cli_json *tot = cli_json_get(j2, "totals");
    printf("{\"url\":");
    cli_json_write_str(stdout, url);
    printf(",\"job\":");
    cli_json_write(stdout, cli_json_get(j2, "job"));
    printf(",\"state\":");
    cli_json_write(stdout, cli_json_get(j2, "state"));
    json_num_or_null("uptime_s", jnum(j2, "uptime_s"), 1);
    json_num_or_null("interval_s", dt, 1);
    printf(",\"totals\":{");
    static const char *const tk[] = {"records_in",   "records_out",  "late",
                                     "dead_letters", "watermark_ms", "watermark_lag_ms"};
    for (size_t i = 0; i < sizeof tk / sizeof tk[0]; i++)
        json_num_or_null(tk[i], jnum(tot, tk[i]), i > 0);
    double in1 = jnum(cli_json_get(j1, "totals"), "records_in");
    json_num_or_null("records_in_per_s", dt > 0 ? (jnum(tot, "records_in") - in1) / dt : NAN, 1);
    printf("},\"nodes\":[");
    const cli_json *nodes = cli_json_get(j2, "nodes"), *n1s = cli_json_get(j1, "nodes");
    for (size_t i = 0; i < cli_json_len(nodes); i++) {
        const cli_json *n = cli_json_at(nodes, i);
        const char *name = cli_json_str(cli_json_get(n, "name"), "?");
        node_sum s = sum_node(n);
        const cli_json *n1 = find_named(n1s, "name", name);
        printf("%s{\"name\":", i ? "," : "");
        cli_json_write_str(stdout, name);
        printf(",\"kind\":");
        cli_json_write(stdout, cli_json_get(n, "kind"));
        json_num_or_null("parallelism", jnum(n, "parallelism"), 1);
        json_num_or_null("records_in", s.in, 1);
        json_num_or_null("records_out", s.out, 1);
        json_num_or_null("rate", n1 && dt > 0 ? (s.out - sum_node(n1).out) / dt : NAN, 1);
        json_num_or_null("backpressure",
                         backpressure(n, cli_json_get(j1, "tasks"), cli_json_get(j2, "tasks"), dt),
                         1);
        json_num_or_null("watermark_ms", s.wm, 1);
        printf("}");
    }
    printf("],\"checkpoints\":");
    cli_json_write(stdout, cli_json_get(j2, "checkpoints"));
    printf(",\"broker\":");
    cli_json_write(stdout, cli_json_get(j2, "broker"));
    printf("}\n");
}

int cli_status(int argc, char **argv)
{
    enum { O_JSON = 1000, O_TOKEN, O_INTERVAL };
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"json", no_argument, NULL, O_JSON},
                                         {"token", required_argument, NULL, O_TOKEN},
                                         {"interval", required_argument, NULL, O_INTERVAL},
                                         {0}};
    int c, as_json = 0;
    const char *token_file = NULL;
    long interval = 1000;
    jobs_getopt_reset(); /* options may follow the URL (getopt permutes) */
    while ((c = jobs_getopt(argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case O_JSON: as_json = 1; break;
        case O_TOKEN: token_file = optarg; break;
        case O_INTERVAL: {
            char *end;
            errno = 0;
            interval = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || interval < 0 || interval > 3600000) {
                fprintf(stderr, CMD ": --interval '%s': expected milliseconds, 0 to 3600000\n",
                        optarg);
                return 2;
            }
            break;
        }
        case ':':
            fprintf(stderr, CMD ": option '%s' needs a value (sluice status --help)\n",
                    argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, CMD ": unknown option '%s' (sluice status --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, CMD ": expected one URL (sluice status http://HOST:PORT)\n");
        return 2;
    }
    const char *url = argv[optind];
    size_t ul = strlen(url);
    while (ul > 0 && url[ul - 1] == '/') ul--;
    if (ul == 0) {
        fprintf(stderr, CMD ": empty URL\n");
        return 2;
    }
    int has_scheme = strstr(url, "://") != NULL;
    int has_api = ul >= 8 && memcmp(url + ul - 8, "/api/job", 8) == 0;
    char *api = malloc(ul + 32);
    if (!api) {
        fprintf(stderr, CMD ": out of memory\n");
        return 1;
    }
    snprintf(api, ul + 32, "%s%.*s%s", has_scheme ? "" : "http://", (int)ul, url,
             has_api ? "" : "/api/job");

    int status = 1;
    CURL *curl = NULL;
    struct curl_slist *hdr = NULL;
    cli_json *j1 = NULL, *j2 = NULL;
    char tok[1024], auth[1100];
    if (token_file) {
        if (read_token(token_file, tok, sizeof tok) < 0) goto fail;
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
        if (!(hdr = curl_slist_append(NULL, auth))) goto fail;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(curl = curl_easy_init())) {
        fprintf(stderr, CMD ": cannot start libcurl\n");
        goto fail;
    }
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "sluice-status/" SLUICE_VERSION);
    if (hdr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);

    double t1, t2;
    if (fetch(curl, url, api, token_file, &j1, &t1) < 0) goto fail;
    if (interval > 0) {
        struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
    }
    if (fetch(curl, url, api, token_file, &j2, &t2) < 0) goto fail;
    /* The server's clock when it has one and it moved; else ours. */
    double dt = (jnum(j2, "now_ms") - jnum(j1, "now_ms")) / 1000;
    if (isnan(dt) || dt <= 0) dt = t2 - t1;
    if (interval == 0) dt = NAN;

    if (as_json)
        print_json(url, j1, j2, dt);
    else
        print_text(url, j1, j2, dt);
    status = 0;
    if (fflush(stdout) != 0 && !cli_output_closed()) {
        fprintf(stderr, CMD ": writing the output failed\n");
        status = 1;
    }
fail:
    cli_json_free(j1);
    cli_json_free(j2);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(curl);
    free(api);
    return status;
}
