/*
 * sluice/http.h - a job's HTTP endpoint: Prometheus metrics, the live
 * status page and its JSON (public API).
 *
 *   GET /          the status page: HTML, CSS and JavaScript built into the
 *                  library (no network needed), drawing GET /api/job each second
 *   GET /api/job   the job and/or broker as JSON (shape: ops/json.c)
 *   GET /metrics   Prometheus text exposition format 0.0.4 (names: ops/prom.c)
 *   GET /healthz   "ok"
 *
 * The server runs on a thread of its own; a request reads counters the
 * job's threads keep anyway (sluice/metrics.h) and never waits for them, so
 * neither a slow client nor many scrapes can slow the job down. It listens
 * on a loopback address unless a token file is given: then every request
 * must carry `Authorization: Bearer TOKEN` (or `?token=TOKEN`, for a browser).
 *
 * One job may run several pipelines (a saga's orders and participants, a
 * consumer group's pipeline per partition): add each under a name and the
 * endpoint shows them as one job, each node named "PIPELINE/NODE" (the
 * totals add up; the watermark is the lowest; see ops/view.c).
 *
 * Ownership: the endpoint borrows each pipeline it shows until it is
 * removed or replaced, or the endpoint stopped; removing waits for a request
 * that is reading it, so the pipeline may be freed right after. Strings in
 * the conf and names are copied.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stddef.h>
#include "sluice/export.h"
#include "sluice/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_http sl_http;

typedef struct sl_http_conf {
    const char *listen;     /* "HOST:PORT" (PORT 0: any free port); NULL: "127.0.0.1:9249" */
    const char *token_file; /* NULL: no token (then only a loopback address is allowed) */
    const char *job;        /* the `job` label and the page's title; NULL: "sluice" */
    const char *broker_dir; /* NULL, or a broker directory whose topics and groups to show */
} sl_http_conf;

/* Start serving. 0, or an SL_E code with a one-line message in err. */
SL_API int sl_http_start(sl_http **out, const sl_http_conf *conf, char *err, size_t errlen);
/* The port it listens on (useful with PORT 0), and its URL
 * ("http://HOST:PORT/"; a wildcard host is shown as 127.0.0.1). */
SL_API int sl_http_port(const sl_http *h);
SL_API const char *sl_http_url(const sl_http *h);
/* Show pipeline p alone, unnamed (nodes keep their own names), instead of
 * whatever was shown; NULL: show none. Any thread. A pipeline is shown once
 * it is planned (started or explained). */
SL_API void sl_http_set_pipeline(sl_http *h, const sl_pipeline *p);
/* Show p too, under `name` (not empty, no '/'). SL_EINVAL when the name or
 * p is shown already, or an unnamed pipeline is; SL_ENOMEM. Any thread. */
SL_API int sl_http_add_pipeline(sl_http *h, const char *name, const sl_pipeline *p);
/* Stop showing p (no-op when it is not shown). Any thread. */
SL_API void sl_http_remove_pipeline(sl_http *h, const sl_pipeline *p);
/* Stop serving and free h (accepts NULL). */
SL_API void sl_http_stop(sl_http *h);

#ifdef __cplusplus
}
#endif
#endif
