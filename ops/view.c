/*
 * ops/view.c - taking one reading for the HTTP endpoint (ops/view.h).
 *
 * The job's side is sl_pipeline_metrics() and the checkpoint statistics:
 * reads of counters the job's threads keep anyway, nothing the job waits
 * for. The process's CPU comes from getrusage and its resident memory from
 * /proc/self/statm. The broker's side lists its topics, describes each
 * (offsets of every partition) and reads the committed offsets of every
 * consumer group; that costs a directory scan and one pass over
 * __consumer_offsets per reading, fine at a scrape a second and never on a
 * path the broker serves clients from (the endpoint has its own thread and
 * its own broker handle).
 */
#include "ops/view.h"
#include "engine/base/clock.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "sluice/error.h"

static void process_read(sli_view *v)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        v->cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size, resident;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2)
            v->rss_bytes = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
}

static int broker_read(sli_view *v, sl_broker *b)
{
    char **names = NULL;
    size_t n = 0;
    v->has_broker = 1;
    v->broker_dir = sl_broker_dir(b);
    if (sl_topic_list(b, &names, &n) != 0) return 0; /* shown as no topics */
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (names[i][0] == '_') continue; /* internal: __consumer_offsets, ... */
        sl_topic_info *ti;
        if (sl_topic_describe(b, names[i], &ti) != 0) continue; /* deleted meanwhile */
        char **nt = realloc(v->topics, (size_t)(v->n_topics + 1) * sizeof(*nt));
        sli_view_part *np =
            realloc(v->parts, (size_t)(v->n_parts + ti->partition_count) * sizeof(*np));
        if (nt) v->topics = nt;
        if (np) v->parts = np;
        if (!nt || !np || !(v->topics[v->n_topics] = strdup(names[i]))) {
            rc = SL_ENOMEM;
        } else {
            for (int32_t k = 0; k < ti->partition_count; k++)
                v->parts[v->n_parts++] = (sli_view_part){
                    .topic = v->n_topics,
                    .partition = ti->partitions[k].partition,
                    .start_offset = ti->partitions[k].first_offset,
                    .end_offset = ti->partitions[k].next_offset,
                };
            v->n_topics++;
        }
        sl_topic_info_free(ti);
    }
    sl_topic_list_free(names, n);
    if (!rc && sl_group_offsets(b, NULL, &v->groups, &v->n_groups) != 0) {
        v->groups = NULL; /* shown as no groups */
        v->n_groups = 0;
    }
    return rc;
}

/* One pipeline's job side into v (has_job stays 0 while it has no plan). */
static int job_read(sli_view *v, const sl_pipeline *p)
{
    int rc = sl_pipeline_metrics(p, &v->m);
    if (rc == SL_ENOMEM) return rc;
    if (rc == 0) {
        v->has_job = 1;
        v->has_chk = v->m.checkpoints; /* 0 before start */
        if (v->has_chk) {
            sl_pipeline_checkpoint_stats(p, &v->cs);
            sl_pipeline_checkpoint_history(p, &v->ch);
        }
    }
    return 0;
}

/* --- several pipelines as one job -----------------------------------------------------
 *
 * Each pipeline is read on its own (job_read) and appended to the view:
 * node, instance and task indexes are shifted past the ones before, and a
 * node is named "PIPELINE/NODE". The combined state is the first of
 * failed, running, created, canceled that any pipeline is in, else
 * finished. Totals add up; the watermark is the lowest; a checkpoint
 * history keeps the latest 32 entries of all, the histograms and counts
 * add up, and the percentiles are the highest of the pipelines' own (they
 * cannot be combined exactly: an upper bound). */

static int state_rank(int st)
{
    switch (st) {
    case SL_STATE_FAILED: return 4;
    case SL_STATE_RUNNING: return 3;
    case SL_STATE_CREATED: return 2;
    case SL_STATE_CANCELED: return 1;
    default: return 0; /* finished */
    }
}

/* Make room for `add` more elements in array `arr` (which holds n): 0, or
 * SL_ENOMEM with arr as it was. */
#define GROW(arr, n, add) grow_array((void *)&(arr), (void *)(arr), (n), (add), sizeof(*(arr)))
static int grow_array(void *slot, void *arr, int n, int add, size_t size)
{
    if (!add) return 0;
    void *g = realloc(arr, (size_t)(n + add) * size);
    if (!g) return SL_ENOMEM;
    memcpy(slot, &g, sizeof(g)); /* the array's pointer, whatever its type */
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    int64_t x = ((const sl_checkpoint_entry *)a)->time_ms;
    int64_t y = ((const sl_checkpoint_entry *)b)->time_ms;
    return (x > y) - (x < y);
}

