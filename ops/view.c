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

int sli_view_take(sli_view *v, const char *job, double t0_s, const sl_pipeline *p, sl_broker *b)
{
    memset(v, 0, sizeof(*v));
    v->job = job;
    v->now_ms = sli_clock_wall_ms();
    v->uptime_s = sli_clock_mono_s() - t0_s;
    process_read(v);
    if (p) {
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
    }
    if (b) {
        int rc = broker_read(v, b);
        if (rc) {
            sli_view_free(v);
            return rc;
        }
    }
    return 0;
}

void sli_view_free(sli_view *v)
{
    sl_metrics_clear(&v->m);
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
