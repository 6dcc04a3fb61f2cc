/*
 * connectors/otlp/otlp_http.c - the OTLP/HTTP exporter: each batch is POSTed
 * as OTLP/JSON to a collector, e.g. http://127.0.0.1:4318/v1/traces (API:
 * sluice/otlp.h; the body: otlp_json.c).
 *
 * One libcurl easy handle per exporter, reused, so the connection is kept
 * alive between batches. Everything here runs on the tracer's export thread
 * (export() is called from nowhere else), so nothing is locked; the
 * pipeline's threads only ever touch the tracer's queue, never this file:
 * a slow or dead collector fills the queue, whose overflow the tracer
 * drops and counts.
 *
 * One batch, attempt by attempt:
 *
 *   answer                          what happens
 *   2xx                             delivered: 0
 *   429, 502, 503, 504              retried after a backoff
 *   refused, reset, timed out,      retried after a backoff
 *     empty reply, send/recv error
 *   any other status (400, 500..)   dropped at once: SL_EIO
 *   bad URL, unsupported scheme     dropped at once: SL_EINVAL
 *
 * The backoff before attempt k+1 is drawn in [w/2, w] with w = backoff_ms *
 * 2^(k-1), at most max_backoff_ms (exponential with jitter, so that many
 * senders do not retry in step). Time: each attempt's timeout is the
 * request timeout cut to the batch's deadline (sl_trace_batch), and no
 * backoff is slept that would end past it; so export() returns by the
 * deadline, which is what bounds sl_tracer_free() when the collector
 * hangs; a request under way when free is called is aborted by the
 * progress callback once sl_trace_batch_deadline() has passed (libcurl calls
 * it about once a second while waiting: that is the granularity). The
 * backoff sleep is not cut short by free (it is at most max_backoff_ms).
 * Retry-After is not read.
 *
 * libcurl's global init is done once (pthread_once); CURLOPT_NOSIGNAL is set
 * because the export thread is not the main thread.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "engine/base/clock.h"
#include "sluice/otlp.h"

typedef struct http_exp {
    CURL *curl;
    struct curl_slist *headers;
    char *url;
    sl_otlp_http_conf conf;
    sl_buf body;
    uint64_t rng;
    char curl_err[CURL_ERROR_SIZE];
} http_exp;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

int sl_otlp_check_url(const char *url, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    pthread_once(&curl_once, curl_init);
    if (!url || !*url) {
        if (err) snprintf(err, errlen, "an OTLP endpoint URL is required");
        return SL_EINVAL;
    }
    CURLU *u = curl_url();
    if (!u) return SL_ENOMEM;
    int rc = 0;
    char *scheme = NULL, *host = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        if (err) snprintf(err, errlen, "'%s' is not a URL (http://HOST[:PORT]/PATH)", url);
        rc = SL_EINVAL;
    } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        if (err) snprintf(err, errlen, "'%s': the OTLP endpoint must be http:// or https://", url);
        rc = SL_EINVAL;
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static void http_close(void *ud)
{
    http_exp *h = ud;
    if (!h) return;
    if (h->curl) curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->headers);
    sl_buf_free(&h->body);
    free(h->url);
    free(h);
}

/* Whether a failed attempt may be retried. */
static int retryable_status(long code)
{
    return code == 429 || code == 502 || code == 503 || code == 504;
}

static int retryable_curl(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR: return 1;
    default: return 0;
    }
}

static uint64_t next_rand(http_exp *h)
{
    /* xorshift64*: jitter only */
    h->rng ^= h->rng >> 12;
    h->rng ^= h->rng << 25;
    h->rng ^= h->rng >> 27;
    return h->rng * 2685821657736338717ULL;
}

/* libcurl's progress callback (about once a second, and on every
 * transfer): abort the request once the batch's deadline has passed, which
 * sl_tracer_free() may have brought closer. */
static int progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const sl_trace_batch *b = ud;
    return sli_clock_mono_ms() >= sl_trace_batch_deadline(b);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

