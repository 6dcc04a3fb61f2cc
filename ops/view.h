/*
 * ops/view.h - one reading of everything the HTTP endpoint shows (private to
 * ops/): a job's metrics and checkpoints, the process's CPU and memory, a
 * broker's topics and consumer groups. view.c takes it; prom.c writes it in
 * the Prometheus text format (GET /metrics), json.c as the JSON of
 * GET /api/job. One reading serves one request, so the two formats always
 * agree with each other and with sluice/metrics.h.
 */
#ifndef SLUICE_OPS_VIEW_H
#define SLUICE_OPS_VIEW_H

#include <stdint.h>
#include "sluice/broker.h"
#include "sluice/metrics.h"
#include "sluice/operator.h"
#include "sluice/pipeline.h"

typedef struct sli_view_part {
    int topic; /* index into topics */
    int32_t partition;
    int64_t start_offset, end_offset;
} sli_view_part;

typedef struct sli_view {
    const char *job; /* the job label */
    int64_t now_ms;  /* wall clock */
    double uptime_s; /* of the endpoint (the process, as far as it can tell) */
    double cpu_s;    /* process CPU, user + system */
    uint64_t rss_bytes;
    /* the job (has_job: a pipeline is attached and planned) */
    int has_job;
    sl_metrics m;
    int has_chk;
    sl_checkpoint_stats cs;
    sl_checkpoint_history ch;
    int n_names; /* "PIPELINE/NODE" strings the view owns (several pipelines) */
    char **names;
    /* the broker (has_broker: a broker is attached) */
    int has_broker;
    const char *broker_dir;
    int n_topics, n_parts;
    char **topics;
    sli_view_part *parts;
    size_t n_groups;
    sl_group_offset *groups;
} sli_view;

/* A pipeline the endpoint shows, and its name (NULL: unnamed; only the
 * single pipeline of a job may be unnamed). */
typedef struct sli_view_src {
    char *name;
    const sl_pipeline *p;
} sli_view_src;

/* Take a reading of the n pipelines in src (n = 0: no job) and b (NULL:
 * none). Any thread; the pipelines must stay alive meanwhile (ops/http.c
 * holds its lock). Several pipelines are shown as one job: their graphs
 * side by side, each node named "PIPELINE/NODE" (view.c says how the
 * totals, state and checkpoints combine). 0 or SL_ENOMEM. */
int sli_view_take(sli_view *v, const char *job, double t0_s, const sli_view_src *src, int n,
                  sl_broker *b);
void sli_view_free(sli_view *v);
/* The end offset of (topic, partition) in v, or -1 if v has none. */
int64_t sli_view_end_offset(const sli_view *v, const char *topic, int32_t partition);

/* Append v to out: Prometheus text exposition format 0.0.4 (prom.c), and
 * the /api/job JSON (json.c; its shape is drawn in that file). 0 or
 * SL_ENOMEM. */
int sli_view_prometheus(const sli_view *v, sl_buf *out);
int sli_view_json(const sli_view *v, sl_buf *out);

#endif
