/*
 * ops/json.c - a reading (ops/view.h) as the JSON of GET /api/job, which
 * the status page and `sluice status` read. Its shape (every key is always
 * present; null where there is nothing to say):
 *
 *   {"job": "window-agg", "state": "running",     // created running finished failed
 *    "now_ms": 1764770000000, "uptime_s": 12.5,   //   canceled; "" without a job
 *    "process": {"cpu_s": 3.2, "rss_bytes": 12345678},
 *    "totals": {"records_in", "records_out", "late", "dead_letters",
 *               "watermark_ms": int|null, "watermark_lag_ms": int|null},
 *    "tasks": [{"id", "nodes": [names, root first], "queued", "capacity",
 *               "blocked_s"}],
 *    "nodes": [{"name", "kind": "source|operator|sink", "type", "parallelism",
 *               "inputs": [names], "instances": [{"instance", "task",
 *               "records_in", "records_out", "bytes_in", "bytes_out", "late",
 *               "dead_letters", "watermark_ms": int|null}]}],
 *    "edges": [{"from", "to", "partitioning": "forward|hash|rebalance|broadcast",
 *               "chained": bool}],
 *    "dead_letters": [{"node", "instance", "reason", "count"}],
 *    "source_lag": [{"node", "instance", "topic", "partition", "lag"}],
 *    "checkpoints": null | {"completed", "failed", "last_id", "last_bytes",
 *               "duration_p50_ms", "duration_p99_ms", "stall_max_ms",
 *               "last_error", "history": [{"id", "ok", "time_ms",
 *               "duration_ms", "stall_ms", "bytes", "error"}]},
 *    "broker": null | {"dir", "topics": [{"name", "partitions": [{"partition",
 *               "start_offset", "end_offset"}]}], "groups": [{"group", "topic",
 *               "partition", "committed", "lag": int|null}]}}
 *
 * Counters only: rates and the share of time blocked are differences of two
 * readings over the time between them (the page and `sluice status` take
 * both). A watermark is null before the first and after the end (+inf).
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include "ops/view.h"
#include "sluice/batch.h"
#include "sluice/error.h"

static void str(sl_buf *b, const char *s)
{
    sl_buf_append(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            sl_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            sl_buf_printf(b, "\\u%04x", c);
        else
            sl_buf_append(b, s, 1);
    }
    sl_buf_append(b, "\"", 1);
}

static void dbl(sl_buf *b, double x)
{
    if (!isfinite(x)) x = 0;
    sl_buf_printf(b, "%.6g", x);
}

static void wm(sl_buf *b, int64_t w)
{
    if (w == SL_TIME_MIN || w == SL_TIME_MAX)
        sl_buf_append(b, "null", 4);
    else
        sl_buf_printf(b, "%" PRId64, w);
}

static const char *part_name(int part)
{
    static const char *n[] = {"forward", "hash", "rebalance", "broadcast"};
    return part >= 0 && part < 4 ? n[part] : "forward";
}

static void job(sl_buf *b, const sli_view *v)
{
    const sl_metrics *m = &v->m;
    const sl_pipeline_stats *t = &m->totals;
    sl_buf_printf(b,
                  ",\"totals\":{\"records_in\":%" PRIu64 ",\"records_out\":%" PRIu64
                  ",\"late\":%" PRIu64 ",\"dead_letters\":%" PRIu64 ",\"watermark_ms\":",
                  t->records_in, t->records_out, t->late, t->dead_letters);
    wm(b, t->watermark);
    sl_buf_append(b, ",\"watermark_lag_ms\":", 20);
    if (t->watermark == SL_TIME_MIN || t->watermark == SL_TIME_MAX)
        sl_buf_append(b, "null", 4);
    else
        sl_buf_printf(b, "%" PRId64, t->watermark < v->now_ms ? v->now_ms - t->watermark : 0);
    sl_buf_append(b, "},\"tasks\":[", 11);
    for (int i = 0; i < m->n_tasks; i++) {
        const sl_metrics_task *mt = &m->tasks[i];
        sl_buf_printf(b, "%s{\"id\":%d,\"nodes\":[", i ? "," : "", mt->id);
        /* the chain: instances of this task, root first (plan order) */
        int first = 1;
        if (mt->root_instance >= 0) {
            str(b, m->nodes[m->instances[mt->root_instance].node].name);
            first = 0;
        }
        for (int k = 0; k < m->n_instances; k++) {
            if (m->instances[k].task != mt->id || k == mt->root_instance) continue;
            if (!first) sl_buf_append(b, ",", 1);
            str(b, m->nodes[m->instances[k].node].name);
            first = 0;
        }
        sl_buf_printf(b, "],\"queued\":%" PRIu64 ",\"capacity\":%" PRIu64 ",\"blocked_s\":",
                      mt->queued, mt->capacity);
        dbl(b, mt->blocked_s);
        sl_buf_append(b, "}", 1);
    }
    sl_buf_append(b, "],\"nodes\":[", 11);
    for (int i = 0; i < m->n_nodes; i++) {
        const sl_metrics_node *n = &m->nodes[i];
        sl_buf_printf(b, "%s{\"name\":", i ? "," : "");
        str(b, n->name);
        sl_buf_printf(b, ",\"kind\":\"%s\",\"type\":", n->kind);
        str(b, n->type);
        sl_buf_printf(b, ",\"parallelism\":%d,\"inputs\":[", n->parallelism);
        for (int j = 0; j < n->n_inputs; j++) {
            if (j) sl_buf_append(b, ",", 1);
            str(b, m->nodes[n->inputs[j]].name);
        }
        sl_buf_append(b, "],\"instances\":[", 15);
        for (int k = 0; k < n->parallelism; k++) {
            const sl_metrics_instance *mi = &m->instances[n->first_instance + k];
            sl_buf_printf(b,
                          "%s{\"instance\":%d,\"task\":%d,\"records_in\":%" PRIu64
                          ",\"records_out\":%" PRIu64 ",\"bytes_in\":%" PRIu64
                          ",\"bytes_out\":%" PRIu64 ",\"late\":%" PRIu64
                          ",\"dead_letters\":%" PRIu64 ",\"watermark_ms\":",
                          k ? "," : "", mi->instance, mi->task, mi->records_in, mi->records_out,
                          mi->bytes_in, mi->bytes_out, mi->late, mi->dead_letters);
            wm(b, mi->watermark);
            sl_buf_append(b, "}", 1);
        }
        sl_buf_append(b, "]}", 2);
    }
    sl_buf_append(b, "],\"edges\":[", 11);
    int e = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const sl_metrics_node *n = &m->nodes[i];
        for (int j = 0; j < n->n_inputs; j++) {
            sl_buf_printf(b, "%s{\"from\":", e++ ? "," : "");
            str(b, m->nodes[n->inputs[j]].name);
            sl_buf_append(b, ",\"to\":", 6);
            str(b, n->name);
            sl_buf_printf(b, ",\"partitioning\":\"%s\",\"chained\":%s}",
                          part_name(n->input_part[j]), j == 0 && n->chained ? "true" : "false");
        }
    }
    sl_buf_append(b, "],\"dead_letters\":[", 18);
    for (int r = 0; r < m->n_reasons; r++) {
        const sl_metrics_instance *mi = &m->instances[m->reasons[r].instance];
        sl_buf_printf(b, "%s{\"node\":", r ? "," : "");
        str(b, m->nodes[mi->node].name);
        sl_buf_printf(b, ",\"instance\":%d,\"reason\":", mi->instance);
        str(b, m->reasons[r].reason);
        sl_buf_printf(b, ",\"count\":%" PRIu64 "}", m->reasons[r].count);
    }
    sl_buf_append(b, "],\"source_lag\":[", 16);
    for (int i = 0; i < m->n_lags; i++) {
        const sl_metrics_instance *mi = &m->instances[m->lags[i].instance];
        sl_buf_printf(b, "%s{\"node\":", i ? "," : "");
        str(b, m->nodes[mi->node].name);
        sl_buf_printf(b, ",\"instance\":%d,\"topic\":", mi->instance);
        str(b, m->lags[i].input);
        sl_buf_printf(b, ",\"partition\":%d,\"lag\":%" PRId64 "}", (int)m->lags[i].partition,
                      m->lags[i].lag);
    }
    sl_buf_append(b, "]", 1);
}

