/*
 * ops/http.c - the job's HTTP endpoint (sluice/http.h): routes requests of
 * the embedded server (ops/httpd.c) to a reading of the job (ops/view.c)
 * written as Prometheus text, JSON or the status page (ops/page.h).
 *
 * Every request runs on the server's thread. The list of pipelines shown
 * is guarded by `lock`: a request holds it while it reads them, and adding,
 * removing or replacing one takes it, so once sl_http_remove_pipeline (or
 * set_pipeline) returns no request is reading the pipeline it dropped and
 * its owner may free it. The
 * broker, when shown, is a handle of this endpoint's own, opened read-only
 * on the broker's directory and used only on the server thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engine/base/clock.h"
#include "ops/httpd.h"
#include "ops/page.h"
#include "ops/view.h"
#include "sluice/error.h"
#include "sluice/http.h"

struct sl_http {
    sli_httpd *srv;
    char *job;
    double t0;
    pthread_mutex_t lock;
    int n, cap; /* the pipelines shown, in the order added: under lock */
    sli_view_src *src;
    sl_broker *broker; /* server thread only */
    char url[300];
};

static int reply_text(sl_buf *body, const char **ctype, int status, const char *text)
{
    *ctype = "text/plain; charset=utf-8";
    sl_buf_append(body, text, strlen(text));
    return status;
}

static int handle(void *ud, const sli_http_req *req, sl_buf *body, const char **ctype)
{
    sl_http *h = ud;
    const char *path = req->path;
    if (strcmp(path, "/healthz") == 0) return reply_text(body, ctype, 200, "ok\n");
    if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
        *ctype = "text/html; charset=utf-8";
        return sl_buf_append(body, sli_status_page, sli_status_page_len) ? 500 : 200;
    }
    int metrics = strcmp(path, "/metrics") == 0;
    if (!metrics && strcmp(path, "/api/job") != 0)
        return reply_text(body, ctype, 404,
                          "not found: this endpoint serves /, /api/job, /metrics and /healthz\n");
    sli_view v;
    pthread_mutex_lock(&h->lock);
    int rc = sli_view_take(&v, h->job, h->t0, h->src, h->n, h->broker);
    pthread_mutex_unlock(&h->lock);
    if (rc) return reply_text(body, ctype, 500, "out of memory\n");
    if (metrics) {
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
        rc = sli_view_prometheus(&v, body);
    } else {
        *ctype = "application/json";
        rc = sli_view_json(&v, body);
    }
    sli_view_free(&v);
    if (rc) {
        body->len = 0;
        return reply_text(body, ctype, 500, "out of memory\n");
    }
    return 200;
}

int sl_http_start(sl_http **out, const sl_http_conf *conf, char *err, size_t errlen)
{
    *out = NULL;
    sl_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    pthread_mutex_init(&h->lock, NULL);
    h->t0 = sli_clock_mono_s();
    int rc = SL_ENOMEM;
    h->cap = 4;
    if (!(h->src = calloc((size_t)h->cap, sizeof(*h->src))) ||
        !(h->job = strdup(conf && conf->job ? conf->job : "sluice"))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (conf && conf->broker_dir) {
        rc = sl_broker_open(&h->broker, conf->broker_dir, 0);
        if (rc) {
            snprintf(err, errlen, "cannot open the broker directory %s: %s", conf->broker_dir,
                     h->broker ? sl_broker_errmsg(h->broker) : sl_strerror(rc));
            goto fail;
        }
    }
    const char *listen = conf && conf->listen ? conf->listen : "127.0.0.1:9249";
    rc = sli_httpd_start(&h->srv, listen, conf ? conf->token_file : NULL, handle, h, err, errlen);
    if (rc) goto fail;
    /* the URL: the host as given (a wildcard as loopback), the bound port */
    const char *colon = strrchr(listen, ':');
    int hl = colon ? (int)(colon - listen) : 0;
    if (hl > 200) hl = 200;
    if (hl == 0 || (hl == 7 && !strncmp(listen, "0.0.0.0", 7)) ||
        (hl == 4 && !strncmp(listen, "[::]", 4)))
        snprintf(h->url, sizeof(h->url), "http://127.0.0.1:%d/", sli_httpd_port(h->srv));
    else
        snprintf(h->url, sizeof(h->url), "http://%.*s:%d/", hl, listen, sli_httpd_port(h->srv));
    *out = h;
    return 0;
fail:
    sl_http_stop(h);
    return rc;
}

int sl_http_port(const sl_http *h)
{
    return h ? sli_httpd_port(h->srv) : -1;
}

const char *sl_http_url(const sl_http *h)
{
    return h ? h->url : "";
}

/* Drop entry i (under lock). */
static void drop(sl_http *h, int i)
{
    free(h->src[i].name);
    memmove(h->src + i, h->src + i + 1, (size_t)(h->n - i - 1) * sizeof(*h->src));
    h->n--;
}

void sl_http_set_pipeline(sl_http *h, const sl_pipeline *p)
{
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    while (h->n) drop(h, h->n - 1);
    if (p) { /* cap >= 1 since start */
        h->src[0] = (sli_view_src){.name = NULL, .p = p};
        h->n = 1;
    }
    pthread_mutex_unlock(&h->lock);
}

int sl_http_add_pipeline(sl_http *h, const char *name, const sl_pipeline *p)
{
    if (!h || !p || !name || !*name || strchr(name, '/')) return SL_EINVAL;
    char *copy = strdup(name);
    if (!copy) return SL_ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < h->n && !rc; i++)
        if (!h->src[i].name || strcmp(h->src[i].name, name) == 0 || h->src[i].p == p)
            rc = SL_EINVAL; /* an unnamed one, the same name, or shown already */
    if (!rc && h->n == h->cap) {
        sli_view_src *grown = realloc(h->src, (size_t)h->cap * 2 * sizeof(*grown));
        if (grown) {
            h->src = grown;
            h->cap *= 2;
        } else {
            rc = SL_ENOMEM;
        }
    }
    if (!rc) h->src[h->n++] = (sli_view_src){.name = copy, .p = p};
    pthread_mutex_unlock(&h->lock);
    if (rc) free(copy);
    return rc;
}

void sl_http_remove_pipeline(sl_http *h, const sl_pipeline *p)
{
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < h->n; i++)
        if (h->src[i].p == p) drop(h, i--);
    pthread_mutex_unlock(&h->lock);
}

void sl_http_stop(sl_http *h)
{
    if (!h) return;
    sli_httpd_stop(h->srv); /* joins its thread: no request runs after this */
    if (h->broker) sl_broker_close(h->broker);
    pthread_mutex_destroy(&h->lock);
    for (int i = 0; i < h->n; i++) free(h->src[i].name);
    free(h->src);
    free(h->job);
    free(h);
}
