/*
 * ops/prom.c - a reading (ops/view.h) in the Prometheus text exposition
 * format, version 0.0.4: what GET /metrics serves.
 *
 * Every family is written whole (HELP, TYPE, then its samples), as the
 * format requires. Names start with sluice_; counters end in _total; times
 * are in seconds and sizes in bytes (Prometheus's base units): the
 * watermark too, an event time in seconds since the epoch (with its ms as
 * decimals), unlike the milliseconds sluice uses everywhere else.
 * Labels: job on every sample; node and instance on everything a node
 * instance counts (a task's figures under the node and instance of its
 * root, the instance that reads its channels); topic and partition (and
 * group) for a broker. Label values are escaped (\\, \", \n).
 *
 *   family                                      type       labels
 *   sluice_up                                   gauge      job (1; 0 once it failed)
 *   sluice_job_state                            gauge      job, state (1 for the current)
 *   sluice_records_in_total / _out_total        counter    job, node, instance
 *   sluice_bytes_in_total / _out_total          counter    job, node, instance
 *   sluice_late_records_total                   counter    job, node, instance
 *   sluice_dead_letters_total                   counter    job, node, instance, reason
 *   sluice_watermark_seconds                    gauge      job, node, instance
 *   sluice_watermark_lag_seconds                gauge      job, node, instance
 *   sluice_channel_queued_batches / _capacity_batches  gauge  job, node, instance
 *   sluice_backpressure_seconds_total           counter    job, node, instance
 *   sluice_source_lag_records                   gauge      job, node, instance, topic, partition
 *   sluice_checkpoints_total                    counter    job, outcome
 *   sluice_checkpoint_duration_seconds          histogram  job
 *   sluice_checkpoint_size_bytes                histogram  job
 *   sluice_checkpoint_last_completed_id         gauge      job
 *   sluice_checkpoint_stall_max_seconds         gauge      job
 *   sluice_sink_commits_total                   counter    job
 *   sluice_process_cpu_seconds_total            counter    job
 *   sluice_process_resident_memory_bytes        gauge      job
 *   sluice_broker_log_start_offset / _end_offset  gauge    job, topic, partition
 *   sluice_broker_group_committed_offset        gauge      job, group, topic, partition
 *   sluice_broker_group_lag                     gauge      job, group, topic, partition
 *
 * A watermark sample is written only for instances that have one (not
 * before the first, nor +inf after the end), and its lag behind the wall
 * clock is clamped at 0.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ops/view.h"
#include "sluice/batch.h"
#include "sluice/error.h"

static void esc(sl_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            sl_buf_printf(b, "\\%c", *s);
        else if (*s == '\n')
            sl_buf_append(b, "\\n", 2);
        else
            sl_buf_append(b, s, 1);
    }
}

static void fam(sl_buf *b, const char *name, const char *type, const char *help)
{
    sl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{job="..."[,node="...",instance="i"]  (the caller closes the brace) */
static void head(sl_buf *b, const sli_view *v, const char *name)
{
    sl_buf_printf(b, "%s{job=\"", name);
    esc(b, v->job);
    sl_buf_append(b, "\"", 1);
}

static void inst_head(sl_buf *b, const sli_view *v, const char *name, int i)
{
    const sl_metrics_instance *mi = &v->m.instances[i];
    head(b, v, name);
    sl_buf_append(b, ",node=\"", 7);
    esc(b, v->m.nodes[mi->node].name);
    sl_buf_printf(b, "\",instance=\"%d\"", mi->instance);
}

static void num(sl_buf *b, double x)
{
    if (isinf(x))
        sl_buf_printf(b, x > 0 ? "+Inf" : "-Inf");
    else if (x == floor(x) && fabs(x) < 9e15)
        sl_buf_printf(b, "%.0f", x);
    else
        sl_buf_printf(b, "%.9g", x);
}

enum field { F_IN, F_OUT, F_BIN, F_BOUT, F_LATE };