static void checkpoints(sl_buf *b, const sli_view *v)
{
    const sl_checkpoint_stats *s = &v->cs;
    sl_buf_printf(b,
                  "{\"completed\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"last_id\":%" PRIu64
                  ",\"last_bytes\":%" PRIu64 ",\"duration_p50_ms\":",
                  s->completed, s->failed, s->last_id, s->last_bytes);
    dbl(b, s->duration_p50_ms);
    sl_buf_append(b, ",\"duration_p99_ms\":", 19);
    dbl(b, s->duration_p99_ms);
    sl_buf_append(b, ",\"stall_max_ms\":", 16);
    dbl(b, s->stall_max_ms);
    sl_buf_append(b, ",\"last_error\":", 14);
    str(b, s->last_error);
    sl_buf_append(b, ",\"history\":[", 12);
    for (int i = 0; i < v->ch.n; i++) {
        const sl_checkpoint_entry *e = &v->ch.entry[i];
        sl_buf_printf(b, "%s{\"id\":%" PRIu64 ",\"ok\":%s,\"time_ms\":%" PRId64 ",\"duration_ms\":",
                      i ? "," : "", e->id, e->ok ? "true" : "false", e->time_ms);
        dbl(b, e->duration_ms);
        sl_buf_append(b, ",\"stall_ms\":", 12);
        dbl(b, e->stall_ms);
        sl_buf_printf(b, ",\"bytes\":%" PRIu64 ",\"error\":", e->bytes);
        str(b, e->error);
        sl_buf_append(b, "}", 1);
    }
    sl_buf_append(b, "]}", 2);
}