static void chk_append(sli_view *v, const sli_view *w)
{
    sl_checkpoint_stats *c = &v->cs;
    const sl_checkpoint_stats *d = &w->cs;
    if (!v->has_chk) {
        v->has_chk = 1;
        v->cs = w->cs;
        v->ch = w->ch;
        return;
    }
    int64_t last_v = v->ch.n ? v->ch.entry[v->ch.n - 1].time_ms : 0;
    int64_t last_w = w->ch.n ? w->ch.entry[w->ch.n - 1].time_ms : 0;
    c->completed += d->completed;
    c->failed += d->failed;
    c->forked_captures += d->forked_captures;
    if (d->last_id > c->last_id) {
        c->last_id = d->last_id;
        c->last_bytes = d->last_bytes;
    }
    if (*d->last_error && (!*c->last_error || last_w >= last_v))
        memcpy(c->last_error, d->last_error, sizeof(c->last_error));
#define MAXOF(f) c->f = d->f > c->f ? d->f : c->f
    MAXOF(duration_p50_ms);
    MAXOF(duration_p99_ms);
    MAXOF(duration_max_ms);
    MAXOF(stall_p50_ms);
    MAXOF(stall_p99_ms);
    MAXOF(stall_max_ms);
#undef MAXOF
    sl_checkpoint_entry all[2 * SL_CHECKPOINT_HISTORY];
    int n = 0;
    for (int i = 0; i < v->ch.n; i++) all[n++] = v->ch.entry[i];
    for (int i = 0; i < w->ch.n; i++) all[n++] = w->ch.entry[i];
    qsort(all, (size_t)n, sizeof(all[0]), entry_cmp);
    int from = n > SL_CHECKPOINT_HISTORY ? n - SL_CHECKPOINT_HISTORY : 0;
    v->ch.n = n - from;
    memcpy(v->ch.entry, all + from, (size_t)v->ch.n * sizeof(all[0]));
    for (int i = 0; i < SL_CHECKPOINT_BUCKETS; i++) {
        v->ch.duration_count[i] += w->ch.duration_count[i];
        v->ch.bytes_count[i] += w->ch.bytes_count[i];
    }
    v->ch.duration_sum_ms += w->ch.duration_sum_ms;
    v->ch.bytes_sum += w->ch.bytes_sum;
}

/* Append the reading w of pipeline `name` to v. 0 or SL_ENOMEM. */
static int job_append(sli_view *v, const sli_view *w, const char *name)
{
    sl_metrics *m = &v->m;
    const sl_metrics *x = &w->m;
    int no = m->n_nodes, io = m->n_instances, to = m->n_tasks;
    if (GROW(m->nodes, no, x->n_nodes) || GROW(m->instances, io, x->n_instances) ||
        GROW(m->tasks, to, x->n_tasks) || GROW(m->reasons, m->n_reasons, x->n_reasons) ||
        GROW(m->lags, m->n_lags, x->n_lags) || GROW(v->names, v->n_names, x->n_nodes))
        return SL_ENOMEM;
    for (int i = 0; i < x->n_nodes; i++) {
        sl_metrics_node nd = x->nodes[i];
        size_t len = strlen(name) + 1 + strlen(nd.name) + 1;
        char *full = malloc(len);
        if (!full) return SL_ENOMEM;
        snprintf(full, len, "%s/%s", name, nd.name);
        v->names[v->n_names++] = full;
        nd.name = full;
        for (int k = 0; k < nd.n_inputs; k++) nd.inputs[k] += no;
        nd.first_instance += io;
        m->nodes[m->n_nodes++] = nd;
    }
    for (int i = 0; i < x->n_instances; i++) {
        sl_metrics_instance in = x->instances[i];
        in.node += no;
        in.task += to;
        m->instances[m->n_instances++] = in;
    }
    for (int i = 0; i < x->n_tasks; i++) {
        sl_metrics_task t = x->tasks[i];
        t.id += to;
        if (t.root_instance >= 0) t.root_instance += io;
        m->tasks[m->n_tasks++] = t;
    }
    for (int i = 0; i < x->n_reasons; i++) {
        m->reasons[m->n_reasons] = x->reasons[i];
        m->reasons[m->n_reasons++].instance += io;
    }
    for (int i = 0; i < x->n_lags; i++) {
        m->lags[m->n_lags] = x->lags[i];
        m->lags[m->n_lags++].instance += io;
    }
    const sl_pipeline_stats *a = &x->totals;
    sl_pipeline_stats *t = &m->totals;
    if (!v->has_job) {
        *t = *a;
        m->state = x->state;
    } else {
        t->records_in += a->records_in;
        t->records_out += a->records_out;
        t->late += a->late;
        t->dead_letters += a->dead_letters;
        if (a->watermark < t->watermark) t->watermark = a->watermark;
        if (a->elapsed_s > t->elapsed_s) t->elapsed_s = a->elapsed_s;
        if (state_rank(x->state) > state_rank(m->state)) m->state = x->state;
    }
    m->checkpoints |= x->checkpoints;
    m->sink_commits += x->sink_commits;
    v->has_job = 1;
    if (w->has_chk) chk_append(v, w);
    return 0;
}

int sli_view_take(sli_view *v, const char *job, double t0_s, const sli_view_src *src, int n,
                  sl_broker *b)
{
    memset(v, 0, sizeof(*v));
    v->job = job;
    v->now_ms = sli_clock_wall_ms();
    v->uptime_s = sli_clock_mono_s() - t0_s;
    process_read(v);
    int rc = 0;
    if (n == 1 && !src[0].name) {
        rc = job_read(v, src[0].p);
    } else {
        for (int i = 0; i < n && !rc; i++) {
            sli_view w;
            memset(&w, 0, sizeof(w));
            rc = job_read(&w, src[i].p);
            if (!rc && w.has_job) rc = job_append(v, &w, src[i].name ? src[i].name : "");
            sl_metrics_clear(&w.m);
        }
    }
    if (!rc && b) rc = broker_read(v, b);
    if (rc) sli_view_free(v);
    return rc;
}

void sli_view_free(sli_view *v)
{
    sl_metrics_clear(&v->m);
    for (int i = 0; i < v->n_names; i++) free(v->names[i]);
    free(v->names);
    for (int i = 0; i < v->n_topics; i++) free(v->topics[i]);
    free(v->topics);
    free(v->parts);
    sl_group_offsets_free(v->groups);
    memset(v, 0, sizeof(*v));
}

int64_t sli_view_end_offset(const sli_view *v, const char *topic, int32_t partition)
{
    for (int i = 0; i < v->n_parts; i++)
        if (v->parts[i].partition == partition && strcmp(v->topics[v->parts[i].topic], topic) == 0)
            return v->parts[i].end_offset;
    return -1;
}