static uint64_t field(const sl_metrics_instance *mi, enum field f)
{
    switch (f) {
    case F_IN: return mi->records_in;
    case F_OUT: return mi->records_out;
    case F_BIN: return mi->bytes_in;
    case F_BOUT: return mi->bytes_out;
    default: return mi->late;
    }
}

static void per_instance(sl_buf *b, const sli_view *v, const char *name, const char *help,
                         enum field f)
{
    fam(b, name, "counter", help);
    for (int i = 0; i < v->m.n_instances; i++) {
        inst_head(b, v, name, i);
        sl_buf_printf(b, "} %" PRIu64 "\n", field(&v->m.instances[i], f));
    }
}

static int has_wm(int64_t wm)
{
    return wm != SL_TIME_MIN && wm != SL_TIME_MAX;
}

static void job_part(sl_buf *b, const sli_view *v)
{
    const sl_metrics *m = &v->m;
    static const char *states[] = {"created", "running", "finished", "failed", "canceled"};
    fam(b, "sluice_job_state", "gauge", "The job's state: 1 for the current one.");
    for (int s = 0; s < 5; s++) {
        head(b, v, "sluice_job_state");
        sl_buf_printf(b, ",state=\"%s\"} %d\n", states[s], m->state == s);
    }
    per_instance(b, v, "sluice_records_in_total", "Records a node instance took in.", F_IN);
    per_instance(b, v, "sluice_records_out_total", "Records a node instance emitted as results.",
                 F_OUT);
    per_instance(b, v, "sluice_bytes_in_total", "Payload bytes a node instance took in.", F_BIN);
    per_instance(b, v, "sluice_bytes_out_total", "Payload bytes a node instance emitted.", F_BOUT);
    per_instance(b, v, "sluice_late_records_total",
                 "Records a node instance sent to its late output.", F_LATE);

    fam(b, "sluice_dead_letters_total", "counter",
        "Records a node instance sent to its dead-letter output, by reason.");
    for (int i = 0; i < m->n_instances; i++) {
        int any = 0;
        for (int r = 0; r < m->n_reasons; r++) {
            if (m->reasons[r].instance != i) continue;
            inst_head(b, v, "sluice_dead_letters_total", i);
            sl_buf_append(b, ",reason=\"", 9);
            esc(b, m->reasons[r].reason);
            sl_buf_printf(b, "\"} %" PRIu64 "\n", m->reasons[r].count);
            any = 1;
        }
        if (!any && m->instances[i].dead_letters) {
            inst_head(b, v, "sluice_dead_letters_total", i);
            sl_buf_printf(b, ",reason=\"unspecified\"} %" PRIu64 "\n",
                          m->instances[i].dead_letters);
        }
    }

    fam(b, "sluice_watermark_seconds", "gauge",
        "The event-time watermark a node instance has seen (seconds since the epoch).");
    for (int i = 0; i < m->n_instances; i++) {
        int64_t wm = m->instances[i].watermark;
        if (!has_wm(wm)) continue;
        inst_head(b, v, "sluice_watermark_seconds", i);
        /* whole seconds, then the ms: exact for any int64 */
        int64_t s = wm / 1000, ms = wm % 1000;
        if (ms < 0) s--, ms += 1000;
        sl_buf_printf(b, "} %" PRId64 ".%03d\n", s, (int)ms);
    }
    fam(b, "sluice_watermark_lag_seconds", "gauge",
        "How far a node instance's watermark is behind the wall clock.");
    for (int i = 0; i < m->n_instances; i++) {
        int64_t wm = m->instances[i].watermark;
        if (!has_wm(wm)) continue;
        double lag = wm < v->now_ms ? (double)(v->now_ms - wm) / 1e3 : 0;
        inst_head(b, v, "sluice_watermark_lag_seconds", i);
        sl_buf_append(b, "} ", 2);
        num(b, lag);
        sl_buf_append(b, "\n", 1);
    }

    static const char *tnames[3] = {"sluice_channel_queued_batches",
                                    "sluice_channel_capacity_batches",
                                    "sluice_backpressure_seconds_total"};
    static const char *thelp[3] = {
        "Batches waiting in the input channels of the task a node instance roots.",
        "Credits (batch slots) of those channels.",
        "Time the task a node instance roots waited for output credit (backpressure)."};
    for (int f = 0; f < 3; f++) {
        fam(b, tnames[f], f == 2 ? "counter" : "gauge", thelp[f]);
        for (int t = 0; t < m->n_tasks; t++) {
            const sl_metrics_task *mt = &m->tasks[t];
            if (mt->root_instance < 0) continue;
            inst_head(b, v, tnames[f], mt->root_instance);
            sl_buf_append(b, "} ", 2);
            num(b, f == 0 ? (double)mt->queued : f == 1 ? (double)mt->capacity : mt->blocked_s);
            sl_buf_append(b, "\n", 1);
        }
    }
}