static void broker(sl_buf *b, const sli_view *v)
{
    sl_buf_append(b, "{\"dir\":", 7);
    str(b, v->broker_dir ? v->broker_dir : "");
    sl_buf_append(b, ",\"topics\":[", 11);
    for (int t = 0; t < v->n_topics; t++) {
        sl_buf_printf(b, "%s{\"name\":", t ? "," : "");
        str(b, v->topics[t]);
        sl_buf_append(b, ",\"partitions\":[", 15);
        int first = 1;
        for (int i = 0; i < v->n_parts; i++) {
            const sli_view_part *p = &v->parts[i];
            if (p->topic != t) continue;
            sl_buf_printf(
                b, "%s{\"partition\":%d,\"start_offset\":%" PRId64 ",\"end_offset\":%" PRId64 "}",
                first ? "" : ",", (int)p->partition, p->start_offset, p->end_offset);
            first = 0;
        }
        sl_buf_append(b, "]}", 2);
    }
    sl_buf_append(b, "],\"groups\":[", 12);
    for (size_t i = 0; i < v->n_groups; i++) {
        const sl_group_offset *g = &v->groups[i];
        sl_buf_printf(b, "%s{\"group\":", i ? "," : "");
        str(b, g->group);
        sl_buf_append(b, ",\"topic\":", 9);
        str(b, g->topic);
        sl_buf_printf(b, ",\"partition\":%d,\"committed\":%" PRId64 ",\"lag\":", (int)g->partition,
                      g->offset);
        int64_t end = sli_view_end_offset(v, g->topic, g->partition);
        if (end < 0)
            sl_buf_append(b, "null", 4);
        else
            sl_buf_printf(b, "%" PRId64, end > g->offset ? end - g->offset : 0);
        sl_buf_append(b, "}", 1);
    }
    sl_buf_append(b, "]}", 2);
}

int sli_view_json(const sli_view *v, sl_buf *b)
{
    static const char *states[] = {"created", "running", "finished", "failed", "canceled"};
    sl_buf_append(b, "{\"job\":", 7);
    str(b, v->job);
    sl_buf_printf(b, ",\"state\":\"%s\",\"now_ms\":%" PRId64 ",\"uptime_s\":",
                  v->has_job ? states[v->m.state] : "", v->now_ms);
    dbl(b, v->uptime_s);
    sl_buf_printf(b, ",\"process\":{\"cpu_s\":");
    dbl(b, v->cpu_s);
    sl_buf_printf(b, ",\"rss_bytes\":%" PRIu64 "}", v->rss_bytes);
    if (v->has_job)
        job(b, v);
    else
        sl_buf_printf(b, ",\"totals\":{\"records_in\":0,\"records_out\":0,\"late\":0,"
                         "\"dead_letters\":0,\"watermark_ms\":null,\"watermark_lag_ms\":null},"
                         "\"tasks\":[],\"nodes\":[],\"edges\":[],\"dead_letters\":[],"
                         "\"source_lag\":[]");
    sl_buf_append(b, ",\"checkpoints\":", 15);
    if (v->has_job && v->has_chk)
        checkpoints(b, v);
    else
        sl_buf_append(b, "null", 4);
    sl_buf_append(b, ",\"broker\":", 10);
    if (v->has_broker)
        broker(b, v);
    else
        sl_buf_append(b, "null", 4);
    sl_buf_append(b, "}\n", 2);
    return b->cap && b->len && b->ptr[b->len - 1] == '\n' ? 0 : SL_ENOMEM;
}