static int http_export(void *ud, const sl_trace_batch *b)
{
    http_exp *h = ud;
    h->body.len = 0;
    int rc = sl_otlp_json_encode(b, &h->body);
    if (rc) return rc;
    /* the trailing '\n' is harmless in JSON; the body is the one line */
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, (const char *)h->body.ptr);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->body.len);
    curl_easy_setopt(h->curl, CURLOPT_XFERINFODATA, (void *)b);
    for (int attempt = 1;; attempt++) {
        int64_t left = sl_trace_batch_deadline(b) - sli_clock_mono_ms();
        if (left <= 0) return SL_ECANCELED; /* out of time */
        int64_t to = h->conf.request_timeout_ms < left ? h->conf.request_timeout_ms : left;
        curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, (long)to);
        curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)(h->conf.connect_timeout_ms < to ? h->conf.connect_timeout_ms : to));
        CURLcode c = curl_easy_perform(h->curl);
        long status = 0;
        if (c == CURLE_OK) {
            curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
            if (status >= 200 && status < 300) return 0;
            if (!retryable_status(status)) return SL_EIO;
        } else if (!retryable_curl(c)) {
            return c == CURLE_URL_MALFORMAT || c == CURLE_UNSUPPORTED_PROTOCOL ? SL_EINVAL : SL_EIO;
        }
        if (attempt >= h->conf.max_attempts) return SL_EIO;
        int64_t w = h->conf.backoff_ms;
        for (int i = 1; i < attempt && w < h->conf.max_backoff_ms; i++) w *= 2;
        if (w > h->conf.max_backoff_ms) w = h->conf.max_backoff_ms;
        int64_t wait = w / 2 + (int64_t)(next_rand(h) % (uint64_t)(w / 2 + 1));
        if (sli_clock_mono_ms() + wait >= sl_trace_batch_deadline(b)) return SL_EIO;
        sleep_ms(wait);
    }
}

int sl_otlp_http_exporter(const sl_otlp_http_conf *conf, sl_trace_exporter *out, char *err,
                          size_t errlen)
{
    if (!out) return SL_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!conf) return SL_EINVAL;
    int rc = sl_otlp_check_url(conf->url, err, errlen);
    if (rc) return rc;
    if (curl_init_rc != CURLE_OK) {
        if (err) snprintf(err, errlen, "libcurl could not be initialised");
        return SL_EIO;
    }
    if (conf->request_timeout_ms < 0 || conf->connect_timeout_ms < 0 || conf->backoff_ms < 0 ||
        conf->max_backoff_ms < 0 || conf->max_attempts < 0) {
        if (err) snprintf(err, errlen, "OTLP/HTTP: negative timeout, backoff or attempts");
        return SL_EINVAL;
    }
    http_exp *h = calloc(1, sizeof(*h));
    if (!h) return SL_ENOMEM;
    h->conf = *conf;
    if (!h->conf.request_timeout_ms) h->conf.request_timeout_ms = 10000;
    if (!h->conf.connect_timeout_ms) h->conf.connect_timeout_ms = 5000;
    if (!h->conf.backoff_ms) h->conf.backoff_ms = 200;
    if (!h->conf.max_backoff_ms) h->conf.max_backoff_ms = 5000;
    if (h->conf.max_backoff_ms < h->conf.backoff_ms) h->conf.max_backoff_ms = h->conf.backoff_ms;
    if (!h->conf.max_attempts) h->conf.max_attempts = 5;
    h->rng = (uint64_t)sli_clock_mono_ns() | 1;
    h->url = strdup(conf->url);
    h->curl = curl_easy_init();
    h->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (h->headers) {
        struct curl_slist *more = curl_slist_append(h->headers, "Expect:");
        if (more) h->headers = more;
    }
    if (!h->url || !h->curl || !h->headers) {
        http_close(h);
        if (err) snprintf(err, errlen, "OTLP/HTTP: out of memory");
        return SL_ENOMEM;
    }
    h->conf.url = h->url;
    curl_easy_setopt(h->curl, CURLOPT_URL, h->url);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, h->curl_err);
    curl_easy_setopt(h->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(h->curl, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(h->curl, CURLOPT_NOPROGRESS, 0L);
    *out = (sl_trace_exporter){.version = SL_TRACE_EXPORTER_VERSION,
                               .kind = "otlp-http",
                               .export = http_export,
                               .close = http_close,
                               .ud = h};
    return 0;
}