/* Source splits behind the end of their topic partition (sl_ctx_split_lag). */
static void lag_part(sl_buf *b, const sli_view *v)
{
    const sl_metrics *m = &v->m;
    fam(b, "sluice_source_lag_records", "gauge",
        "Records of a topic partition a source has not read yet (as the source last saw its end).");
    for (int i = 0; i < m->n_lags; i++) {
        inst_head(b, v, "sluice_source_lag_records", m->lags[i].instance);
        sl_buf_append(b, ",topic=\"", 8);
        esc(b, m->lags[i].input);
        sl_buf_printf(b, "\",partition=\"%d\"} %" PRId64 "\n", (int)m->lags[i].partition,
                      m->lags[i].lag);
    }
}

static void histogram(sl_buf *b, const sli_view *v, const char *name, const char *help,
                      const double *le, const uint64_t *count, double sum, double scale)
{
    fam(b, name, "histogram", help);
    char n[96];
    snprintf(n, sizeof(n), "%s_bucket", name);
    for (int i = 0; i < SL_CHECKPOINT_BUCKETS; i++) {
        char buf[32];
        sl_buf bb = {0};
        head(b, v, n);
        num(&bb, isinf(le[i]) ? le[i] : le[i] * scale);
        snprintf(buf, sizeof(buf), "%.*s", (int)bb.len, (const char *)bb.ptr);
        sl_buf_free(&bb);
        sl_buf_printf(b, ",le=\"%s\"} %" PRIu64 "\n", buf, count[i]);
    }
    snprintf(n, sizeof(n), "%s_sum", name);
    head(b, v, n);
    sl_buf_append(b, "} ", 2);
    num(b, sum * scale);
    snprintf(n, sizeof(n), "%s_count", name);
    sl_buf_append(b, "\n", 1);
    head(b, v, n);
    sl_buf_printf(b, "} %" PRIu64 "\n", count[SL_CHECKPOINT_BUCKETS - 1]);
}

static void chk_part(sl_buf *b, const sli_view *v)
{
    fam(b, "sluice_checkpoints_total", "counter", "Checkpoints of this run, by outcome.");
    head(b, v, "sluice_checkpoints_total");
    sl_buf_printf(b, ",outcome=\"completed\"} %" PRIu64 "\n", v->cs.completed);
    head(b, v, "sluice_checkpoints_total");
    sl_buf_printf(b, ",outcome=\"failed\"} %" PRIu64 "\n", v->cs.failed);
    histogram(b, v, "sluice_checkpoint_duration_seconds",
              "Completed checkpoints: barrier injected to manifest written.", v->ch.duration_le_ms,
              v->ch.duration_count, v->ch.duration_sum_ms, 1e-3);
    histogram(b, v, "sluice_checkpoint_size_bytes", "Completed checkpoints' size on disk.",
              v->ch.bytes_le, v->ch.bytes_count, v->ch.bytes_sum, 1);
    fam(b, "sluice_checkpoint_last_completed_id", "gauge", "The last completed checkpoint.");
    head(b, v, "sluice_checkpoint_last_completed_id");
    sl_buf_printf(b, "} %" PRIu64 "\n", v->cs.last_id);
    fam(b, "sluice_checkpoint_stall_max_seconds", "gauge",
        "The longest time one task spent capturing its state on a barrier, this run.");
    head(b, v, "sluice_checkpoint_stall_max_seconds");
    sl_buf_append(b, "} ", 2);
    num(b, v->cs.stall_max_ms / 1e3);
    sl_buf_append(b, "\n", 1);
}

static void broker_part(sl_buf *b, const sli_view *v)
{
    for (int f = 0; f < 2; f++) {
        const char *name = f ? "sluice_broker_log_end_offset" : "sluice_broker_log_start_offset";
        fam(b, name, "gauge",
            f ? "The offset the next record of a partition will get."
              : "The first offset a partition still stores.");
        for (int i = 0; i < v->n_parts; i++) {
            const sli_view_part *pp = &v->parts[i];
            head(b, v, name);
            sl_buf_append(b, ",topic=\"", 8);
            esc(b, v->topics[pp->topic]);
            sl_buf_printf(b, "\",partition=\"%d\"} %" PRId64 "\n", (int)pp->partition,
                          f ? pp->end_offset : pp->start_offset);
        }
    }
    for (int f = 0; f < 2; f++) {
        const char *name = f ? "sluice_broker_group_lag" : "sluice_broker_group_committed_offset";
        fam(b, name, "gauge",
            f ? "Records of a partition a consumer group has not committed yet."
              : "A consumer group's committed offset.");
        for (size_t i = 0; i < v->n_groups; i++) {
            const sl_group_offset *g = &v->groups[i];
            int64_t end = sli_view_end_offset(v, g->topic, g->partition);
            if (f && end < 0) continue; /* the topic is gone */
            head(b, v, name);
            sl_buf_append(b, ",group=\"", 8);
            esc(b, g->group);
            sl_buf_append(b, "\",topic=\"", 9);
            esc(b, g->topic);
            int64_t x = f ? (end > g->offset ? end - g->offset : 0) : g->offset;
            sl_buf_printf(b, "\",partition=\"%d\"} %" PRId64 "\n", (int)g->partition, x);
        }
    }
}

int sli_view_prometheus(const sli_view *v, sl_buf *b)
{
    size_t at = b->len;
    fam(b, "sluice_up", "gauge", "1 while the process serves and its job has not failed.");
    head(b, v, "sluice_up");
    sl_buf_printf(b, "} %d\n", !(v->has_job && v->m.state == SL_STATE_FAILED));
    if (v->has_job) {
        job_part(b, v);
        if (v->m.n_lags) lag_part(b, v);
        if (v->has_chk) chk_part(b, v);
        fam(b, "sluice_sink_commits_total", "counter",
            "Checkpoint commits of two-phase-commit sinks (one per sink instance).");
        head(b, v, "sluice_sink_commits_total");
        sl_buf_printf(b, "} %" PRIu64 "\n", v->m.sink_commits);
    }
    fam(b, "sluice_process_cpu_seconds_total", "counter", "CPU time of the process.");
    head(b, v, "sluice_process_cpu_seconds_total");
    sl_buf_append(b, "} ", 2);
    num(b, v->cpu_s);
    sl_buf_append(b, "\n", 1);
    fam(b, "sluice_process_resident_memory_bytes", "gauge", "Resident memory of the process.");
    head(b, v, "sluice_process_resident_memory_bytes");
    sl_buf_printf(b, "} %" PRIu64 "\n", v->rss_bytes);
    if (v->has_broker) broker_part(b, v);
    /* sl_buf_printf/append fail only without memory: check once, at the end */
    if (b->cap == 0 || (b->len > at && b->ptr[b->len - 1] != '\n')) return SL_ENOMEM;
    return 0;
}
